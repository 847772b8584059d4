/* k_movement.c — reference kernels for data movement and shape ops:
 * Flatten, Reshape, Squeeze, Unsqueeze, Dropout (copies), Transpose, Concat,
 * Split, Slice, Gather, Expand, Shape, ConstantOfShape, Range, Pad, Tile.
 *
 * Every kernel works on raw elements of any dtype. Shape-determining inputs
 * (Slice's starts, Pad's pads, ...) are read from in[] data, not from the
 * graph, so the same kernels serve the importer's constant folding. Output
 * types come from shape inference; a kernel re-derives what it needs and
 * reports a mismatch rather than writing out of bounds. */
#include "interp.h"

#include <stdlib.h>
#include <string.h>

/* A required input's data: NULL only for an empty tensor. */
static bool has_data(const kiln_tensor *t) { return t->data || kiln_tensor_numel(t) == 0; }

static void copy_elem(char *dst, int64_t di, const char *src, int64_t si, size_t esz)
{
	switch (esz) {
	case 1: ((uint8_t *)dst)[di] = ((const uint8_t *)src)[si]; break;
	case 2: ((uint16_t *)dst)[di] = ((const uint16_t *)src)[si]; break;
	case 4: ((uint32_t *)dst)[di] = ((const uint32_t *)src)[si]; break;
	case 8: ((uint64_t *)dst)[di] = ((const uint64_t *)src)[si]; break;
	default: memcpy(dst + (size_t)di * esz, src + (size_t)si * esz, esz); break;
	}
}

/* Copies a dims-shaped walk over src (element strides sstr, starting at
 * element `base`) into dst densely, in C order. Strides may be zero
 * (broadcast) or negative (reversed slices). */
static void strided_copy(void *dst, const void *src, size_t esz, int rank, const int64_t *dims,
                         const int64_t *sstr, int64_t base)
{
	int64_t count = 1;
	for (int k = 0; k < rank; k++)
		count *= dims[k];
	int64_t idx[KILN_MAX_RANK] = {0};
	int64_t off = base;
	for (int64_t i = 0; i < count; i++) {
		copy_elem(dst, i, src, off, esz);
		for (int k = rank - 1; k >= 0; k--) {
			if (++idx[k] < dims[k]) {
				off += sstr[k];
				break;
			}
			off -= sstr[k] * (dims[k] - 1);
			idx[k] = 0;
		}
	}
}

static kiln_status shape_mismatch(const kiln_node *n, const kiln_type *want, const kiln_type *got,
                                  kiln_diag *d)
{
	char a[96], b[96];
	return kiln_diag_error(d, KILN_ERR_SHAPE, n, "computed output type %s, expected %s",
	                       kiln_type_str(want, a, sizeof a), kiln_type_str(got, b, sizeof b));
}

/* ---- pure copies ---- */

static kiln_status copy_all(const kiln_node *n, const kiln_tensor *in, kiln_tensor *out,
                            kiln_diag *d)
{
	size_t bytes = kiln_type_bytes(&out->type);
	KILN_ENSURE(d, has_data(&in[0]) && kiln_type_bytes(&in[0].type) == bytes, KILN_ERR_SHAPE, n,
	            "input has %zu bytes, output %zu", kiln_type_bytes(&in[0].type), bytes);
	if (bytes)
		memcpy(out->data, in[0].data, bytes);
	return KILN_OK;
}

kiln_status kiln_interp_FLATTEN(const kiln_node *n, const kiln_tensor *in, kiln_tensor *out, kiln_diag *d) { return copy_all(n, in, out, d); }
kiln_status kiln_interp_RESHAPE(const kiln_node *n, const kiln_tensor *in, kiln_tensor *out, kiln_diag *d) { return copy_all(n, in, out, d); }
kiln_status kiln_interp_SQUEEZE(const kiln_node *n, const kiln_tensor *in, kiln_tensor *out, kiln_diag *d) { return copy_all(n, in, out, d); }
kiln_status kiln_interp_UNSQUEEZE(const kiln_node *n, const kiln_tensor *in, kiln_tensor *out, kiln_diag *d) { return copy_all(n, in, out, d); }

/* Inference only: the output is the input and the mask all true. Training
 * mode with a nonzero ratio is random, which the oracle cannot be. */
kiln_status kiln_interp_DROPOUT(const kiln_node *n, const kiln_tensor *in, kiln_tensor *out,
                                kiln_diag *d)
{
	bool training = n->n_inputs > 2 && in[2].data && kiln_tensor_get_i64(&in[2], 0) != 0;
	double ratio = n->n_inputs > 1 && in[1].data ? kiln_tensor_get_f64(&in[1], 0) : 0.5;
	KILN_ENSURE(d, !training || ratio == 0, KILN_ERR_UNSUPPORTED, n,
	            "training mode with ratio %g is random; only inference is supported", ratio);
	KILN_TRY(copy_all(n, in, out, d));
	if (n->n_outputs > 1 && out[1].data)
		memset(out[1].data, 1, (size_t)kiln_tensor_numel(&out[1]));
	return KILN_OK;
}

/* ---- Transpose ---- */

kiln_status kiln_interp_TRANSPOSE(const kiln_node *n, const kiln_tensor *in, kiln_tensor *out,
                                  kiln_diag *d)
{
	const kiln_type *it = &in[0].type;
	int rank = it->rank;
	const int64_t *perm_attr;
	int np = kiln_node_ints(n, "perm", &perm_attr);
	KILN_ENSURE(d, np == 0 || np == rank, KILN_ERR_SHAPE, n,
	            "perm has %d entries, input rank is %d", np, rank);
	int64_t istr[KILN_MAX_RANK], sstr[KILN_MAX_RANK];
	bool seen[KILN_MAX_RANK] = {false};
	kiln_type want = {.dtype = it->dtype, .rank = rank};
	kiln_strides(it, istr);
	for (int k = 0; k < rank; k++) {
		int64_t p = np ? perm_attr[k] : rank - 1 - k;
		KILN_ENSURE(d, p >= 0 && p < rank && !seen[p], KILN_ERR_SHAPE, n,
		            "perm is not a permutation of 0..%d", rank - 1);
		seen[p] = true;
		want.dims[k] = it->dims[p];
		sstr[k] = istr[p];
	}
	if (!kiln_type_equal(&want, &out->type))
		return shape_mismatch(n, &want, &out->type, d);
	strided_copy(out->data, in[0].data, kiln_dtype_size(it->dtype), rank, want.dims, sstr, 0);
	return KILN_OK;
}

/* ---- Concat, Split ---- */

/* Elements before and after `axis` of t. */
static void outer_inner(const kiln_type *t, int axis, int64_t *outer, int64_t *inner)
{
	*outer = 1;
	*inner = 1;
	for (int k = 0; k < axis; k++)
		*outer *= t->dims[k];
	for (int k = axis + 1; k < t->rank; k++)
		*inner *= t->dims[k];
}

/* True if a and b agree everywhere except along `axis`. */
static bool same_but_axis(const kiln_type *a, const kiln_type *b, int axis)
{
	if (a->dtype != b->dtype || a->rank != b->rank)
		return false;
	for (int k = 0; k < a->rank; k++)
		if (k != axis && a->dims[k] != b->dims[k])
			return false;
	return true;
}

kiln_status kiln_interp_CONCAT(const kiln_node *n, const kiln_tensor *in, kiln_tensor *out,
                               kiln_diag *d)
{
	const kiln_type *ot = &out->type;
	int axis;
	int64_t a = kiln_node_int(n, "axis", 0);
	KILN_ENSURE(d, kiln_axis_norm(a, ot->rank, &axis), KILN_ERR_SHAPE, n,
	            "axis %lld out of range for rank %d", (long long)a, ot->rank);
	int64_t total = 0;
	for (int k = 0; k < n->n_inputs; k++) {
		char b1[96], b2[96];
		KILN_ENSURE(d, has_data(&in[k]) && same_but_axis(&in[k].type, ot, axis), KILN_ERR_SHAPE, n,
		            "input %d of type %s does not concatenate into %s on axis %d", k,
		            kiln_type_str(&in[k].type, b1, sizeof b1), kiln_type_str(ot, b2, sizeof b2), axis);
		total += in[k].type.dims[axis];
	}
	KILN_ENSURE(d, total == ot->dims[axis], KILN_ERR_SHAPE, n,
	            "inputs sum to %lld on axis %d, output has %lld", (long long)total, axis,
	            (long long)ot->dims[axis]);
	int64_t outer, inner;
	outer_inner(ot, axis, &outer, &inner);
	size_t esz = kiln_dtype_size(ot->dtype);
	char *dst = out->data;
	for (int64_t o = 0; o < outer; o++) {
		for (int k = 0; k < n->n_inputs; k++) {
			size_t block = (size_t)(in[k].type.dims[axis] * inner) * esz;
			if (block)
				memcpy(dst, (const char *)in[k].data + (size_t)o * block, block);
			dst += block;
		}
	}
	return KILN_OK;
}

/* Split sizes are the output types' dims on the axis (shape inference has
 * resolved the split input, num_outputs and uneven last chunks). */
kiln_status kiln_interp_SPLIT(const kiln_node *n, const kiln_tensor *in, kiln_tensor *out,
                              kiln_diag *d)
{
	const kiln_type *it = &in[0].type;
	int axis;
	int64_t a = kiln_node_int(n, "axis", 0);
	KILN_ENSURE(d, kiln_axis_norm(a, it->rank, &axis), KILN_ERR_SHAPE, n,
	            "axis %lld out of range for rank %d", (long long)a, it->rank);
	int64_t total = 0;
	for (int k = 0; k < n->n_outputs; k++) {
		char b1[96], b2[96];
		KILN_ENSURE(d, same_but_axis(&out[k].type, it, axis), KILN_ERR_SHAPE, n,
		            "output %d of type %s is not a split of %s on axis %d", k,
		            kiln_type_str(&out[k].type, b1, sizeof b1), kiln_type_str(it, b2, sizeof b2), axis);
		total += out[k].type.dims[axis];
	}
	KILN_ENSURE(d, total == it->dims[axis], KILN_ERR_SHAPE, n,
	            "outputs sum to %lld on axis %d, input has %lld", (long long)total, axis,
	            (long long)it->dims[axis]);
	int64_t outer, inner;
	outer_inner(it, axis, &outer, &inner);
	size_t esz = kiln_dtype_size(it->dtype);
	const char *src = in[0].data;
	for (int64_t o = 0; o < outer; o++) {
		for (int k = 0; k < n->n_outputs; k++) {
			size_t block = (size_t)(out[k].type.dims[axis] * inner) * esz;
			if (block)
				memcpy((char *)out[k].data + (size_t)o * block, src, block);
			src += block;
		}
	}
	return KILN_OK;
}

/* ---- Slice ---- */

static int64_t clamp64(int64_t v, int64_t lo, int64_t hi) { return v < lo ? lo : v > hi ? hi : v; }

kiln_status kiln_interp_SLICE(const kiln_node *n, const kiln_tensor *in, kiln_tensor *out,
                              kiln_diag *d)
{
	const kiln_type *it = &in[0].type;
	int rank = it->rank;
	int64_t count = kiln_tensor_numel(&in[1]);
	KILN_ENSURE(d, has_data(&in[1]) && has_data(&in[2]) && kiln_tensor_numel(&in[2]) == count,
	            KILN_ERR_SHAPE, n, "starts has %lld entries, ends %lld", (long long)count,
	            (long long)kiln_tensor_numel(&in[2]));
	const kiln_tensor *axes = n->n_inputs > 3 && in[3].data ? &in[3] : NULL;
	const kiln_tensor *steps = n->n_inputs > 4 && in[4].data ? &in[4] : NULL;
	KILN_ENSURE(d, !axes || kiln_tensor_numel(axes) == count, KILN_ERR_SHAPE, n,
	            "axes has %lld entries, starts %lld", (long long)kiln_tensor_numel(axes),
	            (long long)count);
	KILN_ENSURE(d, !steps || kiln_tensor_numel(steps) == count, KILN_ERR_SHAPE, n,
	            "steps has %lld entries, starts %lld", (long long)kiln_tensor_numel(steps),
	            (long long)count);
	KILN_ENSURE(d, count <= rank, KILN_ERR_SHAPE, n, "%lld slice axes for rank %d",
	            (long long)count, rank);

	int64_t start[KILN_MAX_RANK], step[KILN_MAX_RANK];
	bool seen[KILN_MAX_RANK] = {false};
	kiln_type want = *it;
	for (int k = 0; k < rank; k++) {
		start[k] = 0;
		step[k] = 1;
	}
	for (int64_t i = 0; i < count; i++) {
		int64_t a = axes ? kiln_tensor_get_i64(axes, i) : i;
		int ax;
		KILN_ENSURE(d, kiln_axis_norm(a, rank, &ax) && !seen[ax], KILN_ERR_SHAPE, n,
		            "axis %lld is out of range for rank %d or repeated", (long long)a, rank);
		seen[ax] = true;
		int64_t dim = it->dims[ax];
		int64_t s = kiln_tensor_get_i64(&in[1], i), e = kiln_tensor_get_i64(&in[2], i);
		int64_t st = steps ? kiln_tensor_get_i64(steps, i) : 1;
		KILN_ENSURE(d, st != 0, KILN_ERR_SHAPE, n, "step on axis %d is 0", ax);
		kiln_slice_axis(dim, s, e, st, &start[ax], &want.dims[ax]);
		step[ax] = st;
	}
	if (!kiln_type_equal(&want, &out->type))
		return shape_mismatch(n, &want, &out->type, d);
	int64_t istr[KILN_MAX_RANK], sstr[KILN_MAX_RANK];
	kiln_strides(it, istr);
	int64_t base = 0;
	for (int k = 0; k < rank; k++) {
		/* an empty axis may have start == dim; nothing is read then */
		if (want.dims[k] > 0)
			base += start[k] * istr[k];
		/* With two or more elements |step| < dim, so this cannot overflow;
		 * a huge step (INT64_MAX) only ever takes one element. */
		sstr[k] = want.dims[k] > 1 ? step[k] * istr[k] : 0;
	}
	if (kiln_type_numel(&want) > 0)
		strided_copy(out->data, in[0].data, kiln_dtype_size(it->dtype), rank, want.dims,
		             sstr, base);
	return KILN_OK;
}

/* ---- Gather ---- */

kiln_status kiln_interp_GATHER(const kiln_node *n, const kiln_tensor *in, kiln_tensor *out,
                               kiln_diag *d)
{
	const kiln_type *it = &in[0].type, *xt = &in[1].type;
	int axis;
	int64_t a = kiln_node_int(n, "axis", 0);
	KILN_ENSURE(d, kiln_axis_norm(a, it->rank, &axis), KILN_ERR_SHAPE, n,
	            "axis %lld out of range for rank %d", (long long)a, it->rank);
	KILN_ENSURE(d, it->rank - 1 + xt->rank <= KILN_MAX_RANK, KILN_ERR_SHAPE, n,
	            "output rank %d exceeds %d", it->rank - 1 + xt->rank, KILN_MAX_RANK);
	kiln_type want = {.dtype = it->dtype, .rank = it->rank - 1 + xt->rank};
	int r = 0;
	for (int k = 0; k < axis; k++)
		want.dims[r++] = it->dims[k];
	for (int k = 0; k < xt->rank; k++)
		want.dims[r++] = xt->dims[k];
	for (int k = axis + 1; k < it->rank; k++)
		want.dims[r++] = it->dims[k];
	if (!kiln_type_equal(&want, &out->type))
		return shape_mismatch(n, &want, &out->type, d);
	int64_t outer, inner, dim = it->dims[axis], nidx = kiln_tensor_numel(&in[1]);
	outer_inner(it, axis, &outer, &inner);
	for (int64_t j = 0; j < nidx; j++) {
		int64_t v = kiln_tensor_get_i64(&in[1], j);
		KILN_ENSURE(d, v >= -dim && v < dim, KILN_ERR_INVALID_ARG, n,
		            "index %lld out of range for axis %d of size %lld", (long long)v, axis,
		            (long long)dim);
	}
	size_t esz = kiln_dtype_size(it->dtype), block = (size_t)inner * esz;
	const char *src = in[0].data;
	char *dst = out->data;
	for (int64_t o = 0; o < outer; o++) {
		for (int64_t j = 0; j < nidx; j++) {
			int64_t v = kiln_tensor_get_i64(&in[1], j);
			if (v < 0)
				v += dim;
			if (block)
				memcpy(dst, src + (size_t)(o * dim + v) * block, block);
			dst += block;
		}
	}
	return KILN_OK;
}

/* ---- Expand, Tile ---- */

/* Output dims come from the output type (broadcast of the input with the
 * shape input, resolved by shape inference). */
kiln_status kiln_interp_EXPAND(const kiln_node *n, const kiln_tensor *in, kiln_tensor *out,
                               kiln_diag *d)
{
	const kiln_type *it = &in[0].type, *ot = &out->type;
	int shift = ot->rank - it->rank;
	char b1[96], b2[96];
	bool ok = shift >= 0 && it->dtype == ot->dtype;
	for (int k = 0; ok && k < it->rank; k++)
		ok = it->dims[k] == 1 || it->dims[k] == ot->dims[k + shift];
	KILN_ENSURE(d, ok, KILN_ERR_SHAPE, n, "input type %s does not expand to %s",
	            kiln_type_str(it, b1, sizeof b1), kiln_type_str(ot, b2, sizeof b2));
	int64_t istr[KILN_MAX_RANK], sstr[KILN_MAX_RANK] = {0};
	kiln_strides(it, istr);
	for (int k = 0; k < it->rank; k++)
		sstr[k + shift] = it->dims[k] == 1 ? 0 : istr[k];
	strided_copy(out->data, in[0].data, kiln_dtype_size(it->dtype), ot->rank, ot->dims, sstr, 0);
	return KILN_OK;
}

kiln_status kiln_interp_TILE(const kiln_node *n, const kiln_tensor *in, kiln_tensor *out,
                             kiln_diag *d)
{
	const kiln_type *it = &in[0].type;
	int rank = it->rank;
	KILN_ENSURE(d, has_data(&in[1]) && kiln_tensor_numel(&in[1]) == rank, KILN_ERR_SHAPE, n,
	            "repeats has %lld entries, input rank is %d", (long long)kiln_tensor_numel(&in[1]),
	            rank);
	kiln_type want = *it;
	for (int k = 0; k < rank; k++) {
		int64_t r = kiln_tensor_get_i64(&in[1], k);
		KILN_ENSURE(d, r >= 0, KILN_ERR_SHAPE, n, "repeat %lld on axis %d is negative",
		            (long long)r, k);
		want.dims[k] = it->dims[k] * r;
	}
	if (!kiln_type_equal(&want, &out->type))
		return shape_mismatch(n, &want, &out->type, d);
	int64_t istr[KILN_MAX_RANK], idx[KILN_MAX_RANK] = {0}, src_idx[KILN_MAX_RANK] = {0};
	kiln_strides(it, istr);
	int64_t count = kiln_type_numel(&want), off = 0;
	size_t esz = kiln_dtype_size(it->dtype);
	/* idx walks the output; src_idx is idx modulo the input dims */
	for (int64_t i = 0; i < count; i++) {
		copy_elem(out->data, i, in[0].data, off, esz);
		for (int k = rank - 1; k >= 0; k--) {
			if (++idx[k] < want.dims[k]) {
				if (++src_idx[k] == it->dims[k]) {
					off -= istr[k] * (it->dims[k] - 1);
					src_idx[k] = 0;
				} else {
					off += istr[k];
				}
				break;
			}
			off -= istr[k] * src_idx[k];
			src_idx[k] = 0;
			idx[k] = 0;
		}
	}
	return KILN_OK;
}

/* ---- Shape, ConstantOfShape, Range ---- */

kiln_status kiln_interp_SHAPE(const kiln_node *n, const kiln_tensor *in, kiln_tensor *out,
                              kiln_diag *d)
{
	int rank = in[0].type.rank;
	int64_t start = kiln_node_int(n, "start", 0), end = kiln_node_int(n, "end", rank);
	if (start < 0)
		start += rank;
	if (end < 0)
		end += rank;
	start = clamp64(start, 0, rank);
	end = clamp64(end, 0, rank);
	int64_t count = end > start ? end - start : 0;
	KILN_ENSURE(d, out->type.dtype == KILN_DT_I64 && kiln_tensor_numel(out) == count,
	            KILN_ERR_SHAPE, n, "output must be i64 with %lld elements", (long long)count);
	for (int64_t i = 0; i < count; i++)
		((int64_t *)out->data)[i] = in[0].type.dims[start + i];
	return KILN_OK;
}

kiln_status kiln_interp_CONSTANT_OF_SHAPE(const kiln_node *n, const kiln_tensor *in,
                                          kiln_tensor *out, kiln_diag *d)
{
	const kiln_tensor *v = kiln_node_tensor(n, "value");
	int64_t count = kiln_tensor_numel(out);
	if (!v) {
		KILN_ENSURE(d, out->type.dtype == KILN_DT_F32, KILN_ERR_SHAPE, n,
		            "output must be f32 without a value attribute");
		if (count)
			memset(out->data, 0, kiln_type_bytes(&out->type));
		return KILN_OK;
	}
	KILN_ENSURE(d, kiln_tensor_numel(v) == 1 && v->type.dtype == out->type.dtype,
	            KILN_ERR_SHAPE, n, "value must be one element of the output dtype %s",
	            kiln_dtype_name(out->type.dtype));
	for (int64_t i = 0; i < count; i++)
		copy_elem(out->data, i, v->data, 0, kiln_dtype_size(v->type.dtype));
	return KILN_OK;
}

/* Element i is start + i * delta; the count is the output's (shape inference
 * computed ceil((limit - start) / delta)). Integers are exact. */
kiln_status kiln_interp_RANGE(const kiln_node *n, const kiln_tensor *in, kiln_tensor *out,
                              kiln_diag *d)
{
	for (int k = 0; k < 3; k++)
		KILN_ENSURE(d, in[k].data && kiln_tensor_numel(&in[k]) == 1, KILN_ERR_SHAPE, n,
		            "input %d must be a scalar", k);
	int64_t count = kiln_tensor_numel(out);
	if (kiln_dtype_is_float(out->type.dtype)) {
		double start = kiln_tensor_get_f64(&in[0], 0), delta = kiln_tensor_get_f64(&in[2], 0);
		for (int64_t i = 0; i < count; i++)
			kiln_tensor_set_f64(out, i, start + (double)i * delta);
	} else {
		int64_t start = kiln_tensor_get_i64(&in[0], 0), delta = kiln_tensor_get_i64(&in[2], 0);
		for (int64_t i = 0; i < count; i++)
			kiln_tensor_set_i64(out, i, (int64_t)((uint64_t)start + (uint64_t)i * (uint64_t)delta));
	}
	return KILN_OK;
}

/* ---- Pad ---- */

/* Negative pads crop first; positive pads then extend the cropped input
 * (so edge/reflect/wrap read the cropped border, like onnxruntime). */
kiln_status kiln_interp_PAD(const kiln_node *n, const kiln_tensor *in, kiln_tensor *out,
                            kiln_diag *d)
{
	const kiln_type *it = &in[0].type;
	int rank = it->rank;
	const char *ms = kiln_node_string(n, "mode", "constant");
	kiln_pad_mode mode;
	KILN_ENSURE(d, kiln_pad_mode_parse(ms, &mode), KILN_ERR_UNSUPPORTED, n, "unknown mode '%s'", ms);

	const kiln_tensor *axes = n->n_inputs > 3 && in[3].data ? &in[3] : NULL;
	int64_t naxes = axes ? kiln_tensor_numel(axes) : rank;
	KILN_ENSURE(d, has_data(&in[1]) && kiln_tensor_numel(&in[1]) == 2 * naxes, KILN_ERR_SHAPE, n,
	            "pads has %lld entries, expected %lld", (long long)kiln_tensor_numel(&in[1]),
	            (long long)(2 * naxes));
	int64_t pb[KILN_MAX_RANK] = {0}, pe[KILN_MAX_RANK] = {0};
	bool seen[KILN_MAX_RANK] = {false};
	for (int64_t i = 0; i < naxes; i++) {
		int64_t a = axes ? kiln_tensor_get_i64(axes, i) : i;
		int ax;
		KILN_ENSURE(d, kiln_axis_norm(a, rank, &ax) && !seen[ax], KILN_ERR_SHAPE, n,
		            "axis %lld is out of range for rank %d or repeated", (long long)a, rank);
		seen[ax] = true;
		pb[ax] = kiln_tensor_get_i64(&in[1], i);
		pe[ax] = kiln_tensor_get_i64(&in[1], i + naxes);
	}

	int64_t lo[KILN_MAX_RANK], len[KILN_MAX_RANK], before[KILN_MAX_RANK];
	kiln_type want = *it;
	for (int k = 0; k < rank; k++) {
		lo[k] = pb[k] < 0 ? -pb[k] : 0;
		len[k] = it->dims[k] - lo[k] - (pe[k] < 0 ? -pe[k] : 0);
		KILN_ENSURE(d, len[k] >= 0, KILN_ERR_SHAPE, n,
		            "pads crop more than the %lld elements of axis %d", (long long)it->dims[k], k);
		before[k] = pb[k] > 0 ? pb[k] : 0;
		want.dims[k] = len[k] + before[k] + (pe[k] > 0 ? pe[k] : 0);
		KILN_ENSURE(d, mode == KILN_PAD_CONSTANT || len[k] > 0 || want.dims[k] == 0,
		            KILN_ERR_SHAPE, n, "%s padding of empty axis %d", ms, k);
	}
	if (!kiln_type_equal(&want, &out->type))
		return shape_mismatch(n, &want, &out->type, d);

	size_t esz = kiln_dtype_size(it->dtype);
	char zero[8] = {0};
	const void *cval = zero;
	if (mode == KILN_PAD_CONSTANT && n->n_inputs > 2 && in[2].data && kiln_tensor_numel(&in[2]) > 0) {
		KILN_ENSURE(d, in[2].type.dtype == it->dtype, KILN_ERR_SHAPE, n,
		            "constant_value is %s, data is %s", kiln_dtype_name(in[2].type.dtype),
		            kiln_dtype_name(it->dtype));
		cval = in[2].data;
	}
	int64_t istr[KILN_MAX_RANK], idx[KILN_MAX_RANK] = {0};
	kiln_strides(it, istr);
	int64_t count = kiln_type_numel(&want);
	for (int64_t i = 0; i < count; i++) {
		int64_t off = 0;
		bool inside = true;
		for (int k = 0; k < rank; k++) {
			int64_t c = idx[k] - before[k];
			if (c < 0 || c >= len[k]) {
				if (mode == KILN_PAD_CONSTANT) {
					inside = false;
					break;
				}
				c = kiln_pad_map(mode, c, len[k]);
			}
			off += (lo[k] + c) * istr[k];
		}
		if (inside)
			copy_elem(out->data, i, in[0].data, off, esz);
		else
			copy_elem(out->data, i, cval, 0, esz);
		for (int k = rank - 1; k >= 0; k--) {
			if (++idx[k] < want.dims[k])
				break;
			idx[k] = 0;
		}
	}
	return KILN_OK;
}
