public import NIOCore

/// A message exchanged between the coordinator and a render node.
///
/// Each message travels in one frame whose type code is given in parentheses below; see `docs/protocol.md` for the
/// byte layout of every payload.
public enum Message: Sendable, Equatable {
    /// Coordinator → node (1): the first frame after a node connects.
    case challenge(Challenge)
    /// Node → coordinator (2): the node's answer to the challenge.
    case hello(Hello)
    /// Coordinator → node (3): the node is admitted.
    case welcome(Welcome)
    /// Either direction (4): the sender refuses the peer and closes the connection.
    case reject(Reject)
    /// Coordinator → node (5): encode a segment, whose bytes follow in ``data(_:)`` frames.
    case assign(Assign)
    /// Either direction (6): a chunk of segment bytes for a task.
    case data(DataChunk)
    /// Node → coordinator (7): a task is done, its encoded bytes follow in ``data(_:)`` frames.
    case result(TaskResult)
    /// Node → coordinator (8): a task failed.
    case failure(TaskFailure)
    /// Coordinator → node (9): stop working on a task and discard it.
    case cancel(taskID: UInt64)
    /// Node → coordinator (10): the node is alive, with the progress of its tasks.
    case heartbeat(Heartbeat)
    /// Coordinator → node (11): finish the tasks in hand, take no new ones, then disconnect.
    case drain
}

/// The coordinator's opening message: its protocol version, its identity, and a fresh nonce the node must prove
/// knowledge of the join token against.
public struct Challenge: Sendable, Equatable {
    /// The coordinator's protocol version, ``farmProtocolVersion``.
    public var version: UInt16
    /// The coordinator's identity, for logs.
    public var coordinatorID: String
    /// 32 random bytes, fresh for this connection (see ``JoinProof/makeNonce()``).
    public var nonce: [UInt8]

    /// Creates a challenge.
    public init(version: UInt16 = farmProtocolVersion, coordinatorID: String, nonce: [UInt8]) {
        self.version = version
        self.coordinatorID = coordinatorID
        self.nonce = nonce
    }
}

/// A node's answer to a ``Challenge``: who it is, proof that it holds the join token, and what it can do.
public struct Hello: Sendable, Equatable {
    /// The node's protocol version, ``farmProtocolVersion``.
    public var version: UInt16
    /// The node's identity, unique in the farm.
    public var nodeID: String
    /// ``JoinProof/node(token:nonce:nodeID:channelBinding:)`` over the challenge's nonce: 32 bytes.
    public var proof: [UInt8]
    /// How many tasks the node runs at once.
    public var slots: UInt16
    /// Encoder threads per task.
    public var threads: UInt16
    /// The node's capabilities (the encoder probe), as JSON.
    public var capabilitiesJSON: String
    /// What `proof` proves: the join token, or the credential the coordinator gave this node at its enrolment.
    public var secret: JoinSecret

    /// Which secret a ``Hello``'s proof was made with.
    public enum JoinSecret: UInt8, Sendable, Equatable {
        /// The farm's join token: a node that is not enrolled yet.
        case joinToken = 0
        /// The node's own credential (``Welcome/credential`` of its enrolment).
        case credential = 1
    }

    /// Creates a hello.
    public init(
        version: UInt16 = farmProtocolVersion,
        nodeID: String,
        proof: [UInt8],
        slots: UInt16,
        threads: UInt16,
        capabilitiesJSON: String,
        secret: JoinSecret = .joinToken
    ) {
        self.version = version
        self.nodeID = nodeID
        self.proof = proof
        self.slots = slots
        self.threads = threads
        self.capabilitiesJSON = capabilitiesJSON
        self.secret = secret
    }
}

/// The coordinator admits a node, and proves in turn that it holds the join token.
public struct Welcome: Sendable, Equatable {
    /// The coordinator's identity.
    public var coordinatorID: String
    /// How often the node sends a ``Heartbeat``, in seconds.
    public var heartbeatSeconds: UInt32
    /// ``JoinProof/coordinator(token:nonce:nodeID:channelBinding:)`` over the challenge's nonce and the node's ID: 32 bytes.
    public var proof: [UInt8]
    /// A node that joined with the join token is enrolled: this is its own credential (32 bytes), with which it
    /// joins from then on. Empty for a node that joined with its credential.
    public var credential: [UInt8]

    /// Creates a welcome.
    public init(coordinatorID: String, heartbeatSeconds: UInt32, proof: [UInt8], credential: [UInt8] = []) {
        self.coordinatorID = coordinatorID
        self.heartbeatSeconds = heartbeatSeconds
        self.proof = proof
        self.credential = credential
    }
}

/// The sender refuses the peer; it closes the connection after sending this.
public struct Reject: Sendable, Equatable {
    /// Why, for the peer's logs.
    public var reason: String

    /// Creates a reject.
    public init(reason: String) {
        self.reason = reason
    }
}

/// A segment to encode. The segment's bytes follow in ``Message/data(_:)`` frames with the same task ID,
/// ``byteLength`` bytes in all, whose ``SegmentChecksum`` is ``checksum``.
public struct Assign: Sendable, Equatable {
    /// The coordinator's identifier for this attempt at this segment; unique per coordinator run.
    public var taskID: UInt64
    /// The job the segment belongs to.
    public var jobID: String
    /// The segment's index in the job.
    public var segmentIndex: UInt32
    /// Which attempt at this segment this is, from 0.
    public var attempt: UInt32
    /// The job's pinned encoder configuration.
    public var settings: EncodeSettings
    /// The presentation timestamp of the segment's first frame, in ``EncodeSettings/timeBaseNum``/``EncodeSettings/timeBaseDen``.
    public var startPTS: Int64
    /// The presentation timestamp where the next segment starts (exclusive), or `nil` for "to the end of the stream".
    public var endPTS: Int64?
    /// How many frames the segment holds, for the node to check its own count against.
    public var expectedFrames: UInt64
    /// The number of segment bytes that follow in data frames.
    public var byteLength: UInt64
    /// The ``SegmentChecksum`` (XXH3-128) of the segment bytes that follow: 16 bytes.
    public var checksum: [UInt8]

    /// Creates an assignment.
    public init(
        taskID: UInt64,
        jobID: String,
        segmentIndex: UInt32,
        attempt: UInt32,
        settings: EncodeSettings,
        startPTS: Int64,
        endPTS: Int64?,
        expectedFrames: UInt64,
        byteLength: UInt64,
        checksum: [UInt8]
    ) {
        self.taskID = taskID
        self.jobID = jobID
        self.segmentIndex = segmentIndex
        self.attempt = attempt
        self.settings = settings
        self.startPTS = startPTS
        self.endPTS = endPTS
        self.expectedFrames = expectedFrames
        self.byteLength = byteLength
        self.checksum = checksum
    }
}

/// A chunk of a task's bytes: the source segment after an ``Assign``, the encoded segment after a ``TaskResult``.
///
/// Chunks are at most ``FarmWire/dataChunkSize`` bytes by convention, and always fit in one frame.
/// Decoded chunks are slices of the receive buffer, not copies.
public struct DataChunk: Sendable, Equatable {
    /// The task the bytes belong to.
    public var taskID: UInt64
    /// The bytes; equality compares their readable bytes.
    public var bytes: ByteBuffer

    /// Creates a data chunk.
    public init(taskID: UInt64, bytes: ByteBuffer) {
        self.taskID = taskID
        self.bytes = bytes
    }
}

/// A finished task. The encoded segment follows in ``Message/data(_:)`` frames with the same task ID,
/// ``byteLength`` bytes in all, whose ``SegmentChecksum`` is ``checksum``.
public struct TaskResult: Sendable, Equatable {
    /// The task this is the result of.
    public var taskID: UInt64
    /// The encoder that actually ran (for example "libx264", or "h264_vaapi").
    public var encoder: String
    /// The number of frames encoded.
    public var frames: UInt64
    /// The number of encoded bytes that follow in data frames.
    public var byteLength: UInt64
    /// The ``SegmentChecksum`` (XXH3-128) of the encoded bytes that follow: 16 bytes.
    public var checksum: [UInt8]
    /// Wall-clock seconds spent decoding.
    public var decodeSeconds: Double
    /// Wall-clock seconds spent encoding.
    public var encodeSeconds: Double
    /// Why a fallback encoder was used instead of the requested one, or `nil` if none was.
    public var fallbackReason: String?

    /// Creates a task result.
    public init(
        taskID: UInt64,
        encoder: String,
        frames: UInt64,
        byteLength: UInt64,
        checksum: [UInt8],
        decodeSeconds: Double,
        encodeSeconds: Double,
        fallbackReason: String? = nil
    ) {
        self.taskID = taskID
        self.encoder = encoder
        self.frames = frames
        self.byteLength = byteLength
        self.checksum = checksum
        self.decodeSeconds = decodeSeconds
        self.encodeSeconds = encodeSeconds
        self.fallbackReason = fallbackReason
    }
}

/// A task that failed on the node.
public struct TaskFailure: Sendable, Equatable {
    /// Whose failure it was, which decides what the coordinator counts it against.
    public enum Kind: UInt8, Sendable, CaseIterable {
        /// The segment could not be encoded here: counts against the segment and the node.
        case segment = 0
        /// The node did not take the task (draining, no free slot): counts against nothing.
        case refused = 1
        /// The node could not receive or store the segment (disk, checksum in transit): counts
        /// against the node only.
        case node = 2
    }

    /// The task that failed.
    public var taskID: UInt64
    /// What went wrong, for logs and the job's record.
    public var reason: String
    /// Whether another attempt (on this or another node) may succeed.
    public var retryable: Bool
    /// Whose failure it was.
    public var kind: Kind

    /// Creates a task failure.
    public init(taskID: UInt64, reason: String, retryable: Bool, kind: Kind = .segment) {
        self.taskID = taskID
        self.reason = reason
        self.retryable = retryable
        self.kind = kind
    }
}

/// A node's periodic sign of life, with the progress of every task it holds.
public struct Heartbeat: Sendable, Equatable {
    /// The node's tasks in progress.
    public var activeTasks: [TaskProgress]

    /// Creates a heartbeat.
    public init(activeTasks: [TaskProgress]) {
        self.activeTasks = activeTasks
    }
}

/// The progress of one task, in a ``Heartbeat``.
public struct TaskProgress: Sendable, Equatable, Hashable {
    /// The task.
    public var taskID: UInt64
    /// Frames encoded so far.
    public var framesDone: UInt64

    /// Creates a task progress entry.
    public init(taskID: UInt64, framesDone: UInt64) {
        self.taskID = taskID
        self.framesDone = framesDone
    }
}

extension Message {
    /// The message's name, for logs and errors.
    public var name: String {
        switch self {
        case .challenge: "challenge"
        case .hello: "hello"
        case .welcome: "welcome"
        case .reject: "reject"
        case .assign: "assign"
        case .data: "data"
        case .result: "result"
        case .failure: "failure"
        case .cancel: "cancel"
        case .heartbeat: "heartbeat"
        case .drain: "drain"
        }
    }
}
