/* import.c — kiln_onnx_import: an ONNX model file to a shape-inferred graph.
 *
 * Order of work: parse; check the opset; name the nodes; list every
 * unsupported operator at once (before building anything); order the nodes;
 * initializers, bindings and pinned inputs; then build each node — Constant
 * nodes become constants, local and standard functions expand inline, and
 * older-opset forms are rewritten into the opset-21 forms of ir/ops.def —
 * running shape inference (and, with opts->fold, constant folding of shape
 * computations) after each one; finally outputs and the verifier.
 *
 * Every error names the file, and the node and op where there is one; every
 * path frees the protobuf message, the file buffer and the partial graph. */
#include "onnx_internal.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- string map --------------------------------------------------------- */

static size_t hash_str(const char *s)
{
	uint64_t h = 14695981039346656037ull;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return (size_t)h;
}

static size_t map_slot(const kiln_onnx_map *m, const char *key)
{
	size_t i = hash_str(key) & (m->cap - 1);
	while (m->keys[i] && strcmp(m->keys[i], key) != 0)
		i = (i + 1) & (m->cap - 1);
	return i;
}

void *kiln_onnx_map_get(const kiln_onnx_map *m, const char *key)
{
	if (!m->cap)
		return NULL;
	size_t i = map_slot(m, key);
	return m->keys[i] ? m->vals[i] : NULL;
}

bool kiln_onnx_map_put(kiln_onnx_map *m, const char *key, void *val)
{
	if ((m->n + 1) * 2 > m->cap) {
		kiln_onnx_map bigger = {0};
		bigger.cap = m->cap ? m->cap * 2 : 64;
		bigger.keys = calloc(bigger.cap, sizeof *bigger.keys);
		bigger.vals = calloc(bigger.cap, sizeof *bigger.vals);
		if (!bigger.keys || !bigger.vals) {
			kiln_onnx_map_free(&bigger);
			return false;
		}
		for (size_t i = 0; i < m->cap; i++) {
			if (m->keys[i]) {
				size_t j = map_slot(&bigger, m->keys[i]);
				bigger.keys[j] = m->keys[i];
				bigger.vals[j] = m->vals[i];
			}
		}
		bigger.n = m->n;
		kiln_onnx_map_free(m);
		*m = bigger;
	}
	size_t i = map_slot(m, key);
	if (!m->keys[i]) {
		m->keys[i] = key;
		m->n++;
	}
	m->vals[i] = val;
	return true;
}

void kiln_onnx_map_free(kiln_onnx_map *m)
{
	free(m->keys);
	free(m->vals);
	memset(m, 0, sizeof *m);
}

/* ---- small helpers ------------------------------------------------------ */

bool kiln_onnx_is_default_domain(const char *domain)
{
	return !domain || !*domain || strcmp(domain, "ai.onnx") == 0;
}

kiln_status kiln_onnx_node_error(kiln_onnx_ctx *c, const kiln_onnx_node *on,
                                 kiln_status st, const char *fmt, ...)
{
	char msg[900];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	return kiln_diag_error(c->d, st, NULL, "node '%s' (%s): %s", on->name, on->op_type, msg);
}

static kiln_status oom(kiln_onnx_ctx *c)
{
	return kiln_diag_error(c->d, KILN_ERR_OOM, NULL, "out of memory");
}

static char *scratch_printf(kiln_onnx_ctx *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static char *scratch_printf(kiln_onnx_ctx *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int len = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (len < 0)
		return NULL;
	char *s = kiln_arena_alloc(c->scratch, (size_t)len + 1);
	if (!s)
		return NULL;
	va_start(ap, fmt);
	vsnprintf(s, (size_t)len + 1, fmt, ap);
	va_end(ap);
	return s;
}

const char *kiln_onnx_function_key(kiln_onnx_ctx *c, const char *domain, const char *name)
{
	return scratch_printf(c, "%s\n%s", KILN_ONNX_STR(domain), KILN_ONNX_STR(name));
}

/* base, or base/suffix, made unique against `taken` (and `also`) with _N. */
static const char *fresh_name(kiln_onnx_ctx *c, const kiln_onnx_map *taken,
                              const kiln_onnx_map *also, const char *base, const char *suffix)
{
	const char *stem = suffix ? scratch_printf(c, "%s/%s", base, suffix)
	                          : scratch_printf(c, "%s", base);
	if (!stem)
		return NULL;
	const char *name = stem;
	for (int k = 1; kiln_onnx_map_get(taken, name) || (also && kiln_onnx_map_get(also, name)); k++)
		if (!(name = scratch_printf(c, "%s_%d", stem, k)))
			return NULL;
	return name;
}

const char *kiln_onnx_fresh_value_name(kiln_onnx_ctx *c, const char *base, const char *suffix)
{
	return fresh_name(c, &c->values, &c->reserved, base, suffix);
}

const char *kiln_onnx_fresh_node_name(kiln_onnx_ctx *c, const char *base, const char *suffix)
{
	const char *name = fresh_name(c, &c->node_names, NULL, base, suffix);
	if (!name || !kiln_onnx_map_put(&c->node_names, name, (void *)name))
		return NULL;
	return name;
}

static kiln_status define(kiln_onnx_ctx *c, kiln_value *v)
{
	return kiln_onnx_map_put(&c->values, v->name, v) ? KILN_OK : oom(c);
}

kiln_value *kiln_onnx_const(kiln_onnx_ctx *c, const char *base, const char *suffix,
                            const kiln_type *t, const void *data)
{
	const char *name = kiln_onnx_fresh_value_name(c, base, suffix);
	kiln_value *v = name ? kiln_graph_add_const(c->g, name, t, data) : NULL;
	if (!v || define(c, v) != KILN_OK) {
		oom(c);
		return NULL;
	}
	return v;
}

kiln_value *kiln_onnx_scalar(kiln_onnx_ctx *c, const char *base, const char *suffix,
                             kiln_dtype dt, double v)
{
	union {
		float f32;
		double f64;
		uint16_t u16;
		int64_t i64;
		int32_t i32;
		int8_t i8;
		uint8_t u8;
	} u;
	switch (dt) {
	case KILN_DT_F32: u.f32 = (float)v; break;
	case KILN_DT_F64: u.f64 = v; break;
	case KILN_DT_F16: u.u16 = kiln_f32_to_f16((float)v); break;
	case KILN_DT_BF16: u.u16 = kiln_f32_to_bf16((float)v); break;
	case KILN_DT_I64: u.i64 = (int64_t)v; break;
	case KILN_DT_I32: u.i32 = (int32_t)v; break;
	case KILN_DT_I8: u.i8 = (int8_t)v; break;
	case KILN_DT_U8: u.u8 = (uint8_t)v; break;
	default: u.u8 = v != 0; break;
	}
	kiln_type t = {.dtype = dt, .rank = 0};
	return kiln_onnx_const(c, base, suffix, &t, &u);
}

/* A 1-D i64 constant (attribute values that became inputs). */
static kiln_value *const_i64s(kiln_onnx_ctx *c, const char *base, const char *suffix,
                              const int64_t *v, size_t n)
{
	kiln_type t = {.dtype = KILN_DT_I64, .rank = 1, .dims = {(int64_t)n}};
	return kiln_onnx_const(c, base, suffix, &t, v);
}

const Onnx__AttributeProto *kiln_onnx_attr(const kiln_onnx_node *on, const char *name)
{
	for (int i = 0; i < on->n_attr; i++)
		if (strcmp(KILN_ONNX_STR(on->attr[i]->name), name) == 0)
			return on->attr[i];
	return NULL;
}

float kiln_onnx_attr_float(const kiln_onnx_node *on, const char *name, float dflt)
{
	const Onnx__AttributeProto *a = kiln_onnx_attr(on, name);
	return a && a->has_f ? a->f : dflt;
}

kiln_status kiln_onnx_input(kiln_onnx_ctx *c, const kiln_onnx_node *on, int i,
                            kiln_value **out)
{
	*out = NULL;
	if (!*on->in[i])
		return KILN_OK;
	if (!(*out = kiln_onnx_map_get(&c->values, on->in[i])))
		return kiln_onnx_node_error(c, on, KILN_ERR_INVALID_MODEL,
		                            "input %d '%s' is not produced by any node, "
		                            "initializer or graph input", i, on->in[i]);
	return KILN_OK;
}

/* ---- building nodes ----------------------------------------------------- */

kiln_status kiln_onnx_add(kiln_onnx_ctx *c, const kiln_onnx_node *on, kiln_op op,
                          const char *suffix, kiln_value *const *ins, int n_in,
                          const char *const *out_names, int n_out, kiln_node **out)
{
	*out = NULL;
	const char *name = suffix ? kiln_onnx_fresh_node_name(c, on->name, suffix) : on->name;
	const char **names = kiln_arena_alloc(c->scratch, (size_t)(n_out ? n_out : 1) * sizeof *names);
	if (!name || !names)
		return oom(c);
	for (int i = 0; i < n_out; i++) {
		const char *want = out_names ? out_names[i] : NULL;
		if (want && *want) {
			if (kiln_onnx_map_get(&c->values, want))
				return kiln_onnx_node_error(c, on, KILN_ERR_INVALID_MODEL,
				                            "output %d '%s' is already defined", i, want);
			names[i] = want;
		} else if (!(names[i] = kiln_onnx_fresh_value_name(c, name, n_out > 1 ? "out" : "y"))) {
			return oom(c);
		}
		/* Reserve now so that later fresh names of this node avoid it. */
		if (!kiln_onnx_map_put(&c->reserved, names[i], (void *)names[i]))
			return oom(c);
	}
	kiln_node *n = kiln_graph_add_node(c->g, op, name, ins, n_in, names, n_out);
	if (!n || !(n->origin = kiln_arena_strdup(c->g->arena, on->name)))
		return oom(c);
	*out = n;
	return KILN_OK;
}

/* Shape of a statically shaped value: no evaluator needed. */
static void fold_shape(const kiln_node *n, int64_t *dst)
{
	const kiln_type *t = &n->inputs[0]->type;
	int64_t start = kiln_node_int(n, "start", 0);
	int64_t end = kiln_node_int(n, "end", t->rank);
	if (start < 0)
		start += t->rank;
	if (end < 0)
		end += t->rank;
	start = start < 0 ? 0 : start > t->rank ? t->rank : start;
	end = end < 0 ? 0 : end > t->rank ? t->rank : end;
	for (int64_t i = start; i < end; i++)
		dst[i - start] = t->dims[i];
}

/* Folding is for shape computations: integer/bool results, small ones. */
static bool foldable(const kiln_onnx_ctx *c, const kiln_node *n)
{
	if (!c->opts->fold)
		return false;
	bool shape_op = n->op == KILN_OP_SHAPE || n->op == KILN_OP_CONSTANT_OF_SHAPE ||
	                n->op == KILN_OP_RANGE;
	if (n->op != KILN_OP_SHAPE)
		for (int i = 0; i < n->n_inputs; i++)
			if (n->inputs[i] && (n->inputs[i]->kind != KILN_VALUE_CONST || !n->inputs[i]->data))
				return false;
	int64_t total = 0;
	for (int i = 0; i < n->n_outputs; i++) {
		kiln_dtype dt = n->outputs[i]->type.dtype;
		if (!shape_op && !kiln_dtype_is_int(dt) && dt != KILN_DT_BOOL)
			return false;
		total += kiln_type_numel(&n->outputs[i]->type);
	}
	return total <= 65536;
}

static kiln_status fold(kiln_onnx_ctx *c, kiln_node *n)
{
	void **bufs = kiln_arena_alloc(c->scratch, (size_t)n->n_outputs * sizeof *bufs);
	if (!bufs)
		return oom(c);
	kiln_status s = KILN_OK;
	for (int i = 0; i < n->n_outputs && s == KILN_OK; i++) {
		size_t bytes = kiln_type_bytes(&n->outputs[i]->type);
		if (!(bufs[i] = calloc(1, bytes ? bytes : 1)))
			s = oom(c);
	}
	if (s == KILN_OK) {
		if (n->op == KILN_OP_SHAPE && kiln_type_numel(&n->outputs[0]->type) <= n->inputs[0]->type.rank)
			fold_shape(n, bufs[0]);
		else
			s = c->opts->fold(c->opts->fold_user, n, bufs, c->d);
	}
	for (int i = 0; i < n->n_outputs && s == KILN_OK; i++)
		if (kiln_value_make_const(c->g, n->outputs[i], bufs[i]) != KILN_OK)
			s = oom(c);
	for (int i = 0; i < n->n_outputs; i++)
		free(bufs[i]);
	if (s != KILN_OK)
		return s;
	/* The folded node is the newest one: drop it. */
	for (int i = c->g->n_nodes - 1; i >= 0; i--) {
		if (c->g->nodes[i] == n) {
			memmove(&c->g->nodes[i], &c->g->nodes[i + 1],
			        (size_t)(c->g->n_nodes - 1 - i) * sizeof *c->g->nodes);
			c->g->n_nodes--;
			break;
		}
	}
	return KILN_OK;
}

kiln_status kiln_onnx_finish(kiln_onnx_ctx *c, kiln_node *n)
{
	KILN_TRY(kiln_infer_node(n, c->d));
	for (int i = 0; i < n->n_outputs; i++)
		KILN_TRY(define(c, n->outputs[i]));
	if (foldable(c, n))
		KILN_TRY(fold(c, n));
	return KILN_OK;
}

kiln_status kiln_onnx_helper(kiln_onnx_ctx *c, const kiln_onnx_node *on, kiln_op op,
                             const char *suffix, kiln_value *const *ins, int n_in,
                             const char *out_name, kiln_value **out)
{
	kiln_node *n;
	KILN_TRY(kiln_onnx_add(c, on, op, suffix, ins, n_in, &out_name, 1, &n));
	KILN_TRY(kiln_onnx_finish(c, n));
	*out = n->outputs[0];
	return KILN_OK;
}

/* ---- attributes --------------------------------------------------------- */

static const char *attr_type_name(Onnx__AttributeProto__AttributeType t)
{
	switch (t) {
	case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT: return "FLOAT";
	case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT: return "INT";
	case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING: return "STRING";
	case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR: return "TENSOR";
	case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__GRAPH: return "GRAPH";
	case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__SPARSE_TENSOR: return "SPARSE_TENSOR";
	case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TYPE_PROTO: return "TYPE_PROTO";
	case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOATS: return "FLOATS";
	case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS: return "INTS";
	case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRINGS: return "STRINGS";
	case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSORS: return "TENSORS";
	case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__GRAPHS: return "GRAPHS";
	case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__SPARSE_TENSORS: return "SPARSE_TENSORS";
	case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TYPE_PROTOS: return "TYPE_PROTOS";
	default: return "UNDEFINED";
	}
}

/* The attribute's type; old writers leave `type` unset, so fall back on
 * which field holds a value. */
static Onnx__AttributeProto__AttributeType attr_type(const Onnx__AttributeProto *a)
{
	if (a->has_type && a->type != ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__UNDEFINED)
		return a->type;
	if (a->t)
		return ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR;
	if (a->g)
		return ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__GRAPH;
	if (a->has_f)
		return ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT;
	if (a->has_i)
		return ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT;
	if (a->has_s)
		return ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING;
	if (a->n_floats)
		return ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOATS;
	if (a->n_strings)
		return ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRINGS;
	if (a->n_tensors)
		return ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSORS;
	if (a->n_graphs)
		return ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__GRAPHS;
	return ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS;
}

/* The kind letter of attribute `name` in an ops.def ATTRS column, copied
 * into kind; false if the op has no such attribute. */
static bool spec_kind(const char *spec, const char *name, char *kind, size_t size)
{
	size_t nlen = strlen(name);
	for (const char *p = spec; *p;) {
		const char *colon = strchr(p, ':');
		if (!colon)
			return false;
		const char *end = strchr(colon, ',');
		if (!end)
			end = colon + strlen(colon);
		if ((size_t)(colon - p) == nlen && strncmp(p, name, nlen) == 0) {
			snprintf(kind, size, "%.*s", (int)(end - colon - 1), colon + 1);
			return true;
		}
		p = *end ? end + 1 : end;
	}
	return false;
}

static kiln_status tensor_attr(kiln_onnx_ctx *c, const kiln_onnx_node *on,
                               const Onnx__TensorProto *tp, const char *attr, kiln_tensor *t)
{
	const char *what = scratch_printf(c, "node '%s' (%s): attribute '%s'", on->name,
	                                  on->op_type, attr);
	if (!what)
		return oom(c);
	KILN_TRY(kiln_onnx_tensor_type(tp, what, &t->type, c->d));
	if (!(t->data = kiln_arena_alloc(c->scratch, kiln_type_bytes(&t->type))))
		return oom(c);
	return kiln_onnx_tensor_data(tp, what, c->dir, &t->type, t->data, c->d);
}

static kiln_status set_attr(kiln_onnx_ctx *c, const kiln_onnx_node *on, kiln_node *n,
                            const Onnx__AttributeProto *a)
{
	const char *name = KILN_ONNX_STR(a->name);
	Onnx__AttributeProto__AttributeType type = attr_type(a);
	if (a->ref_attr_name && *a->ref_attr_name)
		return kiln_diag_error(c->d, KILN_ERR_INVALID_MODEL, n,
		                       "attribute '%s' refers to function attribute '%s' outside "
		                       "a function", name, a->ref_attr_name);
	const char *kind;
	switch (type) {
	case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT: kind = "i"; break;
	case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT: kind = "f"; break;
	case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING: kind = "s"; break;
	case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS: kind = "ints"; break;
	case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOATS: kind = "floats"; break;
	case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR: kind = "t"; break;
	default:
		return kiln_diag_error(c->d, KILN_ERR_UNSUPPORTED, n,
		                       "attribute '%s' of type %s is not supported", name,
		                       attr_type_name(type));
	}
	char want[16];
	if (!spec_kind(kiln_op_get(n->op)->attrs, name, want, sizeof want))
		return kiln_diag_error(c->d, KILN_ERR_UNSUPPORTED, n,
		                       "attribute '%s' is not supported", name);
	if (strcmp(want, kind) != 0)
		return kiln_diag_error(c->d, KILN_ERR_INVALID_MODEL, n,
		                       "attribute '%s' has type %s, expected %s", name,
		                       attr_type_name(type), want);
	switch (type) {
	case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT:
		return kiln_node_set_int(c->g, n, name, a->i) == KILN_OK ? KILN_OK : oom(c);
	case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT:
		return kiln_node_set_float(c->g, n, name, a->f) == KILN_OK ? KILN_OK : oom(c);
	case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING: {
		char *s = kiln_arena_strndup(c->scratch, (const char *)a->s.data, a->s.len);
		if (!s || kiln_node_set_string(c->g, n, name, s) != KILN_OK)
			return oom(c);
		return KILN_OK;
	}
	case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS:
	case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOATS: {
		size_t count = type == ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS ? a->n_ints : a->n_floats;
		if (count > INT_MAX)
			return kiln_diag_error(c->d, KILN_ERR_UNSUPPORTED, n,
			                       "attribute '%s' has too many values", name);
		kiln_status s = type == ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS
		                        ? kiln_node_set_ints(c->g, n, name, a->ints, (int)count)
		                        : kiln_node_set_floats(c->g, n, name, a->floats, (int)count);
		return s == KILN_OK ? KILN_OK : oom(c);
	}
	default: {
		if (!a->t)
			return kiln_diag_error(c->d, KILN_ERR_INVALID_MODEL, n,
			                       "attribute '%s' has no tensor", name);
		kiln_tensor t;
		KILN_TRY(tensor_attr(c, on, a->t, name, &t));
		return kiln_node_set_tensor(c->g, n, name, &t) == KILN_OK ? KILN_OK : oom(c);
	}
	}
}

/* ---- Constant nodes ----------------------------------------------------- */

static kiln_status emit_constant(kiln_onnx_ctx *c, const kiln_onnx_node *on)
{
	if (on->n_out != 1 || !*on->out[0])
		return kiln_onnx_node_error(c, on, KILN_ERR_INVALID_MODEL, "needs exactly one output");
	if (on->n_attr != 1)
		return kiln_onnx_node_error(c, on, KILN_ERR_INVALID_MODEL,
		                            "needs exactly one value attribute, has %d", on->n_attr);
	const Onnx__AttributeProto *a = on->attr[0];
	const char *an = KILN_ONNX_STR(a->name);
	kiln_tensor t = {0};
	float f;
	if (strcmp(an, "value") == 0 && a->t) {
		KILN_TRY(tensor_attr(c, on, a->t, an, &t));
	} else if (strcmp(an, "value_float") == 0) {
		f = a->f;
		t.type = (kiln_type){.dtype = KILN_DT_F32};
		t.data = &f;
	} else if (strcmp(an, "value_int") == 0) {
		t.type = (kiln_type){.dtype = KILN_DT_I64};
		t.data = (void *)&a->i;
	} else if (strcmp(an, "value_floats") == 0) {
		t.type = (kiln_type){.dtype = KILN_DT_F32, .rank = 1, .dims = {(int64_t)a->n_floats}};
		t.data = a->floats;
	} else if (strcmp(an, "value_ints") == 0) {
		t.type = (kiln_type){.dtype = KILN_DT_I64, .rank = 1, .dims = {(int64_t)a->n_ints}};
		t.data = a->ints;
	} else {
		return kiln_onnx_node_error(c, on, KILN_ERR_UNSUPPORTED,
		                            "attribute '%s' is not supported", an);
	}
	if (kiln_onnx_map_get(&c->values, on->out[0]))
		return kiln_onnx_node_error(c, on, KILN_ERR_INVALID_MODEL,
		                            "output 0 '%s' is already defined", on->out[0]);
	kiln_value *v = kiln_graph_add_const(c->g, on->out[0], &t.type, t.data);
	if (!v)
		return oom(c);
	return define(c, v);
}

/* ---- ops.def ops, with older opsets canonicalised ----------------------- */

/* Attributes that older opsets carry and that mean nothing for inference. */
static bool harmless_attr(kiln_op op, const Onnx__AttributeProto *a)
{
	const char *name = KILN_ONNX_STR(a->name);
	if (op == KILN_OP_DROPOUT)
		return strcmp(name, "ratio") == 0 || strcmp(name, "is_test") == 0;
	if (op == KILN_OP_BATCH_NORM)
		return strcmp(name, "spatial") == 0 && a->i == 1;
	return false;
}

/* One node being built: inputs (room for canonical extras) and the
 * attributes the rewrite consumed. */
typedef struct build {
	kiln_value **in;
	int n_in;
	const char *skip[4];
	int n_skip;
} build;

static void set_in(build *b, int i, kiln_value *v)
{
	while (b->n_in <= i)
		b->in[b->n_in++] = NULL;
	b->in[i] = v;
}

/* Moves attribute `name` (ints) to input `index` as an i64 constant. */
static kiln_status attr_to_input(kiln_onnx_ctx *c, const kiln_onnx_node *on, build *b,
                                 const char *name, int index)
{
	const Onnx__AttributeProto *a = kiln_onnx_attr(on, name);
	if (!a)
		return KILN_OK;
	b->skip[b->n_skip++] = name;
	kiln_value *v = const_i64s(c, on->name, name, a->ints, a->n_ints);
	if (!v)
		return KILN_ERR_OOM;
	set_in(b, index, v);
	return KILN_OK;
}

/* Clip < 11 min/max and Pad < 11 value: scalar inputs of the data's dtype. */
static kiln_status float_attr_to_input(kiln_onnx_ctx *c, const kiln_onnx_node *on,
                                       build *b, const char *name, int index,
                                       bool always, double dflt)
{
	const Onnx__AttributeProto *a = kiln_onnx_attr(on, name);
	if (!a && !always)
		return KILN_OK;
	if (a)
		b->skip[b->n_skip++] = name;
	if (!b->in[0])
		return kiln_onnx_node_error(c, on, KILN_ERR_INVALID_MODEL, "input 0 is missing");
	kiln_value *v = kiln_onnx_scalar(c, on->name, name, b->in[0]->type.dtype, a ? a->f : dflt);
	if (!v)
		return KILN_ERR_OOM;
	set_in(b, index, v);
	return KILN_OK;
}

/* Softmax / LogSoftmax before opset 13 coerce the input to 2-D at `axis`. */
static kiln_status emit_softmax_2d(kiln_onnx_ctx *c, const kiln_onnx_node *on, kiln_op op,
                                   build *b, bool *done)
{
	const Onnx__AttributeProto *a = kiln_onnx_attr(on, "axis");
	int64_t axis = a ? a->i : 1;
	kiln_value *x = b->in[0];
	*done = false;
	if (!x || on->n_out != 1)
		return KILN_OK; /* the arity check reports it */
	int rank = x->type.rank, ax;
	if (!kiln_axis_norm(axis, rank, &ax))
		return kiln_onnx_node_error(c, on, KILN_ERR_SHAPE,
		                            "axis %lld is out of range for rank %d", (long long)axis, rank);
	kiln_node *n;
	if (ax == rank - 1) {
		KILN_TRY(kiln_onnx_add(c, on, op, NULL, b->in, 1, on->out, 1, &n));
		if (kiln_node_set_int(c->g, n, "axis", ax) != KILN_OK)
			return oom(c);
		*done = true;
		return kiln_onnx_finish(c, n);
	}
	kiln_node *flat;
	KILN_TRY(kiln_onnx_add(c, on, KILN_OP_FLATTEN, "flatten", &x, 1, NULL, 1, &flat));
	if (kiln_node_set_int(c->g, flat, "axis", ax) != KILN_OK)
		return oom(c);
	KILN_TRY(kiln_onnx_finish(c, flat));
	KILN_TRY(kiln_onnx_add(c, on, op, NULL, flat->outputs, 1, NULL, 1, &n));
	if (kiln_node_set_int(c->g, n, "axis", 1) != KILN_OK)
		return oom(c);
	KILN_TRY(kiln_onnx_finish(c, n));
	kiln_value *shape = const_i64s(c, on->name, "shape", x->type.dims, (size_t)rank);
	if (!shape)
		return KILN_ERR_OOM;
	kiln_value *ins[2] = {n->outputs[0], shape};
	kiln_value *y;
	*done = true;
	return kiln_onnx_helper(c, on, KILN_OP_RESHAPE, "reshape", ins, 2, on->out[0], &y);
}

static kiln_status emit_op(kiln_onnx_ctx *c, const kiln_onnx_node *on, kiln_op op)
{
	const kiln_op_info *info = kiln_op_get(op);
	build b = {0};
	if (!(b.in = kiln_arena_alloc(c->scratch, (size_t)(on->n_in + 5) * sizeof *b.in)))
		return oom(c);
	for (int i = 0; i < on->n_in; i++)
		KILN_TRY(kiln_onnx_input(c, on, i, &b.in[i]));
	b.n_in = on->n_in;
	while (b.n_in > 0 && !b.in[b.n_in - 1])
		b.n_in--;
	int n_out = on->n_out;
	while (n_out > 0 && !*on->out[n_out - 1])
		n_out--;

	int64_t opset = on->opset;
	bool num_outputs = false;
	switch (op) {
	case KILN_OP_SPLIT:
		if (opset < 13)
			KILN_TRY(attr_to_input(c, on, &b, "split", 1));
		num_outputs = (b.n_in < 2) && !kiln_onnx_attr(on, "num_outputs");
		break;
	case KILN_OP_SLICE:
		if (opset < 10) {
			if (!kiln_onnx_attr(on, "starts") || !kiln_onnx_attr(on, "ends"))
				return kiln_onnx_node_error(c, on, KILN_ERR_INVALID_MODEL,
				                            "needs attributes 'starts' and 'ends'");
			KILN_TRY(attr_to_input(c, on, &b, "starts", 1));
			KILN_TRY(attr_to_input(c, on, &b, "ends", 2));
			KILN_TRY(attr_to_input(c, on, &b, "axes", 3));
		}
		break;
	case KILN_OP_SQUEEZE:
	case KILN_OP_UNSQUEEZE:
	case KILN_OP_REDUCE_SUM:
		if (opset < 13)
			KILN_TRY(attr_to_input(c, on, &b, "axes", 1));
		break;
	case KILN_OP_REDUCE_MEAN:
	case KILN_OP_REDUCE_MAX:
	case KILN_OP_REDUCE_MIN:
		if (opset < 18)
			KILN_TRY(attr_to_input(c, on, &b, "axes", 1));
		break;
	case KILN_OP_PAD:
		if (opset < 11) {
			KILN_TRY(attr_to_input(c, on, &b, "pads", 1));
			KILN_TRY(float_attr_to_input(c, on, &b, "value", 2, true, 0.0));
		}
		break;
	case KILN_OP_CLIP:
		if (opset < 11) {
			KILN_TRY(float_attr_to_input(c, on, &b, "min", 1, false, 0.0));
			KILN_TRY(float_attr_to_input(c, on, &b, "max", 2, false, 0.0));
		}
		break;
	case KILN_OP_RESIZE:
		if (opset < 11 && b.n_in == 2) {
			kiln_value *scales = b.in[1];
			b.in[1] = NULL;
			set_in(&b, 2, scales);
		}
		break;
	case KILN_OP_SOFTMAX:
	case KILN_OP_LOG_SOFTMAX:
		if (opset < 13 && b.n_in == 1) {
			bool done;
			KILN_TRY(emit_softmax_2d(c, on, op, &b, &done));
			if (done)
				return KILN_OK;
		}
		break;
	case KILN_OP_BATCH_NORM:
		if (n_out > 1)
			return kiln_onnx_node_error(c, on, KILN_ERR_UNSUPPORTED,
			                            "training-mode outputs (running mean and "
			                            "variance) are not supported");
		break;
	default:
		break;
	}

	if (b.n_in < info->in_min || (info->in_max >= 0 && b.n_in > info->in_max))
		return kiln_onnx_node_error(c, on, KILN_ERR_INVALID_MODEL,
		                            "has %d inputs, expected %d to %d", b.n_in,
		                            info->in_min, info->in_max);
	for (int i = 0; i < info->in_min; i++)
		if (!b.in[i])
			return kiln_onnx_node_error(c, on, KILN_ERR_INVALID_MODEL,
			                            "required input %d is missing", i);
	if (n_out < info->out_min)
		return kiln_onnx_node_error(c, on, KILN_ERR_INVALID_MODEL,
		                            "has %d outputs, expected at least %d", n_out, info->out_min);
	if (info->out_max >= 0 && n_out > info->out_max)
		return kiln_onnx_node_error(c, on, KILN_ERR_UNSUPPORTED,
		                            "has %d outputs; kiln supports at most %d", n_out,
		                            info->out_max);

	kiln_node *n;
	KILN_TRY(kiln_onnx_add(c, on, op, NULL, b.in, b.n_in, on->out, n_out, &n));
	for (int i = 0; i < on->n_attr; i++) {
		const Onnx__AttributeProto *a = on->attr[i];
		bool skip = harmless_attr(op, a);
		for (int k = 0; k < b.n_skip; k++)
			skip = skip || strcmp(KILN_ONNX_STR(a->name), b.skip[k]) == 0;
		if (!skip)
			KILN_TRY(set_attr(c, on, n, a));
	}
	if (num_outputs && kiln_node_set_int(c->g, n, "num_outputs", n_out) != KILN_OK)
		return oom(c);
	if (op == KILN_OP_RESIZE && opset < 11) {
		/* Resize-10 is Upsample's arithmetic: asymmetric coordinates, floor. */
		if (kiln_node_set_string(c->g, n, "coordinate_transformation_mode", "asymmetric") != KILN_OK ||
		    kiln_node_set_string(c->g, n, "nearest_mode", "floor") != KILN_OK)
			return oom(c);
	}
	return kiln_onnx_finish(c, n);
}

/* The op of an ONNX op_type: a row of ops.def, but never one of kiln's own
 * (fusion, the NCHWc layout ops), which a model naming it gets refused like
 * any unknown op. */
static bool onnx_op_lookup(const char *op_type, kiln_op *op)
{
	return kiln_op_lookup(op_type, op) && *op != KILN_OP_FUSION &&
	       *op != KILN_OP_REORDER_TO_NCHWC && *op != KILN_OP_REORDER_FROM_NCHWC &&
	       *op != KILN_OP_CONV_NCHWC;
}

kiln_status kiln_onnx_emit(kiln_onnx_ctx *c, const kiln_onnx_node *on)
{
	kiln_op op;
	if (kiln_onnx_is_default_domain(on->domain)) {
		if (strcmp(on->op_type, "Constant") == 0)
			return emit_constant(c, on);
		if (onnx_op_lookup(on->op_type, &op))
			return emit_op(c, on, op);
		if (kiln_onnx_is_std_function(on->op_type))
			return kiln_onnx_expand_std(c, on);
	}
	const char *key = kiln_onnx_function_key(c, on->domain, on->op_type);
	if (!key)
		return oom(c);
	const Onnx__FunctionProto *f = kiln_onnx_map_get(&c->functions, key);
	if (f)
		return kiln_onnx_expand_function(c, on, f);
	return kiln_onnx_node_error(c, on, KILN_ERR_UNSUPPORTED, "operator '%s' of domain '%s' "
	                            "is not supported", on->op_type,
	                            kiln_onnx_is_default_domain(on->domain) ? "ai.onnx" : on->domain);
}

/* ---- the unsupported-operator census ------------------------------------ */

typedef struct unsupported {
	const char *op, *domain, *first;
	int64_t opset;
	int count;
	struct unsupported *next;
} unsupported;

typedef struct census {
	unsupported *head, *tail;
	int kinds;
	kiln_onnx_map visited; /* function keys already looked into */
} census;

static int64_t domain_version(Onnx__OperatorSetIdProto **imports, size_t n, const char *domain)
{
	for (size_t i = 0; i < n; i++) {
		const char *d = KILN_ONNX_STR(imports[i]->domain);
		if (kiln_onnx_is_default_domain(domain) ? kiln_onnx_is_default_domain(d)
		                                        : strcmp(d, domain) == 0)
			return imports[i]->version;
	}
	return 0;
}

static kiln_status census_nodes(kiln_onnx_ctx *c, census *cs, Onnx__NodeProto **nodes,
                                size_t n_nodes, const char **names,
                                Onnx__OperatorSetIdProto **imports, size_t n_imports,
                                const char *prefix)
{
	for (size_t i = 0; i < n_nodes; i++) {
		const Onnx__NodeProto *np = nodes[i];
		const char *op_type = KILN_ONNX_STR(np->op_type);
		const char *domain = KILN_ONNX_STR(np->domain);
		kiln_op op;
		if (kiln_onnx_is_default_domain(domain) &&
		    (strcmp(op_type, "Constant") == 0 || onnx_op_lookup(op_type, &op) ||
		     kiln_onnx_is_std_function(op_type)))
			continue;
		const char *key = kiln_onnx_function_key(c, domain, op_type);
		if (!key)
			return oom(c);
		const Onnx__FunctionProto *f = kiln_onnx_map_get(&c->functions, key);
		if (f) {
			if (kiln_onnx_map_get(&cs->visited, key))
				continue;
			if (!kiln_onnx_map_put(&cs->visited, key, (void *)key))
				return oom(c);
			const char *fprefix = scratch_printf(c, "%s/", KILN_ONNX_STR(f->name));
			if (!fprefix)
				return oom(c);
			Onnx__OperatorSetIdProto **fi = f->n_opset_import ? f->opset_import : imports;
			size_t nfi = f->n_opset_import ? f->n_opset_import : n_imports;
			KILN_TRY(census_nodes(c, cs, f->node, f->n_node, NULL, fi, nfi, fprefix));
			continue;
		}
		const char *dshow = kiln_onnx_is_default_domain(domain) ? "ai.onnx" : domain;
		unsupported *u = cs->head;
		while (u && !(strcmp(u->op, op_type) == 0 && strcmp(u->domain, dshow) == 0))
			u = u->next;
		if (!u) {
			if (!(u = kiln_arena_alloc(c->scratch, sizeof *u)))
				return oom(c);
			u->op = op_type;
			u->domain = dshow;
			u->opset = domain_version(imports, n_imports, domain);
			if (names)
				u->first = names[i];
			else if (np->name && *np->name)
				u->first = scratch_printf(c, "%s%s", prefix, np->name);
			else
				u->first = scratch_printf(c, "%snode_%zu", prefix, i);
			if (!u->first)
				return oom(c);
			if (cs->tail)
				cs->tail->next = u;
			else
				cs->head = u;
			cs->tail = u;
			cs->kinds++;
		}
		u->count++;
	}
	return KILN_OK;
}

/* Fails once, listing every operator kiln cannot build. */
static kiln_status check_supported(kiln_onnx_ctx *c, const char **names)
{
	const Onnx__GraphProto *gp = c->model->graph;
	census cs = {0};
	kiln_status s = census_nodes(c, &cs, gp->node, gp->n_node, names, c->model->opset_import,
	                             c->model->n_opset_import, "");
	kiln_onnx_map_free(&cs.visited);
	if (s != KILN_OK || !cs.kinds)
		return s;
	size_t cap = 64 + (size_t)cs.kinds * 160, len = 0;
	char *msg = kiln_arena_alloc(c->scratch, cap);
	if (!msg)
		return oom(c);
	len += (size_t)snprintf(msg, cap, "%d unsupported operator%s:", cs.kinds,
	                        cs.kinds == 1 ? "" : "s");
	for (const unsupported *u = cs.head; u && len < cap; u = u->next)
		len += (size_t)snprintf(msg + len, cap - len,
		                        "\n  %s (domain '%s', opset %lld): %d node%s, first '%s'",
		                        u->op, u->domain, (long long)u->opset, u->count,
		                        u->count == 1 ? "" : "s", u->first);
	return kiln_diag_error(c->d, KILN_ERR_UNSUPPORTED, NULL, "%s", msg);
}

/* ---- node order --------------------------------------------------------- */

static void heap_push(int *heap, int *n, int v)
{
	int i = (*n)++;
	heap[i] = v;
	while (i > 0 && heap[(i - 1) / 2] > heap[i]) {
		int p = (i - 1) / 2, t = heap[p];
		heap[p] = heap[i];
		heap[i] = t;
		i = p;
	}
}

static int heap_pop(int *heap, int *n)
{
	int top = heap[0];
	heap[0] = heap[--*n];
	for (int i = 0;;) {
		int l = 2 * i + 1, r = l + 1, m = i;
		if (l < *n && heap[l] < heap[m])
			m = l;
		if (r < *n && heap[r] < heap[m])
			m = r;
		if (m == i)
			break;
		int t = heap[m];
		heap[m] = heap[i];
		heap[i] = t;
		i = m;
	}
	return top;
}

/* A topological order of the graph's nodes, as close to the file's as the
 * dependencies allow (ONNX requires sorted graphs; not every writer obeys). */
static kiln_status order_nodes(kiln_onnx_ctx *c, const char **names, const kiln_onnx_map *sources,
                               int *order)
{
	const Onnx__GraphProto *gp = c->model->graph;
	int n = (int)gp->n_node;
	kiln_onnx_map producer = {0};
	int *indeg = kiln_arena_alloc(c->scratch, (size_t)(n + 1) * sizeof *indeg);
	int *n_succ = kiln_arena_alloc(c->scratch, (size_t)(n + 1) * sizeof *n_succ);
	int *first = kiln_arena_alloc(c->scratch, (size_t)(n + 2) * sizeof *first);
	int *succ = NULL;
	if (!indeg || !n_succ || !first)
		return oom(c);
	kiln_status s = KILN_OK;
	/* Producer indices are stored +1 so that NULL means "none". */
	for (int i = 0; i < n && s == KILN_OK; i++) {
		const Onnx__NodeProto *np = gp->node[i];
		for (size_t k = 0; k < np->n_output && s == KILN_OK; k++) {
			const char *o = np->output[k];
			if (!*o)
				continue;
			intptr_t other = (intptr_t)kiln_onnx_map_get(&producer, o);
			if (other || kiln_onnx_map_get(sources, o))
				s = kiln_diag_error(c->d, KILN_ERR_INVALID_MODEL, NULL,
				                    "node '%s' (%s): output %zu '%s' is already defined%s%s%s",
				                    names[i], KILN_ONNX_STR(np->op_type), k, o,
				                    other ? " by node '" : " as an initializer or graph input",
				                    other ? names[other - 1] : "", other ? "'" : "");
			else if (!kiln_onnx_map_put(&producer, o, (void *)(intptr_t)(i + 1)))
				s = oom(c);
		}
	}
	/* Edges in compressed rows: first[p] .. first[p+1] are p's consumers. */
	for (int pass = 0; pass < 2 && s == KILN_OK; pass++) {
		for (int i = 0; i < n && s == KILN_OK; i++) {
			const Onnx__NodeProto *np = gp->node[i];
			for (size_t k = 0; k < np->n_input; k++) {
				const char *in = np->input[k];
				if (!*in)
					continue;
				intptr_t p = (intptr_t)kiln_onnx_map_get(&producer, in);
				if (p && pass == 0) {
					n_succ[p - 1]++;
					indeg[i]++;
				} else if (p) {
					succ[first[p - 1] + --n_succ[p - 1]] = i;
				} else if (!kiln_onnx_map_get(sources, in)) {
					s = kiln_diag_error(c->d, KILN_ERR_INVALID_MODEL, NULL,
					                    "node '%s' (%s): input %zu '%s' is not produced "
					                    "by any node, initializer or graph input",
					                    names[i], KILN_ONNX_STR(np->op_type), k, in);
					break;
				}
			}
		}
		if (pass == 0 && s == KILN_OK) {
			int total = 0;
			for (int i = 0; i < n; i++) {
				first[i] = total;
				total += n_succ[i];
			}
			first[n] = total;
			if (!(succ = kiln_arena_alloc(c->scratch, (size_t)(total + 1) * sizeof *succ)))
				s = oom(c);
		}
	}
	kiln_onnx_map_free(&producer);
	if (s != KILN_OK)
		return s;
	int *ready = kiln_arena_alloc(c->scratch, (size_t)(n + 1) * sizeof *ready);
	if (!ready)
		return oom(c);
	int n_ready = 0, done = 0;
	for (int i = 0; i < n; i++)
		if (!indeg[i])
			heap_push(ready, &n_ready, i);
	while (n_ready) {
		int i = heap_pop(ready, &n_ready);
		order[done++] = i;
		for (int e = first[i]; e < first[i + 1]; e++)
			if (--indeg[succ[e]] == 0)
				heap_push(ready, &n_ready, succ[e]);
	}
	for (int i = 0; i < n && done < n; i++)
		if (indeg[i])
			return kiln_diag_error(c->d, KILN_ERR_INVALID_MODEL, NULL,
			                       "node '%s' (%s): is part of a cycle (it depends on "
			                       "its own outputs)", names[i],
			                       KILN_ONNX_STR(gp->node[i]->op_type));
	return KILN_OK;
}

/* ---- graph inputs, pins, bindings --------------------------------------- */

/* "f32[?,3,224,224]" for a declared input type. */
static void declared_str(const kiln_type *t, const bool *known, char *buf, size_t size)
{
	size_t len = (size_t)snprintf(buf, size, "%s[", kiln_dtype_name(t->dtype));
	for (int i = 0; i < t->rank && len < size; i++) {
		if (known[i])
			len += (size_t)snprintf(buf + len, size - len, "%s%lld", i ? "," : "",
			                        (long long)t->dims[i]);
		else
			len += (size_t)snprintf(buf + len, size - len, "%s?", i ? "," : "");
	}
	if (len < size)
		snprintf(buf + len, size - len, "]");
}

/* The declared type of a graph input; known[i] is false for symbolic or
 * missing dims; *has_shape false when the rank itself is unknown. */
static kiln_status declared_type(kiln_onnx_ctx *c, const Onnx__ValueInfoProto *vi, const char *what,
                                 kiln_type *t, bool *known, bool *has_shape,
                                 const char **params)
{
	const char *name = KILN_ONNX_STR(vi->name);
	memset(t, 0, sizeof *t);
	const Onnx__TypeProto *tp = vi->type;
	if (!tp || tp->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE || !tp->tensor_type)
		return kiln_diag_error(c->d, KILN_ERR_UNSUPPORTED, NULL,
		                       "%s '%s' is not a tensor (sequences, maps, optionals and "
		                       "sparse tensors are not supported)", what, name);
	const Onnx__TypeProto__Tensor *tt = tp->tensor_type;
	int32_t code = tt->has_elem_type ? tt->elem_type : 0;
	if (!kiln_dtype_from_onnx(code, &t->dtype))
		return kiln_diag_error(c->d, KILN_ERR_UNSUPPORTED, NULL,
		                       "%s '%s' has data type %s (%d), which kiln does not support",
		                       what, name, kiln_onnx_dtype_name(code), (int)code);
	*has_shape = tt->shape != NULL;
	if (!tt->shape)
		return KILN_OK;
	if (tt->shape->n_dim > KILN_MAX_RANK)
		return kiln_diag_error(c->d, KILN_ERR_UNSUPPORTED, NULL,
		                       "%s '%s' has rank %zu; kiln supports at most %d", what, name,
		                       tt->shape->n_dim, KILN_MAX_RANK);
	t->rank = (int)tt->shape->n_dim;
	for (int i = 0; i < t->rank; i++) {
		const Onnx__TensorShapeProto__Dimension *dim = tt->shape->dim[i];
		known[i] = dim->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE &&
		           dim->dim_value >= 0;
		t->dims[i] = known[i] ? dim->dim_value : 1;
		params[i] = dim->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM
		                    ? KILN_ONNX_STR(dim->dim_param)
		                    : "";
	}
	return KILN_OK;
}

static const kiln_shape_pin *find_pin(const kiln_import_opts *o, const char *name)
{
	for (int i = 0; i < o->n_pins; i++)
		if (o->pins[i].name && strcmp(o->pins[i].name, name) == 0)
			return &o->pins[i];
	return NULL;
}

static const kiln_input_binding *find_binding(const kiln_import_opts *o, const char *name)
{
	for (int i = 0; i < o->n_bindings; i++)
		if (o->bindings[i].name && strcmp(o->bindings[i].name, name) == 0)
			return &o->bindings[i];
	return NULL;
}

static kiln_status add_input(kiln_onnx_ctx *c, const Onnx__ValueInfoProto *vi, bool is_init)
{
	const char *name = KILN_ONNX_STR(vi->name);
	kiln_type t;
	bool known[KILN_MAX_RANK], has_shape;
	const char *params[KILN_MAX_RANK];
	const kiln_input_binding *bind = find_binding(c->opts, name);
	const kiln_shape_pin *pin = find_pin(c->opts, name);
	char buf[256], got[256];
	if (is_init && !bind) {
		if (pin)
			return kiln_diag_error(c->d, KILN_ERR_INVALID_ARG, NULL,
			                       "--shape names '%s', which is an initializer, not a "
			                       "graph input", name);
		return KILN_OK;
	}
	KILN_TRY(declared_type(c, vi, "input", &t, known, &has_shape, params));
	if (bind) {
		const kiln_type *bt = &bind->value.type;
		bool ok = bt->dtype == t.dtype && (!has_shape || bt->rank == t.rank);
		for (int i = 0; ok && has_shape && i < t.rank; i++)
			ok = !known[i] || bt->dims[i] == t.dims[i];
		if (!ok) {
			if (has_shape)
				declared_str(&t, known, buf, sizeof buf);
			else
				snprintf(buf, sizeof buf, "%s[...]", kiln_dtype_name(t.dtype));
			return kiln_diag_error(c->d, KILN_ERR_SHAPE, NULL,
			                       "binding for input '%s' is %s, but the input is %s", name,
			                       kiln_type_str(bt, got, sizeof got), buf);
		}
		kiln_value *v = kiln_graph_add_const(c->g, name, bt, bind->value.data);
		return v ? define(c, v) : oom(c);
	}
	if (!has_shape) {
		if (!pin)
			return kiln_diag_error(c->d, KILN_ERR_SHAPE, NULL,
			                       "input '%s' has unknown rank; pin it with --shape "
			                       "%s=DIMxDIMx...", name, name);
		t.rank = pin->rank;
		for (int i = 0; i < t.rank; i++)
			known[i] = false;
	}
	if (pin) {
		if (pin->rank != t.rank)
			return kiln_diag_error(c->d, KILN_ERR_SHAPE, NULL,
			                       "--shape for input '%s' has rank %d, but the input has "
			                       "rank %d", name, pin->rank, t.rank);
		for (int i = 0; i < t.rank; i++) {
			if (pin->dims[i] < 0)
				return kiln_diag_error(c->d, KILN_ERR_INVALID_ARG, NULL,
				                       "--shape for input '%s': dimension %d is negative",
				                       name, i);
			if (known[i] && pin->dims[i] != t.dims[i])
				return kiln_diag_error(c->d, KILN_ERR_SHAPE, NULL,
				                       "--shape for input '%s': dimension %d is %lld, but "
				                       "the model fixes it to %lld", name, i,
				                       (long long)pin->dims[i], (long long)t.dims[i]);
			t.dims[i] = pin->dims[i];
		}
	} else {
		for (int i = 0; i < t.rank; i++) {
			if (known[i])
				continue;
			size_t len = 0;
			for (int k = 0; k < t.rank && len < sizeof buf; k++)
				len += (size_t)snprintf(buf + len, sizeof buf - len, "%s%lld", k ? "x" : "",
				                        (long long)t.dims[k]);
			char param[200] = "";
			if (*params[i])
				snprintf(param, sizeof param, " ('%s')", params[i]);
			return kiln_diag_error(c->d, KILN_ERR_SHAPE, NULL,
			                       "input '%s' has unknown dimension %d%s; pin it with "
			                       "--shape %s=%s", name, i, param, name, buf);
		}
	}
	kiln_value *v = kiln_graph_add_input(c->g, name, &t);
	return v ? define(c, v) : oom(c);
}

/* Every pin and binding must name a graph input. */
static kiln_status check_opts_names(kiln_onnx_ctx *c)
{
	const Onnx__GraphProto *gp = c->model->graph;
	for (int p = 0; p < c->opts->n_pins + c->opts->n_bindings; p++) {
		bool is_pin = p < c->opts->n_pins;
		const char *name = is_pin ? c->opts->pins[p].name
		                          : c->opts->bindings[p - c->opts->n_pins].name;
		bool found = false;
		for (size_t i = 0; name && i < gp->n_input && !found; i++)
			found = strcmp(KILN_ONNX_STR(gp->input[i]->name), name) == 0;
		if (found)
			continue;
		char list[512];
		size_t len = 0;
		list[0] = 0;
		for (size_t i = 0; i < gp->n_input && len < sizeof list; i++)
			len += (size_t)snprintf(list + len, sizeof list - len, "%s'%s'", i ? ", " : "",
			                        KILN_ONNX_STR(gp->input[i]->name));
		return kiln_diag_error(c->d, KILN_ERR_INVALID_ARG, NULL,
		                       "%s names '%s', which is not a graph input (inputs: %s)",
		                       is_pin ? "--shape" : "a binding", KILN_ONNX_STR(name),
		                       gp->n_input ? list : "none");
	}
	return KILN_OK;
}

/* ---- the import --------------------------------------------------------- */

static kiln_status add_initializers(kiln_onnx_ctx *c, const kiln_onnx_map *bound_inputs)
{
	const Onnx__GraphProto *gp = c->model->graph;
	if (gp->n_sparse_initializer)
		return kiln_diag_error(c->d, KILN_ERR_UNSUPPORTED, NULL,
		                       "sparse initializers are not supported");
	for (size_t i = 0; i < gp->n_initializer; i++) {
		const Onnx__TensorProto *tp = gp->initializer[i];
		const char *name = KILN_ONNX_STR(tp->name);
		if (!*name)
			return kiln_diag_error(c->d, KILN_ERR_INVALID_MODEL, NULL,
			                       "initializer %zu has no name", i);
		if (kiln_onnx_map_get(&c->values, name))
			return kiln_diag_error(c->d, KILN_ERR_INVALID_MODEL, NULL,
			                       "initializer '%s' is defined more than once", name);
		if (kiln_onnx_map_get(bound_inputs, name))
			continue;
		const char *what = scratch_printf(c, "initializer '%s'", name);
		if (!what)
			return oom(c);
		kiln_type t;
		KILN_TRY(kiln_onnx_tensor_type(tp, what, &t, c->d));
		kiln_value *v = kiln_graph_add_const(c->g, name, &t, NULL);
		if (!v)
			return oom(c);
		KILN_TRY(kiln_onnx_tensor_data(tp, what, c->dir, &t, v->data, c->d));
		KILN_TRY(define(c, v));
	}
	return KILN_OK;
}

static kiln_status add_outputs(kiln_onnx_ctx *c)
{
	const Onnx__GraphProto *gp = c->model->graph;
	if (!gp->n_output)
		return kiln_diag_error(c->d, KILN_ERR_INVALID_MODEL, NULL, "graph has no outputs");
	for (size_t i = 0; i < gp->n_output; i++) {
		const Onnx__ValueInfoProto *vi = gp->output[i];
		const char *name = KILN_ONNX_STR(vi->name);
		kiln_value *v = kiln_onnx_map_get(&c->values, name);
		if (!*name || !v)
			return kiln_diag_error(c->d, KILN_ERR_INVALID_MODEL, NULL,
			                       "graph output '%s' is not produced by any node, "
			                       "initializer or graph input", name);
		const Onnx__TypeProto *tp = vi->type;
		if (tp && tp->value_case == ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE && tp->tensor_type &&
		    tp->tensor_type->has_elem_type && tp->tensor_type->elem_type != 0) {
			int32_t code = tp->tensor_type->elem_type;
			kiln_dtype dt;
			if (!kiln_dtype_from_onnx(code, &dt) || dt != v->type.dtype)
				return kiln_diag_error(c->d, KILN_ERR_SHAPE, NULL,
				                       "graph output '%s' is declared %s, but kiln infers %s",
				                       name, kiln_onnx_dtype_name(code),
				                       kiln_dtype_name(v->type.dtype));
		}
		if (kiln_graph_add_output(c->g, v) != KILN_OK)
			return oom(c);
	}
	return KILN_OK;
}

/* The default-domain opset. A model that imports none may still consist of
 * other domains' ops only: the census reports those first, so the missing
 * import is an error only once it is known to matter. */
static kiln_status check_opset(kiln_onnx_ctx *c, bool *found)
{
	*found = false;
	for (size_t i = 0; i < c->model->n_opset_import; i++) {
		const Onnx__OperatorSetIdProto *o = c->model->opset_import[i];
		if (kiln_onnx_is_default_domain(o->domain)) {
			c->opset = o->version;
			*found = true;
		}
	}
	if (*found && (c->opset < KILN_ONNX_OPSET_MIN || c->opset > KILN_ONNX_OPSET_MAX))
		return kiln_diag_error(c->d, KILN_ERR_UNSUPPORTED, NULL,
		                       "opset %lld of domain 'ai.onnx' is not supported (kiln "
		                       "supports opsets %d to %d)", (long long)c->opset,
		                       KILN_ONNX_OPSET_MIN, KILN_ONNX_OPSET_MAX);
	return KILN_OK;
}

static kiln_status import(kiln_onnx_ctx *c, const uint8_t *buf, size_t len)
{
	if (!(c->model = onnx__model_proto__unpack(NULL, len, buf)))
		return kiln_diag_error(c->d, KILN_ERR_INVALID_MODEL, NULL,
		                       "not a valid ONNX model: protobuf parse failed (truncated or "
		                       "corrupt file)");
	const Onnx__GraphProto *gp = c->model->graph;
	if (!gp)
		return kiln_diag_error(c->d, KILN_ERR_INVALID_MODEL, NULL, "model has no graph");
	bool has_opset;
	KILN_TRY(check_opset(c, &has_opset));
	if (!(c->g = kiln_graph_create(gp->name && *gp->name ? gp->name : "graph", NULL)))
		return oom(c);
	c->g->opset = (int)c->opset;

	for (size_t i = 0; i < c->model->n_functions; i++) {
		const Onnx__FunctionProto *f = c->model->functions[i];
		const char *key = kiln_onnx_function_key(c, f->domain, f->name);
		if (!key || !kiln_onnx_map_put(&c->functions, key, (void *)f))
			return oom(c);
	}

	/* Names: every declared value is reserved (helpers avoid them); nodes
	 * get unique names, node_<index> when the file has none. */
	kiln_onnx_map sources = {0}, bound = {0};
	kiln_status s = KILN_OK;
	int n = (int)gp->n_node;
	const char **names = kiln_arena_alloc(c->scratch, (size_t)(n + 1) * sizeof *names);
	int *order = kiln_arena_alloc(c->scratch, (size_t)(n + 1) * sizeof *order);
	if (!names || !order)
		s = oom(c);
	for (size_t i = 0; i < gp->n_initializer && s == KILN_OK; i++) {
		const char *nm = KILN_ONNX_STR(gp->initializer[i]->name);
		if (!kiln_onnx_map_put(&sources, nm, (void *)nm) ||
		    !kiln_onnx_map_put(&c->reserved, nm, (void *)nm))
			s = oom(c);
	}
	for (size_t i = 0; i < gp->n_input && s == KILN_OK; i++) {
		const char *nm = KILN_ONNX_STR(gp->input[i]->name);
		if (!kiln_onnx_map_put(&sources, nm, (void *)nm) ||
		    !kiln_onnx_map_put(&c->reserved, nm, (void *)nm) ||
		    (find_binding(c->opts, nm) && !kiln_onnx_map_put(&bound, nm, (void *)nm)))
			s = oom(c);
	}
	for (int i = 0; i < n && s == KILN_OK; i++) {
		const Onnx__NodeProto *np = gp->node[i];
		for (size_t k = 0; k < np->n_output && s == KILN_OK; k++)
			if (!kiln_onnx_map_put(&c->reserved, np->output[k], (void *)np->output[k]))
				s = oom(c);
		char idx[32];
		snprintf(idx, sizeof idx, "node_%d", i);
		if (s == KILN_OK &&
		    !(names[i] = kiln_onnx_fresh_node_name(c, np->name && *np->name ? np->name : idx, NULL)))
			s = oom(c);
	}
	if (s == KILN_OK)
		s = check_supported(c, names);
	if (s == KILN_OK && !has_opset)
		s = kiln_diag_error(c->d, KILN_ERR_INVALID_MODEL, NULL,
		                    "model imports no opset of the default domain ('ai.onnx')");
	if (s == KILN_OK)
		s = order_nodes(c, names, &sources, order);
	if (s == KILN_OK)
		s = check_opts_names(c);
	if (s == KILN_OK)
		s = add_initializers(c, &bound);
	for (size_t i = 0; i < gp->n_input && s == KILN_OK; i++) {
		const char *nm = KILN_ONNX_STR(gp->input[i]->name);
		bool is_init = false;
		for (size_t k = 0; k < gp->n_initializer && !is_init; k++)
			is_init = strcmp(KILN_ONNX_STR(gp->initializer[k]->name), nm) == 0;
		if (!*nm)
			s = kiln_diag_error(c->d, KILN_ERR_INVALID_MODEL, NULL, "input %zu has no name", i);
		else if (!is_init && kiln_onnx_map_get(&c->values, nm))
			s = kiln_diag_error(c->d, KILN_ERR_INVALID_MODEL, NULL,
			                    "input '%s' is declared more than once", nm);
		else
			s = add_input(c, gp->input[i], is_init);
	}
	kiln_onnx_map_free(&sources);
	kiln_onnx_map_free(&bound);
	for (int k = 0; k < n && s == KILN_OK; k++) {
		const Onnx__NodeProto *np = gp->node[order[k]];
		kiln_onnx_node on = {
			.op_type = KILN_ONNX_STR(np->op_type),
			.domain = KILN_ONNX_STR(np->domain),
			.name = names[order[k]],
			.n_in = (int)np->n_input,
			.in = (const char **)np->input,
			.n_out = (int)np->n_output,
			.out = (const char **)np->output,
			.n_attr = (int)np->n_attribute,
			.attr = np->attribute,
			.opset = c->opset,
		};
		s = kiln_onnx_emit(c, &on);
	}
	if (s == KILN_OK)
		s = add_outputs(c);
	if (s == KILN_OK)
		s = kiln_graph_verify(c->g, c->d);
	return s;
}

kiln_status kiln_onnx_import(const char *path, const kiln_import_opts *opts,
                             kiln_graph **out, kiln_diag *d)
{
	static const kiln_import_opts no_opts;
	kiln_diag local;
	const char *saved_file;
	*out = NULL;
	d = kiln_diag_enter(d, &local, path, &saved_file);
	kiln_onnx_ctx c = {.d = d, .opts = opts ? opts : &no_opts};
	uint8_t *buf = NULL;
	size_t len = 0;
	kiln_status s = kiln_onnx_read_file(path, &buf, &len, d);
	if (s == KILN_OK && (!(c.dir = kiln_onnx_dirname(path)) || !(c.scratch = kiln_arena_create(NULL))))
		s = oom(&c);
	if (s == KILN_OK)
		s = import(&c, buf, len);
	kiln_onnx_map_free(&c.values);
	kiln_onnx_map_free(&c.reserved);
	kiln_onnx_map_free(&c.node_names);
	kiln_onnx_map_free(&c.functions);
	kiln_arena_destroy(c.scratch);
	if (c.model)
		onnx__model_proto__free_unpacked(c.model, NULL);
	free((char *)c.dir);
	free(buf);
	if (s == KILN_OK)
		*out = c.g;
	else
		kiln_graph_destroy(c.g);
	kiln_diag_leave(d, saved_file);
	return s;
}
