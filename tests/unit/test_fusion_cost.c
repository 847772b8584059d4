/* test_fusion_cost.c — the cost rule of loop fusion (passes/fusion_cost.c):
 * what a group of elementwise nodes costs as one kernel (inputs, constants,
 * outputs, instructions, bytes moved) and when two groups become one. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>


#include "passes.h"

static kiln_value *input(kiln_graph *g, int rank, const int64_t *dims)
{
	kiln_type t = {.dtype = KILN_DT_F32, .rank = rank};
	for (int i = 0; i < rank; i++)
		t.dims[i] = dims[i];
	kiln_value *v = kiln_graph_add_input(g, NULL, &t);
	assert_non_null(v);
	return v;
}

static kiln_value *scalar(kiln_graph *g, float x)
{
	kiln_type t = {.dtype = KILN_DT_F32};
	kiln_value *v = kiln_graph_add_const(g, NULL, &t, &x);
	assert_non_null(v);
	return v;
}

static kiln_node *op(kiln_graph *g, kiln_op o, kiln_value *a, kiln_value *b)
{
	kiln_value *in[2] = {a, b};
	kiln_node *n = kiln_graph_add_node(g, o, NULL, in, b ? 2 : 1, NULL, 1);
	assert_non_null(n);
	assert_int_equal(kiln_infer_node(n, NULL), KILN_OK);
	return n;
}

/* The cost of the listed nodes as one group. */
static kiln_loop_cost cost(const kiln_graph *g, kiln_node *const *members, int n)
{
	bool member[64] = {0};
	assert_true(g->next_node_id <= 64);
	for (int i = 0; i < n; i++)
		member[members[i]->id] = true;
	kiln_loop_cost c;
	assert_int_equal(kiln_loop_cost_of(g, member, &c), KILN_OK);
	return c;
}

#define COST(g, ...) \
	cost(g, (kiln_node *const[]){__VA_ARGS__}, (int)(sizeof((kiln_node *[]){__VA_ARGS__}) / sizeof(kiln_node *)))

/* x[4,8] + b[8], * 0.5, Exp: a chain; what each part and the whole cost. */
static void test_chain(void **state)
{
	(void)state;
	kiln_graph *g = kiln_graph_create("t", NULL);
	kiln_value *x = input(g, 2, (int64_t[]){4, 8}), *b = input(g, 1, (int64_t[]){8});
	kiln_node *add = op(g, KILN_OP_ADD, x, b);
	kiln_node *mul = op(g, KILN_OP_MUL, add->outputs[0], scalar(g, 0.5f));
	kiln_node *ex = op(g, KILN_OP_EXP, mul->outputs[0], NULL);
	assert_int_equal(kiln_graph_add_output(g, ex->outputs[0]), KILN_OK);

	kiln_loop_cost all = COST(g, add, mul, ex);
	assert_int_equal(all.n_nodes, 3);
	assert_int_equal(all.n_inputs, 2);
	assert_int_equal(all.n_consts, 1);
	assert_int_equal(all.n_outputs, 1);
	assert_int_equal(all.n_instrs, 3);
	assert_int_equal(all.bytes, 4 * 32 + 4 * 8 + 4 * 32); /* x, b in; y out */

	kiln_loop_cost a = COST(g, add);
	assert_int_equal(a.n_inputs, 2);
	assert_int_equal(a.n_outputs, 1); /* Mul reads it */
	assert_int_equal(a.bytes, 4 * 32 + 4 * 8 + 4 * 32);
	kiln_loop_cost rest = COST(g, mul, ex);
	assert_int_equal(rest.n_inputs, 1);
	assert_int_equal(rest.n_consts, 1);
	assert_int_equal(rest.bytes, 4 * 32 + 4 * 32);
	kiln_loop_limits l = kiln_loop_limits_default();
	/* fused, the sum is neither written nor read back */
	assert_int_equal(a.bytes + rest.bytes - all.bytes, 2 * 4 * 32);
	assert_true(kiln_loop_merge_ok(&a, &rest, &all, &l));
	kiln_graph_destroy(g);
}

/* A value used inside and outside stays an output (its write is not
 * saved, its read is); two groups reading one tensor read it once. */
static void test_shared_values(void **state)
{
	(void)state;
	kiln_graph *g = kiln_graph_create("t", NULL);
	kiln_value *x = input(g, 1, (int64_t[]){100});
	kiln_node *a = op(g, KILN_OP_SIGMOID, x, NULL);
	kiln_node *b = op(g, KILN_OP_MUL, a->outputs[0], x);
	kiln_node *sm = op(g, KILN_OP_SOFTMAX, a->outputs[0], NULL); /* outside */
	assert_int_equal(kiln_graph_add_output(g, b->outputs[0]), KILN_OK);
	assert_int_equal(kiln_graph_add_output(g, sm->outputs[0]), KILN_OK);
	kiln_loop_cost ca = COST(g, a), cb = COST(g, b), m = COST(g, a, b);
	assert_int_equal(m.n_inputs, 1);  /* x once */
	assert_int_equal(m.n_outputs, 2); /* a for the Softmax, b for the graph */
	assert_int_equal(m.bytes, 400 + 800);
	assert_int_equal(ca.bytes + cb.bytes - m.bytes, 400 /* a read */ + 400 /* x read */);
	kiln_loop_limits l = kiln_loop_limits_default();
	assert_true(kiln_loop_merge_ok(&ca, &cb, &m, &l));
	/* a graph output inside a group is an output even with no reader */
	kiln_loop_cost cs = COST(g, b);
	assert_int_equal(cs.n_outputs, 1);
	kiln_graph_destroy(g);
}

/* Scalar f32 constants with data are immediates, shared by equal bits
 * (0 and -0 differ); a constant tensor is an input with its bytes; an
 * elided constant is not an immediate. */
static void test_constants(void **state)
{
	(void)state;
	kiln_graph *g = kiln_graph_create("t", NULL);
	kiln_value *x = input(g, 1, (int64_t[]){16});
	kiln_type vt = {.dtype = KILN_DT_F32, .rank = 1, .dims = {16}};
	kiln_value *vec = kiln_graph_add_const(g, NULL, &vt, NULL);
	kiln_node *n1 = op(g, KILN_OP_ADD, x, scalar(g, 0.5f));
	kiln_node *n2 = op(g, KILN_OP_MUL, n1->outputs[0], scalar(g, 0.5f));
	kiln_node *n3 = op(g, KILN_OP_ADD, n2->outputs[0], scalar(g, 0.0f));
	kiln_node *n4 = op(g, KILN_OP_ADD, n3->outputs[0], scalar(g, -0.0f));
	kiln_node *n5 = op(g, KILN_OP_SUB, n4->outputs[0], vec);
	assert_int_equal(kiln_graph_add_output(g, n5->outputs[0]), KILN_OK);
	kiln_loop_cost c = COST(g, n1, n2, n3, n4, n5);
	assert_int_equal(c.n_consts, 3);
	assert_int_equal(c.n_inputs, 2);
	assert_int_equal(c.bytes, 64 + 64 + 64);
	assert_true(kiln_loop_is_immediate(n1->inputs[1]));
	assert_false(kiln_loop_is_immediate(vec));
	assert_false(kiln_loop_is_immediate(x));
	n1->inputs[1]->elided = "dense<...>";
	assert_false(kiln_loop_is_immediate(n1->inputs[1]));
	kiln_type it = {.dtype = KILN_DT_I64};
	int64_t one = 1;
	assert_false(kiln_loop_is_immediate(kiln_graph_add_const(g, NULL, &it, &one)));
	kiln_graph_destroy(g);
}

/* Instructions per op, and the constants attributes add. */
static void test_instructions(void **state)
{
	(void)state;
	kiln_graph *g = kiln_graph_create("t", NULL);
	kiln_value *x = input(g, 1, (int64_t[]){8});
	kiln_value *in4[4] = {x, x, x, x};
	kiln_node *mn = kiln_graph_add_node(g, KILN_OP_MIN, NULL, in4, 4, NULL, 1);
	kiln_node *mx = kiln_graph_add_node(g, KILN_OP_MAX, NULL, in4, 1, NULL, 1);
	assert_int_equal(kiln_infer_node(mn, NULL), KILN_OK);
	assert_int_equal(kiln_infer_node(mx, NULL), KILN_OK);
	kiln_node *lr = op(g, KILN_OP_LEAKY_RELU, mn->outputs[0], NULL);
	kiln_node *hs = op(g, KILN_OP_HARD_SIGMOID, lr->outputs[0], NULL);
	kiln_node *cl = op(g, KILN_OP_CLIP, hs->outputs[0], NULL);
	assert_int_equal(kiln_loop_instrs(mn), 3);
	assert_int_equal(kiln_loop_instrs(mx), 1);
	assert_int_equal(kiln_loop_instrs(lr), 1);
	assert_int_equal(kiln_graph_add_output(g, cl->outputs[0]), KILN_OK);
	kiln_loop_cost c = COST(g, mn, lr, hs, cl);
	assert_int_equal(c.n_instrs, 6);
	assert_int_equal(c.n_consts, 1 + 2 + 2); /* alpha; alpha, beta; -inf, +inf */
	assert_int_equal(c.n_inputs, 1);
	kiln_graph_destroy(g);
}

/* The limits refuse a merge one past each of them, and a merge that moves
 * no fewer bytes. */
static void test_merge_rule(void **state)
{
	(void)state;
	kiln_loop_limits l = kiln_loop_limits_default();
	assert_true(l.max_inputs > 0 && l.max_outputs > 0 && l.max_instrs > 0);
	/* the program kernel's 64 registers bound inputs + constants + instructions */
	assert_int_equal(l.max_regs, 64);
	assert_true(l.max_inputs + l.max_instrs <= l.max_regs);
	kiln_loop_cost a = {.n_nodes = 1, .n_inputs = 1, .n_outputs = 1, .n_instrs = 1, .bytes = 800};
	kiln_loop_cost b = a;
	kiln_loop_cost m = {.n_nodes = 2, .n_inputs = 1, .n_outputs = 1, .n_instrs = 2, .bytes = 800};
	assert_true(kiln_loop_merge_ok(&a, &b, &m, &l));
	kiln_loop_cost t = m;
	t.n_inputs = l.max_inputs;
	assert_true(kiln_loop_merge_ok(&a, &b, &t, &l));
	t.n_inputs++;
	assert_false(kiln_loop_merge_ok(&a, &b, &t, &l));
	t = m;
	t.n_outputs = l.max_outputs + 1;
	assert_false(kiln_loop_merge_ok(&a, &b, &t, &l));
	t = m;
	t.n_instrs = l.max_instrs;
	assert_true(kiln_loop_merge_ok(&a, &b, &t, &l));
	t.n_instrs++;
	assert_false(kiln_loop_merge_ok(&a, &b, &t, &l));
	t = m;
	t.n_instrs = l.max_instrs;
	t.n_inputs = l.max_inputs;
	t.n_consts = l.max_regs - t.n_instrs - t.n_inputs;
	assert_true(kiln_loop_merge_ok(&a, &b, &t, &l));
	t.n_consts++;
	assert_false(kiln_loop_merge_ok(&a, &b, &t, &l));
	t = m;
	t.bytes = a.bytes + b.bytes; /* saves nothing */
	assert_false(kiln_loop_merge_ok(&a, &b, &t, &l));
	t.bytes--;
	assert_true(kiln_loop_merge_ok(&a, &b, &t, &l));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_chain),
		cmocka_unit_test(test_shared_values),
		cmocka_unit_test(test_constants),
		cmocka_unit_test(test_instructions),
		cmocka_unit_test(test_merge_rule),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
