//! Downsampling between stages: `patch_embed{1..4}`.
//! Port of Sense-X/UniFormer@52a0415 PatchEmbed (conv stride = kernel, then LayerNorm eps 1e-5 —
//! nn.LayerNorm's default, unlike the 1e-6 of the blocks) and, for `conv_stem`, the classification
//! file's head_embedding (proj.0 conv3×3 s2 → proj.1 BN → proj.2 GELU → proj.3 conv3×3 s2 → proj.4 BN)
//! and middle_embedding (proj.0 conv3×3 s2 → proj.1 BN). BatchNorms are folded into their conv.
//! Input [H, W, Cin] → [H', W', C]; stride-kernel convs floor odd sizes as PyTorch does.

import TensorCore
import Weights

enum PatchEmbed: Sendable {
    case patch(proj: Conv2d, norm: LayerNorm)
    case convStem(first: Conv2d, second: Conv2d?)   // BN folded in; GELU between the two

    /// Stage `stage` (0-based) of the embedding: patch 4 for the first, 2 after.
    init(_ w: WeightScope, stage: Int, in cin: Int, out c: Int, convStem: Bool) throws {
        if convStem {
            let p = w.child("proj")
            func conv(_ i: Int, _ o: Int, _ ci: Int) throws -> Conv2d {
                Conv2d(weight: try p.child(i).tensor("weight", shape: [o, ci, 3, 3]),
                       bias: try p.child(i).tensor("bias", shape: [o]).data, stride: 2, padding: 1)
                    .foldingOutputAffine(try channelAffine(p.child(i + 1), o))
            }
            if stage == 0 {
                self = .convStem(first: try conv(0, c / 2, cin), second: try conv(3, c, c / 2))
            } else {
                self = .convStem(first: try conv(0, c, cin), second: nil)
            }
        } else {
            let k = stage == 0 ? 4 : 2
            let proj = Conv2d(weight: try w.child("proj").tensor("weight", shape: [c, cin, k, k]),
                              bias: try w.child("proj").tensor("bias", shape: [c]).data, stride: k, padding: 0)
            self = .patch(proj: proj, norm: try layerNorm(w.child("norm"), c, eps: 1e-5))
        }
    }

    func callAsFunction(_ x: Tensor, _ ctx: ComputeContext) -> Tensor {
        switch self {
        case let .patch(proj, norm):
            return norm(proj(x, ctx), ctx)
        case let .convStem(first, second):
            var y = first(x, ctx)
            guard let second else { return y }
            geluInPlace(&y, ctx)
            return second(y, ctx)
        }
    }

    /// The output map size for an input map size, so callers can reject inputs that vanish.
    func outputSize(_ h: Int, _ w: Int) -> (Int, Int) {
        switch self {
        case let .patch(proj, _): return proj.outputSize(h, w)
        case let .convStem(first, second):
            let s = first.outputSize(h, w)
            return second.map { $0.outputSize(s.0, s.1) } ?? s
        }
    }
}
