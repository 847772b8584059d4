/* tensor.c — element access by dtype and broadcast offsets for the kernels. */
#include "interp.h"

#include <math.h>
#include <stdlib.h>

int64_t kiln_tensor_numel(const kiln_tensor *t) { return kiln_type_numel(&t->type); }

double kiln_tensor_get_f64(const kiln_tensor *t, int64_t i)
{
	const void *p = t->data;
	switch (t->type.dtype) {
	case KILN_DT_F32: return ((const float *)p)[i];
	case KILN_DT_F64: return ((const double *)p)[i];
	case KILN_DT_F16: return kiln_f16_to_f32(((const uint16_t *)p)[i]);
	case KILN_DT_BF16: return kiln_bf16_to_f32(((const uint16_t *)p)[i]);
	case KILN_DT_I64: return (double)((const int64_t *)p)[i];
	case KILN_DT_I32: return ((const int32_t *)p)[i];
	case KILN_DT_I8: return ((const int8_t *)p)[i];
	case KILN_DT_U8:
	case KILN_DT_BOOL: return ((const uint8_t *)p)[i];
	default: return 0;
	}
}

int64_t kiln_tensor_get_i64(const kiln_tensor *t, int64_t i)
{
	const void *p = t->data;
	switch (t->type.dtype) {
	case KILN_DT_I64: return ((const int64_t *)p)[i];
	case KILN_DT_I32: return ((const int32_t *)p)[i];
	case KILN_DT_I8: return ((const int8_t *)p)[i];
	case KILN_DT_U8:
	case KILN_DT_BOOL: return ((const uint8_t *)p)[i];
	default: {
		double v = kiln_tensor_get_f64(t, i);
		if (isnan(v))
			return 0;
		if (v >= 9.2233720368547758e18)
			return INT64_MAX;
		if (v <= -9.2233720368547758e18)
			return INT64_MIN;
		return (int64_t)v;
	}
	}
}

void kiln_tensor_set_f64(kiln_tensor *t, int64_t i, double v)
{
	void *p = t->data;
	switch (t->type.dtype) {
	case KILN_DT_F32: ((float *)p)[i] = (float)v; break;
	case KILN_DT_F64: ((double *)p)[i] = v; break;
	case KILN_DT_F16: ((uint16_t *)p)[i] = kiln_f32_to_f16((float)v); break;
	case KILN_DT_BF16: ((uint16_t *)p)[i] = kiln_f32_to_bf16((float)v); break;
	case KILN_DT_BOOL: ((uint8_t *)p)[i] = v != 0; break;
	default: {
		/* Out-of-range float -> int is undefined in C; clamp through int64. */
		int64_t iv;
		if (isnan(v))
			iv = 0;
		else if (v >= 9.2233720368547758e18)
			iv = INT64_MAX;
		else if (v <= -9.2233720368547758e18)
			iv = INT64_MIN;
		else
			iv = (int64_t)v;
		kiln_tensor_set_i64(t, i, iv);
	}
	}
}

void kiln_tensor_set_i64(kiln_tensor *t, int64_t i, int64_t v)
{
	void *p = t->data;
	switch (t->type.dtype) {
	case KILN_DT_I64: ((int64_t *)p)[i] = v; break;
	case KILN_DT_I32: ((int32_t *)p)[i] = (int32_t)(uint32_t)v; break;
	case KILN_DT_I8: ((int8_t *)p)[i] = (int8_t)(uint8_t)v; break;
	case KILN_DT_U8: ((uint8_t *)p)[i] = (uint8_t)v; break;
	case KILN_DT_BOOL: ((uint8_t *)p)[i] = v != 0; break;
	default: kiln_tensor_set_f64(t, i, (double)v); break;
	}
}

void kiln_strides(const kiln_type *t, int64_t *strides)
{
	int64_t s = 1;
	for (int i = t->rank - 1; i >= 0; i--) {
		strides[i] = s;
		s *= t->dims[i];
	}
}

int64_t *kiln_broadcast_offsets(const kiln_type *in, const kiln_type *out)
{
	int64_t n = kiln_type_numel(out);
	int64_t *off = malloc((size_t)(n ? n : 1) * sizeof *off);
	if (!off)
		return NULL;
	int64_t in_strides[KILN_MAX_RANK], bstride[KILN_MAX_RANK] = {0};
	kiln_strides(in, in_strides);
	int shift = out->rank - in->rank;
	for (int d = 0; d < in->rank; d++)
		bstride[d + shift] = in->dims[d] == 1 ? 0 : in_strides[d];
	int64_t idx[KILN_MAX_RANK] = {0};
	int64_t cur = 0;
	for (int64_t i = 0; i < n; i++) {
		off[i] = cur;
		for (int d = out->rank - 1; d >= 0; d--) {
			if (++idx[d] < out->dims[d]) {
				cur += bstride[d];
				break;
			}
			cur -= bstride[d] * (idx[d] - 1);
			idx[d] = 0;
		}
	}
	return off;
}

double *kiln_load_f64(const kiln_tensor *t)
{
	int64_t n = kiln_tensor_numel(t);
	double *v = malloc((size_t)(n ? n : 1) * sizeof *v);
	if (!v)
		return NULL;
	for (int64_t i = 0; i < n; i++)
		v[i] = kiln_tensor_get_f64(t, i);
	return v;
}

float *kiln_load_f32(const kiln_tensor *t)
{
	int64_t n = kiln_tensor_numel(t);
	float *v = malloc((size_t)(n ? n : 1) * sizeof *v);
	if (!v)
		return NULL;
	for (int64_t i = 0; i < n; i++)
		v[i] = (float)kiln_tensor_get_f64(t, i);
	return v;
}

void kiln_store_f64(kiln_tensor *t, const double *v)
{
	int64_t n = kiln_tensor_numel(t);
	for (int64_t i = 0; i < n; i++)
		kiln_tensor_set_f64(t, i, v[i]);
}
