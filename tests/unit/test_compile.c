/* test_compile.c — kiln_compile end to end: a graph compiled to every form,
 * the .so loaded and run through libkiln_rt and checked against the
 * interpreter, the artefact's symbols (one export, only libc/libm imports),
 * the generated header compiled into a real C program, and the compile
 * errors users can cause (bad CPU, target, level; elided weights; a failing
 * linker; an unwritable path), each leaving no output behind. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ir.h"
#include "kiln_rt.h"

static const char tiny_kir[] =
	"graph @tiny opset 21 {\n"
	"  input %x : f32[2,3]\n"
	"  const %b : f32[3] = dense<[1.0, -2.0, 0.5]>\n"
	"  %r : f32[2,3] = Relu @relu (%x)\n"
	"  %y : f32[2,3] = Add @add (%r, %b)\n"
	"  %z : f32[2,3] = Mul @mul (%y, %y)\n"
	"  output %z\n"
	"  output %x\n"
	"  output %b\n"
	"  output %z\n"
	"}\n";

typedef struct fixture {
	char dir[256];
	kiln_graph *g;
	kiln_diag d;
} fixture;

static int setup(void **state)
{
	fixture *f = calloc(1, sizeof *f);
	snprintf(f->dir, sizeof f->dir, "%s/kiln-test-compile-XXXXXX",
	         getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	assert_non_null(mkdtemp(f->dir));
	kiln_diag_init(&f->d, "tiny.kir");
	f->d.fn = NULL;
	assert_int_equal(kiln_graph_parse(tiny_kir, "tiny.kir", &f->g, &f->d), KILN_OK);
	assert_int_equal(kiln_graph_verify(f->g, &f->d), KILN_OK);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fixture *f = *state;
	char cmd[512];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
	assert_int_equal(system(cmd), 0);
	kiln_graph_destroy(f->g);
	free(f);
	return 0;
}

static char *path_in(fixture *f, const char *name)
{
	static char buf[4][512]; /* test-local scratch, single-threaded tests */
	static int k;
	k = (k + 1) % 4;
	snprintf(buf[k], sizeof buf[k], "%s/%s", f->dir, name);
	return buf[k];
}

static char *run_capture(const char *cmd)
{
	FILE *p = popen(cmd, "r");
	assert_non_null(p);
	size_t cap = 1 << 16, len = 0;
	char *out = calloc(1, cap);
	size_t r;
	while ((r = fread(out + len, 1, cap - 1 - len, p)) > 0)
		len += r;
	pclose(p);
	return out;
}

static bool file_exists(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0;
}

/* Compiles at `level`, runs the .so, compares with hand-computed values. */
static void compile_and_run(fixture *f, int level, const char *cpu)
{
	kiln_compile_opts o = {.opt_level = level, .cpu = cpu};
	kiln_compiled *c = NULL;
	assert_int_equal(kiln_compile(f->g, &o, &c, &f->d), KILN_OK);
	const kiln_compile_stats *s = kiln_compiled_stats(c);
	/* -O2 and up: Relu, Add and Mul run as one loop fusion */
	assert_int_equal(s->n_kernels, level >= 2 ? 1 : 3);
	assert_true(s->weight_bytes >= 12);
	const char *so = path_in(f, "tiny.so");
	assert_int_equal(kiln_compiled_emit(c, KILN_EMIT_SO, so, &f->d), KILN_OK);
	kiln_compiled_destroy(c);

	char err[512];
	kiln_rt_model_t *m = NULL;
	assert_int_equal(kiln_rt_model_load(so, &m, err, sizeof err), KILN_RT_OK);
	assert_string_equal(kiln_rt_model_name(m), "tiny");
	assert_int_equal(kiln_rt_model_n_inputs(m), 1);
	assert_int_equal(kiln_rt_model_n_outputs(m), 4);
	assert_string_equal(kiln_rt_model_output(m, 2)->name, "b");
	kiln_rt_session_t *sess = NULL;
	kiln_rt_session_opts so_opts = {.n_threads = 2};
	assert_int_equal(kiln_rt_session_create(m, &so_opts, &sess), KILN_RT_OK);
	float x[6] = {-1, 0, 1, 2, -3, 4}, z[6], xo[6], bo[3], z2[6];
	const float b[3] = {1, -2, 0.5f};
	kiln_rt_tensor in = {.dtype = KILN_DT_F32, .rank = 2, .dims = {2, 3}, .data = x};
	kiln_rt_tensor out[4] = {
		{.dtype = KILN_DT_F32, .rank = 2, .dims = {2, 3}, .data = z},
		{.dtype = KILN_DT_F32, .rank = 2, .dims = {2, 3}, .data = xo},
		{.dtype = KILN_DT_F32, .rank = 1, .dims = {3}, .data = bo},
		{.dtype = KILN_DT_F32, .rank = 2, .dims = {2, 3}, .data = z2},
	};
	assert_int_equal(kiln_rt_session_run(sess, &in, 1, out, 4), KILN_RT_OK);
	for (int i = 0; i < 6; i++) {
		float y = (x[i] > 0 ? x[i] : 0) + b[i % 3];
		assert_float_equal(z[i], y * y, 1e-6);
		assert_float_equal(z2[i], y * y, 1e-6);
		assert_float_equal(xo[i], x[i], 0);
	}
	for (int i = 0; i < 3; i++)
		assert_float_equal(bo[i], b[i], 0);
	kiln_rt_session_free(sess);
	kiln_rt_model_free(m);
}

/* The descriptor lists the kernels in order; with a profile buffer each run
 * adds every kernel's time into it, and only while it is set. */
static void test_kernels_and_profile(void **state)
{
	fixture *f = *state;
	kiln_compile_opts o = {.opt_level = 2, .disable_passes = "fuse-loop"};
	kiln_compiled *c = NULL;
	assert_int_equal(kiln_compile(f->g, &o, &c, &f->d), KILN_OK);
	const char *so = path_in(f, "prof.so");
	assert_int_equal(kiln_compiled_emit(c, KILN_EMIT_SO, so, &f->d), KILN_OK);
	kiln_compiled_destroy(c);
	char err[512];
	kiln_rt_model_t *m = NULL;
	assert_int_equal(kiln_rt_model_load(so, &m, err, sizeof err), KILN_RT_OK);
	assert_int_equal(kiln_rt_model_n_kernels(m), 3);
	static const char *const names[] = {"relu", "add", "mul"}, *const ops[] = {"Relu", "Add", "Mul"};
	for (int k = 0; k < 3; k++) {
		const kiln_abi_kernel *ki = kiln_rt_model_kernel(m, k);
		assert_non_null(ki);
		assert_string_equal(ki->name, names[k]);
		assert_string_equal(ki->op, ops[k]);
		/* Relu reads x and writes r (24 B each); Add reads r and b (12 B) */
		assert_int_equal(ki->bytes, k == 1 ? 24 + 12 + 24 : 48);
		assert_int_equal(ki->flops, 6);
	}
	assert_null(kiln_rt_model_kernel(m, 3));
	assert_null(kiln_rt_model_kernel(m, -1));
	kiln_rt_session_t *s = NULL;
	assert_int_equal(kiln_rt_session_create(m, NULL, &s), KILN_RT_OK);
	float x[6] = {1, 2, 3, 4, 5, 6}, z[6], xo[6], bo[3], z2[6];
	const void *ins[1] = {x};
	void *outs[4] = {z, xo, bo, z2};
	double times[4] = {0, 0, 0, -7};
	kiln_rt_session_profile(s, times);
	for (int r = 0; r < 3; r++)
		assert_int_equal(kiln_rt_session_run_raw(s, ins, outs), KILN_RT_OK);
	for (int k = 0; k < 3; k++)
		assert_true(times[k] > 0 && times[k] < 1);
	assert_true(times[3] == -7); /* nothing past n_kernels */
	double before[3] = {times[0], times[1], times[2]};
	kiln_rt_session_profile(s, NULL);
	assert_int_equal(kiln_rt_session_run_raw(s, ins, outs), KILN_RT_OK);
	for (int k = 0; k < 3; k++)
		assert_true(times[k] == before[k]);
	kiln_rt_session_free(s);
	kiln_rt_model_free(m);
}

/* Elementwise kernels write over an input that dies at them: a chain of
 * five 4 KB tensors needs one 4 KB arena buffer, while a value still read
 * later (a, read again by the Add) is never overwritten. */
static void test_in_place(void **state)
{
	fixture *f = *state;
	static const char kir[] =
		"graph @chain opset 21 {\n"
		"  input %x : f32[1024]\n"
		"  %a : f32[1024] = Mul @mul (%x, %x)\n"
		"  %b : f32[1024] = Tanh @tanh (%a)\n"
		"  %c : f32[1024] = Neg @neg (%b)\n"
		"  %d : f32[1024] = Add @add (%c, %a)\n"
		"  %e : f32[1024] = Sigmoid @sig (%d)\n"
		"  %y : f32[1024] = Abs @abs (%e)\n"
		"  output %y\n"
		"}\n";
	kiln_graph *g = NULL;
	assert_int_equal(kiln_graph_parse(kir, "chain.kir", &g, &f->d), KILN_OK);
	kiln_compile_opts o = {.opt_level = 2, .disable_passes = "fuse-loop"};
	kiln_compiled *c = NULL;
	assert_int_equal(kiln_compile(g, &o, &c, &f->d), KILN_OK);
	const kiln_compile_stats *st = kiln_compiled_stats(c);
	assert_int_equal(st->intermediate_bytes, 5 * 4096);
	/* a and b live together (a is read by the Add), then c takes b's buffer,
	 * d takes c's (or a's), e and nothing else after: two buffers */
	assert_int_equal(st->arena_bytes, 2 * 4096);
	const char *so = path_in(f, "chain.so");
	assert_int_equal(kiln_compiled_emit(c, KILN_EMIT_SO, so, &f->d), KILN_OK);
	kiln_compiled_destroy(c);
	kiln_graph_destroy(g);
	char err[512];
	kiln_rt_model_t *m = NULL;
	assert_int_equal(kiln_rt_model_load(so, &m, err, sizeof err), KILN_RT_OK);
	kiln_rt_session_t *s = NULL;
	assert_int_equal(kiln_rt_session_create(m, NULL, &s), KILN_RT_OK);
	static float x[1024], y[1024];
	for (int i = 0; i < 1024; i++)
		x[i] = (float)(i - 512) / 256.0f;
	const void *ins[1] = {x};
	void *outs[1] = {y};
	assert_int_equal(kiln_rt_session_run_raw(s, ins, outs), KILN_RT_OK);
	for (int i = 0; i < 1024; i++) {
		double a = (double)x[i] * x[i], d = -tanh(a) + a;
		assert_float_equal(y[i], 1.0 / (1.0 + exp(-d)), 1e-6);
	}
	kiln_rt_session_free(s);
	kiln_rt_model_free(m);
}

static void test_levels(void **state)
{
	fixture *f = *state;
	for (int level = 0; level <= 3; level++)
		compile_and_run(f, level, NULL);
	compile_and_run(f, 2, "x86-64-v3");
	compile_and_run(f, 2, "generic");
}

/* The .so exports kiln_model only and imports only from glibc. */
static void test_symbols(void **state)
{
	fixture *f = *state;
	kiln_compiled *c = NULL;
	assert_int_equal(kiln_compile(f->g, NULL, &c, &f->d), KILN_OK);
	const char *so = path_in(f, "sym.so");
	assert_int_equal(kiln_compiled_emit(c, KILN_EMIT_SO, so, &f->d), KILN_OK);
	kiln_compiled_destroy(c);
	char cmd[700];
	snprintf(cmd, sizeof cmd, "nm -D --defined-only '%s'", so);
	char *def = run_capture(cmd);
	int n_defined = 0;
	for (char *line = strtok(def, "\n"); line; line = strtok(NULL, "\n")) {
		n_defined++;
		assert_non_null(strstr(line, " kiln_model"));
	}
	assert_int_equal(n_defined, 1);
	free(def);
	snprintf(cmd, sizeof cmd, "nm -D --undefined-only '%s'", so);
	char *undef = run_capture(cmd);
	for (char *line = strtok(undef, "\n"); line; line = strtok(NULL, "\n")) {
		bool weak = strstr(line, " w ") != NULL;
		if (!weak && !strstr(line, "@GLIBC_"))
			fail_msg("undefined symbol not from glibc: %s", line);
	}
	free(undef);
}

static char *slurp(const char *path)
{
	FILE *fp = fopen(path, "rb");
	assert_non_null(fp);
	fseek(fp, 0, SEEK_END);
	long n = ftell(fp);
	fseek(fp, 0, SEEK_SET);
	char *s = calloc(1, (size_t)n + 1);
	assert_int_equal(fread(s, 1, (size_t)n, fp), (size_t)n);
	fclose(fp);
	return s;
}

/* --emit obj/asm/llvm/header; the header drives a real C program. */
static void test_forms_and_header(void **state)
{
	fixture *f = *state;
	kiln_compiled *c = NULL;
	kiln_compile_opts o = {.opt_level = 2, .name = "tiny_net"};
	assert_int_equal(kiln_compile(f->g, &o, &c, &f->d), KILN_OK);
	assert_int_equal(kiln_compiled_emit(c, KILN_EMIT_LLVM, path_in(f, "t.ll"), &f->d), KILN_OK);
	assert_int_equal(kiln_compiled_emit(c, KILN_EMIT_ASM, path_in(f, "t.s"), &f->d), KILN_OK);
	assert_int_equal(kiln_compiled_emit(c, KILN_EMIT_OBJ, path_in(f, "t.o"), &f->d), KILN_OK);
	assert_int_equal(kiln_compiled_emit(c, KILN_EMIT_SO, path_in(f, "t.so"), &f->d), KILN_OK);
	assert_int_equal(kiln_compiled_emit(c, KILN_EMIT_HEADER, path_in(f, "t.h"), &f->d), KILN_OK);
	kiln_compiled_destroy(c);

	char *ll = slurp(path_in(f, "t.ll"));
	assert_non_null(strstr(ll, "@kiln_model = local_unnamed_addr constant"));
	assert_non_null(strstr(ll, "define internal"));
	assert_non_null(strstr(ll, "k0.relu"));
	free(ll);
	char *s = slurp(path_in(f, "t.s"));
	assert_non_null(strstr(s, "kiln_model:"));
	free(s);
	char *h = slurp(path_in(f, "t.h"));
	assert_non_null(strstr(h, "#define TINY_NET_INPUT_X_BYTES 24\n"));
	assert_non_null(strstr(h, "#define TINY_NET_OUTPUT_B_ELEMENTS 3\n"));
	assert_non_null(strstr(h, "static inline kiln_rt_status tiny_net_run(kiln_rt_session_t *s"));
	/* output 1 is input x again, output 3 repeats output 0: both renamed */
	assert_non_null(strstr(h, "\t\tfloat *x_1 /* f32[2,3] */,\n"));
	assert_non_null(strstr(h, "\t\tfloat *z_3 /* f32[2,3] */)\n"));
	free(h);

	/* A user program: static session memory from the header's macro. */
	FILE *fp = fopen(path_in(f, "main.c"), "w");
	assert_non_null(fp);
	fprintf(fp,
	        "#include <stdio.h>\n#include \"t.h\"\n"
	        "static unsigned char mem[TINY_NET_SESSION_BYTES(1)];\n"
	        "int main(void) {\n"
	        "  kiln_rt_model_t *m; char err[256];\n"
	        "  if (kiln_rt_model_load(\"%s\", &m, err, sizeof err)) { puts(err); return 1; }\n"
	        "  kiln_rt_session_opts o = {.n_threads = 1, .memory = mem, .memory_bytes = sizeof mem};\n"
	        "  kiln_rt_session_t *s;\n"
	        "  if (kiln_rt_session_create(m, &o, &s)) return 2;\n"
	        "  float x[6] = {1, 2, 3, -4, 5, -6}, z[6], xo[6], b[3], z2[6];\n"
	        "  if (tiny_net_run(s, x, z, xo, b, z2)) { puts(kiln_rt_session_error(s)); return 3; }\n"
	        "  printf(\"%%g %%g %%g\\n\", z[0], z[3], b[1]);\n"
	        "  kiln_rt_session_free(s); kiln_rt_model_free(m); return 0;\n}\n",
	        path_in(f, "t.so"));
	fclose(fp);
	/* Built against the runtime's sources with plain cc, as an embedded user
	 * would (the test build's libkiln_rt carries the sanitizers). */
	const char *src = getenv("KILN_SOURCE_DIR");
	if (!src) {
		fprintf(stderr, "[  SKIPPED ] header program: KILN_SOURCE_DIR not set\n");
		return;
	}
	char cmd[2048];
	snprintf(cmd, sizeof cmd,
	         "cc -std=c11 -O1 -D_GNU_SOURCE -I'%s/include' -I'%s/runtime' -I'%s' '%s' '%s'/runtime/*.c "
	         "-ldl -lpthread -lm -o '%s' 2>&1 && '%s'",
	         src, src, f->dir, path_in(f, "main.c"), src, path_in(f, "main"), path_in(f, "main"));
	char *out = run_capture(cmd);
	/* z = (relu(x) + b)^2: x0=1 -> (1+1)^2 = 4; x3=-4 -> (0+1)^2 = 1 */
	assert_string_equal(out, "4 1 -2\n");
	free(out);
}

/* aarch64 cross-compilation to an object (no cross linker needed). */
static void test_cross_object(void **state)
{
	fixture *f = *state;
	kiln_compile_opts o = {.triple = "aarch64-linux-gnu", .cpu = "generic", .opt_level = 2};
	kiln_compiled *c = NULL;
	assert_int_equal(kiln_compile(f->g, &o, &c, &f->d), KILN_OK);
	assert_int_equal(kiln_compiled_emit(c, KILN_EMIT_OBJ, path_in(f, "a64.o"), &f->d), KILN_OK);
	kiln_compiled_destroy(c);
	char *obj = slurp(path_in(f, "a64.o"));
	assert_memory_equal(obj, "\x7f" "ELF", 4);
	assert_int_equal((unsigned char)obj[18] | (unsigned char)obj[19] << 8, 183); /* EM_AARCH64 */
	free(obj);
}

static void expect_error(fixture *f, const kiln_compile_opts *o, kiln_status st, const char *msg)
{
	kiln_compiled *c = NULL;
	assert_int_equal(kiln_compile(f->g, o, &c, &f->d), st);
	assert_null(c);
	assert_string_equal(f->d.last, msg);
}

static void test_errors(void **state)
{
	fixture *f = *state;
	expect_error(f, &(kiln_compile_opts){.cpu = "pentium9000", .opt_level = 2},
	             KILN_ERR_INVALID_ARG,
	             "tiny.kir: unknown --cpu 'pentium9000' for x86_64-pc-linux-gnu (known: native,"
	             "generic,x86-64,x86-64-v2,x86-64-v3,x86-64-v4)");
	expect_error(f, &(kiln_compile_opts){.triple = "riscv64-linux-gnu", .opt_level = 2},
	             KILN_ERR_UNSUPPORTED,
	             "tiny.kir: target 'riscv64-unknown-linux-gnu' is not supported (x86_64-linux-gnu, "
	             "aarch64-linux-gnu)");
	expect_error(f, &(kiln_compile_opts){.triple = "aarch64-linux-gnu", .opt_level = 2},
	             KILN_ERR_INVALID_ARG,
	             "tiny.kir: --cpu native needs the host target; name a CPU for "
	             "'aarch64-unknown-linux-gnu' (e.g. generic)");
	expect_error(f, &(kiln_compile_opts){.opt_level = 7}, KILN_ERR_INVALID_ARG,
	             "tiny.kir: optimisation level -O7 (use 0..3)");

	/* Weights elided in the text IR cannot be compiled. */
	kiln_graph *g = NULL;
	const char *elided = "graph @e opset 21 {\n  input %x : f32[3]\n"
	                     "  const %b : f32[3] = elided<\"min 0 max 1\">\n"
	                     "  %y : f32[3] = Add @add (%x, %b)\n  output %y\n}\n";
	assert_int_equal(kiln_graph_parse(elided, "e.kir", &g, &f->d), KILN_OK);
	kiln_compiled *c = NULL;
	kiln_diag_init(&f->d, "e.kir");
	f->d.fn = NULL;
	assert_int_equal(kiln_compile(g, NULL, &c, &f->d), KILN_ERR_INVALID_MODEL);
	assert_string_equal(f->d.last, "e.kir: node 'add' (Add): constant 'b' has no data "
	                               "(elided in the text IR)");
	kiln_graph_destroy(g);
}

/* A failing linker or an unwritable folder: an error, and nothing written. */
static void test_no_partial_output(void **state)
{
	fixture *f = *state;
	kiln_compiled *c = NULL;
	assert_int_equal(kiln_compile(f->g, NULL, &c, &f->d), KILN_OK);
	const char *so = path_in(f, "bad.so");
	setenv("KILN_CC", "false", 1);
	kiln_diag_init(&f->d, so);
	f->d.fn = NULL;
	assert_int_equal(kiln_compiled_emit(c, KILN_EMIT_SO, so, &f->d), KILN_ERR_IO);
	unsetenv("KILN_CC");
	assert_non_null(strstr(f->d.last, "failed (set KILN_CC to another C compiler driver, or "
	                                  "use --emit obj)"));
	assert_false(file_exists(so));
	char *ls = run_capture("true");
	free(ls);
	char cmd[600];
	snprintf(cmd, sizeof cmd, "ls -A '%s'", f->dir);
	char *left = run_capture(cmd);
	assert_string_equal(left, "");
	free(left);
	assert_int_equal(kiln_compiled_emit(c, KILN_EMIT_OBJ, path_in(f, "no/such/dir/x.o"), &f->d),
	                 KILN_ERR_IO);
	kiln_compiled_destroy(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_levels, setup, teardown),
		cmocka_unit_test_setup_teardown(test_kernels_and_profile, setup, teardown),
		cmocka_unit_test_setup_teardown(test_in_place, setup, teardown),
		cmocka_unit_test_setup_teardown(test_symbols, setup, teardown),
		cmocka_unit_test_setup_teardown(test_forms_and_header, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cross_object, setup, teardown),
		cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_partial_output, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
