//! Errors of weight loading: one line each, naming the file and/or the key.

/// Everything that can go wrong reading or applying a checkpoint. File-level errors carry the
/// path as given; key-level errors (from `WeightScope`) carry the full state_dict key.
public enum WeightError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The file could not be read at all (missing, a directory, permissions).
    case unreadable(file: String, reason: String)
    /// The bytes are none of the formats this package reads.
    case unrecognizedFormat(file: String)
    /// The file ends before a structure it announces.
    case truncated(file: String)
    /// A structure is inconsistent (bad offsets, bad pickle, bad zip directory, …).
    case corrupt(file: String, reason: String)
    /// The pickle names a Python global outside the whitelist, in a place whose value we need.
    case unsupportedGlobal(file: String, module: String, name: String)
    /// A tensor element type this package does not read (complex, float8, quantized, …).
    case unsupportedDType(file: String, dtype: String)
    /// A valid file using a feature this package does not implement (compression, big-endian, …).
    case unsupported(file: String, reason: String)
    /// A key the model needs is not in the checkpoint.
    case missing(key: String)
    /// A tensor has another shape than the model needs.
    case shapeMismatch(key: String, expected: [Int], got: [Int])
    /// Keys in the checkpoint that nothing used and no ignore rule names (sorted).
    case unexpected([String])
    /// Two tensors with one name given to a writer, or an empty name.
    case invalidName(String)
    /// Writing an output file failed; nothing is left at the destination.
    case writeFailed(file: String, reason: String)

    /// One line: names and reasons that come from a damaged file may hold control characters,
    /// which are shown escaped.
    public var description: String {
        var line = ""
        for scalar in message.unicodeScalars {
            if scalar.value < 0x20 || scalar.value == 0x7f {
                line += "\\u{\(String(scalar.value, radix: 16))}"
            } else {
                line.unicodeScalars.append(scalar)
            }
        }
        return line
    }

    private var message: String {
        switch self {
        case let .unreadable(file, reason):
            "\(file): cannot read: \(reason)"
        case let .unrecognizedFormat(file):
            "\(file): not a PyTorch checkpoint (zip or legacy) or a safetensors file"
        case let .truncated(file):
            "\(file): file is truncated"
        case let .corrupt(file, reason):
            "\(file): corrupt: \(reason)"
        case let .unsupportedGlobal(file, module, name):
            "\(file): the pickle needs the Python global \(module).\(name), which is not on the whitelist (pickles are never executed)"
        case let .unsupportedDType(file, dtype):
            "\(file): unsupported tensor element type \(dtype)"
        case let .unsupported(file, reason):
            "\(file): unsupported: \(reason)"
        case let .missing(key):
            "weights: missing tensor '\(key)'"
        case let .shapeMismatch(key, expected, got):
            "weights: '\(key)' has shape \(got), expected \(expected)"
        case let .unexpected(keys):
            "weights: \(keys.count) unexpected tensor\(keys.count == 1 ? "" : "s"): "
                + keys.prefix(8).joined(separator: ", ") + (keys.count > 8 ? ", …" : "")
        case let .invalidName(name):
            "weights: invalid or duplicate tensor name '\(name)'"
        case let .writeFailed(file, reason):
            "\(file): cannot write: \(reason)"
        }
    }
}
