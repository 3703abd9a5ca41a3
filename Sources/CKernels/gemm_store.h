// What the packed-operand GEMM kernels (sgemm_packed.c, bf16_gemm.c) share: the column masks of a
// 32-column panel and the store of one finished row of a C block (+ bias, or C +=).
#ifndef UNIFORMER_GEMM_STORE_H
#define UNIFORMER_GEMM_STORE_H

#include <immintrin.h>
#include <stddef.h>
#include "vmath.h"

/// Lanes [0, cols) of a 16-lane vector (cols ≥ 16: all).
static inline __mmask16 gemm_mask(ptrdiff_t cols) {
    return cols >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (cols > 0 ? cols : 0)) - 1);
}

/// What a store does with a finished row, as `flags` bits: C += (UF_GEMM_ACCUMULATE: the row's old
/// values are added), then exact GELU (UF_GEMM_GELU: an MLP's first layer, applied on the
/// registers instead of a second pass over C).
#define UF_GEMM_ACCUMULATE 1
#define UF_GEMM_GELU 2

/// row[0:32] (under the masks) = v0|v1 + bias0|bias1 (+ the row's old values, then GELU, by `flags`).
__attribute__((target("avx512f"), always_inline))
static inline void gemm_store_row(float *row, __m512 v0, __m512 v1, __m512 bias0, __m512 bias1,
                                  __mmask16 m0, __mmask16 m1, int flags) {
    v0 = _mm512_add_ps(v0, bias0);
    v1 = _mm512_add_ps(v1, bias1);
    if (flags & UF_GEMM_ACCUMULATE) {
        v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, row));
        v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, row + 16));
    }
    if (flags & UF_GEMM_GELU) {
        v0 = vgelu_ps(v0);
        v1 = vgelu_ps(v1);
    }
    _mm512_mask_storeu_ps(row, m0, v0);
    _mm512_mask_storeu_ps(row + 16, m1, v1);
}

/// A panel's bias (zeros when there is none), under the masks.
__attribute__((target("avx512f")))
static inline void gemm_load_bias(const float *bias, __mmask16 m0, __mmask16 m1, __m512 *bias0, __m512 *bias1) {
    *bias0 = bias ? _mm512_maskz_loadu_ps(m0, bias) : _mm512_setzero_ps();
    *bias1 = bias ? _mm512_maskz_loadu_ps(m1, bias + 16) : _mm512_setzero_ps();
}

#endif
