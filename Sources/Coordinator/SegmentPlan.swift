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
    public static func defaultSegmentSeconds(durationSeconds: Double, totalSlots: Int) -> Double {
        let slots = Double(max(totalSlots, 1))
        return min(max(durationSeconds / (slots * 4), 4), 60)
    }

    /// Cuts at the keyframe that reaches the target length, preferring a clean (IDR) keyframe within
    /// a quarter of the target further on; a tail shorter than a third of the target joins the segment
    /// before it. Sources with far-apart or irregular keyframes get longer segments, never broken ones.
    public static func plan(index: SourceIndex, segmentSeconds: Double) -> [SegmentPlan] {
        let tb = index.timeBase
        let target = max(Int64((segmentSeconds * Double(tb.den) / Double(max(tb.num, 1))).rounded()), 1)
        let keyframes = index.keyframes
        var cuts = [0]
        var i = 1
        while i < keyframes.count {
            let start = keyframes[cuts.last!].pts
            if keyframes[i].pts - start >= target {
                var choice = i
                if !keyframes[i].isClean {
                    var j = i + 1
                    while j < keyframes.count, keyframes[j].pts - start < target + target / 4 {
                        if keyframes[j].isClean {
                            choice = j
                            break
                        }
                        j += 1
                    }
                }
                cuts.append(choice)
                i = choice + 1
            } else {
                i += 1
            }
        }
        if cuts.count > 1, index.endPTS - keyframes[cuts.last!].pts < target / 3 {
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
                durationTicks: (endPTS ?? index.endPTS) - (startPTS ?? index.firstPTS))
        }
    }
}
