/* fuse_attention.c — the attention-score block, as exporters write it, into
 * kiln's one Attention op (one kernel: the scores never reach memory):
 *
 *     s = MatMul(Q, KT)   [s = s * c | c * s | s / c]   [s = s + mask | mask + s]
 *     p = Softmax(s, last axis)   y = MatMul(p, V)
 *  -> y = Attention(Q, K, V[, mask]) {scale = c | 1/c | 1}
 *
 * Q [B,H,Sq,D], V [B,H,Skv,Dv] and the scores are 4-D f32; c is a
 * one-element f32 constant; the mask is f32 and broadcasts to the scores
 * (the Add keeps their type). KT [B,H,D,Skv] is a Transpose of K4 [B,H,Skv,D]
 * with perm [0,1,3,2] (K is K4), or of X [B,Skv,H,D] with perm [0,2,3,1]
 * (the head split BERT-style exporters write; K is a new
 * Transpose(X, [0,2,1,3]), which cse merges with an equal one). Every
 * value between the first MatMul and y has one use and is not a graph
 * output. The last MatMul becomes the Attention and keeps its output value;
 * the other nodes go, and so does KT's Transpose when the first MatMul was
 * its only user.
 *
 * Needs: a verified graph with static shapes. Leaves: the matched nodes
 * removed, unused constants pruned, the new K Transposes placed just before
 * their Attention. */
#include "passes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One match, anchored at the last MatMul. */
typedef struct att_match {
	kiln_node *qk, *scale, *add, *softmax, *pv; /* scale, add may be NULL */
	kiln_node *kt;   /* the Transpose producing KT */
	kiln_value *q, *k, *v, *mask;
	bool k_from_x;   /* k is X [B,S,H,D]: K = Transpose(X, [0,2,1,3]) */
	double scale_value;
} att_match;

typedef struct ctx {
	kiln_graph *g;
	bool *dead; /* by node id */
	int cap;
} ctx;

static bool live(const ctx *c, const kiln_node *n)
{
	return n->id >= c->cap || !c->dead[n->id];
}

/* The live node of op `op` producing v, or NULL. */
static kiln_node *prod(const ctx *c, const kiln_value *v, kiln_op op)
{
	if (!v || v->kind != KILN_VALUE_NODE || v->producer->op != op || !live(c, v->producer))
		return NULL;
	return v->producer;
}

/* v's one use is by n (and v is not a graph output). */
static bool only_use(const ctx *c, const kiln_value *v, const kiln_node *n)
{
	return kiln_pass_single_user(c->g, v) == n;
}

static bool f32_rank4(const kiln_value *v)
{
	return v && v->type.dtype == KILN_DT_F32 && v->type.rank == 4 && !v->quant;
}

static bool perm_is(const kiln_node *t, int64_t a, int64_t b, int64_t c, int64_t d)
{
	const int64_t *p;
	return kiln_node_ints(t, "perm", &p) == 4 && p[0] == a && p[1] == b && p[2] == c &&
	       p[3] == d;
}

/* A one-element f32 constant's value. */
static bool scalar_const(const kiln_value *v, double *out)
{
	const float *f = kiln_pass_const_f32(v);
	if (!f || kiln_type_numel(&v->type) != 1)
		return false;
	*out = f[0];
	return true;
}

/* s = MatMul(Q, KT) with KT a Transpose of K4 or X; fills q, k, kt. */
static bool match_qk(const ctx *c, kiln_value *s, att_match *m)
{
	kiln_node *mm = prod(c, s, KILN_OP_MATMUL);
	if (!mm || !f32_rank4(mm->inputs[0]) || !f32_rank4(mm->inputs[1]))
		return false;
	kiln_node *t = prod(c, mm->inputs[1], KILN_OP_TRANSPOSE);
	if (!t || !f32_rank4(t->inputs[0]))
		return false;
	if (perm_is(t, 0, 1, 3, 2))
		m->k_from_x = false;
	else if (perm_is(t, 0, 2, 3, 1))
		m->k_from_x = true;
	else
		return false;
	m->qk = mm;
	m->kt = t;
	m->q = mm->inputs[0];
	m->k = t->inputs[0];
	return true;
}

/* s = [scale](MatMul(Q, KT)): fills scale, scale_value and the MatMul's. */
static bool match_scaled(const ctx *c, kiln_value *s, att_match *m)
{
	m->scale = NULL;
	m->scale_value = 1.0;
	kiln_node *n = prod(c, s, KILN_OP_MUL);
	if (!n)
		n = prod(c, s, KILN_OP_DIV);
	if (n) {
		double k;
		kiln_value *x = NULL;
		if (scalar_const(n->inputs[1], &k))
			x = n->inputs[0];
		else if (n->op == KILN_OP_MUL && scalar_const(n->inputs[0], &k))
			x = n->inputs[1];
		if (x && (n->op == KILN_OP_MUL || k != 0.0) && kiln_type_equal(&x->type, &s->type) &&
		    only_use(c, x, n) && match_qk(c, x, m)) {
			m->scale = n;
			m->scale_value = n->op == KILN_OP_MUL ? k : 1.0 / k;
			return true;
		}
	}
	return match_qk(c, s, m);
}

/* y = MatMul(Softmax(...), V) at node pv: the whole block, or false. */
static bool match(const ctx *c, kiln_node *pv, att_match *m)
{
	memset(m, 0, sizeof *m);
	kiln_value *p = pv->inputs[0];
	kiln_node *sm = prod(c, p, KILN_OP_SOFTMAX);
	int axis;
	if (!sm || !f32_rank4(p) || !f32_rank4(pv->inputs[1]) || !only_use(c, p, pv) ||
	    !kiln_axis_norm(kiln_node_int(sm, "axis", -1), 4, &axis) || axis != 3)
		return false;
	kiln_value *x = sm->inputs[0];
	if (!only_use(c, x, sm))
		return false;
	kiln_node *add = prod(c, x, KILN_OP_ADD);
	bool found = false;
	for (int i = 0; add && i < 2 && !found; i++) {
		kiln_value *s = add->inputs[i], *mask = add->inputs[1 - i];
		if (s != mask && kiln_type_equal(&s->type, &x->type) && mask->type.dtype == KILN_DT_F32 &&
		    mask->type.rank <= 4 && !mask->quant && only_use(c, s, add) && match_scaled(c, s, m)) {
			m->add = add;
			m->mask = mask;
			found = true;
		}
	}
	if (!found && !match_scaled(c, x, m))
		return false;
	m->softmax = sm;
	m->pv = pv;
	m->v = pv->inputs[1];
	/* Q [B,H,Sq,D], KT [B,H,D,Skv], V [B,H,Skv,Dv]: the batch dims equal
	 * (MatMul would broadcast them; Attention does not). */
	const int64_t *q = m->q->type.dims, *kt = m->qk->inputs[1]->type.dims, *v = m->v->type.dims;
	return kt[0] == q[0] && kt[1] == q[1] && kt[2] == q[3] && v[0] == q[0] && v[1] == q[1] &&
	       v[2] == kt[3];
}

/* "a,b,...": the origins (or names) of nodes[0..n) that are not NULL. */
static const char *join_origins(kiln_graph *g, kiln_node *const *nodes, int n)
{
	size_t len = 1;
	for (int i = 0; i < n; i++)
		if (nodes[i])
			len += strlen(nodes[i]->origin ? nodes[i]->origin : nodes[i]->name) + 1;
	char *s = kiln_arena_alloc(g->arena, len), *p = s;
	for (int i = 0; s && i < n; i++) {
		if (!nodes[i])
			continue;
		const char *o = nodes[i]->origin ? nodes[i]->origin : nodes[i]->name;
		if (p != s)
			*p++ = ',';
		memcpy(p, o, strlen(o));
		p += strlen(o);
	}
	if (s)
		*p = 0;
	return s;
}

/* K = Transpose(X, [0,2,1,3]) inserted just before the Attention. */
static kiln_status make_k(ctx *c, att_match *m, kiln_diag *d)
{
	kiln_graph *g = c->g;
	char base[256];
	snprintf(base, sizeof base, "%s.k", m->kt->name);
	const char *name = kiln_graph_unique_node_name(g, base);
	snprintf(base, sizeof base, "%s.k", m->k->name);
	const char *vname = kiln_graph_unique_value_name(g, base);
	kiln_node *t = name && vname ? kiln_graph_add_node(g, KILN_OP_TRANSPOSE, name, &m->k, 1,
	                                                   &vname, 1)
	                             : NULL;
	if (!t)
		return kiln_diag_error(d, KILN_ERR_OOM, m->pv, "out of memory fusing attention");
	t->origin = m->kt->origin;
	KILN_TRY(kiln_node_set_ints(g, t, "perm", (const int64_t[]){0, 2, 1, 3}, 4));
	KILN_TRY(kiln_infer_node(t, d));
	kiln_graph_move_node(g, t, kiln_graph_node_index(g, m->pv));
	m->k = t->outputs[0];
	return KILN_OK;
}

/* The last MatMul becomes the Attention; the rest of the block is marked dead. */
static kiln_status rewrite(ctx *c, att_match *m, kiln_diag *d)
{
	kiln_graph *g = c->g;
	if (m->k_from_x)
		KILN_TRY(make_k(c, m, d));
	kiln_node *t = m->pv;
	kiln_node *parts[5] = {m->qk, m->scale, m->add, m->softmax, m->pv};
	char base[256];
	snprintf(base, sizeof base, "%s.attention", m->qk->name);
	const char *name = kiln_graph_unique_node_name(g, base);
	const char *origin = join_origins(g, parts, 5);
	int n_in = m->mask ? 4 : 3;
	kiln_value **ins = kiln_arena_alloc(g->arena, (size_t)n_in * sizeof *ins);
	if (!name || !origin || !ins)
		return kiln_diag_error(d, KILN_ERR_OOM, t, "out of memory fusing attention");
	ins[0] = m->q;
	ins[1] = m->k;
	ins[2] = m->v;
	if (m->mask)
		ins[3] = m->mask;
	kiln_type want = t->outputs[0]->type;
	bool kt_dies = only_use(c, m->kt->outputs[0], m->qk);
	t->op = KILN_OP_ATTENTION;
	t->name = name;
	t->origin = origin;
	t->inputs = ins;
	t->n_inputs = n_in;
	t->attrs = NULL;
	t->n_attrs = 0;
	KILN_TRY(kiln_node_set_float(g, t, "scale", (float)m->scale_value));
	KILN_TRY(kiln_infer_node(t, d));
	if (!kiln_type_equal(&want, &t->outputs[0]->type))
		return kiln_diag_error(d, KILN_ERR_INTERNAL, t, "Attention changed the output type");
	for (int i = 0; i < 4; i++)
		if (parts[i])
			c->dead[parts[i]->id] = true;
	if (kt_dies)
		c->dead[m->kt->id] = true;
	return KILN_OK;
}

kiln_status kiln_pass_fuse_attention(kiln_graph *g, bool *changed, kiln_diag *d)
{
	/* every node id, and those of the K Transposes (one per match at most) */
	ctx c = {.g = g, .cap = g->next_node_id + g->n_nodes + 1};
	c.dead = calloc((size_t)c.cap, 1);
	if (!c.dead)
		return kiln_diag_error(d, KILN_ERR_OOM, NULL, "out of memory fusing attention");
	bool any = false;
	kiln_status st = KILN_OK;
	for (int i = 0; i < g->n_nodes && st == KILN_OK; i++) {
		kiln_node *n = g->nodes[i];
		att_match m;
		if (n->op != KILN_OP_MATMUL || !live(&c, n) || !match(&c, n, &m))
			continue;
		st = rewrite(&c, &m, d);
		i = kiln_graph_node_index(g, n); /* past a K Transpose placed before it */
		any = true;
	}
	bool *keep = NULL;
	if (st == KILN_OK && any) {
		keep = malloc((size_t)g->n_nodes);
		if (!keep) {
			st = kiln_diag_error(d, KILN_ERR_OOM, NULL, "out of memory fusing attention");
		} else {
			for (int i = 0; i < g->n_nodes; i++)
				keep[i] = live(&c, g->nodes[i]);
			kiln_graph_compact(g, keep);
			kiln_graph_prune(g);
			*changed = true;
		}
	}
	free(keep);
	free(c.dead);
	return st;
}
