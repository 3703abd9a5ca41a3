// Winograd F(m×m, 3×3) (TensorCore/Winograd.swift) against the naive convolution of
// TensorCoreTests.swift on odd shapes, and against the im2col path on a larger case.
//
// Two opt-in reports print the numbers behind BENCHMARKS.md § Winograd:
//   UF_WINOGRAD_ACCURACY=1 swift test -c release --filter WinogradTests/accuracyReport
//   UF_WINOGRAD_SPEED=1    swift test -c release --filter WinogradTests/speedReport
// (UF_WINOGRAD_SPEED may name one case, e.g. `fpn_bottleneck`, UF_WINOGRAD_ALGO a list of algorithms,
// e.g. `im2col,F4`, to time it alone under `perf stat`, and UF_WINOGRAD_THREADS the threads.)

import Foundation
import TensorCore
import Testing

private let transforms: [WinogradTransform] = [.f2, .f3, .f4Lavin, .f4, .f6]
/// F(4×4) on points without the ± pairs: α = 6 through the generic transforms (f4 and f4Lavin take
/// the halved symmetric ones).
private let f4Asymmetric = WinogradTransform(points: [0, 1, -1, 2, 0.5])

/// OIHW weight of a 3×3 conv, N(0, 2/(9·cin)) as kaiming_normal_ (fan_in, gain √2).
private func kaimingWeight(_ o: Int, _ c: Int, _ rng: inout GaussianRNG) -> Tensor {
    let std = (2.0 / Double(9 * c)).squareRoot()
    return Tensor(shape: [o, c, 3, 3], data: (0..<o * c * 9).map { _ in Float(rng.next() * std) })
}

/// Box–Muller normal deviates from a SplitMix64 stream.
private struct GaussianRNG {
    var state: UInt64
    var spare: Double?
    mutating func uniform() -> Double {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return (Double((z ^ (z >> 31)) >> 11) + 0.5) / Double(1 << 53)
    }
    mutating func next() -> Double {
        if let s = spare { spare = nil; return s }
        let r = (-2 * log(uniform())).squareRoot(), t = 2 * Double.pi * uniform()
        spare = r * sin(t)
        return r * cos(t)
    }
    mutating func tensor(_ shape: [Int]) -> Tensor {
        Tensor(shape: shape, data: (0..<shape.reduce(1, *)).map { _ in Float(next()) })
    }
}

/// The 3×3, stride-1, padding-1 convolution in double, channel runs innermost (the accuracy oracle
/// for thousands of channels, where `naiveConv` would be slow).
private func conv3x3Double(_ x: Tensor, _ w: Tensor, _ b: [Float]) -> [Double] {
    let (h, wd, c, o) = (x.shape[0], x.shape[1], x.shape[2], w.shape[0])
    var wt = [Double](repeating: 0, count: o * 9 * c)                    // [O, ky, kx, C]
    for oc in 0..<o { for ci in 0..<c { for k in 0..<9 { wt[(oc * 9 + k) * c + ci] = Double(w.data[(oc * c + ci) * 9 + k]) } } }
    let xd = x.data.map(Double.init)
    var out = [Double](repeating: 0, count: h * wd * o)
    xd.withUnsafeBufferPointer { xp in wt.withUnsafeBufferPointer { wp in
        for oy in 0..<h { for ox in 0..<wd { for oc in 0..<o {
            var acc = Double(b[oc])
            for ky in 0..<3 { for kx in 0..<3 {
                let iy = oy + ky - 1, ix = ox + kx - 1
                if iy < 0 || iy >= h || ix < 0 || ix >= wd { continue }
                let xr = xp.baseAddress! + (iy * wd + ix) * c, wr = wp.baseAddress! + (oc * 9 + ky * 3 + kx) * c
                for ci in 0..<c { acc += xr[ci] * wr[ci] }
            } }
            out[(oy * wd + ox) * o + oc] = acc
        } } }
    } }
    return out
}

/// CPU time of the whole process (all threads), in ms: less sensitive than wall time to other
/// processes on a shared machine.
private func processCPUms() -> Double {
    var t = timespec()
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t)
    return Double(t.tv_sec) * 1e3 + Double(t.tv_nsec) / 1e6
}

private func std(_ v: [Double]) -> Double {
    let mean = v.reduce(0, +) / Double(v.count)
    return (v.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(v.count)).squareRoot()
}

@Suite struct WinogradTests {
    let ctx = ComputeContext(threads: 2)

    @Test func symmetricKernelsOnlyForPairedPoints() {
        #expect(WinogradTransform.f4.symmetric6 && WinogradTransform.f4Lavin.symmetric6)
        #expect(![WinogradTransform.f2, .f3, .f6, f4Asymmetric].contains { $0.symmetric6 })
    }

    @Test(arguments: transforms + [f4Asymmetric], [(13, 11, 5, 7), (1, 1, 5, 7), (2, 7, 3, 4), (8, 8, 16, 3), (6, 9, 17, 33)])
    func matchesNaive(_ tr: WinogradTransform, _ shape: (Int, Int, Int, Int)) {
        let (h, w, c, o) = shape
        var rng = TestRNG(state: UInt64(h * 1000 + w * 100 + c * 10 + o))
        let x = rng.tensor([h, w, c]), weight = rng.tensor([o, c, 3, 3])
        let b = (0..<o).map { _ in rng.next() }
        let want = naiveConv(x, weight, b, stride: 1, pad: 1)
        let conv = Conv2d(weight: weight, bias: b, stride: 1, padding: 1, algorithm: .winograd(tr))
        let got = conv(x, ctx)
        #expect(got.shape == want.shape)
        let err = maxAbsDiff(got.data, want.data)
        #expect(err < 1e-5 * Float(c * 9), "\(tr) \(shape): max |Δ| \(err); \(got.data.prefix(6)) vs \(want.data.prefix(6))")
        // no bias
        let plain = Conv2d(weight: weight, bias: nil, stride: 1, padding: 1, algorithm: .winograd(tr))(x, ctx)
        let wantPlain = naiveConv(x, weight, [Float](repeating: 0, count: o), stride: 1, pad: 1)
        #expect(maxAbsDiff(plain.data, wantPlain.data) < 1e-5 * Float(c * 9))
    }

    /// More tiles than one band holds (F(4×4): 18 × 17 tiles against at most 256 per band).
    @Test func severalBands() {
        var rng = TestRNG(state: 9)
        let x = rng.tensor([70, 66, 4]), weight = rng.tensor([5, 4, 3, 3])
        let b = (0..<5).map { _ in rng.next() }
        let got = Conv2d(weight: weight, bias: b, stride: 1, padding: 1, algorithm: .winograd(.f4))(x, ctx)
        let want = naiveConv(x, weight, b, stride: 1, pad: 1)
        #expect(maxAbsDiff(got.data, want.data) < 1e-4, "max |Δ| \(maxAbsDiff(got.data, want.data))")
    }

    @Test func routingAndFolding() {
        var rng = TestRNG(state: 3)
        let weight = rng.tensor([6, 4, 3, 3]), b = (0..<6).map { _ in rng.next() }
        #expect(Conv2d(weight: weight, bias: b, stride: 1, padding: 1).algorithm == .winograd(.default))
        #expect(Conv2d(weight: weight, bias: b, stride: 2, padding: 1).algorithm == .im2col)
        #expect(Conv2d(weight: weight, bias: b, stride: 1, padding: 0).algorithm == .im2col)
        #expect(Conv2d(weight: rng.tensor([6, 4, 1, 1]), bias: b, stride: 1, padding: 1).algorithm == .im2col)
        // BatchNorm folded into U equals folding into the weight before im2col.
        let affine = ChannelAffine(scale: (0..<6).map { _ in rng.next() + 1.5 }, shift: (0..<6).map { _ in rng.next() })
        let x = rng.tensor([9, 10, 4])
        let wino = Conv2d(weight: weight, bias: b, stride: 1, padding: 1).foldingOutputAffine(affine)(x, ctx)
        let ref = Conv2d(weight: weight, bias: b, stride: 1, padding: 1, algorithm: .im2col).foldingOutputAffine(affine)(x, ctx)
        #expect(maxAbsDiff(wino.data, ref.data) < 1e-5)
    }

    /// The default transform against im2col on a shape with Gaussian data and many channels.
    @Test func matchesIm2colLarger() {
        var rng = GaussianRNG(state: 11)
        let (h, w, c, o) = (23, 30, 64, 48)
        let x = rng.tensor([h, w, c]), weight = kaimingWeight(o, c, &rng)
        let b = (0..<o).map { _ in Float(rng.next()) }
        let ref = Conv2d(weight: weight, bias: b, stride: 1, padding: 1, algorithm: .im2col)(x, ctx)
        let got = Conv2d(weight: weight, bias: b, stride: 1, padding: 1)(x, ctx)
        let s = std(ref.data.map(Double.init))
        #expect(Double(maxAbsDiff(got.data, ref.data)) < 1e-5 * s, "max |Δ| \(maxAbsDiff(got.data, ref.data)), std \(s)")
    }

    /// Max |error| / std of the output for each transform and for im2col, against the double oracle:
    /// N(0, 1) input, kaiming-normal weights, no bias, 24×22 map (edge tiles for m = 3, 4, 6) → 64.
    /// Then each transform against im2col at fpn_bottleneck's full shape (128², 2048 → 512).
    @Test(.enabled(if: ProcessInfo.processInfo.environment["UF_WINOGRAD_ACCURACY"] != nil))
    func accuracyReport() {
        func line(_ c: Int, _ name: String, _ got: [Float], _ ref: [Double], _ s: Double) -> String {
            let d = zip(got, ref).map { abs(Double($0) - $1) }
            let rms = (d.reduce(0) { $0 + $1 * $1 } / Double(d.count)).squareRoot()
            return String(format: "Cin %4d  %-42@ max|Δ|/std %.2e  rms/std %.2e", c, name as NSString, d.max()! / s, rms / s)
        }
        for c in [512, 2048, 2560] {
            var rng = GaussianRNG(state: UInt64(c))
            let (h, w, o) = (24, 22, 64)
            let x = rng.tensor([h, w, c]), weight = kaimingWeight(o, c, &rng)
            let zero = [Float](repeating: 0, count: o)
            let exact = conv3x3Double(x, weight, zero)
            let s = std(exact)
            print(line(c, "im2col", Conv2d(weight: weight, bias: nil, stride: 1, padding: 1, algorithm: .im2col)(x, ctx).data, exact, s))
            for tr in transforms {
                print(line(c, tr.description, Conv2d(weight: weight, bias: nil, stride: 1, padding: 1, algorithm: .winograd(tr))(x, ctx).data, exact, s))
            }
        }
        var rng = GaussianRNG(state: 1)
        let x = rng.tensor([128, 128, 2048]), weight = kaimingWeight(512, 2048, &rng)
        let ref = Conv2d(weight: weight, bias: nil, stride: 1, padding: 1, algorithm: .im2col)(x, ctx).data.map(Double.init)
        let s = std(ref)
        for tr in transforms {
            let got = Conv2d(weight: weight, bias: nil, stride: 1, padding: 1, algorithm: .winograd(tr))(x, ctx).data
            print(line(2048, tr.description + " vs im2col, 128²→512", got, ref, s))
        }
    }

    /// Milliseconds (median of 5 after a warm-up) of UPerHead's 3×3 convs at 512² input, im2col
    /// against each transform.
    @Test(.enabled(if: ProcessInfo.processInfo.environment["UF_WINOGRAD_SPEED"] != nil))
    func speedReport() {
        let env = ProcessInfo.processInfo.environment
        let ctx = ComputeContext(threads: env["UF_WINOGRAD_THREADS"].flatMap { Int($0) } ?? 2)
        let cases: [(String, Int, Int, Int)] = [("fpn_bottleneck", 128, 2048, 512), ("fpn_convs.0", 128, 512, 512),
                                                ("fpn_convs.1", 64, 512, 512), ("fpn_convs.2", 32, 512, 512),
                                                ("bottleneck", 16, 2560, 512), ("fpn_det", 200, 256, 256),
                                                ("mask_head", 14, 256, 256), ("small", 64, 32, 32)]
        let algos: [(String, ConvAlgorithm)] = [("im2col", .im2col)] + transforms.map { ($0 == .f4Lavin ? "F4Lavin" : "F\($0.m)", .winograd($0)) }
        for (name, size, c, o) in cases where env["UF_WINOGRAD_SPEED"] == "1" || env["UF_WINOGRAD_SPEED"] == name {
            var rng = GaussianRNG(state: 5)
            let x = rng.tensor([size, size, c]), weight = kaimingWeight(o, c, &rng)
            let gflop = 2.0 * Double(size * size * o * c * 9) / 1e9
            var line = String(format: "%-15@ %3d² %4d→%d %6.1f GFLOP:", name as NSString, size, c, o, gflop)
            for (algoName, algo) in algos where env["UF_WINOGRAD_ALGO"].map({ $0.split(separator: ",").contains(Substring(algoName)) }) ?? true {
                let conv = Conv2d(weight: weight, bias: nil, stride: 1, padding: 1, algorithm: algo)
                _ = conv(x, ctx)
                var times: [Double] = [], cpu: [Double] = []
                for _ in 0..<5 {
                    let t0 = DispatchTime.now().uptimeNanoseconds, c0 = processCPUms()
                    _ = conv(x, ctx)
                    times.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6)
                    cpu.append(processCPUms() - c0)
                }
                let ms = times.sorted()[2]
                line += String(format: "  %@ %.1f ms (%.0f GFLOPS, CPU %.0f ms)", algoName as NSString, ms, gflop / ms * 1e3, cpu.sorted()[2])
            }
            print(line)
        }
    }
}
