//! `.pth` checkpoints: the torch zip format and the legacy (non-zip) format, read without Python.
//!
//! Zip (`torch.save` since 1.6, torch/serialization.py `_save`): `<prefix>/data.pkl` is the pickle,
//! `<prefix>/data/<key>` the bytes of each storage, `<prefix>/byteorder` "little" (absent in old
//! files). `<prefix>` is the file's stem or `archive`, so it is found, not assumed.
//! Legacy (`_use_new_zipfile_serialization=False`, torch/serialization.py `_legacy_save`): five
//! pickles in a row — the magic number, the protocol version 1001, sys_info, the object, the sorted
//! storage keys — then each storage as an 8-byte little-endian element count and its raw bytes.
//!
//! The object is interpreted as mmcv (`{meta, state_dict, optimizer, …}`), UniFormer's
//! classification code (`{model, optimizer, lr_scheduler, epoch, args, …}`) or a bare state dict.
//! Only tensors of the chosen state dict are materialised; everything else is listed as skipped.

import Foundation

enum TorchCheckpoint {
    // MARK: Zip format

    static func loadZip(_ data: Data, file: String) throws -> StateDict {
        try data.withUnsafeBytes { bytes in
            let archive = try ZipArchive(bytes, file: file)
            let pickles = archive.entries.filter { entry in
                entry.name.hasSuffix("/data.pkl") && !entry.name.dropLast("/data.pkl".count).contains("/")
            }
            guard pickles.count == 1, let pickle = pickles.first else {
                throw WeightError.corrupt(file: file, reason: pickles.isEmpty
                    ? "zip archive has no data.pkl (not a torch.save checkpoint)"
                    : "zip archive has \(pickles.count) data.pkl records")
            }
            let prefix = String(pickle.name.dropLast("data.pkl".count))
            var records: [String: ZipEntry] = [:]
            for entry in archive.entries where entry.name.hasPrefix(prefix) {
                records[String(entry.name.dropFirst(prefix.count))] = entry
            }
            func recordBytes(_ entry: ZipEntry) throws -> UnsafeRawBufferPointer {
                let raw = UnsafeRawBufferPointer(rebasing: bytes[entry.offset..<entry.offset + entry.size])
                guard crc32(raw) == entry.crc32 else {
                    throw WeightError.corrupt(file: file, reason: "checksum mismatch in record '\(entry.name)'")
                }
                return raw
            }
            if let order = records["byteorder"] {
                let text = String(decoding: try recordBytes(order), as: UTF8.self)
                guard text == "little" else {
                    throw WeightError.unsupported(file: file, reason: "byte order '\(text)' (only little-endian checkpoints are read)")
                }
            }

            var reader = ByteReader(try recordBytes(pickle), file: file)
            var unpickler = Unpickler(file: file)
            let root = try unpickler.load(&reader, context: pickle.name)
            let contents = try interpret(root, unpickler)

            // Each storage record is checked once (checksum, size), then shared by its tensors.
            var checked: Set<String> = []
            let tensors = try contents.entries.map { key, index -> (String, StoredTensor) in
                let ref = unpickler.heap.tensors[index]
                let storage = unpickler.heap.storages[ref.storage]
                guard let entry = records["data/" + storage.rootKey] else {
                    throw WeightError.corrupt(file: file, reason: "storage record 'data/\(storage.rootKey)' of '\(key)' is missing")
                }
                if !checked.contains(storage.rootKey) {
                    _ = try recordBytes(entry)
                    checked.insert(storage.rootKey)
                }
                let (rootBytes, overflow) = storage.rootNumel.multipliedReportingOverflow(by: storage.dtype.size)
                guard !overflow, rootBytes == entry.size else {
                    throw WeightError.corrupt(file: file, reason: "storage record '\(entry.name)' holds \(entry.size) bytes, its tensors say \(storage.rootNumel) × \(storage.dtype.size)")
                }
                let record = data[data.startIndex + entry.offset ..< data.startIndex + entry.offset + entry.size]
                return (key, try materialize(ref, storage, record: record, key: key, file: file))
            }
            return try finish(tensors, contents, format: "pth-zip", file: file)
        }
    }

    // MARK: Legacy format

    /// 0x1950a86a20f9469cfc6c, the first pickle of a legacy file, as LONG1 bytes.
    private static let magic: [UInt8] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19]

    static func loadLegacy(_ data: Data, file: String) throws -> StateDict {
        try data.withUnsafeBytes { bytes in
            var reader = ByteReader(bytes, file: file)
            var unpickler = Unpickler(file: file)
            guard case let .bigInt(number) = try unpickler.load(&reader, context: "magic number"), number == magic else {
                throw WeightError.unrecognizedFormat(file: file)
            }
            guard case .int(1001) = try unpickler.load(&reader, context: "protocol version") else {
                throw WeightError.unsupported(file: file, reason: "legacy torch format with a protocol version other than 1001")
            }
            let sysInfo = try unpickler.load(&reader, context: "sys_info")
            if case let .dict(d) = sysInfo,
               let little = unpickler.heap.dicts[d].last(where: { if case .string("little_endian") = $0.key { true } else { false } }),
               case .bool(false) = little.value {
                throw WeightError.unsupported(file: file, reason: "big-endian legacy checkpoint")
            }
            let root = try unpickler.load(&reader, context: "main pickle")
            let keyList = try unpickler.load(&reader, context: "storage keys")
            guard case let .list(l) = keyList else {
                throw WeightError.corrupt(file: file, reason: "legacy storage key list is a \(keyList.typeName)")
            }
            let storageKeys = try unpickler.heap.lists[l].map { try unpickler.string($0, "storage key", "storage keys") }

            // The element size of each record is that of the first storage naming it (as torch.load).
            var elementSize: [String: Int] = [:]
            for storage in unpickler.heap.storages where elementSize[storage.rootKey] == nil {
                elementSize[storage.rootKey] = storage.dtype.size
            }
            var records: [String: Range<Int>] = [:]
            for key in storageKeys {
                guard let size = elementSize[key] else {
                    throw WeightError.corrupt(file: file, reason: "storage '\(key)' is listed but no tensor uses it")
                }
                let numel = try reader.le(Int64.self)
                guard numel >= 0, let n = Int(exactly: numel) else {
                    throw WeightError.corrupt(file: file, reason: "storage '\(key)' has \(numel) elements")
                }
                let (count, overflow) = n.multipliedReportingOverflow(by: size)
                guard !overflow, count <= reader.remaining else { throw WeightError.truncated(file: file) }
                records[key] = reader.position ..< reader.position + count
                reader.position += count
            }

            let contents = try interpret(root, unpickler)
            let tensors = try contents.entries.map { key, index -> (String, StoredTensor) in
                let ref = unpickler.heap.tensors[index]
                let storage = unpickler.heap.storages[ref.storage]
                guard let range = records[storage.rootKey] else {
                    throw WeightError.corrupt(file: file, reason: "storage '\(storage.rootKey)' of '\(key)' is missing")
                }
                let record = data[data.startIndex + range.lowerBound ..< data.startIndex + range.upperBound]
                return (key, try materialize(ref, storage, record: record, key: key, file: file))
            }
            return try finish(tensors, contents, format: "pth-legacy", file: file)
        }
    }

    // MARK: Interpreting the unpickled object

    struct Contents {
        var entries: [(key: String, tensor: Int)] = []
        var classes: [String]?
        var skipped: [String] = []
    }

    /// A dict's entries with string keys, later duplicates replacing earlier ones in place (Python's dict).
    static func pairs(_ value: PickleValue, _ u: Unpickler, _ what: String) throws -> [(String, PickleValue)] {
        guard case let .dict(d) = value else { throw try u.notA("dict (\(what))", value, what) }
        var result: [(String, PickleValue)] = []
        var position: [String: Int] = [:]
        for (k, v) in u.heap.dicts[d] {
            let key = try u.string(k, "key", what)
            if let i = position[key] { result[i].1 = v } else {
                position[key] = result.count
                result.append((key, v))
            }
        }
        return result
    }

    static func interpret(_ root: PickleValue, _ u: Unpickler) throws -> Contents {
        let top = try pairs(root, u, "checkpoint")
        func value(_ key: String) -> PickleValue? { top.first(where: { $0.0 == key })?.1 }

        var contents = Contents()
        var wrapper: String?
        for candidate in ["state_dict", "model"] {
            guard let v = value(candidate) else { continue }
            switch v {
            case .dict: wrapper = candidate
            case .object, .global: throw try u.notA("dict (\(candidate))", v, candidate)  // e.g. a whole nn.Module
            default: continue
            }
            break
        }

        let stateDict: [(String, PickleValue)]
        if let wrapper {
            stateDict = try pairs(value(wrapper)!, u, wrapper)
            for (key, v) in top where key != wrapper {
                if key == "meta" {
                    contents.classes = try classes(v, u, &contents.skipped)
                } else {
                    contents.skipped.append(key)
                }
            }
        } else {
            stateDict = top
        }

        for (key, v) in stateDict {
            switch v {
            case let .tensor(i):
                contents.entries.append((key, i))
            case let .object(g), let .global(g):
                let global = u.heap.globals[g]
                if global.kind == .unknown || global.kind == .inert {
                    throw WeightError.unsupportedGlobal(file: u.file, module: global.module, name: global.name)
                }
                contents.skipped.append(wrapper.map { "\($0).\(key)" } ?? key)
            default:
                contents.skipped.append(wrapper.map { "\($0).\(key)" } ?? key)
            }
        }
        return contents
    }

    /// meta.CLASSES as a list of strings, or nil (recorded as skipped) when it is something else.
    /// Only the CLASSES entry of meta is looked at; the rest (and its key types) does not matter.
    private static func classes(_ meta: PickleValue, _ u: Unpickler, _ skipped: inout [String]) throws -> [String]? {
        guard case let .dict(d) = meta else {
            skipped.append("meta")
            return nil
        }
        guard let value = u.heap.dicts[d].last(where: { if case .string("CLASSES") = $0.key { true } else { false } })?.value else {
            return nil
        }
        let items: [PickleValue]
        switch value {
        case let .tuple(t): items = u.heap.tuples[t]
        case let .list(l): items = u.heap.lists[l]
        default:
            skipped.append("meta.CLASSES")
            return nil
        }
        var names: [String] = []
        for item in items {
            guard case let .string(s) = item else {
                skipped.append("meta.CLASSES")
                return nil
            }
            names.append(s)
        }
        return names
    }

    /// Strips a `module.` prefix carried by every key, then builds the dict.
    private static func finish(_ tensors: [(String, StoredTensor)], _ contents: Contents,
                               format: String, file: String) throws -> StateDict {
        var tensors = tensors
        let strip = !tensors.isEmpty && tensors.allSatisfy { $0.0.hasPrefix("module.") }
        if strip { tensors = tensors.map { (String($0.0.dropFirst("module.".count)), $0.1) } }
        var dict = try StateDict(ordered: tensors, format: format, file: file)
        dict.classes = contents.classes
        dict.skipped = contents.skipped
        dict.strippedModulePrefix = strip
        return dict
    }

    // MARK: Materialising a tensor view

    /// A non-contiguous view may repeat storage elements (stride 0); its copy is capped so a hostile
    /// size cannot request an unbounded allocation.
    static let maxExpandedBytes = 1 << 28

    /// The tensor `ref` describes over `storage` (whose root record is `record`), as contiguous bytes.
    /// Contiguous views share the record's buffer; others are gathered element by element.
    static func materialize(_ ref: TensorRef, _ storage: StorageRef, record: Data, key: String, file: String) throws -> StoredTensor {
        func corrupt(_ reason: String) -> WeightError { .corrupt(file: file, reason: "tensor '\(key)': " + reason) }
        let e = storage.dtype.size
        // The storage within its record (legacy storage views start inside the record).
        let (storageEnd, o1) = storage.offset.addingReportingOverflow(storage.numel)
        let (storageEndBytes, o2) = storageEnd.multipliedReportingOverflow(by: e)
        guard !o1, !o2, storage.offset >= 0, storageEndBytes <= record.count else {
            throw corrupt("storage of \(storage.numel) elements at \(storage.offset) exceeds its record of \(record.count) bytes")
        }
        guard ref.size.count <= 64, ref.offset >= 0, ref.size.allSatisfy({ $0 >= 0 }), ref.stride.allSatisfy({ $0 >= 0 }) else {
            throw corrupt("invalid view (offset \(ref.offset), size \(ref.size), stride \(ref.stride))")
        }
        var numel = 1
        var last = ref.offset  // the highest element index the view touches
        for (size, stride) in zip(ref.size, ref.stride) {
            let (n, o3) = numel.multipliedReportingOverflow(by: size)
            guard !o3 else { throw corrupt("size \(ref.size) overflows") }
            numel = n
            if size > 0 {
                let (reach, o4) = (size - 1).multipliedReportingOverflow(by: stride)
                let (sum, o5) = last.addingReportingOverflow(reach)
                guard !o4, !o5 else { throw corrupt("stride \(ref.stride) overflows") }
                last = sum
            }
        }
        let (byteCount, o6) = numel.multipliedReportingOverflow(by: e)
        guard !o6 else { throw corrupt("size \(ref.size) overflows") }
        if numel == 0 { return StoredTensor(dtype: storage.dtype, shape: ref.size, bytes: Data()) }
        guard last < storage.numel else {
            throw corrupt("view (offset \(ref.offset), size \(ref.size), stride \(ref.stride)) reaches past its storage of \(storage.numel) elements")
        }

        let base = record.startIndex + storage.offset * e  // byte index of storage element 0
        var expected = 1
        var contiguous = true
        for (size, stride) in zip(ref.size, ref.stride).reversed() where size != 1 {
            if stride != expected { contiguous = false; break }
            expected *= size
        }
        if contiguous {
            let start = base + ref.offset * e
            return StoredTensor(dtype: storage.dtype, shape: ref.size, bytes: record[start ..< start + byteCount])
        }
        guard byteCount <= max(maxExpandedBytes, record.count) else {
            throw corrupt("view of \(byteCount) bytes over a storage of \(record.count) bytes")
        }
        var out = Data(count: byteCount)
        out.withUnsafeMutableBytes { dst in
            record.withUnsafeBytes { src in
                gather(from: src.baseAddress! + (base - record.startIndex), to: dst.baseAddress!, elementSize: e,
                       offset: ref.offset, size: ref.size, stride: ref.stride)
            }
        }
        return StoredTensor(dtype: storage.dtype, shape: ref.size, bytes: out)
    }

    /// Copies a strided view into contiguous memory: an odometer over all but the last dimension,
    /// a strided loop over the last.
    private static func gather(from src: UnsafeRawPointer, to dst: UnsafeMutableRawPointer, elementSize e: Int,
                               offset: Int, size: [Int], stride: [Int]) {
        let rank = size.count
        if rank == 0 {
            dst.copyMemory(from: src + offset * e, byteCount: e)
            return
        }
        let inner = size[rank - 1], innerStride = stride[rank - 1]
        var index = [Int](repeating: 0, count: rank - 1)
        var out = 0
        var rowStart = offset
        while true {
            var s = rowStart
            for _ in 0..<inner {
                (dst + out * e).copyMemory(from: src + s * e, byteCount: e)
                out += 1
                s += innerStride
            }
            // Advance the odometer over the outer dimensions.
            var d = rank - 2
            while d >= 0 {
                index[d] += 1
                rowStart += stride[d]
                if index[d] < size[d] { break }
                rowStart -= stride[d] * size[d]
                index[d] = 0
                d -= 1
            }
            if d < 0 { return }
        }
    }
}
