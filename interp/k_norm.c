/* k_norm.c — BatchNormalization (inference), LayerNormalization, Softmax and
 * LogSoftmax (ONNX opset 21). All arithmetic is in double; Softmax and
 * LogSoftmax subtract the maximum before exponentiating. */
#include "interp.h"

#include <math.h>
#include <stdlib.h>

kiln_status kiln_interp_BATCH_NORM(const kiln_node *n, const kiln_tensor *in, kiln_tensor *out,
                                   kiln_diag *d)
{
	KILN_ENSURE(d, kiln_node_int(n, "training_mode", 0) == 0, KILN_ERR_UNSUPPORTED, n,
	            "training_mode=1 (inference only)");
	const kiln_type *xt = &in[0].type;
	KILN_ENSURE(d, xt->rank >= 2, KILN_ERR_SHAPE, n, "X has rank %d, expected at least 2", xt->rank);
	int64_t c = xt->dims[1];
	for (int i = 1; i < 5; i++)
		KILN_ENSURE(d, kiln_tensor_numel(&in[i]) == c, KILN_ERR_SHAPE, n,
		            "input %d has %lld elements, expected %lld (channels)", i,
		            (long long)kiln_tensor_numel(&in[i]), (long long)c);
	double eps = kiln_node_float(n, "epsilon", 1e-5f);
	int64_t inner = 1;
	for (int i = 2; i < xt->rank; i++)
		inner *= xt->dims[i];
	int64_t total = kiln_type_numel(xt);
	for (int64_t ch = 0; ch < c; ch++) {
		double scale = kiln_tensor_get_f64(&in[1], ch), bias = kiln_tensor_get_f64(&in[2], ch);
		double mean = kiln_tensor_get_f64(&in[3], ch), var = kiln_tensor_get_f64(&in[4], ch);
		double mul = scale / sqrt(var + eps);
		for (int64_t base = ch * inner; base < total; base += c * inner)
			for (int64_t j = 0; j < inner; j++)
				kiln_tensor_set_f64(&out[0], base + j,
				                    (kiln_tensor_get_f64(&in[0], base + j) - mean) * mul + bias);
	}
	return KILN_OK;
}

kiln_status kiln_interp_LAYER_NORM(const kiln_node *n, const kiln_tensor *in, kiln_tensor *out,
                                   kiln_diag *d)
{
	const kiln_type *xt = &in[0].type;
	int64_t a = kiln_node_int(n, "axis", -1);
	int axis;
	KILN_ENSURE(d, kiln_axis_norm(a, xt->rank, &axis), KILN_ERR_SHAPE, n,
	            "axis %lld out of range for rank %d", (long long)a, xt->rank);
	kiln_type norm = {.dtype = xt->dtype, .rank = xt->rank - axis};
	for (int i = axis; i < xt->rank; i++)
		norm.dims[i - axis] = xt->dims[i];
	const kiln_tensor *scale = &in[1], *bias = n->n_inputs > 2 && in[2].data ? &in[2] : NULL;
	const kiln_tensor *params[2] = {scale, bias};
	for (int p = 0; p < 2; p++) {
		if (!params[p])
			continue;
		const kiln_type *pt = &params[p]->type;
		kiln_type b;
		bool ok = pt->rank <= norm.rank && kiln_broadcast(pt, &norm, &b) && kiln_type_numel(&b) == kiln_type_numel(&norm);
		KILN_ENSURE(d, ok, KILN_ERR_SHAPE, n, "%s does not broadcast to the normalized dims",
		            p ? "B" : "Scale");
	}
	int64_t dim = kiln_type_numel(&norm);
	int64_t rows = dim ? kiln_type_numel(xt) / dim : 0;
	int64_t *soff = kiln_broadcast_offsets(&scale->type, &norm);
	int64_t *boff = bias ? kiln_broadcast_offsets(&bias->type, &norm) : NULL;
	if (!soff || (bias && !boff)) {
		free(soff);
		free(boff);
		return kiln_diag_error(d, KILN_ERR_OOM, n, "out of memory");
	}
	double eps = kiln_node_float(n, "epsilon", 1e-5f);
	for (int64_t r = 0; r < rows; r++) {
		const int64_t base = r * dim;
		double mean = 0.0, var = 0.0;
		for (int64_t j = 0; j < dim; j++)
			mean += kiln_tensor_get_f64(&in[0], base + j);
		mean /= (double)dim;
		for (int64_t j = 0; j < dim; j++) {
			double t = kiln_tensor_get_f64(&in[0], base + j) - mean;
			var += t * t;
		}
		var /= (double)dim;
		double inv = 1.0 / sqrt(var + eps);
		for (int64_t j = 0; j < dim; j++) {
			double y = (kiln_tensor_get_f64(&in[0], base + j) - mean) * inv *
			           kiln_tensor_get_f64(scale, soff[j]);
			if (bias)
				y += kiln_tensor_get_f64(bias, boff[j]);
			kiln_tensor_set_f64(&out[0], base + j, y);
		}
		if (n->n_outputs > 1 && out[1].data)
			kiln_tensor_set_f64(&out[1], r, mean);
		if (n->n_outputs > 2 && out[2].data)
			kiln_tensor_set_f64(&out[2], r, inv);
	}
	free(soff);
	free(boff);
	return KILN_OK;
}

/* Softmax (log_out false) or LogSoftmax along one axis. */
static kiln_status softmax(const kiln_node *n, const kiln_tensor *in, kiln_tensor *out, bool log_out,
                           kiln_diag *d)
{
	const kiln_type *xt = &in[0].type;
	int64_t a = kiln_node_int(n, "axis", -1);
	int axis;
	if (xt->rank == 0 && (a == 0 || a == -1)) {
		kiln_tensor_set_f64(&out[0], 0, log_out ? 0.0 : 1.0);
		return KILN_OK;
	}
	KILN_ENSURE(d, kiln_axis_norm(a, xt->rank, &axis), KILN_ERR_SHAPE, n,
	            "axis %lld out of range for rank %d", (long long)a, xt->rank);
	int64_t outer = 1, inner = 1, dim = xt->dims[axis];
	for (int i = 0; i < axis; i++)
		outer *= xt->dims[i];
	for (int i = axis + 1; i < xt->rank; i++)
		inner *= xt->dims[i];
	for (int64_t o = 0; o < outer; o++) {
		for (int64_t i = 0; i < inner; i++) {
			int64_t base = o * dim * inner + i;
			double mx = -INFINITY, sum = 0.0;
			for (int64_t j = 0; j < dim; j++) {
				double v = kiln_tensor_get_f64(&in[0], base + j * inner);
				if (v > mx || isnan(v))
					mx = v;
			}
			/* All -inf: keep the arithmetic finite (exp(-inf - -inf) is NaN). */
			if (isinf(mx) && mx < 0)
				mx = 0.0;
			for (int64_t j = 0; j < dim; j++)
				sum += exp(kiln_tensor_get_f64(&in[0], base + j * inner) - mx);
			double lsum = log(sum);
			for (int64_t j = 0; j < dim; j++) {
				double t = kiln_tensor_get_f64(&in[0], base + j * inner) - mx;
				kiln_tensor_set_f64(&out[0], base + j * inner, log_out ? t - lsum : exp(t) / sum);
			}
		}
	}
	return KILN_OK;
}

kiln_status kiln_interp_SOFTMAX(const kiln_node *n, const kiln_tensor *in, kiln_tensor *out,
                                kiln_diag *d)
{
	return softmax(n, in, out, false, d);
}

kiln_status kiln_interp_LOG_SOFTMAX(const kiln_node *n, const kiln_tensor *in, kiln_tensor *out,
                                    kiln_diag *d)
{
	return softmax(n, in, out, true, d);
}
