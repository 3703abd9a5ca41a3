//! The feature API: an image (or a normalised tensor) in, the four pyramid levels out.
//!
//!   let model = try FeatureExtractor(model: "configs/…json", weights: URL(fileURLWithPath: "…pth"))
//!   let levels = try model.features(imageAt: url)     // 4 × [1, C_i, H_i, W_i], strides 4…32

import Backbone
import Foundation
import Imaging
import ModelConfig
import TensorCore
import Weights

public enum ModelError: Error, CustomStringConvertible {
    case imageTooSmall(file: String, width: Int, height: Int)
    case wrongModel(file: String, reason: String)

    public var description: String {
        switch self {
        case let .imageTooSmall(f, w, h): return "\(f): image of \(w)×\(h) is too small for the backbone's four stages (needs at least 32×32)"
        case let .wrongModel(f, r): return "\(f): \(r)"
        }
    }
}

/// Keys of the parts of a detector or segmentor that feature extraction does not use.
let otherHeads: [IgnoreRule] = ["neck.", "decode_head.", "auxiliary_head.", "rpn_head.", "roi_head.", "bbox_head."].map { .prefix($0) }

/// Opens a checkpoint and returns the scope holding the backbone's keys (with or without `backbone.`).
func backboneScope(_ dict: StateDict) -> WeightScope {
    let root = WeightScope(dict)
    return dict.keys.contains { $0.hasPrefix("backbone.") } ? root.child("backbone") : root
}

public final class FeatureExtractor: Sendable {
    public let file: ModelFile
    public let backbone: UniFormerBackbone
    public let context: ComputeContext

    /// `weights` nil: the checkpoint the config names (the bundled demo models' weights).
    public init(model: String, weights: URL? = nil, threads: Int? = nil, precision: Precision = .fp32) throws {
        let url = try ModelFile.resolve(model)
        file = try ModelFile(contentsOf: url)
        let weights = try weights ?? file.defaultWeights()
        var config = try file.backboneConfig()
        config.numClasses = 0
        let dict = try StateDict(contentsOf: weights)
        let scope = backboneScope(dict)
        backbone = try UniFormerBackbone(config: config, weights: scope)
        // Keys of other parts of a detector/segmentor, and the classification head, are skipped by name.
        try scope.finish(ignoring: [.suffix(".num_batches_tracked")] + otherHeads)
        context = ComputeContext(threads: threads, precision: precision)
    }

    /// The network input for an image under the config's `data` pipeline: keep-ratio resize to
    /// `scale` (if any), normalise, pad to `size_divisor` (if any). [1, 3, H, W].
    public func prepare(_ image: RGBImage) -> Tensor {
        prepareInput(image, file.data)
    }

    /// The four pyramid levels of a normalised input [1, 3, H, W].
    public func features(_ input: Tensor, attention: StageAttention? = nil) -> [Tensor] {
        backbone.features(input, attention: attention, context)
    }

    public func features(imageAt url: URL, attention: StageAttention? = nil) throws -> [Tensor] {
        let image = try loadImage(contentsOf: url)
        let input = prepare(image)
        guard backbone.validate(height: input.shape[2], width: input.shape[3]) else {
            throw ModelError.imageTooSmall(file: url.path, width: image.width, height: image.height)
        }
        return features(input, attention: attention)
    }
}

/// mmdet/mmseg test pipeline: resize (keep ratio, mmcv rounding; or exact scale), align-resize
/// (Semantic FPN), normalise, pad.
public func prepareInput(_ image: RGBImage, _ data: DataConfig) -> Tensor {
    prepareInputAndSize(image, data).input
}

/// The network input and the image size after resizing, before padding (mmdet's img_shape).
public func prepareInputAndSize(_ image: RGBImage, _ data: DataConfig) -> (input: Tensor, height: Int, width: Int) {
    var img = image
    if let scale = data.scale {
        let (w, h) = data.keepRatio ? rescaledSize(width: image.width, height: image.height, scale: scale)
                                    : (scale.0, scale.1)
        if w != image.width || h != image.height { img = img.resizedBilinear(width: w, height: h) }
    }
    if let d = data.alignDivisor {
        // align_resize.py _align: int(np.ceil(side / d)) * d, mmcv.imresize (bilinear)
        let w = (img.width + d - 1) / d * d, h = (img.height + d - 1) / d * d
        if w != img.width || h != img.height { img = img.resizedBilinear(width: w, height: h) }
    }
    let t = normalize(img, mean: data.mean, std: data.std, toRGB: data.toRGB)
    let padded = data.sizeDivisor.map { padToMultiple(t, divisor: $0) } ?? t
    return (padded, img.height, img.width)
}
