/* simplify.c — algebraic identities that remove or shorten work, exactly
 * (every rewrite gives bit-identical results, up to the sign of a zero):
 *
 *   x*1, 1*x, x/1, x+0, 0+x, x-0   -> x   (a constant of ones / zeros of any
 *                                         shape that changes neither the
 *                                         output's shape nor its dtype)
 *   Identity(x), Dropout(x) in inference with its mask unused   -> x
 *   Transpose(Transpose(x, p1), p2)  -> Transpose(x, p1∘p2), or x when the
 *                                       composition is the identity
 *   Transpose(x, identity perm)      -> x
 *   Reshape(R(x)), R one of Reshape, Flatten, Squeeze, Unsqueeze
 *                                    -> Reshape(x) (the same target shape)
 *   R2(R1(x)) of those giving x's own shape (Squeeze / Unsqueeze pairs that
 *   cancel, a Reshape back)          -> x
 *   any of those giving its input's shape            -> x
 *   Cast(x) to x's dtype             -> x
 *   Cast(Cast(x, mid), to) where every value of x's dtype is exact in mid
 *                                    -> Cast(x, to), or x when to is x's dtype
 *                                       (f32->f64->f32 goes; f32->i32->f32
 *                                       stays: the middle cast truncates)
 *
 * "-> x" means the node goes and its uses read x. When its output is a graph
 * output, x (a node output or constant, not itself a graph output) takes
 * the output's name; when x is a graph input or output, the node stays.
 * One sweep in topological order, so chains collapse step by step.
 *
 * Needs: a verified graph. Leaves: the bypassed nodes and producers nothing
 * reads any more removed (dce). */
#include "passes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool is_output(const kiln_graph *g, const kiln_value *v)
{
	for (int i = 0; i < g->n_outputs; i++)
		if (g->outputs[i] == v)
			return true;
	return false;
}

/* The uses of y read x instead (same type); false when y's name cannot
 * survive (y a graph output and x a graph input or output). */
static bool forward(kiln_graph *g, kiln_value *y, kiln_value *x)
{
	if (!kiln_type_equal(&x->type, &y->type))
		return false;
	if (is_output(g, y)) {
		if (x->kind == KILN_VALUE_INPUT || is_output(g, x))
			return false;
		x->name = y->name; /* y goes with its producer: the name is unique again */
	}
	kiln_graph_replace_uses(g, y, x);
	return true;
}

static kiln_node *producer(const kiln_value *v, kiln_op op)
{
	return v && v->kind == KILN_VALUE_NODE && v->producer->op == op ? v->producer : NULL;
}

/* ---- x*1, x+0, ... ---- */

/* A constant with data all of whose elements equal c. */
static bool const_all(const kiln_value *v, double c)
{
	if (!v || v->kind != KILN_VALUE_CONST || !v->data || v->elided || v->quant)
		return false;
	int64_t n = kiln_type_numel(&v->type);
	for (int64_t i = 0; i < n; i++)
		if (kiln_const_get_f64(v, i) != c)
			return false;
	return true;
}

/* The operand the node passes through unchanged, or NULL. */
static kiln_value *neutral_operand(const kiln_node *n)
{
	kiln_value *a = n->inputs[0], *b = n->inputs[1];
	const kiln_type *y = &n->outputs[0]->type;
	bool a_ok = kiln_type_equal(&a->type, y), b_ok = kiln_type_equal(&b->type, y);
	switch (n->op) {
	case KILN_OP_ADD:
		return a_ok && const_all(b, 0.0) ? a : b_ok && const_all(a, 0.0) ? b : NULL;
	case KILN_OP_MUL:
		return a_ok && const_all(b, 1.0) ? a : b_ok && const_all(a, 1.0) ? b : NULL;
	case KILN_OP_SUB: return a_ok && const_all(b, 0.0) ? a : NULL;
	case KILN_OP_DIV: return a_ok && const_all(b, 1.0) ? a : NULL;
	default: return NULL;
	}
}

/* ---- Dropout ---- */

static bool dropout_inference(const kiln_graph *g, const kiln_node *n)
{
	if (n->n_outputs > 1 && kiln_value_uses(g, n->outputs[1]) > 0)
		return false;
	const kiln_value *t = kiln_node_in(n, 2);
	return !t || const_all(t, 0.0);
}

/* ---- Transpose ---- */

static int perm_of(const kiln_node *n, int64_t *p)
{
	const int64_t *v;
	int rank = n->inputs[0]->type.rank;
	int k = kiln_node_ints(n, "perm", &v);
	for (int i = 0; i < rank; i++)
		p[i] = k ? v[i] : rank - 1 - i;
	return rank;
}

static bool perm_identity(const int64_t *p, int rank)
{
	for (int i = 0; i < rank; i++)
		if (p[i] != i)
			return false;
	return true;
}

/* The simplify_* functions set *removed when n goes (its uses read x now). */
static kiln_status simplify_transpose(kiln_graph *g, kiln_node *n, bool *removed, bool *changed)
{
	int64_t p2[KILN_MAX_RANK], p1[KILN_MAX_RANK], c[KILN_MAX_RANK];
	int rank = perm_of(n, p2);
	if (perm_identity(p2, rank)) {
		*removed = forward(g, n->outputs[0], n->inputs[0]);
		*changed |= *removed;
		return KILN_OK;
	}
	kiln_node *t1 = producer(n->inputs[0], KILN_OP_TRANSPOSE);
	if (!t1)
		return KILN_OK;
	perm_of(t1, p1);
	for (int i = 0; i < rank; i++)
		c[i] = p1[p2[i]];
	if (perm_identity(c, rank)) {
		*removed = forward(g, n->outputs[0], t1->inputs[0]);
		*changed |= *removed;
		return KILN_OK;
	}
	KILN_TRY(kiln_node_set_ints(g, n, "perm", c, rank));
	n->inputs[0] = t1->inputs[0];
	n->origin = kiln_pass_join_origin(g, t1, n);
	*changed = true;
	return KILN_OK;
}

/* ---- Reshape-like ---- */

static bool reshape_like(const kiln_node *n)
{
	return n && (n->op == KILN_OP_RESHAPE || n->op == KILN_OP_FLATTEN ||
	             n->op == KILN_OP_SQUEEZE || n->op == KILN_OP_UNSQUEEZE);
}

/* Reshape n reads x (the input of reshape-like r1) instead of r1's output.
 * A 0 in the target shape copies an input dim: then the shape becomes the
 * explicit output dims (a new constant). */
static kiln_status bypass_reshape(kiln_graph *g, kiln_node *n, kiln_node *r1, bool *changed)
{
	const kiln_value *s = n->inputs[1];
	const kiln_type *y = &n->outputs[0]->type;
	if (s->kind != KILN_VALUE_CONST || !s->data || s->elided || kiln_type_numel(y) == 0)
		return KILN_OK; /* (with no elements, a -1 could resolve differently) */
	bool copies = false;
	for (int64_t i = 0; i < kiln_type_numel(&s->type); i++)
		copies |= kiln_const_get_i64(s, i) == 0;
	if (copies && !kiln_node_int(n, "allowzero", 0)) {
		int64_t dims[KILN_MAX_RANK];
		for (int i = 0; i < y->rank; i++) {
			if (y->dims[i] == 0)
				return KILN_OK; /* an explicit 0 would need allowzero */
			dims[i] = y->dims[i];
		}
		kiln_type t = {.dtype = KILN_DT_I64, .rank = 1, .dims = {y->rank}};
		char base[200];
		snprintf(base, sizeof base, "%s.shape", n->outputs[0]->name);
		const char *name = kiln_graph_unique_value_name(g, base);
		kiln_value *c = name ? kiln_graph_add_const(g, name, &t, dims) : NULL;
		if (!c)
			return KILN_ERR_OOM;
		n->inputs[1] = c;
	}
	n->inputs[0] = r1->inputs[0];
	n->origin = kiln_pass_join_origin(g, r1, n);
	*changed = true;
	return KILN_OK;
}

static kiln_status simplify_reshape(kiln_graph *g, kiln_node *n, bool *removed, bool *changed)
{
	kiln_value *x = n->inputs[0], *y = n->outputs[0];
	if (kiln_type_equal(&x->type, &y->type)) {
		*removed = forward(g, y, x);
		*changed |= *removed;
		return KILN_OK;
	}
	kiln_node *r1 = x->kind == KILN_VALUE_NODE && reshape_like(x->producer) ? x->producer : NULL;
	if (!r1)
		return KILN_OK;
	if (kiln_type_equal(&r1->inputs[0]->type, &y->type)) {
		*removed = forward(g, y, r1->inputs[0]);
		*changed |= *removed;
		return KILN_OK;
	}
	return n->op == KILN_OP_RESHAPE ? bypass_reshape(g, n, r1, changed) : KILN_OK;
}

/* ---- Cast ---- */

/* Every value of dtype a is exactly a value of dtype b. */
static bool lossless(kiln_dtype a, kiln_dtype b)
{
	if (a == b || a == KILN_DT_BOOL)
		return true;
	switch (a) {
	case KILN_DT_U8:
	case KILN_DT_I8: /* |x| <= 255: 8 significant bits fit even bf16 */
		return b == KILN_DT_I32 || b == KILN_DT_I64 || kiln_dtype_is_float(b);
	case KILN_DT_I32: return b == KILN_DT_I64 || b == KILN_DT_F64;
	case KILN_DT_F16:
	case KILN_DT_BF16: return b == KILN_DT_F32 || b == KILN_DT_F64;
	case KILN_DT_F32: return b == KILN_DT_F64;
	default: return false;
	}
}

static kiln_status simplify_cast(kiln_graph *g, kiln_node *n, bool *removed, bool *changed)
{
	kiln_value *x = n->inputs[0], *y = n->outputs[0];
	if (x->type.dtype == y->type.dtype) {
		*removed = forward(g, y, x);
		*changed |= *removed;
		return KILN_OK;
	}
	kiln_node *c1 = producer(x, KILN_OP_CAST);
	if (!c1 || !lossless(c1->inputs[0]->type.dtype, x->type.dtype))
		return KILN_OK;
	kiln_value *src = c1->inputs[0];
	if (src->type.dtype == y->type.dtype) {
		*removed = forward(g, y, src);
		*changed |= *removed;
		return KILN_OK;
	}
	n->inputs[0] = src;
	n->origin = kiln_pass_join_origin(g, c1, n);
	*changed = true;
	return KILN_OK;
}

kiln_status kiln_pass_simplify(kiln_graph *g, bool *changed, kiln_diag *d)
{
	bool *keep = malloc((size_t)(g->n_nodes ? g->n_nodes : 1));
	if (!keep)
		return kiln_diag_error(d, KILN_ERR_OOM, NULL, "out of memory in simplify");
	bool any = false;
	kiln_status st = KILN_OK;
	for (int i = 0; i < g->n_nodes && st == KILN_OK; i++) {
		kiln_node *n = g->nodes[i];
		bool removed = false;
		switch (n->op) {
		case KILN_OP_IDENTITY:
			removed = forward(g, n->outputs[0], n->inputs[0]);
			break;
		case KILN_OP_DROPOUT:
			removed = dropout_inference(g, n) && forward(g, n->outputs[0], n->inputs[0]);
			break;
		case KILN_OP_ADD:
		case KILN_OP_SUB:
		case KILN_OP_MUL:
		case KILN_OP_DIV: {
			kiln_value *x = neutral_operand(n);
			removed = x && forward(g, n->outputs[0], x);
			break;
		}
		case KILN_OP_TRANSPOSE: st = simplify_transpose(g, n, &removed, &any); break;
		case KILN_OP_RESHAPE:
		case KILN_OP_FLATTEN:
		case KILN_OP_SQUEEZE:
		case KILN_OP_UNSQUEEZE: st = simplify_reshape(g, n, &removed, &any); break;
		case KILN_OP_CAST: st = simplify_cast(g, n, &removed, &any); break;
		default: break;
		}
		keep[i] = !removed;
		any |= removed;
	}
	if (st == KILN_OK && any) {
		kiln_graph_compact(g, keep);
		*changed = true;
	}
	free(keep);
	if (st != KILN_OK)
		return kiln_diag_error(d, st, NULL, "out of memory in simplify");
	return any ? kiln_pass_dce(g, changed, d) : KILN_OK;
}
