/* test_interp_a.c — the reference interpreter's sessions and its conv, pool,
 * matmul, norm, reduce and resize kernels.
 *
 * Nodes are built with the builder over constant inputs, typed by shape
 * inference and evaluated with kiln_interp_eval_node. Expectations are hand
 * worked (small cases, ONNX spec examples) or come from naive loops written
 * here independently of the kernels (conv as a 7-deep loop, ConvTranspose
 * as a scatter, Gemm / MatMul as triple loops). f32 results are compared
 * with atol 1e-4 + rtol 1e-4 unless stated. */
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
#include "interp_session.h"

typedef struct fixture {
	kiln_graph *g;
	kiln_diag d;
	void *bufs[8]; /* outputs of the last eval, freed by teardown / the next eval */
	int n_bufs;
} fixture;

static void free_bufs(fixture *f)
{
	for (int i = 0; i < f->n_bufs; i++)
		free(f->bufs[i]);
	f->n_bufs = 0;
}

static int setup(void **state)
{
	fixture *f = calloc(1, sizeof *f);
	if (!f)
		return -1;
	f->g = kiln_graph_create("t", NULL);
	kiln_diag_init(&f->d, NULL);
	f->d.fn = NULL; /* keep expected errors off stderr; d.last has them */
	*state = f;
	return f->g ? 0 : -1;
}

static int teardown(void **state)
{
	fixture *f = *state;
	free_bufs(f);
	kiln_graph_destroy(f->g);
	free(f);
	return 0;
}

static kiln_type ty(kiln_dtype dt, int rank, const int64_t *dims)
{
	kiln_type t = {.dtype = dt, .rank = rank};
	for (int i = 0; i < rank; i++)
		t.dims[i] = dims[i];
	return t;
}

static kiln_value *cnst(fixture *f, kiln_dtype dt, int rank, const int64_t *dims, const void *data)
{
	kiln_type t = ty(dt, rank, dims);
	kiln_value *v = kiln_graph_add_const(f->g, NULL, &t, data);
	assert_non_null(v);
	return v;
}

#define DIMS(...) ((const int64_t[]){__VA_ARGS__})
#define F32(...) ((const float[]){__VA_ARGS__})
#define I64(...) ((const int64_t[]){__VA_ARGS__})

static kiln_node *node(fixture *f, kiln_op op, kiln_value *const *ins, int n_in, int n_out)
{
	kiln_node *n = kiln_graph_add_node(f->g, op, NULL, ins, n_in, NULL, n_out);
	assert_non_null(n);
	return n;
}

/* Infers the node's output types and evaluates it; outputs land in f->bufs. */
static kiln_status eval(fixture *f, kiln_node *n)
{
	kiln_status s = kiln_infer_node(n, &f->d);
	if (s != KILN_OK)
		return s;
	free_bufs(f);
	for (int i = 0; i < n->n_outputs; i++) {
		size_t b = kiln_type_bytes(&n->outputs[i]->type);
		f->bufs[i] = malloc(b ? b : 1);
		assert_non_null(f->bufs[i]);
		f->n_bufs++;
	}
	return kiln_interp_eval_node(n, f->bufs, &f->d);
}

static void expect_dims(const kiln_value *v, int rank, const int64_t *dims)
{
	assert_int_equal(v->type.rank, rank);
	for (int i = 0; i < rank; i++)
		assert_int_equal(v->type.dims[i], dims[i]);
}

static void expect_close_f32(const float *got, const double *want, int64_t count, double tol)
{
	for (int64_t i = 0; i < count; i++) {
		if (!(fabs(got[i] - want[i]) <= tol + tol * fabs(want[i])))
			fail_msg("element %lld: got %.9g, want %.9g", (long long)i, got[i], want[i]);
	}
}

static void expect_f32(const float *got, const float *want, int64_t count, double tol)
{
	for (int64_t i = 0; i < count; i++) {
		if (!(fabs(got[i] - want[i]) <= tol + tol * fabs(want[i])))
			fail_msg("element %lld: got %.9g, want %.9g", (long long)i, got[i], (double)want[i]);
	}
}

/* Deterministic values in [-1, 1). */
static void fill(float *p, int64_t n, uint32_t seed)
{
	for (int64_t i = 0; i < n; i++) {
		seed = seed * 1664525u + 1013904223u;
		p[i] = (float)((seed >> 8) / (double)(1u << 24) * 2.0 - 1.0);
	}
}

/* ---- Conv ---- */

static void test_conv_hand(void **state)
{
	fixture *f = *state;
	float x[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
	kiln_value *in[3] = {cnst(f, KILN_DT_F32, 4, DIMS(1, 1, 3, 3), x),
	                     cnst(f, KILN_DT_F32, 4, DIMS(1, 1, 2, 2), F32(1, 0, 0, -1)),
	                     cnst(f, KILN_DT_F32, 1, DIMS(1), F32(0.5f))};
	kiln_node *n = node(f, KILN_OP_CONV, in, 3, 1);
	assert_int_equal(eval(f, n), KILN_OK);
	expect_dims(n->outputs[0], 4, DIMS(1, 1, 2, 2));
	/* x[i][j] - x[i+1][j+1] = -4 everywhere, plus the bias. */
	expect_f32(f->bufs[0], F32(-3.5f, -3.5f, -3.5f, -3.5f), 4, 0);

	/* pads 1 on every side: a 4x4 output; corner (0,0) sees only -x[0][0]. */
	kiln_node *p = node(f, KILN_OP_CONV, in, 2, 1);
	assert_int_equal(kiln_node_set_ints(f->g, p, "pads", I64(1, 1, 1, 1), 4), KILN_OK);
	assert_int_equal(eval(f, p), KILN_OK);
	expect_dims(p->outputs[0], 4, DIMS(1, 1, 4, 4));
	const float *y = f->bufs[0];
	assert_float_equal(y[0], -1, 0);
	assert_float_equal(y[5], 1 - 5, 0);
	assert_float_equal(y[15], 9, 0);
	assert_float_equal(y[3], 0, 0);
}

typedef struct conv_case {
	int64_t n, c, m, group, h, w, kh, kw, sh, sw, dh, dw, pt, pl, pb, pr;
} conv_case;

static int64_t conv_out(int64_t in, int64_t k, int64_t s, int64_t dl, int64_t p0, int64_t p1)
{
	return (in + p0 + p1 - ((k - 1) * dl + 1)) / s + 1;
}

/* The naive 7-loop definition of a grouped 2-D convolution. */
static void conv_ref(const conv_case *c, const float *x, const float *w, const float *b, double *y)
{
	int64_t oh = conv_out(c->h, c->kh, c->sh, c->dh, c->pt, c->pb);
	int64_t ow = conv_out(c->w, c->kw, c->sw, c->dw, c->pl, c->pr);
	int64_t cg = c->c / c->group, mg = c->m / c->group;
	for (int64_t nb = 0; nb < c->n; nb++)
		for (int64_t m = 0; m < c->m; m++)
			for (int64_t i = 0; i < oh; i++)
				for (int64_t j = 0; j < ow; j++) {
					double acc = b ? b[m] : 0;
					for (int64_t ci = 0; ci < cg; ci++)
						for (int64_t ki = 0; ki < c->kh; ki++)
							for (int64_t kj = 0; kj < c->kw; kj++) {
								int64_t hi = i * c->sh + ki * c->dh - c->pt;
								int64_t wi = j * c->sw + kj * c->dw - c->pl;
								if (hi < 0 || hi >= c->h || wi < 0 || wi >= c->w)
									continue;
								int64_t cin = (m / mg) * cg + ci;
								acc += (double)x[((nb * c->c + cin) * c->h + hi) * c->w + wi] *
								       w[((m * cg + ci) * c->kh + ki) * c->kw + kj];
							}
					y[((nb * c->m + m) * oh + i) * ow + j] = acc;
				}
}

/* Runs the case through the kernel in dtype dt (1-D when h == 1 and kh == 1
 * and one_d) and compares with the reference. */
static void run_conv_case(fixture *f, const conv_case *c, kiln_dtype dt, bool one_d)
{
	int64_t nx = c->n * c->c * c->h * c->w, nw = c->m * (c->c / c->group) * c->kh * c->kw;
	float *x = malloc((size_t)nx * sizeof *x), *w = malloc((size_t)nw * sizeof *w);
	float b[64];
	fill(x, nx, 1);
	fill(w, nw, 2);
	fill(b, c->m, 3);
	int64_t oh = conv_out(c->h, c->kh, c->sh, c->dh, c->pt, c->pb);
	int64_t ow = conv_out(c->w, c->kw, c->sw, c->dw, c->pl, c->pr);
	int64_t ny = c->n * c->m * oh * ow;
	double *want = malloc((size_t)ny * sizeof *want);
	conv_ref(c, x, w, b, want);

	kiln_value *in[3];
	if (dt == KILN_DT_F64) {
		double *xd = malloc((size_t)nx * sizeof *xd), *wd = malloc((size_t)nw * sizeof *wd), bd[64];
		for (int64_t i = 0; i < nx; i++)
			xd[i] = x[i];
		for (int64_t i = 0; i < nw; i++)
			wd[i] = w[i];
		for (int64_t i = 0; i < c->m; i++)
			bd[i] = b[i];
		in[0] = cnst(f, dt, 4, DIMS(c->n, c->c, c->h, c->w), xd);
		in[1] = cnst(f, dt, 4, DIMS(c->m, c->c / c->group, c->kh, c->kw), wd);
		in[2] = cnst(f, dt, 1, DIMS(c->m), bd);
		free(xd);
		free(wd);
	} else if (one_d) {
		in[0] = cnst(f, dt, 3, DIMS(c->n, c->c, c->w), x);
		in[1] = cnst(f, dt, 3, DIMS(c->m, c->c / c->group, c->kw), w);
		in[2] = cnst(f, dt, 1, DIMS(c->m), b);
	} else {
		in[0] = cnst(f, dt, 4, DIMS(c->n, c->c, c->h, c->w), x);
		in[1] = cnst(f, dt, 4, DIMS(c->m, c->c / c->group, c->kh, c->kw), w);
		in[2] = cnst(f, dt, 1, DIMS(c->m), b);
	}
	kiln_node *n = node(f, KILN_OP_CONV, in, 3, 1);
	assert_int_equal(kiln_node_set_int(f->g, n, "group", c->group), KILN_OK);
	if (one_d) {
		assert_int_equal(kiln_node_set_ints(f->g, n, "strides", I64(c->sw), 1), KILN_OK);
		assert_int_equal(kiln_node_set_ints(f->g, n, "dilations", I64(c->dw), 1), KILN_OK);
		assert_int_equal(kiln_node_set_ints(f->g, n, "pads", I64(c->pl, c->pr), 2), KILN_OK);
	} else {
		assert_int_equal(kiln_node_set_ints(f->g, n, "strides", I64(c->sh, c->sw), 2), KILN_OK);
		assert_int_equal(kiln_node_set_ints(f->g, n, "dilations", I64(c->dh, c->dw), 2), KILN_OK);
		assert_int_equal(kiln_node_set_ints(f->g, n, "pads", I64(c->pt, c->pl, c->pb, c->pr), 4),
		                 KILN_OK);
	}
	assert_int_equal(eval(f, n), KILN_OK);
	assert_int_equal(kiln_type_numel(&n->outputs[0]->type), ny);
	if (dt == KILN_DT_F64) {
		const double *y = f->bufs[0];
		for (int64_t i = 0; i < ny; i++)
			assert_float_equal(y[i], want[i], 1e-9);
	} else {
		expect_close_f32(f->bufs[0], want, ny, 1e-4);
	}
	free(x);
	free(w);
	free(want);
}

static void test_conv_grouped_strided_dilated_padded(void **state)
{
	fixture *f = *state;
	conv_case c = {.n = 2, .c = 4, .m = 6, .group = 2, .h = 7, .w = 6, .kh = 3, .kw = 2,
	               .sh = 2, .sw = 1, .dh = 1, .dw = 2, .pt = 1, .pl = 0, .pb = 2, .pr = 1};
	run_conv_case(f, &c, KILN_DT_F32, false);
	run_conv_case(f, &c, KILN_DT_F64, false);
	/* depthwise, 1x1 pointwise (the im2col-free path) and a plain 3x3 */
	conv_case dw = {.n = 1, .c = 3, .m = 3, .group = 3, .h = 5, .w = 5, .kh = 3, .kw = 3,
	                .sh = 1, .sw = 1, .dh = 1, .dw = 1, .pt = 1, .pl = 1, .pb = 1, .pr = 1};
	run_conv_case(f, &dw, KILN_DT_F32, false);
	conv_case pw = {.n = 2, .c = 5, .m = 4, .group = 1, .h = 3, .w = 4, .kh = 1, .kw = 1,
	                .sh = 1, .sw = 1, .dh = 1, .dw = 1};
	run_conv_case(f, &pw, KILN_DT_F32, false);
	conv_case sq = {.n = 1, .c = 8, .m = 16, .group = 1, .h = 9, .w = 9, .kh = 3, .kw = 3,
	                .sh = 2, .sw = 2, .dh = 1, .dw = 1, .pt = 1, .pl = 1, .pb = 1, .pr = 1};
	run_conv_case(f, &sq, KILN_DT_F32, false);
}

static void test_conv_1d(void **state)
{
	fixture *f = *state;
	conv_case c = {.n = 1, .c = 2, .m = 4, .group = 2, .h = 1, .w = 11, .kh = 1, .kw = 3,
	               .sh = 1, .sw = 2, .dh = 1, .dw = 2, .pl = 2, .pr = 1};
	run_conv_case(f, &c, KILN_DT_F32, true);
}

static void test_conv_3d(void **state)
{
	fixture *f = *state;
	/* A 3-D conv with depth-1 kernel and depth 1 input equals the 2-D one. */
	float x[2 * 4 * 5], w[3 * 2 * 2 * 2];
	fill(x, 40, 7);
	fill(w, 24, 8);
	kiln_value *in3[2] = {cnst(f, KILN_DT_F32, 5, DIMS(1, 2, 1, 4, 5), x),
	                      cnst(f, KILN_DT_F32, 5, DIMS(3, 2, 1, 2, 2), w)};
	kiln_node *n = node(f, KILN_OP_CONV, in3, 2, 1);
	assert_int_equal(kiln_node_set_ints(f->g, n, "pads", I64(0, 1, 0, 0, 0, 1), 6), KILN_OK);
	assert_int_equal(eval(f, n), KILN_OK);
	expect_dims(n->outputs[0], 5, DIMS(1, 3, 1, 4, 5));
	double want[3 * 4 * 5];
	conv_case c = {.n = 1, .c = 2, .m = 3, .group = 1, .h = 4, .w = 5, .kh = 2, .kw = 2,
	               .sh = 1, .sw = 1, .dh = 1, .dw = 1, .pt = 1, .pl = 0, .pb = 0, .pr = 1};
	conv_ref(&c, x, w, NULL, want);
	expect_close_f32(f->bufs[0], want, 60, 1e-5);
}

/* ---- ConvTranspose ---- */

static void test_conv_transpose(void **state)
{
	fixture *f = *state;
	enum { N = 2, C = 4, G = 2, MG = 3, H = 3, W = 4, KH = 3, KW = 2 };
	const int64_t sh = 2, sw = 3, dh = 2, dw = 1, pt = 1, pl = 0, pb = 2, pr = 1, oph = 1, opw = 2;
	int64_t oh = sh * (H - 1) + oph + (KH - 1) * dh + 1 - pt - pb;
	int64_t ow = sw * (W - 1) + opw + (KW - 1) * dw + 1 - pl - pr;
	float x[N * C * H * W], w[C * MG * KH * KW], b[G * MG];
	fill(x, N * C * H * W, 11);
	fill(w, C * MG * KH * KW, 12);
	fill(b, G * MG, 13);
	kiln_value *in[3] = {cnst(f, KILN_DT_F32, 4, DIMS(N, C, H, W), x),
	                     cnst(f, KILN_DT_F32, 4, DIMS(C, MG, KH, KW), w),
	                     cnst(f, KILN_DT_F32, 1, DIMS(G * MG), b)};
	kiln_node *n = node(f, KILN_OP_CONV_TRANSPOSE, in, 3, 1);
	kiln_node_set_int(f->g, n, "group", G);
	kiln_node_set_ints(f->g, n, "strides", I64(sh, sw), 2);
	kiln_node_set_ints(f->g, n, "dilations", I64(dh, dw), 2);
	kiln_node_set_ints(f->g, n, "pads", I64(pt, pl, pb, pr), 4);
	kiln_node_set_ints(f->g, n, "output_padding", I64(oph, opw), 2);
	assert_int_equal(eval(f, n), KILN_OK);
	expect_dims(n->outputs[0], 4, DIMS(N, G * MG, oh, ow));
	int64_t ny = N * G * MG * oh * ow;
	double *want = calloc((size_t)ny, sizeof *want);
	for (int64_t nb = 0; nb < N; nb++)
		for (int64_t m = 0; m < G * MG; m++)
			for (int64_t o = 0; o < oh * ow; o++)
				want[(nb * G * MG + m) * oh * ow + o] = b[m];
	/* scatter every input element through the kernel */
	for (int64_t nb = 0; nb < N; nb++)
		for (int64_t c = 0; c < C; c++)
			for (int64_t i = 0; i < H; i++)
				for (int64_t j = 0; j < W; j++)
					for (int64_t m = 0; m < MG; m++)
						for (int64_t ki = 0; ki < KH; ki++)
							for (int64_t kj = 0; kj < KW; kj++) {
								int64_t yi = i * sh + ki * dh - pt, yj = j * sw + kj * dw - pl;
								if (yi < 0 || yi >= oh || yj < 0 || yj >= ow)
									continue;
								int64_t mo = (c / (C / G)) * MG + m;
								want[((nb * G * MG + mo) * oh + yi) * ow + yj] +=
									(double)x[((nb * C + c) * H + i) * W + j] *
									w[((c * MG + m) * KH + ki) * KW + kj];
							}
	expect_close_f32(f->bufs[0], want, ny, 1e-4);

	/* the same in f64 through the generic path */
	double xd[N * C * H * W], wd[C * MG * KH * KW], bd[G * MG];
	for (int i = 0; i < N * C * H * W; i++)
		xd[i] = x[i];
	for (int i = 0; i < C * MG * KH * KW; i++)
		wd[i] = w[i];
	for (int i = 0; i < G * MG; i++)
		bd[i] = b[i];
	kiln_value *ind[3] = {cnst(f, KILN_DT_F64, 4, DIMS(N, C, H, W), xd),
	                      cnst(f, KILN_DT_F64, 4, DIMS(C, MG, KH, KW), wd),
	                      cnst(f, KILN_DT_F64, 1, DIMS(G * MG), bd)};
	kiln_node *nd = node(f, KILN_OP_CONV_TRANSPOSE, ind, 3, 1);
	nd->attrs = n->attrs;
	nd->n_attrs = n->n_attrs;
	assert_int_equal(eval(f, nd), KILN_OK);
	const double *yd = f->bufs[0];
	for (int64_t i = 0; i < ny; i++)
		assert_float_equal(yd[i], want[i], 1e-9);
	free(want);
}

/* ---- pools ---- */

static void test_maxpool_ceil_indices(void **state)
{
	fixture *f = *state;
	float x[16];
	for (int i = 0; i < 16; i++)
		x[i] = (float)(i + 1);
	kiln_value *in[1] = {cnst(f, KILN_DT_F32, 4, DIMS(1, 1, 4, 4), x)};
	for (int order = 0; order < 2; order++) {
		kiln_node *n = node(f, KILN_OP_MAX_POOL, in, 1, 2);
		kiln_node_set_ints(f->g, n, "kernel_shape", I64(3, 3), 2);
		kiln_node_set_ints(f->g, n, "strides", I64(2, 2), 2);
		kiln_node_set_int(f->g, n, "ceil_mode", 1);
		kiln_node_set_int(f->g, n, "storage_order", order);
		assert_int_equal(eval(f, n), KILN_OK);
		expect_dims(n->outputs[0], 4, DIMS(1, 1, 2, 2));
		expect_f32(f->bufs[0], F32(11, 12, 15, 16), 4, 0);
		const int64_t *idx = f->bufs[1];
		/* row-major: h * 4 + w; column-major: w * 4 + h */
		const int64_t want[2][4] = {{10, 11, 14, 15}, {10, 14, 11, 15}};
		for (int i = 0; i < 4; i++)
			assert_int_equal(idx[i], want[order][i]);
	}
}

static void test_maxpool_int8_dilated(void **state)
{
	fixture *f = *state;
	int8_t x[10] = {-5, 3, -128, 7, 2, -1, 127, 0, -3, 4};
	kiln_value *in[1] = {cnst(f, KILN_DT_I8, 3, DIMS(1, 1, 10), x)};
	kiln_node *n = node(f, KILN_OP_MAX_POOL, in, 1, 1);
	kiln_node_set_ints(f->g, n, "kernel_shape", I64(2), 1);
	kiln_node_set_ints(f->g, n, "dilations", I64(3), 1);
	kiln_node_set_ints(f->g, n, "strides", I64(2), 1);
	assert_int_equal(eval(f, n), KILN_OK);
	expect_dims(n->outputs[0], 3, DIMS(1, 1, 4));
	/* windows {0,3} {2,5} {4,7} {6,9} */
	const int8_t *y = f->bufs[0];
	const int8_t want[4] = {7, -1, 2, 127};
	for (int i = 0; i < 4; i++)
		assert_int_equal(y[i], want[i]);
}

static void test_avgpool_ceil_pads(void **state)
{
	fixture *f = *state;
	float x[16];
	for (int i = 0; i < 16; i++)
		x[i] = (float)(i + 1);
	kiln_value *in[1] = {cnst(f, KILN_DT_F32, 4, DIMS(1, 1, 4, 4), x)};
	for (int inc = 0; inc < 2; inc++) {
		kiln_node *n = node(f, KILN_OP_AVERAGE_POOL, in, 1, 1);
		kiln_node_set_ints(f->g, n, "kernel_shape", I64(3, 3), 2);
		kiln_node_set_ints(f->g, n, "strides", I64(2, 2), 2);
		kiln_node_set_ints(f->g, n, "pads", I64(1, 1, 1, 1), 4);
		kiln_node_set_int(f->g, n, "ceil_mode", 1);
		kiln_node_set_int(f->g, n, "count_include_pad", inc);
		assert_int_equal(eval(f, n), KILN_OK);
		expect_dims(n->outputs[0], 4, DIMS(1, 1, 3, 3));
		const float *y = f->bufs[0];
		/* Windows per axis cover rows [-1,1], [1,3], [3,5]; the padded input
		 * is [-1,4], so the last window counts 2 padded rows, 1 real one. */
		if (inc) {
			assert_float_equal(y[0], (1 + 2 + 5 + 6) / 9.0f, 1e-6);
			assert_float_equal(y[2], (4 + 8) / 6.0f, 1e-6);
			assert_float_equal(y[8], 16 / 4.0f, 1e-6);
			assert_float_equal(y[4], (6 + 7 + 8 + 10 + 11 + 12 + 14 + 15 + 16) / 9.0f, 1e-6);
		} else {
			assert_float_equal(y[0], (1 + 2 + 5 + 6) / 4.0f, 1e-6);
			assert_float_equal(y[2], (4 + 8) / 2.0f, 1e-6);
			assert_float_equal(y[8], 16.0f, 1e-6);
		}
	}
}

static void test_global_pools(void **state)
{
	fixture *f = *state;
	kiln_value *in[1] = {cnst(f, KILN_DT_F32, 4, DIMS(1, 2, 2, 2), F32(1, 2, 3, 4, -1, -2, -3, -8))};
	kiln_node *a = node(f, KILN_OP_GLOBAL_AVG_POOL, in, 1, 1);
	assert_int_equal(eval(f, a), KILN_OK);
	expect_dims(a->outputs[0], 4, DIMS(1, 2, 1, 1));
	expect_f32(f->bufs[0], F32(2.5f, -3.5f), 2, 0);
	kiln_node *m = node(f, KILN_OP_GLOBAL_MAX_POOL, in, 1, 1);
	assert_int_equal(eval(f, m), KILN_OK);
	expect_f32(f->bufs[0], F32(4, -1), 2, 0);
}

/* ---- Gemm, MatMul ---- */

static void test_gemm_flags(void **state)
{
	fixture *f = *state;
	enum { M = 2, K = 3, N = 4 };
	float a[K * M], b[N * K], c[N];
	fill(a, K * M, 21);
	fill(b, N * K, 22);
	fill(c, N, 23);
	/* A stored [K,M] (transA), B stored [N,K] (transB), C a row broadcast */
	kiln_value *in[3] = {cnst(f, KILN_DT_F32, 2, DIMS(K, M), a), cnst(f, KILN_DT_F32, 2, DIMS(N, K), b),
	                     cnst(f, KILN_DT_F32, 1, DIMS(N), c)};
	kiln_node *n = node(f, KILN_OP_GEMM, in, 3, 1);
	kiln_node_set_int(f->g, n, "transA", 1);
	kiln_node_set_int(f->g, n, "transB", 1);
	kiln_node_set_float(f->g, n, "alpha", 0.5f);
	kiln_node_set_float(f->g, n, "beta", 2.0f);
	assert_int_equal(eval(f, n), KILN_OK);
	expect_dims(n->outputs[0], 2, DIMS(M, N));
	double want[M * N];
	for (int i = 0; i < M; i++)
		for (int j = 0; j < N; j++) {
			double acc = 0;
			for (int p = 0; p < K; p++)
				acc += (double)a[p * M + i] * b[j * K + p];
			want[i * N + j] = 0.5 * acc + 2.0 * c[j];
		}
	expect_close_f32(f->bufs[0], want, M * N, 1e-5);

	/* no C, no flags, in f64 */
	double ad[6] = {1, 2, 3, 4, 5, 6}, bd[6] = {1, 0, 0, 1, 1, 1};
	kiln_value *in2[2] = {cnst(f, KILN_DT_F64, 2, DIMS(2, 3), ad), cnst(f, KILN_DT_F64, 2, DIMS(3, 2), bd)};
	kiln_node *n2 = node(f, KILN_OP_GEMM, in2, 2, 1);
	assert_int_equal(eval(f, n2), KILN_OK);
	const double *y = f->bufs[0];
	const double w2[4] = {4, 5, 10, 11};
	for (int i = 0; i < 4; i++)
		assert_float_equal(y[i], w2[i], 0);
}

static void test_matmul_broadcast(void **state)
{
	fixture *f = *state;
	float a[2 * 1 * 3 * 4], b[3 * 4 * 5];
	fill(a, 24, 31);
	fill(b, 60, 32);
	kiln_value *in[2] = {cnst(f, KILN_DT_F32, 4, DIMS(2, 1, 3, 4), a),
	                     cnst(f, KILN_DT_F32, 3, DIMS(3, 4, 5), b)};
	kiln_node *n = node(f, KILN_OP_MATMUL, in, 2, 1);
	assert_int_equal(eval(f, n), KILN_OK);
	expect_dims(n->outputs[0], 4, DIMS(2, 3, 3, 5));
	double want[2 * 3 * 3 * 5];
	for (int i = 0; i < 2; i++)
		for (int j = 0; j < 3; j++)
			for (int r = 0; r < 3; r++)
				for (int c = 0; c < 5; c++) {
					double acc = 0;
					for (int p = 0; p < 4; p++)
						acc += (double)a[(i * 3 + r) * 4 + p] * b[(j * 4 + p) * 5 + c];
					want[((i * 3 + j) * 3 + r) * 5 + c] = acc;
				}
	expect_close_f32(f->bufs[0], want, 90, 1e-5);

	/* 1-D A against a batch of B: [4] x [3,4,5] -> [3,5] */
	kiln_value *in1[2] = {cnst(f, KILN_DT_F32, 1, DIMS(4), a), in[1]};
	kiln_node *n1 = node(f, KILN_OP_MATMUL, in1, 2, 1);
	assert_int_equal(eval(f, n1), KILN_OK);
	expect_dims(n1->outputs[0], 2, DIMS(3, 5));
	double w1[15];
	for (int j = 0; j < 3; j++)
		for (int c = 0; c < 5; c++) {
			double acc = 0;
			for (int p = 0; p < 4; p++)
				acc += (double)a[p] * b[(j * 4 + p) * 5 + c];
			w1[j * 5 + c] = acc;
		}
	expect_close_f32(f->bufs[0], w1, 15, 1e-5);

	/* 1-D x 1-D is a scalar dot product */
	kiln_value *in0[2] = {cnst(f, KILN_DT_F32, 1, DIMS(3), F32(1, 2, 3)),
	                      cnst(f, KILN_DT_F32, 1, DIMS(3), F32(4, 5, 6))};
	kiln_node *n0 = node(f, KILN_OP_MATMUL, in0, 2, 1);
	assert_int_equal(eval(f, n0), KILN_OK);
	assert_int_equal(n0->outputs[0]->type.rank, 0);
	expect_f32(f->bufs[0], F32(32), 1, 0);
}

static void test_matmul_int_wraps(void **state)
{
	fixture *f = *state;
	int32_t a[2] = {INT32_MAX, 1}, b[2] = {2, 1};
	kiln_value *in[2] = {cnst(f, KILN_DT_I32, 2, DIMS(1, 2), a), cnst(f, KILN_DT_I32, 2, DIMS(2, 1), b)};
	kiln_node *n = node(f, KILN_OP_MATMUL, in, 2, 1);
	assert_int_equal(eval(f, n), KILN_OK);
	/* 2 * (2^31 - 1) + 1 = 2^32 - 1, which wraps to -1 */
	assert_int_equal(((const int32_t *)f->bufs[0])[0], -1);
}

/* ---- norms ---- */

static void test_batch_norm(void **state)
{
	fixture *f = *state;
	kiln_value *in[5] = {cnst(f, KILN_DT_F32, 4, DIMS(1, 2, 1, 2), F32(1, 2, 3, 4)),
	                     cnst(f, KILN_DT_F32, 1, DIMS(2), F32(2, 1)), cnst(f, KILN_DT_F32, 1, DIMS(2), F32(0, 1)),
	                     cnst(f, KILN_DT_F32, 1, DIMS(2), F32(1, 3)), cnst(f, KILN_DT_F32, 1, DIMS(2), F32(4, 0.25f))};
	kiln_node *n = node(f, KILN_OP_BATCH_NORM, in, 5, 1);
	kiln_node_set_float(f->g, n, "epsilon", 0.0f);
	assert_int_equal(eval(f, n), KILN_OK);
	/* channel 0: 2 * (x - 1) / 2; channel 1: (x - 3) / 0.5 + 1 */
	expect_f32(f->bufs[0], F32(0, 1, 1, 3), 4, 1e-6);
}

static void test_layer_norm(void **state)
{
	fixture *f = *state;
	kiln_value *in[3] = {cnst(f, KILN_DT_F32, 2, DIMS(2, 3), F32(1, 2, 3, 4, 4, 4)),
	                     cnst(f, KILN_DT_F32, 1, DIMS(3), F32(1, 2, 3)),
	                     cnst(f, KILN_DT_F32, 1, DIMS(3), F32(0, 0, 1))};
	kiln_node *n = node(f, KILN_OP_LAYER_NORM, in, 3, 3);
	assert_int_equal(eval(f, n), KILN_OK);
	double inv = 1.0 / sqrt(2.0 / 3.0 + 1e-5);
	double want[6] = {-inv, 0, 3 * inv + 1, 0, 0, 1};
	expect_close_f32(f->bufs[0], want, 6, 1e-6);
	expect_dims(n->outputs[1], 2, DIMS(2, 1));
	expect_f32(f->bufs[1], F32(2, 4), 2, 0);
	double winv[2] = {inv, 1.0 / sqrt(1e-5)};
	expect_close_f32(f->bufs[2], winv, 2, 1e-6);

	/* axis 0 normalises everything; no bias */
	kiln_value *in0[2] = {in[0], cnst(f, KILN_DT_F32, 2, DIMS(2, 3), F32(1, 1, 1, 1, 1, 1))};
	kiln_node *n0 = node(f, KILN_OP_LAYER_NORM, in0, 2, 1);
	kiln_node_set_int(f->g, n0, "axis", 0);
	kiln_node_set_float(f->g, n0, "epsilon", 0.0f);
	assert_int_equal(eval(f, n0), KILN_OK);
	/* mean 3, variance (4 + 1 + 0 + 1 + 1 + 1) / 6 = 4/3 */
	double s = sqrt(4.0 / 3.0);
	double w0[6] = {-2 / s, -1 / s, 0, 1 / s, 1 / s, 1 / s};
	expect_close_f32(f->bufs[0], w0, 6, 1e-6);
}

static void test_softmax(void **state)
{
	fixture *f = *state;
	kiln_value *in[1] = {cnst(f, KILN_DT_F32, 2, DIMS(2, 3), F32(1000, 1001, 1002, 0, 0, 0))};
	kiln_node *n = node(f, KILN_OP_SOFTMAX, in, 1, 1);
	assert_int_equal(eval(f, n), KILN_OK);
	double z = 1 + exp(1) + exp(2);
	double want[6] = {1 / z, exp(1) / z, exp(2) / z, 1 / 3.0, 1 / 3.0, 1 / 3.0};
	expect_close_f32(f->bufs[0], want, 6, 1e-6);

	kiln_node *l = node(f, KILN_OP_LOG_SOFTMAX, in, 1, 1);
	kiln_node_set_int(f->g, l, "axis", 0);
	assert_int_equal(eval(f, l), KILN_OK);
	/* along axis 0 the first row dominates by 1000+ */
	const float *y = f->bufs[0];
	assert_float_equal(y[0], 0, 1e-6);
	assert_float_equal(y[3], -1000, 1e-3);
	assert_float_equal(y[5], -1002, 1e-3);
}

/* ---- reductions ---- */

static void test_reduce(void **state)
{
	fixture *f = *state;
	float x[24];
	for (int i = 0; i < 24; i++)
		x[i] = (float)i;
	kiln_value *xv = cnst(f, KILN_DT_F32, 3, DIMS(2, 3, 4), x);
	kiln_value *in[2] = {xv, cnst(f, KILN_DT_I64, 1, DIMS(1), I64(1))};
	kiln_node *s = node(f, KILN_OP_REDUCE_SUM, in, 2, 1);
	assert_int_equal(eval(f, s), KILN_OK);
	expect_dims(s->outputs[0], 3, DIMS(2, 1, 4));
	expect_f32(f->bufs[0], F32(12, 15, 18, 21, 48, 51, 54, 57), 8, 0);

	kiln_value *in2[2] = {xv, cnst(f, KILN_DT_I64, 1, DIMS(2), I64(-1, 0))};
	kiln_node *m = node(f, KILN_OP_REDUCE_MEAN, in2, 2, 1);
	kiln_node_set_int(f->g, m, "keepdims", 0);
	assert_int_equal(eval(f, m), KILN_OK);
	expect_dims(m->outputs[0], 1, DIMS(3));
	/* row r: mean of 4r..4r+3 and 12+4r..12+4r+3 */
	expect_f32(f->bufs[0], F32(7.5f, 11.5f, 15.5f), 3, 0);

	kiln_value *in1[1] = {xv};
	kiln_node *mx = node(f, KILN_OP_REDUCE_MAX, in1, 1, 1);
	assert_int_equal(eval(f, mx), KILN_OK);
	expect_dims(mx->outputs[0], 3, DIMS(1, 1, 1));
	expect_f32(f->bufs[0], F32(23), 1, 0);

	kiln_node *noop = node(f, KILN_OP_REDUCE_MIN, in1, 1, 1);
	kiln_node_set_int(f->g, noop, "noop_with_empty_axes", 1);
	assert_int_equal(eval(f, noop), KILN_OK);
	expect_dims(noop->outputs[0], 3, DIMS(2, 3, 4));
	expect_f32(f->bufs[0], x, 24, 0);
}

static void test_reduce_int_and_empty(void **state)
{
	fixture *f = *state;
	int8_t xi[6] = {-7, 100, 3, 100, 100, -128};
	kiln_value *in[2] = {cnst(f, KILN_DT_I8, 2, DIMS(2, 3), xi), cnst(f, KILN_DT_I64, 1, DIMS(1), I64(1))};
	kiln_node *mn = node(f, KILN_OP_REDUCE_MIN, in, 2, 1);
	assert_int_equal(eval(f, mn), KILN_OK);
	assert_int_equal(((const int8_t *)f->bufs[0])[0], -7);
	assert_int_equal(((const int8_t *)f->bufs[0])[1], -128);
	kiln_node *sm = node(f, KILN_OP_REDUCE_SUM, in, 2, 1);
	assert_int_equal(eval(f, sm), KILN_OK);
	/* 96 fits; 100 + 100 - 128 = 72 */
	assert_int_equal(((const int8_t *)f->bufs[0])[0], 96);
	assert_int_equal(((const int8_t *)f->bufs[0])[1], 72);

	/* reducing an empty axis: max -inf, min +inf, sum 0 */
	kiln_value *ein[2] = {cnst(f, KILN_DT_F32, 2, DIMS(2, 0), NULL), in[1]};
	const kiln_op ops[3] = {KILN_OP_REDUCE_MAX, KILN_OP_REDUCE_MIN, KILN_OP_REDUCE_SUM};
	const float want[3] = {-INFINITY, INFINITY, 0};
	for (int i = 0; i < 3; i++) {
		kiln_node *e = node(f, ops[i], ein, 2, 1);
		assert_int_equal(eval(f, e), KILN_OK);
		expect_dims(e->outputs[0], 2, DIMS(2, 1));
		assert_true(((const float *)f->bufs[0])[0] == want[i]);
		assert_true(((const float *)f->bufs[0])[1] == want[i]);
	}
}

/* ---- Resize (examples from the ONNX operator documentation) ---- */

static kiln_node *resize(fixture *f, kiln_value *x, kiln_value *scales, kiln_value *sizes, const char *mode,
                         const char *coord)
{
	kiln_value *in[4] = {x, NULL, scales, sizes};
	kiln_node *n = node(f, KILN_OP_RESIZE, in, sizes ? 4 : 3, 1);
	kiln_node_set_string(f->g, n, "mode", mode);
	if (coord)
		kiln_node_set_string(f->g, n, "coordinate_transformation_mode", coord);
	return n;
}

static void test_resize_nearest(void **state)
{
	fixture *f = *state;
	kiln_value *x = cnst(f, KILN_DT_F32, 4, DIMS(1, 1, 2, 2), F32(1, 2, 3, 4));
	kiln_node *n = resize(f, x, cnst(f, KILN_DT_F32, 1, DIMS(4), F32(1, 1, 2, 3)), NULL, "nearest", NULL);
	assert_int_equal(eval(f, n), KILN_OK);
	expect_dims(n->outputs[0], 4, DIMS(1, 1, 4, 6));
	expect_f32(f->bufs[0],
	           F32(1, 1, 1, 2, 2, 2, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4, 3, 3, 3, 4, 4, 4), 24, 0);

	/* downsample_scales_nearest */
	kiln_value *x8 = cnst(f, KILN_DT_F32, 4, DIMS(1, 1, 2, 4), F32(1, 2, 3, 4, 5, 6, 7, 8));
	kiln_node *dn = resize(f, x8, cnst(f, KILN_DT_F32, 1, DIMS(4), F32(1, 1, 0.6f, 0.6f)), NULL, "nearest", NULL);
	assert_int_equal(eval(f, dn), KILN_OK);
	expect_dims(dn->outputs[0], 4, DIMS(1, 1, 1, 2));
	expect_f32(f->bufs[0], F32(1, 3), 2, 0);

	/* upsample_sizes_nearest_ceil_half_pixel, first row: 1..4 to 8 with ceil */
	kiln_value *x16 = cnst(f, KILN_DT_F32, 2, DIMS(1, 4), F32(1, 2, 3, 4));
	kiln_node *c = resize(f, x16, NULL, cnst(f, KILN_DT_I64, 1, DIMS(2), I64(1, 8)), "nearest", NULL);
	kiln_node_set_string(f->g, c, "nearest_mode", "ceil");
	assert_int_equal(eval(f, c), KILN_OK);
	expect_f32(f->bufs[0], F32(1, 2, 2, 3, 3, 4, 4, 4), 8, 0);
}

static void test_resize_linear(void **state)
{
	fixture *f = *state;
	kiln_value *x = cnst(f, KILN_DT_F32, 4, DIMS(1, 1, 2, 2), F32(1, 2, 3, 4));
	kiln_value *s2 = cnst(f, KILN_DT_F32, 1, DIMS(4), F32(1, 1, 2, 2));
	kiln_node *n = resize(f, x, s2, NULL, "linear", NULL);
	assert_int_equal(eval(f, n), KILN_OK);
	expect_f32(f->bufs[0],
	           F32(1, 1.25f, 1.75f, 2, 1.5f, 1.75f, 2.25f, 2.5f, 2.5f, 2.75f, 3.25f, 3.5f, 3, 3.25f, 3.75f, 4),
	           16, 1e-6);

	kiln_node *ac = resize(f, x, s2, NULL, "linear", "align_corners");
	assert_int_equal(eval(f, ac), KILN_OK);
	const float t = 1.0f / 3, tt = 2.0f / 3;
	expect_f32(f->bufs[0],
	           F32(1, 1 + t, 1 + tt, 2, 1 + tt, 2, 2 + t, 2 + tt, 2 + t, 2 + tt, 3, 3 + t, 3, 3 + t, 3 + tt, 4),
	           16, 1e-6);

	/* tf_crop_and_resize with extrapolation: roi beyond the input */
	kiln_value *in[3] = {x, cnst(f, KILN_DT_F32, 1, DIMS(8), F32(0, 0, 0, 0, 1, 1, 1, 2)),
	                     cnst(f, KILN_DT_F32, 1, DIMS(4), F32(1, 1, 1, 2))};
	kiln_node *tf = node(f, KILN_OP_RESIZE, in, 3, 1);
	kiln_node_set_string(f->g, tf, "mode", "linear");
	kiln_node_set_string(f->g, tf, "coordinate_transformation_mode", "tf_crop_and_resize");
	kiln_node_set_float(f->g, tf, "extrapolation_value", 10.0f);
	assert_int_equal(eval(f, tf), KILN_OK);
	expect_dims(tf->outputs[0], 4, DIMS(1, 1, 2, 4));
	/* columns sample x = 0, 2/3, 4/3, 2: the last two lie outside [0, 1] */
	expect_f32(f->bufs[0], F32(1, 1 + tt, 10, 10, 3, 3 + tt, 10, 10), 8, 1e-6);
}

static void test_resize_cubic(void **state)
{
	fixture *f = *state;
	/* 1-D cubic upsample by 2 (half_pixel, A = -0.75) of 0, 1, 2, 3. With
	 * W(d) the cubic kernel: W(0.25) = 0.87890625, W(0.75) = 0.26171875,
	 * W(1.25) = -0.10546875, W(1.75) = -0.03515625. */
	kiln_value *x = cnst(f, KILN_DT_F32, 1, DIMS(4), F32(0, 1, 2, 3));
	kiln_node *n = resize(f, x, cnst(f, KILN_DT_F32, 1, DIMS(1), F32(2)), NULL, "cubic", NULL);
	assert_int_equal(eval(f, n), KILN_OK);
	const float *y = f->bufs[0];
	/* output 3 maps to x = 1.25: taps 0..3 weigh W(1.25) W(0.25) W(0.75) W(1.75) */
	assert_float_equal(y[3], 0.87890625f + 2 * 0.26171875f - 3 * 0.03515625f, 1e-6);
	/* output 4 maps to x = 1.75: W(1.75) W(0.75) W(0.25) W(1.25) */
	assert_float_equal(y[4], 0.26171875f + 2 * 0.87890625f - 3 * 0.10546875f, 1e-6);
	/* output 0 maps to x = -0.25: taps -2..1 clamp to 0, 0, 0, 1 (values 0, 0,
	 * 0, 1); tap 1 sits 1.25 away, so the value is W(1.25). */
	double a = -0.75, d = 1.25;
	double w = ((a * d - 5 * a) * d + 8 * a) * d - 4 * a;
	assert_float_equal(y[0], (float)w, 1e-6);
}

static void test_resize_errors(void **state)
{
	fixture *f = *state;
	kiln_value *x = cnst(f, KILN_DT_F32, 1, DIMS(4), F32(0, 1, 2, 3));
	kiln_node *n = resize(f, x, cnst(f, KILN_DT_F32, 1, DIMS(1), F32(2)), NULL, "nearest", NULL);
	kiln_node_set_int(f->g, n, "antialias", 1);
	assert_int_equal(kiln_infer_node(n, &f->d), KILN_OK);
	void *out[1] = {malloc(8 * sizeof(float))};
	assert_int_equal(kiln_interp_eval_node(n, out, &f->d), KILN_ERR_UNSUPPORTED);
	free(out[0]);
	char want[256];
	snprintf(want, sizeof want, "node '%s' (Resize): antialias with mode 'nearest'", n->name);
	assert_string_equal(f->d.last, want);
}

/* ---- sessions ---- */

static void test_session(void **state)
{
	fixture *f = *state;
	kiln_type xt = ty(KILN_DT_F32, 4, DIMS(1, 1, 2, 2));
	kiln_value *x = kiln_graph_add_input(f->g, "x", &xt);
	kiln_value *in[1] = {x};
	kiln_node *n = node(f, KILN_OP_GLOBAL_MAX_POOL, in, 1, 1);
	assert_int_equal(kiln_infer_node(n, &f->d), KILN_OK);
	kiln_value *k = cnst(f, KILN_DT_F32, 1, DIMS(1), F32(42));
	assert_int_equal(kiln_graph_add_output(f->g, n->outputs[0]), KILN_OK);
	assert_int_equal(kiln_graph_add_output(f->g, x), KILN_OK);
	assert_int_equal(kiln_graph_add_output(f->g, k), KILN_OK);

	kiln_interp *it;
	assert_int_equal(kiln_interp_create(f->g, &it, &f->d), KILN_OK);
	assert_int_equal(kiln_interp_n_outputs(it), 3);
	float data[4] = {3, -1, 7, 2};
	kiln_tensor t = {.type = xt, .data = data};
	assert_int_equal(kiln_interp_run(it, &t, 1, &f->d), KILN_OK);
	assert_float_equal(((const float *)kiln_interp_output(it, 0)->data)[0], 7, 0);
	assert_ptr_equal(kiln_interp_output(it, 1)->data, data);
	assert_float_equal(((const float *)kiln_interp_output(it, 2)->data)[0], 42, 0);
	assert_null(kiln_interp_output(it, 3));
	assert_ptr_equal(kiln_interp_value(it, x->id)->data, data);

	assert_int_equal(kiln_interp_run(it, &t, 0, &f->d), KILN_ERR_INVALID_ARG);
	assert_string_equal(f->d.last, "expected 1 inputs, got 0");
	kiln_tensor bad = t;
	bad.type.dims[3] = 3;
	assert_int_equal(kiln_interp_run(it, &bad, 1, &f->d), KILN_ERR_SHAPE);
	assert_string_equal(f->d.last, "input 'x': expected f32[1,1,2,2], got f32[1,1,2,3]");
	bad = t;
	bad.type.dtype = KILN_DT_F16;
	assert_int_equal(kiln_interp_run(it, &bad, 1, &f->d), KILN_ERR_SHAPE);
	assert_string_equal(f->d.last, "input 'x': expected f32[1,1,2,2], got f16[1,1,2,2]");
	kiln_interp_destroy(it);

	/* a constant parsed without its data cannot be run */
	k->data = NULL;
	k->elided = "dense<...>";
	assert_int_equal(kiln_interp_create(f->g, &it, &f->d), KILN_ERR_INVALID_ARG);
	char want[256];
	snprintf(want, sizeof want,
	         "constant '%s' has elided data (print the IR with full constants)", k->name);
	assert_string_equal(f->d.last, want);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_conv_hand),
		T(test_conv_grouped_strided_dilated_padded),
		T(test_conv_1d),
		T(test_conv_3d),
		T(test_conv_transpose),
		T(test_maxpool_ceil_indices),
		T(test_maxpool_int8_dilated),
		T(test_avgpool_ceil_pads),
		T(test_global_pools),
		T(test_gemm_flags),
		T(test_matmul_broadcast),
		T(test_matmul_int_wraps),
		T(test_batch_norm),
		T(test_layer_norm),
		T(test_softmax),
		T(test_reduce),
		T(test_reduce_int_and_empty),
		T(test_resize_nearest),
		T(test_resize_linear),
		T(test_resize_cubic),
		T(test_resize_errors),
		T(test_session),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
