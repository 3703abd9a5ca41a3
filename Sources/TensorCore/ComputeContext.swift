//! ComputeContext: how many threads the engine may use, and the one place that tells OpenBLAS.
//!
//! Threading follows ggml: non-GEMM loops split their outer dimension into `[ith, nth)` chunks on
//! our own threads; sgemm is called only from the orchestrating thread and uses OpenBLAS's own
//! pthreads. The two never nest (OpenBLAS issues #1761, #2126: concurrent callers race).

import CBLAS
import Dispatch
import Foundation

public struct ComputeContext: Sendable {
    public let threads: Int

    /// Sets OpenBLAS's process-wide thread count to `threads` (the only call site in the project).
    public init(threads: Int? = nil) {
        let n = max(1, threads ?? ProcessInfo.processInfo.activeProcessorCount)
        self.threads = n
        openblas_set_num_threads(Int32(n))
    }
}

/// Runs `body` over `count` items split into at most `ctx.threads` contiguous chunks.
/// Disjoint-write contract: each chunk writes only the outputs of its own index range.
/// `body` must not call sgemm (see the file header).
@inline(__always)
public func parallelFor(_ count: Int, _ ctx: ComputeContext, minChunk: Int = 1, _ body: @Sendable (Range<Int>) -> Void) {
    guard count > 0 else { return }
    let n = max(1, min(ctx.threads, count / max(1, minChunk)))
    if n == 1 { body(0..<count); return }
    DispatchQueue.concurrentPerform(iterations: n) { i in
        body(count * i / n ..< count * (i + 1) / n)
    }
}

/// A mutable pointer that may cross into `parallelFor` chunks (disjoint writes only).
public struct SharedPointer: @unchecked Sendable {
    public let base: UnsafeMutablePointer<Float>
    public init(_ base: UnsafeMutablePointer<Float>) { self.base = base }
}

/// A read-only pointer that may cross into `parallelFor` chunks.
public struct SharedConstPointer: @unchecked Sendable {
    public let base: UnsafePointer<Float>
    public init(_ base: UnsafePointer<Float>) { self.base = base }
}
