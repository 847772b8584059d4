/* text_print.c — prints a graph as textual IR (.kir).
 *
 * The grammar is in docs/ir.md; text_parse.c reads it back. Printing is
 * deterministic and exact: every float reads back to the same bits, so
 * print -> parse -> print gives identical text. */
#include "ir.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Constants with at most this many elements always print in full. */
#define DENSE_MAX_NUMEL 16

/* A growing output buffer; after a failed realloc it stops growing and the
 * printer returns NULL. */
typedef struct out {
	char *buf;
	size_t len, cap;
	bool oom;
} out;

static bool reserve(out *o, size_t extra)
{
	if (o->oom)
		return false;
	if (extra > SIZE_MAX / 2 - o->len) {
		o->oom = true;
		return false;
	}
	size_t need = o->len + extra + 1;
	if (need <= o->cap)
		return true;
	size_t cap = o->cap ? o->cap : 4096;
	while (cap < need)
		cap *= 2;
	char *p = realloc(o->buf, cap);
	if (!p) {
		o->oom = true;
		return false;
	}
	o->buf = p;
	o->cap = cap;
	return true;
}

static void put_mem(out *o, const char *s, size_t n)
{
	if (!reserve(o, n))
		return;
	memcpy(o->buf + o->len, s, n);
	o->len += n;
	o->buf[o->len] = 0;
}

static void put(out *o, const char *s) { put_mem(o, s, strlen(s)); }

static void putf(out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(out *o, const char *fmt, ...)
{
	char tmp[128];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n < sizeof tmp) {
		put_mem(o, tmp, (size_t)n);
		return;
	}
	if (!reserve(o, (size_t)n))
		return;
	va_start(ap, fmt);
	vsnprintf(o->buf + o->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	o->len += (size_t)n;
}

/* ---- names and strings ---- */

static bool is_bare_char(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '_' || c == '.' || c == '$' || c == '-';
}

/* "..." with C escapes; bytes >= 0x80 are kept as they are so UTF-8 names
 * stay readable. */
static void put_quoted(out *o, const char *s)
{
	put(o, "\"");
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p == '"')
			put(o, "\\\"");
		else if (*p == '\\')
			put(o, "\\\\");
		else if (*p == '\n')
			put(o, "\\n");
		else if (*p == '\t')
			put(o, "\\t");
		else if (*p < 0x20 || *p == 0x7f)
			putf(o, "\\x%02x", *p);
		else
			put_mem(o, (const char *)p, 1);
	}
	put(o, "\"");
}

static void put_bare_or_quoted(out *o, const char *s)
{
	bool bare = *s != 0;
	for (const unsigned char *p = (const unsigned char *)s; *p && bare; p++)
		bare = is_bare_char(*p);
	if (bare)
		put(o, s);
	else
		put_quoted(o, s);
}

/* %name or @name */
static void put_name(out *o, char sigil, const char *name)
{
	put_mem(o, &sigil, 1);
	put_bare_or_quoted(o, name);
}

/* ---- numbers ---- */

/* A finite or infinite float in `digits` significant digits, with ".0"
 * appended when it would otherwise read as an integer. */
static void put_real(out *o, double x, int digits)
{
	char buf[64];
	snprintf(buf, sizeof buf, "%.*g", digits, x);
	put(o, buf);
	if (!strpbrk(buf, ".eni"))
		put(o, ".0");
}

/* NaN: `nan` / `-nan` for the dtype's canonical quiet NaN, else the raw
 * bits so that payloads survive. */
static void put_nan(out *o, uint64_t bits, uint64_t quiet, int sign_shift, int hex_digits)
{
	uint64_t sign = (uint64_t)1 << sign_shift;
	if (bits == quiet)
		put(o, "nan");
	else if (bits == (quiet | sign))
		put(o, "-nan");
	else
		putf(o, "nan(0x%0*" PRIx64 ")", hex_digits, bits);
}

static void put_f32(out *o, float f)
{
	uint32_t u;
	memcpy(&u, &f, sizeof u);
	if (isnan(f))
		put_nan(o, u, 0x7fc00000u, 31, 8);
	else
		put_real(o, f, 9);
}

static void put_elem(out *o, kiln_dtype dt, const void *data, int64_t i)
{
	switch (dt) {
	case KILN_DT_F32: {
		float f;
		memcpy(&f, (const float *)data + i, sizeof f);
		put_f32(o, f);
		break;
	}
	case KILN_DT_F16: {
		uint16_t h = ((const uint16_t *)data)[i];
		if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff))
			put_nan(o, h, 0x7e00, 15, 4);
		else
			put_real(o, kiln_f16_to_f32(h), 9);
		break;
	}
	case KILN_DT_BF16: {
		uint16_t h = ((const uint16_t *)data)[i];
		if ((h & 0x7f80) == 0x7f80 && (h & 0x7f))
			put_nan(o, h, 0x7fc0, 15, 4);
		else
			put_real(o, kiln_bf16_to_f32(h), 9);
		break;
	}
	case KILN_DT_F64: {
		double x;
		memcpy(&x, (const double *)data + i, sizeof x);
		uint64_t u;
		memcpy(&u, &x, sizeof u);
		if (isnan(x))
			put_nan(o, u, 0x7ff8000000000000u, 63, 16);
		else
			put_real(o, x, 17);
		break;
	}
	case KILN_DT_I64: putf(o, "%" PRId64, ((const int64_t *)data)[i]); break;
	case KILN_DT_I32: putf(o, "%" PRId32, ((const int32_t *)data)[i]); break;
	case KILN_DT_I8: putf(o, "%d", ((const int8_t *)data)[i]); break;
	case KILN_DT_U8: putf(o, "%u", ((const uint8_t *)data)[i]); break;
	case KILN_DT_BOOL: put(o, ((const uint8_t *)data)[i] ? "true" : "false"); break;
	default: put(o, "?"); break;
	}
}

static void put_type(out *o, const kiln_type *t)
{
	char buf[256];
	put(o, kiln_type_str(t, buf, sizeof buf));
}

/* More than one element, all bitwise equal. */
static bool is_splat(const kiln_type *t, const void *data)
{
	int64_t numel = kiln_type_numel(t);
	size_t es = kiln_dtype_size(t->dtype);
	bool splat = numel > 1;
	for (int64_t i = 1; i < numel && splat; i++)
		splat = memcmp((const char *)data + (size_t)i * es, data, es) == 0;
	return splat;
}

/* dense<[a, b, ...]>, or dense<x> for a splat. */
static void put_dense(out *o, const kiln_type *t, const void *data)
{
	int64_t numel = kiln_type_numel(t);
	put(o, "dense<");
	if (is_splat(t, data)) {
		put_elem(o, t->dtype, data, 0);
	} else {
		put(o, "[");
		for (int64_t i = 0; i < numel && !o->oom; i++) {
			if (i)
				put(o, ", ");
			put_elem(o, t->dtype, data, i);
		}
		put(o, "]");
	}
	put(o, ">");
}

/* "min X max Y mean Z fnv 0xHASH": enough to tell weights apart at a glance,
 * and identical weights always give identical text. */
static void put_summary(out *o, const kiln_value *v)
{
	int64_t numel = kiln_type_numel(&v->type);
	double mn = 0, mx = 0, sum = 0;
	for (int64_t i = 0; i < numel; i++) {
		double x = kiln_const_get_f64(v, i);
		if (i == 0 || x < mn)
			mn = x;
		if (i == 0 || x > mx)
			mx = x;
		sum += x;
	}
	uint64_t h = 0xcbf29ce484222325u; /* FNV-1a 64 */
	const unsigned char *p = v->data;
	size_t bytes = kiln_type_bytes(&v->type);
	for (size_t i = 0; i < bytes; i++) {
		h ^= p[i];
		h *= 0x100000001b3u;
	}
	char buf[160];
	snprintf(buf, sizeof buf, "min %.6g max %.6g mean %.6g fnv 0x%016" PRIx64, mn, mx,
	         numel ? sum / (double)numel : 0.0, h);
	put(o, "elided<");
	put_quoted(o, buf);
	put(o, ">");
}

static void put_quant(out *o, const kiln_quant *q)
{
	putf(o, " quant<axis = %d, scale = [", q->axis);
	for (int i = 0; i < q->n; i++) {
		if (i)
			put(o, ", ");
		put_f32(o, q->scale[i]);
	}
	put(o, "], zero_point = [");
	for (int i = 0; i < q->n; i++)
		putf(o, i ? ", %" PRId32 : "%" PRId32, q->zero_point[i]);
	put(o, "]>");
}

/* %name : TYPE [quant<...>] */
static void put_value_decl(out *o, const kiln_value *v)
{
	put_name(o, '%', v->name);
	put(o, " : ");
	put_type(o, &v->type);
	if (v->quant)
		put_quant(o, v->quant);
}

static void put_attr(out *o, const kiln_attr *a)
{
	put_bare_or_quoted(o, a->name);
	put(o, " = ");
	switch (a->kind) {
	case KILN_ATTR_INT: putf(o, "%" PRId64, a->u.i); break;
	case KILN_ATTR_FLOAT: put_f32(o, a->u.f); break;
	case KILN_ATTR_STRING: put_quoted(o, a->u.s); break;
	case KILN_ATTR_INTS:
		if (a->n == 0) {
			put(o, "ints[]");
			break;
		}
		put(o, "[");
		for (int i = 0; i < a->n; i++)
			putf(o, i ? ", %" PRId64 : "%" PRId64, a->u.ints[i]);
		put(o, "]");
		break;
	case KILN_ATTR_FLOATS:
		if (a->n == 0) {
			put(o, "floats[]");
			break;
		}
		put(o, "[");
		for (int i = 0; i < a->n; i++) {
			if (i)
				put(o, ", ");
			put_f32(o, a->u.floats[i]);
		}
		put(o, "]");
		break;
	case KILN_ATTR_TENSOR:
		put(o, "tensor<");
		put_type(o, &a->u.t->type);
		put(o, " ");
		put_dense(o, &a->u.t->type, a->u.t->data);
		put(o, ">");
		break;
	default: put(o, "?"); break;
	}
}

/* Two blanks per level: 1 for a graph's statements, 2 for a body's. */
static void put_indent(out *o, int depth)
{
	for (int i = 0; i < depth; i++)
		put(o, "  ");
}

static void put_statements(out *o, const kiln_graph *g, int depth, bool full);

/* A node line; a node with a body (a fusion node) ends it with '{', then
 * its body's statements one level deeper, then '}' on a line of its own. */
static void put_node(out *o, const kiln_node *n, int depth, bool full)
{
	put_indent(o, depth);
	if (n->n_outputs == 0)
		put(o, "()");
	for (int i = 0; i < n->n_outputs; i++) {
		if (i)
			put(o, ", ");
		put_value_decl(o, n->outputs[i]);
	}
	put(o, " = ");
	put(o, kiln_op_name(n->op));
	put(o, " ");
	put_name(o, '@', n->name);
	put(o, " (");
	for (int i = 0; i < n->n_inputs; i++) {
		if (i)
			put(o, ", ");
		if (n->inputs[i])
			put_name(o, '%', n->inputs[i]->name);
		else
			put(o, "_");
	}
	put(o, ")");
	if (n->n_attrs) {
		put(o, " {");
		for (int i = 0; i < n->n_attrs; i++) {
			if (i)
				put(o, ", ");
			put_attr(o, &n->attrs[i]);
		}
		put(o, "}");
	}
	if (n->origin) {
		put(o, " loc(");
		put_quoted(o, n->origin);
		put(o, ")");
	}
	if (n->body) {
		put(o, " {\n");
		put_statements(o, n->body, depth + 1, full);
		put_indent(o, depth);
		put(o, "}");
	}
	put(o, "\n");
}

static void put_const(out *o, const kiln_value *v, int depth, bool full)
{
	put_indent(o, depth);
	put(o, "const ");
	put_value_decl(o, v);
	put(o, " = ");
	if (!v->data) {
		/* parsed from elided text: the summary is all there is */
		put(o, "elided<");
		put_quoted(o, v->elided ? v->elided : "");
		put(o, ">");
	} else if (full || kiln_type_numel(&v->type) <= DENSE_MAX_NUMEL ||
	           is_splat(&v->type, v->data)) {
		/* a splat is short and exact, so it never needs eliding */
		put_dense(o, &v->type, v->data);
	} else {
		put_summary(o, v);
	}
	put(o, "\n");
}

/* A graph's (or body's) inputs, constants, nodes and outputs. */
static void put_statements(out *o, const kiln_graph *g, int depth, bool full)
{
	for (int i = 0; i < g->n_inputs; i++) {
		put_indent(o, depth);
		put(o, "input ");
		put_value_decl(o, g->inputs[i]);
		put(o, "\n");
	}
	for (int i = 0; i < g->n_values; i++)
		if (g->values[i]->kind == KILN_VALUE_CONST)
			put_const(o, g->values[i], depth, full);
	for (int i = 0; i < g->n_nodes; i++)
		put_node(o, g->nodes[i], depth, full);
	for (int i = 0; i < g->n_outputs; i++) {
		put_indent(o, depth);
		put(o, "output ");
		put_name(o, '%', g->outputs[i]->name);
		put(o, "\n");
	}
}

char *kiln_graph_print(const kiln_graph *g, const kiln_print_opts *opts)
{
	bool full = opts && opts->full_constants;
	out o = {0};
	put(&o, "graph ");
	put_name(&o, '@', g->name);
	putf(&o, " opset %d {\n", g->opset);
	put_statements(&o, g, 1, full);
	put(&o, "}\n");
	if (o.oom) {
		free(o.buf);
		return NULL;
	}
	return o.buf;
}
