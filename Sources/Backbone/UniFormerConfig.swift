//! The backbone dict of a config, as upstream writes it (mmdet/mmseg `backbone=dict(type='UniFormer', …)`):
//!
//!   layers (or depth) [4], embed_dim [4], head_dim, mlp_ratio, qkv_bias, qk_scale,
//!   windows, hybrid, window_size, conv_stem, layer_scale, num_classes, return_dense
//!
//! Read and ignored (training only): drop_rate, attn_drop_rate, drop_path_rate, use_checkpoint,
//! checkpoint_num, pretrained, pretrained_path, img_size, in_chans (must be 3), representation_size (must be null).

import ModelConfig

/// How stage 3 attends. Stage 4 is always global.
public enum StageAttention: Sendable, Equatable, CustomStringConvertible {
    case global
    case windows(Int)   // every stage-3 block windowed
    case hybrid(Int)    // block i global when (i + 1) % 4 == 0, else windowed

    /// Parses the CLI/runtime form `global`, `window:N`, `hybrid:N`.
    public init?(_ text: String) {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        switch (parts.first, parts.count) {
        case ("global", 1): self = .global
        case ("window", 2), ("windows", 2):
            guard let n = Int(parts[1]), n > 0 else { return nil }
            self = .windows(n)
        case ("hybrid", 2):
            guard let n = Int(parts[1]), n > 0 else { return nil }
            self = .hybrid(n)
        default: return nil
        }
    }

    public var description: String {
        switch self {
        case .global: return "global"
        case let .windows(n): return "window:\(n)"
        case let .hybrid(n): return "hybrid:\(n)"
        }
    }

    /// The window of stage-3 block `i`, or nil when that block attends globally.
    public func window(forBlock i: Int) -> Int? {
        switch self {
        case .global: return nil
        case let .windows(n): return n
        case let .hybrid(n): return (i + 1) % 4 == 0 ? nil : n
        }
    }
}

/// Where layer scale (learned per-channel γ on each residual branch) is applied.
/// `true` in a config: every block, as the token-labeling file (UniFormer-L); `"attention"`: SABlocks
/// only, as image_classification/models/uniformer.py (`uniformer_base_ls`).
public enum LayerScale: String, Sendable, Equatable {
    case none, all, attention
}

public struct UniFormerConfig: Sendable, Equatable {
    public var layers: [Int]
    public var embedDim: [Int]
    public var headDim: Int
    public var mlpRatio: Double
    public var qkvBias: Bool
    public var qkScale: Double?
    public var attention: StageAttention
    public var convStem: Bool
    public var layerScale: LayerScale
    /// Token-labeling classifiers (`return_dense`): logits = head(mean) + ½·max over tokens of aux_head.
    public var returnDense: Bool
    /// > 0: the ImageNet classifier (final BatchNorm `norm`, mean pool, `head`); 0: the dense backbone (`norm1`…`norm4`).
    public var numClasses: Int

    public init(layers: [Int] = [3, 4, 8, 3], embedDim: [Int] = [64, 128, 320, 512], headDim: Int = 64,
                mlpRatio: Double = 4, qkvBias: Bool = true, qkScale: Double? = nil, attention: StageAttention = .global,
                convStem: Bool = false, layerScale: LayerScale = .none, returnDense: Bool = false, numClasses: Int = 0) {
        self.layers = layers; self.embedDim = embedDim; self.headDim = headDim; self.mlpRatio = mlpRatio
        self.qkvBias = qkvBias; self.qkScale = qkScale; self.attention = attention
        self.convStem = convStem; self.layerScale = layerScale; self.returnDense = returnDense; self.numClasses = numClasses
    }

    public var heads: [Int] { embedDim.map { $0 / headDim } }
    public var mlpHidden: [Int] { embedDim.map { Int(Double($0) * mlpRatio) } }

    /// Reads a `"type": "UniFormer"` dict.
    public init(_ node: ConfigNode) throws {
        let type = try node.string("type")
        guard type == "UniFormer" else { throw ConfigError.unknownType(file: node.file, field: node.fieldPath("type"), type: type) }
        switch (node.has("layers"), node.has("depth")) {
        case (true, true):
            guard try node.ints("layers") == node.ints("depth") else { throw node.invalid("depth", "disagrees with 'layers'") }
            layers = try node.ints("layers")
        case (false, true): layers = try node.ints("depth")
        default: layers = try node.has("layers") ? node.ints("layers") : [3, 4, 8, 3]
        }
        embedDim = try node.has("embed_dim") ? node.ints("embed_dim") : [64, 128, 320, 512]
        headDim = try node.int("head_dim", default: 64)
        mlpRatio = try node.double("mlp_ratio", default: 4)
        qkvBias = try node.bool("qkv_bias", default: true)
        qkScale = try node.optionalDouble("qk_scale")
        convStem = try node.bool("conv_stem", default: false)
        switch node.value["layer_scale"] {
        case nil, .null?, .bool(false)?: layerScale = .none
        case .bool(true)?: layerScale = .all
        case .string("attention")?: layerScale = .attention
        case let v?: throw ConfigError.wrongType(file: node.file, field: node.fieldPath("layer_scale"),
                                                 expected: "true, false or \"attention\"", got: v.typeName)
        }
        returnDense = try node.bool("return_dense", default: false)
        numClasses = try node.int("num_classes", default: 0)
        let windows = try node.bool("windows", default: false)
        let hybrid = try node.bool("hybrid", default: false)
        let ws = try node.int("window_size", default: 14)
        // upstream checks `windows` first, then `hybrid`
        attention = windows ? .windows(ws) : hybrid ? .hybrid(ws) : .global
        if try node.int("in_chans", default: 3) != 3 { throw node.invalid("in_chans", "only 3-channel images are supported") }
        if node.has("representation_size") { throw node.invalid("representation_size", "pre-logits layers are not supported") }

        guard layers.count == 4, layers.allSatisfy({ $0 >= 0 && $0 <= 256 }) else { throw node.invalid("layers", "needs 4 block counts, got \(layers)") }
        guard embedDim.count == 4, embedDim.allSatisfy({ $0 > 0 && $0 <= 8192 }) else { throw node.invalid("embed_dim", "needs 4 widths, got \(embedDim)") }
        guard headDim > 0, embedDim[2] % headDim == 0, embedDim[3] % headDim == 0 else {
            throw node.invalid("head_dim", "\(headDim) must divide embed_dim[2] and embed_dim[3] (\(embedDim))")
        }
        guard mlpRatio > 0 && mlpRatio <= 64 else { throw node.invalid("mlp_ratio", "must be in (0, 64]") }
        guard ws > 0 && ws <= 1024 else { throw node.invalid("window_size", "must be in 1...1024, got \(ws)") }
        guard numClasses >= 0 && numClasses <= 1_000_000 else { throw node.invalid("num_classes", "out of range") }
        if returnDense && numClasses == 0 { throw node.invalid("return_dense", "needs num_classes > 0") }
        if convStem && embedDim[0] % 2 != 0 { throw node.invalid("embed_dim", "conv_stem needs an even embed_dim[0]") }
    }
}
