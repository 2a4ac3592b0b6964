public import FarmHWEncode
internal import Foundation
public import Logging

/// How a coordinator runs.
public struct CoordinatorConfiguration: Sendable {
    public var nodeListenHost: String
    public var nodeListenPort: Int
    /// Job work files (segment packets) live in `dataDirectory/jobs/<id>`.
    public var dataDirectory: String
    public var joinToken: String
    public var coordinatorID: String
    public var heartbeatSeconds: Int
    /// A node silent for this long loses its leases and its connection (stall detector).
    public var leaseTimeoutSeconds: Int
    /// A segment that fails on this many different nodes fails its job (and one that fails twice as
    /// many times in all, whatever the nodes, so that a small fleet cannot retry forever).
    public var maxSegmentFailures: Int
    /// Jobs that run at once; more wait in the queue (admission).
    public var maxConcurrentJobs: Int
    /// Jobs that may wait; past it a submission is refused with `CoordinatorError.queueFull`.
    public var queueLimit: Int
    /// Low-disk watermark: while the data directory's volume has less free space than this, no job
    /// starts (running ones go on). 0 disables it.
    public var minimumFreeBytes: Int64
    /// How the node port is secured: TLS unless plain TCP is explicitly asked for.
    public var nodeSecurity: NodeChannelSecurity
    /// The most messages a node may send per second, on average; it may send twice as many in a burst. A node
    /// that sends more is disconnected (a flood of heartbeats, say). 1000 allows a gigabyte of results a second.
    public var maxNodeMessagesPerSecond: Int
    /// The most bytes a node may send per second, on average (a token bucket that holds two seconds' worth): a
    /// connection past it is closed. 1 GiB/s is above 8 Gbit/s, so results at line rate pass; what it stops is a
    /// peer that keeps the coordinator decrypting and parsing faster than any result needs.
    public var maxNodeBytesPerSecond: Int = 1 << 30
    /// Connections that have not completed the handshake, at once, from one address and in all; more are closed
    /// as soon as they are accepted.
    public var maxUnauthenticatedPerAddress = 4
    public var maxUnauthenticated = 64
    /// `TCP_USER_TIMEOUT` of node sockets: a connection whose sent bytes stay unacknowledged this long (a peer
    /// that vanished, or one that keeps its receive window at zero) is dropped by the kernel. Keepalive probes
    /// find a silent peer as well.
    public var nodeSocketUserTimeoutSeconds = 60
    /// When a node that keeps failing is kept out of work.
    public var quarantine = QuarantinePolicy()
    /// The most slots one node may claim in its hello; a claim of more gets this many.
    public var maxNodeSlots = 64
    /// Results refused by the verifier after which a node is banned (the first quarantines it at once).
    public var banAfterRefusals = 2
    /// Node pools: labels given to node ids by the operator, and whether the labels nodes claim count too.
    public var nodeLabels: [String: Set<String>] = [:]
    public var acceptNodeLabels = false
    /// Threads of the coordinator's own CPU work at once (verifying results); `--work-threads`, the tier's
    /// coordinator CPU with `--tier`, else every core.
    public var workThreads = ProcessInfo.processInfo.activeProcessorCount
    /// What the periodic cleanup removes, and how often it runs.
    public var cleanup = CleanupPolicy()
    /// How sources given as http(s) URLs are fetched (size, time, retries, which addresses).
    public var downloads = DownloadPolicy()
    /// The largest picture and the longest duration a source may have.
    public var sourceLimits = SourceLimits()
    public var logger: Logger

    public init(
        nodeListenHost: String = "127.0.0.1", nodeListenPort: Int = 7700, dataDirectory: String, joinToken: String,
        coordinatorID: String = "coordinator", heartbeatSeconds: Int = 2, leaseTimeoutSeconds: Int = 30,
        maxSegmentFailures: Int = 3, maxConcurrentJobs: Int = 4, queueLimit: Int = 32,
        minimumFreeBytes: Int64 = 2 << 30, nodeSecurity: NodeChannelSecurity = .tlsCertificateInDataDirectory,
        maxNodeMessagesPerSecond: Int = 1000, logger: Logger = Logger(label: "farm.coordinator")
    ) {
        self.nodeSecurity = nodeSecurity
        self.maxNodeMessagesPerSecond = max(maxNodeMessagesPerSecond, 1)
        self.minimumFreeBytes = max(minimumFreeBytes, 0)
        self.maxConcurrentJobs = max(maxConcurrentJobs, 1)
        self.queueLimit = max(queueLimit, 0)
        self.nodeListenHost = nodeListenHost
        self.nodeListenPort = nodeListenPort
        self.dataDirectory = dataDirectory
        self.joinToken = joinToken
        self.coordinatorID = coordinatorID
        self.heartbeatSeconds = heartbeatSeconds
        self.leaseTimeoutSeconds = leaseTimeoutSeconds
        self.maxSegmentFailures = maxSegmentFailures
        self.logger = logger
    }
}

/// A node whose tasks fail `failures` times within `windowSeconds`, with no success in between, gets
/// no new work for `seconds` (it stays connected and finishes what it holds).
public struct QuarantinePolicy: Sendable {
    public var failures = 3
    public var windowSeconds = 600.0
    public var seconds = 300.0
    public init() {}
}

/// The periodic cleanup: every `intervalSeconds` (6 hours by default), finished jobs older than
/// `retentionSeconds` are forgotten and their outputs inside the data directory removed, and work
/// files that belong to no unfinished job are removed. Files of unfinished jobs are never touched.
public struct CleanupPolicy: Sendable {
    public var intervalSeconds = 6 * 3600.0
    public var retentionSeconds = 7 * 24 * 3600.0
    /// Outputs in this directory belong to the coordinator (the HTTP API's outputs) and are removed
    /// with their job; outputs elsewhere belong to the user and are never removed. nil: none.
    public var managedOutputDirectory: String?
    public init() {}
}

/// What a user asks for: a source, an output and the encoder settings.
public struct JobRequest: Sendable, Codable {
    public var source: String
    public var output: String
    public var codec: VideoCodec
    /// nil: the codec's default CRF.
    public var crf: Int?
    public var preset: String
    /// nil: chosen from the source's length and the slots in the fleet.
    public var segmentSeconds: Double?
    /// The slots the job can count on when nodes are still connecting (the embedded default knows them).
    public var expectedSlots: Int?
    /// Keep the segment files after the job (for debugging).
    public var keepWork: Bool
    /// Labels a node must carry to get this job's segments (`"nodes": {"labels": [...]}`); nil or empty: any node.
    public var nodeLabels: [String]?

    public init(
        source: String, output: String, codec: VideoCodec = .h264, crf: Int? = nil, preset: String = "medium",
        segmentSeconds: Double? = nil, expectedSlots: Int? = nil, keepWork: Bool = false
    ) {
        self.source = source
        self.output = output
        self.codec = codec
        self.crf = crf
        self.preset = preset
        self.segmentSeconds = segmentSeconds
        self.expectedSlots = expectedSlots
        self.keepWork = keepWork
    }
}

/// The states of a job.
public enum JobState: String, Sendable, Codable {
    case queued, running, done, failed, cancelled

    public var isFinished: Bool { self == .done || self == .failed || self == .cancelled }
}

/// One segment as a status report shows it.
public struct SegmentStatus: Sendable, Codable {
    public var index: Int
    public var state: String
    public var attempts: Int
    public var node: String?
    public var encoder: String?
    public var frames: Int
}

/// A job as a status report shows it.
public struct JobStatus: Sendable, Codable {
    public var id: String
    public var state: JobState
    /// indexing, splitting, encoding, assembling, verifying, publishing, finished
    public var phase: String
    public var source: String
    public var output: String
    public var progress: Double
    public var framesDone: Int
    public var totalFrames: Int
    public var fps: Double
    public var etaSeconds: Double?
    public var error: String?
    public var segments: [SegmentStatus]
    public var sourceSeconds: Double
    public var wallSeconds: Double
    /// Encoder names by node id, as the nodes reported them.
    public var encodersByNode: [String: String]
    public var dropped: [String]
    /// Segments a node re-encoded in software after its hardware encoder failed.
    public var fallbacks: Int
    /// Bytes of the source downloaded so far (sources given by URL).
    public var downloadedBytes: Int64? = nil
    /// The source's full size, when its server said it.
    public var downloadTotalBytes: Int64? = nil
    /// Labels every node that gets one of its segments carries (`"nodes": {"labels": [...]}`).
    public var nodeLabels: [String] = []
}

/// A connected node as a status report shows it.
public struct NodeStatus: Sendable, Codable {
    public var id: String
    public var address: String
    public var slots: Int
    public var threads: Int
    public var slotsInUse: Int
    public var draining: Bool
    /// Seconds until the node takes work again after failing too often; nil when it is not quarantined.
    public var quarantinedForSeconds: Double?
    /// Why the node was quarantined.
    public var quarantineReason: String?
    public var segmentsDone: Int
    public var secondsSinceHeartbeat: Double
    public var capabilitiesJSON: String
    /// The labels it carries for placement, and those it claims (believed only with `--accept-node-labels`).
    public var labels: [String] = []
    public var claimedLabels: [String] = []
}

/// An error of the coordinator: what went wrong, with which job, segment or node.
public struct CoordinatorError: Error, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable {
        private enum Base: Hashable, Sendable { case invalidRequest, unknownJob, jobFailed, io, queueFull }
        private let base: Base
        private init(_ base: Base) { self.base = base }
        public static let invalidRequest = Code(.invalidRequest)
        public static let unknownJob = Code(.unknownJob)
        public static let jobFailed = Code(.jobFailed)
        public static let io = Code(.io)
        /// The queue holds as many jobs as it may; the client should retry later.
        public static let queueFull = Code(.queueFull)
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}
