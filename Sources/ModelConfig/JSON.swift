//! A JSON value tree parsed with json-c, and typed access whose errors name the field path.

import CJSONC
import Foundation

public indirect enum JSON: Sendable, Equatable {
    case null
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case array([JSON])
    case object([(String, JSON)])   // keys in file order

    public static func == (a: JSON, b: JSON) -> Bool {
        switch (a, b) {
        case (.null, .null): return true
        case let (.bool(x), .bool(y)): return x == y
        case let (.int(x), .int(y)): return x == y
        case let (.double(x), .double(y)): return x == y
        case let (.string(x), .string(y)): return x == y
        case let (.array(x), .array(y)): return x == y
        case let (.object(x), .object(y)):
            return x.count == y.count && zip(x, y).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        default: return false
        }
    }
}

public enum ConfigError: Error, CustomStringConvertible, Equatable {
    case unreadable(file: String, reason: String)
    case syntax(file: String, reason: String)
    case missing(file: String, field: String)
    case wrongType(file: String, field: String, expected: String, got: String)
    case invalid(file: String, field: String, reason: String)
    case unknownType(file: String, field: String, type: String)

    public var description: String {
        switch self {
        case let .unreadable(f, r): return "\(f): cannot read config: \(r)"
        case let .syntax(f, r): return "\(f): not valid JSON: \(r)"
        case let .missing(f, k): return "\(f): missing required field '\(k)'"
        case let .wrongType(f, k, e, g): return "\(f): field '\(k)' must be \(e), got \(g)"
        case let .invalid(f, k, r): return "\(f): field '\(k)': \(r)"
        case let .unknownType(f, k, t): return "\(f): field '\(k)': unknown type '\(t)'"
        }
    }
}

extension JSON {
    /// Parses JSON text with json-c; errors carry json-c's message and the file name.
    public static func parse(_ text: String, file: String) throws -> JSON {
        guard let tok = json_tokener_new() else { throw ConfigError.syntax(file: file, reason: "out of memory") }
        defer { json_tokener_free(tok) }
        let bytes = Array(text.utf8)
        let obj: OpaquePointer? = bytes.withUnsafeBufferPointer { p in
            p.baseAddress!.withMemoryRebound(to: CChar.self, capacity: max(1, p.count)) {
                json_tokener_parse_ex(tok, $0, Int32(p.count))
            }
        }
        let err = json_tokener_get_error(tok)
        if err != json_tokener_success || obj == nil {
            let msg = err == json_tokener_continue ? "unexpected end of input" : String(cString: json_tokener_error_desc(err))
            throw ConfigError.syntax(file: file, reason: "\(msg) at byte \(json_tokener_get_parse_end(tok))")
        }
        defer { json_object_put(obj) }
        let end = json_tokener_get_parse_end(tok)
        if bytes[end...].contains(where: { !($0 == 0x20 || $0 == 0x0a || $0 == 0x0d || $0 == 0x09) }) {
            throw ConfigError.syntax(file: file, reason: "trailing characters after the value at byte \(end)")
        }
        return convert(obj)
    }

    public static func load(contentsOf url: URL) throws -> JSON {
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw ConfigError.unreadable(file: url.path, reason: (error as NSError).localizedDescription)
        }
        guard data.count < 64 << 20 else { throw ConfigError.unreadable(file: url.path, reason: "larger than 64 MB") }
        guard let text = String(data: data, encoding: .utf8) else {
            throw ConfigError.syntax(file: url.path, reason: "not UTF-8 text")
        }
        return try parse(text, file: url.path)
    }

    private static func convert(_ o: OpaquePointer?) -> JSON {
        guard let o else { return .null }
        switch json_object_get_type(o) {
        case json_type_null: return .null
        case json_type_boolean: return .bool(json_object_get_boolean(o) != 0)
        case json_type_int: return .int(Int(json_object_get_int64(o)))
        case json_type_double: return .double(json_object_get_double(o))
        case json_type_string: return .string(String(cString: json_object_get_string(o)))
        case json_type_array:
            let n = json_object_array_length(o)
            return .array((0..<n).map { convert(json_object_array_get_idx(o, $0)) })
        case json_type_object:
            var out: [(String, JSON)] = []
            var it = json_object_iter_begin(o), end = json_object_iter_end(o)
            while json_object_iter_equal(&it, &end) == 0 {
                out.append((String(cString: json_object_iter_peek_name(&it)), convert(json_object_iter_peek_value(&it))))
                json_object_iter_next(&it)
            }
            return .object(out)
        default: return .null
        }
    }

    public var typeName: String {
        switch self {
        case .null: return "null"
        case .bool: return "a boolean"
        case .int: return "an integer"
        case .double: return "a number"
        case .string: return "a string"
        case .array: return "a list"
        case .object: return "an object"
        }
    }

    public subscript(key: String) -> JSON? {
        if case let .object(pairs) = self { return pairs.first { $0.0 == key }?.1 }
        return nil
    }
}

/// Typed reading of one JSON object, with the field path for error messages.
public struct ConfigNode: Sendable {
    public let value: JSON
    public let path: String
    public let file: String

    public init(_ value: JSON, path: String = "", file: String) {
        self.value = value; self.path = path; self.file = file
    }

    public func fieldPath(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    public func has(_ key: String) -> Bool {
        if let v = value[key], v != .null { return true }
        return false
    }

    public func child(_ key: String) throws -> ConfigNode {
        guard let v = value[key], v != .null else { throw ConfigError.missing(file: file, field: fieldPath(key)) }
        guard case .object = v else { throw wrong(key, "an object", v) }
        return ConfigNode(v, path: fieldPath(key), file: file)
    }

    public func optionalChild(_ key: String) throws -> ConfigNode? {
        has(key) ? try child(key) : nil
    }

    func wrong(_ key: String, _ expected: String, _ got: JSON) -> ConfigError {
        .wrongType(file: file, field: fieldPath(key), expected: expected, got: got.typeName)
    }

    func raw(_ key: String) throws -> JSON {
        guard let v = value[key], v != .null else { throw ConfigError.missing(file: file, field: fieldPath(key)) }
        return v
    }

    public func int(_ key: String) throws -> Int {
        let v = try raw(key)
        switch v {
        case let .int(i): return i
        case let .double(d) where d == d.rounded() && abs(d) < 1e15: return Int(d)
        default: throw wrong(key, "an integer", v)
        }
    }

    public func int(_ key: String, default d: Int) throws -> Int { has(key) ? try int(key) : d }

    public func double(_ key: String) throws -> Double {
        let v = try raw(key)
        switch v {
        case let .int(i): return Double(i)
        case let .double(d): return d
        default: throw wrong(key, "a number", v)
        }
    }

    public func double(_ key: String, default d: Double) throws -> Double { has(key) ? try double(key) : d }
    public func optionalDouble(_ key: String) throws -> Double? { has(key) ? try double(key) : nil }

    public func bool(_ key: String, default d: Bool) throws -> Bool {
        guard has(key) else { return d }
        let v = try raw(key)
        guard case let .bool(b) = v else { throw wrong(key, "true or false", v) }
        return b
    }

    public func string(_ key: String) throws -> String {
        let v = try raw(key)
        guard case let .string(s) = v else { throw wrong(key, "a string", v) }
        return s
    }

    public func string(_ key: String, default d: String) throws -> String { has(key) ? try string(key) : d }

    public func array(_ key: String) throws -> [JSON] {
        let v = try raw(key)
        guard case let .array(a) = v else { throw wrong(key, "a list", v) }
        return a
    }

    public func ints(_ key: String) throws -> [Int] {
        try array(key).enumerated().map { i, v in
            switch v {
            case let .int(x): return x
            case let .double(d) where d == d.rounded() && abs(d) < 1e15: return Int(d)
            default: throw ConfigError.wrongType(file: file, field: "\(fieldPath(key))[\(i)]", expected: "an integer", got: v.typeName)
            }
        }
    }

    public func doubles(_ key: String) throws -> [Double] {
        try array(key).enumerated().map { i, v in
            switch v {
            case let .int(x): return Double(x)
            case let .double(d): return d
            default: throw ConfigError.wrongType(file: file, field: "\(fieldPath(key))[\(i)]", expected: "a number", got: v.typeName)
            }
        }
    }

    public func strings(_ key: String) throws -> [String] {
        try array(key).enumerated().map { i, v in
            guard case let .string(s) = v else {
                throw ConfigError.wrongType(file: file, field: "\(fieldPath(key))[\(i)]", expected: "a string", got: v.typeName)
            }
            return s
        }
    }

    public func invalid(_ key: String, _ reason: String) -> ConfigError {
        .invalid(file: file, field: fieldPath(key), reason: reason)
    }
}
