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
 * outputs round half to even and saturate, like the reference. The
 * attributes and the taps come from ir/movement.c, shared with the
 * compiler. */
#include "interp.h"

#include <stdlib.h>

/* The taps of one axis: n per output index, flat [out * n + t]. */
typedef struct rs_axis {
	int n;
	int64_t *idx;
	double *w;
	bool *extrapolate; /* tf_crop_and_resize: x outside the input */
} rs_axis;

static kiln_status axis_taps(const kiln_resize_params *p, int64_t in_len, int64_t out_len,
                             double scale, double roi_start, double roi_end, bool has_roi,
                             rs_axis *ax)
{
	kiln_resize_axis geom;
	kiln_resize_axis_init(p, &geom, in_len, out_len, scale, roi_start, roi_end, has_roi);
	ax->n = geom.n;
	size_t cnt = (size_t)(out_len > 0 ? out_len : 1) * (size_t)ax->n;
	ax->idx = malloc(cnt * sizeof *ax->idx);
	ax->w = malloc(cnt * sizeof *ax->w);
	ax->extrapolate = calloc((size_t)(out_len > 0 ? out_len : 1), sizeof *ax->extrapolate);
	if (!ax->idx || !ax->w || !ax->extrapolate)
		return KILN_ERR_OOM;
	for (int64_t j = 0; j < out_len; j++)
		ax->extrapolate[j] = kiln_resize_taps(p, &geom, j, ax->idx + j * ax->n, ax->w + j * ax->n);
	return KILN_OK;
}

/* Per-axis scale and roi from the axes attribute and the roi, scales and
 * sizes inputs. */
static kiln_status read_scales(const kiln_node *n, const kiln_tensor *in, const kiln_type *xt,
                               double *scale, double *roi_lo, double *roi_hi, bool *has_roi,
                               kiln_diag *d)
{
	int axes[KILN_MAX_RANK], na;
	KILN_TRY(kiln_resize_axes(n, xt->rank, axes, &na, scale, roi_lo, roi_hi, d));
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
	int64_t sizes[KILN_MAX_RANK];
	for (int i = 0; i < na; i++)
		sizes[i] = kiln_tensor_get_i64(sz, i);
	return kiln_resize_sizes(n, xt, axes, na, sizes, scale, d);
}

kiln_status kiln_interp_RESIZE(const kiln_node *n, const kiln_tensor *in, kiln_tensor *out, kiln_diag *d)
{
	const kiln_type *xt = &in[0].type, *yt = &out[0].type;
	KILN_ENSURE(d, xt->rank == yt->rank, KILN_ERR_SHAPE, n, "output rank %d differs from input rank %d",
	            yt->rank, xt->rank);
	kiln_resize_params p;
	KILN_TRY(kiln_resize_params_read(n, &p, d));
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
		kiln_tensor_set_f64(&out[0], o, kiln_resize_round(yt->dtype, acc));
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
