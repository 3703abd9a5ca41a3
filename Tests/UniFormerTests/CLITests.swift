// The `uniformer` tool end to end: outputs, exit status, one-line errors, no partial files.

import Foundation
import Imaging
import ModelConfig
import Testing
import UniFormer
import Weights

/// The built tool sits next to the test bundle in the build folder.
let uniformerBinary: URL = {
    var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    for _ in 0..<4 {
        let candidate = dir.appendingPathComponent("uniformer")
        if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
        dir = dir.deletingLastPathComponent()
    }
    return URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("uniformer")
}()

let packageRoot = Fixtures.root.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

struct ToolRun { let status: Int32; let stdout: String; let stderr: String }

func runTool(_ args: [String]) throws -> ToolRun {
    let p = Process()
    p.executableURL = uniformerBinary
    p.arguments = args
    p.currentDirectoryURL = packageRoot
    let out = Pipe(), err = Pipe()
    p.standardOutput = out; p.standardError = err
    try p.run()
    let o = out.fileHandleForReading.readDataToEndOfFile(), e = err.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return ToolRun(status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self), stderr: String(decoding: e, as: UTF8.self))
}

func scratchDirectory() throws -> URL {
    let d = FileManager.default.temporaryDirectory.appendingPathComponent("uniformer-cli-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: d, withIntermediateDirectories: true)
    return d
}

@Suite struct CLI {
    let model = ["--model", "tasks/demo/tiny-backbone.json", "--weights", "tasks/demo/tiny-backbone.safetensors", "--threads", "2"]

    @Test func featuresWritesTheFourLevelsTheAPIComputes() throws {
        let dir = try scratchDirectory()
        let out = dir.appendingPathComponent("example.safetensors")
        let r = try runTool(["features", "tasks/demo/example.png", "-o", out.path] + model)
        #expect(r.status == 0, "\(r.stderr)")
        let written = try StateDict(contentsOf: out)
        let api = try FeatureExtractor(model: packageRoot.appendingPathComponent("tasks/demo/tiny-backbone.json").path,
                                       weights: packageRoot.appendingPathComponent("tasks/demo/tiny-backbone.safetensors"))
        let levels = try api.features(imageAt: packageRoot.appendingPathComponent("tasks/demo/example.png"))
        #expect(written.keys.sorted() == ["stage1", "stage2", "stage3", "stage4"])
        for (i, level) in levels.enumerated() {
            let t = try written.tensors["stage\(i + 1)"]!.tensor()
            #expect(t.shape == level.shape && t.shape[0] == 1)
            #expect(t.data == level.data)
        }
        // 300×260 picture: strides 4…32 floor the sizes
        #expect(levels.map { Array($0.shape[2...]) } == [[65, 75], [32, 37], [16, 18], [8, 9]])
    }

    @Test func directoryBatchSkipsNonImagesWithAWarning() throws {
        let input = try scratchDirectory(), output = try scratchDirectory().appendingPathComponent("features")
        let fm = FileManager.default
        try fm.copyItem(at: packageRoot.appendingPathComponent("tasks/demo/example.png"), to: input.appendingPathComponent("a.png"))
        try fm.copyItem(at: packageRoot.appendingPathComponent("tasks/demo/example.png"), to: input.appendingPathComponent("b.png"))
        try Data("not an image".utf8).write(to: input.appendingPathComponent("notes.txt"))
        let r = try runTool(["features", input.path, "-o", output.path] + model)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stderr.contains("skipping") && r.stderr.contains("notes.txt"))
        #expect(try fm.contentsOfDirectory(atPath: output.path).sorted() == ["a.safetensors", "b.safetensors"])
    }

    @Test func errorsAreOneLineNamingTheFileAndLeaveNoOutput() throws {
        let dir = try scratchDirectory()
        let out = dir.appendingPathComponent("out.safetensors")
        let damaged = dir.appendingPathComponent("damaged.png")
        try Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13]).write(to: damaged)
        let truncatedWeights = dir.appendingPathComponent("weights.pth")
        let good = try Data(contentsOf: Fixtures.url("backbone", "global/weights.pth"))
        try good.prefix(good.count / 2).write(to: truncatedWeights)
        let cases: [([String], String)] = [
            (["features", dir.appendingPathComponent("missing.png").path, "-o", out.path] + model, "missing.png"),
            (["features", damaged.path, "-o", out.path] + model, "damaged.png"),
            (["features", "tasks/demo/example.png", "-o", out.path, "--model", "tasks/demo/tiny-backbone.json",
              "--weights", truncatedWeights.path], "weights.pth"),
            (["features", "tasks/demo/example.png", "-o", out.path, "--model", "no-such-config",
              "--weights", "tasks/demo/tiny-backbone.safetensors"], "no-such-config"),
            (["features", "tasks/demo/example.png", "-o", out.path, "--attention", "local:3"] + model, "--attention"),
        ]
        for (args, name) in cases {
            let r = try runTool(args)
            #expect(r.status != 0, "\(args) succeeded")
            let lines = r.stderr.split(separator: "\n")
            #expect(lines.count == 1 && r.stderr.contains(name), "\(args): \(r.stderr)")
            #expect(!FileManager.default.fileExists(atPath: out.path), "\(args) left \(out.path)")
        }
    }

    @Test func infoDescribesCheckpointsAndConfigs() throws {
        let w = try runTool(["info", "Tests/UniFormerTests/Fixtures/backbone/global/weights.pth"])
        #expect(w.status == 0 && w.stdout.contains("pth-zip") && w.stdout.contains("backbone"), "\(w.stdout)\(w.stderr)")
        let c = try runTool(["info", "uniformer-s-h14"])
        #expect(c.status == 0 && c.stdout.contains("hybrid:14") && c.stdout.contains("[3, 4, 8, 3]"), "\(c.stdout)\(c.stderr)")
    }
}

@Suite struct SegmentCLI {
    let dir = Fixtures.root.appendingPathComponent("segmentation/upernet_global")
    var model: [String] { ["--model", dir.appendingPathComponent("config.json").path,
                           "--weights", dir.appendingPathComponent("weights.pth").path, "--threads", "2"] }

    @Test func writesThePaletteMaskOverlayAndLogits() throws {
        let out = try scratchDirectory()
        let mask = out.appendingPathComponent("mask.png"), overlay = out.appendingPathComponent("overlay.png")
        let logits = out.appendingPathComponent("logits.safetensors")
        let r = try runTool(["segment", dir.appendingPathComponent("image.png").path, "-o", mask.path,
                             "--overlay", overlay.path, "--logits", logits.path] + model)
        #expect(r.status == 0, "\(r.stderr)")
        // the mask is a palette PNG: decoded as imread does it gives the palette colour of each label
        let api = try Segmenter(model: dir.appendingPathComponent("config.json").path, weights: dir.appendingPathComponent("weights.pth"))
        let result = try api.segment(imageAt: dir.appendingPathComponent("image.png"))
        let decoded = try loadImage(contentsOf: mask)
        #expect(decoded.width == result.width && decoded.height == result.height)
        let colours = result.labels.flatMap { api.palette[Int($0)] }
        #expect(decoded.pixels == colours)
        #expect(try loadImage(contentsOf: overlay).width == result.width)
        let saved = try StateDict(contentsOf: logits)
        #expect(try saved.tensors["logits"]!.tensor().shape == [1, 7, result.height, result.width])
    }

    @Test func batchSkipsNonImagesAndNamesOutputsAfterInputs() throws {
        let input = try scratchDirectory(), output = try scratchDirectory().appendingPathComponent("masks")
        try FileManager.default.copyItem(at: dir.appendingPathComponent("image.png"), to: input.appendingPathComponent("street.png"))
        try Data("#!/bin/sh\n".utf8).write(to: input.appendingPathComponent("run.sh"))
        let r = try runTool(["segment", input.path, "-o", output.path] + model)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stderr.contains("skipping") && r.stderr.contains("run.sh"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: output.path) == ["street.png"])
    }

    @Test func headChannelsThatDisagreeWithTheWeightsNameTheKey() throws {
        // the fixture's config with UPerHead channels 32 → 48: the checkpoint's tensors no longer fit
        let text = try String(contentsOf: dir.appendingPathComponent("config.json"), encoding: .utf8)
            .replacingOccurrences(of: "\"channels\": 32", with: "\"channels\": 48")
        let cfg = try scratchDirectory().appendingPathComponent("wrong.json")
        try text.write(to: cfg, atomically: true, encoding: .utf8)
        let r = try runTool(["segment", dir.appendingPathComponent("image.png").path, "-o", "/tmp/never.png",
                             "--model", cfg.path, "--weights", dir.appendingPathComponent("weights.pth").path])
        #expect(r.status != 0)
        #expect(r.stderr.contains("decode_head.") && r.stderr.contains("[48,") && r.stderr.split(separator: "\n").count == 1, "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: "/tmp/never.png"))
    }
}

@Suite struct DetectCLI {
    /// `uniformer detect` writes the JSON mmdet's results give (detections.json of the fixture: boxes
    /// [x, y, w, h] in original pixels, scores, class ids and names, COCO RLE masks from pycocotools).
    @Test(arguments: ["mask_rcnn_global", "cascade_mask_rcnn", "mask_rcnn_empty"])
    func jsonMatchesTheReference(_ name: String) throws {
        let dir = Fixtures.root.appendingPathComponent("detection").appendingPathComponent(name)
        let cfg = try JSON.load(contentsOf: dir.appendingPathComponent("config.json"))
        guard case let .string(weights)? = cfg["weights"] else { Issue.record("no weights"); return }
        let out = try scratchDirectory().appendingPathComponent("out.json")
        let r = try runTool(["detect", dir.appendingPathComponent("image.png").path, "-o", out.path,
                             "--model", dir.appendingPathComponent("config.json").path,
                             "--weights", dir.appendingPathComponent(weights).path, "--threads", "2"])
        #expect(r.status == 0, "\(r.stderr)")
        let got = try JSON.load(contentsOf: out), want = try JSON.load(contentsOf: dir.appendingPathComponent("detections.json"))
        #expect(got["width"] == want["width"] && got["height"] == want["height"])
        guard case let .array(g)? = got["detections"], case let .array(w)? = want["detections"] else {
            Issue.record("\(name): no detections list"); return
        }
        #expect(g.count == w.count, "\(name): \(g.count) vs \(w.count) detections")
        func numbers(_ v: JSON?) -> [Double] {
            guard case let .array(a)? = v else { return [] }
            return a.compactMap { if case let .double(d) = $0 { return d }; if case let .int(i) = $0 { return Double(i) }; return nil }
        }
        var sameMasks = 0
        for (a, b) in zip(g, w) {
            #expect(a["category_id"] == b["category_id"] && a["label"] == b["label"])
            #expect(zip(numbers(a["bbox"]), numbers(b["bbox"])).allSatisfy { abs($0 - $1) <= 0.01 }, "\(name): \(a) vs \(b)")
            #expect(abs((numbers(.array([a["score"]!])).first ?? 0) - (numbers(.array([b["score"]!])).first ?? 1)) <= 1e-3)
            if a["segmentation"]?["counts"] == b["segmentation"]?["counts"] { sameMasks += 1 }
        }
        #expect(sameMasks == w.count, "\(name): \(w.count - sameMasks) RLE masks differ")
    }

    @Test func aCheckpointWithOtherClassesThanTheConfigIsAClearError() throws {
        let dir = Fixtures.root.appendingPathComponent("detection/mask_rcnn_global")
        let text = try String(contentsOf: dir.appendingPathComponent("config.json"), encoding: .utf8)
            .replacingOccurrences(of: "\"num_classes\": 5", with: "\"num_classes\": 7")
        #expect(text.contains("\"num_classes\": 7"))
        let cfg = try scratchDirectory().appendingPathComponent("seven.json")
        try text.write(to: cfg, atomically: true, encoding: .utf8)
        let r = try runTool(["detect", dir.appendingPathComponent("image.png").path, "--model", cfg.path,
                             "--weights", dir.appendingPathComponent("../weights/mask_rcnn.pth").path])
        #expect(r.status != 0 && r.stdout.isEmpty)
        #expect(r.stderr.contains("roi_head.bbox_head.fc_cls.weight") && r.stderr.split(separator: "\n").count == 1, "\(r.stderr)")
    }
}
