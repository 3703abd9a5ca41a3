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
        reluInPlace(&d)
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
