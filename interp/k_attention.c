/* k_attention.c — Attention (kiln's restriction of the ONNX opset-23 op:
 * 4-D Q [B,H,Sq,D], K [B,H,Skv,D], V [B,H,Skv,Dv], an optional additive f32
 * mask broadcasting to [B,H,Sq,Skv], f32 only):
 *
 *     Y = Softmax(scale * Q K^T + mask, last axis) V
 *
 * scale defaults to 1/sqrt(D). Scores, softmax and the product with V are in
 * double; the softmax is the Softmax kernel's (k_norm.c): the maximum is
 * subtracted, a NaN maximum propagates, and a row that is all -inf gives
 * NaN (exp(-inf) / 0), as Softmax of that row does. */
#include "interp.h"

#include <math.h>
#include <stdlib.h>

kiln_status kiln_interp_ATTENTION(const kiln_node *n, const kiln_tensor *in, kiln_tensor *out,
                                  kiln_diag *d)
{
	const kiln_type *qt = &in[0].type, *kt = &in[1].type, *vt = &in[2].type;
	const kiln_tensor *mask = n->n_inputs > 3 && in[3].data ? &in[3] : NULL;
	KILN_ENSURE(d, qt->dtype == KILN_DT_F32 && qt->rank == 4 && kt->rank == 4 && vt->rank == 4,
	            KILN_ERR_UNSUPPORTED, n, "Attention takes 4-D f32 Q, K and V");
	int64_t B = qt->dims[0], H = qt->dims[1], sq = qt->dims[2], dk = qt->dims[3];
	int64_t skv = kt->dims[2], dv = vt->dims[3];
	double scale = kiln_node_float(n, "scale", (float)(1.0 / sqrt((double)dk)));
	kiln_type st = {.dtype = KILN_DT_F32, .rank = 4, .dims = {B, H, sq, skv}};
	int64_t *moff = mask ? kiln_broadcast_offsets(&mask->type, &st) : NULL;
	double *s = malloc((size_t)(skv > 0 ? skv : 1) * sizeof *s);
	if (!s || (mask && !moff)) {
		free(s);
		free(moff);
		return kiln_diag_error(d, KILN_ERR_OOM, n, "out of memory");
	}
	const float *q = in[0].data, *k = in[1].data, *v = in[2].data;
	const float *m = mask ? mask->data : NULL;
	float *y = out[0].data;
	for (int64_t bh = 0; bh < B * H; bh++) {
		const float *kb = k + bh * skv * dk, *vb = v + bh * skv * dv;
		for (int64_t i = 0; i < sq; i++) {
			const float *qr = q + (bh * sq + i) * dk;
			double mx = -INFINITY, sum = 0.0;
			for (int64_t j = 0; j < skv; j++) {
				double dot = 0.0;
				for (int64_t c = 0; c < dk; c++)
					dot += (double)qr[c] * kb[j * dk + c];
				s[j] = scale * dot + (m ? m[moff[(bh * sq + i) * skv + j]] : 0.0);
				if (s[j] > mx || isnan(s[j]))
					mx = s[j];
			}
			if (isinf(mx) && mx < 0)
				mx = 0.0;
			for (int64_t j = 0; j < skv; j++)
				sum += (s[j] = exp(s[j] - mx));
			float *yr = y + (bh * sq + i) * dv;
			for (int64_t c = 0; c < dv; c++) {
				double acc = 0.0;
				for (int64_t j = 0; j < skv; j++)
					acc += s[j] / sum * vb[j * dv + c];
				yr[c] = (float)acc;
			}
		}
	}
	free(s);
	free(moff);
	return KILN_OK;
}
