/* test_kk_loop.c — loop fusion end to end: the fuse-loop pass, the
 * kk_ew_program_f32 kernel and its lowering (kiln_lower_fusion_loop).
 *
 * Each case builds a graph of elementwise ops, runs fuse-loop on a copy with
 * the verifier after it, and checks
 *   1. what the pass made: the expected loop fusion nodes, with the expected
 *      numbers of members and outputs, and how many nodes remain;
 *   2. that the rewrite keeps the meaning: the interpreter on the original
 *      and on the optimised graph give the same outputs (the interpreter runs
 *      a fusion's body node by node, so they agree exactly);
 *   3. that the fused kernel is right: kharness runs the optimised graph
 *      through the CPU lowering and the native program kernel against the
 *      interpreter, at 1 and 3 threads.
 * The cases cover every op the loop takes, chains, trees, values used inside
 * and outside a group, every kind of broadcast, ranks 0 to 8, odd sizes and
 * tails, outputs big enough to run in parallel, and lowering errors. */
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
#include "passes.h"

static uint64_t rng_state;

static kiln_value *const_rand(kiln_graph *g, int rank, const int64_t *dims, double lo, double hi)
{
	return kh_const_rand(g, &rng_state, rank, dims, lo, hi);
}

/* What fuse-loop should make. */
typedef struct expect {
	int loops;   /* loop fusion nodes */
	int nodes;   /* nodes left in the graph */
	int members; /* nodes in the first loop's body (0: not checked) */
	int outputs; /* outputs of the first loop (0: not checked) */
} expect;

/* fuse-loop (and dce) on a copy of g, then the three checks of the file
 * comment; inputs in [lo, hi). */
static void check_range(const kiln_graph *g, const expect *e, double lo, double hi)
{
	kiln_diag d;
	kiln_diag_init(&d, "test");
	kiln_graph *o = kiln_graph_clone(g, NULL);
	assert_non_null(o);
	kiln_opt_opts oo = {.passes = "fuse-loop,dce", .verify_each = true};
	assert_int_equal(kiln_optimize(o, &oo, &d), KILN_OK);
	int loops = 0;
	const kiln_node *first = NULL;
	for (int i = 0; i < o->n_nodes; i++)
		if (kiln_node_fusion_kind(o->nodes[i]) == KILN_FUSION_LOOP) {
			if (!first)
				first = o->nodes[i];
			loops++;
		}
	if (loops != e->loops || o->n_nodes != e->nodes ||
	    (e->members && first && first->body->n_nodes != e->members) ||
	    (e->outputs && first && first->n_outputs != e->outputs)) {
		char *text = kiln_graph_print(o, NULL);
		fail_msg("expected %d loops (%d members, %d outputs) in %d nodes, got\n%s", e->loops,
		         e->members, e->outputs, e->nodes, text);
	}
	kh_same_meaning(g, o, &rng_state, lo, hi, 0, 0);
	kh_opts ko = kh_defaults();
	ko.rtol = 1e-4;
	ko.atol = 1e-5;
	ko.lo = lo;
	ko.hi = hi;
	for (int threads = 1; threads <= 3; threads += 2) {
		ko.threads = threads;
		kh_check(o, &ko);
	}
	kiln_graph_destroy(o);
}

static void check(const kiln_graph *g, const expect *e)
{
	check_range(g, e, -2, 2);
}

/* ---- every op ---------------------------------------------------------- */

typedef struct op_case {
	kiln_op op;
	int n_in;      /* inputs the op takes here (Clip: 1 to 3) */
	bool positive; /* domain (0, inf): its operand goes through Sigmoid */
	const char *attr;
	float a, b;
} op_case;

static const op_case op_cases[] = {
	{KILN_OP_RELU, 1, false, NULL, 0, 0},
	{KILN_OP_LEAKY_RELU, 1, false, "alpha", 0.2f, 0},
	{KILN_OP_LEAKY_RELU, 1, false, NULL, 0, 0},
	{KILN_OP_SIGMOID, 1, false, NULL, 0, 0},
	{KILN_OP_TANH, 1, false, NULL, 0, 0},
	{KILN_OP_CLIP, 3, false, NULL, -0.5f, 0.75f},
	{KILN_OP_CLIP, 2, false, NULL, 0.25f, 0},
	{KILN_OP_CLIP, 1, false, NULL, 0, 0},
	{KILN_OP_HARD_SIGMOID, 1, false, "alpha", 0.3f, 0.4f},
	{KILN_OP_HARD_SIGMOID, 1, false, NULL, 0, 0},
	{KILN_OP_HARD_SWISH, 1, false, NULL, 0, 0},
	{KILN_OP_GELU, 1, false, NULL, 0, 0},
	{KILN_OP_GELU, 1, false, "tanh", 0, 0},
	{KILN_OP_ERF, 1, false, NULL, 0, 0},
	{KILN_OP_SQRT, 1, true, NULL, 0, 0},
	{KILN_OP_EXP, 1, false, NULL, 0, 0},
	{KILN_OP_LOG, 1, true, NULL, 0, 0},
	{KILN_OP_NEG, 1, false, NULL, 0, 0},
	{KILN_OP_ABS, 1, false, NULL, 0, 0},
	{KILN_OP_RECIPROCAL, 1, false, NULL, 0, 0},
	{KILN_OP_IDENTITY, 1, false, NULL, 0, 0},
	{KILN_OP_ADD, 2, false, NULL, 0, 0},
	{KILN_OP_SUB, 2, false, NULL, 0, 0},
	{KILN_OP_MUL, 2, false, NULL, 0, 0},
	{KILN_OP_DIV, 2, false, NULL, 0, 0},
	{KILN_OP_POW, 2, true, NULL, 0, 0},
	{KILN_OP_PRELU, 2, false, NULL, 0, 0},
	{KILN_OP_MIN, 3, false, NULL, 0, 0},
	{KILN_OP_MAX, 2, false, NULL, 0, 0},
	{KILN_OP_MIN, 1, false, NULL, 0, 0},
};

/* x (+ y) -> [Sigmoid] -> OP -> * 0.5 + x: the op between producers and a
 * consumer in the loop. The second operand of a binary op is y (per-column
 * for PRelu); Clip's bounds are constants. */
static void op_graph(const op_case *c, int rank, const int64_t *dims, bool bcast)
{
	kiln_graph *g = kiln_graph_create("op", NULL);
	assert_non_null(g);
	kiln_value *x = kh_input(g, KILN_DT_F32, rank, dims);
	int64_t last = rank ? dims[rank - 1] : 1;
	kiln_value *y = bcast || c->op == KILN_OP_PRELU ? kh_input(g, KILN_DT_F32, SHAPE(last))
	                                                : kh_input(g, KILN_DT_F32, rank, dims);
	kiln_value *a = kh_op2(g, KILN_OP_ADD, x, y);
	if (c->positive)
		a = kh_op1(g, KILN_OP_SIGMOID, a);
	kiln_value *in[3] = {a, NULL, NULL};
	int n_in = c->n_in;
	if (c->op == KILN_OP_CLIP) {
		in[1] = n_in > 1 ? kh_scalar(g, c->a) : NULL;
		in[2] = n_in > 2 ? kh_scalar(g, c->b) : NULL;
	} else if (c->op == KILN_OP_PRELU) {
		in[1] = y;
	} else if (c->op == KILN_OP_POW) {
		in[1] = x;
	} else {
		for (int k = 1; k < n_in; k++)
			in[k] = k == 1 ? x : y;
	}
	kiln_node *n;
	kiln_value *r = kh_op(g, c->op, in, n_in, &n);
	if (c->attr && (c->op == KILN_OP_LEAKY_RELU || c->op == KILN_OP_HARD_SIGMOID)) {
		assert_int_equal(kiln_node_set_float(g, n, "alpha", c->a), KILN_OK);
		if (c->op == KILN_OP_HARD_SIGMOID)
			assert_int_equal(kiln_node_set_float(g, n, "beta", c->b), KILN_OK);
	}
	if (c->attr && c->op == KILN_OP_GELU)
		assert_int_equal(kiln_node_set_string(g, n, "approximate", c->attr), KILN_OK);
	r = kh_op2(g, KILN_OP_ADD, kh_op2(g, KILN_OP_MUL, r, kh_scalar(g, 0.5f)), x);
	assert_int_equal(kiln_graph_add_output(g, r), KILN_OK);
	kh_finish(g);
	expect e = {.loops = 1, .nodes = 1, .members = 4 + c->positive, .outputs = 1};
	check(g, &e);
	kiln_graph_destroy(g);
}

static void test_every_op(void **state)
{
	(void)state;
	rng_state = 1;
	static const struct {
		int rank;
		int64_t dims[4];
	} shapes[] = {{1, {1}}, {1, {3}}, {2, {3, 17}}, {3, {2, 5, 33}}, {2, {7, 100}}};
	for (size_t i = 0; i < sizeof op_cases / sizeof *op_cases; i++)
		for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
			for (int bcast = 0; bcast < 2; bcast++)
				op_graph(&op_cases[i], shapes[s].rank, shapes[s].dims, bcast);
}

/* ---- shapes of graphs -------------------------------------------------- */

/* GELU as models spell it, x * 0.5 * (1 + erf(x / sqrt 2)) after a bias
 * Add: one tree, one loop, the constants immediates. */
static void test_gelu_tree(void **state)
{
	(void)state;
	rng_state = 2;
	static const int64_t sizes[][2] = {{1, 1}, {3, 5}, {4, 37}, {128, 257}};
	for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
		kiln_graph *g = kiln_graph_create("gelu", NULL);
		assert_non_null(g);
		kiln_value *x = kh_input(g, KILN_DT_F32, SHAPE(sizes[s][0], sizes[s][1]));
		kiln_value *a = kh_op2(g, KILN_OP_ADD, x, const_rand(g, SHAPE(sizes[s][1]), -1, 1));
		kiln_value *e = kh_op1(
			g, KILN_OP_ERF, kh_op2(g, KILN_OP_DIV, a, kh_scalar(g, 1.41421354f)));
		kiln_value *p = kh_op2(g, KILN_OP_ADD, e, kh_scalar(g, 1.0f));
		kiln_value *y =
			kh_op2(g, KILN_OP_MUL, kh_op2(g, KILN_OP_MUL, a, kh_scalar(g, 0.5f)), p);
		assert_int_equal(kiln_graph_add_output(g, y), KILN_OK);
		kh_finish(g);
		expect ex = {.loops = 1, .nodes = 1, .members = 6, .outputs = 1};
		check(g, &ex);
		kiln_graph_destroy(g);
	}
}

/* A residual Add then a scale, and the sum also a graph output: two
 * outputs, one loop. */
static void test_residual_scale_two_outputs(void **state)
{
	(void)state;
	rng_state = 3;
	kiln_graph *g = kiln_graph_create("res", NULL);
	assert_non_null(g);
	kiln_value *x = kh_input(g, KILN_DT_F32, SHAPE(3, 13, 19));
	kiln_value *r = kh_input(g, KILN_DT_F32, SHAPE(3, 13, 19));
	kiln_value *s = kh_op2(g, KILN_OP_ADD, x, r);
	kiln_value *y = kh_op2(g, KILN_OP_MUL, s, kh_input(g, KILN_DT_F32, SHAPE(19)));
	assert_int_equal(kiln_graph_add_output(g, y), KILN_OK);
	assert_int_equal(kiln_graph_add_output(g, s), KILN_OK);
	kh_finish(g);
	expect e = {.loops = 1, .nodes = 1, .members = 2, .outputs = 2};
	check(g, &e);
	kiln_graph_destroy(g);
}

/* A value used inside the group and by a node that cannot join (Softmax)
 * becomes an output; the Softmax's result comes back into a second group
 * (joining the first would make a cycle). */
static void test_multi_consumer(void **state)
{
	(void)state;
	rng_state = 4;
	kiln_graph *g = kiln_graph_create("mc", NULL);
	assert_non_null(g);
	kiln_value *x = kh_input(g, KILN_DT_F32, SHAPE(5, 33));
	kiln_value *a = kh_op2(g, KILN_OP_MUL, x, kh_scalar(g, 2.0f));
	kiln_value *b = kh_op1(g, KILN_OP_TANH, a);
	kiln_value *sm = kh_op1(g, KILN_OP_SOFTMAX, a);
	kiln_value *c = kh_op2(g, KILN_OP_ADD, b, sm);
	kiln_value *y = kh_op1(g, KILN_OP_RELU, kh_op2(g, KILN_OP_SUB, c, a));
	assert_int_equal(kiln_graph_add_output(g, y), KILN_OK);
	kh_finish(g);
	/* {a, b} with outputs a (Softmax, Sub) and b; Softmax; {c, sub, relu} */
	expect e = {.loops = 2, .nodes = 3, .members = 2, .outputs = 2};
	check(g, &e);
	kiln_graph_destroy(g);
}

/* A chain whose middle value is read by a node placed before the chain's
 * end: the fusion node moves up to where that reader needs it. */
static void test_reader_before_end(void **state)
{
	(void)state;
	rng_state = 5;
	kiln_graph *g = kiln_graph_create("order", NULL);
	assert_non_null(g);
	kiln_value *x = kh_input(g, KILN_DT_F32, SHAPE(4, 9));
	kiln_value *a = kh_op1(g, KILN_OP_EXP, x);
	kiln_value *t = kh_input(g, KILN_DT_F32, SHAPE(4, 9));
	kiln_value *tt = kh_op2(g, KILN_OP_ADD, t, t);
	kiln_value *s = kh_op1(g, KILN_OP_SOFTMAX, a); /* reads a before the chain ends */
	kiln_value *b = kh_op2(g, KILN_OP_MUL, a, tt);
	kiln_value *y = kh_op1(g, KILN_OP_NEG, b);
	assert_int_equal(kiln_graph_add_output(g, s), KILN_OK);
	assert_int_equal(kiln_graph_add_output(g, y), KILN_OK);
	kh_finish(g);
	/* {a, tt, b, y} (tt joins through b), Softmax */
	expect e = {.loops = 1, .nodes = 2, .members = 4, .outputs = 2};
	check(g, &e);
	kiln_graph_destroy(g);
}

/* Broadcasts of every kind into one loop: a scalar input, [1] and [N,1]
 * and [C] vectors, [1,C,1,1] channels, a plane, outer products, constant
 * tensors; ranks 0 to 8; runs shorter than a block (batched) and longer. */
static void test_broadcasts(void **state)
{
	(void)state;
	rng_state = 6;
	static const struct {
		int rank;
		int64_t out[8];
		int n_b;
		struct {
			int rank;
			int64_t dims[8];
			bool constant;
		} b[3];
	} cases[] = {
		{0, {0}, 2, {{0, {0}, false}, {0, {0}, true}}},
		{1, {1}, 1, {{0, {0}, false}}},
		{2, {7, 33}, 3, {{0, {0}, false}, {2, {7, 1}, false}, {1, {33}, true}}},
		{2, {17, 1}, 2, {{1, {1}, false}, {2, {17, 1}, true}}},
		{4, {2, 5, 9, 11}, 3, {{4, {1, 5, 1, 1}, true}, {2, {9, 11}, false}, {3, {5, 1, 11}, false}}},
		{3, {4, 3, 1}, 2, {{3, {4, 1, 1}, false}, {1, {1}, false}}},
		{8, {2, 1, 3, 1, 2, 3, 1, 5}, 3,
		 {{8, {1, 1, 3, 1, 1, 3, 1, 1}, false}, {5, {1, 2, 3, 1, 5}, true}, {1, {5}, false}}},
		{8, {1, 2, 1, 2, 1, 2, 1, 17}, 2, {{7, {2, 1, 2, 1, 2, 1, 1}, false}, {0, {0}, true}}},
		{3, {6, 1, 70}, 2, {{3, {6, 1, 1}, false}, {2, {1, 70}, true}}},
		/* a row repeated 30 times, then another: the batched repeats of the
		 * first must not stand for the second */
		{3, {2, 30, 33}, 2, {{3, {2, 1, 33}, false}, {0, {0}, false}}},
		/* rows longer than a block: per-row scalars splatted once a row */
		{2, {3, 600}, 2, {{2, {3, 1}, false}, {1, {600}, true}}},
		{2, {2, 1025}, 2, {{2, {2, 1}, true}, {0, {0}, false}}},
		{3, {2, 2, 512}, 3, {{3, {2, 1, 1}, false}, {2, {2, 512}, false}, {1, {1}, false}}},
	};
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		kiln_graph *g = kiln_graph_create("bc", NULL);
		assert_non_null(g);
		kiln_value *x = kh_input(g, KILN_DT_F32, cases[i].rank, cases[i].out);
		kiln_value *y = kh_op1(g, KILN_OP_SIGMOID, x);
		for (int k = 0; k < cases[i].n_b; k++) {
			kiln_value *b = cases[i].b[k].constant
			                    ? const_rand(g, cases[i].b[k].rank, cases[i].b[k].dims, -1, 1)
			                    : kh_input(g, KILN_DT_F32, cases[i].b[k].rank, cases[i].b[k].dims);
			static const kiln_op ops[] = {KILN_OP_MUL, KILN_OP_ADD, KILN_OP_SUB};
			y = kh_op2(g, ops[k], k == 2 ? b : y, k == 2 ? y : b);
		}
		y = kh_op1(g, KILN_OP_ABS, y);
		assert_int_equal(kiln_graph_add_output(g, y), KILN_OK);
		kh_finish(g);
		expect e = {.loops = 1, .nodes = 1, .members = cases[i].n_b + 2, .outputs = 1};
		check(g, &e);
		kiln_graph_destroy(g);
	}
}

/* An outer product: inputs [N,1] and [1,C] make the loop's shape [N,C]. */
static void test_outer_product(void **state)
{
	(void)state;
	rng_state = 7;
	kiln_graph *g = kiln_graph_create("outer", NULL);
	assert_non_null(g);
	kiln_value *a = kh_input(g, KILN_DT_F32, SHAPE(9, 1));
	kiln_value *b = kh_input(g, KILN_DT_F32, SHAPE(1, 35));
	kiln_value *y = kh_op1(g, KILN_OP_EXP, kh_op2(g, KILN_OP_SUB, a, b));
	y = kh_op2(g, KILN_OP_MAX, y, kh_scalar(g, 0.5f));
	assert_int_equal(kiln_graph_add_output(g, y), KILN_OK);
	kh_finish(g);
	expect e = {.loops = 1, .nodes = 1, .members = 3, .outputs = 1};
	check(g, &e);
	kiln_graph_destroy(g);
}

/* Outputs of at least 65536 elements run through the pool: runs split
 * across chunks and threads, with a per-row and a per-column operand. */
static void test_parallel(void **state)
{
	(void)state;
	rng_state = 8;
	/* {1, 257, 300}: a chunk starts inside a row, so a task batches a short
	 * run before its long ones */
	static const int64_t sizes[][3] = {{3, 257, 101}, {1, 512, 128}, {2, 70001, 1}, {1, 257, 300}};
	for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
		kiln_graph *g = kiln_graph_create("big", NULL);
		assert_non_null(g);
		const int64_t *d = sizes[s];
		kiln_value *x = kh_input(g, KILN_DT_F32, SHAPE(d[0], d[1], d[2]));
		kiln_value *row = kh_input(g, KILN_DT_F32, SHAPE(d[0], d[1], 1));
		kiln_value *col = const_rand(g, SHAPE(d[2]), -1, 1);
		kiln_value *a = kh_op2(g, KILN_OP_MUL, kh_op2(g, KILN_OP_SUB, x, row), col);
		kiln_value *y = kh_op1(g, KILN_OP_GELU, a);
		kiln_value *z = kh_op1(g, KILN_OP_SIGMOID, a);
		assert_int_equal(kiln_graph_add_output(g, y), KILN_OK);
		assert_int_equal(kiln_graph_add_output(g, z), KILN_OK);
		kh_finish(g);
		expect e = {.loops = 1, .nodes = 1, .members = 4, .outputs = 2};
		check(g, &e);
		kiln_graph_destroy(g);
	}
}

/* Attention scores as transformers make them, scale then mask: the mask
 * repeats along the rows, so the loop walks long runs with the mask as a
 * period. Masks per batch and per head, in parallel and not, and periods
 * whose runs end inside a vector. */
static void test_attention_mask(void **state)
{
	(void)state;
	rng_state = 11;
	static const struct {
		int64_t b, h, s, t;  /* scores [b,h,s,t] */
		int64_t mb, mh, ms;  /* mask [mb,mh,ms,t] */
	} cases[] = {
		{2, 4, 128, 128, 1, 1, 1}, {2, 4, 128, 128, 2, 1, 1}, {1, 3, 37, 37, 1, 3, 1},
		{3, 2, 5, 100, 1, 1, 1},   {1, 2, 300, 7, 1, 1, 1},   {1, 1, 9, 250, 1, 1, 1},
		/* in parallel, chunks of 8192 start inside a period: long runs, and
		 * short runs of a mask per head */
		{2, 4, 100, 100, 1, 1, 1}, {1, 2400, 4, 7, 1, 2400, 1},
	};
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		kiln_graph *g = kiln_graph_create("attn", NULL);
		assert_non_null(g);
		kiln_value *sc = kh_input(g, KILN_DT_F32, SHAPE(cases[i].b, cases[i].h, cases[i].s, cases[i].t));
		kiln_value *m = kh_input(g, KILN_DT_F32, SHAPE(cases[i].mb, cases[i].mh, cases[i].ms, cases[i].t));
		kiln_value *y =
			kh_op2(g, KILN_OP_ADD, kh_op2(g, KILN_OP_DIV, sc, kh_scalar(g, 8.0f)), m);
		assert_int_equal(kiln_graph_add_output(g, y), KILN_OK);
		kh_finish(g);
		expect e = {.loops = 1, .nodes = 1, .members = 2, .outputs = 1};
		check(g, &e);
		kiln_graph_destroy(g);
	}
}

/* Left alone: one op; ops of different shapes (each of one op); f16;
 * Where and compare ops; Cast. Two chains of two over different shapes
 * make two loops. */
static void test_left_alone(void **state)
{
	(void)state;
	rng_state = 9;
	kiln_graph *g = kiln_graph_create("alone", NULL);
	assert_non_null(g);
	kiln_value *x = kh_input(g, KILN_DT_F32, SHAPE(4, 6));
	kiln_value *v = kh_input(g, KILN_DT_F32, SHAPE(6));
	kiln_value *h = kh_input(g, KILN_DT_F16, SHAPE(4, 6));
	kiln_value *one = kh_op1(g, KILN_OP_RELU, x);
	kiln_value *small = kh_op1(g, KILN_OP_EXP, v);      /* [6] */
	kiln_value *big = kh_op2(g, KILN_OP_ADD, x, small); /* [4,6]: a different shape */
	kiln_value *hh = kh_op1(g, KILN_OP_NEG, kh_op1(g, KILN_OP_ABS, h));
	kiln_value *lt = kh_op2(g, KILN_OP_LESS, x, v);
	kiln_value *in3[3] = {lt, x, big};
	kiln_value *w = kh_op(g, KILN_OP_WHERE, in3, 3, NULL);
	kiln_value *s2 =
		kh_op1(g, KILN_OP_TANH, kh_op1(g, KILN_OP_SQRT, kh_op1(g, KILN_OP_EXP, v)));
	kiln_value *outs[] = {one, big, hh, w, s2};
	for (size_t i = 0; i < sizeof outs / sizeof *outs; i++)
		assert_int_equal(kiln_graph_add_output(g, outs[i]), KILN_OK);
	kh_finish(g);
	/* small and big: shapes differ; s2's chain (3 over [6]) is a loop */
	kiln_graph *o = kiln_graph_clone(g, NULL);
	kiln_diag d;
	kiln_diag_init(&d, "test");
	kiln_opt_opts oo = {.passes = "fuse-loop", .verify_each = true};
	assert_int_equal(kiln_optimize(o, &oo, &d), KILN_OK);
	int loops = 0;
	for (int i = 0; i < o->n_nodes; i++)
		if (o->nodes[i]->op == KILN_OP_FUSION) {
			loops++;
			assert_int_equal(o->nodes[i]->body->n_nodes, 3);
			assert_string_equal(o->nodes[i]->outputs[0]->name, s2->name);
		}
	assert_int_equal(loops, 1);
	assert_int_equal(o->n_nodes, g->n_nodes - 2);
	kiln_graph_destroy(o);
	kiln_graph_destroy(g);
}

/* The cost rule's limits hold: a chain of 80 ops splits into loops of at
 * most 32 instructions; one reading 40 tensors into loops of at most 16
 * inputs. */
static void test_limits(void **state)
{
	(void)state;
	rng_state = 10;
	for (int wide = 0; wide < 2; wide++) {
		kiln_graph *g = kiln_graph_create("long", NULL);
		assert_non_null(g);
		kiln_value *x = kh_input(g, KILN_DT_F32, SHAPE(3, 21));
		kiln_value *y = x;
		for (int i = 0; i < (wide ? 40 : 80); i++) {
			kiln_value *b = wide ? kh_input(g, KILN_DT_F32, SHAPE(21)) : kh_scalar(g, 0.01f * (float)i);
			y = kh_op2(g, i % 2 ? KILN_OP_MUL : KILN_OP_ADD, y, b);
			if (!wide && i % 3 == 0)
				y = kh_op1(g, KILN_OP_TANH, y);
		}
		assert_int_equal(kiln_graph_add_output(g, y), KILN_OK);
		kh_finish(g);
		kiln_graph *o = kiln_graph_clone(g, NULL);
		kiln_diag d;
		kiln_diag_init(&d, "test");
		kiln_opt_opts oo = {.passes = "fuse-loop", .verify_each = true};
		assert_int_equal(kiln_optimize(o, &oo, &d), KILN_OK);
		kiln_loop_limits l = kiln_loop_limits_default();
		int members = 0, loops = 0;
		for (int i = 0; i < o->n_nodes; i++) {
			const kiln_node *n = o->nodes[i];
			if (n->op != KILN_OP_FUSION) {
				members++;
				continue;
			}
			assert_true(n->body->n_nodes <= l.max_instrs);
			assert_true(n->n_inputs <= l.max_inputs);
			members += n->body->n_nodes;
			loops++;
		}
		assert_int_equal(members, g->n_nodes);
		assert_true(loops >= 3);
		kh_same_meaning(g, o, &rng_state, -1, 1, 0, 0);
		kh_opts ko = kh_defaults();
		ko.rtol = 1e-4;
		ko.atol = 1e-5;
		kh_check(o, &ko);
		kiln_graph_destroy(o);
		kiln_graph_destroy(g);
	}
}

/* ---- lowering errors --------------------------------------------------- */

/* A loop fusion with the given body node (over x: f32[4] or f16[4]). */
static void lower_error(kiln_op op, kiln_dtype dt, const char *want)
{
	kiln_graph *g = kiln_graph_create("t", NULL);
	assert_non_null(g);
	kiln_graph *b = kiln_graph_create_body(g, "f");
	kiln_value *bx = kh_input(b, dt, SHAPE(4));
	kiln_value *r = kh_op1(b, KILN_OP_ABS, bx);
	kiln_value *s = op == KILN_OP_LESS ? kh_op2(b, op, r, bx) : kh_op1(b, op, r);
	assert_int_equal(kiln_graph_add_output(b, s), KILN_OK);
	kiln_diag d;
	kiln_diag_init(&d, "test");
	assert_int_equal(kiln_infer_shapes(b, &d), KILN_OK);
	kiln_value *x = kh_input(g, dt, SHAPE(4));
	kiln_node *f = kiln_graph_add_fusion(g, KILN_FUSION_LOOP, "f", b, &x, 1, NULL);
	assert_non_null(f);
	assert_int_equal(kiln_graph_add_output(g, f->outputs[0]), KILN_OK);
	assert_int_equal(kiln_graph_verify(g, &d), KILN_OK);
	char msg[512];
	kh_opts ko = kh_defaults();
	assert_int_equal(kh_run(g, &ko, msg, sizeof msg), KILN_ERR_UNSUPPORTED);
	if (!strstr(msg, want))
		fail_msg("got '%s', want '%s'", msg, want);
	kiln_graph_destroy(g);
}

static void test_lowering_errors(void **state)
{
	(void)state;
	lower_error(KILN_OP_SOFTMAX, KILN_DT_F32,
	            "node 'f' (fusion): body node 'node_1' (Softmax) cannot run in a loop fusion");
	lower_error(KILN_OP_LESS, KILN_DT_F32,
	            "node 'f' (fusion): the CPU backend runs f32 loops of rank <= 8, not bool[4]");
	lower_error(KILN_OP_NEG, KILN_DT_F16,
	            "node 'f' (fusion): the CPU backend runs f32 loops of rank <= 8, not f16[4]");
}

/* A body that reads a constant tensor (not a scalar) is not lowered. */
static void test_lowering_tensor_constant(void **state)
{
	(void)state;
	kiln_graph *g = kiln_graph_create("t", NULL);
	assert_non_null(g);
	kiln_graph *b = kiln_graph_create_body(g, "f");
	kiln_value *bx = kh_input(b, KILN_DT_F32, SHAPE(4));
	kiln_value *c = const_rand(b, SHAPE(4), -1, 1);
	kiln_value *s = kh_op1(b, KILN_OP_NEG, kh_op2(b, KILN_OP_ADD, bx, c));
	assert_int_equal(kiln_graph_add_output(b, s), KILN_OK);
	kiln_value *x = kh_input(g, KILN_DT_F32, SHAPE(4));
	kiln_node *f = kiln_graph_add_fusion(g, KILN_FUSION_LOOP, "f", b, &x, 1, NULL);
	assert_non_null(f);
	assert_int_equal(kiln_graph_add_output(g, f->outputs[0]), KILN_OK);
	char msg[512];
	kh_opts ko = kh_defaults();
	assert_int_equal(kh_run(g, &ko, msg, sizeof msg), KILN_ERR_UNSUPPORTED);
	if (!strstr(msg, "which is not a scalar f32 constant, a body input or an earlier result"))
		fail_msg("got '%s'", msg);
	kiln_graph_destroy(g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_op),
		cmocka_unit_test(test_gelu_tree),
		cmocka_unit_test(test_residual_scale_two_outputs),
		cmocka_unit_test(test_multi_consumer),
		cmocka_unit_test(test_reader_before_end),
		cmocka_unit_test(test_broadcasts),
		cmocka_unit_test(test_outer_product),
		cmocka_unit_test(test_parallel),
		cmocka_unit_test(test_attention_mask),
		cmocka_unit_test(test_left_alone),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_lowering_errors),
		cmocka_unit_test(test_lowering_tensor_constant),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
