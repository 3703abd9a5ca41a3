// Depthwise k×k convolution (stride 1, zero padding k/2) on channels-last [H, W, C], AVX-512, for
// k = 3, 5, 7. Its naive twin and the fallback for other k / CPUs is kernels.c's uf_depthwise_rows.
//
// Why it is fast. The generic kernel computes one output pixel at a time, so every tap costs two
// vector loads (input and weight) per FMA: load-bound at ~half the FMA rate. Here one 16-channel
// slice of NX = 8 adjacent output pixels of a row is accumulated in 8 zmm registers: for each
// kernel row, its k weight vectors are loaded once and each of the 8 + k − 1 input pixels under the
// block once, then every input vector feeds the (up to k) outputs it touches — for k = 5, 12 + 5
// loads per 40 FMAs instead of 80. Input pixels outside the image are skipped (zero padding).

#include "ckernels.h"
#include "vmath.h"

#define NX 8

// y[yy, xx0 + p, c0:c0+16] for p < nx (nx = NX, or 1 for a row's last w % NX pixels), channels
// under mask m. Always inlined with constant K and nx, so the tap loops unroll and the test of which
// output an input column feeds is resolved at compile time.
__attribute__((target("avx512f"), always_inline))
static inline void dw_block(const int K, const int nx, const float *x, ptrdiff_t h, ptrdiff_t w, ptrdiff_t c,
                            const float *wt, const float *bias, int residual, float *y, ptrdiff_t yy,
                            ptrdiff_t xx0, ptrdiff_t c0, __mmask16 m) {
    const int pad = K / 2;
    __m512 acc[NX];
    __m512 b = _mm512_maskz_loadu_ps(m, bias + c0);
#pragma clang loop unroll(full)
    for (int p = 0; p < nx; p++)
        acc[p] = residual ? _mm512_add_ps(b, _mm512_maskz_loadu_ps(m, x + (yy * w + xx0 + p) * c + c0)) : b;
    for (int ky = 0; ky < K; ky++) {
        ptrdiff_t iy = yy + ky - pad;
        if (iy < 0 || iy >= h) continue;
        __m512 wk[K];
#pragma clang loop unroll(full)
        for (int kx = 0; kx < K; kx++) wk[kx] = _mm512_maskz_loadu_ps(m, wt + (ky * K + kx) * c + c0);
        const float *row = x + iy * w * c + c0;
#pragma clang loop unroll(full)
        for (int j = 0; j < nx + K - 1; j++) {          // input column xx0 − pad + j
            ptrdiff_t ix = xx0 - pad + j;
            if (ix < 0 || ix >= w) continue;
            __m512 v = _mm512_maskz_loadu_ps(m, row + ix * c);
#pragma clang loop unroll(full)
            for (int p = 0; p < nx; p++) {
                int kx = j - p;                           // output p sees this column through tap kx
                if (kx >= 0 && kx < K) acc[p] = _mm512_fmadd_ps(wk[kx], v, acc[p]);
            }
        }
    }
#pragma clang loop unroll(full)
    for (int p = 0; p < nx; p++) _mm512_mask_storeu_ps(y + (yy * w + xx0 + p) * c + c0, m, acc[p]);
}

__attribute__((target("avx512f"), always_inline))
static inline void dw_rows(const int K, const float *x, ptrdiff_t h, ptrdiff_t w, ptrdiff_t c, const float *wt,
                           const float *bias, int residual, float *y, ptrdiff_t y0, ptrdiff_t y1) {
    for (ptrdiff_t yy = y0; yy < y1; yy++) {
        ptrdiff_t xx = 0;
        for (; xx + NX <= w; xx += NX)
            for (ptrdiff_t c0 = 0; c0 < c; c0 += 16)
                dw_block(K, NX, x, h, w, c, wt, bias, residual, y, yy, xx, c0, first_lanes(c - c0));
        for (; xx < w; xx++)
            for (ptrdiff_t c0 = 0; c0 < c; c0 += 16)
                dw_block(K, 1, x, h, w, c, wt, bias, residual, y, yy, xx, c0, first_lanes(c - c0));
    }
}

int uf_depthwise_fast_supported(int k) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && (k == 3 || k == 5 || k == 7);
}

__attribute__((target("avx512f")))
void uf_depthwise_rows_fast(const float *x, ptrdiff_t h, ptrdiff_t w, ptrdiff_t c, int k, const float *wt,
                            const float *bias, int residual, float *y, ptrdiff_t y0, ptrdiff_t y1) {
    switch (k) {
    case 3: dw_rows(3, x, h, w, c, wt, bias, residual, y, y0, y1); break;
    case 5: dw_rows(5, x, h, w, c, wt, bias, residual, y, y0, y1); break;
    case 7: dw_rows(7, x, h, w, c, wt, bias, residual, y, y0, y1); break;
    default: uf_depthwise_rows(x, h, w, c, k, wt, bias, residual, y, y0, y1);
    }
}
