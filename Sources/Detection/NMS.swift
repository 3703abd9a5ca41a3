//! Non-maximum suppression as mmcv's `nms` and `batched_nms` (ops/nms.py) compute it on the CPU:
//! boxes sorted by descending score (ties keep input order), a box is dropped when its IoU with a
//! kept box is > the threshold, IoU without the legacy +1. `batchedNMS` runs NMS per group (class or
//! level) with mmcv's coordinate-offset trick below 10 000 boxes (boxes shifted by
//! group · (max coordinate + 1) in float32, so float rounding matches) and a per-group loop above.

public struct Scored: Sendable, Equatable {
    public var box: SIMD4<Float>
    public var score: Float
    public var group: Int
    public init(box: SIMD4<Float>, score: Float, group: Int = 0) { self.box = box; self.score = score; self.group = group }
}

@inline(__always)
func iou(_ a: SIMD4<Float>, _ b: SIMD4<Float>) -> Float {
    let w = max(min(a[2], b[2]) - max(a[0], b[0]), 0)
    let h = max(min(a[3], b[3]) - max(a[1], b[1]), 0)
    let inter = w * h
    let areaA = (a[2] - a[0]) * (a[3] - a[1]), areaB = (b[2] - b[0]) * (b[3] - b[1])
    return inter / (areaA + areaB - inter)
}

/// Indices of the kept boxes, in descending score order.
public func nms(_ boxes: [SIMD4<Float>], _ scores: [Float], iouThreshold: Float) -> [Int] {
    let order = scores.indices.sorted { scores[$0] > scores[$1] || (scores[$0] == scores[$1] && $0 < $1) }
    var suppressed = [Bool](repeating: false, count: boxes.count)
    var keep: [Int] = []
    for (pos, i) in order.enumerated() where !suppressed[i] {
        keep.append(i)
        let bi = boxes[i]
        for j in order[(pos + 1)...] where !suppressed[j] {
            if iou(bi, boxes[j]) > iouThreshold { suppressed[j] = true }
        }
    }
    return keep
}

/// mmcv batched_nms: indices of the kept entries, in descending score order.
public func batchedNMS(_ items: [Scored], iouThreshold: Float, splitThreshold: Int = 10_000) -> [Int] {
    guard !items.isEmpty else { return [] }
    if items.count < splitThreshold {
        var maxCoordinate = -Float.infinity
        for it in items { maxCoordinate = max(maxCoordinate, it.box.max()) }
        let boxes = items.map { it -> SIMD4<Float> in
            let offset = Float(it.group) * (maxCoordinate + 1)
            return it.box + SIMD4(repeating: offset)
        }
        return nms(boxes, items.map(\.score), iouThreshold: iouThreshold)
    }
    var keep: [Int] = []
    for g in Set(items.map(\.group)).sorted() {
        let idx = items.indices.filter { items[$0].group == g }
        let k = nms(idx.map { items[$0].box }, idx.map { items[$0].score }, iouThreshold: iouThreshold)
        keep += k.map { idx[$0] }
    }
    // keep[scores[keep].argsort(descending=True)]
    return keep.sorted { items[$0].score > items[$1].score || (items[$0].score == items[$1].score && $0 < $1) }
}
