//! Winograd F(m×m, 3×3) convolution, stride 1, padding 1, on channels-last activations.
//!
//! Input [H, W, C] → output [H, W, O] (batch 1, NHWC), the same function as `Conv2d`'s im2col path
//! for k = 3, s = 1, p = 1 (Lavin & Gray 2015, "Fast Algorithms for Convolutional Neural Networks").
//! The output is cut into m×m tiles, each read from an α×α input patch (α = m + 2). Per tile:
//!   V = Bᵀ d B  (input transform, α×α per channel)        U = G g Gᵀ  (weights, once at load)
//!   M[p] = V[p] · U[p]ᵀ for each of the α² positions p   — one product [tiles × C]·[C × O] per p
//!   Y = Aᵀ M A + bias  (output transform, m×m per output channel)
//! The transforms are C kernels (CKernels/winograd.c) vectorised over channels; the products, one
//! per position, are split over the engine's threads (each single-threaded): the packed AVX-512
//! kernel on U[p] kept in its panel layout (Conv2d), else cblas_sgemm, or the bf16 kernels.
//! Tiles are processed in bands whose transformed buffers stay under 64 MB however large the map.
//!
//! The matrices come from interpolation points (Toom–Cook): α − 1 finite points plus ∞. Larger m
//! does fewer multiplications (α²/m² per output against 9) but amplifies float rounding; the default
//! is chosen by the accuracy table in BENCHMARKS.md (§ Winograd).

import CKernels
import Foundation

/// The matrices Bᵀ [α, α], G [α, 3], Aᵀ [m, α] of Winograd F(m×m, 3×3) for one set of points.
public struct WinogradTransform: Sendable, Equatable, CustomStringConvertible {
    /// Output tile size.
    public let m: Int
    /// Input tile size m + 2.
    public var alpha: Int { m + 2 }
    /// The finite interpolation points (m + 1 of them); the last point is ∞.
    public let points: [Double]
    let bt: [Float]     // [α, α]
    let g: [Double]     // [α, 3] (the weights are transformed in double)
    let at: [Float]     // [m, α]
    /// α = 6 on points 0, ±p, ±q, ∞, so that the transforms can use winograd.c's halved kernels
    /// (checked on the float matrices themselves: the zeros, the ± pairs and Aᵀ's unit entries).
    public let symmetric6: Bool

    /// F(2×2, 3×3) on 0, ±1, ∞ (Lavin's matrices up to row signs).
    public static let f2 = WinogradTransform(points: [0, 1, -1])
    /// F(3×3, 3×3) on 1, −½, ¼, −3/2, ∞ (near the smallest error amplification for m = 3).
    public static let f3 = WinogradTransform(points: [1, -0.5, 0.25, -1.5])
    /// F(4×4, 3×3) on 0, ±1, ±2, ∞: Lavin's matrices (integers, but 4.4× the rounding error of `f4`).
    public static let f4Lavin = WinogradTransform(points: [0, 1, -1, 2, -2])
    /// F(4×4, 3×3) on 0, ±2/3, ±3/2, ∞: the symmetric set that minimises the error amplification
    /// (BENCHMARKS.md § Winograd); the inexact thirds in Bᵀ and Aᵀ cost nothing measurable.
    public static let f4 = WinogradTransform(points: [0, 2.0 / 3, -2.0 / 3, 1.5, -1.5])
    /// F(6×6, 3×3) on 0, ±1, ±2, ±½, ∞.
    public static let f6 = WinogradTransform(points: [0, 1, -1, 2, -2, 0.5, -0.5])
    /// What `Conv2d` uses for 3×3, stride 1, padding 1 (see the accuracy table in BENCHMARKS.md).
    public static let `default` = f4

    /// Toom–Cook from the finite points p_j (distinct; 3 … 7 of them, giving m = 2 … 6):
    /// Aᵀ[i][j] = p_jⁱ, G[j][k] = p_jᵏ / Π_{l≠j}(p_j − p_l), Bᵀ[j] = the coefficients of Π_{l≠j}(x − p_l),
    /// and for ∞: Aᵀ[i] = [i = m−1], G = [0, 0, 1], Bᵀ = the coefficients of Π_l (x − p_l).
    public init(points: [Double]) {
        precondition((3...7).contains(points.count) && Set(points).count == points.count,
                     "WinogradTransform: need 3 to 7 distinct points, got \(points)")
        let n = points.count, a = n + 1, m = n - 1
        self.m = m; self.points = points
        func power(_ p: Double, _ e: Int) -> Double { e == 0 ? 1 : (1..<e).reduce(p) { acc, _ in acc * p } }
        /// Coefficients (constant first) of Π (x − r) over the given roots.
        func poly(_ roots: [Double]) -> [Double] {
            var c: [Double] = [1]
            for r in roots {
                var next = [Double](repeating: 0, count: c.count + 1)
                for (i, v) in c.enumerated() { next[i + 1] += v; next[i] -= r * v }
                c = next
            }
            return c
        }
        var bt = [Float](repeating: 0, count: a * a), g = [Double](repeating: 0, count: a * 3)
        var at = [Float](repeating: 0, count: m * a)
        for (j, p) in points.enumerated() {
            let others = points.enumerated().filter { $0.offset != j }.map(\.element)
            let norm = others.reduce(1.0) { $0 * (p - $1) }
            for (k, v) in poly(others).enumerated() { bt[j * a + k] = Float(v) }
            for k in 0..<3 { g[j * 3 + k] = power(p, k) / norm }
            for i in 0..<m { at[i * a + j] = Float(power(p, i)) }
        }
        for (k, v) in poly(points).enumerated() { bt[(a - 1) * a + k] = Float(v) }
        g[(a - 1) * 3 + 2] = 1
        at[(m - 1) * a + a - 1] = 1
        self.bt = bt; self.g = g; self.at = at
        symmetric6 = a == 6 && WinogradTransform.hasSymmetric6Pattern(bt: bt, at: at)
    }

    /// What uf_winograd_input_sym6 / uf_winograd_output_sym6 assume of Bᵀ [6, 6] and Aᵀ [4, 6].
    static func hasSymmetric6Pattern(bt: [Float], at: [Float]) -> Bool {
        func b(_ i: Int, _ k: Int) -> Float { bt[i * 6 + k] }
        func a(_ i: Int, _ l: Int) -> Float { at[i * 6 + l] }
        let zerosB = [(0, 1), (0, 3), (0, 5), (1, 0), (1, 5), (2, 0), (2, 5), (3, 0), (3, 5), (4, 0), (4, 5), (5, 0), (5, 2), (5, 4)]
        guard zerosB.allSatisfy({ b($0.0, $0.1) == 0 }) else { return false }
        for (r, pair) in [(1, 2), (3, 4)] {
            for k in 1...4 where b(pair, k) != (k % 2 == 1 ? -b(r, k) : b(r, k)) { return false }
        }
        for i in 0..<4 {
            if a(i, 0) != (i == 0 ? 1 : 0) || a(i, 5) != (i == 3 ? 1 : 0) { return false }
            let sign: Float = i % 2 == 0 ? 1 : -1
            if a(i, 2) != sign * a(i, 1) || a(i, 4) != sign * a(i, 3) { return false }
        }
        return (1...4).allSatisfy { a(0, $0) == 1 }
    }

    public var description: String {
        "F(\(m)×\(m), 3×3) on " + points.map { String(format: "%.4g", $0) }.joined(separator: ", ") + ", ∞"
    }

    /// U = G g Gᵀ [α², O, C] from a weight repacked to [O, 3, 3, C].
    func transformWeights(_ packed: [Float], outChannels o: Int, inChannels c: Int) -> [Float] {
        precondition(packed.count == o * 9 * c, "Winograd: weight of \(packed.count) values for \(o)×3×3×\(c)")
        return [Float](unsafeUninitializedCapacity: alpha * alpha * o * c) { u, done in
            uf_winograd_weights(packed, o, c, Int32(alpha), g, u.baseAddress!)
            done = alpha * alpha * o * c
        }
    }
}

/// Scratch budget of one band (transformed input + products): 64 MB, so a 128×128×2048 input
/// (300 MB once transformed by F(4×4)) runs in 6 bands of 182 tiles. On the sgemm path each call
/// repacks its U[p] (O × C, from memory), so fewer tiles per band cost throughput: single-threaded OpenBLAS reaches
/// 80 % of its peak at 96 rows, 93 % at 192 and 95 % at 256 (K = 2048, N = 512), hence also
/// at most `winogradMaxBandTiles` tiles, beyond which a band only costs memory.
let winogradBandBytes = 64 << 20
let winogradMaxBandTiles = 256

/// x [H, W, C] → [H, W, O]: 3×3, stride 1, padding 1, with U = G g Gᵀ [α², O, C] and optional bias [O].
/// `bf16`: U[p] packed per position for the bf16 kernels (ctx.bf16 set), else the products run in fp32.
/// `panels`: each U[p] is in uf_sgemm_packed's panel layout (`packPanels`), multiplied by the
/// AVX-512 kernel of CKernels/sgemm_packed.c without re-packing; else [α², O, C] for sgemm.
func winogradConv3x3(_ x: Tensor, transform tr: WinogradTransform, u: [Float], panels: Bool = false, outChannels oc: Int,
                     bias: [Float]?, bf16: [PackedBF16]? = nil, _ ctx: ComputeContext, bandBytes: Int = winogradBandBytes) -> Tensor {
    let (h, w, c) = (x.shape[0], x.shape[1], x.shape[2])
    let m = tr.m, a = tr.alpha, positions = a * a
    let perPosition = panels ? uf_sgemm_packed_floats(oc, c) : oc * c
    precondition(u.count == positions * perPosition, "Winograd: U \(u.count) values for \(positions)×\(oc)×\(c)")
    precondition(bias.map { $0.count == oc } ?? true, "Winograd: bias of \(bias?.count ?? 0) values for \(oc) channels")
    let tilesW = (w + m - 1) / m, tiles = ((h + m - 1) / m) * tilesW
    let band = max(1, min(tiles, winogradMaxBandTiles, bandBytes / (positions * (c + oc) * MemoryLayout<Float>.size)))
    var v = [Float](unsafeUninitializedCapacity: positions * band * c) { _, n in n = positions * band * c }   // [α², band, C]
    var prod = [Float](unsafeUninitializedCapacity: positions * band * oc) { _, n in n = positions * band * oc } // [α², band, O]
    return Tensor(uninitialized: [h, w, oc]) { out in
        let y = SharedPointer(out.baseAddress!)
        x.data.withUnsafeBufferPointer { xb in
        u.withUnsafeBufferPointer { ub in
        v.withUnsafeMutableBufferPointer { vb in
        prod.withUnsafeMutableBufferPointer { pb in
        tr.bt.withUnsafeBufferPointer { btb in
        tr.at.withUnsafeBufferPointer { atb in
        (bias ?? []).withUnsafeBufferPointer { bb in
            let src = SharedConstPointer(xb.baseAddress!), vp = SharedPointer(vb.baseAddress!)
            let up = SharedConstPointer(ub.baseAddress!), mp = SharedPointer(pb.baseAddress!)
            let btp = SharedConstPointer(btb.baseAddress!), atp = SharedConstPointer(atb.baseAddress!)
            let biasPointer = bias == nil ? nil : SharedConstPointer(bb.baseAddress!)
            var first = 0
            while first < tiles {
                let count = min(band, tiles - first), t0 = first
                // V[p] [count, C] = Bᵀ d B of each tile, then M[p] [count, O] = V[p] · U[p]ᵀ.
                parallelFor(count, ctx, minChunk: 4) { r in
                    if tr.symmetric6 {
                        uf_winograd_input_sym6(src.base, h, w, c, btp.base, tilesW, t0, r.lowerBound, r.upperBound, vp.base, count * c)
                    } else {
                        uf_winograd_input(src.base, h, w, c, Int32(a), Int32(m), btp.base, tilesW, t0,
                                          r.lowerBound, r.upperBound, vp.base, count * c)
                    }
                }
                parallelFor(positions, ctx) { ps in
                    // bf16: one copy buffer of V[p] per chunk of positions
                    let a16 = bf16 == nil ? nil : UnsafeMutablePointer<UInt16>.allocate(capacity: uf_gemm_bf16_a_count(count, c))
                    defer { a16?.deallocate() }
                    // fp32 panels: the kernel's scratch for a short last block of rows
                    let scratch = panels ? UnsafeMutablePointer<Float>.allocate(capacity: PackedF32.scratchFloats(c)) : nil
                    defer { scratch?.deallocate() }
                    for p in ps {
                        if let bf16, let kernel = ctx.bf16 {
                            gemmBF16(m: count, a: vp.base + p * count * c, lda: c, b: bf16[p],
                                     c: mp.base + p * count * oc, ldc: oc, kernel: kernel, scratch: a16)
                        } else if let scratch {
                            uf_sgemm_packed(count, oc, c, vp.base + p * count * c, c, up.base + p * perPosition,
                                            mp.base + p * count * oc, oc, nil, 0, scratch)
                        } else {
                            gemmABt(m: count, n: oc, k: c, a: vp.base + p * count * c, b: up.base + p * oc * c,
                                    c: mp.base + p * count * oc)
                        }
                    }
                }
                // Y = Aᵀ M A + bias into the output rows of these tiles.
                parallelFor(count, ctx, minChunk: 4) { r in
                    if tr.symmetric6 {
                        uf_winograd_output_sym6(mp.base, count * oc, oc, atp.base, biasPointer?.base, y.base, h, w,
                                                tilesW, t0, r.lowerBound, r.upperBound)
                    } else {
                        uf_winograd_output(mp.base, count * oc, oc, Int32(a), Int32(m), atp.base,
                                           biasPointer?.base, y.base, h, w, tilesW, t0, r.lowerBound, r.upperBound)
                    }
                }
                first += count
            }
        } } } } } } }
    }
}
