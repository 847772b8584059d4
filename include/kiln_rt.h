/* kiln_rt.h — libkiln_rt, the runtime for compiled kiln models.
 *
 * Load an artefact (a .so from `kiln compile`), ask what it takes and gives,
 * create a session (one per thread that runs the model; it owns the arena and
 * a thread pool), run it with caller-provided buffers.
 *
 *   kiln_rt_model_t *m;  char err[256];
 *   if (kiln_rt_model_load("model.so", &m, err, sizeof err)) { puts(err); ... }
 *   kiln_rt_session_t *s;
 *   kiln_rt_session_create(m, NULL, &s);          // threads: KILN_NUM_THREADS or all cores
 *   kiln_rt_tensor in = {...}, out = {...};
 *   if (kiln_rt_session_run(s, &in, 1, &out, 1)) puts(kiln_rt_session_error(s));
 *   kiln_rt_session_free(s); kiln_rt_model_free(m);
 *
 * Every function returns a status or a value; none aborts on bad input.
 * Everything is validated before the model's code runs, so a run that starts
 * always finishes. Links only libc, libm, libdl and pthread. */
#ifndef KILN_RT_H
#define KILN_RT_H

#include <stddef.h>
#include <stdint.h>

#include "kiln_abi.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Append only. */
typedef enum kiln_rt_status {
	KILN_RT_OK = 0,
	KILN_RT_ERR_IO,           /* the file could not be opened or read */
	KILN_RT_ERR_NOT_ARTEFACT, /* not a loadable shared object, or no kiln_model in it */
	KILN_RT_ERR_ABI,          /* bad magic or an ABI version this runtime does not speak */
	KILN_RT_ERR_CPU,          /* compiled for ISA features this CPU lacks */
	KILN_RT_ERR_INVALID_ARG,  /* NULL pointer, bad count or index, bad option */
	KILN_RT_ERR_SHAPE,        /* a tensor's rank or dims differ from the model's */
	KILN_RT_ERR_DTYPE,        /* a tensor's dtype differs from the model's */
	KILN_RT_ERR_OOM,          /* allocation failed, or the caller's arena is too small */
	KILN_RT_ERR_THREAD,       /* threads could not be started */
	KILN_RT_ERR_NO_SGEMM,     /* the model calls a host GEMM and the session options give none */
	KILN_RT_STATUS_COUNT
} kiln_rt_status;

const char *kiln_rt_status_str(kiln_rt_status s);

typedef struct kiln_rt_model kiln_rt_model_t;
typedef struct kiln_rt_session kiln_rt_session_t;

/* ---- models ------------------------------------------------------------ */

/* Loads the artefact at path. On failure *out is NULL and err (if not NULL)
 * holds one line naming the file and the reason. */
kiln_rt_status kiln_rt_model_load(const char *path, kiln_rt_model_t **out,
                                  char *err, size_t err_size);
/* Wraps a descriptor already in the process (a statically linked artefact).
 * Same checks as kiln_rt_model_load. */
kiln_rt_status kiln_rt_model_from_abi(const kiln_abi_model *abi, kiln_rt_model_t **out,
                                      char *err, size_t err_size);
void kiln_rt_model_free(kiln_rt_model_t *m);

const kiln_abi_model *kiln_rt_model_abi(const kiln_rt_model_t *m);
const char *kiln_rt_model_name(const kiln_rt_model_t *m);
int kiln_rt_model_n_inputs(const kiln_rt_model_t *m);
int kiln_rt_model_n_outputs(const kiln_rt_model_t *m);
/* NULL when i is out of range. */
const kiln_abi_tensor *kiln_rt_model_input(const kiln_rt_model_t *m, int i);
const kiln_abi_tensor *kiln_rt_model_output(const kiln_rt_model_t *m, int i);
/* Index of the input/output with this name, or -1. */
int kiln_rt_model_find_input(const kiln_rt_model_t *m, const char *name);
int kiln_rt_model_find_output(const kiln_rt_model_t *m, const char *name);
/* The kernels one run makes, in order (name, op, bytes, FLOPs); NULL when k
 * is out of range. */
int kiln_rt_model_n_kernels(const kiln_rt_model_t *m);
const kiln_abi_kernel *kiln_rt_model_kernel(const kiln_rt_model_t *m, int k);

/* ---- sessions ---------------------------------------------------------- */

/* Threads used when a session asks for 0: $KILN_NUM_THREADS if it is a
 * positive integer, else the number of online cores. */
int kiln_rt_default_threads(void);

/* Bytes of memory a session with n_threads needs (arena plus each thread's
 * scratch, with alignment slack); what a caller-provided arena must hold.
 * Equals KILN_RT_SESSION_BYTES(arena_bytes, thread_scratch_bytes, n_threads),
 * which the generated header uses to size a static buffer. */
size_t kiln_rt_session_bytes(const kiln_rt_model_t *m, int n_threads);
#define KILN_RT_ALIGN_UP(x) (((x) + KILN_ABI_ALIGN - 1) / KILN_ABI_ALIGN * KILN_ABI_ALIGN)
#define KILN_RT_SESSION_BYTES(arena, scratch, threads) \
	(KILN_ABI_ALIGN - 1 + KILN_RT_ALIGN_UP(arena) + (threads) * KILN_RT_ALIGN_UP(scratch))

typedef struct kiln_rt_session_opts {
	int n_threads;      /* 0: kiln_rt_default_threads() */
	void *memory;       /* NULL: the session allocates; else caller-owned, at
	                     * least kiln_rt_session_bytes() bytes, any alignment */
	size_t memory_bytes;
	/* The GEMM a model compiled with host GEMM calls (kiln_abi_host.sgemm,
	 * e.g. a wrapper of cblas_sgemm); NULL: none, and such a model's
	 * session is refused with KILN_RT_ERR_NO_SGEMM. Other models ignore it. */
	kiln_abi_sgemm_fn sgemm;
	void *sgemm_user;
} kiln_rt_session_opts;

/* opts may be NULL (defaults). The model must outlive the session. */
kiln_rt_status kiln_rt_session_create(const kiln_rt_model_t *m,
                                      const kiln_rt_session_opts *opts,
                                      kiln_rt_session_t **out);
void kiln_rt_session_free(kiln_rt_session_t *s);
int kiln_rt_session_n_threads(const kiln_rt_session_t *s);

/* A caller's tensor: dtype is a kiln_dtype value; data dense, C order. */
typedef struct kiln_rt_tensor {
	int32_t dtype;
	int32_t rank;
	int64_t dims[KILN_ABI_MAX_RANK];
	void *data;
} kiln_rt_tensor;

/* Checks counts, dtypes, shapes and data pointers against the model, then
 * runs it. Outputs are written into outputs[i].data. */
kiln_rt_status kiln_rt_session_run(kiln_rt_session_t *s,
                                   const kiln_rt_tensor *inputs, int n_inputs,
                                   kiln_rt_tensor *outputs, int n_outputs);
/* Runs with bare pointers (the generated header's typed wrapper uses this):
 * inputs[i] / outputs[i] must have the model's i-th input / output size.
 * Checks only that no pointer is NULL. */
kiln_rt_status kiln_rt_session_run_raw(kiln_rt_session_t *s, const void *const *inputs,
                                       void *const *outputs);
/* Per-kernel timing: with a non-NULL times (kiln_rt_model_n_kernels
 * entries, the caller's), every following run adds each kernel's wall-clock
 * seconds to times[k]; NULL turns it off. Costs two clock reads per kernel. */
void kiln_rt_session_profile(kiln_rt_session_t *s, double *times);
/* The last error of this session as one line ("" after a success). */
const char *kiln_rt_session_error(const kiln_rt_session_t *s);

#ifdef __cplusplus
}
#endif
#endif
