/* test_kk_elementwise.c — the elementwise lowering and kernels
 * (codegen/cpu/lower_elementwise.c, kernels/kk_elementwise.c) against the
 * interpreter, and the accuracy of kernels/kk_math.h against double libm.
 *
 * Each case is a one-node graph; kh_check fills its graph inputs with random
 * data, runs the lowering and the native kernel, and compares with the
 * interpreter (f32: rtol 1e-5, atol 1e-6; everything else exactly, since
 * the kernels' scalar paths follow the interpreter's arithmetic). Cases whose
 * dtype shape inference rejects are skipped, so every op runs in every dtype
 * the IR allows for it; each test counts what it checked. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "interp.h"
#include "kharness.h"
#include "kk_math.h"


static const kiln_dtype all_dtypes[] = {KILN_DT_F32, KILN_DT_F16, KILN_DT_BF16,
                                        KILN_DT_F64, KILN_DT_I64, KILN_DT_I32,
                                        KILN_DT_I8,  KILN_DT_U8,  KILN_DT_BOOL};
#define N_DTYPES 9

/* A constant of dtype dt holding vals (converted like the interpreter). */
static kiln_value *cnst(kiln_graph *g, kiln_dtype dt, const double *vals, int64_t count)
{
	kiln_type t = kh_type(dt, 1, (int64_t[]){count});
	kiln_tensor tmp = {.type = t, .data = calloc((size_t)count, 8)};
	assert_non_null(tmp.data);
	for (int64_t i = 0; i < count; i++)
		kiln_tensor_set_f64(&tmp, i, vals[i]);
	kiln_value *v = kiln_graph_add_const(g, NULL, &t, tmp.data);
	free(tmp.data);
	assert_non_null(v);
	return v;
}

static kiln_value *scalar_const(kiln_graph *g, kiln_dtype dt, double v)
{
	kiln_type t = kh_type(dt, 0, NULL);
	kiln_tensor tmp = {.type = t, .data = calloc(1, 8)};
	assert_non_null(tmp.data);
	kiln_tensor_set_f64(&tmp, 0, v);
	kiln_value *c = kiln_graph_add_const(g, NULL, &t, tmp.data);
	free(tmp.data);
	return c;
}

/* Types the graph; false (graph destroyed) when shape inference rejects it. */
static bool finish(kiln_graph *g, kiln_node *n)
{
	kiln_diag d;
	kiln_diag_init(&d, NULL);
	d.fn = NULL;
	if (kiln_infer_shapes(g, &d) != KILN_OK) {
		kiln_graph_destroy(g);
		return false;
	}
	assert_int_equal(kiln_graph_add_output(g, n->outputs[0]), KILN_OK);
	assert_int_equal(kiln_graph_verify(g, &d), KILN_OK);
	return true;
}

static void check(kiln_graph *g, int threads, double lo, double hi)
{
	kh_opts o = kh_defaults();
	o.threads = threads;
	o.lo = lo;
	o.hi = hi;
	kh_check(g, &o);
	kiln_graph_destroy(g);
}

static const int64_t sizes[] = {1, 3, 15, 17, 33, 1000};
#define N_SIZES 6

/* ---- unary ------------------------------------------------------------- */

static const kiln_op unary_ops[] = {
	KILN_OP_RELU, KILN_OP_LEAKY_RELU, KILN_OP_SIGMOID,    KILN_OP_TANH, KILN_OP_CLIP,
	KILN_OP_HARD_SIGMOID, KILN_OP_HARD_SWISH, KILN_OP_GELU, KILN_OP_ERF, KILN_OP_SQRT,
	KILN_OP_EXP,  KILN_OP_LOG, KILN_OP_NEG, KILN_OP_ABS, KILN_OP_RECIPROCAL, KILN_OP_NOT,
};
#define N_UNARY (int)(sizeof unary_ops / sizeof *unary_ops)

/* variant: 0 default attributes, 1 non-default (Gelu: tanh form). */
static void set_unary_attrs(kiln_graph *g, kiln_node *n, int variant)
{
	if (!variant)
		return;
	if (n->op == KILN_OP_LEAKY_RELU)
		kiln_node_set_float(g, n, "alpha", 0.3f);
	if (n->op == KILN_OP_HARD_SIGMOID) {
		kiln_node_set_float(g, n, "alpha", 0.35f);
		kiln_node_set_float(g, n, "beta", 0.4f);
	}
	if (n->op == KILN_OP_GELU)
		kiln_node_set_string(g, n, "approximate", "tanh");
}

static bool positive_only(kiln_op op)
{
	return op == KILN_OP_LOG || op == KILN_OP_SQRT;
}

static void test_unary_f32(void **state)
{
	(void)state;
	int checked = 0;
	for (int o = 0; o < N_UNARY; o++)
		for (int s = 0; s < N_SIZES; s++)
			for (int threads = 1; threads <= 3; threads += 2)
				for (int variant = 0; variant < 2; variant++) {
					kiln_graph *g = kiln_graph_create("t", NULL);
					kiln_value *x = kh_input(g, KILN_DT_F32, 1, &sizes[s]);
					kiln_node *n = kh_node(g, unary_ops[o], &x, 1, 1);
					set_unary_attrs(g, n, variant);
					if (!finish(g, n))
						continue;
					bool pos = positive_only(unary_ops[o]);
					check(g, threads, pos ? 0.01 : -6, pos ? 9 : 6);
					checked++;
				}
	assert_true(checked >= (N_UNARY - 1) * N_SIZES * 4);
}

static void test_unary_dtypes(void **state)
{
	(void)state;
	int checked = 0;
	for (int o = 0; o < N_UNARY; o++)
		for (int k = 0; k < N_DTYPES; k++)
			for (int variant = 0; variant < 2; variant++) {
				kiln_graph *g = kiln_graph_create("t", NULL);
				kiln_value *x = kh_input(g, all_dtypes[k], 2, DIMS(3, 11));
				kiln_node *n = kh_node(g, unary_ops[o], &x, 1, 1);
				set_unary_attrs(g, n, variant);
				if (!finish(g, n))
					continue;
				bool pos = positive_only(unary_ops[o]);
				check(g, 3, pos ? 0.01 : -9, pos ? 9 : 9);
				checked++;
			}
	print_message("unary op/dtype cases: %d\n", checked);
	assert_true(checked >= 60);
}

/* inf, nan, -0.0, subnormals, overflowing and huge arguments. */
static const double specials[] = {
	INFINITY, -INFINITY, NAN, -0.0, 0.0, 1e-40, -1e-40, 1e-30, 1.0, -1.0, 0.5,
	88.5, 88.8, 89.5, -87.0, -88.0, -100.0, -104.0, -110.0, 1e30, -1e30, 3.4e38, -3.4e38,
	9.5, -9.5, 3.9, -3.9, 5.9, -5.9, 12.0, -12.0, 0.62, 0.63, -0.87, 0.88, 4.01, -4.01,
};
#define N_SPECIALS (int64_t)(sizeof specials / sizeof *specials)

static void test_unary_special_values(void **state)
{
	(void)state;
	static const kiln_dtype dts[] = {KILN_DT_F32, KILN_DT_F64, KILN_DT_F16, KILN_DT_BF16};
	for (int o = 0; o < N_UNARY; o++)
		for (int k = 0; k < 4; k++)
			for (int variant = 0; variant < 2; variant++) {
				kiln_graph *g = kiln_graph_create("t", NULL);
				kiln_value *x = cnst(g, dts[k], specials, N_SPECIALS);
				kiln_node *n = kh_node(g, unary_ops[o], &x, 1, 1);
				set_unary_attrs(g, n, variant);
				if (finish(g, n))
					check(g, 1, -1, 1);
			}
}

/* Above KK_EW_PARALLEL_MIN: chunks across the (simulated) pool. */
static void test_unary_large(void **state)
{
	(void)state;
	static const kiln_op ops[] = {KILN_OP_SIGMOID, KILN_OP_RELU, KILN_OP_NEG};
	static const kiln_dtype dts[] = {KILN_DT_F32, KILN_DT_F16, KILN_DT_I32};
	for (int o = 0; o < 3; o++)
		for (int k = 0; k < 3; k++)
			for (int threads = 1; threads <= 3; threads += 2) {
				kiln_graph *g = kiln_graph_create("t", NULL);
				kiln_value *x = kh_input(g, dts[k], 2, DIMS(3, 33339));
				kiln_node *n = kh_node(g, ops[o], &x, 1, 1);
				if (finish(g, n))
					check(g, threads, -5, 5);
			}
}

static void test_clip(void **state)
{
	(void)state;
	int checked = 0;
	/* bounds: 0 omitted, 1 constant, 2 graph input (random, maybe min > max) */
	for (int k = 0; k < N_DTYPES; k++)
		for (int bmin = 0; bmin < 3; bmin++)
			for (int bmax = 0; bmax < 3; bmax++)
				for (int s = 0; s < N_SIZES; s += 2) {
					kiln_dtype dt = all_dtypes[k];
					kiln_graph *g = kiln_graph_create("t", NULL);
					kiln_value *ins[3] = {kh_input(g, dt, 1, &sizes[s]), NULL, NULL};
					ins[1] = bmin == 1 ? scalar_const(g, dt, -1.5)
					         : bmin == 2 ? kh_input(g, dt, 0, NULL) : NULL;
					ins[2] = bmax == 1 ? cnst(g, dt, (double[]){2.25}, 1)
					         : bmax == 2 ? kh_input(g, dt, 1, DIMS(1)) : NULL;
					int n_in = bmax ? 3 : bmin ? 2 : 1;
					kiln_node *n = kh_node(g, KILN_OP_CLIP, ins, n_in, 1);
					if (!finish(g, n))
						continue;
					check(g, 3, -4, 4);
					checked++;
				}
	assert_true(checked >= 8 * 9 * 3);
}

/* ---- binary ------------------------------------------------------------ */

static const kiln_op binary_ops[] = {KILN_OP_ADD, KILN_OP_SUB, KILN_OP_MUL, KILN_OP_DIV,
                                     KILN_OP_POW, KILN_OP_PRELU, KILN_OP_MIN, KILN_OP_MAX,
                                     KILN_OP_EQUAL, KILN_OP_LESS, KILN_OP_GREATER};
#define N_BINARY (int)(sizeof binary_ops / sizeof *binary_ops)

typedef struct shape_pair {
	int ra;
	int64_t a[5];
	int rb;
	int64_t b[5];
} shape_pair;

static const shape_pair shape_pairs[] = {
	{1, {17}, 1, {17}},
	{1, {1000}, 1, {1000}},
	{2, {4, 33}, 0, {0}},          /* scalar */
	{0, {0}, 2, {4, 33}},
	{0, {0}, 0, {0}},              /* rank 0 */
	{1, {1}, 1, {15}},
	{2, {5, 17}, 1, {17}},         /* row */
	{2, {5, 17}, 2, {1, 17}},
	{2, {5, 17}, 2, {5, 1}},       /* column */
	{2, {1, 3}, 2, {33, 1}},       /* outer product */
	{3, {3, 4, 5}, 3, {3, 1, 5}},  /* middle dim */
	{3, {3, 1, 5}, 2, {4, 1}},
	{5, {2, 1, 3, 1, 5}, 5, {1, 4, 1, 2, 5}}, /* rank 5 both ways */
	{5, {2, 3, 4, 5, 3}, 2, {5, 3}},
	{2, {300, 257}, 1, {257}},     /* large: parallel chunks */
	{3, {2, 300, 129}, 3, {2, 300, 1}},
};
#define N_PAIRS (int)(sizeof shape_pairs / sizeof *shape_pairs)

static bool build_binary(kiln_op op, kiln_dtype da, kiln_dtype db, const shape_pair *p,
                         kiln_graph **out)
{
	kiln_graph *g = kiln_graph_create("t", NULL);
	kiln_value *ins[2] = {kh_input(g, da, p->ra, p->a), kh_input(g, db, p->rb, p->b)};
	kiln_node *n = kh_node(g, op, ins, 2, 1);
	if (!finish(g, n))
		return false;
	*out = g;
	return true;
}

static void binary_range(kiln_op op, kiln_dtype dt, double *lo, double *hi)
{
	*lo = -7;
	*hi = 7;
	if (op == KILN_OP_POW && kiln_dtype_is_float(dt)) {
		*lo = 0.25;
		*hi = 3;
	} else if (op == KILN_OP_POW) {
		*lo = -3;
		*hi = 5;
	}
}

static void test_binary_f32_broadcast(void **state)
{
	(void)state;
	int checked = 0;
	for (int o = 0; o < N_BINARY; o++)
		for (int p = 0; p < N_PAIRS; p++)
			for (int threads = 1; threads <= 3; threads += 2) {
				kiln_graph *g;
				if (!build_binary(binary_ops[o], KILN_DT_F32, KILN_DT_F32, &shape_pairs[p], &g))
					continue;
				double lo, hi;
				binary_range(binary_ops[o], KILN_DT_F32, &lo, &hi);
				check(g, threads, lo, hi);
				checked++;
			}
	print_message("binary f32 cases: %d\n", checked);
	assert_true(checked >= (N_BINARY - 1) * N_PAIRS * 2);
}

static void test_binary_dtypes(void **state)
{
	(void)state;
	static const int pairs[] = {0, 3, 4, 9, 11, 12};
	int checked = 0;
	for (int o = 0; o < N_BINARY; o++)
		for (int k = 0; k < N_DTYPES; k++)
			for (int p = 0; p < 6; p++) {
				kiln_graph *g;
				kiln_dtype dt = all_dtypes[k];
				if (!build_binary(binary_ops[o], dt, dt, &shape_pairs[pairs[p]], &g))
					continue;
				double lo, hi;
				binary_range(binary_ops[o], dt, &lo, &hi);
				check(g, 3, lo, hi);
				checked++;
			}
	print_message("binary op/dtype cases: %d\n", checked);
	assert_true(checked >= 300);
}

/* Pow's exponent may have another dtype than its base. */
static void test_pow_mixed(void **state)
{
	(void)state;
	int checked = 0;
	for (int a = 0; a < N_DTYPES; a++)
		for (int b = 0; b < N_DTYPES; b++) {
			kiln_graph *g;
			if (!build_binary(KILN_OP_POW, all_dtypes[a], all_dtypes[b], &shape_pairs[11], &g))
				continue;
			check(g, 3, -2, 3);
			checked++;
		}
	assert_true(checked >= 20);
}

/* Integer Div by zero and by -1, the most negative value, Pow with negative
 * exponents, NaN in Min/Max and comparisons: constants hold the operands. */
static void test_binary_special_values(void **state)
{
	(void)state;
	static const double a[] = {7, -7, 0, 1, -1, 2, -2, -128, 127, 255, -2147483648.0, NAN,
	                           INFINITY, -0.0, 3, -3};
	static const double b[] = {0, -1, 0, -3, -3, -1, 3, -1, 2, 7, -1, 1, NAN, 0.0, 40, -2};
	int checked = 0;
	for (int o = 0; o < N_BINARY; o++)
		for (int k = 0; k < N_DTYPES; k++) {
			kiln_graph *g = kiln_graph_create("t", NULL);
			kiln_value *ins[2] = {cnst(g, all_dtypes[k], a, 16), cnst(g, all_dtypes[k], b, 16)};
			kiln_node *n = kh_node(g, binary_ops[o], ins, 2, 1);
			if (!finish(g, n))
				continue;
			check(g, 1, -1, 1);
			checked++;
		}
	assert_true(checked >= 50);
}

static void test_variadic(void **state)
{
	(void)state;
	static const int ranks[] = {2, 1, 2, 2};
	static const int64_t shapes[][2] = {{3, 4}, {4}, {1, 4}, {3, 1}};
	int checked = 0;
	for (int op = 0; op < 2; op++)
		for (int k = 0; k < N_DTYPES; k++)
			for (int count = 1; count <= 4; count++)
				for (int first = 0; first < 4; first++) {
					kiln_graph *g = kiln_graph_create("t", NULL);
					kiln_value *ins[4];
					for (int i = 0; i < count; i++) {
						int s = (first + i) % 4;
						ins[i] = kh_input(g, all_dtypes[k], ranks[s], shapes[s]);
					}
					kiln_op mm = op ? KILN_OP_MAX : KILN_OP_MIN;
					kiln_node *n = kh_node(g, mm, ins, count, 1);
					if (!finish(g, n))
						continue;
					check(g, 3, -9, 9);
					checked++;
				}
	assert_true(checked >= 2 * 8 * 16);
	/* NaN in any operand gives NaN */
	kiln_graph *g = kiln_graph_create("t", NULL);
	kiln_value *ins[3] = {cnst(g, KILN_DT_F32, (double[]){1, NAN, 3, -0.0}, 4),
	                      kh_input(g, KILN_DT_F32, 2, DIMS(3, 4)),
	                      cnst(g, KILN_DT_F32, (double[]){NAN, 0, 5, 0}, 4)};
	kiln_node *n = kh_node(g, KILN_OP_MAX, ins, 3, 1);
	assert_true(finish(g, n));
	check(g, 1, -9, 9);
}

/* ---- Where, Not, Cast ---------------------------------------------------- */

static void test_where(void **state)
{
	(void)state;
	static const struct {
		int rc, rx, ry;
		int64_t c[3], x[3], y[3];
	} cases[] = {
		{1, 1, 1, {17}, {17}, {17}},
		{3, 2, 0, {3, 1, 5}, {4, 5}, {0}},
		{0, 2, 2, {0}, {3, 33}, {1, 33}},
		{2, 3, 1, {4, 1}, {2, 4, 3}, {3}},
		{2, 2, 2, {300, 1}, {300, 257}, {1, 257}},
	};
	int checked = 0;
	for (int k = 0; k < N_DTYPES; k++)
		for (int c = 0; c < 5; c++)
			for (int threads = 1; threads <= 3; threads += 2) {
				kiln_graph *g = kiln_graph_create("t", NULL);
				kiln_value *ins[3] = {kh_input(g, KILN_DT_BOOL, cases[c].rc, cases[c].c),
				                      kh_input(g, all_dtypes[k], cases[c].rx, cases[c].x),
				                      kh_input(g, all_dtypes[k], cases[c].ry, cases[c].y)};
				kiln_node *n = kh_node(g, KILN_OP_WHERE, ins, 3, 1);
				assert_true(finish(g, n));
				check(g, threads, -9, 9);
				checked++;
			}
	assert_int_equal(checked, N_DTYPES * 10);
}

static void test_cast_matrix(void **state)
{
	(void)state;
	for (int a = 0; a < N_DTYPES; a++)
		for (int b = 0; b < N_DTYPES; b++)
			for (int s = 0; s < N_SIZES; s++) {
				kiln_graph *g = kiln_graph_create("t", NULL);
				kiln_value *x = kh_input(g, all_dtypes[a], 1, &sizes[s]);
				kiln_node *n = kh_node(g, KILN_OP_CAST, &x, 1, 1);
				kiln_node_set_int(g, n, "to", kiln_dtype_to_onnx(all_dtypes[b]));
				assert_true(finish(g, n));
				/* wide range: integer wrapping, f16 rounding, saturation */
				check(g, 3, -70000, 70000);
			}
}

static void test_cast_special_values(void **state)
{
	(void)state;
	static const double v[] = {
		NAN, INFINITY, -INFINITY, -0.0, 0.0, 1e20, -1e20, 1e19, 9.3e18, -9.3e18, 3e38, -3e38,
		65519.99, 65520.0, 65504.0, 1.5, -1.5, 2.5, -2.5, 0.49999997, 1e-8, -1e-8, 5.9604645e-08,
		2.9802322e-08, 255.5, 256.0, 128.7, -129.3, 2147483647.0, 2147483648.0, -2147483649.0,
		1.00048828125, 1.0009765625, 3.3895313892515355e38, 1.0000000000000002, 16777217.0,
	};
	int count = (int)(sizeof v / sizeof *v);
	for (int a = 0; a < N_DTYPES; a++)
		for (int b = 0; b < N_DTYPES; b++) {
			kiln_graph *g = kiln_graph_create("t", NULL);
			kiln_value *x = cnst(g, all_dtypes[a], v, count);
			kiln_node *n = kh_node(g, KILN_OP_CAST, &x, 1, 1);
			kiln_node_set_int(g, n, "to", kiln_dtype_to_onnx(all_dtypes[b]));
			assert_true(finish(g, n));
			check(g, 1, -1, 1);
		}
	/* large: the parallel path */
	kiln_graph *g = kiln_graph_create("t", NULL);
	kiln_value *x = kh_input(g, KILN_DT_F32, 1, DIMS(70001));
	kiln_node *n = kh_node(g, KILN_OP_CAST, &x, 1, 1);
	kiln_node_set_int(g, n, "to", kiln_dtype_to_onnx(KILN_DT_F16));
	assert_true(finish(g, n));
	check(g, 3, -70000, 70000);
}

/* ---- lowering errors ----------------------------------------------------- */

static void test_lowering_errors(void **state)
{
	(void)state;
	kiln_graph *g = kiln_graph_create("t", NULL);
	kiln_value *x = kh_input(g, KILN_DT_F32, 1, DIMS(4));
	kiln_node *n = kh_node(g, KILN_OP_GELU, &x, 1, 1);
	assert_true(finish(g, n));
	kiln_node_set_string(g, n, "approximate", "fast"); /* after inference checked it */
	char msg[1024];
	kh_opts o = kh_defaults();
	assert_int_equal(kh_run(g, &o, msg, sizeof msg), KILN_ERR_UNSUPPORTED);
	assert_string_equal(msg, "kharness: node 'node_0' (Gelu): approximate 'fast' is not one "
	                         "of 'none', 'tanh'");
	kiln_graph_destroy(g);

	/* a Clip bound that is not a scalar (built past the shape rule) */
	g = kiln_graph_create("t", NULL);
	kiln_value *ins[2] = {kh_input(g, KILN_DT_F32, 1, DIMS(4)), kh_input(g, KILN_DT_F32, 0, NULL)};
	n = kh_node(g, KILN_OP_CLIP, ins, 2, 1);
	assert_true(finish(g, n));
	kiln_type two = kh_type(KILN_DT_F32, 1, DIMS(2));
	ins[1]->type = two;
	assert_int_equal(kh_run(g, &o, msg, sizeof msg), KILN_ERR_SHAPE);
	assert_string_equal(msg, "kharness: node 'node_0' (Clip): min (f32[2]) must be a scalar");
	kiln_graph_destroy(g);
}

/* ---- kk_math.h accuracy ---------------------------------------------------- */

/* |got - ref| in units in the last place of ref rounded to f32. */
static double ulp_err(float got, double ref)
{
	if (isnan(ref))
		return isnan(got) ? 0 : INFINITY;
	if (isinf((float)ref) || isinf(got))
		return got == (float)ref ? 0 : INFINITY;
	int e = -149;
	if (ref != 0)
		frexp(ref, &e);
	e = e - 24 < -149 ? -149 : e - 24;
	return fabs((double)got - ref) / ldexp(1.0, e);
}

typedef kk_vf (*vec_fn)(kk_vf);
typedef double (*ref_fn)(double);

/* Max ulp error of f over xs (count a multiple of KK_VL); *worst gets the x. */
static double sweep(vec_fn f, ref_fn ref, const float *xs, int64_t count, float *worst)
{
	double max = 0;
	for (int64_t i = 0; i < count; i += KK_VL) {
		kk_vf y = f(kk_load(xs + i));
		for (int l = 0; l < KK_VL; l++) {
			double e = ulp_err(y[l], ref(xs[i + l]));
			if (e > max) {
				max = e;
				*worst = xs[i + l];
			}
		}
	}
	return max;
}

static double ref_sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }
static double ref_gelu(double x) { return 0.5 * x * erfc(-x / sqrt(2.0)); }
static double ref_gelu_tanh(double x)
{
	double u = 0.7978845608028654 * (x + 0.044715 * x * x * x);
	return x / (1.0 + exp(-2.0 * u));
}

#define SWEEP_N (1 << 20)

/* SWEEP_N points evenly over [lo, hi], then the specials in range, inf,
 * nan and zeros (padded to KK_VL). */
static int64_t fill_linear(float *xs, double lo, double hi)
{
	int64_t n = 0;
	for (; n < SWEEP_N; n++)
		xs[n] = (float)(lo + (hi - lo) * (double)n / (SWEEP_N - 1));
	for (int i = 0; i < N_SPECIALS; i++)
		if (!isfinite(specials[i]) || specials[i] == 0 ||
		    (specials[i] >= lo && specials[i] <= hi))
			xs[n++] = (float)specials[i];
	while (n % KK_VL)
		xs[n++] = 0.0f;
	return n;
}

/* SWEEP_N bit patterns evenly over [from, to]: every binade. */
static int64_t fill_bits(float *xs, uint32_t from, uint32_t to)
{
	int64_t n = 0;
	for (; n < SWEEP_N; n++) {
		uint32_t u = from + (uint32_t)((uint64_t)(to - from) * (uint64_t)n / (SWEEP_N - 1));
		memcpy(&xs[n], &u, 4);
	}
	return n;
}

static void test_math_ulp(void **state)
{
	(void)state;
	float *xs = malloc((SWEEP_N + 128) * sizeof *xs);
	assert_non_null(xs);
	static const struct {
		const char *name;
		vec_fn f;
		ref_fn ref;
		int bits; /* sweep bit patterns instead of values */
		double lo, hi, bound;
	} cases[] = {
		{"exp", kk_exp, exp, 0, -104, 89, 3},
		{"exp", kk_exp, exp, 0, -1, 1, 3},
		{"log", kk_log, log, 1, 0x00000001, 0x7f800000, 3},
		{"log", kk_log, log, 0, 0.5, 2, 3},
		{"tanh", kk_tanh, tanh, 0, -10, 10, 4},
		{"tanh", kk_tanh, tanh, 1, 0x00000001, 0x41200000, 4},
		{"erf", kk_erf, erf, 0, -5, 5, 3},
		{"erf", kk_erf, erf, 1, 0x00000001, 0x40a00000, 3},
		{"sigmoid", kk_sigmoid, ref_sigmoid, 0, -105, 30, 4},
		{"gelu", kk_gelu, ref_gelu, 0, -3, 10, 8},
		{"gelu", kk_gelu, ref_gelu, 0, -14, 0, 16},
		{"gelu_tanh", kk_gelu_tanh, ref_gelu_tanh, 0, -3, 10, 16},
		/* error ~ |2u| ulp: sigmoid(2u) magnifies the f32 rounding of u */
		{"gelu_tanh", kk_gelu_tanh, ref_gelu_tanh, 0, -10, -3, 512},
	};
	for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
		int64_t n = cases[c].bits ? fill_bits(xs, (uint32_t)cases[c].lo, (uint32_t)cases[c].hi)
		                          : fill_linear(xs, cases[c].lo, cases[c].hi);
		float worst = 0;
		double e = sweep(cases[c].f, cases[c].ref, xs, n, &worst);
		print_message("%-9s %s [%g, %g]: max %.2f ulp at %.9g\n", cases[c].name,
		              cases[c].bits ? "bits" : "values", cases[c].lo, cases[c].hi, e,
		              (double)worst);
		assert_true(e <= cases[c].bound);
	}
	/* -0.0 keeps its sign through the odd functions */
	kk_vf z = -kk_splat(0.0f); /* kk_splat(-0.0f) is +0.0: 0 + -0 */
	assert_true(signbit(kk_tanh(z)[0]) && signbit(kk_erf(z)[0]) && signbit(kk_gelu(z)[0]));
	free(xs);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_unary_f32),
		cmocka_unit_test(test_unary_dtypes),
		cmocka_unit_test(test_unary_special_values),
		cmocka_unit_test(test_unary_large),
		cmocka_unit_test(test_clip),
		cmocka_unit_test(test_binary_f32_broadcast),
		cmocka_unit_test(test_binary_dtypes),
		cmocka_unit_test(test_pow_mixed),
		cmocka_unit_test(test_binary_special_values),
		cmocka_unit_test(test_variadic),
		cmocka_unit_test(test_where),
		cmocka_unit_test(test_cast_matrix),
		cmocka_unit_test(test_cast_special_values),
		cmocka_unit_test(test_lowering_errors),
		cmocka_unit_test(test_math_ulp),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
