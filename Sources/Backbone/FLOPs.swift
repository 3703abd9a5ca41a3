//! Floating-point operations of one forward pass (2 per multiply-add), for benchmarks' GFLOPS.
//! Counts convolutions, linear layers and the two attention products; norms, activations and
//! softmax are left out, as the usual counters (fvcore, the yardsticks) do.

extension UniFormerBackbone {
    public func flops(height: Int, width: Int, attention: StageAttention? = nil) -> Double {
        let mode = attention ?? config.attention
        var (h, w) = (height, width)
        var total = 0.0
        var cin = 3
        for s in 0..<4 {
            let c = config.embedDim[s]
            switch embeds[s] {
            case let .patch(proj, _):
                let (ho, wo) = proj.outputSize(h, w)
                total += 2 * Double(ho * wo * c * cin * proj.kernel * proj.kernel)
                (h, w) = (ho, wo)
            case let .convStem(first, second):
                let (h1, w1) = first.outputSize(h, w)
                total += 2 * Double(h1 * w1 * first.outChannels * cin * 9)
                (h, w) = (h1, w1)
                if let second {
                    let (h2, w2) = second.outputSize(h, w)
                    total += 2 * Double(h2 * w2 * c * first.outChannels * 9)
                    (h, w) = (h2, w2)
                }
            }
            let n = Double(h * w), cd = Double(c), hd = Double(config.mlpHidden[s])
            for i in 0..<config.layers[s] {
                total += 2 * n * cd * 9                      // pos_embed
                total += 2 * n * cd * hd * 2                 // mlp
                if s < 2 {
                    total += 2 * n * (cd * cd * 2 + cd * 25) // conv1, conv2, 5×5 depthwise
                } else {
                    total += 2 * n * cd * cd * 4             // qkv, proj
                    if s == 2, let ws = mode.window(forBlock: i) {
                        let windows = Double(((h + ws - 1) / ws) * ((w + ws - 1) / ws))
                        let t = Double(ws * ws)
                        total += windows * 2 * 2 * t * t * cd
                    } else {
                        total += 2 * 2 * n * n * cd
                    }
                }
            }
            cin = c
        }
        if config.numClasses > 0 { total += 2 * Double(config.embedDim[3] * config.numClasses) }
        return total
    }
}
