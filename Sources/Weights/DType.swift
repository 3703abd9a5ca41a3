//! Element types of stored tensors and their conversion to float32.
//!
//! Stored bytes are little-endian (torch's `byteorder` record and safetensors both say so; the
//! hosts this package targets are little-endian too, checked at compile time below).

#if _endian(big)
#error("Weights reads little-endian tensor data straight into memory; big-endian hosts are not supported")
#endif

/// The element type of a stored tensor. Raw values are the names `uniformer info` prints.
public enum DType: String, Sendable, CaseIterable {
    case float32, float16, bfloat16, float64, int64, int32, int16, int8, uint8, bool

    /// Bytes per element.
    public var size: Int {
        switch self {
        case .float64, .int64: 8
        case .float32, .int32: 4
        case .float16, .bfloat16, .int16: 2
        case .int8, .uint8, .bool: 1
        }
    }

    /// The safetensors header name ("F32", "BF16", …).
    public var safetensorsName: String {
        switch self {
        case .float32: "F32"
        case .float16: "F16"
        case .bfloat16: "BF16"
        case .float64: "F64"
        case .int64: "I64"
        case .int32: "I32"
        case .int16: "I16"
        case .int8: "I8"
        case .uint8: "U8"
        case .bool: "BOOL"
        }
    }

    /// The inverse of `safetensorsName`; nil for types this package does not read (F8_*, U16, …).
    public init?(safetensorsName name: String) {
        guard let match = DType.allCases.first(where: { $0.safetensorsName == name }) else { return nil }
        self = match
    }

    /// The dtype behind a legacy storage class name of the `torch` module (`FloatStorage`, …);
    /// `UntypedStorage` holds bytes. nil for types this package does not read (complex, quantized).
    init?(torchStorageName name: String) {
        switch name {
        case "FloatStorage": self = .float32
        case "HalfStorage": self = .float16
        case "BFloat16Storage": self = .bfloat16
        case "DoubleStorage": self = .float64
        case "LongStorage": self = .int64
        case "IntStorage": self = .int32
        case "ShortStorage": self = .int16
        case "CharStorage": self = .int8
        case "ByteStorage", "UntypedStorage": self = .uint8
        case "BoolStorage": self = .bool
        default: return nil
        }
    }
}

// MARK: - Conversion to float32

/// Converts `count` elements of `dtype` at `source` (any alignment) into `destination`.
/// Every branch is a tight loop over the whole buffer so the compiler can vectorise it.
func convertToFloat32(_ dtype: DType, _ source: UnsafeRawPointer, count: Int,
                      into destination: UnsafeMutablePointer<Float>) {
    switch dtype {
    case .float32:
        UnsafeMutableRawPointer(destination).copyMemory(from: source, byteCount: count * 4)
    case .float16:
        for i in 0..<count {
            destination[i] = float16ToFloat32(source.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))
        }
    case .bfloat16:
        for i in 0..<count {
            let bits = UInt32(source.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) << 16
            destination[i] = Float(bitPattern: bits)
        }
    case .float64:
        for i in 0..<count { destination[i] = Float(source.loadUnaligned(fromByteOffset: 8 * i, as: Double.self)) }
    case .int64:
        for i in 0..<count { destination[i] = Float(source.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self)) }
    case .int32:
        for i in 0..<count { destination[i] = Float(source.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self)) }
    case .int16:
        for i in 0..<count { destination[i] = Float(source.loadUnaligned(fromByteOffset: 2 * i, as: Int16.self)) }
    case .int8:
        for i in 0..<count { destination[i] = Float(source.load(fromByteOffset: i, as: Int8.self)) }
    case .uint8:
        for i in 0..<count { destination[i] = Float(source.load(fromByteOffset: i, as: UInt8.self)) }
    case .bool:
        for i in 0..<count { destination[i] = source.load(fromByteOffset: i, as: UInt8.self) != 0 ? 1 : 0 }
    }
}

/// IEEE half → single, exact for every bit pattern, branch-free so that the loop vectorises
/// (no dependence on F16C being enabled at compile time).
/// Shifting the exponent+mantissa into single-precision position and multiplying by 2^112 rebiases
/// the exponent (15 → 127) and turns half subnormals into the right normal floats in one step;
/// an all-ones half exponent (inf/NaN) then gets the all-ones single exponent, keeping the payload.
@inline(__always)
func float16ToFloat32(_ h: UInt16) -> Float {
    let bits = UInt32(h)
    let sign = (bits & 0x8000) << 16
    let magnitude = bits & 0x7fff
    let scaled = Float(bitPattern: magnitude << 13) * Float(bitPattern: 0x7780_0000)  // × 2^112
    let infNaN: UInt32 = magnitude >= 0x7c00 ? 0x7f80_0000 : 0
    return Float(bitPattern: scaled.bitPattern | infNaN | sign)
}
