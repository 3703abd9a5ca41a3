// Resampling and pooling against values PyTorch printed (one-liners in the comments).

import TensorCore
import Testing

@Suite struct ResizeOps {
    let ctx = ComputeContext(threads: 2)
    // x = torch.arange(12.).reshape(1, 1, 3, 4)
    let ramp = Tensor(shape: [3, 4, 1], data: (0..<12).map(Float.init))

    @Test func bilinearUpMatchesTorch() {
        // F.interpolate(x, size=(5, 7), mode='bilinear', align_corners=False)
        let want: [Float] = [0.0, 0.35714290, 0.92857146, 1.5000001, 2.0714288, 2.6428573, 3.0, 1.6000001, 1.9571429, 2.5285716,
                             3.1000001, 3.6714287, 4.2428575, 4.6000004, 4.0, 4.3571429, 4.9285717, 5.5, 6.0714288, 6.6428571,
                             7.0, 6.4000006, 6.7571435, 7.3285723, 7.9000010, 8.4714289, 9.0428581, 9.4000006, 8.0, 8.3571424,
                             8.9285707, 9.4999990, 10.071428, 10.642858, 11.0]
        #expect(maxAbsDiff(resizeBilinear(ramp, height: 5, width: 7, ctx).data, want) < 2e-6)
    }

    @Test func bilinearDownMatchesTorch() {
        // F.interpolate(x, size=(2, 3), mode='bilinear', align_corners=False)
        let want: [Float] = [1.1666666, 2.5, 3.8333335, 7.1666665, 8.5, 9.833333]
        #expect(maxAbsDiff(resizeBilinear(ramp, height: 2, width: 3, ctx).data, want) < 2e-6)
    }

    @Test func nearestMatchesTorch() {
        // F.interpolate(x, size=(5, 7), mode='nearest')
        let want: [Float] = [0, 0, 1, 1, 2, 2, 3, 0, 0, 1, 1, 2, 2, 3, 4, 4, 5, 5, 6, 6, 7, 4, 4, 5, 5, 6, 6, 7, 8, 8, 9, 9, 10, 10, 11]
        #expect(resizeNearest(ramp, height: 5, width: 7, ctx).data == want)
    }

    @Test func adaptivePoolMatchesTorch() {
        // nn.AdaptiveAvgPool2d(2)(torch.arange(35.).reshape(1, 1, 5, 7)) — overlapping bins
        let x = Tensor(shape: [5, 7, 1], data: (0..<35).map(Float.init))
        #expect(adaptiveAvgPool(x, size: 2).data == [8.5, 11.5, 22.5, 25.5])
    }

    @Test func concatInterleavesChannels() {
        let a = Tensor(shape: [1, 2, 2], data: [1, 2, 3, 4]), b = Tensor(shape: [1, 2, 1], data: [9, 8])
        #expect(concatChannels([a, b], ctx).data == [1, 2, 9, 3, 4, 8])
    }

    @Test func bandedConvMatchesNaive() {
        // 3×3 over 512 channels on a 50×40 map: the im2col buffer is filled in 3 bands of rows.
        var rng = TestRNG(state: 99)
        let x = rng.tensor([50, 40, 512])
        let w = rng.tensor([4, 512, 3, 3])
        let b = (0..<4).map { _ in rng.next() }
        let got = Conv2d(weight: w, bias: b, stride: 1, padding: 1)(x, ctx)
        #expect(maxAbsDiff(got.data, naiveConv(x, w, b, stride: 1, pad: 1).data) < 1e-3)
    }
}
