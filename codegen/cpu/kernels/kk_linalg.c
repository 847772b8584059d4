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
#include "kk_math.h"

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
	int a_mode, b_mode, act, dtype, kind, trans;
	int64_t a_rs, a_cs, b_rs, b_cs, y_rs, c_rs, c_cs;
	double alpha, beta, lo, hi;
	const void *a, *b, *c, *bias, *res;
	void *y;
	int rank;
	int64_t bd[KK_LA_MAX_BATCH][KK_LA_BD_COUNT];
	int64_t nbatch;
	la_geo geo;
	int64_t mpad, npad;
	/* run-time partition (gemm_run) */
	int64_t n_ic, n_jc, split, a_scratch, b_scratch;
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
	g->trans = (int)ip[KK_LA_TRANS];
	g->alpha = fp[KK_LA_FP_ALPHA];
	g->beta = fp[KK_LA_FP_BETA];
	g->lo = fp[KK_LA_FP_LO];
	g->hi = fp[KK_LA_FP_HI];
	g->a = slot(t, ip[KK_LA_T_A]);
	g->b = slot(t, ip[KK_LA_T_B]);
	g->c = slot(t, ip[KK_LA_T_C]);
	g->bias = slot(t, ip[KK_LA_T_BIAS]);
	g->res = slot(t, ip[KK_LA_T_RES]);
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

/* Rows [i0, i0+mc) and depth [p0, p0+kc) of a strided A as MR-row panels.
 * Columns of A that are contiguous (a transposed 1x1 Conv: A = X^T) are
 * copied as whole vectors: the excess lands on the next panel row, written
 * later, or on the buffer's VL floats of slack, and a panel's rows past the
 * matrix are never read by the micro-kernel (mr = the rows left). */
static void pack_a(const la_gemm *g, const float *a, int64_t i0, int64_t mc, int64_t p0,
                   int64_t kc, float *dst)
{
	for (int64_t ip = 0; ip < mc; ip += KK_MR) {
		int64_t rows = la_min(KK_MR, mc - ip);
		float *d = dst + ip * kc;
		const float *src = a + (i0 + ip) * g->a_rs + p0 * g->a_cs;
		if (g->a_rs == 1 && g->a_cs >= g->m) {
			/* whole vectors while they end inside A: element (i, p) at
			 * i + p*A_CS, the last at (K-1)*A_CS + M-1 */
			int64_t vend = la_cdiv(rows, KK_VL) * KK_VL;
			int64_t lim = (g->k - 1) * g->a_cs + g->m - (i0 + ip) - vend;
			int64_t pend = lim < 0 ? 0 : la_min(kc, lim / g->a_cs - p0 + 1);
			int64_t p = 0;
			for (; p < pend; p++)
				for (int64_t e = 0; e < rows; e += KK_VL)
					kk_store(d + p * KK_MR + e, kk_load(src + p * g->a_cs + e));
			for (; p < kc; p++)
				for (int64_t i = 0; i < rows; i++)
					d[p * KK_MR + i] = src[p * g->a_cs + i];
			continue;
		}
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

/* Fills depth rows [i0, i0+ni) and height rows [j0, j0+nj) of one
 * channel's phase planes (kk_params_linalg.h) from its input plane x into
 * dst, where phase plane k starts at k*plane and holds ni x nrow rows of
 * q2 floats (row (i, j) at ((i-i0)*nrow + j-j0)*q2): zero where the padded
 * index falls outside the input. Reads end before xend (>= the end of x's
 * plane). With spill, rows are written as whole vectors, up to VL-1 floats
 * past their end, which the next row (or VL floats of slack) takes: only
 * for a buffer no other thread writes. */
static void phase_fill_win(const la_geo *q, const float *x, const float *xend, float *dst,
                           int64_t plane, int64_t i0, int64_t ni, int64_t j0, int64_t nj,
                           int64_t nrow, bool spill)
{
	int64_t s2 = q->s[2], q2 = q->q[2];
	for (int64_t rd = 0; rd < q->nph[0]; rd++)
		for (int64_t rh = 0; rh < q->nph[1]; rh++)
			for (int64_t rw = 0; rw < q->nph[2]; rw++) {
				float *pl = dst + ((rd * q->nph[1] + rh) * q->nph[2] + rw) * plane;
				/* columns l whose input column l*s2 + off lies in [0, in2) */
				int64_t off = rw - q->pb[2];
				int64_t l0 = off >= 0 ? 0 : la_cdiv(-off, s2);
				int64_t l1 = q->in[2] - off <= 0 ? 0 : la_cdiv(q->in[2] - off, s2);
				l1 = la_min(l1, q2);
				l0 = la_min(l0, l1);
				for (int64_t i = i0; i < i0 + ni; i++) {
					int64_t id = i * q->s[0] + rd - q->pb[0];
					for (int64_t j = j0; j < j0 + nj; j++) {
						int64_t ih = j * q->s[1] + rh - q->pb[1];
						float *row = pl + ((i - i0) * nrow + j - j0) * q2;
						if (id < 0 || id >= q->in[0] || ih < 0 || ih >= q->in[1]) {
							la_zero_row(row, q2, spill);
							continue;
						}
						const float *src = x + (id * q->in[1] + ih) * q->in[2] + off;
						la_zero_row(row, l0, spill);
						la_gather_row(row + l0, src + l0 * s2, l1 - l0, s2,
						              xend - (src + l0 * s2), spill);
						la_zero_row(row + l1, q2 - l1, spill);
					}
				}
			}
}

/* All of one channel's phase planes (layout in kk_params_linalg.h). */
static void phase_fill(const la_geo *q, const float *x, float *dst, bool spill)
{
	phase_fill_win(q, x, x + q->is, dst, q->plane, 0, q->q[0], 0, q->q[1], q->q[1], spill);
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
 * flat output position, in panels w columns wide (NR; MR for the A panels
 * of a transposed product, A = B^T). Within an output row a tap reads a
 * contiguous run of one plane, so each panel row is a few runs, copied as
 * whole vectors. A copy may write up to VL-1 floats past its run: panels
 * are filled in order (panel, row, run), so the excess lands on floats
 * written later (the buffer and tb carry VL floats of slack). */
static void pack_conv(const la_gemm *g, const float *tb, int64_t p0, int64_t kc, int64_t j0,
                      int64_t nc, int64_t w, float *dst)
{
	const la_geo *q = &g->geo;
	int64_t toff[KK_GEMM_KC_MAX(KK_VL)];
	for (int64_t p = 0; p < kc; p++)
		toff[p] = (p0 + p) / q->ks * q->chan + phase_tap(q, (p0 + p) % q->ks);
	int64_t run_col[KK_NR], run_len[KK_NR], run_src[KK_NR];
	for (int64_t jp = 0; jp < nc; jp += w) {
		int64_t cols = la_min(w, nc - jp), j = j0 + jp;
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
		for (int64_t p = 0; p < kc; p++, d += w) {
			const float *src = tb + toff[p];
			for (int r = 0; r < nrun; r++) {
				const float *sr = src + run_src[r];
				float *dr = d + run_col[r];
				/* runs are short: peeled, or they become memcpy calls */
				kk_store(dr, kk_load(sr));
				for (int64_t v = KK_VL; v < run_len[r]; v += KK_VL)
					kk_store(dr + v, kk_load(sr + v));
			}
			for (int64_t v = cols; v < w; v += KK_VL)
				kk_store(d + v, (kk_vf){0});
		}
	}
}

/* ---- f32 GEMM: micro-kernel ---------------------------------------------- */

/* Element (row i, depth p) of a micro-kernel's A: its packed panel
 * (a[p*MR + i]), or with imp (a compile-time constant) the phase planes
 * read in place through the tap table (KK_LA_OP_IMPLICIT), a[toff[p] + i]. */
#define LA_A(a, toff, p, i, imp) ((imp) ? (a)[(toff)[p] + (i)] : (a)[(p) * KK_MR + (i)])

/* ukr_body for tiles of fewer than 8 vectors (GEMV-like rows): that few
 * accumulator chains would wait on the FMA latency, so u interleaved sets
 * of sums over p (u*mr*nv >= 8 chains), added at the end. */
static inline __attribute__((always_inline)) void ukr_short(int mr, int nv, int u, int imp,
                                                           int64_t kc,
                                                           const float *restrict a,
                                                           const int64_t *restrict toff,
                                                           const float *restrict b,
                                                           kk_vf *restrict out)
{
	kk_vf acc[4][4][KK_NV];
#pragma GCC unroll 4
	for (int s = 0; s < u; s++)
#pragma GCC unroll 4
		for (int i = 0; i < mr; i++)
#pragma GCC unroll 4
			for (int v = 0; v < nv; v++)
				acc[s][i][v] = (kk_vf){0};
	int64_t p = 0;
	for (; p + u <= kc; p += u)
#pragma GCC unroll 4
		for (int s = 0; s < u; s++) {
			/* GEMV-like rows stream B (the weights) from L3 or memory
			 * at a few FMAs per line: fetch it 16 steps ahead (the MLP's
			 * 1024x1024 Gemm at batch 1: 0.077 -> 0.070 ms, 1 thread) */
			for (int v = 0; v < nv; v++)
				__builtin_prefetch(b + (p + s + 16) * KK_NR + v * KK_VL);
#pragma GCC unroll 4
			for (int i = 0; i < mr; i++) {
				kk_vf av = la_splat(LA_A(a, toff, p + s, i, imp));
#pragma GCC unroll 4
				for (int v = 0; v < nv; v++)
					acc[s][i][v] += av * kk_load(b + (p + s) * KK_NR + v * KK_VL);
			}
		}
	for (; p < kc; p++)
#pragma GCC unroll 4
		for (int i = 0; i < mr; i++) {
			kk_vf av = la_splat(LA_A(a, toff, p, i, imp));
#pragma GCC unroll 4
			for (int v = 0; v < nv; v++)
				acc[0][i][v] += av * kk_load(b + p * KK_NR + v * KK_VL);
		}
#pragma GCC unroll 4
	for (int i = 0; i < mr; i++)
#pragma GCC unroll 4
		for (int v = 0; v < nv; v++) {
			kk_vf x = acc[0][i][v];
#pragma GCC unroll 4
			for (int s = 1; s < u; s++)
				x += acc[s][i][v];
			out[i * KK_NV + v] = x;
		}
}

/* Floats per cache line, for prefetching one line per step. */
#define LA_LINE 16

/* out[i*NV + v] = sum_p a[p*MR + i] * b[p*NR + v*VL ..] for i < mr, v < nv.
 * Inlined with constant mr/nv so the accumulators live in registers. With
 * pf, step p also prefetches the line at pf + p*LA_LINE while that is
 * before pf_end: a slice of the panel the next tile reads from memory. */
static inline __attribute__((always_inline)) void ukr_body(int mr, int nv, int imp, int64_t kc,
                                                          const float *restrict a,
                                                          const int64_t *restrict toff,
                                                          const float *restrict b,
                                                          kk_vf *restrict out, const float *pf,
                                                          const float *pf_end)
{
	if (mr * nv < 8 && mr <= 4) {
		ukr_short(mr, nv, mr * nv >= 4 ? 2 : 4, imp, kc, a, toff, b, out);
		return;
	}
	kk_vf acc[KK_MR][KK_NV];
#pragma GCC unroll 16
	for (int i = 0; i < mr; i++)
#pragma GCC unroll 4
		for (int v = 0; v < nv; v++)
			acc[i][v] = (kk_vf){0};
	for (int64_t p = 0; p < kc; p++) {
		/* full-height A panels stream from L2/L3 (weights, read once
		 * per tile row); short ones (GEMV) are not worth the slot */
		if (mr == KK_MR && !imp)
			__builtin_prefetch(a + (p + 24) * KK_MR);
		if (pf && pf + p * LA_LINE < pf_end)
			__builtin_prefetch(pf + p * LA_LINE);
		kk_vf bv[KK_NV];
#pragma GCC unroll 4
		for (int v = 0; v < nv; v++)
			bv[v] = kk_load(b + p * KK_NR + v * KK_VL);
#pragma GCC unroll 16
		for (int i = 0; i < mr; i++) {
			kk_vf av = la_splat(LA_A(a, toff, p, i, imp));
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
		ukr_body(R, V, 0, kc, a, NULL, b, out, NULL, NULL);                           \
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

/* Full-height tiles that prefetch [pf, pf_end) as they go (ukr_body). */
typedef void (*ukr_pf_fn)(int64_t kc, const float *a, const float *b, kk_vf *out,
                          const float *pf, const float *pf_end);

static void ukr_pf_1(int64_t kc, const float *a, const float *b, kk_vf *out, const float *pf,
                     const float *pf_end)
{
	ukr_body(KK_MR, 1, 0, kc, a, NULL, b, out, pf, pf_end);
}

static void ukr_pf_2(int64_t kc, const float *a, const float *b, kk_vf *out, const float *pf,
                     const float *pf_end)
{
	ukr_body(KK_MR, 2, 0, kc, a, NULL, b, out, pf, pf_end);
}

static const ukr_pf_fn ukr_pf[KK_NV] = {ukr_pf_1, ukr_pf_2};

/* Tiles whose A is the phase planes read in place through a tap table
 * (KK_LA_OP_IMPLICIT), prefetching [pf, pf_end) as they go. */
typedef void (*uki_fn)(int64_t kc, const float *a, const int64_t *toff, const float *b,
                       kk_vf *out, const float *pf, const float *pf_end);

#define KK_UKI(R, V)                                                                        \
	static void uki_##R##_##V(int64_t kc, const float *a, const int64_t *toff,             \
	                          const float *b, kk_vf *out, const float *pf, const float *pf_end) \
	{                                                                                       \
		ukr_body(R, V, 1, kc, a, toff, b, out, pf, pf_end);                                 \
	}
#define KK_UKI_ROW(R) KK_UKI(R, 1) KK_UKI(R, 2)
#define KK_UKI_ENT(R) {uki_##R##_1, uki_##R##_2},

KK_UKI_ROW(1)
KK_UKI_ROW(2)
KK_UKI_ROW(3)
KK_UKI_ROW(4)
KK_UKI_ROW(5)
KK_UKI_ROW(6)
#if KK_MR > 6
KK_UKI_ROW(7)
KK_UKI_ROW(8)
KK_UKI_ROW(9)
KK_UKI_ROW(10)
KK_UKI_ROW(11)
KK_UKI_ROW(12)
#endif

/* uki_tab[mr - 1][nv - 1] */
static const uki_fn uki_tab[KK_MR][KK_NV] = {
	KK_UKI_ENT(1) KK_UKI_ENT(2) KK_UKI_ENT(3) KK_UKI_ENT(4) KK_UKI_ENT(5) KK_UKI_ENT(6)
#if KK_MR > 6
	KK_UKI_ENT(7) KK_UKI_ENT(8) KK_UKI_ENT(9) KK_UKI_ENT(10) KK_UKI_ENT(11) KK_UKI_ENT(12)
#endif
};

/* ---- f32 GEMM: epilogue and driver --------------------------------------- */

static inline kk_vf act_v(const la_gemm *g, kk_vf x)
{
	if (g->act == KK_LA_ACT_RELU)
		return kk_vmax(x, (kk_vf){0});
	if (g->act == KK_LA_ACT_CLIP)
		return kk_vmin(kk_vmax(x, kk_splat((float)g->lo)), kk_splat((float)g->hi));
	if (g->act == KK_LA_ACT_GELU)
		return kk_gelu(x);
	if (g->act == KK_LA_ACT_GELU_TANH)
		return kk_gelu_tanh(x);
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
	if (g->act == KK_LA_ACT_GELU || g->act == KK_LA_ACT_GELU_TANH)
		return act_v(g, kk_splat(x))[0]; /* the same polynomial as the vector path */
	return x;
}

/* Writes an mr x nr tile at (i0, j0): the raw sum for a first K block,
 * adds the previous blocks' sum after it, and applies the epilogue on the
 * last block (res: the residual at Y's offsets, or NULL). */
/* A full-width tile (nr == KK_NR) with its flags as constants, so each
 * instantiation is straight-line vector code per row: add the previous K
 * blocks' sum unless first; on the last block (epi) add the row's bias and
 * the residual (res) and clamp (1: Relu, max with lo = 0; 2: Clip to
 * [lo, hi]). */
static inline __attribute__((always_inline)) void tile_full(int first, int epi, int has_res,
                                                           int clamp, float *y, int64_t y_rs,
                                                           const float *bias, const float *res,
                                                           const kk_vf *acc, int64_t i0,
                                                           int64_t j0, int mr, kk_vf lo,
                                                           kk_vf hi)
{
	for (int i = 0; i < mr; i++) {
		int64_t off = (i0 + i) * y_rs + j0;
		float *yp = y + off;
		kk_vf rb = kk_splat(epi && bias ? bias[i0 + i] : 0.0f);
#pragma GCC unroll 2
		for (int v = 0; v < KK_NV; v++) {
			kk_vf x = acc[i * KK_NV + v];
			if (!first)
				x += kk_load(yp + v * KK_VL);
			if (epi) {
				x += rb;
				if (has_res)
					x += kk_load(res + off + v * KK_VL);
				if (clamp)
					x = kk_vmax(x, lo); /* as act_v: Relu is a max only */
				if (clamp == 2)
					x = kk_vmin(x, hi);
			}
			kk_store(yp + v * KK_VL, x);
		}
	}
}

/* The common tiles (full width; no C, alpha 1, no activation other than a
 * clamp) through tile_full; true when it handled the tile. */
static int tile_store_fast(const la_gemm *g, float *y, const float *bias, const float *res,
                           const kk_vf *acc, int64_t i0, int64_t j0, int mr, int64_t nr,
                           int first, int last)
{
	if (nr != KK_NR)
		return 0;
	if (last && (g->c || g->alpha != 1.0 || g->act > KK_LA_ACT_CLIP))
		return 0;
	int clamp = !last ? 0 : g->act == KK_LA_ACT_RELU ? 1 : g->act == KK_LA_ACT_CLIP ? 2 : 0;
	kk_vf lo = kk_splat(g->act == KK_LA_ACT_CLIP ? (float)g->lo : 0.0f);
	kk_vf hi = kk_splat(g->act == KK_LA_ACT_CLIP ? (float)g->hi : KK_INFINITY);
	int64_t rs = g->y_rs;
#define KK_TF(F, E, R, C) tile_full(F, E, R, C, y, rs, bias, res, acc, i0, j0, mr, lo, hi)
	if (!last) {
		if (first)
			KK_TF(1, 0, 0, 0);
		else
			KK_TF(0, 0, 0, 0);
	} else if (first) {
		if (res)
			clamp == 2 ? KK_TF(1, 1, 1, 2) : clamp ? KK_TF(1, 1, 1, 1) : KK_TF(1, 1, 1, 0);
		else
			clamp == 2 ? KK_TF(1, 1, 0, 2) : clamp ? KK_TF(1, 1, 0, 1) : KK_TF(1, 1, 0, 0);
	} else {
		if (res)
			clamp == 2 ? KK_TF(0, 1, 1, 2) : clamp ? KK_TF(0, 1, 1, 1) : KK_TF(0, 1, 1, 0);
		else
			clamp == 2 ? KK_TF(0, 1, 0, 2) : clamp ? KK_TF(0, 1, 0, 1) : KK_TF(0, 1, 0, 0);
	}
#undef KK_TF
	return 1;
}

static void tile_store(const la_gemm *g, float *y, const float *bias, const float *res,
                       const kk_vf *acc, int64_t i0, int64_t j0, int mr, int64_t nr, int first,
                       int last)
{
	if (tile_store_fast(g, y, bias, res, acc, i0, j0, mr, nr, first, last))
		return;
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
				if (res) {
					const float *rp = res + (yp - y);
					x += full ? kk_load(rp) : kk_load_n(rp, jn);
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

/* Interleaves the low (zip_lo) or high (zip_hi) halves of a and b. */
static inline kk_vf la_zip_lo(kk_vf a, kk_vf b)
{
#if KK_VL == 16
	return __builtin_shufflevector(a, b, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
#elif KK_VL == 8
	return __builtin_shufflevector(a, b, 0, 8, 1, 9, 2, 10, 3, 11);
#else
	return __builtin_shufflevector(a, b, 0, 4, 1, 5);
#endif
}

static inline kk_vf la_zip_hi(kk_vf a, kk_vf b)
{
#if KK_VL == 16
	return __builtin_shufflevector(a, b, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15,
	                               31);
#elif KK_VL == 8
	return __builtin_shufflevector(a, b, 4, 12, 5, 13, 6, 14, 7, 15);
#else
	return __builtin_shufflevector(a, b, 2, 6, 3, 7);
#endif
}

/* Transposes the VL x VL block r[row][lane] in place: log2(VL) rounds of
 * r'[2i] = zip_lo(r[i], r[i + VL/2]), r'[2i+1] = zip_hi(...). */
static inline __attribute__((always_inline)) void la_transpose(kk_vf *r)
{
	for (int round = 1; round < KK_VL; round *= 2) {
		kk_vf n[KK_VL];
#pragma GCC unroll 8
		for (int i = 0; i < KK_VL / 2; i++) {
			n[2 * i] = la_zip_lo(r[i], r[i + KK_VL / 2]);
			n[2 * i + 1] = la_zip_hi(r[i], r[i + KK_VL / 2]);
		}
#pragma GCC unroll 16
		for (int i = 0; i < KK_VL; i++)
			r[i] = n[i];
	}
}

/* tile_store for a transposed product (KK_LA_TRANS): the partial sums of
 * the K blocks stay in the tile's slot of the thread's buffer `part` (in
 * register layout), and only the last block writes Y, each column j of the
 * tile (a vector after a VL x VL transpose) as mr contiguous floats of Y's
 * row j. room: the rows from i0 on that this task writes later (the next
 * tile row of its block), where a whole vector may be stored early. */
static void tile_store_t(const la_gemm *g, float *y, const float *bias, const float *res,
                         kk_vf *acc, float *part, int64_t i0, int64_t j0, int mr, int64_t nr,
                         int64_t room, int first, int last)
{
	int nv = (int)la_cdiv(nr, KK_VL);
	if (!first)
		for (int i = 0; i < mr; i++)
			for (int v = 0; v < nv; v++)
				acc[i * KK_NV + v] += kk_load(part + (i * KK_NV + v) * KK_VL);
	if (!last) {
		for (int i = 0; i < mr; i++)
			for (int v = 0; v < nv; v++)
				kk_store(part + (i * KK_NV + v) * KK_VL, acc[i * KK_NV + v]);
		return;
	}
	kk_vf alpha = kk_splat((float)g->alpha);
	for (int v = 0; v < nv; v++) {
		int64_t jn = la_min(nr - v * KK_VL, KK_VL);
		kk_vf bv = !bias ? (kk_vf){0}
		           : jn == KK_VL ? kk_load(bias + j0 + v * KK_VL)
		                         : kk_load_n(bias + j0 + v * KK_VL, jn);
		for (int r0 = 0; r0 < mr; r0 += KK_VL) {
			int rows = (int)la_min(KK_VL, mr - r0);
			kk_vf t[KK_VL];
			for (int r = 0; r < KK_VL; r++)
				t[r] = r < rows ? acc[(r0 + r) * KK_NV + v] * alpha + bv : (kk_vf){0};
			la_transpose(t);
			int whole = r0 + KK_VL <= room;
			for (int64_t j = 0; j < jn; j++) {
				float *yc = y + (j0 + v * KK_VL + j) * g->y_rs + i0 + r0;
				const float *rc = res ? res + (yc - y) : NULL;
				kk_vf x = t[j];
				if (whole) {
					if (rc)
						x += kk_load(rc);
					kk_store(yc, act_v(g, x));
					continue;
				}
				/* the tile's last rows of its block: masked */
				if (rc)
					x += kk_load_n(rc, rows);
				kk_store_n(yc, act_v(g, x), rows);
			}
		}
	}
}

/* The micro-kernel on tile (ir, jr) of a block (A panels ap, B panels bp),
 * fetching ahead what the next tiles read from memory: a pre-packed
 * operand (weights) is read from memory only by the first tiles that use a
 * panel. B's next panel is fetched by the first full tiles of the current
 * one, a line per step each; A's next panel, during the first column of
 * tiles, by the tile before it. */
static inline void ukr_call(const la_gemm *g, const float *ap, const float *bp, int64_t kc,
                            int64_t ir, int64_t jr, int64_t mc, int64_t nc, int mr, int nv,
                            kk_vf *acc)
{
	const float *a = ap + ir * kc, *b = bp + jr * kc;
	if (mr == KK_MR) {
		int64_t span = kc * LA_LINE, t = ir / KK_MR;
		if (g->b_mode == KK_LA_OP_PACKED && jr + KK_NR < nc && t * span < kc * KK_NR) {
			const float *next = b + kc * KK_NR;
			ukr_pf[nv - 1](kc, a, b, acc, next + t * span, next + kc * KK_NR);
			return;
		}
		if (g->a_mode == KK_LA_OP_PACKED && jr == 0 && ir + KK_MR < mc) {
			const float *next = a + kc * KK_MR;
			ukr_pf[nv - 1](kc, a, b, acc, next, next + kc * KK_MR);
			return;
		}
	}
	ukr_tab[mr - 1][nv - 1](kc, a, b, acc);
}

/* Tiles of one output row in gemm_block_implicit: a row of w positions
 * splits into la_row_tiles(w) near-equal tiles of at most MR. */
static inline int64_t la_row_tiles(int64_t w)
{
	return la_cdiv(w, KK_MR);
}

/* gemm_block of a transposed Conv whose A (im2col^T) is not packed but read
 * in place from the phase planes a (KK_LA_OP_IMPLICIT): within an output
 * row, tap p of a tile starting at position f reads the contiguous floats
 * a[toff[p] + f + i] (phase_tap). So the M block ib is whole output rows,
 * each split into near-equal tiles, and the micro-kernel takes the tap
 * table instead of a packed panel. */
static void gemm_block_implicit(const la_gemm *g, const float *a, const float *bp, float *y,
                                const float *bias, const float *res, float *psum, int64_t ib,
                                int64_t k0, int64_t kc, int64_t j0, int64_t nc)
{
	const la_geo *q = &g->geo;
	int first = k0 == 0, last = k0 + kc >= g->k;
	int64_t w = q->out[2], i0 = ib * g->mc, mc = la_min(g->mc, g->m - i0);
	int64_t ntile = la_row_tiles(w), mpan = g->mc / w * ntile;
	int64_t toff[KK_GEMM_KC_MAX(KK_VL)];
	/* tap p + ks is tap p of the next channel */
	for (int64_t p = 0; p < kc; p++)
		toff[p] = p >= q->ks ? toff[p - q->ks] + q->chan
		                     : (k0 + p) / q->ks * q->chan + phase_tap(q, (k0 + p) % q->ks);
	for (int64_t jr = 0; jr < nc; jr += KK_NR) {
		int64_t nr = la_min(KK_NR, nc - jr);
		int nv = (int)la_cdiv(nr, KK_VL);
		const float *b = bp + jr * kc, *next = b + kc * KK_NR;
		int64_t t = 0;
		for (int64_t r = i0; r < i0 + mc; r += w) {
			int64_t oh = r / w % q->out[1], od = r / (w * q->out[1]);
			const float *row = a + (od * q->q[1] + oh) * q->q[2];
			for (int64_t e = 0, f = 0; e < ntile; e++, t++) {
				int mr = (int)(w / ntile + (e < w % ntile));
				/* the first tiles fetch B's next panel, a line per step */
				int64_t span = kc * LA_LINE;
				bool pf = jr + KK_NR < nc && t * span < kc * KK_NR;
				kk_vf acc[KK_MR * KK_NV];
				uki_tab[mr - 1][nv - 1](kc, row + f, toff, b, acc, pf ? next + t * span : NULL,
				                        next + kc * KK_NR);
				tile_store_t(g, y, bias, res, acc,
				             psum + (jr / KK_NR * mpan + t) * KK_MR * KK_NR, r + f, j0 + jr, mr,
				             nr, i0 + mc - (r + f), first, last);
				f += mr;
			}
		}
	}
}

/* One operand block of a task: the M block ib against the packed B block
 * bp (depth [k0, k0+kc), columns [j0, j0+nc)), every micro-tile of it;
 * psum: the partial sums of a transposed product (tile_store_t). */
static void gemm_block(const la_gemm *g, const float *a, const float *bp, float *y,
                       const float *bias, const float *res, float *abuf, float *psum, int64_t ib,
                       int64_t k0, int64_t kc, int64_t j0, int64_t nc)
{
	if (g->a_mode == KK_LA_OP_IMPLICIT) {
		gemm_block_implicit(g, a, bp, y, bias, res, psum, ib, k0, kc, j0, nc);
		return;
	}
	int first = k0 == 0, last = k0 + kc >= g->k;
	int64_t i0 = ib * g->mc, mc = la_min(g->mc, g->m - i0), mpan = la_cdiv(g->mc, KK_MR);
	const float *ap = abuf;
	if (g->a_mode == KK_LA_OP_PACKED)
		ap = a + k0 * g->mpad + i0 * kc;
	else if (g->a_mode == KK_LA_OP_IM2COL)
		pack_conv(g, a, k0, kc, i0, mc, KK_MR, abuf);
	else
		pack_a(g, a, i0, mc, k0, kc, abuf);
	for (int64_t jr = 0; jr < nc; jr += KK_NR) {
		int64_t nr = la_min(KK_NR, nc - jr);
		int nv = (int)la_cdiv(nr, KK_VL);
		for (int64_t ir = 0; ir < mc; ir += KK_MR) {
			int mr = (int)la_min(KK_MR, mc - ir);
			kk_vf acc[KK_MR * KK_NV];
			if (g->trans) {
				ukr_call(g, ap, bp, kc, ir, jr, mc, nc, mr, nv, acc);
				tile_store_t(g, y, bias, res, acc,
				             psum + (jr / KK_NR * mpan + ir / KK_MR) * KK_MR * KK_NR, i0 + ir,
				             j0 + jr, mr, nr, ir + mr < mc ? mc - ir : mr, first, last);
				continue;
			}
			/* Y's tile is read back (after the first K block) and written
			 * after the micro-kernel: start fetching it now */
			float *yt = y + (i0 + ir) * g->y_rs + j0 + jr;
			for (int i = 0; i < mr; i++) {
				__builtin_prefetch(yt + i * g->y_rs, 1);
				__builtin_prefetch(yt + i * g->y_rs + nr - 1, 1);
			}
			ukr_call(g, ap, bp, kc, ir, jr, mc, nc, mr, nv, acc);
			tile_store(g, y, bias, res, acc, i0 + ir, j0 + jr, mr, nr, first, last);
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
	float *bbuf = abuf + g->a_scratch, *psum = bbuf + g->b_scratch;
	for (int64_t t = begin; t < end; t++) {
		int64_t part = t % g->split, rest = t / g->split;
		int64_t jc = rest % g->n_jc, bi = rest / g->n_jc;
		int64_t ib0 = g->n_ic * part / g->split, ib1 = g->n_ic * (part + 1) / g->split;
		int64_t off[4];
		batch_offsets(g, bi, off);
		const float *a = (const float *)g->a + off[0], *b = (const float *)g->b + off[1];
		float *y = (float *)g->y + off[2];
		const float *bias = g->bias ? (const float *)g->bias + off[3] : NULL;
		const float *res = g->res ? (const float *)g->res + off[2] : NULL;
		int64_t j0 = jc * g->nc, nc = la_min(g->nc, g->n - j0);
		if (g->b_mode == KK_LA_OP_PACKED) {
			for (int64_t ib = ib0; ib < ib1; ib++)
				for (int64_t k0 = 0; k0 < g->k; k0 += g->kc) {
					int64_t kc = la_min(g->kc, g->k - k0);
					gemm_block(g, a, b + k0 * g->npad + j0 * kc, y, bias, res, abuf, psum, ib,
					           k0, kc, j0, nc);
				}
			continue;
		}
		for (int64_t k0 = 0; k0 < g->k && ib0 < ib1; k0 += g->kc) {
			int64_t kc = la_min(g->kc, g->k - k0);
			if (g->b_mode == KK_LA_OP_IM2COL)
				pack_conv(g, b, k0, kc, j0, nc, KK_NR, bbuf);
			else
				pack_b(g, b, k0, kc, j0, nc, bbuf);
			for (int64_t ib = ib0; ib < ib1; ib++)
				gemm_block(g, a, bbuf, y, bias, res, abuf, psum, ib, k0, kc, j0, nc);
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
		const float *res = g->res ? (const float *)g->res + off[2] : NULL;
		const float *c = g->c;
		for (int64_t i = 0; i < g->m; i++)
			for (int64_t j = 0; j < g->n; j++) {
				int64_t yi = g->trans ? j * g->y_rs + i : i * g->y_rs + j;
				float x = bias ? bias[g->trans ? j : i] : 0.0f;
				if (c)
					x += (float)g->beta * c[i * g->c_rs + j * g->c_cs];
				if (res)
					x += res[yi];
				y[yi] = act_s(g, x);
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
	/* GEMV-like (few rows): the time goes to streaming B, so give every
	 * thread two N blocks to claim (one that starts late then costs half
	 * a block, not a whole one) */
	if (thr > 1 && mpan <= 2 && g->nbatch * best_jc < 2 * thr)
		best_jc = la_min(max_jc, la_cdiv(2 * thr, g->nbatch));
	g->nc = la_cdiv(la_cdiv(g->n, best_jc), KK_NR) * KK_NR;
	g->n_jc = la_cdiv(g->n, g->nc);
	if (best_split > 1) {
		/* M blocks: a whole number per chunk (of whole output rows, for
		 * an A read in place) */
		int64_t per = la_cdiv(la_cdiv(g->m, g->mc), best_split);
		int64_t unit = g->a_mode == KK_LA_OP_IMPLICIT ? g->geo.out[2] : KK_MR;
		g->mc = la_min(g->mc, la_cdiv(la_cdiv(g->m, unit), per * best_split) * unit);
	}
	g->n_ic = la_cdiv(g->m, g->mc);
	g->split = la_min(best_split, g->n_ic);
	g->a_scratch = g->a_mode == KK_LA_OP_PACKED || g->a_mode == KK_LA_OP_IMPLICIT
	                   ? 0
	                   : la_cdiv(g->mc, KK_MR) * KK_MR * g->kc + KK_VL;
	g->b_scratch = g->b_mode == KK_LA_OP_PACKED ? 0 : g->kc * g->nc + KK_VL;
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
 * with the B blocks packed from the planes. X is t[B], W is t[A]; with
 * KK_LA_TRANS, Y^T = im2col^T W^T: X is t[A] (A blocks packed from the
 * planes) and W t[B]. */
KK_KERNEL(kk_conv_f32)
{
	la_gemm g;
	la_parse(&g, ip, fp, t);
	const la_geo *q = &g.geo;
	float *tb = (float *)slot(t, ip[KK_LA_T_SCRATCH]);
	if (q->os == 0 || q->m == 0)
		return;
	kk_store(tb + q->c * q->chan, (kk_vf){0});
	/* a transposed product (KK_LA_TRANS) reads X as A */
	const float *x = g.trans ? g.a : g.b;
	for (int64_t nb = 0; nb < q->n; nb++) {
		phase_args pa = {.q = q, .x = x + nb * q->c * q->is, .tb = tb};
		kk_parallel(h, q->c, phase_task, &pa);
		la_gemm gi = g;
		if (g.trans)
			gi.a = tb;
		else
			gi.b = tb;
		gi.y = (float *)g.y + nb * q->m * q->os;
		gi.res = g.res ? (const float *)g.res + nb * q->m * q->os : NULL;
		gemm_run(&gi, h);
	}
}

/* ---- f32 depthwise convolution ------------------------------------------- */

/* The work of kk_conv_dw_f32. An item is (image, channel, output depth, band
 * of rb output rows): it fills the window of the channel's phase planes its
 * band reads (ni depth rows x nj = rb + ext1 height rows per plane, small
 * enough to stay in L1 while it is read) into thread scratch, then
 * computes the band from the window. Small 2-D planes of stride 1 whose
 * output has the input's size are computed direct instead: output f
 * reads input f + dtap[tap] for every tap, with the padding masked, so
 * nothing is copied (see dw_task). */
typedef struct dw_plan {
	const la_gemm *g;
	const float *xlo, *xend; /* X: vector reads of a plane may run on into it */
	int64_t rb, nband;       /* output rows per band (KK_LA_MC), bands per depth */
	int64_t ni, nj, ext1;    /* window rows: depth, height (ext1: height taps' reach) */
	int64_t bplane, bchan;   /* floats per window plane (VL of slack), all planes */
	bool flat, k33, direct;  /* see dw_task */
	int64_t nvec, dlo, dhi;  /* direct: vectors per plane, reach of the reads */
} dw_plan;

/* Element offset of tap `tap` in a band's window, output (0, 0, 0) of the
 * band (phase_tap for the window's plane size). */
static int64_t dw_tap(const la_geo *q, const dw_plan *p, int64_t tap)
{
	int64_t kk[3] = {tap / (q->k[1] * q->k[2]), tap / q->k[2] % q->k[1], tap % q->k[2]};
	int64_t slot = 0, pos[3];
	for (int a = 0; a < 3; a++) {
		int64_t u = kk[a] * q->dl[a];
		slot = slot * q->nph[a] + u % q->s[a];
		pos[a] = u / q->s[a];
	}
	return slot * p->bplane + (pos[0] * p->nj + pos[1]) * q->q[2] + pos[2];
}

/* The odd lanes of the concatenation a:b. */
static inline kk_vf la_odd(kk_vf a, kk_vf b)
{
#if KK_VL == 16
	return __builtin_shufflevector(a, b, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
#elif KK_VL == 8
	return __builtin_shufflevector(a, b, 1, 3, 5, 7, 9, 11, 13, 15);
#else
	return __builtin_shufflevector(a, b, 1, 3, 5, 7);
#endif
}

/* phase_fill_win for a band's window when the width stride is 1 or 2.
 * Lane l of width phase rw is input column l*s2 + rw - pb2, so from loads
 * at column -pb2 of the input row, phase 0 is every lane (s2 = 1) or the
 * even lanes, phase 1 the odd lanes: each input row is loaded once for
 * both phases, and written as whole vectors with the padding lanes masked
 * to zero; a row of several vectors at stride 1 is instead copied from its
 * first column between zero vectors (aligned loads). Rows whose loads
 * would leave X take the general path. */
static void dw_fill(const dw_plan *p, const float *x, float *win, int64_t od, int64_t oh0,
                    int64_t nrows)
{
	const la_geo *q = &p->g->geo;
	int64_t s1 = q->s[1], s2 = q->s[2], q2 = q->q[2], in1 = q->in[1], in2 = q->in[2];
	int64_t nv = la_cdiv(q2, KK_VL), need = (nv + 1) * KK_VL * s2, nw = q->nph[2];
	kk_vi lane, lo[2], hi[2];
	for (int i = 0; i < KK_VL; i++)
		lane[i] = i;
	int64_t l0[2], l1[2];
	for (int rw = 0; rw < nw; rw++) {
		int64_t off = rw - q->pb[2];
		l0[rw] = off >= 0 ? 0 : la_cdiv(-off, s2);
		l1[rw] = in2 - off <= 0 ? 0 : la_cdiv(in2 - off, s2);
		l1[rw] = la_min(l1[rw], q2);
		l0[rw] = la_min(l0[rw], l1[rw]);
		lo[rw] = (kk_vi){0} + (int)l0[rw];
		hi[rw] = (kk_vi){0} + (int)l1[rw];
	}
	/* rows in input order (height phases inner), for the prefetchers */
	for (int64_t rd = 0; rd < q->nph[0]; rd++)
		for (int64_t i = 0; i < p->ni; i++) {
			int64_t id = (od + i) * q->s[0] + rd - q->pb[0];
			/* offsets from the start of X: the loads start pb2 columns
			 * before the row, which may lie before X */
			int64_t xr = (x - p->xlo) + id * in1 * in2 - q->pb[2];
			bool dok = id >= 0 && id < q->in[0];
			for (int64_t j = 0; j < nrows; j++)
				for (int64_t rh = 0; rh < q->nph[1]; rh++) {
					int64_t ih = (oh0 + j) * s1 + rh - q->pb[1];
					float *row = win + (rd * q->nph[1] + rh) * nw * p->bplane +
					             (i * p->nj + j) * q2;
					if (!dok || ih < 0 || ih >= in1) {
						for (int rw = 0; rw < nw; rw++)
							for (int64_t t = 0; t < nv; t++)
								kk_store(row + rw * p->bplane + t * KK_VL, (kk_vf){0});
						continue;
					}
					int64_t so = xr + ih * in2;
					if (so < 0 || need > (p->xend - p->xlo) - so) {
						for (int rw = 0; rw < nw; rw++) {
							float *r = row + rw * p->bplane;
							const float *sr = p->xlo + so + rw + l0[rw] * s2;
							la_zero_row(r, l0[rw], true);
							la_gather_row(r + l0[rw], sr, l1[rw] - l0[rw], s2, p->xend - sr, true);
							la_zero_row(r + l1[rw], q2 - l1[rw], true);
						}
						continue;
					}
					const float *src = p->xlo + so;
					if (s2 == 1 && nv > 1) {
						/* wide rows: zero vectors around loads from the
						 * first input column (aligned where rows are) */
						la_zero_row(row, l0[0], true);
						for (int64_t l = l0[0]; l < l1[0]; l += KK_VL)
							kk_store(row + l, kk_load(src + l));
						for (int64_t l = l1[0]; l < q2; l += KK_VL)
							kk_store(row + l, (kk_vf){0});
						continue;
					}
					for (int64_t t = 0; t < nv; t++) {
						kk_vi l = lane + (int)(t * KK_VL);
						if (s2 == 1) {
							kk_vi m = (l >= lo[0]) & (l < hi[0]);
							kk_vf v = kk_load(src + t * KK_VL);
							kk_store(row + t * KK_VL, (kk_vf)(m & (kk_vi)v));
							continue;
						}
						kk_vf a = kk_load(src + 2 * t * KK_VL);
						kk_vf b = kk_load(src + 2 * t * KK_VL + KK_VL);
						kk_vi m = (l >= lo[0]) & (l < hi[0]);
						kk_store(row + t * KK_VL, (kk_vf)(m & (kk_vi)la_even(a, b)));
						if (nw > 1) {
							m = (l >= lo[1]) & (l < hi[1]);
							kk_vf odd = (kk_vf)(m & (kk_vi)la_odd(a, b));
							kk_store(row + p->bplane + t * KK_VL, odd);
						}
					}
				}
		}
}

/* One block of R rows x C vectors: src is the window at the block's first
 * output, rs its row stride; y the block's output, ys its row stride, res
 * the residual at y's offsets (or NULL); epi: add res and apply the
 * activation. The block kernels store whole vectors only (no calls, so the
 * accumulators stay in registers); dw_part takes the blocks whose last
 * vectors must be stored in part. n: the valid columns of a row (the last
 * vector may be partial); room: floats from y that may be stored (dw_put
 * stores a partial vector whole when the excess lands on outputs stored
 * later). */
typedef struct dw_blk {
	const la_gemm *g;
	const float *src, *w, *res;
	const int64_t *toff;
	const int32_t *mask; /* direct: the block's tap masks */
	float *y;
	int64_t rs, ys, ks, n, room;
	float bias;
	bool epi;
} dw_blk;

/* Stores x at y + at (cols valid lanes) after the epilogue. */
static void dw_put(const dw_blk *b, int64_t at, kk_vf x, int64_t cols)
{
	bool whole = cols >= KK_VL || at + KK_VL <= b->room;
	if (b->epi) {
		if (b->res)
			x += whole ? kk_load(b->res + at) : kk_load_n(b->res + at, cols);
		x = act_v(b->g, x);
	}
	if (whole)
		kk_store(b->y + at, x);
	else
		kk_store_n(b->y + at, x, cols);
}

/* The block's epilogue and whole-vector stores, each step over all of the
 * block. Activations other than Relu and Clip go through dw_part (they may
 * call libm). */
static inline __attribute__((always_inline)) void dw_store(int R, int C, const dw_blk *b,
                                                         kk_vf acc[4][2])
{
	if (b->epi && b->res)
#pragma GCC unroll 4
		for (int r = 0; r < R; r++)
#pragma GCC unroll 2
			for (int c = 0; c < C; c++)
				acc[r][c] += kk_load(b->res + r * b->ys + c * KK_VL);
	int act = b->epi ? b->g->act : KK_LA_ACT_NONE;
	if (act == KK_LA_ACT_RELU || act == KK_LA_ACT_CLIP) {
		bool relu = act == KK_LA_ACT_RELU;
		kk_vf lo = la_splat(relu ? 0.0f : (float)b->g->lo);
		kk_vf hi = la_splat(relu ? KK_INFINITY : (float)b->g->hi);
#pragma GCC unroll 4
		for (int r = 0; r < R; r++)
#pragma GCC unroll 2
			for (int c = 0; c < C; c++)
				acc[r][c] = kk_vmin(kk_vmax(acc[r][c], lo), hi);
	}
#pragma GCC unroll 4
	for (int r = 0; r < R; r++)
#pragma GCC unroll 2
		for (int c = 0; c < C; c++)
			kk_store(b->y + r * b->ys + c * KK_VL, acc[r][c]);
}

/* Any taps (offsets toff): taps outer, so the R*C sums are independent. */
static inline __attribute__((always_inline)) void dw_body(int R, int C, const dw_blk *b)
{
	kk_vf acc[4][2];
#pragma GCC unroll 4
	for (int r = 0; r < R; r++)
#pragma GCC unroll 2
		for (int c = 0; c < C; c++)
			acc[r][c] = la_splat(b->bias);
	for (int64_t tp = 0; tp < b->ks; tp++) {
		kk_vf wv = la_splat(b->w[tp]);
		const float *s = b->src + b->toff[tp];
#pragma GCC unroll 4
		for (int r = 0; r < R; r++)
#pragma GCC unroll 2
			for (int c = 0; c < C; c++)
				acc[r][c] += wv * kk_load(s + r * b->rs + c * KK_VL);
	}
	dw_store(R, C, b, acc);
}

/* 3x3 taps, height dilation 1, height stride S (1 or 2): tap (kh, kw) of
 * output row r reads row r + kh/S of height phase kh%S, so a row shared by
 * several output rows of the block is loaded once per kw (S = 1: R+2 rows
 * of loads for 3R rows of taps). toff[kw] is tap (0, kw); toff[3] - toff[0]
 * the offset of height phase 1. */
static inline __attribute__((always_inline)) void dw3_body(int S, int R, int C, const dw_blk *b)
{
	kk_vf acc[4][2];
#pragma GCC unroll 4
	for (int r = 0; r < R; r++)
#pragma GCC unroll 2
		for (int c = 0; c < C; c++)
			acc[r][c] = la_splat(b->bias);
	int64_t pst = b->toff[3] - b->toff[0];
	/* fully unrolled: the loads of one address are merged */
#pragma GCC unroll 3
	for (int kh = 0; kh < 3; kh++)
#pragma GCC unroll 3
		for (int kw = 0; kw < 3; kw++) {
			kk_vf wv = la_splat(b->w[kh * 3 + kw]);
			const float *s = b->src + b->toff[kw] + kh % S * pst;
#pragma GCC unroll 4
			for (int r = 0; r < R; r++)
#pragma GCC unroll 2
				for (int c = 0; c < C; c++)
					acc[r][c] += wv * kk_load(s + (r + kh / S) * b->rs + c * KK_VL);
		}
	dw_store(R, C, b, acc);
}

/* Direct (dw_task): R vectors VL apart, each tap one masked load from
 * the input (mask (r, tap) at mask + (r*ks + tap)*VL). */
static inline __attribute__((always_inline)) void dwd_body(int R, const dw_blk *b)
{
	kk_vf acc[4][2];
#pragma GCC unroll 4
	for (int r = 0; r < R; r++)
		acc[r][0] = la_splat(b->bias);
	for (int64_t tp = 0; tp < b->ks; tp++) {
		kk_vf wv = la_splat(b->w[tp]);
		const float *s = b->src + b->toff[tp];
#pragma GCC unroll 4
		for (int r = 0; r < R; r++) {
			kk_vi m;
			memcpy(&m, b->mask + (r * b->ks + tp) * KK_VL, sizeof m);
			acc[r][0] += wv * (kk_vf)(m & (kk_vi)kk_load(s + r * KK_VL));
		}
	}
	dw_store(R, 1, b, acc);
}

typedef void (*dw_fn)(const dw_blk *b);

#define KK_DW(R, C)                           \
	static void dw_##R##_##C(const dw_blk *b) \
	{                                         \
		dw_body(R, C, b);                     \
	}
/* 4 rows only (a band's last rows take dw_body): each is large, and
 * every variant is compiled into a model that has a depthwise Conv */
#define KK_DW3(S, C)                             \
	static void dw3s##S##_##C(const dw_blk *b)   \
	{                                            \
		dw3_body(S, 4, C, b);                    \
	}
KK_DW3(1, 1)
KK_DW3(1, 2)
KK_DW3(2, 1)
KK_DW3(2, 2)
#define KK_DWD(R)                         \
	static void dwd_##R(const dw_blk *b)  \
	{                                     \
		dwd_body(R, b);                   \
	}
KK_DWD(1)
KK_DWD(2)
KK_DWD(3)
KK_DWD(4)
KK_DW(1, 1)
KK_DW(1, 2)
KK_DW(2, 1)
KK_DW(2, 2)
KK_DW(3, 1)
KK_DW(3, 2)
KK_DW(4, 1)
KK_DW(4, 2)

/* dw_tab[rows - 1][vectors - 1]; dw3_tab[stride - 1][vectors - 1] (4 rows);
 * dwd_tab[vectors - 1] */
static const dw_fn dwd_tab[4] = {dwd_1, dwd_2, dwd_3, dwd_4};
static const dw_fn dw_tab[4][2] = {
	{dw_1_1, dw_1_2}, {dw_2_1, dw_2_2}, {dw_3_1, dw_3_2}, {dw_4_1, dw_4_2},
};
static const dw_fn dw3_tab[2][2] = {{dw3s1_1, dw3s1_2}, {dw3s2_1, dw3s2_2}};

/* Whether the block kernels apply g's activation themselves. */
static bool dw_fast_act(const la_gemm *g)
{
	return g->act == KK_LA_ACT_NONE || g->act == KK_LA_ACT_RELU || g->act == KK_LA_ACT_CLIP;
}

/* A block of R rows x C vectors (fn) whose whole vectors would reach past
 * b->room, or whose activation the block kernels do not apply: computed
 * into a tile, then stored through dw_put. */
static void dw_part(dw_blk *b, dw_fn fn, int R, int C)
{
	float tile[4 * 2 * KK_VL];
	dw_blk t = *b;
	t.y = tile;
	t.ys = 2 * KK_VL;
	t.epi = false;
	fn(&t);
	for (int r = 0; r < R; r++)
		for (int c = 0; c < C && c * KK_VL < b->n; c++)
			dw_put(b, r * b->ys + c * KK_VL, kk_load(tile + r * 2 * KK_VL + c * KK_VL),
			       b->n - c * KK_VL);
}

/* Flat: the band's rows as one line at the window's row stride rs (output
 * (r, ow) at r*rs + ow, the rs - o2 columns between rows discarded), so
 * several short rows share a vector; the line goes to ct, its rows are
 * packed densely into cy, and cy is stored to y in whole vectors (the last
 * one overlapping the one before), with the epilogue. */
static void dw_flat(dw_blk *b, const float *win, float *ct, float *cy, int64_t rows, int64_t o2,
                    float *y, const float *res)
{
	const la_geo *q = &b->g->geo;
	int64_t rs = q->q[2], nv = la_cdiv((rows - 1) * rs + o2, KK_VL), len = rows * o2;
	b->epi = false;
	b->res = NULL;
	b->rs = b->ys = 2 * KK_VL;
	for (int64_t v = 0; v < nv; v += 8) {
		int64_t k = la_min(8, nv - v), even = k & ~(int64_t)1;
		b->src = win + v * KK_VL;
		b->y = ct + v * KK_VL;
		b->n = b->room = 2 * KK_VL;
		if (even)
			dw_tab[even / 2 - 1][1](b);
		if (k & 1) {
			b->src += even * KK_VL;
			b->y += even * KK_VL;
			b->n = b->room = KK_VL;
			dw_tab[0][0](b);
		}
	}
	for (int64_t r = 0; r < rows; r++)
		for (int64_t l = 0; l < o2; l += KK_VL)
			kk_store(cy + r * o2 + l, kk_load(ct + r * rs + l));
	b->epi = true;
	b->res = res;
	b->y = y;
	b->room = len;
	if (len < KK_VL) {
		dw_put(b, 0, kk_load(cy), len);
		return;
	}
	for (int64_t l = 0; l < len; l += KK_VL) {
		int64_t at = la_min(l, len - KK_VL);
		kk_vf x = kk_load(cy + at);
		if (res)
			x += kk_load(res + at);
		kk_store(y + at, act_v(b->g, x));
	}
}

/* Direct: the offset of tap `tap` in the input plane (2-D, stride 1, the
 * output the size of the input: output f reads input f + offset). */
static int64_t dw_dtap(const la_geo *q, int64_t tap)
{
	int64_t dh = tap / q->k[2] * q->dl[1] - q->pb[1], dw = tap % q->k[2] * q->dl[2] - q->pb[2];
	return dh * q->in[2] + dw;
}

/* Direct: per output vector of the plane (at v*VL, the last one at
 * os - VL) and tap, the lanes whose input lies inside the plane (all
 * ones) rather than in the padding or past the plane. */
static void dw_masks(const dw_plan *p, int32_t *mask)
{
	const la_geo *q = &p->g->geo;
	int64_t o2 = q->out[2], os = q->os, ks = q->ks;
	kk_vi lane;
	for (int i = 0; i < KK_VL; i++)
		lane[i] = i;
	for (int64_t v = 0; v < p->nvec; v++) {
		int64_t f0 = v < os / KK_VL ? v * KK_VL : os >= KK_VL ? os - KK_VL : 0;
		int64_t h = f0 / o2, w = f0 % o2;
		kk_vi oh, ow;
		for (int i = 0; i < KK_VL; i++) {
			oh[i] = (int32_t)h;
			ow[i] = (int32_t)w;
			if (++w == o2)
				w = 0, h++;
		}
		kk_vi in = lane + (int32_t)f0 < (int32_t)os;
		for (int64_t tp = 0; tp < ks; tp++) {
			kk_vi ih = oh + (int32_t)(tp / q->k[2] * q->dl[1] - q->pb[1]);
			kk_vi iw = ow + (int32_t)(tp % q->k[2] * q->dl[2] - q->pb[2]);
			kk_vi m = in & (ih >= 0) & (ih < (int32_t)q->in[1]) & (iw >= 0) &
			          (iw < (int32_t)q->in[2]);
			memcpy(mask + (v * ks + tp) * KK_VL, &m, sizeof m);
		}
	}
}

/* Direct: the plane's output vectors straight from the input, up to 4 at
 * a time, every tap a masked load at its offset; the last vector (os -
 * VL) overlaps the one before it and is stored whole. */
static void dw_direct(dw_blk *b, const int64_t *dtap, const int32_t *mask, const float *x,
                      float *y, const float *res)
{
	int64_t os = b->g->geo.os, ks = b->ks, nfull = os / KK_VL;
	b->toff = dtap;
	b->epi = true;
	b->ys = b->n = KK_VL;
	for (int64_t v = 0; v < nfull; v += 4) {
		b->src = x + v * KK_VL;
		b->y = y + v * KK_VL;
		b->res = res ? res + v * KK_VL : NULL;
		b->mask = mask + v * ks * KK_VL;
		b->room = os - v * KK_VL;
		int R = (int)la_min(4, nfull - v);
		if (dw_fast_act(b->g))
			dwd_tab[R - 1](b);
		else
			dw_part(b, dwd_tab[R - 1], R, 1);
	}
	if (os % KK_VL) {
		int64_t at = os >= KK_VL ? os - KK_VL : 0;
		b->src = x + at;
		b->y = y + at;
		b->res = res ? res + at : NULL;
		b->mask = mask + nfull * ks * KK_VL;
		b->n = b->room = os - at;
		if (os >= KK_VL && dw_fast_act(b->g))
			dwd_tab[0](b);
		else
			dw_part(b, dwd_tab[0], 1, 1);
	}
}

/* Thread scratch (lower_linalg.c sizes it): the window's tap offsets, for
 * direct planes dtap and the masks (ks and nvec*ks*VL), the window
 * (bchan + VL floats), then for flat bands ct (rb*q2 + VL) and cy
 * (rb*o2 + VL). A plane is computed direct (KK_LA_NC) when its reads stay
 * inside X (all but the first and last few planes of X). Otherwise the
 * band's window is filled and the band computed flat when that packs the
 * vectors better than row by row (short rows), else in blocks of up to 4
 * rows x 2 vectors: dw3_body for 4 rows where the taps are 3x3 with height
 * stride 1 or 2 and dilation 1, else dw_body. Blocks go right to left in a row: a
 * whole vector stored past a row's end lands on the next row's first
 * columns, which are stored later. */
static void dw_task(void *arg, int64_t begin, int64_t end, void *scratch)
{
	const dw_plan *p = arg;
	const la_gemm *g = p->g;
	const la_geo *q = &g->geo;
	int64_t nd = p->direct ? q->ks : 0, *toff = scratch, *dtap = toff + q->ks;
	int32_t *mask = (int32_t *)(dtap + nd);
	float *win = (float *)(mask + nd * p->nvec * KK_VL);
	float *ct = win + p->bchan + KK_VL;
	float *cy = ct + p->rb * q->q[2] + KK_VL;
	for (int64_t tp = 0; tp < q->ks; tp++)
		toff[tp] = dw_tap(q, p, tp);
	for (int64_t tp = 0; tp < nd; tp++)
		dtap[tp] = dw_dtap(q, tp);
	if (p->direct)
		dw_masks(p, mask);
	int64_t rs = q->q[2], o1 = q->out[1], o2 = q->out[2];
	/* item (pl = image*M + m, od, band); cin: the input channel, mm = m % mg */
	int64_t band = begin % p->nband, od = begin / p->nband % q->out[0];
	int64_t pl = begin / (p->nband * q->out[0]), m = pl % q->m;
	int64_t cin = pl / q->m * q->c + m / q->mg, mm = m % q->mg;
	for (int64_t it = begin; it < end; it++) {
		if (it > begin && ++band == p->nband) {
			band = 0;
			if (++od == q->out[0]) {
				od = 0;
				pl++;
				if (++m == q->m)
					m = mm = 0, cin++;
				else if (++mm == q->mg)
					mm = 0, cin++;
			}
		}
		int64_t oh0 = band * p->rb, rows = la_min(p->rb, o1 - oh0);
		const float *x = (const float *)g->b + cin * q->is;
		int64_t yo = pl * q->os + (od * o1 + oh0) * o2, len = rows * o2, xo = x - p->xlo;
		float *y = (float *)g->y + yo;
		const float *res = g->res ? (const float *)g->res + yo : NULL;
		dw_blk b = {.g = g, .w = (const float *)g->a + m * q->ks, .toff = toff, .ks = q->ks,
		            .bias = g->bias ? ((const float *)g->bias)[m] : 0.0f};
		if (p->direct && xo + p->dlo >= 0 && xo + p->dhi <= p->xend - p->xlo) {
			dw_direct(&b, dtap, mask, x, y, res);
			continue;
		}
		if (q->s[2] <= 2)
			dw_fill(p, x, win, od, oh0, rows + p->ext1);
		else
			phase_fill_win(q, x, p->xend, win, p->bplane, od, p->ni, oh0, rows + p->ext1, p->nj,
			               true);
		if (p->flat) {
			dw_flat(&b, win, ct, cy, rows, o2, y, res);
			continue;
		}
		b.epi = true;
		b.rs = rs;
		b.ys = o2;
		for (int64_t r0 = 0; r0 < rows; r0 += 4) {
			int R = (int)la_min(4, rows - r0);
			for (int64_t ow = (o2 - 1) / (2 * KK_VL) * (2 * KK_VL); ow >= 0; ow -= 2 * KK_VL) {
				int64_t at = r0 * o2 + ow;
				b.n = la_min(2 * KK_VL, o2 - ow);
				b.src = win + r0 * rs + ow;
				b.y = y + at;
				b.res = res ? res + at : NULL;
				b.room = len - at;
				int C = (int)la_cdiv(b.n, KK_VL);
				dw_fn fn = dw_tab[R - 1][C - 1];
				if (p->k33 && R == 4)
					fn = dw3_tab[q->s[1] - 1][C - 1];
				if ((R - 1) * o2 + C * KK_VL <= b.room && dw_fast_act(g))
					fn(&b);
				else
					dw_part(&b, fn, R, C);
			}
		}
	}
}

/* Conv with one input channel per group: X is t[B], W is t[A]; KK_LA_MC
 * is the output rows per band and KK_LA_NC 1 for direct planes (the
 * lowering's choices, see dw_plan). */
KK_KERNEL(kk_conv_dw_f32)
{
	la_gemm g;
	la_parse(&g, ip, fp, t);
	const la_geo *q = &g.geo;
	if (q->os == 0 || q->m == 0 || q->n == 0)
		return;
	dw_plan p = {.g = &g, .xlo = g.b, .rb = ip[KK_LA_MC]};
	p.xend = p.xlo + q->n * q->c * q->is;
	p.nband = la_cdiv(q->out[1], p.rb);
	p.ext1 = (q->k[1] - 1) * q->dl[1] / q->s[1];
	p.ni = (q->k[0] - 1) * q->dl[0] / q->s[0] + 1;
	p.nj = p.rb + p.ext1;
	p.bplane = p.ni * p.nj * q->q[2] + KK_VL;
	p.bchan = q->nph[0] * q->nph[1] * q->nph[2] * p.bplane;
	p.flat = 5 * q->q[2] < 4 * la_cdiv(q->out[2], KK_VL) * KK_VL;
	p.k33 = q->k[0] == 1 && q->k[1] == 3 && q->k[2] == 3 && q->dl[1] == 1 &&
	        (q->s[1] == 1 || q->s[1] == 2);
	p.direct = ip[KK_LA_NC] != 0;
	if (p.direct) {
		int64_t lo = 0, hi = 0;
		for (int64_t tp = 0; tp < q->ks; tp++) {
			int64_t d = dw_dtap(q, tp);
			lo = tp == 0 || d < lo ? d : lo;
			hi = tp == 0 || d > hi ? d : hi;
		}
		/* reads: [x + lo, x + max(os, VL) + hi) */
		p.nvec = la_cdiv(q->os, KK_VL);
		p.dlo = lo;
		p.dhi = hi + (q->os > KK_VL ? q->os : KK_VL);
	}
	kk_parallel(h, q->n * q->m * q->out[0] * p.nband, dw_task, &p);
}

/* ---- f32 ConvTranspose ---------------------------------------------------- */

typedef struct ct_args {
	const la_gemm *g;
	const float *col, *bias, *res; /* res: this image's residual or NULL */
	float *y;                      /* this image's output */
} ct_args;

/* y[m] = act(bias[m] + scatter of the columns (m*ks + k, i) into the
 * output + res[m]). */
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
		const float *res = a->res ? a->res + m * q->os : NULL;
		if (res || a->g->act != KK_LA_ACT_NONE)
			for (int64_t o = 0; o < q->os; o++)
				y[o] = act_s(a->g, res ? y[o] + res[o] : y[o]);
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
		gi.res = NULL;
		gi.act = KK_LA_ACT_NONE;
		gemm_run(&gi, h);
		ct_args a = {.g = &g, .col = col, .bias = g.bias, .y = y + nb * q->m * q->os,
		             .res = g.res ? (const float *)g.res + nb * q->m * q->os : NULL};
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
	default: st_i(p, dt, i, kk_f64_to_i64(v));
	}
}

/* v as the dtype stores it, read back (integers wrap). */
static int64_t wrap_i(int dt, int64_t v)
{
	switch (dt) {
	case KK_LA_DT_I32: return (int32_t)(uint32_t)v;
	case KK_LA_DT_I8: return (int8_t)(uint8_t)v;
	case KK_LA_DT_U8: return (uint8_t)v;
	default: return v;
	}
}

static double round_f(int dt, double v)
{
	switch (dt) {
	case KK_LA_DT_F32: return (float)v;
	case KK_LA_DT_F16: return kk_f16_to_f32(kk_f32_to_f16((float)v));
	case KK_LA_DT_BF16: return kk_bf16_to_f32(kk_f32_to_bf16((float)v));
	default: return v;
	}
}

/* The residual and activation of element yi of a generic kernel's float
 * result, each step rounded to the dtype like the unfused ops. */
static double epi_f(const la_gemm *g, double v, int64_t yi)
{
	if (!g->res && g->act == KK_LA_ACT_NONE)
		return v;
	v = round_f(g->dtype, v);
	if (g->res)
		v = round_f(g->dtype, v + ld_f(g->res, g->dtype, yi));
	if (g->act == KK_LA_ACT_RELU)
		return v > 0.0 ? v : 0.0;
	if (g->act == KK_LA_ACT_CLIP) {
		v = v > g->lo ? v : g->lo;
		return v < g->hi ? v : g->hi;
	}
	if (g->act == KK_LA_ACT_GELU)
		return round_f(g->dtype, 0.5 * v * (1.0 + erf(v * 0.70710678118654752)));
	if (g->act == KK_LA_ACT_GELU_TANH)
		return round_f(g->dtype,
		               0.5 * v * (1.0 + tanh(0.79788456080286536 * (v + 0.044715 * v * v * v))));
	return v;
}

/* The same for an integer result (wrapped to the dtype). */
static int64_t epi_i(const la_gemm *g, int64_t v, int64_t yi)
{
	int dt = g->dtype;
	v = wrap_i(dt, v);
	if (g->res)
		v = wrap_i(dt, (int64_t)((uint64_t)v + (uint64_t)ld_i(g->res, dt, yi)));
	if (g->act == KK_LA_ACT_RELU)
		return v > 0 ? v : 0;
	if (g->act == KK_LA_ACT_CLIP) {
		v = (double)v < g->lo ? kk_f64_to_i64(g->lo) : v;
		return (double)v > g->hi ? kk_f64_to_i64(g->hi) : v;
	}
	return v;
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
				double gemm = g->alpha * (double)(int64_t)acc + g->beta * (double)c;
				int64_t v = g->kind == KK_LA_KIND_MATMUL || (g->alpha == 1.0 && g->beta == 1.0)
				                ? (int64_t)(acc + (uint64_t)c)
				                : kk_f64_to_i64(gemm);
				st_i(g->y, dt, yi, epi_i(g, v, yi));
			} else if (g->kind == KK_LA_KIND_MATMUL && dt != KK_LA_DT_F64) {
				float acc = 0.0f;
				for (int64_t p = 0; p < g->k; p++)
					acc += (float)ld_f(g->a, dt, a0 + p * g->a_cs) *
					       (float)ld_f(g->b, dt, b0 + p * g->b_rs);
				st_f(g->y, dt, yi, epi_f(g, acc, yi));
			} else {
				double acc = 0.0;
				for (int64_t p = 0; p < g->k; p++)
					acc += ld_f(g->a, dt, a0 + p * g->a_cs) * ld_f(g->b, dt, b0 + p * g->b_rs);
				double c = g->c ? g->beta * ld_f(g->c, dt, ci) : 0.0;
				double v = g->kind == KK_LA_KIND_MATMUL ? acc : g->alpha * acc + c;
				st_f(g->y, dt, yi, epi_f(g, v, yi));
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
			st_f(g->y, dt, pl * q->os + o, epi_f(g, acc, pl * q->os + o));
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
			st_f(g->y, dt, pl * q->os + o, epi_f(g, acc[o], pl * q->os + o));
	}
}

/* ConvTranspose in f64, f16, bf16: X is t[B], W is t[A]. */
KK_KERNEL(kk_conv_transpose_any)
{
	la_gemm g;
	la_parse(&g, ip, fp, t);
	kk_parallel(h, g.geo.n * g.geo.m, conv_transpose_any_task, &g);
}

/* ---- host GEMM (layout KK_LH_* in kk_params_linalg.h) ------------------------
 * Products through the runner's sgemm on plain operands, for comparing kiln
 * with a typical framework's per-op execution. sgemm is called from the
 * entry's thread only, never with an empty dimension. */

/* Gemm and MatMul: one sgemm per matrix of the batch (Y dense); Gemm's C is
 * first written into Y, times beta, and accumulated with beta = 1. */
KK_KERNEL(kk_gemm_host_f32)
{
	const float *a = t[ip[KK_LH_T_A]], *b = t[ip[KK_LH_T_B]];
	float *y = t[ip[KK_LH_T_Y]];
	int64_t m = ip[KK_LH_M], n = ip[KK_LH_N], k = ip[KK_LH_K], rank = ip[KK_LH_BATCH_RANK];
	int32_t ta = (int32_t)ip[KK_LH_TRANS_A], tb = (int32_t)ip[KK_LH_TRANS_B];
	float beta = 0.0f;
	if (ip[KK_LH_T_C] >= 0) {
		const float *c = t[ip[KK_LH_T_C]];
		int64_t crs = ip[KK_LH_C_RS], ccs = ip[KK_LH_C_CS];
		float bc = (float)fp[KK_LH_FP_BETA];
		for (int64_t i = 0; i < m; i++)
			for (int64_t j = 0; j < n; j++)
				y[i * n + j] = bc * c[i * crs + j * ccs];
		beta = 1.0f;
	}
	int64_t count = 1;
	for (int64_t d = 0; d < rank; d++)
		count *= ip[KK_LH_BATCH + 3 * d];
	if (m <= 0 || n <= 0)
		return;
	for (int64_t q = 0; q < count; q++) {
		int64_t ao = 0, bo = 0, rest = q;
		for (int64_t d = rank - 1; d >= 0; d--) {
			const int64_t *bd = ip + KK_LH_BATCH + 3 * d;
			ao += rest % bd[0] * bd[1];
			bo += rest % bd[0] * bd[2];
			rest /= bd[0];
		}
		float *yq = y + q * m * n;
		if (k <= 0) {
			if (beta == 0.0f)
				memset(yq, 0, (size_t)(m * n) * sizeof(float));
			continue;
		}
		h->sgemm(h->sgemm_user, ta, tb, m, n, k, (float)fp[KK_LH_FP_ALPHA], a + ao, ta ? m : k,
		         b + bo, tb ? k : n, beta, yq, n);
	}
}

typedef struct lh_im2col {
	const int64_t *ip;
	const float *x; /* one image's group of input channels */
	float *col;     /* K x N: row (channel, tap), column output position */
} lh_im2col;

/* Rows [begin, end) of the im2col matrix; out-of-image taps read 0. */
static void lh_im2col_task(void *arg, int64_t begin, int64_t end, void *scratch)
{
	const lh_im2col *j = arg;
	const int64_t *ip = j->ip, *in = ip + KK_LH_IN, *out = ip + KK_LH_OUT, *ker = ip + KK_LH_KER;
	const int64_t *s = ip + KK_LH_STRIDE, *dl = ip + KK_LH_DIL, *pb = ip + KK_LH_PAD;
	int64_t ks = ker[0] * ker[1] * ker[2], is = in[0] * in[1] * in[2], os = ip[KK_LH_N];
	for (int64_t r = begin; r < end; r++) {
		int64_t tap = r % ks, kd = tap / (ker[1] * ker[2]), kh = tap / ker[2] % ker[1];
		int64_t kw = tap % ker[2];
		const float *xc = j->x + r / ks * is;
		float *row = j->col + r * os;
		/* output columns [w0, w1) read inside the row; the rest are padding */
		int64_t off = kw * dl[2] - pb[2], w0 = 0, w1 = out[2];
		while (w0 < out[2] && w0 * s[2] + off < 0)
			w0++;
		while (w1 > w0 && (w1 - 1) * s[2] + off >= in[2])
			w1--;
		for (int64_t od = 0; od < out[0]; od++) {
			int64_t id = od * s[0] + kd * dl[0] - pb[0];
			for (int64_t oh = 0; oh < out[1]; oh++) {
				int64_t ih = oh * s[1] + kh * dl[1] - pb[1];
				float *dst = row + (od * out[1] + oh) * out[2];
				if (id < 0 || id >= in[0] || ih < 0 || ih >= in[1]) {
					memset(dst, 0, (size_t)out[2] * sizeof(float));
					continue;
				}
				const float *src = xc + (id * in[1] + ih) * in[2];
				for (int64_t ow = 0; ow < w0; ow++)
					dst[ow] = 0.0f;
				if (s[2] == 1 && w1 > w0)
					memcpy(dst + w0, src + w0 + off, (size_t)(w1 - w0) * sizeof(float));
				else
					for (int64_t ow = w0; ow < w1; ow++)
						dst[ow] = src[ow * s[2] + off];
				for (int64_t ow = w1; ow < out[2]; ow++)
					dst[ow] = 0.0f;
			}
		}
	}
}

typedef struct lh_bias {
	const float *bias;
	float *y;
	int64_t m, os; /* output channels, positions per channel */
} lh_bias;

/* Output planes [begin, end) (image * m + channel) get their bias. */
static void lh_bias_task(void *arg, int64_t begin, int64_t end, void *scratch)
{
	const lh_bias *j = arg;
	for (int64_t p = begin; p < end; p++) {
		float b = j->bias[p % j->m], *y = j->y + p * j->os;
		for (int64_t o = 0; o < j->os; o++)
			y[o] += b;
	}
}

/* Conv, per image and group: Y[mg, os] = W[mg, cg*ks] im2col(X)[cg*ks, os],
 * then the bias over all of Y. */
KK_KERNEL(kk_conv_host_f32)
{
	const float *w = t[ip[KK_LH_T_A]], *x = t[ip[KK_LH_T_B]];
	float *y = t[ip[KK_LH_T_Y]];
	float *col = ip[KK_LH_T_SCRATCH] >= 0 ? t[ip[KK_LH_T_SCRATCH]] : NULL;
	int64_t mg = ip[KK_LH_M], os = ip[KK_LH_N], k = ip[KK_LH_K];
	int64_t images = ip[KK_LH_CONV_N], groups = ip[KK_LH_CONV_GROUP];
	int64_t cg = ip[KK_LH_CONV_C] / (groups > 0 ? groups : 1);
	int64_t is = ip[KK_LH_IN] * ip[KK_LH_IN + 1] * ip[KK_LH_IN + 2];
	if (mg <= 0 || os <= 0)
		return;
	for (int64_t img = 0; img < images; img++)
		for (int64_t g = 0; g < groups; g++) {
			const float *xg = x + (img * groups + g) * cg * is;
			float *yg = y + (img * groups + g) * mg * os;
			if (k <= 0) {
				memset(yg, 0, (size_t)(mg * os) * sizeof(float));
				continue;
			}
			if (col) {
				lh_im2col j = {ip, xg, col};
				kk_parallel(h, k, lh_im2col_task, &j);
			}
			h->sgemm(h->sgemm_user, 0, 0, mg, os, k, 1.0f, w + g * mg * k, k, col ? col : xg, os,
			         0.0f, yg, os);
		}
	if (ip[KK_LH_T_BIAS] >= 0) {
		lh_bias j = {t[ip[KK_LH_T_BIAS]], y, mg * groups, os};
		kk_parallel(h, images * mg * groups, lh_bias_task, &j);
	}
}
