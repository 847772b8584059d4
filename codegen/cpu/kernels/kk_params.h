/* kk_params.h — parameter layouts shared by the lowering (compiler side,
 * codegen/cpu/lower_*.c) and the kernels (codegen/cpu/kernels/kk_*.c).
 * One section per family, each owned by that family's files. An enum names
 * the index of each integer (ip[]) or float (fp[]) parameter; variable-length
 * tails (dims, strides) follow the fixed part and are described beside it. */
#ifndef KK_PARAMS_H
#define KK_PARAMS_H

#include "kk_params_linalg.h"
#include "kk_params_elementwise.h"
#include "kk_params_reduce.h"
#include "kk_params_movement.h"
#include "kk_params_attention.h"
#include "kk_params_nchwc.h"

#endif
