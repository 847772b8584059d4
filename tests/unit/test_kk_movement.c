/* test_kk_movement.c — the movement lowering and kernels
 * (codegen/cpu/lower_movement.c, kernels/kk_movement.c) against the
 * interpreter.
 *
 * Each case is a small graph; kh_run fills its graph inputs with random data,
 * runs the lowering and the native kernel, and compares with the interpreter
 * at 1 and 3 threads. Movement is exact (every dtype, bit for bit up to the
 * sign of zero); Resize in f32 sums in f32 and gets atol 1e-5; integer and
 * f16 Resize, Range and the quantizers are exact. Sizes are odd, and some
 * cases are large enough (> 32 KiB) to be split across threads. */
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
#include "kharness.h"


static const kiln_dtype all_dtypes[] = {KILN_DT_F32, KILN_DT_F16, KILN_DT_BF16,
                                        KILN_DT_F64, KILN_DT_I64, KILN_DT_I32,
                                        KILN_DT_I8,  KILN_DT_U8,  KILN_DT_BOOL};
#define N_DTYPES 9
/* One dtype per element size. */
static const kiln_dtype size_dtypes[] = {KILN_DT_F32, KILN_DT_F16, KILN_DT_I64, KILN_DT_U8};

/* A constant of dtype dt and shape dims holding vals. */
static kiln_value *cnst_shaped(kiln_graph *g, kiln_dtype dt, int rank, const int64_t *dims,
                               const double *vals)
{
	kiln_type t = kh_type(dt, rank, dims);
	int64_t count = kiln_type_numel(&t);
	kiln_tensor tmp = {.type = t, .data = calloc((size_t)(count ? count : 1), 8)};
	assert_non_null(tmp.data);
	for (int64_t i = 0; i < count; i++)
		kiln_tensor_set_f64(&tmp, i, vals[i]);
	kiln_value *v = kiln_graph_add_const(g, NULL, &t, tmp.data);
	free(tmp.data);
	assert_non_null(v);
	return v;
}

static kiln_value *cnst(kiln_graph *g, kiln_dtype dt, const double *vals, int64_t count)
{
	return cnst_shaped(g, dt, 1, (int64_t[]){count}, vals);
}

static kiln_value *ints(kiln_graph *g, const int64_t *vals, int64_t count)
{
	double tmp[64];
	for (int64_t i = 0; i < count; i++)
		tmp[i] = (double)vals[i];
	return cnst(g, KILN_DT_I64, tmp, count);
}

#define INTS(g, ...) ints(g, DIMS(__VA_ARGS__), NDIMS(__VA_ARGS__))

static kiln_value *scalar(kiln_graph *g, kiln_dtype dt, double v)
{
	return cnst_shaped(g, dt, 0, NULL, &v);
}

/* Types the graph and makes every output of n a graph output. */
static void finish(kiln_graph *g, kiln_node *n, const char *what)
{
	kiln_diag d;
	kiln_diag_init(&d, NULL);
	d.fn = NULL;
	if (kiln_infer_shapes(g, &d) != KILN_OK) {
		char msg[sizeof d.last];
		memcpy(msg, d.last, sizeof msg);
		kiln_graph_destroy(g);
		fail_msg("%s: shape inference: %s", what, msg);
	}
	for (int i = 0; i < n->n_outputs; i++)
		assert_int_equal(kiln_graph_add_output(g, n->outputs[i]), KILN_OK);
	assert_int_equal(kiln_graph_verify(g, &d), KILN_OK);
}

static int n_checked;

/* Runs g at 1 and 3 threads against the interpreter, then destroys it. */
static void check_with(kiln_graph *g, const char *what, double lo, double hi, double atol)
{
	char msg[1024];
	for (int th = 1; th <= 3; th += 2) {
		kh_opts o = kh_defaults();
		o.threads = th;
		o.lo = lo;
		o.hi = hi;
		o.atol = atol;
		o.rtol = atol ? 1e-5 : 0;
		o.seed = 7 + (uint64_t)th;
		if (kh_run(g, &o, msg, sizeof msg) != KILN_OK) {
			kiln_graph_destroy(g);
			fail_msg("%s (threads %d): %s", what, th, msg);
		}
	}
	n_checked++;
	kiln_graph_destroy(g);
}

static void check(kiln_graph *g, const char *what)
{
	check_with(g, what, -2, 2, 0);
}

/* The lowering's error for g (one node), which must be exactly `want`. */
static void check_error(kiln_graph *g, kiln_status st, const char *want)
{
	char msg[1024];
	kh_opts o = kh_defaults();
	kiln_status got = kh_run(g, &o, msg, sizeof msg);
	kiln_graph_destroy(g);
	assert_string_equal(msg, want);
	assert_int_equal(got, st);
}

/* ---- copies ---------------------------------------------------------------- */

static void test_copies(void **state)
{
	(void)state;
	n_checked = 0;
	char what[128];
	for (int k = 0; k < N_DTYPES; k++) {
		kiln_dtype dt = all_dtypes[k];
		snprintf(what, sizeof what, "Reshape %s", kiln_dtype_name(dt));
		kiln_graph *g = kiln_graph_create("t", NULL);
		kiln_value *ins[2] = {kh_input(g, dt, 3, DIMS(3, 5, 7)), INTS(g, 7, -1)};
		kiln_node *n = kh_node(g, KILN_OP_RESHAPE, ins, 2, 1);
		finish(g, n, what);
		check(g, what);

		snprintf(what, sizeof what, "Identity %s", kiln_dtype_name(dt));
		g = kiln_graph_create("t", NULL);
		kiln_value *x = kh_input(g, dt, 2, DIMS(17, 33));
		n = kh_node(g, KILN_OP_IDENTITY, &x, 1, 1);
		finish(g, n, what);
		check(g, what);
	}
	static const int64_t axes[] = {0, 1, 2, -1, 3};
	for (int a = 0; a < 5; a++) {
		kiln_graph *g = kiln_graph_create("t", NULL);
		kiln_value *x = kh_input(g, KILN_DT_F16, 3, DIMS(2, 3, 5));
		kiln_node *n = kh_node(g, KILN_OP_FLATTEN, &x, 1, 1);
		kiln_node_set_int(g, n, "axis", axes[a]);
		finish(g, n, "Flatten");
		check(g, "Flatten");
	}
	kiln_graph *g = kiln_graph_create("t", NULL);
	kiln_value *sq[2] = {kh_input(g, KILN_DT_I8, 4, DIMS(1, 3, 1, 5)), INTS(g, -2, 0)};
	kiln_node *n = kh_node(g, KILN_OP_SQUEEZE, sq, 2, 1);
	finish(g, n, "Squeeze");
	check(g, "Squeeze");
	g = kiln_graph_create("t", NULL);
	kiln_value *x = kh_input(g, KILN_DT_F64, 2, DIMS(3, 5));
	n = kh_node(g, KILN_OP_SQUEEZE, &x, 1, 1);
	finish(g, n, "Squeeze none");
	check(g, "Squeeze none");
	g = kiln_graph_create("t", NULL);
	kiln_value *un[2] = {kh_input(g, KILN_DT_BOOL, 2, DIMS(3, 5)), INTS(g, 0, -1)};
	n = kh_node(g, KILN_OP_UNSQUEEZE, un, 2, 1);
	finish(g, n, "Unsqueeze");
	check(g, "Unsqueeze");
	/* large enough to be split across threads */
	g = kiln_graph_create("t", NULL);
	kiln_value *big[2] = {kh_input(g, KILN_DT_F32, 2, DIMS(100, 1001)), INTS(g, -1)};
	n = kh_node(g, KILN_OP_RESHAPE, big, 2, 1);
	finish(g, n, "Reshape large");
	check(g, "Reshape large");
	assert_int_equal(n_checked, 2 * N_DTYPES + 9);
}

static void test_dropout(void **state)
{
	(void)state;
	n_checked = 0;
	static const kiln_dtype dts[] = {KILN_DT_F32, KILN_DT_F16, KILN_DT_BF16, KILN_DT_F64};
	for (int k = 0; k < 4; k++)
		for (int variant = 0; variant < 3; variant++) {
			kiln_graph *g = kiln_graph_create("t", NULL);
			kiln_value *ins[3] = {kh_input(g, dts[k], 2, DIMS(3, 17)), scalar(g, KILN_DT_F32, 0.25),
			                      scalar(g, KILN_DT_BOOL, 0)};
			/* variant 0: data only, one output; 1: mask too; 2: ratio, training off */
			kiln_node *n = kh_node(g, KILN_OP_DROPOUT, ins, variant == 2 ? 3 : 1,
			                       variant == 0 ? 1 : 2);
			finish(g, n, "Dropout");
			check(g, "Dropout");
		}
	/* training with ratio 0 is deterministic */
	kiln_graph *g = kiln_graph_create("t", NULL);
	kiln_value *ins[3] = {kh_input(g, KILN_DT_F32, 1, DIMS(100)), scalar(g, KILN_DT_F32, 0),
	                      scalar(g, KILN_DT_BOOL, 1)};
	kiln_node *n = kh_node(g, KILN_OP_DROPOUT, ins, 3, 2);
	finish(g, n, "Dropout ratio 0");
	check(g, "Dropout ratio 0");

	g = kiln_graph_create("t", NULL);
	kiln_value *ins2[3] = {kh_input(g, KILN_DT_F32, 1, DIMS(10)), scalar(g, KILN_DT_F32, 0.5),
	                       scalar(g, KILN_DT_BOOL, 1)};
	n = kh_node(g, KILN_OP_DROPOUT, ins2, 3, 2);
	finish(g, n, "Dropout training");
	check_error(g, KILN_ERR_UNSUPPORTED,
	            "kharness: node 'node_0' (Dropout): training mode with ratio 0.5 is random; "
	            "only inference is supported");

	g = kiln_graph_create("t", NULL);
	const float xs[10] = {1, -2, 3, -4, 5, -6, 7, -8, 9, -10};
	kiln_type xt = {.dtype = KILN_DT_F32, .rank = 1, .dims = {10}};
	kiln_value *ins3[3] = {kiln_graph_add_const(g, "x", &xt, xs), kh_input(g, KILN_DT_F32, 0, NULL),
	                       kh_input(g, KILN_DT_BOOL, 0, NULL)};
	n = kh_node(g, KILN_OP_DROPOUT, ins3, 3, 2);
	finish(g, n, "Dropout run-time ratio and training_mode");
	/* ratio and training_mode arrive at run time (the harness draws ratio
	 * in [0, 0] and training either way; x is constant): the compiled
	 * Dropout is the inference copy, which is what the interpreter computes
	 * for ratio 0. */
	check_with(g, "Dropout run-time ratio and training_mode", 0, 0, 0);
}

/* ---- Transpose ---------------------------------------------------------------- */

static void transpose_case(kiln_dtype dt, int rank, const int64_t *dims, const int64_t *perm)
{
	char what[160];
	int len = snprintf(what, sizeof what, "Transpose %s [", kiln_dtype_name(dt));
	for (int k = 0; k < rank; k++)
		len += snprintf(what + len, sizeof what - (size_t)len, "%lld%s", (long long)dims[k],
		                k + 1 < rank ? "," : "] perm");
	for (int k = 0; perm && k < rank; k++)
		len += snprintf(what + len, sizeof what - (size_t)len, " %lld", (long long)perm[k]);
	kiln_graph *g = kiln_graph_create("t", NULL);
	kiln_value *x = kh_input(g, dt, rank, dims);
	kiln_node *n = kh_node(g, KILN_OP_TRANSPOSE, &x, 1, 1);
	if (perm)
		kiln_node_set_ints(g, n, "perm", perm, rank);
	finish(g, n, what);
	check(g, what);
}

static void test_transpose(void **state)
{
	(void)state;
	n_checked = 0;
	for (int k = 0; k < N_DTYPES; k++) {
		transpose_case(all_dtypes[k], 2, DIMS(3, 17), NULL);
		transpose_case(all_dtypes[k], 4, DIMS(1, 13, 4, 9), DIMS(0, 2, 1, 3));
		transpose_case(all_dtypes[k], 3, DIMS(4, 33, 17), DIMS(0, 2, 1));
	}
	/* every permutation of a 4-D tensor, per element size */
	for (int s = 0; s < 4; s++) {
		int64_t p[4];
		for (p[0] = 0; p[0] < 4; p[0]++)
			for (p[1] = 0; p[1] < 4; p[1]++)
				for (p[2] = 0; p[2] < 4; p[2]++)
					for (p[3] = 0; p[3] < 4; p[3]++) {
						if (p[0] == p[1] || p[0] == p[2] || p[0] == p[3] || p[1] == p[2] ||
						    p[1] == p[3] || p[2] == p[3])
							continue;
						transpose_case(size_dtypes[s], 4, DIMS(2, 3, 5, 7), p);
					}
	}
	/* BERT-like heads, a large tiled 2-D transpose, odd tiles, high rank */
	transpose_case(KILN_DT_F32, 4, DIMS(1, 128, 4, 64), DIMS(0, 2, 1, 3));
	transpose_case(KILN_DT_F32, 4, DIMS(1, 4, 128, 64), DIMS(0, 1, 3, 2));
	transpose_case(KILN_DT_F32, 2, DIMS(333, 100), DIMS(1, 0));
	transpose_case(KILN_DT_U8, 2, DIMS(257, 129), DIMS(1, 0));
	transpose_case(KILN_DT_I64, 3, DIMS(33, 17, 65), DIMS(2, 0, 1));
	transpose_case(KILN_DT_F16, 6, DIMS(2, 1, 3, 2, 5, 3), DIMS(5, 3, 1, 0, 4, 2));
	transpose_case(KILN_DT_F32, 8, DIMS(2, 3, 2, 2, 3, 2, 2, 3), DIMS(7, 0, 6, 1, 5, 2, 4, 3));
	transpose_case(KILN_DT_F32, 1, DIMS(17), NULL);
	transpose_case(KILN_DT_F32, 0, NULL, NULL);
	transpose_case(KILN_DT_F32, 3, DIMS(3, 0, 5), DIMS(2, 1, 0));
	transpose_case(KILN_DT_F32, 3, DIMS(1, 1, 5), DIMS(2, 1, 0));
	assert_int_equal(n_checked, 3 * N_DTYPES + 4 * 24 + 11);
}

/* ---- Concat, Split -------------------------------------------------------------- */

static void test_concat(void **state)
{
	(void)state;
	n_checked = 0;
	char what[96];
	static const int64_t axes[] = {0, 1, 2, -1, -3};
	for (int s = 0; s < 4; s++)
		for (int a = 0; a < 5; a++) {
			int ax = (int)(axes[a] < 0 ? axes[a] + 3 : axes[a]);
			int64_t d0[3] = {3, 5, 7}, d1[3] = {3, 5, 7}, d2[3] = {3, 5, 7};
			d0[ax] = 2;
			d1[ax] = 1;
			d2[ax] = 0; /* an empty piece */
			kiln_graph *g = kiln_graph_create("t", NULL);
			kiln_value *ins[4] = {kh_input(g, size_dtypes[s], 3, d0), kh_input(g, size_dtypes[s], 3, d1),
			                      kh_input(g, size_dtypes[s], 3, d2), kh_input(g, size_dtypes[s], 3, d0)};
			kiln_node *n = kh_node(g, KILN_OP_CONCAT, ins, 4, 1);
			kiln_node_set_int(g, n, "axis", axes[a]);
			snprintf(what, sizeof what, "Concat %s axis %lld", kiln_dtype_name(size_dtypes[s]),
			         (long long)axes[a]);
			finish(g, n, what);
			check(g, what);
		}
	for (int a = 0; a < 2; a++) {
		/* large: a CNN channel concat, and rows of pieces longer than a chunk */
		kiln_graph *g = kiln_graph_create("t", NULL);
		kiln_value *ins[3] = {kh_input(g, KILN_DT_F32, 4, a ? DIMS(2, 13, 33, 33) : DIMS(1, 64, 15, 15)),
		                      kh_input(g, KILN_DT_F32, 4, a ? DIMS(2, 7, 33, 33) : DIMS(1, 3, 15, 15)),
		                      kh_input(g, KILN_DT_F32, 4, a ? DIMS(2, 1, 33, 33) : DIMS(1, 64, 15, 15))};
		kiln_node *n = kh_node(g, KILN_OP_CONCAT, ins, 3, 1);
		kiln_node_set_int(g, n, "axis", 1);
		finish(g, n, "Concat large");
		check(g, "Concat large");
	}
	kiln_graph *g = kiln_graph_create("t", NULL);
	kiln_value *one = kh_input(g, KILN_DT_BOOL, 1, DIMS(5));
	kiln_node *n = kh_node(g, KILN_OP_CONCAT, &one, 1, 1);
	kiln_node_set_int(g, n, "axis", 0);
	finish(g, n, "Concat one");
	check(g, "Concat one");
	assert_int_equal(n_checked, 4 * 5 + 3);
}

static void test_split(void **state)
{
	(void)state;
	n_checked = 0;
	char what[96];
	for (int s = 0; s < 4; s++)
		for (int a = -3; a < 3; a++) {
			kiln_dtype dt = size_dtypes[s];
			/* split sizes as an input (a zero among them) */
			kiln_graph *g = kiln_graph_create("t", NULL);
			int ax = a < 0 ? a + 3 : a;
			int64_t dims[3] = {4, 6, 9};
			int64_t sizes[3] = {1, 0, dims[ax] - 1};
			kiln_value *ins[2] = {kh_input(g, dt, 3, dims), ints(g, sizes, 3)};
			kiln_node *n = kh_node(g, KILN_OP_SPLIT, ins, 2, 3);
			kiln_node_set_int(g, n, "axis", a);
			snprintf(what, sizeof what, "Split %s axis %d sizes", kiln_dtype_name(dt), a);
			finish(g, n, what);
			check(g, what);
			/* num_outputs with an uneven last chunk */
			g = kiln_graph_create("t", NULL);
			kiln_value *x = kh_input(g, dt, 3, DIMS(5, 7, 11));
			n = kh_node(g, KILN_OP_SPLIT, &x, 1, 3);
			kiln_node_set_int(g, n, "axis", a);
			kiln_node_set_int(g, n, "num_outputs", 3);
			snprintf(what, sizeof what, "Split %s axis %d num_outputs", kiln_dtype_name(dt), a);
			finish(g, n, what);
			check(g, what);
		}
	kiln_graph *g = kiln_graph_create("t", NULL);
	kiln_value *x = kh_input(g, KILN_DT_F32, 2, DIMS(4, 30000));
	kiln_node *n = kh_node(g, KILN_OP_SPLIT, &x, 1, 2);
	kiln_node_set_int(g, n, "axis", 1);
	finish(g, n, "Split large");
	check(g, "Split large");
	assert_int_equal(n_checked, 4 * 6 * 2 + 1);
}

/* ---- Slice ------------------------------------------------------------------- */

static void slice_case(kiln_dtype dt, int rank, const int64_t *dims, int count,
                       const int64_t *starts, const int64_t *ends, const int64_t *axes,
                       const int64_t *steps)
{
	kiln_graph *g = kiln_graph_create("t", NULL);
	kiln_value *ins[5] = {kh_input(g, dt, rank, dims), ints(g, starts, count), ints(g, ends, count),
	                      axes ? ints(g, axes, count) : NULL, steps ? ints(g, steps, count) : NULL};
	kiln_node *n = kh_node(g, KILN_OP_SLICE, ins, steps ? 5 : axes ? 4 : 3, 1);
	char what[128];
	snprintf(what, sizeof what, "Slice %s rank %d start %lld end %lld step %lld",
	         kiln_dtype_name(dt), rank, (long long)starts[0], (long long)ends[0],
	         steps ? (long long)steps[0] : 1LL);
	finish(g, n, what);
	check(g, what);
}

static void test_slice(void **state)
{
	(void)state;
	n_checked = 0;
	static const int64_t big = INT64_MAX, small = INT64_MIN;
	for (int s = 0; s < 4; s++) {
		kiln_dtype dt = size_dtypes[s];
		slice_case(dt, 2, DIMS(7, 17), 2, DIMS(1, 2), DIMS(5, 15), NULL, NULL);
		slice_case(dt, 2, DIMS(7, 17), 1, DIMS(-3), DIMS(big), DIMS(-1), NULL);
		slice_case(dt, 3, DIMS(5, 6, 17), 2, DIMS(-1, 15), DIMS(small, 1), DIMS(0, 2),
		           DIMS(-1, -3));
		slice_case(dt, 3, DIMS(5, 6, 17), 3, DIMS(0, 100, 1), DIMS(5, -100, 17),
		           DIMS(0, 1, 2), DIMS(2, -2, 3));
		slice_case(dt, 2, DIMS(7, 17), 1, DIMS(4), DIMS(2), DIMS(1), NULL);  /* empty */
		slice_case(dt, 2, DIMS(7, 17), 1, DIMS(-100), DIMS(100), DIMS(0), DIMS(1000));
		slice_case(dt, 2, DIMS(7, 17), 1, DIMS(3), DIMS(INT64_MAX), DIMS(1), DIMS(INT64_MAX));
		slice_case(dt, 4, DIMS(2, 3, 4, 5), 1, DIMS(3), DIMS(1), DIMS(-2), DIMS(-1));
		slice_case(dt, 1, DIMS(33), 1, DIMS(32), DIMS(small), NULL, DIMS(-1));
	}
	slice_case(KILN_DT_BOOL, 2, DIMS(9, 9), 2, DIMS(8, 0), DIMS(0, 9), DIMS(0, 1),
	           DIMS(-2, 4));
	slice_case(KILN_DT_F32, 2, DIMS(300, 101), 1, DIMS(1), DIMS(100), DIMS(1), NULL);
	slice_case(KILN_DT_F32, 2, DIMS(300, 101), 1, DIMS(-1), DIMS(small), DIMS(1), DIMS(-1));
	assert_int_equal(n_checked, 4 * 9 + 3);
}

/* ---- Gather ------------------------------------------------------------------ */

static void test_gather(void **state)
{
	(void)state;
	n_checked = 0;
	char what[96];
	for (int s = 0; s < 4; s++)
		for (int a = -3; a < 3; a++)
			for (int it = 0; it < 3; it++) {
				kiln_dtype dt = size_dtypes[s];
				kiln_graph *g = kiln_graph_create("t", NULL);
				kiln_value *idx;
				if (it == 2)
					idx = cnst_shaped(g, KILN_DT_I64, 2, DIMS(2, 3),
					                  (const double[]){0, -1, 2, -3, 1, 1});
				else /* random in [-3, 3]: every axis has at least 3 elements */
					idx = kh_input(g, it ? KILN_DT_I64 : KILN_DT_I32, 2, DIMS(2, 5));
				kiln_value *ins[2] = {kh_input(g, dt, 3, DIMS(3, 4, 5)), idx};
				kiln_node *n = kh_node(g, KILN_OP_GATHER, ins, 2, 1);
				kiln_node_set_int(g, n, "axis", a);
				snprintf(what, sizeof what, "Gather %s axis %d %s", kiln_dtype_name(dt), a,
				         it == 2 ? "const" : it ? "i64" : "i32");
				finish(g, n, what);
				check_with(g, what, -3, 2.49, 0);
			}
	/* scalar index, and an embedding lookup */
	kiln_graph *g = kiln_graph_create("t", NULL);
	kiln_value *ins[2] = {kh_input(g, KILN_DT_F32, 2, DIMS(7, 3)), scalar(g, KILN_DT_I32, -7)};
	kiln_node *n = kh_node(g, KILN_OP_GATHER, ins, 2, 1);
	finish(g, n, "Gather scalar");
	check(g, "Gather scalar");
	g = kiln_graph_create("t", NULL);
	kiln_value *emb[2] = {kh_input(g, KILN_DT_F32, 2, DIMS(50, 768)), kh_input(g, KILN_DT_I64, 2, DIMS(1, 64))};
	n = kh_node(g, KILN_OP_GATHER, emb, 2, 1);
	finish(g, n, "Gather embedding");
	check_with(g, "Gather embedding", -50, 49, 0);
	assert_int_equal(n_checked, 4 * 6 * 3 + 2);
	n_checked = 0;

	g = kiln_graph_create("t", NULL);
	kiln_value *bad[2] = {kh_input(g, KILN_DT_F32, 2, DIMS(7, 3)), INTS(g, 0, 2, -4)};
	n = kh_node(g, KILN_OP_GATHER, bad, 2, 1);
	kiln_node_set_int(g, n, "axis", 1);
	finish(g, n, "Gather bad index");
	check_error(g, KILN_ERR_INVALID_ARG,
	            "kharness: node 'node_0' (Gather): index -4 out of range for axis 1 of size 3");
}

/* A runtime index out of range is clamped (the interpreter rejects it, so
 * the kernel is called directly). */
static void test_gather_clamp(void **state)
{
	(void)state;
	n_checked = 0;
	float data[2 * 3 * 2];
	for (int i = 0; i < 12; i++)
		data[i] = (float)i;
	int32_t idx32[4] = {3, -1, -9, 1};
	int64_t idx64[4] = {INT64_MAX, -1, INT64_MIN, 1};
	static const int want[4] = {2, 2, 0, 1};
	int64_t ip[KK_GATHER_N_IP] = {[KK_GATHER_OUTER] = 2, [KK_GATHER_DIM] = 3,
	                              [KK_GATHER_BLOCK] = 2 * 4, [KK_GATHER_NIDX] = 4,
	                              [KK_GATHER_ESZ] = 4};
	kk_fn fn = kh_kernel("kk_gather");
	assert_non_null(fn);
	for (int w = 0; w < 2; w++) {
		/* data viewed as [2, 3, 2]: rows o, index v pick 2 floats */
		float out[2 * 4 * 2];
		ip[KK_GATHER_IDX_ESZ] = w ? 8 : 4;
		void *t[3] = {data, w ? (void *)idx64 : (void *)idx32, out};
		kiln_abi_host h = {.version = KILN_ABI_VERSION, .n_threads = 1};
		fn(ip, NULL, t, &h);
		for (int o = 0; o < 2; o++)
			for (int j = 0; j < 4; j++)
				for (int e = 0; e < 2; e++) {
					assert_true(out[(o * 4 + j) * 2 + e] == data[(o * 3 + want[j]) * 2 + e]);
				}
	}
}

/* ---- Expand, Tile ---------------------------------------------------------------- */

static void test_expand_tile(void **state)
{
	(void)state;
	n_checked = 0;
	char what[96];
	for (int k = 0; k < N_DTYPES; k++) {
		kiln_dtype dt = all_dtypes[k];
		kiln_graph *g = kiln_graph_create("t", NULL);
		kiln_value *ins[2] = {kh_input(g, dt, 2, DIMS(3, 1)), INTS(g, 2, 1, 17)};
		kiln_node *n = kh_node(g, KILN_OP_EXPAND, ins, 2, 1);
		snprintf(what, sizeof what, "Expand %s", kiln_dtype_name(dt));
		finish(g, n, what);
		check(g, what);

		g = kiln_graph_create("t", NULL);
		kiln_value *tins[2] = {kh_input(g, dt, 3, DIMS(2, 3, 5)), INTS(g, 2, 1, 3)};
		n = kh_node(g, KILN_OP_TILE, tins, 2, 1);
		snprintf(what, sizeof what, "Tile %s", kiln_dtype_name(dt));
		finish(g, n, what);
		check(g, what);
	}
	static const struct {
		int rank;
		int64_t dims[4];
		int shape_n;
		int64_t shape[4];
	} ex[] = {
		{0, {0}, 1, {33}},
		{1, {1}, 2, {3, 100000}},
		{2, {1, 5}, 3, {2, 7, 5}},
		{3, {4, 1, 3}, 3, {4, 6, 1}},
		{2, {3, 4}, 2, {1, 1}},
		{1, {5}, 3, {2, 0, 5}},
	};
	for (size_t i = 0; i < sizeof ex / sizeof *ex; i++) {
		kiln_graph *g = kiln_graph_create("t", NULL);
		kiln_value *ins[2] = {kh_input(g, KILN_DT_F32, ex[i].rank, ex[i].dims),
		                      ints(g, ex[i].shape, ex[i].shape_n)};
		kiln_node *n = kh_node(g, KILN_OP_EXPAND, ins, 2, 1);
		snprintf(what, sizeof what, "Expand case %zu", i);
		finish(g, n, what);
		check(g, what);
	}
	static const struct {
		int rank;
		int64_t dims[3], reps[3];
	} ti[] = {
		{1, {17}, {3}},
		{2, {1, 5}, {7, 1}},
		{2, {3, 4}, {0, 2}},
		{3, {2, 1, 3}, {1, 5, 1}},
		{2, {64, 33}, {2, 9}},
	};
	for (size_t i = 0; i < sizeof ti / sizeof *ti; i++) {
		kiln_graph *g = kiln_graph_create("t", NULL);
		kiln_value *ins[2] = {kh_input(g, KILN_DT_I32, ti[i].rank, ti[i].dims),
		                      ints(g, ti[i].reps, ti[i].rank)};
		kiln_node *n = kh_node(g, KILN_OP_TILE, ins, 2, 1);
		snprintf(what, sizeof what, "Tile case %zu", i);
		finish(g, n, what);
		check(g, what);
	}
	assert_int_equal(n_checked, 2 * N_DTYPES + 6 + 5);
}

/* ---- Pad --------------------------------------------------------------------- */

static void test_pad(void **state)
{
	(void)state;
	n_checked = 0;
	static const char *const modes[] = {"constant", "reflect", "edge", "wrap"};
	char what[128];
	static const struct {
		int rank;
		int64_t dims[3];
		int np;
		int64_t pads[6];
		int na;
		int64_t axes[3];
	} cases[] = {
		{2, {3, 5}, 4, {1, 2, 2, 1}, 0, {0}},
		{2, {3, 5}, 4, {0, 7, 0, 9}, 0, {0}},           /* several periods */
		{3, {2, 3, 4}, 6, {1, -1, 2, 0, 1, -2}, 0, {0}}, /* crops */
		{3, {2, 3, 4}, 2, {3, 1}, 1, {-1}},             /* axes */
		{3, {2, 3, 4}, 4, {1, 0, 2, 2}, 2, {2, 0}},
		{1, {1}, 2, {2, 3}, 0, {0}},
		{2, {64, 130}, 4, {2, 3, 4, 5}, 0, {0}},        /* large */
	};
	for (int m = 0; m < 4; m++)
		for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
			for (int s = 0; s < 4; s++) {
				kiln_dtype dt = size_dtypes[s];
				kiln_graph *g = kiln_graph_create("t", NULL);
				kiln_value *ins[4] = {kh_input(g, dt, cases[i].rank, cases[i].dims),
				                      ints(g, cases[i].pads, cases[i].np),
				                      m == 0 && s % 2 ? scalar(g, dt, 3) : NULL,
				                      cases[i].na ? ints(g, cases[i].axes, cases[i].na) : NULL};
				int n_in = cases[i].na ? 4 : ins[2] ? 3 : 2;
				kiln_node *n = kh_node(g, KILN_OP_PAD, ins, n_in, 1);
				kiln_node_set_string(g, n, "mode", modes[m]);
				snprintf(what, sizeof what, "Pad %s %s case %zu", modes[m], kiln_dtype_name(dt),
				         i);
				finish(g, n, what);
				check(g, what);
			}
	/* a runtime constant_value, and every dtype */
	for (int k = 0; k < N_DTYPES; k++) {
		kiln_graph *g = kiln_graph_create("t", NULL);
		kiln_value *ins[3] = {kh_input(g, all_dtypes[k], 2, DIMS(3, 4)), INTS(g, 1, 0, 2, 3),
		                      kh_input(g, all_dtypes[k], 0, NULL)};
		kiln_node *n = kh_node(g, KILN_OP_PAD, ins, 3, 1);
		snprintf(what, sizeof what, "Pad runtime value %s", kiln_dtype_name(all_dtypes[k]));
		finish(g, n, what);
		check(g, what);
	}
	assert_int_equal(n_checked, 4 * 7 * 4 + N_DTYPES);
}

/* ---- Resize ------------------------------------------------------------------ */

static const char *const coord_modes[] = {"half_pixel", "half_pixel_symmetric",
                                          "pytorch_half_pixel", "align_corners", "asymmetric",
                                          "tf_crop_and_resize"};
static const char *const nearest_modes[] = {"round_prefer_floor", "round_prefer_ceil", "floor",
                                            "ceil"};

typedef struct rs_case {
	const char *mode, *coord, *nearest, *policy;
	kiln_dtype dt;
	int rank;
	int64_t dims[4];
	int n;             /* entries of scales or sizes */
	double scales[4];  /* used when sizes[0] == 0 */
	int64_t sizes[4];
	int n_axes;
	int64_t axes[4];
	bool exclude_outside, antialias;
	double cubic_a;
} rs_case;

static void resize_case(const rs_case *c)
{
	char what[256];
	snprintf(what, sizeof what, "Resize %s %s %s %s %s", kiln_dtype_name(c->dt), c->mode,
	         c->coord, c->nearest ? c->nearest : "-", c->policy ? c->policy : "-");
	kiln_graph *g = kiln_graph_create("t", NULL);
	int na = c->n_axes ? c->n_axes : c->rank;
	double roi[8];
	for (int i = 0; i < na; i++) {
		/* both ends partly outside the input: extrapolation on each side */
		roi[i] = -0.2 + 0.25 * i;
		roi[na + i] = 1.3 - 0.2 * i;
	}
	bool crop = !strcmp(c->coord, "tf_crop_and_resize");
	kiln_value *ins[4] = {kh_input(g, c->dt, c->rank, c->dims),
	                      crop ? cnst(g, KILN_DT_F32, roi, 2 * na) : NULL, NULL, NULL};
	if (c->sizes[0])
		ins[3] = ints(g, c->sizes, c->n);
	else
		ins[2] = cnst(g, KILN_DT_F32, c->scales, c->n);
	kiln_node *n = kh_node(g, KILN_OP_RESIZE, ins, ins[3] ? 4 : 3, 1);
	kiln_node_set_string(g, n, "mode", c->mode);
	kiln_node_set_string(g, n, "coordinate_transformation_mode", c->coord);
	if (c->nearest)
		kiln_node_set_string(g, n, "nearest_mode", c->nearest);
	if (c->policy)
		kiln_node_set_string(g, n, "keep_aspect_ratio_policy", c->policy);
	if (c->n_axes)
		kiln_node_set_ints(g, n, "axes", c->axes, c->n_axes);
	if (c->exclude_outside)
		kiln_node_set_int(g, n, "exclude_outside", 1);
	if (c->antialias)
		kiln_node_set_int(g, n, "antialias", 1);
	if (c->cubic_a)
		kiln_node_set_float(g, n, "cubic_coeff_a", (float)c->cubic_a);
	if (crop)
		kiln_node_set_float(g, n, "extrapolation_value", -7.5f);
	finish(g, n, what);
	bool is_int = !kiln_dtype_is_float(c->dt);
	check_with(g, what, is_int ? -300 : -2, is_int ? 300 : 2, 1e-5);
}

static void test_resize_modes(void **state)
{
	(void)state;
	n_checked = 0;
	static const double scale_sets[3][4] = {{1, 1, 2, 3}, {1, 1, 0.6, 0.5}, {1, 1, 1.7, 0.8}};
	for (int cm = 0; cm < 6; cm++)
		for (int sc = 0; sc < 3; sc++) {
			for (int nm = 0; nm < 4; nm++) {
				rs_case c = {.mode = "nearest", .coord = coord_modes[cm],
				             .nearest = nearest_modes[nm], .dt = KILN_DT_F32, .rank = 4,
				             .dims = {1, 2, 5, 7}, .n = 4};
				memcpy(c.scales, scale_sets[sc], sizeof c.scales);
				resize_case(&c);
				c.exclude_outside = true;
				resize_case(&c);
			}
			for (int m = 0; m < 2; m++)
				for (int eo = 0; eo < 2; eo++) {
					rs_case c = {.mode = m ? "cubic" : "linear", .coord = coord_modes[cm],
					             .dt = KILN_DT_F32, .rank = 4, .dims = {1, 2, 5, 7}, .n = 4,
					             .exclude_outside = eo, .cubic_a = eo ? -0.5 : 0};
					memcpy(c.scales, scale_sets[sc], sizeof c.scales);
					resize_case(&c);
				}
		}
	assert_int_equal(n_checked, 6 * 3 * (8 + 4));
}

static void test_resize_dtypes(void **state)
{
	(void)state;
	n_checked = 0;
	static const char *const modes[] = {"nearest", "linear", "cubic"};
	for (int k = 0; k < N_DTYPES; k++)
		for (int m = 0; m < 3; m++)
			for (int cm = 0; cm < 6; cm += 5) {
				rs_case c = {.mode = modes[m], .coord = coord_modes[cm], .dt = all_dtypes[k],
				             .rank = 3, .dims = {3, 4, 5}, .n = 3, .scales = {1, 1.5, 0.8}};
				resize_case(&c);
			}
	assert_int_equal(n_checked, N_DTYPES * 3 * 2);
}

static void test_resize_attrs(void **state)
{
	(void)state;
	n_checked = 0;
	static const char *const policies[] = {"stretch", "not_larger", "not_smaller"};
	static const char *const modes[] = {"nearest", "linear", "cubic"};
	for (int p = 0; p < 3; p++)
		for (int m = 0; m < 3; m++) {
			/* sizes with a keep_aspect_ratio_policy, on axes given by the attribute */
			rs_case c = {.mode = modes[m], .coord = "half_pixel", .policy = policies[p],
			             .dt = KILN_DT_F32, .rank = 4, .dims = {2, 3, 6, 9}, .n = 2,
			             .sizes = {4, 13}, .n_axes = 2, .axes = {-1, 2}};
			resize_case(&c);
			c.dt = KILN_DT_U8;
			resize_case(&c);
		}
	/* antialias downsampling (many taps), linear and cubic */
	for (int m = 1; m < 3; m++)
		for (int k = 0; k < 2; k++) {
			rs_case c = {.mode = modes[m], .coord = "half_pixel",
			             .dt = k ? KILN_DT_I8 : KILN_DT_F32, .rank = 4, .dims = {1, 2, 17, 23},
			             .n = 4, .scales = {1, 1, 0.3, 0.25}, .antialias = true};
			resize_case(&c);
			c.exclude_outside = true;
			resize_case(&c);
		}
	/* large NCHW upsample (split across threads), 1-D, and identity axes */
	rs_case big = {.mode = "nearest", .coord = "asymmetric", .nearest = "floor",
	               .dt = KILN_DT_F32, .rank = 4, .dims = {1, 16, 33, 33}, .n = 4,
	               .scales = {1, 1, 2, 2}};
	resize_case(&big);
	big.mode = "linear";
	resize_case(&big);
	rs_case one = {.mode = "linear", .coord = "align_corners", .dt = KILN_DT_F32, .rank = 1,
	               .dims = {17}, .n = 1, .scales = {3.0}};
	resize_case(&one);
	rs_case ident = {.mode = "cubic", .coord = "pytorch_half_pixel", .dt = KILN_DT_F16, .rank = 2,
	                 .dims = {5, 1}, .n = 2, .scales = {1, 4}};
	resize_case(&ident);
	assert_int_equal(n_checked, 3 * 3 * 2 + 2 * 2 * 2 + 4);
}

/* ---- Shape, ConstantOfShape, Range ------------------------------------------ */

static void test_shape_fills(void **state)
{
	(void)state;
	n_checked = 0;
	static const int64_t starts[] = {0, 1, -2, -9, 3};
	for (int s = 0; s < 5; s++)
		for (int e = 0; e < 3; e++) {
			kiln_graph *g = kiln_graph_create("t", NULL);
			kiln_value *x = kh_input(g, KILN_DT_BOOL, 4, DIMS(2, 3, 5, 7));
			kiln_node *n = kh_node(g, KILN_OP_SHAPE, &x, 1, 1);
			kiln_node_set_int(g, n, "start", starts[s]);
			if (e)
				kiln_node_set_int(g, n, "end", e == 1 ? -1 : 100);
			finish(g, n, "Shape");
			check(g, "Shape");
		}
	for (int k = 0; k <= N_DTYPES; k++) {
		kiln_graph *g = kiln_graph_create("t", NULL);
		kiln_value *shape = INTS(g, 3, 100, 107);
		kiln_node *n = kh_node(g, KILN_OP_CONSTANT_OF_SHAPE, &shape, 1, 1);
		if (k < N_DTYPES) {
			kiln_type vt = kh_type(all_dtypes[k], 1, DIMS(1));
			int64_t raw = 0;
			kiln_tensor v = {.type = vt, .data = &raw};
			kiln_tensor_set_f64(&v, 0, -3.25);
			kiln_node_set_tensor(g, n, "value", &v);
		}
		finish(g, n, "ConstantOfShape");
		check(g, "ConstantOfShape");
	}
	static const struct {
		kiln_dtype dt;
		double start, limit, delta;
	} ranges[] = {
		{KILN_DT_F32, 0.5, 10.25, 0.3},  {KILN_DT_F32, 3, -7, -1.5}, {KILN_DT_F64, 0.1, 1000, 0.7},
		{KILN_DT_F16, -2, 5, 0.33},      {KILN_DT_BF16, 1, 90, 0.77}, {KILN_DT_I64, -5, 1000, 3},
		{KILN_DT_I32, 10, -20, -7},      {KILN_DT_I64, 4, 4, 1},
	};
	for (size_t i = 0; i < sizeof ranges / sizeof *ranges; i++) {
		kiln_graph *g = kiln_graph_create("t", NULL);
		kiln_value *ins[3] = {scalar(g, ranges[i].dt, ranges[i].start),
		                      scalar(g, ranges[i].dt, ranges[i].limit),
		                      scalar(g, ranges[i].dt, ranges[i].delta)};
		kiln_node *n = kh_node(g, KILN_OP_RANGE, ins, 3, 1);
		finish(g, n, "Range");
		check_with(g, "Range", -2, 2, 0);
	}
	assert_int_equal(n_checked, 15 + N_DTYPES + 1 + 8);
}

/* ---- QuantizeLinear, DequantizeLinear ------------------------------------------ */

static void test_quantize(void **state)
{
	(void)state;
	n_checked = 0;
	char what[128];
	static const kiln_dtype xdts[] = {KILN_DT_F32, KILN_DT_F16, KILN_DT_BF16, KILN_DT_F64,
	                                  KILN_DT_I32};
	static const kiln_dtype ydts[] = {KILN_DT_U8, KILN_DT_I8};
	for (int xk = 0; xk < 5; xk++)
		for (int yk = 0; yk < 2; yk++)
			for (int axis = -3; axis <= 3; axis++) /* 3: per tensor */
				for (int zp = 0; zp < 2; zp++) {
					kiln_dtype xd = xdts[xk], yd = ydts[yk];
					int64_t dims[3] = {3, 5, 37};
					int ax = axis < 0 ? axis + 3 : axis;
					int64_t ns = axis == 3 ? 1 : dims[ax];
					double sc[40], zv[40];
					for (int i = 0; i < ns; i++) {
						sc[i] = 0.37 + 0.11 * i;
						zv[i] = yd == KILN_DT_U8 ? 128 + 3 * i : -5 + 2 * i;
					}
					kiln_graph *g = kiln_graph_create("t", NULL);
					kiln_value *ins[3] = {
						kh_input(g, xd, 3, dims),
						axis == 3 ? scalar(g, KILN_DT_F32, sc[0]) : cnst(g, KILN_DT_F32, sc, ns),
						NULL};
					if (zp)
						ins[2] = axis == 3 ? scalar(g, yd, zv[0]) : cnst(g, yd, zv, ns);
					else
						ins[2] = NULL;
					int n_in = zp ? 3 : 2;
					kiln_node *n =
						kh_node(g, KILN_OP_QUANTIZE_LINEAR, ins, n_in, 1);
					if (axis != 3)
						kiln_node_set_int(g, n, "axis", axis);
					if (!zp)
						kiln_node_set_int(g, n, "output_dtype", kiln_dtype_to_onnx(yd));
					snprintf(what, sizeof what, "QuantizeLinear %s->%s axis %d zp %d",
					         kiln_dtype_name(xd), kiln_dtype_name(yd), axis, zp);
					finish(g, n, what);
					check_with(g, what, -120, 120, 0);
				}
	/* ties round half to even, NaN and infinities, saturation, a large f32 run */
	static const double xs[] = {0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 127.5, 128.5, -128.5,
	                            1e9, -1e9, NAN, INFINITY, -INFINITY, 254.5, 5e6 + 0.5,
	                            3.4e38, -0.0, 4194304.5, 8388607.0};
	for (int yk = 0; yk < 2; yk++) {
		kiln_graph *g = kiln_graph_create("t", NULL);
		kiln_value *ins[3] = {cnst(g, KILN_DT_F32, xs, 20), scalar(g, KILN_DT_F32, 1.0),
		                      scalar(g, ydts[yk], yk ? 0 : 1)};
		kiln_node *n = kh_node(g, KILN_OP_QUANTIZE_LINEAR, ins, 3, 1);
		finish(g, n, "QuantizeLinear ties");
		check(g, "QuantizeLinear ties");
	}
	kiln_graph *g = kiln_graph_create("t", NULL);
	kiln_value *ins[3] = {kh_input(g, KILN_DT_F32, 2, DIMS(100, 1003)), scalar(g, KILN_DT_F32, 0.02),
	                      scalar(g, KILN_DT_I8, -3)};
	kiln_node *n = kh_node(g, KILN_OP_QUANTIZE_LINEAR, ins, 3, 1);
	finish(g, n, "QuantizeLinear large");
	check_with(g, "QuantizeLinear large", -3, 3, 0);
	assert_int_equal(n_checked, 5 * 2 * 7 * 2 + 3);
}

static void test_dequantize(void **state)
{
	(void)state;
	n_checked = 0;
	char what[128];
	static const kiln_dtype xdts[] = {KILN_DT_U8, KILN_DT_I8, KILN_DT_I32};
	static const kiln_dtype sdts[] = {KILN_DT_F32, KILN_DT_F16, KILN_DT_BF16, KILN_DT_F64};
	for (int xk = 0; xk < 3; xk++)
		for (int sk = 0; sk < 4; sk++)
			for (int axis = -2; axis <= 2; axis++) /* 2: per tensor */
				for (int zp = 0; zp < 2; zp++) {
					kiln_dtype xd = xdts[xk], sd = sdts[sk];
					int64_t dims[2] = {7, 45};
					int ax = axis < 0 ? axis + 2 : axis;
					int64_t ns = axis == 2 ? 1 : dims[ax];
					double sc[50], zv[50];
					for (int i = 0; i < ns; i++) {
						sc[i] = 0.013 + 0.007 * i;
						zv[i] = xd == KILN_DT_U8 ? 120 + i : -9 + i;
					}
					kiln_graph *g = kiln_graph_create("t", NULL);
					kiln_value *ins[3] = {kh_input(g, xd, 2, dims),
					                      axis == 2 ? scalar(g, sd, sc[0]) : cnst(g, sd, sc, ns),
					                      NULL};
					if (zp)
						ins[2] = axis == 2 ? scalar(g, xd, zv[0]) : cnst(g, xd, zv, ns);
					int n_in = zp ? 3 : 2;
					kiln_node *n =
						kh_node(g, KILN_OP_DEQUANTIZE_LINEAR, ins, n_in, 1);
					if (axis != 2)
						kiln_node_set_int(g, n, "axis", axis);
					snprintf(what, sizeof what, "DequantizeLinear %s->%s axis %d zp %d",
					         kiln_dtype_name(xd), kiln_dtype_name(sd), axis, zp);
					finish(g, n, what);
					check_with(g, what, -200, 200, 0);
				}
	kiln_graph *g = kiln_graph_create("t", NULL);
	kiln_value *ins[3] = {kh_input(g, KILN_DT_U8, 2, DIMS(300, 1001)), scalar(g, KILN_DT_F32, 0.02),
	                      scalar(g, KILN_DT_U8, 131)};
	kiln_node *n = kh_node(g, KILN_OP_DEQUANTIZE_LINEAR, ins, 3, 1);
	finish(g, n, "DequantizeLinear large");
	check_with(g, "DequantizeLinear large", 0, 255, 0);
	assert_int_equal(n_checked, 3 * 4 * 5 * 2 + 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_copies),       cmocka_unit_test(test_dropout),
		cmocka_unit_test(test_transpose),    cmocka_unit_test(test_concat),
		cmocka_unit_test(test_split),        cmocka_unit_test(test_slice),
		cmocka_unit_test(test_gather),       cmocka_unit_test(test_gather_clamp),
		cmocka_unit_test(test_expand_tile),  cmocka_unit_test(test_pad),
		cmocka_unit_test(test_resize_modes), cmocka_unit_test(test_resize_dtypes),
		cmocka_unit_test(test_resize_attrs), cmocka_unit_test(test_shape_fills),
		cmocka_unit_test(test_quantize),     cmocka_unit_test(test_dequantize),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
