/* tensor.c — decoding ONNX TensorProtos: dtype codes, typed data fields,
 * raw_data, external data files; and kiln_onnx_read_tensor.
 *
 * raw_data and external data are little-endian in the file and copied as
 * bytes: kiln's hosts (x86-64, AArch64) are little-endian. */
#include "onnx_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

const char *kiln_onnx_dtype_name(int32_t code)
{
	static const char *const names[] = {
		"UNDEFINED", "FLOAT", "UINT8", "INT8", "UINT16", "INT16", "INT32",
		"INT64", "STRING", "BOOL", "FLOAT16", "DOUBLE", "UINT32", "UINT64",
		"COMPLEX64", "COMPLEX128", "BFLOAT16", "FLOAT8E4M3FN", "FLOAT8E4M3FNUZ",
		"FLOAT8E5M2", "FLOAT8E5M2FNUZ", "UINT4", "INT4", "FLOAT4E2M1", "FLOAT8E8M0",
	};
	if (code >= 0 && (size_t)code < sizeof names / sizeof *names)
		return names[code];
	return "UNKNOWN";
}

kiln_status kiln_onnx_tensor_type(const Onnx__TensorProto *tp, const char *what,
                                  kiln_type *t, kiln_diag *d)
{
	memset(t, 0, sizeof *t);
	int32_t code = tp->has_data_type ? tp->data_type : 0;
	if (code == 0)
		return kiln_diag_error(d, KILN_ERR_INVALID_MODEL, NULL, "%s has no data type", what);
	if (!kiln_dtype_from_onnx(code, &t->dtype))
		return kiln_diag_error(d, KILN_ERR_UNSUPPORTED, NULL,
		                       "%s has data type %s (%d), which kiln does not support",
		                       what, kiln_onnx_dtype_name(code), (int)code);
	if (tp->n_dims > KILN_MAX_RANK)
		return kiln_diag_error(d, KILN_ERR_UNSUPPORTED, NULL,
		                       "%s has rank %zu; kiln supports at most %d", what,
		                       tp->n_dims, KILN_MAX_RANK);
	t->rank = (int)tp->n_dims;
	/* Keep the byte count far from overflow: 2^48 elements is beyond any file. */
	int64_t numel = 1;
	for (int i = 0; i < t->rank; i++) {
		int64_t dim = tp->dims[i];
		if (dim < 0 || (dim > 0 && numel > ((int64_t)1 << 48) / dim))
			return kiln_diag_error(d, KILN_ERR_INVALID_MODEL, NULL,
			                       "%s has invalid dimension %d (%lld)", what, i,
			                       (long long)dim);
		numel *= dim;
		t->dims[i] = dim;
	}
	return KILN_OK;
}

static bool path_escapes(const char *loc)
{
	const char *p = loc;
	while (*p) {
		size_t len = strcspn(p, "/\\");
		if (len == 2 && p[0] == '.' && p[1] == '.')
			return true;
		p += len;
		if (*p)
			p++;
	}
	return false;
}

static bool parse_i64(const char *s, int64_t *out)
{
	if (!s || !*s)
		return false;
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno || *end || v < 0)
		return false;
	*out = v;
	return true;
}

static kiln_status external_data(const Onnx__TensorProto *tp, const char *what,
                                 const char *dir, size_t bytes, void *dst, kiln_diag *d)
{
	const char *loc = NULL, *off_s = NULL, *len_s = NULL;
	for (size_t i = 0; i < tp->n_external_data; i++) {
		const Onnx__StringStringEntryProto *e = tp->external_data[i];
		const char *key = KILN_ONNX_STR(e->key);
		if (strcmp(key, "location") == 0)
			loc = KILN_ONNX_STR(e->value);
		else if (strcmp(key, "offset") == 0)
			off_s = KILN_ONNX_STR(e->value);
		else if (strcmp(key, "length") == 0)
			len_s = KILN_ONNX_STR(e->value);
	}
	if (!loc || !*loc)
		return kiln_diag_error(d, KILN_ERR_INVALID_MODEL, NULL,
		                       "%s: external data has no location", what);
	if (loc[0] == '/' || loc[0] == '\\')
		return kiln_diag_error(d, KILN_ERR_INVALID_MODEL, NULL,
		                       "%s: external data path '%s' is absolute; it must be "
		                       "relative to the model's directory", what, loc);
	if (path_escapes(loc))
		return kiln_diag_error(d, KILN_ERR_INVALID_MODEL, NULL,
		                       "%s: external data path '%s' leaves the model's directory",
		                       what, loc);
	int64_t offset = 0, length = (int64_t)bytes;
	if (off_s && !parse_i64(off_s, &offset))
		return kiln_diag_error(d, KILN_ERR_INVALID_MODEL, NULL,
		                       "%s: external data offset '%s' is not a number", what, off_s);
	if (len_s && !parse_i64(len_s, &length))
		return kiln_diag_error(d, KILN_ERR_INVALID_MODEL, NULL,
		                       "%s: external data length '%s' is not a number", what, len_s);
	if (length != (int64_t)bytes)
		return kiln_diag_error(d, KILN_ERR_INVALID_MODEL, NULL,
		                       "%s: external data length is %lld bytes, expected %zu",
		                       what, (long long)length, bytes);

	size_t plen = strlen(dir) + strlen(loc) + 2;
	char *full = malloc(plen);
	if (!full)
		return kiln_diag_error(d, KILN_ERR_OOM, NULL, "out of memory");
	snprintf(full, plen, "%s/%s", dir, loc);
	FILE *f = fopen(full, "rb");
	free(full);
	if (!f)
		return kiln_diag_error(d, KILN_ERR_IO, NULL, "%s: cannot open external data '%s': %s",
		                       what, loc, strerror(errno));
	struct stat st;
	kiln_status s = KILN_OK;
	if (fstat(fileno(f), &st) != 0) {
		s = kiln_diag_error(d, KILN_ERR_IO, NULL, "%s: cannot stat external data '%s': %s",
		                    what, loc, strerror(errno));
	} else if (offset > (int64_t)st.st_size || length > (int64_t)st.st_size - offset) {
		s = kiln_diag_error(d, KILN_ERR_INVALID_MODEL, NULL,
		                    "%s: external data '%s' has %lld bytes, but offset %lld + "
		                    "length %lld runs past its end", what, loc,
		                    (long long)st.st_size, (long long)offset, (long long)length);
	} else if (fseeko(f, (off_t)offset, SEEK_SET) != 0 ||
	           (bytes && fread(dst, 1, bytes, f) != bytes)) {
		s = kiln_diag_error(d, KILN_ERR_IO, NULL, "%s: cannot read external data '%s'",
		                    what, loc);
	}
	fclose(f);
	return s;
}

static kiln_status count_error(const char *what, const char *field, size_t have,
                               int64_t want, kiln_diag *d)
{
	return kiln_diag_error(d, KILN_ERR_INVALID_MODEL, NULL,
	                       "%s has %zu values in %s, expected %lld", what, have, field,
	                       (long long)want);
}

kiln_status kiln_onnx_tensor_data(const Onnx__TensorProto *tp, const char *what,
                                  const char *dir, const kiln_type *t, void *dst,
                                  kiln_diag *d)
{
	size_t bytes = kiln_type_bytes(t);
	int64_t n = kiln_type_numel(t);
	if (tp->has_data_location && tp->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL) {
		KILN_TRY(external_data(tp, what, dir, bytes, dst, d));
	} else if (tp->has_raw_data) {
		char buf[128];
		if (tp->raw_data.len != bytes)
			return kiln_diag_error(d, KILN_ERR_INVALID_MODEL, NULL,
			                       "%s has %zu bytes of raw_data, expected %zu for %s",
			                       what, tp->raw_data.len, bytes,
			                       kiln_type_str(t, buf, sizeof buf));
		if (bytes)
			memcpy(dst, tp->raw_data.data, bytes);
	} else {
		switch (t->dtype) {
		case KILN_DT_F32:
			if ((int64_t)tp->n_float_data != n)
				return count_error(what, "float_data", tp->n_float_data, n, d);
			if (bytes)
				memcpy(dst, tp->float_data, bytes);
			return KILN_OK;
		case KILN_DT_F64:
			if ((int64_t)tp->n_double_data != n)
				return count_error(what, "double_data", tp->n_double_data, n, d);
			if (bytes)
				memcpy(dst, tp->double_data, bytes);
			return KILN_OK;
		case KILN_DT_I64:
			if ((int64_t)tp->n_int64_data != n)
				return count_error(what, "int64_data", tp->n_int64_data, n, d);
			if (bytes)
				memcpy(dst, tp->int64_data, bytes);
			return KILN_OK;
		default:
			break;
		}
		/* int32_data carries one element per entry for the narrower types
		 * (f16/bf16 as their bit patterns). */
		if ((int64_t)tp->n_int32_data != n)
			return count_error(what, "int32_data", tp->n_int32_data, n, d);
		for (int64_t i = 0; i < n; i++) {
			int32_t v = tp->int32_data[i];
			switch (t->dtype) {
			case KILN_DT_I32: ((int32_t *)dst)[i] = v; break;
			case KILN_DT_I8: ((int8_t *)dst)[i] = (int8_t)v; break;
			case KILN_DT_U8: ((uint8_t *)dst)[i] = (uint8_t)v; break;
			case KILN_DT_BOOL: ((uint8_t *)dst)[i] = v != 0; break;
			default: ((uint16_t *)dst)[i] = (uint16_t)v; break; /* f16, bf16 */
			}
		}
		return KILN_OK;
	}
	if (t->dtype == KILN_DT_BOOL)
		for (int64_t i = 0; i < n; i++)
			((uint8_t *)dst)[i] = ((uint8_t *)dst)[i] != 0;
	return KILN_OK;
}

kiln_status kiln_onnx_read_file(const char *path, uint8_t **buf, size_t *len, kiln_diag *d)
{
	*buf = NULL;
	*len = 0;
	FILE *f = fopen(path, "rb");
	if (!f)
		return kiln_diag_error(d, KILN_ERR_IO, NULL, "cannot open: %s", strerror(errno));
	struct stat st;
	if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
		fclose(f);
		return kiln_diag_error(d, KILN_ERR_IO, NULL, "cannot read: not a regular file");
	}
	size_t size = (size_t)st.st_size;
	uint8_t *p = malloc(size ? size : 1);
	if (!p) {
		fclose(f);
		return kiln_diag_error(d, KILN_ERR_OOM, NULL, "out of memory reading %zu bytes", size);
	}
	size_t got = fread(p, 1, size, f);
	bool err = ferror(f);
	fclose(f);
	if (err || got != size) {
		free(p);
		return kiln_diag_error(d, KILN_ERR_IO, NULL, "cannot read: %s",
		                       err ? strerror(errno) : "short read");
	}
	*buf = p;
	*len = size;
	return KILN_OK;
}

char *kiln_onnx_dirname(const char *path)
{
	const char *slash = strrchr(path, '/');
	if (!slash)
		return strdup(".");
	if (slash == path)
		return strdup("/");
	return strndup(path, (size_t)(slash - path));
}

kiln_status kiln_onnx_read_tensor(const char *path, kiln_tensor *t, char **name,
                                  kiln_diag *d)
{
	memset(t, 0, sizeof *t);
	if (name)
		*name = NULL;
	kiln_diag local;
	const char *saved_file;
	d = kiln_diag_enter(d, &local, path, &saved_file);

	uint8_t *buf;
	size_t len;
	kiln_status s = kiln_onnx_read_file(path, &buf, &len, d);
	Onnx__TensorProto *tp = NULL;
	char *dir = NULL;
	void *data = NULL;
	if (s != KILN_OK)
		goto done;
	tp = onnx__tensor_proto__unpack(NULL, len, buf);
	if (!tp) {
		s = kiln_diag_error(d, KILN_ERR_INVALID_MODEL, NULL,
		                    "not a valid ONNX tensor: protobuf parse failed (truncated or "
		                    "corrupt file)");
		goto done;
	}
	char what[300];
	if (tp->name && *tp->name)
		snprintf(what, sizeof what, "tensor '%s'", tp->name);
	else
		snprintf(what, sizeof what, "tensor");
	kiln_type type;
	if ((s = kiln_onnx_tensor_type(tp, what, &type, d)) != KILN_OK)
		goto done;
	size_t bytes = kiln_type_bytes(&type);
	if (!(dir = kiln_onnx_dirname(path)) || !(data = malloc(bytes ? bytes : 1))) {
		s = kiln_diag_error(d, KILN_ERR_OOM, NULL, "out of memory");
		goto done;
	}
	if ((s = kiln_onnx_tensor_data(tp, what, dir, &type, data, d)) != KILN_OK)
		goto done;
	if (name && !(*name = strdup(KILN_ONNX_STR(tp->name)))) {
		s = kiln_diag_error(d, KILN_ERR_OOM, NULL, "out of memory");
		goto done;
	}
	t->type = type;
	t->data = data;
	data = NULL;
done:
	free(data);
	free(dir);
	if (tp)
		onnx__tensor_proto__free_unpacked(tp, NULL);
	free(buf);
	kiln_diag_leave(d, saved_file);
	return s;
}
