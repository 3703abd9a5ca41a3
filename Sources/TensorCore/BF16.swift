//! `--precision bf16`: matrix products with bf16 inputs and fp32 accumulation, on AMX tiles where
//! the CPU and OS allow it, else on AVX512-BF16 (CKernels/bf16_gemm.c). Everything else — norms,
//! softmax, GELU, depthwise convs, the accumulators and every stored activation — stays fp32.
//! A CPU with neither runs fp32 (ComputeContext says which precision it really uses).

import CKernels
import Foundation

/// The arithmetic of the engine's matrix products.
public enum Precision: String, Sendable, CaseIterable {
    case fp32, bf16
}

/// The bf16 kernel this CPU runs: AMX tiles, AVX512-BF16 vectors, or none.
public enum BF16Kernel: String, Sendable {
    case amx, avx512

    public static let available: BF16Kernel? = {
        if uf_gemm_amx_supported() != 0 { return .amx }
        if uf_gemm_bf16_supported() != 0 { return .avx512 }
        return nil
    }()
}

/// A k×n right-hand operand rounded to bf16 and packed for the kernels (owns its buffer).
public final class PackedBF16: @unchecked Sendable {
    public let k: Int
    public let n: Int
    let data: UnsafeMutablePointer<UInt16>

    /// B(kk, j) = b[kk·rowStride + j·colStride] · scale.
    public init(_ b: UnsafePointer<Float>, rowStride: Int, colStride: Int, k: Int, n: Int, scale: Float = 1) {
        self.k = k
        self.n = n
        let count = uf_gemm_packed_bf16_count(n, k)
        // 64-byte aligned: the AVX-512 kernel loads B with aligned vector loads.
        data = UnsafeMutableRawPointer.allocate(byteCount: max(64, count * 2), alignment: 64).bindMemory(to: UInt16.self, capacity: count)
        uf_gemm_pack_bf16(b, rowStride, colStride, k, n, scale, data)
    }

    /// A Linear weight [n, k] (out × in), used as Wᵀ.
    public static func linearWeight(_ w: Tensor) -> PackedBF16 {
        precondition(w.rank == 2, "PackedBF16: weight \(w.shape)")
        return w.data.withUnsafeBufferPointer {
            PackedBF16($0.baseAddress!, rowStride: 1, colStride: w.shape[1], k: w.shape[1], n: w.shape[0])
        }
    }

    deinit { data.deallocate() }
}

/// C[m×n] = bf16(A) · B + bias (or C +=), single-threaded: A [m, B.k] at row stride `lda`.
/// `a16` is scratch of uf_gemm_bf16_a_count(m, B.k) values, or nil to allocate it here.
public func gemmBF16(m: Int, a: UnsafePointer<Float>, lda: Int, b: PackedBF16,
                     c: UnsafeMutablePointer<Float>, ldc: Int, bias: UnsafePointer<Float>? = nil,
                     accumulate: Bool = false, kernel: BF16Kernel, scratch a16: UnsafeMutablePointer<UInt16>? = nil) {
    guard m > 0 else { return }
    let count = uf_gemm_bf16_a_count(m, b.k)
    let buffer = a16 ?? UnsafeMutablePointer<UInt16>.allocate(capacity: count)
    defer { if a16 == nil { buffer.deallocate() } }
    uf_to_bf16_rows(a, m, b.k, lda, buffer)
    switch kernel {
    case .amx: uf_gemm_amx(m, b.n, b.k, buffer, b.data, c, ldc, bias, accumulate ? 1 : 0)
    case .avx512: uf_gemm_bf16(m, b.n, b.k, buffer, b.data, c, ldc, bias, accumulate ? 1 : 0)
    }
}

/// gemmBF16 with the m rows split across the context's threads, `epilogue(c, rows)` after each chunk.
func gemmRowsBF16(m: Int, a: UnsafePointer<Float>, lda: Int, b: PackedBF16, c: UnsafeMutablePointer<Float>, ldc: Int,
                  bias: [Float]?, accumulate: Bool, kernel: BF16Kernel, _ ctx: ComputeContext,
                  epilogue: (@Sendable (UnsafeMutablePointer<Float>, Int) -> Void)? = nil) {
    let ap = SharedConstPointer(a), cp = SharedPointer(c)
    let biasBox = bias
    let sub = epilogueRows(b.n)
    parallelFor(m, ctx, minChunk: 32) { rows in
        // one bf16 copy of A's rows per chunk, reused by every sub-block
        let a16 = UnsafeMutablePointer<UInt16>.allocate(capacity: uf_gemm_bf16_a_count(min(sub, rows.count), b.k))
        defer { a16.deallocate() }
        // sub-blocks: the epilogue (GELU) reads what the product just wrote, from cache
        var r0 = rows.lowerBound
        while r0 < rows.upperBound {
            let count = min(sub, rows.upperBound - r0)
            let c0 = cp.base + r0 * ldc
            if let biasBox {
                biasBox.withUnsafeBufferPointer { bp in
                    gemmBF16(m: count, a: ap.base + r0 * lda, lda: lda, b: b, c: c0, ldc: ldc,
                             bias: bp.baseAddress, accumulate: accumulate, kernel: kernel, scratch: a16)
                }
            } else {
                gemmBF16(m: count, a: ap.base + r0 * lda, lda: lda, b: b, c: c0, ldc: ldc,
                         accumulate: accumulate, kernel: kernel, scratch: a16)
            }
            epilogue?(c0, count)
            r0 += count
        }
    }
}

/// A layer's weights in a kernel's packed form (bf16 or fp32 panels), made on first use and kept
/// (thread-safe).
public final class PackedCache<Value>: @unchecked Sendable {
    private var value: Value?
    private let lock = NSLock()

    public init() {}

    public func get(_ make: () -> Value) -> Value {
        lock.lock(); defer { lock.unlock() }
        if let value { return value }
        let v = make()
        value = v
        return v
    }
}
