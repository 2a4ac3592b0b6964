@testable import FarmCoordinator
import FarmMedia
import FarmProtocol
import FarmTestSupport
import Foundation
import Logging
import NIOCore
import Testing

/// Defects found reading the coordinator, each against a real `Coordinator` (no nodes) on real files.
@Suite struct CoordinatorFixTests {
    static func coordinator(_ directory: URL) -> Coordinator {
        var logger = Logger(label: "farm.test")
        logger.logLevel = .critical
        return Coordinator(
            configuration: CoordinatorConfiguration(
                dataDirectory: directory.appendingPathComponent("data").path, joinToken: "token", minimumFreeBytes: 0,
                logger: logger))
    }

    @Test func aStreamTheOutputContainerCannotHoldIsRefusedAtSubmission() async throws {
        MediaLog.quiet()
        let directory = try TestMedia.temporaryDirectory("farm-streams")
        defer { try? FileManager.default.removeItem(at: directory) }
        let subtitles = directory.appendingPathComponent("subs.ass").path
        try """
            [Script Info]
            ScriptType: v4.00+

            [V4+ Styles]
            Format: Name, Fontname, Fontsize, PrimaryColour, Bold, Italic, Alignment, MarginL, MarginR, MarginV
            Style: Default,Sans,20,&H00FFFFFF,0,0,2,10,10,10

            [Events]
            Format: Layer, Start, End, Style, Text
            Dialogue: 0,0:00:00.00,0:00:01.00,Default,hello

            """.write(toFile: subtitles, atomically: true, encoding: .utf8)
        let video = directory.appendingPathComponent("video.mp4").path
        try TestMedia.makeClip(at: video, seconds: 1, size: "160x120", audio: false)
        let source = directory.appendingPathComponent("src.mkv").path
        try TestMedia.run("ffmpeg", ["-v", "error", "-y", "-i", video, "-i", subtitles, "-map", "0", "-map", "1", "-c:v", "copy", "-c:s", "ass", source])
        let coordinator = Self.coordinator(directory)
        let mp4 = directory.appendingPathComponent("out.mp4").path
        let error = await #expect(throws: CoordinatorError.self) {
            _ = try await coordinator.submit(JobRequest(source: source, output: mp4))
        }
        #expect(error?.code == .invalidRequest)
        #expect(error?.message.contains("subtitle") == true && error?.message.contains("MP4") == true, "\(error?.message ?? "")")
        #expect(error?.message.contains("\n") == false)
        #expect(await coordinator.listJobs().isEmpty, "nothing was queued")
        // Matroska holds it: the same source is accepted for an .mkv output.
        let id = try await coordinator.submit(JobRequest(source: source, output: directory.appendingPathComponent("out.mkv").path))
        #expect(await coordinator.status(id)?.state == .queued)
    }

    /// Starts after unclean stops count against the jobs then in the coordinator's own work on their files; the third
    /// fails the job with the reason, and a clean stop counts nothing.
    @Test func aJobTheCoordinatorCrashedUnderThreeTimesIsFailed() async throws {
        let directory = try TestMedia.temporaryDirectory("farm-crash-loop")
        defer { try? FileManager.default.removeItem(at: directory) }
        let data = directory.appendingPathComponent("data").path
        let store = try await JobStore(dataDirectory: data)
        for (id, phase) in [("job-0001-aaaaaaaa", "assembling"), ("job-0002-bbbbbbbb", "encoding")] {
            let request = try JobStore.encodeJSON(JobRequest(source: "/in/\(id).mp4", output: "/out/\(id).mp4"))
            _ = try await store.insertJob(id: id, source: "/in/\(id).mp4", output: "/out/\(id).mp4", request: request, workDirectory: "/w/\(id)")
            _ = try await store.updateJob(id, state: .running, phase: phase)
        }
        // The first start, then one after a crash under the assembly: one interruption.
        #expect(try await store.beginRun(limit: 3).isEmpty)
        #expect(try await store.beginRun(limit: 3).isEmpty)
        #expect(try await store.interruptions("job-0001-aaaaaaaa") == 1)
        // A clean stop and a start: nothing counted. Another crash: two.
        try await store.endRun()
        #expect(try await store.beginRun(limit: 3).isEmpty)
        #expect(try await store.interruptions("job-0001-aaaaaaaa") == 1)
        #expect(try await store.beginRun(limit: 3).isEmpty)
        #expect(try await store.interruptions("job-0001-aaaaaaaa") == 2)
        #expect(try await store.interruptions("job-0002-bbbbbbbb") == 0, "encoding is the nodes' work, not counted")
        // The coordinator's next start after a crash is the third: the job fails with the reason; the other resumes.
        let coordinator = Self.coordinator(directory)
        let resumed = try await coordinator.open()
        #expect(resumed == ["job-0002-bbbbbbbb"])
        let failed = try #require(await coordinator.status("job-0001-aaaaaaaa"))
        #expect(failed.state == .failed)
        #expect(failed.error?.contains("3 times while this job was assembling") == true, "\(failed.error ?? "")")
    }

    @Test func theCPUBudgetRunsAtMostItsThreadsAtOnce() async throws {
        let budget = CPUBudget(threads: 2)
        final class Count: @unchecked Sendable {
            let lock = NSLock()
            var now = 0
            var most = 0
            var order: [Int] = []
            func change(_ by: Int, _ index: Int? = nil) {
                lock.lock()
                defer { lock.unlock() }
                now += by
                most = max(most, now)
                if let index { order.append(index) }
            }
        }
        let count = Count()
        await withTaskGroup(of: Void.self) { group in
            for i in 0..<8 {
                group.addTask {
                    await budget.run {
                        count.change(1, i)
                        try? await Task.sleep(for: .milliseconds(30))
                        count.change(-1)
                    }
                }
            }
        }
        #expect(count.most == 2, "\(count.most) ran at once")
        #expect(count.order.sorted() == Array(0..<8), "every piece ran: \(count.order)")
        #expect(await budget.mostWaiting >= 1)
        #expect(await budget.waiting == 0)
    }

    /// A node's messages, in order, as `NodeMessageHandler` reads them.
    struct Script: AsyncIteratorProtocol {
        var messages: ArraySlice<Message>
        mutating func next() async throws -> Message? { messages.popFirst() }
    }

    /// A node that sends a second result for a task while its first is still being checked is refused: the second
    /// would be written over the file the check reads, and its bytes accepted unchecked. The CPU budget's only
    /// thread is held, so that the first check is still waiting when the second result arrives.
    @Test func aSecondResultForATaskBeingCheckedClosesTheConnection() async throws {
        let directory = try TestMedia.temporaryDirectory("farm-second-result")
        defer { try? FileManager.default.removeItem(at: directory) }
        var logger = Logger(label: "farm.test")
        logger.logLevel = .critical
        var configuration = CoordinatorConfiguration(
            dataDirectory: directory.path, joinToken: String(repeating: "t", count: 32), nodeSecurity: .insecurePlainTCP,
            logger: logger)
        configuration.workThreads = 1
        let coordinator = Coordinator(configuration: configuration)
        await coordinator.oneSegmentJob(in: directory.path)
        let (outgoing, continuation) = AsyncStream<Outgoing>.makeStream()
        let hello = Hello(nodeID: "double", proof: [], slots: 1, threads: 1, capabilitiesJSON: "{}")
        let session = await coordinator.register(hello, address: "10.0.0.9", outgoing: continuation)
        continuation.finish()
        var held: [Assign] = []
        for await item in outgoing { if case .segment(let assign, _) = item { held.append(assign) } }
        let task = try #require(held.first)

        let (gate, open) = AsyncStream<Void>.makeStream()
        let (started, holding) = AsyncStream<Void>.makeStream()
        let blocker = Task {
            await coordinator.cpuBudget.run {
                holding.yield()
                for await _ in gate {}
            }
        }
        for await _ in started { break }

        let bytes: [UInt8] = Array(repeating: 7, count: 100)
        var sum = SegmentChecksum()
        bytes.withUnsafeBytes { sum.update($0) }
        let result = TaskResult(
            taskID: task.taskID, encoder: "libx264", frames: task.expectedFrames, byteLength: UInt64(bytes.count),
            checksum: sum.finalize(), decodeSeconds: 1, encodeSeconds: 1)
        let messages: [Message] = [
            .result(result), .data(DataChunk(taskID: task.taskID, bytes: ByteBuffer(bytes: bytes))), .result(result),
        ]
        let served = Task {
            var script = Script(messages: messages[...])
            var receivers: [UInt64: NodeSession.Receiver] = [:]
            defer { Task { [receivers] in await NodeMessageHandler.abandon(receivers) } }
            try await NodeMessageHandler(coordinator: coordinator, channel: nil).serve(
                &script, &receivers, session: session, nodeID: hello.nodeID, logger: logger)
        }
        // The pending check ends once the budget's thread is free; only then does the handler return.
        try await Task.sleep(for: .milliseconds(200))
        open.finish()
        await blocker.value
        let error = await #expect(throws: ProtocolError.self) { try await served.value }
        #expect(error?.message.contains("second result for task \(task.taskID)") == true, "\(String(describing: error))")
    }

    @Test func bansOutliveTheCoordinator() async throws {
        let directory = try TestMedia.temporaryDirectory("farm-bans")
        defer { try? FileManager.default.removeItem(at: directory) }
        var logger = Logger(label: "farm.test")
        logger.logLevel = .critical
        let first = Coordinator(
            configuration: CoordinatorConfiguration(
                nodeListenPort: 0, dataDirectory: directory.appendingPathComponent("data").path, joinToken: "token",
                minimumFreeBytes: 0, nodeSecurity: .insecurePlainTCP, logger: logger))
        let listener = try await first.bind()
        _ = try await first.open()
        let task = Task { try await first.run(listener) }
        // The ban's write goes through the store's queue, which the running coordinator drains; wait for it.
        let store = try await JobStore(dataDirectory: directory.appendingPathComponent("data").path)
        var banned: NodeBan?
        for _ in 0..<100 where banned == nil {
            try await Task.sleep(for: .milliseconds(20))
            banned = try? await first.banNode("hostile", reason: "wrong pictures", address: false)
        }
        var saved: [JobStore.StoredBan] = []
        for _ in 0..<100 where saved.isEmpty {
            try await Task.sleep(for: .milliseconds(50))
            saved = try await store.bans()
        }
        task.cancel()
        do { try await task.value } catch is CancellationError {} catch { Issue.record("the coordinator stopped: \(error)") }
        #expect(saved.map(\.nodeID) == ["hostile"])
        let second = Self.coordinator(directory)
        _ = try await second.open()
        let bans = await second.bans()
        #expect(bans.map(\.nodeID) == ["hostile"] && bans.first?.reason.contains("wrong pictures") == true)
        #expect(await second.banReason(nodeID: "hostile", host: nil)?.contains("is banned") == true)
        #expect(await second.unbanNode("hostile") != nil)
    }

    @Test func cancellingAWaitEndsTheWaitOnlyNotTheCoordinator() async throws {
        MediaLog.quiet()
        let directory = try TestMedia.temporaryDirectory("farm-wait")
        defer { try? FileManager.default.removeItem(at: directory) }
        let source = directory.appendingPathComponent("src.mp4").path
        try TestMedia.makeClip(at: source, seconds: 1, size: "160x120")
        let coordinator = Self.coordinator(directory)
        let id = try await coordinator.submit(
            JobRequest(source: source, output: directory.appendingPathComponent("out.mp4").path))
        let waiter = Task { try await coordinator.waitForCompletion(id) }
        try await Task.sleep(for: .milliseconds(100))
        waiter.cancel()
        let status = try await waiter.value
        #expect(status.state == .queued, "the cancelled wait answers with the job as it is")
        // The coordinator still takes work and still waits for others.
        #expect(await coordinator.stopping == false)
        let second = try await coordinator.submit(
            JobRequest(source: source, output: directory.appendingPathComponent("out2.mp4").path))
        #expect(await coordinator.status(second)?.state == .queued)
        try await coordinator.cancel(id)
        let ended = try await coordinator.waitForCompletion(id)
        #expect(ended.state == .cancelled)
    }
}

/// Publishing a verified output.
@Suite struct PublishTests {
    @Test func theOutputIsMovedIntoPlaceAndAMissingOneFailsInOneLine() throws {
        let directory = try TestMedia.temporaryDirectory("farm-publish")
        defer { try? FileManager.default.removeItem(at: directory) }
        let temporary = directory.appendingPathComponent(".out.farm-tmp.mp4").path
        let output = directory.appendingPathComponent("out.mp4").path
        try Data("verified".utf8).write(to: URL(fileURLWithPath: temporary))
        try OutputPublisher.publish(temporary, as: output)
        #expect(!FileManager.default.fileExists(atPath: temporary))
        #expect(try String(contentsOfFile: output, encoding: .utf8) == "verified")
        let error = #expect(throws: CoordinatorError.self) { try OutputPublisher.publish(temporary, as: output) }
        #expect(error?.message == "\(output): cannot open the verified output: No such file or directory")
    }
}

extension Coordinator {
    /// A running job of one ready segment of 100 frames, its files under `directory` (the source packets absent).
    func oneSegmentJob(in directory: String) {
        state.jobQueued(
            id: "one", request: JobRequest(source: "\(directory)/in.mp4", output: "\(directory)/out.mp4"),
            workDirectory: directory, now: now)
        apply(state.jobStarted("one"))
        let settings = EncodeSettings(
            codec: "h264", encoder: "libx264", crf: 30, preset: "ultrafast", pixelFormat: "yuv420p", width: 64,
            height: 64, timeBaseNum: 1, timeBaseDen: 25, frameRateNum: 25, frameRateDen: 1)
        apply(
            state.jobPlanned(
                "one", segments: [FarmState.Segment(plan: SegmentPlan(index: 0, uniformFrames: 100))], segmentSeconds: [4],
                settings: settings, parameters: nil, totalFrames: 100, sourceSeconds: 4, now: now))
        apply(state.segmentSplit("one", index: 0, path: "\(directory)/src-0.pkt", bytes: 1000, checksum: [1], now: now))
    }
}
