/* lower_movement.c — lowering of the data-movement family (see cpu.h):
 * copies (Flatten, Reshape, Squeeze, Unsqueeze, Identity, Dropout),
 * strided views (Transpose, Slice, Expand, Tile), Concat, Split, Gather,
 * Pad, Resize, Shape, ConstantOfShape, Range, QuantizeLinear and
 * DequantizeLinear, onto the kernels of kernels/kk_movement.c; the
 * NCHWc reorders onto kernels/kk_nchwc.c's.
 *
 * Everything that depends only on shapes and constants is resolved here:
 * views are collapsed to their fewest dims, Slice bounds clamped, Pad's
 * per-axis source maps and Resize's per-axis taps (from ir/movement.c, as
 * the interpreter's, so both agree exactly) built into blobs that replace a
 * constant input. The kernels only move bytes and do the arithmetic. */
#include "cpu.h"
#include "kk_dtype.h"
#include "kk_params_movement.h"
#include "kk_params_nchwc.h"

#include <string.h>

static const kiln_type *in_type(const kiln_node *n, int i) { return &n->inputs[i]->type; }
static const kiln_type *out_type(const kiln_node *n, int i) { return &n->outputs[i]->type; }
/* Index of output i in the kernel's tensor list. */
static int64_t out_t(const kiln_node *n, int i) { return n->n_inputs + i; }
static int64_t esize(const kiln_type *t) { return (int64_t)kiln_dtype_size(t->dtype); }

static bool has_in(const kiln_node *n, int i) { return kiln_node_in(n, i) != NULL; }

static bool is_const(const kiln_node *n, int i)
{
	const kiln_value *v = kiln_node_in(n, i);
	return v && v->kind == KILN_VALUE_CONST && v->data;
}

static kiln_status need_const(const kiln_node *n, int i, const char *what, kiln_diag *d)
{
	KILN_ENSURE(d, is_const(n, i), KILN_ERR_UNSUPPORTED, n,
	            "input %d ('%s') must be a constant for the CPU backend", i, what);
	return KILN_OK;
}

/* C-order element strides of t. */
static void strides(const kiln_type *t, int64_t *s)
{
	int64_t acc = 1;
	for (int k = t->rank - 1; k >= 0; k--) {
		s[k] = acc;
		acc *= t->dims[k];
	}
}

static int64_t clamp64(int64_t v, int64_t lo, int64_t hi) { return v < lo ? lo : v > hi ? hi : v; }

/* A blob of `bytes` that replaces constant input `input` for the kernel. */
static void *blob_alloc(kiln_kcall *c, int input, int64_t bytes)
{
	void *p = kiln_arena_alloc(c->arena, (size_t)(bytes > 0 ? bytes : 1));
	if (p) {
		c->repl[input] = p;
		c->repl_bytes[input] = bytes;
	}
	return p;
}

/* ---- copies ---------------------------------------------------------------- */

static void lower_copy(const kiln_node *n, kiln_kcall *c, int64_t mask_t, int64_t mask_bytes)
{
	c->fn = "kk_copy";
	kiln_kcall_i(c, (int64_t)kiln_type_bytes(out_type(n, 0)));
	kiln_kcall_i(c, 0);
	kiln_kcall_i(c, out_t(n, 0));
	kiln_kcall_i(c, mask_t);
	kiln_kcall_i(c, mask_bytes);
}

/* A compiled model is an inference artefact: Dropout copies its input and
 * sets the mask to all true. When ratio and training_mode are constants
 * that ask for random dropping, compiling fails (like the interpreter).
 * When either is a run-time input the copy is still exact for ratio 0 or
 * training_mode false, the only cases the interpreter can run; for others
 * the compiled model gives the inference result (docs/kernels/movement.md). */
static kiln_status lower_dropout(const kiln_node *n, kiln_kcall *c, kiln_diag *d)
{
	bool known = has_in(n, 2) && n->inputs[2]->kind == KILN_VALUE_CONST &&
	             (!has_in(n, 1) || n->inputs[1]->kind == KILN_VALUE_CONST);
	if (known) {
		double ratio = has_in(n, 1) ? kiln_const_get_f64(n->inputs[1], 0) : 0.5;
		KILN_ENSURE(d, kiln_const_get_i64(n->inputs[2], 0) == 0 || ratio == 0,
		            KILN_ERR_UNSUPPORTED, n,
		            "training mode with ratio %g is random; only inference is supported", ratio);
	}
	bool mask = n->n_outputs > 1;
	lower_copy(n, c, mask ? out_t(n, 1) : -1, mask ? kiln_type_numel(out_type(n, 1)) : 0);
	return KILN_OK;
}

/* ---- strided views ------------------------------------------------------------ */

typedef struct mv_view {
	int rank;
	int64_t dims[KK_MV_MAX_RANK];
	int64_t str[KK_MV_MAX_RANK]; /* input element strides */
	int64_t base;
} mv_view;

/* Drops size-1 dims and merges neighbours that walk the input as one dim,
 * then picks the kernel: a plain copy, a run copy or a tiled transpose. */
static void lower_view(const kiln_node *n, kiln_kcall *c, const mv_view *v)
{
	const kiln_type *ot = out_type(n, 0);
	if (kiln_type_numel(ot) == 0) {
		lower_copy(n, c, -1, 0);
		return;
	}
	mv_view m = {.base = v->base};
	for (int k = 0; k < v->rank; k++) {
		if (v->dims[k] == 1)
			continue;
		if (m.rank > 0 && m.str[m.rank - 1] == v->str[k] * v->dims[k]) {
			m.dims[m.rank - 1] *= v->dims[k];
			m.str[m.rank - 1] = v->str[k];
			continue;
		}
		m.dims[m.rank] = v->dims[k];
		m.str[m.rank++] = v->str[k];
	}
	if (m.rank == 0) {
		m.dims[0] = 1;
		m.str[m.rank++] = 1;
	}
	if (m.rank == 1 && m.str[0] == 1 && m.base == 0) {
		lower_copy(n, c, -1, 0);
		return;
	}
	int tile = -1, last = m.rank - 1;
	if (m.str[last] != 1 && m.str[last] != 0)
		for (int k = 0; k < last; k++)
			if (m.str[k] == 1)
				tile = k;
	c->fn = "kk_strided_copy";
	kiln_kcall_i(c, esize(ot));
	kiln_kcall_i(c, out_t(n, 0));
	kiln_kcall_i(c, m.base);
	kiln_kcall_i(c, m.rank);
	kiln_kcall_i(c, tile);
	for (int k = 0; k < m.rank; k++)
		kiln_kcall_i(c, m.dims[k]);
	for (int k = 0; k < m.rank; k++)
		kiln_kcall_i(c, m.str[k]);
}

static kiln_status lower_transpose(const kiln_node *n, kiln_kcall *c, kiln_diag *d)
{
	const kiln_type *it = in_type(n, 0);
	const int64_t *perm;
	int np = kiln_node_ints(n, "perm", &perm);
	KILN_ENSURE(d, np == 0 || np == it->rank, KILN_ERR_SHAPE, n,
	            "perm has %d entries, input rank is %d", np, it->rank);
	int64_t istr[KILN_MAX_RANK];
	strides(it, istr);
	mv_view v = {.rank = it->rank};
	bool seen[KILN_MAX_RANK] = {false};
	for (int k = 0; k < it->rank; k++) {
		int64_t p = np ? perm[k] : it->rank - 1 - k;
		KILN_ENSURE(d, p >= 0 && p < it->rank && !seen[p], KILN_ERR_SHAPE, n,
		            "perm is not a permutation of 0..%d", it->rank - 1);
		seen[p] = true;
		v.dims[k] = it->dims[p];
		v.str[k] = istr[p];
	}
	lower_view(n, c, &v);
	return KILN_OK;
}

static kiln_status lower_slice(const kiln_node *n, kiln_kcall *c, kiln_diag *d)
{
	const kiln_type *it = in_type(n, 0);
	int rank = it->rank;
	KILN_TRY(need_const(n, 1, "starts", d));
	KILN_TRY(need_const(n, 2, "ends", d));
	if (has_in(n, 3))
		KILN_TRY(need_const(n, 3, "axes", d));
	if (has_in(n, 4))
		KILN_TRY(need_const(n, 4, "steps", d));
	int64_t count = kiln_type_numel(in_type(n, 1));
	KILN_ENSURE(d, count <= rank && kiln_type_numel(in_type(n, 2)) == count &&
	                   (!has_in(n, 3) || kiln_type_numel(in_type(n, 3)) == count) &&
	                   (!has_in(n, 4) || kiln_type_numel(in_type(n, 4)) == count),
	            KILN_ERR_SHAPE, n, "starts, ends, axes and steps disagree in length");
	int64_t istr[KILN_MAX_RANK], start[KILN_MAX_RANK] = {0};
	strides(it, istr);
	mv_view v = {.rank = rank};
	bool seen[KILN_MAX_RANK] = {false};
	for (int k = 0; k < rank; k++) {
		v.dims[k] = it->dims[k];
		v.str[k] = istr[k];
	}
	for (int64_t i = 0; i < count; i++) {
		int64_t a = has_in(n, 3) ? kiln_const_get_i64(n->inputs[3], i) : i;
		int ax;
		KILN_ENSURE(d, kiln_axis_norm(a, rank, &ax) && !seen[ax], KILN_ERR_SHAPE, n,
		            "axis %lld is out of range for rank %d or repeated", (long long)a, rank);
		seen[ax] = true;
		int64_t dim = it->dims[ax];
		int64_t s = kiln_const_get_i64(n->inputs[1], i), e = kiln_const_get_i64(n->inputs[2], i);
		int64_t st = has_in(n, 4) ? kiln_const_get_i64(n->inputs[4], i) : 1, len;
		KILN_ENSURE(d, st != 0, KILN_ERR_SHAPE, n, "step on axis %d is 0", ax);
		kiln_slice_axis(dim, s, e, st, &start[ax], &len);
		v.dims[ax] = len;
		/* with one element or none the step is never taken (and may be huge) */
		v.str[ax] = len > 1 ? st * istr[ax] : istr[ax];
	}
	kiln_type want = *it;
	memcpy(want.dims, v.dims, sizeof want.dims[0] * (size_t)rank);
	KILN_ENSURE(d, kiln_type_equal(&want, out_type(n, 0)), KILN_ERR_SHAPE, n,
	            "slice bounds disagree with the output type");
	for (int k = 0; k < rank; k++)
		v.base += start[k] * istr[k];
	lower_view(n, c, &v);
	return KILN_OK;
}

static kiln_status lower_expand(const kiln_node *n, kiln_kcall *c, kiln_diag *d)
{
	const kiln_type *it = in_type(n, 0), *ot = out_type(n, 0);
	int shift = ot->rank - it->rank;
	bool ok = shift >= 0;
	for (int k = 0; ok && k < it->rank; k++)
		ok = it->dims[k] == 1 || it->dims[k] == ot->dims[k + shift];
	KILN_ENSURE(d, ok, KILN_ERR_SHAPE, n, "input does not expand to the output type");
	int64_t istr[KILN_MAX_RANK];
	strides(it, istr);
	mv_view v = {.rank = ot->rank};
	for (int k = 0; k < ot->rank; k++) {
		v.dims[k] = ot->dims[k];
		v.str[k] = k < shift || it->dims[k - shift] == 1 ? 0 : istr[k - shift];
	}
	lower_view(n, c, &v);
	return KILN_OK;
}

/* Output axis k of Tile, of size dims[k] * repeats[k], is walked as the two
 * axes [repeats[k], dims[k]] with strides [0, input stride]. */
static kiln_status lower_tile(const kiln_node *n, kiln_kcall *c, kiln_diag *d)
{
	const kiln_type *it = in_type(n, 0), *ot = out_type(n, 0);
	KILN_ENSURE(d, ot->rank == it->rank, KILN_ERR_SHAPE, n, "output rank differs from input");
	int64_t istr[KILN_MAX_RANK];
	strides(it, istr);
	mv_view v = {.rank = 2 * it->rank};
	for (int k = 0; k < it->rank; k++) {
		KILN_ENSURE(d, it->dims[k] > 0 || ot->dims[k] == 0, KILN_ERR_SHAPE, n,
		            "axis %d: cannot tile an empty axis to %lld", k, (long long)ot->dims[k]);
		v.dims[2 * k] = it->dims[k] ? ot->dims[k] / it->dims[k] : 0;
		v.str[2 * k] = 0;
		v.dims[2 * k + 1] = it->dims[k];
		v.str[2 * k + 1] = istr[k];
	}
	lower_view(n, c, &v);
	return KILN_OK;
}

/* ---- Concat, Split ------------------------------------------------------------ */

/* Rows of the joined tensor (before `axis`) and the bytes of each piece:
 * the parts' dims on the axis times the elements after it. */
static void lower_cat(kiln_kcall *c, const kiln_type *joined, int64_t joined_t, int axis,
                      const kiln_value *const *parts, int n_parts, int64_t first_t)
{
	int64_t rows = 1, inner = esize(joined), row_bytes = 0;
	for (int k = 0; k < axis; k++)
		rows *= joined->dims[k];
	for (int k = axis + 1; k < joined->rank; k++)
		inner *= joined->dims[k];
	for (int i = 0; i < n_parts; i++)
		row_bytes += parts[i]->type.dims[axis] * inner;
	kiln_kcall_i(c, joined_t);
	kiln_kcall_i(c, first_t);
	kiln_kcall_i(c, n_parts);
	kiln_kcall_i(c, rows);
	kiln_kcall_i(c, row_bytes);
	for (int i = 0; i < n_parts; i++)
		kiln_kcall_i(c, parts[i]->type.dims[axis] * inner);
}

static kiln_status lower_concat(const kiln_node *n, kiln_kcall *c, kiln_diag *d)
{
	const kiln_type *ot = out_type(n, 0);
	int axis;
	int64_t a = kiln_node_int(n, "axis", 0);
	KILN_ENSURE(d, kiln_axis_norm(a, ot->rank, &axis), KILN_ERR_SHAPE, n,
	            "axis %lld out of range for rank %d", (long long)a, ot->rank);
	for (int i = 0; i < n->n_inputs; i++)
		KILN_ENSURE(d, has_in(n, i), KILN_ERR_SHAPE, n, "input %d is omitted", i);
	c->fn = "kk_concat";
	lower_cat(c, ot, out_t(n, 0), axis, (const kiln_value *const *)n->inputs, n->n_inputs, 0);
	return KILN_OK;
}

static kiln_status lower_split(const kiln_node *n, kiln_kcall *c, kiln_diag *d)
{
	const kiln_type *it = in_type(n, 0);
	int axis;
	int64_t a = kiln_node_int(n, "axis", 0);
	KILN_ENSURE(d, kiln_axis_norm(a, it->rank, &axis), KILN_ERR_SHAPE, n,
	            "axis %lld out of range for rank %d", (long long)a, it->rank);
	c->fn = "kk_split";
	lower_cat(c, it, 0, axis, (const kiln_value *const *)n->outputs, n->n_outputs, out_t(n, 0));
	return KILN_OK;
}

/* ---- Gather ------------------------------------------------------------------ */

static kiln_status lower_gather(const kiln_node *n, kiln_kcall *c, kiln_diag *d)
{
	const kiln_type *it = in_type(n, 0), *xt = in_type(n, 1);
	int axis;
	int64_t a = kiln_node_int(n, "axis", 0);
	KILN_ENSURE(d, kiln_axis_norm(a, it->rank, &axis), KILN_ERR_SHAPE, n,
	            "axis %lld out of range for rank %d", (long long)a, it->rank);
	KILN_ENSURE(d, xt->dtype == KILN_DT_I32 || xt->dtype == KILN_DT_I64, KILN_ERR_UNSUPPORTED, n,
	            "indices of dtype %s (i32 or i64 expected)", kiln_dtype_name(xt->dtype));
	int64_t outer = 1, inner = 1, dim = it->dims[axis], nidx = kiln_type_numel(xt);
	for (int k = 0; k < axis; k++)
		outer *= it->dims[k];
	for (int k = axis + 1; k < it->rank; k++)
		inner *= it->dims[k];
	if (is_const(n, 1)) {
		for (int64_t j = 0; j < nidx; j++) {
			int64_t v = kiln_const_get_i64(n->inputs[1], j);
			KILN_ENSURE(d, v >= -dim && v < dim, KILN_ERR_INVALID_ARG, n,
			            "index %lld out of range for axis %d of size %lld", (long long)v, axis,
			            (long long)dim);
		}
	}
	KILN_ENSURE(d, dim > 0 || kiln_type_numel(out_type(n, 0)) == 0, KILN_ERR_SHAPE, n,
	            "cannot gather from the empty axis %d", axis);
	c->fn = "kk_gather";
	kiln_kcall_i(c, outer);
	kiln_kcall_i(c, dim);
	kiln_kcall_i(c, inner * esize(it));
	kiln_kcall_i(c, nidx);
	kiln_kcall_i(c, esize(xt));
	kiln_kcall_i(c, esize(it));
	return KILN_OK;
}

/* ---- Pad --------------------------------------------------------------------- */

static kiln_status lower_pad(const kiln_node *n, kiln_kcall *c, kiln_diag *d)
{
	const kiln_type *it = in_type(n, 0), *ot = out_type(n, 0);
	int rank = it->rank;
	const char *ms = kiln_node_string(n, "mode", "constant");
	kiln_pad_mode mode;
	KILN_ENSURE(d, kiln_pad_mode_parse(ms, &mode), KILN_ERR_UNSUPPORTED, n, "unknown mode '%s'", ms);
	KILN_TRY(need_const(n, 1, "pads", d));
	if (has_in(n, 3))
		KILN_TRY(need_const(n, 3, "axes", d));
	int64_t naxes = has_in(n, 3) ? kiln_type_numel(in_type(n, 3)) : rank;
	KILN_ENSURE(d, naxes <= rank && kiln_type_numel(in_type(n, 1)) == 2 * naxes, KILN_ERR_SHAPE, n,
	            "pads has %lld entries, expected %lld", (long long)kiln_type_numel(in_type(n, 1)),
	            (long long)(2 * naxes));
	int64_t pb[KILN_MAX_RANK] = {0}, pe[KILN_MAX_RANK] = {0};
	bool seen[KILN_MAX_RANK] = {false};
	for (int64_t i = 0; i < naxes; i++) {
		int64_t a = has_in(n, 3) ? kiln_const_get_i64(n->inputs[3], i) : i;
		int ax;
		KILN_ENSURE(d, kiln_axis_norm(a, rank, &ax) && !seen[ax], KILN_ERR_SHAPE, n,
		            "axis %lld is out of range for rank %d or repeated", (long long)a, rank);
		seen[ax] = true;
		pb[ax] = kiln_const_get_i64(n->inputs[1], i);
		pe[ax] = kiln_const_get_i64(n->inputs[1], i + naxes);
	}
	/* Negative pads crop first; positive pads then extend the cropped input. */
	int64_t lo[KILN_MAX_RANK], len[KILN_MAX_RANK], before[KILN_MAX_RANK], total = 0;
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
		total += want.dims[k];
	}
	KILN_ENSURE(d, kiln_type_equal(&want, ot), KILN_ERR_SHAPE, n,
	            "pads disagree with the output type");
	if (rank == 0 || kiln_type_numel(ot) == 0) {
		lower_copy(n, c, -1, 0);
		return KILN_OK;
	}
	int64_t cval_t = -1;
	if (mode == KILN_PAD_CONSTANT && has_in(n, 2) && kiln_type_numel(in_type(n, 2)) > 0) {
		KILN_ENSURE(d, in_type(n, 2)->dtype == it->dtype, KILN_ERR_SHAPE, n,
		            "constant_value is %s, data is %s", kiln_dtype_name(in_type(n, 2)->dtype),
		            kiln_dtype_name(it->dtype));
		cval_t = 2;
	}
	int64_t *map = blob_alloc(c, 1, total * 8);
	KILN_ENSURE(d, map, KILN_ERR_OOM, n, "out of memory");
	int64_t istr[KILN_MAX_RANK], map_off[KILN_MAX_RANK], at = 0;
	strides(it, istr);
	for (int k = 0; k < rank; k++) {
		map_off[k] = at;
		for (int64_t o = 0; o < want.dims[k]; o++) {
			int64_t q = o - before[k];
			if (q < 0 || q >= len[k]) {
				if (mode == KILN_PAD_CONSTANT) {
					map[at++] = -1;
					continue;
				}
				q = kiln_pad_map(mode, q, len[k]);
			}
			map[at++] = (lo[k] + q) * istr[k];
		}
	}
	c->fn = "kk_pad";
	kiln_kcall_i(c, esize(it));
	kiln_kcall_i(c, rank);
	kiln_kcall_i(c, out_t(n, 0));
	kiln_kcall_i(c, 1);
	kiln_kcall_i(c, cval_t);
	kiln_kcall_i(c, before[rank - 1]);
	kiln_kcall_i(c, len[rank - 1]);
	for (int k = 0; k < rank; k++)
		kiln_kcall_i(c, want.dims[k]);
	for (int k = 0; k < rank; k++)
		kiln_kcall_i(c, map_off[k]);
	return KILN_OK;
}

/* ---- Resize ------------------------------------------------------------------ */

static bool rs_present(const kiln_node *n, int i)
{
	return has_in(n, i) && kiln_type_numel(in_type(n, i)) > 0;
}

/* Per-axis scale and roi, as the interpreter reads them. */
static kiln_status rs_read_scales(const kiln_node *n, double *scale, double *roi_lo,
                                  double *roi_hi, bool *has_roi, kiln_diag *d)
{
	const kiln_type *xt = in_type(n, 0);
	int axes[KILN_MAX_RANK], na;
	KILN_TRY(kiln_resize_axes(n, xt->rank, axes, &na, scale, roi_lo, roi_hi, d));
	*has_roi = rs_present(n, 1);
	if (*has_roi) {
		KILN_TRY(need_const(n, 1, "roi", d));
		KILN_ENSURE(d, kiln_type_numel(in_type(n, 1)) == 2 * na, KILN_ERR_SHAPE, n,
		            "roi has %lld elements, expected %d", (long long)kiln_type_numel(in_type(n, 1)),
		            2 * na);
		for (int i = 0; i < na; i++) {
			roi_lo[axes[i]] = kiln_const_get_f64(n->inputs[1], i);
			roi_hi[axes[i]] = kiln_const_get_f64(n->inputs[1], na + i);
		}
	}
	bool sc = rs_present(n, 2), sz = !sc && rs_present(n, 3);
	KILN_ENSURE(d, sc || sz, KILN_ERR_INVALID_MODEL, n, "neither scales nor sizes is given");
	int gi = sc ? 2 : 3;
	KILN_TRY(need_const(n, gi, sc ? "scales" : "sizes", d));
	KILN_ENSURE(d, kiln_type_numel(in_type(n, gi)) == na, KILN_ERR_SHAPE, n,
	            "%s has %lld elements, expected %d", sc ? "scales" : "sizes",
	            (long long)kiln_type_numel(in_type(n, gi)), na);
	if (sc) {
		for (int i = 0; i < na; i++)
			scale[axes[i]] = kiln_const_get_f64(n->inputs[2], i);
		return KILN_OK;
	}
	int64_t sizes[KILN_MAX_RANK];
	for (int i = 0; i < na; i++)
		sizes[i] = kiln_const_get_i64(n->inputs[3], i);
	return kiln_resize_sizes(n, xt, axes, na, sizes, scale, d);
}

/* The taps of one axis into off/w (n per output index, as element offsets
 * at this stride) and ex; nearest keeps only the chosen tap. Returns the
 * taps kept per output index (count_only: nothing is written). */
static int rs_axis_taps(const kiln_resize_params *p, int64_t in_len, int64_t out_len, double scale,
                        double roi_start, double roi_end, bool has_roi, int64_t stride,
                        int64_t *off, double *w, uint8_t *ex, bool count_only)
{
	kiln_resize_axis ax;
	kiln_resize_axis_init(p, &ax, in_len, out_len, scale, roi_start, roi_end, has_roi);
	int n = ax.n;
	int kept = p->mode == KILN_RESIZE_NEAREST ? 1 : n;
	if (count_only)
		return kept;
	for (int64_t j = 0; j < out_len; j++) {
		int64_t *o = off + j * kept;
		double *ww = w + j * kept;
		if (kept == n) {
			ex[j] = kiln_resize_taps(p, &ax, j, o, ww);
			for (int t = 0; t < n; t++)
				o[t] *= stride;
			continue;
		}
		/* nearest has two candidate taps, of which it keeps one */
		int64_t ni[2];
		double nw[2];
		ex[j] = kiln_resize_taps(p, &ax, j, ni, nw);
		o[0] = ni[0] * stride;
		ww[0] = 0.0;
		for (int t = 0; t < n; t++)
			if (nw[t] != 0.0) {
				o[0] = ni[t] * stride;
				ww[0] = nw[t];
			}
	}
	return kept;
}

/* The bits of v stored as dtype dt, like kiln_tensor_set_f64 after the
 * interpreter's integer rounding and saturation. */
static int64_t rs_value_bits(kiln_dtype dt, double v)
{
	int64_t bits = 0;
	v = kiln_resize_round(dt, v);
	switch (dt) {
	case KILN_DT_F32: { float f = (float)v; memcpy(&bits, &f, 4); break; }
	case KILN_DT_F64: memcpy(&bits, &v, 8); break;
	case KILN_DT_F16: bits = kiln_f32_to_f16((float)v); break;
	case KILN_DT_BF16: bits = kiln_f32_to_bf16((float)v); break;
	case KILN_DT_BOOL: bits = v != 0; break;
	default: {
		int64_t iv = v != v ? 0 : v >= 9.2233720368547758e18 ? INT64_MAX
		             : v <= -9.2233720368547758e18 ? INT64_MIN : (int64_t)v;
		if (dt == KILN_DT_I32)
			iv = (int32_t)(uint32_t)iv;
		else if (dt == KILN_DT_I8)
			iv = (int8_t)(uint8_t)iv;
		else if (dt == KILN_DT_U8)
			iv = (uint8_t)iv;
		size_t sz = kiln_dtype_size(dt);
		memcpy(&bits, &iv, sz); /* little-endian: the low bytes */
		break;
	}
	}
	return bits;
}

static kiln_status lower_resize(const kiln_node *n, kiln_kcall *c, kiln_diag *d)
{
	const kiln_type *xt = in_type(n, 0), *yt = out_type(n, 0);
	KILN_ENSURE(d, xt->rank == yt->rank, KILN_ERR_SHAPE, n,
	            "output rank %d differs from input rank %d", yt->rank, xt->rank);
	kiln_resize_params p;
	KILN_TRY(kiln_resize_params_read(n, &p, d));
	double scale[KILN_MAX_RANK], roi_lo[KILN_MAX_RANK], roi_hi[KILN_MAX_RANK];
	bool has_roi;
	KILN_TRY(rs_read_scales(n, scale, roi_lo, roi_hi, &has_roi, d));
	for (int a = 0; a < xt->rank; a++)
		KILN_ENSURE(d, xt->dims[a] > 0 || yt->dims[a] == 0, KILN_ERR_SHAPE, n,
		            "cannot resize an empty axis %d to %lld", a, (long long)yt->dims[a]);
	/* (a scalar has no scales and failed above) */
	int r = xt->rank;
	const int64_t *in_d = xt->dims, *out_d = yt->dims;
	int64_t xs[KILN_MAX_RANK];
	strides(xt, xs);

	int64_t taps[KILN_MAX_RANK], tap_off[KILN_MAX_RANK], ex_off[KILN_MAX_RANK];
	int64_t nt = 0, ne = 0, combos = 1;
	for (int a = 0; a < r; a++) {
		taps[a] = rs_axis_taps(&p, in_d[a], out_d[a], scale[a], roi_lo[a], roi_hi[a], has_roi,
		                       0, NULL, NULL, NULL, true);
		tap_off[a] = nt;
		ex_off[a] = ne;
		nt += out_d[a] * taps[a];
		ne += out_d[a];
		if (a < r - 1)
			combos *= taps[a];
	}
	KILN_ENSURE(d, combos <= (1 << 20), KILN_ERR_UNSUPPORTED, n,
	            "%lld tap combinations per output row (antialias downscale too strong)",
	            (long long)combos);
	int gi = rs_present(n, 2) ? 2 : 3;
	char *blob = blob_alloc(c, gi, nt * 20 + ne);
	KILN_ENSURE(d, blob, KILN_ERR_OOM, n, "out of memory");
	int64_t *off = (int64_t *)(void *)blob;
	double *w = (double *)(void *)(blob + nt * 8);
	float *wf = (float *)(void *)(blob + nt * 16);
	uint8_t *ex = (uint8_t *)blob + nt * 20;
	for (int a = 0; a < r; a++)
		rs_axis_taps(&p, in_d[a], out_d[a], scale[a], roi_lo[a], roi_hi[a], has_roi, xs[a],
		             off + tap_off[a], w + tap_off[a], ex + ex_off[a], false);
	for (int64_t i = 0; i < nt; i++)
		wf[i] = (float)w[i];

	double extrap = kiln_node_float(n, "extrapolation_value", 0.0f);
	/* i64 goes through double like the interpreter, even when nearest */
	c->fn = p.mode == KILN_RESIZE_NEAREST && xt->dtype != KILN_DT_I64 ? "kk_resize_nearest"
	        : xt->dtype == KILN_DT_F32                       ? "kk_resize_f32"
	                                                         : "kk_resize_any";
	c->thread_scratch_bytes = combos * 24;
	kiln_kcall_i(c, xt->dtype);
	kiln_kcall_i(c, esize(xt));
	kiln_kcall_i(c, r);
	kiln_kcall_i(c, out_t(n, 0));
	kiln_kcall_i(c, gi);
	kiln_kcall_i(c, nt * 8);
	kiln_kcall_i(c, nt * 16);
	kiln_kcall_i(c, nt * 20);
	kiln_kcall_i(c, rs_value_bits(xt->dtype, extrap));
	kiln_kcall_i(c, combos);
	const int64_t *tails[] = {out_d, taps, tap_off, ex_off};
	for (int k = 0; k < 4; k++)
		for (int a = 0; a < r; a++)
			kiln_kcall_i(c, tails[k][a]);
	kiln_kcall_f(c, extrap);
	return KILN_OK;
}

/* ---- Shape, ConstantOfShape, Range ------------------------------------------ */

static kiln_status lower_shape(const kiln_node *n, kiln_kcall *c, kiln_diag *d)
{
	int rank = in_type(n, 0)->rank;
	int64_t start = kiln_node_int(n, "start", 0), end = kiln_node_int(n, "end", rank);
	if (start < 0)
		start += rank;
	if (end < 0)
		end += rank;
	start = clamp64(start, 0, rank);
	end = clamp64(end, 0, rank);
	int64_t count = end > start ? end - start : 0;
	KILN_ENSURE(d, out_type(n, 0)->dtype == KILN_DT_I64 && kiln_type_numel(out_type(n, 0)) == count,
	            KILN_ERR_SHAPE, n, "output must be i64 with %lld elements", (long long)count);
	c->fn = "kk_const_i64";
	kiln_kcall_i(c, count);
	kiln_kcall_i(c, out_t(n, 0));
	for (int64_t i = 0; i < count; i++)
		kiln_kcall_i(c, in_type(n, 0)->dims[start + i]);
	return KILN_OK;
}

static kiln_status lower_constant_of_shape(const kiln_node *n, kiln_kcall *c, kiln_diag *d)
{
	const kiln_type *ot = out_type(n, 0);
	const kiln_tensor *v = kiln_node_tensor(n, "value");
	int64_t bits = 0;
	if (v) {
		KILN_ENSURE(d, kiln_type_numel(&v->type) == 1 && v->type.dtype == ot->dtype && v->data,
		            KILN_ERR_SHAPE, n, "value must be one element of the output dtype %s",
		            kiln_dtype_name(ot->dtype));
		memcpy(&bits, v->data, kiln_dtype_size(ot->dtype));
	} else {
		KILN_ENSURE(d, ot->dtype == KILN_DT_F32, KILN_ERR_SHAPE, n,
		            "output must be f32 without a value attribute");
	}
	c->fn = "kk_fill";
	kiln_kcall_i(c, esize(ot));
	kiln_kcall_i(c, kiln_type_numel(ot));
	kiln_kcall_i(c, bits);
	kiln_kcall_i(c, out_t(n, 0));
	return KILN_OK;
}

static kiln_status lower_range(const kiln_node *n, kiln_kcall *c, kiln_diag *d)
{
	static const char *const labels[] = {"start", "limit", "delta"};
	for (int i = 0; i < 3; i++) {
		KILN_TRY(need_const(n, i, labels[i], d));
		KILN_ENSURE(d, kiln_type_numel(in_type(n, i)) == 1, KILN_ERR_SHAPE, n,
		            "input %d must be a scalar", i);
	}
	const kiln_type *ot = out_type(n, 0);
	c->fn = "kk_range";
	kiln_kcall_i(c, ot->dtype);
	kiln_kcall_i(c, kiln_type_numel(ot));
	kiln_kcall_i(c, out_t(n, 0));
	bool fl = kiln_dtype_is_float(ot->dtype);
	kiln_kcall_i(c, fl ? 0 : kiln_const_get_i64(n->inputs[0], 0));
	kiln_kcall_i(c, fl ? 0 : kiln_const_get_i64(n->inputs[2], 0));
	kiln_kcall_f(c, fl ? kiln_const_get_f64(n->inputs[0], 0) : 0.0);
	kiln_kcall_f(c, fl ? kiln_const_get_f64(n->inputs[2], 0) : 0.0);
	return KILN_OK;
}

/* ---- QuantizeLinear, DequantizeLinear ----------------------------------------- */

/* Where x's elements find their scale and zero point, as interp/k_quant.c's
 * q_resolve decides; then the common parameters. */
static kiln_status lower_quant(const kiln_node *n, kiln_kcall *c, kiln_diag *d)
{
	const kiln_type *xt = in_type(n, 0), *st = in_type(n, 1), *yt = out_type(n, 0);
	char b1[96], b2[96];
	KILN_ENSURE(d, has_in(n, 1) && kiln_dtype_is_float(st->dtype), KILN_ERR_UNSUPPORTED, n,
	            "scale must be a float tensor");
	bool zp = has_in(n, 2);
	if (zp)
		KILN_ENSURE(d, kiln_type_numel(in_type(n, 2)) == kiln_type_numel(st) &&
		                   !kiln_dtype_is_float(in_type(n, 2)->dtype),
		            KILN_ERR_SHAPE, n, "zero point type %s does not match scale type %s",
		            kiln_type_str(in_type(n, 2), b1, sizeof b1), kiln_type_str(st, b2, sizeof b2));
	KILN_ENSURE(d, kiln_type_numel(xt) == kiln_type_numel(yt), KILN_ERR_SHAPE, n,
	            "x has %lld elements, output %lld", (long long)kiln_type_numel(xt),
	            (long long)kiln_type_numel(yt));
	int64_t block = kiln_node_int(n, "block_size", 0), count = kiln_type_numel(xt);
	int64_t mode = KK_Q_TENSOR, dim = 1, inner = count, sdim = 1;
	if (block != 0 || kiln_type_numel(st) != 1) {
		int axis;
		int64_t a = kiln_node_int(n, "axis", 1);
		KILN_ENSURE(d, kiln_axis_norm(a, xt->rank, &axis), KILN_ERR_SHAPE, n,
		            "axis %lld out of range for rank %d", (long long)a, xt->rank);
		dim = xt->dims[axis];
		inner = 1;
		for (int k = axis + 1; k < xt->rank; k++)
			inner *= xt->dims[k];
		if (block == 0) {
			KILN_ENSURE(d, st->rank == 1 && st->dims[0] == dim, KILN_ERR_SHAPE, n,
			            "per-axis scale type %s does not match axis %d of x type %s",
			            kiln_type_str(st, b1, sizeof b1), axis, kiln_type_str(xt, b2, sizeof b2));
			mode = KK_Q_AXIS;
		} else {
			KILN_ENSURE(d, block > 0, KILN_ERR_SHAPE, n, "block_size %lld is negative",
			            (long long)block);
			bool ok = st->rank == xt->rank && st->dims[axis] == (dim + block - 1) / block;
			for (int k = 0; ok && k < xt->rank; k++)
				ok = k == axis || st->dims[k] == xt->dims[k];
			KILN_ENSURE(d, ok, KILN_ERR_SHAPE, n,
			            "blocked scale type %s does not match x type %s with block_size %lld "
			            "on axis %d",
			            kiln_type_str(st, b1, sizeof b1), kiln_type_str(xt, b2, sizeof b2),
			            (long long)block, axis);
			mode = KK_Q_BLOCKED;
			sdim = st->dims[axis];
		}
	}
	if (count == 0)
		inner = 1;
	kiln_kcall_i(c, mode);
	kiln_kcall_i(c, count);
	kiln_kcall_i(c, dim);
	kiln_kcall_i(c, inner);
	kiln_kcall_i(c, sdim);
	kiln_kcall_i(c, block > 0 ? block : 1);
	kiln_kcall_i(c, xt->dtype);
	kiln_kcall_i(c, st->dtype);
	kiln_kcall_i(c, zp ? (int64_t)in_type(n, 2)->dtype : KK_DT_NONE);
	kiln_kcall_i(c, yt->dtype);
	kiln_kcall_i(c, out_t(n, 0));
	return KILN_OK;
}

static kiln_status lower_quantize(const kiln_node *n, kiln_kcall *c, kiln_diag *d)
{
	kiln_dtype xd = in_type(n, 0)->dtype, yd = out_type(n, 0)->dtype;
	KILN_ENSURE(d, yd == KILN_DT_U8 || yd == KILN_DT_I8 || yd == KILN_DT_I32, KILN_ERR_UNSUPPORTED,
	            n, "cannot quantize to %s", kiln_dtype_name(yd));
	KILN_ENSURE(d, kiln_dtype_is_float(xd) || kiln_dtype_is_int(xd), KILN_ERR_UNSUPPORTED, n,
	            "cannot quantize %s", kiln_dtype_name(xd));
	c->fn = "kk_quantize";
	return lower_quant(n, c, d);
}

static kiln_status lower_dequantize(const kiln_node *n, kiln_kcall *c, kiln_diag *d)
{
	kiln_dtype xd = in_type(n, 0)->dtype, yd = out_type(n, 0)->dtype;
	KILN_ENSURE(d, kiln_dtype_is_float(yd), KILN_ERR_UNSUPPORTED, n, "cannot dequantize to %s",
	            kiln_dtype_name(yd));
	KILN_ENSURE(d, kiln_dtype_is_int(xd), KILN_ERR_UNSUPPORTED, n, "cannot dequantize %s",
	            kiln_dtype_name(xd));
	c->fn = "kk_dequantize";
	return lower_quant(n, c, d);
}

/* ReorderToNCHWc / ReorderFromNCHWc: the NCHW side's N, C and H*W. */
static kiln_status lower_reorder_nchwc(const kiln_node *n, kiln_kcall *c, kiln_diag *d)
{
	bool to = n->op == KILN_OP_REORDER_TO_NCHWC;
	const kiln_type *x = to ? in_type(n, 0) : out_type(n, 0);
	KILN_ENSURE(d, x->dtype == KILN_DT_F32 && x->rank == 4, KILN_ERR_UNSUPPORTED, n,
	            "the CPU backend reorders f32 rank-4 tensors only, not %s",
	            kiln_type_str(x, (char[64]){0}, 64));
	c->fn = to ? "kk_to_nchwc_f32" : "kk_from_nchwc_f32";
	c->n_ip = KK_NB_COUNT;
	c->ip[KK_NB_N] = x->dims[0];
	c->ip[KK_NB_C] = x->dims[1];
	c->ip[KK_NB_HW] = x->dims[2] * x->dims[3];
	c->ip[KK_NB_T_X] = 0;
	c->ip[KK_NB_T_Y] = out_t(n, 0);
	return KILN_OK;
}

kiln_status kiln_lower_movement(const kiln_node *n, const kiln_cpu_target *t, kiln_kcall *c,
                                kiln_diag *d)
{
	switch (n->op) {
	case KILN_OP_FLATTEN:
	case KILN_OP_RESHAPE:
	case KILN_OP_SQUEEZE:
	case KILN_OP_UNSQUEEZE:
	case KILN_OP_IDENTITY:
		KILN_ENSURE(d, kiln_type_bytes(in_type(n, 0)) == kiln_type_bytes(out_type(n, 0)),
		            KILN_ERR_SHAPE, n, "input has %zu bytes, output %zu",
		            kiln_type_bytes(in_type(n, 0)), kiln_type_bytes(out_type(n, 0)));
		lower_copy(n, c, -1, 0);
		return KILN_OK;
	case KILN_OP_DROPOUT: return lower_dropout(n, c, d);
	case KILN_OP_TRANSPOSE: return lower_transpose(n, c, d);
	case KILN_OP_SLICE: return lower_slice(n, c, d);
	case KILN_OP_EXPAND: return lower_expand(n, c, d);
	case KILN_OP_TILE: return lower_tile(n, c, d);
	case KILN_OP_CONCAT: return lower_concat(n, c, d);
	case KILN_OP_SPLIT: return lower_split(n, c, d);
	case KILN_OP_GATHER: return lower_gather(n, c, d);
	case KILN_OP_PAD: return lower_pad(n, c, d);
	case KILN_OP_RESIZE: return lower_resize(n, c, d);
	case KILN_OP_SHAPE: return lower_shape(n, c, d);
	case KILN_OP_CONSTANT_OF_SHAPE: return lower_constant_of_shape(n, c, d);
	case KILN_OP_RANGE: return lower_range(n, c, d);
	case KILN_OP_QUANTIZE_LINEAR: return lower_quantize(n, c, d);
	case KILN_OP_DEQUANTIZE_LINEAR: return lower_dequantize(n, c, d);
	case KILN_OP_REORDER_TO_NCHWC:
	case KILN_OP_REORDER_FROM_NCHWC: return lower_reorder_nchwc(n, c, d);
	default:
		return kiln_diag_error(d, KILN_ERR_UNSUPPORTED, n, "%s is not a movement op",
		                       kiln_op_name(n->op));
	}
}
