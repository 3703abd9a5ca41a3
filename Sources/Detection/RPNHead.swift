//! RPNHead at test time (models/dense_heads/rpn_head.py, mmdet 2.11 `_get_bboxes`).
//! Keys under `rpn_head.`: rpn_conv (3×3, ReLU), rpn_cls (1×1, A outputs, sigmoid), rpn_reg (1×1, 4A).
//! Per level: sigmoid scores in (y, x, anchor) order, the top `nms_pre` by score, decoded against the
//! anchors and clipped to the resized image (img_shape, before padding); all levels together: boxes
//! narrower or lower than `min_bbox_size` dropped only when it is > 0 (2.11; 3.x also drops empty boxes
//! at 0), NMS per level (batched by level id), the first `max_per_img`.

import ModelConfig
import TensorCore
import Weights

public struct RPNTestConfig: Sendable, Equatable {
    public var nmsPre: Int
    public var maxPerImg: Int
    public var iouThreshold: Float
    public var minBoxSize: Float

    public init(_ node: ConfigNode) throws {
        nmsPre = try node.int("nms_pre", default: 1000)
        maxPerImg = try node.has("max_per_img") ? node.int("max_per_img") : node.int("max_num", default: 1000)
        if node.has("nms") { iouThreshold = Float(try node.child("nms").double("iou_threshold")) }
        else { iouThreshold = Float(try node.double("nms_thr")) }
        minBoxSize = Float(try node.double("min_bbox_size", default: 0))
        guard nmsPre >= 0, maxPerImg > 0, (0...1).contains(iouThreshold) else {
            throw node.invalid("nms", "nms_pre ≥ 0, max_per_img > 0 and iou_threshold in [0, 1] are required")
        }
    }
}

public struct RPNHead: Sendable {
    let conv: Conv2d
    /// rpn_cls and rpn_reg as one product: outputs [A logits | 4A deltas] per pixel, so the conv's
    /// output (69 MB at the finest level of a 1344×800 input) is read once, not twice.
    let clsReg: Linear
    let numAnchors: Int
    public let anchors: AnchorGenerator
    public let coder: DeltaXYWHBBoxCoder

    public init(_ node: ConfigNode, weights w: WeightScope) throws {
        let cin = try node.int("in_channels"), feat = try node.int("feat_channels", default: cin)
        anchors = try AnchorGenerator(node.child("anchor_generator"))
        coder = try DeltaXYWHBBoxCoder(node.child("bbox_coder"))
        let a = anchors.numBaseAnchors
        conv = Conv2d(weight: try w.child("rpn_conv").tensor("weight", shape: [feat, cin, 3, 3]),
                      bias: try w.child("rpn_conv").tensor("bias", shape: [feat]).data, stride: 1, padding: 1)
        let clsW = try w.child("rpn_cls").tensor("weight", shape: [a, feat, 1, 1])
        let regW = try w.child("rpn_reg").tensor("weight", shape: [4 * a, feat, 1, 1])
        clsReg = Linear(weight: Tensor(shape: [5 * a, feat], data: clsW.data + regW.data),
                        bias: try w.child("rpn_cls").tensor("bias", shape: [a]).data
                            + w.child("rpn_reg").tensor("bias", shape: [4 * a]).data)
        numAnchors = a
    }

    /// Proposals [x1, y1, x2, y2] with scores, in input-pixel coordinates, best first.
    /// `imageShape` is the resized image (height, width) before padding.
    public func proposals(_ feats: [Tensor], imageShape: (h: Int, w: Int), cfg: RPNTestConfig,
                          _ ctx: ComputeContext) -> [Scored] {
        precondition(feats.count == anchors.strides.count, "RPN: \(feats.count) levels for \(anchors.strides.count) anchor strides")
        var all: [Scored] = []
        for (level, f) in feats.enumerated() {
            var t = conv(f, ctx)
            reluInPlace(&t, ctx)
            let out = clsReg(t, .bias, ctx)                    // [H·W, A logits | 4A deltas]
            let a = numAnchors, per = 5 * a
            let grid = anchors.gridAnchors(level: level, height: f.shape[0], width: f.shape[1])
            // index i = pixel · A + anchor, as the [H, W, A] logits of rpn_cls
            let scores = (0..<(out.count / per * a)).map { i in 1 / (1 + expf(-out.data[i / a * per + i % a])) }
            // scores.sort(descending=True)[:nms_pre]
            let order = cfg.nmsPre > 0 && scores.count > cfg.nmsPre ? topScoreIndices(scores, cfg.nmsPre) : Array(scores.indices)
            for i in order {
                let d0 = i / a * per + a + 4 * (i % a)
                let d = SIMD4(out.data[d0], out.data[d0 + 1], out.data[d0 + 2], out.data[d0 + 3])
                all.append(Scored(box: coder.decode(grid[i], d, maxShape: imageShape), score: scores[i], group: level))
            }
        }
        if cfg.minBoxSize > 0 {
            all = all.filter { $0.box[2] - $0.box[0] >= cfg.minBoxSize && $0.box[3] - $0.box[1] >= cfg.minBoxSize }
        }
        let keep = batchedNMS(all, iouThreshold: cfg.iouThreshold, limit: cfg.maxPerImg)
        return keep.map { all[$0] }
    }
}

import Foundation
