/* pool.c — the thread pool behind kiln_abi_host.parallel_for.
 *
 * n_threads - 1 workers plus the calling thread. A job splits [0, n) into
 * up to KILN_RT_CHUNKS_PER_THREAD contiguous ranges per thread; every thread,
 * the caller included, claims ranges until none are left, so a worker that
 * wakes late costs nothing and the caller never waits for unstarted work.
 *
 * Models call parallel_for about a hundred times per run, so latency rules:
 * workers spin on the job word for KILN_RT_SPIN_NS before sleeping on a
 * condition variable, and the caller only takes the mutex when a worker
 * sleeps.
 *
 * The job word packs (generation << 32 | ranges not yet claimed). Claiming
 * is a compare-exchange that also checks the generation, so a worker still
 * holding an old generation cannot take a range of a newer job; and the
 * caller rewrites the job's fields only after every range of the previous
 * one is done, so whoever claimed a range reads that job's fields. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "rt.h"

#define KILN_RT_CHUNKS_PER_THREAD 2
#define KILN_RT_SPIN_NS 200000 /* 0.2 ms */

typedef struct worker {
	kiln_rt_pool *pool;
	int index;
	pthread_t thread;
} worker;

struct kiln_rt_pool {
	int n_threads;
	unsigned char *scratch;
	size_t scratch_stride;
	/* The current job: written by the caller before it publishes `work`. */
	kiln_abi_task_fn fn;
	void *arg;
	int64_t n;
	uint32_t n_chunks;
	uint32_t generation; /* the caller's copy */
	_Alignas(64) _Atomic uint64_t work;
	_Alignas(64) _Atomic uint32_t done; /* ranges finished */
	_Alignas(64) _Atomic int sleepers;
	atomic_bool stop;
	pthread_mutex_t mutex;
	pthread_cond_t wake;
	worker workers[]; /* n_threads - 1 */
};

static void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield");
#endif
}

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Runs ranges of job `generation` until none is left unclaimed. */
static void run_chunks(kiln_rt_pool *p, uint32_t generation, void *scratch)
{
	uint64_t w = atomic_load_explicit(&p->work, memory_order_acquire);
	for (;;) {
		if ((uint32_t)(w >> 32) != generation || (uint32_t)w == 0)
			return;
		if (!atomic_compare_exchange_weak_explicit(&p->work, &w, w - 1, memory_order_acquire,
		                                           memory_order_acquire))
			continue;
		int64_t k = p->n_chunks, c = k - (uint32_t)w, base = p->n / k, rem = p->n % k;
		int64_t begin = c * base + (c < rem ? c : rem);
		p->fn(p->arg, begin, begin + base + (c < rem), scratch);
		atomic_fetch_add_explicit(&p->done, 1, memory_order_release);
		w = atomic_load_explicit(&p->work, memory_order_acquire);
	}
}

/* Waits until the job generation differs from `seen` or the pool stops;
 * returns the generation it saw. */
static uint32_t wait_for_job(kiln_rt_pool *p, uint32_t seen)
{
	int64_t start = now_ns();
	for (unsigned i = 1;; i++) {
		uint32_t g = (uint32_t)(atomic_load_explicit(&p->work, memory_order_acquire) >> 32);
		if (g != seen || atomic_load_explicit(&p->stop, memory_order_relaxed))
			return g;
		if (i % 64 == 0 && now_ns() - start > KILN_RT_SPIN_NS)
			break;
		cpu_relax();
	}
	/* sleepers and work are both seq_cst: either the caller sees this
	 * worker counted, or the worker sees the new job. */
	pthread_mutex_lock(&p->mutex);
	atomic_fetch_add(&p->sleepers, 1);
	uint32_t g;
	while ((g = (uint32_t)(atomic_load(&p->work) >> 32)) == seen && !atomic_load(&p->stop))
		pthread_cond_wait(&p->wake, &p->mutex);
	atomic_fetch_sub(&p->sleepers, 1);
	pthread_mutex_unlock(&p->mutex);
	return g;
}

static void *worker_main(void *arg)
{
	worker *self = arg;
	kiln_rt_pool *p = self->pool;
	void *scratch = p->scratch + (size_t)self->index * p->scratch_stride;
	uint32_t seen = 0;
	for (;;) {
		seen = wait_for_job(p, seen);
		if (atomic_load_explicit(&p->stop, memory_order_acquire))
			return NULL;
		run_chunks(p, seen, scratch);
	}
}

static void stop_workers(kiln_rt_pool *p, int started)
{
	atomic_store(&p->stop, true);
	pthread_mutex_lock(&p->mutex);
	pthread_cond_broadcast(&p->wake);
	pthread_mutex_unlock(&p->mutex);
	for (int i = 0; i < started; i++)
		pthread_join(p->workers[i].thread, NULL);
}

static void destroy(kiln_rt_pool *p)
{
	pthread_cond_destroy(&p->wake);
	pthread_mutex_destroy(&p->mutex);
	free(p);
}

kiln_rt_status kiln_rt_pool_create(int n_threads, unsigned char *scratch, size_t scratch_stride,
                                   kiln_rt_pool **out)
{
	*out = NULL;
	size_t bytes = sizeof(kiln_rt_pool) + (size_t)(n_threads - 1) * sizeof(worker);
	kiln_rt_pool *p = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
	if (!p)
		return KILN_RT_ERR_OOM;
	p->n_threads = n_threads;
	p->scratch = scratch;
	p->scratch_stride = scratch_stride;
	p->generation = 0;
	atomic_init(&p->work, 0);
	atomic_init(&p->done, 0);
	atomic_init(&p->sleepers, 0);
	atomic_init(&p->stop, false);
	if (pthread_mutex_init(&p->mutex, NULL)) {
		free(p);
		return KILN_RT_ERR_THREAD;
	}
	if (pthread_cond_init(&p->wake, NULL)) {
		pthread_mutex_destroy(&p->mutex);
		free(p);
		return KILN_RT_ERR_THREAD;
	}
	for (int i = 0; i < n_threads - 1; i++) {
		p->workers[i].pool = p;
		p->workers[i].index = i + 1;
		if (pthread_create(&p->workers[i].thread, NULL, worker_main, &p->workers[i])) {
			stop_workers(p, i);
			destroy(p);
			return KILN_RT_ERR_THREAD;
		}
	}
	*out = p;
	return KILN_RT_OK;
}

void kiln_rt_pool_free(kiln_rt_pool *p)
{
	if (!p)
		return;
	stop_workers(p, p->n_threads - 1);
	destroy(p);
}

void kiln_rt_pool_parallel_for(void *pool, int64_t n, kiln_abi_task_fn fn, void *arg)
{
	kiln_rt_pool *p = pool;
	if (n <= 0)
		return;
	if (p->n_threads == 1 || n == 1) {
		fn(arg, 0, n, p->scratch);
		return;
	}
	int64_t most = (int64_t)p->n_threads * KILN_RT_CHUNKS_PER_THREAD;
	uint32_t k = (uint32_t)(n < most ? n : most);
	p->fn = fn;
	p->arg = arg;
	p->n = n;
	p->n_chunks = k;
	atomic_store_explicit(&p->done, 0, memory_order_relaxed);
	uint32_t g = ++p->generation;
	atomic_store(&p->work, (uint64_t)g << 32 | k);
	if (atomic_load(&p->sleepers)) {
		pthread_mutex_lock(&p->mutex);
		pthread_cond_broadcast(&p->wake);
		pthread_mutex_unlock(&p->mutex);
	}
	run_chunks(p, g, p->scratch);
	/* What is left runs on workers that have claimed it; yield once it
	 * takes long (more threads than cores, a worker preempted). */
	int64_t start = now_ns();
	for (unsigned i = 1; atomic_load_explicit(&p->done, memory_order_acquire) != k; i++) {
		if (i % 64 == 0 && now_ns() - start > KILN_RT_SPIN_NS)
			sched_yield();
		else
			cpu_relax();
	}
}
