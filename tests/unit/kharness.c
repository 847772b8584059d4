/* kharness.c — native kernel checks against the interpreter (kharness.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "interp.h"
#include "kharness.h"

#define KK(name) {#name, name},
static const struct {
	const char *name;
	kk_fn fn;
} kernels[] = {
#include "kernels.def"
	{NULL, NULL},
};
#undef KK

kk_fn kh_kernel(const char *name)
{
	for (int i = 0; kernels[i].name; i++)
		if (!strcmp(kernels[i].name, name))
			return kernels[i].fn;
	return NULL;
}

kiln_type kh_type(kiln_dtype dt, int rank, const int64_t *dims)
{
	kiln_type t = {.dtype = dt, .rank = rank};
	for (int i = 0; i < rank; i++)
		t.dims[i] = dims[i];
	return t;
}

kiln_value *kh_input(kiln_graph *g, kiln_dtype dt, int rank, const int64_t *dims)
{
	kiln_type t = kh_type(dt, rank, dims);
	kiln_value *v = kiln_graph_add_input(g, NULL, &t);
	assert_non_null(v);
	return v;
}

kiln_graph *kh_graph(void)
{
	kiln_graph *g = kiln_graph_create("t", NULL);
	assert_non_null(g);
	return g;
}

kiln_node *kh_node(kiln_graph *g, kiln_op op, kiln_value *const *in, int n_in, int n_out)
{
	kiln_node *n = kiln_graph_add_node(g, op, NULL, in, n_in, NULL, n_out);
	assert_non_null(n);
	return n;
}

kiln_node *kh_add(kiln_graph *g, kiln_op op, kiln_value *const *in, int n_in, int n_out)
{
	kiln_node *n = kh_node(g, op, in, n_in, n_out);
	for (int i = 0; i < n_out; i++)
		assert_int_equal(kiln_graph_add_output(g, n->outputs[i]), KILN_OK);
	return n;
}

kiln_value *kh_op(kiln_graph *g, kiln_op op, kiln_value *const *in, int n_in, kiln_node **out)
{
	kiln_node *n = kh_node(g, op, in, n_in, 1);
	kiln_diag d;
	kiln_diag_init(&d, "test");
	assert_int_equal(kiln_infer_node(n, &d), KILN_OK);
	if (out)
		*out = n;
	return n->outputs[0];
}

kiln_value *kh_op1(kiln_graph *g, kiln_op op, kiln_value *a)
{
	return kh_op(g, op, &a, 1, NULL);
}

kiln_value *kh_op2(kiln_graph *g, kiln_op op, kiln_value *a, kiln_value *b)
{
	kiln_value *in[2] = {a, b};
	return kh_op(g, op, in, 2, NULL);
}

void kh_finish(kiln_graph *g)
{
	kiln_diag d;
	kiln_diag_init(&d, "test");
	assert_int_equal(kiln_infer_shapes(g, &d), KILN_OK);
	assert_int_equal(kiln_graph_verify(g, &d), KILN_OK);
}

void kh_typecheck(kiln_graph *g, const char *what)
{
	kiln_diag d;
	kiln_diag_init(&d, NULL);
	d.fn = NULL;
	if (kiln_infer_shapes(g, &d) != KILN_OK || kiln_graph_verify(g, &d) != KILN_OK)
		fail_msg("%s: graph does not verify: %s", what, d.last);
}

kh_opts kh_defaults(void)
{
	return (kh_opts){.rtol = 1e-5, .atol = 1e-6, .threads = 3, .seed = 1, .lo = -2, .hi = 2};
}

/* The simulated pool: tasks run one after another, last range first, each
 * with the scratch of the "thread" it would have had, so a kernel that
 * depends on task order or shares scratch across tasks shows up. */
typedef struct kh_pool {
	int threads;
	int64_t scratch_bytes;
	unsigned char *scratch; /* threads * scratch_bytes (+ alignment) */
} kh_pool;

static void kh_parallel_for(void *pool, int64_t n, kiln_abi_task_fn fn, void *arg)
{
	kh_pool *p = pool;
	int64_t chunks = n < p->threads ? n : p->threads;
	for (int64_t c = chunks - 1; c >= 0; c--) {
		int64_t b = n * c / chunks, e = n * (c + 1) / chunks;
		fn(arg, b, e, p->scratch + c * p->scratch_bytes);
	}
}

static uint64_t xorshift(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static void fill_random(kiln_tensor *t, const kh_opts *o, uint64_t *seed)
{
	int64_t n = kiln_type_numel(&t->type);
	for (int64_t i = 0; i < n; i++) {
		double u = (double)(xorshift(seed) >> 11) / 9007199254740992.0;
		double v = o->lo + (o->hi - o->lo) * u;
		if (kiln_dtype_is_float(t->type.dtype))
			kiln_tensor_set_f64(t, i, v);
		else if (t->type.dtype == KILN_DT_BOOL)
			kiln_tensor_set_i64(t, i, u < 0.5);
		else
			kiln_tensor_set_i64(t, i, (int64_t)(v < 0 ? v - 0.5 : v + 0.5));
	}
}

static void *alloc_poisoned(size_t bytes)
{
	void *p = malloc(bytes ? bytes : 1);
	if (p)
		memset(p, 0xff, bytes); /* NaN for floats: unwritten elements show */
	return p;
}

static bool close_enough(const kiln_tensor *got, const kiln_tensor *ref, const kh_opts *o,
                         int64_t *bad)
{
	int64_t n = kiln_type_numel(&ref->type);
	for (int64_t i = 0; i < n; i++) {
		if (kiln_dtype_is_float(ref->type.dtype)) {
			double a = kiln_tensor_get_f64(got, i), b = kiln_tensor_get_f64(ref, i);
			if (a != a && b != b)
				continue;
			if (a == b)
				continue;
			double diff = a > b ? a - b : b - a, mag = b < 0 ? -b : b;
			if (!(diff <= o->atol + o->rtol * mag)) {
				*bad = i;
				return false;
			}
		} else if (kiln_tensor_get_i64(got, i) != kiln_tensor_get_i64(ref, i)) {
			*bad = i;
			return false;
		}
	}
	return true;
}

kiln_status kh_run(const kiln_graph *g, const kh_opts *o, char *msg, size_t msg_size)
{
	kiln_status st = KILN_OK;
	kiln_diag d;
	kiln_diag_init(&d, "kharness");
	d.fn = NULL;
	msg[0] = 0;
	uint64_t seed = o->seed ? o->seed : 1;

	void **buf = calloc((size_t)g->n_values, sizeof *buf);
	kiln_tensor *inputs = calloc((size_t)g->n_inputs + 1, sizeof *inputs);
	kiln_arena *arena = kiln_arena_create(NULL);
	kiln_kcall *c = malloc(sizeof *c);
	kiln_interp *it = NULL;
	kh_pool pool = {.threads = o->threads > 0 ? o->threads : 1};
	if (!buf || !inputs || !arena || !c) {
		st = KILN_ERR_OOM;
		goto out;
	}
	for (int i = 0; i < g->n_inputs; i++) {
		kiln_value *v = g->inputs[i];
		inputs[i].type = v->type;
		inputs[i].data = buf[v->id] = alloc_poisoned(kiln_type_bytes(&v->type));
		fill_random(&inputs[i], o, &seed);
	}
	for (int i = 0; i < g->n_values; i++)
		if (g->values[i]->kind == KILN_VALUE_CONST)
			buf[i] = g->values[i]->data;

	kiln_cpu_target target = {.vl = KK_VL, .arch = KILN_CPU_ARCH_X86_64,
	                          .host_gemm = o->sgemm != NULL};
	for (int ni = 0; ni < g->n_nodes && st == KILN_OK; ni++) {
		const kiln_node *n = g->nodes[ni];
		memset(c, 0, sizeof *c);
		c->arena = arena;
		st = kiln_cpu_lower(n, &target, c, &d);
		if (st) {
			snprintf(msg, msg_size, "%s", d.last);
			break;
		}
		kk_fn fn = kh_kernel(c->fn);
		if (!fn) {
			snprintf(msg, msg_size, "node '%s': kernel '%s' is not in kernels.def", n->name,
			         c->fn);
			st = KILN_ERR_INTERNAL;
			break;
		}
		void *t[KILN_KCALL_MAX_T] = {0};
		int nt = 0;
		for (int i = 0; i < n->n_inputs; i++, nt++)
			t[nt] = c->repl[i] ? (void *)c->repl[i] : n->inputs[i] ? buf[n->inputs[i]->id] : NULL;
		for (int i = 0; i < n->n_outputs; i++, nt++) {
			kiln_value *v = n->outputs[i];
			if (!buf[v->id])
				buf[v->id] = alloc_poisoned(kiln_type_bytes(&v->type));
			t[nt] = buf[v->id];
		}
		void *scratch = NULL;
		if (c->scratch_bytes)
			t[nt++] = scratch = alloc_poisoned((size_t)c->scratch_bytes);
		pool.scratch_bytes = (c->thread_scratch_bytes + 63) / 64 * 64;
		pool.scratch = alloc_poisoned((size_t)(pool.scratch_bytes * pool.threads));
		kiln_abi_host host = {.version = KILN_ABI_VERSION, .n_threads = pool.threads,
		                      .pool = &pool, .parallel_for = kh_parallel_for,
		                      .sgemm = o->sgemm, .sgemm_user = o->sgemm_user};
		fn(c->ip, c->fp, t, &host);
		free(pool.scratch);
		free(scratch);
	}
	if (st)
		goto out;

	st = kiln_interp_create(g, &it, &d);
	if (!st)
		st = kiln_interp_run(it, inputs, g->n_inputs, &d);
	if (st) {
		snprintf(msg, msg_size, "interpreter: %s", d.last);
		goto out;
	}
	for (int i = 0; i < g->n_outputs; i++) {
		kiln_value *v = g->outputs[i];
		kiln_tensor got = {.type = v->type, .data = buf[v->id]};
		const kiln_tensor *ref = kiln_interp_output(it, i);
		int64_t bad;
		if (!close_enough(&got, ref, o, &bad)) {
			snprintf(msg, msg_size,
			         "output %d '%s' (%s) element %lld: kernel %.9g, interpreter %.9g", i,
			         v->name, v->producer ? kiln_op_name(v->producer->op) : "-",
			         (long long)bad, kiln_tensor_get_f64(&got, bad),
			         kiln_tensor_get_f64(ref, bad));
			st = KILN_ERR_VERIFY;
			break;
		}
	}
out:
	if (it)
		kiln_interp_destroy(it);
	if (buf)
		for (int i = 0; i < g->n_values; i++)
			if (g->values[i]->kind != KILN_VALUE_CONST)
				free(buf[i]);
	free(buf);
	free(inputs);
	free(c);
	if (arena)
		kiln_arena_destroy(arena);
	return st;
}

void kh_check(const kiln_graph *g, const kh_opts *o)
{
	char msg[1024];
	if (kh_run(g, o, msg, sizeof msg) != KILN_OK)
		fail_msg("%s", msg);
}

void kh_check_threads(kiln_graph *g, const char *what, kh_opts o)
{
	kh_typecheck(g, what);
	char msg[1024];
	for (int th = 1; th <= 3; th += 2) {
		o.threads = th;
		o.seed = (uint64_t)th * 7 + 1;
		if (kh_run(g, &o, msg, sizeof msg) != KILN_OK) {
			kiln_graph_destroy(g);
			fail_msg("%s (threads %d): %s", what, th, msg);
		}
	}
	kiln_graph_destroy(g);
}

void kh_check_tol(kiln_graph *g, const char *what, double rtol, double atol)
{
	kh_opts o = kh_defaults();
	o.rtol = rtol;
	o.atol = atol;
	kh_check_threads(g, what, o);
}

/* ---- test data and graph comparison ---- */

double kh_rand(uint64_t *state)
{
	*state = *state * 6364136223846793005ull + 1442695040888963407ull;
	return (double)(*state >> 11) / 9007199254740992.0;
}

kiln_value *kh_const_rand(kiln_graph *g, uint64_t *state, int rank, const int64_t *dims,
                          double lo, double hi)
{
	kiln_type t = kh_type(KILN_DT_F32, rank, dims);
	kiln_value *v = kiln_graph_add_const(g, NULL, &t, NULL);
	assert_non_null(v);
	float *p = v->data;
	for (int64_t i = 0; i < kiln_type_numel(&t); i++)
		p[i] = (float)(lo + (hi - lo) * kh_rand(state));
	return v;
}

kiln_value *kh_scalar(kiln_graph *g, float x)
{
	kiln_type t = {.dtype = KILN_DT_F32};
	kiln_value *v = kiln_graph_add_const(g, NULL, &t, &x);
	assert_non_null(v);
	return v;
}

void kh_same_meaning(const kiln_graph *a, const kiln_graph *b, uint64_t *state, double lo,
                     double hi, double rtol, double atol)
{
	kiln_diag d;
	kiln_diag_init(&d, "kharness");
	int n = a->n_inputs;
	kiln_tensor *in = calloc((size_t)n + 1, sizeof *in);
	assert_non_null(in);
	for (int i = 0; i < n; i++) {
		in[i].type = a->inputs[i]->type;
		in[i].data = malloc(kiln_type_bytes(&in[i].type) + 1);
		assert_non_null(in[i].data);
		float *p = in[i].data;
		for (int64_t j = 0; j < kiln_type_numel(&in[i].type); j++)
			p[j] = (float)(lo + (hi - lo) * kh_rand(state));
	}
	kiln_interp *ia, *ib;
	assert_int_equal(kiln_interp_create(a, &ia, &d), KILN_OK);
	assert_int_equal(kiln_interp_create(b, &ib, &d), KILN_OK);
	assert_int_equal(kiln_interp_run(ia, in, n, &d), KILN_OK);
	assert_int_equal(kiln_interp_run(ib, in, n, &d), KILN_OK);
	assert_int_equal(a->n_outputs, b->n_outputs);
	for (int o = 0; o < a->n_outputs; o++) {
		const kiln_tensor *ya = kiln_interp_output(ia, o), *yb = kiln_interp_output(ib, o);
		assert_true(kiln_type_equal(&ya->type, &yb->type));
		const float *pa = ya->data, *pb = yb->data;
		for (int64_t j = 0; j < kiln_type_numel(&ya->type); j++) {
			bool both_nan = pa[j] != pa[j] && pb[j] != pb[j];
			bool ok = rtol == 0 && atol == 0
			              ? !memcmp(&pa[j], &pb[j], sizeof(float)) || both_nan
			              : fabs((double)pa[j] - pb[j]) <= atol + rtol * fabs((double)pa[j]) ||
			                    both_nan;
			if (!ok)
				fail_msg("output %d element %lld: original %.9g, optimised %.9g", o,
				         (long long)j, pa[j], pb[j]);
		}
	}
	kiln_interp_destroy(ia);
	kiln_interp_destroy(ib);
	for (int i = 0; i < n; i++)
		free(in[i].data);
	free(in);
}
