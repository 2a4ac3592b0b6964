import FarmProtocol
import NIOCore
import Testing

/// The payload encoding without channels: exact byte layouts, and hostile payloads.
@Suite struct PayloadTests {
    private func frame(_ message: Message) throws -> ByteBuffer {
        var buffer = ByteBuffer()
        try FarmWire.writeFrame(message, into: &buffer)
        return buffer
    }

    private func decode(type: UInt8, _ build: (inout ByteBuffer) -> Void) throws -> Message {
        var payload = ByteBuffer()
        build(&payload)
        return try Message.decode(type: type, payload: &payload)
    }

    private func expectMalformed(
        type: UInt8,
        mentioning text: String,
        sourceLocation: SourceLocation = #_sourceLocation,
        _ build: (inout ByteBuffer) -> Void
    ) {
        let error = #expect(throws: ProtocolError.self, sourceLocation: sourceLocation) {
            try self.decode(type: type, build)
        }
        #expect(error?.code == .malformedPayload, sourceLocation: sourceLocation)
        #expect(error?.message.contains(text) == true, "\(error?.message ?? "")", sourceLocation: sourceLocation)
    }

    @Test func exactBytesOfSimpleFrames() throws {
        #expect(Array(buffer: try self.frame(.cancel(taskID: 0x0102_0304_0506_0708))) == [
            0, 0, 0, 9, 9, 1, 2, 3, 4, 5, 6, 7, 8,
        ])
        #expect(Array(buffer: try self.frame(.reject(Reject(reason: "no")))) == [
            0, 0, 0, 7, 4, 0, 0, 0, 2, 0x6e, 0x6f,
        ])
        #expect(Array(buffer: try self.frame(.drain)) == [0, 0, 0, 1, 11])
        #expect(
            Array(buffer: try self.frame(.failure(TaskFailure(taskID: 1, reason: "x", retryable: true, kind: .refused)))) == [
                0, 0, 0, 16, 8, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0x78, 1, 1,
            ]
        )
        // A failure kind this version does not know is malformed.
        expectMalformed(type: 8, mentioning: "kind") { payload in
            payload.writeInteger(UInt64(1))
            payload.writeInteger(UInt32(1))
            payload.writeString("x")
            payload.writeInteger(UInt8(1))
            payload.writeInteger(UInt8(7))
        }
        #expect(
            Array(buffer: try self.frame(.heartbeat(Heartbeat(activeTasks: [TaskProgress(taskID: 2, framesDone: 3)])))) == [
                0, 0, 0, 21, 10, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 3,
            ]
        )
    }

    @Test func readFrameWaitsForAWholeFrameAndLeavesTheBufferUntouched() throws {
        let whole = try self.frame(.cancel(taskID: 5))
        for length in 0..<whole.readableBytes {
            var partial = whole.getSlice(at: whole.readerIndex, length: length)!
            #expect(try FarmWire.readFrame(from: &partial) == nil)
            #expect(partial.readableBytes == length)
        }
        var buffer = whole
        #expect(try FarmWire.readFrame(from: &buffer) == .cancel(taskID: 5))
        #expect(buffer.readableBytes == 0)
    }

    @Test func decodedDataChunksAreSlicesNotCopies() throws {
        var buffer = try self.frame(.data(DataChunk(taskID: 9, bytes: Samples.bytes(count: 4096))))
        let frameStart = buffer.withUnsafeReadableBytes { UInt(bitPattern: $0.baseAddress) }
        guard case .data(let chunk) = try FarmWire.readFrame(from: &buffer) else {
            Issue.record("expected a data chunk")
            return
        }
        let chunkStart = chunk.bytes.withUnsafeReadableBytes { UInt(bitPattern: $0.baseAddress) }
        #expect(chunkStart == frameStart + UInt(FarmWire.frameHeaderSize + 8 + 4))
        #expect(chunk.bytes == Samples.bytes(count: 4096))
    }

    @Test func optionsEncodeInKeyOrder() throws {
        var forward: [String: String] = [:]
        var backward: [String: String] = [:]
        let keys = (0..<50).map { "key\($0)" }
        for key in keys { forward[key] = key.uppercased() }
        for key in keys.reversed() { backward[key] = key.uppercased() }
        var settings = Samples.settings
        settings.options = forward
        let first = try self.frame(.assign(self.assign(settings)))
        settings.options = backward
        let second = try self.frame(.assign(self.assign(settings)))
        #expect(first == second)
    }

    private func assign(_ settings: EncodeSettings) -> Assign {
        Assign(
            taskID: 1,
            jobID: "j",
            segmentIndex: 0,
            attempt: 0,
            settings: settings,
            startPTS: 0,
            endPTS: nil,
            expectedFrames: 1,
            byteLength: 1,
            checksum: Samples.checksum
        )
    }

    @Test func badBoolByteIsRejected() {
        self.expectMalformed(type: 8, mentioning: "retryable: Bool byte is 2") { payload in
            payload.writeInteger(1 as UInt64)
            payload.writeInteger(0 as UInt32)
            payload.writeInteger(2 as UInt8)
        }
    }

    @Test func badOptionalFlagIsRejected() throws {
        var payload = ByteBuffer()
        Message.result(
            TaskResult(
                taskID: 1,
                encoder: "libx264",
                frames: 1,
                byteLength: 1,
                checksum: Samples.checksum,
                decodeSeconds: 0,
                encodeSeconds: 0
            )
        ).encode(into: &payload)
        payload.setInteger(7 as UInt8, at: payload.writerIndex - 1)
        let error = #expect(throws: ProtocolError.self) { try Message.decode(type: 7, payload: &payload) }
        #expect(error?.code == .malformedPayload)
        #expect(error?.message.contains("fallbackReason: optional flag is 7") == true)
    }

    @Test func hugeArrayCountIsRejectedBeforeAllocating() {
        self.expectMalformed(type: 10, mentioning: "count 4294967295") { payload in
            payload.writeInteger(UInt32.max)
            payload.writeInteger(1 as UInt64)
            payload.writeInteger(2 as UInt64)
        }
    }

    @Test func hugeStringLengthIsRejectedBeforeAllocating() {
        self.expectMalformed(type: 4, mentioning: "reason: truncated, needs 4294967295 bytes, 3 remain") { payload in
            payload.writeInteger(UInt32.max)
            payload.writeString("abc")
        }
    }

    @Test func invalidUTF8IsRejected() {
        self.expectMalformed(type: 4, mentioning: "not valid UTF-8") { payload in
            payload.writeInteger(2 as UInt32)
            payload.writeBytes([0xC3, 0x28])
        }
    }

    @Test func wrongNonceLengthIsRejected() {
        self.expectMalformed(type: 1, mentioning: "nonce: 31 bytes, must be exactly 32") { payload in
            payload.writeInteger(farmProtocolVersion)
            payload.writeInteger(1 as UInt32)
            payload.writeString("c")
            payload.writeInteger(31 as UInt32)
            payload.writeBytes(Array(repeating: 0, count: 31))
        }
    }

    @Test func duplicateOptionKeyIsRejected() throws {
        var settings = Samples.settings
        settings.options = ["a": "1"]
        var payload = ByteBuffer()
        Message.assign(self.assign(settings)).encode(into: &payload)
        var bytes = Array(buffer: payload)
        // The single option entry is "a" = "1": 00000001 'a' 00000001 '1', right before the start PTS.
        let entry: [UInt8] = [0, 0, 0, 1, 0x61, 0, 0, 0, 1, 0x31]
        let countIndex = try #require(self.index(of: entry, in: bytes)) - 4
        #expect(bytes[countIndex..<countIndex + 4] == [0, 0, 0, 1])
        bytes[countIndex + 3] = 2
        bytes.insert(contentsOf: entry, at: countIndex + 4)

        var tampered = ByteBuffer(bytes: bytes)
        let error = #expect(throws: ProtocolError.self) { try Message.decode(type: 5, payload: &tampered) }
        #expect(error?.code == .malformedPayload)
        #expect(error?.message.contains(#"key "a" appears more than once"#) == true)
    }

    private func index(of needle: [UInt8], in haystack: [UInt8]) -> Int? {
        haystack.indices.first { haystack[$0...].starts(with: needle) }
    }

    @Test func everyTruncationOfEveryMessageIsRejected() throws {
        for message in Samples.small {
            var payload = ByteBuffer()
            message.encode(into: &payload)
            for length in 0..<payload.readableBytes {
                var truncated = payload.getSlice(at: payload.readerIndex, length: length)!
                let error = #expect(throws: ProtocolError.self) {
                    try Message.decode(type: message.typeCode, payload: &truncated)
                }
                #expect(error?.code == .malformedPayload)
            }
        }
    }

    @Test func errorsNameTheMessage() {
        let error = #expect(throws: ProtocolError.self) {
            var payload = ByteBuffer(bytes: [0, 0])
            _ = try Message.decode(type: 2, payload: &payload)
        }
        #expect(error?.message.hasPrefix("hello (type 2): ") == true)
        #expect(error?.description.hasPrefix("malformed payload: hello (type 2): ") == true)
    }
}
