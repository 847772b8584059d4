/* fuse_output.c — output fusion: a Conv, Gemm or MatMul whose result flows
 * (as its only use) through
 *
 *     [Add of a bias vector]  then  [Add of a residual of the same shape]
 *     then  [Relu | Clip(const lo, hi) | Gelu (Gemm and MatMul only)]
 *
 * (at least one of them) becomes one `fusion` node of kind "output"; a
 * ConvNCHWc anchors one like a Conv. A bias
 * vector broadcasts along the product's channel: [M] on dim 1 of a Conv
 * without a bias of its own ([M,1,1] or [1,M,1,1]), [N] on the last dim of a
 * MatMul or a Gemm without C; a ConvNCHWc (blocked channels) takes none.
 * Its body holds the original nodes; its inputs
 * are the product's inputs, the bias and the residual; Clip's bounds become
 * constants of the body. The backend runs it
 * as one kernel that adds the residual and applies the activation as the
 * micro-kernel writes its tile, instead of three passes over memory.
 *
 * f32 only (the kernels with epilogues are f32). The fusion node takes over
 * the last member's output value, so names and uses stay. */
#include "passes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct group {
	kiln_node *anchor, *badd, *add, *act;
	kiln_value *bias, *res; /* the Adds' other operands, or NULL */
	kiln_node *fused;
} group;

static kiln_node *tail_of(const group *gr)
{
	return gr->act ? gr->act : gr->add ? gr->add : gr->badd;
}

static bool is_f32(const kiln_node *n)
{
	for (int i = 0; i < n->n_inputs; i++)
		if (n->inputs[i] && n->inputs[i]->type.dtype != KILN_DT_F32)
			return false;
	return n->outputs[0]->type.dtype == KILN_DT_F32;
}

/* Clip with absent or constant scalar bounds. */
static bool clip_const(const kiln_node *n)
{
	for (int i = 1; i < 3; i++) {
		const kiln_value *v = kiln_node_in(n, i);
		if (v && (!kiln_pass_const_f32(v) || kiln_type_numel(&v->type) != 1))
			return false;
	}
	return true;
}

bool kiln_fusion_bias_ok(const kiln_node *p, const kiln_value *y, const kiln_value *b)
{
	const kiln_type *t = &b->type, *yt = &y->type;
	if (p->op == KILN_OP_CONV_NCHWC)
		return false; /* its channels are split over two dims */
	if (t->dtype != KILN_DT_F32 || t->rank > yt->rank || yt->rank < 2)
		return false;
	int ch = p->op == KILN_OP_CONV ? 1 : yt->rank - 1; /* channel dim of y */
	int off = yt->rank - t->rank;                      /* b's dims align right */
	int64_t m = yt->dims[ch];
	for (int i = 0; i < t->rank; i++)
		if (t->dims[i] != (i + off == ch ? m : 1))
			return false;
	if (ch - off < 0 || kiln_type_numel(t) != m)
		return false;
	if (p->op == KILN_OP_CONV || p->op == KILN_OP_GEMM)
		return !kiln_node_in(p, 2); /* the bias / C slot is free */
	return true;
}

static bool match(const kiln_graph *g, kiln_node *p, group *gr)
{
	memset(gr, 0, sizeof *gr);
	bool conv = p->op == KILN_OP_CONV || p->op == KILN_OP_CONV_NCHWC;
	if ((!conv && p->op != KILN_OP_GEMM && p->op != KILN_OP_MATMUL) || p->n_outputs != 1 ||
	    !is_f32(p))
		return false;
	gr->anchor = p;
	kiln_value *cur = p->outputs[0];
	kiln_node *u = kiln_pass_single_user(g, cur);
	if (u && u->op == KILN_OP_ADD && u->inputs[0] != u->inputs[1]) {
		kiln_value *other = u->inputs[0] == cur ? u->inputs[1] : u->inputs[0];
		if (kiln_fusion_bias_ok(p, cur, other) && kiln_type_equal(&u->outputs[0]->type, &cur->type)) {
			gr->badd = u;
			gr->bias = other;
			cur = u->outputs[0];
			u = kiln_pass_single_user(g, cur);
		}
	}
	if (u && u->op == KILN_OP_ADD && u->inputs[0] != u->inputs[1]) {
		kiln_value *other = u->inputs[0] == cur ? u->inputs[1] : u->inputs[0];
		if (kiln_type_equal(&other->type, &cur->type) &&
		    kiln_type_equal(&u->outputs[0]->type, &cur->type)) {
			gr->add = u;
			gr->res = other;
			cur = u->outputs[0];
			u = kiln_pass_single_user(g, cur);
		}
	}
	/* GELU (a transformer's MLP) on the GEMM products; convolutions take
	 * Relu and Clip (the depthwise kernel's epilogue clamps) */
	bool gelu = u && u->op == KILN_OP_GELU && !conv;
	if (u && is_f32(u) &&
	    (u->op == KILN_OP_RELU || (u->op == KILN_OP_CLIP && clip_const(u)) || gelu))
		gr->act = u;
	return gr->badd || gr->add || gr->act;
}

/* Body input standing for outer value v (one per use, in order). */
static kiln_value *param(kiln_graph *body, const kiln_value *v, kiln_value **outer, int *n)
{
	char name[200];
	snprintf(name, sizeof name, "%s", v->name);
	const char *nm = kiln_graph_find_value(body, name) ? kiln_graph_unique_value_name(body, name)
	                                                   : name;
	kiln_value *b = nm ? kiln_graph_add_input(body, nm, &v->type) : NULL;
	if (b)
		outer[(*n)++] = (kiln_value *)v;
	return b;
}

static kiln_status build(kiln_graph *g, group *gr, kiln_diag *d)
{
	kiln_node *p = gr->anchor;
	char base[200];
	snprintf(base, sizeof base, "%s.fused", p->name);
	const char *name = kiln_graph_unique_node_name(g, base);
	kiln_graph *body = name ? kiln_graph_create_body(g, name) : NULL;
	kiln_value *outer[8];
	int n_outer = 0;
	kiln_value *in[3] = {0};
	if (!body)
		goto oom;
	for (int i = 0; i < p->n_inputs; i++)
		if (p->inputs[i] && !(in[i] = param(body, p->inputs[i], outer, &n_outer)))
			goto oom;
	kiln_node *last = kiln_graph_copy_node(body, p, in);
	if (!last)
		goto oom;
	const char *origin = p->origin ? p->origin : p->name;
	if (gr->badd) {
		kiln_value *b = param(body, gr->bias, outer, &n_outer);
		bool first = gr->badd->inputs[0] == p->outputs[0];
		kiln_value *ai[2] = {first ? last->outputs[0] : b, first ? b : last->outputs[0]};
		if (!b || !(last = kiln_graph_copy_node(body, gr->badd, ai)))
			goto oom;
		kiln_node tmp = *p;
		tmp.origin = origin;
		origin = kiln_pass_join_origin(g, &tmp, gr->badd);
	}
	if (gr->add) {
		kiln_value *r = param(body, gr->res, outer, &n_outer);
		const kiln_value *prev = gr->badd ? gr->badd->outputs[0] : p->outputs[0];
		bool first = gr->add->inputs[0] == prev;
		kiln_value *ai[2] = {first ? last->outputs[0] : r, first ? r : last->outputs[0]};
		if (!r || !(last = kiln_graph_copy_node(body, gr->add, ai)))
			goto oom;
		kiln_node tmp = *p;
		tmp.origin = origin;
		origin = kiln_pass_join_origin(g, &tmp, gr->add);
	}
	if (gr->act) {
		kiln_node *a = gr->act;
		kiln_value *ai[3] = {last->outputs[0], NULL, NULL};
		for (int i = 1; i < a->n_inputs; i++) {
			const kiln_value *v = a->inputs[i];
			const char *nm = v ? kiln_graph_unique_value_name(body, v->name) : NULL;
			if (v && (!nm || !(ai[i] = kiln_graph_add_const(body, nm, &v->type, v->data))))
				goto oom;
		}
		if (!(last = kiln_graph_copy_node(body, a, ai)))
			goto oom;
	}
	if (kiln_graph_add_output(body, last->outputs[0]) != KILN_OK)
		goto oom;
	KILN_TRY(kiln_infer_shapes(body, d));
	kiln_node *f = kiln_graph_add_fusion(g, KILN_FUSION_OUTPUT, name, body, outer, n_outer, NULL);
	if (!f)
		goto oom;
	/* the fusion node takes over the last member's output value */
	kiln_node *tail = tail_of(gr);
	kiln_value *y = tail->outputs[0];
	f->outputs[0] = y;
	y->producer = f;
	y->index = 0;
	f->origin = origin;
	if (gr->act) {
		kiln_node tmp = *f;
		tmp.origin = origin;
		f->origin = kiln_pass_join_origin(g, &tmp, gr->act);
	}
	gr->fused = f;
	return KILN_OK;
oom:
	return kiln_diag_error(d, KILN_ERR_OOM, p, "out of memory fusing");
}

kiln_status kiln_pass_fuse_output(kiln_graph *g, bool *changed, kiln_diag *d)
{
	int n = g->n_nodes;
	group *groups = calloc((size_t)(n ? n : 1), sizeof *groups);
	/* member[i]: the group (index + 1) node i belongs to, 0 for none */
	int *member = calloc((size_t)(n ? n : 1), sizeof *member);
	kiln_node **order = calloc((size_t)(n ? n : 1), sizeof *order);
	kiln_status st = KILN_OK;
	if (!groups || !member || !order) {
		st = kiln_diag_error(d, KILN_ERR_OOM, NULL, "out of memory fusing");
		goto done;
	}
	int n_groups = 0;
	for (int i = 0; i < n; i++) {
		group gr;
		if (member[i] || !match(g, g->nodes[i], &gr))
			continue;
		/* an Add or activation another group took stays with it, and so
		 * does the rest of the chain after it */
		if (gr.badd && member[kiln_graph_node_index(g, gr.badd)])
			gr.badd = gr.add = gr.act = NULL;
		if (gr.add && member[kiln_graph_node_index(g, gr.add)])
			gr.add = gr.act = NULL;
		if (gr.act && member[kiln_graph_node_index(g, gr.act)])
			gr.act = NULL;
		if (!gr.badd && !gr.add && !gr.act)
			continue;
		groups[n_groups++] = gr;
		member[i] = n_groups;
		kiln_node *chain[3] = {gr.badd, gr.add, gr.act};
		for (int c = 0; c < 3; c++)
			if (chain[c])
				member[kiln_graph_node_index(g, chain[c])] = n_groups;
	}
	for (int i = 0; i < n_groups && st == KILN_OK; i++)
		st = build(g, &groups[i], d);
	if (st != KILN_OK || !n_groups)
		goto done;
	/* each fusion node goes where its last member was */
	int k = 0;
	for (int i = 0; i < n; i++) {
		kiln_node *node = g->nodes[i];
		if (!member[i]) {
			order[k++] = node;
			continue;
		}
		group *gr = &groups[member[i] - 1];
		if (node == tail_of(gr))
			order[k++] = gr->fused;
	}
	memcpy(g->nodes, order, (size_t)k * sizeof *order);
	g->n_nodes = k;
	kiln_graph_prune(g);
	*changed = true;
done:
	free(groups);
	free(member);
	free(order);
	return st;
}
