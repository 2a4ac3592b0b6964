/// Where a segment is in its life: the one state machine of a segment, kept by ``FarmState`` in
/// memory and by the job store on disk (each transition of one is written as the same transition of
/// the other).
///
/// `pending` (planned, no source file yet) → `ready` (source file written, waiting for a slot) →
/// `leased` (a node slot encodes it under a task) → `done` (a checked result is on disk). A lease
/// that ends without a result (the node left, failed, or its deadline passed) goes back to `ready`;
/// a source file that no longer checks out at a resume goes back to `pending`.
public enum SegmentPhase: String, Sendable, Hashable, Codable, CaseIterable {
    /// Planned; its source file is not written (or no longer trusted).
    case pending
    /// Its source file is written and checked; waiting for a slot.
    case ready
    /// A node slot holds it under a task, until a deadline that progress extends.
    case leased
    /// Its result is on disk and was checked.
    case done
}

extension SegmentPhase {
    /// The word status reports (`GET /jobs/{id}`, `farm render`'s progress) use for a segment in this phase.
    public var statusName: String {
        switch self {
        case .pending: "pending"
        case .ready: "queued"
        case .leased: "running"
        case .done: "done"
        }
    }
}
