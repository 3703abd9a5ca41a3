//! The ZIP container of `torch.save` (PyTorchStreamWriter): a central directory of STORED records.
//!
//! torch never compresses (`writeRecord` defaults to `compress = false`) and pads each local
//! header's extra field so tensor data starts 64-byte aligned; it always writes ZIP64 end records
//! and sets the data-descriptor flag, so sizes are read from the central directory, not the local
//! headers. A compressed or encrypted entry is reported, not guessed at.

/// One stored entry: its data is `bytes[offset ..< offset + size]` of the archive.
struct ZipEntry {
    let name: String
    let offset: Int
    let size: Int
    let crc32: UInt32
}

/// The central directory of a ZIP archive held in memory.
struct ZipArchive {
    let entries: [ZipEntry]

    private static let eocdSignature: UInt32 = 0x0605_4b50
    private static let zip64LocatorSignature: UInt32 = 0x0706_4b50
    private static let zip64EOCDSignature: UInt32 = 0x0606_4b50
    private static let centralSignature: UInt32 = 0x0201_4b50
    private static let localSignature: UInt32 = 0x0403_4b50

    init(_ bytes: UnsafeRawBufferPointer, file: String) throws {
        let r = ByteReader(bytes, file: file)
        func corrupt(_ reason: String) -> WeightError { .corrupt(file: file, reason: "zip: " + reason) }

        // End of central directory: 22 bytes plus a comment of up to 65535 bytes, at the very end.
        // A file cut short loses it, which is how truncation shows up in a zip.
        guard bytes.count >= 22 else { throw WeightError.truncated(file: file) }
        var eocd = -1
        var candidate = bytes.count - 22
        while candidate >= max(0, bytes.count - 22 - 65535) {
            if try r.le(UInt32.self, at: candidate) == Self.eocdSignature,
               candidate + 22 + Int(try r.le(UInt16.self, at: candidate + 20)) == bytes.count {
                eocd = candidate
                break
            }
            candidate -= 1
        }
        guard eocd >= 0 else {
            // A record whose comment does not reach the end: bytes were appended, not cut off.
            let lowest = max(0, bytes.count - 22 - 65535)
            if try (lowest...(bytes.count - 22)).contains(where: { try r.le(UInt32.self, at: $0) == Self.eocdSignature }) {
                throw corrupt("bytes after the end-of-central-directory record")
            }
            throw WeightError.truncated(file: file)
        }

        var entryCount = Int(try r.le(UInt16.self, at: eocd + 10))
        var directorySize = Int(try r.le(UInt32.self, at: eocd + 12))
        var directoryOffset = Int(try r.le(UInt32.self, at: eocd + 16))
        guard try r.le(UInt16.self, at: eocd + 4) == 0, try r.le(UInt16.self, at: eocd + 6) == 0 else {
            throw WeightError.unsupported(file: file, reason: "multi-disk zip archive")
        }
        // ZIP64: a 20-byte locator right before the end record points at the ZIP64 end record.
        if eocd >= 20, try r.le(UInt32.self, at: eocd - 20) == Self.zip64LocatorSignature {
            let recordOffset = try r.le(UInt64.self, at: eocd - 20 + 8)
            guard eocd >= 20 + 56, recordOffset <= UInt64(eocd - 20 - 56), let record = Int(exactly: recordOffset),
                  try r.le(UInt32.self, at: record) == Self.zip64EOCDSignature else {
                throw corrupt("bad ZIP64 end-of-directory locator")
            }
            let count64 = try r.le(UInt64.self, at: record + 32)
            let size64 = try r.le(UInt64.self, at: record + 40)
            let offset64 = try r.le(UInt64.self, at: record + 48)
            guard count64 <= UInt64(bytes.count / 46), size64 <= UInt64(bytes.count), offset64 <= UInt64(bytes.count) else {
                throw corrupt("ZIP64 directory out of range")
            }
            (entryCount, directorySize, directoryOffset) = (Int(count64), Int(size64), Int(offset64))
        }
        guard directoryOffset <= eocd, directorySize <= eocd - directoryOffset else {
            throw corrupt("central directory out of range")
        }

        var entries: [ZipEntry] = []
        entries.reserveCapacity(min(entryCount, directorySize / 46))
        var d = ByteReader(UnsafeRawBufferPointer(rebasing: bytes[directoryOffset..<directoryOffset + directorySize]), file: file)
        for index in 0..<entryCount {
            guard d.remaining >= 46, try d.le(UInt32.self) == Self.centralSignature else {
                throw corrupt("central directory entry \(index) is damaged")
            }
            _ = try d.le(UInt16.self)                       // version made by
            _ = try d.le(UInt16.self)                       // version needed
            let flags = try d.le(UInt16.self)
            let method = try d.le(UInt16.self)
            _ = try d.le(UInt32.self)                       // time, date
            let crc = try d.le(UInt32.self)
            var compressedSize = UInt64(try d.le(UInt32.self))
            var size = UInt64(try d.le(UInt32.self))
            let nameLength = Int(try d.le(UInt16.self))
            let extraLength = Int(try d.le(UInt16.self))
            let commentLength = Int(try d.le(UInt16.self))
            _ = try d.le(UInt16.self)                       // disk
            _ = try d.le(UInt16.self)                       // internal attributes
            _ = try d.le(UInt32.self)                       // external attributes
            var localOffset = UInt64(try d.le(UInt32.self))
            guard nameLength + extraLength + commentLength <= d.remaining else {
                throw corrupt("central directory entry \(index) is damaged")
            }
            let name = String(decoding: try d.take(nameLength), as: UTF8.self)
            var extra = ByteReader(try d.take(extraLength), file: file)
            _ = try d.take(commentLength)

            // ZIP64 extended information (id 1): 8-byte fields for each 32-bit field that is all ones.
            while extra.remaining >= 4 {
                let id = try extra.le(UInt16.self)
                let length = Int(try extra.le(UInt16.self))
                guard length <= extra.remaining else { throw corrupt("bad extra field in entry '\(name)'") }
                var field = ByteReader(try extra.take(length), file: file)
                guard id == 1 else { continue }
                do {
                    if size == 0xffff_ffff { size = try field.le(UInt64.self) }
                    if compressedSize == 0xffff_ffff { compressedSize = try field.le(UInt64.self) }
                    if localOffset == 0xffff_ffff { localOffset = try field.le(UInt64.self) }
                } catch {
                    throw corrupt("short ZIP64 field in entry '\(name)'")
                }
            }

            guard flags & 1 == 0 else { throw WeightError.unsupported(file: file, reason: "encrypted zip entry '\(name)'") }
            guard method == 0 else {
                throw WeightError.unsupported(file: file, reason: "zip entry '\(name)' is compressed (method \(method)); torch.save stores entries uncompressed")
            }
            guard compressedSize == size else { throw corrupt("stored entry '\(name)' has two sizes") }

            // The data follows the local header, whose name and extra lengths may differ from the
            // central directory's (torch pads the local extra field for alignment).
            guard localOffset <= UInt64(directoryOffset), let local = Int(exactly: localOffset),
                  try r.le(UInt32.self, at: local) == Self.localSignature else {
                throw corrupt("local header of '\(name)' is missing")
            }
            let dataOffset = local + 30 + Int(try r.le(UInt16.self, at: local + 26)) + Int(try r.le(UInt16.self, at: local + 28))
            guard size <= UInt64(directoryOffset), dataOffset <= directoryOffset - Int(size) else {
                throw corrupt("data of '\(name)' runs past the central directory")
            }
            entries.append(ZipEntry(name: name, offset: dataOffset, size: Int(size), crc32: crc))
        }
        self.entries = entries
    }
}

// MARK: - CRC-32 (IEEE 802.3, as zip uses), slicing by 8

/// Eight 256-entry tables, flat: table k advances a byte k positions further.
private let crcTable: [UInt32] = {
    var t = [UInt32](repeating: 0, count: 8 * 256)
    for i in 0..<256 {
        var c = UInt32(i)
        for _ in 0..<8 { c = c & 1 != 0 ? 0xedb8_8320 ^ (c >> 1) : c >> 1 }
        t[i] = c
    }
    for k in 1..<8 {
        for i in 0..<256 { t[k * 256 + i] = (t[(k - 1) * 256 + i] >> 8) ^ t[Int(t[(k - 1) * 256 + i] & 0xff)] }
    }
    return t
}()

func crc32(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
    guard let base = bytes.baseAddress else { return 0 }
    var crc: UInt32 = 0xffff_ffff
    return crcTable.withUnsafeBufferPointer { t in
        var i = 0
        let n = bytes.count
        while i + 8 <= n {
            let lo = base.loadUnaligned(fromByteOffset: i, as: UInt32.self).littleEndian ^ crc
            let hi = base.loadUnaligned(fromByteOffset: i + 4, as: UInt32.self).littleEndian
            crc = t[7 * 256 + Int(lo & 0xff)] ^ t[6 * 256 + Int((lo >> 8) & 0xff)]
                ^ t[5 * 256 + Int((lo >> 16) & 0xff)] ^ t[4 * 256 + Int(lo >> 24)]
                ^ t[3 * 256 + Int(hi & 0xff)] ^ t[2 * 256 + Int((hi >> 8) & 0xff)]
                ^ t[1 * 256 + Int((hi >> 16) & 0xff)] ^ t[Int(hi >> 24)]
            i += 8
        }
        while i < n {
            crc = t[Int((crc ^ UInt32(base.load(fromByteOffset: i, as: UInt8.self))) & 0xff)] ^ (crc >> 8)
            i += 1
        }
        return crc ^ 0xffff_ffff
    }
}
