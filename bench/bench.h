/* bench.h — what the benchmark tools share: a monotonic clock, summary
 * statistics over timed samples, seeded random tensor data, and the
 * single-core FMA peak measurement (bench_peak.c). */
#ifndef KILN_BENCH_H
#define KILN_BENCH_H

#include <stdint.h>
#include <stdio.h>

/* Seconds from CLOCK_MONOTONIC. */
double kiln_bench_now(void);

typedef struct kiln_bench_stats {
	int n;
	double median, min, p90, mean;
} kiln_bench_stats;

/* Sorts samples[0..n) in place and summarises them (n >= 1). The median of
 * an even count is the mean of the middle two; p90 is the nearest rank. */
void kiln_bench_stats_of(double *samples, int n, kiln_bench_stats *out);

/* splitmix64: a small, fast, seedable generator; state is the caller's. */
uint64_t kiln_bench_rand(uint64_t *state);

/* Fills numel elements of a kiln_dtype (kiln.h) with seeded random data:
 * floats uniform in [-1, 1), integers and bools 0 or 1 (valid as indices,
 * masks and type ids in every model the harness runs). */
void kiln_bench_fill(void *data, int dtype, int64_t numel, uint64_t *state);

/* Writes s as a JSON string literal, quotes included. */
void kiln_bench_json_string(FILE *f, const char *s);

/* The widest FMA vector ISA of this CPU: "avx512f", "avx2" (both with FMA),
 * "sse2" (x86-64 without FMA) or "generic" (other architectures). */
const char *kiln_bench_widest_isa(void);

/* The calling core's peak f32 throughput in GFLOP/s for one of those ISAs
 * (or a narrower one the CPU also has), from a loop of independent vector
 * FMAs; runs for about `seconds`. -1 when the CPU lacks the ISA. */
double kiln_bench_fma_peak(const char *isa, double seconds);

#endif
