//! The single GEMM entry points: every matrix product in the engine is cblas_sgemm.
//! Row-major, PyTorch layouts: a Linear weight [out, in] is used as Bᵀ directly.

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
