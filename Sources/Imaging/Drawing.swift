//! Drawing primitives for overlays: filled and translucent rectangles, outlines, per-pixel blending
//! through a mask. Everything clips to the image, so callers may pass any coordinates.

extension RGBImage {
    /// Fills [x, x + width) × [y, y + height) ∩ image with `color`, mixed as
    /// pixel·(1 − opacity) + color·opacity (opacity 1 = opaque), truncated to 8 bits.
    public mutating func fillRect(x: Int, y: Int, width w: Int, height h: Int, color: [UInt8], opacity: Float = 1) {
        let x0 = max(0, x), y0 = max(0, y), x1 = min(width, x + w), y1 = min(height, y + h)
        guard x0 < x1, y0 < y1 else { return }
        let stride = width
        pixels.withUnsafeMutableBufferPointer { px in
            for row in y0..<y1 {
                for col in x0..<x1 {
                    let p = (row * stride + col) * 3
                    for j in 0..<3 {
                        px[p + j] = opacity >= 1 ? color[j] : UInt8(Float(px[p + j]) * (1 - opacity) + Float(color[j]) * opacity)
                    }
                }
            }
        }
    }

    /// A rectangle outline `thickness` pixels wide, inside [x0, x1] × [y0, y1] (inclusive corners).
    public mutating func strokeRect(x0: Int, y0: Int, x1: Int, y1: Int, color: [UInt8], thickness: Int = 2) {
        guard x1 >= x0, y1 >= y0 else { return }
        let t = max(1, thickness)
        let w = x1 - x0 + 1, h = y1 - y0 + 1
        fillRect(x: x0, y: y0, width: w, height: min(t, h), color: color)
        fillRect(x: x0, y: y1 - t + 1, width: w, height: min(t, h), color: color)
        fillRect(x: x0, y: y0, width: min(t, w), height: h, color: color)
        fillRect(x: x1 - t + 1, y: y0, width: min(t, w), height: h, color: color)
    }

    /// Mixes `color` into every pixel whose `mask` entry is true (mask is [height * width], row-major).
    public mutating func blend(mask: [Bool], color: [UInt8], opacity: Float = 0.5) {
        precondition(mask.count == width * height, "blend: mask of \(mask.count) for \(width)x\(height)")
        pixels.withUnsafeMutableBufferPointer { px in
            for p in 0..<mask.count where mask[p] {
                for j in 0..<3 { px[p * 3 + j] = UInt8(Float(px[p * 3 + j]) * (1 - opacity) + Float(color[j]) * opacity) }
            }
        }
    }
}
