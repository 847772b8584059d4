/* bench_util.c — clock, statistics and random data for the benchmark tools. */
#include "bench.h"

#include "kiln.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

double kiln_bench_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *pa, const void *pb)
{
	double a = *(const double *)pa, b = *(const double *)pb;
	return (a > b) - (a < b);
}

void kiln_bench_stats_of(double *samples, int n, kiln_bench_stats *out)
{
	qsort(samples, (size_t)n, sizeof *samples, cmp_double);
	double sum = 0;
	for (int i = 0; i < n; i++)
		sum += samples[i];
	int p90 = (int)((9 * (int64_t)n + 9) / 10) - 1; /* nearest rank: ceil(0.9 n) */
	*out = (kiln_bench_stats){
		.n = n,
		.median = n % 2 ? samples[n / 2] : 0.5 * (samples[n / 2 - 1] + samples[n / 2]),
		.min = samples[0],
		.p90 = samples[p90 < 0 ? 0 : p90],
		.mean = sum / n,
	};
}

uint64_t kiln_bench_rand(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Uniform in [-1, 1) with 24 random bits. */
static float rand_unit(uint64_t *state)
{
	return (float)(kiln_bench_rand(state) >> 40) * (2.0f / 16777216.0f) - 1.0f;
}

/* An f16 bit pattern with magnitude in [2^-4, 1): exact values, no rounding. */
static uint16_t rand_f16(uint64_t *state)
{
	uint64_t r = kiln_bench_rand(state);
	uint16_t sign = (uint16_t)((r & 1) << 15);
	uint16_t exponent = (uint16_t)(11 + (r >> 1) % 4);
	return (uint16_t)(sign | exponent << 10 | ((r >> 8) & 0x3ff));
}

void kiln_bench_fill(void *data, int dtype, int64_t numel, uint64_t *state)
{
	for (int64_t i = 0; i < numel; i++) {
		float f = rand_unit(state);
		int64_t bit = (int64_t)(kiln_bench_rand(state) >> 63);
		uint32_t bits;
		switch ((kiln_dtype)dtype) {
		case KILN_DT_F32: ((float *)data)[i] = f; break;
		case KILN_DT_F64: ((double *)data)[i] = f; break;
		case KILN_DT_F16: ((uint16_t *)data)[i] = rand_f16(state); break;
		case KILN_DT_BF16:
			memcpy(&bits, &f, sizeof bits);
			((uint16_t *)data)[i] = (uint16_t)(bits >> 16);
			break;
		case KILN_DT_I64: ((int64_t *)data)[i] = bit; break;
		case KILN_DT_I32: ((int32_t *)data)[i] = (int32_t)bit; break;
		case KILN_DT_I8: ((int8_t *)data)[i] = (int8_t)bit; break;
		case KILN_DT_U8:
		case KILN_DT_BOOL: ((uint8_t *)data)[i] = (uint8_t)bit; break;
		case KILN_DTYPE_COUNT: return;
		}
	}
}

void kiln_bench_json_string(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}
