/* k_elementwise.c — reference kernels for the elementwise ops: activations,
 * unary math, binary arithmetic and comparisons with NumPy broadcasting,
 * variadic Min/Max, Where, Not, Cast and Identity.
 *
 * f32 runs through direct float loops. Other float dtypes go through double
 * (kiln_tensor_get_f64/set_f64). Integers go through int64 exactly and wrap
 * to the output width like C two's complement, as the ONNX reference does;
 * integer Div truncates toward zero. Where ONNX leaves a result undefined
 * kiln picks one and says so: integer x / 0 is 0, integer x ^ (negative) is
 * the truncated 1 / x^|e| (0 unless |x| is 1), NaN cast to an integer is 0. */
#include "interp.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- broadcasting ---- */

/* A required input's data: NULL only for an empty tensor. */
static bool has_data(const kiln_tensor *t) { return t->data || kiln_tensor_numel(t) == 0; }

static bool same_dims(const kiln_type *a, const kiln_type *b)
{
	if (a->rank != b->rank)
		return false;
	for (int i = 0; i < a->rank; i++)
		if (a->dims[i] != b->dims[i])
			return false;
	return true;
}

static bool broadcasts_to(const kiln_type *in, const kiln_type *out)
{
	if (in->rank > out->rank)
		return false;
	int shift = out->rank - in->rank;
	for (int i = 0; i < in->rank; i++)
		if (in->dims[i] != 1 && in->dims[i] != out->dims[i + shift])
			return false;
	return true;
}

/* Sets *off to the broadcast offsets of input `idx` into out, or NULL when
 * its shape already equals out's (then element i is at offset i). */
static kiln_status input_offsets(const kiln_node *n, const kiln_tensor *in, int idx,
                                 const kiln_tensor *out, int64_t **off, kiln_diag *d)
{
	char a[96], b[96];
	*off = NULL;
	if (!has_data(&in[idx]))
		return kiln_diag_error(d, KILN_ERR_INVALID_ARG, n, "input %d is missing", idx);
	if (same_dims(&in[idx].type, &out->type))
		return KILN_OK;
	KILN_ENSURE(d, broadcasts_to(&in[idx].type, &out->type), KILN_ERR_SHAPE, n,
	            "input %d of type %s does not broadcast to output type %s", idx,
	            kiln_type_str(&in[idx].type, a, sizeof a),
	            kiln_type_str(&out->type, b, sizeof b));
	*off = kiln_broadcast_offsets(&in[idx].type, &out->type);
	KILN_ENSURE(d, *off, KILN_ERR_OOM, n, "out of memory");
	return KILN_OK;
}

#define AT(off, i) ((off) ? (off)[i] : (i))

/* ---- unary ---- */

typedef struct unary_params {
	kiln_op op;
	double alpha, beta;
	bool gelu_tanh;
	double lo, hi;    /* Clip bounds for float dtypes */
	int64_t ilo, ihi; /* Clip bounds for integer dtypes */
} unary_params;

/* NaN stays NaN (as np.clip keeps it). */
static double clamp01(double v) { return v < 0 ? 0 : v > 1 ? 1 : v; }

static double unary_f64(const unary_params *p, double x)
{
	switch (p->op) {
	case KILN_OP_RELU: return x < 0 ? 0 : x;
	case KILN_OP_LEAKY_RELU: return x < 0 ? p->alpha * x : x;
	case KILN_OP_SIGMOID: return 1.0 / (1.0 + exp(-x));
	case KILN_OP_TANH: return tanh(x);
	case KILN_OP_CLIP:
		if (x < p->lo)
			x = p->lo;
		if (x > p->hi)
			x = p->hi;
		return x;
	case KILN_OP_HARD_SIGMOID: return clamp01(p->alpha * x + p->beta);
	case KILN_OP_HARD_SWISH: return x * clamp01(x / 6.0 + 0.5);
	case KILN_OP_GELU:
		if (p->gelu_tanh)
			return 0.5 * x * (1.0 + tanh(0.7978845608028654 /* sqrt(2/pi) */ * (x + 0.044715 * x * x * x)));
		return 0.5 * x * (1.0 + erf(x / sqrt(2.0)));
	case KILN_OP_ERF: return erf(x);
	case KILN_OP_SQRT: return sqrt(x);
	case KILN_OP_EXP: return exp(x);
	case KILN_OP_LOG: return log(x);
	case KILN_OP_NEG: return -x;
	case KILN_OP_ABS: return fabs(x);
	case KILN_OP_RECIPROCAL: return 1.0 / x;
	default: return x;
	}
}

static int64_t wrap_neg(int64_t x) { return (int64_t)(0 - (uint64_t)x); }

/* Integer forms of the ops ONNX allows on integers. */
static bool unary_has_int(kiln_op op)
{
	return op == KILN_OP_RELU || op == KILN_OP_CLIP || op == KILN_OP_NEG || op == KILN_OP_ABS;
}

static int64_t unary_i64(const unary_params *p, int64_t x)
{
	switch (p->op) {
	case KILN_OP_RELU: return x < 0 ? 0 : x;
	case KILN_OP_CLIP:
		if (x < p->ilo)
			x = p->ilo;
		if (x > p->ihi)
			x = p->ihi;
		return x;
	case KILN_OP_NEG: return wrap_neg(x);
	case KILN_OP_ABS: return x < 0 ? wrap_neg(x) : x;
	default: return x;
	}
}

static kiln_status unary(const kiln_node *n, const kiln_tensor *in, kiln_tensor *out,
                         kiln_diag *d, const unary_params *p)
{
	const kiln_tensor *x = &in[0];
	int64_t count = kiln_tensor_numel(out);
	KILN_ENSURE(d, x->data && kiln_tensor_numel(x) == count, KILN_ERR_SHAPE, n,
	            "input has %lld elements, output %lld", (long long)kiln_tensor_numel(x),
	            (long long)count);
	kiln_dtype dt = x->type.dtype;
	if (dt == KILN_DT_F32 && out->type.dtype == KILN_DT_F32) {
		const float *src = x->data;
		float *dst = out->data;
		if (p->op == KILN_OP_RELU) {
			for (int64_t i = 0; i < count; i++)
				dst[i] = src[i] < 0 ? 0.0f : src[i];
		} else {
			for (int64_t i = 0; i < count; i++)
				dst[i] = (float)unary_f64(p, src[i]);
		}
	} else if (kiln_dtype_is_float(dt) || !unary_has_int(p->op)) {
		for (int64_t i = 0; i < count; i++)
			kiln_tensor_set_f64(out, i, unary_f64(p, kiln_tensor_get_f64(x, i)));
	} else {
		for (int64_t i = 0; i < count; i++)
			kiln_tensor_set_i64(out, i, unary_i64(p, kiln_tensor_get_i64(x, i)));
	}
	return KILN_OK;
}

static kiln_status simple_unary(const kiln_node *n, const kiln_tensor *in, kiln_tensor *out,
                                kiln_diag *d)
{
	unary_params p = {.op = n->op};
	return unary(n, in, out, d, &p);
}

kiln_status kiln_interp_RELU(const kiln_node *n, const kiln_tensor *in, kiln_tensor *out, kiln_diag *d) { return simple_unary(n, in, out, d); }
kiln_status kiln_interp_SIGMOID(const kiln_node *n, const kiln_tensor *in, kiln_tensor *out, kiln_diag *d) { return simple_unary(n, in, out, d); }
kiln_status kiln_interp_TANH(const kiln_node *n, const kiln_tensor *in, kiln_tensor *out, kiln_diag *d) { return simple_unary(n, in, out, d); }
kiln_status kiln_interp_HARD_SWISH(const kiln_node *n, const kiln_tensor *in, kiln_tensor *out, kiln_diag *d) { return simple_unary(n, in, out, d); }
kiln_status kiln_interp_ERF(const kiln_node *n, const kiln_tensor *in, kiln_tensor *out, kiln_diag *d) { return simple_unary(n, in, out, d); }
kiln_status kiln_interp_SQRT(const kiln_node *n, const kiln_tensor *in, kiln_tensor *out, kiln_diag *d) { return simple_unary(n, in, out, d); }
kiln_status kiln_interp_EXP(const kiln_node *n, const kiln_tensor *in, kiln_tensor *out, kiln_diag *d) { return simple_unary(n, in, out, d); }
kiln_status kiln_interp_LOG(const kiln_node *n, const kiln_tensor *in, kiln_tensor *out, kiln_diag *d) { return simple_unary(n, in, out, d); }
kiln_status kiln_interp_NEG(const kiln_node *n, const kiln_tensor *in, kiln_tensor *out, kiln_diag *d) { return simple_unary(n, in, out, d); }
kiln_status kiln_interp_ABS(const kiln_node *n, const kiln_tensor *in, kiln_tensor *out, kiln_diag *d) { return simple_unary(n, in, out, d); }
kiln_status kiln_interp_RECIPROCAL(const kiln_node *n, const kiln_tensor *in, kiln_tensor *out, kiln_diag *d) { return simple_unary(n, in, out, d); }

kiln_status kiln_interp_LEAKY_RELU(const kiln_node *n, const kiln_tensor *in, kiln_tensor *out,
                                   kiln_diag *d)
{
	unary_params p = {.op = n->op, .alpha = kiln_node_float(n, "alpha", 0.01f)};
	return unary(n, in, out, d, &p);
}

kiln_status kiln_interp_HARD_SIGMOID(const kiln_node *n, const kiln_tensor *in, kiln_tensor *out,
                                     kiln_diag *d)
{
	unary_params p = {.op = n->op,
	                  .alpha = kiln_node_float(n, "alpha", 0.2f),
	                  .beta = kiln_node_float(n, "beta", 0.5f)};
	return unary(n, in, out, d, &p);
}

kiln_status kiln_interp_GELU(const kiln_node *n, const kiln_tensor *in, kiln_tensor *out,
                             kiln_diag *d)
{
	const char *mode = kiln_node_string(n, "approximate", "none");
	unary_params p = {.op = n->op, .gelu_tanh = strcmp(mode, "tanh") == 0};
	KILN_ENSURE(d, p.gelu_tanh || strcmp(mode, "none") == 0, KILN_ERR_UNSUPPORTED, n,
	            "approximate '%s' is not one of 'none', 'tanh'", mode);
	return unary(n, in, out, d, &p);
}

kiln_status kiln_interp_CLIP(const kiln_node *n, const kiln_tensor *in, kiln_tensor *out,
                             kiln_diag *d)
{
	unary_params p = {.op = n->op, .lo = -INFINITY, .hi = INFINITY,
	                  .ilo = INT64_MIN, .ihi = INT64_MAX};
	for (int k = 1; k <= 2; k++) {
		if (k >= n->n_inputs || !in[k].data)
			continue;
		KILN_ENSURE(d, kiln_tensor_numel(&in[k]) == 1, KILN_ERR_SHAPE, n,
		            "%s must be a scalar, has %lld elements", k == 1 ? "min" : "max",
		            (long long)kiln_tensor_numel(&in[k]));
		double v = kiln_tensor_get_f64(&in[k], 0);
		int64_t iv = kiln_tensor_get_i64(&in[k], 0);
		if (k == 1) {
			p.lo = v;
			p.ilo = iv;
		} else {
			p.hi = v;
			p.ihi = iv;
		}
	}
	return unary(n, in, out, d, &p);
}

kiln_status kiln_interp_NOT(const kiln_node *n, const kiln_tensor *in, kiln_tensor *out,
                            kiln_diag *d)
{
	int64_t count = kiln_tensor_numel(out);
	KILN_ENSURE(d, kiln_tensor_numel(&in[0]) == count, KILN_ERR_SHAPE, n,
	            "input has %lld elements, output %lld", (long long)kiln_tensor_numel(&in[0]),
	            (long long)count);
	const uint8_t *src = in[0].data;
	uint8_t *dst = out->data;
	for (int64_t i = 0; i < count; i++)
		dst[i] = !src[i];
	return KILN_OK;
}

kiln_status kiln_interp_IDENTITY(const kiln_node *n, const kiln_tensor *in, kiln_tensor *out,
                                 kiln_diag *d)
{
	size_t bytes = kiln_type_bytes(&out->type);
	KILN_ENSURE(d, kiln_type_bytes(&in[0].type) == bytes, KILN_ERR_SHAPE, n,
	            "input has %zu bytes, output %zu", kiln_type_bytes(&in[0].type), bytes);
	if (bytes)
		memcpy(out->data, in[0].data, bytes);
	return KILN_OK;
}

/* ---- binary arithmetic ---- */

/* ONNX Min/Max: NaN if either operand is NaN. */
static double min_nan(double a, double b) { return isnan(a) || isnan(b) ? NAN : a < b ? a : b; }
static double max_nan(double a, double b) { return isnan(a) || isnan(b) ? NAN : a > b ? a : b; }

static double binary_f64(kiln_op op, double a, double b)
{
	switch (op) {
	case KILN_OP_ADD: return a + b;
	case KILN_OP_SUB: return a - b;
	case KILN_OP_MUL: return a * b;
	case KILN_OP_DIV: return a / b;
	case KILN_OP_POW: return pow(a, b);
	case KILN_OP_MIN: return min_nan(a, b);
	case KILN_OP_MAX: return max_nan(a, b);
	case KILN_OP_PRELU: return a < 0 ? a * b : a;
	default: return 0;
	}
}

static float binary_f32(kiln_op op, float a, float b)
{
	switch (op) {
	case KILN_OP_ADD: return a + b;
	case KILN_OP_SUB: return a - b;
	case KILN_OP_MUL: return a * b;
	case KILN_OP_DIV: return a / b;
	case KILN_OP_POW: return (float)pow(a, b);
	case KILN_OP_MIN: return isnan(a) || isnan(b) ? NAN : a < b ? a : b;
	case KILN_OP_MAX: return isnan(a) || isnan(b) ? NAN : a > b ? a : b;
	case KILN_OP_PRELU: return a < 0 ? a * b : a;
	default: return 0;
	}
}

/* a^e exactly, wrapping modulo 2^64 (the caller narrows to the dtype). */
static int64_t ipow(int64_t a, int64_t e)
{
	if (e < 0)
		return a == 1 ? 1 : a == -1 ? (e & 1 ? -1 : 1) : 0;
	uint64_t r = 1, b = (uint64_t)a;
	while (e) {
		if (e & 1)
			r *= b;
		b *= b;
		e >>= 1;
	}
	return (int64_t)r;
}

static int64_t binary_i64(kiln_op op, int64_t a, int64_t b)
{
	switch (op) {
	case KILN_OP_ADD: return (int64_t)((uint64_t)a + (uint64_t)b);
	case KILN_OP_SUB: return (int64_t)((uint64_t)a - (uint64_t)b);
	case KILN_OP_MUL: return (int64_t)((uint64_t)a * (uint64_t)b);
	case KILN_OP_DIV:
		if (b == 0)
			return 0;
		if (b == -1)
			return wrap_neg(a);
		return a / b;
	case KILN_OP_POW: return ipow(a, b);
	case KILN_OP_MIN: return a < b ? a : b;
	case KILN_OP_MAX: return a > b ? a : b;
	case KILN_OP_PRELU: return a < 0 ? (int64_t)((uint64_t)a * (uint64_t)b) : a;
	default: return 0;
	}
}

/* acc[i] = op(a[offa(i)], b[offb(i)]) for every element of out. a may be out
 * itself (the variadic Min/Max accumulate in place with offa NULL). */
static void binary_loop(kiln_op op, const kiln_tensor *a, const int64_t *offa,
                        const kiln_tensor *b, const int64_t *offb, kiln_tensor *out)
{
	int64_t count = kiln_tensor_numel(out);
	kiln_dtype dt = out->type.dtype;
	if (dt == KILN_DT_F32 && a->type.dtype == KILN_DT_F32 && b->type.dtype == KILN_DT_F32) {
		const float *pa = a->data, *pb = b->data;
		float *po = out->data;
		if (!offa && !offb) {
			for (int64_t i = 0; i < count; i++)
				po[i] = binary_f32(op, pa[i], pb[i]);
		} else {
			for (int64_t i = 0; i < count; i++)
				po[i] = binary_f32(op, pa[AT(offa, i)], pb[AT(offb, i)]);
		}
	} else if (kiln_dtype_is_float(dt)) {
		for (int64_t i = 0; i < count; i++)
			kiln_tensor_set_f64(out, i, binary_f64(op, kiln_tensor_get_f64(a, AT(offa, i)),
			                                       kiln_tensor_get_f64(b, AT(offb, i))));
	} else if (op == KILN_OP_POW && kiln_dtype_is_float(b->type.dtype)) {
		/* integer base, float exponent: numpy's power in double, truncated */
		for (int64_t i = 0; i < count; i++)
			kiln_tensor_set_f64(out, i, pow(kiln_tensor_get_f64(a, AT(offa, i)),
			                                 kiln_tensor_get_f64(b, AT(offb, i))));
	} else {
		for (int64_t i = 0; i < count; i++)
			kiln_tensor_set_i64(out, i, binary_i64(op, kiln_tensor_get_i64(a, AT(offa, i)),
			                                       kiln_tensor_get_i64(b, AT(offb, i))));
	}
}

static kiln_status binary(const kiln_node *n, const kiln_tensor *in, kiln_tensor *out,
                          kiln_diag *d)
{
	int64_t *offa = NULL, *offb = NULL;
	kiln_status s = input_offsets(n, in, 0, out, &offa, d);
	if (s == KILN_OK)
		s = input_offsets(n, in, 1, out, &offb, d);
	if (s == KILN_OK)
		binary_loop(n->op, &in[0], offa, &in[1], offb, out);
	free(offa);
	free(offb);
	return s;
}

kiln_status kiln_interp_ADD(const kiln_node *n, const kiln_tensor *in, kiln_tensor *out, kiln_diag *d) { return binary(n, in, out, d); }
kiln_status kiln_interp_SUB(const kiln_node *n, const kiln_tensor *in, kiln_tensor *out, kiln_diag *d) { return binary(n, in, out, d); }
kiln_status kiln_interp_MUL(const kiln_node *n, const kiln_tensor *in, kiln_tensor *out, kiln_diag *d) { return binary(n, in, out, d); }
kiln_status kiln_interp_DIV(const kiln_node *n, const kiln_tensor *in, kiln_tensor *out, kiln_diag *d) { return binary(n, in, out, d); }
kiln_status kiln_interp_POW(const kiln_node *n, const kiln_tensor *in, kiln_tensor *out, kiln_diag *d) { return binary(n, in, out, d); }

/* PRelu: slope broadcasts to x (unidirectionally), so out has x's shape. */
kiln_status kiln_interp_PRELU(const kiln_node *n, const kiln_tensor *in, kiln_tensor *out, kiln_diag *d) { return binary(n, in, out, d); }

static kiln_status variadic(const kiln_node *n, const kiln_tensor *in, kiln_tensor *out,
                            kiln_diag *d)
{
	int64_t *off = NULL;
	KILN_TRY(input_offsets(n, in, 0, out, &off, d));
	int64_t count = kiln_tensor_numel(out);
	size_t esz = kiln_dtype_size(out->type.dtype);
	const char *src = in[0].data;
	char *dst = out->data;
	for (int64_t i = 0; i < count; i++)
		memcpy(dst + (size_t)i * esz, src + (size_t)AT(off, i) * esz, esz);
	free(off);
	for (int k = 1; k < n->n_inputs; k++) {
		KILN_TRY(input_offsets(n, in, k, out, &off, d));
		binary_loop(n->op, out, NULL, &in[k], off, out);
		free(off);
	}
	return KILN_OK;
}

kiln_status kiln_interp_MIN(const kiln_node *n, const kiln_tensor *in, kiln_tensor *out, kiln_diag *d) { return variadic(n, in, out, d); }
kiln_status kiln_interp_MAX(const kiln_node *n, const kiln_tensor *in, kiln_tensor *out, kiln_diag *d) { return variadic(n, in, out, d); }

/* ---- comparison and selection ---- */

static kiln_status compare(const kiln_node *n, const kiln_tensor *in, kiln_tensor *out,
                           kiln_diag *d)
{
	int64_t *offa = NULL, *offb = NULL;
	kiln_status s = input_offsets(n, in, 0, out, &offa, d);
	if (s == KILN_OK)
		s = input_offsets(n, in, 1, out, &offb, d);
	if (s != KILN_OK) {
		free(offa);
		return s;
	}
	int64_t count = kiln_tensor_numel(out);
	uint8_t *dst = out->data;
	const kiln_tensor *a = &in[0], *b = &in[1];
	bool as_float = kiln_dtype_is_float(a->type.dtype) || kiln_dtype_is_float(b->type.dtype);
	for (int64_t i = 0; i < count; i++) {
		int c; /* -1, 0, 1, or 2 for unordered (NaN) */
		if (as_float) {
			double x = kiln_tensor_get_f64(a, AT(offa, i));
			double y = kiln_tensor_get_f64(b, AT(offb, i));
			c = x < y ? -1 : x > y ? 1 : x == y ? 0 : 2;
		} else {
			int64_t x = kiln_tensor_get_i64(a, AT(offa, i));
			int64_t y = kiln_tensor_get_i64(b, AT(offb, i));
			c = x < y ? -1 : x > y ? 1 : 0;
		}
		switch (n->op) {
		case KILN_OP_EQUAL: dst[i] = c == 0; break;
		case KILN_OP_LESS: dst[i] = c == -1; break;
		default: dst[i] = c == 1; break;
		}
	}
	free(offa);
	free(offb);
	return KILN_OK;
}

kiln_status kiln_interp_EQUAL(const kiln_node *n, const kiln_tensor *in, kiln_tensor *out, kiln_diag *d) { return compare(n, in, out, d); }
kiln_status kiln_interp_LESS(const kiln_node *n, const kiln_tensor *in, kiln_tensor *out, kiln_diag *d) { return compare(n, in, out, d); }
kiln_status kiln_interp_GREATER(const kiln_node *n, const kiln_tensor *in, kiln_tensor *out, kiln_diag *d) { return compare(n, in, out, d); }

kiln_status kiln_interp_WHERE(const kiln_node *n, const kiln_tensor *in, kiln_tensor *out,
                              kiln_diag *d)
{
	int64_t *off[3] = {NULL, NULL, NULL};
	kiln_status s = KILN_OK;
	for (int k = 0; k < 3 && s == KILN_OK; k++)
		s = input_offsets(n, in, k, out, &off[k], d);
	if (s == KILN_OK) {
		int64_t count = kiln_tensor_numel(out);
		size_t esz = kiln_dtype_size(out->type.dtype);
		const uint8_t *cond = in[0].data;
		const char *x = in[1].data, *y = in[2].data;
		char *dst = out->data;
		for (int64_t i = 0; i < count; i++) {
			const char *src = cond[AT(off[0], i)] ? x + (size_t)AT(off[1], i) * esz
			                                      : y + (size_t)AT(off[2], i) * esz;
			memcpy(dst + (size_t)i * esz, src, esz);
		}
	}
	for (int k = 0; k < 3; k++)
		free(off[k]);
	return s;
}

/* ---- Cast ---- */

/* double -> f32 rounding to odd: a following RNE rounding to f16 or bf16
 * (at most 11 significant bits, 24 >= 2*11+2) is then correctly rounded,
 * with no double-rounding error. */
static float f32_round_odd(double v)
{
	float f = (float)v;
	if (isnan(v) || (double)f == v)
		return f;
	if (fabs((double)f) > fabs(v))
		f = nextafterf(f, 0.0f);
	uint32_t u;
	memcpy(&u, &f, sizeof u);
	u |= 1;
	memcpy(&f, &u, sizeof f);
	return f;
}

kiln_status kiln_interp_CAST(const kiln_node *n, const kiln_tensor *in, kiln_tensor *out,
                             kiln_diag *d)
{
	const kiln_tensor *x = &in[0];
	int64_t count = kiln_tensor_numel(out);
	KILN_ENSURE(d, kiln_tensor_numel(x) == count, KILN_ERR_SHAPE, n,
	            "input has %lld elements, output %lld", (long long)kiln_tensor_numel(x),
	            (long long)count);
	kiln_dtype from = x->type.dtype, to = out->type.dtype;
	if (from == to) {
		if (count)
			memcpy(out->data, x->data, kiln_type_bytes(&out->type));
		return KILN_OK;
	}
	bool from_float = kiln_dtype_is_float(from);
	for (int64_t i = 0; i < count; i++) {
		switch (to) {
		case KILN_DT_F32:
			((float *)out->data)[i] = from_float ? (float)kiln_tensor_get_f64(x, i)
			                                     : (float)kiln_tensor_get_i64(x, i);
			break;
		case KILN_DT_F64:
			((double *)out->data)[i] = from_float ? kiln_tensor_get_f64(x, i)
			                                      : (double)kiln_tensor_get_i64(x, i);
			break;
		case KILN_DT_F16:
			((uint16_t *)out->data)[i] = kiln_f32_to_f16(f32_round_odd(kiln_tensor_get_f64(x, i)));
			break;
		case KILN_DT_BF16:
			((uint16_t *)out->data)[i] = kiln_f32_to_bf16(f32_round_odd(kiln_tensor_get_f64(x, i)));
			break;
		case KILN_DT_BOOL:
			/* nonzero (NaN included) is true */
			((uint8_t *)out->data)[i] = from_float ? kiln_tensor_get_f64(x, i) != 0
			                                       : kiln_tensor_get_i64(x, i) != 0;
			break;
		default:
			/* to an integer: floats truncate toward zero (NaN -> 0, out of
			 * range saturates to int64 first), then wrap to the width */
			kiln_tensor_set_i64(out, i, kiln_tensor_get_i64(x, i));
			break;
		}
	}
	return KILN_OK;
}
