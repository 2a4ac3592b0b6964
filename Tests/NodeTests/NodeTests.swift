import FarmHWEncode
import FarmMedia
import FarmNode
import FarmProtocol
import FarmTestSupport
import Foundation
import Logging
import NIOCore
import NIOPosix
import Testing

/// The node against a fake coordinator on loopback, speaking FarmProtocol over NIO (plain TCP; the TLS channel and
/// its binding are tested with real processes in SecurityTests).
@Suite(.timeLimit(.minutes(1))) struct NodeTests {
    static let token = "node-test-token"

    init() { MediaLog.quiet() }

    // MARK: - Handshake

    @Test func rejectEndsTheNodeWithTheReason() async throws {
        let outcome = try await scenario(reconnect: true) { _, peer in
            let hello = try await peer.expectHello()
            #expect(hello.nodeID == "test-node")
            #expect(hello.slots == 2)
            #expect(hello.capabilitiesJSON == "{\"probe\":true}")
            try await peer.send(.reject(Reject(reason: "go away")))
        } node: { configuration in
            configuration.slots = 2
            configuration.capabilitiesJSON = "{\"probe\":true}"
        }
        let error = try #require(outcome.error as? NodeError)
        #expect(error.code == .rejected)
        #expect(error.message.contains("go away"))
    }

    @Test func coordinatorWithoutTheTokenIsRefused() async throws {
        let outcome = try await scenario(reconnect: true) { _, peer in
            _ = try await peer.expectHello()
            try await peer.send(
                .welcome(Welcome(coordinatorID: "impostor", heartbeatSeconds: 1, proof: JoinProof.makeNonce())))
            let answer = try await peer.next()
            guard case .reject(let reject)? = answer else {
                Issue.record("expected a reject, got \(String(describing: answer))")
                return
            }
            #expect(reject.reason.contains("failed to prove the join token"))
        }
        let error = try #require(outcome.error as? NodeError)
        #expect(error.code == .authenticationFailed)
    }

    @Test func firstConnectFailureThrowsWithoutReconnect() async throws {
        // A port nobody listens on: bind one, note it, close it.
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(host: "127.0.0.1", port: 0).get()
        let port = server.localAddress!.port!
        try await server.close()
        let node = RenderNode(
            configuration: NodeConfiguration(
                coordinatorPort: port, nodeID: "test-node", joinToken: Self.token, workDirectory: try workDirectory(),
                reconnect: false, insecurePlainTCP: true))
        await #expect(throws: NodeError.self) { try await node.run() }
        do { try await node.run() } catch let error as NodeError { #expect(error.code == .connectFailed) }
    }

    // MARK: - Tasks

    @Test func encodesASegmentAndDrainsOnRequest() async throws {
        let dir = try TestMedia.temporaryDirectory("node-test")
        defer { try? FileManager.default.removeItem(at: dir) }
        let (index, config, segment) = try makeSegment(in: dir)
        let work = try workDirectory()
        let resultPath = dir.appendingPathComponent("result.pkt").path

        let outcome = try await scenario(reconnect: false, workDirectory: work) { _, peer in
            try await peer.handshake()
            let assign = segmentAssign(taskID: 7, config: config, index: index, segment: segment)
            try await peer.send(.assign(assign))
            // Small chunks, so that the transfer takes several frames.
            try await peer.sendData(segment, taskID: 7, chunkSize: 50_000)
            guard case .result(let result)? = try await peer.next() else {
                Issue.record("expected a result")
                return
            }
            #expect(result.taskID == 7)
            #expect(result.frames == UInt64(index.totalFrames))
            #expect(result.encoder == "libx264")
            #expect(result.fallbackReason == nil)
            var received = Data()
            while received.count < Int(result.byteLength) {
                guard case .data(let chunk)? = try await peer.next() else {
                    Issue.record("expected data after \(received.count) of \(result.byteLength) bytes")
                    return
                }
                #expect(chunk.taskID == 7)
                #expect(chunk.bytes.readableBytes <= FarmWire.dataChunkSize)
                received.append(contentsOf: chunk.bytes.readableBytesView)
            }
            #expect(received.count == Int(result.byteLength))
            #expect(checksum(received) == result.checksum)
            try received.write(to: URL(fileURLWithPath: resultPath))
            #expect(try PacketFileReader(path: resultPath).header.parameters.isVideo)
            // Heartbeats continue while the node is idle.
            let seen = peer.heartbeats
            try await Task.sleep(for: .milliseconds(1300))
            try await peer.send(.drain)
            guard case .drain? = try await peer.next() else {
                Issue.record("expected the node's drain")
                return
            }
            #expect(peer.heartbeats > seen)
            #expect(try await peer.next() == nil)
        }
        #expect(outcome.error == nil, "\(String(describing: outcome.error))")
        #expect(try FileManager.default.contentsOfDirectory(atPath: work).isEmpty)
    }

    @Test func drainFinishesTwoConcurrentTasksFirst() async throws {
        let dir = try TestMedia.temporaryDirectory("node-test")
        defer { try? FileManager.default.removeItem(at: dir) }
        let (index, config, segment) = try makeSegment(in: dir)
        let work = try workDirectory()
        let outcome = try await scenario(reconnect: true, workDirectory: work) { _, peer in
            try await peer.handshake()
            for taskID: UInt64 in [1, 2] {
                try await peer.send(
                    .assign(
                        segmentAssign(
                            taskID: taskID, jobID: "job-2", segmentIndex: UInt32(taskID), attempt: 1, config: config,
                            index: index, segment: segment)))
            }
            // Interleave the two transfers.
            var offset = 0
            while offset < segment.count {
                let end = min(offset + 30_000, segment.count)
                for taskID: UInt64 in [1, 2] {
                    try await peer.send(.data(DataChunk(taskID: taskID, bytes: ByteBuffer(bytes: segment[offset..<end]))))
                }
                offset = end
            }
            try await peer.send(.drain)
            var results: [UInt64: TaskResult] = [:]
            var received: [UInt64: Data] = [:]
            while true {
                guard let message = try await peer.next() else {
                    Issue.record("the connection ended before the node's drain")
                    return
                }
                switch message {
                case .result(let result):
                    #expect(results[result.taskID] == nil)
                    results[result.taskID] = result
                    received[result.taskID] = Data()
                case .data(let chunk):
                    #expect(results[chunk.taskID] != nil)
                    received[chunk.taskID, default: Data()].append(contentsOf: chunk.bytes.readableBytesView)
                case .drain:
                    #expect(results.keys.sorted() == [1, 2])
                    for (taskID, result) in results {
                        #expect(result.frames == UInt64(index.totalFrames))
                        #expect(received[taskID].map(checksum) == result.checksum)
                    }
                    #expect(try await peer.next() == nil)
                    return
                default:
                    Issue.record("unexpected \(message)")
                }
            }
        } node: { $0.slots = 2 }
        #expect(outcome.error == nil, "\(String(describing: outcome.error))")
        #expect(try FileManager.default.contentsOfDirectory(atPath: work).isEmpty)
    }

    @Test func failedEncodesAreReportedWithRetryability() async throws {
        let work = try workDirectory()
        let outcome = try await scenario(reconnect: false, workDirectory: work) { _, peer in
            try await peer.handshake()
            // Bytes that are no packet file: the input is at fault, so no retry.
            let garbage = Data((0..<1000).map { UInt8($0 % 251) })
            var assign = dummyAssign(taskID: 1, byteLength: UInt64(garbage.count))
            assign.checksum = checksum(garbage)
            try await peer.send(.assign(assign))
            try await peer.send(.data(DataChunk(taskID: 1, bytes: ByteBuffer(bytes: garbage))))
            guard case .failure(let failure)? = try await peer.next() else {
                Issue.record("expected a failure")
                return
            }
            #expect(failure.taskID == 1)
            #expect(!failure.retryable, "\(failure.reason)")
            #expect(failure.kind == .segment)
            // A codec this build does not know.
            var unknown = dummyAssign(taskID: 2, byteLength: 0)
            unknown.settings.codec = "vp9"
            unknown.checksum = checksum(Data())
            try await peer.send(.assign(unknown))
            guard case .failure(let second)? = try await peer.next() else {
                Issue.record("expected a failure")
                return
            }
            #expect(second.taskID == 2 && !second.retryable && second.reason.contains("vp9"))
            try await peer.send(.drain)
            #expect(try await peer.next() == .drain)
        }
        #expect(outcome.error == nil, "\(String(describing: outcome.error))")
        #expect(try FileManager.default.contentsOfDirectory(atPath: work).isEmpty)
    }

    @Test func encoderOptionsThatTouchFilesAreRefusedByName() async throws {
        let work = try workDirectory()
        let hostile: [(String, String, String)] = [
            ("x264-params", "bframes=0:stats=stolen.log", "stats"),
            ("x265-params", "log-level=error:csv=out.csv", "csv"),
            ("x265-params", "analysis-save=a.dat", "analysis-save"),
            ("x264-params", "qpfile=q.txt", "qpfile"),
            ("passlogfile", "pass", "passlogfile"),
        ]
        let outcome = try await scenario(reconnect: false, workDirectory: work) { _, peer in
            try await peer.handshake()
            for (number, (key, value, named)) in hostile.enumerated() {
                var assign = dummyAssign(taskID: UInt64(number + 1), byteLength: 0)
                assign.settings.options = [key: value]
                assign.checksum = checksum(Data())
                try await peer.send(.assign(assign))
                guard case .failure(let failure)? = try await peer.next() else {
                    Issue.record("expected a failure for \(key)=\(value)")
                    return
                }
                #expect(failure.taskID == assign.taskID)
                #expect(!failure.retryable)
                #expect(failure.reason.contains("\"\(named)\""), "\(failure.reason)")
                #expect(!failure.reason.contains("\n"))
            }
            try await peer.send(.drain)
            #expect(try await peer.next() == .drain)
        }
        #expect(outcome.error == nil, "\(String(describing: outcome.error))")
        #expect(try FileManager.default.contentsOfDirectory(atPath: work).isEmpty)
    }

    @Test func cancelStopsARunningEncode() async throws {
        let dir = try TestMedia.temporaryDirectory("node-test")
        defer { try? FileManager.default.removeItem(at: dir) }
        let (index, fastConfig, segment) = try makeSegment(in: dir, seconds: 40, size: "320x240")
        var config = fastConfig
        config.preset = "veryslow"
        let work = try workDirectory()
        let clock = ContinuousClock()
        let outcome = try await scenario(reconnect: false, workDirectory: work) { _, peer in
            try await peer.handshake()
            try await peer.send(
                .assign(segmentAssign(taskID: 4, jobID: "job-4", config: config, index: index, segment: segment)))
            try await peer.send(.data(DataChunk(taskID: 4, bytes: ByteBuffer(bytes: segment))))
            var progress: UInt64 = 0
            while progress == 0 {
                let heartbeat = try await peer.nextHeartbeat()
                progress = heartbeat.activeTasks.first?.framesDone ?? 0
            }
            #expect(progress < UInt64(index.totalFrames))
            let cancelled = clock.now
            try await peer.send(.cancel(taskID: 4))
            try await peer.send(.drain)
            let next = try await peer.next()
            #expect(next == .drain, "\(String(describing: next))")
            // The encode had 14 s or more to go at veryslow on an idle machine: stopping within 10 s shows it was
            // interrupted between frames. (The 2 s deadline of a cancelled job is held end to end by
            // HTTPTests.deleteStopsARunningJobOnItsNode; this suite shares 2 cores with the others.)
            #expect(clock.now - cancelled < .seconds(10))
        }
        #expect(outcome.error == nil, "\(String(describing: outcome.error))")
        #expect(try FileManager.default.contentsOfDirectory(atPath: work).isEmpty)
    }

    @Test func refusesBeyondItsSlotsAndForgetsCancelledTasks() async throws {
        let work = try workDirectory()
        let outcome = try await scenario(reconnect: false, workDirectory: work) { _, peer in
            try await peer.handshake()
            try await peer.send(.assign(dummyAssign(taskID: 1, byteLength: 100)))
            try await peer.send(.data(DataChunk(taskID: 1, bytes: ByteBuffer(repeating: 1, count: 10))))
            try await peer.send(.assign(dummyAssign(taskID: 2, byteLength: 20)))
            // The refused task's bytes are dropped, not a violation.
            try await peer.send(.data(DataChunk(taskID: 2, bytes: ByteBuffer(repeating: 2, count: 20))))
            guard case .failure(let failure)? = try await peer.next() else {
                Issue.record("expected a failure for the task beyond the slots")
                return
            }
            #expect(failure.taskID == 2)
            #expect(failure.retryable)
            #expect(failure.reason.contains("no free slot"))
            #expect(failure.kind == .refused)
            // A heartbeat lists the task in hand.
            let heartbeat = try await peer.nextHeartbeat()
            #expect(heartbeat.activeTasks == [TaskProgress(taskID: 1, framesDone: 0)])
            #expect(FileManager.default.fileExists(atPath: "\(work)/1.src.pkt"))
            try await peer.send(.cancel(taskID: 1))
            try await peer.send(.data(DataChunk(taskID: 1, bytes: ByteBuffer(repeating: 1, count: 10))))
            try await peer.send(.drain)
            let next = try await peer.next()
            #expect(next == .drain, "\(String(describing: next))")
            #expect(try await peer.next() == nil)
        } node: { $0.slots = 1 }
        #expect(outcome.error == nil, "\(String(describing: outcome.error))")
        #expect(try FileManager.default.contentsOfDirectory(atPath: work).isEmpty)
    }

    /// A result that leaves slowly (a coordinator reading 5 chunks a second, as over a thin link) must not hold
    /// the node's heartbeats back: the coordinator drops a node it has not heard from for its lease timeout.
    @Test func heartbeatsKeepComingWhileALongResultCrawlsOut() async throws {
        let dir = try TestMedia.temporaryDirectory("node-test")
        defer { try? FileManager.default.removeItem(at: dir) }
        // Noise encoded near-losslessly: a result of some 20 MiB from 2 s of 640x480.
        var (index, config, segment) = try makeSegment(
            in: dir, seconds: 2, size: "640x480",
            videoArgs: ["-vf", "noise=alls=30:allf=t", "-c:v", "libx264", "-preset", "ultrafast", "-g", "50"])
        config.crf = 0
        let outcome = try await scenario(reconnect: false, readsAhead: 2) { _, peer in
            try await peer.handshake()
            try await peer.send(.assign(segmentAssign(taskID: 11, config: config, index: index, segment: segment)))
            try await peer.sendData(segment, taskID: 11, chunkSize: FarmWire.dataChunkSize)
            guard case .result(let result)? = try await peer.next() else {
                Issue.record("expected a result")
                return
            }
            #expect(result.byteLength > 12 << 20, "a result of \(result.byteLength) bytes is too short to crawl")
            var received = 0
            var heartbeatsDuring = 0
            while received < Int(result.byteLength) {
                switch try await peer.iterator.next() {
                case .heartbeat?: if received > 0 { heartbeatsDuring += 1 }
                case .data(let chunk)?:
                    received += chunk.bytes.readableBytes
                    try await Task.sleep(for: .milliseconds(200))
                case let other:
                    Issue.record("expected data or a heartbeat, got \(String(describing: other))")
                    return
                }
            }
            // About 4 s of crawling with a heartbeat a second: they must get through between the chunks.
            #expect(heartbeatsDuring >= 1, "no heartbeat while \(received) bytes crawled out")
            try await peer.send(.drain)
            let next = try await peer.next()
            #expect(next == .drain, "\(String(describing: next))")
            #expect(try await peer.next() == nil)
        }
        #expect(outcome.error == nil, "\(String(describing: outcome.error))")
    }

    @Test func checksumMismatchFailsTheTaskAndCloses() async throws {
        let work = try workDirectory()
        let outcome = try await scenario(reconnect: false, workDirectory: work) { _, peer in
            try await peer.handshake()
            var assign = dummyAssign(taskID: 3, byteLength: 5)
            assign.checksum = [UInt8](repeating: 0, count: SegmentChecksum.byteCount)
            try await peer.send(.assign(assign))
            try await peer.send(.data(DataChunk(taskID: 3, bytes: ByteBuffer(bytes: [1, 2, 3, 4, 5]))))
            guard case .failure(let failure)? = try await peer.next() else {
                Issue.record("expected a failure")
                return
            }
            #expect(failure.taskID == 3)
            #expect(failure.retryable)
            #expect(failure.reason.contains("segment checksum mismatch"))
            #expect(failure.kind == .node)
            #expect(try await peer.next() == nil)
        }
        #expect(outcome.error == nil, "\(String(describing: outcome.error))")
        #expect(try FileManager.default.contentsOfDirectory(atPath: work).isEmpty)
    }

    @Test func dataForAnUnknownTaskClosesWithAReason() async throws {
        let outcome = try await scenario(reconnect: false) { _, peer in
            try await peer.handshake()
            try await peer.send(.data(DataChunk(taskID: 99, bytes: ByteBuffer(repeating: 0, count: 4))))
            guard case .reject(let reject)? = try await peer.next() else {
                Issue.record("expected a reject")
                return
            }
            #expect(reject.reason.contains("task 99"))
            #expect(try await peer.next() == nil)
        }
        #expect(outcome.error == nil, "\(String(describing: outcome.error))")
    }

    @Test func localDrainLeavesAndAnAssignDuringDrainIsRefused() async throws {
        let work = try workDirectory()
        let outcome = try await scenario(reconnect: true, workDirectory: work) { _, peer in
            try await peer.handshake()
            try await peer.send(.assign(dummyAssign(taskID: 1, byteLength: 4)))
            _ = try await peer.nextHeartbeat()  // the assign has been read by now
            peer.node.drain()
            try await Task.sleep(for: .milliseconds(100))
            try await peer.send(.assign(dummyAssign(taskID: 2, byteLength: 0)))
            guard case .failure(let failure)? = try await peer.next() else {
                Issue.record("expected a failure for the assign during the drain")
                return
            }
            #expect(failure.taskID == 2 && failure.retryable && failure.reason.contains("draining"))
            #expect(failure.kind == .refused)
            // Task 1 is still in hand: cancelling it ends the drain.
            try await peer.send(.cancel(taskID: 1))
            #expect(try await peer.next() == .drain)
            #expect(try await peer.next() == nil)
        }
        #expect(outcome.error == nil, "\(String(describing: outcome.error))")
        #expect(try FileManager.default.contentsOfDirectory(atPath: work).isEmpty)
    }

    @Test func reconnectsAfterTheConnectionDrops() async throws {
        let outcome = try await scenario(reconnect: true, connections: 2) { connection, peer in
            try await peer.handshake()
            if connection == 1 {
                try await peer.send(.drain)
                #expect(try await peer.next() == .drain)
            }
            // Connection 0 just ends: the node must come back.
        }
        #expect(outcome.error == nil, "\(String(describing: outcome.error))")
    }

    @Test func cancellingRunReturns() async throws {
        let work = try workDirectory()
        let server = try await FakeCoordinator.bind()
        let node = RenderNode(
            configuration: NodeConfiguration(
                coordinatorPort: server.port, nodeID: "test-node", joinToken: Self.token, workDirectory: work,
                insecurePlainTCP: true))
        try await server.channel.executeThenClose { connections in
            let run = Task { try await node.run() }
            var iterator = connections.makeAsyncIterator()
            let connection = try #require(try await iterator.next())
            try await connection.executeThenClose { inbound, outbound in
                var peer = Peer(iterator: inbound.makeAsyncIterator(), outbound: outbound, node: node)
                try await peer.handshake()
                try await peer.send(.assign(dummyAssign(taskID: 5, byteLength: 10)))
                _ = try await peer.nextHeartbeat()
                run.cancel()
                try await run.value
                #expect(try await peer.next() == nil)
            }
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: work).isEmpty)
    }
}

// MARK: - The fake coordinator

struct Outcome {
    var error: (any Error)?
}

/// Runs the node against a fake coordinator that plays `script` on each of `connections` connections, then
/// waits for the node's `run()` to end.
func scenario(
    reconnect: Bool, connections: Int = 1, workDirectory: String? = nil, readsAhead: Int = 10,
    _ script: (Int, inout Peer) async throws -> Void,
    node configure: (inout NodeConfiguration) -> Void = { _ in }
) async throws -> Outcome {
    let server = try await FakeCoordinator.bind(readsAhead: readsAhead)
    var configuration = NodeConfiguration(
        coordinatorPort: server.port, nodeID: "test-node", joinToken: NodeTests.token,
        workDirectory: try workDirectory ?? FarmNodeTestsSupport.workDirectory(), reconnect: reconnect,
        insecurePlainTCP: true)
    configuration.logger.logLevel = .debug
    configure(&configuration)
    let node = RenderNode(configuration: configuration)
    return try await server.channel.executeThenClose { incoming in
        try await withThrowingTaskGroup(of: Outcome.self) { group in
            group.addTask {
                do {
                    try await node.run()
                    return Outcome(error: nil)
                } catch {
                    return Outcome(error: error)
                }
            }
            var iterator = incoming.makeAsyncIterator()
            for number in 0..<connections {
                guard let connection = try await iterator.next() else { break }
                try await connection.executeThenClose { inbound, outbound in
                    var peer = Peer(iterator: inbound.makeAsyncIterator(), outbound: outbound, node: node)
                    try await script(number, &peer)
                }
            }
            return try await group.next()!
        }
    }
}

enum FarmNodeTestsSupport {
    static func workDirectory() throws -> String {
        try TestMedia.temporaryDirectory("node-work").path
    }
}

func workDirectory() throws -> String { try FarmNodeTestsSupport.workDirectory() }

enum FakeCoordinator {
    struct Server {
        let channel: NIOAsyncChannel<NIOAsyncChannel<Message, Message>, Never>
        let port: Int
    }

    /// - Parameter readsAhead: Messages read from the socket before the script takes them (NIO's default is 10);
    ///   below that the receive buffer is small too, so a node's writes wait for the script's pace.
    static func bind(readsAhead: Int = 10) async throws -> Server {
        var bootstrap = ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
        if readsAhead < 10 { bootstrap = bootstrap.childChannelOption(.socketOption(.so_rcvbuf), value: 64 << 10) }
        let channel = try await bootstrap
            .bind(host: "127.0.0.1", port: 0) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try FarmWire.addHandlers(to: channel.pipeline.syncOperations)
                    return try NIOAsyncChannel<Message, Message>(
                        wrappingChannelSynchronously: channel,
                        configuration: .init(backPressureStrategy: .init(lowWatermark: 1, highWatermark: readsAhead)))
                }
            }
        return Server(channel: channel, port: channel.channel.localAddress!.port!)
    }
}

/// The coordinator's end of one connection.
struct Peer {
    var iterator: NIOAsyncChannelInboundStream<Message>.AsyncIterator
    let outbound: NIOAsyncChannelOutboundWriter<Message>
    let node: RenderNode
    let nonce = JoinProof.makeNonce()
    var nodeID = ""
    var heartbeats = 0

    func send(_ message: Message) async throws {
        try await outbound.write(message)
    }

    /// Sends `bytes` for `taskID` as data chunks of at most `chunkSize` bytes.
    func sendData(_ bytes: Data, taskID: UInt64, chunkSize: Int) async throws {
        var offset = 0
        while offset < bytes.count {
            let end = min(offset + chunkSize, bytes.count)
            try await send(.data(DataChunk(taskID: taskID, bytes: ByteBuffer(bytes: bytes[offset..<end]))))
            offset = end
        }
    }

    /// The next message that is not a heartbeat; `nil` at the end of the connection.
    mutating func next() async throws -> Message? {
        while let message = try await iterator.next() {
            if case .heartbeat = message {
                heartbeats += 1
                continue
            }
            return message
        }
        return nil
    }

    mutating func nextHeartbeat() async throws -> Heartbeat {
        while let message = try await iterator.next() {
            if case .heartbeat(let heartbeat) = message { return heartbeat }
            Issue.record("expected a heartbeat, got \(message)")
        }
        throw TestFailure("the connection ended while waiting for a heartbeat")
    }

    mutating func expectHello() async throws -> Hello {
        try await send(.challenge(Challenge(coordinatorID: "fake", nonce: nonce)))
        guard case .hello(let hello)? = try await iterator.next() else { throw TestFailure("expected a hello") }
        #expect(hello.version == farmProtocolVersion)
        #expect(
            JoinProof.verify(
                hello.proof,
                JoinProof.node(token: NodeTests.token, nonce: nonce, nodeID: hello.nodeID, channelBinding: .plainTCP)))
        nodeID = hello.nodeID
        return hello
    }

    mutating func handshake() async throws {
        _ = try await expectHello()
        try await send(
            .welcome(
                Welcome(
                    coordinatorID: "fake", heartbeatSeconds: 1,
                    proof: JoinProof.coordinator(
                        token: NodeTests.token, nonce: nonce, nodeID: nodeID, channelBinding: .plainTCP))))
    }
}

func makeSegment(
    in dir: URL, seconds: Double = 2, size: String = "320x240", videoArgs: [String]? = nil
) throws -> (SourceIndex, EncoderConfig, Data) {
    let source = dir.appendingPathComponent("src.mp4").path
    if let videoArgs {
        try TestMedia.makeClip(at: source, seconds: seconds, size: size, audio: false, videoArgs: videoArgs)
    } else {
        try TestMedia.makeClip(at: source, seconds: seconds, size: size, audio: false)
    }
    let index = try SourceIndex.scan(path: source)
    let segmentPath = dir.appendingPathComponent("seg.pkt").path
    try SegmentSplitter.split(
        path: source, index: index,
        payloads: [
            SegmentPayload(
                index: 0, packets: index.payloadPackets(startKeyframe: 0, endKeyframe: index.keyframes.count),
                path: segmentPath)
        ],
        observer: { _ in nil }, written: { _, _ in })
    let config = try EncoderCatalog.configuration(
        for: index, codec: .h264, encoder: "libx264", crf: 30, preset: "ultrafast", threads: 1)
    return (index, config, try Data(contentsOf: URL(fileURLWithPath: segmentPath)))
}

/// The ``SegmentChecksum`` of `data`.
func checksum(_ data: Data) -> [UInt8] {
    var sum = SegmentChecksum()
    data.withUnsafeBytes { sum.update($0) }
    return sum.finalize()
}

/// The assign of a whole segment made by ``makeSegment(in:seconds:size:videoArgs:)``.
func segmentAssign(
    taskID: UInt64, jobID: String = "job-1", segmentIndex: UInt32 = 0, attempt: UInt32 = 0, config: EncoderConfig,
    index: SourceIndex, segment: Data
) -> Assign {
    Assign(
        taskID: taskID, jobID: jobID, segmentIndex: segmentIndex, attempt: attempt, settings: settings(config),
        startPTS: Int64.min, endPTS: nil, expectedFrames: UInt64(index.totalFrames), byteLength: UInt64(segment.count),
        checksum: checksum(segment))
}

func dummyAssign(taskID: UInt64, byteLength: UInt64) -> Assign {
    Assign(
        taskID: taskID, jobID: "job", segmentIndex: UInt32(taskID), attempt: 0,
        settings: EncodeSettings(
            codec: "h264", encoder: "libx264", crf: 30, preset: "ultrafast", pixelFormat: "yuv420p", width: 64,
            height: 64, timeBaseNum: 1, timeBaseDen: 25, frameRateNum: 25, frameRateDen: 1),
        startPTS: 0, endPTS: nil, expectedFrames: 1, byteLength: byteLength, checksum: [UInt8](repeating: 0, count: SegmentChecksum.byteCount))
}

func settings(_ config: EncoderConfig) -> EncodeSettings {
    EncodeSettings(
        codec: config.codec.rawValue, encoder: config.encoder, crf: Int32(config.crf), preset: config.preset,
        pixelFormat: config.pixelFormat, width: Int32(config.width), height: Int32(config.height),
        timeBaseNum: config.timeBase.num, timeBaseDen: config.timeBase.den, frameRateNum: config.frameRate.num,
        frameRateDen: config.frameRate.den, sampleAspectNum: config.sampleAspectRatio.num,
        sampleAspectDen: config.sampleAspectRatio.den, colorRange: Int32(bitPattern: config.colorRange),
        colorPrimaries: Int32(bitPattern: config.colorPrimaries), colorTransfer: Int32(bitPattern: config.colorTransfer),
        colorSpace: Int32(bitPattern: config.colorSpace), chromaLocation: Int32(bitPattern: config.chromaLocation),
        gopSize: Int32(config.gopSize), threads: Int32(config.threads), options: config.options)
}
