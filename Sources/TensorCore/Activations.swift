//! Element-wise activations.

import CKernels
import Foundation

/// Exact GELU, x·½·(1 + erf(x/√2)) — PyTorch's nn.GELU() default (approximate='none').
@inline(__always)
public func gelu(_ x: Float) -> Float {
    0.5 * x * (1 + erff(x * 0.70710678118654752440))
}

/// Applies GELU in place to every element of t.
public func geluInPlace(_ t: inout Tensor, _ ctx: ComputeContext) {
    let n = t.count
    t.data.withUnsafeMutableBufferPointer { p in
        let base = SharedPointer(p.baseAddress!)
        parallelFor(n, ctx, minChunk: 16384) { range in
            uf_bias_gelu_rows(base.base + range.lowerBound, 1, range.count, nil)
        }
    }
}

/// t[r, :] = gelu(t[r, :] + bias) for every row: the fused epilogue of an MLP's first layer.
public func addBiasGelu(_ t: inout Tensor, bias: [Float]?, _ ctx: ComputeContext) {
    let c = t.shape.last!
    let rows = t.count / c
    t.data.withUnsafeMutableBufferPointer { p in
        let base = SharedPointer(p.baseAddress!)
        let b = bias ?? [Float](repeating: 0, count: c)
        b.withUnsafeBufferPointer { bp in
            let bb = SharedConstPointer(bp.baseAddress!)
            parallelFor(rows, ctx, minChunk: 16) { range in
                uf_bias_gelu_rows(base.base + range.lowerBound * c, range.count, c, bb.base)
            }
        }
    }
}
