//! Tensor: a float32 array with a shape, contiguous, row-major.
//!
//! The engine's activations are channels-last inside the backbone ([H, W, C], i.e. tokens × channels,
//! so 1×1 convolutions and linear layers are one GEMM over tokens) and NCHW at the API boundary
//! ([1, C, H, W], as PyTorch). Weights keep the checkpoint's layouts (OIHW, [out, in]).
//! There is no broadcasting engine: every op states its layout, and copies are explicit.

public struct Tensor: Sendable, Equatable {
    public var shape: [Int]
    public var data: [Float]

    public init(shape: [Int], data: [Float]) {
        precondition(shape.reduce(1, *) == data.count, "Tensor: shape \(shape) needs \(shape.reduce(1, *)) values, got \(data.count)")
        self.shape = shape
        self.data = data
    }

    /// A tensor of zeros.
    public init(zeros shape: [Int]) {
        self.init(shape: shape, data: [Float](repeating: 0, count: shape.reduce(1, *)))
    }

    /// A tensor whose contents are written by `fill` before it is used (no zero-initialisation).
    public init(uninitialized shape: [Int], _ fill: (UnsafeMutableBufferPointer<Float>) -> Void) {
        let count = shape.reduce(1, *)
        self.shape = shape
        self.data = [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
            fill(buffer)
            initialized = count
        }
    }

    public var count: Int { data.count }
    public var rank: Int { shape.count }

    /// The same values under another shape of equal element count.
    public func reshaped(_ newShape: [Int]) -> Tensor {
        Tensor(shape: newShape, data: data)
    }
}
