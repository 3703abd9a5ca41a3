//! The EXIF orientation exactly as OpenCV 4.10 finds it (modules/imgcodecs/src/exif.cpp,
//! ExifReader::parseExif), including its quirks, so that images are turned as imread turns them:
//! - only IFD0 is read; the byte order comes from the first two bytes ("II" little-endian, "MM" or
//!   anything else big-endian; two different bytes also mean big-endian), and the TIFF mark must be 42;
//! - entries are read in order and the entry type is ignored: the orientation is the 16-bit value
//!   at entry + 8;
//! - the first entry of a tag wins;
//! - reading an entry that OpenCV decodes (strings, rationals, …) out of bounds stops the parse,
//!   and entries before it are kept;
//! - for JPEG the data is the first APP1 segment minus its first 6 bytes (not checked to be
//!   "Exif\0\0": an XMP APP1 before the EXIF one hides it; OpenCV 5 looks further), for PNG the
//!   eXIf chunk.

/// The orientation tag's value, or nil when OpenCV would find none.
func exifOrientation(_ data: UnsafeBufferPointer<UInt8>) -> Int? {
    var reader = ExifReader(data: data)
    return reader.orientation()
}

private struct ExifReader {
    let data: UnsafeBufferPointer<UInt8>
    var intel = false

    private struct OutOfBounds: Error {}

    init(data: UnsafeBufferPointer<UInt8>) { self.data = data }

    func u16(_ offset: Int) throws -> Int {
        guard offset + 1 < data.count else { throw OutOfBounds() }
        let a = Int(data[offset]), b = Int(data[offset + 1])
        return intel ? a | b << 8 : a << 8 | b
    }

    func u32(_ offset: Int) throws -> Int {
        guard offset + 3 < data.count else { throw OutOfBounds() }
        let a = Int(data[offset]), b = Int(data[offset + 1]), c = Int(data[offset + 2]), d = Int(data[offset + 3])
        return intel ? a | b << 8 | c << 16 | d << 24 : a << 24 | b << 16 | c << 8 | d
    }

    /// getString: a count, then the bytes in the entry (≤ 4) or at an offset.
    func string(_ entry: Int) throws {
        let size = try u32(entry + 4)
        var at = 8  // OpenCV's "position of data in the field" (used as an absolute offset)
        if size > 4 { at = try u32(entry + 8) }
        if at > data.count || at + size > data.count { throw OutOfBounds() }
    }

    /// `count` unsigned rationals at the offset stored in the entry.
    func rationals(_ entry: Int, _ count: Int) throws {
        var at = try u32(entry + 8)
        for _ in 0..<count {
            _ = try u32(at)
            _ = try u32(at + 4)
            at = (at + 8) & 0xFFFF_FFFF  // uint32_t arithmetic
        }
    }

    mutating func orientation() -> Int? {
        guard data.count > 0 else { return nil }
        if data.count > 1 && data[0] != data[1] {
            intel = false
        } else {
            intel = data[0] == UInt8(ascii: "I")
        }
        var found: Int?
        do {
            guard try u16(2) == 0x2A else { return nil }
            var offset = try u32(4)
            let entries = try u16(offset)
            offset = (offset + 2) & 0xFFFF_FFFF
            for _ in 0..<entries {
                switch try u16(offset) {
                case 0x010E, 0x010F, 0x0110, 0x0131, 0x0132, 0x8298: try string(offset)
                case 0x0112:
                    let value = try u16(offset + 8)
                    if found == nil { found = value }
                case 0x011A, 0x011B: try rationals(offset, 1)
                case 0x0128, 0x0213: _ = try u16(offset + 8)
                case 0x013E: try rationals(offset, 2)
                case 0x013F: try rationals(offset, 6)
                case 0x0211: try rationals(offset, 3)
                case 0x0214: try rationals(offset, 6)
                default: break
                }
                offset = (offset + 12) & 0xFFFF_FFFF
            }
        } catch {
            return found
        }
        return found
    }
}
