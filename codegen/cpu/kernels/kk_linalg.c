/* kk_linalg.c — Gemm, MatMul, Conv and ConvTranspose kernels.
 *
 * f32 runs on one GEMM core: operands packed into micro-panels (at compile
 * time for constants, into per-thread scratch otherwise; a convolution's
 * input is packed straight from the image as im2col), cache blocks of
 * KC x NC (B) and MC x KC (A), and an MR x NR register-blocked micro-kernel
 * of vector FMAs. The epilogue (alpha, beta * C, per-row bias, activation)
 * is applied when the last K block of a tile is written. Depthwise
 * convolution has its own direct kernel; ConvTranspose is GEMM to columns
 * and col2im. Other dtypes run plain loops that accumulate like the
 * interpreter. Parameter layout: kk_params_linalg.h. */
#include "kk.h"

#define KK_MR KK_GEMM_MR(KK_VL)
#define KK_NR KK_GEMM_NR(KK_VL)
#define KK_NV (KK_NR / KK_VL)
#define KK_LA_MAX_BATCH 8

static inline int64_t la_min(int64_t a, int64_t b) { return a < b ? a : b; }
static inline int64_t la_cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* x in every lane; x - 0 (unlike 0 + x) is exact for -0, so it folds away. */
static inline kk_vf la_splat(float x)
{
	return x - (kk_vf){0};
}

/* ---- parameters ---------------------------------------------------------- */

typedef struct la_geo {
	int64_t n, c, m, group, cg, mg;
	int64_t in[3], out[3], k[3], s[3], dl[3], pb[3];
	int64_t ks, is, os;
} la_geo;

typedef struct la_gemm {
	int64_t m, n, k, mc, kc, nc;
	int a_mode, b_mode, act, dtype, kind;
	int64_t a_rs, a_cs, b_rs, b_cs, y_rs, c_rs, c_cs;
	double alpha, beta, lo, hi;
	const void *a, *b, *c, *bias;
	void *y;
	int rank;
	int64_t bd[KK_LA_MAX_BATCH][KK_LA_BD_COUNT];
	int64_t nbatch;
	la_geo geo;
	int64_t mpad, npad;
	/* run-time partition (gemm_run) */
	int64_t n_ic, n_jc, split, a_scratch;
} la_gemm;

static const void *slot(void *const *t, int64_t i)
{
	return i < 0 ? NULL : t[i];
}

static void la_parse(la_gemm *g, const int64_t *ip, const double *fp, void *const *t)
{
	g->dtype = (int)ip[KK_LA_DTYPE];
	g->kind = (int)ip[KK_LA_KIND];
	g->m = ip[KK_LA_M];
	g->n = ip[KK_LA_N];
	g->k = ip[KK_LA_K];
	g->mc = ip[KK_LA_MC];
	g->kc = ip[KK_LA_KC];
	g->nc = ip[KK_LA_NC];
	g->a_mode = (int)ip[KK_LA_A_MODE];
	g->a_rs = ip[KK_LA_A_RS];
	g->a_cs = ip[KK_LA_A_CS];
	g->b_mode = (int)ip[KK_LA_B_MODE];
	g->b_rs = ip[KK_LA_B_RS];
	g->b_cs = ip[KK_LA_B_CS];
	g->y_rs = ip[KK_LA_Y_RS];
	g->c_rs = ip[KK_LA_C_RS];
	g->c_cs = ip[KK_LA_C_CS];
	g->act = (int)ip[KK_LA_ACT];
	g->alpha = fp[KK_LA_FP_ALPHA];
	g->beta = fp[KK_LA_FP_BETA];
	g->lo = fp[KK_LA_FP_LO];
	g->hi = fp[KK_LA_FP_HI];
	g->a = slot(t, ip[KK_LA_T_A]);
	g->b = slot(t, ip[KK_LA_T_B]);
	g->c = slot(t, ip[KK_LA_T_C]);
	g->bias = slot(t, ip[KK_LA_T_BIAS]);
	g->y = (void *)slot(t, ip[KK_LA_T_Y]);
	la_geo *q = &g->geo;
	q->n = ip[KK_LA_CONV_N];
	q->c = ip[KK_LA_CONV_C];
	q->m = ip[KK_LA_CONV_M];
	q->group = ip[KK_LA_CONV_GROUP];
	q->cg = q->group ? q->c / q->group : 0;
	q->mg = q->group ? q->m / q->group : 0;
	for (int a = 0; a < 3; a++) {
		q->in[a] = ip[KK_LA_IN + a];
		q->out[a] = ip[KK_LA_OUT + a];
		q->k[a] = ip[KK_LA_KER + a];
		q->s[a] = ip[KK_LA_STRIDE + a];
		q->dl[a] = ip[KK_LA_DIL + a];
		q->pb[a] = ip[KK_LA_PAD + a];
	}
	q->ks = q->k[0] * q->k[1] * q->k[2];
	q->is = q->in[0] * q->in[1] * q->in[2];
	q->os = q->out[0] * q->out[1] * q->out[2];
	g->rank = (int)ip[KK_LA_BATCH_RANK];
	g->nbatch = 1;
	for (int d = 0; d < g->rank; d++) {
		for (int f = 0; f < KK_LA_BD_COUNT; f++)
			g->bd[d][f] = ip[KK_LA_BATCH + d * KK_LA_BD_COUNT + f];
		g->nbatch *= g->bd[d][KK_LA_BD_SIZE];
	}
	g->mpad = la_cdiv(g->m, KK_MR) * KK_MR;
	g->npad = la_cdiv(g->n, KK_NR) * KK_NR;
}

/* Element offsets of batch bi in A, B, Y and the bias. */
static void batch_offsets(const la_gemm *g, int64_t bi, int64_t off[4])
{
	off[0] = off[1] = off[2] = off[3] = 0;
	for (int d = g->rank - 1; d >= 0; d--) {
		int64_t sz = g->bd[d][KK_LA_BD_SIZE], x = bi % sz;
		bi /= sz;
		for (int q = 0; q < 4; q++)
			off[q] += x * g->bd[d][KK_LA_BD_A + q];
	}
}

/* ---- f32 GEMM: packing --------------------------------------------------- */

/* Rows [i0, i0+mc) and depth [p0, p0+kc) of a strided A as MR-row panels. */
static void pack_a(const la_gemm *g, const float *a, int64_t i0, int64_t mc, int64_t p0,
                   int64_t kc, float *dst)
{
	for (int64_t ip = 0; ip < mc; ip += KK_MR) {
		int64_t rows = la_min(KK_MR, mc - ip);
		float *d = dst + ip * kc;
		const float *src = a + (i0 + ip) * g->a_rs + p0 * g->a_cs;
		for (int64_t p = 0; p < kc; p++) {
			const float *s = src + p * g->a_cs;
			for (int64_t i = 0; i < rows; i++)
				d[p * KK_MR + i] = s[i * g->a_rs];
			for (int64_t i = rows; i < KK_MR; i++)
				d[p * KK_MR + i] = 0.0f;
		}
	}
}

/* Depth [p0, p0+kc) and columns [j0, j0+nc) of a strided B as NR-column panels. */
static void pack_b(const la_gemm *g, const float *b, int64_t p0, int64_t kc, int64_t j0,
                   int64_t nc, float *dst)
{
	for (int64_t jp = 0; jp < nc; jp += KK_NR) {
		int64_t cols = la_min(KK_NR, nc - jp);
		float *d = dst + jp * kc;
		const float *src = b + p0 * g->b_rs + (j0 + jp) * g->b_cs;
		if (g->b_cs == 1 && cols == KK_NR) {
			for (int64_t p = 0; p < kc; p++)
				for (int v = 0; v < KK_NV; v++)
					kk_store(d + p * KK_NR + v * KK_VL, kk_load(src + p * g->b_rs + v * KK_VL));
			continue;
		}
		for (int64_t p = 0; p < kc; p++) {
			for (int64_t j = 0; j < cols; j++)
				d[p * KK_NR + j] = src[p * g->b_rs + j * g->b_cs];
			for (int64_t j = cols; j < KK_NR; j++)
				d[p * KK_NR + j] = 0.0f;
		}
	}
}

/* The same block of B = im2col(x): B[p, j] with p = (channel, kernel tap)
 * and j the flat output position, 0 in the padding. x is the group's first
 * input channel. */
static void pack_b_im2col(const la_gemm *g, const float *x, int64_t p0, int64_t kc, int64_t j0,
                          int64_t nc, float *dst)
{
	const la_geo *q = &g->geo;
	int64_t ncp = la_cdiv(nc, KK_NR) * KK_NR;
	for (int64_t p = 0; p < kc; p++) {
		int64_t kk = (p0 + p) % q->ks, c = (p0 + p) / q->ks;
		int64_t kd = kk / (q->k[1] * q->k[2]), kh = kk / q->k[2] % q->k[1], kw = kk % q->k[2];
		const float *xc = x + c * q->is;
		int64_t ow = j0 % q->out[2], oh = j0 / q->out[2] % q->out[1];
		int64_t od = j0 / (q->out[1] * q->out[2]);
		int64_t jj = 0;
		while (jj < nc) {
			int64_t run = la_min(q->out[2] - ow, nc - jj);
			int64_t id = od * q->s[0] + kd * q->dl[0] - q->pb[0];
			int64_t ih = oh * q->s[1] + kh * q->dl[1] - q->pb[1];
			int rowok = id >= 0 && id < q->in[0] && ih >= 0 && ih < q->in[1];
			const float *row = xc + (id * q->in[1] + ih) * q->in[2];
			int64_t iw0 = ow * q->s[2] + kw * q->dl[2] - q->pb[2];
			/* split the run at panel boundaries: inside one, j is contiguous */
			for (int64_t r = 0; r < run;) {
				int64_t j = jj + r, len = la_min(run - r, KK_NR - j % KK_NR);
				float *o = dst + j / KK_NR * kc * KK_NR + p * KK_NR + j % KK_NR;
				int64_t iw = iw0 + r * q->s[2];
				if (!rowok) {
					for (int64_t e = 0; e < len; e++)
						o[e] = 0.0f;
				} else if (q->s[2] == 1) {
					int64_t lo = la_min(len, iw < 0 ? -iw : 0);
					int64_t hi = la_min(len, q->in[2] - iw);
					hi = hi < lo ? lo : hi;
					for (int64_t e = 0; e < lo; e++)
						o[e] = 0.0f;
					if (hi > lo)
						memcpy(o + lo, row + iw + lo, (size_t)(hi - lo) * sizeof(float));
					for (int64_t e = hi; e < len; e++)
						o[e] = 0.0f;
				} else {
					for (int64_t e = 0; e < len; e++, iw += q->s[2])
						o[e] = iw >= 0 && iw < q->in[2] ? row[iw] : 0.0f;
				}
				r += len;
			}
			jj += run;
			ow += run;
			if (ow == q->out[2]) {
				ow = 0;
				if (++oh == q->out[1]) {
					oh = 0;
					od++;
				}
			}
		}
		for (; jj < ncp; jj++)
			dst[jj / KK_NR * kc * KK_NR + p * KK_NR + jj % KK_NR] = 0.0f;
	}
}

/* ---- f32 GEMM: micro-kernel ---------------------------------------------- */

/* out[i*NV + v] = sum_p a[p*MR + i] * b[p*NR + v*VL ..] for i < mr, v < nv.
 * Inlined with constant mr/nv so the accumulators live in registers. */
static inline __attribute__((always_inline)) void ukr_body(int mr, int nv, int64_t kc,
                                                          const float *restrict a,
                                                          const float *restrict b,
                                                          kk_vf *restrict out)
{
	kk_vf acc[KK_MR][KK_NV];
#pragma GCC unroll 16
	for (int i = 0; i < mr; i++)
#pragma GCC unroll 4
		for (int v = 0; v < nv; v++)
			acc[i][v] = (kk_vf){0};
	for (int64_t p = 0; p < kc; p++) {
		kk_vf bv[KK_NV];
#pragma GCC unroll 4
		for (int v = 0; v < nv; v++)
			bv[v] = kk_load(b + p * KK_NR + v * KK_VL);
#pragma GCC unroll 16
		for (int i = 0; i < mr; i++) {
			kk_vf av = la_splat(a[p * KK_MR + i]);
#pragma GCC unroll 4
			for (int v = 0; v < nv; v++)
				acc[i][v] += av * bv[v];
		}
	}
#pragma GCC unroll 16
	for (int i = 0; i < mr; i++)
#pragma GCC unroll 4
		for (int v = 0; v < nv; v++)
			out[i * KK_NV + v] = acc[i][v];
}

typedef void (*ukr_fn)(int64_t kc, const float *a, const float *b, kk_vf *out);

#define KK_UKR(R, V)                                                                  \
	static void ukr_##R##_##V(int64_t kc, const float *a, const float *b, kk_vf *out) \
	{                                                                                 \
		ukr_body(R, V, kc, a, b, out);                                                \
	}
#define KK_UKR_ROW(R) KK_UKR(R, 1) KK_UKR(R, 2)
#define KK_UKR_ENT(R) {ukr_##R##_1, ukr_##R##_2},

KK_UKR_ROW(1)
KK_UKR_ROW(2)
KK_UKR_ROW(3)
KK_UKR_ROW(4)
KK_UKR_ROW(5)
KK_UKR_ROW(6)
#if KK_MR > 6
KK_UKR_ROW(7)
KK_UKR_ROW(8)
KK_UKR_ROW(9)
KK_UKR_ROW(10)
KK_UKR_ROW(11)
KK_UKR_ROW(12)
#endif

_Static_assert(KK_NV == 2 && (KK_MR == 6 || KK_MR == 12), "micro-kernel table shape");

/* ukr_tab[mr - 1][nv - 1] */
static const ukr_fn ukr_tab[KK_MR][KK_NV] = {
	KK_UKR_ENT(1) KK_UKR_ENT(2) KK_UKR_ENT(3) KK_UKR_ENT(4) KK_UKR_ENT(5) KK_UKR_ENT(6)
#if KK_MR > 6
	KK_UKR_ENT(7) KK_UKR_ENT(8) KK_UKR_ENT(9) KK_UKR_ENT(10) KK_UKR_ENT(11) KK_UKR_ENT(12)
#endif
};

/* ---- f32 GEMM: epilogue and driver --------------------------------------- */

static inline kk_vf act_v(const la_gemm *g, kk_vf x)
{
	if (g->act == KK_LA_ACT_RELU)
		return kk_vmax(x, (kk_vf){0});
	if (g->act == KK_LA_ACT_CLIP)
		return kk_vmin(kk_vmax(x, kk_splat((float)g->lo)), kk_splat((float)g->hi));
	return x;
}

static inline float act_s(const la_gemm *g, float x)
{
	if (g->act == KK_LA_ACT_RELU)
		return x > 0.0f ? x : 0.0f;
	if (g->act == KK_LA_ACT_CLIP) {
		x = x > (float)g->lo ? x : (float)g->lo;
		return x < (float)g->hi ? x : (float)g->hi;
	}
	return x;
}

/* Writes an mr x nr tile at (i0, j0): the raw sum for a first K block,
 * adds the previous blocks' sum after it, and applies the epilogue on the
 * last block. */
static void tile_store(const la_gemm *g, float *y, const float *bias, const kk_vf *acc,
                       int64_t i0, int64_t j0, int mr, int64_t nr, int first, int last)
{
	const float *c = g->c;
	kk_vf alpha = kk_splat((float)g->alpha), beta = kk_splat((float)g->beta);
	for (int i = 0; i < mr; i++) {
		float *yr = y + (i0 + i) * g->y_rs + j0;
		kk_vf rb = kk_splat(bias ? bias[i0 + i] : 0.0f);
		const float *cr = c ? c + (i0 + i) * g->c_rs + j0 * g->c_cs : NULL;
		for (int v = 0; v < KK_NV; v++) {
			int64_t jn = nr - v * KK_VL;
			if (jn <= 0)
				break;
			int full = jn >= KK_VL;
			float *yp = yr + v * KK_VL;
			kk_vf x = acc[i * KK_NV + v];
			if (!first)
				x += full ? kk_load(yp) : kk_load_n(yp, jn);
			if (last) {
				x = x * alpha + rb;
				if (cr) {
					kk_vf cv = !g->c_cs ? kk_splat(cr[0])
					           : full   ? kk_load(cr + v * KK_VL)
					                    : kk_load_n(cr + v * KK_VL, jn);
					x += beta * cv;
				}
				x = act_v(g, x);
			}
			if (full)
				kk_store(yp, x);
			else
				kk_store_n(yp, x, jn);
		}
	}
}

static void gemm_task(void *arg, int64_t begin, int64_t end, void *scratch)
{
	const la_gemm *g = arg;
	float *abuf = scratch;
	float *bbuf = abuf + g->a_scratch;
	for (int64_t t = begin; t < end; t++) {
		int64_t part = t % g->split, rest = t / g->split;
		int64_t jc = rest % g->n_jc, bi = rest / g->n_jc;
		int64_t ib0 = g->n_ic * part / g->split, ib1 = g->n_ic * (part + 1) / g->split;
		int64_t off[4];
		batch_offsets(g, bi, off);
		const float *a = (const float *)g->a + off[0], *b = (const float *)g->b + off[1];
		float *y = (float *)g->y + off[2];
		const float *bias = g->bias ? (const float *)g->bias + off[3] : NULL;
		int64_t j0 = jc * g->nc, nc = la_min(g->nc, g->n - j0);
		for (int64_t k0 = 0; k0 < g->k && ib0 < ib1; k0 += g->kc) {
			int64_t kc = la_min(g->kc, g->k - k0);
			const float *bp = bbuf;
			if (g->b_mode == KK_LA_OP_PACKED)
				bp = b + k0 * g->npad + j0 * kc;
			else if (g->b_mode == KK_LA_OP_IM2COL)
				pack_b_im2col(g, b, k0, kc, j0, nc, bbuf);
			else
				pack_b(g, b, k0, kc, j0, nc, bbuf);
			int first = k0 == 0, last = k0 + kc >= g->k;
			for (int64_t ib = ib0; ib < ib1; ib++) {
				int64_t i0 = ib * g->mc, mc = la_min(g->mc, g->m - i0);
				const float *ap = abuf;
				if (g->a_mode == KK_LA_OP_PACKED)
					ap = a + k0 * g->mpad + i0 * kc;
				else
					pack_a(g, a, i0, mc, k0, kc, abuf);
				for (int64_t jr = 0; jr < nc; jr += KK_NR) {
					int64_t nr = la_min(KK_NR, nc - jr);
					int nv = (int)la_cdiv(nr, KK_VL);
					for (int64_t ir = 0; ir < mc; ir += KK_MR) {
						int mr = (int)la_min(KK_MR, mc - ir);
						kk_vf acc[KK_MR * KK_NV];
						ukr_tab[mr - 1][nv - 1](kc, ap + ir * kc, bp + jr * kc, acc);
						tile_store(g, y, bias, acc, i0 + ir, j0 + jr, mr, nr, first, last);
					}
				}
			}
		}
	}
}

/* K == 0: Y is the epilogue of zero. */
static void gemm_empty_k(const la_gemm *g)
{
	for (int64_t bi = 0; bi < g->nbatch; bi++) {
		int64_t off[4];
		batch_offsets(g, bi, off);
		float *y = (float *)g->y + off[2];
		const float *bias = g->bias ? (const float *)g->bias + off[3] : NULL;
		const float *c = g->c;
		for (int64_t i = 0; i < g->m; i++)
			for (int64_t j = 0; j < g->n; j++) {
				float x = bias ? bias[i] : 0.0f;
				if (c)
					x += (float)g->beta * c[i * g->c_rs + j * g->c_cs];
				y[i * g->y_rs + j] = act_s(g, x);
			}
	}
}

/* Splits the problem into tasks (batch x N blocks x M chunks) so that every
 * thread gets work, N first: B blocks are the costlier to repack. */
static void gemm_run(la_gemm *g, const kiln_abi_host *h)
{
	if (g->m == 0 || g->n == 0 || g->nbatch == 0)
		return;
	if (g->k == 0) {
		gemm_empty_k(g);
		return;
	}
	int64_t thr = h->n_threads > 0 ? h->n_threads : 1;
	int64_t max_jc = la_cdiv(g->n, KK_NR);
	int64_t n_jc = la_cdiv(g->n, g->nc);
	while ((g->nbatch * n_jc) % thr && n_jc < max_jc && n_jc < thr * 2)
		n_jc++;
	g->nc = la_cdiv(la_cdiv(g->n, n_jc), KK_NR) * KK_NR;
	g->n_jc = la_cdiv(g->n, g->nc);
	g->n_ic = la_cdiv(g->m, g->mc);
	int64_t outer = g->nbatch * g->n_jc;
	g->split = outer >= thr ? 1 : la_min(g->n_ic, la_cdiv(thr, outer));
	g->a_scratch = g->a_mode == KK_LA_OP_PACKED ? 0 : la_cdiv(g->mc, KK_MR) * KK_MR * g->kc;
	kk_parallel(h, outer * g->split, gemm_task, g);
}

/* Gemm, MatMul and Conv (1x1 direct or im2col) in f32. */
KK_KERNEL(kk_gemm_f32)
{
	la_gemm g;
	la_parse(&g, ip, fp, t);
	gemm_run(&g, h);
}

/* ---- f32 depthwise convolution ------------------------------------------- */

static void dw_task(void *arg, int64_t begin, int64_t end, void *scratch)
{
	const la_gemm *g = arg;
	const la_geo *q = &g->geo;
	(void)scratch;
	for (int64_t pl = begin; pl < end; pl++) {
		int64_t m = pl % q->m, nb = pl / q->m;
		const float *x = (const float *)g->b + (nb * q->c + m / q->mg) * q->is;
		const float *w = (const float *)g->a + m * q->ks;
		float *y = (float *)g->y + pl * q->os;
		float bias = g->bias ? ((const float *)g->bias)[m] : 0.0f;
		for (int64_t od = 0; od < q->out[0]; od++)
			for (int64_t oh = 0; oh < q->out[1]; oh++) {
				float *yr = y + (od * q->out[1] + oh) * q->out[2];
				for (int64_t ow = 0; ow < q->out[2]; ow++)
					yr[ow] = bias;
				for (int64_t kd = 0; kd < q->k[0]; kd++) {
					int64_t id = od * q->s[0] + kd * q->dl[0] - q->pb[0];
					if (id < 0 || id >= q->in[0])
						continue;
					for (int64_t kh = 0; kh < q->k[1]; kh++) {
						int64_t ih = oh * q->s[1] + kh * q->dl[1] - q->pb[1];
						if (ih < 0 || ih >= q->in[1])
							continue;
						const float *xr = x + (id * q->in[1] + ih) * q->in[2];
						const float *wr = w + (kd * q->k[1] + kh) * q->k[2];
						for (int64_t kw = 0; kw < q->k[2]; kw++) {
							/* ow whose input column ow*s + off lies in [0, in) */
							int64_t off = kw * q->dl[2] - q->pb[2], s = q->s[2];
							int64_t lo = off >= 0 ? 0 : la_cdiv(-off, s);
							int64_t hi = q->in[2] - 1 - off < 0 ? 0 : (q->in[2] - 1 - off) / s + 1;
							hi = la_min(hi, q->out[2]);
							float wv = wr[kw];
							int64_t ow = lo;
							if (s == 1) {
								kk_vf wvv = kk_splat(wv);
								for (; ow + KK_VL <= hi; ow += KK_VL)
									kk_store(yr + ow, kk_load(yr + ow) + wvv * kk_load(xr + ow + off));
							}
							for (; ow < hi; ow++)
								yr[ow] += wv * xr[ow * s + off];
						}
					}
				}
				if (g->act != KK_LA_ACT_NONE)
					for (int64_t ow = 0; ow < q->out[2]; ow++)
						yr[ow] = act_s(g, yr[ow]);
			}
	}
}

/* Conv with one input channel per group: X is t[B], W is t[A]. */
KK_KERNEL(kk_conv_dw_f32)
{
	la_gemm g;
	la_parse(&g, ip, fp, t);
	kk_parallel(h, g.geo.n * g.geo.m, dw_task, &g);
}

/* ---- f32 ConvTranspose ---------------------------------------------------- */

typedef struct ct_args {
	const la_gemm *g;
	const float *col, *bias;
	float *y; /* this image's output */
} ct_args;

/* y[m] = bias[m] + scatter of the columns (m*ks + k, i) into the output. */
static void col2im_task(void *arg, int64_t begin, int64_t end, void *scratch)
{
	const ct_args *a = arg;
	const la_geo *q = &a->g->geo;
	(void)scratch;
	for (int64_t m = begin; m < end; m++) {
		float *y = a->y + m * q->os;
		float bias = a->bias ? a->bias[m] : 0.0f;
		for (int64_t o = 0; o < q->os; o++)
			y[o] = bias;
		for (int64_t k = 0; k < q->ks; k++) {
			int64_t kd = k / (q->k[1] * q->k[2]), kh = k / q->k[2] % q->k[1], kw = k % q->k[2];
			const float *row = a->col + (m * q->ks + k) * q->is;
			for (int64_t id = 0; id < q->in[0]; id++) {
				int64_t od = id * q->s[0] + kd * q->dl[0] - q->pb[0];
				if (od < 0 || od >= q->out[0])
					continue;
				for (int64_t ih = 0; ih < q->in[1]; ih++) {
					int64_t oh = ih * q->s[1] + kh * q->dl[1] - q->pb[1];
					if (oh < 0 || oh >= q->out[1])
						continue;
					const float *r = row + (id * q->in[1] + ih) * q->in[2];
					float *yr = y + (od * q->out[1] + oh) * q->out[2];
					for (int64_t iw = 0; iw < q->in[2]; iw++) {
						int64_t ow = iw * q->s[2] + kw * q->dl[2] - q->pb[2];
						if (ow >= 0 && ow < q->out[2])
							yr[ow] += r[iw];
					}
				}
			}
		}
	}
}

/* Per image: col[(m*ks + k), i] = sum_c W[c, m, k] X[c, i] as a GEMM batched
 * over groups (t[A] = W viewed transposed, t[B] = X), then col2im. */
KK_KERNEL(kk_conv_transpose_f32)
{
	la_gemm g;
	la_parse(&g, ip, fp, t);
	const la_geo *q = &g.geo;
	float *col = (float *)slot(t, ip[KK_LA_T_SCRATCH]);
	const float *x = g.b;
	float *y = g.y;
	for (int64_t nb = 0; nb < q->n; nb++) {
		la_gemm gi = g;
		gi.b = x + nb * q->c * q->is;
		gi.y = col;
		gi.bias = NULL;
		gi.c = NULL;
		gi.act = KK_LA_ACT_NONE;
		gemm_run(&gi, h);
		ct_args a = {.g = &g, .col = col, .bias = g.bias, .y = y + nb * q->m * q->os};
		kk_parallel(h, q->m, col2im_task, &a);
	}
}

/* ---- other dtypes ---------------------------------------------------------- */

static float h2f(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, u;
	if (exp == 0x1f) {
		u = sign | 0x7f800000 | (man << 13);
	} else if (exp == 0) {
		float v = (float)man * (1.0f / 16777216.0f);
		return sign ? -v : v;
	} else {
		u = sign | ((exp + 112) << 23) | (man << 13);
	}
	float f;
	memcpy(&f, &u, 4);
	return f;
}

/* Round to nearest even, like ir/dtype.c. */
static uint16_t f2h(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
	uint32_t exp = (u >> 23) & 0xff, man = u & 0x7fffff;
	if (exp == 0xff)
		return (uint16_t)(sign | 0x7c00 | (man ? 0x200 | (man >> 13) : 0));
	int32_t e = (int32_t)exp - 127 + 15;
	if (e >= 0x1f)
		return sign | 0x7c00;
	if (e <= 0) {
		if (e < -10)
			return sign;
		man |= 0x800000;
		uint32_t shift = (uint32_t)(14 - e), half = 1u << (shift - 1);
		uint32_t rest = man & ((1u << shift) - 1), r = man >> shift;
		if (rest > half || (rest == half && (r & 1)))
			r++;
		return (uint16_t)(sign | r);
	}
	uint32_t r = ((uint32_t)e << 10) | (man >> 13), rest = man & 0x1fff;
	if (rest > 0x1000 || (rest == 0x1000 && (r & 1)))
		r++;
	return (uint16_t)(sign | r);
}

static float b2f(uint16_t h)
{
	uint32_t u = (uint32_t)h << 16;
	float f;
	memcpy(&f, &u, 4);
	return f;
}

static uint16_t f2b(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	if ((u & 0x7f800000) == 0x7f800000 && (u & 0x7fffff))
		return (uint16_t)((u >> 16) | 0x40);
	u += 0x7fff + ((u >> 16) & 1);
	return (uint16_t)(u >> 16);
}

static int dt_is_int(int dt)
{
	return dt >= KK_LA_DT_I64;
}

static double ld_f(const void *p, int dt, int64_t i)
{
	switch (dt) {
	case KK_LA_DT_F32: return ((const float *)p)[i];
	case KK_LA_DT_F64: return ((const double *)p)[i];
	case KK_LA_DT_F16: return h2f(((const uint16_t *)p)[i]);
	case KK_LA_DT_BF16: return b2f(((const uint16_t *)p)[i]);
	case KK_LA_DT_I64: return (double)((const int64_t *)p)[i];
	case KK_LA_DT_I32: return ((const int32_t *)p)[i];
	case KK_LA_DT_I8: return ((const int8_t *)p)[i];
	default: return ((const uint8_t *)p)[i];
	}
}

static int64_t ld_i(const void *p, int dt, int64_t i)
{
	switch (dt) {
	case KK_LA_DT_I64: return ((const int64_t *)p)[i];
	case KK_LA_DT_I32: return ((const int32_t *)p)[i];
	case KK_LA_DT_I8: return ((const int8_t *)p)[i];
	default: return ((const uint8_t *)p)[i];
	}
}

/* Integers wrap to the dtype. */
static void st_i(void *p, int dt, int64_t i, int64_t v)
{
	switch (dt) {
	case KK_LA_DT_I64: ((int64_t *)p)[i] = v; break;
	case KK_LA_DT_I32: ((int32_t *)p)[i] = (int32_t)(uint32_t)v; break;
	case KK_LA_DT_I8: ((int8_t *)p)[i] = (int8_t)(uint8_t)v; break;
	default: ((uint8_t *)p)[i] = (uint8_t)v; break;
	}
}

/* Floats round through f32 for f16/bf16; integers clamp to int64 then wrap
 * (as the interpreter's tensor stores do). */
static void st_f(void *p, int dt, int64_t i, double v)
{
	switch (dt) {
	case KK_LA_DT_F32: ((float *)p)[i] = (float)v; break;
	case KK_LA_DT_F64: ((double *)p)[i] = v; break;
	case KK_LA_DT_F16: ((uint16_t *)p)[i] = f2h((float)v); break;
	case KK_LA_DT_BF16: ((uint16_t *)p)[i] = f2b((float)v); break;
	default: {
		int64_t iv;
		if (v != v)
			iv = 0;
		else if (v >= 9.2233720368547758e18)
			iv = INT64_MAX;
		else if (v <= -9.2233720368547758e18)
			iv = INT64_MIN;
		else
			iv = (int64_t)v;
		st_i(p, dt, i, iv);
	}
	}
}

/* One output row (batch bi, row i) of a generic Gemm/MatMul. */
static void gemm_any_task(void *arg, int64_t begin, int64_t end, void *scratch)
{
	const la_gemm *g = arg;
	int dt = g->dtype;
	(void)scratch;
	for (int64_t r = begin; r < end; r++) {
		int64_t i = r % g->m, bi = r / g->m, off[4];
		batch_offsets(g, bi, off);
		int64_t a0 = off[0] + i * g->a_rs;
		for (int64_t j = 0; j < g->n; j++) {
			int64_t b0 = off[1] + j * g->b_cs, yi = off[2] + i * g->y_rs + j;
			int64_t ci = i * g->c_rs + j * g->c_cs;
			if (dt_is_int(dt)) {
				uint64_t acc = 0; /* wraps like the output dtype */
				for (int64_t p = 0; p < g->k; p++)
					acc += (uint64_t)ld_i(g->a, dt, a0 + p * g->a_cs) *
					       (uint64_t)ld_i(g->b, dt, b0 + p * g->b_rs);
				int64_t c = g->c ? ld_i(g->c, dt, ci) : 0;
				if (g->kind == KK_LA_KIND_MATMUL || (g->alpha == 1.0 && g->beta == 1.0))
					st_i(g->y, dt, yi, (int64_t)(acc + (uint64_t)c));
				else
					st_f(g->y, dt, yi, g->alpha * (double)(int64_t)acc + g->beta * (double)c);
			} else if (g->kind == KK_LA_KIND_MATMUL && dt != KK_LA_DT_F64) {
				float acc = 0.0f;
				for (int64_t p = 0; p < g->k; p++)
					acc += (float)ld_f(g->a, dt, a0 + p * g->a_cs) *
					       (float)ld_f(g->b, dt, b0 + p * g->b_rs);
				st_f(g->y, dt, yi, acc);
			} else {
				double acc = 0.0;
				for (int64_t p = 0; p < g->k; p++)
					acc += ld_f(g->a, dt, a0 + p * g->a_cs) * ld_f(g->b, dt, b0 + p * g->b_rs);
				double c = g->c ? g->beta * ld_f(g->c, dt, ci) : 0.0;
				st_f(g->y, dt, yi, g->kind == KK_LA_KIND_MATMUL ? acc : g->alpha * acc + c);
			}
		}
	}
}

/* Gemm and MatMul in any dtype but f32 (strided operands, no packing). */
KK_KERNEL(kk_gemm_any)
{
	la_gemm g;
	la_parse(&g, ip, fp, t);
	kk_parallel(h, g.nbatch * g.m, gemm_any_task, &g);
}

/* One output plane (image, channel) of a direct Conv in double. */
static void conv_any_task(void *arg, int64_t begin, int64_t end, void *scratch)
{
	const la_gemm *g = arg;
	const la_geo *q = &g->geo;
	int dt = g->dtype;
	(void)scratch;
	for (int64_t pl = begin; pl < end; pl++) {
		int64_t m = pl % q->m, nb = pl / q->m, gr = m / q->mg;
		for (int64_t o = 0; o < q->os; o++) {
			int64_t od = o / (q->out[1] * q->out[2]), oh = o / q->out[2] % q->out[1];
			int64_t ow = o % q->out[2];
			double acc = g->bias ? ld_f(g->bias, dt, m) : 0.0;
			for (int64_t c = 0; c < q->cg; c++) {
				int64_t x0 = (nb * q->c + gr * q->cg + c) * q->is, w0 = (m * q->cg + c) * q->ks;
				for (int64_t k = 0; k < q->ks; k++) {
					int64_t kd = k / (q->k[1] * q->k[2]), kh = k / q->k[2] % q->k[1];
					int64_t kw = k % q->k[2];
					int64_t id = od * q->s[0] + kd * q->dl[0] - q->pb[0];
					int64_t ih = oh * q->s[1] + kh * q->dl[1] - q->pb[1];
					int64_t iw = ow * q->s[2] + kw * q->dl[2] - q->pb[2];
					if (id < 0 || id >= q->in[0] || ih < 0 || ih >= q->in[1] || iw < 0 ||
					    iw >= q->in[2])
						continue;
					acc += ld_f(g->b, dt, x0 + (id * q->in[1] + ih) * q->in[2] + iw) *
					       ld_f(g->a, dt, w0 + k);
				}
			}
			st_f(g->y, dt, pl * q->os + o, acc);
		}
	}
}

/* Conv in f64, f16, bf16: X is t[B], W is t[A]. */
KK_KERNEL(kk_conv_any)
{
	la_gemm g;
	la_parse(&g, ip, fp, t);
	kk_parallel(h, g.geo.n * g.geo.m, conv_any_task, &g);
}

/* One output plane of a ConvTranspose in double, accumulated in the
 * thread's scratch (os doubles) in the interpreter's order. */
static void conv_transpose_any_task(void *arg, int64_t begin, int64_t end, void *scratch)
{
	const la_gemm *g = arg;
	const la_geo *q = &g->geo;
	int dt = g->dtype;
	double *acc = scratch;
	for (int64_t pl = begin; pl < end; pl++) {
		int64_t m = pl % q->m, nb = pl / q->m, gr = m / q->mg, mm = m % q->mg;
		double bias = g->bias ? ld_f(g->bias, dt, m) : 0.0;
		for (int64_t o = 0; o < q->os; o++)
			acc[o] = bias;
		for (int64_t c = gr * q->cg; c < (gr + 1) * q->cg; c++) {
			int64_t x0 = (nb * q->c + c) * q->is, w0 = (c * q->mg + mm) * q->ks;
			for (int64_t i = 0; i < q->is; i++) {
				int64_t id = i / (q->in[1] * q->in[2]), ih = i / q->in[2] % q->in[1];
				int64_t iw = i % q->in[2];
				double xv = ld_f(g->b, dt, x0 + i);
				for (int64_t k = 0; k < q->ks; k++) {
					int64_t kd = k / (q->k[1] * q->k[2]), kh = k / q->k[2] % q->k[1];
					int64_t kw = k % q->k[2];
					int64_t od = id * q->s[0] + kd * q->dl[0] - q->pb[0];
					int64_t oh = ih * q->s[1] + kh * q->dl[1] - q->pb[1];
					int64_t ow = iw * q->s[2] + kw * q->dl[2] - q->pb[2];
					if (od < 0 || od >= q->out[0] || oh < 0 || oh >= q->out[1] || ow < 0 ||
					    ow >= q->out[2])
						continue;
					acc[(od * q->out[1] + oh) * q->out[2] + ow] += xv * ld_f(g->a, dt, w0 + k);
				}
			}
		}
		for (int64_t o = 0; o < q->os; o++)
			st_f(g->y, dt, pl * q->os + o, acc[o]);
	}
}

/* ConvTranspose in f64, f16, bf16: X is t[B], W is t[A]. */
KK_KERNEL(kk_conv_transpose_any)
{
	la_gemm g;
	la_parse(&g, ip, fp, t);
	kk_parallel(h, g.geo.n * g.geo.m, conv_transpose_any_task, &g);
}
