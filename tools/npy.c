/* npy.c — reads and writes NumPy .npy files (see npy.h for what is supported).
 *
 * A .npy file is: the magic "\x93NUMPY", a major and minor version byte, the
 * header length (2 bytes little-endian in 1.0, 4 bytes in 2.0 and 3.0), the
 * header — a Python dict literal with the keys 'descr', 'fortran_order' and
 * 'shape', padded with spaces and ending in '\n' — and then the raw elements.
 * The header is parsed by a small recursive reader of just that literal
 * subset (strings, True/False, tuples of integers); nothing is evaluated. */
#include "npy.h"
#include "ir.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Real headers are well under 1 KiB; this bounds what a hostile length costs. */
#define MAX_HEADER_BYTES (1u << 20)
#define DESCR_MAX 32

static const char magic[6] = {'\x93', 'N', 'U', 'M', 'P', 'Y'};

static const struct {
	const char *descr;
	kiln_dtype dtype;
} descrs[] = {
	{"<f4", KILN_DT_F32}, {"<f2", KILN_DT_F16}, {"<f8", KILN_DT_F64},
	{"<i8", KILN_DT_I64}, {"<i4", KILN_DT_I32}, {"|i1", KILN_DT_I8},
	{"|u1", KILN_DT_U8},  {"|b1", KILN_DT_BOOL},
};
#define N_DESCRS (sizeof descrs / sizeof *descrs)
#define SUPPORTED_DESCRS "<f4, <f2, <f8, <i8, <i4, |i1, |u1, |b1"

/* Reports "PATH: message" through d, whichever file d itself names. */
static kiln_status npy_error(kiln_diag *d, kiln_status status, const char *path,
                             const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static kiln_status npy_error(kiln_diag *d, kiln_status status, const char *path,
                             const char *fmt, ...)
{
	if (!d)
		return status;
	const char *saved = d->file;
	d->file = path;
	va_list ap;
	va_start(ap, fmt);
	kiln_diag_verror(d, status, NULL, fmt, ap);
	va_end(ap);
	d->file = saved;
	return status;
}

/* Writes "(1, 784)" / "(5,)" / "()" into buf. */
static void shape_str(const kiln_type *t, char *buf, size_t size)
{
	size_t len = (size_t)snprintf(buf, size, "(");
	for (int i = 0; i < t->rank && len < size; i++)
		len += (size_t)snprintf(buf + len, size - len, i ? ", %lld" : "%lld",
		                        (long long)t->dims[i]);
	if (len < size)
		snprintf(buf + len, size - len, t->rank == 1 ? ",)" : ")");
}

/* Byte size of t's elements, or -1 if a dim is negative or the size overflows. */
static int64_t checked_bytes(const kiln_type *t)
{
	int64_t size = (int64_t)kiln_dtype_size(t->dtype);
	int64_t bytes = size;
	for (int i = 0; i < t->rank; i++) {
		if (t->dims[i] < 0)
			return -1;
		if (t->dims[i] && bytes > INT64_MAX / t->dims[i])
			return -1;
		bytes *= t->dims[i];
	}
	return bytes;
}

/* ---- header parsing ---- */

typedef struct header {
	const char *p;
	char descr[DESCR_MAX];
	bool has_descr, has_fortran, has_shape;
	bool fortran;
	kiln_type type;
	char why[160]; /* what is malformed */
} header;

static void skip_ws(header *h)
{
	while (*h->p == ' ' || *h->p == '\t' || *h->p == '\n' || *h->p == '\r')
		h->p++;
}

static bool expect(header *h, char c, const char *after)
{
	skip_ws(h);
	if (*h->p != c) {
		snprintf(h->why, sizeof h->why, "expected '%c' %s", c, after);
		return false;
	}
	h->p++;
	return true;
}

/* A quoted Python string; false if unterminated or longer than size - 1. */
static bool parse_string(header *h, char *out, size_t size)
{
	skip_ws(h);
	char q = *h->p;
	if (q != '\'' && q != '"') {
		snprintf(h->why, sizeof h->why, "expected a quoted string");
		return false;
	}
	h->p++;
	size_t n = 0;
	while (*h->p && *h->p != q) {
		if (*h->p == '\\' && h->p[1])
			h->p++;
		if (n + 1 >= size) {
			snprintf(h->why, sizeof h->why, "string too long");
			return false;
		}
		out[n++] = *h->p++;
	}
	if (*h->p != q) {
		snprintf(h->why, sizeof h->why, "unterminated string");
		return false;
	}
	h->p++;
	out[n] = '\0';
	return true;
}

static bool parse_bool(header *h, bool *out)
{
	skip_ws(h);
	if (!strncmp(h->p, "True", 4)) {
		*out = true;
		h->p += 4;
		return true;
	}
	if (!strncmp(h->p, "False", 5)) {
		*out = false;
		h->p += 5;
		return true;
	}
	snprintf(h->why, sizeof h->why, "'fortran_order' must be True or False");
	return false;
}

/* A tuple (or list) of non-negative integers. */
static bool parse_shape(header *h)
{
	skip_ws(h);
	char close = *h->p == '(' ? ')' : *h->p == '[' ? ']' : 0;
	if (!close) {
		snprintf(h->why, sizeof h->why, "'shape' must be a tuple of integers");
		return false;
	}
	h->p++;
	h->type.rank = 0;
	for (;;) {
		skip_ws(h);
		if (*h->p == close)
			break;
		if (*h->p < '0' || *h->p > '9') {
			snprintf(h->why, sizeof h->why,
			         "'shape' must be a tuple of non-negative integers");
			return false;
		}
		int64_t v = 0;
		while (*h->p >= '0' && *h->p <= '9') {
			if (v > (INT64_MAX - 9) / 10) {
				snprintf(h->why, sizeof h->why, "a dimension in 'shape' is too large");
				return false;
			}
			v = v * 10 + (*h->p++ - '0');
		}
		if (*h->p == 'L') /* Python 2 longs */
			h->p++;
		if (h->type.rank == KILN_MAX_RANK) {
			snprintf(h->why, sizeof h->why, "'shape' has more than %d dimensions",
			         KILN_MAX_RANK);
			return false;
		}
		h->type.dims[h->type.rank++] = v;
		skip_ws(h);
		if (*h->p == ',')
			h->p++;
		else if (*h->p != close) {
			snprintf(h->why, sizeof h->why, "expected ',' or '%c' in 'shape'", close);
			return false;
		}
	}
	h->p++;
	return true;
}

static bool parse_header(header *h)
{
	if (!expect(h, '{', "at the start of the header"))
		return false;
	for (;;) {
		skip_ws(h);
		if (*h->p == '}')
			break;
		char key[32];
		if (!parse_string(h, key, sizeof key))
			return false;
		char after[64];
		snprintf(after, sizeof after, "after key '%s'", key);
		if (!expect(h, ':', after))
			return false;
		bool *seen;
		bool ok;
		if (!strcmp(key, "descr")) {
			seen = &h->has_descr;
			skip_ws(h);
			if (*h->p == '[') {
				snprintf(h->why, sizeof h->why,
				         "structured dtypes are not supported");
				return false;
			}
			ok = parse_string(h, h->descr, sizeof h->descr);
		} else if (!strcmp(key, "fortran_order")) {
			seen = &h->has_fortran;
			ok = parse_bool(h, &h->fortran);
		} else if (!strcmp(key, "shape")) {
			seen = &h->has_shape;
			ok = parse_shape(h);
		} else {
			snprintf(h->why, sizeof h->why, "unexpected key '%s'", key);
			return false;
		}
		if (!ok)
			return false;
		if (*seen) {
			snprintf(h->why, sizeof h->why, "key '%s' appears twice", key);
			return false;
		}
		*seen = true;
		skip_ws(h);
		if (*h->p == ',')
			h->p++;
		else if (*h->p != '}') {
			snprintf(h->why, sizeof h->why, "expected ',' or '}' after the value of '%s'",
			         key);
			return false;
		}
	}
	h->p++;
	skip_ws(h);
	if (*h->p) {
		snprintf(h->why, sizeof h->why, "unexpected text after the closing '}'");
		return false;
	}
	const char *missing = !h->has_descr ? "descr" : !h->has_fortran ? "fortran_order"
	                    : !h->has_shape ? "shape" : NULL;
	if (missing) {
		snprintf(h->why, sizeof h->why, "no '%s' key", missing);
		return false;
	}
	return true;
}

/* Maps a descr to a kiln dtype, or reports why it cannot. */
static kiln_status map_descr(const char *path, const char *descr, kiln_dtype *out,
                             kiln_diag *d)
{
	char norm[DESCR_MAX];
	snprintf(norm, sizeof norm, "%s", descr);
	/* Byte order means nothing for one-byte types: numpy writes '|'. */
	if (strlen(norm) == 3 && norm[2] == '1' && strchr("<>=", norm[0]))
		norm[0] = '|';
	for (size_t i = 0; i < N_DESCRS; i++) {
		if (!strcmp(norm, descrs[i].descr)) {
			*out = descrs[i].dtype;
			return KILN_OK;
		}
	}
	if (norm[0] == '>') {
		for (size_t i = 0; i < N_DESCRS; i++) {
			if (!strcmp(norm + 1, descrs[i].descr + 1))
				return npy_error(d, KILN_ERR_INVALID_ARG, path,
				                 "big-endian dtype '%s' is not supported "
				                 "(kiln reads little-endian .npy files only)", descr);
		}
	}
	return npy_error(d, KILN_ERR_INVALID_ARG, path,
	                 "unsupported dtype '%s' (kiln reads " SUPPORTED_DESCRS ")", descr);
}

/* ---- reading ---- */

/* Reads exactly n bytes; returns how many it got. */
static size_t read_bytes(FILE *f, void *buf, size_t n)
{
	return n ? fread(buf, 1, n, f) : 0;
}

static kiln_status read_file(FILE *f, const char *path, kiln_tensor *t, kiln_diag *d)
{
	struct stat st;
	bool regular = false;
	if (fstat(fileno(f), &st) == 0) {
		if (S_ISDIR(st.st_mode))
			return npy_error(d, KILN_ERR_IO, path, "cannot read: %s", strerror(EISDIR));
		regular = S_ISREG(st.st_mode);
	}

	unsigned char pre[12];
	size_t got = read_bytes(f, pre, 8);
	if (ferror(f))
		return npy_error(d, KILN_ERR_IO, path, "cannot read: %s", strerror(errno));
	if (got < sizeof magic || memcmp(pre, magic, sizeof magic))
		return npy_error(d, KILN_ERR_INVALID_ARG, path,
		                 "not a .npy file (bad magic bytes)");
	if (got < 8)
		return npy_error(d, KILN_ERR_INVALID_ARG, path,
		                 "truncated header (the file ends after %zu bytes)", got);
	int major = pre[6], minor = pre[7];
	if ((major != 1 && major != 2 && major != 3) || minor != 0)
		return npy_error(d, KILN_ERR_INVALID_ARG, path,
		                 "unsupported .npy format version %d.%d (kiln reads 1.0, 2.0 and 3.0)",
		                 major, minor);
	size_t len_bytes = major == 1 ? 2 : 4;
	got = read_bytes(f, pre + 8, len_bytes);
	if (got < len_bytes)
		return npy_error(d, KILN_ERR_INVALID_ARG, path,
		                 "truncated header (the file ends after %zu bytes)", 8 + got);
	uint32_t hlen = (uint32_t)pre[8] | (uint32_t)pre[9] << 8;
	if (major != 1)
		hlen |= (uint32_t)pre[10] << 16 | (uint32_t)pre[11] << 24;
	if (hlen > MAX_HEADER_BYTES)
		return npy_error(d, KILN_ERR_INVALID_ARG, path,
		                 "header length %u is larger than kiln accepts (%u)", hlen,
		                 MAX_HEADER_BYTES);
	char *text = malloc((size_t)hlen + 1);
	if (!text)
		return npy_error(d, KILN_ERR_OOM, path, "out of memory reading the header");
	got = read_bytes(f, text, hlen);
	if (got < hlen) {
		free(text);
		return npy_error(d, KILN_ERR_INVALID_ARG, path,
		                 "truncated header (%zu of its %u bytes present)", got, hlen);
	}
	text[hlen] = '\0';
	if (strlen(text) != hlen) {
		free(text);
		return npy_error(d, KILN_ERR_INVALID_ARG, path,
		                 "malformed header: it contains a NUL byte");
	}

	header h = {.p = text};
	bool ok = parse_header(&h);
	free(text);
	if (!ok)
		return npy_error(d, KILN_ERR_INVALID_ARG, path, "malformed header: %s", h.why);
	KILN_TRY(map_descr(path, h.descr, &h.type.dtype, d));
	if (h.fortran)
		return npy_error(d, KILN_ERR_INVALID_ARG, path,
		                 "Fortran-order arrays are not supported (save a C-order array, "
		                 "e.g. numpy.ascontiguousarray)");

	char shape[256];
	shape_str(&h.type, shape, sizeof shape);
	int64_t need = checked_bytes(&h.type);
	if (need < 0)
		return npy_error(d, KILN_ERR_INVALID_ARG, path,
		                 "shape %s is too large", shape);
	long long offset = (long long)(8 + len_bytes + hlen);
	if (regular && (long long)st.st_size - offset < need)
		return npy_error(d, KILN_ERR_INVALID_ARG, path,
		                 "data is truncated: shape %s of %s needs %lld bytes, the file has %lld",
		                 shape, kiln_dtype_name(h.type.dtype), (long long)need,
		                 (long long)st.st_size - offset);

	void *data = malloc(need ? (size_t)need : 1);
	if (!data)
		return npy_error(d, KILN_ERR_OOM, path, "out of memory for %lld bytes of data",
		                 (long long)need);
	got = read_bytes(f, data, (size_t)need);
	if (got < (size_t)need) {
		free(data);
		if (ferror(f))
			return npy_error(d, KILN_ERR_IO, path, "cannot read: %s", strerror(errno));
		return npy_error(d, KILN_ERR_INVALID_ARG, path,
		                 "data is truncated: shape %s of %s needs %lld bytes, the file has %zu",
		                 shape, kiln_dtype_name(h.type.dtype), (long long)need, got);
	}
	if (fgetc(f) != EOF) {
		free(data);
		return npy_error(d, KILN_ERR_INVALID_ARG, path,
		                 "unexpected bytes after the data of shape %s (%lld bytes of %s)",
		                 shape, (long long)need, kiln_dtype_name(h.type.dtype));
	}
	if (h.type.dtype == KILN_DT_BOOL) {
		unsigned char *b = data;
		for (int64_t i = 0; i < need; i++)
			b[i] = b[i] != 0;
	}
	t->type = h.type;
	t->data = data;
	return KILN_OK;
}

kiln_status kiln_npy_read(const char *path, kiln_tensor *t, kiln_diag *d)
{
	memset(t, 0, sizeof *t);
	FILE *f = fopen(path, "rb");
	if (!f)
		return npy_error(d, KILN_ERR_IO, path, "cannot open: %s", strerror(errno));
	kiln_status s = read_file(f, path, t, d);
	fclose(f);
	return s;
}

/* ---- writing ---- */

static bool write_all(int fd, const void *buf, size_t n)
{
	const char *p = buf;
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return false;
		}
		p += w;
		n -= (size_t)w;
	}
	return true;
}

/* Builds the magic, version, length and padded header; returns its size.
 * With at most KILN_MAX_RANK dims the header is far below 1.0's 64 KiB limit,
 * so version 1.0 always suffices. */
static size_t build_preamble(const kiln_type *t, const char *descr, char *buf, size_t size)
{
	char shape[256];
	shape_str(t, shape, sizeof shape);
	char dict[400];
	int dlen = snprintf(dict, sizeof dict,
	                    "{'descr': '%s', 'fortran_order': False, 'shape': %s, }", descr,
	                    shape);
	/* Pad with spaces so the data starts 64-byte aligned, then '\n'. */
	size_t pre = 10;
	size_t total = (pre + (size_t)dlen + 1 + 63) / 64 * 64;
	if (total > size)
		return 0;
	size_t hlen = total - pre;
	memcpy(buf, magic, sizeof magic);
	buf[6] = 1;
	buf[7] = 0;
	buf[8] = (char)(hlen & 0xff);
	buf[9] = (char)(hlen >> 8 & 0xff);
	memcpy(buf + pre, dict, (size_t)dlen);
	memset(buf + pre + dlen, ' ', total - pre - (size_t)dlen - 1);
	buf[total - 1] = '\n';
	return total;
}

/* Opens a new temporary file next to `path` (O_EXCL, so never someone else's). */
static int open_temp(const char *path, char *tmp, size_t size)
{
	for (int i = 0; i < 100; i++) {
		snprintf(tmp, size, "%s.tmp-%ld-%d", path, (long)getpid(), i);
		int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
		if (fd >= 0 || errno != EEXIST)
			return fd;
	}
	errno = EEXIST;
	return -1;
}

kiln_status kiln_npy_write(const char *path, const kiln_tensor *t, kiln_diag *d)
{
	const kiln_type *ty = &t->type;
	if ((unsigned)ty->dtype >= KILN_DTYPE_COUNT)
		return npy_error(d, KILN_ERR_INVALID_ARG, path, "cannot write: invalid dtype %d",
		                 (int)ty->dtype);
	if (ty->rank < 0 || ty->rank > KILN_MAX_RANK)
		return npy_error(d, KILN_ERR_INVALID_ARG, path, "cannot write: invalid rank %d",
		                 ty->rank);
	int64_t bytes = checked_bytes(ty);
	if (bytes < 0)
		return npy_error(d, KILN_ERR_INVALID_ARG, path,
		                 "cannot write: invalid or too large shape");

	/* bf16 is written as f32 (exact), the nearest type NumPy has. */
	kiln_type out_type = *ty;
	const void *data = t->data;
	float *widened = NULL;
	if (ty->dtype == KILN_DT_BF16) {
		out_type.dtype = KILN_DT_F32;
		int64_t n = bytes / 2;
		widened = malloc(n ? (size_t)n * sizeof *widened : 1);
		if (!widened)
			return npy_error(d, KILN_ERR_OOM, path, "out of memory converting bf16");
		const uint16_t *src = t->data;
		for (int64_t i = 0; i < n; i++)
			widened[i] = kiln_bf16_to_f32(src[i]);
		data = widened;
		bytes *= 2;
	}
	const char *descr = NULL;
	for (size_t i = 0; i < N_DESCRS; i++)
		if (descrs[i].dtype == out_type.dtype)
			descr = descrs[i].descr;

	char pre[1024];
	size_t pre_len = build_preamble(&out_type, descr, pre, sizeof pre);
	if (!pre_len) {
		free(widened);
		return npy_error(d, KILN_ERR_INTERNAL, path, "cannot write: header too long");
	}

	size_t tmp_size = strlen(path) + 40;
	char *tmp = malloc(tmp_size);
	if (!tmp) {
		free(widened);
		return npy_error(d, KILN_ERR_OOM, path, "out of memory");
	}
	kiln_status s = KILN_OK;
	int fd = open_temp(path, tmp, tmp_size);
	if (fd < 0) {
		s = npy_error(d, KILN_ERR_IO, path, "cannot write: %s", strerror(errno));
	} else {
		bool ok = write_all(fd, pre, pre_len) && write_all(fd, data, (size_t)bytes);
		int err = errno;
		if (close(fd) != 0 && ok) {
			ok = false;
			err = errno;
		}
		if (ok && rename(tmp, path) != 0) {
			ok = false;
			err = errno;
		}
		if (!ok) {
			unlink(tmp);
			s = npy_error(d, KILN_ERR_IO, path, "cannot write: %s", strerror(err));
		}
	}
	free(tmp);
	free(widened);
	return s;
}
