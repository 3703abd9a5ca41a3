// Backbone parity with the PyTorch reference (tasks/reference/uniformer_ref.py).
// Fixtures: Tests/UniFormerTests/Fixtures/backbone/<case>/{config.json, weights.pth, io.safetensors},
// made by `tasks/reference/make_fixtures.sh`. Each pyramid level must match within 1e-4 of the
// reference level's standard deviation (max abs error).

import Backbone
import Foundation
import ModelConfig
import TensorCore
import Testing
import UniFormer
import Imaging
import Weights

struct Comparison: CustomStringConvertible {
    let maxAbs: Double
    let refStd: Double
    let nmse: Double
    var description: String {
        if maxAbs.isInfinite && nmse.isInfinite { return "shapes differ" }
        return String(format: "max|Δ| %.3g, ref std %.3g (ratio %.3g), NMSE %.3g", maxAbs, refStd, maxAbs / refStd, nmse)
    }

    init(_ got: Tensor, _ want: Tensor) {
        guard got.shape == want.shape else {   // a shape mismatch fails every tolerance
            maxAbs = .infinity; refStd = 0; nmse = .infinity
            return
        }
        var maxAbs = 0.0, sum = 0.0, sumsq = 0.0, err = 0.0
        for i in 0..<want.count {
            let w = Double(want.data[i]), d = Double(got.data[i]) - w
            maxAbs = max(maxAbs, abs(d).isNaN ? .infinity : abs(d))
            sum += w; sumsq += w * w; err += d * d
        }
        let n = Double(want.count)
        let mean = sum / n
        refStd = (sumsq / n - mean * mean).squareRoot()
        self.maxAbs = maxAbs
        nmse = err / max(sumsq, 1e-30)
    }
}

func fixtureOverride(_ dir: URL) throws -> StageAttention? {
    let json = try JSON.load(contentsOf: dir.appendingPathComponent("config.json"))
    guard case let .string(text)? = json["override"] else { return nil }
    return StageAttention(text)
}

@Suite struct BackboneParity {
    @Test(arguments: ["global", "windows_pad", "hybrid", "global_as_hybrid", "conv_stem", "layer_scale", "fp16"])
    func pyramidMatchesReference(_ name: String) throws {
        let dir = Fixtures.root.appendingPathComponent("backbone").appendingPathComponent(name)
        let model = try FeatureExtractor(model: dir.appendingPathComponent("config.json").path,
                                         weights: dir.appendingPathComponent("weights.pth"), threads: 2)
        let io = try StateDict(contentsOf: dir.appendingPathComponent("io.safetensors"))
        let input = try #require(io.tensors["input"]).tensor()
        let levels = model.features(input, attention: try fixtureOverride(dir))
        #expect(levels.count == 4)
        for (i, got) in levels.enumerated() {
            let want = try #require(io.tensors["stage\(i + 1)"]).tensor()
            #expect(got.shape == want.shape, "\(name) stage\(i + 1): shape \(got.shape) vs \(want.shape)")
            guard got.shape == want.shape else { continue }
            let cmp = Comparison(got, want)
            #expect(cmp.refStd > 1e-3, "\(name) stage\(i + 1): reference is nearly constant, the fixture tests nothing")
            #expect(cmp.maxAbs <= 1e-4 * cmp.refStd, "\(name) stage\(i + 1): \(cmp); first values \(got.data.prefix(4)) vs \(want.data.prefix(4))")
        }
    }

    /// uniformer_base_ls (layer scale in SABlocks only) and a token-labeling classifier (layer scale
    /// everywhere, logits + ½·max over tokens of aux_head): logits and top-5 on a random input.
    @Test(arguments: ["classifier_ls", "classifier_tl"])
    func classifierVariantsMatchReference(_ name: String) throws {
        let dir = Fixtures.root.appendingPathComponent("backbone").appendingPathComponent(name)
        let model = try Classifier(model: dir.appendingPathComponent("config.json").path,
                                   weights: dir.appendingPathComponent("weights.pth"), threads: 2)
        let io = try StateDict(contentsOf: dir.appendingPathComponent("io.safetensors"))
        let want = try #require(io.tensors["logits"]).tensor()
        let logits = model.logits(try #require(io.tensors["input"]).tensor())
        let cmp = Comparison(Tensor(shape: want.shape, data: logits), want)
        #expect(cmp.maxAbs <= 1e-4 * cmp.refStd, "\(name) logits: \(cmp)")
        #expect(model.topK(logits, 5).map(\.index) == (try #require(io.tensors["top5"]).tensor().data.map { Int($0) }))
    }

    /// The FLOPs the ops report as they run (what `bench` divides by) equal the backbone's formula.
    @Test(arguments: ["global", "windows_pad", "hybrid", "conv_stem"])
    func countedFLOPsEqualTheFormula(_ name: String) throws {
        let dir = Fixtures.root.appendingPathComponent("backbone").appendingPathComponent(name)
        let model = try FeatureExtractor(model: dir.appendingPathComponent("config.json").path,
                                         weights: dir.appendingPathComponent("weights.pth"), threads: 2)
        let input = try #require(try StateDict(contentsOf: dir.appendingPathComponent("io.safetensors")).tensors["input"]).tensor()
        var ctx = model.context
        ctx.profiler = Profiler()
        let attention = try fixtureOverride(dir)
        _ = model.backbone.features(input, attention: attention, ctx)
        let formula = model.backbone.flops(height: input.shape[2], width: input.shape[3], attention: attention)
        #expect(formula > 0 && abs(ctx.profiler!.flops - formula) <= 1e-9 * formula, "\(name): counted \(ctx.profiler!.flops) vs \(formula)")
    }

    @Test func classifierTop5MatchesReference() throws {
        let dir = Fixtures.root.appendingPathComponent("backbone").appendingPathComponent("classifier")
        let model = try Classifier(model: dir.appendingPathComponent("config.json").path,
                                   weights: dir.appendingPathComponent("weights.pth"), threads: 2)
        let io = try StateDict(contentsOf: dir.appendingPathComponent("io.safetensors"))
        let want = try #require(io.tensors["logits"]).tensor()
        let wantTop5 = try #require(io.tensors["top5"]).tensor().data.map { Int($0) }
        // 1. the network on the reference's preprocessed input
        let logits = model.logits(try #require(io.tensors["input"]).tensor())
        let cmp = Comparison(Tensor(shape: want.shape, data: logits), want)
        #expect(cmp.maxAbs <= 1e-4 * cmp.refStd, "classifier logits: \(cmp)")
        #expect(model.topK(logits, 5).map(\.index) == wantTop5)
        // 2. the whole path from the picture file (decode, PIL-bicubic resize, crop, normalise)
        let picture = try loadImage(contentsOf: dir.appendingPathComponent("picture.png"))
        #expect(model.classify(picture, top: 5).map(\.index) == wantTop5)
    }
}
