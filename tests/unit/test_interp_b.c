/* test_interp_b.c — the elementwise, data-movement and quantisation kernels
 * of the reference interpreter, called directly on hand-built nodes with
 * output types set by hand. Expected values are derived from the ONNX spec
 * (Gelu's from the formulas in double, printed to 9 digits: the ONNX
 * reference computes in f32 and is ~1e-5 relative off at x = -3, where
 * 1 + erf cancels). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "interp.h"

typedef struct fixture {
	kiln_graph *g;
	kiln_diag d;
} fixture;

static int setup(void **state)
{
	static fixture f;
	f.g = kiln_graph_create("t", NULL);
	kiln_diag_init(&f.d, NULL);
	f.d.fn = NULL; /* keep expected errors off stderr; d.last has them */
	*state = &f;
	return f.g ? 0 : -1;
}

static int teardown(void **state)
{
	fixture *f = *state;
	kiln_graph_destroy(f->g);
	return 0;
}

static kiln_tensor tens(kiln_dtype dt, void *data, int rank, ...)
{
	kiln_tensor t = {.type = {.dtype = dt, .rank = rank}, .data = data};
	va_list ap;
	va_start(ap, rank);
	for (int i = 0; i < rank; i++)
		t.type.dims[i] = va_arg(ap, int64_t);
	va_end(ap);
	return t;
}

#define D(x) ((int64_t)(x))

/* A node with n_in omitted inputs (kernels read data from in[], not the
 * graph) and n_out outputs. */
static kiln_node *node(fixture *f, kiln_op op, const char *name, int n_in, int n_out)
{
	kiln_value *ins[8] = {NULL};
	kiln_node *n = kiln_graph_add_node(f->g, op, name, ins, n_in, NULL, n_out);
	assert_non_null(n);
	return n;
}

static void expect_f32(const float *got, const float *want, int count, float tol)
{
	for (int i = 0; i < count; i++) {
		if (isnan(want[i])) {
			assert_true(isnan(got[i]));
			continue;
		}
		assert_float_equal(got[i], want[i], tol);
	}
}

/* ---- elementwise ---- */

static void test_add_broadcast_row(void **state)
{
	fixture *f = *state;
	kiln_node *n = node(f, KILN_OP_ADD, "add", 2, 1);
	float a[] = {1, 2, 3, 4, 5, 6}, b[] = {10, 20, 30}, y[6];
	kiln_tensor in[] = {tens(KILN_DT_F32, a, 2, D(2), D(3)), tens(KILN_DT_F32, b, 1, D(3))};
	kiln_tensor out[] = {tens(KILN_DT_F32, y, 2, D(2), D(3))};
	assert_int_equal(kiln_interp_ADD(n, in, out, &f->d), KILN_OK);
	float want[] = {11, 22, 33, 14, 25, 36};
	expect_f32(y, want, 6, 0);
}

static void test_mul_broadcast_both(void **state)
{
	fixture *f = *state;
	kiln_node *n = node(f, KILN_OP_MUL, "mul", 2, 1);
	float a[] = {1, 2, 3, 4, 5, 6}, b[] = {1, 2, 3, 4}, y[24];
	kiln_tensor in[] = {tens(KILN_DT_F32, a, 3, D(2), D(1), D(3)), tens(KILN_DT_F32, b, 2, D(4), D(1))};
	kiln_tensor out[] = {tens(KILN_DT_F32, y, 3, D(2), D(4), D(3))};
	assert_int_equal(kiln_interp_MUL(n, in, out, &f->d), KILN_OK);
	float want[] = {1, 2, 3, 2, 4, 6, 3, 6, 9, 4, 8, 12,
	                4, 5, 6, 8, 10, 12, 12, 15, 18, 16, 20, 24};
	expect_f32(y, want, 24, 0);
}

static void test_broadcast_mismatch(void **state)
{
	fixture *f = *state;
	kiln_node *n = node(f, KILN_OP_SUB, "sub", 2, 1);
	float a[6] = {0}, b[2] = {0}, y[6];
	kiln_tensor in[] = {tens(KILN_DT_F32, a, 2, D(2), D(3)), tens(KILN_DT_F32, b, 1, D(2))};
	kiln_tensor out[] = {tens(KILN_DT_F32, y, 2, D(2), D(3))};
	assert_int_equal(kiln_interp_SUB(n, in, out, &f->d), KILN_ERR_SHAPE);
	assert_string_equal(f->d.last, "node 'sub' (Sub): input 1 of type f32[2] does not "
	                                "broadcast to output type f32[2,3]");
}

static void test_int_wraparound(void **state)
{
	fixture *f = *state;
	kiln_node *add = node(f, KILN_OP_ADD, "add", 2, 1);
	int32_t a32[] = {INT32_MAX, INT32_MIN}, b32[] = {1, -1}, y32[2];
	kiln_tensor in[] = {tens(KILN_DT_I32, a32, 1, D(2)), tens(KILN_DT_I32, b32, 1, D(2))};
	kiln_tensor out[] = {tens(KILN_DT_I32, y32, 1, D(2))};
	assert_int_equal(kiln_interp_ADD(add, in, out, &f->d), KILN_OK);
	assert_int_equal(y32[0], INT32_MIN);
	assert_int_equal(y32[1], INT32_MAX);

	kiln_node *mul = node(f, KILN_OP_MUL, "mul", 2, 1);
	int8_t a8[] = {100, -100}, b8[] = {2, 3}, y8[2];
	kiln_tensor in8[] = {tens(KILN_DT_I8, a8, 1, D(2)), tens(KILN_DT_I8, b8, 1, D(2))};
	kiln_tensor out8[] = {tens(KILN_DT_I8, y8, 1, D(2))};
	assert_int_equal(kiln_interp_MUL(mul, in8, out8, &f->d), KILN_OK);
	assert_int_equal(y8[0], -56); /* 200 - 256 */
	assert_int_equal(y8[1], -44); /* -300 + 256 */

	kiln_node *sub = node(f, KILN_OP_SUB, "sub", 2, 1);
	uint8_t au[] = {3}, bu[] = {5}, yu[1];
	kiln_tensor inu[] = {tens(KILN_DT_U8, au, 0), tens(KILN_DT_U8, bu, 0)};
	kiln_tensor outu[] = {tens(KILN_DT_U8, yu, 0)};
	assert_int_equal(kiln_interp_SUB(sub, inu, outu, &f->d), KILN_OK);
	assert_int_equal(yu[0], 254);

	int64_t a64[] = {INT64_MAX, INT64_MIN}, b64[] = {1, 2}, y64[2];
	kiln_tensor in64[] = {tens(KILN_DT_I64, a64, 1, D(2)), tens(KILN_DT_I64, b64, 1, D(2))};
	kiln_tensor out64[] = {tens(KILN_DT_I64, y64, 1, D(2))};
	assert_int_equal(kiln_interp_ADD(add, in64, out64, &f->d), KILN_OK);
	assert_true(y64[0] == INT64_MIN);
	assert_true(y64[1] == INT64_MIN + 2);
	/* exact beyond 2^53, where double would round */
	int64_t c64[] = {(INT64_C(1) << 53) + 1, 3}, d64[] = {2, 0}, z64[2];
	kiln_tensor inc[] = {tens(KILN_DT_I64, c64, 1, D(2)), tens(KILN_DT_I64, d64, 1, D(2))};
	kiln_tensor outc[] = {tens(KILN_DT_I64, z64, 1, D(2))};
	assert_int_equal(kiln_interp_MUL(mul, inc, outc, &f->d), KILN_OK);
	assert_true(z64[0] == (INT64_C(1) << 54) + 2);
}

static void test_int_div_truncates(void **state)
{
	fixture *f = *state;
	kiln_node *n = node(f, KILN_OP_DIV, "div", 2, 1);
	int32_t a[] = {7, -7, 7, -7, INT32_MIN, 5}, b[] = {2, 2, -2, -2, -1, 0}, y[6];
	kiln_tensor in[] = {tens(KILN_DT_I32, a, 1, D(6)), tens(KILN_DT_I32, b, 1, D(6))};
	kiln_tensor out[] = {tens(KILN_DT_I32, y, 1, D(6))};
	assert_int_equal(kiln_interp_DIV(n, in, out, &f->d), KILN_OK);
	int32_t want[] = {3, -3, -3, 3, INT32_MIN, 0};
	for (int i = 0; i < 6; i++)
		assert_int_equal(y[i], want[i]);

	int64_t a64[] = {INT64_MIN, -9}, b64[] = {-1, 4}, y64[2];
	kiln_tensor in64[] = {tens(KILN_DT_I64, a64, 1, D(2)), tens(KILN_DT_I64, b64, 1, D(2))};
	kiln_tensor out64[] = {tens(KILN_DT_I64, y64, 1, D(2))};
	assert_int_equal(kiln_interp_DIV(n, in64, out64, &f->d), KILN_OK);
	assert_true(y64[0] == INT64_MIN);
	assert_true(y64[1] == -2);
}

static void test_pow(void **state)
{
	fixture *f = *state;
	kiln_node *n = node(f, KILN_OP_POW, "pow", 2, 1);
	int64_t a[] = {3, 2, -2, 2, -1}, b[] = {4, 62, 3, -1, -3}, y[5];
	kiln_tensor in[] = {tens(KILN_DT_I64, a, 1, D(5)), tens(KILN_DT_I64, b, 1, D(5))};
	kiln_tensor out[] = {tens(KILN_DT_I64, y, 1, D(5))};
	assert_int_equal(kiln_interp_POW(n, in, out, &f->d), KILN_OK);
	assert_true(y[0] == 81);
	assert_true(y[1] == INT64_C(1) << 62);
	assert_true(y[2] == -8);
	assert_true(y[3] == 0);
	assert_true(y[4] == -1);

	int32_t a32[] = {2, 3}, y32[2];
	int64_t e32[] = {31, 2};
	kiln_tensor in32[] = {tens(KILN_DT_I32, a32, 1, D(2)), tens(KILN_DT_I64, e32, 1, D(2))};
	kiln_tensor out32[] = {tens(KILN_DT_I32, y32, 1, D(2))};
	assert_int_equal(kiln_interp_POW(n, in32, out32, &f->d), KILN_OK);
	assert_int_equal(y32[0], INT32_MIN); /* 2^31 wraps */
	assert_int_equal(y32[1], 9);

	/* float base, integer exponent of another dtype, broadcast */
	float fa[] = {2, 3, 0.5f}, fy[3];
	int64_t fe[] = {-1};
	kiln_tensor inf[] = {tens(KILN_DT_F32, fa, 1, D(3)), tens(KILN_DT_I64, fe, 0)};
	kiln_tensor outf[] = {tens(KILN_DT_F32, fy, 1, D(3))};
	assert_int_equal(kiln_interp_POW(n, inf, outf, &f->d), KILN_OK);
	float want[] = {0.5f, 1.0f / 3.0f, 2};
	expect_f32(fy, want, 3, 0);
}

static void test_unary_activations(void **state)
{
	fixture *f = *state;
	float x[] = {-2, -0.5f, 0, 1, 4}, y[5];
	kiln_tensor in[] = {tens(KILN_DT_F32, x, 1, D(5))};
	kiln_tensor out[] = {tens(KILN_DT_F32, y, 1, D(5))};

	kiln_node *relu = node(f, KILN_OP_RELU, "relu", 1, 1);
	assert_int_equal(kiln_interp_RELU(relu, in, out, &f->d), KILN_OK);
	expect_f32(y, (float[]){0, 0, 0, 1, 4}, 5, 0);

	kiln_node *lrelu = node(f, KILN_OP_LEAKY_RELU, "lrelu", 1, 1);
	assert_int_equal(kiln_interp_LEAKY_RELU(lrelu, in, out, &f->d), KILN_OK);
	expect_f32(y, (float[]){-0.02f, -0.005f, 0, 1, 4}, 5, 1e-7f);

	kiln_node *hs = node(f, KILN_OP_HARD_SIGMOID, "hs", 1, 1);
	assert_int_equal(kiln_interp_HARD_SIGMOID(hs, in, out, &f->d), KILN_OK);
	expect_f32(y, (float[]){0.1f, 0.4f, 0.5f, 0.7f, 1}, 5, 1e-7f);

	kiln_node *hw = node(f, KILN_OP_HARD_SWISH, "hw", 1, 1);
	assert_int_equal(kiln_interp_HARD_SWISH(hw, in, out, &f->d), KILN_OK);
	/* x * clamp(x/6 + 1/2, 0, 1) */
	expect_f32(y, (float[]){-1.0f / 3.0f, -0.5f * (5.0f / 12.0f), 0, 1 * (2.0f / 3.0f), 4}, 5, 1e-6f);

	kiln_node *sig = node(f, KILN_OP_SIGMOID, "sig", 1, 1);
	assert_int_equal(kiln_interp_SIGMOID(sig, in, out, &f->d), KILN_OK);
	expect_f32(y, (float[]){0.119202922f, 0.377540669f, 0.5f, 0.731058579f, 0.982013790f}, 5, 1e-7f);

	int32_t xi[] = {-5, 0, 5, INT32_MIN}, yi[4];
	kiln_tensor ini[] = {tens(KILN_DT_I32, xi, 1, D(4))};
	kiln_tensor outi[] = {tens(KILN_DT_I32, yi, 1, D(4))};
	kiln_node *neg = node(f, KILN_OP_NEG, "neg", 1, 1);
	assert_int_equal(kiln_interp_NEG(neg, ini, outi, &f->d), KILN_OK);
	assert_int_equal(yi[0], 5);
	assert_int_equal(yi[2], -5);
	assert_int_equal(yi[3], INT32_MIN);
	assert_int_equal(kiln_interp_RELU(relu, ini, outi, &f->d), KILN_OK);
	assert_int_equal(yi[0], 0);
	assert_int_equal(yi[2], 5);
}

static void test_clip(void **state)
{
	fixture *f = *state;
	kiln_node *n = node(f, KILN_OP_CLIP, "clip", 3, 1);
	int32_t x[] = {-5, 0, 5}, lo[] = {-1}, hi[] = {3}, y[3];
	kiln_tensor in[] = {tens(KILN_DT_I32, x, 1, D(3)), tens(KILN_DT_I32, lo, 0),
	                    tens(KILN_DT_I32, hi, 0)};
	kiln_tensor out[] = {tens(KILN_DT_I32, y, 1, D(3))};
	assert_int_equal(kiln_interp_CLIP(n, in, out, &f->d), KILN_OK);
	assert_int_equal(y[0], -1);
	assert_int_equal(y[1], 0);
	assert_int_equal(y[2], 3);

	/* min omitted */
	float fx[] = {-1e30f, 2, NAN}, fhi[] = {1}, fy[3];
	kiln_tensor fin[] = {tens(KILN_DT_F32, fx, 1, D(3)), tens(KILN_DT_F32, NULL, 0),
	                     tens(KILN_DT_F32, fhi, 0)};
	kiln_tensor fout[] = {tens(KILN_DT_F32, fy, 1, D(3))};
	assert_int_equal(kiln_interp_CLIP(n, fin, fout, &f->d), KILN_OK);
	expect_f32(fy, (float[]){-1e30f, 1, NAN}, 3, 0);
}

static void test_gelu_modes(void **state)
{
	fixture *f = *state;
	float x[] = {-3, -1, 0, 0.5f, 1, 2}, y[6];
	kiln_tensor in[] = {tens(KILN_DT_F32, x, 1, D(6))};
	kiln_tensor out[] = {tens(KILN_DT_F32, y, 1, D(6))};
	kiln_node *n = node(f, KILN_OP_GELU, "gelu", 1, 1);
	assert_int_equal(kiln_interp_GELU(n, in, out, &f->d), KILN_OK);
	float none[] = {-0.00404969409f, -0.158655254f, 0, 0.345731231f, 0.841344746f, 1.95449974f};
	for (int i = 0; i < 6; i++)
		assert_float_equal(y[i], none[i], 1e-6f * fabsf(none[i]) + 1e-9f);

	assert_int_equal(kiln_node_set_string(f->g, n, "approximate", "tanh"), KILN_OK);
	assert_int_equal(kiln_interp_GELU(n, in, out, &f->d), KILN_OK);
	float tanh_[] = {-0.00363739208f, -0.158808009f, 0, 0.34571401f, 0.841191991f, 1.95459769f};
	for (int i = 0; i < 6; i++)
		assert_float_equal(y[i], tanh_[i], 1e-6f * fabsf(tanh_[i]) + 1e-9f);

	assert_int_equal(kiln_node_set_string(f->g, n, "approximate", "fast"), KILN_OK);
	assert_int_equal(kiln_interp_GELU(n, in, out, &f->d), KILN_ERR_UNSUPPORTED);
	assert_string_equal(f->d.last,
	                    "node 'gelu' (Gelu): approximate 'fast' is not one of 'none', 'tanh'");
}

static void test_min_max_nan_variadic(void **state)
{
	fixture *f = *state;
	kiln_node *n = node(f, KILN_OP_MAX, "max", 3, 1);
	float a[] = {1, NAN, 3, 0}, b[] = {2, 2, NAN, -1}, c[] = {1.5f}, y[4];
	kiln_tensor in[] = {tens(KILN_DT_F32, a, 1, D(4)), tens(KILN_DT_F32, b, 1, D(4)),
	                    tens(KILN_DT_F32, c, 0)};
	kiln_tensor out[] = {tens(KILN_DT_F32, y, 1, D(4))};
	assert_int_equal(kiln_interp_MAX(n, in, out, &f->d), KILN_OK);
	expect_f32(y, (float[]){2, NAN, NAN, 1.5f}, 4, 0);

	kiln_node *m = node(f, KILN_OP_MIN, "min", 2, 1);
	int64_t ia[] = {5, -3}, ib[] = {1, 2}, iy[4];
	kiln_tensor iin[] = {tens(KILN_DT_I64, ia, 2, D(2), D(1)), tens(KILN_DT_I64, ib, 1, D(2))};
	kiln_tensor iout[] = {tens(KILN_DT_I64, iy, 2, D(2), D(2))};
	assert_int_equal(kiln_interp_MIN(m, iin, iout, &f->d), KILN_OK);
	assert_true(iy[0] == 1 && iy[1] == 2 && iy[2] == -3 && iy[3] == -3);
}

static void test_where_and_compare(void **state)
{
	fixture *f = *state;
	kiln_node *w = node(f, KILN_OP_WHERE, "where", 3, 1);
	uint8_t cond[] = {1, 0};
	float x[] = {1, 2, 3}, yv[] = {9}, y[6];
	kiln_tensor in[] = {tens(KILN_DT_BOOL, cond, 2, D(2), D(1)), tens(KILN_DT_F32, x, 1, D(3)),
	                    tens(KILN_DT_F32, yv, 0)};
	kiln_tensor out[] = {tens(KILN_DT_F32, y, 2, D(2), D(3))};
	assert_int_equal(kiln_interp_WHERE(w, in, out, &f->d), KILN_OK);
	expect_f32(y, (float[]){1, 2, 3, 9, 9, 9}, 6, 0);

	float a[] = {1, NAN, 3}, b[] = {1, NAN, 2};
	uint8_t r[3];
	kiln_tensor cin[] = {tens(KILN_DT_F32, a, 1, D(3)), tens(KILN_DT_F32, b, 1, D(3))};
	kiln_tensor cout[] = {tens(KILN_DT_BOOL, r, 1, D(3))};
	kiln_node *eq = node(f, KILN_OP_EQUAL, "eq", 2, 1);
	assert_int_equal(kiln_interp_EQUAL(eq, cin, cout, &f->d), KILN_OK);
	assert_true(r[0] == 1 && r[1] == 0 && r[2] == 0);
	kiln_node *gt = node(f, KILN_OP_GREATER, "gt", 2, 1);
	assert_int_equal(kiln_interp_GREATER(gt, cin, cout, &f->d), KILN_OK);
	assert_true(r[0] == 0 && r[1] == 0 && r[2] == 1);
	kiln_node *lt = node(f, KILN_OP_LESS, "lt", 2, 1);
	assert_int_equal(kiln_interp_LESS(lt, cin, cout, &f->d), KILN_OK);
	assert_true(r[0] == 0 && r[1] == 0 && r[2] == 0);

	/* int64 compared exactly (these two are equal as doubles) */
	int64_t ia[] = {(INT64_C(1) << 53) + 1}, ib[] = {INT64_C(1) << 53};
	kiln_tensor iin[] = {tens(KILN_DT_I64, ia, 0), tens(KILN_DT_I64, ib, 0)};
	kiln_tensor iout[] = {tens(KILN_DT_BOOL, r, 0)};
	assert_int_equal(kiln_interp_EQUAL(eq, iin, iout, &f->d), KILN_OK);
	assert_int_equal(r[0], 0);
	assert_int_equal(kiln_interp_GREATER(gt, iin, iout, &f->d), KILN_OK);
	assert_int_equal(r[0], 1);

	kiln_node *not = node(f, KILN_OP_NOT, "not", 1, 1);
	uint8_t bv[] = {0, 1}, nb[2];
	kiln_tensor nin[] = {tens(KILN_DT_BOOL, bv, 1, D(2))};
	kiln_tensor nout[] = {tens(KILN_DT_BOOL, nb, 1, D(2))};
	assert_int_equal(kiln_interp_NOT(not, nin, nout, &f->d), KILN_OK);
	assert_true(nb[0] == 1 && nb[1] == 0);
}

static void test_cast(void **state)
{
	fixture *f = *state;
	kiln_node *n = node(f, KILN_OP_CAST, "cast", 1, 1);
	float x[] = {2.7f, -2.7f, NAN, 300.5f}, ones = 1.0f;
	int32_t yi[4];
	kiln_tensor in[] = {tens(KILN_DT_F32, x, 1, D(4))};
	kiln_tensor out[] = {tens(KILN_DT_I32, yi, 1, D(4))};
	assert_int_equal(kiln_interp_CAST(n, in, out, &f->d), KILN_OK);
	assert_int_equal(yi[0], 2);
	assert_int_equal(yi[1], -2);
	assert_int_equal(yi[2], 0); /* kiln's choice for NaN */
	assert_int_equal(yi[3], 300);

	/* f32 -> f16 / bf16: round to nearest, ties to even; overflow to inf */
	float h[] = {ones + 0x1p-11f, ones + 3 * 0x1p-11f, 65520.0f, -0.0f};
	uint16_t yh[4];
	kiln_tensor hin[] = {tens(KILN_DT_F32, h, 1, D(4))};
	kiln_tensor hout[] = {tens(KILN_DT_F16, yh, 1, D(4))};
	assert_int_equal(kiln_interp_CAST(n, hin, hout, &f->d), KILN_OK);
	assert_int_equal(yh[0], 0x3C00);
	assert_int_equal(yh[1], 0x3C02);
	assert_int_equal(yh[2], 0x7C00);
	assert_int_equal(yh[3], 0x8000);
	float bfx[] = {ones + 0x1p-8f, ones + 3 * 0x1p-8f};
	uint16_t yb[2];
	kiln_tensor bin[] = {tens(KILN_DT_F32, bfx, 1, D(2))};
	kiln_tensor bout[] = {tens(KILN_DT_BF16, yb, 1, D(2))};
	assert_int_equal(kiln_interp_CAST(n, bin, bout, &f->d), KILN_OK);
	assert_int_equal(yb[0], 0x3F80);
	assert_int_equal(yb[1], 0x3F82);

	/* f64 just above an f16 tie rounds up (no double rounding through f32) */
	double dx[] = {1.0 + 0x1p-11 + 0x1p-40};
	kiln_tensor din[] = {tens(KILN_DT_F64, dx, 0)};
	kiln_tensor dout[] = {tens(KILN_DT_F16, yh, 0)};
	assert_int_equal(kiln_interp_CAST(n, din, dout, &f->d), KILN_OK);
	assert_int_equal(yh[0], 0x3C01);

	float bx[] = {0, -0.0f, 0.5f, NAN};
	uint8_t yb8[4];
	kiln_tensor bbin[] = {tens(KILN_DT_F32, bx, 1, D(4))};
	kiln_tensor bbout[] = {tens(KILN_DT_BOOL, yb8, 1, D(4))};
	assert_int_equal(kiln_interp_CAST(n, bbin, bbout, &f->d), KILN_OK);
	assert_true(yb8[0] == 0 && yb8[1] == 0 && yb8[2] == 1 && yb8[3] == 1);

	float fb[2];
	kiln_tensor fbin[] = {tens(KILN_DT_BOOL, (uint8_t[]){1, 0}, 1, D(2))};
	kiln_tensor fbout[] = {tens(KILN_DT_F32, fb, 1, D(2))};
	assert_int_equal(kiln_interp_CAST(n, fbin, fbout, &f->d), KILN_OK);
	expect_f32(fb, (float[]){1, 0}, 2, 0);

	/* int -> narrower int wraps */
	int64_t wide[] = {300, -129};
	int8_t narrow[2];
	kiln_tensor win[] = {tens(KILN_DT_I64, wide, 1, D(2))};
	kiln_tensor wout[] = {tens(KILN_DT_I8, narrow, 1, D(2))};
	assert_int_equal(kiln_interp_CAST(n, win, wout, &f->d), KILN_OK);
	assert_int_equal(narrow[0], 44);
	assert_int_equal(narrow[1], 127);
}

/* ---- data movement ---- */

static void test_transpose_4d(void **state)
{
	fixture *f = *state;
	kiln_node *n = node(f, KILN_OP_TRANSPOSE, "tr", 1, 1);
	int64_t perm[] = {0, 2, 3, 1};
	assert_int_equal(kiln_node_set_ints(f->g, n, "perm", perm, 4), KILN_OK);
	int32_t x[120], y[120];
	for (int i = 0; i < 120; i++)
		x[i] = i;
	kiln_tensor in[] = {tens(KILN_DT_I32, x, 4, D(2), D(3), D(4), D(5))};
	kiln_tensor out[] = {tens(KILN_DT_I32, y, 4, D(2), D(4), D(5), D(3))};
	assert_int_equal(kiln_interp_TRANSPOSE(n, in, out, &f->d), KILN_OK);
	/* y[a][b][c][d] = x[a][d][b][c] */
	for (int a = 0; a < 2; a++)
		for (int b = 0; b < 4; b++)
			for (int c = 0; c < 5; c++)
				for (int e = 0; e < 3; e++)
					assert_int_equal(y[((a * 4 + b) * 5 + c) * 3 + e], a * 60 + e * 20 + b * 5 + c);

	kiln_node *rev = node(f, KILN_OP_TRANSPOSE, "rev", 1, 1);
	float m[] = {1, 2, 3, 4, 5, 6}, mt[6];
	kiln_tensor min[] = {tens(KILN_DT_F32, m, 2, D(2), D(3))};
	kiln_tensor mout[] = {tens(KILN_DT_F32, mt, 2, D(3), D(2))};
	assert_int_equal(kiln_interp_TRANSPOSE(rev, min, mout, &f->d), KILN_OK);
	expect_f32(mt, (float[]){1, 4, 2, 5, 3, 6}, 6, 0);
}

static void test_concat_split_uneven(void **state)
{
	fixture *f = *state;
	kiln_node *c = node(f, KILN_OP_CONCAT, "cat", 2, 1);
	assert_int_equal(kiln_node_set_int(f->g, c, "axis", -1), KILN_OK);
	float a[] = {1, 2, 3, 4}, b[] = {5, 6}, y[6];
	kiln_tensor in[] = {tens(KILN_DT_F32, a, 2, D(2), D(2)), tens(KILN_DT_F32, b, 2, D(2), D(1))};
	kiln_tensor out[] = {tens(KILN_DT_F32, y, 2, D(2), D(3))};
	assert_int_equal(kiln_interp_CONCAT(c, in, out, &f->d), KILN_OK);
	expect_f32(y, (float[]){1, 2, 5, 3, 4, 6}, 6, 0);

	kiln_node *s = node(f, KILN_OP_SPLIT, "split", 1, 2);
	assert_int_equal(kiln_node_set_int(f->g, s, "axis", 1), KILN_OK);
	float x[] = {0, 1, 2, 3, 4, 10, 11, 12, 13, 14}, p[4], q[6];
	kiln_tensor sin[] = {tens(KILN_DT_F32, x, 2, D(2), D(5))};
	kiln_tensor sout[] = {tens(KILN_DT_F32, p, 2, D(2), D(2)), tens(KILN_DT_F32, q, 2, D(2), D(3))};
	assert_int_equal(kiln_interp_SPLIT(s, sin, sout, &f->d), KILN_OK);
	expect_f32(p, (float[]){0, 1, 10, 11}, 4, 0);
	expect_f32(q, (float[]){2, 3, 4, 12, 13, 14}, 6, 0);
}

static void test_slice_negative_steps(void **state)
{
	fixture *f = *state;
	kiln_node *n = node(f, KILN_OP_SLICE, "slice", 5, 1);
	int32_t x[10], y[4];
	for (int i = 0; i < 10; i++)
		x[i] = i;
	int64_t st[] = {-1}, en[] = {INT64_MIN}, ax[] = {0}, sp[] = {-3};
	kiln_tensor in[] = {tens(KILN_DT_I32, x, 1, D(10)), tens(KILN_DT_I64, st, 1, D(1)),
	                    tens(KILN_DT_I64, en, 1, D(1)), tens(KILN_DT_I64, ax, 1, D(1)),
	                    tens(KILN_DT_I64, sp, 1, D(1))};
	kiln_tensor out[] = {tens(KILN_DT_I32, y, 1, D(4))};
	assert_int_equal(kiln_interp_SLICE(n, in, out, &f->d), KILN_OK);
	assert_true(y[0] == 9 && y[1] == 6 && y[2] == 3 && y[3] == 0);

	/* 2-D, both axes reversed, ends clamped to -1 */
	int64_t st2[] = {2, 3}, en2[] = {0, -100}, ax2[] = {0, -1}, sp2[] = {-1, -2};
	int32_t y2[4];
	kiln_tensor in2[] = {tens(KILN_DT_I32, x, 2, D(2), D(5)), tens(KILN_DT_I64, st2, 1, D(2)),
	                     tens(KILN_DT_I64, en2, 1, D(2)), tens(KILN_DT_I64, ax2, 1, D(2)),
	                     tens(KILN_DT_I64, sp2, 1, D(2))};
	kiln_tensor out2[] = {tens(KILN_DT_I32, y2, 2, D(1), D(2))};
	/* axis 0: start 2 clamps to 1, end 0 -> row 1; axis 1: 3, 1 */
	assert_int_equal(kiln_interp_SLICE(n, in2, out2, &f->d), KILN_OK);
	assert_true(y2[0] == 8 && y2[1] == 6);

	/* axes and steps omitted; start past the end clamps to an empty slice */
	kiln_node *m = node(f, KILN_OP_SLICE, "slice3", 3, 1);
	int64_t st3[] = {1, 7}, en3[] = {2, 100};
	kiln_tensor in3[] = {tens(KILN_DT_I32, x, 2, D(2), D(5)), tens(KILN_DT_I64, st3, 1, D(2)),
	                     tens(KILN_DT_I64, en3, 1, D(2))};
	kiln_tensor out3[] = {tens(KILN_DT_I32, y2, 2, D(1), D(0))};
	assert_int_equal(kiln_interp_SLICE(m, in3, out3, &f->d), KILN_OK);

	/* a negative step over an empty axis reads nothing */
	int64_t st4[] = {-1}, en4[] = {INT64_MIN}, ax4[] = {0}, sp4[] = {-1};
	kiln_tensor in4[] = {tens(KILN_DT_I32, x, 1, D(0)), tens(KILN_DT_I64, st4, 1, D(1)),
	                     tens(KILN_DT_I64, en4, 1, D(1)), tens(KILN_DT_I64, ax4, 1, D(1)),
	                     tens(KILN_DT_I64, sp4, 1, D(1))};
	kiln_tensor out4[] = {tens(KILN_DT_I32, y2, 1, D(0))};
	assert_int_equal(kiln_interp_SLICE(n, in4, out4, &f->d), KILN_OK);

	/* an output type that disagrees is reported, not written past */
	kiln_tensor bad[] = {tens(KILN_DT_I32, y2, 2, D(1), D(3))};
	assert_int_equal(kiln_interp_SLICE(m, in3, bad, &f->d), KILN_ERR_SHAPE);
	assert_string_equal(f->d.last, "node 'slice3' (Slice): computed output type i32[1,0], "
	                                "expected i32[1,3]");
}

static void test_gather(void **state)
{
	fixture *f = *state;
	kiln_node *n = node(f, KILN_OP_GATHER, "g", 2, 1);
	float x[10], y[6];
	for (int i = 0; i < 10; i++)
		x[i] = (float)i;
	int64_t idx[] = {-1, 0, 2};
	kiln_tensor in[] = {tens(KILN_DT_F32, x, 2, D(5), D(2)), tens(KILN_DT_I64, idx, 1, D(3))};
	kiln_tensor out[] = {tens(KILN_DT_F32, y, 2, D(3), D(2))};
	assert_int_equal(kiln_interp_GATHER(n, in, out, &f->d), KILN_OK);
	expect_f32(y, (float[]){8, 9, 0, 1, 4, 5}, 6, 0);

	kiln_node *m = node(f, KILN_OP_GATHER, "g1", 2, 1);
	assert_int_equal(kiln_node_set_int(f->g, m, "axis", 1), KILN_OK);
	int32_t idx32[] = {-1, 0};
	float y2[4];
	kiln_tensor in2[] = {tens(KILN_DT_F32, x, 2, D(2), D(3)), tens(KILN_DT_I32, idx32, 2, D(1), D(2))};
	kiln_tensor out2[] = {tens(KILN_DT_F32, y2, 3, D(2), D(1), D(2))};
	assert_int_equal(kiln_interp_GATHER(m, in2, out2, &f->d), KILN_OK);
	expect_f32(y2, (float[]){2, 0, 5, 3}, 4, 0);

	int64_t bad[] = {7};
	float y3[1];
	kiln_tensor in3[] = {tens(KILN_DT_F32, x, 1, D(5)), tens(KILN_DT_I64, bad, 0)};
	kiln_tensor out3[] = {tens(KILN_DT_F32, y3, 0)};
	assert_int_equal(kiln_interp_GATHER(n, in3, out3, &f->d), KILN_ERR_INVALID_ARG);
	assert_string_equal(f->d.last, "node 'g' (Gather): index 7 out of range for axis 0 of size 5");
}

static void run_pad(fixture *f, const char *mode, const int64_t *pads, int out_len,
                    const float *want)
{
	kiln_node *n = node(f, KILN_OP_PAD, NULL, 3, 1);
	assert_int_equal(kiln_node_set_string(f->g, n, "mode", mode), KILN_OK);
	float x[] = {1, 2, 3, 4}, cv[] = {9}, y[16];
	kiln_tensor in[] = {tens(KILN_DT_F32, x, 1, D(4)), tens(KILN_DT_I64, (void *)pads, 1, D(2)),
	                    tens(KILN_DT_F32, cv, 0)};
	kiln_tensor out[] = {tens(KILN_DT_F32, y, 1, D(out_len))};
	assert_int_equal(kiln_interp_PAD(n, in, out, &f->d), KILN_OK);
	expect_f32(y, want, out_len, 0);
}

static void test_pad_modes(void **state)
{
	fixture *f = *state;
	int64_t pads[] = {2, 3};
	run_pad(f, "constant", pads, 9, (float[]){9, 9, 1, 2, 3, 4, 9, 9, 9});
	run_pad(f, "reflect", pads, 9, (float[]){3, 2, 1, 2, 3, 4, 3, 2, 1});
	run_pad(f, "edge", pads, 9, (float[]){1, 1, 1, 2, 3, 4, 4, 4, 4});
	run_pad(f, "wrap", pads, 9, (float[]){3, 4, 1, 2, 3, 4, 1, 2, 3});
	/* a negative pad crops before the edge is replicated */
	int64_t crop[] = {-1, 2};
	run_pad(f, "edge", crop, 5, (float[]){2, 3, 4, 4, 4});
	run_pad(f, "constant", crop, 5, (float[]){2, 3, 4, 9, 9});

	/* axes input, constant_value omitted (0), 2-D */
	kiln_node *n = node(f, KILN_OP_PAD, "pad2", 4, 1);
	int32_t x[] = {1, 2, 3, 4, 5, 6}, y[8];
	int64_t p[] = {1, 0}, axes[] = {-1};
	kiln_tensor in[] = {tens(KILN_DT_I32, x, 2, D(2), D(3)), tens(KILN_DT_I64, p, 1, D(2)),
	                    tens(KILN_DT_I32, NULL, 0), tens(KILN_DT_I64, axes, 1, D(1))};
	kiln_tensor out[] = {tens(KILN_DT_I32, y, 2, D(2), D(4))};
	assert_int_equal(kiln_interp_PAD(n, in, out, &f->d), KILN_OK);
	int32_t want[] = {0, 1, 2, 3, 0, 4, 5, 6};
	for (int i = 0; i < 8; i++)
		assert_int_equal(y[i], want[i]);
}

static void test_tile_expand(void **state)
{
	fixture *f = *state;
	kiln_node *n = node(f, KILN_OP_TILE, "tile", 2, 1);
	float x[] = {1, 2, 3, 4}, y[24];
	int64_t rep[] = {2, 3};
	kiln_tensor in[] = {tens(KILN_DT_F32, x, 2, D(2), D(2)), tens(KILN_DT_I64, rep, 1, D(2))};
	kiln_tensor out[] = {tens(KILN_DT_F32, y, 2, D(4), D(6))};
	assert_int_equal(kiln_interp_TILE(n, in, out, &f->d), KILN_OK);
	float want[] = {1, 2, 1, 2, 1, 2, 3, 4, 3, 4, 3, 4,
	                1, 2, 1, 2, 1, 2, 3, 4, 3, 4, 3, 4};
	expect_f32(y, want, 24, 0);

	kiln_node *e = node(f, KILN_OP_EXPAND, "expand", 2, 1);
	uint8_t bx[] = {7, 8, 9}, by[12];
	int64_t shape[] = {2, 3, 2};
	kiln_tensor ein[] = {tens(KILN_DT_U8, bx, 2, D(3), D(1)), tens(KILN_DT_I64, shape, 1, D(3))};
	kiln_tensor eout[] = {tens(KILN_DT_U8, by, 3, D(2), D(3), D(2))};
	assert_int_equal(kiln_interp_EXPAND(e, ein, eout, &f->d), KILN_OK);
	uint8_t ewant[] = {7, 7, 8, 8, 9, 9, 7, 7, 8, 8, 9, 9};
	assert_memory_equal(by, ewant, 12);
}

static void test_range_shape_constant(void **state)
{
	fixture *f = *state;
	kiln_node *n = node(f, KILN_OP_RANGE, "range", 3, 1);
	float s[] = {1}, l[] = {2}, dl[] = {0.25f}, y[4];
	kiln_tensor in[] = {tens(KILN_DT_F32, s, 0), tens(KILN_DT_F32, l, 0), tens(KILN_DT_F32, dl, 0)};
	kiln_tensor out[] = {tens(KILN_DT_F32, y, 1, D(4))};
	assert_int_equal(kiln_interp_RANGE(n, in, out, &f->d), KILN_OK);
	expect_f32(y, (float[]){1, 1.25f, 1.5f, 1.75f}, 4, 0);

	int32_t is[] = {10}, il[] = {1}, id[] = {-3}, iy[3];
	kiln_tensor iin[] = {tens(KILN_DT_I32, is, 0), tens(KILN_DT_I32, il, 0), tens(KILN_DT_I32, id, 0)};
	kiln_tensor iout[] = {tens(KILN_DT_I32, iy, 1, D(3))};
	assert_int_equal(kiln_interp_RANGE(n, iin, iout, &f->d), KILN_OK);
	assert_true(iy[0] == 10 && iy[1] == 7 && iy[2] == 4);

	kiln_node *sh = node(f, KILN_OP_SHAPE, "shape", 1, 1);
	assert_int_equal(kiln_node_set_int(f->g, sh, "start", -3), KILN_OK);
	assert_int_equal(kiln_node_set_int(f->g, sh, "end", -1), KILN_OK);
	int64_t sy[2];
	kiln_tensor sin[] = {tens(KILN_DT_F32, NULL, 4, D(2), D(3), D(5), D(7))};
	kiln_tensor sout[] = {tens(KILN_DT_I64, sy, 1, D(2))};
	assert_int_equal(kiln_interp_SHAPE(sh, sin, sout, &f->d), KILN_OK);
	assert_true(sy[0] == 3 && sy[1] == 5);

	kiln_node *c = node(f, KILN_OP_CONSTANT_OF_SHAPE, "cos", 1, 1);
	int64_t shape[] = {2, 2}, cy[4] = {0}, seven = 7;
	kiln_tensor value = tens(KILN_DT_I64, &seven, 1, D(1));
	assert_int_equal(kiln_node_set_tensor(f->g, c, "value", &value), KILN_OK);
	kiln_tensor cin[] = {tens(KILN_DT_I64, shape, 1, D(2))};
	kiln_tensor cout[] = {tens(KILN_DT_I64, cy, 2, D(2), D(2))};
	assert_int_equal(kiln_interp_CONSTANT_OF_SHAPE(c, cin, cout, &f->d), KILN_OK);
	assert_true(cy[0] == 7 && cy[3] == 7);
}

static void test_dropout_inference(void **state)
{
	fixture *f = *state;
	kiln_node *n = node(f, KILN_OP_DROPOUT, "drop", 1, 2);
	float x[] = {1, -2}, y[2];
	uint8_t mask[2] = {0, 0};
	kiln_tensor in[] = {tens(KILN_DT_F32, x, 1, D(2))};
	kiln_tensor out[] = {tens(KILN_DT_F32, y, 1, D(2)), tens(KILN_DT_BOOL, mask, 1, D(2))};
	assert_int_equal(kiln_interp_DROPOUT(n, in, out, &f->d), KILN_OK);
	expect_f32(y, x, 2, 0);
	assert_true(mask[0] == 1 && mask[1] == 1);
}

/* ---- quantisation ---- */

static void test_quantize_ties_and_saturation(void **state)
{
	fixture *f = *state;
	kiln_node *n = node(f, KILN_OP_QUANTIZE_LINEAR, "q", 3, 1);
	float x[] = {0.5f, 1.5f, 2.5f, -0.5f, -1.5f, 300, -300, 2.4f}, scale[] = {1};
	int8_t zp8[] = {0}, y8[8];
	kiln_tensor in[] = {tens(KILN_DT_F32, x, 1, D(8)), tens(KILN_DT_F32, scale, 0),
	                    tens(KILN_DT_I8, zp8, 0)};
	kiln_tensor out[] = {tens(KILN_DT_I8, y8, 1, D(8))};
	assert_int_equal(kiln_interp_QUANTIZE_LINEAR(n, in, out, &f->d), KILN_OK);
	int8_t want8[] = {0, 2, 2, 0, -2, 127, -128, 2};
	assert_memory_equal(y8, want8, 8);

	uint8_t zpu[] = {128}, yu[8];
	kiln_tensor inu[] = {in[0], in[1], tens(KILN_DT_U8, zpu, 0)};
	kiln_tensor outu[] = {tens(KILN_DT_U8, yu, 1, D(8))};
	assert_int_equal(kiln_interp_QUANTIZE_LINEAR(n, inu, outu, &f->d), KILN_OK);
	uint8_t wantu[] = {128, 130, 130, 128, 126, 255, 0, 130};
	assert_memory_equal(yu, wantu, 8);

	/* per-axis (axis 0), zero point omitted: u8 */
	kiln_node *m = node(f, KILN_OP_QUANTIZE_LINEAR, "q2", 2, 1);
	assert_int_equal(kiln_node_set_int(f->g, m, "axis", 0), KILN_OK);
	float px[] = {1, 2, 3, 1, 2, 3}, ps[] = {0.5f, 2};
	uint8_t py[6];
	kiln_tensor pin[] = {tens(KILN_DT_F32, px, 2, D(2), D(3)), tens(KILN_DT_F32, ps, 1, D(2))};
	kiln_tensor pout[] = {tens(KILN_DT_U8, py, 2, D(2), D(3))};
	assert_int_equal(kiln_interp_QUANTIZE_LINEAR(m, pin, pout, &f->d), KILN_OK);
	uint8_t pwant[] = {2, 4, 6, 0, 1, 2}; /* 0.5 -> 0, 1.5 -> 2 (ties to even) */
	assert_memory_equal(py, pwant, 6);
}

static void test_dequantize_per_axis(void **state)
{
	fixture *f = *state;
	kiln_node *n = node(f, KILN_OP_DEQUANTIZE_LINEAR, "dq", 3, 1);
	uint8_t x[] = {0, 128, 255, 10, 20, 30}, zp[] = {0, 128, 10};
	float scale[] = {1, 0.5f, 2}, y[6];
	kiln_tensor in[] = {tens(KILN_DT_U8, x, 2, D(2), D(3)), tens(KILN_DT_F32, scale, 1, D(3)),
	                    tens(KILN_DT_U8, zp, 1, D(3))};
	kiln_tensor out[] = {tens(KILN_DT_F32, y, 2, D(2), D(3))};
	assert_int_equal(kiln_interp_DEQUANTIZE_LINEAR(n, in, out, &f->d), KILN_OK);
	expect_f32(y, (float[]){0, 0, 490, 10, -54, 40}, 6, 0);

	/* i32 without a zero point, per tensor */
	kiln_node *m = node(f, KILN_OP_DEQUANTIZE_LINEAR, "dq2", 2, 1);
	int32_t xi[] = {-1000, 3};
	float s1[] = {0.25f}, yi[2];
	kiln_tensor iin[] = {tens(KILN_DT_I32, xi, 1, D(2)), tens(KILN_DT_F32, s1, 0)};
	kiln_tensor iout[] = {tens(KILN_DT_F32, yi, 1, D(2))};
	assert_int_equal(kiln_interp_DEQUANTIZE_LINEAR(m, iin, iout, &f->d), KILN_OK);
	expect_f32(yi, (float[]){-250, 0.75f}, 2, 0);

	/* a per-axis scale that does not match the axis is an error */
	float s4[] = {1, 2, 3, 4};
	kiln_tensor bad[] = {in[0], tens(KILN_DT_F32, s4, 1, D(4))};
	kiln_node *b = node(f, KILN_OP_DEQUANTIZE_LINEAR, "dq3", 2, 1);
	assert_int_equal(kiln_interp_DEQUANTIZE_LINEAR(b, bad, out, &f->d), KILN_ERR_SHAPE);
	assert_string_equal(f->d.last, "node 'dq3' (DequantizeLinear): per-axis scale type f32[4] "
	                                "does not match axis 1 of x type u8[2,3]");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_add_broadcast_row, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mul_broadcast_both, setup, teardown),
		cmocka_unit_test_setup_teardown(test_broadcast_mismatch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_int_wraparound, setup, teardown),
		cmocka_unit_test_setup_teardown(test_int_div_truncates, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pow, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unary_activations, setup, teardown),
		cmocka_unit_test_setup_teardown(test_clip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_gelu_modes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_min_max_nan_variadic, setup, teardown),
		cmocka_unit_test_setup_teardown(test_where_and_compare, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cast, setup, teardown),
		cmocka_unit_test_setup_teardown(test_transpose_4d, setup, teardown),
		cmocka_unit_test_setup_teardown(test_concat_split_uneven, setup, teardown),
		cmocka_unit_test_setup_teardown(test_slice_negative_steps, setup, teardown),
		cmocka_unit_test_setup_teardown(test_gather, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pad_modes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tile_expand, setup, teardown),
		cmocka_unit_test_setup_teardown(test_range_shape_constant, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dropout_inference, setup, teardown),
		cmocka_unit_test_setup_teardown(test_quantize_ties_and_saturation, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dequantize_per_axis, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
