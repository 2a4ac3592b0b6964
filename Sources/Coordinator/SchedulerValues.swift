/// A render node as the scheduler sees it: its slots, how many are busy, and how fast it encodes.
public struct SchedulerNode: Sendable, Hashable {
    /// The coordinator's id for the node (its session).
    public var id: UInt64
    /// The node's name, for logs and for keying measured speeds.
    public var name: String
    /// Segments the node encodes at once.
    public var slots: Int
    /// Slots running a task now, duplicates included.
    public var busySlots: Int
    /// Measured speed per codec: source seconds encoded per wall-clock second, per slot. A codec that
    /// is missing (or not a positive number) counts as unknown: the fleet's median for that codec is
    /// used, or 1.0 when no node of the fleet has a measurement for it.
    public var speeds: [String: Double]
    /// Upper bounds on speeds not measured yet, per codec, from the coordinator's own clock: a node that has held
    /// a segment of S seconds for t seconds without a result encodes slower than S / t. An unmeasured speed is
    /// the fleet's median or this bound, whichever is lower.
    public var speedCeilings: [String: Double] = [:]
    /// A draining node finishes what it runs and takes nothing new.
    public var draining: Bool

    /// A node with speeds per codec.
    public init(
        id: UInt64, name: String = "", slots: Int, busySlots: Int = 0, speeds: [String: Double] = [:],
        draining: Bool = false
    ) {
        self.id = id
        self.name = name
        self.slots = slots
        self.busySlots = busySlots
        self.speeds = speeds
        self.draining = draining
    }

    /// A node with one speed for the default codec `""` (nil: unknown).
    public init(
        id: UInt64, name: String = "", slots: Int, busySlots: Int = 0, speed: Double?, draining: Bool = false
    ) {
        self.init(
            id: id, name: name, slots: slots, busySlots: busySlots, speeds: speed.map { ["": $0] } ?? [:],
            draining: draining)
    }

    /// Slots that can take a task now.
    public var freeSlots: Int { max(slots - busySlots, 0) }
}

/// A segment waiting for a slot.
public struct SchedulerSegment: Sendable, Hashable {
    /// The job the segment belongs to.
    public var jobID: String
    /// The segment's index in its job.
    public var index: Int
    /// The segment's source duration in seconds.
    public var seconds: Double
    /// The key of the job's codec in `SchedulerNode.speeds` (for example `EncodeSettings.codec`).
    public var codec: String

    /// A segment of `seconds` source seconds, encoded with `codec`.
    public init(jobID: String, index: Int, seconds: Double, codec: String = "") {
        self.jobID = jobID
        self.index = index
        self.seconds = seconds
        self.codec = codec
    }
}

/// A task running on a node: a segment leased to one slot.
public struct SchedulerRunning: Sendable, Hashable {
    /// The coordinator's task id.
    public var taskID: UInt64
    /// The job of the segment.
    public var jobID: String
    /// The segment's index in its job.
    public var index: Int
    /// The node (`SchedulerNode.id`) running it.
    public var node: UInt64
    /// When the task was leased, on the clock of `now`.
    public var startedAt: Double
    /// The segment's source duration in seconds.
    public var seconds: Double
    /// The key of the job's codec in `SchedulerNode.speeds`.
    public var codec: String
    /// The fraction of the segment's frames done (heartbeat `framesDone / expectedFrames`), if known.
    public var progress: Double?
    /// When `progress` was reported, on the clock of `startedAt` (nil: now).
    public var progressTime: Double?
    /// This task is the second copy of a segment that another task runs too.
    public var isDuplicate: Bool
    /// The segment has had a duplicate already (even one that failed or lost): it gets no other.
    public var hasBeenDuplicated: Bool

    /// A running task.
    public init(
        taskID: UInt64, jobID: String, index: Int, node: UInt64, startedAt: Double, seconds: Double,
        codec: String = "", progress: Double? = nil, progressTime: Double? = nil, isDuplicate: Bool = false,
        hasBeenDuplicated: Bool = false
    ) {
        self.taskID = taskID
        self.jobID = jobID
        self.index = index
        self.node = node
        self.startedAt = startedAt
        self.seconds = seconds
        self.codec = codec
        self.progress = progress
        self.progressTime = progressTime
        self.isDuplicate = isDuplicate
        self.hasBeenDuplicated = hasBeenDuplicated
    }
}

/// What the coordinator should do now.
public enum SchedulingDecision: Sendable, Hashable {
    /// Lease a ready segment to a free slot of `node`.
    case assign(jobID: String, index: Int, node: UInt64)
    /// Run a straggling segment a second time on a free slot of `node`; keep whichever result
    /// arrives first and cancel the other task.
    case duplicate(jobID: String, index: Int, node: UInt64)

    /// The job of the segment.
    public var jobID: String {
        switch self {
        case .assign(let jobID, _, _), .duplicate(let jobID, _, _): jobID
        }
    }

    /// The segment's index.
    public var index: Int {
        switch self {
        case .assign(_, let index, _), .duplicate(_, let index, _): index
        }
    }

    /// The node whose free slot runs it.
    public var node: UInt64 {
        switch self {
        case .assign(_, _, let node), .duplicate(_, _, let node): node
        }
    }
}
