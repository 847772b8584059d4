/* lower_attention.c — kiln's Attention op (made by fuse-attention) as one
 * kk_attention_f32 call: the dims, the mask's strides over the scores
 * [B,H,Sq,Skv] (0 along broadcast dims), the scale, and the per-thread
 * scratch the kernel stages K and V in (kk_params_attention.h). */
#include "cpu.h"
#include "kk_params.h"

#include <math.h>

/* Query rows per work item: enough work per item to stage K and V for,
 * and B*H*Sq/32 items to share among threads. */
#define ATT_QB 32

kiln_status kiln_lower_attention(const kiln_node *n, const kiln_cpu_target *t, kiln_kcall *c,
                                 kiln_diag *d)
{
	KILN_ENSURE(d, n->op == KILN_OP_ATTENTION, KILN_ERR_INTERNAL, n, "not an Attention node");
	const kiln_value *mask = kiln_node_in(n, 3);
	for (int i = 0; i < n->n_inputs; i++) {
		const kiln_value *v = n->inputs[i];
		if (!v)
			continue;
		KILN_ENSURE(d, v->type.dtype == KILN_DT_F32 && !v->quant, KILN_ERR_UNSUPPORTED, n,
		            "Attention: input %d has dtype %s; the CPU kernel takes f32 only", i,
		            kiln_dtype_name(v->type.dtype));
		KILN_ENSURE(d, i == 3 || v->type.rank == 4, KILN_ERR_UNSUPPORTED, n,
		            "Attention: input %d has rank %d, expected 4", i, v->type.rank);
	}
	const kiln_type *q = &n->inputs[0]->type, *k = &n->inputs[1]->type, *v = &n->inputs[2]->type;
	int64_t dk = q->dims[3];
	kiln_type s = {.dtype = KILN_DT_F32, .rank = 4,
	               .dims = {q->dims[0], q->dims[1], q->dims[2], k->dims[2]}};
	int64_t st[4] = {0, 0, 0, 0};
	for (int i = 0; mask && i < 4; i++) {
		st[i] = kiln_operand_stride(&mask->type, &s, i);
		KILN_ENSURE(d, st[i] >= 0, KILN_ERR_SHAPE, n,
		            "Attention: the mask does not broadcast to the scores");
	}
	if (s.dims[3] <= 1)
		st[3] = 0; /* MK must be 0 or 1; one column repeats nothing */
	KILN_ENSURE(d, st[3] <= 1, KILN_ERR_INTERNAL, n, "Attention: mask column stride %lld",
	            (long long)st[3]);
	c->fn = "kk_attention_f32";
	kiln_kcall_i(c, q->dims[0]);
	kiln_kcall_i(c, q->dims[1]);
	kiln_kcall_i(c, q->dims[2]);
	kiln_kcall_i(c, k->dims[2]);
	kiln_kcall_i(c, dk);
	kiln_kcall_i(c, v->dims[3]);
	kiln_kcall_i(c, q->dims[2] < ATT_QB ? (q->dims[2] > 0 ? q->dims[2] : 1) : ATT_QB);
	kiln_kcall_i(c, mask != NULL);
	kiln_kcall_i(c, n->n_inputs);
	for (int i = 0; i < 4; i++)
		kiln_kcall_i(c, st[i]);
	kiln_kcall_f(c, kiln_node_float(n, "scale", (float)(1.0 / sqrt((double)dk))));
	c->thread_scratch_bytes =
		KK_ATT_SCRATCH_FLOATS(k->dims[2], dk, v->dims[3], (int64_t)t->vl) * (int64_t)sizeof(float);
	return KILN_OK;
}
