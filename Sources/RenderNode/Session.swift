import FarmMedia
import FarmProtocol
import Logging
import NIOCore
import NIOPosix
import NIOSSL

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
        let tls = configuration.insecurePlainTCP ? nil : try Self.tlsContext()
        let channel: NIOAsyncChannel<Message, Message>
        do {
            channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connectTimeout(Self.handshakeTimeout)
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                .connect(host: configuration.coordinatorHost, port: configuration.coordinatorPort) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        if let tls {
                            // No host name: the certificate is not checked against one (see `tlsContext()`).
                            try channel.pipeline.syncOperations.addHandler(
                                NIOSSLClientHandler(context: tls, serverHostname: nil))
                        }
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
        logger.info("connected to the coordinator", metadata: ["transport": "\(tls == nil ? "plain TCP" : "TLS")"])

        do {
            return try await channel.executeThenClose { inbound, outbound in
                var iterator = inbound.makeAsyncIterator()
                let (welcome, binding) = try await Self.handshake(
                    &iterator, outbound, channel: channel.channel, configuration: configuration, logger: logger)
                var logger = logger
                logger[metadataKey: "coordinatorID"] = "\(welcome.coordinatorID)"
                logger.info(
                    "joined the farm",
                    metadata: [
                        "heartbeatSeconds": "\(welcome.heartbeatSeconds)",
                        "slots": "\(configuration.effectiveSlots)",
                        "certificateSHA256": "\(binding)",
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

    /// The node's TLS settings: TLS 1.2 or later, and no check of the coordinator's certificate chain or name.
    ///
    /// That check is not what keeps a man in the middle out: both join proofs are bound to the hash of the certificate
    /// the node received (``ChannelBinding``), which only matches the coordinator's own when nobody terminated TLS
    /// in between. So a node needs the join token and nothing else, and a coordinator can use a self-signed
    /// certificate.
    static func tlsContext() throws -> NIOSSLContext {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.certificateVerification = .none
        configuration.minimumTLSVersion = .tlsv12
        do {
            return try NIOSSLContext(configuration: configuration)
        } catch {
            throw NodeError(code: .connectFailed, message: "cannot set up TLS", cause: error)
        }
    }

    /// The binding of this connection: the hash of the certificate the coordinator presented, or nothing over plain
    /// TCP. Called once a message arrived, so the TLS handshake is complete.
    private static func channelBinding(_ channel: any Channel, configuration: NodeConfiguration) async throws
        -> ChannelBinding
    {
        guard !configuration.insecurePlainTCP else { return .plainTCP }
        let certificate: NIOSSLCertificate?
        do {
            certificate = try await channel.nioSSL_peerCertificate().get()
        } catch {
            throw NodeError(code: .handshakeFailed, message: "cannot read the coordinator's TLS certificate", cause: error)
        }
        guard let certificate, let der = try? certificate.toDERBytes() else {
            throw NodeError(code: .handshakeFailed, message: "the coordinator presented no TLS certificate")
        }
        if let pin = configuration.coordinatorKeySHA256 {
            guard let spki = try? certificate.extractPublicKey().toSPKIBytes() else {
                throw NodeError(code: .handshakeFailed, message: "cannot read the public key of the coordinator's certificate")
            }
            let seen = CoordinatorKeyPin.sha256Hex(spki: spki)
            guard seen == pin else {
                throw NodeError(
                    code: .authenticationFailed,
                    message: """
                        the coordinator at \(configuration.coordinatorHost):\(configuration.coordinatorPort) presented the key \
                        \(seen), not the pinned \(pin) (--coordinator-key-sha256): a different coordinator, or a proxy in between
                        """)
            }
        }
        return .tlsServerEndPoint(certificateDER: der)
    }

    /// Waits for the challenge, answers it, and checks the coordinator's welcome.
    ///
    /// - Returns: The welcome, and the channel binding both proofs were bound to.
    private static func handshake(
        _ iterator: inout Inbound,
        _ outbound: NIOAsyncChannelOutboundWriter<Message>,
        channel: any Channel,
        configuration: NodeConfiguration,
        logger: Logger
    ) async throws -> (Welcome, ChannelBinding) {
        let timedOut = CancellationFlag()
        let deadline = channel.eventLoop.scheduleTask(in: Self.handshakeTimeout) {
            timedOut.cancel()
            channel.close(promise: nil)
        }
        defer { deadline.cancel() }

        let challenge: Challenge
        switch try await Self.next(&iterator, awaiting: "challenge", timedOut: timedOut, configuration: configuration) {
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
        let binding = try await Self.channelBinding(channel, configuration: configuration)
        // An enrolled node proves its own credential; a new one proves the join token and is enrolled.
        let credential = NodeCredential.load(workDirectory: configuration.workDirectory, nodeID: nodeID)
        let secret = credential.map(JoinProof.credentialSecret) ?? configuration.joinToken
        let what = credential == nil ? "the join token" : "this node's credential"
        try await outbound.write(
            .hello(
                Hello(
                    nodeID: nodeID,
                    proof: JoinProof.node(token: secret, nonce: challenge.nonce, nodeID: nodeID, channelBinding: binding),
                    slots: UInt16(configuration.effectiveSlots),
                    threads: UInt16(clamping: max(0, configuration.threads)),
                    capabilitiesJSON: configuration.capabilitiesJSON,
                    secret: credential == nil ? .joinToken : .credential
                )))

        switch try await Self.next(&iterator, awaiting: "welcome", timedOut: timedOut, configuration: configuration) {
        case .welcome(let welcome):
            let expected = JoinProof.coordinator(token: secret, nonce: challenge.nonce, nodeID: nodeID, channelBinding: binding)
            guard JoinProof.verify(welcome.proof, expected) else {
                logger.error(
                    "coordinator failed to prove \(what); closing", metadata: ["certificateSHA256": "\(binding)"])
                try? await outbound.write(.reject(Reject(reason: "coordinator failed to prove \(what)")))
                throw NodeError(
                    code: .authenticationFailed,
                    message: "coordinator failed to prove \(what) (coordinator \(challenge.coordinatorID))")
            }
            if credential == nil, !welcome.credential.isEmpty {
                try NodeCredential.save(welcome.credential, workDirectory: configuration.workDirectory, nodeID: nodeID)
                logger.notice(
                    "enrolled: this node joins with its own credential from now on",
                    metadata: ["file": "\(NodeCredential.path(workDirectory: configuration.workDirectory))"])
            }
            return (welcome, binding)
        case .reject(let reject):
            let hint = credential == nil ? "" : " (it joined with its credential in \(NodeCredential.path(workDirectory: configuration.workDirectory)))"
            throw NodeError(code: .rejected, message: "the coordinator rejected node \(nodeID): \(reject.reason)\(hint)")
        case let other:
            let reason = "expected a welcome, got \(other.name)"
            try? await outbound.write(.reject(Reject(reason: reason)))
            throw NodeError(code: .protocolViolation, message: reason)
        }
    }

    private static func next(
        _ iterator: inout Inbound, awaiting what: String, timedOut: CancellationFlag, configuration: NodeConfiguration
    ) async throws -> Message {
        // A node and a coordinator that disagree on TLS fail in these two ways; say what to check.
        let timeout =
            "no \(what) from the coordinator within 10 s"
            + (configuration.insecurePlainTCP
                ? " (this node dials plain TCP, --insecure-plain-tcp; does the coordinator use TLS, its default?)" : "")
        let message: Message?
        do {
            message = try await iterator.next()
        } catch {
            if timedOut.isCancelled {
                throw NodeError(code: .handshakeFailed, message: timeout)
            }
            if error is NIOSSLError || error is BoringSSLError {
                throw NodeError(
                    code: .handshakeFailed,
                    message: "the TLS handshake with the coordinator failed (a coordinator started with "
                        + "--insecure-plain-tcp needs the node to pass it too)", cause: error)
            }
            let code: NodeError.Code = error is ProtocolError ? .protocolViolation : .handshakeFailed
            throw NodeError(code: code, message: "the connection failed while waiting for the \(what)", cause: error)
        }
        guard let message else {
            if timedOut.isCancelled {
                throw NodeError(code: .handshakeFailed, message: timeout)
            }
            throw NodeError(code: .handshakeFailed, message: "the coordinator closed the connection before its \(what)")
        }
        return message
    }
}
