public import NIOCore

/// Decodes frames into ``Message`` values.
///
/// Use it wrapped in a `ByteToMessageHandler`, or add both codec handlers with
/// ``FarmWire/addHandlers(to:maxFrameSize:)``. A frame that breaks the protocol throws a ``ProtocolError``, which
/// NIO delivers through `errorCaught`; the decoder accepts nothing after that, and the connection's owner closes it.
public final class FrameDecoder: ByteToMessageDecoder {
    public typealias InboundOut = Message

    /// The largest frame length accepted, in bytes (the type code and the payload).
    public let maxFrameSize: Int

    /// Creates a decoder that accepts frames of at most `maxFrameSize` bytes.
    public init(maxFrameSize: Int = FarmWire.defaultMaxFrameSize) {
        precondition(maxFrameSize >= 1, "maxFrameSize must be at least 1, got \(maxFrameSize)")
        self.maxFrameSize = maxFrameSize
    }

    public func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let message = try FarmWire.readFrame(from: &buffer, maxFrameSize: self.maxFrameSize) else {
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

/// Encodes ``Message`` values into frames.
///
/// Use it wrapped in a `MessageToByteHandler`, or add both codec handlers with
/// ``FarmWire/addHandlers(to:maxFrameSize:)``. A message too large for one frame fails its write with
/// ``ProtocolError/Code/frameTooLarge`` and sends nothing.
public final class FrameEncoder: MessageToByteEncoder {
    public typealias OutboundIn = Message

    /// The largest frame length sent, in bytes (the type code and the payload).
    public let maxFrameSize: Int

    /// Creates an encoder that refuses to send frames longer than `maxFrameSize` bytes.
    public init(maxFrameSize: Int = FarmWire.defaultMaxFrameSize) {
        precondition(maxFrameSize >= 1, "maxFrameSize must be at least 1, got \(maxFrameSize)")
        self.maxFrameSize = maxFrameSize
    }

    public func encode(data: Message, out: inout ByteBuffer) throws {
        try FarmWire.writeFrame(data, into: &out, maxFrameSize: self.maxFrameSize)
    }
}

@available(*, unavailable)
extension FrameEncoder: Sendable {}
