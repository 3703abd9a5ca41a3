//! The detectors at test time, composed as mmdet splits them (models/detectors/two_stage.py):
//! backbone → FPN → RPN proposals → RoI head. Keys: backbone.*, neck.*, rpn_head.*, roi_head.*.
//! Config: model.type MaskRCNN / FasterRCNN (roi_head StandardRoIHead) or CascadeRCNN (CascadeRoIHead),
//! test_cfg.rpn / test_cfg.rcnn.
//! Training-only keys (train_cfg, loss_*) are ignored.

import Backbone
import ModelConfig
import Necks
import TensorCore
import Weights

public struct DetectorConfig: Sendable {
    public let type: String
    public let backbone: UniFormerConfig
    public let neck: FPNConfig
    public let rpn: RPNTestConfig
    public let rcnn: RCNNTestConfig
    let model: ConfigNode

    public init(_ model: ConfigNode) throws {
        type = try model.string("type")
        guard ["MaskRCNN", "FasterRCNN", "CascadeRCNN"].contains(type) else {
            throw ConfigError.unknownType(file: model.file, field: model.fieldPath("type"), type: type)
        }
        backbone = try UniFormerConfig(model.child("backbone"))
        neck = try FPNConfig(model.child("neck"))
        guard neck.inChannels == Array(backbone.embedDim.prefix(neck.inChannels.count)) else {
            throw model.invalid("neck.in_channels", "\(neck.inChannels) disagrees with backbone.embed_dim \(backbone.embedDim)")
        }
        let test = try model.child("test_cfg")
        rpn = try RPNTestConfig(test.child("rpn"))
        rcnn = try RCNNTestConfig(test.child("rcnn"))
        let roi = try model.child("roi_head")
        let roiType = try roi.string("type")
        guard roiType == (type == "CascadeRCNN" ? "CascadeRoIHead" : "StandardRoIHead") else {
            throw ConfigError.unknownType(file: roi.file, field: roi.fieldPath("type"), type: roiType)
        }
        self.model = model
    }
}

public struct TwoStageDetector: Sendable {
    public let config: DetectorConfig
    public let backbone: UniFormerBackbone
    let neck: FPN
    let rpnHead: RPNHead
    let roiHead: RoIHeadKind

    enum RoIHeadKind: Sendable {
        case standard(StandardRoIHead)
        case cascade(CascadeRoIHead)
    }

    public init(config: DetectorConfig, weights root: WeightScope) throws {
        self.config = config
        backbone = try UniFormerBackbone(config: config.backbone, weights: root.child("backbone"))
        neck = try FPN(config: config.neck, weights: root.child("neck"))
        rpnHead = try RPNHead(config.model.child("rpn_head"), weights: root.child("rpn_head"))
        let roi = try config.model.child("roi_head")
        roiHead = config.type == "CascadeRCNN" ? .cascade(try CascadeRoIHead(roi, weights: root.child("roi_head")))
                                               : .standard(try StandardRoIHead(roi, weights: root.child("roi_head")))
        guard rpnHead.anchors.strides.count == config.neck.numOuts else {
            throw config.model.invalid("rpn_head.anchor_generator.strides",
                                       "\(rpnHead.anchors.strides.count) strides for \(config.neck.numOuts) FPN levels")
        }
    }

    public static let unusedKeys: [IgnoreRule] = [.suffix(".num_batches_tracked")]

    public var numClasses: Int {
        switch roiHead {
        case let .standard(h): return h.numClasses
        case let .cascade(h): return h.numClasses
        }
    }

    /// FPN levels [H_i, W_i, C] of a normalised, padded input [1, 3, H, W].
    public func pyramid(_ input: Tensor, attention: StageAttention? = nil, _ ctx: ComputeContext) -> [Tensor] {
        neck(backbone.featureMaps(input, attention: attention, ctx), ctx)
    }

    public func proposals(_ feats: [Tensor], meta: ImageMeta, _ ctx: ComputeContext) -> [Scored] {
        rpnHead.proposals(feats, imageShape: meta.imageShape, cfg: config.rpn, ctx)
    }

    /// The whole detector; with a profiler, each stage's time is also recorded under "stage: …".
    public func detect(_ input: Tensor, meta: ImageMeta, attention: StageAttention? = nil, _ ctx: ComputeContext) -> [Detection] {
        let levels = ctx.timed("stage: backbone") { backbone.featureMaps(input, attention: attention, ctx) }
        let feats = ctx.timed("stage: neck") { neck(levels, ctx) }
        let props = ctx.timed("stage: rpn") { proposals(feats, meta: meta, ctx) }
        return ctx.timed("stage: roi heads") {
            switch roiHead {
            case let .standard(h): return h.detect(feats, proposals: props, meta: meta, cfg: config.rcnn, ctx)
            case let .cascade(h): return h.detect(feats, proposals: props, meta: meta, cfg: config.rcnn, ctx)
            }
        }
    }
}
