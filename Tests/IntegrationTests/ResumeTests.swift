import FarmChildProcess
import FarmTestSupport
import Foundation
import Testing

/// `kill -9` of the coordinator in the middle of a job, then the same command again with the same
/// data directory: the job resumes, segments already encoded are not encoded again, and the output is
/// frame-exact.
@Suite(.heavy) struct ResumeTests {
    static func count(_ needle: String, in path: String) -> Int {
        ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").components(separatedBy: needle).count - 1
    }

    @Test func killedCoordinatorResumesWithoutReencodingDoneSegments() async throws {
        let dir = try TestMedia.temporaryDirectory("farm-resume")
        defer { try? FileManager.default.removeItem(at: dir) }
        let source = dir.appendingPathComponent("src.mp4").path
        try TestMedia.makeClip(
            at: source, seconds: 12, size: "640x360",
            videoArgs: ["-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-bf", "2"])
        let output = dir.appendingPathComponent("out.mp4").path
        let data = dir.appendingPathComponent("data").path
        let arguments = [
            "render", source, "-o", output, "--nodes", "2", "--preset", "slow", "--segment-seconds", "1",
            "--data-dir", data, "--log-level", "info",
        ]
        let firstLog = dir.appendingPathComponent("first.log").path
        let first = try await FarmBinary.start(arguments, log: firstLog)
        let reached = await FarmBinary.kill(first, when: { Self.count("segment done", in: firstLog) >= 3 }, timeout: 60)
        #expect(reached, "the first run never finished 3 segments")
        let doneBefore = Self.count("segment done", in: firstLog)
        try #require(doneBefore < 12, "the first run finished before it could be killed")
        #expect(!FileManager.default.fileExists(atPath: output))

        let second = try await FarmBinary.run(arguments, timeout: 120)
        #expect(second.status == 0, "\(second.stderr)")
        #expect(second.stderr.contains("job resumed"), "\(second.stderr)")
        let doneAfter = second.stderr.components(separatedBy: "segment done").count - 1
        #expect(doneAfter <= 12 - doneBefore + 2, "re-encoded \(doneAfter) segments after \(doneBefore) were done")
        #expect(doneAfter < 12)
        #expect(try TestMedia.frameSeconds(output) == TestMedia.frameSeconds(source))
        try TestMedia.decodesCleanly(output)
    }
}
