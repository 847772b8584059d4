/* fusion_cost.c — the cost rule of loop fusion (fuse-loop): what a group of
 * elementwise nodes costs as one kernel, and whether two groups should
 * become one.
 *
 * A loop kernel reads each of its input tensors once and writes each of
 * its outputs once; the values inside the group live in registers. So the
 * memory a group moves is the bytes of its inputs plus its outputs, and
 * merging two groups saves the write and read of every value that passes
 * from one to the other (the read only, when the value is used outside as
 * well and stays an output), and one read of every tensor both read. A
 * merge that saves nothing is refused. fuse-loop never copies a node into
 * two groups (each node joins at most one), so fusion never repeats work.
 *
 * What stops a merge is the kernel's size: its inputs (streams walked at
 * once), outputs, instructions and registers (inputs, constants and one
 * temporary per instruction at worst: the program kernel keeps 64 register
 * blocks on its stack). The defaults keep any group the pass makes within
 * what kk_ew_program_f32 takes. */
#include "passes.h"

#include <string.h>

kiln_loop_limits kiln_loop_limits_default(void)
{
	return (kiln_loop_limits){.max_inputs = 16, .max_outputs = 8, .max_instrs = 32,
	                          .max_regs = 64};
}

int kiln_loop_instrs(const kiln_node *n)
{
	if ((n->op == KILN_OP_MIN || n->op == KILN_OP_MAX) && n->n_inputs > 1)
		return n->n_inputs - 1;
	return 1;
}

bool kiln_loop_is_immediate(const kiln_value *v)
{
	return v && v->kind == KILN_VALUE_CONST && v->data && !v->elided &&
	       v->type.dtype == KILN_DT_F32 && kiln_type_numel(&v->type) == 1;
}

/* Constants the program of n takes besides its constant inputs (attributes,
 * Clip's omitted bounds), counted without sharing: an upper bound. */
static int attr_consts(const kiln_node *n)
{
	switch (n->op) {
	case KILN_OP_LEAKY_RELU: return 1;
	case KILN_OP_HARD_SIGMOID: return 2;
	case KILN_OP_CLIP: return !kiln_node_in(n, 1) + !kiln_node_in(n, 2);
	default: return 0;
	}
}

/* Whether v is one of list[0..n). */
static bool listed(const kiln_value *const *list, int n, const kiln_value *v)
{
	for (int i = 0; i < n; i++)
		if (list[i] == v)
			return true;
	return false;
}

/* Whether v is made by a member. */
static bool made_inside(const bool *member, const kiln_value *v)
{
	return v->kind == KILN_VALUE_NODE && member[v->producer->id];
}

kiln_status kiln_loop_cost_of(const kiln_graph *g, const bool *member, kiln_loop_cost *c)
{
	*c = (kiln_loop_cost){0};
	/* distinct operands and outputs; a group with more fails the limits */
	enum { MAX_SEEN = 256 };
	const kiln_value *seen_in[MAX_SEEN], *seen_out[MAX_SEEN];
	uint32_t seen_k[MAX_SEEN];
	int n_k = 0;
	for (int i = 0; i < g->n_nodes; i++) {
		const kiln_node *n = g->nodes[i];
		if (!member[n->id]) {
			/* a member value read here is an output of the group */
			for (int k = 0; k < n->n_inputs; k++) {
				const kiln_value *v = n->inputs[k];
				if (!v || !made_inside(member, v) || listed(seen_out, c->n_outputs, v))
					continue;
				if (c->n_outputs == MAX_SEEN)
					return KILN_ERR_UNSUPPORTED;
				seen_out[c->n_outputs++] = v;
				c->bytes += (int64_t)kiln_type_bytes(&v->type);
			}
			continue;
		}
		c->n_nodes++;
		c->n_instrs += kiln_loop_instrs(n);
		c->n_consts += attr_consts(n);
		for (int k = 0; k < n->n_inputs; k++) {
			const kiln_value *v = n->inputs[k];
			if (!v || made_inside(member, v))
				continue;
			if (kiln_loop_is_immediate(v)) {
				/* equal bits share one register, as in the lowering */
				uint32_t x;
				memcpy(&x, v->data, sizeof x);
				bool dup = false;
				for (int j = 0; j < n_k && !dup; j++)
					dup = seen_k[j] == x;
				if (dup)
					continue;
				if (n_k == MAX_SEEN)
					return KILN_ERR_UNSUPPORTED;
				seen_k[n_k++] = x;
				c->n_consts++;
				continue;
			}
			if (listed(seen_in, c->n_inputs, v))
				continue;
			if (c->n_inputs == MAX_SEEN)
				return KILN_ERR_UNSUPPORTED;
			seen_in[c->n_inputs++] = v;
			c->bytes += (int64_t)kiln_type_bytes(&v->type);
		}
	}
	for (int i = 0; i < g->n_outputs; i++) {
		const kiln_value *v = g->outputs[i];
		if (!made_inside(member, v) || listed(seen_out, c->n_outputs, v))
			continue;
		if (c->n_outputs == MAX_SEEN)
			return KILN_ERR_UNSUPPORTED;
		seen_out[c->n_outputs++] = v;
		c->bytes += (int64_t)kiln_type_bytes(&v->type);
	}
	return KILN_OK;
}

bool kiln_loop_merge_ok(const kiln_loop_cost *a, const kiln_loop_cost *b,
                        const kiln_loop_cost *m, const kiln_loop_limits *l)
{
	return m->n_inputs <= l->max_inputs && m->n_outputs <= l->max_outputs &&
	       m->n_instrs <= l->max_instrs &&
	       m->n_inputs + m->n_consts + m->n_instrs <= l->max_regs &&
	       m->bytes < a->bytes + b->bytes;
}

/* The loop kernel's op set (passes.h). */
bool kiln_loop_candidate(const kiln_node *n)
{
	const kiln_op_info *info = kiln_op_get(n->op);
	if (!(info->flags & KILN_OPF_EW) || !(info->flags & KILN_OPF_FUSE) || n->n_outputs != 1)
		return false;
	switch (n->op) {
	case KILN_OP_WHERE:
	case KILN_OP_EQUAL:
	case KILN_OP_LESS:
	case KILN_OP_GREATER:
	case KILN_OP_NOT:
	case KILN_OP_CAST: return false;
	case KILN_OP_GELU: {
		const char *mode = kiln_node_string(n, "approximate", "none");
		if (strcmp(mode, "none") != 0 && strcmp(mode, "tanh") != 0)
			return false;
		break;
	}
	default: break;
	}
	const kiln_type *y = &n->outputs[0]->type;
	if (y->dtype != KILN_DT_F32 || kiln_type_numel(y) <= 0)
		return false;
	for (int k = 0; k < n->n_inputs; k++) {
		const kiln_value *v = n->inputs[k];
		if (!v) {
			if (n->op != KILN_OP_CLIP || k == 0)
				return false;
			continue;
		}
		if (v->type.dtype != KILN_DT_F32 || kiln_type_numel(&v->type) <= 0)
			return false;
		if (v->kind == KILN_VALUE_CONST && (!v->data || v->elided))
			return false;
		if (n->op == KILN_OP_CLIP && k > 0 && kiln_type_numel(&v->type) != 1)
			return false;
	}
	return true;
}
