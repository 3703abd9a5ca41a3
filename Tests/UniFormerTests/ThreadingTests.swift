// The engine's parallel loops (SpinPool workers, Dispatch when they are busy) and the fp32 Linear
// path that splits either rows or B's column panels across threads, against naive twins.

import CKernels
import Foundation
import TensorCore
import Testing

@Suite struct Threading {
    /// Every index of every loop is visited exactly once, by thread 0 or 1, over many short loops
    /// back to back (the pool's fast path), with sizes that leave home ranges uneven and with and
    /// without a minimum piece.
    @Test func everyIndexOnceOverManyLoops() {
        let ctx = ComputeContext(threads: 2)
        for loop in 0..<3000 {
            let count = 1 + loop % 37
            var hits = [Int32](repeating: 0, count: count)
            hits.withUnsafeMutableBufferPointer { hp in
                let p = SharedInt32(hp.baseAddress!)
                parallelChunks(count, ctx, minChunk: loop % 2 == 0 ? 1 : 4) { thread, range in
                    for i in range { p.base[i] += Int32(1 + thread * 100) }
                }
            }
            for i in 0..<count {
                #expect(hits[i] == 1 || hits[i] == 101, "loop \(loop) index \(i): \(hits[i])")
            }
        }
    }

    /// A thread that runs slower hands the back of its range to the other: thread 0 sleeps 100 µs
    /// per item, thread 1 does not, and thread 1 ends up with more than its home half of the items
    /// (tried until the pool is free of other tests' loops; every loop still visits each index once).
    /// Inside parallel loops (on every thread) subnormal results are flushed to zero; outside them,
    /// before and after, the calling thread keeps IEEE subnormals (weight loading relies on that).
    /// The product runs in C (uf_scale_rows) so the compiler cannot fold it.
    @Test func subnormalsFlushInsideLoopsOnly() {
        guard ProcessInfo.processInfo.environment["UNIFORMER_KEEP_SUBNORMALS"] != "1" else { return }
        #if arch(x86_64)
        let half: [Float] = [0.5]
        func halvedOutside() -> Float {
            var v: [Float] = [Float.leastNormalMagnitude]
            uf_scale_rows(&v, 1, 1, 1, half)
            return v[0]
        }
        #expect(halvedOutside() == Float.leastNormalMagnitude / 2)
        let ctx = ComputeContext(threads: 2)
        var inside = [Float](repeating: 1, count: 64)
        inside.withUnsafeMutableBufferPointer { ip in
            let p = SharedPointer(ip.baseAddress!)
            half.withUnsafeBufferPointer { hp in
                let h = SharedConstPointer(hp.baseAddress!)
                parallelFor(64, ctx) { range in
                    for i in range {
                        p.base[i] = Float.leastNormalMagnitude
                        uf_scale_rows(p.base + i, 1, 1, 1, h.base)
                    }
                }
            }
        }
        #expect(inside.allSatisfy { $0 == 0 })
        #expect(halvedOutside() == Float.leastNormalMagnitude / 2)
        #endif
    }

    @Test func fastThreadTakesOverTheSlowOnesItems() {
        let ctx = ComputeContext(threads: 2)
        var balanced = false
        for _ in 0..<200 where !balanced {
            let count = 64
            var hits = [Int32](repeating: 0, count: count)
            hits.withUnsafeMutableBufferPointer { hp in
                let p = SharedInt32(hp.baseAddress!)
                parallelChunks(count, ctx) { thread, range in
                    for i in range {
                        if thread == 0 { usleep(100) }
                        p.base[i] += Int32(1 + thread * 100)
                    }
                }
            }
            #expect(hits.allSatisfy { $0 == 1 || $0 == 101 })
            balanced = hits.filter { $0 == 101 }.count > count / 2
        }
        #expect(balanced)
    }

    /// Loops started from several threads at once and loops nested inside a chunk all complete
    /// with the right sums (only one of them gets the pool; the others run on Dispatch).
    @Test func concurrentAndNestedLoops() async {
        let ctx = ComputeContext(threads: 2)
        await withTaskGroup(of: Bool.self) { group in
            for caller in 0..<4 {
                group.addTask {
                    var ok = true
                    for loop in 0..<200 {
                        let count = 64 + (loop + caller) % 50
                        var out = [Int32](repeating: 0, count: count * 4)
                        out.withUnsafeMutableBufferPointer { op in
                            let p = SharedInt32(op.baseAddress!)
                            parallelFor(count, ctx) { rows in
                                for r in rows {
                                    // a nested loop over the row's 4 entries
                                    parallelFor(4, ctx) { cols in for c in cols { p.base[r * 4 + c] = Int32(r * 4 + c + caller) } }
                                }
                            }
                        }
                        ok = ok && out.enumerated().allSatisfy { $0.element == Int32($0.offset + caller) }
                    }
                    return ok
                }
            }
            for await ok in group { #expect(ok) }
        }
    }

    /// Linear (fp32 path of this CPU) against a double-precision loop: rows split (300 tokens),
    /// column panels split (49 tokens, as stage 4 at 224²), a single panel (n 20), odd k; bias,
    /// bias + GELU and accumulation into a residual, on 1 and 2 threads.
    @Test(arguments: [(300, 70, 33), (49, 200, 64), (49, 20, 17), (5, 96, 9), (97, 64, 130)])
    func linearMatchesNaiveTwin(_ m: Int, _ n: Int, _ k: Int) {
        var rng = TestRNG(state: UInt64(m * 131 + n * 7 + k))
        let x = rng.tensor([m, k])
        let lin = Linear(weight: rng.tensor([n, k]), bias: (0..<n).map { _ in rng.next() })
        let start = rng.tensor([m, n])
        var want = [Double](repeating: 0, count: m * n)
        for i in 0..<m { for j in 0..<n {
            var s = Double(lin.bias![j])
            for t in 0..<k { s += Double(x.data[i * k + t]) * Double(lin.weight.data[j * k + t]) }
            want[i * n + j] = s
        } }
        let gelu = want.map { 0.5 * $0 * (1 + erf($0 / 2.0.squareRoot())) }
        let tol = 1e-5 * (1 + Double(k).squareRoot())
        func close(_ got: [Float], _ want: [Double]) -> Bool { zip(got, want).allSatisfy { abs(Double($0) - $1) <= tol } }
        for threads in [1, 2] {
            let ctx = ComputeContext(threads: threads)
            #expect(close(lin(x, .bias, ctx).data, want), "bias, \(threads) threads")
            #expect(close(lin(x, .biasGELU, ctx).data, gelu), "bias+gelu, \(threads) threads")
            var residual = start
            lin.accumulate(x, into: &residual, ctx)
            #expect(close(residual.data, zip(start.data, want).map { Double($0) + $1 }), "accumulate, \(threads) threads")
        }
    }

    /// The fused MLP (row blocks: fc1 → GELU → fc2 into the residual) against the two products,
    /// into a separate residual and in place, on row counts that leave a short last block; and a
    /// case too small to fuse (falls back to the two products).
    @Test(arguments: [(1100, 64, 256), (3001, 40, 96), (700, 24, 100), (30, 16, 64)])
    func fusedMLPMatchesTwoProducts(_ n: Int, _ c: Int, _ hidden: Int) {
        var rng = TestRNG(state: UInt64(n + c + hidden))
        let fc1 = Linear(weight: rng.tensor([hidden, c]), bias: (0..<hidden).map { _ in rng.next() })
        let fc2 = Linear(weight: rng.tensor([c, hidden]), bias: (0..<c).map { _ in rng.next() })
        let x = rng.tensor([n, c]), start = rng.tensor([n, c])
        let ctx = ComputeContext(threads: 2)
        var want = start
        fc2.accumulate(fc1(x, .biasGELU, ctx), into: &want, ctx)
        var inPlaceWant = x
        fc2.accumulate(fc1(x, .biasGELU, ctx), into: &inPlaceWant, ctx)
        var profiled = ctx
        profiled.profiler = Profiler()
        var got = start
        Linear.mlpAccumulate(x, fc1: fc1, fc2: fc2, into: &got, profiled)
        var inPlace = x
        Linear.mlpAccumulateInPlace(&inPlace, fc1: fc1, fc2: fc2, profiled)
        // the first two shapes are big enough to fuse (the profile names the fused op "mlp"), the others not
        #expect(profiled.profiler!.report.contains { $0.kind == "mlp" && $0.calls == 2 } == (n >= 1000 && PackedF32.available))
        let scale = want.data.map { abs($0) }.max()!
        #expect(maxAbsDiff(got.data, want.data) <= 1e-6 * scale)
        #expect(maxAbsDiff(inPlace.data, inPlaceWant.data) <= 1e-6 * scale)
        #expect(maxAbsDiff(got.data, start.data) > 1e-3 * scale)   // it did add something
    }

    /// After an fp32 call the Linear keeps only its packed panels: `weight` unpacks them to exactly
    /// the weights it was given, and bf16 packing and folding still start from those.
    @Test func linearWeightSurvivesPacking() {
        var rng = TestRNG(state: 99)
        let w = rng.tensor([45, 37]), bias = (0..<45).map { _ in rng.next() }
        let lin = Linear(weight: w, bias: bias), x = rng.tensor([13, 37])
        let ctx = ComputeContext(threads: 2)
        let before = lin(x, .bias, ctx)
        #expect(lin.weight == w)
        #expect(lin(x, .bias, ctx) == before)
        let bf16 = ComputeContext(threads: 2, precision: .bf16)
        let fresh = Linear(weight: w, bias: bias)
        #expect(lin(x, .bias, bf16) == fresh(x, .bias, bf16))
        let scale = (0..<37).map { _ in rng.next() }, shift = (0..<37).map { _ in rng.next() }
        #expect(lin.foldingInputAffine(scale: scale, shift: shift).weight == fresh.foldingInputAffine(scale: scale, shift: shift).weight)
    }
}

/// An Int32 pointer that may cross into parallel chunks (disjoint writes).
struct SharedInt32: @unchecked Sendable {
    let base: UnsafeMutablePointer<Int32>
    init(_ base: UnsafeMutablePointer<Int32>) { self.base = base }
}
