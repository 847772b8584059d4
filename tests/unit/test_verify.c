/* test_verify.c — the IR verifier: a valid graph passes and is left
 * unchanged; each invariant, broken on purpose, gives its exact message. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "ir.h"

/* A small valid graph: x -> Conv(w, b) -> Relu -> Reshape(shape) -> output. */
typedef struct fixture {
	kiln_graph *g;
	kiln_value *x, *w, *b, *shape;
	kiln_node *conv, *relu, *reshape;
} fixture;

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

static int setup(void **state)
{
	static fixture f;
	memset(&f, 0, sizeof f);
	f.g = kiln_graph_create("t", NULL);
	if (!f.g)
		return -1;
	kiln_type tx = ty(KILN_DT_F32, 4, (int64_t[]){1, 3, 8, 8});
	kiln_type tw = ty(KILN_DT_F32, 4, (int64_t[]){4, 3, 3, 3});
	kiln_type tb = ty(KILN_DT_F32, 1, (int64_t[]){4});
	kiln_type ts = ty(KILN_DT_I64, 1, (int64_t[]){2});
	f.x = kiln_graph_add_input(f.g, "x", &tx);
	f.w = kiln_graph_add_const(f.g, "w", &tw, NULL);
	f.b = kiln_graph_add_const(f.g, "b", &tb, NULL);
	f.shape = kiln_graph_add_const(f.g, "shape", &ts, (int64_t[]){4, -1});
	f.conv = kiln_graph_add_node(f.g, KILN_OP_CONV, "conv", (kiln_value *[]){f.x, f.w, f.b}, 3,
	                             (const char *[]){"c"}, 1);
	kiln_node_set_ints(f.g, f.conv, "pads", (int64_t[]){1, 1, 1, 1}, 4);
	f.relu = kiln_graph_add_node(f.g, KILN_OP_RELU, "relu", f.conv->outputs, 1,
	                             (const char *[]){"r"}, 1);
	f.reshape = kiln_graph_add_node(f.g, KILN_OP_RESHAPE, "reshape",
	                                (kiln_value *[]){f.relu->outputs[0], f.shape}, 2,
	                                (const char *[]){"y"}, 1);
	kiln_graph_add_output(f.g, f.reshape->outputs[0]);
	kiln_diag d;
	kiln_diag_init(&d, NULL);
	if (kiln_infer_shapes(f.g, &d) != KILN_OK)
		return -1;
	*state = &f;
	return 0;
}

static int teardown(void **state)
{
	fixture *f = *state;
	kiln_graph_destroy(f->g);
	return 0;
}

static void verify_err(const kiln_graph *g, const char *msg)
{
	kiln_diag d;
	kiln_diag_init(&d, "m.kir");
	d.fn = NULL;
	assert_int_equal(kiln_graph_verify(g, &d), KILN_ERR_VERIFY);
	assert_string_equal(d.last, msg);
	assert_int_equal(d.n_errors, 1);
}

static void verify_ok(const kiln_graph *g)
{
	kiln_diag d;
	kiln_diag_init(&d, NULL);
	d.fn = NULL;
	if (kiln_graph_verify(g, &d) != KILN_OK)
		fail_msg("unexpected: %s", d.last);
}

static void test_valid_graph(void **state)
{
	fixture *f = *state;
	verify_ok(f->g);
	char buf[64];
	assert_string_equal(kiln_type_str(&f->conv->outputs[0]->type, buf, sizeof buf),
	                    "f32[1,4,8,8]");
	assert_string_equal(kiln_type_str(&f->reshape->outputs[0]->type, buf, sizeof buf),
	                    "f32[4,64]");
}

static void test_bad_dtype(void **state)
{
	fixture *f = *state;
	f->x->type.dtype = (kiln_dtype)42;
	verify_err(f->g, "m.kir: value 'x' has invalid dtype 42");
}

static void test_bad_rank(void **state)
{
	fixture *f = *state;
	f->b->type.rank = KILN_MAX_RANK + 1;
	verify_err(f->g, "m.kir: value 'b' has rank 9 (at most 8)");
}

static void test_negative_dim(void **state)
{
	fixture *f = *state;
	f->x->type.dims[2] = -1;
	verify_err(f->g, "m.kir: value 'x' has negative dim -1 at axis 2");
}

static void test_duplicate_value_name(void **state)
{
	fixture *f = *state;
	f->relu->outputs[0]->name = "c";
	verify_err(f->g, "m.kir: value name 'c' is not unique");
}

static void test_duplicate_node_name(void **state)
{
	fixture *f = *state;
	f->reshape->name = "conv";
	verify_err(f->g, "m.kir: node 'conv' (Reshape): another node has the same name");
}

static void test_bad_op(void **state)
{
	fixture *f = *state;
	f->relu->op = KILN_OP_COUNT;
	char msg[128];
	snprintf(msg, sizeof msg, "m.kir: node 'relu' (?): invalid op %d", (int)KILN_OP_COUNT);
	verify_err(f->g, msg);
}

static void test_arity(void **state)
{
	fixture *f = *state;
	f->reshape->n_inputs = 1;
	verify_err(f->g, "m.kir: node 'reshape' (Reshape): has 1 inputs, the op takes 2");
	f->reshape->n_inputs = 2;
	f->conv->n_outputs = 0;
	verify_err(f->g, "m.kir: node 'conv' (Conv): has 0 outputs, the op takes 1");
	f->conv->n_outputs = 1;
	kiln_node *cat = kiln_graph_add_node(f->g, KILN_OP_CONCAT, "cat", NULL, 0, NULL, 1);
	assert_non_null(cat);
	verify_err(f->g, "m.kir: node 'cat' (Concat): has 0 inputs, the op takes 1 or more");
}

static void test_required_input_missing(void **state)
{
	fixture *f = *state;
	f->conv->inputs[1] = NULL;
	verify_err(f->g, "m.kir: node 'conv' (Conv): input 1 is required but omitted");
	f->conv->inputs[1] = f->w;
	f->conv->inputs[2] = NULL; /* optional: fine */
	verify_ok(f->g);
}

static void test_use_before_def(void **state)
{
	fixture *f = *state;
	f->g->nodes[0] = f->relu;
	f->g->nodes[1] = f->conv;
	verify_err(f->g, "m.kir: node 'relu' (Relu): input 0 ('c') is used before it is defined");
}

static void test_foreign_value(void **state)
{
	fixture *f = *state;
	kiln_graph *other = kiln_graph_create("o", NULL);
	assert_non_null(other);
	kiln_type t = ty(KILN_DT_F32, 4, (int64_t[]){1, 4, 8, 8});
	kiln_graph_add_input(other, "p", &t);
	kiln_value *q = kiln_graph_add_input(other, "q", &t);
	f->relu->inputs[0] = q;
	verify_err(f->g, "m.kir: node 'relu' (Relu): input 0 ('q') is not a value of this graph");
	kiln_graph_destroy(other);
}

static void test_unlisted_graph_input(void **state)
{
	fixture *f = *state;
	kiln_type t = ty(KILN_DT_F32, 4, (int64_t[]){1, 4, 8, 8});
	kiln_value *v = kiln_graph_add_input(f->g, "z", &t);
	f->g->n_inputs--; /* a graph-input value that the graph does not list */
	f->relu->inputs[0] = v;
	verify_err(f->g, "m.kir: node 'relu' (Relu): input 0 ('z') is used before it is defined");
	f->g->n_inputs++;
	verify_ok(f->g);
	f->g->inputs[0] = f->conv->outputs[0];
	verify_err(f->g, "m.kir: graph input 0 is not an input value of this graph");
}

static void test_producer_link(void **state)
{
	fixture *f = *state;
	f->relu->outputs[0]->index = 1;
	verify_err(f->g, "m.kir: node 'relu' (Relu): output 0 ('r') does not name this node as its "
	                 "producer with index 0");
	f->relu->outputs[0]->index = 0;
	f->relu->outputs[0]->producer = f->conv;
	verify_err(f->g, "m.kir: node 'relu' (Relu): output 0 ('r') does not name this node as its "
	                 "producer with index 0");
}

static void test_output_claimed_twice(void **state)
{
	fixture *f = *state;
	/* a second node claiming the same output value */
	kiln_node *dup = kiln_graph_add_node(f->g, KILN_OP_RELU, "dup", f->conv->outputs, 1, NULL, 1);
	assert_non_null(dup);
	dup->outputs[0] = f->relu->outputs[0];
	f->relu->outputs[0]->producer = dup;
	verify_err(f->g, "m.kir: node 'relu' (Relu): output 0 ('r') does not name this node as its "
	                 "producer with index 0");
	f->relu->outputs[0]->producer = f->relu;
	verify_err(f->g, "m.kir: node 'dup' (Relu): output 0 ('r') does not name this node as its "
	                 "producer with index 0");
}

static void test_const_data(void **state)
{
	fixture *f = *state;
	void *data = f->b->data;
	f->b->data = NULL;
	verify_err(f->g, "m.kir: constant 'b' has no data");
	f->b->elided = "f32[4] {...}";
	verify_ok(f->g);
	f->b->data = data;
	f->b->elided = NULL;
}

static void test_attr_unknown(void **state)
{
	fixture *f = *state;
	kiln_node_set_int(f->g, f->relu, "alpha", 1);
	verify_err(f->g, "m.kir: node 'relu' (Relu): Relu has no attribute 'alpha'");
}

static void test_attr_kind(void **state)
{
	fixture *f = *state;
	kiln_node_set_float(f->g, f->conv, "group", 1.0f);
	verify_err(f->g, "m.kir: node 'conv' (Conv): attribute 'group' has kind f, expected i");
	kiln_node_set_int(f->g, f->conv, "strides", 1);
	kiln_node_set_int(f->g, f->conv, "group", 1);
	verify_err(f->g, "m.kir: node 'conv' (Conv): attribute 'strides' has kind i, expected ints");
	/* the last attribute of a spec, and prefixes of other names, are matched exactly */
	kiln_node_set_ints(f->g, f->conv, "strides", (int64_t[]){1, 1}, 2);
	kiln_node_set_int(f->g, f->conv, "stride", 1);
	verify_err(f->g, "m.kir: node 'conv' (Conv): Conv has no attribute 'stride'");
}

static void test_attr_ok_kinds(void **state)
{
	fixture *f = *state;
	kiln_node_set_string(f->g, f->conv, "auto_pad", "NOTSET");
	kiln_node_set_ints(f->g, f->conv, "dilations", (int64_t[]){1, 1}, 2);
	kiln_node_set_int(f->g, f->reshape, "allowzero", 0);
	verify_ok(f->g);
}

static void test_graph_output_undefined(void **state)
{
	fixture *f = *state;
	bool keep[3] = {true, true, false};
	kiln_graph_compact(f->g, keep);
	verify_err(f->g, "m.kir: graph output 0 ('y') is not defined by any node");
	f->g->outputs[0] = NULL;
	verify_err(f->g, "m.kir: graph output 0 is not a value of this graph");
}

static void test_type_mismatch(void **state)
{
	fixture *f = *state;
	kiln_type wrong = ty(KILN_DT_F32, 2, (int64_t[]){64, 4});
	f->reshape->outputs[0]->type = wrong;
	verify_err(f->g, "m.kir: node 'reshape' (Reshape): output 0 has type f32[64,4], shape "
	                 "inference gives f32[4,64]");
	/* the verifier restored the (wrong) type it found */
	assert_true(kiln_type_equal(&f->reshape->outputs[0]->type, &wrong));
	f->relu->outputs[0]->type.dtype = KILN_DT_F16;
	verify_err(f->g, "m.kir: node 'relu' (Relu): output 0 has type f16[1,4,8,8], shape "
	                 "inference gives f32[1,4,8,8]");
}

static void test_shape_rule_fails(void **state)
{
	fixture *f = *state;
	int64_t *shape = f->shape->data;
	shape[0] = 5;
	verify_err(f->g, "m.kir: node 'reshape' (Reshape): shape inference fails: cannot infer "
	                 "the -1 in shape: 256 elements do not divide into the other dims");
	shape[0] = 4;
	f->shape->kind = KILN_VALUE_INPUT; /* no longer constant: shape is unknown */
	f->g->inputs[f->g->n_inputs++] = f->shape;
	verify_err(f->g, "m.kir: node 'reshape' (Reshape): shape inference fails: input 1 "
	                 "('shape') must be a compile-time constant: kiln compiles for static "
	                 "shapes (fold it, or bind the input)");
}

static void test_quant_params(void **state)
{
	fixture *f = *state;
	float scale[3] = {1, 1, 1};
	int32_t zp[3] = {0, 0, 0};
	kiln_quant q = {1, 3, scale, zp};
	f->x->quant = &q;
	verify_ok(f->g); /* x is [1,3,8,8]: axis 1 has 3 channels */
	q.n = 2;
	verify_err(f->g, "m.kir: value 'x' has invalid quantisation parameters (axis 1, 2 scales)");
	q.axis = -1;
	q.n = 1;
	verify_ok(f->g);
	q.scale = NULL;
	verify_err(f->g, "m.kir: value 'x' has invalid quantisation parameters (axis -1, 1 scales)");
	f->x->quant = NULL;
}

static void test_value_ids(void **state)
{
	fixture *f = *state;
	f->g->values[1]->id = 7;
	verify_err(f->g, "m.kir: value 'w' has id 7 at index 1");
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_valid_graph),
		T(test_bad_dtype),
		T(test_bad_rank),
		T(test_negative_dim),
		T(test_duplicate_value_name),
		T(test_duplicate_node_name),
		T(test_bad_op),
		T(test_arity),
		T(test_required_input_missing),
		T(test_use_before_def),
		T(test_foreign_value),
		T(test_unlisted_graph_input),
		T(test_producer_link),
		T(test_output_claimed_twice),
		T(test_const_data),
		T(test_attr_unknown),
		T(test_attr_kind),
		T(test_attr_ok_kinds),
		T(test_graph_output_undefined),
		T(test_type_mismatch),
		T(test_shape_rule_fails),
		T(test_quant_params),
		T(test_value_ids),
	};
#undef T
	return cmocka_run_group_tests(tests, NULL, NULL);
}
