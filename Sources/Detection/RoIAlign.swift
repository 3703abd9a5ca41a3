//! RoIAlign as mmcv's roi_align (ops/csrc roi_align CPU kernel), average pooling, `aligned = true`:
//! a roi's box is scaled by 1/stride and shifted by −½ pixel; each of the out×out bins averages a
//! grid of samples (sampling_ratio > 0, or ⌈roi size / out⌉ per axis when 0 — adaptive); a sample is
//! bilinear with mmcv's border rules (outside [−1, H] × [−1, W] → 0, clamped to the last row/column).
//! The level of each roi follows SingleRoIExtractor.map_roi_levels: ⌊log2(√(w·h) / finest_scale + 1e-6)⌋
//! clamped to the available levels. Feature maps are channels-last [H, W, C].

import Foundation
import TensorCore

public struct RoIAlign: Sendable {
    public let outputSize: Int
    public let samplingRatio: Int
    public let strides: [Int]
    public let finestScale: Float

    public init(outputSize: Int, samplingRatio: Int, strides: [Int], finestScale: Float = 56) {
        self.outputSize = outputSize; self.samplingRatio = samplingRatio
        self.strides = strides; self.finestScale = finestScale
    }

    /// SingleRoIExtractor.map_roi_levels
    public func level(of box: SIMD4<Float>) -> Int {
        let scale = ((box[2] - box[0]) * (box[3] - box[1])).squareRoot()
        let l = floorf(log2f(scale / finestScale + 1e-6))
        return Int(min(max(l, 0), Float(strides.count - 1)))
    }

    /// Features of every box: [R, out, out, C] (channels-last) or [R, C, out, out] (`channelsFirst`,
    /// the order a Linear layer over PyTorch's flattened NCHW roi features expects).
    public func callAsFunction(_ maps: [Tensor], _ boxes: [SIMD4<Float>], channelsFirst: Bool, _ ctx: ComputeContext) -> Tensor {
        let c = maps[0].shape[2], o = outputSize
        let per = o * o * c
        let levels = boxes.map(level(of:))
        return ctx.timed("roi align") { Tensor(uninitialized: [boxes.count, channelsFirst ? c : o, o, channelsFirst ? o : c]) { out in
            let dst = SharedPointer(out.baseAddress!)
            parallelFor(boxes.count, ctx) { range in
                var acc = [Float](repeating: 0, count: c)
                for r in range {
                    let map = maps[levels[r]]
                    map.data.withUnsafeBufferPointer { mp in
                        pool(mp.baseAddress!, height: map.shape[0], width: map.shape[1], channels: c,
                             box: boxes[r], scale: 1 / Float(strides[levels[r]]), into: dst.base + r * per,
                             channelsFirst: channelsFirst, scratch: &acc)
                    }
                }
            }
        } }
    }

    func pool(_ f: UnsafePointer<Float>, height h: Int, width w: Int, channels c: Int, box: SIMD4<Float>, scale: Float,
              into out: UnsafeMutablePointer<Float>, channelsFirst: Bool, scratch acc: inout [Float]) {
        let o = outputSize
        // aligned: offset by half a pixel, no minimum roi size
        let x0 = box[0] * scale - 0.5, y0 = box[1] * scale - 0.5
        let rw = box[2] * scale - 0.5 - x0, rh = box[3] * scale - 0.5 - y0
        let binW = rw / Float(o), binH = rh / Float(o)
        let gridH = samplingRatio > 0 ? samplingRatio : Int(ceilf(rh / Float(o)))
        let gridW = samplingRatio > 0 ? samplingRatio : Int(ceilf(rw / Float(o)))
        let count = Float(max(gridH * gridW, 1))
        for ph in 0..<o {
            for pw in 0..<o {
                for j in 0..<c { acc[j] = 0 }
                for iy in 0..<max(gridH, 0) {
                    let y = y0 + Float(ph) * binH + (Float(iy) + 0.5) * binH / Float(gridH)
                    for ix in 0..<max(gridW, 0) {
                        let x = x0 + Float(pw) * binW + (Float(ix) + 0.5) * binW / Float(gridW)
                        accumulateBilinear(f, h, w, c, y, x, &acc)
                    }
                }
                for j in 0..<c {
                    let v = acc[j] / count
                    if channelsFirst { out[(j * o + ph) * o + pw] = v } else { out[(ph * o + pw) * c + j] = v }
                }
            }
        }
    }
}

/// acc += bilinear sample of f [H, W, C] at (y, x), mmcv's roi_align border handling.
@inline(__always)
func accumulateBilinear(_ f: UnsafePointer<Float>, _ h: Int, _ w: Int, _ c: Int, _ yIn: Float, _ xIn: Float,
                        _ acc: inout [Float]) {
    if yIn < -1 || yIn > Float(h) || xIn < -1 || xIn > Float(w) { return }
    var y = max(yIn, 0), x = max(xIn, 0)
    var yl = Int(y), xl = Int(x)
    var yh: Int, xh: Int
    if yl >= h - 1 { yh = h - 1; yl = h - 1; y = Float(yl) } else { yh = yl + 1 }
    if xl >= w - 1 { xh = w - 1; xl = w - 1; x = Float(xl) } else { xh = xl + 1 }
    let ly = y - Float(yl), lx = x - Float(xl), hy = 1 - ly, hx = 1 - lx
    let w1 = hy * hx, w2 = hy * lx, w3 = ly * hx, w4 = ly * lx
    let p1 = f + (yl * w + xl) * c, p2 = f + (yl * w + xh) * c, p3 = f + (yh * w + xl) * c, p4 = f + (yh * w + xh) * c
    acc.withUnsafeMutableBufferPointer { a in
        for j in 0..<c { a[j] += w1 * p1[j] + w2 * p2[j] + w3 * p3[j] + w4 * p4[j] }
    }
}
