//! `uniformer detect IMAGE... --model CONFIG --weights FILE [-o OUT] [--format json|coco] [--score-thr X]`
//! JSON per image (DESIGN.md): {"image", "width", "height", "detections": [{"bbox": [x, y, w, h],
//! "score", "category_id", "label", "segmentation": {"size": [H, W], "counts": RLE}}]}, boxes in
//! original-image pixels, best first. `--format coco` writes one COCO results list for all images
//! (category ids mapped 80 → 91, image_id from --annotations or the numeric file name).

import ArgumentParser
import Detection
import Foundation
import Imaging
import ModelConfig
import UniFormer

struct Detect: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Detect objects (and instance masks) to JSON (Mask R-CNN).")

    @Argument(help: "Images (PNG/JPEG), or a directory of them.")
    var images: [String]

    @OptionGroup var options: ModelOptions

    @Option(name: .shortAndLong, help: "Output: a .json file (one image, or --format coco) or a directory (several). Default: stdout.")
    var output: String?

    @Option(help: "json (one object per image) or coco (one COCO results list).")
    var format: String = "json"

    @Option(help: "Keep detections scoring at least this (on top of the config's score_thr).")
    var scoreThr: Float?

    @Option(help: "COCO annotation file: image ids are looked up by file name (--format coco).")
    var annotations: String?

    @Option(help: "Also draw masks, boxes, class names and scores on the image (file or directory); detections scoring ≥ 0.3, or ≥ --score-thr.")
    var overlay: String?

    @Option(help: "Override stage-3 attention: global, window:N or hybrid:N.")
    var attention: String?

    func run() throws {
        try reporting {
            guard format == "json" || format == "coco" else { throw ValidationError("--format must be json or coco (got '\(format)')") }
            let mode = try parseAttention(attention)
            let batch = try expandImages(images)
            let inputs = batch.urls
            let perImage = try format == "json" ? output.map { try outputPaths(for: batch, output: $0, ext: "json") } : nil
            let overlays = try overlay.map { try outputPaths(for: batch, output: $0, ext: "png") }
            let ids = try format == "coco" ? imageIDs(inputs) : [:]
            let model = try ObjectDetector(model: options.model, weights: options.weights.map { URL(fileURLWithPath: $0) }, threads: options.threads, precision: options.precision)
            warnIfFallback(requested: options.precision, model.context)
            guard format == "json" || model.classes.count == 80 else {
                throw InputError(description: "\(model.file.url.path): --format coco needs the 80 COCO classes, the model has \(model.classes.count)")
            }
            var results: [JSON] = []
            var failed = 0
            for (i, input) in inputs.enumerated() {
                if inputs.count > 1 { progress("[\(i + 1)/\(inputs.count)] \(input.path)") }
                let image: RGBImage, dets: [Detection]
                do {
                    image = try loadImage(contentsOf: input)
                    dets = try model.detect(image, name: input.path, attention: mode).filter { $0.score >= (scoreThr ?? -.infinity) }
                } catch {
                    if inputs.count == 1 { throw error }
                    progress("uniformer: warning: skipping \(error)")
                    failed += 1
                    continue
                }
                if format == "coco" {
                    results += dets.map { cocoResult($0, imageID: ids[input.lastPathComponent]!, width: image.width, height: image.height) }
                } else {
                    let obj = imageResult(dets, image: input.path, width: image.width, height: image.height, classes: model.classes)
                    if let perImage { try writeAtomically(obj.serialized() + "\n", to: perImage[i]) } else { results.append(obj) }
                }
                if let overlays { try writePNG(detectionOverlay(image, detections: dets, classes: model.classes, palette: model.palette,
                                                               minScore: scoreThr ?? 0.3), to: overlays[i]) }
            }
            if format == "coco" {
                let text = JSON.array(results).serialized() + "\n"
                if let output { try writeAtomically(text, to: URL(fileURLWithPath: output)) } else { print(text, terminator: "") }
            } else if perImage == nil {
                print((batch.isBatch ? JSON.array(results) : results.first ?? .array([])).serialized())
            }
            if failed > 0 { throw InputError(description: "\(failed) of \(inputs.count) images could not be processed") }
        }
    }

    /// image_id per file name: from --annotations, else the file name's digits (COCO's 000000397133.jpg).
    func imageIDs(_ inputs: [URL]) throws -> [String: Int] {
        var ids: [String: Int] = [:]
        if let annotations {
            let json = try JSON.load(contentsOf: URL(fileURLWithPath: annotations))
            guard case let .array(images)? = json["images"] else {
                throw InputError(description: "\(annotations): no 'images' list (not a COCO annotation file)")
            }
            for img in images {
                if case let .string(name)? = img["file_name"], case let .int(id)? = img["id"] {
                    ids[URL(fileURLWithPath: name).lastPathComponent] = id
                }
            }
        }
        for u in inputs where ids[u.lastPathComponent] == nil {
            guard let id = Int(u.deletingPathExtension().lastPathComponent) else {
                throw InputError(description: "\(u.path): no image id (not in --annotations, and the file name is not a number)")
            }
            ids[u.lastPathComponent] = id
        }
        return ids
    }
}

/// [x, y, w, h] with w and h subtracted in double, as mmdet 2.11's xyxy2xywh does on `tolist()` floats.
func bboxJSON(_ b: SIMD4<Float>) -> JSON {
    let x1 = Double(b[0]), y1 = Double(b[1]), x2 = Double(b[2]), y2 = Double(b[3])
    return .array([.double(x1), .double(y1), .double(x2 - x1), .double(y2 - y1)])
}

func segmentationJSON(_ mask: [Bool], width: Int, height: Int) -> JSON {
    let rle = encodeRLE(mask, height: height, width: width)
    return .object([("size", .array([.int(height), .int(width)])), ("counts", .string(rle.counts))])
}

func imageResult(_ dets: [Detection], image: String, width: Int, height: Int, classes: [String]) -> JSON {
    .object([("image", .string(image)), ("width", .int(width)), ("height", .int(height)),
             ("detections", .array(dets.map { d in
                 var fields: [(String, JSON)] = [("bbox", bboxJSON(d.box)), ("score", .double(Double(d.score))),
                                                 ("category_id", .int(d.label)), ("label", .string(classes[d.label]))]
                 if let m = d.mask { fields.append(("segmentation", segmentationJSON(m, width: width, height: height))) }
                 return .object(fields)
             }))])
}

func cocoResult(_ d: Detection, imageID: Int, width: Int, height: Int) -> JSON {
    var fields: [(String, JSON)] = [("image_id", .int(imageID)), ("category_id", .int(cocoCategoryIDs[d.label])),
                                    ("bbox", bboxJSON(d.box)), ("score", .double(Double(d.score)))]
    if let m = d.mask { fields.append(("segmentation", segmentationJSON(m, width: width, height: height))) }
    return .object(fields)
}

/// Writes text to a temporary file beside `url`, then renames it: never a half-written output.
func writeAtomically(_ text: String, to url: URL) throws {
    let tmp = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).\(getpid()).tmp")
    do {
        try Data(text.utf8).write(to: tmp)
        guard rename(tmp.path, url.path) == 0 else { throw NSError(domain: NSPOSIXErrorDomain, code: Int(errno)) }
    } catch {
        try? FileManager.default.removeItem(at: tmp)
        throw InputError(description: "\(url.path): cannot write: \((error as NSError).localizedDescription)")
    }
}
