internal import CFFmpeg
public import FarmMedia

/// One segment to encode: a packet file of source packets in, a packet file of encoded packets out.
public struct SegmentEncodeRequest: Sendable {
    public var input: String
    public var output: String
    public var config: EncoderConfig
    /// Frames presented before `startPTS` or at/after `endPTS` belong to other segments; nil = unbounded.
    public var startPTS: Int64?
    public var endPTS: Int64?
    /// The frame count the coordinator expects from its index; nil skips the check.
    public var expectedFrames: Int?
    public var decoderThreads: Int
    /// Test-only (`FARM_TEST_WRONG_PICTURES` on a node): every frame's luma is inverted before it is encoded, so the
    /// segment has the right frames at the right times and the wrong pictures, as a hostile node's might.
    public var invertPictures = false

    public init(
        input: String, output: String, config: EncoderConfig, startPTS: Int64?, endPTS: Int64?, expectedFrames: Int?,
        decoderThreads: Int = 1
    ) {
        self.input = input
        self.output = output
        self.config = config
        self.startPTS = startPTS
        self.endPTS = endPTS
        self.expectedFrames = expectedFrames
        self.decoderThreads = decoderThreads
    }
}

/// What an encoded segment holds and what it cost.
public struct SegmentEncodeReport: Sendable {
    public var frames: Int
    public var encoder: String
    public var firstPTS: Int64
    public var lastPTS: Int64
    public var decodeSeconds: Double
    public var encodeSeconds: Double
    public var verifySeconds: Double
    public var outputBytes: Int64
    public var parameters: CodecParameters
    /// Why the hardware path was left for software on this segment, if it was.
    public var fallbackReason: String?
}

/// Decodes a segment, keeps exactly the frames it owns with their source timestamps, encodes them
/// with a fresh encoder (so the segment opens on an IDR picture, closed GOPs), writes the packets,
/// then decodes its own output to prove it decodes and holds the same frame times.
public enum SegmentEncoder {
    /// Tries each attempt in order. A hardware attempt that fails at open or in the middle of the
    /// segment puts its encoder in cool-down and the segment is encoded again from its start with the
    /// next attempt (the job's software encoder); the report names the encoder actually used.
    public static func encode(
        _ request: SegmentEncodeRequest, attempts: [EncodeAttempt], cooldown: EncoderCooldown,
        progress: (Int) -> Void = { _ in }, isCancelled: () -> Bool = { false }
    ) throws -> SegmentEncodeReport {
        var reasons: [String] = []
        for (i, attempt) in attempts.enumerated() {
            var single = request
            single.config = attempt.config
            do {
                var report = try encodeOnce(single, fault: attempt.fault, progress: progress, isCancelled: isCancelled)
                report.fallbackReason = reasons.isEmpty ? nil : reasons.joined(separator: "; ")
                return report
            } catch let error as MediaError where attempt.isHardware && error.code != .cancelled && i + 1 < attempts.count {
                cooldown.coolDown(attempt.config.encoder)
                reasons.append("\(attempt.config.encoder) failed: \(error.message)")
                progress(0)
            }
        }
        throw MediaError(.unsupported, "no encoder to try for \(request.input)")
    }

    /// Encodes with `request.config` alone.
    public static func encode(
        _ request: SegmentEncodeRequest, progress: (Int) -> Void = { _ in }, isCancelled: () -> Bool = { false }
    ) throws -> SegmentEncodeReport {
        try encodeOnce(request, fault: nil, progress: progress, isCancelled: isCancelled)
    }

    /// Inverts an 8-bit frame's first plane in place (the `invertPictures` test fault).
    static func invertLuma(_ frame: UnsafeMutablePointer<AVFrame>) throws {
        guard av_frame_make_writable(frame) >= 0, let plane = frame.pointee.data.0 else {
            throw MediaError(.ffmpeg, "cannot make a frame writable")
        }
        let stride = Int(frame.pointee.linesize.0)
        for row in 0..<Int(frame.pointee.height) {
            let line = plane + row * stride
            for x in 0..<Int(frame.pointee.width) { line[x] = 255 &- line[x] }
        }
    }

    static func encodeOnce(
        _ request: SegmentEncodeRequest, fault: HardwareFault?, progress: (Int) -> Void, isCancelled: () -> Bool
    ) throws -> SegmentEncodeReport {
        if fault == .atOpen {
            throw MediaError(.ffmpeg, "opening \(request.config.encoder) failed (injected fault)")
        }
        let clock = ContinuousClock()
        let reader = try PacketFileReader(path: request.input)
        guard reader.header.parameters.isVideo else {
            throw MediaError(.invalidInput, "\(request.input): segment does not hold video")
        }
        let encoder = try VideoEncoder(config: request.config)
        let converter = FrameConverter(
            width: request.config.width, height: request.config.height, pixelFormat: request.config.pixelFormat)
        let header = PacketStreamHeader(
            parameters: try encoder.parameters, timeBase: request.config.timeBase, frameRate: request.config.frameRate)
        let writer = try PacketFileWriter(path: request.output, header: header)
        let packet = Packet()
        var inputTimes: [Int64] = []
        var encodeTime = Duration.zero
        var packets = 0
        let start = clock.now

        func drain() throws {
            while try encoder.receive(into: packet) {
                try writer.write(packet)
                packets += 1
            }
        }

        try decodeAll(reader, threads: request.decoderThreads, isCancelled: isCancelled) { frame in
            let pts = frame.pointee.best_effort_timestamp
            guard pts != noTimestamp else {
                throw MediaError(.unsupported, "\(request.input): a decoded frame has no timestamp")
            }
            if let s = request.startPTS, pts < s { return }
            if let e = request.endPTS, pts >= e { return }
            if let last = inputTimes.last, pts <= last {
                throw MediaError(.invalidInput, "\(request.input): frame time \(pts) does not increase after \(last)")
            }
            inputTimes.append(pts)
            if case .afterFrames(let n) = fault, inputTimes.count > n {
                throw MediaError(.ffmpeg, "\(request.config.encoder) failed after \(n) frames (injected fault)")
            }
            let t0 = clock.now
            let converted = try converter.convert(frame)
            if request.invertPictures { try invertLuma(converted) }
            converted.pointee.pts = pts
            converted.pointee.pict_type = AV_PICTURE_TYPE_NONE
            try encoder.send(converted)
            try drain()
            encodeTime += clock.now - t0
            if inputTimes.count % 16 == 0 { progress(inputTimes.count) }
        }
        let t0 = clock.now
        try encoder.send(nil)
        try drain()
        encodeTime += clock.now - t0
        try writer.close()
        let total = clock.now - start
        progress(inputTimes.count)

        if let expected = request.expectedFrames, expected != inputTimes.count {
            throw MediaError(
                .mismatch, "\(request.input): decoded \(inputTimes.count) frames of this segment, expected \(expected)")
        }
        guard !inputTimes.isEmpty else { throw MediaError(.invalidInput, "\(request.input): segment has no frames") }
        guard packets == inputTimes.count else {
            throw MediaError(
                .mismatch, "\(request.config.encoder) produced \(packets) packets for \(inputTimes.count) frames")
        }

        // Decode what was written: every frame must decode cleanly, and they must hold exactly the frame times that
        // went in. This is the full decode the coordinator's verification of the joined file counts on.
        let verifyStart = clock.now
        var index = 0
        do {
            let written = try PacketFileReader(path: request.output)
            try decodeAll(written, threads: request.decoderThreads, check: true, isCancelled: isCancelled) { frame in
                let pts = frame.pointee.best_effort_timestamp
                guard index < inputTimes.count, pts == inputTimes[index] else {
                    throw MediaError(
                        .verificationFailed,
                        "encoded segment frame \(index) has time \(pts), expected \(index < inputTimes.count ? String(inputTimes[index]) : "none")")
                }
                index += 1
            }
        } catch let error as MediaError
            where error.code != .cancelled && error.code != .verificationFailed && error.code != .unsupported
        {
            // The encoder's own output is at fault, not the source: say so, and let another attempt retry it.
            throw MediaError(
                .verificationFailed, "\(request.config.encoder) wrote a segment that does not decode cleanly: \(error.message)")
        }
        guard index == inputTimes.count else {
            throw MediaError(.verificationFailed, "encoded segment decodes to \(index) frames, \(inputTimes.count) went in")
        }
        return SegmentEncodeReport(
            frames: inputTimes.count, encoder: request.config.encoder, firstPTS: inputTimes.first!,
            lastPTS: inputTimes.last!, decodeSeconds: (total - encodeTime).seconds, encodeSeconds: encodeTime.seconds,
            verifySeconds: (clock.now - verifyStart).seconds, outputBytes: writer.bytesWritten,
            parameters: header.parameters, fallbackReason: nil)
    }
}
