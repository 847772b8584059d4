/* session.c — sessions: one arena and one scratch block per thread, carved
 * from one allocation (the session's or the caller's), a thread pool, and
 * the argument checks that make a started run always finish.
 *
 * Layout, from the first KILN_ABI_ALIGN boundary of the memory:
 *   arena (arena_bytes, rounded up to KILN_ABI_ALIGN)
 *   scratch of thread 0 (the caller), 1, ... (thread_scratch_bytes each, rounded up)
 * Nothing is allocated on the run path: the pointer arrays handed to the
 * entry are part of the session. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rt.h"

struct kiln_rt_session {
	const kiln_abi_model *abi;
	kiln_abi_host host;
	kiln_rt_pool *pool;
	void *own;            /* memory the session allocated; NULL if the caller's */
	unsigned char *arena; /* aligned, followed by the scratch blocks */
	const void **in;      /* n_inputs, after the struct */
	void **out;           /* n_outputs, after in */
	double *times;        /* per-kernel seconds (the caller's), or NULL */
	double last;          /* when the previous kernel started */
	char error[256];
};

static size_t align_up(size_t x)
{
	return (x + KILN_ABI_ALIGN - 1) & ~(size_t)(KILN_ABI_ALIGN - 1);
}

int kiln_rt_default_threads(void)
{
	const char *env = getenv("KILN_NUM_THREADS");
	if (env && *env >= '0' && *env <= '9') {
		char *end;
		errno = 0;
		long v = strtol(env, &end, 10);
		if (!errno && !*end && v > 0 && v <= KILN_RT_MAX_THREADS)
			return (int)v;
	}
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n < 1 ? 1 : n > KILN_RT_MAX_THREADS ? KILN_RT_MAX_THREADS : (int)n;
}

size_t kiln_rt_session_bytes(const kiln_rt_model_t *m, int n_threads)
{
	if (!m || n_threads < 0 || n_threads > KILN_RT_MAX_THREADS)
		return 0;
	if (!n_threads)
		n_threads = kiln_rt_default_threads();
	/* Descriptor checks bound both sizes by KILN_RT_MAX_BYTES: no overflow. */
	return KILN_RT_SESSION_BYTES((size_t)m->abi->arena_bytes,
	                             (size_t)m->abi->thread_scratch_bytes, (size_t)n_threads);
}

kiln_rt_status kiln_rt_session_create(const kiln_rt_model_t *m, const kiln_rt_session_opts *opts,
                                      kiln_rt_session_t **out)
{
	if (out)
		*out = NULL;
	if (!m || !out)
		return KILN_RT_ERR_INVALID_ARG;
	kiln_rt_session_opts o = opts ? *opts : (kiln_rt_session_opts){0};
	if (o.n_threads < 0 || o.n_threads > KILN_RT_MAX_THREADS)
		return KILN_RT_ERR_INVALID_ARG;
	int n_threads = o.n_threads ? o.n_threads : kiln_rt_default_threads();
	size_t need = kiln_rt_session_bytes(m, n_threads);
	if (o.memory && o.memory_bytes < need)
		return KILN_RT_ERR_OOM;
	/* Checked here so that no run can reach a kernel calling a NULL sgemm. */
	if ((m->abi->flags & KILN_ABI_FLAG_HOST_SGEMM) && !o.sgemm)
		return KILN_RT_ERR_NO_SGEMM;

	const kiln_abi_model *abi = m->abi;
	size_t n_ptrs = (size_t)abi->n_inputs + (size_t)abi->n_outputs;
	kiln_rt_session_t *s = calloc(1, sizeof *s + n_ptrs * sizeof(void *));
	if (!s)
		return KILN_RT_ERR_OOM;
	unsigned char *base = o.memory;
	if (!base && !(base = s->own = malloc(need))) {
		free(s);
		return KILN_RT_ERR_OOM;
	}
	s->abi = abi;
	s->in = (const void **)(s + 1);
	s->out = (void **)(s->in + abi->n_inputs);
	s->arena = base + (-(uintptr_t)base & (KILN_ABI_ALIGN - 1));
	/* Touching the memory now keeps page faults out of the first run. */
	memset(s->arena, 0, need - (KILN_ABI_ALIGN - 1));
	size_t stride = align_up((size_t)abi->thread_scratch_bytes);
	kiln_rt_status st = kiln_rt_pool_create(n_threads, s->arena + align_up((size_t)abi->arena_bytes),
	                                        stride, &s->pool);
	if (st) {
		free(s->own);
		free(s);
		return st;
	}
	s->host = (kiln_abi_host){.version = KILN_ABI_VERSION, .n_threads = n_threads,
	                          .pool = s->pool, .parallel_for = kiln_rt_pool_parallel_for,
	                          .sgemm = o.sgemm, .sgemm_user = o.sgemm_user};
	*out = s;
	return KILN_RT_OK;
}

void kiln_rt_session_free(kiln_rt_session_t *s)
{
	if (!s)
		return;
	kiln_rt_pool_free(s->pool);
	free(s->own);
	free(s);
}

int kiln_rt_session_n_threads(const kiln_rt_session_t *s)
{
	return s ? s->host.n_threads : 0;
}

const char *kiln_rt_session_error(const kiln_rt_session_t *s)
{
	return s ? s->error : "kiln_rt_session_error: session is NULL";
}

static kiln_rt_status check_tensor(kiln_rt_session_t *s, const char *kind, int i,
                                   const kiln_abi_tensor *want, const kiln_rt_tensor *got)
{
	char *err = s->error;
	size_t size = sizeof s->error;
	if (got->dtype != want->dtype) {
		const char *name = kiln_rt_dtype_name(got->dtype);
		if (name)
			return kiln_rt_fail(err, size, KILN_RT_ERR_DTYPE, "%s %d '%s': dtype %s expected %s",
			                    kind, i, want->name, name, kiln_rt_dtype_name(want->dtype));
		return kiln_rt_fail(err, size, KILN_RT_ERR_DTYPE, "%s %d '%s': dtype %d expected %s",
		                    kind, i, want->name, (int)got->dtype,
		                    kiln_rt_dtype_name(want->dtype));
	}
	if (got->rank != want->rank)
		return kiln_rt_fail(err, size, KILN_RT_ERR_SHAPE, "%s %d '%s': rank %d expected %d", kind,
		                    i, want->name, (int)got->rank, (int)want->rank);
	if (memcmp(got->dims, want->dims, (size_t)want->rank * sizeof *want->dims)) {
		char g[KILN_ABI_MAX_RANK * 21 + 3], w[sizeof g];
		kiln_rt_format_dims(g, sizeof g, got->rank, got->dims);
		kiln_rt_format_dims(w, sizeof w, want->rank, want->dims);
		return kiln_rt_fail(err, size, KILN_RT_ERR_SHAPE, "%s %d '%s': shape %s expected %s",
		                    kind, i, want->name, g, w);
	}
	if (!got->data)
		return kiln_rt_fail(err, size, KILN_RT_ERR_INVALID_ARG, "%s %d '%s': data is NULL",
		                    kind, i, want->name);
	return KILN_RT_OK;
}

static bool overlap(const void *a, int64_t a_bytes, const void *b, int64_t b_bytes)
{
	uintptr_t x = (uintptr_t)a, y = (uintptr_t)b;
	return a_bytes && b_bytes && x < y + (uintptr_t)b_bytes && y < x + (uintptr_t)a_bytes;
}

/* An output sharing memory with an input or another output would be
 * overwritten while the model still reads or writes it. */
static kiln_rt_status check_overlaps(kiln_rt_session_t *s)
{
	const kiln_abi_model *abi = s->abi;
	for (int o = 0; o < abi->n_outputs; o++) {
		int64_t bytes = abi->outputs[o].bytes;
		for (int i = 0; i < abi->n_inputs; i++)
			if (overlap(s->out[o], bytes, s->in[i], abi->inputs[i].bytes))
				return kiln_rt_fail(s->error, sizeof s->error, KILN_RT_ERR_INVALID_ARG,
				                    "output %d '%s' overlaps input %d '%s'", o,
				                    abi->outputs[o].name, i, abi->inputs[i].name);
		for (int j = 0; j < o; j++)
			if (overlap(s->out[o], bytes, s->out[j], abi->outputs[j].bytes))
				return kiln_rt_fail(s->error, sizeof s->error, KILN_RT_ERR_INVALID_ARG,
				                    "output %d '%s' overlaps output %d '%s'", o,
				                    abi->outputs[o].name, j, abi->outputs[j].name);
	}
	return KILN_RT_OK;
}

static kiln_rt_status call_entry(kiln_rt_session_t *s, const void *const *in, void *const *out)
{
	int32_t r = s->abi->entry(&s->host, s->arena, in, out);
	if (r)
		return kiln_rt_fail(s->error, sizeof s->error, KILN_RT_ERR_ABI,
		                    "model entry returned %d (the ABI says 0)", (int)r);
	return KILN_RT_OK;
}

kiln_rt_status kiln_rt_session_run(kiln_rt_session_t *s, const kiln_rt_tensor *inputs,
                                   int n_inputs, kiln_rt_tensor *outputs, int n_outputs)
{
	if (!s)
		return KILN_RT_ERR_INVALID_ARG;
	s->error[0] = 0;
	const kiln_abi_model *abi = s->abi;
	char *err = s->error;
	size_t size = sizeof s->error;
	if (n_inputs != abi->n_inputs)
		return kiln_rt_fail(err, size, KILN_RT_ERR_INVALID_ARG, "input count %d expected %d",
		                    n_inputs, (int)abi->n_inputs);
	if (n_outputs != abi->n_outputs)
		return kiln_rt_fail(err, size, KILN_RT_ERR_INVALID_ARG, "output count %d expected %d",
		                    n_outputs, (int)abi->n_outputs);
	if (n_inputs && !inputs)
		return kiln_rt_fail(err, size, KILN_RT_ERR_INVALID_ARG, "inputs is NULL");
	if (!outputs)
		return kiln_rt_fail(err, size, KILN_RT_ERR_INVALID_ARG, "outputs is NULL");
	kiln_rt_status st;
	for (int i = 0; i < n_inputs; i++) {
		if ((st = check_tensor(s, "input", i, &abi->inputs[i], &inputs[i])))
			return st;
		s->in[i] = inputs[i].data;
	}
	for (int i = 0; i < n_outputs; i++) {
		if ((st = check_tensor(s, "output", i, &abi->outputs[i], &outputs[i])))
			return st;
		s->out[i] = outputs[i].data;
	}
	if ((st = check_overlaps(s)))
		return st;
	return call_entry(s, s->in, s->out);
}

static double seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The entry calls this before kernel k and once after the last. */
static void profile_hook(void *user, int32_t k)
{
	kiln_rt_session_t *s = user;
	double t = seconds();
	if (k > 0)
		s->times[k - 1] += t - s->last;
	s->last = t;
}

void kiln_rt_session_profile(kiln_rt_session_t *s, double *times)
{
	if (!s)
		return;
	s->times = times;
	s->host.kernel_hook = times ? profile_hook : NULL;
	s->host.hook_user = times ? s : NULL;
}

kiln_rt_status kiln_rt_session_run_raw(kiln_rt_session_t *s, const void *const *inputs,
                                       void *const *outputs)
{
	if (!s)
		return KILN_RT_ERR_INVALID_ARG;
	s->error[0] = 0;
	const kiln_abi_model *abi = s->abi;
	char *err = s->error;
	size_t size = sizeof s->error;
	if (abi->n_inputs && !inputs)
		return kiln_rt_fail(err, size, KILN_RT_ERR_INVALID_ARG, "inputs is NULL");
	if (!outputs)
		return kiln_rt_fail(err, size, KILN_RT_ERR_INVALID_ARG, "outputs is NULL");
	for (int i = 0; i < abi->n_inputs; i++)
		if (!inputs[i])
			return kiln_rt_fail(err, size, KILN_RT_ERR_INVALID_ARG, "input %d '%s': data is NULL",
			                    i, abi->inputs[i].name);
	for (int i = 0; i < abi->n_outputs; i++)
		if (!outputs[i])
			return kiln_rt_fail(err, size, KILN_RT_ERR_INVALID_ARG,
			                    "output %d '%s': data is NULL", i, abi->outputs[i].name);
	return call_entry(s, inputs, outputs);
}
