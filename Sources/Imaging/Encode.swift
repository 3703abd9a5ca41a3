//! PNG output through libpng (inside CImagingShim's setjmp boundary), written atomically: the
//! bytes go to a temporary file in the destination's directory, which is renamed over the
//! destination only when complete, so a failed or interrupted write never leaves a partial file.

import CImagingShim
import Foundation

/// Writes an 8-bit RGB PNG.
public func writePNG(_ image: RGBImage, to url: URL) throws {
    let png = try encodePNG(image.pixels, width: image.width, height: image.height, palette: nil, path: url.path)
    try writeAtomically(png, to: url.path)
}

/// Writes an 8-bit palette PNG: pixel value = `labels[y * width + x]`, colour = `palette[label]`
/// (RGB triples, 1…256 of them). Every label must have a palette entry.
public func writeIndexedPNG(labels: [UInt8], width: Int, height: Int, palette: [[UInt8]], to url: URL) throws {
    let path = url.path
    guard width > 0, height > 0, labels.count == width * height else {
        throw ImageError.invalidArgument(path: path, reason: "\(labels.count) labels for a \(width)x\(height) image")
    }
    guard (1...256).contains(palette.count), palette.allSatisfy({ $0.count == 3 }) else {
        throw ImageError.invalidArgument(path: path, reason: "the palette needs 1 to 256 RGB triples, got \(palette.count) entries")
    }
    if let top = labels.max(), Int(top) >= palette.count {
        throw ImageError.invalidArgument(path: path, reason: "label \(top) has no colour in a palette of \(palette.count)")
    }
    let png = try encodePNG(labels, width: width, height: height, palette: palette.flatMap { $0 }, path: path)
    try writeAtomically(png, to: path)
}

private func encodePNG(_ pixels: [UInt8], width: Int, height: Int, palette: [UInt8]?, path: String) throws -> [UInt8] {
    guard width <= Int(UInt32.max), height <= Int(UInt32.max) else {
        throw ImageError.invalidArgument(path: path, reason: "image size \(width)x\(height) is too large for PNG")
    }
    var out: UnsafeMutablePointer<UInt8>?
    var length = 0
    var message = [CChar](repeating: 0, count: 256)
    let ok = pixels.withUnsafeBufferPointer { px in
        message.withUnsafeMutableBufferPointer { msg in
            if let palette {
                return palette.withUnsafeBufferPointer { pal in
                    imshim_png_encode(px.baseAddress, UInt32(width), UInt32(height), pal.baseAddress,
                                      Int32(palette.count / 3), &out, &length, msg.baseAddress, msg.count)
                }
            }
            return imshim_png_encode(px.baseAddress, UInt32(width), UInt32(height), nil, 0,
                                     &out, &length, msg.baseAddress, msg.count)
        }
    }
    defer { imshim_free(out) }
    guard ok == 1, let out else {
        let reason = message.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        throw ImageError.writeFailed(path: path, reason: "libpng: \(reason)")
    }
    return Array(UnsafeBufferPointer(start: out, count: length))
}

/// Writes `bytes` to a temporary file beside `path`, flushes it, and renames it over `path`.
func writeAtomically(_ bytes: [UInt8], to path: String) throws {
    let directory = (path as NSString).deletingLastPathComponent
    let base = (path as NSString).lastPathComponent
    var template = Array(((directory.isEmpty ? "." : directory) + "/." + base + ".tmp-XXXXXX").utf8CString)
    let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
    guard fd >= 0 else {
        throw ImageError.writeFailed(path: path, reason: String(cString: strerror(errno)))
    }
    let temporary = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    var failure: String?
    bytes.withUnsafeBufferPointer { buffer in
        var done = 0
        while done < buffer.count {
            let n = write(fd, buffer.baseAddress! + done, buffer.count - done)
            if n < 0 {
                if errno == EINTR { continue }
                failure = String(cString: strerror(errno))
                return
            }
            done += n
        }
    }
    if failure == nil && fsync(fd) != 0 { failure = String(cString: strerror(errno)) }
    // mkstemp creates 0600; give the file the usual rw-r--r--.
    if failure == nil && fchmod(fd, 0o644) != 0 { failure = String(cString: strerror(errno)) }
    if close(fd) != 0 && failure == nil { failure = String(cString: strerror(errno)) }
    if failure == nil && rename(temporary, path) != 0 { failure = String(cString: strerror(errno)) }
    if let failure {
        unlink(temporary)
        throw ImageError.writeFailed(path: path, reason: failure)
    }
}
