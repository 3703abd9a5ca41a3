//! `uniformer classify IMAGE --model CONFIG --weights FILE` — top-5 ImageNet classes.

import ArgumentParser
import Foundation
import Imaging
import UniFormer

struct Classify: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print the top-5 classes of an image (ImageNet classifier).")

    @Argument(help: "Images (PNG/JPEG).")
    var images: [String]

    @OptionGroup var options: ModelOptions

    @Option(help: "How many classes to print.")
    var top: Int = 5

    func run() throws {
        try reporting {
            let batch = try expandImages(images)
            let inputs = batch.urls
            let model = try Classifier(model: options.model, weights: options.weights.map { URL(fileURLWithPath: $0) }, threads: options.threads, precision: options.precision)
            warnIfFallback(requested: options.precision, model.context)
            for input in inputs {
                let image = try loadImage(contentsOf: input)
                if inputs.count > 1 { print(input.path) }
                for p in model.classify(image, top: max(1, top)) {
                    print(String(format: "%6.2f%%  %4d  %@", Double(p.probability) * 100, p.index, p.label ?? ""))
                }
            }
        }
    }
}
