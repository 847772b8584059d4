/* k_conv.c — Conv and ConvTranspose (ONNX opset 21), 1 to 3 spatial dims.
 *
 * Geometry (kernel, strides, dilations, pads, auto_pad, output sizes) comes
 * from kiln_window_resolve so the interpreter agrees with shape inference.
 * f32 runs as im2col + OpenBLAS sgemm per group (Conv) or sgemm + col2im
 * (ConvTranspose); other float dtypes run direct loops in double. Spatial
 * dims are padded to three (size 1, stride 1) so one loop nest serves all. */
#include "interp.h"

#include <cblas.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

typedef kiln_conv_geom geo;

/* The shared geometry plus what the interpreter adds: BLAS takes int
 * dimensions. */
static kiln_status geo_resolve(const kiln_node *n, const kiln_tensor *in, const kiln_tensor *out,
                               bool transpose, geo *g, kiln_diag *d)
{
	KILN_TRY(kiln_conv_geom_resolve(n, &in[0].type, &in[1].type, &out[0].type,
	                                in[2].data ? kiln_tensor_numel(&in[2]) : -1, transpose, g, d));
	int64_t big = g->os > g->is ? g->os : g->is;
	big = big > g->cg * g->ks ? big : g->cg * g->ks;
	big = big > g->mg * g->ks ? big : g->mg * g->ks;
	KILN_ENSURE(d, big <= INT_MAX, KILN_ERR_UNSUPPORTED, n, "a matrix dimension exceeds %d", INT_MAX);
	return KILN_OK;
}

/* Input offset (within one channel) of output position o and kernel
 * position k, or -1 when it falls in the padding. Conv direction. */
static int64_t tap(const geo *g, const int64_t *o, const int64_t *k)
{
	int64_t off = 0;
	for (int a = 0; a < 3; a++) {
		int64_t p = o[a] * g->s[a] + k[a] * g->dl[a] - g->pb[a];
		if (p < 0 || p >= g->in[a])
			return -1;
		off = off * g->in[a] + p;
	}
	return off;
}

/* Multi-index of flat position i over dims. */
static void unflat(int64_t i, const int64_t *dims, int64_t *idx)
{
	for (int a = 2; a >= 0; a--) {
		idx[a] = i % dims[a];
		i /= dims[a];
	}
}

/* col[(c * ks + k) * os + o] = x[c, tap(o, k)] (0 in the padding). */
static void im2col_f32(const geo *g, const float *x, float *col)
{
	for (int64_t c = 0; c < g->cg; c++) {
		for (int64_t k = 0; k < g->ks; k++) {
			int64_t ki[3], oi[3];
			unflat(k, g->k, ki);
			float *row = col + (c * g->ks + k) * g->os;
			for (int64_t o = 0; o < g->os; o++) {
				unflat(o, g->out, oi);
				int64_t p = tap(g, oi, ki);
				row[o] = p < 0 ? 0.0f : x[c * g->is + p];
			}
		}
	}
}

static kiln_status conv_f32(const kiln_node *n, const geo *g, const kiln_tensor *in, kiln_tensor *out,
                            kiln_diag *d)
{
	const float *x = in[0].data, *w = in[1].data, *b = in[2].data;
	float *y = out[0].data;
	bool direct = g->ks == 1 && g->is == g->os;
	for (int a = 0; a < 3; a++)
		direct = direct && g->s[a] == 1 && g->pb[a] == 0;
	int64_t rows = g->cg * g->ks;
	int64_t ncol = rows * g->os;
	float *col = NULL;
	if (!direct && !(col = malloc((size_t)(ncol > 0 ? ncol : 1) * sizeof *col)))
		return kiln_diag_error(d, KILN_ERR_OOM, n, "out of memory for im2col");
	for (int64_t nb = 0; nb < g->n; nb++) {
		for (int64_t gr = 0; gr < g->group; gr++) {
			const float *xg = x + (nb * g->c + gr * g->cg) * g->is;
			float *yg = y + (nb * g->m + gr * g->mg) * g->os;
			if (!direct)
				im2col_f32(g, xg, col);
			for (int64_t m = 0; m < g->mg; m++) {
				float bias = b ? b[gr * g->mg + m] : 0.0f;
				for (int64_t o = 0; o < g->os; o++)
					yg[m * g->os + o] = bias;
			}
			/* OpenBLAS rejects zero leading dimensions even for empty products. */
			if (g->mg > 0 && g->os > 0 && rows > 0)
				cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)g->mg, (int)g->os,
				            (int)rows, 1.0f, w + gr * g->mg * rows, (int)rows,
				            direct ? xg : col, (int)g->os, 1.0f, yg, (int)g->os);
		}
	}
	free(col);
	return KILN_OK;
}

/* Direct loops in double for f64, f16 and bf16. */
static void conv_generic(const geo *g, const double *x, const double *w, const double *b, double *y)
{
	for (int64_t nb = 0; nb < g->n; nb++) {
		for (int64_t m = 0; m < g->m; m++) {
			int64_t gr = m / g->mg;
			for (int64_t o = 0; o < g->os; o++) {
				int64_t oi[3], ki[3];
				unflat(o, g->out, oi);
				double acc = b ? b[m] : 0.0;
				for (int64_t c = 0; c < g->cg; c++) {
					const double *xc = x + (nb * g->c + gr * g->cg + c) * g->is;
					const double *wc = w + (m * g->cg + c) * g->ks;
					for (int64_t k = 0; k < g->ks; k++) {
						unflat(k, g->k, ki);
						int64_t p = tap(g, oi, ki);
						if (p >= 0)
							acc += xc[p] * wc[k];
					}
				}
				y[(nb * g->m + m) * g->os + o] = acc;
			}
		}
	}
}

/* Loads x, w and the optional bias as doubles, runs fn, stores y. */
static kiln_status run_generic(const kiln_node *n, const geo *g, const kiln_tensor *in,
                               kiln_tensor *out, kiln_diag *d,
                               void (*fn)(const geo *, const double *, const double *,
                                          const double *, double *))
{
	double *x = kiln_load_f64(&in[0]), *w = kiln_load_f64(&in[1]);
	double *b = in[2].data ? kiln_load_f64(&in[2]) : NULL;
	int64_t ny = kiln_tensor_numel(&out[0]);
	double *y = malloc((size_t)(ny ? ny : 1) * sizeof *y);
	kiln_status s = KILN_OK;
	if (!x || !w || (in[2].data && !b) || !y) {
		s = kiln_diag_error(d, KILN_ERR_OOM, n, "out of memory");
	} else {
		fn(g, x, w, b, y);
		kiln_store_f64(&out[0], y);
	}
	free(x);
	free(w);
	free(b);
	free(y);
	return s;
}

static kiln_status check_dtypes(const kiln_node *n, const kiln_tensor *in, const kiln_tensor *out,
                                kiln_diag *d)
{
	kiln_dtype dt = in[0].type.dtype;
	KILN_ENSURE(d, kiln_dtype_is_float(dt), KILN_ERR_UNSUPPORTED, n, "dtype %s (float types only)",
	            kiln_dtype_name(dt));
	bool same = in[1].type.dtype == dt && out[0].type.dtype == dt && (!in[2].data || in[2].type.dtype == dt);
	KILN_ENSURE(d, same, KILN_ERR_SHAPE, n, "X, W, B and Y must share one dtype");
	return KILN_OK;
}

/* X, W and B (data NULL when omitted) whatever the node's input count. */
static void conv_args(const kiln_node *n, const kiln_tensor *in, kiln_tensor *args)
{
	args[0] = in[0];
	args[1] = in[1];
	args[2] = n->n_inputs > 2 ? in[2] : (kiln_tensor){.data = NULL};
}

kiln_status kiln_interp_CONV(const kiln_node *n, const kiln_tensor *in, kiln_tensor *out, kiln_diag *d)
{
	kiln_tensor args[3];
	conv_args(n, in, args);
	KILN_TRY(check_dtypes(n, args, out, d));
	geo g;
	KILN_TRY(geo_resolve(n, args, out, false, &g, d));
	if (args[0].type.dtype == KILN_DT_F32)
		return conv_f32(n, &g, args, out, d);
	return run_generic(n, &g, args, out, d, conv_generic);
}

/* ConvTranspose scatters: y[m, o] += x[c, i] * w[c, m, k] where
 * o = i * stride + k * dilation - pad_begin (dropped outside the output). */
static int64_t scatter_tap(const geo *g, const int64_t *i, const int64_t *k)
{
	int64_t off = 0;
	for (int a = 0; a < 3; a++) {
		int64_t p = i[a] * g->s[a] + k[a] * g->dl[a] - g->pb[a];
		if (p < 0 || p >= g->out[a])
			return -1;
		off = off * g->out[a] + p;
	}
	return off;
}

static void conv_transpose_generic(const geo *g, const double *x, const double *w, const double *b,
                                   double *y)
{
	for (int64_t nb = 0; nb < g->n; nb++) {
		for (int64_t m = 0; m < g->m; m++)
			for (int64_t o = 0; o < g->os; o++)
				y[(nb * g->m + m) * g->os + o] = b ? b[m] : 0.0;
		for (int64_t c = 0; c < g->c; c++) {
			int64_t gr = c / g->cg;
			const double *xc = x + (nb * g->c + c) * g->is;
			for (int64_t m = 0; m < g->mg; m++) {
				const double *wc = w + (c * g->mg + m) * g->ks;
				double *ym = y + (nb * g->m + gr * g->mg + m) * g->os;
				for (int64_t i = 0; i < g->is; i++) {
					int64_t ii[3], ki[3];
					unflat(i, g->in, ii);
					for (int64_t k = 0; k < g->ks; k++) {
						unflat(k, g->k, ki);
						int64_t p = scatter_tap(g, ii, ki);
						if (p >= 0)
							ym[p] += xc[i] * wc[k];
					}
				}
			}
		}
	}
}

/* f32: col[(m * ks + k), i] = sum_c w[c, m, k] * x[c, i] by sgemm, then col2im. */
static kiln_status conv_transpose_f32(const kiln_node *n, const geo *g, const kiln_tensor *in,
                                      kiln_tensor *out, kiln_diag *d)
{
	const float *x = in[0].data, *w = in[1].data, *b = in[2].data;
	float *y = out[0].data;
	int64_t rows = g->mg * g->ks;
	int64_t ncol = rows * g->is;
	float *col = malloc((size_t)(ncol > 0 ? ncol : 1) * sizeof *col);
	if (!col)
		return kiln_diag_error(d, KILN_ERR_OOM, n, "out of memory for col2im");
	for (int64_t nb = 0; nb < g->n; nb++) {
		for (int64_t m = 0; m < g->m; m++)
			for (int64_t o = 0; o < g->os; o++)
				y[(nb * g->m + m) * g->os + o] = b ? b[m] : 0.0f;
		for (int64_t gr = 0; gr < g->group; gr++) {
			if (rows == 0 || g->is == 0 || g->cg == 0)
				continue;
			const float *xg = x + (nb * g->c + gr * g->cg) * g->is;
			cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)rows, (int)g->is, (int)g->cg,
			            1.0f, w + gr * g->cg * rows, (int)rows, xg, (int)g->is, 0.0f, col,
			            (int)g->is);
			for (int64_t m = 0; m < g->mg; m++) {
				float *ym = y + (nb * g->m + gr * g->mg + m) * g->os;
				for (int64_t k = 0; k < g->ks; k++) {
					int64_t ki[3], ii[3];
					unflat(k, g->k, ki);
					const float *row = col + (m * g->ks + k) * g->is;
					for (int64_t i = 0; i < g->is; i++) {
						unflat(i, g->in, ii);
						int64_t p = scatter_tap(g, ii, ki);
						if (p >= 0)
							ym[p] += row[i];
					}
				}
			}
		}
	}
	free(col);
	return KILN_OK;
}

kiln_status kiln_interp_CONV_TRANSPOSE(const kiln_node *n, const kiln_tensor *in, kiln_tensor *out,
                                       kiln_diag *d)
{
	kiln_tensor args[3];
	conv_args(n, in, args);
	KILN_TRY(check_dtypes(n, args, out, d));
	geo g;
	KILN_TRY(geo_resolve(n, args, out, true, &g, d));
	if (args[0].type.dtype == KILN_DT_F32)
		return conv_transpose_f32(n, &g, args, out, d);
	return run_generic(n, &g, args, out, d, conv_transpose_generic);
}
