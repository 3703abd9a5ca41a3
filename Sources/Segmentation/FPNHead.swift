//! Semantic FPN decode head, as mmseg's FPNHead (decode_heads/fpn_head.py). Keys under `decode_head.`:
//!   scale_heads.{i}.{j}: for level i, max(1, log2(stride_i / stride_0)) ConvModules (3×3, BN, ReLU),
//!   each followed by a ×2 bilinear Upsample when stride_i ≠ stride_0 (so the convs sit at j = 0, 2, 4…);
//!   conv_seg (1×1, bias).
//! Output = Σ_i resize(scale_head_i(x_i), size of level 0), then conv_seg: [H_0, W_0, num_classes].

import Necks
import TensorCore
import Weights

struct FPNHead: Sendable {
    let heads: [[ConvModule]]
    let upsample: [Bool]
    let convSeg: Linear
    let alignCorners: Bool

    init(_ w: WeightScope, inChannels: [Int], featureStrides: [Int], channels c: Int, numClasses: Int, alignCorners: Bool) throws {
        self.alignCorners = alignCorners
        var heads: [[ConvModule]] = []
        var upsample: [Bool] = []
        for (i, stride) in featureStrides.enumerated() {
            let length = max(1, stride.trailingZeroBitCount - featureStrides[0].trailingZeroBitCount)
            let up = stride != featureStrides[0]
            let scope = w.child("scale_heads").child(i)
            heads.append(try (0..<length).map { k in
                try ConvModule(scope.child(up ? 2 * k : k), in: k == 0 ? inChannels[i] : c, out: c, kernel: 3,
                               padding: 1, norm: true, relu: true)
            })
            upsample.append(up)
        }
        self.heads = heads
        self.upsample = upsample
        convSeg = Linear(conv1x1: try w.child("conv_seg").tensor("weight", shape: [numClasses, c, 1, 1]),
                         bias: try w.child("conv_seg").tensor("bias", shape: [numClasses]).data)
    }

    func callAsFunction(_ inputs: [Tensor], _ ctx: ComputeContext) -> Tensor {
        var output = Tensor(zeros: [0])
        for (i, head) in heads.enumerated() {
            var y = inputs[i]
            for conv in head {
                y = conv(y, ctx)
                if upsample[i] {   // mmseg Upsample(scale_factor=2, mode='bilinear')
                    y = resizeBilinear(y, height: 2 * y.shape[0], width: 2 * y.shape[1], alignCorners: alignCorners, ctx)
                }
            }
            if i == 0 {
                output = y
            } else {   // in place: no copy of the accumulated map per level
                addInPlace(&output, resizeBilinear(y, height: output.shape[0], width: output.shape[1], alignCorners: alignCorners, ctx))
            }
        }
        return convSeg(output, .bias, ctx)
    }
}
