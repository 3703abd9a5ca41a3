//! Test-time preprocessing as the reference pipelines compute it:
//! - mmcv's keep-ratio rescale size (mmcv/image/geometric.py rescale_size, _scale_size),
//! - mmcv's imnormalize (mmcv/image/photometric.py imnormalize_),
//! - mmdet's Pad with size_divisor (zeros, bottom/right),
//! - timm/DeiT's ImageNet eval transform (torchvision Resize + CenterCrop + ToTensor + Normalize).
//! Tensors are NCHW [1, 3, H, W] float32.

import TensorCore

/// mmcv keep-ratio rescale: scale_factor = min(maxLong / long edge, maxShort / short edge) of
/// `scale` = (a, b) in either order; new size = Int(Double(w) · factor + 0.5) (mmcv's _scale_size).
public func rescaledSize(width: Int, height: Int, scale: (Int, Int)) -> (width: Int, height: Int) {
    precondition(width > 0 && height > 0 && scale.0 > 0 && scale.1 > 0,
                 "rescaledSize: \(width)x\(height) to \(scale)")
    let maxLong = Double(max(scale.0, scale.1)), maxShort = Double(min(scale.0, scale.1))
    let factor = min(maxLong / Double(max(width, height)), maxShort / Double(min(width, height)))
    return (Int(Double(width) * factor + 0.5), Int(Double(height) * factor + 0.5))
}

/// mmcv imnormalize: (pixel − mean) · (1 / std) per channel in float32, as imnormalize_ does with
/// cv2.subtract and cv2.multiply by the reciprocal (within an ulp of dividing by std).
/// `toRGB` true gives channels R, G, B with mean/std in that order; false gives B, G, R (the
/// channel order of a cv2 image) with mean/std in BGR order. Returns [1, 3, H, W].
public func normalize(_ image: RGBImage, mean: [Float], std: [Float], toRGB: Bool) -> Tensor {
    precondition(mean.count == 3 && std.count == 3, "normalize: mean \(mean), std \(std)")
    let (w, h) = (image.width, image.height)
    let plane = w * h
    let stdInv = std.map { Float(1.0 / Double($0)) }
    return image.pixels.withUnsafeBufferPointer { src in
        Tensor(uninitialized: [1, 3, h, w]) { out in
            for c in 0..<3 {
                let source = toRGB ? c : 2 - c   // channel c of the output reads R/G/B or B/G/R
                let m = mean[c], s = stdInv[c]
                let o = out.baseAddress! + c * plane
                for i in 0..<plane {
                    o[i] = (Float(src[i * 3 + source]) - m) * s
                }
            }
        }
    }
}

/// Zero-pads an NCHW tensor at the bottom and right so that H and W are multiples of `divisor`
/// (mmdet Pad with size_divisor: pad_h = ceil(H / d) · d, pad value 0).
public func padToMultiple(_ t: Tensor, divisor: Int) -> Tensor {
    precondition(t.rank == 4 && divisor > 0, "padToMultiple: shape \(t.shape), divisor \(divisor)")
    let (n, c, h, w) = (t.shape[0], t.shape[1], t.shape[2], t.shape[3])
    let ph = (h + divisor - 1) / divisor * divisor, pw = (w + divisor - 1) / divisor * divisor
    if ph == h && pw == w { return t }
    var out = Tensor(zeros: [n, c, ph, pw])
    t.data.withUnsafeBufferPointer { src in
        out.data.withUnsafeMutableBufferPointer { dst in
            for plane in 0..<(n * c) {
                for y in 0..<h {
                    (dst.baseAddress! + (plane * ph + y) * pw)
                        .update(from: src.baseAddress! + (plane * h + y) * w, count: w)
                }
            }
        }
    }
    return out
}

/// ImageNet mean and std (timm IMAGENET_DEFAULT_MEAN / IMAGENET_DEFAULT_STD), RGB.
public let imagenetMean: [Float] = [0.485, 0.456, 0.406]
public let imagenetStd: [Float] = [0.229, 0.224, 0.225]

/// timm/DeiT evaluation transform on an RGB image → [1, 3, crop, crop]:
/// Resize(int(crop / 0.875)) of the short side with PIL bicubic — the long side as torchvision
/// computes it, int(size · long / short) — then CenterCrop(crop) with torchvision's
/// round((h − crop) / 2.0) offsets (half to even), ToTensor (p / 255) and
/// Normalize(IMAGENET mean/std) ((x − mean) / std), all in float32 as torch does.
public func imagenetEvalTensor(_ image: RGBImage, crop: Int = 224) -> Tensor {
    precondition(crop > 0, "imagenetEvalTensor: crop \(crop)")
    let size = Int(Double(crop) / 0.875)
    let (w, h) = (image.width, image.height)
    let (short, long) = w <= h ? (w, h) : (h, w)
    let newLong = Int(Double(size * long) / Double(short))
    let (nw, nh) = w <= h ? (size, newLong) : (newLong, size)
    let resized = image.resizedPILBicubic(width: nw, height: nh)
    let top = Int((Double(nh - crop) / 2.0).rounded(.toNearestOrEven))
    let left = Int((Double(nw - crop) / 2.0).rounded(.toNearestOrEven))
    let plane = crop * crop
    return resized.pixels.withUnsafeBufferPointer { src in
        Tensor(uninitialized: [1, 3, crop, crop]) { out in
            for c in 0..<3 {
                let m = imagenetMean[c], s = imagenetStd[c]
                for y in 0..<crop {
                    let row = src.baseAddress! + ((top + y) * nw + left) * 3 + c
                    let o = out.baseAddress! + c * plane + y * crop
                    for x in 0..<crop {
                        o[x] = (Float(row[x * 3]) / 255 - m) / s
                    }
                }
            }
        }
    }
}
