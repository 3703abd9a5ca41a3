//! safetensors (https://github.com/huggingface/safetensors, the format's README): an 8-byte
//! little-endian header length N, N bytes of JSON `{"name": {"dtype", "shape", "data_offsets":
//! [begin, end]}, …, "__metadata__": {str: str}}`, then the data, offsets relative to its start.
//! Reading validates as the reference implementation does: the tensors tile the data exactly
//! (no overlap, no hole, nothing after the last), and each byte range matches dtype × shape.
//! Writing is atomic: a temporary file in the destination's directory, renamed over it.

import Foundation
import TensorCore

enum Safetensors {
    /// The reference implementation's limit on the header size.
    static let maxHeaderBytes = 100_000_000

    static func load(_ data: Data, file: String) throws -> StateDict {
        func corrupt(_ reason: String) -> WeightError { .corrupt(file: file, reason: "safetensors: " + reason) }
        let parsed: (entries: [(String, DType, [Int], Range<Int>)], metadata: [String: String], dataStart: Int) =
            try data.withUnsafeBytes { (bytes: UnsafeRawBufferPointer) in
                var r = ByteReader(bytes, file: file)
                let n = try r.le(UInt64.self)
                guard n <= UInt64(min(maxHeaderBytes, r.remaining)) else {
                    throw corrupt("header length \(n) exceeds the \(r.remaining) bytes after it")
                }
                let headerBytes = try r.take(Int(n))
                let header: JSONValue
                do throws(JSONParseError) {
                    header = try JSONParser.parse(headerBytes)
                } catch {
                    throw corrupt("header is not valid JSON: \(error.reason)")
                }
                guard case let .object(members) = header else { throw corrupt("header is not a JSON object") }

                var metadata: [String: String] = [:]
                var entries: [(String, DType, [Int], Range<Int>)] = []
                var names: Set<String> = []
                for (name, value) in members {
                    guard names.insert(name).inserted else { throw corrupt("tensor '\(name)' appears twice") }
                    if name == "__metadata__" {
                        guard case let .object(pairs) = value else { throw corrupt("__metadata__ is not an object") }
                        for (k, v) in pairs {
                            guard case let .string(s) = v else { throw corrupt("__metadata__ value '\(k)' is not a string") }
                            metadata[k] = s
                        }
                        continue
                    }
                    guard case let .object(fields) = value else { throw corrupt("entry '\(name)' is not an object") }
                    func field(_ key: String) -> JSONValue? { fields.first(where: { $0.key == key })?.value }
                    guard case let .string(dtypeName) = field("dtype") else { throw corrupt("tensor '\(name)' has no dtype") }
                    guard let dtype = DType(safetensorsName: dtypeName) else {
                        throw WeightError.unsupportedDType(file: file, dtype: "\(dtypeName) (tensor '\(name)')")
                    }
                    guard case let .array(dims) = field("shape") else { throw corrupt("tensor '\(name)' has no shape") }
                    var shape: [Int] = []
                    var count = 1
                    for dim in dims {
                        guard case let .integer(d) = dim, d >= 0 else { throw corrupt("tensor '\(name)' has a bad shape") }
                        let (c, overflow) = count.multipliedReportingOverflow(by: d)
                        guard !overflow else { throw corrupt("tensor '\(name)' shape overflows") }
                        shape.append(d)
                        count = c
                    }
                    guard case let .array(offsets) = field("data_offsets"), offsets.count == 2,
                          case let .integer(begin) = offsets[0], case let .integer(end) = offsets[1],
                          begin >= 0, begin <= end else {
                        throw corrupt("tensor '\(name)' has bad data_offsets")
                    }
                    let (bytesNeeded, overflow) = count.multipliedReportingOverflow(by: dtype.size)
                    guard !overflow, end - begin == bytesNeeded else {
                        throw corrupt("tensor '\(name)' data_offsets [\(begin), \(end)] do not hold \(shape) × \(dtypeName)")
                    }
                    entries.append((name, dtype, shape, begin..<end))
                }

                // The byte ranges must tile [0, data size) exactly.
                let dataSize = r.remaining
                var covered = 0
                for (name, _, _, range) in entries.sorted(by: { ($0.3.lowerBound, $0.3.upperBound) < ($1.3.lowerBound, $1.3.upperBound) }) {
                    guard range.lowerBound == covered else {
                        throw corrupt("tensor '\(name)' data_offsets [\(range.lowerBound), \(range.upperBound)] " +
                                      (range.lowerBound < covered ? "overlap another tensor" : "leave a gap"))
                    }
                    covered = range.upperBound
                }
                if covered > dataSize {
                    // Consistent offsets that run past the end: the file was cut short.
                    throw WeightError.truncated(file: file)
                }
                guard covered == dataSize else { throw corrupt("\(dataSize - covered) bytes after the last tensor") }
                return (entries, metadata, r.position)
            }

        let start = data.startIndex + parsed.dataStart
        var dict = try StateDict(ordered: parsed.entries.map { name, dtype, shape, range in
            (name, StoredTensor(dtype: dtype, shape: shape, bytes: data[start + range.lowerBound ..< start + range.upperBound]))
        }, format: "safetensors", file: file)
        dict.metadata = parsed.metadata
        // `uniformer convert` keeps a checkpoint's meta.CLASSES as metadata "classes", one per line.
        if let classes = parsed.metadata["classes"] {
            dict.classes = classes.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        }
        return dict
    }

    /// The complete file for `entries` in the given order. Data are laid out by decreasing element
    /// size (stable), as the reference writer does, so every tensor stays aligned to its element.
    static func encode(_ entries: [(name: String, tensor: StoredTensor)], metadata: [String: String]) throws -> Data {
        var seen: Set<String> = []
        for (name, _) in entries {
            guard !name.isEmpty, name != "__metadata__", seen.insert(name).inserted else { throw WeightError.invalidName(name) }
        }
        let layout = entries.indices.sorted { (-entries[$0].tensor.dtype.size, $0) < (-entries[$1].tensor.dtype.size, $1) }
        var offsets = [Range<Int>](repeating: 0..<0, count: entries.count)
        var position = 0
        for i in layout {
            offsets[i] = position ..< position + entries[i].tensor.bytes.count
            position += entries[i].tensor.bytes.count
        }

        var fields: [String] = []
        if !metadata.isEmpty {
            let pairs = metadata.sorted { $0.key < $1.key }.map { "\(jsonQuoted($0.key)):\(jsonQuoted($0.value))" }
            fields.append("\"__metadata__\":{" + pairs.joined(separator: ",") + "}")
        }
        for (i, entry) in entries.enumerated() {
            let shape = entry.tensor.shape.map(String.init).joined(separator: ",")
            fields.append("\(jsonQuoted(entry.name)):{\"dtype\":\"\(entry.tensor.dtype.safetensorsName)\",\"shape\":[\(shape)],"
                          + "\"data_offsets\":[\(offsets[i].lowerBound),\(offsets[i].upperBound)]}")
        }
        var header = Array(("{" + fields.joined(separator: ",") + "}").utf8)
        header.append(contentsOf: [UInt8](repeating: 0x20, count: (8 - header.count % 8) % 8))  // data 8-aligned

        var out = Data(capacity: 8 + header.count + position)
        withUnsafeBytes(of: UInt64(header.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(contentsOf: header)
        for i in layout { out.append(entries[i].tensor.bytes) }
        return out
    }
}

/// Writes float32 tensors as a safetensors file, atomically (a temporary file in the same
/// directory, renamed over `url`); on failure nothing is left at `url`.
public func writeSafetensors(_ tensors: [(name: String, tensor: Tensor)], metadata: [String: String] = [:], to url: URL) throws {
    let data = try Safetensors.encode(tensors.map { ($0.name, StoredTensor($0.tensor)) }, metadata: metadata)
    try writeAtomically(data, to: url)
}

/// Writes every tensor of `dict` in its stored dtype (fp16 stays fp16), in `dict.keys` order — for
/// `uniformer convert`. Atomic like the float32 variant.
public func writeSafetensors(_ dict: StateDict, metadata: [String: String] = [:], to url: URL) throws {
    let data = try Safetensors.encode(dict.keys.map { ($0, dict.tensors[$0]!) }, metadata: metadata)
    try writeAtomically(data, to: url)
}

/// `data` to `url` through a temporary file in the same directory and rename(2), so that readers
/// see either the old file or the complete new one.
func writeAtomically(_ data: Data, to url: URL) throws {
    let directory = url.deletingLastPathComponent()
    let temporary = directory.appendingPathComponent(".\(url.lastPathComponent).\(getpid()).\(UInt32.random(in: 0...UInt32.max)).tmp")
    do {
        try data.write(to: temporary)
    } catch {
        try? FileManager.default.removeItem(at: temporary)
        throw WeightError.writeFailed(file: url.relativePath, reason: (error as NSError).localizedDescription)
    }
    guard rename(temporary.path, url.path) == 0 else {
        let reason = String(cString: strerror(errno))
        try? FileManager.default.removeItem(at: temporary)
        throw WeightError.writeFailed(file: url.relativePath, reason: reason)
    }
}
