// The overlay pictures: bitmap font, drawing primitives, segmentation legend, detection tags;
// and the weights a config names for itself (bundled demo models need no --weights).

import Detection
import Foundation
import Imaging
import Testing
import UniFormer

/// Naive twin of drawText: the colour pixel (x, y) must have, from the glyph bits alone.
private func inked(_ text: [Unicode.Scalar], x0: Int, y0: Int, scale s: Int, x: Int, y: Int) -> Bool {
    guard x >= x0, y >= y0 else { return false }
    let i = (x - x0) / (BitmapFont.advance * s), within = (x - x0) % (BitmapFont.advance * s)
    let col = within / s, row = (y - y0) / s
    guard i < text.count, col < BitmapFont.glyphWidth, row < BitmapFont.glyphHeight else { return false }
    return BitmapFont.rows(of: text[i])[row] & (16 >> UInt8(col)) != 0
}

private func grey(_ w: Int, _ h: Int, _ v: UInt8 = 100) -> RGBImage {
    RGBImage(width: w, height: h, pixels: [UInt8](repeating: v, count: w * h * 3))
}

private func pixel(_ im: RGBImage, _ x: Int, _ y: Int) -> [UInt8] {
    Array(im.pixels[(y * im.width + x) * 3 ..< (y * im.width + x) * 3 + 3])
}

@Suite struct BitmapFontTests {
    @Test func printableASCIIHasDistinctNonEmptyGlyphsAndOthersDrawAsQuestionMarks() {
        var seen = Set<[UInt8]>()
        for v in 33...126 {
            let rows = BitmapFont.rows(of: Unicode.Scalar(UInt8(v)))
            #expect(rows.count == BitmapFont.glyphHeight)
            #expect(rows.allSatisfy { $0 < 32 }, "glyph \(v) wider than 5")
            #expect(rows.contains { $0 != 0 }, "glyph \(v) is empty")
            seen.insert(rows)
        }
        #expect(seen.count == 94)
        #expect(BitmapFont.rows(of: " ").allSatisfy { $0 == 0 })
        #expect(BitmapFont.rows(of: "é") == BitmapFont.rows(of: "?"))
        #expect(BitmapFont.size(of: "ab", scale: 3) == (width: 33, height: 24))
    }

    @Test(arguments: [(3, 2, 1), (5, 1, 2), (-7, -5, 2), (30, 14, 3)])
    func drawTextPaintsExactlyTheGlyphPixelsAndClips(_ x0: Int, _ y0: Int, _ s: Int) {
        let text = "Hg,q0.9"
        var im = grey(41, 23, 0)
        im.drawText(text, x: x0, y: y0, color: [255, 200, 100], scale: s)
        let scalars = Array(text.unicodeScalars)
        for y in 0..<im.height {
            for x in 0..<im.width {
                let want: [UInt8] = inked(scalars, x0: x0, y0: y0, scale: s, x: x, y: y) ? [255, 200, 100] : [0, 0, 0]
                #expect(pixel(im, x, y) == want, "(\(x), \(y))")
            }
        }
    }

    @Test func rectanglesClipAndBlend() {
        var im = grey(10, 8, 100)
        im.fillRect(x: -3, y: 6, width: 5, height: 10, color: [200, 0, 50], opacity: 0.5)
        im.strokeRect(x0: 5, y0: 1, x1: 20, y1: 4, color: [1, 2, 3], thickness: 2)
        #expect(pixel(im, 0, 7) == [150, 50, 75] && pixel(im, 1, 6) == [150, 50, 75])
        #expect(pixel(im, 2, 7) == [100, 100, 100] && pixel(im, 0, 5) == [100, 100, 100])
        #expect(pixel(im, 5, 1) == [1, 2, 3] && pixel(im, 9, 2) == [1, 2, 3] && pixel(im, 6, 3) == [1, 2, 3])
        #expect(pixel(im, 7, 3) == [1, 2, 3] && pixel(im, 7, 2) == [1, 2, 3])   // bottom edge rows 3…4
        #expect(pixel(im, 7, 0) == [100, 100, 100] && pixel(im, 4, 2) == [100, 100, 100])
    }
}

@Suite struct OverlayTests {
    let classes = ["background", "circle", "square", "triangle", "star", "ring"]
    let palette: [[UInt8]] = [[40, 40, 40], [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48]]

    @Test func segmentationBlendsEveryPixelAndListsPresentClassesMostPixelsFirst() {
        let (w, h) = (120, 80)
        let image = RGBImage(width: w, height: h, pixels: (0..<(w * h * 3)).map { UInt8($0 % 251) })
        var labels = [UInt8](repeating: 0, count: w * h)
        for y in 0..<h { for x in 0..<w where x >= 50 { labels[y * w + x] = 2 } }            // 70·80 square
        for y in 60..<70 { for x in 10..<30 { labels[y * w + x] = 5 } }                        // 200 ring
        let out = segmentationOverlay(image, labels: labels, classes: classes, palette: palette)
        // legend at scale 1: pad 3, line 10, swatch 8; three entries → box 0..<(3+8+3+textW+3) × 0..<34
        let textW = BitmapFont.size(of: "background", scale: 1).width
        let boxW = 3 + 8 + 3 + textW + 3, boxH = 3 + 3 * 10 - 2 + 3
        #expect(pixel(out, 3 + 4, 3 + 4) == palette[2])          // most pixels: square
        #expect(pixel(out, 3 + 4, 13 + 4) == palette[0])         // then background
        #expect(pixel(out, 3 + 4, 23 + 4) == palette[5])         // then ring; circle, triangle, star absent
        for y in 0..<h {
            for x in 0..<w where x >= boxW || y >= boxH {
                let c = palette[Int(labels[y * w + x])]
                let want = (0..<3).map { UInt8(Float(image.pixels[(y * w + x) * 3 + $0]) * 0.5 + Float(c[$0]) * 0.5) }
                #expect(pixel(out, x, y) == want, "(\(x), \(y))")
            }
        }
        // the legend's text is white on the darkened panel
        let name = Array("square".unicodeScalars)
        for y in 3..<11 { for x in 14..<(14 + 35) where inked(name, x0: 14, y0: 3, scale: 1, x: x, y: y) {
            #expect(pixel(out, x, y) == [255, 255, 255])
        } }
    }

    @Test func aLegendLongerThanTheImageEndsWithHowManyAreLeftOut() {
        let (w, h) = (200, 45)   // room for (45 − 6) / 10 = 3 lines: two classes and "+4 more"
        var labels = [UInt8](repeating: 0, count: w * h)
        for i in 0..<labels.count { labels[i] = UInt8(i % 6) }
        let out = segmentationOverlay(grey(w, h), labels: labels, classes: classes, palette: palette)
        let text = Array("+4 more".unicodeScalars)
        let x0 = 3 + 8 + 3, y0 = 3 + 2 * 10
        var ink = 0
        for y in y0..<(y0 + 8) { for x in x0..<(x0 + 41) where inked(text, x0: x0, y0: y0, scale: 1, x: x, y: y) {
            #expect(pixel(out, x, y) == [255, 255, 255]); ink += 1
        } }
        #expect(ink > 20)
        #expect(pixel(out, 3 + 4, y0 + 4) != palette[2])          // no swatch on the summary line
    }

    @Test func detectionsGetMaskBoxAndANameScoreTag() {
        let (w, h) = (100, 90)
        var mask = [Bool](repeating: false, count: w * h)
        for y in 30..<60 { for x in 20..<50 { mask[y * w + x] = true } }
        let det = Detection(box: SIMD4(10.4, 20.7, 60.2, 70.9), score: 0.876, label: 1, mask: mask)
        let out = detectionOverlay(grey(w, h), detections: [det], classes: classes, palette: palette)
        let c = palette[1]
        #expect(pixel(out, 10, 45) == c && pixel(out, 11, 45) == c && pixel(out, 12, 45) == [100, 100, 100])  // 2-px outline
        #expect(pixel(out, 60, 50) == c && pixel(out, 35, 70) == c)
        #expect(pixel(out, 35, 45) == [165, 62, 87])                 // mask blended ½ with (230, 25, 75)
        #expect(pixel(out, 55, 45) == [100, 100, 100])               // inside the box, outside the mask
        // tag above the box: height 8 + 3, starts at x0 = 10; text "circle 0.88" 2 px in, in white on red
        let text = Array("circle 0.88".unicodeScalars)
        let tagY = 20 - 11
        #expect(pixel(out, 10, tagY) == c)
        var ink = 0
        for y in tagY..<20 { for x in 10..<(10 + 4 + BitmapFont.size(of: "circle 0.88").width) {
            let on = inked(text, x0: 12, y0: tagY + 2, scale: 1, x: x, y: y)
            #expect(pixel(out, x, y) == (on ? [255, 255, 255] : c), "(\(x), \(y))")
            ink += on ? 1 : 0
        } }
        #expect(ink > 60)
    }

    @Test func lowScoresAndDegenerateBoxesAreNotDrawn() {
        let image = grey(40, 30)
        let dets = [Detection(box: SIMD4(5, 5, 20, 20), score: 0.29, label: 1),
                    Detection(box: SIMD4(0, 3, 0, 25), score: 0.9, label: 2)]      // zero width
        #expect(detectionOverlay(image, detections: dets, classes: classes, palette: palette) == image)
        #expect(detectionOverlay(image, detections: dets, classes: classes, palette: palette, minScore: 0.2) != image)
    }

    @Test func aBoxAtTheTopEdgeGetsItsTagInside() {
        let det = Detection(box: SIMD4(0, 0, 40, 30), score: 1, label: 3, mask: nil)
        let out = detectionOverlay(grey(64, 48), detections: [det], classes: classes, palette: palette)
        // yellow background → black text; the tag starts at the box's corner
        let text = Array("triangle 1.00".unicodeScalars)
        #expect(pixel(out, 1, 0) == palette[3])
        for y in 2..<10 { for x in 2..<60 where inked(text, x0: 2, y0: 2, scale: 1, x: x, y: y) {
            #expect(pixel(out, x, y) == [0, 0, 0])
        } }
    }
}

@Suite struct ConfigNamedWeights {
    @Test func aConfigsWeightsEntryIsFoundBesideItAndUsedWithoutWeights() throws {
        let dir = Fixtures.root.appendingPathComponent("detection/mask_rcnn_hybrid")
        let config = dir.appendingPathComponent("config.json")
        let file = try ModelFile(contentsOf: config)
        #expect(file.weightsName == "../weights/mask_rcnn.pth")
        #expect(try file.defaultWeights().standardizedFileURL == Fixtures.root.appendingPathComponent("detection/weights/mask_rcnn.pth").standardizedFileURL)
        let implicit = try ObjectDetector(model: config.path)
        let explicit = try ObjectDetector(model: config.path, weights: try file.defaultWeights())
        let image = try loadImage(contentsOf: dir.appendingPathComponent("image.png"))
        #expect(try implicit.detect(image) == explicit.detect(image))
    }

    @Test func noWeightsAnywhereIsAClearError() throws {
        let out = try scratchDirectory()
        let config = out.appendingPathComponent("c.json")
        var text = try String(contentsOf: packageRoot.appendingPathComponent("tasks/demo/tiny-backbone.json"), encoding: .utf8)
        try text.write(to: config, atomically: true, encoding: .utf8)
        let r = try runTool(["features", "tasks/demo/example.png", "--model", config.path, "-o", out.appendingPathComponent("f.safetensors").path])
        #expect(r.status != 0 && r.stderr.contains(config.path) && r.stderr.contains("--weights"), "\(r.stderr)")
        text = text.replacingOccurrences(of: "{", with: "{\"weights\": \"missing.safetensors\",", options: [], range: text.range(of: "{"))
        try text.write(to: config, atomically: true, encoding: .utf8)
        let r2 = try runTool(["features", "tasks/demo/example.png", "--model", config.path, "-o", out.appendingPathComponent("f.safetensors").path])
        #expect(r2.status != 0 && r2.stderr.contains("missing.safetensors"), "\(r2.stderr)")
        #expect(!FileManager.default.fileExists(atPath: out.appendingPathComponent("f.safetensors").path))
    }
}
