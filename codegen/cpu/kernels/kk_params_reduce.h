/* kk_params_reduce.h — parameter layouts for kk_reduce.c (see kk_params.h):
 * Reduce*, Global*Pool, Softmax/LogSoftmax, LayerNormalization,
 * BatchNormalization, MaxPool/AveragePool. */
#ifndef KK_PARAMS_REDUCE_H
#define KK_PARAMS_REDUCE_H

/* ---- kk_reduce_f32, kk_reduce_any: t = {X, axes?, Y} ----
 * The input is canonicalised at compile time: dims of size 1 dropped,
 * neighbouring dims that are both reduced or both kept merged. What is left
 * is NK kept groups and NR reduced groups, each (size, input stride), in
 * input order. Y is dense over the kept groups. The innermost group has
 * stride 1: it is reduced in mode ROW (each output reduces contiguous rows),
 * kept in mode COL (outputs come in contiguous runs, reduced across). */
enum {
	KK_RED_KIND,  /* KK_RED_MEAN.. */
	KK_RED_DT,    /* KK_DT_* of X and Y */
	KK_RED_MODE,  /* KK_RED_MODE_* */
	KK_RED_NOUT,  /* elements of Y */
	KK_RED_GROUP, /* elements reduced into each output */
	KK_RED_NK,
	KK_RED_NR,
	KK_RED_Y,     /* index of Y in t (after the inputs) */
	KK_RED_GROUPS, /* NK x (size, stride) kept, then NR x (size, stride) reduced */
};
enum { KK_RED_MEAN, KK_RED_SUM, KK_RED_MAX, KK_RED_MIN };
enum {
	KK_RED_MODE_ROW,  /* innermost group reduced */
	KK_RED_MODE_COL,  /* innermost group kept (NR >= 1) */
	KK_RED_MODE_COPY, /* nothing to reduce: Y = X */
	KK_RED_MODE_FILL, /* empty reduction: Y = the kind's identity */
};

/* ---- kk_softmax_f32, kk_softmax_any: t = {X, Y} ----
 * Y[o, :, i] = softmax (or log-softmax) of X[o, :, i] over the middle dim. */
enum {
	KK_SMX_OUTER,
	KK_SMX_DIM,
	KK_SMX_INNER,
	KK_SMX_LOG, /* 1: LogSoftmax */
	KK_SMX_DT,  /* KK_DT_* of X and Y */
	KK_SMX_N_IP,
};

/* ---- kk_layer_norm_f32, kk_layer_norm_any: t = {X, Scale, B?, Y, Mean?,
 * InvStdDev?, scratch?} (B may also be present but NULL) ----
 * X is ROWS x DIM. Scale and B broadcast to the normalised dims (NORM_RANK
 * dims, then their broadcast strides: 0 on broadcast dims); a non-dense one is
 * expanded into the scratch (DIM elements each, Scale first, each part
 * rounded up to 64 bytes). Mean and InvStdDev have ROWS elements of STASH_DT. */
enum {
	KK_LN_ROWS,
	KK_LN_DIM,
	KK_LN_DT,        /* KK_DT_* of X, Scale, B, Y */
	KK_LN_STASH_DT,  /* KK_DT_* of Mean, InvStdDev */
	KK_LN_N_IN,      /* 2 or 3: whether B is an input */
	KK_LN_N_OUT,     /* 1..3: which of Y, Mean, InvStdDev are outputs */
	KK_LN_SCALE_DENSE,
	KK_LN_BIAS_DENSE,
	KK_LN_NORM_RANK,
	KK_LN_DIMS, /* NORM_RANK dims, NORM_RANK Scale strides, NORM_RANK B strides */
};
enum { KK_LN_FP_EPS };

/* ---- kk_batch_norm_f32, kk_batch_norm_any: t = {X, scale, B, mean, var, Y,
 * scratch} ----
 * X is N x C x INNER; the four parameters have C elements each, each of its
 * own float dtype. f32 scratch: 3 x C floats (shift, multiplier, bias). */
enum {
	KK_BN_N,
	KK_BN_C,
	KK_BN_INNER,
	KK_BN_DT,       /* KK_DT_* of X and Y */
	KK_BN_PARAM_DT, /* 4 entries: scale, B, mean, var */
	KK_BN_N_IP = KK_BN_PARAM_DT + 4,
};
enum { KK_BN_FP_EPS };

/* ---- kk_max_pool_f32, kk_avg_pool_f32, kk_pool_any: t = {X, Y, Indices?} ----
 * 1 to 3 spatial dims, padded in front to 3 (size 1, kernel 1, stride 1).
 * Geometry as kiln_window_resolve gives it. */
enum {
	KK_POOL_MAX, /* 1: MaxPool, 0: AveragePool */
	KK_POOL_DT,  /* KK_DT_* of X and Y */
	KK_POOL_NC,  /* batch x channels */
	KK_POOL_IN,  /* 3 each from here on */
	KK_POOL_OUT = KK_POOL_IN + 3,
	KK_POOL_K = KK_POOL_OUT + 3,
	KK_POOL_S = KK_POOL_K + 3,
	KK_POOL_DL = KK_POOL_S + 3,
	KK_POOL_PB = KK_POOL_DL + 3,
	KK_POOL_PE = KK_POOL_PB + 3,
	KK_POOL_INCLUDE_PAD = KK_POOL_PE + 3, /* AveragePool count_include_pad */
	KK_POOL_INDICES,   /* MaxPool: 1 when the Indices output is wanted */
	KK_POOL_COL_MAJOR, /* MaxPool storage_order */
	KK_POOL_N_IP,
};

/* ---- kk_reduce_fusion_f32: t = {the fusion's inputs, its outputs} ----
 * A reduction fusion: its root (Softmax, LogSoftmax or LayerNormalization)
 * runs over ROWS rows of LEN elements, the last axis of the fusion's shape.
 * Per row (per block of short rows), program A (the prologue) writes the
 * root's input into scratch (unless X names a fusion input), the root runs
 * over each row, and program B (the epilogue) reads the root's result. The
 * programs are kk_ew_program_f32's (instructions, registers: see
 * kk_params_elementwise.h), each with a register file of its own; a
 * program with no instructions is absent. Every output is dense with the
 * fusion's shape. */
enum {
	KK_RF_KIND,  /* KK_RF_SOFTMAX.. */
	KK_RF_NIN,   /* fusion inputs t[0..NIN) */
	KK_RF_NOUT,  /* fusion outputs t[NIN..NIN+NOUT) */
	KK_RF_ROWS,
	KK_RF_LEN,
	KK_RF_ORANK, /* outer dims: all but the last */
	KK_RF_X,     /* fusion input that is the root's input, or -1: program A's row */
	KK_RF_SCALE, /* LayerNorm: fusion inputs Scale and B, LEN dense floats each (B -1: none) */
	KK_RF_BIAS,
	KK_RF_Y,     /* fusion output that is the root's output, or -1 */
	KK_RF_TAIL,  /* outer dims [ORANK]; each fusion input's stride along the row
	                (0 or 1) [NIN], then its strides over the outer dims
	                [NIN][ORANK]; then program A, then program B (KK_RFP_*) */
};
enum { KK_RF_SOFTMAX, KK_RF_LOG_SOFTMAX, KK_RF_LAYER_NORM };

/* A program: NIN input registers, then NCONST constants (the next NCONST
 * of fp), then temporaries, NREG in all. */
enum {
	KK_RFP_NIN,
	KK_RFP_NOUT,
	KK_RFP_NREG,
	KK_RFP_NCONST,
	KK_RFP_NINSTR,
	KK_RFP_TAIL, /* each input register's source [NIN]: a fusion input, or -1:
	                the root's output row; each output [NOUT] as (register,
	                fusion output or -1: the root's input row); then the
	                instructions [NINSTR][KK_EWP_INSTR_SIZE] */
};

/* fp[KK_RF_FP_EPS]: LayerNorm epsilon; program A's constants follow, then
 * B's. Per-thread scratch: the row buffer (KK_RF_ROW_FLOATS(LEN) floats:
 * one row rounded up to KK_RF_ROW_ALIGN floats, or a block of rows when
 * rows are short), then A's and B's registers (KK_RF_BLOCK floats each).
 * Rows of at most KK_RF_BLOCK elements go several to a block, end to end
 * (the kernel's multi-row path); longer ones one at a time, in blocks. */
enum { KK_RF_FP_EPS, KK_RF_FP_CONSTS };
#define KK_RF_ROW_ALIGN 16
#define KK_RF_BLOCK 2048 /* a multiple of every KK_VL */
#define KK_RF_ROW_FLOATS(len)                                                            \
	((len) > KK_RF_BLOCK ? ((len) + KK_RF_ROW_ALIGN - 1) / KK_RF_ROW_ALIGN * KK_RF_ROW_ALIGN \
	                     : (int64_t)KK_RF_BLOCK)

#endif
