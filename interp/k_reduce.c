/* k_reduce.c — ReduceMean, ReduceSum, ReduceMax, ReduceMin (ONNX opset 18+
 * form: axes is an optional input), every numeric dtype.
 *
 * Floats accumulate in double, integers in int64 (sums wrap to the output
 * dtype; integer means divide the int64 sum, truncating). Empty reductions
 * give 0 (Sum), NaN (Mean), and the dtype's lowest (Max) / highest (Min)
 * value: -inf / +inf for floats. Max and Min propagate NaN. */
#include "interp.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef enum red_kind { RED_MEAN, RED_SUM, RED_MAX, RED_MIN } red_kind;

static int64_t int_lowest(kiln_dtype dt)
{
	switch (dt) {
	case KILN_DT_I64: return INT64_MIN;
	case KILN_DT_I32: return INT32_MIN;
	case KILN_DT_I8: return INT8_MIN;
	default: return 0; /* u8, bool */
	}
}

static int64_t int_highest(kiln_dtype dt)
{
	switch (dt) {
	case KILN_DT_I64: return INT64_MAX;
	case KILN_DT_I32: return INT32_MAX;
	case KILN_DT_I8: return INT8_MAX;
	case KILN_DT_U8: return UINT8_MAX;
	default: return 1; /* bool */
	}
}

static kiln_status reduce(const kiln_node *n, const kiln_tensor *in, kiln_tensor *out, red_kind kind,
                          kiln_diag *d)
{
	const kiln_type *xt = &in[0].type;
	bool reduced[KILN_MAX_RANK] = {false};
	int64_t count = 0;
	const kiln_tensor *axes = n->n_inputs > 1 && in[1].data ? &in[1] : NULL;
	if (axes)
		count = kiln_tensor_numel(axes);
	for (int64_t k = 0; k < count; k++) {
		int64_t a = kiln_tensor_get_i64(axes, k);
		int ax;
		KILN_ENSURE(d, kiln_axis_norm(a, xt->rank, &ax), KILN_ERR_SHAPE, n,
		            "axis %lld out of range for rank %d", (long long)a, xt->rank);
		reduced[ax] = true;
	}
	int64_t numel = kiln_type_numel(xt);
	if (count == 0 && kiln_node_int(n, "noop_with_empty_axes", 0)) {
		KILN_ENSURE(d, kiln_tensor_numel(&out[0]) == numel && out[0].type.dtype == xt->dtype,
		            KILN_ERR_SHAPE, n, "output type differs from the input's");
		memcpy(out[0].data, in[0].data, kiln_type_bytes(xt));
		return KILN_OK;
	}
	/* Output strides per input dim (0 on reduced dims); the flat layout is
	 * the same with or without keepdims. */
	int64_t ostride[KILN_MAX_RANK], nout = 1, group = 1;
	for (int i = xt->rank - 1; i >= 0; i--) {
		bool r = count == 0 || reduced[i];
		ostride[i] = r ? 0 : nout;
		if (r)
			group *= xt->dims[i];
		else
			nout *= xt->dims[i];
	}
	KILN_ENSURE(d, kiln_tensor_numel(&out[0]) == nout, KILN_ERR_SHAPE, n,
	            "output has %lld elements, expected %lld", (long long)kiln_tensor_numel(&out[0]),
	            (long long)nout);
	bool is_int = !kiln_dtype_is_float(xt->dtype);
	double *fa = malloc((size_t)(nout ? nout : 1) * sizeof *fa);
	int64_t *ia = malloc((size_t)(nout ? nout : 1) * sizeof *ia);
	if (!fa || !ia) {
		free(fa);
		free(ia);
		return kiln_diag_error(d, KILN_ERR_OOM, n, "out of memory");
	}
	for (int64_t o = 0; o < nout; o++) {
		fa[o] = kind == RED_MAX ? -INFINITY : kind == RED_MIN ? INFINITY : 0.0;
		ia[o] = kind == RED_MAX ? int_lowest(xt->dtype) : kind == RED_MIN ? int_highest(xt->dtype) : 0;
	}
	int64_t idx[KILN_MAX_RANK] = {0}, o = 0;
	for (int64_t i = 0; i < numel; i++) {
		if (is_int) {
			int64_t v = kiln_tensor_get_i64(&in[0], i);
			if (kind == RED_MAX)
				ia[o] = v > ia[o] ? v : ia[o];
			else if (kind == RED_MIN)
				ia[o] = v < ia[o] ? v : ia[o];
			else
				ia[o] = (int64_t)((uint64_t)ia[o] + (uint64_t)v);
		} else {
			double v = kiln_tensor_get_f64(&in[0], i);
			if (kind == RED_MAX)
				fa[o] = v > fa[o] || isnan(v) ? v : fa[o];
			else if (kind == RED_MIN)
				fa[o] = v < fa[o] || isnan(v) ? v : fa[o];
			else
				fa[o] += v;
		}
		for (int k = xt->rank - 1; k >= 0; k--) {
			o += ostride[k];
			if (++idx[k] < xt->dims[k])
				break;
			o -= ostride[k] * idx[k];
			idx[k] = 0;
		}
	}
	for (int64_t j = 0; j < nout; j++) {
		if (is_int && kind == RED_MEAN)
			kiln_tensor_set_i64(&out[0], j, group ? ia[j] / group : 0);
		else if (is_int)
			kiln_tensor_set_i64(&out[0], j, ia[j]);
		else
			kiln_tensor_set_f64(&out[0], j, kind == RED_MEAN ? fa[j] / (double)group : fa[j]);
	}
	free(fa);
	free(ia);
	return KILN_OK;
}

kiln_status kiln_interp_REDUCE_MEAN(const kiln_node *n, const kiln_tensor *in, kiln_tensor *out,
                                    kiln_diag *d)
{
	return reduce(n, in, out, RED_MEAN, d);
}

kiln_status kiln_interp_REDUCE_SUM(const kiln_node *n, const kiln_tensor *in, kiln_tensor *out,
                                   kiln_diag *d)
{
	return reduce(n, in, out, RED_SUM, d);
}

kiln_status kiln_interp_REDUCE_MAX(const kiln_node *n, const kiln_tensor *in, kiln_tensor *out,
                                   kiln_diag *d)
{
	return reduce(n, in, out, RED_MAX, d);
}

kiln_status kiln_interp_REDUCE_MIN(const kiln_node *n, const kiln_tensor *in, kiln_tensor *out,
                                   kiln_diag *d)
{
	return reduce(n, in, out, RED_MIN, d);
}
