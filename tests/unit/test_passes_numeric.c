/* test_passes_numeric.c — the graph passes that rewrite arithmetic
 * (fold-constants, cse, simplify, fuse-patterns, fuse-attention), checked
 * numerically.
 *
 * Each case is a textual-IR graph. A copy goes through the named passes
 * with the verifier after each; the test checks what the passes made (how
 * many nodes are left, how many of one op) and then runs the original and
 * the optimised graph in the interpreter on the same random inputs:
 *   - fold-constants, cse and simplify must give bit-identical outputs;
 *   - fuse-patterns and fuse-attention may differ by f32 rounding
 *     (|a - b| <= 1e-6 + 1e-5 |a|: the fused kernels accumulate in another
 *     order, and 1 + erf(x) of the decomposed GELU loses digits for
 *     negative x).
 * Graph output names must survive every pass. */
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
#include "passes.h"

typedef struct pcase {
	const char *name;
	const char *passes;
	const char *text;
	int nodes;     /* nodes left after the passes (-1: not checked) */
	kiln_op op;    /* an op that must appear `count` times */
	int count;
	bool exact;    /* outputs bit-identical */
} pcase;

static uint64_t rng_state;

static double rnd(void)
{
	rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
	return (double)(rng_state >> 11) / 9007199254740992.0;
}

static kiln_graph *parse(const char *text)
{
	kiln_graph *g = NULL;
	kiln_diag d;
	kiln_diag_init(&d, "case");
	kiln_status s = kiln_graph_parse(text, "case", &g, &d);
	if (s != KILN_OK)
		fail_msg("parse: %s", d.last);
	return g;
}

static void fill(kiln_tensor *t)
{
	int64_t n = kiln_type_numel(&t->type);
	t->data = malloc(kiln_type_bytes(&t->type) + 1);
	assert_non_null(t->data);
	for (int64_t j = 0; j < n; j++) {
		switch (t->type.dtype) {
		case KILN_DT_F32: ((float *)t->data)[j] = (float)(8.0 * rnd() - 4.0); break;
		case KILN_DT_I64: ((int64_t *)t->data)[j] = (int64_t)(5.0 * rnd()) - 2; break;
		case KILN_DT_I32: ((int32_t *)t->data)[j] = (int32_t)(5.0 * rnd()) - 2; break;
		case KILN_DT_BOOL: ((uint8_t *)t->data)[j] = rnd() < 0.5; break;
		default: fail_msg("input dtype %s not handled", kiln_dtype_name(t->type.dtype));
		}
	}
}

static void compare(const pcase *c, int out, const kiln_tensor *a, const kiln_tensor *b)
{
	assert_true(kiln_type_equal(&a->type, &b->type));
	int64_t n = kiln_type_numel(&a->type);
	if (c->exact) {
		if (memcmp(a->data, b->data, kiln_type_bytes(&a->type)) != 0)
			fail_msg("%s: output %d differs", c->name, out);
		return;
	}
	assert_int_equal(a->type.dtype, KILN_DT_F32);
	const float *pa = a->data, *pb = b->data;
	for (int64_t j = 0; j < n; j++)
		if (!(fabsf(pa[j] - pb[j]) <= 1e-6f + 1e-5f * fabsf(pa[j])))
			fail_msg("%s: output %d element %lld: original %.9g, optimised %.9g", c->name, out,
			         (long long)j, pa[j], pb[j]);
}

static void run_case(const pcase *c)
{
	kiln_diag d;
	kiln_diag_init(&d, c->name);
	kiln_graph *g = parse(c->text);
	kiln_graph *o = kiln_graph_clone(g, NULL);
	assert_non_null(o);
	kiln_opt_opts oo = {.passes = c->passes, .verify_each = true};
	if (kiln_optimize(o, &oo, &d) != KILN_OK)
		fail_msg("%s: %s", c->name, d.last);
	char *text = kiln_graph_print(o, NULL);
	int count = 0;
	for (int i = 0; i < o->n_nodes; i++)
		count += o->nodes[i]->op == c->op;
	if ((c->nodes >= 0 && o->n_nodes != c->nodes) || count != c->count)
		fail_msg("%s: expected %d nodes with %d %s, got %d with %d:\n%s", c->name, c->nodes,
		         c->count, kiln_op_name(c->op), o->n_nodes, count, text);
	free(text);
	/* the graph's interface is unchanged */
	assert_int_equal(o->n_inputs, g->n_inputs);
	assert_int_equal(o->n_outputs, g->n_outputs);
	for (int i = 0; i < g->n_outputs; i++)
		assert_string_equal(o->outputs[i]->name, g->outputs[i]->name);

	int n = g->n_inputs;
	kiln_tensor *in = calloc((size_t)(n ? n : 1), sizeof *in);
	assert_non_null(in);
	for (int i = 0; i < n; i++) {
		in[i].type = g->inputs[i]->type;
		fill(&in[i]);
	}
	kiln_interp *ia, *ib;
	assert_int_equal(kiln_interp_create(g, &ia, &d), KILN_OK);
	assert_int_equal(kiln_interp_create(o, &ib, &d), KILN_OK);
	assert_int_equal(kiln_interp_run(ia, in, n, &d), KILN_OK);
	assert_int_equal(kiln_interp_run(ib, in, n, &d), KILN_OK);
	for (int i = 0; i < g->n_outputs; i++)
		compare(c, i, kiln_interp_output(ia, i), kiln_interp_output(ib, i));
	kiln_interp_destroy(ia);
	kiln_interp_destroy(ib);
	for (int i = 0; i < n; i++)
		free(in[i].data);
	free(in);
	kiln_graph_destroy(o);
	kiln_graph_destroy(g);
}

static void run_cases(const pcase *cases, size_t n)
{
	rng_state = 7;
	for (size_t i = 0; i < n; i++)
		run_case(&cases[i]);
}

#define RUN(cases) run_cases(cases, sizeof cases / sizeof *cases)

/* ---- fold-constants ---- */

static void test_fold_constants(void **state)
{
	(void)state;
	static const pcase cases[] = {
		{"shape chain", "fold-constants",
		 "graph @g opset 17 {\n"
		 "  input %x : f32[2,3,4]\n"
		 "  const %idx : i64[] = dense<2>\n"
		 "  const %ax : i64[1] = dense<[0]>\n"
		 "  const %w : f32[4,4] = dense<[1, 2, 3, 4, 5, 6, 7, 8, -1, -2, -3, -4, 0.5, 0.25, 2, 3]>\n"
		 "  const %k : f32[4] = dense<[0.5, 1.5, -2, 3]>\n"
		 "  %s : i64[3] = Shape @shape (%x)\n"
		 "  %g : i64[] = Gather @gather (%s, %idx) {axis = 0}\n"
		 "  %u : i64[1] = Unsqueeze @unsq (%g, %ax)\n"
		 "  %f : f32[1] = Cast @cast (%u) {to = 1}\n"
		 "  %wt : f32[4,4] = Transpose @wt (%w) {perm = [1, 0]}\n"
		 "  %ws : f32[4,4] = Mul @ws (%wt, %k)\n"
		 "  %xm : f32[2,3,4] = MatMul @mm (%x, %ws)\n"
		 "  %y : f32[2,3,4] = Mul @scale (%xm, %f)\n"
		 "  output %y\n"
		 "  output %s\n"
		 "}\n",
		 2, KILN_OP_MATMUL, 1, true},
	};
	RUN(cases);
}

/* ---- cse ---- */

static void test_cse(void **state)
{
	(void)state;
	static const pcase cases[] = {
		{"duplicate chains", "cse",
		 "graph @g opset 17 {\n"
		 "  input %x : f32[3,5]\n"
		 "  input %b : f32[5]\n"
		 "  const %k1 : f32[] = dense<2.0>\n"
		 "  const %k2 : f32[] = dense<2.0>\n"
		 "  %a1 : f32[3,5] = Add @a1 (%x, %b)\n"
		 "  %a2 : f32[3,5] = Add @a2 (%b, %x)\n"
		 "  %e1 : f32[3,5] = Exp @e1 (%a1)\n"
		 "  %e2 : f32[3,5] = Exp @e2 (%a2)\n"
		 "  %m1 : f32[3,5] = Mul @m1 (%e1, %k1)\n"
		 "  %m2 : f32[3,5] = Mul @m2 (%e2, %k2)\n"
		 "  %s1 : f32[3,5] = Sub @s1 (%m1, %x)\n"
		 "  %s2 : f32[3,5] = Sub @s2 (%x, %m2)\n"
		 "  %y : f32[3,5] = Add @y (%s1, %s2)\n"
		 "  output %y\n"
		 "  output %m2\n"
		 "}\n",
		 6, KILN_OP_EXP, 1, true},
	};
	RUN(cases);
}

/* ---- simplify ---- */

static void test_simplify(void **state)
{
	(void)state;
	static const pcase cases[] = {
		{"neutral operands", "simplify",
		 "graph @g opset 17 {\n"
		 "  input %x : f32[2,4]\n"
		 "  const %one : f32[1,4] = dense<1.0>\n"
		 "  const %zero : f32[] = dense<0.0>\n"
		 "  const %wide : f32[3,2,4] = dense<0.0>\n"
		 "  %a : f32[2,4] = Mul @a (%x, %one)\n"
		 "  %b : f32[2,4] = Mul @b (%one, %a)\n"
		 "  %c : f32[2,4] = Add @c (%zero, %b)\n"
		 "  %d : f32[2,4] = Sub @d (%c, %zero)\n"
		 "  %e : f32[2,4] = Div @e (%d, %one)\n"
		 "  %f : f32[2,4] = Identity @f (%e)\n"
		 "  %g : f32[2,4] = Dropout @g (%f)\n"
		 "  %h : f32[2,4] = Relu @h (%g)\n"
		 "  %z : f32[2,4] = Sub @z (%zero, %h)\n"
		 "  %w : f32[3,2,4] = Add @w (%h, %wide)\n"
		 "  output %z\n"
		 "  output %w\n"
		 "}\n",
		 3, KILN_OP_RELU, 1, true},
		{"movement chains", "simplify",
		 "graph @g opset 17 {\n"
		 "  input %x : f32[2,3,4]\n"
		 "  const %s1 : i64[2] = dense<[6, 4]>\n"
		 "  const %s2 : i64[3] = dense<[0, 2, 2]>\n"
		 "  const %ax : i64[1] = dense<[1]>\n"
		 "  %t1 : f32[4,2,3] = Transpose @t1 (%x) {perm = [2, 0, 1]}\n"
		 "  %t2 : f32[3,2,4] = Transpose @t2 (%t1) {perm = [2, 1, 0]}\n"
		 "  %t3 : f32[2,3,4] = Transpose @t3 (%t2) {perm = [1, 0, 2]}\n"
		 "  %r1 : f32[6,4] = Reshape @r1 (%t3, %s1)\n"
		 "  %r2 : f32[6,2,2] = Reshape @r2 (%r1, %s2)\n"
		 "  %u : f32[6,1,2,2] = Unsqueeze @u (%r2, %ax)\n"
		 "  %q : f32[6,2,2] = Squeeze @q (%u, %ax)\n"
		 "  %c1 : f64[6,2,2] = Cast @c1 (%q) {to = 11}\n"
		 "  %c2 : f32[6,2,2] = Cast @c2 (%c1) {to = 1}\n"
		 "  %i1 : i32[6,2,2] = Cast @i1 (%c2) {to = 6}\n"
		 "  %i2 : f32[6,2,2] = Cast @i2 (%i1) {to = 1}\n"
		 "  output %c2\n"
		 "  output %i2\n"
		 "}\n",
		 3, KILN_OP_CAST, 2, true},
	};
	RUN(cases);
}

/* ---- fuse-patterns ---- */

#define LN_HEAD                                         \
	"graph @g opset 17 {\n"                         \
	"  input %x : f32[2,3,8]\n"                     \
	"  const %axes : i64[1] = dense<[-1]>\n"        \
	"  const %two : f32[] = dense<2.0>\n"           \
	"  const %eps : f32[] = dense<1e-5>\n"          \
	"  const %gamma : f32[8] = dense<[1, 2, 3, 4, 5, 6, 7, 8]>\n" \
	"  const %g3 : f32[1,1,8] = dense<[1, -2, 3, 0.5, 5, 6, 7, 8]>\n" \
	"  const %beta : f32[8] = dense<[0.5, 0, -1, 2, 0.25, 3, 1, 9]>\n" \
	"  %m : f32[2,3,1] = ReduceMean @mean (%x, %axes)\n" \
	"  %d : f32[2,3,8] = Sub @sub (%x, %m)\n"

#define LN_TAIL                                         \
	"  %v : f32[2,3,1] = ReduceMean @var (%p, %axes)\n" \
	"  %ve : f32[2,3,1] = Add @addeps (%eps, %v)\n" \
	"  %s : f32[2,3,1] = Sqrt @sqrt (%ve)\n"        \
	"  %n : f32[2,3,8] = Div @div (%d, %s)\n"

static void test_layer_norm(void **state)
{
	(void)state;
	static const pcase cases[] = {
		{"pytorch", "fuse-patterns",
		 LN_HEAD "  %p : f32[2,3,8] = Pow @pow (%d, %two)\n" LN_TAIL
		 "  %gm : f32[2,3,8] = Mul @mulg (%n, %gamma)\n"
		 "  %y : f32[2,3,8] = Add @addb (%gm, %beta)\n"
		 "  output %y\n}\n",
		 1, KILN_OP_LAYER_NORM, 1, false},
		{"d*d, gamma [1,1,8] first, no beta", "fuse-patterns",
		 LN_HEAD "  %p : f32[2,3,8] = Mul @sq (%d, %d)\n" LN_TAIL
		 "  %y : f32[2,3,8] = Mul @mulg (%g3, %n)\n"
		 "  output %y\n}\n",
		 1, KILN_OP_LAYER_NORM, 1, false},
		{"no affine", "fuse-patterns",
		 LN_HEAD "  %p : f32[2,3,8] = Pow @pow (%d, %two)\n" LN_TAIL
		 "  %y : f32[2,3,8] = Relu @r (%n)\n"
		 "  output %y\n}\n",
		 2, KILN_OP_LAYER_NORM, 1, false},
		{"two trailing axes", "fuse-patterns",
		 "graph @g opset 17 {\n"
		 "  input %x : f32[2,3,8]\n"
		 "  const %axes : i64[2] = dense<[2, 1]>\n"
		 "  const %two : f32[] = dense<2.0>\n"
		 "  const %eps : f32[] = dense<1e-3>\n"
		 "  const %beta : f32[3,1] = dense<[1, 2, 3]>\n"
		 "  %m : f32[2,1,1] = ReduceMean @mean (%x, %axes)\n"
		 "  %d : f32[2,3,8] = Sub @sub (%x, %m)\n"
		 "  %p : f32[2,3,8] = Pow @pow (%d, %two)\n"
		 "  %v : f32[2,1,1] = ReduceMean @var (%p, %axes)\n"
		 "  %ve : f32[2,1,1] = Add @addeps (%v, %eps)\n"
		 "  %s : f32[2,1,1] = Sqrt @sqrt (%ve)\n"
		 "  %n : f32[2,3,8] = Div @div (%d, %s)\n"
		 "  %y : f32[2,3,8] = Add @addb (%beta, %n)\n"
		 "  output %y\n}\n",
		 1, KILN_OP_LAYER_NORM, 1, false},
		/* the mean is a graph output too: nothing fuses */
		{"escaping mean", "fuse-patterns",
		 LN_HEAD "  %p : f32[2,3,8] = Pow @pow (%d, %two)\n" LN_TAIL
		 "  output %n\n  output %m\n}\n",
		 7, KILN_OP_LAYER_NORM, 0, true},
	};
	RUN(cases);
}

#define GELU_HEAD                                  \
	"graph @g opset 17 {\n"                    \
	"  input %x : f32[4,33]\n"                 \
	"  const %sqrt2 : f32[] = dense<1.4142135>\n" \
	"  const %rsqrt2 : f32[] = dense<0.70710677>\n" \
	"  const %one : f32[] = dense<1.0>\n"      \
	"  const %half : f32[] = dense<0.5>\n"     \
	"  const %c : f32[] = dense<0.7978846>\n"  \
	"  const %k : f32[] = dense<0.044715>\n"   \
	"  const %three : f32[] = dense<3.0>\n"

static void test_gelu(void **state)
{
	(void)state;
	static const pcase cases[] = {
		{"erf (x*a)*0.5", "fuse-patterns",
		 GELU_HEAD
		 "  %t : f32[4,33] = Div @div (%x, %sqrt2)\n"
		 "  %e : f32[4,33] = Erf @erf (%t)\n"
		 "  %a : f32[4,33] = Add @add (%e, %one)\n"
		 "  %m : f32[4,33] = Mul @mul (%x, %a)\n"
		 "  %y : f32[4,33] = Mul @mulh (%m, %half)\n"
		 "  output %y\n}\n",
		 1, KILN_OP_GELU, 1, false},
		{"erf (a*0.5)*x, x*(1/sqrt2)", "fuse-patterns",
		 GELU_HEAD
		 "  %t : f32[4,33] = Mul @div (%rsqrt2, %x)\n"
		 "  %e : f32[4,33] = Erf @erf (%t)\n"
		 "  %a : f32[4,33] = Add @add (%one, %e)\n"
		 "  %m : f32[4,33] = Mul @mul (%a, %half)\n"
		 "  %y : f32[4,33] = Mul @mulx (%x, %m)\n"
		 "  output %y\n}\n",
		 1, KILN_OP_GELU, 1, false},
		{"erf (x*0.5)*a", "fuse-patterns",
		 GELU_HEAD
		 "  %h : f32[4,33] = Mul @half (%x, %half)\n"
		 "  %t : f32[4,33] = Div @div (%x, %sqrt2)\n"
		 "  %e : f32[4,33] = Erf @erf (%t)\n"
		 "  %a : f32[4,33] = Add @add (%e, %one)\n"
		 "  %y : f32[4,33] = Mul @mul (%h, %a)\n"
		 "  output %y\n}\n",
		 1, KILN_OP_GELU, 1, false},
		{"tanh, Pow", "fuse-patterns",
		 GELU_HEAD
		 "  %p : f32[4,33] = Pow @pow (%x, %three)\n"
		 "  %q : f32[4,33] = Mul @k (%k, %p)\n"
		 "  %s : f32[4,33] = Add @sum (%x, %q)\n"
		 "  %r : f32[4,33] = Mul @c (%s, %c)\n"
		 "  %t : f32[4,33] = Tanh @tanh (%r)\n"
		 "  %a : f32[4,33] = Add @add (%t, %one)\n"
		 "  %h : f32[4,33] = Mul @half (%half, %x)\n"
		 "  %y : f32[4,33] = Mul @mul (%h, %a)\n"
		 "  output %y\n}\n",
		 1, KILN_OP_GELU, 1, false},
		{"tanh, x*x*x", "fuse-patterns",
		 GELU_HEAD
		 "  %p2 : f32[4,33] = Mul @sq (%x, %x)\n"
		 "  %p : f32[4,33] = Mul @cube (%p2, %x)\n"
		 "  %q : f32[4,33] = Mul @k (%p, %k)\n"
		 "  %s : f32[4,33] = Add @sum (%q, %x)\n"
		 "  %r : f32[4,33] = Mul @c (%c, %s)\n"
		 "  %t : f32[4,33] = Tanh @tanh (%r)\n"
		 "  %a : f32[4,33] = Add @add (%t, %one)\n"
		 "  %m : f32[4,33] = Mul @mul (%a, %x)\n"
		 "  %y : f32[4,33] = Mul @mulh (%m, %half)\n"
		 "  output %y\n}\n",
		 1, KILN_OP_GELU, 1, false},
		/* x*(1+erf(x/sqrt2)) without the 0.5: not GELU */
		{"no half", "fuse-patterns",
		 GELU_HEAD
		 "  %t : f32[4,33] = Div @div (%x, %sqrt2)\n"
		 "  %e : f32[4,33] = Erf @erf (%t)\n"
		 "  %a : f32[4,33] = Add @add (%e, %one)\n"
		 "  %m : f32[4,33] = Mul @mul (%x, %a)\n"
		 "  %y : f32[4,33] = Mul @mulh (%m, %one)\n"
		 "  output %y\n}\n",
		 5, KILN_OP_GELU, 0, true},
	};
	RUN(cases);
}

static void test_softmax(void **state)
{
	(void)state;
	static const pcase cases[] = {
		{"softmax", "fuse-patterns",
		 "graph @g opset 17 {\n"
		 "  input %x : f32[3,2,17]\n"
		 "  const %axes : i64[1] = dense<[2]>\n"
		 "  %mx : f32[3,2,1] = ReduceMax @max (%x, %axes)\n"
		 "  %d : f32[3,2,17] = Sub @sub (%x, %mx)\n"
		 "  %e : f32[3,2,17] = Exp @exp (%d)\n"
		 "  %s : f32[3,2,1] = ReduceSum @sum (%e, %axes)\n"
		 "  %y : f32[3,2,17] = Div @div (%e, %s)\n"
		 "  output %y\n}\n",
		 1, KILN_OP_SOFTMAX, 1, false},
		/* over axis 1 of three: not the last axis, left alone */
		{"middle axis", "fuse-patterns",
		 "graph @g opset 17 {\n"
		 "  input %x : f32[3,2,17]\n"
		 "  const %axes : i64[1] = dense<[1]>\n"
		 "  %mx : f32[3,1,17] = ReduceMax @max (%x, %axes)\n"
		 "  %d : f32[3,2,17] = Sub @sub (%x, %mx)\n"
		 "  %e : f32[3,2,17] = Exp @exp (%d)\n"
		 "  %s : f32[3,1,17] = ReduceSum @sum (%e, %axes)\n"
		 "  %y : f32[3,2,17] = Div @div (%e, %s)\n"
		 "  output %y\n}\n",
		 5, KILN_OP_SOFTMAX, 0, true},
	};
	RUN(cases);
}

/* ---- fuse-attention ---- */

static void test_attention(void **state)
{
	(void)state;
	static const pcase cases[] = {
		/* BERT's form: K^T from the head split X [B,S,H,D], Div, mask */
		{"attention", "fuse-attention,dce",
		 "graph @g opset 17 {\n"
		 "  input %q : f32[2,3,5,16]\n"
		 "  input %x : f32[2,9,3,16]\n"
		 "  input %v : f32[2,3,9,8]\n"
		 "  input %mask : f32[2,1,1,9]\n"
		 "  const %sqrtd : f32[] = dense<4.0>\n"
		 "  %kt : f32[2,3,16,9] = Transpose @kt (%x) {perm = [0, 2, 3, 1]}\n"
		 "  %s : f32[2,3,5,9] = MatMul @qk (%q, %kt)\n"
		 "  %sd : f32[2,3,5,9] = Div @div (%s, %sqrtd)\n"
		 "  %sm : f32[2,3,5,9] = Add @add (%sd, %mask)\n"
		 "  %p : f32[2,3,5,9] = Softmax @softmax (%sm) {axis = -1}\n"
		 "  %y : f32[2,3,5,8] = MatMul @pv (%p, %v)\n"
		 "  output %y\n}\n",
		 2, KILN_OP_ATTENTION, 1, false},
		/* K^T of K [B,H,S,D], Mul by 0.3 (not a power of two), no mask */
		{"attention mul", "fuse-attention,dce",
		 "graph @g opset 17 {\n"
		 "  input %q : f32[1,2,17,3]\n"
		 "  input %k : f32[1,2,6,3]\n"
		 "  input %v : f32[1,2,6,5]\n"
		 "  const %c : f32[] = dense<0.3>\n"
		 "  %kt : f32[1,2,3,6] = Transpose @kt (%k) {perm = [0, 1, 3, 2]}\n"
		 "  %s : f32[1,2,17,6] = MatMul @qk (%q, %kt)\n"
		 "  %sd : f32[1,2,17,6] = Mul @mul (%c, %s)\n"
		 "  %p : f32[1,2,17,6] = Softmax @softmax (%sd) {axis = 3}\n"
		 "  %y : f32[1,2,17,5] = MatMul @pv (%p, %v)\n"
		 "  output %y\n}\n",
		 1, KILN_OP_ATTENTION, 1, false},
		/* the scores also an output: left alone */
		{"attention shared", "fuse-attention,dce",
		 "graph @g opset 17 {\n"
		 "  input %q : f32[1,2,4,3]\n"
		 "  input %k : f32[1,2,6,3]\n"
		 "  input %v : f32[1,2,6,5]\n"
		 "  %kt : f32[1,2,3,6] = Transpose @kt (%k) {perm = [0, 1, 3, 2]}\n"
		 "  %s : f32[1,2,4,6] = MatMul @qk (%q, %kt)\n"
		 "  %p : f32[1,2,4,6] = Softmax @softmax (%s) {axis = -1}\n"
		 "  %y : f32[1,2,4,5] = MatMul @pv (%p, %v)\n"
		 "  output %y\n"
		 "  output %s\n}\n",
		 4, KILN_OP_ATTENTION, 0, true},
	};
	RUN(cases);
}

/* All four in the -O2 order on a small encoder block: attention softmax,
 * LayerNorm, GELU; the result matches and holds the fused ops. */
static void test_pipeline(void **state)
{
	(void)state;
	static const pcase cases[] = {
		{"-O2 passes", "fold-constants,simplify,cse,fuse-patterns,dce",
		 "graph @g opset 17 {\n"
		 "  input %x : f32[4,8]\n"
		 "  const %axes : i64[1] = dense<[-1]>\n"
		 "  const %axes2 : i64[1] = dense<[1]>\n"
		 "  const %two : f32[] = dense<2.0>\n"
		 "  const %eps : f32[] = dense<1e-5>\n"
		 "  const %sqrt2 : f32[] = dense<1.4142135>\n"
		 "  const %one : f32[] = dense<1.0>\n"
		 "  const %one2 : f32[] = dense<1.0>\n"
		 "  const %half : f32[] = dense<0.5>\n"
		 "  %xi : f32[4,8] = Identity @xi (%x)\n"
		 "  %mx : f32[4,1] = ReduceMax @max (%xi, %axes)\n"
		 "  %dd : f32[4,8] = Sub @subm (%xi, %mx)\n"
		 "  %ex : f32[4,8] = Exp @exp (%dd)\n"
		 "  %sm : f32[4,1] = ReduceSum @sum (%ex, %axes2)\n"
		 "  %pr : f32[4,8] = Div @divs (%ex, %sm)\n"
		 "  %m : f32[4,1] = ReduceMean @mean (%pr, %axes)\n"
		 "  %d : f32[4,8] = Sub @sub (%pr, %m)\n"
		 "  %p : f32[4,8] = Pow @pow (%d, %two)\n"
		 "  %v : f32[4,1] = ReduceMean @var (%p, %axes2)\n"
		 "  %ve : f32[4,1] = Add @addeps (%v, %eps)\n"
		 "  %s : f32[4,1] = Sqrt @sqrt (%ve)\n"
		 "  %n : f32[4,8] = Div @div (%d, %s)\n"
		 "  %n1 : f32[4,8] = Mul @n1 (%n, %one2)\n"
		 "  %t : f32[4,8] = Div @divg (%n1, %sqrt2)\n"
		 "  %e : f32[4,8] = Erf @erf (%t)\n"
		 "  %a : f32[4,8] = Add @add (%e, %one)\n"
		 "  %mm : f32[4,8] = Mul @mul (%n1, %a)\n"
		 "  %y : f32[4,8] = Mul @mulh (%mm, %half)\n"
		 "  output %y\n}\n",
		 3, KILN_OP_GELU, 1, false},
	};
	RUN(cases);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fold_constants),
		cmocka_unit_test(test_cse),
		cmocka_unit_test(test_simplify),
		cmocka_unit_test(test_layer_norm),
		cmocka_unit_test(test_gelu),
		cmocka_unit_test(test_softmax),
		cmocka_unit_test(test_attention),
		cmocka_unit_test(test_pipeline),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
