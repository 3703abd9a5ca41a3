//! cv2.resize(img, (w, h), interpolation=INTER_LINEAR) on 8-bit 3-channel images, bit for bit.
//! Port of the semantics of OpenCV 4.10 modules/imgproc/src/resize.cpp (cv::resize →
//! hal::resize → resizeGeneric_ with HResizeLinear / VResizeLinear<uchar, int, short, …>); checked
//! against opencv-python-headless 4.10.0 and 5.0.0, which agree (IPP's linear 8u path is not used
//! by either, it is not bit-exact).
//!
//! - Same size: a copy. Exactly 2× smaller in both directions (1/(w/W) == 2 within DBL_EPSILON):
//!   OpenCV switches to INTER_AREA's fast path, the rounded mean of each 2×2 block.
//! - Otherwise separable fixed point with INTER_RESIZE_COEF_BITS = 11:
//!   source coordinate f = float((d + 0.5) · scale − 0.5) with scale = 1 / (dst/src) in double;
//!   s = floor(f), weights round((1 − (f − s)) · 2048) and round((f − s) · 2048) (half to even).
//!   Horizontally, s < 0 or s ≥ W − 1 clamps s and sets the fraction to 0; vertically the weights
//!   keep the unclamped fraction and only the row indices are clamped.
//! - The horizontal pass is exact in int32 (S0·a0 + S1·a1). The vertical pass rounds as OpenCV's
//!   VResizeLinearVec_32s8u (and its scalar tail, which uses the same formula):
//!   ((b0 · (R0 >> 4)) >> 16 + (b1 · (R1 >> 4)) >> 16 + 2) >> 2.
//! Layout: RGB interleaved in and out; the channels never mix.

extension RGBImage {
    public func resizedBilinear(width dw: Int, height dh: Int) -> RGBImage {
        precondition(dw > 0 && dh > 0, "resizedBilinear: target \(dw)x\(dh)")
        if dw == width && dh == height { return self }
        let invX = Double(dw) / Double(width), invY = Double(dh) / Double(height)
        let scaleX = 1 / invX, scaleY = 1 / invY
        let areaFast = abs(scaleX - scaleX.rounded(.toNearestOrEven)) < Double.ulpOfOne
            && abs(scaleY - scaleY.rounded(.toNearestOrEven)) < Double.ulpOfOne
        if areaFast && scaleX.rounded(.toNearestOrEven) == 2 && scaleY.rounded(.toNearestOrEven) == 2 {
            return halvedByArea(width: dw, height: dh)
        }
        return bilinearFixedPoint(width: dw, height: dh, scaleX: scaleX, scaleY: scaleY)
    }

    /// resizeAreaFast_ with a 2×2 block (ResizeAreaFastVec, cn = 3): (a + b + c + d + 2) >> 2.
    private func halvedByArea(width dw: Int, height dh: Int) -> RGBImage {
        let sw = width
        return pixels.withUnsafeBufferPointer { src in
            RGBImage(width: dw, height: dh) { dst in
                let s = src.baseAddress!, d = dst.baseAddress!
                for y in 0..<dh {
                    let row0 = s + 2 * y * sw * 3, row1 = row0 + sw * 3
                    let out = d + y * dw * 3
                    for i in 0..<(dw * 3) {
                        let x = (i / 3) * 6 + i % 3
                        let sum = Int(row0[x]) + Int(row0[x + 3]) + Int(row1[x]) + Int(row1[x + 3])
                        out[i] = UInt8(truncatingIfNeeded: (sum + 2) >> 2)
                    }
                }
            }
        }
    }

    private func bilinearFixedPoint(width dw: Int, height dh: Int, scaleX: Double, scaleY: Double) -> RGBImage {
        let sw = width, sh = height
        let xt = LinearTaps(destination: dw, source: sw, scale: scaleX, clampFraction: true)
        let yt = LinearTaps(destination: dh, source: sh, scale: scaleY, clampFraction: false)
        let n = dw * 3
        // Two horizontally resized source rows, reused while consecutive output rows share them.
        var rowA = [Int32](repeating: 0, count: n), rowB = rowA
        return pixels.withUnsafeBufferPointer { src in
            RGBImage(width: dw, height: dh) { dst in
                xt.index0.withUnsafeBufferPointer { x0 in xt.index1.withUnsafeBufferPointer { x1 in
                xt.weight0.withUnsafeBufferPointer { a0 in xt.weight1.withUnsafeBufferPointer { a1 in
                rowA.withUnsafeMutableBufferPointer { bufA in rowB.withUnsafeMutableBufferPointer { bufB in
                    var a = bufA.baseAddress!, b = bufB.baseAddress!
                    var tagA = -1, tagB = -1
                    // HResizeLinear: D[dx·3 + c] = S[x0·3 + c]·a0 + S[x1·3 + c]·a1, exact in int32.
                    func horizontal(_ sy: Int, into row: UnsafeMutablePointer<Int32>) {
                        let s = src.baseAddress! + sy * sw * 3
                        for dx in 0..<dw {
                            let p = s + x0[dx] * 3, q = s + x1[dx] * 3
                            let w0 = a0[dx], w1 = a1[dx]
                            let o = row + dx * 3
                            o[0] = Int32(p[0]) &* w0 &+ Int32(q[0]) &* w1
                            o[1] = Int32(p[1]) &* w0 &+ Int32(q[1]) &* w1
                            o[2] = Int32(p[2]) &* w0 &+ Int32(q[2]) &* w1
                        }
                    }
                    for dy in 0..<dh {
                        let r0 = yt.index0[dy], r1 = yt.index1[dy]
                        if tagA != r0 {
                            if tagB == r0 {
                                swap(&a, &b); swap(&tagA, &tagB)
                            } else {
                                horizontal(r0, into: a); tagA = r0
                            }
                        }
                        if tagB != r1 {
                            if r1 == r0 { b.update(from: a, count: n) } else { horizontal(r1, into: b) }
                            tagB = r1
                        }
                        // VResizeLinear<uchar, int, short, …> with VResizeLinearVec_32s8u's rounding.
                        let b0 = yt.weight0[dy], b1 = yt.weight1[dy]
                        let out = dst.baseAddress! + dy * n
                        for i in 0..<n {
                            let v = ((b0 &* (a[i] &>> 4)) &>> 16) &+ ((b1 &* (b[i] &>> 4)) &>> 16) &+ 2
                            out[i] = UInt8(clamping: v &>> 2)
                        }
                    }
                }}}}}}
            }
        }
    }
}

/// Source indices and 11-bit weights of INTER_LINEAR along one axis (hal::resize's xofs/ialpha
/// or yofs/ibeta loops). index1 is index0 + 1 clamped into the image.
struct LinearTaps {
    var index0: [Int], index1: [Int]
    var weight0: [Int32], weight1: [Int32]

    init(destination: Int, source: Int, scale: Double, clampFraction: Bool) {
        index0 = [Int](repeating: 0, count: destination)
        index1 = index0
        weight0 = [Int32](repeating: 0, count: destination)
        weight1 = weight0
        for d in 0..<destination {
            let f = Float((Double(d) + 0.5) * scale - 0.5)
            var s = Int(f.rounded(.down))
            var fraction = f - Float(s)
            if clampFraction {
                if s < 0 { fraction = 0; s = 0 }
                if s >= source - 1 { fraction = 0; s = source - 1 }
            }
            index0[d] = min(max(s, 0), source - 1)
            index1[d] = min(max(s + 1, 0), source - 1)
            weight0[d] = Int32(((1 - fraction) * 2048).rounded(.toNearestOrEven))
            weight1[d] = Int32((fraction * 2048).rounded(.toNearestOrEven))
        }
    }
}
