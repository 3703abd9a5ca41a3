//! Dense 2-D convolution on channels-last activations: im2col + one GEMM.
//!
//! Input [H, W, C] (batch 1, NHWC), output [Ho, Wo, O], Ho = ⌊(H + 2p − k)/s⌋ + 1 (PyTorch floors,
//! so a stride = kernel patch embedding drops an odd last row/column). The checkpoint's OIHW weight
//! is repacked once at load to [O, kh, kw, C] so that each im2col row gathers contiguous channel
//! runs; for stride = kernel and no padding a whole kernel row is one contiguous run of k·C floats.
//! 3×3 convolutions with stride 1 and padding 1 go to Winograd (Winograd.swift) by default; the
//! im2col path stays the general one and the reference that Winograd is tested against.

import CKernels
import Foundation

/// How a `Conv2d` computes: the same function either way, up to float rounding.
public enum ConvAlgorithm: Sendable, Equatable {
    /// im2col in bands + one sgemm per band: any kernel, stride and padding.
    case im2col
    /// Winograd with the given transform: 3×3, stride 1, padding 1 only.
    case winograd(WinogradTransform)
}

public struct Conv2d: Sendable {
    public let outChannels: Int
    public let inChannels: Int
    public let kernel: Int
    public let stride: Int
    public let padding: Int
    public let algorithm: ConvAlgorithm
    /// im2col: [O, kh, kw, C] (repacked from OIHW); Winograd: U = G g Gᵀ [α², O, C], or — when
    /// `panels` — each U[p] in the fp32 kernel's panel layout (CKernels/sgemm_packed.c), so the
    /// products read it as is instead of sgemm re-packing it per call. Only the form the algorithm
    /// reads is kept (U is 4× the weight for F(4×4)).
    let packed: [Float]
    /// Winograd's U[p] are stored as panels for uf_sgemm_packed (AVX-512 CPUs).
    let panels: Bool
    public let bias: [Float]?
    /// `packed` for the bf16 kernels (im2col: one [O, k·k·C] matrix; Winograd: one per position),
    /// made on the first bf16 call.
    let bf16Weights = PackedCache<[PackedBF16]>()
    /// im2col's [O, k·k·C] in the fp32 kernel's panels (AVX-512 CPUs), made on the first call: the
    /// patch embeddings' products then read their weights as they are instead of OpenBLAS packing
    /// them again on every call (2.6 MB for UniFormer-S's last one, for 49 output tokens at 224²).
    let f32Panels = PackedCache<PackedF32>()

    /// weight: OIHW as in the checkpoint. `algorithm` nil picks Winograd (`WinogradTransform.default`)
    /// for 3×3, stride 1, padding 1, else im2col.
    public init(weight: Tensor, bias: [Float]?, stride: Int, padding: Int, algorithm: ConvAlgorithm? = nil) {
        precondition(weight.rank == 4 && weight.shape[2] == weight.shape[3], "Conv2d: weight \(weight.shape)")
        let (o, c, k) = (weight.shape[0], weight.shape[1], weight.shape[2])
        outChannels = o; inChannels = c; kernel = k
        self.stride = stride; self.padding = padding; self.bias = bias
        var p = [Float](repeating: 0, count: weight.count)
        for oo in 0..<o { for cc in 0..<c { for ky in 0..<k { for kx in 0..<k {
            p[((oo * k + ky) * k + kx) * c + cc] = weight.data[((oo * c + cc) * k + ky) * k + kx]
        } } } }
        let winogradShape = k == 3 && stride == 1 && padding == 1
        self.algorithm = algorithm ?? (winogradShape ? .winograd(.default) : .im2col)
        switch self.algorithm {
        case .im2col: packed = p; panels = false
        case let .winograd(tr):
            precondition(winogradShape, "Conv2d: Winograd needs 3×3, stride 1, padding 1, got k \(k) s \(stride) p \(padding)")
            let u = tr.transformWeights(p, outChannels: o, inChannels: c)
            panels = Conv2d.packedKernel
            packed = panels ? packPanels(u, positions: tr.alpha * tr.alpha, n: o, k: c) : u
        }
    }

    /// The same convolution followed by a per-output-channel affine (a BatchNorm after the conv).
    /// Winograd's U is linear in the weight per output channel (G (s·g) Gᵀ = s · G g Gᵀ), so scaling
    /// its output-channel rows is the same as transforming the folded weight.
    public func foldingOutputAffine(_ a: ChannelAffine) -> Conv2d {
        let per = kernel * kernel * inChannels
        var p = packed
        var b = bias ?? [Float](repeating: 0, count: outChannels)
        switch algorithm {
        case .im2col:
            for o in 0..<outChannels { for j in 0..<per { p[o * per + j] *= a.scale[o] } }
        case .winograd where panels:
            let c = inChannels, per = uf_sgemm_packed_floats(outChannels, c), nr = packedPanelColumns
            for q in 0..<(p.count / per) { for o in 0..<outChannels {          // U[q] panels [O/32][C][32]
                let first = q * per + (o / nr) * c * nr + o % nr
                for j in 0..<c { p[first + j * nr] *= a.scale[o] }
            } }
        case .winograd:
            let c = inChannels, positions = p.count / (outChannels * c)     // U [α², O, C]
            for q in 0..<positions { for o in 0..<outChannels {
                let row = (q * outChannels + o) * c
                for j in 0..<c { p[row + j] *= a.scale[o] }
            } }
        }
        for o in 0..<outChannels { b[o] = b[o] * a.scale[o] + a.shift[o] }
        return Conv2d(packed: p, bias: b, like: self)
    }

    private init(packed: [Float], bias: [Float]?, like c: Conv2d) {
        outChannels = c.outChannels; inChannels = c.inChannels; kernel = c.kernel
        stride = c.stride; padding = c.padding; algorithm = c.algorithm; self.packed = packed; self.bias = bias
        panels = c.panels
    }

    public func outputSize(_ h: Int, _ w: Int) -> (Int, Int) {
        ((h + 2 * padding - kernel) / stride + 1, (w + 2 * padding - kernel) / stride + 1)
    }

    /// x [H, W, C] → [Ho, Wo, O].
    public func callAsFunction(_ x: Tensor, _ ctx: ComputeContext) -> Tensor {
        precondition(x.rank == 3 && x.shape[2] == inChannels, "Conv2d(\(inChannels)→\(outChannels)): input \(x.shape)")
        let (h, w, c) = (x.shape[0], x.shape[1], x.shape[2])
        let (ho, wo) = outputSize(h, w)
        precondition(ho > 0 && wo > 0, "Conv2d: input \(h)×\(w) smaller than the kernel \(kernel)")
        ctx.countFLOPs(2 * Double(ho * wo) * Double(outChannels) * Double(kernel * kernel * c))
        switch algorithm {
        case .im2col:
            return ctx.timed("conv2d") { convolve(x, h, w, c, ho, wo, ctx) }
        case let .winograd(tr):
            return ctx.timed("conv2d/winograd") {
                winogradConv3x3(x, transform: tr, u: packed, panels: panels, outChannels: outChannels, bias: bias,
                                bf16: ctx.bf16 == nil ? nil : bf16Packed(), ctx)
            }
        }
    }

    /// Whether Winograd convolutions keep U in panels, and im2col's products use the packed kernel:
    /// on AVX-512, unless UNIFORMER_CONV_SGEMM=1 (for A/B benchmarks against sgemm).
    static let packedKernel = PackedF32.available && ProcessInfo.processInfo.environment["UNIFORMER_CONV_SGEMM"] != "1"

    /// The weights for the bf16 kernels: im2col's [O, k·k·C], or U[p] [O, C] per Winograd position.
    private func bf16Packed() -> [PackedBF16] {
        bf16Weights.get {
            let o = outChannels
            let rowMajor = panels ? unpackPanels(packed, n: o, k: inChannels) : packed
            let per = rowMajor.count / o
            let parts = algorithm == .im2col ? 1 : rowMajor.count / (o * inChannels)
            let cols = algorithm == .im2col ? per : inChannels
            return rowMajor.withUnsafeBufferPointer { wp in
                (0..<parts).map { q in PackedBF16(wp.baseAddress! + q * o * cols, rowStride: 1, colStride: cols, k: cols, n: o) }
            }
        }
    }

    private func convolve(_ x: Tensor, _ h: Int, _ w: Int, _ c: Int, _ ho: Int, _ wo: Int, _ ctx: ComputeContext) -> Tensor {
        let k = kernel, s = stride, pad = padding
        let cols = k * k * c
        // im2col a band of output rows at a time, so the column buffer stays near 16 MB however
        // large the map (a 3×3 conv over 2048 channels at 128×128 would otherwise need 1.2 GB).
        let band = max(1, min(ho, (4 << 20) / max(1, wo * cols)))
        var col = [Float](unsafeUninitializedCapacity: band * wo * cols) { _, done in done = band * wo * cols }
        let b = bias, oc = outChannels
        return Tensor(uninitialized: [ho, wo, outChannels]) { out in
            let dstOut = out.baseAddress!
            x.data.withUnsafeBufferPointer { xp in
                let src = SharedConstPointer(xp.baseAddress!)
                col.withUnsafeMutableBufferPointer { cp in
                    let dst = SharedPointer(cp.baseAddress!)
                    var y0 = 0
                    while y0 < ho {
                        let rows = min(band, ho - y0), first = y0
                        // im2col: row (oy, ox) = [ky][kx][c] of the input window, zeros outside the image.
                        parallelFor(rows, ctx) { range in
                            for r in range {
                                let oy = first + r
                                for ox in 0..<wo {
                                    var d = dst.base + (r * wo + ox) * cols
                                    for ky in 0..<k {
                                        let iy = oy * s + ky - pad
                                        let ix0 = ox * s - pad
                                        if iy < 0 || iy >= h {
                                            d.initialize(repeating: 0, count: k * c); d += k * c; continue
                                        }
                                        if ix0 >= 0 && ix0 + k <= w {
                                            d.update(from: src.base + (iy * w + ix0) * c, count: k * c); d += k * c; continue
                                        }
                                        for kx in 0..<k {
                                            let ix = ix0 + kx
                                            if ix < 0 || ix >= w { d.initialize(repeating: 0, count: c) }
                                            else { d.update(from: src.base + (iy * w + ix) * c, count: c) }
                                            d += c
                                        }
                                    }
                                }
                            }
                        }
                        if let kernel = ctx.bf16 {
                            gemmRowsBF16(m: rows * wo, a: cp.baseAddress!, lda: cols, b: bf16Packed()[0],
                                         c: dstOut + y0 * wo * oc, ldc: oc, bias: b, accumulate: false, kernel: kernel, ctx)
                        } else if Conv2d.packedKernel {
                            let panels = f32Panels.get {
                                packed.withUnsafeBufferPointer { PackedF32($0.baseAddress!, rowStride: 1, colStride: cols, k: cols, n: oc) }
                            }
                            gemmRowsPacked(m: rows * wo, a: cp.baseAddress!, lda: cols, b: panels, c: dstOut + y0 * wo * oc,
                                           ldc: oc, bias: b, accumulate: false, ctx)
                        } else {
                            packed.withUnsafeBufferPointer { wp in
                                gemmRows(m: rows * wo, n: oc, k: cols, a: cp.baseAddress!, b: wp.baseAddress!,
                                         c: dstOut + y0 * wo * oc, ctx) { c, n in
                                    if let b { addRowBias(c, rows: n, bias: b) }
                                }
                            }
                        }
                        y0 += rows
                    }
                }
            }
        }
    }
}

/// `positions` matrices [n, k] (row-major, used as Bᵀ) → the same matrices in uf_sgemm_packed's
/// panel layout, one after another (uf_sgemm_packed_floats(n, k) floats each).
func packPanels(_ m: [Float], positions: Int, n: Int, k: Int) -> [Float] {
    let per = uf_sgemm_packed_floats(n, k)
    var out = [Float](repeating: 0, count: positions * per)
    m.withUnsafeBufferPointer { src in out.withUnsafeMutableBufferPointer { dst in
        for q in 0..<positions {
            uf_sgemm_pack(src.baseAddress! + q * n * k, 1, k, k, n, 1, dst.baseAddress! + q * per)
        }
    } }
    return out
}

/// The inverse of `packPanels`: panel-layout matrices → [n, k] row-major each.
func unpackPanels(_ p: [Float], n: Int, k: Int) -> [Float] {
    let per = uf_sgemm_packed_floats(n, k), nr = packedPanelColumns, positions = p.count / per
    var out = [Float](repeating: 0, count: positions * n * k)
    for q in 0..<positions { for j in 0..<n { for kk in 0..<k {
        out[(q * n + j) * k + kk] = p[q * per + (j / nr) * k * nr + kk * nr + j % nr]
    } } }
    return out
}
