import FarmChildProcess
import FarmTestSupport
import Foundation
import Testing

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// The fleet's rules with real processes: a node whose tasks keep failing (the node's test switch
/// `FARM_TEST_FAIL_TASKS`) is quarantined while a good node finishes the job exactly; a straggler's
/// duplicate wins; and the cleanup pass removes what finished jobs left, never what a running job uses.
/// Rules that are decisions only (a segment failing on 3 nodes fails its job, leases, backoff, drain)
/// are `FarmStateTests` on a fake clock.
@Suite(.serialized, .heavy) struct FleetRulesTests {
    /// The coordinator's API token (`FARM_API_TOKEN`), sent on every request.
    static let apiToken = "fleet-rules-api-token-long-enough-for-the-coordinator"

    static func authorized(_ url: String) -> URLRequest {
        var request = URLRequest(url: URL(string: url)!)
        request.setValue("Bearer \(apiToken)", forHTTPHeaderField: "Authorization")
        return request
    }

    /// A coordinator with the HTTP API and the named nodes, each with its own environment.
    struct Fleet: ProcessFixture {
        let directory: URL
        let sources: String
        let base: String
        let coordinatorLog: String
        var processes: [ChildProcess] = []

        init(_ name: String, nodes: [(id: String, environment: [String: String])], coordinatorArguments: [String] = [])
            async throws
        {
            directory = try TestMedia.temporaryDirectory(name)
            sources = directory.appendingPathComponent("sources").path
            try FileManager.default.createDirectory(atPath: sources, withIntermediateDirectories: true)
            coordinatorLog = directory.appendingPathComponent("coordinator.log").path
            let token = ["FARM_JOIN_TOKEN": "fleet-rules-token-long-enough-for-the-coordinator", "FARM_API_TOKEN": FleetRulesTests.apiToken]
            let coordinator = try await TestCoordinator.start(
                data: directory.appendingPathComponent("data").path, log: coordinatorLog,
                arguments: ["--source-root", sources, "--log-level", "debug"] + coordinatorArguments, environment: token)
            base = coordinator.base
            processes.append(coordinator.process)
            do {
                for node in nodes {
                    processes.append(
                        try await TestNode.start(
                            coordinator: coordinator.nodeAddress, id: node.id,
                            log: directory.appendingPathComponent("\(node.id).log").path, arguments: ["--no-calibrate"],
                            environment: token.merging(node.environment) { $1 }))
                }
            } catch {
                await stop()
                throw error
            }
            let log = coordinatorLog
            let joined = await FarmBinary.waitUntil(timeout: 60) {
                let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
                return text.components(separatedBy: "node joined").count - 1 == nodes.count
            }
            guard joined else {
                await stop()
                throw TestFailure("the fleet did not start: \(((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").suffix(2000))")
            }
        }

        func stop() async { await FarmBinary.stop(processes.reversed()) }

        func get(_ path: String) async throws -> [String: Any] {
            let (data, _) = try await URLSession.shared.data(for: FleetRulesTests.authorized(base + path))
            return try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any], "\(path)")
        }

        func submit(_ json: String) async throws -> String {
            var request = FleetRulesTests.authorized(base + "/jobs")
            request.httpMethod = "POST"
            request.httpBody = Data(json.utf8)
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
            let (data, _) = try await URLSession.shared.data(for: request)
            let reply = try JSONSerialization.jsonObject(with: data) as? [String: Any]
            return try #require(reply?["id"] as? String, "\(String(decoding: data, as: UTF8.self))")
        }

        /// Makes a clip of `seconds` among the sources and submits it in 1 s segments; returns its path and the job's id.
        func submitClip(seconds: Double) async throws -> (clip: String, id: String) {
            let clip = "\(sources)/clip.mp4"
            try TestMedia.makeClip(at: clip, seconds: seconds)
            let id = try await submit(#"{"source": "\#(clip)", "crf": 30, "preset": "ultrafast", "segment_seconds": 1}"#)
            return (clip, id)
        }

        /// What the coordinator has logged so far.
        var coordinatorText: String { (try? String(contentsOfFile: coordinatorLog, encoding: .utf8)) ?? "" }

        /// Downloads the output of `id` and checks it against `clip`: the same frame times, a clean decode.
        func expectOutput(of id: String, matches clip: String) async throws {
            let output = directory.appendingPathComponent("out.mp4")
            let (data, _) = try await URLSession.shared.data(for: FleetRulesTests.authorized(base + "/jobs/\(id)/output"))
            try data.write(to: output)
            #expect(try TestMedia.frameTimes(output.path) == (try TestMedia.frameTimes(clip)))
            try TestMedia.decodesCleanly(output.path)
        }

        func waitForEnd(_ id: String, timeout: Double) async throws -> [String: Any] {
            let deadline = Date().addingTimeInterval(timeout)
            var job: [String: Any] = [:]
            while Date() < deadline {
                job = try await get("/jobs/\(id)")
                if ["done", "failed", "cancelled"].contains(job["state"] as? String ?? "") { return job }
                try await Task.sleep(for: .milliseconds(100))
            }
            return job
        }
    }

    @Test func failingNodeIsQuarantinedAndTheGoodNodeFinishesExactly() async throws {
        let fleet = try await Fleet(
            "farm-quarantine",
            nodes: [("bad-node", ["FARM_TEST_FAIL_TASKS": "all"]), ("good-node", [:])])
        defer { try? FileManager.default.removeItem(at: fleet.directory) }
        try await fleet.stopping {
            let (clip, id) = try await fleet.submitClip(seconds: 8)
            let job = try await fleet.waitForEnd(id, timeout: 60)
            let log = fleet.coordinatorText
            #expect(job["state"] as? String == "done", "\(job) \(log.suffix(3000))")

            // Every segment ended on the good node; the bad node's failures made some take more attempts.
            let segments = try #require(job["segments"] as? [[String: Any]])
            #expect(segments.count == 8)
            #expect(segments.allSatisfy { $0["node"] as? String == "good-node" }, "\(segments)")
            #expect(segments.contains { ($0["attempts"] as? Int ?? 0) > 1 })

            // The bad node stays connected but quarantined, with the reason.
            let nodes = try #require(try await fleet.get("/nodes")["nodes"] as? [[String: Any]])
            let bad = try #require(nodes.first { $0["id"] as? String == "bad-node" })
            #expect(bad["state"] as? String == "quarantined", "\(bad)")
            #expect((bad["quarantine_reason"] as? String)?.contains("injected encode failure") == true, "\(bad)")
            #expect((bad["quarantined_for_s"] as? Double ?? 0) > 0)
            #expect(log.contains("node quarantined"))

            try await fleet.expectOutput(of: id, matches: clip)
        }
    }

    @Test func aNodeReturningWrongPicturesIsBannedAndTheJobEndsExact() async throws {
        // The liar encodes every segment from inverted pictures: right frames, right times, wrong pictures. The
        // verifier refuses them; the first refusal would quarantine it (0 s here, so it gets a second chance), the
        // second bans it. The honest node encodes everything, and the output matches the source picture by picture.
        let fleet = try await Fleet(
            "farm-wrong-pictures", nodes: [("liar", ["FARM_TEST_WRONG_PICTURES": "all"]), ("honest", [:])],
            coordinatorArguments: ["--quarantine-seconds", "0"])
        defer { try? FileManager.default.removeItem(at: fleet.directory) }
        try await fleet.stopping {
            let (clip, id) = try await fleet.submitClip(seconds: 8)
            let job = try await fleet.waitForEnd(id, timeout: 90)
            let log = fleet.coordinatorText
            #expect(job["state"] as? String == "done", "\(job) \(log.suffix(3000))")
            let segments = try #require(job["segments"] as? [[String: Any]])
            #expect(segments.allSatisfy { $0["node"] as? String == "honest" }, "\(segments)")

            let listing = try await fleet.get("/nodes")
            let bans = try #require(listing["bans"] as? [[String: Any]])
            let ban = try #require(bans.first { $0["id"] as? String == "liar" }, "\(listing)")
            #expect(ban["reason"] as? String == "2 results refused by the verifier", "\(ban)")
            #expect((ban["evidence"] as? String)?.contains("SSIM") == true, "\(ban)")
            #expect(ban["address"] == nil, "a loopback address is not banned unless asked")
            let nodes = try #require(listing["nodes"] as? [[String: Any]])
            #expect(!nodes.contains { $0["id"] as? String == "liar" })
            #expect(log.contains("node banned"))

            // The banned node tried again and was told why.
            let liarLog = fleet.directory.appendingPathComponent("liar.log").path
            let told = await FarmBinary.waitUntil(timeout: 30) {
                ((try? String(contentsOfFile: liarLog, encoding: .utf8)) ?? "").contains("node liar is banned")
            }
            #expect(told, "\(((try? String(contentsOfFile: liarLog, encoding: .utf8)) ?? "").suffix(1500))")

            try await fleet.expectOutput(of: id, matches: clip)
            // Pictures against the source: the worst frame's PSNR is an honest encode's, not an inverted one's.
            let output = fleet.directory.appendingPathComponent("out.mp4").path
            let stats = try TestMedia.run(
                "ffmpeg", ["-v", "error", "-i", output, "-i", clip, "-lavfi", "[0:v][1:v]psnr=stats_file=-", "-f", "null", "-"])
            let worst = stats.split(separator: "\n").compactMap { line in
                line.split(separator: " ").first { $0.hasPrefix("psnr_y:") }.flatMap { Double($0.dropFirst(7)) }
            }.min()
            #expect((worst ?? 0) > 25, "worst luma PSNR \(worst ?? -1) dB")

            // Lifted by hand: it is gone from the list.
            var request = FleetRulesTests.authorized(fleet.base + "/nodes/liar/ban")
            request.httpMethod = "DELETE"
            let (_, response) = try await URLSession.shared.data(for: request)
            #expect((response as? HTTPURLResponse)?.statusCode == 200)
            #expect((try await fleet.get("/nodes")["bans"] as? [[String: Any]])?.isEmpty == true)
        }
    }

    @Test func stragglingSegmentIsDuplicatedAndTheFirstResultKept() async throws {
        // One node 40 times slower than it should be: its segment is late, runs a second time on the
        // fast node, and the copy that ends first (the fast one) is kept; the other is cancelled.
        let fleet = try await Fleet(
            "farm-duplicate",
            nodes: [("fast-node", [:]), ("slow-node", ["FARM_TEST_SLOW_NODE": "slow-node:40"])])
        defer { try? FileManager.default.removeItem(at: fleet.directory) }
        try await fleet.stopping {
            let (clip, id) = try await fleet.submitClip(seconds: 4)
            let job = try await fleet.waitForEnd(id, timeout: 60)
            let log = fleet.coordinatorText
            #expect(job["state"] as? String == "done", "\(job) \(log.suffix(3000))")
            #expect(log.contains("segment duplicated"), "\(log.suffix(3000))")
            #expect(log.contains("duplicate finished first"), "\(log.suffix(3000))")
            #expect(log.contains("slower copy cancelled"))
            let segments = try #require(job["segments"] as? [[String: Any]])
            #expect(segments.allSatisfy { $0["state"] as? String == "done" })
            try await fleet.expectOutput(of: id, matches: clip)
        }
    }

    @Test func cleanupRemovesWhatFinishedJobsLeftAndNeverARunningJobsFiles() async throws {
        // A retention of about 5 s and a pass every 0.36 s: a finished job is soon forgotten; a running one is not.
        let fleet = try await Fleet(
            "farm-cleanup", nodes: [("slow-node", ["FARM_TEST_SLOW_NODE": "slow-node:6"])],
            coordinatorArguments: ["--retention-hours", "0.0015", "--cleanup-interval-hours", "0.0001"])
        defer { try? FileManager.default.removeItem(at: fleet.directory) }
        try await fleet.stopping {
            let data = fleet.directory.appendingPathComponent("data").path
            // Leftovers of a crashed run: a work directory and a temporary output no job owns.
            try FileManager.default.createDirectory(atPath: "\(data)/jobs/job-0999-deadbeef", withIntermediateDirectories: true)
            FileManager.default.createFile(atPath: "\(data)/jobs/job-0999-deadbeef/src-0.pkt", contents: Data(count: 1000))
            try FileManager.default.createDirectory(atPath: "\(data)/outputs", withIntermediateDirectories: true)
            FileManager.default.createFile(atPath: "\(data)/outputs/.x.farm-tmp-job-0999-deadbeef.mp4", contents: Data(count: 10))

            let (_, id) = try await fleet.submitClip(seconds: 6)
            // While it runs, through many cleanup passes, its work files stay and the leftovers go.
            var sawWork = false
            let deadline = Date().addingTimeInterval(60)
            var state = ""
            while Date() < deadline {
                let job = try await fleet.get("/jobs/\(id)")
                state = job["state"] as? String ?? ""
                if state != "running" && state != "queued" { break }
                if FileManager.default.fileExists(atPath: "\(data)/jobs/\(id)") { sawWork = true }
                try await Task.sleep(for: .milliseconds(200))
            }
            #expect(sawWork)
            #expect(!FileManager.default.fileExists(atPath: "\(data)/jobs/job-0999-deadbeef"))
            #expect(!FileManager.default.fileExists(atPath: "\(data)/outputs/.x.farm-tmp-job-0999-deadbeef.mp4"))
            let log = fleet.coordinatorText
            // The job ran to the end through the passes (a removed work file would have failed it).
            #expect(state == "done", "\(state) \(log.suffix(3000))")
            #expect(!log.contains("job failed"))

            // Once done and past the retention, the job and its output are forgotten.
            let forgotten = await FarmBinary.waitUntil(timeout: 30) {
                let outputs = (try? FileManager.default.contentsOfDirectory(atPath: "\(data)/outputs")) ?? ["?"]
                return outputs.isEmpty && !FileManager.default.fileExists(atPath: "\(data)/jobs/\(id)")
            }
            #expect(forgotten)
            let (_, response) = try await URLSession.shared.data(for: FleetRulesTests.authorized(fleet.base + "/jobs/\(id)"))
            #expect((response as? HTTPURLResponse)?.statusCode == 404)
        }
    }
}
