// Weight loading: .pth (torch zip and legacy formats) and safetensors against values PyTorch saved.
// Fixtures: Tests/UniFormerTests/Fixtures/weights/, made by `python3 tasks/reference/weights_fixtures.py`
// (its docstring lists what each file holds). expected.safetensors holds every tensor as float32
// ("A.<key>" for the plain dict A, "B.<key>" for the module state dict B), written by the
// safetensors package from `tensor.float()`; values must match bit for bit (fp16/bf16 widening is exact).

import Foundation
import TensorCore
import Testing
import Weights

enum WeightFixtures {
    static func url(_ name: String) -> URL { Fixtures.url("weights", name) }

    /// expected.safetensors, loaded once.
    static let expected: StateDict = try! StateDict(contentsOf: url("expected.safetensors"))

    static func keys(_ group: String) -> [String] {
        expected.metadata["\(group).keys"]!.split(separator: "\n").map(String.init)
    }

    /// Checks every tensor of `dict` against expected "<group>.<key>", bitwise, in file order.
    static func check(_ dict: StateDict, group: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        #expect(dict.keys == keys(group), sourceLocation: sourceLocation)
        for key in dict.keys {
            let got = try #require(dict[key], sourceLocation: sourceLocation)
            let want = try #require(expected["\(group).\(key)"], sourceLocation: sourceLocation)
            #expect(got.shape == want.shape, "\(key): shape \(got.shape) vs \(want.shape)", sourceLocation: sourceLocation)
            let g = try got.floats(), w = try want.floats()
            #expect(g.map(\.bitPattern) == w.map(\.bitPattern),
                    "\(key): \(g.prefix(6)) vs \(w.prefix(6))", sourceLocation: sourceLocation)
        }
    }

    /// The error `body` throws, as a WeightError (a different error type fails the test).
    static func error(_ body: () throws -> Void, sourceLocation: SourceLocation = #_sourceLocation) -> WeightError? {
        do {
            try body()
            Issue.record("expected an error", sourceLocation: sourceLocation)
            return nil
        } catch let e as WeightError {
            return e
        } catch {
            Issue.record("not a WeightError: \(error)", sourceLocation: sourceLocation)
            return nil
        }
    }
}

@Suite struct WeightsCheckpoints {
    @Test func zipFormatBareStateDict() throws {
        let dict = try StateDict(contentsOf: WeightFixtures.url("plain_zip.pth"))  // archive prefix "plain_zip/"
        #expect(dict.format == "pth-zip")
        #expect(dict.classes == nil)
        #expect(dict.skipped.isEmpty)
        #expect(!dict.strippedModulePrefix)
        try WeightFixtures.check(dict, group: "A")
        let dtypes = ["conv.weight": DType.float32, "half.weight": .float16, "half.special": .float16, "half.transposed": .float16,
                      "bf16.weight": .bfloat16, "f64": .float64, "int64": .int64, "int32": .int32, "uint8": .uint8,
                      "bool": .bool, "bn.num_batches_tracked": .int64, "param": .float32]
        for (key, dtype) in dtypes { #expect(dict[key]?.dtype == dtype, "\(key)") }
        #expect(dict["scalar"]?.shape == [])
        #expect(dict["empty"]?.shape == [0, 3])
        #expect(dict["transposed"]?.shape == [5, 6])
        #expect(dict["expanded"]?.shape == [2, 3])
    }

    @Test func legacyFormatWithClassList() throws {
        let dict = try StateDict(contentsOf: WeightFixtures.url("legacy.pth"))
        #expect(dict.format == "pth-legacy")
        #expect(dict.classes == ["road", "sky"])
        #expect(dict.skipped.isEmpty)
        try WeightFixtures.check(dict, group: "A")
        #expect(dict["half.weight"]?.dtype == .float16)
        #expect(dict["bf16.weight"]?.dtype == .bfloat16)
    }

    @Test func mmcvCheckpoint() throws {
        // {meta, state_dict, optimizer, amp}, saved through a buffer (archive prefix "archive/");
        // meta.hook_msgs holds a numpy scalar: a global off the whitelist, inert because it is skipped.
        let dict = try StateDict(contentsOf: WeightFixtures.url("mmcv.pth"))
        #expect(dict.format == "pth-zip")
        #expect(dict.classes == ["cat", "dog", "person"])
        #expect(dict.skipped == ["optimizer", "amp", "state_dict._step"])
        try WeightFixtures.check(dict, group: "B")
    }

    @Test func classificationCheckpointWithModulePrefix() throws {
        // {model (keys "module.*"), optimizer, lr_scheduler, epoch, args: argparse.Namespace, scaler, max_accuracy}
        let dict = try StateDict(contentsOf: WeightFixtures.url("model_wrapped.pth"))
        #expect(dict.strippedModulePrefix)
        #expect(dict.classes == nil)
        #expect(dict.skipped == ["optimizer", "lr_scheduler", "epoch", "args", "scaler", "max_accuracy"])
        try WeightFixtures.check(dict, group: "B")
    }

    @Test func safetensorsMetadataAndOrder() throws {
        let dict = WeightFixtures.expected
        #expect(dict.format == "safetensors")
        #expect(dict.metadata["generator"] == "tasks/reference/weights_fixtures.py")
        #expect(dict.keys.count == WeightFixtures.keys("A").count + WeightFixtures.keys("B").count)
        #expect(dict.keys.allSatisfy { dict[$0]?.dtype == .float32 })
    }

    @Test func halfPrecisionWideningIsExactForEveryBitPattern() throws {
        let bits = (0...UInt16.max).map { $0 }
        let stored = StoredTensor(dtype: .float16, shape: [bits.count], bytes: bits.withUnsafeBytes { Data($0) })
        let got = try stored.floats()
        for (i, h) in bits.enumerated() {
            let want = Float(Float16(bitPattern: h))
            if want.isNaN {
                #expect(got[i].isNaN, "half 0x\(String(h, radix: 16))")
            } else if got[i].bitPattern != want.bitPattern {
                Issue.record("half 0x\(String(h, radix: 16)): \(got[i]) vs \(want)")
                break
            }
        }
        let bf: [UInt16] = [0x3f80, 0xbf80, 0x7f80, 0x0001, 0x4049]
        let bfloat = try StoredTensor(dtype: .bfloat16, shape: [5], bytes: bf.withUnsafeBytes { Data($0) }).floats()
        #expect(bfloat.map(\.bitPattern) == bf.map { UInt32($0) << 16 })
    }
}

@Suite struct WeightsWriting {
    static func temporaryDirectory() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("weights-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }

    @Test func convertKeepsDtypesKeysAndBytes() throws {
        let dir = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let source = try StateDict(contentsOf: WeightFixtures.url("plain_zip.pth"))
        let out = dir.appendingPathComponent("converted.safetensors")
        try writeSafetensors(source, metadata: ["source": "plain_zip.pth"], to: out)
        let back = try StateDict(contentsOf: out)
        #expect(back.format == "safetensors")
        #expect(back.metadata == ["source": "plain_zip.pth"])
        #expect(back.keys == source.keys)
        for key in source.keys {
            #expect(back[key]?.dtype == source[key]?.dtype, "\(key)")
            #expect(back[key]?.shape == source[key]?.shape, "\(key)")
            #expect(back[key]?.bytes == source[key]?.bytes, "\(key)")
        }
        // Only the output is left in the directory (the temporary file was renamed).
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["converted.safetensors"])
    }

    @Test func classesSurviveConversionAsMetadata() throws {
        // `uniformer convert` stores meta.CLASSES as metadata "classes", one per line.
        let dir = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let source = try StateDict(contentsOf: WeightFixtures.url("mmcv.pth"))
        let out = dir.appendingPathComponent("mmcv.safetensors")
        try writeSafetensors(source, metadata: ["classes": source.classes!.joined(separator: "\n")], to: out)
        let back = try StateDict(contentsOf: out)
        #expect(back.classes == ["cat", "dog", "person"])
        try WeightFixtures.check(back, group: "B")
    }

    @Test func float32WriterRoundTripsAndReplacesAtomically() throws {
        let dir = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("features.safetensors")
        try Data("old".utf8).write(to: out)
        let a = Tensor(shape: [1, 2, 3, 1], data: [1, -2, 3.5, 0, .infinity, -0.0])
        let b = Tensor(shape: [], data: [42])
        try writeSafetensors([("stage1", a), ("scalar \"quoted\"\n", b)], metadata: ["k": "v\u{1}"], to: out)
        let back = try StateDict(contentsOf: out)
        #expect(back.keys == ["stage1", "scalar \"quoted\"\n"])
        #expect(try back["stage1"]?.tensor() == a)
        #expect(try back["scalar \"quoted\"\n"]?.tensor() == b)
        #expect(back.metadata == ["k": "v\u{1}"])
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["features.safetensors"])

        // Python's safetensors requires the data to start 8-byte aligned: the header is padded.
        let raw = try Data(contentsOf: out)
        let headerLength = raw.prefix(8).enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        #expect(headerLength % 8 == 0)
    }

    @Test func writerRejectsDuplicateNamesAndUnwritableDestinations() throws {
        let dir = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let t = Tensor(shape: [1], data: [1])
        let out = dir.appendingPathComponent("x.safetensors")
        #expect(WeightFixtures.error { try writeSafetensors([("a", t), ("a", t)], to: out) } == .invalidName("a"))
        let missing = dir.appendingPathComponent("no/such/dir/x.safetensors")
        let error = WeightFixtures.error { try writeSafetensors([("a", t)], to: missing) }
        guard case let .writeFailed(file, _)? = error else { Issue.record("\(String(describing: error))"); return }
        #expect(file == missing.path)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path).isEmpty)
    }
}

@Suite struct WeightsFormatDetection {
    /// A safetensors header of 128 + 256·k bytes makes the file start with 0x80, the pickle PROTO byte.
    @Test func safetensorsWhoseLengthStartsWith0x80IsNotTakenForAPickle() throws {
        for pad in 0..<300 {
            let meta = ["note": String(repeating: "x", count: pad)]
            let url = FileManager.default.temporaryDirectory.appendingPathComponent("uf-0x80-\(pad).safetensors")
            try writeSafetensors([(name: "t", tensor: Tensor(shape: [2], data: [1, 2]))], metadata: meta, to: url)
            let bytes = try Data(contentsOf: url)
            let dict = try StateDict(contentsOf: url)
            #expect(try dict.tensors["t"]?.tensor().data == [1, 2])
            try? FileManager.default.removeItem(at: url)
            if bytes.first == 0x80 { return }   // the case in question was exercised
        }
        Issue.record("no header length with a 0x80 low byte was produced")
    }
}
