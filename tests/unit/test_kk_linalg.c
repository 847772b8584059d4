/* test_kk_linalg.c — the linalg family's lowerings and kernels (Gemm,
 * MatMul, Conv, ConvTranspose) against the interpreter, through kharness.
 *
 * Each case builds a one-node graph, with the weight operand either a graph
 * input (packed at run time) or a constant (packed by the lowering), and
 * runs it at 1 and 3 threads. f32 is compared with rtol 1e-4 and atol 2e-4
 * (sums of up to a few hundred products of values in [-2, 2] can cancel);
 * f64, Gemm/Conv in f16/bf16 (accumulated in double like the interpreter)
 * and integers must match exactly; MatMul in f16/bf16 accumulates in f32,
 * where FMA contraction may differ from the interpreter, so it gets rtol 1e-2. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "interp.h"
#include "kharness.h"
#include "kk_params_linalg.h"

/* A constant with pseudo-random elements in [-2, 2] (integers: -2..2). */
static kiln_value *const_rand(kiln_graph *g, kiln_dtype dt, int rank, const int64_t *dims)
{
	kiln_type t = kh_type(dt, rank, dims);
	kiln_value *v = kiln_graph_add_const(g, NULL, &t, NULL);
	assert_non_null(v);
	kiln_tensor tt = {.type = t, .data = v->data};
	uint64_t s = 0x9e3779b97f4a7c15ull;
	for (int64_t i = 0; i < kiln_type_numel(&t); i++) {
		s = s * 6364136223846793005ull + 1442695040888963407ull;
		double u = (double)(s >> 11) / 9007199254740992.0 * 4.0 - 2.0;
		if (kiln_dtype_is_float(dt))
			kiln_tensor_set_f64(&tt, i, u);
		else
			kiln_tensor_set_i64(&tt, i, (int64_t)(u < 0 ? u - 0.5 : u + 0.5));
	}
	return v;
}

/* An operand: a constant when konst, else a graph input. */
static kiln_value *operand(kiln_graph *g, bool konst, kiln_dtype dt, int rank,
                           const int64_t *dims)
{
	return konst ? const_rand(g, dt, rank, dims) : kh_input(g, dt, rank, dims);
}

static double rtol_for(kiln_dtype dt)
{
	return dt == KILN_DT_F32 ? 1e-4 : 0.0;
}

static double atol_for(kiln_dtype dt)
{
	return dt == KILN_DT_F32 ? 2e-4 : 0.0;
}

/* ---- Gemm ---------------------------------------------------------------- */

/* c_rank: -1 no C; 0 scalar; 1 [N]; 2 [M,N]; 3 [M,1]. */
static void gemm_case(kiln_dtype dt, int64_t m, int64_t n, int64_t k, bool ta, bool tb,
                      double alpha, double beta, int c_rank, bool const_a, bool const_b)
{
	kiln_graph *g = kh_graph();
	kiln_value *in[3];
	in[0] = ta ? operand(g, const_a, dt, SHAPE(k, m)) : operand(g, const_a, dt, SHAPE(m, k));
	in[1] = tb ? operand(g, const_b, dt, SHAPE(n, k)) : operand(g, const_b, dt, SHAPE(k, n));
	int n_in = 2;
	if (c_rank == 0)
		in[n_in++] = kh_input(g, dt, 0, NULL);
	else if (c_rank == 1)
		in[n_in++] = const_rand(g, dt, SHAPE(n));
	else if (c_rank == 2)
		in[n_in++] = kh_input(g, dt, SHAPE(m, n));
	else if (c_rank == 3)
		in[n_in++] = kh_input(g, dt, SHAPE(m, 1));
	kiln_node *nd = kh_add(g, KILN_OP_GEMM, in, n_in, 1);
	if (ta)
		kiln_node_set_int(g, nd, "transA", 1);
	if (tb)
		kiln_node_set_int(g, nd, "transB", 1);
	if (alpha != 1.0)
		kiln_node_set_float(g, nd, "alpha", (float)alpha);
	if (beta != 1.0)
		kiln_node_set_float(g, nd, "beta", (float)beta);
	char what[160];
	snprintf(what, sizeof what, "Gemm %s %lldx%lldx%lld ta%d tb%d a%g b%g c%d const %d%d",
	         kiln_dtype_name(dt), (long long)m, (long long)n, (long long)k, ta, tb, alpha, beta,
	         c_rank, const_a, const_b);
	kh_check_tol(g, what, rtol_for(dt), atol_for(dt));
}

static void test_gemm_sizes(void **state)
{
	(void)state;
	static const int64_t sz[][3] = {{1, 1, 1},   {7, 33, 17}, {33, 7, 100}, {100, 257, 33},
	                                {13, 65, 300}, {1, 100, 7}, {257, 1, 5},  {12, 32, 1},
	                                /* several M and K blocks: a packed B runs K inside M */
	                                {300, 70, 600}};
	for (size_t i = 0; i < sizeof sz / sizeof sz[0]; i++)
		for (int cb = 0; cb < 2; cb++)
			gemm_case(KILN_DT_F32, sz[i][0], sz[i][1], sz[i][2], false, false, 1.0, 1.0, -1,
			          false, cb);
}

static void test_gemm_trans(void **state)
{
	(void)state;
	for (int ta = 0; ta < 2; ta++)
		for (int tb = 0; tb < 2; tb++)
			for (int ca = 0; ca < 2; ca++)
				for (int cb = 0; cb < 2; cb++)
					gemm_case(KILN_DT_F32, 19, 37, 29, ta, tb, 1.0, 1.0, 1, ca, cb);
}

static void test_gemm_alpha_beta_c(void **state)
{
	(void)state;
	for (int cr = -1; cr <= 3; cr++)
		gemm_case(KILN_DT_F32, 17, 35, 9, false, true, 0.5, -1.5, cr, false, true);
	gemm_case(KILN_DT_F32, 5, 6, 0, false, false, 2.0, 0.25, 2, false, false);
	gemm_case(KILN_DT_F32, 0, 6, 4, false, false, 1.0, 1.0, -1, false, false);
}

static void test_gemm_dtypes(void **state)
{
	(void)state;
	static const kiln_dtype dts[] = {KILN_DT_F64, KILN_DT_F16, KILN_DT_BF16, KILN_DT_I32,
	                                 KILN_DT_I64};
	for (size_t i = 0; i < sizeof dts / sizeof dts[0]; i++) {
		gemm_case(dts[i], 7, 9, 5, false, false, 1.0, 1.0, 2, false, true);
		gemm_case(dts[i], 6, 5, 4, true, true, 1.0, 1.0, 1, false, false);
		gemm_case(dts[i], 4, 3, 5, false, true, 2.0, 0.5, 3, false, false);
	}
}

/* ---- MatMul -------------------------------------------------------------- */

static void matmul_case(kiln_dtype dt, int ra, const int64_t *da, int rb, const int64_t *db,
                        bool const_a, bool const_b, double rtol)
{
	kiln_graph *g = kh_graph();
	kiln_value *in[2] = {operand(g, const_a, dt, ra, da), operand(g, const_b, dt, rb, db)};
	kh_add(g, KILN_OP_MATMUL, in, 2, 1);
	char what[128];
	snprintf(what, sizeof what, "MatMul %s rank %d x rank %d const %d%d", kiln_dtype_name(dt), ra,
	         rb, const_a, const_b);
	kh_check_tol(g, what, rtol, atol_for(dt));
}

static void matmul_shapes(kiln_dtype dt, double rtol)
{
	for (int c = 0; c < 3; c++) {
		bool ca = c == 1, cb = c == 2;
		matmul_case(dt, SHAPE(2, 1, 5, 7), SHAPE(3, 7, 9), ca, cb, rtol);
		matmul_case(dt, SHAPE(7), SHAPE(2, 7, 5), ca, cb, rtol);
		matmul_case(dt, SHAPE(3, 4, 7), SHAPE(7), ca, cb, rtol);
		matmul_case(dt, SHAPE(33), SHAPE(33), ca, cb, rtol);
		matmul_case(dt, SHAPE(13, 40), SHAPE(40, 35), ca, cb, rtol);
		matmul_case(dt, SHAPE(2, 3, 1, 6, 4), SHAPE(3, 2, 4, 3), ca, cb, rtol);
	}
}

static void test_matmul_f32(void **state)
{
	(void)state;
	matmul_shapes(KILN_DT_F32, 1e-4);
	matmul_case(KILN_DT_F32, SHAPE(2, 70, 300), SHAPE(300, 50), false, true, 1e-4);
	matmul_case(KILN_DT_F32, SHAPE(0, 4), SHAPE(4, 3), false, false, 1e-4);
	matmul_case(KILN_DT_F32, SHAPE(3, 0), SHAPE(0, 5), false, false, 1e-4);
}

static void test_matmul_dtypes(void **state)
{
	(void)state;
	matmul_shapes(KILN_DT_F64, 0.0);
	matmul_shapes(KILN_DT_I32, 0.0);
	matmul_shapes(KILN_DT_I64, 0.0);
	matmul_shapes(KILN_DT_F16, 1e-2);
	matmul_shapes(KILN_DT_BF16, 1e-2);
}

/* ---- Conv ---------------------------------------------------------------- */

typedef struct conv_spec {
	int ns;                 /* spatial dims */
	int64_t n, c, m, group;
	int64_t in[3], k[3];
	int64_t strides[3], dil[3], pads[6]; /* 0: attribute omitted */
	const char *auto_pad;
	bool bias, const_w;
	int64_t out_pad[3], out_shape[3]; /* ConvTranspose */
} conv_spec;

static void conv_case(kiln_op op, kiln_dtype dt, const conv_spec *s)
{
	kiln_graph *g = kh_graph();
	int64_t xd[5] = {s->n, s->c}, wd[5];
	wd[0] = op == KILN_OP_CONV ? s->m : s->c;
	wd[1] = op == KILN_OP_CONV ? s->c / s->group : s->m / s->group;
	for (int i = 0; i < s->ns; i++) {
		xd[2 + i] = s->in[i];
		wd[2 + i] = s->k[i];
	}
	kiln_value *in[3] = {kh_input(g, dt, 2 + s->ns, xd), operand(g, s->const_w, dt, 2 + s->ns, wd)};
	int n_in = 2;
	if (s->bias)
		in[n_in++] = const_rand(g, dt, SHAPE(s->m));
	kiln_node *nd = kh_add(g, op, in, n_in, 1);
	if (s->group != 1)
		kiln_node_set_int(g, nd, "group", s->group);
	if (s->strides[0])
		kiln_node_set_ints(g, nd, "strides", s->strides, s->ns);
	if (s->dil[0])
		kiln_node_set_ints(g, nd, "dilations", s->dil, s->ns);
	if (s->pads[0] || s->pads[1] || s->pads[2] || s->pads[3] || s->pads[4] || s->pads[5])
		kiln_node_set_ints(g, nd, "pads", s->pads, 2 * s->ns);
	if (s->auto_pad)
		kiln_node_set_string(g, nd, "auto_pad", s->auto_pad);
	if (s->out_pad[0] || s->out_pad[1] || s->out_pad[2])
		kiln_node_set_ints(g, nd, "output_padding", s->out_pad, s->ns);
	if (s->out_shape[0])
		kiln_node_set_ints(g, nd, "output_shape", s->out_shape, s->ns);
	char what[160];
	snprintf(what, sizeof what, "%s %s %dD c%lld m%lld g%lld in %lld k %lld s %lld d %lld %s",
	         kiln_op_name(op), kiln_dtype_name(dt), s->ns, (long long)s->c, (long long)s->m,
	         (long long)s->group, (long long)s->in[0], (long long)s->k[0],
	         (long long)s->strides[0], (long long)s->dil[0], s->auto_pad ? s->auto_pad : "");
	kh_check_tol(g, what, rtol_for(dt), atol_for(dt));
}

/* Every case with the weights as a constant and as an input. */
static void conv_both(kiln_op op, kiln_dtype dt, conv_spec s)
{
	s.const_w = true;
	conv_case(op, dt, &s);
	s.const_w = false;
	conv_case(op, dt, &s);
}

static void test_conv_2d(void **state)
{
	(void)state;
	kiln_op op = KILN_OP_CONV;
	/* plain 3x3, padding 1, bias */
	conv_both(op, KILN_DT_F32, (conv_spec){.ns = 2, .n = 2, .c = 3, .m = 5, .group = 1,
	                                       .in = {9, 11}, .k = {3, 3}, .pads = {1, 1, 1, 1},
	                                       .bias = true});
	/* 1x1 direct (no im2col), no bias, K above one cache block */
	conv_both(op, KILN_DT_F32, (conv_spec){.ns = 2, .n = 1, .c = 300, .m = 17, .group = 1,
	                                       .in = {5, 7}, .k = {1, 1}});
	/* 1x1 with stride 2 (im2col) */
	conv_both(op, KILN_DT_F32, (conv_spec){.ns = 2, .n = 1, .c = 8, .m = 13, .group = 1,
	                                       .in = {9, 8}, .k = {1, 1}, .strides = {2, 2},
	                                       .bias = true});
	/* strides, dilations, asymmetric pads, K = 32 * 9 > KC */
	conv_both(op, KILN_DT_F32, (conv_spec){.ns = 2, .n = 1, .c = 32, .m = 14, .group = 1,
	                                       .in = {12, 10}, .k = {3, 3}, .strides = {2, 1},
	                                       .dil = {1, 2}, .pads = {0, 2, 1, 1}, .bias = true});
	/* groups */
	conv_both(op, KILN_DT_F32, (conv_spec){.ns = 2, .n = 2, .c = 6, .m = 9, .group = 3,
	                                       .in = {7, 7}, .k = {3, 2}, .pads = {1, 0, 1, 1},
	                                       .bias = true});
	/* stride 2 on wide rows (vector deinterleave), 7x7 stem-like */
	conv_both(op, KILN_DT_F32, (conv_spec){.ns = 2, .n = 1, .c = 5, .m = 13, .group = 1,
	                                       .in = {21, 71}, .k = {3, 3}, .strides = {2, 2},
	                                       .pads = {1, 1, 1, 1}, .bias = true});
	conv_both(op, KILN_DT_F32, (conv_spec){.ns = 2, .n = 2, .c = 3, .m = 20, .group = 1,
	                                       .in = {30, 45}, .k = {7, 7}, .strides = {2, 2},
	                                       .pads = {3, 3, 3, 3}});
	/* stride above the kernel, dilation with stride, pads wider than the kernel */
	conv_both(op, KILN_DT_F32, (conv_spec){.ns = 2, .n = 1, .c = 6, .m = 5, .group = 1,
	                                       .in = {17, 19}, .k = {2, 1}, .strides = {3, 2},
	                                       .pads = {3, 0, 4, 1}, .bias = true});
	conv_both(op, KILN_DT_F32, (conv_spec){.ns = 2, .n = 1, .c = 6, .m = 4, .group = 2,
	                                       .in = {17, 19}, .k = {3, 3}, .strides = {2, 2},
	                                       .dil = {2, 3}, .pads = {1, 2, 2, 1}});
	/* whole-input kernel: one output position */
	conv_both(op, KILN_DT_F32, (conv_spec){.ns = 2, .n = 2, .c = 7, .m = 30, .group = 1,
	                                       .in = {5, 4}, .k = {5, 4}, .bias = true});
	/* late-layer shape: 7x7 output, many channels, K over several blocks
	 * (threads split M) */
	conv_both(op, KILN_DT_F32, (conv_spec){.ns = 2, .n = 1, .c = 64, .m = 100, .group = 1,
	                                       .in = {7, 7}, .k = {3, 3}, .pads = {1, 1, 1, 1},
	                                       .bias = true});
	/* groups over several N blocks */
	conv_both(op, KILN_DT_F32, (conv_spec){.ns = 2, .n = 1, .c = 8, .m = 6, .group = 2,
	                                       .in = {70, 70}, .k = {3, 3}, .pads = {1, 1, 1, 1}});
	/* big output plane (several N blocks and threads) */
	conv_both(op, KILN_DT_F32, (conv_spec){.ns = 2, .n = 1, .c = 4, .m = 24, .group = 1,
	                                       .in = {50, 47}, .k = {3, 3}, .pads = {1, 1, 1, 1},
	                                       .bias = true});
}

/* Whether the lowering computes g's first node (a Conv) transposed. */
static bool lowers_transposed(kiln_graph *g)
{
	kh_typecheck(g, "transposed");
	kiln_diag d;
	kiln_diag_init(&d, NULL);
	d.fn = NULL;
	kiln_arena *arena = kiln_arena_create(NULL);
	kiln_kcall *c = calloc(1, sizeof *c);
	assert_true(arena && c);
	c->arena = arena;
	kiln_cpu_target target = {.vl = KK_VL, .arch = KILN_CPU_ARCH_X86_64};
	assert_int_equal(kiln_cpu_lower(g->nodes[0], &target, c, &d), KILN_OK);
	bool tr = c->ip[KK_LA_TRANS] != 0;
	free(c);
	kiln_arena_destroy(arena);
	return tr;
}

/* Conv with few output positions and constant weights: Y^T = im2col^T W^T
 * (KK_LA_TRANS). want: whether the lowering must choose it (-1: either). */
static void trans_case(conv_spec s, int want)
{
	s.const_w = true;
	kiln_graph *g = kh_graph();
	int64_t xd[5] = {s.n, s.c}, wd[5] = {s.m, s.c / s.group};
	for (int i = 0; i < s.ns; i++) {
		xd[2 + i] = s.in[i];
		wd[2 + i] = s.k[i];
	}
	kiln_value *in[3] = {kh_input(g, KILN_DT_F32, 2 + s.ns, xd),
	                     const_rand(g, KILN_DT_F32, 2 + s.ns, wd)};
	int n_in = 2;
	if (s.bias)
		in[n_in++] = const_rand(g, KILN_DT_F32, SHAPE(s.m));
	kiln_node *nd = kh_add(g, KILN_OP_CONV, in, n_in, 1);
	if (s.group != 1)
		kiln_node_set_int(g, nd, "group", s.group);
	if (s.strides[0])
		kiln_node_set_ints(g, nd, "strides", s.strides, s.ns);
	if (s.dil[0])
		kiln_node_set_ints(g, nd, "dilations", s.dil, s.ns);
	if (s.pads[0] || s.pads[1] || s.pads[2] || s.pads[3] || s.pads[4] || s.pads[5])
		kiln_node_set_ints(g, nd, "pads", s.pads, 2 * s.ns);
	char what[160];
	snprintf(what, sizeof what, "transposed Conv n%lld c%lld m%lld g%lld in %lld k %lld",
	         (long long)s.n, (long long)s.c, (long long)s.m, (long long)s.group,
	         (long long)s.in[0], (long long)s.k[0]);
	bool tr = lowers_transposed(g);
	if (want >= 0 && tr != (want != 0)) {
		kiln_graph_destroy(g);
		fail_msg("%s: transposed %d, want %d", what, tr, want);
	}
	kh_check_tol(g, what, 1e-4, 2e-4);
}

static void test_conv_transposed_product(void **state)
{
	(void)state;
	int v16 = KK_VL == 16 ? 1 : -1;
	/* 7x7 output, K over two blocks, 2 images */
	trans_case((conv_spec){.ns = 2, .n = 2, .c = 40, .m = 70, .group = 1, .in = {7, 7},
	                       .k = {3, 3}, .pads = {1, 1, 1, 1}, .bias = true},
	           -1);
	/* direct 1x1 (A = X^T), K over two blocks, 2 images */
	trans_case((conv_spec){.ns = 2, .n = 2, .c = 300, .m = 128, .group = 1, .in = {7, 7},
	                       .k = {1, 1}, .bias = true},
	           v16);
	trans_case((conv_spec){.ns = 1, .n = 2, .c = 70, .m = 20, .group = 1, .in = {5},
	                       .k = {1}, .bias = true},
	           1);
	/* stride 2 to 7x7, 1x1 */
	trans_case((conv_spec){.ns = 2, .n = 1, .c = 30, .m = 33, .group = 1, .in = {14, 13},
	                       .k = {3, 3}, .strides = {2, 2}, .pads = {1, 1, 1, 1}},
	           -1);
	trans_case((conv_spec){.ns = 2, .n = 1, .c = 300, .m = 37, .group = 1, .in = {7, 7},
	                       .k = {1, 1}, .bias = true},
	           -1);
	/* one output position */
	trans_case((conv_spec){.ns = 2, .n = 2, .c = 7, .m = 30, .group = 1, .in = {5, 4},
	                       .k = {5, 4}, .bias = true},
	           1);
	/* groups */
	trans_case((conv_spec){.ns = 2, .n = 2, .c = 32, .m = 64, .group = 2, .in = {7, 7},
	                       .k = {3, 3}, .pads = {1, 1, 1, 1}, .bias = true},
	           v16);
	/* the partial sums' bound splits N (600 channels), K over two blocks */
	trans_case((conv_spec){.ns = 2, .n = 1, .c = 40, .m = 600, .group = 1, .in = {7, 7},
	                       .k = {3, 3}, .pads = {1, 1, 1, 1}, .bias = true},
	           v16);
	/* 14x14 (5% less work transposed) and 161 positions stay as they are */
	trans_case((conv_spec){.ns = 2, .n = 1, .c = 32, .m = 64, .group = 1, .in = {14, 14},
	                       .k = {3, 3}, .pads = {1, 1, 1, 1}, .bias = true},
	           0);
	trans_case((conv_spec){.ns = 1, .n = 1, .c = 200, .m = 32, .group = 1, .in = {161},
	                       .k = {1}, .bias = true},
	           0);
	/* large outputs stay in the usual orientation */
	trans_case((conv_spec){.ns = 2, .n = 1, .c = 8, .m = 64, .group = 1, .in = {16, 16},
	                       .k = {3, 3}, .pads = {1, 1, 1, 1}},
	           0);
}

/* Conv with constant weights and depth >= 384: the transposed product with
 * im2col read in place from the phase planes (KK_LA_OP_IMPLICIT), tiles
 * within one output row. Rows of every length against the tile height
 * (MR 12 at VL 16, 6 at VL 4), strides, dilations, padding, groups, 1-D
 * and 3-D, rows wider than an M block, channels over several N blocks. */
static void test_conv_implicit(void **state)
{
	(void)state;
	/* rows of 29 (tiles 10, 10, 9 / 5 x 6-) over 13 rows, 2 images */
	trans_case((conv_spec){.ns = 2, .n = 2, .c = 48, .m = 40, .group = 1, .in = {13, 29},
	                       .k = {3, 3}, .pads = {1, 1, 1, 1}, .bias = true},
	           1);
	/* stride 2, dilation, asymmetric pads */
	trans_case((conv_spec){.ns = 2, .n = 1, .c = 50, .m = 21, .group = 1, .in = {19, 31},
	                       .k = {3, 3}, .strides = {2, 2}, .dil = {1, 2}, .pads = {0, 2, 1, 1},
	                       .bias = true},
	           1);
	/* rows of one position */
	trans_case((conv_spec){.ns = 2, .n = 1, .c = 150, .m = 17, .group = 1, .in = {9, 1},
	                       .k = {3, 1}, .pads = {1, 0, 1, 0}},
	           1);
	/* rows of 200, wider than an M block; 13 = MR + 1 */
	trans_case((conv_spec){.ns = 2, .n = 1, .c = 130, .m = 33, .group = 1, .in = {3, 200},
	                       .k = {1, 3}, .pads = {0, 1, 0, 1}, .bias = true},
	           1);
	trans_case((conv_spec){.ns = 2, .n = 1, .c = 48, .m = 16, .group = 1, .in = {6, 13},
	                       .k = {3, 3}, .pads = {1, 1, 1, 1}},
	           1);
	/* groups */
	trans_case((conv_spec){.ns = 2, .n = 2, .c = 96, .m = 34, .group = 2, .in = {11, 11},
	                       .k = {3, 3}, .pads = {1, 1, 1, 1}, .bias = true},
	           1);
	/* 600 channels: the partial sums' bound splits N */
	trans_case((conv_spec){.ns = 2, .n = 1, .c = 48, .m = 600, .group = 1, .in = {9, 9},
	                       .k = {3, 3}, .pads = {1, 1, 1, 1}, .bias = true},
	           1);
	/* 1-D and 3-D */
	trans_case((conv_spec){.ns = 1, .n = 2, .c = 100, .m = 19, .group = 1, .in = {37},
	                       .k = {5}, .pads = {2, 1}, .bias = true},
	           1);
	trans_case((conv_spec){.ns = 3, .n = 1, .c = 20, .m = 12, .group = 1, .in = {4, 5, 6},
	                       .k = {3, 3, 3}, .pads = {1, 1, 1, 1, 1, 1}},
	           1);
	/* below the depth: packed as before */
	trans_case((conv_spec){.ns = 2, .n = 1, .c = 40, .m = 16, .group = 1, .in = {16, 16},
	                       .k = {3, 3}, .pads = {1, 1, 1, 1}},
	           0);
}

static void test_conv_auto_pad(void **state)
{
	(void)state;
	static const char *modes[] = {"SAME_UPPER", "SAME_LOWER", "VALID"};
	for (int i = 0; i < 3; i++)
		conv_both(KILN_OP_CONV, KILN_DT_F32,
		          (conv_spec){.ns = 2, .n = 1, .c = 3, .m = 4, .group = 1, .in = {8, 7},
		                      .k = {4, 3}, .strides = {2, 2}, .auto_pad = modes[i], .bias = true});
}

static void test_conv_depthwise(void **state)
{
	(void)state;
	kiln_op op = KILN_OP_CONV;
	conv_both(op, KILN_DT_F32, (conv_spec){.ns = 2, .n = 2, .c = 5, .m = 5, .group = 5,
	                                       .in = {19, 37}, .k = {3, 3}, .pads = {1, 1, 1, 1},
	                                       .bias = true});
	/* channel multiplier 2, stride 2, dilation, asymmetric pads */
	conv_both(op, KILN_DT_F32, (conv_spec){.ns = 2, .n = 1, .c = 3, .m = 6, .group = 3,
	                                       .in = {11, 23}, .k = {3, 5}, .strides = {2, 2},
	                                       .dil = {2, 1}, .pads = {2, 1, 0, 3}});
	/* kernel wider than the input */
	conv_both(op, KILN_DT_F32, (conv_spec){.ns = 1, .n = 1, .c = 4, .m = 4, .group = 4,
	                                       .in = {3}, .k = {5}, .pads = {2, 2}, .bias = true});
	conv_both(op, KILN_DT_F32, (conv_spec){.ns = 3, .n = 1, .c = 2, .m = 2, .group = 2,
	                                       .in = {4, 5, 20}, .k = {2, 3, 3},
	                                       .pads = {0, 1, 1, 1, 1, 1}});
	/* MobileNet's 3x3 stride 2 on rows wide enough for the vector
	 * deinterleave, even and odd widths; 7 rows (blocks of 4 and 3) */
	conv_both(op, KILN_DT_F32, (conv_spec){.ns = 2, .n = 2, .c = 7, .m = 7, .group = 7,
	                                       .in = {14, 71}, .k = {3, 3}, .strides = {2, 2},
	                                       .pads = {1, 1, 1, 1}, .bias = true});
	conv_both(op, KILN_DT_F32, (conv_spec){.ns = 2, .n = 1, .c = 3, .m = 3, .group = 3,
	                                       .in = {9, 68}, .k = {3, 3}, .strides = {2, 2},
	                                       .pads = {1, 1, 1, 1}});
	/* stride 3 (generic deinterleave), 5x5, 1x1 output rows */
	conv_both(op, KILN_DT_F32, (conv_spec){.ns = 2, .n = 1, .c = 4, .m = 4, .group = 4,
	                                       .in = {13, 50}, .k = {5, 5}, .strides = {3, 3},
	                                       .pads = {2, 2, 2, 2}, .bias = true});
	conv_both(op, KILN_DT_F32, (conv_spec){.ns = 2, .n = 1, .c = 2, .m = 2, .group = 2,
	                                       .in = {1, 1}, .k = {3, 3}, .pads = {1, 1, 1, 1}});
	/* stride above the kernel, padding wider than the kernel */
	conv_both(op, KILN_DT_F32, (conv_spec){.ns = 2, .n = 1, .c = 3, .m = 3, .group = 3,
	                                       .in = {10, 40}, .k = {2, 2}, .strides = {3, 4},
	                                       .pads = {3, 0, 3, 5}, .bias = true});
}

static void test_conv_1d_3d(void **state)
{
	(void)state;
	kiln_op op = KILN_OP_CONV;
	conv_both(op, KILN_DT_F32, (conv_spec){.ns = 1, .n = 2, .c = 3, .m = 7, .group = 1,
	                                       .in = {40}, .k = {5}, .strides = {3}, .dil = {2},
	                                       .pads = {4, 1}, .bias = true});
	conv_both(op, KILN_DT_F32, (conv_spec){.ns = 3, .n = 1, .c = 4, .m = 6, .group = 2,
	                                       .in = {5, 6, 7}, .k = {3, 2, 3}, .strides = {1, 2, 1},
	                                       .pads = {1, 0, 1, 1, 1, 0}, .bias = true});
}

static void test_conv_dtypes(void **state)
{
	(void)state;
	static const kiln_dtype dts[] = {KILN_DT_F64, KILN_DT_F16, KILN_DT_BF16};
	for (size_t i = 0; i < 3; i++) {
		conv_case(KILN_OP_CONV, dts[i],
		          &(conv_spec){.ns = 2, .n = 2, .c = 4, .m = 6, .group = 2, .in = {6, 5},
		                       .k = {3, 3}, .strides = {2, 1}, .pads = {1, 1, 0, 1},
		                       .bias = true, .const_w = true});
		conv_case(KILN_OP_CONV, dts[i],
		          &(conv_spec){.ns = 1, .n = 1, .c = 3, .m = 3, .group = 3, .in = {9},
		                       .k = {3}, .dil = {2}, .pads = {1, 2}});
	}
}

/* ---- ConvTranspose ------------------------------------------------------- */

static void test_conv_transpose(void **state)
{
	(void)state;
	kiln_op op = KILN_OP_CONV_TRANSPOSE;
	conv_both(op, KILN_DT_F32, (conv_spec){.ns = 2, .n = 2, .c = 3, .m = 4, .group = 1,
	                                       .in = {5, 6}, .k = {3, 3}, .strides = {2, 2},
	                                       .bias = true});
	/* output_padding, pads, dilations */
	conv_both(op, KILN_DT_F32, (conv_spec){.ns = 2, .n = 1, .c = 5, .m = 3, .group = 1,
	                                       .in = {4, 7}, .k = {3, 2}, .strides = {3, 2},
	                                       .dil = {1, 2}, .pads = {1, 0, 0, 1},
	                                       .out_pad = {1, 1}});
	/* output_shape */
	conv_both(op, KILN_DT_F32, (conv_spec){.ns = 2, .n = 1, .c = 2, .m = 2, .group = 1,
	                                       .in = {3, 3}, .k = {3, 3}, .strides = {2, 2},
	                                       .out_shape = {8, 7}, .bias = true});
	/* groups, K above one cache block */
	conv_both(op, KILN_DT_F32, (conv_spec){.ns = 2, .n = 1, .c = 600, .m = 4, .group = 2,
	                                       .in = {3, 2}, .k = {2, 2}, .strides = {1, 1},
	                                       .bias = true});
	conv_both(op, KILN_DT_F32, (conv_spec){.ns = 2, .n = 1, .c = 6, .m = 9, .group = 3,
	                                       .in = {4, 4}, .k = {3, 3}, .strides = {2, 2},
	                                       .pads = {1, 1, 1, 1}, .auto_pad = NULL});
	conv_both(op, KILN_DT_F32, (conv_spec){.ns = 1, .n = 2, .c = 3, .m = 2, .group = 1,
	                                       .in = {10}, .k = {4}, .strides = {2},
	                                       .auto_pad = "SAME_UPPER", .bias = true});
	conv_both(op, KILN_DT_F32, (conv_spec){.ns = 3, .n = 1, .c = 2, .m = 3, .group = 1,
	                                       .in = {3, 4, 3}, .k = {2, 3, 2},
	                                       .strides = {2, 1, 2}, .bias = true});
	static const kiln_dtype dts[] = {KILN_DT_F64, KILN_DT_F16, KILN_DT_BF16};
	for (size_t i = 0; i < 3; i++)
		conv_case(op, dts[i],
		          &(conv_spec){.ns = 2, .n = 2, .c = 4, .m = 6, .group = 2, .in = {4, 3},
		                       .k = {3, 2}, .strides = {2, 1}, .pads = {1, 0, 0, 1},
		                       .out_pad = {1, 0}, .bias = true, .const_w = true});
}

/* ---- fused residual and activation ---------------------------------------- */

/* kharness runs nodes as the lowering leaves them; the fused epilogue
 * (KK_LA_T_RES, KK_LA_ACT) is set by the graph fusion, so these cases lower
 * the linalg node, patch the epilogue in, run the kernel with the residual as
 * an extra tensor and compare with the interpreter's unfused
 * node + Add + Relu/Clip. */

typedef struct fz_pool {
	int threads;
	int64_t scratch_bytes;
	unsigned char *scratch;
} fz_pool;

/* As kharness: chunks last first, each with its own thread scratch. */
static void fz_parallel_for(void *pool, int64_t n, kiln_abi_task_fn fn, void *arg)
{
	fz_pool *p = pool;
	int64_t chunks = n < p->threads ? n : p->threads;
	for (int64_t c = chunks - 1; c >= 0; c--)
		fn(arg, n * c / chunks, n * (c + 1) / chunks, p->scratch + c * p->scratch_bytes);
}

static void *fz_poisoned(int64_t bytes)
{
	void *p = malloc((size_t)(bytes > 0 ? bytes : 1));
	assert_non_null(p);
	memset(p, 0xff, (size_t)(bytes > 0 ? bytes : 1));
	return p;
}

/* g: verified; lin (its first node) feeds Add(lin, res) and then the
 * activation act (Relu, or Clip with constant bounds lo/hi) or nothing;
 * the graph's one output is the last of these. */
static void fused_check(kiln_graph *g, const kiln_node *lin, const kiln_value *res, int act,
                        double lo, double hi, const char *what)
{
	kiln_diag d;
	kiln_diag_init(&d, NULL);
	d.fn = NULL;
	kiln_dtype dt = lin->outputs[0]->type.dtype;
	kiln_tensor in[8];
	void *buf[64] = {0};
	assert_true(g->n_inputs <= 8 && g->n_values <= 64);
	uint64_t seed = 0x2545f4914f6cdd1dull;
	for (int i = 0; i < g->n_inputs; i++) {
		kiln_value *v = g->inputs[i];
		in[i] = (kiln_tensor){.type = v->type, .data = fz_poisoned(kiln_type_bytes(&v->type))};
		buf[v->id] = in[i].data;
		for (int64_t e = 0; e < kiln_type_numel(&v->type); e++) {
			seed ^= seed << 13;
			seed ^= seed >> 7;
			seed ^= seed << 17;
			double u = (double)(seed >> 11) / 9007199254740992.0 * 4.0 - 2.0;
			if (kiln_dtype_is_float(v->type.dtype))
				kiln_tensor_set_f64(&in[i], e, u);
			else
				kiln_tensor_set_i64(&in[i], e, (int64_t)(u < 0 ? u - 0.5 : u + 0.5));
		}
	}
	kiln_interp *it = NULL;
	assert_int_equal(kiln_interp_create(g, &it, &d), KILN_OK);
	assert_int_equal(kiln_interp_run(it, in, g->n_inputs, &d), KILN_OK);
	const kiln_tensor *ref = kiln_interp_output(it, 0);
	kiln_arena *arena = kiln_arena_create(NULL);
	kiln_kcall *c = calloc(1, sizeof *c);
	assert_true(arena && c);
	c->arena = arena;
	kiln_cpu_target target = {.vl = KK_VL, .arch = KILN_CPU_ARCH_X86_64};
	if (kiln_cpu_lower(lin, &target, c, &d) != KILN_OK)
		fail_msg("%s: %s", what, d.last);
	kk_fn fn = kh_kernel(c->fn);
	assert_non_null(fn);
	kiln_tensor got = {.type = lin->outputs[0]->type};
	int64_t ybytes = kiln_type_bytes(&got.type);
	char msg[256] = "";
	for (int th = 1; th <= 3 && !msg[0]; th += 2) {
		void *t[KILN_KCALL_MAX_T] = {0};
		int nt = 0;
		for (int i = 0; i < lin->n_inputs; i++, nt++) {
			const kiln_value *v = lin->inputs[i];
			t[nt] = c->repl[i] ? (void *)c->repl[i] : v->kind == KILN_VALUE_CONST ? v->data : buf[v->id];
		}
		t[nt++] = got.data = fz_poisoned(ybytes);
		void *scratch = c->scratch_bytes ? fz_poisoned(c->scratch_bytes) : NULL;
		if (scratch)
			t[nt++] = scratch;
		t[nt] = buf[res->id];
		c->ip[KK_LA_T_RES] = nt;
		c->ip[KK_LA_ACT] = act;
		c->fp[KK_LA_FP_LO] = lo;
		c->fp[KK_LA_FP_HI] = hi;
		fz_pool pool = {.threads = th, .scratch_bytes = (c->thread_scratch_bytes + 63) / 64 * 64};
		pool.scratch = fz_poisoned(pool.scratch_bytes * th);
		kiln_abi_host host = {.version = KILN_ABI_VERSION, .n_threads = th, .pool = &pool,
		                      .parallel_for = fz_parallel_for};
		fn(c->ip, c->fp, t, &host);
		double rtol = dt == KILN_DT_F32 ? 1e-4 : 0.0, atol = dt == KILN_DT_F32 ? 2e-4 : 0.0;
		for (int64_t e = 0; e < kiln_type_numel(&got.type) && !msg[0]; e++) {
			double a = kiln_tensor_get_f64(&got, e), b = kiln_tensor_get_f64(ref, e);
			double diff = a > b ? a - b : b - a, mag = b < 0 ? -b : b;
			if (!(diff <= atol + rtol * mag))
				snprintf(msg, sizeof msg, "threads %d element %lld: kernel %.9g, interpreter %.9g",
				         th, (long long)e, a, b);
		}
		free(got.data);
		free(scratch);
		free(pool.scratch);
	}
	free(c);
	kiln_arena_destroy(arena);
	kiln_interp_destroy(it);
	for (int i = 0; i < g->n_inputs; i++)
		free(in[i].data);
	kiln_graph_destroy(g);
	if (msg[0])
		fail_msg("%s: %s", what, msg);
}

/* Appends Add(lin's output, new input R) and the activation, typechecks and
 * checks; act: 0 none, 1 Relu, 2 Clip [-0.5, 1.5] (bounds as constants). */
static void fused_tail(kiln_graph *g, kiln_node *lin, int act, const char *what)
{
	kh_typecheck(g, what);
	kiln_dtype dt = lin->outputs[0]->type.dtype;
	const kiln_type *yt = &lin->outputs[0]->type;
	kiln_value *r = kh_input(g, dt, yt->rank, yt->dims);
	kiln_value *ai[2] = {lin->outputs[0], r};
	kiln_node *sum = kiln_graph_add_node(g, KILN_OP_ADD, NULL, ai, 2, NULL, 1);
	assert_non_null(sum);
	kiln_node *last = sum;
	double lo = -0.5, hi = 1.5;
	if (act) {
		kiln_value *xi[3] = {sum->outputs[0], NULL, NULL};
		if (act == KK_LA_ACT_CLIP) {
			kiln_type st = {.dtype = dt, .rank = 0};
			kiln_value *b[2] = {kiln_graph_add_const(g, NULL, &st, NULL),
			                    kiln_graph_add_const(g, NULL, &st, NULL)};
			assert_true(b[0] && b[1]);
			kiln_tensor tl = {.type = st, .data = b[0]->data}, thi = {.type = st, .data = b[1]->data};
			kiln_tensor_set_f64(&tl, 0, lo);
			kiln_tensor_set_f64(&thi, 0, hi);
			xi[1] = b[0];
			xi[2] = b[1];
		}
		last = kiln_graph_add_node(g, act == KK_LA_ACT_CLIP ? KILN_OP_CLIP : KILN_OP_RELU, NULL,
		                           xi, act == KK_LA_ACT_CLIP ? 3 : 1, NULL, 1);
		assert_non_null(last);
	}
	assert_int_equal(kiln_graph_add_output(g, last->outputs[0]), KILN_OK);
	kh_typecheck(g, what);
	fused_check(g, lin, r, act, lo, hi, what);
}

static void fused_conv(kiln_dtype dt, const conv_spec *s, int act)
{
	kiln_graph *g = kh_graph();
	int64_t xd[5] = {s->n, s->c}, wd[5] = {s->m, s->c / s->group};
	for (int i = 0; i < s->ns; i++) {
		xd[2 + i] = s->in[i];
		wd[2 + i] = s->k[i];
	}
	kiln_value *in[3] = {kh_input(g, dt, 2 + s->ns, xd), operand(g, s->const_w, dt, 2 + s->ns, wd)};
	int n_in = 2;
	if (s->bias)
		in[n_in++] = const_rand(g, dt, SHAPE(s->m));
	kiln_node *nd = kh_node(g, KILN_OP_CONV, in, n_in, 1);
	if (s->group != 1)
		kiln_node_set_int(g, nd, "group", s->group);
	if (s->strides[0])
		kiln_node_set_ints(g, nd, "strides", s->strides, s->ns);
	if (s->pads[0] || s->pads[1] || s->pads[2] || s->pads[3])
		kiln_node_set_ints(g, nd, "pads", s->pads, 2 * s->ns);
	char what[160];
	snprintf(what, sizeof what, "fused Conv %s c%lld m%lld g%lld in %lldx%lld k %lld s %lld act %d",
	         kiln_dtype_name(dt), (long long)s->c, (long long)s->m, (long long)s->group,
	         (long long)s->in[0], (long long)s->in[1], (long long)s->k[0],
	         (long long)s->strides[0], act);
	fused_tail(g, nd, act, what);
}

static void test_fused_conv(void **state)
{
	(void)state;
	static const conv_spec specs[] = {
		/* im2col through phase planes, 2 images */
		{.ns = 2, .n = 2, .c = 5, .m = 13, .group = 1, .in = {9, 11}, .k = {3, 3},
		 .pads = {1, 1, 1, 1}, .bias = true, .const_w = true},
		/* K over several blocks, weights at run time */
		{.ns = 2, .n = 1, .c = 40, .m = 33, .group = 1, .in = {7, 7}, .k = {3, 3},
		 .pads = {1, 1, 1, 1}, .bias = true},
		/* 1x1 direct, groups, 2 images */
		{.ns = 2, .n = 2, .c = 6, .m = 9, .group = 3, .in = {5, 7}, .k = {1, 1},
		 .const_w = true},
		/* late-layer shape (small N, many channels), stride 2 */
		{.ns = 2, .n = 1, .c = 64, .m = 100, .group = 1, .in = {14, 14}, .k = {3, 3},
		 .strides = {2, 2}, .pads = {1, 1, 1, 1}, .bias = true, .const_w = true},
		{.ns = 2, .n = 2, .c = 300, .m = 37, .group = 1, .in = {7, 7}, .k = {1, 1},
		 .bias = true, .const_w = true},
		/* transposed products (KK_LA_TRANS): 1x1 and 3x3 with K over two
		 * blocks (AVX-512), one output position (every VL) */
		{.ns = 2, .n = 2, .c = 300, .m = 128, .group = 1, .in = {7, 7}, .k = {1, 1},
		 .bias = true, .const_w = true},
		{.ns = 2, .n = 1, .c = 40, .m = 600, .group = 1, .in = {7, 7}, .k = {3, 3},
		 .pads = {1, 1, 1, 1}, .bias = true, .const_w = true},
		{.ns = 2, .n = 2, .c = 7, .m = 30, .group = 1, .in = {5, 4}, .k = {5, 4},
		 .bias = true, .const_w = true},
		/* im2col read in place (depth 432), rows of 27 in several tiles */
		{.ns = 2, .n = 2, .c = 48, .m = 20, .group = 1, .in = {10, 27}, .k = {3, 3},
		 .pads = {1, 1, 1, 1}, .bias = true, .const_w = true},
	};
	for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++)
		for (int act = KK_LA_ACT_NONE; act <= KK_LA_ACT_CLIP; act++)
			fused_conv(KILN_DT_F32, &specs[i], act);
	for (int act = KK_LA_ACT_NONE; act <= KK_LA_ACT_CLIP; act++) {
		fused_conv(KILN_DT_F64, &specs[0], act);
		fused_conv(KILN_DT_F16, &specs[2], act);
	}
}

static void fused_gemm(kiln_dtype dt, kiln_op op, int64_t batch, int64_t m, int64_t n, int64_t k,
                       bool const_b, bool with_c, int act)
{
	kiln_graph *g = kh_graph();
	kiln_value *in[3];
	int n_in = 2;
	if (batch > 1) {
		in[0] = kh_input(g, dt, SHAPE(batch, m, k));
		in[1] = operand(g, const_b, dt, SHAPE(k, n));
	} else {
		in[0] = kh_input(g, dt, SHAPE(m, k));
		in[1] = operand(g, const_b, dt, SHAPE(k, n));
	}
	if (with_c)
		in[n_in++] = const_rand(g, dt, SHAPE(n));
	kiln_node *nd = kh_node(g, op, in, n_in, 1);
	if (op == KILN_OP_GEMM)
		kiln_node_set_float(g, nd, "alpha", 0.5f);
	char what[160];
	snprintf(what, sizeof what, "fused %s %s %lldx%lldx%lldx%lld const %d c %d act %d",
	         kiln_op_name(op), kiln_dtype_name(dt), (long long)batch, (long long)m, (long long)n,
	         (long long)k, const_b, with_c, act);
	fused_tail(g, nd, act, what);
}

static void test_fused_gemm(void **state)
{
	(void)state;
	static const int64_t sz[][3] = {{1, 1, 1}, {17, 49, 300}, {100, 33, 70}, {1, 300, 40},
	                                {260, 7, 600}, {5, 1, 9}};
	for (size_t i = 0; i < sizeof sz / sizeof sz[0]; i++)
		for (int act = KK_LA_ACT_NONE; act <= KK_LA_ACT_CLIP; act++) {
			fused_gemm(KILN_DT_F32, KILN_OP_GEMM, 1, sz[i][0], sz[i][1], sz[i][2], act != 1,
			           true, act);
			fused_gemm(KILN_DT_F32, KILN_OP_MATMUL, 3, sz[i][0], sz[i][1], sz[i][2], act == 1,
			           false, act);
		}
	fused_gemm(KILN_DT_F32, KILN_OP_GEMM, 1, 9, 10, 0, true, true, KK_LA_ACT_CLIP);
	for (int act = KK_LA_ACT_NONE; act <= KK_LA_ACT_CLIP; act++) {
		fused_gemm(KILN_DT_I32, KILN_OP_GEMM, 1, 7, 9, 5, false, true, act);
		fused_gemm(KILN_DT_F64, KILN_OP_MATMUL, 2, 7, 9, 5, true, false, act);
		fused_gemm(KILN_DT_BF16, KILN_OP_GEMM, 1, 4, 6, 3, false, false, act);
	}
}

/* ---- depthwise Conv (kk_conv_dw_f32) --------------------------------------- */

/* 3x3 pad 1 depthwise over odd plane sizes (flat bands for short rows,
 * row blocks with shared rows, several bands at 112) and strides 1, 2
 * (masked window fill, both width phases from one load) and 3 (general
 * fill); rows and columns differ in size so a transposed index shows. */
static void test_conv_dw_planes(void **state)
{
	(void)state;
	static const int64_t sz[] = {1, 3, 5, 7, 17, 33, 112};
	for (size_t i = 0; i < sizeof sz / sizeof sz[0]; i++)
		for (int64_t st = 1; st <= 3; st++) {
			int64_t h = sz[i], w = sz[i] < 100 ? 2 * sz[i] + 1 : sz[i];
			conv_both(KILN_OP_CONV, KILN_DT_F32,
			          (conv_spec){.ns = 2, .n = sz[i] < 100 ? 2 : 1, .c = 3, .m = 3, .group = 3,
			                      .in = {h, w}, .k = {3, 3}, .strides = {st, st},
			                      .pads = {1, 1, 1, 1}, .bias = st != 2});
			conv_both(KILN_OP_CONV, KILN_DT_F32,
			          (conv_spec){.ns = 2, .n = 1, .c = 2, .m = 2, .group = 2, .in = {w, h},
			                      .k = {3, 3}, .strides = {st, st}, .pads = {1, 1, 1, 1},
			                      .bias = true});
		}
}

static void test_conv_dw_geometry(void **state)
{
	(void)state;
	kiln_op op = KILN_OP_CONV;
	/* dilation 2 with strides 1 and 2 (3x3 taps, but not the shared-row body) */
	for (int64_t st = 1; st <= 2; st++)
		conv_both(op, KILN_DT_F32, (conv_spec){.ns = 2, .n = 1, .c = 3, .m = 3, .group = 3,
		                                       .in = {17, 33}, .k = {3, 3}, .strides = {st, st},
		                                       .dil = {2, 2}, .pads = {2, 2, 2, 2}, .bias = true});
	/* asymmetric pads, stride 2 in one axis only */
	conv_both(op, KILN_DT_F32, (conv_spec){.ns = 2, .n = 2, .c = 4, .m = 4, .group = 4,
	                                       .in = {15, 22}, .k = {3, 3}, .strides = {1, 2},
	                                       .pads = {0, 2, 1, 0}, .bias = true});
	conv_both(op, KILN_DT_F32, (conv_spec){.ns = 2, .n = 1, .c = 3, .m = 3, .group = 3,
	                                       .in = {14, 14}, .k = {3, 3}, .strides = {2, 1},
	                                       .pads = {1, 0, 2, 1}});
	/* pads wider than a vector, kernel 5x3, channel multiplier 3 */
	conv_both(op, KILN_DT_F32, (conv_spec){.ns = 2, .n = 1, .c = 2, .m = 6, .group = 2,
	                                       .in = {9, 40}, .k = {5, 3}, .pads = {0, 20, 3, 17},
	                                       .bias = true});
	/* one column, one row */
	conv_both(op, KILN_DT_F32, (conv_spec){.ns = 2, .n = 2, .c = 3, .m = 3, .group = 3,
	                                       .in = {19, 1}, .k = {3, 3}, .pads = {1, 1, 1, 1}});
	conv_both(op, KILN_DT_F32, (conv_spec){.ns = 2, .n = 1, .c = 3, .m = 3, .group = 3,
	                                       .in = {1, 50}, .k = {1, 3}, .strides = {1, 2},
	                                       .pads = {0, 1, 0, 1}, .bias = true});
	/* many bands of few rows each (wide rows), 3 threads over bands */
	conv_both(op, KILN_DT_F32, (conv_spec){.ns = 2, .n = 1, .c = 2, .m = 2, .group = 2,
	                                       .in = {61, 300}, .k = {3, 3}, .pads = {1, 1, 1, 1},
	                                       .bias = true});
	/* MobileNet's late layers: many small planes split over threads */
	conv_both(op, KILN_DT_F32, (conv_spec){.ns = 2, .n = 1, .c = 96, .m = 96, .group = 96,
	                                       .in = {7, 7}, .k = {3, 3}, .pads = {1, 1, 1, 1},
	                                       .bias = true});
	conv_both(op, KILN_DT_F32, (conv_spec){.ns = 2, .n = 1, .c = 40, .m = 40, .group = 40,
	                                       .in = {14, 14}, .k = {3, 3}, .strides = {2, 2},
	                                       .pads = {1, 1, 1, 1}, .bias = true});
	/* 1-D: long rows (one band row), stride 2 with dilation */
	conv_both(op, KILN_DT_F32, (conv_spec){.ns = 1, .n = 2, .c = 3, .m = 3, .group = 3,
	                                       .in = {1000}, .k = {3}, .strides = {2}, .dil = {2},
	                                       .pads = {3, 0}, .bias = true});
	conv_both(op, KILN_DT_F32, (conv_spec){.ns = 1, .n = 1, .c = 5, .m = 10, .group = 5,
	                                       .in = {6}, .k = {7}, .pads = {3, 3}});
	/* 3-D: depth taps and depth stride (window depth rows) */
	conv_both(op, KILN_DT_F32, (conv_spec){.ns = 3, .n = 1, .c = 3, .m = 3, .group = 3,
	                                       .in = {7, 9, 17}, .k = {3, 3, 3}, .strides = {2, 1, 2},
	                                       .dil = {1, 2, 1}, .pads = {1, 1, 2, 1, 2, 0},
	                                       .bias = true});
}

/* Depthwise Conv + Add(residual) + activation, fused into the kernel's
 * epilogue (flat bands, row blocks with partial last vectors, bands). */
static void dw_fused(const conv_spec *s, int act)
{
	kiln_graph *g = kh_graph();
	int64_t xd[5] = {s->n, s->c}, wd[5] = {s->m, 1};
	for (int i = 0; i < s->ns; i++) {
		xd[2 + i] = s->in[i];
		wd[2 + i] = s->k[i];
	}
	kiln_value *in[3] = {kh_input(g, KILN_DT_F32, 2 + s->ns, xd),
	                     operand(g, s->const_w, KILN_DT_F32, 2 + s->ns, wd)};
	int n_in = 2;
	if (s->bias)
		in[n_in++] = const_rand(g, KILN_DT_F32, SHAPE(s->m));
	kiln_node *nd = kh_node(g, KILN_OP_CONV, in, n_in, 1);
	kiln_node_set_int(g, nd, "group", s->group);
	if (s->strides[0])
		kiln_node_set_ints(g, nd, "strides", s->strides, s->ns);
	if (s->dil[0])
		kiln_node_set_ints(g, nd, "dilations", s->dil, s->ns);
	kiln_node_set_ints(g, nd, "pads", s->pads, 2 * s->ns);
	char what[160];
	snprintf(what, sizeof what, "fused depthwise Conv c%lld m%lld in %lldx%lld s %lld act %d",
	         (long long)s->c, (long long)s->m, (long long)s->in[0], (long long)s->in[1],
	         (long long)s->strides[0], act);
	fused_tail(g, nd, act, what);
}

static void test_fused_conv_dw(void **state)
{
	(void)state;
	static const conv_spec specs[] = {
		{.ns = 2, .n = 2, .c = 5, .m = 5, .group = 5, .in = {7, 7}, .k = {3, 3},
		 .pads = {1, 1, 1, 1}, .bias = true, .const_w = true},
		{.ns = 2, .n = 1, .c = 6, .m = 6, .group = 6, .in = {14, 14}, .k = {3, 3},
		 .strides = {2, 2}, .pads = {1, 1, 1, 1}, .bias = true, .const_w = true},
		{.ns = 2, .n = 1, .c = 3, .m = 3, .group = 3, .in = {33, 17}, .k = {3, 3},
		 .pads = {1, 1, 1, 1}},
		{.ns = 2, .n = 1, .c = 2, .m = 4, .group = 2, .in = {112, 112}, .k = {3, 3},
		 .pads = {1, 1, 1, 1}, .bias = true, .const_w = true},
		{.ns = 2, .n = 1, .c = 3, .m = 3, .group = 3, .in = {11, 23}, .k = {5, 3},
		 .strides = {3, 3}, .dil = {1, 2}, .pads = {2, 0, 1, 3}, .bias = true},
		{.ns = 2, .n = 1, .c = 2, .m = 2, .group = 2, .in = {1, 1}, .k = {3, 3},
		 .pads = {1, 1, 1, 1}, .bias = true},
		/* row blocks whose last vectors are partial (through a tile) */
		{.ns = 2, .n = 2, .c = 3, .m = 3, .group = 3, .in = {22, 37}, .k = {3, 3},
		 .pads = {1, 1, 1, 1}, .bias = true, .const_w = true},
		{.ns = 2, .n = 1, .c = 3, .m = 3, .group = 3, .in = {30, 50}, .k = {3, 3},
		 .strides = {2, 2}, .pads = {1, 1, 1, 1}},
	};
	for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++)
		for (int act = KK_LA_ACT_NONE; act <= KK_LA_ACT_CLIP; act++)
			dw_fused(&specs[i], act);
	/* an activation the block kernels leave to dw_part (Gelu: the fusion
	 * does not put it after a Conv, the kernel takes it all the same) */
	static const size_t gelu_specs[] = {0, 1, 6};
	for (size_t i = 0; i < sizeof gelu_specs / sizeof gelu_specs[0]; i++) {
		const conv_spec *sp = &specs[gelu_specs[i]];
		kiln_graph *g = kh_graph();
		int64_t xd[4] = {sp->n, sp->c, sp->in[0], sp->in[1]};
		int64_t wd[4] = {sp->m, 1, sp->k[0], sp->k[1]};
		kiln_value *in[3] = {kh_input(g, KILN_DT_F32, 4, xd), const_rand(g, KILN_DT_F32, 4, wd),
		                     const_rand(g, KILN_DT_F32, SHAPE(sp->m))};
		kiln_node *nd = kh_node(g, KILN_OP_CONV, in, 3, 1);
		kiln_node_set_int(g, nd, "group", sp->group);
		if (sp->strides[0])
			kiln_node_set_ints(g, nd, "strides", sp->strides, 2);
		kiln_node_set_ints(g, nd, "pads", sp->pads, 4);
		kh_typecheck(g, "depthwise Gelu");
		const kiln_type *yt = &nd->outputs[0]->type;
		kiln_value *r = kh_input(g, KILN_DT_F32, yt->rank, yt->dims);
		kiln_value *ai[2] = {nd->outputs[0], r};
		kiln_node *sum = kh_node(g, KILN_OP_ADD, ai, 2, 1);
		kiln_node *ge = kh_node(g, KILN_OP_GELU, sum->outputs, 1, 1);
		assert_int_equal(kiln_graph_add_output(g, ge->outputs[0]), KILN_OK);
		kh_typecheck(g, "depthwise Gelu");
		fused_check(g, nd, r, KK_LA_ACT_GELU, 0.0, 0.0, "fused depthwise Conv + Gelu");
	}
}

/* ---- lowering errors ------------------------------------------------------ */

static void test_lowering_errors(void **state)
{
	(void)state;
	/* Four spatial dims: the interpreter has no kernel either. */
	kiln_graph *g = kh_graph();
	kiln_value *in[2] = {kh_input(g, KILN_DT_F32, SHAPE(1, 1, 2, 2, 2, 2)),
	                     const_rand(g, KILN_DT_F32, SHAPE(1, 1, 1, 1, 1, 1))};
	kiln_node *n = kh_add(g, KILN_OP_CONV, in, 2, 1);
	kiln_diag d;
	kiln_diag_init(&d, NULL);
	d.fn = NULL;
	if (kiln_infer_shapes(g, &d) == KILN_OK) {
		kh_opts o = kh_defaults();
		char msg[512], want[256];
		assert_int_equal(kh_run(g, &o, msg, sizeof msg), KILN_ERR_UNSUPPORTED);
		snprintf(want, sizeof want, "node '%s' (Conv): 4 spatial dims (1 to 3 supported)",
		         n->name);
		if (!strstr(msg, want))
			fail_msg("got '%s', want '%s'", msg, want);
	}
	kiln_graph_destroy(g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_gemm_sizes),
		cmocka_unit_test(test_gemm_trans),
		cmocka_unit_test(test_gemm_alpha_beta_c),
		cmocka_unit_test(test_gemm_dtypes),
		cmocka_unit_test(test_matmul_f32),
		cmocka_unit_test(test_matmul_dtypes),
		cmocka_unit_test(test_conv_2d),
		cmocka_unit_test(test_conv_transposed_product),
		cmocka_unit_test(test_conv_implicit),
		cmocka_unit_test(test_conv_auto_pad),
		cmocka_unit_test(test_conv_depthwise),
		cmocka_unit_test(test_conv_1d_3d),
		cmocka_unit_test(test_conv_dtypes),
		cmocka_unit_test(test_conv_transpose),
		cmocka_unit_test(test_fused_conv),
		cmocka_unit_test(test_fused_gemm),
		cmocka_unit_test(test_conv_dw_planes),
		cmocka_unit_test(test_conv_dw_geometry),
		cmocka_unit_test(test_fused_conv_dw),
		cmocka_unit_test(test_lowering_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
