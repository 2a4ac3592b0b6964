public import Foundation
public import GRDB

// The rows of the job store. Only `JobStore` writes them; everyone else reads copies.

/// A job as the store keeps it: what was asked for, how far it got, and what pins its segments together.
public struct StoredJob: Sendable, Hashable, Codable, FetchableRecord, PersistableRecord {
    /// The table of jobs.
    public static let databaseTableName = "jobs"

    /// The job's id, for example `job-0001-1a2b3c4d`.
    public var id: String
    /// The source as submitted (a path or a URL).
    public var source: String
    /// Where the verified output is published.
    public var output: String
    /// The request as JSON text (codec, crf, preset, segmentSeconds, keepWork, container, ...), encoded by the caller.
    public var request: String
    /// queued, running, done, failed or cancelled.
    public var state: JobState
    /// What the job is doing: queued, indexing, splitting, encoding, assembling, verifying, publishing, finished.
    public var phase: String
    /// Why the job failed or was cancelled.
    public var error: String?
    /// Frames in the source's video stream (0 until planned).
    public var totalFrames: Int
    /// Length of the source in seconds (0 until planned).
    public var sourceSeconds: Double
    /// When the job was submitted.
    public var createdAt: Date
    /// When the job first started running.
    public var startedAt: Date?
    /// When the job ended (done, failed or cancelled).
    public var finishedAt: Date?
    /// The pinned encoder settings of every segment, as JSON text; nil until planned.
    public var settings: String?
    /// The stream header (codec parameters) of the first accepted result; every later result must match it.
    public var pinnedParameters: Data?
    /// Where the job's segment files live (`<dataDir>/jobs/<id>`).
    public var workDirectory: String

    /// Creates a job row.
    public init(
        id: String, source: String, output: String, request: String, state: JobState = .queued,
        phase: String = "queued", error: String? = nil, totalFrames: Int = 0, sourceSeconds: Double = 0,
        createdAt: Date, startedAt: Date? = nil, finishedAt: Date? = nil, settings: String? = nil,
        pinnedParameters: Data? = nil, workDirectory: String
    ) {
        self.id = id
        self.source = source
        self.output = output
        self.request = request
        self.state = state
        self.phase = phase
        self.error = error
        self.totalFrames = totalFrames
        self.sourceSeconds = sourceSeconds
        self.createdAt = createdAt
        self.startedAt = startedAt
        self.finishedAt = finishedAt
        self.settings = settings
        self.pinnedParameters = pinnedParameters
        self.workDirectory = workDirectory
    }
}

/// One segment of a job as the store keeps it: its plan, its source file, its lease and its result.
///
/// The states: `pending` (planned, no source file yet), `ready` (source file written, waiting for a slot),
/// `leased` (a node slot encodes it under `leasedTask`), `done` (a verified result is on disk).
public struct StoredSegment: Sendable, Hashable, Codable, FetchableRecord, PersistableRecord {
    /// The table of segments.
    public static let databaseTableName = "segments"

    /// Where a segment is in its life (see ``SegmentPhase``).
    public typealias State = SegmentPhase

    /// The job the segment belongs to.
    public var jobID: String
    /// The segment's position in the job, from 0.
    public var index: Int
    /// The cut points and frame counts the planner chose.
    public var plan: SegmentPlan
    /// pending, ready, leased or done.
    public var state: State
    /// The segment's source packets file (set when it becomes ready).
    public var sourcePath: String?
    /// The source file's size in bytes.
    public var sourceBytes: Int64?
    /// The source file's ``SegmentChecksum``.
    public var sourceChecksum: Data?
    /// The task that holds the lease (nil unless leased).
    public var leasedTask: UInt64?
    /// The node running that task (nil unless leased).
    public var leasedNode: String?
    /// When the lease runs out unless renewed (nil unless leased).
    public var leaseExpiresAt: Date?
    /// Leases granted so far.
    public var attempts: Int
    /// The failures reported so far, each `"<node>: <reason>"`.
    public var failures: [String]
    /// The encoded result file (set when done).
    public var resultPath: String?
    /// The result file's size in bytes.
    public var resultBytes: Int64?
    /// The result file's ``SegmentChecksum``.
    public var resultChecksum: Data?
    /// Frames in the result, as counted when it was accepted.
    public var frames: Int?
    /// The encoder that made the result, as the node reported it.
    public var encoder: String?
    /// The node the result came from.
    public var doneNode: String?

    /// Creates a pending segment for a plan.
    public init(jobID: String, plan: SegmentPlan) {
        self.jobID = jobID
        self.index = plan.index
        self.plan = plan
        self.state = .pending
        self.attempts = 0
        self.failures = []
    }
}

/// A node as the store remembers it, across connections and restarts.
public struct StoredNode: Sendable, Hashable, Codable, FetchableRecord, PersistableRecord {
    /// The table of nodes.
    public static let databaseTableName = "nodes"

    /// Whether a node can take work.
    public enum State: String, Sendable, Hashable, Codable, CaseIterable {
        /// Connected and taking segments.
        case connected
        /// Connected, finishing what it has, taking nothing new.
        case draining
        /// Not connected; holds no leases.
        case gone
    }

    /// The node's id from its hello.
    public var id: String
    /// The address it connected from.
    public var address: String
    /// Segments it encodes at once.
    public var slots: Int
    /// Encoder threads per slot.
    public var threads: Int
    /// Its probed capabilities, as JSON text.
    public var capabilities: String
    /// connected, draining or gone.
    public var state: State
    /// When it first joined.
    public var firstSeen: Date
    /// When it was last heard from.
    public var lastSeen: Date
    /// Segments it completed over its whole life.
    public var segmentsDone: Int
    /// Failures it reported over its whole life.
    public var failures: Int
    /// No leases for this node before this time.
    public var quarantinedUntil: Date?
}

/// What an event is about. Open for new kinds; the store itself records the ones listed here.
public struct EventKind: RawRepresentable, Sendable, Hashable, Codable, CustomStringConvertible {
    /// The kind as stored, for example `segment.leased`.
    public var rawValue: String
    /// Makes a kind from its stored name.
    public init(rawValue: String) { self.rawValue = rawValue }
    /// The kind as stored.
    public var description: String { rawValue }

    /// A job was inserted (queued).
    public static let jobQueued = EventKind(rawValue: "job.queued")
    /// A job changed state (running, done, failed, cancelled, back to queued).
    public static let jobState = EventKind(rawValue: "job.state")
    public static let nodeBanned = EventKind(rawValue: "node.banned")
    public static let nodeEnrolled = EventKind(rawValue: "node.enrolled")
    /// A job's segments were planned.
    public static let jobPlanned = EventKind(rawValue: "job.planned")
    /// A job's plan differed from the stored one and replaced it (done segments dropped).
    public static let planReplaced = EventKind(rawValue: "job.planReplaced")
    /// A segment was leased to a node slot.
    public static let segmentLeased = EventKind(rawValue: "segment.leased")
    /// A lease was given back without a failure (node left, job moved on).
    public static let segmentReleased = EventKind(rawValue: "segment.released")
    /// A node reported a failure for a segment; it went back to ready.
    public static let segmentFailed = EventKind(rawValue: "segment.failed")
    /// A segment's result was accepted.
    public static let segmentDone = EventKind(rawValue: "segment.done")
    /// A lease ran out before a result came.
    public static let leaseExpired = EventKind(rawValue: "segment.leaseExpired")
    /// A lease was voided because the coordinator restarted.
    public static let leaseVoided = EventKind(rawValue: "segment.leaseVoided")
    /// Resume re-verification found a segment's files missing or changed and set it back.
    public static let segmentReset = EventKind(rawValue: "segment.reset")
    /// A node joined (or came back).
    public static let nodeJoined = EventKind(rawValue: "node.joined")
    /// A node started draining or left.
    public static let nodeState = EventKind(rawValue: "node.state")
    /// A node was quarantined.
    public static let nodeQuarantined = EventKind(rawValue: "node.quarantined")
    /// Anything the caller records itself.
    public static let note = EventKind(rawValue: "note")
}

/// One line of a job's (or the farm's) history.
public struct StoredEvent: Sendable, Hashable, Codable, FetchableRecord, MutablePersistableRecord {
    /// The table of events.
    public static let databaseTableName = "events"

    /// Increases with every event: the order events happened in.
    public var id: Int64?
    /// When it happened.
    public var time: Date
    /// The job it concerns, if any.
    public var jobID: String?
    /// The segment (of `jobID`) it concerns, if any.
    public var segment: Int?
    /// The node it concerns, if any.
    public var nodeID: String?
    /// What happened.
    public var kind: EventKind
    /// The details, in words.
    public var message: String

    /// Creates an event; the store assigns `id` on insert.
    public init(
        time: Date, jobID: String? = nil, segment: Int? = nil, nodeID: String? = nil, kind: EventKind,
        message: String
    ) {
        self.time = time
        self.jobID = jobID
        self.segment = segment
        self.nodeID = nodeID
        self.kind = kind
        self.message = message
    }

    /// Records the row id SQLite assigned.
    public mutating func didInsert(_ inserted: InsertionSuccess) {
        id = inserted.rowID
    }
}

/// A job with its segments, read in one transaction.
public struct JobSnapshot: Sendable, Hashable {
    /// The job row.
    public var job: StoredJob
    /// Its segments, by index.
    public var segments: [StoredSegment]
}

/// A lease the store took back: whoever still runs `taskID` should be told to stop.
public struct ReleasedLease: Sendable, Hashable {
    /// The segment's job.
    public var jobID: String
    /// The segment's index.
    public var index: Int
    /// The task that held it.
    public var taskID: UInt64
    /// The node that ran the task.
    public var nodeID: String
}

/// What ``JobStore/setPlan(_:settings:totalFrames:sourceSeconds:plans:ifDifferent:at:)`` did.
public enum PlanOutcome: Sendable, Hashable {
    /// The job had no segments; they were inserted as pending.
    case inserted
    /// The job already had exactly these segments (a resume); their states were kept.
    case unchanged
    /// The job had other segments; they were deleted and the new ones inserted as pending.
    case replaced
}

/// What to do when a job already has segments and the new plan (or settings) differs.
public enum PlanConflict: Sendable, Hashable {
    /// Throw ``JobStoreError/Code/planMismatch`` and change nothing.
    case fail
    /// Drop the old segments (and the pinned parameters) and insert the new ones.
    case replace
}

/// What ``JobStore/complete(_:index:taskID:nodeID:resultPath:bytes:checksum:frames:encoder:parameters:at:)`` did.
public enum CompletionOutcome: Sendable, Hashable {
    /// The segment is done; `remaining` segments of the job are not done yet.
    case completed(StoredSegment, remaining: Int)
    /// The task no longer holds the segment's lease (expired, released, job ended): the result is not wanted.
    case notHolder
    /// The result's stream header differs from the job's pinned one; nothing changed, the lease is still held.
    case parameterMismatch(pinned: Data)
}

/// A file's size and checksum, as resume re-verification compares them.
public struct FileDigest: Sendable, Hashable {
    /// Size in bytes.
    public var bytes: Int64
    /// The checksum of the whole file.
    public var checksum: [UInt8]

    /// Creates a digest.
    public init(bytes: Int64, checksum: [UInt8]) {
        self.bytes = bytes
        self.checksum = checksum
    }
}

/// What resume re-verification decided for each segment of a job.
public struct ResumeVerification: Sendable, Hashable {
    /// Done segments whose result is intact: they are not encoded again.
    public var kept: [Int] = []
    /// Segments set back to ready: their result was missing or changed, their source file is intact.
    public var toReady: [Int] = []
    /// Segments set back to pending: their source file is missing or changed too; the job must split them again.
    public var toPending: [Int] = []
    /// Why each reset segment was reset.
    public var reasons: [Int: String] = [:]
}

/// An error of the job store: what was wrong, with which job, segment or node.
public struct JobStoreError: Error, Sendable, CustomStringConvertible {
    /// What kind of error; compare with the static members.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable {
            case unknownJob, unknownSegment, unknownNode, duplicateJob, jobFinished, jobNotRunning, jobNotFinished
            case invalidTransition, invalidPlan, planMismatch, segmentNotLeasable, taskInUse, nodeUnavailable
            case invalidJSON, database, io
        }
        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// No job with that id.
        public static let unknownJob = Code(.unknownJob)
        /// The job has no segment with that index.
        public static let unknownSegment = Code(.unknownSegment)
        /// No node with that id.
        public static let unknownNode = Code(.unknownNode)
        /// A job with that id exists already.
        public static let duplicateJob = Code(.duplicateJob)
        /// The job is done, failed or cancelled, and cannot change any more.
        public static let jobFinished = Code(.jobFinished)
        /// The operation needs a running job.
        public static let jobNotRunning = Code(.jobNotRunning)
        /// The job is still queued or running (deleting it is refused).
        public static let jobNotFinished = Code(.jobNotFinished)
        /// A job state change that is not allowed (queued → done, ...).
        public static let invalidTransition = Code(.invalidTransition)
        /// Segment plans not numbered 0..<n in order.
        public static let invalidPlan = Code(.invalidPlan)
        /// The job already has other segments or other settings.
        public static let planMismatch = Code(.planMismatch)
        /// The segment is not ready (pending, leased or done).
        public static let segmentNotLeasable = Code(.segmentNotLeasable)
        /// The task id already holds a lease.
        public static let taskInUse = Code(.taskInUse)
        /// The node is draining, gone, quarantined or has every slot leased.
        public static let nodeUnavailable = Code(.nodeUnavailable)
        /// A value could not be encoded to or decoded from JSON text.
        public static let invalidJSON = Code(.invalidJSON)
        /// SQLite failed (see `cause`).
        public static let database = Code(.database)
        /// A file could not be read.
        public static let io = Code(.io)

        /// The code's name.
        public var description: String { base.rawValue }
    }

    /// What kind of error.
    public var code: Code
    /// What was wrong, with what.
    public var message: String
    /// The underlying error, if any (a `DatabaseError`, a decoding error).
    public var cause: (any Error & Sendable)?

    /// Creates an error.
    public init(_ code: Code, _ message: String, cause: (any Error & Sendable)? = nil) {
        self.code = code
        self.message = message
        self.cause = cause
    }

    /// The message, and the cause when there is one.
    public var description: String {
        if let cause { return "\(message): \(cause)" }
        return message
    }
}
