//! ImageNet classification with the UniFormer classifier (final BatchNorm, mean pool, `head`).
//! Preprocessing is the upstream evaluation transform (timm/DeiT): resize the short side to
//! crop/0.875 with PIL bicubic, centre crop, ImageNet mean/std.

import Backbone
import Foundation
import Imaging
import TensorCore
import Weights

public struct Prediction: Sendable, Equatable {
    public let index: Int
    public let probability: Float
    public let logit: Float
    public let label: String?
}

public final class Classifier: Sendable {
    public let file: ModelFile
    public let backbone: UniFormerBackbone
    public let context: ComputeContext
    public let classes: [String]?

    /// `weights` nil: the checkpoint the config names.
    public init(model: String, weights: URL? = nil, threads: Int? = nil, precision: Precision = .fp32) throws {
        file = try ModelFile(contentsOf: try ModelFile.resolve(model))
        let weights = try weights ?? file.defaultWeights()
        let config = try file.backboneConfig()
        guard config.numClasses > 0 else {
            throw ModelError.wrongModel(file: file.url.path, reason: "not a classifier: set model.num_classes (e.g. 1000)")
        }
        let dict = try StateDict(contentsOf: weights)
        let scope = WeightScope(dict)
        backbone = try UniFormerBackbone(config: config, weights: scope)
        try scope.finish(ignoring: [.suffix(".num_batches_tracked")])
        context = ComputeContext(threads: threads, precision: precision)
        classes = file.classes ?? dict.classes
    }

    /// Logits for a preprocessed input [1, 3, 224, 224].
    public func logits(_ input: Tensor) -> [Float] {
        backbone.classify(input, context)
    }

    /// The top `k` classes of an image, most probable first (softmax over the logits).
    public func classify(_ image: RGBImage, top k: Int = 5) -> [Prediction] {
        let z = logits(imagenetEvalTensor(image))
        return topK(z, k)
    }

    public func topK(_ z: [Float], _ k: Int) -> [Prediction] {
        let m = z.max() ?? 0
        let e = z.map { Double(expf($0 - m)) }
        let sum = e.reduce(0, +)
        let order = z.indices.sorted { z[$0] > z[$1] || (z[$0] == z[$1] && $0 < $1) }
        return order.prefix(k).map { i in
            Prediction(index: i, probability: Float(e[i] / sum), logit: z[i],
                       label: classes.flatMap { i < $0.count ? $0[i] : nil })
        }
    }
}
