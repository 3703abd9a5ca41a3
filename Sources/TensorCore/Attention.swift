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

/// Query rows per block: keep a block of scores near 2 M floats (8 MB) per thread, never below 32 rows.
@inline(__always)
func queryBlock(_ n: Int) -> Int { min(n, max(32, (2 << 20) / max(1, n))) }

/// With K and V packed once per head the block can be small: ≤ 512 KB of scores (≥ 12 rows), so
/// the scores stay in L2 between Q·Kᵀ, the softmax and P·V.
@inline(__always)
func packedQueryBlock(_ n: Int) -> Int { min(n, max(12, (128 << 10) / max(1, n) / 12 * 12)) }

/// One (head, query block) of attention over `n` tokens whose QKV rows start at `qkv` (row stride
/// `ldqkv`): S = scale · Q_rows Kᵀ, softmax, S·V into the head's columns of `out` (row stride `ldout`).
/// `scores` holds rows · n floats. Single-threaded: callers parallelise over units. The fallback
/// path for CPUs without AVX-512 (OpenBLAS on the unpacked operands).
@inline(__always)
func attendUnit(qkv: UnsafePointer<Float>, ldqkv: Int, tokens n: Int, shape: AttentionShape, head h: Int,
                rows r0: Int, count rows: Int, out: UnsafeMutablePointer<Float>, ldout: Int,
                scores: UnsafeMutablePointer<Float>) {
    let c = shape.channels, d = shape.headDim
    let q = qkv + h * d, k = qkv + c + h * d, v = qkv + 2 * c + h * d
    gemmABt(m: rows, n: n, k: d, a: q + r0 * ldqkv, lda: ldqkv, b: k, ldb: ldqkv, c: scores, ldc: n, alpha: shape.scale)
    uf_softmax_rows(scores, rows, n)
    gemmAB(m: rows, n: d, k: n, a: scores, lda: n, b: v, ldb: ldqkv, c: out + r0 * ldout + h * d, ldc: ldout)
}

/// One head's keys, as the right operand of Q·Kᵀ (d × n, times the attention scale), and values,
/// as that of P·V (n × d), packed once for the packed-operand kernels: bf16 when the context runs
/// bf16, else fp32 (AVX-512). nil when neither applies (attendUnit's OpenBLAS path).
enum PackedHead: @unchecked Sendable {
    case bf16(keys: PackedBF16, values: PackedBF16, kernel: BF16Kernel)
    case fp32(keys: PackedF32, values: PackedF32)

    init?(_ qkv: UnsafePointer<Float>, ldqkv: Int, tokens n: Int, shape: AttentionShape, head h: Int, _ ctx: ComputeContext) {
        let c = shape.channels, d = shape.headDim
        let k = qkv + c + h * d, v = qkv + 2 * c + h * d
        if let kernel = ctx.bf16 {
            self = .bf16(keys: PackedBF16(k, rowStride: 1, colStride: ldqkv, k: d, n: n, scale: shape.scale),
                         values: PackedBF16(v, rowStride: ldqkv, colStride: 1, k: n, n: d), kernel: kernel)
        } else if PackedF32.available {
            self = .fp32(keys: PackedF32(k, rowStride: 1, colStride: ldqkv, k: d, n: n, scale: shape.scale),
                         values: PackedF32(v, rowStride: ldqkv, colStride: 1, k: n, n: d))
        } else {
            return nil
        }
    }

    /// Scratch floats `attend` needs for up to `rows` query rows over n tokens: the rows' softmax
    /// normalisers, then the fp32 kernel's short-block rows or the bf16 copy of Q's rows and of the
    /// probabilities (two bf16 per float).
    static func scratchFloats(rows: Int, tokens n: Int, headDim d: Int) -> Int {
        normalisers(rows) + max(PackedF32.scratchFloats(max(n, d)), (uf_gemm_bf16_a_count(rows, max(n, d)) + 1) / 2)
    }

    /// Floats at the head of the scratch for 1 / Σ exp per query row (a whole number of cache lines).
    @inline(__always)
    static func normalisers(_ rows: Int) -> Int { (rows + 15) / 16 * 16 }

    /// attendUnit on the packed operands; `scratch` holds scratchFloats(rows:tokens:headDim:) floats.
    /// Both cases imply AVX-512 (the packed fp32 kernel, or AVX512-BF16), so the softmax is the
    /// AVX-512 one.
    /// The softmax leaves exp(s − max) unnormalised and P·V's rows are scaled by 1 / Σ exp after the
    /// product: d values per row instead of n (one pass over the scores block fewer).
    @inline(__always)
    func attend(qkv: UnsafePointer<Float>, ldqkv: Int, tokens n: Int, shape: AttentionShape, head h: Int,
                rows r0: Int, count rows: Int, out: UnsafeMutablePointer<Float>, ldout: Int,
                scores: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>) {
        let d = shape.headDim
        let q = qkv + h * d + r0 * ldqkv, o = out + r0 * ldout + h * d
        let inv = scratch, rest = scratch + PackedHead.normalisers(rows)
        switch self {
        case let .bf16(keys, values, kernel):
            let a16 = UnsafeMutableRawPointer(rest).bindMemory(to: UInt16.self, capacity: uf_gemm_bf16_a_count(rows, max(n, d)))
            gemmBF16(m: rows, a: q, lda: ldqkv, b: keys, c: scores, ldc: n, kernel: kernel, scratch: a16)
            uf_softmax_rows_unnormalized_fast(scores, rows, n, inv)
            gemmBF16(m: rows, a: scores, lda: n, b: values, c: o, ldc: ldout, kernel: kernel, scratch: a16)
        case let .fp32(keys, values):
            gemmPacked(m: rows, a: q, lda: ldqkv, b: keys, c: scores, ldc: n, scratch: rest)
            uf_softmax_rows_unnormalized_fast(scores, rows, n, inv)
            gemmPacked(m: rows, a: scores, lda: n, b: values, c: o, ldc: ldout, scratch: rest)
        }
        uf_scale_rows(o, rows, d, ldout, inv)
    }
}

/// Per-thread scratch for attention: a scores block and, for windows, one window's QKV and output.
final class AttentionScratch: @unchecked Sendable {
    let buffers: [UnsafeMutablePointer<Float>]
    let size: Int
    init(threads: Int, floats: Int) {
        size = floats
        buffers = (0..<threads).map { _ in UnsafeMutablePointer<Float>.allocate(capacity: max(1, floats)) }
    }
    deinit { buffers.forEach { $0.deallocate() } }
}

/// Global attention: qkv [N, 3C] → [N, C]. Each head's K and V are packed once (in parallel over
/// heads), then units of (head, query block) run on all threads.
public func globalAttention(_ qkv: Tensor, shape: AttentionShape, _ ctx: ComputeContext) -> Tensor {
    let c = shape.channels
    let n = qkv.count / (3 * c)
    precondition(n * 3 * c == qkv.count, "attention: qkv \(qkv.shape) for \(c) channels")
    let packing = ctx.bf16 != nil || PackedF32.available
    let cacheBlock = packing ? packedQueryBlock(n) : queryBlock(n)
    // At least ~4 units per thread, so that heads × blocks splits evenly: stage 3 of a 224²
    // classifier has 5 heads of 196 queries, one block each, which 2 threads would share 3 : 2.
    let perHead = (4 * ctx.threads + shape.heads - 1) / shape.heads
    let block = ctx.threads > 1 && (n + cacheBlock - 1) / cacheBlock < perHead
        ? min(cacheBlock, max(12, ((n + perHead - 1) / perHead + 11) / 12 * 12)) : cacheBlock
    let blocks = (n + block - 1) / block
    let extra = PackedHead.scratchFloats(rows: block, tokens: n, headDim: shape.headDim)
    let scratch = AttentionScratch(threads: ctx.threads, floats: block * n + extra)
    ctx.countFLOPs(4 * Double(n) * Double(n) * Double(c))     // Q·Kᵀ and P·V over all heads
    return ctx.timed("attention") { Tensor(uninitialized: [n, c]) { out in
        let o = SharedPointer(out.baseAddress!)
        qkv.data.withUnsafeBufferPointer { qp in
            let src = SharedConstPointer(qp.baseAddress!)
            let heads = (0..<shape.heads).map { _ in HeadPack() }
            if packing {
                parallelFor(shape.heads, ctx) { hs in
                    for h in hs { heads[h].value = PackedHead(src.base, ldqkv: 3 * c, tokens: n, shape: shape, head: h, ctx) }
                }
            }
            parallelChunks(shape.heads * blocks, ctx) { thread, units in
                let scores = scratch.buffers[thread]
                for u in units {
                    let h = u / blocks, r0 = (u % blocks) * block, rows = min(block, n - r0)
                    if let p = heads[h].value {
                        p.attend(qkv: src.base, ldqkv: 3 * c, tokens: n, shape: shape, head: h, rows: r0, count: rows,
                                 out: o.base, ldout: c, scores: scores, scratch: scores + block * n)
                    } else {
                        attendUnit(qkv: src.base, ldqkv: 3 * c, tokens: n, shape: shape, head: h, rows: r0,
                                   count: rows, out: o.base, ldout: c, scores: scores)
                    }
                }
            }
        }
    } }
}

/// Window attention as UniFormer's SABlock_Windows: the token map [H, W] is zero-padded on the
/// bottom/right to a multiple of `window` *after* norm1, so a padded token's QKV is the qkv bias;
/// padded tokens take part in every window's softmax unmasked (upstream does not mask them);
/// outputs of padded tokens are cropped. qkv [H·W, 3C] (of the real tokens) → [H·W, C].
/// Windows run on all threads, each gathering its tokens into a contiguous [ws², 3C] block.
public func windowAttention(_ qkv: Tensor, height h: Int, width w: Int, window ws: Int,
                            paddingRow: [Float], shape: AttentionShape, _ ctx: ComputeContext) -> Tensor {
    let c = shape.channels, c3 = 3 * c
    precondition(qkv.count == h * w * c3 && paddingRow.count == c3, "window attention: qkv \(qkv.shape) for \(h)×\(w)×\(c)")
    let nwy = (h + ws - 1) / ws, nwx = (w + ws - 1) / ws
    let t = ws * ws
    let block = queryBlock(t)
    let extra = PackedHead.scratchFloats(rows: block, tokens: t, headDim: shape.headDim)
    // per thread: [t, 3C] window QKV, [t, C] window output, [block, t] scores, kernel scratch
    let scratch = AttentionScratch(threads: ctx.threads, floats: t * c3 + t * c + block * t + extra)
    ctx.countFLOPs(Double(nwy * nwx) * 4 * Double(t) * Double(t) * Double(c))
    return ctx.timed("window attention") { Tensor(uninitialized: [h * w, c]) { out in
        let o = SharedPointer(out.baseAddress!)
        qkv.data.withUnsafeBufferPointer { qp in
            let src = SharedConstPointer(qp.baseAddress!)
            paddingRow.withUnsafeBufferPointer { pp in
                let pad = SharedConstPointer(pp.baseAddress!)
                parallelChunks(nwy * nwx, ctx) { thread, windows in
                    let wq = scratch.buffers[thread], wo = wq + t * c3, scores = wo + t * c
                    for win in windows {
                        let wy = win / nwx, wx = win % nwx
                        // gather: window token (ty, tx) ← map (wy·ws + ty, wx·ws + tx), or the padding QKV
                        for ty in 0..<ws {
                            for tx in 0..<ws {
                                let y = wy * ws + ty, x = wx * ws + tx
                                let from = (y < h && x < w) ? src.base + (y * w + x) * c3 : pad.base
                                (wq + (ty * ws + tx) * c3).update(from: from, count: c3)
                            }
                        }
                        for head in 0..<shape.heads {
                            let packed = PackedHead(wq, ldqkv: c3, tokens: t, shape: shape, head: head, ctx)
                            var r0 = 0
                            while r0 < t {
                                if let packed {
                                    packed.attend(qkv: wq, ldqkv: c3, tokens: t, shape: shape, head: head, rows: r0,
                                                  count: min(block, t - r0), out: wo, ldout: c, scores: scores,
                                                  scratch: scores + block * t)
                                } else {
                                    attendUnit(qkv: wq, ldqkv: c3, tokens: t, shape: shape, head: head, rows: r0,
                                               count: min(block, t - r0), out: wo, ldout: c, scores: scores)
                                }
                                r0 += block
                            }
                        }
                        // scatter the real tokens back
                        for ty in 0..<ws {
                            let y = wy * ws + ty
                            if y >= h { break }
                            for tx in 0..<ws {
                                let x = wx * ws + tx
                                if x >= w { break }
                                (o.base + (y * w + x) * c).update(from: wo + (ty * ws + tx) * c, count: c)
                            }
                        }
                    }
                }
            }
        }
    } }
}

/// One head's packed operands, written by one thread before the units read them.
final class HeadPack: @unchecked Sendable {
    var value: PackedHead?
}
