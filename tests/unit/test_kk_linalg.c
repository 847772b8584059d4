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
#include <string.h>

#include "interp.h"
#include "kharness.h"


static kiln_graph *new_graph(void)
{
	kiln_graph *g = kiln_graph_create("t", NULL);
	assert_non_null(g);
	return g;
}

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

static kiln_node *add(kiln_graph *g, kiln_op op, kiln_value *const *ins, int n_in)
{
	kiln_node *n = kiln_graph_add_node(g, op, NULL, ins, n_in, NULL, 1);
	assert_non_null(n);
	assert_int_equal(kiln_graph_add_output(g, n->outputs[0]), KILN_OK);
	return n;
}

static void typecheck(kiln_graph *g, const char *what)
{
	kiln_diag d;
	kiln_diag_init(&d, NULL);
	d.fn = NULL;
	if (kiln_infer_shapes(g, &d) != KILN_OK || kiln_graph_verify(g, &d) != KILN_OK)
		fail_msg("%s: graph does not verify: %s", what, d.last);
}

/* Checks g at 1 and 3 threads, then destroys it. */
static void check(kiln_graph *g, const char *what, double rtol, double atol)
{
	typecheck(g, what);
	kh_opts o = kh_defaults();
	o.rtol = rtol;
	o.atol = atol;
	char msg[1024];
	for (int th = 1; th <= 3; th += 2) {
		o.threads = th;
		o.seed = (uint64_t)th * 7 + 1;
		if (kh_run(g, &o, msg, sizeof msg) != KILN_OK) {
			kiln_graph_destroy(g);
			fail_msg("%s (threads %d): %s", what, th, msg);
		}
	}
	kiln_graph_destroy(g);
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
	kiln_graph *g = new_graph();
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
	kiln_node *nd = add(g, KILN_OP_GEMM, in, n_in);
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
	check(g, what, rtol_for(dt), atol_for(dt));
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
	kiln_graph *g = new_graph();
	kiln_value *in[2] = {operand(g, const_a, dt, ra, da), operand(g, const_b, dt, rb, db)};
	add(g, KILN_OP_MATMUL, in, 2);
	char what[128];
	snprintf(what, sizeof what, "MatMul %s rank %d x rank %d const %d%d", kiln_dtype_name(dt), ra,
	         rb, const_a, const_b);
	check(g, what, rtol, atol_for(dt));
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
	kiln_graph *g = new_graph();
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
	kiln_node *nd = add(g, op, in, n_in);
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
	check(g, what, rtol_for(dt), atol_for(dt));
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

/* ---- lowering errors ------------------------------------------------------ */

static void test_lowering_errors(void **state)
{
	(void)state;
	/* Four spatial dims: the interpreter has no kernel either. */
	kiln_graph *g = new_graph();
	kiln_value *in[2] = {kh_input(g, KILN_DT_F32, SHAPE(1, 1, 2, 2, 2, 2)),
	                     const_rand(g, KILN_DT_F32, SHAPE(1, 1, 1, 1, 1, 1))};
	kiln_node *n = add(g, KILN_OP_CONV, in, 2);
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
		cmocka_unit_test(test_conv_auto_pad),
		cmocka_unit_test(test_conv_depthwise),
		cmocka_unit_test(test_conv_1d_3d),
		cmocka_unit_test(test_conv_dtypes),
		cmocka_unit_test(test_conv_transpose),
		cmocka_unit_test(test_lowering_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
