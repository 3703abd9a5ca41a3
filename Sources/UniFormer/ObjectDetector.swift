//! Object detection of images: config + checkpoint in, boxes (and masks) in original-image pixels out.
//!
//!   let model = try ObjectDetector(model: "mask-rcnn-1x-hybrid-small", weights: URL(fileURLWithPath: "…pth"))
//!   let dets = try model.detect(imageAt: url)      // [Detection], best first
//!
//! The test pipeline is mmdet 2.11's: keep-ratio resize to `data.scale`, normalise, zero-pad to
//! `size_divisor`; boxes are rescaled to the original image, masks pasted into it.

import Backbone
import Detection
import Foundation
import Imaging
import ModelConfig
import TensorCore
import Weights

/// The detector a config describes: two-stage (Mask R-CNN, Cascade Mask R-CNN) or RetinaNet.
public enum AnyDetector: Sendable {
    case twoStage(TwoStageDetector)
    case singleStage(SingleStageDetector)

    public var backbone: UniFormerBackbone {
        switch self {
        case let .twoStage(d): return d.backbone
        case let .singleStage(d): return d.backbone
        }
    }

    public var numClasses: Int {
        switch self {
        case let .twoStage(d): return d.numClasses
        case let .singleStage(d): return d.numClasses
        }
    }

    /// FPN levels [H_i, W_i, C] of a prepared input.
    public func pyramid(_ input: Tensor, attention: StageAttention? = nil, _ ctx: ComputeContext) -> [Tensor] {
        switch self {
        case let .twoStage(d): return d.pyramid(input, attention: attention, ctx)
        case let .singleStage(d): return d.pyramid(input, attention: attention, ctx)
        }
    }

    public func detect(_ input: Tensor, meta: ImageMeta, attention: StageAttention? = nil, _ ctx: ComputeContext) -> [Detection] {
        switch self {
        case let .twoStage(d): return d.detect(input, meta: meta, attention: attention, ctx)
        case let .singleStage(d): return d.detect(input, meta: meta, attention: attention, ctx)
        }
    }

    public init(_ model: ConfigNode, weights root: WeightScope) throws {
        if try model.string("type") == "RetinaNet" {
            self = .singleStage(try SingleStageDetector(model, weights: root))
        } else {
            self = .twoStage(try TwoStageDetector(config: try DetectorConfig(model), weights: root))
        }
    }
}

public final class ObjectDetector: Sendable {
    public let file: ModelFile
    public let detector: AnyDetector
    public let context: ComputeContext
    public let classes: [String]
    /// Class colours from the config (`palette`), if it has them.
    public let palette: [[UInt8]]?

    /// `weights` nil: the checkpoint the config names (the bundled demo models' weights).
    public init(model: String, weights: URL? = nil, threads: Int? = nil, precision: Precision = .fp32) throws {
        file = try ModelFile(contentsOf: try ModelFile.resolve(model))
        let weights = try weights ?? file.defaultWeights()
        guard file.kind == .detection else {
            throw ModelError.wrongModel(file: file.url.path, reason: "not a detection config (model.type must be MaskRCNN, FasterRCNN, CascadeRCNN or RetinaNet)")
        }
        let dict = try StateDict(contentsOf: weights)
        let root = WeightScope(dict)
        detector = try AnyDetector(file.model, weights: root)
        try root.finish(ignoring: TwoStageDetector.unusedKeys)
        context = ComputeContext(threads: threads, precision: precision)
        classes = try classNames(file, dict, count: detector.numClasses, field: "bbox_head.num_classes")
        palette = file.palette
    }

    /// The network input and the image's metadata, as mmdet's test pipeline makes them.
    public func prepare(_ image: RGBImage) -> (input: Tensor, meta: ImageMeta) {
        let p = prepareInputAndSize(image, file.data)
        return (p.input, ImageMeta(originalSize: (image.height, image.width), imageShape: (p.height, p.width)))
    }

    public func detect(_ image: RGBImage, name: String = "image", attention: StageAttention? = nil) throws -> [Detection] {
        let (input, meta) = prepare(image)
        guard detector.backbone.validate(height: input.shape[2], width: input.shape[3]) else {
            throw ModelError.imageTooSmall(file: name, width: image.width, height: image.height)
        }
        return detector.detect(input, meta: meta, attention: attention, context)
    }

    public func detect(imageAt url: URL, attention: StageAttention? = nil) throws -> [Detection] {
        try detect(try loadImage(contentsOf: url), name: url.path, attention: attention)
    }
}

/// COCO's 80 training classes → the 91 category ids of the annotation files (ids 12, 26, 29, 30,
/// 45, 66, 68, 69, 71, 83 are unused), as mmdet's CocoDataset.cat_ids.
public let cocoCategoryIDs: [Int] = (1...90).filter { ![12, 26, 29, 30, 45, 66, 68, 69, 71, 83].contains($0) }
