public import NIOCore

/// The framing of the farm protocol, and the limits that go with it.
///
/// A frame is a big-endian `UInt32` length, a `UInt8` type code and a payload. The length counts the type byte and
/// the payload, so it is at least 1, and it is checked against a maximum frame size before anything else is
/// read or allocated.
public enum FarmWire {
    /// The default maximum frame length, 8 MiB: the largest length header a peer accepts.
    public static let defaultMaxFrameSize = 8 << 20

    /// The largest frame a coordinator accepts before its welcome, 64 KiB: a hello is a few hundred bytes,
    /// so a peer that has not proved the join token cannot make it buffer more.
    public static let handshakeMaxFrameSize = 64 << 10

    /// The size of the data chunks senders split segments into, 1 MiB.
    public static let dataChunkSize = 1 << 20

    /// The bytes in front of every payload: the 4-byte length and the 1-byte type code.
    public static let frameHeaderSize = 5

    /// Adds the protocol's decoder and encoder to a channel pipeline, after its current handlers.
    ///
    /// Inbound, the channel then carries ``Message`` values, and errors as ``ProtocolError``s through
    /// `errorCaught`; the handler that owns the connection should log them and close the channel.
    /// Outbound, it takes ``Message`` values.
    ///
    /// - Parameters:
    ///   - pipeline: The pipeline of a channel, on its event loop.
    ///   - maxFrameSize: The largest frame length accepted from the peer and sent to it.
    ///   - limit: A lower limit on frames accepted, which the caller may raise later (see ``FrameSizeLimit``).
    public static func addHandlers(
        to pipeline: ChannelPipeline.SynchronousOperations,
        maxFrameSize: Int = defaultMaxFrameSize, limit: FrameSizeLimit? = nil
    ) throws {
        try pipeline.addHandler(ByteToMessageHandler(FrameDecoder(maxFrameSize: maxFrameSize, limit: limit)))
        try pipeline.addHandler(FrameEncoder(maxFrameSize: maxFrameSize))
    }

    /// Writes `message` as one frame to the end of `buffer`.
    ///
    /// - Throws: ``ProtocolError/Code/frameTooLarge`` if the frame would be longer than `maxFrameSize`;
    ///   `buffer` is then left as it was.
    public static func writeFrame(
        _ message: Message,
        into buffer: inout ByteBuffer,
        maxFrameSize: Int = defaultMaxFrameSize
    ) throws {
        if case .data(let chunk) = message {
            // The common case, and the big one: check the size and reserve room before copying the bytes.
            buffer.reserveCapacity(minimumWritableBytes: dataHeaderSize + chunk.bytes.readableBytes)
            try writeDataHeader(for: chunk, into: &buffer, maxFrameSize: maxFrameSize)
            buffer.writeImmutableBuffer(chunk.bytes)
            return
        }

        let start = buffer.writerIndex
        buffer.writeInteger(0, as: UInt32.self)  // the length, set below
        buffer.writeInteger(message.typeCode)
        message.encode(into: &buffer)

        let length = buffer.writerIndex - start - 4
        guard length <= maxFrameSize else {
            buffer.moveWriterIndex(to: start)
            throw ProtocolError.frameTooLarge(sending: message, length: length, maxFrameSize: maxFrameSize)
        }
        buffer.setInteger(UInt32(length), at: start)
    }

    /// The bytes of a data frame in front of the chunk's own bytes: the frame header, the task ID and the
    /// byte string's length, 17 bytes.
    public static let dataHeaderSize = frameHeaderSize + DataChunk.payloadOverhead

    /// Writes everything of `chunk`'s frame but the chunk's bytes to the end of `buffer`: sent right before the
    /// bytes themselves, it makes the whole frame without copying them.
    ///
    /// - Throws: ``ProtocolError/Code/frameTooLarge`` if the frame would be longer than `maxFrameSize`;
    ///   `buffer` is then left as it was.
    public static func writeDataHeader(
        for chunk: DataChunk, into buffer: inout ByteBuffer, maxFrameSize: Int = defaultMaxFrameSize
    ) throws {
        let length = 1 + DataChunk.payloadOverhead + chunk.bytes.readableBytes
        guard length <= maxFrameSize else {
            throw ProtocolError.frameTooLarge(sending: .data(chunk), length: length, maxFrameSize: maxFrameSize)
        }
        buffer.writeInteger(UInt32(length))
        buffer.writeInteger(FrameType.data.rawValue)
        buffer.writeInteger(chunk.taskID)
        buffer.writeInteger(UInt32(chunk.bytes.readableBytes))
    }

    /// Reads one frame from the front of `buffer`, if it holds a whole one.
    ///
    /// The length header is validated as soon as its 4 bytes are there, and the type code as soon as its byte is,
    /// so an invalid frame fails without waiting for (or buffering) its body.
    ///
    /// - Returns: The message, or `nil` if `buffer` does not hold a whole frame yet; `buffer` is then unchanged.
    /// - Throws: ``ProtocolError`` if the frame is invalid: ``ProtocolError/Code/frameTooLarge``,
    ///   ``ProtocolError/Code/unknownFrameType`` or ``ProtocolError/Code/malformedPayload``.
    public static func readFrame(
        from buffer: inout ByteBuffer,
        maxFrameSize: Int = defaultMaxFrameSize
    ) throws -> Message? {
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self) else {
            return nil
        }
        guard length > 0 else {
            throw ProtocolError.malformed("frame length is 0; a frame holds at least its 1-byte type code")
        }
        guard length <= maxFrameSize else {
            throw ProtocolError(
                code: .frameTooLarge,
                message: "frame length \(length) bytes exceeds the maximum of \(maxFrameSize) bytes"
            )
        }
        guard let type = buffer.getInteger(at: buffer.readerIndex + 4, as: UInt8.self) else {
            return nil
        }
        guard FrameType(rawValue: type) != nil else {
            throw ProtocolError.unknownFrameType(type)
        }
        guard buffer.readableBytes >= 4 + Int(length) else {
            return nil
        }

        buffer.moveReaderIndex(forwardBy: frameHeaderSize)
        var payload = buffer.readSlice(length: Int(length) - 1)!
        return try Message.decode(type: type, payload: &payload)
    }
}

extension ProtocolError {
    static func frameTooLarge(sending message: Message, length: Int, maxFrameSize: Int) -> ProtocolError {
        ProtocolError(
            code: .frameTooLarge,
            message: "cannot send \(message.frameType) (type \(message.typeCode)): frame length \(length) bytes "
                + "exceeds the maximum of \(maxFrameSize) bytes"
        )
    }
}
