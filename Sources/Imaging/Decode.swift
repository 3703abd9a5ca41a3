//! PNG and JPEG decoding as OpenCV's `imread(path, IMREAD_COLOR)` (4.x), channels in RGB order.
//!
//! - PNG through libpng with PngDecoder::readData's transforms: 16-bit keeps the high byte
//!   (png_set_strip_16, no rounding), alpha is dropped without compositing, palettes are
//!   expanded, gray (1–16 bit) is replicated to 3 channels, Adam7 is combined, gAMA/sBIT are not
//!   applied; an eXIf orientation is applied as imread does.
//! - JPEG through libjpeg-turbo with the library's defaults (islow IDCT, fancy upsampling), as
//!   JpegDecoder leaves them; 4-component (CMYK/YCCK) files are read as CMYK and converted with
//!   OpenCV's icvCvt_CMYK2BGR_8u_C4C3R; the orientation in the first APP1 segment is applied.
//! - Every libpng/libjpeg call runs inside CImagingShim's setjmp boundary: a broken file is an
//!   ImageError, never a crash or exit. The header's width × height is checked against
//!   `maxPixels` before any pixel buffer is allocated.
//! - Where OpenCV returns pixels for damaged JPEG data (it only warns: premature end of file,
//!   bad Huffman codes, lost restart markers), we refuse with an error: DESIGN.md's bad-input rule
//!   wins over reproducing garbage. Benign warnings (extraneous bytes before a marker, a missing
//!   EOI after the only scan) are accepted, with imread's pixels (cv2.imdecode, which mmcv's
//!   imfrombytes uses, leaves the last MCU row of a file without EOI unwritten). A progressive
//!   file that ends early is refused even between scans.

import CImagingShim
import Foundation

/// Reads and decodes a PNG or JPEG file. The file may be at most `maxPixels * 8 + 64 MiB` long
/// (a 16-bit RGBA PNG stored without compression stays below that).
public func loadImage(contentsOf url: URL, maxPixels: Int = 100_000_000) throws -> RGBImage {
    let path = url.path
    let (scaled, overflow) = maxPixels.multipliedReportingOverflow(by: 8)
    let limit = overflow || scaled > Int.max - (64 << 20) ? Int.max : scaled + (64 << 20)
    let bytes = try readFile(path, limit: limit)
    return try decodeImage(bytes, name: path, maxPixels: maxPixels)
}

/// Decodes PNG or JPEG bytes; `name` is used in error messages.
public func decodeImage(_ bytes: [UInt8], name: String, maxPixels: Int = 100_000_000) throws -> RGBImage {
    if bytes.isEmpty { throw ImageError.empty(path: name) }
    if bytes.starts(with: [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) {
        return try decodePNG(bytes, name: name, maxPixels: maxPixels)
    }
    if bytes.starts(with: [0xFF, 0xD8]) {
        return try decodeJPEG(bytes, name: name, maxPixels: maxPixels)
    }
    throw ImageError.unknownFormat(path: name)
}

// MARK: - PNG

private func decodePNG(_ bytes: [UInt8], name: String, maxPixels: Int) throws -> RGBImage {
    try bytes.withUnsafeBufferPointer { data in
        guard let ctx = imshim_png_create(data.baseAddress, data.count) else {
            throw ImageError.corrupt(path: name, format: "PNG", reason: "out of memory creating the libpng reader")
        }
        defer { imshim_png_destroy(ctx) }
        func failure() -> ImageError {
            let message = String(cString: imshim_png_message(ctx))
            if message.hasPrefix("unexpected end of data") {
                return .truncated(path: name, format: "PNG", reason: message)
            }
            return .corrupt(path: name, format: "PNG", reason: message)
        }
        var w: UInt32 = 0, h: UInt32 = 0
        var depth: Int32 = 0, colorType: Int32 = 0, interlaced: Int32 = 0
        guard imshim_png_read_header(ctx, &w, &h, &depth, &colorType, &interlaced) == 1 else { throw failure() }
        let (width, height) = (Int(w), Int(h))
        try checkSize(width, height, maxPixels, name)

        var ok: Int32 = 0
        let image = RGBImage(width: width, height: height) { out in
            ok = imshim_png_read_rgb8(ctx, out.baseAddress, w, h)
            if ok != 1 { out.initialize(repeating: 0) }
        }
        guard ok == 1 else { throw failure() }

        var exif: UnsafePointer<UInt8>?
        var exifLength = 0
        if imshim_png_exif(ctx, &exif, &exifLength) == 1, let exif,
           let orientation = exifOrientation(UnsafeBufferPointer(start: exif, count: exifLength)) {
            return image.applyingOrientation(orientation)
        }
        return image
    }
}

// MARK: - JPEG

private func decodeJPEG(_ bytes: [UInt8], name: String, maxPixels: Int) throws -> RGBImage {
    try bytes.withUnsafeBufferPointer { data in
        guard let ctx = imshim_jpeg_create(data.baseAddress, data.count) else {
            throw ImageError.corrupt(path: name, format: "JPEG", reason: "out of memory creating the libjpeg decoder")
        }
        defer { imshim_jpeg_destroy(ctx) }
        func failure() -> ImageError {
            let message = String(cString: imshim_jpeg_message(ctx))
            if imshim_jpeg_warnings(ctx) & Int32(IMSHIM_JPEG_WARN_EOF) != 0 {
                return .truncated(path: name, format: "JPEG", reason: "the data ends early (\(message))")
            }
            return .corrupt(path: name, format: "JPEG", reason: message)
        }
        var w: UInt32 = 0, h: UInt32 = 0
        var components: Int32 = 0, colorSpace: Int32 = 0, progressive: Int32 = 0, singleScan: Int32 = 0
        guard imshim_jpeg_read_header(ctx, &w, &h, &components, &colorSpace, &progressive, &singleScan) == 1 else {
            throw failure()
        }
        let (width, height) = (Int(w), Int(h))
        try checkSize(width, height, maxPixels, name)
        guard components == 1 || components == 3 || components == 4 else {
            throw ImageError.unsupported(path: name, reason: "JPEG with \(components) colour components")
        }
        let cmyk = components == 4

        // grfmt_jpeg.cpp: the first APP1 segment, after 6 bytes ("Exif\0\0"), if longer than that.
        var orientation: Int?
        var app1: UnsafePointer<UInt8>?
        var app1Length = 0
        if imshim_jpeg_first_app1(ctx, &app1, &app1Length) == 1, let app1, app1Length > 6 {
            orientation = exifOrientation(UnsafeBufferPointer(start: app1 + 6, count: app1Length - 6))
        }

        let channels = cmyk ? 4 : 3
        var scanWarnings: Int32 = 0
        var ok: Int32 = 0
        var image: RGBImage
        if cmyk {
            var raw = [UInt8](repeating: 0, count: width * height * channels)
            ok = raw.withUnsafeMutableBufferPointer {
                imshim_jpeg_read(ctx, $0.baseAddress, w, h, 1, &scanWarnings)
            }
            guard ok == 1 else { throw failure() }
            image = raw.withUnsafeBufferPointer { cmykToRGB($0, width: width, height: height) }
        } else {
            image = RGBImage(width: width, height: height) { out in
                ok = imshim_jpeg_read(ctx, out.baseAddress, w, h, 0, &scanWarnings)
                if ok != 1 { out.initialize(repeating: 0) }
            }
            guard ok == 1 else { throw failure() }
        }
        var warning = String(cString: imshim_jpeg_warning(ctx))
        if warning.hasPrefix("Corrupt JPEG data: ") { warning.removeFirst("Corrupt JPEG data: ".count) }
        // The data ran out (libjpeg inserted an EOI). In a single-scan file without a "premature
        // end of data segment" warning every coefficient was read and only the EOI marker is
        // missing: OpenCV's pixels are complete, accept them. Otherwise scans or MCUs are lost
        // (a progressive file cut between scans warns about nothing else).
        let corrupt = scanWarnings & Int32(IMSHIM_JPEG_WARN_CORRUPT) != 0
        if scanWarnings & Int32(IMSHIM_JPEG_WARN_EOF) != 0 && (singleScan == 0 || corrupt) {
            throw ImageError.truncated(path: name, format: "JPEG", reason: "the data ends before the last scanline")
        }
        if corrupt {
            throw ImageError.corrupt(path: name, format: "JPEG", reason: warning)
        }
        if let orientation { image = image.applyingOrientation(orientation) }
        return image
    }
}

/// OpenCV's icvCvt_CMYK2BGR_8u_C4C3R (modules/imgcodecs/src/utils.cpp), written to RGB:
/// R = k - (((255 - c) * k) >> 8) (C precedence), G from m, B from y, on libjpeg's CMYK output as it is
/// (Adobe files store inverted CMYK; OpenCV does not invert it back).
private func cmykToRGB(_ cmyk: UnsafeBufferPointer<UInt8>, width: Int, height: Int) -> RGBImage {
    RGBImage(width: width, height: height) { out in
        for i in 0..<(width * height) {
            let k = Int(cmyk[4 * i + 3])
            for c in 0..<3 {
                out[3 * i + c] = UInt8(truncatingIfNeeded: k - (((255 - Int(cmyk[4 * i + c])) * k) >> 8))
            }
        }
    }
}

// MARK: - Helpers

private func checkSize(_ width: Int, _ height: Int, _ maxPixels: Int, _ name: String) throws {
    guard width > 0, height > 0 else {
        throw ImageError.corrupt(path: name, format: "image", reason: "header gives a size of \(width)x\(height)")
    }
    let (pixels, overflow) = width.multipliedReportingOverflow(by: height)
    if overflow || pixels > maxPixels {
        throw ImageError.tooLarge(path: name, width: width, height: height, maxPixels: maxPixels)
    }
}

/// The whole file, refusing files longer than `limit` bytes before reading them.
func readFile(_ path: String, limit: Int) throws -> [UInt8] {
    guard let file = fopen(path, "rb") else {
        throw ImageError.unreadable(path: path, reason: String(cString: strerror(errno)))
    }
    defer { fclose(file) }
    var info = stat()
    guard fstat(fileno(file), &info) == 0 else {
        throw ImageError.unreadable(path: path, reason: String(cString: strerror(errno)))
    }
    guard (info.st_mode & S_IFMT) == S_IFREG else {
        throw ImageError.unreadable(path: path, reason: "not a regular file")
    }
    let size = Int(info.st_size)
    guard size <= limit else {
        throw ImageError.unreadable(path: path, reason: "the file is \(size) bytes, more than the limit of \(limit)")
    }
    var failure: Int32 = 0
    let bytes = [UInt8](unsafeUninitializedCapacity: size) { buffer, initialized in
        var done = 0
        while done < size {
            let n = fread(buffer.baseAddress! + done, 1, size - done, file)
            if n == 0 { break }
            done += n
        }
        if done < size { failure = ferror(file) != 0 ? errno : -1 }
        initialized = done
    }
    if failure != 0 {
        let reason = failure > 0 ? String(cString: strerror(failure)) : "the file shrank while it was read"
        throw ImageError.unreadable(path: path, reason: reason)
    }
    return bytes
}
