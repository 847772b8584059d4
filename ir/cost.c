/* cost.c — what a node costs: a FLOPs estimate per op, from its types and
 * attributes. Multiply and add count as two; elementwise ops one per output
 * element; norms, softmax and reductions one per input element; pools one per
 * window element; data movement zero. Used by `kiln inspect` today, and meant
 * for the benchmarks and the fusion cost rule. */
#include "ir.h"

/* Product of dims[from..rank). */
static int64_t dims_prod(const kiln_type *t, int from)
{
	int64_t p = 1;
	for (int i = from; i < t->rank; i++)
		p *= t->dims[i];
	return p;
}

static const kiln_type *in_type(const kiln_node *n, int i)
{
	const kiln_value *v = kiln_node_in(n, i);
	return v ? &v->type : NULL;
}

int64_t kiln_node_flops(const kiln_node *n)
{
	if (n->op == KILN_OP_FUSION) {
		/* the work of the ops it fuses (what fusion saves is memory traffic) */
		int64_t f = 0;
		for (int i = 0; n->body && i < n->body->n_nodes; i++)
			f += kiln_node_flops(n->body->nodes[i]);
		return f;
	}
	const kiln_type *x = in_type(n, 0), *w = in_type(n, 1);
	const kiln_type *y = n->n_outputs ? &n->outputs[0]->type : NULL;
	if (!x || !y)
		return 0;
	switch (n->op) {
	case KILN_OP_CONV:
		/* W is [M, C/group, k...]: each output element is C/group*prod(k) MACs. */
		return w ? 2 * kiln_type_numel(y) * dims_prod(w, 1) : 0;
	case KILN_OP_CONV_NCHWC:
		/* as the Conv it stands for: Y [N, cdiv(M,16), OH, OW, 16] holds
		 * N*M*OH*OW real outputs (padding lanes are not work) */
		return w && y->rank == 5 ? 2 * y->dims[0] * w->dims[0] * y->dims[2] * y->dims[3] *
		                               dims_prod(w, 1)
		                         : 0;
	case KILN_OP_CONV_TRANSPOSE:
		/* W is [C, M/group, k...]: each input element scatters M/group*prod(k) MACs. */
		return w ? 2 * kiln_type_numel(x) * dims_prod(w, 1) : 0;
	case KILN_OP_GEMM:
		if (x->rank != 2)
			return 0;
		return 2 * kiln_type_numel(y) * x->dims[kiln_node_int(n, "transA", 0) ? 0 : 1];
	case KILN_OP_MATMUL:
		return x->rank ? 2 * kiln_type_numel(y) * x->dims[x->rank - 1] : 0;
	case KILN_OP_ATTENTION: {
		/* Q K^T and P V, plus scale, mask, exp, sum and normalise per score */
		if (x->rank != 4 || !w || w->rank != 4)
			return 0;
		int64_t scores = x->dims[0] * x->dims[1] * x->dims[2] * w->dims[2];
		return 2 * scores * x->dims[3] + 2 * scores * y->dims[3] + 5 * scores;
	}
	case KILN_OP_BATCH_NORM:
	case KILN_OP_LAYER_NORM:
	case KILN_OP_SOFTMAX:
	case KILN_OP_LOG_SOFTMAX:
	case KILN_OP_REDUCE_MEAN:
	case KILN_OP_REDUCE_SUM:
	case KILN_OP_REDUCE_MAX:
	case KILN_OP_REDUCE_MIN:
	case KILN_OP_GLOBAL_AVG_POOL:
	case KILN_OP_GLOBAL_MAX_POOL:
		return kiln_type_numel(x);
	case KILN_OP_MAX_POOL:
	case KILN_OP_AVERAGE_POOL: {
		const int64_t *k;
		int nk = kiln_node_ints(n, "kernel_shape", &k);
		int64_t window = 1;
		for (int i = 0; i < nk; i++)
			window *= k[i];
		return kiln_type_numel(y) * window;
	}
	case KILN_OP_RESIZE:
	case KILN_OP_QUANTIZE_LINEAR:
	case KILN_OP_DEQUANTIZE_LINEAR:
		return kiln_type_numel(y);
	case KILN_OP_IDENTITY:
	case KILN_OP_DROPOUT:
		return 0;
	default:
		return kiln_op_get(n->op)->flags & KILN_OPF_EW ? kiln_type_numel(y) : 0;
	}
}
