// See include/ckernels.h. The approximations:
// - exp: x = n·ln2 + r with |r| ≤ ln2/2 (ln2 split into an exactly representable high part and a
//   low part), e^r by its degree-6 Taylor polynomial (relative error < 2e-7 there), 2^n built in
//   the exponent bits. x is clamped to [-87.3, 88.7] so 2^n stays a normal float.
// - erf: Abramowitz & Stegun 7.1.26, 1 − (a1·t + … + a5·t⁵)·e^{−x²}, t = 1/(1 + p·|x|),
//   absolute error ≤ 1.5e-7 — the formula PyTorch's vectorised CPU erf uses.
// Each is straight-line code on one float so loops over arrays vectorise.

#include "ckernels.h"
#include <math.h>
#include <stdint.h>
#include <string.h>

#define CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))

static inline float exp_approx(float x) {
    x = x < -87.3f ? -87.3f : (x > 88.7f ? 88.7f : x);
    float n = rintf(x * 1.44269504088896341f);
    float r = x - n * 0.693145751953125f;
    r = r - n * 1.428606765330187e-06f;
    float p = 1.0f / 720;
    p = p * r + 1.0f / 120;
    p = p * r + 1.0f / 24;
    p = p * r + 1.0f / 6;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

static inline float erf_approx(float x) {
    float a = fabsf(x);
    float t = 1.0f / (1.0f + 0.3275911f * a);
    float p = 1.061405429f;
    p = p * t - 1.453152027f;
    p = p * t + 1.421413741f;
    p = p * t - 0.284496736f;
    p = p * t + 0.254829592f;
    p = p * t;
    float y = 1.0f - p * exp_approx(-a * a);
    return x < 0 ? -y : y;
}

float uf_exp(float x) { return exp_approx(x); }
float uf_erf(float x) { return erf_approx(x); }

// Row r ← exp(row − max(row)); returns Σ exp. Reassociation lets the max and the sum reduce in 16
// lanes (summation order then differs from a serial loop by float rounding only).
static inline float exp_shifted_row(float *row, ptrdiff_t cols) {
#pragma clang fp reassociate(on)
    float m = -INFINITY;
    for (ptrdiff_t j = 0; j < cols; j++) m = fmaxf(m, row[j]);  // maxnum: vectorises (a NaN score is skipped, not propagated)
    float sum = 0;
    for (ptrdiff_t j = 0; j < cols; j++) {
        float e = exp_approx(row[j] - m);
        row[j] = e;
        sum += e;
    }
    return sum;
}

CLONES
void uf_softmax_rows(float *p, ptrdiff_t rows, ptrdiff_t cols) {
    for (ptrdiff_t r = 0; r < rows; r++) {
        float *row = p + r * cols;
        float inv = 1.0f / exp_shifted_row(row, cols);
        for (ptrdiff_t j = 0; j < cols; j++) row[j] *= inv;
    }
}

CLONES
void uf_softmax_rows_unnormalized(float *p, ptrdiff_t rows, ptrdiff_t cols, float *inv) {
    for (ptrdiff_t r = 0; r < rows; r++) inv[r] = 1.0f / exp_shifted_row(p + r * cols, cols);
}

CLONES
void uf_scale_rows(float *p, ptrdiff_t rows, ptrdiff_t cols, ptrdiff_t ld, const float *s) {
    for (ptrdiff_t r = 0; r < rows; r++)
        for (ptrdiff_t j = 0; j < cols; j++) p[r * ld + j] *= s[r];
}

CLONES
void uf_layernorm_rows(const float *x, float *y, ptrdiff_t rows, ptrdiff_t c, const float *w, const float *b, float eps) {
    // Two passes over each row (mean, then the centred variance), as PyTorch's CPU kernel. With
    // reassociation the sums reduce in 16 lanes; as serial Swift loops they were latency-bound
    // (one dependent add per element: 1.7 ns per float, 17 ms of a 512² UniFormer-S pass).
#pragma clang fp reassociate(on)
    for (ptrdiff_t r = 0; r < rows; r++) {
        const float *xr = x + r * c;
        float *yr = y + r * c;
        float sum = 0;
        for (ptrdiff_t j = 0; j < c; j++) sum += xr[j];
        float mean = sum / (float)c;
        float sq = 0;
        for (ptrdiff_t j = 0; j < c; j++) {
            float d = xr[j] - mean;
            sq += d * d;
        }
        float inv = 1.0f / sqrtf(sq / (float)c + eps);
        for (ptrdiff_t j = 0; j < c; j++) yr[j] = (xr[j] - mean) * inv * w[j] + b[j];
    }
}

CLONES
void uf_relu(float *p, ptrdiff_t n) {
    // a select, not a branch, so it vectorises (NaN stays NaN, as x < 0 is false)
    for (ptrdiff_t i = 0; i < n; i++) p[i] = p[i] < 0.0f ? 0.0f : p[i];
}

CLONES
void uf_bias_gelu_rows(float *p, ptrdiff_t rows, ptrdiff_t cols, const float *bias) {
    // Two loops, not `row[j] + (bias ? bias[j] : 0)`: clang keeps that conditional load scalar,
    // which made the bias-free call (bias already added by the GEMM's store) 4× slower.
    for (ptrdiff_t r = 0; r < rows; r++) {
        float *row = p + r * cols;
        if (bias) {
            for (ptrdiff_t j = 0; j < cols; j++) {
                float x = row[j] + bias[j];
                row[j] = 0.5f * x * (1.0f + erf_approx(x * 0.70710678118654752f));
            }
        } else {
            for (ptrdiff_t j = 0; j < cols; j++) {
                float x = row[j];
                row[j] = 0.5f * x * (1.0f + erf_approx(x * 0.70710678118654752f));
            }
        }
    }
}

// One output pixel's channels [c0, c0 + n) of a depthwise k×k convolution: the accumulators stay in
// registers across all taps (n is a compile-time 64 on the main path: 4 zmm), and each tap adds
// weight · input over contiguous channels; taps outside the image are skipped (zero padding).
static inline void dw_pixel(const float *x, ptrdiff_t h, ptrdiff_t w, ptrdiff_t c, int k, const float *wt,
                            const float *bias, int residual, float *o, ptrdiff_t yy, ptrdiff_t xx,
                            ptrdiff_t c0, ptrdiff_t n) {
    int pad = k / 2;
    float acc[64];
    const float *self = x + (yy * w + xx) * c + c0;
    for (ptrdiff_t j = 0; j < n; j++) acc[j] = bias[c0 + j] + (residual ? self[j] : 0.0f);
    for (int ky = 0; ky < k; ky++) {
        ptrdiff_t iy = yy + ky - pad;
        if (iy < 0 || iy >= h) continue;
        for (int kx = 0; kx < k; kx++) {
            ptrdiff_t ix = xx + kx - pad;
            if (ix < 0 || ix >= w) continue;
            const float *s = x + (iy * w + ix) * c + c0;
            const float *wk = wt + (ky * k + kx) * c + c0;
            for (ptrdiff_t j = 0; j < n; j++) acc[j] += wk[j] * s[j];
        }
    }
    for (ptrdiff_t j = 0; j < n; j++) o[c0 + j] = acc[j];
}

CLONES
void uf_depthwise_rows(const float *x, ptrdiff_t h, ptrdiff_t w, ptrdiff_t c, int k, const float *wt,
                       const float *bias, int residual, float *y, ptrdiff_t y0, ptrdiff_t y1) {
    for (ptrdiff_t yy = y0; yy < y1; yy++) {
        for (ptrdiff_t xx = 0; xx < w; xx++) {
            float *o = y + (yy * w + xx) * c;
            ptrdiff_t c0 = 0;
            for (; c0 + 64 <= c; c0 += 64) dw_pixel(x, h, w, c, k, wt, bias, residual, o, yy, xx, c0, 64);
            for (; c0 < c; c0 += 16) {
                ptrdiff_t n = c - c0 < 16 ? c - c0 : 16;
                dw_pixel(x, h, w, c, k, wt, bias, residual, o, yy, xx, c0, n);
            }
        }
    }
}

// Tiles of 16 × 16: each tile's 16 source rows and 16 destination rows are 64-byte runs, so both
// sides touch whole cache lines instead of one float per line on the strided side.
void uf_transpose_rows(const float *src, ptrdiff_t rows, ptrdiff_t cols, float *dst, ptrdiff_t r0, ptrdiff_t r1) {
    enum { T = 16 };
    for (ptrdiff_t i0 = r0; i0 < r1; i0 += T) {
        ptrdiff_t i1 = i0 + T < r1 ? i0 + T : r1;
        for (ptrdiff_t j0 = 0; j0 < cols; j0 += T) {
            ptrdiff_t j1 = j0 + T < cols ? j0 + T : cols;
            for (ptrdiff_t j = j0; j < j1; j++)
                for (ptrdiff_t i = i0; i < i1; i++) dst[j * rows + i] = src[i * cols + j];
        }
    }
}

#if defined(__x86_64__)
#include <xmmintrin.h>
#endif
unsigned uf_flush_subnormals(void) {
#if defined(__x86_64__)
    unsigned mode = _mm_getcsr();
    _mm_setcsr(mode | 0x8040);   // FTZ (bit 15): subnormal results → 0; DAZ (bit 6): subnormal inputs read as 0
    return mode;
#else
    return 0;
#endif
}

void uf_restore_fp_mode(unsigned mode) {
#if defined(__x86_64__)
    _mm_setcsr(mode);
#else
    (void)mode;
#endif
}

// glibc's defaults return freed blocks above a few MB to the kernel (munmap, or a trimmed heap top),
// so every forward pass faulted its activations in again: ~6900 page faults (28 MB zeroed by the
// kernel) per pass of a UniFormer-S backbone at 512², measured with `perf stat -e page-faults`.
// A 32 MB mmap threshold (glibc's ceiling) and no trimming keep them in the heap for reuse: ~12.
#include <malloc.h>
void uf_retain_freed_memory(void) {
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
}

// Blocks above 32 MB (a 1344×800 detector's finest FPN level: 69 MB per tensor) are still mapped
// and unmapped on every allocation: ~112 K page faults (440 MB zeroed) per Mask R-CNN pass. With no
// mmap at all they come from the heap too: ~300 faults per pass.
void uf_heap_only_allocation(void) {
    uf_retain_freed_memory();
    mallopt(M_MMAP_MAX, 0);
}
