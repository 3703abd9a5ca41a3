// Matrix products with bf16 inputs and fp32 accumulation (`--precision bf16`):
// C[m×n] = A[m×k] · B[k×n] (+ bias[n], or C +=). See include/ckernels.h for the API.
//
// B (a layer's weights, or an attention operand) is packed once into panels of NR = 32 columns:
// [k/2][32 columns][2] bf16, K zero-padded to a multiple of 32. A is rounded to bf16 per call
// (row-major, padded K, followed by zero rows so a short last block of rows reads zeros).
// Two kernels share these layouts:
// - AMX (Sapphire Rapids and later): a panel's layout is exactly a B tile (16 pair-rows × 64 bytes,
//   row stride 128 bytes), A tiles load straight from the row-major A; one TDPBF16PS does 16×16×32
//   multiply-adds, 4 of them per 32 of K for a 32×32 block of C held in accumulator tiles.
//   Measured 150–650 GFLOPS on one core against OpenBLAS sgemm's 60–80 on UniFormer's shapes.
// - AVX512-BF16 (e.g. Zen 4): the block of C is 12×32 in 24 zmm accumulators; per pair of k it
//   loads two B vectors (32 columns × 2) and broadcasts one A pair per row into VDPBF16PS, which
//   adds both products into fp32 lanes: twice the multiply-adds of an fp32 FMA per instruction
//   where the CPU runs it at full rate (on Sapphire Rapids it does not: AMX is used there).
// Rounding is to nearest even (vcvtne2ps2bf16, or to_bf16 for tails), as PyTorch's .bfloat16().

#include "ckernels.h"
#include "gemm_store.h"
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#define NR 32
#define MR 12
#define BF16_PAD_ROWS 31   // zero rows after bf16 A: a short last block of 12 (AVX-512) or 32 (AMX) rows

static ptrdiff_t panels(ptrdiff_t n) { return (n + NR - 1) / NR; }

int uf_gemm_bf16_supported(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bf16");
}

// Round to nearest even, as PyTorch's and the hardware's float→bf16 (NaN kept quiet).
static inline uint16_t to_bf16(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7fffffff) > 0x7f800000) return (uint16_t)((u >> 16) | 0x40);
    return (uint16_t)((u + 0x7fff + ((u >> 16) & 1)) >> 16);
}

float uf_bf16_round(float x) {
    uint32_t u = (uint32_t)to_bf16(x) << 16;
    float y;
    memcpy(&y, &u, 4);
    return y;
}

// bf16 operands pad K to a multiple of 32 (an AMX tile's depth) with zeros.
static ptrdiff_t kpad32(ptrdiff_t k) { return (k + 31) / 32 * 32; }

size_t uf_gemm_packed_bf16_count(ptrdiff_t n, ptrdiff_t k) { return (size_t)(panels(n) * NR * kpad32(k)); }

void uf_gemm_pack_bf16(const float *b, ptrdiff_t rs, ptrdiff_t cs, ptrdiff_t k, ptrdiff_t n, float scale, uint16_t *packed) {
    ptrdiff_t kp = kpad32(k) / 2;
    for (ptrdiff_t p = 0; p < panels(n); p++) {
        uint16_t *dst = packed + p * kp * NR * 2;
        for (ptrdiff_t q = 0; q < kp; q++) {
            for (ptrdiff_t j = 0; j < NR; j++) {
                ptrdiff_t col = p * NR + j;
                for (int h = 0; h < 2; h++) {
                    ptrdiff_t kk = 2 * q + h;
                    dst[(q * NR + j) * 2 + h] = (col < n && kk < k) ? to_bf16(b[kk * rs + col * cs] * scale) : 0;
                }
            }
        }
    }
}

// Rows of A per block: the block should sit in L2 (≤ 256 KB) while all B panels sweep it.
static ptrdiff_t row_block(ptrdiff_t k, size_t elem) {
    ptrdiff_t mc = (ptrdiff_t)(262144 / ((size_t)(k > 0 ? k : 1) * elem)) / MR * MR;
    return mc < MR ? MR : (mc > 40 * MR ? 40 * MR : mc);
}

// ---- AVX512-BF16 ------------------------------------------------------------------------------

// vcvtne2ps2bf16 rounds to nearest even like to_bf16 (NaNs aside), 32 values per instruction.
__attribute__((target("avx512f,avx512bw,avx512dq,avx512bf16")))
void uf_to_bf16_rows(const float *a, ptrdiff_t m, ptrdiff_t k, ptrdiff_t lda, uint16_t *out) {
    ptrdiff_t k2 = kpad32(k);
    for (ptrdiff_t r = 0; r < m; r++) {
        const float *src = a + r * lda;
        uint16_t *dst = out + r * k2;
        ptrdiff_t j = 0;
        for (; j + 32 <= k; j += 32) {
            __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(src + j + 16), _mm512_loadu_ps(src + j));
            _mm512_storeu_si512((void *)(dst + j), (__m512i)v);
        }
        for (; j < k; j++) dst[j] = to_bf16(src[j]);
        for (; j < k2; j++) dst[j] = 0;
    }
    memset(out + m * k2, 0, sizeof(uint16_t) * (BF16_PAD_ROWS) * k2);  // zero rows for a short last block
}

__attribute__((target("avx512f,avx512bw,avx512dq,avx512bf16,fma")))
static inline void kernel_bf16(ptrdiff_t kp, const uint16_t *a, ptrdiff_t lda2, const uint16_t *bp, float *c, ptrdiff_t ldc,
                               int mr, __mmask16 m0, __mmask16 m1, const float *bias, int accumulate) {
    __m512 acc0[MR], acc1[MR];
#pragma clang loop unroll(full)
    for (int r = 0; r < MR; r++) { acc0[r] = _mm512_setzero_ps(); acc1[r] = _mm512_setzero_ps(); }
    for (ptrdiff_t q = 0; q < kp; q++) {
        __m512bh b0 = (__m512bh)_mm512_load_si512((const void *)(bp + q * NR * 2));
        __m512bh b1 = (__m512bh)_mm512_load_si512((const void *)(bp + q * NR * 2 + 32));
#pragma clang loop unroll(full)
        for (int r = 0; r < MR; r++) {
            uint32_t pair;
            memcpy(&pair, a + r * lda2 + 2 * q, 4);
            __m512bh av = (__m512bh)_mm512_set1_epi32((int)pair);
            acc0[r] = _mm512_dpbf16_ps(acc0[r], av, b0);
            acc1[r] = _mm512_dpbf16_ps(acc1[r], av, b1);
        }
    }
    __m512 bias0, bias1;
    gemm_load_bias(bias, m0, m1, &bias0, &bias1);
#pragma clang loop unroll(full)
    for (int r = 0; r < MR; r++) {
        if (r < mr) gemm_store_row(c + r * ldc, acc0[r], acc1[r], bias0, bias1, m0, m1, accumulate);
    }
}

__attribute__((target("avx512f,avx512bw,avx512dq,avx512bf16,fma")))
void uf_gemm_bf16(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const uint16_t *a, const uint16_t *packed,
                  float *c, ptrdiff_t ldc, const float *bias, int accumulate) {
    ptrdiff_t np = panels(n), kp = kpad32(k) / 2, lda2 = kp * 2, mc = row_block(lda2, sizeof(uint16_t));
    for (ptrdiff_t i0 = 0; i0 < m; i0 += mc) {
        ptrdiff_t rows = m - i0 < mc ? m - i0 : mc;
        for (ptrdiff_t p = 0; p < np; p++) {
            ptrdiff_t cols = n - p * NR < NR ? n - p * NR : NR;
            __mmask16 m0 = first_lanes(cols), m1 = first_lanes(cols - 16);
            const uint16_t *bp = packed + p * kp * NR * 2;
            const float *bias_p = bias ? bias + p * NR : NULL;
            for (ptrdiff_t r = 0; r < rows; r += MR) {
                int mr = rows - r < MR ? (int)(rows - r) : MR;
                // `a` holds m rows plus MR − 1 zero rows after them (uf_gemm_bf16_a_count), so a
                // short last block reads zeros instead of past the end.
                kernel_bf16(kp, a + (i0 + r) * lda2, lda2, bp, c + (i0 + r) * ldc + p * NR, ldc, mr, m0, m1, bias_p, accumulate);
            }
        }
    }
}

size_t uf_gemm_bf16_a_count(ptrdiff_t m, ptrdiff_t k) { return (size_t)((m + BF16_PAD_ROWS) * kpad32(k)); }

// ---- AMX (bf16 tiles) -------------------------------------------------------------------------
// On CPUs with AMX (Sapphire Rapids and later) one TDPBF16PS multiplies a 16×32 bf16 tile of A by
// a 32×16 one of B (as 16 rows of 16 column pairs) into a 16×16 fp32 tile: 8192 multiply-adds per
// instruction. The kernel keeps a 32×32 block of C in four accumulator tiles, loading two A tiles
// (rows 0–15, 16–31; row stride = padded K) and two B tiles (the panel's columns 0–15, 16–31; the
// panel's pair layout [k/2][32][2] is exactly a tile with a 128-byte row stride) per 32 of K.

#include <sys/syscall.h>
#include <unistd.h>

typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} amx_config;

static int amx_state = -1;  // -1 unknown, 0 unavailable, 1 usable (atomic: any thread may ask first)

int uf_gemm_amx_supported(void) {
    int state = __atomic_load_n(&amx_state, __ATOMIC_ACQUIRE);
    if (state < 0) {
        __builtin_cpu_init();
        int ok = __builtin_cpu_supports("amx-tile") && __builtin_cpu_supports("amx-bf16") && uf_gemm_bf16_supported();
        // Linux hands out the 8 KB tile state only on request (ARCH_REQ_XCOMP_PERM, XTILEDATA = 18);
        // asking twice is harmless, so two threads racing here agree.
        if (ok) ok = syscall(SYS_arch_prctl, 0x1023, 18) == 0;
        state = ok;
        __atomic_store_n(&amx_state, state, __ATOMIC_RELEASE);
    }
    return state;
}

__attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw,avx512dq")))
void uf_gemm_amx(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const uint16_t *a, const uint16_t *packed,
                 float *c, ptrdiff_t ldc, const float *bias, int accumulate) {
    ptrdiff_t k2 = kpad32(k), kp = k2 / 2, np = panels(n);
    amx_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int t = 0; t < 8; t++) { cfg.rows[t] = 16; cfg.colsb[t] = 64; }
    _tile_loadconfig(&cfg);
    float tile[32 * 32] __attribute__((aligned(64)));
    for (ptrdiff_t i0 = 0; i0 < m; i0 += 32) {
        const uint16_t *ap = a + i0 * k2;
        ptrdiff_t rows = m - i0 < 32 ? m - i0 : 32;
        for (ptrdiff_t p = 0; p < np; p++) {
            const uint16_t *bp = packed + p * kp * NR * 2;
            _tile_zero(0); _tile_zero(1); _tile_zero(2); _tile_zero(3);
            for (ptrdiff_t q = 0; q < kp; q += 16) {
                _tile_loadd(4, ap + 2 * q, k2 * 2);
                _tile_loadd(5, ap + 16 * k2 + 2 * q, k2 * 2);
                _tile_loadd(6, bp + q * NR * 2, NR * 4);
                _tile_loadd(7, bp + q * NR * 2 + 32, NR * 4);
                _tile_dpbf16ps(0, 4, 6);
                _tile_dpbf16ps(1, 4, 7);
                _tile_dpbf16ps(2, 5, 6);
                _tile_dpbf16ps(3, 5, 7);
            }
            _tile_stored(0, tile, 128);
            _tile_stored(1, tile + 16, 128);
            _tile_stored(2, tile + 16 * 32, 128);
            _tile_stored(3, tile + 16 * 32 + 16, 128);
            ptrdiff_t cols = n - p * NR < NR ? n - p * NR : NR;
            __mmask16 m0 = first_lanes(cols), m1 = first_lanes(cols - 16);
            __m512 bias0, bias1;
            gemm_load_bias(bias ? bias + p * NR : NULL, m0, m1, &bias0, &bias1);
            for (ptrdiff_t r = 0; r < rows; r++)
                gemm_store_row(c + (i0 + r) * ldc + p * NR, _mm512_load_ps(tile + r * 32), _mm512_load_ps(tile + r * 32 + 16),
                               bias0, bias1, m0, m1, accumulate);
        }
    }
    _tile_release();
}
