/* fuse_loop.c — loop fusion: connected f32 elementwise nodes whose outputs
 * all have one shape become one `fusion` node of kind "loop", which the
 * backend runs as one pass over that shape (inputs may broadcast to it:
 * scalars, per-row or per-column vectors, constants).
 *
 * Groups grow along producer -> consumer edges, visiting nodes in order:
 * each candidate starts a group and pulls in the groups of the candidates
 * that make its inputs, when the cost rule (fusion_cost.c) agrees and the
 * union stays convex — no path leaves it and comes back through another
 * node or group, so the graph with every group as one node stays acyclic.
 * Chains and trees fuse alike; a value used inside the group and outside
 * it (or a graph output) becomes one more output of the fusion node. A
 * group of one node stays as it was.
 *
 * The body holds copies of the members in order; its inputs are the
 * distinct tensors the members read from outside, and scalar f32 constants
 * become constants of the body (the backend's immediates). The fusion node
 * takes over the members' output values, so names and uses stay; it goes
 * where its first consumer needs it (a stable topological reorder).
 *
 * Needs: shapes inferred. Invalidates: node order, value ids (pruned). */
#include "passes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct group {
	int *members; /* node indices, ascending */
	int n;
	kiln_loop_cost cost;
	kiln_node *fused;
} group;

typedef struct state {
	kiln_graph *g;
	kiln_diag *d;
	int n;              /* nodes when the pass started */
	int *index;         /* node id -> index, -1 for none */
	int *grp;           /* node index -> group, -1 for none */
	group *groups;
	int n_groups;
	/* users: node index -> the indices of nodes reading its output (CSR) */
	int *use_start, *uses;
	bool *member;       /* by node id: the union being costed */
	int *seen;          /* node index -> stamp of the last search that saw it */
	int stamp;
	int *stack;
	kiln_loop_limits limits;
} state;

static kiln_status oom(state *s)
{
	return kiln_diag_error(s->d, KILN_ERR_OOM, NULL, "out of memory fusing loops");
}

static kiln_status build_uses(state *s)
{
	kiln_graph *g = s->g;
	s->use_start = calloc((size_t)s->n + 1, sizeof *s->use_start);
	if (!s->use_start)
		return oom(s);
	for (int pass = 0; pass < 2; pass++) {
		int *fill = NULL;
		if (pass == 1) {
			for (int i = 0; i < s->n; i++)
				s->use_start[i + 1] += s->use_start[i];
			s->uses = malloc(sizeof *s->uses * (size_t)(s->use_start[s->n] + 1));
			fill = calloc((size_t)s->n + 1, sizeof *fill);
			if (!s->uses || !fill) {
				free(fill);
				return oom(s);
			}
		}
		for (int j = 0; j < s->n; j++) {
			const kiln_node *u = g->nodes[j];
			for (int k = 0; k < u->n_inputs; k++) {
				const kiln_value *v = u->inputs[k];
				if (!v || v->kind != KILN_VALUE_NODE)
					continue;
				int p = s->index[v->producer->id];
				if (pass == 0)
					s->use_start[p + 1]++;
				else
					s->uses[s->use_start[p] + fill[p]++] = j;
			}
		}
		free(fill);
	}
	return KILN_OK;
}

/* Pushes node i for the convexity search, with every member of its group
 * (a group is one node once fused). */
static void push_unit(state *s, int i, int *top)
{
	int gi = s->grp[i];
	if (gi < 0 || s->groups[gi].n == 1) {
		if (s->seen[i] != s->stamp) {
			s->seen[i] = s->stamp;
			s->stack[(*top)++] = i;
		}
		return;
	}
	const group *gr = &s->groups[gi];
	for (int m = 0; m < gr->n; m++)
		if (s->seen[gr->members[m]] != s->stamp) {
			s->seen[gr->members[m]] = s->stamp;
			s->stack[(*top)++] = gr->members[m];
		}
}

/* Whether groups a and b as one would be convex: no path from the union
 * back into it through a node or group outside it. */
static bool convex(state *s, int a, int b)
{
	s->stamp++;
	int top = 0;
	const group *ga = &s->groups[a], *gb = &s->groups[b];
	for (int pass = 0; pass < 2; pass++) {
		const group *gr = pass ? gb : ga;
		for (int m = 0; m < gr->n; m++)
			for (int u = s->use_start[gr->members[m]]; u < s->use_start[gr->members[m] + 1]; u++) {
				int j = s->uses[u];
				if (s->grp[j] != a && s->grp[j] != b)
					push_unit(s, j, &top);
			}
	}
	while (top > 0) {
		int i = s->stack[--top];
		if (s->grp[i] == a || s->grp[i] == b)
			return false;
		for (int u = s->use_start[i]; u < s->use_start[i + 1]; u++)
			push_unit(s, s->uses[u], &top);
	}
	return true;
}

static kiln_status group_cost(state *s, int a, int b, kiln_loop_cost *c)
{
	for (int pass = 0; pass < (b >= 0 ? 2 : 1); pass++) {
		const group *gr = &s->groups[pass ? b : a];
		for (int m = 0; m < gr->n; m++)
			s->member[s->g->nodes[gr->members[m]]->id] = true;
	}
	kiln_status st = kiln_loop_cost_of(s->g, s->member, c);
	for (int pass = 0; pass < (b >= 0 ? 2 : 1); pass++) {
		const group *gr = &s->groups[pass ? b : a];
		for (int m = 0; m < gr->n; m++)
			s->member[s->g->nodes[gr->members[m]]->id] = false;
	}
	return st;
}

/* Merges group b into a when the cost rule and convexity allow. */
static kiln_status try_merge(state *s, int a, int b)
{
	kiln_loop_cost m;
	if (group_cost(s, a, b, &m) != KILN_OK ||
	    !kiln_loop_merge_ok(&s->groups[a].cost, &s->groups[b].cost, &m, &s->limits) ||
	    !convex(s, a, b))
		return KILN_OK;
	group *ga = &s->groups[a], *gb = &s->groups[b];
	int n = ga->n + gb->n;
	int *mem = malloc(sizeof *mem * (size_t)n);
	if (!mem)
		return oom(s);
	/* merge the two ascending lists */
	int i = 0, j = 0, k = 0;
	while (i < ga->n || j < gb->n)
		mem[k++] = j >= gb->n || (i < ga->n && ga->members[i] < gb->members[j]) ? ga->members[i++]
		                                                                         : gb->members[j++];
	for (int q = 0; q < gb->n; q++)
		s->grp[gb->members[q]] = a;
	free(ga->members);
	free(gb->members);
	ga->members = mem;
	ga->n = n;
	gb->members = NULL;
	gb->n = 0;
	ga->cost = m;
	return KILN_OK;
}

/* Node i as a group of its own; a node past what the cost rule can count
 * (hundreds of inputs) stays out of every group. */
static kiln_status new_group(state *s, int i)
{
	group *gr = &s->groups[s->n_groups];
	gr->members = malloc(sizeof *gr->members);
	if (!gr->members)
		return oom(s);
	gr->members[0] = i;
	gr->n = 1;
	s->grp[i] = s->n_groups++;
	if (group_cost(s, s->grp[i], -1, &gr->cost) != KILN_OK)
		s->grp[i] = -1;
	return KILN_OK;
}

static bool same_dims(const kiln_type *a, const kiln_type *b)
{
	if (a->rank != b->rank)
		return false;
	for (int i = 0; i < a->rank; i++)
		if (a->dims[i] != b->dims[i])
			return false;
	return true;
}

static kiln_status form_groups(state *s)
{
	kiln_graph *g = s->g;
	for (int i = 0; i < s->n; i++) {
		kiln_node *n = g->nodes[i];
		if (!kiln_loop_candidate(n))
			continue;
		KILN_TRY(new_group(s, i));
		if (s->grp[i] < 0)
			continue;
		for (int k = 0; k < n->n_inputs; k++) {
			const kiln_value *v = n->inputs[k];
			if (!v || v->kind != KILN_VALUE_NODE)
				continue;
			int p = s->index[v->producer->id];
			if (s->grp[p] < 0 || s->grp[p] == s->grp[i] ||
			    !same_dims(&v->type, &n->outputs[0]->type))
				continue;
			KILN_TRY(try_merge(s, s->grp[i], s->grp[p]));
		}
	}
	return KILN_OK;
}

/* ---- building the fusion node ---- */

/* An outer value and the body value standing for it. */
typedef struct binding {
	const kiln_value *outer;
	kiln_value *inner;
} binding;

static kiln_value *bound(const binding *b, int n, const kiln_value *v)
{
	for (int i = 0; i < n; i++)
		if (b[i].outer == v)
			return b[i].inner;
	return NULL;
}

/* Whether member value y is read outside the group or is a graph output. */
static bool used_outside(const state *s, int gi, int i)
{
	const kiln_value *y = s->g->nodes[i]->outputs[0];
	for (int o = 0; o < s->g->n_outputs; o++)
		if (s->g->outputs[o] == y)
			return true;
	for (int u = s->use_start[i]; u < s->use_start[i + 1]; u++)
		if (s->grp[s->uses[u]] != gi)
			return true;
	return false;
}

static kiln_status build(state *s, int gi)
{
	kiln_graph *g = s->g;
	group *gr = &s->groups[gi];
	kiln_node *first = g->nodes[gr->members[0]];
	char base[200];
	snprintf(base, sizeof base, "%s.fused", first->name);
	const char *name = kiln_graph_unique_node_name(g, base);
	kiln_graph *body = name ? kiln_graph_create_body(g, name) : NULL;
	/* each member reads at most a few values: bindings for all of them */
	int cap = 0;
	for (int m = 0; m < gr->n; m++)
		cap += g->nodes[gr->members[m]]->n_inputs + 1;
	binding *bind = calloc((size_t)cap, sizeof *bind);
	kiln_value **outer = calloc((size_t)cap, sizeof *outer);
	kiln_value **in = calloc((size_t)cap, sizeof *in);
	int n_bind = 0, n_outer = 0;
	kiln_status st = KILN_OK;
	if (!body || !bind || !outer || !in)
		goto oom;
	const char *origin = NULL;
	for (int m = 0; m < gr->n; m++) {
		kiln_node *n = g->nodes[gr->members[m]];
		for (int k = 0; k < n->n_inputs; k++) {
			kiln_value *v = n->inputs[k];
			in[k] = v ? bound(bind, n_bind, v) : NULL;
			if (!v || in[k])
				continue;
			const char *nm = kiln_graph_find_value(body, v->name)
			                     ? kiln_graph_unique_value_name(body, v->name)
			                     : v->name;
			if (!nm)
				goto oom;
			if (kiln_loop_is_immediate(v)) {
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
			kiln_node tmp = *first;
			tmp.origin = origin;
			origin = kiln_pass_join_origin(g, &tmp, n);
		}
	}
	int n_out = 0;
	for (int m = 0; m < gr->n; m++)
		if (used_outside(s, gi, gr->members[m])) {
			const kiln_value *y = g->nodes[gr->members[m]]->outputs[0];
			if (kiln_graph_add_output(body, bound(bind, n_bind, y)) != KILN_OK)
				goto oom;
			n_out++;
		}
	if (n_out == 0)
		goto done; /* nothing reads the group: dce's job */
	st = kiln_infer_shapes(body, s->d);
	if (st != KILN_OK)
		goto done;
	kiln_node *f = kiln_graph_add_fusion(g, KILN_FUSION_LOOP, name, body, outer, n_outer, NULL);
	if (!f)
		goto oom;
	/* the fusion node takes over the members' output values */
	int j = 0;
	for (int m = 0; m < gr->n; m++)
		if (used_outside(s, gi, gr->members[m])) {
			kiln_value *y = g->nodes[gr->members[m]]->outputs[0];
			f->outputs[j] = y;
			y->producer = f;
			y->index = j++;
		}
	f->origin = origin;
	gr->fused = f;
	goto done;
oom:
	st = kiln_diag_error(s->d, KILN_ERR_OOM, first, "out of memory fusing loops");
done:
	free(bind);
	free(outer);
	free(in);
	return st;
}

/* ---- the new order ---- */

/* order[0..k): every node once, each after the producers of its inputs,
 * otherwise as in `list` (a depth-first pass that pulls a producer forward
 * only when a node needs it earlier: a fusion node placed at its last
 * member may make a value another node read before). */
static kiln_status reorder(state *s, kiln_node **list, int k, kiln_node **order)
{
	kiln_graph *g = s->g;
	int ids = g->next_node_id;
	int *pos = malloc(sizeof *pos * (size_t)(ids + 1));
	char *mark = calloc((size_t)k + 1, 1);
	int *stack = malloc(sizeof *stack * (size_t)(k + 1));
	int *cursor = calloc((size_t)k + 1, sizeof *cursor);
	kiln_status st = KILN_OK;
	if (!pos || !mark || !stack || !cursor) {
		st = oom(s);
		goto done;
	}
	for (int i = 0; i < ids; i++)
		pos[i] = -1;
	for (int i = 0; i < k; i++)
		pos[list[i]->id] = i;
	int out = 0;
	for (int r = 0; r < k; r++) {
		if (mark[r])
			continue;
		int top = 0;
		stack[top++] = r;
		mark[r] = 1; /* on the stack */
		while (top > 0) {
			int x = stack[top - 1];
			const kiln_node *n = list[x];
			int next = -1;
			while (cursor[x] < n->n_inputs && next < 0) {
				const kiln_value *v = n->inputs[cursor[x]++];
				if (!v || v->kind != KILN_VALUE_NODE || pos[v->producer->id] < 0)
					continue;
				int p = pos[v->producer->id];
				if (mark[p] == 1) {
					st = kiln_diag_error(s->d, KILN_ERR_INTERNAL, n,
					                     "loop fusion made a cycle");
					goto done;
				}
				if (!mark[p])
					next = p;
			}
			if (next >= 0) {
				mark[next] = 1;
				stack[top++] = next;
				continue;
			}
			mark[x] = 2;
			order[out++] = list[x];
			top--;
		}
	}
done:
	free(pos);
	free(mark);
	free(stack);
	free(cursor);
	return st;
}

kiln_status kiln_pass_fuse_loop(kiln_graph *g, bool *changed, kiln_diag *d)
{
	int n = g->n_nodes, ids = g->next_node_id;
	state s = {.g = g, .d = d, .n = n, .limits = kiln_loop_limits_default()};
	size_t cn = (size_t)(n ? n : 1);
	s.index = malloc(sizeof *s.index * (size_t)(ids + 1));
	s.grp = malloc(sizeof *s.grp * cn);
	s.groups = calloc(cn, sizeof *s.groups);
	s.member = calloc((size_t)ids + 1, sizeof *s.member);
	s.seen = calloc(cn, sizeof *s.seen);
	s.stack = malloc(sizeof *s.stack * cn);
	kiln_node **list = malloc(sizeof *list * cn), **order = malloc(sizeof *order * cn);
	kiln_status st = KILN_OK;
	if (!s.index || !s.grp || !s.groups || !s.member || !s.seen || !s.stack || !list || !order) {
		st = oom(&s);
		goto done;
	}
	for (int i = 0; i < ids; i++)
		s.index[i] = -1;
	for (int i = 0; i < n; i++) {
		s.index[g->nodes[i]->id] = i;
		s.grp[i] = -1;
	}
	st = build_uses(&s);
	if (st == KILN_OK)
		st = form_groups(&s);
	int built = 0;
	for (int i = 0; i < s.n_groups && st == KILN_OK; i++)
		if (s.groups[i].n > 1) {
			st = build(&s, i);
			built += s.groups[i].fused != NULL;
		}
	if (st != KILN_OK || !built)
		goto done;
	/* each fusion node where its last member was, then producers first */
	int k = 0;
	for (int i = 0; i < n; i++) {
		int gi = s.grp[i];
		if (gi < 0 || !s.groups[gi].fused)
			list[k++] = g->nodes[i];
		else if (s.groups[gi].members[s.groups[gi].n - 1] == i)
			list[k++] = s.groups[gi].fused;
	}
	st = reorder(&s, list, k, order);
	if (st != KILN_OK)
		goto done;
	memcpy(g->nodes, order, (size_t)k * sizeof *order);
	g->n_nodes = k;
	kiln_graph_prune(g);
	*changed = true;
done:
	if (s.groups)
		for (int i = 0; i < s.n_groups; i++)
			free(s.groups[i].members);
	free(s.index);
	free(s.grp);
	free(s.groups);
	free(s.member);
	free(s.seen);
	free(s.stack);
	free(s.use_start);
	free(s.uses);
	free(list);
	free(order);
	return st;
}
