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
	ew_walk w; /* first member: the row function gets &w */
	int nout, nreg, nconst, ninstr;
	const int64_t *out_reg; /* [nout] */
	const int64_t *instr;   /* [ninstr][KK_EWP_INSTR_SIZE] */
	const double *consts;   /* [nconst] */
} ewp_prog;

/* d[j] = EXPR over nv vectors; va, vb, vc load a, b, c (the operands an op
 * uses; the others are never read). */
#define EWP_MAP1(EXPR)                                                  \
	do {                                                                \
		for (int64_t j = 0; j < nv * KK_VL; j += KK_VL) {               \
			kk_vf va = kk_load(a + j);                                  \
			kk_store(d + j, (EXPR));                                    \
		}                                                               \
	} while (0)
#define EWP_MAP2(EXPR)                                                  \
	do {                                                                \
		for (int64_t j = 0; j < nv * KK_VL; j += KK_VL) {               \
			kk_vf va = kk_load(a + j), vb = kk_load(b + j);             \
			kk_store(d + j, (EXPR));                                    \
		}                                                               \
	} while (0)
#define EWP_MAP3(EXPR)                                                  \
	do {                                                                \
		for (int64_t j = 0; j < nv * KK_VL; j += KK_VL) {               \
			kk_vf va = kk_load(a + j), vb = kk_load(b + j);             \
			kk_vf vc = kk_load(c + j);                                  \
			kk_store(d + j, (EXPR));                                    \
		}                                                               \
	} while (0)

/* One instruction over nv vectors. Each op is computed exactly as its
 * single-op kernel above computes it, so a fused graph gives the same
 * results as the unfused one. d may be one of the sources. */
static void ewp_exec(int op, float *d, const float *a, const float *b, const float *c, int64_t nv)
{
	const kk_vf zero = kk_splat(0.0f);
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
		for (int64_t j = 0; j < nv * KK_VL; j++)
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
	case KK_EW_MIN: EWP_MAP2(kk_select((va < vb) | (va != va), va, vb)); break;
	case KK_EW_MAX: EWP_MAP2(kk_select((va > vb) | (va != va), va, vb)); break;
	case KK_EW_POW:
		for (int64_t j = 0; j < nv * KK_VL; j++)
			d[j] = (float)pow(a[j], b[j]);
		break;
	case KK_EW_COPY: EWP_MAP1(va); break;
	default: break;
	}
}

/* x in the first n floats of p (whole vectors). */
static void ewp_splat(float *p, float x, int64_t n)
{
	const kk_vf v = kk_splat(x);
	for (int64_t j = 0; j < n; j += KK_VL)
		kk_store(p + j, v);
}

/* One run of n output elements: blocks of KK_EWP_BLOCK, each through every
 * instruction. An input with inner stride 1 is read in place (a copy padded
 * with zeros for a block that ends inside a vector); a broadcast one and
 * the constants are splatted once per run. Outputs are stored after each
 * block's last instruction. */
static void ewp_row(const ew_walk *w, const int64_t *off, int64_t o, int64_t n)
{
	const ewp_prog *p = (const ewp_prog *)w;
	float reg[KK_EWP_MAX_REG][KK_EWP_BLOCK] __attribute__((aligned(64)));
	const float *src[KK_EWP_MAX_REG];
	int64_t first = n < KK_EWP_BLOCK ? n : KK_EWP_BLOCK;
	int64_t fill = (first + KK_VL - 1) / KK_VL * KK_VL;
	for (int k = 0; k < w->nin; k++) {
		src[k] = reg[k];
		if (!ew_inner(w, k))
			ewp_splat(reg[k], ((const float *)w->t[k])[off[k]], fill);
	}
	for (int c = 0; c < p->nconst; c++)
		ewp_splat(reg[w->nin + c], (float)p->consts[c], fill);
	for (int r = w->nin; r < p->nreg; r++)
		src[r] = reg[r];
	for (int64_t i = 0; i < n; i += KK_EWP_BLOCK) {
		int64_t m = n - i < KK_EWP_BLOCK ? n - i : KK_EWP_BLOCK;
		int64_t nv = (m + KK_VL - 1) / KK_VL;
		for (int k = 0; k < w->nin; k++) {
			if (!ew_inner(w, k))
				continue;
			const float *x = (const float *)w->t[k] + off[k] + i;
			if (m % KK_VL == 0) {
				src[k] = x;
			} else {
				memcpy(reg[k], x, (size_t)m * sizeof(float));
				memset(reg[k] + m, 0, (size_t)(nv * KK_VL - m) * sizeof(float));
				src[k] = reg[k];
			}
		}
		for (int q = 0; q < p->ninstr; q++) {
			const int64_t *in = p->instr + q * KK_EWP_INSTR_SIZE;
			const float *a = src[in[KK_EWP_I_A]];
			const float *b = in[KK_EWP_I_B] >= 0 ? src[in[KK_EWP_I_B]] : a;
			const float *c = in[KK_EWP_I_C] >= 0 ? src[in[KK_EWP_I_C]] : a;
			ewp_exec((int)in[KK_EWP_I_OP], reg[in[KK_EWP_I_DST]], a, b, c, nv);
		}
		for (int j = 0; j < p->nout; j++)
			memcpy((float *)w->t[w->nin + j] + o + i, src[p->out_reg[j]],
			       (size_t)m * sizeof(float));
	}
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
	p.out_reg = p.w.strides + p.w.nin * p.w.rank;
	p.instr = p.out_reg + p.nout;
	ew_run(&p.w, h, ewp_row);
}
