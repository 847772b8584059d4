/* text_parse.c — reads textual IR (.kir) back into a graph.
 *
 * A hand-written recursive-descent parser over the characters of the text
 * (no separate lexer: the grammar is small and line-oriented). It builds the
 * graph with the builder, takes every type from the text (no shape inference,
 * no verifier), and reports the first error as "FILE:LINE:COL: message" with
 * KILN_ERR_PARSE. Statements may come in any order as long as every value is
 * defined before it is used. A node line ending in '{' opens the node's body
 * (a fusion node's sub-graph): statements of a graph of its own, up to a '}'
 * line. The grammar is in docs/ir.md. */
#include "ir.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Constants whose data would exceed this are rejected rather than allocated. */
#define MAX_CONST_BYTES ((int64_t)1 << 40)
/* Bodies may nest this deep in text (the verifier rejects any nesting; the
 * bound keeps the recursion off the stack's limit on hostile input). */
#define MAX_BODY_DEPTH 8

/* Name -> pointer map (open addressing); keys are arena strings. */
typedef struct symtab {
	const char **keys;
	void **vals;
	size_t cap, n;
} symtab;

typedef struct parser {
	const char *src;
	const char *p;
	kiln_graph *g; /* the graph being parsed, or the body being parsed */
	kiln_diag *d;
	symtab values, nodes; /* names of g (a body has its own) */
	int depth;            /* bodies open around the cursor */
	/* scratch buffers, reused: a decoded string, list elements, dense bytes */
	char *str;
	size_t str_cap;
	int64_t *li;
	float *lf;
	size_t list_cap;
	unsigned char *bytes;
	size_t bytes_cap;
} parser;

/* ---- symbol tables ---- */

static uint64_t hash_str(const char *s)
{
	uint64_t h = 0xcbf29ce484222325u;
	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 0x100000001b3u;
	}
	return h;
}

static void *sym_get(const symtab *t, const char *key)
{
	if (!t->cap)
		return NULL;
	for (size_t i = hash_str(key) & (t->cap - 1);; i = (i + 1) & (t->cap - 1)) {
		if (!t->keys[i])
			return NULL;
		if (strcmp(t->keys[i], key) == 0)
			return t->vals[i];
	}
}

static void sym_insert(symtab *t, const char *key, void *val)
{
	size_t i = hash_str(key) & (t->cap - 1);
	while (t->keys[i])
		i = (i + 1) & (t->cap - 1);
	t->keys[i] = key;
	t->vals[i] = val;
	t->n++;
}

static bool sym_put(symtab *t, const char *key, void *val)
{
	if (2 * (t->n + 1) > t->cap) {
		symtab nt = {0};
		nt.cap = t->cap ? 2 * t->cap : 64;
		nt.keys = calloc(nt.cap, sizeof *nt.keys);
		nt.vals = calloc(nt.cap, sizeof *nt.vals);
		if (!nt.keys || !nt.vals) {
			free(nt.keys);
			free(nt.vals);
			return false;
		}
		for (size_t i = 0; i < t->cap; i++)
			if (t->keys[i])
				sym_insert(&nt, t->keys[i], t->vals[i]);
		free(t->keys);
		free(t->vals);
		*t = nt;
	}
	sym_insert(t, key, val);
	return true;
}

static void sym_free(symtab *t)
{
	free(t->keys);
	free(t->vals);
}

/* ---- errors ---- */

static kiln_status error_at(parser *ps, const char *at, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static kiln_status error_at(parser *ps, const char *at, const char *fmt, ...)
{
	int line = 1;
	const char *line_start = ps->src;
	for (const char *q = ps->src; q < at; q++) {
		if (*q == '\n') {
			line++;
			line_start = q + 1;
		}
	}
	char msg[768];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	int col = (int)(at - line_start) + 1;
	if (!ps->d)
		return KILN_ERR_PARSE;
	/* "FILE:LINE:COL: msg" with no blank after FILE, as compilers write it,
	 * so the diag's own "FILE: " prefix is held back for this message. */
	const char *file = ps->d->file;
	ps->d->file = NULL;
	if (file)
		kiln_diag_error(ps->d, KILN_ERR_PARSE, NULL, "%s:%d:%d: %s", file, line, col, msg);
	else
		kiln_diag_error(ps->d, KILN_ERR_PARSE, NULL, "%d:%d: %s", line, col, msg);
	ps->d->file = file;
	return KILN_ERR_PARSE;
}

static kiln_status oom(parser *ps)
{
	return kiln_diag_error(ps->d, KILN_ERR_OOM, NULL, "out of memory");
}

/* The text at `at` up to the next blank (at most 32 bytes), for messages. */
static const char *word_at(const char *at, char *buf, size_t size)
{
	size_t n = 0;
	while (n + 1 < size && n < 32 && (unsigned char)at[n] > ' ' && at[n] != 0x7f)
		n++;
	memcpy(buf, at, n);
	buf[n] = 0;
	return buf;
}

static bool is_bare_char(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '_' || c == '.' || c == '$' || c == '-';
}

/* A name as the printer writes it (bare or quoted), for messages. */
static const char *name_str(char sigil, const char *name, char *buf, size_t size)
{
	bool bare = *name != 0;
	for (const unsigned char *q = (const unsigned char *)name; *q && bare; q++)
		bare = is_bare_char(*q);
	size_t n = 0;
	buf[n++] = sigil;
	if (!bare)
		buf[n++] = '"';
	for (const unsigned char *q = (const unsigned char *)name; *q && n + 8 < size; q++) {
		if (*q == '"' || *q == '\\')
			n += (size_t)snprintf(buf + n, size - n, "\\%c", *q);
		else if (*q == '\n')
			n += (size_t)snprintf(buf + n, size - n, "\\n");
		else if (*q == '\t')
			n += (size_t)snprintf(buf + n, size - n, "\\t");
		else if (*q < 0x20 || *q == 0x7f)
			n += (size_t)snprintf(buf + n, size - n, "\\x%02x", *q);
		else
			buf[n++] = (char)*q;
	}
	if (!bare)
		buf[n++] = '"';
	buf[n] = 0;
	return buf;
}

/* ---- characters ---- */

/* Skips blanks and // comments on the current line (not the newline). */
static void skip_ws(parser *ps)
{
	for (;;) {
		char c = *ps->p;
		if (c == ' ' || c == '\t' || c == '\r') {
			ps->p++;
		} else if (c == '/' && ps->p[1] == '/') {
			while (*ps->p && *ps->p != '\n')
				ps->p++;
		} else {
			return;
		}
	}
}

static void skip_blank_lines(parser *ps)
{
	for (;;) {
		skip_ws(ps);
		if (*ps->p != '\n')
			return;
		ps->p++;
	}
}

static bool accept(parser *ps, char c)
{
	skip_ws(ps);
	if (*ps->p != c)
		return false;
	ps->p++;
	return true;
}

static kiln_status expect(parser *ps, char c, const char *what)
{
	if (accept(ps, c))
		return KILN_OK;
	return error_at(ps, ps->p, "expected '%c' %s", c, what);
}

static kiln_status expect_eol(parser *ps)
{
	skip_ws(ps);
	if (*ps->p == 0)
		return KILN_OK;
	if (*ps->p == '\n') {
		ps->p++;
		return KILN_OK;
	}
	char w[40];
	return error_at(ps, ps->p, "expected end of line, got '%s'", word_at(ps->p, w, sizeof w));
}

/* A run of bare-name characters starting at the cursor (after blanks). */
static size_t word(parser *ps, const char **start)
{
	skip_ws(ps);
	*start = ps->p;
	size_t n = 0;
	while (is_bare_char((unsigned char)ps->p[n]))
		n++;
	return n;
}

/* Consumes keyword `kw` if it is the next word. */
static bool accept_kw(parser *ps, const char *kw)
{
	const char *s;
	size_t n = word(ps, &s);
	if (n != strlen(kw) || memcmp(s, kw, n) != 0)
		return false;
	ps->p += n;
	return true;
}

/* ---- strings and names ---- */

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Parses "..." at the cursor into ps->str (NUL-terminated; `*len` bytes). */
static kiln_status parse_string(parser *ps, size_t *len)
{
	skip_ws(ps);
	const char *open = ps->p;
	if (*open != '"')
		return error_at(ps, open, "expected string");
	size_t n = 0;
	const char *q = open + 1;
	for (;;) {
		char c = *q;
		if (c == 0 || c == '\n')
			return error_at(ps, open, "unterminated string");
		if (c == '"')
			break;
		if (n + 2 > ps->str_cap) {
			size_t cap = ps->str_cap ? 2 * ps->str_cap : 256;
			char *s = realloc(ps->str, cap);
			if (!s)
				return oom(ps);
			ps->str = s;
			ps->str_cap = cap;
		}
		if (c != '\\') {
			ps->str[n++] = c;
			q++;
			continue;
		}
		switch (q[1]) {
		case '"': ps->str[n++] = '"'; q += 2; break;
		case '\\': ps->str[n++] = '\\'; q += 2; break;
		case 'n': ps->str[n++] = '\n'; q += 2; break;
		case 't': ps->str[n++] = '\t'; q += 2; break;
		case 'x': {
			int hi = hex_digit(q[2]), lo = hi < 0 ? -1 : hex_digit(q[3]);
			if (lo < 0)
				return error_at(ps, q, "expected two hex digits after \\x");
			if (hi == 0 && lo == 0)
				return error_at(ps, q, "\\x00 is not allowed in a string");
			ps->str[n++] = (char)(hi * 16 + lo);
			q += 4;
			break;
		}
		default:
			if (q[1] == 0 || q[1] == '\n')
				return error_at(ps, open, "unterminated string");
			return error_at(ps, q, "unknown escape '\\%c'", q[1]);
		}
	}
	if (!ps->str) {
		ps->str = malloc(1);
		if (!ps->str)
			return oom(ps);
		ps->str_cap = 1;
	}
	ps->str[n] = 0;
	*len = n;
	ps->p = q + 1;
	return KILN_OK;
}

/* A string copied into the graph arena. */
static kiln_status parse_string_dup(parser *ps, const char **out)
{
	size_t n;
	KILN_TRY(parse_string(ps, &n));
	if (!(*out = kiln_arena_strndup(ps->g->arena, ps->str, n)))
		return oom(ps);
	return KILN_OK;
}

/* `sigil` NAME with NAME bare or quoted, no blank after the sigil; the name
 * is copied into the arena. */
static kiln_status parse_name(parser *ps, char sigil, const char *what, const char **out)
{
	skip_ws(ps);
	if (*ps->p != sigil)
		return error_at(ps, ps->p, "expected %s", what);
	ps->p++;
	if (*ps->p == '"')
		return parse_string_dup(ps, out);
	size_t n = 0;
	while (is_bare_char((unsigned char)ps->p[n]))
		n++;
	if (n == 0)
		return error_at(ps, ps->p, "expected %s after '%c'", what, sigil);
	if (!(*out = kiln_arena_strndup(ps->g->arena, ps->p, n)))
		return oom(ps);
	ps->p += n;
	return KILN_OK;
}

/* ---- numbers ---- */

typedef enum num_kind { NUM_INT, NUM_FLOAT, NUM_NAN, NUM_NAN_BITS } num_kind;

typedef struct num {
	const char *at;
	num_kind kind;
	int64_t i;     /* NUM_INT */
	double d;      /* NUM_INT, NUM_FLOAT */
	float f;       /* NUM_INT, NUM_FLOAT: correctly rounded from the text */
	bool neg;      /* NUM_NAN */
	uint64_t bits; /* NUM_NAN_BITS */
} num;

static bool is_num_char(char c)
{
	return is_bare_char((unsigned char)c) || c == '+';
}

static kiln_status parse_num(parser *ps, num *x)
{
	skip_ws(ps);
	const char *s = ps->p;
	size_t n = 0;
	while (is_num_char(s[n]))
		n++;
	x->at = s;
	char w[40];
	if (n == 0)
		return error_at(ps, s, "expected number, got '%s'", word_at(s, w, sizeof w));
	char buf[128];
	if (n >= sizeof buf)
		return error_at(ps, s, "bad number '%.*s...'", 32, s);
	memcpy(buf, s, n);
	buf[n] = 0;
	ps->p = s + n;
	size_t k = buf[0] == '-' || buf[0] == '+';
	bool digits = buf[k] != 0;
	for (size_t j = k; buf[j]; j++)
		digits = digits && buf[j] >= '0' && buf[j] <= '9';
	if (digits) {
		errno = 0;
		char *end;
		long long v = strtoll(buf, &end, 10);
		if (errno || *end)
			return error_at(ps, s, "bad number '%s'", buf);
		x->kind = NUM_INT;
		x->i = v;
		x->d = (double)v;
		x->f = strtof(buf, NULL);
		return KILN_OK;
	}
	if (strcmp(buf + k, "nan") == 0) {
		x->neg = buf[0] == '-';
		if (*ps->p != '(') {
			x->kind = NUM_NAN;
			return KILN_OK;
		}
		/* nan(0xBITS): an exact NaN pattern of the element type */
		const char *q = ps->p + 1;
		if (k || q[0] != '0' || (q[1] != 'x' && q[1] != 'X') || hex_digit(q[2]) < 0)
			return error_at(ps, s, "bad number '%s(%s'", buf, word_at(q, w, sizeof w));
		uint64_t bits = 0;
		int nd = 0;
		for (q += 2; hex_digit(*q) >= 0; q++, nd++)
			bits = bits << 4 | (uint64_t)hex_digit(*q);
		if (nd > 16 || *q != ')')
			return error_at(ps, s, "bad number 'nan(%s'", word_at(ps->p + 1, w, sizeof w));
		x->kind = NUM_NAN_BITS;
		x->bits = bits;
		ps->p = q + 1;
		return KILN_OK;
	}
	errno = 0;
	char *end;
	x->d = strtod(buf, &end);
	if (*end || end == buf)
		return error_at(ps, s, "bad number '%s'", buf);
	x->f = strtof(buf, NULL);
	x->kind = NUM_FLOAT;
	return KILN_OK;
}

static kiln_status parse_int(parser *ps, int64_t lo, int64_t hi, const char *what, int64_t *out)
{
	num x;
	KILN_TRY(parse_num(ps, &x));
	if (x.kind != NUM_INT)
		return error_at(ps, x.at, "expected integer %s", what);
	if (x.i < lo || x.i > hi)
		return error_at(ps, x.at, "%s %" PRId64 " out of range", what, x.i);
	*out = x.i;
	return KILN_OK;
}

/* Converts a number to the bits of a float type: `width` 16 (f16, or bf16 when
 * `bf`), 32 or 64. */
static kiln_status num_to_float(parser *ps, const num *x, int width, bool bf, uint64_t *out)
{
	static const char *const names[] = {"f16", "f32", "f64"};
	const char *tn = bf ? "bf16" : names[width == 16 ? 0 : width == 32 ? 1 : 2];
	uint64_t sign = (uint64_t)1 << (width - 1);
	uint64_t quiet = width == 64 ? 0x7ff8000000000000u
	               : width == 32 ? 0x7fc00000u
	               : bf ? 0x7fc0u : 0x7e00u;
	uint64_t exp_mask = width == 64 ? 0x7ff0000000000000u
	                  : width == 32 ? 0x7f800000u
	                  : bf ? 0x7f80u : 0x7c00u;
	switch (x->kind) {
	case NUM_NAN:
		*out = quiet | (x->neg ? sign : 0);
		return KILN_OK;
	case NUM_NAN_BITS:
		if ((width < 64 && x->bits >> width) || (x->bits & exp_mask) != exp_mask ||
		    !(x->bits & ~(exp_mask | sign)))
			return error_at(ps, x->at, "0x%" PRIx64 " is not a NaN of %s", x->bits, tn);
		*out = x->bits;
		return KILN_OK;
	default:
		break;
	}
	if (width == 64) {
		memcpy(out, &x->d, sizeof x->d);
	} else if (width == 32) {
		uint32_t u;
		memcpy(&u, &x->f, sizeof u);
		*out = u;
	} else {
		*out = bf ? kiln_f32_to_bf16(x->f) : kiln_f32_to_f16(x->f);
	}
	return KILN_OK;
}

/* One element of `dt` written at `dst`. */
static kiln_status parse_elem(parser *ps, kiln_dtype dt, void *dst)
{
	if (dt == KILN_DT_BOOL) {
		const char *s;
		size_t n = word(ps, &s);
		uint8_t b;
		if (n == 4 && memcmp(s, "true", 4) == 0) {
			b = 1;
		} else if (n == 5 && memcmp(s, "false", 5) == 0) {
			b = 0;
		} else {
			char w[40];
			return error_at(ps, s, "expected true or false, got '%s'",
			                word_at(s, w, sizeof w));
		}
		ps->p += n;
		*(uint8_t *)dst = b;
		return KILN_OK;
	}
	if (kiln_dtype_is_float(dt)) {
		num x;
		KILN_TRY(parse_num(ps, &x));
		uint64_t bits;
		switch (dt) {
		case KILN_DT_F64:
			KILN_TRY(num_to_float(ps, &x, 64, false, &bits));
			memcpy(dst, &bits, 8);
			break;
		case KILN_DT_F32: {
			KILN_TRY(num_to_float(ps, &x, 32, false, &bits));
			uint32_t u = (uint32_t)bits;
			memcpy(dst, &u, 4);
			break;
		}
		default: {
			KILN_TRY(num_to_float(ps, &x, 16, dt == KILN_DT_BF16, &bits));
			uint16_t h = (uint16_t)bits;
			memcpy(dst, &h, 2);
			break;
		}
		}
		return KILN_OK;
	}
	static const struct {
		int64_t lo, hi;
	} range[KILN_DTYPE_COUNT] = {
		[KILN_DT_I64] = {INT64_MIN, INT64_MAX}, [KILN_DT_I32] = {INT32_MIN, INT32_MAX},
		[KILN_DT_I8] = {INT8_MIN, INT8_MAX},    [KILN_DT_U8] = {0, UINT8_MAX},
	};
	num x;
	KILN_TRY(parse_num(ps, &x));
	if (x.kind != NUM_INT)
		return error_at(ps, x.at, "expected integer element of %s", kiln_dtype_name(dt));
	if (x.i < range[dt].lo || x.i > range[dt].hi)
		return error_at(ps, x.at, "integer %" PRId64 " out of range for %s", x.i,
		                kiln_dtype_name(dt));
	switch (dt) {
	case KILN_DT_I64: memcpy(dst, &x.i, 8); break;
	case KILN_DT_I32: { int32_t v = (int32_t)x.i; memcpy(dst, &v, 4); break; }
	case KILN_DT_I8: { int8_t v = (int8_t)x.i; memcpy(dst, &v, 1); break; }
	default: { uint8_t v = (uint8_t)x.i; memcpy(dst, &v, 1); break; }
	}
	return KILN_OK;
}

/* ---- types ---- */

static kiln_status parse_type(parser *ps, kiln_type *t)
{
	skip_ws(ps);
	const char *s = ps->p;
	size_t n = 0;
	while (is_bare_char((unsigned char)s[n]) && s[n] != '.' && s[n] != '$' && s[n] != '-')
		n++;
	char w[40];
	if (n == 0)
		return error_at(ps, s, "expected type, got '%s'", word_at(s, w, sizeof w));
	char name[16];
	if (n >= sizeof name || (memcpy(name, s, n), name[n] = 0, !kiln_dtype_parse(name, &t->dtype)))
		return error_at(ps, s, "unknown dtype '%.*s'", (int)(n < 32 ? n : 32), s);
	ps->p += n;
	if (*ps->p != '[')
		return error_at(ps, ps->p, "expected '[' after dtype");
	ps->p++;
	t->rank = 0;
	if (accept(ps, ']'))
		return KILN_OK;
	for (;;) {
		skip_ws(ps);
		if (t->rank == KILN_MAX_RANK)
			return error_at(ps, ps->p, "rank exceeds %d", KILN_MAX_RANK);
		KILN_TRY(parse_int(ps, INT64_MIN, INT64_MAX, "dimension", &t->dims[t->rank]));
		t->rank++;
		if (accept(ps, ']'))
			return KILN_OK;
		KILN_TRY(expect(ps, ',', "or ']' in shape"));
	}
}

/* Checks that a type can hold data (no negative dim, sane size). */
static kiln_status check_data_type(parser *ps, const char *at, const kiln_type *t)
{
	int64_t bytes = (int64_t)kiln_dtype_size(t->dtype);
	for (int i = 0; i < t->rank; i++) {
		char buf[256];
		if (t->dims[i] < 0)
			return error_at(ps, at, "type %s has a negative dimension",
			                kiln_type_str(t, buf, sizeof buf));
		if (t->dims[i] && bytes > MAX_CONST_BYTES / t->dims[i])
			return error_at(ps, at, "type %s is too large for a constant",
			                kiln_type_str(t, buf, sizeof buf));
		bytes *= t->dims[i];
	}
	return KILN_OK;
}

static kiln_status grow_bytes(parser *ps, size_t need)
{
	if (need <= ps->bytes_cap)
		return KILN_OK;
	size_t cap = ps->bytes_cap ? ps->bytes_cap : 256;
	while (cap < need)
		cap *= 2;
	unsigned char *b = realloc(ps->bytes, cap);
	if (!b)
		return oom(ps);
	ps->bytes = b;
	ps->bytes_cap = cap;
	return KILN_OK;
}

/* dense<[e, ...]> or dense<e> (splat) for type `t`; the data is returned in
 * the graph arena. */
static kiln_status parse_dense(parser *ps, const kiln_type *t, void **out)
{
	const char *s;
	size_t n = word(ps, &s);
	if (n != 5 || memcmp(s, "dense", 5) != 0 || s[5] != '<')
		return error_at(ps, s, "expected dense<...>");
	ps->p += 6;
	KILN_TRY(check_data_type(ps, s, t));
	int64_t numel = kiln_type_numel(t);
	size_t es = kiln_dtype_size(t->dtype);
	char tb[256];
	if (accept(ps, '[')) {
		int64_t count = 0;
		if (!accept(ps, ']')) {
			for (;;) {
				KILN_TRY(grow_bytes(ps, (size_t)(count + 1) * es));
				KILN_TRY(parse_elem(ps, t->dtype, ps->bytes + (size_t)count * es));
				count++;
				if (accept(ps, ']'))
					break;
				KILN_TRY(expect(ps, ',', "or ']' in dense"));
			}
		}
		if (count != numel)
			return error_at(ps, s, "dense has %" PRId64 " elements, type %s needs %" PRId64,
			                count, kiln_type_str(t, tb, sizeof tb), numel);
		if (!(*out = kiln_arena_memdup(ps->g->arena, ps->bytes, (size_t)count * es)))
			return oom(ps);
	} else {
		unsigned char elem[8];
		KILN_TRY(parse_elem(ps, t->dtype, elem));
		if (numel < 1)
			return error_at(ps, s, "dense has 1 elements, type %s needs %" PRId64,
			                kiln_type_str(t, tb, sizeof tb), numel);
		unsigned char *data = kiln_arena_alloc(ps->g->arena, (size_t)numel * es);
		if (!data)
			return oom(ps);
		for (int64_t i = 0; i < numel; i++)
			memcpy(data + (size_t)i * es, elem, es);
		*out = data;
	}
	return expect(ps, '>', "after dense elements");
}

/* Number lists for attributes and quantisation: elements go to ps->li (ints)
 * and ps->lf (floats). `want` is KILN_ATTR_INTS, KILN_ATTR_FLOATS or
 * KILN_ATTR_KIND_COUNT (decide: floats if any element is a float). The
 * opening '[' is already consumed. */
static kiln_status parse_list(parser *ps, kiln_attr_kind want, kiln_attr_kind *kind, int *count)
{
	int n = 0;
	bool any_float = want == KILN_ATTR_FLOATS;
	if (!accept(ps, ']')) {
		for (;;) {
			if ((size_t)n == ps->list_cap) {
				if (n == INT_MAX / 2)
					return error_at(ps, ps->p, "list too long");
				size_t cap = ps->list_cap ? 2 * ps->list_cap : 64;
				int64_t *li = realloc(ps->li, cap * sizeof *li);
				if (li)
					ps->li = li;
				float *lf = realloc(ps->lf, cap * sizeof *lf);
				if (lf)
					ps->lf = lf;
				if (!li || !lf)
					return oom(ps);
				ps->list_cap = cap;
			}
			num x;
			KILN_TRY(parse_num(ps, &x));
			if (x.kind == NUM_INT) {
				ps->li[n] = x.i;
				ps->lf[n] = x.f;
			} else {
				if (want == KILN_ATTR_INTS)
					return error_at(ps, x.at, "expected integer in ints list");
				any_float = true;
				uint64_t bits;
				KILN_TRY(num_to_float(ps, &x, 32, false, &bits));
				uint32_t u = (uint32_t)bits;
				memcpy(&ps->lf[n], &u, sizeof u);
			}
			n++;
			if (accept(ps, ']'))
				break;
			KILN_TRY(expect(ps, ',', "or ']' in list"));
		}
	}
	*kind = any_float ? KILN_ATTR_FLOATS : KILN_ATTR_INTS;
	*count = n;
	return KILN_OK;
}

/* quant<axis = A, scale = [...], zero_point = [...]> after a type. */
static kiln_status parse_quant(parser *ps, kiln_quant **out)
{
	*out = NULL;
	const char *s;
	size_t n = word(ps, &s);
	if (n != 5 || memcmp(s, "quant", 5) != 0 || s[5] != '<')
		return KILN_OK;
	ps->p += 6;
	kiln_quant *q = kiln_arena_alloc(ps->g->arena, sizeof *q);
	if (!q)
		return oom(ps);
	int64_t axis;
	kiln_attr_kind kind;
	int ns, nz;
	if (!accept_kw(ps, "axis"))
		return error_at(ps, ps->p, "expected 'axis' in quant");
	KILN_TRY(expect(ps, '=', "after 'axis'"));
	KILN_TRY(parse_int(ps, -KILN_MAX_RANK, KILN_MAX_RANK - 1, "quant axis", &axis));
	KILN_TRY(expect(ps, ',', "after quant axis"));
	if (!accept_kw(ps, "scale"))
		return error_at(ps, ps->p, "expected 'scale' in quant");
	KILN_TRY(expect(ps, '=', "after 'scale'"));
	KILN_TRY(expect(ps, '[', "before quant scales"));
	KILN_TRY(parse_list(ps, KILN_ATTR_FLOATS, &kind, &ns));
	if (!(q->scale = kiln_arena_memdup(ps->g->arena, ps->lf, (size_t)ns * sizeof *q->scale)))
		return oom(ps);
	KILN_TRY(expect(ps, ',', "after quant scales"));
	if (!accept_kw(ps, "zero_point"))
		return error_at(ps, ps->p, "expected 'zero_point' in quant");
	KILN_TRY(expect(ps, '=', "after 'zero_point'"));
	skip_ws(ps);
	const char *zat = ps->p;
	KILN_TRY(expect(ps, '[', "before quant zero points"));
	KILN_TRY(parse_list(ps, KILN_ATTR_INTS, &kind, &nz));
	if (nz != ns || ns == 0)
		return error_at(ps, zat, "quant needs as many zero points as scales (at least one)");
	if (!(q->zero_point = kiln_arena_alloc(ps->g->arena, (size_t)nz * sizeof *q->zero_point)))
		return oom(ps);
	for (int i = 0; i < nz; i++) {
		if (ps->li[i] < INT32_MIN || ps->li[i] > INT32_MAX)
			return error_at(ps, zat, "quant zero point %" PRId64 " out of range", ps->li[i]);
		q->zero_point[i] = (int32_t)ps->li[i];
	}
	KILN_TRY(expect(ps, '>', "after quant"));
	q->axis = (int)axis;
	q->n = ns;
	*out = q;
	return KILN_OK;
}

/* ---- values ---- */

/* `%name` that is not defined yet. */
static kiln_status parse_new_value_name(parser *ps, const char **name, const char **at)
{
	skip_ws(ps);
	*at = ps->p;
	KILN_TRY(parse_name(ps, '%', "value name", name));
	if (sym_get(&ps->values, *name)) {
		char b[300];
		return error_at(ps, *at, "redefinition of value %s", name_str('%', *name, b, sizeof b));
	}
	return KILN_OK;
}

static kiln_status parse_use(parser *ps, kiln_value **v)
{
	skip_ws(ps);
	const char *at = ps->p;
	const char *name;
	KILN_TRY(parse_name(ps, '%', "value name", &name));
	if (!(*v = sym_get(&ps->values, name))) {
		char b[300];
		return error_at(ps, at, "use of undefined value %s", name_str('%', name, b, sizeof b));
	}
	return KILN_OK;
}

static kiln_status define(parser *ps, kiln_value *v)
{
	return sym_put(&ps->values, v->name, v) ? KILN_OK : oom(ps);
}

/* ": TYPE [quant<...>]" after a value name. */
static kiln_status parse_decl_type(parser *ps, kiln_type *t, kiln_quant **q)
{
	KILN_TRY(expect(ps, ':', "after value name"));
	KILN_TRY(parse_type(ps, t));
	return parse_quant(ps, q);
}

static kiln_status parse_input(parser *ps)
{
	const char *name, *at;
	kiln_type t;
	kiln_quant *q;
	KILN_TRY(parse_new_value_name(ps, &name, &at));
	KILN_TRY(parse_decl_type(ps, &t, &q));
	kiln_value *v = kiln_graph_add_input(ps->g, name, &t);
	if (!v)
		return oom(ps);
	v->quant = q;
	KILN_TRY(define(ps, v));
	return expect_eol(ps);
}

static kiln_status parse_const(parser *ps)
{
	const char *name, *at;
	kiln_type t;
	kiln_quant *q;
	KILN_TRY(parse_new_value_name(ps, &name, &at));
	KILN_TRY(parse_decl_type(ps, &t, &q));
	KILN_TRY(expect(ps, '=', "after constant type"));
	void *data = NULL;
	const char *elided = NULL;
	const char *s;
	size_t n = word(ps, &s);
	if (n == 6 && memcmp(s, "elided", 6) == 0 && s[6] == '<') {
		ps->p += 7;
		KILN_TRY(parse_string_dup(ps, &elided));
		KILN_TRY(expect(ps, '>', "after elided summary"));
	} else if (n == 5 && memcmp(s, "dense", 5) == 0 && s[5] == '<') {
		KILN_TRY(parse_dense(ps, &t, &data));
	} else {
		char w[40];
		return error_at(ps, s, "expected dense<...> or elided<...>, got '%s'",
		                word_at(s, w, sizeof w));
	}
	/* The data is already in the arena: create the constant empty and hand it
	 * the data rather than have the builder copy (or zero) it. */
	kiln_type empty = {.dtype = t.dtype, .rank = 1};
	kiln_value *v = kiln_graph_add_const(ps->g, name, &empty, NULL);
	if (!v)
		return oom(ps);
	v->type = t;
	v->data = data;
	v->elided = elided;
	v->quant = q;
	KILN_TRY(define(ps, v));
	return expect_eol(ps);
}

static kiln_status parse_output(parser *ps)
{
	kiln_value *v;
	KILN_TRY(parse_use(ps, &v));
	if (kiln_graph_add_output(ps->g, v) != KILN_OK)
		return oom(ps);
	return expect_eol(ps);
}

/* ---- nodes ---- */

static kiln_status parse_attr_value(parser *ps, kiln_node *n, const char *name)
{
	kiln_graph *g = ps->g;
	kiln_status s = KILN_OK;
	skip_ws(ps);
	const char *at = ps->p;
	if (*at == '"') {
		size_t len;
		KILN_TRY(parse_string(ps, &len));
		s = kiln_node_set_string(g, n, name, ps->str);
	} else if (*at == '[' || strncmp(at, "ints[", 5) == 0 || strncmp(at, "floats[", 7) == 0) {
		kiln_attr_kind want = *at == '[' ? KILN_ATTR_KIND_COUNT
		                    : *at == 'i' ? KILN_ATTR_INTS : KILN_ATTR_FLOATS;
		ps->p = strchr(at, '[') + 1;
		kiln_attr_kind kind;
		int count;
		KILN_TRY(parse_list(ps, want, &kind, &count));
		if (kind == KILN_ATTR_INTS)
			s = kiln_node_set_ints(g, n, name, ps->li, count);
		else
			s = kiln_node_set_floats(g, n, name, ps->lf, count);
	} else if (strncmp(at, "tensor<", 7) == 0) {
		ps->p += 7;
		kiln_tensor t;
		KILN_TRY(parse_type(ps, &t.type));
		KILN_TRY(parse_dense(ps, &t.type, &t.data));
		KILN_TRY(expect(ps, '>', "after tensor"));
		s = kiln_node_set_tensor(g, n, name, &t);
	} else {
		num x;
		KILN_TRY(parse_num(ps, &x));
		if (x.kind == NUM_INT) {
			s = kiln_node_set_int(g, n, name, x.i);
		} else {
			uint64_t bits;
			KILN_TRY(num_to_float(ps, &x, 32, false, &bits));
			uint32_t u = (uint32_t)bits;
			float f;
			memcpy(&f, &u, sizeof f);
			s = kiln_node_set_float(g, n, name, f);
		}
	}
	return s == KILN_OK ? KILN_OK : oom(ps);
}

static kiln_status parse_attrs(parser *ps, kiln_node *n)
{
	if (accept(ps, '}'))
		return KILN_OK;
	for (;;) {
		skip_ws(ps);
		const char *at = ps->p;
		const char *name;
		if (*at == '"') {
			KILN_TRY(parse_string_dup(ps, &name));
		} else {
			const char *s;
			size_t len = word(ps, &s);
			if (len == 0) {
				char w[40];
				return error_at(ps, s, "expected attribute name, got '%s'",
				                word_at(s, w, sizeof w));
			}
			if (!(name = kiln_arena_strndup(ps->g->arena, s, len)))
				return oom(ps);
			ps->p += len;
		}
		if (kiln_node_attr(n, name))
			return error_at(ps, at, "duplicate attribute '%s'", name);
		KILN_TRY(expect(ps, '=', "after attribute name"));
		KILN_TRY(parse_attr_value(ps, n, name));
		if (accept(ps, '}'))
			return KILN_OK;
		KILN_TRY(expect(ps, ',', "or '}' after attribute"));
	}
}

/* A node's outputs while its line is parsed (the node is created after). */
typedef struct pending_out {
	const char *name;
	kiln_type type;
	kiln_quant *quant;
} pending_out;

typedef struct node_line {
	pending_out *outs;
	int n_outs, cap_outs;
	kiln_value **ins;
	const char **out_names;
	int n_ins, cap_ins;
} node_line;

static void node_line_free(node_line *l)
{
	free(l->outs);
	free(l->ins);
	free(l->out_names);
}

static bool grow_array(void **arr, int n, int *cap, size_t elem)
{
	if (n < *cap)
		return true;
	if (*cap > INT_MAX / 4)
		return false;
	int ncap = *cap ? 2 * *cap : 8;
	void *p = realloc(*arr, (size_t)ncap * elem);
	if (!p)
		return false;
	*arr = p;
	*cap = ncap;
	return true;
}

static kiln_status parse_node_outputs(parser *ps, node_line *l)
{
	skip_ws(ps);
	if (ps->p[0] == '(') {
		ps->p++;
		return expect(ps, ')', "after '(' of a node without outputs");
	}
	for (;;) {
		const char *name, *at;
		KILN_TRY(parse_new_value_name(ps, &name, &at));
		for (int i = 0; i < l->n_outs; i++) {
			if (strcmp(l->outs[i].name, name) == 0) {
				char b[300];
				return error_at(ps, at, "redefinition of value %s",
				                name_str('%', name, b, sizeof b));
			}
		}
		if (!grow_array((void **)&l->outs, l->n_outs, &l->cap_outs, sizeof *l->outs))
			return oom(ps);
		pending_out *o = &l->outs[l->n_outs++];
		o->name = name;
		KILN_TRY(parse_decl_type(ps, &o->type, &o->quant));
		if (!accept(ps, ','))
			return KILN_OK;
	}
}

static kiln_status parse_node_inputs(parser *ps, node_line *l)
{
	KILN_TRY(expect(ps, '(', "before node inputs"));
	if (accept(ps, ')'))
		return KILN_OK;
	for (;;) {
		if (!grow_array((void **)&l->ins, l->n_ins, &l->cap_ins, sizeof *l->ins))
			return oom(ps);
		skip_ws(ps);
		if (ps->p[0] == '_' && !is_bare_char((unsigned char)ps->p[1])) {
			ps->p++;
			l->ins[l->n_ins++] = NULL;
		} else {
			KILN_TRY(parse_use(ps, &l->ins[l->n_ins]));
			l->n_ins++;
		}
		if (accept(ps, ')'))
			return KILN_OK;
		KILN_TRY(expect(ps, ',', "or ')' after node input"));
	}
}

/* A '{' that ends its line opens a body; any other '{' opens attributes
 * (which never span lines). */
static bool at_body_open(parser *ps)
{
	skip_ws(ps);
	if (*ps->p != '{')
		return false;
	const char *brace = ps->p;
	ps->p++;
	skip_ws(ps);
	bool open = *ps->p == '\n' || *ps->p == 0;
	ps->p = brace;
	return open;
}

static kiln_status parse_body(parser *ps, kiln_node *n);

static kiln_status parse_node_rest(parser *ps, node_line *l)
{
	KILN_TRY(parse_node_outputs(ps, l));
	KILN_TRY(expect(ps, '=', "after node outputs"));
	const char *s;
	size_t len = word(ps, &s);
	char w[40];
	if (len == 0)
		return error_at(ps, s, "expected op name, got '%s'", word_at(s, w, sizeof w));
	char opname[64];
	kiln_op op;
	if (len >= sizeof opname || (memcpy(opname, s, len), opname[len] = 0,
	                             !kiln_op_lookup(opname, &op)))
		return error_at(ps, s, "unknown op '%.*s'", (int)(len < 48 ? len : 48), s);
	ps->p += len;
	skip_ws(ps);
	const char *name_at = ps->p;
	const char *name;
	KILN_TRY(parse_name(ps, '@', "node name", &name));
	if (sym_get(&ps->nodes, name)) {
		char b[300];
		return error_at(ps, name_at, "duplicate node name %s", name_str('@', name, b, sizeof b));
	}
	KILN_TRY(parse_node_inputs(ps, l));

	if (l->n_outs) {
		l->out_names = malloc((size_t)l->n_outs * sizeof *l->out_names);
		if (!l->out_names)
			return oom(ps);
		for (int i = 0; i < l->n_outs; i++)
			l->out_names[i] = l->outs[i].name;
	}
	kiln_node *n = kiln_graph_add_node(ps->g, op, name, l->ins, l->n_ins, l->out_names,
	                                   l->n_outs);
	if (!n || !sym_put(&ps->nodes, n->name, n))
		return oom(ps);
	for (int i = 0; i < l->n_outs; i++) {
		n->outputs[i]->type = l->outs[i].type;
		n->outputs[i]->quant = l->outs[i].quant;
		KILN_TRY(define(ps, n->outputs[i]));
	}
	if (at_body_open(ps))
		return parse_body(ps, n);
	if (accept(ps, '{'))
		KILN_TRY(parse_attrs(ps, n));
	if (accept_kw(ps, "loc")) {
		KILN_TRY(expect(ps, '(', "after 'loc'"));
		KILN_TRY(parse_string_dup(ps, &n->origin));
		KILN_TRY(expect(ps, ')', "after location"));
	}
	if (at_body_open(ps))
		return parse_body(ps, n);
	return expect_eol(ps);
}

static kiln_status parse_node(parser *ps)
{
	node_line l = {0};
	kiln_status s = parse_node_rest(ps, &l);
	node_line_free(&l);
	return s;
}

/* ---- graph ---- */

static kiln_status parse_header(parser *ps)
{
	skip_blank_lines(ps);
	char w[40];
	if (!accept_kw(ps, "graph"))
		return error_at(ps, ps->p, "expected 'graph', got '%s'", word_at(ps->p, w, sizeof w));
	skip_ws(ps);
	if (*ps->p != '@')
		return error_at(ps, ps->p, "expected graph name");
	/* The graph (and its arena) needs a name to exist, so parse the name
	 * into scratch first. */
	ps->p++;
	const char *name;
	size_t n;
	if (*ps->p == '"') {
		KILN_TRY(parse_string(ps, &n));
		name = ps->str;
	} else {
		for (n = 0; is_bare_char((unsigned char)ps->p[n]);)
			n++;
		if (n == 0)
			return error_at(ps, ps->p, "expected graph name after '@'");
		KILN_TRY(grow_bytes(ps, n + 1));
		memcpy(ps->bytes, ps->p, n);
		ps->bytes[n] = 0;
		name = (const char *)ps->bytes;
		ps->p += n;
	}
	if (!(ps->g = kiln_graph_create(name, NULL)))
		return oom(ps);
	if (!accept_kw(ps, "opset"))
		return error_at(ps, ps->p, "expected 'opset', got '%s'", word_at(ps->p, w, sizeof w));
	int64_t opset;
	KILN_TRY(parse_int(ps, 0, INT_MAX, "opset", &opset));
	ps->g->opset = (int)opset;
	KILN_TRY(expect(ps, '{', "after graph header"));
	return expect_eol(ps);
}

/* Statements of ps->g up to and including the closing '}'. */
static kiln_status parse_statements(parser *ps)
{
	for (;;) {
		skip_blank_lines(ps);
		char c = *ps->p;
		if (c == 0)
			return error_at(ps, ps->p, "unexpected end of input, expected '}'");
		if (c == '}') {
			ps->p++;
			return KILN_OK;
		}
		if (c == '%' || c == '(') {
			KILN_TRY(parse_node(ps));
		} else if (accept_kw(ps, "input")) {
			KILN_TRY(parse_input(ps));
		} else if (accept_kw(ps, "const")) {
			KILN_TRY(parse_const(ps));
		} else if (accept_kw(ps, "output")) {
			KILN_TRY(parse_output(ps));
		} else {
			char w[40];
			return error_at(ps, ps->p, "expected statement, got '%s'",
			                word_at(ps->p, w, sizeof w));
		}
	}
}

/* The body of node n, from the '{' ending its line to a '}' line: the
 * statements of a graph of its own, named after the node, with its own
 * value and node names (it sees none of the enclosing graph's). */
static kiln_status parse_body(parser *ps, kiln_node *n)
{
	if (ps->depth == MAX_BODY_DEPTH)
		return error_at(ps, ps->p, "bodies nested more than %d deep", MAX_BODY_DEPTH);
	ps->p++;
	KILN_TRY(expect_eol(ps));
	kiln_graph *outer = ps->g;
	if (!(n->body = kiln_graph_create_body(outer, n->name)))
		return oom(ps);
	symtab values = ps->values, nodes = ps->nodes;
	ps->values = (symtab){0};
	ps->nodes = (symtab){0};
	ps->g = n->body;
	ps->depth++;
	kiln_status s = parse_statements(ps);
	sym_free(&ps->values);
	sym_free(&ps->nodes);
	ps->values = values;
	ps->nodes = nodes;
	ps->g = outer;
	ps->depth--;
	KILN_TRY(s);
	return expect_eol(ps);
}

static kiln_status parse_graph(parser *ps)
{
	KILN_TRY(parse_header(ps));
	KILN_TRY(parse_statements(ps));
	skip_blank_lines(ps);
	if (*ps->p)
		return error_at(ps, ps->p, "unexpected text after '}'");
	return KILN_OK;
}

kiln_status kiln_graph_parse(const char *text, const char *filename, kiln_graph **out,
                             kiln_diag *d)
{
	if (out)
		*out = NULL;
	if (!text || !out)
		return kiln_diag_error(d, KILN_ERR_INVALID_ARG, NULL,
		                       "kiln_graph_parse: NULL text or output");
	kiln_diag local;
	const char *saved_file;
	d = kiln_diag_enter(d, &local, filename, &saved_file);
	parser ps = {.src = text, .p = text, .d = d};
	kiln_status s = parse_graph(&ps);
	sym_free(&ps.values);
	sym_free(&ps.nodes);
	free(ps.str);
	free(ps.li);
	free(ps.lf);
	free(ps.bytes);
	if (s == KILN_OK)
		*out = ps.g;
	else
		kiln_graph_destroy(ps.g);
	kiln_diag_leave(d, saved_file);
	return s;
}
