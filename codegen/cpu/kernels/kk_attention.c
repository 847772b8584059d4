/* kk_attention.c — kiln's Attention op in one kernel (f32):
 *
 *     Y[b,h] = softmax(scale * Q[b,h] K[b,h]^T + mask) V[b,h]
 *
 * A work item is (b, h, a block of query rows). The first item of a (b, h)
 * a task meets stages that head in its thread's scratch: K transposed to
 * [D][Skv] (rows padded to whole register tiles with zeros), so a score
 * row is built by broadcasting Q elements against vectors along Skv, and V
 * copied to rows padded likewise when Dv is not whole tiles. Then, per
 * tile of KK_ATT_RM query rows: the raw scores into the scratch rows; per
 * row scale, mask, maximum, exp and sum (the interpreter's softmax: the
 * maximum subtracted; a NaN or an all -inf row gives NaN); then the
 * product with V, vectors along Dv, scaled by 1/sum as it is stored. The
 * scores never leave the scratch (RM rows of Skv floats). */
#include "kk.h"
#include "kk_math.h"

#define AT_RM KK_ATT_RM(KK_VL)
#define AT_NV KK_ATT_NV
#define AT_W (KK_ATT_NV * KK_VL)

typedef struct at_args {
	const float *q, *k, *v, *m;
	float *y;
	int64_t h, sq, skv, d, dv, qb, nqb;
	int64_t mb, mh, mq, mk;
	int64_t skp, dvp; /* Skv and Dv rounded up to whole tiles */
	float scale;
} at_args;

/* Lanes below n set. */
static inline kk_vi at_lanes_below(int64_t n)
{
	kk_vi m;
	for (int i = 0; i < KK_VL; i++)
		m[i] = i < n ? -1 : 0;
	return m;
}

/* K[b,h] ([Skv][D]) into kt as [D][skp], the padding columns zero. */
static void at_stage_k(const at_args *a, const float *k, float *kt)
{
	for (int64_t c = 0; c < a->d; c++) {
		float *row = kt + c * a->skp;
		for (int64_t j = 0; j < a->skv; j++)
			row[j] = k[j * a->d + c];
		for (int64_t j = a->skv; j < a->skp; j++)
			row[j] = 0.0f;
	}
}

/* V[b,h] ([Skv][Dv]) into vs as [Skv][dvp], the padding columns zero. */
static void at_stage_v(const at_args *a, const float *v, float *vs)
{
	for (int64_t j = 0; j < a->skv; j++) {
		memcpy(vs + j * a->dvp, v + j * a->dv, (size_t)a->dv * sizeof(float));
		memset(vs + j * a->dvp + a->dv, 0, (size_t)(a->dvp - a->dv) * sizeof(float));
	}
}

/* s[r][0..skp) = q[r] . kt columns, for AT_RM rows (q[r] may repeat). */
static void at_scores(const at_args *a, const float *const *q, const float *kt, float *s)
{
	for (int64_t j0 = 0; j0 < a->skp; j0 += AT_W) {
		kk_vf acc[AT_RM][AT_NV] = {{{0}}};
		for (int64_t c = 0; c < a->d; c++) {
			const float *kp = kt + c * a->skp + j0;
			kk_vf kv[AT_NV];
			for (int v = 0; v < AT_NV; v++)
				kv[v] = kk_load(kp + v * KK_VL);
			for (int r = 0; r < AT_RM; r++) {
				kk_vf qv = kk_splat(q[r][c]);
				for (int v = 0; v < AT_NV; v++)
					acc[r][v] += qv * kv[v];
			}
		}
		for (int r = 0; r < AT_RM; r++)
			for (int v = 0; v < AT_NV; v++)
				kk_store(s + r * a->skp + j0 + v * KK_VL, acc[r][v]);
	}
}

/* Row s[0..skv) of raw scores becomes exp(scale * s + mask - max); returns
 * 1 / the sum of those. mrow: the mask at (b, h, i, 0), or NULL. */
static float at_softmax_row(const at_args *a, float *s, const float *mrow)
{
	int64_t n = a->skv, j;
	kk_vf sc = kk_splat(a->scale), mx = kk_splat(-KK_INFINITY);
	kk_vf madd = kk_splat(mrow && !a->mk ? mrow[0] : 0.0f);
	bool mvec = mrow && a->mk;
	for (j = 0; j + KK_VL <= n; j += KK_VL) {
		kk_vf x = kk_load(s + j) * sc + (mvec ? kk_load(mrow + j) : madd);
		kk_store(s + j, x);
		mx = kk_vmax(mx, x);
	}
	kk_vi tail = at_lanes_below(n - j);
	if (j < n) {
		kk_vf x = kk_load(s + j) * sc + (mvec ? kk_load_n(mrow + j, n - j) : madd);
		kk_store(s + j, x);
		mx = kk_vmax(mx, kk_select(tail, x, kk_splat(-KK_INFINITY)));
	}
	/* A NaN anywhere makes every output NaN, as the interpreter's max does:
	 * it reaches the sum below through exp. So does a row of -inf
	 * (exp(-inf - -inf)), where the interpreter divides 0 by 0. */
	kk_vf vm = kk_splat(kk_hmax(mx)), sum = {0};
	for (j = 0; j + KK_VL <= n; j += KK_VL) {
		kk_vf e = kk_exp(kk_load(s + j) - vm);
		kk_store(s + j, e);
		sum += e;
	}
	if (j < n) {
		kk_vf e = kk_select(tail, kk_exp(kk_load(s + j) - vm), kk_splat(0.0f));
		kk_store(s + j, e);
		sum += e;
	}
	return 1.0f / kk_hsum(sum);
}

/* y[r][0..dv) = inv[r] * sum_j p[r][j] vs[j][...] for rows r < nr (p[r]
 * may repeat past nr); vs rows are vstride apart, whole tiles wide. */
static void at_pv(const at_args *a, const float *const *p, const float *vs, int64_t vstride,
                  const float *inv, float *y, int nr)
{
	for (int64_t c0 = 0; c0 < a->dvp; c0 += AT_W) {
		kk_vf acc[AT_RM][AT_NV] = {{{0}}};
		for (int64_t j = 0; j < a->skv; j++) {
			const float *vp = vs + j * vstride + c0;
			kk_vf vv[AT_NV];
			for (int v = 0; v < AT_NV; v++)
				vv[v] = kk_load(vp + v * KK_VL);
			for (int r = 0; r < AT_RM; r++) {
				kk_vf pv = kk_splat(p[r][j]);
				for (int v = 0; v < AT_NV; v++)
					acc[r][v] += pv * vv[v];
			}
		}
		for (int r = 0; r < nr; r++) {
			float *yr = y + r * a->dv;
			kk_vf iv = kk_splat(inv[r]);
			for (int v = 0; v < AT_NV; v++) {
				int64_t col = c0 + v * KK_VL;
				if (col + KK_VL <= a->dv)
					kk_store(yr + col, acc[r][v] * iv);
				else if (col < a->dv)
					kk_store_n(yr + col, acc[r][v] * iv, a->dv - col);
			}
		}
	}
}

static void at_task(void *arg, int64_t begin, int64_t end, void *scratch)
{
	const at_args *a = arg;
	float *kt = scratch, *s = kt + a->d * a->skp, *vs = s + AT_RM * a->skp;
	bool stage_v = a->dv % AT_W != 0;
	int64_t staged = -1;
	for (int64_t it = begin; it < end; it++) {
		int64_t bh = it / a->nqb, i0 = it % a->nqb * a->qb;
		int64_t i1 = i0 + a->qb < a->sq ? i0 + a->qb : a->sq;
		const float *vb = a->v + bh * a->skv * a->dv;
		if (bh != staged) {
			at_stage_k(a, a->k + bh * a->skv * a->d, kt);
			if (stage_v)
				at_stage_v(a, vb, vs);
			staged = bh;
		}
		const float *mbh = a->m ? a->m + bh / a->h * a->mb + bh % a->h * a->mh : NULL;
		for (int64_t i = i0; i < i1; i += AT_RM) {
			int nr = i1 - i < AT_RM ? (int)(i1 - i) : AT_RM;
			const float *rows[AT_RM];
			float inv[AT_RM];
			for (int r = 0; r < AT_RM; r++)
				rows[r] = a->q + (bh * a->sq + i + (r < nr ? r : nr - 1)) * a->d;
			at_scores(a, rows, kt, s);
			for (int r = 0; r < nr; r++)
				inv[r] = at_softmax_row(a, s + r * a->skp, mbh ? mbh + (i + r) * a->mq : NULL);
			for (int r = 0; r < AT_RM; r++)
				rows[r] = s + (r < nr ? r : nr - 1) * a->skp;
			at_pv(a, rows, stage_v ? vs : vb, stage_v ? a->dvp : a->dv, inv,
			      a->y + (bh * a->sq + i) * a->dv, nr);
		}
	}
}

KK_KERNEL(kk_attention_f32)
{
	int mask = (int)ip[KK_ATT_MASK];
	at_args a = {
		.q = t[0], .k = t[1], .v = t[2], .m = mask ? t[3] : NULL, .y = t[ip[KK_ATT_Y]],
		.h = ip[KK_ATT_H], .sq = ip[KK_ATT_SQ], .skv = ip[KK_ATT_SKV], .d = ip[KK_ATT_D],
		.dv = ip[KK_ATT_DV], .qb = ip[KK_ATT_QB], .mb = ip[KK_ATT_MB], .mh = ip[KK_ATT_MH],
		.mq = ip[KK_ATT_MQ], .mk = ip[KK_ATT_MK], .scale = (float)fp[KK_ATT_SCALE],
	};
	int64_t bh = ip[KK_ATT_B] * a.h;
	if (a.skv == 0) { /* softmax over nothing: the interpreter's sum over nothing */
		memset(a.y, 0, (size_t)(bh * a.sq * a.dv) * sizeof(float));
		return;
	}
	a.skp = KK_ATT_ROUND(a.skv, KK_VL);
	a.dvp = KK_ATT_ROUND(a.dv, KK_VL);
	a.nqb = (a.sq + a.qb - 1) / a.qb;
	kk_parallel(h, bh * a.nqb, at_task, &a);
}
