/// Measured speeds of the fleet, per node and codec: source seconds encoded per wall-clock second
/// of a slot's lease, smoothed as an exponential moving average so one slow segment does not
/// condemn a node and a changed node is learnt within a few segments. Only results the coordinator timed
/// itself go in: a node's own claims (the `calibration` in its hello) never do.
public struct SpeedEstimates: Sendable, Hashable {
    /// Weight of a new measurement (0 < smoothing ≤ 1).
    public var smoothing: Double
    private var table: [String: [String: Double]] = [:]

    /// Empty estimates; `smoothing` is the weight of each new measurement.
    public init(smoothing: Double = 0.3) {
        self.smoothing = smoothing
    }

    /// Folds in one finished segment: `sourceSeconds` of video in `wallSeconds` of the slot's time
    /// (lease to result). The first measurement of a node and codec is taken as it is.
    public mutating func record(node: String, codec: String, sourceSeconds: Double, wallSeconds: Double) {
        guard sourceSeconds > 0, wallSeconds > 0 else { return }
        let measured = sourceSeconds / wallSeconds
        guard measured.isFinite else { return }
        if let old = table[node]?[codec] {
            table[node]![codec] = smoothing * measured + (1 - smoothing) * old
        } else {
            table[node, default: [:]][codec] = measured
        }
    }

    /// A node's speeds by codec, for `SchedulerNode.speeds`.
    public func speeds(node: String) -> [String: Double] {
        table[node] ?? [:]
    }

    /// Forgets a node (it was replaced by different hardware under the same name).
    public mutating func forget(node: String) {
        table[node] = nil
    }
}
