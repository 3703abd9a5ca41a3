//! The `data` block of a config: how an image becomes the network input (mmdet/mmseg test pipeline).
//!
//!   "data": {"mean": [...], "std": [...], "to_rgb": true, "scale": [1333, 800],
//!            "keep_ratio": true, "size_divisor": 32}
//! `scale` null means no resize; `size_divisor` null means no padding. `align_divisor` N (Semantic
//! FPN's test pipeline, upstream fpn_seg/align_resize.py AlignResize(size_divisor=N)) resizes the
//! resized image a second time, bilinear, to the next multiples of N.

public struct DataConfig: Sendable, Equatable {
    public var mean: [Float]
    public var std: [Float]
    public var toRGB: Bool
    public var scale: (Int, Int)?
    public var keepRatio: Bool
    public var sizeDivisor: Int?
    public var alignDivisor: Int?

    public static let imagenetPixels = DataConfig(mean: [123.675, 116.28, 103.53], std: [58.395, 57.12, 57.375],
                                                  toRGB: true, scale: nil, keepRatio: true, sizeDivisor: nil)

    public init(mean: [Float], std: [Float], toRGB: Bool, scale: (Int, Int)?, keepRatio: Bool, sizeDivisor: Int?,
                alignDivisor: Int? = nil) {
        self.mean = mean; self.std = std; self.toRGB = toRGB
        self.scale = scale; self.keepRatio = keepRatio; self.sizeDivisor = sizeDivisor; self.alignDivisor = alignDivisor
    }

    public static func == (a: DataConfig, b: DataConfig) -> Bool {
        a.mean == b.mean && a.std == b.std && a.toRGB == b.toRGB && a.scale?.0 == b.scale?.0
            && a.scale?.1 == b.scale?.1 && a.keepRatio == b.keepRatio && a.sizeDivisor == b.sizeDivisor
            && a.alignDivisor == b.alignDivisor
    }

    public init(_ node: ConfigNode) throws {
        mean = try node.doubles("mean").map(Float.init)
        std = try node.doubles("std").map(Float.init)
        guard mean.count == 3 else { throw node.invalid("mean", "needs 3 values, got \(mean.count)") }
        guard std.count == 3, std.allSatisfy({ $0 > 0 }) else { throw node.invalid("std", "needs 3 positive values") }
        toRGB = try node.bool("to_rgb", default: true)
        keepRatio = try node.bool("keep_ratio", default: true)
        if node.has("scale") {
            let s = try node.ints("scale")
            guard s.count == 2, s.allSatisfy({ $0 > 0 && $0 <= 16384 }) else {
                throw node.invalid("scale", "needs two sizes in 1...16384, got \(s)")
            }
            scale = (s[0], s[1])
        } else { scale = nil }
        if node.has("size_divisor") {
            let d = try node.int("size_divisor")
            guard d > 0 && d <= 1024 else { throw node.invalid("size_divisor", "must be in 1...1024, got \(d)") }
            sizeDivisor = d
        } else { sizeDivisor = nil }
        if node.has("align_divisor") {
            let d = try node.int("align_divisor")
            guard d > 0 && d <= 1024 else { throw node.invalid("align_divisor", "must be in 1...1024, got \(d)") }
            alignDivisor = d
        } else { alignDivisor = nil }
    }
}
