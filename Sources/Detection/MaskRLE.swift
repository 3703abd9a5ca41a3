//! COCO run-length encoding (pycocotools' maskApi rleEncode + rleToString): runs over the mask in
//! column-major order starting with a run of zeros, then the compact string form — each count
//! (from the third on, as the difference to the count two before) in 5-bit groups, low first,
//! 0x20 = more follows, the last group sign-extended, each + 48 as an ASCII character.

public struct RLE: Sendable, Equatable {
    public let height: Int
    public let width: Int
    public let counts: String
}

/// Encodes a row-major mask [height · width] (non-zero = inside).
public func encodeRLE(_ mask: [Bool], height: Int, width: Int) -> RLE {
    precondition(mask.count == height * width, "RLE: \(mask.count) values for \(height)×\(width)")
    var runs: [Int] = []
    var current = false, run = 0
    for x in 0..<width {
        for y in 0..<height {
            let v = mask[y * width + x]
            if v != current { runs.append(run); run = 0; current = v }
            run += 1
        }
    }
    runs.append(run)
    var s: [UInt8] = []
    for (i, count) in runs.enumerated() {
        var x = i > 2 ? count - runs[i - 2] : count
        var more = true
        while more {
            var c = x & 0x1f
            x >>= 5
            more = (c & 0x10) != 0 ? x != -1 : x != 0
            if more { c |= 0x20 }
            s.append(UInt8(c + 48))
        }
    }
    return RLE(height: height, width: width, counts: String(decoding: s, as: UTF8.self))
}
