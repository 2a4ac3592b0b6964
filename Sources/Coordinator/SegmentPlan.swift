public import FarmMedia

/// One segment of a job: the frames presented in `[startPTS, endPTS)`, cut at keyframes.
public struct SegmentPlan: Sendable, Hashable, Codable {
    public var index: Int
    /// Keyframes (indices into the source index) where the segment starts and where the next one starts.
    public var startKeyframe: Int
    public var endKeyframe: Int
    /// nil: from the first frame / to the last frame of the source.
    public var startPTS: Int64?
    public var endPTS: Int64?
    /// The source's video packets (decode order) the node needs, the preceding GOP included for open GOPs.
    public var packets: Range<Int>
    public var expectedFrames: Int
    /// Length in source time base ticks.
    public var durationTicks: Int64
}

/// Chooses the cut points of a job.
public enum SegmentPlanner {
    /// A segment length that keeps every slot busy to the end (about four segments per slot, so fast
    /// nodes take more and the tail is short) without making segments so short that encoder start-up
    /// and per-segment rate control cost more than they save.
    ///
    /// With the slots' measured speeds (source seconds per second), unequal fleets get shorter
    /// segments: one segment on the slowest slot should take at most `1/slowSlotShare` of the
    /// expected makespan, or the slow slots' last segments (and the noise in their durations) end
    /// well after everyone else's.
    public static func defaultSegmentSeconds(
        durationSeconds: Double, totalSlots: Int, slotSpeeds: [Double] = []
    ) -> Double {
        let slots = Double(max(totalSlots, 1))
        var length = durationSeconds / (slots * 4)
        let known = slotSpeeds.filter { $0 > 0 && $0.isFinite }
        if known.count >= 2, let slowest = known.min(), let fastest = known.max(), fastest > slowest * 1.5 {
            let makespan = durationSeconds / known.reduce(0, +)
            length = min(length, slowest * makespan / slowSlotShare)
        }
        return min(max(length, 4), 60)
    }

    /// Chosen with `farm bench-scheduler` (50 nodes of 1x to 8x, 2 hours): 2 left the straggler
    /// scenario at 1.071 of the bound, 4 at 1.057, 6 at 1.075; 3 keeps every scenario at or under
    /// 1.047 with segments of about 10 s.
    static let slowSlotShare = 3.0

    /// Splits the source into about `duration / segmentSeconds` segments of equal length: each cut is
    /// the keyframe nearest its evenly spaced ideal time (so equal nodes get equal work, whatever the
    /// keyframe spacing), preferring a clean (IDR) keyframe within a quarter of the target further
    /// on. No segment is shorter than a third of the target, and a tail that would be joins the
    /// segment before it. Sources with far-apart or irregular keyframes get longer segments, never
    /// broken ones.
    public static func plan(index: SourceIndex, segmentSeconds: Double) -> [SegmentPlan] {
        let tb = index.timeBase
        // Every conversion from a Double is bounded first: a length from a request, times from a file.
        let ticks = segmentSeconds * Double(tb.den) / Double(max(tb.num, 1))
        let target = ticks.isNaN ? 1 : Int64(min(max(ticks.rounded(), 1), Double(Int64.max / 8)))
        let keyframes = index.keyframes
        guard !keyframes.isEmpty else { return [] }
        let origin = keyframes.first?.pts ?? index.firstPTS
        let total = max(span(from: origin, to: index.endPTS), 1)
        // Never more segments than keyframes to cut at, whatever the times claim.
        let count = max(Int(min(Double(total) / Double(target), Double(keyframes.count)).rounded()), 1)
        let step = Double(total) / Double(count)
        var cuts = [0]
        for k in 1..<max(count, 1) {
            let ideal = origin.addingSaturating(Int64(min(step * Double(k), Double(Int64.max / 2))))
            let last = cuts.last!
            // The first keyframe at or after the ideal time, and the one before it: the nearer wins.
            var after = last + 1
            var high = keyframes.count
            while after < high {
                let mid = (after + high) / 2
                if keyframes[mid].pts < ideal { after = mid + 1 } else { high = mid }
            }
            var choice = after
            if after - 1 > last,
                after == keyframes.count
                    || span(from: keyframes[after - 1].pts, to: ideal) <= span(from: ideal, to: keyframes[after].pts)
            {
                choice = after - 1
            }
            guard choice < keyframes.count else { break }
            if !keyframes[choice].isClean {
                var j = choice + 1
                while j < keyframes.count, keyframes[j].pts < ideal.addingSaturating(target / 4) {
                    if keyframes[j].isClean {
                        choice = j
                        break
                    }
                    j += 1
                }
            }
            guard span(from: keyframes[last].pts, to: keyframes[choice].pts) >= target / 3 else { continue }
            cuts.append(choice)
        }
        if cuts.count > 1, span(from: keyframes[cuts.last!].pts, to: index.endPTS) < target / 3 {
            cuts.removeLast()
        }
        cuts.append(keyframes.count)
        return (0..<cuts.count - 1).map { k in
            let start = cuts[k]
            let end = cuts[k + 1]
            let startPTS = k == 0 ? nil : keyframes[start].pts
            let endPTS = end < keyframes.count ? keyframes[end].pts : nil
            return SegmentPlan(
                index: k, startKeyframe: start, endKeyframe: end, startPTS: startPTS, endPTS: endPTS,
                packets: index.payloadPackets(startKeyframe: start, endKeyframe: end),
                expectedFrames: index.frames(fromKeyframe: start, toKeyframe: end),
                durationTicks: span(from: startPTS ?? index.firstPTS, to: endPTS ?? index.endPTS))
        }
    }

    /// `to - from`, saturating at the ends of Int64 instead of trapping (a source index from a hostile
    /// file keeps its times within ±2^61, but a plan never relies on it).
    static func span(from: Int64, to: Int64) -> Int64 {
        let (difference, overflow) = to.subtractingReportingOverflow(from)
        return overflow ? (to > from ? .max : .min) : difference
    }
}

extension Int64 {
    fileprivate func addingSaturating(_ other: Int64) -> Int64 {
        let (sum, overflow) = addingReportingOverflow(other)
        return overflow ? (other > 0 ? .max : .min) : sum
    }
}
