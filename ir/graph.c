/* graph.c — the op table and the graph builder: values, nodes, attributes. */
#include "ir.h"

#include <stdio.h>
#include <string.h>

static const kiln_op_info op_table[] = {
#define KILN_OP(E, NAME, IN_MIN, IN_MAX, OUT_MIN, OUT_MAX, FLAGS, SHAPE, ATTRS) \
	[KILN_OP_##E] = {NAME, IN_MIN, IN_MAX, OUT_MIN, OUT_MAX, FLAGS, ATTRS},
#include "ops.def"
#undef KILN_OP
};
_Static_assert(sizeof op_table / sizeof *op_table == KILN_OP_COUNT, "op table must cover kiln_op");

const kiln_op_info *kiln_op_get(kiln_op op)
{
	return (unsigned)op < KILN_OP_COUNT ? &op_table[op] : NULL;
}

const char *kiln_op_name(kiln_op op)
{
	return (unsigned)op < KILN_OP_COUNT ? op_table[op].name : "?";
}

bool kiln_op_lookup(const char *name, kiln_op *out)
{
	for (int i = 0; i < KILN_OP_COUNT; i++) {
		if (strcmp(op_table[i].name, name) == 0) {
			*out = (kiln_op)i;
			return true;
		}
	}
	return false;
}

kiln_graph *kiln_graph_create(const char *name, const kiln_allocator *a)
{
	kiln_arena *arena = kiln_arena_create(a);
	if (!arena)
		return NULL;
	kiln_graph *g = kiln_arena_alloc(arena, sizeof *g);
	if (!g || !(g->name = kiln_arena_strdup(arena, name ? name : "graph"))) {
		kiln_arena_destroy(arena);
		return NULL;
	}
	g->arena = arena;
	return g;
}

void kiln_graph_destroy(kiln_graph *g)
{
	if (g)
		kiln_arena_destroy(g->arena);
}

/* Grows an arena-owned pointer array (old storage stays in the arena). */
static bool grow(kiln_arena *a, void ***arr, int n, int *cap)
{
	if (n < *cap)
		return true;
	int ncap = *cap ? *cap * 2 : 16;
	void **p = kiln_arena_alloc(a, (size_t)ncap * sizeof *p);
	if (!p)
		return false;
	if (n)
		memcpy(p, *arr, (size_t)n * sizeof *p);
	*arr = p;
	*cap = ncap;
	return true;
}

static kiln_value *new_value(kiln_graph *g, const char *name, kiln_value_kind kind)
{
	if (!grow(g->arena, (void ***)&g->values, g->n_values, &g->cap_values))
		return NULL;
	kiln_value *v = kiln_arena_alloc(g->arena, sizeof *v);
	if (!v)
		return NULL;
	v->id = g->n_values;
	char buf[32];
	if (!name) {
		snprintf(buf, sizeof buf, "v%d", v->id);
		name = buf;
	}
	if (!(v->name = kiln_arena_strdup(g->arena, name)))
		return NULL;
	v->kind = kind;
	g->values[g->n_values++] = v;
	return v;
}

kiln_value *kiln_graph_add_input(kiln_graph *g, const char *name, const kiln_type *t)
{
	if (!grow(g->arena, (void ***)&g->inputs, g->n_inputs, &g->cap_inputs))
		return NULL;
	kiln_value *v = new_value(g, name, KILN_VALUE_INPUT);
	if (!v)
		return NULL;
	v->type = *t;
	g->inputs[g->n_inputs++] = v;
	return v;
}

kiln_value *kiln_graph_add_const(kiln_graph *g, const char *name, const kiln_type *t,
                                 const void *data)
{
	kiln_value *v = new_value(g, name, KILN_VALUE_CONST);
	if (!v)
		return NULL;
	v->type = *t;
	size_t bytes = kiln_type_bytes(t);
	v->data = kiln_arena_alloc(g->arena, bytes);
	if (!v->data)
		return NULL;
	if (data && bytes)
		memcpy(v->data, data, bytes);
	return v;
}

kiln_node *kiln_graph_add_node(kiln_graph *g, kiln_op op, const char *name,
                               kiln_value *const *inputs, int n_inputs,
                               const char *const *output_names, int n_outputs)
{
	if (!grow(g->arena, (void ***)&g->nodes, g->n_nodes, &g->cap_nodes))
		return NULL;
	kiln_node *n = kiln_arena_alloc(g->arena, sizeof *n);
	if (!n)
		return NULL;
	n->id = g->next_node_id++;
	n->op = op;
	char buf[32];
	if (!name) {
		snprintf(buf, sizeof buf, "node_%d", n->id);
		name = buf;
	}
	if (!(n->name = kiln_arena_strdup(g->arena, name)))
		return NULL;
	n->n_inputs = n_inputs;
	n->inputs = kiln_arena_alloc(g->arena, (size_t)(n_inputs ? n_inputs : 1) * sizeof *n->inputs);
	n->n_outputs = n_outputs;
	n->outputs = kiln_arena_alloc(g->arena, (size_t)(n_outputs ? n_outputs : 1) * sizeof *n->outputs);
	if (!n->inputs || !n->outputs)
		return NULL;
	for (int i = 0; i < n_inputs; i++)
		n->inputs[i] = inputs[i];
	for (int i = 0; i < n_outputs; i++) {
		kiln_value *v = new_value(g, output_names ? output_names[i] : NULL, KILN_VALUE_NODE);
		if (!v)
			return NULL;
		v->producer = n;
		v->index = i;
		n->outputs[i] = v;
	}
	g->nodes[g->n_nodes++] = n;
	return n;
}

kiln_status kiln_graph_add_output(kiln_graph *g, kiln_value *v)
{
	if (!grow(g->arena, (void ***)&g->outputs, g->n_outputs, &g->cap_outputs))
		return KILN_ERR_OOM;
	g->outputs[g->n_outputs++] = v;
	return KILN_OK;
}

kiln_value *kiln_graph_find_value(const kiln_graph *g, const char *name)
{
	for (int i = 0; i < g->n_values; i++)
		if (strcmp(g->values[i]->name, name) == 0)
			return g->values[i];
	return NULL;
}

kiln_node *kiln_graph_find_node(const kiln_graph *g, const char *name)
{
	for (int i = 0; i < g->n_nodes; i++)
		if (strcmp(g->nodes[i]->name, name) == 0)
			return g->nodes[i];
	return NULL;
}

void kiln_graph_compact(kiln_graph *g, const bool *keep)
{
	int j = 0;
	for (int i = 0; i < g->n_nodes; i++)
		if (keep[i])
			g->nodes[j++] = g->nodes[i];
	g->n_nodes = j;
}

kiln_status kiln_value_make_const(kiln_graph *g, kiln_value *v, const void *data)
{
	size_t bytes = kiln_type_bytes(&v->type);
	void *p = kiln_arena_alloc(g->arena, bytes);
	if (!p)
		return KILN_ERR_OOM;
	if (bytes)
		memcpy(p, data, bytes);
	v->data = p;
	v->kind = KILN_VALUE_CONST;
	v->producer = NULL;
	v->index = 0;
	return KILN_OK;
}

/* ---- attributes ---- */

static kiln_attr *attr_slot(kiln_graph *g, kiln_node *n, const char *name)
{
	for (int i = 0; i < n->n_attrs; i++)
		if (strcmp(n->attrs[i].name, name) == 0)
			return &n->attrs[i];
	/* Attribute arrays are small; copy on append, keeping them sorted by
	 * insertion so printing is deterministic. */
	kiln_attr *a = kiln_arena_alloc(g->arena, (size_t)(n->n_attrs + 1) * sizeof *a);
	if (!a)
		return NULL;
	if (n->n_attrs)
		memcpy(a, n->attrs, (size_t)n->n_attrs * sizeof *a);
	n->attrs = a;
	kiln_attr *slot = &a[n->n_attrs];
	if (!(slot->name = kiln_arena_strdup(g->arena, name)))
		return NULL;
	n->n_attrs++;
	return slot;
}

kiln_status kiln_node_set_int(kiln_graph *g, kiln_node *n, const char *name, int64_t v)
{
	kiln_attr *a = attr_slot(g, n, name);
	if (!a)
		return KILN_ERR_OOM;
	a->kind = KILN_ATTR_INT;
	a->u.i = v;
	return KILN_OK;
}

kiln_status kiln_node_set_float(kiln_graph *g, kiln_node *n, const char *name, float v)
{
	kiln_attr *a = attr_slot(g, n, name);
	if (!a)
		return KILN_ERR_OOM;
	a->kind = KILN_ATTR_FLOAT;
	a->u.f = v;
	return KILN_OK;
}

kiln_status kiln_node_set_string(kiln_graph *g, kiln_node *n, const char *name, const char *v)
{
	kiln_attr *a = attr_slot(g, n, name);
	if (!a)
		return KILN_ERR_OOM;
	a->kind = KILN_ATTR_STRING;
	if (!(a->u.s = kiln_arena_strdup(g->arena, v)))
		return KILN_ERR_OOM;
	return KILN_OK;
}

kiln_status kiln_node_set_ints(kiln_graph *g, kiln_node *n, const char *name,
                               const int64_t *v, int count)
{
	kiln_attr *a = attr_slot(g, n, name);
	if (!a)
		return KILN_ERR_OOM;
	a->kind = KILN_ATTR_INTS;
	a->n = count;
	if (!(a->u.ints = kiln_arena_memdup(g->arena, v, (size_t)count * sizeof *v)))
		return KILN_ERR_OOM;
	return KILN_OK;
}

kiln_status kiln_node_set_floats(kiln_graph *g, kiln_node *n, const char *name,
                                 const float *v, int count)
{
	kiln_attr *a = attr_slot(g, n, name);
	if (!a)
		return KILN_ERR_OOM;
	a->kind = KILN_ATTR_FLOATS;
	a->n = count;
	if (!(a->u.floats = kiln_arena_memdup(g->arena, v, (size_t)count * sizeof *v)))
		return KILN_ERR_OOM;
	return KILN_OK;
}

kiln_status kiln_node_set_tensor(kiln_graph *g, kiln_node *n, const char *name,
                                 const kiln_tensor *t)
{
	kiln_attr *a = attr_slot(g, n, name);
	if (!a)
		return KILN_ERR_OOM;
	kiln_tensor *copy = kiln_arena_alloc(g->arena, sizeof *copy);
	if (!copy)
		return KILN_ERR_OOM;
	copy->type = t->type;
	if (!(copy->data = kiln_arena_memdup(g->arena, t->data, kiln_type_bytes(&t->type))))
		return KILN_ERR_OOM;
	a->kind = KILN_ATTR_TENSOR;
	a->u.t = copy;
	return KILN_OK;
}

const kiln_attr *kiln_node_attr(const kiln_node *n, const char *name)
{
	for (int i = 0; i < n->n_attrs; i++)
		if (strcmp(n->attrs[i].name, name) == 0)
			return &n->attrs[i];
	return NULL;
}

int64_t kiln_node_int(const kiln_node *n, const char *name, int64_t dflt)
{
	const kiln_attr *a = kiln_node_attr(n, name);
	return a && a->kind == KILN_ATTR_INT ? a->u.i : dflt;
}

float kiln_node_float(const kiln_node *n, const char *name, float dflt)
{
	const kiln_attr *a = kiln_node_attr(n, name);
	return a && a->kind == KILN_ATTR_FLOAT ? a->u.f : dflt;
}

const char *kiln_node_string(const kiln_node *n, const char *name, const char *dflt)
{
	const kiln_attr *a = kiln_node_attr(n, name);
	return a && a->kind == KILN_ATTR_STRING ? a->u.s : dflt;
}

int kiln_node_ints(const kiln_node *n, const char *name, const int64_t **v)
{
	const kiln_attr *a = kiln_node_attr(n, name);
	if (!a || a->kind != KILN_ATTR_INTS) {
		*v = NULL;
		return 0;
	}
	*v = a->u.ints;
	return a->n;
}

int kiln_node_floats(const kiln_node *n, const char *name, const float **v)
{
	const kiln_attr *a = kiln_node_attr(n, name);
	if (!a || a->kind != KILN_ATTR_FLOATS) {
		*v = NULL;
		return 0;
	}
	*v = a->u.floats;
	return a->n;
}

const kiln_tensor *kiln_node_tensor(const kiln_node *n, const char *name)
{
	const kiln_attr *a = kiln_node_attr(n, name);
	return a && a->kind == KILN_ATTR_TENSOR ? a->u.t : NULL;
}

/* ---- constant element access ---- */

int64_t kiln_const_get_i64(const kiln_value *v, int64_t i)
{
	const void *p = v->data;
	switch (v->type.dtype) {
	case KILN_DT_I64: return ((const int64_t *)p)[i];
	case KILN_DT_I32: return ((const int32_t *)p)[i];
	case KILN_DT_I8: return ((const int8_t *)p)[i];
	case KILN_DT_U8: case KILN_DT_BOOL: return ((const uint8_t *)p)[i];
	default: return (int64_t)kiln_const_get_f64(v, i);
	}
}

double kiln_const_get_f64(const kiln_value *v, int64_t i)
{
	const void *p = v->data;
	switch (v->type.dtype) {
	case KILN_DT_F32: return ((const float *)p)[i];
	case KILN_DT_F64: return ((const double *)p)[i];
	case KILN_DT_F16: return kiln_f16_to_f32(((const uint16_t *)p)[i]);
	case KILN_DT_BF16: return kiln_bf16_to_f32(((const uint16_t *)p)[i]);
	default: return (double)kiln_const_get_i64(v, i);
	}
}

/* ---- fusion ---- */

static const char *const fusion_kind_names[KILN_FUSION_KIND_COUNT] = {
	[KILN_FUSION_NONE] = "none",
	[KILN_FUSION_LOOP] = "loop",
	[KILN_FUSION_OUTPUT] = "output",
	[KILN_FUSION_REDUCTION] = "reduction",
};

const char *kiln_fusion_kind_name(kiln_fusion_kind k)
{
	return k >= 0 && k < KILN_FUSION_KIND_COUNT ? fusion_kind_names[k] : "?";
}

bool kiln_fusion_kind_parse(const char *s, kiln_fusion_kind *k)
{
	for (int i = KILN_FUSION_LOOP; i < KILN_FUSION_KIND_COUNT; i++)
		if (s && strcmp(s, fusion_kind_names[i]) == 0) {
			*k = (kiln_fusion_kind)i;
			return true;
		}
	return false;
}

kiln_fusion_kind kiln_node_fusion_kind(const kiln_node *n)
{
	kiln_fusion_kind k = KILN_FUSION_NONE;
	if (n->op == KILN_OP_FUSION && !kiln_fusion_kind_parse(kiln_node_string(n, "kind", NULL), &k))
		k = KILN_FUSION_NONE;
	return k;
}

kiln_graph *kiln_graph_create_body(kiln_graph *g, const char *name)
{
	kiln_graph *b = kiln_arena_alloc(g->arena, sizeof *b);
	if (!b || !(b->name = kiln_arena_strdup(g->arena, name ? name : "body")))
		return NULL;
	b->arena = g->arena;
	b->opset = g->opset;
	b->parent = g;
	return b;
}

kiln_node *kiln_graph_add_fusion(kiln_graph *g, kiln_fusion_kind kind, const char *name,
                                 kiln_graph *body, kiln_value *const *inputs, int n_inputs,
                                 const char *const *output_names)
{
	if (!body || body->arena != g->arena || n_inputs != body->n_inputs ||
	    kind <= KILN_FUSION_NONE || kind >= KILN_FUSION_KIND_COUNT)
		return NULL;
	kiln_node *n = kiln_graph_add_node(g, KILN_OP_FUSION, name, inputs, n_inputs, output_names,
	                                   body->n_outputs);
	if (!n || kiln_node_set_string(g, n, "kind", kiln_fusion_kind_name(kind)) != KILN_OK)
		return NULL;
	n->body = body;
	body->parent = g;
	for (int i = 0; i < body->n_outputs; i++)
		n->outputs[i]->type = body->outputs[i]->type;
	return n;
}

/* ---- rewriting ---- */

void kiln_graph_replace_uses(kiln_graph *g, kiln_value *from, kiln_value *to)
{
	for (int i = 0; i < g->n_nodes; i++) {
		kiln_node *n = g->nodes[i];
		for (int j = 0; j < n->n_inputs; j++)
			if (n->inputs[j] == from)
				n->inputs[j] = to;
	}
	for (int i = 0; i < g->n_outputs; i++)
		if (g->outputs[i] == from)
			g->outputs[i] = to;
}

int kiln_value_uses(const kiln_graph *g, const kiln_value *v)
{
	int uses = 0;
	for (int i = 0; i < g->n_nodes; i++)
		for (int j = 0; j < g->nodes[i]->n_inputs; j++)
			uses += g->nodes[i]->inputs[j] == v;
	for (int i = 0; i < g->n_outputs; i++)
		uses += g->outputs[i] == v;
	return uses;
}

int kiln_graph_node_index(const kiln_graph *g, const kiln_node *n)
{
	for (int i = 0; i < g->n_nodes; i++)
		if (g->nodes[i] == n)
			return i;
	return -1;
}

void kiln_graph_move_node(kiln_graph *g, kiln_node *n, int at)
{
	int from = kiln_graph_node_index(g, n);
	if (from < 0 || at < 0 || at >= g->n_nodes || at == from)
		return;
	if (from < at)
		memmove(&g->nodes[from], &g->nodes[from + 1], (size_t)(at - from) * sizeof *g->nodes);
	else
		memmove(&g->nodes[at + 1], &g->nodes[at], (size_t)(from - at) * sizeof *g->nodes);
	g->nodes[at] = n;
}

/* ---- clone ---- */

static bool clone_attr(kiln_arena *a, kiln_attr *dst, const kiln_attr *src)
{
	*dst = *src;
	if (!(dst->name = kiln_arena_strdup(a, src->name)))
		return false;
	switch (src->kind) {
	case KILN_ATTR_STRING:
		return (dst->u.s = kiln_arena_strdup(a, src->u.s)) != NULL;
	case KILN_ATTR_INTS:
		return (dst->u.ints = kiln_arena_memdup(a, src->u.ints,
		                                        (size_t)src->n * sizeof *src->u.ints)) != NULL;
	case KILN_ATTR_FLOATS:
		return (dst->u.floats = kiln_arena_memdup(a, src->u.floats,
		                                          (size_t)src->n * sizeof *src->u.floats)) != NULL;
	case KILN_ATTR_TENSOR: {
		kiln_tensor *t = kiln_arena_alloc(a, sizeof *t);
		if (!t)
			return false;
		t->type = src->u.t->type;
		t->data = kiln_arena_memdup(a, src->u.t->data, kiln_type_bytes(&t->type));
		dst->u.t = t;
		return t->data != NULL;
	}
	default:
		return true;
	}
}

static kiln_quant *clone_quant(kiln_arena *a, const kiln_quant *q)
{
	kiln_quant *c = kiln_arena_alloc(a, sizeof *c);
	if (!c)
		return NULL;
	*c = *q;
	c->scale = kiln_arena_memdup(a, q->scale, (size_t)q->n * sizeof *q->scale);
	c->zero_point = kiln_arena_memdup(a, q->zero_point, (size_t)q->n * sizeof *q->zero_point);
	return c->scale && c->zero_point ? c : NULL;
}

/* Copies src's values, nodes, inputs and outputs into dst (same arena kind
 * of graph, empty). Value ids are preserved, so map[] is by id. */
static bool clone_into(kiln_graph *dst, const kiln_graph *src)
{
	kiln_arena *a = dst->arena;
	dst->opset = src->opset;
	dst->next_node_id = src->next_node_id;
	kiln_value **map = kiln_arena_alloc(a, (size_t)(src->n_values ? src->n_values : 1) * sizeof *map);
	if (!map)
		return false;
	for (int i = 0; i < src->n_values; i++) {
		const kiln_value *s = src->values[i];
		kiln_value *v = new_value(dst, s->name, s->kind);
		if (!v)
			return false;
		v->type = s->type;
		if (s->data && !(v->data = kiln_arena_memdup(a, s->data, kiln_type_bytes(&s->type))))
			return false;
		if (s->elided && !(v->elided = kiln_arena_strdup(a, s->elided)))
			return false;
		if (s->quant && !(v->quant = clone_quant(a, s->quant)))
			return false;
		v->index = s->index;
		map[i] = v;
	}
	for (int i = 0; i < src->n_nodes; i++) {
		const kiln_node *s = src->nodes[i];
		if (!grow(a, (void ***)&dst->nodes, dst->n_nodes, &dst->cap_nodes))
			return false;
		kiln_node *n = kiln_arena_alloc(a, sizeof *n);
		if (!n)
			return false;
		*n = *s;
		n->name = kiln_arena_strdup(a, s->name);
		n->origin = s->origin ? kiln_arena_strdup(a, s->origin) : NULL;
		n->inputs = kiln_arena_alloc(a, (size_t)(s->n_inputs ? s->n_inputs : 1) * sizeof *n->inputs);
		n->outputs = kiln_arena_alloc(a, (size_t)(s->n_outputs ? s->n_outputs : 1) * sizeof *n->outputs);
		n->attrs = kiln_arena_alloc(a, (size_t)(s->n_attrs ? s->n_attrs : 1) * sizeof *n->attrs);
		if (!n->name || (s->origin && !n->origin) || !n->inputs || !n->outputs || !n->attrs)
			return false;
		for (int j = 0; j < s->n_inputs; j++)
			n->inputs[j] = s->inputs[j] ? map[s->inputs[j]->id] : NULL;
		for (int j = 0; j < s->n_outputs; j++) {
			n->outputs[j] = map[s->outputs[j]->id];
			n->outputs[j]->producer = n;
		}
		for (int j = 0; j < s->n_attrs; j++)
			if (!clone_attr(a, &n->attrs[j], &s->attrs[j]))
				return false;
		if (s->body) {
			if (!(n->body = kiln_graph_create_body(dst, s->body->name)) ||
			    !clone_into(n->body, s->body))
				return false;
		}
		dst->nodes[dst->n_nodes++] = n;
	}
	for (int i = 0; i < src->n_inputs; i++) {
		if (!grow(a, (void ***)&dst->inputs, dst->n_inputs, &dst->cap_inputs))
			return false;
		dst->inputs[dst->n_inputs++] = map[src->inputs[i]->id];
	}
	for (int i = 0; i < src->n_outputs; i++)
		if (kiln_graph_add_output(dst, map[src->outputs[i]->id]) != KILN_OK)
			return false;
	return true;
}

kiln_graph *kiln_graph_clone_body(kiln_graph *parent, const kiln_graph *body)
{
	kiln_graph *b = kiln_graph_create_body(parent, body->name);
	return b && clone_into(b, body) ? b : NULL;
}

kiln_graph *kiln_graph_clone(const kiln_graph *g, const kiln_allocator *a)
{
	kiln_graph *c = kiln_graph_create(g->name, a);
	if (c && !clone_into(c, g)) {
		kiln_graph_destroy(c);
		return NULL;
	}
	return c;
}

void kiln_graph_prune(kiln_graph *g)
{
	bool *used = kiln_arena_alloc(g->arena, (size_t)(g->n_values ? g->n_values : 1));
	if (!used)
		return; /* nothing pruned: still a valid graph */
	for (int i = 0; i < g->n_inputs; i++)
		used[g->inputs[i]->id] = true;
	for (int i = 0; i < g->n_outputs; i++)
		used[g->outputs[i]->id] = true;
	for (int i = 0; i < g->n_nodes; i++) {
		const kiln_node *n = g->nodes[i];
		for (int j = 0; j < n->n_inputs; j++)
			if (n->inputs[j])
				used[n->inputs[j]->id] = true;
		for (int j = 0; j < n->n_outputs; j++)
			used[n->outputs[j]->id] = true;
	}
	int k = 0;
	for (int i = 0; i < g->n_values; i++)
		if (used[i]) {
			g->values[k] = g->values[i];
			g->values[k]->id = k;
			k++;
		}
	g->n_values = k;
}

static const char *unique_name(kiln_graph *g, const char *base, bool node)
{
	char buf[256];
	snprintf(buf, sizeof buf, "%s", base);
	for (int i = 1;; i++) {
		if (node ? !kiln_graph_find_node(g, buf) : !kiln_graph_find_value(g, buf))
			return kiln_arena_strdup(g->arena, buf);
		snprintf(buf, sizeof buf, "%s.%d", base, i);
	}
}

const char *kiln_graph_unique_value_name(kiln_graph *g, const char *base)
{
	return unique_name(g, base, false);
}

const char *kiln_graph_unique_node_name(kiln_graph *g, const char *base)
{
	return unique_name(g, base, true);
}

void kiln_node_op_text(const kiln_node *n, char *buf, size_t size)
{
	if (!size)
		return;
	if (n->op != KILN_OP_FUSION || !n->body) {
		snprintf(buf, size, "%s", kiln_op_name(n->op));
		return;
	}
	size_t len = (size_t)snprintf(buf, size, "fusion:%s(",
	                              kiln_fusion_kind_name(kiln_node_fusion_kind(n)));
	for (int i = 0; i < n->body->n_nodes && len < size; i++)
		len += (size_t)snprintf(buf + len, size - len, "%s%s", i ? "+" : "",
		                        kiln_op_name(n->body->nodes[i]->op));
	if (len < size)
		snprintf(buf + len, size - len, ")");
}

kiln_node *kiln_graph_copy_node(kiln_graph *g, const kiln_node *n, kiln_value *const *in)
{
	kiln_arena *a = g->arena;
	const char **out_names =
		kiln_arena_alloc(a, (size_t)(n->n_outputs ? n->n_outputs : 1) * sizeof *out_names);
	if (!out_names)
		return NULL;
	for (int i = 0; i < n->n_outputs; i++)
		out_names[i] = n->outputs[i]->name;
	kiln_node *c = kiln_graph_add_node(g, n->op, n->name, in, n->n_inputs, out_names, n->n_outputs);
	bool ok = c != NULL;
	if (ok && n->n_attrs) {
		ok = (c->attrs = kiln_arena_alloc(a, (size_t)n->n_attrs * sizeof *c->attrs)) != NULL;
		for (int i = 0; ok && i < n->n_attrs; i++)
			ok = clone_attr(a, &c->attrs[i], &n->attrs[i]);
		c->n_attrs = ok ? n->n_attrs : 0;
	}
	if (ok && n->origin)
		ok = (c->origin = kiln_arena_strdup(a, n->origin)) != NULL;
	if (ok && n->body)
		ok = (c->body = kiln_graph_clone_body(g, n->body)) != NULL;
	return ok ? c : NULL;
}

kiln_graph *kiln_graph_of_node(const kiln_node *n, int opset)
{
	kiln_graph *g = kiln_graph_create(n->name, NULL);
	if (!g)
		return NULL;
	g->opset = opset;
	kiln_arena *a = g->arena;
	kiln_value **in = kiln_arena_alloc(a, (size_t)(n->n_inputs ? n->n_inputs : 1) * sizeof *in);
	bool ok = in != NULL;
	for (int i = 0; ok && i < n->n_inputs; i++) {
		const kiln_value *v = n->inputs[i];
		if (!v || (in[i] = kiln_graph_find_value(g, v->name)))
			continue; /* omitted, or the same value twice */
		in[i] = v->kind == KILN_VALUE_CONST ? kiln_graph_add_const(g, v->name, &v->type, v->data)
		                                    : kiln_graph_add_input(g, v->name, &v->type);
		ok = in[i] != NULL;
	}
	kiln_node *c = ok ? kiln_graph_copy_node(g, n, in) : NULL;
	ok = c != NULL;
	for (int i = 0; ok && i < n->n_outputs; i++)
		ok = kiln_graph_add_output(g, c->outputs[i]) == KILN_OK;
	kiln_diag d;
	kiln_diag_init(&d, NULL);
	d.fn = NULL;
	if (ok)
		ok = kiln_infer_shapes(g, &d) == KILN_OK && kiln_graph_verify(g, &d) == KILN_OK;
	if (!ok) {
		kiln_graph_destroy(g);
		return NULL;
	}
	return g;
}
