//! Element-wise activations.

import CKernels

/// Applies exact-form GELU, x·½·(1 + erf(x/√2)) — PyTorch's nn.GELU() default (approximate='none') — in place to every element of t.
public func geluInPlace(_ t: inout Tensor, _ ctx: ComputeContext) {
    let n = t.count
    t.data.withUnsafeMutableBufferPointer { p in
        let base = SharedPointer(p.baseAddress!)
        parallelFor(n, ctx, minChunk: 16384) { range in
            uf_bias_gelu_rows(base.base + range.lowerBound, 1, range.count, nil)
        }
    }
}

/// c[r, :] = gelu(c[r, :] + bias) for `rows` rows of `cols`: the fused epilogue of an MLP's first layer.
@inline(__always)
public func biasGELURows(_ c: UnsafeMutablePointer<Float>, rows: Int, cols: Int, bias: [Float]?) {
    if let bias {
        bias.withUnsafeBufferPointer { uf_bias_gelu_rows(c, rows, cols, $0.baseAddress!) }
    } else {
        uf_bias_gelu_rows(c, rows, cols, nil)
    }
}

/// max(x, 0) in place (vectorised C loop; over the context's threads for large tensors).
public func reluInPlace(_ t: inout Tensor, _ ctx: ComputeContext? = nil) {
    t.data.withUnsafeMutableBufferPointer { p in
        guard let start = p.baseAddress, p.count > 0 else { return }
        let base = SharedPointer(start)
        if let ctx, p.count >= 1 << 17 {
            parallelFor(p.count, ctx, minChunk: 1 << 16) { r in uf_relu(base.base + r.lowerBound, r.count) }
        } else {
            uf_relu(base.base, p.count)
        }
    }
}
