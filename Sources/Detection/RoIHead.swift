//! StandardRoIHead.simple_test (models/roi_heads/standard_roi_head.py + test_mixins.py, mmdet 2.11):
//! rois = proposals → RoIAlign (bbox_roi_extractor) → bbox head → softmax, class-wise decode (clipped
//! to img_shape), rescale to the original image, multiclass NMS (score > score_thr, batched by class,
//! max_per_img); then masks: the kept boxes times the scale factor → RoIAlign (mask_roi_extractor) →
//! mask head → sigmoid of the predicted class → pasted into the original image at mask_thr_binary.

import Foundation
import ModelConfig
import TensorCore
import Weights

public struct RCNNTestConfig: Sendable, Equatable {
    public var scoreThreshold: Float
    public var iouThreshold: Float
    public var maxPerImg: Int
    public var maskThreshold: Float

    public init(_ node: ConfigNode) throws {
        scoreThreshold = Float(try node.double("score_thr", default: 0.05))
        iouThreshold = Float(try node.child("nms").double("iou_threshold"))
        maxPerImg = try node.int("max_per_img", default: 100)
        maskThreshold = Float(try node.double("mask_thr_binary", default: 0.5))
    }
}

/// One detection in original-image pixels.
public struct Detection: Sendable, Equatable {
    public var box: SIMD4<Float>          // x1, y1, x2, y2
    public var score: Float
    public var label: Int
    public var mask: [Bool]?              // row-major, original image size

    public init(box: SIMD4<Float>, score: Float, label: Int, mask: [Bool]? = nil) {
        self.box = box; self.score = score; self.label = label; self.mask = mask
    }
}

/// What the heads need to know about the prepared image.
public struct ImageMeta: Sendable {
    public var originalSize: (h: Int, w: Int)
    public var imageShape: (h: Int, w: Int)      // after resize, before padding
    public var scaleFactor: SIMD4<Float>         // w_scale, h_scale, w_scale, h_scale (float32)

    public init(originalSize: (h: Int, w: Int), imageShape: (h: Int, w: Int)) {
        self.originalSize = originalSize
        self.imageShape = imageShape
        // mmdet Resize: w_scale = new_w / w, h_scale = new_h / h, stored as float32
        let ws = Float(Double(imageShape.w) / Double(originalSize.w)), hs = Float(Double(imageShape.h) / Double(originalSize.h))
        scaleFactor = SIMD4(ws, hs, ws, hs)
    }
}

func extractor(_ node: ConfigNode) throws -> RoIAlign {
    let type = try node.string("type")
    guard type == "SingleRoIExtractor" else { throw ConfigError.unknownType(file: node.file, field: node.fieldPath("type"), type: type) }
    let layer = try node.child("roi_layer")
    guard try layer.string("type") == "RoIAlign" else { throw layer.invalid("type", "only RoIAlign is supported") }
    guard try layer.bool("aligned", default: true) else { throw layer.invalid("aligned", "only aligned RoIAlign is supported") }
    guard try layer.string("pool_mode", default: "avg") == "avg" else { throw layer.invalid("pool_mode", "only avg is supported") }
    let size = try layer.int("output_size")
    let strides = try node.ints("featmap_strides")
    guard size > 0 && size <= 64, !strides.isEmpty else { throw node.invalid("featmap_strides", "needs strides and an output size") }
    return RoIAlign(outputSize: size, samplingRatio: try layer.int("sampling_ratio", default: 0), strides: strides,
                    finestScale: Float(try node.double("finest_scale", default: 56)))
}

/// multiclass_nms (core/post_processing/bbox_nms.py): candidates (roi-major, class-minor) with
/// score > thr, NMS batched by class, the first max_num. Boxes [R][K] or [R][1] (class-agnostic).
func multiclassNMS(boxes: [[SIMD4<Float>]], scores: [[Float]], numClasses k: Int, cfg: RCNNTestConfig) -> [(Scored, Int)] {
    var items: [Scored] = []
    for r in boxes.indices {
        for c in 0..<k where scores[r][c] > cfg.scoreThreshold {
            items.append(Scored(box: boxes[r][boxes[r].count == 1 ? 0 : c], score: scores[r][c], group: c))
        }
    }
    let keep = batchedNMS(items, iouThreshold: cfg.iouThreshold)
    return (cfg.maxPerImg > 0 ? Array(keep.prefix(cfg.maxPerImg)) : keep).map { (items[$0], items[$0].group) }
}

func softmaxRow(_ z: ArraySlice<Float>) -> [Float] {
    let m = z.max() ?? 0
    let e = z.map { expf($0 - m) }
    let s = e.reduce(0, +)
    return e.map { $0 / s }
}

public struct StandardRoIHead: Sendable {
    let boxAlign: RoIAlign
    let boxHead: BBoxHead
    let maskAlign: RoIAlign?
    let maskHead: FCNMaskHead?

    public init(_ node: ConfigNode, weights w: WeightScope) throws {
        boxAlign = try extractor(node.child("bbox_roi_extractor"))
        boxHead = try BBoxHead(node.child("bbox_head"), weights: w.child("bbox_head"))
        if node.has("mask_head") {
            maskAlign = try extractor(node.child("mask_roi_extractor"))
            maskHead = try FCNMaskHead(node.child("mask_head"), weights: w.child("mask_head"))
            guard maskHead!.numClasses == boxHead.numClasses else {
                throw node.invalid("mask_head.num_classes", "\(maskHead!.numClasses) disagrees with bbox_head.num_classes \(boxHead.numClasses)")
            }
        } else { maskAlign = nil; maskHead = nil }
    }

    public var numClasses: Int { boxHead.numClasses }

    public func detect(_ feats: [Tensor], proposals: [Scored], meta: ImageMeta, cfg: RCNNTestConfig,
                       _ ctx: ComputeContext) -> [Detection] {
        guard !proposals.isEmpty else { return [] }
        let rois = proposals.map(\.box)
        let roiFeats = boxAlign(Array(feats.prefix(boxAlign.strides.count)), rois, channelsFirst: boxHead.wantsChannelsFirst, ctx)
        let (logits, deltas) = boxHead(roiFeats, ctx)
        let k = boxHead.numClasses, per = boxHead.classAgnostic ? 1 : k
        var scores: [[Float]] = [], boxes: [[SIMD4<Float>]] = []
        for r in rois.indices {
            scores.append(softmaxRow(logits.data[(r * (k + 1))..<((r + 1) * (k + 1))]))
            boxes.append((0..<per).map { c in
                let o = (r * per + c) * 4
                let d = SIMD4(deltas.data[o], deltas.data[o + 1], deltas.data[o + 2], deltas.data[o + 3])
                return boxHead.coder.decode(rois[r], d, maxShape: meta.imageShape) / meta.scaleFactor
            })
        }
        var dets = multiclassNMS(boxes: boxes, scores: scores, numClasses: k, cfg: cfg).map {
            Detection(box: $0.0.box, score: $0.0.score, label: $0.1, mask: nil)
        }
        if let maskHead, let maskAlign, !dets.isEmpty {
            attachAveragedMasks(&dets, feats: feats, heads: [maskHead], aligns: [maskAlign], meta: meta,
                                threshold: cfg.maskThreshold, ctx)
        }
        return dets
    }
}

/// simple_test_mask + get_seg_masks: masks from one or several mask heads (cascade: merge_aug_masks averages their sigmoid maps), pasted
/// into the original image. mmdet 2.11 scales the boxes back to input pixels for RoIAlign and divides
/// them by the scale factor again for pasting.
func attachAveragedMasks(_ dets: inout [Detection], feats: [Tensor], heads: [FCNMaskHead], aligns: [RoIAlign],
                         meta: ImageMeta, threshold: Float, _ ctx: ComputeContext) {
    let scaled = dets.map { $0.box * meta.scaleFactor }
    let (oh, ow) = meta.originalSize
    var probs = [[Float]](repeating: [], count: dets.count)
    var size = 0
    for (head, align) in zip(heads, aligns) {
        let roiFeats = align(Array(feats.prefix(align.strides.count)), scaled, channelsFirst: false, ctx)
        size = 2 * align.outputSize
        let logits = head.logits(batch: roiFeats, channels: dets.map { head.classAgnostic ? 0 : $0.label }, ctx)
        for i in dets.indices {
            let p = logits[i].map { 1 / (1 + expf(-$0)) }
            probs[i] = probs[i].isEmpty ? p : zip(probs[i], p).map { $0 + $1 }
        }
    }
    let n = Float(heads.count)
    ctx.timed("paste masks") {
        for i in dets.indices {
            let mean = heads.count == 1 ? probs[i] : probs[i].map { $0 / n }
            dets[i].mask = pasteMask(mean, size: size, box: scaled[i] / meta.scaleFactor, imageHeight: oh, imageWidth: ow,
                                     threshold: threshold)
        }
    }
}
