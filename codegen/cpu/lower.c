/* lower.c — which lowering handles each op, and the kiln_kcall helpers.
 * The families live in lower_<family>.c; this table is the only place that
 * says which op belongs to which. */
#include "cpu.h"

/* One kernel per fusion node; each kind has its own lowering. */
static kiln_status lower_fusion(const kiln_node *n, const kiln_cpu_target *t, kiln_kcall *c,
                                kiln_diag *d)
{
	kiln_fusion_kind k = kiln_node_fusion_kind(n);
	if (k == KILN_FUSION_OUTPUT)
		return kiln_lower_fusion_output(n, t, c, d);
	if (k == KILN_FUSION_LOOP)
		return kiln_lower_fusion_loop(n, t, c, d);
	if (k == KILN_FUSION_REDUCTION)
		return kiln_lower_fusion_reduction(n, t, c, d);
	return kiln_diag_error(d, KILN_ERR_UNSUPPORTED, n,
	                       "the CPU backend has no lowering for a fusion of kind %s",
	                       kiln_fusion_kind_name(k));
}

static const kiln_lower_fn lowerings[KILN_OP_COUNT] = {
	[KILN_OP_FUSION] = lower_fusion,
	[KILN_OP_CONV] = kiln_lower_linalg,
	[KILN_OP_CONV_TRANSPOSE] = kiln_lower_linalg,
	[KILN_OP_GEMM] = kiln_lower_linalg,
	[KILN_OP_MATMUL] = kiln_lower_linalg,

	[KILN_OP_RELU] = kiln_lower_elementwise,
	[KILN_OP_LEAKY_RELU] = kiln_lower_elementwise,
	[KILN_OP_PRELU] = kiln_lower_elementwise,
	[KILN_OP_SIGMOID] = kiln_lower_elementwise,
	[KILN_OP_TANH] = kiln_lower_elementwise,
	[KILN_OP_CLIP] = kiln_lower_elementwise,
	[KILN_OP_HARD_SIGMOID] = kiln_lower_elementwise,
	[KILN_OP_HARD_SWISH] = kiln_lower_elementwise,
	[KILN_OP_GELU] = kiln_lower_elementwise,
	[KILN_OP_ERF] = kiln_lower_elementwise,
	[KILN_OP_ADD] = kiln_lower_elementwise,
	[KILN_OP_SUB] = kiln_lower_elementwise,
	[KILN_OP_MUL] = kiln_lower_elementwise,
	[KILN_OP_DIV] = kiln_lower_elementwise,
	[KILN_OP_POW] = kiln_lower_elementwise,
	[KILN_OP_SQRT] = kiln_lower_elementwise,
	[KILN_OP_EXP] = kiln_lower_elementwise,
	[KILN_OP_LOG] = kiln_lower_elementwise,
	[KILN_OP_NEG] = kiln_lower_elementwise,
	[KILN_OP_ABS] = kiln_lower_elementwise,
	[KILN_OP_RECIPROCAL] = kiln_lower_elementwise,
	[KILN_OP_MIN] = kiln_lower_elementwise,
	[KILN_OP_MAX] = kiln_lower_elementwise,
	[KILN_OP_WHERE] = kiln_lower_elementwise,
	[KILN_OP_EQUAL] = kiln_lower_elementwise,
	[KILN_OP_LESS] = kiln_lower_elementwise,
	[KILN_OP_GREATER] = kiln_lower_elementwise,
	[KILN_OP_NOT] = kiln_lower_elementwise,
	[KILN_OP_CAST] = kiln_lower_elementwise,

	[KILN_OP_SOFTMAX] = kiln_lower_reduce,
	[KILN_OP_LOG_SOFTMAX] = kiln_lower_reduce,
	[KILN_OP_BATCH_NORM] = kiln_lower_reduce,
	[KILN_OP_LAYER_NORM] = kiln_lower_reduce,
	[KILN_OP_MAX_POOL] = kiln_lower_reduce,
	[KILN_OP_AVERAGE_POOL] = kiln_lower_reduce,
	[KILN_OP_GLOBAL_AVG_POOL] = kiln_lower_reduce,
	[KILN_OP_GLOBAL_MAX_POOL] = kiln_lower_reduce,
	[KILN_OP_REDUCE_MEAN] = kiln_lower_reduce,
	[KILN_OP_REDUCE_SUM] = kiln_lower_reduce,
	[KILN_OP_REDUCE_MAX] = kiln_lower_reduce,
	[KILN_OP_REDUCE_MIN] = kiln_lower_reduce,

	[KILN_OP_FLATTEN] = kiln_lower_movement,
	[KILN_OP_RESHAPE] = kiln_lower_movement,
	[KILN_OP_TRANSPOSE] = kiln_lower_movement,
	[KILN_OP_CONCAT] = kiln_lower_movement,
	[KILN_OP_SPLIT] = kiln_lower_movement,
	[KILN_OP_SLICE] = kiln_lower_movement,
	[KILN_OP_GATHER] = kiln_lower_movement,
	[KILN_OP_SQUEEZE] = kiln_lower_movement,
	[KILN_OP_UNSQUEEZE] = kiln_lower_movement,
	[KILN_OP_EXPAND] = kiln_lower_movement,
	[KILN_OP_SHAPE] = kiln_lower_movement,
	[KILN_OP_CONSTANT_OF_SHAPE] = kiln_lower_movement,
	[KILN_OP_RANGE] = kiln_lower_movement,
	[KILN_OP_PAD] = kiln_lower_movement,
	[KILN_OP_RESIZE] = kiln_lower_movement,
	[KILN_OP_IDENTITY] = kiln_lower_movement,
	[KILN_OP_DROPOUT] = kiln_lower_movement,
	[KILN_OP_TILE] = kiln_lower_movement,
	[KILN_OP_QUANTIZE_LINEAR] = kiln_lower_movement,
	[KILN_OP_DEQUANTIZE_LINEAR] = kiln_lower_movement,

	[KILN_OP_ATTENTION] = kiln_lower_attention,
	[KILN_OP_REORDER_TO_NCHWC] = kiln_lower_movement,
	[KILN_OP_REORDER_FROM_NCHWC] = kiln_lower_movement,
	[KILN_OP_CONV_NCHWC] = kiln_lower_linalg,
};

void kiln_kcall_shape(kiln_kcall *c, const kiln_type *t)
{
	kiln_kcall_i(c, t->rank);
	for (int i = 0; i < t->rank; i++)
		kiln_kcall_i(c, t->dims[i]);
}

kiln_status kiln_cpu_lower(const kiln_node *n, const kiln_cpu_target *t, kiln_kcall *c,
                           kiln_diag *d)
{
	if ((unsigned)n->op >= KILN_OP_COUNT || !lowerings[n->op])
		return kiln_diag_error(d, KILN_ERR_UNSUPPORTED, n, "no CPU lowering for %s",
		                       kiln_op_name(n->op));
	if (n->n_inputs + n->n_outputs + 1 > KILN_KCALL_MAX_T)
		return kiln_diag_error(d, KILN_ERR_UNSUPPORTED, n,
		                       "%d tensors; the CPU backend takes at most %d per kernel",
		                       n->n_inputs + n->n_outputs, KILN_KCALL_MAX_T - 1);
	KILN_TRY(lowerings[n->op](n, t, c, d));
	if (c->overflow)
		return kiln_diag_error(d, KILN_ERR_UNSUPPORTED, n,
		                       "too many kernel parameters (more than %d)", KILN_KCALL_MAX_IP);
	if (!c->fn)
		return kiln_diag_error(d, KILN_ERR_INTERNAL, n, "lowering chose no kernel");
	return KILN_OK;
}
