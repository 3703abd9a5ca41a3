//! ComputeContext: how many threads the engine may use, and the one place that tells OpenBLAS
//! (and glibc's allocator, to keep freed activations for reuse).
//!
//! Threading follows ggml: every loop, GEMMs included, splits its outer dimension into contiguous
//! ranges on our own threads (SpinPool's workers, which balance the ranges as the loop runs;
//! Dispatch, equal ranges, when they are busy). OpenBLAS is set to one thread, so each range's
//! sgemm runs in the calling thread: there is one thread pool, never OpenBLAS's threads spinning
//! beside ours (DESIGN.md: call sgemm single-threaded from your own parallel loop, never both).

import CBLAS
import CKernels
import Dispatch
import Foundation

public struct ComputeContext: Sendable {
    public let threads: Int
    /// When set, ops add their wall time per kind (see Profiler.swift).
    public var profiler: Profiler?
    /// The precision the matrix products really run in: bf16 only where a bf16 kernel exists.
    public let precision: Precision
    /// The bf16 kernel in use (nil in fp32).
    public let bf16: BF16Kernel?

    /// Sets OpenBLAS's process-wide thread count to 1 (the only call site in the project): the
    /// engine's own `threads` chunks call sgemm concurrently. `precision` bf16 falls back to fp32
    /// on CPUs without AMX-BF16 or AVX512-BF16 (check `precision`).
    public init(threads: Int? = nil, precision: Precision = .fp32) {
        let n = max(1, threads ?? ProcessInfo.processInfo.activeProcessorCount)
        self.threads = n
        bf16 = precision == .bf16 ? BF16Kernel.available : nil
        self.precision = bf16 == nil ? .fp32 : .bf16
        openblas_set_num_threads(1)
        _ = retainFreedMemory
    }
}

/// Inside parallel loops (every operator's work runs in one) subnormal floats, below 1.2e-38, count
/// as zero: on Intel cores every FMA that meets one takes a microcode assist of ~100+ cycles, and
/// Mask R-CNN with mmdet-initialised weights (some stage 1–2 activations underflow) ran its fused
/// MLPs 2.9× slower than with random weights of the same shapes. The calling thread's mode is
/// restored when the loop returns, so nothing else in the process (weight loading converts fp16
/// subnormals exactly) sees it; SpinPool's workers keep it. PyTorch keeps subnormals by default;
/// flushing them moves a value by less than 1.2e-38. UNIFORMER_KEEP_SUBNORMALS=1 keeps them (A/B).
let flushSubnormals = ProcessInfo.processInfo.environment["UNIFORMER_KEEP_SUBNORMALS"] != "1"

/// Runs `body` with subnormals flushed (when `flushSubnormals`), then restores the thread's mode.
@inline(__always)
func withSubnormalsFlushed<R>(_ body: () -> R) -> R {
    guard flushSubnormals else { return body() }
    let mode = uf_flush_subnormals()
    defer { uf_restore_fp_mode(mode) }
    return body()
}

/// Once per process: freed activations stay in the heap for the next pass (uf_retain_freed_memory).
private let retainFreedMemory: Void = uf_retain_freed_memory()

/// For a program that runs the engine from its main thread (the `uniformer` tool): every block,
/// however large, comes from the heap and is reused after it is freed, instead of blocks above
/// 32 MB being mapped afresh (and page-faulted in) on every forward pass. Call it first thing; a
/// thread other than the main one then cannot allocate more than 64 MB in one block.
public func allocateAllFromHeap() { uf_heap_only_allocation() }

/// Runs `body` over `count` items on at most `ctx.threads` threads, each call a contiguous range
/// (a thread may get several: SpinPool.swift balances the shares as the loop runs).
/// Disjoint-write contract: each call writes only the outputs of its own index range.
@inline(__always)
public func parallelFor(_ count: Int, _ ctx: ComputeContext, minChunk: Int = 1, _ body: @Sendable (Range<Int>) -> Void) {
    parallelChunks(count, ctx, minChunk: minChunk) { _, range in body(range) }
}

/// As `parallelFor`, also passing the calling thread's index in `0..<ctx.threads` (to pick per-thread
/// scratch; one thread's calls run one after another).
@inline(__always)
public func parallelChunks(_ count: Int, _ ctx: ComputeContext, minChunk: Int = 1, _ body: @Sendable (Int, Range<Int>) -> Void) {
    guard count > 0 else { return }
    withSubnormalsFlushed {
        let n = max(1, min(ctx.threads, count / max(1, minChunk)))
        if n == 1 { body(0, 0..<count); return }
        // the spinning workers when free (SpinPool.swift: shares balanced as the loop runs); Dispatch,
        // equal shares, for nested or concurrent loops
        if SpinPool.shared.run(count: count, chunks: n, minPiece: minChunk / 2, body) { return }
        DispatchQueue.concurrentPerform(iterations: n) { i in
            withSubnormalsFlushed { body(i, count * i / n ..< count * (i + 1) / n) }
        }
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
