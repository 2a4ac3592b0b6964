import FarmChildProcess
import FarmTestSupport
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

extension Reliability {
    /// Faults against real `farm coordinator` and `farm node` processes: each test ends with an output that is
    /// frame-exact by ffprobe, or a clean job failure, and nothing lost. The faults a node commits come from its
    /// test-only switches (`FARM_TEST_CORRUPT_RESULT`, `FARM_TEST_STALL`); docs/reliability.md lists them all.
    @Suite struct FaultTests {
        /// The segment index of the last log line of `path` that contains `message`.
        static func segment(ofLast message: String, in path: String) -> Int? {
            FaultFarm.read(path).split(separator: "\n").last { $0.contains(message) }.flatMap { logValue("segment", in: $0) }
                .flatMap { Int($0) }
        }

        static func segment(_ index: Int, of job: [String: Any]) -> [String: Any]? {
            FaultFarm.segments(job).first { $0["index"] as? Int == index }
        }

        @Test func nodeKilledMidSegmentLosesNoFrame() async throws {
            let farm = try FaultFarm("farm-kill-node")
            defer { farm.remove() }
            try await farm.stopping {
                try await farm.startCoordinator()
                // node-a holds each segment 40 times as long as its encode takes (FARM_TEST_SLOW_NODE sleeps, it does not
                // burn CPU): it is certainly still holding its first segment when it is killed.
                try await farm.startNode("node-a", environment: ["FARM_TEST_SLOW_NODE": "node-a:40"])
                try await farm.startNode("node-b")
                try await farm.waitForNodes(2)
                let clip = "\(farm.sources)/clip.mp4"
                try TestMedia.makeClip(at: clip, seconds: 6)
                let id = try await farm.submit(clip, #""preset": "medium", "segment_seconds": 2"#)

                let encoding = await farm.kill(node: "node-a", timeout: 60) {
                    FaultFarm.count("encoding segment", in: farm.nodeLog("node-a")) > 0
                }
                try #require(encoding, "node-a never began a segment: \(farm.logs())")
                let held = try #require(Self.segment(ofLast: "encoding segment", in: farm.nodeLog("node-a")))
                let log = FaultFarm.read(farm.nodeLog("node-a"))
                try #require(
                    !log.split(separator: "\n").contains { $0.contains("task finished") && logValue("segment", in: $0) == "\(held)" },
                    "node-a finished segment \(held) before it was killed; the test proves nothing")

                let job = try await farm.waitForEnd(id)
                #expect(job["state"] as? String == "done", "\(job) \(farm.logs())")
                // The segment the dead node held was leased again and done by the other node.
                let segment = try #require(Self.segment(held, of: job))
                #expect(segment["node"] as? String == "node-b", "\(segment)")
                #expect((segment["attempts"] as? Int ?? 0) >= 2, "\(segment)")
                #expect(FaultFarm.read(farm.coordinatorLog()).contains("node left"))
                try await farm.expectExactOutput(id, source: clip)
            }
        }

        @Test func corruptedResultIsCaughtByItsChecksumAndRedone() async throws {
            let farm = try FaultFarm("farm-corrupt")
            defer { farm.remove() }
            try await farm.stopping {
                try await farm.startCoordinator()
                try await farm.startNode("node-a", environment: ["FARM_TEST_CORRUPT_RESULT": "1"])
                try await farm.startNode("node-b")
                try await farm.waitForNodes(2)
                let clip = "\(farm.sources)/clip.mp4"
                try TestMedia.makeClip(at: clip, seconds: 6)
                let id = try await farm.submit(clip, #""preset": "veryfast", "segment_seconds": 1"#)

                let job = try await farm.waitForEnd(id)
                #expect(job["state"] as? String == "done", "\(job) \(farm.logs())")
                let corrupted = try #require(
                    Self.segment(ofLast: "FARM_TEST_CORRUPT_RESULT", in: farm.nodeLog("node-a")), "node-a corrupted nothing: \(farm.logs())")
                let coordinatorLog = FaultFarm.read(farm.coordinatorLog())
                #expect(coordinatorLog.contains("result checksum mismatch"), "\(coordinatorLog.suffix(3000))")
                #expect(coordinatorLog.contains("failed its checksum"))
                let segment = try #require(Self.segment(corrupted, of: job))
                #expect((segment["attempts"] as? Int ?? 0) >= 2, "\(segment)")
                // The node whose result was refused was disconnected, came back, and the farm went on.
                let back = await FarmBinary.waitUntil(timeout: 15) { FaultFarm.count("joined the farm", in: farm.nodeLog("node-a")) >= 2 }
                #expect(back, "node-a did not come back: \(farm.logs())")
                try await farm.expectExactOutput(id, source: clip)
            }
        }

        /// One node, so that nothing but the lease can rescue the segment (with a second node, the scheduler's
        /// straggler duplicate would finish it first): the stalled connection is closed when its lease expires,
        /// the node dials again, and the segment is encoded on the new connection.
        @Test func stalledNodeLosesItsLeaseAndTheSegmentIsRedone() async throws {
            let farm = try FaultFarm("farm-stall", coordinatorArguments: ["--lease-timeout", "4"])
            defer { farm.remove() }
            try await farm.stopping {
                try await farm.startCoordinator()
                try await farm.startNode("node-a", environment: ["FARM_TEST_STALL": "1"])
                try await farm.waitForNodes(1)
                let clip = "\(farm.sources)/clip.mp4"
                try TestMedia.makeClip(at: clip, seconds: 3)
                let id = try await farm.submit(clip, #""preset": "veryfast", "segment_seconds": 1"#)

                let job = try await farm.waitForEnd(id, timeout: 60)
                #expect(job["state"] as? String == "done", "\(job) \(farm.logs())")
                let stalled = try #require(
                    Self.segment(ofLast: "FARM_TEST_STALL", in: farm.nodeLog("node-a")), "node-a never stalled: \(farm.logs())")
                let coordinatorLog = FaultFarm.read(farm.coordinatorLog())
                #expect(coordinatorLog.contains("node stalled"), "\(coordinatorLog.suffix(3000))")
                let segment = try #require(Self.segment(stalled, of: job))
                #expect((segment["attempts"] as? Int ?? 0) >= 2, "\(segment)")
                // The stalled connection was closed by the coordinator (its socket had stayed open); the node came back.
                let nodeLog = FaultFarm.read(farm.nodeLog("node-a"))
                #expect(nodeLog.contains("no heartbeat for 4 s"), "\(farm.logs())")
                #expect(FaultFarm.count("joined the farm", in: farm.nodeLog("node-a")) >= 2)
                try await farm.expectExactOutput(id, source: clip)
            }
        }

        /// Two nodes given one work directory (the same `--node-id` twice on a machine) would overwrite each other's
        /// segment files, which are named by task number: the second is refused at start, the first works on.
        @Test func secondNodeOnTheSameWorkDirectoryIsRefused() async throws {
            let farm = try FaultFarm("farm-work-dir")
            defer { farm.remove() }
            try await farm.stopping {
                try await farm.startCoordinator()
                try await farm.startNode("node-a")
                try await farm.waitForNodes(1)
                let second = try await FarmBinary.run(
                    ["node", "--coordinator", "127.0.0.1:\(farm.nodePort)", "--node-id", "node-a", "--no-calibrate",
                     "--work-dir", farm.workDirectory("node-a")],
                    environment: ["FARM_JOIN_TOKEN": farm.token], timeout: 30)
                #expect(second.status != 0 && second.status < 128, "\(second.status) \(second.stderr)")
                let lines = second.stderr.split(separator: "\n").filter { $0.hasPrefix("farm: error:") }
                #expect(lines.count == 1 && lines.first?.contains("is in use by another node") == true, "\(second.stderr)")

                let clip = "\(farm.sources)/clip.mp4"
                try TestMedia.makeClip(at: clip, seconds: 2)
                let id = try await farm.submit(clip, #""preset": "ultrafast", "segment_seconds": 1"#)
                let job = try await farm.waitForEnd(id)
                #expect(job["state"] as? String == "done", "\(job) \(farm.logs())")
                try await farm.expectExactOutput(id, source: clip)
            }
        }

        /// ResumeTests covers `farm render`; this is the same fault under `farm coordinator` and its HTTP API: the
        /// job keeps its id, nodes come back by themselves, and encoded segments are not encoded again.
        @Test func coordinatorKilledUnderTheHTTPAPIResumesTheJob() async throws {
            let farm = try FaultFarm("farm-restart")
            defer { farm.remove() }
            try await farm.stopping {
                try await farm.startCoordinator()
                // One slot that holds each segment 4 times its encode (sleeping): the job is far from done at the kill.
                try await farm.startNode("node-a", environment: ["FARM_TEST_SLOW_NODE": "node-a:4"])
                try await farm.waitForNodes(1)
                let clip = "\(farm.sources)/clip.mp4"
                try TestMedia.makeClip(at: clip, seconds: 8)
                let id = try await farm.submit(clip, #""preset": "medium", "segment_seconds": 1"#)

                let reached = await farm.killCoordinator(timeout: 60) { FaultFarm.count("segment done", in: farm.coordinatorLog()) >= 3 }
                try #require(reached, "3 segments were never done: \(farm.logs())")
                let doneBefore = FaultFarm.count("segment done", in: farm.coordinatorLog())
                let total = 8
                try #require(doneBefore < total, "the job finished before the coordinator could be killed")

                try await farm.startCoordinator()
                let job = try await farm.waitForEnd(id)
                #expect(job["state"] as? String == "done", "\(job) \(farm.logs())")
                #expect(FaultFarm.segments(job).count == total)
                let second = FaultFarm.read(farm.coordinatorLog())
                #expect(second.contains("job resumed"), "\(second.suffix(2000))")
                let doneAfter = FaultFarm.count("segment done", in: farm.coordinatorLog())
                // The segment in flight at the kill is encoded again; done ones are not.
                #expect(doneAfter <= total - doneBefore + 1, "re-encoded \(doneAfter) of \(total) after \(doneBefore) were done")
                #expect(second.contains("node joined"), "the node did not come back")
                try await farm.expectExactOutput(id, source: clip)

                // Once done, the job outlives a restart too: its status as it ended, its place in the list, its output.
                await farm.terminateCoordinator()
                try await farm.startCoordinator()
                let (code, ended) = try await farm.object("GET", "/jobs/\(id)")
                #expect(code == 200, "GET /jobs/\(id) after a restart answered \(code)")
                #expect(ended["state"] as? String == "done")
                #expect(ended["progress"] as? Double == 1)
                let segments = FaultFarm.segments(ended)
                #expect(segments.count == total && segments.allSatisfy { $0["state"] as? String == "done" })
                let frames: ([[String: Any]]) -> [Int] = { $0.map { segment in segment["frames"] as? Int ?? 0 } }
                #expect(frames(segments) == frames(FaultFarm.segments(job)))
                let (_, list) = try await farm.object("GET", "/jobs")
                let listed = (list["jobs"] as? [[String: Any]] ?? []).compactMap { $0["id"] as? String }
                #expect(listed.contains(id), "\(listed)")
                let (cancelCode, _) = try await farm.call("DELETE", "/jobs/\(id)")
                #expect(cancelCode == 409)
                try await farm.expectExactOutput(id, source: clip)
                // A new job is numbered after it.
                let next = try await farm.submit(clip, #""preset": "ultrafast""#)
                #expect(next != id && next.hasPrefix("job-0002-"), "\(next)")
                _ = try await farm.call("DELETE", "/jobs/\(next)")
            }
        }

        // MARK: - A full disk

        /// Mounts a tmpfs of `kib` KiB at `path`; nil when it worked, else why not. Blocking, and quick: the probe
        /// (a static initializer) and `unmount` (in a defer) cannot await.
        static func mountTmpfs(at path: String, kib: Int) -> String? {
            guard getuid() == 0 else { return "mounting a small tmpfs needs root (this runs as uid \(getuid()))" }
            guard let mount = executablePath("mount") else { return "no mount command" }
            do {
                let result = try FarmBinary.executeBlocking(mount, ["-t", "tmpfs", "-o", "size=\(kib)k", "tmpfs", path], timeout: 20)
                return result.status == 0 ? nil : "mount -t tmpfs failed: \(result.stderr.trimmingCharacters(in: .whitespacesAndNewlines))"
            } catch {
                return "mount -t tmpfs failed: \(error)"
            }
        }

        static func unmount(_ path: String) {
            guard let umount = executablePath("umount") else { return }
            if (try? FarmBinary.executeBlocking(umount, [path], timeout: 20))?.status != 0 {
                _ = try? FarmBinary.executeBlocking(umount, ["-l", path], timeout: 20)
            }
        }

        /// Whether this machine lets the tests mount a tmpfs (root with CAP_SYS_ADMIN); probed once.
        static let tmpfsProblem: String? = {
            guard let directory = try? TestMedia.temporaryDirectory("farm-tmpfs-probe") else { return "no temporary directory" }
            defer { try? FileManager.default.removeItem(at: directory) }
            let problem = mountTmpfs(at: directory.path, kib: 64)
            if problem == nil { unmount(directory.path) }
            return problem
        }()

        /// The outputs directory is a 256 KiB tmpfs: a job whose output needs more fails in assembly with a
        /// one-line error and leaves no byte behind; a job running beside it, whose output fits, ends exact; the
        /// job store survives (SQLite's integrity check, both jobs recorded as they ended, a restart opens it). And
        /// `farm render` onto a full disk prints one error line and leaves nothing.
        @Test(.enabled(if: tmpfsProblem == nil, "\(tmpfsProblem ?? "")"))
        func fullDiskDuringAssemblyFailsTheJobCleanly() async throws {
            let farm = try FaultFarm("farm-disk-full")
            let outputs = farm.data + "/outputs"
            try FileManager.default.createDirectory(atPath: outputs, withIntermediateDirectories: true)
            if let problem = Self.mountTmpfs(at: outputs, kib: 256) { throw TestFailure(problem) }
            defer {
                Self.unmount(outputs)
                farm.remove()
            }
            try await farm.stopping {
                try await farm.startCoordinator()
                try await farm.startNode("node-a")
                try await farm.startNode("node-b")
                try await farm.waitForNodes(2)

                // Small output, long encode: still encoding when the big one fails.
                let small = "\(farm.sources)/small.mp4"
                try TestMedia.makeClip(at: small, seconds: 8, size: "160x120", audio: false)
                // Noise at CRF 0: about 2 MB of output, far over the 256 KiB.
                let big = "\(farm.sources)/big.mp4"
                try TestMedia.makeClip(
                    at: big, seconds: 2, audio: false,
                    videoArgs: ["-vf", "noise=alls=60:allf=t", "-c:v", "libx264", "-preset", "ultrafast", "-g", "25"])
                let smallID = try await farm.submit(small, #""preset": "slower", "crf": 45, "segment_seconds": 1"#)
                let bigID = try await farm.submit(big, #""preset": "ultrafast", "crf": 0, "segment_seconds": 1"#)

                let failed = try await farm.waitForEnd(bigID)
                #expect(failed["state"] as? String == "failed", "\(failed) \(farm.logs())")
                let error = failed["error"] as? String ?? ""
                #expect(error.lowercased().contains("no space left on device"), "\(error)")
                #expect(!error.contains("\n"), "the error is more than one line: \(error)")
                let done = try await farm.waitForEnd(smallID)
                #expect(done["state"] as? String == "done", "\(done) \(farm.logs())")
                try await farm.expectExactOutput(smallID, source: small)
                // Only the small job's output is left on the full volume: no temporary, no partial file.
                let left = try FileManager.default.contentsOfDirectory(atPath: outputs)
                #expect(left.count == 1 && left.allSatisfy { !$0.contains("farm-tmp") }, "\(left)")
                let (listed, _) = try await farm.object("GET", "/jobs/\(bigID)/output")
                #expect(listed == 410)

                // The store: intact by SQLite's own check, both jobs recorded as they ended, and a coordinator
                // opens it again.
                await farm.terminateCoordinator()
                let store = try await FarmBinary.execute(
                    "/usr/bin/env",
                    [
                        "python3", "-c",
                        """
                        import sqlite3, sys
                        db = sqlite3.connect(sys.argv[1])
                        print(db.execute('pragma integrity_check').fetchone()[0])
                        for row in db.execute('select id, state from jobs order by id'): print(*row)
                        """,
                        farm.data + "/farm.sqlite",
                    ], timeout: 30)
                #expect(
                    store.stdout.split(separator: "\n").map(String.init) == ["ok", "\(smallID) done", "\(bigID) failed"],
                    "\(store.stdout) \(store.stderr)")
                try await farm.startCoordinator()
                let (health, _) = try await farm.call("GET", "/health")
                #expect(health == 200)

                // farm render writing onto the full volume: one error line, nothing at the output path.
                let filler = outputs + "/filler"
                _ = FileManager.default.createFile(atPath: filler, contents: Data(count: 200 * 1024))
                let target = outputs + "/render.mp4"
                let render = try await FarmBinary.run(
                    ["render", big, "-o", target, "--nodes", "1", "--preset", "ultrafast", "--crf", "0", "--data-dir", farm.directory.appendingPathComponent("render-data").path],
                    timeout: 60)
                #expect(render.status != 0 && render.status < 128, "\(render.status) \(render.stderr)")
                let lines = render.stderr.split(separator: "\n").filter { $0.hasPrefix("farm: error:") }
                #expect(lines.count == 1 && lines.first?.lowercased().contains("no space left on device") == true, "\(render.stderr)")
                #expect(try FileManager.default.contentsOfDirectory(atPath: outputs).sorted() == (left + ["filler"]).sorted())
            }
        }
    }
}
