// The bundled demo models (configs/demo-shapes-{seg,det}.json, weights in Sources/UniFormer/Resources)
// on held-out generated scenes (Fixtures/demo, tasks/demo/shapes.py --split test: never trained on),
// loaded by name without --weights as a new user runs them. Accuracy is computed here from the
// ground-truth label and instance PNGs: mIoU as mmseg (intersections and unions summed over the
// images, mean over classes), AP@0.5 as COCO (per class: greedy matching by score, 101-point
// interpolated precision; mean over classes with ground truth).
//
// The targets (mIoU ≥ 0.90, box AP@0.5 ≥ 0.90, mask AP@0.5 ≥ 0.85) are checked by the two
// `…Target` tests. PyTorch measures the same on these scenes (tasks/demo/check_seg.py, check_det.py).

import Detection
import Foundation
import Imaging
import ModelConfig
import Testing
import UniFormer

private let demo = Fixtures.root.appendingPathComponent("demo")

/// The fixture scenes: file name, image, semantic labels, instance map (0 none, k = k-th annotation).
private struct Scene {
    let name: String, image: RGBImage, labels: [UInt8], instances: [UInt8]
    /// (class name, instance index) of each annotation.
    var objects: [(category: String, index: Int, box: SIMD4<Float>)]
}

private func loadScenes() throws -> [Scene] {
    let json = try JSON.load(contentsOf: demo.appendingPathComponent("annotations.json"))
    guard case let .array(images)? = json["images"], case let .array(cats)? = json["categories"],
          case let .array(anns)? = json["annotations"] else { throw InputError("annotations.json: not COCO") }
    var catName: [Int: String] = [:]
    for c in cats { if case let .int(id)? = c["id"], case let .string(n)? = c["name"] { catName[id] = n } }
    var scenes: [Scene] = []
    for img in images {
        guard case let .string(file)? = img["file_name"], case let .int(id)? = img["id"] else { throw InputError("bad image entry") }
        let gray = { (folder: String) throws -> [UInt8] in
            let im = try loadImage(contentsOf: demo.appendingPathComponent(folder).appendingPathComponent(file))
            return stride(from: 0, to: im.pixels.count, by: 3).map { im.pixels[$0] }
        }
        var scene = Scene(name: file, image: try loadImage(contentsOf: demo.appendingPathComponent("images").appendingPathComponent(file)),
                          labels: try gray("labels"), instances: try gray("instances"), objects: [])
        for a in anns where a["image_id"].flatMap({ if case let .int(v) = $0 { v } else { nil } }) == id {
            guard case let .int(cat)? = a["category_id"], case let .int(k)? = a["instance_index"],
                  case let .array(b)? = a["bbox"] else { throw InputError("bad annotation") }
            let v = b.map { x -> Float in
                switch x { case let .int(i): Float(i); case let .double(d): Float(d); default: .nan }
            }
            scene.objects.append((catName[cat]!, k, SIMD4(v[0], v[1], v[0] + v[2], v[1] + v[3])))
        }
        scenes.append(scene)
    }
    return scenes
}

private struct InputError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

private func boxIoU(_ a: SIMD4<Float>, _ b: SIMD4<Float>) -> Double {
    let iw = max(0, min(a[2], b[2]) - max(a[0], b[0])), ih = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    let inter = Double(iw * ih)
    let union = Double((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1])) - inter
    return union > 0 ? inter / union : 0
}

private func maskIoU(_ m: [Bool], _ instances: [UInt8], _ k: Int) -> Double {
    var inter = 0, union = 0
    for p in 0..<m.count {
        let g = Int(instances[p]) == k
        if m[p] && g { inter += 1 }
        if m[p] || g { union += 1 }
    }
    return union > 0 ? Double(inter) / Double(union) : 0
}

/// COCO AP at one IoU threshold for one class: detections (image, score, IoU with each ground
/// truth of that image) against `gtCount` objects; each detection, best score first, takes the
/// unmatched ground truth it overlaps most (≥ threshold).
private func averagePrecision(_ dets: [(image: Int, score: Float, ious: [Double])], gtCount: Int, threshold: Double = 0.5) -> Double {
    let order = dets.indices.sorted { dets[$0].score > dets[$1].score }
    var taken: [Int: Set<Int>] = [:]
    var tp: [Bool] = []
    for i in order {
        let d = dets[i]
        var best = -1, bestIoU = threshold
        for (g, iou) in d.ious.enumerated() where iou >= bestIoU && !(taken[d.image]?.contains(g) ?? false) {
            best = g; bestIoU = iou
        }
        if best >= 0 { taken[d.image, default: []].insert(best) }
        tp.append(best >= 0)
    }
    var precision: [Double] = [], recall: [Double] = []
    var hits = 0
    for (n, t) in tp.enumerated() {
        hits += t ? 1 : 0
        precision.append(Double(hits) / Double(n + 1))
        recall.append(Double(hits) / Double(gtCount))
    }
    for i in stride(from: precision.count - 2, through: 0, by: -1) { precision[i] = max(precision[i], precision[i + 1]) }
    var sum = 0.0
    for r in 0...100 {
        let at = Double(r) / 100
        if let i = recall.firstIndex(where: { $0 >= at }) { sum += precision[i] }
    }
    return sum / 101
}

@Suite(.serialized) struct DemoModels {
    /// The bundled segmentation weights reach mIoU 0.920 here (PyTorch the same: check_seg.py).
    @Test func segmentationTarget() throws {
        let miou = try segmentationMIoU()
        #expect(miou >= 0.90, "mIoU \(miou)")
    }
    /// The bundled detector reaches box / mask AP50 0.926 / 0.958 here (PyTorch the same: check_det.py).
    @Test func detectionTarget() throws {
        let ap = try detectionAP50()
        #expect(ap.box >= 0.90 && ap.mask >= 0.85, "\(ap)")
    }

    func segmentationMIoU() throws -> Double {
        let model = try Segmenter(model: "demo-shapes-seg")
        #expect(model.classes == ["background", "circle", "square", "triangle", "star", "ring"])
        let scenes = try loadScenes()
        #expect(scenes.count >= 8)
        let k = model.classes.count
        var inter = [Int](repeating: 0, count: k), union = [Int](repeating: 0, count: k)
        for s in scenes {
            let r = try model.segment(s.image, name: s.name)
            for p in 0..<s.labels.count {
                let (pred, gt) = (Int(r.labels[p]), Int(s.labels[p]))
                if pred == gt { inter[gt] += 1; union[gt] += 1 } else { union[gt] += 1; union[pred] += 1 }
            }
        }
        let ious = (0..<k).filter { union[$0] > 0 }.map { Double(inter[$0]) / Double(union[$0]) }
        let miou = ious.reduce(0, +) / Double(ious.count)
        print("demo-shapes-seg on \(scenes.count) held-out scenes: mIoU \(miou), per class \(ious)")
        #expect(ious.count == k)
        return miou
    }

    func detectionAP50() throws -> (box: Double, mask: Double) {
        let model = try ObjectDetector(model: "demo-shapes-det")
        #expect(model.classes == ["circle", "square", "triangle", "star", "ring"])
        let scenes = try loadScenes()
        var boxDets: [[(image: Int, score: Float, ious: [Double])]] = Array(repeating: [], count: model.classes.count)
        var maskDets = boxDets
        var gtCount = [Int](repeating: 0, count: model.classes.count)
        for (i, s) in scenes.enumerated() {
            let dets = try model.detect(s.image, name: s.name)
            for (c, name) in model.classes.enumerated() {
                let gts = s.objects.filter { $0.category == name }
                gtCount[c] += gts.count
                for d in dets where d.label == c {
                    let m = try #require(d.mask)
                    boxDets[c].append((i, d.score, gts.map { boxIoU(d.box, $0.box) }))
                    maskDets[c].append((i, d.score, gts.map { maskIoU(m, s.instances, $0.index) }))
                }
            }
        }
        let classes = (0..<model.classes.count).filter { gtCount[$0] > 0 }
        let boxAP = classes.map { averagePrecision(boxDets[$0], gtCount: gtCount[$0]) }
        let maskAP = classes.map { averagePrecision(maskDets[$0], gtCount: gtCount[$0]) }
        let (box, mask) = (boxAP.reduce(0, +) / Double(classes.count), maskAP.reduce(0, +) / Double(classes.count))
        print("demo-shapes-det on \(scenes.count) held-out scenes (\(gtCount.reduce(0, +)) objects): box AP50 \(box) \(boxAP), mask AP50 \(mask) \(maskAP)")
        #expect(classes.count == model.classes.count)
        return (box, mask)
    }

    /// README.md's feature-API example, as written there (run from the package root).
    @Test func readmeAPIExampleRuns() throws {
        let example = packageRoot.appendingPathComponent("tasks/demo/shapes-example.png")
        let extractor = try FeatureExtractor(model: "demo-shapes-seg")
        let levels = try extractor.features(imageAt: example)
        #expect(levels.map { $0.shape[1] } == [32, 64, 128, 256])
        #expect(zip(levels, levels.dropFirst()).allSatisfy { $1.shape[3] == $0.shape[3] / 2 })   // strides 4, 8, 16, 32
        let segmenter = try Segmenter(model: "demo-shapes-seg")
        let mask = try segmenter.segment(imageAt: example)
        #expect(mask.labels.count == 480 * 360 && Set(mask.labels).count >= 5)
        let detector = try ObjectDetector(model: "demo-shapes-det")
        let dets = try detector.detect(imageAt: example)
        #expect(dets.filter { $0.score >= 0.5 }.count >= 5)
    }

    @Test func theAPOracleScoresKnownCases() {
        // two objects, one found with the best score, a false positive in between, the other found last:
        // precision at recall 0.5 is 1, at recall 1 it is 2/3 → AP = (51·1 + 50·2/3) / 101
        let ap = averagePrecision([(0, 0.9, [0.8, 0.0]), (0, 0.8, [0.1, 0.2]), (0, 0.7, [0.0, 0.6])], gtCount: 2)
        #expect(abs(ap - (51 + 50 * 2.0 / 3) / 101) < 1e-12)
        // a duplicate of an already matched object is a false positive
        #expect(abs(averagePrecision([(0, 0.9, [0.9]), (0, 0.8, [0.9])], gtCount: 1) - 1) < 1e-12)
        #expect(averagePrecision([(0, 0.9, [0.4])], gtCount: 1) == 0)
    }
}
