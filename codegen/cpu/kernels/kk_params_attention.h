/* kk_params_attention.h — parameter layout of kk_attention.c (see
 * kk_params.h): kiln's Attention op. */
#ifndef KK_PARAMS_ATTENTION_H
#define KK_PARAMS_ATTENTION_H

/* ---- kk_attention_f32: t = {Q, K, V, mask, ..., Y}: the mask is t[3]
 * when KK_ATT_MASK, Y is t[KK_ATT_Y] (after the node's inputs) ----
 * Y[b,h,i,:] = softmax_j(scale * Q[b,h,i,:] . K[b,h,j,:] + M[b,h,i,j]) V[b,h,j,:]
 * with M[b,h,i,j] = mask[MB*b + MH*h + MQ*i + MK*j] (strides in elements,
 * 0 along broadcast dims; MK is 0 or 1). Work items are (b, h, block of QB
 * query rows). Per-thread scratch: KK_ATT_SCRATCH_FLOATS floats. */
enum {
	KK_ATT_B,
	KK_ATT_H,
	KK_ATT_SQ,
	KK_ATT_SKV,
	KK_ATT_D,
	KK_ATT_DV,
	KK_ATT_QB,   /* query rows per work item (>= 1) */
	KK_ATT_MASK, /* 1: t[3] is the mask */
	KK_ATT_Y,    /* index of Y in t */
	KK_ATT_MB,
	KK_ATT_MH,
	KK_ATT_MQ,
	KK_ATT_MK,
	KK_ATT_N_IP
};
enum { KK_ATT_SCALE, KK_ATT_N_FP };

/* Register tile of the kernel: KK_ATT_RM(vl) query rows by KK_ATT_NV
 * vectors of vl lanes along Skv (scores) or Dv (output): 16 accumulators
 * where there are 32 vector registers (AVX-512), 8 elsewhere. */
#define KK_ATT_RM(vl) ((vl) >= 16 ? 8 : 4)
#define KK_ATT_NV 2
/* n rounded up to whole tiles of vl-lane vectors. */
#define KK_ATT_ROUND(n, vl) (((n) + KK_ATT_NV * (vl) - 1) / (KK_ATT_NV * (vl)) * (KK_ATT_NV * (vl)))
/* K transposed [D][Skv rounded], the score rows [RM][Skv rounded], and V
 * copied to [Skv][Dv rounded] unless Dv is already whole tiles. */
#define KK_ATT_SCRATCH_FLOATS(skv, d, dv, vl)                                     \
	(((d) + KK_ATT_RM(vl)) * KK_ATT_ROUND(skv, vl) +                              \
	 ((dv) % (KK_ATT_NV * (vl)) ? (skv) * KK_ATT_ROUND(dv, vl) : 0))

#endif
