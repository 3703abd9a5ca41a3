// Segmentation parity with mmsegmentation (EncoderDecoder + UPerHead / FPN + FPNHead built by
// mmseg 1.2.2 around the reference backbone; tasks/reference/segmentation_fixtures.py).
// Each stage is compared so a mismatch says where it starts: the preprocessed input, the backbone
// levels, the decode head's logits, the logits at the original size, and the labels.

import Backbone
import Foundation
import Imaging
import ModelConfig
import Segmentation
import TensorCore
import Testing
import UniFormer
import Weights

@Suite struct SegmentationParity {
    @Test(arguments: ["upernet_global", "upernet_window", "upernet_hybrid", "upernet_global_as_window",
                      "fpn_global", "fpn_hybrid", "upernet_slide"])
    func matchesMmseg(_ name: String) throws {
        let dir = Fixtures.root.appendingPathComponent("segmentation").appendingPathComponent(name)
        let model = try Segmenter(model: dir.appendingPathComponent("config.json").path,
                                  weights: dir.appendingPathComponent("weights.pth"), threads: 2)
        let io = try StateDict(contentsOf: dir.appendingPathComponent("io.safetensors"))
        func ref(_ key: String) throws -> Tensor { try #require(io.tensors[key]).tensor() }
        let attention = try fixtureOverride(dir)
        let ctx = model.context

        // 1. decode + keep-ratio resize (+ align resize) + normalise
        let image = try loadImage(contentsOf: dir.appendingPathComponent("image.png"))
        let input = prepareInput(image, model.file.data)
        let wantInput = try ref("input")
        #expect(input.shape == wantInput.shape, "\(name): input \(input.shape) vs \(wantInput.shape)")
        guard input.shape == wantInput.shape else { return }
        #expect(maxAbsDiff(input.data, wantInput.data) <= 1e-5, "\(name): normalised input differs")

        // 2. backbone levels and 3. head logits, on the reference's own input (slide: its first crop)
        var stageInput = wantInput
        if case let .slide(crop, _) = model.segmentor.config.mode {
            stageInput = firstCrop(wantInput, height: min(crop.h, wantInput.shape[2]), width: min(crop.w, wantInput.shape[3]))
        }
        let levels = model.segmentor.backbone.featureMaps(stageInput, attention: attention, ctx)
        for (i, level) in levels.enumerated() {
            let got = hwcToNCHW(level), want = try ref("stage\(i + 1)")
            let cmp = Comparison(got, want)
            #expect(cmp.maxAbs <= 1e-4 * cmp.refStd, "\(name) stage\(i + 1): \(cmp) \(got.shape) vs \(want.shape)")
        }
        if io.tensors["head_logits"] != nil {
            let head = hwcToNCHW(model.segmentor.headLogits(wantInput, attention: attention, ctx))
            let want = try ref("head_logits")
            let cmp = Comparison(head, want)
            #expect(cmp.maxAbs <= 1e-4 * cmp.refStd, "\(name) head logits: \(cmp) \(head.shape) vs \(want.shape)")
        }

        // 4. the whole path: logits at the original size and labels
        let result = try model.segment(image, name: name, attention: attention)
        let logits = model.originalSizeLogits(result)
        let wantLogits = try ref("logits")
        let cmp = Comparison(logits, wantLogits)
        #expect(cmp.maxAbs <= 1e-4 * cmp.refStd, "\(name) logits: \(cmp) \(logits.shape) vs \(wantLogits.shape)")
        let wantLabels = try ref("labels").data.map { UInt8($0) }
        let same = zip(result.labels, wantLabels).filter { $0 == $1 }.count
        let agreement = Double(same) / Double(wantLabels.count)
        #expect(agreement >= 0.999, "\(name): \(wantLabels.count - same) of \(wantLabels.count) labels differ")
        #expect(Set(wantLabels).count >= 4, "\(name): the reference labels use too few classes to test anything")
    }
}

/// The top-left [1, 3, height, width] window of an NCHW input (slide inference's first crop).
func firstCrop(_ t: Tensor, height: Int, width: Int) -> Tensor {
    let (c, h, w) = (t.shape[1], t.shape[2], t.shape[3])
    var out = [Float]()
    for ch in 0..<c { for y in 0..<height { out += t.data[((ch * h + y) * w)..<((ch * h + y) * w + width)] } }
    return Tensor(shape: [1, c, height, width], data: out)
}
