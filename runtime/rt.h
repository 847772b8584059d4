/* rt.h — libkiln_rt's one internal header (the public API is include/kiln_rt.h).
 *
 *   status.c   status and dtype names, element sizes, error formatting
 *   cpu.c      does this CPU have the ISA features an artefact needs?
 *   model.c    loading an artefact (ELF pre-check, dlopen), checking its
 *              descriptor, describing its inputs and outputs
 *   pool.c     the thread pool behind kiln_abi_host.parallel_for
 *   session.c  sessions: arena and scratch layout, argument checks, runs
 *
 * Consumes: an artefact's kiln_abi_model (include/kiln_abi.h). Produces:
 * runs of its entry with a host whose threads come from the pool. */
#ifndef KILN_RT_INTERNAL_H
#define KILN_RT_INTERNAL_H

#include <stdbool.h>

#include "kiln_rt.h"

/* Internal symbols stay out of libkiln_rt.so's dynamic symbol table. */
#define KILN_RT_HIDDEN __attribute__((visibility("hidden")))

/* Sessions with more threads than this are refused (and a larger
 * KILN_NUM_THREADS is ignored); it also bounds the size arithmetic. */
#define KILN_RT_MAX_THREADS 1024
/* Arena and per-thread scratch sizes above this are taken for a corrupt
 * descriptor; with KILN_RT_MAX_THREADS it keeps sizes far from overflow. */
#define KILN_RT_MAX_BYTES ((int64_t)1 << 46)

struct kiln_rt_model {
	const kiln_abi_model *abi;
	void *dl; /* dlopen handle; NULL for kiln_rt_model_from_abi */
};

/* ---- status.c ---- */

/* Bytes per element of a kiln_dtype value, 0 if it is not one. */
KILN_RT_HIDDEN size_t kiln_rt_dtype_size(int32_t dtype);
/* "f32", "i64", ...; NULL if not a kiln_dtype value. */
KILN_RT_HIDDEN const char *kiln_rt_dtype_name(int32_t dtype);
/* Writes "[1,3,224,224]" into buf. */
KILN_RT_HIDDEN void kiln_rt_format_dims(char *buf, size_t size, int32_t rank,
                                        const int64_t *dims);
/* snprintf into err (which may be NULL) and return st. */
KILN_RT_HIDDEN kiln_rt_status kiln_rt_fail(char *err, size_t err_size, kiln_rt_status st,
                                           const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* ---- cpu.c ---- */

/* Checks the descriptor's triple and features against this machine.
 * label names the artefact in the error. */
KILN_RT_HIDDEN kiln_rt_status kiln_rt_cpu_check(const kiln_abi_model *abi, const char *label,
                                                char *err, size_t err_size);

/* ---- pool.c ---- */

typedef struct kiln_rt_pool kiln_rt_pool;

/* Starts n_threads - 1 workers. Thread i (0: the caller) hands tasks the
 * scratch block scratch + i * scratch_stride. KILN_RT_ERR_OOM or
 * KILN_RT_ERR_THREAD on failure, with nothing left running. */
KILN_RT_HIDDEN kiln_rt_status kiln_rt_pool_create(int n_threads, unsigned char *scratch,
                                                  size_t scratch_stride, kiln_rt_pool **out);
/* Stops and joins the workers. NULL is a no-op. */
KILN_RT_HIDDEN void kiln_rt_pool_free(kiln_rt_pool *p);
/* kiln_abi_host.parallel_for; pool is a kiln_rt_pool. */
KILN_RT_HIDDEN void kiln_rt_pool_parallel_for(void *pool, int64_t n, kiln_abi_task_fn fn,
                                              void *arg);

#endif
