//! RGBImage: 8-bit RGB pixels, interleaved and row-major ([H, W, 3]), plus the errors of the
//! image boundary and the small geometric operations (crop, EXIF orientation).
//!
//! Decoding follows OpenCV's `cv2.imread(path, IMREAD_COLOR)` (then BGR→RGB), so an RGBImage is
//! what mmdet/mmseg pipelines see, channel order aside.

public struct RGBImage: Sendable, Equatable {
    public let width: Int
    public let height: Int
    /// RGB interleaved, row-major: pixel (x, y) channel c is `pixels[(y * width + x) * 3 + c]`.
    public var pixels: [UInt8]

    public init(width: Int, height: Int, pixels: [UInt8]) {
        precondition(width > 0 && height > 0, "RGBImage: size \(width)x\(height)")
        precondition(pixels.count == width * height * 3,
                     "RGBImage: \(width)x\(height)x3 needs \(width * height * 3) bytes, got \(pixels.count)")
        self.width = width
        self.height = height
        self.pixels = pixels
    }

    /// An image whose pixels are written by `fill` (all `width * height * 3` bytes) before use.
    init(width: Int, height: Int, fill: (UnsafeMutableBufferPointer<UInt8>) -> Void) {
        precondition(width > 0 && height > 0, "RGBImage: size \(width)x\(height)")
        let count = width * height * 3
        self.width = width
        self.height = height
        self.pixels = [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            fill(buffer)
            initialized = count
        }
    }

    /// The region [x, x + width) × [y, y + height), which must lie inside the image.
    public func cropped(x: Int, y: Int, width w: Int, height h: Int) -> RGBImage {
        precondition(x >= 0 && y >= 0 && w > 0 && h > 0 && x + w <= width && y + h <= height,
                     "cropped: (\(x), \(y)) \(w)x\(h) outside \(width)x\(height)")
        return pixels.withUnsafeBufferPointer { src in
            RGBImage(width: w, height: h) { dst in
                for row in 0..<h {
                    let from = src.baseAddress! + ((y + row) * width + x) * 3
                    (dst.baseAddress! + row * w * 3).update(from: from, count: w * 3)
                }
            }
        }
    }

    /// The image turned upright for an EXIF orientation (1…8), as OpenCV's ExifTransform
    /// (modules/imgcodecs/src/loadsave.cpp) does: 2 flip left-right, 3 flip both, 4 flip up-down,
    /// 5 transpose, 6 transpose + flip left-right, 7 transpose + flip both, 8 transpose + flip
    /// up-down. Any other value leaves the image as it is.
    public func applyingOrientation(_ orientation: Int) -> RGBImage {
        guard (2...8).contains(orientation) else { return self }
        let transpose = orientation >= 5
        let flipX = [2, 3, 6, 7].contains(orientation)
        let flipY = [3, 4, 7, 8].contains(orientation)
        let (ow, oh) = transpose ? (height, width) : (width, height)
        let sw = width
        return pixels.withUnsafeBufferPointer { src in
            RGBImage(width: ow, height: oh) { dst in
                let s = src.baseAddress!, d = dst.baseAddress!
                for oy in 0..<oh {
                    // Undo the flips (they act on the transposed image), then the transpose.
                    let ty = flipY ? oh - 1 - oy : oy
                    for ox in 0..<ow {
                        let tx = flipX ? ow - 1 - ox : ox
                        let (sx, sy) = transpose ? (ty, tx) : (tx, ty)
                        let i = (sy * sw + sx) * 3, o = (oy * ow + ox) * 3
                        d[o] = s[i]; d[o + 1] = s[i + 1]; d[o + 2] = s[i + 2]
                    }
                }
            }
        }
    }
}

/// Errors at the image boundary: reading, decoding and writing files. Each case carries the
/// file's name or path, and `description` says the problem in one line.
public enum ImageError: Error, CustomStringConvertible, Equatable {
    /// The file could not be opened or read.
    case unreadable(path: String, reason: String)
    /// The file is empty.
    case empty(path: String)
    /// Neither a PNG nor a JPEG signature.
    case unknownFormat(path: String)
    /// The data ends early.
    case truncated(path: String, format: String, reason: String)
    /// The decoder rejected the data.
    case corrupt(path: String, format: String, reason: String)
    /// The header announces more pixels than allowed (checked before any pixel buffer exists).
    case tooLarge(path: String, width: Int, height: Int, maxPixels: Int)
    /// A valid file of a kind this decoder does not handle.
    case unsupported(path: String, reason: String)
    /// Writing the output failed; no partial file is left behind.
    case writeFailed(path: String, reason: String)
    /// Arguments that cannot describe an image (e.g. a label outside the palette).
    case invalidArgument(path: String, reason: String)

    public var path: String {
        switch self {
        case .unreadable(let p, _), .empty(let p), .unknownFormat(let p), .truncated(let p, _, _),
             .corrupt(let p, _, _), .tooLarge(let p, _, _, _), .unsupported(let p, _),
             .writeFailed(let p, _), .invalidArgument(let p, _):
            return p
        }
    }

    public var description: String {
        let text: String
        switch self {
        case .unreadable(let p, let reason): text = "\(p): cannot read the file: \(reason)"
        case .empty(let p): text = "\(p): the file is empty"
        case .unknownFormat(let p): text = "\(p): not a PNG or JPEG file"
        case .truncated(let p, let format, let reason): text = "\(p): truncated \(format) file: \(reason)"
        case .corrupt(let p, let format, let reason): text = "\(p): corrupt \(format) data: \(reason)"
        case .tooLarge(let p, let w, let h, let limit):
            let (pixels, overflow) = w.multipliedReportingOverflow(by: h)
            text = "\(p): image is \(w)x\(h)\(overflow ? "" : " = \(pixels) pixels"), more than the limit of \(limit)"
        case .unsupported(let p, let reason): text = "\(p): unsupported image: \(reason)"
        case .writeFailed(let p, let reason): text = "\(p): cannot write the file: \(reason)"
        case .invalidArgument(let p, let reason): text = "\(p): \(reason)"
        }
        return String(text.map { $0.isNewline ? " " : $0 })
    }
}
