/* lower_linalg.c — lowering of Gemm, MatMul, Conv and ConvTranspose to the
 * kk_linalg kernels (layout in kernels/kk_params_linalg.h).
 *
 * f32 becomes one GEMM description (sizes, operand strides, batch dims,
 * cache blocks, epilogue) for kk_gemm_f32, or kk_conv_f32 for a Conv that
 * needs im2col (it first rewrites the input as phase planes in arena
 * scratch); constant operands (weights) are packed here into the
 * micro-kernel's panel layout and replace the input (c->repl), so the
 * kernel never packs them. Depthwise Conv and ConvTranspose have their own
 * kernels; other dtypes go to the generic kernels. */
#include "cpu.h"
#include "kk_params_linalg.h"

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
	c->ip[KK_LA_T_BIAS] = c->ip[KK_LA_T_Y] = c->ip[KK_LA_T_SCRATCH] = -1;
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

/* Per-thread packing buffers of kk_gemm_f32 (must match gemm_task; B packed
 * from a Conv's phase planes may overrun its block by a vector). */
static int64_t la_thread_scratch(const kiln_kcall *c, int vl)
{
	int64_t f = 0;
	if (c->ip[KK_LA_A_MODE] != KK_LA_OP_PACKED)
		f += round_up(c->ip[KK_LA_MC], KK_GEMM_MR(vl)) * c->ip[KK_LA_KC];
	if (c->ip[KK_LA_B_MODE] != KK_LA_OP_PACKED)
		f += c->ip[KK_LA_KC] * c->ip[KK_LA_NC] + vl;
	return f * (int64_t)sizeof(float);
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

/* ---- Gemm ---------------------------------------------------------------- */

static kiln_status lower_gemm(const kiln_node *n, const kiln_cpu_target *t, kiln_kcall *c,
                              kiln_diag *d)
{
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
	const kiln_value *av = n->inputs[0], *bv = n->inputs[1];
	const kiln_type *at = &av->type, *bt = &bv->type, *yt = &n->outputs[0]->type;
	int dt = la_dtype(yt->dtype);
	if (dt < 0)
		return kiln_diag_error(d, KILN_ERR_UNSUPPORTED, n, "dtype %s is not supported",
		                       kiln_dtype_name(yt->dtype));
	KILN_ENSURE(d, at->rank >= 1 && bt->rank >= 1, KILN_ERR_SHAPE, n, "MatMul of a scalar");
	int64_t m = at->rank == 1 ? 1 : at->dims[at->rank - 2], k = at->dims[at->rank - 1];
	int64_t kb = bt->rank == 1 ? bt->dims[0] : bt->dims[bt->rank - 2];
	int64_t nn = bt->rank == 1 ? 1 : bt->dims[bt->rank - 1];
	KILN_ENSURE(d, k == kb, KILN_ERR_SHAPE, n, "inner dims differ: %lld vs %lld", (long long)k,
	            (long long)kb);
	kiln_type ab = batch_type(at), bb = batch_type(bt), yb;
	KILN_ENSURE(d, kiln_broadcast(&ab, &bb, &yb), KILN_ERR_SHAPE, n,
	            "batch dims do not broadcast");
	KILN_ENSURE(d, kiln_type_numel(yt) == kiln_type_numel(&yb) * m * nn, KILN_ERR_SHAPE, n,
	            "output has %lld elements, expected %lld", (long long)kiln_type_numel(yt),
	            (long long)(kiln_type_numel(&yb) * m * nn));
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

static kiln_status lower_conv(const kiln_node *n, const kiln_cpu_target *t, kiln_kcall *c,
                              kiln_diag *d)
{
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
		/* per thread: tap offsets, then one channel's phase planes */
		c->fn = "kk_conv_dw_f32";
		c->thread_scratch_bytes = g.ks * (int64_t)sizeof(int64_t) +
		                          (chan + t->vl) * (int64_t)sizeof(float);
		return KILN_OK;
	}
	/* Per (image, group): Y[mg, os] = W[mg, cg*ks] * im2col(X)[cg*ks, os]. */
	int64_t k = g.cg * g.ks;
	c->ip[KK_LA_M] = g.mg;
	c->ip[KK_LA_N] = g.os;
	c->ip[KK_LA_K] = k;
	c->ip[KK_LA_A_RS] = k;
	c->ip[KK_LA_A_CS] = 1;
	c->ip[KK_LA_Y_RS] = g.os;
	bool direct = g.ks == 1 && g.is == g.os;
	for (int a = 0; a < 3; a++)
		direct = direct && g.s[a] == 1 && g.pb[a] == 0;
	c->ip[KK_LA_B_MODE] = direct ? KK_LA_OP_STRIDED : KK_LA_OP_IM2COL;
	c->ip[KK_LA_B_RS] = g.is;
	c->ip[KK_LA_B_CS] = 1;
	la_blocks(c, t->vl);
	const float *wc = const_f32(n->inputs[1]);
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

kiln_status kiln_lower_linalg(const kiln_node *n, const kiln_cpu_target *t, kiln_kcall *c,
                              kiln_diag *d)
{
	switch (n->op) {
	case KILN_OP_GEMM: return lower_gemm(n, t, c, d);
	case KILN_OP_MATMUL: return lower_matmul(n, t, c, d);
	case KILN_OP_CONV: return lower_conv(n, t, c, d);
	case KILN_OP_CONV_TRANSPOSE: return lower_conv_transpose(n, t, c, d);
	default:
		return kiln_diag_error(d, KILN_ERR_INTERNAL, n, "%s is not a linalg op",
		                       kiln_op_name(n->op));
	}
}
