/* cse.c — common-subexpression elimination.
 *
 *   - Two nodes with the same op, the same inputs (the same values in the
 *     same order; either order of the first two for a commutative op, COMM
 *     in ops.def) and the same attributes compute the same outputs: the
 *     later one goes and its uses read the earlier one's outputs.
 *   - Two constants with the same dtype, shape and bytes (at most
 *     KILN_CSE_CONST_BYTES, no quantisation parameters) are one: uses of the
 *     later one read the earlier one.
 *
 * One sweep in topological order: a merge rewrites the inputs of the nodes
 * after it, so whole duplicated chains merge. Value names stay where they
 * matter: when the value that goes is a graph output, the survivor takes
 * over that value (its own intermediate name goes instead); when both are
 * graph outputs, both nodes stay. Dropout (random in training mode) and
 * fusion nodes are never merged.
 *
 * Needs: a verified graph. Leaves: merged nodes removed, unused values
 * pruned. */
#include "passes.h"

#include <stdlib.h>
#include <string.h>

/* Largest constant compared byte for byte. */
#define KILN_CSE_CONST_BYTES ((size_t)64 << 10)

static uint64_t mix(uint64_t h, uint64_t x)
{
	return (h ^ x) * 1099511628211u;
}

static uint64_t hash_bytes(uint64_t h, const void *p, size_t n)
{
	const unsigned char *b = p;
	for (size_t i = 0; i < n; i++)
		h = mix(h, b[i]);
	return h;
}

static bool is_output(const kiln_graph *g, const kiln_value *v)
{
	for (int i = 0; i < g->n_outputs; i++)
		if (g->outputs[i] == v)
			return true;
	return false;
}

/* ---- nodes ---- */

static bool comm(const kiln_node *n)
{
	return (kiln_op_get(n->op)->flags & KILN_OPF_COMM) && n->n_inputs >= 2;
}

static uint64_t in_id(const kiln_node *n, int i)
{
	return n->inputs[i] ? (uint64_t)n->inputs[i]->id + 1 : 0;
}

/* Attribute order does not matter (a node's attributes are a set). */
static uint64_t node_hash(const kiln_node *n)
{
	uint64_t h = mix(1469598103934665603u, (uint64_t)n->op);
	h = mix(h, (uint64_t)n->n_inputs);
	h = mix(h, (uint64_t)n->n_outputs);
	int first = 0;
	if (comm(n)) {
		uint64_t a = in_id(n, 0), b = in_id(n, 1);
		h = mix(mix(h, a < b ? a : b), a < b ? b : a);
		first = 2;
	}
	for (int i = first; i < n->n_inputs; i++)
		h = mix(h, in_id(n, i));
	uint64_t attrs = 0;
	for (int i = 0; i < n->n_attrs; i++)
		attrs += hash_bytes(1469598103934665603u, n->attrs[i].name, strlen(n->attrs[i].name));
	return mix(h, attrs);
}

static bool attr_equal(const kiln_attr *a, const kiln_attr *b)
{
	if (a->kind != b->kind)
		return false;
	switch (a->kind) {
	case KILN_ATTR_INT: return a->u.i == b->u.i;
	case KILN_ATTR_FLOAT: return memcmp(&a->u.f, &b->u.f, sizeof a->u.f) == 0;
	case KILN_ATTR_STRING: return strcmp(a->u.s, b->u.s) == 0;
	case KILN_ATTR_INTS:
		return a->n == b->n && memcmp(a->u.ints, b->u.ints, (size_t)a->n * sizeof *a->u.ints) == 0;
	case KILN_ATTR_FLOATS:
		return a->n == b->n &&
		       memcmp(a->u.floats, b->u.floats, (size_t)a->n * sizeof *a->u.floats) == 0;
	case KILN_ATTR_TENSOR:
		return kiln_type_equal(&a->u.t->type, &b->u.t->type) &&
		       memcmp(a->u.t->data, b->u.t->data, kiln_type_bytes(&a->u.t->type)) == 0;
	default: return false;
	}
}

static bool attrs_equal(const kiln_node *a, const kiln_node *b)
{
	if (a->n_attrs != b->n_attrs)
		return false;
	for (int i = 0; i < a->n_attrs; i++) {
		const kiln_attr *o = kiln_node_attr(b, a->attrs[i].name);
		if (!o || !attr_equal(&a->attrs[i], o))
			return false;
	}
	return true;
}

static bool nodes_equal(const kiln_node *a, const kiln_node *b)
{
	if (a->op != b->op || a->n_inputs != b->n_inputs || a->n_outputs != b->n_outputs)
		return false;
	int first = 0;
	if (comm(a)) {
		bool same = a->inputs[0] == b->inputs[0] && a->inputs[1] == b->inputs[1];
		bool swapped = a->inputs[0] == b->inputs[1] && a->inputs[1] == b->inputs[0];
		if (!same && !swapped)
			return false;
		first = 2;
	}
	for (int i = first; i < a->n_inputs; i++)
		if (a->inputs[i] != b->inputs[i])
			return false;
	for (int i = 0; i < a->n_outputs; i++)
		if (!kiln_type_equal(&a->outputs[i]->type, &b->outputs[i]->type))
			return false;
	return attrs_equal(a, b);
}

/* ---- constants ---- */

static bool const_candidate(const kiln_value *v)
{
	return v->kind == KILN_VALUE_CONST && v->data && !v->elided && !v->quant &&
	       kiln_type_bytes(&v->type) <= KILN_CSE_CONST_BYTES;
}

static uint64_t const_hash(const kiln_value *v)
{
	uint64_t h = mix(1469598103934665603u, (uint64_t)v->type.dtype + 1);
	for (int i = 0; i < v->type.rank; i++)
		h = mix(h, (uint64_t)v->type.dims[i]);
	return hash_bytes(mix(h, (uint64_t)v->type.rank), v->data, kiln_type_bytes(&v->type));
}

static bool consts_equal(const kiln_value *a, const kiln_value *b)
{
	return kiln_type_equal(&a->type, &b->type) &&
	       memcmp(a->data, b->data, kiln_type_bytes(&a->type)) == 0;
}

/* ---- an open-addressing table of earlier nodes or constants ---- */

typedef struct table {
	void **slot;
	uint64_t *hash;
	size_t cap;
} table;

static bool table_init(table *t, int count)
{
	t->cap = 16;
	while (t->cap < (size_t)count * 2)
		t->cap *= 2;
	t->slot = calloc(t->cap, sizeof *t->slot);
	t->hash = calloc(t->cap, sizeof *t->hash);
	return t->slot && t->hash;
}

static void table_free(table *t)
{
	free(t->slot);
	free(t->hash);
}

/* The earlier entry equal to p, or NULL after inserting p. */
static void *table_find_or_add(table *t, void *p, uint64_t h, bool (*eq)(const void *, const void *))
{
	size_t i = (size_t)h & (t->cap - 1);
	for (; t->slot[i]; i = (i + 1) & (t->cap - 1))
		if (t->hash[i] == h && eq(t->slot[i], p))
			return t->slot[i];
	t->slot[i] = p;
	t->hash[i] = h;
	return NULL;
}

static bool eq_node(const void *a, const void *b) { return nodes_equal(a, b); }
static bool eq_const(const void *a, const void *b) { return consts_equal(a, b); }

/* Uses of `dup` go to `keep` (same type). When dup is a graph output, keep
 * (then not one) takes dup's name, so the output's name stays and keep's
 * intermediate name goes. Not when both are graph outputs. */
static bool can_merge(const kiln_graph *g, const kiln_value *keep, const kiln_value *dup)
{
	return !is_output(g, dup) || !is_output(g, keep);
}

static void merge_value(kiln_graph *g, kiln_value *keep, kiln_value *dup)
{
	if (is_output(g, dup))
		keep->name = dup->name; /* dup is pruned below: the name is unique again */
	kiln_graph_replace_uses(g, dup, keep);
}

kiln_status kiln_pass_cse(kiln_graph *g, bool *changed, kiln_diag *d)
{
	table nodes = {0}, consts = {0};
	bool *keep = malloc((size_t)(g->n_nodes ? g->n_nodes : 1));
	if (!keep || !table_init(&nodes, g->n_nodes) || !table_init(&consts, g->n_values)) {
		free(keep);
		table_free(&nodes);
		table_free(&consts);
		return kiln_diag_error(d, KILN_ERR_OOM, NULL, "out of memory in cse");
	}
	bool merged = false;
	/* constants first: nodes reading equal constants then compare equal */
	int n_values = g->n_values;
	for (int i = 0; i < n_values; i++) {
		kiln_value *v = g->values[i];
		if (!const_candidate(v))
			continue;
		kiln_value *first = table_find_or_add(&consts, v, const_hash(v), eq_const);
		if (first && can_merge(g, first, v)) {
			merge_value(g, first, v);
			merged = true;
		}
	}
	for (int i = 0; i < g->n_nodes; i++) {
		kiln_node *n = g->nodes[i];
		keep[i] = true;
		if (n->op == KILN_OP_FUSION || n->op == KILN_OP_DROPOUT)
			continue;
		kiln_node *first = table_find_or_add(&nodes, n, node_hash(n), eq_node);
		if (!first)
			continue;
		bool ok = true;
		for (int k = 0; k < n->n_outputs; k++)
			ok = ok && can_merge(g, first->outputs[k], n->outputs[k]);
		if (!ok)
			continue;
		for (int k = 0; k < n->n_outputs; k++)
			merge_value(g, first->outputs[k], n->outputs[k]);
		keep[i] = false;
		merged = true;
	}
	if (merged) {
		kiln_graph_compact(g, keep);
		kiln_graph_prune(g);
		*changed = true;
	}
	free(keep);
	table_free(&nodes);
	table_free(&consts);
	return KILN_OK;
}
