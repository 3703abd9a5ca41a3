//! mmcv's ConvModule at inference: conv (+ BatchNorm folded into it) (+ ReLU).
//! Keys: `conv.weight` [out, in, k, k], `conv.bias` when there is no norm (mmcv bias='auto'),
//! `bn.{weight,bias,running_mean,running_var}` when norm_cfg is BN/SyncBN (SyncBN is BN at test time).
//! Input/output channels-last [H, W, C]; 1×1 convs run as one GEMM over tokens.

import TensorCore
import Weights

public struct ConvModule: Sendable {
    enum Op: Sendable {
        case pointwise(Linear)
        case spatial(Conv2d)
    }
    let op: Op
    public let relu: Bool
    public let outChannels: Int

    public init(_ w: WeightScope, in cin: Int, out cout: Int, kernel k: Int, padding: Int = 0, stride: Int = 1,
                norm: Bool, relu: Bool) throws {
        let weight = try w.child("conv").tensor("weight", shape: [cout, cin, k, k])
        var affine: ChannelAffine? = nil
        var bias: [Float]? = nil
        if norm {
            let bn = w.child("bn")
            affine = ChannelAffine(batchNormWeight: try bn.tensor("weight", shape: [cout]).data,
                                   bias: try bn.tensor("bias", shape: [cout]).data,
                                   mean: try bn.tensor("running_mean", shape: [cout]).data,
                                   variance: try bn.tensor("running_var", shape: [cout]).data)
        } else {
            bias = try w.child("conv").tensor("bias", shape: [cout]).data
        }
        if k == 1 && stride == 1 && padding == 0 {
            var lin = Linear(conv1x1: weight, bias: bias)
            if let a = affine { lin = lin.scalingOutputs(by: a.scale).addingBias(a.shift) }
            op = .pointwise(lin)
        } else {
            var conv = Conv2d(weight: weight, bias: bias, stride: stride, padding: padding)
            if let a = affine { conv = conv.foldingOutputAffine(a) }
            op = .spatial(conv)
        }
        self.relu = relu
        outChannels = cout
    }

    /// x [H, W, Cin] → [H', W', Cout]
    public func callAsFunction(_ x: Tensor, _ ctx: ComputeContext) -> Tensor {
        var y: Tensor
        switch op {
        case let .pointwise(lin): y = lin(x, .bias, ctx)
        case let .spatial(conv): y = conv(x, ctx)
        }
        if relu { reluInPlace(&y, ctx) }
        return y
    }
}
