/* movement.c — index arithmetic of the data-movement ops that the
 * interpreter (interp/k_movement.c, k_resize.c) and the backends
 * (codegen/cpu/lower_movement.c) both need: Slice's bounds, Pad's border
 * modes, Resize's attributes and per-axis taps (the ONNX reference
 * implementation's). One copy, so they agree exactly. */
#include "ir.h"

#include <math.h>
#include <string.h>

/* ---- Slice ---- */

static int64_t clamp64(int64_t v, int64_t lo, int64_t hi) { return v < lo ? lo : v > hi ? hi : v; }

void kiln_slice_axis(int64_t dim, int64_t start, int64_t end, int64_t step, int64_t *first,
                     int64_t *len)
{
	if (start < 0)
		start += dim;
	if (end < 0)
		end += dim;
	/* The counts go through uint64: a step of INT64_MIN has no negation. */
	if (dim == 0) {
		start = 0;
		*len = 0;
	} else if (step > 0) {
		start = clamp64(start, 0, dim);
		end = clamp64(end, 0, dim);
		*len = end > start ? (int64_t)(((uint64_t)(end - start) - 1) / (uint64_t)step + 1) : 0;
	} else {
		start = clamp64(start, 0, dim - 1);
		end = clamp64(end, -1, dim - 1);
		*len = start > end ? (int64_t)(((uint64_t)(start - end) - 1) / (0 - (uint64_t)step) + 1)
		                   : 0;
	}
	*first = start;
}

/* ---- Pad ---- */

bool kiln_pad_mode_parse(const char *s, kiln_pad_mode *mode)
{
	static const char *const names[] = {"constant", "reflect", "edge", "wrap"};
	for (int i = 0; i < 4; i++)
		if (strcmp(s, names[i]) == 0) {
			*mode = (kiln_pad_mode)i;
			return true;
		}
	return false;
}

int64_t kiln_pad_map(kiln_pad_mode mode, int64_t c, int64_t len)
{
	switch (mode) {
	case KILN_PAD_EDGE: return c < 0 ? 0 : len - 1;
	case KILN_PAD_WRAP: return ((c % len) + len) % len;
	default: {
		if (len == 1)
			return 0;
		int64_t period = 2 * (len - 1);
		c = ((c % period) + period) % period;
		return c < len ? c : period - c;
	}
	}
}

/* ---- Resize ---- */

kiln_status kiln_resize_params_read(const kiln_node *n, kiln_resize_params *p, kiln_diag *d)
{
	const char *mode = kiln_node_string(n, "mode", "nearest");
	if (!strcmp(mode, "nearest"))
		p->mode = KILN_RESIZE_NEAREST;
	else if (!strcmp(mode, "linear"))
		p->mode = KILN_RESIZE_LINEAR;
	else if (!strcmp(mode, "cubic"))
		p->mode = KILN_RESIZE_CUBIC;
	else
		return kiln_diag_error(d, KILN_ERR_UNSUPPORTED, n, "mode '%s'", mode);
	p->coord = kiln_node_string(n, "coordinate_transformation_mode", "half_pixel");
	static const char *const coords[] = {"half_pixel", "half_pixel_symmetric", "pytorch_half_pixel",
	                                     "align_corners", "asymmetric", "tf_crop_and_resize"};
	bool known = false;
	for (size_t i = 0; i < sizeof coords / sizeof *coords; i++)
		known = known || !strcmp(p->coord, coords[i]);
	KILN_ENSURE(d, known, KILN_ERR_UNSUPPORTED, n, "coordinate_transformation_mode '%s'", p->coord);
	p->nearest = kiln_node_string(n, "nearest_mode", "round_prefer_floor");
	static const char *const nearests[] = {"round_prefer_floor", "round_prefer_ceil", "floor", "ceil"};
	known = false;
	for (size_t i = 0; i < sizeof nearests / sizeof *nearests; i++)
		known = known || !strcmp(p->nearest, nearests[i]);
	KILN_ENSURE(d, known, KILN_ERR_UNSUPPORTED, n, "nearest_mode '%s'", p->nearest);
	p->cubic_a = kiln_node_float(n, "cubic_coeff_a", -0.75f);
	p->exclude_outside = kiln_node_int(n, "exclude_outside", 0) != 0;
	p->antialias = kiln_node_int(n, "antialias", 0) != 0;
	KILN_ENSURE(d, !(p->antialias && p->mode == KILN_RESIZE_NEAREST), KILN_ERR_UNSUPPORTED, n,
	            "antialias with mode 'nearest'");
	return KILN_OK;
}

kiln_status kiln_resize_axes(const kiln_node *n, int rank, int *axes, int *na, double *scale,
                             double *roi_lo, double *roi_hi, kiln_diag *d)
{
	const int64_t *av;
	*na = kiln_node_ints(n, "axes", &av);
	if (*na == 0) {
		*na = rank;
		for (int i = 0; i < rank; i++)
			axes[i] = i;
	} else {
		KILN_ENSURE(d, *na <= rank, KILN_ERR_SHAPE, n, "%d axes for rank %d", *na, rank);
		for (int i = 0; i < *na; i++)
			KILN_ENSURE(d, kiln_axis_norm(av[i], rank, &axes[i]), KILN_ERR_SHAPE, n,
			            "axis %lld out of range for rank %d", (long long)av[i], rank);
	}
	for (int i = 0; i < rank; i++) {
		scale[i] = 1.0;
		roi_lo[i] = 0.0;
		roi_hi[i] = 1.0;
	}
	return KILN_OK;
}

kiln_status kiln_resize_sizes(const kiln_node *n, const kiln_type *xt, const int *axes, int na,
                              const int64_t *sizes, double *scale, kiln_diag *d)
{
	const char *policy = kiln_node_string(n, "keep_aspect_ratio_policy", "stretch");
	bool stretch = !strcmp(policy, "stretch"), not_larger = !strcmp(policy, "not_larger");
	KILN_ENSURE(d, stretch || not_larger || !strcmp(policy, "not_smaller"), KILN_ERR_UNSUPPORTED,
	            n, "keep_aspect_ratio_policy '%s'", policy);
	double keep = 0.0;
	for (int i = 0; i < na; i++) {
		double s = (double)sizes[i] / (double)xt->dims[axes[i]];
		scale[axes[i]] = s;
		if (i == 0 || (not_larger ? s < keep : s > keep))
			keep = s;
	}
	if (!stretch)
		for (int i = 0; i < na; i++)
			scale[axes[i]] = keep;
	return KILN_OK;
}

static double clamp01(double v) { return v < 0.0 ? 0.0 : v > 1.0 ? 1.0 : v; }

static double cubic_w(double x, double a)
{
	x = fabs(x);
	if (x <= 1.0)
		return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
	if (x < 2.0)
		return ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a;
	return 0.0;
}

/* Number of taps along an axis with this scale. */
static int tap_count(const kiln_resize_params *p, double scale)
{
	double s = scale < 1.0 ? scale : 1.0;
	if (p->mode == KILN_RESIZE_NEAREST || !p->antialias)
		return p->mode == KILN_RESIZE_CUBIC ? 4 : 2;
	if (p->mode == KILN_RESIZE_LINEAR)
		return 2 - 2 * (int)(floor(-1.0 / s) + 1.0);
	return 2 - 2 * (int)(floor(-2.0 / s) + 1.0);
}

/* Weights of the n taps left of and right of x, for ratio = x - x0 in (0, 1]
 * where x0 is the tap just left of x (tap t sits at x0 - n/2 + 1 + t). */
static void coeffs(const kiln_resize_params *p, double ratio, bool integer, double scale, int n,
                   double *w)
{
	if (p->mode == KILN_RESIZE_NEAREST) {
		bool right;
		if (integer || !strcmp(p->nearest, "ceil"))
			right = true;
		else if (!strcmp(p->nearest, "floor"))
			right = false;
		else if (!strcmp(p->nearest, "round_prefer_ceil"))
			right = ratio >= 0.5;
		else
			right = ratio > 0.5;
		w[0] = !right;
		w[1] = right;
		return;
	}
	if (!p->antialias) {
		if (p->mode == KILN_RESIZE_LINEAR) {
			w[0] = 1.0 - ratio;
			w[1] = ratio;
		} else {
			for (int t = 0; t < 4; t++)
				w[t] = cubic_w(t - 1 - ratio, p->cubic_a);
		}
		return;
	}
	/* Antialias widens the kernel by 1/scale when downsampling. */
	double s = scale < 1.0 ? scale : 1.0, sum = 0.0;
	int start = 1 - n / 2;
	for (int t = 0; t < n; t++) {
		double arg = (start + t - ratio) * s;
		w[t] = p->mode == KILN_RESIZE_LINEAR ? clamp01(1.0 - fabs(arg)) : cubic_w(arg, p->cubic_a);
		sum += w[t];
	}
	for (int t = 0; t < n; t++)
		w[t] /= sum;
}

/* Source coordinate of output index j; *extrap set for tf_crop_and_resize
 * coordinates outside the input. */
static double source_coord(const kiln_resize_params *p, const kiln_resize_axis *ax, int64_t j,
                           bool *extrap)
{
	int64_t in_len = ax->in_len;
	double y = (double)j, scale = ax->scale, out_w = scale * (double)in_len, x;
	const char *m = p->coord;
	*extrap = false;
	if (!strcmp(m, "align_corners")) {
		x = out_w == 1.0 ? 0.0 : y * (double)(in_len - 1) / (out_w - 1.0);
	} else if (!strcmp(m, "asymmetric")) {
		x = y / scale;
	} else if (!strcmp(m, "tf_crop_and_resize")) {
		double roi_start = ax->roi_start, roi_end = ax->roi_end;
		if (out_w == 1.0)
			x = (roi_end - roi_start) * (double)(in_len - 1) / 2.0;
		else
			x = y * (roi_end - roi_start) * (double)(in_len - 1) / (out_w - 1.0);
		x += roi_start * (double)(in_len - 1);
		*extrap = x < 0.0 || x > (double)(in_len - 1);
	} else if (!strcmp(m, "pytorch_half_pixel")) {
		x = out_w == 1.0 ? -0.5 : (y + 0.5) / scale - 0.5;
	} else if (!strcmp(m, "half_pixel_symmetric")) {
		double adjustment = (double)ax->out_len / out_w;
		double offset = (double)in_len / 2.0 * (1.0 - adjustment);
		x = offset + (y + 0.5) / scale - 0.5;
	} else {
		x = (y + 0.5) / scale - 0.5;
	}
	return x;
}

static bool is_close(double a, double b) { return fabs(a - b) <= 1e-9 * fmax(fabs(a), fabs(b)); }

void kiln_resize_axis_init(const kiln_resize_params *p, kiln_resize_axis *ax, int64_t in_len,
                           int64_t out_len, double scale, double roi_start, double roi_end,
                           bool has_roi)
{
	ax->in_len = in_len;
	ax->out_len = out_len;
	ax->scale = scale;
	ax->roi_start = roi_start;
	ax->roi_end = roi_end;
	ax->identity = is_close(scale, 1.0) && out_len == in_len &&
	               (!has_roi || (is_close(roi_start, 0.0) && is_close(roi_end, 1.0)));
	ax->n = ax->identity ? 1 : tap_count(p, scale);
}

bool kiln_resize_taps(const kiln_resize_params *p, const kiln_resize_axis *ax, int64_t j,
                      int64_t *idx, double *w)
{
	if (ax->identity) {
		idx[0] = j;
		w[0] = 1.0;
		return false;
	}
	bool extrap;
	double x = source_coord(p, ax, j, &extrap);
	double fx = floor(x);
	bool integer = x == fx;
	/* x0 is the tap strictly left of x, or x - 1 when x is a whole number. */
	int64_t x0 = integer ? (int64_t)fx - 1 : (int64_t)fx;
	double ratio = integer ? 1.0 : x - fx;
	int n = ax->n;
	int64_t in_len = ax->in_len;
	coeffs(p, ratio, integer, ax->scale, n, w);
	double sum = 0.0;
	for (int t = 0; t < n; t++) {
		int64_t i = x0 - n / 2 + 1 + t;
		if (p->exclude_outside && (i < 0 || i >= in_len))
			w[t] = 0.0;
		sum += w[t];
		idx[t] = i < 0 ? 0 : i >= in_len ? in_len - 1 : i;
	}
	if (p->exclude_outside && sum != 0.0)
		for (int t = 0; t < n; t++)
			w[t] /= sum;
	return extrap;
}

double kiln_resize_round(kiln_dtype dt, double v)
{
	if (kiln_dtype_is_float(dt))
		return v;
	double lo, hi;
	switch (dt) {
	case KILN_DT_I8: lo = -128.0, hi = 127.0; break;
	case KILN_DT_U8: lo = 0.0, hi = 255.0; break;
	case KILN_DT_I32: lo = -2147483648.0, hi = 2147483647.0; break;
	default: return nearbyint(v);
	}
	v = nearbyint(v);
	return v < lo ? lo : v > hi ? hi : v;
}
