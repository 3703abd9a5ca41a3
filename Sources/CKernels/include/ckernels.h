// Element-wise kernels that must vectorise: exp for softmax, erf for exact GELU.
// Plain C loops with fixed polynomial math, compiled with target_clones (AVX-512, AVX2, baseline)
// so the compiler emits 16-lane code on these machines and still runs anywhere.
#ifndef UNIFORMER_CKERNELS_H
#define UNIFORMER_CKERNELS_H

#include <stddef.h>
#include <stdint.h>

/// Softmax of each row of a row-major [rows, cols] block, in place (max-subtracted, exact form).
void uf_softmax_rows(float *p, ptrdiff_t rows, ptrdiff_t cols);
/// The same without the last pass: row r ← exp(row − max(row)), inv[r] = 1 / Σ exp, so that a
/// product P·V can be scaled per row afterwards (rows × d values instead of rows × cols).
void uf_softmax_rows_unnormalized(float *p, ptrdiff_t rows, ptrdiff_t cols, float *inv);
/// The same in AVX-512 intrinsics (softmax.c); callers check AVX-512 first (uf_sgemm_packed_supported).
void uf_softmax_rows_unnormalized_fast(float *p, ptrdiff_t rows, ptrdiff_t cols, float *inv);
/// p[r·ld + j] *= s[r] for r < rows, j < cols.
void uf_scale_rows(float *p, ptrdiff_t rows, ptrdiff_t cols, ptrdiff_t ld, const float *s);

/// LayerNorm of each row of x [rows, c] into y: (x − mean) / sqrt(var + eps) · w + b (biased variance).
void uf_layernorm_rows(const float *x, float *y, ptrdiff_t rows, ptrdiff_t c, const float *w, const float *b, float eps);

/// p[i] = max(p[i], 0) for i < n (NaN kept).
void uf_relu(float *p, ptrdiff_t n);
/// p[r, j] = gelu(p[r, j] + bias[j]) for a row-major [rows, cols] block; bias may be NULL.
/// GELU is the exact form ½x(1 + erf(x/√2)) with erf to 1.5e-7 absolute.
void uf_bias_gelu_rows(float *p, ptrdiff_t rows, ptrdiff_t cols, const float *bias);

/// Depthwise k×k convolution (stride 1, padding k/2) of output rows [y0, y1): x, y [h, w, c]
/// channels-last, weights [k·k, c], bias [c]; `residual` adds x itself (x + dwconv(x)).
void uf_depthwise_rows(const float *x, ptrdiff_t h, ptrdiff_t w, ptrdiff_t c, int k, const float *wt,
                       const float *bias, int residual, float *y, ptrdiff_t y0, ptrdiff_t y1);

/// The same, blocked over 8 adjacent output pixels (depthwise.c), for k = 3, 5, 7 on AVX-512 CPUs
/// (uf_depthwise_fast_supported(k)); other k fall through to uf_depthwise_rows.
int uf_depthwise_fast_supported(int k);
void uf_depthwise_rows_fast(const float *x, ptrdiff_t h, ptrdiff_t w, ptrdiff_t c, int k, const float *wt,
                            const float *bias, int residual, float *y, ptrdiff_t y0, ptrdiff_t y1);

/// dst[j, i] = src[i, j] for source rows i ∈ [r0, r1): src [rows, cols] → dst [cols, rows], both
/// row-major (a layout change [H·W, C] ↔ [C, H·W]); callers split [0, rows) across threads.
void uf_transpose_rows(const float *src, ptrdiff_t rows, ptrdiff_t cols, float *dst, ptrdiff_t r0, ptrdiff_t r1);

/// Process-wide: freed heap blocks up to 32 MB are kept for reuse instead of being returned to the
/// kernel (mallopt), so activations do not page-fault in again on every forward pass.
void uf_retain_freed_memory(void);
/// Also no mmap for any block (glibc's ceiling for the threshold is 32 MB), so that larger
/// activations are reused too. Only for a process whose large allocations come from its main thread
/// (a thread's own arena cannot grow past 64 MB without mmap): the command-line tool, not the library.
void uf_heap_only_allocation(void);

/// Scalar forms of the same approximations, for tests.
float uf_exp(float x);
float uf_erf(float x);

// Winograd F(m×m, 3×3), α = m + 2 ∈ 4 … 8, on channels-last data (winograd.c). A band of tiles
// is numbered t = 0, 1, … from tile `firstTile` in row-major order over a grid `tilesW` tiles wide;
// the transformed data of position p = i·α + j of band tile t lives at p·posStride + t·channels.

/// Input transform Bᵀ d B of band tiles [t0, t1): x [h, w, c] → v; tile (ty, tx) covers input rows
/// ty·m − 1 … ty·m + α − 2 and the same columns, zero outside the image (padding 1). bt: Bᵀ [α, α].
void uf_winograd_input(const float *x, ptrdiff_t h, ptrdiff_t w, ptrdiff_t c, int alpha, int m,
                       const float *bt, ptrdiff_t tilesW, ptrdiff_t firstTile, ptrdiff_t t0, ptrdiff_t t1,
                       float *v, ptrdiff_t posStride);

/// Output transform Aᵀ M A + bias of band tiles [t0, t1): mm → y [h, w, cout], writing only the
/// outputs inside the image. at: Aᵀ [m, α]; bias may be NULL.
void uf_winograd_output(const float *mm, ptrdiff_t posStride, ptrdiff_t cout, int alpha, int m,
                        const float *at, const float *bias, float *y, ptrdiff_t h, ptrdiff_t w,
                        ptrdiff_t tilesW, ptrdiff_t firstTile, ptrdiff_t t0, ptrdiff_t t1);

/// The same two transforms for α = 6 when the points are 0, ±p, ±q, ∞ (the ± pairs and the zeros
/// of Bᵀ and Aᵀ exploited: half the operations); the caller has checked that pattern on bt and at.
void uf_winograd_input_sym6(const float *x, ptrdiff_t h, ptrdiff_t w, ptrdiff_t c, const float *bt,
                            ptrdiff_t tilesW, ptrdiff_t firstTile, ptrdiff_t t0, ptrdiff_t t1,
                            float *v, ptrdiff_t posStride);
void uf_winograd_output_sym6(const float *mm, ptrdiff_t posStride, ptrdiff_t cout, const float *at,
                             const float *bias, float *y, ptrdiff_t h, ptrdiff_t w, ptrdiff_t tilesW,
                             ptrdiff_t firstTile, ptrdiff_t t0, ptrdiff_t t1);

/// Weight transform G g Gᵀ in double: packed [o, 3, 3, c] → u [α², o, c]. g: G [α, 3].
void uf_winograd_weights(const float *packed, ptrdiff_t o, ptrdiff_t c, int alpha, const double *g,
                         float *u);

// bf16 matrix products (bf16_gemm.c): C[m×n] = A[m×k] · B[k×n] with bf16 inputs, fp32
// accumulation. B is any k×n matrix addressed as b[kk·rs + j·cs] (a Linear weight [n, k]: rs 1,
// cs k), packed once — optionally scaled — into panels of 32 columns, [k/2][32][2] bf16, K
// zero-padded to a multiple of 32. A is rounded per call into uf_gemm_bf16_a_count(m, k) values:
// row-major with the padded K, then 31 zero rows. Check support before calling a kernel.

/// AVX512-BF16 (and AVX-512 F/BW/DQ) present.
int uf_gemm_bf16_supported(void);
/// AMX-BF16 present and granted by the OS (asks Linux for the tile state on the first call).
int uf_gemm_amx_supported(void);

size_t uf_gemm_packed_bf16_count(ptrdiff_t n, ptrdiff_t k);
void uf_gemm_pack_bf16(const float *b, ptrdiff_t rs, ptrdiff_t cs, ptrdiff_t k, ptrdiff_t n, float scale, uint16_t *packed);
size_t uf_gemm_bf16_a_count(ptrdiff_t m, ptrdiff_t k);
void uf_to_bf16_rows(const float *a, ptrdiff_t m, ptrdiff_t k, ptrdiff_t lda, uint16_t *out);

/// C (row stride ldc) = A · B + bias (bias may be NULL); `accumulate` makes it C +=.
void uf_gemm_bf16(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const uint16_t *a, const uint16_t *packed,
                  float *c, ptrdiff_t ldc, const float *bias, int accumulate);
void uf_gemm_amx(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const uint16_t *a, const uint16_t *packed,
                 float *c, ptrdiff_t ldc, const float *bias, int accumulate);

/// float → bf16 → float, rounding to nearest even (what the bf16 path does to its inputs).
float uf_bf16_round(float x);

// fp32 products with a packed right operand (sgemm_packed.c), AVX-512; B addressed as in the bf16
// API (b[kk·rs + j·cs]), packed into panels of 32 columns [k][32], zero-padded, optionally scaled.
int uf_sgemm_packed_supported(void);
size_t uf_sgemm_packed_floats(ptrdiff_t n, ptrdiff_t k);
void uf_sgemm_pack(const float *b, ptrdiff_t rs, ptrdiff_t cs, ptrdiff_t k, ptrdiff_t n, float scale, float *packed);
/// Scratch floats for uf_sgemm_packed (a short block of rows of A, zero-padded).
size_t uf_sgemm_scratch_floats(ptrdiff_t k);
/// C[m×n] (row stride ldc) = A[m×k] (row stride lda) · B + bias (NULL: none). `flags`: any of
/// UF_GEMM_ACCUMULATE (C += instead of =) and UF_GEMM_GELU (exact GELU of each result, ½x(1 +
/// erf(x/√2)) with erf to 1.5e-7, before it is stored; after the accumulation).
#define UF_GEMM_ACCUMULATE 1
#define UF_GEMM_GELU 2
void uf_sgemm_packed(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const float *a, ptrdiff_t lda, const float *packed,
                     float *c, ptrdiff_t ldc, const float *bias, int flags, float *scratch);

/// Treats subnormal floats as zero on the calling thread, as inputs and as results (x86 MXCSR DAZ
/// and FTZ; nothing elsewhere), and returns the previous mode for uf_restore_fp_mode. See
/// ComputeContext.swift for why.
unsigned uf_flush_subnormals(void);
void uf_restore_fp_mode(unsigned mode);

/// The spin-wait hint (x86 PAUSE) for SpinPool's waiting loops; nothing elsewhere.
static inline void uf_cpu_pause(void) {
#if defined(__x86_64__)
    __builtin_ia32_pause();
#endif
}

#endif
