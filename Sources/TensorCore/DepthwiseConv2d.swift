//! Depthwise k×k convolution (groups = channels, stride 1, padding k/2) on channels-last input.
//!
//! [H, W, C] → [H, W, C]. The OIHW weight [C, 1, k, k] is repacked to [k·k, C] so the inner loop
//! runs over contiguous channels; the kernel (CKernels uf_depthwise_rows) keeps a pixel's 64-channel
//! accumulators in registers across all k² taps, and every output row is independent, so rows
//! split across threads.

import CKernels

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
                        parallelFor(h, ctx) { rows in
                            uf_depthwise_rows(src.base, h, w, c, Int32(k), wt.base, b.base, residual ? 1 : 0,
                                              dst.base, rows.lowerBound, rows.upperBound)
                        }
                    }
                }
            } }
        }
    }
}
