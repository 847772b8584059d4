/* test_kk_layout_nchwc.c — layout assignment (passes/layout_nchwc.c) and
 * the NCHWc ops (ReorderToNCHWc, ReorderFromNCHWc, ConvNCHWc) through the
 * interpreter, the CPU lowerings and the native kernels.
 *
 * A small MobileNet-like graph (depthwise and 1x1 convolutions, Clip and
 * Relu, a residual Add, a Mul by a scalar, a value with two consumers, a
 * stride-2 depthwise Conv, odd channel counts 24, 17 and 40, a graph
 * output inside the region and a GlobalAveragePool after it) goes through
 *   1. layout-nchwc alone: what it made (one shared ReorderToNCHWc, one
 *      ReorderFromNCHWc per leaving value, every Conv a ConvNCHWc) and the
 *      same outputs in the interpreter, bit for bit (ConvNCHWc runs the
 *      Conv kernel on the unblocked input);
 *   2. the -O2 pipeline: ConvNCHWc as the anchor of output fusions, the
 *      same meaning, and kharness (lowering + native kernels against the
 *      interpreter) at 1 and 3 threads; -O0 (one kernel per op) as well.
 * Then the cases the pass leaves alone, the ops' shape errors and the
 * lowering's refusal of what kk_conv_nchwc_f32 does not run. */
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

/* A k x k Conv of x to m channels, pads k/2 on every side. */
static kiln_value *conv(kiln_graph *g, kiln_value *x, int64_t m, int64_t k, int64_t stride,
                        int64_t group, bool bias)
{
	int64_t c = x->type.dims[1];
	kiln_value *in[3] = {x, kh_const_rand(g, &rng_state, SHAPE(m, c / group, k, k), -0.5, 0.5),
	                     bias ? kh_const_rand(g, &rng_state, SHAPE(m), -0.5, 0.5) : NULL};
	kiln_node *n = kh_node(g, KILN_OP_CONV, in, bias ? 3 : 2, 1);
	int64_t ks[2] = {k, k}, st[2] = {stride, stride}, p = k / 2, pads[4] = {p, p, p, p};
	assert_int_equal(kiln_node_set_ints(g, n, "kernel_shape", ks, 2), KILN_OK);
	assert_int_equal(kiln_node_set_ints(g, n, "strides", st, 2), KILN_OK);
	assert_int_equal(kiln_node_set_ints(g, n, "pads", pads, 4), KILN_OK);
	assert_int_equal(kiln_node_set_int(g, n, "group", group), KILN_OK);
	assert_int_equal(kiln_infer_node(n, NULL), KILN_OK);
	return n->outputs[0];
}

static kiln_value *clip6(kiln_graph *g, kiln_value *x)
{
	kiln_value *in[3] = {x, kh_scalar(g, 0.0f), kh_scalar(g, 6.0f)};
	return kh_op(g, KILN_OP_CLIP, in, 3, NULL);
}

/* The MobileNet-like graph on an input [n, 24, h, w]; outputs the residual
 * sum r and the pooled end of the chain. */
static kiln_graph *mobilenet_like(int64_t n, int64_t h, int64_t w)
{
	kiln_graph *g = kh_graph();
	kiln_value *x = kh_input(g, KILN_DT_F32, SHAPE(n, 24, h, w));
	kiln_value *d0 = clip6(g, conv(g, x, 24, 3, 1, 24, true));
	kiln_value *s = conv(g, x, 17, 1, 1, 1, true);
	kiln_value *p1 = conv(g, d0, 17, 1, 1, 1, true);
	kiln_value *r = kh_op2(g, KILN_OP_ADD, p1, s);
	kiln_value *e = clip6(g, conv(g, r, 40, 1, 1, 1, true));
	kiln_value *d2 = kh_op1(g, KILN_OP_RELU, conv(g, e, 40, 3, 2, 40, false));
	kiln_value *m = kh_op2(g, KILN_OP_MUL, conv(g, d2, 17, 1, 1, 1, false), kh_scalar(g, 0.5f));
	kiln_value *gap = kh_op1(g, KILN_OP_GLOBAL_AVG_POOL, m);
	assert_int_equal(kiln_graph_add_output(g, r), KILN_OK);
	assert_int_equal(kiln_graph_add_output(g, gap), KILN_OK);
	kh_finish(g);
	return g;
}

static int count_op(const kiln_graph *g, kiln_op op)
{
	int k = 0;
	for (int i = 0; i < g->n_nodes; i++) {
		const kiln_node *n = g->nodes[i];
		k += n->op == op;
		for (int j = 0; n->body && j < n->body->n_nodes; j++)
			k += n->body->nodes[j]->op == op;
	}
	return k;
}

static kiln_graph *optimised(const kiln_graph *g, const kiln_opt_opts *oo)
{
	kiln_diag d;
	kiln_diag_init(&d, "test");
	kiln_graph *o = kiln_graph_clone(g, NULL);
	assert_non_null(o);
	if (kiln_optimize(o, oo, &d) != KILN_OK)
		fail_msg("optimize: %s", d.last);
	return o;
}

static void check_compiled(const kiln_graph *g, const char *what)
{
	kh_opts ko = kh_defaults();
	ko.rtol = 1e-4;
	ko.atol = 1e-4;
	for (int threads = 1; threads <= 3; threads += 2) {
		char msg[1024];
		ko.threads = threads;
		ko.seed = 7 * (uint64_t)threads + 1;
		if (kh_run(g, &ko, msg, sizeof msg) != KILN_OK)
			fail_msg("%s (threads %d): %s", what, threads, msg);
	}
}

static void test_layout_pass(void **state)
{
	(void)state;
	static const int64_t shapes[][3] = {{1, 11, 9}, {2, 7, 13}, {1, 1, 1}};
	for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
		rng_state = 3 + i;
		kiln_graph *g = mobilenet_like(shapes[i][0], shapes[i][1], shapes[i][2]);
		kiln_opt_opts oo = {.passes = "layout-nchwc", .verify_each = true};
		kiln_graph *o = optimised(g, &oo);
		/* x enters once (two consumers), r and the Mul's result leave */
		assert_int_equal(count_op(o, KILN_OP_REORDER_TO_NCHWC), 1);
		assert_int_equal(count_op(o, KILN_OP_REORDER_FROM_NCHWC), 2);
		assert_int_equal(count_op(o, KILN_OP_CONV_NCHWC), 6);
		assert_int_equal(count_op(o, KILN_OP_CONV), 0);
		assert_int_equal(o->n_nodes, 15);
		assert_string_equal(o->outputs[0]->name, g->outputs[0]->name);
		assert_string_equal(o->outputs[1]->name, g->outputs[1]->name);
		assert_int_equal(o->outputs[0]->producer->op, KILN_OP_REORDER_FROM_NCHWC);
		/* a ConvNCHWc costs what its Conv does (kiln bench's GFLOP/s) */
		for (int j = 0; j < o->n_nodes; j++) {
			const kiln_node *b = o->nodes[j];
			if (b->op != KILN_OP_CONV_NCHWC)
				continue;
			const kiln_node *c = kiln_graph_find_node(g, b->name);
			assert_non_null(c);
			assert_int_equal(c->op, KILN_OP_CONV);
			assert_true(kiln_node_flops(c) > 0);
			assert_int_equal(kiln_node_flops(b), kiln_node_flops(c));
		}
		kh_same_meaning(g, o, &rng_state, -2, 2, 0, 0);
		check_compiled(o, "layout-nchwc");
		kiln_graph_destroy(o);
		kiln_graph_destroy(g);
	}
}

/* -O2 and -O0 of the same graph against the interpreter; at -O2 the blocked
 * convolutions anchor output fusions (Clip, Relu, the residual Add). */
static void test_pipelines(void **state)
{
	(void)state;
	static const int64_t shapes[][3] = {{1, 11, 9}, {2, 5, 6}};
	for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
		rng_state = 11 + i;
		kiln_graph *g = mobilenet_like(shapes[i][0], shapes[i][1], shapes[i][2]);
		kiln_opt_opts o2 = {.opt_level = 2, .verify_each = true};
		kiln_graph *o = optimised(g, &o2);
		assert_int_equal(count_op(o, KILN_OP_CONV_NCHWC), 6);
		assert_int_equal(count_op(o, KILN_OP_REORDER_TO_NCHWC), 1);
		assert_int_equal(count_op(o, KILN_OP_REORDER_FROM_NCHWC), 2);
		int fused = 0;
		for (int j = 0; j < o->n_nodes; j++)
			fused += kiln_node_fusion_kind(o->nodes[j]) == KILN_FUSION_OUTPUT;
		assert_int_equal(fused, 4); /* d0 + Clip, p1 + Add, e + Clip, d2 + Relu */
		kh_same_meaning(g, o, &rng_state, -2, 2, 0, 0);
		check_compiled(o, "-O2");
		check_compiled(g, "-O0");
		kiln_graph_destroy(o);
		kiln_graph_destroy(g);
	}
}

static void check_unchanged(kiln_graph *g, const char *what)
{
	kiln_opt_opts oo = {.passes = "layout-nchwc", .verify_each = true};
	kiln_graph *o = optimised(g, &oo);
	char *a = kiln_graph_print(g, NULL), *b = kiln_graph_print(o, NULL);
	if (strcmp(a, b) != 0)
		fail_msg("%s: layout-nchwc changed\n%s\ninto\n%s", what, a, b);
	free(a);
	free(b);
	kiln_graph_destroy(o);
	kiln_graph_destroy(g);
}

/* No depthwise Conv: 1x1 convolutions alone stay NCHW; a grouped (not
 * depthwise) Conv, a 3x3 group-1 Conv and a non-constant weight never join. */
static void test_skip(void **state)
{
	(void)state;
	rng_state = 5;
	kiln_graph *g = kh_graph();
	kiln_value *x = kh_input(g, KILN_DT_F32, SHAPE(1, 8, 5, 5));
	kiln_value *y = kh_op1(g, KILN_OP_RELU, conv(g, x, 16, 1, 1, 1, true));
	y = conv(g, conv(g, y, 16, 3, 1, 2, false), 8, 3, 2, 1, false);
	assert_int_equal(kiln_graph_add_output(g, y), KILN_OK);
	kh_finish(g);
	check_unchanged(g, "no depthwise");

	g = kh_graph();
	x = kh_input(g, KILN_DT_F32, SHAPE(1, 8, 5, 5));
	kiln_value *w = kh_input(g, KILN_DT_F32, SHAPE(8, 1, 3, 3));
	kiln_value *in[2] = {x, w};
	kiln_node *n = kh_node(g, KILN_OP_CONV, in, 2, 1);
	assert_int_equal(kiln_node_set_int(g, n, "group", 8), KILN_OK);
	assert_int_equal(kiln_graph_add_output(g, n->outputs[0]), KILN_OK);
	kh_finish(g);
	check_unchanged(g, "weights not constant");
}

/* ReorderToNCHWc puts channel c of pixel p at ((n*CB + c/16)*HW + p)*16 +
 * c%16 with zero padding lanes; ReorderFromNCHWc inverts it. */
static void test_interp_reorders(void **state)
{
	(void)state;
	rng_state = 9;
	kiln_graph *g = kh_graph();
	kiln_value *x = kh_input(g, KILN_DT_F32, SHAPE(2, 17, 2, 3));
	kiln_value *b = kh_op1(g, KILN_OP_REORDER_TO_NCHWC, x);
	kiln_node *from = kh_node(g, KILN_OP_REORDER_FROM_NCHWC, &b, 1, 1);
	assert_int_equal(kiln_node_set_int(g, from, "channels", 17), KILN_OK);
	assert_int_equal(kiln_graph_add_output(g, b), KILN_OK);
	assert_int_equal(kiln_graph_add_output(g, from->outputs[0]), KILN_OK);
	kh_finish(g);
	int64_t bd[5] = {2, 2, 2, 3, 16};
	assert_memory_equal(b->type.dims, bd, sizeof bd);

	float xd[2 * 17 * 6];
	for (int i = 0; i < 2 * 17 * 6; i++)
		xd[i] = (float)(i + 1);
	kiln_tensor in = {.type = x->type, .data = xd};
	kiln_interp *it;
	kiln_diag d;
	kiln_diag_init(&d, "test");
	assert_int_equal(kiln_interp_create(g, &it, &d), KILN_OK);
	assert_int_equal(kiln_interp_run(it, &in, 1, &d), KILN_OK);
	const float *blk = kiln_interp_output(it, 0)->data;
	for (int n = 0; n < 2; n++)
		for (int c = 0; c < 32; c++)
			for (int p = 0; p < 6; p++) {
				float want = c < 17 ? xd[(n * 17 + c) * 6 + p] : 0.0f;
				assert_true(blk[((n * 2 + c / 16) * 6 + p) * 16 + c % 16] == want);
			}
	assert_memory_equal(kiln_interp_output(it, 1)->data, xd, sizeof xd);
	kiln_interp_destroy(it);
	check_compiled(g, "reorders");
	kiln_graph_destroy(g);
}

static void expect_shape_error(kiln_graph *g, kiln_node *n, const char *msg)
{
	kiln_diag d;
	kiln_diag_init(&d, "m.kir");
	d.fn = NULL;
	assert_int_not_equal(kiln_infer_node(n, &d), KILN_OK);
	assert_string_equal(d.last, msg);
	kiln_graph_destroy(g);
}

static void test_shape_errors(void **state)
{
	(void)state;
	rng_state = 13;
	kiln_graph *g = kh_graph();
	kiln_value *x = kh_input(g, KILN_DT_F32, SHAPE(1, 2, 5, 5, 16));
	kiln_value *in[2] = {x, kh_const_rand(g, &rng_state, SHAPE(40, 1, 3, 3), -1, 1)};
	kiln_node *n = kh_node(g, KILN_OP_CONV_NCHWC, in, 2, 1);
	assert_int_equal(kiln_node_set_int(g, n, "channels", 40), KILN_OK);
	assert_int_equal(kiln_node_set_int(g, n, "group", 40), KILN_OK);
	expect_shape_error(g, n,
	                   "m.kir: node 'node_0' (ConvNCHWc): input 0 (f32[1,2,5,5,16]) is not the "
	                   "blocked layout of 40 channels [N, 3, H, W, 16]");

	g = kh_graph();
	x = kh_input(g, KILN_DT_F32, SHAPE(1, 2, 5, 5, 16));
	n = kh_node(g, KILN_OP_REORDER_FROM_NCHWC, &x, 1, 1);
	expect_shape_error(g, n, "m.kir: node 'node_0' (ReorderFromNCHWc): attribute 'channels' is "
	                         "required");

	g = kh_graph();
	x = kh_input(g, KILN_DT_F32, SHAPE(1, 2, 5, 5, 8));
	n = kh_node(g, KILN_OP_REORDER_FROM_NCHWC, &x, 1, 1);
	assert_int_equal(kiln_node_set_int(g, n, "channels", 20), KILN_OK);
	expect_shape_error(g, n,
	                   "m.kir: node 'node_0' (ReorderFromNCHWc): input 0 (f32[1,2,5,5,8]) is "
	                   "not the blocked layout of 20 channels [N, 2, H, W, 16]");

	g = kh_graph();
	x = kh_input(g, KILN_DT_F32, SHAPE(1, 3, 5));
	n = kh_node(g, KILN_OP_REORDER_TO_NCHWC, &x, 1, 1);
	expect_shape_error(g, n,
	                   "m.kir: node 'node_0' (ReorderToNCHWc): input 0 has rank 3, expected 4");
}

/* A grouped ConvNCHWc that is not depthwise is valid IR that the kernel
 * does not run: the lowering says so. */
static void test_lowering_refuses_groups(void **state)
{
	(void)state;
	rng_state = 17;
	kiln_graph *g = kh_graph();
	kiln_value *x = kh_input(g, KILN_DT_F32, SHAPE(1, 8, 4, 4));
	kiln_value *b = kh_op1(g, KILN_OP_REORDER_TO_NCHWC, x);
	kiln_value *in[2] = {b, kh_const_rand(g, &rng_state, SHAPE(8, 4, 1, 1), -1, 1)};
	kiln_node *n = kh_node(g, KILN_OP_CONV_NCHWC, in, 2, 1);
	assert_int_equal(kiln_node_set_int(g, n, "channels", 8), KILN_OK);
	assert_int_equal(kiln_node_set_int(g, n, "group", 2), KILN_OK);
	assert_int_equal(kiln_graph_add_output(g, n->outputs[0]), KILN_OK);
	kh_finish(g);
	char msg[1024];
	kh_opts ko = kh_defaults();
	assert_int_equal(kh_run(g, &ko, msg, sizeof msg), KILN_ERR_UNSUPPORTED);
	assert_string_equal(msg, "kharness: node 'node_1' (ConvNCHWc): kk_conv_nchwc_f32 runs "
	                         "group 1 or depthwise convolutions, not group 2 with 8 input and 8 "
	                         "output channels");
	kiln_graph_destroy(g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_layout_pass),
		cmocka_unit_test(test_pipelines),
		cmocka_unit_test(test_skip),
		cmocka_unit_test(test_interp_reorders),
		cmocka_unit_test(test_shape_errors),
		cmocka_unit_test(test_lowering_refuses_groups),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
