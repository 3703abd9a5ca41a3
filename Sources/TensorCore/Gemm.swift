//! The single GEMM entry points: every matrix product in the engine is cblas_sgemm.
//! Row-major, PyTorch layouts: a Linear weight [out, in] is used as Bᵀ directly.
//! OpenBLAS runs single-threaded (ComputeContext); `gemmRows` splits the rows of A and C across
//! the engine's threads, each chunk one sgemm, followed by its epilogue while the rows are in cache.

import CBLAS

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
    // Below ~32 rows per thread the split costs more than it saves.
    parallelFor(m, ctx, minChunk: 32) { rows in
        let a0 = ap.base + rows.lowerBound * lda, c0 = cp.base + rows.lowerBound * ldc
        if transB {
            gemmABt(m: rows.count, n: n, k: k, a: a0, lda: lda, b: bp.base, ldb: ldb, c: c0, ldc: ldc, alpha: alpha, beta: beta)
        } else {
            gemmAB(m: rows.count, n: n, k: k, a: a0, lda: lda, b: bp.base, ldb: ldb, c: c0, ldc: ldc, alpha: alpha, beta: beta)
        }
        epilogue?(c0, rows.count)
    }
}
