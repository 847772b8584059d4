/* k_pool.c — MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool (ONNX
 * opset 21), 1 to 3 spatial dims, any numeric dtype (values pass through
 * double, which holds every int8/uint8/f16/bf16/f32 exactly).
 *
 * Window geometry comes from kiln_window_resolve. Window positions outside
 * the input never contribute a value. AveragePool's divisor counts the
 * positions inside the input, or with count_include_pad the positions inside
 * the explicitly padded input: the tail of a ceil_mode window beyond the
 * padding is never counted (as in the ONNX reference and onnxruntime). */
#include "interp.h"

#include <math.h>

typedef struct pgeo {
	int64_t n, c;
	int64_t in[3], out[3], k[3], s[3], dl[3], pb[3], pe[3];
	int64_t is, os, ks;
} pgeo;

static kiln_status pgeo_resolve(const kiln_node *n, const kiln_tensor *x, const kiln_tensor *y,
                                pgeo *g, kiln_window *w, kiln_diag *d)
{
	KILN_TRY(kiln_window_resolve(n, w, d));
	KILN_ENSURE(d, w->nspatial >= 1 && w->nspatial <= 3, KILN_ERR_UNSUPPORTED, n,
	            "%d spatial dims (1 to 3 supported)", w->nspatial);
	g->n = x->type.dims[0];
	g->c = x->type.dims[1];
	int off = 3 - w->nspatial;
	for (int i = 0; i < 3; i++) {
		bool real = i >= off;
		g->in[i] = real ? w->in[i - off] : 1;
		g->out[i] = real ? w->out[i - off] : 1;
		g->k[i] = real ? w->kernel[i - off] : 1;
		g->s[i] = real ? w->stride[i - off] : 1;
		g->dl[i] = real ? w->dilation[i - off] : 1;
		g->pb[i] = real ? w->pad_begin[i - off] : 0;
		g->pe[i] = real ? w->pad_end[i - off] : 0;
	}
	g->is = g->in[0] * g->in[1] * g->in[2];
	g->os = g->out[0] * g->out[1] * g->out[2];
	g->ks = g->k[0] * g->k[1] * g->k[2];
	KILN_ENSURE(d, kiln_tensor_numel(x) == g->n * g->c * g->is && kiln_tensor_numel(y) == g->n * g->c * g->os,
	            KILN_ERR_SHAPE, n, "input and output shapes disagree with the window");
	return KILN_OK;
}

static void unflat(int64_t i, const int64_t *dims, int64_t *idx)
{
	for (int a = 2; a >= 0; a--) {
		idx[a] = i % dims[a];
		i /= dims[a];
	}
}

/* Spatial position of output o, kernel tap k, along each axis. */
static void window_pos(const pgeo *g, const int64_t *o, const int64_t *k, int64_t *p)
{
	for (int a = 0; a < 3; a++)
		p[a] = o[a] * g->s[a] + k[a] * g->dl[a] - g->pb[a];
}

static bool inside(const pgeo *g, const int64_t *p)
{
	for (int a = 0; a < 3; a++)
		if (p[a] < 0 || p[a] >= g->in[a])
			return false;
	return true;
}

kiln_status kiln_interp_MAX_POOL(const kiln_node *n, const kiln_tensor *in, kiln_tensor *out,
                                 kiln_diag *d)
{
	pgeo g;
	kiln_window w;
	KILN_TRY(pgeo_resolve(n, &in[0], &out[0], &g, &w, d));
	bool col_major = kiln_node_int(n, "storage_order", 0) != 0;
	kiln_tensor *idx = n->n_outputs > 1 && out[1].data ? &out[1] : NULL;
	for (int64_t nc = 0; nc < g.n * g.c; nc++) {
		for (int64_t o = 0; o < g.os; o++) {
			int64_t oi[3], ki[3], p[3];
			unflat(o, g.out, oi);
			double best = -INFINITY;
			int64_t best_at = 0;
			bool any = false;
			for (int64_t k = 0; k < g.ks; k++) {
				unflat(k, g.k, ki);
				window_pos(&g, oi, ki, p);
				if (!inside(&g, p))
					continue;
				int64_t at = (p[0] * g.in[1] + p[1]) * g.in[2] + p[2];
				double v = kiln_tensor_get_f64(&in[0], nc * g.is + at);
				if (!any || v > best || (isnan(v) && !isnan(best))) {
					best = v;
					best_at = col_major ? p[2] * g.in[1] * g.in[0] + p[1] * g.in[0] + p[0] : at;
					any = true;
				}
			}
			kiln_tensor_set_f64(&out[0], nc * g.os + o, best);
			if (idx)
				kiln_tensor_set_i64(idx, nc * g.os + o, nc * g.is + best_at);
		}
	}
	return KILN_OK;
}

kiln_status kiln_interp_AVERAGE_POOL(const kiln_node *n, const kiln_tensor *in, kiln_tensor *out,
                                     kiln_diag *d)
{
	pgeo g;
	kiln_window w;
	KILN_TRY(pgeo_resolve(n, &in[0], &out[0], &g, &w, d));
	for (int64_t nc = 0; nc < g.n * g.c; nc++) {
		for (int64_t o = 0; o < g.os; o++) {
			int64_t oi[3], ki[3], p[3];
			unflat(o, g.out, oi);
			double sum = 0.0;
			int64_t count = 0;
			for (int64_t k = 0; k < g.ks; k++) {
				unflat(k, g.k, ki);
				window_pos(&g, oi, ki, p);
				if (inside(&g, p)) {
					sum += kiln_tensor_get_f64(&in[0], nc * g.is + (p[0] * g.in[1] + p[1]) * g.in[2] + p[2]);
					count++;
				} else if (w.count_include_pad) {
					bool in_pad = true;
					for (int a = 0; a < 3; a++)
						in_pad = in_pad && p[a] >= -g.pb[a] && p[a] < g.in[a] + g.pe[a];
					count += in_pad;
				}
			}
			kiln_tensor_set_f64(&out[0], nc * g.os + o, count ? sum / (double)count : NAN);
		}
	}
	return KILN_OK;
}

/* Global pools: one value per (batch, channel) over all spatial positions. */
static kiln_status global_pool(const kiln_node *n, const kiln_tensor *in, kiln_tensor *out,
                               bool max, kiln_diag *d)
{
	const kiln_type *xt = &in[0].type;
	KILN_ENSURE(d, xt->rank >= 2, KILN_ERR_SHAPE, n, "input has rank %d, expected at least 2", xt->rank);
	int64_t nc = xt->dims[0] * xt->dims[1];
	int64_t sp = nc ? kiln_type_numel(xt) / nc : 0;
	KILN_ENSURE(d, kiln_tensor_numel(&out[0]) == nc, KILN_ERR_SHAPE, n,
	            "output has %lld elements, expected %lld", (long long)kiln_tensor_numel(&out[0]),
	            (long long)nc);
	for (int64_t i = 0; i < nc; i++) {
		double acc = max ? -INFINITY : 0.0;
		for (int64_t j = 0; j < sp; j++) {
			double v = kiln_tensor_get_f64(&in[0], i * sp + j);
			if (!max)
				acc += v;
			else if (v > acc || isnan(v))
				acc = v;
			if (max && isnan(acc))
				break;
		}
		kiln_tensor_set_f64(&out[0], i, max ? acc : acc / (double)sp);
	}
	return KILN_OK;
}

kiln_status kiln_interp_GLOBAL_AVG_POOL(const kiln_node *n, const kiln_tensor *in, kiln_tensor *out,
                                        kiln_diag *d)
{
	return global_pool(n, in, out, false, d);
}

kiln_status kiln_interp_GLOBAL_MAX_POOL(const kiln_node *n, const kiln_tensor *in, kiln_tensor *out,
                                        kiln_diag *d)
{
	return global_pool(n, in, out, true, d);
}
