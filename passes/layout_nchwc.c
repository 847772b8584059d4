/* layout_nchwc.c — layout assignment: regions of convolutions and the
 * elementwise ops between them move to the blocked channel layout NCHWc
 * ([N, cdiv(C, 16), H, W, 16], ops.def), with reorders only at the borders.
 *
 * Members of a region:
 *   - a Conv with f32 rank-4 X, constant W (and B), one output, that is
 *     depthwise (group == C == M, C > 1) or has group 1 and a 1x1 kernel:
 *     it becomes a ConvNCHWc (pads explicit, auto_pad resolved);
 *   - an f32 elementwise op whose non-constant inputs are all produced in a
 *     region: a unary one (Relu, Clip, ...; its other inputs constant
 *     scalars), or an Add, Mul or Sub whose non-constant inputs all have its
 *     output's shape (no broadcast) and whose constants are scalars. It keeps
 *     its op and runs on the blocked tensors (padding lanes included: they
 *     never reach a real channel).
 * Regions are the connected components of these nodes along data edges.
 *
 * Cost rule: a region converts only if it holds at least one depthwise
 * Conv. The blocked layout pays where depthwise convolutions run (sixteen
 * channels of a pixel are one vector, so a 3x3 tap is one vector FMA with no
 * plane copies); GEMM-like convolutions (ResNet-18's) are as fast in NCHW,
 * and a region of them alone would only add the reorders.
 *
 * At the borders: one ReorderToNCHWc per value entering a region (shared by
 * its consumers there), placed before its first consumer, and one
 * ReorderFromNCHWc per value leaving it (used outside, or a graph output),
 * placed after its producer; the leaving value keeps its name and its uses.
 * A blocked value is named after the value it holds plus ".nchwc".
 *
 * Needs: shapes inferred. Invalidates: node order and value ids (prunes). */
#include "passes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { KIND_NONE, KIND_CONV, KIND_DW, KIND_EW };

static bool all_f32(const kiln_node *n)
{
	for (int i = 0; i < n->n_inputs; i++)
		if (n->inputs[i] && n->inputs[i]->type.dtype != KILN_DT_F32)
			return false;
	return n->n_outputs == 1 && n->outputs[0]->type.dtype == KILN_DT_F32;
}

static bool is_const(const kiln_value *v)
{
	return v && v->kind == KILN_VALUE_CONST;
}

/* KIND_DW or KIND_CONV for a Conv the blocked kernel runs, else KIND_NONE. */
static int conv_kind(const kiln_node *n)
{
	if (n->op != KILN_OP_CONV || !all_f32(n) || n->inputs[0]->type.rank != 4 ||
	    !kiln_pass_const_f32(n->inputs[1]))
		return KIND_NONE;
	const kiln_value *b = kiln_node_in(n, 2);
	if (b && !kiln_pass_const_f32(b))
		return KIND_NONE;
	kiln_window w;
	kiln_diag quiet;
	memset(&quiet, 0, sizeof quiet);
	if (kiln_window_resolve(n, &w, &quiet) != KILN_OK)
		return KIND_NONE;
	if (w.group == w.in_c && w.group == w.out_c && w.in_c > 1)
		return KIND_DW;
	if (w.group == 1 && w.kernel[0] == 1 && w.kernel[1] == 1)
		return KIND_CONV;
	return KIND_NONE;
}

/* An elementwise op that may run blocked (the region test of its inputs'
 * producers is the caller's). */
static bool ew_ok(const kiln_node *n)
{
	unsigned f = kiln_op_get(n->op)->flags;
	bool binary = n->op == KILN_OP_ADD || n->op == KILN_OP_MUL || n->op == KILN_OP_SUB;
	if (!(f & KILN_OPF_EW) || ((f & KILN_OPF_BC) && !binary) || !all_f32(n) || n->body)
		return false;
	const kiln_type *y = &n->outputs[0]->type;
	if (y->rank != 4)
		return false;
	int live = 0;
	for (int i = 0; i < n->n_inputs; i++) {
		const kiln_value *v = n->inputs[i];
		if (!v)
			continue;
		if (is_const(v)) {
			if (kiln_type_numel(&v->type) != 1 || (!binary && i == 0))
				return false;
		} else {
			if (!kiln_type_equal(&v->type, y) || (!binary && i != 0))
				return false;
			live++;
		}
	}
	return live > 0;
}

static int find(int *parent, int i)
{
	while (parent[i] != i)
		i = parent[i] = parent[parent[i]];
	return i;
}

typedef struct rewriter {
	kiln_graph *g;
	kiln_node **order; /* the new node list */
	int n_order;
	kiln_value **blocked; /* by old value id: its blocked value, or NULL */
	int n_old_values;
	kiln_diag *d;
} rewriter;

static kiln_status oom(rewriter *r, const kiln_node *n)
{
	return kiln_diag_error(r->d, KILN_ERR_OOM, n, "out of memory assigning layouts");
}

/* "<base><suffix>", unique among the graph's values (or nodes) */
static const char *name_with(kiln_graph *g, const char *base, const char *suffix, bool node)
{
	char buf[256];
	snprintf(buf, sizeof buf, "%s%s", base, suffix);
	return node ? kiln_graph_unique_node_name(g, buf) : kiln_graph_unique_value_name(g, buf);
}

/* The blocked form of v for region node `user`: made inside the region, or
 * the (shared) ReorderToNCHWc of a value entering it. */
static kiln_status blocked_of(rewriter *r, kiln_value *v, const kiln_node *user, kiln_value **out)
{
	if (is_const(v)) {
		*out = v;
		return KILN_OK;
	}
	if (v->id < r->n_old_values && r->blocked[v->id]) {
		*out = r->blocked[v->id];
		return KILN_OK;
	}
	const char *vn = name_with(r->g, v->name, ".nchwc", false);
	const char *nn = name_with(r->g, v->name, ".to_nchwc", true);
	kiln_node *to = vn && nn ? kiln_graph_add_node(r->g, KILN_OP_REORDER_TO_NCHWC, nn, &v, 1,
	                                               &vn, 1)
	                         : NULL;
	if (!to)
		return oom(r, user);
	KILN_TRY(kiln_infer_node(to, r->d));
	r->order[r->n_order++] = to;
	r->blocked[v->id] = to->outputs[0];
	*out = to->outputs[0];
	return KILN_OK;
}

/* The ConvNCHWc standing for Conv n, reading blocked x. */
static kiln_status make_conv(rewriter *r, const kiln_node *n, kiln_value *x, const char *yname,
                             kiln_node **out)
{
	kiln_graph *g = r->g;
	kiln_window w;
	KILN_TRY(kiln_window_resolve(n, &w, r->d));
	kiln_value *in[3] = {x, n->inputs[1], kiln_node_in(n, 2)};
	kiln_node *c = kiln_graph_add_node(g, KILN_OP_CONV_NCHWC, n->name, in, in[2] ? 3 : 2, &yname, 1);
	int64_t pads[4] = {w.pad_begin[0], w.pad_begin[1], w.pad_end[0], w.pad_end[1]};
	bool ok = c && kiln_node_set_int(g, c, "channels", w.in_c) == KILN_OK &&
	          kiln_node_set_ints(g, c, "dilations", w.dilation, 2) == KILN_OK &&
	          kiln_node_set_int(g, c, "group", w.group) == KILN_OK &&
	          kiln_node_set_ints(g, c, "kernel_shape", w.kernel, 2) == KILN_OK &&
	          kiln_node_set_ints(g, c, "pads", pads, 4) == KILN_OK &&
	          kiln_node_set_ints(g, c, "strides", w.stride, 2) == KILN_OK &&
	          (!n->origin || (c->origin = kiln_arena_strdup(g->arena, n->origin)));
	if (!ok)
		return oom(r, n);
	*out = c;
	return KILN_OK;
}

/* Region node n rewritten on blocked values; its output leaves the region
 * through a ReorderFromNCHWc when `leaves`. */
static kiln_status rewrite(rewriter *r, const kiln_node *n, bool is_conv, bool leaves)
{
	kiln_graph *g = r->g;
	kiln_value *in[8] = {0};
	if (n->n_inputs > 8)
		return kiln_diag_error(r->d, KILN_ERR_INTERNAL, n, "too many inputs");
	for (int i = 0; i < (is_conv ? 1 : n->n_inputs); i++)
		if (n->inputs[i])
			KILN_TRY(blocked_of(r, n->inputs[i], n, &in[i]));
	kiln_value *y = n->outputs[0];
	const char *yname = name_with(g, y->name, ".nchwc", false);
	kiln_node *b = NULL;
	if (!yname)
		return oom(r, n);
	if (is_conv) {
		KILN_TRY(make_conv(r, n, in[0], yname, &b));
	} else {
		if (!(b = kiln_graph_copy_node(g, n, in)))
			return oom(r, n);
		b->outputs[0]->name = yname;
	}
	KILN_TRY(kiln_infer_node(b, r->d));
	r->order[r->n_order++] = b;
	r->blocked[y->id] = b->outputs[0];
	if (!leaves)
		return KILN_OK;
	const char *nn = name_with(g, y->name, ".from_nchwc", true);
	kiln_value *bv = b->outputs[0];
	kiln_node *from = nn ? kiln_graph_add_node(g, KILN_OP_REORDER_FROM_NCHWC, nn, &bv, 1, NULL, 1)
	                     : NULL;
	if (!from || kiln_node_set_int(g, from, "channels", y->type.dims[1]) != KILN_OK)
		return oom(r, n);
	/* the reorder takes over y: outside uses and graph outputs stay */
	from->outputs[0] = y;
	y->producer = from;
	y->index = 0;
	KILN_TRY(kiln_infer_node(from, r->d));
	r->order[r->n_order++] = from;
	return KILN_OK;
}

kiln_status kiln_pass_layout_nchwc(kiln_graph *g, bool *changed, kiln_diag *d)
{
	int n = g->n_nodes, nv = g->n_values;
	size_t cn = (size_t)(n ? n : 1), cv = (size_t)(nv ? nv : 1);
	int *kind = calloc(cn, sizeof *kind), *parent = calloc(cn, sizeof *parent);
	int *producer = malloc(cv * sizeof *producer); /* node index by value id, or -1 */
	bool *has_dw = calloc(cn, sizeof *has_dw), *outside = calloc(cv, sizeof *outside);
	rewriter r = {.g = g, .n_old_values = nv, .d = d};
	r.blocked = calloc(cv, sizeof *r.blocked);
	/* a region node becomes itself, a reorder per input and one out */
	size_t cap = cn;
	for (int i = 0; i < n; i++)
		cap += (size_t)g->nodes[i]->n_inputs + 1;
	r.order = calloc(cap, sizeof *r.order);
	kiln_status st = KILN_OK;
	if (!kind || !parent || !producer || !has_dw || !outside || !r.blocked || !r.order) {
		st = kiln_diag_error(d, KILN_ERR_OOM, NULL, "out of memory assigning layouts");
		goto done;
	}
	for (int v = 0; v < nv; v++)
		producer[v] = -1;
	for (int i = 0; i < n; i++) {
		kiln_node *node = g->nodes[i];
		parent[i] = i;
		for (int j = 0; j < node->n_outputs; j++)
			producer[node->outputs[j]->id] = i;
	}
	/* members, in order: an elementwise op joins when all its non-constant
	 * inputs come from members; a Conv joins its input's region */
	for (int i = 0; i < n; i++) {
		kiln_node *node = g->nodes[i];
		int k = conv_kind(node);
		if (k == KIND_NONE && ew_ok(node)) {
			k = KIND_EW;
			for (int j = 0; j < node->n_inputs; j++) {
				const kiln_value *v = node->inputs[j];
				if (v && !is_const(v) && (producer[v->id] < 0 || !kind[producer[v->id]]))
					k = KIND_NONE;
			}
		}
		if (k == KIND_NONE)
			continue;
		kind[i] = k;
		int last = k == KIND_EW ? node->n_inputs : 1;
		for (int j = 0; j < last; j++) {
			const kiln_value *v = node->inputs[j];
			int p = v && !is_const(v) ? producer[v->id] : -1;
			if (p >= 0 && kind[p])
				parent[find(parent, p)] = find(parent, i);
		}
	}
	bool any = false;
	for (int i = 0; i < n; i++)
		if (kind[i] == KIND_DW)
			any = has_dw[find(parent, i)] = true;
	if (!any)
		goto done;
	/* members of regions that convert; values used outside them */
	for (int i = 0; i < n; i++)
		if (kind[i] && !has_dw[find(parent, i)])
			kind[i] = KIND_NONE;
	for (int i = 0; i < n; i++) {
		const kiln_node *node = g->nodes[i];
		for (int j = 0; !kind[i] && j < node->n_inputs; j++)
			if (node->inputs[j])
				outside[node->inputs[j]->id] = true;
	}
	for (int i = 0; i < g->n_outputs; i++)
		outside[g->outputs[i]->id] = true;
	for (int i = 0; i < n && st == KILN_OK; i++) {
		kiln_node *node = g->nodes[i];
		if (!kind[i])
			r.order[r.n_order++] = node;
		else
			st = rewrite(&r, node, kind[i] != KIND_EW, outside[node->outputs[0]->id]);
	}
	if (st != KILN_OK)
		goto done;
	memcpy(g->nodes, r.order, (size_t)r.n_order * sizeof *r.order);
	g->n_nodes = r.n_order;
	kiln_graph_prune(g);
	*changed = true;
done:
	free(kind);
	free(parent);
	free(producer);
	free(has_dw);
	free(outside);
	free(r.blocked);
	free(r.order);
	return st;
}
