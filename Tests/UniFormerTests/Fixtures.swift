import Foundation

/// Where the committed fixtures live: Tests/UniFormerTests/Fixtures/<group>/<name>.
/// Regenerate them all with `tasks/reference/make_fixtures.sh`.
enum Fixtures {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")
    static func url(_ group: String, _ name: String) -> URL {
        root.appendingPathComponent(group).appendingPathComponent(name)
    }
}
