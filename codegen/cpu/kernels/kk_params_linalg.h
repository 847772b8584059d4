/* kk_params_linalg.h — parameter layouts for kk_linalg.c (see kk_params.h).
 *
 * Every linalg kernel takes the one layout below: a GEMM problem
 * Y[M,N] = epilogue(A[M,K] B[K,N]) repeated over batch dims, plus the
 * convolution geometry where the kernel needs it (im2col, depthwise,
 * ConvTranspose). Unused fields are 0. Tensor slots (KK_LA_T_*) index the
 * kernel's t[] and are -1 for an absent tensor. */
#ifndef KK_PARAMS_LINALG_H
#define KK_PARAMS_LINALG_H

/* Micro-kernel tile (MR rows x NR columns of C in registers) for a vector
 * width of vl f32 lanes; NR is always two vectors. Constant operands are
 * pre-packed by the compiler in this tile's panel layout:
 *   A (M x K): for each K block [k0, k0+kc): for each MR-row panel ip:
 *              kc x MR floats, element (i, p) at
 *              k0*Mpad + ip*kc*MR + (p-k0)*MR + i%MR   (Mpad = M rounded up to MR)
 *   B (K x N): the same with NR-column panels and Npad.
 * Padding rows/columns are zero. kc is KK_LA_KC (the last block may be
 * shorter). */
#define KK_GEMM_MR(vl) ((vl) == 16 ? 12 : 6)
#define KK_GEMM_NR(vl) ((vl) * 2)
/* Upper bounds for the cache blocks (the lowering balances the blocks). */
#define KK_GEMM_KC_MAX(vl) 256
#define KK_GEMM_MC_MAX(vl) ((vl) == 16 ? 144 : 120)
#define KK_GEMM_NC_MAX(vl) ((vl) == 16 ? 2048 : 1024)

enum {
	KK_LA_DTYPE,     /* KK_LA_DT_* of Y */
	KK_LA_KIND,      /* KK_LA_KIND_* (accumulation rules of the generic kernels) */
	KK_LA_M,
	KK_LA_N,
	KK_LA_K,
	KK_LA_MC,        /* cache blocks: rows of A, depth, columns of B;
	                  * kk_conv_dw_f32: MC = output rows per band, NC = 1 for
	                  * planes computed straight from the input (no copy) */
	KK_LA_KC,
	KK_LA_NC,
	KK_LA_A_MODE,    /* KK_LA_OP_*: STRIDED, PACKED, or IM2COL/IMPLICIT (with TRANS) */
	KK_LA_A_RS,      /* element (i, p) of A at i*A_RS + p*A_CS (STRIDED) */
	KK_LA_A_CS,
	KK_LA_B_MODE,    /* STRIDED, PACKED or IM2COL (B[p, j] = X[c, tap]); A_MODE
	                  * IM2COL is its transpose (A[i, p] = X[c, tap]) */
	KK_LA_B_RS,      /* element (p, j) of B at p*B_RS + j*B_CS (STRIDED) */
	KK_LA_B_CS,
	KK_LA_Y_RS,      /* element (i, j) of Y at i*Y_RS + j */
	KK_LA_C_RS,      /* element (i, j) of C at i*C_RS + j*C_CS (0: broadcast) */
	KK_LA_C_CS,
	KK_LA_ACT,       /* KK_LA_ACT_* applied last */
	KK_LA_T_A,       /* t[] slots */
	KK_LA_T_B,
	KK_LA_T_C,       /* Y += beta * C (Gemm) */
	KK_LA_T_BIAS,    /* Y += bias[i] per row (Conv) */
	KK_LA_T_Y,
	KK_LA_T_SCRATCH, /* arena scratch (ConvTranspose columns, Conv phase planes) */
	KK_LA_T_RES,     /* residual: Y's shape and layout (offsets as Y's in every
	                  * batch, group and image), added before the activation;
	                  * must not alias Y (Y holds partial sums over K blocks) */
	KK_LA_TRANS,     /* 1: Y holds the product transposed: element (i, j) of AB
	                  * at j*Y_RS + i, the bias indexed by j, no C (a Conv
	                  * with few output positions as im2col^T W^T: A is the
	                  * input (IM2COL), B the packed weights) */
	KK_LA_CONV_N,    /* convolution: batch, in/out channels, groups */
	KK_LA_CONV_C,
	KK_LA_CONV_M,
	KK_LA_CONV_GROUP,
	/* Spatial geometry padded to 3 dims (leading dims size 1, stride 1):
	 * 3 values each. */
	KK_LA_IN,
	KK_LA_OUT = KK_LA_IN + 3,
	KK_LA_KER = KK_LA_OUT + 3,
	KK_LA_STRIDE = KK_LA_KER + 3,
	KK_LA_DIL = KK_LA_STRIDE + 3,
	KK_LA_PAD = KK_LA_DIL + 3,       /* pads at the beginning */
	KK_LA_BATCH_RANK = KK_LA_PAD + 3,
	/* Tail: KK_LA_BATCH_RANK batch dims (outermost first), each as
	 * KK_LA_BD_COUNT values: size, then the element offset one step in it
	 * moves A, B, Y and the bias (0 for a broadcast operand). */
	KK_LA_BATCH,
	KK_LA_COUNT = KK_LA_BATCH
};

/* Convolutions read their input through phase planes. Axis a of the
 * zero-padded input, span = (out-1)*s + (k-1)*dl + 1 long, is split into
 * nph phases r (padded index u = i*s + r), each q = cdiv(span, s) long, so
 * that every kernel tap reads a stride-1 window of one plane: tap k reads
 * phase (k*dl) % s shifted by (k*dl) / s. With dl == 1 only the residues of
 * taps 0..k-1 occur. One channel's planes: phase (rd, rh, rw) at
 * ((rd*nph1 + rh)*nph2 + rw)*q0*q1*q2, element (i, j, l) at (i*q1 + j)*q2 + l.
 * Returns the floats per channel (0 without a convolution geometry); ip is
 * the kernel's parameter array. */
static inline int64_t kk_la_phases(const int64_t *ip, int64_t nph[3], int64_t q[3])
{
	int64_t f = 1;
	for (int a = 0; a < 3; a++) {
		int64_t s = ip[KK_LA_STRIDE + a], k = ip[KK_LA_KER + a], dl = ip[KK_LA_DIL + a];
		int64_t span = (ip[KK_LA_OUT + a] - 1) * s + (k - 1) * dl + 1;
		nph[a] = dl == 1 && k < s ? k : s;
		q[a] = span > 0 && s > 0 ? (span + s - 1) / s : 0;
		f *= nph[a] * q[a];
	}
	return f;
}

enum { KK_LA_BD_SIZE, KK_LA_BD_A, KK_LA_BD_B, KK_LA_BD_Y, KK_LA_BD_BIAS, KK_LA_BD_COUNT };

/* Element types of the generic kernels (the kernels do not see kiln.h). */
enum {
	KK_LA_DT_F32, KK_LA_DT_F64, KK_LA_DT_F16, KK_LA_DT_BF16,
	KK_LA_DT_I64, KK_LA_DT_I32, KK_LA_DT_I8, KK_LA_DT_U8
};

/* IMPLICIT: A = im2col^T of a transposed Conv (KK_LA_TRANS) read in place
 * from the phase planes by the micro-kernel, tiles within one output row;
 * KK_LA_MC is then a whole number of output rows. */
enum { KK_LA_OP_STRIDED, KK_LA_OP_PACKED, KK_LA_OP_IM2COL, KK_LA_OP_IMPLICIT };

/* GELU: erf form and tanh form, the elementwise kernels' own (kk_math.h). */
enum { KK_LA_ACT_NONE, KK_LA_ACT_RELU, KK_LA_ACT_CLIP, KK_LA_ACT_GELU, KK_LA_ACT_GELU_TANH };

/* Generic (non-f32) kernels: Gemm accumulates floats in double and integers
 * exactly unless alpha/beta are not 1; MatMul accumulates f16/bf16 in f32. */
enum { KK_LA_KIND_GEMM, KK_LA_KIND_MATMUL };

enum {
	KK_LA_FP_ALPHA, /* Y = act(alpha * AB + beta * C + bias + res) */
	KK_LA_FP_BETA,
	KK_LA_FP_LO,    /* clip bounds of KK_LA_ACT_CLIP */
	KK_LA_FP_HI,
	KK_LA_FP_COUNT
};

/* ---- host GEMM (kiln_compile_opts.host_gemm) ----
 * kk_gemm_host_f32 (Gemm, MatMul) and kk_conv_host_f32 (Conv) keep their
 * operands plain, row-major as in the graph, and compute every product with
 * kiln_abi_host.sgemm: a Gemm in one call, a MatMul in one per matrix of the
 * broadcast batch, a Conv per image and group on an im2col of the input in
 * arena scratch (a 1x1, stride-1, unpadded Conv reads X in place), then the
 * bias. Y is dense. Tensor slots index t[] and are -1 when absent. */
enum {
	KK_LH_M,
	KK_LH_N,
	KK_LH_K,
	KK_LH_TRANS_A,   /* A stored K x M (lda = M), else M x K (lda = K) */
	KK_LH_TRANS_B,   /* B stored N x K (ldb = K), else K x N (ldb = N) */
	KK_LH_T_A,       /* Conv: A is W, B is X (through the im2col) */
	KK_LH_T_B,
	KK_LH_T_C,       /* Gemm: Y = alpha * AB + beta * C */
	KK_LH_C_RS,      /* element (i, j) of C at i*C_RS + j*C_CS (0: broadcast) */
	KK_LH_C_CS,
	KK_LH_T_BIAS,    /* Conv: Y[img, m, :] += bias[m] */
	KK_LH_T_Y,
	KK_LH_T_SCRATCH, /* Conv: the im2col matrix, K x N floats; -1: X in place */
	KK_LH_CONV_N,    /* Conv: images, input channels, groups */
	KK_LH_CONV_C,
	KK_LH_CONV_GROUP,
	/* Conv spatial geometry padded to 3 dims (leading dims size 1, stride
	 * 1), 3 values each. */
	KK_LH_IN,
	KK_LH_OUT = KK_LH_IN + 3,
	KK_LH_KER = KK_LH_OUT + 3,
	KK_LH_STRIDE = KK_LH_KER + 3,
	KK_LH_DIL = KK_LH_STRIDE + 3,
	KK_LH_PAD = KK_LH_DIL + 3,       /* pads at the beginning */
	KK_LH_BATCH_RANK = KK_LH_PAD + 3,
	/* Tail (MatMul): KK_LH_BATCH_RANK batch dims, outermost first, each as
	 * size, then the elements one step in it moves A and B (0: broadcast). */
	KK_LH_BATCH,
	KK_LH_COUNT = KK_LH_BATCH
};

enum { KK_LH_FP_ALPHA, KK_LH_FP_BETA, KK_LH_FP_COUNT };

#endif
