/* cpu.h — the CPU backend's one internal header.
 *
 * Consumes: a verified graph with static shapes. Produces: an LLVM module
 * (one per model and target), then an object file, shared object, assembly,
 * textual LLVM IR or C header.
 *
 *   target.c          the target table: triple, CPU, features, vector width,
 *                     which kernel bitcode to use, how to link a .so
 *   lower.c           op -> lowering function table; kiln_kcall helpers
 *   lower_linalg.c    Gemm, MatMul, Conv, ConvTranspose
 *   lower_elementwise.c  elementwise, broadcast, compare, Where, Cast
 *   lower_reduce.c    reductions, softmax, norms, pooling
 *   lower_movement.c  copies, Transpose, Concat, Split, Slice, Gather, Pad, ...
 *   plan.c            the kernel schedule and its arena layout
 *   module.c          the LLVM module: kernel bitcode, weights, glue, entry,
 *                     descriptor
 *   emit.c            optimisation pipeline, object/asm/IR emission, linking
 *   header.c          the typed C header beside a .so
 *   kernels/          the kernel library (plain C, compiled to bitcode)
 *
 * A lowering turns one node into one kernel call: the name of a kernel in
 * the library, its integer and float parameters (layouts in
 * kernels/kk_params_*.h) and the scratch it needs. The glue passes the
 * kernel the node's tensors (inputs, outputs, scratch) as pointers. */
#ifndef KILN_CPU_H
#define KILN_CPU_H

#include "ir.h"

/* ---- target.c ---- */

typedef struct kiln_cpu_target {
	char triple[64];
	char cpu[64];
	char features[1024]; /* LLVM feature string, "+avx2,+fma,..." */
	char isa[256];       /* what the runtime must check: "avx512f,fma" */
	int vl;              /* f32 lanes per vector the kernels use: 4, 8, 16 */
	int arch;            /* KILN_CPU_ARCH_* */
	bool host_gemm;      /* kiln_compile_opts.host_gemm (lower_linalg.c) */
} kiln_cpu_target;

enum { KILN_CPU_ARCH_X86_64, KILN_CPU_ARCH_AARCH64 };

/* triple NULL: the host; cpu NULL or "native": the host CPU and features. */
kiln_status kiln_cpu_target_init(kiln_cpu_target *t, const char *triple, const char *cpu,
                                 kiln_diag *d);

/* ---- lower.c ---- */

#define KILN_KCALL_MAX_IP 2048
#define KILN_KCALL_MAX_FP 256
#define KILN_KCALL_MAX_T 256

/* One kernel call, filled in by a lowering. */
typedef struct kiln_kcall {
	const char *fn;                   /* kernel symbol, e.g. "kk_gemm_f32" */
	int64_t ip[KILN_KCALL_MAX_IP];
	int n_ip;
	double fp[KILN_KCALL_MAX_FP];
	int n_fp;
	bool overflow;                    /* a push did not fit: the lowering fails */
	int64_t scratch_bytes;            /* arena scratch passed after the outputs */
	int64_t thread_scratch_bytes;     /* per-thread scratch (via parallel_for) */
	/* A lowering may give input i different constant data (weights packed
	 * for the kernel): repl[i] non-NULL replaces that input's pointer with a
	 * read-only blob of repl_bytes[i] bytes, allocated from `arena`. */
	const void *repl[KILN_KCALL_MAX_T];
	int64_t repl_bytes[KILN_KCALL_MAX_T];
	kiln_arena *arena;                /* lives as long as the compile */
	/* Bit i: the kernel reads each element of input i before writing the
	 * output element at the same index, so the planner may give the output
	 * input i's buffer when input i dies here and has the output's shape. */
	unsigned in_place;
} kiln_kcall;

static inline void kiln_kcall_i(kiln_kcall *c, int64_t v)
{
	if (c->n_ip < KILN_KCALL_MAX_IP)
		c->ip[c->n_ip++] = v;
	else
		c->overflow = true;
}

static inline void kiln_kcall_f(kiln_kcall *c, double v)
{
	if (c->n_fp < KILN_KCALL_MAX_FP)
		c->fp[c->n_fp++] = v;
	else
		c->overflow = true;
}

/* Pushes rank, then dims[0..rank) of t. */
void kiln_kcall_shape(kiln_kcall *c, const kiln_type *t);

typedef kiln_status (*kiln_lower_fn)(const kiln_node *n, const kiln_cpu_target *t,
                                     kiln_kcall *c, kiln_diag *d);

/* Fills c (which must be zeroed, with c->arena set) for node n. Unsupported
 * op/dtype combinations fail with KILN_ERR_UNSUPPORTED naming the node. */
kiln_status kiln_cpu_lower(const kiln_node *n, const kiln_cpu_target *t, kiln_kcall *c,
                           kiln_diag *d);

/* One per family file; each switches on n->op. */
kiln_status kiln_lower_linalg(const kiln_node *n, const kiln_cpu_target *t, kiln_kcall *c,
                              kiln_diag *d);
kiln_status kiln_lower_elementwise(const kiln_node *n, const kiln_cpu_target *t,
                                   kiln_kcall *c, kiln_diag *d);
kiln_status kiln_lower_reduce(const kiln_node *n, const kiln_cpu_target *t, kiln_kcall *c,
                              kiln_diag *d);
kiln_status kiln_lower_movement(const kiln_node *n, const kiln_cpu_target *t, kiln_kcall *c,
                                kiln_diag *d);
/* Attention (lower_attention.c): kk_attention_f32. */
kiln_status kiln_lower_attention(const kiln_node *n, const kiln_cpu_target *t, kiln_kcall *c,
                                 kiln_diag *d);
/* Fusion nodes (lower.c dispatches on the kind). */
kiln_status kiln_lower_fusion_output(const kiln_node *n, const kiln_cpu_target *t, kiln_kcall *c,
                                     kiln_diag *d);
/* Element stride of operand type `in` along dim d of `out` (right-aligned
 * broadcasting): 0 where it repeats (one element repeats everywhere), -1
 * where it does not broadcast. */
int64_t kiln_operand_stride(const kiln_type *in, const kiln_type *out, int d);
/* Kind loop (lower_elementwise.c): the body as one kk_ew_program_f32. */
kiln_status kiln_lower_fusion_loop(const kiln_node *n, const kiln_cpu_target *t, kiln_kcall *c,
                                   kiln_diag *d);
/* Kind reduction (lower_reduce.c): kk_reduce_fusion_f32, its prologue and
 * epilogue as programs built by kiln_lower_fusion_loop. */
kiln_status kiln_lower_fusion_reduction(const kiln_node *n, const kiln_cpu_target *t,
                                        kiln_kcall *c, kiln_diag *d);

#endif

/* ---- module.c / emit.c / header.c ---- */

#include <llvm-c/Core.h>
#include <llvm-c/TargetMachine.h>

#include "kiln_abi.h"

/* A graph input or output as the artefact describes it. */
typedef struct kiln_cpu_io {
	const char *name;  /* the graph's name for it */
	const char *ident; /* a C identifier made from it, unique in the model */
	kiln_type type;
} kiln_cpu_io;

struct kiln_compiled {
	kiln_arena *arena;
	kiln_cpu_target target;
	kiln_compile_stats stats;
	int opt_level;
	char name[96];        /* C identifier for the header */
	char graph_name[256];
	int n_inputs, n_outputs;
	kiln_cpu_io *inputs, *outputs;
	LLVMContextRef ctx;
	LLVMModuleRef mod;
	LLVMTargetMachineRef tm;
	LLVMMemoryBufferRef obj; /* object code, made on the first emit that needs it */
	void (*progress)(void *user, const char *stage, int done, int total);
	void *progress_user;
};

/* Builds c->mod from the graph (kernels, weights, glue, entry, descriptor). */
kiln_status kiln_cpu_build_module(kiln_compiled *c, const kiln_graph *g,
                                  const kiln_compile_opts *o, kiln_diag *d);
/* The kernel library bitcode for a target (embedded by the build). */
bool kiln_cpu_kernel_bitcode(const kiln_cpu_target *t, const char **data, size_t *size);

/* Runs an LLVM pass pipeline (text, as for opt -passes=) over mod. */
kiln_status kiln_cpu_run_passes(kiln_compiled *c, LLVMModuleRef mod, const char *passes,
                                kiln_diag *d);
kiln_status kiln_cpu_emit_header(const kiln_compiled *c, const char *path, kiln_diag *d);
/* Writes `size` bytes to path via a temp file in the same folder + rename. */
kiln_status kiln_cpu_write_file(const char *path, const void *data, size_t size, kiln_diag *d);
double kiln_cpu_now(void);
