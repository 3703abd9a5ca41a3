//! `uniformer segment IMAGE... --model CONFIG --weights FILE [-o OUT] [--overlay OUT] [--logits OUT]`
//! Writes an indexed PNG per image (pixel = class index, palette = the config's), optionally the
//! image blended with the class colours, and the float logits at the original size.

import ArgumentParser
import Foundation
import Imaging
import UniFormer
import Weights

struct Segment: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Segment images into class masks (UPerNet / Semantic FPN).")

    @Argument(help: "Images (PNG/JPEG), or a directory of them.")
    var images: [String]

    @OptionGroup var options: ModelOptions

    @Option(name: .shortAndLong, help: "Mask PNG (one image) or directory (several). Default: <name>.png in the current directory.")
    var output: String?

    @Option(help: "Also write the image blended with the class colours, with a legend (file or directory).")
    var overlay: String?

    @Option(help: "Also write the logits at the original size as safetensors `logits` [1, K, H, W] (file or directory).")
    var logits: String?

    @Option(help: "Override stage-3 attention: global, window:N or hybrid:N.")
    var attention: String?

    func run() throws {
        try reporting {
            let mode = try parseAttention(attention)
            let batch = try expandImages(images)
            let inputs = batch.urls
            let masks = try outputPaths(for: batch, output: output ?? FileManager.default.currentDirectoryPath, ext: "png")
            for (input, mask) in zip(inputs, masks) where input.standardizedFileURL == mask.standardizedFileURL {
                throw InputError(description: "\(mask.path): the mask would overwrite its input; pass -o")
            }
            let overlays = try overlay.map { try outputPaths(for: batch, output: $0, ext: "png") }
            let logitFiles = try logits.map { try outputPaths(for: batch, output: $0, ext: "safetensors") }
            let model = try Segmenter(model: options.model, weights: options.weights.map { URL(fileURLWithPath: $0) }, threads: options.threads, precision: options.precision)
            warnIfFallback(requested: options.precision, model.context)
            var failed = 0
            for (i, input) in inputs.enumerated() {
                if inputs.count > 1 { progress("[\(i + 1)/\(inputs.count)] \(input.path)") }
                let image: RGBImage, result: SegmentationResult
                do {
                    image = try loadImage(contentsOf: input)
                    result = try model.segment(image, name: input.path, attention: mode)
                } catch {
                    // In a batch one bad image does not stop the rest; the exit status still says it.
                    if inputs.count == 1 { throw error }
                    progress("uniformer: warning: skipping \(error)")
                    failed += 1
                    continue
                }
                try writeIndexedPNG(labels: result.labels, width: result.width, height: result.height,
                                    palette: model.palette, to: masks[i])
                if let overlays {
                    try writePNG(segmentationOverlay(image, labels: result.labels, classes: model.classes, palette: model.palette), to: overlays[i])
                }
                if let logitFiles {
                    try writeSafetensors([("logits", model.originalSizeLogits(result))],
                                         metadata: ["source": input.lastPathComponent, "classes": model.classes.joined(separator: "\n")],
                                         to: logitFiles[i])
                }
            }
            if failed > 0 { throw InputError(description: "\(failed) of \(inputs.count) images could not be segmented") }
        }
    }
}
