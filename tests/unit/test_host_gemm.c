/* test_host_gemm.c — kiln_compile_opts.host_gemm end to end: a graph with a
 * Conv, a batched MatMul and a Gemm compiled through LLVM to a .so, loaded by
 * libkiln_rt and run with a reference sgemm, checked against the
 * interpreter. Also: the descriptor's flag, the session refused without an
 * sgemm, the artefact still importing nothing but glibc, and -O2, where the
 * fused Conv keeps kiln's own GEMM (fewer sgemm calls). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ir.h"
#include "kiln_rt.h"

typedef struct ref_blas {
	int calls;
	int bad; /* calls breaking the kiln_abi_sgemm_fn contract */
} ref_blas;

static void ref_sgemm(void *user, int32_t ta, int32_t tb, int64_t m, int64_t n, int64_t k,
                      float alpha, const float *a, int64_t lda, const float *b, int64_t ldb,
                      float beta, float *c, int64_t ldc)
{
	ref_blas *r = user;
	__atomic_fetch_add(&r->calls, 1, __ATOMIC_RELAXED);
	if (m < 1 || n < 1 || k < 1 || lda < (ta ? m : k) || ldb < (tb ? k : n) || ldc < n) {
		__atomic_fetch_add(&r->bad, 1, __ATOMIC_RELAXED);
		return;
	}
	for (int64_t i = 0; i < m; i++)
		for (int64_t j = 0; j < n; j++) {
			double acc = 0;
			for (int64_t p = 0; p < k; p++)
				acc += (double)(ta ? a[p * lda + i] : a[i * lda + p]) *
				       (double)(tb ? b[j * ldb + p] : b[p * ldb + j]);
			float *y = &c[i * ldc + j];
			*y = (float)(alpha * acc + (beta == 0.0f ? 0.0 : (double)beta * *y));
		}
}

static uint64_t rng = 0x853c49e6748fea9bull;

static float uniform(void)
{
	rng = rng * 6364136223846793005ull + 1442695040888963407ull;
	return (float)((double)(rng >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static kiln_value *const_rand(kiln_graph *g, int rank, const int64_t *dims)
{
	kiln_type t = {.dtype = KILN_DT_F32, .rank = rank};
	memcpy(t.dims, dims, (size_t)rank * sizeof *dims);
	kiln_value *v = kiln_graph_add_const(g, NULL, &t, NULL);
	assert_non_null(v);
	for (int64_t i = 0; i < kiln_type_numel(&t); i++)
		((float *)v->data)[i] = uniform();
	return v;
}

static kiln_value *input(kiln_graph *g, int rank, const int64_t *dims)
{
	kiln_type t = {.dtype = KILN_DT_F32, .rank = rank};
	memcpy(t.dims, dims, (size_t)rank * sizeof *dims);
	kiln_value *v = kiln_graph_add_input(g, NULL, &t);
	assert_non_null(v);
	return v;
}

static kiln_node *node(kiln_graph *g, kiln_op op, kiln_value *const *ins, int n_in)
{
	kiln_node *n = kiln_graph_add_node(g, op, NULL, ins, n_in, NULL, 1);
	assert_non_null(n);
	return n;
}

#define DIMS(...) ((const int64_t[]){__VA_ARGS__})

/* x [2,3,7,7] -> Conv (W [6,3,3,3], bias, pads 1, stride 2) -> Relu ->
 * MatMul with [4,5] -> y [2,6,4,5]; a [3,8] -> Gemm (B [5,8]^T, C [5],
 * alpha 0.5) -> z [3,5]. */
static kiln_graph *build(void)
{
	kiln_graph *g = kiln_graph_create("hostgemm", NULL);
	assert_non_null(g);
	kiln_value *x = input(g, 4, DIMS(2, 3, 7, 7)), *a = input(g, 2, DIMS(3, 8));
	kiln_value *cin[3] = {x, const_rand(g, 4, DIMS(6, 3, 3, 3)), const_rand(g, 1, DIMS(6))};
	kiln_node *conv = node(g, KILN_OP_CONV, cin, 3);
	kiln_node_set_ints(g, conv, "pads", DIMS(1, 1, 1, 1), 4);
	kiln_node_set_ints(g, conv, "strides", DIMS(2, 2), 2);
	kiln_node *relu = node(g, KILN_OP_RELU, conv->outputs, 1);
	kiln_value *min[2] = {relu->outputs[0], const_rand(g, 2, DIMS(4, 5))};
	kiln_node *mm = node(g, KILN_OP_MATMUL, min, 2);
	kiln_value *gin[3] = {a, const_rand(g, 2, DIMS(5, 8)), const_rand(g, 1, DIMS(5))};
	kiln_node *gemm = node(g, KILN_OP_GEMM, gin, 3);
	kiln_node_set_int(g, gemm, "transB", 1);
	kiln_node_set_float(g, gemm, "alpha", 0.5f);
	assert_int_equal(kiln_graph_add_output(g, mm->outputs[0]), KILN_OK);
	assert_int_equal(kiln_graph_add_output(g, gemm->outputs[0]), KILN_OK);
	kiln_diag d;
	kiln_diag_init(&d, NULL);
	d.fn = NULL;
	assert_int_equal(kiln_infer_shapes(g, &d), KILN_OK);
	assert_int_equal(kiln_graph_verify(g, &d), KILN_OK);
	return g;
}

/* Compiles g with host GEMM (passes: NULL for -O2's), runs it at 1 and 3
 * threads and checks the outputs and the sgemm calls per run. */
static void run_case(const kiln_graph *g, const char *passes, int want_calls)
{
	char dir[] = "/tmp/kiln-test-hostgemm-XXXXXX", so[128], cmd[300];
	assert_non_null(mkdtemp(dir));
	snprintf(so, sizeof so, "%s/m.so", dir);
	kiln_compile_opts o = {.opt_level = 2, .passes = passes, .host_gemm = true};
	kiln_diag d;
	kiln_diag_init(&d, NULL);
	d.fn = NULL;
	kiln_compiled *c = NULL;
	assert_int_equal(kiln_compile(g, &o, &c, &d), KILN_OK);
	assert_int_equal(kiln_compiled_emit(c, KILN_EMIT_SO, so, &d), KILN_OK);
	kiln_compiled_destroy(c);

	/* the sgemm comes through the host: no new imports */
	snprintf(cmd, sizeof cmd, "nm -D --undefined-only '%s' | grep -v ' w ' | grep -vc @GLIBC_",
	         so);
	FILE *p = popen(cmd, "r");
	assert_non_null(p);
	int foreign = -1;
	assert_int_equal(fscanf(p, "%d", &foreign), 1);
	pclose(p);
	assert_int_equal(foreign, 0);

	char err[512];
	kiln_rt_model_t *m = NULL;
	assert_int_equal(kiln_rt_model_load(so, &m, err, sizeof err), KILN_RT_OK);
	unlink(so);
	rmdir(dir);
	assert_int_equal(kiln_rt_model_abi(m)->flags, KILN_ABI_FLAG_HOST_SGEMM);
	kiln_rt_session_t *s = NULL;
	kiln_rt_session_opts so_opts = {.n_threads = 1};
	assert_int_equal(kiln_rt_session_create(m, &so_opts, &s), KILN_RT_ERR_NO_SGEMM);
	assert_null(s);

	float x[2 * 3 * 7 * 7], a[3 * 8];
	for (size_t i = 0; i < sizeof x / sizeof *x; i++)
		x[i] = uniform();
	for (size_t i = 0; i < sizeof a / sizeof *a; i++)
		a[i] = uniform();
	kiln_tensor ins[2] = {{.type = g->inputs[0]->type, .data = x},
	                      {.type = g->inputs[1]->type, .data = a}};
	kiln_interp *it = NULL;
	assert_int_equal(kiln_interp_create(g, &it, &d), KILN_OK);
	assert_int_equal(kiln_interp_run(it, ins, 2, &d), KILN_OK);
	const float *ry = kiln_interp_output(it, 0)->data, *rz = kiln_interp_output(it, 1)->data;

	for (int th = 1; th <= 3; th += 2) {
		ref_blas r = {0};
		so_opts = (kiln_rt_session_opts){.n_threads = th, .sgemm = ref_sgemm, .sgemm_user = &r};
		assert_int_equal(kiln_rt_session_create(m, &so_opts, &s), KILN_RT_OK);
		float y[2 * 6 * 4 * 5], z[3 * 5];
		const void *in[2] = {x, a};
		void *out[2] = {y, z};
		assert_int_equal(kiln_rt_session_run_raw(s, in, out), KILN_RT_OK);
		assert_int_equal(r.bad, 0);
		assert_int_equal(r.calls, want_calls);
		for (size_t i = 0; i < sizeof y / sizeof *y; i++)
			assert_float_equal(y[i], ry[i], 1e-4 + 1e-4 * (ry[i] < 0 ? -ry[i] : ry[i]));
		for (size_t i = 0; i < sizeof z / sizeof *z; i++)
			assert_float_equal(z[i], rz[i], 1e-5 + 1e-4 * (rz[i] < 0 ? -rz[i] : rz[i]));
		kiln_rt_session_free(s);
	}
	kiln_interp_destroy(it);
	kiln_rt_model_free(m);
}

/* No passes: Conv (one sgemm per image), MatMul (batch folded: one), Gemm. */
static void test_unfused(void **state)
{
	(void)state;
	kiln_graph *g = build();
	run_case(g, "", 4);
	kiln_graph_destroy(g);
}

/* -O2: Conv + Relu fuse and keep kiln's GEMM; MatMul and Gemm still call
 * the host. */
static void test_fused(void **state)
{
	(void)state;
	kiln_graph *g = build();
	run_case(g, NULL, 2);
	kiln_graph_destroy(g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_unfused),
		cmocka_unit_test(test_fused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
