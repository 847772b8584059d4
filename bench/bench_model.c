/* bench_model.c — kiln-bench-model: times a compiled model (.so from
 * `kiln compile`) through libkiln_rt. Seeded random inputs, one session with
 * --threads threads, --warmup untimed runs (and at least --warmup-ms of
 * them), then --repeat runs each timed
 * with CLOCK_MONOTONIC; prints median, min and p90 in milliseconds, or one
 * JSON object with every sample, sorted (--json), for bench/compare.py. */
#include "bench.h"
#include "kiln_rt.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
	"usage: kiln-bench-model MODEL.so [--threads N] [--warmup N] [--warmup-ms T]\n"
	"                        [--repeat N] [--seed N] [--json]\n"
	"\n"
	"Loads MODEL.so, fills its inputs with seeded random data (floats uniform in\n"
	"[-1, 1), integers 0 or 1), runs it --warmup times (default 5) and for at\n"
	"least --warmup-ms milliseconds (default 100: a model of microseconds warms\n"
	"its threads and caches too), then times --repeat runs (default 20) one by\n"
	"one and prints median, min and p90 in ms.\n"
	"--threads N: the session's thread count (default 1; 0 means the runtime's\n"
	"default). --json: one JSON object on stdout, samples included.\n"
	"Exit status: 0 success, 1 the model could not be loaded or run, 2 usage.\n";

typedef struct options {
	const char *path;
	int threads, warmup, warmup_ms, repeat, json;
	uint64_t seed;
} options;

static int parse_int(const char *flag, const char *s, long lo, long *out)
{
	char *end;
	errno = 0;
	long v = strtol(s ? s : "", &end, 10);
	if (!s || !*s || *end || errno || v < lo || v > 1000000000L) {
		fprintf(stderr, "kiln-bench-model: %s needs an integer >= %ld\n%s", flag, lo, usage);
		return -1;
	}
	*out = v;
	return 0;
}

static int parse_args(int argc, char **argv, options *o)
{
	*o = (options){.threads = 1, .warmup = 5, .warmup_ms = 100, .repeat = 20, .seed = 1};
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		long v;
		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			fputs(usage, stdout);
			exit(0);
		} else if (!strcmp(a, "--json")) {
			o->json = 1;
		} else if (!strcmp(a, "--threads") || !strcmp(a, "--warmup") ||
		           !strcmp(a, "--warmup-ms") || !strcmp(a, "--repeat") || !strcmp(a, "--seed")) {
			int is_repeat = !strcmp(a, "--repeat");
			if (parse_int(a, i + 1 < argc ? argv[++i] : NULL, is_repeat, &v))
				return -1;
			if (!strcmp(a, "--threads"))
				o->threads = (int)v;
			else if (!strcmp(a, "--warmup"))
				o->warmup = (int)v;
			else if (!strcmp(a, "--warmup-ms"))
				o->warmup_ms = (int)v;
			else if (is_repeat)
				o->repeat = (int)v;
			else
				o->seed = (uint64_t)v;
		} else if (a[0] == '-' || o->path) {
			fprintf(stderr, "kiln-bench-model: unexpected argument '%s'\n%s", a, usage);
			return -1;
		} else {
			o->path = a;
		}
	}
	if (!o->path) {
		fprintf(stderr, "kiln-bench-model: no model given\n%s", usage);
		return -1;
	}
	return 0;
}

/* One buffer per input (random) and output, sized from the descriptor. */
typedef struct buffers {
	int n_in, n_out;
	void **in, **out;
} buffers;

static void buffers_free(buffers *b)
{
	for (int i = 0; b->in && i < b->n_in; i++)
		free(b->in[i]);
	for (int i = 0; b->out && i < b->n_out; i++)
		free(b->out[i]);
	free(b->in);
	free(b->out);
}

static int buffers_init(buffers *b, const kiln_rt_model_t *m, uint64_t seed)
{
	b->n_in = kiln_rt_model_n_inputs(m);
	b->n_out = kiln_rt_model_n_outputs(m);
	b->in = calloc((size_t)b->n_in + 1, sizeof *b->in);
	b->out = calloc((size_t)b->n_out + 1, sizeof *b->out);
	if (!b->in || !b->out)
		return -1;
	uint64_t state = seed;
	for (int i = 0; i < b->n_in; i++) {
		const kiln_abi_tensor *t = kiln_rt_model_input(m, i);
		int64_t numel = 1;
		for (int k = 0; k < t->rank; k++)
			numel *= t->dims[k];
		if (!(b->in[i] = calloc(1, (size_t)t->bytes + 1)))
			return -1;
		kiln_bench_fill(b->in[i], t->dtype, numel, &state);
	}
	for (int i = 0; i < b->n_out; i++)
		if (!(b->out[i] = calloc(1, (size_t)kiln_rt_model_output(m, i)->bytes + 1)))
			return -1;
	return 0;
}

static void print_result(const options *o, const kiln_rt_model_t *m, int threads,
                         double *ms, const kiln_bench_stats *st)
{
	if (!o->json) {
		printf("%s: %d thread%s, %d runs after %d warmup: median %.3f ms, min %.3f ms, "
		       "p90 %.3f ms\n", kiln_rt_model_name(m), threads, threads == 1 ? "" : "s",
		       st->n, o->warmup, st->median, st->min, st->p90);
		return;
	}
	printf("{\"model\": ");
	kiln_bench_json_string(stdout, kiln_rt_model_name(m));
	printf(", \"path\": ");
	kiln_bench_json_string(stdout, o->path);
	printf(", \"threads\": %d, \"warmup\": %d, \"repeat\": %d, \"median_ms\": %.6f, "
	       "\"min_ms\": %.6f, \"p90_ms\": %.6f, \"mean_ms\": %.6f, \"samples_ms\": [",
	       threads, o->warmup, st->n, st->median, st->min, st->p90, st->mean);
	for (int i = 0; i < st->n; i++)
		printf("%s%.6f", i ? ", " : "", ms[i]);
	printf("]}\n");
}

int main(int argc, char **argv)
{
	options o;
	if (parse_args(argc, argv, &o))
		return 2;
	char err[512];
	kiln_rt_model_t *m = NULL;
	if (kiln_rt_model_load(o.path, &m, err, sizeof err) != KILN_RT_OK) {
		fprintf(stderr, "kiln-bench-model: %s\n", err);
		return 1;
	}
	int rc = 1;
	buffers b = {0};
	kiln_rt_session_t *s = NULL;
	double *ms = malloc((size_t)o.repeat * sizeof *ms);
	kiln_rt_session_opts so = {.n_threads = o.threads};
	kiln_rt_status st;
	if (!ms || buffers_init(&b, m, o.seed)) {
		fprintf(stderr, "kiln-bench-model: out of memory\n");
		goto done;
	}
	if ((st = kiln_rt_session_create(m, &so, &s)) != KILN_RT_OK) {
		fprintf(stderr, "kiln-bench-model: %s: cannot create a session: %s\n", o.path,
		        kiln_rt_status_str(st));
		goto done;
	}
	/* warm-up: --warmup runs, and on until --warmup-ms have passed */
	double w0 = kiln_bench_now();
	for (int i = 0; i < o.warmup || (kiln_bench_now() - w0) * 1e3 < o.warmup_ms; i++) {
		if ((st = kiln_rt_session_run_raw(s, (const void *const *)b.in, b.out)) != KILN_RT_OK)
			break;
	}
	for (int i = 0; i < o.repeat && st == KILN_RT_OK; i++) {
		double t0 = kiln_bench_now();
		st = kiln_rt_session_run_raw(s, (const void *const *)b.in, b.out);
		ms[i] = (kiln_bench_now() - t0) * 1e3;
	}
	if (st != KILN_RT_OK) {
		fprintf(stderr, "kiln-bench-model: %s: run failed: %s\n", o.path,
		        kiln_rt_session_error(s));
		goto done;
	}
	kiln_bench_stats stats;
	kiln_bench_stats_of(ms, o.repeat, &stats);
	print_result(&o, m, kiln_rt_session_n_threads(s), ms, &stats);
	rc = 0;
done:
	kiln_rt_session_free(s);
	buffers_free(&b);
	free(ms);
	kiln_rt_model_free(m);
	return rc;
}
