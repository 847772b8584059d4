/* fuse_patterns.c — decomposed ops, as exporters write them, back into the
 * one op kiln has a kernel for (f32 only):
 *
 *   LayerNormalization (axis: the trailing axes reduced, epsilon e):
 *       m = ReduceMean(x)   d = x - m   v = ReduceMean(d^2 | d*d)
 *       y = d / Sqrt(v + e)   [* gamma]   [+ beta]
 *   Gelu (approximate "none"):  x * 0.5 * (1 + Erf(x / sqrt 2 | x * (1/sqrt 2)))
 *   Gelu (approximate "tanh"):  x * 0.5 * (1 + Tanh(sqrt(2/pi) * (x + 0.044715 * x^3)))
 *       x^3 as Pow(x, 3) or x*x*x; the product of x, 0.5 and (1 + ...) in any
 *       of its groupings: ((x*a)*0.5, (a*0.5)*x, (x*0.5)*a)
 *   Softmax (axis -1):  e = Exp(x - ReduceMax(x))   y = e / ReduceSum(e)
 *
 * Reductions must keep their dims and run over the last axis (the trailing
 * axes for LayerNormalization, both reductions the same); constants are
 * scalars (Pow's exponent and the Add's 1 may be any all-equal constant)
 * matched to 1e-6 relative; gamma and beta must broadcast over the
 * normalised dims only. Every value inside a pattern must have no use
 * outside it (and not be a graph output); binary ops match in either
 * operand order where they commute. The pattern's last node becomes the
 * fused op and keeps its output value (names and uses stay); the other
 * nodes go. Softmax from Exp(x)/ReduceSum(Exp(x)) without the max is left
 * alone: Softmax does not overflow where it would.
 *
 * Needs: a verified graph. Leaves: pattern nodes removed, unused constants
 * pruned; new constants for LayerNormalization's scale (ones) when there is
 * no gamma, and for a gamma or beta with leading 1 dims. */
#include "passes.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_NODES 12

typedef struct ctx {
	kiln_graph *g;
	bool *dead; /* by node id: a pattern node that goes */
} ctx;

/* The nodes of one match; the last one becomes the fused op. */
typedef struct match {
	kiln_node *n[MAX_NODES];
	int count;
} match;

static void add(match *m, kiln_node *n)
{
	if (m->count < MAX_NODES)
		m->n[m->count++] = n;
}

static bool is_output(const kiln_graph *g, const kiln_value *v)
{
	for (int i = 0; i < g->n_outputs; i++)
		if (g->outputs[i] == v)
			return true;
	return false;
}

/* The live node of op `op` producing v, or NULL. */
static kiln_node *prod(const ctx *c, const kiln_value *v, kiln_op op)
{
	if (!v || v->kind != KILN_VALUE_NODE || v->producer->op != op || c->dead[v->producer->id])
		return NULL;
	return v->producer;
}

/* Every use of v is by node a or b (b may be NULL), and v is not a graph
 * output: v may go with them. */
static bool used_only_by(const ctx *c, const kiln_value *v, const kiln_node *a, const kiln_node *b)
{
	if (is_output(c->g, v))
		return false;
	for (int i = 0; i < c->g->n_nodes; i++) {
		const kiln_node *n = c->g->nodes[i];
		if (n == a || n == b)
			continue;
		for (int j = 0; j < n->n_inputs; j++)
			if (n->inputs[j] == v)
				return false;
	}
	return true;
}

/* The one live user of v (v not a graph output), of op `op`, else NULL. */
static kiln_node *user(const ctx *c, const kiln_value *v, kiln_op op)
{
	kiln_node *u = kiln_pass_single_user(c->g, v);
	return u && u->op == op && !c->dead[u->id] ? u : NULL;
}

/* A binary node's operand other than v (v itself when both are v). */
static kiln_value *other(const kiln_node *n, const kiln_value *v)
{
	return n->inputs[0] == v ? n->inputs[1] : n->inputs[1] == v ? n->inputs[0] : NULL;
}

static bool close_to(double a, double b)
{
	return fabs(a - b) <= 1e-6 * fabs(b);
}

/* A float constant with data whose elements all lie within 1e-6 of c
 * (relative); scalar: exactly one element. */
static bool const_near(const kiln_value *v, double c, bool scalar)
{
	if (!v || v->kind != KILN_VALUE_CONST || !v->data || v->elided || v->quant ||
	    !kiln_dtype_is_float(v->type.dtype))
		return false;
	int64_t n = kiln_type_numel(&v->type);
	if (n < 1 || (scalar && n != 1))
		return false;
	for (int64_t i = 0; i < n; i++)
		if (!close_to(kiln_const_get_f64(v, i), c))
			return false;
	return true;
}

static bool same_type(const kiln_value *a, const kiln_value *b)
{
	return kiln_type_equal(&a->type, &b->type);
}

/* The reduction keeps its dims and runs over axes start..rank-1; sets
 * *start. */
static bool trailing_reduce(const kiln_node *n, int *start)
{
	const kiln_type *x = &n->inputs[0]->type;
	const kiln_value *axes = kiln_node_in(n, 1);
	if (kiln_node_int(n, "keepdims", 1) != 1 || x->rank < 1)
		return false;
	bool mask[KILN_MAX_RANK] = {false};
	if (!axes || kiln_type_numel(&axes->type) == 0) {
		if (kiln_node_int(n, "noop_with_empty_axes", 0))
			return false;
		for (int i = 0; i < x->rank; i++)
			mask[i] = true;
	} else {
		if (axes->kind != KILN_VALUE_CONST || !axes->data || axes->elided)
			return false;
		for (int64_t i = 0; i < kiln_type_numel(&axes->type); i++) {
			int a;
			if (!kiln_axis_norm(kiln_const_get_i64(axes, i), x->rank, &a))
				return false;
			mask[a] = true;
		}
	}
	int s = x->rank;
	while (s > 0 && mask[s - 1])
		s--;
	for (int i = 0; i < s; i++)
		if (mask[i])
			return false;
	*start = s;
	return s < x->rank;
}

/* "a,b,c": the origins (or names) of the match's nodes, in g's arena. */
static const char *join_origins(kiln_graph *g, const match *m)
{
	size_t len = 1;
	for (int i = 0; i < m->count; i++)
		len += strlen(m->n[i]->origin ? m->n[i]->origin : m->n[i]->name) + 1;
	char *s = kiln_arena_alloc(g->arena, len);
	if (!s)
		return NULL;
	char *p = s;
	for (int i = 0; i < m->count; i++) {
		const char *o = m->n[i]->origin ? m->n[i]->origin : m->n[i]->name;
		size_t k = strlen(o);
		if (i)
			*p++ = ',';
		memcpy(p, o, k);
		p += k;
	}
	*p = 0;
	return s;
}

/* The match's last node becomes `op` on inputs in[0..n_in), named after the
 * first node; the others are marked dead. The attributes are set by the
 * caller, then rewrite_done checks the output type. */
static kiln_status rewrite(ctx *c, match *m, kiln_op op, const char *suffix,
                           kiln_value *const *in, int n_in, kiln_diag *d)
{
	kiln_node *t = m->n[m->count - 1];
	char base[256];
	snprintf(base, sizeof base, "%s.%s", m->n[0]->name, suffix);
	const char *name = kiln_graph_unique_node_name(c->g, base);
	const char *origin = join_origins(c->g, m);
	kiln_value **ins = kiln_arena_alloc(c->g->arena, (size_t)n_in * sizeof *ins);
	if (!name || !origin || !ins)
		return kiln_diag_error(d, KILN_ERR_OOM, t, "out of memory fusing patterns");
	memcpy(ins, in, (size_t)n_in * sizeof *ins);
	t->op = op;
	t->name = name;
	t->origin = origin;
	t->inputs = ins;
	t->n_inputs = n_in;
	t->attrs = NULL;
	t->n_attrs = 0;
	for (int i = 0; i + 1 < m->count; i++)
		c->dead[m->n[i]->id] = true;
	return KILN_OK;
}

static kiln_status rewrite_done(kiln_node *t, kiln_diag *d)
{
	kiln_type want = t->outputs[0]->type;
	KILN_TRY(kiln_infer_node(t, d));
	if (!kiln_type_equal(&want, &t->outputs[0]->type))
		return kiln_diag_error(d, KILN_ERR_INTERNAL, t, "fused op changed the output type");
	return KILN_OK;
}

/* ---- x * 0.5 * a, in any grouping: the node computing it, or NULL ---- */

static kiln_node *half_product(const ctx *c, kiln_value *x, kiln_value *a, match *m)
{
	kiln_node *u = user(c, a, KILN_OP_MUL);
	if (!u || !same_type(u->outputs[0], x))
		return NULL;
	kiln_value *o = other(u, a);
	kiln_node *h = prod(c, o, KILN_OP_MUL), *t = NULL;
	if (o == x || const_near(o, 0.5, true)) { /* (x*a)*0.5 or (a*0.5)*x */
		t = user(c, u->outputs[0], KILN_OP_MUL);
		kiln_value *o2 = t ? other(t, u->outputs[0]) : NULL;
		if (!t || !(o == x ? const_near(o2, 0.5, true) : o2 == x))
			return NULL;
		add(m, u);
	} else if (h && used_only_by(c, o, u, NULL) && /* (x*0.5)*a */
	           ((h->inputs[0] == x && const_near(h->inputs[1], 0.5, true)) ||
	            (h->inputs[1] == x && const_near(h->inputs[0], 0.5, true)))) {
		add(m, h);
		t = u;
	} else {
		return NULL;
	}
	if (!same_type(t->outputs[0], x))
		return NULL;
	add(m, t);
	return t;
}

/* a = 1 + f (f the Erf's or Tanh's output); the Add, or NULL. */
static kiln_node *one_plus(const ctx *c, kiln_value *f, const kiln_value *x)
{
	kiln_node *a = user(c, f, KILN_OP_ADD);
	return a && const_near(other(a, f), 1.0, false) && same_type(a->outputs[0], x) ? a : NULL;
}

/* Operand of binary n (MUL or DIV by the constant k): the non-constant one. */
static kiln_value *scaled_by(const kiln_node *n, double k)
{
	if (n->op == KILN_OP_DIV)
		return const_near(n->inputs[1], k, true) ? n->inputs[0] : NULL;
	if (const_near(n->inputs[1], k, true))
		return n->inputs[0];
	return const_near(n->inputs[0], k, true) ? n->inputs[1] : NULL;
}

static kiln_status gelu_finish(ctx *c, match *m, kiln_value *x, kiln_node *f, bool tanh_mode,
                               bool *changed, kiln_diag *d)
{
	kiln_node *a = one_plus(c, f->outputs[0], x);
	if (!a)
		return KILN_OK;
	add(m, f);
	add(m, a);
	if (!half_product(c, x, a->outputs[0], m))
		return KILN_OK;
	KILN_TRY(rewrite(c, m, KILN_OP_GELU, "gelu", &x, 1, d));
	kiln_node *t = m->n[m->count - 1];
	if (tanh_mode)
		KILN_TRY(kiln_node_set_string(c->g, t, "approximate", "tanh"));
	KILN_TRY(rewrite_done(t, d));
	*changed = true;
	return KILN_OK;
}

/* Anchored at the Erf. */
static kiln_status gelu_erf(ctx *c, kiln_node *e, bool *changed, kiln_diag *d)
{
	kiln_value *t = e->inputs[0];
	kiln_node *s = prod(c, t, KILN_OP_DIV);
	kiln_value *x = s ? scaled_by(s, sqrt(2.0)) : NULL;
	if (!x && (s = prod(c, t, KILN_OP_MUL)))
		x = scaled_by(s, sqrt(0.5));
	if (!x || x->type.dtype != KILN_DT_F32 || !same_type(t, x) || !same_type(e->outputs[0], x) ||
	    !used_only_by(c, t, e, NULL))
		return KILN_OK;
	match m = {.count = 0};
	add(&m, s);
	return gelu_finish(c, &m, x, e, false, changed, d);
}

/* c3 = x*x*x (or Pow(x, 3)) for some x; returns x and adds the nodes. */
static kiln_value *cube_of(const ctx *c, const kiln_value *c3, match *m)
{
	kiln_node *p = prod(c, c3, KILN_OP_POW);
	if (p && const_near(p->inputs[1], 3.0, false) && same_type(p->inputs[0], c3)) {
		add(m, p);
		return p->inputs[0];
	}
	kiln_node *m2 = prod(c, c3, KILN_OP_MUL);
	if (!m2)
		return NULL;
	for (int i = 0; i < 2; i++) { /* m2 = sq * x, sq = x * x */
		kiln_value *x = m2->inputs[1 - i];
		kiln_node *sq = prod(c, m2->inputs[i], KILN_OP_MUL);
		if (sq && sq->inputs[0] == x && sq->inputs[1] == x && same_type(x, c3) &&
		    used_only_by(c, sq->outputs[0], m2, NULL)) {
			add(m, sq);
			add(m, m2);
			return x;
		}
	}
	return NULL;
}

/* Anchored at the Tanh: its input is sqrt(2/pi) * (x + 0.044715 * x^3). */
static kiln_status gelu_tanh(ctx *c, kiln_node *th, bool *changed, kiln_diag *d)
{
	kiln_value *in = th->inputs[0];
	kiln_node *k = prod(c, in, KILN_OP_MUL);
	kiln_value *inner = k ? scaled_by(k, 0.79788456080286535588 /* sqrt(2/pi) */) : NULL;
	kiln_node *sum = prod(c, inner, KILN_OP_ADD);
	if (!sum || in->type.dtype != KILN_DT_F32 || !used_only_by(c, in, th, NULL) ||
	    !used_only_by(c, inner, k, NULL))
		return KILN_OK;
	for (int i = 0; i < 2; i++) {
		kiln_value *x = sum->inputs[i], *cs = sum->inputs[1 - i];
		kiln_node *sc = prod(c, cs, KILN_OP_MUL);
		kiln_value *c3 = sc ? scaled_by(sc, 0.044715) : NULL;
		match m = {.count = 0};
		if (!c3 || !used_only_by(c, cs, sum, NULL) || !used_only_by(c, c3, sc, NULL) ||
		    cube_of(c, c3, &m) != x || !same_type(x, in) || !same_type(inner, in) ||
		    !same_type(th->outputs[0], in))
			continue;
		add(&m, sc);
		add(&m, sum);
		add(&m, k);
		return gelu_finish(c, &m, x, th, true, changed, d);
	}
	return KILN_OK;
}

/* ---- LayerNormalization, anchored at the Div ---- */

/* gamma or beta w, operand of a Mul/Add whose output is x-shaped, as
 * LayerNormalization's scale or bias over the normalised dims x[axis:]: w
 * itself when it broadcasts to them, a constant without w's leading 1 dims,
 * or NULL. */
static kiln_value *ln_param(ctx *c, kiln_value *w, const kiln_type *x, int axis, kiln_diag *d,
                            kiln_status *st)
{
	int nr = x->rank - axis;
	const kiln_type *t = &w->type;
	if (t->dtype != x->dtype)
		return NULL;
	for (int i = t->rank - 1, j = x->rank - 1; i >= 0; i--, j--)
		if (j < axis ? t->dims[i] != 1 : t->dims[i] != 1 && t->dims[i] != x->dims[j])
			return NULL;
	if (t->rank <= nr)
		return w;
	if (w->kind != KILN_VALUE_CONST || !w->data || w->elided)
		return NULL;
	kiln_type s = {.dtype = t->dtype, .rank = nr};
	memcpy(s.dims, t->dims + t->rank - nr, (size_t)nr * sizeof *s.dims);
	char base[200];
	snprintf(base, sizeof base, "%s.ln", w->name);
	const char *name = kiln_graph_unique_value_name(c->g, base);
	kiln_value *v = name ? kiln_graph_add_const(c->g, name, &s, w->data) : NULL;
	if (!v)
		*st = kiln_diag_error(d, KILN_ERR_OOM, NULL, "out of memory fusing patterns");
	return v;
}

static kiln_status layer_norm(ctx *c, kiln_node *dv, bool *changed, kiln_diag *d)
{
	kiln_value *dsub = dv->inputs[0], *s = dv->inputs[1];
	kiln_node *sub = prod(c, dsub, KILN_OP_SUB), *sqrt_n = prod(c, s, KILN_OP_SQRT);
	kiln_node *mean = sub ? prod(c, sub->inputs[1], KILN_OP_REDUCE_MEAN) : NULL;
	kiln_node *add_e = sqrt_n ? prod(c, sqrt_n->inputs[0], KILN_OP_ADD) : NULL;
	if (!mean || !add_e || mean->inputs[0] != sub->inputs[0])
		return KILN_OK;
	kiln_value *x = sub->inputs[0];
	const kiln_type *xt = &x->type;
	int axis, axis2;
	if (xt->dtype != KILN_DT_F32 || !same_type(dsub, x) || !same_type(dv->outputs[0], x) ||
	    !trailing_reduce(mean, &axis))
		return KILN_OK;
	/* v + e, either order */
	kiln_node *var = NULL;
	kiln_value *eps = NULL;
	for (int i = 0; i < 2 && !var; i++)
		if ((var = prod(c, add_e->inputs[i], KILN_OP_REDUCE_MEAN)))
			eps = add_e->inputs[1 - i];
	if (!var || !trailing_reduce(var, &axis2) || axis2 != axis || !eps ||
	    eps->kind != KILN_VALUE_CONST || !eps->data || eps->elided ||
	    !kiln_dtype_is_float(eps->type.dtype) || kiln_type_numel(&eps->type) != 1)
		return KILN_OK;
	double e = kiln_const_get_f64(eps, 0);
	if (!(e >= 0) || !isfinite(e) || !same_type(var->outputs[0], mean->outputs[0]) ||
	    !same_type(add_e->outputs[0], var->outputs[0]) || !same_type(s, var->outputs[0]))
		return KILN_OK;
	/* the square: d^2 or d*d */
	kiln_node *sq = prod(c, var->inputs[0], KILN_OP_POW);
	if (sq && (sq->inputs[0] != dsub || !const_near(sq->inputs[1], 2.0, false)))
		sq = NULL;
	if (!sq && (sq = prod(c, var->inputs[0], KILN_OP_MUL)) &&
	    (sq->inputs[0] != dsub || sq->inputs[1] != dsub))
		sq = NULL;
	if (!sq || !same_type(sq->outputs[0], x) || !used_only_by(c, mean->outputs[0], sub, NULL) ||
	    !used_only_by(c, dsub, sq, dv) || !used_only_by(c, sq->outputs[0], var, NULL) ||
	    !used_only_by(c, var->outputs[0], add_e, NULL) ||
	    !used_only_by(c, add_e->outputs[0], sqrt_n, NULL) || !used_only_by(c, s, dv, NULL))
		return KILN_OK;
	match m = {.count = 0};
	kiln_node *pat[] = {mean, sub, sq, var, add_e, sqrt_n, dv};
	for (size_t i = 0; i < sizeof pat / sizeof *pat; i++)
		add(&m, pat[i]);
	/* then * gamma, + beta (each optional) */
	kiln_status st = KILN_OK;
	kiln_value *gamma = NULL, *beta = NULL, *y = dv->outputs[0];
	kiln_node *u = user(c, y, KILN_OP_MUL);
	if (u && same_type(u->outputs[0], x) && other(u, y) != y &&
	    (gamma = ln_param(c, other(u, y), xt, axis, d, &st))) {
		add(&m, u);
		y = u->outputs[0];
	}
	KILN_TRY(st);
	u = user(c, y, KILN_OP_ADD);
	if (u && same_type(u->outputs[0], x) && other(u, y) != y &&
	    (beta = ln_param(c, other(u, y), xt, axis, d, &st))) {
		add(&m, u);
		y = u->outputs[0];
	}
	KILN_TRY(st);
	if (!gamma) { /* LayerNormalization needs a scale: ones */
		kiln_type t = {.dtype = KILN_DT_F32, .rank = xt->rank - axis};
		memcpy(t.dims, xt->dims + axis, (size_t)t.rank * sizeof *t.dims);
		float *ones = malloc((size_t)(kiln_type_numel(&t) ? kiln_type_numel(&t) : 1) * sizeof *ones);
		char base[200];
		snprintf(base, sizeof base, "%s.scale", dv->outputs[0]->name);
		const char *name = ones ? kiln_graph_unique_value_name(c->g, base) : NULL;
		for (int64_t i = 0; ones && i < kiln_type_numel(&t); i++)
			ones[i] = 1.0f;
		gamma = name ? kiln_graph_add_const(c->g, name, &t, ones) : NULL;
		free(ones);
		if (!gamma)
			return kiln_diag_error(d, KILN_ERR_OOM, dv, "out of memory fusing patterns");
	}
	kiln_value *in[3] = {x, gamma, beta};
	KILN_TRY(rewrite(c, &m, KILN_OP_LAYER_NORM, "layernorm", in, beta ? 3 : 2, d));
	kiln_node *t = m.n[m.count - 1];
	KILN_TRY(kiln_node_set_int(c->g, t, "axis", axis - xt->rank));
	KILN_TRY(kiln_node_set_float(c->g, t, "epsilon", (float)e));
	KILN_TRY(rewrite_done(t, d));
	*changed = true;
	return KILN_OK;
}

/* ---- Softmax, anchored at the Exp ---- */

static kiln_status softmax(ctx *c, kiln_node *ex, bool *changed, kiln_diag *d)
{
	kiln_value *dd = ex->inputs[0], *e = ex->outputs[0];
	kiln_node *sub = prod(c, dd, KILN_OP_SUB);
	kiln_node *mx = sub ? prod(c, sub->inputs[1], KILN_OP_REDUCE_MAX) : NULL;
	if (!mx || mx->inputs[0] != sub->inputs[0])
		return KILN_OK;
	kiln_value *x = sub->inputs[0];
	int axis;
	if (x->type.dtype != KILN_DT_F32 || !same_type(dd, x) || !same_type(e, x) ||
	    !trailing_reduce(mx, &axis) || axis != x->type.rank - 1 ||
	    !used_only_by(c, mx->outputs[0], sub, NULL) || !used_only_by(c, dd, ex, NULL))
		return KILN_OK;
	/* e's users: the ReduceSum and the Div (e / sum) */
	kiln_node *rs = NULL, *dv = NULL;
	for (int i = 0; i < c->g->n_nodes; i++) {
		kiln_node *n = c->g->nodes[i];
		if (n->op == KILN_OP_REDUCE_SUM && n->inputs[0] == e && !c->dead[n->id])
			rs = n;
	}
	if (!rs || !trailing_reduce(rs, &axis) || axis != x->type.rank - 1 ||
	    !(dv = user(c, rs->outputs[0], KILN_OP_DIV)) || dv->inputs[0] != e ||
	    dv->inputs[1] != rs->outputs[0] || !used_only_by(c, e, rs, dv) ||
	    !same_type(dv->outputs[0], x))
		return KILN_OK;
	match m = {.count = 0};
	kiln_node *pat[] = {mx, sub, ex, rs, dv};
	for (size_t i = 0; i < sizeof pat / sizeof *pat; i++)
		add(&m, pat[i]);
	KILN_TRY(rewrite(c, &m, KILN_OP_SOFTMAX, "softmax", &x, 1, d));
	KILN_TRY(kiln_node_set_int(c->g, dv, "axis", -1));
	KILN_TRY(rewrite_done(dv, d));
	*changed = true;
	return KILN_OK;
}

kiln_status kiln_pass_fuse_patterns(kiln_graph *g, bool *changed, kiln_diag *d)
{
	ctx c = {.g = g, .dead = calloc((size_t)(g->next_node_id > 0 ? g->next_node_id : 1), 1)};
	bool *keep = malloc((size_t)(g->n_nodes ? g->n_nodes : 1));
	if (!c.dead || !keep) {
		free(c.dead);
		free(keep);
		return kiln_diag_error(d, KILN_ERR_OOM, NULL, "out of memory fusing patterns");
	}
	bool any = false;
	kiln_status st = KILN_OK;
	for (int i = 0; i < g->n_nodes && st == KILN_OK; i++) {
		kiln_node *n = g->nodes[i];
		if (c.dead[n->id])
			continue;
		switch (n->op) {
		case KILN_OP_DIV: st = layer_norm(&c, n, &any, d); break;
		case KILN_OP_ERF: st = gelu_erf(&c, n, &any, d); break;
		case KILN_OP_TANH: st = gelu_tanh(&c, n, &any, d); break;
		case KILN_OP_EXP: st = softmax(&c, n, &any, d); break;
		default: break;
		}
	}
	if (st == KILN_OK && any) {
		for (int i = 0; i < g->n_nodes; i++)
			keep[i] = !c.dead[g->nodes[i]->id];
		kiln_graph_compact(g, keep);
		kiln_graph_prune(g);
		*changed = true;
	}
	free(c.dead);
	free(keep);
	return st;
}
