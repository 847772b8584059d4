/* lower_elementwise.c — lowering for the elementwise family (see cpu.h):
 * activations, unary math, binary arithmetic, variadic Min/Max, comparisons,
 * Where, Not and Cast, all onto the kernels of kernels/kk_elementwise.c.
 *
 * Broadcasting is resolved here: each walked input gets element strides over
 * the output dims (0 where it repeats), size-1 output dims are dropped and
 * adjacent dims that are contiguous for every operand merged, so the kernel
 * walks as few dims as possible with a long, stride-0-or-1 inner run. */
#include <string.h>

#include "cpu.h"
#include "kk_dtype.h"
#include "kk_params_elementwise.h"

/* Every kernel family takes kiln_dtype values as its KK_DT_* codes
 * (kernels/kk_dtype.h); the lowerings pass dtypes through as they are. */
_Static_assert(KK_DT_F32 == (int)KILN_DT_F32 && KK_DT_F16 == (int)KILN_DT_F16 &&
               KK_DT_BF16 == (int)KILN_DT_BF16 && KK_DT_F64 == (int)KILN_DT_F64 &&
               KK_DT_I64 == (int)KILN_DT_I64 && KK_DT_I32 == (int)KILN_DT_I32 &&
               KK_DT_I8 == (int)KILN_DT_I8 && KK_DT_U8 == (int)KILN_DT_U8 &&
               KK_DT_BOOL == (int)KILN_DT_BOOL && KILN_DTYPE_COUNT == 9,
               "KK_DT_* must match kiln_dtype");

static int ew_code(kiln_op op)
{
	switch (op) {
	case KILN_OP_RELU: return KK_EW_RELU;
	case KILN_OP_LEAKY_RELU: return KK_EW_LEAKY_RELU;
	case KILN_OP_SIGMOID: return KK_EW_SIGMOID;
	case KILN_OP_TANH: return KK_EW_TANH;
	case KILN_OP_CLIP: return KK_EW_CLIP;
	case KILN_OP_HARD_SIGMOID: return KK_EW_HARD_SIGMOID;
	case KILN_OP_HARD_SWISH: return KK_EW_HARD_SWISH;
	case KILN_OP_GELU: return KK_EW_GELU;
	case KILN_OP_ERF: return KK_EW_ERF;
	case KILN_OP_SQRT: return KK_EW_SQRT;
	case KILN_OP_EXP: return KK_EW_EXP;
	case KILN_OP_LOG: return KK_EW_LOG;
	case KILN_OP_NEG: return KK_EW_NEG;
	case KILN_OP_ABS: return KK_EW_ABS;
	case KILN_OP_RECIPROCAL: return KK_EW_RECIPROCAL;
	case KILN_OP_NOT: return KK_EW_NOT;
	case KILN_OP_ADD: return KK_EW_ADD;
	case KILN_OP_SUB: return KK_EW_SUB;
	case KILN_OP_MUL: return KK_EW_MUL;
	case KILN_OP_DIV: return KK_EW_DIV;
	case KILN_OP_POW: return KK_EW_POW;
	case KILN_OP_PRELU: return KK_EW_PRELU;
	case KILN_OP_MIN: return KK_EW_MIN;
	case KILN_OP_MAX: return KK_EW_MAX;
	case KILN_OP_EQUAL: return KK_EW_EQUAL;
	case KILN_OP_LESS: return KK_EW_LESS;
	case KILN_OP_GREATER: return KK_EW_GREATER;
	case KILN_OP_WHERE: return KK_EW_WHERE;
	case KILN_OP_CAST: return KK_EW_CAST;
	default: return -1;
	}
}

/* Element stride of `in` along output dim d of `out` (right-aligned
 * broadcasting), 0 where it repeats; -1 if it does not broadcast there. */
static int64_t bcast_stride(const kiln_type *in, const kiln_type *out, int d)
{
	int id = d - (out->rank - in->rank);
	if (id < 0 || in->dims[id] == 1)
		return 0;
	if (in->dims[id] != out->dims[d])
		return -1;
	int64_t s = 1;
	for (int i = id + 1; i < in->rank; i++)
		s *= in->dims[i];
	return s;
}

/* Pushes the walk of the first nin inputs of n over output type out:
 * the fixed part and the tail of kk_params_elementwise.h. */
static kiln_status push_walk(const kiln_node *n, int op, int nin, const kiln_type *out,
                             kiln_kcall *c, kiln_diag *d)
{
	int64_t dims[KILN_MAX_RANK], st[KILN_KCALL_MAX_T][KILN_MAX_RANK];
	char a[96], b[96];
	for (int k = 0; k < nin; k++) {
		const kiln_value *v = n->inputs[k];
		KILN_ENSURE(d, v, KILN_ERR_SHAPE, n, "input %d is omitted", k);
		KILN_ENSURE(d, v->type.rank <= out->rank, KILN_ERR_SHAPE, n,
		            "input %d (%s) does not broadcast to %s", k,
		            kiln_type_str(&v->type, a, sizeof a), kiln_type_str(out, b, sizeof b));
		for (int i = 0; i < out->rank; i++)
			KILN_ENSURE(d, bcast_stride(&v->type, out, i) >= 0, KILN_ERR_SHAPE, n,
			            "input %d (%s) does not broadcast to %s", k,
			            kiln_type_str(&v->type, a, sizeof a), kiln_type_str(out, b, sizeof b));
	}
	/* Drop size-1 dims; merge dim j into the previous kept one when every
	 * operand steps through both as through one. */
	int r = 0;
	for (int j = 0; j < out->rank; j++) {
		if (out->dims[j] == 1)
			continue;
		bool merge = r > 0;
		for (int k = 0; k < nin && merge; k++)
			merge = st[k][r - 1] ==
			        bcast_stride(&n->inputs[k]->type, out, j) * out->dims[j];
		if (merge) {
			dims[r - 1] *= out->dims[j];
			for (int k = 0; k < nin; k++)
				st[k][r - 1] = bcast_stride(&n->inputs[k]->type, out, j);
		} else {
			dims[r] = out->dims[j];
			for (int k = 0; k < nin; k++)
				st[k][r] = bcast_stride(&n->inputs[k]->type, out, j);
			r++;
		}
	}
	if (r == 0) {
		dims[0] = 1;
		for (int k = 0; k < nin; k++)
			st[k][0] = 0;
		r = 1;
	}
	kiln_kcall_i(c, op);
	kiln_kcall_i(c, nin);
	kiln_kcall_i(c, n->n_inputs);
	kiln_kcall_i(c, out->dtype);
	kiln_kcall_i(c, r);
	kiln_kcall_i(c, kiln_type_numel(out));
	for (int k = 0; k < nin; k++)
		kiln_kcall_i(c, n->inputs[k]->type.dtype);
	for (int i = 0; i < r; i++)
		kiln_kcall_i(c, dims[i]);
	for (int k = 0; k < nin; k++)
		for (int i = 0; i < r; i++)
			kiln_kcall_i(c, st[k][i]);
	return KILN_OK;
}

static kiln_status check_clip(const kiln_node *n, kiln_diag *d)
{
	char a[96];
	for (int k = 1; k < 3; k++) {
		const kiln_value *v = kiln_node_in(n, k);
		if (!v)
			continue;
		KILN_ENSURE(d, v->type.dtype == n->inputs[0]->type.dtype, KILN_ERR_SHAPE, n,
		            "%s has dtype %s, input 0 %s", k == 1 ? "min" : "max",
		            kiln_dtype_name(v->type.dtype), kiln_dtype_name(n->inputs[0]->type.dtype));
		KILN_ENSURE(d, kiln_type_numel(&v->type) == 1, KILN_ERR_SHAPE, n,
		            "%s (%s) must be a scalar", k == 1 ? "min" : "max",
		            kiln_type_str(&v->type, a, sizeof a));
	}
	return KILN_OK;
}

kiln_status kiln_lower_elementwise(const kiln_node *n, const kiln_cpu_target *t, kiln_kcall *c,
                                   kiln_diag *d)
{
	(void)t;
	int op = ew_code(n->op);
	if (op < 0)
		return kiln_diag_error(d, KILN_ERR_INTERNAL, n, "%s is not an elementwise op",
		                       kiln_op_name(n->op));
	KILN_ENSURE(d, n->n_inputs >= 1 && n->inputs[0] && n->n_outputs == 1, KILN_ERR_SHAPE, n,
	            "expected at least one input and exactly one output");
	const kiln_type *out = &n->outputs[0]->type;
	kiln_dtype dt = n->inputs[0]->type.dtype;
	double alpha = 0, beta = 0;
	int nin = 1;
	bool all_f32 = true;
	switch (n->op) {
	case KILN_OP_LEAKY_RELU: alpha = kiln_node_float(n, "alpha", 0.01f); break;
	case KILN_OP_HARD_SIGMOID:
		alpha = kiln_node_float(n, "alpha", 0.2f);
		beta = kiln_node_float(n, "beta", 0.5f);
		break;
	case KILN_OP_GELU: {
		const char *mode = kiln_node_string(n, "approximate", "none");
		if (strcmp(mode, "tanh") == 0)
			op = KK_EW_GELU_TANH;
		else if (strcmp(mode, "none") != 0)
			return kiln_diag_error(d, KILN_ERR_UNSUPPORTED, n,
			                       "approximate '%s' is not one of 'none', 'tanh'", mode);
		break;
	}
	case KILN_OP_CLIP: KILN_TRY(check_clip(n, d)); break;
	case KILN_OP_ADD:
	case KILN_OP_SUB:
	case KILN_OP_MUL:
	case KILN_OP_DIV:
	case KILN_OP_POW:
	case KILN_OP_PRELU:
	case KILN_OP_EQUAL:
	case KILN_OP_LESS:
	case KILN_OP_GREATER: nin = 2; break;
	case KILN_OP_MIN:
	case KILN_OP_MAX: nin = n->n_inputs; break;
	case KILN_OP_WHERE: nin = 3; break;
	default: break;
	}
	KILN_ENSURE(d, n->n_inputs >= nin, KILN_ERR_SHAPE, n, "expected %d inputs, has %d", nin,
	            n->n_inputs);
	for (int k = 0; k < nin; k++)
		all_f32 = all_f32 && n->inputs[k] && n->inputs[k]->type.dtype == KILN_DT_F32;
	all_f32 = all_f32 && out->dtype == KILN_DT_F32;

	if (op <= KK_EW_NOT) {
		KILN_ENSURE(d, kiln_type_numel(&n->inputs[0]->type) == kiln_type_numel(out),
		            KILN_ERR_SHAPE, n, "input has %lld elements, output %lld",
		            (long long)kiln_type_numel(&n->inputs[0]->type),
		            (long long)kiln_type_numel(out));
		c->fn = dt == KILN_DT_F32 && op != KK_EW_NOT ? "kk_ew_unary_f32" : "kk_ew_unary";
	} else if (op <= KK_EW_MAX) {
		c->fn = all_f32 ? "kk_ew_binary_f32" : "kk_ew_binary";
	} else if (op <= KK_EW_GREATER) {
		c->fn = "kk_ew_compare";
	} else if (op == KK_EW_WHERE) {
		c->fn = "kk_ew_where";
	} else {
		c->fn = "kk_ew_cast";
	}
	KILN_TRY(push_walk(n, op, nin, out, c, d));
	kiln_kcall_f(c, alpha);
	kiln_kcall_f(c, beta);
	return KILN_OK;
}
