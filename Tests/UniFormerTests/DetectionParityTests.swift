// Detection parity with mmdetection (Mask R-CNN / Cascade Mask R-CNN / RetinaNet built by mmdet 3.3.0
// around the reference backbone, with mmdet 2.11's inference semantics where they differ; torchvision's
// nms/roi_align standing in for mmcv's ops — tasks/reference/detection_fixtures.py).
// Compared stage by stage: the input, the FPN levels, the RPN proposals, the final detections
// (same class, box IoU ≥ 0.99 — or coordinates within 0.01 px for zero-area boxes —, score within 1e-3 for ≥ 99 % of the reference's) and their masks (IoU ≥ 0.99).

import Detection
import Foundation
import Imaging
import ModelConfig
import TensorCore
import Testing
import UniFormer
import Weights

func boxIoU(_ a: SIMD4<Float>, _ b: SIMD4<Float>) -> Float {
    let w = max(min(a[2], b[2]) - max(a[0], b[0]), 0), h = max(min(a[3], b[3]) - max(a[1], b[1]), 0)
    let inter = w * h, union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return union > 0 ? inter / union : (a == b ? 1 : 0)
}

/// The same box: IoU ≥ 0.99, or — for the zero-area boxes mmdet 2.11 keeps (clipped to a border),
/// where IoU is undefined — every coordinate within 0.01 px.
func sameBox(_ a: SIMD4<Float>, _ b: SIMD4<Float>) -> Bool {
    if boxIoU(a, b) >= 0.99 { return true }
    let d = a - b
    return max(max(abs(d[0]), abs(d[1])), max(abs(d[2]), abs(d[3]))) <= 0.01
}

/// Rows of a [N, 5] tensor as (box, score).
func scoredRows(_ t: Tensor) -> [(SIMD4<Float>, Float)] {
    (0..<(t.shape.first ?? 0)).map { i in
        (SIMD4(t.data[5 * i], t.data[5 * i + 1], t.data[5 * i + 2], t.data[5 * i + 3]), t.data[5 * i + 4])
    }
}

/// numpy.packbits(mask, axis=-1) rows → booleans (big-endian bit order).
func unpackBits(_ packed: ArraySlice<Float>, width: Int) -> [Bool] {
    let bytesPerRow = (width + 7) / 8
    let rows = packed.count / bytesPerRow
    var out = [Bool]()
    out.reserveCapacity(rows * width)
    let base = packed.startIndex
    for r in 0..<rows { for x in 0..<width {
        let byte = UInt8(packed[base + r * bytesPerRow + x / 8])
        out.append(byte & (0x80 >> UInt8(x % 8)) != 0)
    } }
    return out
}

@Suite struct DetectionParity {
    @Test(arguments: ["mask_rcnn_global", "mask_rcnn_hybrid", "cascade_mask_rcnn", "mask_rcnn_empty", "mask_rcnn_tiny_image", "retinanet"])
    func matchesMmdet(_ name: String) throws {
        let dir = Fixtures.root.appendingPathComponent("detection").appendingPathComponent(name)
        let json = try JSON.load(contentsOf: dir.appendingPathComponent("config.json"))
        guard case let .string(weights)? = json["weights"] else { Issue.record("\(name): no weights path"); return }
        let model = try ObjectDetector(model: dir.appendingPathComponent("config.json").path,
                                       weights: dir.appendingPathComponent(weights), threads: 2)
        let io = try StateDict(contentsOf: dir.appendingPathComponent("io.safetensors"))
        func ref(_ key: String) throws -> Tensor { try #require(io.tensors[key]).tensor() }
        let ctx = model.context
        let attention = try fixtureOverride(dir)

        // 1. the input: decode, keep-ratio resize, normalise, pad to 32
        let image = try loadImage(contentsOf: dir.appendingPathComponent("image.png"))
        let (input, meta) = model.prepare(image)
        let wantInput = try ref("input")
        #expect(input.shape == wantInput.shape && maxAbsDiff(input.data, wantInput.data) <= 1e-5, "\(name): input")

        // 2. FPN levels on the reference input
        let feats = model.detector.pyramid(wantInput, attention: attention, ctx)
        for (i, f) in feats.enumerated() {
            let cmp = Comparison(hwcToNCHW(f), try ref("fpn\(i)"))
            #expect(cmp.maxAbs <= 1e-4 * cmp.refStd, "\(name) fpn\(i): \(cmp)")
        }

        // 3. RPN proposals: each reference proposal found among ours (IoU ≥ 0.99, score within 1e-3)
        if io.tensors["rpn_proposals"] != nil {
            let want = scoredRows(try ref("rpn_proposals"))
            guard case let .twoStage(twoStage) = model.detector else { Issue.record("\(name): proposals from a single-stage model"); return }
            let got = twoStage.proposals(feats, meta: meta, ctx)
            #expect(got.count == want.count, "\(name): \(got.count) proposals vs \(want.count)")
            let matched = want.filter { w in got.contains { sameBox($0.box, w.0) && abs($0.score - w.1) <= 1e-3 } }.count
            let missing = want.filter { w in !got.contains { sameBox($0.box, w.0) && abs($0.score - w.1) <= 1e-3 } }
            #expect(Double(matched) >= 0.99 * Double(want.count),
                    "\(name): \(matched) of \(want.count) proposals matched; unmatched e.g. \(missing.prefix(3)); ours \(got.prefix(3).map { ($0.box, $0.score) })")
        }

        // 4. detections and masks, from the image file
        let dets = try model.detect(image, name: name, attention: attention)
        let wantBoxes = scoredRows(try ref("det_bboxes"))
        let wantLabels = try ref("det_labels").data.map { Int($0) }
        #expect(dets.count == wantBoxes.count, "\(name): \(dets.count) detections vs \(wantBoxes.count)")
        var matched = 0
        let masks = io.tensors["det_masks"] != nil ? try ref("det_masks") : nil
        for (i, w) in wantBoxes.enumerated() {
            guard let j = dets.indices.first(where: { dets[$0].label == wantLabels[i] && sameBox(dets[$0].box, w.0)
                                                      && abs(dets[$0].score - w.1) <= 1e-3 }) else { continue }
            matched += 1
            if let masks, let m = dets[j].mask {
                let per = masks.count / max(wantBoxes.count, 1)
                let want = unpackBits(masks.data[(i * per)..<((i + 1) * per)], width: image.width)
                let inter = zip(m, want).filter { $0 && $1 }.count, union = zip(m, want).filter { $0 || $1 }.count
                #expect(union == 0 || Double(inter) / Double(union) >= 0.99, "\(name) det \(i): mask IoU \(Double(inter) / Double(max(union, 1)))")
            }
        }
        #expect(Double(matched) >= 0.99 * Double(wantBoxes.count), "\(name): \(matched) of \(wantBoxes.count) detections matched")
    }
}
