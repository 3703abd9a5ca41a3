//! PIL's Image.resize((w, h), Image.BICUBIC) on an RGB image, bit for bit.
//! Port of the semantics of Pillow 13.0.0's src/libImaging/Resample.c (ImagingResampleInner with
//! the bicubic filter, a = −0.5, support 2) and Image.resize: an antialiasing resample —
//! when shrinking, the filter is stretched by the scale factor.
//!
//! - Coefficients in double: center = (x + 0.5)·scale, support = 2·max(scale, 1), taps from
//!   int(center − support + 0.5) to int(center + support + 0.5) clipped to the image, weight
//!   bicubic((i − center + 0.5) / max(scale, 1)), normalised to sum 1, then fixed point with
//!   22 fractional bits (rounded half away from zero).
//! - Two passes, each only if that size changes, each rounding to 8 bits: clip8((2^21 + Σ p·k) >> 22).
//!   Pillow 13.0 runs the vertical pass first when the height loses more than twice as many pixels
//!   as the width: (H − h) > 0 && (H − h) > 2·(W − w) (ImagingResampleInner's horizontal_first);
//!   otherwise, and always in Pillow ≤ 12.1, the horizontal pass comes first (12.2–12.3 went
//!   vertical-first only for images > 100× taller than wide). The order only matters when the rule
//!   fires, which the ImageNet eval transform (both sides scaled by one factor) hits only for
//!   images more than twice as tall as wide that shrink.
//! Layout: RGB interleaved in and out; the channels never mix.

extension RGBImage {
    public func resizedPILBicubic(width dw: Int, height dh: Int) -> RGBImage {
        precondition(dw > 0 && dh > 0, "resizedPILBicubic: target \(dw)x\(dh)")
        if dw == width && dh == height { return self }
        // Resample.c (Pillow 13.0): horizontal_first = !((H - h) > 0 && (H - h) > (W - w) * 2).
        if height - dh > 0 && height - dh > (width - dw) * 2 {
            return pilPass(vertical: true, to: dh).pilPass(vertical: false, to: dw)
        }
        return pilPass(vertical: false, to: dw).pilPass(vertical: true, to: dh)
    }

    /// One resampling pass along x or y (none if that size does not change).
    private func pilPass(vertical: Bool, to size: Int) -> RGBImage {
        let inSize = vertical ? height : width
        if size == inSize { return self }
        let taps = PILTaps(inSize: inSize, outSize: size)
        let (ow, oh) = vertical ? (width, size) : (size, height)
        let w = width
        return pixels.withUnsafeBufferPointer { src in
            taps.coefficients.withUnsafeBufferPointer { kk in
                RGBImage(width: ow, height: oh) { dst in
                    let s = src.baseAddress!, d = dst.baseAddress!
                    if vertical {
                        for y in 0..<oh {
                            let first = taps.first[y], count = taps.count[y]
                            let k = kk.baseAddress! + y * taps.ksize
                            let out = d + y * ow * 3
                            for i in 0..<(ow * 3) {
                                var acc: Int32 = 1 << 21
                                var p = s + first * w * 3 + i
                                for t in 0..<count {
                                    acc &+= Int32(p.pointee) &* k[t]
                                    p += w * 3
                                }
                                out[i] = clip8(acc)
                            }
                        }
                    } else {
                        for y in 0..<oh {
                            let row = s + y * w * 3
                            let out = d + y * ow * 3
                            for x in 0..<ow {
                                let first = taps.first[x], count = taps.count[x]
                                let k = kk.baseAddress! + x * taps.ksize
                                var r: Int32 = 1 << 21, g: Int32 = 1 << 21, b: Int32 = 1 << 21
                                var p = row + first * 3
                                for t in 0..<count {
                                    let kt = k[t]
                                    r &+= Int32(p[0]) &* kt; g &+= Int32(p[1]) &* kt; b &+= Int32(p[2]) &* kt
                                    p += 3
                                }
                                out[x * 3] = clip8(r); out[x * 3 + 1] = clip8(g); out[x * 3 + 2] = clip8(b)
                            }
                        }
                    }
                }
            }
        }
    }
}

/// clip8: the accumulator's integer part (>> 22, arithmetic), clamped to 0…255. The int32
/// accumulator is Pillow's own (|Σ p·k| < 255 · 1.25 · 2^22 cannot overflow).
@inline(__always) private func clip8(_ acc: Int32) -> UInt8 {
    UInt8(clamping: acc &>> 22)
}

/// Pillow's precompute_coeffs + normalize_coeffs_8bpc for BICUBIC over the box (0, inSize).
struct PILTaps {
    let ksize: Int
    var first: [Int], count: [Int]
    /// outSize × ksize fixed-point weights (22 fractional bits).
    var coefficients: [Int32]

    init(inSize: Int, outSize: Int) {
        let scale = Double(Float(inSize)) / Double(outSize)   // (double)(in1 - in0) / outSize, box in float
        let filterScale = max(scale, 1.0)
        let support = 2.0 * filterScale
        ksize = Int(support.rounded(.up)) * 2 + 1
        first = [Int](repeating: 0, count: outSize)
        count = first
        coefficients = [Int32](repeating: 0, count: outSize * ksize)
        let invFilterScale = 1.0 / filterScale
        var weights = [Double](repeating: 0, count: ksize)
        for xx in 0..<outSize {
            let center = (Double(xx) + 0.5) * scale
            var xmin = Int(center - support + 0.5)          // C (int): truncation toward zero
            if xmin < 0 { xmin = 0 }
            var xmax = Int(center + support + 0.5)
            if xmax > inSize { xmax = inSize }
            xmax -= xmin
            var sum = 0.0
            for x in 0..<xmax {
                let w = bicubic((Double(x + xmin) - center + 0.5) * invFilterScale)
                weights[x] = w
                sum += w
            }
            for x in 0..<xmax {
                if sum != 0 { weights[x] /= sum }
                let v = weights[x] * Double(1 << 22)
                coefficients[xx * ksize + x] = Int32(weights[x] < 0 ? -0.5 + v : 0.5 + v)
            }
            first[xx] = xmin
            count[xx] = xmax
        }
    }
}

/// Resample.c bicubic_filter with a = −0.5 (the expression order kept for identical doubles).
@inline(__always) private func bicubic(_ t: Double) -> Double {
    let a = -0.5
    let x = t < 0 ? -t : t
    if x < 1 { return ((a + 2.0) * x - (a + 3.0)) * x * x + 1 }
    if x < 2 { return (((x - 5) * x + 8) * x - 4) * a }
    return 0
}
