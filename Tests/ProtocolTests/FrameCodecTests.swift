import FarmProtocol
import NIOCore
import NIOEmbedded
import Testing

/// The codec handlers on an `EmbeddedChannel`: what the encoder writes, the decoder reads back, whole or in pieces;
/// and what breaks the rules is refused.
@Suite struct FrameCodecTests {
    /// A channel with both codec handlers: outbound messages come out as bytes, inbound bytes come in as messages.
    private func makeChannel(maxFrameSize: Int = FarmWire.defaultMaxFrameSize) throws -> EmbeddedChannel {
        let channel = EmbeddedChannel()
        try FarmWire.addHandlers(to: channel.pipeline.syncOperations, maxFrameSize: maxFrameSize)
        return channel
    }

    /// The bytes one message is sent as: one buffer, or a data chunk's header and its own bytes.
    private func encode(_ message: Message, on channel: EmbeddedChannel) throws -> ByteBuffer {
        try channel.writeOutbound(message)
        var frame = try #require(try channel.readOutbound(as: ByteBuffer.self))
        while var more = try channel.readOutbound(as: ByteBuffer.self) { frame.writeBuffer(&more) }
        var direct = ByteBuffer()
        try FarmWire.writeFrame(message, into: &direct, maxFrameSize: .max)
        #expect(frame == direct)
        return frame
    }

    private func header(length: UInt32, type: UInt8) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.writeInteger(length)
        buffer.writeInteger(type)
        return buffer
    }

    @Test(arguments: Samples.small)
    func roundTrip(_ message: Message) throws {
        let channel = try self.makeChannel()
        let frame = try self.encode(message, on: channel)
        #expect(frame.getInteger(at: frame.readerIndex, as: UInt32.self) == UInt32(frame.readableBytes - 4))
        #expect(frame.getInteger(at: frame.readerIndex + 4, as: UInt8.self) == message.typeCode)

        try channel.writeInbound(frame)
        #expect(try channel.readInbound(as: Message.self) == message)
        #expect(try channel.readInbound(as: Message.self) == nil)
        #expect(try channel.finish().isClean)
    }

    @Test func typeCodesAreThoseOfTheDocumentation() {
        let codes = Samples.small.map(\.typeCode)
        #expect(Set(codes) == Set(1...11))
    }

    @Test func roundTripOneMebibyteDataChunk() throws {
        let channel = try self.makeChannel()
        let chunk = DataChunk(taskID: 7, bytes: Samples.bytes(count: FarmWire.dataChunkSize))
        let frame = try self.encode(.data(chunk), on: channel)
        #expect(frame.readableBytes == FarmWire.frameHeaderSize + 8 + 4 + FarmWire.dataChunkSize)

        // Deliver it in pieces of the size a socket read might give.
        var remaining = frame
        while let piece = remaining.readSlice(length: min(65_536, remaining.readableBytes)), piece.readableBytes > 0 {
            try channel.writeInbound(piece)
        }
        #expect(try channel.readInbound(as: Message.self) == .data(chunk))
        #expect(try channel.finish().isClean)
    }

    @Test func framesFedByteByByte() throws {
        let channel = try self.makeChannel()
        var stream = ByteBuffer()
        for message in Samples.small {
            var frame = try self.encode(message, on: channel)
            stream.writeBuffer(&frame)
        }

        var received: [Message] = []
        while let byte = stream.readSlice(length: 1) {
            try channel.writeInbound(byte)
            while let message = try channel.readInbound(as: Message.self) {
                received.append(message)
            }
        }
        #expect(received == Samples.small)
        #expect(try channel.finish().isClean)
    }

    @Test func dataBytesLeaveWithoutACopy() throws {
        let channel = try self.makeChannel()
        let bytes = Samples.bytes(count: 64 << 10)
        try channel.writeOutbound(Message.data(DataChunk(taskID: 9, bytes: bytes)))
        let header = try #require(try channel.readOutbound(as: ByteBuffer.self))
        let body = try #require(try channel.readOutbound(as: ByteBuffer.self))
        #expect(try channel.readOutbound(as: ByteBuffer.self) == nil)
        #expect(header.readableBytes == FarmWire.dataHeaderSize)
        #expect(body == bytes)
        // The same storage as the chunk's: the encoder wrote the bytes as they were.
        let same = body.withUnsafeReadableBytes { b in bytes.withUnsafeReadableBytes { $0.baseAddress == b.baseAddress } }
        #expect(same)
        #expect(try channel.finish().isClean)
    }

    @Test func oversizeLengthIsRejectedFromTheHeaderAlone() throws {
        let channel = try self.makeChannel()
        // Only the 5 header bytes, claiming a 100 MiB frame: the body is never sent.
        let error = #expect(throws: ProtocolError.self) {
            try channel.writeInbound(self.header(length: 100 << 20, type: 6))
        }
        #expect(error?.code == .frameTooLarge)
        #expect(error?.message.contains("\(100 << 20)") == true)
        #expect(error?.message.contains("\(FarmWire.defaultMaxFrameSize)") == true)
        _ = try? channel.finish()
    }

    @Test func configuredMaximumIsEnforcedOnBothSides() throws {
        let channel = try self.makeChannel(maxFrameSize: 1024)
        let fits = DataChunk(taskID: 1, bytes: Samples.bytes(count: 1024 - 1 - 12))
        let frame = try self.encode(.data(fits), on: channel)
        try channel.writeInbound(frame)
        #expect(try channel.readInbound(as: Message.self) == .data(fits))

        // One byte more does not fit: the write fails and nothing is sent.
        let tooBig = DataChunk(taskID: 1, bytes: Samples.bytes(count: 1024 - 1 - 12 + 1))
        let sendError = #expect(throws: ProtocolError.self) { try channel.writeOutbound(Message.data(tooBig)) }
        #expect(sendError?.code == .frameTooLarge)
        #expect(try channel.readOutbound(as: ByteBuffer.self) == nil)

        let receiveError = #expect(throws: ProtocolError.self) {
            try channel.writeInbound(self.header(length: 1025, type: 6))
        }
        #expect(receiveError?.code == .frameTooLarge)
        _ = try? channel.finish()
    }

    @Test func aSharedLimitHoldsUntilRaised() throws {
        let limit = FrameSizeLimit(bytes: FarmWire.handshakeMaxFrameSize)
        let channel = EmbeddedChannel()
        try FarmWire.addHandlers(to: channel.pipeline.syncOperations, limit: limit)
        // A chunk that fills the handshake limit exactly passes; the limit, once raised, lets a bigger one through.
        let fits = DataChunk(taskID: 1, bytes: Samples.bytes(count: FarmWire.handshakeMaxFrameSize - 1 - 12))
        try channel.writeInbound(try self.encode(.data(fits), on: channel))
        #expect(try channel.readInbound(as: Message.self) == .data(fits))
        limit.set(bytes: FarmWire.defaultMaxFrameSize)
        let big = DataChunk(taskID: 2, bytes: Samples.bytes(count: FarmWire.handshakeMaxFrameSize))
        try channel.writeInbound(try self.encode(.data(big), on: channel))
        #expect(try channel.readInbound(as: Message.self) == .data(big))
        _ = try? channel.finish()

        // Before it is raised, one byte more than 64 KiB is refused from the header alone.
        let strict = EmbeddedChannel()
        try FarmWire.addHandlers(to: strict.pipeline.syncOperations, limit: FrameSizeLimit(bytes: FarmWire.handshakeMaxFrameSize))
        let error = #expect(throws: ProtocolError.self) {
            try strict.writeInbound(self.header(length: UInt32(FarmWire.handshakeMaxFrameSize + 1), type: 2))
        }
        #expect(error?.code == .frameTooLarge)
        #expect(error?.message.contains("maximum of \(FarmWire.handshakeMaxFrameSize) bytes") == true)
        _ = try? strict.finish()
    }

    @Test func unknownTypeIsRejected() throws {
        let channel = try self.makeChannel()
        let error = #expect(throws: ProtocolError.self) {
            try channel.writeInbound(self.header(length: 1, type: 200))
        }
        #expect(error?.code == .unknownFrameType)
        #expect(error?.message.contains("200") == true)
        _ = try? channel.finish()
    }

    @Test func zeroLengthIsRejected() throws {
        let channel = try self.makeChannel()
        var buffer = ByteBuffer()
        buffer.writeInteger(0 as UInt32)
        let error = #expect(throws: ProtocolError.self) { try channel.writeInbound(buffer) }
        #expect(error?.code == .malformedPayload)
        _ = try? channel.finish()
    }

    @Test func truncatedPayloadInsideACompleteFrameIsRejected() throws {
        let channel = try self.makeChannel()
        // A cancel frame whose payload has 4 of the 8 bytes of its task ID.
        var frame = self.header(length: 1 + 4, type: 9)
        frame.writeInteger(42 as UInt32)
        let error = #expect(throws: ProtocolError.self) { try channel.writeInbound(frame) }
        #expect(error?.code == .malformedPayload)
        #expect(error?.message.contains("taskID") == true)
        _ = try? channel.finish()
    }

    @Test func trailingBytesAreRejected() throws {
        let channel = try self.makeChannel()
        var frame = self.header(length: 1 + 1, type: 11)  // drain has no payload
        frame.writeInteger(0 as UInt8)
        let error = #expect(throws: ProtocolError.self) { try channel.writeInbound(frame) }
        #expect(error?.code == .malformedPayload)
        #expect(error?.message.contains("1 byte(s) left") == true)
        _ = try? channel.finish()
    }

    @Test func nothingIsAcceptedAfterAnError() throws {
        let channel = try self.makeChannel()
        #expect(throws: ProtocolError.self) { try channel.writeInbound(self.header(length: 1, type: 0)) }
        var drain = self.header(length: 1, type: 11)
        #expect(throws: (any Error).self) { try channel.writeInbound(drain.readSlice(length: 5)!) }
        #expect(try channel.readInbound(as: Message.self) == nil)
        _ = try? channel.finish()
    }

    @Test func connectionEndingInsideAFrameIsReported() throws {
        let channel = try self.makeChannel()
        var frame = try self.encode(.cancel(taskID: 1), on: channel)
        try channel.writeInbound(frame.readSlice(length: 7)!)
        let error = #expect(throws: ProtocolError.self) { try channel.finish() }
        #expect(error?.code == .malformedPayload)
        #expect(error?.message.contains("after 7 of its bytes") == true)
    }
}
