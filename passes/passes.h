/* passes.h — graph passes and analyses (passes/).
 *
 *   passes.def         the pass table: name, one-line description, function
 *   pass_manager.c     kiln_optimize: pipelines per -O level, --passes,
 *                      --disable-pass, --print-after, verify after each pass
 *   dce.c              dead-code elimination
 *   fold_constants.c   all-constant nodes evaluated (the interpreter) into
 *                      constants; Shape of a static shape
 *   simplify.c         algebraic identities, transpose/reshape/cast chains
 *   cse.c              common subexpressions and equal constants merged
 *   fuse_patterns.c    LayerNorm, Gelu, Softmax from their decompositions
 *   fuse_attention.c   the attention-score block (MatMul, scale, mask,
 *                      Softmax, MatMul) as one Attention op
 *   fold_batchnorm.c   BatchNormalization folded into the Conv/Gemm before it
 *   layout_nchwc.c     layout assignment: regions of depthwise/1x1 Convs and
 *                      the elementwise ops between them in the blocked NCHWc
 *                      layout, reorders at the borders
 *   fuse_output.c      output fusion: Conv/Gemm/MatMul + bias + residual Add
 *                      + Relu/Clip/Gelu as one `fusion` node of kind output
 *   fuse_reduction.c   reduction fusion: a last-axis Softmax, LogSoftmax or
 *                      LayerNorm with its elementwise prologue and epilogue
 *                      as one `fusion` node of kind reduction (loop fusion's
 *                      cost rule)
 *   fuse_loop.c        loop fusion: connected elementwise ops as one `fusion`
 *                      node of kind loop (cost rule in fusion_cost.c)
 *   plan_memory.c      liveness-based arena layout: offsets for buffers whose
 *                      lifetimes (kernel steps) are known
 *
 * A pass is Graph -> Graph in place: it rewrites g, sets *changed when it did
 * anything, and leaves a graph that verifies (tests run the verifier after
 * every pass). Passes never touch a constant's data in place: a rewrite makes
 * new constants and the old ones are pruned when unused. */
#ifndef KILN_PASSES_H
#define KILN_PASSES_H

#include "ir.h"

typedef kiln_status (*kiln_pass_fn)(kiln_graph *g, bool *changed, kiln_diag *d);

#define KILN_PASS(ID, NAME, DESC) kiln_status kiln_pass_##ID(kiln_graph *g, bool *changed, kiln_diag *d);
#include "passes.def"
#undef KILN_PASS

/* The bias rule of output fusion (fuse_output.c), which the CPU lowering
 * checks again: b, added to y (the output of product p, a Conv, Gemm or
 * MatMul), is a vector along y's channel ([M] on dim 1 of a Conv, [N] on the
 * last dim of a Gemm or MatMul) that p's kernel can add: a Conv without a
 * bias input, a Gemm without C, any MatMul. f32 only. */
bool kiln_fusion_bias_ok(const kiln_node *p, const kiln_value *y, const kiln_value *b);

/* ---- helpers shared by passes (pass_manager.c) ---- */

/* The one node that uses v (as any input), or NULL when v has no use, more
 * than one, or is a graph output. */
kiln_node *kiln_pass_single_user(const kiln_graph *g, const kiln_value *v);
/* f32 constant data of v (a constant with data), else NULL. */
const float *kiln_pass_const_f32(const kiln_value *v);
/* "a,b": the origins (or names) of two nodes joined, in g's arena. */
const char *kiln_pass_join_origin(kiln_graph *g, const kiln_node *a, const kiln_node *b);

/* One buffer to place: live from kernel step `first` to `last` inclusive. */
typedef struct kiln_buffer {
	int64_t bytes;
	int first, last;
	int64_t offset; /* out: byte offset in the arena, a multiple of align */
} kiln_buffer;

/* Places the buffers so that two whose lifetimes overlap never overlap in
 * memory, greedily, largest first, each at the lowest offset that fits.
 * align must be a power of two. Returns the arena size (0 for no buffers),
 * or -1 if the total overflows. */
int64_t kiln_plan_buffers(kiln_buffer *b, int n, int64_t align);

/* ---- when loop fusion pays (fusion_cost.c) ---- */

/* A group of elementwise nodes run as one loop kernel (fuse-loop). */
typedef struct kiln_loop_cost {
	int n_nodes;
	int n_inputs;  /* distinct tensors it reads: the fusion node's inputs */
	int n_consts;  /* distinct scalar f32 constants: program immediates */
	int n_outputs; /* members' values used outside it (or graph outputs) */
	int n_instrs;  /* program instructions */
	int64_t bytes; /* memory it moves: its inputs read plus its outputs written */
} kiln_loop_cost;

typedef struct kiln_loop_limits {
	int max_inputs, max_outputs, max_instrs;
	int max_regs; /* bound on n_inputs + n_consts + n_instrs */
} kiln_loop_limits;

/* What the CPU program kernel (kk_ew_program_f32: 64 registers) takes. */
kiln_loop_limits kiln_loop_limits_default(void);
/* Program instructions node n needs (Min/Max of k inputs: k - 1). */
int kiln_loop_instrs(const kiln_node *n);
/* Whether n can join a loop (or a reduction fusion's prologue/epilogue):
 * an f32 elementwise op the program kernel runs (kk_ew_program_f32:
 * activations, unary math, arithmetic, Min/Max, Identity; not compare,
 * Where, Not or Cast), one non-empty output, inputs f32 (Clip's bounds
 * scalars), constants with data. */
bool kiln_loop_candidate(const kiln_node *n);
/* A scalar f32 constant with data: read as an immediate, not a tensor. */
bool kiln_loop_is_immediate(const kiln_value *v);
/* The cost of the nodes n of g with member[n->id] (an array of
 * g->next_node_id flags) as one loop kernel. KILN_ERR_UNSUPPORTED when it
 * has more than 256 inputs, constants or outputs (far past any limit). */
kiln_status kiln_loop_cost_of(const kiln_graph *g, const bool *member, kiln_loop_cost *c);
/* Whether two groups a and b should become one, m (their union, computed
 * with kiln_loop_cost_of): m stays within l and moves fewer bytes than a
 * and b apart. */
bool kiln_loop_merge_ok(const kiln_loop_cost *a, const kiln_loop_cost *b,
                        const kiln_loop_cost *m, const kiln_loop_limits *l);

#endif
