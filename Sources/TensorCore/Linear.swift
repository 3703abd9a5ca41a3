//! Linear layers and 1×1 convolutions: one GEMM over tokens.
//! Input [N, in] (tokens × channels, channels-last), weight [out, in] (PyTorch layout), output [N, out].

import Foundation

public struct Linear: Sendable {
    /// The weight [out, in] (PyTorch layout). After the first fp32 call on an AVX-512 CPU only the
    /// packed panels are kept, and this unpacks them (exactly) on each use — for folding and bf16
    /// packing, not for products.
    public var weight: Tensor { store.tensor }
    public let bias: [Float]?   // [out]
    let store: LinearWeightStore
    /// The weight packed for bf16 products, made on the first bf16 call.
    let bf16Weight = PackedCache<PackedBF16>()

    /// Whether fp32 products use the pre-packed AVX-512 kernel (else OpenBLAS sgemm). The environment
    /// variable UNIFORMER_LINEAR_SGEMM=1 forces sgemm, for A/B benchmarks.
    static let packedF32 = PackedF32.available && ProcessInfo.processInfo.environment["UNIFORMER_LINEAR_SGEMM"] != "1"

    public var inFeatures: Int { store.shape[1] }
    public var outFeatures: Int { store.shape[0] }

    public init(weight: Tensor, bias: [Float]?) {
        precondition(weight.rank == 2, "Linear: weight must be [out, in], got \(weight.shape)")
        precondition(bias == nil || bias!.count == weight.shape[0], "Linear: bias \(bias!.count) vs weight \(weight.shape)")
        self.store = LinearWeightStore(weight)
        self.bias = bias
    }

    /// A 1×1 convolution weight [out, in, 1, 1] viewed as a Linear.
    public init(conv1x1 weight: Tensor, bias: [Float]?) {
        precondition(weight.rank == 4 && weight.shape[2] == 1 && weight.shape[3] == 1, "conv1x1: weight \(weight.shape)")
        self.init(weight: weight.reshaped([weight.shape[0], weight.shape[1]]), bias: bias)
    }

    public enum Epilogue: Sendable { case bias, biasGELU }

    /// y = x · Wᵀ + b (or gelu(x · Wᵀ + b)), for x [N, in] → [N, out].
    public func callAsFunction(_ x: Tensor, _ epilogue: Epilogue = .bias, _ ctx: ComputeContext) -> Tensor {
        let n = x.count / inFeatures
        precondition(x.count == n * inFeatures, "Linear: input \(x.shape) vs weight \(store.shape)")
        var shape = x.shape
        shape[shape.count - 1] = outFeatures
        let o = outFeatures, b = bias
        ctx.countFLOPs(2 * Double(n) * Double(inFeatures) * Double(o))
        let kind = epilogue == .biasGELU ? "linear+gelu" : "linear"
        return ctx.timed(ctx.profiler?.byShape == true ? "\(kind) \(n)×\(inFeatures)→\(o)" : kind) { Tensor(uninitialized: shape) { out in
            if let kernel = ctx.bf16 {
                let packed = bf16Weight.get { PackedBF16.linearWeight(weight) }
                x.data.withUnsafeBufferPointer { xp in
                    gemmRowsBF16(m: n, a: xp.baseAddress!, lda: inFeatures, b: packed, c: out.baseAddress!, ldc: o,
                                 bias: b, accumulate: false, kernel: kernel, ctx) { c, rows in
                        if epilogue == .biasGELU { biasGELURows(c, rows: rows, cols: o, bias: nil) }
                    }
                }
                return
            }
            if Linear.packedF32 {
                let packed = store.packedF32()
                x.data.withUnsafeBufferPointer { xp in
                    gemmRowsPacked(m: n, a: xp.baseAddress!, lda: inFeatures, b: packed, c: out.baseAddress!, ldc: o,
                                   bias: b, accumulate: false, gelu: epilogue == .biasGELU, ctx)
                }
                return
            }
            x.data.withUnsafeBufferPointer { xp in
                weight.data.withUnsafeBufferPointer { wp in
                    gemmRows(m: n, n: o, k: inFeatures, a: xp.baseAddress!, b: wp.baseAddress!, c: out.baseAddress!, ctx) { c, rows in
                        switch epilogue {
                        case .bias: if let b { addRowBias(c, rows: rows, bias: b) }
                        case .biasGELU: biasGELURows(c, rows: rows, cols: o, bias: b)
                        }
                    }
                }
            }
        } }
    }

    /// residual += x · Wᵀ + b, in place (the branch output of a residual block).
    public func accumulate(_ x: Tensor, into residual: inout Tensor, _ ctx: ComputeContext) {
        let n = x.count / inFeatures
        precondition(residual.count == n * outFeatures, "Linear.accumulate: \(x.shape) → \(residual.shape)")
        let b = bias
        ctx.countFLOPs(2 * Double(n) * Double(inFeatures) * Double(outFeatures))
        ctx.timed(ctx.profiler?.byShape == true ? "linear \(n)×\(inFeatures)→\(outFeatures) +=" : "linear") { residual.data.withUnsafeMutableBufferPointer { rp in
            if let kernel = ctx.bf16 {
                let packed = bf16Weight.get { PackedBF16.linearWeight(weight) }
                x.data.withUnsafeBufferPointer { xp in
                    gemmRowsBF16(m: n, a: xp.baseAddress!, lda: inFeatures, b: packed, c: rp.baseAddress!, ldc: outFeatures,
                                 bias: b, accumulate: true, kernel: kernel, ctx)
                }
                return
            }
            if Linear.packedF32 {
                let packed = store.packedF32()
                x.data.withUnsafeBufferPointer { xp in
                    gemmRowsPacked(m: n, a: xp.baseAddress!, lda: inFeatures, b: packed, c: rp.baseAddress!, ldc: outFeatures,
                                   bias: b, accumulate: true, ctx)
                }
                return
            }
            x.data.withUnsafeBufferPointer { xp in
                weight.data.withUnsafeBufferPointer { wp in
                    gemmRows(m: n, n: outFeatures, k: inFeatures, a: xp.baseAddress!, b: wp.baseAddress!,
                             c: rp.baseAddress!, beta: 1, ctx) { c, rows in
                        if let b { addRowBias(c, rows: rows, bias: b) }
                    }
                }
            }
        } }
    }

    /// Folds a per-input-channel affine that precedes this layer (an inference BatchNorm:
    /// x' = x·scale + shift) into the weights: W' = W·diag(scale), b' = b + W·shift.
    public func foldingInputAffine(scale: [Float], shift: [Float]) -> Linear {
        let o = outFeatures, i = inFeatures
        precondition(scale.count == i && shift.count == i, "fold: affine \(scale.count) vs in \(i)")
        var w = weight.data
        var b = bias ?? [Float](repeating: 0, count: o)
        for r in 0..<o {
            var acc = Double(b[r])
            for c in 0..<i {
                acc += Double(w[r * i + c]) * Double(shift[c])
                w[r * i + c] *= scale[c]
            }
            b[r] = Float(acc)
        }
        return Linear(weight: Tensor(shape: weight.shape, data: w), bias: b)
    }

    /// The same layer with `extra` added to its bias (a per-output-channel shift that follows it).
    public func addingBias(_ extra: [Float]) -> Linear {
        precondition(extra.count == outFeatures, "bias: \(extra.count) vs out \(outFeatures)")
        let b = bias ?? [Float](repeating: 0, count: outFeatures)
        return Linear(weight: weight, bias: zip(b, extra).map { $0 + $1 })
    }

    /// Folds a per-output-channel scale that follows this layer (layer scale γ·(Wx + b)).
    public func scalingOutputs(by gamma: [Float]) -> Linear {
        let o = outFeatures, i = inFeatures
        precondition(gamma.count == o, "scale: gamma \(gamma.count) vs out \(o)")
        var w = weight.data
        for r in 0..<o { for c in 0..<i { w[r * i + c] *= gamma[r] } }
        let b = bias.map { b in (0..<o).map { b[$0] * gamma[$0] } }
        return Linear(weight: Tensor(shape: weight.shape, data: w), bias: b)
    }
}

/// A Linear layer's weight: the [out, in] tensor as loaded until the fp32 AVX-512 kernel first
/// needs it packed, then the packed panels alone (one copy of the weights in memory, not two).
/// Shared by copies of the Linear; thread-safe.
final class LinearWeightStore: @unchecked Sendable {
    let shape: [Int]
    private var plain: Tensor?
    private var packed: PackedF32?
    private let lock = NSLock()

    init(_ weight: Tensor) {
        shape = weight.shape
        plain = weight
    }

    /// The panels for the packed fp32 kernel; made on first use, after which the plain tensor is dropped.
    func packedF32() -> PackedF32 {
        lock.lock(); defer { lock.unlock() }
        if let packed { return packed }
        let p = PackedF32.linearWeight(plain!)
        packed = p
        plain = nil
        return p
    }

    var tensor: Tensor {
        lock.lock(); defer { lock.unlock() }
        return plain ?? packed!.unpackedLinearWeight()
    }
}

/// out[r, :] += bias for r in 0..<rows.
@inline(__always)
func addRowBias(_ out: UnsafeMutablePointer<Float>, rows: Int, bias: [Float]) {
    let c = bias.count
    bias.withUnsafeBufferPointer { bp in
        let b = bp.baseAddress!
        for r in 0..<rows {
            let row = out + r * c
            for j in 0..<c { row[j] += b[j] }
        }
    }
}
