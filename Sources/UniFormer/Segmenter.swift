//! Semantic segmentation of images: config + checkpoint in, a label per pixel out.
//!
//!   let model = try Segmenter(model: "upernet-global-small", weights: URL(fileURLWithPath: "upernet_global_small.pth"))
//!   let result = try model.segment(imageAt: url)    // result.labels: H·W class indices
//!
//! The test pipeline is mmseg 0.13's: keep-ratio resize to `data.scale`, (Semantic FPN) align-resize,
//! normalise, no padding; whole or slide inference; logits resized to the original size; argmax.

import Backbone
import Foundation
import Imaging
import ModelConfig
import Segmentation
import TensorCore
import Weights

public struct SegmentationResult: Sendable {
    public let width: Int
    public let height: Int
    /// Class index per pixel, row-major [height · width].
    public let labels: [UInt8]
    /// Logits at the network input's size, channels-last [h, w, K] (before the final resize).
    public let inputLogits: Tensor
}

public final class Segmenter: Sendable {
    public let file: ModelFile
    public let segmentor: Segmentor
    public let context: ComputeContext
    public let classes: [String]
    public let palette: [[UInt8]]

    /// `weights` nil: the checkpoint the config names (the bundled demo models' weights).
    public init(model: String, weights: URL? = nil, threads: Int? = nil, precision: Precision = .fp32) throws {
        file = try ModelFile(contentsOf: try ModelFile.resolve(model))
        let weights = try weights ?? file.defaultWeights()
        guard file.kind == .segmentation else {
            throw ModelError.wrongModel(file: file.url.path, reason: "not a segmentation config (model.type must be EncoderDecoder)")
        }
        let config = try SegmentorConfig(file.model)
        let dict = try StateDict(contentsOf: weights)
        let root = WeightScope(dict)
        segmentor = try Segmentor(config: config, weights: root)
        try root.finish(ignoring: Segmentor.unusedKeys)
        context = ComputeContext(threads: threads, precision: precision)
        let k = config.numClasses
        classes = try classNames(file, dict, count: k, field: "decode_head.num_classes")
        palette = file.palette ?? defaultPalette(k)
        guard palette.count >= k else {
            throw ModelError.wrongModel(file: file.url.path, reason: "palette has \(palette.count) colours for \(k) classes")
        }
    }

    /// Segments a decoded image (`name` is used in errors).
    public func segment(_ image: RGBImage, name: String = "image", attention: StageAttention? = nil) throws -> SegmentationResult {
        let input = prepareInput(image, file.data)                       // [1, 3, h, w]
        guard segmentor.backbone.validate(height: input.shape[2], width: input.shape[3]) else {
            throw ModelError.imageTooSmall(file: name, width: image.width, height: image.height)
        }
        let logits = segmentor.inference(input, attention: attention, context)
        let labels = segmentor.labels(logits, height: image.height, width: image.width, context)
        return SegmentationResult(width: image.width, height: image.height, labels: labels, inputLogits: logits)
    }

    public func segment(imageAt url: URL, attention: StageAttention? = nil) throws -> SegmentationResult {
        try segment(try loadImage(contentsOf: url), name: url.path, attention: attention)
    }

    /// Logits at the original image size [1, K, H, W] (NCHW), as mmseg's `seg_logit` with rescale.
    public func originalSizeLogits(_ result: SegmentationResult) -> Tensor {
        hwcToNCHW(resizeBilinear(result.inputLogits, height: result.height, width: result.width,
                                 alignCorners: segmentor.config.alignCorners, context), context)
    }
}

/// Distinct colours for configs without a palette (deterministic, well spread in hue).
func defaultPalette(_ n: Int) -> [[UInt8]] {
    (0..<max(n, 1)).map { i in
        var x = UInt32(truncatingIfNeeded: i &* 2654435761 &+ 12345)
        x ^= x >> 13; x = x &* 0x5bd1e995; x ^= x >> 15
        return [UInt8(x & 0xff), UInt8((x >> 8) & 0xff), UInt8((x >> 16) & 0xff)]
    }
}
