internal import FarmCoordinator
internal import FarmMedia
internal import FarmProtocol
internal import Foundation
internal import Logging
internal import NIOCore
internal import NIOPosix
internal import NIOSSL

/// Measures segment-byte throughput of the real wire path on loopback: a file read in 1 MiB chunks and sent by
/// ``DataSender`` as the coordinator and nodes send segments, framed by `FrameEncoder`, sent over TCP, parsed by
/// `FrameDecoder` and hashed (``SegmentChecksum``) on the receiving side, as a node does with a segment. Over TLS (a
/// certificate made in memory, as in the embedded farm) unless `tls` is false.
public enum WireBenchmark {
    public struct Result: Sendable, Codable {
        public var bytes: Int64
        public var seconds: Double
        public var gigabytesPerSecond: Double
        /// `tls` or `plain`.
        public var transport: String
    }

    public static func run(bytes: Int64, directory: String, tls: Bool = true) async throws -> Result {
        let serverTLS = tls ? try ephemeralNodeTLSContext(subject: "bench") : nil
        let clientTLS: NIOSSLContext? =
            tls
            ? try {
                var configuration = TLSConfiguration.makeClientConfiguration()
                configuration.certificateVerification = .none
                return try NIOSSLContext(configuration: configuration)
            }() : nil
        let path = "\(directory)/wire-bench-\(UUID().uuidString.prefix(8)).bin"
        defer { try? FileManager.default.removeItem(atPath: path) }
        // A file of the requested size (content does not matter for throughput).
        let chunk = Data(repeating: 0x5A, count: 1 << 20)
        FileManager.default.createFile(atPath: path, contents: nil)
        let writer = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        var written: Int64 = 0
        while written < bytes {
            let n = Int(min(Int64(chunk.count), bytes - written))
            writer.write(chunk.prefix(n))
            written += Int64(n)
        }
        try writer.close()

        let done = MultiThreadedEventLoopGroup.singleton.any().makePromise(of: Void.self)
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let serverTLS { try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: serverTLS)) }
                    try FarmWire.addHandlers(to: channel.pipeline.syncOperations)
                    try channel.pipeline.syncOperations.addHandler(Sink(expected: bytes, done: done))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        defer { server.close(promise: nil) }
        let client = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connect(host: "127.0.0.1", port: server.localAddress!.port!) { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let clientTLS {
                        try channel.pipeline.syncOperations.addHandler(
                            NIOSSLClientHandler(context: clientTLS, serverHostname: nil))
                    }
                    try FarmWire.addHandlers(to: channel.pipeline.syncOperations)
                    return try NIOAsyncChannel<Message, Message>(wrappingChannelSynchronously: channel)
                }
            }
        let start = ContinuousClock.now
        let channel = client.channel
        try await client.executeThenClose { _, _ in
            _ = try await DataSender.sendFile(atPath: path, taskID: 1, byteLength: bytes, over: channel)
            try await done.futureResult.get()
        }
        let seconds = (ContinuousClock.now - start).seconds
        return Result(
            bytes: bytes, seconds: seconds, gigabytesPerSecond: Double(bytes) / seconds / 1e9,
            transport: tls ? "tls" : "plain")
    }

    /// Counts and hashes data bytes; completes the promise when all arrived.
    private final class Sink: ChannelInboundHandler {
        typealias InboundIn = Message
        let expected: Int64
        let done: EventLoopPromise<Void>
        var received: Int64 = 0
        var checksum = SegmentChecksum()

        init(expected: Int64, done: EventLoopPromise<Void>) {
            self.expected = expected
            self.done = done
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            guard case .data(let chunk) = unwrapInboundIn(data) else { return }
            checksum.update(chunk.bytes)
            received += Int64(chunk.bytes.readableBytes)
            if received >= expected {
                _ = checksum.finalize()
                done.succeed()
            }
        }
    }
}
