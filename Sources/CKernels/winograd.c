// Winograd F(m×m, 3×3) transforms on channels-last data (see include/ckernels.h and
// Sources/TensorCore/Winograd.swift, which builds the matrices from interpolation points).
//
// Every element of a tile is a run of channels, so each transform is a small matrix product whose
// "scalars" are channel vectors: the kernels work on 16 channels at a time in one vector
// (clang/GCC vector extension; the x86-64-v4 clone keeps it in a zmm register, the others split it)
// with the tile size α a compile-time constant (4 … 8), so the α×α coefficient loops unroll.
// A channel tail shorter than 16 goes through the same code with partial loads and stores.
// The tile loops are always_inline: as plain static inline functions called from three clones,
// clang emitted one out-of-line baseline (SSE) copy that every clone called — no zmm at all.

#include "ckernels.h"
#include <string.h>

#define CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))

typedef float v16 __attribute__((vector_size(64)));

__attribute__((always_inline)) static inline v16 load_n(const float *p, int n) {
    v16 r;
    if (n == 16) { memcpy(&r, p, sizeof r); return r; }
    r = (v16){0};
    memcpy(&r, p, (size_t)n * sizeof(float));
    return r;
}

__attribute__((always_inline)) static inline void store_n(float *p, v16 v, int n) {
    if (n == 16) { memcpy(p, &v, sizeof v); return; }
    memcpy(p, &v, (size_t)n * sizeof(float));
}

// F(4×4, 3×3) on points 0, ±p, ±q, ∞ (the default and Lavin's): Bᵀ's rows 1/2 and 3/4 differ only
// in the sign of their odd columns, and the points 0 and ∞ zero half of rows 0 and 5. So one 1-D
// transform r = Bᵀ d is 18 operations instead of 36 (even part ± odd part), and the α×α input
// transform (applied along columns, then rows) halves; the caller checks the pattern
// (WinogradTransform.symmetric6) and passes the same Bᵀ as to uf_winograd_input.
typedef struct { float b00, b02, b04, b11, b12, b13, b14, b31, b32, b33, b34, b51, b53, b55; } sym6_bt;

__attribute__((always_inline)) static inline void sym6_bt_1d(const sym6_bt *k, const v16 d[6], v16 r[6]) {
    v16 e1 = k->b12 * d[2] + k->b14 * d[4], o1 = k->b11 * d[1] + k->b13 * d[3];
    v16 e3 = k->b32 * d[2] + k->b34 * d[4], o3 = k->b31 * d[1] + k->b33 * d[3];
    r[0] = k->b00 * d[0] + k->b02 * d[2] + k->b04 * d[4];
    r[1] = e1 + o1;
    r[2] = e1 - o1;
    r[3] = e3 + o3;
    r[4] = e3 - o3;
    r[5] = k->b51 * d[1] + k->b53 * d[3] + k->b55 * d[5];
}

// The output transform for the same points: Aᵀ's columns 1/2 and 3/4 are ± pairs (even rows +,
// odd rows −), its column 0 is [1, 0, 0, 0] (point 0) and column 5 [0, 0, 0, 1] (∞), and row 0 is all
// ones. y = Aᵀ m is then 13 operations instead of 24.
typedef struct { float a11, a13, a21, a23, a31, a33; } sym6_at;

__attribute__((always_inline)) static inline void sym6_at_1d(const sym6_at *k, const v16 m[6], v16 y[4]) {
    v16 s12 = m[1] + m[2], t12 = m[1] - m[2], s34 = m[3] + m[4], t34 = m[3] - m[4];
    y[0] = m[0] + s12 + s34;
    y[1] = k->a11 * t12 + k->a13 * t34;
    y[2] = k->a21 * s12 + k->a23 * s34;
    y[3] = k->a31 * t12 + k->a33 * t34 + m[5];
}

// One 1-D input transform r = Bᵀ d over A channel vectors: the halved symmetric form when `sym` is
// given, else the dense α×α product (sym is a constant NULL or not at every always_inline call site).
__attribute__((always_inline)) static inline void bt_1d(const int A, const float b[8][8], const sym6_bt *sym,
                                                        const v16 *d, v16 *r) {
    if (sym) { sym6_bt_1d(sym, d, r); return; }
    for (int i = 0; i < A; i++) {
        v16 acc = b[i][0] * d[0];
        for (int k = 1; k < A; k++) acc += b[i][k] * d[k];
        r[i] = acc;
    }
}

// V[(i·α + j)·posStride + t·c + ch] = (Bᵀ d B)[i][j] for the tiles t in [t0, t1) of a band whose
// first tile is `firstTile` in row-major tile order over a grid `tilesW` wide. Tile (ty, tx) reads
// input rows ty·m − 1 … ty·m + α − 2 (and the same for columns), zero outside the image.
__attribute__((always_inline)) static inline void input_tiles(const int A, const float *x, ptrdiff_t h, ptrdiff_t w, ptrdiff_t c,
                               int m, const float *bt, const sym6_bt *sym, ptrdiff_t tilesW, ptrdiff_t firstTile,
                               ptrdiff_t t0, ptrdiff_t t1, float *v, ptrdiff_t posStride) {
    float b[8][8];
    for (int i = 0; i < A; i++) for (int k = 0; k < A; k++) b[i][k] = bt[i * A + k];
    for (ptrdiff_t t = t0; t < t1; t++) {
        ptrdiff_t tile = firstTile + t;
        ptrdiff_t iy0 = (tile / tilesW) * m - 1, ix0 = (tile % tilesW) * m - 1;
        const float *src[8][8];
        for (int i = 0; i < A; i++) for (int j = 0; j < A; j++) {
            ptrdiff_t iy = iy0 + i, ix = ix0 + j;
            src[i][j] = (iy >= 0 && iy < h && ix >= 0 && ix < w) ? x + (iy * w + ix) * c : NULL;
        }
        for (ptrdiff_t c0 = 0; c0 < c; c0 += 16) {
            int n = c - c0 < 16 ? (int)(c - c0) : 16;
            v16 s[8][8];                               // s = Bᵀ d, column by column (s[j] holds column j)
            for (int j = 0; j < A; j++) {
                v16 d[8];
                for (int k = 0; k < A; k++) d[k] = src[k][j] ? load_n(src[k][j] + c0, n) : (v16){0};
                bt_1d(A, b, sym, d, s[j]);
            }
            float *dst = v + t * c + c0;
            for (int i = 0; i < A; i++) {              // (Bᵀ d) B, row by row
                v16 row[8], r[8];
                for (int j = 0; j < A; j++) row[j] = s[j][i];
                bt_1d(A, b, sym, row, r);
                for (int j = 0; j < A; j++) store_n(dst + (i * A + j) * posStride, r[j], n);
            }
        }
    }
}

CLONES
void uf_winograd_input(const float *x, ptrdiff_t h, ptrdiff_t w, ptrdiff_t c, int alpha, int m,
                       const float *bt, ptrdiff_t tilesW, ptrdiff_t firstTile, ptrdiff_t t0, ptrdiff_t t1,
                       float *v, ptrdiff_t posStride) {
    switch (alpha) {
    case 4: input_tiles(4, x, h, w, c, m, bt, NULL, tilesW, firstTile, t0, t1, v, posStride); break;
    case 5: input_tiles(5, x, h, w, c, m, bt, NULL, tilesW, firstTile, t0, t1, v, posStride); break;
    case 6: input_tiles(6, x, h, w, c, m, bt, NULL, tilesW, firstTile, t0, t1, v, posStride); break;
    case 7: input_tiles(7, x, h, w, c, m, bt, NULL, tilesW, firstTile, t0, t1, v, posStride); break;
    case 8: input_tiles(8, x, h, w, c, m, bt, NULL, tilesW, firstTile, t0, t1, v, posStride); break;
    default: break;
    }
}

// One 1-D output transform y = Aᵀ m (m = α − 2 values from α): halved when `sym` is given.
__attribute__((always_inline)) static inline void at_1d(const int A, const float a[6][8], const sym6_at *sym,
                                                        const v16 *d, v16 *y) {
    if (sym) { sym6_at_1d(sym, d, y); return; }
    for (int i = 0; i < A - 2; i++) {
        v16 acc = a[i][0] * d[0];
        for (int k = 1; k < A; k++) acc += a[i][k] * d[k];
        y[i] = acc;
    }
}

// y[(oy, ox), o] = (Aᵀ M A)[i][j] + bias[o] for the tiles t in [t0, t1) of a band, M read as
// mm[(k·α + l)·posStride + t·cout + o]; only the outputs inside the h × w image are written.
__attribute__((always_inline)) static inline void output_tiles(const int A, const float *mm, ptrdiff_t posStride, ptrdiff_t cout,
                                const float *at, const sym6_at *sym, const float *bias, float *y, ptrdiff_t h,
                                ptrdiff_t w, ptrdiff_t tilesW, ptrdiff_t firstTile, ptrdiff_t t0, ptrdiff_t t1) {
    const int M = A - 2;                           // = m
    float a[6][8];
    for (int i = 0; i < M; i++) for (int k = 0; k < A; k++) a[i][k] = at[i * A + k];
    for (ptrdiff_t t = t0; t < t1; t++) {
        ptrdiff_t tile = firstTile + t;
        ptrdiff_t oy0 = (tile / tilesW) * M, ox0 = (tile % tilesW) * M;
        int rows = h - oy0 < M ? (int)(h - oy0) : M, cols = w - ox0 < M ? (int)(w - ox0) : M;
        const float *src = mm + t * cout;
        for (ptrdiff_t c0 = 0; c0 < cout; c0 += 16) {
            int n = cout - c0 < 16 ? (int)(cout - c0) : 16;
            v16 s[8][6];                               // s = Aᵀ M, column by column (s[l] holds column l)
            for (int l = 0; l < A; l++) {
                v16 d[8];
                for (int k = 0; k < A; k++) d[k] = load_n(src + (k * A + l) * posStride + c0, n);
                at_1d(A, a, sym, d, s[l]);
            }
            v16 b0 = bias ? load_n(bias + c0, n) : (v16){0};
            for (int i = 0; i < rows; i++) {           // (Aᵀ M) A + bias, row by row
                v16 row[8], r[6];
                for (int l = 0; l < A; l++) row[l] = s[l][i];
                at_1d(A, a, sym, row, r);
                float *dst = y + ((oy0 + i) * w + ox0) * cout + c0;
                for (int j = 0; j < cols; j++) store_n(dst + j * cout, r[j] + b0, n);
            }
        }
    }
}

CLONES
void uf_winograd_output(const float *mm, ptrdiff_t posStride, ptrdiff_t cout, int alpha, int m,
                        const float *at, const float *bias, float *y, ptrdiff_t h, ptrdiff_t w,
                        ptrdiff_t tilesW, ptrdiff_t firstTile, ptrdiff_t t0, ptrdiff_t t1) {
    (void)m;
    switch (alpha) {
    case 4: output_tiles(4, mm, posStride, cout, at, NULL, bias, y, h, w, tilesW, firstTile, t0, t1); break;
    case 5: output_tiles(5, mm, posStride, cout, at, NULL, bias, y, h, w, tilesW, firstTile, t0, t1); break;
    case 6: output_tiles(6, mm, posStride, cout, at, NULL, bias, y, h, w, tilesW, firstTile, t0, t1); break;
    case 7: output_tiles(7, mm, posStride, cout, at, NULL, bias, y, h, w, tilesW, firstTile, t0, t1); break;
    case 8: output_tiles(8, mm, posStride, cout, at, NULL, bias, y, h, w, tilesW, firstTile, t0, t1); break;
    default: break;
    }
}

CLONES
void uf_winograd_input_sym6(const float *x, ptrdiff_t h, ptrdiff_t w, ptrdiff_t c, const float *bt,
                            ptrdiff_t tilesW, ptrdiff_t firstTile, ptrdiff_t t0, ptrdiff_t t1,
                            float *v, ptrdiff_t posStride) {
    const sym6_bt k = {bt[0], bt[2], bt[4], bt[7], bt[8], bt[9], bt[10], bt[19], bt[20], bt[21], bt[22],
                       bt[31], bt[33], bt[35]};
    input_tiles(6, x, h, w, c, 4, bt, &k, tilesW, firstTile, t0, t1, v, posStride);
}

CLONES
void uf_winograd_output_sym6(const float *mm, ptrdiff_t posStride, ptrdiff_t cout, const float *at,
                             const float *bias, float *y, ptrdiff_t h, ptrdiff_t w, ptrdiff_t tilesW,
                             ptrdiff_t firstTile, ptrdiff_t t0, ptrdiff_t t1) {
    const sym6_at k = {at[7], at[9], at[13], at[15], at[19], at[21]};
    output_tiles(6, mm, posStride, cout, at, &k, bias, y, h, w, tilesW, firstTile, t0, t1);
}

// U[(i·α + j)·o·c + oc·c + ch] = Σ_{a,b} G[i][a] · g[oc, a, b, ch] · G[j][b], in double, from the
// repacked weight [O, 3, 3, C].
CLONES
void uf_winograd_weights(const float *packed, ptrdiff_t o, ptrdiff_t c, int alpha, const double *g,
                         float *u) {
    const int A = alpha;
    double tmp[8][3][64];
    for (ptrdiff_t oc = 0; oc < o; oc++) {
        const float *wo = packed + oc * 9 * c;
        for (ptrdiff_t c0 = 0; c0 < c; c0 += 64) {
            int n = c - c0 < 64 ? (int)(c - c0) : 64;
            for (int i = 0; i < A; i++) for (int b = 0; b < 3; b++) {       // G g
                const double g0 = g[i * 3], g1 = g[i * 3 + 1], g2 = g[i * 3 + 2];
                const float *w0 = wo + b * c + c0, *w1 = w0 + 3 * c, *w2 = w0 + 6 * c;
                for (int ch = 0; ch < n; ch++)
                    tmp[i][b][ch] = g0 * (double)w0[ch] + g1 * (double)w1[ch] + g2 * (double)w2[ch];
            }
            for (int i = 0; i < A; i++) for (int j = 0; j < A; j++) {       // (G g) Gᵀ
                const double g0 = g[j * 3], g1 = g[j * 3 + 1], g2 = g[j * 3 + 2];
                float *dst = u + ((ptrdiff_t)(i * A + j) * o + oc) * c + c0;
                for (int ch = 0; ch < n; ch++)
                    dst[ch] = (float)(tmp[i][0][ch] * g0 + tmp[i][1][ch] * g1 + tmp[i][2][ch] * g2);
            }
        }
    }
}
