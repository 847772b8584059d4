/* test_runtime.c — libkiln_rt against tiny artefacts built at test time.
 *
 * The group setup writes one C source defining `kiln_model` and compiles it
 * with cc into shared objects, one per -D variant (a model adding two
 * inputs; one whose tasks log which scratch block each thread got; broken
 * descriptors of every kind). Each test loads them and checks statuses,
 * exact messages and results. Needs KILN_SOURCE_DIR (set by CTest). */
#define _GNU_SOURCE /* dladdr, to find the system's libm */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "kiln_rt.h"

#include <dirent.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[64];

/* The artefact source. ADD (default): y = a + b, f32 [2,3]. PAR: fills
 * hits[i] for i < |n| through parallel_for (n < 0: each task first waits
 * until n_threads tasks have started) and reports in info: [0] faults
 * seen (bad ranges, misaligned or shared scratch, scratch clobbered),
 * [1] host n_threads, [2] tasks run, [3] distinct threads, [4] host
 * version, [5] the arena's address. */
static const char art_src[] =
	"#include <pthread.h>\n"
	"#include <sched.h>\n"
	"#include <stdint.h>\n"
	"#include <string.h>\n"
	"#include <time.h>\n"
	"#include \"kiln_abi.h\"\n"
	"#ifndef MAGIC\n#define MAGIC KILN_ABI_MAGIC\n#endif\n"
	"#ifndef VERSION\n#define VERSION KILN_ABI_VERSION\n#endif\n"
	"#ifndef FEATURES\n#define FEATURES \"\"\n#endif\n"
	"#ifndef TRIPLE\n#define TRIPLE \"\"\n#endif\n"
	"#ifndef ENTRY\n#define ENTRY entry\n#endif\n"
	"#ifndef RET\n#define RET 0\n#endif\n"
	"#ifndef FLAGS\n#define FLAGS 0\n#endif\n"
	"#ifndef B_DTYPE\n#define B_DTYPE 0\n#endif\n"
	"#ifndef B_RANK\n#define B_RANK 2\n#endif\n"
	"#ifndef B_DIMS\n#define B_DIMS {2, 3}\n#endif\n"
	"#ifndef Y_BYTES\n#define Y_BYTES 24\n#endif\n"
	"#ifdef UNDEF\nextern int kiln_no_such_function(void);\n"
	"int use_it(void) { return kiln_no_such_function(); }\n#endif\n"
	"int unrelated(void) { return 1; }\n"
	"#if defined(PAR)\n"
	"#define HITS 1000\n#define SCRATCH 200\n#define SLOTS 256\n#define ARENA 8192\n"
	"typedef struct { void *scratch; pthread_t tid; } rec_t;\n"
	"typedef struct { int n_rec, bad, entered; rec_t rec[SLOTS]; } log_t;\n"
	"_Static_assert(sizeof(log_t) <= ARENA, \"arena\");\n"
	"typedef struct { log_t *log; int32_t *hits; int64_t n; int meet; } job_t;\n"
	"static double now(void)\n{\n"
	"	struct timespec t;\n"
	"	clock_gettime(CLOCK_MONOTONIC, &t);\n"
	"	return t.tv_sec + t.tv_nsec * 1e-9;\n"
	"}\n"
	"static void task(void *arg, int64_t b, int64_t e, void *scratch)\n{\n"
	"	job_t *j = arg;\n"
	"	unsigned char *s = scratch, mark = (unsigned char)(b * 7 + 1);\n"
	"	int bad = b < 0 || e > j->n || b >= e || (uintptr_t)s % KILN_ABI_ALIGN;\n"
	"	__atomic_fetch_add(&j->log->entered, 1, __ATOMIC_RELAXED);\n"
	"	for (double t0 = now(); __atomic_load_n(&j->log->entered, __ATOMIC_RELAXED) < j->meet;)\n"
	"		if (now() - t0 > 20) {\n			bad = 1;\n			break;\n		} else\n"
	"			sched_yield();\n"
	"	memset(s, mark, SCRATCH);\n"
	"	for (int64_t i = b; i < e; i++) {\n"
	"		for (volatile int k = 0; k < 50; k++)\n			;\n"
	"		if (i >= 0 && i < HITS)\n"
	"			__atomic_fetch_add(&j->hits[i], 1, __ATOMIC_RELAXED);\n"
	"	}\n"
	"	for (int k = 0; k < SCRATCH; k++)\n		bad |= s[k] != mark;\n"
	"	int r = __atomic_fetch_add(&j->log->n_rec, 1, __ATOMIC_RELAXED);\n"
	"	if (r < SLOTS) {\n"
	"		j->log->rec[r].scratch = s;\n"
	"		j->log->rec[r].tid = pthread_self();\n"
	"	} else\n		bad = 1;\n"
	"	if (bad)\n		__atomic_fetch_add(&j->log->bad, 1, __ATOMIC_RELAXED);\n"
	"}\n"
	"static int32_t entry(const kiln_abi_host *h, void *arena, const void *const *in,\n"
	"                     void *const *out)\n{\n"
	"	log_t *log = arena;\n"
	"	int64_t *info = out[1];\n"
	"	memset(arena, 0xab, ARENA);\n"
	"	memset(log, 0, sizeof *log);\n"
	"	job_t j = {log, out[0], *(const int64_t *)in[0], 0};\n"
	"	if (j.n < 0) {\n		j.n = -j.n;\n		j.meet = h->n_threads;\n	}\n"
	"	memset(j.hits, 0, HITS * sizeof *j.hits);\n"
	"	h->parallel_for(h->pool, j.n, task, &j);\n"
	"	int64_t threads = 0;\n"
	"	for (int a = 0; a < log->n_rec && a < SLOTS; a++) {\n"
	"		int first = 1;\n"
	"		for (int b = 0; b < a; b++) {\n"
	"			char *sa = log->rec[a].scratch, *sb = log->rec[b].scratch;\n"
	"			int same_t = pthread_equal(log->rec[a].tid, log->rec[b].tid) != 0;\n"
	"			log->bad += (sa == sb) != same_t;\n"
	"			log->bad += sa != sb && (sa > sb ? sa - sb : sb - sa) < SCRATCH;\n"
	"			first &= !same_t;\n"
	"		}\n"
	"		threads += first;\n"
	"	}\n"
	"	info[0] = log->bad + ((uintptr_t)arena % KILN_ABI_ALIGN != 0);\n"
	"	info[1] = h->n_threads;\n"
	"	info[2] = log->n_rec;\n"
	"	info[3] = threads;\n"
	"	info[4] = h->version;\n"
	"	info[5] = (int64_t)(intptr_t)arena;\n"
	"	return 0;\n"
	"}\n"
	"static const kiln_abi_tensor ins[] = {{\"n\", 4, 1, {1}, 8}};\n"
	"static const kiln_abi_tensor outs[] = {{\"hits\", 5, 1, {HITS}, HITS * 4},\n"
	"                                       {\"info\", 4, 1, {8}, 64}};\n"
	"static const kiln_abi_kernel ks[] = {{\"par\", \"Test\", 0, 0}};\n"
	"const kiln_abi_model kiln_model = {MAGIC, VERSION, \"par\", \"0.1.0\", TRIPLE, \"x86-64\",\n"
	"	FEATURES, 1, 2, ins, outs, ARENA, SCRATCH, 1, 0, entry, ks};\n"
	"#elif !defined(NO_DESCRIPTOR)\n"
	"static int32_t entry(const kiln_abi_host *h, void *arena, const void *const *in,\n"
	"                     void *const *out)\n{\n"
	"	const float *a = in[0], *b = in[1];\n"
	"	float *y = out[0];\n"
	"#if FLAGS & KILN_ABI_FLAG_HOST_SGEMM\n"
	"	static const float eye[4] = {1, 0, 0, 1};\n"
	"	memcpy(y, b, 24);\n"
	"	h->sgemm(h->sgemm_user, 0, 0, 2, 3, 2, 1.0f, eye, 2, a, 3, 1.0f, y, 3);\n"
	"#else\n"
	"	for (int i = 0; i < 6; i++)\n		y[i] = a[i] + b[i];\n"
	"#endif\n"
	"	return RET;\n"
	"}\n"
	"static const kiln_abi_tensor ins[] = {{\"a\", 0, 2, {2, 3}, 24},\n"
	"                                      {\"b\", B_DTYPE, B_RANK, B_DIMS, 24}};\n"
	"static const kiln_abi_tensor outs[] = {{\"y\", 0, 2, {2, 3}, Y_BYTES}};\n"
	"#ifndef KERNELS\n#define KERNELS ks\n#endif\n"
	"static const kiln_abi_kernel ks[] = {{\"add\", \"Add\", 72, 6}};\n"
	"const kiln_abi_model kiln_model = {MAGIC, VERSION, \"add\", \"0.1.0\", TRIPLE, \"x86-64\",\n"
	"	FEATURES, 2, 1, ins, outs, 256, 0, 1, FLAGS, ENTRY, KERNELS};\n"
	"#endif\n";

#if defined(__x86_64__)
#define HOST_FEATURE "sse2"
#elif defined(__aarch64__)
#define HOST_FEATURE "neon"
#endif

/* file name (without .so) | cc flags */
static const char *const variants[][2] = {
	{"add", ""},
	{"par", "-DPAR"},
	{"nosym", "-DNO_DESCRIPTOR"},
	{"undef", "-DUNDEF"},
	{"magic", "-DMAGIC=0x12345678"},
	{"version", "-DVERSION=4"},
	{"version1", "-DVERSION=1"},
	{"version2", "-DVERSION=2"},
	{"flags", "-DFLAGS=6"},
	{"sgemm", "-DFLAGS=KILN_ABI_FLAG_HOST_SGEMM"},
	{"bad_dtype", "-DB_DTYPE=42"},
	{"bad_rank", "-DB_RANK=9"},
	{"bad_dim", "-D'B_DIMS={2,-3}'"},
	{"bad_bytes", "-DY_BYTES=20"},
	{"null_entry", "-DENTRY=0"},
	{"null_kernels", "-DKERNELS=0"},
	{"ret7", "-DRET=7"},
#ifdef HOST_FEATURE
	{"unknown_feature", "-DFEATURES='\"" HOST_FEATURE ",,frobnicate\"'"},
	{"known_features", "-DFEATURES='\"" HOST_FEATURE ",\"'"},
	{"triple", "-DTRIPLE='\"riscv64-unknown-linux-gnu\"'"},
#endif
#if defined(__x86_64__)
	{"missing_feature", "-DFEATURES='\"sse2,xop,avx,fma4\"'"},
#endif
};

static char *path_in_dir(const char *name)
{
	static char buf[4][400]; /* a few live paths per test */
	static int next;
	char *p = buf[next++ % 4];
	snprintf(p, sizeof buf[0], "%s/%s", dir, name);
	return p;
}

static int write_file(const char *path, const void *bytes, size_t n)
{
	FILE *f = fopen(path, "wb");
	if (!f)
		return -1;
	size_t put = fwrite(bytes, 1, n, f);
	return fclose(f) || put != n ? -1 : 0;
}

static int group_setup(void **state)
{
	(void)state;
	const char *src = getenv("KILN_SOURCE_DIR");
	if (!src) {
		fprintf(stderr, "test_runtime: KILN_SOURCE_DIR is not set (run it through ctest)\n");
		return -1;
	}
	snprintf(dir, sizeof dir, "/tmp/kiln-test-rt-XXXXXX");
	if (!mkdtemp(dir) || write_file(path_in_dir("art.c"), art_src, sizeof art_src - 1))
		return -1;
	char cmd[2048];
	for (size_t i = 0; i < sizeof variants / sizeof *variants; i++) {
		snprintf(cmd, sizeof cmd, "cc -shared -fPIC -O1 -I'%s/include' %s -o '%s/%s.so' '%s/art.c'",
		         src, variants[i][1], dir, variants[i][0], dir);
		if (system(cmd)) {
			fprintf(stderr, "test_runtime: failed: %s\n", cmd);
			return -1;
		}
	}
	snprintf(cmd, sizeof cmd, "cc -c -fPIC -I'%s/include' -o '%s/art.o' '%s/art.c'", src, dir, dir);
	return system(cmd) ? -1 : 0;
}

static int group_teardown(void **state)
{
	(void)state;
	DIR *dp = opendir(dir);
	if (dp) {
		struct dirent *e;
		while ((e = readdir(dp)))
			if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
				unlink(path_in_dir(e->d_name));
		closedir(dp);
	}
	rmdir(dir);
	return 0;
}

static kiln_rt_model_t *load_ok(const char *file)
{
	kiln_rt_model_t *m = NULL;
	char err[512] = "unset";
	kiln_rt_status st = kiln_rt_model_load(path_in_dir(file), &m, err, sizeof err);
	if (st)
		fail_msg("%s", err);
	assert_string_equal(err, "");
	assert_non_null(m);
	return m;
}

/* Loading `file` fails with `want` and the message `fmt` % its path. */
static void expect_load(const char *file, kiln_rt_status want, const char *fmt)
{
	const char *path = path_in_dir(file);
	char err[512], expect[512];
	snprintf(expect, sizeof expect, fmt, path);
	kiln_rt_model_t *m = (kiln_rt_model_t *)1;
	assert_int_equal(kiln_rt_model_load(path, &m, err, sizeof err), want);
	assert_null(m);
	assert_string_equal(err, expect);
}

static kiln_rt_session_t *session(const kiln_rt_model_t *m, int n_threads)
{
	kiln_rt_session_t *s = NULL;
	kiln_rt_session_opts o = {.n_threads = n_threads};
	assert_int_equal(kiln_rt_session_create(m, &o, &s), KILN_RT_OK);
	assert_int_equal(kiln_rt_session_n_threads(s), n_threads);
	return s;
}

static kiln_rt_session_t *session_opts(const kiln_rt_model_t *m, const kiln_rt_session_opts *o)
{
	kiln_rt_session_t *s = NULL;
	assert_int_equal(kiln_rt_session_create(m, o, &s), KILN_RT_OK);
	return s;
}

static kiln_rt_tensor tensor2(int32_t dtype, int64_t d0, int64_t d1, void *data)
{
	return (kiln_rt_tensor){.dtype = dtype, .rank = 2, .dims = {d0, d1}, .data = data};
}

/* ---- the add model ----------------------------------------------------- */

static void test_add_success(void **state)
{
	(void)state;
	kiln_rt_model_t *m = load_ok("add.so");
	assert_string_equal(kiln_rt_model_name(m), "add");
	assert_int_equal(kiln_rt_model_n_inputs(m), 2);
	assert_int_equal(kiln_rt_model_n_outputs(m), 1);
	assert_int_equal(kiln_rt_model_find_input(m, "b"), 1);
	assert_int_equal(kiln_rt_model_find_input(m, "y"), -1);
	assert_int_equal(kiln_rt_model_find_output(m, "y"), 0);
	assert_int_equal(kiln_rt_model_find_output(m, NULL), -1);
	assert_null(kiln_rt_model_input(m, 2));
	assert_null(kiln_rt_model_input(m, -1));
	assert_null(kiln_rt_model_output(m, 1));
	const kiln_abi_tensor *b = kiln_rt_model_input(m, 1);
	assert_string_equal(b->name, "b");
	assert_int_equal(b->bytes, 24);
	assert_int_equal(b->dims[1], 3);
	assert_int_equal(kiln_rt_model_abi(m)->arena_bytes, 256);

	kiln_rt_session_t *s = session(m, 1);
	float a[6] = {1, 2, 3, 4, 5, 6}, bv[6] = {10, 20, 30, 40, 50, 60}, y[6] = {0};
	kiln_rt_tensor in[2] = {tensor2(0, 2, 3, a), tensor2(0, 2, 3, bv)};
	kiln_rt_tensor out = tensor2(0, 2, 3, y);
	assert_int_equal(kiln_rt_session_run(s, in, 2, &out, 1), KILN_RT_OK);
	assert_string_equal(kiln_rt_session_error(s), "");
	for (int i = 0; i < 6; i++)
		assert_true(y[i] == a[i] + bv[i]);

	const void *raw_in[2] = {bv, bv};
	void *raw_out[1] = {y};
	assert_int_equal(kiln_rt_session_run_raw(s, raw_in, raw_out), KILN_RT_OK);
	for (int i = 0; i < 6; i++)
		assert_true(y[i] == 2 * bv[i]);
	kiln_rt_session_free(s);
	kiln_rt_model_free(m);
}

static void expect_run(kiln_rt_session_t *s, kiln_rt_tensor *in, int n_in, kiln_rt_tensor *out,
                       int n_out, kiln_rt_status want, const char *msg)
{
	assert_int_equal(kiln_rt_session_run(s, in, n_in, out, n_out), want);
	assert_string_equal(kiln_rt_session_error(s), msg);
}

static void test_run_errors(void **state)
{
	(void)state;
	kiln_rt_model_t *m = load_ok("add.so");
	kiln_rt_session_t *s = session(m, 2);
	float a[6] = {0}, b[6] = {0}, y[6];
	kiln_rt_tensor in[2] = {tensor2(0, 2, 3, a), tensor2(0, 2, 3, b)};
	kiln_rt_tensor out[2] = {tensor2(0, 2, 3, y), tensor2(0, 2, 3, y)};

	expect_run(s, in, 1, out, 1, KILN_RT_ERR_INVALID_ARG, "input count 1 expected 2");
	expect_run(s, in, 2, out, 2, KILN_RT_ERR_INVALID_ARG, "output count 2 expected 1");
	expect_run(s, NULL, 2, out, 1, KILN_RT_ERR_INVALID_ARG, "inputs is NULL");
	expect_run(s, in, 2, NULL, 1, KILN_RT_ERR_INVALID_ARG, "outputs is NULL");

	in[1].dims[1] = 4;
	expect_run(s, in, 2, out, 1, KILN_RT_ERR_SHAPE, "input 1 'b': shape [2,4] expected [2,3]");
	in[1].rank = 3;
	expect_run(s, in, 2, out, 1, KILN_RT_ERR_SHAPE, "input 1 'b': rank 3 expected 2");
	in[1] = tensor2(4, 2, 3, b);
	expect_run(s, in, 2, out, 1, KILN_RT_ERR_DTYPE, "input 1 'b': dtype i64 expected f32");
	in[1].dtype = 99;
	expect_run(s, in, 2, out, 1, KILN_RT_ERR_DTYPE, "input 1 'b': dtype 99 expected f32");
	in[1] = tensor2(0, 2, 3, b);
	in[0].data = NULL;
	expect_run(s, in, 2, out, 1, KILN_RT_ERR_INVALID_ARG, "input 0 'a': data is NULL");
	in[0].data = a;
	out[0].dims[0] = 1;
	expect_run(s, in, 2, out, 1, KILN_RT_ERR_SHAPE, "output 0 'y': shape [1,3] expected [2,3]");
	out[0] = tensor2(0, 2, 3, NULL);
	expect_run(s, in, 2, out, 1, KILN_RT_ERR_INVALID_ARG, "output 0 'y': data is NULL");
	out[0].data = b;
	expect_run(s, in, 2, out, 1, KILN_RT_ERR_INVALID_ARG, "output 0 'y' overlaps input 1 'b'");
	out[0].data = (char *)a + 20;
	expect_run(s, in, 2, out, 1, KILN_RT_ERR_INVALID_ARG, "output 0 'y' overlaps input 0 'a'");
	out[0].data = y;
	expect_run(s, in, 2, out, 1, KILN_RT_OK, ""); /* a success clears the error */

	const void *raw_in[2] = {a, NULL};
	void *raw_out[1] = {y};
	assert_int_equal(kiln_rt_session_run_raw(s, raw_in, raw_out), KILN_RT_ERR_INVALID_ARG);
	assert_string_equal(kiln_rt_session_error(s), "input 1 'b': data is NULL");
	raw_in[1] = b;
	raw_out[0] = NULL;
	assert_int_equal(kiln_rt_session_run_raw(s, raw_in, raw_out), KILN_RT_ERR_INVALID_ARG);
	assert_string_equal(kiln_rt_session_error(s), "output 0 'y': data is NULL");
	assert_int_equal(kiln_rt_session_run_raw(s, NULL, raw_out), KILN_RT_ERR_INVALID_ARG);
	assert_string_equal(kiln_rt_session_error(s), "inputs is NULL");

	assert_int_equal(kiln_rt_session_run(NULL, in, 2, out, 1), KILN_RT_ERR_INVALID_ARG);
	assert_int_equal(kiln_rt_session_run_raw(NULL, raw_in, raw_out), KILN_RT_ERR_INVALID_ARG);
	assert_string_equal(kiln_rt_session_error(NULL), "kiln_rt_session_error: session is NULL");
	kiln_rt_session_free(s);
	kiln_rt_model_free(m);
}

static void test_entry_error(void **state)
{
	(void)state;
	kiln_rt_model_t *m = load_ok("ret7.so");
	kiln_rt_session_t *s = session(m, 1);
	float a[6] = {0}, b[6] = {0}, y[6];
	kiln_rt_tensor in[2] = {tensor2(0, 2, 3, a), tensor2(0, 2, 3, b)};
	kiln_rt_tensor out = tensor2(0, 2, 3, y);
	expect_run(s, in, 2, &out, 1, KILN_RT_ERR_ABI, "model entry returned 7 (the ABI says 0)");
	kiln_rt_session_free(s);
	kiln_rt_model_free(m);
}

/* ---- loading ------------------------------------------------------------ */

static void test_load_io(void **state)
{
	(void)state;
	expect_load("missing.so", KILN_RT_ERR_IO, "%s: cannot open: No such file or directory");
	char err[512];
	kiln_rt_model_t *m = (kiln_rt_model_t *)1;
	assert_int_equal(kiln_rt_model_load(dir, &m, err, sizeof err), KILN_RT_ERR_IO);
	assert_null(m);
	char expect[512];
	snprintf(expect, sizeof expect, "%s: not a regular file", dir);
	assert_string_equal(err, expect);

	assert_int_equal(kiln_rt_model_load(NULL, &m, err, sizeof err), KILN_RT_ERR_INVALID_ARG);
	assert_string_equal(err, "kiln_rt_model_load: path is NULL");
	assert_int_equal(kiln_rt_model_load(dir, NULL, err, sizeof err), KILN_RT_ERR_INVALID_ARG);
	assert_string_equal(err, "kiln_rt_model_load: out is NULL");
	/* No error buffer, or a tiny one: still a status, never an overrun. */
	assert_int_equal(kiln_rt_model_load(path_in_dir("missing.so"), &m, NULL, 0), KILN_RT_ERR_IO);
	char small[8] = "xxxxxxx";
	assert_int_equal(kiln_rt_model_load(path_in_dir("missing.so"), &m, small, 5), KILN_RT_ERR_IO);
	assert_int_equal(strlen(small), 4);
	assert_int_equal(small[6], 'x');
}

static void test_load_truncated(void **state)
{
	(void)state;
	FILE *f = fopen(path_in_dir("add.so"), "rb");
	assert_non_null(f);
	static unsigned char buf[1 << 20];
	size_t n = fread(buf, 1, sizeof buf, f);
	fclose(f);
	assert_true(n > 1000 && n < sizeof buf);
	assert_int_equal(write_file(path_in_dir("half.so"), buf, n / 2), 0);
	const char *path = path_in_dir("half.so");
	char err[512], expect[512];
	kiln_rt_model_t *m;
	assert_int_equal(kiln_rt_model_load(path, &m, err, sizeof err), KILN_RT_ERR_NOT_ARTEFACT);
	assert_null(m);
	snprintf(expect, sizeof expect, "%s: truncated ELF file (%zu bytes, a segment ends at byte ",
	         path, n / 2);
	assert_memory_equal(err, expect, strlen(expect));
	unsigned long long end = strtoull(err + strlen(expect), NULL, 10);
	assert_true(end > n / 2 && end <= n);

	assert_int_equal(write_file(path_in_dir("stub.so"), buf, 10), 0);
	expect_load("stub.so", KILN_RT_ERR_NOT_ARTEFACT, "%s: truncated ELF file (10 bytes)");
	assert_int_equal(write_file(path_in_dir("empty.so"), buf, 0), 0);
	expect_load("empty.so", KILN_RT_ERR_NOT_ARTEFACT, "%s: not an ELF shared object");
}

static void test_load_foreign(void **state)
{
	(void)state;
	assert_int_equal(write_file(path_in_dir("text.so"), "hello\n", 6), 0);
	expect_load("text.so", KILN_RT_ERR_NOT_ARTEFACT, "%s: not an ELF shared object");
	expect_load("art.o", KILN_RT_ERR_NOT_ARTEFACT, "%s: not a shared object (ELF type 1)");
	expect_load("nosym.so", KILN_RT_ERR_NOT_ARTEFACT,
	            "%s: no 'kiln_model' symbol (not a kiln artefact)");
	expect_load("undef.so", KILN_RT_ERR_NOT_ARTEFACT,
	            "%s: cannot load: undefined symbol: kiln_no_such_function");

	/* The system's libm: a perfectly good shared object, not an artefact. */
	void *libm = dlopen("libm.so.6", RTLD_NOW);
	assert_non_null(libm);
	Dl_info info;
	assert_true(dladdr(dlsym(libm, "cos"), &info));
	char err[512], expect[512];
	kiln_rt_model_t *m;
	assert_int_equal(kiln_rt_model_load(info.dli_fname, &m, err, sizeof err),
	                 KILN_RT_ERR_NOT_ARTEFACT);
	snprintf(expect, sizeof expect, "%s: no 'kiln_model' symbol (not a kiln artefact)",
	         info.dli_fname);
	assert_string_equal(err, expect);
	dlclose(libm);
}

/* A path without a slash is the file in the current directory, not a
 * library dlopen finds on its search path. */
static void test_load_relative(void **state)
{
	(void)state;
	char cwd[512];
	assert_non_null(getcwd(cwd, sizeof cwd));
	assert_int_equal(chdir(dir), 0);
	kiln_rt_model_t *m;
	char err[512];
	kiln_rt_status st = kiln_rt_model_load("add.so", &m, err, sizeof err);
	kiln_rt_model_t *m2;
	kiln_rt_status st3 = kiln_rt_model_load("libc.so.6", &m2, err, sizeof err);
	assert_int_equal(chdir(cwd), 0);
	assert_int_equal(st, KILN_RT_OK);
	assert_string_equal(kiln_rt_model_name(m), "add");
	kiln_rt_model_free(m);
	assert_int_equal(st3, KILN_RT_ERR_IO);
	assert_string_equal(err, "libc.so.6: cannot open: No such file or directory");
}

static void test_load_abi(void **state)
{
	(void)state;
	expect_load("magic.so", KILN_RT_ERR_ABI,
	            "%s: bad magic 0x12345678, expected 0x4e4c494b (not a kiln descriptor)");
	expect_load("version.so", KILN_RT_ERR_ABI,
	            "%s: ABI version 4, this runtime speaks versions 2 to 3");
	expect_load("version1.so", KILN_RT_ERR_ABI,
	            "%s: ABI version 1, this runtime speaks versions 2 to 3");
	expect_load("flags.so", KILN_RT_ERR_ABI, "%s: unknown descriptor flags 0x6");
	expect_load("bad_dtype.so", KILN_RT_ERR_ABI, "%s: input 1 'b': dtype 42 is not a kiln dtype");
	expect_load("bad_rank.so", KILN_RT_ERR_ABI, "%s: input 1 'b': rank 9 outside [0, 8]");
	expect_load("bad_dim.so", KILN_RT_ERR_ABI, "%s: input 1 'b': dim 1 is -3, out of range");
	expect_load("bad_bytes.so", KILN_RT_ERR_ABI,
	            "%s: output 0 'y': bytes 20, expected 24 for f32 [2,3]");
	expect_load("null_entry.so", KILN_RT_ERR_ABI, "%s: descriptor field 'entry' is NULL");
	expect_load("null_kernels.so", KILN_RT_ERR_ABI, "%s: descriptor field 'kernels' is NULL");
}

/* ---- the host GEMM (KILN_ABI_FLAG_HOST_SGEMM) --------------------------- */

typedef struct sgemm_log {
	int calls;
	int64_t m, n, k;
} sgemm_log;

/* Plain row-major sgemm without transposes (what sgemm.so asks for). */
static void test_sgemm(void *user, int32_t ta, int32_t tb, int64_t m, int64_t n, int64_t k,
                       float alpha, const float *a, int64_t lda, const float *b, int64_t ldb,
                       float beta, float *c, int64_t ldc)
{
	sgemm_log *log = user;
	*log = (sgemm_log){log->calls + 1, m, n, k};
	if (ta || tb)
		return;
	for (int64_t i = 0; i < m; i++)
		for (int64_t j = 0; j < n; j++) {
			float acc = 0;
			for (int64_t p = 0; p < k; p++)
				acc += a[i * lda + p] * b[p * ldb + j];
			c[i * ldc + j] = alpha * acc + (beta == 0 ? 0 : beta * c[i * ldc + j]);
		}
}

static void test_host_sgemm(void **state)
{
	(void)state;
	float a[6] = {1, 2, 3, 4, 5, 6}, b[6] = {10, 20, 30, 40, 50, 60}, y[6];
	kiln_rt_tensor in[2] = {tensor2(0, 2, 3, a), tensor2(0, 2, 3, b)};
	kiln_rt_tensor out = tensor2(0, 2, 3, y);
	sgemm_log log = {0};
	kiln_rt_session_opts o = {.n_threads = 2, .sgemm = test_sgemm, .sgemm_user = &log};

	/* no sgemm: refused before anything runs, with or without options */
	kiln_rt_model_t *m = load_ok("sgemm.so");
	assert_int_equal(kiln_rt_model_abi(m)->flags, KILN_ABI_FLAG_HOST_SGEMM);
	kiln_rt_session_t *s = (kiln_rt_session_t *)1;
	assert_int_equal(kiln_rt_session_create(m, NULL, &s), KILN_RT_ERR_NO_SGEMM);
	assert_null(s);
	kiln_rt_session_opts none = {.n_threads = 1, .sgemm_user = &log};
	assert_int_equal(kiln_rt_session_create(m, &none, &s), KILN_RT_ERR_NO_SGEMM);
	assert_null(s);
	assert_string_equal(kiln_rt_status_str(KILN_RT_ERR_NO_SGEMM),
	                    "the model calls a host GEMM and the session options give no sgemm");

	/* with one: the model's kernels get it, with its user pointer */
	s = session_opts(m, &o);
	assert_int_equal(kiln_rt_session_run(s, in, 2, &out, 1), KILN_RT_OK);
	assert_int_equal(log.calls, 1);
	assert_true(log.m == 2 && log.n == 3 && log.k == 2);
	for (int i = 0; i < 6; i++)
		assert_true(y[i] == a[i] + b[i]);
	kiln_rt_session_free(s);
	kiln_rt_model_free(m);

	/* a model without the flag ignores a given sgemm; version 2 still runs */
	static const char *const plain[] = {"add.so", "version2.so"};
	for (int f = 0; f < 2; f++) {
		m = load_ok(plain[f]);
		assert_int_equal(kiln_rt_model_abi(m)->flags, 0);
		s = session_opts(m, &o);
		memset(y, 0, sizeof y);
		assert_int_equal(kiln_rt_session_run(s, in, 2, &out, 1), KILN_RT_OK);
		for (int i = 0; i < 6; i++)
			assert_true(y[i] == a[i] + b[i]);
		kiln_rt_session_free(s);
		kiln_rt_model_free(m);
	}
	assert_int_equal(log.calls, 1);
}

static void test_load_cpu(void **state)
{
	(void)state;
#ifdef HOST_FEATURE
	expect_load("unknown_feature.so", KILN_RT_ERR_CPU,
	            "%s: unknown ISA feature 'frobnicate' (this runtime cannot check it)");
	kiln_rt_model_free(load_ok("known_features.so"));
	char fmt[256];
	snprintf(fmt, sizeof fmt, "%%s: compiled for riscv64-unknown-linux-gnu, this machine is %s",
#if defined(__x86_64__)
	         "x86_64");
#else
	         "aarch64");
#endif
	expect_load("triple.so", KILN_RT_ERR_CPU, fmt);
#else
	print_message("no ISA feature checks on this architecture\n");
#endif
#if defined(__x86_64__)
	/* xop and fma4 were AMD Bulldozer only; avx is everywhere since 2011. */
	__builtin_cpu_init();
	if (__builtin_cpu_supports("xop") || __builtin_cpu_supports("fma4") ||
	    !__builtin_cpu_supports("avx")) {
		print_message("skipped: this CPU has xop or fma4, or lacks avx\n");
		return;
	}
	expect_load("missing_feature.so", KILN_RT_ERR_CPU,
	            "%s: this CPU lacks ISA features the model needs: xop,fma4 (compiled for x86-64)");
#endif
}

/* ---- kiln_rt_model_from_abi: a descriptor linked into this test --------- */

static int32_t scale_entry(const kiln_abi_host *h, void *arena, const void *const *in,
                           void *const *out)
{
	const double *x = in[0];
	double *y = out[0];
	for (int i = 0; i < 4; i++)
		y[i] = 2 * x[i];
	return 0;
}

static const kiln_abi_tensor scale_in[] = {{"x", 3, 1, {4}, 32}};
static const kiln_abi_tensor scale_out[] = {{"y", 3, 1, {4}, 32}};

static void test_from_abi(void **state)
{
	(void)state;
	static const kiln_abi_kernel ks[] = {{"scale", "Mul", 64, 4}};
	kiln_abi_model abi = {KILN_ABI_MAGIC, KILN_ABI_VERSION, "scale", "0.1.0", "", "", "",
	                      1, 1, scale_in, scale_out, 0, 0, 1, 0, scale_entry, ks};
	kiln_rt_model_t *m;
	char err[256] = "unset";
	assert_int_equal(kiln_rt_model_from_abi(&abi, &m, err, sizeof err), KILN_RT_OK);
	assert_string_equal(err, "");
	assert_ptr_equal(kiln_rt_model_abi(m), &abi);
	kiln_rt_session_t *s;
	assert_int_equal(kiln_rt_session_create(m, NULL, &s), KILN_RT_OK);
	assert_int_equal(kiln_rt_session_n_threads(s), kiln_rt_default_threads());
	double x[4] = {1, -2, 3.5, 0}, y[4];
	kiln_rt_tensor tx = {.dtype = 3, .rank = 1, .dims = {4}, .data = x};
	kiln_rt_tensor ty = {.dtype = 3, .rank = 1, .dims = {4}, .data = y};
	assert_int_equal(kiln_rt_session_run(s, &tx, 1, &ty, 1), KILN_RT_OK);
	for (int i = 0; i < 4; i++)
		assert_true(y[i] == 2 * x[i]);
	kiln_rt_session_free(s);
	kiln_rt_model_free(m);

	abi.features = NULL;
	assert_int_equal(kiln_rt_model_from_abi(&abi, &m, err, sizeof err), KILN_RT_ERR_ABI);
	assert_null(m);
	assert_string_equal(err, "kiln_model: descriptor field 'features' is NULL");
	abi.features = "";
	abi.n_outputs = 0;
	assert_int_equal(kiln_rt_model_from_abi(&abi, &m, err, sizeof err), KILN_RT_ERR_ABI);
	assert_string_equal(err, "kiln_model: bad tensor counts (1 inputs, 0 outputs)");
	abi.n_outputs = 1;
	abi.arena_bytes = -64;
	assert_int_equal(kiln_rt_model_from_abi(&abi, &m, err, sizeof err), KILN_RT_ERR_ABI);
	assert_string_equal(err, "kiln_model: arena_bytes -64 out of range");
	assert_int_equal(kiln_rt_model_from_abi(NULL, &m, err, sizeof err), KILN_RT_ERR_INVALID_ARG);
	assert_string_equal(err, "kiln_rt_model_from_abi: abi is NULL");

	kiln_rt_model_free(NULL);
	assert_null(kiln_rt_model_name(NULL));
	assert_int_equal(kiln_rt_model_n_inputs(NULL), 0);
	assert_int_equal(kiln_rt_model_find_input(NULL, "x"), -1);
	assert_int_equal(kiln_rt_session_create(NULL, NULL, &s), KILN_RT_ERR_INVALID_ARG);
	assert_null(s);
	kiln_rt_session_free(NULL);
}

/* ---- sessions, threads, memory ----------------------------------------- */

typedef struct par_result {
	int32_t hits[1000];
	int64_t info[8];
} par_result;

static kiln_rt_status run_par(kiln_rt_session_t *s, int64_t n, par_result *r)
{
	kiln_rt_tensor in = {.dtype = 4, .rank = 1, .dims = {1}, .data = &n};
	kiln_rt_tensor out[2] = {{.dtype = 5, .rank = 1, .dims = {1000}, .data = r->hits},
	                         {.dtype = 4, .rank = 1, .dims = {8}, .data = r->info}};
	return kiln_rt_session_run(s, &in, 1, out, 2);
}

/* Every index in [0, n) hit once, nothing else, no fault logged. */
static bool par_ok(const par_result *r, int64_t n, int threads)
{
	for (int64_t i = 0; i < 1000; i++)
		if (r->hits[i] != (i < n))
			return false;
	return r->info[0] == 0 && r->info[1] == threads && r->info[4] == KILN_ABI_VERSION;
}

static void test_parallel_for(void **state)
{
	(void)state;
	kiln_rt_model_t *m = load_ok("par.so");
	static const int threads[] = {1, 2, 7};
	static const int64_t ns[] = {0, 1, 2, 3, 5, 6, 7, 8, 13, 14, 15, 100, 999, 1000};
	par_result r;
	for (size_t t = 0; t < sizeof threads / sizeof *threads; t++) {
		int nt = threads[t];
		kiln_rt_session_t *s = session(m, nt);
		for (size_t k = 0; k < sizeof ns / sizeof *ns; k++) {
			int64_t n = ns[k];
			assert_int_equal(run_par(s, n, &r), KILN_RT_OK);
			if (!par_ok(&r, n, nt))
				fail_msg("threads %d n %lld: faults %lld", nt, (long long)n,
				         (long long)r.info[0]);
			/* n_threads ranges, twice over for balance, never empty. */
			int64_t ranges = nt == 1 || n <= 1 ? n > 0 : n < 2 * nt ? n : 2 * nt;
			assert_int_equal(r.info[2], ranges);
			assert_in_range(r.info[3], n > 0, nt);
		}
		/* Tasks that wait until n_threads of them run at once: every
		 * worker takes part, each with its own scratch. */
		assert_int_equal(run_par(s, -1000, &r), KILN_RT_OK);
		assert_true(par_ok(&r, 1000, nt));
		assert_int_equal(r.info[3], nt);
		for (int i = 0; i < 20; i++) {
			assert_int_equal(run_par(s, 1000 - i, &r), KILN_RT_OK);
			assert_true(par_ok(&r, 1000 - i, nt));
		}
		kiln_rt_session_free(s);
	}
	kiln_rt_model_free(m);
}

static void test_caller_memory(void **state)
{
	(void)state;
	kiln_rt_model_t *m = load_ok("par.so");
	/* 63 bytes of alignment slack, the 8192-byte arena, 3 x 200 bytes of
	 * scratch rounded up to 256. */
	size_t need = kiln_rt_session_bytes(m, 3);
	assert_int_equal(need, 63 + 8192 + 3 * 256);
	assert_int_equal(kiln_rt_session_bytes(NULL, 3), 0);
	assert_int_equal(kiln_rt_session_bytes(m, -1), 0);

	unsigned char *buf = malloc(need + 1);
	assert_non_null(buf);
	kiln_rt_session_t *s = (kiln_rt_session_t *)1;
	kiln_rt_session_opts o = {.n_threads = 3, .memory = buf + 1, .memory_bytes = need - 1};
	assert_int_equal(kiln_rt_session_create(m, &o, &s), KILN_RT_ERR_OOM);
	assert_null(s);
	o.memory_bytes = need;
	assert_int_equal(kiln_rt_session_create(m, &o, &s), KILN_RT_OK);
	par_result r;
	assert_int_equal(run_par(s, 500, &r), KILN_RT_OK);
	assert_true(par_ok(&r, 500, 3));
	uintptr_t arena = (uintptr_t)r.info[5];
	assert_int_equal(arena % KILN_ABI_ALIGN, 0);
	assert_in_range(arena, (uintptr_t)(buf + 1), (uintptr_t)(buf + 1 + 63));
	kiln_rt_session_free(s);
	free(buf);

	o = (kiln_rt_session_opts){.n_threads = -1};
	assert_int_equal(kiln_rt_session_create(m, &o, &s), KILN_RT_ERR_INVALID_ARG);
	o.n_threads = 100000;
	assert_int_equal(kiln_rt_session_create(m, &o, &s), KILN_RT_ERR_INVALID_ARG);
	kiln_rt_model_free(m);
}

typedef struct worker_arg {
	const kiln_rt_model_t *add, *par;
	int id;
	int failures;
} worker_arg;

static void *concurrent_worker(void *p)
{
	worker_arg *w = p;
	kiln_rt_session_t *sa, *sp;
	kiln_rt_session_opts o = {.n_threads = 2};
	if (kiln_rt_session_create(w->add, &o, &sa) || kiln_rt_session_create(w->par, &o, &sp)) {
		w->failures = -1;
		return NULL;
	}
	par_result r;
	for (int it = 0; it < 200; it++) {
		float a[6], b[6], y[6];
		for (int i = 0; i < 6; i++) {
			a[i] = (float)(w->id * 1000 + it);
			b[i] = (float)i;
		}
		kiln_rt_tensor in[2] = {tensor2(0, 2, 3, a), tensor2(0, 2, 3, b)};
		kiln_rt_tensor out = tensor2(0, 2, 3, y);
		w->failures += kiln_rt_session_run(sa, in, 2, &out, 1) != KILN_RT_OK;
		for (int i = 0; i < 6; i++)
			w->failures += y[i] != a[i] + b[i];
		int64_t n = w->id ? 997 : 300 + it;
		w->failures += run_par(sp, n, &r) != KILN_RT_OK || !par_ok(&r, n, 2);
	}
	kiln_rt_session_free(sa);
	kiln_rt_session_free(sp);
	return NULL;
}

static void test_concurrent_sessions(void **state)
{
	(void)state;
	kiln_rt_model_t *add = load_ok("add.so"), *par = load_ok("par.so");
	worker_arg w[2] = {{add, par, 0, 0}, {add, par, 1, 0}};
	pthread_t t[2];
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&t[i], NULL, concurrent_worker, &w[i]), 0);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	assert_int_equal(w[0].failures, 0);
	assert_int_equal(w[1].failures, 0);
	kiln_rt_model_free(add);
	kiln_rt_model_free(par);
}

static void test_num_threads_env(void **state)
{
	(void)state;
	const char *old = getenv("KILN_NUM_THREADS");
	char *saved = old ? strdup(old) : NULL;
	unsetenv("KILN_NUM_THREADS");
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	int fallback = cores < 1 ? 1 : cores > 1024 ? 1024 : (int)cores;
	assert_int_equal(kiln_rt_default_threads(), fallback);
	static const struct {
		const char *value;
		int want; /* 0: the number of cores */
	} cases[] = {
		{"3", 3},  {"1", 1},  {"1024", 1024}, {"0", 0},   {"-2", 0},   {"abc", 0},
		{"3x", 0}, {" 3", 0}, {"+3", 0},       {"", 0},    {"1025", 0}, {"99999999999999999999", 0},
	};
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		setenv("KILN_NUM_THREADS", cases[i].value, 1);
		int got = kiln_rt_default_threads();
		if (got != (cases[i].want ? cases[i].want : fallback))
			fail_msg("KILN_NUM_THREADS='%s': %d threads", cases[i].value, got);
	}
	setenv("KILN_NUM_THREADS", "3", 1);
	kiln_rt_model_t *m = load_ok("par.so");
	kiln_rt_session_t *s;
	assert_int_equal(kiln_rt_session_create(m, NULL, &s), KILN_RT_OK);
	assert_int_equal(kiln_rt_session_n_threads(s), 3);
	assert_int_equal(kiln_rt_session_bytes(m, 0), kiln_rt_session_bytes(m, 3));
	par_result r;
	assert_int_equal(run_par(s, 10, &r), KILN_RT_OK);
	assert_true(par_ok(&r, 10, 3));
	kiln_rt_session_free(s);
	kiln_rt_model_free(m);
	if (saved)
		setenv("KILN_NUM_THREADS", saved, 1);
	else
		unsetenv("KILN_NUM_THREADS");
	free(saved);
}

static void test_status_str(void **state)
{
	(void)state;
	for (int a = 0; a < KILN_RT_STATUS_COUNT; a++) {
		assert_true(strlen(kiln_rt_status_str((kiln_rt_status)a)) > 1);
		for (int b = 0; b < a; b++)
			assert_string_not_equal(kiln_rt_status_str((kiln_rt_status)a),
			                        kiln_rt_status_str((kiln_rt_status)b));
	}
	assert_string_equal(kiln_rt_status_str(KILN_RT_OK), "ok");
	assert_string_equal(kiln_rt_status_str(KILN_RT_STATUS_COUNT), "unknown status");
	assert_string_equal(kiln_rt_status_str((kiln_rt_status)-1), "unknown status");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_add_success),
		cmocka_unit_test(test_run_errors),
		cmocka_unit_test(test_entry_error),
		cmocka_unit_test(test_load_io),
		cmocka_unit_test(test_load_truncated),
		cmocka_unit_test(test_load_foreign),
		cmocka_unit_test(test_load_relative),
		cmocka_unit_test(test_load_abi),
		cmocka_unit_test(test_host_sgemm),
		cmocka_unit_test(test_load_cpu),
		cmocka_unit_test(test_from_abi),
		cmocka_unit_test(test_parallel_for),
		cmocka_unit_test(test_caller_memory),
		cmocka_unit_test(test_concurrent_sessions),
		cmocka_unit_test(test_num_threads_env),
		cmocka_unit_test(test_status_str),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
