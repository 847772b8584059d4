/* interp.h — the reference interpreter's one internal header.
 *
 * Consumes: a verified graph. Produces: the values of its outputs.
 * Plain, obviously correct kernels: this is the numerical oracle every
 * pass, backend and quantisation scheme is checked against.
 *
 *   interp.c      sessions (kiln_interp_*), dispatch, node evaluation for
 *                 the importer's folding (kiln_import_onnx)
 *   tensor.c      element access by dtype, strides, broadcast offsets
 *   k_conv.c      Conv, ConvTranspose
 *   k_pool.c      MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool
 *   k_matmul.c    Gemm, MatMul (OpenBLAS sgemm for f32)
 *   k_norm.c      BatchNormalization, LayerNormalization, Softmax, LogSoftmax
 *   k_reduce.c    ReduceMean/Sum/Max/Min
 *   k_resize.c    Resize
 *   k_elementwise.c  unary, binary, variadic, compare, Where, Cast, ...
 *   k_movement.c  Reshape, Transpose, Concat, Split, Slice, Gather, Pad, ...
 *   k_quant.c     QuantizeLinear, DequantizeLinear
 *   k_nchwc.c     ReorderToNCHWc, ReorderFromNCHWc, ConvNCHWc (blocked layout)
 */
#ifndef KILN_INTERP_H
#define KILN_INTERP_H

#include "ir.h"

/* A kernel computes node n. in[i] is node input i (data NULL when the optional
 * input is omitted); out[i] has its type from the node's output value and its
 * data allocated (contents unspecified). Kernels check what shape inference
 * cannot (e.g. index ranges) and report through d, naming the node. */
typedef kiln_status (*kiln_kernel_fn)(const kiln_node *n, const kiln_tensor *in,
                                      kiln_tensor *out, kiln_diag *d);

#define KILN_OP(E, NAME, IN_MIN, IN_MAX, OUT_MIN, OUT_MAX, FLAGS, SHAPE, ATTRS) \
	kiln_status kiln_interp_##E(const kiln_node *n, const kiln_tensor *in,  \
	                            kiln_tensor *out, kiln_diag *d);
#include "ops.def"
#undef KILN_OP

/* Evaluates one node whose inputs are all constants (data in the values).
 * out_data[i] receives output i (allocated by the caller for its type). */
kiln_status kiln_interp_eval_node(const kiln_node *n, void **out_data, kiln_diag *d);

/* ---- tensor.c ---- */

int64_t kiln_tensor_numel(const kiln_tensor *t);
/* Element i (flat, C order) of any dtype, as double / int64. */
double kiln_tensor_get_f64(const kiln_tensor *t, int64_t i);
int64_t kiln_tensor_get_i64(const kiln_tensor *t, int64_t i);
/* Stores v into element i, converting to t's dtype (ints truncate toward zero
 * like C casts; bool is v != 0). */
void kiln_tensor_set_f64(kiln_tensor *t, int64_t i, double v);
void kiln_tensor_set_i64(kiln_tensor *t, int64_t i, int64_t v);
/* t's elements converted to double / float, malloc'd (caller frees; at least
 * one element is allocated so an empty tensor still gives non-NULL).
 * NULL on OOM. For the generic (non-f32) kernel paths. */
double *kiln_load_f64(const kiln_tensor *t);
float *kiln_load_f32(const kiln_tensor *t);
/* Stores numel(t) values into t, converting to its dtype. */
void kiln_store_f64(kiln_tensor *t, const double *v);
/* C-order strides (in elements) of t's shape. */
void kiln_strides(const kiln_type *t, int64_t *strides);
/* For an output of shape `out`, the flat offset into `in` (broadcast to out:
 * in's dims are right-aligned; size-1 dims repeat) of each output element.
 * offsets has kiln_type_numel(out) entries, malloc'd; caller frees.
 * Returns NULL on OOM. */
int64_t *kiln_broadcast_offsets(const kiln_type *in, const kiln_type *out);

#endif
