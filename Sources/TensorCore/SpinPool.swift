//! The engine's worker threads: started once, they spin for a moment between parallel loops and
//! only then sleep, as ggml's and ONNX Runtime's pools do.
//!
//! Why: a forward pass is ~150 parallel loops, many of them a few tens of microseconds long at 224²
//! (stage 4 has 49 tokens). Waking a sleeping Dispatch worker for each costs a futex wake-up and,
//! in a VM, an inter-processor interrupt to a halted vCPU — comparable to the work itself. A worker
//! that is still spinning picks the next loop up within a few hundred nanoseconds.
//!
//! Protocol. `run` publishes a job (body, home ranges, smallest piece) and bumps `generation`; each
//! worker that sees the new generation works through home range w + 1 and then the others' (below;
//! the caller starts on range 0) and counts itself done in `pending`. The caller spins until `pending` is zero. A worker that has seen
//! no new generation for `spinNanos` sleeps on a condition variable; `run` signals only when
//! `sleeping` says someone sleeps. Both counters are sequentially consistent, so a worker going to
//! sleep either sees the new generation or is seen as sleeping (no lost wake-up).
//! One job at a time: a `run` that finds the pool busy (another thread's loop, or a loop nested in
//! a chunk) returns false and the caller falls back to Dispatch.
//!
//! Shares are balanced while the loop runs. On the VMs we run on the two cores' speeds differ by
//! 5–15 % from one loop to the next, in either direction and without a pattern (measured on a Mask
//! R-CNN pass, equal halves: the per-loop ratio of the two threads' times correlated 0.1 between
//! passes, and one thread sat idle 170–570 ms of a ~3 s pass). So each thread owns an equal,
//! contiguous home range and works through it from the front — three quarters in its first piece,
//! then halves of what is left — and a thread whose range is empty takes the back half of what is
//! left of the fullest other range. Both finish within a small piece of each other, and a thread
//! still works on a prefix of its own rows, so what it wrote in the previous loop is in its cache.

import CKernels
import Foundation
import Synchronization

final class SpinPool: @unchecked Sendable {
    /// The process-wide pool: one worker per core but the caller's; none (Dispatch only) when the
    /// environment sets UNIFORMER_SPIN=0 (a machine shared with other busy processes, A/B timing).
    static let shared = SpinPool(workers: ProcessInfo.processInfo.environment["UNIFORMER_SPIN"] == "0"
                                 ? 0 : max(0, ProcessInfo.processInfo.activeProcessorCount - 1))

    /// How long an idle worker spins before it sleeps.
    static let spinNanos: UInt64 = 2_000_000

    let workers: Int
    private let generation = Atomic<Int>(0)
    private let pending = Atomic<Int>(0)
    private let sleeping = Atomic<Int>(0)
    private let busy = Atomic<Bool>(false)
    /// Nanoseconds `run`'s caller has spent waiting for workers to finish their chunks.
    let callerWaitNanos = Atomic<Int>(0)
    private let mutex = NSCondition()
    // Written by `run` before the generation bump, read by workers after they see it.
    private var body: ((Int, Range<Int>) -> Void)?
    private var chunks = 0
    private var minPiece = 1
    /// Per thread (0: the caller, w + 1: worker w): what is left of its home range.
    private let ranges: [Remaining]

    /// The unclaimed part [front, back) of one thread's home range, in one atomic word (front in
    /// the low 32 bits) so that the owner's claims at the front and thieves' claims at the back
    /// never overlap.
    private final class Remaining: Sendable {
        let span = Atomic<Int>(0)

        static func pack(_ front: Int, _ back: Int) -> Int { front | back << 32 }

        /// Claims `size(left)` items at the front (`fromBack` false) or the back; nil when empty.
        func claim(fromBack: Bool, _ size: (Int) -> Int) -> Range<Int>? {
            var word = span.load(ordering: .acquiring)
            while true {
                let front = word & 0xffff_ffff, back = word >> 32
                guard front < back else { return nil }
                let g = min(back - front, size(back - front))
                let (next, range) = fromBack ? (Remaining.pack(front, back - g), back - g ..< back)
                                             : (Remaining.pack(front + g, back), front ..< front + g)
                let (done, seen) = span.compareExchange(expected: word, desired: next, ordering: .acquiringAndReleasing)
                if done { return range }
                word = seen
            }
        }

        var left: Int {
            let word = span.load(ordering: .relaxed)
            return max(0, (word >> 32) - (word & 0xffff_ffff))
        }
    }

    init(workers: Int) {
        self.workers = workers
        ranges = (0...workers).map { _ in Remaining() }
        for w in 0..<workers {
            let thread = Thread { [unowned self] in self.workerLoop(w) }
            thread.name = "uniformer-worker-\(w)"
            thread.start()
        }
    }

    /// Runs body(i, range) over 0..<count on the caller (i = 0) and `chunks - 1` workers, each range
    /// claimed by thread i (see above; no piece shorter than `minPiece` but a range's last); false
    /// (nothing run) when the pool is busy or too small, so the caller can use another way.
    func run(count: Int, chunks: Int, minPiece: Int, _ body: (Int, Range<Int>) -> Void) -> Bool {
        guard chunks - 1 <= workers, chunks > 1, count < 1 << 31 else { return false }
        guard busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else { return false }
        defer { busy.store(false, ordering: .releasing) }
        withoutActuallyEscaping(body) { body in
            self.body = body
            self.chunks = chunks
            self.minPiece = max(1, minPiece)
            for i in 0..<chunks {
                ranges[i].span.store(Remaining.pack(count * i / chunks, count * (i + 1) / chunks), ordering: .relaxed)
            }
            pending.store(workers, ordering: .sequentiallyConsistent)
            generation.add(1, ordering: .sequentiallyConsistent)
            if sleeping.load(ordering: .sequentiallyConsistent) > 0 {
                mutex.lock(); mutex.broadcast(); mutex.unlock()
            }
            work(0, body)
            var spins = 0
            let t0 = pending.load(ordering: .acquiring) > 0 ? DispatchTime.now().uptimeNanoseconds : 0
            defer { if t0 > 0 { callerWaitNanos.add(Int(DispatchTime.now().uptimeNanoseconds - t0), ordering: .relaxed) } }
            while pending.load(ordering: .acquiring) > 0 {
                spins += 1
                // a descheduled worker (more threads than free cores): let it run
                if spins > 20_000 { sched_yield() } else { spinPause() }
            }
            self.body = nil
        }
        return true
    }

    /// Thread `i`'s part of a loop: its home range front first, then the backs of the others'.
    private func work(_ i: Int, _ body: (Int, Range<Int>) -> Void) {
        let minPiece = self.minPiece, n = chunks
        var first = true
        while let r = ranges[i].claim(fromBack: false, { left in max(minPiece, first ? left * 3 / 4 : left / 2) }) {
            first = false
            body(i, r)
        }
        while true {
            var victim = -1, most = 0
            for j in 0..<n where j != i {
                let left = ranges[j].left
                if left > most { most = left; victim = j }
            }
            guard victim >= 0 else { return }
            if let r = ranges[victim].claim(fromBack: true, { left in max(minPiece, left / 2) }) { body(i, r) }
        }
    }

    private func workerLoop(_ w: Int) {
        if flushSubnormals { _ = uf_flush_subnormals() }   // for good: workers run nothing but loops (ComputeContext.swift)
        var seen = 0
        while true {
            let start = DispatchTime.now().uptimeNanoseconds
            var spins = 0
            while generation.load(ordering: .acquiring) == seen {
                spinPause()
                spins += 1
                if spins & 255 == 0 && DispatchTime.now().uptimeNanoseconds - start > SpinPool.spinNanos {
                    mutex.lock()
                    sleeping.add(1, ordering: .sequentiallyConsistent)
                    while generation.load(ordering: .sequentiallyConsistent) == seen { mutex.wait() }
                    sleeping.subtract(1, ordering: .sequentiallyConsistent)
                    mutex.unlock()
                }
            }
            seen = generation.load(ordering: .acquiring)
            if w + 1 < chunks, let body { work(w + 1, body) }
            pending.subtract(1, ordering: .releasing)
        }
    }
}

/// How long the calling thread of parallel loops has waited for the workers (all loops so far):
/// time one thread sat idle because the other's share of a loop took longer (`bench --profile`).
public func parallelWaitSeconds() -> Double { Double(SpinPool.shared.callerWaitNanos.load(ordering: .relaxed)) / 1e9 }

@inline(__always)
private func spinPause() { uf_cpu_pause() }
