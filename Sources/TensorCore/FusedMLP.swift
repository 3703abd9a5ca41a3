//! The two-layer MLP of a transformer or conv block, residual += fc2(gelu(fc1(x))), fused by row blocks.
//!
//! Why: in stages 1–2 the hidden activations are 4× the block's width over thousands of tokens
//! (16384 × 256 floats = 16 MB at 512²) while the two weight matrices are small (64–512 KB). Run as
//! two products, fc1 writes the hidden tensor to memory and fc2 reads it back, and both products
//! have K or N of only 64–128, so they wait on memory (46–77 GFLOPS measured on one thread).
//! Fused, each thread takes a block of rows, runs fc1 + bias + GELU (in the GEMM's store) into its own scratch (the
//! block's hidden rows stay in L2) and fc2 from there straight into the residual rows; the weights,
//! read once per block, stay in L2 as well. Where the weights do not fit (stage 3–4: 1.6 MB per
//! matrix and more) or the fp32 packed kernel is not used, it is the two products as before.

import CKernels

extension Linear {
    /// Whether `mlpAccumulate` fuses fc1 → GELU → fc2 for these layers and this many rows.
    static func fusesMLP(_ fc1: Linear, _ fc2: Linear, rows n: Int, _ ctx: ComputeContext) -> Bool {
        let weightBytes = 4 * (fc1.inFeatures * fc1.outFeatures + fc2.inFeatures * fc2.outFeatures)
        return ctx.bf16 == nil && Linear.packedF32 && weightBytes <= 1 << 20 && n >= 4 * mlpBlockRows(hidden: fc1.outFeatures) * ctx.threads
    }

    /// Rows per fused block: about 128 KB of hidden activations, a multiple of the kernel's 12 rows.
    static func mlpBlockRows(hidden: Int) -> Int { max(12, (32768 / max(1, hidden)) / 12 * 12) }

    /// residual += fc2(gelu(fc1(x))) for x [N, in], residual [N, out]: fused by row blocks when
    /// `fusesMLP` says so, else the two products.
    public static func mlpAccumulate(_ x: Tensor, fc1: Linear, fc2: Linear, into residual: inout Tensor, _ ctx: ComputeContext) {
        let n = x.count / fc1.inFeatures
        precondition(x.count == n * fc1.inFeatures && fc2.inFeatures == fc1.outFeatures && residual.count == n * fc2.outFeatures,
                     "mlp: x \(x.shape), fc1 \(fc1.store.shape), fc2 \(fc2.store.shape), residual \(residual.shape)")
        guard fusesMLP(fc1, fc2, rows: n, ctx) else {
            let h = fc1(x, .biasGELU, ctx)
            fc2.accumulate(h, into: &residual, ctx)
            return
        }
        x.data.withUnsafeBufferPointer { xp in
            residual.data.withUnsafeMutableBufferPointer { rp in
                fusedMLP(n: n, x: xp.baseAddress!, residual: rp.baseAddress!, fc1: fc1, fc2: fc2, ctx)
            }
        }
    }

    /// x += fc2(gelu(fc1(x))) in place (the conv blocks' MLP, whose input is the residual itself):
    /// a block's rows are read by fc1 before fc2 writes them, and rows do not mix.
    public static func mlpAccumulateInPlace(_ x: inout Tensor, fc1: Linear, fc2: Linear, _ ctx: ComputeContext) {
        let n = x.count / fc1.inFeatures
        precondition(fc1.inFeatures == fc2.outFeatures && fc2.inFeatures == fc1.outFeatures && x.count == n * fc1.inFeatures,
                     "mlp in place: x \(x.shape), fc1 \(fc1.store.shape), fc2 \(fc2.store.shape)")
        guard fusesMLP(fc1, fc2, rows: n, ctx) else {
            let h = fc1(x, .biasGELU, ctx)
            fc2.accumulate(h, into: &x, ctx)
            return
        }
        x.data.withUnsafeMutableBufferPointer { p in
            fusedMLP(n: n, x: UnsafePointer(p.baseAddress!), residual: p.baseAddress!, fc1: fc1, fc2: fc2, ctx)
        }
    }

    private static func fusedMLP(n: Int, x: UnsafePointer<Float>, residual: UnsafeMutablePointer<Float>,
                                 fc1: Linear, fc2: Linear, _ ctx: ComputeContext) {
        let cin = fc1.inFeatures, hid = fc1.outFeatures, cout = fc2.outFeatures
        ctx.countFLOPs(2 * Double(n) * Double(cin * hid + hid * cout))
        let p1 = fc1.store.packedF32(), p2 = fc2.store.packedF32()
        let rows = mlpBlockRows(hidden: hid), blocks = (n + rows - 1) / rows
        let xs = SharedConstPointer(x), rs = SharedPointer(residual)
        let b1 = fc1.bias, b2 = fc2.bias
        ctx.timed("mlp") {
            parallelFor(blocks, ctx) { range in
                let hidden = UnsafeMutablePointer<Float>.allocate(capacity: rows * hid)
                let scratch = UnsafeMutablePointer<Float>.allocate(capacity: max(PackedF32.scratchFloats(cin), PackedF32.scratchFloats(hid)))
                defer { hidden.deallocate(); scratch.deallocate() }
                for blk in range {
                    let r0 = blk * rows, m = min(rows, n - r0)
                    withOptionalPointer(b1) { bias in
                        gemmPacked(m: m, a: xs.base + r0 * cin, lda: cin, b: p1, c: hidden, ldc: hid, bias: bias, gelu: true,
                                   scratch: scratch)
                    }
                    withOptionalPointer(b2) { bias in
                        gemmPacked(m: m, a: hidden, lda: hid, b: p2, c: rs.base + r0 * cout, ldc: cout, bias: bias,
                                   accumulate: true, scratch: scratch)
                    }
                }
            }
        }
    }
}

/// Calls `body` with the array's base address, or nil.
@inline(__always)
private func withOptionalPointer(_ a: [Float]?, _ body: (UnsafePointer<Float>?) -> Void) {
    if let a { a.withUnsafeBufferPointer { body($0.baseAddress) } } else { body(nil) }
}
