/* test_kk_reduce.c — the reduce family's lowerings and kernels (Reduce*,
 * Global*Pool, Softmax, LogSoftmax, LayerNormalization, BatchNormalization,
 * MaxPool, AveragePool) against the interpreter, through kharness.
 *
 * Each case builds a one-node graph over random inputs and runs it at 1 and
 * 3 threads. f32 sums, means, softmax and norms are compared with rtol 1e-4
 * (atol 1e-4 where results can cancel to near zero); max/min and every
 * non-f32 dtype must match exactly (the _any kernels mirror the interpreter). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "interp.h"
#include "kharness.h"

static kiln_value *const_i64(kiln_graph *g, int n, const int64_t *vals)
{
	kiln_type t = kh_type(KILN_DT_I64, 1, (int64_t[]){n});
	kiln_value *v = kiln_graph_add_const(g, NULL, &t, vals);
	assert_non_null(v);
	return v;
}

/* A constant of dtype dt whose element i is f(i). */
static kiln_value *const_fn(kiln_graph *g, kiln_dtype dt, int rank, const int64_t *dims,
                            double (*f)(int64_t))
{
	kiln_type t = kh_type(dt, rank, dims);
	kiln_value *v = kiln_graph_add_const(g, NULL, &t, NULL);
	assert_non_null(v);
	kiln_tensor tt = {.type = t, .data = v->data};
	for (int64_t i = 0; i < kiln_type_numel(&t); i++)
		kiln_tensor_set_f64(&tt, i, f(i));
	return v;
}

/* ---- Reduce* ------------------------------------------------------------- */

static const kiln_op reduce_ops[4] = {KILN_OP_REDUCE_SUM, KILN_OP_REDUCE_MEAN,
                                      KILN_OP_REDUCE_MAX, KILN_OP_REDUCE_MIN};

/* One Reduce node; n_axes < 0: no axes input. */
static void reduce_case(kiln_op op, kiln_dtype dt, int rank, const int64_t *dims,
                        const int64_t *axes, int n_axes, int keep, int noop, double lo, double hi)
{
	kiln_graph *g = kh_graph();
	kiln_value *ins[2] = {kh_input(g, dt, rank, dims), n_axes >= 0 ? const_i64(g, n_axes, axes) : NULL};
	kiln_node *n = kh_add(g, op, ins, n_axes >= 0 ? 2 : 1, 1);
	kiln_node_set_int(g, n, "keepdims", keep);
	if (noop >= 0)
		kiln_node_set_int(g, n, "noop_with_empty_axes", noop);
	char what[256];
	int len = snprintf(what, sizeof what, "%s %s rank %d [", kiln_op_name(op), kiln_dtype_name(dt), rank);
	for (int i = 0; i < rank && len < 200; i++)
		len += snprintf(what + len, sizeof what - (size_t)len, "%lld ", (long long)dims[i]);
	len += snprintf(what + len, sizeof what - (size_t)len, "] axes");
	for (int i = 0; i < n_axes && len < 240; i++)
		len += snprintf(what + len, sizeof what - (size_t)len, " %lld", (long long)axes[i]);
	snprintf(what + len, sizeof what - (size_t)len, " keep %d", keep);
	bool exact = dt != KILN_DT_F32 || op == KILN_OP_REDUCE_MAX || op == KILN_OP_REDUCE_MIN;
	kh_opts o = kh_defaults();
	o.rtol = exact ? 0 : 1e-4;
	o.atol = exact ? 0 : 1e-4;
	o.lo = lo;
	o.hi = hi;
	kh_check_threads(g, what, o);
}

typedef struct axes_case {
	int rank;
	int64_t dims[5];
	int n_axes;
	int64_t axes[5];
} axes_case;

static const axes_case f32_axes[] = {
	{1, {17}, 1, {0}},
	{1, {1}, 1, {-1}},
	{2, {3, 17}, 1, {1}},
	{2, {3, 17}, 1, {0}},
	{2, {3, 17}, 1, {-1}},
	{2, {3, 17}, 2, {0, 1}},
	{2, {33, 1}, 1, {0}},
	{3, {2, 3, 33}, 1, {1}},
	{3, {2, 3, 33}, 2, {0, 2}},
	{3, {2, 3, 33}, 2, {-3, -1}},
	{3, {5, 257, 3}, 1, {1}},
	{4, {2, 3, 4, 5}, 2, {1, 2}},
	{5, {2, 1, 5, 3, 7}, 2, {1, 3}},
	{5, {2, 1, 5, 3, 7}, 3, {0, 2, 4}},
	{5, {2, 1, 5, 3, 7}, 1, {4}},
	{5, {2, 1, 5, 3, 7}, 1, {2}},
	{5, {3, 2, 4, 1, 17}, 3, {0, 1, 3}},
	{2, {4, 257}, 1, {1}},
	{2, {4, 257}, 1, {0}},
	{2, {200, 33}, 1, {0}},   /* COL mode past one sum block */
	{2, {64, 300}, 1, {1}},   /* large enough to split across threads */
	{2, {300, 64}, 1, {0}},
	{3, {100, 3, 100}, 2, {0, 2}},
};

static void test_reduce_f32_axes(void **state)
{
	(void)state;
	for (size_t c = 0; c < sizeof f32_axes / sizeof *f32_axes; c++)
		for (int k = 0; k < 4; k++)
			for (int keep = 0; keep < 2; keep++)
				reduce_case(reduce_ops[k], KILN_DT_F32, f32_axes[c].rank, f32_axes[c].dims,
				            f32_axes[c].axes, f32_axes[c].n_axes, keep, -1, -2, 2);
}

static void test_reduce_empty_axes(void **state)
{
	(void)state;
	for (int k = 0; k < 4; k++) {
		/* No axes input: all axes; empty axes: all axes unless noop. */
		reduce_case(reduce_ops[k], KILN_DT_F32, SHAPE(3, 17, 5), NULL, -1, 1, -1, -2, 2);
		reduce_case(reduce_ops[k], KILN_DT_F32, SHAPE(3, 17, 5), NULL, -1, 0, 0, -2, 2);
		reduce_case(reduce_ops[k], KILN_DT_F32, SHAPE(3, 17, 5), NULL, 0, 0, 0, -2, 2);
		reduce_case(reduce_ops[k], KILN_DT_F32, SHAPE(3, 17, 5), NULL, 0, 1, 1, -2, 2);
		reduce_case(reduce_ops[k], KILN_DT_I32, SHAPE(3, 5), NULL, 0, 1, 1, -50, 50);
		reduce_case(reduce_ops[k], KILN_DT_F32, SHAPE(1, 1, 1), DIMS(1), 1, 1, 0, -2, 2);
	}
}

/* Reductions over a zero-sized dim give the identity (NaN for Mean). */
static void test_reduce_zero_size(void **state)
{
	(void)state;
	for (int k = 0; k < 4; k++) {
		reduce_case(reduce_ops[k], KILN_DT_F32, SHAPE(0, 3), DIMS(0), 1, 1, -1, -2, 2);
		reduce_case(reduce_ops[k], KILN_DT_F32, SHAPE(3, 0), DIMS(0), 1, 0, -1, -2, 2);
		reduce_case(reduce_ops[k], KILN_DT_I8, SHAPE(4, 0, 2), DIMS(1), 1, 0, -1, -2, 2);
		reduce_case(reduce_ops[k], KILN_DT_F16, SHAPE(4, 0, 2), DIMS(1, 2), 2, 1, -1, -2, 2);
	}
}

static void test_reduce_dtypes(void **state)
{
	(void)state;
	static const kiln_dtype fl[] = {KILN_DT_F16, KILN_DT_BF16, KILN_DT_F64};
	static const kiln_dtype in[] = {KILN_DT_I64, KILN_DT_I32, KILN_DT_I8, KILN_DT_U8};
	for (int k = 0; k < 4; k++) {
		for (int i = 0; i < 3; i++) {
			reduce_case(reduce_ops[k], fl[i], SHAPE(3, 17, 5), DIMS(1), 1, 1, -1, -2, 2);
			reduce_case(reduce_ops[k], fl[i], SHAPE(3, 17, 5), DIMS(0, 2), 2, 0, -1, -2, 2);
			reduce_case(reduce_ops[k], fl[i], SHAPE(2, 33), DIMS(-1), 1, 0, -1, -2, 2);
		}
		for (int i = 0; i < 4; i++) {
			reduce_case(reduce_ops[k], in[i], SHAPE(3, 17, 5), DIMS(1), 1, 1, -1, -100, 100);
			reduce_case(reduce_ops[k], in[i], SHAPE(3, 17, 5), DIMS(0, 2), 2, 0, -1, -100, 100);
			reduce_case(reduce_ops[k], in[i], SHAPE(257), NULL, -1, 0, -1, -100, 100);
		}
	}
	for (int k = 2; k < 4; k++) {
		reduce_case(reduce_ops[k], KILN_DT_BOOL, SHAPE(3, 17), DIMS(1), 1, 1, -1, 0, 1);
		reduce_case(reduce_ops[k], KILN_DT_BOOL, SHAPE(3, 17), DIMS(0), 1, 0, -1, 0, 1);
	}
}

static double nan_pattern(int64_t i)
{
	static const double v[] = {1.0, NAN, -3.0, INFINITY, -INFINITY, 2.0, 0.5};
	return v[i % 7];
}

/* Max and Min propagate NaN; sums of +-inf give NaN in both. */
static void test_reduce_nan(void **state)
{
	(void)state;
	static const kiln_dtype dts[] = {KILN_DT_F32, KILN_DT_F16, KILN_DT_F64};
	for (int k = 0; k < 12; k++) {
		for (int rowmode = 0; rowmode < 2; rowmode++) {
			kiln_graph *g = kh_graph();
			kiln_value *ins[2] = {const_fn(g, dts[k / 4], 2, DIMS(9, 40), nan_pattern),
			                      const_i64(g, 1, (int64_t[]){rowmode})};
			kh_add(g, reduce_ops[k % 4], ins, 2, 1);
			kh_check_tol(g, "reduce with NaN and inf", 1e-5, 0);
		}
	}
}

/* ---- Global pools ---------------------------------------------------------- */

static void test_global_pools(void **state)
{
	(void)state;
	static const axes_case shapes[] = {
		{4, {2, 3, 5, 7}, 0, {0}}, {3, {1, 17, 1}, 0, {0}}, {5, {2, 3, 2, 3, 4}, 0, {0}},
		{4, {1, 64, 16, 16}, 0, {0}}, {3, {3, 1, 33}, 0, {0}},
	};
	static const kiln_dtype dts[] = {KILN_DT_F32, KILN_DT_F16, KILN_DT_BF16, KILN_DT_F64};
	for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
		for (int d = 0; d < 4; d++) {
			for (int m = 0; m < 2; m++) {
				kiln_graph *g = kh_graph();
				kiln_value *x = kh_input(g, dts[d], shapes[s].rank, shapes[s].dims);
				kiln_op op = m ? KILN_OP_GLOBAL_MAX_POOL : KILN_OP_GLOBAL_AVG_POOL;
				kh_add(g, op, &x, 1, 1);
				bool exact = m || dts[d] != KILN_DT_F32;
				kh_check_tol(g, m ? "GlobalMaxPool" : "GlobalAveragePool",
				             exact ? 0 : 1e-4, exact ? 0 : 1e-5);
			}
		}
	}
}

/* ---- Softmax, LogSoftmax --------------------------------------------------- */

static void softmax_case(kiln_op op, kiln_dtype dt, int rank, const int64_t *dims, int64_t axis,
                         double lo, double hi)
{
	kiln_graph *g = kh_graph();
	kiln_value *x = kh_input(g, dt, rank, dims);
	kiln_node *n = kh_add(g, op, &x, 1, 1);
	kiln_node_set_int(g, n, "axis", axis);
	char what[128];
	snprintf(what, sizeof what, "%s %s rank %d axis %lld", kiln_op_name(op), kiln_dtype_name(dt),
	         rank, (long long)axis);
	kh_opts o = kh_defaults();
	o.rtol = dt == KILN_DT_F32 ? 1e-4 : 0;
	o.atol = dt == KILN_DT_F32 ? 1e-6 : 0;
	o.lo = lo;
	o.hi = hi;
	kh_check_threads(g, what, o);
}

static void test_softmax(void **state)
{
	(void)state;
	static const axes_case cases[] = {
		{1, {1}, 1, {0}},          {1, {17}, 1, {-1}},        {2, {3, 17}, 1, {-1}},
		{2, {3, 17}, 1, {0}},      {3, {2, 33, 3}, 1, {1}},   {3, {2, 33, 17}, 1, {1}},
		{2, {4, 257}, 1, {1}},     {2, {5, 3}, 1, {-1}},      {5, {2, 3, 4, 5, 6}, 1, {2}},
		{5, {2, 3, 4, 5, 6}, 1, {0}}, {2, {64, 768}, 1, {-1}}, {3, {4, 128, 40}, 1, {1}},
		{2, {1, 3072}, 1, {-1}},
	};
	for (int log = 0; log < 2; log++) {
		kiln_op op = log ? KILN_OP_LOG_SOFTMAX : KILN_OP_SOFTMAX;
		for (size_t c = 0; c < sizeof cases / sizeof *cases; c++)
			softmax_case(op, KILN_DT_F32, cases[c].rank, cases[c].dims, cases[c].axes[0], -2, 2);
		softmax_case(op, KILN_DT_F32, SHAPE(3, 100), -1, -60, 60); /* wide range: max matters */
		softmax_case(op, KILN_DT_F16, SHAPE(3, 17), -1, -2, 2);
		softmax_case(op, KILN_DT_BF16, SHAPE(2, 5, 3), 1, -2, 2);
		softmax_case(op, KILN_DT_F64, SHAPE(3, 33), 0, -2, 2);
	}
}

static double inf_rows(int64_t i)
{
	/* row 0 all -inf, row 1 one NaN, row 2 +inf and finite, row 3 -inf and finite */
	static const double v[4][5] = {
		{-INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY},
		{1, 2, NAN, 0, -1},
		{INFINITY, 0, 1, 2, 3},
		{-INFINITY, 0, 1, -INFINITY, 3},
	};
	return v[i / 5][i % 5];
}

static void test_softmax_special_values(void **state)
{
	(void)state;
	for (int log = 0; log < 2; log++) {
		for (int axis = 0; axis < 2; axis++) {
			kiln_graph *g = kh_graph();
			kiln_value *x = const_fn(g, KILN_DT_F32, 2, DIMS(4, 5), inf_rows);
			kiln_op op = log ? KILN_OP_LOG_SOFTMAX : KILN_OP_SOFTMAX;
			kiln_node *n = kh_add(g, op, &x, 1, 1);
			kiln_node_set_int(g, n, "axis", axis ? 1 : 0);
			kh_check_tol(g, "softmax of inf and NaN", 1e-5, 1e-6);
		}
	}
}

/* ---- LayerNormalization ---------------------------------------------------- */

static void layer_norm_case(kiln_dtype dt, int rank, const int64_t *dims, int64_t axis,
                            int s_rank, const int64_t *s_dims, int b_rank, const int64_t *b_dims,
                            int n_out, int64_t stash)
{
	kiln_graph *g = kh_graph();
	kiln_value *ins[3] = {kh_input(g, dt, rank, dims), kh_input(g, dt, s_rank, s_dims),
	                      b_rank >= 0 ? kh_input(g, dt, b_rank, b_dims) : NULL};
	kiln_node *n = kh_add(g, KILN_OP_LAYER_NORM, ins, b_rank >= 0 ? 3 : 2, n_out);
	kiln_node_set_int(g, n, "axis", axis);
	kiln_node_set_float(g, n, "epsilon", 1e-3f);
	if (stash)
		kiln_node_set_int(g, n, "stash_type", stash);
	char what[128];
	snprintf(what, sizeof what, "LayerNorm %s rank %d axis %lld scale rank %d bias rank %d outs %d",
	         kiln_dtype_name(dt), rank, (long long)axis, s_rank, b_rank, n_out);
	kh_check_tol(g, what, dt == KILN_DT_F32 ? 1e-4 : 0, dt == KILN_DT_F32 ? 1e-4 : 0);
}

static void test_layer_norm(void **state)
{
	(void)state;
	for (int outs = 1; outs <= 3; outs += 2) {
		layer_norm_case(KILN_DT_F32, SHAPE(3, 17), -1, SHAPE(17), SHAPE(17), outs, 0);
		layer_norm_case(KILN_DT_F32, SHAPE(3, 17), -1, SHAPE(17), -1, NULL, outs, 0);
		layer_norm_case(KILN_DT_F32, SHAPE(1), 0, SHAPE(1), SHAPE(1), outs, 0);
		layer_norm_case(KILN_DT_F32, SHAPE(2, 3, 33), 1, SHAPE(3, 33), SHAPE(33), outs, 0);
		layer_norm_case(KILN_DT_F32, SHAPE(2, 3, 33), 1, SHAPE(33), SHAPE(3, 1), outs, 0);
		layer_norm_case(KILN_DT_F32, SHAPE(2, 3, 33), 0, SHAPE(2, 1, 33), SHAPE(1), outs, 0);
		layer_norm_case(KILN_DT_F32, SHAPE(2, 3, 4, 5, 3), 2, SHAPE(4, 5, 3), SHAPE(4, 5, 3), outs, 0);
		layer_norm_case(KILN_DT_F32, SHAPE(4, 257), -1, SHAPE(257), SHAPE(257), outs, 0);
		layer_norm_case(KILN_DT_F32, SHAPE(2, 64, 768), -1, SHAPE(768), SHAPE(768), outs, 0);
		layer_norm_case(KILN_DT_F32, SHAPE(3, 5), -1, SHAPE(5), SHAPE(5), outs, 11); /* f64 stats */
		layer_norm_case(KILN_DT_F16, SHAPE(3, 17), -1, SHAPE(17), SHAPE(17), outs, 0);
		layer_norm_case(KILN_DT_F16, SHAPE(2, 3, 5), 1, SHAPE(5), SHAPE(3, 1), outs, 10);
		layer_norm_case(KILN_DT_BF16, SHAPE(2, 3, 5), -2, SHAPE(3, 5), -1, NULL, outs, 0);
		layer_norm_case(KILN_DT_F64, SHAPE(3, 33), -1, SHAPE(33), SHAPE(33), outs, 11);
	}
}

/* ---- BatchNormalization ---------------------------------------------------- */

static double positive(int64_t i)
{
	return 0.25 + (double)(i % 7) * 0.5;
}

static void batch_norm_case(kiln_dtype dt, kiln_dtype pdt, int rank, const int64_t *dims,
                            bool const_params)
{
	kiln_graph *g = kh_graph();
	int64_t c = dims[1];
	kiln_value *ins[5] = {kh_input(g, dt, rank, dims)};
	for (int i = 1; i < 5; i++)
		ins[i] = i == 4 || const_params ? const_fn(g, pdt, 1, &c, positive)
		                                : kh_input(g, pdt, 1, &c);
	kiln_node *n = kh_add(g, KILN_OP_BATCH_NORM, ins, 5, 1);
	kiln_node_set_float(g, n, "epsilon", 1e-2f);
	char what[128];
	snprintf(what, sizeof what, "BatchNorm %s params %s rank %d", kiln_dtype_name(dt),
	         kiln_dtype_name(pdt), rank);
	kh_check_tol(g, what, dt == KILN_DT_F32 ? 1e-4 : 0, dt == KILN_DT_F32 ? 1e-5 : 0);
}

static void test_batch_norm(void **state)
{
	(void)state;
	for (int cp = 0; cp < 2; cp++) {
		batch_norm_case(KILN_DT_F32, KILN_DT_F32, SHAPE(2, 3, 5, 7), cp);
		batch_norm_case(KILN_DT_F32, KILN_DT_F32, SHAPE(3, 4), cp);
		batch_norm_case(KILN_DT_F32, KILN_DT_F32, SHAPE(1, 17, 3, 3, 3), cp);
		batch_norm_case(KILN_DT_F32, KILN_DT_F32, SHAPE(2, 32, 33, 17), cp);
		batch_norm_case(KILN_DT_F32, KILN_DT_F16, SHAPE(2, 3, 17), cp);
		batch_norm_case(KILN_DT_F16, KILN_DT_F32, SHAPE(2, 3, 5, 7), cp);
		batch_norm_case(KILN_DT_BF16, KILN_DT_BF16, SHAPE(1, 3, 33), cp);
		batch_norm_case(KILN_DT_F64, KILN_DT_F64, SHAPE(2, 5, 3), cp);
	}
}

/* ---- MaxPool, AveragePool ---------------------------------------------------- */

typedef struct pool_attrs {
	int ns;                      /* spatial dims */
	int64_t k[3], s[3], dl[3];   /* 0 entries: attribute omitted */
	int64_t pads[6];
	bool has_pads;
	const char *auto_pad;
	int ceil, incl, order;
} pool_attrs;

static void pool_case(kiln_op op, kiln_dtype dt, int rank, const int64_t *dims, const pool_attrs *a,
                      int n_out)
{
	kiln_graph *g = kh_graph();
	kiln_value *x = kh_input(g, dt, rank, dims);
	kiln_node *n = kh_add(g, op, &x, 1, n_out);
	kiln_node_set_ints(g, n, "kernel_shape", a->k, a->ns);
	if (a->s[0])
		kiln_node_set_ints(g, n, "strides", a->s, a->ns);
	if (a->dl[0])
		kiln_node_set_ints(g, n, "dilations", a->dl, a->ns);
	if (a->has_pads)
		kiln_node_set_ints(g, n, "pads", a->pads, 2 * a->ns);
	if (a->auto_pad)
		kiln_node_set_string(g, n, "auto_pad", a->auto_pad);
	kiln_node_set_int(g, n, "ceil_mode", a->ceil);
	if (op == KILN_OP_AVERAGE_POOL)
		kiln_node_set_int(g, n, "count_include_pad", a->incl);
	else
		kiln_node_set_int(g, n, "storage_order", a->order);
	char what[160];
	snprintf(what, sizeof what, "%s %s rank %d k %lld s %lld dl %lld ceil %d incl %d auto %s outs %d",
	         kiln_op_name(op), kiln_dtype_name(dt), rank, (long long)a->k[a->ns - 1],
	         (long long)a->s[a->ns - 1], (long long)a->dl[a->ns - 1], a->ceil, a->incl,
	         a->auto_pad ? a->auto_pad : "-", n_out);
	bool exact = op == KILN_OP_MAX_POOL || dt != KILN_DT_F32;
	kh_opts o = kh_defaults();
	o.rtol = exact ? 0 : 1e-5;
	o.atol = exact ? 0 : 1e-6;
	if (!kiln_dtype_is_float(dt)) {
		o.lo = -130;
		o.hi = 130;
	}
	kh_check_threads(g, what, o);
}

static const pool_attrs pools_2d[] = {
	{2, {3, 3}, {2, 2}, {0}, {1, 1, 1, 1}, true, NULL, 0, 0, 0},   /* the ResNet stem */
	{2, {3, 3}, {1, 1}, {0}, {1, 1, 1, 1}, true, NULL, 0, 1, 0},
	{2, {3, 3}, {1, 1}, {0}, {1, 1, 1, 1}, true, NULL, 0, 0, 0},
	{2, {2, 2}, {2, 2}, {0}, {0}, false, NULL, 0, 0, 1},
	{2, {3, 3}, {2, 2}, {0}, {0, 1, 1, 0}, true, NULL, 1, 0, 1},   /* ceil, uneven pads */
	{2, {3, 3}, {2, 2}, {0}, {1, 1, 1, 1}, true, NULL, 1, 1, 0},
	{2, {3, 2}, {1, 1}, {2, 2}, {2, 1, 2, 1}, true, NULL, 0, 1, 0}, /* dilation */
	{2, {2, 3}, {3, 2}, {1, 2}, {0}, false, NULL, 1, 0, 0},
	{2, {3, 3}, {2, 2}, {0}, {0}, false, "SAME_UPPER", 0, 0, 0},
	{2, {4, 4}, {1, 1}, {0}, {0}, false, "SAME_LOWER", 0, 1, 0},
	{2, {5, 5}, {3, 3}, {0}, {0}, false, "VALID", 0, 0, 0},
	{2, {1, 1}, {1, 1}, {0}, {0}, false, NULL, 0, 0, 0},
	{2, {7, 7}, {1, 1}, {0}, {3, 3, 3, 3}, true, NULL, 0, 0, 1},
};

static void test_pool_2d_f32(void **state)
{
	(void)state;
	static const axes_case shapes[] = {
		{4, {2, 3, 17, 17}, 0, {0}}, {4, {1, 2, 33, 40}, 0, {0}}, {4, {1, 1, 8, 9}, 0, {0}},
		{4, {1, 16, 64, 64}, 0, {0}},
		/* rows longer than max pooling's reduced-row buffer (4096) */
		{4, {1, 1, 8, 4100}, 0, {0}},
	};
	for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
		for (size_t p = 0; p < sizeof pools_2d / sizeof *pools_2d; p++) {
			pool_case(KILN_OP_MAX_POOL, KILN_DT_F32, shapes[s].rank, shapes[s].dims, &pools_2d[p], 1);
			pool_case(KILN_OP_AVERAGE_POOL, KILN_DT_F32, shapes[s].rank, shapes[s].dims,
			          &pools_2d[p], 1);
		}
}

static void test_maxpool_indices(void **state)
{
	(void)state;
	for (size_t p = 0; p < sizeof pools_2d / sizeof *pools_2d; p++) {
		for (int order = 0; order < 2; order++) {
			pool_attrs a = pools_2d[p];
			a.order = order;
			pool_case(KILN_OP_MAX_POOL, KILN_DT_F32, SHAPE(2, 3, 9, 11), &a, 2);
			pool_case(KILN_OP_MAX_POOL, KILN_DT_I8, SHAPE(1, 2, 9, 11), &a, 2);
		}
	}
	pool_attrs d3 = {3, {2, 3, 2}, {1, 2, 1}, {0}, {1, 0, 1, 0, 1, 1}, true, NULL, 1, 0, 1};
	pool_case(KILN_OP_MAX_POOL, KILN_DT_F32, SHAPE(1, 2, 5, 6, 7), &d3, 2);
	pool_attrs d1 = {1, {3}, {2}, {2}, {1, 2}, true, NULL, 1, 0, 1};
	pool_case(KILN_OP_MAX_POOL, KILN_DT_U8, SHAPE(2, 3, 17), &d1, 2);
}

static void test_pool_1d_3d(void **state)
{
	(void)state;
	static const pool_attrs d1[] = {
		{1, {3}, {1}, {0}, {1, 1}, true, NULL, 0, 0, 0},
		{1, {2}, {2}, {0}, {0}, false, NULL, 1, 0, 0},
		{1, {3}, {2}, {2}, {0, 2}, true, NULL, 1, 1, 0},
		{1, {5}, {1}, {0}, {0}, false, "SAME_UPPER", 0, 0, 0},
	};
	static const pool_attrs d3[] = {
		{3, {2, 3, 3}, {1, 2, 1}, {0}, {1, 0, 1, 0, 1, 1}, true, NULL, 0, 0, 0},
		{3, {3, 3, 3}, {2, 2, 2}, {0}, {1, 1, 1, 1, 1, 1}, true, NULL, 1, 1, 0},
		{3, {2, 2, 2}, {1, 1, 1}, {2, 1, 2}, {0}, false, NULL, 0, 0, 0},
	};
	for (int m = 0; m < 2; m++) {
		kiln_op op = m ? KILN_OP_MAX_POOL : KILN_OP_AVERAGE_POOL;
		for (size_t p = 0; p < sizeof d1 / sizeof *d1; p++) {
			pool_case(op, KILN_DT_F32, SHAPE(2, 3, 33), &d1[p], 1);
			pool_case(op, KILN_DT_F32, SHAPE(1, 1, 3), &d1[p], 1);
			pool_case(op, KILN_DT_F16, SHAPE(2, 3, 17), &d1[p], 1);
		}
		for (size_t p = 0; p < sizeof d3 / sizeof *d3; p++) {
			pool_case(op, KILN_DT_F32, SHAPE(1, 2, 5, 6, 17), &d3[p], 1);
			pool_case(op, KILN_DT_F64, SHAPE(1, 2, 4, 5, 6), &d3[p], 1);
		}
	}
}

static void test_pool_dtypes(void **state)
{
	(void)state;
	static const kiln_dtype fl[] = {KILN_DT_F16, KILN_DT_BF16, KILN_DT_F64};
	for (size_t p = 0; p < sizeof pools_2d / sizeof *pools_2d; p++) {
		for (int i = 0; i < 3; i++) {
			pool_case(KILN_OP_MAX_POOL, fl[i], SHAPE(1, 2, 9, 10), &pools_2d[p], 1);
			pool_case(KILN_OP_AVERAGE_POOL, fl[i], SHAPE(1, 2, 9, 10), &pools_2d[p], 1);
		}
		pool_case(KILN_OP_MAX_POOL, KILN_DT_I8, SHAPE(1, 2, 9, 10), &pools_2d[p], 1);
		pool_case(KILN_OP_MAX_POOL, KILN_DT_U8, SHAPE(1, 2, 9, 10), &pools_2d[p], 1);
	}
}

/* ---- lowering errors ------------------------------------------------------- */

static void test_lowering_errors(void **state)
{
	(void)state;
	kiln_graph *g = kh_graph();
	kiln_value *x = kh_input(g, KILN_DT_F32, SHAPE(1, 1, 3, 3, 3, 3));
	kiln_node *n = kiln_graph_add_node(g, KILN_OP_MAX_POOL, "pool4d", &x, 1, NULL, 1);
	assert_non_null(n);
	assert_int_equal(kiln_graph_add_output(g, n->outputs[0]), KILN_OK);
	kiln_node_set_ints(g, n, "kernel_shape", DIMS(2, 2, 2, 2), 4);
	kh_typecheck(g, "4-D MaxPool");
	kh_opts o = kh_defaults();
	char msg[512];
	assert_int_equal(kh_run(g, &o, msg, sizeof msg), KILN_ERR_UNSUPPORTED);
	assert_string_equal(msg, "kharness: node 'pool4d' (MaxPool): 4 spatial dims (1 to 3 supported)");
	kiln_graph_destroy(g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reduce_f32_axes),
		cmocka_unit_test(test_reduce_empty_axes),
		cmocka_unit_test(test_reduce_zero_size),
		cmocka_unit_test(test_reduce_dtypes),
		cmocka_unit_test(test_reduce_nan),
		cmocka_unit_test(test_global_pools),
		cmocka_unit_test(test_softmax),
		cmocka_unit_test(test_softmax_special_values),
		cmocka_unit_test(test_layer_norm),
		cmocka_unit_test(test_batch_norm),
		cmocka_unit_test(test_pool_2d_f32),
		cmocka_unit_test(test_maxpool_indices),
		cmocka_unit_test(test_pool_1d_3d),
		cmocka_unit_test(test_pool_dtypes),
		cmocka_unit_test(test_lowering_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
