// exp and exact-form GELU on 16 floats at once (AVX-512), for the kernels' inner loops and GEMM
// stores, and the mask of a vector's first n lanes for short tails. The same formulas as kernels.c's scalar exp_approx / erf_approx, arranged for SIMD:
// - exp(x) = 2^n · e^r, x = n·ln2 + r, e^r by its degree-6 Taylor polynomial; 2^n applied with
//   vscalefps, which saturates to 0 / ∞ itself (no clamp, no integer exponent arithmetic).
// - erf(|z|) = 1 − P(t)·e^{−z²}, t = 1/(1 + p·|z|) (Abramowitz & Stegun 7.1.26, ≤ 1.5e-7 absolute,
//   as PyTorch's vectorised erf); 1/(1 + p·|z|) by vrcp14ps and one Newton step (relative error
//   ~1e-8) instead of a division, whose 16-lane throughput is several times an FMA's on these cores.
// - gelu(x) = ½·x·(1 + erf(x/√2)) = ½·x·q with q = P·e for x < 0 and 2 − P·e otherwise: the
//   negative side never forms 1 − (1 − P·e), so it loses no bits to cancellation.
#ifndef UNIFORMER_VMATH_H
#define UNIFORMER_VMATH_H

#include <immintrin.h>
#include <stddef.h>

/// Lanes [0, n) of a 16-lane vector (n ≥ 16: all; n ≤ 0: none).
static inline __mmask16 first_lanes(ptrdiff_t n) {
    return n >= 16 ? (__mmask16)0xffff : (__mmask16)(n > 0 ? (1u << n) - 1 : 0);
}

__attribute__((target("avx512f"), always_inline))
static inline __m512 vexp_ps(__m512 x) {
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606765330187e-06f), r);
    __m512 p = _mm512_set1_ps(1.0f / 720);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

__attribute__((target("avx512f"), always_inline))
static inline __m512 vgelu_ps(__m512 x) {
    // |z| = |x|/√2, capped at 13: erf(13) is 1 in float and e^{−169} underflows to 0, so gelu(x) is x
    // or −0 out there, even for |x| near FLT_MAX; the cap keeps 1/(1 + p·|z|) finite for ±∞ (a NaN
    // x becomes 13 here, and NaN again in the last product)
    __m512 a = _mm512_min_ps(_mm512_abs_ps(_mm512_mul_ps(x, _mm512_set1_ps(0.70710678118654752f))), _mm512_set1_ps(13.0f));
    __m512 d = _mm512_fmadd_ps(a, _mm512_set1_ps(0.3275911f), _mm512_set1_ps(1.0f));
    __m512 t = _mm512_rcp14_ps(d);
    t = _mm512_mul_ps(t, _mm512_fnmadd_ps(d, t, _mm512_set1_ps(2.0f)));   // Newton: t(2 − d·t)
    __m512 p = _mm512_set1_ps(1.061405429f);
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-1.453152027f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(1.421413741f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-0.284496736f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.254829592f));
    p = _mm512_mul_ps(p, t);
    __m512 pe = _mm512_mul_ps(p, vexp_ps(_mm512_mul_ps(_mm512_sub_ps(_mm512_setzero_ps(), a), a)));   // 1 − erf(|z|)
    __mmask16 neg = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ);
    __m512 q = _mm512_mask_blend_ps(neg, _mm512_sub_ps(_mm512_set1_ps(2.0f), pe), pe);
    return _mm512_mul_ps(_mm512_mul_ps(x, _mm512_set1_ps(0.5f)), q);
}

#endif
