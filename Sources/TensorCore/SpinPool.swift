//! The engine's worker threads: started once, they spin for a moment between parallel loops and
//! only then sleep, as ggml's and ONNX Runtime's pools do.
//!
//! Why: a forward pass is ~150 parallel loops, many of them a few tens of microseconds long at 224²
//! (stage 4 has 49 tokens). Waking a sleeping Dispatch worker for each costs a futex wake-up and,
//! in a VM, an inter-processor interrupt to a halted vCPU — comparable to the work itself. A worker
//! that is still spinning picks the next loop up within a few hundred nanoseconds.
//!
//! Protocol. `run` publishes a job (body, chunk count) and bumps `generation`; each worker that
//! sees the new generation runs its chunk (worker w takes chunk w + 1; the caller takes chunk 0) and
//! counts itself done in `pending`. The caller spins until `pending` is zero. A worker that has seen
//! no new generation for `spinNanos` sleeps on a condition variable; `run` signals only when
//! `sleeping` says someone sleeps. Both counters are sequentially consistent, so a worker going to
//! sleep either sees the new generation or is seen as sleeping (no lost wake-up).
//! One job at a time: a `run` that finds the pool busy (another thread's loop, or a loop nested in
//! a chunk) returns false and the caller falls back to Dispatch.

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
    private var body: ((Int) -> Void)?
    private var chunks = 0

    init(workers: Int) {
        self.workers = workers
        for w in 0..<workers {
            let thread = Thread { [unowned self] in self.workerLoop(w) }
            thread.name = "uniformer-worker-\(w)"
            thread.start()
        }
    }

    /// Runs body(0..<chunks) on the caller and `chunks - 1` workers; false (nothing run) when the
    /// pool is busy or too small, so the caller can use another way.
    func run(chunks: Int, _ body: (Int) -> Void) -> Bool {
        guard chunks - 1 <= workers, chunks > 1 else { return false }
        guard busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else { return false }
        defer { busy.store(false, ordering: .releasing) }
        withoutActuallyEscaping(body) { body in
            self.body = body
            self.chunks = chunks
            pending.store(workers, ordering: .sequentiallyConsistent)
            generation.add(1, ordering: .sequentiallyConsistent)
            if sleeping.load(ordering: .sequentiallyConsistent) > 0 {
                mutex.lock(); mutex.broadcast(); mutex.unlock()
            }
            body(0)
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

    private func workerLoop(_ w: Int) {
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
            if w + 1 < chunks, let body { body(w + 1) }
            pending.subtract(1, ordering: .releasing)
        }
    }
}

/// How long the calling thread of parallel loops has waited for the workers (all loops so far):
/// time one thread sat idle because the other's share of a loop took longer (`bench --profile`).
public func parallelWaitSeconds() -> Double { Double(SpinPool.shared.callerWaitNanos.load(ordering: .relaxed)) / 1e9 }

@inline(__always)
private func spinPause() { uf_cpu_pause() }
