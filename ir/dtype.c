/* dtype.c — element types, half-precision conversions, kiln_type helpers. */
#include "ir.h"

#include <stdio.h>
#include <string.h>

static const struct {
	const char *name;
	size_t size;
	int32_t onnx; /* ONNX TensorProto.DataType code */
} dtypes[] = {
	[KILN_DT_F32] = {"f32", 4, 1},  [KILN_DT_F16] = {"f16", 2, 10}, [KILN_DT_BF16] = {"bf16", 2, 16},
	[KILN_DT_F64] = {"f64", 8, 11}, [KILN_DT_I64] = {"i64", 8, 7},  [KILN_DT_I32] = {"i32", 4, 6},
	[KILN_DT_I8] = {"i8", 1, 3},    [KILN_DT_U8] = {"u8", 1, 2},    [KILN_DT_BOOL] = {"bool", 1, 9},
};
_Static_assert(sizeof dtypes / sizeof *dtypes == KILN_DTYPE_COUNT, "dtypes must cover kiln_dtype");

const char *kiln_dtype_name(kiln_dtype dt)
{
	return (unsigned)dt < KILN_DTYPE_COUNT ? dtypes[dt].name : "?";
}

size_t kiln_dtype_size(kiln_dtype dt)
{
	return (unsigned)dt < KILN_DTYPE_COUNT ? dtypes[dt].size : 0;
}

bool kiln_dtype_is_float(kiln_dtype dt)
{
	return dt == KILN_DT_F32 || dt == KILN_DT_F16 || dt == KILN_DT_BF16 || dt == KILN_DT_F64;
}

bool kiln_dtype_is_int(kiln_dtype dt)
{
	return dt == KILN_DT_I64 || dt == KILN_DT_I32 || dt == KILN_DT_I8 || dt == KILN_DT_U8;
}

bool kiln_dtype_parse(const char *s, kiln_dtype *out)
{
	for (int i = 0; i < KILN_DTYPE_COUNT; i++) {
		if (strcmp(s, dtypes[i].name) == 0) {
			*out = (kiln_dtype)i;
			return true;
		}
	}
	return false;
}

bool kiln_dtype_from_onnx(int64_t code, kiln_dtype *out)
{
	for (int i = 0; i < KILN_DTYPE_COUNT; i++) {
		if (dtypes[i].onnx == code) {
			*out = (kiln_dtype)i;
			return true;
		}
	}
	return false;
}

int32_t kiln_dtype_to_onnx(kiln_dtype dt)
{
	return (unsigned)dt < KILN_DTYPE_COUNT ? dtypes[dt].onnx : 0;
}

static uint32_t f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

float kiln_f16_to_f32(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000) << 16;
	uint32_t exp = (h >> 10) & 0x1f;
	uint32_t man = h & 0x3ff;
	if (exp == 0x1f) /* inf / nan */
		return bits_f32(sign | 0x7f800000 | (man << 13));
	if (exp == 0) {
		if (man == 0)
			return bits_f32(sign);
		/* subnormal: value = man * 2^-24 */
		float v = (float)man * (1.0f / 16777216.0f);
		return sign ? -v : v;
	}
	return bits_f32(sign | ((exp + 112) << 23) | (man << 13));
}

uint16_t kiln_f32_to_f16(float f)
{
	uint32_t u = f32_bits(f);
	uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
	uint32_t exp = (u >> 23) & 0xff;
	uint32_t man = u & 0x7fffff;
	if (exp == 0xff) /* inf / nan (keep nan quiet and non-zero) */
		return sign | 0x7c00 | (man ? 0x200 | (man >> 13) : 0);
	int32_t e = (int32_t)exp - 127 + 15;
	if (e >= 0x1f)
		return sign | 0x7c00;
	if (e <= 0) {
		if (e < -10)
			return sign;
		/* subnormal: shift the implicit-1 mantissa, round to nearest even */
		man |= 0x800000;
		uint32_t shift = (uint32_t)(14 - e);
		uint32_t half = 1u << (shift - 1);
		uint32_t rest = man & ((1u << shift) - 1);
		uint32_t r = man >> shift;
		if (rest > half || (rest == half && (r & 1)))
			r++;
		return sign | (uint16_t)r;
	}
	uint32_t r = ((uint32_t)e << 10) | (man >> 13);
	uint32_t rest = man & 0x1fff;
	if (rest > 0x1000 || (rest == 0x1000 && (r & 1)))
		r++; /* may carry into the exponent, which is still correct (up to inf) */
	return sign | (uint16_t)r;
}

float kiln_bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

uint16_t kiln_f32_to_bf16(float f)
{
	uint32_t u = f32_bits(f);
	if ((u & 0x7f800000) == 0x7f800000 && (u & 0x7fffff))
		return (uint16_t)((u >> 16) | 0x40); /* quiet nan */
	u += 0x7fff + ((u >> 16) & 1);
	return (uint16_t)(u >> 16);
}

int64_t kiln_type_numel(const kiln_type *t)
{
	int64_t n = 1;
	for (int i = 0; i < t->rank; i++)
		n *= t->dims[i];
	return n;
}

size_t kiln_type_bytes(const kiln_type *t)
{
	return (size_t)kiln_type_numel(t) * kiln_dtype_size(t->dtype);
}

bool kiln_type_equal(const kiln_type *a, const kiln_type *b)
{
	if (a->dtype != b->dtype || a->rank != b->rank)
		return false;
	for (int i = 0; i < a->rank; i++)
		if (a->dims[i] != b->dims[i])
			return false;
	return true;
}

char *kiln_type_str(const kiln_type *t, char *buf, size_t size)
{
	size_t len = (size_t)snprintf(buf, size, "%s[", kiln_dtype_name(t->dtype));
	for (int i = 0; i < t->rank && len < size; i++)
		len += (size_t)snprintf(buf + len, size - len, i ? ",%lld" : "%lld",
		                        (long long)t->dims[i]);
	if (len < size)
		snprintf(buf + len, size - len, "]");
	return buf;
}
