// Configs: the upstream backbone dict as JSON; errors name the file and the field.

import Backbone
import Detection
import Foundation
import ModelConfig
import Segmentation
import Testing
import UniFormer

func backboneConfig(_ text: String) throws -> UniFormerConfig {
    try UniFormerConfig(ConfigNode(try JSON.parse(text, file: "test.json"), path: "model", file: "test.json"))
}

func configError(_ text: String) -> String? {
    do { _ = try backboneConfig(text); return nil } catch { return "\(error)" }
}

@Suite struct Configs {
    @Test func readsUpstreamFields() throws {
        let c = try backboneConfig("""
            {"type": "UniFormer", "embed_dim": [64, 128, 320, 512], "layers": [3, 4, 8, 3], "head_dim": 64,
             "drop_path_rate": 0.2, "use_checkpoint": true, "checkpoint_num": [0, 0, 8, 0],
             "windows": false, "hybrid": true, "window_size": 14}
            """)
        #expect(c.layers == [3, 4, 8, 3] && c.heads == [1, 2, 5, 8] && c.attention == .hybrid(14))
        #expect(c.attention.window(forBlock: 3) == nil && c.attention.window(forBlock: 2) == 14)
        let l = try backboneConfig(#"{"type": "UniFormer", "depth": [5, 10, 24, 7], "layer_scale": true, "num_classes": 1000, "return_dense": true}"#)
        #expect(l.layers == [5, 10, 24, 7] && l.layerScale == .all && l.returnDense && l.numClasses == 1000)
        // upstream tests `windows` before `hybrid`
        #expect(try backboneConfig(#"{"type": "UniFormer", "windows": true, "hybrid": true, "window_size": 7}"#).attention == .windows(7))
    }

    @Test func wrongTypesNameTheField() {
        #expect(configError(#"{"type": "UniFormer", "head_dim": "64"}"#) == "test.json: field 'model.head_dim' must be an integer, got a string")
        #expect(configError(#"{"type": "UniFormer", "layers": [3, 4, "8", 3]}"#) == "test.json: field 'model.layers[2]' must be an integer, got a string")
        #expect(configError(#"{"type": "UniFormer", "hybrid": 1}"#) == "test.json: field 'model.hybrid' must be true or false, got an integer")
        #expect(configError(#"{"type": "ResNet"}"#) == "test.json: field 'model.type': unknown type 'ResNet'")
        #expect(configError(#"{"layers": [3, 4, 8, 3]}"#) == "test.json: missing required field 'model.type'")
        #expect(configError(#"{"type": "UniFormer", "layers": [3, 4, 8]}"#)?.contains("model.layers") == true)
        #expect(configError(#"{"type": "UniFormer", "head_dim": 48}"#)?.contains("model.head_dim") == true)
    }

    @Test func syntaxErrorsNameTheFile() {
        #expect(throws: ConfigError.self) { try JSON.parse(#"{"model": {"type": "UniFormer",}"#, file: "broken.json") }
        do { _ = try JSON.parse("{\"a\": 1} trailing", file: "broken.json"); Issue.record("accepted trailing text") } catch {
            #expect("\(error)".hasPrefix("broken.json: not valid JSON"))
        }
    }

    @Test func segmentationHeadChannelsAreChecked() throws {
        // decode_head.in_channels must agree with the backbone (or neck) widths, before any weight is read
        let text = #"""
            {"type": "EncoderDecoder", "backbone": {"type": "UniFormer", "embed_dim": [16, 32, 48, 64], "head_dim": 16},
             "decode_head": {"type": "UPerHead", "in_channels": [16, 32, 48, 96], "channels": 8, "num_classes": 3}}
            """#
        do {
            _ = try SegmentorConfig(ConfigNode(try JSON.parse(text, file: "seg.json"), path: "model", file: "seg.json"))
            Issue.record("accepted mismatched in_channels")
        } catch {
            #expect("\(error)" == "seg.json: field 'model.decode_head.in_channels': entry 3 is 96 but level 3 has 64 channels")
        }
    }

    @Test func attentionOverrideSyntax() {
        #expect(StageAttention("global") == .global)
        #expect(StageAttention("window:32") == .windows(32))
        #expect(StageAttention("hybrid:14") == .hybrid(14))
        #expect(StageAttention("hybrid") == nil && StageAttention("window:0") == nil && StageAttention("local:3") == nil)
    }

    @Test func everyShippedConfigLoads() throws {
        let dir = Fixtures.root.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("configs")
        let names = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".json") }
        #expect(names.count >= 28)
        for n in names {
            let m = try ModelFile(contentsOf: dir.appendingPathComponent(n))
            let b = try m.backboneConfig()
            if b.numClasses > 0 { #expect(m.classes?.count == b.numClasses, "\(n)") }
            if n.hasPrefix("demo-") {
                // the bundled demo models: their own classes and scale, weights found without --weights
                #expect(m.weightsName != nil && m.palette != nil && (m.classes?.count ?? 0) >= 5, "\(n)")
                let side = m.kind == .segmentation ? 640 : 384   // the segmentation model is fine-tuned at 640
                #expect(m.data.scale?.0 == side && m.data.scale?.1 == side, "\(n)")
                if m.kind == .segmentation { _ = try SegmentorConfig(m.model) } else { _ = try DetectorConfig(m.model) }
                continue
            }
            if m.kind == .segmentation {
                let s = try SegmentorConfig(m.model)
                #expect(m.classes?.count == s.numClasses && (m.palette?.count ?? 0) >= s.numClasses, "\(n)")
                #expect(m.data.scale?.0 == 2048 && m.data.scale?.1 == 512 && m.data.sizeDivisor == nil, "\(n)")
                if case .fpn = s.head { #expect(m.data.alignDivisor == 32 && s.neck != nil, "\(n)") }
                else { #expect(m.data.alignDivisor == nil && s.neck == nil, "\(n)") }
            }
            if m.kind == .detection {
                #expect(m.classes?.count == 80 && m.data.sizeDivisor == 32, "\(n)")
                if try m.model.string("type") != "RetinaNet" { _ = try DetectorConfig(m.model) }
            }
        }
    }
}
