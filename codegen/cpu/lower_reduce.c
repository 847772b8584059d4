/* lower_reduce.c — lowering for the reduce family (see cpu.h): Reduce*,
 * GlobalAveragePool / GlobalMaxPool (as reductions), Softmax, LogSoftmax,
 * LayerNormalization, BatchNormalization, MaxPool, AveragePool; and
 * reduction fusions (kiln_lower_fusion_reduction). Kernels in
 * kernels/kk_reduce.c, parameter layouts in kernels/kk_params_reduce.h.
 *
 * f32 picks the vectorised `_f32` kernel, every other dtype the interpreter
 * supports the scalar `_any` kernel. Shapes are canonicalised here: a
 * reduction becomes kept and reduced groups of merged dims. */
#include "cpu.h"
#include "kk_params_elementwise.h"
#include "kk_params_reduce.h"

/* Dtype parameters are kiln_dtype values as they are: the kernels' KK_DT_*
 * codes equal them (checked in lower_elementwise.c). */

static kiln_status unsupported_dtype(const kiln_node *n, kiln_dtype dt, kiln_diag *d)
{
	return kiln_diag_error(d, KILN_ERR_UNSUPPORTED, n, "dtype %s is not supported",
	                       kiln_dtype_name(dt));
}

static const kiln_type *in_type(const kiln_node *n, int i)
{
	return &n->inputs[i]->type;
}

/* Reduces the dims of x marked in `reduced` (none marked: copy). The output
 * is dense over the kept dims in order, with or without keepdims. */
static void push_reduction(kiln_kcall *c, const kiln_type *x, const bool *reduced, int kind,
                           int y_index)
{
	int64_t nout = 1, group = 1;
	for (int i = 0; i < x->rank; i++) {
		if (reduced[i])
			group *= x->dims[i];
		else
			nout *= x->dims[i];
	}
	/* Groups of merged dims: size-1 dims dropped, neighbours of one kind joined
	 * (dense input, so a group's stride is its last dim's). */
	int64_t size[KILN_MAX_RANK], stride[KILN_MAX_RANK];
	bool red[KILN_MAX_RANK];
	int ng = 0, nk = 0, nr = 0;
	int64_t st = 1;
	for (int i = x->rank - 1; i >= 0; i--) {
		int64_t dim = x->dims[i];
		if (dim != 1) {
			if (ng > 0 && red[ng - 1] == reduced[i]) {
				size[ng - 1] *= dim;
			} else {
				size[ng] = dim;
				stride[ng] = st;
				red[ng++] = reduced[i];
			}
		}
		st *= dim;
	}
	for (int g = 0; g < ng; g++) {
		if (red[g])
			nr++;
		else
			nk++;
	}
	int mode = nout == 0 || group == 0 ? KK_RED_MODE_FILL
	         : nr == 0                ? KK_RED_MODE_COPY
	         : red[0]                 ? KK_RED_MODE_ROW
	                                  : KK_RED_MODE_COL;
	kiln_kcall_i(c, kind);
	kiln_kcall_i(c, x->dtype);
	kiln_kcall_i(c, mode);
	kiln_kcall_i(c, nout);
	kiln_kcall_i(c, group);
	kiln_kcall_i(c, nk);
	kiln_kcall_i(c, nr);
	kiln_kcall_i(c, y_index);
	/* The groups were collected innermost first; push outermost first. */
	for (int pass = 0; pass < 2; pass++)
		for (int g = ng - 1; g >= 0; g--)
			if (red[g] == (pass == 1)) {
				kiln_kcall_i(c, size[g]);
				kiln_kcall_i(c, stride[g]);
			}
	c->fn = x->dtype == KILN_DT_F32 ? "kk_reduce_f32" : "kk_reduce_any";
}

static kiln_status lower_reduce_op(const kiln_node *n, kiln_kcall *c, int kind, kiln_diag *d)
{
	const kiln_type *x = in_type(n, 0);
	bool reduced[KILN_MAX_RANK] = {false};
	int count = 0;
	const kiln_value *axes = kiln_node_in(n, 1);
	if (axes) {
		if (axes->kind != KILN_VALUE_CONST || !axes->data)
			return kiln_diag_error(d, KILN_ERR_UNSUPPORTED, n,
			                       "axes must be a constant for the CPU backend");
		count = (int)kiln_type_numel(&axes->type);
	}
	for (int k = 0; k < count; k++) {
		int64_t a = kiln_const_get_i64(axes, k);
		int ax;
		if (!kiln_axis_norm(a, x->rank, &ax))
			return kiln_diag_error(d, KILN_ERR_SHAPE, n, "axis %lld out of range for rank %d",
			                       (long long)a, x->rank);
		reduced[ax] = true;
	}
	bool noop = count == 0 && kiln_node_int(n, "noop_with_empty_axes", 0) != 0;
	for (int i = 0; i < x->rank && count == 0 && !noop; i++)
		reduced[i] = true;
	push_reduction(c, x, reduced, kind, n->n_inputs);
	return KILN_OK;
}

static kiln_status lower_global_pool(const kiln_node *n, kiln_kcall *c, int kind, kiln_diag *d)
{
	const kiln_type *x = in_type(n, 0);
	if (x->rank < 2)
		return kiln_diag_error(d, KILN_ERR_SHAPE, n, "input has rank %d, expected at least 2",
		                       x->rank);
	bool reduced[KILN_MAX_RANK] = {false};
	for (int i = 2; i < x->rank; i++)
		reduced[i] = true;
	push_reduction(c, x, reduced, kind, 1);
	return KILN_OK;
}

static kiln_status lower_softmax(const kiln_node *n, kiln_kcall *c, kiln_diag *d)
{
	const kiln_type *x = in_type(n, 0);
	int64_t a = kiln_node_int(n, "axis", -1), outer = 1, dim = 1, inner = 1;
	int axis;
	if (x->rank == 0 && (a == 0 || a == -1)) {
		axis = 0; /* a scalar is one row of one element */
	} else if (!kiln_axis_norm(a, x->rank, &axis)) {
		return kiln_diag_error(d, KILN_ERR_SHAPE, n, "axis %lld out of range for rank %d",
		                       (long long)a, x->rank);
	} else {
		dim = x->dims[axis];
		for (int i = 0; i < axis; i++)
			outer *= x->dims[i];
		for (int i = axis + 1; i < x->rank; i++)
			inner *= x->dims[i];
	}
	if (!kiln_dtype_is_float(x->dtype))
		return unsupported_dtype(n, x->dtype, d);
	kiln_kcall_i(c, outer);
	kiln_kcall_i(c, dim);
	kiln_kcall_i(c, inner);
	kiln_kcall_i(c, n->op == KILN_OP_LOG_SOFTMAX);
	kiln_kcall_i(c, x->dtype);
	c->fn = x->dtype == KILN_DT_F32 ? "kk_softmax_f32" : "kk_softmax_any";
	return KILN_OK;
}

static kiln_status lower_layer_norm(const kiln_node *n, kiln_kcall *c, kiln_diag *d)
{
	const kiln_type *x = in_type(n, 0);
	int64_t a = kiln_node_int(n, "axis", -1);
	int axis;
	if (!kiln_axis_norm(a, x->rank, &axis))
		return kiln_diag_error(d, KILN_ERR_SHAPE, n, "axis %lld out of range for rank %d",
		                       (long long)a, x->rank);
	if (!kiln_dtype_is_float(x->dtype))
		return unsupported_dtype(n, x->dtype, d);
	int nr = x->rank - axis;
	int64_t dim = 1, rows = 1;
	for (int i = 0; i < axis; i++)
		rows *= x->dims[i];
	for (int i = axis; i < x->rank; i++)
		dim *= x->dims[i];
	if (dim == 0)
		rows = 0;
	/* Broadcast strides of Scale (p 0) and B (p 1) over the normalised dims. */
	int64_t pst[2][KILN_MAX_RANK] = {{0}};
	bool dense[2] = {true, true};
	for (int p = 0; p < 2; p++) {
		const kiln_value *v = kiln_node_in(n, 1 + p);
		if (!v)
			continue;
		const kiln_type *pt = &v->type;
		if (pt->dtype != x->dtype)
			return kiln_diag_error(d, KILN_ERR_SHAPE, n, "input %d has dtype %s, expected %s",
			                       1 + p, kiln_dtype_name(pt->dtype), kiln_dtype_name(x->dtype));
		int64_t s = 1;
		for (int i = pt->rank - 1, j = nr - 1; i >= 0; i--, j--) {
			if (j >= 0)
				pst[p][j] = pt->dims[i] == 1 ? 0 : s;
			if (j < 0 ? pt->dims[i] != 1 : pt->dims[i] != 1 && pt->dims[i] != x->dims[axis + j])
				return kiln_diag_error(d, KILN_ERR_SHAPE, n,
				                       "%s does not broadcast to the normalized dims",
				                       p ? "B" : "Scale");
			s *= pt->dims[i];
		}
		dense[p] = kiln_type_numel(pt) == dim;
	}
	bool has_bias = kiln_node_in(n, 2) != NULL;
	kiln_dtype stash = n->n_outputs > 1 ? n->outputs[1]->type.dtype : KILN_DT_F32;
	if (!kiln_dtype_is_float(stash))
		return unsupported_dtype(n, stash, d);
	kiln_kcall_i(c, rows);
	kiln_kcall_i(c, dim);
	kiln_kcall_i(c, x->dtype);
	kiln_kcall_i(c, stash);
	kiln_kcall_i(c, n->n_inputs);
	kiln_kcall_i(c, n->n_outputs);
	kiln_kcall_i(c, dense[0]);
	kiln_kcall_i(c, dense[1] || !has_bias);
	kiln_kcall_i(c, nr);
	for (int i = 0; i < nr; i++)
		kiln_kcall_i(c, x->dims[axis + i]);
	for (int p = 0; p < 2; p++)
		for (int i = 0; i < nr; i++)
			kiln_kcall_i(c, pst[p][i]);
	kiln_kcall_f(c, kiln_node_float(n, "epsilon", 1e-5f));
	if (!dense[0] || (has_bias && !dense[1])) {
		int64_t part = ((int64_t)kiln_dtype_size(x->dtype) * dim + 63) / 64 * 64;
		c->scratch_bytes = 2 * part;
	}
	c->fn = x->dtype == KILN_DT_F32 ? "kk_layer_norm_f32" : "kk_layer_norm_any";
	return KILN_OK;
}

static kiln_status lower_batch_norm(const kiln_node *n, kiln_kcall *c, kiln_diag *d)
{
	const kiln_type *x = in_type(n, 0);
	if (kiln_node_int(n, "training_mode", 0) != 0)
		return kiln_diag_error(d, KILN_ERR_UNSUPPORTED, n,
		                       "training_mode=1 (inference only)");
	if (x->rank < 2)
		return kiln_diag_error(d, KILN_ERR_SHAPE, n, "X has rank %d, expected at least 2", x->rank);
	if (!kiln_dtype_is_float(x->dtype))
		return unsupported_dtype(n, x->dtype, d);
	int64_t ch = x->dims[1], inner = 1;
	for (int i = 2; i < x->rank; i++)
		inner *= x->dims[i];
	for (int i = 1; i < 5; i++) {
		const kiln_value *v = kiln_node_in(n, i);
		if (!v || kiln_type_numel(&v->type) != ch)
			return kiln_diag_error(d, KILN_ERR_SHAPE, n,
			                       "input %d must have %lld elements (the channels)", i,
			                       (long long)ch);
		if (!kiln_dtype_is_float(v->type.dtype))
			return unsupported_dtype(n, v->type.dtype, d);
	}
	kiln_kcall_i(c, x->dims[0]);
	kiln_kcall_i(c, ch);
	kiln_kcall_i(c, inner);
	kiln_kcall_i(c, x->dtype);
	for (int i = 1; i < 5; i++)
		kiln_kcall_i(c, in_type(n, i)->dtype);
	kiln_kcall_f(c, kiln_node_float(n, "epsilon", 1e-5f));
	if (x->dtype == KILN_DT_F32) {
		c->scratch_bytes = 3 * ch * (int64_t)sizeof(float);
		c->fn = "kk_batch_norm_f32";
	} else {
		c->fn = "kk_batch_norm_any";
	}
	return KILN_OK;
}

static kiln_status lower_pool(const kiln_node *n, kiln_kcall *c, kiln_diag *d)
{
	kiln_window w;
	KILN_TRY(kiln_window_resolve(n, &w, d));
	if (w.nspatial < 1 || w.nspatial > 3)
		return kiln_diag_error(d, KILN_ERR_UNSUPPORTED, n,
		                       "%d spatial dims (1 to 3 supported)", w.nspatial);
	kiln_dtype dt = in_type(n, 0)->dtype;
	bool max = n->op == KILN_OP_MAX_POOL;
	if (!kiln_dtype_is_float(dt) && !(max && (dt == KILN_DT_I8 || dt == KILN_DT_U8)))
		return unsupported_dtype(n, dt, d);
	bool indices = max && n->n_outputs > 1;
	int off = 3 - w.nspatial;
	int64_t g[7][3];
	for (int a = 0; a < 3; a++) {
		bool real = a >= off;
		int r = a - off;
		g[0][a] = real ? w.in[r] : 1;
		g[1][a] = real ? w.out[r] : 1;
		g[2][a] = real ? w.kernel[r] : 1;
		g[3][a] = real ? w.stride[r] : 1;
		g[4][a] = real ? w.dilation[r] : 1;
		g[5][a] = real ? w.pad_begin[r] : 0;
		g[6][a] = real ? w.pad_end[r] : 0;
	}
	kiln_kcall_i(c, max);
	kiln_kcall_i(c, dt);
	kiln_kcall_i(c, w.batch * w.in_c);
	for (int f = 0; f < 7; f++)
		for (int a = 0; a < 3; a++)
			kiln_kcall_i(c, g[f][a]);
	kiln_kcall_i(c, !max && w.count_include_pad);
	kiln_kcall_i(c, indices);
	kiln_kcall_i(c, max && kiln_node_int(n, "storage_order", 0) != 0);
	c->fn = dt == KILN_DT_F32 && !indices ? "kk_pool_f32" : "kk_pool_any";
	return KILN_OK;
}

kiln_status kiln_lower_reduce(const kiln_node *n, const kiln_cpu_target *t, kiln_kcall *c,
                              kiln_diag *d)
{
	(void)t;
	switch (n->op) {
	case KILN_OP_REDUCE_MEAN: return lower_reduce_op(n, c, KK_RED_MEAN, d);
	case KILN_OP_REDUCE_SUM: return lower_reduce_op(n, c, KK_RED_SUM, d);
	case KILN_OP_REDUCE_MAX: return lower_reduce_op(n, c, KK_RED_MAX, d);
	case KILN_OP_REDUCE_MIN: return lower_reduce_op(n, c, KK_RED_MIN, d);
	case KILN_OP_GLOBAL_AVG_POOL: return lower_global_pool(n, c, KK_RED_MEAN, d);
	case KILN_OP_GLOBAL_MAX_POOL: return lower_global_pool(n, c, KK_RED_MAX, d);
	case KILN_OP_SOFTMAX:
	case KILN_OP_LOG_SOFTMAX: return lower_softmax(n, c, d);
	case KILN_OP_LAYER_NORM: return lower_layer_norm(n, c, d);
	case KILN_OP_BATCH_NORM: return lower_batch_norm(n, c, d);
	case KILN_OP_MAX_POOL:
	case KILN_OP_AVERAGE_POOL: return lower_pool(n, c, d);
	default:
		return kiln_diag_error(d, KILN_ERR_UNSUPPORTED, n, "no CPU kernel for %s",
		                       kiln_op_name(n->op));
	}
}

/* ---- reduction fusion ------------------------------------------------------ */

static int rf_body_input(const kiln_graph *b, const kiln_value *v)
{
	for (int i = 0; i < b->n_inputs; i++)
		if (b->inputs[i] == v)
			return i;
	return -1;
}

/* Index in b->nodes of the node making v, -1 for a body input or constant. */
static int rf_maker(const kiln_graph *b, const kiln_value *v)
{
	return v && v->kind == KILN_VALUE_NODE ? kiln_graph_node_index(b, v->producer) : -1;
}

/* One program (KK_RFP_*): body nodes [from, to) of fusion n, built by the
 * loop fusion's lowering (kiln_lower_fusion_loop) over a view of n that has
 * just those nodes, input registers ins[0..nin) (body values; src[q]: the
 * fusion input each stands for, -1: the root's output) and outputs
 * outs[0..nout) (dst[j]: the fusion output each is, -1: the root's input).
 * Its instructions and constants are taken from the loop's parameters
 * (kk_params_elementwise.h); the walk is the reduction kernel's own. */
static kiln_status rf_program(const kiln_node *n, const kiln_cpu_target *t, kiln_kcall *c,
                              int from, int to, kiln_value **ins, const int *src, int nin,
                              kiln_value **outs, const int *dst, int nout, int *nreg,
                              kiln_diag *d)
{
	*nreg = 0;
	if (from == to || nout == 0) {
		for (int f = 0; f < KK_RFP_TAIL; f++)
			kiln_kcall_i(c, 0);
		return KILN_OK;
	}
	kiln_graph view = *n->body;
	view.nodes = n->body->nodes + from;
	view.n_nodes = to - from;
	view.inputs = ins;
	view.n_inputs = nin;
	view.outputs = outs;
	view.n_outputs = nout;
	kiln_value **outer = kiln_arena_alloc(c->arena, sizeof *outer * (size_t)(nin + 1));
	kiln_kcall *p = kiln_arena_alloc(c->arena, sizeof *p);
	if (!outer || !p)
		return kiln_diag_error(d, KILN_ERR_OOM, n, "out of memory");
	for (int q = 0; q < nin; q++)
		outer[q] = src[q] >= 0 ? n->inputs[src[q]] : ins[q];
	kiln_node part = *n;
	part.body = &view;
	part.inputs = outer;
	part.n_inputs = nin;
	part.outputs = outs;
	part.n_outputs = nout;
	p->arena = c->arena;
	KILN_TRY(kiln_lower_fusion_loop(&part, t, p, d));
	KILN_ENSURE(d, !p->overflow && p->ip[KK_EWP_NIN] == nin && p->ip[KK_EWP_NOUT] == nout,
	            KILN_ERR_INTERNAL, n, "the loop lowering gave an unexpected program");
	int64_t r = p->ip[KK_EWP_RANK], ninstr = p->ip[KK_EWP_NINSTR];
	const int64_t *out_reg = p->ip + KK_EWP_TAIL + r + nin * r + nin;
	const int64_t *instr = out_reg + nout;
	*nreg = (int)p->ip[KK_EWP_NREG];
	kiln_kcall_i(c, nin);
	kiln_kcall_i(c, nout);
	kiln_kcall_i(c, p->ip[KK_EWP_NREG]);
	kiln_kcall_i(c, p->ip[KK_EWP_NCONST]);
	kiln_kcall_i(c, ninstr);
	for (int q = 0; q < nin; q++)
		kiln_kcall_i(c, src[q]);
	for (int j = 0; j < nout; j++) {
		kiln_kcall_i(c, out_reg[j]);
		kiln_kcall_i(c, dst[j]);
	}
	for (int64_t q = 0; q < ninstr * KK_EWP_INSTR_SIZE; q++)
		kiln_kcall_i(c, instr[q]);
	for (int i = 0; i < p->n_fp; i++)
		kiln_kcall_f(c, p->fp[i]);
	return KILN_OK;
}

/* Checks LayerNorm's Scale or B (input k of root): a body input of LEN
 * floats along the last axis. Sets *idx (-1 when absent). */
static kiln_status rf_row_param(const kiln_node *n, const kiln_node *root, int k, int64_t len,
                                int *idx, kiln_diag *d)
{
	const kiln_value *v = kiln_node_in(root, k);
	*idx = v ? rf_body_input(n->body, v) : -1;
	if (!v)
		return KILN_OK;
	const kiln_type *pt = &v->type;
	KILN_ENSURE(d, *idx >= 0 && pt->dtype == KILN_DT_F32 && pt->rank >= 1 &&
	                   pt->dims[pt->rank - 1] == len && kiln_type_numel(pt) == len,
	            KILN_ERR_UNSUPPORTED, n,
	            "the LayerNorm's %s must be a fusion input of %lld floats along the last axis",
	            k == 1 ? "Scale" : "B", (long long)len);
	return KILN_OK;
}

kiln_status kiln_lower_fusion_reduction(const kiln_node *n, const kiln_cpu_target *t,
                                        kiln_kcall *c, kiln_diag *d)
{
	const kiln_graph *b = n->body;
	char a[96], bs[96];
	KILN_ENSURE(d, b && n->n_outputs >= 1 && b->n_outputs == n->n_outputs &&
	                   b->n_inputs == n->n_inputs,
	            KILN_ERR_UNSUPPORTED, n,
	            "a reduction fusion needs a body whose inputs and outputs bind to the node's");
	int ri = -1;
	for (int i = 0; i < b->n_nodes; i++) {
		kiln_op op = b->nodes[i]->op;
		if (op != KILN_OP_SOFTMAX && op != KILN_OP_LOG_SOFTMAX && op != KILN_OP_LAYER_NORM)
			continue;
		KILN_ENSURE(d, ri < 0, KILN_ERR_UNSUPPORTED, n,
		            "a reduction fusion has one Softmax, LogSoftmax or LayerNormalization");
		ri = i;
	}
	KILN_ENSURE(d, ri >= 0, KILN_ERR_UNSUPPORTED, n,
	            "a reduction fusion needs a Softmax, LogSoftmax or LayerNormalization");
	const kiln_node *root = b->nodes[ri];
	const kiln_value *x = root->inputs[0];
	const kiln_type *shape = &x->type;
	int axis = -1;
	KILN_ENSURE(d, shape->dtype == KILN_DT_F32 && shape->rank >= 1 && kiln_type_numel(shape) > 0 &&
	                   root->n_outputs == 1 &&
	                   kiln_axis_norm(kiln_node_int(root, "axis", -1), shape->rank, &axis) &&
	                   axis == shape->rank - 1,
	            KILN_ERR_UNSUPPORTED, n,
	            "the CPU backend reduces over the last axis of a non-empty f32 tensor with one "
	            "output, not %s '%s' over %s (axis %d)",
	            kiln_op_name(root->op), root->name, kiln_type_str(shape, a, sizeof a), axis);
	int64_t len = shape->dims[shape->rank - 1], rows = kiln_type_numel(shape) / len;
	int orank = shape->rank - 1, nin = n->n_inputs;
	KILN_ENSURE(d, nin < KK_EWP_MAX_REG, KILN_ERR_UNSUPPORTED, n,
	            "a reduction fusion takes fewer than %d inputs", KK_EWP_MAX_REG);
	for (int j = 0; j < n->n_outputs; j++)
		KILN_ENSURE(d, kiln_type_equal(&n->outputs[j]->type, shape), KILN_ERR_UNSUPPORTED, n,
		            "output %d is %s: a reduction fusion makes %s", j,
		            kiln_type_str(&n->outputs[j]->type, a, sizeof a),
		            kiln_type_str(shape, bs, sizeof bs));
	int scale = -1, bias = -1;
	if (root->op == KILN_OP_LAYER_NORM) {
		KILN_TRY(rf_row_param(n, root, 1, len, &scale, d));
		KILN_ENSURE(d, scale >= 0, KILN_ERR_UNSUPPORTED, n, "the LayerNorm has no Scale");
		KILN_TRY(rf_row_param(n, root, 2, len, &bias, d));
	}
	KILN_ENSURE(d, x->kind != KILN_VALUE_CONST, KILN_ERR_UNSUPPORTED, n,
	            "the root's input is the constant '%s'", x->name);

	/* the programs' registers: A reads what the prologue reads, B the root's
	 * output and what the epilogue reads; the epilogue never reads the
	 * prologue's values (the kernel has them only while it builds the row) */
	size_t cap = (size_t)nin + (size_t)n->n_outputs + 2;
	kiln_value **ins[2], **outs[2];
	int *src[2], *dst[2], n_ins[2] = {0, 0}, n_outs[2] = {0, 0};
	for (int p = 0; p < 2; p++) {
		ins[p] = kiln_arena_alloc(c->arena, sizeof **ins * cap);
		outs[p] = kiln_arena_alloc(c->arena, sizeof **outs * cap);
		src[p] = kiln_arena_alloc(c->arena, sizeof **src * cap);
		dst[p] = kiln_arena_alloc(c->arena, sizeof **dst * cap);
		if (!ins[p] || !outs[p] || !src[p] || !dst[p])
			return kiln_diag_error(d, KILN_ERR_OOM, n, "out of memory");
	}
	ins[1][0] = root->outputs[0];
	src[1][0] = -1;
	n_ins[1] = 1;
	for (int k = 0; k < nin; k++) {
		bool read[2] = {false, false};
		for (int i = 0; i < b->n_nodes; i++)
			for (int q = 0; i != ri && q < b->nodes[i]->n_inputs; q++)
				read[i > ri] |= b->nodes[i]->inputs[q] == b->inputs[k];
		for (int p = 0; p < 2; p++)
			if (read[p]) {
				ins[p][n_ins[p]] = b->inputs[k];
				src[p][n_ins[p]++] = k;
			}
	}
	for (int i = ri + 1; i < b->n_nodes; i++)
		for (int q = 0; q < b->nodes[i]->n_inputs; q++) {
			int m = rf_maker(b, b->nodes[i]->inputs[q]);
			KILN_ENSURE(d, m < 0 || m >= ri, KILN_ERR_UNSUPPORTED, n,
			            "epilogue node '%s' reads '%s', a value of the prologue",
			            b->nodes[i]->name, b->nodes[i]->inputs[q]->name);
		}
	int xi = rf_body_input(b, x), y = -1;
	if (xi < 0) {
		outs[0][0] = (kiln_value *)x;
		dst[0][0] = -1;
		n_outs[0] = 1;
	}
	for (int j = 0; j < b->n_outputs; j++) {
		const kiln_value *v = b->outputs[j];
		int m = rf_maker(b, v);
		KILN_ENSURE(d, m >= 0, KILN_ERR_UNSUPPORTED, n,
		            "body output %d ('%s') is not made by a body node", j, v->name);
		if (m == ri) {
			KILN_ENSURE(d, y < 0, KILN_ERR_UNSUPPORTED, n,
			            "the root's output is more than one output of the fusion");
			y = j;
			continue;
		}
		int p = m > ri;
		outs[p][n_outs[p]] = b->outputs[j];
		dst[p][n_outs[p]++] = j;
	}

	kiln_kcall_i(c, root->op == KILN_OP_LAYER_NORM    ? KK_RF_LAYER_NORM
	                : root->op == KILN_OP_LOG_SOFTMAX ? KK_RF_LOG_SOFTMAX
	                                                  : KK_RF_SOFTMAX);
	kiln_kcall_i(c, nin);
	kiln_kcall_i(c, n->n_outputs);
	kiln_kcall_i(c, rows);
	kiln_kcall_i(c, len);
	kiln_kcall_i(c, orank);
	kiln_kcall_i(c, xi);
	kiln_kcall_i(c, scale);
	kiln_kcall_i(c, bias);
	kiln_kcall_i(c, y);
	for (int i = 0; i < orank; i++)
		kiln_kcall_i(c, shape->dims[i]);
	for (int pass = 0; pass < 2; pass++)
		for (int k = 0; k < nin; k++) {
			const kiln_type *it = &n->inputs[k]->type;
			KILN_ENSURE(d, it->dtype == KILN_DT_F32 && it->rank <= shape->rank,
			            KILN_ERR_UNSUPPORTED, n, "input %d (%s) is not an f32 tensor that "
			            "broadcasts to %s", k, kiln_type_str(it, a, sizeof a),
			            kiln_type_str(shape, bs, sizeof bs));
			for (int i = pass ? 0 : orank; i < (pass ? orank : orank + 1); i++) {
				int64_t s = kiln_operand_stride(it, shape, i);
				KILN_ENSURE(d, s >= 0, KILN_ERR_SHAPE, n, "input %d (%s) does not broadcast to %s",
				            k, kiln_type_str(it, a, sizeof a), kiln_type_str(shape, bs, sizeof bs));
				kiln_kcall_i(c, s);
			}
		}
	kiln_kcall_f(c, root->op == KILN_OP_LAYER_NORM ? kiln_node_float(root, "epsilon", 1e-5f) : 0);
	int nreg[2];
	KILN_TRY(rf_program(n, t, c, 0, ri, ins[0], src[0], n_ins[0], outs[0], dst[0], n_outs[0],
	                    &nreg[0], d));
	KILN_TRY(rf_program(n, t, c, ri + 1, b->n_nodes, ins[1], src[1], n_ins[1], outs[1], dst[1],
	                    n_outs[1], &nreg[1], d));
	KILN_ENSURE(d, xi >= 0 || nreg[0] > 0, KILN_ERR_INTERNAL, n, "nothing makes the root's input");
	int64_t regs = (int64_t)(nreg[0] + nreg[1]) * KK_RF_BLOCK;
	c->thread_scratch_bytes = (KK_RF_ROW_FLOATS(len) + regs) * (int64_t)sizeof(float);
	c->fn = "kk_reduce_fusion_f32";
	return KILN_OK;
}
