//! Explicit layout changes between the API's NCHW and the engine's channels-last maps: both are
//! 2-D transposes ([C, H·W] ↔ [H·W, C]), cache-blocked in C and split over the context's threads.

import CKernels

/// [1, C, H, W] (or [C, H, W]) → [H, W, C].
public func nchwToHWC(_ x: Tensor, _ ctx: ComputeContext? = nil) -> Tensor {
    let s = x.shape.suffix(3).map { $0 }
    precondition(x.rank >= 3 && x.count == s[0] * s[1] * s[2], "nchwToHWC: \(x.shape)")
    let (c, h, w) = (s[0], s[1], s[2])
    return Tensor(uninitialized: [h, w, c]) { out in transpose(x, rows: c, cols: h * w, into: out, ctx) }
}

/// [H, W, C] → [1, C, H, W].
public func hwcToNCHW(_ x: Tensor, _ ctx: ComputeContext? = nil) -> Tensor {
    precondition(x.rank == 3, "hwcToNCHW: \(x.shape)")
    let (h, w, c) = (x.shape[0], x.shape[1], x.shape[2])
    return Tensor(uninitialized: [1, c, h, w]) { out in transpose(x, rows: h * w, cols: c, into: out, ctx) }
}

/// out [cols, rows] = xᵀ for x [rows, cols], on the context's threads (one thread without one).
private func transpose(_ x: Tensor, rows: Int, cols: Int, into out: UnsafeMutableBufferPointer<Float>, _ ctx: ComputeContext?) {
    guard rows > 0, cols > 0 else { return }
    let o = SharedPointer(out.baseAddress!)
    x.data.withUnsafeBufferPointer { xp in
        let src = SharedConstPointer(xp.baseAddress!)
        let body: @Sendable (Range<Int>) -> Void = { r in uf_transpose_rows(src.base, rows, cols, o.base, r.lowerBound, r.upperBound) }
        // chunks of whole 16-row tiles, and no split below ~64 K floats (not worth a wake-up)
        if let ctx, rows * cols >= 1 << 16 {
            let tiles = (rows + 15) / 16
            parallelFor(tiles, ctx) { t in body(t.lowerBound * 16 ..< min(rows, t.upperBound * 16)) }
        } else {
            body(0..<rows)
        }
    }
}
