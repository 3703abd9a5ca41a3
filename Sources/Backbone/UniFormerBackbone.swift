//! The UniFormer backbone: four stages, each a patch embedding and a stack of blocks.
//! Stages 1–2 are CBlocks; stage 3 SABlocks (global, windowed or hybrid); stage 4 global SABlocks.
//!
//! Dense prediction (num_classes 0): LayerNorms `norm1`…`norm4` (eps 1e-6) on the four stage
//! outputs give the pyramid at strides 4, 8, 16, 32 (NCHW [1, C_i, H_i, W_i]).
//! Classifier (num_classes > 0): BatchNorm `norm` after stage 4, mean over tokens, Linear `head`
//! (the BatchNorm is folded into `head`: the mean is linear).
//! Input: the normalised image [1, 3, H, W].

import TensorCore
import Weights

public struct UniFormerBackbone: Sendable {
    public let config: UniFormerConfig
    let embeds: [PatchEmbed]            // patch_embed1…4
    let stages: [[Block]]               // blocks1…4
    let outNorms: [LayerNorm]           // norm1…4 (dense backbone)
    let head: Linear?                   // norm (BN) folded in (classifier)
    let auxHead: Linear?                // norm (BN) folded in (token-labeling classifier)

    enum Block: Sendable {
        case conv(CBlock)
        case attention(SABlock)
    }

    /// Builds from weights under `w` (the backbone's own scope: keys `patch_embed1.proj.weight`, …).
    public init(config: UniFormerConfig, weights w: WeightScope) throws {
        self.config = config
        let dims = config.embedDim, heads = config.heads, hidden = config.mlpHidden
        var embeds: [PatchEmbed] = []
        var stages: [[Block]] = []
        for s in 0..<4 {
            embeds.append(try PatchEmbed(w.child("patch_embed\(s + 1)"), stage: s, in: s == 0 ? 3 : dims[s - 1],
                                         out: dims[s], convStem: config.convStem))
            let blocks = w.child("blocks\(s + 1)")
            stages.append(try (0..<config.layers[s]).map { i in
                if s < 2 {
                    return .conv(try CBlock(blocks.child(i), dim: dims[s], hidden: hidden[s], layerScale: config.layerScale == .all))
                }
                let scale = Float(config.qkScale ?? 1 / Double(config.headDim).squareRoot())
                return .attention(try SABlock(blocks.child(i), dim: dims[s], heads: heads[s], hidden: hidden[s],
                                              qkvBias: config.qkvBias, scale: scale, layerScale: config.layerScale != .none))
            })
        }
        self.embeds = embeds
        self.stages = stages
        if config.numClasses > 0 {
            let bn = try channelAffine(w.child("norm"), dims[3])
            head = try linear(w.child("head"), out: config.numClasses, in: dims[3])
                .foldingInputAffine(scale: bn.scale, shift: bn.shift)
            auxHead = config.returnDense
                ? try linear(w.child("aux_head"), out: config.numClasses, in: dims[3]).foldingInputAffine(scale: bn.scale, shift: bn.shift)
                : nil
            outNorms = []
        } else {
            head = nil
            auxHead = nil
            outNorms = try (0..<4).map { try layerNorm(w.child("norm\($0 + 1)"), dims[$0], eps: 1e-6) }
        }
    }

    /// The smallest input side that keeps every stage at least one token wide.
    public func validate(height: Int, width: Int) -> Bool {
        var (h, w) = (height, width)
        for e in embeds {
            if h < 1 || w < 1 { return false }
            (h, w) = e.outputSize(h, w)
        }
        return h >= 1 && w >= 1
    }

    /// Runs the stages, calling `tap(stage, map)` with each stage's output [H, W, C] before its norm.
    func run(_ input: Tensor, attention: StageAttention?, _ ctx: ComputeContext, tap: (Int, Tensor) -> Void) {
        precondition(input.rank == 4 && input.shape[0] == 1 && input.shape[1] == 3, "UniFormer: input \(input.shape), want [1, 3, H, W]")
        let mode = attention ?? config.attention
        var x = nchwToHWC(input, ctx)                           // [H, W, 3]
        for s in 0..<4 {
            x = embeds[s](x, ctx)                               // [H_s, W_s, C_s]
            for (i, block) in stages[s].enumerated() {
                switch block {
                case let .conv(b): x = b(x, ctx)
                case let .attention(b): x = b(x, window: s == 2 ? mode.window(forBlock: i) : nil, ctx)
                }
            }
            tap(s, x)
        }
    }

    /// The four pyramid levels, NCHW [1, C_i, H/2^(i+2), W/2^(i+2)] (floored), after norm1…norm4.
    /// `attention` overrides the stage-3 mode of the config (as upstream's w32/h32 test configs do).
    public func features(_ input: Tensor, attention: StageAttention? = nil, _ ctx: ComputeContext) -> [Tensor] {
        featureMaps(input, attention: attention, ctx).map { hwcToNCHW($0, ctx) }
    }

    /// The same four levels channels-last, [H_i, W_i, C_i], as the necks and heads consume them.
    public func featureMaps(_ input: Tensor, attention: StageAttention? = nil, _ ctx: ComputeContext) -> [Tensor] {
        precondition(head == nil, "features: this is a classifier (num_classes \(config.numClasses)); it has no norm1…norm4")
        var out: [Tensor] = []
        run(input, attention: attention, ctx) { s, x in
            out.append(outNorms[s](x, ctx))
        }
        return out
    }

    /// Classifier logits [num_classes].
    public func classify(_ input: Tensor, attention: StageAttention? = nil, _ ctx: ComputeContext) -> [Float] {
        guard let head else { preconditionFailure("classify: this is a dense backbone (num_classes 0)") }
        var last = Tensor(zeros: [1])
        run(input, attention: attention, ctx) { s, x in if s == 3 { last = x } }
        let c = last.shape[2], n = last.count / c
        var mean = [Double](repeating: 0, count: c)
        for t in 0..<n { for j in 0..<c { mean[j] += Double(last.data[t * c + j]) } }
        let pooled = Tensor(shape: [1, c], data: mean.map { Float($0 / Double(n)) })
        var logits = head(pooled, .bias, ctx).data
        if let auxHead {
            // tlt/models/uniformer.py forward (eval): x_cls + 0.5 * aux_head(tokens).max over tokens
            let aux = auxHead(Tensor(shape: [n, c], data: last.data), .bias, ctx)      // [N, classes]
            let k = logits.count
            for j in 0..<k {
                var m = -Float.infinity
                for t in 0..<n { m = max(m, aux.data[t * k + j]) }
                logits[j] += 0.5 * m
            }
        }
        return logits
    }
}
