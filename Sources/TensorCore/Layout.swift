//! Explicit layout changes between the API's NCHW and the engine's channels-last maps.

/// [1, C, H, W] (or [C, H, W]) → [H, W, C].
public func nchwToHWC(_ x: Tensor) -> Tensor {
    let s = x.shape.suffix(3).map { $0 }
    precondition(x.rank >= 3 && x.count == s[0] * s[1] * s[2], "nchwToHWC: \(x.shape)")
    let (c, h, w) = (s[0], s[1], s[2])
    return Tensor(uninitialized: [h, w, c]) { out in
        x.data.withUnsafeBufferPointer { xp in
            for ch in 0..<c { for i in 0..<(h * w) { out[i * c + ch] = xp[ch * h * w + i] } }
        }
    }
}

/// [H, W, C] → [1, C, H, W].
public func hwcToNCHW(_ x: Tensor) -> Tensor {
    precondition(x.rank == 3, "hwcToNCHW: \(x.shape)")
    let (h, w, c) = (x.shape[0], x.shape[1], x.shape[2])
    return Tensor(uninitialized: [1, c, h, w]) { out in
        x.data.withUnsafeBufferPointer { xp in
            for i in 0..<(h * w) { for ch in 0..<c { out[ch * h * w + i] = xp[i * c + ch] } }
        }
    }
}
