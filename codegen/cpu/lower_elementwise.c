/* lower_elementwise.c — lowering for the elementwise family (see cpu.h):
 * activations, unary math, binary arithmetic, variadic Min/Max, comparisons,
 * Where, Not and Cast, all onto the kernels of kernels/kk_elementwise.c;
 * and loop fusions (kiln_lower_fusion_loop): a body of f32 elementwise ops
 * as one program for kk_ew_program_f32.
 *
 * Broadcasting is resolved here: each walked input gets element strides over
 * the output dims (0 where it repeats), size-1 output dims are dropped and
 * adjacent dims that are contiguous for every operand merged, so the kernel
 * walks as few dims as possible with a long, stride-0-or-1 inner run. */
#include <math.h>
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

/* Checks that operand type in (input k of n) broadcasts to out; one
 * element broadcasts to anything. */
static kiln_status check_bcast(const kiln_node *n, int k, const kiln_type *in,
                               const kiln_type *out, kiln_diag *d)
{
	char a[96], b[96];
	if (kiln_type_numel(in) == 1)
		return KILN_OK;
	bool ok = in->rank <= out->rank;
	for (int i = 0; i < out->rank && ok; i++)
		ok = bcast_stride(in, out, i) >= 0;
	KILN_ENSURE(d, ok, KILN_ERR_SHAPE, n, "input %d (%s) does not broadcast to %s", k,
	            kiln_type_str(in, a, sizeof a), kiln_type_str(out, b, sizeof b));
	return KILN_OK;
}

int64_t kiln_operand_stride(const kiln_type *in, const kiln_type *out, int d)
{
	return kiln_type_numel(in) == 1 ? 0 : bcast_stride(in, out, d);
}

/* The walk of nin operand types (each checked by check_bcast) over output
 * type out: drops size-1 dims and merges dim j into the previous kept one
 * when every operand steps through both as through one. Sets dims[r] and
 * st[k][r]; returns r >= 1. */
static int walk_dims(const kiln_type *const *in, int nin, const kiln_type *out, int64_t *dims,
                     int64_t (*st)[KILN_MAX_RANK])
{
	int r = 0;
	for (int j = 0; j < out->rank; j++) {
		if (out->dims[j] == 1)
			continue;
		bool merge = r > 0;
		for (int k = 0; k < nin && merge; k++)
			merge = st[k][r - 1] == kiln_operand_stride(in[k], out, j) * out->dims[j];
		if (merge) {
			dims[r - 1] *= out->dims[j];
			for (int k = 0; k < nin; k++)
				st[k][r - 1] = kiln_operand_stride(in[k], out, j);
		} else {
			dims[r] = out->dims[j];
			for (int k = 0; k < nin; k++)
				st[k][r] = kiln_operand_stride(in[k], out, j);
			r++;
		}
	}
	if (r == 0) {
		dims[0] = 1;
		for (int k = 0; k < nin; k++)
			st[k][0] = 0;
		r = 1;
	}
	return r;
}

/* Pushes the walk of the first nin inputs of n over output type out:
 * the fixed part and the tail of kk_params_elementwise.h. */
static kiln_status push_walk(const kiln_node *n, int op, int nin, const kiln_type *out,
                             kiln_kcall *c, kiln_diag *d)
{
	int64_t dims[KILN_MAX_RANK], st[KILN_KCALL_MAX_T][KILN_MAX_RANK];
	const kiln_type *in[KILN_KCALL_MAX_T];
	for (int k = 0; k < nin; k++) {
		const kiln_value *v = n->inputs[k];
		KILN_ENSURE(d, v, KILN_ERR_SHAPE, n, "input %d is omitted", k);
		in[k] = &v->type;
		KILN_TRY(check_bcast(n, k, in[k], out, d));
	}
	int r = walk_dims(in, nin, out, dims, st);
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
		c->in_place = 1u;
	} else if (op <= KK_EW_MAX) {
		c->fn = all_f32 ? "kk_ew_binary_f32" : "kk_ew_binary";
		/* a variadic Min/Max accumulates into its output while it reads
		 * inputs 2 and up: only the first two may share its buffer */
		c->in_place = 3u;
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

/* ---- loop fusion ----------------------------------------------------------- */

/* A loop fusion's body as a program for kk_ew_program_f32
 * (kk_params_elementwise.h). Registers: the inputs, then the constants
 * (all known before the first temporary is handed out), then temporaries,
 * reused once the last instruction reading them has run. */
typedef struct ew_program {
	const kiln_node *n;
	int nin, nconst, ninstr, nreg;
	bool sealed;                 /* every constant has its register */
	double consts[KK_EWP_MAX_REG];
	int *reg;                    /* register of each body value id, -1: none */
	bool busy[KK_EWP_MAX_REG];   /* temporaries holding a live value */
	int64_t (*instr)[KK_EWP_INSTR_SIZE];
	int cap_instr;
	kiln_diag *d;
} ew_program;

/* The register of scalar constant x (one per distinct f32 value). */
static kiln_status prog_const(ew_program *p, double x, int *r)
{
	float f = (float)x;
	for (int i = 0; i < p->nconst; i++) {
		float g = (float)p->consts[i];
		if (memcmp(&g, &f, sizeof f) == 0) {
			*r = p->nin + i;
			return KILN_OK;
		}
	}
	if (p->sealed)
		return kiln_diag_error(p->d, KILN_ERR_INTERNAL, p->n, "loop constant %g came late", x);
	KILN_ENSURE(p->d, p->nin + p->nconst < KK_EWP_MAX_REG, KILN_ERR_UNSUPPORTED, p->n,
	            "the loop needs more than %d registers", KK_EWP_MAX_REG);
	p->consts[p->nconst] = f;
	*r = p->nin + p->nconst++;
	return KILN_OK;
}

/* The register of body value v, an operand of body node bn. */
static kiln_status prog_operand(ew_program *p, const kiln_node *bn, const kiln_value *v, int *r)
{
	KILN_ENSURE(p->d, v, KILN_ERR_UNSUPPORTED, p->n, "body node '%s' (%s) has an omitted input",
	            bn->name, kiln_op_name(bn->op));
	if (p->reg[v->id] >= 0) {
		*r = p->reg[v->id];
		return KILN_OK;
	}
	KILN_ENSURE(p->d, v->kind == KILN_VALUE_CONST && v->data && v->type.dtype == KILN_DT_F32 &&
	                      kiln_type_numel(&v->type) == 1,
	            KILN_ERR_UNSUPPORTED, p->n,
	            "body node '%s' (%s) reads '%s', which is not a scalar f32 constant, a body "
	            "input or an earlier result",
	            bn->name, kiln_op_name(bn->op), v->name);
	KILN_TRY(prog_const(p, ((const float *)v->data)[0], r));
	p->reg[v->id] = *r;
	return KILN_OK;
}

static kiln_status prog_emit(ew_program *p, int op, int dst, int a, int b, int c)
{
	KILN_ENSURE(p->d, p->ninstr < p->cap_instr, KILN_ERR_UNSUPPORTED, p->n,
	            "the loop needs more than %d instructions", p->cap_instr);
	int64_t *in = p->instr[p->ninstr++];
	in[KK_EWP_I_OP] = op;
	in[KK_EWP_I_DST] = dst;
	in[KK_EWP_I_A] = a;
	in[KK_EWP_I_B] = b;
	in[KK_EWP_I_C] = c;
	return KILN_OK;
}

/* The program op of body node bn (KK_EW_*), or -1 if a loop cannot run it:
 * f32 activations, unary math, arithmetic, Min/Max, Identity. */
static int prog_op(const kiln_node *bn)
{
	bool f32 = bn->n_outputs == 1 && bn->outputs[0]->type.dtype == KILN_DT_F32;
	for (int k = 0; k < bn->n_inputs && f32; k++)
		f32 = !bn->inputs[k] || bn->inputs[k]->type.dtype == KILN_DT_F32;
	if (!f32)
		return -1;
	if (bn->op == KILN_OP_IDENTITY ||
	    ((bn->op == KILN_OP_MIN || bn->op == KILN_OP_MAX) && bn->n_inputs == 1))
		return KK_EW_COPY;
	if (bn->op == KILN_OP_GELU) {
		const char *mode = kiln_node_string(bn, "approximate", "none");
		return strcmp(mode, "tanh") == 0 ? KK_EW_GELU_TANH
		       : strcmp(mode, "none") == 0 ? KK_EW_GELU : -1;
	}
	int op = ew_code(bn->op);
	return op < 0 || op == KK_EW_NOT || op > KK_EW_MAX ? -1 : op;
}

/* 1 / v when v is a scalar f32 constant 2^k whose reciprocal is a normal
 * f32 (x / v == x * (1 / v) exactly, so the cheaper multiply changes no
 * result), else 0. */
static float exact_reciprocal(const kiln_value *v)
{
	if (!v || v->kind != KILN_VALUE_CONST || !v->data || v->type.dtype != KILN_DT_F32 ||
	    kiln_type_numel(&v->type) != 1)
		return 0;
	int e;
	float x = *(const float *)v->data;
	return isfinite(x) && frexpf(x, &e) == (x < 0 ? -0.5f : 0.5f) && e >= -124 && e <= 127
	           ? 1.0f / x
	           : 0;
}

/* Source registers of body node bn for instruction *op (its extra ones from
 * attributes and Clip's omitted bounds are constants). Min/Max: src[0]. A
 * division by a power of two becomes a multiplication (*op changes). */
static kiln_status prog_srcs(ew_program *p, const kiln_node *bn, int *op, int *src)
{
	char a[96];
	src[0] = src[1] = src[2] = -1;
	bool binary = *op >= KK_EW_ADD && *op <= KK_EW_MAX && bn->op != KILN_OP_MIN &&
	              bn->op != KILN_OP_MAX;
	float rcp = bn->op == KILN_OP_DIV ? exact_reciprocal(kiln_node_in(bn, 1)) : 0;
	if (rcp != 0) {
		*op = KK_EW_MUL;
		KILN_TRY(prog_operand(p, bn, kiln_node_in(bn, 0), &src[0]));
		return prog_const(p, rcp, &src[1]);
	}
	for (int k = 0; k < (binary ? 2 : 1); k++)
		KILN_TRY(prog_operand(p, bn, kiln_node_in(bn, k), &src[k]));
	switch (bn->op) {
	case KILN_OP_LEAKY_RELU: return prog_const(p, kiln_node_float(bn, "alpha", 0.01f), &src[1]);
	case KILN_OP_HARD_SIGMOID:
		KILN_TRY(prog_const(p, kiln_node_float(bn, "alpha", 0.2f), &src[1]));
		return prog_const(p, kiln_node_float(bn, "beta", 0.5f), &src[2]);
	case KILN_OP_CLIP:
		for (int k = 1; k < 3; k++) {
			const kiln_value *v = kiln_node_in(bn, k);
			if (!v) {
				KILN_TRY(prog_const(p, k == 1 ? -INFINITY : INFINITY, &src[k]));
				continue;
			}
			KILN_ENSURE(p->d, kiln_type_numel(&v->type) == 1, KILN_ERR_UNSUPPORTED, p->n,
			            "body node '%s' (Clip): %s (%s) must be a scalar", bn->name,
			            k == 1 ? "min" : "max", kiln_type_str(&v->type, a, sizeof a));
			KILN_TRY(prog_operand(p, bn, v, &src[k]));
		}
		return KILN_OK;
	case KILN_OP_MIN:
	case KILN_OP_MAX:
		for (int k = 1; k < bn->n_inputs; k++) {
			int r;
			KILN_TRY(prog_operand(p, bn, bn->inputs[k], &r));
		}
		return KILN_OK;
	default: return KILN_OK;
	}
}

/* Every constant node i of the body reads, before any temporary exists. */
static kiln_status prog_consts(ew_program *p, const kiln_graph *b)
{
	for (int i = 0; i < b->n_nodes; i++) {
		const kiln_node *bn = b->nodes[i];
		int op = prog_op(bn), src[3];
		if (op < 0)
			return kiln_diag_error(p->d, KILN_ERR_UNSUPPORTED, p->n,
			                       "body node '%s' (%s) cannot run in a loop fusion: the CPU "
			                       "backend takes f32 activations, unary math, arithmetic, "
			                       "Min/Max and Identity",
			                       bn->name, kiln_op_name(bn->op));
		/* node outputs have no register yet: give them a placeholder */
		for (int k = 0; k < bn->n_inputs; k++) {
			const kiln_value *v = bn->inputs[k];
			if (v && v->kind == KILN_VALUE_NODE && p->reg[v->id] < 0)
				return kiln_diag_error(p->d, KILN_ERR_UNSUPPORTED, p->n,
				                       "body node '%s' (%s) reads '%s' before it is made",
				                       bn->name, kiln_op_name(bn->op), v->name);
		}
		KILN_TRY(prog_srcs(p, bn, &op, src));
		p->reg[bn->outputs[0]->id] = KK_EWP_MAX_REG; /* a placeholder until then */
	}
	for (int i = 0; i < b->n_nodes; i++)
		p->reg[b->nodes[i]->outputs[0]->id] = -1;
	p->sealed = true;
	return KILN_OK;
}

/* The instructions of body node bn, its result in a free temporary. */
static kiln_status prog_node(ew_program *p, const kiln_node *bn, const kiln_type *shape)
{
	char a[96], b[96];
	int op = prog_op(bn), src[3];
	KILN_ENSURE(p->d, kiln_type_equal(&bn->outputs[0]->type, shape), KILN_ERR_UNSUPPORTED, p->n,
	            "body node '%s' (%s) makes %s, the loop's shape is %s", bn->name,
	            kiln_op_name(bn->op), kiln_type_str(&bn->outputs[0]->type, a, sizeof a),
	            kiln_type_str(shape, b, sizeof b));
	KILN_TRY(prog_srcs(p, bn, &op, src));
	/* the destination is taken before this node's sources are freed, so a
	 * Min/Max fold never overwrites an operand it still has to read */
	int dst = p->nin + p->nconst;
	while (dst < KK_EWP_MAX_REG && p->busy[dst])
		dst++;
	KILN_ENSURE(p->d, dst < KK_EWP_MAX_REG, KILN_ERR_UNSUPPORTED, p->n,
	            "the loop needs more than %d registers", KK_EWP_MAX_REG);
	p->busy[dst] = true;
	if (dst + 1 > p->nreg)
		p->nreg = dst + 1;
	p->reg[bn->outputs[0]->id] = dst;
	if ((bn->op != KILN_OP_MIN && bn->op != KILN_OP_MAX) || op == KK_EW_COPY)
		return prog_emit(p, op, dst, src[0], src[1], src[2]);
	for (int k = 1; k < bn->n_inputs; k++) {
		int r;
		KILN_TRY(prog_operand(p, bn, bn->inputs[k], &r));
		KILN_TRY(prog_emit(p, op, dst, k == 1 ? src[0] : dst, r, -1));
	}
	return KILN_OK;
}

/* Merges the walk's inner dims further where some inputs repeat a short
 * inner run (a [S] mask over [H,S,S] walks as [H*S, S] with the mask's
 * stride 0 on H*S): while the inner dim is at most KK_EWP_BLOCK / 2 and
 * every input steps through the dim outside it contiguously, or repeats
 * its inner run (the period), or is constant over both, the two become
 * one. The kernel then runs long runs instead of many short ones. Sets
 * period[k] (0: none); returns the new rank. */
static int walk_periods(int nin, int r, int64_t *dims, int64_t (*st)[KILN_MAX_RANK],
                        int64_t *period)
{
	for (int k = 0; k < nin; k++)
		period[k] = 0;
	while (r >= 2) {
		int64_t inner = dims[r - 1];
		bool any = false, ok = true;
		for (int k = 0; k < nin && ok; k++) {
			int64_t so = st[k][r - 2], si = st[k][r - 1];
			bool repeats = period[k] || (si == 1 && inner * 2 <= KK_EWP_BLOCK);
			ok = (si == 1 && !period[k] && so == inner) || (repeats && so == 0) ||
			     (si == 0 && !period[k] && so == 0);
			any |= ok && repeats && so == 0;
		}
		if (!ok || !any)
			break;
		for (int k = 0; k < nin; k++) {
			if ((period[k] || st[k][r - 1] == 1) && st[k][r - 2] == 0) {
				if (!period[k])
					period[k] = inner;
				st[k][r - 2] = 0;
			} else {
				st[k][r - 2] = st[k][r - 1];
			}
		}
		dims[r - 2] *= inner;
		r--;
	}
	for (int k = 0; k < nin; k++)
		if (period[k])
			st[k][r - 1] = 0;
	return r;
}

kiln_status kiln_lower_fusion_loop(const kiln_node *n, const kiln_cpu_target *t, kiln_kcall *c,
                                   kiln_diag *d)
{
	(void)t;
	const kiln_graph *b = n->body;
	char a[96], bs[96];
	KILN_ENSURE(d, b && n->n_outputs >= 1 && b->n_outputs == n->n_outputs &&
	                   b->n_inputs == n->n_inputs,
	            KILN_ERR_UNSUPPORTED, n,
	            "a loop fusion needs a body whose inputs and outputs bind to the node's");
	const kiln_type *shape = &n->outputs[0]->type;
	for (int j = 0; j < n->n_outputs; j++)
		KILN_ENSURE(d, kiln_type_equal(&n->outputs[j]->type, shape), KILN_ERR_UNSUPPORTED, n,
		            "output %d is %s, output 0 %s: a loop makes one shape", j,
		            kiln_type_str(&n->outputs[j]->type, a, sizeof a),
		            kiln_type_str(shape, bs, sizeof bs));
	KILN_ENSURE(d, shape->dtype == KILN_DT_F32 && shape->rank <= KK_EW_MAX_RANK,
	            KILN_ERR_UNSUPPORTED, n, "the CPU backend runs f32 loops of rank <= %d, not %s",
	            KK_EW_MAX_RANK, kiln_type_str(shape, a, sizeof a));
	KILN_ENSURE(d, n->n_inputs < KK_EWP_MAX_REG, KILN_ERR_UNSUPPORTED, n,
	            "a loop fusion takes fewer than %d inputs", KK_EWP_MAX_REG);
	const kiln_type *in[KILN_KCALL_MAX_T];
	for (int k = 0; k < n->n_inputs; k++) {
		const kiln_value *v = n->inputs[k];
		KILN_ENSURE(d, v && v->type.dtype == KILN_DT_F32, KILN_ERR_UNSUPPORTED, n,
		            "input %d is not f32", k);
		in[k] = &v->type;
		KILN_TRY(check_bcast(n, k, in[k], shape, d));
	}

	ew_program p = {.n = n, .nin = n->n_inputs, .nreg = n->n_inputs, .d = d};
	p.cap_instr = (KILN_KCALL_MAX_IP - KK_EWP_TAIL) / KK_EWP_INSTR_SIZE;
	p.reg = kiln_arena_alloc(c->arena, sizeof(int) * (size_t)(b->n_values + 1));
	p.instr = kiln_arena_alloc(c->arena, sizeof *p.instr * (size_t)p.cap_instr);
	/* the last node reading each body value; body outputs live to the end */
	int *last = kiln_arena_alloc(c->arena, sizeof(int) * (size_t)(b->n_values + 1));
	if (!p.reg || !p.instr || !last)
		return kiln_diag_error(d, KILN_ERR_OOM, n, "out of memory");
	for (int i = 0; i < b->n_values; i++) {
		p.reg[i] = -1;
		last[i] = -1;
	}
	for (int i = 0; i < b->n_inputs; i++)
		p.reg[b->inputs[i]->id] = i;
	for (int i = 0; i < b->n_nodes; i++)
		for (int k = 0; k < b->nodes[i]->n_inputs; k++)
			if (b->nodes[i]->inputs[k])
				last[b->nodes[i]->inputs[k]->id] = i;
	for (int j = 0; j < b->n_outputs; j++) {
		const kiln_value *v = b->outputs[j];
		last[v->id] = b->n_nodes;
		KILN_ENSURE(d, v->kind != KILN_VALUE_CONST, KILN_ERR_UNSUPPORTED, n,
		            "body output %d is the constant '%s'", j, v->name);
	}
	KILN_TRY(prog_consts(&p, b));
	if (p.nreg < p.nin + p.nconst)
		p.nreg = p.nin + p.nconst;
	for (int i = 0; i < b->n_nodes; i++) {
		const kiln_node *bn = b->nodes[i];
		KILN_TRY(prog_node(&p, bn, shape));
		/* free the temporaries this node read last, and a result nothing reads */
		for (int k = 0; k <= bn->n_inputs; k++) {
			const kiln_value *v = k < bn->n_inputs ? bn->inputs[k] : bn->outputs[0];
			if (v && p.reg[v->id] >= p.nin + p.nconst && last[v->id] <= i)
				p.busy[p.reg[v->id]] = false;
		}
	}

	int64_t dims[KILN_MAX_RANK], st[KILN_KCALL_MAX_T][KILN_MAX_RANK];
	int64_t period[KILN_KCALL_MAX_T];
	int r = walk_dims(in, n->n_inputs, shape, dims, st);
	r = walk_periods(n->n_inputs, r, dims, st, period);
	int64_t tiles = 0;
	for (int k = 0; k < n->n_inputs; k++)
		tiles += period[k] ? 2 : 0;
	c->fn = "kk_ew_program_f32";
	c->thread_scratch_bytes = (p.nreg + tiles) * KK_EWP_BLOCK * (int64_t)sizeof(float);
	kiln_kcall_i(c, p.nin);
	kiln_kcall_i(c, n->n_outputs);
	kiln_kcall_i(c, r);
	kiln_kcall_i(c, kiln_type_numel(shape));
	kiln_kcall_i(c, p.nreg);
	kiln_kcall_i(c, p.nconst);
	kiln_kcall_i(c, p.ninstr);
	for (int i = 0; i < r; i++)
		kiln_kcall_i(c, dims[i]);
	for (int k = 0; k < p.nin; k++)
		for (int i = 0; i < r; i++)
			kiln_kcall_i(c, st[k][i]);
	for (int k = 0; k < p.nin; k++)
		kiln_kcall_i(c, period[k]);
	for (int j = 0; j < b->n_outputs; j++)
		kiln_kcall_i(c, p.reg[b->outputs[j]->id]);
	for (int q = 0; q < p.ninstr; q++)
		for (int f = 0; f < KK_EWP_INSTR_SIZE; f++)
			kiln_kcall_i(c, p.instr[q][f]);
	for (int i = 0; i < p.nconst; i++)
		kiln_kcall_f(c, p.consts[i]);
	return KILN_OK;
}
