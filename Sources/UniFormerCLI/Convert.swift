//! `uniformer convert WEIGHTS -o OUT.safetensors` — any supported checkpoint to safetensors,
//! keeping every key and dtype (the `module.` prefix and wrapping dicts are removed).

import ArgumentParser
import Foundation
import Weights

struct Convert: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Convert a .pth checkpoint to safetensors (same keys and dtypes).")

    @Argument(help: "Checkpoint (.pth or .safetensors).")
    var weights: String

    @Option(name: .shortAndLong, help: "Output .safetensors.")
    var output: String

    func run() throws {
        try reporting {
            let dict = try StateDict(contentsOf: URL(fileURLWithPath: weights))
            var meta = ["source": URL(fileURLWithPath: weights).lastPathComponent]
            if let classes = dict.classes { meta["classes"] = classes.joined(separator: "\n") }
            try writeSafetensors(dict, metadata: meta, to: URL(fileURLWithPath: output))
            progress("wrote \(output): \(dict.keys.count) tensors")
        }
    }
}
