import FarmChildProcess
import FarmProtocol
import FarmTestSupport
import Foundation
import NIOCore
import NIOPosix
import Testing

/// Nodes that try to exhaust the coordinator, written in the test and speaking the wire format themselves: a
/// real `farm coordinator` on loopback, and real `farm node` processes beside them where work must go on.
@Suite(.serialized, .heavy, .timeLimit(.minutes(10))) struct HostileNodeTests {
    typealias Farm = NodeChannelTests.Farm
    static let token = NodeChannelTests.joinToken

    static func count(_ text: String, _ needle: String) -> Int { text.components(separatedBy: needle).count - 1 }

    @Test func aFrameLargerThan64KiBBeforeTheWelcomeIsRefused() async throws {
        let farm = try Farm("farm-prewelcome")
        defer { farm.remove() }
        try await farm.stopping {
            let coordinator = try await farm.coordinator("coordinator.log")
            // A "hello" of 64 KiB + 1: well under the 8 MiB an authenticated node may send, too much before.
            let length = UInt32(FarmWire.handshakeMaxFrameSize + 1)
            var frame = withUnsafeBytes(of: length.bigEndian) { Array($0) } + [2]
            frame += [UInt8](repeating: 0x41, count: Int(length) - 1)
            #expect(try await sendRawOverTLS(frame, port: coordinator.nodePort))
            #expect(
                await FarmBinary.waitUntil(timeout: 10) {
                    coordinator.text.contains("exceeds the maximum of \(FarmWire.handshakeMaxFrameSize) bytes")
                }, "\(coordinator.text.suffix(2000))")
            // The port still serves a node with the token.
            let node = try await FakeNode.join(
                port: coordinator.nodePort, tls: true, token: Self.token, nodeID: "after", stopAt: "welcome")
            #expect(node.messages == ["welcome"])
        }
    }

    @Test func connectionsWithoutAHandshakeAreCappedPerAddress() async throws {
        let farm = try Farm("farm-unauthenticated")
        defer { farm.remove() }
        try await farm.stopping {
            let coordinator = try await farm.coordinator("coordinator.log")
            // Eight bare TCP connections from 127.0.0.2 that never start TLS: four may wait for their handshake.
            var held: [any Channel] = []
            for _ in 0..<8 {
                held.append(
                    try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                        .bind(to: try SocketAddress(ipAddress: "127.0.0.2", port: 0))
                        .connect(host: "127.0.0.1", port: coordinator.nodePort).get())
            }
            defer { for channel in held { channel.close(promise: nil) } }
            let refusal = "node connection refused before its handshake"
            #expect(
                await FarmBinary.waitUntil(timeout: 10) { Self.count(coordinator.text, refusal) >= 4 },
                "\(coordinator.text.suffix(2000))")
            #expect(Self.count(coordinator.text, refusal) == 4)
            #expect(coordinator.text.contains("4 connections from 127.0.0.2 are already in their handshake"))
            // A node from another address joins while they hold their places.
            let node = try await FakeNode.join(
                port: coordinator.nodePort, tls: true, token: Self.token, nodeID: "legit", stopAt: "welcome")
            #expect(node.messages == ["welcome"])
            #expect(Self.count(coordinator.text, refusal) == 4)
        }
    }

    @Test func aNodeThatFloodsBytesIsDisconnected() async throws {
        let farm = try Farm("farm-byteflood")
        defer { farm.remove() }
        try await farm.stopping {
            let coordinator = try await farm.coordinator("coordinator.log", arguments: ["--max-node-mib-per-second", "1"])
            // Few messages (far under the message budget), many bytes: a result for a task it does not hold,
            // then 16 MiB of its "data" at once, eight times the 2 MiB a burst of a 1 MiB/s budget allows.
            let flood = try await FakeNode.join(port: coordinator.nodePort, tls: true, token: Self.token, nodeID: "flooder") {
                outbound in
                try await outbound.write(
                    .result(
                        TaskResult(
                            taskID: 999, encoder: "libx264", frames: 1, byteLength: 1 << 40,
                            checksum: [UInt8](repeating: 0, count: SegmentChecksum.byteCount), decodeSeconds: 0,
                            encodeSeconds: 0)))
                let chunk = ByteBuffer(repeating: 0x55, count: FarmWire.dataChunkSize)
                for _ in 0..<16 { try await outbound.write(.data(DataChunk(taskID: 999, bytes: chunk))) }
            }
            #expect(flood.messages.first == "welcome")
            #expect(flood.closedByPeer)
            // The coordinator writes its line as it closes the connection: the close can reach the node first.
            let logged = await FarmBinary.waitUntil(timeout: 30) { coordinator.text.contains("node exceeded its byte budget") }
            #expect(logged, "\(coordinator.text.suffix(2000))")
            #expect(!coordinator.text.contains("node exceeded the message rate limit"))
            let next = try await FakeNode.join(
                port: coordinator.nodePort, tls: true, token: Self.token, nodeID: "next", stopAt: "welcome")
            #expect(next.messages == ["welcome"])
        }
    }

    @Test func claimedSlotsAreCappedByMaxNodeSlots() async throws {
        let farm = try Farm("farm-slotclaim")
        defer { farm.remove() }
        try await farm.stopping {
            let capped = try await farm.coordinator("capped.log", arguments: ["--max-node-slots", "3"])
            let greedy = try await FakeNode.join(
                port: capped.nodePort, tls: true, token: Self.token, nodeID: "greedy", slots: UInt16.max, stopAt: "welcome")
            #expect(greedy.messages == ["welcome"])
            #expect(await FarmBinary.waitUntil(timeout: 10) { capped.text.contains("node joined") })
            #expect(NodeChannelTests.value("slots", in: capped.text, on: "node joined") == "3", "\(capped.text.suffix(1000))")
        }
        let bad = try await FarmBinary.run(["coordinator", "--max-node-slots", "0"], environment: [:], timeout: 30)
        #expect(bad.status != 0 && bad.stderr.contains("--max-node-slots 0: must be 1 to 4096"), "\(bad.stderr)")
    }

    @Test func aNodeThatStopsReadingIsClosedByTheWatchdogAndTheJobEndsElsewhere() async throws {
        // A lossless source, so that its one segment is far larger than the socket buffers between the two.
        let farm = try Farm(
            "farm-zerowindow", seconds: 2, size: "640x480",
            videoArgs: ["-vf", "noise=alls=40:allf=t", "-c:v", "libx264", "-preset", "ultrafast", "-qp", "0", "-g", "25"])
        defer { farm.remove() }
        let clipBytes = try #require(try FileManager.default.attributesOfItem(atPath: farm.clip)[.size] as? Int)
        #expect(clipBytes > 16 << 20, "the source must not fit in socket buffers: \(clipBytes) bytes")
        try await farm.stopping {
            let coordinator = try await farm.coordinator(
                "coordinator.log", arguments: ["--insecure-plain-tcp", "--lease-timeout", "5"],
                environment: ["FARM_API_TOKEN": "zero-window-long-enough-for-the-coordinator"])
            let stuck = try await StuckNode.join(port: coordinator.nodePort, token: Self.token, nodeID: "stuck")
            defer { stuck.close(promise: nil) }

            let output = farm.path("out.mp4")
            let (base, clip) = (coordinator.base, farm.clip)
            let submit = Task {
                let result = try await FarmBinary.run(
                    ["submit", "--remote", clip, "-o", output, "--server", base, "--crf", "30", "--preset",
                     "ultrafast", "--segment-seconds", "2"],
                    environment: ["FARM_API_TOKEN": "zero-window-long-enough-for-the-coordinator"], timeout: 120)
                return (status: result.status, stderr: result.stderr)
            }
            #expect(
                await FarmBinary.waitUntil(timeout: 30) {
                    coordinator.text.split(separator: "\n").contains { $0.contains("segment leased") && $0.contains("node=stuck") }
                }, "\(coordinator.text.suffix(2000))")
            let node = try await farm.node("steady", port: coordinator.nodePort, arguments: ["--insecure-plain-tcp"])
            // Silent past the 5 s lease timeout while its segment's bytes sit unsent: the watchdog closes it.
            #expect(
                await FarmBinary.waitUntil(timeout: 30) {
                    coordinator.text.split(separator: "\n").contains { $0.contains("node left") && $0.contains("node=stuck") }
                }, "\(coordinator.text.suffix(3000))")
            let result = try await submit.value
            #expect(result.status == 0, "\(result.stderr) \(coordinator.text.suffix(2000))")
            #expect(try TestMedia.frameTimes(output).count == 50)
            #expect(node.isRunning)
        }
    }
}

/// A node that joins over plain TCP with a receive buffer of a few KiB and stops reading the moment it is
/// welcomed: its TCP window closes as soon as the coordinator sends it a segment.
enum StuckNode {
    final class Handler: ChannelInboundHandler {
        typealias InboundIn = Message
        typealias OutboundOut = Message
        let token: String
        let nodeID: String
        let welcomed: EventLoopPromise<Void>

        init(token: String, nodeID: String, welcomed: EventLoopPromise<Void>) {
            self.token = token
            self.nodeID = nodeID
            self.welcomed = welcomed
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch Self.unwrapInboundIn(data) {
            case .challenge(let challenge):
                let proof = JoinProof.node(token: token, nonce: challenge.nonce, nodeID: nodeID, channelBinding: .plainTCP)
                let hello = Hello(nodeID: nodeID, proof: proof, slots: 1, threads: 1, capabilitiesJSON: "{}")
                context.writeAndFlush(Self.wrapOutboundOut(.hello(hello)), promise: nil)
            case .welcome:
                context.channel.setOption(ChannelOptions.autoRead, value: false).whenComplete { _ in }
                welcomed.succeed()
            default:
                break
            }
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            welcomed.fail(error)
            context.close(promise: nil)
        }
    }

    static func join(port: Int, token: String, nodeID: String) async throws -> any Channel {
        let group = MultiThreadedEventLoopGroup.singleton
        let welcomed = group.next().makePromise(of: Void.self)
        let channel = try await ClientBootstrap(group: welcomed.futureResult.eventLoop)
            .channelOption(.socketOption(.so_rcvbuf), value: 4096)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try FarmWire.addHandlers(to: channel.pipeline.syncOperations)
                    try channel.pipeline.syncOperations.addHandler(Handler(token: token, nodeID: nodeID, welcomed: welcomed))
                }
            }
            .connect(host: "127.0.0.1", port: port).get()
        try await welcomed.futureResult.get()
        return channel
    }
}
