/// What the assembler learns about one encoded segment before it writes anything, from the
/// segment's record headers alone (its packet bytes are skipped, and the file is closed after).
struct SegmentTimes {
    var packets: Int
    var firstPTS: Int64
    var lastPTS: Int64
    /// The smallest gap between two of its presentation times (0 for a single frame).
    var smallestGap: Int64
    /// How many packets deep the segment reorders: decoding packet i must give every frame up to
    /// presentation rank i - delay (0 without B-frames, 1 or 2 with libx264's, up to 16 in H.264).
    var delay: Int
    /// Whether its stream header matches the first segment's.
    var sameHeader: Bool

    /// The deepest reordering a segment may have (the largest H.264/HEVC decoded picture buffer).
    static let maxDelay = 16

    /// Walks the segment at `path` (segment `number` of the job). `first` is segment 0's header, nil
    /// for segment 0 itself; the header is checked against it.
    static func scan(path: String, number: Int, first: PacketStreamHeader?) throws -> (SegmentTimes, PacketStreamHeader) {
        let reader = try PacketFileReader(path: path, bufferSize: 16 << 10)
        let header = reader.header
        if let first, let difference = ParameterSets.compatible(first.parameters, header.parameters) {
            throw MediaError(.mismatch, "segment \(number) cannot share a track with segment 0: \(difference)")
        }
        if let first, first.timeBase != header.timeBase {
            throw MediaError(.mismatch, "segment \(number) has the time base \(header.timeBase), segment 0 \(first.timeBase)")
        }
        var times: [Int64] = []
        while let (pts, duration) = try reader.nextTimes() {
            guard pts != noTimestamp else {
                throw MediaError(.invalidInput, "segment \(number): packet \(times.count) has no presentation time")
            }
            // Times come from a node: bounded as the source index bounds the source's.
            for (name, value) in [("time", pts), ("duration", duration)] where value.magnitude > SourceIndex.timestampLimit.magnitude {
                throw MediaError(
                    .invalidInput, "segment \(number): packet \(times.count) has the \(name) \(value), beyond ±2^61 ticks")
            }
            times.append(pts)
        }
        guard !times.isEmpty else { throw MediaError(.invalidInput, "segment \(number) holds no packet") }
        let sorted = times.sorted()
        var gap = Int64.max
        for i in sorted.indices.dropFirst() {
            guard sorted[i] != sorted[i - 1] else {
                throw MediaError(.invalidInput, "segment \(number): two packets share the time \(sorted[i])")
            }
            let (difference, overflow) = sorted[i].subtractingReportingOverflow(sorted[i - 1])
            gap = min(gap, overflow ? .max : difference)
        }
        // Delay: the largest i + 1 - c over decode positions i, where c counts the presentation ranks
        // 0, 1, 2, ... all present among the first i + 1 packets.
        var rank: [Int64: Int] = [:]
        for (r, pts) in sorted.enumerated() { rank[pts] = r }
        var present = [Bool](repeating: false, count: times.count)
        var complete = 0
        var delay = 0
        for (i, pts) in times.enumerated() {
            present[rank[pts]!] = true
            while complete < present.count, present[complete] { complete += 1 }
            delay = max(delay, i + 1 - complete)
        }
        guard delay <= maxDelay else {
            throw MediaError(.invalidInput, "segment \(number) reorders \(delay) frames deep, more than \(maxDelay)")
        }
        let summary = SegmentTimes(
            packets: times.count, firstPTS: sorted[0], lastPTS: sorted[sorted.count - 1],
            smallestGap: gap == .max ? 0 : gap, delay: delay, sameHeader: first.map { $0.parameters == header.parameters } ?? true)
        return (summary, header)
    }
}

/// Decode times for segments joined into one stream. Each encoder stamps its own: a segment without
/// B-frames has decode times equal to its presentation times, one with them starts its decode times
/// a frame or two early. Joined as they came, a B-frame segment after one without has no room for
/// them (at a time base of one tick per frame, none at all). Instead the whole stream gets the
/// deepest segment's delay D: packet j decodes at the (j - D)-th smallest presentation time (the D
/// first ones a frame step apart before the first frame), which increases strictly and never passes
/// a packet's own presentation time, because no segment reorders deeper than D and the segments'
/// times follow one another.
struct DecodeTimes {
    let delay: Int
    private let start: Int64
    private let step: Int64
    private var pending: [Int64] = []
    private var assigned = 0
    private var last = Int64.min

    /// For segments in order; fails when their times overlap or a time is too far out to step back from.
    init(_ segments: [SegmentTimes]) throws {
        for i in segments.indices.dropFirst() where segments[i].firstPTS <= segments[i - 1].lastPTS {
            throw MediaError(
                .mismatch,
                "segment \(i) starts at \(segments[i].firstPTS), not after segment \(i - 1)'s last frame at \(segments[i - 1].lastPTS)")
        }
        delay = segments.map(\.delay).max() ?? 0
        step = max(segments.map(\.smallestGap).filter { $0 > 0 }.min() ?? 1, 1)
        let first = segments.first?.firstPTS ?? 0
        let (back, overflowMultiplying) = step.multipliedReportingOverflow(by: Int64(delay))
        let (start, overflowSubtracting) = first.subtractingReportingOverflow(back)
        guard !overflowMultiplying, !overflowSubtracting else {
            throw MediaError(.invalidInput, "the first frame's time \(first) leaves no room for decode times before it")
        }
        self.start = start
    }

    /// The decode time of the next packet in stream order, given its presentation time.
    mutating func next(pts: Int64) throws -> Int64 {
        let index = pending.firstIndex { $0 > pts } ?? pending.count
        pending.insert(pts, at: index)
        let dts: Int64
        if assigned < delay {
            dts = start + Int64(assigned) * step
        } else {
            dts = pending.removeFirst()
        }
        assigned += 1
        guard dts <= pts, dts > last else {
            throw MediaError(.mismatch, "packet \(assigned - 1): no decode time fits between \(last) and its time \(pts)")
        }
        last = dts
        return dts
    }
}
