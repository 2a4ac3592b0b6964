internal import FarmProtocol
internal import Logging
internal import NIOCore
internal import Synchronization

/// Counts the node connections that have not completed the handshake, per source address and in all, so
/// that peers without the join token cannot hold the coordinator's sockets, buffers and handshake work.
final class HandshakeGate: Sendable {
    let perAddress: Int
    let total: Int
    private struct Counts {
        var byAddress: [String: Int] = [:]
        var total = 0
    }
    private let counts = Mutex(Counts())

    init(perAddress: Int, total: Int) {
        self.perAddress = max(perAddress, 1)
        self.total = max(total, 1)
    }

    /// Takes a place for a connection from `address`; nil when the address or the whole port is at its cap
    /// (the reason).
    func admit(_ address: String) -> String? {
        counts.withLock { (counts: inout Counts) -> String? in
            let current = counts.byAddress[address, default: 0]
            if current >= perAddress {
                return "\(perAddress) connections from \(address) are already in their handshake"
            }
            if counts.total >= total { return "\(total) connections are already in their handshake" }
            counts.byAddress[address] = current + 1
            counts.total += 1
            return nil
        }
    }

    func release(_ address: String) {
        counts.withLock { (counts: inout Counts) in
            guard let current = counts.byAddress[address] else { return }
            counts.byAddress[address] = current > 1 ? current - 1 : nil
            counts.total -= 1
        }
    }

    /// Connections in their handshake now (for tests).
    var pending: Int { counts.withLock { $0.total } }
}

/// The first handler of a node connection after TLS: it holds the connection's place in the ``HandshakeGate``
/// until the handshake succeeds (or the connection ends), keeps the frame limit at
/// ``FarmWire/handshakeMaxFrameSize`` until then, and closes a connection that sends more bytes a second than
/// its budget (a token bucket: `bytesPerSecond` on average, two seconds' worth in a burst).
final class NodeConnectionGuard: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    let frameLimit = FrameSizeLimit(bytes: FarmWire.handshakeMaxFrameSize)
    private let gate: HandshakeGate
    private let address: String
    private let logger: Logger
    private var holdsPlace = false
    private var refusal: String?
    private let rate: Double
    private let burst: Double
    private var tokens: Double
    private var last = NIODeadline.now()

    init(gate: HandshakeGate, address: String, bytesPerSecond: Int, logger: Logger) {
        self.gate = gate
        self.address = address
        self.logger = logger
        self.rate = Double(max(bytesPerSecond, 1))
        self.burst = 2 * self.rate
        self.tokens = self.burst
        self.refusal = gate.admit(address)
        self.holdsPlace = self.refusal == nil
    }

    func channelActive(context: ChannelHandlerContext) {
        if let refusal {
            logger.warning("node connection refused before its handshake", metadata: ["peer": "\(address)", "reason": "\(refusal)"])
            context.close(promise: nil)
            return
        }
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard refusal == nil else { return }
        let count = Double(Self.unwrapInboundIn(data).readableBytes)
        let now = NIODeadline.now()
        tokens = min(burst, tokens + Double((now - last).nanoseconds) / 1e9 * rate)
        last = now
        guard tokens >= count else {
            refusal = "more than \(Int(rate)) bytes a second (\(Int(burst)) in a burst)"
            logger.warning("node exceeded its byte budget; disconnecting it", metadata: ["peer": "\(address)", "limit": "\(refusal!)"])
            context.close(promise: nil)
            return
        }
        tokens -= count
        context.fireChannelRead(data)
    }

    func channelInactive(context: ChannelHandlerContext) {
        releasePlace()
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) { releasePlace() }

    /// The handshake succeeded: full-size frames, and the place in the gate is given back. On the event loop.
    func authenticated() {
        frameLimit.set(bytes: FarmWire.defaultMaxFrameSize)
        releasePlace()
    }

    private func releasePlace() {
        guard holdsPlace else { return }
        holdsPlace = false
        gate.release(address)
    }

    /// Marks `channel`'s connection authenticated (from any thread).
    static func authenticated(_ channel: any Channel) async {
        try? await channel.eventLoop.submit {
            try channel.pipeline.syncOperations.handler(type: NodeConnectionGuard.self).authenticated()
        }.get()
    }
}

@available(*, unavailable)
extension NodeConnectionGuard: Sendable {}
