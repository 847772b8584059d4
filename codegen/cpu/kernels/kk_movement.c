/* kk_movement.c — data-movement kernels: plain and strided copies
 * (Reshape-likes, Transpose, Slice, Expand, Tile), Concat, Split, Gather,
 * Pad, Resize, fills (Shape, ConstantOfShape, Range), QuantizeLinear and
 * DequantizeLinear. Layouts: kk_params_movement.h.
 *
 * Movement is memory-bound: the lowering collapses every view to the fewest
 * dims, and the kernels copy contiguous runs with memcpy, split the work into
 * items of tens of kilobytes across threads, and transpose in cache-sized
 * tiles. Elements are moved by size (1, 2, 4, 8 bytes) through memcpy, so a
 * graph input at any alignment is fine. The kernels that compute convert
 * exactly like the interpreter (interp/k_resize.c, k_quant.c, k_movement.c),
 * through kk_dtype.h's element access. */
#include "kk.h"

/* Below this many bytes a kernel runs on the calling thread. */
#define MV_SMALL ((int64_t)1 << 15)
/* Bytes per parallel work item of long copies. */
#define MV_CHUNK ((int64_t)1 << 15)
/* Tile edge (elements) of the blocked 2-D transpose. */
#define MV_TILE 16

static int64_t mv_min(int64_t a, int64_t b) { return a < b ? a : b; }

static void mv_run(const kiln_abi_host *h, int64_t n, int64_t bytes, kiln_abi_task_fn fn,
                   void *arg)
{
	if (n <= 0)
		return;
	if (bytes < MV_SMALL || n == 1 || h->n_threads <= 1)
		fn(arg, 0, n, NULL);
	else
		kk_parallel(h, n, fn, arg);
}

/* Copies one element of esz bytes (a constant size for the common ones). */
static inline void mv_elem(char *dst, const char *src, int64_t esz)
{
	switch (esz) {
	case 1: *dst = *src; break;
	case 2: memcpy(dst, src, 2); break;
	case 4: memcpy(dst, src, 4); break;
	case 8: memcpy(dst, src, 8); break;
	default: memcpy(dst, src, (size_t)esz); break;
	}
}

#define MV_RUN_T(T)                                                         \
	do {                                                                \
		T v_;                                                       \
		if (s == 0) {                                               \
			memcpy(&v_, src, sizeof v_);                        \
			for (int64_t i = 0; i < n; i++)                     \
				memcpy(dst + i * (int64_t)sizeof v_, &v_, sizeof v_); \
		} else {                                                    \
			for (int64_t i = 0; i < n; i++) {                   \
				memcpy(&v_, src + i * s * (int64_t)sizeof v_, sizeof v_); \
				memcpy(dst + i * (int64_t)sizeof v_, &v_, sizeof v_); \
			}                                                   \
		}                                                           \
	} while (0)

/* n elements from src at element stride s (0: repeat one) to dense dst. */
static void mv_run_copy(char *dst, const char *src, int64_t n, int64_t s, int64_t esz)
{
	if (s == 1) {
		memcpy(dst, src, (size_t)(n * esz));
		return;
	}
	switch (esz) {
	case 1:
		if (s == 0)
			memset(dst, *src, (size_t)n);
		else
			for (int64_t i = 0; i < n; i++)
				dst[i] = src[i * s];
		break;
	case 2: MV_RUN_T(uint16_t); break;
	case 4: MV_RUN_T(uint32_t); break;
	case 8: MV_RUN_T(uint64_t); break;
	default:
		for (int64_t i = 0; i < n; i++)
			memcpy(dst + i * esz, src + i * s * esz, (size_t)esz);
		break;
	}
}

/* ---- kk_copy ------------------------------------------------------------ */

typedef struct mv_copy {
	char *dst;
	const char *src;
	int64_t bytes;
} mv_copy;

static void copy_task(void *arg, int64_t b, int64_t e, void *scratch)
{
	const mv_copy *a = arg;
	int64_t p = b * MV_CHUNK, end = mv_min(e * MV_CHUNK, a->bytes);
	memcpy(a->dst + p, a->src + p, (size_t)(end - p));
}

KK_KERNEL(kk_copy)
{
	mv_copy a = {t[ip[KK_COPY_DST]], t[ip[KK_COPY_SRC]], ip[KK_COPY_BYTES]};
	/* A memory plan may give a view op its input's buffer. */
	if (a.dst != a.src)
		mv_run(h, (a.bytes + MV_CHUNK - 1) / MV_CHUNK, a.bytes, copy_task, &a);
	if (ip[KK_COPY_MASK] >= 0)
		memset(t[ip[KK_COPY_MASK]], 1, (size_t)ip[KK_COPY_MASK_BYTES]);
}

/* ---- kk_strided_copy ------------------------------------------------------ */

typedef struct mv_strided {
	const char *src;
	char *dst;
	int64_t esz, rank, base;
	const int64_t *dims, *str;
	int64_t ostr[KK_MV_MAX_RANK]; /* output strides (elements) */
	int64_t inner, sin;           /* last axis: length, input stride */
	int64_t cols, ncc;            /* rows path: columns per item, items per row */
	int64_t tile, ntile;          /* tiled path: the stride-1 axis, tiles along it */
} mv_strided;

static void strided_rows(void *arg, int64_t b, int64_t e, void *scratch)
{
	const mv_strided *a = arg;
	int64_t last = a->rank - 1, esz = a->esz;
	int64_t row = b / a->ncc, cc = b % a->ncc, rem = row, off = a->base;
	int64_t idx[KK_MV_MAX_RANK];
	for (int64_t k = last - 1; k >= 0; k--) {
		idx[k] = rem % a->dims[k];
		rem /= a->dims[k];
		off += idx[k] * a->str[k];
	}
	for (int64_t it = b; it < e; it++) {
		int64_t c0 = cc * a->cols, c1 = mv_min(c0 + a->cols, a->inner);
		mv_run_copy(a->dst + (row * a->inner + c0) * esz, a->src + (off + c0 * a->sin) * esz,
		            c1 - c0, a->sin, esz);
		if (++cc < a->ncc)
			continue;
		cc = 0;
		row++;
		for (int64_t k = last - 1; k >= 0; k--) {
			off += a->str[k];
			if (++idx[k] < a->dims[k])
				break;
			off -= a->str[k] * a->dims[k];
			idx[k] = 0;
		}
	}
}

#define MV_TILE_T(T)                                                                    \
	for (int64_t i = i0; i < i1; i++)                                               \
		for (int64_t j = j0; j < j1; j++) {                                     \
			T v_;                                                           \
			memcpy(&v_, src + (i + j * sin) * (int64_t)sizeof v_, sizeof v_); \
			memcpy(dst + (i * dstr + j) * (int64_t)sizeof v_, &v_, sizeof v_); \
		}

typedef uint32_t mv_v8u __attribute__((vector_size(32)));

/* An 8x8 block of 4-byte elements: dst[i * dstr + j] = src[i + j * sin].
 * Three rounds of interleaving the rows m and m + 4 transpose it. */
static void mv_block8_u32(char *dst, const char *src, int64_t dstr, int64_t sin)
{
	mv_v8u r[8], q[8];
	for (int j = 0; j < 8; j++)
		memcpy(&r[j], src + j * sin * 4, sizeof r[j]);
	for (int round = 0; round < 3; round++) {
		for (int m = 0; m < 4; m++) {
			q[2 * m] = __builtin_shufflevector(r[m], r[m + 4], 0, 8, 1, 9, 2, 10, 3, 11);
			q[2 * m + 1] = __builtin_shufflevector(r[m], r[m + 4], 4, 12, 5, 13, 6, 14, 7, 15);
		}
		memcpy(r, q, sizeof r);
	}
	for (int i = 0; i < 8; i++)
		memcpy(dst + i * dstr * 4, &r[i], sizeof r[i]);
}

/* dst[i * dstr + j] = src[i + j * sin] over [i0, i1) x [j0, j1), element
 * by element. */
static void mv_tile_scalar(char *dst, const char *src, int64_t esz, int64_t i0, int64_t i1,
                           int64_t j0, int64_t j1, int64_t dstr, int64_t sin)
{
	switch (esz) {
	case 1: MV_TILE_T(uint8_t); break;
	case 2: MV_TILE_T(uint16_t); break;
	case 4: MV_TILE_T(uint32_t); break;
	case 8: MV_TILE_T(uint64_t); break;
	default:
		for (int64_t i = i0; i < i1; i++)
			for (int64_t j = j0; j < j1; j++)
				memcpy(dst + (i * dstr + j) * esz, src + (i + j * sin) * esz, (size_t)esz);
		break;
	}
}

/* The same over a tile; 4-byte elements go by whole 8x8 vector blocks, the
 * ragged edges element by element. */
static void mv_tile(char *dst, const char *src, int64_t esz, int64_t i0, int64_t i1, int64_t j0,
                    int64_t j1, int64_t dstr, int64_t sin)
{
	if (esz != 4) {
		mv_tile_scalar(dst, src, esz, i0, i1, j0, j1, dstr, sin);
		return;
	}
	int64_t ie = i0 + (i1 - i0) / 8 * 8, je = j0 + (j1 - j0) / 8 * 8;
	for (int64_t i = i0; i < ie; i += 8)
		for (int64_t j = j0; j < je; j += 8)
			mv_block8_u32(dst + (i * dstr + j) * 4, src + (i + j * sin) * 4, dstr, sin);
	mv_tile_scalar(dst, src, 4, i0, ie, je, j1, dstr, sin);
	mv_tile_scalar(dst, src, 4, ie, i1, j0, j1, dstr, sin);
}

/* An item is MV_TILE rows of the stride-1 axis across the whole last axis,
 * for one combination of the other axes. */
static void strided_tiles(void *arg, int64_t b, int64_t e, void *scratch)
{
	const mv_strided *a = arg;
	int64_t last = a->rank - 1, ta = a->tile, esz = a->esz;
	for (int64_t it = b; it < e; it++) {
		int64_t g = it / a->ntile, ti = it % a->ntile;
		int64_t soff = a->base, doff = 0;
		for (int64_t k = last - 1; k >= 0; k--) {
			if (k == ta)
				continue;
			int64_t c = g % a->dims[k];
			g /= a->dims[k];
			soff += c * a->str[k];
			doff += c * a->ostr[k];
		}
		int64_t i0 = ti * MV_TILE, i1 = mv_min(i0 + MV_TILE, a->dims[ta]);
		for (int64_t j0 = 0; j0 < a->inner; j0 += MV_TILE)
			mv_tile(a->dst + doff * esz, a->src + soff * esz, esz, i0, i1, j0,
			        mv_min(j0 + MV_TILE, a->inner), a->ostr[ta], a->sin);
	}
}

KK_KERNEL(kk_strided_copy)
{
	mv_strided a = {.src = t[0], .dst = t[ip[KK_STRIDED_DST]], .esz = ip[KK_STRIDED_ESZ],
	                .rank = ip[KK_STRIDED_RANK], .base = ip[KK_STRIDED_BASE],
	                .tile = ip[KK_STRIDED_TILE]};
	a.dims = ip + KK_STRIDED_N_IP;
	a.str = a.dims + a.rank;
	int64_t count = 1;
	for (int64_t k = a.rank - 1; k >= 0; k--) {
		a.ostr[k] = count;
		count *= a.dims[k];
	}
	if (count == 0)
		return;
	a.inner = a.dims[a.rank - 1];
	a.sin = a.str[a.rank - 1];
	int64_t bytes = count * a.esz;
	if (a.tile >= 0) {
		a.ntile = (a.dims[a.tile] + MV_TILE - 1) / MV_TILE;
		int64_t groups = count / a.inner / a.dims[a.tile];
		mv_run(h, groups * a.ntile, bytes, strided_tiles, &a);
		return;
	}
	int64_t chunk = MV_CHUNK / a.esz;
	a.cols = a.inner < 2 * chunk ? a.inner : chunk;
	a.ncc = (a.inner + a.cols - 1) / a.cols;
	mv_run(h, count / a.inner * a.ncc, bytes, strided_rows, &a);
}

/* ---- kk_concat, kk_split -------------------------------------------------- */

typedef struct mv_cat {
	char *joined;
	void *const *pieces;
	const int64_t *block;
	int64_t n, row_bytes, total;
	int split;
} mv_cat;

/* Items are MV_CHUNK-byte ranges of the joined tensor; each range is cut
 * where pieces begin and end. */
static void cat_task(void *arg, int64_t b, int64_t e, void *scratch)
{
	const mv_cat *a = arg;
	int64_t p = b * MV_CHUNK, end = mv_min(e * MV_CHUNK, a->total);
	int64_t row = p / a->row_bytes, off = p % a->row_bytes, k = 0, seg = 0;
	while (off >= seg + a->block[k])
		seg += a->block[k++];
	while (p < end) {
		int64_t len = mv_min(seg + a->block[k] - off, end - p);
		char *piece = (char *)a->pieces[k] + row * a->block[k] + (off - seg);
		if (a->split)
			memcpy(piece, a->joined + p, (size_t)len);
		else
			memcpy(a->joined + p, piece, (size_t)len);
		p += len;
		off += len;
		if (p >= end)
			break;
		if (off == a->row_bytes) {
			row++;
			off = seg = k = 0;
		} else {
			seg += a->block[k++];
		}
		while (a->block[k] == 0)
			k++;
	}
}

static void mv_cat_run(const int64_t *ip, void *const *t, const kiln_abi_host *h, int split)
{
	mv_cat a = {.joined = t[ip[KK_CAT_JOINED]], .pieces = t + ip[KK_CAT_FIRST],
	            .block = ip + KK_CAT_N_IP, .n = ip[KK_CAT_N],
	            .row_bytes = ip[KK_CAT_ROW_BYTES], .split = split};
	a.total = ip[KK_CAT_ROWS] * a.row_bytes;
	mv_run(h, (a.total + MV_CHUNK - 1) / MV_CHUNK, a.total, cat_task, &a);
}

KK_KERNEL(kk_concat) { mv_cat_run(ip, t, h, 0); }
KK_KERNEL(kk_split) { mv_cat_run(ip, t, h, 1); }

/* ---- kk_gather ------------------------------------------------------------ */

typedef struct mv_gather {
	const char *src, *idx;
	char *dst;
	int64_t dim, block, nidx, idx_esz;
} mv_gather;

static void gather_task(void *arg, int64_t b, int64_t e, void *scratch)
{
	const mv_gather *a = arg;
	for (int64_t it = b; it < e; it++) {
		int64_t o = it / a->nidx, j = it % a->nidx, v;
		if (a->idx_esz == 4) {
			int32_t v32;
			memcpy(&v32, a->idx + j * 4, 4);
			v = v32;
		} else {
			memcpy(&v, a->idx + j * 8, 8);
		}
		if (v < 0)
			v += a->dim;
		v = v < 0 ? 0 : v >= a->dim ? a->dim - 1 : v;
		const char *s = a->src + (o * a->dim + v) * a->block;
		char *d = a->dst + it * a->block;
		if (a->block <= 8)
			mv_elem(d, s, a->block);
		else
			memcpy(d, s, (size_t)a->block);
	}
}

KK_KERNEL(kk_gather)
{
	mv_gather a = {t[0], t[1], t[2], ip[KK_GATHER_DIM], ip[KK_GATHER_BLOCK], ip[KK_GATHER_NIDX],
	               ip[KK_GATHER_IDX_ESZ]};
	int64_t n = ip[KK_GATHER_OUTER] * a.nidx;
	if (a.block == 0)
		return;
	mv_run(h, n, n * a.block, gather_task, &a);
}

/* ---- kk_pad --------------------------------------------------------------- */

typedef struct mv_pad {
	const char *src, *cval;
	char *dst;
	const int64_t *dims, *map, *map_off;
	int64_t esz, rank, run_b, run_n;
} mv_pad;

static void pad_task(void *arg, int64_t b, int64_t e, void *scratch)
{
	const mv_pad *a = arg;
	int64_t last = a->rank - 1, len = a->dims[last], esz = a->esz;
	const int64_t *lmap = a->map + a->map_off[last];
	for (int64_t row = b; row < e; row++) {
		char *d = a->dst + row * len * esz;
		int64_t rem = row, off = 0;
		int inside = 1;
		for (int64_t k = last - 1; k >= 0 && inside; k--) {
			int64_t m = a->map[a->map_off[k] + rem % a->dims[k]];
			rem /= a->dims[k];
			inside = m >= 0;
			off += m;
		}
		if (!inside) {
			mv_run_copy(d, a->cval, len, 0, esz);
			continue;
		}
		const char *s = a->src + off * esz;
		for (int64_t j = 0; j < len; j++) {
			if (j == a->run_b && a->run_n > 0) {
				memcpy(d + j * esz, s + lmap[j] * esz, (size_t)(a->run_n * esz));
				j += a->run_n - 1;
			} else if (lmap[j] < 0) {
				mv_elem(d + j * esz, a->cval, esz);
			} else {
				mv_elem(d + j * esz, s + lmap[j] * esz, esz);
			}
		}
	}
}

KK_KERNEL(kk_pad)
{
	static const char zero[8];
	mv_pad a = {.src = t[0], .dst = t[ip[KK_PAD_DST]], .esz = ip[KK_PAD_ESZ],
	            .rank = ip[KK_PAD_RANK], .run_b = ip[KK_PAD_RUN_BEGIN],
	            .run_n = ip[KK_PAD_RUN_LEN]};
	a.cval = ip[KK_PAD_CVAL_T] >= 0 ? t[ip[KK_PAD_CVAL_T]] : zero;
	a.map = t[ip[KK_PAD_MAP_T]];
	a.dims = ip + KK_PAD_N_IP;
	a.map_off = a.dims + a.rank;
	int64_t count = 1;
	for (int64_t k = 0; k < a.rank; k++)
		count *= a.dims[k];
	if (count == 0)
		return;
	int64_t rows = count / a.dims[a.rank - 1];
	mv_run(h, rows, count * a.esz, pad_task, &a);
}

/* ---- kk_resize ------------------------------------------------------------ */

typedef struct mv_resize {
	const char *src;
	char *dst;
	const int64_t *dims, *taps, *tap_off, *ex_off;
	const int64_t *off;
	const double *w;
	const float *wf;
	const uint8_t *ex;
	int64_t dt, esz, rank, combos, extrap_bits;
	double extrap;
} mv_resize;

/* Saturation of integer outputs, like the interpreter (round half to even). */
static double mv_saturate(int dt, double v)
{
	v = nearbyint(v);
	switch (dt) {
	case KK_DT_I8: return v < -128.0 ? -128.0 : v > 127.0 ? 127.0 : v;
	case KK_DT_U8: return v < 0.0 ? 0.0 : v > 255.0 ? 255.0 : v;
	case KK_DT_I32:
		return v < -2147483648.0 ? -2147483648.0 : v > 2147483647.0 ? 2147483647.0 : v;
	default: return v;
	}
}

static void resize_store(const mv_resize *a, int64_t o, double acc)
{
	int dt = (int)a->dt;
	kk_dt_set_f64(a->dst, dt, o, kk_dt_is_float(dt) ? acc : mv_saturate(dt, acc));
}

/* One output row (all axes but the last fixed) per item. The tap
 * combinations of the leading axes go to scratch once per row, in the
 * interpreter's order, so the sums are formed in the same order. Inlined
 * once per kind, so each kernel carries only its own inner loop. */
static inline __attribute__((always_inline)) void resize_rows(const mv_resize *a, int64_t b,
                                                              int64_t e, void *scratch, int kind)
{
	int64_t last = a->rank - 1, len = a->dims[last], nl = a->taps[last];
	int64_t *c_off = scratch;
	double *c_w = (double *)(c_off + a->combos);
	float *c_wf = (float *)(c_w + a->combos);
	const int64_t *l_off = a->off + a->tap_off[last];
	const double *l_w = a->w + a->tap_off[last];
	const float *l_wf = a->wf + a->tap_off[last];
	const uint8_t *l_ex = a->ex + a->ex_off[last];
	for (int64_t row = b; row < e; row++) {
		int64_t j_of[KK_MV_MAX_RANK], t[KK_MV_MAX_RANK] = {0}, rem = row, nc = 0;
		int outside = 0;
		for (int64_t k = last - 1; k >= 0; k--) {
			j_of[k] = rem % a->dims[k];
			rem /= a->dims[k];
			outside = outside || a->ex[a->ex_off[k] + j_of[k]];
		}
		for (;;) {
			double w = 1.0;
			int64_t off = 0;
			for (int64_t k = 0; k < last; k++) {
				int64_t q = a->tap_off[k] + j_of[k] * a->taps[k] + t[k];
				w *= a->w[q];
				off += a->off[q];
			}
			if (w != 0.0) {
				c_off[nc] = off;
				c_w[nc] = w;
				c_wf[nc++] = (float)w;
			}
			int64_t k = last - 1;
			while (k >= 0 && ++t[k] == a->taps[k])
				t[k--] = 0;
			if (k < 0)
				break;
		}
		int64_t o = row * len;
		for (int64_t j = 0; j < len; j++, o++) {
			if (outside || l_ex[j]) {
				if (kind == KK_RS_NEAREST)
					memcpy(a->dst + o * a->esz, &a->extrap_bits, (size_t)a->esz);
				else
					resize_store(a, o, a->extrap);
				continue;
			}
			const int64_t *jo = l_off + j * nl;
			if (kind == KK_RS_NEAREST) {
				char *d = a->dst + o * a->esz;
				if (nc == 0 || l_w[j] == 0.0)
					memset(d, 0, (size_t)a->esz);
				else
					mv_elem(d, a->src + (c_off[0] + jo[0]) * a->esz, a->esz);
			} else if (kind == KK_RS_F32) {
				const float *jw = l_wf + j * nl;
				float acc = 0.0f;
				for (int64_t c = 0; c < nc; c++)
					for (int64_t q = 0; q < nl; q++)
						if (jw[q] != 0.0f) {
							float x;
							memcpy(&x, a->src + (c_off[c] + jo[q]) * 4, 4);
							acc += c_wf[c] * jw[q] * x;
						}
				memcpy(a->dst + o * 4, &acc, 4);
			} else {
				const double *jw = l_w + j * nl;
				double acc = 0.0;
				for (int64_t c = 0; c < nc; c++)
					for (int64_t q = 0; q < nl; q++) {
						double w = c_w[c] * jw[q];
						if (w != 0.0)
							acc += w * kk_dt_get_f64(a->src, (int)a->dt, c_off[c] + jo[q]);
					}
				resize_store(a, o, acc);
			}
		}
	}
}

static void resize_nearest_task(void *arg, int64_t b, int64_t e, void *scratch)
{
	resize_rows(arg, b, e, scratch, KK_RS_NEAREST);
}

static void resize_f32_task(void *arg, int64_t b, int64_t e, void *scratch)
{
	resize_rows(arg, b, e, scratch, KK_RS_F32);
}

static void resize_any_task(void *arg, int64_t b, int64_t e, void *scratch)
{
	resize_rows(arg, b, e, scratch, KK_RS_ANY);
}

static void mv_resize_run(const int64_t *ip, const double *fp, void *const *t,
                          const kiln_abi_host *h, kiln_abi_task_fn fn)
{
	const char *blob = t[ip[KK_RS_BLOB_T]];
	mv_resize a = {.src = t[0], .dst = t[ip[KK_RS_DST]], .dt = ip[KK_RS_DT],
	               .esz = ip[KK_RS_ESZ], .rank = ip[KK_RS_RANK], .combos = ip[KK_RS_COMBOS],
	               .extrap_bits = ip[KK_RS_EXTRAP_BITS], .extrap = fp[KK_RS_FP_EXTRAP]};
	a.dims = ip + KK_RS_N_IP;
	a.taps = a.dims + a.rank;
	a.tap_off = a.taps + a.rank;
	a.ex_off = a.tap_off + a.rank;
	a.off = (const int64_t *)(const void *)blob;
	a.w = (const double *)(const void *)(blob + ip[KK_RS_W_BYTES]);
	a.wf = (const float *)(const void *)(blob + ip[KK_RS_WF_BYTES]);
	a.ex = (const uint8_t *)(blob + ip[KK_RS_EX_BYTES]);
	int64_t count = 1;
	for (int64_t k = 0; k < a.rank; k++)
		count *= a.dims[k];
	if (count > 0)
		kk_parallel(h, count / a.dims[a.rank - 1], fn, &a);
}

KK_KERNEL(kk_resize_nearest) { mv_resize_run(ip, fp, t, h, resize_nearest_task); }
KK_KERNEL(kk_resize_f32) { mv_resize_run(ip, fp, t, h, resize_f32_task); }
KK_KERNEL(kk_resize_any) { mv_resize_run(ip, fp, t, h, resize_any_task); }

/* ---- kk_fill, kk_const_i64, kk_range -------------------------------------- */

typedef struct mv_fill {
	char *dst;
	int64_t esz, count;
	uint64_t bits;
} mv_fill;

static void fill_task(void *arg, int64_t b, int64_t e, void *scratch)
{
	const mv_fill *a = arg;
	int64_t per = MV_CHUNK / a->esz, i0 = b * per, i1 = mv_min(e * per, a->count);
	mv_run_copy(a->dst + i0 * a->esz, (const char *)&a->bits, i1 - i0, 0, a->esz);
}

KK_KERNEL(kk_fill)
{
	mv_fill a = {t[ip[KK_FILL_DST]], ip[KK_FILL_ESZ], ip[KK_FILL_COUNT],
	             (uint64_t)ip[KK_FILL_BITS]};
	int64_t per = MV_CHUNK / a.esz;
	mv_run(h, (a.count + per - 1) / per, a.count * a.esz, fill_task, &a);
}

KK_KERNEL(kk_const_i64)
{
	memcpy(t[ip[KK_CONST_DST]], ip + KK_CONST_N_IP, (size_t)ip[KK_CONST_COUNT] * 8);
}

KK_KERNEL(kk_range)
{
	int dt = (int)ip[KK_RANGE_DT];
	void *dst = t[ip[KK_RANGE_DST]];
	int64_t count = ip[KK_RANGE_COUNT];
	if (kk_dt_is_float(dt)) {
		double start = fp[KK_RANGE_FP_START], delta = fp[KK_RANGE_FP_DELTA];
		for (int64_t i = 0; i < count; i++)
			kk_dt_set_f64(dst, dt, i, start + (double)i * delta);
		return;
	}
	uint64_t start = (uint64_t)ip[KK_RANGE_START_I], delta = (uint64_t)ip[KK_RANGE_DELTA_I];
	for (int64_t i = 0; i < count; i++)
		kk_dt_set_i64(dst, dt, i, (int64_t)(start + (uint64_t)i * delta));
}

/* ---- kk_quantize, kk_dequantize -------------------------------------------- */

typedef struct mv_quant {
	const char *x, *scale, *zp;
	char *y;
	int64_t mode, dim, inner, sdim, block, cols, ncc;
	int xdt, sdt, zdt, ydt;
} mv_quant;

typedef uint8_t kk_vb __attribute__((vector_size(KK_VL)));

/* Quantizes n f32 values with one scale and zero point to i8/u8 (bits). */
static void quant_f32_run(uint8_t *y, const char *x, int64_t n, float s, float z, float lo, float hi)
{
	const float magic = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
	kk_vf vs = kk_splat(s), vz = kk_splat(z), vlo = kk_splat(lo), vhi = kk_splat(hi);
	kk_vf vm = kk_splat(magic), big = kk_splat(4194304.0f), zero = kk_splat(0.0f);
	int64_t i = 0;
	for (; i + KK_VL <= n; i += KK_VL) {
		kk_vf v;
		memcpy(&v, x + i * 4, sizeof v);
		v = v / vs;
		kk_vf av = kk_select(v < zero, -v, v);
		/* |v| >= 2^22 is out of every 8-bit range: it saturates unrounded */
		v = kk_select(av < big, (v + vm) - vm, v);
		v = kk_select(v == v, v, zero) + vz;
		v = kk_vmin(kk_vmax(v, vlo), vhi);
		kk_vb q = __builtin_convertvector(__builtin_convertvector(v, kk_vi), kk_vb);
		memcpy(y + i, &q, sizeof q);
	}
	for (; i < n; i++) {
		float xv;
		memcpy(&xv, x + i * 4, 4);
		float r = nearbyintf(xv / s);
		if (r != r)
			r = 0.0f;
		r += z;
		r = r < lo ? lo : r > hi ? hi : r;
		y[i] = (uint8_t)(int32_t)r;
	}
}

/* Element range [i0, i1) of one row: its scale index base and step. */
static void quant_index(const mv_quant *a, int64_t row, int64_t c0, int64_t *base, int64_t *step)
{
	int64_t o = row / a->dim, c = row % a->dim;
	*step = 0;
	switch (a->mode) {
	case KK_Q_TENSOR: *base = 0; break;
	case KK_Q_AXIS: *base = c; break;
	default:
		*base = (o * a->sdim + c / a->block) * a->inner + c0;
		*step = 1;
		break;
	}
}

static void quant_task(void *arg, int64_t b, int64_t e, void *scratch)
{
	const mv_quant *a = arg;
	double lo = a->ydt == KK_DT_U8 ? 0.0 : a->ydt == KK_DT_I8 ? -128.0 : -2147483648.0;
	double hi = a->ydt == KK_DT_U8 ? 255.0 : a->ydt == KK_DT_I8 ? 127.0 : 2147483647.0;
	for (int64_t it = b; it < e; it++) {
		int64_t row = it / a->ncc, c0 = it % a->ncc * a->cols;
		int64_t c1 = mv_min(c0 + a->cols, a->inner), i0 = row * a->inner + c0, sb, ss;
		quant_index(a, row, c0, &sb, &ss);
		if (ss == 0 && a->xdt == KK_DT_F32 && a->sdt == KK_DT_F32 &&
		    a->ydt != KK_DT_I32) {
			float s = (float)kk_dt_get_f64(a->scale, a->sdt, sb);
			float z = a->zp ? (float)kk_dt_get_i64(a->zp, a->zdt, sb) : 0.0f;
			quant_f32_run((uint8_t *)a->y + i0, a->x + i0 * 4, c1 - c0, s, z, (float)lo,
			              (float)hi);
			continue;
		}
		for (int64_t i = 0; i < c1 - c0; i++) {
			int64_t q = sb + i * ss;
			float x = (float)kk_dt_get_f64(a->x, a->xdt, i0 + i);
			float s = (float)kk_dt_get_f64(a->scale, a->sdt, q);
			double r = nearbyintf(x / s);
			if (r != r)
				r = 0;
			r += a->zp ? (double)kk_dt_get_i64(a->zp, a->zdt, q) : 0.0;
			r = r < lo ? lo : r > hi ? hi : r;
			kk_dt_set_i64(a->y, a->ydt, i0 + i, (int64_t)r);
		}
	}
}

static void dequant_task(void *arg, int64_t b, int64_t e, void *scratch)
{
	const mv_quant *a = arg;
	for (int64_t it = b; it < e; it++) {
		int64_t row = it / a->ncc, c0 = it % a->ncc * a->cols;
		int64_t c1 = mv_min(c0 + a->cols, a->inner), i0 = row * a->inner + c0, sb, ss;
		quant_index(a, row, c0, &sb, &ss);
		if (ss == 0 && a->ydt == KK_DT_F32 && a->sdt == KK_DT_F32 &&
		    (a->xdt == KK_DT_U8 || a->xdt == KK_DT_I8)) {
			float s = (float)kk_dt_get_f64(a->scale, a->sdt, sb);
			float z = a->zp ? (float)kk_dt_get_i64(a->zp, a->zdt, sb) : 0.0f;
			const uint8_t *xu = (const uint8_t *)a->x + i0;
			const int8_t *xs = (const int8_t *)a->x + i0;
			float *y = (float *)(void *)(a->y + i0 * 4);
			int64_t n = c1 - c0;
			if (a->xdt == KK_DT_U8)
				for (int64_t i = 0; i < n; i++) {
					float v = ((float)xu[i] - z) * s;
					memcpy(y + i, &v, 4);
				}
			else
				for (int64_t i = 0; i < n; i++) {
					float v = ((float)xs[i] - z) * s;
					memcpy(y + i, &v, 4);
				}
			continue;
		}
		for (int64_t i = 0; i < c1 - c0; i++) {
			int64_t q = sb + i * ss;
			float x = (float)kk_dt_get_i64(a->x, a->xdt, i0 + i);
			float z = a->zp ? (float)kk_dt_get_i64(a->zp, a->zdt, q) : 0.0f;
			float s = (float)kk_dt_get_f64(a->scale, a->sdt, q);
			kk_dt_set_f64(a->y, a->ydt, i0 + i, (double)((x - z) * s));
		}
	}
}

static void mv_quant_run(const int64_t *ip, void *const *t, const kiln_abi_host *h,
                         kiln_abi_task_fn fn)
{
	mv_quant a = {.x = t[0], .scale = t[1], .y = t[ip[KK_Q_DST]], .mode = ip[KK_Q_MODE],
	              .dim = ip[KK_Q_DIM], .inner = ip[KK_Q_INNER], .sdim = ip[KK_Q_SDIM],
	              .block = ip[KK_Q_BLOCK], .xdt = (int)ip[KK_Q_XDT], .sdt = (int)ip[KK_Q_SDT],
	              .zdt = (int)ip[KK_Q_ZDT], .ydt = (int)ip[KK_Q_YDT]};
	a.zp = a.zdt != KK_DT_NONE ? t[2] : NULL;
	int64_t count = ip[KK_Q_COUNT];
	if (count == 0)
		return;
	a.cols = a.inner < 2 * MV_CHUNK ? a.inner : MV_CHUNK;
	a.ncc = (a.inner + a.cols - 1) / a.cols;
	mv_run(h, count / a.inner * a.ncc, count * 4, fn, &a);
}

KK_KERNEL(kk_quantize) { mv_quant_run(ip, t, h, quant_task); }
KK_KERNEL(kk_dequantize) { mv_quant_run(ip, t, h, dequant_task); }
