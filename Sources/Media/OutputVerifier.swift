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

/// Checks a finished file before it is published: it opens, it holds the expected number of frames
/// and packets per stream, every video frame has its own presentation time, and its video decodes
/// cleanly (strict error detection) — from start to end, or, when the segments' bitstreams were each
/// decoded in full by their nodes and arrived with matching checksums, in a window after every join,
/// the only places where the joined file holds something no node has decoded.
public enum OutputVerifier {
    /// How much of the video to decode.
    public enum Decode: Sendable {
        case full
        /// The first `frames` packets of each segment, given the packets each segment contributed.
        case joins(segmentPackets: [Int], frames: Int)
    }

    public static func verify(
        path: String, videoStreamIndex: Int, expectedFrames: Int, expectedPackets: [Int: Int] = [:], threads: Int = 0,
        decode mode: Decode = .full, isCancelled: () -> Bool = { false }
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
        var packetTimes: [Int64] = []
        // Packet ranges to decode: everything, or a window from the start of each segment.
        var windows: [Range<Int>] = []
        if case .joins(let segmentPackets, let size) = mode {
            var start = 0
            for count in segmentPackets {
                windows.append(start..<start + min(size, count))
                start += count
            }
        }
        var videoIndex = 0
        var windowFrames = 0

        func take() throws {
            while try decoder.receive(into: frame) {
                let f = frame.pointer.pointee
                if frame.isDamaged {
                    throw MediaError(.verificationFailed, "\(path): video frame \(frames) decodes with errors")
                }
                let pts = f.best_effort_timestamp
                if !windows.isEmpty {
                    windowFrames += 1
                    continue
                }
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
            defer { videoIndex += 1 }
            if windows.isEmpty {
                try decoder.send(packet)
                try take()
                continue
            }
            guard packet.pts != noTimestamp else {
                throw MediaError(.verificationFailed, "\(path): video packet \(videoIndex) has no presentation time")
            }
            packetTimes.append(packet.pts)
            guard let window = windows.first(where: { $0.contains(videoIndex) }) else { continue }
            try decoder.send(packet)
            try take()
            if videoIndex == window.upperBound - 1 {
                // End of a join window: drain, check, and start the next window afresh.
                try decoder.send(nil)
                try take()
                guard windowFrames == window.count else {
                    throw MediaError(
                        .verificationFailed,
                        "\(path): the \(window.count) packets after the join at packet \(window.lowerBound) decode to \(windowFrames) frames")
                }
                windowFrames = 0
                decoder.reset()
            }
        }
        if windows.isEmpty {
            try decoder.send(nil)
            try take()
        } else {
            packetTimes.sort()
            for i in packetTimes.indices.dropFirst() where packetTimes[i] == packetTimes[i - 1] {
                throw MediaError(.verificationFailed, "\(path): two video frames share the time \(packetTimes[i])")
            }
            frames = packetTimes.count
            firstPTS = packetTimes.first ?? Int64.min
            lastPTS = packetTimes.last ?? Int64.min
        }

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
