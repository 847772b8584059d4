/* kk_elementwise.c — the elementwise kernels: unary activations and math,
 * binary arithmetic and variadic Min/Max with broadcasting, comparisons,
 * Where, Not and Cast.
 *
 * All share one parameter layout (kk_params_elementwise.h) and one walk:
 * the output is visited in runs along its innermost (merged) dim, each input
 * at its own offset with inner stride 0 or 1. f32 runs are vectorised
 * (kk_vf, kk_math.h); every other dtype runs through double or int64
 * exactly as the interpreter does (interp/k_elementwise.c, interp/tensor.c):
 * integers wrap to their width, integer x / 0 is 0, float -> integer
 * truncates toward zero and saturates to int64 before wrapping (NaN -> 0),
 * f16/bf16 round to nearest even (Cast through round-to-odd f32 first). */
#include "kk.h"
#include "kk_ewp.h"
#include "kk_math.h"

/* ---- the walk ------------------------------------------------------------ */

typedef struct ew_walk {
	int op, nin, out, dt_out, rank;
	int64_t numel;
	const int64_t *dts, *dims, *strides; /* strides[k * rank + d] */
	void *const *t;
	double alpha, beta;
	double lo, hi;    /* Clip bounds, float dtypes (+-inf when omitted) */
	int64_t ilo, ihi; /* Clip bounds, integer dtypes */
} ew_walk;

/* Processes output elements [o, o + n) of one run; off[k]: input k's offset
 * of element o. Input k's stride along the run is ew_inner(w, k). */
typedef void (*ew_row_fn)(const ew_walk *w, const int64_t *off, int64_t o, int64_t n);

static inline int64_t ew_inner(const ew_walk *w, int k)
{
	return w->strides[k * w->rank + w->rank - 1];
}

static void ew_range(const ew_walk *w, int64_t lo, int64_t hi, ew_row_fn row)
{
	int64_t idx[KK_EW_MAX_RANK], off[KK_EW_MAX_IN] = {0};
	int r = w->rank;
	int64_t rem = lo;
	for (int d = r - 1; d >= 0; d--) {
		idx[d] = rem % w->dims[d];
		rem /= w->dims[d];
		for (int k = 0; k < w->nin; k++)
			off[k] += idx[d] * w->strides[k * r + d];
	}
	for (int64_t pos = lo; pos < hi;) {
		int64_t len = w->dims[r - 1] - idx[r - 1];
		if (len > hi - pos)
			len = hi - pos;
		row(w, off, pos, len);
		pos += len;
		idx[r - 1] += len;
		for (int k = 0; k < w->nin; k++)
			off[k] += len * w->strides[k * r + r - 1];
		for (int d = r - 1; d > 0 && idx[d] == w->dims[d]; d--) {
			idx[d] = 0;
			idx[d - 1]++;
			for (int k = 0; k < w->nin; k++)
				off[k] += w->strides[k * r + d - 1] - w->dims[d] * w->strides[k * r + d];
		}
	}
}

typedef struct ew_task {
	const ew_walk *w;
	ew_row_fn row;
} ew_task;

static void ew_task_run(void *arg, int64_t begin, int64_t end, void *scratch)
{
	const ew_task *a = arg;
	(void)scratch;
	int64_t hi = end * KK_EW_CHUNK;
	ew_range(a->w, begin * KK_EW_CHUNK, hi < a->w->numel ? hi : a->w->numel, a->row);
}

/* Small tensors run here; large ones in chunks across the pool. */
static void ew_run(const ew_walk *w, const kiln_abi_host *h, ew_row_fn row)
{
	if (w->numel < KK_EW_PARALLEL_MIN || h->n_threads <= 1) {
		ew_range(w, 0, w->numel, row);
		return;
	}
	ew_task a = {w, row};
	kk_parallel(h, (w->numel + KK_EW_CHUNK - 1) / KK_EW_CHUNK, ew_task_run, &a);
}

static ew_walk ew_walk_init(const int64_t *ip, const double *fp, void *const *t)
{
	ew_walk w = {
		.op = (int)ip[KK_EW_OP],
		.nin = (int)ip[KK_EW_NIN],
		.out = (int)ip[KK_EW_OUT],
		.dt_out = (int)ip[KK_EW_DT_OUT],
		.rank = (int)ip[KK_EW_RANK],
		.numel = ip[KK_EW_NUMEL],
		.t = t,
		.alpha = fp[KK_EW_ALPHA],
		.beta = fp[KK_EW_BETA],
		.lo = -KK_INFINITY,
		.hi = KK_INFINITY,
		.ilo = INT64_MIN,
		.ihi = INT64_MAX,
	};
	w.dts = ip + KK_EW_TAIL;
	w.dims = w.dts + w.nin;
	w.strides = w.dims + w.rank;
	if (w.op == KK_EW_CLIP) {
		int dt = (int)w.dts[0];
		if (w.out > 1 && t[1]) {
			w.lo = kk_dt_get_f64(t[1], dt, 0);
			w.ilo = kk_dt_get_i64(t[1], dt, 0);
		}
		if (w.out > 2 && t[2]) {
			w.hi = kk_dt_get_f64(t[2], dt, 0);
			w.ihi = kk_dt_get_i64(t[2], dt, 0);
		}
	}
	return w;
}

/* ---- unary --------------------------------------------------------------- */

/* y[i] = EXPR(v) over the run, v the vector of x at i; the tail through
 * partial loads and stores. */
#define EW_MAP(EXPR)                                               \
	do {                                                           \
		int64_t i = 0;                                             \
		for (; i + KK_VL <= n; i += KK_VL) {                       \
			kk_vf v = kk_load(x + i);                              \
			kk_store(y + i, (EXPR));                               \
		}                                                          \
		if (i < n) {                                               \
			kk_vf v = kk_load_n(x + i, n - i);                     \
			kk_store_n(y + i, (EXPR), n - i);                      \
		}                                                          \
	} while (0)

static inline kk_vf ew_clamp01(kk_vf v)
{
	return kk_select(v < 0.0f, kk_splat(0.0f), kk_select(v > 1.0f, kk_splat(1.0f), v));
}

/* min first, then max, as the interpreter (min > max gives max) */
static inline kk_vf ew_clip(kk_vf v, kk_vf lo, kk_vf hi)
{
	kk_vf c = kk_select(v < lo, lo, v);
	return kk_select(c > hi, hi, c);
}

static void ew_unary_f32_row(const ew_walk *w, const int64_t *off, int64_t o, int64_t n)
{
	const float *x = (const float *)w->t[0] + off[0];
	float *y = (float *)w->t[w->out] + o;
	const kk_vf zero = kk_splat(0.0f);
	const kk_vf alpha = kk_splat((float)w->alpha), beta = kk_splat((float)w->beta);
	switch (w->op) {
	case KK_EW_RELU: EW_MAP(kk_select(v < 0.0f, zero, v)); break;
	case KK_EW_LEAKY_RELU: EW_MAP(kk_select(v < 0.0f, alpha * v, v)); break;
	case KK_EW_SIGMOID: EW_MAP(kk_sigmoid(v)); break;
	case KK_EW_TANH: EW_MAP(kk_tanh(v)); break;
	case KK_EW_CLIP: {
		const kk_vf lo = kk_splat((float)w->lo), hi = kk_splat((float)w->hi);
		EW_MAP(ew_clip(v, lo, hi));
		break;
	}
	case KK_EW_HARD_SIGMOID: EW_MAP(ew_clamp01(alpha * v + beta)); break;
	case KK_EW_HARD_SWISH: EW_MAP(v * ew_clamp01(v * (1.0f / 6.0f) + 0.5f)); break;
	case KK_EW_GELU: EW_MAP(kk_gelu(v)); break;
	case KK_EW_GELU_TANH: EW_MAP(kk_gelu_tanh(v)); break;
	case KK_EW_ERF: EW_MAP(kk_erf(v)); break;
	case KK_EW_SQRT:
		for (int64_t i = 0; i < n; i++)
			y[i] = sqrtf(x[i]);
		break;
	case KK_EW_EXP: EW_MAP(kk_exp(v)); break;
	case KK_EW_LOG: EW_MAP(kk_log(v)); break;
	case KK_EW_NEG: EW_MAP(-v); break;
	case KK_EW_ABS: EW_MAP(kk_math_abs(v)); break;
	case KK_EW_RECIPROCAL: EW_MAP(1.0f / v); break;
	default: break;
	}
}

KK_KERNEL(kk_ew_unary_f32)
{
	ew_walk w = ew_walk_init(ip, fp, t);
	ew_run(&w, h, ew_unary_f32_row);
}

static double ew_clamp01_f64(double v)
{
	return v < 0 ? 0 : v > 1 ? 1 : v;
}

static double ew_unary_f64(const ew_walk *w, double x)
{
	switch (w->op) {
	case KK_EW_RELU: return x < 0 ? 0 : x;
	case KK_EW_LEAKY_RELU: return x < 0 ? w->alpha * x : x;
	case KK_EW_SIGMOID: return 1.0 / (1.0 + exp(-x));
	case KK_EW_TANH: return tanh(x);
	case KK_EW_CLIP:
		if (x < w->lo)
			x = w->lo;
		if (x > w->hi)
			x = w->hi;
		return x;
	case KK_EW_HARD_SIGMOID: return ew_clamp01_f64(w->alpha * x + w->beta);
	case KK_EW_HARD_SWISH: return x * ew_clamp01_f64(x / 6.0 + 0.5);
	case KK_EW_GELU: return 0.5 * x * (1.0 + erf(x / sqrt(2.0)));
	case KK_EW_GELU_TANH:
		return 0.5 * x * (1.0 + tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)));
	case KK_EW_ERF: return erf(x);
	case KK_EW_SQRT: return sqrt(x);
	case KK_EW_EXP: return exp(x);
	case KK_EW_LOG: return log(x);
	case KK_EW_NEG: return -x;
	case KK_EW_ABS: return fabs(x);
	case KK_EW_RECIPROCAL: return 1.0 / x;
	default: return x;
	}
}

static inline int64_t ew_wrap_neg(int64_t x)
{
	return (int64_t)(0 - (uint64_t)x);
}

static int64_t ew_unary_i64(const ew_walk *w, int64_t x)
{
	switch (w->op) {
	case KK_EW_RELU: return x < 0 ? 0 : x;
	case KK_EW_CLIP:
		if (x < w->ilo)
			x = w->ilo;
		if (x > w->ihi)
			x = w->ihi;
		return x;
	case KK_EW_NEG: return ew_wrap_neg(x);
	case KK_EW_ABS: return x < 0 ? ew_wrap_neg(x) : x;
	default: return x;
	}
}

static void ew_unary_row(const ew_walk *w, const int64_t *off, int64_t o, int64_t n)
{
	int dt = (int)w->dts[0];
	const void *x = w->t[0];
	void *y = w->t[w->out];
	int int_form = w->op == KK_EW_RELU || w->op == KK_EW_CLIP || w->op == KK_EW_NEG ||
	                w->op == KK_EW_ABS;
	if (w->op == KK_EW_NOT) {
		const uint8_t *xb = (const uint8_t *)x + off[0];
		uint8_t *yb = (uint8_t *)y + o;
		for (int64_t i = 0; i < n; i++)
			yb[i] = !xb[i];
	} else if (kk_dt_is_float(dt) || !int_form) {
		for (int64_t i = 0; i < n; i++)
			kk_dt_set_f64(y, w->dt_out, o + i, ew_unary_f64(w, kk_dt_get_f64(x, dt, off[0] + i)));
	} else {
		for (int64_t i = 0; i < n; i++)
			kk_dt_set_i64(y, w->dt_out, o + i, ew_unary_i64(w, kk_dt_get_i64(x, dt, off[0] + i)));
	}
}

KK_KERNEL(kk_ew_unary)
{
	ew_walk w = ew_walk_init(ip, fp, t);
	ew_run(&w, h, ew_unary_row);
}

/* ---- binary and variadic -------------------------------------------------- */

#define EW_ZIP_LOOP(LA, LB, LA_N, LB_N, EXPR)                      \
	do {                                                           \
		int64_t i = 0;                                             \
		for (; i + KK_VL <= n; i += KK_VL) {                       \
			kk_vf va = (LA), vb = (LB);                            \
			kk_store(y + i, (EXPR));                               \
		}                                                          \
		if (i < n) {                                               \
			kk_vf va = (LA_N), vb = (LB_N);                        \
			kk_store_n(y + i, (EXPR), n - i);                      \
		}                                                          \
	} while (0)

/* y[i] = EXPR(va, vb), one loop per pair of inner strides. */
#define EW_ZIP(EXPR)                                                                    \
	do {                                                                                \
		if (sa && sb)                                                                   \
			EW_ZIP_LOOP(kk_load(a + i), kk_load(b + i), kk_load_n(a + i, n - i),        \
			            kk_load_n(b + i, n - i), EXPR);                                 \
		else if (sa)                                                                    \
			EW_ZIP_LOOP(kk_load(a + i), bs, kk_load_n(a + i, n - i), bs, EXPR);         \
		else if (sb)                                                                    \
			EW_ZIP_LOOP(as, kk_load(b + i), as, kk_load_n(b + i, n - i), EXPR);         \
		else                                                                            \
			EW_ZIP_LOOP(as, bs, as, bs, EXPR);                                          \
	} while (0)

/* y[0..n) = op(a, b) with inner strides sa, sb (0 or 1); y may be a. */
static void ew_binary_f32_run(int op, const float *a, int64_t sa, const float *b, int64_t sb,
                              float *y, int64_t n)
{
	const kk_vf as = kk_splat(*a), bs = kk_splat(*b);
	switch (op) {
	case KK_EW_ADD: EW_ZIP(va + vb); break;
	case KK_EW_SUB: EW_ZIP(va - vb); break;
	case KK_EW_MUL: EW_ZIP(va * vb); break;
	case KK_EW_DIV: EW_ZIP(va / vb); break;
	case KK_EW_PRELU: EW_ZIP(kk_select(va < 0.0f, va * vb, va)); break;
	/* ONNX Min/Max: NaN when either operand is NaN */
	case KK_EW_MIN: EW_ZIP(kk_select((va < vb) | (va != va), va, vb)); break;
	case KK_EW_MAX: EW_ZIP(kk_select((va > vb) | (va != va), va, vb)); break;
	case KK_EW_POW:
		for (int64_t i = 0; i < n; i++)
			y[i] = (float)pow(a[i * sa], b[i * sb]);
		break;
	default: break;
	}
}

static void ew_binary_f32_row(const ew_walk *w, const int64_t *off, int64_t o, int64_t n)
{
	float *y = (float *)w->t[w->out] + o;
	const float *a = (const float *)w->t[0] + off[0];
	if (w->nin == 1) {
		for (int64_t i = 0; i < n; i++)
			y[i] = a[i * ew_inner(w, 0)];
		return;
	}
	ew_binary_f32_run(w->op, a, ew_inner(w, 0), (const float *)w->t[1] + off[1], ew_inner(w, 1),
	                  y, n);
	for (int k = 2; k < w->nin; k++)
		ew_binary_f32_run(w->op, y, 1, (const float *)w->t[k] + off[k], ew_inner(w, k), y, n);
}

KK_KERNEL(kk_ew_binary_f32)
{
	ew_walk w = ew_walk_init(ip, fp, t);
	ew_run(&w, h, ew_binary_f32_row);
}

static double ew_binary_f64(int op, double a, double b)
{
	int nan = a != a || b != b;
	switch (op) {
	case KK_EW_ADD: return a + b;
	case KK_EW_SUB: return a - b;
	case KK_EW_MUL: return a * b;
	case KK_EW_DIV: return a / b;
	case KK_EW_POW: return pow(a, b);
	case KK_EW_MIN: return nan ? (double)KK_NAN : a < b ? a : b;
	case KK_EW_MAX: return nan ? (double)KK_NAN : a > b ? a : b;
	case KK_EW_PRELU: return a < 0 ? a * b : a;
	default: return 0;
	}
}

/* a^e wrapping modulo 2^64; a negative e gives the truncated 1 / a^|e|. */
static int64_t ew_ipow(int64_t a, int64_t e)
{
	if (e < 0)
		return a == 1 ? 1 : a == -1 ? (e & 1 ? -1 : 1) : 0;
	uint64_t r = 1, b = (uint64_t)a;
	while (e) {
		if (e & 1)
			r *= b;
		b *= b;
		e >>= 1;
	}
	return (int64_t)r;
}

static int64_t ew_binary_i64(int op, int64_t a, int64_t b)
{
	switch (op) {
	case KK_EW_ADD: return (int64_t)((uint64_t)a + (uint64_t)b);
	case KK_EW_SUB: return (int64_t)((uint64_t)a - (uint64_t)b);
	case KK_EW_MUL: return (int64_t)((uint64_t)a * (uint64_t)b);
	case KK_EW_DIV: return b == 0 ? 0 : b == -1 ? ew_wrap_neg(a) : a / b;
	case KK_EW_POW: return ew_ipow(a, b);
	case KK_EW_MIN: return a < b ? a : b;
	case KK_EW_MAX: return a > b ? a : b;
	case KK_EW_PRELU: return a < 0 ? (int64_t)((uint64_t)a * (uint64_t)b) : a;
	default: return 0;
	}
}

static void ew_binary_row(const ew_walk *w, const int64_t *off, int64_t o, int64_t n)
{
	void *y = w->t[w->out];
	int dt0 = (int)w->dts[0];
	/* integer base, float exponent: numpy's power in double, truncated */
	int as_float = kk_dt_is_float(w->dt_out) ||
	                (w->op == KK_EW_POW && kk_dt_is_float((int)w->dts[1]));
	for (int64_t i = 0; i < n; i++) {
		if (as_float) {
			double acc = kk_dt_get_f64(w->t[0], dt0, off[0] + i * ew_inner(w, 0));
			for (int k = 1; k < w->nin; k++)
				acc = ew_binary_f64(w->op, acc,
				                    kk_dt_get_f64(w->t[k], (int)w->dts[k], off[k] + i * ew_inner(w, k)));
			kk_dt_set_f64(y, w->dt_out, o + i, acc);
		} else {
			int64_t acc = kk_dt_get_i64(w->t[0], dt0, off[0] + i * ew_inner(w, 0));
			for (int k = 1; k < w->nin; k++)
				acc = ew_binary_i64(w->op, acc,
				                    kk_dt_get_i64(w->t[k], (int)w->dts[k], off[k] + i * ew_inner(w, k)));
			kk_dt_set_i64(y, w->dt_out, o + i, acc);
		}
	}
}

KK_KERNEL(kk_ew_binary)
{
	ew_walk w = ew_walk_init(ip, fp, t);
	ew_run(&w, h, ew_binary_row);
}

/* ---- comparison, Where ---------------------------------------------------- */

static void ew_compare_row(const ew_walk *w, const int64_t *off, int64_t o, int64_t n)
{
	uint8_t *y = (uint8_t *)w->t[w->out] + o;
	int dt = (int)w->dts[0];
	int64_t sa = ew_inner(w, 0), sb = ew_inner(w, 1);
	if (dt == KK_DT_F32) {
		const float *a = (const float *)w->t[0] + off[0], *b = (const float *)w->t[1] + off[1];
		for (int64_t i = 0; i < n; i++) {
			float x = a[i * sa], z = b[i * sb];
			y[i] = w->op == KK_EW_EQUAL ? x == z : w->op == KK_EW_LESS ? x < z : x > z;
		}
	} else if (kk_dt_is_float(dt)) {
		for (int64_t i = 0; i < n; i++) {
			double x = kk_dt_get_f64(w->t[0], dt, off[0] + i * sa);
			double z = kk_dt_get_f64(w->t[1], dt, off[1] + i * sb);
			y[i] = w->op == KK_EW_EQUAL ? x == z : w->op == KK_EW_LESS ? x < z : x > z;
		}
	} else {
		for (int64_t i = 0; i < n; i++) {
			int64_t x = kk_dt_get_i64(w->t[0], dt, off[0] + i * sa);
			int64_t z = kk_dt_get_i64(w->t[1], dt, off[1] + i * sb);
			y[i] = w->op == KK_EW_EQUAL ? x == z : w->op == KK_EW_LESS ? x < z : x > z;
		}
	}
}

KK_KERNEL(kk_ew_compare)
{
	ew_walk w = ew_walk_init(ip, fp, t);
	ew_run(&w, h, ew_compare_row);
}

#define EW_WHERE(T)                                                                    \
	do {                                                                               \
		const T *x = (const T *)w->t[1] + off[1], *z = (const T *)w->t[2] + off[2];    \
		T *y = (T *)w->t[w->out] + o;                                                  \
		for (int64_t i = 0; i < n; i++)                                                \
			y[i] = c[i * sc] ? x[i * sx] : z[i * sz];                                  \
	} while (0)

static void ew_where_row(const ew_walk *w, const int64_t *off, int64_t o, int64_t n)
{
	const uint8_t *c = (const uint8_t *)w->t[0] + off[0];
	int64_t sc = ew_inner(w, 0), sx = ew_inner(w, 1), sz = ew_inner(w, 2);
	switch (w->dt_out) {
	case KK_DT_F64:
	case KK_DT_I64: EW_WHERE(uint64_t); break;
	case KK_DT_F32:
	case KK_DT_I32: EW_WHERE(uint32_t); break;
	case KK_DT_F16:
	case KK_DT_BF16: EW_WHERE(uint16_t); break;
	default: EW_WHERE(uint8_t); break;
	}
}

KK_KERNEL(kk_ew_where)
{
	ew_walk w = ew_walk_init(ip, fp, t);
	ew_run(&w, h, ew_where_row);
}

/* ---- Cast ----------------------------------------------------------------- */

/* double -> f32 rounding to odd, so a following round-to-nearest-even to
 * f16/bf16 (at most 11 significant bits) is correctly rounded: no double
 * rounding (as interp/k_elementwise.c). */
static float ew_f32_round_odd(double v)
{
	float f = (float)v;
	if (v != v || (double)f == v)
		return f;
	uint32_t u = kk_f32_bits(f);
	if (fabs((double)f) > fabs(v))
		u--; /* one step toward zero (f is not zero here) */
	return kk_bits_f32(u | 1);
}

static void ew_cast_row(const ew_walk *w, const int64_t *off, int64_t o, int64_t n)
{
	int from = (int)w->dts[0], to = w->dt_out;
	const void *x = w->t[0];
	void *y = w->t[w->out];
	int64_t xo = off[0];
	if (from == to) {
		int64_t size = kk_dt_size(to);
		memcpy((char *)y + o * size, (const char *)x + xo * size, (size_t)(n * size));
		return;
	}
	int from_float = kk_dt_is_float(from);
	if (from == KK_DT_F32 && to == KK_DT_F16) {
		const float *xf = (const float *)x + xo;
		uint16_t *yh = (uint16_t *)y + o;
		for (int64_t i = 0; i < n; i++)
			yh[i] = kk_f32_to_f16(xf[i]);
		return;
	}
	for (int64_t i = 0; i < n; i++) {
		switch (to) {
		case KK_DT_F32:
			((float *)y)[o + i] = from_float ? (float)kk_dt_get_f64(x, from, xo + i)
			                                 : (float)kk_dt_get_i64(x, from, xo + i);
			break;
		case KK_DT_F64:
			((double *)y)[o + i] = from_float ? kk_dt_get_f64(x, from, xo + i)
			                                  : (double)kk_dt_get_i64(x, from, xo + i);
			break;
		case KK_DT_F16:
			((uint16_t *)y)[o + i] = kk_f32_to_f16(ew_f32_round_odd(kk_dt_get_f64(x, from, xo + i)));
			break;
		case KK_DT_BF16:
			((uint16_t *)y)[o + i] = kk_f32_to_bf16(ew_f32_round_odd(kk_dt_get_f64(x, from, xo + i)));
			break;
		case KK_DT_BOOL:
			((uint8_t *)y)[o + i] = from_float ? kk_dt_get_f64(x, from, xo + i) != 0
			                                   : kk_dt_get_i64(x, from, xo + i) != 0;
			break;
		default:
			kk_dt_set_i64(y, to, o + i, kk_dt_get_i64(x, from, xo + i));
			break;
		}
	}
}

KK_KERNEL(kk_ew_cast)
{
	ew_walk w = ew_walk_init(ip, fp, t);
	ew_run(&w, h, ew_cast_row);
}

/* ---- loop fusion: an elementwise program ---------------------------------- */

typedef struct ewp_prog {
	ew_walk w;
	int nout, nreg, nconst, ninstr;
	const int64_t *period;  /* [nin] */
	const int64_t *out_reg; /* [nout] */
	const int64_t *instr;   /* [ninstr][KK_EWP_INSTR_SIZE] */
	const double *consts;   /* [nconst] */
	int64_t chunks_per_item;
	/* direct[r]: output j + 1 whose memory temporary r may live in (its
	 * first output, when r is a temporary), else 0 */
	uint8_t direct[KK_EWP_MAX_REG];
} ewp_prog;

/* One task's registers. The walk (ew_range) hands the row function &w; the
 * row function reaches the rest through it (the state is the task's own,
 * so it may change it). */
typedef struct ewp_task {
	ew_walk w; /* first member */
	const ewp_prog *p;
	const float *src[KK_EWP_MAX_REG]; /* where each register is read */
	float *dst[KK_EWP_MAX_REG];       /* where each temporary is written */
	int64_t splat_off[KK_EWP_MAX_REG];  /* a broadcast input's register holds x[splat_off] */
	int64_t splat_len[KK_EWP_MAX_REG];  /* ... in its first splat_len floats */
	/* short runs batched into one block: output elements [b_o, b_o + b_fill)
	 * (a task's runs are consecutive). An input with inner stride 1 whose
	 * runs so far start at b_off0 and lie end to end is read in place, one
	 * whose runs all repeat its first (b_n0 elements) is its repeats, else
	 * its runs are copied (EWP_B_*). */
	int64_t b_o, b_fill;
	int b_mode[KK_EWP_MAX_REG];
	int64_t b_off0[KK_EWP_MAX_REG], b_n0[KK_EWP_MAX_REG];
	/* an input's register holds x[rep_off .. rep_off + rep_n) repeated
	 * over its first rep_len floats (kept across batches: a mask repeated
	 * over every row is copied once) */
	int64_t rep_off[KK_EWP_MAX_REG], rep_n[KK_EWP_MAX_REG], rep_len[KK_EWP_MAX_REG];
	/* registers holding one value over the block: constants, and broadcast
	 * inputs of a long run (their blocks hold the splat as well) */
	bool one[KK_EWP_MAX_REG];
	float one_val[KK_EWP_MAX_REG];
	/* an input with a period: its repeats from tile_off, 2 blocks */
	float *tile[KK_EWP_MAX_REG];
	int64_t tile_off[KK_EWP_MAX_REG];
	float *regs; /* nreg blocks of KK_EWP_BLOCK floats: the thread's scratch */
} ewp_task;

/* Input k's repeats (it has a period q): x[off .. off + q) over the first
 * KK_EWP_BLOCK + q floats of its tile, so any block starts inside it. */
static const float *ewp_tile(ewp_task *t, int k, int64_t off)
{
	float *r = t->tile[k];
	int64_t q = t->p->period[k];
	if (t->tile_off[k] != off) {
		memcpy(r, (const float *)t->w.t[k] + off, (size_t)q * sizeof(float));
		for (int64_t have = q; have < KK_EWP_BLOCK + q; have *= 2) {
			int64_t more = KK_EWP_BLOCK + q - have < have ? KK_EWP_BLOCK + q - have : have;
			memcpy(r + have, r, (size_t)more * sizeof(float));
		}
		t->tile_off[k] = off;
	}
	return r;
}

static inline float *ewp_reg(const ewp_task *t, int r)
{
	return t->regs + (int64_t)r * KK_EWP_BLOCK;
}

/* One instruction's operands: a, b, c point at nv vectors each; an operand
 * that holds one value over the block (a constant, a broadcast input of a
 * long run) also comes as a splat (sa, sb, sc, flagged in k), so a binary
 * op reads it from a vector register instead of memory. */
typedef struct ewp_args {
	float *d;
	const float *a, *b, *c;
	kk_vf sa, sb, sc;
	int k; /* 1: a is one value, 2: b, 4: c */
	int64_t nv;
} ewp_args;

#define EWP_LOOP(LA, LB, LC, EXPR)                                      \
	do {                                                                \
		for (int64_t j = 0; j < x->nv * KK_VL; j += KK_VL) {            \
			kk_vf va = (LA), vb = (LB), vc = (LC);                      \
			(void)vb;                                                   \
			(void)vc;                                                   \
			kk_store(x->d + j, (EXPR));                                 \
		}                                                               \
	} while (0)
/* d[j] = EXPR(va) */
#define EWP_MAP1(EXPR) EWP_LOOP(kk_load(x->a + j), va, va, EXPR)
/* d[j] = EXPR(va, vb), one loop for each of a, b held in a register */
#define EWP_MAP2(EXPR)                                                                  \
	do {                                                                                \
		if (x->k & 2)                                                                   \
			EWP_LOOP(kk_load(x->a + j), x->sb, va, EXPR);                               \
		else if (x->k & 1)                                                              \
			EWP_LOOP(x->sa, kk_load(x->b + j), va, EXPR);                               \
		else                                                                            \
			EWP_LOOP(kk_load(x->a + j), kk_load(x->b + j), va, EXPR);                   \
	} while (0)
/* d[j] = EXPR(va, vb, vc): Clip and HardSigmoid, b and c mostly constants */
#define EWP_MAP3(EXPR)                                                                  \
	do {                                                                                \
		if ((x->k & 6) == 6)                                                            \
			EWP_LOOP(kk_load(x->a + j), x->sb, x->sc, EXPR);                            \
		else                                                                            \
			EWP_LOOP(kk_load(x->a + j), kk_load(x->b + j), kk_load(x->c + j), EXPR);    \
	} while (0)

/* One instruction over x->nv vectors. Each op is computed exactly as its
 * single-op kernel above computes it, so a fused graph gives the same
 * results as the unfused one. d may be one of the sources. */
static void ewp_exec(int op, const ewp_args *x)
{
	const kk_vf zero = kk_splat(0.0f);
	float *d = x->d;
	const float *a = x->a, *b = x->b;
	switch (op) {
	case KK_EW_RELU: EWP_MAP1(kk_select(va < 0.0f, zero, va)); break;
	case KK_EW_LEAKY_RELU: EWP_MAP2(kk_select(va < 0.0f, vb * va, va)); break;
	case KK_EW_SIGMOID: EWP_MAP1(kk_sigmoid(va)); break;
	case KK_EW_TANH: EWP_MAP1(kk_tanh(va)); break;
	case KK_EW_CLIP: EWP_MAP3(ew_clip(va, vb, vc)); break;
	case KK_EW_HARD_SIGMOID: EWP_MAP3(ew_clamp01(vb * va + vc)); break;
	case KK_EW_HARD_SWISH: EWP_MAP1(va * ew_clamp01(va * (1.0f / 6.0f) + 0.5f)); break;
	case KK_EW_GELU: EWP_MAP1(kk_gelu(va)); break;
	case KK_EW_GELU_TANH: EWP_MAP1(kk_gelu_tanh(va)); break;
	case KK_EW_ERF: EWP_MAP1(kk_erf(va)); break;
	case KK_EW_SQRT:
		for (int64_t j = 0; j < x->nv * KK_VL; j++)
			d[j] = sqrtf(a[j]);
		break;
	case KK_EW_EXP: EWP_MAP1(kk_exp(va)); break;
	case KK_EW_LOG: EWP_MAP1(kk_log(va)); break;
	case KK_EW_NEG: EWP_MAP1(-va); break;
	case KK_EW_ABS: EWP_MAP1(kk_math_abs(va)); break;
	case KK_EW_RECIPROCAL: EWP_MAP1(1.0f / va); break;
	case KK_EW_ADD: EWP_MAP2(va + vb); break;
	case KK_EW_SUB: EWP_MAP2(va - vb); break;
	case KK_EW_MUL: EWP_MAP2(va * vb); break;
	case KK_EW_DIV: EWP_MAP2(va / vb); break;
	case KK_EW_PRELU: EWP_MAP2(kk_select(va < 0.0f, va * vb, va)); break;
	/* ONNX Min/Max: NaN when either operand is NaN */
	case KK_EW_MIN: EWP_MAP2(kk_select((va < vb) | (va != va), va, vb)); break;
	case KK_EW_MAX: EWP_MAP2(kk_select((va > vb) | (va != va), va, vb)); break;
	case KK_EW_POW:
		for (int64_t j = 0; j < x->nv * KK_VL; j++)
			d[j] = (float)pow(a[j], b[j]);
		break;
	case KK_EW_COPY: EWP_MAP1(va); break;
	default: break;
	}
}

void kk_ewp_exec_f32(int op, float *d, const float *a, const float *b, const float *c, int one,
                     const float *val, int64_t nv)
{
	ewp_args x = {.d = d, .a = a, .b = b ? b : a, .c = c ? c : a, .k = one, .nv = nv};
	kk_vf *sv[3] = {&x.sa, &x.sb, &x.sc};
	for (int f = 0; f < 3; f++)
		if (one & 1 << f)
			*sv[f] = kk_splat(val[f]);
	ewp_exec(op, &x);
}

/* x in the first n floats of p (whole vectors). */
static void ewp_splat(float *p, float x, int64_t n)
{
	const kk_vf v = kk_splat(x);
	for (int64_t j = 0; j < n; j += KK_VL)
		kk_store(p + j, v);
}

/* Every instruction over the first nv vectors of the registers. */
static void ewp_exec_all(const ewp_task *t, int64_t nv)
{
	const ewp_prog *p = t->p;
	for (int q = 0; q < p->ninstr; q++) {
		const int64_t *in = p->instr + q * KK_EWP_INSTR_SIZE;
		ewp_args x = {.d = t->dst[in[KK_EWP_I_DST]], .nv = nv};
		const float **src[3] = {&x.a, &x.b, &x.c};
		kk_vf *sv[3] = {&x.sa, &x.sb, &x.sc};
		for (int f = 0; f < 3; f++) {
			int64_t r = in[KK_EWP_I_A + f] >= 0 ? in[KK_EWP_I_A + f] : in[KK_EWP_I_A];
			*src[f] = t->src[r];
			if (t->one[r]) {
				*sv[f] = kk_splat(t->one_val[r]);
				x.k |= 1 << f;
			}
		}
		ewp_exec((int)in[KK_EWP_I_OP], &x);
	}
}

enum { EWP_B_START, EWP_B_LINEAR, EWP_B_REPEAT, EWP_B_COPIED };

/* Input k's register holds its first m floats of the batch, m a multiple
 * of its run length: the repeats of its first run (extending what the
 * register holds already). */
static void ewp_repeat(ewp_task *t, int k, int64_t m)
{
	int64_t o0 = t->b_off0[k], n0 = t->b_n0[k];
	bool same = t->rep_off[k] == o0 && t->rep_n[k] == n0;
	if (same && t->rep_len[k] >= m)
		return;
	const float *x = (const float *)t->w.t[k] + o0;
	float *r = ewp_reg(t, k);
	for (int64_t at = same ? t->rep_len[k] : 0; at < m; at += n0)
		memcpy(r + at, x, (size_t)n0 * sizeof(float));
	t->rep_off[k] = o0;
	t->rep_n[k] = n0;
	t->rep_len[k] = m;
}

/* Input k's register holds the batch's first m floats (its runs so far). */
static void ewp_materialise(ewp_task *t, int k, int64_t m)
{
	if (t->b_mode[k] == EWP_B_REPEAT) {
		ewp_repeat(t, k, m);
	} else if (t->b_mode[k] != EWP_B_COPIED) {
		memcpy(ewp_reg(t, k), (const float *)t->w.t[k] + t->b_off0[k], (size_t)m * sizeof(float));
		t->rep_len[k] = 0;
	}
}

/* Runs the batched short runs as one block. */
static void ewp_flush(ewp_task *t)
{
	const ewp_prog *p = t->p;
	const ew_walk *w = &t->w;
	int64_t m = t->b_fill, nv = (m + KK_VL - 1) / KK_VL;
	if (!m)
		return;
	bool whole = m % KK_VL == 0;
	int nin = w->nin;
	for (int k = 0; k < nin; k++) {
		float *r = ewp_reg(t, k);
		t->one[k] = false;
		t->src[k] = r;
		if (ew_inner(w, k)) {
			int mode = t->b_mode[k];
			if (whole && (mode == EWP_B_START || mode == EWP_B_LINEAR)) {
				t->src[k] = (const float *)w->t[k] + t->b_off0[k];
				continue;
			}
			ewp_materialise(t, k, m);
			if (!whole && t->rep_len[k] > m)
				t->rep_len[k] = m; /* the padding goes over the repeats */
		}
		memset(r + m, 0, (size_t)(nv * KK_VL - m) * sizeof(float));
	}
	for (int r = nin + p->nconst; r < p->nreg; r++)
		if (p->direct[r]) {
			t->dst[r] = whole ? (float *)w->t[nin + p->direct[r] - 1] + t->b_o : ewp_reg(t, r);
			t->src[r] = t->dst[r];
		}
	ewp_exec_all(t, nv);
	for (int j = 0; j < p->nout; j++) {
		int r = (int)p->out_reg[j];
		if (!whole || p->direct[r] != j + 1)
			memcpy((float *)w->t[nin + j] + t->b_o, t->src[r], (size_t)m * sizeof(float));
	}
	t->b_fill = 0;
}

/* A short run (n <= KK_EWP_BLOCK / 2) joins the batch: many short runs (a
 * [128] mask over [512,128], a per-channel scale over small planes) then
 * cost one pass through the instructions, not one each. An input whose
 * runs lie end to end is read in place, one whose runs repeat is copied
 * once, a broadcast one is splatted run by run. */
static void ewp_gather(ewp_task *t, const int64_t *off, int64_t o, int64_t n)
{
	const ew_walk *w = &t->w;
	if (t->b_fill + n > KK_EWP_BLOCK)
		ewp_flush(t);
	int64_t at = t->b_fill;
	if (!at)
		t->b_o = o;
	for (int k = 0; k < w->nin; k++) {
		const float *x = (const float *)w->t[k] + off[k];
		float *r = ewp_reg(t, k);
		if (t->p->period[k]) {
			int64_t q = t->p->period[k];
			memcpy(r + at, ewp_tile(t, k, off[k]) + o % q, (size_t)n * sizeof(float));
			continue;
		}
		if (!ew_inner(w, k)) {
			int64_t i = 0;
			const kk_vf v = kk_splat(*x);
			for (; i + KK_VL <= n; i += KK_VL)
				kk_store(r + at + i, v);
			for (; i < n; i++)
				r[at + i] = *x;
			t->splat_len[k] = 0; /* the splat is gone */
			continue;
		}
		int mode = t->b_mode[k];
		if (!at) {
			t->b_mode[k] = EWP_B_START;
			t->b_off0[k] = off[k];
			t->b_n0[k] = n;
			continue;
		}
		bool linear = off[k] == t->b_off0[k] + at;
		bool repeat = off[k] == t->b_off0[k] && n == t->b_n0[k];
		if ((mode == EWP_B_START && (linear || repeat)) || (mode == EWP_B_LINEAR && linear) ||
		    (mode == EWP_B_REPEAT && repeat)) {
			t->b_mode[k] = mode != EWP_B_START ? mode : linear ? EWP_B_LINEAR : EWP_B_REPEAT;
			continue;
		}
		ewp_materialise(t, k, at);
		t->b_mode[k] = EWP_B_COPIED;
		memcpy(r + at, x, (size_t)n * sizeof(float));
		if (t->rep_len[k] > at)
			t->rep_len[k] = at;
	}
	t->b_fill += n;
}

/* One run of n output elements from output element o. A long one goes in
 * blocks of KK_EWP_BLOCK, each through every instruction: an input with
 * inner stride 1 is read in place (copied, padded with zeros, when the
 * block ends inside a vector); a broadcast one is splatted into its
 * register when its offset changes; an output's temporary lives in the
 * output itself when the block is whole vectors, otherwise it is copied
 * out after the last instruction. A short run is gathered (ewp_gather). */
static void ewp_row(const ew_walk *w, const int64_t *off, int64_t o, int64_t n)
{
	ewp_task *t = (ewp_task *)w; /* the task's own (see ewp_task) */
	const ewp_prog *p = t->p;
	if (n * 2 <= KK_EWP_BLOCK) {
		ewp_gather(t, off, o, n);
		return;
	}
	ewp_flush(t);
	int nin = w->nin, base = nin + p->nconst;
	int64_t first = n < KK_EWP_BLOCK ? n : KK_EWP_BLOCK;
	int64_t fill = (first + KK_VL - 1) / KK_VL * KK_VL;
	for (int k = 0; k < nin; k++)
		if (!ew_inner(w, k) && !p->period[k]) {
			float v = ((const float *)w->t[k])[off[k]];
			if (t->splat_off[k] != off[k] || t->splat_len[k] < fill) {
				ewp_splat(ewp_reg(t, k), v, fill);
				t->splat_off[k] = off[k];
				t->splat_len[k] = fill;
			}
			t->src[k] = ewp_reg(t, k);
			t->one[k] = true;
			t->one_val[k] = v;
		}
	for (int64_t i = 0; i < n; i += KK_EWP_BLOCK) {
		int64_t m = n - i < KK_EWP_BLOCK ? n - i : KK_EWP_BLOCK;
		int64_t nv = (m + KK_VL - 1) / KK_VL;
		bool whole = m % KK_VL == 0;
		for (int k = 0; k < nin; k++) {
			const float *x = (const float *)w->t[k] + off[k] + i;
			if (p->period[k])
				x = ewp_tile(t, k, off[k]) + (o + i) % p->period[k];
			else if (!ew_inner(w, k))
				continue;
			if (whole) {
				t->src[k] = x;
			} else {
				memcpy(ewp_reg(t, k), x, (size_t)m * sizeof(float));
				memset(ewp_reg(t, k) + m, 0, (size_t)(nv * KK_VL - m) * sizeof(float));
				t->src[k] = ewp_reg(t, k);
				t->rep_len[k] = 0;
			}
		}
		for (int r = base; r < p->nreg; r++)
			if (p->direct[r]) {
				t->dst[r] = whole ? (float *)w->t[nin + p->direct[r] - 1] + o + i : ewp_reg(t, r);
				t->src[r] = t->dst[r];
			}
		ewp_exec_all(t, nv);
		for (int j = 0; j < p->nout; j++) {
			int r = (int)p->out_reg[j];
			if (!whole || p->direct[r] != j + 1)
				memcpy((float *)w->t[nin + j] + o + i, t->src[r], (size_t)m * sizeof(float));
		}
	}
}

/* Work items [begin, end), each p->chunks_per_item chunks of KK_EW_CHUNK
 * output elements: a task with its own registers (in its scratch). */
static void ewp_task_run(void *arg, int64_t begin, int64_t end, void *scratch)
{
	const ewp_prog *p = arg;
	ewp_task t;
	t.w = p->w;
	t.p = p;
	t.regs = scratch;
	int nin = p->w.nin, base = nin + p->nconst;
	for (int k = 0; k < nin; k++) {
		t.src[k] = ewp_reg(&t, k);
		t.splat_off[k] = -1;
		t.splat_len[k] = 0;
		t.rep_off[k] = -1;
		t.rep_n[k] = t.rep_len[k] = 0;
	}
	float *tiles = ewp_reg(&t, p->nreg);
	for (int k = 0; k < nin; k++) {
		t.tile[k] = p->period[k] ? tiles : NULL;
		tiles += p->period[k] ? 2 * KK_EWP_BLOCK : 0;
		t.tile_off[k] = -1;
	}
	for (int r = 0; r < p->nreg; r++)
		t.one[r] = false;
	for (int c = 0; c < p->nconst; c++) {
		ewp_splat(ewp_reg(&t, nin + c), (float)p->consts[c], KK_EWP_BLOCK);
		t.src[nin + c] = ewp_reg(&t, nin + c);
		t.one[nin + c] = true;
		t.one_val[nin + c] = (float)p->consts[c];
	}
	for (int r = base; r < p->nreg; r++)
		t.src[r] = t.dst[r] = ewp_reg(&t, r);
	t.b_o = t.b_fill = 0;
	int64_t lo = begin * p->chunks_per_item * KK_EW_CHUNK;
	int64_t hi = end * p->chunks_per_item * KK_EW_CHUNK;
	ew_range(&t.w, lo, hi < p->w.numel ? hi : p->w.numel, ewp_row);
	ewp_flush(&t);
}

KK_KERNEL(kk_ew_program_f32)
{
	ewp_prog p = {
		.w = {
			.nin = (int)ip[KK_EWP_NIN],
			.rank = (int)ip[KK_EWP_RANK],
			.numel = ip[KK_EWP_NUMEL],
			.t = t,
		},
		.nout = (int)ip[KK_EWP_NOUT],
		.nreg = (int)ip[KK_EWP_NREG],
		.nconst = (int)ip[KK_EWP_NCONST],
		.ninstr = (int)ip[KK_EWP_NINSTR],
		.consts = fp,
	};
	p.w.dims = ip + KK_EWP_TAIL;
	p.w.strides = p.w.dims + p.w.rank;
	p.period = p.w.strides + p.w.nin * p.w.rank;
	p.out_reg = p.period + p.w.nin;
	p.instr = p.out_reg + p.nout;
	for (int j = p.nout - 1; j >= 0; j--)
		if (p.out_reg[j] >= p.w.nin + p.nconst)
			p.direct[p.out_reg[j]] = (uint8_t)(j + 1);
	/* one work item on the calling thread (through the pool all the same:
	 * it hands out the scratch), or chunks across the pool */
	int64_t chunks = (p.w.numel + KK_EW_CHUNK - 1) / KK_EW_CHUNK;
	bool alone = p.w.numel < KK_EW_PARALLEL_MIN || h->n_threads <= 1;
	p.chunks_per_item = alone ? chunks : 1;
	kk_parallel(h, alone ? 1 : chunks, ewp_task_run, &p);
}
