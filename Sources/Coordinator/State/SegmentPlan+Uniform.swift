extension SegmentPlan {
    /// Segment `index` of a source whose frames are numbered by their presentation time and whose
    /// every `frames`-th frame is a keyframe: the plans the scheduler simulation and the state's
    /// tests lease, without a real source index.
    package init(index: Int, uniformFrames frames: Int) {
        self.init(
            index: index, startKeyframe: index, endKeyframe: index + 1, startPTS: Int64(index * frames),
            endPTS: Int64((index + 1) * frames), packets: index * frames..<(index + 1) * frames,
            expectedFrames: frames, durationTicks: Int64(frames))
    }
}
