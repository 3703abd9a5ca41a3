//! StateDict: the named tensors of a checkpoint, read from a `.pth` (torch zip or legacy format)
//! or a safetensors file — the format is detected from the bytes, not the extension.
//!
//! Tensors keep their stored element type and bytes (a checkpoint in fp16 stays fp16 until a layer
//! asks for float32), and contiguous tensors share the file's buffer instead of being copied.

import Foundation
import TensorCore

/// One tensor as stored: element type, shape, and exactly `count * dtype.size` little-endian bytes.
public struct StoredTensor: Sendable {
    public let dtype: DType
    public let shape: [Int]
    /// The raw little-endian bytes, row-major (contiguous) — possibly a slice of the file's buffer.
    public let bytes: Data

    /// Element count.
    public var count: Int { shape.reduce(1, *) }

    /// A tensor over raw bytes; `bytes.count` must be `shape` elements of `dtype`.
    public init(dtype: DType, shape: [Int], bytes: Data) {
        precondition(shape.allSatisfy { $0 >= 0 } && shape.reduce(1, *) * dtype.size == bytes.count,
                     "StoredTensor: \(bytes.count) bytes do not hold \(shape) elements of \(dtype)")
        self.dtype = dtype
        self.shape = shape
        self.bytes = bytes
    }

    /// A float32 tensor holding `tensor`'s values.
    public init(_ tensor: Tensor) {
        self.init(dtype: .float32, shape: tensor.shape,
                  bytes: tensor.data.withUnsafeBytes { Data($0) })
    }

    /// The values as float32 (integers and bools converted; fp16/bf16 widened exactly, fp64 rounded).
    public func floats() throws -> [Float] {
        let n = count
        return [Float](unsafeUninitializedCapacity: n) { buffer, initialized in
            bytes.withUnsafeBytes { raw in
                if n > 0 { convertToFloat32(dtype, raw.baseAddress!, count: n, into: buffer.baseAddress!) }
            }
            initialized = n
        }
    }

    /// The values as a float32 `Tensor` of this shape.
    public func tensor() throws -> Tensor {
        Tensor(shape: shape, data: try floats())
    }
}

/// The tensors of one checkpoint by their state_dict names, plus what the file said about itself.
public struct StateDict: Sendable {
    public var tensors: [String: StoredTensor]
    /// Tensor names in file order (pickle order for `.pth`, header order for safetensors).
    public var keys: [String]
    /// `meta.CLASSES` of an mmcv checkpoint when present (a tuple or list of strings), or the
    /// newline-separated `classes` metadata of a safetensors file (as `uniformer convert` writes it);
    /// never required.
    public var classes: [String]?
    /// "pth-zip", "pth-legacy", "safetensors", or "memory" for a dict built in code.
    public var format: String
    /// Entries that were read past without being used: top-level entries beside the state dict
    /// (`optimizer`, `amp`, `args`, …), non-tensor entries inside it (as `state_dict.NAME`, or `NAME`
    /// for a bare state dict), and a `meta.CLASSES` that is not a list of strings.
    public var skipped: [String]
    /// The safetensors `__metadata__` (empty for other formats).
    public var metadata: [String: String]
    /// True when every key carried a `module.` prefix (DataParallel) and it was removed.
    public var strippedModulePrefix: Bool

    public init(tensors: [String: StoredTensor], keys: [String]) {
        precondition(Set(keys) == Set(tensors.keys) && keys.count == tensors.count, "StateDict: keys and tensors differ")
        self.tensors = tensors
        self.keys = keys
        self.classes = nil
        self.format = "memory"
        self.skipped = []
        self.metadata = [:]
        self.strippedModulePrefix = false
    }

    /// Reads a checkpoint, detecting its format from the first bytes:
    /// `PK\x03\x04` → torch zip, `{` after an 8-byte length → safetensors, `\x80` (a pickle) → legacy torch.
    public init(contentsOf url: URL) throws {
        let file = url.relativePath  // as the user gave it
        let data: Data
        do {
            data = try Data(contentsOf: url)
        } catch {
            throw WeightError.unreadable(file: file, reason: Self.reason(error))
        }
        self = try Self.decode(data, file: file)
    }

    /// Reads a checkpoint already in memory; `file` names it in errors.
    public static func decode(_ data: Data, file: String) throws -> StateDict {
        let head = [UInt8](data.prefix(9))
        if head.starts(with: [0x50, 0x4b, 0x03, 0x04]) {
            return try TorchCheckpoint.loadZip(data, file: file)
        }
        // safetensors before the pickle test: its 8-byte header length starts with 0x80 whenever the
        // length is 128 more than a multiple of 256, while a legacy .pth has 0xf9 at byte 8, never '{'.
        if head.count == 9, head[8] == UInt8(ascii: "{") {
            return try Safetensors.load(data, file: file)
        }
        if head.first == 0x80 {
            return try TorchCheckpoint.loadLegacy(data, file: file)
        }
        if head.starts(with: [0x50, 0x4b]) {  // a zip that does not start with a local header
            throw WeightError.corrupt(file: file, reason: "zip archive does not start with a local file header")
        }
        if data.isEmpty { throw WeightError.truncated(file: file) }
        throw WeightError.unrecognizedFormat(file: file)
    }

    public subscript(key: String) -> StoredTensor? { tensors[key] }

    /// Builds a dict from entries in order; a repeated name is an error.
    init(ordered entries: [(String, StoredTensor)], format: String, file: String) throws {
        var tensors: [String: StoredTensor] = [:]
        tensors.reserveCapacity(entries.count)
        for (key, tensor) in entries {
            guard tensors.updateValue(tensor, forKey: key) == nil else {
                throw WeightError.corrupt(file: file, reason: "tensor '\(key)' appears twice")
            }
        }
        self.init(tensors: tensors, keys: entries.map(\.0))
        self.format = format
    }

    private static func reason(_ error: Error) -> String {
        let nsError = error as NSError
        if let underlying = nsError.userInfo[NSUnderlyingErrorKey] as? NSError,
           underlying.domain == NSPOSIXErrorDomain, let code = POSIXErrorCode(rawValue: Int32(underlying.code)) {
            return String(cString: strerror(code.rawValue))
        }
        return nsError.localizedDescription
    }
}
