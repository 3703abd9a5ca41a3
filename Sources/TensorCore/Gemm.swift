//! The fp32 GEMM entry points. Layers' products are cblas_sgemm, row-major, PyTorch layouts (a
//! Linear weight [out, in] is used as Bᵀ directly); OpenBLAS runs single-threaded (ComputeContext)
//! and `gemmRows` splits the rows of A and C across the engine's threads, each chunk one sgemm,
//! followed by its epilogue while the rows are in cache. Attention, whose K and V are multiplied by
//! many small blocks of query rows, packs them once per head (`PackedF32`) for the AVX-512 kernel
//! of CKernels/sgemm_packed.c instead of letting sgemm re-pack them on every call.
//! (bf16 products: BF16.swift.)

import CBLAS
import CKernels

/// A k×n right-hand operand packed for uf_sgemm_packed (owns its buffer).
public final class PackedF32: @unchecked Sendable {
    public let k: Int
    public let n: Int
    let data: UnsafeMutablePointer<Float>

    /// Whether this CPU runs the packed kernel (AVX-512).
    public static let available = uf_sgemm_packed_supported() != 0

    /// Scratch floats gemmPacked needs for a depth of k.
    public static func scratchFloats(_ k: Int) -> Int { uf_sgemm_scratch_floats(k) }

    /// B(kk, j) = b[kk·rowStride + j·colStride] · scale.
    public init(_ b: UnsafePointer<Float>, rowStride: Int, colStride: Int, k: Int, n: Int, scale: Float = 1) {
        self.k = k
        self.n = n
        let count = uf_sgemm_packed_floats(n, k)
        // 64-byte aligned: the kernel loads B with aligned vector loads.
        data = UnsafeMutableRawPointer.allocate(byteCount: max(64, count * 4), alignment: 64).bindMemory(to: Float.self, capacity: count)
        uf_sgemm_pack(b, rowStride, colStride, k, n, scale, data)
    }

    /// A Linear weight [n, k] (out × in), used as Wᵀ.
    public static func linearWeight(_ w: Tensor) -> PackedF32 {
        precondition(w.rank == 2, "PackedF32: weight \(w.shape)")
        return w.data.withUnsafeBufferPointer {
            PackedF32($0.baseAddress!, rowStride: 1, colStride: w.shape[1], k: w.shape[1], n: w.shape[0])
        }
    }

    /// The inverse of `linearWeight` (exact: packing only moves values): W[o, i] = B(i, o).
    public func unpackedLinearWeight() -> Tensor {
        let nr = packedPanelColumns, k = self.k, n = self.n, src = data
        return Tensor(uninitialized: [n, k]) { w in
            for o in 0..<n {
                let panel = src + (o / nr) * k * nr + o % nr
                for i in 0..<k { w[o * k + i] = panel[i * nr] }
            }
        }
    }

    deinit { data.deallocate() }
}

/// Columns per panel of a PackedF32 (the kernel's NR).
let packedPanelColumns = 32

/// C[m×n] = A · B + bias (or C +=) on the context's threads, then GELU on each value when `gelu`
/// (in the kernel's store, on the registers). The rows are split when every thread gets at least
/// 48 of them; fewer rows (stage 4 of a 224² classifier has 49 tokens) split B's column panels
/// instead, so both threads work without either re-reading the other's share of B.
func gemmRowsPacked(m: Int, a: UnsafePointer<Float>, lda: Int, b: PackedF32, c: UnsafeMutablePointer<Float>, ldc: Int,
                    bias: [Float]?, accumulate: Bool, gelu: Bool = false, _ ctx: ComputeContext) {
    guard m > 0 else { return }
    let ap = SharedConstPointer(a), cp = SharedPointer(c)
    let biasBox = bias
    let k = b.k, n = b.n, nr = packedPanelColumns
    let panels = (n + nr - 1) / nr
    let flags = packedStoreFlags(accumulate: accumulate, gelu: gelu)
    if ctx.threads > 1 && m < 48 * ctx.threads && panels >= ctx.threads {
        parallelFor(panels, ctx) { pr in
            let scratch = UnsafeMutablePointer<Float>.allocate(capacity: PackedF32.scratchFloats(k))
            defer { scratch.deallocate() }
            let col0 = pr.lowerBound * nr, cols = min(n, pr.upperBound * nr) - col0
            let withBias = { (bp: UnsafePointer<Float>?) in
                uf_sgemm_packed(m, cols, k, ap.base, lda, b.data + col0 * k, cp.base + col0, ldc, bp.map { $0 + col0 }, flags, scratch)
            }
            if let biasBox { biasBox.withUnsafeBufferPointer { withBias($0.baseAddress) } } else { withBias(nil) }
        }
        return
    }
    parallelFor(m, ctx, minChunk: 32) { rows in
        let scratch = UnsafeMutablePointer<Float>.allocate(capacity: PackedF32.scratchFloats(k))
        defer { scratch.deallocate() }
        let r0 = rows.lowerBound
        let withBias = { (bp: UnsafePointer<Float>?) in
            uf_sgemm_packed(rows.count, n, k, ap.base + r0 * lda, lda, b.data, cp.base + r0 * ldc, ldc, bp, flags, scratch)
        }
        if let biasBox { biasBox.withUnsafeBufferPointer { withBias($0.baseAddress) } } else { withBias(nil) }
    }
}

/// uf_sgemm_packed's `flags` (ckernels.h): C +=, and GELU in the store.
@inline(__always)
func packedStoreFlags(accumulate: Bool, gelu: Bool) -> Int32 {
    (accumulate ? UF_GEMM_ACCUMULATE : 0) | (gelu ? UF_GEMM_GELU : 0)
}

/// C[m×n] = A[m×k] · B (+ bias) (or C +=; then GELU when `gelu`), single-threaded; A at row stride
/// lda; `scratch` holds PackedF32.scratchFloats(B.k) floats.
@inline(__always)
public func gemmPacked(m: Int, a: UnsafePointer<Float>, lda: Int, b: PackedF32, c: UnsafeMutablePointer<Float>, ldc: Int,
                       bias: UnsafePointer<Float>? = nil, accumulate: Bool = false, gelu: Bool = false,
                       scratch: UnsafeMutablePointer<Float>) {
    uf_sgemm_packed(m, b.n, b.k, a, lda, b.data, c, ldc, bias, packedStoreFlags(accumulate: accumulate, gelu: gelu), scratch)
}

/// C[m×n] = alpha · A[m×k] · B[n×k]ᵀ + beta · C.  Linear: A = tokens [m, in], B = weight [out, in].
/// Leading dimensions default to packed rows; pass them to address column slices (e.g. one head of QKV).
@inline(__always)
public func gemmABt(m: Int, n: Int, k: Int,
                    a: UnsafePointer<Float>, lda: Int? = nil,
                    b: UnsafePointer<Float>, ldb: Int? = nil,
                    c: UnsafeMutablePointer<Float>, ldc: Int? = nil,
                    alpha: Float = 1, beta: Float = 0) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(m), Int32(n), Int32(k),
                alpha, a, Int32(lda ?? k), b, Int32(ldb ?? k), beta, c, Int32(ldc ?? n))
}

/// C[m×n] = alpha · A[m×k] · B[k×n] + beta · C.  Attention: P [rows, keys] · V [keys, d].
@inline(__always)
public func gemmAB(m: Int, n: Int, k: Int,
                   a: UnsafePointer<Float>, lda: Int? = nil,
                   b: UnsafePointer<Float>, ldb: Int? = nil,
                   c: UnsafeMutablePointer<Float>, ldc: Int? = nil,
                   alpha: Float = 1, beta: Float = 0) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(m), Int32(n), Int32(k),
                alpha, a, Int32(lda ?? k), b, Int32(ldb ?? n), beta, c, Int32(ldc ?? n))
}

/// C[m×n] = alpha · A · Bᵀ + beta · C with the m rows split across `ctx.threads`; `epilogue(c, rows)`
/// then runs on each chunk's output rows (bias, GELU) in the same thread.
/// `transB` false multiplies by B [k×n] instead of Bᵀ.
public func gemmRows(m: Int, n: Int, k: Int,
                     a: UnsafePointer<Float>, lda: Int? = nil,
                     b: UnsafePointer<Float>, ldb: Int? = nil, transB: Bool = true,
                     c: UnsafeMutablePointer<Float>, ldc: Int? = nil,
                     alpha: Float = 1, beta: Float = 0, _ ctx: ComputeContext,
                     epilogue: (@Sendable (UnsafeMutablePointer<Float>, Int) -> Void)? = nil) {
    let lda = lda ?? k, ldc = ldc ?? n
    let ldb = ldb ?? (transB ? k : n)
    let ap = SharedConstPointer(a), bp = SharedConstPointer(b), cp = SharedPointer(c)
    let sub = epilogueRows(n)
    // Below ~32 rows per thread the split costs more than it saves.
    parallelFor(m, ctx, minChunk: 32) { rows in
        // Sub-blocks, so the epilogue reads rows the product has just written (in L2) instead of
        // making a second pass over the whole chunk through memory.
        var r0 = rows.lowerBound
        while r0 < rows.upperBound {
            let count = min(sub, rows.upperBound - r0)
            let a0 = ap.base + r0 * lda, c0 = cp.base + r0 * ldc
            if transB {
                gemmABt(m: count, n: n, k: k, a: a0, lda: lda, b: bp.base, ldb: ldb, c: c0, ldc: ldc, alpha: alpha, beta: beta)
            } else {
                gemmAB(m: count, n: n, k: k, a: a0, lda: lda, b: bp.base, ldb: ldb, c: c0, ldc: ldc, alpha: alpha, beta: beta)
            }
            epilogue?(c0, count)
            r0 += count
        }
    }
}

/// Rows per sub-block of a GEMM with an epilogue: about 1 MB of output, at least 256 rows (sgemm
/// re-packs B on every call, so fewer rows would cost more packing than the cache saves).
@inline(__always)
func epilogueRows(_ n: Int) -> Int { max(256, (256 << 10) / max(1, n)) }
