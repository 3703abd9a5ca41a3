// `--precision bf16`: the bf16 kernels (AMX and AVX512-BF16, whichever this CPU has) against a
// naive double-precision product of the same bf16-rounded inputs, on odd shapes; then whole layers
// and the backbone fixtures in bf16 against the fp32 reference, with the accuracy cost bounded.
// On a CPU with neither kernel the kernel tests have nothing to run and say so.

import CKernels
import Imaging
import Foundation
import TensorCore
import Testing
import UniFormer
import Weights

/// The bf16 kernels this machine can run (AMX implies AVX512-BF16 here).
private let kernels: [BF16Kernel] = {
    var k: [BF16Kernel] = []
    if uf_gemm_bf16_supported() != 0 { k.append(.avx512) }
    if uf_gemm_amx_supported() != 0 { k.append(.amx) }
    return k
}()

@Suite struct BF16Kernels {
    @Test func roundingIsToNearestEven() {
        #expect(uf_bf16_round(1.0) == 1.0)
        #expect(uf_bf16_round(1.0 + 1.0 / 256) == 1.0)                 // tie → even (1.0)
        #expect(uf_bf16_round(1.0 + 3.0 / 256) == 1.0 + 4.0 / 256)     // tie → even (…+2⁻⁶)
        #expect(uf_bf16_round(1.0 + 1.0 / 256 + 1.0 / 4096) == 1.0 + 1.0 / 128)
        #expect(uf_bf16_round(-3.14159) == -3.140625)
    }

    @Test(arguments: [(1, 1, 1), (13, 31, 5), (37, 33, 64), (100, 70, 100), (12, 64, 32), (45, 96, 333), (33, 32, 31)])
    func productMatchesNaiveTwinOnBF16Inputs(_ m: Int, _ n: Int, _ k: Int) throws {
        guard !kernels.isEmpty else { print("no bf16 kernel on this CPU: nothing to test"); return }
        var rng = TestRNG(state: UInt64(m * 1000 + n * 10 + k))
        let lda = k + 3, ldc = n + 5
        let a = (0..<(m * lda)).map { _ in rng.next() * 4 }
        let w = rng.tensor([n, k])            // Linear weight [out, in]
        let bias = (0..<n).map { _ in rng.next() }
        let start = (0..<(m * ldc)).map { _ in rng.next() }
        let packed = PackedBF16.linearWeight(w)
        for kernel in kernels {
            for accumulate in [false, true] {
                var c = start
                a.withUnsafeBufferPointer { ap in bias.withUnsafeBufferPointer { bp in c.withUnsafeMutableBufferPointer { cp in
                    gemmBF16(m: m, a: ap.baseAddress!, lda: lda, b: packed, c: cp.baseAddress!, ldc: ldc,
                             bias: bp.baseAddress, accumulate: accumulate, kernel: kernel)
                } } }
                for i in 0..<m {
                    for j in 0..<ldc {
                        if j >= n { #expect(c[i * ldc + j] == start[i * ldc + j], "wrote outside C"); continue }
                        var want = Double(bias[j]) + (accumulate ? Double(start[i * ldc + j]) : 0), scale = abs(want)
                        for t in 0..<k {
                            let p = Double(uf_bf16_round(a[i * lda + t])) * Double(uf_bf16_round(w.data[j * k + t]))
                            want += p; scale += abs(p)
                        }
                        #expect(abs(Double(c[i * ldc + j]) - want) <= 1e-6 * scale + 1e-6,
                                "\(kernel) m\(m) n\(n) k\(k) (\(i), \(j)): \(c[i * ldc + j]) vs \(want)")
                    }
                }
            }
        }
    }

    @Test func packingScalesAndReadsStridedOperands() throws {
        guard let kernel = kernels.first else { return }
        // B given as its transpose with a row stride (attention's K), scaled by 0.5
        var rng = TestRNG(state: 7)
        let (m, n, k, ld) = (5, 40, 19, 23)
        let kt = (0..<(n * ld)).map { _ in rng.next() }      // rows = the n columns of B, k used of ld
        let a = (0..<(m * k)).map { _ in rng.next() }
        let packed = kt.withUnsafeBufferPointer { PackedBF16($0.baseAddress!, rowStride: 1, colStride: ld, k: k, n: n, scale: 0.5) }
        var c = [Float](repeating: 0, count: m * n)
        a.withUnsafeBufferPointer { ap in c.withUnsafeMutableBufferPointer { cp in
            gemmBF16(m: m, a: ap.baseAddress!, lda: k, b: packed, c: cp.baseAddress!, ldc: n, kernel: kernel)
        } }
        for i in 0..<m { for j in 0..<n {
            var want = 0.0
            for t in 0..<k { want += Double(uf_bf16_round(a[i * k + t])) * Double(uf_bf16_round(kt[j * ld + t] * 0.5)) }
            #expect(abs(Double(c[i * n + j]) - want) <= 1e-5, "(\(i), \(j))")
        } }
    }
}

@Suite struct BF16Layers {
    let bf16 = ComputeContext(threads: 2, precision: .bf16)
    let fp32 = ComputeContext(threads: 2)

    @Test func linearAndAttentionStayWithinBF16ErrorOfFP32() throws {
        guard bf16.precision == .bf16 else { print("bf16 falls back to fp32 here"); return }
        var rng = TestRNG(state: 11)
        let x = rng.tensor([77, 96]), lin = Linear(weight: rng.tensor([130, 96]), bias: (0..<130).map { _ in rng.next() })
        for epilogue in [Linear.Epilogue.bias, .biasGELU] {
            let got = lin(x, epilogue, bf16), want = lin(x, epilogue, fp32)
            let cmp = Comparison(got, want)
            // bf16 keeps 8 significant bits: relative input error 2⁻⁹, summed over 96 random-sign terms
            #expect(cmp.maxAbs <= 0.03 * cmp.refStd && cmp.nmse < 1e-4, "\(epilogue): \(cmp)")
        }
        var residual = rng.tensor([77, 130]), residual32 = residual
        lin.accumulate(x, into: &residual, bf16)
        lin.accumulate(x, into: &residual32, fp32)
        #expect(Comparison(residual, residual32).nmse < 1e-4)

        let shape = AttentionShape(channels: 64, heads: 2, scale: 0.125)
        let qkv = rng.tensor([150, 192])
        let a = globalAttention(qkv, shape: shape, bf16), b = globalAttention(qkv, shape: shape, fp32)
        #expect(Comparison(a, b).nmse < 1e-4, "global attention: \(Comparison(a, b))")
        let pad = (0..<192).map { _ in rng.next() }
        let wa = windowAttention(qkv, height: 10, width: 15, window: 4, paddingRow: pad, shape: shape, bf16)
        let wb = windowAttention(qkv, height: 10, width: 15, window: 4, paddingRow: pad, shape: shape, fp32)
        #expect(Comparison(wa, wb).nmse < 1e-4, "window attention: \(Comparison(wa, wb))")
    }

    /// The accuracy cost on the backbone fixtures (global, windows, hybrid): each level against the
    /// PyTorch fp32 reference. Printed for BENCHMARKS.md; bounded so a broken kernel fails.
    @Test(arguments: ["global", "windows_pad", "hybrid"])
    func backboneFixturesInBF16(_ name: String) throws {
        guard bf16.precision == .bf16 else { return }
        let dir = Fixtures.root.appendingPathComponent("backbone").appendingPathComponent(name)
        let model = try FeatureExtractor(model: dir.appendingPathComponent("config.json").path,
                                         weights: dir.appendingPathComponent("weights.pth"), threads: 2, precision: .bf16)
        #expect(model.context.precision == .bf16)
        let io = try StateDict(contentsOf: dir.appendingPathComponent("io.safetensors"))
        let levels = model.features(try #require(io.tensors["input"]).tensor(), attention: try fixtureOverride(dir))
        for (i, got) in levels.enumerated() {
            let cmp = Comparison(got, try #require(io.tensors["stage\(i + 1)"]).tensor())
            print("bf16 \(name) stage\(i + 1): \(cmp)")
            #expect(cmp.nmse < 1e-3, "\(name) stage\(i + 1): \(cmp)")
        }
    }
}

/// The accuracy cost on the task fixtures, printed for BENCHMARKS.md and bounded: segmentation
/// label agreement with mmseg's fp32 labels; detections of mmdet's fp32 run found again in bf16
/// (same class, box IoU ≥ 0.9, score within 0.05).
@Suite struct BF16Tasks {
    @Test(arguments: ["upernet_global", "upernet_hybrid", "fpn_hybrid"])
    func segmentationLabelsInBF16(_ name: String) throws {
        let dir = Fixtures.root.appendingPathComponent("segmentation").appendingPathComponent(name)
        let model = try Segmenter(model: dir.appendingPathComponent("config.json").path,
                                  weights: dir.appendingPathComponent("weights.pth"), threads: 2, precision: .bf16)
        guard model.context.precision == .bf16 else { return }
        let io = try StateDict(contentsOf: dir.appendingPathComponent("io.safetensors"))
        let result = try model.segment(try loadImage(contentsOf: dir.appendingPathComponent("image.png")), attention: try fixtureOverride(dir))
        let want = try #require(io.tensors["labels"]).tensor().data.map { UInt8($0) }
        let agreement = Double(zip(result.labels, want).filter { $0 == $1 }.count) / Double(want.count)
        print("bf16 \(name): label agreement \(agreement)")
        #expect(agreement >= 0.97, "\(name): \(agreement)")
    }

    @Test(arguments: ["mask_rcnn_global", "mask_rcnn_hybrid", "cascade_mask_rcnn", "retinanet"])
    func detectionsInBF16(_ name: String) throws {
        let dir = Fixtures.root.appendingPathComponent("detection").appendingPathComponent(name)
        let model = try ObjectDetector(model: dir.appendingPathComponent("config.json").path, threads: 2, precision: .bf16)
        guard model.context.precision == .bf16 else { return }
        let io = try StateDict(contentsOf: dir.appendingPathComponent("io.safetensors"))
        let dets = try model.detect(try loadImage(contentsOf: dir.appendingPathComponent("image.png")), attention: try fixtureOverride(dir))
        let want = scoredRows(try #require(io.tensors["det_bboxes"]).tensor())
        let labels = try #require(io.tensors["det_labels"]).tensor().data.map { Int($0) }
        let found = want.indices.filter { i in
            dets.contains { $0.label == labels[i] && boxIoU($0.box, want[i].0) >= 0.9 && abs($0.score - want[i].1) <= 0.05 }
        }.count
        let rate = want.isEmpty ? 1 : Double(found) / Double(want.count)
        print("bf16 \(name): \(found) of \(want.count) detections found again (\(dets.count) in bf16)")
        #expect(rate >= 0.75, "\(name): \(found) of \(want.count)")
    }
}
