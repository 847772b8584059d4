/* bench_gemm.c — kiln-bench-gemm: kiln's f32 GEMM against the machine's
 * FMA peak and OpenBLAS.
 *
 * Measures the single-core FMA peak (bench_peak.c; again at the end, keeping
 * the higher), then for each shape — square sizes and the MatMul / Gemm /
 * conv-as-GEMM shapes read from ONNX models with kiln's importer — builds a
 * one-node MatMul graph (input A [batch,M,K], constant B [batch,K,N]),
 * compiles it in-process (kiln_compile at -O2 for the host CPU, emitted as a
 * .so in a temporary directory), loads it with libkiln_rt and times it on 1
 * and 2 threads; times cblas_sgemm on one OpenBLAS thread on the same data,
 * and checks kiln's result against it.
 * Each time is the median of repeated calls after two warmup calls. Prints a
 * table on stdout (progress on stderr) and, with --json FILE, every number. */
#include "bench.h"
#include "ir.h"
#include "kiln.h"
#include "kiln_rt.h"

#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* OpenBLAS's own calls; not every cblas.h declares them. */
void openblas_set_num_threads(int num_threads);
char *openblas_get_corename(void);

static const char usage[] =
	"usage: kiln-bench-gemm [--sizes N,N,...] [--model FILE.onnx]... [--seconds S]\n"
	"                       [--no-kiln] [--quick] [--json FILE]\n"
	"\n"
	"Prints the single-core f32 FMA peak, then GFLOP/s of kiln (1 and 2 threads)\n"
	"and OpenBLAS (1 thread) for square GEMMs of each --sizes (default\n"
	"256,512,1024,1536,2048) and for every MatMul, Gemm and group-1 Conv (as\n"
	"M=C_out, N=H_out*W_out, K=C_in*kh*kw) in each --model.\n"
	"  --seconds S   time spent per measurement (default 0.3)\n"
	"  --no-kiln     OpenBLAS and the peak only\n"
	"  --quick       sizes 256,512,1024 and --seconds 0.1\n"
	"  --json FILE   also write every number to FILE\n"
	"Exit status: 0 success, 1 a kiln GEMM failed or gave a wrong result, 2 usage.\n";

#define MAX_MODELS 16
#define CHECK_RTOL 1e-4 /* max |kiln - OpenBLAS| over max |OpenBLAS| */

typedef struct options {
	int64_t sizes[32];
	int n_sizes;
	const char *models[MAX_MODELS];
	int n_models;
	double seconds;
	int no_kiln;
	const char *json;
} options;

/* One GEMM shape and what was measured on it; GFLOP/s are 0 when not run. */
typedef struct row {
	char label[96];
	int64_t batch, m, n, k;
	int count; /* occurrences in the model */
	double blas, kiln1, kiln2, compile_s, rel_err;
	char error[256];
} row;

typedef struct rows {
	row *v;
	int n, cap;
} rows;

static row *rows_add(rows *r, const char *label, int64_t batch, int64_t m, int64_t n, int64_t k)
{
	for (int i = 0; i < r->n; i++) {
		row *x = &r->v[i];
		if (!strcmp(x->label, label) && x->batch == batch && x->m == m && x->n == n &&
		    x->k == k) {
			x->count++;
			return x;
		}
	}
	if (r->n == r->cap) {
		int cap = r->cap ? 2 * r->cap : 64;
		row *v = realloc(r->v, (size_t)cap * sizeof *v);
		if (!v)
			return NULL;
		r->v = v;
		r->cap = cap;
	}
	row *x = &r->v[r->n++];
	*x = (row){.batch = batch, .m = m, .n = n, .k = k, .count = 1};
	snprintf(x->label, sizeof x->label, "%s", label);
	return x;
}

/* ---- options --------------------------------------------------------- */

static int usage_error(const char *fmt, const char *arg)
{
	fprintf(stderr, "kiln-bench-gemm: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\n%s", usage);
	return -1;
}

static int parse_sizes(const char *s, options *o)
{
	o->n_sizes = 0;
	while (*s) {
		char *end;
		errno = 0;
		long long v = strtoll(s, &end, 10);
		if (end == s || errno || v < 1 || v > 65536 || (*end && *end != ',') ||
		    o->n_sizes == (int)(sizeof o->sizes / sizeof o->sizes[0]))
			return usage_error("bad --sizes '%s'", s);
		o->sizes[o->n_sizes++] = v;
		s = *end ? end + 1 : end;
	}
	return o->n_sizes ? 0 : usage_error("empty --sizes%s", "");
}

static int parse_args(int argc, char **argv, options *o)
{
	*o = (options){.sizes = {256, 512, 1024, 1536, 2048}, .n_sizes = 5, .seconds = 0.3};
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *val = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			fputs(usage, stdout);
			exit(0);
		} else if (!strcmp(a, "--no-kiln")) {
			o->no_kiln = 1;
		} else if (!strcmp(a, "--quick")) {
			o->sizes[0] = 256, o->sizes[1] = 512, o->sizes[2] = 1024;
			o->n_sizes = 3;
			o->seconds = 0.1;
		} else if (!val && (!strcmp(a, "--sizes") || !strcmp(a, "--model") ||
		                    !strcmp(a, "--seconds") || !strcmp(a, "--json"))) {
			return usage_error("%s needs a value", a);
		} else if (!strcmp(a, "--sizes")) {
			if (parse_sizes(argv[++i], o))
				return -1;
		} else if (!strcmp(a, "--model")) {
			if (o->n_models == MAX_MODELS)
				return usage_error("more than 16 --model flags at '%s'", val);
			o->models[o->n_models++] = argv[++i];
		} else if (!strcmp(a, "--seconds")) {
			char *end;
			o->seconds = strtod(argv[++i], &end);
			if (*end || !(o->seconds > 0 && o->seconds <= 60))
				return usage_error("bad --seconds '%s'", val);
		} else if (!strcmp(a, "--json")) {
			o->json = argv[++i];
		} else {
			return usage_error("unexpected argument '%s'", a);
		}
	}
	return 0;
}

/* ---- GEMM shapes of a model ------------------------------------------ */

static void quiet(void *user, const char *msg)
{
	(void)user;
	(void)msg;
}

/* "dir/resnet18.onnx" -> "resnet18" */
static void model_stem(const char *path, char *out, size_t size)
{
	const char *base = strrchr(path, '/');
	base = base ? base + 1 : path;
	size_t len = strcspn(base, ".");
	snprintf(out, size, "%.*s", (int)len, base);
}

static int add_node_shape(rows *r, const char *stem, const kiln_node *n, kiln_diag *d)
{
	if (n->op != KILN_OP_MATMUL && n->op != KILN_OP_GEMM && n->op != KILN_OP_CONV)
		return 0;
	const kiln_type *a = &n->inputs[0]->type, *b = &n->inputs[1]->type;
	const kiln_type *y = &n->outputs[0]->type;
	int64_t batch = 1, m, nn, k;
	if (n->op == KILN_OP_MATMUL) {
		m = a->rank >= 2 ? a->dims[a->rank - 2] : 1;
		k = a->dims[a->rank - 1];
		nn = b->rank >= 2 ? b->dims[b->rank - 1] : 1;
		batch = m && nn ? kiln_type_numel(y) / (m * nn) : 1;
	} else if (n->op == KILN_OP_GEMM) {
		int ta = kiln_node_int(n, "transA", 0) != 0, tb = kiln_node_int(n, "transB", 0) != 0;
		m = a->dims[ta], k = a->dims[1 - ta], nn = b->dims[1 - tb];
	} else {
		kiln_window w;
		if (kiln_window_resolve(n, &w, d) != KILN_OK)
			return -1;
		if (w.group != 1)
			return 0; /* depthwise and grouped convolutions are not one GEMM */
		m = w.out_c, nn = 1, k = w.in_c, batch = w.batch;
		for (int i = 0; i < w.nspatial; i++)
			nn *= w.out[i], k *= w.kernel[i];
	}
	char label[96];
	snprintf(label, sizeof label, "%s %s", stem, kiln_op_name(n->op));
	return rows_add(r, label, batch, m, nn, k) ? 0 : -1;
}

static int add_model_shapes(rows *r, const char *path)
{
	kiln_diag d;
	kiln_diag_init(&d, path);
	kiln_graph *g = NULL;
	kiln_import_opts opts = {0};
	if (kiln_import_onnx(path, &opts, &g, &d) != KILN_OK) {
		kiln_graph_destroy(g);
		return -1;
	}
	char stem[64];
	model_stem(path, stem, sizeof stem);
	int rc = 0;
	for (int i = 0; i < g->n_nodes && !rc; i++)
		rc = add_node_shape(r, stem, g->nodes[i], &d);
	kiln_graph_destroy(g);
	return rc;
}

/* ---- timing ---------------------------------------------------------- */

typedef int (*run_fn)(void *arg);

/* Median seconds of fn: two warmup calls, then enough calls to fill about
 * `seconds` (at least 5, at most 10000). -1 if fn fails. */
static double time_median(run_fn fn, void *arg, double seconds)
{
	if (fn(arg))
		return -1;
	double t0 = kiln_bench_now();
	if (fn(arg))
		return -1;
	double once = kiln_bench_now() - t0;
	int reps = once * 10000 > seconds ? (int)(seconds / once) : 10000;
	reps = reps < 5 ? 5 : reps;
	double *t = malloc((size_t)reps * sizeof *t);
	if (!t)
		return -1;
	for (int i = 0; i < reps; i++) {
		double s = kiln_bench_now();
		if (fn(arg)) {
			free(t);
			return -1;
		}
		t[i] = kiln_bench_now() - s;
	}
	kiln_bench_stats st;
	kiln_bench_stats_of(t, reps, &st);
	free(t);
	return st.median;
}

typedef struct gemm_data {
	const row *r;
	float *a, *b, *ref, *out;
} gemm_data;

static int run_blas(void *arg)
{
	const gemm_data *g = arg;
	const row *r = g->r;
	for (int64_t i = 0; i < r->batch; i++)
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)r->m, (int)r->n,
		            (int)r->k, 1.0f, g->a + i * r->m * r->k, (int)r->k,
		            g->b + i * r->k * r->n, (int)r->n, 0.0f, g->ref + i * r->m * r->n,
		            (int)r->n);
	return 0;
}

typedef struct kiln_run {
	kiln_rt_session_t *s;
	const void *in[1];
	void *out[1];
} kiln_run;

static int run_kiln(void *arg)
{
	kiln_run *k = arg;
	return kiln_rt_session_run_raw(k->s, k->in, k->out) != KILN_RT_OK;
}

/* ---- kiln ------------------------------------------------------------ */

/* Compiles Y = A x B (B constant) for r's shape into the .so at path. */
static kiln_status compile_gemm(const row *r, const float *b, const char *path, kiln_diag *d)
{
	kiln_graph *g = kiln_graph_create("gemm", NULL);
	if (!g)
		return KILN_ERR_OOM;
	int rank = r->batch > 1 ? 3 : 2, o = rank - 2;
	kiln_type ta = {.dtype = KILN_DT_F32, .rank = rank}, tb = ta;
	ta.dims[0] = tb.dims[0] = r->batch;
	ta.dims[o] = r->m, ta.dims[o + 1] = r->k;
	tb.dims[o] = r->k, tb.dims[o + 1] = r->n;
	kiln_value *in[2] = {kiln_graph_add_input(g, "a", &ta), kiln_graph_add_const(g, "b", &tb, b)};
	kiln_node *n = in[0] && in[1] ? kiln_graph_add_node(g, KILN_OP_MATMUL, "matmul", in, 2,
	                                                      (const char *const[]){"y"}, 1)
	                              : NULL;
	kiln_status s = n ? kiln_graph_add_output(g, n->outputs[0]) : KILN_ERR_OOM;
	if (s == KILN_OK)
		s = kiln_infer_shapes(g, d);
	if (s == KILN_OK)
		s = kiln_graph_verify(g, d);
	kiln_compiled *c = NULL;
	kiln_compile_opts opts = {.opt_level = 2};
	if (s == KILN_OK)
		s = kiln_compile(g, &opts, &c, d);
	if (s == KILN_OK)
		s = kiln_compiled_emit(c, KILN_EMIT_SO, path, d);
	kiln_compiled_destroy(c);
	kiln_graph_destroy(g);
	return s;
}

/* Times model m on `threads` threads; returns seconds or -1 (error in r). */
static double time_kiln(row *r, const kiln_rt_model_t *m, gemm_data *g, int threads,
                        double seconds)
{
	kiln_rt_session_t *s = NULL;
	kiln_rt_session_opts so = {.n_threads = threads};
	kiln_rt_status st = kiln_rt_session_create(m, &so, &s);
	if (st != KILN_RT_OK) {
		snprintf(r->error, sizeof r->error, "session (%d threads): %s", threads,
		         kiln_rt_status_str(st));
		return -1;
	}
	kiln_run k = {.s = s, .in = {g->a}, .out = {g->out}};
	double t = time_median(run_kiln, &k, seconds);
	if (t < 0)
		snprintf(r->error, sizeof r->error, "run (%d threads): %s", threads,
		         kiln_rt_session_error(s));
	kiln_rt_session_free(s);
	return t;
}

static double max_rel_err(const float *got, const float *want, int64_t n)
{
	double diff = 0, scale = 0;
	for (int64_t i = 0; i < n; i++) {
		double e = fabs((double)got[i] - want[i]);
		diff = e > diff || isnan(e) ? e : diff;
		scale = fabs(want[i]) > scale ? fabs(want[i]) : scale;
	}
	return scale > 0 ? diff / scale : diff;
}

static void bench_kiln(row *r, gemm_data *g, const char *so_path, double seconds)
{
	kiln_diag d;
	kiln_diag_init(&d, "gemm");
	d.fn = quiet;
	double t0 = kiln_bench_now();
	if (compile_gemm(r, g->b, so_path, &d) != KILN_OK) {
		snprintf(r->error, sizeof r->error, "compile: %.240s", d.last);
		return;
	}
	r->compile_s = kiln_bench_now() - t0;
	kiln_rt_model_t *m = NULL;
	char err[256];
	if (kiln_rt_model_load(so_path, &m, err, sizeof err) != KILN_RT_OK) {
		snprintf(r->error, sizeof r->error, "load: %.240s", err);
		unlink(so_path);
		return;
	}
	double flops = 2.0 * (double)(r->batch * r->m) * (double)(r->n * r->k);
	double t1 = time_kiln(r, m, g, 1, seconds);
	if (t1 > 0) {
		r->kiln1 = flops / t1 * 1e-9;
		r->rel_err = max_rel_err(g->out, g->ref, r->batch * r->m * r->n);
		if (!(r->rel_err <= CHECK_RTOL))
			snprintf(r->error, sizeof r->error,
			         "wrong result: max |kiln - OpenBLAS| / max |OpenBLAS| = %.3g", r->rel_err);
		double t2 = time_kiln(r, m, g, 2, seconds);
		r->kiln2 = t2 > 0 ? flops / t2 * 1e-9 : 0;
	}
	kiln_rt_model_free(m);
	unlink(so_path);
}

/* ---- one shape, all columns ------------------------------------------ */

static float *alloc_random(int64_t n, uint64_t *state)
{
	float *p = malloc((size_t)(n ? n : 1) * sizeof *p);
	if (p)
		kiln_bench_fill(p, KILN_DT_F32, n, state);
	return p;
}

static int bench_row(row *r, const options *o, const char *so_path)
{
	uint64_t state = 42;
	gemm_data g = {
		.r = r,
		.a = alloc_random(r->batch * r->m * r->k, &state),
		.b = alloc_random(r->batch * r->k * r->n, &state),
		.ref = alloc_random(r->batch * r->m * r->n, &state),
		.out = alloc_random(r->batch * r->m * r->n, &state),
	};
	int rc = -1;
	if (g.a && g.b && g.ref && g.out) {
		double flops = 2.0 * (double)(r->batch * r->m) * (double)(r->n * r->k);
		r->blas = flops / time_median(run_blas, &g, o->seconds) * 1e-9;
		if (!o->no_kiln)
			bench_kiln(r, &g, so_path, o->seconds);
		rc = 0;
	}
	free(g.a);
	free(g.b);
	free(g.ref);
	free(g.out);
	return rc;
}

/* ---- output ---------------------------------------------------------- */

/* The widest ISA's peak (kiln's % of peak is against it) and, on AVX-512
 * machines, the AVX2 peak too: a BLAS built without AVX-512 kernels is
 * bounded by that one. */
typedef struct peaks {
	const char *isa;
	double gflops, avx2;
} peaks;

/* Keeps the best of this and earlier measurements: a busy machine only ever
 * lowers the number, so measuring before and after the shapes and keeping
 * the maximum protects the % of peak from one noisy moment. */
static void measure_peaks(peaks *p)
{
	double g = kiln_bench_fma_peak(p->isa, 1.0);
	p->gflops = g > p->gflops ? g : p->gflops;
	if (!strcmp(p->isa, "avx512f")) {
		g = kiln_bench_fma_peak("avx2", 0.5);
		p->avx2 = g > p->avx2 ? g : p->avx2;
	}
}

static void print_gflops(double v)
{
	if (v > 0)
		printf(" %9.1f", v);
	else
		printf(" %9s", "-");
}

static void print_table(const rows *r, const peaks *p)
{
	double peak = p->gflops;
	printf("single-core f32 FMA peak: %.1f GFLOP/s (%s)", peak, p->isa);
	if (p->avx2 > 0)
		printf(", %.1f GFLOP/s with AVX2", p->avx2);
	printf("; OpenBLAS core: %s\n\n", openblas_get_corename());
	printf("%-24s %5s %5s %6s %5s %9s %9s %9s %7s\n", "shape", "batch", "M", "N", "K",
	       "kiln 1T", "kiln 2T", "BLAS 1T", "% peak");
	for (int i = 0; i < r->n; i++) {
		const row *x = &r->v[i];
		char label[128];
		if (x->count > 1)
			snprintf(label, sizeof label, "%s x%d", x->label, x->count);
		else
			snprintf(label, sizeof label, "%s", x->label);
		printf("%-24s %5lld %5lld %6lld %5lld", label, (long long)x->batch, (long long)x->m,
		       (long long)x->n, (long long)x->k);
		print_gflops(x->kiln1);
		print_gflops(x->kiln2);
		print_gflops(x->blas);
		if (x->kiln1 > 0)
			printf(" %6.1f%%", 100 * x->kiln1 / peak);
		else
			printf(" %7s", "-");
		if (x->error[0])
			printf("  %s", x->error);
		printf("\n");
	}
	printf("(GFLOP/s; BLAS is OpenBLAS on one thread; %% peak is kiln 1T over the peak)\n");
}

static void json_number(FILE *f, const char *key, double v)
{
	if (v > 0 && isfinite(v))
		fprintf(f, ", \"%s\": %.6g", key, v);
	else
		fprintf(f, ", \"%s\": null", key);
}

static int write_json(const char *path, const rows *r, const peaks *p)
{
	double peak = p->gflops;
	FILE *f = fopen(path, "w");
	if (!f) {
		fprintf(stderr, "kiln-bench-gemm: %s: %s\n", path, strerror(errno));
		return -1;
	}
	fprintf(f, "{\"peak_gflops\": %.6g, \"isa\": ", peak);
	kiln_bench_json_string(f, p->isa);
	json_number(f, "avx2_peak_gflops", p->avx2);
	fprintf(f, ", \"openblas_core\": ");
	kiln_bench_json_string(f, openblas_get_corename());
	fprintf(f, ", \"rows\": [");
	for (int i = 0; i < r->n; i++) {
		const row *x = &r->v[i];
		fprintf(f, "%s\n  {\"label\": ", i ? "," : "");
		kiln_bench_json_string(f, x->label);
		fprintf(f, ", \"count\": %d, \"batch\": %lld, \"m\": %lld, \"n\": %lld, \"k\": %lld",
		        x->count, (long long)x->batch, (long long)x->m, (long long)x->n,
		        (long long)x->k);
		json_number(f, "kiln_1t_gflops", x->kiln1);
		json_number(f, "kiln_2t_gflops", x->kiln2);
		json_number(f, "openblas_1t_gflops", x->blas);
		json_number(f, "kiln_pct_peak", x->kiln1 > 0 ? 100 * x->kiln1 / peak : 0);
		json_number(f, "compile_s", x->compile_s);
		json_number(f, "max_rel_err", x->rel_err);
		fprintf(f, ", \"error\": ");
		if (x->error[0])
			kiln_bench_json_string(f, x->error);
		else
			fprintf(f, "null");
		fprintf(f, "}");
	}
	fprintf(f, "\n]}\n");
	if (fclose(f)) {
		fprintf(stderr, "kiln-bench-gemm: %s: write failed\n", path);
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	options o;
	if (parse_args(argc, argv, &o))
		return 2;
	openblas_set_num_threads(1);
	rows r = {0};
	int rc = 0;
	for (int i = 0; i < o.n_sizes; i++) {
		char label[32];
		snprintf(label, sizeof label, "square %lld", (long long)o.sizes[i]);
		if (!rows_add(&r, label, 1, o.sizes[i], o.sizes[i], o.sizes[i]))
			rc = 1;
	}
	for (int i = 0; i < o.n_models && !rc; i++)
		if (add_model_shapes(&r, o.models[i]))
			rc = 1;
	char dir[] = "/tmp/kiln-bench-gemm-XXXXXX";
	if (!rc && !o.no_kiln && !mkdtemp(dir)) {
		fprintf(stderr, "kiln-bench-gemm: cannot create a temporary directory: %s\n",
		        strerror(errno));
		rc = 1;
	}
	if (rc) {
		free(r.v);
		return 1;
	}

	fprintf(stderr, "kiln-bench-gemm: measuring the FMA peak\n");
	peaks p = {.isa = kiln_bench_widest_isa()};
	measure_peaks(&p);
	for (int i = 0; i < r.n; i++) {
		row *x = &r.v[i];
		/* A fresh name for each: a reused path could find the old one still mapped. */
		char so_path[sizeof dir + 32];
		snprintf(so_path, sizeof so_path, "%s/gemm%d.so", dir, i);
		fprintf(stderr, "kiln-bench-gemm: [%d/%d] %s: %lldx%lldx%lld%s\n", i + 1, r.n, x->label,
		        (long long)x->m, (long long)x->n, (long long)x->k,
		        x->batch > 1 ? " (batched)" : "");
		if (bench_row(x, &o, so_path)) {
			fprintf(stderr, "kiln-bench-gemm: out of memory\n");
			rc = 1;
			break;
		}
		if (x->error[0]) {
			fprintf(stderr, "kiln-bench-gemm: %s: %s\n", x->label, x->error);
			rc = 1;
		}
	}
	if (!o.no_kiln)
		rmdir(dir);
	fprintf(stderr, "kiln-bench-gemm: measuring the FMA peak again\n");
	measure_peaks(&p);
	print_table(&r, &p);
	if (o.json && write_json(o.json, &r, &p))
		rc = 1;
	free(r.v);
	return rc;
}
