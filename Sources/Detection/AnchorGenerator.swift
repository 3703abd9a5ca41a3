//! mmdet's AnchorGenerator (core/anchor/anchor_generator.py, mmdet 2.11), float32 as torch computes it.
//! Config keys: strides (int or [w, h]), ratios, scales | octave_base_scale + scales_per_octave,
//! base_sizes (default: min stride), scale_major (default true), center_offset (default 0).
//! Anchors of a level are position-major: for each (y, x) of the feature map, each base anchor;
//! a base anchor is ratio-major when scale_major (index ratio·S + scale).

import Foundation
import ModelConfig

public struct AnchorGenerator: Sendable, Equatable {
    public let strides: [(x: Int, y: Int)]
    public let baseAnchors: [[SIMD4<Float>]]     // per level: [x1, y1, x2, y2]

    public static func == (a: AnchorGenerator, b: AnchorGenerator) -> Bool {
        a.baseAnchors == b.baseAnchors && a.strides.map { [$0.x, $0.y] } == b.strides.map { [$0.x, $0.y] }
    }

    public var numBaseAnchors: Int { baseAnchors.first?.count ?? 0 }

    public init(strides: [(x: Int, y: Int)], ratios: [Float], scales: [Float], baseSizes: [Float]? = nil,
                scaleMajor: Bool = true, centerOffset: Float = 0) {
        self.strides = strides
        let sizes = baseSizes ?? strides.map { Float(min($0.x, $0.y)) }
        baseAnchors = sizes.map { base in
            let cx = centerOffset * base, cy = centerOffset * base
            let hRatios = ratios.map { $0.squareRoot() }
            let wRatios = hRatios.map { 1 / $0 }
            var out: [SIMD4<Float>] = []
            let pairs: [(Int, Int)] = scaleMajor
                ? ratios.indices.flatMap { r in scales.indices.map { (r, $0) } }
                : scales.indices.flatMap { s in ratios.indices.map { ($0, s) } }
            for (r, s) in pairs {
                // torch: w * w_ratios[:, None] * scales[None, :] (left to right in float32)
                let ws = base * wRatios[r] * scales[s], hs = base * hRatios[r] * scales[s]
                out.append(SIMD4(cx - 0.5 * ws, cy - 0.5 * hs, cx + 0.5 * ws, cy + 0.5 * hs))
            }
            return out
        }
    }

    /// From an `anchor_generator` config dict.
    public init(_ node: ConfigNode) throws {
        let type = try node.string("type")
        guard type == "AnchorGenerator" else { throw ConfigError.unknownType(file: node.file, field: node.fieldPath("type"), type: type) }
        let strides: [(x: Int, y: Int)] = try node.array("strides").enumerated().map { i, v in
            switch v {
            case let .int(s) where s > 0: return (s, s)
            case let .array(p) where p.count == 2:
                if case let .int(x) = p[0], case let .int(y) = p[1], x > 0, y > 0 { return (x, y) }
                fallthrough
            default: throw node.invalid("strides", "entry \(i) must be a positive integer or [w, h]")
            }
        }
        let ratios = try node.doubles("ratios").map(Float.init)
        let scales: [Float]
        if node.has("scales") {
            scales = try node.doubles("scales").map(Float.init)
        } else {
            let base = try node.double("octave_base_scale"), n = try node.int("scales_per_octave")
            guard n > 0 && n <= 16 else { throw node.invalid("scales_per_octave", "must be in 1...16") }
            // np.array([2**(i / n)]) * octave_base_scale in float64, then torch.Tensor (float32)
            scales = (0..<n).map { Float(pow(2.0, Double($0) / Double(n)) * base) }
        }
        let baseSizes = try node.has("base_sizes") ? node.doubles("base_sizes").map(Float.init) : nil
        guard !strides.isEmpty, !ratios.isEmpty, !scales.isEmpty, ratios.allSatisfy({ $0 > 0 }), scales.allSatisfy({ $0 > 0 }),
              baseSizes == nil || baseSizes!.count == strides.count else {
            throw node.invalid("strides", "needs strides, positive ratios and scales (and one base size per stride)")
        }
        let offset = Float(try node.double("center_offset", default: 0))
        guard (0...1).contains(offset) else { throw node.invalid("center_offset", "must be in [0, 1]") }
        self.init(strides: strides, ratios: ratios, scales: scales, baseSizes: baseSizes,
                  scaleMajor: try node.bool("scale_major", default: true), centerOffset: offset)
    }

    /// All anchors of `level` over a feat_h × feat_w map: [(y·W + x)·A + a].
    public func gridAnchors(level: Int, height: Int, width: Int) -> [SIMD4<Float>] {
        let base = baseAnchors[level], s = strides[level]
        var out: [SIMD4<Float>] = []
        out.reserveCapacity(height * width * base.count)
        for y in 0..<height {
            for x in 0..<width {
                let shift = SIMD4(Float(x * s.x), Float(y * s.y), Float(x * s.x), Float(y * s.y))
                for b in base { out.append(b + shift) }
            }
        }
        return out
    }
}
