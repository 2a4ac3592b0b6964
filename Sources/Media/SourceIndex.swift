package import CFFmpeg

/// One keyframe of the source's video stream, in decode order.
public struct Keyframe: Sendable, Hashable {
    /// The packet's position in decode order among the video stream's packets.
    public var packetIndex: Int
    public var pts: Int64
    public var dts: Int64
    /// Byte position in the file, -1 when unknown.
    public var position: Int64
    /// An IDR picture: decoding can start here and nothing after it references what came before.
    public var isClean: Bool
}

/// The keyframe index of a source's video stream, read from packet flags without decoding.
///
/// `frameCounts[i]` counts the frames whose presentation time lies in `[keyframes[i].pts,
/// keyframes[i+1].pts)` (the first also counts frames before the first keyframe): frame counts of any
/// keyframe-aligned segment come from it without keeping one entry per frame, so memory stays flat.
public struct SourceIndex: Sendable {
    public var videoStreamIndex: Int
    public var timeBase: Rational
    public var frameRate: Rational
    public var keyframes: [Keyframe]
    public var frameCounts: [Int]
    public var packetCount: Int
    public var totalFrames: Int
    /// The smallest and the largest presentation time, and the largest end (pts + duration).
    public var firstPTS: Int64
    public var lastPTS: Int64
    public var endPTS: Int64
    public var parameters: CodecParameters

    /// The most keyframes an index holds (some 48 bytes each): a day of all-intra video at 50 fps.
    public static let maxKeyframes = 4_320_000
    /// The largest magnitude a timestamp or duration may have, so that every sum and difference of
    /// two of them fits in 64 bits (FFmpeg's own times are unbounded).
    public static let timestampLimit: Int64 = 1 << 61

    /// Scans the video stream of `path`. `isCancelled` is polled between packets; reading stops with
    /// one line after `seconds` or at `maxKeyframes`, and so do timestamps past `timestampLimit`.
    public static func scan(
        path: String, seconds: Double? = 3600, maxKeyframes: Int = maxKeyframes, isCancelled: () -> Bool = { false }
    ) throws -> SourceIndex {
        try checkRegularFile(path)
        let input = try InputFile(path: path)
        // Every field of the demuxer's stream is read while `input` (which frees it) is alive.
        return try withExtendedLifetime(input) {
            try scan(input, seconds: seconds, maxKeyframes: maxKeyframes, isCancelled: isCancelled)
        }
    }

    private static func scan(
        _ input: InputFile, seconds: Double?, maxKeyframes: Int, isCancelled: () -> Bool
    ) throws -> SourceIndex {
        let path = input.path
        guard let video = input.bestVideoStream() else {
            throw MediaError(.noVideoStream, "\(path): has no video stream")
        }
        input.discardStreams { $0 == video }
        input.limitReading(toSeconds: seconds)
        let stream = input.stream(video)
        let parameters = CodecParameters(stream.pointee.codecpar)
        let codecID = stream.pointee.codecpar.pointee.codec_id
        let timeBase = Rational(stream.pointee.time_base)
        let frameRate = Rational(stream.pointee.avg_frame_rate.num > 0 ? stream.pointee.avg_frame_rate : stream.pointee.r_frame_rate)
        guard timeBase.isValid else { throw MediaError(.invalidInput, "\(path): video time base \(timeBase) is not positive") }
        var keyframes: [Keyframe] = []
        var counts: [Int] = []
        var before = 0
        var packetIndex = 0
        var firstPTS = Int64.max
        var lastPTS = Int64.min
        var endPTS = Int64.min
        var total = 0
        let packet = Packet()
        while try input.read(into: packet) {
            guard packet.streamIndex == video else { continue }
            if isCancelled() { throw MediaError(.cancelled, "\(path): scan cancelled") }
            defer { packetIndex += 1 }
            guard let pts = presentationTime(packet) else {
                throw MediaError(.unsupported, "\(path): video packet \(packetIndex) has no timestamp")
            }
            let duration = max(packet.duration, 0)
            for (name, value) in [("time", pts), ("decode time", packet.dts), ("duration", duration)]
            where value != noTimestamp && value.magnitude > timestampLimit.magnitude {
                throw MediaError(
                    .invalidInput, "\(path): video packet \(packetIndex) has the \(name) \(value), beyond ±2^61 ticks")
            }
            if packet.isKeyframe, pts > (keyframes.last?.pts ?? Int64.min) {
                guard keyframes.count < maxKeyframes else {
                    throw MediaError(.unsupported, "\(path): has more than \(maxKeyframes) keyframes")
                }
                keyframes.append(
                    Keyframe(
                        packetIndex: packetIndex, pts: pts, dts: packet.dts, position: packet.position,
                        isClean: isCleanKeyframe(codecID: codecID, extradata: parameters.extradata, packet: packet.data)))
                counts.append(0)
            }
            if packet.isDiscarded { continue }
            total += 1
            firstPTS = min(firstPTS, pts)
            lastPTS = max(lastPTS, pts)
            // Both terms are within ±2^61: the sum fits.
            endPTS = max(endPTS, pts + duration)
            if let bin = bin(of: pts, in: keyframes) { counts[bin] += 1 } else { before += 1 }
        }
        guard !keyframes.isEmpty, total > 0 else {
            throw MediaError(.invalidInput, "\(path): video stream has no decodable keyframe")
        }
        counts[0] += before
        return SourceIndex(
            videoStreamIndex: video, timeBase: timeBase, frameRate: frameRate,
            keyframes: keyframes, frameCounts: counts, packetCount: packetIndex, totalFrames: total,
            firstPTS: firstPTS, lastPTS: lastPTS, endPTS: endPTS, parameters: parameters)
    }

    /// The packets (decode order) a node needs to decode the frames presented in
    /// `[keyframes[start].pts, keyframes[end].pts)`. An open-GOP keyframe at the start brings the preceding
    /// GOP along (its leading pictures reference it); one at the end brings its own GOP along (its leading
    /// pictures belong to this segment by presentation time).
    public func payloadPackets(startKeyframe start: Int, endKeyframe end: Int) -> Range<Int> {
        let first = start == 0 ? 0 : keyframes[keyframes[start].isClean ? start : start - 1].packetIndex
        let last: Int
        if end >= keyframes.count {
            last = packetCount
        } else if keyframes[end].isClean {
            last = keyframes[end].packetIndex
        } else {
            last = end + 1 < keyframes.count ? keyframes[end + 1].packetIndex : packetCount
        }
        return first..<last
    }

    /// The header packet files of this source's video carry.
    public var packetHeader: PacketStreamHeader {
        PacketStreamHeader(parameters: parameters, timeBase: timeBase, frameRate: frameRate)
    }

    /// The number of frames presented in `[keyframes[from].pts, keyframes[to].pts)`; `to` may be `keyframes.count`.
    public func frames(fromKeyframe from: Int, toKeyframe to: Int) -> Int {
        frameCounts[from..<to].reduce(0, +)
    }
}

/// The presentation time of a packet: its pts, or its dts where a container gives only that.
func presentationTime(_ packet: Packet) -> Int64? {
    if packet.pts != noTimestamp { return packet.pts }
    if packet.dts != noTimestamp { return packet.dts }
    return nil
}

/// The last keyframe whose pts is at or before `pts`, by binary search (the common case is the last one).
private func bin(of pts: Int64, in keyframes: [Keyframe]) -> Int? {
    guard let last = keyframes.last else { return nil }
    if pts >= last.pts { return keyframes.count - 1 }
    var low = 0
    var high = keyframes.count - 1
    guard pts >= keyframes[0].pts else { return nil }
    while low < high {
        let mid = (low + high + 1) / 2
        if keyframes[mid].pts <= pts { low = mid } else { high = mid - 1 }
    }
    return low
}
