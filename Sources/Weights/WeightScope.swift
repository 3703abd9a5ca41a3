//! WeightScope: strict, scoped, pull-based access to a StateDict (candle's VarBuilder `pp`, with
//! ggml's strictness). A model's `init` asks its scope for each tensor by its upstream name and
//! shape; every scope derived from one root shares a record of the keys used, so `finish` can name
//! every key nothing asked for.
//!
//!     let root = WeightScope(dict)
//!     let proj = try root.child("backbone").child("patch_embed1").child("proj")
//!                    .tensor("weight", shape: [64, 3, 4, 4])     // "backbone.patch_embed1.proj.weight"
//!     try root.finish(ignoring: [.suffix(".num_batches_tracked"), .prefix("auxiliary_head.")])

import Foundation
import TensorCore

/// Keys that `finish` accepts without use, matched against the key relative to the scope's prefix.
public enum IgnoreRule: Sendable, Equatable {
    case prefix(String), suffix(String), exact(String)

    public func matches(_ key: String) -> Bool {
        switch self {
        case let .prefix(p): key.hasPrefix(p)
        case let .suffix(s): key.hasSuffix(s)
        case let .exact(e): key == e
        }
    }
}

/// A view of a StateDict under a key prefix. Thread-safe: the shared record of used keys is locked.
public final class WeightScope: @unchecked Sendable {
    /// The record shared by a root scope and all its children.
    private final class Usage: @unchecked Sendable {
        let lock = NSLock()
        var used: Set<String> = []
        func mark(_ key: String) { lock.withLock { _ = used.insert(key) } }
        func isUsed(_ key: String) -> Bool { lock.withLock { used.contains(key) } }
    }

    public let dict: StateDict
    public let prefix: String
    private let usage: Usage
    /// Set for `random(seed:)` scopes: tensors are made up instead of looked up.
    private let randomSeed: UInt64?

    public init(_ dict: StateDict, prefix: String = "") {
        self.dict = dict
        self.prefix = prefix
        self.usage = Usage()
        self.randomSeed = nil
    }

    private init(_ parent: WeightScope, prefix: String) {
        self.dict = parent.dict
        self.prefix = prefix
        self.usage = parent.usage
        self.randomSeed = parent.randomSeed
    }

    private init(randomSeed: UInt64) {
        self.dict = StateDict(tensors: [:], keys: [])
        self.prefix = ""
        self.usage = Usage()
        self.randomSeed = randomSeed
    }

    /// A scope with no checkpoint behind it, for benchmarks (`uniformer bench` without weights):
    /// `tensor(name, shape:)` makes up values, deterministic per (seed, full key) — uniform in
    /// ±1/√fan_in (fan_in = the product of all dimensions but the first), and in [0.5, 1.5] for
    /// `running_var` so that folded BatchNorms stay finite. `has` is false and `tensor(name)`
    /// throws `.missing` (there is no shape to make up); `finish` has nothing to report.
    public static func random(seed: UInt64) -> WeightScope { WeightScope(randomSeed: seed) }

    /// The scope of a submodule: `child("blocks3")` under "backbone." is "backbone.blocks3.".
    public func child(_ name: String) -> WeightScope { WeightScope(self, prefix: prefix + name + ".") }

    /// The scope of an element of a Sequential/ModuleList: `child(0)` → "….0.".
    public func child(_ index: Int) -> WeightScope { child(String(index)) }

    /// The full key of `name` in this scope.
    public func key(_ name: String) -> String { prefix + name }

    public func has(_ name: String) -> Bool { dict.tensors[prefix + name] != nil }

    /// Made-up values for a `random(seed:)` scope (SplitMix64 seeded by the seed and an FNV-1a hash of the key).
    private func randomTensor(_ key: String, shape: [Int], seed: UInt64) -> Tensor {
        var state = key.utf8.reduce(UInt64(0xcbf2_9ce4_8422_2325)) { ($0 ^ UInt64($1)) &* 0x100_0000_01b3 } ^ seed
        func next() -> Float {  // uniform in [0, 1)
            state &+= 0x9e37_79b9_7f4a_7c15
            var z = state
            z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
            z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
            return Float((z ^ (z >> 31)) >> 40) / Float(1 << 24)
        }
        let count = shape.reduce(1, *)
        if key.hasSuffix("running_var") {
            return Tensor(shape: shape, data: (0..<count).map { _ in 0.5 + next() })
        }
        let bound = 1 / Float(max(1, shape.dropFirst().reduce(1, *))).squareRoot()
        return Tensor(shape: shape, data: (0..<count).map { _ in (2 * next() - 1) * bound })
    }

    /// The stored tensor (any dtype, not converted), marked used; throws `.missing`.
    public func stored(_ name: String) throws -> StoredTensor {
        let key = prefix + name
        guard let stored = dict.tensors[key] else { throw WeightError.missing(key: key) }
        usage.mark(key)
        return stored
    }

    /// The float32 tensor `name`, which must have `shape`; throws `.missing` or `.shapeMismatch`
    /// naming the full key (and both shapes). Marks the key used.
    public func tensor(_ name: String, shape: [Int]) throws -> Tensor {
        let key = prefix + name
        if let seed = randomSeed { return randomTensor(key, shape: shape, seed: seed) }
        guard let stored = dict.tensors[key] else { throw WeightError.missing(key: key) }
        guard stored.shape == shape else { throw WeightError.shapeMismatch(key: key, expected: shape, got: stored.shape) }
        usage.mark(key)
        return try stored.tensor()
    }

    /// The float32 tensor `name`, whatever its shape. Marks the key used.
    public func tensor(_ name: String) throws -> Tensor {
        try stored(name).tensor()
    }

    /// Full keys that start with `prefix + under` (plain string prefix), in file order.
    public func keys(under: String = "") -> [String] {
        let start = prefix + under
        return dict.keys.filter { $0.hasPrefix(start) }
    }

    /// Whether a full key has been used through this scope or any scope sharing its record.
    public func isUsed(_ fullKey: String) -> Bool { usage.isUsed(fullKey) }

    /// Checks that every key under this scope was used or is named by a rule (rules see the key
    /// without this scope's prefix). Throws `.unexpected` with the others, sorted; returns the keys
    /// the rules skipped, in file order, so callers can report them.
    @discardableResult
    public func finish(ignoring rules: [IgnoreRule] = []) throws -> [String] {
        var unexpected: [String] = []
        var ignored: [String] = []
        for key in keys() where !usage.isUsed(key) {
            let relative = String(key.dropFirst(prefix.count))
            if rules.contains(where: { $0.matches(relative) }) { ignored.append(key) } else { unexpected.append(key) }
        }
        guard unexpected.isEmpty else { throw WeightError.unexpected(unexpected.sorted()) }
        return ignored
    }
}
