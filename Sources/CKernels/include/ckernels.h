// Element-wise kernels that must vectorise: exp for softmax, erf for exact GELU.
// Plain C loops with fixed polynomial math, compiled with target_clones (AVX-512, AVX2, baseline)
// so the compiler emits 16-lane code on these machines and still runs anywhere.
#ifndef UNIFORMER_CKERNELS_H
#define UNIFORMER_CKERNELS_H

#include <stddef.h>

/// Softmax of each row of a row-major [rows, cols] block, in place (max-subtracted, exact form).
void uf_softmax_rows(float *p, ptrdiff_t rows, ptrdiff_t cols);

/// p[r, j] = gelu(p[r, j] + bias[j]) for a row-major [rows, cols] block; bias may be NULL.
/// GELU is the exact form ½x(1 + erf(x/√2)) with erf to 1.5e-7 absolute.
void uf_bias_gelu_rows(float *p, ptrdiff_t rows, ptrdiff_t cols, const float *bias);

/// Scalar forms of the same approximations, for tests.
float uf_exp(float x);
float uf_erf(float x);

#endif
