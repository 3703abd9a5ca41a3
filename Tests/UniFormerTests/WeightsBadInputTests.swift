// Damaged and hostile weight files: each must throw the right WeightError naming the file — never
// crash, hang or allocate without bound. The committed bad files come from
// tasks/reference/weights_fixtures.py; the hostile pickles below are built byte by byte.

import Foundation
import Testing
import Weights

/// Hand-assembled pickle opcodes (protocol 2), for legacy-format files built in memory.
enum PickleBytes {
    static func unicode(_ s: String) -> [UInt8] {
        let b = Array(s.utf8)
        return [0x58] + le32(b.count) + b  // BINUNICODE
    }
    static func le32(_ n: Int) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: n >> (8 * $0)) } }
    static func le64(_ n: Int) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: n >> (8 * $0)) } }
    /// BININT, or LONG1 with 8 bytes beyond 32 bits.
    static func int(_ n: Int) -> [UInt8] { Int32(exactly: n) != nil ? [0x4a] + le32(n) : [0x8a, 0x08] + le64(n) }
    static func global(_ module: String, _ name: String) -> [UInt8] { [0x63] + Array("\(module)\n\(name)\n".utf8) }
    static func tuple(_ items: [UInt8]...) -> [UInt8] { [0x28] + items.flatMap { $0 } + [0x74] }  // MARK … TUPLE
    static let emptyDict: [UInt8] = [0x7d]

    /// A tensor view: _rebuild_tensor_v2(persid(('storage', torch.FloatStorage, key, 'cpu', numel)),
    /// offset, size, stride, False, OrderedDict()).
    static func tensor(key: String, numel: Int, offset: Int, size: [Int], stride: [Int]) -> [UInt8] {
        global("torch._utils", "_rebuild_tensor_v2")
            + tuple(tuple(unicode("storage"), global("torch", "FloatStorage"), unicode(key), unicode("cpu"), int(numel)) + [0x51],
                    int(offset), tuple(size.flatMap(int)), tuple(stride.flatMap(int)), [0x89],
                    global("collections", "OrderedDict") + [0x29, 0x52])
            + [0x52]
    }

    /// {key: value, …} then STOP.
    static func dict(_ items: [(String, [UInt8])]) -> [UInt8] {
        [0x80, 0x02, 0x7d, 0x28] + items.flatMap { unicode($0.0) + $0.1 } + [0x75, 0x2e]
    }

    /// A legacy torch file: magic, protocol 1001, sys_info, `main`, the storage key list, storages.
    static func legacyFile(_ main: [UInt8], storages: [(key: String, floats: [Float])] = [], numelOverride: Int? = nil) -> Data {
        let magic: [UInt8] = [0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e]
        let version: [UInt8] = [0x80, 0x02, 0x4d, 0xe9, 0x03, 0x2e]
        let sysInfo: [UInt8] = [0x80, 0x02, 0x7d] + unicode("little_endian") + [0x88, 0x73, 0x2e]
        let keys: [UInt8] = [0x80, 0x02, 0x5d, 0x28] + storages.flatMap { unicode($0.key) } + [0x65, 0x2e]
        var bytes = magic + version + sysInfo + main + keys
        for s in storages {
            bytes += le64(numelOverride ?? s.floats.count)
            bytes += s.floats.withUnsafeBytes { Array($0) }
        }
        return Data(bytes)
    }
}

@Suite struct WeightsBadInput {
    /// Loads a committed bad file and returns its error, checking that the message names the file.
    func badFile(_ name: String, sourceLocation: SourceLocation = #_sourceLocation) -> WeightError? {
        let url = WeightFixtures.url(name)
        let error = WeightFixtures.error({ _ = try StateDict(contentsOf: url) }, sourceLocation: sourceLocation)
        if let error {
            #expect(error.description.contains(name), "\(error)", sourceLocation: sourceLocation)
            #expect(!error.description.contains("\n"), "one line: \(error)", sourceLocation: sourceLocation)
        }
        return error
    }

    @Test func truncatedZip() {
        #expect(badFile("truncated.pth") == .truncated(file: WeightFixtures.url("truncated.pth").path))
    }

    @Test func corruptZipDirectory() {
        guard case let .corrupt(_, reason)? = badFile("corrupt_directory.pth") else { Issue.record("not .corrupt"); return }
        #expect(reason.contains("central directory"), "\(reason)")
    }

    @Test func compressedZipEntries() {
        guard case let .unsupported(_, reason)? = badFile("compressed.pth") else { Issue.record("not .unsupported"); return }
        #expect(reason.contains("compressed"), "\(reason)")
    }

    @Test func unknownGlobalIsNeverExecuted() {
        // {'state_dict': {'w': os.system('echo pwned')}}
        let path = WeightFixtures.url("unknown_global.pth").path
        #expect(badFile("unknown_global.pth") == .unsupportedGlobal(file: path, module: "os", name: "system"))
        #expect(badFile("unknown_global.pth")?.description.contains("os.system") == true)
    }

    @Test func wholePickledModule() {
        // torch.save(model) instead of torch.save(model.state_dict()): the top level is an object.
        let path = WeightFixtures.url("pickled_module.pth").path
        #expect(badFile("pickled_module.pth") == .unsupportedGlobal(file: path, module: "__main__", name: "Tiny"))
    }

    @Test func safetensorsBadHeaderLength() {
        guard case let .corrupt(_, reason)? = badFile("bad_header_length.safetensors") else { Issue.record("not .corrupt"); return }
        #expect(reason.contains("header length"), "\(reason)")
    }

    @Test func safetensorsOffsetsOutOfRange() {
        guard case let .corrupt(_, reason)? = badFile("offsets_out_of_range.safetensors") else { Issue.record("not .corrupt"); return }
        #expect(reason.contains("'b'"), "\(reason)")
    }

    @Test func safetensorsTruncated() {
        #expect(badFile("truncated.safetensors") == .truncated(file: WeightFixtures.url("truncated.safetensors").path))
    }

    @Test func unreadableAndUnrecognisedFiles() {
        let missing = WeightFixtures.url("no_such_file.pth")
        guard case let .unreadable(file, _)? = WeightFixtures.error({ _ = try StateDict(contentsOf: missing) }) else {
            Issue.record("not .unreadable"); return
        }
        #expect(file == missing.path)
        #expect(WeightFixtures.error { _ = try StateDict.decode(Data("hello, world".utf8), file: "x.pth") }
                == .unrecognizedFormat(file: "x.pth"))
        #expect(WeightFixtures.error { _ = try StateDict.decode(Data(), file: "empty.pth") } == .truncated(file: "empty.pth"))
    }

    // MARK: Safetensors headers built in memory

    func safetensors(_ header: String, data: [UInt8] = []) -> Data {
        let h = Array(header.utf8)
        return Data(PickleBytes.le64(h.count) + h + data)
    }

    @Test func safetensorsHeaderErrors() {
        let eight = [UInt8](repeating: 0, count: 8)
        func reason(_ header: String, _ data: [UInt8] = eight) -> String {
            switch WeightFixtures.error({ _ = try StateDict.decode(safetensors(header, data: data), file: "h.safetensors") }) {
            case let .corrupt(_, r)?: return r
            case let other?: return "other: \(other)"
            case nil: return "no error"
            }
        }
        #expect(reason(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#).contains("twice"))
        #expect(reason(#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#).contains("do not hold"))
        #expect(reason(#"{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}"#).contains("shape"))
        #expect(reason(#"{"a":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}}"#).contains("shape"))
        #expect(reason(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}"#).contains("data_offsets"))
        #expect(reason(#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#).contains("overlap"))
        #expect(reason(#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#).contains("after the last tensor"))
        #expect(reason(#"{"a":{"dtype":"F32","shape":[9223372036854775807,4],"data_offsets":[0,8]}}"#).contains("overflow"))
        #expect(reason(#"{"__metadata__":{"k":1}}"#, []).contains("__metadata__"))
        #expect(reason(#"{"a":[1,2"#).contains("JSON"))
        #expect(reason(#"{"a":"# + String(repeating: "[", count: 100_000)).contains("nesting"))
        #expect(reason(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}} x"#).contains("trailing"))
        #expect(WeightFixtures.error { _ = try StateDict.decode(self.safetensors(#"{"a":{"dtype":"F8_E4M3","shape":[8],"data_offsets":[0,8]}}"#, data: eight), file: "h.safetensors") }
                == .unsupportedDType(file: "h.safetensors", dtype: "F8_E4M3 (tensor 'a')"))
        // Consistent offsets past the end of the data: a cut file.
        #expect(WeightFixtures.error { _ = try StateDict.decode(self.safetensors(#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#, data: eight), file: "h.safetensors") }
                == .truncated(file: "h.safetensors"))
    }

    // MARK: Hostile pickles (legacy files built in memory)

    func legacyError(_ main: [UInt8], storages: [(key: String, floats: [Float])] = [], numelOverride: Int? = nil,
                     sourceLocation: SourceLocation = #_sourceLocation) -> WeightError? {
        WeightFixtures.error({ _ = try StateDict.decode(PickleBytes.legacyFile(main, storages: storages, numelOverride: numelOverride), file: "hostile.pth") },
                             sourceLocation: sourceLocation)
    }

    @Test func handBuiltLegacyFileLoads() throws {
        // The builder itself is right: {'w': tensor [3, 4] of storage '0' = [1, 2, 3, 4, 5] at offset 1, stride 1}.
        let main = PickleBytes.dict([("w", PickleBytes.tensor(key: "0", numel: 5, offset: 1, size: [2], stride: [2]))])
        let dict = try StateDict.decode(PickleBytes.legacyFile(main, storages: [("0", [1, 2, 3, 4, 5])]), file: "ok.pth")
        #expect(dict.format == "pth-legacy")
        #expect(try dict["w"]?.floats() == [2, 4])
    }

    @Test func tensorViewsAreValidatedAgainstTheirStorage() {
        func reason(size: [Int], stride: [Int], offset: Int = 0, numel: Int = 2, override: Int? = nil) -> String {
            let main = PickleBytes.dict([("w", PickleBytes.tensor(key: "0", numel: numel, offset: offset, size: size, stride: stride))])
            switch legacyError(main, storages: [("0", [1, 2])], numelOverride: override) {
            case let .corrupt(_, r)?: return r
            case let other?: return "other: \(other)"
            case nil: return "no error"
            }
        }
        #expect(reason(size: [3], stride: [1]).contains("reaches past"))
        #expect(reason(size: [2], stride: [1], offset: 1).contains("reaches past"))
        #expect(reason(size: [1 << 40], stride: [0]).contains("bytes over a storage"))   // no huge allocation
        #expect(reason(size: [1 << 31 - 1, 1 << 31 - 1, 1 << 31 - 1], stride: [0, 0, 0]).contains("overflows"))
        #expect(reason(size: [2], stride: [1], numel: 3).contains("exceeds its record"))
        #expect(reason(size: [-1], stride: [1]).contains("invalid view"))
        // A storage size beyond the file.
        #expect(legacyError(PickleBytes.dict([("w", PickleBytes.tensor(key: "0", numel: 2, offset: 0, size: [2], stride: [1]))]),
                            storages: [("0", [1, 2])], numelOverride: 1 << 60) == .truncated(file: "hostile.pth"))
    }

    @Test func hostilePickleStructures() {
        func reason(_ main: [UInt8]) -> String {
            switch legacyError(main) {
            case let .corrupt(_, r)?: return r
            case let other?: return "other: \(other)"
            case nil: return "no error"
            }
        }
        #expect(reason([0x80, 0x02, 0xff, 0x2e]).contains("opcode 0xff"))
        #expect(reason([0x80, 0x02, 0x68, 0x05, 0x2e]).contains("memo"))            // BINGET of nothing
        #expect(reason([0x80, 0x02, 0x2e]).contains("underflow"))                   // STOP on an empty stack
        #expect(reason([0x80, 0x02, 0x74, 0x2e]).contains("MARK"))                  // TUPLE without MARK
        #expect(reason([0x80, 0x02, 0x4e, 0x61, 0x2e]).contains("underflow"))       // APPEND to nothing
        #expect(reason([0x80, 0x02, 0x4e, 0x4e, 0x61, 0x2e]).contains("APPEND"))    // APPEND to None
        #expect(reason([0x80, 0x02, 0x5d, 0x2e]).contains("dict"))                  // the top level is a list
        // A list containing itself, and a million nested tuples: flat values, no deep recursion.
        #expect(reason([0x80, 0x02, 0x5d, 0x71, 0x00, 0x68, 0x00, 0x61, 0x2e]).contains("dict"))
        #expect(reason([0x80, 0x02, 0x4e] + [UInt8](repeating: 0x85, count: 1_000_000) + [0x2e]).contains("dict"))
        // Lengths far beyond the file.
        #expect(legacyError([0x80, 0x02, 0x58, 0xff, 0xff, 0xff, 0xff]) == .truncated(file: "hostile.pth"))
        #expect(legacyError([0x80, 0x02, 0x8b, 0xff, 0xff, 0xff, 0x7f]) == .truncated(file: "hostile.pth"))
        #expect(legacyError([0x80, 0x02, 0x8d] + PickleBytes.le64(1 << 62)) == .truncated(file: "hostile.pth"))
        // Unknown globals wherever their value is needed.
        let system = PickleBytes.global("os", "system") + PickleBytes.tuple(PickleBytes.unicode("echo pwned")) + [0x52]
        #expect(legacyError(PickleBytes.dict([("w", system)])) == .unsupportedGlobal(file: "hostile.pth", module: "os", name: "system"))
        #expect(legacyError([0x80, 0x02] + system + [0x2e]) == .unsupportedGlobal(file: "hostile.pth", module: "os", name: "system"))
        #expect(legacyError(PickleBytes.dict([("state_dict", system)])) == .unsupportedGlobal(file: "hostile.pth", module: "os", name: "system"))
        let loadFromBytes = PickleBytes.global("torch.storage", "_load_from_bytes") + PickleBytes.tuple([0x43, 0x01, 0x00]) + [0x52]
        #expect(legacyError(PickleBytes.dict([("w", loadFromBytes)])) == .unsupportedGlobal(file: "hostile.pth", module: "torch.storage", name: "_load_from_bytes"))
        // An unknown global as a tensor's storage type.
        let storage = PickleBytes.tuple(PickleBytes.unicode("storage"), PickleBytes.global("os", "system"), PickleBytes.unicode("0"),
                                        PickleBytes.unicode("cpu"), PickleBytes.int(1)) + [0x51]
        #expect(legacyError(PickleBytes.dict([("w", storage)])) == .unsupportedGlobal(file: "hostile.pth", module: "os", name: "system"))
    }

    @Test func nonTensorEntriesAreSkippedWithARecord() throws {
        let main = PickleBytes.dict([("w", PickleBytes.tensor(key: "0", numel: 2, offset: 0, size: [2], stride: [1])),
                                     ("version", PickleBytes.int(3)), ("name", PickleBytes.unicode("x"))])
        let dict = try StateDict.decode(PickleBytes.legacyFile(main, storages: [("0", [1, 2])]), file: "ok.pth")
        #expect(dict.keys == ["w"])
        #expect(dict.skipped == ["version", "name"])
    }

    // MARK: Fuzz-ish: cut and flipped files must throw a WeightError or load — never crash

    static let fuzzed = ["plain_zip.pth", "legacy.pth", "mmcv.pth", "model_wrapped.pth", "expected.safetensors"]

    @Test(arguments: fuzzed)
    func everyTruncationThrows(_ name: String) throws {
        let data = try Data(contentsOf: WeightFixtures.url(name))
        let step = max(1, data.count / 500)
        for cut in Swift.stride(from: 0, to: data.count, by: step) {
            _ = WeightFixtures.error { _ = try StateDict.decode(data.prefix(cut), file: name) }
        }
    }

    @Test(arguments: fuzzed)
    func flippedBytesNeverCrash(_ name: String) throws {
        let data = try Data(contentsOf: WeightFixtures.url(name))
        var rng = SplitMix64(seed: 0x5eed ^ UInt64(name.utf8.count))
        for round in 0..<600 {
            var damaged = data
            // A third of the rounds hit the first 1 KiB (pickles, zip local headers, the safetensors
            // header), a third the last 1 KiB (the zip central directory), a third anywhere.
            let span = min(1024, data.count)
            for _ in 0...(rng.next() % 4) {
                let at = switch round % 3 {
                case 0: Int(rng.next() % UInt64(span))
                case 1: data.count - 1 - Int(rng.next() % UInt64(span))
                default: Int(rng.next() % UInt64(data.count))
                }
                damaged[at] = UInt8(truncatingIfNeeded: rng.next())
            }
            do {
                let dict = try StateDict.decode(damaged, file: name)
                for key in dict.keys { _ = try dict[key]!.floats() }
            } catch is WeightError {
            } catch {
                Issue.record("round \(round): not a WeightError: \(error)")
            }
        }
    }
}

/// A small seeded generator for the fuzz tests (reproducible across runs).
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}
