/* k_nchwc.c — the blocked channel layout (NCHWc): ReorderToNCHWc,
 * ReorderFromNCHWc and ConvNCHWc.
 *
 * A blocked tensor [N, cdiv(C, 16), H, W, 16] holds channel c of pixel p of
 * image n at ((n*CB + c/16)*HW + p)*16 + c%16; the lanes past C are zero.
 * ConvNCHWc is defined as the Conv of the NCHW tensor its input holds, so
 * it runs as exactly that: unblock X, the Conv kernel of k_conv.c, block Y. */
#include "interp.h"

#include <stdlib.h>
#include <string.h>

enum { BLOCK = 16 };

/* x [N, C, HW] -> y [N, cdiv(C, 16), HW, 16], padding lanes zero */
static void block_f32(const float *x, float *y, int64_t n, int64_t c, int64_t hw)
{
	int64_t cb = (c + BLOCK - 1) / BLOCK;
	memset(y, 0, (size_t)(n * cb * hw * BLOCK) * sizeof *y);
	for (int64_t i = 0; i < n; i++)
		for (int64_t ch = 0; ch < c; ch++)
			for (int64_t p = 0; p < hw; p++)
				y[((i * cb + ch / BLOCK) * hw + p) * BLOCK + ch % BLOCK] =
					x[(i * c + ch) * hw + p];
}

/* y [N, C, HW] <- x [N, cdiv(C, 16), HW, 16] (padding lanes ignored) */
static void unblock_f32(const float *x, float *y, int64_t n, int64_t c, int64_t hw)
{
	int64_t cb = (c + BLOCK - 1) / BLOCK;
	for (int64_t i = 0; i < n; i++)
		for (int64_t ch = 0; ch < c; ch++)
			for (int64_t p = 0; p < hw; p++)
				y[(i * c + ch) * hw + p] =
					x[((i * cb + ch / BLOCK) * hw + p) * BLOCK + ch % BLOCK];
}

kiln_status kiln_interp_REORDER_TO_NCHWC(const kiln_node *n, const kiln_tensor *in,
                                         kiln_tensor *out, kiln_diag *d)
{
	const kiln_type *t = &in[0].type;
	KILN_ENSURE(d, t->dtype == KILN_DT_F32 && t->rank == 4, KILN_ERR_UNSUPPORTED, n,
	            "expects a rank-4 f32 input");
	block_f32(in[0].data, out[0].data, t->dims[0], t->dims[1], t->dims[2] * t->dims[3]);
	return KILN_OK;
}

kiln_status kiln_interp_REORDER_FROM_NCHWC(const kiln_node *n, const kiln_tensor *in,
                                           kiln_tensor *out, kiln_diag *d)
{
	const kiln_type *t = &out[0].type;
	KILN_ENSURE(d, t->dtype == KILN_DT_F32 && t->rank == 4 && in[0].type.rank == 5,
	            KILN_ERR_UNSUPPORTED, n, "expects a blocked f32 input and a rank-4 output");
	unblock_f32(in[0].data, out[0].data, t->dims[0], t->dims[1], t->dims[2] * t->dims[3]);
	return KILN_OK;
}

kiln_status kiln_interp_CONV_NCHWC(const kiln_node *n, const kiln_tensor *in, kiln_tensor *out,
                                   kiln_diag *d)
{
	const kiln_type *xb = &in[0].type, *yb = &out[0].type, *w = &in[1].type;
	KILN_ENSURE(d, xb->dtype == KILN_DT_F32 && xb->rank == 5 && yb->rank == 5 && w->rank == 4,
	            KILN_ERR_UNSUPPORTED, n, "expects blocked f32 input and output, rank-4 weights");
	int64_t c = kiln_node_int(n, "channels", 0), m = w->dims[0];
	KILN_ENSURE(d, c >= 1 && xb->dims[1] == (c + BLOCK - 1) / BLOCK &&
	                   yb->dims[1] == (m + BLOCK - 1) / BLOCK,
	            KILN_ERR_SHAPE, n, "channels %lld disagrees with the blocked shapes",
	            (long long)c);
	kiln_tensor args[3], y;
	memcpy(args, in, (size_t)(n->n_inputs < 3 ? n->n_inputs : 3) * sizeof *args);
	if (n->n_inputs < 3)
		args[2] = (kiln_tensor){.data = NULL};
	args[0].type = *xb;
	args[0].type.rank = 4;
	args[0].type.dims[1] = c;
	y.type = *yb;
	y.type.rank = 4;
	y.type.dims[1] = m;
	int64_t xhw = xb->dims[2] * xb->dims[3], yhw = yb->dims[2] * yb->dims[3];
	float *x = malloc((size_t)(xb->dims[0] * c * xhw + 1) * sizeof *x);
	float *yd = malloc((size_t)(yb->dims[0] * m * yhw + 1) * sizeof *yd);
	kiln_status s = KILN_OK;
	if (!x || !yd) {
		s = kiln_diag_error(d, KILN_ERR_OOM, n, "out of memory");
	} else {
		unblock_f32(in[0].data, x, xb->dims[0], c, xhw);
		args[0].data = x;
		y.data = yd;
		s = kiln_interp_CONV(n, args, &y, d);
		if (s == KILN_OK)
			block_f32(yd, out[0].data, yb->dims[0], m, yhw);
	}
	free(x);
	free(yd);
	return s;
}
