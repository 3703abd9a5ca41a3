//! DeltaXYWHBBoxCoder.decode (core/bbox/coder/delta_xywh_bbox_coder.py, mmdet 2.11 delta2bbox):
//! deltas·stds + means; dw, dh clamped to ±|log(16/1000)|; centre/size arithmetic in float32 as torch
//! does it; boxes clipped to [0, W] × [0, H] of `maxShape` when given (clip_border).
//! Config keys: target_means, target_stds (defaults 0 and 1), clip_border (default true).

import Foundation
import ModelConfig

public struct DeltaXYWHBBoxCoder: Sendable, Equatable {
    public var means: SIMD4<Float>
    public var stds: SIMD4<Float>
    public var clipBorder: Bool

    /// |log(16 / 1000)|, computed in float64 as numpy does, used as a float32 clamp bound.
    static let maxRatio = Float(abs(log(16.0 / 1000.0)))

    public init(means: SIMD4<Float> = .zero, stds: SIMD4<Float> = .one, clipBorder: Bool = true) {
        self.means = means; self.stds = stds; self.clipBorder = clipBorder
    }

    public init(_ node: ConfigNode) throws {
        let type = try node.string("type")
        guard type == "DeltaXYWHBBoxCoder" else { throw ConfigError.unknownType(file: node.file, field: node.fieldPath("type"), type: type) }
        let m = try node.has("target_means") ? node.doubles("target_means") : [0, 0, 0, 0]
        let s = try node.has("target_stds") ? node.doubles("target_stds") : [1, 1, 1, 1]
        guard m.count == 4, s.count == 4 else { throw node.invalid("target_stds", "target_means and target_stds need 4 values") }
        self.init(means: SIMD4(m.map(Float.init)), stds: SIMD4(s.map(Float.init)), clipBorder: try node.bool("clip_border", default: true))
    }

    /// One box from a reference box [x1, y1, x2, y2] and its deltas; maxShape is (height, width).
    @inline(__always)
    public func decode(_ roi: SIMD4<Float>, _ delta: SIMD4<Float>, maxShape: (h: Int, w: Int)?) -> SIMD4<Float> {
        let d = delta * stds + means
        let dw = min(max(d[2], -Self.maxRatio), Self.maxRatio)
        let dh = min(max(d[3], -Self.maxRatio), Self.maxRatio)
        let px = (roi[0] + roi[2]) * 0.5, py = (roi[1] + roi[3]) * 0.5
        let pw = roi[2] - roi[0], ph = roi[3] - roi[1]
        let gw = pw * expf(dw), gh = ph * expf(dh)
        let gx = px + pw * d[0], gy = py + ph * d[1]
        var b = SIMD4(gx - gw * 0.5, gy - gh * 0.5, gx + gw * 0.5, gy + gh * 0.5)
        if clipBorder, let s = maxShape {
            let hi = SIMD4(Float(s.w), Float(s.h), Float(s.w), Float(s.h))
            let zero = SIMD4<Float>(repeating: 0)
            b = b.replacing(with: zero, where: b .< zero)
            b = b.replacing(with: hi, where: b .> hi)
        }
        return b
    }
}
