// What the packed-operand GEMM kernels (sgemm_packed.c, bf16_gemm.c) share: the store of one
// finished row of a C block (+ bias, or C +=, then GELU) and a panel's bias (column masks: vmath.h).
#ifndef UNIFORMER_GEMM_STORE_H
#define UNIFORMER_GEMM_STORE_H

#include <immintrin.h>
#include <stddef.h>
#include "ckernels.h"
#include "vmath.h"

/// row[0:32] (under the masks) = v0|v1 + bias0|bias1 (+ the row's old values, then GELU, by `flags`:
/// UF_GEMM_ACCUMULATE, UF_GEMM_GELU in ckernels.h).
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
