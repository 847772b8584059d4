/* k_matmul.c — Gemm and MatMul (ONNX opset 21).
 *
 * f32 runs on OpenBLAS sgemm (per batch for MatMul). f64 accumulates in
 * double, f16/bf16 in f32 (like onnxruntime), integers in int64 and wrap to
 * the output dtype. */
#include "interp.h"

#include <cblas.h>
#include <limits.h>
#include <stdlib.h>

/* ---- Gemm: Y = alpha * A' B' + beta * C ---- */

typedef struct gemm_dims {
	int64_t m, n, k;
	bool ta, tb;
} gemm_dims;

static int64_t a_at(const gemm_dims *g, int64_t i, int64_t p) { return g->ta ? p * g->m + i : i * g->k + p; }
static int64_t b_at(const gemm_dims *g, int64_t p, int64_t j) { return g->tb ? j * g->k + p : p * g->n + j; }

static void gemm_f32(const gemm_dims *g, float alpha, const float *a, const float *b, float *y)
{
	/* OpenBLAS rejects zero leading dimensions even for empty products. */
	if (g->m == 0 || g->n == 0 || g->k == 0)
		return;
	cblas_sgemm(CblasRowMajor, g->ta ? CblasTrans : CblasNoTrans, g->tb ? CblasTrans : CblasNoTrans,
	            (int)g->m, (int)g->n, (int)g->k, alpha, a, g->ta ? (int)g->m : (int)g->k, b,
	            g->tb ? (int)g->k : (int)g->n, 1.0f, y, (int)g->n);
}

kiln_status kiln_interp_GEMM(const kiln_node *n, const kiln_tensor *in, kiln_tensor *out, kiln_diag *d)
{
	const kiln_tensor *A = &in[0], *B = &in[1], *C = n->n_inputs > 2 && in[2].data ? &in[2] : NULL;
	kiln_tensor *Y = &out[0];
	gemm_dims g = {.ta = kiln_node_int(n, "transA", 0) != 0, .tb = kiln_node_int(n, "transB", 0) != 0};
	KILN_ENSURE(d, A->type.rank == 2 && B->type.rank == 2 && Y->type.rank == 2, KILN_ERR_SHAPE, n,
	            "A, B and Y must have rank 2");
	g.m = A->type.dims[g.ta ? 1 : 0];
	g.k = A->type.dims[g.ta ? 0 : 1];
	g.n = B->type.dims[g.tb ? 0 : 1];
	KILN_ENSURE(d, B->type.dims[g.tb ? 1 : 0] == g.k && Y->type.dims[0] == g.m && Y->type.dims[1] == g.n,
	            KILN_ERR_SHAPE, n, "A, B and Y shapes do not agree");
	KILN_ENSURE(d, g.m <= INT_MAX && g.n <= INT_MAX && g.k <= INT_MAX, KILN_ERR_UNSUPPORTED, n,
	            "a matrix dimension exceeds %d", INT_MAX);
	double alpha = kiln_node_float(n, "alpha", 1.0f), beta = kiln_node_float(n, "beta", 1.0f);
	int64_t *coff = NULL;
	if (C && !(coff = kiln_broadcast_offsets(&C->type, &Y->type)))
		return kiln_diag_error(d, KILN_ERR_OOM, n, "out of memory");
	kiln_dtype dt = Y->type.dtype;
	int64_t mn = g.m * g.n;
	if (dt == KILN_DT_F32) {
		float *y = Y->data;
		for (int64_t i = 0; i < mn; i++)
			y[i] = C ? (float)(beta * kiln_tensor_get_f64(C, coff[i])) : 0.0f;
		gemm_f32(&g, (float)alpha, A->data, B->data, y);
	} else if (kiln_dtype_is_float(dt)) {
		for (int64_t i = 0; i < g.m; i++)
			for (int64_t j = 0; j < g.n; j++) {
				double acc = 0.0;
				for (int64_t p = 0; p < g.k; p++)
					acc += kiln_tensor_get_f64(A, a_at(&g, i, p)) * kiln_tensor_get_f64(B, b_at(&g, p, j));
				double c = C ? beta * kiln_tensor_get_f64(C, coff[i * g.n + j]) : 0.0;
				kiln_tensor_set_f64(Y, i * g.n + j, alpha * acc + c);
			}
	} else {
		bool exact = alpha == 1.0 && beta == 1.0;
		for (int64_t i = 0; i < g.m; i++)
			for (int64_t j = 0; j < g.n; j++) {
				uint64_t acc = 0; /* wraps like the output dtype */
				for (int64_t p = 0; p < g.k; p++)
					acc += (uint64_t)kiln_tensor_get_i64(A, a_at(&g, i, p)) *
					       (uint64_t)kiln_tensor_get_i64(B, b_at(&g, p, j));
				int64_t c = C ? kiln_tensor_get_i64(C, coff[i * g.n + j]) : 0;
				if (exact)
					kiln_tensor_set_i64(Y, i * g.n + j, (int64_t)(acc + (uint64_t)c));
				else
					kiln_tensor_set_f64(Y, i * g.n + j, alpha * (double)(int64_t)acc + beta * (double)c);
			}
	}
	free(coff);
	return KILN_OK;
}

/* ---- MatMul: numpy matmul ---- */

/* The batch dims of an operand (all but its last two; none for 1-D). */
static kiln_type batch_type(const kiln_type *t)
{
	kiln_type b = {.dtype = t->dtype, .rank = t->rank > 2 ? t->rank - 2 : 0};
	for (int i = 0; i < b.rank; i++)
		b.dims[i] = t->dims[i];
	return b;
}

kiln_status kiln_interp_MATMUL(const kiln_node *n, const kiln_tensor *in, kiln_tensor *out,
                               kiln_diag *d)
{
	const kiln_type *at = &in[0].type, *bt = &in[1].type, *yt = &out[0].type;
	KILN_ENSURE(d, at->rank >= 1 && bt->rank >= 1, KILN_ERR_SHAPE, n, "MatMul of a scalar");
	/* 1-D A is a row [1,K], 1-D B a column [K,1]; the added dim is dropped from Y. */
	int64_t m = at->rank == 1 ? 1 : at->dims[at->rank - 2];
	int64_t k = at->dims[at->rank - 1];
	int64_t kb = bt->rank == 1 ? bt->dims[0] : bt->dims[bt->rank - 2];
	int64_t nn = bt->rank == 1 ? 1 : bt->dims[bt->rank - 1];
	KILN_ENSURE(d, k == kb, KILN_ERR_SHAPE, n, "inner dims differ: %lld vs %lld", (long long)k,
	            (long long)kb);
	KILN_ENSURE(d, m <= INT_MAX && k <= INT_MAX && nn <= INT_MAX, KILN_ERR_UNSUPPORTED, n,
	            "a matrix dimension exceeds %d", INT_MAX);
	kiln_type ab = batch_type(at), bb = batch_type(bt), yb;
	KILN_ENSURE(d, kiln_broadcast(&ab, &bb, &yb), KILN_ERR_SHAPE, n, "batch dims do not broadcast");
	int64_t nbatch = kiln_type_numel(&yb);
	KILN_ENSURE(d, kiln_type_numel(yt) == nbatch * m * nn, KILN_ERR_SHAPE, n,
	            "output has %lld elements, expected %lld", (long long)kiln_type_numel(yt),
	            (long long)(nbatch * m * nn));
	int64_t *aoff = kiln_broadcast_offsets(&ab, &yb), *boff = kiln_broadcast_offsets(&bb, &yb);
	if (!aoff || !boff) {
		free(aoff);
		free(boff);
		return kiln_diag_error(d, KILN_ERR_OOM, n, "out of memory");
	}
	kiln_dtype dt = yt->dtype;
	for (int64_t bi = 0; bi < nbatch; bi++) {
		int64_t a0 = aoff[bi] * m * k, b0 = boff[bi] * k * nn, y0 = bi * m * nn;
		if (dt == KILN_DT_F32) {
			float *y = (float *)out[0].data + y0;
			if (m == 0 || nn == 0)
				continue;
			if (k == 0) {
				for (int64_t i = 0; i < m * nn; i++)
					y[i] = 0.0f;
				continue;
			}
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)nn, (int)k, 1.0f,
			            (const float *)in[0].data + a0, (int)k, (const float *)in[1].data + b0,
			            (int)nn, 0.0f, y, (int)nn);
			continue;
		}
		for (int64_t i = 0; i < m; i++)
			for (int64_t j = 0; j < nn; j++) {
				int64_t yi = y0 + i * nn + j;
				if (kiln_dtype_is_int(dt)) {
					uint64_t acc = 0; /* wraps like the output dtype */
					for (int64_t p = 0; p < k; p++)
						acc += (uint64_t)kiln_tensor_get_i64(&in[0], a0 + i * k + p) *
						       (uint64_t)kiln_tensor_get_i64(&in[1], b0 + p * nn + j);
					kiln_tensor_set_i64(&out[0], yi, (int64_t)acc);
				} else if (dt == KILN_DT_F64) {
					double acc = 0.0;
					for (int64_t p = 0; p < k; p++)
						acc += kiln_tensor_get_f64(&in[0], a0 + i * k + p) *
						       kiln_tensor_get_f64(&in[1], b0 + p * nn + j);
					kiln_tensor_set_f64(&out[0], yi, acc);
				} else {
					float acc = 0.0f;
					for (int64_t p = 0; p < k; p++)
						acc += (float)kiln_tensor_get_f64(&in[0], a0 + i * k + p) *
						       (float)kiln_tensor_get_f64(&in[1], b0 + p * nn + j);
					kiln_tensor_set_f64(&out[0], yi, acc);
				}
			}
	}
	free(aoff);
	free(boff);
	return KILN_OK;
}
