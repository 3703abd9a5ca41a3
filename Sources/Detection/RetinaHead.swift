//! RetinaNet's head at test time (models/dense_heads/retina_head.py; candidate selection as mmdet 3.x
//! `_predict_by_feat_single`, since no UniFormer RetinaNet checkpoint exists to pin 2.11 — 2.11 keeps
//! the top nms_pre anchors by their best class score and thresholds afterwards).
//! Keys under `bbox_head.`: cls_convs.{i}.conv / reg_convs.{i}.conv (3×3, ReLU), retina_cls (3×3,
//! A·K, sigmoid), retina_reg (3×3, 4A). Per level: every (anchor, class) score > score_thr, the top
//! nms_pre of those, decoded (clipped to img_shape); all levels: boxes scaled to the original image
//! (× 1/scale_factor, as 3.x), boxes with w or h ≤ min_bbox_size dropped (when ≥ 0), NMS per class,
//! the first max_per_img.

import Backbone
import Foundation
import ModelConfig
import Necks
import TensorCore
import Weights

public struct RetinaTestConfig: Sendable, Equatable {
    public var nmsPre: Int
    public var minBoxSize: Float
    public var scoreThreshold: Float
    public var iouThreshold: Float
    public var maxPerImg: Int

    public init(_ node: ConfigNode) throws {
        nmsPre = try node.int("nms_pre", default: 1000)
        minBoxSize = Float(try node.double("min_bbox_size", default: -1))
        scoreThreshold = Float(try node.double("score_thr", default: 0.05))
        iouThreshold = Float(try node.child("nms").double("iou_threshold"))
        maxPerImg = try node.int("max_per_img", default: 100)
    }
}

public struct RetinaHead: Sendable {
    let clsConvs: [ConvModule]
    let regConvs: [ConvModule]
    let cls: Conv2d
    let reg: Conv2d
    public let anchors: AnchorGenerator
    public let coder: DeltaXYWHBBoxCoder
    public let numClasses: Int

    public init(_ node: ConfigNode, weights w: WeightScope) throws {
        let type = try node.string("type")
        guard type == "RetinaHead" else { throw ConfigError.unknownType(file: node.file, field: node.fieldPath("type"), type: type) }
        numClasses = try node.int("num_classes")
        let cin = try node.int("in_channels"), feat = try node.int("feat_channels", default: 256)
        let n = try node.int("stacked_convs", default: 4)
        guard numClasses > 0, n >= 0 && n <= 16 else { throw node.invalid("stacked_convs", "needs 0…16 convs and num_classes > 0") }
        anchors = try AnchorGenerator(node.child("anchor_generator"))
        coder = try DeltaXYWHBBoxCoder(node.child("bbox_coder"))
        clsConvs = try (0..<n).map { try ConvModule(w.child("cls_convs").child($0), in: $0 == 0 ? cin : feat, out: feat, kernel: 3,
                                                    padding: 1, norm: node.has("norm_cfg"), relu: true) }
        regConvs = try (0..<n).map { try ConvModule(w.child("reg_convs").child($0), in: $0 == 0 ? cin : feat, out: feat, kernel: 3,
                                                    padding: 1, norm: node.has("norm_cfg"), relu: true) }
        let a = anchors.numBaseAnchors, c = n > 0 ? feat : cin
        cls = Conv2d(weight: try w.child("retina_cls").tensor("weight", shape: [a * numClasses, c, 3, 3]),
                     bias: try w.child("retina_cls").tensor("bias", shape: [a * numClasses]).data, stride: 1, padding: 1)
        reg = Conv2d(weight: try w.child("retina_reg").tensor("weight", shape: [4 * a, c, 3, 3]),
                     bias: try w.child("retina_reg").tensor("bias", shape: [4 * a]).data, stride: 1, padding: 1)
    }

    public func detect(_ feats: [Tensor], meta: ImageMeta, cfg: RetinaTestConfig, _ ctx: ComputeContext) -> [Detection] {
        precondition(feats.count == anchors.strides.count, "RetinaNet: \(feats.count) levels for \(anchors.strides.count) anchor strides")
        let k = numClasses
        var items: [Scored] = []
        // 3.x rescale: boxes × (1 / scale_factor), the reciprocal taken in double, then float32
        let inv = SIMD4<Float>(Float(1 / Double(meta.scaleFactor[0])), Float(1 / Double(meta.scaleFactor[1])),
                               Float(1 / Double(meta.scaleFactor[0])), Float(1 / Double(meta.scaleFactor[1])))
        for (level, f) in feats.enumerated() {
            var c = f, r = f
            for conv in clsConvs { c = conv(c, ctx) }
            for conv in regConvs { r = conv(r, ctx) }
            let logits = cls(c, ctx), deltas = reg(r, ctx)       // [H, W, A·K], [H, W, 4A]
            let grid = anchors.gridAnchors(level: level, height: f.shape[0], width: f.shape[1])
            // filter_scores_and_topk: (anchor, class) pairs above the threshold, best nms_pre of them
            var cand: [(score: Float, flat: Int)] = []
            for (i, z) in logits.data.enumerated() {
                let s = 1 / (1 + expf(-z))
                if s > cfg.scoreThreshold { cand.append((s, i)) }
            }
            cand.sort { $0.score > $1.score || ($0.score == $1.score && $0.flat < $1.flat) }
            for (s, flat) in cand.prefix(cfg.nmsPre) {
                let anchor = flat / k, label = flat % k
                let d = SIMD4(deltas.data[4 * anchor], deltas.data[4 * anchor + 1], deltas.data[4 * anchor + 2], deltas.data[4 * anchor + 3])
                let box = coder.decode(grid[anchor], d, maxShape: meta.imageShape) * inv
                items.append(Scored(box: box, score: s, group: label))
            }
        }
        if cfg.minBoxSize >= 0 {
            items = items.filter { $0.box[2] - $0.box[0] > cfg.minBoxSize && $0.box[3] - $0.box[1] > cfg.minBoxSize }
        }
        let keep = batchedNMS(items, iouThreshold: cfg.iouThreshold)
        return keep.prefix(cfg.maxPerImg).map { Detection(box: items[$0].box, score: items[$0].score, label: items[$0].group, mask: nil) }
    }
}

/// RetinaNet (models/detectors/single_stage.py): backbone → FPN → RetinaHead. Keys: backbone.*, neck.*, bbox_head.*.
public struct SingleStageDetector: Sendable {
    public let backbone: UniFormerBackbone
    let neck: FPN
    let head: RetinaHead
    let cfg: RetinaTestConfig

    public init(_ model: ConfigNode, weights root: WeightScope) throws {
        let type = try model.string("type")
        guard type == "RetinaNet" else { throw ConfigError.unknownType(file: model.file, field: model.fieldPath("type"), type: type) }
        let bconfig = try UniFormerConfig(model.child("backbone"))
        backbone = try UniFormerBackbone(config: bconfig, weights: root.child("backbone"))
        let ncfg = try FPNConfig(model.child("neck"))
        neck = try FPN(config: ncfg, weights: root.child("neck"))
        head = try RetinaHead(model.child("bbox_head"), weights: root.child("bbox_head"))
        cfg = try RetinaTestConfig(model.child("test_cfg"))
        guard head.anchors.strides.count == ncfg.numOuts else {
            throw model.invalid("bbox_head.anchor_generator.strides", "\(head.anchors.strides.count) strides for \(ncfg.numOuts) FPN levels")
        }
    }

    public var numClasses: Int { head.numClasses }

    public func pyramid(_ input: Tensor, attention: StageAttention? = nil, _ ctx: ComputeContext) -> [Tensor] {
        neck(backbone.featureMaps(input, attention: attention, ctx), ctx)
    }

    public func detect(_ input: Tensor, meta: ImageMeta, attention: StageAttention? = nil, _ ctx: ComputeContext) -> [Detection] {
        head.detect(pyramid(input, attention: attention, ctx), meta: meta, cfg: cfg, ctx)
    }
}
