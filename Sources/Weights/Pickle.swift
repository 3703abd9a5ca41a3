//! Just enough pickle for PyTorch checkpoints: a restricted unpickler that never executes anything.
//!
//! It implements the opcodes of protocols 2–5 that `torch.save` and Python's pickler emit for
//! dicts, lists, tuples, scalars, strings and tensors (the text opcodes of protocol 0 are not
//! needed and are rejected). Globals are resolved against a whitelist into *descriptions*
//! (`PickleGlobal.Kind`); "calling" one (REDUCE/NEWOBJ) builds a value — an OrderedDict, a tensor
//! reference, a tuple — and never runs code. A global outside the whitelist becomes an inert
//! placeholder: it is an error (`WeightError.unsupportedGlobal`) as soon as a value we read needs
//! it, and harmless inside entries we skip (an `argparse.Namespace` under `args`, numpy scalars in
//! mmcv's `meta.hook_msgs`, optimizer state).
//!
//! Containers live in `PickleHeap` and values refer to them by index: values are flat, so a deep
//! or self-referencing structure in a hostile file cannot overflow the stack when it is torn down.
//! Every length is bounds-checked by `ByteReader` before anything is allocated, and memo indices
//! go into a dictionary, so a hostile index cannot force an allocation either.

/// A Python value as the unpickler builds it.
enum PickleValue {
    case none
    case bool(Bool)
    case int(Int)
    case bigInt([UInt8])        // two's complement, little-endian, wider than 64 bits
    case float(Double)
    case string(String)
    case bytes([UInt8])
    case tuple(Int)             // PickleHeap.tuples
    case list(Int)              // PickleHeap.lists (also sets)
    case dict(Int)              // PickleHeap.dicts (also OrderedDict)
    case global(Int)            // PickleHeap.globals: the class or function itself
    case object(Int)            // an inert instance of PickleHeap.globals[i]
    case storage(Int)           // PickleHeap.storages, from a persistent id
    case tensor(Int)            // PickleHeap.tensors, from a _rebuild_tensor* call

    var typeName: String {
        switch self {
        case .none: "None"
        case .bool: "bool"
        case .int, .bigInt: "int"
        case .float: "float"
        case .string: "str"
        case .bytes: "bytes"
        case .tuple: "tuple"
        case .list: "list"
        case .dict: "dict"
        case .global: "global"
        case .object: "object"
        case .storage: "storage"
        case .tensor: "tensor"
        }
    }
}

/// A global named by GLOBAL/STACK_GLOBAL, classified against the whitelist.
struct PickleGlobal {
    enum Kind: Equatable {
        case orderedDict                // collections.OrderedDict
        case rebuildTensorV2            // torch._utils._rebuild_tensor_v2
        case rebuildTensor              // torch._utils._rebuild_tensor (older files)
        case rebuildParameter           // torch._utils._rebuild_parameter
        case rebuildParameterWithState  // torch._utils._rebuild_parameter_with_state
        case rebuildFromTypeV2          // torch._tensor._rebuild_from_type_v2 (tensor subclasses)
        case tensorClass                // torch.Tensor, torch.nn.parameter.Parameter (as arguments)
        case storageType(DType)         // torch.FloatStorage, torch.HalfStorage, …
        case unreadableStorageType      // torch.ComplexFloatStorage, quantized storages, …
        case size                       // torch.Size
        case codecsEncode               // _codecs.encode: how protocol 2 spells bytes
        case set                        // builtins.set / frozenset
        case inert                      // data-only classes kept as opaque objects (argparse.Namespace)
        case unknown                    // anything else: an error wherever its value is needed
    }
    let module: String
    let name: String
    let kind: Kind

    init(module rawModule: String, name: String) {
        // Protocol-2 pickles use Python 2 module names (pickle's fix_imports).
        let module = switch rawModule {
        case "__builtin__": "builtins"
        case "copy_reg": "copyreg"
        default: rawModule
        }
        self.module = module
        self.name = name
        switch (module, name) {
        case ("collections", "OrderedDict"): kind = .orderedDict
        case ("torch._utils", "_rebuild_tensor_v2"): kind = .rebuildTensorV2
        case ("torch._utils", "_rebuild_tensor"): kind = .rebuildTensor
        case ("torch._utils", "_rebuild_parameter"): kind = .rebuildParameter
        case ("torch._utils", "_rebuild_parameter_with_state"): kind = .rebuildParameterWithState
        case ("torch._tensor", "_rebuild_from_type_v2"): kind = .rebuildFromTypeV2
        case ("torch", "Tensor"), ("torch.nn.parameter", "Parameter"): kind = .tensorClass
        case ("torch", "Size"): kind = .size
        case ("_codecs", "encode"): kind = .codecsEncode
        case ("builtins", "set"), ("builtins", "frozenset"): kind = .set
        case ("argparse", "Namespace"): kind = .inert
        case ("torch", _) where name.hasSuffix("Storage"):
            kind = DType(torchStorageName: name).map { .storageType($0) } ?? .unreadableStorageType
        default: kind = .unknown
        }
    }
}

/// A storage named by a persistent id: ('storage', storage_type, key, location, numel[, view]).
/// The data is record `rootKey` (`rootNumel` elements of `dtype`); the storage itself is `numel`
/// elements of it from element `offset` — the whole record except for the storage views that old
/// torch versions wrote in the legacy format (view metadata (view_key, offset, view_size)).
struct StorageRef {
    let rootKey: String
    let dtype: DType
    let rootNumel: Int
    let offset: Int
    let numel: Int
}

/// A tensor view of a storage, as _rebuild_tensor_v2 describes it (all counts in elements).
struct TensorRef {
    let storage: Int
    let offset: Int
    let size: [Int]
    let stride: [Int]
}

/// Everything the unpickler has built, shared by the pickles of one file (the legacy format has
/// several: the storages of the main pickle are read after it).
struct PickleHeap {
    var tuples: [[PickleValue]] = []
    var lists: [[PickleValue]] = []
    var dicts: [[(key: PickleValue, value: PickleValue)]] = []
    var globals: [PickleGlobal] = []
    var storages: [StorageRef] = []
    var tensors: [TensorRef] = []
}

/// The restricted unpickler. `load` reads one pickle (up to STOP) from the reader.
struct Unpickler {
    var heap = PickleHeap()
    let file: String

    init(file: String) { self.file = file }

    private func corrupt(_ reason: String) -> WeightError { .corrupt(file: file, reason: reason) }

    mutating func load(_ r: inout ByteReader, context: String) throws -> PickleValue {
        var stack: [PickleValue] = []
        var marks: [Int] = []
        var memo: [Int: PickleValue] = [:]
        let start = r.position

        func where_(_ at: Int) -> String { "\(context) byte \(at - start)" }
        func pop(_ at: Int) throws -> PickleValue {
            guard let v = stack.popLast() else { throw corrupt("pickle stack underflow at \(where_(at))") }
            return v
        }
        func top(_ at: Int) throws -> PickleValue {
            guard let v = stack.last else { throw corrupt("pickle stack underflow at \(where_(at))") }
            return v
        }
        /// The items above the last MARK, removing them and the mark.
        func popMark(_ at: Int) throws -> [PickleValue] {
            guard let m = marks.popLast(), m <= stack.count else { throw corrupt("pickle MARK missing at \(where_(at))") }
            defer { stack.removeSubrange(m...) }
            return Array(stack[m...])
        }
        func text(_ raw: UnsafeRawBufferPointer, _ at: Int) throws -> String {
            guard let s = String(validating: raw, as: UTF8.self) else { throw corrupt("invalid UTF-8 string at \(where_(at))") }
            return s
        }
        func memoIndex(_ raw: some FixedWidthInteger, _ at: Int) throws -> Int {
            guard let i = Int(exactly: raw), i >= 0 else { throw corrupt("bad memo index at \(where_(at))") }
            return i
        }
        func get(_ i: Int, _ at: Int) throws -> PickleValue {
            guard let v = memo[i] else { throw corrupt("pickle memo entry \(i) missing at \(where_(at))") }
            return v
        }

        while true {
            let at = r.position
            let op = try r.u8()
            switch op {
            case 0x80:  // PROTO
                let version = try r.u8()
                guard version <= 5 else { throw corrupt("pickle protocol \(version) at \(where_(at))") }
            case 0x95:  // FRAME: a length hint only
                _ = try r.le(UInt64.self)
            case 0x2e:  // STOP
                return try pop(at)

            // Constants and scalars
            case 0x4e: stack.append(.none)                          // NONE
            case 0x88: stack.append(.bool(true))                    // NEWTRUE
            case 0x89: stack.append(.bool(false))                   // NEWFALSE
            case 0x4b: stack.append(.int(Int(try r.u8())))          // BININT1
            case 0x4d: stack.append(.int(Int(try r.le(UInt16.self)))) // BININT2
            case 0x4a: stack.append(.int(Int(try r.le(Int32.self))))  // BININT
            case 0x8a:  // LONG1
                let n = try r.length(UInt8.self)
                stack.append(Self.integer(try r.take(n)))
            case 0x8b:  // LONG4
                let n = try r.length(Int32.self)
                stack.append(Self.integer(try r.take(n)))
            case 0x47:  // BINFLOAT: big-endian double
                let raw = try r.take(8)
                let bits = raw.reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
                stack.append(.float(Double(bitPattern: bits)))

            // Strings and bytes
            case 0x58: stack.append(.string(try text(r.take(r.length(UInt32.self)), at)))  // BINUNICODE
            case 0x8c: stack.append(.string(try text(r.take(r.length(UInt8.self)), at)))   // SHORT_BINUNICODE
            case 0x8d: stack.append(.string(try text(r.take(r.length(UInt64.self)), at)))  // BINUNICODE8
            case 0x54, 0x55:  // BINSTRING, SHORT_BINSTRING: Python 2 str, decoded as torch.load does (UTF-8)
                let raw = try op == 0x54 ? r.take(r.length(Int32.self)) : r.take(r.length(UInt8.self))
                if let s = String(validating: raw, as: UTF8.self) { stack.append(.string(s)) } else { stack.append(.bytes(Array(raw))) }
            case 0x42: stack.append(.bytes(Array(try r.take(r.length(UInt32.self)))))  // BINBYTES
            case 0x43: stack.append(.bytes(Array(try r.take(r.length(UInt8.self)))))   // SHORT_BINBYTES
            case 0x8e, 0x96: stack.append(.bytes(Array(try r.take(r.length(UInt64.self)))))  // BINBYTES8, BYTEARRAY8

            // Containers
            case 0x28: marks.append(stack.count)                    // MARK
            case 0x29:                                              // EMPTY_TUPLE
                heap.tuples.append([]); stack.append(.tuple(heap.tuples.count - 1))
            case 0x85, 0x86, 0x87:                                  // TUPLE1, TUPLE2, TUPLE3
                let n = Int(op - 0x84)
                guard stack.count >= n else { throw corrupt("pickle stack underflow at \(where_(at))") }
                heap.tuples.append(Array(stack.suffix(n)))
                stack.removeLast(n)
                stack.append(.tuple(heap.tuples.count - 1))
            case 0x74:                                              // TUPLE
                heap.tuples.append(try popMark(at)); stack.append(.tuple(heap.tuples.count - 1))
            case 0x5d:                                              // EMPTY_LIST
                heap.lists.append([]); stack.append(.list(heap.lists.count - 1))
            case 0x8f:                                              // EMPTY_SET (kept as a list)
                heap.lists.append([]); stack.append(.list(heap.lists.count - 1))
            case 0x6c:                                              // LIST
                heap.lists.append(try popMark(at)); stack.append(.list(heap.lists.count - 1))
            case 0x91:                                              // FROZENSET
                heap.lists.append(try popMark(at)); stack.append(.list(heap.lists.count - 1))
            case 0x7d:                                              // EMPTY_DICT
                heap.dicts.append([]); stack.append(.dict(heap.dicts.count - 1))
            case 0x64:                                              // DICT
                let items = try popMark(at)
                heap.dicts.append([])
                try addPairs(items, to: heap.dicts.count - 1, at: where_(at))
                stack.append(.dict(heap.dicts.count - 1))
            case 0x61:                                              // APPEND
                let item = try pop(at)
                try append([item], to: top(at), at: where_(at))
            case 0x65, 0x90:                                        // APPENDS, ADDITEMS
                let items = try popMark(at)
                try append(items, to: top(at), at: where_(at))
            case 0x73:                                              // SETITEM
                let value = try pop(at), key = try pop(at)
                try setItems([key, value], on: top(at), at: where_(at))
            case 0x75:                                              // SETITEMS
                let items = try popMark(at)
                try setItems(items, on: top(at), at: where_(at))

            // Stack and memo
            case 0x30:                                              // POP
                if stack.popLast() == nil { _ = try popMark(at) }
            case 0x31: _ = try popMark(at)                          // POP_MARK
            case 0x32: stack.append(try top(at))                    // DUP
            case 0x71: memo[try memoIndex(r.u8(), at)] = try top(at)              // BINPUT
            case 0x72: memo[try memoIndex(r.le(UInt32.self), at)] = try top(at)   // LONG_BINPUT
            case 0x94: memo[memo.count] = try top(at)                             // MEMOIZE
            case 0x68: stack.append(try get(memoIndex(r.u8(), at), at))           // BINGET
            case 0x6a: stack.append(try get(memoIndex(r.le(UInt32.self), at), at)) // LONG_BINGET

            // Globals, calls, persistent ids
            case 0x63:                                              // GLOBAL "module\nname\n"
                let module = try text(r.line(), at)
                let name = try text(r.line(), at)
                stack.append(global(module, name))
            case 0x93:                                              // STACK_GLOBAL
                let name = try pop(at), module = try pop(at)
                guard case let .string(m) = module, case let .string(n) = name else {
                    throw corrupt("STACK_GLOBAL needs two strings at \(where_(at))")
                }
                stack.append(global(m, n))
            case 0x52, 0x81:                                        // REDUCE, NEWOBJ
                let args = try pop(at), callable = try pop(at)
                stack.append(try call(callable, args, at: where_(at)))
            case 0x92:                                              // NEWOBJ_EX (cls, args, kwargs)
                let kwargs = try pop(at), args = try pop(at), callable = try pop(at)
                guard case let .dict(d) = kwargs, heap.dicts[d].isEmpty else {
                    throw corrupt("NEWOBJ_EX with keyword arguments at \(where_(at))")
                }
                stack.append(try call(callable, args, at: where_(at)))
            case 0x62:                                              // BUILD: object state is ignored
                _ = try pop(at)
                _ = try top(at)
            case 0x51:                                              // BINPERSID
                let pid = try pop(at)
                stack.append(try persistentLoad(pid, at: where_(at)))

            default:
                throw corrupt("unsupported pickle opcode 0x\(String(op, radix: 16)) at \(where_(at))")
            }
        }
    }

    // MARK: - Pieces of the machine

    /// LONG1/LONG4 payload: little-endian two's complement.
    private static func integer(_ raw: UnsafeRawBufferPointer) -> PickleValue {
        if raw.isEmpty { return .int(0) }
        let negative = raw[raw.count - 1] & 0x80 != 0
        // Bytes beyond the eighth must all be sign extension for the value to fit an Int.
        let fits = raw.count <= 8 || raw[8...].allSatisfy { $0 == (negative ? 0xff : 0) }
            && (raw[7] & 0x80 != 0) == negative
        guard fits else { return .bigInt(Array(raw)) }
        var value: UInt64 = negative ? ~0 : 0
        for i in (0..<min(8, raw.count)).reversed() { value = value << 8 | UInt64(raw[i]) }  // sign-extended
        return .int(Int(Int64(bitPattern: value)))
    }

    private mutating func global(_ module: String, _ name: String) -> PickleValue {
        heap.globals.append(PickleGlobal(module: module, name: name))
        return .global(heap.globals.count - 1)
    }

    private mutating func append(_ items: [PickleValue], to target: PickleValue, at: String) throws {
        switch target {
        case let .list(i): heap.lists[i].append(contentsOf: items)
        case .object: break  // an inert object's own append/extend is not run
        default: throw corrupt("APPEND to a \(target.typeName) at \(at)")
        }
    }

    private mutating func setItems(_ items: [PickleValue], on target: PickleValue, at: String) throws {
        switch target {
        case let .dict(i): try addPairs(items, to: i, at: at)
        case .object: guard items.count % 2 == 0 else { throw corrupt("odd SETITEMS at \(at)") }
        default: throw corrupt("SETITEM on a \(target.typeName) at \(at)")
        }
    }

    private mutating func addPairs(_ items: [PickleValue], to dict: Int, at: String) throws {
        guard items.count % 2 == 0 else { throw corrupt("odd number of dict items at \(at)") }
        heap.dicts[dict].reserveCapacity(heap.dicts[dict].count + items.count / 2)
        for k in stride(from: 0, to: items.count, by: 2) {
            heap.dicts[dict].append((key: items[k], value: items[k + 1]))
        }
    }

    /// REDUCE/NEWOBJ: builds the value a whitelisted callable describes; nothing is executed.
    private mutating func call(_ callable: PickleValue, _ args: PickleValue, at: String) throws -> PickleValue {
        guard case let .global(g) = callable else {
            if case let .object(g) = callable { return .object(g) }  // calling an inert object stays inert
            throw corrupt("call of a \(callable.typeName) at \(at)")
        }
        guard case let .tuple(t) = args else { throw corrupt("call arguments are a \(args.typeName), not a tuple, at \(at)") }
        let a = heap.tuples[t]
        let global = heap.globals[g]
        func arity(_ counts: ClosedRange<Int>) throws {
            guard counts.contains(a.count) else {
                throw corrupt("\(global.module).\(global.name) called with \(a.count) arguments at \(at)")
            }
        }
        switch global.kind {
        case .orderedDict:
            try arity(0...0)
            heap.dicts.append([])
            return .dict(heap.dicts.count - 1)
        case .rebuildTensorV2, .rebuildTensor:
            // (storage, storage_offset, size, stride[, requires_grad, backward_hooks[, metadata]])
            try global.kind == .rebuildTensor ? arity(4...4) : arity(6...7)
            guard case let .storage(s) = a[0] else { throw try notA("storage", a[0], at) }
            let offset = try int(a[1], "storage offset", at)
            let size = try ints(a[2], "size", at)
            let stride = try ints(a[3], "stride", at)
            guard size.count == stride.count else { throw corrupt("tensor size \(size) and stride \(stride) differ in rank at \(at)") }
            heap.tensors.append(TensorRef(storage: s, offset: offset, size: size, stride: stride))
            return .tensor(heap.tensors.count - 1)
        case .rebuildParameter, .rebuildParameterWithState:
            // (data, requires_grad, backward_hooks[, state]): the parameter is its data
            try global.kind == .rebuildParameter ? arity(3...3) : arity(4...4)
            guard case .tensor = a[0] else { throw try notA("tensor", a[0], at) }
            return a[0]
        case .rebuildFromTypeV2:
            // (func, new_type, args, state): a tensor (subclass) rebuilt by one of the functions above
            try arity(4...4)
            guard case let .global(f) = a[0], [.rebuildTensorV2, .rebuildTensor, .rebuildParameter,
                                                .rebuildParameterWithState].contains(heap.globals[f].kind) else {
                throw try notA("tensor rebuild function", a[0], at)
            }
            guard case let .global(c) = a[1], heap.globals[c].kind == .tensorClass else {
                throw try notA("tensor class", a[1], at)
            }
            return try call(a[0], a[2], at: at)
        case .size:
            try arity(0...1)
            if a.isEmpty { heap.tuples.append([]); return .tuple(heap.tuples.count - 1) }
            _ = try ints(a[0], "torch.Size", at)
            return a[0]
        case .codecsEncode:
            // _codecs.encode(text, 'latin1'): protocol 2's spelling of a bytes object
            try arity(2...2)
            guard case let .string(s) = a[0], case .string("latin1") = a[1] else { throw corrupt("_codecs.encode arguments at \(at)") }
            var bytes: [UInt8] = []
            for scalar in s.unicodeScalars {
                guard scalar.value < 256 else { throw corrupt("_codecs.encode of a non-latin1 string at \(at)") }
                bytes.append(UInt8(scalar.value))
            }
            return .bytes(bytes)
        case .set:
            try arity(0...1)
            if a.isEmpty { heap.lists.append([]); return .list(heap.lists.count - 1) }
            guard case .list = a[0] else { throw try notA("list", a[0], at) }
            return a[0]
        case .inert, .unknown:
            return .object(g)
        case .tensorClass, .storageType, .unreadableStorageType:
            throw corrupt("\(global.module).\(global.name) is called at \(at)")
        }
    }

    /// BINPERSID: ('storage', storage_type, key, location, numel[, view_metadata]).
    private mutating func persistentLoad(_ pid: PickleValue, at: String) throws -> PickleValue {
        guard case let .tuple(t) = pid else { throw corrupt("persistent id is a \(pid.typeName) at \(at)") }
        let p = heap.tuples[t]
        guard let first = p.first, (try? string(first, "", at)) == "storage" else {
            throw corrupt("persistent id is not a storage (saved modules are not supported) at \(at)")
        }
        guard p.count == 5 || p.count == 6 else { throw corrupt("storage persistent id with \(p.count) fields at \(at)") }
        guard case let .global(g) = p[1] else { throw corrupt("storage type is a \(p[1].typeName) at \(at)") }
        let type = heap.globals[g]
        let dtype: DType
        switch type.kind {
        case let .storageType(d): dtype = d
        case .unreadableStorageType: throw WeightError.unsupportedDType(file: file, dtype: "torch.\(type.name)")
        case .unknown, .inert: throw WeightError.unsupportedGlobal(file: file, module: type.module, name: type.name)
        default: throw corrupt("storage type \(type.module).\(type.name) at \(at)")
        }
        let key = try string(p[2], "storage key", at)
        let numel = try int(p[4], "storage size", at)
        guard numel >= 0 else { throw corrupt("negative storage size at \(at)") }
        if p.count == 6, case let .tuple(v) = p[5] {
            // (view_key, offset, view_size): this storage is a slice of root storage `key`
            let fields = heap.tuples[v]
            guard fields.count == 3 else { throw corrupt("storage view metadata with \(fields.count) fields at \(at)") }
            _ = try string(fields[0], "storage view key", at)
            let offset = try int(fields[1], "storage view offset", at)
            let viewSize = try int(fields[2], "storage view size", at)
            guard offset >= 0, viewSize >= 0 else { throw corrupt("negative storage view at \(at)") }
            heap.storages.append(StorageRef(rootKey: key, dtype: dtype, rootNumel: numel, offset: offset, numel: viewSize))
            return .storage(heap.storages.count - 1)
        } else if p.count == 6, case .none = p[5] {
        } else if p.count == 6 {
            throw corrupt("storage view metadata is a \(p[5].typeName) at \(at)")
        }
        heap.storages.append(StorageRef(rootKey: key, dtype: dtype, rootNumel: numel, offset: 0, numel: numel))
        return .storage(heap.storages.count - 1)
    }

    // MARK: - Typed access (also used when interpreting the result)

    /// The error for a value of the wrong kind: an unknown global says which, everything else is corrupt.
    func notA(_ what: String, _ value: PickleValue, _ at: String) throws -> WeightError {
        switch value {
        case let .object(g), let .global(g):
            let global = heap.globals[g]
            if global.kind == .unknown || global.kind == .inert {
                return .unsupportedGlobal(file: file, module: global.module, name: global.name)
            }
            return corrupt("expected a \(what), found \(global.module).\(global.name) at \(at)")
        default:
            return corrupt("expected a \(what), found a \(value.typeName) at \(at)")
        }
    }

    func int(_ value: PickleValue, _ what: String, _ at: String) throws -> Int {
        guard case let .int(i) = value else { throw try notA("integer \(what)", value, at) }
        return i
    }

    func string(_ value: PickleValue, _ what: String, _ at: String) throws -> String {
        switch value {
        case let .string(s): return s
        case let .bytes(b) where b.allSatisfy({ $0 < 0x80 }): return String(decoding: b, as: UTF8.self)
        default: throw try notA("string \(what)", value, at)
        }
    }

    /// A tuple or list of integers (tensor sizes and strides).
    func ints(_ value: PickleValue, _ what: String, _ at: String) throws -> [Int] {
        let items: [PickleValue]
        switch value {
        case let .tuple(t): items = heap.tuples[t]
        case let .list(l): items = heap.lists[l]
        default: throw try notA("tuple \(what)", value, at)
        }
        return try items.map { try int($0, what, at) }
    }
}
