import FarmProtocol
import Foundation
import NIOCore
import NIOPosix
import Synchronization
import Testing

/// ``DataSender`` over real TCP on loopback: what it holds in memory when the peer stops reading, and that every
/// byte arrives in order once the peer reads again.
@Suite struct DataSenderTests {
    /// Counts and hashes the data bytes that arrive; completes when `expected` bytes did.
    private final class Collector: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = Message
        let expected: Int64
        let done: EventLoopPromise<[UInt8]>
        var received: Int64 = 0
        var checksum = SegmentChecksum()

        init(expected: Int64, done: EventLoopPromise<[UInt8]>) {
            self.expected = expected
            self.done = done
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            guard case .data(let chunk) = Self.unwrapInboundIn(data) else { return }
            checksum.update(chunk.bytes)
            received += Int64(chunk.bytes.readableBytes)
            if received == expected { done.succeed(checksum.finalize()) }
        }
    }

    /// The bytes at `offset` of the test transfer: a byte that differs from chunk to chunk, so order shows.
    private static func bytes(at offset: Int64, length: Int) -> ByteBuffer {
        ByteBuffer(repeating: UInt8(truncatingIfNeeded: offset / Int64(length) &* 37 &+ 1), count: length)
    }

    /// A loopback connection whose peer frames what it receives and hands it to `collector`. A peer that does
    /// not read takes nothing until told to, through small socket buffers: the kernel absorbs well under a chunk.
    /// Returns the listening channel, the sending side, and the peer's side once accepted.
    private static func connect(
        peerReads: Bool, collector: Collector? = nil
    ) async throws -> (server: any Channel, client: any Channel, peer: EventLoopFuture<any Channel>) {
        let group = MultiThreadedEventLoopGroup.singleton
        let accepted = group.any().makePromise(of: (any Channel).self)
        var bootstrap = ServerBootstrap(group: group)
        if !peerReads {
            bootstrap = bootstrap.childChannelOption(.autoRead, value: false)
                .childChannelOption(.socketOption(.so_rcvbuf), value: 64 << 10)
        }
        let server = try await bootstrap
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try FarmWire.addHandlers(to: channel.pipeline.syncOperations)
                    if let collector { try channel.pipeline.syncOperations.addHandler(collector) }
                    accepted.succeed(channel)
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        var client = ClientBootstrap(group: group)
        if !peerReads { client = client.channelOption(.socketOption(.so_sndbuf), value: 64 << 10) }
        let connected = try await client
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try FarmWire.addHandlers(to: channel.pipeline.syncOperations) }
            }
            .connect(host: "127.0.0.1", port: server.localAddress!.port!).get()
        return (server, connected, accepted.futureResult)
    }

    @Test func holdsAtMostItsWindowWhileThePeerDoesNotRead() async throws {
        let chunk = 256 << 10
        let total = Int64(32 * chunk)
        let window = 4
        let done = MultiThreadedEventLoopGroup.singleton.any().makePromise(of: [UInt8].self)
        let (server, client, accepted) = try await Self.connect(
            peerReads: false, collector: Collector(expected: total, done: done))

        let reads = Mutex(0)
        let sending = Task {
            try await DataSender.send(taskID: 7, byteLength: total, over: client, window: window, chunkSize: chunk) {
                offset, length, buffer in
                reads.withLock { $0 += 1 }
                buffer = Self.bytes(at: offset, length: length)
            }
        }
        // Give the sender ample time to run ahead; an unpaced one reads all 32 chunks within this.
        try await Task.sleep(for: .seconds(1))
        let readWhileBlocked = reads.withLock { $0 }
        #expect(readWhileBlocked >= 1)
        #expect(readWhileBlocked <= window + 2, "read \(readWhileBlocked) chunks while the peer read nothing")

        let peer = try await accepted.get()
        try await peer.setOption(.autoRead, value: true).get()
        peer.read()
        let sent = try await sending.value
        let checksum = try await done.futureResult.get()
        #expect(sent == total)
        var expected = SegmentChecksum()
        var offset: Int64 = 0
        while offset < total {
            expected.update(Self.bytes(at: offset, length: chunk))
            offset += Int64(chunk)
        }
        #expect(checksum == expected.finalize())
        #expect(reads.withLock { $0 } == 32)
        try await client.close()
        try await server.close()
    }

    @Test func cancellingTheSenderClosesTheChannelInsteadOfWaitingForever() async throws {
        // A peer that never reads, behind small socket buffers: the sender's writes cannot complete.
        let (server, client, _) = try await Self.connect(peerReads: false)
        let sending = Task {
            try await DataSender.send(taskID: 3, byteLength: 32 << 18, over: client, chunkSize: 1 << 18) {
                offset, length, buffer in buffer = Self.bytes(at: offset, length: length)
            }
        }
        try await Task.sleep(for: .milliseconds(300))
        sending.cancel()
        let outcome = await sending.result
        #expect(throws: (any Error).self) { try outcome.get() }
        // The channel is closed, so the peer learns the transfer ended.
        try await client.closeFuture.get()
        #expect(!client.isActive)
        try await server.close()
    }

    @Test func stopsWhenToldAndSaysSo() async throws {
        let done = MultiThreadedEventLoopGroup.singleton.any().makePromise(of: [UInt8].self)
        let (server, client, _) = try await Self.connect(peerReads: true, collector: Collector(expected: 3 << 16, done: done))
        var chunks = 0
        let sent = try await DataSender.send(
            taskID: 1, byteLength: 10 << 16, over: client, chunkSize: 1 << 16, mayContinue: { chunks < 3 }
        ) { offset, length, buffer in
            chunks += 1
            buffer = Self.bytes(at: offset, length: length)
        }
        #expect(sent == nil)
        #expect(chunks == 3)
        // The chunks read before the stop still arrive whole.
        _ = try await done.futureResult.get()

        // A source shorter than announced ends the transfer at its end, and the count says how far it got.
        let short = try await DataSender.send(taskID: 2, byteLength: 10 << 16, over: client, chunkSize: 1 << 16) {
            offset, length, buffer in buffer = offset < 2 << 16 ? Self.bytes(at: offset, length: length) : ByteBuffer()
        }
        #expect(short == 2 << 16)
        try await client.close()
        try await server.close()
    }

    /// Chunks are read into the transfer's own few buffers: once a chunk's write is done the channel holds its
    /// buffer no more, and the next read into it writes in place instead of allocating.
    @Test func chunkBuffersAreReusedOnceTheirWritesAreDone() async throws {
        let chunk = 1 << 16
        let total = Int64(40 * chunk)
        let done = MultiThreadedEventLoopGroup.singleton.any().makePromise(of: [UInt8].self)
        let (server, client, _) = try await Self.connect(peerReads: true, collector: Collector(expected: total, done: done))
        var reads = 0
        var reusedInPlace = 0
        var storages = Set<UInt>()
        let sent = try await DataSender.send(taskID: 5, byteLength: total, over: client, chunkSize: chunk) {
            offset, length, buffer in
            reads += 1
            if buffer.readableBytes > 0 {
                // Mutable access copies a buffer that something else still holds; in place, the address stays.
                let before = buffer.withUnsafeReadableBytes { UInt(bitPattern: $0.baseAddress) }
                let after = buffer.withUnsafeMutableReadableBytes { UInt(bitPattern: $0.baseAddress) }
                if before == after { reusedInPlace += 1 }
            }
            let fill = Self.bytes(at: offset, length: length)
            buffer.clear()
            buffer.writeImmutableBuffer(fill)
            storages.insert(buffer.withUnsafeReadableBytes { UInt(bitPattern: $0.baseAddress) })
        }
        #expect(sent == total)
        var expected = SegmentChecksum()
        for index in 0..<40 { expected.update(Self.bytes(at: Int64(index * chunk), length: chunk)) }
        #expect(try await done.futureResult.get() == expected.finalize())
        #expect(reads == 40)
        // The first `defaultWindow` reads fill new buffers; every later one finds its buffer free.
        #expect(reusedInPlace == 40 - DataSender.defaultWindow)
        #expect(storages.count == DataSender.defaultWindow, "\(storages.count) buffers for 40 chunks")
        try await client.close()
        try await server.close()
    }

    /// A real file: every byte arrives in order; a shorter file ends the transfer at its end; a missing one fails
    /// with its path.
    @Test func sendsAFileAndSaysWhatWentWrong() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("farm-sender-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("segment.pkt").path
        // Not a multiple of the chunk size, so the last chunk is short.
        let bytes = (0..<(3 * FarmWire.dataChunkSize + 12_345)).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 >> 9) }
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        var expected = SegmentChecksum()
        bytes.withUnsafeBytes { expected.update($0) }

        let done = MultiThreadedEventLoopGroup.singleton.any().makePromise(of: [UInt8].self)
        let (server, client, _) = try await Self.connect(
            peerReads: true, collector: Collector(expected: Int64(bytes.count), done: done))
        let sent = try await DataSender.sendFile(atPath: path, taskID: 9, byteLength: Int64(bytes.count), over: client)
        #expect(sent == Int64(bytes.count))
        #expect(try await done.futureResult.get() == expected.finalize())

        let short = try await DataSender.sendFile(atPath: path, taskID: 10, byteLength: Int64(bytes.count) + 100, over: client)
        #expect(short == Int64(bytes.count))

        let missing = directory.appendingPathComponent("missing.pkt").path
        await #expect { _ = try await DataSender.sendFile(atPath: missing, taskID: 11, byteLength: 10, over: client) } throws: {
            "\($0)".contains(missing)
        }
        try await client.close()
        try await server.close()
    }
}
