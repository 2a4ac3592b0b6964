internal import FarmMedia
internal import FarmProtocol
internal import Logging
internal import NIOCore
internal import NIOFileSystem
internal import NIOPosix
internal import NIOSSL
internal import Synchronization
#if canImport(Glibc)
internal import Glibc
#endif

/// The coordinator's listening socket for nodes: TLS (``NodeChannelSecurity``) unless plain TCP was asked for.
public struct NodeListener: Sendable {
    let channel: NIOAsyncChannel<NIOAsyncChannel<Message, Message>, Never>
    /// The port bound (the one asked for, or the one the system chose for port 0).
    public let port: Int
    /// What every connection's join proofs are bound to: the certificate's `tls-server-end-point`, or nothing.
    let channelBinding: ChannelBinding

    static func bind(configuration: CoordinatorConfiguration) async throws -> NodeListener {
        let logger = configuration.logger
        let identity = try NodeTLSIdentity.make(
            configuration.nodeSecurity, dataDirectory: configuration.dataDirectory,
            subject: configuration.coordinatorID, logger: logger)
        let tls = identity?.context
        let gate = HandshakeGate(
            perAddress: configuration.maxUnauthenticatedPerAddress, total: configuration.maxUnauthenticated)
        let bytesPerSecond = configuration.maxNodeBytesPerSecond
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.socketOption(.so_keepalive), value: 1)
            .bind(host: configuration.nodeListenHost, port: configuration.nodeListenPort) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try NodeSocketOptions.apply(to: channel, userTimeoutSeconds: configuration.nodeSocketUserTimeoutSeconds)
                    if let tls {
                        try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls))
                    }
                    let guardHandler = NodeConnectionGuard(
                        gate: gate, address: channel.remoteAddress?.ipAddress ?? "unknown",
                        bytesPerSecond: bytesPerSecond, logger: logger)
                    try channel.pipeline.syncOperations.addHandler(guardHandler)
                    try FarmWire.addHandlers(to: channel.pipeline.syncOperations, limit: guardHandler.frameLimit)
                    return try NIOAsyncChannel<Message, Message>(wrappingChannelSynchronously: channel)
                }
            }
        if let identity {
            logger.info(
                "node port uses TLS",
                metadata: [
                    "certificateSHA256": "\(identity.binding)", "keySHA256": "\(identity.pin)",
                    "certificate": "\(identity.origin)",
                ])
        } else {
            logger.warning(
                """
                node port uses plain TCP (--insecure-plain-tcp): segments cross the network unencrypted and join \
                proofs are bound to no certificate
                """)
        }
        return NodeListener(
            channel: server, port: server.channel.localAddress?.port ?? configuration.nodeListenPort,
            channelBinding: identity?.binding ?? .plainTCP)
    }
}

/// A token bucket over the messages one node sends: `rate` a second on average, `2 × rate` in a burst.
struct MessageRateLimit {
    let rate: Double
    let burst: Double
    private var tokens: Double
    private var last: ContinuousClock.Instant

    init(perSecond rate: Int, now: ContinuousClock.Instant = .now) {
        self.rate = Double(rate)
        self.burst = Double(rate) * 2
        self.tokens = self.burst
        self.last = now
    }

    /// Takes one message; `false` when the node has sent more than it may.
    mutating func admit(now: ContinuousClock.Instant = .now) -> Bool {
        tokens = min(burst, tokens + (now - last).seconds * rate)
        last = now
        guard tokens >= 1 else { return false }
        tokens -= 1
        return true
    }
}

/// One node's connection: handshake, then a reader (results, failures, heartbeats) and a writer
/// (segments, cancels, drains) until either side ends it. A violation closes this connection only.
struct NodeSession: Sendable {
    let coordinator: Coordinator
    let connection: NIOAsyncChannel<Message, Message>
    /// The binding of this connection's join proofs (the listener's certificate, or nothing over plain TCP).
    let channelBinding: ChannelBinding

    /// A result being received: its bytes go to a file while their checksum is computed.
    struct Receiver {
        let result: TaskResult
        let path: String?
        let handle: WriteFileHandle?
        var received: Int64 = 0
        var checksum = SegmentChecksum()
    }

    func run() async {
        let address = connection.channel.remoteAddress?.description ?? "unknown"
        let logger = {
            var logger = coordinator.logger
            logger[metadataKey: "peer"] = "\(address)"
            return logger
        }()
        // The coordinator's items pass through a relay: a close is carried out at once on the channel (its
        // event loop drops whatever is queued), never queued behind segment writes a stuck node does not read.
        let (fromCoordinator, continuation) = AsyncStream<Outgoing>.makeStream()
        let (outgoing, toWriter) = AsyncStream<Outgoing>.makeStream()
        let session = SessionID()
        // A peer that does not complete the handshake in time is dropped.
        let channel = connection.channel
        let deadline = channel.eventLoop.scheduleTask(in: .seconds(10)) {
            if session.value == nil { channel.close(promise: nil) }
        }
        var reason = "connection closed"
        do {
            try await connection.executeThenClose { inbound, outbound in
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask {
                        try await readLoop(
                            inbound, outbound, address: address, continuation: continuation, session: session,
                            logger: logger)
                    }
                    group.addTask { try await Self.relay(fromCoordinator, to: toWriter, channel: channel, logger: logger) }
                    group.addTask { try await writeLoop(outgoing, outbound, channel: channel, logger: logger) }
                    try await group.next()
                    group.cancelAll()
                }
            }
        } catch {
            reason = "\(error)"
            logger.warning("node connection closed", metadata: ["reason": "\(error)"])
        }
        deadline.cancel()
        continuation.finish()
        toWriter.finish()
        if let id = session.value {
            await coordinator.unregister(id, reason: reason)
        }
    }

    private func readLoop(
        _ inbound: NIOAsyncChannelInboundStream<Message>, _ outbound: NIOAsyncChannelOutboundWriter<Message>,
        address: String, continuation: AsyncStream<Outgoing>.Continuation, session sessionBox: SessionID,
        logger: Logger
    ) async throws {
        let configuration = coordinator.configuration
        var iterator = inbound.makeAsyncIterator()
        let nonce = JoinProof.makeNonce()
        try await outbound.write(.challenge(Challenge(coordinatorID: configuration.coordinatorID, nonce: nonce)))
        guard case .hello(let hello)? = try await iterator.next() else {
            throw ProtocolError(code: .unexpectedMessage, message: "expected hello as the first message")
        }
        guard hello.version == farmProtocolVersion else {
            try? await outbound.write(.reject(Reject(reason: "protocol version \(hello.version) is not \(farmProtocolVersion)")))
            throw ProtocolError(
                code: .versionMismatch, message: "node \(hello.nodeID) speaks version \(hello.version), not \(farmProtocolVersion)")
        }
        // An enrolled node proves its credential; any other proves the join token, and its id must be free.
        let host = connection.channel.remoteAddress?.ipAddress
        let enrolled = await coordinator.credential(of: hello.nodeID)
        let secret: String
        switch hello.secret {
        case .credential:
            guard let enrolled else {
                let reason = "node \(hello.nodeID) is not enrolled here (its credential is from another coordinator, or its enrolment was lost); remove the node's credential file to enrol again with the join token"
                try? await outbound.write(.reject(Reject(reason: reason)))
                throw ProtocolError(code: .authenticationFailed, message: reason)
            }
            secret = JoinProof.credentialSecret(enrolled)
        case .joinToken:
            secret = configuration.joinToken
        }
        let expected = JoinProof.node(token: secret, nonce: nonce, nodeID: hello.nodeID, channelBinding: channelBinding)
        guard JoinProof.verify(hello.proof, expected) else {
            let what = hello.secret == .credential ? "its credential" : "the join token"
            try? await outbound.write(.reject(Reject(reason: "\(hello.secret == .credential ? "credential" : "join token") proof does not match")))
            throw ProtocolError(
                code: .authenticationFailed,
                message: "node \(hello.nodeID) failed to prove \(what)"
                    + (channelBinding.isPlainTCP ? "" : " over this TLS channel (a wrong secret, or a proxy in between)"))
        }
        // The token decides who may join; a ban (the node's id and so its credential, or a public address it was banned
        // from) overrides it.
        if let banned = await coordinator.banReason(nodeID: hello.nodeID, host: host) {
            try? await outbound.write(.reject(Reject(reason: banned)))
            throw ProtocolError(code: .authenticationFailed, message: banned)
        }
        var credential: [UInt8] = []
        if hello.secret == .joinToken {
            // The id is bound to whoever enrolled it first: the join token does not let another node take it.
            guard enrolled == nil else {
                let reason = "node \(hello.nodeID) is enrolled: it joins with its credential, not the join token"
                try? await outbound.write(.reject(Reject(reason: reason)))
                throw ProtocolError(code: .authenticationFailed, message: reason)
            }
            do {
                credential = try await coordinator.enrol(hello.nodeID, host: host)
            } catch {
                try? await outbound.write(.reject(Reject(reason: "\(error)")))
                throw ProtocolError(code: .authenticationFailed, message: "node \(hello.nodeID) not enrolled: \(error)")
            }
        }
        // The node is authenticated: its frame limit is raised before it hears so, or a node that starts sending
        // full-size frames the moment the welcome arrives could race the raise.
        await NodeConnectionGuard.authenticated(connection.channel)
        try await outbound.write(
            .welcome(
                Welcome(
                    coordinatorID: configuration.coordinatorID, heartbeatSeconds: UInt32(configuration.heartbeatSeconds),
                    proof: JoinProof.coordinator(
                        token: secret, nonce: nonce, nodeID: hello.nodeID, channelBinding: channelBinding),
                    credential: credential)))
        let session = await coordinator.register(hello, address: address, outgoing: continuation)
        sessionBox.value = session

        var receivers: [UInt64: Receiver] = [:]
        do {
            try await NodeMessageHandler(coordinator: coordinator, channel: connection.channel).serve(
                &iterator, &receivers, session: session, nodeID: hello.nodeID, logger: logger)
        } catch {
            await NodeMessageHandler.abandon(receivers)
            throw error
        }
        await NodeMessageHandler.abandon(receivers)
    }
}

/// A node session's messages after the handshake: results and their bytes, failures, heartbeats, drains.
/// Apart from the socket (``NodeSession``), so that it can be driven without one: the fuzz target
/// (Fuzz/SessionFuzz.swift) feeds it hostile message sequences against a real ``Coordinator``.
struct NodeMessageHandler: Sendable {
    typealias Receiver = NodeSession.Receiver
    let coordinator: Coordinator
    /// Where a rate-limit reject is sent, best effort; nil when driven without a socket.
    let channel: (any Channel)?

    /// Closes the files of transfers that will not complete and removes them. A file handle must be
    /// closed even when the task is cancelled, so the close runs in a task of its own that is awaited.
    static func abandon(_ receivers: [UInt64: Receiver]) async {
        for receiver in receivers.values {
            if let handle = receiver.handle { await closeQuietly(handle) }
            if let path = receiver.path { unlinkQuietly(path) }
        }
    }

    private static func closeQuietly(_ handle: WriteFileHandle) async -> Bool {
        await Task.detached { (try? await handle.close()) != nil }.value
    }

    func serve<Inbound: AsyncIteratorProtocol>(
        _ iterator: inout Inbound, _ receivers: inout [UInt64: Receiver], session: UInt64, nodeID: String,
        logger: Logger
    ) async throws where Inbound.Element == Message {
        let perSecond = coordinator.configuration.maxNodeMessagesPerSecond
        var limit = MessageRateLimit(perSecond: perSecond)
        // Verifications run as children of this group: closing the connection cancels them. A task whose result is
        // being checked takes no other result until the check ends: a second one would be written over the file the
        // check reads, and its bytes would be accepted unchecked.
        let checking = CheckingTasks()
        try await withThrowingDiscardingTaskGroup { verifications in
            while let message = try await iterator.next() {
                guard limit.admit() else {
                    let reason = "more than \(perSecond) messages a second (\(2 * perSecond) in a burst)"
                    logger.warning(
                        "node exceeded the message rate limit; disconnecting it",
                        metadata: ["node": "\(nodeID)", "limit": "\(reason)"])
                    // Best effort: the node may not be reading, so this is not awaited; closing follows.
                    channel?.writeAndFlush(Message.reject(Reject(reason: "message rate: \(reason)")), promise: nil)
                    throw ProtocolError(code: .rateLimited, message: "node \(nodeID) sent \(reason)")
                }
                switch message {
                case .result(let result):
                    guard receivers[result.taskID] == nil, !checking.contains(result.taskID) else {
                        throw ProtocolError(code: .unexpectedMessage, message: "second result for task \(result.taskID)")
                    }
                    // A node holds at most its slots' tasks (plus ones cancelled while it sent them): more
                    // results at once are a node piling up receivers.
                    guard receivers.count < coordinator.configuration.maxNodeSlots * 2 else {
                        throw ProtocolError(
                            code: .unexpectedMessage, message: "a result while \(receivers.count) are in flight already")
                    }
                    // Checked before anything is allocated: a result must stay within the bytes a
                    // segment may have (else the connection closes) and have the segment's frames (else
                    // it fails the task and its bytes are read and dropped). A result of a task the node
                    // no longer holds (cancelled while it was sent) is read and dropped too.
                    var path: String? = nil
                    if let expected = await coordinator.expectations(session, taskID: result.taskID) {
                        if result.byteLength > UInt64(max(expected.maxBytes, 0)) {
                            let reason = "result of \(result.byteLength) bytes exceeds the \(expected.maxBytes) bytes a segment may have"
                            await coordinator.taskFailed(session, taskID: result.taskID, reason: reason, retryable: true, kind: .node)
                            throw ProtocolError(code: .unexpectedMessage, message: "task \(result.taskID): \(reason)")
                        }
                        if result.frames != UInt64(max(expected.frames, 0)) {
                            await coordinator.taskFailed(
                                session, taskID: result.taskID,
                                reason: "node encoded \(result.frames) frames, the segment has \(expected.frames)", retryable: true)
                        } else {
                            path = await coordinator.resultPath(session, taskID: result.taskID)
                        }
                    }
                    var handle: WriteFileHandle? = nil
                    if let path {
                        handle = try await FileSystem.shared.openFile(
                            forWritingAt: FilePath(path), options: .newFile(replaceExisting: true))
                    }
                    receivers[result.taskID] = Receiver(result: result, path: path, handle: handle)
                    if result.byteLength == 0 { try await complete(result.taskID, &receivers, session: session, checking: checking, verifications: &verifications) }
                case .data(let chunk):
                    guard var receiver = receivers[chunk.taskID] else {
                        throw ProtocolError(code: .unexpectedMessage, message: "data for task \(chunk.taskID) without a result")
                    }
                    let count = Int64(chunk.bytes.readableBytes)
                    guard UInt64(receiver.received + count) <= receiver.result.byteLength else {
                        throw ProtocolError(
                            code: .unexpectedMessage,
                            message: "task \(chunk.taskID) sent more than its announced \(receiver.result.byteLength) bytes")
                    }
                    if let handle = receiver.handle {
                        try await handle.write(contentsOf: chunk.bytes, toAbsoluteOffset: receiver.received)
                        receiver.checksum.update(chunk.bytes)
                    }
                    receiver.received += count
                    receivers[chunk.taskID] = receiver
                    if UInt64(receiver.received) == receiver.result.byteLength {
                        try await complete(chunk.taskID, &receivers, session: session, checking: checking, verifications: &verifications)
                    }
                case .failure(let failure):
                    await coordinator.taskFailed(
                        session, taskID: failure.taskID, reason: failure.reason, retryable: failure.retryable, kind: failure.kind)
                case .heartbeat(let heartbeat):
                    await coordinator.heartbeat(session, heartbeat)
                case .drain:
                    await coordinator.nodeDraining(session)
                    logger.info("node is draining", metadata: ["node": "\(nodeID)"])
                default:
                    throw ProtocolError(code: .unexpectedMessage, message: "unexpected \(message.name) from node \(nodeID)")
                }
            }
        }
    }

    /// The last byte of a result arrived: check it end to end before the coordinator trusts it.
    private func complete(
        _ taskID: UInt64, _ receivers: inout [UInt64: Receiver], session: UInt64, checking: CheckingTasks,
        verifications: inout ThrowingDiscardingTaskGroup<any Error>
    ) async throws {
        guard let receiver = receivers.removeValue(forKey: taskID) else { return }
        if let handle = receiver.handle, await !Self.closeQuietly(handle) {
            if let path = receiver.path { unlinkQuietly(path) }
            await coordinator.taskFailed(session, taskID: taskID, reason: "cannot close the result file", retryable: true, kind: .node)
            return
        }
        guard let path = receiver.path else { return }
        let result = receiver.result
        guard JoinProof.verify(receiver.checksum.finalize(), result.checksum) else {
            unlinkQuietly(path)
            await coordinator.taskFailed(session, taskID: taskID, reason: "result checksum mismatch", retryable: true, kind: .node)
            throw ProtocolError(code: .badChecksum, message: "result of task \(taskID) failed its checksum")
        }
        guard let expected = await coordinator.expectations(session, taskID: taskID) else {
            unlinkQuietly(path)
            return
        }
        let coordinator = self.coordinator
        let host = channel?.remoteAddress?.ipAddress
        // The check runs beside the read loop (heartbeats and other results keep arriving) and waits for a thread
        // of the coordinator's CPU budget, shared with every other node's checks.
        checking.insert(taskID)
        verifications.addTask {
            defer { checking.remove(taskID) }
            await Self.verify(result, path: path, expected: expected, session: session, host: host, coordinator: coordinator)
        }
    }

    /// Checks a whole result as if its node were hostile, then reports it: done, refused (evidence against the
    /// node), or failed.
    private static func verify(
        _ result: TaskResult, path: String, expected: ResultExpectations, session: UInt64, host: String?,
        coordinator: Coordinator
    ) async {
        let taskID = result.taskID
        do {
            // The node is not trusted: its segment is decoded in full and compared with the source.
            let header = try await coordinator.cpuBudget.run {
                try await Offload.run("check result \(taskID)") { cancel in
                    if let check = expected.check {
                        _ = try SegmentVerifier.verify(resultPath: path, check) { cancel.isCancelled }
                    }
                    return try PacketFileReader(path: path).header
                }
            }
            await coordinator.taskCompleted(session, result, path: path, parameters: header.parameters)
        } catch let error as MediaError where error.code == .cancelled {
            // The connection closed while its result waited or was checked: the node's leaving requeues the task.
            unlinkQuietly(path)
        } catch let error as MediaError where error.code == .verificationDoubtful {
            // Too close to the threshold to hold against the node: another node encodes the segment again (the
            // third encode that settles it), and neither quarantine nor ban follows.
            unlinkQuietly(path)
            await coordinator.taskFailed(session, taskID: taskID, reason: error.message, retryable: true, kind: .segment)
        } catch let error as MediaError where error.code == .verificationFailed {
            // Evidence against the node: quarantined at once, banned after a second.
            unlinkQuietly(path)
            await coordinator.resultRefused(session, taskID: taskID, evidence: error.message, host: host)
        } catch {
            unlinkQuietly(path)
            await coordinator.taskFailed(session, taskID: taskID, reason: "\(error)", retryable: true, kind: .segment)
        }
    }
}

extension NodeSession {
    private func writeLoop(
        _ items: AsyncStream<Outgoing>, _ outbound: NIOAsyncChannelOutboundWriter<Message>, channel: any Channel,
        logger: Logger
    ) async throws {
        for await item in items {
            switch item {
            case .message(let message):
                try await outbound.write(message)
            case .segment(let assign, let path):
                try await outbound.write(.assign(assign))
                // Paced: at most a few chunks of the segment in memory, however long it is.
                let sent = try await DataSender.sendFile(
                    atPath: path, taskID: assign.taskID, byteLength: Int64(assign.byteLength), over: channel)
                guard sent == Int64(assign.byteLength) else {
                    throw ProtocolError(
                        code: .unexpectedMessage,
                        message: "segment \(path) holds \(sent ?? 0) bytes, \(assign.byteLength) were announced")
                }
            case .close:
                break  // carried out by the relay
            }
        }
    }

    /// Forwards the coordinator's items to the writer, but closes the channel itself on a `.close`: a best-effort
    /// reject, then `close` on the channel's event loop, which fails the writes still queued.
    private static func relay(
        _ items: AsyncStream<Outgoing>, to writer: AsyncStream<Outgoing>.Continuation, channel: any Channel,
        logger: Logger
    ) async throws {
        defer { writer.finish() }
        for await item in items {
            guard case .close(let reason) = item else {
                writer.yield(item)
                continue
            }
            channel.writeAndFlush(Message.reject(Reject(reason: reason)), promise: nil)
            channel.close(promise: nil)
            throw ProtocolError(code: .unexpectedMessage, message: "closed by the coordinator: \(reason)")
        }
    }
}

/// Socket options of node connections: keepalive probes after 30 s of silence, and `TCP_USER_TIMEOUT`, so that
/// the kernel drops a connection whose bytes stay unacknowledged (a zero receive window included).
enum NodeSocketOptions {
    static func apply(to channel: any Channel, userTimeoutSeconds: Int) throws {
        #if os(Linux)
        guard let options = channel.syncOptions else { return }
        let milliseconds = SocketOptionValue(clamping: max(userTimeoutSeconds, 1) * 1000)
        for (name, value) in [
            (TCP_USER_TIMEOUT, milliseconds), (TCP_KEEPIDLE, 30), (TCP_KEEPINTVL, 10), (TCP_KEEPCNT, 3),
        ] {
            try options.setOption(.tcpOption(NIOBSDSocket.Option(rawValue: CInt(name))), value: value)
        }
        #endif
    }
}

/// The session number once the handshake succeeded; read by the handshake deadline on an event loop.
/// The tasks of one connection whose results are being checked, shared by its read loop and the checks.
final class CheckingTasks: Sendable {
    private let tasks = Mutex<Set<UInt64>>([])
    func insert(_ id: UInt64) { _ = tasks.withLock { $0.insert(id) } }
    func remove(_ id: UInt64) { _ = tasks.withLock { $0.remove(id) } }
    func contains(_ id: UInt64) -> Bool { tasks.withLock { $0.contains(id) } }
}

final class SessionID: Sendable {
    private let storage = Mutex<UInt64?>(nil)
    var value: UInt64? {
        get { storage.withLock { $0 } }
        set { storage.withLock { $0 = newValue } }
    }
}

func unlinkQuietly(_ path: String) {
    _ = path.withCString { unlink($0) }
}
