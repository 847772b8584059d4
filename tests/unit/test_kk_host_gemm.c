/* test_kk_host_gemm.c — the host-GEMM lowerings and kernels
 * (kiln_compile_opts.host_gemm: kk_gemm_host_f32, kk_conv_host_f32) against
 * the interpreter, through kharness with a reference sgemm.
 *
 * The reference sgemm computes in double, checks every call against the
 * kiln_abi_sgemm_fn contract (sizes >= 1, leading dimensions large enough,
 * as OpenBLAS requires) and counts the calls, so each case also checks how
 * many products the kernel hands to the host: one per Gemm, one per matrix
 * of a MatMul's broadcast batch (one when the batch folds into A's rows),
 * one per image and group of a Conv, none for what keeps kiln's kernels
 * (depthwise Conv, other dtypes, fused products). Every case runs at 1 and
 * 3 threads; f32 is compared with rtol 1e-4 and atol 2e-4. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "interp.h"
#include "kharness.h"

typedef struct ref_blas {
	int calls;
	int bad; /* calls breaking the contract */
} ref_blas;

static void ref_sgemm(void *user, int32_t ta, int32_t tb, int64_t m, int64_t n, int64_t k,
                      float alpha, const float *a, int64_t lda, const float *b, int64_t ldb,
                      float beta, float *c, int64_t ldc)
{
	ref_blas *r = user;
	r->calls++;
	if (m < 1 || n < 1 || k < 1 || lda < (ta ? m : k) || ldb < (tb ? k : n) || ldc < n) {
		r->bad++;
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

static uint64_t seed = 0x9e3779b97f4a7c15ull;

/* A graph input, or a constant in [-2, 2) when konst. */
static kiln_value *operand(kiln_graph *g, bool konst, int rank, const int64_t *dims)
{
	return konst ? kh_const_rand(g, &seed, rank, dims, -2, 2)
	             : kh_input(g, KILN_DT_F32, rank, dims);
}

/* Checks g with host GEMM at 1 and 3 threads: results, the contract, and
 * want sgemm calls per run. Destroys g. */
static void check(kiln_graph *g, const char *what, int want)
{
	kh_typecheck(g, what);
	kh_opts o = kh_defaults();
	o.rtol = 1e-4;
	o.atol = 2e-4;
	ref_blas r;
	o.sgemm = ref_sgemm;
	o.sgemm_user = &r;
	char msg[1024];
	for (int th = 1; th <= 3; th += 2) {
		r = (ref_blas){0};
		o.threads = th;
		o.seed = (uint64_t)th * 7 + 1;
		if (kh_run(g, &o, msg, sizeof msg) != KILN_OK) {
			kiln_graph_destroy(g);
			fail_msg("%s (threads %d): %s", what, th, msg);
		}
		if (r.bad || r.calls != want) {
			kiln_graph_destroy(g);
			fail_msg("%s (threads %d): %d sgemm calls (%d breaking the contract), expected %d",
			         what, th, r.calls, r.bad, want);
		}
	}
	kiln_graph_destroy(g);
}

/* ---- Gemm ---------------------------------------------------------------- */

/* c_shape: -1 no C; 0 scalar; 1 [N]; 2 [M,N]; 3 [M,1]; 4 [1,N]; 5 [1,1]. */
static void gemm_case(int64_t m, int64_t n, int64_t k, bool ta, bool tb, double alpha,
                      double beta, int c_shape, bool const_b)
{
	kiln_graph *g = kh_graph();
	kiln_value *in[3];
	in[0] = ta ? operand(g, false, SHAPE(k, m)) : operand(g, false, SHAPE(m, k));
	in[1] = tb ? operand(g, const_b, SHAPE(n, k)) : operand(g, const_b, SHAPE(k, n));
	int n_in = 2;
	switch (c_shape) {
	case 0: in[n_in++] = kh_input(g, KILN_DT_F32, 0, NULL); break;
	case 1: in[n_in++] = operand(g, true, SHAPE(n)); break;
	case 2: in[n_in++] = operand(g, false, SHAPE(m, n)); break;
	case 3: in[n_in++] = operand(g, false, SHAPE(m, 1)); break;
	case 4: in[n_in++] = operand(g, true, SHAPE(1, n)); break;
	case 5: in[n_in++] = operand(g, false, SHAPE(1, 1)); break;
	default: break;
	}
	kiln_node *nd = kh_add(g, KILN_OP_GEMM, in, n_in, 1);
	if (ta)
		kiln_node_set_int(g, nd, "transA", 1);
	if (tb)
		kiln_node_set_int(g, nd, "transB", 1);
	if (alpha != 1.0)
		kiln_node_set_float(g, nd, "alpha", (float)alpha);
	if (beta != 1.0)
		kiln_node_set_float(g, nd, "beta", (float)beta);
	char what[160];
	snprintf(what, sizeof what, "Gemm %lldx%lldx%lld ta%d tb%d alpha %g beta %g C %d const B %d",
	         (long long)m, (long long)n, (long long)k, ta, tb, alpha, beta, c_shape, const_b);
	check(g, what, m && n && k ? 1 : 0);
}

static void test_gemm_host(void **state)
{
	(void)state;
	static const int64_t sizes[][3] = {{1, 1, 1}, {3, 17, 33}, {100, 5, 7}, {17, 64, 1},
	                                   {1, 40, 300}, {33, 1, 9}};
	for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++)
		for (int t = 0; t < 4; t++)
			gemm_case(sizes[s][0], sizes[s][1], sizes[s][2], t & 1, t & 2, 1.0, 1.0, -1,
			          t == 2);
	for (int c = 0; c <= 5; c++) {
		gemm_case(7, 9, 5, false, true, 0.5, 2.0, c, true);
		gemm_case(7, 9, 5, true, false, 1.0, 1.0, c, false);
		gemm_case(1, 9, 5, true, true, -1.5, 0.25, c, false);
	}
	/* beta 0: C does not count */
	gemm_case(6, 4, 3, false, false, 2.0, 0.0, 2, true);
	/* the MLP's layers */
	gemm_case(1, 512, 784, false, true, 1.0, 1.0, 1, true);
	gemm_case(2, 10, 128, false, true, 1.0, 1.0, 1, true);
}

/* ---- MatMul -------------------------------------------------------------- */

static void matmul_case(int ra, const int64_t *da, int rb, const int64_t *db, bool const_b,
                        int want)
{
	kiln_graph *g = kh_graph();
	kiln_value *in[2] = {operand(g, false, ra, da), operand(g, const_b, rb, db)};
	kh_add(g, KILN_OP_MATMUL, in, 2, 1);
	char what[128];
	snprintf(what, sizeof what, "MatMul rank %d [%lld...] x rank %d [%lld...] const B %d", ra,
	         (long long)da[0], rb, (long long)db[0], const_b);
	check(g, what, want);
}

static void test_matmul_host(void **state)
{
	(void)state;
	for (int cb = 0; cb < 2; cb++) {
		matmul_case(SHAPE(3, 4), SHAPE(4, 5), cb, 1);
		matmul_case(SHAPE(13, 40), SHAPE(40, 35), cb, 1);
		/* 1-D operands */
		matmul_case(SHAPE(4), SHAPE(4, 5), cb, 1);
		matmul_case(SHAPE(3, 4), SHAPE(4), cb, 1);
		matmul_case(SHAPE(33), SHAPE(33), cb, 1);
		matmul_case(SHAPE(7), SHAPE(3, 7, 5), cb, 3);
		/* batches: full, broadcast on either side, both */
		matmul_case(SHAPE(2, 3, 4, 5), SHAPE(2, 3, 5, 6), cb, 6);
		matmul_case(SHAPE(2, 1, 3, 4), SHAPE(5, 4, 6), cb, 10);
		matmul_case(SHAPE(1, 3, 4), SHAPE(2, 4, 5), cb, 2);
		matmul_case(SHAPE(3, 4), SHAPE(2, 4, 5), cb, 2);
		matmul_case(SHAPE(2, 3, 1, 6, 4), SHAPE(3, 2, 4, 3), cb, 12);
		/* a 2-D B folds the batch into A's rows: one call */
		matmul_case(SHAPE(2, 3, 7, 4), SHAPE(4, 5), cb, 1);
		matmul_case(SHAPE(3, 4, 7), SHAPE(7), cb, 1);
		matmul_case(SHAPE(1, 128, 64), SHAPE(64, 192), cb, 1);
	}
	/* empty products call nothing */
	matmul_case(SHAPE(0, 4), SHAPE(4, 3), false, 0);
	matmul_case(SHAPE(3, 0), SHAPE(0, 5), false, 0);
	matmul_case(SHAPE(2, 3, 0), SHAPE(2, 0, 5), false, 0);
}

/* ---- Conv ---------------------------------------------------------------- */

typedef struct conv_spec {
	int ns; /* spatial dims */
	int64_t n, c, m, group;
	int64_t in[3], k[3];
	int64_t strides[3], dil[3], pads[6]; /* 0: attribute omitted */
	bool bias;
} conv_spec;

static void conv_case(const conv_spec *s, bool const_w, int want)
{
	kiln_graph *g = kh_graph();
	int64_t xd[5] = {s->n, s->c}, wd[5] = {s->m, s->c / s->group};
	for (int i = 0; i < s->ns; i++) {
		xd[2 + i] = s->in[i];
		wd[2 + i] = s->k[i];
	}
	kiln_value *in[3] = {operand(g, false, 2 + s->ns, xd), operand(g, const_w, 2 + s->ns, wd)};
	int n_in = 2;
	if (s->bias)
		in[n_in++] = operand(g, true, SHAPE(s->m));
	kiln_node *nd = kh_add(g, KILN_OP_CONV, in, n_in, 1);
	if (s->group != 1)
		kiln_node_set_int(g, nd, "group", s->group);
	if (s->strides[0])
		kiln_node_set_ints(g, nd, "strides", s->strides, s->ns);
	if (s->dil[0])
		kiln_node_set_ints(g, nd, "dilations", s->dil, s->ns);
	if (s->pads[0] || s->pads[1] || s->pads[2] || s->pads[3] || s->pads[4] || s->pads[5])
		kiln_node_set_ints(g, nd, "pads", s->pads, 2 * s->ns);
	char what[160];
	snprintf(what, sizeof what, "Conv %dD n%lld c%lld m%lld g%lld in %lld k %lld s %lld d %lld "
	         "const W %d", s->ns, (long long)s->n, (long long)s->c, (long long)s->m,
	         (long long)s->group, (long long)s->in[0], (long long)s->k[0],
	         (long long)s->strides[0], (long long)s->dil[0], const_w);
	check(g, what, want);
}

/* With constant and input weights; one sgemm per image and group. */
static void conv_both(conv_spec s)
{
	conv_case(&s, true, (int)(s.n * s.group));
	conv_case(&s, false, (int)(s.n * s.group));
}

static void test_conv_host(void **state)
{
	(void)state;
	/* 3x3, padding 1, bias, two images */
	conv_both((conv_spec){.ns = 2, .n = 2, .c = 3, .m = 5, .group = 1, .in = {9, 11},
	                      .k = {3, 3}, .pads = {1, 1, 1, 1}, .bias = true});
	/* 1x1 read in place (no im2col), and with stride 2 */
	conv_both((conv_spec){.ns = 2, .n = 2, .c = 30, .m = 17, .group = 1, .in = {5, 7},
	                      .k = {1, 1}});
	conv_both((conv_spec){.ns = 2, .n = 1, .c = 8, .m = 13, .group = 1, .in = {9, 8},
	                      .k = {1, 1}, .strides = {2, 2}, .bias = true});
	/* 1x1 with padding: not in place */
	conv_both((conv_spec){.ns = 2, .n = 1, .c = 4, .m = 3, .group = 1, .in = {3, 5},
	                      .k = {1, 1}, .pads = {1, 2, 0, 1}, .bias = true});
	/* strides, dilations, asymmetric pads */
	conv_both((conv_spec){.ns = 2, .n = 1, .c = 32, .m = 14, .group = 1, .in = {12, 10},
	                      .k = {3, 3}, .strides = {2, 1}, .dil = {1, 2}, .pads = {0, 2, 1, 1},
	                      .bias = true});
	/* groups (not depthwise), with and without bias */
	conv_both((conv_spec){.ns = 2, .n = 2, .c = 6, .m = 9, .group = 3, .in = {7, 7},
	                      .k = {3, 2}, .pads = {1, 0, 1, 1}, .bias = true});
	conv_both((conv_spec){.ns = 2, .n = 1, .c = 6, .m = 4, .group = 2, .in = {17, 19},
	                      .k = {3, 3}, .strides = {2, 2}, .dil = {2, 3}, .pads = {1, 2, 2, 1}});
	/* a 7x7 stride-2 stem */
	conv_both((conv_spec){.ns = 2, .n = 1, .c = 3, .m = 20, .group = 1, .in = {30, 45},
	                      .k = {7, 7}, .strides = {2, 2}, .pads = {3, 3, 3, 3}, .bias = true});
	/* stride above the kernel, pads wider than the kernel: rows and
	 * columns entirely in the padding */
	conv_both((conv_spec){.ns = 2, .n = 1, .c = 6, .m = 5, .group = 1, .in = {17, 19},
	                      .k = {2, 1}, .strides = {3, 2}, .pads = {3, 0, 4, 1}, .bias = true});
	conv_both((conv_spec){.ns = 2, .n = 1, .c = 2, .m = 3, .group = 1, .in = {2, 2},
	                      .k = {1, 1}, .pads = {3, 3, 3, 3}, .bias = true});
	/* kernel as large as the input: one output position */
	conv_both((conv_spec){.ns = 2, .n = 2, .c = 7, .m = 30, .group = 1, .in = {5, 4},
	                      .k = {5, 4}, .bias = true});
	/* 1-D and 3-D */
	conv_both((conv_spec){.ns = 1, .n = 2, .c = 3, .m = 7, .group = 1, .in = {40}, .k = {5},
	                      .strides = {3}, .dil = {2}, .pads = {4, 1}, .bias = true});
	conv_both((conv_spec){.ns = 1, .n = 1, .c = 4, .m = 4, .group = 2, .in = {9}, .k = {1}});
	conv_both((conv_spec){.ns = 3, .n = 1, .c = 4, .m = 6, .group = 2, .in = {5, 6, 7},
	                      .k = {3, 2, 3}, .strides = {1, 2, 1}, .pads = {1, 0, 1, 1, 1, 0},
	                      .bias = true});
	conv_both((conv_spec){.ns = 3, .n = 2, .c = 3, .m = 2, .group = 1, .in = {4, 3, 5},
	                      .k = {2, 2, 2}, .dil = {2, 1, 2}, .pads = {1, 1, 0, 0, 1, 1}});
	/* depthwise (with a channel multiplier too) keeps kk_conv_dw_f32 */
	conv_case(&(conv_spec){.ns = 2, .n = 2, .c = 5, .m = 5, .group = 5, .in = {9, 13},
	                       .k = {3, 3}, .pads = {1, 1, 1, 1}, .bias = true},
	          true, 0);
	conv_case(&(conv_spec){.ns = 2, .n = 1, .c = 3, .m = 6, .group = 3, .in = {11, 23},
	                       .k = {3, 5}, .strides = {2, 2}, .pads = {2, 1, 0, 3}},
	          false, 0);
}

/* ---- which kernel each node gets ------------------------------------------- */

/* The kernel chosen for g's first node with or without host GEMM, and
 * whether the lowering replaced (packed) any input. */
static const char *lowered(kiln_graph *g, bool host, bool *packed)
{
	kh_typecheck(g, "lowered");
	kiln_cpu_target t = {.vl = KK_VL, .arch = KILN_CPU_ARCH_X86_64, .host_gemm = host};
	kiln_arena *a = kiln_arena_create(NULL);
	kiln_kcall *c = calloc(1, sizeof *c);
	assert_non_null(a);
	assert_non_null(c);
	c->arena = a;
	kiln_diag d;
	kiln_diag_init(&d, NULL);
	d.fn = NULL;
	assert_int_equal(kiln_cpu_lower(g->nodes[0], &t, c, &d), KILN_OK);
	const char *fn = c->fn; /* a string literal */
	*packed = false;
	for (int i = 0; i < KILN_KCALL_MAX_T; i++)
		*packed = *packed || c->repl[i];
	free(c);
	kiln_arena_destroy(a);
	return fn;
}

static void test_kernel_choice(void **state)
{
	(void)state;
	bool packed;
	/* f32 Gemm with constant weights: plain weights for the host, packed for kiln */
	kiln_graph *g = kh_graph();
	kiln_value *in[3] = {kh_input(g, KILN_DT_F32, SHAPE(2, 8)), operand(g, true, SHAPE(8, 5))};
	kh_add(g, KILN_OP_GEMM, in, 2, 1);
	assert_string_equal(lowered(g, true, &packed), "kk_gemm_host_f32");
	assert_false(packed);
	assert_string_equal(lowered(g, false, &packed), "kk_gemm_f32");
	assert_true(packed);
	kiln_graph_destroy(g);
	/* other dtypes keep their kernels */
	g = kh_graph();
	in[0] = kh_input(g, KILN_DT_F64, SHAPE(2, 8));
	in[1] = kh_input(g, KILN_DT_F64, SHAPE(8, 5));
	kh_add(g, KILN_OP_MATMUL, in, 2, 1);
	assert_string_equal(lowered(g, true, &packed), "kk_gemm_any");
	kiln_graph_destroy(g);
	/* Conv: im2col on the host; depthwise keeps its own kernel */
	g = kh_graph();
	in[0] = kh_input(g, KILN_DT_F32, SHAPE(1, 4, 6, 6));
	in[1] = operand(g, true, SHAPE(8, 4, 3, 3));
	kh_add(g, KILN_OP_CONV, in, 2, 1);
	assert_string_equal(lowered(g, true, &packed), "kk_conv_host_f32");
	assert_false(packed);
	kiln_graph_destroy(g);
	g = kh_graph();
	in[0] = kh_input(g, KILN_DT_F32, SHAPE(1, 4, 6, 6));
	in[1] = operand(g, true, SHAPE(4, 1, 3, 3));
	kiln_node *nd = kh_add(g, KILN_OP_CONV, in, 2, 1);
	kiln_node_set_int(g, nd, "group", 4);
	assert_string_equal(lowered(g, true, &packed), "kk_conv_dw_f32");
	kiln_graph_destroy(g);
}

/* A fused Conv + bias + Relu keeps kiln's GEMM and its epilogue: no sgemm. */
static void test_fused_keeps_kiln(void **state)
{
	(void)state;
	kiln_graph *g = kh_graph();
	kiln_value *in[3] = {kh_input(g, KILN_DT_F32, SHAPE(1, 3, 8, 8)),
	                     operand(g, true, SHAPE(6, 3, 3, 3)), operand(g, true, SHAPE(6))};
	kiln_node *conv = kiln_graph_add_node(g, KILN_OP_CONV, NULL, in, 3, NULL, 1);
	assert_non_null(conv);
	kiln_node *relu = kiln_graph_add_node(g, KILN_OP_RELU, NULL, conv->outputs, 1, NULL, 1);
	assert_non_null(relu);
	assert_int_equal(kiln_graph_add_output(g, relu->outputs[0]), KILN_OK);
	kh_typecheck(g, "Conv+Relu");
	kiln_diag d;
	kiln_diag_init(&d, NULL);
	d.fn = NULL;
	kiln_opt_opts oo = {.passes = "fuse-output"};
	assert_int_equal(kiln_optimize(g, &oo, &d), KILN_OK);
	assert_int_equal(g->n_nodes, 1);
	assert_int_equal(g->nodes[0]->op, KILN_OP_FUSION);
	bool packed;
	assert_null(strstr(lowered(g, true, &packed), "host"));
	check(g, "fused Conv+Relu with host GEMM", 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_gemm_host),
		cmocka_unit_test(test_matmul_host),
		cmocka_unit_test(test_conv_host),
		cmocka_unit_test(test_kernel_choice),
		cmocka_unit_test(test_fused_keeps_kiln),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
