import FarmTestSupport
import Foundation
import Testing

/// The hardware path on machines without a GPU: the probe's honest answer, `--hardware require`,
/// and fault injection (test-only switches) proving that fallback keeps the output exact.
@Suite(.serialized) struct HardwareTests {
    @Test func probeSaysWhatIsMissingAndWhy() async throws {
        let result = try await FarmBinary.run(["probe"], timeout: 60)
        #expect(result.status == 0)
        let json = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
        let encoders = json?["encoders"] as? [[String: Any]] ?? []
        #expect(encoders.contains { $0["name"] as? String == "libx264" && $0["available"] as? Bool == true })
        for encoder in encoders where encoder["available"] as? Bool == false {
            #expect(!((encoder["reason"] as? String) ?? "").isEmpty, "no reason for \(encoder)")
        }
        if !FileManager.default.fileExists(atPath: "/dev/dri") {
            #expect((json?["vaapiUnavailable"] as? String)?.contains("/dev/dri") == true)
        }
    }

    @Test(.enabled(if: !FileManager.default.fileExists(atPath: "/dev/dri"), "this machine has a GPU render node"))
    func requireWithoutHardwareFailsClearly() async throws {
        let result = try await FarmBinary.run(
            ["node", "--coordinator", "127.0.0.1:9", "--hardware", "require", "--exit-on-disconnect"],
            environment: ["FARM_JOIN_TOKEN": "t"], timeout: 60)
        #expect(result.status != 0)
        #expect(result.stderr.contains("--hardware require"), "\(result.stderr)")
    }

    @Test(.heavy) func hardwareFailingMidSegmentFallsBackAndTheOutputStaysExact() async throws {
        let dir = try TestMedia.temporaryDirectory("farm-hw")
        defer { try? FileManager.default.removeItem(at: dir) }
        let source = dir.appendingPathComponent("src.mp4").path
        // GOPs of 25, 12, 38, 10, 40 and 25 frames: the injected fault (after 20 frames) hits some
        // segments and not others, so the output mixes two encoders' parameter sets.
        try TestMedia.makeClip(
            at: source, seconds: 6,
            videoArgs: ["-c:v", "libx264", "-preset", "ultrafast", "-g", "1000", "-sc_threshold", "0",
                        "-force_key_frames", "0,1,1.48,3,3.4,5"])
        let output = dir.appendingPathComponent("out.mp4").path
        let result = try await FarmBinary.run(
            ["render", source, "-o", output, "--nodes", "2", "--preset", "ultrafast", "--segment-seconds", "0.1"],
            environment: ["FARM_TEST_HARDWARE_STANDIN": "libx264", "FARM_TEST_HARDWARE_FAULT": "mid:20"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("fallbacks"), "\(result.stdout)")
        #expect(try TestMedia.frameSeconds(output) == TestMedia.frameSeconds(source))
        #expect(try TestMedia.packetCount(output, stream: "a:0") == TestMedia.packetCount(source, stream: "a:0"))
        try TestMedia.decodesCleanly(output)
    }
}
