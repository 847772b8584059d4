/* kk_linalg.c — Gemm, MatMul, Conv and ConvTranspose kernels.
 *
 * f32 runs on one GEMM core: operands packed into micro-panels (at compile
 * time for constants, into per-thread scratch otherwise; a convolution's
 * im2col blocks are packed from its input rewritten as phase planes, where
 * every tap reads with stride 1), cache blocks of KC x NC (B) and MC x KC
 * (A), and an MR x NR register-blocked micro-kernel of vector FMAs. The
 * epilogue (alpha, beta * C, per-row bias, activation) is applied when the
 * last K block of a tile is written. Depthwise convolution has its own
 * direct kernel over the phase planes; ConvTranspose is GEMM to columns
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
	int64_t nph[3], q[3], chan, plane; /* phase planes (kk_la_phases) */
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
	q->chan = kk_la_phases(ip, q->nph, q->q);
	q->plane = q->q[0] * q->q[1] * q->q[2];
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

/* Even lanes of the concatenation a:b. */
static inline kk_vf la_even(kk_vf a, kk_vf b)
{
#if KK_VL == 16
	return __builtin_shufflevector(a, b, 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
#elif KK_VL == 8
	return __builtin_shufflevector(a, b, 0, 2, 4, 6, 8, 10, 12, 14);
#else
	return __builtin_shufflevector(a, b, 0, 2, 4, 6);
#endif
}

/* row[l] = src[l*s] for l in [0, n); src[0 .. room) is readable. With
 * spill, whole vectors are written (up to VL-1 floats past n). The first
 * vector is peeled so that short rows do not become memcpy/memset calls. */
static inline void la_gather_row(float *row, const float *src, int64_t n, int64_t s, int64_t room,
                                 bool spill)
{
	int64_t l = 0, vend = spill ? n : n - KK_VL + 1;
	if (s == 1 && vend > 0 && KK_VL <= room) {
		kk_store(row, kk_load(src));
		l = KK_VL;
	}
	if (s == 1) {
		for (; l < vend && l + KK_VL <= room; l += KK_VL)
			kk_store(row + l, kk_load(src + l));
	} else if (s == 2) {
		for (; l < vend && 2 * (l + KK_VL) <= room; l += KK_VL)
			kk_store(row + l, la_even(kk_load(src + 2 * l), kk_load(src + 2 * l + KK_VL)));
	}
	for (; l < n; l++)
		row[l] = src[l * s];
}

static inline void la_zero_row(float *row, int64_t n, bool spill)
{
	int64_t l = 0, vend = spill ? n : n - KK_VL + 1;
	if (vend > 0) {
		kk_store(row, (kk_vf){0});
		l = KK_VL;
	}
	for (; l < vend; l += KK_VL)
		kk_store(row + l, (kk_vf){0});
	for (; l < n; l++)
		row[l] = 0.0f;
}

/* Fills one channel's phase planes (kk_params_linalg.h) from its input
 * plane x: zero where the padded index falls outside the input. With
 * spill, rows are written as whole vectors, up to VL-1 floats past their
 * end, which the next row (or VL floats of slack) takes: only for a
 * buffer no other thread writes. */
static void phase_fill(const la_geo *q, const float *x, float *dst, bool spill)
{
	int64_t s2 = q->s[2], q2 = q->q[2];
	for (int64_t rd = 0; rd < q->nph[0]; rd++)
		for (int64_t rh = 0; rh < q->nph[1]; rh++)
			for (int64_t rw = 0; rw < q->nph[2]; rw++) {
				float *pl = dst + ((rd * q->nph[1] + rh) * q->nph[2] + rw) * q->plane;
				/* columns l whose input column l*s2 + off lies in [0, in2) */
				int64_t off = rw - q->pb[2];
				int64_t l0 = off >= 0 ? 0 : la_cdiv(-off, s2);
				int64_t l1 = q->in[2] - off <= 0 ? 0 : la_cdiv(q->in[2] - off, s2);
				l1 = la_min(l1, q2);
				l0 = la_min(l0, l1);
				for (int64_t i = 0; i < q->q[0]; i++) {
					int64_t id = i * q->s[0] + rd - q->pb[0];
					for (int64_t j = 0; j < q->q[1]; j++) {
						int64_t ih = j * q->s[1] + rh - q->pb[1];
						float *row = pl + (i * q->q[1] + j) * q2;
						if (id < 0 || id >= q->in[0] || ih < 0 || ih >= q->in[1]) {
							la_zero_row(row, q2, spill);
							continue;
						}
						const float *src = x + (id * q->in[1] + ih) * q->in[2] + off;
						la_zero_row(row, l0, spill);
						la_gather_row(row + l0, src + l0 * s2, l1 - l0, s2,
						              x + q->is - (src + l0 * s2), spill);
						la_zero_row(row + l1, q2 - l1, spill);
					}
				}
			}
}

/* Element offset of tap `tap` in a channel's phase planes, output (0,0,0). */
static int64_t phase_tap(const la_geo *q, int64_t tap)
{
	int64_t kk[3] = {tap / (q->k[1] * q->k[2]), tap / q->k[2] % q->k[1], tap % q->k[2]};
	int64_t slot = 0, pos = 0;
	for (int a = 0; a < 3; a++) {
		int64_t u = kk[a] * q->dl[a];
		slot = slot * q->nph[a] + u % q->s[a];
		pos = pos * q->q[a] + u / q->s[a];
	}
	return slot * q->plane + pos;
}

/* The same block of B = im2col(x) for a Conv, read from the phase planes tb
 * (channel c at c*chan): B[p, j] with p = (channel, kernel tap) and j the
 * flat output position. Within an output row a tap reads a contiguous run
 * of one plane, so each panel row is a few runs, copied as whole vectors. A
 * copy may write up to VL-1 floats past its run: panels are filled in order
 * (panel, row, run), so the excess lands on floats written later (the
 * buffer and tb carry VL floats of slack). */
static void pack_b_conv(const la_gemm *g, const float *tb, int64_t p0, int64_t kc, int64_t j0,
                        int64_t nc, float *dst)
{
	const la_geo *q = &g->geo;
	int64_t toff[KK_GEMM_KC_MAX(KK_VL)];
	for (int64_t p = 0; p < kc; p++)
		toff[p] = (p0 + p) / q->ks * q->chan + phase_tap(q, (p0 + p) % q->ks);
	int64_t run_col[KK_NR], run_len[KK_NR], run_src[KK_NR];
	for (int64_t jp = 0; jp < nc; jp += KK_NR) {
		int64_t cols = la_min(KK_NR, nc - jp), j = j0 + jp;
		int64_t ow = j % q->out[2], oh = j / q->out[2] % q->out[1];
		int64_t od = j / (q->out[1] * q->out[2]);
		int nrun = 0;
		for (int64_t e = 0; e < cols; nrun++) {
			int64_t len = la_min(q->out[2] - ow, cols - e);
			run_col[nrun] = e;
			run_len[nrun] = len;
			run_src[nrun] = (od * q->q[1] + oh) * q->q[2] + ow;
			e += len;
			ow += len;
			if (ow == q->out[2]) {
				ow = 0;
				if (++oh == q->out[1]) {
					oh = 0;
					od++;
				}
			}
		}
		float *d = dst + jp * kc;
		for (int64_t p = 0; p < kc; p++, d += KK_NR) {
			const float *src = tb + toff[p];
			for (int r = 0; r < nrun; r++) {
				const float *sr = src + run_src[r];
				float *dr = d + run_col[r];
				/* runs are short: peeled, or they become memcpy calls */
				kk_store(dr, kk_load(sr));
				for (int64_t v = KK_VL; v < run_len[r]; v += KK_VL)
					kk_store(dr + v, kk_load(sr + v));
			}
			for (int64_t v = cols; v < KK_NR; v += KK_VL)
				kk_store(d + v, (kk_vf){0});
		}
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
		/* full-height A panels stream from L2/L3 (weights, read once
		 * per tile row); short ones (GEMV) are not worth the slot */
		if (mr == KK_MR)
			__builtin_prefetch(a + (p + 24) * KK_MR);
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

/* One operand block of a task: the M block ib against the packed B block
 * bp (depth [k0, k0+kc), columns [j0, j0+nc)), every micro-tile of it. */
static void gemm_block(const la_gemm *g, const float *a, const float *bp, float *y,
                       const float *bias, float *abuf, int64_t ib, int64_t k0, int64_t kc,
                       int64_t j0, int64_t nc)
{
	int first = k0 == 0, last = k0 + kc >= g->k;
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
			/* Y's tile is read back (after the first K block) and written
			 * after the micro-kernel: start fetching it now */
			float *yt = y + (i0 + ir) * g->y_rs + j0 + jr;
			for (int i = 0; i < mr; i++) {
				__builtin_prefetch(yt + i * g->y_rs, 1);
				__builtin_prefetch(yt + i * g->y_rs + nr - 1, 1);
			}
			kk_vf acc[KK_MR * KK_NV];
			ukr_tab[mr - 1][nv - 1](kc, ap + ir * kc, bp + jr * kc, acc);
			tile_store(g, y, bias, acc, i0 + ir, j0 + jr, mr, nr, first, last);
		}
	}
}

/* Tasks are (batch, N block, M chunk). A pre-packed B (weights) costs
 * nothing to revisit, so its K blocks run inside each M block: Y's tiles
 * come back while still in L2 (K outside, a big product re-reads all of Y
 * from memory per K block: 20% of a 2048^3 MatMul). A B packed here is
 * packed once per K block and shared by the M blocks. */
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
		if (g->b_mode == KK_LA_OP_PACKED) {
			for (int64_t ib = ib0; ib < ib1; ib++)
				for (int64_t k0 = 0; k0 < g->k; k0 += g->kc) {
					int64_t kc = la_min(g->kc, g->k - k0);
					gemm_block(g, a, b + k0 * g->npad + j0 * kc, y, bias, abuf, ib, k0, kc, j0,
					           nc);
				}
			continue;
		}
		for (int64_t k0 = 0; k0 < g->k && ib0 < ib1; k0 += g->kc) {
			int64_t kc = la_min(g->kc, g->k - k0);
			if (g->b_mode == KK_LA_OP_IM2COL)
				pack_b_conv(g, b, k0, kc, j0, nc, bbuf);
			else
				pack_b(g, b, k0, kc, j0, nc, bbuf);
			for (int64_t ib = ib0; ib < ib1; ib++)
				gemm_block(g, a, bbuf, y, bias, abuf, ib, k0, kc, j0, nc);
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

/* Per-thread work of a partition into nbatch x n_jc x split tasks, in
 * micro-tile vectors (the threads claim tasks in turn). */
static int64_t split_cost(const la_gemm *g, int64_t thr, int64_t n_jc, int64_t split)
{
	int64_t tasks = g->nbatch * n_jc * split;
	int64_t vecs = la_cdiv(la_cdiv(g->n, n_jc), KK_VL);
	int64_t rows = la_cdiv(la_cdiv(g->m, KK_MR), split);
	return la_cdiv(tasks, thr) * vecs * rows;
}

/* Splits the problem into tasks (batch x N blocks x M chunks) so that the
 * threads get equal work: the partition of least per-thread cost, fewer
 * tasks on a tie (each repacks its operands). The packed layouts do not
 * depend on MC or NC, so both may shrink here. */
static void gemm_run(la_gemm *g, const kiln_abi_host *h)
{
	if (g->m == 0 || g->n == 0 || g->nbatch == 0)
		return;
	if (g->k == 0) {
		gemm_empty_k(g);
		return;
	}
	int64_t thr = h->n_threads > 0 ? h->n_threads : 1;
	int64_t max_jc = la_cdiv(g->n, KK_NR), mpan = la_cdiv(g->m, KK_MR);
	int64_t n_jc0 = la_cdiv(g->n, g->nc), best_jc = n_jc0, best_split = 1;
	if (thr > 1) {
		int64_t best = split_cost(g, thr, n_jc0, 1);
		for (int64_t jc = n_jc0; jc <= la_min(max_jc, n_jc0 + la_min(2 * thr, 16)); jc++)
			for (int64_t sp = 1; sp <= la_min(mpan, 16); sp++) {
				int64_t cost = split_cost(g, thr, jc, sp);
				if (cost < best) {
					best = cost;
					best_jc = jc;
					best_split = sp;
				}
			}
	}
	g->nc = la_cdiv(la_cdiv(g->n, best_jc), KK_NR) * KK_NR;
	g->n_jc = la_cdiv(g->n, g->nc);
	if (best_split > 1) {
		/* M blocks: a whole number per chunk */
		int64_t per = la_cdiv(la_cdiv(g->m, g->mc), best_split);
		g->mc = la_min(g->mc, la_cdiv(mpan, per * best_split) * KK_MR);
	}
	g->n_ic = la_cdiv(g->m, g->mc);
	g->split = la_min(best_split, g->n_ic);
	g->a_scratch = g->a_mode == KK_LA_OP_PACKED ? 0 : la_cdiv(g->mc, KK_MR) * KK_MR * g->kc;
	kk_parallel(h, g->nbatch * g->n_jc * g->split, gemm_task, g);
}

/* Gemm, MatMul and Conv (1x1 direct or im2col) in f32. */
KK_KERNEL(kk_gemm_f32)
{
	la_gemm g;
	la_parse(&g, ip, fp, t);
	gemm_run(&g, h);
}

/* ---- f32 convolution through phase planes ------------------------------- */

typedef struct phase_args {
	const la_geo *q;
	const float *x; /* the image */
	float *tb;
} phase_args;

static void phase_task(void *arg, int64_t begin, int64_t end, void *scratch)
{
	const phase_args *a = arg;
	(void)scratch;
	for (int64_t c = begin; c < end; c++)
		phase_fill(a->q, a->x + c * a->q->is, a->tb + c * a->q->chan, false);
}

/* Conv as GEMM per image: the image's phase planes go to the arena scratch
 * (t[SCRATCH]: C*chan + VL floats), then Y[mg, os] = W * im2col per group
 * with the B blocks packed from the planes. X is t[B], W is t[A]. */
KK_KERNEL(kk_conv_f32)
{
	la_gemm g;
	la_parse(&g, ip, fp, t);
	const la_geo *q = &g.geo;
	float *tb = (float *)slot(t, ip[KK_LA_T_SCRATCH]);
	if (q->os == 0 || q->m == 0)
		return;
	kk_store(tb + q->c * q->chan, (kk_vf){0});
	for (int64_t nb = 0; nb < q->n; nb++) {
		phase_args pa = {.q = q, .x = (const float *)g.b + nb * q->c * q->is, .tb = tb};
		kk_parallel(h, q->c, phase_task, &pa);
		la_gemm gi = g;
		gi.b = tb;
		gi.y = (float *)g.y + nb * q->m * q->os;
		gemm_run(&gi, h);
	}
}

/* ---- f32 depthwise convolution ------------------------------------------- */

/* R output rows x C vectors of one plane: src is the phase planes at the
 * block's first output, rs their row stride, n the valid columns (the last
 * vector may be partial). Taps outer, so the R*C sums are independent.
 * room: floats from y to the end of the plane where a partial vector may be
 * stored whole (its excess lands on rows stored later), else 0. */
static inline __attribute__((always_inline)) void dw_body(int R, int C, const la_gemm *g,
                                                        const float *src, int64_t rs,
                                                        const float *w, const int64_t *toff,
                                                        int64_t ks, float bias, float *y,
                                                        int64_t ys, int64_t n, int64_t room)
{
	kk_vf acc[4][2];
#pragma GCC unroll 4
	for (int r = 0; r < R; r++)
#pragma GCC unroll 2
		for (int c = 0; c < C; c++)
			acc[r][c] = la_splat(bias);
	for (int64_t tp = 0; tp < ks; tp++) {
		kk_vf wv = la_splat(w[tp]);
		const float *s = src + toff[tp];
#pragma GCC unroll 4
		for (int r = 0; r < R; r++)
#pragma GCC unroll 2
			for (int c = 0; c < C; c++)
				acc[r][c] += wv * kk_load(s + r * rs + c * KK_VL);
	}
#pragma GCC unroll 4
	for (int r = 0; r < R; r++)
#pragma GCC unroll 2
		for (int c = 0; c < C; c++) {
			kk_vf x = act_v(g, acc[r][c]);
			int64_t cols = n - c * KK_VL;
			if (cols >= KK_VL || r * ys + (c + 1) * KK_VL <= room)
				kk_store(y + r * ys + c * KK_VL, x);
			else
				kk_store_n(y + r * ys + c * KK_VL, x, cols);
		}
}

typedef void (*dw_fn)(const la_gemm *g, const float *src, int64_t rs, const float *w,
                      const int64_t *toff, int64_t ks, float bias, float *y, int64_t ys,
                      int64_t n, int64_t room);

#define KK_DW(R, C)                                                                       \
	static void dw_##R##_##C(const la_gemm *g, const float *src, int64_t rs, const float *w, \
	                         const int64_t *toff, int64_t ks, float bias, float *y,          \
	                         int64_t ys, int64_t n, int64_t room)                            \
	{                                                                                     \
		dw_body(R, C, g, src, rs, w, toff, ks, bias, y, ys, n, room);                     \
	}
KK_DW(1, 1)
KK_DW(1, 2)
KK_DW(2, 1)
KK_DW(2, 2)
KK_DW(3, 1)
KK_DW(3, 2)
KK_DW(4, 1)
KK_DW(4, 2)

/* dw_tab[rows - 1][vectors - 1] */
static const dw_fn dw_tab[4][2] = {
	{dw_1_1, dw_1_2}, {dw_2_1, dw_2_2}, {dw_3_1, dw_3_2}, {dw_4_1, dw_4_2},
};

/* One (image, channel) plane per item: the input plane goes to phase planes
 * in the thread's scratch (ks tap offsets, then chan + VL floats), then
 * blocks of up to 4 rows x 2 vectors of output, each tap one FMA per vector
 * with a stride-1 load. */
static void dw_task(void *arg, int64_t begin, int64_t end, void *scratch)
{
	const la_gemm *g = arg;
	const la_geo *q = &g->geo;
	int64_t *toff = scratch;
	float *pb = (float *)(toff + q->ks);
	for (int64_t tp = 0; tp < q->ks; tp++)
		toff[tp] = phase_tap(q, tp);
	kk_store(pb + q->chan, (kk_vf){0});
	int64_t rs = q->q[2], o2 = q->out[2];
	for (int64_t pl = begin; pl < end; pl++) {
		int64_t m = pl % q->m, nb = pl / q->m;
		phase_fill(q, (const float *)g->b + (nb * q->c + m / q->mg) * q->is, pb, true);
		const float *w = (const float *)g->a + m * q->ks;
		float *y = (float *)g->y + pl * q->os;
		float bias = g->bias ? ((const float *)g->bias)[m] : 0.0f;
		for (int64_t od = 0; od < q->out[0]; od++)
			for (int64_t oh = 0; oh < q->out[1]; oh += 4) {
				int rows = (int)la_min(4, q->out[1] - oh);
				const float *src = pb + (od * q->q[1] + oh) * rs;
				float *yr = y + (od * q->out[1] + oh) * o2;
				for (int64_t ow = 0; ow < o2;) {
					int64_t n = la_min(2 * KK_VL, o2 - ow);
					int vecs = (int)la_cdiv(n, KK_VL);
					/* a block spanning whole rows may spill into the rows after it */
					int64_t room = n == o2 ? q->os - (yr - y) : 0;
					dw_tab[rows - 1][vecs - 1](g, src + ow, rs, w, toff, q->ks, bias, yr + ow, o2,
					                           n, room);
					ow += n;
				}
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

static int dt_is_int(int dt)
{
	return dt >= KK_LA_DT_I64;
}

static double ld_f(const void *p, int dt, int64_t i)
{
	switch (dt) {
	case KK_LA_DT_F32: return ((const float *)p)[i];
	case KK_LA_DT_F64: return ((const double *)p)[i];
	case KK_LA_DT_F16: return kk_f16_to_f32(((const uint16_t *)p)[i]);
	case KK_LA_DT_BF16: return kk_bf16_to_f32(((const uint16_t *)p)[i]);
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
	case KK_LA_DT_F16: ((uint16_t *)p)[i] = kk_f32_to_f16((float)v); break;
	case KK_LA_DT_BF16: ((uint16_t *)p)[i] = kk_f32_to_bf16((float)v); break;
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
