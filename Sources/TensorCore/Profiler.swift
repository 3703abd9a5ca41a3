//! Time per operator kind (`uniformer bench --profile`). Off unless a Profiler is attached to the
//! ComputeContext; then each op adds its wall time to its kind. Ops run one after another (each op
//! parallelises inside), so the kinds add up to the forward pass.

import Dispatch
import Foundation

public final class Profiler: @unchecked Sendable {
    private var totals: [String: (seconds: Double, calls: Int, waiting: Double)] = [:]
    private var flopCount = 0.0
    private let lock = NSLock()
    /// Whether matrix-product kinds carry their shape ("linear 196×320→1280"), to see which
    /// products take the time (`uniformer bench --profile-shapes`).
    public let byShape: Bool

    /// Floating-point operations the ops reported (2 per multiply-add of convolutions, linear
    /// layers and attention products; Winograd counts the direct convolution it replaces).
    public var flops: Double {
        lock.lock(); defer { lock.unlock() }
        return flopCount
    }

    public func addFLOPs(_ x: Double) {
        lock.lock(); defer { lock.unlock() }
        flopCount += x
    }

    public init(byShape: Bool = false) { self.byShape = byShape }

    /// Adds one call of `kind`: its wall time, and how long of it the calling thread waited for the
    /// workers to finish their share of its parallel loops.
    public func add(_ kind: String, _ seconds: Double, waiting: Double = 0) {
        lock.lock(); defer { lock.unlock() }
        let t = totals[kind] ?? (0, 0, 0)
        totals[kind] = (t.seconds + seconds, t.calls + 1, t.waiting + waiting)
    }

    public func reset() {
        lock.lock(); defer { lock.unlock() }
        totals = [:]
        flopCount = 0
    }

    /// (kind, seconds, calls, waiting seconds), slowest first.
    public var report: [(kind: String, seconds: Double, calls: Int, waiting: Double)] {
        lock.lock(); defer { lock.unlock() }
        return totals.map { ($0.key, $0.value.seconds, $0.value.calls, $0.value.waiting) }.sorted { $0.seconds > $1.seconds }
    }
}

extension ComputeContext {
    /// Reports an op's floating-point operations when profiling.
    @inline(__always)
    public func countFLOPs(_ x: @autoclosure () -> Double) {
        profiler?.addFLOPs(x())
    }

    /// Runs `body`, adding its wall time to `kind` when profiling.
    @inline(__always)
    public func timed<T>(_ kind: String, _ body: () -> T) -> T {
        guard let profiler else { return body() }
        let t0 = DispatchTime.now().uptimeNanoseconds, w0 = parallelWaitSeconds()
        let r = body()
        profiler.add(kind, Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9, waiting: parallelWaitSeconds() - w0)
        return r
    }
}
