/* test_text.c — textual IR: exact printing, print/parse round trips, every
 * parse error message, and a mutation loop that must never crash. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir.h"

static kiln_type ty(kiln_dtype dt, int rank, ...)
{
	kiln_type t = {.dtype = dt, .rank = rank};
	va_list ap;
	va_start(ap, rank);
	for (int i = 0; i < rank; i++)
		t.dims[i] = va_arg(ap, int64_t);
	va_end(ap);
	return t;
}

static float bits_f32(uint32_t u)
{
	float f;
	memcpy(&f, &u, sizeof f);
	return f;
}

static uint32_t f32_bits(float f)
{
	uint32_t u;
	memcpy(&u, &f, sizeof u);
	return u;
}

static void quiet_diag(kiln_diag *d, const char *file)
{
	kiln_diag_init(d, file);
	d->fn = NULL;
}

static kiln_graph *parse_ok(const char *text)
{
	kiln_diag d;
	quiet_diag(&d, NULL);
	kiln_graph *g = NULL;
	kiln_status s = kiln_graph_parse(text, "t.kir", &g, &d);
	if (s != KILN_OK)
		fail_msg("parse failed: %s\n%s", d.last, text);
	assert_non_null(g);
	return g;
}

/* print(g) -> parse -> print gives the same text; returns the text. */
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

/* ---- exact text ---- */

static void test_exact_text(void **state)
{
	(void)state;
	kiln_graph *g = kiln_graph_create("tiny", NULL);
	g->opset = 17;
	kiln_type tx = ty(KILN_DT_F32, 2, (int64_t)1, (int64_t)4);
	kiln_value *x = kiln_graph_add_input(g, "x", &tx);
	float w[8] = {1, 2, 3, 4, 0.5f, -0.25f, 1e-3f, 100};
	kiln_type tw = ty(KILN_DT_F32, 2, (int64_t)4, (int64_t)2);
	kiln_value *wv = kiln_graph_add_const(g, "w", &tw, w);
	kiln_type tb = ty(KILN_DT_F32, 1, (int64_t)2);
	float b[2] = {0.5f, -1};
	kiln_value *bv = kiln_graph_add_const(g, "b", &tb, b);
	kiln_type ts = ty(KILN_DT_I64, 1, (int64_t)2);
	int64_t shape[2] = {1, -1};
	kiln_value *sv = kiln_graph_add_const(g, "shape", &ts, shape);
	kiln_type tz = ty(KILN_DT_F32, 1, (int64_t)4);
	kiln_graph_add_const(g, "zero", &tz, NULL);
	kiln_value *ins[] = {x, wv, bv};
	const char *yn[] = {"y"};
	kiln_node *gemm = kiln_graph_add_node(g, KILN_OP_GEMM, "fc", ins, 3, yn, 1);
	gemm->outputs[0]->type = ty(KILN_DT_F32, 2, (int64_t)1, (int64_t)2);
	assert_int_equal(kiln_node_set_float(g, gemm, "alpha", 1), KILN_OK);
	assert_int_equal(kiln_node_set_int(g, gemm, "transB", 0), KILN_OK);
	gemm->origin = "onnx: Gemm_0";
	kiln_value *rin[] = {gemm->outputs[0], sv};
	const char *rn[] = {"onnx::Reshape_1"};
	kiln_node *r = kiln_graph_add_node(g, KILN_OP_RESHAPE, "reshape/0", rin, 2, rn, 1);
	r->outputs[0]->type = ty(KILN_DT_F32, 2, (int64_t)1, (int64_t)2);
	kiln_value *din[] = {r->outputs[0], NULL, NULL};
	const char *dn[] = {"d", "mask"};
	kiln_node *drop = kiln_graph_add_node(g, KILN_OP_DROPOUT, NULL, din, 3, dn, 2);
	drop->outputs[0]->type = ty(KILN_DT_F32, 2, (int64_t)1, (int64_t)2);
	drop->outputs[1]->type = ty(KILN_DT_BOOL, 2, (int64_t)1, (int64_t)2);
	const int64_t perm[2] = {1, 0};
	kiln_value *tin[] = {drop->outputs[0]};
	kiln_node *tr = kiln_graph_add_node(g, KILN_OP_TRANSPOSE, "t", tin, 1, NULL, 1);
	tr->outputs[0]->type = ty(KILN_DT_F32, 2, (int64_t)2, (int64_t)1);
	assert_int_equal(kiln_node_set_ints(g, tr, "perm", perm, 2), KILN_OK);
	assert_int_equal(kiln_graph_add_output(g, tr->outputs[0]), KILN_OK);
	assert_int_equal(kiln_graph_add_output(g, drop->outputs[1]), KILN_OK);

	const char *expect =
		"graph @tiny opset 17 {\n"
		"  input %x : f32[1,4]\n"
		"  const %w : f32[4,2] = dense<[1.0, 2.0, 3.0, 4.0, 0.5, -0.25, 0.00100000005, 100.0]>\n"
		"  const %b : f32[2] = dense<[0.5, -1.0]>\n"
		"  const %shape : i64[2] = dense<[1, -1]>\n"
		"  const %zero : f32[4] = dense<0.0>\n"
		"  %y : f32[1,2] = Gemm @fc (%x, %w, %b) {alpha = 1.0, transB = 0} loc(\"onnx: Gemm_0\")\n"
		"  %\"onnx::Reshape_1\" : f32[1,2] = Reshape @\"reshape/0\" (%y, %shape)\n"
		"  %d : f32[1,2], %mask : bool[1,2] = Dropout @node_2 (%\"onnx::Reshape_1\", _, _)\n"
		"  %v9 : f32[2,1] = Transpose @t (%d) {perm = [1, 0]}\n"
		"  output %v9\n"
		"  output %mask\n"
		"}\n";
	char *text = kiln_graph_print(g, NULL);
	assert_non_null(text);
	assert_string_equal(text, expect);
	free(text);

	/* and the hand-written text parses to the same graph */
	kiln_graph *g2 = parse_ok(expect);
	assert_int_equal(g2->opset, 17);
	assert_string_equal(g2->name, "tiny");
	assert_int_equal(g2->n_nodes, 4);
	assert_int_equal(g2->nodes[2]->op, KILN_OP_DROPOUT);
	assert_null(g2->nodes[2]->inputs[1]);
	assert_int_equal(g2->nodes[2]->n_outputs, 2);
	assert_string_equal(g2->nodes[0]->origin, "onnx: Gemm_0");
	assert_float_equal(kiln_node_float(g2->nodes[0], "alpha", 0), 1.0, 0);
	kiln_value *zero = kiln_graph_find_value(g2, "zero");
	assert_int_equal(zero->kind, KILN_VALUE_CONST);
	assert_int_equal(kiln_type_numel(&zero->type), 4);
	assert_float_equal(((float *)zero->data)[3], 0.0, 0);
	kiln_value *wp = kiln_graph_find_value(g2, "w");
	assert_memory_equal(wp->data, w, sizeof w);
	text = kiln_graph_print(g2, NULL);
	assert_string_equal(text, expect);
	free(text);
	kiln_graph_destroy(g2);
	kiln_graph_destroy(g);
}

/* ---- round trips ---- */

/* A graph touching every printable feature. */
static kiln_graph *build_rich(void)
{
	kiln_graph *g = kiln_graph_create("rich \"graph\"\n", NULL);
	g->opset = 21;
	kiln_type t;

	t = ty(KILN_DT_F32, 4, (int64_t)1, (int64_t)3, (int64_t)4, (int64_t)4);
	kiln_value *x = kiln_graph_add_input(g, "x", &t);
	t = ty(KILN_DT_I64, 0);
	kiln_graph_add_input(g, "onnx::input 0", &t);
	t = ty(KILN_DT_BOOL, 1, (int64_t)2);
	kiln_graph_add_input(g, "", &t);
	t = ty(KILN_DT_U8, 1, (int64_t)3);
	kiln_value *q = kiln_graph_add_input(g, "h\xc3\xa9 \"q\"\\\n\t\x01\x7f", &t);
	q->quant = kiln_arena_alloc(g->arena, sizeof *q->quant);
	q->quant->axis = -1;
	q->quant->n = 1;
	q->quant->scale = kiln_arena_alloc(g->arena, sizeof(float));
	q->quant->scale[0] = 0.0078125f;
	q->quant->zero_point = kiln_arena_alloc(g->arena, sizeof(int32_t));
	q->quant->zero_point[0] = 128;

	/* every dtype, with edge values */
	float f32v[6] = {-0.0f, bits_f32(1), 3.4028235e38f, 0.1f, INFINITY, bits_f32(0x7fc00001)};
	t = ty(KILN_DT_F32, 2, (int64_t)2, (int64_t)3);
	kiln_graph_add_const(g, "f32", &t, f32v);
	uint16_t f16v[8] = {0x0001, 0x03ff, 0x7bff, 0x7c00, 0xfc00, 0x7e00, 0x7c01, 0x8000};
	t = ty(KILN_DT_F16, 1, (int64_t)8);
	kiln_graph_add_const(g, "f16", &t, f16v);
	uint16_t bf16v[7] = {0x0001, 0x3f80, 0x7f7f, 0x7f80, 0xff80, 0x7fc0, 0xffc1};
	t = ty(KILN_DT_BF16, 1, (int64_t)7);
	kiln_graph_add_const(g, "bf16", &t, bf16v);
	double f64v[4] = {0.1, 1e300, 4.9e-324, -NAN};
	uint64_t payload = 0x7ff0000000000123u;
	memcpy(&f64v[3], &payload, 8);
	t = ty(KILN_DT_F64, 1, (int64_t)4);
	kiln_graph_add_const(g, "f64", &t, f64v);
	int64_t i64v[3] = {INT64_MIN, INT64_MAX, 0};
	t = ty(KILN_DT_I64, 1, (int64_t)3);
	kiln_graph_add_const(g, "i64", &t, i64v);
	int32_t i32v[2] = {INT32_MIN, INT32_MAX};
	t = ty(KILN_DT_I32, 1, (int64_t)2);
	kiln_graph_add_const(g, "i32", &t, i32v);
	int8_t i8v[2] = {-128, 127};
	t = ty(KILN_DT_I8, 1, (int64_t)2);
	kiln_graph_add_const(g, "i8", &t, i8v);
	uint8_t u8v[2] = {0, 255};
	t = ty(KILN_DT_U8, 1, (int64_t)2);
	kiln_graph_add_const(g, "u8", &t, u8v);
	uint8_t boolv[3] = {1, 0, 1};
	t = ty(KILN_DT_BOOL, 1, (int64_t)3);
	kiln_graph_add_const(g, "bool", &t, boolv);
	t = ty(KILN_DT_BOOL, 2, (int64_t)2, (int64_t)2);
	uint8_t trues[4] = {1, 1, 1, 1};
	kiln_graph_add_const(g, "trues", &t, trues);
	t = ty(KILN_DT_F32, 0);
	float pi = 3.14159274f;
	kiln_graph_add_const(g, "scalar", &t, &pi);
	t = ty(KILN_DT_F32, 2, (int64_t)0, (int64_t)5);
	kiln_graph_add_const(g, "empty", &t, NULL);
	/* large: elided unless full_constants */
	float ramp[64];
	for (int i = 0; i < 64; i++)
		ramp[i] = (float)i / 7.0f - 2.0f;
	t = ty(KILN_DT_F32, 4, (int64_t)4, (int64_t)1, (int64_t)4, (int64_t)4);
	kiln_value *w = kiln_graph_add_const(g, "w", &t, ramp);
	t = ty(KILN_DT_F16, 1, (int64_t)100);
	kiln_graph_add_const(g, "zeros100", &t, NULL);
	uint16_t h20[20];
	for (int i = 0; i < 20; i++)
		h20[i] = kiln_f32_to_f16((float)i * 0.3f);
	t = ty(KILN_DT_F16, 1, (int64_t)20);
	kiln_graph_add_const(g, "h20", &t, h20);

	/* Conv with every attribute kind */
	kiln_value *cin[] = {x, w, NULL};
	const char *cn[] = {"onnx::Conv_12"};
	kiln_node *conv = kiln_graph_add_node(g, KILN_OP_CONV, "conv 0/\"x\"", cin, 3, cn, 1);
	conv->outputs[0]->type = ty(KILN_DT_F32, 4, (int64_t)1, (int64_t)4, (int64_t)2, (int64_t)2);
	kiln_node_set_string(g, conv, "auto_pad", "NOTSET");
	kiln_node_set_int(g, conv, "group", 1);
	kiln_node_set_int(g, conv, "neg", INT64_MIN);
	const int64_t ks[2] = {3, 3};
	kiln_node_set_ints(g, conv, "kernel_shape", ks, 2);
	kiln_node_set_ints(g, conv, "pads", NULL, 0);
	kiln_node_set_float(g, conv, "alpha", 0.5f);
	kiln_node_set_float(g, conv, "third", 1.0f / 3.0f);
	kiln_node_set_float(g, conv, "big", 1e30f);
	kiln_node_set_float(g, conv, "tiny", bits_f32(0x00000123));
	kiln_node_set_float(g, conv, "negzero", -0.0f);
	kiln_node_set_float(g, conv, "ninf", -INFINITY);
	kiln_node_set_float(g, conv, "nan", NAN);
	kiln_node_set_float(g, conv, "snan", bits_f32(0xff800001));
	const float sc[3] = {1.0f, 2.5f, -1e-7f};
	kiln_node_set_floats(g, conv, "scales", sc, 3);
	kiln_node_set_floats(g, conv, "nofloats", NULL, 0);
	kiln_node_set_string(g, conv, "weird \"name\"", "a\"b\\c\nd\te\x02\xe2\x82\xac");
	kiln_node_set_string(g, conv, "emptystr", "");
	float one = 0;
	kiln_tensor tv = {ty(KILN_DT_F32, 1, (int64_t)1), &one};
	kiln_node_set_tensor(g, conv, "value", &tv);
	int64_t tvi[3] = {5, -6, 7};
	kiln_tensor tv2 = {ty(KILN_DT_I64, 1, (int64_t)3), tvi};
	kiln_node_set_tensor(g, conv, "ivalue", &tv2);
	uint16_t tvh[40];
	for (int i = 0; i < 40; i++)
		tvh[i] = (uint16_t)(0x3c00 + i);
	kiln_tensor tv3 = {ty(KILN_DT_F16, 2, (int64_t)5, (int64_t)8), tvh};
	kiln_node_set_tensor(g, conv, "hvalue", &tv3);
	conv->origin = "onnx: Conv_0 \"fused\"";

	/* multi-output */
	kiln_value *sin[] = {conv->outputs[0]};
	const char *sn[] = {"a", NULL, "c"};
	kiln_node *split = kiln_graph_add_node(g, KILN_OP_SPLIT, NULL, sin, 1, sn, 3);
	for (int i = 0; i < 3; i++)
		split->outputs[i]->type = ty(KILN_DT_F32, 4, (int64_t)1, (int64_t)4, (int64_t)2,
		                             i == 2 ? (int64_t)0 : (int64_t)1);
	kiln_node_set_int(g, split, "axis", 3);
	/* quantised output, scalar type */
	kiln_value *qin[] = {split->outputs[0], NULL};
	kiln_node *rm = kiln_graph_add_node(g, KILN_OP_REDUCE_MEAN, "", qin, 2, NULL, 1);
	rm->outputs[0]->type = ty(KILN_DT_I8, 0);
	kiln_quant *qq = kiln_arena_alloc(g->arena, sizeof *qq);
	qq->axis = 1;
	qq->n = 2;
	qq->scale = kiln_arena_alloc(g->arena, 2 * sizeof(float));
	qq->scale[0] = 0.1f;
	qq->scale[1] = 0.2f;
	qq->zero_point = kiln_arena_alloc(g->arena, 2 * sizeof(int32_t));
	qq->zero_point[0] = -3;
	qq->zero_point[1] = 4;
	rm->outputs[0]->quant = qq;
	kiln_graph_add_output(g, rm->outputs[0]);
	kiln_graph_add_output(g, split->outputs[1]);
	kiln_graph_add_output(g, x); /* an input can be an output too */
	return g;
}

static void test_round_trip_rich(void **state)
{
	(void)state;
	kiln_graph *g = build_rich();
	char *elided = check_round_trip(g, false);
	char *full = check_round_trip(g, true);

	/* spot checks of the text */
	assert_non_null(strstr(elided, "graph @\"rich \\\"graph\\\"\\n\" opset 21 {\n"));
	assert_non_null(strstr(elided, "  input %\"onnx::input 0\" : i64[]\n"));
	assert_non_null(strstr(elided, "  input %\"\" : bool[2]\n"));
	assert_non_null(strstr(elided, "  input %\"h\xc3\xa9 \\\"q\\\"\\\\\\n\\t\\x01\\x7f\" : u8[3] "
	                                "quant<axis = -1, scale = [0.0078125], zero_point = [128]>\n"));
	assert_non_null(strstr(elided, "  const %f32 : f32[2,3] = dense<[-0.0, 1.40129846e-45, "
	                                "3.40282347e+38, 0.100000001, inf, nan(0x7fc00001)]>\n"));
	assert_non_null(strstr(elided, "  const %f16 : f16[8] = dense<[5.96046448e-08, "
	                                "6.09755516e-05, 65504.0, inf, -inf, nan, nan(0x7c01), -0.0]>\n"));
	assert_non_null(strstr(elided, "  const %bf16 : bf16[7] = dense<[9.18354962e-41, 1.0, "
	                                "3.38953139e+38, inf, -inf, nan, nan(0xffc1)]>\n"));
	assert_non_null(strstr(elided, "  const %f64 : f64[4] = dense<[0.10000000000000001, "
	                                "1.0000000000000001e+300, 4.9406564584124654e-324, "
	                                "nan(0x7ff0000000000123)]>\n"));
	assert_non_null(strstr(elided, "  const %i64 : i64[3] = dense<[-9223372036854775808, "
	                                "9223372036854775807, 0]>\n"));
	assert_non_null(strstr(elided, "  const %i32 : i32[2] = dense<[-2147483648, 2147483647]>\n"));
	assert_non_null(strstr(elided, "  const %i8 : i8[2] = dense<[-128, 127]>\n"));
	assert_non_null(strstr(elided, "  const %u8 : u8[2] = dense<[0, 255]>\n"));
	assert_non_null(strstr(elided, "  const %bool : bool[3] = dense<[true, false, true]>\n"));
	assert_non_null(strstr(elided, "  const %trues : bool[2,2] = dense<true>\n"));
	assert_non_null(strstr(elided, "  const %scalar : f32[] = dense<[3.14159274]>\n"));
	assert_non_null(strstr(elided, "  const %empty : f32[0,5] = dense<[]>\n"));
	assert_non_null(strstr(elided, "  const %w : f32[4,1,4,4] = elided<\"min -2 max 7 mean 2.5 fnv 0x"));
	assert_non_null(strstr(elided, "  const %zeros100 : f16[100] = dense<0.0>\n"));
	assert_non_null(strstr(elided, "  const %h20 : f16[20] = elided<\"min 0 max 5.69922 mean 2.84996"));
	assert_non_null(strstr(full, "  const %w : f32[4,1,4,4] = dense<[-2.0, -1.85714281, "));
	assert_non_null(strstr(full, "  const %h20 : f16[20] = dense<[0.0, 0.300048828, "));
	assert_non_null(strstr(elided,
		"  %\"onnx::Conv_12\" : f32[1,4,2,2] = Conv @\"conv 0/\\\"x\\\"\" (%x, %w, _) {"
		"auto_pad = \"NOTSET\", group = 1, neg = -9223372036854775808, kernel_shape = [3, 3], "
		"pads = ints[], alpha = 0.5, third = 0.333333343, big = 1.00000002e+30, "
		"tiny = 4.07777853e-43, negzero = -0.0, ninf = -inf, nan = nan, snan = nan(0xff800001), "
		"scales = [1.0, 2.5, -1.00000001e-07], nofloats = floats[], "
		"\"weird \\\"name\\\"\" = \"a\\\"b\\\\c\\nd\\te\\x02\xe2\x82\xac\", emptystr = \"\", "
		"value = tensor<f32[1] dense<[0.0]>>, ivalue = tensor<i64[3] dense<[5, -6, 7]>>, "
		"hvalue = tensor<f16[5,8] dense<[1.0, 1.00097656, "));
	assert_non_null(strstr(elided, "]>>} loc(\"onnx: Conv_0 \\\"fused\\\"\")\n"));
	assert_non_null(strstr(elided, "  %a : f32[1,4,2,1], %v"));
	assert_non_null(strstr(elided, " : f32[1,4,2,1], %c : f32[1,4,2,0] = Split @node_1 "
	                                "(%\"onnx::Conv_12\") {axis = 3}\n"));
	assert_non_null(strstr(elided, " : i8[] quant<axis = 1, scale = [0.100000001, 0.200000003], "
	                                "zero_point = [-3, 4]> = ReduceMean @\"\" (%a, _)\n"));
	assert_non_null(strstr(elided, "  output %x\n}\n"));

	/* full mode is exact: every constant and attribute tensor keeps its bits */
	kiln_graph *g2 = parse_ok(full);
	for (int i = 0; i < g->n_values; i++) {
		kiln_value *v = g->values[i];
		if (v->kind != KILN_VALUE_CONST)
			continue;
		kiln_value *v2 = kiln_graph_find_value(g2, v->name);
		assert_non_null(v2);
		assert_true(kiln_type_equal(&v->type, &v2->type));
		assert_memory_equal(v->data, v2->data, kiln_type_bytes(&v->type));
	}
	kiln_node *c2 = kiln_graph_find_node(g2, "conv 0/\"x\"");
	assert_non_null(c2);
	assert_int_equal(c2->n_attrs, g->nodes[0]->n_attrs);
	assert_int_equal(f32_bits(kiln_node_float(c2, "snan", 0)), 0xff800001u);
	assert_int_equal(f32_bits(kiln_node_float(c2, "negzero", 0)), 0x80000000u);
	assert_int_equal(f32_bits(kiln_node_float(c2, "tiny", 0)), 0x123u);
	assert_string_equal(kiln_node_string(c2, "weird \"name\"", NULL),
	                    "a\"b\\c\nd\te\x02\xe2\x82\xac");
	const kiln_tensor *hv = kiln_node_tensor(c2, "hvalue");
	for (int i = 0; i < 40; i++)
		assert_int_equal(((const uint16_t *)hv->data)[i], 0x3c00 + i);
	kiln_value *qv = kiln_graph_find_value(g2, "h\xc3\xa9 \"q\"\\\n\t\x01\x7f");
	assert_non_null(qv);
	assert_int_equal(qv->kind, KILN_VALUE_INPUT);
	assert_int_equal(qv->quant->zero_point[0], 128);
	assert_int_equal(g2->n_outputs, 3);
	assert_ptr_equal(g2->outputs[2], g2->inputs[0]);
	kiln_graph_destroy(g2);

	/* elided mode: the big constant comes back without data, prints the same */
	g2 = parse_ok(elided);
	kiln_value *wv = kiln_graph_find_value(g2, "w");
	assert_null(wv->data);
	assert_non_null(wv->elided);
	assert_int_equal(strncmp(wv->elided, "min -2 max 7 mean 2.5 fnv 0x", 28), 0);
	char *again = kiln_graph_print(g2, &(kiln_print_opts){.full_constants = true});
	assert_non_null(strstr(again, "  const %w : f32[4,1,4,4] = elided<\"min -2 max 7"));
	free(again);
	kiln_graph_destroy(g2);

	free(elided);
	free(full);
	kiln_graph_destroy(g);
}

/* Identical weights give identical summaries; one changed bit changes it. */
static void test_elided_summary(void **state)
{
	(void)state;
	kiln_graph *g = kiln_graph_create("s", NULL);
	float a[32];
	for (int i = 0; i < 32; i++)
		a[i] = (float)i;
	kiln_type t = ty(KILN_DT_F32, 1, (int64_t)32);
	kiln_graph_add_const(g, "a", &t, a);
	kiln_graph_add_const(g, "b", &t, a);
	a[5] = bits_f32(f32_bits(a[5]) ^ 1);
	kiln_graph_add_const(g, "c", &t, a);
	char *text = kiln_graph_print(g, NULL);
	/* FNV-1a 64 of the 128 bytes of 0.0f, 1.0f, ..., 31.0f (little endian),
	 * computed independently of the printer */
	uint64_t h = 0xcbf29ce484222325u;
	for (int i = 0; i < 32; i++) {
		float f = (float)i;
		unsigned char b[4];
		memcpy(b, &f, 4);
		for (int k = 0; k < 4; k++) {
			h ^= b[k];
			h *= 0x100000001b3u;
		}
	}
	char line[256];
	snprintf(line, sizeof line,
	         "  const %%a : f32[32] = elided<\"min 0 max 31 mean 15.5 fnv 0x%016llx\">\n"
	         "  const %%b : f32[32] = elided<\"min 0 max 31 mean 15.5 fnv 0x%016llx\">\n",
	         (unsigned long long)h, (unsigned long long)h);
	assert_non_null(strstr(text, line));
	/* one flipped bit: same rounded statistics, another hash */
	const char *cpre = "  const %c : f32[32] = elided<\"min 0 max 31 mean 15.5 fnv 0x";
	char *c = strstr(text, cpre);
	assert_non_null(c);
	unsigned long long hc = strtoull(c + strlen(cpre), NULL, 16);
	assert_true(hc != 0 && hc != h);
	free(text);
	kiln_graph_destroy(g);
}

static void test_parse_lenient_forms(void **state)
{
	(void)state;
	/* comments, blank lines, any statement order, untyped float lists,
	 * typed lists, splat of one element, nan spellings */
	const char *text =
		"// leading comment\n"
		"\n"
		"graph @g opset 13 {   // header comment\n"
		"  input %x : f32[2]\n"
		"\n"
		"  %y : f32[2] = LeakyRelu @lr (%x) {alpha = 1e-2, l = [1, 2.5], i = ints[4], f = floats[1, 2]}\n"
		"  output %y\n"
		"  const %s : f32[1] = dense<7>\n"
		"  const %n : f32[2] = dense<[-nan, nan]>\n"
		"  const %h : f16[2] = dense<[nan(0x7c01), 1]>\n"
		"  () = Identity @sink (%y)\n"
		"}   // done\n"
		"\n";
	kiln_graph *g = parse_ok(text);
	kiln_node *n = g->nodes[0];
	assert_int_equal(f32_bits(kiln_node_float(n, "alpha", 0)), f32_bits(1e-2f));
	const float *fl;
	assert_int_equal(kiln_node_floats(n, "l", &fl), 2);
	assert_float_equal(fl[0], 1.0, 0);
	assert_float_equal(fl[1], 2.5, 0);
	const int64_t *il;
	assert_int_equal(kiln_node_ints(n, "i", &il), 1);
	assert_int_equal(il[0], 4);
	assert_int_equal(kiln_node_floats(n, "f", &fl), 2);
	assert_float_equal(fl[1], 2.0, 0);
	kiln_value *s = kiln_graph_find_value(g, "s");
	assert_float_equal(((float *)s->data)[0], 7.0, 0);
	kiln_value *nv = kiln_graph_find_value(g, "n");
	assert_int_equal(((uint32_t *)nv->data)[0], 0xffc00000u);
	assert_int_equal(((uint32_t *)nv->data)[1], 0x7fc00000u);
	kiln_value *h = kiln_graph_find_value(g, "h");
	assert_int_equal(((uint16_t *)h->data)[0], 0x7c01);
	assert_int_equal(((uint16_t *)h->data)[1], 0x3c00);
	char *out = kiln_graph_print(g, NULL);
	assert_string_equal(out,
		"graph @g opset 13 {\n"
		"  input %x : f32[2]\n"
		"  const %s : f32[1] = dense<[7.0]>\n"
		"  const %n : f32[2] = dense<[-nan, nan]>\n"
		"  const %h : f16[2] = dense<[nan(0x7c01), 1.0]>\n"
		"  %y : f32[2] = LeakyRelu @lr (%x) {alpha = 0.00999999978, l = [1.0, 2.5], i = [4], "
		"f = [1.0, 2.0]}\n"
		"  () = Identity @sink (%y)\n"
		"  output %y\n"
		"}\n");
	free(out);
	kiln_graph_destroy(g);
}

/* The example in docs/ir.md is canonical text: it parses and prints back
 * identically. */
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
	char *start = strstr(doc, "### Example\n\n```\n");
	assert_non_null(start);
	start += strlen("### Example\n\n```\n");
	char *end = strstr(start, "```\n");
	assert_non_null(end);
	*end = 0;
	kiln_graph *g = parse_ok(start);
	assert_int_equal(g->n_nodes, 6);
	assert_null(kiln_graph_find_value(g, "w1")->data);
	char *text = kiln_graph_print(g, NULL);
	assert_string_equal(text, start);
	free(text);
	kiln_graph_destroy(g);
}

/* ---- errors ---- */

typedef struct err_case {
	const char *text;
	const char *msg;
} err_case;

#define HDR "graph @g opset 17 {\n"
#define IN "  input %x : f32[1]\n"

static const err_case err_cases[] = {
	{HDR "  input %x f32[1]\n}\n", "m.kir:2:12: expected ':' after value name"},
	{HDR IN "  %y : f32[1] = Foo @n (%x)\n}\n", "m.kir:3:17: unknown op 'Foo'"},
	{HDR "  input %x : f33[1]\n}\n", "m.kir:2:14: unknown dtype 'f33'"},
	{HDR "  input %x : F32[1]\n}\n", "m.kir:2:14: unknown dtype 'F32'"},
	{HDR "  input %x : [1]\n}\n", "m.kir:2:14: expected type, got '[1]'"},
	{HDR "  input %x : f32 [1]\n}\n", "m.kir:2:17: expected '[' after dtype"},
	{HDR "  %y : f32[1] = Relu @r (%x)\n}\n", "m.kir:2:26: use of undefined value %x"},
	{HDR "  %y : f32[1] = Relu @r (%\"a b\")\n}\n",
	 "m.kir:2:26: use of undefined value %\"a b\""},
	{HDR IN "  output %z\n}\n", "m.kir:3:10: use of undefined value %z"},
	{HDR IN "  input %x : f32[1]\n}\n", "m.kir:3:9: redefinition of value %x"},
	{HDR IN "  %x : f32[1] = Relu @r (%x)\n}\n", "m.kir:3:3: redefinition of value %x"},
	{HDR IN "  %y : f32[1], %y : f32[1] = Dropout @r (%x)\n}\n",
	 "m.kir:3:16: redefinition of value %y"},
	{HDR "  const %c : i64[2] = dense<[1, 2x]>\n}\n", "m.kir:2:33: bad number '2x'"},
	{HDR "  const %c : i64[2] = dense<[1, 99999999999999999999]>\n}\n",
	 "m.kir:2:33: bad number '99999999999999999999'"},
	{HDR "  const %c : f32[1] = dense<[1.5.2]>\n}\n", "m.kir:2:30: bad number '1.5.2'"},
	{HDR "  const %c : u8[1] = dense<[300]>\n}\n",
	 "m.kir:2:29: integer 300 out of range for u8"},
	{HDR "  const %c : i32[1] = dense<[1.5]>\n}\n",
	 "m.kir:2:30: expected integer element of i32"},
	{HDR "  const %c : bool[1] = dense<[1]>\n}\n",
	 "m.kir:2:31: expected true or false, got '1]>'"},
	{HDR "  const %c : f32[1] = dense<[nan(0x3f800000)]>\n}\n",
	 "m.kir:2:30: 0x3f800000 is not a NaN of f32"},
	{HDR IN "  %y : f32[1] = Relu @\"r (%x)\n}\n", "m.kir:3:23: unterminated string"},
	{HDR IN "  %y : f32[1] = Relu @\"r\\", "m.kir:3:23: unterminated string"},
	{HDR IN "  %y : f32[1] = Relu @\"r\\q\" (%x)\n}\n", "m.kir:3:25: unknown escape '\\q'"},
	{HDR IN "  %y : f32[1] = Relu @\"r\\x00\" (%x)\n}\n",
	 "m.kir:3:25: \\x00 is not allowed in a string"},
	{HDR IN "  %y : f32[1] = Relu @\"r\\x4\" (%x)\n}\n",
	 "m.kir:3:25: expected two hex digits after \\x"},
	{HDR "  const %c : f32[2,2] = dense<[1.0, 2.0, 3.0]>\n}\n",
	 "m.kir:2:25: dense has 3 elements, type f32[2,2] needs 4"},
	{HDR "  const %c : f32[0] = dense<1.0>\n}\n",
	 "m.kir:2:23: dense has 1 elements, type f32[0] needs 0"},
	{HDR "  const %c : f32[-2] = dense<[]>\n}\n",
	 "m.kir:2:24: type f32[-2] has a negative dimension"},
	{HDR "  const %c : f32[1099511627776] = dense<0.0>\n}\n",
	 "m.kir:2:35: type f32[1099511627776] is too large for a constant"},
	{HDR "  const %c : f32[1] = sparse<1>\n}\n",
	 "m.kir:2:23: expected dense<...> or elided<...>, got 'sparse<1>'"},
	{HDR IN "  %y : f32[1] = Relu @r (%x)\n  %z : f32[1] = Relu @r (%y)\n}\n",
	 "m.kir:4:22: duplicate node name @r"},
	{HDR IN "  %y : f32[1] = Relu @r (%x) {a = 1, a = 2}\n}\n",
	 "m.kir:3:38: duplicate attribute 'a'"},
	{HDR IN "  %y : f32[1] = Relu @r (%x) {a = [1, 2.0], b = ints[1.5]}\n}\n",
	 "m.kir:3:54: expected integer in ints list"},
	{HDR IN "  output %x junk\n}\n", "m.kir:3:13: expected end of line, got 'junk'"},
	{HDR IN "}\nfoo\n", "m.kir:4:1: unexpected text after '}'"},
	{HDR IN, "m.kir:3:1: unexpected end of input, expected '}'"},
	{HDR IN "  bogus %x\n}\n", "m.kir:3:3: expected statement, got 'bogus'"},
	{"grap @g opset 1 {\n}\n", "m.kir:1:1: expected 'graph', got 'grap'"},
	{"graph g opset 1 {\n}\n", "m.kir:1:7: expected graph name"},
	{"graph @g opset -1 {\n}\n", "m.kir:1:16: opset -1 out of range"},
	{"graph @g opset 1\n}\n", "m.kir:1:17: expected '{' after graph header"},
	{HDR "  input %x : f32[1,2,3,4,5,6,7,8,9]\n}\n", "m.kir:2:34: rank exceeds 8"},
	{HDR "  input %x : f32[1 2]\n}\n", "m.kir:2:20: expected ',' or ']' in shape"},
	{HDR "  input % : f32[1]\n}\n", "m.kir:2:10: expected value name after '%'"},
	{HDR IN "  %y : f32[1] = Relu (%x)\n}\n", "m.kir:3:22: expected node name"},
	{HDR IN "  %y : f32[1] = Relu @r %x\n}\n", "m.kir:3:25: expected '(' before node inputs"},
	{HDR IN "  %y : f32[1] = Relu @r (%x {a = 1}\n}\n",
	 "m.kir:3:29: expected ',' or ')' after node input"},
	{HDR IN "  %y : f32[1] = Relu @r (%x) {a = }\n}\n", "m.kir:3:35: expected number, got '}'"},
	{HDR IN "  %y : f32[1] = Relu @r (%x) loc(oops)\n}\n", "m.kir:3:34: expected string"},
	{HDR "  input %q : i8[1] quant<axis = 0, scale = [0.5], zero_point = []>\n}\n",
	 "m.kir:2:64: quant needs as many zero points as scales (at least one)"},
};

static void test_parse_errors(void **state)
{
	(void)state;
	int bad = 0;
	for (size_t i = 0; i < sizeof err_cases / sizeof *err_cases; i++) {
		kiln_diag d;
		quiet_diag(&d, NULL);
		kiln_graph *g = (kiln_graph *)&d; /* must be reset to NULL */
		kiln_status s = kiln_graph_parse(err_cases[i].text, "m.kir", &g, &d);
		if (s != KILN_ERR_PARSE || strcmp(d.last, err_cases[i].msg) != 0) {
			print_error("case %zu: status %d, got \"%s\", want \"%s\"\n", i, (int)s,
			            d.last, err_cases[i].msg);
			bad++;
		}
		assert_null(g);
		assert_int_equal(d.n_errors, 1);
		assert_null(d.file); /* restored */
	}
	assert_int_equal(bad, 0);
}

static void test_parse_error_filename(void **state)
{
	(void)state;
	const char *text = HDR "  input %x f32[1]\n}\n";
	kiln_graph *g;
	kiln_diag d;
	quiet_diag(&d, "caller.kir"); /* the diag's own file wins */
	assert_int_equal(kiln_graph_parse(text, "m.kir", &g, &d), KILN_ERR_PARSE);
	assert_string_equal(d.last, "caller.kir:2:12: expected ':' after value name");
	assert_string_equal(d.file, "caller.kir");
	quiet_diag(&d, NULL);
	assert_int_equal(kiln_graph_parse(text, NULL, &g, &d), KILN_ERR_PARSE);
	assert_string_equal(d.last, "2:12: expected ':' after value name");
	/* a NULL diag is allowed */
	assert_int_equal(kiln_graph_parse(text, "m.kir", &g, NULL), KILN_ERR_PARSE);
	assert_null(g);
}

/* ---- robustness ---- */

static uint64_t rng_next(uint64_t *s)
{
	*s = *s * 6364136223846793005u + 1442695040888963407u;
	return *s >> 33;
}

/* Parses `text`: either it fails with KILN_ERR_PARSE and a located message,
 * or it succeeds and then print -> parse -> print is stable. */
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
	char *t1 = kiln_graph_print(g, NULL);
	assert_non_null(t1);
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

/* Every truncation and thousands of random byte edits of `base`. */
static void mutate_all(const char *base, uint64_t seed)
{
	size_t len = strlen(base);
	char *buf = malloc(len + 16);
	for (size_t cut = 0; cut <= len; cut++) {
		memcpy(buf, base, cut);
		buf[cut] = 0;
		check_no_crash(buf);
	}
	/* replace, delete or insert a byte from an alphabet rich in syntax */
	static const char alphabet[] = "%@\"\\_,:=()[]{}<>-.0123456789eaxn/ \n\t\x80\xff";
	for (int iter = 0; iter < 2000; iter++) {
		memcpy(buf, base, len + 1);
		size_t n = len;
		int edits = 1 + (int)(rng_next(&seed) % 3);
		for (int e = 0; e < edits; e++) {
			size_t at = rng_next(&seed) % (n + 1);
			char c = alphabet[rng_next(&seed) % (sizeof alphabet - 1)];
			switch (rng_next(&seed) % 3) {
			case 0:
				if (at < n)
					buf[at] = c;
				break;
			case 1:
				if (at < n) {
					memmove(buf + at, buf + at + 1, n - at);
					n--;
				}
				break;
			default:
				memmove(buf + at + 1, buf + at, n - at + 1);
				buf[at] = c;
				n++;
				break;
			}
		}
		check_no_crash(buf);
	}
	free(buf);
}

static void test_mutations(void **state)
{
	(void)state;
	kiln_graph *g = build_rich();
	char *full = kiln_graph_print(g, &(kiln_print_opts){.full_constants = true});
	char *elided = kiln_graph_print(g, NULL);
	kiln_graph_destroy(g);
	mutate_all(full, 12345);
	mutate_all(elided, 777);
	free(full);
	free(elided);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_exact_text),
		cmocka_unit_test(test_round_trip_rich),
		cmocka_unit_test(test_elided_summary),
		cmocka_unit_test(test_parse_lenient_forms),
		cmocka_unit_test(test_docs_example),
		cmocka_unit_test(test_parse_errors),
		cmocka_unit_test(test_parse_error_filename),
		cmocka_unit_test(test_mutations),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
