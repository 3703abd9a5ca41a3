// fp32 matrix products with a pre-packed right operand, AVX-512: C[m×n] = A[m×k] · B[k×n]
// (+ bias, or C +=; GELU applied in the store when asked). Used where OpenBLAS's per-call packing
// of both operands costs most: attention, whose K and V are packed once per head and then
// multiplied by many small blocks of query rows.
//
// Why it is fast. B is stored as panels of NR = 32 columns, each panel K rows of 32 contiguous
// values, so the inner loop reads B strictly sequentially, two vectors per k. A is read in place
// (row-major, lda): each k step broadcasts one value from each of MR = 12 rows. The 12×32 block of
// C lives in 24 zmm accumulators for the whole K loop — 24 FMAs per 2 vector loads and 12
// broadcasts, so the FMA units set the pace. Rows of A are taken MC at a time (their block stays in
// L2) and every B panel sweeps that block (the panel stays in L1).

#include "ckernels.h"
#include "gemm_store.h"
#include <immintrin.h>
#include <string.h>

#define NR 32
#define MR 12

static ptrdiff_t panels(ptrdiff_t n) { return (n + NR - 1) / NR; }

int uf_sgemm_packed_supported(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq");
}

size_t uf_sgemm_packed_floats(ptrdiff_t n, ptrdiff_t k) { return (size_t)(panels(n) * NR * k); }

// 16×16 transpose in registers: r[i][j] → r[j][i]. Pairs of rows interleave 32-bit then 64-bit
// elements (4×4 blocks transposed within each 128-bit lane), then two rounds of 128-bit lane
// shuffles gather each column's four lanes: 64 shuffles for 256 floats.
__attribute__((target("avx512f"), always_inline))
static inline void transpose16(__m512 r[16]) {
    __m512 t[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int g = 0; g < 16; g += 4) {   // rows g..g+3: u[g + c] holds column c + 4L in lane L
        __m512d a = _mm512_castps_pd(t[g]), b = _mm512_castps_pd(t[g + 1]);
        __m512d c = _mm512_castps_pd(t[g + 2]), d = _mm512_castps_pd(t[g + 3]);
        r[g] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
        r[g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
        r[g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
        r[g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
    }
    for (int c = 0; c < 4; c++) {
        __m512 v01 = _mm512_shuffle_f32x4(r[c], r[4 + c], 0x44), w01 = _mm512_shuffle_f32x4(r[c], r[4 + c], 0xEE);
        __m512 v23 = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0x44), w23 = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0xEE);
        t[c] = _mm512_shuffle_f32x4(v01, v23, 0x88);
        t[c + 4] = _mm512_shuffle_f32x4(v01, v23, 0xDD);
        t[c + 8] = _mm512_shuffle_f32x4(w01, w23, 0x88);
        t[c + 12] = _mm512_shuffle_f32x4(w01, w23, 0xDD);
    }
    for (int i = 0; i < 16; i++) r[i] = t[i];
}

// B(kk, j) = b[kk·rs + j·cs] · scale into panels. Three cases: rows of B contiguous (cs = 1: an
// attention head's V, k tokens × d) are copied 32 at a time; columns contiguous (rs = 1: a Linear
// weight [n, k] used as Wᵀ, a head's K) are read 16 × 16 blocks at a time and transposed in
// registers (a scalar loop read one float per cache line: 0.42 ns per value for a head's K, 1024
// tokens × 64); anything else element by element.
__attribute__((target("avx512f")))
void uf_sgemm_pack(const float *b, ptrdiff_t rs, ptrdiff_t cs, ptrdiff_t k, ptrdiff_t n, float scale, float *packed) {
    __m512 sv = _mm512_set1_ps(scale);
    for (ptrdiff_t p = 0; p < panels(n); p++) {
        float *dst = packed + p * k * NR;
        ptrdiff_t cols = n - p * NR < NR ? n - p * NR : NR;
        if (cs == 1) {
            for (ptrdiff_t kk = 0; kk < k; kk++) {
                const float *src = b + kk * rs + p * NR;
                for (int h = 0; h < NR; h += 16) {
                    __mmask16 m = first_lanes(cols - h);
                    _mm512_storeu_ps(dst + kk * NR + h, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, src + h), sv));
                }
            }
        } else if (rs == 1) {
            for (ptrdiff_t k0 = 0; k0 < k; k0 += 16) {
                __mmask16 km = first_lanes(k - k0);
                ptrdiff_t depth = k - k0 < 16 ? k - k0 : 16;
                for (int h = 0; h < NR; h += 16) {        // columns p·NR + h …, 16 at a time
                    __m512 r[16];
                    for (int j = 0; j < 16; j++)
                        r[j] = h + j < cols ? _mm512_maskz_loadu_ps(km, b + (p * NR + h + j) * cs + k0) : _mm512_setzero_ps();
                    transpose16(r);
                    for (ptrdiff_t i = 0; i < depth; i++) _mm512_storeu_ps(dst + (k0 + i) * NR + h, _mm512_mul_ps(r[i], sv));
                }
            }
        } else {
            for (ptrdiff_t kk = 0; kk < k; kk++) {
                const float *src = b + kk * rs + p * NR * cs;
                ptrdiff_t j = 0;
                for (; j < cols; j++) dst[kk * NR + j] = src[j * cs] * scale;
                for (; j < NR; j++) dst[kk * NR + j] = 0.0f;
            }
        }
    }
}

// Rows of A per block: the block should sit in L2 (≤ 512 KB: half of Zen 4's L2, a quarter of Sapphire
// Rapids') while all B panels sweep it; every extra block streams all of B again.
static ptrdiff_t row_block(ptrdiff_t k) {
    ptrdiff_t mc = (ptrdiff_t)(524288 / ((size_t)(k > 0 ? k : 1) * sizeof(float))) / MR * MR;
    return mc < MR ? MR : (mc > 40 * MR ? 40 * MR : mc);
}

// One R×32 block (R = MR, or 4 / 8 for a short last group of rows): C[r, 0:32] (= or +=)
// Σ_k A[r, k] · Bp[k, 0:32] (+ bias) for r < mr, columns under the masks. `a` has R readable rows
// (row stride lda; the caller pads a short block). Always inlined with a constant R, so each R gets
// its own fully unrolled loop: a tail of 2 rows costs a 4-row pass, not a 12-row one.
// `next` (or NULL): the same rows of the next panel, fetched into L2 as this one is read — the first
// block of rows under each panel passes it. A layer's weights come from L3 (a pass reads each once)
// and the hardware prefetcher, seeing a panel re-read by every block of rows, does not run ahead
// into the next one: measured on 98×320 · 320×1280 (a 224² classifier's stage-3 MLP on one of two
// threads, weights cold) 66–81 → 72–95 GFLOPS median, 408 rows +3 %.
__attribute__((target("avx512f,avx512bw,avx512dq,fma"), always_inline))
static inline void kernel_rows(const int R, ptrdiff_t k, const float *a, ptrdiff_t lda, const float *bp, float *c,
                               ptrdiff_t ldc, int mr, __mmask16 m0, __mmask16 m1, const float *bias, int flags,
                               const float *next) {
    __m512 acc0[MR], acc1[MR];
#pragma clang loop unroll(full)
    for (int r = 0; r < R; r++) { acc0[r] = _mm512_setzero_ps(); acc1[r] = _mm512_setzero_ps(); }
    for (ptrdiff_t kk = 0; kk < k; kk++) {
        // unaligned loads: Conv2d's panels live in a Swift array (16-byte aligned); as fast on aligned data
        __m512 b0 = _mm512_loadu_ps(bp + kk * NR), b1 = _mm512_loadu_ps(bp + kk * NR + 16);
        if (next) {   // the two cache lines of row kk of the next panel
            _mm_prefetch((const char *)(next + kk * NR), _MM_HINT_T1);
            _mm_prefetch((const char *)(next + kk * NR + 16), _MM_HINT_T1);
        }
#pragma clang loop unroll(full)
        for (int r = 0; r < R; r++) {
            __m512 av = _mm512_set1_ps(a[r * lda + kk]);
            acc0[r] = _mm512_fmadd_ps(av, b0, acc0[r]);
            acc1[r] = _mm512_fmadd_ps(av, b1, acc1[r]);
        }
    }
    __m512 bias0, bias1;
    gemm_load_bias(bias, m0, m1, &bias0, &bias1);
#pragma clang loop unroll(full)
    for (int r = 0; r < R; r++) {
        if (r < mr) gemm_store_row(c + r * ldc, acc0[r], acc1[r], bias0, bias1, m0, m1, flags);
    }
}

__attribute__((target("avx512f,avx512bw,avx512dq,fma")))
static void kernel_f32(ptrdiff_t k, const float *a, ptrdiff_t lda, const float *bp, float *c, ptrdiff_t ldc,
                       int mr, __mmask16 m0, __mmask16 m1, const float *bias, int flags, const float *next) {
    if (mr <= 4) kernel_rows(4, k, a, lda, bp, c, ldc, mr, m0, m1, bias, flags, next);
    else if (mr <= 8) kernel_rows(8, k, a, lda, bp, c, ldc, mr, m0, m1, bias, flags, next);
    else kernel_rows(MR, k, a, lda, bp, c, ldc, mr, m0, m1, bias, flags, next);
}

// Deep products are cut into K slices of KC (only above K_SLICE_ABOVE: for the backbone's depths,
// 320-2048, slicing measured no gain). The box head's first FC has K = 256·7·7 = 12544: unsliced,
// row_block(12544) is a single MR group, so every 12 rows of A streamed all of B (51 MB) from memory
// (76 GFLOPS on 1000 RoIs); sliced, a block of mc rows × KC of A stays in L2 while each B slice
// streams past it once, and C is accumulated slice by slice (the bias goes in with the first).
#define KC 512
#define K_SLICE_ABOVE 4096

__attribute__((target("avx512f,avx512bw,avx512dq,fma")))
void uf_sgemm_packed(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const float *a, ptrdiff_t lda, const float *packed,
                     float *c, ptrdiff_t ldc, const float *bias, int flags, float *scratch) {
    ptrdiff_t kc = k > K_SLICE_ABOVE ? KC : k;
    ptrdiff_t np = panels(n), mc = row_block(kc);
    for (ptrdiff_t i0 = 0; i0 < m; i0 += mc) {
        ptrdiff_t rows = m - i0 < mc ? m - i0 : mc;
        ptrdiff_t full = rows / MR * MR;
        int tail = (int)(rows - full);
        for (ptrdiff_t k0 = 0; k0 < k; k0 += kc) {
            ptrdiff_t depth = k - k0 < kc ? k - k0 : kc;
            // later slices add to C; GELU only on the last
            int slice_flags = (k0 > 0 ? UF_GEMM_ACCUMULATE : flags & UF_GEMM_ACCUMULATE) | (k0 + depth == k ? flags & UF_GEMM_GELU : 0);
            // A short last group of rows: its slice is copied into zero-padded scratch [MR, depth].
            if (tail) {
                memset(scratch, 0, sizeof(float) * MR * depth);
                for (int q = 0; q < tail; q++)
                    memcpy(scratch + q * depth, a + (i0 + full + q) * lda + k0, sizeof(float) * depth);
            }
            for (ptrdiff_t p = 0; p < np; p++) {
                ptrdiff_t cols = n - p * NR < NR ? n - p * NR : NR;
                __mmask16 m0 = first_lanes(cols), m1 = first_lanes(cols - 16);
                const float *bp = packed + p * k * NR + k0 * NR;   // rows k0.. of panel p: contiguous
                const float *bias_p = bias && k0 == 0 ? bias + p * NR : NULL;
                const float *next = p + 1 < np ? bp + k * NR : NULL;   // the next panel's rows k0..
                for (ptrdiff_t r = 0; r < full; r += MR)
                    kernel_rows(MR, depth, a + (i0 + r) * lda + k0, lda, bp, c + (i0 + r) * ldc + p * NR, ldc, MR,
                                m0, m1, bias_p, slice_flags, r == 0 ? next : NULL);
                if (tail)
                    kernel_f32(depth, scratch, depth, bp, c + (i0 + full) * ldc + p * NR, ldc, tail, m0, m1, bias_p, slice_flags,
                               full == 0 ? next : NULL);
            }
        }
    }
}

// Scratch floats uf_sgemm_packed needs for a given k (a short block of rows, zero-padded to MR).
size_t uf_sgemm_scratch_floats(ptrdiff_t k) { return (size_t)(MR * (k > 0 ? k : 1)); }

