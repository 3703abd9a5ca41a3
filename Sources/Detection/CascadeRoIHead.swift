//! CascadeRoIHead.simple_test (models/roi_heads/cascade_roi_head.py, mmdet 2.11): `num_stages` box
//! heads (`bbox_head.{i}`) refine the rois in turn — between stages each roi is re-decoded by the
//! delta of its argmax foreground class (regress_by_class, clipped to img_shape) with that stage's
//! coder stds; the classification logits of all stages are averaged, then the last stage's
//! get_bboxes + multiclass NMS; masks: every stage's mask head (`mask_head.{i}`) on the kept boxes,
//! their sigmoid maps averaged (merge_aug_masks), pasted once.

import Foundation
import ModelConfig
import TensorCore
import Weights

public struct CascadeRoIHead: Sendable {
    let boxAligns: [RoIAlign]
    let boxHeads: [BBoxHead]
    let maskAligns: [RoIAlign]
    let maskHeads: [FCNMaskHead]

    public init(_ node: ConfigNode, weights w: WeightScope) throws {
        let n = try node.int("num_stages")
        guard n >= 1 && n <= 8 else { throw node.invalid("num_stages", "must be in 1...8") }
        func list(_ key: String) throws -> [ConfigNode] {
            if case let .array(items)? = node.value[key] {
                guard items.count == n else { throw node.invalid(key, "needs \(n) entries (num_stages)") }
                return items.enumerated().map { ConfigNode($1, path: node.fieldPath("\(key)[\($0)]"), file: node.file) }
            }
            return [ConfigNode](repeating: try node.child(key), count: n)
        }
        boxAligns = try list("bbox_roi_extractor").map(extractor)
        boxHeads = try list("bbox_head").enumerated().map { try BBoxHead($1, weights: w.child("bbox_head").child($0)) }
        if node.has("mask_head") {
            maskAligns = try list("mask_roi_extractor").map(extractor)
            maskHeads = try list("mask_head").enumerated().map { try FCNMaskHead($1, weights: w.child("mask_head").child($0)) }
        } else { maskAligns = []; maskHeads = [] }
        let k = boxHeads[0].numClasses
        guard boxHeads.allSatisfy({ $0.numClasses == k }), maskHeads.allSatisfy({ $0.numClasses == k }) else {
            throw node.invalid("bbox_head", "every stage's num_classes must agree")
        }
    }

    public var numClasses: Int { boxHeads[0].numClasses }

    public func detect(_ feats: [Tensor], proposals: [Scored], meta: ImageMeta, cfg: RCNNTestConfig,
                       _ ctx: ComputeContext) -> [Detection] {
        guard !proposals.isEmpty else { return [] }
        var rois = proposals.map(\.box)
        let k = numClasses
        var logitSum = [Float](repeating: 0, count: rois.count * (k + 1))
        var lastDeltas = Tensor(zeros: [1])
        for (stage, (align, head)) in zip(boxAligns, boxHeads).enumerated() {
            let roiFeats = align(Array(feats.prefix(align.strides.count)), rois, channelsFirst: head.wantsChannelsFirst, ctx)
            let (logits, deltas) = head(roiFeats, ctx)
            for i in logitSum.indices { logitSum[i] += logits.data[i] }
            lastDeltas = deltas
            if stage < boxHeads.count - 1 {
                let per = head.classAgnostic ? 1 : k
                rois = rois.indices.map { r in
                    // label = argmax over the foreground logits (first maximum)
                    let row = logits.data[(r * (k + 1))..<(r * (k + 1) + k)]
                    let label = row.indices.max { row[$0] < row[$1] || (row[$0] == row[$1] && $0 > $1) }! - r * (k + 1)
                    let o = (r * per + (head.classAgnostic ? 0 : label)) * 4
                    let d = SIMD4(deltas.data[o], deltas.data[o + 1], deltas.data[o + 2], deltas.data[o + 3])
                    return head.coder.decode(rois[r], d, maxShape: meta.imageShape)
                }
            }
        }
        let last = boxHeads[boxHeads.count - 1]
        let stages = Float(boxHeads.count)
        let per = last.classAgnostic ? 1 : k
        var scores: [[Float]] = [], boxes: [[SIMD4<Float>]] = []
        for r in rois.indices {
            scores.append(softmaxRow(logitSum[(r * (k + 1))..<((r + 1) * (k + 1))].map { $0 / stages }[...]))
            boxes.append((0..<per).map { c in
                let o = (r * per + c) * 4
                let d = SIMD4(lastDeltas.data[o], lastDeltas.data[o + 1], lastDeltas.data[o + 2], lastDeltas.data[o + 3])
                return last.coder.decode(rois[r], d, maxShape: meta.imageShape) / meta.scaleFactor
            })
        }
        var dets = multiclassNMS(boxes: boxes, scores: scores, numClasses: k, cfg: cfg).map {
            Detection(box: $0.0.box, score: $0.0.score, label: $0.1, mask: nil)
        }
        if !maskHeads.isEmpty && !dets.isEmpty {
            attachAveragedMasks(&dets, feats: feats, heads: maskHeads, aligns: maskAligns, meta: meta,
                                threshold: cfg.maskThreshold, ctx)
        }
        return dets
    }
}
