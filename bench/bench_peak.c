/* bench_peak.c — measures one core's peak f32 FMA throughput: a loop of
 * independent accumulator chains acc = acc * mul + add.
 * The x86-64 variants are compiled for their ISA with target attributes and
 * picked at run time, so the tool runs on any x86-64. This file is built with
 * -ffp-contract=fast so `acc * mul + add` becomes one FMA instruction. */
#include "bench.h"

#include <string.h>

/* Independent chains, each a named variable so it stays in a register:
 * enough to cover FMA latency times FMA ports on current cores (8 on x86-64)
 * while leaving room for `mul` and `add`: 16 where there are 32 vector
 * registers (AVX-512, aarch64), 12 where there are 16 (AVX2, SSE2). */
#define ACC12(X, T) X(0, T) X(1, T) X(2, T) X(3, T) X(4, T) X(5, T) X(6, T) \
	X(7, T) X(8, T) X(9, T) X(10, T) X(11, T)
#define ACC16(X, T) ACC12(X, T) X(12, T) X(13, T) X(14, T) X(15, T)
#define ACC_DECL(i, T) T acc##i = mul * (float)(i + 1);
#define ACC_STEP(i, T) acc##i = acc##i * mul + add;
#define ACC_SUM(i, T) sum += acc##i;

#define INNER 16384 /* loop trips between clock reads */

/* mul just under 1 and a small add keep every chain near add / (1 - mul):
 * no overflow, no denormals, and the compiler cannot fold the chains. */
#define FMA_LOOP(ACCS, vec, lanes)                          \
	vec mul, add, sum;                                  \
	for (int l = 0; l < (lanes); l++) {                 \
		mul[l] = 0.999999f;                         \
		add[l] = 1e-6f;                             \
		sum[l] = 0;                                 \
	}                                                   \
	ACCS(ACC_DECL, vec)                                 \
	for (int64_t it = 0; it < iters; it++) {            \
		ACCS(ACC_STEP, vec)                         \
	}                                                   \
	ACCS(ACC_SUM, vec)                                  \
	float total = 0;                                    \
	for (int l = 0; l < (lanes); l++)                   \
		total += sum[l];                            \
	return total

typedef float kiln_bench_v4 __attribute__((vector_size(16)));

#if defined(__x86_64__)
typedef float kiln_bench_v8 __attribute__((vector_size(32)));
typedef float kiln_bench_v16 __attribute__((vector_size(64)));

__attribute__((target("avx512f,fma"), noinline))
static float fma_avx512(int64_t iters)
{
	FMA_LOOP(ACC16, kiln_bench_v16, 16);
}

__attribute__((target("avx2,fma"), noinline))
static float fma_avx2(int64_t iters)
{
	FMA_LOOP(ACC12, kiln_bench_v8, 8);
}
#endif

/* Baseline SIMD (SSE2 on x86-64, where mul and add stay two instructions,
 * NEON on aarch64, where they contract to one FMA). */
#if defined(__x86_64__)
#define GENERIC_ACCS ACC12
#define GENERIC_CHAINS 12
#else
#define GENERIC_ACCS ACC16
#define GENERIC_CHAINS 16
#endif

__attribute__((noinline))
static float fma_generic(int64_t iters)
{
	FMA_LOOP(GENERIC_ACCS, kiln_bench_v4, 4);
}

const char *kiln_bench_widest_isa(void)
{
#if defined(__x86_64__)
	__builtin_cpu_init();
	if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma"))
		return "avx512f";
	if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
		return "avx2";
	return "sse2";
#else
	return "generic";
#endif
}

double kiln_bench_fma_peak(const char *isa, double seconds)
{
	float (*fn)(int64_t) = NULL;
	int flops_per_iter = 2 * 4 * GENERIC_CHAINS;
	const char *widest = kiln_bench_widest_isa();
#if defined(__x86_64__)
	if (!strcmp(isa, "avx512f") && !strcmp(widest, "avx512f"))
		fn = fma_avx512, flops_per_iter = 2 * 16 * 16;
	else if (!strcmp(isa, "avx2") && strcmp(widest, "sse2"))
		fn = fma_avx2, flops_per_iter = 2 * 8 * 12;
	else if (!strcmp(isa, "sse2"))
		fn = fma_generic;
#else
	if (!strcmp(isa, widest))
		fn = fma_generic;
#endif
	if (!fn)
		return -1;
	/* Warm up (frequency, caches), then keep the best of several slices:
	 * interruptions only ever make a slice slower. */
	volatile float sink = fn(INNER);
	double best = 0;
	for (int slice = 0; slice < 10; slice++) {
		int64_t iters = 0;
		double t0 = kiln_bench_now(), t = t0;
		while (t - t0 < seconds / 10) {
			sink += fn(INNER);
			iters += INNER;
			t = kiln_bench_now();
		}
		double flops = (double)flops_per_iter * (double)iters;
		double gflops = flops / (t - t0) * 1e-9;
		if (gflops > best)
			best = gflops;
	}
	(void)sink;
	return best;
}
