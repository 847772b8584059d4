/* lower_linalg.c — lowering of Gemm, MatMul, Conv and ConvTranspose to the
 * kk_linalg kernels (layout in kernels/kk_params_linalg.h).
 *
 * f32 becomes one GEMM description (sizes, operand strides, batch dims,
 * cache blocks, epilogue) for kk_gemm_f32, or kk_conv_f32 for a Conv that
 * needs im2col (it first rewrites the input as phase planes in arena
 * scratch); constant operands (weights) are packed here into the
 * micro-kernel's panel layout and replace the input (c->repl), so the
 * kernel never packs them. Depthwise Conv and ConvTranspose have their own
 * kernels; other dtypes go to the generic kernels. ConvNCHWc (the blocked
 * layout) goes to kk_conv_nchwc_f32, its weights packed as
 * kernels/kk_params_nchwc.h says. */
#include "cpu.h"
#include "kk_params_linalg.h"
#include "kk_params_nchwc.h"
#include "passes.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }
static int64_t round_up(int64_t a, int64_t b) { return cdiv(a, b) * b; }

static int la_dtype(kiln_dtype dt)
{
	switch (dt) {
	case KILN_DT_F32: return KK_LA_DT_F32;
	case KILN_DT_F64: return KK_LA_DT_F64;
	case KILN_DT_F16: return KK_LA_DT_F16;
	case KILN_DT_BF16: return KK_LA_DT_BF16;
	case KILN_DT_I64: return KK_LA_DT_I64;
	case KILN_DT_I32: return KK_LA_DT_I32;
	case KILN_DT_I8: return KK_LA_DT_I8;
	case KILN_DT_U8: return KK_LA_DT_U8;
	default: return -1;
	}
}

/* Constant data the lowering may pack, or NULL. */
static const float *const_f32(const kiln_value *v)
{
	return v && v->kind == KILN_VALUE_CONST && v->data && v->type.dtype == KILN_DT_F32 ? v->data
	                                                                                  : NULL;
}

/* The fixed part of the parameters, zeroed, with the tail appended later. */
static void la_begin(kiln_kcall *c, int dtype)
{
	c->n_ip = KK_LA_COUNT;
	for (int i = 0; i < KK_LA_COUNT; i++)
		c->ip[i] = 0;
	c->ip[KK_LA_DTYPE] = dtype;
	c->ip[KK_LA_T_A] = c->ip[KK_LA_T_B] = c->ip[KK_LA_T_C] = -1;
	c->ip[KK_LA_T_BIAS] = c->ip[KK_LA_T_Y] = c->ip[KK_LA_T_SCRATCH] = c->ip[KK_LA_T_RES] = -1;
	c->n_fp = KK_LA_FP_COUNT;
	for (int i = 0; i < KK_LA_FP_COUNT; i++)
		c->fp[i] = 0.0;
	c->fp[KK_LA_FP_ALPHA] = 1.0;
	c->fp[KK_LA_FP_BETA] = 1.0;
}

static void la_batch_dim(kiln_kcall *c, int64_t size, int64_t a, int64_t b, int64_t y,
                         int64_t bias)
{
	c->ip[KK_LA_BATCH_RANK]++;
	kiln_kcall_i(c, size);
	kiln_kcall_i(c, a);
	kiln_kcall_i(c, b);
	kiln_kcall_i(c, y);
	kiln_kcall_i(c, bias);
}

/* Cache blocks for an M x N x K product, balanced so no block is tiny. */
static void la_blocks(kiln_kcall *c, int vl)
{
	int64_t m = c->ip[KK_LA_M], n = c->ip[KK_LA_N], k = c->ip[KK_LA_K];
	int64_t mr = KK_GEMM_MR(vl), nr = KK_GEMM_NR(vl);
	int64_t kc = k > 0 ? cdiv(k, cdiv(k, KK_GEMM_KC_MAX(vl))) : 1;
	int64_t mc = m > 0 ? round_up(cdiv(m, cdiv(m, KK_GEMM_MC_MAX(vl))), mr) : mr;
	int64_t nc = n > 0 ? round_up(cdiv(n, cdiv(n, KK_GEMM_NC_MAX(vl))), nr) : nr;
	c->ip[KK_LA_MC] = mc;
	c->ip[KK_LA_KC] = kc;
	c->ip[KK_LA_NC] = nc;
}

/* Rows of a transposed product's partial sums per block (MR-row tiles; an
 * A read in place tiles each output row on its own, la_row_tiles). */
static int64_t la_psum_rows(const kiln_kcall *c, int vl)
{
	int64_t mr = KK_GEMM_MR(vl), mc = c->ip[KK_LA_MC];
	if (c->ip[KK_LA_A_MODE] != KK_LA_OP_IMPLICIT)
		return round_up(mc, mr);
	int64_t w = c->ip[KK_LA_OUT + 2];
	return mc / w * cdiv(w, mr) * mr;
}

/* Per-thread buffers of kk_gemm_f32 (must match gemm_run/gemm_task): the
 * packed A and B blocks (packed from a Conv's phase planes they may overrun
 * by a vector), and a transposed product's partial sums (one MC x NC block
 * of micro-tiles). */
static int64_t la_thread_scratch(const kiln_kcall *c, int vl)
{
	int64_t f = 0, mc = round_up(c->ip[KK_LA_MC], KK_GEMM_MR(vl));
	int a_mode = (int)c->ip[KK_LA_A_MODE];
	if (a_mode != KK_LA_OP_PACKED && a_mode != KK_LA_OP_IMPLICIT)
		f += mc * c->ip[KK_LA_KC] + vl;
	if (c->ip[KK_LA_B_MODE] != KK_LA_OP_PACKED)
		f += c->ip[KK_LA_KC] * c->ip[KK_LA_NC] + vl;
	if (c->ip[KK_LA_TRANS])
		f += la_psum_rows(c, vl) * round_up(c->ip[KK_LA_NC], KK_GEMM_NR(vl));
	return f * (int64_t)sizeof(float);
}

/* Time of a rows x cols product on the micro-kernel, in rows x lanes: rows
 * go in MR tiles, where a short tile costs at least MR/3 rows (its few
 * accumulator chains wait on the FMA latency), columns in whole vectors. */
static int64_t la_tile_work(int64_t rows, int64_t cols, int vl)
{
	int64_t mr = KK_GEMM_MR(vl), rem = rows % mr;
	int64_t r = rows - rem + (rem == 0 ? 0 : rem > mr / 3 ? rem : mr / 3);
	return r * round_up(cols, vl);
}

/* Depth from which a Conv with constant weights runs as the transposed
 * product with its im2col read in place (KK_LA_OP_IMPLICIT): no packing,
 * but each tile's write-out is a VL x VL transpose, worth it only over a
 * long enough depth (ResNet-18, 1 thread: its 3x3 convolutions with depth
 * 576..4608 3-10% faster; the 7x7 stem (depth 147) and the strided 1x1
 * convolutions (64..256) 15-40% slower). */
#define LA_IMPLICIT_MIN_K 384

/* Whether an m x n x k product with constant A (weights) runs faster as
 * Y^T = B^T A^T (KK_LA_TRANS), with n as the micro-tile's rows: n small or
 * far from a whole number of vectors (a 7x7 output has n = 49: 64 lanes
 * computed for 49 in the usual orientation, 52 rows for 49 transposed).
 * The transposed store is charged as 8/k of the work, and the work must
 * drop by 10% (the transposed path has its own overheads: A packed per
 * N block, partial sums in scratch; 14x14 outputs, 5% less work, measured
 * no faster). */
static bool la_prefer_trans(int64_t m, int64_t n, int64_t k, int vl)
{
	return k > 0 && la_tile_work(n, m, vl) * (k + 8) * 10 < la_tile_work(m, n, vl) * k * 9;
}

/* Packs `count` matrices (rows x depth, element (r, p) of matrix q at
 * src[q*mstride + r*rs + p*ds]) into r_tile-row panels blocked by kc (the
 * layout in kk_params_linalg.h), one after another. */
static const float *la_pack(kiln_kcall *c, const float *src, int64_t count, int64_t mstride,
                            int64_t rows, int64_t depth, int64_t rs, int64_t ds, int64_t r_tile,
                            int64_t kc, int64_t *bytes)
{
	int64_t rpad = round_up(rows, r_tile), per = rpad * depth;
	*bytes = count * per * (int64_t)sizeof(float);
	float *dst = kiln_arena_alloc(c->arena, (size_t)(*bytes > 0 ? *bytes : 1));
	if (!dst)
		return NULL;
	for (int64_t q = 0; q < count; q++) {
		const float *s = src + q * mstride;
		float *d = dst + q * per;
		for (int64_t k0 = 0; k0 < depth; k0 += kc) {
			int64_t kcur = depth - k0 < kc ? depth - k0 : kc;
			for (int64_t r = 0; r < rpad; r++) {
				float *panel = d + k0 * rpad + r / r_tile * kcur * r_tile + r % r_tile;
				for (int64_t p = 0; p < kcur; p++)
					panel[p * r_tile] = r < rows ? s[r * rs + (k0 + p) * ds] : 0.0f;
			}
		}
	}
	return dst;
}

/* Replaces input `slot` (count matrices) by its packed A panels. */
static kiln_status la_pack_a(kiln_kcall *c, int vl, int slot, const float *src, int64_t count,
                             int64_t mstride, const kiln_node *n, kiln_diag *d)
{
	int64_t bytes;
	const float *p = la_pack(c, src, count, mstride, c->ip[KK_LA_M], c->ip[KK_LA_K],
	                         c->ip[KK_LA_A_RS], c->ip[KK_LA_A_CS], KK_GEMM_MR(vl),
	                         c->ip[KK_LA_KC], &bytes);
	if (!p)
		return kiln_diag_error(d, KILN_ERR_OOM, n, "out of memory packing weights");
	c->repl[slot] = p;
	c->repl_bytes[slot] = bytes;
	c->ip[KK_LA_A_MODE] = KK_LA_OP_PACKED;
	return KILN_OK;
}

static kiln_status la_pack_b(kiln_kcall *c, int vl, int slot, const float *src, int64_t count,
                             int64_t mstride, const kiln_node *n, kiln_diag *d)
{
	int64_t bytes;
	const float *p = la_pack(c, src, count, mstride, c->ip[KK_LA_N], c->ip[KK_LA_K],
	                         c->ip[KK_LA_B_CS], c->ip[KK_LA_B_RS], KK_GEMM_NR(vl),
	                         c->ip[KK_LA_KC], &bytes);
	if (!p)
		return kiln_diag_error(d, KILN_ERR_OOM, n, "out of memory packing weights");
	c->repl[slot] = p;
	c->repl_bytes[slot] = bytes;
	c->ip[KK_LA_B_MODE] = KK_LA_OP_PACKED;
	return KILN_OK;
}

static int64_t packed_size(int64_t rows, int64_t depth, int64_t r_tile)
{
	return round_up(rows, r_tile) * depth;
}

/* ---- host GEMM (kiln_cpu_target.host_gemm) ---------------------------------
 * f32 Gemm, MatMul and Conv as a typical framework runs them: plain
 * operands, every product one call of the runner's sgemm (kk_gemm_host_f32,
 * kk_conv_host_f32; layout KK_LH_* in kk_params_linalg.h). Nothing is
 * packed: constant weights stay as the graph holds them. */

static void lh_begin(kiln_kcall *c)
{
	c->n_ip = KK_LH_COUNT;
	for (int i = 0; i < KK_LH_COUNT; i++)
		c->ip[i] = 0;
	c->ip[KK_LH_T_A] = c->ip[KK_LH_T_B] = c->ip[KK_LH_T_C] = c->ip[KK_LH_T_BIAS] = -1;
	c->ip[KK_LH_T_Y] = c->ip[KK_LH_T_SCRATCH] = -1;
	c->n_fp = KK_LH_FP_COUNT;
	c->fp[KK_LH_FP_ALPHA] = 1.0;
	c->fp[KK_LH_FP_BETA] = 1.0;
}

static kiln_status lower_gemm_host(const kiln_node *n, kiln_kcall *c, kiln_diag *d)
{
	const kiln_value *cv = kiln_node_in(n, 2);
	const kiln_type *at = &n->inputs[0]->type, *bt = &n->inputs[1]->type;
	const kiln_type *yt = &n->outputs[0]->type;
	KILN_ENSURE(d, at->rank == 2 && bt->rank == 2 && yt->rank == 2, KILN_ERR_SHAPE, n,
	            "A, B and Y must have rank 2");
	KILN_ENSURE(d, at->dtype == KILN_DT_F32 && bt->dtype == KILN_DT_F32 &&
	                   (!cv || cv->type.dtype == KILN_DT_F32),
	            KILN_ERR_UNSUPPORTED, n, "A, B, C and Y must share one dtype");
	bool ta = kiln_node_int(n, "transA", 0) != 0, tb = kiln_node_int(n, "transB", 0) != 0;
	int64_t m = at->dims[ta ? 1 : 0], k = at->dims[ta ? 0 : 1], nn = bt->dims[tb ? 0 : 1];
	KILN_ENSURE(d, bt->dims[tb ? 1 : 0] == k && yt->dims[0] == m && yt->dims[1] == nn,
	            KILN_ERR_SHAPE, n, "A, B and Y shapes do not agree");
	lh_begin(c);
	c->fn = "kk_gemm_host_f32";
	c->ip[KK_LH_M] = m;
	c->ip[KK_LH_N] = nn;
	c->ip[KK_LH_K] = k;
	c->ip[KK_LH_TRANS_A] = ta;
	c->ip[KK_LH_TRANS_B] = tb;
	c->ip[KK_LH_T_A] = 0;
	c->ip[KK_LH_T_B] = 1;
	c->ip[KK_LH_T_Y] = n->n_inputs;
	if (cv) {
		const kiln_type *ct = &cv->type;
		KILN_ENSURE(d, ct->rank <= 2, KILN_ERR_UNSUPPORTED, n, "C must have rank <= 2");
		int64_t d0 = ct->rank == 2 ? ct->dims[0] : 1, d1 = ct->rank >= 1 ? ct->dims[ct->rank - 1] : 1;
		KILN_ENSURE(d, (d0 == 1 || d0 == m) && (d1 == 1 || d1 == nn), KILN_ERR_SHAPE, n,
		            "C does not broadcast to [%lld, %lld]", (long long)m, (long long)nn);
		c->ip[KK_LH_T_C] = 2;
		c->ip[KK_LH_C_RS] = d0 == 1 ? 0 : d1;
		c->ip[KK_LH_C_CS] = d1 == 1 ? 0 : 1;
	}
	c->fp[KK_LH_FP_ALPHA] = kiln_node_float(n, "alpha", 1.0f);
	c->fp[KK_LH_FP_BETA] = kiln_node_float(n, "beta", 1.0f);
	return KILN_OK;
}

static kiln_type batch_type(const kiln_type *t);
static int64_t batch_stride(const kiln_type *ob, const kiln_type *yb, int d);
static kiln_status conv_dtype(const kiln_node *n, int *dt, kiln_diag *d);

/* MatMul's product, m x k times k x nn (a 1-D A a row, a 1-D B a column),
 * and the batch types of A, B and Y (A's and B's broadcast), checked
 * against Y's element count. */
static kiln_status matmul_dims(const kiln_node *n, int64_t *m, int64_t *k, int64_t *nn,
                               kiln_type *ab, kiln_type *bb, kiln_type *yb, kiln_diag *d)
{
	const kiln_type *at = &n->inputs[0]->type, *bt = &n->inputs[1]->type;
	const kiln_type *yt = &n->outputs[0]->type;
	KILN_ENSURE(d, at->rank >= 1 && bt->rank >= 1, KILN_ERR_SHAPE, n, "MatMul of a scalar");
	*m = at->rank == 1 ? 1 : at->dims[at->rank - 2];
	*k = at->dims[at->rank - 1];
	int64_t kb = bt->rank == 1 ? bt->dims[0] : bt->dims[bt->rank - 2];
	*nn = bt->rank == 1 ? 1 : bt->dims[bt->rank - 1];
	KILN_ENSURE(d, *k == kb, KILN_ERR_SHAPE, n, "inner dims differ: %lld vs %lld",
	            (long long)*k, (long long)kb);
	*ab = batch_type(at);
	*bb = batch_type(bt);
	KILN_ENSURE(d, kiln_broadcast(ab, bb, yb), KILN_ERR_SHAPE, n, "batch dims do not broadcast");
	int64_t want = kiln_type_numel(yb) * *m * *nn;
	KILN_ENSURE(d, kiln_type_numel(yt) == want, KILN_ERR_SHAPE, n,
	            "output has %lld elements, expected %lld", (long long)kiln_type_numel(yt),
	            (long long)want);
	return KILN_OK;
}

/* A 1-D A is one row, a 1-D B one column. With a B of no batch dims, the
 * batch folds into A's rows: one sgemm (what frameworks do too); otherwise
 * one per matrix of the broadcast batch. */
static kiln_status lower_matmul_host(const kiln_node *n, kiln_kcall *c, kiln_diag *d)
{
	const kiln_type *at = &n->inputs[0]->type, *bt = &n->inputs[1]->type;
	KILN_ENSURE(d, at->dtype == KILN_DT_F32 && bt->dtype == KILN_DT_F32, KILN_ERR_UNSUPPORTED,
	            n, "A, B and Y must share one dtype");
	int64_t m, k, nn;
	kiln_type ab, bb, yb;
	KILN_TRY(matmul_dims(n, &m, &k, &nn, &ab, &bb, &yb, d));
	lh_begin(c);
	c->fn = "kk_gemm_host_f32";
	c->ip[KK_LH_N] = nn;
	c->ip[KK_LH_K] = k;
	c->ip[KK_LH_T_A] = 0;
	c->ip[KK_LH_T_B] = 1;
	c->ip[KK_LH_T_Y] = 2;
	if (bb.rank == 0) { /* then A's batch is Y's */
		c->ip[KK_LH_M] = kiln_type_numel(&yb) * m;
		return KILN_OK;
	}
	c->ip[KK_LH_M] = m;
	for (int i = 0; i < yb.rank; i++) {
		c->ip[KK_LH_BATCH_RANK]++;
		kiln_kcall_i(c, yb.dims[i]);
		kiln_kcall_i(c, batch_stride(&ab, &yb, i) * m * k);
		kiln_kcall_i(c, batch_stride(&bb, &yb, i) * k * nn);
	}
	return KILN_OK;
}

/* Depthwise convolutions keep kk_conv_dw_f32 (frameworks have a direct
 * kernel for them too). */
static bool conv_host_wanted(const kiln_node *n, const kiln_cpu_target *t)
{
	const kiln_type *xt = &n->inputs[0]->type, *wt = &n->inputs[1]->type;
	if (!t->host_gemm || n->outputs[0]->type.dtype != KILN_DT_F32 || xt->rank < 3 ||
	    wt->rank != xt->rank)
		return false;
	int64_t group = kiln_node_int(n, "group", 1);
	return !(wt->dims[1] == 1 && group == xt->dims[1] && group > 1);
}

/* Per image and group: Y[mg, os] = W[mg, cg*ks] im2col(X)[cg*ks, os] in
 * arena scratch (none for a 1x1, stride-1, unpadded Conv), then the bias. */
static kiln_status lower_conv_host(const kiln_node *n, kiln_kcall *c, kiln_diag *d)
{
	int dt;
	KILN_TRY(conv_dtype(n, &dt, d));
	const kiln_value *bv = kiln_node_in(n, 2);
	kiln_conv_geom g;
	KILN_TRY(kiln_conv_geom_resolve(n, &n->inputs[0]->type, &n->inputs[1]->type,
	                                &n->outputs[0]->type, bv ? kiln_type_numel(&bv->type) : -1,
	                                false, &g, d));
	lh_begin(c);
	c->fn = "kk_conv_host_f32";
	c->ip[KK_LH_M] = g.mg;
	c->ip[KK_LH_N] = g.os;
	c->ip[KK_LH_K] = g.cg * g.ks;
	c->ip[KK_LH_T_A] = 1;
	c->ip[KK_LH_T_B] = 0;
	c->ip[KK_LH_T_BIAS] = bv ? 2 : -1;
	c->ip[KK_LH_T_Y] = n->n_inputs;
	c->ip[KK_LH_CONV_N] = g.n;
	c->ip[KK_LH_CONV_C] = g.c;
	c->ip[KK_LH_CONV_GROUP] = g.group;
	bool direct = g.ks == 1 && g.is == g.os;
	for (int i = 0; i < 3; i++) {
		c->ip[KK_LH_IN + i] = g.in[i];
		c->ip[KK_LH_OUT + i] = g.out[i];
		c->ip[KK_LH_KER + i] = g.k[i];
		c->ip[KK_LH_STRIDE + i] = g.s[i];
		c->ip[KK_LH_DIL + i] = g.dl[i];
		c->ip[KK_LH_PAD + i] = g.pb[i];
		direct = direct && g.s[i] == 1 && g.pb[i] == 0;
	}
	if (!direct) {
		c->scratch_bytes = g.cg * g.ks * g.os * (int64_t)sizeof(float);
		c->ip[KK_LH_T_SCRATCH] = n->n_inputs + 1;
	}
	return KILN_OK;
}

/* ---- Gemm ---------------------------------------------------------------- */

static kiln_status lower_gemm(const kiln_node *n, const kiln_cpu_target *t, kiln_kcall *c,
                              kiln_diag *d)
{
	if (t->host_gemm && n->outputs[0]->type.dtype == KILN_DT_F32)
		return lower_gemm_host(n, c, d);
	const kiln_value *av = n->inputs[0], *bv = n->inputs[1], *cv = kiln_node_in(n, 2);
	const kiln_type *at = &av->type, *bt = &bv->type, *yt = &n->outputs[0]->type;
	int dt = la_dtype(yt->dtype);
	if (dt < 0)
		return kiln_diag_error(d, KILN_ERR_UNSUPPORTED, n, "dtype %s is not supported",
		                       kiln_dtype_name(yt->dtype));
	KILN_ENSURE(d, at->rank == 2 && bt->rank == 2 && yt->rank == 2, KILN_ERR_SHAPE, n,
	            "A, B and Y must have rank 2");
	bool ta = kiln_node_int(n, "transA", 0) != 0, tb = kiln_node_int(n, "transB", 0) != 0;
	int64_t m = at->dims[ta ? 1 : 0], k = at->dims[ta ? 0 : 1], nn = bt->dims[tb ? 0 : 1];
	KILN_ENSURE(d, bt->dims[tb ? 1 : 0] == k && yt->dims[0] == m && yt->dims[1] == nn,
	            KILN_ERR_SHAPE, n, "A, B and Y shapes do not agree");
	la_begin(c, dt);
	c->ip[KK_LA_KIND] = KK_LA_KIND_GEMM;
	c->ip[KK_LA_M] = m;
	c->ip[KK_LA_N] = nn;
	c->ip[KK_LA_K] = k;
	c->ip[KK_LA_A_RS] = ta ? 1 : k;
	c->ip[KK_LA_A_CS] = ta ? m : 1;
	c->ip[KK_LA_B_RS] = tb ? 1 : nn;
	c->ip[KK_LA_B_CS] = tb ? k : 1;
	c->ip[KK_LA_Y_RS] = nn;
	c->ip[KK_LA_T_A] = 0;
	c->ip[KK_LA_T_B] = 1;
	c->ip[KK_LA_T_Y] = n->n_inputs;
	if (cv) {
		const kiln_type *ct = &cv->type;
		KILN_ENSURE(d, ct->rank <= 2 && ct->dtype == yt->dtype, KILN_ERR_UNSUPPORTED, n,
		            "C must have rank <= 2 and Y's dtype");
		int64_t d0 = ct->rank == 2 ? ct->dims[0] : 1, d1 = ct->rank >= 1 ? ct->dims[ct->rank - 1] : 1;
		KILN_ENSURE(d, (d0 == 1 || d0 == m) && (d1 == 1 || d1 == nn), KILN_ERR_SHAPE, n,
		            "C does not broadcast to [%lld, %lld]", (long long)m, (long long)nn);
		c->ip[KK_LA_C_RS] = d0 == 1 ? 0 : d1;
		c->ip[KK_LA_C_CS] = d1 == 1 ? 0 : 1;
		c->ip[KK_LA_T_C] = 2;
	}
	c->fp[KK_LA_FP_ALPHA] = kiln_node_float(n, "alpha", 1.0f);
	c->fp[KK_LA_FP_BETA] = kiln_node_float(n, "beta", 1.0f);
	if (dt != KK_LA_DT_F32) {
		c->fn = "kk_gemm_any";
		return KILN_OK;
	}
	c->fn = "kk_gemm_f32";
	la_blocks(c, t->vl);
	const float *ac = const_f32(av), *bc = const_f32(bv);
	if (ac)
		KILN_TRY(la_pack_a(c, t->vl, 0, ac, 1, 0, n, d));
	if (bc)
		KILN_TRY(la_pack_b(c, t->vl, 1, bc, 1, 0, n, d));
	c->thread_scratch_bytes = la_thread_scratch(c, t->vl);
	return KILN_OK;
}

/* ---- MatMul -------------------------------------------------------------- */

/* The batch dims of an operand (all but its last two; none for 1-D). */
static kiln_type batch_type(const kiln_type *t)
{
	kiln_type b = {.dtype = t->dtype, .rank = t->rank > 2 ? t->rank - 2 : 0};
	for (int i = 0; i < b.rank; i++)
		b.dims[i] = t->dims[i];
	return b;
}

/* Matrix-index stride of batch dim d of the broadcast batch shape yb in an
 * operand with batch shape ob (0 where it broadcasts). */
static int64_t batch_stride(const kiln_type *ob, const kiln_type *yb, int d)
{
	int od = d - (yb->rank - ob->rank);
	if (od < 0 || ob->dims[od] == 1)
		return 0;
	int64_t s = 1;
	for (int i = od + 1; i < ob->rank; i++)
		s *= ob->dims[i];
	return s;
}

static kiln_status lower_matmul(const kiln_node *n, const kiln_cpu_target *t, kiln_kcall *c,
                                kiln_diag *d)
{
	if (t->host_gemm && n->outputs[0]->type.dtype == KILN_DT_F32)
		return lower_matmul_host(n, c, d);
	const kiln_value *av = n->inputs[0], *bv = n->inputs[1];
	const kiln_type *yt = &n->outputs[0]->type;
	int dt = la_dtype(yt->dtype);
	if (dt < 0)
		return kiln_diag_error(d, KILN_ERR_UNSUPPORTED, n, "dtype %s is not supported",
		                       kiln_dtype_name(yt->dtype));
	int64_t m, k, nn;
	kiln_type ab, bb, yb;
	KILN_TRY(matmul_dims(n, &m, &k, &nn, &ab, &bb, &yb, d));
	la_begin(c, dt);
	c->ip[KK_LA_KIND] = KK_LA_KIND_MATMUL;
	c->ip[KK_LA_M] = m;
	c->ip[KK_LA_N] = nn;
	c->ip[KK_LA_K] = k;
	c->ip[KK_LA_A_RS] = k;
	c->ip[KK_LA_A_CS] = 1;
	c->ip[KK_LA_B_RS] = nn;
	c->ip[KK_LA_B_CS] = 1;
	c->ip[KK_LA_Y_RS] = nn;
	c->ip[KK_LA_T_A] = 0;
	c->ip[KK_LA_T_B] = 1;
	c->ip[KK_LA_T_Y] = 2;
	const float *ac = NULL, *bc = NULL;
	if (dt == KK_LA_DT_F32) {
		c->fn = "kk_gemm_f32";
		la_blocks(c, t->vl);
		ac = const_f32(av);
		bc = const_f32(bv);
	} else {
		c->fn = "kk_gemm_any";
	}
	int64_t asz = ac ? packed_size(m, k, KK_GEMM_MR(t->vl)) : m * k;
	int64_t bsz = bc ? packed_size(nn, k, KK_GEMM_NR(t->vl)) : k * nn;
	for (int i = 0; i < yb.rank; i++)
		la_batch_dim(c, yb.dims[i], batch_stride(&ab, &yb, i) * asz,
		             batch_stride(&bb, &yb, i) * bsz, 0, 0);
	/* Y's batch strides: dense over yb. */
	int64_t ys = m * nn;
	for (int i = yb.rank - 1; i >= 0; i--) {
		c->ip[KK_LA_BATCH + i * KK_LA_BD_COUNT + KK_LA_BD_Y] = ys;
		ys *= yb.dims[i];
	}
	if (ac)
		KILN_TRY(la_pack_a(c, t->vl, 0, ac, kiln_type_numel(&ab), m * k, n, d));
	if (bc)
		KILN_TRY(la_pack_b(c, t->vl, 1, bc, kiln_type_numel(&bb), k * nn, n, d));
	if (dt == KK_LA_DT_F32)
		c->thread_scratch_bytes = la_thread_scratch(c, t->vl);
	return KILN_OK;
}

/* ---- Conv / ConvTranspose -------------------------------------------------- */

static kiln_status conv_geometry(const kiln_node *n, bool transpose, kiln_conv_geom *g, kiln_kcall *c,
                                 kiln_diag *d)
{
	const kiln_value *bv = kiln_node_in(n, 2);
	KILN_TRY(kiln_conv_geom_resolve(n, &n->inputs[0]->type, &n->inputs[1]->type,
	                                &n->outputs[0]->type, bv ? kiln_type_numel(&bv->type) : -1,
	                                transpose, g, d));
	for (int i = 0; i < 3; i++) {
		c->ip[KK_LA_IN + i] = g->in[i];
		c->ip[KK_LA_OUT + i] = g->out[i];
		c->ip[KK_LA_KER + i] = g->k[i];
		c->ip[KK_LA_STRIDE + i] = g->s[i];
		c->ip[KK_LA_DIL + i] = g->dl[i];
		c->ip[KK_LA_PAD + i] = g->pb[i];
	}
	c->ip[KK_LA_CONV_N] = g->n;
	c->ip[KK_LA_CONV_C] = g->c;
	c->ip[KK_LA_CONV_M] = g->m;
	c->ip[KK_LA_CONV_GROUP] = g->group;
	c->ip[KK_LA_T_A] = 1;
	c->ip[KK_LA_T_B] = 0;
	c->ip[KK_LA_T_BIAS] = bv ? 2 : -1;
	c->ip[KK_LA_T_Y] = n->n_inputs;
	return KILN_OK;
}

static kiln_status conv_dtype(const kiln_node *n, int *dt, kiln_diag *d)
{
	kiln_dtype x = n->inputs[0]->type.dtype;
	const kiln_value *bv = kiln_node_in(n, 2);
	KILN_ENSURE(d, kiln_dtype_is_float(x), KILN_ERR_UNSUPPORTED, n,
	            "dtype %s is not supported (float types only)", kiln_dtype_name(x));
	KILN_ENSURE(d, n->inputs[1]->type.dtype == x && n->outputs[0]->type.dtype == x &&
	                   (!bv || bv->type.dtype == x),
	            KILN_ERR_SHAPE, n, "X, W, B and Y must share one dtype");
	*dt = la_dtype(x);
	return KILN_OK;
}

/* Per (image, group): Y^T[os, mg] = im2col(X)^T W^T (KK_LA_TRANS), the
 * output positions as the micro-tile's rows: A packed at run time from the
 * phase planes (from X itself for a direct 1x1 Conv), the weights packed
 * here as B. */
static kiln_status lower_conv_trans(const kiln_node *n, const kiln_cpu_target *t, kiln_kcall *c,
                                    kiln_diag *d, const kiln_conv_geom *g, int64_t chan,
                                    bool direct, const float *wc)
{
	int64_t k = g->cg * g->ks, nr = KK_GEMM_NR(t->vl);
	c->fn = direct ? "kk_gemm_f32" : "kk_conv_f32";
	c->ip[KK_LA_TRANS] = 1;
	c->ip[KK_LA_M] = g->os;
	c->ip[KK_LA_N] = g->mg;
	c->ip[KK_LA_K] = k;
	c->ip[KK_LA_A_MODE] = direct ? KK_LA_OP_STRIDED : KK_LA_OP_IMPLICIT;
	c->ip[KK_LA_A_RS] = 1;
	c->ip[KK_LA_A_CS] = g->is;
	c->ip[KK_LA_B_RS] = 1;
	c->ip[KK_LA_B_CS] = k;
	c->ip[KK_LA_Y_RS] = g->os;
	c->ip[KK_LA_T_A] = 0;
	c->ip[KK_LA_T_B] = 1;
	la_blocks(c, t->vl);
	if (!direct) {
		/* M blocks of whole output rows, about MC_MAX positions each */
		int64_t w = g->out[2], rows = g->os / w;
		int64_t rb = w >= KK_GEMM_MC_MAX(t->vl) ? 1 : KK_GEMM_MC_MAX(t->vl) / w;
		rb = cdiv(rows, cdiv(rows, rb));
		c->ip[KK_LA_MC] = rb * w;
	}
	/* the partial sums of a block stay within 128 KiB */
	int64_t ncap = 32768 / la_psum_rows(c, t->vl) / nr * nr;
	if (c->ip[KK_LA_NC] > ncap) {
		ncap = ncap > nr ? ncap : nr;
		c->ip[KK_LA_NC] = round_up(cdiv(g->mg, cdiv(g->mg, ncap)), nr);
	}
	int64_t bsz = packed_size(g->mg, k, nr);
	if (direct) {
		la_batch_dim(c, g->n, g->c * g->is, 0, g->m * g->os, 0);
		la_batch_dim(c, g->group, g->cg * g->is, bsz, g->mg * g->os, g->mg);
	} else {
		la_batch_dim(c, g->group, g->cg * chan, bsz, g->mg * g->os, g->mg);
		c->scratch_bytes = (g->c * chan + t->vl) * (int64_t)sizeof(float);
		c->ip[KK_LA_T_SCRATCH] = n->n_inputs + 1;
	}
	KILN_TRY(la_pack_b(c, t->vl, 1, wc, g->group, g->mg * k, n, d));
	c->thread_scratch_bytes = la_thread_scratch(c, t->vl);
	return KILN_OK;
}

static kiln_status lower_conv(const kiln_node *n, const kiln_cpu_target *t, kiln_kcall *c,
                              kiln_diag *d)
{
	if (conv_host_wanted(n, t))
		return lower_conv_host(n, c, d);
	int dt;
	KILN_TRY(conv_dtype(n, &dt, d));
	la_begin(c, dt);
	kiln_conv_geom g;
	KILN_TRY(conv_geometry(n, false, &g, c, d));
	if (dt != KK_LA_DT_F32) {
		c->fn = "kk_conv_any";
		return KILN_OK;
	}
	int64_t nph[3], q[3], chan = kk_la_phases(c->ip, nph, q);
	if (g.cg == 1 && g.group == g.c && g.group > 1) {
		/* Bands of rb output rows whose window of the phase planes (ni x
		 * rb + ext1 rows of q2 per plane) is about 16 KiB, so it stays in
		 * L1 while read; bands of equal size. Per thread (dw_task): tap
		 * offsets, the window (VL floats of slack per plane and after it),
		 * the flat line (rb*q2 + VL) and its packed rows (rb*out2 + VL). */
		c->fn = "kk_conv_dw_f32";
		int64_t ni = (g.k[0] - 1) * g.dl[0] / g.s[0] + 1, ext1 = (g.k[1] - 1) * g.dl[1] / g.s[1];
		int64_t nplanes = nph[0] * nph[1] * nph[2], row = nplanes * ni * q[2];
		int64_t rb = row > 0 ? 4096 / row - ext1 : g.out[1];
		rb = rb < 4 ? 4 : rb;
		rb = rb < g.out[1] ? rb : g.out[1];
		rb = rb > 0 ? cdiv(g.out[1], cdiv(g.out[1], rb)) : 1;
		c->ip[KK_LA_MC] = rb;
		int64_t floats = row * (rb + ext1) + nplanes * t->vl + rb * (q[2] + g.out[2]) + 3 * t->vl;
		c->thread_scratch_bytes = g.ks * (int64_t)sizeof(int64_t) + floats * (int64_t)sizeof(float);
		/* Direct (KK_LA_NC = 1): small 2-D planes, stride 1, the output
		 * the input's size; per thread the taps' offsets and a mask per
		 * output vector and tap. */
		int64_t nvec = cdiv(g.os, t->vl);
		if (g.in[0] == 1 && g.k[0] == 1 && g.out[0] == 1 && g.s[1] == 1 && g.s[2] == 1 &&
		    g.out[1] == g.in[1] && g.out[2] == g.in[2] && nvec * g.ks <= 256) {
			c->ip[KK_LA_NC] = 1;
			c->thread_scratch_bytes += g.ks * (int64_t)sizeof(int64_t) +
			                           nvec * g.ks * t->vl * (int64_t)sizeof(int32_t);
		}
		return KILN_OK;
	}
	/* Per (image, group): Y[mg, os] = W[mg, cg*ks] * im2col(X)[cg*ks, os]. */
	int64_t k = g.cg * g.ks;
	bool direct = g.ks == 1 && g.is == g.os;
	for (int a = 0; a < 3; a++)
		direct = direct && g.s[a] == 1 && g.pb[a] == 0;
	const float *wc = const_f32(n->inputs[1]);
	if (wc && (la_prefer_trans(g.mg, g.os, k, t->vl) || (!direct && k >= LA_IMPLICIT_MIN_K)))
		return lower_conv_trans(n, t, c, d, &g, chan, direct, wc);
	c->ip[KK_LA_M] = g.mg;
	c->ip[KK_LA_N] = g.os;
	c->ip[KK_LA_K] = k;
	c->ip[KK_LA_A_RS] = k;
	c->ip[KK_LA_A_CS] = 1;
	c->ip[KK_LA_Y_RS] = g.os;
	c->ip[KK_LA_B_MODE] = direct ? KK_LA_OP_STRIDED : KK_LA_OP_IM2COL;
	c->ip[KK_LA_B_RS] = g.is;
	c->ip[KK_LA_B_CS] = 1;
	la_blocks(c, t->vl);
	int64_t asz = wc ? packed_size(g.mg, k, KK_GEMM_MR(t->vl)) : g.mg * k;
	if (direct) {
		c->fn = "kk_gemm_f32";
		la_batch_dim(c, g.n, 0, g.c * g.is, g.m * g.os, 0);
		la_batch_dim(c, g.group, asz, g.cg * g.is, g.mg * g.os, g.mg);
	} else {
		/* per image: phase planes of all channels in the arena scratch */
		c->fn = "kk_conv_f32";
		la_batch_dim(c, g.group, asz, g.cg * chan, g.mg * g.os, g.mg);
		c->scratch_bytes = (g.c * chan + t->vl) * (int64_t)sizeof(float);
		c->ip[KK_LA_T_SCRATCH] = n->n_inputs + 1;
	}
	if (wc)
		KILN_TRY(la_pack_a(c, t->vl, 1, wc, g.group, g.mg * k, n, d));
	c->thread_scratch_bytes = la_thread_scratch(c, t->vl);
	return KILN_OK;
}

static kiln_status lower_conv_transpose(const kiln_node *n, const kiln_cpu_target *t,
                                        kiln_kcall *c, kiln_diag *d)
{
	int dt;
	KILN_TRY(conv_dtype(n, &dt, d));
	la_begin(c, dt);
	kiln_conv_geom g;
	KILN_TRY(conv_geometry(n, true, &g, c, d));
	if (dt != KK_LA_DT_F32) {
		c->fn = "kk_conv_transpose_any";
		c->thread_scratch_bytes = g.os * (int64_t)sizeof(double);
		return KILN_OK;
	}
	/* Per image and group: col[mg*ks, is] = W[cg, mg*ks]^T X[cg, is]. */
	c->fn = "kk_conv_transpose_f32";
	int64_t rows = g.mg * g.ks;
	c->ip[KK_LA_M] = rows;
	c->ip[KK_LA_N] = g.is;
	c->ip[KK_LA_K] = g.cg;
	c->ip[KK_LA_A_RS] = 1;
	c->ip[KK_LA_A_CS] = rows;
	c->ip[KK_LA_B_RS] = g.is;
	c->ip[KK_LA_B_CS] = 1;
	c->ip[KK_LA_Y_RS] = g.is;
	la_blocks(c, t->vl);
	const float *wc = const_f32(n->inputs[1]);
	int64_t asz = wc ? packed_size(rows, g.cg, KK_GEMM_MR(t->vl)) : g.cg * rows;
	la_batch_dim(c, g.group, asz, g.cg * g.is, rows * g.is, 0);
	if (wc)
		KILN_TRY(la_pack_a(c, t->vl, 1, wc, g.group, g.cg * rows, n, d));
	c->thread_scratch_bytes = la_thread_scratch(c, t->vl);
	c->scratch_bytes = g.m * g.ks * g.is * (int64_t)sizeof(float);
	c->ip[KK_LA_T_SCRATCH] = n->n_inputs + 1;
	return KILN_OK;
}

/* ConvNCHWc on kk_conv_nchwc_f32 (kk_params_nchwc.h): the geometry of the
 * Conv it stands for, the weights packed in the kernel's blocked layout. */
static kiln_status lower_conv_nchwc(const kiln_node *n, kiln_kcall *c, kiln_diag *d)
{
	const kiln_value *xv = n->inputs[0], *wv = n->inputs[1], *bv = kiln_node_in(n, 2);
	const kiln_type *xb = &xv->type, *yb = &n->outputs[0]->type, *wt = &wv->type;
	KILN_ENSURE(d, xb->dtype == KILN_DT_F32 && xb->rank == 5 && yb->rank == 5 && wt->rank == 4,
	            KILN_ERR_UNSUPPORTED, n,
	            "the CPU backend runs ConvNCHWc on f32 blocked tensors and 2-D weights only");
	/* the NCHW tensors X and Y hold */
	kiln_type x = *xb, y = *yb;
	x.rank = y.rank = 4;
	x.dims[1] = kiln_node_int(n, "channels", 0);
	y.dims[1] = wt->dims[0];
	kiln_conv_geom g;
	KILN_TRY(kiln_conv_geom_resolve(n, &x, wt, &y, bv ? kiln_type_numel(&bv->type) : -1, false,
	                                &g, d));
	bool dw = g.group == g.c && g.group == g.m && g.c > 1;
	KILN_ENSURE(d, g.group == 1 || dw, KILN_ERR_UNSUPPORTED, n,
	            "kk_conv_nchwc_f32 runs group 1 or depthwise convolutions, not group %lld "
	            "with %lld input and %lld output channels",
	            (long long)g.group, (long long)g.c, (long long)g.m);
	const float *wc = const_f32(wv);
	KILN_ENSURE(d, wc && (!bv || const_f32(bv)), KILN_ERR_UNSUPPORTED, n,
	            "kk_conv_nchwc_f32 needs constant f32 weights and bias");
	la_begin(c, KK_LA_DT_F32);
	c->fn = "kk_conv_nchwc_f32";
	for (int i = 0; i < 3; i++) {
		c->ip[KK_LA_IN + i] = g.in[i];
		c->ip[KK_LA_OUT + i] = g.out[i];
		c->ip[KK_LA_KER + i] = g.k[i];
		c->ip[KK_LA_STRIDE + i] = g.s[i];
		c->ip[KK_LA_DIL + i] = g.dl[i];
		c->ip[KK_LA_PAD + i] = g.pb[i];
	}
	c->ip[KK_LA_CONV_N] = g.n;
	c->ip[KK_LA_CONV_C] = g.c;
	c->ip[KK_LA_CONV_M] = g.m;
	c->ip[KK_LA_CONV_GROUP] = g.group;
	c->ip[KK_LA_T_A] = 0;
	c->ip[KK_LA_T_B] = 1;
	c->ip[KK_LA_T_BIAS] = bv ? 2 : -1;
	c->ip[KK_LA_T_Y] = n->n_inputs;
	int64_t floats = kk_nchwc_packed_floats(g.m, g.c, g.group, g.ks);
	float *packed = kiln_arena_alloc(c->arena, (size_t)floats * sizeof *packed);
	if (!packed)
		return kiln_diag_error(d, KILN_ERR_OOM, n, "out of memory packing weights");
	kk_nchwc_pack(wc, g.m, g.c, g.group, g.ks, packed);
	c->repl[1] = packed;
	c->repl_bytes[1] = floats * (int64_t)sizeof *packed;
	return KILN_OK;
}

kiln_status kiln_lower_linalg(const kiln_node *n, const kiln_cpu_target *t, kiln_kcall *c,
                              kiln_diag *d)
{
	switch (n->op) {
	case KILN_OP_GEMM: return lower_gemm(n, t, c, d);
	case KILN_OP_MATMUL: return lower_matmul(n, t, c, d);
	case KILN_OP_CONV: return lower_conv(n, t, c, d);
	case KILN_OP_CONV_TRANSPOSE: return lower_conv_transpose(n, t, c, d);
	case KILN_OP_CONV_NCHWC: return lower_conv_nchwc(n, c, d);
	default:
		return kiln_diag_error(d, KILN_ERR_INTERNAL, n, "%s is not a linalg op",
		                       kiln_op_name(n->op));
	}
}

/* ---- output fusion ----------------------------------------------------------- */

/* Fusion slot of a body input (its position among the body's inputs). */
static int body_slot(const kiln_graph *b, const kiln_value *v)
{
	for (int i = 0; i < b->n_inputs; i++)
		if (b->inputs[i] == v)
			return i;
	return -1;
}

/* A body node's input that is a body input (a fusion operand), else NULL. */
static bool operand_of(const kiln_graph *b, const kiln_value *v)
{
	return v && v->kind == KILN_VALUE_INPUT && body_slot(b, v) >= 0;
}

/* Scalar f32 bound of the body's Clip, or dflt when omitted. */
static double clip_bound(const kiln_node *clip, int i, double dflt)
{
	const kiln_value *v = kiln_node_in(clip, i);
	return v ? kiln_const_get_f64(v, 0) : dflt;
}

/* A fusion node of kind output: body = product (Conv, ConvNCHWc, Gemm or
 * MatMul), then an optional Add of a bias vector along the output channel,
 * then an optional Add of a residual with the product's shape, then an
 * optional Relu or Clip with constant bounds (what passes/fuse_output.c
 * makes). The product is lowered as if it were the node, on the fusion
 * node's operands; the residual and the activation go into the kernel's
 * epilogue (KK_LA_T_RES, KK_LA_ACT). */
kiln_status kiln_lower_fusion_output(const kiln_node *n, const kiln_cpu_target *t, kiln_kcall *c,
                                     kiln_diag *d)
{
	const kiln_graph *b = n->body;
	const kiln_node *p = b->n_nodes ? b->nodes[0] : NULL, *add = NULL, *act = NULL;
	int i = 1;
	bool conv = p && (p->op == KILN_OP_CONV || p->op == KILN_OP_CONV_NCHWC);
	bool ok = p && (conv || p->op == KILN_OP_GEMM || p->op == KILN_OP_MATMUL) &&
	          p->n_inputs <= 3 && n->n_outputs == 1 && b->n_outputs == 1;
	for (int j = 0; ok && j < p->n_inputs; j++)
		ok = !p->inputs[j] || operand_of(b, p->inputs[j]);
	const kiln_value *cur = ok ? p->outputs[0] : NULL, *res = NULL, *bias = NULL;
	/* [Add of a bias vector along the channel], then [Add of a residual] */
	for (int pass = 0; pass < 2 && ok && i < b->n_nodes && b->nodes[i]->op == KILN_OP_ADD; pass++) {
		add = b->nodes[i];
		const kiln_value *other = add->inputs[0] == cur ? add->inputs[1] : add->inputs[0];
		ok = (add->inputs[0] == cur || add->inputs[1] == cur) && operand_of(b, other) &&
		     kiln_type_equal(&add->outputs[0]->type, &cur->type);
		if (ok && kiln_type_equal(&other->type, &cur->type))
			res = other;
		else if (ok && pass == 0 && kiln_fusion_bias_ok(p, cur, other))
			bias = other;
		else
			break;
		cur = add->outputs[0];
		i++;
		if (res)
			break;
	}
	if (ok && i < b->n_nodes &&
	    (b->nodes[i]->op == KILN_OP_RELU || b->nodes[i]->op == KILN_OP_CLIP ||
	     (b->nodes[i]->op == KILN_OP_GELU && !conv))) {
		act = b->nodes[i++];
		ok = act->inputs[0] == cur;
		for (int j = 1; ok && j < act->n_inputs; j++)
			ok = !act->inputs[j] || (act->inputs[j]->kind == KILN_VALUE_CONST &&
			                         act->inputs[j]->data &&
			                         kiln_type_numel(&act->inputs[j]->type) == 1);
		cur = act->outputs[0];
	}
	ok = ok && i == b->n_nodes && b->outputs[0] == cur && cur->type.dtype == KILN_DT_F32;
	if (!ok)
		return kiln_diag_error(d, KILN_ERR_UNSUPPORTED, n,
		                       "the CPU backend lowers an output fusion of an f32 Conv, "
		                       "ConvNCHWc, Gemm or MatMul followed by an optional bias Add, an "
		                       "optional residual Add and an optional Relu, Clip or (not after "
		                       "a Conv) Gelu; this body is not one");
	/* the product as a node of the outer graph: the fusion's operands and output */
	kiln_value *in[3] = {0};
	int map[3];
	for (int j = 0; j < p->n_inputs; j++) {
		map[j] = p->inputs[j] ? body_slot(b, p->inputs[j]) : -1;
		in[j] = map[j] >= 0 ? n->inputs[map[j]] : NULL;
	}
	kiln_node view = *p;
	view.inputs = in;
	view.outputs = n->outputs;
	view.name = n->name;
	view.origin = n->origin;
	/* the epilogue lives in kiln's GEMM kernels: a fused product never
	 * goes to the host GEMM */
	kiln_cpu_target own = *t;
	own.host_gemm = false;
	KILN_TRY(kiln_lower_linalg(&view, &own, c, d));
	if (strncmp(c->fn, "kk_gemm_f32", 12) && strncmp(c->fn, "kk_conv_f32", 12) &&
	    strncmp(c->fn, "kk_conv_dw_f32", 15) && strncmp(c->fn, "kk_conv_nchwc_f32", 18))
		return kiln_diag_error(d, KILN_ERR_UNSUPPORTED, n, "%s has no fused epilogue", c->fn);
	/* slots: the product's inputs -> the fusion's, then output and scratch */
	static const int fields[] = {KK_LA_T_A, KK_LA_T_B, KK_LA_T_C, KK_LA_T_BIAS, KK_LA_T_Y,
	                             KK_LA_T_SCRATCH};
	for (size_t f = 0; f < sizeof fields / sizeof *fields; f++) {
		int64_t s = c->ip[fields[f]];
		if (s < 0)
			continue;
		if (s < p->n_inputs)
			c->ip[fields[f]] = map[s];
		else
			c->ip[fields[f]] = s - p->n_inputs + n->n_inputs;
	}
	const void *repl[3] = {0};
	int64_t repl_bytes[3] = {0};
	for (int j = 0; j < p->n_inputs; j++) {
		repl[j] = c->repl[j];
		repl_bytes[j] = c->repl_bytes[j];
		c->repl[j] = NULL;
		c->repl_bytes[j] = 0;
	}
	for (int j = 0; j < p->n_inputs; j++)
		if (repl[j]) {
			c->repl[map[j]] = repl[j];
			c->repl_bytes[map[j]] = repl_bytes[j];
		}
	if (res)
		c->ip[KK_LA_T_RES] = body_slot(b, res);
	if (bias && p->op == KILN_OP_CONV) {
		c->ip[KK_LA_T_BIAS] = body_slot(b, bias); /* one value per output channel */
	} else if (bias) {
		c->ip[KK_LA_T_C] = body_slot(b, bias); /* Y += 1 * C[j], every row */
		c->ip[KK_LA_C_RS] = 0;
		c->ip[KK_LA_C_CS] = 1;
		c->fp[KK_LA_FP_BETA] = 1.0;
	}
	if (act && act->op == KILN_OP_RELU) {
		c->ip[KK_LA_ACT] = KK_LA_ACT_RELU;
	} else if (act && act->op == KILN_OP_GELU) {
		const char *approx = kiln_node_string(act, "approximate", "none");
		if (strcmp(approx, "none") && strcmp(approx, "tanh"))
			return kiln_diag_error(d, KILN_ERR_UNSUPPORTED, n, "Gelu approximate '%s'", approx);
		c->ip[KK_LA_ACT] = strcmp(approx, "tanh") ? KK_LA_ACT_GELU : KK_LA_ACT_GELU_TANH;
	} else if (act) {
		c->ip[KK_LA_ACT] = KK_LA_ACT_CLIP;
		c->fp[KK_LA_FP_LO] = clip_bound(act, 1, -INFINITY);
		c->fp[KK_LA_FP_HI] = clip_bound(act, 2, INFINITY);
	}
	return KILN_OK;
}
