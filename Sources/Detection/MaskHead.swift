//! FCNMaskHead (models/roi_heads/mask_heads/fcn_mask_head.py, mmdet 2.11): `convs.{i}` (ConvModule
//! 3×3 + ReLU), `upsample` (ConvTranspose2d k2 s2 — the 'deconv' default) + ReLU, `conv_logits` (1×1,
//! num_classes). `pasteMask` is `_do_paste_mask` as run on the CPU (one mask at a time, skip_empty):
//! the sigmoid map sampled with grid_sample (bilinear, align_corners false, zero padding) at pixel
//! centres of the box's region, then thresholded at `mask_thr_binary` (≥).

import Foundation
import ModelConfig
import Necks
import TensorCore
import Weights

public struct FCNMaskHead: Sendable {
    let convs: [ConvModule]
    let deconv: Linear          // [4·O, C]: row (dy·2 + dx)·O + o
    let deconvOut: Int
    let logits: Linear
    public let numClasses: Int
    public let classAgnostic: Bool

    public init(_ node: ConfigNode, weights w: WeightScope) throws {
        let type = try node.string("type")
        guard type == "FCNMaskHead" else { throw ConfigError.unknownType(file: node.file, field: node.fieldPath("type"), type: type) }
        let n = try node.int("num_convs", default: 4), cin = try node.int("in_channels", default: 256)
        let c = try node.int("conv_out_channels", default: 256)
        numClasses = try node.int("num_classes")
        classAgnostic = try node.bool("class_agnostic", default: false)
        if let up = try node.optionalChild("upsample_cfg") {
            let t = try up.string("type")
            guard t == "deconv" else { throw up.invalid("type", "only 'deconv' upsampling is supported, got '\(t)'") }
        }
        guard n >= 0 && n <= 16, numClasses > 0 else { throw node.invalid("num_convs", "needs 0…16 convs and num_classes > 0") }
        convs = try (0..<n).map { i in
            try ConvModule(w.child("convs").child(i), in: i == 0 ? cin : c, out: c, kernel: 3, padding: 1,
                           norm: node.has("norm_cfg"), relu: true)
        }
        let up = n > 0 ? c : cin
        let wt = try w.child("upsample").tensor("weight", shape: [up, c, 2, 2])      // ConvTranspose2d: [in, out, kh, kw]
        let b = try w.child("upsample").tensor("bias", shape: [c]).data
        var packed = [Float](repeating: 0, count: 4 * c * up)
        var bias = [Float](repeating: 0, count: 4 * c)
        for dy in 0..<2 { for dx in 0..<2 { for o in 0..<c {
            let row = (dy * 2 + dx) * c + o
            bias[row] = b[o]
            for i in 0..<up { packed[row * up + i] = wt.data[((i * c + o) * 2 + dy) * 2 + dx] }
        } } }
        deconv = Linear(weight: Tensor(shape: [4 * c, up], data: packed), bias: bias)
        deconvOut = c
        let k = classAgnostic ? 1 : numClasses
        logits = Linear(conv1x1: try w.child("conv_logits").tensor("weight", shape: [k, c, 1, 1]),
                        bias: try w.child("conv_logits").tensor("bias", shape: [k]).data)
    }

    /// roi features [s, s, C] → mask logits [2s, 2s, K].
    public func callAsFunction(_ x: Tensor, _ ctx: ComputeContext) -> Tensor {
        var y = x
        for c in convs { y = c(y, ctx) }
        let (h, w) = (y.shape[0], y.shape[1])
        var d = deconv(y, .bias, ctx)                      // [h, w, 4·O]
        reluInPlace(&d, ctx)
        let o = deconvOut
        let up = Tensor(uninitialized: [2 * h, 2 * w, o]) { out in
            for yy in 0..<h { for xx in 0..<w { for dy in 0..<2 { for dx in 0..<2 {
                let src = (yy * w + xx) * 4 * o + (dy * 2 + dx) * o
                let dst = ((2 * yy + dy) * 2 * w + (2 * xx + dx)) * o
                for j in 0..<o { out[dst + j] = d.data[src + j] }
            } } } }
        }
        return logits(up, .bias, ctx)
    }

    /// RoI features [n, s, s, C] (channels last) → for RoI i the logits of class `channels[i]` only,
    /// (2s)² values each: what `callAsFunction` gives channel by channel, in a few large products.
    ///
    /// Why it is fast: one RoI is a 14×14 map, too small for a product to keep two threads busy
    /// (a 3×3 conv per RoI ran at a third of the batched rate). Up to `chunk` RoIs are stacked into
    /// one tall [rows, s, C] map with one zero row between neighbours, so a 3×3 conv (padding 1) over
    /// the stack reads exactly the zeros its RoI's padding would give; the conv fills the separator
    /// rows, which are zeroed again before the next conv. The deconv is one Linear over every pixel
    /// of the stack, and the final 1×1 conv is evaluated for the kept channel only (1/K of its work).
    public func logits(batch x: Tensor, channels: [Int], _ ctx: ComputeContext, chunk: Int = 64) -> [[Float]] {
        precondition(x.rank == 4 && x.shape[1] == x.shape[2] && channels.count == x.shape[0], "mask head: \(x.shape), \(channels.count) channels")
        let n = x.shape[0], s = x.shape[1], cin = x.shape[3], per = s * s * cin
        let k = logits.outFeatures, o = deconvOut, side = 2 * s
        precondition(channels.allSatisfy { $0 >= 0 && $0 < k }, "mask head: channel outside 0..<\(k)")
        var out = [[Float]](repeating: [], count: n)
        var first = 0
        while first < n {
            let m = min(chunk, n - first), rows = m * (s + 1) - 1
            var y = Tensor(uninitialized: [rows, s, cin]) { buf in
                x.data.withUnsafeBufferPointer { src in
                    for i in 0..<m {
                        let dst = buf.baseAddress! + i * (s + 1) * s * cin
                        dst.update(from: src.baseAddress! + (first + i) * per, count: per)
                        if i < m - 1 { (dst + per).update(repeating: 0, count: s * cin) }
                    }
                }
            }
            for conv in convs {
                y = conv(y, ctx)
                let width = s * y.shape[2]
                y.data.withUnsafeMutableBufferPointer { p in
                    for i in 0..<(m - 1) { (p.baseAddress! + ((i + 1) * (s + 1) - 1) * width).update(repeating: 0, count: width) }
                }
            }
            var d = deconv(y, .bias, ctx)                  // [rows, s, 4·O]; (dy·2 + dx)·O + o
            reluInPlace(&d, ctx)
            // logits[2yy + dy, 2xx + dx] = b[c] + Σ_o W[c, o] · d[yy, xx, (dy·2 + dx)·O + o]
            var maps = [Float](repeating: 0, count: m * side * side)
            let w = logits.weight.data, b = logits.bias ?? [Float](repeating: 0, count: k)
            let classes = Array(channels[first..<(first + m)])
            ctx.timed("mask logits") { maps.withUnsafeMutableBufferPointer { mp in
                let mOut = SharedPointer(mp.baseAddress!)
                d.data.withUnsafeBufferPointer { dp in
                    let dIn = SharedConstPointer(dp.baseAddress!)
                    parallelFor(m, ctx) { range in
                        w.withUnsafeBufferPointer { wp in
                            for i in range {
                                let wc = wp.baseAddress! + classes[i] * o, bc = b[classes[i]]
                                let map = mOut.base + i * side * side
                                for yy in 0..<s { for xx in 0..<s {
                                    let pix = dIn.base + ((i * (s + 1) + yy) * s + xx) * 4 * o
                                    for q in 0..<4 {
                                        let v = pix + q * o
                                        var acc: Float = 0
                                        for j in 0..<o { acc += v[j] * wc[j] }
                                        map[(2 * yy + q / 2) * side + 2 * xx + q % 2] = acc + bc
                                    }
                                } }
                            }
                        }
                    }
                }
            } }
            for i in 0..<m { out[first + i] = Array(maps[(i * side * side)..<((i + 1) * side * side)]) }
            first += m
        }
        return out
    }
}

/// _do_paste_mask for one mask (CPU path): probabilities `mask` [m, m] of a box in image pixels,
/// pasted into an imgH × imgW frame and thresholded (≥ thr) — row-major booleans.
public func pasteMask(_ mask: [Float], size m: Int, box: SIMD4<Float>, imageHeight imgH: Int, imageWidth imgW: Int,
                      threshold: Float) -> [Bool] {
    var out = [Bool](repeating: false, count: imgH * imgW)
    let (x0, y0, x1, y1) = (box[0], box[1], box[2], box[3])
    let xs = max(Int(floorf(x0)) - 1, 0), ys = max(Int(floorf(y0)) - 1, 0)
    let xe = min(Int(ceilf(x1)) + 1, imgW), ye = min(Int(ceilf(y1)) + 1, imgH)
    guard xe > xs && ye > ys else { return out }
    for y in ys..<ye {
        var gy = (Float(y) + 0.5 - y0) / (y1 - y0) * 2 - 1
        if gy.isInfinite { gy = 0 }
        // grid_sample, align_corners false: pixel = ((g + 1)·m − 1) / 2
        let py = ((gy + 1) * Float(m) - 1) / 2
        for x in xs..<xe {
            var gx = (Float(x) + 0.5 - x0) / (x1 - x0) * 2 - 1
            if gx.isInfinite { gx = 0 }
            let px = ((gx + 1) * Float(m) - 1) / 2
            out[y * imgW + x] = sampleZeroPadded(mask, m, py, px) >= threshold
        }
    }
    return out
}

/// Bilinear sample of an m×m map at (y, x) with zeros outside, as grid_sample(padding_mode='zeros').
@inline(__always)
func sampleZeroPadded(_ a: [Float], _ m: Int, _ y: Float, _ x: Float) -> Float {
    if y.isNaN || x.isNaN { return 0 }
    let y0 = Int(floorf(y)), x0 = Int(floorf(x))
    let fy = y - Float(y0), fx = x - Float(x0)
    func at(_ yy: Int, _ xx: Int) -> Float { (yy >= 0 && yy < m && xx >= 0 && xx < m) ? a[yy * m + xx] : 0 }
    // PyTorch: nw·(1−fx)(1−fy) + ne·fx(1−fy) + sw·(1−fx)fy + se·fx·fy
    return at(y0, x0) * (1 - fx) * (1 - fy) + at(y0, x0 + 1) * fx * (1 - fy)
        + at(y0 + 1, x0) * (1 - fx) * fy + at(y0 + 1, x0 + 1) * fx * fy
}
