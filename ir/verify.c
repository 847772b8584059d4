/* verify.c — the IR verifier: checks every invariant the rest of kiln relies
 * on (types, unique names, arity, SSA order, producer links, constant data,
 * attribute kinds, quantisation parameters, graph outputs) and that every
 * node's output types are what shape inference gives; a fusion node's body
 * is checked as a graph of its own. Reports the first broken invariant as
 * KILN_ERR_VERIFY, naming the node where there is one. */
#include "ir.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TSTR(t) kiln_type_str((t), (char[256]){0}, 256)

/* ---- a set of names (open addressing), to find duplicates in O(n) ------ */

typedef struct name_set {
	const char **slots;
	size_t cap;
} name_set;

static bool name_set_init(name_set *s, int count)
{
	s->cap = 16;
	while (s->cap < (size_t)count * 2)
		s->cap *= 2;
	s->slots = calloc(s->cap, sizeof *s->slots);
	return s->slots != NULL;
}

/* Adds name; false if it was already there. */
static bool name_set_add(name_set *s, const char *name)
{
	size_t h = 1469598103934665603u;
	for (const char *p = name; *p; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211u;
	for (size_t i = h & (s->cap - 1);; i = (i + 1) & (s->cap - 1)) {
		if (!s->slots[i]) {
			s->slots[i] = name;
			return true;
		}
		if (strcmp(s->slots[i], name) == 0)
			return false;
	}
}

static kiln_status oom(kiln_diag *d)
{
	return kiln_diag_error(d, KILN_ERR_OOM, NULL, "out of memory while verifying");
}

/* ---- checks ----------------------------------------------------------- */

static kiln_status check_values(const kiln_graph *g, kiln_diag *d)
{
	name_set names;
	if (!name_set_init(&names, g->n_values))
		return oom(d);
	kiln_status st = KILN_OK;
	for (int i = 0; i < g->n_values && st == KILN_OK; i++) {
		const kiln_value *v = g->values[i];
		if (!v || !v->name) {
			st = kiln_diag_error(d, KILN_ERR_VERIFY, NULL, "value %d is missing or unnamed", i);
			break;
		}
		const kiln_type *t = &v->type;
		if (v->id != i) {
			st = kiln_diag_error(d, KILN_ERR_VERIFY, NULL, "value '%s' has id %d at index %d",
			                     v->name, v->id, i);
		} else if (!name_set_add(&names, v->name)) {
			st = kiln_diag_error(d, KILN_ERR_VERIFY, NULL, "value name '%s' is not unique",
			                     v->name);
		} else if ((unsigned)t->dtype >= KILN_DTYPE_COUNT) {
			st = kiln_diag_error(d, KILN_ERR_VERIFY, NULL, "value '%s' has invalid dtype %d",
			                     v->name, (int)t->dtype);
		} else if (t->rank < 0 || t->rank > KILN_MAX_RANK) {
			st = kiln_diag_error(d, KILN_ERR_VERIFY, NULL, "value '%s' has rank %d (at most %d)",
			                     v->name, t->rank, KILN_MAX_RANK);
		} else if (v->kind == KILN_VALUE_CONST && !v->data && !v->elided) {
			st = kiln_diag_error(d, KILN_ERR_VERIFY, NULL, "constant '%s' has no data", v->name);
		} else if ((unsigned)v->kind > KILN_VALUE_NODE) {
			st = kiln_diag_error(d, KILN_ERR_VERIFY, NULL, "value '%s' has invalid kind %d",
			                     v->name, (int)v->kind);
		}
		for (int k = 0; st == KILN_OK && k < t->rank; k++)
			if (t->dims[k] < 0)
				st = kiln_diag_error(d, KILN_ERR_VERIFY, NULL,
				                     "value '%s' has negative dim %lld at axis %d", v->name,
				                     (long long)t->dims[k], k);
		const kiln_quant *q = st == KILN_OK ? v->quant : NULL;
		if (q && (q->n < 1 || !q->scale || !q->zero_point ||
		          (q->axis == -1 ? q->n != 1
		                         : q->axis < 0 || q->axis >= t->rank || q->n != t->dims[q->axis])))
			st = kiln_diag_error(d, KILN_ERR_VERIFY, NULL,
			                     "value '%s' has invalid quantisation parameters (axis %d, %d "
			                     "scales)",
			                     v->name, q->axis, q->n);
	}
	free(names.slots);
	return st;
}

static kiln_status check_inputs(const kiln_graph *g, kiln_diag *d)
{
	for (int i = 0; i < g->n_inputs; i++) {
		const kiln_value *v = g->inputs[i];
		if (!v || v->kind != KILN_VALUE_INPUT || v->id < 0 || v->id >= g->n_values ||
		    g->values[v->id] != v)
			return kiln_diag_error(d, KILN_ERR_VERIFY, NULL,
			                       "graph input %d is not an input value of this graph", i);
	}
	return KILN_OK;
}

static bool in_graph(const kiln_graph *g, const kiln_value *v)
{
	return v->id >= 0 && v->id < g->n_values && g->values[v->id] == v;
}

/* Each attribute is named in the op's "name:kind,..." spec with its kind. */
static kiln_status check_attrs(const kiln_node *n, kiln_diag *d)
{
	static const char *const kinds[] = {
		[KILN_ATTR_INT] = "i",       [KILN_ATTR_FLOAT] = "f",      [KILN_ATTR_STRING] = "s",
		[KILN_ATTR_INTS] = "ints",   [KILN_ATTR_FLOATS] = "floats", [KILN_ATTR_TENSOR] = "t",
	};
	_Static_assert(sizeof kinds / sizeof *kinds == KILN_ATTR_KIND_COUNT,
	               "kinds must cover kiln_attr_kind");
	const char *spec = kiln_op_get(n->op)->attrs;
	for (int i = 0; i < n->n_attrs; i++) {
		const kiln_attr *a = &n->attrs[i];
		for (int j = 0; j < i; j++)
			if (strcmp(n->attrs[j].name, a->name) == 0)
				return kiln_diag_error(d, KILN_ERR_VERIFY, n, "attribute '%s' appears twice",
				                       a->name);
		if ((unsigned)a->kind >= KILN_ATTR_KIND_COUNT)
			return kiln_diag_error(d, KILN_ERR_VERIFY, n, "attribute '%s' has invalid kind %d",
			                       a->name, (int)a->kind);
		size_t len = strlen(a->name);
		const char *want = NULL;
		size_t want_len = 0;
		for (const char *p = spec; *p;) {
			const char *colon = strchr(p, ':');
			if (!colon)
				break;
			const char *end = strchr(colon, ',');
			if (!end)
				end = colon + strlen(colon);
			if ((size_t)(colon - p) == len && strncmp(p, a->name, len) == 0) {
				want = colon + 1;
				want_len = (size_t)(end - want);
				break;
			}
			p = *end ? end + 1 : end;
		}
		if (!want)
			return kiln_diag_error(d, KILN_ERR_VERIFY, n, "%s has no attribute '%s'",
			                       kiln_op_name(n->op), a->name);
		const char *kind = kinds[a->kind];
		if (strlen(kind) != want_len || strncmp(kind, want, want_len) != 0)
			return kiln_diag_error(d, KILN_ERR_VERIFY, n,
			                       "attribute '%s' has kind %s, expected %.*s", a->name, kind,
			                       (int)want_len, want);
		if ((a->kind == KILN_ATTR_INTS || a->kind == KILN_ATTR_FLOATS) &&
		    (a->n < 0 || (a->n > 0 && !a->u.ints)))
			return kiln_diag_error(d, KILN_ERR_VERIFY, n, "attribute '%s' has no values", a->name);
		if ((a->kind == KILN_ATTR_STRING && !a->u.s) || (a->kind == KILN_ATTR_TENSOR && !a->u.t))
			return kiln_diag_error(d, KILN_ERR_VERIFY, n, "attribute '%s' has no value", a->name);
	}
	return KILN_OK;
}

/* Re-runs the node's shape rule and compares; the outputs' types are saved
 * and restored, so the graph is unchanged whatever happens. */
static kiln_status check_types(kiln_node *n, kiln_diag *d)
{
	kiln_type saved_small[4];
	kiln_type *saved = n->n_outputs <= 4 ? saved_small : malloc((size_t)n->n_outputs * sizeof *saved);
	if (!saved)
		return oom(d);
	for (int i = 0; i < n->n_outputs; i++)
		saved[i] = n->outputs[i]->type;
	kiln_diag quiet;
	memset(&quiet, 0, sizeof quiet);
	kiln_status st = kiln_infer_node(n, &quiet);
	if (st != KILN_OK) {
		/* quiet.last reads "node 'NAME' (OP): reason"; keep the reason. */
		const char *reason = strstr(quiet.last, "): ");
		reason = reason ? reason + 3 : quiet.last;
		st = kiln_diag_error(d, KILN_ERR_VERIFY, n, "shape inference fails: %s", reason);
	}
	for (int i = 0; i < n->n_outputs && st == KILN_OK; i++) {
		if (!kiln_type_equal(&saved[i], &n->outputs[i]->type))
			st = kiln_diag_error(d, KILN_ERR_VERIFY, n,
			                     "output %d has type %s, shape inference gives %s", i,
			                     TSTR(&saved[i]), TSTR(&n->outputs[i]->type));
	}
	for (int i = 0; i < n->n_outputs; i++)
		n->outputs[i]->type = saved[i];
	if (saved != saved_small)
		free(saved);
	return st;
}

/* "2", "2 to 3" or "1 or more" */
static const char *count_range(int lo, int hi, char buf[static 32])
{
	if (hi < 0)
		snprintf(buf, 32, "%d or more", lo);
	else if (lo == hi)
		snprintf(buf, 32, "%d", lo);
	else
		snprintf(buf, 32, "%d to %d", lo, hi);
	return buf;
}

static kiln_status verify_graph(const kiln_graph *g, bool in_body, kiln_diag *d);

/* A fusion node: a kind, and a body of its own graph whose inputs and outputs
 * match the node's in number and type and which verifies by itself (its own
 * names, SSA order and types). Errors in the body are reported under the
 * fusion node's name. Bodies do not nest. */
static kiln_status check_fusion(const kiln_graph *g, const kiln_node *n, bool in_body,
                                kiln_diag *d)
{
	if (in_body)
		return kiln_diag_error(d, KILN_ERR_VERIFY, n, "nested fusion is not supported");
	const char *kind = kiln_node_string(n, "kind", NULL);
	kiln_fusion_kind k;
	if (!kind)
		return kiln_diag_error(d, KILN_ERR_VERIFY, n,
		                       "has no kind (\"loop\", \"output\" or \"reduction\")");
	if (!kiln_fusion_kind_parse(kind, &k))
		return kiln_diag_error(d, KILN_ERR_VERIFY, n,
		                       "kind \"%s\" is not \"loop\", \"output\" or \"reduction\"", kind);
	const kiln_graph *b = n->body;
	if (!b)
		return kiln_diag_error(d, KILN_ERR_VERIFY, n, "has no body");
	if (b->parent != g || b->arena != g->arena)
		return kiln_diag_error(d, KILN_ERR_VERIFY, n,
		                       "body does not belong to this graph (parent or arena)");
	if (n->n_inputs != b->n_inputs)
		return kiln_diag_error(d, KILN_ERR_VERIFY, n, "has %d inputs, but its body has %d",
		                       n->n_inputs, b->n_inputs);
	if (n->n_outputs != b->n_outputs)
		return kiln_diag_error(d, KILN_ERR_VERIFY, n, "has %d outputs, but its body has %d",
		                       n->n_outputs, b->n_outputs);
	for (int i = 0; i < n->n_inputs; i++) {
		const kiln_value *v = n->inputs[i], *bv = b->inputs[i];
		if (!v)
			return kiln_diag_error(d, KILN_ERR_VERIFY, n,
			                       "input %d is omitted, but body input %d needs a value", i, i);
		/* a broken body input is the body check's to report */
		if (bv && bv->name && !kiln_type_equal(&v->type, &bv->type))
			return kiln_diag_error(d, KILN_ERR_VERIFY, n,
			                       "input %d ('%s') has type %s, body input %d ('%s') has %s", i,
			                       v->name, TSTR(&v->type), i, bv->name, TSTR(&bv->type));
	}
	kiln_diag quiet;
	memset(&quiet, 0, sizeof quiet);
	kiln_status st = verify_graph(b, true, &quiet);
	if (st == KILN_ERR_OOM)
		return oom(d);
	if (st != KILN_OK)
		return kiln_diag_error(d, st, n, "body: %s", quiet.last);
	for (int i = 0; i < n->n_outputs; i++) {
		const kiln_value *v = n->outputs[i], *bv = b->outputs[i];
		if (!kiln_type_equal(&v->type, &bv->type))
			return kiln_diag_error(d, KILN_ERR_VERIFY, n,
			                       "output %d ('%s') has type %s, body output %d ('%s') has %s",
			                       i, v->name, TSTR(&v->type), i, bv->name, TSTR(&bv->type));
	}
	return KILN_OK;
}

static kiln_status check_node(const kiln_graph *g, kiln_node *n, const bool *defined,
                              bool in_body, kiln_diag *d)
{
	const kiln_op_info *info = kiln_op_get(n->op);
	if (!info)
		return kiln_diag_error(d, KILN_ERR_VERIFY, n, "invalid op %d", (int)n->op);
	char buf[32];
	if (n->n_inputs < info->in_min || (info->in_max >= 0 && n->n_inputs > info->in_max))
		return kiln_diag_error(d, KILN_ERR_VERIFY, n, "has %d inputs, the op takes %s",
		                       n->n_inputs, count_range(info->in_min, info->in_max, buf));
	if (n->n_outputs < info->out_min || (info->out_max >= 0 && n->n_outputs > info->out_max))
		return kiln_diag_error(d, KILN_ERR_VERIFY, n, "has %d outputs, the op takes %s",
		                       n->n_outputs, count_range(info->out_min, info->out_max, buf));
	for (int i = 0; i < n->n_inputs; i++) {
		const kiln_value *v = n->inputs[i];
		if (!v) {
			if (i < info->in_min)
				return kiln_diag_error(d, KILN_ERR_VERIFY, n,
				                       "input %d is required but omitted", i);
			continue;
		}
		if (!in_graph(g, v))
			return kiln_diag_error(d, KILN_ERR_VERIFY, n,
			                       "input %d ('%s') is not a value of this graph", i, v->name);
		if (!defined[v->id])
			return kiln_diag_error(d, KILN_ERR_VERIFY, n,
			                       "input %d ('%s') is used before it is defined", i, v->name);
	}
	for (int i = 0; i < n->n_outputs; i++) {
		const kiln_value *v = n->outputs[i];
		if (!v || !in_graph(g, v))
			return kiln_diag_error(d, KILN_ERR_VERIFY, n, "output %d is not a value of this graph",
			                       i);
		if (v->kind != KILN_VALUE_NODE || v->producer != n || v->index != i)
			return kiln_diag_error(d, KILN_ERR_VERIFY, n,
			                       "output %d ('%s') does not name this node as its producer "
			                       "with index %d",
			                       i, v->name, i);
	}
	KILN_TRY(check_attrs(n, d));
	if (n->op == KILN_OP_FUSION)
		KILN_TRY(check_fusion(g, n, in_body, d));
	else if (n->body)
		return kiln_diag_error(d, KILN_ERR_VERIFY, n,
		                       "has a body, but only fusion nodes have one");
	/* for a fusion node, after check_fusion: its shape rule re-infers the
	 * body, which then changes nothing */
	return check_types(n, d);
}

/* in_body: g is a fusion node's body, where no fusion node may appear. */
static kiln_status verify_graph(const kiln_graph *g, bool in_body, kiln_diag *d)
{
	KILN_TRY(check_values(g, d));
	KILN_TRY(check_inputs(g, d));

	bool *defined = calloc((size_t)g->n_values + 1, sizeof *defined);
	name_set names = {0};
	if (!defined || !name_set_init(&names, g->n_nodes)) {
		free(defined);
		return oom(d);
	}
	for (int i = 0; i < g->n_inputs; i++)
		defined[g->inputs[i]->id] = true;
	for (int i = 0; i < g->n_values; i++)
		if (g->values[i]->kind == KILN_VALUE_CONST)
			defined[i] = true;

	kiln_status st = KILN_OK;
	for (int i = 0; i < g->n_nodes && st == KILN_OK; i++) {
		/* The API takes a const graph; check_types writes output types and
		 * restores them exactly. */
		kiln_node *n = g->nodes[i];
		if (!n || !n->name) {
			st = kiln_diag_error(d, KILN_ERR_VERIFY, NULL, "node %d is missing or unnamed", i);
			break;
		}
		if (!name_set_add(&names, n->name)) {
			st = kiln_diag_error(d, KILN_ERR_VERIFY, n, "another node has the same name");
			break;
		}
		st = check_node(g, n, defined, in_body, d);
		for (int k = 0; st == KILN_OK && k < n->n_outputs; k++)
			defined[n->outputs[k]->id] = true;
	}
	for (int i = 0; i < g->n_outputs && st == KILN_OK; i++) {
		const kiln_value *v = g->outputs[i];
		if (!v || !in_graph(g, v))
			st = kiln_diag_error(d, KILN_ERR_VERIFY, NULL,
			                     "graph output %d is not a value of this graph", i);
		else if (!defined[v->id])
			st = kiln_diag_error(d, KILN_ERR_VERIFY, NULL,
			                     "graph output %d ('%s') is not defined by any node", i,
			                     v->name);
	}
	free(names.slots);
	free(defined);
	return st;
}

kiln_status kiln_graph_verify(const kiln_graph *g, kiln_diag *d)
{
	return verify_graph(g, g->parent != NULL, d);
}
