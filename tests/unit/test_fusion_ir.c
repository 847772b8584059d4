/* test_fusion_ir.c — fusion nodes in the IR: built with the builder
 * (Conv+Relu as an "output" fusion, Add+Mul as a "loop" fusion), verified,
 * printed and parsed back exactly (constants in full and elided), run by the
 * interpreter bit for bit like the unfused graph, cloned; every verifier
 * error with its exact message; parse errors inside a body at the right
 * line and column; and an ONNX model naming "fusion" refused like any
 * unknown op. */
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
#include "onnx.pb-c.h"

/* ---- helpers ---------------------------------------------------------- */

static kiln_type ty(kiln_dtype dt, int rank, const int64_t *dims)
{
	kiln_type t;
	memset(&t, 0, sizeof t);
	t.dtype = dt;
	t.rank = rank;
	for (int i = 0; i < rank; i++)
		t.dims[i] = dims[i];
	return t;
}

static void quiet_diag(kiln_diag *d, const char *file)
{
	kiln_diag_init(d, file);
	d->fn = NULL;
}

static void verify_ok(const kiln_graph *g)
{
	kiln_diag d;
	quiet_diag(&d, NULL);
	if (kiln_graph_verify(g, &d) != KILN_OK)
		fail_msg("unexpected: %s", d.last);
}

/* Verifying fails with exactly `msg` and leaves the graph's text unchanged. */
static void verify_err(const kiln_graph *g, const char *msg)
{
	kiln_print_opts full = {.full_constants = true};
	char *before = kiln_graph_print(g, &full);
	kiln_diag d;
	quiet_diag(&d, "m.kir");
	assert_int_equal(kiln_graph_verify(g, &d), KILN_ERR_VERIFY);
	assert_string_equal(d.last, msg);
	assert_int_equal(d.n_errors, 1);
	char *after = kiln_graph_print(g, &full);
	assert_string_equal(before, after);
	free(before);
	free(after);
}

static kiln_graph *parse_ok(const char *text)
{
	kiln_diag d;
	quiet_diag(&d, NULL);
	kiln_graph *g = NULL;
	if (kiln_graph_parse(text, "t.kir", &g, &d) != KILN_OK)
		fail_msg("parse failed: %s\n%s", d.last, text);
	assert_non_null(g);
	return g;
}

/* print -> parse -> print is identical; returns the text. */
static char *check_round_trip(const kiln_graph *g, bool full)
{
	kiln_print_opts o = {.full_constants = full};
	char *t1 = kiln_graph_print(g, &o);
	assert_non_null(t1);
	kiln_graph *g2 = parse_ok(t1);
	char *t2 = kiln_graph_print(g2, &o);
	assert_non_null(t2);
	assert_string_equal(t1, t2);
	free(t2);
	kiln_graph_destroy(g2);
	return t1;
}

/* Deterministic values in [-1, 1) with varied bits. */
static void fill(float *p, int n, uint32_t seed)
{
	for (int i = 0; i < n; i++) {
		seed = seed * 1664525u + 1013904223u;
		p[i] = (float)(seed >> 8) / (float)(1u << 23) - 1.0f;
	}
}

/* ---- the model: z = (Relu(Conv(x, w, b)) + a) * m -------------------- */

static const int64_t XD[] = {1, 3, 4, 4}, WD[] = {8, 3, 3, 3}, BD[] = {8}, YD[] = {1, 8, 4, 4};
static const int64_t PADS[] = {1, 1, 1, 1};

typedef struct data {
	float x[48], w[216], b[8], a[128], m[128];
} data;

static const data *model_data(void)
{
	static data dt;
	fill(dt.x, 48, 1);
	fill(dt.w, 216, 2);
	fill(dt.b, 8, 3);
	fill(dt.a, 128, 4);
	fill(dt.m, 128, 5);
	return &dt;
}

static void must_infer(kiln_graph *g)
{
	kiln_diag d;
	quiet_diag(&d, NULL);
	if (kiln_infer_shapes(g, &d) != KILN_OK)
		fail_msg("shape inference: %s", d.last);
}

/* Conv (pads 1) -> Relu into g, from x, w, b; returns Relu's output y. */
static kiln_value *add_conv_relu(kiln_graph *g, kiln_value *x, kiln_value *w, kiln_value *b)
{
	kiln_node *conv = kiln_graph_add_node(g, KILN_OP_CONV, "conv_0", (kiln_value *[]){x, w, b},
	                                      3, (const char *[]){"c"}, 1);
	assert_non_null(conv);
	assert_int_equal(kiln_node_set_ints(g, conv, "pads", PADS, 4), KILN_OK);
	kiln_node *relu = kiln_graph_add_node(g, KILN_OP_RELU, "relu_0", conv->outputs, 1,
	                                      (const char *[]){"y"}, 1);
	assert_non_null(relu);
	return relu->outputs[0];
}

/* Add -> Mul into g; returns Mul's output z. */
static kiln_value *add_add_mul(kiln_graph *g, kiln_value *y, kiln_value *a, kiln_value *m)
{
	kiln_node *add = kiln_graph_add_node(g, KILN_OP_ADD, "add_0", (kiln_value *[]){y, a}, 2,
	                                     (const char *[]){"s"}, 1);
	assert_non_null(add);
	kiln_node *mul = kiln_graph_add_node(g, KILN_OP_MUL, "mul_0",
	                                     (kiln_value *[]){add->outputs[0], m}, 2,
	                                     (const char *[]){"z"}, 1);
	assert_non_null(mul);
	return mul->outputs[0];
}

static kiln_graph *build_plain(void)
{
	const data *dt = model_data();
	kiln_graph *g = kiln_graph_create("net", NULL);
	assert_non_null(g);
	g->opset = 17;
	kiln_type tx = ty(KILN_DT_F32, 4, XD), tw = ty(KILN_DT_F32, 4, WD);
	kiln_type tb = ty(KILN_DT_F32, 1, BD), ta = ty(KILN_DT_F32, 4, YD);
	kiln_value *x = kiln_graph_add_input(g, "x", &tx);
	kiln_value *a = kiln_graph_add_input(g, "a", &ta);
	kiln_value *w = kiln_graph_add_const(g, "w", &tw, dt->w);
	kiln_value *b = kiln_graph_add_const(g, "b", &tb, dt->b);
	kiln_value *m = kiln_graph_add_const(g, "m", &ta, dt->m);
	kiln_value *y = add_conv_relu(g, x, w, b);
	assert_int_equal(kiln_graph_add_output(g, add_add_mul(g, y, a, m)), KILN_OK);
	must_infer(g);
	return g;
}

/* The same computation as two fusion nodes: @conv_0.fused ("output": Conv,
 * Relu) and @add_0.fused ("loop": Add, Mul, with m a constant of its body).
 * The second body names its inputs y and a like the outer values: bodies
 * are namespaces of their own. */
static kiln_graph *build_fused(void)
{
	const data *dt = model_data();
	kiln_graph *g = kiln_graph_create("net", NULL);
	assert_non_null(g);
	g->opset = 17;
	kiln_type tx = ty(KILN_DT_F32, 4, XD), tw = ty(KILN_DT_F32, 4, WD);
	kiln_type tb = ty(KILN_DT_F32, 1, BD), ta = ty(KILN_DT_F32, 4, YD);
	kiln_value *x = kiln_graph_add_input(g, "x", &tx);
	kiln_value *a = kiln_graph_add_input(g, "a", &ta);
	kiln_value *w = kiln_graph_add_const(g, "w", &tw, dt->w);
	kiln_value *b = kiln_graph_add_const(g, "b", &tb, dt->b);

	kiln_graph *b1 = kiln_graph_create_body(g, "conv_0.fused");
	assert_non_null(b1);
	kiln_value *bx = kiln_graph_add_input(b1, "x", &tx);
	kiln_value *bw = kiln_graph_add_input(b1, "w", &tw);
	kiln_value *bb = kiln_graph_add_input(b1, "b", &tb);
	assert_int_equal(kiln_graph_add_output(b1, add_conv_relu(b1, bx, bw, bb)), KILN_OK);
	must_infer(b1);
	kiln_node *f1 = kiln_graph_add_fusion(g, KILN_FUSION_OUTPUT, "conv_0.fused", b1,
	                                      (kiln_value *[]){x, w, b}, 3, (const char *[]){"y"});
	assert_non_null(f1);
	f1->origin = kiln_arena_strdup(g->arena, "conv_0,relu_0");

	kiln_graph *b2 = kiln_graph_create_body(g, "add_0.fused");
	assert_non_null(b2);
	kiln_value *by = kiln_graph_add_input(b2, "y", &ta);
	kiln_value *ba = kiln_graph_add_input(b2, "a", &ta);
	kiln_value *bm = kiln_graph_add_const(b2, "m", &ta, dt->m);
	assert_int_equal(kiln_graph_add_output(b2, add_add_mul(b2, by, ba, bm)), KILN_OK);
	must_infer(b2);
	kiln_node *f2 = kiln_graph_add_fusion(g, KILN_FUSION_LOOP, "add_0.fused", b2,
	                                      (kiln_value *[]){f1->outputs[0], a}, 2,
	                                      (const char *[]){"z"});
	assert_non_null(f2);
	assert_int_equal(kiln_graph_add_output(g, f2->outputs[0]), KILN_OK);
	return g;
}

/* Runs g on the model's x and a; returns a malloc'd copy of output 0. */
static float *run(const kiln_graph *g)
{
	const data *dt = model_data();
	kiln_type tx = ty(KILN_DT_F32, 4, XD), ta = ty(KILN_DT_F32, 4, YD);
	kiln_tensor in[2] = {{tx, (void *)dt->x}, {ta, (void *)dt->a}};
	kiln_diag d;
	quiet_diag(&d, NULL);
	kiln_interp *it;
	if (kiln_interp_create(g, &it, &d) != KILN_OK || kiln_interp_run(it, in, 2, &d) != KILN_OK)
		fail_msg("interpreter: %s", d.last);
	const kiln_tensor *out = kiln_interp_output(it, 0);
	assert_int_equal(kiln_type_numel(&out->type), 128);
	float *z = malloc(128 * sizeof *z);
	assert_non_null(z);
	memcpy(z, out->data, 128 * sizeof *z);
	kiln_interp_destroy(it);
	return z;
}

static void assert_same_bits(const float *got, const float *want)
{
	for (int i = 0; i < 128; i++)
		if (memcmp(&got[i], &want[i], sizeof *got) != 0)
			fail_msg("element %d: %.9g, want %.9g", i, (double)got[i], (double)want[i]);
}

/* ---- builder, verifier, interpreter ----------------------------------- */

static void test_builder_and_verify(void **state)
{
	(void)state;
	kiln_graph *g = build_fused();
	verify_ok(g);
	assert_int_equal(g->n_nodes, 2);
	kiln_node *f1 = g->nodes[0], *f2 = g->nodes[1];
	assert_int_equal(f1->op, KILN_OP_FUSION);
	assert_int_equal(kiln_node_fusion_kind(f1), KILN_FUSION_OUTPUT);
	assert_int_equal(kiln_node_fusion_kind(f2), KILN_FUSION_LOOP);
	assert_ptr_equal(f1->body->parent, g);
	assert_ptr_equal(f1->body->arena, g->arena);
	char buf[64];
	assert_string_equal(kiln_type_str(&f1->outputs[0]->type, buf, sizeof buf), "f32[1,8,4,4]");
	/* every kind is accepted; the verifier does not judge the grouping */
	assert_int_equal(kiln_node_set_string(g, f2, "kind", "reduction"), KILN_OK);
	verify_ok(g);
	kiln_graph_destroy(g);
}

static void test_interp_matches_unfused(void **state)
{
	(void)state;
	kiln_graph *plain = build_plain(), *fused = build_fused();
	verify_ok(plain);
	float *want = run(plain), *got = run(fused);
	assert_same_bits(got, want);
	int nonzero = 0;
	for (int i = 0; i < 128; i++)
		nonzero += want[i] != 0;
	assert_true(nonzero > 16); /* Relu left something to compare */
	free(want);
	free(got);
	kiln_graph_destroy(plain);
	kiln_graph_destroy(fused);
}

/* ---- text --------------------------------------------------------------- */

static const char small_text[] =
	"graph @small opset 17 {\n"
	"  input %x : f32[2]\n"
	"  const %k : f32[2] = dense<[0.5, 2.0]>\n"
	"  %y : f32[2] = fusion @add.fused (%x, %k) {kind = \"loop\"} loc(\"add,mul\") {\n"
	"    input %x : f32[2]\n"
	"    input %k : f32[2]\n"
	"    const %c : f32[] = dense<[3.0]>\n"
	"    %s : f32[2] = Add @add (%x, %k)\n"
	"    %y : f32[2] = Mul @mul (%s, %c)\n"
	"    output %y\n"
	"  }\n"
	"  output %y\n"
	"}\n";

static void test_exact_text(void **state)
{
	(void)state;
	kiln_graph *g = kiln_graph_create("small", NULL);
	g->opset = 17;
	kiln_type t2 = ty(KILN_DT_F32, 1, (int64_t[]){2}), t0 = ty(KILN_DT_F32, 0, NULL);
	kiln_value *x = kiln_graph_add_input(g, "x", &t2);
	kiln_value *k = kiln_graph_add_const(g, "k", &t2, (float[]){0.5f, 2.0f});
	kiln_graph *b = kiln_graph_create_body(g, "add.fused");
	kiln_value *bx = kiln_graph_add_input(b, "x", &t2);
	kiln_value *bk = kiln_graph_add_input(b, "k", &t2);
	kiln_value *c = kiln_graph_add_const(b, "c", &t0, (float[]){3.0f});
	kiln_node *add = kiln_graph_add_node(b, KILN_OP_ADD, "add", (kiln_value *[]){bx, bk}, 2,
	                                     (const char *[]){"s"}, 1);
	kiln_node *mul = kiln_graph_add_node(b, KILN_OP_MUL, "mul",
	                                     (kiln_value *[]){add->outputs[0], c}, 2,
	                                     (const char *[]){"y"}, 1);
	kiln_graph_add_output(b, mul->outputs[0]);
	must_infer(b);
	kiln_node *f = kiln_graph_add_fusion(g, KILN_FUSION_LOOP, "add.fused", b,
	                                     (kiln_value *[]){x, k}, 2, (const char *[]){"y"});
	assert_non_null(f);
	f->origin = "add,mul";
	kiln_graph_add_output(g, f->outputs[0]);
	verify_ok(g);
	char *text = kiln_graph_print(g, NULL);
	assert_string_equal(text, small_text);
	free(text);

	/* read back: the same structure, verified, runnable */
	kiln_graph *p = parse_ok(small_text);
	verify_ok(p);
	kiln_node *pf = p->nodes[0];
	assert_non_null(pf->body);
	assert_ptr_equal(pf->body->parent, p);
	assert_string_equal(pf->body->name, "add.fused"); /* named after its node */
	assert_int_equal(pf->body->opset, 17);
	assert_int_equal(pf->body->n_nodes, 2);
	assert_int_equal(p->n_values, 3); /* x, k, y: the body's names are its own */
	kiln_diag d;
	quiet_diag(&d, NULL);
	kiln_interp *it;
	kiln_tensor in = {t2, (float[]){1.0f, 2.0f}};
	assert_int_equal(kiln_interp_create(p, &it, &d), KILN_OK);
	assert_int_equal(kiln_interp_run(it, &in, 1, &d), KILN_OK);
	const float *y = kiln_interp_output(it, 0)->data;
	assert_true(y[0] == 4.5f && y[1] == 12.0f);
	kiln_interp_destroy(it);
	kiln_graph_destroy(p);
	kiln_graph_destroy(g);
}

static void test_round_trip(void **state)
{
	(void)state;
	kiln_graph *g = build_fused();
	char *full = check_round_trip(g, true);
	char *elided = check_round_trip(g, false);
	/* the body's constant is printed, and elided, inside the body */
	assert_non_null(strstr(elided, "\n    const %m : f32[1,8,4,4] = elided<\"min "));
	assert_non_null(strstr(elided, "\n  const %w : f32[8,3,3,3] = elided<\"min "));
	assert_non_null(strstr(full, "\n    const %m : f32[1,8,4,4] = dense<["));
	assert_non_null(strstr(full, "  %y : f32[1,8,4,4] = fusion @conv_0.fused (%x, %w, %b) "
	                             "{kind = \"output\"} loc(\"conv_0,relu_0\") {\n"
	                             "    input %x : f32[1,3,4,4]\n"
	                             "    input %w : f32[8,3,3,3]\n"
	                             "    input %b : f32[8]\n"
	                             "    %c : f32[1,8,4,4] = Conv @conv_0 (%x, %w, %b) "
	                             "{pads = [1, 1, 1, 1]}\n"
	                             "    %y : f32[1,8,4,4] = Relu @relu_0 (%c)\n"
	                             "    output %y\n"
	                             "  }\n"));

	/* elided text parses into a graph that verifies (but cannot run) */
	kiln_graph *pe = parse_ok(elided);
	verify_ok(pe);
	assert_null(kiln_graph_find_value(pe->nodes[1]->body, "m")->data);
	/* full text runs like the original */
	kiln_graph *pf = parse_ok(full);
	verify_ok(pf);
	float *want = run(g), *got = run(pf);
	assert_same_bits(got, want);
	free(want);
	free(got);
	kiln_graph_destroy(pe);
	kiln_graph_destroy(pf);
	free(full);
	free(elided);
	kiln_graph_destroy(g);
}

static void test_clone(void **state)
{
	(void)state;
	kiln_graph *g = build_fused();
	float *want = run(g);
	kiln_print_opts full = {.full_constants = true};
	char *t1 = kiln_graph_print(g, &full);
	kiln_graph *c = kiln_graph_clone(g, NULL);
	assert_non_null(c);
	kiln_graph_destroy(g); /* the clone owns everything it needs */
	char *t2 = kiln_graph_print(c, &full);
	assert_string_equal(t1, t2);
	verify_ok(c);
	for (int i = 0; i < c->n_nodes; i++) {
		assert_ptr_equal(c->nodes[i]->body->parent, c);
		assert_ptr_equal(c->nodes[i]->body->arena, c->arena);
	}
	float *got = run(c);
	assert_same_bits(got, want);
	free(want);
	free(got);
	free(t1);
	free(t2);
	kiln_graph_destroy(c);
}

/* ---- verifier errors ---------------------------------------------------- */

#define F1 "m.kir: node 'conv_0.fused' (fusion): "

static void test_verify_errors(void **state)
{
	(void)state;
	kiln_graph *g;
	kiln_node *f1;
	kiln_type bad = ty(KILN_DT_F32, 4, (int64_t[]){1, 8, 4, 5});

#define FRESH() (g = build_fused(), f1 = g->nodes[0])
	FRESH();
	kiln_node_set_string(g, f1, "kind", "fancy");
	verify_err(g, F1 "kind \"fancy\" is not \"loop\", \"output\" or \"reduction\"");
	kiln_graph_destroy(g);

	FRESH();
	f1->n_attrs = 0;
	verify_err(g, F1 "has no kind (\"loop\", \"output\" or \"reduction\")");
	kiln_graph_destroy(g);

	FRESH();
	kiln_node_set_int(g, f1, "kind", 1);
	verify_err(g, F1 "attribute 'kind' has kind i, expected s");
	kiln_graph_destroy(g);

	FRESH();
	f1->n_inputs = 2;
	verify_err(g, F1 "has 2 inputs, but its body has 3");
	kiln_graph_destroy(g);

	FRESH();
	kiln_graph_add_output(f1->body, f1->body->inputs[0]);
	verify_err(g, F1 "has 1 outputs, but its body has 2");
	kiln_graph_destroy(g);

	FRESH();
	f1->body->inputs[0]->type.dims[2] = 5;
	verify_err(g, F1 "input 0 ('x') has type f32[1,3,4,4], body input 0 ('x') has f32[1,3,5,4]");
	kiln_graph_destroy(g);

	FRESH();
	f1->outputs[0]->type = bad;
	verify_err(g, F1 "output 0 ('y') has type f32[1,8,4,5], body output 0 ('y') has "
	              "f32[1,8,4,4]");
	kiln_graph_destroy(g);

	FRESH();
	f1->inputs[2] = NULL;
	verify_err(g, F1 "input 2 is omitted, but body input 2 needs a value");
	kiln_graph_destroy(g);

	FRESH();
	f1->body = NULL;
	verify_err(g, F1 "has no body");
	kiln_graph_destroy(g);

	FRESH();
	f1->body->parent = NULL;
	verify_err(g, F1 "body does not belong to this graph (parent or arena)");
	kiln_graph_destroy(g);

	/* the body's own rules, reported under the fusion node's name */
	FRESH();
	f1->body->nodes[1]->outputs[0]->type = bad;
	verify_err(g, F1 "body: node 'relu_0' (Relu): output 0 has type f32[1,8,4,5], shape "
	              "inference gives f32[1,8,4,4]");
	kiln_graph_destroy(g);

	FRESH();
	kiln_graph_move_node(f1->body, f1->body->nodes[1], 0);
	verify_err(g, F1 "body: node 'relu_0' (Relu): input 0 ('c') is used before it is defined");
	kiln_graph_destroy(g);

	FRESH();
	f1->body->nodes[1]->name = "conv_0";
	verify_err(g, F1 "body: node 'conv_0' (Relu): another node has the same name");
	kiln_graph_destroy(g);

	FRESH();
	f1->body->outputs[0] = g->inputs[0]; /* the outer x: not a body value */
	verify_err(g, F1 "body: graph output 0 is not a value of this graph");
	kiln_graph_destroy(g);
#undef FRESH

	/* a body on any other node */
	g = build_plain();
	kiln_node *relu = g->nodes[1];
	relu->body = kiln_graph_create_body(g, "b");
	verify_err(g, "m.kir: node 'relu_0' (Relu): has a body, but only fusion nodes have one");
	kiln_graph_destroy(g);
}

static void test_verify_nested(void **state)
{
	(void)state;
	kiln_graph *g = kiln_graph_create("nest", NULL);
	kiln_type t = ty(KILN_DT_F32, 1, (int64_t[]){4});
	kiln_value *x = kiln_graph_add_input(g, "x", &t);
	kiln_graph *outer = kiln_graph_create_body(g, "outer");
	kiln_value *ox = kiln_graph_add_input(outer, "x", &t);
	kiln_graph *inner = kiln_graph_create_body(outer, "inner");
	kiln_value *ix = kiln_graph_add_input(inner, "x", &t);
	kiln_node *r = kiln_graph_add_node(inner, KILN_OP_RELU, "r", &ix, 1, NULL, 1);
	kiln_graph_add_output(inner, r->outputs[0]);
	must_infer(inner);
	kiln_node *fi = kiln_graph_add_fusion(outer, KILN_FUSION_LOOP, "inner", inner, &ox, 1, NULL);
	assert_non_null(fi);
	kiln_graph_add_output(outer, fi->outputs[0]);
	kiln_node *fo = kiln_graph_add_fusion(g, KILN_FUSION_LOOP, "outer", outer, &x, 1, NULL);
	assert_non_null(fo);
	kiln_graph_add_output(g, fo->outputs[0]);
	verify_err(g, "m.kir: node 'outer' (fusion): body: node 'inner' (fusion): nested fusion is "
	              "not supported");
	/* a body verified by itself refuses fusion nodes too */
	verify_err(outer, "m.kir: node 'inner' (fusion): nested fusion is not supported");
	/* and the nesting prints and parses back (the parser checks syntax only) */
	char *t1 = check_round_trip(g, false);
	assert_non_null(strstr(t1, "\n    %v1 : f32[4] = fusion @inner (%x) {kind = \"loop\"} {\n"
	                           "      input %x : f32[4]\n"));
	free(t1);
	kiln_graph_destroy(g);
}

/* ---- parsing ------------------------------------------------------------ */

#define HDR "graph @g opset 17 {\n"
#define IN "  input %x : f32[1]\n"
#define FUSE "  %y : f32[1] = fusion @f (%x) {kind = \"loop\"} {\n"
#define BIN "    input %x : f32[1]\n"
#define NEST_NODE "%y : f32[1] = fusion @f (%x) {kind = \"loop\"} "

typedef struct err_case {
	const char *text;
	const char *msg;
} err_case;

static const err_case err_cases[] = {
	/* the body sees none of the enclosing graph's values */
	{HDR IN "  const %k : f32[1] = dense<[1.0]>\n" FUSE BIN
	        "    %z : f32[1] = Add @r (%x, %k)\n    output %z\n  }\n  output %y\n}\n",
	 "m.kir:6:31: use of undefined value %k"},
	{HDR IN FUSE BIN "    %z : f32[1] = Foo @r (%x)\n  }\n}\n", "m.kir:5:19: unknown op 'Foo'"},
	{HDR IN FUSE BIN "    input %x : f32[1]\n  }\n}\n", "m.kir:5:11: redefinition of value %x"},
	{HDR IN FUSE BIN "    %z : f32[1] = Relu @r (%x)\n    %w : f32[1] = Relu @r (%z)\n  }\n}\n",
	 "m.kir:6:24: duplicate node name @r"},
	{HDR IN FUSE BIN "    output %q\n  }\n}\n", "m.kir:5:12: use of undefined value %q"},
	{HDR IN FUSE BIN "    bogus\n  }\n}\n", "m.kir:5:5: expected statement, got 'bogus'"},
	{HDR IN FUSE BIN "    const %c : f32[2] = dense<[1.0]>\n  }\n}\n",
	 "m.kir:5:25: dense has 1 elements, type f32[2] needs 2"},
	{HDR IN FUSE BIN "  } junk\n}\n", "m.kir:5:5: expected end of line, got 'junk'"},
	{HDR IN FUSE BIN, "m.kir:5:1: unexpected end of input, expected '}'"},
	{HDR IN FUSE BIN "  }\n", "m.kir:6:1: unexpected end of input, expected '}'"},
	{HDR IN FUSE BIN "  }\n}\n}\n", "m.kir:7:1: unexpected text after '}'"},
	/* a '{' with more on its line opens attributes, not a body */
	{HDR IN "  %y : f32[1] = fusion @f (%x) {kind = \"loop\"} { input %x\n}\n",
	 "m.kir:3:48: expected end of line, got '{'"},
	{HDR IN "  %y : f32[1] = fusion @f (%x) { input %x\n}\n",
	 "m.kir:3:40: expected '=' after attribute name"},
	/* the outer graph's names are back after the body */
	{HDR IN FUSE "    input %q : f32[1]\n    output %q\n  }\n  output %q\n}\n",
	 "m.kir:7:10: use of undefined value %q"},
};

static void test_parse_errors_in_body(void **state)
{
	(void)state;
	int bad = 0;
	for (size_t i = 0; i < sizeof err_cases / sizeof *err_cases; i++) {
		kiln_diag d;
		quiet_diag(&d, NULL);
		kiln_graph *g = (kiln_graph *)&d; /* must be reset to NULL */
		kiln_status s = kiln_graph_parse(err_cases[i].text, "m.kir", &g, &d);
		if (s != KILN_ERR_PARSE || strcmp(d.last, err_cases[i].msg) != 0) {
			print_error("case %zu: status %d, got \"%s\", want \"%s\"\n", i, (int)s, d.last,
			            err_cases[i].msg);
			bad++;
		}
		assert_null(g);
		assert_int_equal(d.n_errors, 1);
	}
	assert_int_equal(bad, 0);
}

/* `levels` fusion nodes, each in the body of the one before. */
static void nest(char *text, size_t size, int levels)
{
	size_t n = (size_t)snprintf(text, size, "%s", HDR IN);
	for (int d = 1; d <= levels; d++)
		n += (size_t)snprintf(text + n, size - n, "%*s%s{\n%*sinput %%x : f32[1]\n", 2 * d,
		                      "", NEST_NODE, 2 * d + 2, "");
	for (int d = levels; d >= 1; d--)
		n += (size_t)snprintf(text + n, size - n, "%*soutput %%%c\n%*s}\n", 2 * d + 2, "",
		                      d == levels ? 'x' : 'y', 2 * d, "");
	snprintf(text + n, size - n, "  output %%y\n}\n");
}

/* Bodies nest in text up to 8 deep; the 9th '{' is refused where it stands. */
static void test_parse_depth(void **state)
{
	(void)state;
	char text[8192];
	nest(text, sizeof text, 8);
	kiln_graph *g = parse_ok(text);
	char *t = kiln_graph_print(g, NULL);
	assert_string_equal(t, text);
	free(t);
	kiln_graph_destroy(g);

	nest(text, sizeof text, 9);
	kiln_diag d;
	quiet_diag(&d, NULL);
	assert_int_equal(kiln_graph_parse(text, "m.kir", &g, &d), KILN_ERR_PARSE);
	assert_null(g);
	/* the 9th fusion line (after the header, the input and 8 two-line
	 * levels): its '{' after 18 blanks and the node text */
	char want[128];
	snprintf(want, sizeof want, "m.kir:%d:%d: bodies nested more than 8 deep", 3 + 2 * 8,
	         18 + (int)strlen(NEST_NODE) + 1);
	assert_string_equal(d.last, want);
}

/* Lenient forms: blank lines and comments in a body, statements in any
 * order, a body on a non-fusion node (for the verifier to refuse), an empty
 * body; all print back in canonical form. */
static void test_parse_lenient_body(void **state)
{
	(void)state;
	kiln_graph *g = parse_ok(HDR IN
	                         "  %y : f32[1] = fusion @f (%x) {kind = \"loop\"} loc(\"a\") {  // f\n"
	                         "\n"
	                         "    // the body\n"
	                         "    input %x : f32[1]\n"
	                         "    %y : f32[1] = Relu @f (%x)\n"
	                         "    const %c : f32[1] = dense<[2.0]>\n"
	                         "    output %y\n"
	                         "  }  // end\n"
	                         "  %z : f32[1] = Relu @r (%y) {\n"
	                         "  }\n"
	                         "  output %z\n"
	                         "}\n");
	char *text = kiln_graph_print(g, NULL);
	assert_string_equal(text, HDR IN
	                    "  %y : f32[1] = fusion @f (%x) {kind = \"loop\"} loc(\"a\") {\n"
	                    "    input %x : f32[1]\n"
	                    "    const %c : f32[1] = dense<[2.0]>\n"
	                    "    %y : f32[1] = Relu @f (%x)\n"
	                    "    output %y\n"
	                    "  }\n"
	                    "  %z : f32[1] = Relu @r (%y) {\n"
	                    "  }\n"
	                    "  output %z\n"
	                    "}\n");
	free(text);
	verify_err(g, "m.kir: node 'r' (Relu): has a body, but only fusion nodes have one");
	g->nodes[1]->body = NULL;
	verify_ok(g);
	kiln_graph_destroy(g);
}

/* The fusion example in docs/ir.md, inside a graph, parses, verifies and
 * prints back identically. */
static void test_docs_example(void **state)
{
	(void)state;
	const char *src = getenv("KILN_SOURCE_DIR");
	if (!src) {
		print_message("skipped: KILN_SOURCE_DIR is not set (run through ctest)\n");
		skip();
	}
	char path[4096];
	snprintf(path, sizeof path, "%s/docs/ir.md", src);
	FILE *f = fopen(path, "rb");
	assert_non_null(f);
	static char doc[1 << 17];
	size_t n = fread(doc, 1, sizeof doc - 1, f);
	fclose(f);
	doc[n] = 0;
	static const char open[] = "### In text\n";
	char *start = strstr(doc, open);
	assert_non_null(start);
	start = strstr(start, "```\n");
	assert_non_null(start);
	start += 4;
	char *end = strstr(start, "```\n");
	assert_non_null(end);
	*end = 0;
	static char text[1 << 14];
	snprintf(text, sizeof text,
	         "graph @g opset 17 {\n"
	         "  input %%x : f32[1,3,4,4]\n"
	         "  input %%w : f32[8,3,3,3]\n"
	         "  input %%b : f32[8]\n"
	         "%s"
	         "  output %%y\n"
	         "}\n",
	         start);
	kiln_graph *g = parse_ok(text);
	verify_ok(g);
	char *t = kiln_graph_print(g, NULL);
	assert_string_equal(t, text);
	free(t);
	kiln_graph_destroy(g);
}

/* ---- robustness: truncations and random edits of fusion text ---------- */

static uint64_t rng_next(uint64_t *s)
{
	*s = *s * 6364136223846793005u + 1442695040888963407u;
	return *s >> 33;
}

/* Either a located parse error, or a graph whose print is a fixed point. */
static void check_no_crash(const char *text)
{
	kiln_diag d;
	quiet_diag(&d, NULL);
	kiln_graph *g;
	kiln_status s = kiln_graph_parse(text, "m.kir", &g, &d);
	if (s != KILN_OK) {
		if (s != KILN_ERR_PARSE || strncmp(d.last, "m.kir:", 6) != 0)
			fail_msg("status %d, message \"%s\" for:\n%s", (int)s, d.last, text);
		assert_null(g);
		return;
	}
	kiln_graph_verify(g, &d); /* any verdict, but no crash */
	char *t1 = kiln_graph_print(g, NULL);
	kiln_graph *g2;
	if (kiln_graph_parse(t1, "m.kir", &g2, &d) != KILN_OK)
		fail_msg("reparse failed: %s\n%s", d.last, t1);
	char *t2 = kiln_graph_print(g2, NULL);
	assert_string_equal(t1, t2);
	free(t1);
	free(t2);
	kiln_graph_destroy(g2);
	kiln_graph_destroy(g);
}

static void test_mutations(void **state)
{
	(void)state;
	kiln_graph *g = build_fused();
	char *base = kiln_graph_print(g, NULL);
	kiln_graph_destroy(g);
	size_t len = strlen(base);
	char *buf = malloc(len + 16);
	for (size_t cut = 0; cut <= len; cut += 3) {
		memcpy(buf, base, cut);
		buf[cut] = 0;
		check_no_crash(buf);
	}
	static const char alphabet[] = "%@\"_,:=(){}\n /-0123456789";
	uint64_t seed = 4242;
	for (int iter = 0; iter < 1500; iter++) {
		memcpy(buf, base, len + 1);
		size_t n = len;
		for (int e = 1 + (int)(rng_next(&seed) % 2); e > 0; e--) {
			size_t at = rng_next(&seed) % (n + 1);
			char c = alphabet[rng_next(&seed) % (sizeof alphabet - 1)];
			if (rng_next(&seed) % 2 && at < n) {
				buf[at] = c;
			} else {
				memmove(buf + at + 1, buf + at, n - at + 1);
				buf[at] = c;
				n++;
			}
		}
		check_no_crash(buf);
	}
	free(buf);
	free(base);
}

/* ---- ONNX: "fusion" is kiln's own op, not an ONNX operator ------------ */

static void test_onnx_refuses_fusion(void **state)
{
	(void)state;
	Onnx__ModelProto m;
	Onnx__GraphProto gr;
	Onnx__OperatorSetIdProto opset;
	Onnx__NodeProto relu, fusion;
	Onnx__ValueInfoProto vx, vy;
	Onnx__TypeProto tx, tyy;
	Onnx__TypeProto__Tensor ttx, tty;
	Onnx__TensorShapeProto shx;
	Onnx__TensorShapeProto__Dimension dim;
	onnx__model_proto__init(&m);
	onnx__graph_proto__init(&gr);
	onnx__operator_set_id_proto__init(&opset);
	onnx__node_proto__init(&relu);
	onnx__node_proto__init(&fusion);
	onnx__value_info_proto__init(&vx);
	onnx__value_info_proto__init(&vy);
	onnx__type_proto__init(&tx);
	onnx__type_proto__init(&tyy);
	onnx__type_proto__tensor__init(&ttx);
	onnx__type_proto__tensor__init(&tty);
	onnx__tensor_shape_proto__init(&shx);
	onnx__tensor_shape_proto__dimension__init(&dim);

	dim.value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
	dim.dim_value = 4;
	Onnx__TensorShapeProto__Dimension *dims[] = {&dim};
	shx.n_dim = 1;
	shx.dim = dims;
	ttx.has_elem_type = tty.has_elem_type = true;
	ttx.elem_type = tty.elem_type = 1; /* FLOAT */
	ttx.shape = &shx;
	tx.value_case = tyy.value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
	tx.tensor_type = &ttx;
	tyy.tensor_type = &tty;
	vx.name = "x";
	vx.type = &tx;
	vy.name = "y";
	vy.type = &tyy;

	char *x[] = {"x"}, *r[] = {"r"}, *y[] = {"y"};
	relu.op_type = "Relu";
	relu.name = "relu";
	relu.n_input = relu.n_output = 1;
	relu.input = x;
	relu.output = r;
	fusion.op_type = "fusion";
	fusion.name = "f";
	fusion.n_input = fusion.n_output = 1;
	fusion.input = r;
	fusion.output = y;

	Onnx__NodeProto *nodes[] = {&relu, &fusion};
	Onnx__ValueInfoProto *ins[] = {&vx}, *outs[] = {&vy};
	gr.name = "g";
	gr.n_node = 2;
	gr.node = nodes;
	gr.n_input = 1;
	gr.input = ins;
	gr.n_output = 1;
	gr.output = outs;
	opset.domain = "";
	opset.has_version = true;
	opset.version = 17;
	Onnx__OperatorSetIdProto *opsets[] = {&opset};
	m.has_ir_version = true;
	m.ir_version = 8;
	m.n_opset_import = 1;
	m.opset_import = opsets;
	m.graph = &gr;

	char dir[] = "/tmp/kiln_fusion_XXXXXX";
	assert_non_null(mkdtemp(dir));
	char path[64];
	snprintf(path, sizeof path, "%s/model.onnx", dir);
	size_t len = onnx__model_proto__get_packed_size(&m);
	uint8_t *buf = malloc(len);
	assert_non_null(buf);
	assert_int_equal(onnx__model_proto__pack(&m, buf), len);
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(buf, 1, len, f), len);
	fclose(f);
	free(buf);

	const char *want = "model.onnx: 1 unsupported operator:\n"
	                   "  fusion (domain 'ai.onnx', opset 17): 1 node, first 'f'";
	kiln_diag d;
	for (int folding = 0; folding < 2; folding++) {
		quiet_diag(&d, "model.onnx");
		kiln_graph *g = (kiln_graph *)&d;
		kiln_status s = folding ? kiln_import_onnx(path, NULL, &g, &d)
		                        : kiln_onnx_import(path, NULL, &g, &d);
		assert_int_equal(s, KILN_ERR_UNSUPPORTED);
		assert_null(g);
		assert_string_equal(d.last, want);
	}
	/* the same model with the op spelled as ONNX would ("Relu") imports */
	fusion.op_type = "Relu";
	len = onnx__model_proto__get_packed_size(&m);
	buf = malloc(len);
	assert_non_null(buf);
	onnx__model_proto__pack(&m, buf);
	f = fopen(path, "wb");
	assert_non_null(f);
	fwrite(buf, 1, len, f);
	fclose(f);
	free(buf);
	quiet_diag(&d, "model.onnx");
	kiln_graph *g;
	if (kiln_onnx_import(path, NULL, &g, &d) != KILN_OK)
		fail_msg("import: %s", d.last);
	kiln_graph_destroy(g);
	unlink(path);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_builder_and_verify),
		cmocka_unit_test(test_interp_matches_unfused),
		cmocka_unit_test(test_exact_text),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_clone),
		cmocka_unit_test(test_verify_errors),
		cmocka_unit_test(test_verify_nested),
		cmocka_unit_test(test_parse_errors_in_body),
		cmocka_unit_test(test_parse_depth),
		cmocka_unit_test(test_parse_lenient_body),
		cmocka_unit_test(test_docs_example),
		cmocka_unit_test(test_mutations),
		cmocka_unit_test(test_onnx_refuses_fusion),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
