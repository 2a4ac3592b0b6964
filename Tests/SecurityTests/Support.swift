import Crypto
import FarmProtocol
import FarmTestSupport
import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import SwiftASN1
import Synchronization
import Testing
import X509

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// Certificates made by the tests themselves (a proxy's, or one handed to the coordinator as files).
enum TestCertificate {
    /// A self-signed P-256 certificate and key, both PEM, and the SHA-256 of the certificate's DER bytes in hex.
    /// With `loopback`, the certificate names 127.0.0.1 (a subject alternative name), so that a client that checks
    /// names, such as curl with `--cacert`, accepts it for https://127.0.0.1.
    static func make(_ name: String, loopback: Bool = false) throws -> (certificate: String, key: String, sha256: String) {
        let key = P256.Signing.PrivateKey()
        let subject = try DistinguishedName { CommonName(name) }
        let extensions = loopback
            ? try Certificate.Extensions { SubjectAlternativeNames([.ipAddress(ASN1OctetString(contentBytes: [127, 0, 0, 1]))]) }
            : Certificate.Extensions()
        let certificate = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: Certificate.PublicKey(key.publicKey),
            notValidBefore: Date().addingTimeInterval(-60), notValidAfter: Date().addingTimeInterval(86400),
            issuer: subject, subject: subject, signatureAlgorithm: .ecdsaWithSHA256, extensions: extensions,
            issuerPrivateKey: Certificate.PrivateKey(key))
        let pem = try certificate.serializeAsPEM()
        return (pem.pemString, key.pemRepresentation, hex(SHA256.hash(data: pem.derBytes)))
    }

    /// The SHA-256 of the first certificate in a PEM file, in hex.
    static func sha256(ofPEMFile path: String) throws -> String {
        let document = try PEMDocument(pemString: try String(contentsOfFile: path, encoding: .utf8))
        return hex(SHA256.hash(data: document.derBytes))
    }

    static func serverContext(certificate: String, key: String) throws -> NIOSSLContext {
        let configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: try NIOSSLCertificate.fromPEMBytes(Array(certificate.utf8)).map { .certificate($0) },
            privateKey: .privateKey(try NIOSSLPrivateKey(bytes: Array(key.utf8), format: .pem)))
        return try NIOSSLContext(configuration: configuration)
    }

    /// A client that, like a render node, does not check the server's certificate.
    static func clientContext() throws -> NIOSSLContext {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.certificateVerification = .none
        return try NIOSSLContext(configuration: configuration)
    }

    static func hex(_ digest: some Sequence<UInt8>) -> String {
        digest.map { String(format: "%02x", $0) }.joined()
    }
}

/// A node written in the test: it speaks the protocol with FarmProtocol's own codec, so it can do what a real node
/// would not (use a wrong binding, flood heartbeats).
enum FakeNode {
    typealias Connection = NIOAsyncChannel<Message, Message>

    static func connect(port: Int, tls: Bool) async throws -> Connection {
        let context = tls ? try TestCertificate.clientContext() : nil
        return try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: "127.0.0.1", port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let context {
                        try channel.pipeline.syncOperations.addHandler(
                            NIOSSLClientHandler(context: context, serverHostname: nil))
                    }
                    try FarmWire.addHandlers(to: channel.pipeline.syncOperations)
                    return try Connection(wrappingChannelSynchronously: channel)
                }
            }
    }

    /// The binding a real node computes: the hash of the certificate it received, or nothing over plain TCP.
    static func binding(of channel: any Channel, tls: Bool) async throws -> ChannelBinding {
        guard tls else { return .plainTCP }
        let certificate = try #require(try await channel.nioSSL_peerCertificate().get())
        return .tlsServerEndPoint(certificateDER: try certificate.toDERBytes())
    }

    /// What came back on one connection.
    struct Outcome {
        /// The binding the fake node computed (the certificate it saw).
        var binding: ChannelBinding
        /// The names of the messages after the hello, in order, until the connection ended or `stopAt` arrived.
        var messages: [String]
        /// Whether the coordinator ended the connection (as opposed to the fake node stopping at `stopAt`).
        var closedByPeer: Bool
    }

    /// Connects, answers the challenge with a proof bound to `binding` (default: the certificate it saw), then runs
    /// `afterWelcome` if welcomed, and records every message until the connection ends, `stopAt` arrives, or
    /// `timeout` passes.
    static func join(
        port: Int, tls: Bool, token: String, nodeID: String, binding override: ChannelBinding? = nil,
        slots: UInt16 = 1, stopAt: String? = nil, timeout: Duration = .seconds(20),
        afterWelcome: @escaping @Sendable (NIOAsyncChannelOutboundWriter<Message>) async throws -> Void = { _ in }
    ) async throws -> Outcome {
        let connection = try await connect(port: port, tls: tls)
        let channel = connection.channel
        let deadline = channel.eventLoop.scheduleTask(in: .nanoseconds(Int64(timeout.components.seconds) * 1_000_000_000)) {
            channel.close(promise: nil)
        }
        defer { deadline.cancel() }
        return try await connection.executeThenClose { inbound, outbound in
            var iterator = inbound.makeAsyncIterator()
            guard case .challenge(let challenge)? = try await iterator.next() else {
                throw TestFailure("expected a challenge")
            }
            let seen = try await binding(of: channel, tls: tls)
            let proof = JoinProof.node(
                token: token, nonce: challenge.nonce, nodeID: nodeID, channelBinding: override ?? seen)
            try await outbound.write(
                .hello(Hello(nodeID: nodeID, proof: proof, slots: slots, threads: 1, capabilitiesJSON: "{}")))
            var messages: [String] = []
            var flood: Task<Void, Never>?
            defer { flood?.cancel() }
            do {
                while let message = try await iterator.next() {
                    messages.append(message.name)
                    if case .welcome(let welcome) = message {
                        let expected = JoinProof.coordinator(
                            token: token, nonce: challenge.nonce, nodeID: nodeID, channelBinding: seen)
                        #expect(JoinProof.verify(welcome.proof, expected), "the welcome's proof is bound to \(seen)")
                        flood = Task { try? await afterWelcome(outbound) }
                    }
                    if message.name == stopAt { return Outcome(binding: seen, messages: messages, closedByPeer: false) }
                }
            } catch {
                // A reset or a TLS error ends the connection too; what matters is what arrived before it.
            }
            return Outcome(binding: seen, messages: messages, closedByPeer: true)
        }
    }
}

/// A man in the middle: it accepts nodes (TLS with a certificate of its own, or plain TCP), dials the coordinator
/// over TLS, and relays the decrypted bytes both ways unchanged.
///
/// It runs on NIO's event loops only (no Swift concurrency task), so tests that block a thread of the cooperative
/// pool while a `farm node` process talks through it cannot starve it.
struct Relay {
    let server: any Channel
    var port: Int { server.localAddress!.port! }

    static func start(targetPort: Int, nodeSide: NIOSSLContext?) async throws -> Relay {
        let upstreamContext = try TestCertificate.clientContext()
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { downstream in
                // The node's connection reads nothing until the coordinator's is up and the two are glued.
                ClientBootstrap(group: downstream.eventLoop)
                    .channelInitializer { upstream in
                        upstream.eventLoop.makeCompletedFuture {
                            try upstream.pipeline.syncOperations.addHandler(
                                NIOSSLClientHandler(context: upstreamContext, serverHostname: nil))
                        }
                    }
                    .connect(host: "127.0.0.1", port: targetPort)
                    .flatMapThrowing { upstream in
                        let (toUpstream, toDownstream) = GlueHandler.matchedPair()
                        if let nodeSide {
                            try downstream.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: nodeSide))
                        }
                        try downstream.pipeline.syncOperations.addHandler(toUpstream)
                        try upstream.pipeline.syncOperations.addHandler(toDownstream)
                    }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        return Relay(server: server)
    }

    func stop() async {
        try? await server.close()
    }
}

/// Forwards what one channel reads to its partner channel (on the same event loop), with backpressure, and closes
/// the partner when its own channel closes. After SwiftNIO's connect-proxy example.
final class GlueHandler: ChannelDuplexHandler {
    typealias InboundIn = NIOAny
    typealias OutboundIn = NIOAny
    typealias OutboundOut = NIOAny

    private var partner: GlueHandler?
    private var context: ChannelHandlerContext?
    private var pendingRead = false

    static func matchedPair() -> (GlueHandler, GlueHandler) {
        let first = GlueHandler()
        let second = GlueHandler()
        first.partner = second
        second.partner = first
        return (first, second)
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        self.partner = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) { partner?.context?.write(data, promise: nil) }

    func channelReadComplete(context: ChannelHandlerContext) { partner?.context?.flush() }

    func channelInactive(context: ChannelHandlerContext) { partner?.context?.close(promise: nil) }

    func errorCaught(context: ChannelHandlerContext, error: any Error) { partner?.context?.close(promise: nil) }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable, let partner, partner.pendingRead {
            partner.pendingRead = false
            partner.context?.read()
        }
        context.fireChannelWritabilityChanged()
    }

    func read(context: ChannelHandlerContext) {
        if partner?.context?.channel.isWritable ?? false {
            context.read()
        } else {
            pendingRead = true
        }
    }
}

/// Sends `bytes` inside a TLS connection (the frames a broken or hostile node might send) and reports whether the
/// peer then closed the connection within `timeout`.
func sendRawOverTLS(_ bytes: [UInt8], port: Int, timeout: Duration = .seconds(10)) async throws -> Bool {
    let context = try TestCertificate.clientContext()
    let connection = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .connect(host: "127.0.0.1", port: port) { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: context, serverHostname: nil))
                return try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
            }
        }
    let channel = connection.channel
    let timedOut = Flag()
    let deadline = channel.eventLoop.scheduleTask(in: .nanoseconds(Int64(timeout.components.seconds) * 1_000_000_000)) {
        timedOut.set()
        channel.close(promise: nil)
    }
    defer { deadline.cancel() }
    return try await connection.executeThenClose { inbound, outbound in
        try await outbound.write(ByteBuffer(bytes: bytes))
        do {
            for try await _ in inbound {}
        } catch {
            // A reset or a TLS alert is a close too.
        }
        return !timedOut.isSet
    }
}

final class Flag: Sendable {
    private let value = Mutex(false)
    func set() { value.withLock { $0 = true } }
    var isSet: Bool { value.withLock { $0 } }
}

/// One HTTP request; the status and the body.
func http(_ method: String, _ url: String, token: String? = nil) async throws -> (Int, String) {
    var request = URLRequest(url: URL(string: url)!)
    request.httpMethod = method
    if let token { request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
    let (data, response) = try await URLSession.shared.data(for: request)
    let status = (response as? HTTPURLResponse)?.statusCode ?? 0
    return (status, String(decoding: data, as: UTF8.self))
}

func readLog(_ path: String) -> String { (try? String(contentsOfFile: path, encoding: .utf8)) ?? "" }
