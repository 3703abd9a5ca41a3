//! `uniformer features IMAGE... --model CONFIG --weights FILE -o OUT`
//! Writes the four pyramid levels as safetensors `stage1`…`stage4` ([1, C, H, W] float32).

import ArgumentParser
import Backbone
import Foundation
import UniFormer
import Weights

struct Features: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Extract the backbone's 4-level feature pyramid to safetensors.")

    @Argument(help: "Images (PNG/JPEG), or a directory of them.")
    var images: [String]

    @OptionGroup var options: ModelOptions

    @Option(name: .shortAndLong, help: "Output .safetensors (one image) or directory (several).")
    var output: String

    @Option(help: "Override stage-3 attention: global, window:N or hybrid:N.")
    var attention: String?

    func run() throws {
        try reporting {
            let mode = try parseAttention(attention)
            let batch = try expandImages(images)
            let inputs = batch.urls
            let model = try FeatureExtractor(model: options.model, weights: options.weights.map { URL(fileURLWithPath: $0) }, threads: options.threads, precision: options.precision)
            warnIfFallback(requested: options.precision, model.context)
            let outputs = try outputPaths(for: batch, output: output, ext: "safetensors")
            for (i, (input, out)) in zip(inputs, outputs).enumerated() {
                if inputs.count > 1 { progress("[\(i + 1)/\(inputs.count)] \(input.path)") }
                let levels = try model.features(imageAt: input, attention: mode)
                try writeSafetensors(levels.enumerated().map { ("stage\($0.offset + 1)", $0.element) },
                                     metadata: ["source": input.lastPathComponent], to: out)
            }
        }
    }
}

func parseAttention(_ text: String?) throws -> StageAttention? {
    guard let text else { return nil }
    guard let mode = StageAttention(text) else {
        throw ValidationError("--attention must be global, window:N or hybrid:N (got '\(text)')")
    }
    return mode
}

func progress(_ line: String) {
    FileHandle.standardError.write(Data((line + "\n").utf8))
}
