import FarmTestSupport
import Foundation
import Testing

/// tus 1.0 against real `farm coordinator` and `farm node` processes: tuspy, the stock Python client, uploads a clip
/// that `POST /jobs {"upload": ID}` renders frame-exactly, and `farm submit` uploads with tus, follows the job and
/// downloads its output. Part of ``SourceTests``, whose farms run one at a time (their nodes share a node id).
extension SourceTests {
    @Test func aStockClientAndFarmSubmitUploadWithTusAndTheJobsRender() async throws {
        let token = "source-api-token-long-enough-for-the-coordinator"
        let farm = try await Farm.start("farm-tus", node: true, options: [])
        defer { try? FileManager.default.removeItem(at: farm.directory) }
        try await farm.stopping {
            let clip = Self.clip
            let upload = try await TusPy.run(["upload", farm.base + "/files/", clip, "--chunk", "65536", "--checksum"], token: token)
            let size = try #require(FileManager.default.attributesOfItem(atPath: clip)[.size] as? Int)
            #expect(upload["offset"] as? Int == size, "\(upload)")
            let id = String(try #require((upload["url"] as? String)?.split(separator: "/").last))
            let (created, job) = try await farm.object(
                "POST", "/jobs", json: #"{"upload": "\#(id)", "preset": "ultrafast", "segment_seconds": 1}"#)
            #expect(created == 201, "\(job)")
            let final = try await farm.finished(try #require(job["id"] as? String))
            #expect(final["state"] as? String == "done", "\(final)")
            #expect(final["source"] as? String == "upload:\(URL(fileURLWithPath: clip).lastPathComponent)")
            let (_, _, body) = try await farm.call("GET", "/jobs/\(try #require(job["id"] as? String))/output")
            let output = farm.directory.appendingPathComponent("tuspy.mp4")
            try body.write(to: output)
            #expect(try TestMedia.frameSeconds(output.path) == TestMedia.frameSeconds(clip))

            // farm submit: tus creation, PATCH chunks of 128 KiB, the job followed and its output downloaded.
            let submitted = farm.directory.appendingPathComponent("submitted.mp4").path
            let result = try await FarmBinary.run(
                ["submit", clip, "--server", farm.base, "-o", submitted, "--chunk-mib", "0.125", "--preset", "ultrafast"],
                environment: ["FARM_API_TOKEN": token], timeout: 90)
            #expect(result.status == 0, "\(result.stderr)")
            #expect(result.stdout.hasPrefix("job-"))
            #expect(try TestMedia.frameSeconds(submitted) == TestMedia.frameSeconds(clip))
            let tusCreations = farm.log.components(separatedBy: "\n").filter { $0.contains("upload created") && $0.contains("protocol=tus") }
            #expect(tusCreations.count == 2, "both uploads went through tus: \(farm.log.suffix(2000))")
        }
    }
}
