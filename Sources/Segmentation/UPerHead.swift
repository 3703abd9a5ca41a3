//! UPerNet decode head, as mmseg's UPerHead (decode_heads/uper_head.py) with its PPM
//! (decode_heads/psp_head.py). Keys under `decode_head.`:
//!   psp_modules.{i}.1 (ConvModule 1×1 after AdaptiveAvgPool2d(pool_scales[i])), bottleneck (3×3),
//!   lateral_convs.{i} (1×1), fpn_convs.{i} (3×3), fpn_bottleneck (3×3), conv_seg (1×1, bias).
//! Every ConvModule is conv + BN (folded) + ReLU. Resizes are bilinear with align_corners as
//! configured (false upstream). Input: the selected pyramid levels [H_i, W_i, C_i] (channels-last);
//! output: logits at the first level's size [H_0, W_0, num_classes].

import Necks
import TensorCore
import Weights

struct UPerHead: Sendable {
    let poolScales: [Int]
    let ppm: [ConvModule]
    let bottleneck: ConvModule
    let lateral: [ConvModule]
    let fpnConvs: [ConvModule]
    let fpnBottleneck: ConvModule
    let convSeg: Linear
    let alignCorners: Bool

    init(_ w: WeightScope, inChannels: [Int], poolScales: [Int], channels c: Int, numClasses: Int, alignCorners: Bool) throws {
        self.poolScales = poolScales
        self.alignCorners = alignCorners
        let last = inChannels[inChannels.count - 1]
        ppm = try poolScales.indices.map { i in
            try ConvModule(w.child("psp_modules").child(i).child(1), in: last, out: c, kernel: 1, norm: true, relu: true)
        }
        bottleneck = try ConvModule(w.child("bottleneck"), in: last + poolScales.count * c, out: c, kernel: 3, padding: 1, norm: true, relu: true)
        lateral = try inChannels.dropLast().enumerated().map { i, cin in
            try ConvModule(w.child("lateral_convs").child(i), in: cin, out: c, kernel: 1, norm: true, relu: true)
        }
        fpnConvs = try (0..<(inChannels.count - 1)).map { i in
            try ConvModule(w.child("fpn_convs").child(i), in: c, out: c, kernel: 3, padding: 1, norm: true, relu: true)
        }
        fpnBottleneck = try ConvModule(w.child("fpn_bottleneck"), in: inChannels.count * c, out: c, kernel: 3, padding: 1, norm: true, relu: true)
        convSeg = Linear(conv1x1: try w.child("conv_seg").tensor("weight", shape: [numClasses, c, 1, 1]),
                         bias: try w.child("conv_seg").tensor("bias", shape: [numClasses]).data)
    }

    func resize(_ x: Tensor, like ref: Tensor, _ ctx: ComputeContext) -> Tensor {
        resizeBilinear(x, height: ref.shape[0], width: ref.shape[1], alignCorners: alignCorners, ctx)
    }

    /// psp_forward: [x, up(ppm_s(x)) for s in pool_scales] concatenated, then the 3×3 bottleneck.
    func pyramidPooling(_ x: Tensor, _ ctx: ComputeContext) -> Tensor {
        var parts = [x]
        for (scale, conv) in zip(poolScales, ppm) {
            parts.append(resize(conv(adaptiveAvgPool(x, size: scale), ctx), like: x, ctx))   // [H, W, c]
        }
        return bottleneck(concatChannels(parts, ctx), ctx)
    }

    func callAsFunction(_ inputs: [Tensor], _ ctx: ComputeContext) -> Tensor {
        let n = inputs.count
        var lat = zip(lateral, inputs).map { $0($1, ctx) } + [pyramidPooling(inputs[n - 1], ctx)]
        // top-down: laterals[i-1] += resize(laterals[i], size of laterals[i-1])
        for i in stride(from: n - 1, to: 0, by: -1) {
            addInPlace(&lat[i - 1], resize(lat[i], like: lat[i - 1], ctx))
        }
        var outs = (0..<(n - 1)).map { fpnConvs[$0](lat[$0], ctx) } + [lat[n - 1]]
        for i in 1..<n { outs[i] = resize(outs[i], like: outs[0], ctx) }
        let fused = fpnBottleneck(concatChannels(outs, ctx), ctx)   // [H_0, W_0, c]
        return convSeg(fused, .bias, ctx)                           // [H_0, W_0, K]
    }
}
