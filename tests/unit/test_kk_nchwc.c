/* test_kk_nchwc.c — the blocked-layout (NCHWc) kernels of kk_nchwc.c,
 * called directly through the kernel table with hand-built parameters.
 *
 * The reorders must round-trip exactly and write zero padding lanes. The
 * convolution is compared with a naive NCHW convolution in double, blocked
 * afterwards, on random data: group 1 and depthwise, odd channel counts and
 * planes, strides, asymmetric pads, dilation, bias, residual and the
 * activations, at 1 and 3 threads. Padding lanes of the input hold garbage
 * that must not reach a real channel; padding lanes of the output must be
 * act(res) exactly (their convolution and bias are 0; GELU, an
 * approximation, within the tolerance). Tolerance: rtol 1e-4
 * of the result plus 1e-5 of the sum of the absolute products. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kharness.h"

#define B KK_NCHWC_BLOCK

/* A pool like the harness's: tasks in threads chunks, last chunk first. */
typedef struct t_pool {
	int threads;
} t_pool;

static void t_parallel_for(void *pool, int64_t n, kiln_abi_task_fn fn, void *arg)
{
	t_pool *p = pool;
	int64_t chunks = n < p->threads ? n : p->threads;
	for (int64_t c = chunks - 1; c >= 0; c--)
		fn(arg, n * c / chunks, n * (c + 1) / chunks, NULL);
}

static kiln_abi_host t_host(t_pool *p)
{
	return (kiln_abi_host){.version = KILN_ABI_VERSION, .n_threads = p->threads, .pool = p,
	                       .parallel_for = t_parallel_for};
}

static float *t_alloc(int64_t n)
{
	float *p = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
	assert_non_null(p);
	for (int64_t i = 0; i < n; i++)
		p[i] = NAN;
	return p;
}

static void t_fill(float *p, int64_t n, uint64_t *s, double lo, double hi)
{
	for (int64_t i = 0; i < n; i++)
		p[i] = (float)(lo + (hi - lo) * kh_rand(s));
}

static int64_t cdiv(int64_t a, int64_t b)
{
	return (a + b - 1) / b;
}

/* Offset of (n, c, pixel) in a blocked tensor of cb blocks and hw pixels. */
static int64_t boff(int64_t n, int64_t c, int64_t px, int64_t cb, int64_t hw)
{
	return ((n * cb + c / B) * hw + px) * B + c % B;
}

/* ---- reorders ---------------------------------------------------------- */

static void run_reorder(const char *name, int64_t n, int64_t c, int64_t hw, const float *x,
                        float *y, int threads)
{
	kk_fn fn = kh_kernel(name);
	assert_non_null(fn);
	int64_t ip[KK_NB_COUNT] = {[KK_NB_N] = n, [KK_NB_C] = c, [KK_NB_HW] = hw,
	                           [KK_NB_T_X] = 0, [KK_NB_T_Y] = 1};
	void *t[2] = {(void *)x, y};
	t_pool pool = {threads};
	kiln_abi_host h = t_host(&pool);
	fn(ip, NULL, t, &h);
}

static void test_reorder(void **state)
{
	const int64_t cs[] = {1, 3, 16, 17, 33}, hws[] = {1, 35, 143, 1030, 2100};
	uint64_t s = 5;
	for (size_t ci = 0; ci < sizeof cs / sizeof *cs; ci++)
		for (size_t hi = 0; hi < sizeof hws / sizeof *hws; hi++)
			for (int threads = 1; threads <= 3; threads += 2) {
				int64_t n = 2, c = cs[ci], hw = hws[hi], cb = cdiv(c, B);
				float *x = t_alloc(n * c * hw), *y = t_alloc(n * cb * hw * B);
				float *back = t_alloc(n * c * hw);
				t_fill(x, n * c * hw, &s, -3, 3);
				run_reorder("kk_to_nchwc_f32", n, c, hw, x, y, threads);
				for (int64_t i = 0; i < n; i++)
					for (int64_t k = 0; k < cb * B; k++)
						for (int64_t p = 0; p < hw; p++) {
							float want = k < c ? x[(i * c + k) * hw + p] : 0.0f;
							float got = y[boff(i, k, p, cb, hw)];
							if (memcmp(&got, &want, sizeof got))
								fail_msg("to_nchwc c %lld hw %lld: (%lld, %lld, %lld) %g != %g",
								         (long long)c, (long long)hw, (long long)i,
								         (long long)k, (long long)p, got, want);
						}
				/* padding lanes as garbage: from_nchwc must ignore them */
				for (int64_t i = 0; i < n; i++)
					for (int64_t k = c; k < cb * B; k++)
						for (int64_t p = 0; p < hw; p++)
							y[boff(i, k, p, cb, hw)] = 1e30f;
				run_reorder("kk_from_nchwc_f32", n, c, hw, y, back, threads);
				if (memcmp(x, back, (size_t)(n * c * hw) * sizeof(float)))
					fail_msg("from_nchwc c %lld hw %lld threads %d: no round trip",
					         (long long)c, (long long)hw, threads);
				free(x);
				free(y);
				free(back);
			}
}

/* ---- convolution --------------------------------------------------------- */

typedef struct cv_case {
	int64_t n, c, m, h, w, kh, kw, sh, sw, dh, dw, pt, pl, pb, pr;
	bool depthwise, bias, res;
	int act;
	float lo, hi;
} cv_case;

static double t_act(const cv_case *k, double v)
{
	switch (k->act) {
	case KK_LA_ACT_RELU:
		return v > 0 ? v : 0;
	case KK_LA_ACT_CLIP:
		v = v > k->lo ? v : k->lo;
		return v < k->hi ? v : k->hi;
	case KK_LA_ACT_GELU:
		return 0.5 * v * (1.0 + erf(v / sqrt(2.0)));
	default:
		return v;
	}
}

/* Runs one case at 1 and 3 threads and compares every element of the
 * blocked output, padding lanes exactly. */
static void check_conv(const cv_case *k)
{
	int64_t n = k->n, c = k->c, m = k->m, g = k->depthwise ? c : 1, cg = c / g, mg = m / g;
	int64_t oh = (k->h + k->pt + k->pb - (k->kh - 1) * k->dh - 1) / k->sh + 1;
	int64_t ow = (k->w + k->pl + k->pr - (k->kw - 1) * k->dw - 1) / k->sw + 1;
	int64_t cb = cdiv(c, B), mb = cdiv(m, B), hw = k->h * k->w, ohw = oh * ow, ks = k->kh * k->kw;
	char what[256];
	snprintf(what, sizeof what,
	         "conv %s n %lld c %lld m %lld in %lldx%lld k %lldx%lld s %lld,%lld d %lld,%lld "
	         "pads %lld,%lld,%lld,%lld bias %d res %d act %d",
	         k->depthwise ? "dw" : "g1", (long long)n, (long long)c, (long long)m,
	         (long long)k->h, (long long)k->w, (long long)k->kh, (long long)k->kw,
	         (long long)k->sh, (long long)k->sw, (long long)k->dh, (long long)k->dw,
	         (long long)k->pt, (long long)k->pl, (long long)k->pb, (long long)k->pr, k->bias,
	         k->res, k->act);
	assert_true(oh > 0 && ow > 0);
	uint64_t s = (uint64_t)(c * 131 + m * 7 + k->h * 3 + k->kw + k->sh) | 1;
	float *xb = t_alloc(n * cb * hw * B), *w = t_alloc(m * cg * ks);
	float *wp = t_alloc(kk_nchwc_packed_floats(m, c, g, ks)), *bias = t_alloc(m);
	float *res = t_alloc(n * mb * ohw * B), *y = t_alloc(n * mb * ohw * B);
	t_fill(xb, n * cb * hw * B, &s, -1, 1);
	for (int64_t i = 0; i < n; i++) /* garbage in the padding lanes */
		for (int64_t q = c; q < cb * B; q++)
			for (int64_t p = 0; p < hw; p++)
				xb[boff(i, q, p, cb, hw)] = 7.5f;
	t_fill(w, m * cg * ks, &s, -1, 1);
	t_fill(bias, m, &s, -1, 1);
	t_fill(res, n * mb * ohw * B, &s, -1, 1);
	kk_nchwc_pack(w, m, c, g, ks, wp);

	int64_t ip[KK_LA_COUNT] = {0};
	ip[KK_LA_DTYPE] = KK_LA_DT_F32;
	ip[KK_LA_CONV_N] = n;
	ip[KK_LA_CONV_C] = c;
	ip[KK_LA_CONV_M] = m;
	ip[KK_LA_CONV_GROUP] = g;
	const int64_t geo[6][2] = {{k->h, k->w}, {oh, ow}, {k->kh, k->kw}, {k->sh, k->sw},
	                           {k->dh, k->dw}, {k->pt, k->pl}};
	const int at[6] = {KK_LA_IN, KK_LA_OUT, KK_LA_KER, KK_LA_STRIDE, KK_LA_DIL, KK_LA_PAD};
	for (int f = 0; f < 6; f++) {
		ip[at[f]] = f == 5 ? 0 : 1;
		ip[at[f] + 1] = geo[f][0];
		ip[at[f] + 2] = geo[f][1];
	}
	ip[KK_LA_T_A] = 0;
	ip[KK_LA_T_B] = 1;
	ip[KK_LA_T_BIAS] = k->bias ? 2 : -1;
	ip[KK_LA_T_Y] = 3;
	ip[KK_LA_T_RES] = k->res ? 4 : -1;
	ip[KK_LA_T_C] = ip[KK_LA_T_SCRATCH] = -1;
	ip[KK_LA_ACT] = k->act;
	double fp[KK_LA_FP_COUNT] = {[KK_LA_FP_ALPHA] = 1, [KK_LA_FP_LO] = k->lo,
	                             [KK_LA_FP_HI] = k->hi};
	void *t[5] = {xb, wp, bias, y, res};
	kk_fn fn = kh_kernel("kk_conv_nchwc_f32");
	assert_non_null(fn);

	for (int threads = 1; threads <= 3; threads += 2) {
		for (int64_t i = 0; i < n * mb * ohw * B; i++)
			y[i] = NAN;
		t_pool pool = {threads};
		kiln_abi_host h = t_host(&pool);
		fn(ip, fp, t, &h);
		for (int64_t i = 0; i < n; i++)
			for (int64_t o = 0; o < mb * B; o++)
				for (int64_t y0 = 0; y0 < oh; y0++)
					for (int64_t x0 = 0; x0 < ow; x0++) {
						int64_t yo = boff(i, o, y0 * ow + x0, mb, ohw);
						double ref = 0, mag = 0;
						if (o < m) {
							int64_t gi = o / mg;
							ref = k->bias ? bias[o] : 0;
							mag = fabs(ref);
							for (int64_t ci = 0; ci < cg; ci++)
								for (int64_t a = 0; a < k->kh; a++)
									for (int64_t b = 0; b < k->kw; b++) {
										int64_t iy = y0 * k->sh - k->pt + a * k->dh;
										int64_t ix = x0 * k->sw - k->pl + b * k->dw;
										if (iy < 0 || iy >= k->h || ix < 0 || ix >= k->w)
											continue;
										double xv = xb[boff(i, gi * cg + ci, iy * k->w + ix, cb,
										                    hw)];
										double pr = xv * w[((o * cg + ci) * k->kh + a) * k->kw + b];
										ref += pr;
										mag += fabs(pr);
									}
						}
						if (k->res) {
							ref += res[yo];
							mag += fabs(res[yo]);
						}
						ref = t_act(k, ref);
						double got = y[yo];
						bool exact = o >= m && k->act != KK_LA_ACT_GELU;
						bool ok = exact ? (float)got == (float)ref
						                : fabs(got - ref) <= 1e-4 * fabs(ref) + 1e-5 * mag + 1e-6;
						if (!ok)
							fail_msg("%s threads %d: image %lld channel %lld (%lld, %lld): got "
							         "%.9g want %.9g",
							         what, threads, (long long)i, (long long)o, (long long)y0,
							         (long long)x0, got, ref);
					}
	}
	free(xb);
	free(w);
	free(wp);
	free(bias);
	free(res);
	free(y);
}

/* Geometries: c/m (m ignored when depthwise), plane, kernel, strides,
 * dilations, pads top/left/bottom/right. */
typedef struct geo {
	int64_t c, m, h, w, kh, kw, sh, sw, dh, dw, pt, pl, pb, pr;
} geo;

static const geo geos[] = {
	{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0},
	{3, 17, 5, 7, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0},
	{17, 33, 13, 11, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0},
	{33, 24, 13, 11, 1, 1, 2, 2, 1, 1, 0, 0, 0, 0},
	{24, 3, 13, 11, 1, 1, 3, 2, 1, 1, 0, 1, 1, 0},
	{17, 24, 6, 29, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1},
	{3, 17, 5, 7, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1},
	{17, 33, 13, 11, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1},
	{24, 17, 13, 11, 3, 3, 1, 1, 2, 2, 2, 1, 0, 2},
	{33, 3, 6, 29, 3, 3, 3, 3, 1, 1, 0, 2, 1, 0},
	{3, 24, 13, 11, 5, 5, 1, 1, 1, 1, 2, 2, 2, 2},
	{17, 17, 13, 11, 5, 5, 2, 2, 1, 1, 2, 1, 2, 2},
	{24, 33, 5, 7, 1, 3, 1, 2, 1, 1, 0, 1, 0, 1},
	{3, 3, 1, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1},
	{17, 24, 13, 11, 3, 1, 2, 1, 1, 2, 1, 0, 0, 0},
	{1, 17, 20, 20, 3, 3, 2, 1, 1, 1, 0, 1, 1, 1},
	{24, 24, 20, 20, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1},
	{33, 33, 20, 20, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1},
	{17, 17, 20, 20, 5, 5, 1, 1, 1, 1, 2, 2, 2, 2},
	{17, 17, 20, 20, 5, 5, 2, 2, 1, 1, 2, 2, 2, 2},
	{3, 3, 13, 11, 7, 7, 1, 1, 1, 1, 3, 3, 3, 3},
	{3, 3, 5, 7, 3, 3, 1, 2, 2, 1, 0, 3, 2, 0},
	{17, 17, 5, 7, 5, 5, 1, 1, 1, 1, 0, 0, 0, 0},
};

static void run_geos(bool depthwise, int act, bool bias, bool res, float lo, float hi)
{
	for (size_t i = 0; i < sizeof geos / sizeof *geos; i++) {
		const geo *q = &geos[i];
		cv_case k = {.n = 2, .c = q->c, .m = depthwise ? q->c : q->m, .h = q->h, .w = q->w,
		             .kh = q->kh, .kw = q->kw, .sh = q->sh, .sw = q->sw, .dh = q->dh,
		             .dw = q->dw, .pt = q->pt, .pl = q->pl, .pb = q->pb, .pr = q->pr,
		             .depthwise = depthwise, .bias = bias, .res = res, .act = act,
		             .lo = lo, .hi = hi};
		check_conv(&k);
	}
}

static void test_conv_plain(void **state)
{
	run_geos(false, KK_LA_ACT_NONE, false, false, 0, 0);
	run_geos(false, KK_LA_ACT_NONE, true, false, 0, 0);
}

static void test_conv_epilogue(void **state)
{
	run_geos(false, KK_LA_ACT_RELU, true, true, 0, 0);
	run_geos(false, KK_LA_ACT_CLIP, false, true, -0.5f, 0.75f);
	/* clip above 0: the padding lanes become lo */
	run_geos(false, KK_LA_ACT_CLIP, true, false, 0.25f, 6.0f);
}

static void test_conv_dw_plain(void **state)
{
	run_geos(true, KK_LA_ACT_NONE, false, false, 0, 0);
	run_geos(true, KK_LA_ACT_NONE, true, false, 0, 0);
}

static void test_conv_dw_epilogue(void **state)
{
	run_geos(true, KK_LA_ACT_RELU, true, true, 0, 0);
	run_geos(true, KK_LA_ACT_CLIP, true, false, 0.0f, 6.0f);
	run_geos(true, KK_LA_ACT_CLIP, false, true, 0.25f, 0.5f);
}

/* GELU is not sent by the lowering but is applied as in kk_linalg. */
static void test_conv_gelu(void **state)
{
	cv_case k = {.n = 1, .c = 17, .m = 20, .h = 5, .w = 7, .kh = 3, .kw = 3, .sh = 1, .sw = 1,
	             .dh = 1, .dw = 1, .pt = 1, .pl = 1, .pb = 1, .pr = 1, .bias = true,
	             .res = true, .act = KK_LA_ACT_GELU};
	check_conv(&k);
	k.depthwise = true;
	k.m = k.c;
	check_conv(&k);
}

/* MobileNetV2-like sizes: long interior runs, many blocks, one image. */
static void test_conv_large(void **state)
{
	const cv_case ks[] = {
		{1, 32, 32, 28, 28, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, true, true, false, KK_LA_ACT_CLIP, 0, 6},
		{1, 48, 48, 28, 28, 3, 3, 2, 2, 1, 1, 0, 0, 1, 1, true, true, false, KK_LA_ACT_CLIP, 0, 6},
		{1, 96, 24, 28, 28, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, false, true, true, KK_LA_ACT_NONE, 0, 0},
		{1, 24, 144, 14, 14, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, false, true, false, KK_LA_ACT_RELU, 0, 0},
		{1, 64, 40, 14, 14, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, false, true, false, KK_LA_ACT_NONE, 0, 0},
	};
	for (size_t i = 0; i < sizeof ks / sizeof *ks; i++)
		check_conv(&ks[i]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reorder),
		cmocka_unit_test(test_conv_plain),
		cmocka_unit_test(test_conv_epilogue),
		cmocka_unit_test(test_conv_dw_plain),
		cmocka_unit_test(test_conv_dw_epilogue),
		cmocka_unit_test(test_conv_gelu),
		cmocka_unit_test(test_conv_large),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
