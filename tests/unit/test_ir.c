/* test_ir.c — the IR core: arena, builder, accessors, dtypes and half
 * floats, status strings, diagnostics, and allocation-failure paths. */
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

/* An allocator that counts live blocks, fills fresh memory with garbage (so
 * the arena's zeroing is really tested) and fails allocation number
 * `fail_at` (1-based; 0: never). */
typedef struct test_alloc {
	int calls, live, fail_at;
} test_alloc;

static void *ta_alloc(void *user, size_t size)
{
	test_alloc *ta = user;
	/* sizes no machine has fail like malloc's (ASan would abort instead) */
	if (++ta->calls == ta->fail_at || size > (size_t)1 << 40)
		return NULL;
	void *p = malloc(size);
	if (p) {
		memset(p, 0xab, size);
		ta->live++;
	}
	return p;
}

static void ta_free(void *user, void *p)
{
	test_alloc *ta = user;
	if (p)
		ta->live--;
	free(p);
}

/* ---- arena ---- */

static void test_arena_alignment_and_zeroing(void **state)
{
	(void)state;
	test_alloc ta = {0};
	kiln_allocator al = {ta_alloc, ta_free, &ta};
	kiln_arena *a = kiln_arena_create(&al);
	assert_non_null(a);
	assert_int_equal(kiln_arena_used(a), 0);
	static const size_t sizes[] = {1, 3, 17, 63, 64, 65, 100, 1000, 4096, 16384, 16385,
	                               100000, 1 << 20, 5};
	size_t used = 0;
	for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
		unsigned char *p = kiln_arena_alloc(a, sizes[i]);
		assert_non_null(p);
		assert_int_equal((uintptr_t)p % 64, 0);
		for (size_t k = 0; k < sizes[i]; k++)
			if (p[k] != 0)
				fail_msg("alloc %zu: byte %zu is %d, not zeroed", sizes[i], k, p[k]);
		memset(p, 0xcd, sizes[i]); /* writable, and must not bleed into the next */
		used += (sizes[i] + 63) / 64 * 64;
		assert_int_equal(kiln_arena_used(a), used);
	}
	/* size 0: valid, distinct pointers */
	void *z1 = kiln_arena_alloc(a, 0), *z2 = kiln_arena_alloc(a, 0);
	assert_non_null(z1);
	assert_non_null(z2);
	assert_ptr_not_equal(z1, z2);
	assert_int_equal(kiln_arena_used(a), used + 128);
	kiln_arena_destroy(a);
	assert_int_equal(ta.live, 0);
}

/* Sizes near SIZE_MAX (a corrupt file's overflowing byte count) fail cleanly,
 * whether or not the head chunk has room. */
static void test_arena_huge_sizes(void **state)
{
	(void)state;
	test_alloc ta = {0};
	kiln_allocator al = {ta_alloc, ta_free, &ta};
	kiln_arena *a = kiln_arena_create(&al);
	assert_null(kiln_arena_alloc(a, SIZE_MAX));
	assert_non_null(kiln_arena_alloc(a, 100)); /* now a head chunk exists */
	static const size_t huge[] = {SIZE_MAX, SIZE_MAX - 10, SIZE_MAX - 63, SIZE_MAX - 200,
	                              SIZE_MAX / 2, (size_t)1 << 41};
	for (size_t i = 0; i < sizeof huge / sizeof *huge; i++)
		if (kiln_arena_alloc(a, huge[i]))
			fail_msg("kiln_arena_alloc(%zu) did not fail", huge[i]);
	assert_non_null(kiln_arena_alloc(a, 100));
	kiln_arena_destroy(a);
	assert_int_equal(ta.live, 0);
}

static void test_arena_strings(void **state)
{
	(void)state;
	kiln_arena *a = kiln_arena_create(NULL);
	char *s = kiln_arena_strdup(a, "hello");
	assert_string_equal(s, "hello");
	char *t = kiln_arena_strndup(a, "hello world", 5);
	assert_string_equal(t, "hello");
	assert_ptr_not_equal(s, t);
	int v[3] = {1, 2, 3};
	int *m = kiln_arena_memdup(a, v, sizeof v);
	assert_memory_equal(m, v, sizeof v);
	assert_non_null(kiln_arena_memdup(a, NULL, 0));
	kiln_arena_destroy(a);
	kiln_arena_destroy(NULL);
}

static void test_arena_oom(void **state)
{
	(void)state;
	test_alloc ta = {.fail_at = 1};
	kiln_allocator al = {ta_alloc, ta_free, &ta};
	assert_null(kiln_arena_create(&al));
	ta = (test_alloc){.fail_at = 2};
	kiln_arena *a = kiln_arena_create(&al);
	assert_non_null(a);
	assert_null(kiln_arena_alloc(a, 10)); /* the first chunk fails */
	assert_non_null(kiln_arena_alloc(a, 10));
	ta.fail_at = ta.calls + 1;
	assert_null(kiln_arena_alloc(a, 1 << 20)); /* a dedicated chunk fails */
	assert_non_null(kiln_arena_alloc(a, 10));  /* the head chunk still serves */
	kiln_arena_destroy(a);
	assert_int_equal(ta.live, 0);
}

/* ---- builder ---- */

static kiln_type f32_type(int rank, const int64_t *dims)
{
	kiln_type t = {.dtype = KILN_DT_F32, .rank = rank};
	for (int i = 0; i < rank; i++)
		t.dims[i] = dims[i];
	return t;
}

static void test_builder_names(void **state)
{
	(void)state;
	kiln_graph *g = kiln_graph_create(NULL, NULL);
	assert_string_equal(g->name, "graph");
	kiln_type t = f32_type(1, (int64_t[]){4});
	kiln_value *x = kiln_graph_add_input(g, NULL, &t);
	assert_string_equal(x->name, "v0");
	assert_int_equal(x->id, 0);
	assert_int_equal(x->kind, KILN_VALUE_INPUT);
	kiln_value *c = kiln_graph_add_const(g, "c", &t, NULL);
	assert_int_equal(c->kind, KILN_VALUE_CONST);
	assert_memory_equal(c->data, (float[4]){0}, 16);
	kiln_value *ins[] = {x, c};
	kiln_node *n0 = kiln_graph_add_node(g, KILN_OP_ADD, NULL, ins, 2, NULL, 1);
	assert_string_equal(n0->name, "node_0");
	assert_string_equal(n0->outputs[0]->name, "v2");
	assert_ptr_equal(n0->outputs[0]->producer, n0);
	assert_int_equal(n0->outputs[0]->index, 0);
	assert_int_equal(n0->outputs[0]->kind, KILN_VALUE_NODE);
	const char *names[] = {"y", NULL};
	kiln_node *n1 = kiln_graph_add_node(g, KILN_OP_DROPOUT, "drop", ins, 1, names, 2);
	assert_int_equal(n1->id, 1);
	assert_string_equal(n1->outputs[0]->name, "y");
	assert_string_equal(n1->outputs[1]->name, "v4");
	assert_int_equal(n1->outputs[1]->index, 1);
	kiln_node *n2 = kiln_graph_add_node(g, KILN_OP_RELU, NULL, &n1->outputs[0], 1, NULL, 1);
	assert_string_equal(n2->name, "node_2");
	assert_ptr_equal(kiln_node_in(n2, 0), n1->outputs[0]);
	assert_null(kiln_node_in(n2, 1));
	assert_int_equal(g->n_values, 6);
	assert_int_equal(g->n_nodes, 3);

	assert_ptr_equal(kiln_graph_find_value(g, "y"), n1->outputs[0]);
	assert_ptr_equal(kiln_graph_find_value(g, "v0"), x);
	assert_null(kiln_graph_find_value(g, "nope"));
	assert_ptr_equal(kiln_graph_find_node(g, "drop"), n1);
	assert_ptr_equal(kiln_graph_find_node(g, "node_2"), n2);
	assert_null(kiln_graph_find_node(g, "y"));

	assert_int_equal(kiln_graph_add_output(g, n2->outputs[0]), KILN_OK);
	assert_int_equal(g->n_outputs, 1);

	/* compaction keeps order; ids stay */
	bool keep[3] = {true, false, true};
	kiln_graph_compact(g, keep);
	assert_int_equal(g->n_nodes, 2);
	assert_ptr_equal(g->nodes[0], n0);
	assert_ptr_equal(g->nodes[1], n2);
	assert_int_equal(g->nodes[1]->id, 2);
	assert_null(kiln_graph_find_node(g, "drop"));
	kiln_node *n3 = kiln_graph_add_node(g, KILN_OP_RELU, NULL, &x, 1, NULL, 1);
	assert_string_equal(n3->name, "node_3");
	kiln_graph_destroy(g);
}

static void test_builder_attrs(void **state)
{
	(void)state;
	kiln_graph *g = kiln_graph_create("g", NULL);
	kiln_type t = f32_type(1, (int64_t[]){2});
	kiln_value *x = kiln_graph_add_input(g, "x", &t);
	kiln_node *n = kiln_graph_add_node(g, KILN_OP_CONV, "conv", &x, 1, NULL, 1);
	assert_int_equal(kiln_node_set_int(g, n, "group", 1), KILN_OK);
	assert_int_equal(kiln_node_set_string(g, n, "auto_pad", "SAME_UPPER"), KILN_OK);
	assert_int_equal(kiln_node_set_ints(g, n, "pads", (int64_t[]){1, 2, 3, 4}, 4), KILN_OK);
	assert_int_equal(kiln_node_set_floats(g, n, "scales", (float[]){0.5f, 2}, 2), KILN_OK);
	assert_int_equal(kiln_node_set_float(g, n, "alpha", 0.25f), KILN_OK);
	float tv[2] = {7, 8};
	kiln_tensor tensor = {t, tv};
	assert_int_equal(kiln_node_set_tensor(g, n, "value", &tensor), KILN_OK);
	assert_int_equal(n->n_attrs, 6);

	/* replacing keeps the slot (and so the printing order) */
	assert_int_equal(kiln_node_set_int(g, n, "group", 4), KILN_OK);
	assert_int_equal(n->n_attrs, 6);
	assert_string_equal(n->attrs[0].name, "group");
	assert_int_equal(kiln_node_int(n, "group", -1), 4);
	assert_int_equal(kiln_node_set_float(g, n, "group", 1.5f), KILN_OK); /* kind changes */
	assert_int_equal(n->attrs[0].kind, KILN_ATTR_FLOAT);
	assert_int_equal(kiln_node_int(n, "group", -1), -1);
	assert_float_equal(kiln_node_float(n, "group", 0), 1.5, 0);

	/* getters with defaults: absent, or of another kind */
	assert_int_equal(kiln_node_int(n, "missing", 42), 42);
	assert_int_equal(kiln_node_int(n, "auto_pad", 42), 42);
	assert_float_equal(kiln_node_float(n, "missing", 9.5f), 9.5, 0);
	assert_float_equal(kiln_node_float(n, "alpha", 0), 0.25, 0);
	assert_string_equal(kiln_node_string(n, "auto_pad", "NOTSET"), "SAME_UPPER");
	assert_string_equal(kiln_node_string(n, "missing", "NOTSET"), "NOTSET");
	assert_null(kiln_node_string(n, "pads", NULL));
	const int64_t *iv = (const int64_t *)1;
	assert_int_equal(kiln_node_ints(n, "pads", &iv), 4);
	assert_int_equal(iv[3], 4);
	assert_int_equal(kiln_node_ints(n, "missing", &iv), 0);
	assert_null(iv);
	const float *fv;
	assert_int_equal(kiln_node_floats(n, "scales", &fv), 2);
	assert_float_equal(fv[1], 2.0, 0);
	assert_int_equal(kiln_node_floats(n, "pads", &fv), 0);
	assert_null(fv);
	const kiln_tensor *tt = kiln_node_tensor(n, "value");
	assert_non_null(tt);
	assert_ptr_not_equal(tt->data, tv); /* copied */
	assert_float_equal(((float *)tt->data)[1], 8.0, 0);
	assert_null(kiln_node_tensor(n, "alpha"));
	assert_null(kiln_node_attr(n, "missing"));
	assert_int_equal(kiln_node_attr(n, "pads")->n, 4);

	/* setters copy their arguments */
	int64_t k[2] = {3, 3};
	kiln_node_set_ints(g, n, "kernel_shape", k, 2);
	k[0] = 99;
	assert_int_equal(kiln_node_ints(n, "kernel_shape", &iv), 2);
	assert_int_equal(iv[0], 3);
	kiln_graph_destroy(g);
}

static void test_builder_make_const(void **state)
{
	(void)state;
	kiln_graph *g = kiln_graph_create("g", NULL);
	kiln_type t = f32_type(2, (int64_t[]){1, 3});
	kiln_value *x = kiln_graph_add_input(g, "x", &t);
	kiln_node *n = kiln_graph_add_node(g, KILN_OP_RELU, "r", &x, 1, NULL, 1);
	kiln_value *y = n->outputs[0];
	y->type = t;
	float data[3] = {1, 2, 3};
	assert_int_equal(kiln_value_make_const(g, y, data), KILN_OK);
	data[0] = 100;
	assert_int_equal(y->kind, KILN_VALUE_CONST);
	assert_null(y->producer);
	assert_float_equal(((float *)y->data)[0], 1.0, 0);
	assert_float_equal(kiln_const_get_f64(y, 2), 3.0, 0);
	assert_int_equal(kiln_const_get_i64(y, 1), 2);

	/* element access across dtypes */
	kiln_type ti = {.dtype = KILN_DT_I8, .rank = 1, .dims = {2}};
	kiln_value *c8 = kiln_graph_add_const(g, "c8", &ti, (int8_t[]){-5, 7});
	assert_int_equal(kiln_const_get_i64(c8, 0), -5);
	assert_float_equal(kiln_const_get_f64(c8, 1), 7.0, 0);
	kiln_type th = {.dtype = KILN_DT_F16, .rank = 1, .dims = {1}};
	kiln_value *ch = kiln_graph_add_const(g, "ch", &th, (uint16_t[]){0xc100}); /* -2.5 */
	assert_float_equal(kiln_const_get_f64(ch, 0), -2.5, 0);
	assert_int_equal(kiln_const_get_i64(ch, 0), -2);
	kiln_type tb = {.dtype = KILN_DT_BOOL, .rank = 1, .dims = {1}};
	kiln_value *cb = kiln_graph_add_const(g, "cb", &tb, (uint8_t[]){1});
	assert_int_equal(kiln_const_get_i64(cb, 0), 1);
	kiln_type tl = {.dtype = KILN_DT_I64, .rank = 1, .dims = {1}};
	kiln_value *cl = kiln_graph_add_const(g, "cl", &tl, (int64_t[]){INT64_MIN});
	assert_true(kiln_const_get_i64(cl, 0) == INT64_MIN);
	kiln_graph_destroy(g);
}

static void test_op_table(void **state)
{
	(void)state;
	kiln_op op;
	assert_true(kiln_op_lookup("Conv", &op));
	assert_int_equal(op, KILN_OP_CONV);
	assert_true(kiln_op_lookup("DequantizeLinear", &op));
	assert_int_equal(op, KILN_OP_DEQUANTIZE_LINEAR);
	assert_false(kiln_op_lookup("conv", &op));
	assert_false(kiln_op_lookup("", &op));
	assert_string_equal(kiln_op_name(KILN_OP_MATMUL), "MatMul");
	assert_string_equal(kiln_op_name(KILN_OP_COUNT), "?");
	assert_null(kiln_op_get(KILN_OP_COUNT));
	const kiln_op_info *info = kiln_op_get(KILN_OP_SPLIT);
	assert_int_equal(info->in_min, 1);
	assert_int_equal(info->out_max, -1);
	for (int i = 0; i < KILN_OP_COUNT; i++) {
		assert_true(kiln_op_lookup(kiln_op_name((kiln_op)i), &op));
		assert_int_equal(op, i);
	}
}

/* ---- dtypes and half floats ---- */

/* TensorProto.DataType codes, from the ONNX spec. */
static void test_dtype_onnx_codes(void **state)
{
	static const struct {
		int32_t code;
		kiln_dtype dt;
	} known[] = {
		{1, KILN_DT_F32}, {2, KILN_DT_U8},   {3, KILN_DT_I8},   {6, KILN_DT_I32},  {7, KILN_DT_I64},
		{9, KILN_DT_BOOL}, {10, KILN_DT_F16}, {11, KILN_DT_F64}, {16, KILN_DT_BF16},
	};
	for (size_t i = 0; i < sizeof known / sizeof *known; i++) {
		kiln_dtype dt = KILN_DTYPE_COUNT;
		assert_true(kiln_dtype_from_onnx(known[i].code, &dt));
		assert_int_equal(dt, known[i].dt);
		assert_int_equal(kiln_dtype_to_onnx(known[i].dt), known[i].code);
	}
	/* UNDEFINED, UINT16, INT16, STRING, UINT32, UINT64, COMPLEX64, FLOAT8E4M3FN */
	static const int64_t unknown[] = {0, 4, 5, 8, 12, 13, 14, 17, -1, 1000};
	for (size_t i = 0; i < sizeof unknown / sizeof *unknown; i++) {
		kiln_dtype dt = KILN_DT_F32;
		assert_false(kiln_dtype_from_onnx(unknown[i], &dt));
	}
	(void)state;
}

static void test_dtypes(void **state)
{
	(void)state;
	static const struct {
		kiln_dtype dt;
		const char *name;
		size_t size;
		bool is_float, is_int;
	} want[] = {
		{KILN_DT_F32, "f32", 4, true, false},   {KILN_DT_F16, "f16", 2, true, false},
		{KILN_DT_BF16, "bf16", 2, true, false}, {KILN_DT_F64, "f64", 8, true, false},
		{KILN_DT_I64, "i64", 8, false, true},   {KILN_DT_I32, "i32", 4, false, true},
		{KILN_DT_I8, "i8", 1, false, true},     {KILN_DT_U8, "u8", 1, false, true},
		{KILN_DT_BOOL, "bool", 1, false, false},
	};
	_Static_assert(sizeof want / sizeof *want == KILN_DTYPE_COUNT, "every dtype");
	for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
		assert_string_equal(kiln_dtype_name(want[i].dt), want[i].name);
		assert_int_equal(kiln_dtype_size(want[i].dt), want[i].size);
		assert_int_equal(kiln_dtype_is_float(want[i].dt), want[i].is_float);
		assert_int_equal(kiln_dtype_is_int(want[i].dt), want[i].is_int);
		kiln_dtype dt = KILN_DTYPE_COUNT;
		assert_true(kiln_dtype_parse(want[i].name, &dt));
		assert_int_equal(dt, want[i].dt);
	}
	kiln_dtype dt;
	assert_false(kiln_dtype_parse("F32", &dt));
	assert_false(kiln_dtype_parse("f128", &dt));
	assert_false(kiln_dtype_parse("", &dt));
	assert_string_equal(kiln_dtype_name(KILN_DTYPE_COUNT), "?");
	assert_int_equal(kiln_dtype_size(KILN_DTYPE_COUNT), 0);
}

static void test_types(void **state)
{
	(void)state;
	char buf[64];
	kiln_type t = {.dtype = KILN_DT_F32, .rank = 4, .dims = {1, 3, 224, 224}};
	assert_string_equal(kiln_type_str(&t, buf, sizeof buf), "f32[1,3,224,224]");
	assert_int_equal(kiln_type_numel(&t), 150528);
	assert_int_equal(kiln_type_bytes(&t), 602112);
	kiln_type s = {.dtype = KILN_DT_I64, .rank = 0};
	assert_string_equal(kiln_type_str(&s, buf, sizeof buf), "i64[]");
	assert_int_equal(kiln_type_numel(&s), 1);
	assert_int_equal(kiln_type_bytes(&s), 8);
	kiln_type e = {.dtype = KILN_DT_BOOL, .rank = 2, .dims = {0, 5}};
	assert_string_equal(kiln_type_str(&e, buf, sizeof buf), "bool[0,5]");
	assert_int_equal(kiln_type_numel(&e), 0);
	/* a short buffer truncates but stays terminated */
	assert_string_equal(kiln_type_str(&t, buf, 8), "f32[1,3");
	assert_string_equal(kiln_type_str(&t, buf, 3), "f3");

	kiln_type u = t;
	assert_true(kiln_type_equal(&t, &u));
	u.dims[3] = 225;
	assert_false(kiln_type_equal(&t, &u));
	u = t;
	u.dtype = KILN_DT_F16;
	assert_false(kiln_type_equal(&t, &u));
	u = t;
	u.rank = 3;
	assert_false(kiln_type_equal(&t, &u));
}

static void test_f16(void **state)
{
	(void)state;
	static const struct {
		uint32_t f32;
		uint16_t f16;
	} to16[] = {
		{0x3f800000, 0x3c00}, /* 1 */
		{0xc0000000, 0xc000}, /* -2 */
		{0x00000000, 0x0000}, {0x80000000, 0x8000}, /* +-0 */
		{0x477fe000, 0x7bff}, /* 65504, largest finite */
		{0x477fefff, 0x7bff}, /* just below the halfway point to 65536 */
		{0x477ff000, 0x7c00}, /* 65520: tie, rounds to even = inf */
		{0x47800000, 0x7c00}, /* 65536 overflows */
		{0x7f800000, 0x7c00}, {0xff800000, 0xfc00}, /* +-inf */
		{0x7fc00000, 0x7e00}, /* quiet nan */
		{0x38800000, 0x0400}, /* 2^-14, smallest normal */
		{0x387fc000, 0x03ff}, /* largest subnormal */
		{0x33800000, 0x0001}, /* 2^-24, smallest subnormal */
		{0x33000000, 0x0000}, /* 2^-25: tie, rounds to even = 0 */
		{0x33000001, 0x0001}, /* just above the tie */
		{0x33c00000, 0x0002}, /* 3 * 2^-25: tie between 1 and 2 -> 2 */
		{0x32000000, 0x0000}, /* 2^-27 underflows */
		{0x00000001, 0x0000}, /* f32 subnormal underflows */
		{0xb3800000, 0x8001}, /* -2^-24 */
		{0x3f801000, 0x3c00}, /* 1 + 2^-11: tie, to even 0x3c00 */
		{0x3f803000, 0x3c02}, /* 1 + 3 * 2^-11: tie, to even 0x3c02 */
		{0x3f801001, 0x3c01}, /* above the tie */
		{0x3eaaaaab, 0x3555}, /* 1/3 */
		{0x387fe000, 0x0400}, /* rounds up out of the subnormals */
	};
	for (size_t i = 0; i < sizeof to16 / sizeof *to16; i++) {
		uint16_t h = kiln_f32_to_f16(bits_f32(to16[i].f32));
		if (h != to16[i].f16)
			fail_msg("f32 0x%08x -> f16 0x%04x, want 0x%04x", to16[i].f32, h, to16[i].f16);
	}
	/* a nan never becomes inf */
	uint16_t sn = kiln_f32_to_f16(bits_f32(0x7f800001));
	assert_int_equal(sn & 0x7c00, 0x7c00);
	assert_int_not_equal(sn & 0x3ff, 0);

	static const struct {
		uint16_t f16;
		uint32_t f32;
	} to32[] = {
		{0x3c00, 0x3f800000}, {0xc000, 0xc0000000}, {0x8000, 0x80000000},
		{0x7bff, 0x477fe000}, {0x0001, 0x33800000}, {0x03ff, 0x387fc000},
		{0x8001, 0xb3800000}, {0x0400, 0x38800000}, {0x3555, 0x3eaaa000},
		{0x7c00, 0x7f800000}, {0xfc00, 0xff800000}, {0x7e00, 0x7fc00000},
	};
	for (size_t i = 0; i < sizeof to32 / sizeof *to32; i++) {
		uint32_t u = f32_bits(kiln_f16_to_f32(to32[i].f16));
		if (u != to32[i].f32)
			fail_msg("f16 0x%04x -> f32 0x%08x, want 0x%08x", to32[i].f16, u, to32[i].f32);
	}
	/* every non-nan half survives a round trip through f32 */
	for (uint32_t h = 0; h < 0x10000; h++) {
		if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff))
			continue;
		uint16_t back = kiln_f32_to_f16(kiln_f16_to_f32((uint16_t)h));
		if (back != h)
			fail_msg("f16 0x%04x round-trips to 0x%04x", h, back);
	}
}

static void test_bf16(void **state)
{
	(void)state;
	static const struct {
		uint32_t f32;
		uint16_t bf16;
	} to16[] = {
		{0x3f800000, 0x3f80}, {0xbf800000, 0xbf80}, {0x80000000, 0x8000},
		{0x3f808000, 0x3f80}, /* tie, to even */
		{0x3f818000, 0x3f82}, /* tie, to even (up) */
		{0x3f808001, 0x3f81}, {0x3f807fff, 0x3f80},
		{0x7f7fffff, 0x7f80}, /* FLT_MAX rounds to inf */
		{0x7f7f0000, 0x7f7f},
		{0x7f800000, 0x7f80}, {0xff800000, 0xff80},
		{0x7fc00000, 0x7fc0}, {0x7f800001, 0x7fc0}, /* nan stays nan, quiet */
		{0x00000001, 0x0000}, {0x00008000, 0x0000}, {0x00018000, 0x0002}, /* subnormals */
		{0x00010000, 0x0001},
	};
	for (size_t i = 0; i < sizeof to16 / sizeof *to16; i++) {
		uint16_t h = kiln_f32_to_bf16(bits_f32(to16[i].f32));
		if (h != to16[i].bf16)
			fail_msg("f32 0x%08x -> bf16 0x%04x, want 0x%04x", to16[i].f32, h, to16[i].bf16);
	}
	assert_int_equal(f32_bits(kiln_bf16_to_f32(0x3f80)), 0x3f800000);
	assert_int_equal(f32_bits(kiln_bf16_to_f32(0x0001)), 0x00010000);
	assert_int_equal(f32_bits(kiln_bf16_to_f32(0xff80)), 0xff800000);
	assert_true(isnan(kiln_bf16_to_f32(0x7fc1)));
	for (uint32_t h = 0; h < 0x10000; h++) {
		if ((h & 0x7f80) == 0x7f80 && (h & 0x7f))
			continue;
		assert_int_equal(kiln_f32_to_bf16(kiln_bf16_to_f32((uint16_t)h)), h);
	}
}

/* ---- status and diagnostics ---- */

static void test_status_str(void **state)
{
	(void)state;
	static const char *const want[] = {
		[KILN_OK] = "ok",
		[KILN_ERR_INVALID_MODEL] = "invalid model",
		[KILN_ERR_UNSUPPORTED] = "unsupported",
		[KILN_ERR_SHAPE] = "shape or type mismatch",
		[KILN_ERR_OOM] = "out of memory",
		[KILN_ERR_IO] = "I/O error",
		[KILN_ERR_INVALID_ARG] = "invalid argument",
		[KILN_ERR_PARSE] = "parse error",
		[KILN_ERR_VERIFY] = "IR verification failed",
		[KILN_ERR_INTERNAL] = "internal error",
	};
	_Static_assert(sizeof want / sizeof *want == KILN_STATUS_COUNT, "every status");
	for (int s = 0; s < KILN_STATUS_COUNT; s++)
		assert_string_equal(kiln_status_str((kiln_status)s), want[s]);
	assert_string_equal(kiln_status_str(KILN_STATUS_COUNT), "unknown status");
	assert_string_equal(kiln_status_str((kiln_status)-1), "unknown status");
}

typedef struct sink {
	int calls;
	char msg[1024];
} sink;

static void sink_fn(void *user, const char *msg)
{
	sink *s = user;
	s->calls++;
	snprintf(s->msg, sizeof s->msg, "%s", msg);
}

static kiln_status ensure_positive(kiln_diag *d, int v)
{
	KILN_ENSURE(d, v > 0, KILN_ERR_INVALID_ARG, NULL, "value %d is not positive", v);
	return KILN_OK;
}

static kiln_status try_twice(kiln_diag *d, int a, int b, int *reached)
{
	KILN_TRY(ensure_positive(d, a));
	*reached = 1;
	KILN_TRY(ensure_positive(d, b));
	*reached = 2;
	return KILN_OK;
}

static void test_diag(void **state)
{
	(void)state;
	kiln_graph *g = kiln_graph_create("g", NULL);
	kiln_type t = f32_type(1, (int64_t[]){1});
	kiln_value *x = kiln_graph_add_input(g, "x", &t);
	kiln_node *n = kiln_graph_add_node(g, KILN_OP_CONV, "conv_3", &x, 1, NULL, 1);

	sink s = {0};
	kiln_diag d;
	kiln_diag_init(&d, "model.onnx");
	assert_non_null(d.fn); /* stderr by default */
	d.fn = sink_fn;
	d.user = &s;
	assert_int_equal(kiln_diag_error(&d, KILN_ERR_SHAPE, n, "input %d has rank %d, expected 4", 1, 3),
	                 KILN_ERR_SHAPE);
	assert_string_equal(s.msg, "model.onnx: node 'conv_3' (Conv): input 1 has rank 3, expected 4");
	assert_string_equal(d.last, s.msg);
	assert_int_equal(d.n_errors, 1);
	assert_int_equal(s.calls, 1);

	kiln_diag_error(&d, KILN_ERR_IO, NULL, "cannot open");
	assert_string_equal(d.last, "model.onnx: cannot open");
	d.file = NULL;
	kiln_diag_error(&d, KILN_ERR_SHAPE, n, "bad");
	assert_string_equal(d.last, "node 'conv_3' (Conv): bad");
	kiln_diag_error(&d, KILN_ERR_SHAPE, NULL, "plain");
	assert_string_equal(d.last, "plain");
	assert_int_equal(d.n_errors, 4);

	/* notes do not count as errors */
	d.file = "f.kir";
	kiln_diag_note(&d, "note %s", "here");
	assert_string_equal(d.last, "f.kir: note here");
	assert_int_equal(d.n_errors, 4);
	assert_int_equal(s.calls, 5);

	/* a sink-less diag still keeps the last message */
	d.fn = NULL;
	kiln_diag_error(&d, KILN_ERR_INTERNAL, NULL, "quiet");
	assert_string_equal(d.last, "f.kir: quiet");
	assert_int_equal(s.calls, 5);

	/* a NULL diag is allowed and still returns the status */
	assert_int_equal(kiln_diag_error(NULL, KILN_ERR_OOM, NULL, "x"), KILN_ERR_OOM);
	kiln_diag_note(NULL, "x");

	/* very long messages are truncated, not overflowed */
	char longs[3000];
	memset(longs, 'a', sizeof longs - 1);
	longs[sizeof longs - 1] = 0;
	kiln_diag_error(&d, KILN_ERR_INTERNAL, n, "%s", longs);
	assert_int_equal(strlen(d.last), sizeof d.last - 1);

	/* KILN_ENSURE / KILN_TRY */
	int reached = 0;
	d.file = NULL;
	assert_int_equal(try_twice(&d, 1, -2, &reached), KILN_ERR_INVALID_ARG);
	assert_int_equal(reached, 1);
	assert_string_equal(d.last, "value -2 is not positive");
	assert_int_equal(try_twice(&d, 1, 2, &reached), KILN_OK);
	assert_int_equal(reached, 2);
	kiln_graph_destroy(g);
}

/* ---- allocation failures ---- */

/* Builds a graph that needs several arena chunks (big constants get their
 * own), with every attribute kind. */
static kiln_status build_small(const kiln_allocator *al)
{
	kiln_graph *g = kiln_graph_create("oom", al);
	if (!g)
		return KILN_ERR_OOM;
	kiln_status s = KILN_ERR_OOM;
	kiln_type t = f32_type(2, (int64_t[]){1, 8});
	kiln_type big = f32_type(2, (int64_t[]){64, 100});
	kiln_value *x = kiln_graph_add_input(g, "x", &t);
	if (!x)
		goto out;
	for (int i = 0; i < 40; i++) {
		kiln_value *w = kiln_graph_add_const(g, NULL, i % 8 ? &t : &big, NULL);
		if (!w)
			goto out;
		kiln_value *ins[] = {x, w};
		kiln_node *n = kiln_graph_add_node(g, KILN_OP_ADD, NULL, ins, 2, NULL, 1);
		if (!n)
			goto out;
		float fv[3] = {1, 2, 3};
		kiln_tensor tv = {t, (float[8]){0}};
		if (kiln_node_set_int(g, n, "i", i) || kiln_node_set_float(g, n, "f", 0.5f) ||
		    kiln_node_set_string(g, n, "s", "a string attribute") ||
		    kiln_node_set_ints(g, n, "is", (int64_t[]){1, 2}, 2) ||
		    kiln_node_set_floats(g, n, "fs", fv, 3) || kiln_node_set_tensor(g, n, "t", &tv))
			goto out;
		x = n->outputs[0];
		x->type = t;
	}
	if (kiln_graph_add_output(g, x) != KILN_OK)
		goto out;
	s = g->n_nodes == 40 ? KILN_OK : KILN_ERR_INTERNAL;
out:
	kiln_graph_destroy(g);
	return s;
}

static void test_alloc_failures(void **state)
{
	(void)state;
	int n;
	for (n = 1; n < 10000; n++) {
		test_alloc ta = {.fail_at = n};
		kiln_allocator al = {ta_alloc, ta_free, &ta};
		kiln_status s = build_small(&al);
		assert_int_equal(ta.live, 0);
		if (s == KILN_OK) {
			assert_true(ta.calls < n); /* nothing failed */
			break;
		}
		assert_int_equal(s, KILN_ERR_OOM);
		assert_true(ta.calls >= n);
	}
	assert_true(n > 5); /* several distinct failure points were exercised */
	assert_true(n < 10000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_arena_alignment_and_zeroing),
		cmocka_unit_test(test_arena_strings),
		cmocka_unit_test(test_arena_oom),
		cmocka_unit_test(test_builder_names),
		cmocka_unit_test(test_builder_attrs),
		cmocka_unit_test(test_builder_make_const),
		cmocka_unit_test(test_op_table),
		cmocka_unit_test(test_dtypes),
		cmocka_unit_test(test_dtype_onnx_codes),
		cmocka_unit_test(test_types),
		cmocka_unit_test(test_f16),
		cmocka_unit_test(test_bf16),
		cmocka_unit_test(test_status_str),
		cmocka_unit_test(test_diag),
		cmocka_unit_test(test_alloc_failures),
		cmocka_unit_test(test_arena_huge_sizes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
