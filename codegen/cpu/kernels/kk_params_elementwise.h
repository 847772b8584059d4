/* kk_params_elementwise.h — parameter layouts for kk_elementwise.c (see kk_params.h).
 *
 * Every elementwise kernel takes one layout. The lowering computes the output
 * dims and, for each walked input k (t[0..nin)), its element strides over the
 * output dims (0 where it broadcasts), then merges adjacent dims that are
 * contiguous for every operand:
 *
 *   ip[KK_EW_OP]      the operation, KK_EW_*
 *   ip[KK_EW_NIN]     walked inputs nin (Clip: 1; its bounds are t[1], t[2])
 *   ip[KK_EW_OUT]     index of the output in t (the node's input count)
 *   ip[KK_EW_DT_OUT]  output dtype, KK_DT_* (kk_dtype.h)
 *   ip[KK_EW_RANK]    rank r >= 1 after merging
 *   ip[KK_EW_NUMEL]   output elements
 *   ip[KK_EW_TAIL...] dtype of each walked input [nin], dims [r],
 *                     then strides [nin][r] (input-major)
 *   fp[KK_EW_ALPHA], fp[KK_EW_BETA]: LeakyRelu alpha, HardSigmoid alpha/beta
 *
 * The output is dense; an input's innermost stride is 0 or 1. */
#ifndef KK_PARAMS_ELEMENTWISE_H
#define KK_PARAMS_ELEMENTWISE_H

enum {
	KK_EW_OP,
	KK_EW_NIN,
	KK_EW_OUT,
	KK_EW_DT_OUT,
	KK_EW_RANK,
	KK_EW_NUMEL,
	KK_EW_TAIL
};

enum { KK_EW_ALPHA, KK_EW_BETA, KK_EW_N_FP };

/* ip[KK_EW_OP]. Unary: kk_ew_unary_f32 (f32), kk_ew_unary (other dtypes). */
enum {
	KK_EW_RELU,
	KK_EW_LEAKY_RELU,
	KK_EW_SIGMOID,
	KK_EW_TANH,
	KK_EW_CLIP,
	KK_EW_HARD_SIGMOID,
	KK_EW_HARD_SWISH,
	KK_EW_GELU,
	KK_EW_GELU_TANH,
	KK_EW_ERF,
	KK_EW_SQRT,
	KK_EW_EXP,
	KK_EW_LOG,
	KK_EW_NEG,
	KK_EW_ABS,
	KK_EW_RECIPROCAL,
	KK_EW_NOT,
	/* Binary and variadic: kk_ew_binary_f32 (all f32), kk_ew_binary. */
	KK_EW_ADD,
	KK_EW_SUB,
	KK_EW_MUL,
	KK_EW_DIV,
	KK_EW_POW,
	KK_EW_PRELU,
	KK_EW_MIN,
	KK_EW_MAX,
	/* kk_ew_compare (bool output). */
	KK_EW_EQUAL,
	KK_EW_LESS,
	KK_EW_GREATER,
	/* kk_ew_where, kk_ew_cast. */
	KK_EW_WHERE,
	KK_EW_CAST,
	/* kk_ew_program_f32 only: y = x (Identity, Min/Max of one input). */
	KK_EW_COPY
};

#define KK_EW_MAX_RANK 8
#define KK_EW_MAX_IN 256
/* Below this many output elements a kernel runs on the calling thread. */
#define KK_EW_PARALLEL_MIN 65536
/* Elements per parallel work item (a multiple of every KK_VL). */
#define KK_EW_CHUNK 8192

/* kk_ew_program_f32: a loop fusion (a small elementwise program) as one
 * pass over the output. Every node input t[0..nin) is walked, as in the
 * layout above, over the one output shape; the outputs t[nin..nin+nout)
 * are dense and all have that shape. Values live in registers: 0..nin-1
 * the inputs, then nconst constants (fp[0..nconst)), then temporaries, nreg
 * in all. Each instruction is KK_EWP_INSTR_SIZE ints: an op (KK_EW_* of
 * f32 unary or binary kind, or KK_EW_COPY), the destination register (a
 * temporary) and up to three source registers (-1 when unused):
 *
 *   unary ops, Copy          x
 *   Add Sub Mul Div Pow Min Max PRelu   a, b
 *   LeakyRelu                x, alpha
 *   HardSigmoid              x, alpha, beta
 *   Clip                     x, lo, hi
 *
 *   ip[KK_EWP_NIN]     inputs nin
 *   ip[KK_EWP_NOUT]    outputs nout
 *   ip[KK_EWP_RANK]    rank r >= 1 after merging
 *   ip[KK_EWP_NUMEL]   elements of each output
 *   ip[KK_EWP_NREG]    registers nreg <= KK_EWP_MAX_REG
 *   ip[KK_EWP_NCONST]  constants
 *   ip[KK_EWP_NINSTR]  instructions
 *   ip[KK_EWP_TAIL...] dims [r], strides [nin][r] (input-major), the
 *                      period of each input [nin], the register of each
 *                      output [nout], then the instructions
 *                      [ninstr][KK_EWP_INSTR_SIZE]
 *   fp[0..nconst)      the constants
 *
 * An input with period q > 0 (q <= KK_EWP_BLOCK / 2) has inner stride 0 and
 * repeats its q elements from its offset along the inner dim, in step with
 * the output: element o of the output reads x[offset + o % q]. (A [S] mask
 * over [H,S,S] walks as one dim of H*S*S with period S, not H*S runs of S.)
 * Per-thread scratch: nreg * KK_EWP_BLOCK floats (the registers), then
 * 2 * KK_EWP_BLOCK floats for each input with a period (its repeats). */
enum {
	KK_EWP_NIN,
	KK_EWP_NOUT,
	KK_EWP_RANK,
	KK_EWP_NUMEL,
	KK_EWP_NREG,
	KK_EWP_NCONST,
	KK_EWP_NINSTR,
	KK_EWP_TAIL
};

enum { KK_EWP_I_OP, KK_EWP_I_DST, KK_EWP_I_A, KK_EWP_I_B, KK_EWP_I_C, KK_EWP_INSTR_SIZE };

/* Registers are blocks of KK_EWP_BLOCK floats (a multiple of every KK_VL):
 * each instruction runs over a whole block, so its dispatch is paid once
 * per block, not once per vector. The register file is each thread's
 * scratch: the lowering asks for nreg * KK_EWP_BLOCK floats. */
#define KK_EWP_MAX_REG 64
#define KK_EWP_BLOCK 512

#endif
