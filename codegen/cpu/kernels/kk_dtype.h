/* kk_dtype.h — element types for the kernels: the dtype codes, f16/bf16
 * conversions bit for bit those of ir/dtype.c (round to nearest even; NaN
 * stays NaN), and scalar element access by dtype with the interpreter's
 * conversion rules (interp/tensor.c), which the kernels cannot call: the
 * kernel library links only libc and libm. The lowerings include this header
 * for the codes alone. */
#ifndef KK_DTYPE_H
#define KK_DTYPE_H

#include <stdint.h>

/* kiln_dtype values (kiln.h), which kernels cannot include; a lowering
 * (lower_elementwise.c) checks they agree, so a lowering passes a kiln_dtype
 * through as is. */
enum {
	KK_DT_F32,
	KK_DT_F16,
	KK_DT_BF16,
	KK_DT_F64,
	KK_DT_I64,
	KK_DT_I32,
	KK_DT_I8,
	KK_DT_U8,
	KK_DT_BOOL,
	KK_DT_NONE = -1 /* an omitted optional tensor */
};

static inline uint32_t kk_f32_bits(float f)
{
	uint32_t u;
	__builtin_memcpy(&u, &f, sizeof u);
	return u;
}

static inline float kk_bits_f32(uint32_t u)
{
	float f;
	__builtin_memcpy(&f, &u, sizeof f);
	return f;
}

static inline float kk_f16_to_f32(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000) << 16;
	uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff;
	if (exp == 0x1f)
		return kk_bits_f32(sign | 0x7f800000 | (man << 13));
	if (exp == 0) {
		float v = (float)man * (1.0f / 16777216.0f); /* zero or subnormal */
		return sign ? -v : v;
	}
	return kk_bits_f32(sign | ((exp + 112) << 23) | (man << 13));
}

static inline uint16_t kk_f32_to_f16(float f)
{
	uint32_t u = kk_f32_bits(f);
	uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
	uint32_t exp = (u >> 23) & 0xff, man = u & 0x7fffff;
	if (exp == 0xff)
		return (uint16_t)(sign | 0x7c00 | (man ? 0x200 | (man >> 13) : 0));
	int32_t e = (int32_t)exp - 127 + 15;
	if (e >= 0x1f)
		return sign | 0x7c00;
	if (e <= 0) {
		if (e < -10)
			return sign;
		man |= 0x800000;
		uint32_t shift = (uint32_t)(14 - e), half = 1u << (shift - 1);
		uint32_t rest = man & ((1u << shift) - 1), r = man >> shift;
		if (rest > half || (rest == half && (r & 1)))
			r++;
		return (uint16_t)(sign | r);
	}
	uint32_t r = ((uint32_t)e << 10) | (man >> 13), rest = man & 0x1fff;
	if (rest > 0x1000 || (rest == 0x1000 && (r & 1)))
		r++;
	return (uint16_t)(sign | r);
}

static inline float kk_bf16_to_f32(uint16_t h)
{
	return kk_bits_f32((uint32_t)h << 16);
}

static inline uint16_t kk_f32_to_bf16(float f)
{
	uint32_t u = kk_f32_bits(f);
	if ((u & 0x7f800000) == 0x7f800000 && (u & 0x7fffff))
		return (uint16_t)((u >> 16) | 0x40);
	u += 0x7fff + ((u >> 16) & 1);
	return (uint16_t)(u >> 16);
}

/* ---- element access by dtype (scalar paths) ----------------------------- */

static inline int64_t kk_dt_size(int dt)
{
	switch (dt) {
	case KK_DT_F64:
	case KK_DT_I64: return 8;
	case KK_DT_F32:
	case KK_DT_I32: return 4;
	case KK_DT_F16:
	case KK_DT_BF16: return 2;
	default: return 1;
	}
}

static inline int kk_dt_is_float(int dt)
{
	return dt == KK_DT_F32 || dt == KK_DT_F16 || dt == KK_DT_BF16 || dt == KK_DT_F64;
}

/* Truncation toward zero, saturating to int64; NaN is 0 (C leaves
 * out-of-range float -> int undefined). */
static inline int64_t kk_f64_to_i64(double v)
{
	if (v != v)
		return 0;
	if (v >= 9.2233720368547758e18)
		return INT64_MAX;
	if (v <= -9.2233720368547758e18)
		return INT64_MIN;
	return (int64_t)v;
}

/* Element i of p (dtype dt) as double or int64, like kiln_tensor_get_f64 /
 * _get_i64. Through memcpy: a graph input may sit at any alignment. */
static inline double kk_dt_get_f64(const void *p, int dt, int64_t i)
{
	const char *c = p;
	switch (dt) {
	case KK_DT_F32: { float v; __builtin_memcpy(&v, c + i * 4, 4); return v; }
	case KK_DT_F64: { double v; __builtin_memcpy(&v, c + i * 8, 8); return v; }
	case KK_DT_F16: { uint16_t v; __builtin_memcpy(&v, c + i * 2, 2); return kk_f16_to_f32(v); }
	case KK_DT_BF16: { uint16_t v; __builtin_memcpy(&v, c + i * 2, 2); return kk_bf16_to_f32(v); }
	case KK_DT_I64: { int64_t v; __builtin_memcpy(&v, c + i * 8, 8); return (double)v; }
	case KK_DT_I32: { int32_t v; __builtin_memcpy(&v, c + i * 4, 4); return v; }
	case KK_DT_I8: return (int8_t)c[i];
	default: return (uint8_t)c[i]; /* u8, bool */
	}
}

static inline int64_t kk_dt_get_i64(const void *p, int dt, int64_t i)
{
	const char *c = p;
	switch (dt) {
	case KK_DT_I64: { int64_t v; __builtin_memcpy(&v, c + i * 8, 8); return v; }
	case KK_DT_I32: { int32_t v; __builtin_memcpy(&v, c + i * 4, 4); return v; }
	case KK_DT_I8: return (int8_t)c[i];
	case KK_DT_U8:
	case KK_DT_BOOL: return (uint8_t)c[i];
	default: return kk_f64_to_i64(kk_dt_get_f64(p, dt, i));
	}
}

/* Stores v as element i of p, like kiln_tensor_set_f64 / _set_i64: floats
 * round (f16/bf16 through f32), integers wrap to their width (from double
 * through kk_f64_to_i64), bool stores v != 0. */
static inline void kk_dt_set_f64(void *p, int dt, int64_t i, double v);

static inline void kk_dt_set_i64(void *p, int dt, int64_t i, int64_t v)
{
	char *c = p;
	switch (dt) {
	case KK_DT_I64: __builtin_memcpy(c + i * 8, &v, 8); break;
	case KK_DT_I32: { int32_t w = (int32_t)(uint32_t)v; __builtin_memcpy(c + i * 4, &w, 4); break; }
	case KK_DT_I8:
	case KK_DT_U8: c[i] = (char)(uint8_t)v; break;
	case KK_DT_BOOL: c[i] = v != 0; break;
	default: kk_dt_set_f64(p, dt, i, (double)v); break;
	}
}

static inline void kk_dt_set_f64(void *p, int dt, int64_t i, double v)
{
	char *c = p;
	switch (dt) {
	case KK_DT_F32: { float f = (float)v; __builtin_memcpy(c + i * 4, &f, 4); break; }
	case KK_DT_F64: __builtin_memcpy(c + i * 8, &v, 8); break;
	case KK_DT_F16: { uint16_t h = kk_f32_to_f16((float)v); __builtin_memcpy(c + i * 2, &h, 2); break; }
	case KK_DT_BF16: { uint16_t h = kk_f32_to_bf16((float)v); __builtin_memcpy(c + i * 2, &h, 2); break; }
	case KK_DT_BOOL: c[i] = v != 0; break;
	default: kk_dt_set_i64(p, dt, i, kk_f64_to_i64(v)); break;
	}
}

#endif
