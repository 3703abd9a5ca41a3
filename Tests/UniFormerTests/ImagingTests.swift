// Imaging: decoding against what cv2.imread(IMREAD_COLOR) returned (RGB order), bad files, PNG
// output. Fixtures: Tests/UniFormerTests/Fixtures/images/, made by `python3 tasks/reference/images.py`
// (cv2 4.10.0 and Pillow 13.0.0; manifest.json lists every case and the versions).

import Foundation
import Imaging
import TensorCore
import Testing

enum ImageFixtures {
    struct Manifest: Decodable {
        struct Decode: Decodable { let file: String; let expected: String; let width: Int; let height: Int; let note: String }
        struct Bad: Decodable { let file: String; let kind: String; let cv2_decodes: Bool }
        struct Resize: Decodable { let source: String; let width: Int; let height: Int; let expected: String }
        struct Sweeps: Decodable { let bilinear: [[Int]]; let bicubic: [[Int]]; let synth_check: [Int] }
        struct Normalize: Decodable { let source: String; let mean: [Float]; let std: [Float]; let to_rgb: Bool; let expected: String }
        struct ImageNet: Decodable { let source: String; let crop: Int; let expected: String?; let crc32: Int? }
        struct Rescale: Decodable { let width: Int; let height: Int; let scale: [Int]; let expected: [Int] }
        let decode: [Decode]
        let bad: [Bad]
        let bilinear: [Resize]
        let bicubic: [Resize]
        let sweeps: Sweeps
        let normalize: [Normalize]
        let imagenet: [ImageNet]
        let rescale: [Rescale]
        let versions: [String: AnyCodable]
    }

    /// Only so that "versions" (strings and an int) decodes.
    struct AnyCodable: Decodable {
        init(from decoder: Decoder) throws {}
    }

    static func url(_ name: String) -> URL { Fixtures.url("images", name) }

    static let manifest: Manifest = {
        let data = try! Data(contentsOf: url("manifest.json"))
        return try! JSONDecoder().decode(Manifest.self, from: data)
    }()

    static func bytes(_ name: String) -> [UInt8] { [UInt8](try! Data(contentsOf: url(name))) }

    static func floats(_ name: String) -> [Float] {
        let raw = bytes(name)
        return raw.withUnsafeBytes { buffer in
            (0..<(raw.count / 4)).map { Float(bitPattern: UInt32(littleEndian: buffer.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self))) }
        }
    }

    /// The decoded fixture (our decoder; the decode tests check it against cv2).
    static func image(_ name: String) -> RGBImage { try! loadImage(contentsOf: url(name)) }

    /// tasks/reference/images.py `synth`: a synthetic RGB image rebuilt bit for bit.
    static func synth(_ w: Int, _ h: Int) -> RGBImage {
        var pixels = [UInt8](repeating: 0, count: w * h * 3)
        for y in 0..<h {
            for x in 0..<w {
                for c in 0..<3 {
                    var v = UInt32(x) &* 2_654_435_761 &+ UInt32(y) &* 40503 &+ UInt32(c) &* 97
                    v ^= v >> 13
                    v = v &* 1_274_126_177
                    let noise = (v >> 24) & 63
                    let smooth = UInt32(x * 3 + y * 5 + c * 40) & 255
                    let edge: UInt32 = (x / 7 + y / 5) % 3 == 0 ? 120 : 0
                    pixels[(y * w + x) * 3 + c] = UInt8((smooth + noise + edge) & 255)
                }
            }
        }
        return RGBImage(width: w, height: h, pixels: pixels)
    }

    static let crcTable: [UInt32] = (0..<256).map { n in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }

    /// zlib.crc32.
    static func crc32<C: Collection>(_ bytes: C) -> Int where C.Element == UInt8 {
        var c: UInt32 = 0xFFFF_FFFF
        for b in bytes { c = crcTable[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) }
        return Int(c ^ 0xFFFF_FFFF)
    }

    /// Where two pixel buffers differ: count, max abs difference, first index.
    static func mismatch(_ a: [UInt8], _ b: [UInt8]) -> String {
        guard a.count == b.count else { return "sizes \(a.count) vs \(b.count)" }
        var count = 0, worst = 0, first = -1
        for i in 0..<a.count where a[i] != b[i] {
            count += 1
            worst = max(worst, abs(Int(a[i]) - Int(b[i])))
            if first < 0 { first = i }
        }
        return "\(count) of \(a.count) bytes differ, max |diff| \(worst), first at \(first)"
    }

    /// The ImageError `body` throws (a different error or none fails the test).
    static func error(_ body: () throws -> Void, sourceLocation: SourceLocation = #_sourceLocation) -> ImageError? {
        do {
            try body()
            Issue.record("expected an ImageError", sourceLocation: sourceLocation)
        } catch let error as ImageError {
            return error
        } catch {
            Issue.record("expected an ImageError, got \(error)", sourceLocation: sourceLocation)
        }
        return nil
    }
}

@Suite struct ImagingDecodeTests {
    typealias F = ImageFixtures

    @Test func fixturesWereMadeWithOpenCV4() {
        // The committed fixtures come from opencv-python-headless 4.x (see images.py).
        #expect(F.manifest.decode.count >= 40)
        #expect(F.manifest.sweeps.synth_check == [F.crc32(F.synth(37, 29).pixels)], "synth differs from images.py")
    }

    @Test func decodesLikeImread() throws {
        for case_ in F.manifest.decode {
            let image = try loadImage(contentsOf: F.url(case_.file))
            let want = F.bytes(case_.expected)
            #expect(image.width == case_.width && image.height == case_.height,
                    "\(case_.file): \(image.width)x\(image.height) vs \(case_.width)x\(case_.height)")
            let same = image.pixels == want
            #expect(same, "\(case_.file) (\(case_.note)): \(F.mismatch(image.pixels, want))")
            // decodeImage on the bytes is the same path.
            let again = try decodeImage(F.bytes(case_.file), name: case_.file)
            let again_same = again == image
            #expect(again_same, "\(case_.file): decodeImage differs from loadImage")
        }
    }

    @Test func badFilesGiveErrors() {
        for bad in F.manifest.bad {
            guard let error = F.error({ _ = try loadImage(contentsOf: F.url(bad.file)) }) else { continue }
            let text = error.description
            #expect(text.contains(bad.file), "\(bad.file): message does not name the file: \(text)")
            #expect(!text.contains("\n"), "\(bad.file): message is not one line")
            switch bad.kind {
            case "too_large":
                guard case .tooLarge(_, let w, let h, _) = error else {
                    Issue.record("\(bad.file): expected tooLarge, got \(text)"); continue
                }
                #expect(w == 60000 && h == 60000)
            case "truncated":
                guard case .truncated = error else { Issue.record("\(bad.file): expected truncated, got \(text)"); continue }
            case "corrupt":
                guard case .corrupt = error else { Issue.record("\(bad.file): expected corrupt, got \(text)"); continue }
            case "unknown":
                switch error {
                case .unknownFormat, .empty: break
                default: Issue.record("\(bad.file): expected unknownFormat/empty, got \(text)")
                }
            default:
                Issue.record("\(bad.file): unknown kind \(bad.kind)")
            }
        }
    }

    @Test func maxPixelsIsCheckedBeforeDecoding() throws {
        let name = "png_rgb8.png"   // 61 x 47
        #expect(throws: ImageError.tooLarge(path: F.url(name).path, width: 61, height: 47, maxPixels: 2866)) {
            try loadImage(contentsOf: F.url(name), maxPixels: 2866)
        }
        _ = try loadImage(contentsOf: F.url(name), maxPixels: 2867)
        let jpeg = "jpeg_progressive.jpg"   // 120 x 90
        #expect(throws: ImageError.tooLarge(path: jpeg, width: 120, height: 90, maxPixels: 10799)) {
            try decodeImage(F.bytes(jpeg), name: jpeg, maxPixels: 10799)
        }
    }

    @Test func missingFileAndDirectory() {
        let missing = F.url("no_such_file.png")
        guard case .unreadable? = F.error({ _ = try loadImage(contentsOf: missing) }) else {
            Issue.record("missing file"); return
        }
        guard case .unreadable? = F.error({ _ = try loadImage(contentsOf: F.url("")) }) else {
            Issue.record("directory"); return
        }
    }

    /// Damaged variants of every good fixture (truncations, flipped bytes, overwritten runs)
    /// must decode or throw an ImageError: never crash, exit or hang.
    @Test func mutatedFilesNeverCrash() throws {
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        func next() -> Int {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int(truncatingIfNeeded: state >> 33)
        }
        var decoded = 0, failed = 0
        for case_ in F.manifest.decode {
            let original = F.bytes(case_.file)
            for round in 0..<12 {
                var data = original
                switch round % 4 {
                case 0: data = Array(data.prefix(next() % data.count))
                case 1: for _ in 0..<(1 + next() % 8) { data[next() % data.count] ^= UInt8(1 << (next() % 8)) }
                case 2:
                    let at = next() % data.count
                    for i in at..<min(data.count, at + 1 + next() % 64) { data[i] = UInt8(truncatingIfNeeded: next()) }
                default:
                    // Header region: sizes, tables, marker lengths.
                    let at = next() % min(data.count, 200)
                    data[at] = UInt8(truncatingIfNeeded: next())
                }
                do {
                    _ = try decodeImage(data, name: "\(case_.file)#\(round)", maxPixels: 4_000_000)
                    decoded += 1
                } catch is ImageError {
                    failed += 1
                }
            }
        }
        #expect(decoded + failed == F.manifest.decode.count * 12)
        #expect(failed > 0)
    }
}

@Suite struct ImagingEncodeTests {
    typealias F = ImageFixtures

    static func temporaryDirectory() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("imaging-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }

    @Test func pngRoundTrip() throws {
        let dir = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let image = F.image("jpeg_progressive.jpg")
        let out = dir.appendingPathComponent("out.png")
        try writePNG(image, to: out)
        #expect(try loadImage(contentsOf: out) == image)
        // Overwriting replaces the file whole; no temporary files stay behind.
        let small = image.cropped(x: 3, y: 5, width: 17, height: 9)
        try writePNG(small, to: out)
        #expect(try loadImage(contentsOf: out) == small)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["out.png"])
    }

    @Test func indexedPNG() throws {
        let dir = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let (w, h) = (13, 7)
        let labels = (0..<(w * h)).map { UInt8(($0 * 7 + $0 / w) % 5) }
        let palette: [[UInt8]] = [[0, 0, 0], [255, 0, 0], [0, 255, 0], [10, 20, 30], [200, 100, 50]]
        let out = dir.appendingPathComponent("mask.png")
        try writeIndexedPNG(labels: labels, width: w, height: h, palette: palette, to: out)
        let bytes = [UInt8](try Data(contentsOf: out))
        // Colour type 3 (palette) at IHDR byte 25, and a PLTE chunk of 5 entries.
        #expect(bytes[25] == 3 && bytes[24] == 8)
        #expect(bytes.count > 60 && String(decoding: bytes[37..<41], as: UTF8.self) == "PLTE")
        let image = try loadImage(contentsOf: out)
        #expect(image.width == w && image.height == h)
        #expect(image.pixels == labels.flatMap { palette[Int($0)] })

        // A label without a colour, or the wrong count, is refused and nothing is written.
        let refused = dir.appendingPathComponent("refused.png")
        guard case .invalidArgument? = F.error({
            try writeIndexedPNG(labels: labels.map { $0 == 4 ? 5 : $0 }, width: w, height: h, palette: palette, to: refused)
        }) else { Issue.record("label outside the palette"); return }
        guard case .invalidArgument? = F.error({
            try writeIndexedPNG(labels: labels, width: w + 1, height: h, palette: palette, to: refused)
        }) else { Issue.record("label count"); return }
        #expect(!FileManager.default.fileExists(atPath: refused.path))
    }

    @Test func unwritableDestination() throws {
        let dir = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("missing/sub/out.png")
        guard case .writeFailed(let path, _)? = F.error({ try writePNG(F.image("png_1x1.png"), to: out) }) else {
            Issue.record("expected writeFailed"); return
        }
        #expect(path == out.path)
    }
}
