/* fuse_reduction.c — reduction fusion: a Softmax, LogSoftmax or
 * LayerNormalization over the last axis (f32; LayerNorm with one output,
 * Scale and B along that axis) becomes the root of one `fusion` node of
 * kind "reduction" together with
 *   - its prologue: f32 elementwise nodes over the root's shape that make
 *     its input (an attention score's scale and mask, a residual Add before
 *     a LayerNorm), found walking back from the root's input, and
 *   - its epilogue: f32 elementwise nodes over that shape that read its
 *     output (and otherwise only values from outside the group), found
 *     walking forward from it.
 * The backend runs it as one kernel, row by row along the last axis: the
 * prologue into a row of scratch, the softmax or norm, the epilogue, the
 * outputs — one pass over memory instead of one per node.
 *
 * The elementwise nodes are the ones a loop fusion takes (kk_ew_program_f32
 * runs both), and a node joins only when the cost rule of loop fusion
 * (fusion_cost.c) agrees: the group stays within the program kernel's
 * limits and moves fewer bytes with the node than without. A value made in
 * the group and read outside it (or a graph output) becomes one more output
 * of the fusion node; a node whose joining would let a path leave the group
 * and come back (a cycle once the group is one node) stays out. The
 * epilogue never reads a prologue value (the kernel has the prologue's
 * values only while it builds the row). A root with neither prologue nor
 * epilogue stays as it is.
 *
 * The body holds copies of the members in order; scalar f32 constants the
 * elementwise members read become constants of the body (the program's
 * immediates), every other outside value a body input. The fusion node
 * takes over the members' output values, so names and uses stay; it goes
 * where its last member was, after any node in between that does not
 * depend on the group, and before those that do.
 *
 * Runs before fuse-loop (which would otherwise take the prologue into a
 * loop of its own) and after fuse-output (a residual Add that a GEMM's
 * epilogue can take is cheaper there).
 *
 * Needs: shapes inferred. Invalidates: node order, value ids (pruned). */
#include "passes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Scale or B of a LayerNorm over the last axis of length len: f32, len
 * elements along that axis ([len], [1,len], ...). */
static bool row_param(const kiln_value *v, int64_t len)
{
	return v->type.dtype == KILN_DT_F32 && v->type.rank >= 1 &&
	       v->type.dims[v->type.rank - 1] == len && kiln_type_numel(&v->type) == len &&
	       (v->kind != KILN_VALUE_CONST || (v->data && !v->elided));
}

/* Whether n can root a reduction fusion. */
static bool root_ok(const kiln_node *n)
{
	if ((n->op != KILN_OP_SOFTMAX && n->op != KILN_OP_LOG_SOFTMAX &&
	     n->op != KILN_OP_LAYER_NORM) ||
	    n->n_outputs != 1 || !n->inputs[0])
		return false;
	const kiln_type *x = &n->inputs[0]->type;
	int axis;
	if (x->dtype != KILN_DT_F32 || x->rank < 1 || kiln_type_numel(x) <= 0 ||
	    !kiln_type_equal(&n->outputs[0]->type, x) ||
	    !kiln_axis_norm(kiln_node_int(n, "axis", -1), x->rank, &axis) || axis != x->rank - 1)
		return false;
	if (n->op != KILN_OP_LAYER_NORM)
		return true;
	const kiln_value *scale = kiln_node_in(n, 1), *bias = kiln_node_in(n, 2);
	int64_t len = x->dims[x->rank - 1];
	return scale && row_param(scale, len) && (!bias || row_param(bias, len));
}

enum { ROLE_NONE, ROLE_PRO, ROLE_ROOT, ROLE_EPI };

typedef struct state {
	kiln_graph *g;
	kiln_diag *d;
	const kiln_node *root;
	int n;              /* nodes of g now */
	int *index;         /* node id -> index, -1 for none */
	int *use_start, *uses; /* node index -> indices of the nodes reading it (CSR) */
	bool *member;       /* by node id: the group */
	int *role;          /* by node index: ROLE_* */
	int *seen;          /* by node index: stamp of the last search that saw it */
	int stamp;
	int *stack;
	const kiln_value **work; /* values to look at while growing */
	kiln_loop_limits limits;
} state;

static kiln_status oom(state *s)
{
	return kiln_diag_error(s->d, KILN_ERR_OOM, NULL, "out of memory fusing reductions");
}

static void state_free(state *s)
{
	free(s->index);
	free(s->use_start);
	free(s->uses);
	free(s->member);
	free(s->role);
	free(s->seen);
	free(s->stack);
	free(s->work);
	memset(s, 0, sizeof *s);
}

/* Index and use lists of g as it is now (a fusion built before changes it). */
static kiln_status state_init(state *s, kiln_graph *g, kiln_diag *d)
{
	*s = (state){.g = g, .d = d, .n = g->n_nodes, .limits = kiln_loop_limits_default()};
	size_t n = (size_t)s->n + 1, ids = (size_t)g->next_node_id + 1, n_work = n + 1;
	for (int i = 0; i < s->n; i++)
		n_work += (size_t)g->nodes[i]->n_inputs;
	s->index = malloc(sizeof *s->index * ids);
	s->use_start = calloc(n, sizeof *s->use_start);
	s->member = calloc(ids, sizeof *s->member);
	s->role = calloc(n, sizeof *s->role);
	s->seen = calloc(n, sizeof *s->seen);
	s->stack = malloc(sizeof *s->stack * n);
	s->work = malloc(sizeof *s->work * n_work);
	if (!s->index || !s->use_start || !s->member || !s->role || !s->seen || !s->stack || !s->work)
		return oom(s);
	for (size_t i = 0; i < ids; i++)
		s->index[i] = -1;
	for (int i = 0; i < s->n; i++)
		s->index[g->nodes[i]->id] = i;
	for (int j = 0; j < s->n; j++)
		for (int k = 0; k < g->nodes[j]->n_inputs; k++) {
			const kiln_value *v = g->nodes[j]->inputs[k];
			if (v && v->kind == KILN_VALUE_NODE)
				s->use_start[s->index[v->producer->id] + 1]++;
		}
	for (int i = 0; i < s->n; i++)
		s->use_start[i + 1] += s->use_start[i];
	s->uses = malloc(sizeof *s->uses * (size_t)(s->use_start[s->n] + 1));
	int *fill = calloc(n, sizeof *fill);
	if (!s->uses || !fill) {
		free(fill);
		return oom(s);
	}
	for (int j = 0; j < s->n; j++)
		for (int k = 0; k < g->nodes[j]->n_inputs; k++) {
			const kiln_value *v = g->nodes[j]->inputs[k];
			if (v && v->kind == KILN_VALUE_NODE) {
				int p = s->index[v->producer->id];
				s->uses[s->use_start[p] + fill[p]++] = j;
			}
		}
	free(fill);
	return KILN_OK;
}

static bool in_group(const state *s, int i)
{
	return s->member[s->g->nodes[i]->id];
}

/* Whether the group is convex: no path from it through nodes outside it
 * back into it. */
static bool convex(state *s)
{
	s->stamp++;
	int top = 0;
	for (int i = 0; i < s->n; i++) {
		if (!in_group(s, i))
			continue;
		for (int u = s->use_start[i]; u < s->use_start[i + 1]; u++) {
			int j = s->uses[u];
			if (!in_group(s, j) && s->seen[j] != s->stamp) {
				s->seen[j] = s->stamp;
				s->stack[top++] = j;
			}
		}
	}
	while (top > 0) {
		int i = s->stack[--top];
		for (int u = s->use_start[i]; u < s->use_start[i + 1]; u++) {
			int j = s->uses[u];
			if (in_group(s, j))
				return false;
			if (s->seen[j] != s->stamp) {
				s->seen[j] = s->stamp;
				s->stack[top++] = j;
			}
		}
	}
	return true;
}

/* Node i joins the group in `role` when it is elementwise over the root's
 * shape, the cost rule agrees and the group stays convex; *cost is the
 * group's, updated. */
static bool try_join(state *s, int i, int role, const kiln_type *shape, kiln_loop_cost *cost)
{
	kiln_node *n = s->g->nodes[i];
	if (s->member[n->id] || !kiln_loop_candidate(n) || !kiln_type_equal(&n->outputs[0]->type, shape))
		return false;
	/* the root's Scale and B come from outside */
	for (int k = 1; k < s->root->n_inputs; k++)
		if (s->root->inputs[k] == n->outputs[0])
			return false;
	if (role == ROLE_EPI)
		for (int k = 0; k < n->n_inputs; k++) {
			const kiln_value *v = n->inputs[k];
			if (v && v->kind == KILN_VALUE_NODE && s->role[s->index[v->producer->id]] == ROLE_PRO)
				return false;
		}
	kiln_loop_cost alone, merged;
	s->member[n->id] = true;
	bool ok = kiln_loop_cost_of(s->g, s->member, &merged) == KILN_OK;
	s->member[n->id] = false;
	if (ok) {
		bool *one = calloc((size_t)s->g->next_node_id + 1, sizeof *one);
		if (!one)
			return false; /* it stays out: the graph is still right */
		one[n->id] = true;
		ok = kiln_loop_cost_of(s->g, one, &alone) == KILN_OK &&
		     kiln_loop_merge_ok(cost, &alone, &merged, &s->limits);
		free(one);
	}
	s->member[n->id] = true;
	if (!ok || !convex(s)) {
		s->member[n->id] = false;
		return false;
	}
	s->role[i] = role;
	*cost = merged;
	return true;
}

/* Grows the group of the root at index ri; returns how many nodes joined. */
static int grow(state *s, int ri)
{
	kiln_graph *g = s->g;
	kiln_node *root = g->nodes[ri];
	const kiln_type *shape = &root->outputs[0]->type;
	kiln_loop_cost cost;
	s->root = root;
	s->member[root->id] = true;
	s->role[ri] = ROLE_ROOT;
	if (kiln_loop_cost_of(g, s->member, &cost) != KILN_OK)
		return 0;
	int joined = 0, top = 0;
	/* the prologue: producers of the root's input, and of theirs */
	s->work[top++] = root->inputs[0];
	while (top > 0) {
		const kiln_value *v = s->work[--top];
		if (v->kind != KILN_VALUE_NODE)
			continue;
		int p = s->index[v->producer->id];
		if (!try_join(s, p, ROLE_PRO, shape, &cost))
			continue;
		joined++;
		for (int k = g->nodes[p]->n_inputs - 1; k >= 0; k--)
			if (g->nodes[p]->inputs[k])
				s->work[top++] = g->nodes[p]->inputs[k];
	}
	/* the epilogue: readers of the root's output, and of theirs */
	s->work[top++] = root->outputs[0];
	while (top > 0) {
		const kiln_value *v = s->work[--top];
		int p = s->index[v->producer->id];
		for (int u = s->use_start[p]; u < s->use_start[p + 1]; u++) {
			int j = s->uses[u];
			if (try_join(s, j, ROLE_EPI, shape, &cost)) {
				joined++;
				s->work[top++] = g->nodes[j]->outputs[0];
			}
		}
	}
	return joined;
}

/* ---- building the fusion node ---- */

typedef struct binding {
	const kiln_value *outer;
	kiln_value *inner;
} binding;

/* The body value bound to outer value v; inputs_only: a body input. */
static kiln_value *bound(const binding *b, int n, const kiln_value *v, bool inputs_only)
{
	for (int i = 0; i < n; i++)
		if (b[i].outer == v && (!inputs_only || b[i].inner->kind == KILN_VALUE_INPUT))
			return b[i].inner;
	return NULL;
}

/* Whether the output of member i is read outside the group or is a graph
 * output. */
static bool used_outside(const state *s, int i)
{
	const kiln_value *y = s->g->nodes[i]->outputs[0];
	for (int o = 0; o < s->g->n_outputs; o++)
		if (s->g->outputs[o] == y)
			return true;
	for (int u = s->use_start[i]; u < s->use_start[i + 1]; u++)
		if (!in_group(s, s->uses[u]))
			return true;
	return false;
}

/* The group as a fusion node in its place (see the file comment). */
static kiln_status build(state *s, int ri)
{
	kiln_graph *g = s->g;
	kiln_node *root = g->nodes[ri];
	char base[200];
	snprintf(base, sizeof base, "%s.fused", root->name);
	const char *name = kiln_graph_unique_node_name(g, base);
	kiln_graph *body = name ? kiln_graph_create_body(g, name) : NULL;
	int cap = 0, first = -1, last = -1;
	for (int i = 0; i < s->n; i++)
		if (in_group(s, i)) {
			cap += g->nodes[i]->n_inputs + 1;
			first = first < 0 ? i : first;
			last = i;
		}
	binding *bind = calloc((size_t)cap, sizeof *bind);
	kiln_value **outer = calloc((size_t)cap, sizeof *outer);
	kiln_value **in = calloc((size_t)cap, sizeof *in);
	kiln_node **order = malloc(sizeof *order * (size_t)(s->n + 1));
	bool *after = calloc((size_t)s->n + 1, sizeof *after);
	int n_bind = 0, n_outer = 0;
	kiln_status st = KILN_OK;
	if (!body || !bind || !outer || !in || !order || !after)
		goto oom;
	const char *origin = NULL;
	for (int i = first; i <= last; i++) {
		if (!in_group(s, i))
			continue;
		kiln_node *n = g->nodes[i];
		for (int k = 0; k < n->n_inputs; k++) {
			kiln_value *v = n->inputs[k];
			/* the root's Scale and B stay tensors: never immediates */
			bool tensor = n == root && k > 0;
			in[k] = v ? bound(bind, n_bind, v, tensor) : NULL;
			if (!v || in[k])
				continue;
			const char *nm = kiln_graph_find_value(body, v->name)
			                     ? kiln_graph_unique_value_name(body, v->name)
			                     : v->name;
			if (!nm)
				goto oom;
			if (!tensor && kiln_loop_is_immediate(v)) {
				in[k] = kiln_graph_add_const(body, nm, &v->type, v->data);
			} else {
				in[k] = kiln_graph_add_input(body, nm, &v->type);
				outer[n_outer++] = v;
			}
			if (!in[k])
				goto oom;
			bind[n_bind++] = (binding){v, in[k]};
		}
		kiln_node *c = kiln_graph_copy_node(body, n, in);
		if (!c)
			goto oom;
		bind[n_bind++] = (binding){n->outputs[0], c->outputs[0]};
		if (!origin) {
			origin = n->origin ? n->origin : n->name;
		} else {
			kiln_node tmp = *root;
			tmp.origin = origin;
			origin = kiln_pass_join_origin(g, &tmp, n);
		}
	}
	for (int i = first; i <= last; i++)
		if (in_group(s, i) && used_outside(s, i) &&
		    kiln_graph_add_output(body, bound(bind, n_bind, g->nodes[i]->outputs[0], false)) !=
		        KILN_OK)
			goto oom;
	if (body->n_outputs == 0)
		goto done; /* nothing reads the group: dce's job */
	st = kiln_infer_shapes(body, s->d);
	if (st != KILN_OK)
		goto done;
	kiln_node *f = kiln_graph_add_fusion(g, KILN_FUSION_REDUCTION, name, body, outer, n_outer, NULL);
	if (!f)
		goto oom;
	f->origin = origin;
	/* the fusion node takes over the members' output values */
	int j = 0;
	for (int i = first; i <= last; i++)
		if (in_group(s, i) && used_outside(s, i)) {
			kiln_value *y = g->nodes[i]->outputs[0];
			f->outputs[j] = y;
			y->producer = f;
			y->index = j++;
		}
	/* the nodes between first and last that depend on the group go after
	 * the fusion node, in their order; the others stay before it */
	for (int i = first; i <= last; i++) {
		const kiln_node *n = g->nodes[i];
		for (int k = 0; k < n->n_inputs && !in_group(s, i) && !after[i]; k++) {
			const kiln_value *v = n->inputs[k];
			if (v && v->kind == KILN_VALUE_NODE &&
			    (v->producer == f || after[s->index[v->producer->id]]))
				after[i] = true;
		}
	}
	int k = 0;
	for (int i = 0; i < first; i++)
		order[k++] = g->nodes[i];
	for (int i = first; i <= last; i++)
		if (!in_group(s, i) && !after[i])
			order[k++] = g->nodes[i];
	order[k++] = f;
	for (int i = first; i <= last; i++)
		if (after[i])
			order[k++] = g->nodes[i];
	for (int i = last + 1; i < s->n; i++)
		order[k++] = g->nodes[i];
	memcpy(g->nodes, order, sizeof *order * (size_t)k);
	g->n_nodes = k;
	goto done;
oom:
	st = kiln_diag_error(s->d, KILN_ERR_OOM, root, "out of memory fusing reductions");
done:
	free(bind);
	free(outer);
	free(in);
	free(order);
	free(after);
	return st;
}

kiln_status kiln_pass_fuse_reduction(kiln_graph *g, bool *changed, kiln_diag *d)
{
	/* the roots, found first: each build rewrites g->nodes */
	kiln_node **roots = malloc(sizeof *roots * (size_t)(g->n_nodes + 1));
	if (!roots)
		return kiln_diag_error(d, KILN_ERR_OOM, NULL, "out of memory fusing reductions");
	int n_roots = 0;
	for (int i = 0; i < g->n_nodes; i++)
		if (root_ok(g->nodes[i]))
			roots[n_roots++] = g->nodes[i];
	kiln_status st = KILN_OK;
	for (int r = 0; r < n_roots && st == KILN_OK; r++) {
		state s;
		st = state_init(&s, g, d);
		int ri = st == KILN_OK ? kiln_graph_node_index(g, roots[r]) : -1;
		int before = g->n_nodes;
		if (ri >= 0 && grow(&s, ri) > 0) {
			st = build(&s, ri);
			*changed |= g->n_nodes != before;
		}
		state_free(&s);
	}
	free(roots);
	if (*changed)
		kiln_graph_prune(g);
	return st;
}
