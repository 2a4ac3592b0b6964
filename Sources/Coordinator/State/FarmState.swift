internal import FarmHWEncode
internal import Logging
package import FarmMedia
package import FarmProtocol
internal import Foundation

/// The coordinator's decisions, as a value: jobs, their segments, leases (tasks), nodes and their
/// records. Every change is a `mutating` transition that takes the time as an argument (seconds on
/// the coordinator's clock) and returns the effects to carry out (``FarmEffect``). It asks
/// ``SchedulingPolicy`` what to start; it never waits, sends or writes anything itself, so tests
/// drive it with a fake clock.
package struct FarmState: Sendable {
    /// The rules the state applies, from the coordinator's configuration.
    package struct Rules: Sendable {
        package var leaseTimeoutSeconds = 30.0
        package var maxSegmentFailures = 3
        package var quarantine = QuarantinePolicy()
        /// The most slots a node may claim; a hello asking for more gets this many.
        package var maxNodeSlots = 64
        /// The shortest lease deadline, and how many times its expected encode time a lease lasts
        /// (at the node's measured speed) before progress must extend it.
        package var minimumLeaseSeconds = 120.0
        package var leaseTimeFactor = 3.0
        /// However its progress rises, a lease ends at most this many whole leases after it started.
        package var maximumLeaseFactor = 4.0
        /// Labels the operator gives node ids (`--node-label ID=LABEL`), and whether the labels nodes claim for
        /// themselves (`farm node --label`) count too (`--accept-node-labels`).
        package var nodeLabels: [String: Set<String>] = [:]
        package var acceptNodeLabels = false
        /// Refused results after which a node is banned (the first quarantines it at once).
        package var banAfterRefusals = 2

        package init() {}

        init(_ configuration: CoordinatorConfiguration) {
            leaseTimeoutSeconds = Double(configuration.leaseTimeoutSeconds)
            maxSegmentFailures = configuration.maxSegmentFailures
            quarantine = configuration.quarantine
            maxNodeSlots = configuration.maxNodeSlots
            banAfterRefusals = configuration.banAfterRefusals
            nodeLabels = configuration.nodeLabels
            acceptNodeLabels = configuration.acceptNodeLabels
        }
    }

    package struct Node: Sendable {
        let session: UInt64
        let nodeID: String
        let address: String
        package let slots: Int
        let threads: Int
        let capabilitiesJSON: String
        package var inFlight: Set<UInt64> = []
        /// The labels the node carries for placement: those the operator gave its id, and those it claims when the
        /// coordinator believes claims (`Rules.acceptNodeLabels`).
        package var labels: Set<String> = []
        /// What it claims (shown, and believed only with `acceptNodeLabels`).
        var claimedLabels: [String] = []
        var draining = false
        var lastSeen: Double
        var segmentsDone = 0
    }

    /// One lease of a segment to a node slot.
    package struct Task: Sendable {
        let taskID: UInt64
        let jobID: String
        let segment: Int
        let session: UInt64
        let nodeID: String
        var framesDone = 0
        /// A second copy of a straggling segment that another task runs too.
        package var isDuplicate = false
        /// When the lease began and when progress was last reported.
        var startedAt: Double
        var progressTime: Double?
        /// The lease runs out at this time unless progress extends it.
        var deadline: Double
        /// Its result is arriving: the connection's liveness decides from now on, not the deadline.
        var returning = false
    }

    package struct SourceFile: Sendable, Hashable {
        var path: String
        var bytes: Int64
        var checksum: [UInt8]
    }

    package struct Result: Sendable, Hashable {
        var path: String
        var frames: Int
        var encoder: String
        var nodeID: String
    }

    package struct Segment: Sendable {
        let plan: SegmentPlan
        var phase: SegmentPhase = .pending
        /// Set from `ready` on.
        var source: SourceFile?
        /// The task that holds the lease while `leased` (a duplicate may run beside it).
        var holder: UInt64?
        /// Set when `done`.
        var result: Result?
        var attempts = 0
        var failures: [String] = []
        /// The nodes it failed on (failures of kind `segment`), and those it should rather not go
        /// back to (any failure but a refusal).
        var failedNodes: Set<String> = []
        var avoidedNodes: Set<String> = []
        /// Times it went back to the queue (failures and lost leases): its backoff grows with them.
        var requeues = 0
        /// Not leased again before this time: the backoff after a requeue.
        var notBefore = 0.0
        var lastNode: String?
        /// It has had a duplicate (it gets one at most).
        var duplicated = false

        package init(plan: SegmentPlan) { self.plan = plan }
    }

    package struct Job: Sendable {
        let id: String
        let request: JobRequest
        let workDirectory: String
        var state: JobState = .queued
        var phase = "queued"
        var segments: [Segment] = []
        /// Each segment's length in source seconds, for the scheduler.
        var segmentSeconds: [Double] = []
        var settings: EncodeSettings?
        var parameters: CodecParameters?
        var totalFrames = 0
        var sourceSeconds = 0.0
        var error: String?
        var dropped: [String] = []
        var encodersByNode: [String: String] = [:]
        var fallbacks = 0
        var submitted: Double
        var encodingStarted: Double?
        var finished: Double?

        var allSegmentsDone: Bool { !segments.isEmpty && segments.allSatisfy { $0.phase == .done } }
    }

    package var rules: Rules
    package var policy = SchedulingPolicy()
    package var nodes: [UInt64: Node] = [:]
    package var jobs: [String: Job] = [:]
    var jobOrder: [String] = []
    package var tasks: [UInt64: Task] = [:]
    var nextTaskID: UInt64 = 1
    var nextSessionID: UInt64 = 1
    /// Measured speeds per node and codec, and the jobs' predicted finish times.
    package var speeds = SpeedEstimates()
    package var predictedFinish: [String: Double] = [:]
    /// Recent failures of each node, cleared by a success; and the nodes kept out of work until a
    /// time, with the reason.
    var nodeFailures: [String: [Double]] = [:]
    var quarantined: [String: (until: Double, reason: String)] = [:]
    /// Results the verifier refused, per node id and in all; and the bans in force, by node id.
    var refusals: [String: Int] = [:]
    package var refusedResults = 0
    package var bans: [String: Ban] = [:]

    /// Replaces the policy's decisions (the scheduler simulation compares the naive policy with it).
    package typealias Decide = @Sendable (
        _ nodes: [SchedulerNode], _ ready: [SchedulerSegment], _ running: [SchedulerRunning], _ now: Double
    ) -> [SchedulingDecision]
    package var decide: Decide?

    package init(rules: Rules = Rules()) { self.rules = rules }

    // MARK: - Jobs

    /// A job was accepted: it waits for admission and planning.
    package mutating func jobQueued(id: String, request: JobRequest, workDirectory: String, now: Double) {
        guard jobs[id] == nil else { return }
        jobs[id] = Job(id: id, request: request, workDirectory: workDirectory, submitted: now)
        jobOrder.append(id)
    }

    /// The job's pipeline started (admitted).
    package mutating func jobStarted(_ id: String) -> [FarmEffect] {
        guard jobs[id]?.state == .queued else { return [] }
        jobs[id]?.state = .running
        return [.persist(.updateJob(id: id, state: .running, phase: "indexing", error: nil))]
    }

    /// The pipeline's phase, for status reports and the store.
    mutating func setPhase(_ id: String, _ phase: String) -> [FarmEffect] {
        guard jobs[id]?.state == .running || (jobs[id]?.state == .queued && phase.hasPrefix("waiting")) else { return [] }
        jobs[id]?.phase = phase
        guard jobs[id]?.state == .running else { return [] }
        return [.persist(.updateJob(id: id, state: nil, phase: phase, error: nil))]
    }

    /// The job was planned: its segments, with those a previous run finished or split adopted.
    package mutating func jobPlanned(
        _ id: String, segments: [Segment], segmentSeconds: [Double], settings: EncodeSettings,
        parameters: CodecParameters?, totalFrames: Int, sourceSeconds: Double, now: Double
    ) -> [FarmEffect] {
        guard var job = jobs[id], job.state == .running else { return [] }
        job.segments = segments
        job.segmentSeconds = segmentSeconds
        job.settings = settings
        job.parameters = parameters
        job.totalFrames = totalFrames
        job.sourceSeconds = sourceSeconds
        job.encodingStarted = now
        jobs[id] = job
        var effects: [FarmEffect] = []
        if job.allSegmentsDone { effects.append(.segmentsDone(jobID: id)) }
        return effects + schedule(now: now)
    }

    /// A segment's source file is written: it may be leased.
    package mutating func segmentSplit(
        _ id: String, index: Int, path: String, bytes: Int64, checksum: [UInt8], now: Double
    ) -> [FarmEffect] {
        guard jobs[id]?.state == .running, let segment = jobs[id]?.segments[safe: index], segment.phase == .pending
        else { return [] }
        jobs[id]?.segments[index].phase = .ready
        jobs[id]?.segments[index].source = SourceFile(path: path, bytes: bytes, checksum: checksum)
        return [.persist(.markReady(jobID: id, index: index, path: path, bytes: bytes, checksum: checksum))]
            + schedule(now: now)
    }

    /// Streams the assembly dropped (the output container could not hold them).
    mutating func setDropped(_ id: String, _ dropped: [String]) { jobs[id]?.dropped = dropped }

    /// The output is verified and in place.
    mutating func finish(_ id: String, now: Double) -> [FarmEffect] {
        guard var job = jobs[id], !job.state.isFinished else { return [] }
        job.state = .done
        job.phase = "finished"
        job.finished = now
        jobs[id] = job
        return [.persist(.updateJob(id: id, state: .done, phase: "finished", error: nil)), .jobEnded(jobID: id)]
    }

    /// Ends a job that is not finished yet (failed or cancelled): its running tasks are cancelled on
    /// their nodes.
    mutating func end(_ id: String, reason: String, state: JobState, now: Double) -> [FarmEffect] {
        guard var job = jobs[id], !job.state.isFinished else { return [] }
        job.state = state
        job.phase = "finished"
        job.error = reason
        job.finished = now
        jobs[id] = job
        var effects: [FarmEffect] = [.persist(.updateJob(id: id, state: state, phase: "finished", error: reason))]
        for (taskID, task) in tasks where task.jobID == id {
            tasks[taskID] = nil
            nodes[task.session]?.inFlight.remove(taskID)
            effects.append(.send(session: task.session, .cancel(taskID: taskID)))
        }
        effects.log(.error, "job \(state.rawValue)", ["job": id, "reason": reason])
        effects.append(.jobEnded(jobID: id))
        return effects + schedule(now: now)
    }

    /// Forgets finished jobs (cleanup).
    mutating func forget(_ ids: Set<String>) {
        guard !ids.isEmpty else { return }
        jobOrder.removeAll { ids.contains($0) }
        for id in ids {
            jobs[id] = nil
            predictedFinish[id] = nil
        }
    }

    // MARK: - Queries

    var totalSlots: Int { nodes.values.filter { !$0.draining }.reduce(0) { $0 + $1.slots } }

    /// Each working slot's measured speed for `codec` (a node's unmeasured slots count at the
    /// fleet's median), for the default segment length.
    func slotSpeeds(codec: String) -> [Double] {
        let fleet = nodes.values.filter { !$0.draining }.map {
            SchedulerNode(id: $0.session, name: $0.nodeID, slots: $0.slots, speeds: speeds.speeds(node: $0.nodeID))
        }
        return fleet.flatMap { node in
            Array(repeating: SchedulingPolicy.effectiveSpeed(of: node, codec: codec, fleet: fleet), count: node.slots)
        }
    }

    /// Jobs that wait for admission.
    var queuedCount: Int { jobs.values.filter { $0.state == .queued }.count }

    /// Where a task's result goes, or nil when the task is not this session's or no longer wanted
    /// (cancelled, job ended). The task's deadline no longer applies once its result arrives.
    mutating func resultArriving(_ session: UInt64, taskID: UInt64, now: Double) -> String? {
        nodes[session]?.lastSeen = now
        guard let task = tasks[taskID], task.session == session, let job = jobs[task.jobID], job.state == .running
        else { return nil }
        tasks[taskID]?.returning = true
        return "\(job.workDirectory)/enc-\(task.segment)-\(taskID).pkt"
    }

    /// What a result of this session's task is checked against before it is accepted: its frames,
    /// the job's pinned stream header, and the most bytes it may have.
    func expectations(_ session: UInt64, taskID: UInt64) -> ResultExpectations? {
        guard let task = tasks[taskID], task.session == session, let job = jobs[task.jobID],
            let segment = job.segments[safe: task.segment]
        else { return nil }
        return ResultExpectations(
            frames: segment.plan.expectedFrames, parameters: job.parameters,
            maxBytes: ResultExpectations.byteLimit(sourceBytes: segment.source?.bytes ?? 0),
            check: ResultExpectations.check(plan: segment.plan, sourcePath: segment.source?.path, settings: job.settings))
    }
}

/// What a result must match before its bytes are accepted.
struct ResultExpectations: Sendable {
    var frames: Int
    var parameters: CodecParameters?
    var maxBytes: Int64
    /// What the result's pictures and stream are verified against (``SegmentVerifier``): nil only
    /// before the job's settings and the segment's source file exist.
    var check: SegmentCheck?

    static func check(plan: SegmentPlan, sourcePath: String?, settings: EncodeSettings?) -> SegmentCheck? {
        guard let sourcePath, let s = settings else { return nil }
        return SegmentCheck(
            segment: plan.index, sourcePath: sourcePath, startPTS: plan.startPTS, endPTS: plan.endPTS, codec: s.codec,
            encoder: s.encoder, crf: Int(s.crf), pixelFormat: s.pixelFormat, width: Int(s.width), height: Int(s.height),
            sampleAspectRatio: Rational(s.sampleAspectNum, s.sampleAspectDen), colorRange: UInt32(clamping: s.colorRange),
            colorPrimaries: UInt32(clamping: s.colorPrimaries), colorTransfer: UInt32(clamping: s.colorTransfer),
            colorSpace: UInt32(clamping: s.colorSpace), gopSize: Int(s.gopSize))
    }

    /// The most bytes a segment's result may have: a generous multiple of its source's size, at
    /// least 256 MiB (an encode at the job's settings never comes near it; a node that announces
    /// more is refused before a byte is written).
    static func byteLimit(sourceBytes: Int64) -> Int64 {
        let (scaled, overflow) = max(sourceBytes, 0).multipliedReportingOverflow(by: 16)
        return overflow ? Int64.max : max(scaled, 256 << 20)
    }
}

extension Array {
    subscript(safe index: Int) -> Element? { indices.contains(index) ? self[index] : nil }
}
