/* k_resize.c — Resize (ONNX opset 19+): modes nearest, linear and cubic,
 * every coordinate_transformation_mode, scales or sizes (with
 * keep_aspect_ratio_policy), the axes attribute, exclude_outside and
 * antialias, following the ONNX reference implementation exactly.
 *
 * Interpolation is separable: along each axis every output index j maps to
 * a source coordinate x and a few taps (source index, weight). An output
 * element is the sum over the cartesian product of its per-axis taps of the
 * product of their weights times the source element. Indices outside the
 * input clamp to the edge (the reference pads with edge values). Integer
 * outputs round half to even and saturate, like the reference. */
#include "interp.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef enum rs_mode { RS_NEAREST, RS_LINEAR, RS_CUBIC } rs_mode;

typedef struct rs_params {
	rs_mode mode;
	const char *coord;   /* coordinate_transformation_mode */
	const char *nearest; /* nearest_mode */
	double cubic_a;
	bool exclude_outside, antialias;
} rs_params;

/* The taps of one axis: n per output index, flat [out * n + t]. */
typedef struct rs_axis {
	int n;
	int64_t *idx;
	double *w;
	bool *extrapolate; /* tf_crop_and_resize: x outside the input */
} rs_axis;

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
static int tap_count(const rs_params *p, double scale)
{
	double s = scale < 1.0 ? scale : 1.0;
	if (p->mode == RS_NEAREST || !p->antialias)
		return p->mode == RS_CUBIC ? 4 : 2;
	if (p->mode == RS_LINEAR)
		return 2 - 2 * (int)(floor(-1.0 / s) + 1.0);
	return 2 - 2 * (int)(floor(-2.0 / s) + 1.0);
}

/* Weights of the n taps left of and right of x, for ratio = x - x0 in (0, 1]
 * where x0 is the tap just left of x (tap t sits at x0 - n/2 + 1 + t). */
static void coeffs(const rs_params *p, double ratio, bool integer, double scale, int n, double *w)
{
	if (p->mode == RS_NEAREST) {
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
		if (p->mode == RS_LINEAR) {
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
		w[t] = p->mode == RS_LINEAR ? clamp01(1.0 - fabs(arg)) : cubic_w(arg, p->cubic_a);
		sum += w[t];
	}
	for (int t = 0; t < n; t++)
		w[t] /= sum;
}

/* Source coordinate of output index j; *extrap set for tf_crop_and_resize
 * coordinates outside the input. */
static double source_coord(const rs_params *p, int64_t j, int64_t in_len, int64_t out_len, double scale,
                           double roi_start, double roi_end, bool *extrap)
{
	double y = (double)j, out_w = scale * (double)in_len, x;
	const char *m = p->coord;
	*extrap = false;
	if (!strcmp(m, "align_corners")) {
		x = out_w == 1.0 ? 0.0 : y * (double)(in_len - 1) / (out_w - 1.0);
	} else if (!strcmp(m, "asymmetric")) {
		x = y / scale;
	} else if (!strcmp(m, "tf_crop_and_resize")) {
		if (out_w == 1.0)
			x = (roi_end - roi_start) * (double)(in_len - 1) / 2.0;
		else
			x = y * (roi_end - roi_start) * (double)(in_len - 1) / (out_w - 1.0);
		x += roi_start * (double)(in_len - 1);
		*extrap = x < 0.0 || x > (double)(in_len - 1);
	} else if (!strcmp(m, "pytorch_half_pixel")) {
		x = out_w == 1.0 ? -0.5 : (y + 0.5) / scale - 0.5;
	} else if (!strcmp(m, "half_pixel_symmetric")) {
		double adjustment = (double)out_len / out_w;
		double offset = (double)in_len / 2.0 * (1.0 - adjustment);
		x = offset + (y + 0.5) / scale - 0.5;
	} else {
		x = (y + 0.5) / scale - 0.5;
	}
	return x;
}

static bool is_close(double a, double b) { return fabs(a - b) <= 1e-9 * fmax(fabs(a), fabs(b)); }

static kiln_status axis_taps(const rs_params *p, int64_t in_len, int64_t out_len, double scale,
                             double roi_start, double roi_end, bool has_roi, rs_axis *ax)
{
	bool identity = is_close(scale, 1.0) && out_len == in_len &&
	                (!has_roi || (is_close(roi_start, 0.0) && is_close(roi_end, 1.0)));
	ax->n = identity ? 1 : tap_count(p, scale);
	size_t cnt = (size_t)(out_len > 0 ? out_len : 1) * (size_t)ax->n;
	ax->idx = malloc(cnt * sizeof *ax->idx);
	ax->w = malloc(cnt * sizeof *ax->w);
	ax->extrapolate = calloc((size_t)(out_len > 0 ? out_len : 1), sizeof *ax->extrapolate);
	if (!ax->idx || !ax->w || !ax->extrapolate)
		return KILN_ERR_OOM;
	for (int64_t j = 0; j < out_len; j++) {
		int64_t *idx = ax->idx + j * ax->n;
		double *w = ax->w + j * ax->n;
		if (identity) {
			idx[0] = j;
			w[0] = 1.0;
			continue;
		}
		double x = source_coord(p, j, in_len, out_len, scale, roi_start, roi_end, &ax->extrapolate[j]);
		double fx = floor(x);
		bool integer = x == fx;
		/* x0 is the tap strictly left of x, or x - 1 when x is a whole number. */
		int64_t x0 = integer ? (int64_t)fx - 1 : (int64_t)fx;
		double ratio = integer ? 1.0 : x - fx;
		coeffs(p, ratio, integer, scale, ax->n, w);
		double sum = 0.0;
		for (int t = 0; t < ax->n; t++) {
			int64_t i = x0 - ax->n / 2 + 1 + t;
			if (p->exclude_outside && (i < 0 || i >= in_len))
				w[t] = 0.0;
			sum += w[t];
			idx[t] = i < 0 ? 0 : i >= in_len ? in_len - 1 : i;
		}
		if (p->exclude_outside && sum != 0.0)
			for (int t = 0; t < ax->n; t++)
				w[t] /= sum;
	}
	return KILN_OK;
}

static double saturate_int(kiln_dtype dt, double v)
{
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

static kiln_status read_params(const kiln_node *n, rs_params *p, kiln_diag *d)
{
	const char *mode = kiln_node_string(n, "mode", "nearest");
	if (!strcmp(mode, "nearest"))
		p->mode = RS_NEAREST;
	else if (!strcmp(mode, "linear"))
		p->mode = RS_LINEAR;
	else if (!strcmp(mode, "cubic"))
		p->mode = RS_CUBIC;
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
	KILN_ENSURE(d, !(p->antialias && p->mode == RS_NEAREST), KILN_ERR_UNSUPPORTED, n,
	            "antialias with mode 'nearest'");
	return KILN_OK;
}

/* Per-axis scale and roi from the axes attribute and the roi, scales and
 * sizes inputs. */
static kiln_status read_scales(const kiln_node *n, const kiln_tensor *in, const kiln_type *xt,
                               double *scale, double *roi_lo, double *roi_hi, bool *has_roi,
                               kiln_diag *d)
{
	int r = xt->rank;
	int axes[KILN_MAX_RANK];
	const int64_t *av;
	int na = kiln_node_ints(n, "axes", &av);
	if (na == 0) {
		na = r;
		for (int i = 0; i < r; i++)
			axes[i] = i;
	} else {
		KILN_ENSURE(d, na <= r, KILN_ERR_SHAPE, n, "%d axes for rank %d", na, r);
		for (int i = 0; i < na; i++)
			KILN_ENSURE(d, kiln_axis_norm(av[i], r, &axes[i]), KILN_ERR_SHAPE, n,
			            "axis %lld out of range for rank %d", (long long)av[i], r);
	}
	for (int i = 0; i < r; i++) {
		scale[i] = 1.0;
		roi_lo[i] = 0.0;
		roi_hi[i] = 1.0;
	}
	const kiln_tensor *roi = n->n_inputs > 1 && in[1].data && kiln_tensor_numel(&in[1]) ? &in[1] : NULL;
	const kiln_tensor *sc = n->n_inputs > 2 && in[2].data && kiln_tensor_numel(&in[2]) ? &in[2] : NULL;
	const kiln_tensor *sz = n->n_inputs > 3 && in[3].data && kiln_tensor_numel(&in[3]) ? &in[3] : NULL;
	*has_roi = roi != NULL;
	if (roi) {
		KILN_ENSURE(d, kiln_tensor_numel(roi) == 2 * na, KILN_ERR_SHAPE, n,
		            "roi has %lld elements, expected %d", (long long)kiln_tensor_numel(roi), 2 * na);
		for (int i = 0; i < na; i++) {
			roi_lo[axes[i]] = kiln_tensor_get_f64(roi, i);
			roi_hi[axes[i]] = kiln_tensor_get_f64(roi, na + i);
		}
	}
	KILN_ENSURE(d, sc || sz, KILN_ERR_INVALID_MODEL, n, "neither scales nor sizes is given");
	const kiln_tensor *given = sc ? sc : sz;
	KILN_ENSURE(d, kiln_tensor_numel(given) == na, KILN_ERR_SHAPE, n,
	            "%s has %lld elements, expected %d", sc ? "scales" : "sizes",
	            (long long)kiln_tensor_numel(given), na);
	if (sc) {
		for (int i = 0; i < na; i++)
			scale[axes[i]] = kiln_tensor_get_f64(sc, i);
		return KILN_OK;
	}
	const char *policy = kiln_node_string(n, "keep_aspect_ratio_policy", "stretch");
	bool stretch = !strcmp(policy, "stretch"), not_larger = !strcmp(policy, "not_larger");
	KILN_ENSURE(d, stretch || not_larger || !strcmp(policy, "not_smaller"), KILN_ERR_UNSUPPORTED, n,
	            "keep_aspect_ratio_policy '%s'", policy);
	double keep = 0.0;
	for (int i = 0; i < na; i++) {
		double s = (double)kiln_tensor_get_i64(sz, i) / (double)xt->dims[axes[i]];
		scale[axes[i]] = s;
		if (i == 0 || (not_larger ? s < keep : s > keep))
			keep = s;
	}
	if (!stretch)
		for (int i = 0; i < na; i++)
			scale[axes[i]] = keep;
	return KILN_OK;
}

kiln_status kiln_interp_RESIZE(const kiln_node *n, const kiln_tensor *in, kiln_tensor *out, kiln_diag *d)
{
	const kiln_type *xt = &in[0].type, *yt = &out[0].type;
	KILN_ENSURE(d, xt->rank == yt->rank, KILN_ERR_SHAPE, n, "output rank %d differs from input rank %d",
	            yt->rank, xt->rank);
	rs_params p;
	KILN_TRY(read_params(n, &p, d));
	double scale[KILN_MAX_RANK], roi_lo[KILN_MAX_RANK], roi_hi[KILN_MAX_RANK];
	bool has_roi;
	KILN_TRY(read_scales(n, in, xt, scale, roi_lo, roi_hi, &has_roi, d));
	int r = xt->rank;
	for (int a = 0; a < r; a++)
		KILN_ENSURE(d, xt->dims[a] > 0 || yt->dims[a] == 0, KILN_ERR_SHAPE, n,
		            "cannot resize an empty axis %d to %lld", a, (long long)yt->dims[a]);
	rs_axis axes[KILN_MAX_RANK] = {{0}};
	kiln_status s = KILN_OK;
	for (int a = 0; a < r && s == KILN_OK; a++)
		s = axis_taps(&p, xt->dims[a], yt->dims[a], scale[a], roi_lo[a], roi_hi[a], has_roi, &axes[a]);
	if (s != KILN_OK) {
		s = kiln_diag_error(d, s, n, "out of memory");
		goto done;
	}
	int64_t xs[KILN_MAX_RANK], yidx[KILN_MAX_RANK] = {0};
	kiln_strides(xt, xs);
	double extrap = kiln_node_float(n, "extrapolation_value", 0.0f);
	bool is_int = !kiln_dtype_is_float(yt->dtype);
	int64_t ny = kiln_type_numel(yt);
	for (int64_t o = 0; o < ny; o++) {
		bool outside = false;
		for (int a = 0; a < r; a++)
			outside = outside || axes[a].extrapolate[yidx[a]];
		double acc = 0.0;
		if (outside) {
			acc = extrap;
		} else {
			/* Odometer over the cartesian product of the per-axis taps. */
			int t[KILN_MAX_RANK] = {0};
			for (;;) {
				double w = 1.0;
				int64_t off = 0;
				for (int a = 0; a < r; a++) {
					int64_t k = yidx[a] * axes[a].n + t[a];
					w *= axes[a].w[k];
					off += axes[a].idx[k] * xs[a];
				}
				if (w != 0.0)
					acc += w * kiln_tensor_get_f64(&in[0], off);
				int a = r - 1;
				while (a >= 0 && ++t[a] == axes[a].n)
					t[a--] = 0;
				if (a < 0)
					break;
			}
		}
		kiln_tensor_set_f64(&out[0], o, is_int ? saturate_int(yt->dtype, acc) : acc);
		for (int a = r - 1; a >= 0; a--) {
			if (++yidx[a] < yt->dims[a])
				break;
			yidx[a] = 0;
		}
	}
done:
	for (int a = 0; a < r; a++) {
		free(axes[a].idx);
		free(axes[a].w);
		free(axes[a].extrapolate);
	}
	return s;
}
