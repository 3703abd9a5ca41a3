// Imaging: resizes and preprocessing against cv2.resize(INTER_LINEAR), PIL's BICUBIC resize,
// mmcv's imnormalize and the torchvision eval transform (fixtures: tasks/reference/images.py).
// Sweeps compare CRC32s of outputs on synthetic images both sides build from the same formula.

import Foundation
import Imaging
import TensorCore
import Testing

@Suite struct ImagingResizeTests {
    typealias F = ImageFixtures

    @Test func bilinearMatchesOpenCV() {
        for case_ in F.manifest.bilinear {
            let out = F.image(case_.source).resizedBilinear(width: case_.width, height: case_.height)
            let want = F.bytes(case_.expected)
            #expect(out.width == case_.width && out.height == case_.height)
            let same = out.pixels == want
            #expect(same, "\(case_.expected): \(F.mismatch(out.pixels, want))")
        }
    }

    @Test func bilinearSweepMatchesOpenCV() {
        var bad: [String] = []
        for c in F.manifest.sweeps.bilinear {
            let out = F.synth(c[0], c[1]).resizedBilinear(width: c[2], height: c[3])
            if F.crc32(out.pixels) != c[4] { bad.append("\(c[0])x\(c[1])->\(c[2])x\(c[3])") }
        }
        #expect(bad.isEmpty, "\(bad.count) of \(F.manifest.sweeps.bilinear.count) differ: \(bad.prefix(10))")
    }

    @Test func bicubicMatchesPillow() {
        for case_ in F.manifest.bicubic {
            let out = F.image(case_.source).resizedPILBicubic(width: case_.width, height: case_.height)
            let want = F.bytes(case_.expected)
            let same = out.pixels == want
            #expect(same, "\(case_.expected): \(F.mismatch(out.pixels, want))")
        }
    }

    @Test func bicubicSweepMatchesPillow() {
        var bad: [String] = []
        for c in F.manifest.sweeps.bicubic {
            let out = F.synth(c[0], c[1]).resizedPILBicubic(width: c[2], height: c[3])
            if F.crc32(out.pixels) != c[4] { bad.append("\(c[0])x\(c[1])->\(c[2])x\(c[3])") }
        }
        #expect(bad.isEmpty, "\(bad.count) of \(F.manifest.sweeps.bicubic.count) differ: \(bad.prefix(10))")
    }

    /// Naive reference: a direct per-pixel transcription of the INTER_LINEAR formulas (no row
    /// reuse), as the oracle for the fast path on shapes the fixtures do not cover.
    static func naiveBilinear(_ img: RGBImage, _ dw: Int, _ dh: Int) -> [UInt8] {
        func taps(_ d: Int, _ src: Int, _ dst: Int, clamp: Bool) -> (Int, Int, Int32, Int32) {
            let scale = 1 / (Double(dst) / Double(src))
            let f = Float((Double(d) + 0.5) * scale - 0.5)
            var s = Int(f.rounded(.down)), fr = f - Float(s)
            if clamp && s < 0 { s = 0; fr = 0 }
            if clamp && s >= src - 1 { s = src - 1; fr = 0 }
            return (min(max(s, 0), src - 1), min(max(s + 1, 0), src - 1),
                    Int32(((1 - fr) * 2048).rounded(.toNearestOrEven)), Int32((fr * 2048).rounded(.toNearestOrEven)))
        }
        var out = [UInt8](repeating: 0, count: dw * dh * 3)
        for y in 0..<dh {
            let (r0, r1, b0, b1) = taps(y, img.height, dh, clamp: false)
            for x in 0..<dw {
                let (c0, c1, a0, a1) = taps(x, img.width, dw, clamp: true)
                for c in 0..<3 {
                    func h(_ r: Int) -> Int32 {
                        Int32(img.pixels[(r * img.width + c0) * 3 + c]) * a0 + Int32(img.pixels[(r * img.width + c1) * 3 + c]) * a1
                    }
                    let v = ((b0 * (h(r0) >> 4)) >> 16) + ((b1 * (h(r1) >> 4)) >> 16) + 2
                    out[(y * dw + x) * 3 + c] = UInt8(v >> 2)
                }
            }
        }
        return out
    }

    @Test func bilinearFastPathEqualsNaive() {
        let img = F.synth(53, 37)
        for (w, h) in [(80, 91), (27, 18), (26, 37), (53, 19), (1, 37), (200, 3), (52, 36)] {
            let same = img.resizedBilinear(width: w, height: h).pixels == Self.naiveBilinear(img, w, h)
            #expect(same, "\(w)x\(h)")
        }
    }

    @Test func exactHalfIsAreaAverage() {
        let img = F.synth(10, 6)
        let out = img.resizedBilinear(width: 5, height: 3)
        let p = img.pixels
        let sum = Int(p[0]) + Int(p[3]) + Int(p[30]) + Int(p[33])
        #expect(out.pixels[0] == UInt8((sum + 2) >> 2))
    }

    @Test func normalizeMatchesMmcv() throws {
        for case_ in F.manifest.normalize {
            let t = normalize(F.image(case_.source), mean: case_.mean, std: case_.std, toRGB: case_.to_rgb)
            let want = F.floats(case_.expected)
            let img = F.image(case_.source)
            #expect(t.shape == [1, 3, img.height, img.width])
            let worst = zip(t.data, want).map { abs($0 - $1) }.max() ?? .infinity
            #expect(worst <= 1e-6, "\(case_.expected): max |diff| \(worst)")
        }
    }

    @Test func imagenetEvalMatchesTorchvision() throws {
        for case_ in F.manifest.imagenet {
            let t = imagenetEvalTensor(F.image(case_.source), crop: case_.crop)
            #expect(t.shape == [1, 3, case_.crop, case_.crop])
            if let expected = case_.expected {
                let want = F.floats(expected)
                let worst = zip(t.data, want).map { abs($0 - $1) }.max() ?? .infinity
                #expect(t.count == want.count && worst <= 1e-6, "\(expected): max |diff| \(worst)")
            }
            if let crc = case_.crc32 {
                let bytes = t.data.flatMap { withUnsafeBytes(of: $0.bitPattern.littleEndian) { Array($0) } }
                #expect(F.crc32(bytes) == crc, "\(case_.source) crop \(case_.crop): float32 output differs")
            }
        }
    }

    @Test func rescaledSizeMatchesMmcv() {
        for c in F.manifest.rescale {
            let got = rescaledSize(width: c.width, height: c.height, scale: (c.scale[0], c.scale[1]))
            #expect([got.width, got.height] == c.expected, "\(c.width)x\(c.height) to \(c.scale)")
            let swapped = rescaledSize(width: c.width, height: c.height, scale: (c.scale[1], c.scale[0]))
            #expect([swapped.width, swapped.height] == c.expected)
        }
    }

    @Test func padToMultiplePadsBottomRightWithZeros() {
        // mmdet Pad(size_divisor=4) on a [1, 2, 3, 5] tensor: 3 -> 4 rows, 5 -> 8 columns.
        let t = Tensor(shape: [1, 2, 3, 5], data: (0..<30).map { Float($0 + 1) })
        let p = padToMultiple(t, divisor: 4)
        #expect(p.shape == [1, 2, 4, 8])
        for c in 0..<2 {
            for y in 0..<4 {
                for x in 0..<8 {
                    let want: Float = (y < 3 && x < 5) ? Float(c * 15 + y * 5 + x + 1) : 0
                    #expect(p.data[(c * 4 + y) * 8 + x] == want)
                }
            }
        }
        #expect(padToMultiple(p, divisor: 4) == p)
    }

    @Test func croppedAndOrientation() {
        let img = F.synth(7, 5)
        let crop = img.cropped(x: 2, y: 1, width: 4, height: 3)
        #expect(crop.width == 4 && crop.height == 3)
        #expect(Array(crop.pixels[0..<3]) == Array(img.pixels[(1 * 7 + 2) * 3..<(1 * 7 + 2) * 3 + 3]))
        // Orientation 6 turns the image 90° clockwise: new (x, y) = old (y, H - 1 - x).
        let r = img.applyingOrientation(6)
        #expect(r.width == 5 && r.height == 7)
        for y in 0..<7 {
            for x in 0..<5 {
                let o = (y * 5 + x) * 3, i = ((4 - x) * 7 + y) * 3
                #expect(Array(r.pixels[o..<o + 3]) == Array(img.pixels[i..<i + 3]))
            }
        }
        // 6 then 8 is the identity; so are 2 twice and 3 twice.
        #expect(r.applyingOrientation(8) == img)
        #expect(img.applyingOrientation(2).applyingOrientation(2) == img)
        #expect(img.applyingOrientation(3).applyingOrientation(3) == img)
        #expect(img.applyingOrientation(1) == img && img.applyingOrientation(9) == img)
    }

    @Test func resizeSpeed() {
        let img = F.synth(640, 480)
        let clock = ContinuousClock()
        var best = Duration.seconds(100)
        for _ in 0..<5 {
            let t = clock.measure { _ = img.resizedBilinear(width: 1333, height: 1000) }
            best = min(best, t)
        }
        print("resizedBilinear 640x480 -> 1333x1000: \(best)")
        #expect(best < .milliseconds(100))
    }
}
