//! LayerNorm over the channel (last) dimension, and inference BatchNorm as a per-channel affine
//! (folded into the neighbouring convolution or linear layer at load time).

import CKernels
import Foundation

public struct LayerNorm: Sendable {
    public let weight: [Float]
    public let bias: [Float]
    public let eps: Float

    public init(weight: [Float], bias: [Float], eps: Float) {
        precondition(weight.count == bias.count, "LayerNorm: weight \(weight.count) vs bias \(bias.count)")
        self.weight = weight; self.bias = bias; self.eps = eps
    }

    /// Normalises every row of x [N, C] over C: (x − mean) / sqrt(var + eps) · weight + bias.
    public func callAsFunction(_ x: Tensor, _ ctx: ComputeContext) -> Tensor {
        let c = weight.count
        let rows = x.count / c
        precondition(rows * c == x.count, "LayerNorm(\(c)): input \(x.shape)")
        return ctx.timed("layernorm") { Tensor(uninitialized: x.shape) { out in
            let o = SharedPointer(out.baseAddress!)
            x.data.withUnsafeBufferPointer { xp in
                let src = SharedConstPointer(xp.baseAddress!)
                weight.withUnsafeBufferPointer { wp in
                    bias.withUnsafeBufferPointer { bp in
                        let w = SharedConstPointer(wp.baseAddress!), b = SharedConstPointer(bp.baseAddress!)
                        parallelFor(rows, ctx, minChunk: 64) { range in
                            uf_layernorm_rows(src.base + range.lowerBound * c, o.base + range.lowerBound * c, range.count, c,
                                              w.base, b.base, eps)
                        }
                    }
                }
            }
        } }
    }
}

/// Inference BatchNorm as y = x·scale + shift per channel.
public struct ChannelAffine: Sendable {
    public let scale: [Float]
    public let shift: [Float]

    public init(scale: [Float], shift: [Float]) { self.scale = scale; self.shift = shift }

    /// From BatchNorm's weight, bias, running_mean, running_var (PyTorch's default eps 1e-5).
    public init(batchNormWeight w: [Float], bias b: [Float], mean: [Float], variance: [Float], eps: Float = 1e-5) {
        let s = (0..<w.count).map { w[$0] / (variance[$0] + eps).squareRoot() }
        scale = s
        shift = (0..<w.count).map { b[$0] - mean[$0] * s[$0] }
    }
}
