//! A model config file (configs/*.json): the upstream `model` dict plus `data`, `classes`, `palette`.
//! `--model` takes a path or the name of a config in configs/.

import Backbone
import Foundation
import ModelConfig
import Weights

public struct ModelFile: Sendable {
    public let url: URL
    public let root: ConfigNode
    public let model: ConfigNode
    public let data: DataConfig
    public let classes: [String]?
    public let palette: [[UInt8]]?
    /// The weights the config names itself (`"weights"`), used when none are passed.
    public let weightsName: String?

    /// The kind of model, from `model.type`.
    public enum Kind: Sendable { case backbone, segmentation, detection }
    public let kind: Kind

    public init(contentsOf url: URL) throws {
        self.url = url
        let json = try JSON.load(contentsOf: url)
        let root = ConfigNode(json, file: url.path)
        guard case .object = json else { throw ConfigError.wrongType(file: url.path, field: "(top level)", expected: "an object", got: json.typeName) }
        self.root = root
        model = try root.child("model")
        data = try root.optionalChild("data").map(DataConfig.init) ?? .imagenetPixels
        classes = root.has("classes") ? try root.strings("classes") : nil
        if root.has("palette") {
            palette = try root.array("palette").enumerated().map { i, v in
                let c = try ConfigNode(.object([("rgb", v)]), path: "palette[\(i)]", file: url.path).ints("rgb")
                guard c.count == 3, c.allSatisfy({ (0...255).contains($0) }) else {
                    throw ConfigError.invalid(file: url.path, field: "palette[\(i)]", reason: "needs three values in 0...255")
                }
                return c.map { UInt8($0) }
            }
        } else { palette = nil }
        weightsName = root.has("weights") ? try root.string("weights") : nil
        let type = try model.string("type")
        switch type {
        case "UniFormer": kind = .backbone
        case "EncoderDecoder": kind = .segmentation
        case "MaskRCNN", "FasterRCNN", "CascadeRCNN", "RetinaNet": kind = .detection
        default: throw ConfigError.unknownType(file: url.path, field: "model.type", type: type)
        }
    }

    /// The backbone dict: the model itself for a backbone config, else `model.backbone`.
    public func backboneConfig() throws -> UniFormerConfig {
        switch kind {
        case .backbone: return try UniFormerConfig(model)
        case .segmentation, .detection: return try UniFormerConfig(model.child("backbone"))
        }
    }

    /// Resolves `--model`: an existing path, or NAME / NAME.json in $UNIFORMER_CONFIGS, ./configs,
    /// or the configs/ folder of this package's checkout.
    public static func resolve(_ nameOrPath: String) throws -> URL {
        let fm = FileManager.default
        if fm.fileExists(atPath: nameOrPath) { return URL(fileURLWithPath: nameOrPath) }
        let name = nameOrPath.hasSuffix(".json") ? nameOrPath : nameOrPath + ".json"
        var dirs: [URL] = []
        if let env = ProcessInfo.processInfo.environment["UNIFORMER_CONFIGS"] { dirs.append(URL(fileURLWithPath: env)) }
        dirs.append(URL(fileURLWithPath: "configs"))
        dirs.append(packageRoot.appendingPathComponent("configs"))
        for d in dirs {
            let u = d.appendingPathComponent(name)
            if fm.fileExists(atPath: u.path) { return u }
        }
        throw ConfigError.unreadable(file: nameOrPath, reason: "no such file, and no config of that name in \(dirs.map(\.path).joined(separator: ", "))")
    }

    /// The checkpoint to use when the caller passes none: the config's `"weights"` entry, looked up
    /// among the weights bundled with this package (the resources of this target, next to the
    /// executable or in the package checkout), then relative to the config file's folder.
    public func defaultWeights() throws -> URL {
        guard let name = weightsName else {
            throw ModelError.wrongModel(file: url.path, reason: "no weights given (--weights), and the config names none")
        }
        var candidates: [URL] = []
        if !name.contains("/") {
            candidates.append(Self.resourceBundle.appendingPathComponent("Resources").appendingPathComponent(name))
            candidates.append(Self.packageRoot.appendingPathComponent("Sources/UniFormer/Resources").appendingPathComponent(name))
        }
        candidates.append(name.hasPrefix("/") ? URL(fileURLWithPath: name)
                          : url.deletingLastPathComponent().appendingPathComponent(name))
        for c in candidates where FileManager.default.fileExists(atPath: c.path) { return c }
        throw ModelError.wrongModel(file: url.path, reason: "the weights it names ('\(name)') are not bundled and not at \(candidates.last!.path); pass --weights")
    }

    /// Where `swift build` puts this target's resources: beside the executable (or test bundle).
    /// Looked up by hand instead of `Bundle.module`, whose accessor stops the process when the
    /// folder is missing (an executable copied elsewhere without it).
    static var resourceBundle: URL {
        Bundle.main.bundleURL.appendingPathComponent("UniFormer_UniFormer.resources")
    }

    /// The package checkout this library was built from (Sources/UniFormer/ModelFile.swift → root).
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()
}

/// The class names of a model: the config's `classes`, else the checkpoint's `meta.CLASSES`, else
/// "class N"; their number must equal the head's `count` (the field named in the error).
func classNames(_ file: ModelFile, _ dict: StateDict, count k: Int, field: String) throws -> [String] {
    let names = file.classes ?? dict.classes ?? (0..<k).map { "class \($0)" }
    guard names.count == k else {
        throw ModelError.wrongModel(file: file.url.path, reason: "\(names.count) class names for \(k) classes (\(field))")
    }
    return names
}
