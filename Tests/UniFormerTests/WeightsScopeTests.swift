// WeightScope: strict, scoped access — full keys in errors, both shapes in mismatches, and
// `finish` naming every key nothing used (sorted), with ignore rules relative to the scope.

import Foundation
import TensorCore
import Testing
import Weights

@Suite struct WeightsScope {
    static func dict(_ entries: [(String, [Int])]) -> StateDict {
        var tensors: [String: StoredTensor] = [:]
        for (i, (key, shape)) in entries.enumerated() {
            let n = shape.reduce(1, *)
            tensors[key] = StoredTensor(Tensor(shape: shape, data: (0..<n).map { Float($0 + 10 * i) }))
        }
        return StateDict(tensors: tensors, keys: entries.map(\.0))
    }

    static let sample = dict([
        ("backbone.patch_embed1.proj.weight", [4, 3, 2, 2]), ("backbone.patch_embed1.proj.bias", [4]),
        ("backbone.blocks1.0.norm1.weight", [4]), ("backbone.blocks1.0.norm1.num_batches_tracked", []),
        ("backbone.blocks1.1.norm1.weight", [4]), ("backbone.blocks10.0.x", [1]),
        ("auxiliary_head.conv.weight", [2]), ("head.weight", [5, 4]),
    ])

    @Test func childScopesBuildFullKeys() throws {
        let root = WeightScope(Self.sample)
        let block = root.child("backbone").child("blocks1").child(0)
        #expect(block.prefix == "backbone.blocks1.0.")
        #expect(block.has("norm1.weight"))
        #expect(!block.has("norm2.weight"))
        #expect(try block.tensor("norm1.weight", shape: [4]) == Tensor(shape: [4], data: [20, 21, 22, 23]))
        #expect(root.child("backbone").keys(under: "blocks1.") == [
            "backbone.blocks1.0.norm1.weight", "backbone.blocks1.0.norm1.num_batches_tracked", "backbone.blocks1.1.norm1.weight"])
        #expect(root.child("backbone").keys(under: "blocks1").count == 4)  // a plain string prefix: blocks10 too
        #expect(root.isUsed("backbone.blocks1.0.norm1.weight"))
    }

    @Test func missingAndMismatchedTensorsNameTheFullKey() {
        let proj = WeightScope(Self.sample).child("backbone").child("patch_embed1").child("proj")
        let mismatch = WeightFixtures.error { _ = try proj.tensor("weight", shape: [4, 3, 4, 4]) }
        #expect(mismatch == .shapeMismatch(key: "backbone.patch_embed1.proj.weight", expected: [4, 3, 4, 4], got: [4, 3, 2, 2]))
        #expect(mismatch?.description == "weights: 'backbone.patch_embed1.proj.weight' has shape [4, 3, 2, 2], expected [4, 3, 4, 4]")
        #expect(WeightFixtures.error { _ = try proj.tensor("scale", shape: [4]) } == .missing(key: "backbone.patch_embed1.proj.scale"))
        #expect(WeightFixtures.error { _ = try proj.tensor("scale") } == .missing(key: "backbone.patch_embed1.proj.scale"))
        #expect(WeightError.missing(key: "a\nb").description == "weights: missing tensor 'a\\u{a}b'")  // always one line
    }

    @Test func finishNamesUnusedKeysSortedAndHonoursRules() throws {
        let root = WeightScope(Self.sample)
        let backbone = root.child("backbone")
        _ = try backbone.child("patch_embed1").child("proj").tensor("weight", shape: [4, 3, 2, 2])
        _ = try backbone.child("blocks1").child(1).tensor("norm1.weight")

        // The backbone scope sees only its own keys; rules match keys relative to it.
        let error = WeightFixtures.error { try backbone.finish(ignoring: [.suffix(".num_batches_tracked")]) }
        #expect(error == .unexpected(["backbone.blocks1.0.norm1.weight", "backbone.blocks10.0.x", "backbone.patch_embed1.proj.bias"]))

        _ = try backbone.tensor("patch_embed1.proj.bias", shape: [4])
        _ = try backbone.tensor("blocks1.0.norm1.weight", shape: [4])
        let ignored = try backbone.finish(ignoring: [.suffix(".num_batches_tracked"), .exact("blocks10.0.x")])
        #expect(ignored == ["backbone.blocks1.0.norm1.num_batches_tracked", "backbone.blocks10.0.x"])

        // The root shares the record of used keys; what is left is named by full-key rules.
        #expect(WeightFixtures.error { try root.finish() } == .unexpected([
            "auxiliary_head.conv.weight", "backbone.blocks1.0.norm1.num_batches_tracked", "backbone.blocks10.0.x", "head.weight"]))
        try root.finish(ignoring: [.prefix("auxiliary_head."), .prefix("head."), .suffix(".num_batches_tracked"), .prefix("backbone.blocks10.")])
    }

    @Test func storedTensorsKeepTheirDtype() throws {
        let half: [UInt16] = [0x3c00, 0xc000]  // 1, -2
        let dict = StateDict(tensors: ["h": StoredTensor(dtype: .float16, shape: [2], bytes: half.withUnsafeBytes { Data($0) })], keys: ["h"])
        let scope = WeightScope(dict)
        #expect(try scope.stored("h").dtype == .float16)
        #expect(try scope.tensor("h", shape: [2]).data == [1, -2])
        try scope.finish()
    }

    @Test func randomScopeIsDeterministicAndShaped() throws {
        let a = WeightScope.random(seed: 7).child("blocks1").child(0)
        let w = try a.tensor("fc1.weight", shape: [8, 4])
        #expect(w.shape == [8, 4])
        #expect(w.data.allSatisfy { abs($0) <= 0.5 })             // ±1/√4
        #expect(Set(w.data).count > 16)
        #expect(try WeightScope.random(seed: 7).tensor("blocks1.0.fc1.weight", shape: [8, 4]) == w)
        #expect(try WeightScope.random(seed: 8).tensor("blocks1.0.fc1.weight", shape: [8, 4]) != w)
        #expect(try a.tensor("norm.running_var", shape: [16]).data.allSatisfy { $0 >= 0.5 && $0 <= 1.5 })
        #expect(!a.has("fc1.weight"))
        #expect(try a.finish().isEmpty)
    }
}
