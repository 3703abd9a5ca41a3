//! `uniformer bench --model CONFIG --size WxH` — time the network on a random input.
//! Random weights of the config's shapes when no `--weights` are given.

import ArgumentParser
import Backbone
import Foundation
import TensorCore
import Detection
import Segmentation
import UniFormer
import Weights

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Benchmark a model: min/median/max ms, GFLOPS, peak RSS.")

    @Option(help: "A config file, or the name of one in configs/.")
    var model: String

    @Option(help: "Checkpoint; random weights of the config's shapes when omitted.")
    var weights: String?

    @Option(help: "Input size WxH.")
    var size: String = "224x224"

    @Option(help: "Timed runs.")
    var runs: Int = 10

    @Option(help: "Untimed warm-up runs.")
    var warmup: Int = 2

    @Option(help: "Threads (default: all cores).")
    var threads: Int?

    @Option(help: "Override stage-3 attention: global, window:N or hybrid:N.")
    var attention: String?

    @Option(help: "Matrix products in fp32, or bf16 with fp32 accumulation (AMX / AVX512-BF16; fp32 where the CPU has neither).")
    var precision: Precision = .fp32

    @Flag(help: "Print one JSON object.")
    var json = false

    @Flag(help: "Print the time per operator kind (median run's share, summed over the timed runs).")
    var profile = false

    @Flag(help: "--profile with the linear layers by shape (tokens×in→out) instead of one line per kind.")
    var profileShapes = false

    func run() throws {
        try reporting {
            let parts = size.lowercased().split(separator: "x").compactMap { Int($0) }
            guard parts.count == 2, parts.allSatisfy({ $0 >= 32 && $0 <= 8192 }) else {
                throw ValidationError("--size must be WxH with sides in 32...8192 (got '\(size)')")
            }
            guard runs >= 1, warmup >= 0 else { throw ValidationError("--runs must be ≥ 1 and --warmup ≥ 0") }
            let (w, h) = (parts[0], parts[1])
            let mode = try parseAttention(attention)
            let file = try ModelFile(contentsOf: try ModelFile.resolve(model))
            let config = try file.backboneConfig()
            var ctx = ComputeContext(threads: threads, precision: precision)
            warnIfFallback(requested: precision, ctx)
            let profiler = Profiler(byShape: profileShapes)
            let root: WeightScope = try weights.map { WeightScope(try StateDict(contentsOf: URL(fileURLWithPath: $0))) }
                ?? WeightScope.random(seed: 0)
            var rng = SplitMix(seed: 1)
            let input = Tensor(shape: [1, 3, h, w], data: (0..<(3 * h * w)).map { _ in rng.nextFloat() * 2 - 1 })
            let net: UniFormerBackbone
            let once: () -> Void
            switch file.kind {
            case .backbone:
                let scope = root.dict.keys.contains { $0.hasPrefix("backbone.") } ? root.child("backbone") : root
                let b = try UniFormerBackbone(config: config, weights: scope)
                net = b
                once = {
                    if config.numClasses > 0 { _ = b.classify(input, attention: mode, ctx) }
                    else { _ = b.features(input, attention: mode, ctx) }
                }
            case .segmentation:
                // the network as `segment` runs it on an already resized input: whole or slide inference
                let seg = try Segmentor(config: try SegmentorConfig(file.model), weights: root)
                net = seg.backbone
                once = { _ = seg.inference(input, attention: mode, ctx) }
            case .detection:
                // the whole detector on an already resized and padded input, the image filling it
                let det = try AnyDetector(file.model, weights: root)
                net = det.backbone
                let meta = ImageMeta(originalSize: (h, w), imageShape: (h, w))
                once = { _ = det.detect(input, meta: meta, attention: mode, ctx) }
            }
            for _ in 0..<warmup { once() }
            // one counted pass: the floating-point operations of the whole network as it ran
            // (heads included, proposals as many as this input gives)
            let counter = Profiler()
            ctx.profiler = counter
            once()
            ctx.profiler = nil
            if profile || profileShapes { ctx.profiler = profiler }
            var times: [Double] = []
            let wait0 = parallelWaitSeconds()
            for _ in 0..<runs {
                let t0 = DispatchTime.now().uptimeNanoseconds
                once()
                times.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6)
            }
            times.sort()
            let median = times.count % 2 == 1 ? times[times.count / 2] : (times[times.count / 2 - 1] + times[times.count / 2]) / 2
            let gflop = counter.flops / 1e9
            let backboneGFLOP = net.flops(height: h, width: w, attention: mode) / 1e9
            let rss = peakRSSMegabytes()
            if json {
                print(String(format: "{\"median_ms\": %.3f, \"min_ms\": %.3f, \"max_ms\": %.3f, \"gflops\": %.2f, \"gflop\": %.3f, \"peak_rss_mb\": %.1f",
                             median, times.first!, times.last!, gflop / (median / 1e3), gflop, rss)
                      + ", \"precision\": \"\(ctx.precision.rawValue)\"}")
            } else {
                print("model:   \(file.url.lastPathComponent) \(w)×\(h), stage 3 \(mode ?? config.attention), \(ctx.threads) threads, \(ctx.precision.rawValue)\(ctx.bf16.map { " (\($0.rawValue))" } ?? "")")
                print(String(format: "time:    median %.1f ms (min %.1f, max %.1f) over %d runs", median, times.first!, times.last!, runs))
                print(String(format: "compute: %.2f GFLOP → %.1f GFLOPS", gflop, gflop / (median / 1e3))
                      + (file.kind == .backbone ? "" : String(format: " (backbone %.2f GFLOP)", backboneGFLOP)))
                print(String(format: "memory:  peak RSS %.0f MB", rss))
            }
            if profile || profileShapes {
                let total = times.reduce(0, +) / 1e3
                let report = profiler.report
                let stages = report.filter { $0.kind.hasPrefix("stage: ") }
                if !stages.isEmpty {
                    print("per stage (mean per run):")
                    for r in stages {
                        print("  " + String(r.kind.dropFirst(7)).padding(toLength: 18, withPad: " ", startingAt: 0)
                              + String(format: "%8.2f ms  %5.1f%%  (waiting %.1f ms)", r.seconds / Double(runs) * 1e3, r.seconds / total * 100,
                                       r.waiting / Double(runs) * 1e3))
                    }
                }
                print(String(format: "waiting: %.2f ms per run (the calling thread, for the workers to finish their share of a loop)",
                             (parallelWaitSeconds() - wait0) / Double(runs) * 1e3))
                print("per operator kind (mean per run):")
                for r in report where !r.kind.hasPrefix("stage: ") {
                    print("  " + r.kind.padding(toLength: profileShapes ? 34 : 18, withPad: " ", startingAt: 0)
                          + String(format: "%8.2f ms  %5.1f%%  (%d calls/run, waiting %.2f ms)", r.seconds / Double(runs) * 1e3,
                                   r.seconds / total * 100, r.calls / runs, r.waiting / Double(runs) * 1e3))
                }
            }
        }
    }
}

func peakRSSMegabytes() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Double(usage.ru_maxrss) / 1024   // Linux: kilobytes
}

/// A small deterministic generator for benchmark inputs.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func nextFloat() -> Float { Float(next() >> 40) / Float(1 << 24) }
}
