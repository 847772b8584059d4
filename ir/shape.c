/* shape.c — shape inference: one rule per SHAPE entry of ops.def (ONNX
 * opset-21 semantics), NumPy broadcasting, axis normalisation, and the window
 * geometry of convolutions and pools that the interpreter and backends share.
 *
 * A rule reads its inputs' types (and the data of constant inputs that decide
 * an output shape), checks dtypes, ranks and attributes, and sets the type of
 * every output. Errors name the node; KILN_ERR_SHAPE is a mismatch, and
 * KILN_ERR_UNSUPPORTED a valid model kiln does not handle (a non-constant
 * shape input, an attribute value kiln has no kernel for). */
#include "ir.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* kiln_type_str into a temporary that lives until the end of the enclosing block. */
#define TSTR(t) kiln_type_str((t), (char[256]){0}, 256)

/* ---- helpers ---------------------------------------------------------- */

static const kiln_type *in_type(const kiln_node *n, int i)
{
	return &n->inputs[i]->type;
}

static bool has_in(const kiln_node *n, int i)
{
	return kiln_node_in(n, i) != NULL;
}

static void set_out(kiln_node *n, int i, const kiln_type *t)
{
	if (i < n->n_outputs && n->outputs[i])
		n->outputs[i]->type = *t;
}

/* dims NULL: all zero, for the caller to fill in */
static kiln_type make_type(kiln_dtype dt, int rank, const int64_t *dims)
{
	kiln_type t;
	memset(&t, 0, sizeof t);
	t.dtype = dt;
	t.rank = rank;
	for (int i = 0; dims && i < rank; i++)
		t.dims[i] = dims[i];
	return t;
}

static bool is_signed_num(kiln_dtype dt)
{
	return kiln_dtype_is_float(dt) || dt == KILN_DT_I64 || dt == KILN_DT_I32 || dt == KILN_DT_I8;
}

static bool is_numeric(kiln_dtype dt)
{
	return kiln_dtype_is_float(dt) || kiln_dtype_is_int(dt);
}

/* Floats and the wide integers: what Gemm, MatMul, Pow and PRelu accept. */
static bool is_float_or_wide_int(kiln_dtype dt)
{
	return kiln_dtype_is_float(dt) || dt == KILN_DT_I64 || dt == KILN_DT_I32;
}

/* A quantisable op's input that the int8 pass has quantised (i8/u8 with
 * scale and zero point) stands in for a float input. */
static bool quantised_in(const kiln_node *n, int i)
{
	const kiln_value *v = kiln_node_in(n, i);
	return v && (kiln_op_get(n->op)->flags & KILN_OPF_QNT) && v->quant &&
	       (v->type.dtype == KILN_DT_I8 || v->type.dtype == KILN_DT_U8);
}

static bool float_or_quantised(const kiln_node *n, int i)
{
	return kiln_dtype_is_float(in_type(n, i)->dtype) || quantised_in(n, i);
}

static kiln_status want_dtype(const kiln_node *n, int i, bool ok, const char *what, kiln_diag *d)
{
	if (ok)
		return KILN_OK;
	return kiln_diag_error(d, KILN_ERR_SHAPE, n, "input %d has dtype %s, expected %s", i,
	                       kiln_dtype_name(in_type(n, i)->dtype), what);
}

/* Input i has the dtype of input j (two quantised inputs may mix i8 and u8). */
static kiln_status same_dtype(const kiln_node *n, int i, int j, kiln_diag *d)
{
	kiln_dtype a = in_type(n, i)->dtype, b = in_type(n, j)->dtype;
	if (a == b || (quantised_in(n, i) && quantised_in(n, j)))
		return KILN_OK;
	return kiln_diag_error(d, KILN_ERR_SHAPE, n, "input %d has dtype %s, expected %s like input %d",
	                       i, kiln_dtype_name(a), kiln_dtype_name(b), j);
}

static kiln_status want_rank(const kiln_node *n, int i, int rank, kiln_diag *d)
{
	int r = in_type(n, i)->rank;
	if (r == rank)
		return KILN_OK;
	return kiln_diag_error(d, KILN_ERR_SHAPE, n, "input %d has rank %d, expected %d", i, r, rank);
}

static kiln_status want_min_rank(const kiln_node *n, int i, int rank, kiln_diag *d)
{
	int r = in_type(n, i)->rank;
	if (r >= rank)
		return KILN_OK;
	return kiln_diag_error(d, KILN_ERR_SHAPE, n, "input %d has rank %d, expected at least %d", i,
	                       r, rank);
}

/* A scalar, or a one-element 1-D tensor (what ONNX runtimes accept as one). */
static bool is_scalarish(const kiln_type *t)
{
	return t->rank == 0 || (t->rank == 1 && t->dims[0] == 1);
}

static kiln_status axis_attr(const kiln_node *n, const char *name, int64_t dflt, int rank,
                             int *out, kiln_diag *d)
{
	int64_t axis = kiln_node_int(n, name, dflt);
	if (kiln_axis_norm(axis, rank, out))
		return KILN_OK;
	return kiln_diag_error(d, KILN_ERR_SHAPE, n, "%s %lld is out of range for rank %d", name,
	                       (long long)axis, rank);
}

static kiln_status need_const(const kiln_node *n, int i, const char *label, kiln_diag *d)
{
	const kiln_value *v = n->inputs[i];
	if (v->kind == KILN_VALUE_CONST && v->data)
		return KILN_OK;
	return kiln_diag_error(d, KILN_ERR_UNSUPPORTED, n,
	                       "input %d ('%s') must be a compile-time constant: kiln compiles for "
	                       "static shapes (fold it, or bind the input)",
	                       i, label);
}

/* Checks that input i is a constant 1-D integer tensor (i64, or i32 too when
 * `tind`) of at most `max` elements; returns its length in *count. */
static kiln_status const_list(const kiln_node *n, int i, const char *label, bool tind,
                              int64_t max, int64_t *count, kiln_diag *d)
{
	KILN_TRY(need_const(n, i, label, d));
	const kiln_type *t = in_type(n, i);
	if (t->dtype != KILN_DT_I64 && !(tind && t->dtype == KILN_DT_I32))
		return kiln_diag_error(d, KILN_ERR_SHAPE, n, "input %d ('%s') has dtype %s, expected %s",
		                       i, label, kiln_dtype_name(t->dtype), tind ? "i64 or i32" : "i64");
	if (t->rank != 1)
		return kiln_diag_error(d, KILN_ERR_SHAPE, n, "input %d ('%s') has rank %d, expected 1", i,
		                       label, t->rank);
	if (t->dims[0] > max)
		return kiln_diag_error(d, KILN_ERR_SHAPE, n,
		                       "input %d ('%s') has %lld elements, at most %lld allowed", i, label,
		                       (long long)t->dims[0], (long long)max);
	*count = t->dims[0];
	return KILN_OK;
}

/* const_list, read into v[] (which holds at least `max` entries). */
static kiln_status const_ints(const kiln_node *n, int i, const char *label, bool tind, int max,
                              int64_t *v, int *count, kiln_diag *d)
{
	int64_t c;
	KILN_TRY(const_list(n, i, label, tind, max, &c, d));
	for (int64_t k = 0; k < c; k++)
		v[k] = kiln_const_get_i64(n->inputs[i], k);
	*count = (int)c;
	return KILN_OK;
}

/* Normalises axes[0..count) against rank in place, rejecting repeats. */
static kiln_status norm_axes(const kiln_node *n, const char *label, int64_t *axes, int count,
                             int rank, kiln_diag *d)
{
	bool seen[KILN_MAX_RANK] = {0};
	for (int k = 0; k < count; k++) {
		int a;
		if (!kiln_axis_norm(axes[k], rank, &a))
			return kiln_diag_error(d, KILN_ERR_SHAPE, n, "%s[%d] is %lld, out of range for rank %d",
			                       label, k, (long long)axes[k], rank);
		if (seen[a])
			return kiln_diag_error(d, KILN_ERR_SHAPE, n, "%s repeats axis %d", label, a);
		seen[a] = true;
		axes[k] = a;
	}
	return KILN_OK;
}

static bool mul_ok(int64_t a, int64_t b, int64_t *out)
{
	return !__builtin_mul_overflow(a, b, out);
}

static kiln_status product(const kiln_node *n, const int64_t *dims, int count, int64_t *out,
                           kiln_diag *d)
{
	int64_t p = 1;
	for (int i = 0; i < count; i++)
		if (!mul_ok(p, dims[i], &p))
			return kiln_diag_error(d, KILN_ERR_SHAPE, n, "element count overflows int64");
	*out = p;
	return KILN_OK;
}

/* Checks a string attribute against its allowed values (NULL-terminated). */
static kiln_status enum_attr(const kiln_node *n, const char *name, const char *dflt,
                             const char *const *allowed, const char **out, kiln_diag *d)
{
	const char *s = kiln_node_string(n, name, dflt);
	for (int i = 0; allowed[i]; i++) {
		if (strcmp(s, allowed[i]) == 0) {
			*out = s;
			return KILN_OK;
		}
	}
	return kiln_diag_error(d, KILN_ERR_UNSUPPORTED, n, "%s '%s' is not supported", name, s);
}

/* ---- broadcasting ----------------------------------------------------- */

bool kiln_broadcast(const kiln_type *a, const kiln_type *b, kiln_type *out)
{
	kiln_type t;
	memset(&t, 0, sizeof t);
	t.dtype = a->dtype;
	t.rank = a->rank > b->rank ? a->rank : b->rank;
	for (int i = 0; i < t.rank; i++) {
		int ia = i - (t.rank - a->rank), ib = i - (t.rank - b->rank);
		int64_t da = ia >= 0 ? a->dims[ia] : 1, db = ib >= 0 ? b->dims[ib] : 1;
		if (da == db || db == 1)
			t.dims[i] = da;
		else if (da == 1)
			t.dims[i] = db;
		else
			return false;
	}
	*out = t;
	return true;
}

/* True if `from` broadcasts to exactly `to` (ONNX unidirectional broadcast). */
static bool broadcasts_to(const kiln_type *from, const kiln_type *to)
{
	kiln_type t;
	if (from->rank > to->rank || !kiln_broadcast(to, from, &t))
		return false;
	for (int i = 0; i < to->rank; i++)
		if (t.dims[i] != to->dims[i])
			return false;
	return true;
}

/* Broadcasts inputs idx[0..count) multidirectionally; dtype from idx[0]. */
static kiln_status broadcast_inputs(const kiln_node *n, const int *idx, int count,
                                    kiln_type *out, kiln_diag *d)
{
	kiln_type acc = *in_type(n, idx[0]);
	for (int k = 1; k < count; k++) {
		kiln_type next;
		if (!kiln_broadcast(&acc, in_type(n, idx[k]), &next))
			return kiln_diag_error(d, KILN_ERR_SHAPE, n, "input %d (%s) does not broadcast with %s",
			                       idx[k], TSTR(in_type(n, idx[k])), TSTR(&acc));
		acc = next;
	}
	*out = acc;
	return KILN_OK;
}

bool kiln_axis_norm(int64_t axis, int rank, int *out)
{
	if (axis < -(int64_t)rank || axis >= rank)
		return false;
	*out = (int)(axis < 0 ? axis + rank : axis);
	return true;
}

/* ---- window geometry ------------------------------------------------- */

/* Channels per block of the NCHWc layout (KK_NCHWC_BLOCK of the CPU
 * kernels' kk_params_nchwc.h). */
enum { NCHWC_BLOCK = 16 };

/* floor(t / 2) for any sign (ConvTranspose pads may come out negative). */
static int64_t floor_half(int64_t t)
{
	return t >= 0 ? t / 2 : -((-t + 1) / 2);
}

/* Reads an optional ints attribute of `count` entries, each in [lo, 2^31). */
static kiln_status window_ints(const kiln_node *n, const char *name, int count, int64_t lo,
                               int64_t dflt, int64_t *out, kiln_diag *d)
{
	const int64_t *v;
	int c = kiln_node_ints(n, name, &v);
	if (c != 0 && c != count)
		return kiln_diag_error(d, KILN_ERR_SHAPE, n, "%s has %d values, expected %d", name, c,
		                       count);
	for (int i = 0; i < count; i++) {
		out[i] = c ? v[i] : dflt;
		if (out[i] < lo || out[i] > INT32_MAX)
			return kiln_diag_error(d, KILN_ERR_SHAPE, n, "%s[%d] is %lld, expected %s", name, i,
			                       (long long)out[i], lo ? "at least 1" : "non-negative");
	}
	return KILN_OK;
}

/* The NCHW type [N, C, H, W] that input i, in the blocked layout
 * [N, cdiv(C, 16), H, W, 16] of `channels` channels, holds. */
static kiln_status nchwc_logical(const kiln_node *n, int i, int64_t channels, kiln_type *out,
                                 kiln_diag *d)
{
	const kiln_type *t = in_type(n, i);
	KILN_TRY(want_rank(n, i, 5, d));
	if (channels < 1)
		return kiln_diag_error(d, KILN_ERR_SHAPE, n,
		                       "attribute 'channels' is %lld, expected at least 1",
		                       (long long)channels);
	if (t->dims[4] != NCHWC_BLOCK ||
	    t->dims[1] != (channels + NCHWC_BLOCK - 1) / NCHWC_BLOCK)
		return kiln_diag_error(d, KILN_ERR_SHAPE, n,
		                       "input %d (%s) is not the blocked layout of %lld channels "
		                       "[N, %lld, H, W, %d]",
		                       i, TSTR(t), (long long)channels,
		                       (long long)((channels + NCHWC_BLOCK - 1) / NCHWC_BLOCK),
		                       NCHWC_BLOCK);
	int64_t dims[4] = {t->dims[0], channels, t->dims[2], t->dims[3]};
	*out = make_type(t->dtype, 4, dims);
	return KILN_OK;
}

kiln_status kiln_window_resolve(const kiln_node *n, kiln_window *w, kiln_diag *d)
{
	bool nchwc = n->op == KILN_OP_CONV_NCHWC;
	bool conv = n->op == KILN_OP_CONV || nchwc, convt = n->op == KILN_OP_CONV_TRANSPOSE;
	bool pool = n->op == KILN_OP_MAX_POOL || n->op == KILN_OP_AVERAGE_POOL;
	if (!conv && !convt && !pool)
		return kiln_diag_error(d, KILN_ERR_INTERNAL, n, "no window geometry for this op");
	if (!has_in(n, 0) || ((conv || convt) && !has_in(n, 1)))
		return kiln_diag_error(d, KILN_ERR_SHAPE, n, "missing input %d", has_in(n, 0) ? 1 : 0);
	memset(w, 0, sizeof *w);
	const kiln_type *x = in_type(n, 0);
	kiln_type logical; /* ConvNCHWc: the NCHW input its blocked input holds */
	if (nchwc) {
		KILN_TRY(nchwc_logical(n, 0, kiln_node_int(n, "channels", 0), &logical, d));
		x = &logical;
	}
	KILN_TRY(want_min_rank(n, 0, 3, d));
	int ns = x->rank - 2;
	w->nspatial = ns;
	w->batch = x->dims[0];
	w->in_c = x->dims[1];
	w->out_c = x->dims[1];
	w->group = 1;
	for (int i = 0; i < ns; i++)
		w->in[i] = x->dims[2 + i];

	const int64_t *ks;
	int nks = kiln_node_ints(n, "kernel_shape", &ks);
	if (conv || convt) {
		const kiln_type *wt = in_type(n, 1);
		KILN_TRY(want_rank(n, 1, x->rank, d));
		w->group = kiln_node_int(n, "group", 1);
		if (w->group < 1)
			return kiln_diag_error(d, KILN_ERR_SHAPE, n, "group is %lld, expected at least 1",
			                       (long long)w->group);
		if (conv) {
			w->out_c = wt->dims[0];
			if (wt->dims[1] * w->group != w->in_c)
				return kiln_diag_error(d, KILN_ERR_SHAPE, n,
				                       "input 1 (%s) with group %lld expects %lld input "
				                       "channels, input 0 has %lld",
				                       TSTR(wt), (long long)w->group,
				                       (long long)(wt->dims[1] * w->group), (long long)w->in_c);
			if (w->out_c % w->group)
				return kiln_diag_error(d, KILN_ERR_SHAPE, n,
				                       "%lld output channels are not divisible by group %lld",
				                       (long long)w->out_c, (long long)w->group);
		} else {
			w->out_c = wt->dims[1] * w->group;
			if (wt->dims[0] != w->in_c)
				return kiln_diag_error(d, KILN_ERR_SHAPE, n,
				                       "input 1 (%s) expects %lld input channels, input 0 "
				                       "has %lld",
				                       TSTR(wt), (long long)wt->dims[0], (long long)w->in_c);
			if (w->in_c % w->group)
				return kiln_diag_error(d, KILN_ERR_SHAPE, n,
				                       "%lld input channels are not divisible by group %lld",
				                       (long long)w->in_c, (long long)w->group);
		}
		if (nks != 0 && nks != ns)
			return kiln_diag_error(d, KILN_ERR_SHAPE, n, "kernel_shape has %d values, expected %d",
			                       nks, ns);
		for (int i = 0; i < ns; i++) {
			w->kernel[i] = wt->dims[2 + i];
			if (nks && ks[i] != w->kernel[i])
				return kiln_diag_error(d, KILN_ERR_SHAPE, n,
				                       "kernel_shape[%d] is %lld, but input 1 has %lld", i,
				                       (long long)ks[i], (long long)w->kernel[i]);
		}
	} else {
		if (nks == 0)
			return kiln_diag_error(d, KILN_ERR_SHAPE, n, "attribute 'kernel_shape' is required");
		KILN_TRY(window_ints(n, "kernel_shape", ns, 1, 1, w->kernel, d));
		w->ceil_mode = kiln_node_int(n, "ceil_mode", 0) != 0;
		w->count_include_pad = kiln_node_int(n, "count_include_pad", 0) != 0;
	}
	for (int i = 0; i < ns; i++)
		if (w->kernel[i] < 1)
			return kiln_diag_error(d, KILN_ERR_SHAPE, n, "kernel size %lld along spatial dim %d",
			                       (long long)w->kernel[i], i);
	KILN_TRY(window_ints(n, "strides", ns, 1, 1, w->stride, d));
	KILN_TRY(window_ints(n, "dilations", ns, 1, 1, w->dilation, d));
	int64_t pads[2 * KILN_MAX_RANK];
	KILN_TRY(window_ints(n, "pads", 2 * ns, 0, 0, pads, d));
	if (convt)
		KILN_TRY(window_ints(n, "output_padding", ns, 0, 0, w->out_pad, d));

	static const char *const auto_pads[] = {"NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER", NULL};
	const char *ap;
	KILN_TRY(enum_attr(n, "auto_pad", "NOTSET", auto_pads, &ap, d));
	bool same = strncmp(ap, "SAME", 4) == 0, upper = strcmp(ap, "SAME_UPPER") == 0;
	bool explicit_pads = strcmp(ap, "NOTSET") == 0;

	const int64_t *os = NULL;
	if (convt) {
		int nos = kiln_node_ints(n, "output_shape", &os);
		if (nos != 0 && nos != ns && nos != ns + 2)
			return kiln_diag_error(d, KILN_ERR_SHAPE, n, "output_shape has %d values, expected %d",
			                       nos, ns);
		if (nos == ns + 2)
			os += 2; /* full N, C, spatial form: keep the spatial part */
		else if (nos == 0)
			os = NULL;
	}

	for (int i = 0; i < ns; i++) {
		int64_t in = w->in[i], s = w->stride[i];
		int64_t ek = (w->kernel[i] - 1) * w->dilation[i] + 1;
		if (convt && (os || same)) {
			/* ONNX: total padding from the wanted size; SAME_UPPER puts the
			 * odd unit at the end, NOTSET and SAME_LOWER at the beginning.
			 * A negative total (a wanted size beyond the full output) gives a
			 * negative pad: the extra output positions receive no input. */
			int64_t out = os ? os[i] : in * s;
			int64_t total = s * (in - 1) + w->out_pad[i] + ek - out;
			if (upper) {
				w->pad_begin[i] = floor_half(total);
				w->pad_end[i] = total - w->pad_begin[i];
			} else {
				w->pad_end[i] = floor_half(total);
				w->pad_begin[i] = total - w->pad_end[i];
			}
			w->out[i] = out;
		} else if (same) {
			int64_t total = ((in + s - 1) / s - 1) * s + ek - in;
			if (total < 0)
				total = 0;
			w->pad_begin[i] = upper ? total / 2 : total - total / 2;
			w->pad_end[i] = total - w->pad_begin[i];
		} else if (explicit_pads) {
			w->pad_begin[i] = pads[i];
			w->pad_end[i] = pads[ns + i];
		}
		if (convt) {
			if (!os && !same)
				w->out[i] = s * (in - 1) + w->out_pad[i] + ek - w->pad_begin[i] - w->pad_end[i];
			if (w->out[i] < 1)
				return kiln_diag_error(d, KILN_ERR_SHAPE, n,
				                       "output size %lld along spatial dim %d is not positive",
				                       (long long)w->out[i], i);
			continue;
		}
		int64_t span = in + w->pad_begin[i] + w->pad_end[i] - ek;
		if (span < 0)
			return kiln_diag_error(d, KILN_ERR_SHAPE, n,
			                       "spatial dim %d: padded input size %lld is smaller than the "
			                       "window extent %lld",
			                       i, (long long)(span + ek), (long long)ek);
		if (w->ceil_mode) {
			w->out[i] = (span + s - 1) / s + 1;
			/* the last window must start inside the input or the left padding */
			if ((w->out[i] - 1) * s >= in + w->pad_begin[i])
				w->out[i]--;
		} else {
			w->out[i] = span / s + 1;
		}
	}
	return KILN_OK;
}

kiln_status kiln_conv_geom_resolve(const kiln_node *n, const kiln_type *x, const kiln_type *w,
                                   const kiln_type *y, int64_t bias_numel, bool transpose,
                                   kiln_conv_geom *g, kiln_diag *d)
{
	kiln_window win;
	KILN_TRY(kiln_window_resolve(n, &win, d));
	KILN_ENSURE(d, win.nspatial >= 1 && win.nspatial <= 3, KILN_ERR_UNSUPPORTED, n,
	            "%d spatial dims (1 to 3 supported)", win.nspatial);
	g->n = x->dims[0];
	g->c = x->dims[1];
	g->m = y->dims[1];
	g->group = win.group;
	KILN_ENSURE(d, g->group >= 1 && g->c % g->group == 0 && g->m % g->group == 0,
	            KILN_ERR_SHAPE, n, "group %lld does not divide %lld input and %lld output channels",
	            (long long)g->group, (long long)g->c, (long long)g->m);
	g->cg = g->c / g->group;
	g->mg = g->m / g->group;
	int off = 3 - win.nspatial;
	for (int i = 0; i < 3; i++) {
		bool real = i >= off;
		g->in[i] = real ? win.in[i - off] : 1;
		g->out[i] = real ? win.out[i - off] : 1;
		g->k[i] = real ? win.kernel[i - off] : 1;
		g->s[i] = real ? win.stride[i - off] : 1;
		g->dl[i] = real ? win.dilation[i - off] : 1;
		g->pb[i] = real ? win.pad_begin[i - off] : 0;
	}
	g->is = g->in[0] * g->in[1] * g->in[2];
	g->os = g->out[0] * g->out[1] * g->out[2];
	g->ks = g->k[0] * g->k[1] * g->k[2];
	int64_t wc = transpose ? g->c * g->mg : g->m * g->cg;
	KILN_ENSURE(d, kiln_type_numel(w) == wc * g->ks && kiln_type_numel(x) == g->n * g->c * g->is &&
	                   kiln_type_numel(y) == g->n * g->m * g->os,
	            KILN_ERR_SHAPE, n, "input, weight and output shapes disagree with the window");
	if (bias_numel >= 0)
		KILN_ENSURE(d, bias_numel == g->m, KILN_ERR_SHAPE, n,
		            "bias has %lld elements, expected %lld", (long long)bias_numel,
		            (long long)g->m);
	return KILN_OK;
}

/* ---- shape rules ------------------------------------------------------ */

static kiln_status kiln_shape_conv(kiln_node *n, kiln_diag *d)
{
	KILN_TRY(want_dtype(n, 0, float_or_quantised(n, 0), "a float dtype", d));
	KILN_TRY(same_dtype(n, 1, 0, d));
	kiln_window w;
	KILN_TRY(kiln_window_resolve(n, &w, d));
	if (has_in(n, 2)) {
		const kiln_type *b = in_type(n, 2);
		if (!(quantised_in(n, 0) && b->dtype == KILN_DT_I32))
			KILN_TRY(same_dtype(n, 2, 0, d));
		if (b->rank != 1 || b->dims[0] != w.out_c)
			return kiln_diag_error(d, KILN_ERR_SHAPE, n,
			                       "input 2 (%s) must be 1-D with %lld elements (the output "
			                       "channels)",
			                       TSTR(b), (long long)w.out_c);
	}
	kiln_type t = make_type(in_type(n, 0)->dtype, 2 + w.nspatial, NULL);
	t.dims[0] = w.batch;
	t.dims[1] = w.out_c;
	for (int i = 0; i < w.nspatial; i++)
		t.dims[2 + i] = w.out[i];
	set_out(n, 0, &t);
	return KILN_OK;
}

static kiln_status kiln_shape_conv_transpose(kiln_node *n, kiln_diag *d)
{
	return kiln_shape_conv(n, d);
}

static kiln_status kiln_shape_batch_norm(kiln_node *n, kiln_diag *d)
{
	const kiln_type *x = in_type(n, 0);
	KILN_TRY(want_dtype(n, 0, kiln_dtype_is_float(x->dtype), "a float dtype", d));
	KILN_TRY(want_min_rank(n, 0, 2, d));
	if (kiln_node_int(n, "training_mode", 0) != 0)
		return kiln_diag_error(d, KILN_ERR_UNSUPPORTED, n,
		                       "training_mode 1 is not supported (inference only)");
	for (int i = 1; i < 5; i++) {
		const kiln_type *p = in_type(n, i);
		KILN_TRY(want_dtype(n, i, kiln_dtype_is_float(p->dtype), "a float dtype", d));
		if (p->rank != 1 || p->dims[0] != x->dims[1])
			return kiln_diag_error(d, KILN_ERR_SHAPE, n,
			                       "input %d (%s) must be 1-D with %lld elements (the channels)",
			                       i, TSTR(p), (long long)x->dims[1]);
	}
	set_out(n, 0, x);
	return KILN_OK;
}

static kiln_status kiln_shape_layer_norm(kiln_node *n, kiln_diag *d)
{
	const kiln_type *x = in_type(n, 0);
	KILN_TRY(want_dtype(n, 0, kiln_dtype_is_float(x->dtype), "a float dtype", d));
	int axis;
	KILN_TRY(axis_attr(n, "axis", -1, x->rank, &axis, d));
	kiln_type norm = make_type(x->dtype, x->rank - axis, x->dims + axis);
	for (int i = 1; i < 3; i++) {
		if (!has_in(n, i))
			continue;
		KILN_TRY(same_dtype(n, i, 0, d));
		if (!broadcasts_to(in_type(n, i), &norm))
			return kiln_diag_error(d, KILN_ERR_SHAPE, n,
			                       "input %d (%s) does not broadcast to the normalised shape %s",
			                       i, TSTR(in_type(n, i)), TSTR(&norm));
	}
	kiln_dtype stash;
	int64_t code = kiln_node_int(n, "stash_type", 1);
	if (!kiln_dtype_from_onnx(code, &stash) || !kiln_dtype_is_float(stash))
		return kiln_diag_error(d, KILN_ERR_UNSUPPORTED, n, "stash_type %lld is not supported",
		                       (long long)code);
	set_out(n, 0, x);
	kiln_type stats = *x;
	stats.dtype = stash;
	for (int i = axis; i < x->rank; i++)
		stats.dims[i] = 1;
	set_out(n, 1, &stats);
	set_out(n, 2, &stats);
	return KILN_OK;
}

static kiln_status kiln_shape_pool(kiln_node *n, kiln_diag *d)
{
	kiln_dtype dt = in_type(n, 0)->dtype;
	if (n->op == KILN_OP_MAX_POOL)
		KILN_TRY(want_dtype(n, 0, kiln_dtype_is_float(dt) || dt == KILN_DT_I8 || dt == KILN_DT_U8,
		                    "a float dtype, i8 or u8", d));
	else
		KILN_TRY(want_dtype(n, 0, kiln_dtype_is_float(dt), "a float dtype", d));
	kiln_window w;
	KILN_TRY(kiln_window_resolve(n, &w, d));
	kiln_type t = make_type(dt, 2 + w.nspatial, NULL);
	t.dims[0] = w.batch;
	t.dims[1] = w.out_c;
	for (int i = 0; i < w.nspatial; i++)
		t.dims[2 + i] = w.out[i];
	set_out(n, 0, &t);
	t.dtype = KILN_DT_I64;
	set_out(n, 1, &t);
	return KILN_OK;
}

static kiln_status kiln_shape_global_pool(kiln_node *n, kiln_diag *d)
{
	const kiln_type *x = in_type(n, 0);
	KILN_TRY(want_dtype(n, 0, kiln_dtype_is_float(x->dtype), "a float dtype", d));
	KILN_TRY(want_min_rank(n, 0, 3, d));
	kiln_type t = *x;
	for (int i = 2; i < t.rank; i++)
		t.dims[i] = 1;
	set_out(n, 0, &t);
	return KILN_OK;
}

static kiln_status kiln_shape_gemm(kiln_node *n, kiln_diag *d)
{
	const kiln_type *a = in_type(n, 0), *b = in_type(n, 1);
	KILN_TRY(want_dtype(n, 0, is_float_or_wide_int(a->dtype) || quantised_in(n, 0),
	                    "a float dtype, i32 or i64", d));
	KILN_TRY(same_dtype(n, 1, 0, d));
	KILN_TRY(want_rank(n, 0, 2, d));
	KILN_TRY(want_rank(n, 1, 2, d));
	bool ta = kiln_node_int(n, "transA", 0) != 0, tb = kiln_node_int(n, "transB", 0) != 0;
	int64_t m = a->dims[ta ? 1 : 0], k = a->dims[ta ? 0 : 1];
	int64_t kb = b->dims[tb ? 1 : 0], nn = b->dims[tb ? 0 : 1];
	if (k != kb)
		return kiln_diag_error(d, KILN_ERR_SHAPE, n,
		                       "input 0 (%s) and input 1 (%s) have mismatched inner dims %lld "
		                       "and %lld",
		                       TSTR(a), TSTR(b), (long long)k, (long long)kb);
	kiln_type t = make_type(a->dtype, 2, (int64_t[]){m, nn});
	if (has_in(n, 2)) {
		if (!(quantised_in(n, 0) && in_type(n, 2)->dtype == KILN_DT_I32))
			KILN_TRY(same_dtype(n, 2, 0, d));
		if (!broadcasts_to(in_type(n, 2), &t))
			return kiln_diag_error(d, KILN_ERR_SHAPE, n, "input 2 (%s) does not broadcast to %s",
			                       TSTR(in_type(n, 2)), TSTR(&t));
	}
	set_out(n, 0, &t);
	return KILN_OK;
}

static kiln_status kiln_shape_matmul(kiln_node *n, kiln_diag *d)
{
	const kiln_type *a = in_type(n, 0), *b = in_type(n, 1);
	KILN_TRY(want_dtype(n, 0, is_float_or_wide_int(a->dtype) || quantised_in(n, 0),
	                    "a float dtype, i32 or i64", d));
	KILN_TRY(same_dtype(n, 1, 0, d));
	KILN_TRY(want_min_rank(n, 0, 1, d));
	KILN_TRY(want_min_rank(n, 1, 1, d));
	/* 1-D operands are promoted to [1,K] / [K,1] and the unit dim dropped. */
	kiln_type pa = *a, pb = *b;
	if (a->rank == 1)
		pa = make_type(a->dtype, 2, (int64_t[]){1, a->dims[0]});
	if (b->rank == 1)
		pb = make_type(b->dtype, 2, (int64_t[]){b->dims[0], 1});
	int64_t k = pa.dims[pa.rank - 1], kb = pb.dims[pb.rank - 2];
	if (k != kb)
		return kiln_diag_error(d, KILN_ERR_SHAPE, n,
		                       "input 0 (%s) and input 1 (%s) have mismatched inner dims %lld "
		                       "and %lld",
		                       TSTR(a), TSTR(b), (long long)k, (long long)kb);
	kiln_type ba = make_type(a->dtype, pa.rank - 2, pa.dims);
	kiln_type bb = make_type(a->dtype, pb.rank - 2, pb.dims);
	kiln_type t;
	if (!kiln_broadcast(&ba, &bb, &t))
		return kiln_diag_error(d, KILN_ERR_SHAPE, n,
		                       "batch dims of input 0 (%s) and input 1 (%s) do not broadcast",
		                       TSTR(a), TSTR(b));
	if (a->rank != 1)
		t.dims[t.rank++] = pa.dims[pa.rank - 2];
	if (b->rank != 1)
		t.dims[t.rank++] = pb.dims[pb.rank - 1];
	set_out(n, 0, &t);
	return KILN_OK;
}

/* kiln's Attention: 4-D f32 Q [B,H,Sq,D], K [B,H,Skv,D], V [B,H,Skv,Dv],
 * optional additive f32 mask broadcasting to [B,H,Sq,Skv]; Y [B,H,Sq,Dv].
 * What the ONNX op has beyond that (3-D inputs, other dtypes, boolean
 * masks, grouped KV heads, a KV cache, causal, softcap, the extra outputs'
 * modes) is unsupported rather than malformed. */
static kiln_status kiln_shape_attention(kiln_node *n, kiln_diag *d)
{
	static const char *const cache[] = {"past_key", "past_value", "nonpad_kv_seqlen"};
	for (int i = 4; i < n->n_inputs; i++)
		KILN_ENSURE(d, !has_in(n, i), KILN_ERR_UNSUPPORTED, n,
		            "input %d (%s) is not supported", i, cache[i - 4]);
	for (int i = 0; i < n->n_inputs && i < 4; i++) {
		if (!has_in(n, i))
			continue;
		KILN_ENSURE(d, in_type(n, i)->dtype == KILN_DT_F32, KILN_ERR_UNSUPPORTED, n,
		            "input %d has dtype %s; kiln's Attention takes f32", i,
		            kiln_dtype_name(in_type(n, i)->dtype));
		KILN_ENSURE(d, i == 3 || in_type(n, i)->rank == 4, KILN_ERR_UNSUPPORTED, n,
		            "input %d has rank %d; kiln's Attention takes 4-D Q, K and V", i,
		            in_type(n, i)->rank);
	}
	static const char *const unsupported[] = {"is_causal", "qk_matmul_output_mode"};
	for (int i = 0; i < 2; i++)
		KILN_ENSURE(d, kiln_node_int(n, unsupported[i], 0) == 0, KILN_ERR_UNSUPPORTED, n,
		            "%s must be 0", unsupported[i]);
	KILN_ENSURE(d, kiln_node_float(n, "softcap", 0.0f) == 0.0f, KILN_ERR_UNSUPPORTED, n,
	            "softcap must be 0");
	const kiln_type *q = in_type(n, 0), *k = in_type(n, 1), *v = in_type(n, 2);
	KILN_ENSURE(d, k->dims[1] == q->dims[1] && v->dims[1] == q->dims[1], KILN_ERR_UNSUPPORTED,
	            n, "Q has %lld heads, K %lld and V %lld; kiln's Attention takes equal counts",
	            (long long)q->dims[1], (long long)k->dims[1], (long long)v->dims[1]);
	bool ok = k->dims[0] == q->dims[0] && k->dims[3] == q->dims[3] && v->dims[0] == q->dims[0] &&
	          v->dims[2] == k->dims[2];
	if (!ok)
		return kiln_diag_error(d, KILN_ERR_SHAPE, n,
		                       "Q %s, K %s and V %s do not agree (expected [B,H,Sq,D], "
		                       "[B,H,Skv,D], [B,H,Skv,Dv])",
		                       TSTR(q), TSTR(k), TSTR(v));
	kiln_type s = make_type(KILN_DT_F32, 4, (int64_t[]){q->dims[0], q->dims[1], q->dims[2], k->dims[2]});
	if (has_in(n, 3) && !broadcasts_to(in_type(n, 3), &s))
		return kiln_diag_error(d, KILN_ERR_SHAPE, n, "mask %s does not broadcast to the scores %s",
		                       TSTR(in_type(n, 3)), TSTR(&s));
	kiln_type t = make_type(KILN_DT_F32, 4, (int64_t[]){q->dims[0], q->dims[1], q->dims[2], v->dims[3]});
	set_out(n, 0, &t);
	return KILN_OK;
}

static kiln_status kiln_shape_unary(kiln_node *n, kiln_diag *d)
{
	const kiln_type *x = in_type(n, 0);
	kiln_dtype dt = x->dtype;
	switch (n->op) {
	case KILN_OP_IDENTITY:
		break;
	case KILN_OP_NOT:
		KILN_TRY(want_dtype(n, 0, dt == KILN_DT_BOOL, "bool", d));
		break;
	case KILN_OP_RELU:
	case KILN_OP_NEG:
		KILN_TRY(want_dtype(n, 0, is_signed_num(dt) || quantised_in(n, 0),
		                    "a float or signed integer dtype", d));
		break;
	case KILN_OP_ABS:
	case KILN_OP_ERF:
		KILN_TRY(want_dtype(n, 0, is_numeric(dt), "a numeric dtype", d));
		break;
	case KILN_OP_CLIP:
		KILN_TRY(want_dtype(n, 0, is_numeric(dt), "a numeric dtype", d));
		for (int i = 1; i < 3; i++) {
			if (!has_in(n, i))
				continue;
			KILN_TRY(same_dtype(n, i, 0, d));
			if (!is_scalarish(in_type(n, i)))
				return kiln_diag_error(d, KILN_ERR_SHAPE, n, "input %d (%s) must be a scalar",
				                       i, TSTR(in_type(n, i)));
		}
		break;
	case KILN_OP_SOFTMAX:
	case KILN_OP_LOG_SOFTMAX: {
		KILN_TRY(want_dtype(n, 0, kiln_dtype_is_float(dt), "a float dtype", d));
		int axis;
		KILN_TRY(axis_attr(n, "axis", -1, x->rank, &axis, d));
		break;
	}
	case KILN_OP_GELU: {
		KILN_TRY(want_dtype(n, 0, kiln_dtype_is_float(dt), "a float dtype", d));
		static const char *const approx[] = {"none", "tanh", NULL};
		const char *s;
		KILN_TRY(enum_attr(n, "approximate", "none", approx, &s, d));
		break;
	}
	default:
		KILN_TRY(want_dtype(n, 0, kiln_dtype_is_float(dt), "a float dtype", d));
		break;
	}
	set_out(n, 0, x);
	return KILN_OK;
}

static kiln_status kiln_shape_prelu(kiln_node *n, kiln_diag *d)
{
	const kiln_type *x = in_type(n, 0);
	KILN_TRY(want_dtype(n, 0, is_float_or_wide_int(x->dtype), "a float dtype, i32 or i64", d));
	KILN_TRY(same_dtype(n, 1, 0, d));
	if (!broadcasts_to(in_type(n, 1), x))
		return kiln_diag_error(d, KILN_ERR_SHAPE, n, "input 1 (%s) does not broadcast to %s",
		                       TSTR(in_type(n, 1)), TSTR(x));
	set_out(n, 0, x);
	return KILN_OK;
}

static kiln_status kiln_shape_binary(kiln_node *n, kiln_diag *d)
{
	KILN_TRY(want_dtype(n, 0, is_numeric(in_type(n, 0)->dtype), "a numeric dtype", d));
	KILN_TRY(same_dtype(n, 1, 0, d));
	kiln_type t;
	KILN_TRY(broadcast_inputs(n, (int[]){0, 1}, 2, &t, d));
	set_out(n, 0, &t);
	return KILN_OK;
}

static kiln_status kiln_shape_pow(kiln_node *n, kiln_diag *d)
{
	KILN_TRY(want_dtype(n, 0, is_float_or_wide_int(in_type(n, 0)->dtype),
	                    "a float dtype, i32 or i64", d));
	KILN_TRY(want_dtype(n, 1, is_numeric(in_type(n, 1)->dtype), "a numeric dtype", d));
	kiln_type t;
	KILN_TRY(broadcast_inputs(n, (int[]){0, 1}, 2, &t, d));
	set_out(n, 0, &t);
	return KILN_OK;
}

static kiln_status kiln_shape_variadic(kiln_node *n, kiln_diag *d)
{
	KILN_TRY(want_dtype(n, 0, is_numeric(in_type(n, 0)->dtype), "a numeric dtype", d));
	kiln_type acc = *in_type(n, 0);
	for (int i = 1; i < n->n_inputs; i++) {
		if (!has_in(n, i))
			return kiln_diag_error(d, KILN_ERR_SHAPE, n, "input %d is omitted", i);
		KILN_TRY(same_dtype(n, i, 0, d));
		kiln_type next;
		if (!kiln_broadcast(&acc, in_type(n, i), &next))
			return kiln_diag_error(d, KILN_ERR_SHAPE, n, "input %d (%s) does not broadcast with %s",
			                       i, TSTR(in_type(n, i)), TSTR(&acc));
		acc = next;
	}
	set_out(n, 0, &acc);
	return KILN_OK;
}

static kiln_status kiln_shape_where(kiln_node *n, kiln_diag *d)
{
	KILN_TRY(want_dtype(n, 0, in_type(n, 0)->dtype == KILN_DT_BOOL, "bool", d));
	KILN_TRY(same_dtype(n, 2, 1, d));
	kiln_type t;
	KILN_TRY(broadcast_inputs(n, (int[]){0, 1, 2}, 3, &t, d));
	t.dtype = in_type(n, 1)->dtype;
	set_out(n, 0, &t);
	return KILN_OK;
}

static kiln_status kiln_shape_compare(kiln_node *n, kiln_diag *d)
{
	if (n->op != KILN_OP_EQUAL)
		KILN_TRY(want_dtype(n, 0, is_numeric(in_type(n, 0)->dtype), "a numeric dtype", d));
	KILN_TRY(same_dtype(n, 1, 0, d));
	kiln_type t;
	KILN_TRY(broadcast_inputs(n, (int[]){0, 1}, 2, &t, d));
	t.dtype = KILN_DT_BOOL;
	set_out(n, 0, &t);
	return KILN_OK;
}

static kiln_status kiln_shape_reduce(kiln_node *n, kiln_diag *d)
{
	const kiln_type *x = in_type(n, 0);
	bool minmax = n->op == KILN_OP_REDUCE_MAX || n->op == KILN_OP_REDUCE_MIN;
	KILN_TRY(want_dtype(n, 0, is_numeric(x->dtype) || (minmax && x->dtype == KILN_DT_BOOL),
	                    "a numeric dtype", d));
	bool keep = kiln_node_int(n, "keepdims", 1) != 0;
	bool noop = kiln_node_int(n, "noop_with_empty_axes", 0) != 0;
	int64_t axes[KILN_MAX_RANK];
	int count = 0;
	if (has_in(n, 1)) {
		KILN_TRY(const_ints(n, 1, "axes", false, KILN_MAX_RANK, axes, &count, d));
		KILN_TRY(norm_axes(n, "axes", axes, count, x->rank, d));
	}
	if (count == 0 && noop) {
		set_out(n, 0, x);
		return KILN_OK;
	}
	bool reduced[KILN_MAX_RANK] = {0};
	for (int k = 0; k < count; k++)
		reduced[axes[k]] = true;
	kiln_type t = make_type(x->dtype, 0, NULL);
	for (int i = 0; i < x->rank; i++) {
		if (count == 0 || reduced[i]) {
			if (keep)
				t.dims[t.rank++] = 1;
		} else {
			t.dims[t.rank++] = x->dims[i];
		}
	}
	set_out(n, 0, &t);
	return KILN_OK;
}

static kiln_status kiln_shape_flatten(kiln_node *n, kiln_diag *d)
{
	const kiln_type *x = in_type(n, 0);
	int64_t axis = kiln_node_int(n, "axis", 1);
	if (axis < -(int64_t)x->rank || axis > x->rank)
		return kiln_diag_error(d, KILN_ERR_SHAPE, n, "axis %lld is out of range for rank %d",
		                       (long long)axis, x->rank);
	if (axis < 0)
		axis += x->rank;
	int64_t outer, inner;
	KILN_TRY(product(n, x->dims, (int)axis, &outer, d));
	KILN_TRY(product(n, x->dims + axis, x->rank - (int)axis, &inner, d));
	kiln_type t = make_type(x->dtype, 2, (int64_t[]){outer, inner});
	set_out(n, 0, &t);
	return KILN_OK;
}

static kiln_status kiln_shape_reshape(kiln_node *n, kiln_diag *d)
{
	const kiln_type *x = in_type(n, 0);
	int64_t shape[KILN_MAX_RANK];
	int k;
	KILN_TRY(const_ints(n, 1, "shape", false, KILN_MAX_RANK, shape, &k, d));
	bool allowzero = kiln_node_int(n, "allowzero", 0) != 0;
	kiln_type t = make_type(x->dtype, k, NULL);
	int infer = -1;
	bool zero = false;
	for (int i = 0; i < k; i++) {
		int64_t v = shape[i];
		if (v == -1) {
			if (infer >= 0)
				return kiln_diag_error(d, KILN_ERR_SHAPE, n, "shape has more than one -1");
			infer = i;
			t.dims[i] = 1;
		} else if (v < -1) {
			return kiln_diag_error(d, KILN_ERR_SHAPE, n, "shape[%d] is %lld", i, (long long)v);
		} else if (v == 0 && !allowzero) {
			if (i >= x->rank)
				return kiln_diag_error(d, KILN_ERR_SHAPE, n,
				                       "shape[%d] is 0 (copy the input dim), but input 0 has "
				                       "rank %d",
				                       i, x->rank);
			t.dims[i] = x->dims[i];
		} else {
			zero |= v == 0;
			t.dims[i] = v;
		}
	}
	if (zero && infer >= 0)
		return kiln_diag_error(d, KILN_ERR_SHAPE, n, "shape has both 0 and -1 with allowzero");
	int64_t numel, known;
	KILN_TRY(product(n, x->dims, x->rank, &numel, d));
	KILN_TRY(product(n, t.dims, t.rank, &known, d));
	if (infer >= 0) {
		if (known == 0 || numel % known)
			return kiln_diag_error(d, KILN_ERR_SHAPE, n,
			                       "cannot infer the -1 in shape: %lld elements do not divide "
			                       "into the other dims",
			                       (long long)numel);
		t.dims[infer] = numel / known;
		known = numel;
	}
	if (known != numel)
		return kiln_diag_error(d, KILN_ERR_SHAPE, n,
		                       "cannot reshape %s (%lld elements) to %s (%lld elements)", TSTR(x),
		                       (long long)numel, TSTR(&t), (long long)known);
	set_out(n, 0, &t);
	return KILN_OK;
}

static kiln_status kiln_shape_transpose(kiln_node *n, kiln_diag *d)
{
	const kiln_type *x = in_type(n, 0);
	const int64_t *perm;
	int c = kiln_node_ints(n, "perm", &perm);
	if (c != 0 && c != x->rank)
		return kiln_diag_error(d, KILN_ERR_SHAPE, n, "perm has %d values, expected %d", c, x->rank);
	kiln_type t = make_type(x->dtype, x->rank, NULL);
	bool seen[KILN_MAX_RANK] = {0};
	for (int i = 0; i < x->rank; i++) {
		int64_t p = c ? perm[i] : x->rank - 1 - i;
		if (p < 0 || p >= x->rank || seen[p])
			return kiln_diag_error(d, KILN_ERR_SHAPE, n, "perm is not a permutation of 0..%d",
			                       x->rank - 1);
		seen[p] = true;
		t.dims[i] = x->dims[p];
	}
	set_out(n, 0, &t);
	return KILN_OK;
}

static kiln_status kiln_shape_concat(kiln_node *n, kiln_diag *d)
{
	const kiln_type *x = in_type(n, 0);
	if (!kiln_node_attr(n, "axis"))
		return kiln_diag_error(d, KILN_ERR_SHAPE, n, "attribute 'axis' is required");
	KILN_TRY(want_min_rank(n, 0, 1, d));
	int axis;
	KILN_TRY(axis_attr(n, "axis", 0, x->rank, &axis, d));
	kiln_type t = *x;
	for (int i = 1; i < n->n_inputs; i++) {
		if (!has_in(n, i))
			return kiln_diag_error(d, KILN_ERR_SHAPE, n, "input %d is omitted", i);
		KILN_TRY(same_dtype(n, i, 0, d));
		const kiln_type *y = in_type(n, i);
		bool ok = y->rank == x->rank;
		for (int k = 0; ok && k < x->rank; k++)
			ok = k == axis || y->dims[k] == x->dims[k];
		if (!ok)
			return kiln_diag_error(d, KILN_ERR_SHAPE, n,
			                       "input %d (%s) does not match input 0 (%s) outside axis %d", i,
			                       TSTR(y), TSTR(x), axis);
		t.dims[axis] += y->dims[axis];
	}
	set_out(n, 0, &t);
	return KILN_OK;
}

static kiln_status kiln_shape_split(kiln_node *n, kiln_diag *d)
{
	const kiln_type *x = in_type(n, 0);
	KILN_TRY(want_min_rank(n, 0, 1, d));
	int axis;
	KILN_TRY(axis_attr(n, "axis", 0, x->rank, &axis, d));
	int64_t dim = x->dims[axis], nout = n->n_outputs;
	bool has_num = kiln_node_attr(n, "num_outputs") != NULL;
	kiln_type t = *x;
	/* An empty split tensor counts as absent. */
	if (has_in(n, 1) && kiln_type_numel(in_type(n, 1)) > 0) {
		if (has_num)
			return kiln_diag_error(d, KILN_ERR_SHAPE, n,
			                       "input 1 ('split') and attribute num_outputs are both given");
		int64_t count, sum = 0;
		KILN_TRY(const_list(n, 1, "split", false, INT64_MAX, &count, d));
		if (count != nout)
			return kiln_diag_error(d, KILN_ERR_SHAPE, n,
			                       "input 1 ('split') has %lld entries, but the node has %lld "
			                       "outputs",
			                       (long long)count, (long long)nout);
		for (int64_t i = 0; i < count; i++) {
			int64_t s = kiln_const_get_i64(n->inputs[1], i);
			if (s < 0 || s > dim)
				return kiln_diag_error(d, KILN_ERR_SHAPE, n, "split[%lld] is %lld", (long long)i,
				                       (long long)s);
			sum += s;
		}
		if (sum != dim)
			return kiln_diag_error(d, KILN_ERR_SHAPE, n,
			                       "split sums to %lld, but axis %d has size %lld",
			                       (long long)sum, axis, (long long)dim);
		for (int i = 0; i < n->n_outputs; i++) {
			t.dims[axis] = kiln_const_get_i64(n->inputs[1], i);
			set_out(n, i, &t);
		}
		return KILN_OK;
	}
	int64_t chunk, last;
	if (has_num) {
		int64_t num = kiln_node_int(n, "num_outputs", 0);
		if (num != nout)
			return kiln_diag_error(d, KILN_ERR_SHAPE, n,
			                       "num_outputs is %lld, but the node has %lld outputs",
			                       (long long)num, (long long)nout);
		chunk = (dim + nout - 1) / nout;
		last = dim - chunk * (nout - 1);
		if (last < 0)
			return kiln_diag_error(d, KILN_ERR_SHAPE, n,
			                       "cannot split axis %d of size %lld into %lld chunks", axis,
			                       (long long)dim, (long long)nout);
	} else {
		if (dim % nout)
			return kiln_diag_error(d, KILN_ERR_SHAPE, n,
			                       "cannot split axis %d of size %lld evenly into %lld outputs",
			                       axis, (long long)dim, (long long)nout);
		chunk = last = dim / nout;
	}
	for (int i = 0; i < n->n_outputs; i++) {
		t.dims[axis] = i == n->n_outputs - 1 ? last : chunk;
		set_out(n, i, &t);
	}
	return KILN_OK;
}

static int64_t clamp64(int64_t v, int64_t lo, int64_t hi)
{
	return v < lo ? lo : v > hi ? hi : v;
}

static kiln_status kiln_shape_slice(kiln_node *n, kiln_diag *d)
{
	const kiln_type *x = in_type(n, 0);
	int64_t starts[KILN_MAX_RANK], ends[KILN_MAX_RANK], axes[KILN_MAX_RANK], steps[KILN_MAX_RANK];
	int k, ke, ka, ks;
	KILN_TRY(const_ints(n, 1, "starts", true, KILN_MAX_RANK, starts, &k, d));
	KILN_TRY(const_ints(n, 2, "ends", true, KILN_MAX_RANK, ends, &ke, d));
	if (ke != k)
		return kiln_diag_error(d, KILN_ERR_SHAPE, n,
		                       "input 2 ('ends') has %d elements, expected %d like 'starts'", ke, k);
	if (has_in(n, 3)) {
		KILN_TRY(const_ints(n, 3, "axes", true, KILN_MAX_RANK, axes, &ka, d));
		if (ka != k)
			return kiln_diag_error(d, KILN_ERR_SHAPE, n,
			                       "input 3 ('axes') has %d elements, expected %d like 'starts'",
			                       ka, k);
	} else {
		for (int i = 0; i < k; i++)
			axes[i] = i;
	}
	KILN_TRY(norm_axes(n, "axes", axes, k, x->rank, d));
	if (has_in(n, 4)) {
		KILN_TRY(const_ints(n, 4, "steps", true, KILN_MAX_RANK, steps, &ks, d));
		if (ks != k)
			return kiln_diag_error(d, KILN_ERR_SHAPE, n,
			                       "input 4 ('steps') has %d elements, expected %d like 'starts'",
			                       ks, k);
	} else {
		for (int i = 0; i < k; i++)
			steps[i] = 1;
	}
	kiln_type t = *x;
	for (int i = 0; i < k; i++) {
		int64_t dim = x->dims[axes[i]], step = steps[i];
		int64_t s = starts[i], e = ends[i];
		if (step == 0)
			return kiln_diag_error(d, KILN_ERR_SHAPE, n, "steps[%d] is 0", i);
		if (s < 0)
			s += dim;
		if (e < 0)
			e += dim;
		int64_t len;
		if (step > 0) {
			s = clamp64(s, 0, dim);
			e = clamp64(e, 0, dim);
			len = e > s ? (e - s - 1) / step + 1 : 0;
		} else {
			s = clamp64(s, 0, dim - 1);
			e = clamp64(e, -1, dim - 1);
			len = s > e ? (s - e - 1) / -step + 1 : 0;
		}
		t.dims[axes[i]] = len;
	}
	set_out(n, 0, &t);
	return KILN_OK;
}

static kiln_status kiln_shape_gather(kiln_node *n, kiln_diag *d)
{
	const kiln_type *x = in_type(n, 0), *idx = in_type(n, 1);
	KILN_TRY(want_min_rank(n, 0, 1, d));
	KILN_TRY(want_dtype(n, 1, idx->dtype == KILN_DT_I64 || idx->dtype == KILN_DT_I32,
	                    "i64 or i32", d));
	int axis;
	KILN_TRY(axis_attr(n, "axis", 0, x->rank, &axis, d));
	int rank = x->rank - 1 + idx->rank;
	if (rank > KILN_MAX_RANK)
		return kiln_diag_error(d, KILN_ERR_SHAPE, n, "output rank %d exceeds %d", rank,
		                       KILN_MAX_RANK);
	kiln_type t = make_type(x->dtype, 0, NULL);
	for (int i = 0; i < axis; i++)
		t.dims[t.rank++] = x->dims[i];
	for (int i = 0; i < idx->rank; i++)
		t.dims[t.rank++] = idx->dims[i];
	for (int i = axis + 1; i < x->rank; i++)
		t.dims[t.rank++] = x->dims[i];
	set_out(n, 0, &t);
	return KILN_OK;
}

static kiln_status kiln_shape_squeeze(kiln_node *n, kiln_diag *d)
{
	const kiln_type *x = in_type(n, 0);
	int64_t axes[KILN_MAX_RANK];
	int count = 0;
	bool drop[KILN_MAX_RANK] = {0};
	if (has_in(n, 1)) {
		KILN_TRY(const_ints(n, 1, "axes", false, KILN_MAX_RANK, axes, &count, d));
		KILN_TRY(norm_axes(n, "axes", axes, count, x->rank, d));
		for (int k = 0; k < count; k++) {
			if (x->dims[axes[k]] != 1)
				return kiln_diag_error(d, KILN_ERR_SHAPE, n,
				                       "cannot squeeze axis %d of size %lld", (int)axes[k],
				                       (long long)x->dims[axes[k]]);
			drop[axes[k]] = true;
		}
	}
	kiln_type t = make_type(x->dtype, 0, NULL);
	for (int i = 0; i < x->rank; i++)
		if (!(count > 0 ? drop[i] : x->dims[i] == 1))
			t.dims[t.rank++] = x->dims[i];
	set_out(n, 0, &t);
	return KILN_OK;
}

static kiln_status kiln_shape_unsqueeze(kiln_node *n, kiln_diag *d)
{
	const kiln_type *x = in_type(n, 0);
	int64_t axes[KILN_MAX_RANK];
	int count;
	KILN_TRY(const_ints(n, 1, "axes", false, KILN_MAX_RANK, axes, &count, d));
	int rank = x->rank + count;
	if (rank > KILN_MAX_RANK)
		return kiln_diag_error(d, KILN_ERR_SHAPE, n, "output rank %d exceeds %d", rank,
		                       KILN_MAX_RANK);
	KILN_TRY(norm_axes(n, "axes", axes, count, rank, d));
	bool unit[KILN_MAX_RANK] = {0};
	for (int k = 0; k < count; k++)
		unit[axes[k]] = true;
	kiln_type t = make_type(x->dtype, rank, NULL);
	for (int i = 0, j = 0; i < rank; i++)
		t.dims[i] = unit[i] ? 1 : x->dims[j++];
	set_out(n, 0, &t);
	return KILN_OK;
}

static kiln_status kiln_shape_expand(kiln_node *n, kiln_diag *d)
{
	const kiln_type *x = in_type(n, 0);
	int64_t shape[KILN_MAX_RANK];
	int k;
	KILN_TRY(const_ints(n, 1, "shape", false, KILN_MAX_RANK, shape, &k, d));
	kiln_type s = make_type(x->dtype, k, shape);
	for (int i = 0; i < k; i++)
		if (shape[i] < 0)
			return kiln_diag_error(d, KILN_ERR_SHAPE, n, "shape[%d] is %lld", i,
			                       (long long)shape[i]);
	kiln_type t;
	if (!kiln_broadcast(x, &s, &t))
		return kiln_diag_error(d, KILN_ERR_SHAPE, n, "input 0 (%s) does not broadcast with shape %s",
		                       TSTR(x), TSTR(&s));
	set_out(n, 0, &t);
	return KILN_OK;
}

static kiln_status kiln_shape_shape(kiln_node *n, kiln_diag *d)
{
	int64_t r = in_type(n, 0)->rank;
	int64_t start = kiln_node_int(n, "start", 0), end = kiln_node_int(n, "end", r);
	if (start < 0)
		start += r;
	if (end < 0)
		end += r;
	start = clamp64(start, 0, r);
	end = clamp64(end, 0, r);
	kiln_type t = make_type(KILN_DT_I64, 1, (int64_t[]){end > start ? end - start : 0});
	set_out(n, 0, &t);
	return KILN_OK;
}

static kiln_status kiln_shape_constant_of_shape(kiln_node *n, kiln_diag *d)
{
	int64_t shape[KILN_MAX_RANK];
	int k;
	KILN_TRY(const_ints(n, 0, "input", false, KILN_MAX_RANK, shape, &k, d));
	for (int i = 0; i < k; i++)
		if (shape[i] < 0)
			return kiln_diag_error(d, KILN_ERR_SHAPE, n, "input[%d] is %lld", i,
			                       (long long)shape[i]);
	kiln_dtype dt = KILN_DT_F32;
	const kiln_tensor *v = kiln_node_tensor(n, "value");
	if (v) {
		if (kiln_type_numel(&v->type) != 1)
			return kiln_diag_error(d, KILN_ERR_SHAPE, n,
			                       "attribute 'value' (%s) must have one element",
			                       TSTR(&v->type));
		dt = v->type.dtype;
	}
	kiln_type t = make_type(dt, k, shape);
	set_out(n, 0, &t);
	return KILN_OK;
}

static kiln_status kiln_shape_range(kiln_node *n, kiln_diag *d)
{
	static const char *const labels[] = {"start", "limit", "delta"};
	kiln_dtype dt = in_type(n, 0)->dtype;
	KILN_TRY(want_dtype(n, 0,
	                    kiln_dtype_is_float(dt) || dt == KILN_DT_I32 || dt == KILN_DT_I64,
	                    "a float dtype, i32 or i64", d));
	for (int i = 0; i < 3; i++) {
		KILN_TRY(same_dtype(n, i, 0, d));
		KILN_TRY(need_const(n, i, labels[i], d));
		KILN_TRY(want_rank(n, i, 0, d));
	}
	int64_t len;
	if (kiln_dtype_is_int(dt)) {
		int64_t start = kiln_const_get_i64(n->inputs[0], 0);
		int64_t limit = kiln_const_get_i64(n->inputs[1], 0);
		int64_t delta = kiln_const_get_i64(n->inputs[2], 0);
		int64_t span;
		if (delta == 0)
			return kiln_diag_error(d, KILN_ERR_SHAPE, n, "delta is 0");
		if (__builtin_sub_overflow(limit, start, &span))
			return kiln_diag_error(d, KILN_ERR_SHAPE, n, "limit - start overflows int64");
		len = span / delta;
		if (span % delta != 0 && (span > 0) == (delta > 0))
			len++;
	} else {
		/* In the inputs' precision, as the ONNX reference computes it. */
		double start = kiln_const_get_f64(n->inputs[0], 0);
		double limit = kiln_const_get_f64(n->inputs[1], 0);
		double delta = kiln_const_get_f64(n->inputs[2], 0);
		double q = dt == KILN_DT_F32 ? (double)(((float)limit - (float)start) / (float)delta)
		                             : (limit - start) / delta;
		if (delta == 0 || !isfinite(q) || ceil(q) > (double)INT32_MAX * 4)
			return kiln_diag_error(d, KILN_ERR_SHAPE, n,
			                       "range length (limit - start) / delta is not a usable number");
		len = (int64_t)ceil(q);
	}
	kiln_type t = make_type(dt, 1, (int64_t[]){len > 0 ? len : 0});
	set_out(n, 0, &t);
	return KILN_OK;
}

static kiln_status kiln_shape_cast(kiln_node *n, kiln_diag *d)
{
	const kiln_attr *to = kiln_node_attr(n, "to");
	if (!to || to->kind != KILN_ATTR_INT)
		return kiln_diag_error(d, KILN_ERR_SHAPE, n, "attribute 'to' is required");
	kiln_type t = *in_type(n, 0);
	if (!kiln_dtype_from_onnx(to->u.i, &t.dtype))
		return kiln_diag_error(d, KILN_ERR_UNSUPPORTED, n,
		                       "cast to ONNX data type %lld is not supported", (long long)to->u.i);
	set_out(n, 0, &t);
	return KILN_OK;
}

static kiln_status kiln_shape_pad(kiln_node *n, kiln_diag *d)
{
	const kiln_type *x = in_type(n, 0);
	static const char *const modes[] = {"constant", "reflect", "edge", "wrap", NULL};
	const char *mode;
	KILN_TRY(enum_attr(n, "mode", "constant", modes, &mode, d));
	int64_t axes[KILN_MAX_RANK], pads[2 * KILN_MAX_RANK];
	int k, np;
	if (has_in(n, 3)) {
		KILN_TRY(const_ints(n, 3, "axes", true, KILN_MAX_RANK, axes, &k, d));
		KILN_TRY(norm_axes(n, "axes", axes, k, x->rank, d));
	} else {
		k = x->rank;
		for (int i = 0; i < k; i++)
			axes[i] = i;
	}
	KILN_TRY(const_ints(n, 1, "pads", false, 2 * KILN_MAX_RANK, pads, &np, d));
	if (np != 2 * k)
		return kiln_diag_error(d, KILN_ERR_SHAPE, n, "input 1 ('pads') has %d elements, expected %d",
		                       np, 2 * k);
	if (has_in(n, 2)) {
		KILN_TRY(same_dtype(n, 2, 0, d));
		if (!is_scalarish(in_type(n, 2)))
			return kiln_diag_error(d, KILN_ERR_SHAPE, n, "input 2 (%s) must be a scalar",
			                       TSTR(in_type(n, 2)));
	}
	kiln_type t = *x;
	for (int i = 0; i < k; i++) {
		int a = (int)axes[i];
		t.dims[a] = x->dims[a] + pads[i] + pads[k + i];
		if (t.dims[a] < 0)
			return kiln_diag_error(d, KILN_ERR_SHAPE, n,
			                       "pads crop axis %d of size %lld to %lld", a,
			                       (long long)x->dims[a], (long long)t.dims[a]);
	}
	set_out(n, 0, &t);
	return KILN_OK;
}

static kiln_status kiln_shape_resize(kiln_node *n, kiln_diag *d)
{
	const kiln_type *x = in_type(n, 0);
	static const char *const modes[] = {"nearest", "linear", "cubic", NULL};
	static const char *const ctms[] = {"half_pixel",   "half_pixel_symmetric", "pytorch_half_pixel",
	                                   "align_corners", "asymmetric",          "tf_crop_and_resize",
	                                   NULL};
	static const char *const nearest[] = {"round_prefer_floor", "round_prefer_ceil", "floor",
	                                      "ceil", NULL};
	static const char *const policies[] = {"stretch", "not_larger", "not_smaller", NULL};
	const char *s, *policy;
	KILN_TRY(enum_attr(n, "mode", "nearest", modes, &s, d));
	KILN_TRY(enum_attr(n, "coordinate_transformation_mode", "half_pixel", ctms, &s, d));
	KILN_TRY(enum_attr(n, "nearest_mode", "round_prefer_floor", nearest, &s, d));
	KILN_TRY(enum_attr(n, "keep_aspect_ratio_policy", "stretch", policies, &policy, d));

	int64_t axes[KILN_MAX_RANK];
	const int64_t *av;
	int k = kiln_node_ints(n, "axes", &av);
	if (k > x->rank)
		return kiln_diag_error(d, KILN_ERR_SHAPE, n, "axes has %d values, rank is %d", k, x->rank);
	if (k) {
		memcpy(axes, av, (size_t)k * sizeof *axes);
		KILN_TRY(norm_axes(n, "axes", axes, k, x->rank, d));
	} else {
		k = x->rank;
		for (int i = 0; i < k; i++)
			axes[i] = i;
	}
	if (has_in(n, 1))
		KILN_TRY(need_const(n, 1, "roi", d));
	/* An empty scales or sizes tensor counts as absent. */
	bool scales = has_in(n, 2) && kiln_type_numel(in_type(n, 2)) > 0;
	bool sizes = has_in(n, 3) && kiln_type_numel(in_type(n, 3)) > 0;
	if (scales == sizes)
		return kiln_diag_error(d, KILN_ERR_SHAPE, n, "exactly one of 'scales' and 'sizes' must be given");
	kiln_type t = *x;
	if (scales) {
		KILN_TRY(need_const(n, 2, "scales", d));
		KILN_TRY(want_dtype(n, 2, kiln_dtype_is_float(in_type(n, 2)->dtype), "a float dtype", d));
		if (in_type(n, 2)->rank != 1 || in_type(n, 2)->dims[0] != k)
			return kiln_diag_error(d, KILN_ERR_SHAPE, n, "input 2 ('scales') is %s, expected %d values",
			                       TSTR(in_type(n, 2)), k);
		for (int i = 0; i < k; i++) {
			float sc = (float)kiln_const_get_f64(n->inputs[2], i);
			if (!(sc > 0) || !isfinite(sc))
				return kiln_diag_error(d, KILN_ERR_SHAPE, n, "scales[%d] is %g, expected > 0", i,
				                       (double)sc);
			t.dims[axes[i]] = (int64_t)floor((double)sc * (double)x->dims[axes[i]]);
		}
	} else {
		int64_t sz[KILN_MAX_RANK];
		int c;
		KILN_TRY(const_ints(n, 3, "sizes", false, KILN_MAX_RANK, sz, &c, d));
		if (c != k)
			return kiln_diag_error(d, KILN_ERR_SHAPE, n, "input 3 ('sizes') has %d elements, expected %d",
			                       c, k);
		for (int i = 0; i < k; i++)
			if (sz[i] < 0)
				return kiln_diag_error(d, KILN_ERR_SHAPE, n, "sizes[%d] is %lld", i,
				                       (long long)sz[i]);
		if (strcmp(policy, "stretch") == 0) {
			for (int i = 0; i < k; i++)
				t.dims[axes[i]] = sz[i];
		} else {
			/* One scale for all axes, then round half up as ONNX does. */
			bool larger = strcmp(policy, "not_smaller") == 0;
			double scale = 0;
			for (int i = 0; i < k; i++) {
				double r = (double)sz[i] / (double)x->dims[axes[i]];
				if (i == 0 || (larger ? r > scale : r < scale))
					scale = r;
			}
			for (int i = 0; i < k; i++)
				t.dims[axes[i]] = (int64_t)(scale * (double)x->dims[axes[i]] + 0.5);
		}
	}
	set_out(n, 0, &t);
	return KILN_OK;
}

static kiln_status kiln_shape_dropout(kiln_node *n, kiln_diag *d)
{
	const kiln_type *x = in_type(n, 0);
	KILN_TRY(want_dtype(n, 0, kiln_dtype_is_float(x->dtype), "a float dtype", d));
	if (has_in(n, 1)) {
		KILN_TRY(want_dtype(n, 1, kiln_dtype_is_float(in_type(n, 1)->dtype), "a float dtype", d));
		KILN_TRY(want_rank(n, 1, 0, d));
	}
	if (has_in(n, 2)) {
		KILN_TRY(want_dtype(n, 2, in_type(n, 2)->dtype == KILN_DT_BOOL, "bool", d));
		KILN_TRY(want_rank(n, 2, 0, d));
	}
	set_out(n, 0, x);
	kiln_type mask = *x;
	mask.dtype = KILN_DT_BOOL;
	set_out(n, 1, &mask);
	return KILN_OK;
}

static kiln_status kiln_shape_tile(kiln_node *n, kiln_diag *d)
{
	const kiln_type *x = in_type(n, 0);
	int64_t reps[KILN_MAX_RANK];
	int k;
	KILN_TRY(const_ints(n, 1, "repeats", false, KILN_MAX_RANK, reps, &k, d));
	if (k != x->rank)
		return kiln_diag_error(d, KILN_ERR_SHAPE, n,
		                       "input 1 ('repeats') has %d elements, expected %d (the rank)", k,
		                       x->rank);
	kiln_type t = *x;
	for (int i = 0; i < k; i++) {
		if (reps[i] < 0)
			return kiln_diag_error(d, KILN_ERR_SHAPE, n, "repeats[%d] is %lld", i,
			                       (long long)reps[i]);
		if (!mul_ok(x->dims[i], reps[i], &t.dims[i]))
			return kiln_diag_error(d, KILN_ERR_SHAPE, n, "element count overflows int64");
	}
	set_out(n, 0, &t);
	return KILN_OK;
}

/* Scale (and zero point) of QuantizeLinear / DequantizeLinear: per tensor
 * (one element) or per axis (1-D, the size of x's `axis`). */
static kiln_status quant_params(kiln_node *n, kiln_diag *d)
{
	const kiln_type *x = in_type(n, 0), *s = in_type(n, 1);
	if (kiln_node_int(n, "block_size", 0) != 0)
		return kiln_diag_error(d, KILN_ERR_UNSUPPORTED, n,
		                       "blocked quantisation (block_size %lld) is not supported",
		                       (long long)kiln_node_int(n, "block_size", 0));
	KILN_TRY(want_dtype(n, 1, kiln_dtype_is_float(s->dtype), "a float dtype", d));
	if (s->rank > 0 && !is_scalarish(s)) {
		int axis;
		KILN_TRY(axis_attr(n, "axis", 1, x->rank, &axis, d));
		if (s->rank != 1 || s->dims[0] != x->dims[axis])
			return kiln_diag_error(d, KILN_ERR_SHAPE, n,
			                       "input 1 (%s) must be a scalar or 1-D with %lld elements "
			                       "(axis %d)",
			                       TSTR(s), (long long)x->dims[axis], axis);
	}
	if (has_in(n, 2)) {
		const kiln_type *z = in_type(n, 2);
		bool same = z->rank == s->rank && (z->rank == 0 || z->dims[0] == s->dims[0]);
		if (!same && !(is_scalarish(z) && is_scalarish(s)))
			return kiln_diag_error(d, KILN_ERR_SHAPE, n,
			                       "input 2 (%s) must have the shape of input 1 (%s)", TSTR(z),
			                       TSTR(s));
	}
	return KILN_OK;
}

static kiln_status kiln_shape_quantize(kiln_node *n, kiln_diag *d)
{
	const kiln_type *x = in_type(n, 0);
	KILN_TRY(want_dtype(n, 0, kiln_dtype_is_float(x->dtype) || x->dtype == KILN_DT_I32,
	                    "a float dtype or i32", d));
	KILN_TRY(quant_params(n, d));
	int64_t code = kiln_node_int(n, "output_dtype", 0);
	kiln_dtype dt = KILN_DT_U8;
	if (code != 0 && !kiln_dtype_from_onnx(code, &dt))
		return kiln_diag_error(d, KILN_ERR_UNSUPPORTED, n,
		                       "output_dtype %lld is not supported (u8 or i8)", (long long)code);
	if (has_in(n, 2)) {
		kiln_dtype z = in_type(n, 2)->dtype;
		if (code != 0 && z != dt)
			return kiln_diag_error(d, KILN_ERR_SHAPE, n,
			                       "output_dtype is %s but input 2 has dtype %s",
			                       kiln_dtype_name(dt), kiln_dtype_name(z));
		dt = z;
	}
	if (dt != KILN_DT_U8 && dt != KILN_DT_I8)
		return kiln_diag_error(d, KILN_ERR_UNSUPPORTED, n,
		                       "quantising to %s is not supported (u8 or i8)", kiln_dtype_name(dt));
	kiln_type t = *x;
	t.dtype = dt;
	set_out(n, 0, &t);
	return KILN_OK;
}

static kiln_status kiln_shape_dequantize(kiln_node *n, kiln_diag *d)
{
	const kiln_type *x = in_type(n, 0);
	KILN_TRY(want_dtype(n, 0,
	                    x->dtype == KILN_DT_I8 || x->dtype == KILN_DT_U8 || x->dtype == KILN_DT_I32,
	                    "i8, u8 or i32", d));
	KILN_TRY(quant_params(n, d));
	if (has_in(n, 2))
		KILN_TRY(same_dtype(n, 2, 0, d));
	kiln_type t = *x;
	t.dtype = in_type(n, 1)->dtype;
	set_out(n, 0, &t);
	return KILN_OK;
}

/* ---- blocked channel layout (NCHWc) ------------------------------------ */

static int64_t nchwc_blocks(int64_t channels)
{
	return (channels + NCHWC_BLOCK - 1) / NCHWC_BLOCK;
}

/* [N, C, H, W] f32 -> [N, cdiv(C, 16), H, W, 16] */
static kiln_status kiln_shape_reorder_to_nchwc(kiln_node *n, kiln_diag *d)
{
	KILN_TRY(want_dtype(n, 0, in_type(n, 0)->dtype == KILN_DT_F32, "f32", d));
	KILN_TRY(want_rank(n, 0, 4, d));
	const kiln_type *x = in_type(n, 0);
	if (x->dims[1] < 1)
		return kiln_diag_error(d, KILN_ERR_SHAPE, n, "input 0 (%s) has no channels", TSTR(x));
	int64_t dims[5] = {x->dims[0], nchwc_blocks(x->dims[1]), x->dims[2], x->dims[3],
	                   NCHWC_BLOCK};
	kiln_type t = make_type(KILN_DT_F32, 5, dims);
	set_out(n, 0, &t);
	return KILN_OK;
}

/* [N, cdiv(C, 16), H, W, 16] f32 -> [N, C, H, W], C the channels attribute */
static kiln_status kiln_shape_reorder_from_nchwc(kiln_node *n, kiln_diag *d)
{
	KILN_TRY(want_dtype(n, 0, in_type(n, 0)->dtype == KILN_DT_F32, "f32", d));
	if (!kiln_node_attr(n, "channels"))
		return kiln_diag_error(d, KILN_ERR_SHAPE, n, "attribute 'channels' is required");
	kiln_type t;
	KILN_TRY(nchwc_logical(n, 0, kiln_node_int(n, "channels", 0), &t, d));
	set_out(n, 0, &t);
	return KILN_OK;
}

/* The Conv of the NCHW input that blocked X holds, blocked: f32 X
 * [N, cdiv(C, 16), H, W, 16], W [M, C/group, kh, kw], optional B [M] ->
 * [N, cdiv(M, 16), OH, OW, 16]. Explicit pads (no auto_pad). */
static kiln_status kiln_shape_conv_nchwc(kiln_node *n, kiln_diag *d)
{
	KILN_TRY(want_dtype(n, 0, in_type(n, 0)->dtype == KILN_DT_F32, "f32", d));
	KILN_TRY(same_dtype(n, 1, 0, d));
	if (!kiln_node_attr(n, "channels"))
		return kiln_diag_error(d, KILN_ERR_SHAPE, n, "attribute 'channels' is required");
	kiln_window w;
	KILN_TRY(kiln_window_resolve(n, &w, d));
	if (w.nspatial != 2)
		return kiln_diag_error(d, KILN_ERR_SHAPE, n, "%d spatial dims, expected 2", w.nspatial);
	if (has_in(n, 2)) {
		const kiln_type *b = in_type(n, 2);
		KILN_TRY(same_dtype(n, 2, 0, d));
		if (b->rank != 1 || b->dims[0] != w.out_c)
			return kiln_diag_error(d, KILN_ERR_SHAPE, n,
			                       "input 2 (%s) must be 1-D with %lld elements (the output "
			                       "channels)",
			                       TSTR(b), (long long)w.out_c);
	}
	int64_t dims[5] = {w.batch, nchwc_blocks(w.out_c), w.out[0], w.out[1], NCHWC_BLOCK};
	kiln_type t = make_type(KILN_DT_F32, 5, dims);
	set_out(n, 0, &t);
	return KILN_OK;
}

/* ---- fusion ------------------------------------------------------------ */

/* The body's inputs take the node's input types, the body is inferred, and
 * the node's outputs take the body outputs' types. */
static kiln_status kiln_shape_fusion(kiln_node *n, kiln_diag *d)
{
	kiln_graph *b = n->body;
	kiln_fusion_kind kind = kiln_node_fusion_kind(n);
	KILN_ENSURE(d, kind != KILN_FUSION_NONE, KILN_ERR_SHAPE, n,
	            "kind must be \"loop\", \"output\" or \"reduction\"");
	KILN_ENSURE(d, b, KILN_ERR_SHAPE, n, "fusion node has no body");
	KILN_ENSURE(d, b->n_inputs == n->n_inputs && b->n_outputs == n->n_outputs, KILN_ERR_SHAPE,
	            n, "%d inputs and %d outputs, but the body has %d and %d", n->n_inputs,
	            n->n_outputs, b->n_inputs, b->n_outputs);
	for (int i = 0; i < n->n_inputs; i++) {
		KILN_ENSURE(d, n->inputs[i], KILN_ERR_SHAPE, n, "input %d is omitted", i);
		b->inputs[i]->type = n->inputs[i]->type;
	}
	KILN_TRY(kiln_infer_shapes(b, d));
	for (int i = 0; i < n->n_outputs; i++)
		set_out(n, i, &b->outputs[i]->type);
	return KILN_OK;
}

/* ---- dispatch ---------------------------------------------------------- */

static const kiln_shape_fn shape_rules[] = {
#define KILN_OP(E, NAME, IN_MIN, IN_MAX, OUT_MIN, OUT_MAX, FLAGS, SHAPE, ATTRS) \
	[KILN_OP_##E] = kiln_shape_##SHAPE,
#include "ops.def"
#undef KILN_OP
};
_Static_assert(sizeof shape_rules / sizeof *shape_rules == KILN_OP_COUNT,
               "shape_rules must cover kiln_op");

/* "2 inputs", "2 to 3 outputs", "at least 1 input" */
static const char *arity_str(int lo, int hi, const char *what, char *buf, size_t size)
{
	const char *s = (hi < 0 ? lo : hi) == 1 ? "" : "s";
	if (hi < 0)
		snprintf(buf, size, "at least %d %s%s", lo, what, s);
	else if (lo == hi)
		snprintf(buf, size, "%d %s%s", lo, what, s);
	else
		snprintf(buf, size, "%d to %d %s%s", lo, hi, what, s);
	return buf;
}

kiln_status kiln_infer_node(kiln_node *n, kiln_diag *d)
{
	const kiln_op_info *info = kiln_op_get(n->op);
	if (!info)
		return kiln_diag_error(d, KILN_ERR_SHAPE, n, "unknown op %d", (int)n->op);
	char buf[48];
	if (n->n_inputs < info->in_min || (info->in_max >= 0 && n->n_inputs > info->in_max))
		return kiln_diag_error(d, KILN_ERR_SHAPE, n, "expected %s, got %d",
		                       arity_str(info->in_min, info->in_max, "input", buf, sizeof buf),
		                       n->n_inputs);
	if (n->n_outputs < info->out_min || (info->out_max >= 0 && n->n_outputs > info->out_max))
		return kiln_diag_error(d, KILN_ERR_SHAPE, n, "expected %s, got %d",
		                       arity_str(info->out_min, info->out_max, "output", buf, sizeof buf),
		                       n->n_outputs);
	for (int i = 0; i < info->in_min; i++)
		if (!n->inputs[i])
			return kiln_diag_error(d, KILN_ERR_SHAPE, n, "input %d is required but omitted", i);
	return shape_rules[n->op](n, d);
}

kiln_status kiln_infer_shapes(kiln_graph *g, kiln_diag *d)
{
	for (int i = 0; i < g->n_nodes; i++)
		KILN_TRY(kiln_infer_node(g->nodes[i], d));
	return KILN_OK;
}
