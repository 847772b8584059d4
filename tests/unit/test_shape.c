/* test_shape.c — shape inference: every shape rule of ops.def, window
 * geometry (auto_pad, ceil_mode, ConvTranspose output_shape), broadcasting,
 * arity checks, and the exact error messages. Expected dims are worked out by
 * hand from the ONNX (opset 21) operator specs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "ir.h"

#define TSTR(t) kiln_type_str((t), (char[256]){0}, 256)
#define NDIMS(...) ((int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)))
#define TY(dt, ...) ty((dt), (int64_t[]){__VA_ARGS__}, NDIMS(__VA_ARGS__))
#define SCALAR(dt) ty((dt), NULL, 0)
#define IN(g, dt, ...) input((g), TY(dt, __VA_ARGS__))
#define CI64(g, ...) const_i64((g), (int64_t[]){__VA_ARGS__}, NDIMS(__VA_ARGS__))
#define NODE(g, op, nout, ...)                                                         \
	node((g), (op), (nout), (kiln_value *[]){__VA_ARGS__},                        \
	     (int)(sizeof((kiln_value *[]){__VA_ARGS__}) / sizeof(kiln_value *)))
#define OUT_IS(n, i, s) assert_string_equal(TSTR(&(n)->outputs[i]->type), (s))
#define INTS(g, n, name, ...) kiln_node_set_ints((g), (n), (name), (int64_t[]){__VA_ARGS__}, NDIMS(__VA_ARGS__))

static kiln_type ty(kiln_dtype dt, const int64_t *dims, int rank)
{
	kiln_type t;
	memset(&t, 0, sizeof t);
	t.dtype = dt;
	t.rank = rank;
	for (int i = 0; i < rank; i++)
		t.dims[i] = dims[i];
	return t;
}

static kiln_value *input(kiln_graph *g, kiln_type t)
{
	kiln_value *v = kiln_graph_add_input(g, NULL, &t);
	assert_non_null(v);
	return v;
}

static kiln_value *const_i64(kiln_graph *g, const int64_t *v, int count)
{
	kiln_type t = ty(KILN_DT_I64, (int64_t[]){count}, 1);
	kiln_value *c = kiln_graph_add_const(g, NULL, &t, v);
	assert_non_null(c);
	return c;
}

static kiln_value *const_f32(kiln_graph *g, const float *v, int count)
{
	kiln_type t = ty(KILN_DT_F32, (int64_t[]){count}, 1);
	kiln_value *c = kiln_graph_add_const(g, NULL, &t, v);
	assert_non_null(c);
	return c;
}

static kiln_value *scalar_const(kiln_graph *g, kiln_dtype dt, const void *v)
{
	kiln_type t = SCALAR(dt);
	kiln_value *c = kiln_graph_add_const(g, NULL, &t, v);
	assert_non_null(c);
	return c;
}

static kiln_node *node(kiln_graph *g, kiln_op op, int nout, kiln_value *const *in, int nin)
{
	kiln_node *n = kiln_graph_add_node(g, op, "n", in, nin, NULL, nout);
	assert_non_null(n);
	return n;
}

static void quiet(kiln_diag *d)
{
	kiln_diag_init(d, NULL);
	d->fn = NULL;
}

static void infer_ok(kiln_node *n)
{
	kiln_diag d;
	quiet(&d);
	if (kiln_infer_node(n, &d) != KILN_OK)
		fail_msg("unexpected error: %s", d.last);
}

static void infer_err(kiln_node *n, kiln_status want, const char *msg)
{
	kiln_diag d;
	quiet(&d);
	kiln_status st = kiln_infer_node(n, &d);
	char full[1200];
	snprintf(full, sizeof full, "node '%s' (%s): %s", n->name, kiln_op_name(n->op), msg);
	assert_string_equal(d.last, full);
	assert_int_equal(st, want);
}

static kiln_graph *new_graph(void)
{
	kiln_graph *g = kiln_graph_create("t", NULL);
	assert_non_null(g);
	return g;
}

static const char NOT_CONST[] = "must be a compile-time constant: kiln compiles for static "
                                "shapes (fold it, or bind the input)";

/* ---- broadcasting and helpers ---- */

static void test_broadcast(void **state)
{
	(void)state;
	kiln_type out;
	kiln_type a = TY(KILN_DT_F32, 2, 1, 4), b = TY(KILN_DT_I64, 3, 1);
	assert_true(kiln_broadcast(&a, &b, &out));
	assert_string_equal(TSTR(&out), "f32[2,3,4]");
	a = TY(KILN_DT_F32, 0, 1);
	b = TY(KILN_DT_F32, 1, 5);
	assert_true(kiln_broadcast(&a, &b, &out));
	assert_string_equal(TSTR(&out), "f32[0,5]");
	a = SCALAR(KILN_DT_F32);
	assert_true(kiln_broadcast(&a, &b, &out));
	assert_string_equal(TSTR(&out), "f32[1,5]");
	a = TY(KILN_DT_F32, 2, 3);
	b = TY(KILN_DT_F32, 4);
	assert_false(kiln_broadcast(&a, &b, &out));

	int ax;
	assert_true(kiln_axis_norm(-1, 3, &ax));
	assert_int_equal(ax, 2);
	assert_true(kiln_axis_norm(-3, 3, &ax));
	assert_int_equal(ax, 0);
	assert_false(kiln_axis_norm(3, 3, &ax));
	assert_false(kiln_axis_norm(-4, 3, &ax));
	assert_false(kiln_axis_norm(0, 0, &ax));
}

static void test_arity(void **state)
{
	(void)state;
	kiln_graph *g = new_graph();
	kiln_value *x = IN(g, KILN_DT_F32, 2);
	infer_err(NODE(g, KILN_OP_ADD, 1, x), KILN_ERR_SHAPE, "expected 2 inputs, got 1");
	infer_err(NODE(g, KILN_OP_SLICE, 1, x, x, x, x, x, x), KILN_ERR_SHAPE,
	          "expected 3 to 5 inputs, got 6");
	infer_err(NODE(g, KILN_OP_RELU, 2, x), KILN_ERR_SHAPE, "expected 1 output, got 2");
	infer_err(NODE(g, KILN_OP_ADD, 1, x, NULL), KILN_ERR_SHAPE,
	          "input 1 is required but omitted");
	kiln_node *n = kiln_graph_add_node(g, KILN_OP_CONCAT, "n", NULL, 0, NULL, 1);
	infer_err(n, KILN_ERR_SHAPE, "expected at least 1 input, got 0");
	kiln_graph_destroy(g);
}

/* ---- convolution and pools ---- */

static void test_conv(void **state)
{
	(void)state;
	kiln_graph *g = new_graph();
	kiln_value *x = IN(g, KILN_DT_F32, 1, 3, 32, 32), *w = IN(g, KILN_DT_F32, 8, 3, 3, 3);
	kiln_value *b = IN(g, KILN_DT_F32, 8);
	kiln_node *n = NODE(g, KILN_OP_CONV, 1, x, w, b);
	INTS(g, n, "pads", 1, 1, 1, 1);
	INTS(g, n, "strides", 2, 2);
	infer_ok(n); /* floor((32 + 2 - 3) / 2) + 1 = 16 */
	OUT_IS(n, 0, "f32[1,8,16,16]");

	/* groups and dilations: ek_h = 5 -> 10 - 5 + 1 = 6; ek_w = 3 -> 10 */
	kiln_value *x2 = IN(g, KILN_DT_F32, 2, 4, 10, 12), *w2 = IN(g, KILN_DT_F32, 6, 2, 3, 3);
	n = NODE(g, KILN_OP_CONV, 1, x2, w2);
	kiln_node_set_int(g, n, "group", 2);
	INTS(g, n, "dilations", 2, 1);
	infer_ok(n);
	OUT_IS(n, 0, "f32[2,6,6,10]");

	/* 1-D, VALID: (7 - 3) / 2 + 1 = 3 */
	kiln_value *x3 = IN(g, KILN_DT_F32, 1, 1, 7), *w3 = IN(g, KILN_DT_F32, 4, 1, 3);
	n = NODE(g, KILN_OP_CONV, 1, x3, w3);
	kiln_node_set_string(g, n, "auto_pad", "VALID");
	INTS(g, n, "strides", 2);
	INTS(g, n, "pads", 5, 5); /* ignored under VALID */
	infer_ok(n);
	OUT_IS(n, 0, "f32[1,4,3]");

	infer_err(NODE(g, KILN_OP_CONV, 1, x, IN(g, KILN_DT_F32, 8, 3, 3)), KILN_ERR_SHAPE,
	          "input 1 has rank 3, expected 4");
	infer_err(NODE(g, KILN_OP_CONV, 1, x, IN(g, KILN_DT_F32, 8, 4, 3, 3)), KILN_ERR_SHAPE,
	          "input 1 (f32[8,4,3,3]) with group 1 expects 4 input channels, input 0 has 3");
	infer_err(NODE(g, KILN_OP_CONV, 1, IN(g, KILN_DT_I64, 1, 3, 8, 8), w), KILN_ERR_SHAPE,
	          "input 0 has dtype i64, expected a float dtype");
	infer_err(NODE(g, KILN_OP_CONV, 1, x, IN(g, KILN_DT_F16, 8, 3, 3, 3)), KILN_ERR_SHAPE,
	          "input 1 has dtype f16, expected f32 like input 0");
	infer_err(NODE(g, KILN_OP_CONV, 1, x, w, IN(g, KILN_DT_F32, 3)), KILN_ERR_SHAPE,
	          "input 2 (f32[3]) must be 1-D with 8 elements (the output channels)");
	infer_err(NODE(g, KILN_OP_CONV, 1, IN(g, KILN_DT_F32, 1, 3, 2, 2), w), KILN_ERR_SHAPE,
	          "spatial dim 0: padded input size 2 is smaller than the window extent 3");
	n = NODE(g, KILN_OP_CONV, 1, x, w);
	kiln_node_set_string(g, n, "auto_pad", "SAME");
	infer_err(n, KILN_ERR_UNSUPPORTED, "auto_pad 'SAME' is not supported");
	n = NODE(g, KILN_OP_CONV, 1, x, w);
	INTS(g, n, "kernel_shape", 3, 5);
	infer_err(n, KILN_ERR_SHAPE, "kernel_shape[1] is 5, but input 1 has 3");
	n = NODE(g, KILN_OP_CONV, 1, x, w);
	INTS(g, n, "strides", 1, 0);
	infer_err(n, KILN_ERR_SHAPE, "strides[1] is 0, expected at least 1");
	n = NODE(g, KILN_OP_CONV, 1, x, w);
	INTS(g, n, "pads", 1, 1);
	infer_err(n, KILN_ERR_SHAPE, "pads has 2 values, expected 4");
	kiln_graph_destroy(g);
}

static void test_conv_same_pads(void **state)
{
	(void)state;
	kiln_graph *g = new_graph();
	kiln_diag d;
	quiet(&d);
	kiln_window w;
	/* in 7, k 3, s 2: out ceil(7/2) = 4; total (4-1)*2 + 3 - 7 = 2 */
	kiln_node *n = NODE(g, KILN_OP_CONV, 1, IN(g, KILN_DT_F32, 1, 1, 7, 7),
	                    IN(g, KILN_DT_F32, 1, 1, 3, 3));
	kiln_node_set_string(g, n, "auto_pad", "SAME_UPPER");
	INTS(g, n, "strides", 2, 2);
	infer_ok(n);
	OUT_IS(n, 0, "f32[1,1,4,4]");
	assert_int_equal(kiln_window_resolve(n, &w, &d), KILN_OK);
	assert_int_equal(w.pad_begin[0], 1);
	assert_int_equal(w.pad_end[0], 1);

	/* in 6, k 4, s 1: total 5 + 4 - 6 = 3; UPPER 1|2, LOWER 2|1 */
	kiln_value *x = IN(g, KILN_DT_F32, 1, 1, 6), *wt = IN(g, KILN_DT_F32, 1, 1, 4);
	n = NODE(g, KILN_OP_CONV, 1, x, wt);
	kiln_node_set_string(g, n, "auto_pad", "SAME_UPPER");
	infer_ok(n);
	OUT_IS(n, 0, "f32[1,1,6]");
	assert_int_equal(kiln_window_resolve(n, &w, &d), KILN_OK);
	assert_int_equal(w.pad_begin[0], 1);
	assert_int_equal(w.pad_end[0], 2);
	kiln_node_set_string(g, n, "auto_pad", "SAME_LOWER");
	infer_ok(n);
	OUT_IS(n, 0, "f32[1,1,6]");
	assert_int_equal(kiln_window_resolve(n, &w, &d), KILN_OK);
	assert_int_equal(w.pad_begin[0], 2);
	assert_int_equal(w.pad_end[0], 1);

	/* k 1 smaller than s 3 on in 5: total max(3 + 1 - 5, 0) = 0, out 2 */
	n = NODE(g, KILN_OP_CONV, 1, IN(g, KILN_DT_F32, 1, 1, 5), IN(g, KILN_DT_F32, 1, 1, 1));
	kiln_node_set_string(g, n, "auto_pad", "SAME_UPPER");
	INTS(g, n, "strides", 3);
	infer_ok(n);
	OUT_IS(n, 0, "f32[1,1,2]");
	assert_int_equal(kiln_window_resolve(n, &w, &d), KILN_OK);
	assert_int_equal(w.pad_begin[0], 0);
	assert_int_equal(w.pad_end[0], 0);

	/* dilation 2, k 3 (extent 5), s 2, in 8: out 4, total 3*2 + 5 - 8 = 3 */
	n = NODE(g, KILN_OP_CONV, 1, IN(g, KILN_DT_F32, 1, 1, 8), IN(g, KILN_DT_F32, 1, 1, 3));
	kiln_node_set_string(g, n, "auto_pad", "SAME_LOWER");
	INTS(g, n, "strides", 2);
	INTS(g, n, "dilations", 2);
	infer_ok(n);
	OUT_IS(n, 0, "f32[1,1,4]");
	assert_int_equal(kiln_window_resolve(n, &w, &d), KILN_OK);
	assert_int_equal(w.pad_begin[0], 2);
	assert_int_equal(w.pad_end[0], 1);
	kiln_graph_destroy(g);
}

static void test_window_fields(void **state)
{
	(void)state;
	kiln_graph *g = new_graph();
	kiln_diag d;
	quiet(&d);
	kiln_window w;
	kiln_node *n = NODE(g, KILN_OP_CONV, 1, IN(g, KILN_DT_F32, 2, 6, 9, 11),
	                    IN(g, KILN_DT_F32, 4, 3, 3, 2));
	kiln_node_set_int(g, n, "group", 2);
	INTS(g, n, "pads", 1, 0, 2, 1);
	INTS(g, n, "strides", 2, 3);
	INTS(g, n, "dilations", 1, 2);
	assert_int_equal(kiln_window_resolve(n, &w, &d), KILN_OK);
	assert_int_equal(w.nspatial, 2);
	assert_int_equal(w.batch, 2);
	assert_int_equal(w.in_c, 6);
	assert_int_equal(w.out_c, 4);
	assert_int_equal(w.group, 2);
	assert_int_equal(w.in[0], 9);
	assert_int_equal(w.in[1], 11);
	assert_int_equal(w.kernel[0], 3);
	assert_int_equal(w.kernel[1], 2);
	assert_int_equal(w.stride[0], 2);
	assert_int_equal(w.stride[1], 3);
	assert_int_equal(w.dilation[0], 1);
	assert_int_equal(w.dilation[1], 2);
	assert_int_equal(w.pad_begin[0], 1);
	assert_int_equal(w.pad_begin[1], 0);
	assert_int_equal(w.pad_end[0], 2);
	assert_int_equal(w.pad_end[1], 1);
	/* (9 + 3 - 3) / 2 + 1 = 5; (11 + 1 - 3) / 3 + 1 = 4 */
	assert_int_equal(w.out[0], 5);
	assert_int_equal(w.out[1], 4);
	assert_false(w.ceil_mode);

	n = NODE(g, KILN_OP_AVERAGE_POOL, 1, IN(g, KILN_DT_F32, 1, 2, 5));
	INTS(g, n, "kernel_shape", 2);
	kiln_node_set_int(g, n, "count_include_pad", 1);
	kiln_node_set_int(g, n, "ceil_mode", 1);
	assert_int_equal(kiln_window_resolve(n, &w, &d), KILN_OK);
	assert_true(w.count_include_pad);
	assert_true(w.ceil_mode);
	assert_int_equal(w.out_c, 2);
	assert_int_equal(w.group, 1);
	assert_int_equal(w.out[0], 4); /* stride 1: 5 - 2 + 1 */

	n = NODE(g, KILN_OP_RELU, 1, IN(g, KILN_DT_F32, 1, 2, 5));
	assert_int_equal(kiln_window_resolve(n, &w, &d), KILN_ERR_INTERNAL);
	kiln_graph_destroy(g);
}

static void test_conv_transpose(void **state)
{
	(void)state;
	kiln_graph *g = new_graph();
	kiln_diag d;
	quiet(&d);
	kiln_window w;
	kiln_value *x = IN(g, KILN_DT_F32, 1, 1, 3, 3), *wt = IN(g, KILN_DT_F32, 1, 2, 3, 3);

	kiln_node *n = NODE(g, KILN_OP_CONV_TRANSPOSE, 1, x, wt); /* 1*(3-1) + 3 = 5 */
	infer_ok(n);
	OUT_IS(n, 0, "f32[1,2,5,5]");

	/* strides 3,2, pads 1,2,1,2: 3*2 + 3 - 2 = 7; 2*2 + 3 - 4 = 3 */
	n = NODE(g, KILN_OP_CONV_TRANSPOSE, 1, x, wt);
	INTS(g, n, "strides", 3, 2);
	INTS(g, n, "pads", 1, 2, 1, 2);
	infer_ok(n);
	OUT_IS(n, 0, "f32[1,2,7,3]");

	/* output_padding 1,1: 6 + 1 + 3 = 10; 4 + 1 + 3 = 8 */
	n = NODE(g, KILN_OP_CONV_TRANSPOSE, 1, x, wt);
	INTS(g, n, "strides", 3, 2);
	INTS(g, n, "output_padding", 1, 1);
	infer_ok(n);
	OUT_IS(n, 0, "f32[1,2,10,8]");
	assert_int_equal(kiln_window_resolve(n, &w, &d), KILN_OK);
	assert_int_equal(w.out_pad[0], 1);
	assert_int_equal(w.out_pad[1], 1);

	/* output_shape 10,8 beyond the full 9,7: total -1 -> begin 0, end -1 */
	n = NODE(g, KILN_OP_CONV_TRANSPOSE, 1, x, wt);
	INTS(g, n, "strides", 3, 2);
	INTS(g, n, "output_shape", 10, 8);
	infer_ok(n);
	OUT_IS(n, 0, "f32[1,2,10,8]");
	assert_int_equal(kiln_window_resolve(n, &w, &d), KILN_OK);
	assert_int_equal(w.pad_begin[0], 0);
	assert_int_equal(w.pad_end[0], -1);
	assert_int_equal(w.pad_begin[1], 0);
	assert_int_equal(w.pad_end[1], -1);
	assert_int_equal(w.out[0], 10);
	assert_int_equal(w.out[1], 8);

	/* full N,C,H,W output_shape form */
	n = NODE(g, KILN_OP_CONV_TRANSPOSE, 1, x, wt);
	INTS(g, n, "strides", 3, 2);
	INTS(g, n, "output_shape", 1, 2, 8, 6);
	infer_ok(n);
	OUT_IS(n, 0, "f32[1,2,8,6]");

	/* SAME_UPPER, strides 2: out 6; total 2*2 + 3 - 6 = 1 -> begin 0, end 1 */
	n = NODE(g, KILN_OP_CONV_TRANSPOSE, 1, x, wt);
	kiln_node_set_string(g, n, "auto_pad", "SAME_UPPER");
	INTS(g, n, "strides", 2, 2);
	infer_ok(n);
	OUT_IS(n, 0, "f32[1,2,6,6]");
	assert_int_equal(kiln_window_resolve(n, &w, &d), KILN_OK);
	assert_int_equal(w.pad_begin[0], 0);
	assert_int_equal(w.pad_end[0], 1);

	/* output_shape with an odd total: NOTSET puts the extra at the beginning */
	kiln_value *x1 = IN(g, KILN_DT_F32, 1, 1, 3), *w1 = IN(g, KILN_DT_F32, 1, 1, 3);
	n = NODE(g, KILN_OP_CONV_TRANSPOSE, 1, x1, w1);
	INTS(g, n, "strides", 2);
	INTS(g, n, "output_shape", 6);
	infer_ok(n);
	OUT_IS(n, 0, "f32[1,1,6]");
	assert_int_equal(kiln_window_resolve(n, &w, &d), KILN_OK);
	assert_int_equal(w.pad_begin[0], 1);
	assert_int_equal(w.pad_end[0], 0);
	kiln_node_set_string(g, n, "auto_pad", "SAME_UPPER");
	assert_int_equal(kiln_window_resolve(n, &w, &d), KILN_OK);
	assert_int_equal(w.pad_begin[0], 0);
	assert_int_equal(w.pad_end[0], 1);

	/* dilations 2 with a 2x2 kernel: extent 3, 2 + 3 = 5 */
	n = NODE(g, KILN_OP_CONV_TRANSPOSE, 1, x, IN(g, KILN_DT_F32, 1, 1, 2, 2));
	INTS(g, n, "dilations", 2, 2);
	infer_ok(n);
	OUT_IS(n, 0, "f32[1,1,5,5]");

	/* group 2: W [C=4, M/group=3] -> 6 output channels */
	kiln_value *xg = IN(g, KILN_DT_F32, 1, 4, 3, 3), *wg = IN(g, KILN_DT_F32, 4, 3, 3, 3);
	n = NODE(g, KILN_OP_CONV_TRANSPOSE, 1, xg, wg, IN(g, KILN_DT_F32, 6));
	kiln_node_set_int(g, n, "group", 2);
	infer_ok(n);
	OUT_IS(n, 0, "f32[1,6,5,5]");

	infer_err(NODE(g, KILN_OP_CONV_TRANSPOSE, 1, xg, wt), KILN_ERR_SHAPE,
	          "input 1 (f32[1,2,3,3]) expects 1 input channels, input 0 has 4");
	n = NODE(g, KILN_OP_CONV_TRANSPOSE, 1, x, wt);
	INTS(g, n, "pads", 3, 3, 3, 3);
	infer_err(n, KILN_ERR_SHAPE, "output size -1 along spatial dim 0 is not positive");
	kiln_graph_destroy(g);
}

static void test_pool(void **state)
{
	(void)state;
	kiln_graph *g = new_graph();
	kiln_node *n = NODE(g, KILN_OP_MAX_POOL, 2, IN(g, KILN_DT_F32, 1, 3, 32, 32));
	INTS(g, n, "kernel_shape", 3, 3);
	INTS(g, n, "strides", 2, 2);
	INTS(g, n, "pads", 1, 1, 1, 1);
	infer_ok(n);
	OUT_IS(n, 0, "f32[1,3,16,16]");
	OUT_IS(n, 1, "i64[1,3,16,16]");

	/* in 4, k 3, s 2: floor -> 1; ceil -> ceil(1/2) + 1 = 2 */
	kiln_value *x4 = IN(g, KILN_DT_F32, 1, 1, 4, 4);
	n = NODE(g, KILN_OP_MAX_POOL, 1, x4);
	INTS(g, n, "kernel_shape", 3, 3);
	INTS(g, n, "strides", 2, 2);
	infer_ok(n);
	OUT_IS(n, 0, "f32[1,1,1,1]");
	kiln_node_set_int(g, n, "ceil_mode", 1);
	infer_ok(n);
	OUT_IS(n, 0, "f32[1,1,2,2]");

	/* the last window must start inside the input or the left padding:
	 * in 6, k 1, s 2: ceil(5/2) + 1 = 4, but window 3 would start at 6 -> 3 */
	n = NODE(g, KILN_OP_AVERAGE_POOL, 1, IN(g, KILN_DT_F32, 1, 1, 6));
	INTS(g, n, "kernel_shape", 1);
	INTS(g, n, "strides", 2);
	kiln_node_set_int(g, n, "ceil_mode", 1);
	infer_ok(n);
	OUT_IS(n, 0, "f32[1,1,3]");
	/* in 5, k 2, s 2, pads 1,1: ceil(5/2) + 1 = 4; (4-1)*2 = 6 >= 5 + 1 -> 3 */
	n = NODE(g, KILN_OP_AVERAGE_POOL, 1, IN(g, KILN_DT_F32, 1, 1, 5));
	INTS(g, n, "kernel_shape", 2);
	INTS(g, n, "strides", 2);
	INTS(g, n, "pads", 1, 1);
	kiln_node_set_int(g, n, "ceil_mode", 1);
	infer_ok(n);
	OUT_IS(n, 0, "f32[1,1,3]");
	/* in 5, k 2, s 2, no pads: ceil(3/2) + 1 = 3; (3-1)*2 = 4 < 5 stays */
	n = NODE(g, KILN_OP_AVERAGE_POOL, 1, IN(g, KILN_DT_F32, 1, 1, 5));
	INTS(g, n, "kernel_shape", 2);
	INTS(g, n, "strides", 2);
	kiln_node_set_int(g, n, "ceil_mode", 1);
	infer_ok(n);
	OUT_IS(n, 0, "f32[1,1,3]");

	/* SAME_LOWER, in 5, k 2, s 1: total 1, begin 1, end 0, out 5 */
	n = NODE(g, KILN_OP_MAX_POOL, 1, IN(g, KILN_DT_U8, 1, 1, 5, 5));
	INTS(g, n, "kernel_shape", 2, 2);
	kiln_node_set_string(g, n, "auto_pad", "SAME_LOWER");
	infer_ok(n);
	OUT_IS(n, 0, "u8[1,1,5,5]");
	kiln_diag d;
	quiet(&d);
	kiln_window w;
	assert_int_equal(kiln_window_resolve(n, &w, &d), KILN_OK);
	assert_int_equal(w.pad_begin[1], 1);
	assert_int_equal(w.pad_end[1], 0);

	/* dilated average pool: extent 5 on 9 with s 1 -> 5 */
	n = NODE(g, KILN_OP_AVERAGE_POOL, 1, IN(g, KILN_DT_F32, 1, 1, 9));
	INTS(g, n, "kernel_shape", 3);
	INTS(g, n, "dilations", 2);
	infer_ok(n);
	OUT_IS(n, 0, "f32[1,1,5]");

	infer_err(NODE(g, KILN_OP_MAX_POOL, 1, x4), KILN_ERR_SHAPE,
	          "attribute 'kernel_shape' is required");
	n = NODE(g, KILN_OP_AVERAGE_POOL, 1, IN(g, KILN_DT_I8, 1, 1, 4, 4));
	INTS(g, n, "kernel_shape", 2, 2);
	infer_err(n, KILN_ERR_SHAPE, "input 0 has dtype i8, expected a float dtype");
	n = NODE(g, KILN_OP_MAX_POOL, 1, IN(g, KILN_DT_F32, 1, 4));
	INTS(g, n, "kernel_shape", 2);
	infer_err(n, KILN_ERR_SHAPE, "input 0 has rank 2, expected at least 3");
	n = NODE(g, KILN_OP_MAX_POOL, 1, x4);
	INTS(g, n, "kernel_shape", 2);
	infer_err(n, KILN_ERR_SHAPE, "kernel_shape has 1 values, expected 2");
	kiln_graph_destroy(g);
}

static void test_global_pool(void **state)
{
	(void)state;
	kiln_graph *g = new_graph();
	kiln_node *n = NODE(g, KILN_OP_GLOBAL_AVG_POOL, 1, IN(g, KILN_DT_F32, 2, 3, 5, 7));
	infer_ok(n);
	OUT_IS(n, 0, "f32[2,3,1,1]");
	n = NODE(g, KILN_OP_GLOBAL_MAX_POOL, 1, IN(g, KILN_DT_F16, 2, 3, 5, 7, 9));
	infer_ok(n);
	OUT_IS(n, 0, "f16[2,3,1,1,1]");
	infer_err(NODE(g, KILN_OP_GLOBAL_MAX_POOL, 1, IN(g, KILN_DT_F32, 2, 3)), KILN_ERR_SHAPE,
	          "input 0 has rank 2, expected at least 3");
	kiln_graph_destroy(g);
}

static void test_batch_norm(void **state)
{
	(void)state;
	kiln_graph *g = new_graph();
	kiln_value *x = IN(g, KILN_DT_F32, 2, 3, 4, 4), *p = IN(g, KILN_DT_F32, 3);
	kiln_node *n = NODE(g, KILN_OP_BATCH_NORM, 1, x, p, p, p, p);
	infer_ok(n);
	OUT_IS(n, 0, "f32[2,3,4,4]");
	infer_err(NODE(g, KILN_OP_BATCH_NORM, 1, x, IN(g, KILN_DT_F32, 4), p, p, p), KILN_ERR_SHAPE,
	          "input 1 (f32[4]) must be 1-D with 3 elements (the channels)");
	n = NODE(g, KILN_OP_BATCH_NORM, 1, x, p, p, p, p);
	kiln_node_set_int(g, n, "training_mode", 1);
	infer_err(n, KILN_ERR_UNSUPPORTED, "training_mode 1 is not supported (inference only)");
	kiln_graph_destroy(g);
}

static void test_layer_norm(void **state)
{
	(void)state;
	kiln_graph *g = new_graph();
	kiln_value *x = IN(g, KILN_DT_F32, 2, 3, 4);
	kiln_node *n = NODE(g, KILN_OP_LAYER_NORM, 3, x, IN(g, KILN_DT_F32, 3, 4),
	                    IN(g, KILN_DT_F32, 4));
	kiln_node_set_int(g, n, "axis", 1);
	infer_ok(n);
	OUT_IS(n, 0, "f32[2,3,4]");
	OUT_IS(n, 1, "f32[2,1,1]");
	OUT_IS(n, 2, "f32[2,1,1]");

	n = NODE(g, KILN_OP_LAYER_NORM, 2, IN(g, KILN_DT_F16, 2, 3, 4), IN(g, KILN_DT_F16, 4));
	infer_ok(n);
	OUT_IS(n, 0, "f16[2,3,4]");
	OUT_IS(n, 1, "f32[2,3,1]");

	infer_err(NODE(g, KILN_OP_LAYER_NORM, 1, x, IN(g, KILN_DT_F32, 3)), KILN_ERR_SHAPE,
	          "input 1 (f32[3]) does not broadcast to the normalised shape f32[4]");
	n = NODE(g, KILN_OP_LAYER_NORM, 1, x, IN(g, KILN_DT_F32, 4));
	kiln_node_set_int(g, n, "axis", 3);
	infer_err(n, KILN_ERR_SHAPE, "axis 3 is out of range for rank 3");
	kiln_graph_destroy(g);
}

static void test_gemm(void **state)
{
	(void)state;
	kiln_graph *g = new_graph();
	kiln_value *a = IN(g, KILN_DT_F32, 4, 3), *b = IN(g, KILN_DT_F32, 5, 4);
	kiln_node *n = NODE(g, KILN_OP_GEMM, 1, a, b, IN(g, KILN_DT_F32, 5));
	kiln_node_set_int(g, n, "transA", 1);
	kiln_node_set_int(g, n, "transB", 1);
	infer_ok(n);
	OUT_IS(n, 0, "f32[3,5]");

	n = NODE(g, KILN_OP_GEMM, 1, IN(g, KILN_DT_F32, 2, 3), IN(g, KILN_DT_F32, 3, 7),
	         IN(g, KILN_DT_F32, 2, 1));
	infer_ok(n);
	OUT_IS(n, 0, "f32[2,7]");

	infer_err(NODE(g, KILN_OP_GEMM, 1, a, b), KILN_ERR_SHAPE,
	          "input 0 (f32[4,3]) and input 1 (f32[5,4]) have mismatched inner dims 3 and 5");
	n = NODE(g, KILN_OP_GEMM, 1, a, b, IN(g, KILN_DT_F32, 3));
	kiln_node_set_int(g, n, "transA", 1);
	kiln_node_set_int(g, n, "transB", 1);
	infer_err(n, KILN_ERR_SHAPE, "input 2 (f32[3]) does not broadcast to f32[3,5]");
	infer_err(NODE(g, KILN_OP_GEMM, 1, IN(g, KILN_DT_F32, 1, 4, 3), b), KILN_ERR_SHAPE,
	          "input 0 has rank 3, expected 2");
	kiln_graph_destroy(g);
}

static void test_matmul(void **state)
{
	(void)state;
	kiln_graph *g = new_graph();
	struct {
		kiln_type a, b;
		const char *out;
	} cases[] = {
		{TY(KILN_DT_F32, 2, 3, 4), TY(KILN_DT_F32, 4, 5), "f32[2,3,5]"},
		{TY(KILN_DT_F32, 4), TY(KILN_DT_F32, 4), "f32[]"},
		{TY(KILN_DT_F32, 4), TY(KILN_DT_F32, 2, 4, 5), "f32[2,5]"},
		{TY(KILN_DT_F32, 2, 3, 4), TY(KILN_DT_F32, 4), "f32[2,3]"},
		{TY(KILN_DT_I64, 2, 1, 3, 4), TY(KILN_DT_I64, 5, 4, 6), "i64[2,5,3,6]"},
		{TY(KILN_DT_F32, 3, 4), TY(KILN_DT_F32, 4, 0), "f32[3,0]"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		kiln_node *n = NODE(g, KILN_OP_MATMUL, 1, input(g, cases[i].a), input(g, cases[i].b));
		infer_ok(n);
		OUT_IS(n, 0, cases[i].out);
	}
	infer_err(NODE(g, KILN_OP_MATMUL, 1, IN(g, KILN_DT_F32, 2, 3), IN(g, KILN_DT_F32, 4, 5)),
	          KILN_ERR_SHAPE,
	          "input 0 (f32[2,3]) and input 1 (f32[4,5]) have mismatched inner dims 3 and 4");
	infer_err(NODE(g, KILN_OP_MATMUL, 1, IN(g, KILN_DT_F32, 2, 2, 3),
	               IN(g, KILN_DT_F32, 3, 3, 5)),
	          KILN_ERR_SHAPE,
	          "batch dims of input 0 (f32[2,2,3]) and input 1 (f32[3,3,5]) do not broadcast");
	infer_err(NODE(g, KILN_OP_MATMUL, 1, input(g, SCALAR(KILN_DT_F32)), IN(g, KILN_DT_F32, 3)),
	          KILN_ERR_SHAPE, "input 0 has rank 0, expected at least 1");
	infer_err(NODE(g, KILN_OP_MATMUL, 1, IN(g, KILN_DT_I8, 2, 3), IN(g, KILN_DT_I8, 3, 2)),
	          KILN_ERR_SHAPE, "input 0 has dtype i8, expected a float dtype, i32 or i64");
	kiln_graph_destroy(g);
}

/* ---- elementwise ---- */

static void test_unary(void **state)
{
	(void)state;
	kiln_graph *g = new_graph();
	kiln_value *x = IN(g, KILN_DT_F32, 2, 3), *xi = IN(g, KILN_DT_I64, 2, 3);
	kiln_value *xb = IN(g, KILN_DT_BOOL, 4), *xu = IN(g, KILN_DT_U8, 4);
	static const kiln_op float_ops[] = {KILN_OP_RELU,    KILN_OP_SIGMOID, KILN_OP_TANH,
	                                    KILN_OP_SQRT,    KILN_OP_EXP,     KILN_OP_LOG,
	                                    KILN_OP_SOFTMAX, KILN_OP_ERF,     KILN_OP_HARD_SWISH};
	for (size_t i = 0; i < sizeof float_ops / sizeof *float_ops; i++) {
		kiln_node *n = NODE(g, float_ops[i], 1, x);
		infer_ok(n);
		OUT_IS(n, 0, "f32[2,3]");
	}
	kiln_node *n = NODE(g, KILN_OP_NOT, 1, xb);
	infer_ok(n);
	OUT_IS(n, 0, "bool[4]");
	n = NODE(g, KILN_OP_IDENTITY, 1, xb);
	infer_ok(n);
	OUT_IS(n, 0, "bool[4]");
	n = NODE(g, KILN_OP_ABS, 1, xu);
	infer_ok(n);
	OUT_IS(n, 0, "u8[4]");
	n = NODE(g, KILN_OP_NEG, 1, xi);
	infer_ok(n);
	OUT_IS(n, 0, "i64[2,3]");
	float lo = 0, hi = 6;
	n = NODE(g, KILN_OP_CLIP, 1, x, scalar_const(g, KILN_DT_F32, &lo), scalar_const(g, KILN_DT_F32, &hi));
	infer_ok(n);
	OUT_IS(n, 0, "f32[2,3]");
	n = NODE(g, KILN_OP_CLIP, 1, x, NULL, scalar_const(g, KILN_DT_F32, &hi));
	infer_ok(n);

	infer_err(NODE(g, KILN_OP_NOT, 1, x), KILN_ERR_SHAPE, "input 0 has dtype f32, expected bool");
	infer_err(NODE(g, KILN_OP_SQRT, 1, xi), KILN_ERR_SHAPE,
	          "input 0 has dtype i64, expected a float dtype");
	infer_err(NODE(g, KILN_OP_RELU, 1, xu), KILN_ERR_SHAPE,
	          "input 0 has dtype u8, expected a float or signed integer dtype");
	infer_err(NODE(g, KILN_OP_ABS, 1, xb), KILN_ERR_SHAPE,
	          "input 0 has dtype bool, expected a numeric dtype");
	infer_err(NODE(g, KILN_OP_CLIP, 1, x, IN(g, KILN_DT_F32, 2)), KILN_ERR_SHAPE,
	          "input 1 (f32[2]) must be a scalar");
	infer_err(NODE(g, KILN_OP_CLIP, 1, x, input(g, SCALAR(KILN_DT_F64))), KILN_ERR_SHAPE,
	          "input 1 has dtype f64, expected f32 like input 0");
	n = NODE(g, KILN_OP_SOFTMAX, 1, x);
	kiln_node_set_int(g, n, "axis", 2);
	infer_err(n, KILN_ERR_SHAPE, "axis 2 is out of range for rank 2");
	n = NODE(g, KILN_OP_LOG_SOFTMAX, 1, x);
	kiln_node_set_int(g, n, "axis", -2);
	infer_ok(n);
	n = NODE(g, KILN_OP_GELU, 1, x);
	kiln_node_set_string(g, n, "approximate", "tanh");
	infer_ok(n);
	kiln_node_set_string(g, n, "approximate", "fast");
	infer_err(n, KILN_ERR_UNSUPPORTED, "approximate 'fast' is not supported");
	kiln_graph_destroy(g);
}

static void test_prelu(void **state)
{
	(void)state;
	kiln_graph *g = new_graph();
	kiln_value *x = IN(g, KILN_DT_F32, 1, 3, 2, 2);
	kiln_node *n = NODE(g, KILN_OP_PRELU, 1, x, IN(g, KILN_DT_F32, 3, 1, 1));
	infer_ok(n);
	OUT_IS(n, 0, "f32[1,3,2,2]");
	infer_err(NODE(g, KILN_OP_PRELU, 1, x, IN(g, KILN_DT_F32, 3)), KILN_ERR_SHAPE,
	          "input 1 (f32[3]) does not broadcast to f32[1,3,2,2]");
	infer_err(NODE(g, KILN_OP_PRELU, 1, IN(g, KILN_DT_F32, 2), IN(g, KILN_DT_F32, 2, 2)),
	          KILN_ERR_SHAPE, "input 1 (f32[2,2]) does not broadcast to f32[2]");
	kiln_graph_destroy(g);
}

static void test_binary(void **state)
{
	(void)state;
	kiln_graph *g = new_graph();
	kiln_node *n = NODE(g, KILN_OP_ADD, 1, IN(g, KILN_DT_F32, 2, 3, 4), IN(g, KILN_DT_F32, 3, 1));
	infer_ok(n);
	OUT_IS(n, 0, "f32[2,3,4]");
	n = NODE(g, KILN_OP_DIV, 1, IN(g, KILN_DT_I32, 0, 3), IN(g, KILN_DT_I32, 1, 3));
	infer_ok(n);
	OUT_IS(n, 0, "i32[0,3]");
	n = NODE(g, KILN_OP_MUL, 1, input(g, SCALAR(KILN_DT_F16)), input(g, SCALAR(KILN_DT_F16)));
	infer_ok(n);
	OUT_IS(n, 0, "f16[]");
	infer_err(NODE(g, KILN_OP_ADD, 1, IN(g, KILN_DT_F32, 2), IN(g, KILN_DT_I64, 2)),
	          KILN_ERR_SHAPE, "input 1 has dtype i64, expected f32 like input 0");
	infer_err(NODE(g, KILN_OP_SUB, 1, IN(g, KILN_DT_F32, 2, 3), IN(g, KILN_DT_F32, 4)),
	          KILN_ERR_SHAPE, "input 1 (f32[4]) does not broadcast with f32[2,3]");
	infer_err(NODE(g, KILN_OP_ADD, 1, IN(g, KILN_DT_BOOL, 2), IN(g, KILN_DT_BOOL, 2)),
	          KILN_ERR_SHAPE, "input 0 has dtype bool, expected a numeric dtype");
	kiln_graph_destroy(g);
}

static void test_pow(void **state)
{
	(void)state;
	kiln_graph *g = new_graph();
	kiln_node *n = NODE(g, KILN_OP_POW, 1, IN(g, KILN_DT_F32, 2, 1), IN(g, KILN_DT_I64, 3));
	infer_ok(n);
	OUT_IS(n, 0, "f32[2,3]");
	infer_err(NODE(g, KILN_OP_POW, 1, IN(g, KILN_DT_I8, 2), IN(g, KILN_DT_I8, 2)),
	          KILN_ERR_SHAPE, "input 0 has dtype i8, expected a float dtype, i32 or i64");
	infer_err(NODE(g, KILN_OP_POW, 1, IN(g, KILN_DT_F32, 2), IN(g, KILN_DT_BOOL, 2)),
	          KILN_ERR_SHAPE, "input 1 has dtype bool, expected a numeric dtype");
	kiln_graph_destroy(g);
}

static void test_variadic(void **state)
{
	(void)state;
	kiln_graph *g = new_graph();
	kiln_node *n = NODE(g, KILN_OP_MAX, 1, IN(g, KILN_DT_F32, 3, 1), IN(g, KILN_DT_F32, 1, 4),
	                    IN(g, KILN_DT_F32, 2, 1, 1));
	infer_ok(n);
	OUT_IS(n, 0, "f32[2,3,4]");
	n = NODE(g, KILN_OP_MIN, 1, IN(g, KILN_DT_I32, 5));
	infer_ok(n);
	OUT_IS(n, 0, "i32[5]");
	infer_err(NODE(g, KILN_OP_MIN, 1, IN(g, KILN_DT_F32, 3), IN(g, KILN_DT_F32, 3),
	               IN(g, KILN_DT_F32, 4)),
	          KILN_ERR_SHAPE, "input 2 (f32[4]) does not broadcast with f32[3]");
	infer_err(NODE(g, KILN_OP_MAX, 1, IN(g, KILN_DT_F32, 3), IN(g, KILN_DT_F16, 3)),
	          KILN_ERR_SHAPE, "input 1 has dtype f16, expected f32 like input 0");
	infer_err(NODE(g, KILN_OP_MAX, 1, IN(g, KILN_DT_F32, 3), NULL), KILN_ERR_SHAPE,
	          "input 1 is omitted");
	kiln_graph_destroy(g);
}

static void test_where(void **state)
{
	(void)state;
	kiln_graph *g = new_graph();
	kiln_node *n = NODE(g, KILN_OP_WHERE, 1, IN(g, KILN_DT_BOOL, 2, 1), IN(g, KILN_DT_I64, 1, 3),
	                    input(g, SCALAR(KILN_DT_I64)));
	infer_ok(n);
	OUT_IS(n, 0, "i64[2,3]");
	infer_err(NODE(g, KILN_OP_WHERE, 1, IN(g, KILN_DT_F32, 2), IN(g, KILN_DT_F32, 2),
	               IN(g, KILN_DT_F32, 2)),
	          KILN_ERR_SHAPE, "input 0 has dtype f32, expected bool");
	infer_err(NODE(g, KILN_OP_WHERE, 1, IN(g, KILN_DT_BOOL, 2), IN(g, KILN_DT_F32, 2),
	               IN(g, KILN_DT_I64, 2)),
	          KILN_ERR_SHAPE, "input 2 has dtype i64, expected f32 like input 1");
	infer_err(NODE(g, KILN_OP_WHERE, 1, IN(g, KILN_DT_BOOL, 3), IN(g, KILN_DT_F32, 2, 3),
	               IN(g, KILN_DT_F32, 2)),
	          KILN_ERR_SHAPE, "input 2 (f32[2]) does not broadcast with bool[2,3]");
	kiln_graph_destroy(g);
}

static void test_compare(void **state)
{
	(void)state;
	kiln_graph *g = new_graph();
	kiln_node *n = NODE(g, KILN_OP_LESS, 1, IN(g, KILN_DT_F32, 2, 3), IN(g, KILN_DT_F32, 3));
	infer_ok(n);
	OUT_IS(n, 0, "bool[2,3]");
	n = NODE(g, KILN_OP_EQUAL, 1, IN(g, KILN_DT_BOOL, 4), IN(g, KILN_DT_BOOL, 1));
	infer_ok(n);
	OUT_IS(n, 0, "bool[4]");
	infer_err(NODE(g, KILN_OP_GREATER, 1, IN(g, KILN_DT_BOOL, 4), IN(g, KILN_DT_BOOL, 4)),
	          KILN_ERR_SHAPE, "input 0 has dtype bool, expected a numeric dtype");
	infer_err(NODE(g, KILN_OP_EQUAL, 1, IN(g, KILN_DT_I32, 4), IN(g, KILN_DT_I64, 4)),
	          KILN_ERR_SHAPE, "input 1 has dtype i64, expected i32 like input 0");
	kiln_graph_destroy(g);
}

/* ---- reductions ---- */

static void test_reduce(void **state)
{
	(void)state;
	kiln_graph *g = new_graph();
	kiln_value *x = IN(g, KILN_DT_F32, 2, 3, 4);
	kiln_node *n = NODE(g, KILN_OP_REDUCE_SUM, 1, x, CI64(g, 1));
	infer_ok(n);
	OUT_IS(n, 0, "f32[2,1,4]");
	n = NODE(g, KILN_OP_REDUCE_MEAN, 1, x, CI64(g, -1, 0));
	kiln_node_set_int(g, n, "keepdims", 0);
	infer_ok(n);
	OUT_IS(n, 0, "f32[3]");
	n = NODE(g, KILN_OP_REDUCE_MAX, 1, x);
	infer_ok(n);
	OUT_IS(n, 0, "f32[1,1,1]");
	kiln_node_set_int(g, n, "keepdims", 0);
	infer_ok(n);
	OUT_IS(n, 0, "f32[]");
	n = NODE(g, KILN_OP_REDUCE_MIN, 1, x, const_i64(g, NULL, 0));
	kiln_node_set_int(g, n, "noop_with_empty_axes", 1);
	infer_ok(n);
	OUT_IS(n, 0, "f32[2,3,4]");
	n = NODE(g, KILN_OP_REDUCE_MAX, 1, IN(g, KILN_DT_BOOL, 2, 5), CI64(g, 1));
	infer_ok(n);
	OUT_IS(n, 0, "bool[2,1]");

	char msg[300];
	kiln_value *axes_in = IN(g, KILN_DT_I64, 1);
	snprintf(msg, sizeof msg, "input 1 ('axes') %s", NOT_CONST);
	infer_err(NODE(g, KILN_OP_REDUCE_SUM, 1, x, axes_in), KILN_ERR_UNSUPPORTED, msg);
	infer_err(NODE(g, KILN_OP_REDUCE_SUM, 1, x, CI64(g, 1, -2)), KILN_ERR_SHAPE,
	          "axes repeats axis 1");
	infer_err(NODE(g, KILN_OP_REDUCE_SUM, 1, x, CI64(g, 3)), KILN_ERR_SHAPE,
	          "axes[0] is 3, out of range for rank 3");
	infer_err(NODE(g, KILN_OP_REDUCE_SUM, 1, IN(g, KILN_DT_BOOL, 2)), KILN_ERR_SHAPE,
	          "input 0 has dtype bool, expected a numeric dtype");
	kiln_graph_destroy(g);
}

/* ---- data movement ---- */

static void test_flatten(void **state)
{
	(void)state;
	kiln_graph *g = new_graph();
	kiln_value *x = IN(g, KILN_DT_F32, 2, 3, 4, 5);
	struct {
		int64_t axis;
		const char *out;
	} cases[] = {{2, "f32[6,20]"}, {0, "f32[1,120]"}, {-1, "f32[24,5]"}, {4, "f32[120,1]"}};
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		kiln_node *n = NODE(g, KILN_OP_FLATTEN, 1, x);
		kiln_node_set_int(g, n, "axis", cases[i].axis);
		infer_ok(n);
		OUT_IS(n, 0, cases[i].out);
	}
	kiln_node *n = NODE(g, KILN_OP_FLATTEN, 1, x);
	infer_ok(n);
	OUT_IS(n, 0, "f32[2,60]");
	kiln_node_set_int(g, n, "axis", 5);
	infer_err(n, KILN_ERR_SHAPE, "axis 5 is out of range for rank 4");
	kiln_graph_destroy(g);
}

static void test_reshape(void **state)
{
	(void)state;
	kiln_graph *g = new_graph();
	kiln_value *x = IN(g, KILN_DT_F32, 2, 3, 4);
	kiln_node *n = NODE(g, KILN_OP_RESHAPE, 1, x, CI64(g, 0, -1));
	infer_ok(n);
	OUT_IS(n, 0, "f32[2,12]");
	n = NODE(g, KILN_OP_RESHAPE, 1, x, CI64(g, -1, 4, 1));
	infer_ok(n);
	OUT_IS(n, 0, "f32[6,4,1]");
	n = NODE(g, KILN_OP_RESHAPE, 1, x, CI64(g, 0, 0, 4));
	infer_ok(n);
	OUT_IS(n, 0, "f32[2,3,4]");
	n = NODE(g, KILN_OP_RESHAPE, 1, IN(g, KILN_DT_F32, 0, 3), CI64(g, 3, 0));
	kiln_node_set_int(g, n, "allowzero", 1);
	infer_ok(n);
	OUT_IS(n, 0, "f32[3,0]");
	n = NODE(g, KILN_OP_RESHAPE, 1, input(g, SCALAR(KILN_DT_F32)), CI64(g, 1, -1));
	infer_ok(n);
	OUT_IS(n, 0, "f32[1,1]");
	n = NODE(g, KILN_OP_RESHAPE, 1, IN(g, KILN_DT_F32, 1, 1), const_i64(g, NULL, 0));
	infer_ok(n);
	OUT_IS(n, 0, "f32[]");

	infer_err(NODE(g, KILN_OP_RESHAPE, 1, x, CI64(g, 4, 2)), KILN_ERR_SHAPE,
	          "cannot reshape f32[2,3,4] (24 elements) to f32[4,2] (8 elements)");
	infer_err(NODE(g, KILN_OP_RESHAPE, 1, x, CI64(g, -1, -1)), KILN_ERR_SHAPE,
	          "shape has more than one -1");
	infer_err(NODE(g, KILN_OP_RESHAPE, 1, x, CI64(g, 5, -1)), KILN_ERR_SHAPE,
	          "cannot infer the -1 in shape: 24 elements do not divide into the other dims");
	infer_err(NODE(g, KILN_OP_RESHAPE, 1, x, CI64(g, 2, -3)), KILN_ERR_SHAPE,
	          "shape[1] is -3");
	infer_err(NODE(g, KILN_OP_RESHAPE, 1, x, CI64(g, 1, 1, 1, 0)), KILN_ERR_SHAPE,
	          "shape[3] is 0 (copy the input dim), but input 0 has rank 3");
	n = NODE(g, KILN_OP_RESHAPE, 1, x, CI64(g, 0, -1));
	kiln_node_set_int(g, n, "allowzero", 1);
	infer_err(n, KILN_ERR_SHAPE, "shape has both 0 and -1 with allowzero");
	char msg[300];
	snprintf(msg, sizeof msg, "input 1 ('shape') %s", NOT_CONST);
	infer_err(NODE(g, KILN_OP_RESHAPE, 1, x, IN(g, KILN_DT_I64, 2)), KILN_ERR_UNSUPPORTED, msg);
	int32_t s32[2] = {6, 4};
	kiln_type t32 = TY(KILN_DT_I32, 2);
	infer_err(NODE(g, KILN_OP_RESHAPE, 1, x, kiln_graph_add_const(g, NULL, &t32, s32)),
	          KILN_ERR_SHAPE, "input 1 ('shape') has dtype i32, expected i64");
	kiln_graph_destroy(g);
}

static void test_transpose(void **state)
{
	(void)state;
	kiln_graph *g = new_graph();
	kiln_value *x = IN(g, KILN_DT_F32, 2, 3, 4);
	kiln_node *n = NODE(g, KILN_OP_TRANSPOSE, 1, x);
	infer_ok(n);
	OUT_IS(n, 0, "f32[4,3,2]");
	INTS(g, n, "perm", 0, 2, 1);
	infer_ok(n);
	OUT_IS(n, 0, "f32[2,4,3]");
	INTS(g, n, "perm", 0, 0, 1);
	infer_err(n, KILN_ERR_SHAPE, "perm is not a permutation of 0..2");
	INTS(g, n, "perm", 1, 0);
	infer_err(n, KILN_ERR_SHAPE, "perm has 2 values, expected 3");
	kiln_graph_destroy(g);
}

static void test_concat(void **state)
{
	(void)state;
	kiln_graph *g = new_graph();
	kiln_value *a = IN(g, KILN_DT_F32, 2, 3), *b = IN(g, KILN_DT_F32, 2, 5);
	kiln_node *n = NODE(g, KILN_OP_CONCAT, 1, a, b, a);
	kiln_node_set_int(g, n, "axis", -1);
	infer_ok(n);
	OUT_IS(n, 0, "f32[2,11]");
	n = NODE(g, KILN_OP_CONCAT, 1, a, IN(g, KILN_DT_F32, 0, 3));
	kiln_node_set_int(g, n, "axis", 0);
	infer_ok(n);
	OUT_IS(n, 0, "f32[2,3]");
	n = NODE(g, KILN_OP_CONCAT, 1, a, b);
	kiln_node_set_int(g, n, "axis", 0);
	infer_err(n, KILN_ERR_SHAPE, "input 1 (f32[2,5]) does not match input 0 (f32[2,3]) outside axis 0");
	infer_err(NODE(g, KILN_OP_CONCAT, 1, a, b), KILN_ERR_SHAPE, "attribute 'axis' is required");
	n = NODE(g, KILN_OP_CONCAT, 1, a, IN(g, KILN_DT_I64, 2, 3));
	kiln_node_set_int(g, n, "axis", 1);
	infer_err(n, KILN_ERR_SHAPE, "input 1 has dtype i64, expected f32 like input 0");
	n = NODE(g, KILN_OP_CONCAT, 1, a, b);
	kiln_node_set_int(g, n, "axis", 2);
	infer_err(n, KILN_ERR_SHAPE, "axis 2 is out of range for rank 2");
	kiln_graph_destroy(g);
}

static void test_split(void **state)
{
	(void)state;
	kiln_graph *g = new_graph();
	kiln_value *x = IN(g, KILN_DT_F32, 10, 4);
	kiln_node *n = NODE(g, KILN_OP_SPLIT, 2, x, CI64(g, 3, 7));
	infer_ok(n);
	OUT_IS(n, 0, "f32[3,4]");
	OUT_IS(n, 1, "f32[7,4]");

	/* num_outputs 3 over 7: chunks ceil(7/3) = 3, 3, last 1 */
	n = NODE(g, KILN_OP_SPLIT, 3, IN(g, KILN_DT_F32, 2, 7));
	kiln_node_set_int(g, n, "axis", -1);
	kiln_node_set_int(g, n, "num_outputs", 3);
	infer_ok(n);
	OUT_IS(n, 0, "f32[2,3]");
	OUT_IS(n, 1, "f32[2,3]");
	OUT_IS(n, 2, "f32[2,1]");

	n = NODE(g, KILN_OP_SPLIT, 2, x, const_i64(g, NULL, 0));
	kiln_node_set_int(g, n, "axis", 1);
	infer_ok(n);
	OUT_IS(n, 0, "f32[10,2]");
	OUT_IS(n, 1, "f32[10,2]");

	infer_err(NODE(g, KILN_OP_SPLIT, 3, x), KILN_ERR_SHAPE,
	          "cannot split axis 0 of size 10 evenly into 3 outputs");
	infer_err(NODE(g, KILN_OP_SPLIT, 2, x, CI64(g, 3, 6)), KILN_ERR_SHAPE,
	          "split sums to 9, but axis 0 has size 10");
	infer_err(NODE(g, KILN_OP_SPLIT, 3, x, CI64(g, 3, 7)), KILN_ERR_SHAPE,
	          "input 1 ('split') has 2 entries, but the node has 3 outputs");
	n = NODE(g, KILN_OP_SPLIT, 2, x);
	kiln_node_set_int(g, n, "num_outputs", 3);
	infer_err(n, KILN_ERR_SHAPE, "num_outputs is 3, but the node has 2 outputs");
	n = NODE(g, KILN_OP_SPLIT, 2, x, CI64(g, 5, 5));
	kiln_node_set_int(g, n, "num_outputs", 2);
	infer_err(n, KILN_ERR_SHAPE, "input 1 ('split') and attribute num_outputs are both given");
	n = NODE(g, KILN_OP_SPLIT, 4, IN(g, KILN_DT_F32, 5));
	kiln_node_set_int(g, n, "num_outputs", 4);
	infer_err(n, KILN_ERR_SHAPE, "cannot split axis 0 of size 5 into 4 chunks");
	kiln_graph_destroy(g);
}

static void test_slice(void **state)
{
	(void)state;
	kiln_graph *g = new_graph();
	kiln_value *x = IN(g, KILN_DT_F32, 20, 10, 5);
	struct {
		kiln_value *starts, *ends, *axes, *steps;
		const char *out;
	} cases[] = {
		{CI64(g, 0, 0), CI64(g, 3, 10), CI64(g, 0, 1), CI64(g, 1, 1), "f32[3,10,5]"},
		/* default axes 0, 1 */
		{CI64(g, 1, 2), CI64(g, 3, 4), NULL, NULL, "f32[2,2,5]"},
		/* full reverse: -1 -> 9, INT64_MIN -> clamped to -1 */
		{CI64(g, -1), CI64(g, INT64_MIN), CI64(g, 1), CI64(g, -1), "f32[20,10,5]"},
		/* start 20 clamps to 19 for a negative step: 19..1 */
		{CI64(g, 20), CI64(g, 0), CI64(g, 0), CI64(g, -1), "f32[19,10,5]"},
		/* 1, 3 of 5 */
		{CI64(g, 1), CI64(g, INT64_MAX), CI64(g, -1), CI64(g, 2), "f32[20,10,2]"},
		/* -3..-1 of 10 is 7, 8 */
		{CI64(g, -3), CI64(g, -1), CI64(g, 1), NULL, "f32[20,2,5]"},
		/* 0, 3, 6, 9 */
		{CI64(g, 0), CI64(g, 10), CI64(g, 1), CI64(g, 3), "f32[20,4,5]"},
		/* 9, 7, 5, 3, 1 */
		{CI64(g, 9), CI64(g, -100), CI64(g, 1), CI64(g, -2), "f32[20,5,5]"},
		/* start past end */
		{CI64(g, 8), CI64(g, 2), CI64(g, 1), NULL, "f32[20,0,5]"},
		/* negative start below -dim clamps to 0 */
		{CI64(g, -50), CI64(g, 2), CI64(g, 2), NULL, "f32[20,10,2]"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		kiln_node *n = NODE(g, KILN_OP_SLICE, 1, x, cases[i].starts, cases[i].ends,
		                    cases[i].axes, cases[i].steps);
		infer_ok(n);
		OUT_IS(n, 0, cases[i].out);
	}
	/* i32 indices are allowed (Tind) */
	int32_t s32 = 2, e32 = 4;
	kiln_type t32 = TY(KILN_DT_I32, 1);
	kiln_node *n = NODE(g, KILN_OP_SLICE, 1, x, kiln_graph_add_const(g, NULL, &t32, &s32),
	                    kiln_graph_add_const(g, NULL, &t32, &e32));
	infer_ok(n);
	OUT_IS(n, 0, "f32[2,10,5]");

	infer_err(NODE(g, KILN_OP_SLICE, 1, x, CI64(g, 0), CI64(g, 1), CI64(g, 0), CI64(g, 0)),
	          KILN_ERR_SHAPE, "steps[0] is 0");
	infer_err(NODE(g, KILN_OP_SLICE, 1, x, CI64(g, 0, 0), CI64(g, 1)), KILN_ERR_SHAPE,
	          "input 2 ('ends') has 1 elements, expected 2 like 'starts'");
	infer_err(NODE(g, KILN_OP_SLICE, 1, x, CI64(g, 0, 0), CI64(g, 1, 1), CI64(g, 1, -2)),
	          KILN_ERR_SHAPE, "axes repeats axis 1");
	char msg[300];
	snprintf(msg, sizeof msg, "input 1 ('starts') %s", NOT_CONST);
	infer_err(NODE(g, KILN_OP_SLICE, 1, x, IN(g, KILN_DT_I64, 1), CI64(g, 1)),
	          KILN_ERR_UNSUPPORTED, msg);
	kiln_graph_destroy(g);
}

static void test_gather(void **state)
{
	(void)state;
	kiln_graph *g = new_graph();
	kiln_value *x = IN(g, KILN_DT_F32, 5, 4, 3);
	kiln_node *n = NODE(g, KILN_OP_GATHER, 1, x, IN(g, KILN_DT_I64, 2, 6));
	kiln_node_set_int(g, n, "axis", 1);
	infer_ok(n);
	OUT_IS(n, 0, "f32[5,2,6,3]");
	n = NODE(g, KILN_OP_GATHER, 1, x, input(g, SCALAR(KILN_DT_I32)));
	infer_ok(n);
	OUT_IS(n, 0, "f32[4,3]");
	n = NODE(g, KILN_OP_GATHER, 1, x, IN(g, KILN_DT_I64, 7));
	kiln_node_set_int(g, n, "axis", -1);
	infer_ok(n);
	OUT_IS(n, 0, "f32[5,4,7]");
	infer_err(NODE(g, KILN_OP_GATHER, 1, x, IN(g, KILN_DT_F32, 2)), KILN_ERR_SHAPE,
	          "input 1 has dtype f32, expected i64 or i32");
	n = NODE(g, KILN_OP_GATHER, 1, x, IN(g, KILN_DT_I64, 2));
	kiln_node_set_int(g, n, "axis", 3);
	infer_err(n, KILN_ERR_SHAPE, "axis 3 is out of range for rank 3");
	infer_err(NODE(g, KILN_OP_GATHER, 1, x, IN(g, KILN_DT_I64, 1, 1, 1, 1, 1, 1, 1)),
	          KILN_ERR_SHAPE, "output rank 9 exceeds 8");
	kiln_graph_destroy(g);
}

static void test_squeeze(void **state)
{
	(void)state;
	kiln_graph *g = new_graph();
	kiln_value *x = IN(g, KILN_DT_F32, 1, 3, 1, 5);
	kiln_node *n = NODE(g, KILN_OP_SQUEEZE, 1, x);
	infer_ok(n);
	OUT_IS(n, 0, "f32[3,5]");
	n = NODE(g, KILN_OP_SQUEEZE, 1, x, CI64(g, -2));
	infer_ok(n);
	OUT_IS(n, 0, "f32[1,3,5]");
	n = NODE(g, KILN_OP_SQUEEZE, 1, IN(g, KILN_DT_F32, 1, 1), NULL);
	infer_ok(n);
	OUT_IS(n, 0, "f32[]");
	infer_err(NODE(g, KILN_OP_SQUEEZE, 1, x, CI64(g, 1)), KILN_ERR_SHAPE,
	          "cannot squeeze axis 1 of size 3");
	infer_err(NODE(g, KILN_OP_SQUEEZE, 1, x, CI64(g, 4)), KILN_ERR_SHAPE,
	          "axes[0] is 4, out of range for rank 4");
	kiln_graph_destroy(g);
}

static void test_unsqueeze(void **state)
{
	(void)state;
	kiln_graph *g = new_graph();
	kiln_value *x = IN(g, KILN_DT_F32, 3, 4);
	kiln_node *n = NODE(g, KILN_OP_UNSQUEEZE, 1, x, CI64(g, 0, 3));
	infer_ok(n);
	OUT_IS(n, 0, "f32[1,3,4,1]");
	n = NODE(g, KILN_OP_UNSQUEEZE, 1, x, CI64(g, -1));
	infer_ok(n);
	OUT_IS(n, 0, "f32[3,4,1]");
	n = NODE(g, KILN_OP_UNSQUEEZE, 1, x, CI64(g, 3, 1));
	infer_ok(n);
	OUT_IS(n, 0, "f32[3,1,4,1]");
	n = NODE(g, KILN_OP_UNSQUEEZE, 1, input(g, SCALAR(KILN_DT_I64)), CI64(g, 0));
	infer_ok(n);
	OUT_IS(n, 0, "i64[1]");
	infer_err(NODE(g, KILN_OP_UNSQUEEZE, 1, x, CI64(g, 1, 1)), KILN_ERR_SHAPE,
	          "axes repeats axis 1");
	infer_err(NODE(g, KILN_OP_UNSQUEEZE, 1, x, CI64(g, 3)), KILN_ERR_SHAPE,
	          "axes[0] is 3, out of range for rank 3");
	kiln_graph_destroy(g);
}

static void test_expand(void **state)
{
	(void)state;
	kiln_graph *g = new_graph();
	kiln_node *n = NODE(g, KILN_OP_EXPAND, 1, IN(g, KILN_DT_F32, 3, 1), CI64(g, 2, 1, 6));
	infer_ok(n);
	OUT_IS(n, 0, "f32[2,3,6]");
	/* bidirectional: the shape may be smaller than the input */
	n = NODE(g, KILN_OP_EXPAND, 1, IN(g, KILN_DT_I32, 3, 4), CI64(g, 1));
	infer_ok(n);
	OUT_IS(n, 0, "i32[3,4]");
	infer_err(NODE(g, KILN_OP_EXPAND, 1, IN(g, KILN_DT_F32, 3, 2), CI64(g, 4)), KILN_ERR_SHAPE,
	          "input 0 (f32[3,2]) does not broadcast with shape f32[4]");
	kiln_graph_destroy(g);
}

static void test_shape_op(void **state)
{
	(void)state;
	kiln_graph *g = new_graph();
	kiln_value *x = IN(g, KILN_DT_F32, 2, 3, 4, 5);
	struct {
		bool has_start, has_end;
		int64_t start, end;
		const char *out;
	} cases[] = {
		{false, false, 0, 0, "i64[4]"},  {true, true, 1, -1, "i64[2]"},
		{true, true, -10, 10, "i64[4]"}, {true, true, 3, 1, "i64[0]"},
		{true, false, -1, 0, "i64[1]"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		kiln_node *n = NODE(g, KILN_OP_SHAPE, 1, x);
		if (cases[i].has_start)
			kiln_node_set_int(g, n, "start", cases[i].start);
		if (cases[i].has_end)
			kiln_node_set_int(g, n, "end", cases[i].end);
		infer_ok(n);
		OUT_IS(n, 0, cases[i].out);
	}
	kiln_node *n = NODE(g, KILN_OP_SHAPE, 1, input(g, SCALAR(KILN_DT_F32)));
	infer_ok(n);
	OUT_IS(n, 0, "i64[0]");
	kiln_graph_destroy(g);
}

static void test_constant_of_shape(void **state)
{
	(void)state;
	kiln_graph *g = new_graph();
	kiln_node *n = NODE(g, KILN_OP_CONSTANT_OF_SHAPE, 1, CI64(g, 2, 3));
	infer_ok(n);
	OUT_IS(n, 0, "f32[2,3]");
	int64_t one = 1;
	kiln_tensor val = {TY(KILN_DT_I64, 1), &one};
	kiln_node_set_tensor(g, n, "value", &val);
	infer_ok(n);
	OUT_IS(n, 0, "i64[2,3]");
	n = NODE(g, KILN_OP_CONSTANT_OF_SHAPE, 1, const_i64(g, NULL, 0));
	infer_ok(n);
	OUT_IS(n, 0, "f32[]");
	int64_t two[2] = {1, 2};
	kiln_tensor bad = {TY(KILN_DT_I64, 2), two};
	n = NODE(g, KILN_OP_CONSTANT_OF_SHAPE, 1, CI64(g, 2));
	kiln_node_set_tensor(g, n, "value", &bad);
	infer_err(n, KILN_ERR_SHAPE, "attribute 'value' (i64[2]) must have one element");
	infer_err(NODE(g, KILN_OP_CONSTANT_OF_SHAPE, 1, CI64(g, 2, -1)), KILN_ERR_SHAPE,
	          "input[1] is -1");
	char msg[300];
	snprintf(msg, sizeof msg, "input 0 ('input') %s", NOT_CONST);
	infer_err(NODE(g, KILN_OP_CONSTANT_OF_SHAPE, 1, IN(g, KILN_DT_I64, 2)), KILN_ERR_UNSUPPORTED,
	          msg);
	kiln_graph_destroy(g);
}

static void test_range(void **state)
{
	(void)state;
	kiln_graph *g = new_graph();
	int64_t i0 = 0, i10 = 10, i3 = 3, im3 = -3;
	kiln_node *n = NODE(g, KILN_OP_RANGE, 1, scalar_const(g, KILN_DT_I64, &i0),
	                    scalar_const(g, KILN_DT_I64, &i10), scalar_const(g, KILN_DT_I64, &i3));
	infer_ok(n); /* 0 3 6 9 */
	OUT_IS(n, 0, "i64[4]");
	n = NODE(g, KILN_OP_RANGE, 1, scalar_const(g, KILN_DT_I64, &i10),
	         scalar_const(g, KILN_DT_I64, &i0), scalar_const(g, KILN_DT_I64, &im3));
	infer_ok(n); /* 10 7 4 1 */
	OUT_IS(n, 0, "i64[4]");
	int32_t a = 10, b = 0, c = 1;
	n = NODE(g, KILN_OP_RANGE, 1, scalar_const(g, KILN_DT_I32, &a), scalar_const(g, KILN_DT_I32, &b),
	         scalar_const(g, KILN_DT_I32, &c));
	infer_ok(n);
	OUT_IS(n, 0, "i32[0]");
	float f1 = 1.0f, f0 = 0.0f, fd = -0.3f;
	n = NODE(g, KILN_OP_RANGE, 1, scalar_const(g, KILN_DT_F32, &f1), scalar_const(g, KILN_DT_F32, &f0),
	         scalar_const(g, KILN_DT_F32, &fd));
	infer_ok(n); /* ceil(3.33) = 4: 1, 0.7, 0.4, 0.1 */
	OUT_IS(n, 0, "f32[4]");
	int64_t zero = 0;
	infer_err(NODE(g, KILN_OP_RANGE, 1, scalar_const(g, KILN_DT_I64, &i0),
	               scalar_const(g, KILN_DT_I64, &i10), scalar_const(g, KILN_DT_I64, &zero)),
	          KILN_ERR_SHAPE, "delta is 0");
	char msg[300];
	snprintf(msg, sizeof msg, "input 1 ('limit') %s", NOT_CONST);
	infer_err(NODE(g, KILN_OP_RANGE, 1, scalar_const(g, KILN_DT_I64, &i0),
	               input(g, SCALAR(KILN_DT_I64)), scalar_const(g, KILN_DT_I64, &i3)),
	          KILN_ERR_UNSUPPORTED, msg);
	infer_err(NODE(g, KILN_OP_RANGE, 1, scalar_const(g, KILN_DT_I64, &i0),
	               scalar_const(g, KILN_DT_I32, &a), scalar_const(g, KILN_DT_I64, &i3)),
	          KILN_ERR_SHAPE, "input 1 has dtype i32, expected i64 like input 0");
	infer_err(NODE(g, KILN_OP_RANGE, 1, scalar_const(g, KILN_DT_I64, &i0), CI64(g, 5),
	               scalar_const(g, KILN_DT_I64, &i3)),
	          KILN_ERR_SHAPE, "input 1 has rank 1, expected 0");
	kiln_graph_destroy(g);
}

static void test_cast(void **state)
{
	(void)state;
	kiln_graph *g = new_graph();
	kiln_value *x = IN(g, KILN_DT_F32, 2, 3);
	static const struct {
		int64_t code;
		const char *out;
	} cases[] = {{1, "f32[2,3]"},  {2, "u8[2,3]"},  {3, "i8[2,3]"},   {6, "i32[2,3]"},
	             {7, "i64[2,3]"},  {9, "bool[2,3]"}, {10, "f16[2,3]"}, {11, "f64[2,3]"},
	             {16, "bf16[2,3]"}};
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		kiln_node *n = NODE(g, KILN_OP_CAST, 1, x);
		kiln_node_set_int(g, n, "to", cases[i].code);
		infer_ok(n);
		OUT_IS(n, 0, cases[i].out);
	}
	kiln_node *n = NODE(g, KILN_OP_CAST, 1, x);
	infer_err(n, KILN_ERR_SHAPE, "attribute 'to' is required");
	kiln_node_set_int(g, n, "to", 12);
	infer_err(n, KILN_ERR_UNSUPPORTED, "cast to ONNX data type 12 is not supported");
	kiln_graph_destroy(g);
}

static void test_pad(void **state)
{
	(void)state;
	kiln_graph *g = new_graph();
	kiln_value *x = IN(g, KILN_DT_F32, 1, 3, 4, 5);
	kiln_node *n = NODE(g, KILN_OP_PAD, 1, x, CI64(g, 0, 0, 1, 2, 0, 0, 3, -1));
	infer_ok(n);
	OUT_IS(n, 0, "f32[1,3,8,6]");
	float cv = 1.5f;
	n = NODE(g, KILN_OP_PAD, 1, IN(g, KILN_DT_F32, 3, 4), CI64(g, 1, 1),
	         scalar_const(g, KILN_DT_F32, &cv), CI64(g, -1));
	kiln_node_set_string(g, n, "mode", "reflect");
	infer_ok(n);
	OUT_IS(n, 0, "f32[3,6]");
	n = NODE(g, KILN_OP_PAD, 1, x, CI64(g, 0, 0, 1, 2, 0, 0, 3, -1));
	kiln_node_set_string(g, n, "mode", "mirror");
	infer_err(n, KILN_ERR_UNSUPPORTED, "mode 'mirror' is not supported");
	infer_err(NODE(g, KILN_OP_PAD, 1, x, CI64(g, 0, 0, 0, 0)), KILN_ERR_SHAPE,
	          "input 1 ('pads') has 4 elements, expected 8");
	infer_err(NODE(g, KILN_OP_PAD, 1, x, CI64(g, 0, 0, -3, 0, 0, 0, -2, 0)), KILN_ERR_SHAPE,
	          "pads crop axis 2 of size 4 to -1");
	infer_err(NODE(g, KILN_OP_PAD, 1, x, CI64(g, 0, 0, 0, 0, 0, 0, 0, 0),
	               IN(g, KILN_DT_I64, 1)),
	          KILN_ERR_SHAPE, "input 2 has dtype i64, expected f32 like input 0");
	char msg[300];
	snprintf(msg, sizeof msg, "input 1 ('pads') %s", NOT_CONST);
	infer_err(NODE(g, KILN_OP_PAD, 1, x, IN(g, KILN_DT_I64, 8)), KILN_ERR_UNSUPPORTED, msg);
	kiln_graph_destroy(g);
}

static void test_resize(void **state)
{
	(void)state;
	kiln_graph *g = new_graph();
	kiln_value *x = IN(g, KILN_DT_F32, 1, 3, 4, 6);
	kiln_node *n = NODE(g, KILN_OP_RESIZE, 1, x, NULL,
	                    const_f32(g, (float[]){1, 1, 1.5f, 0.5f}, 4));
	infer_ok(n);
	OUT_IS(n, 0, "f32[1,3,6,3]");
	/* floor(5 * 0.6f) = 3, floor(5 * 0.5) = 2 */
	n = NODE(g, KILN_OP_RESIZE, 1, IN(g, KILN_DT_F32, 1, 1, 5, 5), const_f32(g, NULL, 0),
	         const_f32(g, (float[]){1, 1, 0.6f, 0.5f}, 4));
	kiln_node_set_string(g, n, "mode", "cubic");
	infer_ok(n);
	OUT_IS(n, 0, "f32[1,1,3,2]");
	n = NODE(g, KILN_OP_RESIZE, 1, x, NULL, NULL, CI64(g, 1, 3, 8, 9));
	kiln_node_set_string(g, n, "mode", "linear");
	infer_ok(n);
	OUT_IS(n, 0, "f32[1,3,8,9]");
	/* axes, and an empty scales tensor counting as absent */
	n = NODE(g, KILN_OP_RESIZE, 1, x, NULL, const_f32(g, NULL, 0), CI64(g, 8, 9));
	INTS(g, n, "axes", 2, -1);
	infer_ok(n);
	OUT_IS(n, 0, "f32[1,3,8,9]");
	/* keep_aspect_ratio_policy: scales 8/4 = 2 and 9/6 = 1.5 */
	kiln_node_set_string(g, n, "keep_aspect_ratio_policy", "not_larger");
	infer_ok(n);
	OUT_IS(n, 0, "f32[1,3,6,9]");
	kiln_node_set_string(g, n, "keep_aspect_ratio_policy", "not_smaller");
	infer_ok(n);
	OUT_IS(n, 0, "f32[1,3,8,12]");
	/* rounding half up: 7/4 = 1.75 vs 9/6 = 1.5 -> min 1.5: 4*1.5 = 6, 6*1.5 = 9;
	 * sizes 5,3 on 4,6: min(1.25, 0.5) = 0.5 -> 2, 3 */
	n = NODE(g, KILN_OP_RESIZE, 1, x, NULL, NULL, CI64(g, 5, 3));
	INTS(g, n, "axes", 2, 3);
	kiln_node_set_string(g, n, "keep_aspect_ratio_policy", "not_larger");
	infer_ok(n);
	OUT_IS(n, 0, "f32[1,3,2,3]");
	/* 5/4 = 1.25 -> 6 * 1.25 = 7.5 rounds up to 8 */
	kiln_node_set_string(g, n, "keep_aspect_ratio_policy", "not_smaller");
	infer_ok(n);
	OUT_IS(n, 0, "f32[1,3,5,8]");

	infer_err(NODE(g, KILN_OP_RESIZE, 1, x, NULL, const_f32(g, (float[]){1, 1, 2, 2}, 4),
	               CI64(g, 1, 3, 8, 12)),
	          KILN_ERR_SHAPE, "exactly one of 'scales' and 'sizes' must be given");
	infer_err(NODE(g, KILN_OP_RESIZE, 1, x), KILN_ERR_SHAPE,
	          "exactly one of 'scales' and 'sizes' must be given");
	n = NODE(g, KILN_OP_RESIZE, 1, x, NULL, const_f32(g, (float[]){1, 1, 2, 2}, 4));
	kiln_node_set_string(g, n, "mode", "area");
	infer_err(n, KILN_ERR_UNSUPPORTED, "mode 'area' is not supported");
	n = NODE(g, KILN_OP_RESIZE, 1, x, NULL, const_f32(g, (float[]){1, 1, 2, 2}, 4));
	kiln_node_set_string(g, n, "coordinate_transformation_mode", "bogus");
	infer_err(n, KILN_ERR_UNSUPPORTED, "coordinate_transformation_mode 'bogus' is not supported");
	infer_err(NODE(g, KILN_OP_RESIZE, 1, x, NULL, const_f32(g, (float[]){1, 2}, 2)),
	          KILN_ERR_SHAPE, "input 2 ('scales') is f32[2], expected 4 values");
	infer_err(NODE(g, KILN_OP_RESIZE, 1, x, NULL, const_f32(g, (float[]){1, 1, 0, 2}, 4)),
	          KILN_ERR_SHAPE, "scales[2] is 0, expected > 0");
	char msg[300];
	snprintf(msg, sizeof msg, "input 2 ('scales') %s", NOT_CONST);
	infer_err(NODE(g, KILN_OP_RESIZE, 1, x, NULL, IN(g, KILN_DT_F32, 4)), KILN_ERR_UNSUPPORTED,
	          msg);
	kiln_graph_destroy(g);
}

static void test_dropout(void **state)
{
	(void)state;
	kiln_graph *g = new_graph();
	float r = 0.5f;
	kiln_node *n = NODE(g, KILN_OP_DROPOUT, 2, IN(g, KILN_DT_F32, 2, 3),
	                    scalar_const(g, KILN_DT_F32, &r));
	infer_ok(n);
	OUT_IS(n, 0, "f32[2,3]");
	OUT_IS(n, 1, "bool[2,3]");
	infer_err(NODE(g, KILN_OP_DROPOUT, 1, IN(g, KILN_DT_F32, 2), NULL, IN(g, KILN_DT_F32, 1)),
	          KILN_ERR_SHAPE, "input 2 has dtype f32, expected bool");
	kiln_graph_destroy(g);
}

static void test_tile(void **state)
{
	(void)state;
	kiln_graph *g = new_graph();
	kiln_value *x = IN(g, KILN_DT_F32, 2, 3);
	kiln_node *n = NODE(g, KILN_OP_TILE, 1, x, CI64(g, 3, 0));
	infer_ok(n);
	OUT_IS(n, 0, "f32[6,0]");
	infer_err(NODE(g, KILN_OP_TILE, 1, x, CI64(g, 3)), KILN_ERR_SHAPE,
	          "input 1 ('repeats') has 1 elements, expected 2 (the rank)");
	infer_err(NODE(g, KILN_OP_TILE, 1, x, CI64(g, 1, -2)), KILN_ERR_SHAPE, "repeats[1] is -2");
	kiln_graph_destroy(g);
}

static void test_quantize(void **state)
{
	(void)state;
	kiln_graph *g = new_graph();
	kiln_value *x = IN(g, KILN_DT_F32, 2, 3), *s = input(g, SCALAR(KILN_DT_F32));
	kiln_node *n = NODE(g, KILN_OP_QUANTIZE_LINEAR, 1, x, s, input(g, SCALAR(KILN_DT_I8)));
	infer_ok(n);
	OUT_IS(n, 0, "i8[2,3]");
	n = NODE(g, KILN_OP_QUANTIZE_LINEAR, 1, x, s);
	infer_ok(n);
	OUT_IS(n, 0, "u8[2,3]");
	kiln_node_set_int(g, n, "output_dtype", 3);
	infer_ok(n);
	OUT_IS(n, 0, "i8[2,3]");
	kiln_node_set_int(g, n, "output_dtype", 4);
	infer_err(n, KILN_ERR_UNSUPPORTED, "output_dtype 4 is not supported (u8 or i8)");
	kiln_node_set_int(g, n, "output_dtype", 7);
	infer_err(n, KILN_ERR_UNSUPPORTED, "quantising to i64 is not supported (u8 or i8)");
	/* per axis: axis 1 has 3 channels */
	n = NODE(g, KILN_OP_QUANTIZE_LINEAR, 1, x, IN(g, KILN_DT_F32, 3), IN(g, KILN_DT_U8, 3));
	infer_ok(n);
	OUT_IS(n, 0, "u8[2,3]");
	infer_err(NODE(g, KILN_OP_QUANTIZE_LINEAR, 1, x, IN(g, KILN_DT_F32, 4)), KILN_ERR_SHAPE,
	          "input 1 (f32[4]) must be a scalar or 1-D with 3 elements (axis 1)");
	n = NODE(g, KILN_OP_QUANTIZE_LINEAR, 1, x, s, input(g, SCALAR(KILN_DT_U8)));
	kiln_node_set_int(g, n, "output_dtype", 3);
	infer_err(n, KILN_ERR_SHAPE, "output_dtype is i8 but input 2 has dtype u8");
	n = NODE(g, KILN_OP_QUANTIZE_LINEAR, 1, x, s);
	kiln_node_set_int(g, n, "block_size", 2);
	infer_err(n, KILN_ERR_UNSUPPORTED, "blocked quantisation (block_size 2) is not supported");
	kiln_graph_destroy(g);
}

static void test_dequantize(void **state)
{
	(void)state;
	kiln_graph *g = new_graph();
	kiln_value *x = IN(g, KILN_DT_I8, 2, 3);
	kiln_node *n = NODE(g, KILN_OP_DEQUANTIZE_LINEAR, 1, x, input(g, SCALAR(KILN_DT_F16)));
	infer_ok(n);
	OUT_IS(n, 0, "f16[2,3]");
	n = NODE(g, KILN_OP_DEQUANTIZE_LINEAR, 1, x, IN(g, KILN_DT_F32, 2), IN(g, KILN_DT_I8, 2));
	kiln_node_set_int(g, n, "axis", 0);
	infer_ok(n);
	OUT_IS(n, 0, "f32[2,3]");
	infer_err(NODE(g, KILN_OP_DEQUANTIZE_LINEAR, 1, IN(g, KILN_DT_F32, 2),
	               input(g, SCALAR(KILN_DT_F32))),
	          KILN_ERR_SHAPE, "input 0 has dtype f32, expected i8, u8 or i32");
	infer_err(NODE(g, KILN_OP_DEQUANTIZE_LINEAR, 1, x, input(g, SCALAR(KILN_DT_F32)),
	               input(g, SCALAR(KILN_DT_U8))),
	          KILN_ERR_SHAPE, "input 2 has dtype u8, expected i8 like input 0");
	kiln_graph_destroy(g);
}

/* Quantised inputs (i8/u8 with scale) stand in for floats in QNT ops. */
static void test_quantised_inputs(void **state)
{
	(void)state;
	kiln_graph *g = new_graph();
	kiln_value *x = IN(g, KILN_DT_U8, 1, 3, 8, 8), *w = IN(g, KILN_DT_I8, 4, 3, 3, 3);
	float sc = 0.1f;
	int32_t zp = 0;
	kiln_quant q = {-1, 1, &sc, &zp};
	x->quant = &q;
	w->quant = &q;
	kiln_node *n = NODE(g, KILN_OP_CONV, 1, x, w, IN(g, KILN_DT_I32, 4));
	infer_ok(n);
	OUT_IS(n, 0, "u8[1,4,6,6]");
	/* the same dtypes without quantisation parameters are rejected */
	infer_err(NODE(g, KILN_OP_CONV, 1, IN(g, KILN_DT_U8, 1, 3, 8, 8), w), KILN_ERR_SHAPE,
	          "input 0 has dtype u8, expected a float dtype");
	kiln_graph_destroy(g);
}

static void test_infer_shapes(void **state)
{
	(void)state;
	kiln_graph *g = new_graph();
	kiln_value *x = IN(g, KILN_DT_F32, 2, 3, 4);
	kiln_node *a = NODE(g, KILN_OP_RESHAPE, 1, x, CI64(g, 6, 4));
	kiln_node *b = NODE(g, KILN_OP_TRANSPOSE, 1, a->outputs[0]);
	kiln_node *c = NODE(g, KILN_OP_MATMUL, 1, a->outputs[0], b->outputs[0]);
	kiln_diag d;
	quiet(&d);
	assert_int_equal(kiln_infer_shapes(g, &d), KILN_OK);
	OUT_IS(c, 0, "f32[6,6]");
	NODE(g, KILN_OP_ADD, 1, c->outputs[0], IN(g, KILN_DT_F32, 5));
	assert_int_equal(kiln_infer_shapes(g, &d), KILN_ERR_SHAPE);
	assert_string_equal(d.last, "node 'n' (Add): input 1 (f32[5]) does not broadcast with f32[6,6]");
	kiln_graph_destroy(g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_broadcast),
		cmocka_unit_test(test_arity),
		cmocka_unit_test(test_conv),
		cmocka_unit_test(test_conv_same_pads),
		cmocka_unit_test(test_window_fields),
		cmocka_unit_test(test_conv_transpose),
		cmocka_unit_test(test_pool),
		cmocka_unit_test(test_global_pool),
		cmocka_unit_test(test_batch_norm),
		cmocka_unit_test(test_layer_norm),
		cmocka_unit_test(test_gemm),
		cmocka_unit_test(test_matmul),
		cmocka_unit_test(test_unary),
		cmocka_unit_test(test_prelu),
		cmocka_unit_test(test_binary),
		cmocka_unit_test(test_pow),
		cmocka_unit_test(test_variadic),
		cmocka_unit_test(test_where),
		cmocka_unit_test(test_compare),
		cmocka_unit_test(test_reduce),
		cmocka_unit_test(test_flatten),
		cmocka_unit_test(test_reshape),
		cmocka_unit_test(test_transpose),
		cmocka_unit_test(test_concat),
		cmocka_unit_test(test_split),
		cmocka_unit_test(test_slice),
		cmocka_unit_test(test_gather),
		cmocka_unit_test(test_squeeze),
		cmocka_unit_test(test_unsqueeze),
		cmocka_unit_test(test_expand),
		cmocka_unit_test(test_shape_op),
		cmocka_unit_test(test_constant_of_shape),
		cmocka_unit_test(test_range),
		cmocka_unit_test(test_cast),
		cmocka_unit_test(test_pad),
		cmocka_unit_test(test_resize),
		cmocka_unit_test(test_dropout),
		cmocka_unit_test(test_tile),
		cmocka_unit_test(test_quantize),
		cmocka_unit_test(test_dequantize),
		cmocka_unit_test(test_quantised_inputs),
		cmocka_unit_test(test_infer_shapes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
