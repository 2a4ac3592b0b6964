internal import CFFmpeg

#if canImport(Glibc)
    internal import Glibc
#endif

/// What a returned segment is checked against: the source packets the coordinator sent for it, the
/// frames it owns and the job's pinned encoder settings.
public struct SegmentCheck: Sendable {
    public var segment: Int
    /// The segment's source packet file (`src-N.pkt`), as sent to the node.
    public var sourcePath: String
    /// The segment owns the source frames presented in `[startPTS, endPTS)`; nil is unbounded.
    public var startPTS: Int64?
    public var endPTS: Int64?
    /// The job's codec ("h264", "hevc", "av1") and software encoder ("libx264", ...).
    public var codec: String
    public var encoder: String
    public var crf: Int
    public var pixelFormat: String
    public var width: Int
    public var height: Int
    public var sampleAspectRatio: Rational
    public var colorRange: UInt32
    public var colorPrimaries: UInt32
    public var colorTransfer: UInt32
    public var colorSpace: UInt32
    /// Keyframe interval in frames; 0 leaves it to the encoder.
    public var gopSize: Int
    /// Frames compared at random positions, besides the first and the last.
    public var randomSamples = SegmentCheck.defaultRandomSamples
    public static let defaultRandomSamples = 6
    /// A fixed SSIM below which a result is refused; nil (the rule) measures each compared frame's
    /// threshold with a ``QualityYardstick`` at `yardstickSteps` CRF steps above the job's.
    public var threshold: Double?
    public var yardstickSteps = 16
    /// How far below its yardstick a frame may score.
    public var yardstickSlack = 0.05
    /// Decoder threads for each of the two decodes.
    public var threads = 1

    public init(
        segment: Int, sourcePath: String, startPTS: Int64?, endPTS: Int64?, codec: String, encoder: String, crf: Int,
        pixelFormat: String, width: Int, height: Int, sampleAspectRatio: Rational = Rational(0, 1),
        colorRange: UInt32 = 0, colorPrimaries: UInt32 = 2, colorTransfer: UInt32 = 2, colorSpace: UInt32 = 2,
        gopSize: Int = 0
    ) {
        self.segment = segment
        self.sourcePath = sourcePath
        self.startPTS = startPTS
        self.endPTS = endPTS
        self.codec = codec
        self.encoder = encoder
        self.crf = crf
        self.pixelFormat = pixelFormat
        self.width = width
        self.height = height
        self.sampleAspectRatio = sampleAspectRatio
        self.colorRange = colorRange
        self.colorPrimaries = colorPrimaries
        self.colorTransfer = colorTransfer
        self.colorSpace = colorSpace
        self.gopSize = gopSize
    }
}

/// What an accepted segment was found to hold.
public struct SegmentVerdict: Sendable {
    public struct Score: Sendable {
        public var frame: Int
        public var ssim: Double
        /// The SSIM this frame had to reach.
        public var threshold: Double
        /// How far above its threshold the frame scored (negative: refused).
        public var margin: Double { ssim - threshold }
    }

    public var frames: Int
    /// The compared frames, in frame order.
    public var scores: [Score]
    public var seconds: Double

    /// The compared frame nearest its threshold.
    public var closest: Score? { scores.min { $0.margin < $1.margin } }
}

/// Checks a segment returned by a node as if the node were hostile (see docs/verification.md):
/// a full strict decode whose frames must be exactly the source's (count and times), the job's
/// stream (codec, pixel format, size, aspect, colour, closed GOPs from an IDR, the job's encoder and
/// CRF where the stream names them, no packet copied from the source), and pictures that match the
/// source's at frames chosen at random once the result is here, plus its first and last frames.
/// Runs blocking FFmpeg work: call it through `Offload.run`.
public enum SegmentVerifier {
    /// A refusal within this much of the threshold is reported as doubtful.
    public static let doubtfulMargin = 0.01

    /// The job's CRF on x264's scale, for the yardstick: x265's and SVT-AV1's defaults (28, 35)
    /// give about the quality of x264's 23.
    public static func x264Equivalent(codec: String, crf: Int) -> Int {
        let offset =
            switch codec {
            case "hevc": 5
            case "av1": 12
            default: 0
            }
        return min(max(crf - offset, 0), 51)
    }

    public static func verify(
        resultPath: String, _ check: SegmentCheck, isCancelled: () -> Bool = { false }
    ) throws -> SegmentVerdict {
        let clock = ContinuousClock()
        let start = clock.now
        do {
            var verdict = try run(resultPath: resultPath, check, isCancelled: isCancelled)
            verdict.seconds = (clock.now - start).seconds
            return verdict
        } catch let error as MediaError where error.code == .cancelled {
            throw error
        } catch let error as MediaError {
            throw MediaError(
                error.code == .verificationDoubtful ? .verificationDoubtful : .verificationFailed,
                "segment \(check.segment) refused: \(error.message)", averror: error.averror)
        }
    }

    /// The source's packets as the check needs them: presentation times in decode order, keyframes,
    /// and a digest of each packet's bytes (a result that copies them is no encode).
    private struct SourcePackets {
        var times: [Int64] = []
        var keyframes: [Bool] = []
        var digests: Set<Int> = []
    }

    private static func readSource(_ check: SegmentCheck, isCancelled: () -> Bool) throws -> (SourcePackets, PacketStreamHeader) {
        let reader = try PacketFileReader(path: check.sourcePath)
        let packet = Packet()
        var source = SourcePackets()
        while try reader.read(into: packet) {
            if isCancelled() { throw MediaError(.cancelled, "\(check.sourcePath): verification cancelled") }
            guard let pts = presentationTime(packet) else {
                throw MediaError(.unsupported, "source packet \(source.times.count) has no time to check against")
            }
            source.times.append(packet.isDiscarded ? noTimestamp : pts)
            source.keyframes.append(packet.isKeyframe)
            source.digests.insert(digest(packet.data))
        }
        return (source, reader.header)
    }

    private static func digest(_ bytes: UnsafeRawBufferPointer) -> Int {
        var hasher = Hasher()
        hasher.combine(bytes.count)
        hasher.combine(bytes: bytes)
        return hasher.finalize()
    }

    private static func run(resultPath: String, _ check: SegmentCheck, isCancelled: () -> Bool) throws -> SegmentVerdict {
        let (source, sourceHeader) = try readSource(check, isCancelled: isCancelled)
        let expected = source.times.filter { pts in
            pts != noTimestamp && (check.startPTS.map { pts >= $0 } ?? true) && (check.endPTS.map { pts < $0 } ?? true)
        }.sorted()
        guard !expected.isEmpty else { throw MediaError(.invalidInput, "the source segment holds no frame of its own") }
        // Chosen now that the result is here, by the system's CSPRNG: the node cannot know them.
        var samples: Set<Int> = [0, expected.count - 1]
        var random = SystemRandomNumberGenerator()
        if expected.count > 2 {
            for _ in 0..<min(check.randomSamples, expected.count - 2) {
                samples.insert(Int.random(in: 1..<expected.count - 1, using: &random))
            }
        }
        let result = try decodeResult(resultPath, check, expected: expected, samples: samples, source: source, isCancelled: isCancelled)
        let scores = try compare(
            result, check, sourceHeader: sourceHeader, source: source, expected: expected, isCancelled: isCancelled)
        let verdict = SegmentVerdict(frames: expected.count, scores: scores, seconds: 0)
        if let low = verdict.closest, low.margin < 0 {
            let doubtful = low.margin >= -doubtfulMargin
            let doubt = doubtful ? " (doubtful: within \(doubtfulMargin) of the threshold, a third encode should settle it)" : ""
            throw MediaError(
                doubtful ? .verificationDoubtful : .verificationFailed,
                "frame \(low.frame) SSIM \(format(low.ssim)) below \(format(low.threshold)) (the source's picture)\(doubt)")
        }
        return verdict
    }

    static func format(_ value: Double) -> String {
        let scaled = (value * 1000).rounded()
        guard scaled.isFinite, scaled.magnitude < 1e9 else { return "\(value)" }
        let n = Int(scaled)
        let fraction = String(abs(n) % 1000)
        return "\(n < 0 ? "-" : "")\(abs(n) / 1000).\(String(repeating: "0", count: 3 - fraction.count))\(fraction)"
    }

    /// The sampled frames' luma, by frame number.
    private typealias Pictures = [Int: LumaPlane]

    private static func decodeResult(
        _ path: String, _ check: SegmentCheck, expected: [Int64], samples: Set<Int>, source: SourcePackets,
        isCancelled: () -> Bool
    ) throws -> Pictures {
        let reader = try PacketFileReader(path: path)
        try StreamRules.checkHeader(reader.header.parameters, check)
        let lengthSize = ParameterSets.lengthSize(reader.header.parameters)
        let decoder = try VideoDecoder(header: reader.header, threads: check.threads, strict: true)
        let extractor = LumaExtractor(width: check.width, height: check.height)
        let packet = Packet()
        let frame = Frame()
        var gop = StreamRules.GOPWalk(check: check, lengthSize: lengthSize)
        var copied = 0
        var frames = 0
        var pictures: Pictures = [:]

        func take() throws {
            while try decoder.receive(into: frame) {
                let f = frame.pointer
                guard frames < expected.count else {
                    throw MediaError(.verificationFailed, "decodes to more than the segment's \(expected.count) frames")
                }
                if frame.isDamaged { throw MediaError(.verificationFailed, "frame \(frames) decodes with errors") }
                let pts = f.pointee.best_effort_timestamp
                guard pts == expected[frames] else {
                    throw MediaError(
                        .verificationFailed, "frame \(frames) has the time \(pts), the source's frame \(frames) \(expected[frames])")
                }
                try StreamRules.checkFrame(f, number: frames, check)
                if samples.contains(frames) { pictures[frames] = try extractor.luma(of: f) }
                frames += 1
            }
        }

        while try reader.read(into: packet) {
            if isCancelled() { throw MediaError(.cancelled, "\(path): verification cancelled") }
            guard gop.packets < expected.count else {
                throw MediaError(.verificationFailed, "holds more packets than the segment's \(expected.count) frames")
            }
            guard packet.pts != noTimestamp, packet.pts.magnitude <= SourceIndex.timestampLimit.magnitude else {
                throw MediaError(.verificationFailed, "packet \(gop.packets) has no usable time (\(packet.pts))")
            }
            if source.digests.contains(digest(packet.data)) {
                copied += 1
                // A tiny packet (an all-skip picture) may come out the same; a large one never does.
                if packet.size >= 128 || copied * 2 > expected.count {
                    throw MediaError(
                        .verificationFailed, "packet \(gop.packets) is byte-identical to a source packet (a passthrough, not an encode)")
                }
            }
            try gop.add(packet)
            do {
                try decoder.send(packet)
                try take()
            } catch let error as MediaError where error.code != .verificationFailed && error.code != .cancelled {
                throw MediaError(.verificationFailed, "frame \(frames) does not decode: \(error.message)")
            }
        }
        do {
            try decoder.send(nil)
            try take()
        } catch let error as MediaError where error.code != .verificationFailed && error.code != .cancelled {
            throw MediaError(.verificationFailed, "frame \(frames) does not decode: \(error.message)")
        }
        guard frames == expected.count else {
            throw MediaError(.verificationFailed, "decodes to \(frames) frames, the segment has \(expected.count)")
        }
        guard gop.packets == frames else {
            throw MediaError(.verificationFailed, "holds \(gop.packets) packets for \(frames) frames")
        }
        try gop.finish()
        return pictures
    }

    /// Decodes the source's GOPs that hold a sampled frame (and those right before them, whose
    /// pictures an open GOP's leading frames refer to) and scores each sampled frame against the result's.
    private static func compare(
        _ pictures: Pictures, _ check: SegmentCheck, sourceHeader: PacketStreamHeader, source: SourcePackets,
        expected: [Int64], isCancelled: () -> Bool
    ) throws -> [SegmentVerdict.Score] {
        var wanted: [Int64: Int] = [:]
        for frame in pictures.keys { wanted[expected[frame]] = frame }
        // GOP of each source packet (decode order), and whether that GOP must be decoded.
        var gopOf: [Int] = []
        var current = -1
        for key in source.keyframes {
            if key || current < 0 { current += 1 }
            gopOf.append(current)
        }
        var needed = Set<Int>()
        for (i, pts) in source.times.enumerated() where wanted[pts] != nil {
            needed.insert(gopOf[i])
            needed.insert(gopOf[i] - 1)
        }
        let reader = try PacketFileReader(path: check.sourcePath)
        let decoder = try VideoDecoder(header: sourceHeader, threads: check.threads)
        let extractor = LumaExtractor(width: check.width, height: check.height)
        let packet = Packet()
        let frame = Frame()
        var scores: [SegmentVerdict.Score] = []
        var fed = false
        var yardstick: QualityYardstick?

        func take() throws {
            while try decoder.receive(into: frame) {
                let pts = frame.pointer.pointee.best_effort_timestamp
                guard let number = wanted.removeValue(forKey: pts), let result = pictures[number] else { continue }
                let luma = try extractor.luma(of: frame.pointer)
                let threshold: Double
                if let fixed = check.threshold {
                    threshold = fixed
                } else {
                    if yardstick == nil {
                        yardstick = try QualityYardstick(
                            width: check.width, height: check.height,
                            crf: x264Equivalent(codec: check.codec, crf: check.crf) + check.yardstickSteps)
                    }
                    threshold = try yardstick!.score(frame.pointer, luma: luma) - check.yardstickSlack
                }
                scores.append(.init(frame: number, ssim: FrameComparison.ssim(luma, result), threshold: threshold))
            }
        }

        var index = 0
        while !wanted.isEmpty, try reader.read(into: packet) {
            if isCancelled() { throw MediaError(.cancelled, "\(check.sourcePath): verification cancelled") }
            defer { index += 1 }
            guard index < gopOf.count else { break }
            if needed.contains(gopOf[index]) {
                try decoder.send(packet)
                fed = true
                try take()
            } else if fed {
                try decoder.send(nil)
                try take()
                decoder.reset()
                fed = false
            }
        }
        if fed {
            try decoder.send(nil)
            try take()
        }
        if let missing = wanted.values.min() {
            throw MediaError(.unsupported, "the source's frame \(missing) did not decode for the comparison")
        }
        return scores.sorted { $0.frame < $1.frame }
    }
}
