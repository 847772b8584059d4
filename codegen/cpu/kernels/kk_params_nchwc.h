/* kk_params_nchwc.h — the blocked channel layout (NCHWc) and the parameter
 * layouts of the kernels in kk_nchwc.c (see kk_params.h).
 *
 * A blocked tensor holds an NCHW tensor [N, C, H, W] as
 * [N, cdiv(C, 16), H, W, 16]: channel c of pixel (h, w) of image n at
 *   (((n*CB + c/16)*H + h)*W + w)*16 + c%16        (CB = cdiv(C, 16)).
 * Sixteen channels of a pixel are one 64-byte line, whatever the vector
 * width. The lanes past C in the last block are padding: kk_to_nchwc_f32
 * writes them zero, and a consumer never lets them reach a real channel. */
#ifndef KK_PARAMS_NCHWC_H
#define KK_PARAMS_NCHWC_H

#define KK_NCHWC_BLOCK 16

/* kk_to_nchwc_f32 (NCHW -> blocked) and kk_from_nchwc_f32 (blocked ->
 * NCHW): t[KK_NB_T_X] in, t[KK_NB_T_Y] out, HW = the spatial size. */
enum { KK_NB_N, KK_NB_C, KK_NB_HW, KK_NB_T_X, KK_NB_T_Y, KK_NB_COUNT };

/* kk_conv_nchwc_f32 takes the linalg layout (kk_params_linalg.h): DTYPE F32,
 * CONV_N/C/M/GROUP (logical channel counts; GROUP is 1, or C == M for a
 * depthwise convolution), the 2-D geometry in IN/OUT/KER/STRIDE/DIL/PAD
 * (element 0 of each is the unused leading dim: size 1, stride 1), slots
 * T_A (X, blocked), T_B (W packed as below), T_BIAS (plain, M floats, or
 * -1), T_Y (blocked), T_RES (Y's shape, or -1), and the epilogue ACT with
 * FP_LO/FP_HI: Y = act(conv + bias + res), padding lanes included (their
 * conv and bias are 0). Other fields are 0 or -1. */

/* Packed weights of an ONNX Conv weight W[M, C/group, kh, kw] (ks = kh*kw
 * taps, tap t = i*kw + j), lane l of output block mb:
 *   group 1:   [cdiv(M,16)][ks][C][16], (mb, t, c, l) = W[mb*16 + l, c, t]
 *   depthwise: [cdiv(C,16)][ks][16],    (mb, t, l)    = W[mb*16 + l, 0, t]
 * Lanes past M are zero. */
static inline int64_t kk_nchwc_packed_floats(int64_t m, int64_t c, int64_t group, int64_t ks)
{
	int64_t mb = (m + KK_NCHWC_BLOCK - 1) / KK_NCHWC_BLOCK;
	return group == 1 ? mb * ks * c * KK_NCHWC_BLOCK : mb * ks * KK_NCHWC_BLOCK;
}

static inline void kk_nchwc_pack(const float *w, int64_t m, int64_t c, int64_t group,
                                 int64_t ks, float *dst)
{
	int64_t mb = (m + KK_NCHWC_BLOCK - 1) / KK_NCHWC_BLOCK, cg = group == 1 ? c : 1;
	for (int64_t b = 0; b < mb; b++)
		for (int64_t t = 0; t < ks; t++)
			for (int64_t ci = 0; ci < cg; ci++)
				for (int64_t l = 0; l < KK_NCHWC_BLOCK; l++) {
					int64_t o = b * KK_NCHWC_BLOCK + l;
					*dst++ = o < m ? w[(o * cg + ci) * ks + t] : 0.0f;
				}
}

#endif
