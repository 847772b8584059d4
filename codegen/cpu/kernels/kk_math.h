/* kk_math.h — vectorised transcendental functions for f32 kernels: exp,
 * log, tanh, erf, sigmoid and both forms of GELU, kk_vf in, kk_vf out.
 * Owned by the elementwise family; softmax, layer norm and others use it.
 *
 * The project's own approximations: range reduction plus polynomials, no
 * libm calls, no tables, branch-free (special cases are lane selects), so
 * they vectorise at any KK_VL. NaN in gives NaN out; overflow and underflow
 * saturate to inf / 0 as libm does. Measured accuracy (max ulp against
 * double-precision libm over dense sweeps of the whole f32 range) is in
 * docs/kernels/elementwise.md and asserted by tests/unit/test_kk_elementwise.c.
 *
 * The coefficients are weighted least-squares fits at 4000-8000 Chebyshev
 * nodes in float64 (near-minimax), made by this script (numpy):
 *
 *   def cheb(a, b, n=4000):
 *       k = np.arange(n); return (a+b)/2 + (b-a)/2*np.cos(np.pi*(k+0.5)/n)
 *   def fit(x, y, npow, w):  # sum c_i x^i ~ y, weights w
 *       A = np.stack([x**i for i in range(npow)], 1) * w[:, None]
 *       return np.linalg.lstsq(A, y*w, rcond=None)[0]
 *   # exp: e^r = 1 + r + r^2 P(r), |r| <= ln2/2
 *   r = cheb(-ln2/2, ln2/2); fit(r, (exp(r)-1-r)/r**2, 5, r**2/exp(r))
 *   # log: 2 atanh(s) = 2s + s R, R = z P(z), z = s^2, |s| <= 3-2*sqrt(2)
 *   s = cheb(1e-4, 3-2*sqrt(2)); z = s*s; fit(z, (2*atanh(s)/s-2)/z, 4, z)
 *   # tanh: x + x^3 P(x^2), |x| <= 0.625
 *   x = cheb(1e-4, 0.625); fit(x*x, (tanh(x)-x)/x**3, 7, x**3/tanh(x))
 *   # erf: x P(x^2), |x| <= 0.875
 *   x = cheb(1e-4, 0.875); fit(x*x, erf(x)/x, 8, 1)
 *   # erfc tail: log(erfc(t)) + t^2 = R(u), u = t mapped onto [-1, 1],
 *   # on [0.875, 4] (degree 10) and [4, 10] (degree 8)
 *   t = cheb(a, b, 8000); u = (2*t-(a+b))/(b-a); fit(u, log(erfc(t))+t*t, 11 or 9, 1)
 */
#ifndef KK_MATH_H
#define KK_MATH_H

#include "kk.h"

static inline kk_vf kk_math_abs(kk_vf x)
{
	return (kk_vf)((kk_vi)x & 0x7fffffff);
}

/* |r| with the sign bit of s. */
static inline kk_vf kk_math_copysign(kk_vf r, kk_vf s)
{
	return (kk_vf)(((kk_vi)r & 0x7fffffff) | ((kk_vi)s ^ (kk_vi)kk_math_abs(s)));
}

/* e^(x + lo), lo a few units at most (a low part or a correction the
 * caller keeps apart from x): n = round((x + lo) / ln2), r = x - n ln2 + lo
 * with x - n ln2_hi exact for |x| beyond a few units; e^r (|r| <= ln2/2) by
 * polynomial; times 2^n built in the exponent bits, as two factors so
 * subnormal results round once and n up to 128 still reaches inf. */
static inline kk_vf kk_math_exp_hl(kk_vf x, kk_vf lo)
{
	const kk_vf round_magic = kk_splat(12582912.0f); /* 1.5 * 2^23 */
	kk_vf sum = x + lo;
	kk_vf sc = kk_vmin(kk_vmax(sum, kk_splat(-104.0f)), kk_splat(89.0f));
	kk_vf n = (sc * 1.44269504f + round_magic) - round_magic;
	kk_vf r = x - n * 0.693145751953125f; /* ln2 high part: n * it is exact */
	r = r + lo - n * 1.42860682e-6f;      /* ln2 low part */
	kk_vf p = kk_splat(1.375140790e-03f);
	p = p * r + 8.368916341e-03f;
	p = p * r + 4.166953311e-02f;
	p = p * r + 1.666651846e-01f;
	p = p * r + 4.999998860e-01f;
	p = 1.0f + r + r * r * p;
	kk_vi ni = __builtin_convertvector(n, kk_vi);
	kk_vi n1 = ni >> 1, n2 = ni - n1;
	kk_vf s1 = (kk_vf)((n1 + 127) << 23), s2 = (kk_vf)((n2 + 127) << 23);
	kk_vf e = kk_select(sum < -104.0f, kk_splat(0.0f), p * s1 * s2);
	return kk_select(sum != sum, sum, e);
}

/* e^x */
static inline kk_vf kk_exp(kk_vf x)
{
	return kk_math_exp_hl(x, kk_splat(0.0f));
}

/* x^2 = hi + *lo, hi exact: x cut to 12 significant bits squares exactly. */
static inline kk_vf kk_math_square_hl(kk_vf x, kk_vf *lo)
{
	kk_vf xh = (kk_vf)((kk_vi)x & ~0xfff);
	*lo = (x - xh) * (xh + x);
	return xh * xh;
}

/* log(x): x = 2^k m, m in [sqrt(1/2), sqrt(2)), f = m - 1, s = f / (2 + f);
 * log(m) = f - f^2/2 + s (f^2/2 + R(s^2)) (R from 2 atanh(s) = log(m)). */
static inline kk_vf kk_log(kk_vf x)
{
	kk_vi sub = x < 1.17549435e-38f; /* subnormal (or <= 0): scale by 2^23 */
	kk_vf xs = kk_select(sub, x * 8388608.0f, x);
	kk_vu ix = (kk_vu)xs + (0x3f800000 - 0x3f3504f3);
	kk_vi k = (kk_vi)(ix >> 23) - 127 - (sub & 23);
	kk_vf m = (kk_vf)((ix & 0x007fffff) + 0x3f3504f3);
	kk_vf f = m - 1.0f;
	kk_vf s = f / (f + 2.0f);
	kk_vf z = s * s;
	kk_vf p = kk_splat(2.356858622e-01f);
	p = p * z + 2.853810142e-01f;
	p = p * z + 4.000032099e-01f;
	p = p * z + 6.666666572e-01f;
	kk_vf hfsq = 0.5f * f * f;
	kk_vf kf = __builtin_convertvector(k, kk_vf);
	kk_vf r = s * (hfsq + z * p) + kf * 1.42860682e-6f - hfsq + f + kf * 0.693145751953125f;
	r = kk_select(x == KK_INFINITY, x, r);
	r = kk_select(x == 0.0f, kk_splat(-KK_INFINITY), r);
	return kk_select(x < 0.0f, kk_splat(KK_NAN), kk_select(x != x, x, r));
}

/* tanh: odd polynomial below 0.625 (no cancellation near 0), else
 * 1 - 2 / (e^2|x| + 1) (saturated at |x| = 9.1, where tanh rounds to 1). */
static inline kk_vf kk_tanh(kk_vf x)
{
	kk_vf ax = kk_math_abs(x);
	kk_vf z = ax * ax;
	kk_vf p = kk_splat(-8.076940913e-04f);
	p = p * z + 3.235116981e-03f;
	p = p * z + -8.755016469e-03f;
	p = p * z + 2.185104267e-02f;
	p = p * z + -5.396655758e-02f;
	p = p * z + 1.333332593e-01f;
	p = p * z + -3.333333323e-01f;
	kk_vf small = ax + ax * z * p;
	kk_vf e = kk_exp(2.0f * kk_vmin(ax, kk_splat(9.1f)));
	kk_vf big = 1.0f - 2.0f / (e + 1.0f);
	kk_vf r = kk_math_copysign(kk_select(ax < 0.625f, small, big), x);
	return kk_select(x != x, x, r);
}

/* erf(|x|) for |x| <= 0.875: x P(x^2). */
static inline kk_vf kk_math_erf_small(kk_vf ax)
{
	kk_vf z = ax * ax;
	kk_vf p = kk_splat(-1.074050967e-05f);
	p = p * z + 1.157326303e-04f;
	p = p * z + -8.518664729e-04f;
	p = p * z + 5.222961510e-03f;
	p = p * z + -2.686598283e-02f;
	p = p * z + 1.128379000e-01f;
	p = p * z + -3.761263885e-01f;
	p = p * z + 1.128379167e+00f;
	return ax * p;
}

/* erfc(t) for t >= 0.875: exp(-t^2 + R(t)), R fitted on [0.875, 4] and
 * [4, 10]; beyond 10 erfc is below every f32 (the -t^2 term takes it to 0).
 * t^2 comes in as sq + sq_lo so the large argument of exp loses nothing. */
static inline kk_vf kk_math_erfc_tail(kk_vf t, kk_vf sq, kk_vf sq_lo)
{
	kk_vf u1 = kk_vmin(t, kk_splat(4.0f)) * (2.0f / 3.125f) - (4.875f / 3.125f);
	kk_vf p = kk_splat(-5.070755559e-06f);
	p = p * u1 + -1.199067049e-06f;
	p = p * u1 + 6.971329580e-05f;
	p = p * u1 + -3.181062584e-04f;
	p = p * u1 + 1.202972375e-03f;
	p = p * u1 + -4.195839516e-03f;
	p = p * u1 + 1.371934608e-02f;
	p = p * u1 + -4.355022656e-02f;
	p = p * u1 + 1.420750410e-01f;
	p = p * u1 + -5.622240694e-01f;
	p = p * u1 + -1.534550876e+00f;
	kk_vf u2 = kk_vmin(t, kk_splat(10.0f)) * (2.0f / 6.0f) - (14.0f / 6.0f);
	kk_vf q = kk_splat(9.463984127e-05f);
	q = q * u2 + -2.863544929e-04f;
	q = q * u2 + 6.757566928e-04f;
	q = q * u2 + -2.129596109e-03f;
	q = q * u2 + 6.980745734e-03f;
	q = q * u2 + -2.339977984e-02f;
	q = q * u2 + 8.664624369e-02f;
	q = q * u2 + -4.202395015e-01f;
	q = q * u2 + -2.528231075e+00f;
	return kk_math_exp_hl(-sq, kk_select(t < 4.0f, p, q) - sq_lo);
}

/* erf: the odd polynomial below 0.875, 1 - erfc above. */
static inline kk_vf kk_erf(kk_vf x)
{
	kk_vf ax = kk_math_abs(x);
	kk_vf t = kk_vmin(ax, kk_splat(4.0f)), sq_lo;
	kk_vf sq = kk_math_square_hl(t, &sq_lo);
	kk_vf big = 1.0f - kk_math_erfc_tail(t, sq, sq_lo);
	kk_vf r = kk_math_copysign(kk_select(ax < 0.875f, kk_math_erf_small(ax), big), x);
	return kk_select(x != x, x, r);
}

/* 1 / (1 + e^-x), as e^x / (1 + e^x) for x < 0 so the tail stays accurate
 * down to the subnormals. */
static inline kk_vf kk_sigmoid(kk_vf x)
{
	kk_vf e = kk_exp(-kk_math_abs(x));
	kk_vf d = 1.0f / (1.0f + e);
	return kk_select(x < 0.0f, e * d, d);
}

/* GELU, erf form: x Phi(x), Phi(x) = erfc(-x / sqrt 2) / 2, with erfc from
 * the tail for x < 0 (no cancellation in 1 + erf); t^2 = x^2 / 2 split
 * from x itself, which is exact where t is not. */
static inline kk_vf kk_gelu(kk_vf x)
{
	kk_vf ax = kk_vmin(kk_math_abs(x), kk_splat(16.0f)), sq_lo; /* erfc(16 / sqrt 2) = 0 */
	kk_vf t = ax * 0.707106781f;
	kk_vf sq = 0.5f * kk_math_square_hl(ax, &sq_lo);
	kk_vf tail = kk_math_erfc_tail(t, sq, 0.5f * sq_lo);
	kk_vf erfc = kk_select(t < 0.875f, 1.0f - kk_math_erf_small(t), tail);
	kk_vf phi = kk_select(x < 0.0f, 0.5f * erfc, 1.0f - 0.5f * erfc);
	return x * phi;
}

/* GELU, tanh form: x (1 + tanh(u)) / 2 = x sigmoid(2u),
 * u = sqrt(2/pi) (x + 0.044715 x^3). */
static inline kk_vf kk_gelu_tanh(kk_vf x)
{
	kk_vf u = 0.7978845608f * (x + 0.044715f * x * x * x);
	return x * kk_sigmoid(2.0f * u);
}

#endif
