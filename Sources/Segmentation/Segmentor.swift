//! mmseg's EncoderDecoder at test time (segmentors/encoder_decoder.py, as mmseg 0.13 runs it):
//! backbone → (neck) → decode head → logits resized to the network input (`encode_decode`), in
//! `whole` mode on the full input or in `slide` mode over overlapping crops (summed, divided by
//! the per-pixel count); then `labels(…)` resizes to the original image size and takes argmax.
//! Keys: backbone.*, neck.*, decode_head.*; auxiliary_head.* is skipped by name (training only).

import Backbone
import Necks
import TensorCore
import Weights

public struct Segmentor: Sendable {
    public let config: SegmentorConfig
    public let backbone: UniFormerBackbone
    let neck: FPN?
    let head: Head

    enum Head: Sendable {
        case uper(UPerHead, inIndex: [Int])
        case fpn(FPNHead, inIndex: [Int])
    }

    public init(config: SegmentorConfig, weights root: WeightScope) throws {
        self.config = config
        backbone = try UniFormerBackbone(config: config.backbone, weights: root.child("backbone"))
        neck = try config.neck.map { try FPN(config: $0, weights: root.child("neck")) }
        let w = root.child("decode_head")
        switch config.head {
        case let .uper(inChannels, inIndex, poolScales, channels):
            head = .uper(try UPerHead(w, inChannels: inChannels, poolScales: poolScales, channels: channels,
                                      numClasses: config.numClasses, alignCorners: config.alignCorners), inIndex: inIndex)
        case let .fpn(inChannels, inIndex, strides, channels):
            head = .fpn(try FPNHead(w, inChannels: inChannels, featureStrides: strides, channels: channels,
                                    numClasses: config.numClasses, alignCorners: config.alignCorners), inIndex: inIndex)
        }
    }

    /// Keys a segmentation checkpoint may hold that inference does not use.
    public static let unusedKeys: [IgnoreRule] = [.prefix("auxiliary_head."), .suffix(".num_batches_tracked")]

    /// The decode head's logits [H/4, W/4, K] for a normalised input [1, 3, H, W].
    public func headLogits(_ input: Tensor, attention: StageAttention? = nil, _ ctx: ComputeContext) -> Tensor {
        var feats = backbone.featureMaps(input, attention: attention, ctx)
        if let neck { feats = neck(feats, ctx) }
        switch head {
        case let .uper(h, idx): return h(idx.map { feats[$0] }, ctx)
        case let .fpn(h, idx): return h(idx.map { feats[$0] }, ctx)
        }
    }

    /// encode_decode: head logits resized (bilinear) to the input's size, [H, W, K].
    public func encodeDecode(_ input: Tensor, attention: StageAttention? = nil, _ ctx: ComputeContext) -> Tensor {
        let logits = headLogits(input, attention: attention, ctx)
        return resizeBilinear(logits, height: input.shape[2], width: input.shape[3], alignCorners: config.alignCorners, ctx)
    }

    /// Logits at the input's size [H, W, K] under the configured test mode.
    public func inference(_ input: Tensor, attention: StageAttention? = nil, _ ctx: ComputeContext) -> Tensor {
        switch config.mode {
        case .whole: return encodeDecode(input, attention: attention, ctx)
        case let .slide(crop, stride): return slide(input, crop: crop, stride: stride, attention: attention, ctx)
        }
    }

    /// encoder_decoder.py slide_inference (mmseg 0.13): a grid of crops (the last ones clamped to the
    /// border), each run through encode_decode, logits summed and divided by how many crops cover a pixel.
    func slide(_ input: Tensor, crop: (h: Int, w: Int), stride: (h: Int, w: Int), attention: StageAttention?,
               _ ctx: ComputeContext) -> Tensor {
        let (h, w) = (input.shape[2], input.shape[3])
        let k = config.numClasses
        let gridH = max(h - crop.h + stride.h - 1, 0) / stride.h + 1
        let gridW = max(w - crop.w + stride.w - 1, 0) / stride.w + 1
        var sum = [Float](repeating: 0, count: h * w * k)
        var count = [Float](repeating: 0, count: h * w)
        for gy in 0..<gridH {
            for gx in 0..<gridW {
                let y2 = min(gy * stride.h + crop.h, h), x2 = min(gx * stride.w + crop.w, w)
                let y1 = max(y2 - crop.h, 0), x1 = max(x2 - crop.w, 0)
                let part = encodeDecode(cropNCHW(input, y: y1, x: x1, height: y2 - y1, width: x2 - x1),
                                        attention: attention, ctx)                     // [y2−y1, x2−x1, K]
                let cw = x2 - x1
                for y in y1..<y2 {
                    for x in x1..<x2 {
                        let src = ((y - y1) * cw + (x - x1)) * k, dst = (y * w + x) * k
                        for j in 0..<k { sum[dst + j] += part.data[src + j] }
                        count[y * w + x] += 1
                    }
                }
            }
        }
        for p in 0..<(h * w) { for j in 0..<k { sum[p * k + j] /= count[p] } }
        return Tensor(shape: [h, w, k], data: sum)
    }

    /// Labels at the original image size: bilinear resize of logits [h, w, K] to [H, W] (align_corners
    /// as configured), argmax over K (first maximum wins, as torch.argmax). Row by row, so the full
    /// [H, W, K] logits are never held.
    public func labels(_ logits: Tensor, height outH: Int, width outW: Int, _ ctx: ComputeContext) -> [UInt8] {
        let k = logits.shape[2]
        var labels = [UInt8](repeating: 0, count: outH * outW)
        let band = 16
        labels.withUnsafeMutableBufferPointer { lp in
            let out = SharedLabels(lp.baseAddress!)
            var y0 = 0
            while y0 < outH {
                let rows = min(band, outH - y0)
                let part = resizeBilinear(logits, height: outH, width: outW, rows: y0..<(y0 + rows),
                                          alignCorners: config.alignCorners, ctx)           // [rows, W, K]
                let first = y0
                part.data.withUnsafeBufferPointer { pp in
                    let p = SharedConstPointer(pp.baseAddress!)
                    parallelFor(rows * outW, ctx, minChunk: 256) { range in
                        for i in range {
                            let v = p.base + i * k
                            var best = 0
                            for j in 1..<max(k, 1) where v[j] > v[best] { best = j }
                            out.base[first * outW + i] = UInt8(best)
                        }
                    }
                }
                y0 += rows
            }
        }
        return labels
    }
}

struct SharedLabels: @unchecked Sendable {
    let base: UnsafeMutablePointer<UInt8>
    init(_ b: UnsafeMutablePointer<UInt8>) { base = b }
}

/// x [1, 3, H, W] → the [1, 3, height, width] window at (y, x).
func cropNCHW(_ t: Tensor, y: Int, x: Int, height: Int, width: Int) -> Tensor {
    let (c, h, w) = (t.shape[1], t.shape[2], t.shape[3])
    if y == 0 && x == 0 && height == h && width == w { return t }
    return Tensor(uninitialized: [1, c, height, width]) { out in
        t.data.withUnsafeBufferPointer { tp in
            for ch in 0..<c { for r in 0..<height {
                (out.baseAddress! + (ch * height + r) * width).update(from: tp.baseAddress! + (ch * h + y + r) * w + x, count: width)
            } }
        }
    }
}
