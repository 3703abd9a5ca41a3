//! Resampling and pooling of channels-last maps [H, W, C], with PyTorch's index arithmetic.
//!
//! - bilinear, align_corners = false (F.interpolate(mode='bilinear', size=…)): source coordinate
//!   (d + ½)·in/out − ½, clamped below at 0; neighbours i and min(i + 1, in − 1).
//! - nearest (F.interpolate(mode='nearest', size=…), the legacy mode mmdet/mmseg FPN use):
//!   source index ⌊d · in/out⌋ (float scale), clamped to in − 1.
//! - adaptive average pooling (nn.AdaptiveAvgPool2d): bin i covers ⌊i·in/out⌋ … ⌈(i+1)·in/out⌉ − 1.
//! Each output row is independent; rows split across threads; the inner loop runs over channels.

/// Per-output-index source neighbours and weights for bilinear resampling along one axis.
struct LinearTaps {
    let lo: [Int], hi: [Int], w: [Float]

    init(input n: Int, output m: Int, alignCorners: Bool) {
        var lo = [Int](repeating: 0, count: m), hi = lo, w = [Float](repeating: 0, count: m)
        // PyTorch's area_pixel_compute_scale: in/out (align_corners false) in float.
        let scale: Float = alignCorners ? (m > 1 ? Float(n - 1) / Float(m - 1) : 0) : Float(n) / Float(m)
        for d in 0..<m {
            var src = alignCorners ? Float(d) * scale : (Float(d) + 0.5) * scale - 0.5
            if src < 0 { src = 0 }
            let i = min(Int(src), n - 1)
            lo[d] = i
            hi[d] = min(i + 1, n - 1)
            w[d] = src - Float(i)
        }
        self.lo = lo; self.hi = hi; self.w = w
    }
}

/// Bilinear resize of x [H, W, C] to [outH, outW, C]; with `rows`, only those output rows
/// ([rows.count, outW, C]), so a caller can stream a large output band by band.
public func resizeBilinear(_ x: Tensor, height outH: Int, width outW: Int, rows: Range<Int>? = nil,
                           alignCorners: Bool = false, _ ctx: ComputeContext) -> Tensor {
    precondition(x.rank == 3 && outH > 0 && outW > 0, "resizeBilinear: \(x.shape) → \(outH)×\(outW)")
    let (h, w, c) = (x.shape[0], x.shape[1], x.shape[2])
    let band = rows ?? 0..<outH
    precondition(band.lowerBound >= 0 && band.upperBound <= outH, "resizeBilinear: rows \(band) of \(outH)")
    if h == outH && w == outW && band == 0..<outH { return x }
    let ty = LinearTaps(input: h, output: outH, alignCorners: alignCorners)
    let tx = LinearTaps(input: w, output: outW, alignCorners: alignCorners)
    return ctx.timed("resize") { Tensor(uninitialized: [band.count, outW, c]) { out in
        let o = SharedPointer(out.baseAddress!)
        x.data.withUnsafeBufferPointer { xp in
            let src = SharedConstPointer(xp.baseAddress!)
            parallelFor(band.count, ctx) { local in
                for r in local {
                    let y = band.lowerBound + r
                    let r0 = src.base + ty.lo[y] * w * c, r1 = src.base + ty.hi[y] * w * c
                    let fy = ty.w[y], gy = 1 - fy
                    for xx in 0..<outW {
                        let a0 = tx.lo[xx] * c, a1 = tx.hi[xx] * c
                        let fx = tx.w[xx], gx = 1 - fx
                        let dst = o.base + (r * outW + xx) * c
                        // PyTorch: h0lambda·(w0lambda·p00 + w1lambda·p01) + h1lambda·(w0lambda·p10 + w1lambda·p11)
                        for j in 0..<c {
                            dst[j] = gy * (gx * r0[a0 + j] + fx * r0[a1 + j]) + fy * (gx * r1[a0 + j] + fx * r1[a1 + j])
                        }
                    }
                }
            }
        }
    } }
}

/// Nearest-neighbour resize of x [H, W, C] to [outH, outW, C] (PyTorch's legacy 'nearest').
public func resizeNearest(_ x: Tensor, height outH: Int, width outW: Int, _ ctx: ComputeContext) -> Tensor {
    precondition(x.rank == 3 && outH > 0 && outW > 0, "resizeNearest: \(x.shape) → \(outH)×\(outW)")
    let (h, w, c) = (x.shape[0], x.shape[1], x.shape[2])
    if h == outH && w == outW { return x }
    let sy = Float(h) / Float(outH), sx = Float(w) / Float(outW)
    let iy = (0..<outH).map { min(Int(Float($0) * sy), h - 1) }
    let ix = (0..<outW).map { min(Int(Float($0) * sx), w - 1) }
    return Tensor(uninitialized: [outH, outW, c]) { out in
        let o = SharedPointer(out.baseAddress!)
        x.data.withUnsafeBufferPointer { xp in
            let src = SharedConstPointer(xp.baseAddress!)
            parallelFor(outH, ctx) { rows in
                for y in rows {
                    for xx in 0..<outW {
                        (o.base + (y * outW + xx) * c).update(from: src.base + (iy[y] * w + ix[xx]) * c, count: c)
                    }
                }
            }
        }
    }
}

/// Adaptive average pooling of x [H, W, C] to [s, s, C] (nn.AdaptiveAvgPool2d(s)).
public func adaptiveAvgPool(_ x: Tensor, size s: Int) -> Tensor {
    precondition(x.rank == 3 && s > 0, "adaptiveAvgPool: \(x.shape) → \(s)")
    let (h, w, c) = (x.shape[0], x.shape[1], x.shape[2])
    var out = [Float](repeating: 0, count: s * s * c)
    x.data.withUnsafeBufferPointer { xp in
        for by in 0..<s {
            let y0 = (by * h) / s, y1 = ((by + 1) * h + s - 1) / s
            for bx in 0..<s {
                let x0 = (bx * w) / s, x1 = ((bx + 1) * w + s - 1) / s
                var acc = [Float](repeating: 0, count: c)
                for y in y0..<y1 { for xx in x0..<x1 {
                    let p = (y * w + xx) * c
                    for j in 0..<c { acc[j] += xp[p + j] }
                } }
                let inv = 1 / Float((y1 - y0) * (x1 - x0))
                for j in 0..<c { out[(by * s + bx) * c + j] = acc[j] * inv }
            }
        }
    }
    return Tensor(shape: [s, s, c], data: out)
}

/// Concatenates maps [H, W, C_i] along channels → [H, W, ΣC_i] (torch.cat(dim=1) in NCHW).
public func concatChannels(_ parts: [Tensor], _ ctx: ComputeContext) -> Tensor {
    let (h, w) = (parts[0].shape[0], parts[0].shape[1])
    precondition(parts.allSatisfy { $0.rank == 3 && $0.shape[0] == h && $0.shape[1] == w }, "concat: \(parts.map(\.shape))")
    let widths = parts.map { $0.shape[2] }
    let total = widths.reduce(0, +)
    return Tensor(uninitialized: [h, w, total]) { out in
        let o = SharedPointer(out.baseAddress!)
        var offset = 0
        for (p, cw) in zip(parts, widths) {
            let off = offset
            p.data.withUnsafeBufferPointer { pp in
                let src = SharedConstPointer(pp.baseAddress!)
                parallelFor(h * w, ctx, minChunk: 1024) { range in
                    for t in range { (o.base + t * total + off).update(from: src.base + t * cw, count: cw) }
                }
            }
            offset += cw
        }
    }
}

/// a += b element-wise (same shape).
public func addInPlace(_ a: inout Tensor, _ b: Tensor) {
    precondition(a.shape == b.shape, "add: \(a.shape) vs \(b.shape)")
    a.data.withUnsafeMutableBufferPointer { ap in
        b.data.withUnsafeBufferPointer { bp in
            for i in 0..<ap.count { ap[i] += bp[i] }
        }
    }
}
