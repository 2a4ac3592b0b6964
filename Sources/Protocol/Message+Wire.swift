public import NIOCore

/// The frame type codes. Codes are never reused: a retired message keeps its number.
enum FrameType: UInt8 {
    case challenge = 1
    case hello = 2
    case welcome = 3
    case reject = 4
    case assign = 5
    case data = 6
    case result = 7
    case failure = 8
    case cancel = 9
    case heartbeat = 10
    case drain = 11
}

/// The size of SHA-256 digests and HMAC-SHA256 codes: nonces and proofs.
let digestSize = 32

extension Message {
    /// The frame type code this message travels under.
    public var typeCode: UInt8 {
        self.frameType.rawValue
    }

    var frameType: FrameType {
        switch self {
        case .challenge: .challenge
        case .hello: .hello
        case .welcome: .welcome
        case .reject: .reject
        case .assign: .assign
        case .data: .data
        case .result: .result
        case .failure: .failure
        case .cancel: .cancel
        case .heartbeat: .heartbeat
        case .drain: .drain
        }
    }

    /// Writes this message's payload, without the frame header, to the end of `buffer`.
    ///
    /// Use ``FarmWire/writeFrame(_:into:maxFrameSize:)`` to write a whole frame.
    public func encode(into buffer: inout ByteBuffer) {
        switch self {
        case .challenge(let challenge): challenge.write(to: &buffer)
        case .hello(let hello): hello.write(to: &buffer)
        case .welcome(let welcome): welcome.write(to: &buffer)
        case .reject(let reject): reject.write(to: &buffer)
        case .assign(let assign): assign.write(to: &buffer)
        case .data(let chunk): chunk.write(to: &buffer)
        case .result(let result): result.write(to: &buffer)
        case .failure(let failure): failure.write(to: &buffer)
        case .cancel(let taskID): buffer.writeInteger(taskID)
        case .heartbeat(let heartbeat): heartbeat.write(to: &buffer)
        case .drain: break
        }
    }

    /// Decodes a message from a frame's type code and its whole payload.
    ///
    /// The payload must parse exactly: a truncated payload, an invalid value or trailing bytes throw
    /// ``ProtocolError/Code/malformedPayload``; a type code this version does not know throws
    /// ``ProtocolError/Code/unknownFrameType``. ``data(_:)`` chunks are slices of `payload`, not copies.
    public static func decode(type: UInt8, payload: inout ByteBuffer) throws -> Message {
        guard let frameType = FrameType(rawValue: type) else {
            throw ProtocolError.unknownFrameType(type)
        }
        do {
            let message: Message
            switch frameType {
            case .challenge: message = .challenge(try Challenge(wire: &payload))
            case .hello: message = .hello(try Hello(wire: &payload))
            case .welcome: message = .welcome(try Welcome(wire: &payload))
            case .reject: message = .reject(try Reject(wire: &payload))
            case .assign: message = .assign(try Assign(wire: &payload))
            case .data: message = .data(try DataChunk(wire: &payload))
            case .result: message = .result(try TaskResult(wire: &payload))
            case .failure: message = .failure(try TaskFailure(wire: &payload))
            case .cancel: message = .cancel(taskID: try payload.readWireInteger("taskID"))
            case .heartbeat: message = .heartbeat(try Heartbeat(wire: &payload))
            case .drain: message = .drain
            }
            guard payload.readableBytes == 0 else {
                throw ProtocolError.malformed("\(payload.readableBytes) byte(s) left after the end of the payload")
            }
            return message
        } catch var error as ProtocolError {
            error.message = "\(frameType) (type \(type)): \(error.message)"
            throw error
        }
    }
}

extension ProtocolError {
    static func unknownFrameType(_ type: UInt8) -> ProtocolError {
        ProtocolError(
            code: .unknownFrameType,
            message: "frame type \(type) is not part of protocol version \(farmProtocolVersion) (known types are 1...11)"
        )
    }
}

// MARK: Payloads

/// A message body with a payload encoding. Fields are written in declaration order.
protocol WirePayload {
    init(wire buffer: inout ByteBuffer) throws
    func write(to buffer: inout ByteBuffer)
}

extension Challenge: WirePayload {
    init(wire buffer: inout ByteBuffer) throws {
        self.init(
            version: try buffer.readWireInteger("version"),
            coordinatorID: try buffer.readWireString("coordinatorID"),
            nonce: try buffer.readWireBytes("nonce", count: digestSize)
        )
    }

    func write(to buffer: inout ByteBuffer) {
        buffer.writeInteger(self.version)
        buffer.writeWireString(self.coordinatorID)
        buffer.writeWireBytes(self.nonce)
    }
}

extension Hello: WirePayload {
    init(wire buffer: inout ByteBuffer) throws {
        self.init(
            version: try buffer.readWireInteger("version"),
            nodeID: try buffer.readWireString("nodeID"),
            proof: try buffer.readWireBytes("proof", count: digestSize),
            slots: try buffer.readWireInteger("slots"),
            threads: try buffer.readWireInteger("threads"),
            capabilitiesJSON: try buffer.readWireString("capabilitiesJSON")
        )
        // A hello of an earlier version ends here (its version is then refused in the handshake, with the reason);
        // one of this version must go on.
        if buffer.readableBytes > 0 || self.version == farmProtocolVersion {
            let raw: UInt8 = try buffer.readWireInteger("secret")
            guard let secret = Hello.JoinSecret(rawValue: raw) else {
                throw ProtocolError.malformed("secret: \(raw) is neither 0 (join token) nor 1 (credential)")
            }
            self.secret = secret
        }
    }

    func write(to buffer: inout ByteBuffer) {
        buffer.writeInteger(self.version)
        buffer.writeWireString(self.nodeID)
        buffer.writeWireBytes(self.proof)
        buffer.writeInteger(self.slots)
        buffer.writeInteger(self.threads)
        buffer.writeWireString(self.capabilitiesJSON)
        buffer.writeInteger(self.secret.rawValue)
    }
}

extension Welcome: WirePayload {
    init(wire buffer: inout ByteBuffer) throws {
        self.init(
            coordinatorID: try buffer.readWireString("coordinatorID"),
            heartbeatSeconds: try buffer.readWireInteger("heartbeatSeconds"),
            proof: try buffer.readWireBytes("proof", count: digestSize),
            credential: try buffer.readWireBytes("credential")
        )
        guard credential.isEmpty || credential.count == digestSize else {
            throw ProtocolError.malformed("credential: \(credential.count) bytes, must be 0 or \(digestSize)")
        }
    }

    func write(to buffer: inout ByteBuffer) {
        buffer.writeWireString(self.coordinatorID)
        buffer.writeInteger(self.heartbeatSeconds)
        buffer.writeWireBytes(self.proof)
        buffer.writeWireBytes(self.credential)
    }
}

extension Reject: WirePayload {
    init(wire buffer: inout ByteBuffer) throws {
        self.init(reason: try buffer.readWireString("reason"))
    }

    func write(to buffer: inout ByteBuffer) {
        buffer.writeWireString(self.reason)
    }
}

extension EncodeSettings: WirePayload {
    init(wire buffer: inout ByteBuffer) throws {
        self.init(
            codec: try buffer.readWireString("settings.codec"),
            encoder: try buffer.readWireString("settings.encoder"),
            crf: try buffer.readWireInteger("settings.crf"),
            preset: try buffer.readWireString("settings.preset"),
            pixelFormat: try buffer.readWireString("settings.pixelFormat"),
            width: try buffer.readWireInteger("settings.width"),
            height: try buffer.readWireInteger("settings.height"),
            timeBaseNum: try buffer.readWireInteger("settings.timeBaseNum"),
            timeBaseDen: try buffer.readWireInteger("settings.timeBaseDen"),
            frameRateNum: try buffer.readWireInteger("settings.frameRateNum"),
            frameRateDen: try buffer.readWireInteger("settings.frameRateDen"),
            sampleAspectNum: try buffer.readWireInteger("settings.sampleAspectNum"),
            sampleAspectDen: try buffer.readWireInteger("settings.sampleAspectDen"),
            colorRange: try buffer.readWireInteger("settings.colorRange"),
            colorPrimaries: try buffer.readWireInteger("settings.colorPrimaries"),
            colorTransfer: try buffer.readWireInteger("settings.colorTransfer"),
            colorSpace: try buffer.readWireInteger("settings.colorSpace"),
            chromaLocation: try buffer.readWireInteger("settings.chromaLocation"),
            gopSize: try buffer.readWireInteger("settings.gopSize"),
            threads: try buffer.readWireInteger("settings.threads"),
            options: try buffer.readWireStringDictionary("settings.options")
        )
    }

    func write(to buffer: inout ByteBuffer) {
        buffer.writeWireString(self.codec)
        buffer.writeWireString(self.encoder)
        buffer.writeInteger(self.crf)
        buffer.writeWireString(self.preset)
        buffer.writeWireString(self.pixelFormat)
        buffer.writeInteger(self.width)
        buffer.writeInteger(self.height)
        buffer.writeInteger(self.timeBaseNum)
        buffer.writeInteger(self.timeBaseDen)
        buffer.writeInteger(self.frameRateNum)
        buffer.writeInteger(self.frameRateDen)
        buffer.writeInteger(self.sampleAspectNum)
        buffer.writeInteger(self.sampleAspectDen)
        buffer.writeInteger(self.colorRange)
        buffer.writeInteger(self.colorPrimaries)
        buffer.writeInteger(self.colorTransfer)
        buffer.writeInteger(self.colorSpace)
        buffer.writeInteger(self.chromaLocation)
        buffer.writeInteger(self.gopSize)
        buffer.writeInteger(self.threads)
        buffer.writeWireStringDictionary(self.options)
    }
}

extension Assign: WirePayload {
    init(wire buffer: inout ByteBuffer) throws {
        self.init(
            taskID: try buffer.readWireInteger("taskID"),
            jobID: try buffer.readWireString("jobID"),
            segmentIndex: try buffer.readWireInteger("segmentIndex"),
            attempt: try buffer.readWireInteger("attempt"),
            settings: try EncodeSettings(wire: &buffer),
            startPTS: try buffer.readWireInteger("startPTS"),
            endPTS: try buffer.readWireOptional("endPTS") { try $0.readWireInteger("endPTS") },
            expectedFrames: try buffer.readWireInteger("expectedFrames"),
            byteLength: try buffer.readWireInteger("byteLength"),
            checksum: try buffer.readWireBytes("checksum", count: SegmentChecksum.byteCount)
        )
    }

    func write(to buffer: inout ByteBuffer) {
        buffer.writeInteger(self.taskID)
        buffer.writeWireString(self.jobID)
        buffer.writeInteger(self.segmentIndex)
        buffer.writeInteger(self.attempt)
        self.settings.write(to: &buffer)
        buffer.writeInteger(self.startPTS)
        buffer.writeWireOptional(self.endPTS) { $0.writeInteger($1) }
        buffer.writeInteger(self.expectedFrames)
        buffer.writeInteger(self.byteLength)
        buffer.writeWireBytes(self.checksum)
    }
}

extension DataChunk: WirePayload {
    /// The payload bytes in front of the chunk's own bytes: the task ID and the byte string's length.
    static let payloadOverhead = 8 + 4

    init(wire buffer: inout ByteBuffer) throws {
        self.init(
            taskID: try buffer.readWireInteger("taskID"),
            bytes: try buffer.readWireSlice("bytes")
        )
    }

    func write(to buffer: inout ByteBuffer) {
        buffer.writeInteger(self.taskID)
        buffer.writeWireBytes(self.bytes)
    }
}

extension TaskResult: WirePayload {
    init(wire buffer: inout ByteBuffer) throws {
        self.init(
            taskID: try buffer.readWireInteger("taskID"),
            encoder: try buffer.readWireString("encoder"),
            frames: try buffer.readWireInteger("frames"),
            byteLength: try buffer.readWireInteger("byteLength"),
            checksum: try buffer.readWireBytes("checksum", count: SegmentChecksum.byteCount),
            decodeSeconds: try buffer.readWireDouble("decodeSeconds"),
            encodeSeconds: try buffer.readWireDouble("encodeSeconds"),
            fallbackReason: try buffer.readWireOptional("fallbackReason") { try $0.readWireString("fallbackReason") }
        )
    }

    func write(to buffer: inout ByteBuffer) {
        buffer.writeInteger(self.taskID)
        buffer.writeWireString(self.encoder)
        buffer.writeInteger(self.frames)
        buffer.writeInteger(self.byteLength)
        buffer.writeWireBytes(self.checksum)
        buffer.writeWireDouble(self.decodeSeconds)
        buffer.writeWireDouble(self.encodeSeconds)
        buffer.writeWireOptional(self.fallbackReason) { $0.writeWireString($1) }
    }
}

extension TaskFailure: WirePayload {
    init(wire buffer: inout ByteBuffer) throws {
        self.init(
            taskID: try buffer.readWireInteger("taskID"),
            reason: try buffer.readWireString("reason"),
            retryable: try buffer.readWireBool("retryable"),
            kind: try Self.readKind(&buffer)
        )
    }

    private static func readKind(_ buffer: inout ByteBuffer) throws -> Kind {
        let raw: UInt8 = try buffer.readWireInteger("kind")
        guard let kind = Kind(rawValue: raw) else {
            throw ProtocolError.malformed("kind: UInt8 is \(raw), must be 0 (segment), 1 (refused) or 2 (node)")
        }
        return kind
    }

    func write(to buffer: inout ByteBuffer) {
        buffer.writeInteger(self.taskID)
        buffer.writeWireString(self.reason)
        buffer.writeWireBool(self.retryable)
        buffer.writeInteger(self.kind.rawValue)
    }
}

extension Heartbeat: WirePayload {
    init(wire buffer: inout ByteBuffer) throws {
        self.init(
            activeTasks: try buffer.readWireArray("activeTasks", minimumElementSize: 16) { buffer in
                TaskProgress(
                    taskID: try buffer.readWireInteger("activeTasks.taskID"),
                    framesDone: try buffer.readWireInteger("activeTasks.framesDone")
                )
            }
        )
    }

    func write(to buffer: inout ByteBuffer) {
        buffer.writeWireArray(self.activeTasks) { buffer, progress in
            buffer.writeInteger(progress.taskID)
            buffer.writeInteger(progress.framesDone)
        }
    }
}
