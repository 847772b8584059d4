/* kk_ewp.h — the elementwise program's instruction interpreter
 * (kk_elementwise.c), for the other kernels that run such programs: the
 * reduction fusions of kk_reduce.c run their prologue and epilogue with it.
 * Programs, registers and instructions: kk_params_elementwise.h. */
#ifndef KK_EWP_H
#define KK_EWP_H

#include "kk.h"

/* One instruction, op (KK_EW_* of f32 unary or binary kind, or KK_EW_COPY),
 * over nv vectors: d[j] = op(a[j], b[j], c[j]) as kk_ew_program_f32 computes
 * it. b and c may be NULL where op takes fewer operands. one: bit f set when
 * operand f (a, b, c) holds val[f] throughout (a constant, a broadcast
 * input), so it is read from a vector register. d may be one of the
 * sources. */
void kk_ewp_exec_f32(int op, float *d, const float *a, const float *b, const float *c, int one,
                     const float *val, int64_t nv);

#endif
