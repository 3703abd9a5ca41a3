//! RoI box heads (models/roi_heads/bbox_heads/convfc_bbox_head.py, mmdet 2.11): ConvFCBBoxHead with
//! shared convs (ConvModule 3×3 + BN + ReLU: `shared_convs.{i}`) then shared fcs (`shared_fcs.{i}`,
//! ReLU) then `fc_cls` (num_classes + 1, background last) and `fc_reg` (4 per class, or 4 when
//! reg_class_agnostic). Shared2FCBBoxHead = 0 convs + 2 fcs; upstream's cascade heads
//! (ConvFCBBoxHead, num_shared_convs 4, num_shared_fcs 1, BN). The fc input is the roi feature
//! flattened in PyTorch's NCHW order.
//! `get_bboxes`: softmax scores, class-wise deltas decoded against the rois (clipped to img_shape),
//! divided by the scale factor when rescaling to the original image.

import ModelConfig
import Necks
import TensorCore
import Weights

public struct BBoxHead: Sendable {
    let convs: [ConvModule]
    let fcs: [Linear]
    let cls: Linear
    let reg: Linear
    public let numClasses: Int
    public let classAgnostic: Bool
    public let coder: DeltaXYWHBBoxCoder
    let roiSize: Int

    public init(_ node: ConfigNode, weights w: WeightScope) throws {
        let type = try node.string("type")
        var numConvs = 0, numFCs = 2, normConvs = false
        switch type {
        case "Shared2FCBBoxHead": break
        case "Shared4Conv1FCBBoxHead": numConvs = 4; numFCs = 1; normConvs = node.has("norm_cfg")
        case "ConvFCBBoxHead":
            numConvs = try node.int("num_shared_convs", default: 0)
            numFCs = try node.int("num_shared_fcs", default: 0)
            normConvs = node.has("norm_cfg")
            guard try node.int("num_cls_convs", default: 0) == 0, try node.int("num_cls_fcs", default: 0) == 0,
                  try node.int("num_reg_convs", default: 0) == 0, try node.int("num_reg_fcs", default: 0) == 0 else {
                throw node.invalid("num_cls_convs", "separate cls/reg branches are not supported")
            }
        default: throw ConfigError.unknownType(file: node.file, field: node.fieldPath("type"), type: type)
        }
        let cin = try node.int("in_channels")
        roiSize = try node.int("roi_feat_size", default: 7)
        let convOut = try node.int("conv_out_channels", default: 256)
        let fcOut = try node.int("fc_out_channels", default: 1024)
        numClasses = try node.int("num_classes")
        classAgnostic = try node.bool("reg_class_agnostic", default: false)
        coder = try DeltaXYWHBBoxCoder(node.child("bbox_coder"))
        guard numClasses > 0 && numClasses <= 10_000, numConvs >= 0 && numConvs <= 16, numFCs >= 1 && numFCs <= 8 else {
            throw node.invalid("num_classes", "needs num_classes > 0 and 1…8 shared fcs")
        }
        convs = try (0..<numConvs).map { i in
            try ConvModule(w.child("shared_convs").child(i), in: i == 0 ? cin : convOut, out: convOut, kernel: 3,
                           padding: 1, norm: normConvs, relu: true)
        }
        let flat = (numConvs > 0 ? convOut : cin) * roiSize * roiSize
        fcs = try (0..<numFCs).map { i in
            Linear(weight: try w.child("shared_fcs").child(i).tensor("weight", shape: [fcOut, i == 0 ? flat : fcOut]),
                   bias: try w.child("shared_fcs").child(i).tensor("bias", shape: [fcOut]).data)
        }
        cls = Linear(weight: try w.child("fc_cls").tensor("weight", shape: [numClasses + 1, fcOut]),
                     bias: try w.child("fc_cls").tensor("bias", shape: [numClasses + 1]).data)
        let regOut = classAgnostic ? 4 : 4 * numClasses
        reg = Linear(weight: try w.child("fc_reg").tensor("weight", shape: [regOut, fcOut]),
                     bias: try w.child("fc_reg").tensor("bias", shape: [regOut]).data)
    }

    /// Whether the roi features must come channels-first (fcs straight after RoIAlign).
    var wantsChannelsFirst: Bool { convs.isEmpty }

    /// roi features [R, …] → (class logits [R, K+1], deltas [R, 4K or 4]).
    public func callAsFunction(_ feats: Tensor, _ ctx: ComputeContext) -> (scores: Tensor, deltas: Tensor) {
        let r = feats.shape[0]
        var x: Tensor
        if convs.isEmpty {
            x = feats.reshaped([r, feats.count / r])
        } else {
            // All rois at once: their [s, s, C] maps stacked vertically with one zero row between
            // neighbours, so a 3×3 pad-1 conv over the stack sees exactly each roi's zero padding
            // (the separators are re-zeroed after every conv). One GEMM per conv instead of one per roi.
            let s = roiSize, c0 = feats.shape[3], band = s + 1
            var stack = Tensor(zeros: [r * band - 1, s, c0])
            stack.data.withUnsafeMutableBufferPointer { dst in
                feats.data.withUnsafeBufferPointer { src in
                    for i in 0..<r {
                        (dst.baseAddress! + i * band * s * c0).update(from: src.baseAddress! + i * s * s * c0, count: s * s * c0)
                    }
                }
            }
            for conv in convs {
                stack = conv(stack, ctx)
                let c = stack.shape[2]
                stack.data.withUnsafeMutableBufferPointer { p in
                    for i in 1..<max(r, 1) { (p.baseAddress! + (i * band - 1) * s * c).update(repeating: 0, count: s * c) }
                }
            }
            let c = stack.shape[2]
            var rows = [Float](repeating: 0, count: r * c * s * s)
            for i in 0..<r {                      // roi i's map, flattened in NCHW order
                for y in 0..<s { for xx in 0..<s { for ch in 0..<c {
                    rows[i * c * s * s + (ch * s + y) * s + xx] = stack.data[((i * band + y) * s + xx) * c + ch]
                } } }
            }
            x = Tensor(shape: [r, c * s * s], data: rows)
        }
        for fc in fcs { x = fc(x, .bias, ctx); reluInPlace(&x, ctx) }
        return (cls(x, .bias, ctx), reg(x, .bias, ctx))
    }
}
