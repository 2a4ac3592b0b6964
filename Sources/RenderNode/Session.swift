import FarmMedia
import FarmProtocol
import Logging
import NIOCore
import NIOPosix

/// How a connection ended, once its handshake had completed.
enum SessionEnd: Sendable, Equatable {
    /// The node drained: its tasks are reported and the coordinator was told it leaves.
    case drained
    /// The task running the node was cancelled.
    case cancelled
    /// The connection ended for this reason (the coordinator closed it, it failed, or the node closed it after
    /// a violation); the node may reconnect.
    case lost(String)
}

/// One connection to the coordinator: dial, handshake, then serve tasks on a ``Connection``.
enum Session {
    /// How long the coordinator has to complete the handshake (and the TCP connect to succeed).
    static let handshakeTimeout = TimeAmount.seconds(10)

    typealias Inbound = NIOAsyncChannelInboundStream<Message>.AsyncIterator

    /// Connects, handshakes and serves until the connection ends.
    ///
    /// - Returns: How the connection ended, once the coordinator's welcome was verified.
    /// - Throws: ``NodeError`` if the connection or the handshake fails.
    static func run(configuration: NodeConfiguration, logger: Logger, wakeups: AsyncStream<Void>) async throws
        -> SessionEnd
    {
        let address = "\(configuration.coordinatorHost):\(configuration.coordinatorPort)"
        let channel: NIOAsyncChannel<Message, Message>
        do {
            channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connectTimeout(Self.handshakeTimeout)
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                .connect(host: configuration.coordinatorHost, port: configuration.coordinatorPort) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try FarmWire.addHandlers(to: channel.pipeline.syncOperations)
                        // Half-closure: finishing the writer shuts down the output only after every queued frame
                        // is written, so a last `failure`, `reject` or `drain` reaches the coordinator.
                        return try NIOAsyncChannel<Message, Message>(
                            wrappingChannelSynchronously: channel,
                            configuration: .init(isOutboundHalfClosureEnabled: true)
                        )
                    }
                }
        } catch {
            throw NodeError(code: .connectFailed, message: "cannot connect to the coordinator at \(address)", cause: error)
        }
        logger.info("connected to the coordinator")

        do {
            return try await channel.executeThenClose { inbound, outbound in
                var iterator = inbound.makeAsyncIterator()
                let welcome = try await Self.handshake(
                    &iterator, outbound, channel: channel.channel, configuration: configuration, logger: logger)
                var logger = logger
                logger[metadataKey: "coordinatorID"] = "\(welcome.coordinatorID)"
                logger.info(
                    "joined the farm",
                    metadata: [
                        "heartbeatSeconds": "\(welcome.heartbeatSeconds)",
                        "slots": "\(configuration.effectiveSlots)",
                    ])
                let connection = Connection(
                    configuration: configuration, logger: logger, channel: channel.channel, outbound: outbound,
                    heartbeatSeconds: welcome.heartbeatSeconds)
                return await connection.serve(&iterator, wakeups: wakeups)
            }
        } catch let error as NodeError {
            throw error
        } catch {
            throw NodeError(code: .handshakeFailed, message: "the handshake with \(address) failed", cause: error)
        }
    }

    /// Waits for the challenge, answers it, and checks the coordinator's welcome.
    private static func handshake(
        _ iterator: inout Inbound,
        _ outbound: NIOAsyncChannelOutboundWriter<Message>,
        channel: any Channel,
        configuration: NodeConfiguration,
        logger: Logger
    ) async throws -> Welcome {
        let timedOut = CancellationFlag()
        let deadline = channel.eventLoop.scheduleTask(in: Self.handshakeTimeout) {
            timedOut.cancel()
            channel.close(promise: nil)
        }
        defer { deadline.cancel() }

        let challenge: Challenge
        switch try await Self.next(&iterator, awaiting: "challenge", timedOut: timedOut) {
        case .challenge(let received):
            challenge = received
        case .reject(let reject):
            throw NodeError(code: .rejected, message: "the coordinator rejected the node: \(reject.reason)")
        case let other:
            let reason = "expected a challenge, got \(other.name)"
            try? await outbound.write(.reject(Reject(reason: reason)))
            throw NodeError(code: .protocolViolation, message: reason)
        }
        guard challenge.version == farmProtocolVersion else {
            try? await outbound.write(
                .reject(Reject(reason: "the node speaks protocol version \(farmProtocolVersion), not \(challenge.version)")))
            throw NodeError(
                code: .handshakeFailed,
                message: "the coordinator speaks protocol version \(challenge.version), this node \(farmProtocolVersion)")
        }

        let nodeID = configuration.nodeID
        try await outbound.write(
            .hello(
                Hello(
                    nodeID: nodeID,
                    proof: JoinProof.node(token: configuration.joinToken, nonce: challenge.nonce, nodeID: nodeID),
                    slots: UInt16(configuration.effectiveSlots),
                    threads: UInt16(clamping: max(0, configuration.threads)),
                    capabilitiesJSON: configuration.capabilitiesJSON
                )))

        switch try await Self.next(&iterator, awaiting: "welcome", timedOut: timedOut) {
        case .welcome(let welcome):
            let expected = JoinProof.coordinator(token: configuration.joinToken, nonce: challenge.nonce, nodeID: nodeID)
            guard JoinProof.verify(welcome.proof, expected) else {
                logger.error("coordinator failed to prove the join token; closing")
                try? await outbound.write(.reject(Reject(reason: "coordinator failed to prove the join token")))
                throw NodeError(
                    code: .authenticationFailed,
                    message: "coordinator failed to prove the join token (coordinator \(challenge.coordinatorID))")
            }
            return welcome
        case .reject(let reject):
            throw NodeError(code: .rejected, message: "the coordinator rejected node \(nodeID): \(reject.reason)")
        case let other:
            let reason = "expected a welcome, got \(other.name)"
            try? await outbound.write(.reject(Reject(reason: reason)))
            throw NodeError(code: .protocolViolation, message: reason)
        }
    }

    private static func next(_ iterator: inout Inbound, awaiting what: String, timedOut: CancellationFlag)
        async throws -> Message
    {
        let message: Message?
        do {
            message = try await iterator.next()
        } catch {
            if timedOut.isCancelled {
                throw NodeError(code: .handshakeFailed, message: "no \(what) from the coordinator within 10 s")
            }
            let code: NodeError.Code = error is ProtocolError ? .protocolViolation : .handshakeFailed
            throw NodeError(code: code, message: "the connection failed while waiting for the \(what)", cause: error)
        }
        guard let message else {
            if timedOut.isCancelled {
                throw NodeError(code: .handshakeFailed, message: "no \(what) from the coordinator within 10 s")
            }
            throw NodeError(code: .handshakeFailed, message: "the coordinator closed the connection before its \(what)")
        }
        return message
    }
}
