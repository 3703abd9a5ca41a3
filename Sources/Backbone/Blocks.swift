//! UniFormer's blocks, on channels-last token maps [H, W, C].
//! Port of Sense-X/UniFormer@52a0415 object_detection/mmdet/models/backbones/uniformer.py
//! (CBlock, SABlock, SABlock_Windows) and image_classification/token_labeling/tlt/models/uniformer.py
//! (layer scale). Keys under `blocks{1..4}.{i}.`:
//!   CBlock:  pos_embed (dw3×3), norm1 (BN), conv1 (1×1), attn (dw5×5), conv2 (1×1), norm2 (BN),
//!            mlp.fc1 / mlp.fc2 (1×1), [gamma_1, gamma_2 (1, C, 1, 1)]
//!   SABlock: pos_embed (dw3×3), norm1 (LN 1e-6), attn.qkv, attn.proj, norm2 (LN 1e-6),
//!            mlp.fc1 / mlp.fc2, [gamma_1, gamma_2 (C)]
//! Load-time folding (exact up to float rounding): norm1/norm2 BatchNorms into conv1/mlp.fc1,
//! layer-scale γ into the last linear layer of its branch (conv2, mlp.fc2, attn.proj).

import TensorCore
import Weights

func channelAffine(_ w: WeightScope, _ c: Int) throws -> ChannelAffine {
    ChannelAffine(batchNormWeight: try w.tensor("weight", shape: [c]).data, bias: try w.tensor("bias", shape: [c]).data,
                  mean: try w.tensor("running_mean", shape: [c]).data, variance: try w.tensor("running_var", shape: [c]).data)
}

func linear(_ w: WeightScope, out o: Int, in i: Int, bias: Bool = true) throws -> Linear {
    Linear(weight: try w.tensor("weight", shape: [o, i]), bias: bias ? try w.tensor("bias", shape: [o]).data : nil)
}

func conv1x1(_ w: WeightScope, out o: Int, in i: Int) throws -> Linear {
    Linear(conv1x1: try w.tensor("weight", shape: [o, i, 1, 1]), bias: try w.tensor("bias", shape: [o]).data)
}

func depthwise(_ w: WeightScope, _ c: Int, kernel k: Int) throws -> DepthwiseConv2d {
    DepthwiseConv2d(weight: try w.tensor("weight", shape: [c, 1, k, k]), bias: try w.tensor("bias", shape: [c]).data)
}

func layerNorm(_ w: WeightScope, _ c: Int, eps: Float) throws -> LayerNorm {
    LayerNorm(weight: try w.tensor("weight", shape: [c]).data, bias: try w.tensor("bias", shape: [c]).data, eps: eps)
}

/// Two-layer MLP with exact GELU: fc2(gelu(fc1(x))), accumulated into the residual.
struct MLP: Sendable {
    let fc1: Linear
    let fc2: Linear

    /// residual += fc2(gelu(fc1(x))) (x and residual distinct tensors).
    /// Fused by row blocks where the weights fit in L2 (TensorCore/FusedMLP.swift).
    func accumulate(_ x: Tensor, into residual: inout Tensor, _ ctx: ComputeContext) {
        Linear.mlpAccumulate(x, fc1: fc1, fc2: fc2, into: &residual, ctx)
    }

    /// x += fc2(gelu(fc1(x))), x being the residual itself.
    func accumulateInPlace(_ x: inout Tensor, _ ctx: ComputeContext) {
        Linear.mlpAccumulateInPlace(&x, fc1: fc1, fc2: fc2, ctx)
    }
}

/// Stages 1–2: local relation aggregation with convolutions.
struct CBlock: Sendable {
    let posEmbed: DepthwiseConv2d
    let conv1: Linear           // norm1 (BN) folded in
    let attn: DepthwiseConv2d   // 5×5 depthwise
    let conv2: Linear           // γ₁ folded in
    let mlp: MLP                // norm2 (BN) folded into fc1, γ₂ into fc2

    init(_ w: WeightScope, dim c: Int, hidden: Int, layerScale: Bool) throws {
        posEmbed = try depthwise(w.child("pos_embed"), c, kernel: 3)
        let bn1 = try channelAffine(w.child("norm1"), c)
        let bn2 = try channelAffine(w.child("norm2"), c)
        conv1 = try conv1x1(w.child("conv1"), out: c, in: c).foldingInputAffine(scale: bn1.scale, shift: bn1.shift)
        attn = try depthwise(w.child("attn"), c, kernel: 5)
        var c2 = try conv1x1(w.child("conv2"), out: c, in: c)
        let fc1 = try conv1x1(w.child("mlp").child("fc1"), out: hidden, in: c).foldingInputAffine(scale: bn2.scale, shift: bn2.shift)
        var fc2 = try conv1x1(w.child("mlp").child("fc2"), out: c, in: hidden)
        if layerScale {
            c2 = c2.scalingOutputs(by: try w.tensor("gamma_1", shape: [1, c, 1, 1]).data)
            fc2 = fc2.scalingOutputs(by: try w.tensor("gamma_2", shape: [1, c, 1, 1]).data)
        }
        conv2 = c2
        mlp = MLP(fc1: fc1, fc2: fc2)
    }

    /// x [H, W, C] → [H, W, C]
    func callAsFunction(_ input: Tensor, _ ctx: ComputeContext) -> Tensor {
        var x = posEmbed(input, residual: true, ctx)   // x + pos_embed(x)
        let t = attn(conv1(x, .bias, ctx), ctx)        // attn(conv1(norm1(x)))  [H, W, C]
        conv2.accumulate(t, into: &x, ctx)             // x += conv2(…)
        mlp.accumulateInPlace(&x, ctx)                 // x += mlp(norm2(x)); norm2 is folded into mlp.fc1
        return x
    }
}

/// Stages 3–4: global (or windowed) multi-head self-attention.
struct SABlock: Sendable {
    let posEmbed: DepthwiseConv2d
    let norm1: LayerNorm
    let qkv: Linear
    let proj: Linear            // γ₁ folded in
    let norm2: LayerNorm
    let mlp: MLP                // γ₂ folded into fc2
    let shape: AttentionShape
    /// QKV of an all-zero token: what a zero-padded window position projects to.
    let paddingQKV: [Float]

    init(_ w: WeightScope, dim c: Int, heads: Int, hidden: Int, qkvBias: Bool, scale: Float, layerScale: Bool) throws {
        posEmbed = try depthwise(w.child("pos_embed"), c, kernel: 3)
        norm1 = try layerNorm(w.child("norm1"), c, eps: 1e-6)
        norm2 = try layerNorm(w.child("norm2"), c, eps: 1e-6)
        qkv = try linear(w.child("attn").child("qkv"), out: 3 * c, in: c, bias: qkvBias)
        var p = try linear(w.child("attn").child("proj"), out: c, in: c)
        let fc1 = try linear(w.child("mlp").child("fc1"), out: hidden, in: c)
        var fc2 = try linear(w.child("mlp").child("fc2"), out: c, in: hidden)
        if layerScale {
            p = p.scalingOutputs(by: try w.tensor("gamma_1", shape: [c]).data)
            fc2 = fc2.scalingOutputs(by: try w.tensor("gamma_2", shape: [c]).data)
        }
        proj = p
        mlp = MLP(fc1: fc1, fc2: fc2)
        shape = AttentionShape(channels: c, heads: heads, scale: scale)
        paddingQKV = qkv.bias ?? [Float](repeating: 0, count: 3 * c)
    }

    /// x [H, W, C] → [H, W, C]; `window` nil = global attention.
    func callAsFunction(_ input: Tensor, window: Int?, _ ctx: ComputeContext) -> Tensor {
        let (h, w) = (input.shape[0], input.shape[1])
        var x = posEmbed(input, residual: true, ctx)            // x + pos_embed(x)
        let q = qkv(norm1(x, ctx), .bias, ctx)                  // [H·W, 3C]
        let a: Tensor                                           // [H·W, C]
        if let ws = window {
            // uniformer.py SABlock_Windows.forward (Sense-X/UniFormer@52a0415): zero tokens padded after
            // norm1 take part in attention unmasked.
            a = windowAttention(q, height: h, width: w, window: ws, paddingRow: paddingQKV, shape: shape, ctx)
        } else {
            a = globalAttention(q, shape: shape, ctx)
        }
        proj.accumulate(a, into: &x, ctx)                       // x += proj(attn(norm1(x)))
        mlp.accumulate(norm2(x, ctx), into: &x, ctx)            // x += mlp(norm2(x))
        return x
    }
}
