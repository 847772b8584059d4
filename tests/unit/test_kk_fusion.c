/* test_kk_fusion.c — the graph passes that change what the backend runs
 * (fold-batchnorm, fuse-output), checked numerically.
 *
 * Each case builds a product (Conv, Gemm, MatMul) with the ops that follow it
 * in real models (BatchNormalization, a residual Add, Relu or Clip), runs the
 * -O2 pipeline on a copy with the verifier after every pass, and checks
 *   1. what the passes made: one fusion node of kind output, no
 *      BatchNormalization left;
 *   2. that the rewrite keeps the meaning: the interpreter on the original
 *      and on the optimised graph agree (rtol 1e-5: folding rounds once);
 *   3. that the fused kernel is right: kharness runs the optimised graph
 *      through the CPU lowering and the native kernels (epilogue with
 *      residual and activation) against the interpreter, at 1 and 3 threads.
 * Shapes cover every convolution path (im2col, direct 1x1, strided 1x1,
 * depthwise, grouped, small output planes), odd sizes and batches. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "interp.h"
#include "kharness.h"

static uint64_t rng_state;

static kiln_value *const_rand(kiln_graph *g, int rank, const int64_t *dims, double lo, double hi)
{
	return kh_const_rand(g, &rng_state, rank, dims, lo, hi);
}

/* What follows the product. */
typedef struct tail {
	bool bn;       /* BatchNormalization on dim 1 */
	int bias;      /* 0 none, 1 Add(y, b), 2 Add(b, y): b a vector along the channel */
	int residual;  /* 0 none, 1 Add(y, r), 2 Add(r, y) */
	int act;       /* 0 none, 1 Relu, 2 Clip(0, 6), 3 Clip(min -0.5 only), 4 Gelu, 5 Gelu tanh */
} tail;

/* Appends the tail to y (the product's output; its channel is dim
 * channel_dim: 1 for a Conv, the last for Gemm and MatMul) and makes the
 * result the graph's output. */
static void finish(kiln_graph *g, kiln_value *y, const tail *t, int channel_dim)
{
	kiln_diag d;
	kiln_diag_init(&d, "test");
	assert_int_equal(kiln_infer_shapes(g, &d), KILN_OK);
	if (t->bn) {
		int64_t ch = y->type.dims[1];
		kiln_value *in[5] = {y, const_rand(g, SHAPE(ch), 0.5, 1.5),
		                     const_rand(g, SHAPE(ch), -0.5, 0.5),
		                     const_rand(g, SHAPE(ch), -0.5, 0.5),
		                     const_rand(g, SHAPE(ch), 0.5, 2.0)};
		kiln_node *bn;
		y = kh_op(g, KILN_OP_BATCH_NORM, in, 5, &bn);
		assert_int_equal(kiln_node_set_float(g, bn, "epsilon", 1e-3f), KILN_OK);
	}
	if (t->bias) {
		int ch = channel_dim;
		int64_t dims[KILN_MAX_RANK];
		int rank = ch == 1 ? y->type.rank - 1 : 1; /* [M,1,1] or [N] */
		for (int i = 0; i < rank; i++)
			dims[i] = i == 0 ? y->type.dims[ch] : 1;
		kiln_value *b = const_rand(g, rank, dims, -1, 1);
		kiln_value *in[2] = {t->bias == 1 ? y : b, t->bias == 1 ? b : y};
		y = kh_op(g, KILN_OP_ADD, in, 2, NULL);
	}
	if (t->residual) {
		kiln_value *r = kh_input(g, KILN_DT_F32, y->type.rank, y->type.dims);
		kiln_value *in[2] = {t->residual == 1 ? y : r, t->residual == 1 ? r : y};
		y = kh_op(g, KILN_OP_ADD, in, 2, NULL);
	}
	if (t->act == 1) {
		y = kh_op(g, KILN_OP_RELU, &y, 1, NULL);
	} else if (t->act >= 4) {
		kiln_node *gn;
		y = kh_op(g, KILN_OP_GELU, &y, 1, &gn);
		if (t->act == 5)
			assert_int_equal(kiln_node_set_string(g, gn, "approximate", "tanh"), KILN_OK);
	} else if (t->act >= 2) {
		kiln_value *in[3] = {y, kh_scalar(g, t->act == 2 ? 0.0f : -0.5f),
		                     t->act == 2 ? kh_scalar(g, 6.0f) : NULL};
		y = kh_op(g, KILN_OP_CLIP, in, t->act == 2 ? 3 : 2, NULL);
	}
	assert_int_equal(kiln_graph_add_output(g, y), KILN_OK);
	assert_int_equal(kiln_infer_shapes(g, &d), KILN_OK);
	assert_int_equal(kiln_graph_verify(g, &d), KILN_OK);
}


/* The -O2 pipeline on a copy of g: one output fusion node expected (when the
 * tail has a bias, a residual or an activation), no BatchNormalization, same
 * meaning, and a fused kernel that matches the interpreter. A bias Add on a
 * product whose bias slot is taken ends the chain: it and what follows stay
 * out of the output fusion; `nodes` is the node count that leaves, the
 * product and the rest of the chain (which fuse-loop makes one loop fusion
 * when it is longer than one node). */
static void check_optimised(const kiln_graph *g, const tail *t, int nodes)
{
	kiln_diag d;
	kiln_diag_init(&d, "test");
	kiln_graph *o = kiln_graph_clone(g, NULL);
	assert_non_null(o);
	/* the NCHW output fusion: layout-nchwc would take a depthwise Conv */
	kiln_opt_opts oo = {.opt_level = 2, .disable = "layout-nchwc", .verify_each = true};
	assert_int_equal(kiln_optimize(o, &oo, &d), KILN_OK);
	int fusions = 0, loops = 0;
	for (int i = 0; i < o->n_nodes; i++) {
		assert_int_not_equal(o->nodes[i]->op, KILN_OP_BATCH_NORM);
		if (kiln_node_fusion_kind(o->nodes[i]) == KILN_FUSION_LOOP) {
			loops++;
		} else if (o->nodes[i]->op == KILN_OP_FUSION) {
			assert_int_equal(kiln_node_fusion_kind(o->nodes[i]), KILN_FUSION_OUTPUT);
			fusions++;
		}
	}
	bool fused = nodes == 1 && (t->bias || t->residual || t->act);
	bool loop = nodes > 2;
	if (fusions != fused || loops != loop) {
		char *text = kiln_graph_print(o, NULL);
		fail_msg("expected %d output and %d loop fusion nodes, got %d and %d in\n%s", fused,
		         loop, fusions, loops, text);
	}
	assert_int_equal(o->n_nodes, loop ? 2 : nodes);
	kh_same_meaning(g, o, &rng_state, -2, 2, 1e-5, 1e-5);
	kh_opts ko = kh_defaults();
	ko.rtol = 1e-4;
	ko.atol = 2e-4;
	for (int threads = 1; threads <= 3; threads += 2) {
		ko.threads = threads;
		kh_check(o, &ko);
	}
	kiln_graph_destroy(o);
}

typedef struct conv_case {
	int64_t n, c, h, w, m, k, stride, pad, group;
	bool bias;
} conv_case;

static void conv_run(const conv_case *cc, const tail *t)
{
	kiln_graph *g = kh_graph();
	kiln_value *in[3] = {kh_input(g, KILN_DT_F32, SHAPE(cc->n, cc->c, cc->h, cc->w)),
	                     const_rand(g, SHAPE(cc->m, cc->c / cc->group, cc->k, cc->k), -0.5, 0.5),
	                     cc->bias ? const_rand(g, SHAPE(cc->m), -1, 1) : NULL};
	kiln_node *conv = kh_node(g, KILN_OP_CONV, in, cc->bias ? 3 : 2, 1);
	kiln_value *y = conv->outputs[0];
	int64_t ks[2] = {cc->k, cc->k}, st[2] = {cc->stride, cc->stride};
	int64_t pads[4] = {cc->pad, cc->pad, cc->pad, cc->pad};
	assert_int_equal(kiln_node_set_ints(g, conv, "kernel_shape", ks, 2), KILN_OK);
	assert_int_equal(kiln_node_set_ints(g, conv, "strides", st, 2), KILN_OK);
	assert_int_equal(kiln_node_set_ints(g, conv, "pads", pads, 4), KILN_OK);
	assert_int_equal(kiln_node_set_int(g, conv, "group", cc->group), KILN_OK);
	assert_int_equal(kiln_infer_node(conv, NULL), KILN_OK);
	finish(g, y, t, 1);
	/* the Conv's bias slot is taken by its own bias or a folded BN's */
	check_optimised(g, t, t->bias && (cc->bias || t->bn) ? 2 + !!t->residual + !!t->act : 1);
	kiln_graph_destroy(g);
}

/* Every conv path with the tails models use. */
static void test_conv_tails(void **state)
{
	(void)state;
	rng_state = 1;
	static const conv_case cases[] = {
		{1, 3, 9, 11, 8, 3, 1, 1, 1, true},     /* im2col, odd plane */
		{2, 5, 6, 7, 17, 3, 2, 1, 1, false},    /* strided im2col, 2 images */
		{1, 16, 7, 5, 33, 1, 1, 0, 1, true},    /* direct 1x1 (GEMM on X) */
		{1, 8, 9, 9, 12, 1, 2, 0, 1, false},    /* strided 1x1 */
		{1, 12, 10, 13, 12, 3, 1, 1, 12, true}, /* depthwise */
		{2, 20, 11, 9, 20, 3, 2, 1, 20, false}, /* strided depthwise */
		{1, 8, 6, 6, 16, 3, 1, 1, 2, true},     /* grouped */
		{1, 64, 7, 7, 96, 3, 1, 1, 1, true},    /* small plane, many channels */
		{1, 40, 3, 3, 70, 1, 1, 0, 1, false},   /* tiny plane */
	};
	static const tail tails[] = {
		{.bn = true, .act = 1},
		{.bn = true, .residual = 1, .act = 1},
		{.residual = 2, .act = 2},
		{.bn = true, .act = 2},
		{.residual = 1},
		{.act = 3},
		{.bn = true},
		{.bias = 1, .act = 1},
		{.bias = 2, .residual = 1, .act = 2},
	};
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
		for (size_t j = 0; j < sizeof tails / sizeof *tails; j++)
			conv_run(&cases[i], &tails[j]);
}

/* Gemm: BatchNormalization over its columns, residual, activation; with and
 * without C, transposed B, alpha and beta. */
static void test_gemm_tails(void **state)
{
	(void)state;
	rng_state = 2;
	static const tail tails[] = {
		{.bn = true, .act = 1},
		{.residual = 1, .act = 2},
		{.bn = true, .residual = 2},
		{.act = 3},
		{.bias = 1, .residual = 1, .act = 1},
		{.bias = 2},
		{.bias = 1, .act = 4},
		{.residual = 1, .act = 5},
	};
	for (int variant = 0; variant < 4; variant++)
		for (size_t j = 0; j < sizeof tails / sizeof *tails; j++) {
			kiln_graph *g = kh_graph();
			int64_t m = 3 + variant * 4, k = 17 + variant, n = 33 - variant * 5;
			bool tb = variant & 1, with_c = variant >= 2;
			kiln_value *in[3] = {kh_input(g, KILN_DT_F32, SHAPE(m, k)),
			                     tb ? const_rand(g, SHAPE(n, k), -1, 1)
			                        : const_rand(g, SHAPE(k, n), -1, 1),
			                     with_c ? const_rand(g, SHAPE(n), -1, 1) : NULL};
			kiln_node *gemm = kh_node(g, KILN_OP_GEMM, in, with_c ? 3 : 2, 1);
			kiln_value *y = gemm->outputs[0];
			assert_int_equal(kiln_node_set_int(g, gemm, "transB", tb), KILN_OK);
			if (variant == 3) {
				assert_int_equal(kiln_node_set_float(g, gemm, "alpha", 0.5f), KILN_OK);
				assert_int_equal(kiln_node_set_float(g, gemm, "beta", 2.0f), KILN_OK);
			}
			assert_int_equal(kiln_infer_node(gemm, NULL), KILN_OK);
			finish(g, y, &tails[j], 1);
			/* Gemm's C slot: its own C or a folded BN's shift */
			const tail *tj = &tails[j];
			check_optimised(g, tj, tj->bias && (with_c || tj->bn) ? 2 + !!tj->residual + !!tj->act : 1);
			kiln_graph_destroy(g);
		}
}

/* MatMul (no BatchNormalization fold): batched and broadcast products with
 * a residual and an activation. */
static void test_matmul_tails(void **state)
{
	(void)state;
	rng_state = 3;
	static const tail tails[] = {{.residual = 1, .act = 1}, {.act = 2}, {.residual = 2},
	                             {.bias = 1, .residual = 2, .act = 1}, {.bias = 2, .act = 3},
	                             {.bias = 1, .act = 4}, {.act = 5}};
	for (int variant = 0; variant < 2; variant++)
		for (size_t j = 0; j < sizeof tails / sizeof *tails; j++) {
			kiln_graph *g = kh_graph();
			kiln_value *in[2];
			if (variant == 0) {
				in[0] = kh_input(g, KILN_DT_F32, SHAPE(2, 3, 5, 7));
				in[1] = const_rand(g, SHAPE(7, 9), -1, 1);
			} else {
				in[0] = kh_input(g, KILN_DT_F32, SHAPE(4, 13, 6));
				in[1] = kh_input(g, KILN_DT_F32, SHAPE(4, 6, 37));
			}
			kiln_value *y = kh_op(g, KILN_OP_MATMUL, in, 2, NULL);
			finish(g, y, &tails[j], y->type.rank - 1);
			check_optimised(g, &tails[j], 1);
			kiln_graph_destroy(g);
		}
}

/* A real-model shape: a ResNet basic block (conv-bn-relu, conv-bn, add the
 * block's input, relu) becomes two fusion nodes. */
static void test_resnet_block(void **state)
{
	(void)state;
	rng_state = 4;
	kiln_graph *g = kiln_graph_create("block", NULL);
	assert_non_null(g);
	kiln_value *x = kh_input(g, KILN_DT_F32, SHAPE(1, 16, 9, 9)), *y = x;
	kiln_diag d;
	kiln_diag_init(&d, "test");
	for (int layer = 0; layer < 2; layer++) {
		kiln_value *in[2] = {y, const_rand(g, SHAPE(16, 16, 3, 3), -0.3, 0.3)};
		kiln_node *conv = kh_node(g, KILN_OP_CONV, in, 2, 1);
		y = conv->outputs[0];
		int64_t ks[2] = {3, 3}, pads[4] = {1, 1, 1, 1};
		assert_int_equal(kiln_node_set_ints(g, conv, "kernel_shape", ks, 2), KILN_OK);
		assert_int_equal(kiln_node_set_ints(g, conv, "pads", pads, 4), KILN_OK);
		assert_int_equal(kiln_infer_node(conv, NULL), KILN_OK);
		kiln_value *bn[5] = {y, const_rand(g, SHAPE(16), 0.5, 1.5), const_rand(g, SHAPE(16), -0.5, 0.5),
		                     const_rand(g, SHAPE(16), -0.5, 0.5), const_rand(g, SHAPE(16), 0.5, 2.0)};
		y = kh_op(g, KILN_OP_BATCH_NORM, bn, 5, NULL);
		if (layer == 1) {
			kiln_value *a[2] = {y, x};
			y = kh_op(g, KILN_OP_ADD, a, 2, NULL);
		}
		y = kh_op(g, KILN_OP_RELU, &y, 1, NULL);
	}
	assert_int_equal(kiln_graph_add_output(g, y), KILN_OK);
	assert_int_equal(kiln_infer_shapes(g, &d), KILN_OK);
	assert_int_equal(kiln_graph_verify(g, &d), KILN_OK);
	kiln_graph *o = kiln_graph_clone(g, NULL);
	kiln_opt_opts oo = {.opt_level = 2, .verify_each = true};
	assert_int_equal(kiln_optimize(o, &oo, &d), KILN_OK);
	assert_int_equal(o->n_nodes, 2);
	assert_int_equal(o->nodes[0]->op, KILN_OP_FUSION);
	assert_int_equal(o->nodes[1]->op, KILN_OP_FUSION);
	assert_int_equal(o->nodes[1]->n_inputs, 4); /* x, weights, bias, residual x */
	kh_same_meaning(g, o, &rng_state, -2, 2, 1e-5, 1e-5);
	kh_opts ko = kh_defaults();
	ko.rtol = 1e-4;
	ko.atol = 2e-4;
	kh_check(o, &ko);
	kiln_graph_destroy(o);
	kiln_graph_destroy(g);
}

/* A fusion body the CPU backend does not lower is an error naming the node. */
static void test_unlowerable_body(void **state)
{
	(void)state;
	kiln_graph *g = kh_graph();
	kiln_graph *b = kiln_graph_create_body(g, "f");
	kiln_value *bx = kh_input(b, KILN_DT_F32, SHAPE(4));
	kiln_value *r = kh_op(b, KILN_OP_RELU, &bx, 1, NULL);
	kiln_value *s = kh_op(b, KILN_OP_SIGMOID, &r, 1, NULL);
	assert_int_equal(kiln_graph_add_output(b, s), KILN_OK);
	kiln_diag d;
	kiln_diag_init(&d, "test");
	assert_int_equal(kiln_infer_shapes(b, &d), KILN_OK);
	kiln_value *x = kh_input(g, KILN_DT_F32, SHAPE(4));
	kiln_node *f = kiln_graph_add_fusion(g, KILN_FUSION_OUTPUT, "f", b, &x, 1, NULL);
	assert_non_null(f);
	assert_int_equal(kiln_graph_add_output(g, f->outputs[0]), KILN_OK);
	assert_int_equal(kiln_graph_verify(g, &d), KILN_OK);
	char msg[512];
	kh_opts ko = kh_defaults();
	assert_int_equal(kh_run(g, &ko, msg, sizeof msg), KILN_ERR_UNSUPPORTED);
	assert_non_null(strstr(msg, "node 'f' (fusion): the CPU backend lowers an output fusion"));
	/* a reduction fusion needs its root (more: test_kk_reduction.c; loops:
	 * test_kk_loop.c) */
	assert_int_equal(kiln_node_set_string(g, f, "kind", "reduction"), KILN_OK);
	assert_int_equal(kh_run(g, &ko, msg, sizeof msg), KILN_ERR_UNSUPPORTED);
	assert_non_null(strstr(msg, "node 'f' (fusion): a reduction fusion needs a Softmax, "
	                            "LogSoftmax or LayerNormalization"));
	kiln_graph_destroy(g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_conv_tails),
		cmocka_unit_test(test_gemm_tails),
		cmocka_unit_test(test_matmul_tails),
		cmocka_unit_test(test_resnet_block),
		cmocka_unit_test(test_unlowerable_body),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
