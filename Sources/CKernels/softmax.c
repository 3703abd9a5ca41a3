// Row softmax without the normalising pass, AVX-512: the attention kernels' step between Q·Kᵀ and
// P·V (the packed-operand paths, which run only on AVX-512 CPUs). Its naive twin and the portable
// version is kernels.c's uf_softmax_rows_unnormalized (same formula, compiler-vectorised).
//
// Why it is faster. Two passes over a row (max, then exp(x − max) stored and summed), 32 lanes per
// step in two independent chains, the last < 16 columns under a mask — the compiler-vectorised
// loop ran rows of 196 or 49 keys (224² classifier) partly in scalar remainder code — and exp by
// vmath.h's vexp_ps (vscalefps for 2^n: no clamps, no integer exponent arithmetic).

#include "ckernels.h"
#include "vmath.h"
#include <math.h>

__attribute__((target("avx512f,avx512dq")))
void uf_softmax_rows_unnormalized_fast(float *p, ptrdiff_t rows, ptrdiff_t cols, float *inv) {
    for (ptrdiff_t r = 0; r < rows; r++) {
        float *row = p + r * cols;
        __m512 m0 = _mm512_set1_ps(-INFINITY), m1 = m0;
        ptrdiff_t j = 0;
        for (; j + 32 <= cols; j += 32) {
            m0 = _mm512_max_ps(m0, _mm512_loadu_ps(row + j));
            m1 = _mm512_max_ps(m1, _mm512_loadu_ps(row + j + 16));
        }
        for (; j < cols; j += 16) {
            __mmask16 k = first_lanes(cols - j);
            m0 = _mm512_mask_max_ps(m0, k, m0, _mm512_maskz_loadu_ps(k, row + j));
        }
        __m512 m = _mm512_set1_ps(_mm512_reduce_max_ps(_mm512_max_ps(m0, m1)));
        __m512 s0 = _mm512_setzero_ps(), s1 = s0;
        for (j = 0; j + 32 <= cols; j += 32) {
            __m512 e0 = vexp_ps(_mm512_sub_ps(_mm512_loadu_ps(row + j), m));
            __m512 e1 = vexp_ps(_mm512_sub_ps(_mm512_loadu_ps(row + j + 16), m));
            _mm512_storeu_ps(row + j, e0);
            _mm512_storeu_ps(row + j + 16, e1);
            s0 = _mm512_add_ps(s0, e0);
            s1 = _mm512_add_ps(s1, e1);
        }
        for (; j < cols; j += 16) {
            __mmask16 k = first_lanes(cols - j);
            __m512 e = _mm512_maskz_mov_ps(k, vexp_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, row + j), m)));
            _mm512_mask_storeu_ps(row + j, k, e);
            s0 = _mm512_add_ps(s0, e);
        }
        inv[r] = 1.0f / _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
    }
}
