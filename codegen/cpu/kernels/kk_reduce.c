/* kk_reduce.c — reduction kernels: Reduce{Mean,Sum,Max,Min} (also used for
 * GlobalAveragePool / GlobalMaxPool), Softmax and LogSoftmax,
 * LayerNormalization, BatchNormalization (inference), MaxPool, AveragePool;
 * reduction fusions (a Softmax or LayerNorm with its elementwise prologue
 * and epilogue, row by row, the programs run by kk_ewp_exec_f32).
 * Parameter layouts: kk_params_reduce.h; design notes: docs/kernels/reduce.md.
 *
 * Each op has an f32 kernel (vectorised, vector-lane partial sums) and an
 * `_any` kernel for the other dtypes that mirrors the interpreter exactly:
 * floats through double, integers through int64, the same loop order, the
 * same rounding on the way back (so f16/bf16 results are bit-identical). */
#include "kk.h"
#include "kk_ewp.h"
#include "kk_math.h"

/* ---- vector helpers ---------------------------------------------------- */

/* Max / min that propagate NaN, like the interpreter's `v > acc || isnan(v)`. */
static inline kk_vf rd_vmax(kk_vf acc, kk_vf v)
{
	return kk_select((v > acc) | (v != v), v, acc);
}

static inline kk_vf rd_vmin(kk_vf acc, kk_vf v)
{
	return kk_select((v < acc) | (v != v), v, acc);
}

static inline float rd_max(float acc, float v)
{
	return v > acc || v != v ? v : acc;
}

static inline float rd_min(float acc, float v)
{
	return v < acc || v != v ? v : acc;
}

static inline float rd_hmax(kk_vf v)
{
	float m = v[0];
	for (int i = 1; i < KK_VL; i++)
		m = rd_max(m, v[i]);
	return m;
}

static inline float rd_hmin(kk_vf v)
{
	float m = v[0];
	for (int i = 1; i < KK_VL; i++)
		m = rd_min(m, v[i]);
	return m;
}

/* Lanes [0, n) all ones, the rest zero. */
static inline kk_vi rd_mask(int64_t n)
{
	kk_vi iota;
	for (int i = 0; i < KK_VL; i++)
		iota[i] = i;
	return iota < ((kk_vi){0} + (int32_t)n);
}

/* The first n (< KK_VL) lanes from p, the others `fill`. */
static inline kk_vf rd_load_fill(const float *p, int64_t n, float fill)
{
	return kk_select(rd_mask(n), kk_load_n(p, n), kk_splat(fill));
}

/* n (<= KK_VL) lanes: a plain vector access when n is KK_VL, as the
 * partial one costs a memcpy call where n is not a constant. */
static inline kk_vf rd_load_w(const float *p, int64_t n)
{
	return n == KK_VL ? kk_load(p) : kk_load_n(p, n);
}

static inline void rd_store_w(float *p, kk_vf v, int64_t n)
{
	if (n == KK_VL)
		kk_store(p, v);
	else
		kk_store_n(p, v, n);
}

/* ---- threads ------------------------------------------------------------ */

/* Work (elements touched) below which a kernel stays on one thread, and the
 * least work per task above it. */
#define RD_GRAIN 8192

typedef void (*rd_rows_fn)(const void *arg, int64_t r0, int64_t r1);

typedef struct rd_par {
	rd_rows_fn fn;
	const void *arg;
	int64_t rows, chunks;
} rd_par;

static inline int64_t rd_chunk_start(const rd_par *p, int64_t c)
{
	int64_t q = p->rows / p->chunks, r = p->rows % p->chunks;
	return q * c + (c < r ? c : r);
}

static void rd_par_task(void *arg, int64_t b, int64_t e, void *scratch)
{
	const rd_par *p = arg;
	(void)scratch;
	p->fn(p->arg, rd_chunk_start(p, b), rd_chunk_start(p, e));
}

/* Runs fn over rows [0, rows) that together touch `work` elements. */
static void rd_parallel(const kiln_abi_host *h, int64_t rows, int64_t work, rd_rows_fn fn,
                        const void *arg)
{
	int64_t chunks = work / RD_GRAIN;
	if (chunks > rows)
		chunks = rows;
	if (h->n_threads <= 1 || chunks <= 1) {
		if (rows > 0)
			fn(arg, 0, rows);
		return;
	}
	rd_par p = {fn, arg, rows, chunks};
	kk_parallel(h, chunks, rd_par_task, &p);
}

/* ---- Reduce* ------------------------------------------------------------ */

/* An odometer over groups of (size, stride): off is the offset of idx. */
typedef struct rd_odo {
	int n;
	const int64_t *g;
	int64_t idx[KILN_ABI_MAX_RANK];
	int64_t off;
} rd_odo;

static inline void rd_odo_init(rd_odo *o, const int64_t *g, int n, int64_t start)
{
	o->n = n;
	o->g = g;
	o->off = 0;
	for (int k = n - 1; k >= 0; k--) {
		o->idx[k] = start % g[2 * k];
		start /= g[2 * k];
		o->off += o->idx[k] * g[2 * k + 1];
	}
}

static inline void rd_odo_next(rd_odo *o)
{
	for (int k = o->n - 1; k >= 0; k--) {
		o->off += o->g[2 * k + 1];
		if (++o->idx[k] < o->g[2 * k])
			return;
		o->off -= o->idx[k] * o->g[2 * k + 1];
		o->idx[k] = 0;
	}
}

typedef struct rd_red {
	const void *x;
	void *y;
	int kind, dt, nk, nr;
	int64_t nout, group;
	const int64_t *kept, *red; /* (size, stride) pairs */
} rd_red;

static inline kk_vf rd_vop(int kind, kk_vf acc, kk_vf v)
{
	switch (kind) {
	case KK_RED_MAX: return rd_vmax(acc, v);
	case KK_RED_MIN: return rd_vmin(acc, v);
	default: return acc + v;
	}
}

static inline float rd_ident(int kind)
{
	return kind == KK_RED_MAX ? -KK_INFINITY : kind == KK_RED_MIN ? KK_INFINITY : 0.0f;
}

/* ROW mode: output o reduces rows of L contiguous elements, one per
 * combination of the outer reduced groups. */
static inline __attribute__((always_inline)) void
rd_red_row_k(const rd_red *r, int64_t o0, int64_t o1, int kind)
{
	const float *x = r->x;
	float *y = r->y;
	int64_t len = r->red[2 * (r->nr - 1)];
	int64_t rows = r->group / len;
	kk_vf id = kk_splat(rd_ident(kind));
	rd_odo ko;
	rd_odo_init(&ko, r->kept, r->nk, o0);
	for (int64_t o = o0; o < o1; o++, rd_odo_next(&ko)) {
		kk_vf a0 = id, a1 = id, a2 = id, a3 = id;
		rd_odo ro;
		rd_odo_init(&ro, r->red, r->nr - 1, 0);
		for (int64_t q = 0; q < rows; q++, rd_odo_next(&ro)) {
			const float *p = x + ko.off + ro.off;
			int64_t j = 0;
			for (; j + 4 * KK_VL <= len; j += 4 * KK_VL) {
				a0 = rd_vop(kind, a0, kk_load(p + j));
				a1 = rd_vop(kind, a1, kk_load(p + j + KK_VL));
				a2 = rd_vop(kind, a2, kk_load(p + j + 2 * KK_VL));
				a3 = rd_vop(kind, a3, kk_load(p + j + 3 * KK_VL));
			}
			for (; j + KK_VL <= len; j += KK_VL)
				a0 = rd_vop(kind, a0, kk_load(p + j));
			if (j < len)
				a1 = rd_vop(kind, a1, rd_load_fill(p + j, len - j, rd_ident(kind)));
		}
		kk_vf a = rd_vop(kind, rd_vop(kind, a0, a1), rd_vop(kind, a2, a3));
		float s = kind == KK_RED_MAX ? rd_hmax(a) : kind == KK_RED_MIN ? rd_hmin(a) : kk_hsum(a);
		y[o] = r->kind == KK_RED_MEAN ? s / (float)r->group : s;
	}
}

static void rd_red_row(const void *arg, int64_t o0, int64_t o1)
{
	const rd_red *r = arg;
	switch (r->kind) {
	case KK_RED_MAX: rd_red_row_k(r, o0, o1, KK_RED_MAX); break;
	case KK_RED_MIN: rd_red_row_k(r, o0, o1, KK_RED_MIN); break;
	default: rd_red_row_k(r, o0, o1, KK_RED_SUM); break;
	}
}

/* COL mode: outputs come in runs of I contiguous elements (the innermost
 * kept group); each run is cut into tiles of RD_TILE vectors, and a work
 * item is one tile of one run, reduced across every reduced combination.
 * Sums go through per-block partials (RD_BLOCK combinations) so rounding
 * error grows with the block count, not the group size. */
#define RD_TILE 4
#define RD_BLOCK 64

static inline __attribute__((always_inline)) void
rd_red_col_k(const rd_red *r, int64_t i0, int64_t i1, int kind)
{
	const float *x = r->x;
	float *y = r->y;
	int64_t inner = r->kept[2 * (r->nk - 1)];
	int64_t tw = RD_TILE * KK_VL, ntiles = (inner + tw - 1) / tw;
	kk_vf id = kk_splat(rd_ident(kind));
	for (int64_t it = i0; it < i1; it++) {
		int64_t run = it / ntiles, t0 = it % ntiles * tw;
		int64_t w = inner - t0 < tw ? inner - t0 : tw;
		int nv = (int)(w / KK_VL), rem = (int)(w % KK_VL);
		rd_odo ko;
		rd_odo_init(&ko, r->kept, r->nk - 1, run);
		const float *xb = x + ko.off + t0;
		kk_vf tot[RD_TILE + 1], blk[RD_TILE + 1];
		for (int v = 0; v <= RD_TILE; v++)
			tot[v] = blk[v] = id;
		rd_odo ro;
		rd_odo_init(&ro, r->red, r->nr, 0);
		for (int64_t q = 0; q < r->group; q++, rd_odo_next(&ro)) {
			const float *p = xb + ro.off;
			for (int v = 0; v < nv; v++)
				blk[v] = rd_vop(kind, blk[v], kk_load(p + v * KK_VL));
			if (rem)
				blk[nv] = rd_vop(kind, blk[nv], kk_load_n(p + nv * KK_VL, rem));
			if (kind == KK_RED_SUM && q % RD_BLOCK == RD_BLOCK - 1) {
				for (int v = 0; v <= nv; v++) {
					tot[v] += blk[v];
					blk[v] = id;
				}
			}
		}
		float *yp = y + run * inner + t0;
		for (int v = 0; v <= nv && (v < nv || rem); v++) {
			kk_vf a = kind == KK_RED_SUM ? tot[v] + blk[v] : blk[v];
			if (r->kind == KK_RED_MEAN)
				a = a / kk_splat((float)r->group);
			if (v < nv)
				kk_store(yp + v * KK_VL, a);
			else
				kk_store_n(yp + v * KK_VL, a, rem);
		}
	}
}

static void rd_red_col(const void *arg, int64_t i0, int64_t i1)
{
	const rd_red *r = arg;
	switch (r->kind) {
	case KK_RED_MAX: rd_red_col_k(r, i0, i1, KK_RED_MAX); break;
	case KK_RED_MIN: rd_red_col_k(r, i0, i1, KK_RED_MIN); break;
	default: rd_red_col_k(r, i0, i1, KK_RED_SUM); break;
	}
}

static int64_t rd_int_lowest(int dt)
{
	switch (dt) {
	case KK_DT_I64: return INT64_MIN;
	case KK_DT_I32: return INT32_MIN;
	case KK_DT_I8: return INT8_MIN;
	default: return 0;
	}
}

static int64_t rd_int_highest(int dt)
{
	switch (dt) {
	case KK_DT_I64: return INT64_MAX;
	case KK_DT_I32: return INT32_MAX;
	case KK_DT_I8: return INT8_MAX;
	case KK_DT_U8: return 255;
	default: return 1;
	}
}

/* The interpreter's order: each output accumulates its reduced elements in
 * input order, floats in double, integers in wrapping int64. */
static void rd_red_any(const void *arg, int64_t o0, int64_t o1)
{
	const rd_red *r = arg;
	int dt = r->dt, kind = r->kind;
	rd_odo ko;
	rd_odo_init(&ko, r->kept, r->nk, o0);
	for (int64_t o = o0; o < o1; o++, rd_odo_next(&ko)) {
		rd_odo ro;
		rd_odo_init(&ro, r->red, r->nr, 0);
		if (kk_dt_is_float(dt)) {
			double a = rd_ident(kind);
			for (int64_t q = 0; q < r->group; q++, rd_odo_next(&ro)) {
				double v = kk_dt_get_f64(r->x, dt, ko.off + ro.off);
				if (kind == KK_RED_MAX)
					a = v > a || v != v ? v : a;
				else if (kind == KK_RED_MIN)
					a = v < a || v != v ? v : a;
				else
					a += v;
			}
			kk_dt_set_f64(r->y, dt, o, kind == KK_RED_MEAN ? a / (double)r->group : a);
		} else {
			int64_t a = kind == KK_RED_MAX ? rd_int_lowest(dt) : kind == KK_RED_MIN ? rd_int_highest(dt) : 0;
			for (int64_t q = 0; q < r->group; q++, rd_odo_next(&ro)) {
				int64_t v = kk_dt_get_i64(r->x, dt, ko.off + ro.off);
				if (kind == KK_RED_MAX)
					a = v > a ? v : a;
				else if (kind == KK_RED_MIN)
					a = v < a ? v : a;
				else
					a = (int64_t)((uint64_t)a + (uint64_t)v);
			}
			kk_dt_set_i64(r->y, dt, o, kind == KK_RED_MEAN ? a / r->group : a);
		}
	}
}

static rd_red rd_red_args(const int64_t *ip, void *const *t)
{
	rd_red r = {
		.x = t[0], .y = t[ip[KK_RED_Y]], .kind = (int)ip[KK_RED_KIND], .dt = (int)ip[KK_RED_DT],
		.nk = (int)ip[KK_RED_NK], .nr = (int)ip[KK_RED_NR], .nout = ip[KK_RED_NOUT],
		.group = ip[KK_RED_GROUP],
	};
	r.kept = ip + KK_RED_GROUPS;
	r.red = r.kept + 2 * r.nk;
	return r;
}

/* COPY and FILL, for every dtype. Empty reductions give the interpreter's
 * values: 0 (Sum), NaN (float Mean) or 0 (integer Mean), the lowest (Max)
 * or highest (Min) value. */
static void rd_red_trivial(const rd_red *r, int mode)
{
	if (mode == KK_RED_MODE_COPY) {
		memcpy(r->y, r->x, (size_t)(r->nout * kk_dt_size(r->dt)));
		return;
	}
	for (int64_t o = 0; o < r->nout; o++) {
		if (kk_dt_is_float(r->dt))
			kk_dt_set_f64(r->y, r->dt, o, r->kind == KK_RED_MEAN ? (double)KK_NAN : rd_ident(r->kind));
		else
			kk_dt_set_i64(r->y, r->dt, o, r->kind == KK_RED_MAX ? rd_int_lowest(r->dt)
			                         : r->kind == KK_RED_MIN ? rd_int_highest(r->dt) : 0);
	}
}

KK_KERNEL(kk_reduce_f32)
{
	(void)fp;
	rd_red r = rd_red_args(ip, t);
	int mode = (int)ip[KK_RED_MODE];
	int64_t work = r.nout * r.group;
	if (mode == KK_RED_MODE_ROW) {
		rd_parallel(h, r.nout, work, rd_red_row, &r);
	} else if (mode == KK_RED_MODE_COL) {
		int64_t inner = r.kept[2 * (r.nk - 1)], tw = RD_TILE * KK_VL;
		int64_t items = r.nout / inner * ((inner + tw - 1) / tw);
		rd_parallel(h, items, work, rd_red_col, &r);
	} else {
		rd_red_trivial(&r, mode);
	}
}

KK_KERNEL(kk_reduce_any)
{
	(void)fp;
	rd_red r = rd_red_args(ip, t);
	int mode = (int)ip[KK_RED_MODE];
	if (mode == KK_RED_MODE_ROW || mode == KK_RED_MODE_COL)
		rd_parallel(h, r.nout, r.nout * r.group, rd_red_any, &r);
	else
		rd_red_trivial(&r, mode);
}

/* ---- Softmax, LogSoftmax ------------------------------------------------ */

typedef struct rd_smx {
	const void *x;
	void *y;
	int64_t outer, dim, inner;
	int log, dt;
} rd_smx;

/* Softmax (log: LogSoftmax) of x[0..n) into y, which may be x: one row of
 * kk_softmax_f32, and of a reduction fusion's root. Three passes: max, exp
 * and sum (softmax keeps exp(x - max) in y), then scale (or subtract the
 * log sum). */
static void rd_smx_row(const float *x, float *y, int64_t n, int log)
{
	kk_vf m0 = kk_splat(-KK_INFINITY), m1 = m0;
	int64_t j = 0;
	for (; j + 2 * KK_VL <= n; j += 2 * KK_VL) {
		m0 = rd_vmax(m0, kk_load(x + j));
		m1 = rd_vmax(m1, kk_load(x + j + KK_VL));
	}
	for (; j + KK_VL <= n; j += KK_VL)
		m0 = rd_vmax(m0, kk_load(x + j));
	if (j < n)
		m1 = rd_vmax(m1, rd_load_fill(x + j, n - j, -KK_INFINITY));
	float mx = rd_hmax(rd_vmax(m0, m1));
	if (mx == -KK_INFINITY)
		mx = 0.0f; /* all -inf: keep exp's argument finite, as the interpreter */
	kk_vf vm = kk_splat(mx), s0 = {0}, s1 = {0};
	for (j = 0; j + 2 * KK_VL <= n; j += 2 * KK_VL) {
		kk_vf e0 = kk_exp(kk_load(x + j) - vm), e1 = kk_exp(kk_load(x + j + KK_VL) - vm);
		if (!log) {
			kk_store(y + j, e0);
			kk_store(y + j + KK_VL, e1);
		}
		s0 += e0;
		s1 += e1;
	}
	for (; j + KK_VL <= n; j += KK_VL) {
		kk_vf e = kk_exp(kk_load(x + j) - vm);
		if (!log)
			kk_store(y + j, e);
		s0 += e;
	}
	if (j < n) {
		kk_vf e = kk_select(rd_mask(n - j), kk_exp(kk_load_n(x + j, n - j) - vm), kk_splat(0.0f));
		if (!log)
			kk_store_n(y + j, e, n - j);
		s1 += e;
	}
	float sum = kk_hsum(s0 + s1);
	if (log) {
		kk_vf ls = kk_splat(logf(sum));
		for (j = 0; j + KK_VL <= n; j += KK_VL)
			kk_store(y + j, (kk_load(x + j) - vm) - ls);
		if (j < n)
			kk_store_n(y + j, (kk_load_n(x + j, n - j) - vm) - ls, n - j);
	} else {
		kk_vf inv = kk_splat(1.0f / sum);
		for (j = 0; j + KK_VL <= n; j += KK_VL)
			kk_store(y + j, kk_load(y + j) * inv);
		if (j < n)
			kk_store_n(y + j, kk_load_n(y + j, n - j) * inv, n - j);
	}
}

/* inner == 1: one contiguous row per item. */
static void rd_smx_rows(const void *arg, int64_t r0, int64_t r1)
{
	const rd_smx *sm = arg;
	for (int64_t r = r0; r < r1; r++)
		rd_smx_row((const float *)sm->x + r * sm->dim, (float *)sm->y + r * sm->dim, sm->dim,
		           sm->log);
}

/* inner > 1: an item is one strip of up to KK_VL columns of one outer
 * index; the passes run down the softmax axis with a vector per row. */
static void rd_smx_cols(const void *arg, int64_t i0, int64_t i1)
{
	const rd_smx *s = arg;
	int64_t n = s->dim, in = s->inner, nstrip = (in + KK_VL - 1) / KK_VL;
	for (int64_t it = i0; it < i1; it++) {
		int64_t o = it / nstrip, c0 = it % nstrip * KK_VL;
		int64_t w = in - c0 < KK_VL ? in - c0 : KK_VL;
		const float *x = (const float *)s->x + o * n * in + c0;
		float *y = (float *)s->y + o * n * in + c0;
		kk_vf m = kk_splat(-KK_INFINITY), sum = {0};
		for (int64_t j = 0; j < n; j++)
			m = rd_vmax(m, rd_load_w(x + j * in, w));
		m = kk_select(m == kk_splat(-KK_INFINITY), kk_splat(0.0f), m);
		for (int64_t j = 0; j < n; j++) {
			kk_vf e = kk_exp(rd_load_w(x + j * in, w) - m);
			if (!s->log)
				rd_store_w(y + j * in, e, w);
			sum += e;
		}
		if (s->log) {
			kk_vf ls; /* once per strip: libm's logf is accurate and cheap enough */
			for (int i = 0; i < KK_VL; i++)
				ls[i] = logf(sum[i]);
			for (int64_t j = 0; j < n; j++)
				rd_store_w(y + j * in, (rd_load_w(x + j * in, w) - m) - ls, w);
		} else {
			kk_vf inv = kk_splat(1.0f) / sum;
			for (int64_t j = 0; j < n; j++)
				rd_store_w(y + j * in, rd_load_w(y + j * in, w) * inv, w);
		}
	}
}

/* The interpreter's algorithm in double, one (outer, inner) line per item. */
static void rd_smx_any(const void *arg, int64_t i0, int64_t i1)
{
	const rd_smx *s = arg;
	int64_t n = s->dim, in = s->inner;
	for (int64_t it = i0; it < i1; it++) {
		int64_t base = it / in * n * in + it % in;
		double mx = -(double)KK_INFINITY, sum = 0.0;
		for (int64_t j = 0; j < n; j++) {
			double v = kk_dt_get_f64(s->x, s->dt, base + j * in);
			if (v > mx || v != v)
				mx = v;
		}
		if (mx == -(double)KK_INFINITY)
			mx = 0.0;
		for (int64_t j = 0; j < n; j++)
			sum += exp(kk_dt_get_f64(s->x, s->dt, base + j * in) - mx);
		double lsum = log(sum);
		for (int64_t j = 0; j < n; j++) {
			double v = kk_dt_get_f64(s->x, s->dt, base + j * in) - mx;
			kk_dt_set_f64(s->y, s->dt, base + j * in, s->log ? v - lsum : exp(v) / sum);
		}
	}
}

static rd_smx rd_smx_args(const int64_t *ip, void *const *t)
{
	return (rd_smx){.x = t[0], .y = t[1], .outer = ip[KK_SMX_OUTER], .dim = ip[KK_SMX_DIM],
	                .inner = ip[KK_SMX_INNER], .log = (int)ip[KK_SMX_LOG],
	                .dt = (int)ip[KK_SMX_DT]};
}

KK_KERNEL(kk_softmax_f32)
{
	(void)fp;
	rd_smx s = rd_smx_args(ip, t);
	int64_t work = 3 * s.outer * s.dim * s.inner;
	if (s.inner == 1)
		rd_parallel(h, s.outer, work, rd_smx_rows, &s);
	else
		rd_parallel(h, s.outer * ((s.inner + KK_VL - 1) / KK_VL), work, rd_smx_cols, &s);
}

KK_KERNEL(kk_softmax_any)
{
	(void)fp;
	rd_smx s = rd_smx_args(ip, t);
	rd_parallel(h, s.outer * s.inner, 3 * s.outer * s.dim * s.inner, rd_smx_any, &s);
}

/* ---- LayerNormalization -------------------------------------------------- */

typedef struct rd_ln {
	const void *x, *scale, *bias;
	void *y, *mean, *inv;
	int64_t rows, dim;
	int dt, stash_dt;
	double eps;
} rd_ln;

static inline int64_t rd_round64(int64_t b)
{
	return (b + 63) / 64 * 64;
}

/* Writes the broadcast parameter src (strides st over the norm dims) densely
 * into dst, element by element whatever the dtype. */
static void rd_expand(void *dst, const void *src, int64_t esize, int rank, const int64_t *dims,
                      const int64_t *st)
{
	int64_t g[2 * KILN_ABI_MAX_RANK], n = 1;
	for (int k = 0; k < rank; k++) {
		g[2 * k] = dims[k];
		g[2 * k + 1] = st[k];
		n *= dims[k];
	}
	rd_odo o;
	rd_odo_init(&o, g, rank, 0);
	for (int64_t j = 0; j < n; j++, rd_odo_next(&o))
		memcpy((char *)dst + j * esize, (const char *)src + o.off * esize, (size_t)esize);
}

static void rd_ln_stats(const rd_ln *l, int64_t r, double mean, double inv)
{
	if (l->mean)
		kk_dt_set_f64(l->mean, l->stash_dt, r, mean);
	if (l->inv)
		kk_dt_set_f64(l->inv, l->stash_dt, r, inv);
}

/* LayerNorm of x[0..n) into y, which may be x (sc, bi: n floats; bi may be
 * NULL): one row of kk_layer_norm_f32, and of a reduction fusion's root;
 * *mean and *inv get the row's statistics. */
static void rd_ln_row(const float *x, float *y, int64_t n, const float *sc, const float *bi,
                      float eps, float *mean_out, float *inv_out)
{
	kk_vf a0 = {0}, a1 = {0};
	int64_t j = 0;
	for (; j + 2 * KK_VL <= n; j += 2 * KK_VL) {
		a0 += kk_load(x + j);
		a1 += kk_load(x + j + KK_VL);
	}
	for (; j + KK_VL <= n; j += KK_VL)
		a0 += kk_load(x + j);
	if (j < n)
		a1 += kk_load_n(x + j, n - j);
	float mean = kk_hsum(a0 + a1) / (float)n;
	kk_vf vm = kk_splat(mean);
	a0 = a1 = (kk_vf){0};
	for (j = 0; j + 2 * KK_VL <= n; j += 2 * KK_VL) {
		kk_vf d0 = kk_load(x + j) - vm, d1 = kk_load(x + j + KK_VL) - vm;
		a0 += d0 * d0;
		a1 += d1 * d1;
	}
	for (; j + KK_VL <= n; j += KK_VL) {
		kk_vf d = kk_load(x + j) - vm;
		a0 += d * d;
	}
	if (j < n) {
		kk_vf d = kk_select(rd_mask(n - j), kk_load_n(x + j, n - j) - vm, kk_splat(0.0f));
		a1 += d * d;
	}
	float var = kk_hsum(a0 + a1) / (float)n;
	float inv = 1.0f / sqrtf(var + eps);
	kk_vf vi = kk_splat(inv);
	*mean_out = mean;
	*inv_out = inv;
	for (j = 0; j + KK_VL <= n; j += KK_VL) {
		kk_vf v = (kk_load(x + j) - vm) * vi * kk_load(sc + j);
		if (bi)
			v += kk_load(bi + j);
		kk_store(y + j, v);
	}
	if (j < n) {
		kk_vf v = (kk_load_n(x + j, n - j) - vm) * vi * kk_load_n(sc + j, n - j);
		if (bi)
			v += kk_load_n(bi + j, n - j);
		kk_store_n(y + j, v, n - j);
	}
}

static void rd_ln_f32(const void *arg, int64_t r0, int64_t r1)
{
	const rd_ln *l = arg;
	int64_t n = l->dim;
	for (int64_t r = r0; r < r1; r++) {
		float mean, inv;
		rd_ln_row((const float *)l->x + r * n, (float *)l->y + r * n, n, l->scale, l->bias,
		          (float)l->eps, &mean, &inv);
		rd_ln_stats(l, r, mean, inv);
	}
}

static void rd_ln_any(const void *arg, int64_t r0, int64_t r1)
{
	const rd_ln *l = arg;
	int64_t n = l->dim;
	int dt = l->dt;
	for (int64_t r = r0; r < r1; r++) {
		int64_t base = r * n;
		double mean = 0.0, var = 0.0;
		for (int64_t j = 0; j < n; j++)
			mean += kk_dt_get_f64(l->x, dt, base + j);
		mean /= (double)n;
		for (int64_t j = 0; j < n; j++) {
			double d = kk_dt_get_f64(l->x, dt, base + j) - mean;
			var += d * d;
		}
		var /= (double)n;
		double inv = 1.0 / sqrt(var + l->eps);
		for (int64_t j = 0; j < n; j++) {
			double v = (kk_dt_get_f64(l->x, dt, base + j) - mean) * inv * kk_dt_get_f64(l->scale, dt, j);
			if (l->bias)
				v += kk_dt_get_f64(l->bias, dt, j);
			kk_dt_set_f64(l->y, dt, base + j, v);
		}
		rd_ln_stats(l, r, mean, inv);
	}
}

static rd_ln rd_ln_args(const int64_t *ip, const double *fp, void *const *t)
{
	int n_in = (int)ip[KK_LN_N_IN], n_out = (int)ip[KK_LN_N_OUT];
	rd_ln l = {
		.x = t[0], .scale = t[1], .bias = n_in > 2 ? t[2] : NULL, .y = t[n_in],
		.mean = n_out > 1 ? t[n_in + 1] : NULL, .inv = n_out > 2 ? t[n_in + 2] : NULL,
		.rows = ip[KK_LN_ROWS], .dim = ip[KK_LN_DIM], .dt = (int)ip[KK_LN_DT],
		.stash_dt = (int)ip[KK_LN_STASH_DT], .eps = fp[KK_LN_FP_EPS],
	};
	int rank = (int)ip[KK_LN_NORM_RANK];
	const int64_t *dims = ip + KK_LN_DIMS;
	int64_t es = kk_dt_size(l.dt);
	char *scratch = t[n_in + n_out];
	if (!ip[KK_LN_SCALE_DENSE]) {
		rd_expand(scratch, l.scale, es, rank, dims, dims + rank);
		l.scale = scratch;
	}
	if (l.bias && !ip[KK_LN_BIAS_DENSE]) {
		char *b = scratch + rd_round64(l.dim * es);
		rd_expand(b, l.bias, es, rank, dims, dims + 2 * rank);
		l.bias = b;
	}
	return l;
}

KK_KERNEL(kk_layer_norm_f32)
{
	rd_ln l = rd_ln_args(ip, fp, t);
	rd_parallel(h, l.rows, 3 * l.rows * l.dim, rd_ln_f32, &l);
}

KK_KERNEL(kk_layer_norm_any)
{
	rd_ln l = rd_ln_args(ip, fp, t);
	rd_parallel(h, l.rows, 3 * l.rows * l.dim, rd_ln_any, &l);
}

/* ---- reduction fusion ----------------------------------------------------- */

/* A prologue or epilogue program (kk_params_reduce.h, KK_RFP_*). */
typedef struct rd_rf_prog {
	int nin, nout, nreg, nconst, ninstr;
	const int64_t *src, *out, *instr;
	const double *consts;
} rd_rf_prog;

/* How the multi-row path (rd_rf_blocks) reads a fusion input: in place
 * (dense: row r at r * LEN), as one value for every row, as one row for
 * every row (both set up once per task), or row by row into its register
 * (any other strides). */
enum { RD_RF_DENSE, RD_RF_SCALAR, RD_RF_ROW, RD_RF_GATHER };

typedef struct rd_rf {
	int kind, nin, nout, orank, x, scale, bias, y;
	int64_t rows, len, chunks;
	int64_t nb; /* rows per block of the multi-row path; 0: row by row */
	const int64_t *odims, *inner, *ostride; /* [orank], [nin], [nin][orank] */
	rd_rf_prog a, b;
	float eps;
	bool walk; /* the multi-row path needs each row's offsets */
	unsigned char mode[KK_EWP_MAX_REG]; /* RD_RF_* of each fusion input */
	void *const *t;
} rd_rf;

/* One task's registers for one program: where each is read and written,
 * and which hold one value over the block (constants, broadcast inputs). */
typedef struct rd_rf_regs {
	const rd_rf_prog *p;
	float *regs; /* nreg blocks of KK_RF_BLOCK floats */
	const float *src[KK_EWP_MAX_REG];
	float *dst[KK_EWP_MAX_REG];
	bool one[KK_EWP_MAX_REG];
	float val[KK_EWP_MAX_REG];
	/* multi-row path, gathered inputs: the register holds the row (or the
	 * value) at offset cur in every row of the block (-1: not known); uni,
	 * while a block is gathered, the offset its rows share (-1: none) */
	int64_t cur[KK_EWP_MAX_REG], uni[KK_EWP_MAX_REG];
} rd_rf_regs;

static const int64_t *rd_rf_prog_read(rd_rf_prog *p, const int64_t *ip, const double **fp)
{
	p->nin = (int)ip[KK_RFP_NIN];
	p->nout = (int)ip[KK_RFP_NOUT];
	p->nreg = (int)ip[KK_RFP_NREG];
	p->nconst = (int)ip[KK_RFP_NCONST];
	p->ninstr = (int)ip[KK_RFP_NINSTR];
	p->src = ip + KK_RFP_TAIL;
	p->out = p->src + p->nin;
	p->instr = p->out + 2 * p->nout;
	p->consts = *fp;
	*fp += p->nconst;
	return p->instr + p->ninstr * KK_EWP_INSTR_SIZE;
}

static void rd_rf_regs_init(rd_rf_regs *s, const rd_rf_prog *p, float *regs)
{
	s->p = p;
	s->regs = regs;
	for (int r = 0; r < p->nreg; r++) {
		s->src[r] = s->dst[r] = regs + (int64_t)r * KK_RF_BLOCK;
		s->one[r] = false;
	}
	for (int c = 0; c < p->nconst; c++) {
		float v = (float)p->consts[c], *r = regs + (int64_t)(p->nin + c) * KK_RF_BLOCK;
		for (int64_t j = 0; j < KK_RF_BLOCK; j += KK_VL)
			kk_store(r + j, kk_splat(v));
		s->one[p->nin + c] = true;
		s->val[p->nin + c] = v;
	}
}

static inline float *rd_rf_reg(const rd_rf_regs *s, int r)
{
	return s->regs + (int64_t)r * KK_RF_BLOCK;
}

/* x[0..m) into reg, padded with zeros to nv whole vectors. */
static const float *rd_rf_pad(float *reg, const float *x, int64_t m, int64_t nv)
{
	memcpy(reg, x, (size_t)m * sizeof(float));
	memset(reg + m, 0, (size_t)(nv * KK_VL - m) * sizeof(float));
	return reg;
}

/* Points each output's temporary at its destination where it can: `row`
 * for the root's input (it has room for whole vectors always), fusion
 * output j at element `at` when the block is whole vectors. */
static void rd_rf_direct(const rd_rf *f, rd_rf_regs *s, int64_t at, float *row, bool whole)
{
	const rd_rf_prog *p = s->p;
	for (int o = 0; o < p->nout; o++) {
		int reg = (int)p->out[2 * o];
		if (reg >= p->nin + p->nconst)
			s->src[reg] = s->dst[reg] = rd_rf_reg(s, reg);
	}
	for (int o = 0; o < p->nout; o++) {
		int reg = (int)p->out[2 * o], j = (int)p->out[2 * o + 1];
		if (reg < p->nin + p->nconst || s->dst[reg] != rd_rf_reg(s, reg))
			continue;
		if (j < 0)
			s->src[reg] = s->dst[reg] = row;
		else if (whole)
			s->src[reg] = s->dst[reg] = (float *)f->t[f->nin + j] + at;
	}
}

/* Every instruction of s->p over the first nv vectors of the registers. */
static void rd_rf_exec(const rd_rf_regs *s, int64_t nv)
{
	const rd_rf_prog *p = s->p;
	for (int q = 0; q < p->ninstr; q++) {
		const int64_t *in = p->instr + q * KK_EWP_INSTR_SIZE;
		const float *opnd[3] = {NULL, NULL, NULL};
		float val[3] = {0, 0, 0};
		int one = 0;
		for (int a = 0; a < 3; a++) {
			int64_t reg = in[KK_EWP_I_A + a];
			if (reg < 0)
				continue;
			opnd[a] = s->src[reg];
			if (s->one[reg]) {
				one |= 1 << a;
				val[a] = s->val[reg];
			}
		}
		kk_ewp_exec_f32((int)in[KK_EWP_I_OP], s->dst[in[KK_EWP_I_DST]], opnd[0], opnd[1], opnd[2],
		                one, val, nv);
	}
}

/* Copies the m floats of each output that did not live in its destination
 * (`row`, or fusion output j from element `at`). */
static void rd_rf_copy_out(const rd_rf *f, const rd_rf_regs *s, int64_t at, float *row, int64_t m)
{
	const rd_rf_prog *p = s->p;
	for (int o = 0; o < p->nout; o++) {
		int reg = (int)p->out[2 * o], j = (int)p->out[2 * o + 1];
		float *to = j < 0 ? row : (float *)f->t[f->nin + j] + at;
		if (s->src[reg] != to)
			memcpy(to, s->src[reg], (size_t)m * sizeof(float));
	}
}

/* Runs program s->p over row r: input registers read the fusion inputs at
 * off[] (or `row`, source -1), outputs go to the fusion outputs' row r (or
 * to `row`, destination -1), a block of KK_RF_BLOCK at a time. A block of
 * whole vectors is read and written in place; `row` has room for whole
 * vectors always. */
static void rd_rf_run(const rd_rf *f, rd_rf_regs *s, const int64_t *off, int64_t r, float *row)
{
	const rd_rf_prog *p = s->p;
	int64_t len = f->len;
	for (int q = 0; q < p->nin; q++) {
		int k = (int)p->src[q];
		s->one[q] = k >= 0 && !f->inner[k];
		if (s->one[q]) {
			float v = ((const float *)f->t[k])[off[k]];
			float *reg = rd_rf_reg(s, q);
			int64_t fill = len < KK_RF_BLOCK ? (len + KK_VL - 1) / KK_VL * KK_VL : KK_RF_BLOCK;
			for (int64_t j = 0; j < fill; j += KK_VL)
				kk_store(reg + j, kk_splat(v));
			s->src[q] = reg;
			s->val[q] = v;
		}
	}
	for (int64_t i = 0; i < len; i += KK_RF_BLOCK) {
		int64_t m = len - i < KK_RF_BLOCK ? len - i : KK_RF_BLOCK;
		int64_t nv = (m + KK_VL - 1) / KK_VL;
		bool whole = m % KK_VL == 0;
		for (int q = 0; q < p->nin; q++) {
			int k = (int)p->src[q];
			if (s->one[q])
				continue;
			const float *x = k >= 0 ? (const float *)f->t[k] + off[k] + i : row + i;
			s->src[q] = whole ? x : rd_rf_pad(rd_rf_reg(s, q), x, m, nv);
		}
		rd_rf_direct(f, s, r * len + i, row + i, whole);
		rd_rf_exec(s, nv);
		rd_rf_copy_out(f, s, r * len + i, row + i, m);
	}
}

/* Each input's offset in row r (off) and r's index over the outer dims
 * (idx): divisions, once per task. */
static void rd_rf_seek(const rd_rf *f, int64_t r, int64_t *off, int64_t *idx)
{
	const int64_t *st = f->ostride;
	int nd = f->orank;
	for (int k = 0; k < f->nin; k++)
		off[k] = 0;
	for (int dd = nd - 1; dd >= 0; dd--) {
		idx[dd] = r % f->odims[dd];
		r /= f->odims[dd];
		for (int k = 0; k < f->nin; k++)
			off[k] += idx[dd] * st[k * nd + dd];
	}
}

/* From one row's offsets to the next row's: an odometer over the outer
 * dims (a division per row costs more than a short row's prologue). */
static void rd_rf_step(const rd_rf *f, int64_t *off, int64_t *idx)
{
	const int64_t *st = f->ostride;
	int nd = f->orank;
	for (int dd = nd - 1; dd >= 0; dd--) {
		for (int k = 0; k < f->nin; k++)
			off[k] += st[k * nd + dd];
		if (++idx[dd] < f->odims[dd])
			break;
		idx[dd] = 0;
		for (int k = 0; k < f->nin; k++)
			off[k] -= f->odims[dd] * st[k * nd + dd];
	}
}

/* The root over one row. */
static void rd_rf_root(const rd_rf *f, const float *x, float *y)
{
	float mean, inv;
	if (f->kind == KK_RF_LAYER_NORM)
		rd_ln_row(x, y, f->len, f->t[f->scale], f->bias >= 0 ? f->t[f->bias] : NULL, f->eps,
		          &mean, &inv);
	else
		rd_smx_row(x, y, f->len, f->kind == KK_RF_LOG_SOFTMAX);
}

/* Rows [r0, r1) one by one (rows longer than a register block), with the
 * task's row buffer and registers. */
static void rd_rf_rows(const rd_rf *f, int64_t r0, int64_t r1, float *row, float *regs)
{
	int64_t len = f->len;
	rd_rf_regs a, b;
	rd_rf_regs_init(&a, &f->a, regs);
	rd_rf_regs_init(&b, &f->b, regs + (int64_t)f->a.nreg * KK_RF_BLOCK);
	int64_t off[KK_EWP_MAX_REG], idx[KILN_ABI_MAX_RANK];
	rd_rf_seek(f, r0, off, idx);
	for (int64_t r = r0; r < r1; r++) {
		if (r > r0)
			rd_rf_step(f, off, idx);
		if (f->a.ninstr)
			rd_rf_run(f, &a, off, r, row);
		const float *x = f->x >= 0 ? (const float *)f->t[f->x] + off[f->x] : row;
		float *y = f->y >= 0 ? (float *)f->t[f->nin + f->y] + r * len : row;
		rd_rf_root(f, x, y);
		if (f->b.ninstr)
			rd_rf_run(f, &b, off, r, y);
	}
}

/* How the multi-row path reads fusion input k: dense when row r is at
 * r * LEN (stride 1 along the row, or rows of one element, and the outer
 * strides of a dense tensor); scalar or one row when the outer strides are
 * 0; else gathered (a row or a value per row, repeating or not). */
static int rd_rf_mode(const rd_rf *f, int k)
{
	const int64_t *st = f->ostride + (int64_t)k * f->orank;
	int64_t span = f->len;
	bool dense = f->inner[k] || f->len == 1, zero = true;
	for (int d = f->orank - 1; d >= 0; d--) {
		dense &= f->odims[d] == 1 || st[d] == span;
		zero &= f->odims[d] == 1 || st[d] == 0;
		span *= f->odims[d];
	}
	return dense ? RD_RF_DENSE : !zero ? RD_RF_GATHER : f->inner[k] ? RD_RF_ROW : RD_RF_SCALAR;
}

/* The multi-row path's input registers for a task: a scalar input is
 * splatted once, a row input copied to each row of a block once; a
 * gathered one holds nothing known yet (zeros, so the lanes past a block's
 * end are never unset). */
static void rd_rf_blocks_init(const rd_rf *f, rd_rf_regs *s)
{
	const rd_rf_prog *p = s->p;
	for (int q = 0; q < p->nin; q++) {
		int k = (int)p->src[q];
		float *reg = rd_rf_reg(s, q);
		s->cur[q] = -1;
		if (k < 0 || f->mode[k] == RD_RF_DENSE)
			continue;
		float v = f->mode[k] == RD_RF_SCALAR ? *(const float *)f->t[k] : 0.0f;
		for (int64_t j = 0; j < KK_RF_BLOCK; j += KK_VL)
			kk_store(reg + j, kk_splat(v));
		for (int64_t i = 0; f->mode[k] == RD_RF_ROW && i < f->nb; i++)
			memcpy(reg + i * f->len, f->t[k], (size_t)f->len * sizeof(float));
		s->src[q] = reg;
		s->one[q] = f->mode[k] == RD_RF_SCALAR;
		s->val[q] = v;
	}
}

/* Row i of a block (its offsets off) into the gathered input registers,
 * at element i * LEN: its LEN floats, or its one value LEN times; not
 * where the register holds it already (a mask per batch is copied once per
 * batch, not once per block). */
static void rd_rf_gather(const rd_rf *f, rd_rf_regs *s, const int64_t *off, int64_t i)
{
	const rd_rf_prog *p = s->p;
	int64_t len = f->len;
	for (int q = 0; q < p->nin; q++) {
		int k = (int)p->src[q];
		if (k < 0 || f->mode[k] != RD_RF_GATHER)
			continue;
		int64_t o = off[k];
		s->uni[q] = i == 0 || s->uni[q] == o ? o : -1;
		if (o == s->cur[q])
			continue;
		s->cur[q] = -1;
		float *to = rd_rf_reg(s, q) + i * len;
		const float *x = (const float *)f->t[k] + o;
		if (f->inner[k]) {
			memcpy(to, x, (size_t)len * sizeof(float));
		} else {
			const kk_vf v = kk_splat(*x);
			int64_t j = 0;
			for (; j + KK_VL <= len; j += KK_VL)
				kk_store(to + j, v);
			if (j < len)
				kk_store_n(to + j, v, len - j);
		}
	}
}

/* After a block of n rows is gathered: a register that holds one row in
 * all f->nb rows keeps holding it; a value shared by the block's rows is
 * read from a vector register. */
static void rd_rf_gathered(const rd_rf *f, rd_rf_regs *s, int64_t n)
{
	const rd_rf_prog *p = s->p;
	for (int q = 0; q < p->nin; q++) {
		int k = (int)p->src[q];
		if (k < 0 || f->mode[k] != RD_RF_GATHER)
			continue;
		int64_t o = s->uni[q];
		if (o >= 0 && n == f->nb)
			s->cur[q] = o;
		s->one[q] = o >= 0 && !f->inner[k];
		if (s->one[q])
			s->val[q] = ((const float *)f->t[k])[o];
	}
}

/* Program s->p over rows [r, r + n) as one block of n * LEN elements,
 * the rows end to end: dense inputs and `row` (the root's rows: source -1,
 * destination -1) are read and written in place, through registers padded
 * with zeros when the block ends inside a vector; the other inputs are in
 * their registers already. */
static void rd_rf_block(const rd_rf *f, rd_rf_regs *s, int64_t r, int64_t n, float *row)
{
	const rd_rf_prog *p = s->p;
	int64_t m = n * f->len, at = r * f->len, nv = (m + KK_VL - 1) / KK_VL;
	bool whole = m % KK_VL == 0;
	for (int q = 0; q < p->nin; q++) {
		int k = (int)p->src[q];
		if (k >= 0 && f->mode[k] != RD_RF_DENSE)
			continue;
		const float *x = k >= 0 ? (const float *)f->t[k] + at : row;
		s->src[q] = whole ? x : rd_rf_pad(rd_rf_reg(s, q), x, m, nv);
	}
	rd_rf_direct(f, s, at, row, whole);
	rd_rf_exec(s, nv);
	rd_rf_copy_out(f, s, at, row, m);
}

/* Rows [r0, r1) in blocks of f->nb rows (the multi-row path): each block's
 * gathered inputs row by row, then the prologue over the whole block into
 * `buf` (KK_RF_BLOCK floats: the rows end to end), the root row by row,
 * and the epilogue over the whole block, so the interpreter runs each
 * instruction once per block rather than once per row. */
static void rd_rf_blocks(const rd_rf *f, int64_t r0, int64_t r1, float *buf, float *regs)
{
	int64_t len = f->len;
	rd_rf_regs a, b;
	rd_rf_regs_init(&a, &f->a, regs);
	rd_rf_regs_init(&b, &f->b, regs + (int64_t)f->a.nreg * KK_RF_BLOCK);
	rd_rf_blocks_init(f, &a);
	rd_rf_blocks_init(f, &b);
	int64_t off[KK_EWP_MAX_REG], idx[KILN_ABI_MAX_RANK];
	if (f->walk)
		rd_rf_seek(f, r0, off, idx);
	for (int64_t r = r0; r < r1; r += f->nb) {
		int64_t n = r1 - r < f->nb ? r1 - r : f->nb;
		if (f->walk) {
			for (int64_t i = 0; i < n; i++) {
				if (r + i > r0)
					rd_rf_step(f, off, idx);
				rd_rf_gather(f, &a, off, i);
				rd_rf_gather(f, &b, off, i);
			}
			rd_rf_gathered(f, &a, n);
			rd_rf_gathered(f, &b, n);
		}
		if (f->a.ninstr)
			rd_rf_block(f, &a, r, n, buf);
		float *y = f->y >= 0 ? (float *)f->t[f->nin + f->y] + r * len : buf;
		for (int64_t i = 0; i < n; i++) {
			const float *x = f->x < 0 ? buf + i * len : (const float *)f->t[f->x] + (r + i) * len;
			rd_rf_root(f, x, y + i * len);
		}
		if (f->b.ninstr)
			rd_rf_block(f, &b, r, n, y);
	}
}

/* Work items are blocks of f->nb rows (the multi-row path) or rows. The
 * thread's scratch: the row buffer, then A's registers, then B's. */
static void rd_rf_task(void *arg, int64_t b, int64_t e, void *scratch)
{
	const rd_rf *f = arg;
	int64_t unit = f->nb ? f->nb : 1, items = (f->rows + unit - 1) / unit;
	int64_t q = items / f->chunks, rem = items % f->chunks;
	int64_t r0 = (q * b + (b < rem ? b : rem)) * unit, r1 = (q * e + (e < rem ? e : rem)) * unit;
	float *row = scratch, *regs = row + KK_RF_ROW_FLOATS(f->len);
	if (f->nb)
		rd_rf_blocks(f, r0, r1 < f->rows ? r1 : f->rows, row, regs);
	else
		rd_rf_rows(f, r0, r1, row, regs);
}

KK_KERNEL(kk_reduce_fusion_f32)
{
	rd_rf f = {
		.kind = (int)ip[KK_RF_KIND],
		.nin = (int)ip[KK_RF_NIN],
		.nout = (int)ip[KK_RF_NOUT],
		.rows = ip[KK_RF_ROWS],
		.len = ip[KK_RF_LEN],
		.orank = (int)ip[KK_RF_ORANK],
		.x = (int)ip[KK_RF_X],
		.scale = (int)ip[KK_RF_SCALE],
		.bias = (int)ip[KK_RF_BIAS],
		.y = (int)ip[KK_RF_Y],
		.eps = (float)fp[KK_RF_FP_EPS],
		.t = t,
	};
	f.odims = ip + KK_RF_TAIL;
	f.inner = f.odims + f.orank;
	f.ostride = f.inner + f.nin;
	const double *consts = fp + KK_RF_FP_CONSTS;
	const int64_t *next = rd_rf_prog_read(&f.a, f.ostride + f.nin * f.orank, &consts);
	rd_rf_prog_read(&f.b, next, &consts);
	/* short rows go several to a block (whole vectors where a few rows
	 * fewer make them so), each input read as rd_rf_mode says */
	if (f.len <= KK_RF_BLOCK) {
		int64_t low = f.len & -f.len, g = KK_VL / (low < KK_VL ? low : KK_VL);
		f.nb = KK_RF_BLOCK / f.len;
		if (f.nb >= g)
			f.nb -= f.nb % g;
		for (int k = 0; k < f.nin; k++)
			f.mode[k] = (unsigned char)rd_rf_mode(&f, k);
		/* the root's input, a fusion input, has the fusion's shape: dense */
		if (f.x >= 0 && f.mode[f.x] != RD_RF_DENSE)
			f.nb = 0;
		f.walk = false;
		for (int p = 0; p < 2; p++) {
			const rd_rf_prog *pg = p ? &f.b : &f.a;
			for (int q = 0; q < pg->nin; q++)
				f.walk |= pg->src[q] >= 0 && f.mode[pg->src[q]] == RD_RF_GATHER;
		}
	}
	/* one work item through the pool all the same (it hands out the
	 * scratch), or chunks of blocks or rows */
	int64_t work = f.rows * f.len * (3 + f.a.ninstr + f.b.ninstr);
	int64_t items = f.nb ? (f.rows + f.nb - 1) / f.nb : f.rows;
	f.chunks = h->n_threads <= 1 ? 1 : work / RD_GRAIN;
	if (f.chunks > items)
		f.chunks = items;
	if (f.chunks < 1)
		f.chunks = 1;
	kk_parallel(h, f.chunks, rd_rf_task, &f);
}

/* ---- BatchNormalization (inference) ------------------------------------- */

typedef struct rd_bn {
	const void *x, *p[4]; /* scale, B, mean, var */
	void *y;
	const float *tab; /* f32: C shifts (mean), C multipliers, C biases */
	int64_t c, inner;
	int dt, pdt[4];
	double eps;
} rd_bn;

static inline double rd_bn_mul(const rd_bn *b, int64_t ch)
{
	double var = kk_dt_get_f64(b->p[3], b->pdt[3], ch);
	return kk_dt_get_f64(b->p[0], b->pdt[0], ch) / sqrt(var + b->eps);
}

/* One (batch, channel) plane of INNER elements per row. */
static void rd_bn_f32(const void *arg, int64_t r0, int64_t r1)
{
	const rd_bn *b = arg;
	int64_t n = b->inner;
	for (int64_t r = r0; r < r1; r++) {
		int64_t ch = r % b->c;
		const float *x = (const float *)b->x + r * n;
		float *y = (float *)b->y + r * n;
		kk_vf m = kk_splat(b->tab[ch]), k = kk_splat(b->tab[b->c + ch]);
		kk_vf a = kk_splat(b->tab[2 * b->c + ch]);
		int64_t j = 0;
		for (; j + KK_VL <= n; j += KK_VL)
			kk_store(y + j, (kk_load(x + j) - m) * k + a);
		if (j < n)
			kk_store_n(y + j, (kk_load_n(x + j, n - j) - m) * k + a, n - j);
	}
}

static void rd_bn_any(const void *arg, int64_t r0, int64_t r1)
{
	const rd_bn *b = arg;
	for (int64_t r = r0; r < r1; r++) {
		int64_t ch = r % b->c;
		double mul = rd_bn_mul(b, ch), mean = kk_dt_get_f64(b->p[2], b->pdt[2], ch);
		double bias = kk_dt_get_f64(b->p[1], b->pdt[1], ch);
		for (int64_t j = r * b->inner; j < (r + 1) * b->inner; j++)
			kk_dt_set_f64(b->y, b->dt, j, (kk_dt_get_f64(b->x, b->dt, j) - mean) * mul + bias);
	}
}

static rd_bn rd_bn_args(const int64_t *ip, const double *fp, void *const *t)
{
	rd_bn b = {.x = t[0], .y = t[5], .c = ip[KK_BN_C], .inner = ip[KK_BN_INNER],
	           .dt = (int)ip[KK_BN_DT], .eps = fp[KK_BN_FP_EPS]};
	for (int i = 0; i < 4; i++) {
		b.p[i] = t[1 + i];
		b.pdt[i] = (int)ip[KK_BN_PARAM_DT + i];
	}
	return b;
}

KK_KERNEL(kk_batch_norm_f32)
{
	rd_bn b = rd_bn_args(ip, fp, t);
	float *tab = t[6];
	for (int64_t ch = 0; ch < b.c; ch++) {
		tab[ch] = (float)kk_dt_get_f64(b.p[2], b.pdt[2], ch);
		tab[b.c + ch] = (float)rd_bn_mul(&b, ch);
		tab[2 * b.c + ch] = (float)kk_dt_get_f64(b.p[1], b.pdt[1], ch);
	}
	b.tab = tab;
	int64_t rows = ip[KK_BN_N] * b.c;
	rd_parallel(h, rows, rows * b.inner, rd_bn_f32, &b);
}

KK_KERNEL(kk_batch_norm_any)
{
	rd_bn b = rd_bn_args(ip, fp, t);
	int64_t rows = ip[KK_BN_N] * b.c;
	rd_parallel(h, rows, rows * b.inner, rd_bn_any, &b);
}

/* ---- MaxPool, AveragePool ----------------------------------------------- */

typedef struct rd_pool {
	const void *x;
	void *y;
	int64_t *idx; /* MaxPool Indices, or NULL */
	int max, dt, incl, col_major;
	int64_t in[3], out[3], k[3], s[3], dl[3], pb[3], pe[3];
	int64_t is, os; /* spatial sizes of one plane, input and output */
} rd_pool;

/* One output of plane `pl` at o[3], as the interpreter computes it (taps in
 * order, in double); *at gets MaxPool's flat index within the plane. */
static double rd_pool_one(const rd_pool *q, int64_t pl, const int64_t *o, int64_t *at)
{
	double best = -(double)KK_INFINITY, sum = 0.0;
	int64_t count = 0, best_at = 0;
	int any = 0;
	const int64_t base = pl * q->is;
	for (int64_t k0 = 0; k0 < q->k[0]; k0++) {
		int64_t p0 = o[0] * q->s[0] + k0 * q->dl[0] - q->pb[0];
		int in0 = p0 >= 0 && p0 < q->in[0];
		int pad0 = p0 >= -q->pb[0] && p0 < q->in[0] + q->pe[0];
		for (int64_t k1 = 0; k1 < q->k[1]; k1++) {
			int64_t p1 = o[1] * q->s[1] + k1 * q->dl[1] - q->pb[1];
			int in1 = in0 && p1 >= 0 && p1 < q->in[1];
			int pad1 = pad0 && p1 >= -q->pb[1] && p1 < q->in[1] + q->pe[1];
			for (int64_t k2 = 0; k2 < q->k[2]; k2++) {
				int64_t p2 = o[2] * q->s[2] + k2 * q->dl[2] - q->pb[2];
				if (!(in1 && p2 >= 0 && p2 < q->in[2])) {
					count += q->incl && pad1 && p2 >= -q->pb[2] && p2 < q->in[2] + q->pe[2];
					continue;
				}
				int64_t a = (p0 * q->in[1] + p1) * q->in[2] + p2;
				double v = kk_dt_get_f64(q->x, q->dt, base + a);
				count++;
				sum += v;
				if (!any || v > best || (v != v && best == best)) {
					best = v;
					best_at = q->col_major ? (p2 * q->in[1] + p1) * q->in[0] + p0 : a;
					any = 1;
				}
			}
		}
	}
	*at = best_at;
	if (q->max)
		return best;
	return count ? sum / (double)count : (double)KK_NAN;
}

/* Items are output rows (plane, o0, o1); every output through rd_pool_one. */
static void rd_pool_any(const void *arg, int64_t r0, int64_t r1)
{
	const rd_pool *q = arg;
	for (int64_t r = r0; r < r1; r++) {
		int64_t o[3] = {r / q->out[1] % q->out[0], r % q->out[1], 0};
		int64_t pl = r / (q->out[0] * q->out[1]);
		for (o[2] = 0; o[2] < q->out[2]; o[2]++) {
			int64_t at, j = pl * q->os + (o[0] * q->out[1] + o[1]) * q->out[2] + o[2];
			kk_dt_set_f64(q->y, q->dt, j, rd_pool_one(q, pl, o, &at));
			if (q->idx)
				q->idx[j] = pl * q->is + at;
		}
	}
}

#if KK_VL == 4
#define RD_EVEN 0, 2, 4, 6
#elif KK_VL == 8
#define RD_EVEN 0, 2, 4, 6, 8, 10, 12, 14
#else
#define RD_EVEN 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30
#endif

/* p[0], p[2], ..., p[2 * (KK_VL - 1)]: KK_VL stride-2 window starts (the
 * caller guarantees p[2 * KK_VL - 1] is inside the row). */
static inline kk_vf rd_load_even(const float *p)
{
	return __builtin_shufflevector(kk_load(p), kk_load(p + KK_VL), RD_EVEN);
}

/* The taps of one window along axis a at output position o: those inside
 * the input are [*kb, *ke) (a range, as positions grow with the tap); the
 * return value is how many count towards AveragePool's divisor. */
static int64_t rd_pool_taps(const rd_pool *q, int a, int64_t o, int64_t *kb, int64_t *ke)
{
	int64_t p = o * q->s[a] - q->pb[a], b = 0, e, pad = 0;
	while (b < q->k[a] && p + b * q->dl[a] < 0)
		b++;
	for (e = b; e < q->k[a] && p + e * q->dl[a] < q->in[a]; e++)
		;
	for (int64_t k = 0; k < q->k[a] && q->incl; k++)
		pad += p + k * q->dl[a] >= -q->pb[a] && p + k * q->dl[a] < q->in[a] + q->pe[a];
	*kb = b;
	*ke = e;
	return q->incl ? pad : e - b;
}

/* One f32 output at o of the input plane xp, the window's tap ranges along
 * the outer two dims given; float arithmetic, for the border outputs. */
static float rd_pool_border(const rd_pool *q, const float *xp, const int64_t *o,
                            const int64_t *kb, const int64_t *ke, int64_t cnt01)
{
	int64_t b2, e2, c2 = rd_pool_taps(q, 2, o[2], &b2, &e2);
	float acc = q->max ? -KK_INFINITY : 0.0f;
	for (int64_t k0 = kb[0]; k0 < ke[0]; k0++) {
		int64_t p0 = o[0] * q->s[0] + k0 * q->dl[0] - q->pb[0];
		for (int64_t k1 = kb[1]; k1 < ke[1]; k1++) {
			int64_t p1 = o[1] * q->s[1] + k1 * q->dl[1] - q->pb[1];
			const float *row = xp + (p0 * q->in[1] + p1) * q->in[2] + o[2] * q->s[2] - q->pb[2];
			for (int64_t k2 = b2; k2 < e2; k2++) {
				float v = row[k2 * q->dl[2]];
				acc = q->max ? rd_max(acc, v) : acc + v;
			}
		}
	}
	return q->max ? acc : acc / (float)(cnt01 * c2);
}

/* KK_VL outputs from ow on, every window inside the input along the last
 * dim: the max, or the sum of the taps. Specialised on max and stride. */
static inline __attribute__((always_inline)) kk_vf
rd_pool_vec(const rd_pool *q, const float *xp, const int64_t *o, const int64_t *kb,
            const int64_t *ke, int64_t ow, int max, int s2)
{
	kk_vf acc = kk_splat(max ? -KK_INFINITY : 0.0f);
	for (int64_t k0 = kb[0]; k0 < ke[0]; k0++) {
		int64_t p0 = o[0] * q->s[0] + k0 * q->dl[0] - q->pb[0];
		for (int64_t k1 = kb[1]; k1 < ke[1]; k1++) {
			int64_t p1 = o[1] * q->s[1] + k1 * q->dl[1] - q->pb[1];
			const float *row = xp + (p0 * q->in[1] + p1) * q->in[2] + ow * s2 - q->pb[2];
			for (int64_t k2 = 0; k2 < q->k[2]; k2++) {
				const float *p = row + k2 * q->dl[2];
				kk_vf v = s2 == 1 ? kk_load(p) : rd_load_even(p);
				acc = max ? rd_vmax(acc, v) : acc + v;
			}
		}
	}
	return acc;
}

/* The interior [lo, hi) (hi - lo >= KK_VL) of one output row, the last
 * vector overlapping the one before. */
static inline __attribute__((always_inline)) void
rd_pool_interior(const rd_pool *q, const float *xp, float *y, const int64_t *o,
                 const int64_t *kb, const int64_t *ke, int64_t lo, int64_t hi, kk_vf div,
                 int max, int s2)
{
	for (int64_t ow = lo;; ow += KK_VL) {
		if (ow > hi - KK_VL)
			ow = hi - KK_VL;
		kk_vf acc = rd_pool_vec(q, xp, o, kb, ke, ow, max, s2);
		kk_store(y + ow, max ? acc : acc / div);
		if (ow == hi - KK_VL)
			break;
	}
}

/* Longest input row max pooling reduces over the outer dims first. */
#define RD_ROW_MAX 4096

/* The max over the window's rows along the outer two dims (taps [kb, ke))
 * at output o, element by element: row[l] for l < in[2]. */
static void rd_pool_rows(const rd_pool *q, const float *xp, const int64_t *o, const int64_t *kb,
                         const int64_t *ke, float *row)
{
	int64_t n = q->in[2];
	bool first = true;
	for (int64_t k0 = kb[0]; k0 < ke[0]; k0++) {
		int64_t p0 = o[0] * q->s[0] + k0 * q->dl[0] - q->pb[0];
		for (int64_t k1 = kb[1]; k1 < ke[1]; k1++, first = false) {
			int64_t p1 = o[1] * q->s[1] + k1 * q->dl[1] - q->pb[1];
			const float *x = xp + (p0 * q->in[1] + p1) * n;
			int64_t l = 0;
			for (; l + KK_VL <= n; l += KK_VL)
				kk_store(row + l, first ? kk_load(x + l) : rd_vmax(kk_load(row + l), kk_load(x + l)));
			for (; l < n; l++)
				row[l] = first ? x[l] : rd_max(row[l], x[l]);
		}
	}
}

/* Max pooling of one reduced row (rd_pool_rows) along the last dim: the
 * interior [lo, hi) a vector of outputs at a time (stride s2, 1 or 2, as a
 * constant), the rest one by one. */
static inline __attribute__((always_inline)) void
rd_pool_row_max(const rd_pool *q, const float *row, float *y, int64_t lo, int64_t hi, int s2)
{
	int64_t dl2 = q->dl[2], pb2 = q->pb[2];
	for (int64_t o2 = 0; o2 < q->out[2]; o2++) {
		if (o2 == lo && hi > lo) {
			for (int64_t ow = lo;; ow += KK_VL) {
				if (ow > hi - KK_VL)
					ow = hi - KK_VL;
				kk_vf acc = kk_splat(-KK_INFINITY);
				for (int64_t k2 = 0; k2 < q->k[2]; k2++) {
					const float *p = row + ow * s2 - pb2 + k2 * dl2;
					acc = rd_vmax(acc, s2 == 1 ? kk_load(p) : rd_load_even(p));
				}
				kk_store(y + ow, acc);
				if (ow == hi - KK_VL)
					break;
			}
			o2 = hi - 1;
			continue;
		}
		int64_t b2, e2;
		rd_pool_taps(q, 2, o2, &b2, &e2);
		float acc = -KK_INFINITY;
		for (int64_t k2 = b2; k2 < e2; k2++)
			acc = rd_max(acc, row[o2 * q->s[2] - pb2 + k2 * dl2]);
		y[o2] = acc;
	}
}

/* f32 rows: along the last spatial dim, the outputs whose windows lie
 * inside the input (stride 1 or 2) go a vector of outputs at a time, the
 * border outputs (and every output for other strides) one by one. Max
 * pooling over several rows reduces the rows first, so each input row is
 * read once per output row instead of once per tap along the last dim. */
static void rd_pool_f32(const void *arg, int64_t r0, int64_t r1)
{
	const rd_pool *q = arg;
	int64_t s2 = q->s[2], pb2 = q->pb[2];
	/* Interior outputs [lo, hi): every tap inside along the last dim, and for
	 * stride 2 the element after the last tap too (rd_load_even reads it). */
	int64_t lo = (pb2 + s2 - 1) / s2;
	int64_t last = q->in[2] - 1 - (s2 - 1) - (q->k[2] - 1) * q->dl[2] + pb2;
	int64_t hi = last < 0 ? 0 : last / s2 + 1;
	if (hi > q->out[2])
		hi = q->out[2];
	if (hi - lo < KK_VL || s2 > 2)
		lo = hi = 0;
	for (int64_t r = r0; r < r1; r++) {
		int64_t o[3] = {r / q->out[1] % q->out[0], r % q->out[1], 0};
		int64_t pl = r / (q->out[0] * q->out[1]);
		float *y = (float *)q->y + pl * q->os + (o[0] * q->out[1] + o[1]) * q->out[2];
		const float *xp = (const float *)q->x + pl * q->is;
		int64_t kb[2], ke[2];
		int64_t cnt01 = rd_pool_taps(q, 0, o[0], &kb[0], &ke[0]) *
		                rd_pool_taps(q, 1, o[1], &kb[1], &ke[1]);
		if (q->max && s2 <= 2 && (ke[0] - kb[0]) * (ke[1] - kb[1]) > 1 &&
		    q->in[2] <= RD_ROW_MAX) {
			float row[RD_ROW_MAX];
			rd_pool_rows(q, xp, o, kb, ke, row);
			if (s2 == 1)
				rd_pool_row_max(q, row, y, lo, hi, 1);
			else
				rd_pool_row_max(q, row, y, lo, hi, 2);
			continue;
		}
		for (o[2] = 0; o[2] < lo; o[2]++)
			y[o[2]] = rd_pool_border(q, xp, o, kb, ke, cnt01);
		if (hi > lo) {
			kk_vf div = kk_splat((float)(cnt01 * q->k[2]));
			if (q->max && s2 == 1)
				rd_pool_interior(q, xp, y, o, kb, ke, lo, hi, div, 1, 1);
			else if (q->max)
				rd_pool_interior(q, xp, y, o, kb, ke, lo, hi, div, 1, 2);
			else if (s2 == 1)
				rd_pool_interior(q, xp, y, o, kb, ke, lo, hi, div, 0, 1);
			else
				rd_pool_interior(q, xp, y, o, kb, ke, lo, hi, div, 0, 2);
			o[2] = hi;
		}
		for (; o[2] < q->out[2]; o[2]++)
			y[o[2]] = rd_pool_border(q, xp, o, kb, ke, cnt01);
	}
}

static rd_pool rd_pool_args(const int64_t *ip, void *const *t)
{
	rd_pool q = {.x = t[0], .y = t[1], .max = (int)ip[KK_POOL_MAX], .dt = (int)ip[KK_POOL_DT],
	             .incl = (int)ip[KK_POOL_INCLUDE_PAD], .col_major = (int)ip[KK_POOL_COL_MAJOR]};
	q.idx = ip[KK_POOL_INDICES] ? t[2] : NULL;
	for (int a = 0; a < 3; a++) {
		q.in[a] = ip[KK_POOL_IN + a];
		q.out[a] = ip[KK_POOL_OUT + a];
		q.k[a] = ip[KK_POOL_K + a];
		q.s[a] = ip[KK_POOL_S + a];
		q.dl[a] = ip[KK_POOL_DL + a];
		q.pb[a] = ip[KK_POOL_PB + a];
		q.pe[a] = ip[KK_POOL_PE + a];
	}
	q.is = q.in[0] * q.in[1] * q.in[2];
	q.os = q.out[0] * q.out[1] * q.out[2];
	return q;
}

KK_KERNEL(kk_pool_f32)
{
	(void)fp;
	rd_pool q = rd_pool_args(ip, t);
	int64_t rows = ip[KK_POOL_NC] * q.out[0] * q.out[1];
	int64_t work = rows * q.out[2] * q.k[0] * q.k[1] * q.k[2];
	rd_parallel(h, rows, work, rd_pool_f32, &q);
}

KK_KERNEL(kk_pool_any)
{
	(void)fp;
	rd_pool q = rd_pool_args(ip, t);
	int64_t rows = ip[KK_POOL_NC] * q.out[0] * q.out[1];
	int64_t work = rows * q.out[2] * q.k[0] * q.k[1] * q.k[2];
	rd_parallel(h, rows, work, rd_pool_any, &q);
}
