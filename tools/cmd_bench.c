/* cmd_bench.c — `kiln bench`: compiles a model several ways (unfused: one
 * kernel per op; fused: the -O2 pipeline; openblas: one kernel per op with
 * every f32 GEMM through OpenBLAS, as a typical framework runs), runs the
 * variants side by side through libkiln_rt and prints per-kernel and total
 * times, the speedup, kernels launched and bytes moved. */
#include "cli.h"
#include "kiln_rt.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char help[] =
	"usage: kiln bench MODEL [--compare unfused,fused] [--threads N] [--repeat N]\n"
	"                  [--warmup N] [--kernels N] [--json FILE] [--shape NAME=DIMS ...]\n"
	"\n"
	"Compiles MODEL (.onnx or .kir) once per variant, runs the variants side by\n"
	"side on the same random inputs (floats uniform in [-1, 1), integers 0 or 1)\n"
	"and prints, per variant, the median run time, kernels launched, bytes moved\n"
	"and arena size, the speedup of each variant over the first, and the slowest\n"
	"kernels of each with their share of the run.\n"
	"\n"
	"variants:\n"
	"  unfused   -O2 code, no graph passes: one kernel per ONNX op\n"
	"  fused     -O2 with its graph passes (BatchNorm folding, fusion)\n"
	"  openblas  as unfused, but every f32 Gemm, MatMul and (not depthwise) Conv\n"
	"            calls OpenBLAS's cblas_sgemm on plain operands, Conv through an\n"
	"            im2col: per-op kernels the way a typical framework runs\n"
	"\n"
	"flags:\n"
	"  --compare LIST     variants to run, comma-separated (default unfused,fused)\n"
	"  --threads N        threads per session, and OpenBLAS's threads (default:\n"
	"                     KILN_NUM_THREADS or all cores)\n"
	"  --repeat N         timed runs per variant (default 50), split over 5 rounds\n"
	"                     that alternate the variants so machine noise hits all\n"
	"  --warmup N         untimed runs per variant and round (default 3)\n"
	"  --kernels N        kernels listed per variant, slowest first (default 10; 0: all)\n"
	"  --json FILE        also write every number as JSON\n"
	"  --shape NAME=DIMS  pin the shape of ONNX input NAME (e.g. input=1x3x224x224)\n"
	"  -h, --help         print this help\n"
	"\n"
	"Per-kernel times come from separate, profiled runs (two clock reads per\n"
	"kernel); totals from unprofiled ones. Bytes moved: the bytes of the tensors\n"
	"each kernel reads and writes, summed. Outputs: each variant's largest\n"
	"difference from the first variant's, over the f32 outputs.\n"
	"\n"
	"examples:\n"
	"  kiln bench model.onnx --threads 1\n"
	"  kiln bench model.onnx --compare unfused,fused --json bench.json\n"
	"  kiln bench model.onnx --compare unfused,fused,openblas --threads 1\n"
	"\n"
	"Exit status: 0 success, 1 a model or run error, 2 usage error.\n";

#define MAX_VARIANTS 4
#define ROUNDS 5

typedef struct variant {
	const char *name;
	const char *passes; /* NULL: the level's pipeline */
	bool host_gemm;     /* f32 products through blas_sgemm */
	double diff;        /* largest output difference from the first variant */
	double compile_s;
	kiln_compile_stats stats;
	kiln_rt_model_t *m;
	kiln_rt_session_t *s;
	void **outs;
	double *totals;   /* seconds, one per timed run */
	double *ktimes;   /* [kernel][profiled run] seconds */
	double *prof;     /* one profiled run's kernel times */
	int n_totals, n_prof;
	int64_t bytes;    /* sum of the kernels' bytes */
} variant;

typedef struct bench_args {
	const char *model, *json;
	int threads, repeat, warmup, list;
	variant v[MAX_VARIANTS];
	int nv;
	kiln_cli_pins pins;
} bench_args;

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* q-quantile of n samples (sorts them). */
static double quantile(double *x, int n, double q)
{
	if (n <= 0)
		return NAN;
	qsort(x, (size_t)n, sizeof *x, cmp_double);
	return x[(int)(q * (n - 1) + 0.5)];
}

static bool parse_count(const char *s, int lo, int hi, int *out)
{
	char *end;
	long v = s ? strtol(s, &end, 10) : 0;
	if (!s || !*s || *end || v < lo || v > hi)
		return false;
	*out = (int)v;
	return true;
}

static int parse_compare(bench_args *a, const char *list)
{
	a->nv = 0;
	const char *p = list;
	while (*p) {
		size_t len = strcspn(p, ",");
		const char *name = NULL, *passes = NULL;
		bool host_gemm = false;
		if (len == 7 && !strncmp(p, "unfused", 7))
			name = "unfused", passes = "";
		else if (len == 5 && !strncmp(p, "fused", 5))
			name = "fused";
		else if (len == 8 && !strncmp(p, "openblas", 8))
			name = "openblas", passes = "", host_gemm = true;
		else
			return kiln_cli_usage("bench",
			                      "--compare: unknown variant '%.*s' (unfused, fused, openblas)",
			                      (int)len, p);
		for (int i = 0; i < a->nv; i++)
			if (!strcmp(a->v[i].name, name))
				return kiln_cli_usage("bench", "--compare: '%s' given twice", name);
		if (a->nv == MAX_VARIANTS)
			return kiln_cli_usage("bench", "--compare: at most %d variants", MAX_VARIANTS);
		a->v[a->nv++] = (variant){.name = name, .passes = passes, .host_gemm = host_gemm};
		p += len + (p[len] == ',');
	}
	if (!a->nv)
		return kiln_cli_usage("bench", "--compare needs a variant (unfused, fused, openblas)");
	return KILN_EXIT_OK;
}

static int parse_args(int argc, char **argv, bench_args *a)
{
	a->repeat = 50;
	a->warmup = 3;
	a->list = 10;
	int rc = parse_compare(a, "unfused,fused");
	for (int i = 0; i < argc && rc == KILN_EXIT_OK;) {
		const char *arg = argv[i], *value;
		if (arg[0] != '-' || !arg[1]) {
			if (a->model)
				return kiln_cli_usage("bench", "more than one model given ('%s' and '%s')",
				                      a->model, arg);
			a->model = arg;
			i++;
		} else if (kiln_cli_is_help(arg)) {
			fputs(help, stdout);
			return -1;
		} else if (kiln_cli_flag(argv, argc, &i, "--compare", &value)) {
			rc = value ? parse_compare(a, value)
			           : kiln_cli_usage("bench", "--compare needs a variant list (unfused,fused)");
		} else if (kiln_cli_flag(argv, argc, &i, "--threads", &value)) {
			if (!parse_count(value, 1, 1024, &a->threads))
				rc = kiln_cli_usage("bench", "--threads needs a count from 1 to %d, got '%s'",
				                    1024, value ? value : "");
		} else if (kiln_cli_flag(argv, argc, &i, "--repeat", &value)) {
			if (!parse_count(value, 1, 1000000, &a->repeat))
				rc = kiln_cli_usage("bench", "--repeat needs a count from 1 to 1000000, got '%s'",
				                    value ? value : "");
		} else if (kiln_cli_flag(argv, argc, &i, "--warmup", &value)) {
			if (!parse_count(value, 0, 1000000, &a->warmup))
				rc = kiln_cli_usage("bench", "--warmup needs a count from 0 to 1000000, got '%s'",
				                    value ? value : "");
		} else if (kiln_cli_flag(argv, argc, &i, "--kernels", &value)) {
			if (!parse_count(value, 0, 1000000, &a->list))
				rc = kiln_cli_usage("bench", "--kernels needs a count (0: all), got '%s'",
				                    value ? value : "");
		} else if (kiln_cli_flag(argv, argc, &i, "--json", &value)) {
			if (!value || !*value)
				rc = kiln_cli_usage("bench", "--json needs a file name");
			a->json = value;
		} else if (kiln_cli_shape_flag("bench", argv, argc, &i, &a->pins, &rc)) {
			continue;
		} else {
			rc = kiln_cli_usage("bench", "unknown flag '%s'", arg);
		}
	}
	if (rc == KILN_EXIT_OK && !a->model)
		rc = kiln_cli_usage("bench", "no model given");
	return rc;
}

/* ---- progress on a terminal ---- */

typedef struct progress {
	bool tty;
	int done, total;
	const char *variant; /* the one being compiled */
} progress;

static void show(progress *p, const char *what)
{
	if (!p->tty)
		return;
	int width = 30, fill = p->total ? p->done * width / p->total : 0;
	char bar[32];
	for (int i = 0; i < width; i++)
		bar[i] = i < fill ? '#' : '.';
	bar[width] = 0;
	fprintf(stderr, "\r\033[Kkiln bench [%s] %s", bar, what);
	fflush(stderr);
}

static void on_compile(void *user, const char *stage, int done, int total)
{
	(void)done;
	(void)total;
	progress *p = user;
	char what[96];
	snprintf(what, sizeof what, "compiling %s: %s", p->variant, stage);
	show(p, what);
}

/* ---- inputs ---- */

static uint64_t rng = 0x853c49e6748fea9bull;

static double uniform(void)
{
	rng = rng * 6364136223846793005ull + 1442695040888963407ull;
	return (double)(rng >> 11) / 9007199254740992.0;
}

static int dtype_bytes(int dt)
{
	static const int size[] = {4, 2, 2, 8, 8, 4, 1, 1, 1};
	return dt >= 0 && dt < 9 ? size[dt] : 1;
}

/* Floats uniform in [-1, 1) (f16/bf16 as zero bits are fine: 0.0), ints 0/1. */
static void fill(void *data, const kiln_abi_tensor *t)
{
	int64_t n = t->bytes / dtype_bytes(t->dtype);
	for (int64_t i = 0; i < n; i++) {
		double u = uniform();
		switch (t->dtype) {
		case KILN_DT_F32: ((float *)data)[i] = (float)(2 * u - 1); break;
		case KILN_DT_F64: ((double *)data)[i] = 2 * u - 1; break;
		case KILN_DT_I64: ((int64_t *)data)[i] = u < 0.5; break;
		case KILN_DT_I32: ((int32_t *)data)[i] = u < 0.5; break;
		case KILN_DT_F16:
		case KILN_DT_BF16: ((uint16_t *)data)[i] = 0; break;
		default: ((uint8_t *)data)[i] = u < 0.5; break;
		}
	}
}

/* ---- compile, load, run ---- */

/* OpenBLAS's own call (not in every cblas.h). Weak: with another BLAS the
 * openblas variant runs on that BLAS's default threads. */
extern void openblas_set_num_threads(int num_threads) __attribute__((weak));

/* kiln_abi_host.sgemm for the openblas variant. The kernels pass sizes of
 * one matrix (far below INT_MAX elements per dimension in any model that
 * fits in memory) and never an empty one. */
static void blas_sgemm(void *user, int32_t trans_a, int32_t trans_b, int64_t m, int64_t n,
                       int64_t k, float alpha, const float *a, int64_t lda, const float *b,
                       int64_t ldb, float beta, float *c, int64_t ldc)
{
	(void)user;
	cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
	            trans_b ? CblasTrans : CblasNoTrans, (int)m, (int)n, (int)k, alpha, a, (int)lda, b,
	            (int)ldb, beta, c, (int)ldc);
}

static int prepare(bench_args *a, variant *v, const kiln_graph *g, const char *dir, progress *pr)
{
	pr->variant = v->name;
	kiln_compile_opts o = {.opt_level = 2, .passes = v->passes, .progress = on_compile,
	                       .progress_user = pr, .host_gemm = v->host_gemm};
	kiln_diag d;
	kiln_diag_init(&d, a->model);
	kiln_compiled *c = NULL;
	double t0 = now_s();
	char path[600];
	snprintf(path, sizeof path, "%s/%s.so", dir, v->name);
	if (kiln_compile(g, &o, &c, &d) != KILN_OK ||
	    kiln_compiled_emit(c, KILN_EMIT_SO, path, &d) != KILN_OK) {
		kiln_compiled_destroy(c);
		return KILN_EXIT_ERROR;
	}
	v->compile_s = now_s() - t0;
	v->stats = *kiln_compiled_stats(c);
	kiln_compiled_destroy(c);
	char err[512];
	kiln_rt_session_opts so = {.n_threads = a->threads,
	                           .sgemm = v->host_gemm ? blas_sgemm : NULL};
	kiln_rt_status st = kiln_rt_model_load(path, &v->m, err, sizeof err);
	if (st == KILN_RT_OK && (st = kiln_rt_session_create(v->m, &so, &v->s)) != KILN_RT_OK)
		snprintf(err, sizeof err, "cannot create a session: %s", kiln_rt_status_str(st));
	unlink(path); /* dlopen keeps it mapped */
	if (st != KILN_RT_OK) {
		fprintf(stderr, "%s: variant %s: %s\n", a->model, v->name, err);
		return KILN_EXIT_ERROR;
	}
	if (v->host_gemm && openblas_set_num_threads)
		openblas_set_num_threads(kiln_rt_session_n_threads(v->s));
	int nk = kiln_rt_model_n_kernels(v->m), no = kiln_rt_model_n_outputs(v->m);
	for (int k = 0; k < nk; k++)
		v->bytes += kiln_rt_model_kernel(v->m, k)->bytes;
	v->outs = calloc((size_t)no, sizeof *v->outs);
	v->totals = calloc((size_t)a->repeat, sizeof *v->totals);
	v->ktimes = calloc((size_t)(nk ? nk : 1) * (size_t)a->repeat, sizeof *v->ktimes);
	v->prof = calloc((size_t)(nk ? nk : 1), sizeof *v->prof);
	if (!v->outs || !v->totals || !v->ktimes || !v->prof)
		return fprintf(stderr, "%s: out of memory\n", a->model), KILN_EXIT_ERROR;
	for (int i = 0; i < no; i++) {
		int64_t bytes = kiln_rt_model_output(v->m, i)->bytes;
		if (!(v->outs[i] = malloc((size_t)(bytes ? bytes : 1))))
			return fprintf(stderr, "%s: out of memory\n", a->model), KILN_EXIT_ERROR;
	}
	return KILN_EXIT_OK;
}

static int run_once(const bench_args *a, variant *v, const void *const *ins)
{
	if (kiln_rt_session_run_raw(v->s, ins, v->outs) != KILN_RT_OK) {
		fprintf(stderr, "%s: variant %s: %s\n", a->model, v->name, kiln_rt_session_error(v->s));
		return KILN_EXIT_ERROR;
	}
	return KILN_EXIT_OK;
}

/* One round of a variant: warmup, n unprofiled timed runs, n profiled runs. */
static int round_of(const bench_args *a, variant *v, const void *const *ins, int n)
{
	int nk = kiln_rt_model_n_kernels(v->m);
	for (int i = 0; i < a->warmup; i++)
		if (run_once(a, v, ins))
			return KILN_EXIT_ERROR;
	for (int i = 0; i < n; i++) {
		double t0 = now_s();
		if (run_once(a, v, ins))
			return KILN_EXIT_ERROR;
		v->totals[v->n_totals++] = now_s() - t0;
	}
	kiln_rt_session_profile(v->s, v->prof);
	for (int i = 0; i < n; i++) {
		memset(v->prof, 0, sizeof *v->prof * (size_t)(nk ? nk : 1));
		if (run_once(a, v, ins))
			return KILN_EXIT_ERROR;
		for (int k = 0; k < nk; k++)
			v->ktimes[(size_t)k * (size_t)a->repeat + (size_t)v->n_prof] = v->prof[k];
		v->n_prof++;
	}
	kiln_rt_session_profile(v->s, NULL);
	return KILN_EXIT_OK;
}

/* Largest |a - b| over the f32 outputs of two variants (NAN: none compared). */
static double max_diff(const variant *x, const variant *y)
{
	double worst = NAN;
	for (int i = 0; i < kiln_rt_model_n_outputs(x->m); i++) {
		const kiln_abi_tensor *t = kiln_rt_model_output(x->m, i);
		if (t->dtype != KILN_DT_F32)
			continue;
		const float *p = x->outs[i], *q = y->outs[i];
		for (int64_t j = 0; j < t->bytes / 4; j++) {
			double dd = fabs((double)p[j] - (double)q[j]);
			if (isnan(worst) || dd > worst || isnan(dd))
				worst = dd;
		}
	}
	return worst;
}

/* ---- report ---- */

typedef struct krow {
	int k;
	double median;
} krow;

static int cmp_krow(const void *a, const void *b)
{
	const krow *x = a, *y = b;
	return (x->median < y->median) - (x->median > y->median);
}

/* "512 B", "3.1 KB", "6.42 MB" */
static const char *mb(int64_t bytes, char *buf, size_t size)
{
	if (bytes < 1000)
		snprintf(buf, size, "%lld B", (long long)bytes);
	else if (bytes < 1000000)
		snprintf(buf, size, "%.1f KB", (double)bytes / 1e3);
	else
		snprintf(buf, size, "%.2f MB", (double)bytes / 1e6);
	return buf;
}

static void json_str(FILE *f, const char *s)
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

static int report(bench_args *a, double diff)
{
	printf("model: %s, %d thread%s, %d timed runs per variant (%d rounds, alternating)\n\n",
	       a->model, kiln_rt_session_n_threads(a->v[0].s),
	       kiln_rt_session_n_threads(a->v[0].s) == 1 ? "" : "s", a->repeat, ROUNDS);
	printf("| variant | median ms | min ms | p90 ms | speedup | kernels | bytes moved | arena | intermediates | compile s |\n");
	printf("|---|---|---|---|---|---|---|---|---|---|\n");
	double base = 0, med[MAX_VARIANTS], mn[MAX_VARIANTS], p90[MAX_VARIANTS];
	for (int i = 0; i < a->nv; i++) {
		variant *v = &a->v[i];
		mn[i] = quantile(v->totals, v->n_totals, 0.0);
		p90[i] = quantile(v->totals, v->n_totals, 0.9);
		med[i] = quantile(v->totals, v->n_totals, 0.5);
		if (!i)
			base = med[i];
		char b1[32], b2[32], b3[32];
		printf("| %s | %.3f | %.3f | %.3f | %.2fx | %d | %s | %s | %s | %.2f |\n", v->name,
		       med[i] * 1e3, mn[i] * 1e3, p90[i] * 1e3, base / med[i],
		       kiln_rt_model_n_kernels(v->m), mb(v->bytes, b1, sizeof b1),
		       mb(v->stats.arena_bytes, b2, sizeof b2),
		       mb(v->stats.intermediate_bytes, b3, sizeof b3), v->compile_s);
	}
	if (a->nv > 1)
		putchar('\n');
	for (int i = 1; i < a->nv; i++)
		printf("speedup: %s over %s %.2fx; outputs differ by at most %.3g\n", a->v[i].name,
		       a->v[0].name, med[0] / med[i], a->v[i].diff);
	FILE *jf = NULL;
	if (a->json && !(jf = fopen(a->json, "w"))) {
		perror(a->json);
		return KILN_EXIT_ERROR;
	}
	if (jf) {
		fprintf(jf, "{\"model\": ");
		json_str(jf, a->model);
		fprintf(jf, ", \"threads\": %d, \"repeat\": %d, \"max_output_diff\": %.9g, \"variants\": [",
		        kiln_rt_session_n_threads(a->v[0].s), a->repeat, isnan(diff) ? -1.0 : diff);
	}
	for (int i = 0; i < a->nv; i++) {
		variant *v = &a->v[i];
		int nk = kiln_rt_model_n_kernels(v->m);
		krow *rows = calloc((size_t)(nk ? nk : 1), sizeof *rows);
		if (!rows)
			return KILN_EXIT_ERROR;
		double sum = 0;
		for (int k = 0; k < nk; k++) {
			rows[k].k = k;
			rows[k].median = quantile(v->ktimes + (size_t)k * (size_t)a->repeat, v->n_prof, 0.5);
			sum += rows[k].median;
		}
		if (jf) {
			fprintf(jf, "%s{\"name\": \"%s\", \"median_ms\": %.6f, \"min_ms\": %.6f, "
			            "\"p90_ms\": %.6f, \"kernels\": %d, \"bytes_moved\": %lld, "
			            "\"arena_bytes\": %lld, \"intermediate_bytes\": %lld, \"compile_s\": %.3f, "
			            "\"host_gemm\": %s, \"max_output_diff\": %.9g, \"kernel_times\": [",
			        i ? ", " : "", v->name, med[i] * 1e3, mn[i] * 1e3, p90[i] * 1e3, nk,
			        (long long)v->bytes, (long long)v->stats.arena_bytes,
			        (long long)v->stats.intermediate_bytes, v->compile_s,
			        v->host_gemm ? "true" : "false", isnan(v->diff) ? -1.0 : v->diff);
			for (int k = 0; k < nk; k++) {
				const kiln_abi_kernel *ki = kiln_rt_model_kernel(v->m, k);
				fprintf(jf, "%s{\"name\": ", k ? ", " : "");
				json_str(jf, ki->name);
				fprintf(jf, ", \"op\": ");
				json_str(jf, ki->op);
				fprintf(jf, ", \"bytes\": %lld, \"flops\": %lld, \"median_ms\": %.6f}",
				        (long long)ki->bytes, (long long)ki->flops, rows[k].median * 1e3);
			}
			fprintf(jf, "]}");
		}
		qsort(rows, (size_t)nk, sizeof *rows, cmp_krow);
		int shown = a->list && a->list < nk ? a->list : nk;
		printf("\n%s: %d kernels; %s %d, slowest first (medians of %d profiled runs, summing "
		       "to %.3f ms)\n",
		       v->name, nk, shown < nk ? "the top" : "all", shown, v->n_prof, sum * 1e3);
		printf("| # | kernel | op | ms | share | GFLOP/s | GB/s |\n|---|---|---|---|---|---|---|\n");
		for (int r = 0; r < shown; r++) {
			const kiln_abi_kernel *ki = kiln_rt_model_kernel(v->m, rows[r].k);
			double t = rows[r].median;
			printf("| %d | %s | %s | %.3f | %.1f%% | %.1f | %.1f |\n", rows[r].k, ki->name, ki->op,
			       t * 1e3, sum > 0 ? 100 * t / sum : 0, t > 0 ? (double)ki->flops / t / 1e9 : 0,
			       t > 0 ? (double)ki->bytes / t / 1e9 : 0);
		}
		free(rows);
	}
	if (jf) {
		fprintf(jf, "]}\n");
		if (fclose(jf)) {
			perror(a->json);
			return KILN_EXIT_ERROR;
		}
	}
	return KILN_EXIT_OK;
}

static void free_variant(variant *v)
{
	if (v->m)
		for (int i = 0; v->outs && i < kiln_rt_model_n_outputs(v->m); i++)
			free(v->outs[i]);
	free(v->outs);
	free(v->totals);
	free(v->ktimes);
	free(v->prof);
	kiln_rt_session_free(v->s);
	kiln_rt_model_free(v->m);
}

static int bench_main(int argc, char **argv)
{
	bench_args a = {0};
	int rc = parse_args(argc, argv, &a);
	if (rc != KILN_EXIT_OK) {
		kiln_cli_pins_free(&a.pins);
		return rc < 0 ? KILN_EXIT_OK : rc;
	}
	kiln_graph *g = NULL;
	rc = kiln_cli_load("bench", a.model, &a.pins, &g);
	kiln_cli_pins_free(&a.pins);
	if (rc != KILN_EXIT_OK)
		return rc;
	char dir[] = "/tmp/kiln-bench-XXXXXX";
	const char *tmp = getenv("TMPDIR");
	char dirbuf[512];
	snprintf(dirbuf, sizeof dirbuf, "%s/kiln-bench-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	char *dp = mkdtemp(dirbuf);
	if (!dp)
		dp = mkdtemp(dir);
	if (!dp) {
		perror("kiln bench: temporary folder");
		kiln_graph_destroy(g);
		return KILN_EXIT_ERROR;
	}
	progress pr = {.tty = isatty(2), .total = a.nv + ROUNDS};
	for (int i = 0; i < a.nv && rc == KILN_EXIT_OK; i++) {
		rc = prepare(&a, &a.v[i], g, dp, &pr);
		pr.done++;
	}
	kiln_graph_destroy(g);
	rmdir(dp);
	const void **ins = NULL;
	int n_in = rc == KILN_EXIT_OK ? kiln_rt_model_n_inputs(a.v[0].m) : 0;
	if (rc == KILN_EXIT_OK && !(ins = calloc((size_t)(n_in ? n_in : 1), sizeof *ins)))
		rc = KILN_EXIT_ERROR;
	for (int i = 0; i < n_in && rc == KILN_EXIT_OK; i++) {
		const kiln_abi_tensor *t = kiln_rt_model_input(a.v[0].m, i);
		void *p = malloc((size_t)(t->bytes ? t->bytes : 1));
		if (!p) {
			rc = KILN_EXIT_ERROR;
			break;
		}
		fill(p, t);
		ins[i] = p;
	}
	/* rounds alternate the variants, each round starting with the next one */
	for (int r = 0; r < ROUNDS && rc == KILN_EXIT_OK; r++) {
		int n = a.repeat / ROUNDS + (r < a.repeat % ROUNDS);
		for (int j = 0; j < a.nv && rc == KILN_EXIT_OK; j++) {
			variant *v = &a.v[(r + j) % a.nv];
			char what[96];
			snprintf(what, sizeof what, "round %d/%d: %s", r + 1, ROUNDS, v->name);
			show(&pr, what);
			rc = round_of(&a, v, ins, n);
		}
		pr.done++;
	}
	if (pr.tty)
		fprintf(stderr, "\r\033[K");
	double diff = NAN; /* the largest over the variants */
	for (int i = 1; i < a.nv && rc == KILN_EXIT_OK; i++) {
		a.v[i].diff = max_diff(&a.v[0], &a.v[i]);
		if (isnan(diff) || a.v[i].diff > diff || isnan(a.v[i].diff))
			diff = a.v[i].diff;
	}
	if (rc == KILN_EXIT_OK)
		rc = report(&a, diff);
	for (int i = 0; ins && i < n_in; i++)
		free((void *)ins[i]);
	free(ins);
	for (int i = 0; i < a.nv; i++)
		free_variant(&a.v[i]);
	return rc;
}

const kiln_command kiln_cmd_bench = {
	.name = "bench",
	.summary = "time a model compiled unfused and fused, per kernel and in total",
	.help = help,
	.run = bench_main,
};
