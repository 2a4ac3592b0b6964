import FarmTestSupport
import Foundation
import Testing

/// Bad input: one clear error line naming the input, a non-zero exit, no crash, no hang, no output.
@Suite(.heavy) struct BadInputTests {
    func expectCleanFailure(_ input: String, output: String, mentioning needle: String? = nil) async throws {
        let result = try await FarmBinary.run(["render", input, "-o", output, "--nodes", "2"], timeout: 60)
        #expect(result.status != 0)
        let errorLines = result.stderr.split(separator: "\n").filter { $0.hasPrefix("farm: error:") }
        #expect(errorLines.count == 1, "stderr was: \(result.stderr)")
        #expect(errorLines.first?.contains(input) == true, "error does not name \(input): \(result.stderr)")
        if let needle { #expect(errorLines.first?.contains(needle) == true, "\(errorLines)") }
        #expect(!FileManager.default.fileExists(atPath: output))
        #expect(result.status < 128, "farm crashed with status \(result.status)")
    }

    @Test func missingEmptyDirectoryGarbageTruncatedAndAudioOnly() async throws {
        let dir = try TestMedia.temporaryDirectory("farm-bad")
        defer { try? FileManager.default.removeItem(at: dir) }
        let output = dir.appendingPathComponent("out.mp4").path

        try await expectCleanFailure(dir.appendingPathComponent("missing.mp4").path, output: output, mentioning: "no such file")
        try await expectCleanFailure(dir.path, output: output, mentioning: "directory")

        let empty = dir.appendingPathComponent("empty.mp4").path
        FileManager.default.createFile(atPath: empty, contents: Data())
        try await expectCleanFailure(empty, output: output, mentioning: "empty")

        let garbage = dir.appendingPathComponent("garbage.mp4").path
        var generator = SystemRandomNumberGenerator()
        FileManager.default.createFile(
            atPath: garbage, contents: Data((0..<200_000).map { _ in UInt8.random(in: 0...255, using: &generator) }))
        try await expectCleanFailure(garbage, output: output)

        let whole = dir.appendingPathComponent("whole.mp4").path
        try TestMedia.makeClip(at: whole, seconds: 3, extra: ["-movflags", "+faststart"])
        let data = try Data(contentsOf: URL(fileURLWithPath: whole))
        let truncated = dir.appendingPathComponent("truncated.mp4").path
        try data.prefix(data.count / 2).write(to: URL(fileURLWithPath: truncated))
        let result = try await FarmBinary.run(["render", truncated, "-o", output, "--nodes", "2", "--preset", "ultrafast"], timeout: 60)
        // A truncated MP4 either fails cleanly or renders the frames that are there; never a half file.
        if result.status == 0 {
            try TestMedia.decodesCleanly(output)
            try? FileManager.default.removeItem(atPath: output)
        } else {
            #expect(result.stderr.split(separator: "\n").filter { $0.hasPrefix("farm: error:") }.count == 1)
            #expect(!FileManager.default.fileExists(atPath: output))
        }

        let audioOnly = dir.appendingPathComponent("audio.m4a").path
        try TestMedia.run(
            "ffmpeg", ["-v", "error", "-y", "-f", "lavfi", "-i", "sine=frequency=440", "-t", "2", "-c:a", "aac", audioOnly])
        try await expectCleanFailure(audioOnly, output: output, mentioning: "no video stream")
    }
}
