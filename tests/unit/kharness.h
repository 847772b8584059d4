/* kharness.h — checks CPU kernels natively against the interpreter.
 *
 * The kernel library (codegen/cpu/kernels) is compiled with the host C
 * compiler into the test executable (under the sanitizers in CI), so a
 * kernel test runs the real lowering (kiln_cpu_lower) and the real kernel
 * without LLVM, and compares with the reference interpreter. The same
 * sources become the bitcode that compiled models use. */
#ifndef KHARNESS_H
#define KHARNESS_H

#include "cpu.h"
#include "kk.h"

typedef struct kh_opts {
	double rtol, atol;  /* float outputs: |got - ref| <= atol + rtol * |ref| */
	int threads;        /* simulated pool size (tasks split this many ways) */
	uint64_t seed;      /* random graph inputs */
	double lo, hi;      /* range of random float inputs; ints use [lo, hi] rounded */
	/* Non-NULL: lower with host GEMM (kiln_compile_opts.host_gemm) and hand
	 * the kernels this sgemm (kiln_abi_host.sgemm). */
	kiln_abi_sgemm_fn sgemm;
	void *sgemm_user;
} kh_opts;

/* Defaults: rtol 1e-5, atol 1e-6, 3 threads, seed 1, inputs in [-2, 2]. */
kh_opts kh_defaults(void);

/* g: a verified graph with static shapes. Gives every graph input random
 * data, runs g in the interpreter and node by node through the lowerings and
 * native kernels, and compares every graph output. On a mismatch or a
 * lowering error it fails the current cmocka test with the node, output,
 * index and both values. */
void kh_check(const kiln_graph *g, const kh_opts *o);

/* As kh_check, but returns the status and writes any message into msg
 * instead of failing (for tests that expect a lowering error). */
kiln_status kh_run(const kiln_graph *g, const kh_opts *o, char *msg, size_t msg_size);

/* kh_typecheck(g, what), then kh_run at 1 and 3 threads (seed 7 * threads
 * + 1); fails the test with what, the thread count and the message. Destroys
 * g either way. kh_check_tol: the same with kh_defaults() but rtol, atol. */
void kh_check_threads(kiln_graph *g, const char *what, kh_opts o);
void kh_check_tol(kiln_graph *g, const char *what, double rtol, double atol);

/* Building test graphs: DIMS(2, 3) is a dims array, NDIMS its length,
 * SHAPE(2, 3) both (rank, dims) for functions that take them. */
#define DIMS(...) ((const int64_t[]){__VA_ARGS__})
#define NDIMS(...) (int)(sizeof((const int64_t[]){__VA_ARGS__}) / sizeof(int64_t))
#define SHAPE(...) NDIMS(__VA_ARGS__), DIMS(__VA_ARGS__)

kiln_type kh_type(kiln_dtype dt, int rank, const int64_t *dims);
/* A new graph input of that type (fails the test on OOM). */
kiln_value *kh_input(kiln_graph *g, kiln_dtype dt, int rank, const int64_t *dims);
/* A new empty graph named "t" (fails the test on OOM). */
kiln_graph *kh_graph(void);
/* Appends op over in[0..n_in) with n_out outputs, shapes not inferred
 * (fails the test on OOM). kh_add: the same, and makes every output a graph
 * output. */
kiln_node *kh_node(kiln_graph *g, kiln_op op, kiln_value *const *in, int n_in, int n_out);
kiln_node *kh_add(kiln_graph *g, kiln_op op, kiln_value *const *in, int n_in, int n_out);
/* Appends op over in[0..n_in) with one output and infers its shape (fails
 * the test if it does not infer); *out (when not NULL) gets the node.
 * kh_op1, kh_op2: one and two inputs. */
kiln_value *kh_op(kiln_graph *g, kiln_op op, kiln_value *const *in, int n_in, kiln_node **out);
kiln_value *kh_op1(kiln_graph *g, kiln_op op, kiln_value *a);
kiln_value *kh_op2(kiln_graph *g, kiln_op op, kiln_value *a, kiln_value *b);
/* Infers every shape of g and verifies it: kh_finish asserts both succeed,
 * kh_typecheck fails the test with "what: graph does not verify: ...". */
void kh_finish(kiln_graph *g);
void kh_typecheck(kiln_graph *g, const char *what);

/* Test data: seeded pseudo-random doubles in [0, 1); an f32 constant with
 * elements uniform in [lo, hi); an f32 scalar constant. */
double kh_rand(uint64_t *state);
kiln_value *kh_const_rand(kiln_graph *g, uint64_t *state, int rank, const int64_t *dims,
                          double lo, double hi);
kiln_value *kh_scalar(kiln_graph *g, float x);
/* Graph passes keep the meaning: runs a and b in the interpreter on the same
 * random f32 inputs in [lo, hi) and fails unless every output element of b
 * is within atol + rtol * |a| (rtol = atol = 0: bit-identical; NaN = NaN). */
void kh_same_meaning(const kiln_graph *a, const kiln_graph *b, uint64_t *state, double lo,
                     double hi, double rtol, double atol);

/* The native kernel with this name, or NULL. */
kk_fn kh_kernel(const char *name);

#endif
