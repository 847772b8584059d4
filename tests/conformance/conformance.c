/* conformance.c — kiln-conformance: runs the ONNX backend node tests through
 * kiln's ONNX importer and reference interpreter and checks the results.
 *
 *   kiln-conformance DATA_DIR [--expected FILE] [--filter SUBSTR] [--list]
 *                    [--no-fork] [-v] [--shard K/N]
 *                    [--compiled [-O N] [--cpu CPU] [--threads N]]
 *
 * DATA_DIR holds one folder per test (gen_node_tests.py writes it):
 * model.onnx, test_data_set_N/input_K.pb and output_K.pb, or a file
 * UNSUPPORTED when the test has non-tensor values.
 *
 * kiln compiles for static shapes, so every int64 input (in these tests the
 * shape-determining ones: Reshape's shape, Slice's starts, Expand's shape,
 * ...) is bound to its test data at import time and becomes a constant;
 * the remaining inputs are fed to the interpreter. When the import says some
 * other input "must be a compile-time constant" (Resize's float scales), that
 * input is bound too and the import retried.
 *
 * Each test runs in a forked child, so a crash, a sanitizer report, a leak
 * (LeakSanitizer runs when the child exits) or a hang fails that one test
 * instead of the whole run. Each test has its own diagnostics sink.
 *
 * With --compiled each test is also compiled (kiln_compile, at -O N for
 * --cpu CPU, default -O2 native) to a shared object in a temporary folder,
 * loaded and run through libkiln_rt with --threads threads (default 2), and
 * passes only if the compiled outputs match the test's expected outputs (the
 * same ONNX tolerance) and the interpreter's (f32 and wider: rtol 1e-4,
 * atol 1e-5; f16/bf16: rtol 1e-2, atol 1e-3; integers exactly).
 *
 * Results: passed; unsupported (import, run or tensor read returned
 * KILN_ERR_UNSUPPORTED, or non-tensor values); failed (anything else).
 * With --expected FILE the exit status is non-zero when a listed test did not
 * pass. --list prints the passing tests to stdout (the report goes to stderr),
 * the format of expected_pass.txt. */
#include "ir.h"
#include "kiln_rt.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

enum { TEST_TIMEOUT_S = 120, MAX_TENSORS = 64 };
static const double RTOL = 1e-3, ATOL = 1e-7; /* what ONNX's backend tests use */

typedef enum result { RES_PASS, RES_FAIL, RES_UNSUPPORTED, RES_COUNT } result;
static const char *const result_names[RES_COUNT] = { "PASS", "FAIL", "UNSUPPORTED" };

typedef struct outcome {
	result res;
	char reason[1024];
} outcome;

typedef struct options {
	const char *data_dir;
	const char *expected;
	const char *filter;
	bool list;
	bool fork;
	bool verbose;
	int shard, n_shards; /* run only tests whose name hashes to shard */
	bool compiled;
	int opt_level;
	const char *cpu;
	int threads;
} options;

/* ---- small helpers --------------------------------------------------- */

static bool path_exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

typedef struct str_list {
	char **v;
	int n, cap;
} str_list;

static bool str_list_push(str_list *l, const char *s)
{
	if (l->n == l->cap) {
		int cap = l->cap ? 2 * l->cap : 64;
		char **v = realloc(l->v, (size_t)cap * sizeof *v);
		if (!v)
			return false;
		l->v = v;
		l->cap = cap;
	}
	char *copy = strdup(s);
	if (!copy)
		return false;
	l->v[l->n++] = copy;
	return true;
}

static void str_list_free(str_list *l)
{
	for (int i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	memset(l, 0, sizeof *l);
}

static bool str_list_has(const str_list *l, const char *s)
{
	return l->n && bsearch(&s, l->v, (size_t)l->n, sizeof *l->v, cmp_str);
}

static void set_outcome(outcome *o, result r, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* The reason is kept to one line: multi-line diagnostics are joined by "; ". */
static void set_outcome(outcome *o, result r, const char *fmt, ...)
{
	char text[sizeof o->reason];
	o->res = r;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof text, fmt, ap);
	va_end(ap);
	size_t len = 0;
	for (const char *p = text; *p && len + 3 < sizeof o->reason; p++) {
		if (*p != '\n') {
			o->reason[len++] = *p;
			continue;
		}
		while (p[1] == ' ' || p[1] == '\t')
			p++;
		if (p[1]) {
			if (len && o->reason[len - 1] != ':')
				o->reason[len++] = ';';
			o->reason[len++] = ' ';
		}
	}
	o->reason[len] = '\0';
}

/* ---- diagnostics: the first error of a test is its reason ------------- */

typedef struct capture {
	kiln_diag *d;
	int seen_errors;
	char first[1024];
	bool verbose;
} capture;

static void capture_fn(void *user, const char *msg)
{
	capture *c = user;
	if (c->d->n_errors > c->seen_errors && !c->first[0])
		snprintf(c->first, sizeof c->first, "%s", msg);
	c->seen_errors = c->d->n_errors;
	if (c->verbose)
		fprintf(stderr, "    diag: %s\n", msg);
}

/* Records a kiln failure: unsupported stays unsupported, the rest fails. */
static void kiln_failure(outcome *o, const capture *c, kiln_status s, const char *what)
{
	set_outcome(o, s == KILN_ERR_UNSUPPORTED ? RES_UNSUPPORTED : RES_FAIL, "%s: %s: %s",
	            what, kiln_status_str(s), c->first[0] ? c->first : "(no diagnostic)");
}

/* ---- comparison ------------------------------------------------------- */

static double elem_f64(const kiln_tensor *t, int64_t i)
{
	switch (t->type.dtype) {
	case KILN_DT_F32: return ((const float *)t->data)[i];
	case KILN_DT_F64: return ((const double *)t->data)[i];
	case KILN_DT_F16: return kiln_f16_to_f32(((const uint16_t *)t->data)[i]);
	case KILN_DT_BF16: return kiln_bf16_to_f32(((const uint16_t *)t->data)[i]);
	default: return 0;
	}
}

static int64_t elem_i64(const kiln_tensor *t, int64_t i)
{
	switch (t->type.dtype) {
	case KILN_DT_I64: return ((const int64_t *)t->data)[i];
	case KILN_DT_I32: return ((const int32_t *)t->data)[i];
	case KILN_DT_I8: return ((const int8_t *)t->data)[i];
	case KILN_DT_U8: return ((const uint8_t *)t->data)[i];
	case KILN_DT_BOOL: return ((const uint8_t *)t->data)[i];
	default: return 0;
	}
}

/* |got - exp| <= atol + rtol * |exp|, NaN matches NaN, infinities match
 * themselves (numpy.testing.assert_allclose). */
static bool close_enough(double exp, double got, double rtol, double atol)
{
	if (isnan(exp) || isnan(got))
		return isnan(exp) && isnan(got);
	if (isinf(exp) || isinf(got))
		return exp == got;
	return fabs(got - exp) <= atol + rtol * fabs(exp);
}

/* Writes "[i,j,k]" for flat index i of type t. */
static void index_str(const kiln_type *t, int64_t flat, char *buf, size_t size)
{
	int64_t idx[KILN_MAX_RANK];
	for (int a = t->rank - 1; a >= 0; a--) {
		idx[a] = t->dims[a] ? flat % t->dims[a] : 0;
		flat = t->dims[a] ? flat / t->dims[a] : 0;
	}
	size_t len = (size_t)snprintf(buf, size, "[");
	for (int a = 0; a < t->rank && len < size; a++)
		len += (size_t)snprintf(buf + len, size - len, "%s%lld", a ? "," : "",
		                        (long long)idx[a]);
	if (len < size)
		snprintf(buf + len, size - len, "]");
}

/* Returns true if got matches exp; otherwise explains the first mismatch. */
static bool compare_tol(const kiln_tensor *exp, const kiln_tensor *got, double rtol,
                        double atol, char *why, size_t size)
{
	char te[128], tg[128];
	if (!kiln_type_equal(&exp->type, &got->type)) {
		snprintf(why, size, "expected %s, got %s",
		         kiln_type_str(&exp->type, te, sizeof te),
		         kiln_type_str(&got->type, tg, sizeof tg));
		return false;
	}
	bool is_float = kiln_dtype_is_float(exp->type.dtype);
	int64_t n = kiln_type_numel(&exp->type), bad = 0, first = -1;
	for (int64_t i = 0; i < n; i++) {
		bool ok = is_float ? close_enough(elem_f64(exp, i), elem_f64(got, i), rtol, atol)
		                   : elem_i64(exp, i) == elem_i64(got, i);
		if (!ok && bad++ == 0)
			first = i;
	}
	if (!bad)
		return true;
	char at[KILN_MAX_RANK * 24 + 3];
	index_str(&exp->type, first, at, sizeof at);
	if (is_float)
		snprintf(why, size, "%lld of %lld elements differ; first at %s: expected %.9g, got %.9g",
		         (long long)bad, (long long)n, at, elem_f64(exp, first), elem_f64(got, first));
	else
		snprintf(why, size, "%lld of %lld elements differ; first at %s: expected %lld, got %lld",
		         (long long)bad, (long long)n, at, (long long)elem_i64(exp, first),
		         (long long)elem_i64(got, first));
	return false;
}

static bool compare(const kiln_tensor *exp, const kiln_tensor *got, char *why, size_t size)
{
	return compare_tol(exp, got, RTOL, ATOL, why, size);
}

/* Compiled against interpreted: the backend's documented tolerance. */
static bool compare_compiled(const kiln_tensor *interp, const kiln_tensor *got, char *why,
                             size_t size)
{
	kiln_dtype dt = interp->type.dtype;
	if (dt == KILN_DT_F16 || dt == KILN_DT_BF16)
		return compare_tol(interp, got, 1e-2, 1e-3, why, size);
	return compare_tol(interp, got, 1e-4, 1e-5, why, size);
}

/* ---- one test --------------------------------------------------------- */

typedef struct tensor_set {
	int n;
	kiln_tensor t[MAX_TENSORS];
	char *name[MAX_TENSORS];
} tensor_set;

static void tensor_set_free(tensor_set *s)
{
	for (int i = 0; i < s->n; i++) {
		free(s->t[i].data);
		free(s->name[i]);
	}
	s->n = 0;
}

/* Reads PREFIX_0.pb, PREFIX_1.pb, ... from dir until one is missing. */
static bool read_tensors(const char *dir, const char *prefix, tensor_set *s, capture *c,
                         outcome *o)
{
	char path[4096];
	for (int j = 0;; j++) {
		snprintf(path, sizeof path, "%s/%s_%d.pb", dir, prefix, j);
		if (!path_exists(path))
			return true;
		if (s->n == MAX_TENSORS) {
			set_outcome(o, RES_FAIL, "more than %d %s files", MAX_TENSORS, prefix);
			return false;
		}
		kiln_tensor t = { 0 };
		char *name = NULL;
		/* Messages about this file name it, not the model. */
		const char *model_file = c->d->file;
		c->d->file = strrchr(path, '/') + 1;
		kiln_status st = kiln_onnx_read_tensor(path, &t, &name, c->d);
		c->d->file = model_file;
		if (st != KILN_OK) {
			kiln_failure(o, c, st, "reading test data");
			free(t.data);
			free(name);
			return false;
		}
		s->t[s->n] = t;
		s->name[s->n] = name;
		s->n++;
	}
}

/* Finds the test input feeding graph input `name`: by name, which the data
 * files carry (gen_node_tests.py names them after the graph inputs). */
static int find_input(const tensor_set *ins, const char *name)
{
	for (int j = 0; j < ins->n; j++)
		if (ins->name[j] && strcmp(ins->name[j], name) == 0)
			return j;
	return -1;
}

/* When the import failed because an input "must be a compile-time constant"
 * (a float shape input such as Resize's scales), returns the index of that
 * input's test data so the caller binds it too, as a user would; else -1. */
static int constant_input_wanted(const char *msg, const tensor_set *ins)
{
	const char *tail = strstr(msg, "') must be a compile-time constant");
	if (!tail)
		return -1;
	const char *head = tail;
	while (head > msg && !(head[-1] == '(' && head[0] == '\''))
		head--;
	if (head == msg)
		return -1;
	size_t len = (size_t)(tail - head - 1);
	for (int j = 0; j < ins->n; j++)
		if (ins->name[j] && strlen(ins->name[j]) == len && !strncmp(ins->name[j], head + 1, len))
			return j;
	return -1;
}

/* ---- the compiled path -------------------------------------------------- */

static void remove_tree(const char *dir)
{
	DIR *dh = opendir(dir);
	if (dh) {
		struct dirent *e;
		char path[4600];
		while ((e = readdir(dh)))
			if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
				snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
				unlink(path);
			}
		closedir(dh);
	}
	rmdir(dir);
}

/* Compiles g, runs it on feed through the runtime, compares with the test's
 * expected outputs and the interpreter's. */
static void run_compiled(const options *opt, const kiln_graph *g, const kiln_tensor *feed,
                         const tensor_set *outs, const kiln_interp *it, capture *c, outcome *o)
{
	kiln_compile_opts co = { .opt_level = opt->opt_level, .cpu = opt->cpu };
	kiln_compiled *cc = NULL;
	kiln_rt_model_t *m = NULL;
	kiln_rt_session_t *s = NULL;
	kiln_rt_tensor rin[MAX_TENSORS], rout[MAX_TENSORS];
	kiln_tensor got[MAX_TENSORS];
	memset(got, 0, sizeof got);
	const char *tmp = getenv("TMPDIR");
	char dir[4096], so[4200], err[1024];
	snprintf(dir, sizeof dir, "%s/kiln-conf-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(dir)) {
		set_outcome(o, RES_FAIL, "mkdtemp: %s", strerror(errno));
		return;
	}
	snprintf(so, sizeof so, "%s/model.so", dir);
	kiln_status st = kiln_compile(g, &co, &cc, c->d);
	if (st == KILN_OK)
		st = kiln_compiled_emit(cc, KILN_EMIT_SO, so, c->d);
	if (st != KILN_OK) {
		kiln_failure(o, c, st, "compile");
		goto done;
	}
	if (kiln_rt_model_load(so, &m, err, sizeof err) != KILN_RT_OK) {
		set_outcome(o, RES_FAIL, "runtime load: %s", err);
		goto done;
	}
	kiln_rt_session_opts so_opts = { .n_threads = opt->threads };
	if (kiln_rt_session_create(m, &so_opts, &s) != KILN_RT_OK) {
		set_outcome(o, RES_FAIL, "runtime session could not be created");
		goto done;
	}
	if (g->n_inputs > MAX_TENSORS || g->n_outputs > MAX_TENSORS) {
		set_outcome(o, RES_FAIL, "too many inputs or outputs");
		goto done;
	}
	for (int i = 0; i < g->n_inputs; i++) {
		rin[i] = (kiln_rt_tensor){ .dtype = (int32_t)feed[i].type.dtype,
		                           .rank = feed[i].type.rank, .data = feed[i].data };
		memcpy(rin[i].dims, feed[i].type.dims, sizeof rin[i].dims);
	}
	for (int i = 0; i < g->n_outputs; i++) {
		got[i].type = g->outputs[i]->type;
		got[i].data = malloc(kiln_type_bytes(&got[i].type) + 1);
		if (!got[i].data) {
			set_outcome(o, RES_FAIL, "out of memory");
			goto done;
		}
		memset(got[i].data, 0xa5, kiln_type_bytes(&got[i].type));
		rout[i] = (kiln_rt_tensor){ .dtype = (int32_t)got[i].type.dtype,
		                            .rank = got[i].type.rank, .data = got[i].data };
		memcpy(rout[i].dims, got[i].type.dims, sizeof rout[i].dims);
	}
	if (kiln_rt_session_run(s, rin, g->n_inputs, rout, g->n_outputs) != KILN_RT_OK) {
		set_outcome(o, RES_FAIL, "runtime run: %s", kiln_rt_session_error(s));
		goto done;
	}
	for (int j = 0; j < g->n_outputs; j++) {
		char why[512];
		if (!compare(&outs->t[j], &got[j], why, sizeof why)) {
			set_outcome(o, RES_FAIL, "compiled output %d '%s' vs expected: %s", j,
			            outs->name[j] ? outs->name[j] : "", why);
			goto done;
		}
		if (!compare_compiled(kiln_interp_output(it, j), &got[j], why, sizeof why)) {
			set_outcome(o, RES_FAIL, "compiled output %d '%s' vs interpreter: %s", j,
			            outs->name[j] ? outs->name[j] : "", why);
			goto done;
		}
	}
	o->res = RES_PASS;
done:
	for (int i = 0; i < MAX_TENSORS; i++)
		free(got[i].data);
	if (s)
		kiln_rt_session_free(s);
	kiln_rt_model_free(m);
	kiln_compiled_destroy(cc);
	remove_tree(dir);
}

static void run_data_set(const options *opt, const char *model, const char *set_dir,
                         capture *c, outcome *o)
{
	tensor_set ins = { 0 }, outs = { 0 };
	kiln_input_binding bindings[MAX_TENSORS];
	kiln_graph *g = NULL;
	kiln_interp *it = NULL;
	kiln_tensor *feed = NULL;

	if (!read_tensors(set_dir, "input", &ins, c, o) ||
	    !read_tensors(set_dir, "output", &outs, c, o))
		goto done;

	int n_bind = 0;
	for (int j = 0; j < ins.n; j++) {
		if (ins.t[j].type.dtype != KILN_DT_I64)
			continue;
		if (!ins.name[j] || !ins.name[j][0]) {
			set_outcome(o, RES_FAIL, "input_%d.pb has no name to bind", j);
			goto done;
		}
		bindings[n_bind++] = (kiln_input_binding){ .name = ins.name[j], .value = ins.t[j] };
	}
	kiln_status st;
	for (;;) {
		kiln_import_opts opts = { .bindings = bindings, .n_bindings = n_bind };
		st = kiln_import_onnx(model, &opts, &g, c->d);
		int j = st == KILN_OK ? -1 : constant_input_wanted(c->first, &ins);
		if (j < 0)
			break;
		bool bound = false;
		for (int k = 0; k < n_bind; k++)
			bound |= bindings[k].name == ins.name[j];
		if (bound)
			break;
		bindings[n_bind++] = (kiln_input_binding){ .name = ins.name[j], .value = ins.t[j] };
		c->first[0] = '\0';
	}
	if (st != KILN_OK) {
		kiln_failure(o, c, st, "import");
		goto done;
	}

	feed = calloc((size_t)g->n_inputs + 1, sizeof *feed);
	if (!feed) {
		set_outcome(o, RES_FAIL, "out of memory");
		goto done;
	}
	for (int i = 0; i < g->n_inputs; i++) {
		int j = find_input(&ins, g->inputs[i]->name);
		if (j < 0) {
			set_outcome(o, RES_FAIL, "graph input '%s' has no test data",
			            g->inputs[i]->name);
			goto done;
		}
		feed[i] = ins.t[j];
	}

	st = kiln_interp_create(g, &it, c->d);
	if (st != KILN_OK) {
		kiln_failure(o, c, st, "interp_create");
		goto done;
	}
	st = kiln_interp_run(it, feed, g->n_inputs, c->d);
	if (st != KILN_OK) {
		kiln_failure(o, c, st, "interp_run");
		goto done;
	}

	int n_out = kiln_interp_n_outputs(it);
	if (n_out != outs.n) {
		set_outcome(o, RES_FAIL, "kiln gives %d outputs, the test expects %d", n_out, outs.n);
		goto done;
	}
	for (int j = 0; j < n_out; j++) {
		char why[512];
		if (!compare(&outs.t[j], kiln_interp_output(it, j), why, sizeof why)) {
			set_outcome(o, RES_FAIL, "output %d '%s': %s", j,
			            outs.name[j] ? outs.name[j] : "", why);
			goto done;
		}
	}
	if (opt->compiled)
		run_compiled(opt, g, feed, &outs, it, c, o);
	else
		o->res = RES_PASS;

done:
	kiln_interp_destroy(it);
	kiln_graph_destroy(g);
	free(feed);
	tensor_set_free(&ins);
	tensor_set_free(&outs);
}

static void run_test(const options *opt, const char *name, outcome *o)
{
	char dir[4096], path[4200];
	snprintf(dir, sizeof dir, "%s/%s", opt->data_dir, name);
	memset(o, 0, sizeof *o);

	snprintf(path, sizeof path, "%s/UNSUPPORTED", dir);
	FILE *f = fopen(path, "r");
	if (f) {
		char line[512] = "";
		if (!fgets(line, sizeof line, f))
			line[0] = '\0';
		fclose(f);
		line[strcspn(line, "\n")] = '\0';
		set_outcome(o, RES_UNSUPPORTED, "%s", line);
		return;
	}

	kiln_diag d;
	kiln_diag_init(&d, "model.onnx");
	capture c = { .d = &d, .verbose = opt->verbose };
	d.fn = capture_fn;
	d.user = &c;

	char model[4200];
	snprintf(model, sizeof model, "%s/model.onnx", dir);
	int n_sets = 0;
	for (;; n_sets++) {
		snprintf(path, sizeof path, "%s/test_data_set_%d", dir, n_sets);
		if (!path_exists(path))
			break;
		run_data_set(opt, model, path, &c, o);
		if (o->res != RES_PASS) {
			if (n_sets > 0) {
				char reason[sizeof o->reason];
				snprintf(reason, sizeof reason, "data set %d: %.990s", n_sets, o->reason);
				memcpy(o->reason, reason, sizeof reason);
			}
			return;
		}
	}
	if (n_sets == 0)
		set_outcome(o, RES_FAIL, "no test_data_set_0 in %s", dir);
}

/* ---- isolation: one child per test ------------------------------------ */

static bool write_all(int fd, const void *buf, size_t n)
{
	const char *p = buf;
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return false;
		p += w;
		n -= (size_t)w;
	}
	return true;
}

static size_t read_all(int fd, void *buf, size_t n)
{
	char *p = buf;
	size_t got = 0;
	while (got < n) {
		ssize_t r = read(fd, p + got, n - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	return got;
}

static void run_isolated(const options *opt, const char *name, outcome *o)
{
	if (!opt->fork) {
		run_test(opt, name, o);
		return;
	}
	int fds[2];
	if (pipe(fds) != 0) {
		set_outcome(o, RES_FAIL, "pipe: %s", strerror(errno));
		return;
	}
	fflush(stdout);
	fflush(stderr);
	pid_t pid = fork();
	if (pid < 0) {
		close(fds[0]);
		close(fds[1]);
		set_outcome(o, RES_FAIL, "fork: %s", strerror(errno));
		return;
	}
	if (pid == 0) {
		close(fds[0]);
		alarm(TEST_TIMEOUT_S);
		outcome mine;
		run_test(opt, name, &mine);
		bool ok = write_all(fds[1], &mine, sizeof mine);
		close(fds[1]);
		/* exit(), not _exit(): LeakSanitizer checks this test's leaks now. */
		exit(ok ? 0 : 3);
	}
	close(fds[1]);
	size_t got = read_all(fds[0], o, sizeof *o);
	close(fds[0]);
	int ws = 0;
	while (waitpid(pid, &ws, 0) < 0 && errno == EINTR)
		;
	if (WIFSIGNALED(ws)) {
		int sig = WTERMSIG(ws);
		set_outcome(o, RES_FAIL, "crashed: signal %d (%s)%s", sig, strsignal(sig),
		            sig == SIGALRM ? ", timed out" : "");
	} else if (got != sizeof *o) {
		set_outcome(o, RES_FAIL, "died with exit status %d (sanitizer report above)",
		            WEXITSTATUS(ws));
	} else if (WEXITSTATUS(ws) != 0) {
		set_outcome(o, RES_FAIL, "exit status %d after the test (leak report above)",
		            WEXITSTATUS(ws));
	}
	o->reason[sizeof o->reason - 1] = '\0';
}

/* ---- test discovery and the expected list ----------------------------- */

/* --shard K/N: a stable split of the tests by name, so N runners (CTest -j)
 * share the work and each checks only its part of the expected list. */
static bool in_shard(const options *opt, const char *name)
{
	if (opt->n_shards <= 1)
		return true;
	uint32_t h = 2166136261u;
	for (const char *p = name; *p; p++)
		h = (h ^ (unsigned char)*p) * 16777619u;
	return (int)(h % (uint32_t)opt->n_shards) == opt->shard;
}

static bool list_tests(const options *opt, str_list *tests)
{
	DIR *dir = opendir(opt->data_dir);
	if (!dir) {
		fprintf(stderr, "kiln-conformance: cannot open %s: %s\n", opt->data_dir,
		        strerror(errno));
		return false;
	}
	struct dirent *e;
	char path[4096];
	bool ok = true;
	while (ok && (e = readdir(dir))) {
		if (e->d_name[0] == '.')
			continue;
		if ((opt->filter && !strstr(e->d_name, opt->filter)) || !in_shard(opt, e->d_name))
			continue;
		snprintf(path, sizeof path, "%s/%s/model.onnx", opt->data_dir, e->d_name);
		if (path_exists(path))
			ok = str_list_push(tests, e->d_name);
	}
	closedir(dir);
	if (ok && tests->n)
		qsort(tests->v, (size_t)tests->n, sizeof *tests->v, cmp_str);
	return ok;
}

/* One test name per line; blank lines and '#' comments are ignored. */
static bool read_expected(const char *path, str_list *l)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		fprintf(stderr, "kiln-conformance: cannot open %s: %s\n", path, strerror(errno));
		return false;
	}
	char line[1024];
	bool ok = true;
	while (ok && fgets(line, sizeof line, f)) {
		line[strcspn(line, "#")] = '\0';
		char *s = line;
		while (*s == ' ' || *s == '\t')
			s++;
		size_t len = strlen(s);
		while (len && strchr(" \t\r\n", s[len - 1]))
			s[--len] = '\0';
		if (len)
			ok = str_list_push(l, s);
	}
	fclose(f);
	if (ok && l->n)
		qsort(l->v, (size_t)l->n, sizeof *l->v, cmp_str);
	return ok;
}

/* ---- main ------------------------------------------------------------- */

static int usage(void)
{
	fprintf(stderr, "usage: kiln-conformance DATA_DIR [--expected FILE] [--filter SUBSTR] "
	                "[--list] [--no-fork] [-v] [--shard K/N]\n"
	                "                        [--compiled [-O N] [--cpu CPU] [--threads N]]\n");
	return 2;
}

int main(int argc, char **argv)
{
	options opt = { .fork = true, .opt_level = 2, .threads = 2 };
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--expected") == 0 && i + 1 < argc)
			opt.expected = argv[++i];
		else if (strcmp(argv[i], "--filter") == 0 && i + 1 < argc)
			opt.filter = argv[++i];
		else if (strcmp(argv[i], "--list") == 0)
			opt.list = true;
		else if (strcmp(argv[i], "--no-fork") == 0)
			opt.fork = false;
		else if (strcmp(argv[i], "-v") == 0)
			opt.verbose = true;
		else if (strcmp(argv[i], "--shard") == 0 && i + 1 < argc) {
			if (sscanf(argv[++i], "%d/%d", &opt.shard, &opt.n_shards) != 2 ||
			    opt.n_shards < 1 || opt.shard < 0 || opt.shard >= opt.n_shards)
				return usage();
		} else if (strcmp(argv[i], "--compiled") == 0)
			opt.compiled = true;
		else if (strcmp(argv[i], "-O") == 0 && i + 1 < argc)
			opt.opt_level = atoi(argv[++i]);
		else if (strcmp(argv[i], "--cpu") == 0 && i + 1 < argc)
			opt.cpu = argv[++i];
		else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
			opt.threads = atoi(argv[++i]);
		else if (argv[i][0] != '-' && !opt.data_dir)
			opt.data_dir = argv[i];
		else
			return usage();
	}
	if (!opt.data_dir)
		return usage();

	FILE *rep = opt.list ? stderr : stdout;
	str_list tests = { 0 }, expected = { 0 }, passed = { 0 };
	result *results = NULL;
	int rc = 2;
	if (!list_tests(&opt, &tests) || (opt.expected && !read_expected(opt.expected, &expected)))
		goto out;
	if (tests.n == 0) {
		fprintf(stderr, "kiln-conformance: no tests in %s%s%s\n", opt.data_dir,
		        opt.filter ? " matching " : "", opt.filter ? opt.filter : "");
		goto out;
	}
	results = calloc((size_t)tests.n, sizeof *results);
	if (!results)
		goto out;

	int count[RES_COUNT] = { 0 };
	for (int i = 0; i < tests.n; i++) {
		outcome o;
		if (opt.verbose)
			fprintf(rep, "RUN %s\n", tests.v[i]);
		run_isolated(&opt, tests.v[i], &o);
		results[i] = o.res;
		count[o.res]++;
		if (o.res != RES_PASS)
			fprintf(rep, "%s %s: %s\n", result_names[o.res], tests.v[i], o.reason);
		else if (opt.verbose)
			fprintf(rep, "PASS %s\n", tests.v[i]);
		fflush(rep);
		if (o.res == RES_PASS && !str_list_push(&passed, tests.v[i]))
			goto out;
	}
	fprintf(rep, "conformance: %d passed, %d failed, %d unsupported (of %d)\n",
	        count[RES_PASS], count[RES_FAIL], count[RES_UNSUPPORTED], tests.n);
	rc = 0;

	if (opt.expected) {
		int regressed = 0, newly = 0;
		for (int i = 0; i < expected.n; i++) {
			if ((opt.filter && !strstr(expected.v[i], opt.filter)) ||
			    !in_shard(&opt, expected.v[i]))
				continue;
			if (str_list_has(&passed, expected.v[i]))
				continue;
			if (regressed++ == 0)
				fprintf(rep, "expected to pass but did not:\n");
			fprintf(rep, "  %s%s\n", expected.v[i],
			        str_list_has(&tests, expected.v[i]) ? "" : " (not in DATA_DIR)");
		}
		for (int i = 0; i < passed.n; i++) {
			if (str_list_has(&expected, passed.v[i]))
				continue;
			if (newly++ == 0)
				fprintf(rep, "newly passing; add to expected_pass.txt:\n");
			fprintf(rep, "  %s\n", passed.v[i]);
		}
		fprintf(rep, "conformance: %d expected tests did not pass, %d newly passing\n",
		        regressed, newly);
		if (regressed)
			rc = 1;
	}
	if (opt.list)
		for (int i = 0; i < passed.n; i++)
			printf("%s\n", passed.v[i]);

out:
	free(results);
	str_list_free(&tests);
	str_list_free(&expected);
	str_list_free(&passed);
	return rc;
}
