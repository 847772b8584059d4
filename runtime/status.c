/* status.c — status and dtype names, element sizes, error formatting. */
#include <stdarg.h>
#include <stdio.h>

#include "rt.h"

static const char *const status_names[] = {
	[KILN_RT_OK] = "ok",
	[KILN_RT_ERR_IO] = "I/O error",
	[KILN_RT_ERR_NOT_ARTEFACT] = "not a kiln artefact",
	[KILN_RT_ERR_ABI] = "ABI mismatch",
	[KILN_RT_ERR_CPU] = "CPU lacks required features",
	[KILN_RT_ERR_INVALID_ARG] = "invalid argument",
	[KILN_RT_ERR_SHAPE] = "shape mismatch",
	[KILN_RT_ERR_DTYPE] = "dtype mismatch",
	[KILN_RT_ERR_OOM] = "out of memory",
	[KILN_RT_ERR_THREAD] = "could not start threads",
	[KILN_RT_ERR_NO_SGEMM] = "the model calls a host GEMM and the session options give no sgemm",
};
_Static_assert(sizeof status_names / sizeof *status_names == KILN_RT_STATUS_COUNT,
               "one name per kiln_rt_status");

const char *kiln_rt_status_str(kiln_rt_status s)
{
	if ((unsigned)s >= KILN_RT_STATUS_COUNT)
		return "unknown status";
	return status_names[s];
}

/* Indexed by kiln_dtype (include/kiln.h); the runtime does not link libkiln,
 * so it keeps its own copy of the two columns it needs. */
static const struct {
	const char *name;
	unsigned char size;
} dtypes[] = {
	{"f32", 4}, {"f16", 2}, {"bf16", 2}, {"f64", 8}, {"i64", 8},
	{"i32", 4}, {"i8", 1},  {"u8", 1},   {"bool", 1},
};

size_t kiln_rt_dtype_size(int32_t dtype)
{
	if (dtype < 0 || (size_t)dtype >= sizeof dtypes / sizeof *dtypes)
		return 0;
	return dtypes[dtype].size;
}

const char *kiln_rt_dtype_name(int32_t dtype)
{
	if (dtype < 0 || (size_t)dtype >= sizeof dtypes / sizeof *dtypes)
		return NULL;
	return dtypes[dtype].name;
}

void kiln_rt_format_dims(char *buf, size_t size, int32_t rank, const int64_t *dims)
{
	size_t len = (size_t)snprintf(buf, size, "[");
	for (int32_t i = 0; i < rank && len < size; i++)
		len += (size_t)snprintf(buf + len, size - len, "%s%lld", i ? "," : "",
		                        (long long)dims[i]);
	if (len < size)
		snprintf(buf + len, size - len, "]");
}

kiln_rt_status kiln_rt_fail(char *err, size_t err_size, kiln_rt_status st, const char *fmt, ...)
{
	if (err && err_size) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, err_size, fmt, ap);
		va_end(ap);
	}
	return st;
}
