// Detection geometry with hand-checked values: mmdet 2.11's own unit-test numbers
// (tests/test_utils/test_anchor.py, test_coder.py), NMS rules, RoIAlign on a ramp, pycocotools RLE.

import Detection
import Foundation
import ModelConfig
import TensorCore
import Weights
import Testing

func boxDiff(_ a: SIMD4<Float>, _ b: SIMD4<Float>) -> Float {
    let d = a - b
    return max(max(abs(d[0]), abs(d[1])), max(abs(d[2]), abs(d[3])))
}

@Suite struct DetectionUnits {
    @Test func anchorsOfOneLevelMatchMmdetTest() {
        // test_anchor.py::test_strides — AnchorGenerator([10], [1.], [1.], [10]).grid_anchors([(2, 2)])
        let g = AnchorGenerator(strides: [(10, 10)], ratios: [1], scales: [1], baseSizes: [10])
        #expect(g.gridAnchors(level: 0, height: 2, width: 2) == [[-5, -5, 5, 5], [5, -5, 15, 5], [-5, 5, 5, 15], [5, 5, 15, 15]])
        // different strides in x and y
        let g2 = AnchorGenerator(strides: [(10, 20)], ratios: [1], scales: [1], baseSizes: [10])
        #expect(g2.gridAnchors(level: 0, height: 2, width: 2) == [[-5, -5, 5, 5], [5, -5, 15, 5], [-5, 15, 5, 25], [5, 15, 15, 25]])
    }

    @Test func retinaBaseAnchorsMatchMmdetTest() {
        // test_anchor.py::test_retina_anchor — octave_base_scale 4, scales_per_octave 3, ratios 0.5, 1, 2; stride 8
        let scales = (0..<3).map { Float(Foundation.pow(2.0, Double($0) / 3) * 4) }
        let g = AnchorGenerator(strides: [(8, 8)], ratios: [0.5, 1, 2], scales: scales)
        let want: [SIMD4<Float>] = [[-22.6274, -11.3137, 22.6274, 11.3137], [-28.5088, -14.2544, 28.5088, 14.2544],
                                    [-35.9188, -17.9594, 35.9188, 17.9594], [-16, -16, 16, 16],
                                    [-20.1587, -20.1587, 20.1587, 20.1587], [-25.3984, -25.3984, 25.3984, 25.3984],
                                    [-11.3137, -22.6274, 11.3137, 22.6274], [-14.2544, -28.5088, 14.2544, 28.5088],
                                    [-17.9594, -35.9188, 17.9594, 35.9188]]
        #expect(zip(g.baseAnchors[0], want).allSatisfy { boxDiff($0, $1) < 1e-4 })
    }

    @Test func deltaDecodeWithClampingMatchesMmdetTest() {
        // test_coder.py::test_delta_bbox_coder, max_shape (32, 32), atol 1e-4
        let coder = DeltaXYWHBBoxCoder()
        let rois: [SIMD4<Float>] = [[0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 1, 1], [5, 5, 5, 5]]
        let deltas: [SIMD4<Float>] = [[0, 0, 0, 0], [1, 1, 1, 1], [0, 0, 2, -1], [0.7, -1.9, -0.5, 0.3]]
        let want: [SIMD4<Float>] = [[0, 0, 1, 1], [0.1409, 0.1409, 2.8591, 2.8591], [0, 0.3161, 4.1945, 0.6839], [5, 5, 5, 5]]
        let got = zip(rois, deltas).map { coder.decode($0, $1, maxShape: (32, 32)) }
        #expect(zip(got, want).allSatisfy { boxDiff($0, $1) < 1e-4 }, "\(got)")
        // the dw clamp: exp(|log(16/1000)|) = 62.5 times the width at most, then clipped to the image
        let wide = coder.decode([10, 10, 12, 12], [0, 0, 100, 0], maxShape: nil)
        #expect(abs((wide[2] - wide[0]) - 2 * 62.5) < 1e-3)
        #expect(coder.decode([10, 10, 12, 12], [0, 0, 100, 0], maxShape: (20, 30)) == [0, 10, 30, 12])
    }

    @Test func nmsDropsOverlapsAboveTheThresholdAndKeepsTheFirstOfTies() {
        let boxes: [SIMD4<Float>] = [[0, 0, 10, 10], [1, 0, 11, 10], [0, 0, 10, 10], [20, 20, 30, 30], [0, 0, 10, 5]]
        let scores: [Float] = [0.9, 0.8, 0.9, 0.7, 0.95]
        // box 4 (0.95) first; IoU(4, 0) = 0.5 is not > 0.5 so 0 survives; 2 ties 0 in score (later index
        // loses) and overlaps it completely; 1 overlaps 0 by 9/11 > 0.5
        #expect(nms(boxes, scores, iouThreshold: 0.5) == [4, 0, 3])
        // batched: the same boxes in different groups never suppress each other
        let items = boxes.indices.map { Scored(box: boxes[$0], score: scores[$0], group: $0 == 2 ? 1 : 0) }
        #expect(batchedNMS(items, iouThreshold: 0.5) == [4, 0, 2, 3])
        #expect(batchedNMS(items, iouThreshold: 0.5, splitThreshold: 1) == [4, 0, 2, 3])
    }

    @Test func limitedNMSAndTopKAreThePrefixesOfTheFullRanking() {
        // random boxes with many tied scores (quantised to 1/50): the limited NMS must return the
        // first `limit` boxes of the unlimited one, in both batched paths; the heap top-k must equal
        // a full sort by (score desc, index asc) cut to k
        var rng = TestRNG(state: 77)
        let n = 600
        let boxes: [SIMD4<Float>] = (0..<n).map { _ in
            let x = (rng.next() + 1) * 200, y = (rng.next() + 1) * 200, w = (rng.next() + 1.2) * 30, h = (rng.next() + 1.2) * 30
            return [x, y, x + w, y + h]
        }
        let scores: [Float] = (0..<n).map { _ in (rng.next() * 25).rounded() / 50 + 0.5 }
        let full = nms(boxes, scores, iouThreshold: 0.4)
        #expect(full.count > 60)
        for limit in [1, 17, 60, full.count + 5] {
            #expect(nms(boxes, scores, iouThreshold: 0.4, limit: limit) == Array(full.prefix(limit)))
        }
        let items = boxes.indices.map { Scored(box: boxes[$0], score: scores[$0], group: $0 % 3) }
        let batched = batchedNMS(items, iouThreshold: 0.4)
        for split in [10_000, 1] {
            #expect(batchedNMS(items, iouThreshold: 0.4, splitThreshold: split, limit: 45) == Array(batched.prefix(45)))
        }
        let ranked = scores.indices.sorted { scores[$0] > scores[$1] || (scores[$0] == scores[$1] && $0 < $1) }
        for k in [0, 1, 10, 333, n - 1, n, n + 3] {
            #expect(topScoreIndices(scores, k) == Array(ranked.prefix(k)))
        }
    }

    @Test func roiAlignOnARampIsExact() {
        // f(y, x) = 10·y + x on a 16×16 map, stride 1: a bilinear ramp is reproduced exactly by every
        // sample inside the map, so each bin's average is the ramp at the bin centre.
        let ctx = ComputeContext(threads: 2)
        let map = Tensor(shape: [16, 16, 1], data: (0..<256).map { Float(10 * ($0 / 16) + $0 % 16) })
        let align = RoIAlign(outputSize: 2, samplingRatio: 0, strides: [1])
        let out = align([map], [[2, 4, 10, 8]], channelsFirst: false, ctx)
        // aligned: box − 0.5 → x 1.5…9.5, y 3.5…7.5; bin centres x 3.5, 7.5; y 4.5, 6.5
        #expect(maxAbsDiff(out.data, [48.5, 52.5, 68.5, 72.5]) < 1e-4)
        #expect(align.level(of: [0, 0, 56, 56]) == 0)
    }

    @Test func rleMatchesPycocotools() {
        // m = np.zeros((5, 7)); m[1:4, 2:6] = 1; m[0, 0] = 1; m[4, 6] = 1; pycocotools.mask.encode → b'01:2H000003N'
        var m = [Bool](repeating: false, count: 35)
        for y in 1..<4 { for x in 2..<6 { m[y * 7 + x] = true } }
        m[0] = true; m[4 * 7 + 6] = true
        #expect(encodeRLE(m, height: 5, width: 7).counts == "01:2H000003N")
        // ones((4, 4)) → b'0`0', zeros((4, 4)) → b'`0'
        #expect(encodeRLE([Bool](repeating: true, count: 16), height: 4, width: 4).counts == "0`0")
        #expect(encodeRLE([Bool](repeating: false, count: 16), height: 4, width: 4).counts == "`0")
    }

    @Test(arguments: [(14, false, 5, 2), (7, true, 3, 64), (14, true, 1, 64)])
    func batchedMaskHeadEqualsOneRoIAtATime(size s: Int, norm: Bool, rois n: Int, chunk: Int) throws {
        // The stacked path (RoIs in one tall map, zero rows between them) against the head run on each
        // RoI alone: same logits of the kept class, for chunks that split the RoIs and for one chunk.
        let text = """
            {"type": "FCNMaskHead", "num_convs": 3, "in_channels": 24, "conv_out_channels": 16, "num_classes": 5\(norm ? ", \"norm_cfg\": {\"type\": \"BN\"}" : "")}
            """
        let head = try FCNMaskHead(ConfigNode(try JSON.parse(text, file: "mask.json"), path: "mask_head", file: "mask.json"),
                                   weights: WeightScope.random(seed: 3))
        var rng = SystemRandomNumberGenerator()
        let x = Tensor(shape: [n, s, s, 24], data: (0..<(n * s * s * 24)).map { _ in Float.random(in: -1...1, using: &rng) })
        let channels = (0..<n).map { ($0 * 3 + 1) % 5 }
        let ctx = ComputeContext(threads: 2)
        let batched = head.logits(batch: x, channels: channels, ctx, chunk: chunk)
        #expect(batched.count == n)
        let per = s * s * 24
        for i in 0..<n {
            let one = head(Tensor(shape: [s, s, 24], data: Array(x.data[(i * per)..<((i + 1) * per)])), ctx)
            let want = (0..<(4 * s * s)).map { one.data[$0 * 5 + channels[i]] }
            let scale = want.map { abs($0) }.max()!
            #expect(scale > 1e-3)
            #expect(batched[i].count == want.count)
            let err = zip(batched[i], want).map { abs($0 - $1) }.max()!
            #expect(err <= 1e-4 * scale, "RoI \(i): max |Δ| \(err) of \(scale)")
        }
    }
}
