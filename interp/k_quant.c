/* k_quant.c — reference kernels for QuantizeLinear and DequantizeLinear
 * (opset 21): per-tensor, per-axis and blocked scale / zero point.
 *
 * Arithmetic is in f32 like the ONNX reference and onnxruntime:
 *   quantize:   y = saturate(rint(x / scale) + zero_point)   (ties to even)
 *   dequantize: y = (f32(x) - f32(zero_point)) * scale
 * kiln quantizes to u8, i8 and i32; a NaN input quantizes to the zero point. */
#include "interp.h"

#include <math.h>

typedef enum q_mode { Q_TENSOR, Q_AXIS, Q_BLOCK } q_mode;

/* Where element i of x finds its scale and zero point. */
typedef struct q_layout {
	q_mode mode;
	int64_t dim;   /* x's size on the axis */
	int64_t inner; /* elements after the axis */
	int64_t sdim;  /* the scale's size on the axis (blocked) */
	int64_t block;
} q_layout;

/* A required input's data: NULL only for an empty tensor. */
static bool has_data(const kiln_tensor *t) { return t->data || kiln_tensor_numel(t) == 0; }

static int64_t q_index(const q_layout *l, int64_t i)
{
	switch (l->mode) {
	case Q_TENSOR: return 0;
	case Q_AXIS: return (i / l->inner) % l->dim;
	default: {
		int64_t o = i / (l->dim * l->inner);
		int64_t c = (i / l->inner) % l->dim;
		return (o * l->sdim + c / l->block) * l->inner + i % l->inner;
	}
	}
}

/* Checks scale (and zero point) against x and fills the layout. */
static kiln_status q_resolve(const kiln_node *n, const kiln_tensor *in, q_layout *l, kiln_diag *d)
{
	const kiln_type *xt = &in[0].type, *st = &in[1].type;
	char b1[96], b2[96];
	KILN_ENSURE(d, has_data(&in[0]) && in[1].data, KILN_ERR_INVALID_ARG, n, "x and scale are required");
	if (n->n_inputs > 2 && in[2].data) {
		const kiln_type *zt = &in[2].type;
		bool same = kiln_type_numel(zt) == kiln_type_numel(st);
		KILN_ENSURE(d, same, KILN_ERR_SHAPE, n, "zero point type %s does not match scale type %s",
		            kiln_type_str(zt, b1, sizeof b1), kiln_type_str(st, b2, sizeof b2));
	}
	int64_t block = kiln_node_int(n, "block_size", 0);
	*l = (q_layout){.mode = Q_TENSOR, .dim = 1, .inner = 1, .sdim = 1, .block = 1};
	if (block == 0 && kiln_type_numel(st) == 1)
		return KILN_OK;
	int axis;
	int64_t a = kiln_node_int(n, "axis", 1);
	KILN_ENSURE(d, kiln_axis_norm(a, xt->rank, &axis), KILN_ERR_SHAPE, n,
	            "axis %lld out of range for rank %d", (long long)a, xt->rank);
	l->dim = xt->dims[axis];
	for (int k = axis + 1; k < xt->rank; k++)
		l->inner *= xt->dims[k];
	if (block == 0) {
		KILN_ENSURE(d, st->rank == 1 && st->dims[0] == l->dim, KILN_ERR_SHAPE, n,
		            "per-axis scale type %s does not match axis %d of x type %s",
		            kiln_type_str(st, b1, sizeof b1), axis, kiln_type_str(xt, b2, sizeof b2));
		l->mode = Q_AXIS;
		return KILN_OK;
	}
	KILN_ENSURE(d, block > 0, KILN_ERR_SHAPE, n, "block_size %lld is negative", (long long)block);
	bool ok = st->rank == xt->rank && st->dims[axis] == (l->dim + block - 1) / block;
	for (int k = 0; ok && k < xt->rank; k++)
		ok = k == axis || st->dims[k] == xt->dims[k];
	KILN_ENSURE(d, ok, KILN_ERR_SHAPE, n,
	            "blocked scale type %s does not match x type %s with block_size %lld on axis %d",
	            kiln_type_str(st, b1, sizeof b1), kiln_type_str(xt, b2, sizeof b2),
	            (long long)block, axis);
	l->mode = Q_BLOCK;
	l->sdim = st->dims[axis];
	l->block = block;
	return KILN_OK;
}

kiln_status kiln_interp_QUANTIZE_LINEAR(const kiln_node *n, const kiln_tensor *in,
                                        kiln_tensor *out, kiln_diag *d)
{
	q_layout l;
	KILN_TRY(q_resolve(n, in, &l, d));
	double lo, hi;
	switch (out->type.dtype) {
	case KILN_DT_U8: lo = 0; hi = 255; break;
	case KILN_DT_I8: lo = -128; hi = 127; break;
	case KILN_DT_I32: lo = INT32_MIN; hi = INT32_MAX; break;
	default:
		return kiln_diag_error(d, KILN_ERR_UNSUPPORTED, n, "cannot quantize to %s",
		                       kiln_dtype_name(out->type.dtype));
	}
	const kiln_tensor *zp = n->n_inputs > 2 && in[2].data ? &in[2] : NULL;
	int64_t count = kiln_tensor_numel(out);
	KILN_ENSURE(d, kiln_tensor_numel(&in[0]) == count, KILN_ERR_SHAPE, n,
	            "x has %lld elements, output %lld", (long long)kiln_tensor_numel(&in[0]),
	            (long long)count);
	for (int64_t i = 0; i < count; i++) {
		int64_t q = q_index(&l, i);
		float x = (float)kiln_tensor_get_f64(&in[0], i);
		float scale = (float)kiln_tensor_get_f64(&in[1], q);
		double r = nearbyintf(x / scale);
		if (isnan(r))
			r = 0;
		r += zp ? (double)kiln_tensor_get_i64(zp, q) : 0.0;
		r = r < lo ? lo : r > hi ? hi : r;
		kiln_tensor_set_i64(out, i, (int64_t)r);
	}
	return KILN_OK;
}

kiln_status kiln_interp_DEQUANTIZE_LINEAR(const kiln_node *n, const kiln_tensor *in,
                                          kiln_tensor *out, kiln_diag *d)
{
	q_layout l;
	KILN_TRY(q_resolve(n, in, &l, d));
	KILN_ENSURE(d, kiln_dtype_is_float(out->type.dtype), KILN_ERR_UNSUPPORTED, n,
	            "cannot dequantize to %s", kiln_dtype_name(out->type.dtype));
	const kiln_tensor *zp = n->n_inputs > 2 && in[2].data ? &in[2] : NULL;
	int64_t count = kiln_tensor_numel(out);
	KILN_ENSURE(d, kiln_tensor_numel(&in[0]) == count, KILN_ERR_SHAPE, n,
	            "x has %lld elements, output %lld", (long long)kiln_tensor_numel(&in[0]),
	            (long long)count);
	for (int64_t i = 0; i < count; i++) {
		int64_t q = q_index(&l, i);
		float x = (float)kiln_tensor_get_i64(&in[0], i);
		float z = zp ? (float)kiln_tensor_get_i64(zp, q) : 0.0f;
		float scale = (float)kiln_tensor_get_f64(&in[1], q);
		kiln_tensor_set_f64(out, i, (x - z) * scale);
	}
	return KILN_OK;
}
