/* kiln_abi.h — the artefact ABI: what a compiled model (.so or .o) exports and
 * what it expects from whoever runs it.
 *
 * A compiled model exports exactly one symbol, `kiln_model`, a kiln_abi_model.
 * Everything else (kernels, weights, tensor names) is internal to the object.
 * The model's code calls nothing outside libc/libm: threads come in through the
 * kiln_abi_host the runner passes to `entry`.
 *
 * This header is shared by the compiler (which emits these structs as LLVM
 * constants), the kernel library (which calls the host) and the runtime (which
 * reads the descriptor). Append only: new fields go at the end of a struct and
 * bump KILN_ABI_VERSION; a runner accepts artefacts of KILN_ABI_MIN_VERSION up
 * to its own version (older artefacts never read the newer fields). Plain C,
 * no dependencies beyond <stdint.h>. */
#ifndef KILN_ABI_H
#define KILN_ABI_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KILN_ABI_MAGIC 0x4e4c494bu /* "KILN" little-endian */
#define KILN_ABI_VERSION 3u
#define KILN_ABI_MIN_VERSION 2u /* oldest artefact version a runner may accept */
#define KILN_ABI_MAX_RANK 8
#define KILN_ABI_ALIGN 64 /* arena, scratch and weight alignment in bytes */
#define KILN_ABI_SYMBOL "kiln_model"

/* One graph input or output. dtype holds a kiln_dtype value (kiln.h). */
typedef struct kiln_abi_tensor {
	const char *name;
	int32_t dtype;
	int32_t rank;
	int64_t dims[KILN_ABI_MAX_RANK];
	int64_t bytes; /* numel * element size */
} kiln_abi_tensor;

/* Runs fn(arg, begin, end, scratch) over disjoint [begin, end) ranges covering
 * [0, n), possibly on several threads at once, and returns when all are done.
 * scratch is the calling thread's private block of thread_scratch_bytes
 * (aligned to KILN_ABI_ALIGN). A task must not call parallel_for itself. */
typedef void (*kiln_abi_task_fn)(void *arg, int64_t begin, int64_t end, void *scratch);

/* A row-major f32 GEMM (cblas_sgemm with CblasRowMajor):
 * C[m,n] = alpha * op(A) op(B) + beta * C, op(A) m x k, op(B) k x n; A is
 * stored m x k (lda >= k), or k x m (lda >= m) when trans_a; B is stored
 * k x n (ldb >= n), or n x k (ldb >= k) when trans_b; ldc >= n. With
 * beta == 0, C is not read. Called with m, n, k >= 1 on the thread that runs
 * the entry, never from a parallel_for task; it may use its own threads. */
typedef void (*kiln_abi_sgemm_fn)(void *user, int32_t trans_a, int32_t trans_b, int64_t m,
                                  int64_t n, int64_t k, float alpha, const float *a,
                                  int64_t lda, const float *b, int64_t ldb, float beta,
                                  float *c, int64_t ldc);

typedef struct kiln_abi_host {
	uint32_t version;  /* KILN_ABI_VERSION of the runner */
	int32_t n_threads; /* >= 1: how many threads parallel_for may use */
	void *pool;        /* the runner's, passed back to parallel_for */
	void (*parallel_for)(void *pool, int64_t n, kiln_abi_task_fn fn, void *arg);
	/* Optional (NULL: not called): called with k before kernel k runs and
	 * with n_kernels after the last, so a runner can time each kernel. */
	void (*kernel_hook)(void *hook_user, int32_t k);
	void *hook_user;
	/* Version 3. Optional (NULL: none): the GEMM of a model with
	 * KILN_ABI_FLAG_HOST_SGEMM, called as sgemm(sgemm_user, ...). */
	kiln_abi_sgemm_fn sgemm;
	void *sgemm_user;
} kiln_abi_host;

/* One kernel the entry runs, in order, for reports (kiln bench). */
typedef struct kiln_abi_kernel {
	const char *name; /* the graph node it runs */
	const char *op;   /* "Conv", or "fusion:output(Conv+Add+Relu)" */
	int64_t bytes;    /* bytes of the tensors it reads and writes */
	int64_t flops;    /* estimated floating-point operations */
} kiln_abi_kernel;

/* Runs the model once. arena: arena_bytes of writable memory aligned to
 * KILN_ABI_ALIGN (contents need not be preserved between runs); inputs[i]
 * and outputs[i]: the graph's tensors, dense C order, any alignment; an output
 * must not overlap an input. Returns 0. Shapes and dtypes are fixed at compile
 * time and are not checked here: the runtime checks them before calling. */
typedef int32_t (*kiln_abi_entry_fn)(const kiln_abi_host *host, void *arena,
                                     const void *const *inputs, void *const *outputs);

/* kiln_abi_model.flags: what the model needs from its runner. */
#define KILN_ABI_FLAG_HOST_SGEMM 1 /* kernels call kiln_abi_host.sgemm: it must be set */

typedef struct kiln_abi_model {
	uint32_t magic;   /* KILN_ABI_MAGIC */
	uint32_t version; /* KILN_ABI_VERSION it was compiled for */
	const char *name;         /* the graph's name */
	const char *kiln_version; /* compiler that made it, e.g. "0.1.0" */
	const char *triple;       /* target triple, e.g. "x86_64-unknown-linux-gnu" */
	const char *cpu;          /* target CPU, e.g. "znver5" or "x86-64-v3" */
	const char *features;     /* comma-separated ISA features the code needs
	                           * ("avx512f,fma"); the runtime checks them */
	int32_t n_inputs;
	int32_t n_outputs;
	const kiln_abi_tensor *inputs;
	const kiln_abi_tensor *outputs;
	int64_t arena_bytes;          /* one arena per session */
	int64_t thread_scratch_bytes; /* per thread, for kernels' packing buffers */
	int32_t n_kernels;            /* kernels the entry runs, for reports */
	int32_t flags;                /* KILN_ABI_FLAG_*; 0 before version 3 */
	kiln_abi_entry_fn entry;
	const kiln_abi_kernel *kernels; /* n_kernels of them */
} kiln_abi_model;

#ifdef __cplusplus
}
#endif
#endif
