/* kk_nchwc.c — kernels of the blocked channel layout NCHWc (16 channels of
 * a pixel per 64-byte line, kk_params_nchwc.h): the reorders from and to
 * NCHW, and a direct f32 convolution in the layout.
 *
 * A 16-channel block is NV = 16 / KK_VL vectors. The convolution keeps a
 * tile of output pixels of one row in registers and sums every tap and
 * input channel into it before the epilogue (bias, residual, activation):
 *   group 1:   R pixels x 2 output blocks; per input channel one scalar
 *              broadcast per pixel times the two blocks' weight vectors;
 *   depthwise: R pixels x 1 block; per tap one input vector per pixel
 *              times the tap's weight vector (3x3 and 5x5 of stride 1 and
 *              2 unrolled at compile time).
 * Tiles cover the interior columns, where every tap is inside the input;
 * border pixels are computed one at a time with their own tap range, and
 * kernel rows outside the input are skipped. No scratch. */
#include "kk.h"
#include "kk_math.h"

#define NB KK_NCHWC_BLOCK
#define NV (NB / KK_VL)

/* Most pixels per register tile: group 1 (2 blocks) and depthwise (1
 * block); the tile sizes are listed with the instances below. */
#if KK_VL == 16
#define CV_R 12
#define DW_R 12
#elif KK_VL == 8
#define CV_R 3
#define DW_R 4
#else
#define CV_R 2
#define DW_R 2
#endif

/* Pixels per reorder item, and the input bytes a group-1 band should read. */
#define NB_CHUNK 1024
#define CV_BAND_BYTES (192 * 1024)

static inline int64_t nc_min(int64_t a, int64_t b) { return a < b ? a : b; }
static inline int64_t nc_max(int64_t a, int64_t b) { return a > b ? a : b; }
static inline int64_t nc_cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* ---- reorders ------------------------------------------------------------ */

typedef struct nb_args {
	const float *x;
	float *y;
	int64_t c, cb, hw, nch;
} nb_args;

typedef float nc_v4 __attribute__((vector_size(16)));

/* dst[j*ds + i] = src[i*ss + j] for i, j < 16, in 4 x 4 blocks of
 * 4-float vectors (native at every target). */
static inline void nc_transpose16(const float *src, int64_t ss, float *dst, int64_t ds)
{
	for (int bi = 0; bi < NB; bi += 4)
		for (int bj = 0; bj < NB; bj += 4) {
			nc_v4 r[4], t[4], c[4];
			for (int k = 0; k < 4; k++)
				memcpy(&r[k], src + (bi + k) * ss + bj, sizeof r[k]);
			t[0] = __builtin_shufflevector(r[0], r[1], 0, 4, 1, 5);
			t[1] = __builtin_shufflevector(r[0], r[1], 2, 6, 3, 7);
			t[2] = __builtin_shufflevector(r[2], r[3], 0, 4, 1, 5);
			t[3] = __builtin_shufflevector(r[2], r[3], 2, 6, 3, 7);
			c[0] = __builtin_shufflevector(t[0], t[2], 0, 1, 4, 5);
			c[1] = __builtin_shufflevector(t[0], t[2], 2, 3, 6, 7);
			c[2] = __builtin_shufflevector(t[1], t[3], 0, 1, 4, 5);
			c[3] = __builtin_shufflevector(t[1], t[3], 2, 3, 6, 7);
			for (int k = 0; k < 4; k++)
				memcpy(dst + (bj + k) * ds + bi, &c[k], sizeof c[k]);
		}
}

/* Item (image, block, chunk of NB_CHUNK pixels) in 16 x 16 transposes:
 * contiguous channel rows on the plain side, whole lines on the blocked
 * side. A partial block or chunk goes through a local tile whose rows past
 * C are zero, so the padding lanes are written zero. */
static void to_task(void *arg, int64_t begin, int64_t end, void *scratch)
{
	const nb_args *a = arg;
	float tile[NB][NB]; /* [lane][pixel] */
	for (int64_t it = begin; it < end; it++) {
		int64_t ch = it % a->nch, cb = it / a->nch % a->cb, n = it / (a->nch * a->cb);
		int64_t nl = nc_min(NB, a->c - cb * NB), p1 = nc_min(a->hw, (ch + 1) * NB_CHUNK);
		const float *x = a->x + (n * a->c + cb * NB) * a->hw;
		float *y = a->y + (n * a->cb + cb) * a->hw * NB;
		memset(tile[nl], 0, sizeof(float) * (size_t)((NB - nl) * NB));
		for (int64_t p = ch * NB_CHUNK; p < p1; p += NB) {
			int64_t np = nc_min(NB, p1 - p);
			float *yp = y + p * NB;
			if (np == NB && nl == NB) {
				/* 16 row streams: more than the prefetchers follow */
				if (p + 9 * NB <= a->hw)
					for (int l = 0; l < NB; l++)
						__builtin_prefetch(x + l * a->hw + p + 8 * NB);
				nc_transpose16(x + p, a->hw, yp, NB);
			} else if (np == NB) {
				for (int64_t l = 0; l < nl; l++)
					memcpy(tile[l], x + l * a->hw + p, sizeof tile[l]);
				nc_transpose16(tile[0], NB, yp, NB);
			} else {
				for (int64_t l = 0; l < nl; l++)
					memcpy(tile[l], x + l * a->hw + p, sizeof(float) * (size_t)np);
				for (int64_t q = 0; q < np; q++)
					for (int l = 0; l < NB; l++)
						yp[q * NB + l] = tile[l][q];
			}
		}
	}
}

/* Blocked -> NCHW, the inverse walk of to_task (padding lanes are read,
 * never written out). */
static void from_task(void *arg, int64_t begin, int64_t end, void *scratch)
{
	const nb_args *a = arg;
	float tile[NB][NB];
	for (int64_t it = begin; it < end; it++) {
		int64_t ch = it % a->nch, cb = it / a->nch % a->cb, n = it / (a->nch * a->cb);
		int64_t nl = nc_min(NB, a->c - cb * NB), p1 = nc_min(a->hw, (ch + 1) * NB_CHUNK);
		const float *x = a->x + (n * a->cb + cb) * a->hw * NB;
		float *y = a->y + (n * a->c + cb * NB) * a->hw;
		for (int64_t p = ch * NB_CHUNK; p < p1; p += NB) {
			int64_t np = nc_min(NB, p1 - p);
			const float *xp = x + p * NB;
			if (np == NB && nl == NB) {
				nc_transpose16(xp, NB, y + p, a->hw);
			} else if (np == NB) {
				nc_transpose16(xp, NB, tile[0], NB);
				for (int64_t l = 0; l < nl; l++)
					memcpy(y + l * a->hw + p, tile[l], sizeof tile[l]);
			} else {
				for (int64_t q = 0; q < np; q++)
					for (int l = 0; l < NB; l++)
						tile[l][q] = xp[q * NB + l];
				for (int64_t l = 0; l < nl; l++)
					memcpy(y + l * a->hw + p, tile[l], sizeof(float) * (size_t)np);
			}
		}
	}
}

static void nb_run(const int64_t *ip, void *const *t, const kiln_abi_host *h, bool to)
{
	nb_args a = {.x = t[ip[KK_NB_T_X]], .y = t[ip[KK_NB_T_Y]], .c = ip[KK_NB_C],
	             .hw = ip[KK_NB_HW]};
	a.cb = nc_cdiv(a.c, NB);
	a.nch = nc_cdiv(a.hw, NB_CHUNK);
	kk_parallel(h, ip[KK_NB_N] * a.cb * a.nch, to ? to_task : from_task, &a);
}

/* NCHW [N, C, HW] -> blocked [N, cdiv(C, 16), HW, 16], padding lanes 0. */
KK_KERNEL(kk_to_nchwc_f32)
{
	nb_run(ip, t, h, true);
}

/* Blocked [N, cdiv(C, 16), HW, 16] -> NCHW [N, C, HW]. */
KK_KERNEL(kk_from_nchwc_f32)
{
	nb_run(ip, t, h, false);
}

/* ---- convolution ----------------------------------------------------------- */

typedef struct nc_conv {
	const float *x, *w, *bias, *res;
	float *y;
	int64_t n, c, m, cb, mb, mbt; /* mbt: items per band (block pairs, or blocks) */
	int64_t h, wd, oh, ow, kh, kw, sh, sw, dlh, dlw, ph, pw, ks;
	int64_t owlo, owhi;  /* interior output columns: every tap inside the input */
	int64_t nband, band; /* bands per plane, units per band (rows; pixels if flat) */
	int act, var;        /* var: depthwise variant (dw_tab) */
	bool dw, flat;       /* flat: 1x1, stride 1, no padding: the plane is one row */
	float lo, hi;
} nc_conv;

/* One tile call: output pixels (oh, ow0 ...) of output block(s) starting at
 * y (res: the residual at the same offset, or NULL), taps j in [jlo, jhi)
 * of every kernel row. x: the image (group 1) or the block's plane
 * (depthwise); w: the first block's packed weights. */
typedef struct nc_at {
	const float *x, *w, *res;
	float *y;
	kk_vf bias[2][NV];
	kk_vf lo, hi; /* the clamp of None (-inf, inf), Relu (0, inf) and Clip */
	int64_t oh, ow0, jlo, jhi;
} nc_at;

/* s clamped to [lo, hi]; NaN stays NaN. */
static inline kk_vf nc_clamp(kk_vf s, kk_vf lo, kk_vf hi)
{
	return kk_select(s < lo, lo, kk_select(s > hi, hi, s));
}

/* GELU in place over r pixels x nbk blocks (oplane floats apart) at y:
 * out of line, so the tiles carry one call instead of the polynomial. */
static __attribute__((noinline)) void nc_gelu(const nc_conv *p, float *y, int r, int nbk,
                                              int64_t oplane)
{
	for (int b = 0; b < nbk; b++)
		for (int64_t i = 0; i < r * NB; i += KK_VL) {
			float *q = y + b * oplane + i;
			kk_vf s = kk_load(q);
			kk_store(q, p->act == KK_LA_ACT_GELU ? kk_gelu(s) : kk_gelu_tanh(s));
		}
}

/* The epilogue of R pixels x NBK blocks (oplane floats apart): y =
 * act(acc + bias + res). None, Relu and Clip are a clamp (GELU's is
 * (-inf, inf)), then GELU in place; unknown activations are the
 * identity. */
static inline __attribute__((always_inline)) void nc_epi(int R, int NBK, int64_t oplane,
                                                        const nc_conv *p, const nc_at *a,
                                                        kk_vf (*acc)[2][NV])
{
	if (a->res) {
#pragma GCC unroll 16
		for (int r = 0; r < R; r++)
#pragma GCC unroll 16
			for (int b = 0; b < NBK; b++)
#pragma GCC unroll 16
				for (int v = 0; v < NV; v++) {
					int64_t o = b * oplane + r * NB + v * KK_VL;
					kk_vf s = acc[r][b][v] + a->bias[b][v] + kk_load(a->res + o);
					kk_store(a->y + o, nc_clamp(s, a->lo, a->hi));
				}
	} else {
#pragma GCC unroll 16
		for (int r = 0; r < R; r++)
#pragma GCC unroll 16
			for (int b = 0; b < NBK; b++)
#pragma GCC unroll 16
				for (int v = 0; v < NV; v++) {
					int64_t o = b * oplane + r * NB + v * KK_VL;
					kk_store(a->y + o, nc_clamp(acc[r][b][v] + a->bias[b][v], a->lo, a->hi));
				}
	}
	if (p->act == KK_LA_ACT_GELU || p->act == KK_LA_ACT_GELU_TANH)
		nc_gelu(p, a->y, R, NBK, oplane);
}

typedef void (*nc_fn)(const nc_conv *p, const nc_at *a);

/* Group 1: R pixels x NBK (1 or 2) output blocks. */
static inline __attribute__((always_inline)) void cv_tile(int R, int NBK, const nc_conv *p,
                                                         const nc_at *a)
{
	kk_vf acc[CV_R][2][NV];
#pragma GCC unroll 16
	for (int r = 0; r < R; r++)
#pragma GCC unroll 16
		for (int b = 0; b < NBK; b++)
#pragma GCC unroll 16
			for (int v = 0; v < NV; v++)
				acc[r][b][v] = (kk_vf){0};
	int64_t xs = p->sw * NB, plane = p->h * p->wd * NB, wblk = p->ks * p->c * NB;
	int64_t ih0 = a->oh * p->sh - p->ph, iw0 = a->ow0 * p->sw - p->pw;
	for (int64_t i = 0; i < p->kh; i++) {
		int64_t ih = ih0 + i * p->dlh;
		if (ih < 0 || ih >= p->h)
			continue;
		for (int64_t j = a->jlo; j < a->jhi; j++) {
			const float *xt = a->x + (ih * p->wd + iw0 + j * p->dlw) * NB;
			const float *wt = a->w + (i * p->kw + j) * p->c * NB;
			for (int64_t cb = 0; cb < p->cb; cb++) {
				const float *xc = xt + cb * plane, *wc = wt + cb * NB * NB;
				int64_t nl = nc_min(NB, p->c - cb * NB);
				for (int64_t l = 0; l < nl; l++) {
					kk_vf wv[2][NV];
#pragma GCC unroll 16
					for (int b = 0; b < NBK; b++)
#pragma GCC unroll 16
						for (int v = 0; v < NV; v++)
							wv[b][v] = kk_load(wc + b * wblk + l * NB + v * KK_VL);
#pragma GCC unroll 16
					for (int r = 0; r < R; r++) {
						kk_vf xv = kk_splat(xc[r * xs + l]);
#pragma GCC unroll 16
						for (int b = 0; b < NBK; b++)
#pragma GCC unroll 16
							for (int v = 0; v < NV; v++)
								acc[r][b][v] += xv * wv[b][v];
					}
				}
			}
		}
	}
	nc_epi(R, NBK, p->oh * p->ow * NB, p, a, acc);
}

/* Depthwise: R pixels of one block. KH, KW, SW nonzero: that kernel size
 * and column stride, dilation 1, all taps (interior tiles) or, with BRD,
 * the call's tap range (border pixels); zero: the runtime geometry and
 * the call's tap range. */
static inline __attribute__((always_inline)) void dw_tile(int R, int KH, int KW, int SW, int BRD,
                                                         const nc_conv *p, const nc_at *a)
{
	int64_t kh = KH ? KH : p->kh, kw = KW ? KW : p->kw, sw = SW ? SW : p->sw;
	int64_t dlh = KH ? 1 : p->dlh, dlw = KH ? 1 : p->dlw;
	int64_t jlo = KH && !BRD ? 0 : a->jlo, jhi = KH && !BRD ? KW : a->jhi;
	kk_vf acc[DW_R][2][NV];
#pragma GCC unroll 16
	for (int r = 0; r < R; r++)
#pragma GCC unroll 16
		for (int v = 0; v < NV; v++)
			acc[r][0][v] = (kk_vf){0};
	/* kernel rows [ilo, ihi) are inside the input (a loop, not unrolled:
	 * the rows inside vary at the top and bottom borders) */
	int64_t ih0 = a->oh * p->sh - p->ph, iw0 = a->ow0 * sw - p->pw;
	int64_t ilo = ih0 >= 0 ? 0 : nc_min(kh, nc_cdiv(-ih0, dlh));
	int64_t ihi = ih0 > p->h - 1 ? 0 : nc_min(kh, (p->h - 1 - ih0) / dlh + 1);
#pragma GCC unroll 1
	for (int64_t i = ilo; i < ihi; i++) {
		const float *row = a->x + ((ih0 + i * dlh) * p->wd + iw0) * NB;
#pragma GCC unroll 8
		for (int64_t j = jlo; j < jhi; j++) {
			const float *wt = a->w + (i * kw + j) * NB, *xt = row + j * dlw * NB;
#pragma GCC unroll 16
			for (int v = 0; v < NV; v++) {
				kk_vf wv = kk_load(wt + v * KK_VL);
#pragma GCC unroll 16
				for (int r = 0; r < R; r++)
					acc[r][0][v] += kk_load(xt + r * sw * NB + v * KK_VL) * wv;
			}
		}
	}
	nc_epi(R, 1, 0, p, a, acc);
}

#define CV_INST(R)                                                                           \
	static void cv_##R##_1(const nc_conv *p, const nc_at *a) { cv_tile(R, 1, p, a); }      \
	static void cv_##R##_2(const nc_conv *p, const nc_at *a) { cv_tile(R, 2, p, a); }
#define CV_ENT(R) cv_##R##_1, cv_##R##_2,

/* Depthwise variants: 0 generic, 1 3x3/s1, 2 3x3/s2, 3 5x5/s1, 4 5x5/s2. */
#define DW_INST(R)                                                                           \
	static void dw0_##R(const nc_conv *p, const nc_at *a) { dw_tile(R, 0, 0, 0, 0, p, a); } \
	static void dw1_##R(const nc_conv *p, const nc_at *a) { dw_tile(R, 3, 3, 1, 0, p, a); } \
	static void dw2_##R(const nc_conv *p, const nc_at *a) { dw_tile(R, 3, 3, 2, 0, p, a); } \
	static void dw3_##R(const nc_conv *p, const nc_at *a) { dw_tile(R, 5, 5, 1, 0, p, a); } \
	static void dw4_##R(const nc_conv *p, const nc_at *a) { dw_tile(R, 5, 5, 2, 0, p, a); }
#define DW_ENT(R) dw0_##R, dw1_##R, dw2_##R, dw3_##R, dw4_##R,
#define DW_BRD(V, KH, KW, SW)                                                                \
	static void dwb##V(const nc_conv *p, const nc_at *a) { dw_tile(1, KH, KW, SW, 1, p, a); }

/* Tile sizes (pixels), ascending, the last CV_R / DW_R; a run is covered
 * greedily from the largest, so every length is reached and the bitcode
 * stays small. cv_tab[k][NBK - 1] and dw_tab[k][variant] have size k. */
CV_INST(1)
CV_INST(2)
DW_INST(1)
DW_INST(2)
DW_BRD(1, 3, 3, 1)
DW_BRD(2, 3, 3, 2)
DW_BRD(3, 5, 5, 1)
DW_BRD(4, 5, 5, 2)
#if KK_VL == 16
CV_INST(4)
CV_INST(8)
CV_INST(12)
DW_INST(3)
DW_INST(4)
DW_INST(5)
DW_INST(6)
DW_INST(8)
DW_INST(12)
static const int cv_sizes[] = {1, 2, 4, 8, 12}, dw_sizes[] = {1, 2, 3, 4, 5, 6, 8, 12};
static const nc_fn cv_tab[][2] = {{CV_ENT(1)}, {CV_ENT(2)}, {CV_ENT(4)}, {CV_ENT(8)},
                                  {CV_ENT(12)}};
static const nc_fn dw_tab[][5] = {{DW_ENT(1)}, {DW_ENT(2)}, {DW_ENT(3)}, {DW_ENT(4)},
                                  {DW_ENT(5)}, {DW_ENT(6)}, {DW_ENT(8)}, {DW_ENT(12)}};
#elif KK_VL == 8
CV_INST(3)
DW_INST(4)
static const int cv_sizes[] = {1, 2, 3}, dw_sizes[] = {1, 2, 4};
static const nc_fn cv_tab[][2] = {{CV_ENT(1)}, {CV_ENT(2)}, {CV_ENT(3)}};
static const nc_fn dw_tab[][5] = {{DW_ENT(1)}, {DW_ENT(2)}, {DW_ENT(4)}};
#else
static const int cv_sizes[] = {1, 2}, dw_sizes[] = {1, 2};
static const nc_fn cv_tab[][2] = {{CV_ENT(1)}, {CV_ENT(2)}};
static const nc_fn dw_tab[][5] = {{DW_ENT(1)}, {DW_ENT(2)}};
#endif
_Static_assert(sizeof cv_sizes / sizeof *cv_sizes == sizeof cv_tab / sizeof *cv_tab &&
               sizeof dw_sizes / sizeof *dw_sizes == sizeof dw_tab / sizeof *dw_tab,
               "tile tables");

/* Border pixels of each depthwise variant. */
static const nc_fn dw_brd[5] = {dw0_1, dwb1, dwb2, dwb3, dwb4};

/* The bias of output block mb as vectors, lanes past M zero. */
static void nc_bias(const nc_conv *p, int64_t mb, kk_vf *dst)
{
	float b[NB] = {0};
	if (p->bias && mb * NB < p->m)
		memcpy(b, p->bias + mb * NB, sizeof(float) * (size_t)nc_min(NB, p->m - mb * NB));
	for (int v = 0; v < NV; v++)
		dst[v] = kk_load(b + v * KK_VL);
}

/* Columns [c0, c1) of output row a->oh: border pixels one at a time with
 * their own tap range (border), interior runs in tiles (tab[k * stride]
 * of sizes[k] pixels, k < ns; all taps). a->y / a->res point at column 0. */
static void nc_row(const nc_conv *p, nc_at *a, nc_fn border, const nc_fn *tab, int stride,
                   const int *sizes, int ns, int64_t c0, int64_t c1)
{
	float *y0 = a->y;
	const float *r0 = a->res;
	int64_t lo = nc_max(c0, nc_min(c1, p->owlo)), hi = nc_max(lo, nc_min(c1, p->owhi));
	for (int64_t ow = c0; ow < c1;) {
		a->y = y0 + ow * NB;
		a->res = r0 ? r0 + ow * NB : NULL;
		a->ow0 = ow;
		if (ow >= lo && ow < hi) {
			int k = ns - 1;
			while (sizes[k] > hi - ow)
				k--;
			a->jlo = 0;
			a->jhi = p->kw;
			tab[k * stride](p, a);
			ow += sizes[k];
			continue;
		}
		int64_t iw0 = ow * p->sw - p->pw;
		a->jlo = iw0 >= 0 ? 0 : nc_min(p->kw, nc_cdiv(-iw0, p->dlw));
		a->jhi = iw0 > p->wd - 1 ? 0 : nc_min(p->kw, (p->wd - 1 - iw0) / p->dlw + 1);
		a->jhi = nc_max(a->jhi, a->jlo);
		border(p, a);
		ow++;
	}
	a->y = y0;
	a->res = r0;
}

/* Item (image, band, block unit): the band's rows (or pixels when flat) of
 * one output block pair (group 1) or block (depthwise). Block units vary
 * fastest so a band's input is reused from cache. */
static void cv_task(void *arg, int64_t begin, int64_t end, void *scratch)
{
	const nc_conv *p = arg;
	int64_t oplane = p->oh * p->ow * NB, units = p->flat ? p->ow : p->oh;
	for (int64_t it = begin; it < end; it++) {
		int64_t mt = it % p->mbt, band = it / p->mbt % p->nband, n = it / (p->mbt * p->nband);
		int64_t u0 = band * p->band, u1 = nc_min(units, u0 + p->band);
		int64_t mb = p->dw ? mt : 2 * mt, off = (n * p->mb + mb) * oplane;
		nc_at a = {.y = p->y + off, .res = p->res ? p->res + off : NULL,
		           .lo = kk_splat(p->act == KK_LA_ACT_CLIP ? p->lo
		                          : p->act == KK_LA_ACT_RELU ? 0.0f : -KK_INFINITY),
		           .hi = kk_splat(p->act == KK_LA_ACT_CLIP ? p->hi : KK_INFINITY)};
		const nc_fn *tab;
		const int *sizes;
		nc_fn border;
		int stride, ns;
		nc_bias(p, mb, a.bias[0]);
		if (p->dw) {
			a.x = p->x + (n * p->cb + mb) * p->h * p->wd * NB;
			a.w = p->w + mb * p->ks * NB;
			tab = &dw_tab[0][p->var];
			border = dw_brd[p->var];
			stride = 5;
			sizes = dw_sizes;
			ns = (int)(sizeof dw_sizes / sizeof *dw_sizes);
		} else {
			int nbk = mb + 1 < p->mb ? 2 : 1;
			if (nbk == 2)
				nc_bias(p, mb + 1, a.bias[1]);
			a.x = p->x + n * p->cb * p->h * p->wd * NB;
			a.w = p->w + mb * p->ks * p->c * NB;
			tab = &cv_tab[0][nbk - 1];
			border = tab[0];
			stride = 2;
			sizes = cv_sizes;
			ns = (int)(sizeof cv_sizes / sizeof *cv_sizes);
		}
		if (p->flat) {
			a.oh = 0;
			nc_row(p, &a, border, tab, stride, sizes, ns, u0, u1);
			continue;
		}
		for (int64_t oh = u0; oh < u1; oh++) {
			nc_at ar = a;
			ar.oh = oh;
			ar.y = a.y + oh * p->ow * NB;
			ar.res = a.res ? a.res + oh * p->ow * NB : NULL;
			nc_row(p, &ar, border, tab, stride, sizes, ns, 0, p->ow);
		}
	}
}

/* Direct convolution in the blocked layout (kk_params_nchwc.h): group 1
 * with any 2-D geometry, or depthwise (group == C == M). */
KK_KERNEL(kk_conv_nchwc_f32)
{
	nc_conv p = {
		.x = t[ip[KK_LA_T_A]], .w = t[ip[KK_LA_T_B]], .y = t[ip[KK_LA_T_Y]],
		.bias = ip[KK_LA_T_BIAS] < 0 ? NULL : t[ip[KK_LA_T_BIAS]],
		.res = ip[KK_LA_T_RES] < 0 ? NULL : t[ip[KK_LA_T_RES]],
		.n = ip[KK_LA_CONV_N], .c = ip[KK_LA_CONV_C], .m = ip[KK_LA_CONV_M],
		.h = ip[KK_LA_IN + 1], .wd = ip[KK_LA_IN + 2], .oh = ip[KK_LA_OUT + 1],
		.ow = ip[KK_LA_OUT + 2], .kh = ip[KK_LA_KER + 1], .kw = ip[KK_LA_KER + 2],
		.sh = ip[KK_LA_STRIDE + 1], .sw = ip[KK_LA_STRIDE + 2], .dlh = ip[KK_LA_DIL + 1],
		.dlw = ip[KK_LA_DIL + 2], .ph = ip[KK_LA_PAD + 1], .pw = ip[KK_LA_PAD + 2],
		.act = (int)ip[KK_LA_ACT], .lo = (float)fp[KK_LA_FP_LO], .hi = (float)fp[KK_LA_FP_HI],
	};
	if (p.n == 0 || p.m == 0 || p.oh == 0 || p.ow == 0)
		return;
	p.dw = ip[KK_LA_CONV_GROUP] != 1;
	p.cb = nc_cdiv(p.c, NB);
	p.mb = nc_cdiv(p.m, NB);
	p.ks = p.kh * p.kw;
	p.mbt = p.dw ? p.mb : nc_cdiv(p.mb, 2);
	p.flat = p.kh == 1 && p.kw == 1 && p.sh == 1 && p.sw == 1 && p.ph == 0 && p.pw == 0 &&
	         p.oh == p.h && p.ow == p.wd;
	if (p.flat) {
		p.wd = p.ow = p.h * p.wd;
		p.h = p.oh = 1;
	}
	int64_t span = p.wd - 1 - (p.kw - 1) * p.dlw + p.pw;
	p.owlo = nc_min(p.ow, nc_cdiv(p.pw, p.sw));
	p.owhi = span < 0 ? p.owlo : nc_max(p.owlo, nc_min(p.ow, span / p.sw + 1));
	if (p.owhi == p.owlo)
		p.owlo = p.owhi = p.ow;
	p.var = 0;
	if (p.dw && p.dlh == 1 && p.dlw == 1 && p.kh == p.kw && (p.kh == 3 || p.kh == 5) &&
	    (p.sw == 1 || p.sw == 2))
		p.var = (p.kh == 3 ? 1 : 3) + (int)p.sw - 1;
	/* Bands: enough items for the threads; group 1 also keeps a band's
	 * input within CV_BAND_BYTES. */
	int64_t units = p.flat ? p.ow : p.oh, thr = h->n_threads > 1 ? h->n_threads : 1;
	int64_t nband = nc_cdiv(4 * thr, p.n * p.mbt);
	if (!p.dw) {
		int64_t unit_bytes = (p.flat ? 1 : p.sh * p.wd) * p.c * (int64_t)sizeof(float);
		nband = nc_max(nband, nc_cdiv(units * unit_bytes, CV_BAND_BYTES));
	}
	nband = nc_max(1, nc_min(nband, p.flat ? nc_cdiv(units, CV_R) : units));
	p.band = nc_cdiv(units, nband);
	if (p.flat)
		p.band = nc_cdiv(p.band, CV_R) * CV_R;
	p.nband = nc_cdiv(units, p.band);
	kk_parallel(h, p.n * p.nband * p.mbt, cv_task, &p);
}
