//! Depthwise k×k convolution (groups = channels, stride 1, padding k/2) on channels-last input.
//!
//! [H, W, C] → [H, W, C]. The OIHW weight [C, 1, k, k] is repacked to [k·k, C] so the inner loop
//! runs over contiguous channels. On AVX-512 CPUs (k = 3, 5, 7) the kernel (CKernels depthwise.c)
//! accumulates 8 adjacent output pixels × 16 channels in registers, loading each input pixel once
//! per kernel row for all the outputs it feeds; elsewhere uf_depthwise_rows keeps one pixel's 64
//! channels in registers across all k² taps. Every output row is independent, so rows split across
//! threads.

import CKernels
import Foundation

public struct DepthwiseConv2d: Sendable {
    public let channels: Int
    public let kernel: Int
    let packed: [Float]     // [k·k, C]
    public let bias: [Float]

    public init(weight: Tensor, bias: [Float]?) {
        precondition(weight.rank == 4 && weight.shape[1] == 1 && weight.shape[2] == weight.shape[3],
                     "DepthwiseConv2d: weight \(weight.shape)")
        let (c, k) = (weight.shape[0], weight.shape[2])
        channels = c; kernel = k
        var p = [Float](repeating: 0, count: c * k * k)
        for cc in 0..<c { for t in 0..<(k * k) { p[t * c + cc] = weight.data[cc * k * k + t] } }
        packed = p
        self.bias = bias ?? [Float](repeating: 0, count: c)
    }

    /// Whether the pixel-blocked AVX-512 kernel runs k×k (k = 3, 5, 7); else the one-pixel kernel,
    /// its naive twin. UNIFORMER_DEPTHWISE_GENERIC=1 forces the latter, for A/B benchmarks.
    static func fastKernel(_ k: Int) -> Bool { uf_depthwise_fast_supported(Int32(k)) != 0 && !forceGeneric }
    static let forceGeneric = ProcessInfo.processInfo.environment["UNIFORMER_DEPTHWISE_GENERIC"] == "1"

    /// y = dwconv(x) + b, plus x itself when `residual` (UniFormer's `x + pos_embed(x)`).
    public func callAsFunction(_ x: Tensor, residual: Bool = false, _ ctx: ComputeContext) -> Tensor {
        precondition(x.rank == 3 && x.shape[2] == channels, "DepthwiseConv2d(\(channels)): input \(x.shape)")
        let (h, w, c) = (x.shape[0], x.shape[1], channels)
        let k = kernel
        ctx.countFLOPs(2 * Double(h * w * c * k * k))
        return ctx.timed("depthwise") { Tensor(uninitialized: x.shape) { out in
            let dst = SharedPointer(out.baseAddress!)
            x.data.withUnsafeBufferPointer { xp in
                let src = SharedConstPointer(xp.baseAddress!)
                packed.withUnsafeBufferPointer { wp in
                    bias.withUnsafeBufferPointer { bp in
                        let wt = SharedConstPointer(wp.baseAddress!), b = SharedConstPointer(bp.baseAddress!)
                        let fast = DepthwiseConv2d.fastKernel(k)
                        parallelFor(h, ctx) { rows in
                            (fast ? uf_depthwise_rows_fast : uf_depthwise_rows)(src.base, h, w, c, Int32(k), wt.base, b.base,
                                                                                residual ? 1 : 0, dst.base, rows.lowerBound, rows.upperBound)
                        }
                    }
                }
            } }
        }
    }
}
