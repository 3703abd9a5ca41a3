// The torch zip container, built by hand in memory: ZIP64 fields, archive prefixes, missing or
// inconsistent records, checksums — and the unpickler fuzzed inside a zip whose checksums are
// recomputed (so the damage reaches the pickle instead of stopping at the CRC check).

import Foundation
import Testing
import Weights

/// A minimal ZIP writer (stored entries) with a bitwise CRC-32 — the oracle for the loader's
/// slicing-by-8 CRC.
enum ZipBuilder {
    static func crc32(_ bytes: [UInt8]) -> UInt32 {
        var crc: UInt32 = 0xffff_ffff
        for b in bytes {
            crc ^= UInt32(b)
            for _ in 0..<8 { crc = crc & 1 != 0 ? (crc >> 1) ^ 0xedb8_8320 : crc >> 1 }
        }
        return ~crc
    }
    static func le16(_ n: Int) -> [UInt8] { [UInt8(n & 0xff), UInt8((n >> 8) & 0xff)] }
    static func le32(_ n: Int) -> [UInt8] { PickleBytes.le32(n) }
    static func le64(_ n: Int) -> [UInt8] { PickleBytes.le64(n) }

    /// `entries` as a zip archive; with `zip64`, sizes and offsets live only in ZIP64 fields.
    /// `crcOverride` replaces the checksum recorded for the named entry.
    static func build(_ entries: [(String, [UInt8])], zip64: Bool = false, crcOverride: [String: UInt32] = [:]) -> Data {
        var out: [UInt8] = []
        var central: [UInt8] = []
        for (name, data) in entries {
            let offset = out.count
            let crc = Int(crcOverride[name] ?? crc32(data))
            let n = Array(name.utf8)
            out += le32(0x0403_4b50) + le16(45) + le16(0) + le16(0) + le16(0) + le16(0) + le32(crc)
                + le32(data.count) + le32(data.count) + le16(n.count) + le16(0) + n + data
            let extra = zip64 ? le16(1) + le16(24) + le64(data.count) + le64(data.count) + le64(offset) : []
            central += le32(0x0201_4b50) + le16(45) + le16(45) + le16(0) + le16(0) + le16(0) + le16(0) + le32(crc)
                + (zip64 ? le32(0xffff_ffff) + le32(0xffff_ffff) : le32(data.count) + le32(data.count))
                + le16(n.count) + le16(extra.count) + le16(0) + le16(0) + le16(0) + le32(0)
                + (zip64 ? le32(0xffff_ffff) : le32(offset)) + n + extra
        }
        let directoryOffset = out.count
        out += central
        if zip64 {
            let record = out.count
            out += le32(0x0606_4b50) + le64(44) + le16(45) + le16(45) + le32(0) + le32(0)
                + le64(entries.count) + le64(entries.count) + le64(central.count) + le64(directoryOffset)
            out += le32(0x0706_4b50) + le32(0) + le64(record) + le32(1)
        }
        let count = zip64 ? 0xffff : entries.count
        out += le32(0x0605_4b50) + le16(0) + le16(0) + le16(count) + le16(count)
            + le32(zip64 ? 0xffff_ffff : central.count) + le32(zip64 ? 0xffff_ffff : directoryOffset) + le16(0)
        return Data(out)
    }

    static func floats(_ values: [Float]) -> [UInt8] { values.withUnsafeBytes { Array($0) } }

    /// {'w': a [2, 2] view with stride (1, 2) — a transpose — of storage '0' = [1, 2, 3, 4]}.
    static let pickle = PickleBytes.dict([("w", PickleBytes.tensor(key: "0", numel: 4, offset: 0, size: [2, 2], stride: [1, 2]))])

    static func checkpoint(prefix: String = "archive/", pickle: [UInt8] = pickle, storage: [UInt8] = floats([1, 2, 3, 4]),
                           byteorder: String = "little", zip64: Bool = false, crcOverride: [String: UInt32] = [:]) -> Data {
        build([(prefix + "data.pkl", pickle), (prefix + "byteorder", Array(byteorder.utf8)), (prefix + "data/0", storage)],
              zip64: zip64, crcOverride: crcOverride)
    }
}

@Suite struct WeightsZip {
    func corruptReason(_ data: Data, sourceLocation: SourceLocation = #_sourceLocation) -> String {
        switch WeightFixtures.error({ _ = try StateDict.decode(data, file: "z.pth") }, sourceLocation: sourceLocation) {
        case let .corrupt(file, r)?:
            #expect(file == "z.pth", sourceLocation: sourceLocation)
            return r
        case let other?: return "other: \(other)"
        case nil: return "no error"
        }
    }

    @Test(arguments: [false, true])
    func loadsWithAndWithoutZip64(_ zip64: Bool) throws {
        let dict = try StateDict.decode(ZipBuilder.checkpoint(prefix: "my.model-v2/", zip64: zip64), file: "z.pth")
        #expect(dict.format == "pth-zip")
        #expect(dict["w"]?.shape == [2, 2])
        #expect(try dict["w"]?.floats() == [1, 3, 2, 4])
    }

    @Test func checksumsMatchABitwiseCRC() throws {
        // Records of every length 0…40 around the 8-byte blocks of the fast CRC, each one checked.
        for n in 0...40 {
            let storage = (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }
            let data = ZipBuilder.build([("a/data.pkl", PickleBytes.dict([])), ("a/data/0", storage)])
            #expect(throws: Never.self) { _ = try StateDict.decode(data, file: "z.pth") }
        }
        let wrong = ZipBuilder.crc32(ZipBuilder.floats([1, 2, 3, 4])) ^ 1
        #expect(corruptReason(ZipBuilder.checkpoint(crcOverride: ["archive/data/0": wrong])).contains("checksum"))
        #expect(corruptReason(ZipBuilder.checkpoint(crcOverride: ["archive/data.pkl": 0])).contains("checksum"))
    }

    @Test func inconsistentArchives() {
        #expect(corruptReason(ZipBuilder.build([("archive/version", [0x33])])).contains("no data.pkl"))
        #expect(corruptReason(ZipBuilder.checkpoint() + Data([1, 2, 3])).contains("bytes after the end"))
        #expect(corruptReason(ZipBuilder.build([("a/data.pkl", ZipBuilder.pickle), ("b/data.pkl", ZipBuilder.pickle)])).contains("2 data.pkl"))
        #expect(corruptReason(ZipBuilder.build([("archive/data.pkl", ZipBuilder.pickle)])).contains("missing"))
        #expect(corruptReason(ZipBuilder.checkpoint(storage: ZipBuilder.floats([1, 2, 3]))).contains("holds 12 bytes"))
        #expect(WeightFixtures.error { _ = try StateDict.decode(ZipBuilder.checkpoint(byteorder: "big"), file: "z.pth") }
                == .unsupported(file: "z.pth", reason: "byte order 'big' (only little-endian checkpoints are read)"))
    }

    @Test func damagedPicklesInsideAValidZip() throws {
        // The mmcv fixture's data.pkl, damaged and re-zipped with correct checksums.
        let mmcv = try Data(contentsOf: WeightFixtures.url("mmcv.pth"))
        let dict = try StateDict.decode(mmcv, file: "mmcv.pth")
        #expect(dict.keys.count == 9)
        let pickle = try #require(Self.storedEntry(mmcv, "archive/data.pkl"))
        var storages: [(String, [UInt8])] = []
        for key in 0..<20 {
            guard let bytes = Self.storedEntry(mmcv, "archive/data/\(key)") else { break }
            storages.append(("archive/data/\(key)", bytes))
        }
        #expect(storages.count >= 9)
        #expect(try StateDict.decode(ZipBuilder.build([("archive/data.pkl", pickle)] + storages), file: "z.pth").keys == dict.keys)

        var rng = SplitMix64(seed: 42)
        var loaded = 0
        for round in 0..<2000 {
            var damaged = pickle
            for _ in 0...(rng.next() % 3) {
                damaged[Int(rng.next() % UInt64(damaged.count))] = UInt8(truncatingIfNeeded: rng.next())
            }
            if round % 4 == 0 { damaged.removeLast(Int(rng.next() % UInt64(damaged.count))) }
            do {
                let d = try StateDict.decode(ZipBuilder.build([("archive/data.pkl", damaged)] + storages), file: "z.pth")
                for key in d.keys { _ = try d[key]!.floats() }
                loaded += 1
            } catch is WeightError {
            } catch {
                Issue.record("round \(round): not a WeightError: \(error)")
            }
        }
        #expect(loaded > 0)  // some damage is harmless (inside skipped entries): the fuzzing reached the interpreter
    }

    /// The bytes of a stored entry of a small zip archive, found through its central directory
    /// (torch's local headers carry zero sizes: it sets the data-descriptor flag).
    static func storedEntry(_ zip: Data, _ name: String) -> [UInt8]? {
        let b = [UInt8](zip)
        func u16(_ i: Int) -> Int { Int(b[i]) | Int(b[i + 1]) << 8 }
        func u32(_ i: Int) -> Int { u16(i) | u16(i + 2) << 16 }
        guard let eocd = (0...(b.count - 22)).reversed().first(where: { u32($0) == 0x0605_4b50 }) else { return nil }
        var i = u32(eocd + 16)
        for _ in 0..<u16(eocd + 10) {
            let size = u32(i + 24), nameLength = u16(i + 28), extraLength = u16(i + 30), commentLength = u16(i + 32)
            let local = u32(i + 42)
            if String(decoding: b[(i + 46)..<(i + 46 + nameLength)], as: UTF8.self) == name {
                let start = local + 30 + u16(local + 26) + u16(local + 28)
                return Array(b[start..<(start + size)])
            }
            i += 46 + nameLength + extraLength + commentLength
        }
        return nil
    }
}
