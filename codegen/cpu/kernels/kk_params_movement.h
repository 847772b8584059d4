/* kk_params_movement.h — parameter layouts for kk_movement.c (see kk_params.h).
 *
 * Tensor references inside ip are indices into the kernel's t[] (inputs in
 * node order, then outputs). Offsets and strides are in elements unless the
 * name says bytes. Movement kernels are dtype-generic by element size; the
 * few that compute (Resize, Range, Quantize/DequantizeLinear) take dtype codes
 * KK_DT_* (kk_dtype.h), which are kiln_dtype's. */
#ifndef KK_PARAMS_MOVEMENT_H
#define KK_PARAMS_MOVEMENT_H

/* Most dims a strided view may have: Tile views each axis as two. */
#define KK_MV_MAX_RANK 16

/* kk_copy: t[SRC] -> t[DST], BYTES bytes (Flatten, Reshape, Squeeze,
 * Unsqueeze, Identity, Dropout). MASK >= 0: t[MASK] gets MASK_BYTES bytes
 * of 1 (Dropout's all-true mask). */
enum {
	KK_COPY_BYTES,
	KK_COPY_SRC,
	KK_COPY_DST,
	KK_COPY_MASK,
	KK_COPY_MASK_BYTES,
	KK_COPY_N_IP
};

/* kk_strided_copy: a dense C-order walk of dims[RANK] over t[0], element
 * strides str[RANK] (zero: broadcast, negative: reversed), starting at
 * element BASE, written densely to t[DST] (Transpose, Slice, Expand, Tile).
 * Tail: dims[RANK], then str[RANK]. TILE >= 0 names an axis < RANK-1 with
 * stride 1: the kernel then transposes (TILE, RANK-1) planes in blocks. */
enum {
	KK_STRIDED_ESZ,
	KK_STRIDED_DST,
	KK_STRIDED_BASE,
	KK_STRIDED_RANK,
	KK_STRIDED_TILE,
	KK_STRIDED_N_IP /* dims, strides follow */
};

/* kk_concat / kk_split: the joined tensor t[JOINED] is ROWS rows of
 * ROW_BYTES bytes; each row is N pieces, piece k being BLOCK[k] bytes of
 * row r of tensor t[FIRST + k]. Concat copies the pieces into the joined
 * tensor, Split the other way. Tail: BLOCK[N]. */
enum {
	KK_CAT_JOINED,
	KK_CAT_FIRST,
	KK_CAT_N,
	KK_CAT_ROWS,
	KK_CAT_ROW_BYTES,
	KK_CAT_N_IP /* block bytes follow */
};

/* kk_gather: t[0] viewed as [OUTER, DIM, BLOCK bytes]; indices t[1]
 * (IDX_ESZ 4: i32, 8: i64) of NIDX elements; output t[2] is
 * [OUTER, NIDX, BLOCK bytes]. A negative index counts from the end; one
 * still out of range is clamped to [0, DIM-1]. ESZ: element size. */
enum {
	KK_GATHER_OUTER,
	KK_GATHER_DIM,
	KK_GATHER_BLOCK,
	KK_GATHER_NIDX,
	KK_GATHER_IDX_ESZ,
	KK_GATHER_ESZ,
	KK_GATHER_N_IP
};

/* kk_pad: output dims[RANK] (RANK >= 1) of ESZ-byte elements to t[DST];
 * input t[0]. MAP_T: the tensor holding the per-axis maps (a blob that
 * replaces the pads input): for axis k, dims[k] int64 entries from element
 * map_off[k], each the input element offset of that output coordinate or
 * -1 (the constant). Output positions [RUN_BEGIN, RUN_BEGIN + RUN_LEN) of
 * the last axis map to consecutive input elements (copied as one run).
 * CVAL_T: the constant_value tensor, or -1 for zero.
 * Tail: dims[RANK], then map_off[RANK]. */
enum {
	KK_PAD_ESZ,
	KK_PAD_RANK,
	KK_PAD_DST,
	KK_PAD_MAP_T,
	KK_PAD_CVAL_T,
	KK_PAD_RUN_BEGIN,
	KK_PAD_RUN_LEN,
	KK_PAD_N_IP /* dims, map offsets follow */
};

/* kk_resize_nearest / kk_resize_f32 / kk_resize_any: separable per-axis taps precomputed by the lowering in a blob
 * t[BLOB_T] (replacing the constant scales or sizes input):
 *   int64  off[]  input element offset of each tap (index * input stride)
 *   double w[]    at byte W_BYTES: tap weights
 *   float  wf[]   at byte WF_BYTES: the same weights in f32
 *   uint8  ex[]   at byte EX_BYTES: 1 where a coordinate extrapolates
 * Axis a has taps[a] taps per output index; output index j's taps start at
 * element tap_off[a] + j * taps[a] of off/w/wf; its flag is ex[ex_off[a] + j].
 * _nearest: one tap per axis (a weight-0 tap gives 0), copies ESZ-byte
 * elements; _f32: f32 weighted sums; _any: any dtype DT through double
 * (integers round half to even and saturate). EXTRAP_BITS: the
 * extrapolation value's bits in the output dtype (_nearest); fp[0]: the value.
 * COMBOS: most tap combinations over the axes before the last (sizes the
 * per-thread scratch, COMBOS * 24 bytes).
 * Tail: dims[RANK], taps[RANK], tap_off[RANK], ex_off[RANK]. */
enum {
	KK_RS_DT,
	KK_RS_ESZ,
	KK_RS_RANK,
	KK_RS_DST,
	KK_RS_BLOB_T,
	KK_RS_W_BYTES,
	KK_RS_WF_BYTES,
	KK_RS_EX_BYTES,
	KK_RS_EXTRAP_BITS,
	KK_RS_COMBOS,
	KK_RS_N_IP /* dims, taps, tap offsets, flag offsets follow */
};
enum { KK_RS_FP_EXTRAP, KK_RS_N_FP };
enum { KK_RS_NEAREST, KK_RS_F32, KK_RS_ANY }; /* which inner loop (kernel side) */

/* kk_fill: COUNT elements of ESZ bytes, each the low ESZ bytes of BITS, to
 * t[DST] (ConstantOfShape). */
enum { KK_FILL_ESZ, KK_FILL_COUNT, KK_FILL_BITS, KK_FILL_DST, KK_FILL_N_IP };

/* kk_const_i64: COUNT int64 words (the tail) to t[DST] (Shape). */
enum { KK_CONST_COUNT, KK_CONST_DST, KK_CONST_N_IP /* words follow */ };

/* kk_range: COUNT elements of dtype DT to t[DST]; element i is
 * START + i * DELTA, in double for float dtypes (fp[START], fp[DELTA]) and
 * wrapping int64 for integer ones (ip START_I, DELTA_I). */
enum { KK_RANGE_DT, KK_RANGE_COUNT, KK_RANGE_DST, KK_RANGE_START_I, KK_RANGE_DELTA_I,
       KK_RANGE_N_IP };
enum { KK_RANGE_FP_START, KK_RANGE_FP_DELTA, KK_RANGE_N_FP };

/* kk_quantize / kk_dequantize: x t[0], scale t[1], zero point t[2] (ZDT
 * KK_DT_NONE when omitted), y t[DST]; COUNT elements. x is [outer, DIM,
 * INNER]; element (o, c, i) uses scale/zero-point element
 *   MODE 0 (tensor): 0;  1 (axis): c;  2 (blocked): (o*SDIM + c/BLOCK)*INNER + i.
 * Quantize: y = saturate(rint(f32(x) / f32(scale)) + zp), ties to even, NaN
 * to the zero point. Dequantize: y = (f32(x) - f32(zp)) * f32(scale). */
enum {
	KK_Q_MODE,
	KK_Q_COUNT,
	KK_Q_DIM,
	KK_Q_INNER,
	KK_Q_SDIM,
	KK_Q_BLOCK,
	KK_Q_XDT,
	KK_Q_SDT,
	KK_Q_ZDT,
	KK_Q_YDT,
	KK_Q_DST,
	KK_Q_N_IP
};
enum { KK_Q_TENSOR, KK_Q_AXIS, KK_Q_BLOCKED };

#endif
