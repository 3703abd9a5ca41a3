// Each TensorCore kernel against a naive loop twin written here from the PyTorch definition,
// on odd shapes. The naive twins are the oracles; they are slow on purpose.

import CKernels
import Foundation
import TensorCore
import Testing

struct TestRNG {
    var state: UInt64
    mutating func next() -> Float {
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return Float(Int64(bitPattern: state >> 11) % 2_000_001 - 1_000_000) / 1_000_000
    }
    mutating func tensor(_ shape: [Int]) -> Tensor {
        Tensor(shape: shape, data: (0..<shape.reduce(1, *)).map { _ in next() })
    }
}

func maxAbsDiff(_ a: [Float], _ b: [Float]) -> Float {
    precondition(a.count == b.count)
    return zip(a, b).map { abs($0 - $1) }.max() ?? 0
}

/// torch.nn.functional.conv2d(x NCHW, w OIHW, b, stride, padding) with x given channels-last.
func naiveConv(_ x: Tensor, _ w: Tensor, _ b: [Float], stride: Int, pad: Int, groups: Int = 1) -> Tensor {
    let (h, wd, c) = (x.shape[0], x.shape[1], x.shape[2])
    let (o, cg, k) = (w.shape[0], w.shape[1], w.shape[2])
    let ho = (h + 2 * pad - k) / stride + 1, wo = (wd + 2 * pad - k) / stride + 1
    var out = [Float](repeating: 0, count: ho * wo * o)
    let og = o / groups
    for oy in 0..<ho { for ox in 0..<wo { for oc in 0..<o {
        var acc = Double(b[oc])
        let g = oc / og
        for ci in 0..<cg { for ky in 0..<k { for kx in 0..<k {
            let iy = oy * stride + ky - pad, ix = ox * stride + kx - pad
            if iy < 0 || iy >= h || ix < 0 || ix >= wd { continue }
            acc += Double(x.data[(iy * wd + ix) * c + g * cg + ci]) * Double(w.data[((oc * cg + ci) * k + ky) * k + kx])
        } } }
        out[(oy * wo + ox) * o + oc] = Float(acc)
    } } }
    return Tensor(shape: [ho, wo, o], data: out)
}

/// softmax(scale · Q Kᵀ) V per head, from qkv [N, 3C] (PyTorch's reshape(N, 3, heads, d)).
func naiveAttention(_ qkv: [Float], n: Int, c: Int, heads: Int, scale: Float) -> [Float] {
    let d = c / heads
    var out = [Float](repeating: 0, count: n * c)
    for h in 0..<heads {
        for i in 0..<n {
            var s = [Double](repeating: 0, count: n)
            for j in 0..<n {
                var acc = 0.0
                for t in 0..<d { acc += Double(qkv[i * 3 * c + h * d + t]) * Double(qkv[j * 3 * c + c + h * d + t]) }
                s[j] = acc * Double(scale)
            }
            let m = s.max()!
            let e = s.map { exp($0 - m) }
            let z = e.reduce(0, +)
            for t in 0..<d {
                var acc = 0.0
                for j in 0..<n { acc += e[j] / z * Double(qkv[j * 3 * c + 2 * c + h * d + t]) }
                out[i * c + h * d + t] = Float(acc)
            }
        }
    }
    return out
}

@Suite struct TensorCoreKernels {
    let ctx = ComputeContext(threads: 2)

    @Test(arguments: [0, 1, 17, 300_001])
    func reluMatchesNaive(_ n: Int) {
        // the large case runs split across both threads; NaN and -0 pass through as max(x, 0) on x < 0 only
        var rng = TestRNG(state: UInt64(n + 5))
        var data = (0..<n).map { _ in rng.next() }
        if n > 2 { data[1] = .nan; data[2] = -0.0 }
        var t = Tensor(shape: [n], data: data)
        reluInPlace(&t, ctx)
        for i in 0..<n {
            let x = data[i], y = t.data[i]
            if x.isNaN { #expect(y.isNaN) } else { #expect(y.bitPattern == (x < 0 ? Float(0) : x).bitPattern, "\(i): \(x) → \(y)") }
        }
    }

    @Test(arguments: [(4, 0, 4), (2, 0, 2), (3, 1, 2), (3, 1, 1)])
    func conv2dMatchesNaive(_ k: Int, _ pad: Int, _ stride: Int) {
        var rng = TestRNG(state: UInt64(k * 100 + pad * 10 + stride))
        let x = rng.tensor([13, 11, 5])
        let w = rng.tensor([7, 5, k, k])
        let b = (0..<7).map { _ in rng.next() }
        let got = Conv2d(weight: w, bias: b, stride: stride, padding: pad)(x, ctx)
        let want = naiveConv(x, w, b, stride: stride, pad: pad)
        #expect(got.shape == want.shape)
        #expect(maxAbsDiff(got.data, want.data) < 1e-5)
    }

    // 19 channels: the 16-wide tail path only; 147 = 2·64 + 16 + 3: every path of the kernel
    @Test(arguments: [(3, 19), (5, 19), (3, 147), (5, 147), (7, 35)])
    func depthwiseMatchesNaive(_ k: Int, _ c: Int) {
        var rng = TestRNG(state: UInt64(k * 1000 + c))
        let x = rng.tensor([9, 14, c])
        let w = rng.tensor([c, 1, k, k])
        let b = (0..<c).map { _ in rng.next() }
        let conv = DepthwiseConv2d(weight: w, bias: b)
        let want = naiveConv(x, w, b, stride: 1, pad: k / 2, groups: c)
        #expect(maxAbsDiff(conv(x, ctx).data, want.data) < 1e-5)
        let withResidual = conv(x, residual: true, ctx)
        #expect(maxAbsDiff(withResidual.data, zip(want.data, x.data).map { $0 + $1 }) < 1e-5)
    }

    // The pixel-blocked AVX-512 kernel against the one-pixel kernel: widths with and without a tail
    // of < 8 pixels, channels with a masked last slice, images smaller than the kernel, row ranges.
    @Test(arguments: [(3, 9, 14, 19), (5, 16, 16, 64), (5, 7, 21, 147), (7, 5, 3, 33), (3, 1, 1, 16), (5, 12, 8, 320)])
    func fastDepthwiseMatchesOnePixelKernel(_ k: Int, _ h: Int, _ w: Int, _ c: Int) {
        guard uf_depthwise_fast_supported(Int32(k)) != 0 else { print("no AVX-512: the blocked depthwise kernel is not used here"); return }
        var rng = TestRNG(state: UInt64(k * 7 + h * 131 + w * 17 + c))
        let x = rng.tensor([h, w, c]).data, wt = rng.tensor([k * k, c]).data, b = rng.tensor([c]).data
        for residual: Int32 in [0, 1] {
            for (y0, y1) in [(0, h), (h / 2, h)] {
                var want = [Float](repeating: -7, count: h * w * c), got = want
                uf_depthwise_rows(x, h, w, c, Int32(k), wt, b, residual, &want, y0, y1)
                uf_depthwise_rows_fast(x, h, w, c, Int32(k), wt, b, residual, &got, y0, y1)
                #expect(maxAbsDiff(got, want) < 1e-5, "k \(k) \(h)×\(w)×\(c) residual \(residual) rows \(y0)..<\(y1)")
            }
        }
    }

    @Test func linearFoldsMatchUnfolded() {
        var rng = TestRNG(state: 7)
        let x = rng.tensor([10, 6])
        let lin = Linear(weight: rng.tensor([4, 6]), bias: (0..<4).map { _ in rng.next() })
        let scale = (0..<6).map { _ in rng.next() + 1.5 }, shift = (0..<6).map { _ in rng.next() }
        let pre = Tensor(shape: x.shape, data: x.data.enumerated().map { $0.element * scale[$0.offset % 6] + shift[$0.offset % 6] })
        #expect(maxAbsDiff(lin.foldingInputAffine(scale: scale, shift: shift)(x, .bias, ctx).data, lin(pre, .bias, ctx).data) < 1e-5)
        let gamma = (0..<4).map { _ in rng.next() }
        let scaled = lin(x, .bias, ctx).data.enumerated().map { $0.element * gamma[$0.offset % 4] }
        #expect(maxAbsDiff(lin.scalingOutputs(by: gamma)(x, .bias, ctx).data, scaled) < 1e-5)
        // the fused bias + GELU epilogue against the plain product, bias and erf-form GELU
        let plain = lin(x, .bias, ctx).data.map { Float(0.5 * Double($0) * (1 + erf(Double($0) / 2.0.squareRoot()))) }
        #expect(maxAbsDiff(lin(x, .biasGELU, ctx).data, plain) < 1e-6)
        var acc = x.data.prefix(40).map { $0 }       // [10, 4] residual
        var residual = Tensor(shape: [10, 4], data: acc)
        lin.accumulate(x, into: &residual, ctx)
        acc = zip(acc, lin(x, .bias, ctx).data).map { $0 + $1 }
        #expect(maxAbsDiff(residual.data, acc) < 1e-5)
    }

    @Test(arguments: [(7, 33, Float(0)), (131, 320, Float(0)), (130, 17, Float(300))])
    func layerNormMatchesDefinition(_ rows: Int, _ c: Int, _ offset: Float) {
        // 130+ rows split across the two threads; an offset of 300 tests the centred (two-pass) variance
        var rng = TestRNG(state: UInt64(rows * c))
        let x = Tensor(shape: [rows, c], data: rng.tensor([rows, c]).data.map { $0 + offset })
        let w = (0..<c).map { _ in rng.next() }, b = (0..<c).map { _ in rng.next() }
        let got = LayerNorm(weight: w, bias: b, eps: 1e-6)(x, ctx)
        var want = [Float]()
        for r in 0..<rows {
            let row = x.data[(r * c)..<(r * c + c)].map(Double.init)
            let m = row.reduce(0, +) / Double(c)
            let v = row.map { ($0 - m) * ($0 - m) }.reduce(0, +) / Double(c)
            want += (0..<c).map { Float((row[$0] - m) / (v + 1e-6).squareRoot() * Double(w[$0]) + Double(b[$0])) }
        }
        #expect(maxAbsDiff(got.data, want) < (offset == 0 ? 1e-5 : 2e-4))
    }

    @Test func geluIsExactErfForm() {
        // torch.nn.functional.gelu(torch.tensor([-3., -1., -0.5, 0., 0.5, 1., 3.]))
        let want: [Float] = [-0.0040496, -0.1586553, -0.1542688, 0, 0.3457312, 0.8413447, 2.9959502]
        var got: [Float] = [-3, -1, -0.5, 0, 0.5, 1, 3]
        got.withUnsafeMutableBufferPointer { biasGELURows($0.baseAddress!, rows: 1, cols: 7, bias: nil) }
        #expect(maxAbsDiff(got, want) < 1e-6)
        // the vectorised polynomial form against libm's erf over a dense grid
        var grid = (0..<20001).map { Float($0 - 10000) / 1000 }      // −10 … 10
        let exact = grid.map { Float(0.5 * Double($0) * (1 + erf(Double($0) / 2.0.squareRoot()))) }
        grid.withUnsafeMutableBufferPointer { biasGELURows($0.baseAddress!, rows: 1, cols: 20001, bias: nil) }
        #expect(zip(grid, exact).allSatisfy { abs($0 - $1) <= 3e-7 * max(1, abs($1)) })
    }

    // The AVX-512 row softmax against the compiler-vectorised one and against Double arithmetic:
    // widths around the 16- and 32-lane steps and masked tails, a row with a huge spread (most
    // exps underflow to 0) and a row of equal scores.
    @Test func fastSoftmaxMatchesTwin() {
        guard PackedF32.available else { print("no AVX-512: the fast softmax is not used here"); return }
        var rng = TestRNG(state: 99)
        for cols in Array(1...70) + [196, 1025] {
            let rows = 3
            var p = rng.tensor([rows, cols]).data.map { $0 * 30 }
            p[cols..<(2 * cols)].withUnsafeMutableBufferPointer { r in for j in r.indices { r[j] = Float(j % 7) * 40 - 120 } }
            p[(2 * cols)...].withUnsafeMutableBufferPointer { r in for j in r.indices { r[j] = 2.5 } }
            var twin = p, fast = p
            var invTwin = [Float](repeating: 0, count: rows), invFast = invTwin
            uf_softmax_rows_unnormalized(&twin, rows, cols, &invTwin)
            uf_softmax_rows_unnormalized_fast(&fast, rows, cols, &invFast)
            for r in 0..<rows {
                let row = p[(r * cols)..<((r + 1) * cols)].map(Double.init), m = row.max()!
                let e = row.map { Foundation.exp($0 - m) }, sum = e.reduce(0, +)
                for j in 0..<cols {
                    let i = r * cols + j
                    #expect(abs(Double(fast[i] * invFast[r]) - e[j] / sum) < 1e-6, "cols \(cols) row \(r) col \(j)")
                    #expect(abs(fast[i] * invFast[r] - twin[i] * invTwin[r]) < 1e-6, "cols \(cols) row \(r) col \(j)")
                }
            }
        }
    }

    @Test(arguments: [(1, 8), (37, 2), (3000, 1)])
    func globalAttentionMatchesNaive(_ n: Int, _ heads: Int) {
        // n = 3000 spans three query blocks of the scores buffer (4 M floats / 3000 keys = 1398 rows).
        var rng = TestRNG(state: UInt64(n))
        let c = 16
        let qkv = rng.tensor([n, 3 * c])
        let shape = AttentionShape(channels: c, heads: heads, scale: 0.35)
        let got = globalAttention(qkv, shape: shape, ctx)
        let want = naiveAttention(qkv.data, n: n, c: c, heads: heads, scale: 0.35)
        #expect(maxAbsDiff(got.data, want) < 1e-5)
    }

    @Test(arguments: [(5, 7, 3), (6, 8, 3), (4, 4, 7), (9, 2, 2)])
    func windowAttentionMatchesNaivePadding(_ h: Int, _ w: Int, _ ws: Int) {
        // Upstream: pad the token map with zero tokens (whose QKV is the qkv bias), attend in each
        // window including the padding, crop. The oracle builds the padded map explicitly.
        var rng = TestRNG(state: UInt64(h * 100 + w * 10 + ws))
        let c = 8, heads = 2
        let qkv = rng.tensor([h * w, 3 * c])
        let bias = (0..<(3 * c)).map { _ in rng.next() }
        let shape = AttentionShape(channels: c, heads: heads, scale: 0.5)
        let got = windowAttention(qkv, height: h, width: w, window: ws, paddingRow: bias, shape: shape, ctx)
        let hp = (h + ws - 1) / ws * ws, wp = (w + ws - 1) / ws * ws
        var want = [Float](repeating: .nan, count: h * w * c)
        for wy in stride(from: 0, to: hp, by: ws) { for wx in stride(from: 0, to: wp, by: ws) {
            var win = [Float]()
            for y in wy..<(wy + ws) { for x in wx..<(wx + ws) {
                win += (y < h && x < w) ? Array(qkv.data[((y * w + x) * 3 * c)..<((y * w + x + 1) * 3 * c)]) : bias
            } }
            let o = naiveAttention(win, n: ws * ws, c: c, heads: heads, scale: 0.5)
            for y in wy..<(wy + ws) { for x in wx..<(wx + ws) where y < h && x < w {
                let t = (y - wy) * ws + (x - wx)
                for j in 0..<c { want[(y * w + x) * c + j] = o[t * c + j] }
            } }
        } }
        #expect(maxAbsDiff(got.data, want) < 1e-5)
    }

    @Test(arguments: [(1, 1, 1), (3, 5, 7), (17, 16, 33), (67, 71, 29), (128, 128, 64)])
    func layoutChangesMatchIndexing(_ h: Int, _ w: Int, _ c: Int) {
        // (67, 71, 29) and (128, 128, 64) are above the 64 K floats where the tiles split across threads
        var rng = TestRNG(state: UInt64(h * 1000 + w * 10 + c))
        let hwc = rng.tensor([h, w, c])
        let nchw = hwcToNCHW(hwc, ctx)
        #expect(nchw.shape == [1, c, h, w])
        var want = [Float](repeating: .nan, count: h * w * c)
        for y in 0..<h { for x in 0..<w { for ch in 0..<c { want[(ch * h + y) * w + x] = hwc.data[(y * w + x) * c + ch] } } }
        #expect(nchw.data == want)
        #expect(hwcToNCHW(hwc).data == want)                 // without a context: one thread
        let back = nchwToHWC(nchw, ctx)
        #expect(back.shape == [h, w, c] && back.data == hwc.data)
    }
}

/// The packed-operand fp32 kernel (attention's products) against a naive double loop, odd shapes,
/// strided and scaled B, bias, accumulation and GELU in the store (with and without K slices),
/// C's columns beyond n untouched.
@Suite struct PackedSgemm {
    /// Packing reads B(kk, j) = b[kk·rs + j·cs] three ways (rows contiguous, columns contiguous
    /// through 16×16 register transposes, any strides element by element): all must give the same
    /// panels, checked exactly through the unpacking inverse.
    /// The GELU the packed kernel applies in its store (vmath.h: reciprocal by Newton step, exp by
    /// vscalefps) against libm's erf over a dense grid, as geluIsExactErfForm checks the scalar form:
    /// C = A · [1] with A one column of inputs.
    @Test func geluInTheStoreIsExactErfForm() {
        guard PackedF32.available else { print("no AVX-512: the packed kernel is not used here"); return }
        var x = (0..<20001).map { Float($0 - 10000) / 1000 }      // −10 … 10
        x += [-100, 100, -Float.greatestFiniteMagnitude, .infinity, .nan]
        let one: [Float] = [1]
        let unit = one.withUnsafeBufferPointer { PackedF32($0.baseAddress!, rowStride: 1, colStride: 1, k: 1, n: 1) }
        var y = [Float](repeating: 0, count: x.count)
        var scratch = [Float](repeating: 0, count: PackedF32.scratchFloats(1))
        x.withUnsafeBufferPointer { xp in y.withUnsafeMutableBufferPointer { yp in scratch.withUnsafeMutableBufferPointer { sp in
            gemmPacked(m: x.count, a: xp.baseAddress!, lda: 1, b: unit, c: yp.baseAddress!, ldc: 1, gelu: true, scratch: sp.baseAddress!)
        } } }
        for (xi, yi) in zip(x.prefix(20003), y) {
            let want = 0.5 * Double(xi) * (1 + erf(Double(xi) / 2.0.squareRoot()))
            #expect(abs(Double(yi) - want) <= 3e-7 * max(1, abs(want)), "gelu(\(xi)) = \(yi), want \(want)")
        }
        #expect(y[20003] == 0 && y[20004] == .infinity && y[20005].isNaN)   // −3.4e38 → −0; ∞ → ∞; NaN → NaN
    }

    @Test(arguments: [(1, 1), (7, 33), (16, 32), (17, 50), (64, 196), (100, 13), (35, 64)])
    func packingLayoutsAgree(_ k: Int, _ n: Int) {
        guard PackedF32.available else { print("no AVX-512: the packed kernel is not used here"); return }
        var rng = TestRNG(state: UInt64(k * 1009 + n))
        let values = (0..<(k * n)).map { _ in rng.next() }                 // B(kk, j) = values[kk·n + j]
        let want = (0..<n).flatMap { j in (0..<k).map { kk in values[kk * n + j] * 0.5 } }   // [n, k]
        for (rs, cs) in [(n + 3, 1), (1, k + 2), (2, 2 * k + 5)] {
            var b = [Float](repeating: .nan, count: (k - 1) * rs + (n - 1) * cs + 1)
            for kk in 0..<k { for j in 0..<n { b[kk * rs + j * cs] = values[kk * n + j] } }
            let packed = b.withUnsafeBufferPointer { PackedF32($0.baseAddress!, rowStride: rs, colStride: cs, k: k, n: n, scale: 0.5) }
            #expect(packed.unpackedLinearWeight().data == want, "k \(k) n \(n) strides \(rs), \(cs)")
        }
    }

    @Test(arguments: [(1, 1, 1), (11, 33, 7), (12, 32, 64), (25, 70, 100), (130, 64, 257), (37, 1000, 64), (30, 45, 1000), (200, 40, 769), (5, 17, 9), (52, 33, 40), (29, 70, 5000), (13, 40, 12544), (300, 37, 4999)])
    func matchesNaiveTwin(_ m: Int, _ n: Int, _ k: Int) throws {
        guard PackedF32.available else { print("no AVX-512: the packed kernel is not used here"); return }
        var rng = TestRNG(state: UInt64(m * 7919 + n * 31 + k))
        let lda = k + 2, ldb = k + 5, ldc = n + 3
        let a = (0..<(m * lda)).map { _ in rng.next() }
        let bt = (0..<(n * ldb)).map { _ in rng.next() }           // Bᵀ rows: B(kk, j) = bt[j·ldb + kk]
        let bias = (0..<n).map { _ in rng.next() }
        let start = (0..<(m * ldc)).map { _ in rng.next() }
        let packed = bt.withUnsafeBufferPointer { PackedF32($0.baseAddress!, rowStride: 1, colStride: ldb, k: k, n: n, scale: 0.25) }
        var scratch = [Float](repeating: 0, count: PackedF32.scratchFloats(k))
        for (accumulate, gelu) in [(false, false), (true, false), (false, true), (true, true)] {
            var c = start
            a.withUnsafeBufferPointer { ap in bias.withUnsafeBufferPointer { bp in c.withUnsafeMutableBufferPointer { cp in
                scratch.withUnsafeMutableBufferPointer { sp in
                    gemmPacked(m: m, a: ap.baseAddress!, lda: lda, b: packed, c: cp.baseAddress!, ldc: ldc,
                               bias: bp.baseAddress, accumulate: accumulate, gelu: gelu, scratch: sp.baseAddress!)
                }
            } } }
            for i in 0..<m { for j in 0..<ldc {
                if j >= n { #expect(c[i * ldc + j] == start[i * ldc + j]); continue }
                var want = Double(bias[j]) + (accumulate ? Double(start[i * ldc + j]) : 0)
                for t in 0..<k { want += Double(a[i * lda + t]) * Double(bt[j * ldb + t] * 0.25) }
                if gelu { want = 0.5 * want * (1 + erf(want / 2.0.squareRoot())) }   // GELU's slope is ≤ 1.13
                #expect(abs(Double(c[i * ldc + j]) - want) <= 1.2e-5 * (1 + Double(k).squareRoot()), "(\(i), \(j)) acc \(accumulate) gelu \(gelu)")
            } }
        }
    }
}
