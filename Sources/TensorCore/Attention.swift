//! Multi-head self-attention on a fused QKV projection, global or in windows.
//!
//! QKV layout is PyTorch's `qkv(x).reshape(N, 3, heads, d)`: row t, column `which·C + h·d + j`.
//! Scores are computed one block of query rows at a time (S = scale · Q_rows Kᵀ, softmax, S·V),
//! so a head never holds the whole N×N matrix: memory is rows × N, linear in the token count.
//! Every row sees all its keys at once, so the softmax is exact, not a running approximation.

import CKernels

public struct AttentionShape: Sendable {
    public let channels: Int
    public let heads: Int
    public let scale: Float
    public var headDim: Int { channels / heads }

    public init(channels: Int, heads: Int, scale: Float) {
        precondition(heads > 0 && channels % heads == 0, "attention: \(channels) channels, \(heads) heads")
        self.channels = channels; self.heads = heads; self.scale = scale
    }
}

/// Query rows per block: keep a block of scores near 4 M floats (16 MB), never below 32 rows.
@inline(__always)
func queryBlock(_ n: Int) -> Int { min(n, max(32, (4 << 20) / max(1, n))) }

/// Attention over `n` tokens whose QKV rows start at `qkv` (row stride `ldqkv`), writing the
/// concatenated heads to `out` (row stride `ldout`). `scores` must hold queryBlock(n) · n floats.
public func attend(qkv: UnsafePointer<Float>, ldqkv: Int, tokens n: Int, shape: AttentionShape,
                   out: UnsafeMutablePointer<Float>, ldout: Int,
                   scores: UnsafeMutablePointer<Float>, _ ctx: ComputeContext) {
    let c = shape.channels, d = shape.headDim
    let block = queryBlock(n)
    for h in 0..<shape.heads {
        let q = qkv + h * d, k = qkv + c + h * d, v = qkv + 2 * c + h * d
        var r0 = 0
        while r0 < n {
            let rows = min(block, n - r0)
            gemmABt(m: rows, n: n, k: d, a: q + r0 * ldqkv, lda: ldqkv, b: k, ldb: ldqkv,
                    c: scores, ldc: n, alpha: shape.scale)
            softmaxRows(scores, rows: rows, cols: n, ctx)
            gemmAB(m: rows, n: d, k: n, a: scores, lda: n, b: v, ldb: ldqkv,
                   c: out + r0 * ldout + h * d, ldc: ldout)
            r0 += rows
        }
    }
}

/// In-place softmax of each row of a [rows, cols] block.
public func softmaxRows(_ p: UnsafeMutablePointer<Float>, rows: Int, cols: Int, _ ctx: ComputeContext) {
    let base = SharedPointer(p)
    parallelFor(rows, ctx, minChunk: 8) { range in
        uf_softmax_rows(base.base + range.lowerBound * cols, range.count, cols)
    }
}

/// Global attention: qkv [N, 3C] → [N, C].
public func globalAttention(_ qkv: Tensor, shape: AttentionShape, _ ctx: ComputeContext) -> Tensor {
    let c = shape.channels
    let n = qkv.count / (3 * c)
    precondition(n * 3 * c == qkv.count, "attention: qkv \(qkv.shape) for \(c) channels")
    var scores = [Float](unsafeUninitializedCapacity: queryBlock(n) * n) { _, k in k = queryBlock(n) * n }
    return Tensor(uninitialized: [n, c]) { out in
        qkv.data.withUnsafeBufferPointer { qp in
            scores.withUnsafeMutableBufferPointer { sp in
                attend(qkv: qp.baseAddress!, ldqkv: 3 * c, tokens: n, shape: shape,
                       out: out.baseAddress!, ldout: c, scores: sp.baseAddress!, ctx)
            }
        }
    }
}

/// Window attention as UniFormer's SABlock_Windows: the token map [H, W] is zero-padded on the
/// bottom/right to a multiple of `window` *after* norm1, so a padded token's QKV is the qkv bias;
/// padded tokens take part in every window's softmax unmasked (upstream does not mask them);
/// outputs of padded tokens are cropped. qkv [H·W, 3C] (of the real tokens) → [H·W, C].
public func windowAttention(_ qkv: Tensor, height h: Int, width w: Int, window ws: Int,
                            paddingRow: [Float], shape: AttentionShape, _ ctx: ComputeContext) -> Tensor {
    let c = shape.channels, c3 = 3 * c
    precondition(qkv.count == h * w * c3 && paddingRow.count == c3, "window attention: qkv \(qkv.shape) for \(h)×\(w)×\(c)")
    let nwy = (h + ws - 1) / ws, nwx = (w + ws - 1) / ws
    let t = ws * ws
    var winQKV = [Float](repeating: 0, count: t * c3)     // [ws·ws, 3C] one window's tokens
    var winOut = [Float](repeating: 0, count: t * c)      // [ws·ws, C]
    var scores = [Float](repeating: 0, count: queryBlock(t) * t)
    return Tensor(uninitialized: [h * w, c]) { out in
        let o = out.baseAddress!
        qkv.data.withUnsafeBufferPointer { qp in
            let src = qp.baseAddress!
            winQKV.withUnsafeMutableBufferPointer { wq in
                winOut.withUnsafeMutableBufferPointer { wo in
                    scores.withUnsafeMutableBufferPointer { sp in
                        paddingRow.withUnsafeBufferPointer { pad in
                            for wy in 0..<nwy {
                                for wx in 0..<nwx {
                                    // gather: window token (ty, tx) ← map (wy·ws + ty, wx·ws + tx) or padding
                                    for ty in 0..<ws {
                                        for tx in 0..<ws {
                                            let y = wy * ws + ty, x = wx * ws + tx
                                            let from = (y < h && x < w) ? src + (y * w + x) * c3 : pad.baseAddress!
                                            (wq.baseAddress! + (ty * ws + tx) * c3).update(from: from, count: c3)
                                        }
                                    }
                                    attend(qkv: wq.baseAddress!, ldqkv: c3, tokens: t, shape: shape,
                                           out: wo.baseAddress!, ldout: c, scores: sp.baseAddress!, ctx)
                                    // scatter the real tokens back
                                    for ty in 0..<ws {
                                        let y = wy * ws + ty
                                        if y >= h { break }
                                        for tx in 0..<ws {
                                            let x = wx * ws + tx
                                            if x >= w { break }
                                            (o + (y * w + x) * c).update(from: wo.baseAddress! + (ty * ws + tx) * c, count: c)
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
