import FarmTestSupport
import Foundation
import Testing

/// When every render node of `farm render` exits, the user reads the nodes' own reason, not a pointer to logs in a
/// data directory that is already gone.
@Suite(.serialized, .heavy) struct RenderExitReasonTests {
    @Test(.enabled(if: !FileManager.default.fileExists(atPath: "/dev/dri"), "this machine has a GPU render node"))
    func renderWithHardwareRequireOnAMachineWithoutOneSaysWhichEncodersWereTriedAndWhy() async throws {
        let dir = try TestMedia.temporaryDirectory("farm-require")
        defer { try? FileManager.default.removeItem(at: dir) }
        let source = dir.appendingPathComponent("src.mp4").path
        try TestMedia.makeClip(at: source, seconds: 1, size: "160x120", audio: false)
        let output = dir.appendingPathComponent("out.mp4").path
        let result = try await FarmBinary.run(
            ["render", source, "-o", output, "--nodes", "2", "--hardware", "require", "--preset", "ultrafast"], timeout: 120)
        #expect(result.status != 0)
        #expect(!FileManager.default.fileExists(atPath: output))
        let lines = result.stderr.split(separator: "\n").map(String.init)
        // One line with the reason: both nodes named, how they ended, and what the node itself said.
        let reason = try #require(lines.first { $0.hasPrefix("farm: error: ") }, "\(result.stderr)")
        #expect(reason.contains("every render node exited"), "\(reason)")
        #expect(reason.contains("node-0, node-1 exited with status 1"), "\(reason)")
        #expect(reason.contains("--hardware require, but this node has no hardware encoder"), "\(reason)")
        #expect(!reason.contains("see the node logs"), "\(reason)")
        // Then the list from the probe: each hardware encoder tried, with why it is unavailable.
        let tried = lines.filter { $0.hasPrefix("  tried ") }
        #expect(!tried.isEmpty, "\(result.stderr)")
        for line in tried {
            let why = line.split(separator: ":", maxSplits: 1).last.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
            #expect(!why.isEmpty && why != "available", "\(line)")
        }
    }
}
