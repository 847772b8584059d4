/* kk.h — the CPU kernel library's one header.
 *
 * The kernels are plain C (GNU vector extensions, no intrinsics). At build
 * time clang compiles them to LLVM bitcode once per vector width (KK_VL f32
 * lanes: 4 for SSE2/NEON, 8 for AVX2, 16 for AVX-512); kiln embeds the
 * bitcode and, for each model, links the kernels it needs into the model's
 * module, where LLVM optimises them together with the generated glue. The
 * same sources are compiled natively by the test suite (tests/unit/kharness.c)
 * so every kernel is also checked under AddressSanitizer.
 *
 *   kk_linalg.c       Gemm, MatMul, Conv, ConvTranspose (packed GEMM micro-kernels)
 *   kk_elementwise.c  unary, binary (broadcast), variadic, compare, Where, Cast
 *   kk_math.h         vectorised exp, log, tanh, erf, sigmoid (own approximations)
 *   kk_reduce.c       Reduce*, Softmax, LogSoftmax, LayerNorm, BatchNorm, pooling
 *   kk_movement.c     copies, Transpose, Concat, Split, Slice, Gather, Pad,
 *                     Resize, Tile, Expand, Quantize/DequantizeLinear
 *
 * Calling convention (every kernel): see KK_KERNEL. The compiler's lowering
 * for the op (codegen/cpu/lower_<family>.c) packs ip/fp; each kernel's comment
 * gives its layout, and the two are kept in step by the shared enums in
 * kk_params.h. Kernels never allocate and never fail: the compiler validated
 * everything. Only libc/libm may be called (memcpy, memset, expf, ...). */
#ifndef KK_H
#define KK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kiln_abi.h"
#include "kk_dtype.h"
#include "kk_params.h"

/* The libc/libm functions kernels may call, declared here rather than through
 * the system headers so the bitcode builds for any target without its
 * sysroot (the build passes -nostdinc; stddef.h/stdint.h are the compiler's). */
void *memcpy(void *restrict dst, const void *restrict src, size_t n);
void *memset(void *dst, int c, size_t n);
float expf(float x);
float logf(float x);
float powf(float x, float y);
float sqrtf(float x);
float fabsf(float x);
float floorf(float x);
float ceilf(float x);
float roundf(float x);
float nearbyintf(float x);
float tanhf(float x);
float erff(float x);
float fmodf(float x, float y);
double exp(double x);
double log(double x);
double pow(double x, double y);
double sqrt(double x);
double fabs(double x);
double floor(double x);
double ceil(double x);
double round(double x);
double nearbyint(double x);
double tanh(double x);
double erf(double x);
double fmod(double x, double y);
#define KK_INFINITY __builtin_inff()
#define KK_NAN __builtin_nanf("")

#ifndef KK_VL
#error "KK_VL (f32 lanes per vector: 4, 8 or 16) must be defined"
#endif

/* ip: integer parameters; fp: float parameters; t: tensor pointers — the
 * node's inputs in order (NULL where an optional input is omitted), then its
 * outputs, then the arena scratch block if the lowering asked for one.
 * h: the host (threads). Per-thread scratch comes through parallel_for. */
#define KK_KERNEL(name) \
	void name(const int64_t *ip, const double *fp, void *const *t, const kiln_abi_host *h)

typedef void (*kk_fn)(const int64_t *ip, const double *fp, void *const *t,
                      const kiln_abi_host *h);

/* Every exported kernel, declared from the X-macro list. */
#define KK(name) KK_KERNEL(name);
#include "kernels.def"
#undef KK

/* ---- vectors ----------------------------------------------------------- */

typedef float kk_vf __attribute__((vector_size(KK_VL * 4)));
typedef int32_t kk_vi __attribute__((vector_size(KK_VL * 4)));
typedef uint32_t kk_vu __attribute__((vector_size(KK_VL * 4)));

static inline kk_vf kk_load(const float *p)
{
	kk_vf v;
	memcpy(&v, p, sizeof v);
	return v;
}

static inline void kk_store(float *p, kk_vf v)
{
	memcpy(p, &v, sizeof v);
}

/* The first n (< KK_VL) lanes from p, the rest zero. */
static inline kk_vf kk_load_n(const float *p, int64_t n)
{
	kk_vf v = {0};
	memcpy(&v, p, (size_t)n * sizeof(float));
	return v;
}

static inline void kk_store_n(float *p, kk_vf v, int64_t n)
{
	memcpy(p, &v, (size_t)n * sizeof(float));
}

/* x in every lane. x - 0 (not 0 + x) keeps -0.0 and folds away. */
static inline kk_vf kk_splat(float x)
{
	return x - (kk_vf){0};
}

/* Lane-wise m ? a : b, m from a vector comparison (all ones / all zeros). */
static inline kk_vf kk_select(kk_vi m, kk_vf a, kk_vf b)
{
	return (kk_vf)((m & (kk_vi)a) | (~m & (kk_vi)b));
}

static inline kk_vf kk_vmax(kk_vf a, kk_vf b)
{
	return kk_select(a > b, a, b);
}

static inline kk_vf kk_vmin(kk_vf a, kk_vf b)
{
	return kk_select(a < b, a, b);
}

static inline float kk_hsum(kk_vf v)
{
	float s = 0.0f;
	for (int i = 0; i < KK_VL; i++)
		s += v[i];
	return s;
}

static inline float kk_hmax(kk_vf v)
{
	float m = v[0];
	for (int i = 1; i < KK_VL; i++)
		m = v[i] > m ? v[i] : m;
	return m;
}

/* ---- threads ----------------------------------------------------------- */

/* Runs fn over [0, n) through the host's pool (one thread when the host has
 * one). Kernels pick n as the number of independent work items. */
static inline void kk_parallel(const kiln_abi_host *h, int64_t n, kiln_abi_task_fn fn, void *arg)
{
	if (n > 0)
		h->parallel_for(h->pool, n, fn, arg);
}

#endif
