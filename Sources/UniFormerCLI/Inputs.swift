//! Input expansion (files and directories) and output naming for batch commands.

import Foundation

struct InputError: Error, CustomStringConvertible {
    let description: String
}

let imageExtensions: Set<String> = ["png", "jpg", "jpeg", "jpe"]

/// The images to process, and whether this is a batch (several arguments or a directory), in which
/// case `-o` names a directory even if it ends up holding one file.
struct ImageInputs {
    let urls: [URL]
    let isBatch: Bool
}

/// Files as given; a directory contributes its image files (sorted), others skipped with a warning.
func expandImages(_ args: [String]) throws -> ImageInputs {
    var out: [URL] = []
    var sawDirectory = false
    let fm = FileManager.default
    for a in args {
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: a, isDirectory: &isDir) else { throw InputError(description: "\(a): no such file or directory") }
        if isDir.boolValue {
            sawDirectory = true
            let names = try fm.contentsOfDirectory(atPath: a).sorted()
            for n in names where !n.hasPrefix(".") {
                let u = URL(fileURLWithPath: a).appendingPathComponent(n)
                if imageExtensions.contains(u.pathExtension.lowercased()) { out.append(u) }
                else { progress("uniformer: warning: skipping \(u.path): not a PNG or JPEG file") }
            }
        } else {
            out.append(URL(fileURLWithPath: a))
        }
    }
    guard !out.isEmpty else { throw InputError(description: "\(args.joined(separator: " ")): no images") }
    return ImageInputs(urls: out, isBatch: sawDirectory || args.count > 1)
}

/// One input: `output` is the file (or an existing directory to put it in). A batch: `output` is a
/// directory (created), and each output is named after its input (`street.jpg` → `street.<ext>`).
func outputPaths(for batch: ImageInputs, output: String, ext: String) throws -> [URL] {
    let inputs = batch.urls
    if !batch.isBatch {
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: output, isDirectory: &isDir), isDir.boolValue {
            return [URL(fileURLWithPath: output).appendingPathComponent(inputs[0].deletingPathExtension().lastPathComponent + "." + ext)]
        }
        return [URL(fileURLWithPath: output)]
    }
    let dir = URL(fileURLWithPath: output)
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    let urls = inputs.map { dir.appendingPathComponent($0.deletingPathExtension().lastPathComponent + "." + ext) }
    if Set(urls).count != urls.count { throw InputError(description: "\(output): two inputs share a name; outputs would collide") }
    return urls
}
