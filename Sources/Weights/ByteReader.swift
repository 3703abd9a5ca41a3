//! Bounds-checked reading of little-endian integers and byte runs from a file's bytes.
//! Every length that comes from the file goes through `take`, which checks it against the bytes
//! that remain before anything is allocated.

struct ByteReader {
    let bytes: UnsafeRawBufferPointer
    var position: Int
    let file: String

    init(_ bytes: UnsafeRawBufferPointer, at position: Int = 0, file: String) {
        self.bytes = bytes
        self.position = position
        self.file = file
    }

    var remaining: Int { bytes.count - position }
    var atEnd: Bool { position >= bytes.count }

    mutating func u8() throws -> UInt8 {
        guard position < bytes.count else { throw WeightError.truncated(file: file) }
        defer { position += 1 }
        return bytes[position]
    }

    /// A little-endian integer of type T.
    mutating func le<T: FixedWidthInteger>(_: T.Type) throws -> T {
        let size = MemoryLayout<T>.size
        guard remaining >= size else { throw WeightError.truncated(file: file) }
        defer { position += size }
        return T(littleEndian: bytes.baseAddress!.loadUnaligned(fromByteOffset: position, as: T.self))
    }

    /// A little-endian length field of type T as a non-negative Int that fits in the remaining
    /// bytes when multiplied by `unit` (so a hostile length never drives an allocation).
    mutating func length<T: FixedWidthInteger>(_: T.Type, unit: Int = 1) throws -> Int {
        let raw = try le(T.self)
        guard raw >= 0, let n = Int(exactly: raw) else {
            throw WeightError.corrupt(file: file, reason: "negative or huge length \(raw) at byte \(position)")
        }
        let (bytes, overflow) = n.multipliedReportingOverflow(by: unit)
        guard !overflow, bytes <= remaining else { throw WeightError.truncated(file: file) }
        return n
    }

    /// The next `count` bytes.
    mutating func take(_ count: Int) throws -> UnsafeRawBufferPointer {
        guard count >= 0, count <= remaining else { throw WeightError.truncated(file: file) }
        defer { position += count }
        return UnsafeRawBufferPointer(rebasing: bytes[position..<position + count])
    }

    /// The bytes up to (not including) the next newline, which is consumed.
    mutating func line() throws -> UnsafeRawBufferPointer {
        guard let end = bytes[position...].firstIndex(of: UInt8(ascii: "\n")) else {
            throw WeightError.truncated(file: file)
        }
        defer { position = end + 1 }
        return UnsafeRawBufferPointer(rebasing: bytes[position..<end])
    }

    /// Random access: the little-endian integer at an absolute offset.
    func le<T: FixedWidthInteger>(_: T.Type, at offset: Int) throws -> T {
        guard offset >= 0, offset <= bytes.count - MemoryLayout<T>.size else { throw WeightError.truncated(file: file) }
        return T(littleEndian: bytes.baseAddress!.loadUnaligned(fromByteOffset: offset, as: T.self))
    }
}
