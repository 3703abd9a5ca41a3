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

/// Indices of the kept boxes, in descending score order; at most `limit` of them (NMS keeps boxes in
/// score order and a kept box depends only on higher-scored ones, so stopping at the limit gives the
/// same prefix as running to the end: RPN keeps 1000 of ~4000 proposals).
public func nms(_ boxes: [SIMD4<Float>], _ scores: [Float], iouThreshold: Float, limit: Int = .max) -> [Int] {
    let order = scores.indices.sorted { scores[$0] > scores[$1] || (scores[$0] == scores[$1] && $0 < $1) }
    // boxes in score order, contiguous, so the inner loop streams them
    let sorted = order.map { boxes[$0] }
    var suppressed = [Bool](repeating: false, count: sorted.count)
    var keep: [Int] = []
    for p in sorted.indices where !suppressed[p] {
        keep.append(order[p])
        if keep.count >= limit { break }
        let bp = sorted[p]
        for q in (p + 1)..<sorted.count where !suppressed[q] {
            if iou(bp, sorted[q]) > iouThreshold { suppressed[q] = true }
        }
    }
    return keep
}

/// mmcv batched_nms: indices of the kept entries, in descending score order; at most `limit`
/// (the first `limit` of what an unlimited call returns).
public func batchedNMS(_ items: [Scored], iouThreshold: Float, splitThreshold: Int = 10_000, limit: Int = .max) -> [Int] {
    guard !items.isEmpty else { return [] }
    if items.count < splitThreshold {
        var maxCoordinate = -Float.infinity
        for it in items { maxCoordinate = max(maxCoordinate, it.box.max()) }
        let boxes = items.map { it -> SIMD4<Float> in
            let offset = Float(it.group) * (maxCoordinate + 1)
            return it.box + SIMD4(repeating: offset)
        }
        return nms(boxes, items.map(\.score), iouThreshold: iouThreshold, limit: limit)
    }
    var keep: [Int] = []
    for g in Set(items.map(\.group)).sorted() {
        let idx = items.indices.filter { items[$0].group == g }
        // a group's first `limit` keeps hold every one of its boxes in the overall first `limit`
        let k = nms(idx.map { items[$0].box }, idx.map { items[$0].score }, iouThreshold: iouThreshold, limit: limit)
        keep += k.map { idx[$0] }
    }
    // keep[scores[keep].argsort(descending=True)]
    let ranked = keep.sorted { items[$0].score > items[$1].score || (items[$0].score == items[$1].score && $0 < $1) }
    return Array(ranked.prefix(limit))
}

/// The indices of the `k` best scores, best first, ranked by descending score and then ascending
/// index — exactly `indices.sorted(by: that order).prefix(k)` (what mmdet's `scores.sort(descending=
/// True)[:k]` gives on these inputs), in O(n log k): a heap of the k best so far, worst on top.
public func topScoreIndices(_ scores: [Float], _ k: Int) -> [Int] {
    @inline(__always) func better(_ a: Int, _ b: Int) -> Bool { scores[a] > scores[b] || (scores[a] == scores[b] && a < b) }
    guard k < scores.count else { return scores.indices.sorted(by: better) }
    guard k > 0 else { return [] }
    var heap: [Int] = []                 // a binary heap whose root is the worst of the kept
    heap.reserveCapacity(k)
    func siftDown(_ start: Int) {
        var i = start
        while true {
            let l = 2 * i + 1, r = l + 1
            var worst = i
            if l < heap.count && better(heap[worst], heap[l]) { worst = l }
            if r < heap.count && better(heap[worst], heap[r]) { worst = r }
            if worst == i { return }
            heap.swapAt(i, worst); i = worst
        }
    }
    for i in scores.indices {
        if heap.count < k {
            heap.append(i)
            var c = heap.count - 1
            while c > 0 {
                let parent = (c - 1) / 2
                if better(heap[parent], heap[c]) { heap.swapAt(parent, c); c = parent } else { break }
            }
        } else if better(i, heap[0]) {
            heap[0] = i
            siftDown(0)
        }
    }
    return heap.sorted(by: better)
}
