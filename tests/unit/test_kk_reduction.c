/* test_kk_reduction.c — reduction fusion end to end: the fuse-reduction
 * pass, the kk_reduce_fusion_f32 kernel and its lowering
 * (kiln_lower_fusion_reduction).
 *
 * Each case builds a graph around a Softmax, LogSoftmax or LayerNorm over
 * the last axis, runs fuse-reduction on a copy with the verifier after it,
 * and checks
 *   1. what the pass made: the expected reduction fusion nodes, their
 *      members and outputs, and how many nodes remain;
 *   2. that the rewrite keeps the meaning: the interpreter on the original
 *      and on the fused graph agree exactly (it runs a body node by node);
 *   3. that the fused kernel is right: kharness runs the fused graph through
 *      the CPU lowering and the native kernel against the interpreter, at 1
 *      and 3 threads.
 * Rows of 1 to 2100 elements (tails, whole vectors, several register
 * blocks), few and many rows (one task, several), inputs broadcast along
 * the row and across rows, values used inside and outside the group, and
 * lowering errors. */
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

/* Softmax (or LogSoftmax) of x over `axis`. */
static kiln_value *softmax(kiln_graph *g, kiln_op op, kiln_value *x, int64_t axis)
{
	kiln_node *n;
	kiln_value *y = kh_op(g, op, &x, 1, &n);
	assert_int_equal(kiln_node_set_int(g, n, "axis", axis), KILN_OK);
	return y;
}

/* LayerNormalization of x over the last axis; B when `bias`. */
static kiln_value *layer_norm(kiln_graph *g, kiln_value *x, bool bias)
{
	int64_t len = x->type.dims[x->type.rank - 1];
	kiln_value *in[3] = {x, const_rand(g, SHAPE(len), 0.5, 1.5),
	                     bias ? const_rand(g, SHAPE(len), -1, 1) : NULL};
	kiln_node *n;
	kiln_value *y = kh_op(g, KILN_OP_LAYER_NORM, in, bias ? 3 : 2, &n);
	assert_int_equal(kiln_node_set_int(g, n, "axis", -1), KILN_OK);
	assert_int_equal(kiln_node_set_float(g, n, "epsilon", 1e-5f), KILN_OK);
	return y;
}

/* What fuse-reduction should make. */
typedef struct expect {
	int fusions; /* reduction fusion nodes */
	int nodes;   /* nodes left in the graph */
	int members; /* nodes in the first fusion's body (0: not checked) */
	int outputs; /* outputs of the first fusion (0: not checked) */
} expect;

/* fuse-reduction on a copy of g, then the three checks of the file
 * comment. */
static void check(const kiln_graph *g, const expect *e)
{
	kiln_diag d;
	kiln_diag_init(&d, "test");
	kiln_graph *o = kiln_graph_clone(g, NULL);
	assert_non_null(o);
	kiln_opt_opts oo = {.passes = "fuse-reduction", .verify_each = true};
	assert_int_equal(kiln_optimize(o, &oo, &d), KILN_OK);
	int fusions = 0;
	const kiln_node *first = NULL;
	for (int i = 0; i < o->n_nodes; i++)
		if (kiln_node_fusion_kind(o->nodes[i]) == KILN_FUSION_REDUCTION) {
			if (!first)
				first = o->nodes[i];
			fusions++;
		}
	if (fusions != e->fusions || o->n_nodes != e->nodes ||
	    (e->members && first && first->body->n_nodes != e->members) ||
	    (e->outputs && first && first->n_outputs != e->outputs)) {
		char *text = kiln_graph_print(o, NULL);
		fail_msg("expected %d reduction fusions (%d members, %d outputs) in %d nodes, got\n%s",
		         e->fusions, e->members, e->outputs, e->nodes, text);
	}
	kh_same_meaning(g, o, &rng_state, -2, 2, 0, 0);
	kh_opts ko = kh_defaults();
	ko.rtol = 1e-4;
	ko.atol = 1e-5;
	for (int threads = 1; threads <= 3; threads += 2) {
		ko.threads = threads;
		kh_check(o, &ko);
	}
	kiln_graph_destroy(o);
}

/* Row lengths: one element, tails, whole vectors, many rows to a block of
 * the kernel (2048 floats) and one (1100), and rows longer than a block,
 * run one at a time in several blocks (2100). */
static const int64_t lens[] = {1, 7, 16, 17, 33, 100, 512, 1100, 2100};
#define N_LENS (int)(sizeof lens / sizeof *lens)

/* ---- Softmax ----------------------------------------------------------- */

/* Attention scores: scale (Div by a scalar) and mask (a [B,1,1,L] row over
 * heads and queries) before a Softmax, as in every transformer. */
static void test_attention_softmax(void **state)
{
	(void)state;
	rng_state = 1;
	static const int64_t shapes[][3] = {{1, 1, 1}, {2, 3, 5}, {1, 4, 16}, {2, 2, 33}};
	for (int s = 0; s < 4; s++)
		for (int l = 0; l < N_LENS; l++) {
			int64_t b = shapes[s][0], h = shapes[s][1], q = shapes[s][2], len = lens[l];
			kiln_graph *g = kh_graph();
			kiln_value *x = kh_input(g, KILN_DT_F32, SHAPE(b, h, q, len));
			kiln_value *mask = kh_input(g, KILN_DT_F32, SHAPE(b, 1, 1, len));
			kiln_value *xs = kh_op2(g, KILN_OP_DIV, x, kh_scalar(g, 2.828427f));
			kiln_value *a = kh_op2(g, KILN_OP_ADD, xs, mask);
			kiln_value *p = softmax(g, KILN_OP_SOFTMAX, a, -1);
			assert_int_equal(kiln_graph_add_output(g, p), KILN_OK);
			kh_finish(g);
			check(g, &(expect){1, 1, 3, 1});
			kiln_graph_destroy(g);
		}
}

/* LogSoftmax (axis given as rank - 1) with a prologue and an epilogue;
 * inputs broadcast along the row (a per-row [R,1] shift) and across rows
 * (a per-column [L] weight), and a Softmax whose epilogue reads its input. */
static void test_log_softmax_epilogue(void **state)
{
	(void)state;
	rng_state = 2;
	for (int l = 0; l < N_LENS; l++) {
		int64_t rows = 5, len = lens[l];
		kiln_graph *g = kh_graph();
		kiln_value *x = kh_input(g, KILN_DT_F32, SHAPE(rows, len));
		kiln_value *shift = kh_input(g, KILN_DT_F32, SHAPE(rows, 1));
		kiln_value *w = const_rand(g, SHAPE(len), -1, 1);
		kiln_value *a = kh_op1(g, KILN_OP_TANH, kh_op2(g, KILN_OP_SUB, x, shift));
		kiln_value *ls = softmax(g, KILN_OP_LOG_SOFTMAX, a, 1);
		kiln_value *y =
			kh_op2(g, KILN_OP_MUL, kh_op2(g, KILN_OP_MUL, ls, w), kh_scalar(g, -0.5f));
		assert_int_equal(kiln_graph_add_output(g, y), KILN_OK);
		/* Softmax of x itself (no prologue); its epilogue reads x again */
		kiln_value *p = softmax(g, KILN_OP_SOFTMAX, x, -1);
		kiln_value *z = kh_op2(g, KILN_OP_ADD, kh_op2(g, KILN_OP_MUL, p, x), shift);
		assert_int_equal(kiln_graph_add_output(g, z), KILN_OK);
		kh_finish(g);
		check(g, &(expect){2, 2, 5, 1});
		kiln_graph_destroy(g);
	}
}

/* ---- LayerNorm ----------------------------------------------------------- */

/* A transformer's residual: bias Add and residual Add before the LayerNorm,
 * a scale and an activation after it; with and without B. */
static void test_layer_norm_residual(void **state)
{
	(void)state;
	rng_state = 3;
	for (int l = 0; l < N_LENS; l++)
		for (int v = 0; v < 2; v++) {
			int64_t rows = 3 + v, len = lens[l];
			kiln_graph *g = kh_graph();
			kiln_value *x = kh_input(g, KILN_DT_F32, SHAPE(2, rows, len));
			kiln_value *r = kh_input(g, KILN_DT_F32, SHAPE(2, rows, len));
			kiln_value *xb = kh_op2(g, KILN_OP_ADD, x, const_rand(g, SHAPE(len), -1, 1));
			kiln_value *h = kh_op2(g, KILN_OP_ADD, xb, r);
			kiln_value *n = layer_norm(g, h, v == 0);
			kiln_value *ns = kh_op2(g, KILN_OP_MUL, n, kh_scalar(g, 1.5f));
			kiln_value *y = kh_op1(g, KILN_OP_RELU, ns);
			assert_int_equal(kiln_graph_add_output(g, y), KILN_OK);
			kh_finish(g);
			check(g, &(expect){1, 1, 5, 1});
			kiln_graph_destroy(g);
		}
}

/* ---- values used inside and outside ------------------------------------- */

/* The residual sum is a graph output and feeds a node outside (which then
 * runs after the fusion node); the LayerNorm's result feeds the epilogue
 * and is a graph output; the epilogue's first value feeds a node outside. */
static void test_multi_consumer(void **state)
{
	(void)state;
	rng_state = 4;
	for (int l = 0; l < N_LENS; l++) {
		int64_t len = lens[l];
		kiln_graph *g = kh_graph();
		kiln_value *x = kh_input(g, KILN_DT_F32, SHAPE(3, len));
		kiln_value *r = kh_input(g, KILN_DT_F32, SHAPE(3, len));
		kiln_value *h = kh_op2(g, KILN_OP_ADD, x, r);
		kiln_value *t = kh_op1(g, KILN_OP_TANH, h);
		kiln_value *n = layer_norm(g, h, true);
		kiln_value *e = kh_op1(g, KILN_OP_ABS, n);
		kiln_value *y = kh_op2(g, KILN_OP_SUB, e, r);
		kiln_value *u = kh_op1(g, KILN_OP_SIGMOID, e); /* a second reader of e */
		kiln_value *out[] = {y, h, t, n, u};
		for (int i = 0; i < 5; i++)
			assert_int_equal(kiln_graph_add_output(g, out[i]), KILN_OK);
		kh_finish(g);
		/* Add, LayerNorm, Abs, Sub and Sigmoid: the Sigmoid joins the
		 * epilogue too; h, n and the three epilogue values leave it
		 * except e, read inside only */
		check(g, &(expect){1, 2, 5, 4});
		kiln_graph_destroy(g);
	}
}

/* Many rows: several tasks at 3 threads, each with its own scratch. */
static void test_parallel(void **state)
{
	(void)state;
	rng_state = 5;
	static const int64_t shapes[][2] = {{300, 100}, {97, 513}, {1000, 7}};
	for (int s = 0; s < 3; s++) {
		int64_t rows = shapes[s][0], len = shapes[s][1];
		kiln_graph *g = kh_graph();
		kiln_value *x = kh_input(g, KILN_DT_F32, SHAPE(rows, len));
		kiln_value *m = kh_input(g, KILN_DT_F32, SHAPE(len));
		kiln_value *xs = kh_op2(g, KILN_OP_MUL, x, kh_scalar(g, 3.0f));
		kiln_value *p = softmax(g, KILN_OP_SOFTMAX, kh_op2(g, KILN_OP_ADD, xs, m), -1);
		kiln_value *n = layer_norm(g, kh_op2(g, KILN_OP_ADD, p, x), true);
		assert_int_equal(kiln_graph_add_output(g, n), KILN_OK);
		kh_finish(g);
		/* the softmax takes Mul and Add, and the Add after it as its
		 * epilogue: the LayerNorm is left alone */
		check(g, &(expect){1, 2, 4, 1});
		kiln_graph_destroy(g);
	}
}

/* Short rows go several to a block in the kernel (the multi-row path):
 * rows that are not whole vectors, blocks cut short at the end of a task
 * and of the tensor, and every way an input is read there: dense (x), one
 * scalar (s), a row broadcast over rows that changes inside a block (m:
 * [B,1,L]), rows repeating across the batch (w: [R,L]), a value per row
 * (sr: [B,R,1]) and a value per batch, the same over some blocks and not
 * over others (sb: [B,1,1]); values of the prologue, the root and the
 * epilogue leave the fusion as extra outputs. Softmax, LogSoftmax and
 * LayerNorm; few rows (one task) and many (several at 3 threads). */
static void test_blocked_rows(void **state)
{
	(void)state;
	rng_state = 8;
	static const int64_t blens[] = {1, 3, 7, 17, 33, 100, 128, 200, 257, 512};
	static const int64_t shapes[][2] = {{2, 5}, {3, 37}};
	static const kiln_op roots[] = {KILN_OP_SOFTMAX, KILN_OP_LOG_SOFTMAX, KILN_OP_LAYER_NORM};
	for (int s = 0; s < 2; s++)
		for (int l = 0; l < (int)(sizeof blens / sizeof *blens); l++)
			for (int k = 0; k < 3; k++) {
				int64_t bt = shapes[s][0], r = shapes[s][1], len = blens[l];
				kiln_graph *g = kh_graph();
				kiln_value *x = kh_input(g, KILN_DT_F32, SHAPE(bt, r, len));
				kiln_value *sc = kh_input(g, KILN_DT_F32, SHAPE(1));
				kiln_value *m = kh_input(g, KILN_DT_F32, SHAPE(bt, 1, len));
				kiln_value *w = kh_input(g, KILN_DT_F32, SHAPE(r, len));
				kiln_value *sr = kh_input(g, KILN_DT_F32, SHAPE(bt, r, 1));
				kiln_value *sb = kh_input(g, KILN_DT_F32, SHAPE(bt, 1, 1));
				kiln_value *xs = kh_op2(g, KILN_OP_MUL, x, sc);
				kiln_value *xd = kh_op2(g, KILN_OP_SUB, xs, sr);
				kiln_value *a = kh_op2(g, KILN_OP_ADD, xd, m);
				kiln_value *a2 = kh_op2(g, KILN_OP_ADD, a, w);
				kiln_value *p = roots[k] == KILN_OP_LAYER_NORM ? layer_norm(g, a2, s == 0)
				                                               : softmax(g, roots[k], a2, -1);
				kiln_value *e = kh_op2(g, KILN_OP_MUL, p, sb);
				kiln_value *z = kh_op2(g, KILN_OP_SUB, e, w);
				kiln_value *out[] = {z, a, p, e};
				for (int i = 0; i < 4; i++)
					assert_int_equal(kiln_graph_add_output(g, out[i]), KILN_OK);
				kh_finish(g);
				/* Mul, Sub, Add, Add, the root, Mul, Sub; every output but
				 * a2 leaves it */
				check(g, &(expect){1, 1, 7, 4});
				kiln_graph_destroy(g);
			}
}

/* Left alone: a Softmax over a middle axis, an f16 one, a LayerNorm over
 * two axes, one with neither prologue nor epilogue. */
static void test_left_alone(void **state)
{
	(void)state;
	rng_state = 6;
	kiln_graph *g = kh_graph();
	kiln_value *x = kh_input(g, KILN_DT_F32, SHAPE(2, 5, 7));
	kiln_value *h = kh_input(g, KILN_DT_F16, SHAPE(4, 6));
	kiln_value *mid = softmax(g, KILN_OP_SOFTMAX, kh_op1(g, KILN_OP_RELU, x), 1);
	kiln_value *half = softmax(g, KILN_OP_SOFTMAX, kh_op1(g, KILN_OP_ABS, h), -1);
	kiln_value *in[2] = {kh_op1(g, KILN_OP_NEG, x), const_rand(g, SHAPE(5, 7), 0.5, 1.5)};
	kiln_node *ln = kiln_graph_add_node(g, KILN_OP_LAYER_NORM, NULL, in, 2, NULL, 1);
	assert_non_null(ln);
	assert_int_equal(kiln_node_set_int(g, ln, "axis", -2), KILN_OK);
	assert_int_equal(kiln_infer_node(ln, NULL), KILN_OK);
	kiln_value *two = ln->outputs[0];
	kiln_value *alone = softmax(g, KILN_OP_SOFTMAX, x, -1);
	kiln_value *out[] = {mid, half, two, alone};
	for (int i = 0; i < 4; i++)
		assert_int_equal(kiln_graph_add_output(g, out[i]), KILN_OK);
	kh_finish(g);
	kiln_diag d;
	kiln_diag_init(&d, "test");
	kiln_graph *o = kiln_graph_clone(g, NULL);
	assert_non_null(o);
	kiln_opt_opts oo = {.passes = "fuse-reduction", .verify_each = true};
	assert_int_equal(kiln_optimize(o, &oo, &d), KILN_OK);
	assert_int_equal(o->n_nodes, g->n_nodes);
	for (int i = 0; i < o->n_nodes; i++)
		assert_int_not_equal(o->nodes[i]->op, KILN_OP_FUSION);
	kiln_graph_destroy(o);
	kiln_graph_destroy(g);
}

/* ---- lowering errors ---------------------------------------------------- */

/* A reduction fusion over x: f32[3,5] whose body is made by `body`. */
static void lower_error(void (*body)(kiln_graph *b, kiln_value *x), const char *want)
{
	kiln_graph *g = kh_graph();
	kiln_graph *b = kiln_graph_create_body(g, "f");
	kiln_value *bx = kh_input(b, KILN_DT_F32, SHAPE(3, 5));
	body(b, bx);
	kiln_diag d;
	kiln_diag_init(&d, "test");
	assert_int_equal(kiln_infer_shapes(b, &d), KILN_OK);
	kiln_value *x = kh_input(g, KILN_DT_F32, SHAPE(3, 5));
	kiln_node *f = kiln_graph_add_fusion(g, KILN_FUSION_REDUCTION, "f", b, &x, 1, NULL);
	assert_non_null(f);
	for (int j = 0; j < f->n_outputs; j++)
		assert_int_equal(kiln_graph_add_output(g, f->outputs[j]), KILN_OK);
	assert_int_equal(kiln_graph_verify(g, &d), KILN_OK);
	char msg[512];
	kh_opts ko = kh_defaults();
	assert_int_equal(kh_run(g, &ko, msg, sizeof msg), KILN_ERR_UNSUPPORTED);
	if (!strstr(msg, want))
		fail_msg("got '%s', want '%s'", msg, want);
	kiln_graph_destroy(g);
}

static void body_first_axis(kiln_graph *b, kiln_value *x)
{
	kiln_value *y = softmax(b, KILN_OP_SOFTMAX, kh_op1(b, KILN_OP_NEG, x), 0);
	assert_int_equal(kiln_graph_add_output(b, y), KILN_OK);
}

static void body_epilogue_reads_prologue(kiln_graph *b, kiln_value *x)
{
	kiln_value *a = kh_op1(b, KILN_OP_NEG, x);
	kiln_value *p = softmax(b, KILN_OP_SOFTMAX, a, -1);
	assert_int_equal(kiln_graph_add_output(b, kh_op2(b, KILN_OP_ADD, p, a)), KILN_OK);
}

static void body_two_roots(kiln_graph *b, kiln_value *x)
{
	kiln_value *p = softmax(b, KILN_OP_SOFTMAX, x, -1);
	assert_int_equal(kiln_graph_add_output(b, softmax(b, KILN_OP_LOG_SOFTMAX, p, -1)), KILN_OK);
}

static void test_lowering_errors(void **state)
{
	(void)state;
	lower_error(body_first_axis,
	            "node 'f' (fusion): the CPU backend reduces over the last axis of a non-empty f32 "
	            "tensor with one output, not Softmax 'node_1' over f32[3,5] (axis 0)");
	lower_error(body_epilogue_reads_prologue,
	            "node 'f' (fusion): epilogue node 'node_2' reads 'v1', a value of the prologue");
	lower_error(body_two_roots,
	            "node 'f' (fusion): a reduction fusion has one Softmax, LogSoftmax or "
	            "LayerNormalization");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_attention_softmax),
		cmocka_unit_test(test_log_softmax_epilogue),
		cmocka_unit_test(test_layer_norm_residual),
		cmocka_unit_test(test_multi_consumer),
		cmocka_unit_test(test_parallel),
		cmocka_unit_test(test_blocked_rows),
		cmocka_unit_test(test_left_alone),
		cmocka_unit_test(test_lowering_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
