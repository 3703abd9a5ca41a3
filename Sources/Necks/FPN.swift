//! Feature Pyramid Network neck, as mmdet/mmseg `FPN` (necks/fpn.py), without normalisation
//! (UniFormer's configs give none): lateral 1×1 convs, top-down `interpolate(mode='nearest',
//! size=…)` and add, 3×3 output convs; extra levels when `num_outs` exceeds the inputs:
//! max_pool2d(kernel 1, stride 2) of the last output (add_extra_convs false) or stride-2 3×3 convs
//! (`add_extra_convs: on_input | on_output | on_lateral`, with ReLU before all but the first when
//! relu_before_extra_convs).
//! Config keys: in_channels, out_channels, num_outs, start_level, end_level, add_extra_convs,
//! relu_before_extra_convs. Keys: neck.lateral_convs.{i}.conv.*, neck.fpn_convs.{i}.conv.*.
//! Maps are channels-last [H, W, C].

import ModelConfig
import TensorCore
import Weights

public struct FPNConfig: Sendable, Equatable {
    public enum ExtraSource: String, Sendable { case off, onInput = "on_input", onLateral = "on_lateral", onOutput = "on_output" }
    public var inChannels: [Int]
    public var outChannels: Int
    public var numOuts: Int
    public var startLevel: Int
    public var endLevel: Int       // exclusive index into inChannels
    public var extra: ExtraSource
    public var reluBeforeExtraConvs: Bool

    public init(_ node: ConfigNode) throws {
        let type = try node.string("type")
        guard type == "FPN" else { throw ConfigError.unknownType(file: node.file, field: node.fieldPath("type"), type: type) }
        inChannels = try node.ints("in_channels")
        outChannels = try node.int("out_channels")
        numOuts = try node.int("num_outs")
        startLevel = try node.int("start_level", default: 0)
        let end = try node.int("end_level", default: -1)
        endLevel = end == -1 ? inChannels.count : end + 1
        switch node.value["add_extra_convs"] {
        case nil, .null?, .bool(false)?: extra = .off
        case .bool(true)?: extra = .onInput
        case let .string(s)?:
            guard let e = ExtraSource(rawValue: s), e != .off else { throw node.invalid("add_extra_convs", "unknown value '\(s)'") }
            extra = e
        case let v?: throw ConfigError.wrongType(file: node.file, field: node.fieldPath("add_extra_convs"), expected: "false or a string", got: v.typeName)
        }
        reluBeforeExtraConvs = try node.bool("relu_before_extra_convs", default: false)
        guard !inChannels.isEmpty, outChannels > 0, startLevel >= 0, endLevel <= inChannels.count, startLevel < endLevel else {
            throw node.invalid("in_channels", "levels \(startLevel)..<\(endLevel) of \(inChannels)")
        }
        guard numOuts >= endLevel - startLevel && numOuts <= 8 else { throw node.invalid("num_outs", "must cover the used levels (\(endLevel - startLevel)) and be ≤ 8") }
    }
}

public struct FPN: Sendable {
    public let config: FPNConfig
    let laterals: [ConvModule]
    let outputs: [ConvModule]
    let extras: [ConvModule]

    public init(config: FPNConfig, weights w: WeightScope) throws {
        self.config = config
        let c = config.outChannels
        let used = config.startLevel..<config.endLevel
        laterals = try used.enumerated().map { i, level in
            try ConvModule(w.child("lateral_convs").child(i), in: config.inChannels[level], out: c, kernel: 1, norm: false, relu: false)
        }
        outputs = try (0..<used.count).map { i in
            try ConvModule(w.child("fpn_convs").child(i), in: c, out: c, kernel: 3, padding: 1, norm: false, relu: false)
        }
        let extraCount = config.numOuts - used.count
        if config.extra == .off || extraCount <= 0 {
            extras = []
        } else {
            extras = try (0..<extraCount).map { j in
                let cin = (j == 0 && config.extra == .onInput) ? config.inChannels[config.endLevel - 1] : c
                return try ConvModule(w.child("fpn_convs").child(used.count + j), in: cin, out: c, kernel: 3,
                                      padding: 1, stride: 2, norm: false, relu: false)
            }
        }
    }

    /// inputs: the backbone levels [H_i, W_i, C_i] → num_outs maps [H_j, W_j, out_channels].
    public func callAsFunction(_ inputs: [Tensor], _ ctx: ComputeContext) -> [Tensor] {
        let used = Array(inputs[config.startLevel..<config.endLevel])
        var lat = zip(laterals, used).map { $0(($1), ctx) }
        // fpn.py: laterals[i-1] += F.interpolate(laterals[i], size=prev_shape, mode='nearest')
        for i in stride(from: lat.count - 1, to: 0, by: -1) {
            let up = resizeNearest(lat[i], height: lat[i - 1].shape[0], width: lat[i - 1].shape[1], ctx)
            addInPlace(&lat[i - 1], up)
        }
        var outs = zip(outputs, lat).map { $0($1, ctx) }
        let extraCount = config.numOuts - outs.count
        if extraCount > 0 {
            if extras.isEmpty {
                // F.max_pool2d(outs[-1], 1, stride=2): every other row and column
                for _ in 0..<extraCount { outs.append(subsample2(outs[outs.count - 1])) }
            } else {
                var src: Tensor
                switch config.extra {
                case .onInput: src = inputs[config.endLevel - 1]
                case .onLateral: src = lat[lat.count - 1]
                default: src = outs[outs.count - 1]
                }
                for (j, conv) in extras.enumerated() {
                    if j > 0 && config.reluBeforeExtraConvs { reluInPlace(&src, ctx) }
                    let y = conv(src, ctx)
                    outs.append(y)
                    src = y
                }
            }
        }
        return outs
    }
}

/// max_pool2d(x, kernel 1, stride 2) on [H, W, C]: rows and columns 0, 2, 4, … (⌈H/2⌉ × ⌈W/2⌉).
func subsample2(_ x: Tensor) -> Tensor {
    let (h, w, c) = (x.shape[0], x.shape[1], x.shape[2])
    let ho = (h - 1) / 2 + 1, wo = (w - 1) / 2 + 1
    return Tensor(uninitialized: [ho, wo, c]) { out in
        x.data.withUnsafeBufferPointer { xp in
            for y in 0..<ho { for xx in 0..<wo {
                (out.baseAddress! + (y * wo + xx) * c).update(from: xp.baseAddress! + (2 * y * w + 2 * xx) * c, count: c)
            } }
        }
    }
}
