//! The `model` dict of a segmentation config: mmseg's EncoderDecoder (as upstream's
//! configs/_base_/models/upernet_uniformer.py and fpn_uniformer.py), flattened to JSON.
//!
//!   type EncoderDecoder; backbone (UniFormer); neck (FPN, Semantic FPN only);
//!   decode_head: UPerHead {in_channels, in_index, pool_scales, channels, num_classes, align_corners}
//!             or FPNHead {in_channels, in_index, feature_strides, channels, num_classes, align_corners};
//!   auxiliary_head: read for nothing (its weights are skipped by name); test_cfg {mode: whole | slide,
//!   crop_size [h, w], stride [h, w]}.
//! Ignored (training only): pretrained, train_cfg, dropout_ratio, loss_decode, norm_cfg (BN at test time).

import Backbone
import ModelConfig
import Necks

public enum DecodeHeadConfig: Sendable, Equatable {
    case uper(inChannels: [Int], inIndex: [Int], poolScales: [Int], channels: Int)
    case fpn(inChannels: [Int], inIndex: [Int], featureStrides: [Int], channels: Int)
}

public enum InferenceMode: Sendable, Equatable {
    case whole
    case slide(crop: (h: Int, w: Int), stride: (h: Int, w: Int))

    public static func == (a: InferenceMode, b: InferenceMode) -> Bool {
        switch (a, b) {
        case (.whole, .whole): return true
        case let (.slide(c1, s1), .slide(c2, s2)): return c1 == c2 && s1 == s2
        default: return false
        }
    }
}

public struct SegmentorConfig: Sendable, Equatable {
    public var backbone: UniFormerConfig
    public var neck: FPNConfig?
    public var head: DecodeHeadConfig
    public var numClasses: Int
    public var alignCorners: Bool
    public var mode: InferenceMode

    public init(_ model: ConfigNode) throws {
        let type = try model.string("type")
        guard type == "EncoderDecoder" else { throw ConfigError.unknownType(file: model.file, field: model.fieldPath("type"), type: type) }
        backbone = try UniFormerConfig(model.child("backbone"))
        guard backbone.numClasses == 0 else { throw model.invalid("backbone.num_classes", "a segmentation backbone has no classifier") }
        neck = try model.optionalChild("neck").map(FPNConfig.init)
        let h = try model.child("decode_head")
        let htype = try h.string("type")
        numClasses = try h.int("num_classes")
        guard numClasses >= 1 && numClasses <= 256 else { throw h.invalid("num_classes", "must be in 1...256 (a palette PNG holds 256 labels)") }
        alignCorners = try h.bool("align_corners", default: false)
        let inChannels = try h.ints("in_channels")
        let inIndex = try h.has("in_index") ? h.ints("in_index") : Array(0..<inChannels.count)
        let channels = try h.int("channels")
        guard inIndex.count == inChannels.count, channels > 0 else { throw h.invalid("in_index", "needs one index per in_channels entry") }
        let levels = neck?.numOuts ?? 4
        guard inIndex.allSatisfy({ $0 >= 0 && $0 < levels }) else { throw h.invalid("in_index", "indices must be below \(levels)") }
        // the channels each level really has: the neck's out_channels, or the backbone's widths
        let available = neck.map { n in [Int](repeating: n.outChannels, count: n.numOuts) } ?? backbone.embedDim
        for (i, idx) in inIndex.enumerated() where available[idx] != inChannels[i] {
            throw h.invalid("in_channels", "entry \(i) is \(inChannels[i]) but level \(idx) has \(available[idx]) channels")
        }
        if let n = neck, n.inChannels != Array(backbone.embedDim.prefix(n.inChannels.count)) {
            throw model.invalid("neck.in_channels", "\(n.inChannels) disagrees with backbone.embed_dim \(backbone.embedDim)")
        }
        switch htype {
        case "UPerHead":
            let scales = try h.has("pool_scales") ? h.ints("pool_scales") : [1, 2, 3, 6]
            guard scales.allSatisfy({ $0 > 0 && $0 <= 64 }) else { throw h.invalid("pool_scales", "must be in 1...64") }
            head = .uper(inChannels: inChannels, inIndex: inIndex, poolScales: scales, channels: channels)
        case "FPNHead":
            let strides = try h.ints("feature_strides")
            guard strides.count == inChannels.count, strides.allSatisfy({ $0 > 0 && $0 & ($0 - 1) == 0 }),
                  zip(strides, strides.dropFirst()).allSatisfy({ $0 < $1 }) else {
                throw h.invalid("feature_strides", "needs increasing powers of two, one per input")
            }
            head = .fpn(inChannels: inChannels, inIndex: inIndex, featureStrides: strides, channels: channels)
        default:
            throw ConfigError.unknownType(file: h.file, field: h.fieldPath("type"), type: htype)
        }
        if let test = try model.optionalChild("test_cfg") {
            switch try test.string("mode", default: "whole") {
            case "whole": mode = .whole
            case "slide":
                let c = try test.ints("crop_size"), s = try test.ints("stride")
                guard c.count == 2, s.count == 2, (c + s).allSatisfy({ $0 > 0 && $0 <= 8192 }) else {
                    throw test.invalid("crop_size", "crop_size and stride need two positive sizes [h, w]")
                }
                mode = .slide(crop: (c[0], c[1]), stride: (s[0], s[1]))
            case let other: throw test.invalid("mode", "unknown mode '\(other)' (whole or slide)")
            }
        } else {
            mode = .whole
        }
    }
}
