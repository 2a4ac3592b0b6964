package import CFFmpeg

/// What an output file was found to hold.
public struct VerificationReport: Sendable {
    public var videoFrames: Int
    public var packetsPerStream: [Int: Int]
    public var firstPTS: Int64
    public var lastPTS: Int64
    public var timeBase: Rational
    public var decodeSeconds: Double
}

/// Checks a finished file before it is published: it opens, its video decodes cleanly from start
/// to end with strictly increasing frame times, and it holds the expected number of frames and
/// packets per stream.
public enum OutputVerifier {
    public static func verify(
        path: String, videoStreamIndex: Int, expectedFrames: Int, expectedPackets: [Int: Int] = [:], threads: Int = 0,
        isCancelled: () -> Bool = { false }
    ) throws -> VerificationReport {
        let clock = ContinuousClock()
        let start = clock.now
        let input = try InputFile(path: path)
        guard videoStreamIndex < input.streamCount else {
            throw MediaError(.verificationFailed, "\(path): has no stream \(videoStreamIndex)")
        }
        let stream = input.stream(videoStreamIndex)
        let header = PacketStreamHeader(
            parameters: CodecParameters(stream.pointee.codecpar), timeBase: Rational(stream.pointee.time_base),
            frameRate: Rational(stream.pointee.avg_frame_rate))
        let decoder = try VideoDecoder(header: header, threads: threads, strict: true)
        let packet = Packet()
        let frame = Frame()
        var counts: [Int: Int] = [:]
        var frames = 0
        var firstPTS = Int64.min
        var lastPTS = Int64.min

        func take() throws {
            while try decoder.receive(into: frame) {
                let f = frame.pointer.pointee
                if f.decode_error_flags != 0 || f.flags & AV_FRAME_FLAG_CORRUPT != 0 {
                    throw MediaError(.verificationFailed, "\(path): video frame \(frames) decodes with errors")
                }
                let pts = f.best_effort_timestamp
                if frames > 0, pts <= lastPTS {
                    throw MediaError(
                        .verificationFailed, "\(path): video frame \(frames) has time \(pts), not after \(lastPTS)")
                }
                if frames == 0 { firstPTS = pts }
                lastPTS = pts
                frames += 1
            }
        }

        while try input.read(into: packet) {
            if isCancelled() { throw MediaError(.cancelled, "\(path): verification cancelled") }
            counts[packet.streamIndex, default: 0] += 1
            guard packet.streamIndex == videoStreamIndex else { continue }
            try decoder.send(packet)
            try take()
        }
        try decoder.send(nil)
        try take()

        guard frames == expectedFrames else {
            throw MediaError(.verificationFailed, "\(path): has \(frames) video frames, the source has \(expectedFrames)")
        }
        for (index, expected) in expectedPackets.sorted(by: { $0.key < $1.key }) where counts[index, default: 0] != expected {
            throw MediaError(
                .verificationFailed, "\(path): stream \(index) has \(counts[index, default: 0]) packets, \(expected) were written")
        }
        return VerificationReport(
            videoFrames: frames, packetsPerStream: counts, firstPTS: firstPTS, lastPTS: lastPTS,
            timeBase: header.timeBase, decodeSeconds: (clock.now - start).seconds)
    }
}

extension Duration {
    package var seconds: Double {
        let c = components
        return Double(c.seconds) + Double(c.attoseconds) / 1e18
    }
}
