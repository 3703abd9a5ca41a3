//! `uniformer info WEIGHTS|CONFIG` — what a checkpoint holds, or what a config builds.

import ArgumentParser
import Backbone
import Foundation
import ModelConfig
import Segmentation
import UniFormer
import Weights

struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Describe a checkpoint or a config.")

    @Argument(help: "A checkpoint (.pth, .safetensors) or a config (.json or a name in configs/).")
    var file: String

    @Flag(help: "List every tensor.")
    var all = false

    func run() throws {
        try reporting {
            if file.hasSuffix(".json") || !FileManager.default.fileExists(atPath: file) {
                try describeConfig()
            } else {
                try describeWeights()
            }
        }
    }

    func describeWeights() throws {
        let dict = try StateDict(contentsOf: URL(fileURLWithPath: file))
        var params = 0
        var dtypes: [String: Int] = [:]
        for k in dict.keys {
            let t = dict.tensors[k]!
            params += t.shape.reduce(1, *)
            dtypes[t.dtype.rawValue, default: 0] += 1
        }
        print("file:       \(file)")
        print("format:     \(dict.format)")
        print("tensors:    \(dict.keys.count) (\(dtypes.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", ")))")
        print("parameters: \(params) (\(String(format: "%.2f", Double(params) / 1e6)) M)")
        if !dict.skipped.isEmpty { print("skipped:    \(dict.skipped.joined(separator: ", "))") }
        if let c = dict.classes { print("classes:    \(c.count) (\(c.prefix(5).joined(separator: ", "))\(c.count > 5 ? ", …" : ""))") }
        let groups = Dictionary(grouping: dict.keys) { $0.split(separator: ".").first.map(String.init) ?? $0 }
        print("top-level:  \(groups.keys.sorted().map { "\($0) (\(groups[$0]!.count))" }.joined(separator: ", "))")
        if all {
            for k in dict.keys {
                let t = dict.tensors[k]!
                print("  \(k)  \(t.dtype.rawValue) \(t.shape)")
            }
        }
    }

    func describeConfig() throws {
        let url = try ModelFile.resolve(file)
        let m = try ModelFile(contentsOf: url)
        let b = try m.backboneConfig()
        print("config:     \(url.path)")
        print("model:      \(m.kind)")
        print("backbone:   UniFormer layers \(b.layers) embed_dim \(b.embedDim) head_dim \(b.headDim)"
              + (b.convStem ? " conv_stem" : "") + (b.layerScale != .none ? " layer_scale(\(b.layerScale.rawValue))" : "") + (b.returnDense ? " return_dense" : ""))
        print("stage 3:    \(b.attention)")
        if b.numClasses > 0 { print("classifier: \(b.numClasses) classes") }
        if m.kind == .segmentation {
            let s = try SegmentorConfig(m.model)
            switch s.head {
            case let .uper(inChannels, _, poolScales, channels):
                print("head:       UPerHead in_channels \(inChannels) pool_scales \(poolScales) channels \(channels)")
            case let .fpn(inChannels, _, strides, channels):
                print("neck:       FPN out_channels \(s.neck?.outChannels ?? 0) num_outs \(s.neck?.numOuts ?? 0)")
                print("head:       FPNHead in_channels \(inChannels) feature_strides \(strides) channels \(channels)")
            }
            print("classes:    \(s.numClasses) (decode_head.num_classes)")
            switch s.mode {
            case .whole: print("test mode:  whole")
            case let .slide(c, st): print("test mode:  slide crop \(c.h)×\(c.w) stride \(st.h)×\(st.w)")
            }
        }
        let d = m.data
        print("data:       mean \(d.mean) std \(d.std) to_rgb \(d.toRGB) scale \(d.scale.map { "\($0.0)×\($0.1)" } ?? "none") size_divisor \(d.sizeDivisor.map(String.init) ?? "none")"
              + (d.alignDivisor.map { " align_divisor \($0)" } ?? ""))
        if let c = m.classes { print("classes:    \(c.count)") }
    }
}
