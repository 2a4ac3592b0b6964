public import NIOCore
internal import Synchronization

/// Decodes frames into ``Message`` values.
///
/// Use it wrapped in a `ByteToMessageHandler`, or add both codec handlers with
/// ``FarmWire/addHandlers(to:maxFrameSize:)``. A frame that breaks the protocol throws a ``ProtocolError``, which
/// NIO delivers through `errorCaught`; the decoder accepts nothing after that, and the connection's owner closes it.
public final class FrameDecoder: ByteToMessageDecoder {
    public typealias InboundOut = Message

    /// The largest frame length accepted, in bytes (the type code and the payload).
    public let maxFrameSize: Int
    /// A lower limit that the connection's owner may raise later (up to `maxFrameSize`): a coordinator
    /// accepts only ``FarmWire/handshakeMaxFrameSize`` until the handshake succeeded.
    public let limit: FrameSizeLimit?

    /// Creates a decoder that accepts frames of at most `maxFrameSize` bytes, and at most `limit`'s while it is lower.
    public init(maxFrameSize: Int = FarmWire.defaultMaxFrameSize, limit: FrameSizeLimit? = nil) {
        precondition(maxFrameSize >= 1, "maxFrameSize must be at least 1, got \(maxFrameSize)")
        self.maxFrameSize = maxFrameSize
        self.limit = limit
    }

    public func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        let maxFrameSize = min(self.maxFrameSize, self.limit?.bytes ?? self.maxFrameSize)
        guard let message = try FarmWire.readFrame(from: &buffer, maxFrameSize: maxFrameSize) else {
            return .needMoreData
        }
        context.fireChannelRead(Self.wrapInboundOut(message))
        return .continue
    }

    public func decodeLast(
        context: ChannelHandlerContext,
        buffer: inout ByteBuffer,
        seenEOF: Bool
    ) throws -> DecodingState {
        let state = try self.decode(context: context, buffer: &buffer)
        if state == .needMoreData, seenEOF, buffer.readableBytes > 0 {
            throw ProtocolError.malformed(
                "the connection ended inside a frame, after \(buffer.readableBytes) of its bytes"
            )
        }
        return state
    }
}

@available(*, unavailable)
extension FrameDecoder: Sendable {}

/// A frame size limit shared between a ``FrameDecoder`` and the connection's owner, who may change it from
/// any thread (the decoder reads it on the channel's event loop, frame by frame).
public final class FrameSizeLimit: Sendable {
    private let storage: Atomic<Int>

    /// A limit of `bytes` (at least 1).
    public init(bytes: Int) { self.storage = Atomic(max(bytes, 1)) }

    /// The largest frame length accepted now.
    public var bytes: Int { self.storage.load(ordering: .relaxed) }

    /// Changes the limit; frames not yet decoded are held to the new one.
    public func set(bytes: Int) { self.storage.store(max(bytes, 1), ordering: .relaxed) }
}

/// Writes ``Message`` values as frames.
///
/// Add it with ``FarmWire/addHandlers(to:maxFrameSize:)``. A data chunk leaves as two buffers, the frame's
/// header and the chunk's own bytes, so a segment's bytes are never copied into frames (on plain TCP both go out in
/// one `writev`; TLS encrypts straight from them). Any other message is encoded into one buffer. A message too
/// large for one frame fails its write with ``ProtocolError/Code/frameTooLarge``, sends nothing, and reaches the
/// connection's owner through `errorCaught` as well.
public final class FrameEncoder: ChannelOutboundHandler {
    public typealias OutboundIn = Message
    public typealias OutboundOut = ByteBuffer

    /// The largest frame length sent, in bytes (the type code and the payload).
    public let maxFrameSize: Int

    /// Creates an encoder that refuses to send frames longer than `maxFrameSize` bytes.
    public init(maxFrameSize: Int = FarmWire.defaultMaxFrameSize) {
        precondition(maxFrameSize >= 1, "maxFrameSize must be at least 1, got \(maxFrameSize)")
        self.maxFrameSize = maxFrameSize
    }

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let message = Self.unwrapOutboundIn(data)
        do {
            if case .data(let chunk) = message {
                var header = context.channel.allocator.buffer(capacity: FarmWire.dataHeaderSize)
                try FarmWire.writeDataHeader(for: chunk, into: &header, maxFrameSize: self.maxFrameSize)
                context.write(Self.wrapOutboundOut(header), promise: nil)
                context.write(Self.wrapOutboundOut(chunk.bytes), promise: promise)
            } else {
                var buffer = context.channel.allocator.buffer(capacity: 256)
                try FarmWire.writeFrame(message, into: &buffer, maxFrameSize: self.maxFrameSize)
                context.write(Self.wrapOutboundOut(buffer), promise: promise)
            }
        } catch {
            promise?.fail(error)
            context.fireErrorCaught(error)
        }
    }
}

@available(*, unavailable)
extension FrameEncoder: Sendable {}
