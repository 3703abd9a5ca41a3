//! Overlay pictures, as `--overlay` writes them: the class colours blended into the image with a
//! legend of the classes present (segmentation), and translucent instance masks, boxes and
//! "name score" tags (detection). Text uses the built-in bitmap font, scaled with the image.

import Detection
import Imaging

/// Integer text scale for an image: 1 below 640 px on the short side, 2 up to 960, then +1 per 320.
public func overlayTextScale(width: Int, height: Int) -> Int { max(1, min(width, height) / 320) }

/// Black or white, whichever reads better on `background` (ITU-R BT.601 luma).
func textColour(on background: [UInt8]) -> [UInt8] {
    let luma = 0.299 * Double(background[0]) + 0.587 * Double(background[1]) + 0.114 * Double(background[2])
    return luma > 140 ? [0, 0, 0] : [255, 255, 255]
}

/// The image blended with the palette colour of each pixel's class (mmseg's show_result,
/// opacity ½), plus a legend in the top-left corner: one swatch and name per class present,
/// most pixels first; classes that do not fit are summarised as "+N more".
public func segmentationOverlay(_ image: RGBImage, labels: [UInt8], classes: [String], palette: [[UInt8]],
                                opacity: Float = 0.5, legend: Bool = true) -> RGBImage {
    precondition(labels.count == image.width * image.height, "segmentationOverlay: \(labels.count) labels for \(image.width)x\(image.height)")
    var out = image
    var counts = [Int](repeating: 0, count: 256)
    out.pixels.withUnsafeMutableBufferPointer { px in
        for p in 0..<labels.count {
            let k = Int(labels[p])
            counts[k] += 1
            let c = palette[k]
            for j in 0..<3 { px[p * 3 + j] = UInt8(Float(px[p * 3 + j]) * (1 - opacity) + Float(c[j]) * opacity) }
        }
    }
    guard legend else { return out }
    let present = (0..<min(256, classes.count)).filter { counts[$0] > 0 }.sorted { counts[$0] > counts[$1] || (counts[$0] == counts[$1] && $0 < $1) }
    let entries = present.map { (name: classes[$0], colour: palette[$0]) }
    drawLegend(&out, entries)
    return out
}

/// A legend box at the top-left corner: translucent dark panel, a colour swatch and name per line.
func drawLegend(_ image: inout RGBImage, _ entries: [(name: String, colour: [UInt8])]) {
    guard !entries.isEmpty else { return }
    let s = overlayTextScale(width: image.width, height: image.height)
    let pad = 3 * s, line = BitmapFont.lineHeight * s, swatch = BitmapFont.glyphHeight * s
    // As many lines as fit in the image height; the last one says how many were left out.
    let room = max(1, (image.height - 2 * pad) / line)
    var lines = entries.map { (text: $0.name, colour: Optional($0.colour)) }
    if lines.count > room {
        let shown = max(0, room - 1)
        lines = Array(lines.prefix(shown)) + [(text: "+\(entries.count - shown) more", colour: nil)]
    }
    let textWidth = lines.map { BitmapFont.size(of: $0.text, scale: s).width }.max() ?? 0
    let boxW = pad + swatch + pad + textWidth + pad
    let boxH = pad + lines.count * line - (line - swatch) + pad
    image.fillRect(x: 0, y: 0, width: boxW, height: boxH, color: [0, 0, 0], opacity: 0.6)
    for (i, l) in lines.enumerated() {
        let y = pad + i * line
        if let c = l.colour {
            image.fillRect(x: pad, y: y, width: swatch, height: swatch, color: c)
        }
        image.drawText(l.text, x: pad + swatch + pad, y: y, color: [255, 255, 255], scale: s)
    }
}

/// Detections drawn on the image: each instance mask blended in its class colour (opacity ½), the
/// box outline, and a tag "name 0.97" in the class colour above the box (inside it at the top
/// edge). Lower scores are drawn first, so the best detections end on top. Only detections scoring
/// at least `minScore` (mmdet's show_result draws from 0.3) with a box of positive area are drawn.
public func detectionOverlay(_ image: RGBImage, detections all: [Detection], classes: [String], palette: [[UInt8]]? = nil,
                             minScore: Float = 0.3) -> RGBImage {
    let detections = all.filter { $0.score >= minScore && $0.box[2] > $0.box[0] && $0.box[3] > $0.box[1] }
    var out = image
    let s = overlayTextScale(width: image.width, height: image.height)
    let colour = { (label: Int) -> [UInt8] in
        if let palette, label < palette.count { return palette[label] }
        return classColour(label)
    }
    let order = detections.indices.sorted { detections[$0].score < detections[$1].score || (detections[$0].score == detections[$1].score && $0 > $1) }
    for i in order {
        if let m = detections[i].mask { out.blend(mask: m, color: colour(detections[i].label), opacity: 0.5) }
    }
    for i in order {
        let d = detections[i], c = colour(d.label)
        let x0 = Int(d.box[0].rounded(.down)), y0 = Int(d.box[1].rounded(.down))
        let x1 = Int(d.box[2].rounded(.down)), y1 = Int(d.box[3].rounded(.down))
        out.strokeRect(x0: x0, y0: y0, x1: x1, y1: y1, color: c, thickness: s + 1)
        let name = d.label < classes.count ? classes[d.label] : "class \(d.label)"
        let text = "\(name) \(formatScore(d.score))"
        let size = BitmapFont.size(of: text, scale: s)
        let tagW = size.width + 4 * s, tagH = size.height + 3 * s
        let tagX = min(max(0, x0), max(0, image.width - tagW))
        let tagY = y0 - tagH >= 0 ? y0 - tagH : max(0, y0)
        out.fillRect(x: tagX, y: tagY, width: tagW, height: tagH, color: c)
        out.drawText(text, x: tagX + 2 * s, y: tagY + 2 * s, color: textColour(on: c), scale: s)
    }
    return out
}

/// Two decimals, as detection tools print scores ("0.97"; "1.00" for anything ≥ 0.995).
func formatScore(_ x: Float) -> String {
    let v = Int((max(0, min(1, x)) * 100).rounded())
    return "\(v / 100).\(v % 100 < 10 ? "0" : "")\(v % 100)"
}

/// A deterministic, bright-enough colour per class for models without a palette.
public func classColour(_ label: Int) -> [UInt8] {
    var x = UInt32(truncatingIfNeeded: label &* 2654435761 &+ 97)
    x ^= x >> 13; x = x &* 0x5bd1e995; x ^= x >> 15
    return [UInt8(64 + x & 0xbf), UInt8(64 + (x >> 8) & 0xbf), UInt8(64 + (x >> 16) & 0xbf)]
}
