public import FarmHWEncode
public import FarmMedia
internal import FarmProtocol
internal import Foundation
public import Logging
internal import NIOCore
internal import NIOPosix

/// What a node session's writer sends: a message, a segment (assign then its bytes), or a close.
enum Outgoing: Sendable {
    case message(Message)
    case segment(Assign, path: String)
    case close(reason: String)
}

/// The control plane: plans jobs, leases their segments to node slots, collects the results and
/// joins them. One actor owns all state; FFmpeg work runs on threads of its own (`Offload`).
public actor Coordinator {
    struct NodeRecord {
        let session: UInt64
        let nodeID: String
        let address: String
        let slots: Int
        let threads: Int
        let capabilitiesJSON: String
        let outgoing: AsyncStream<Outgoing>.Continuation
        var inFlight: Set<UInt64> = []
        var draining = false
        var lastSeen: ContinuousClock.Instant
        var segmentsDone = 0
    }

    struct TaskRecord {
        let taskID: UInt64
        let jobID: String
        let segment: Int
        let session: UInt64
        let nodeID: String
        var framesDone = 0
        /// A second copy of a straggling segment that another task runs too.
        var isDuplicate = false
        /// When the lease began and when progress was last reported (seconds on the scheduler clock).
        var startedAt = 0.0
        var progressTime: Double?
    }

    enum SegmentState {
        case pending
        case ready(path: String, bytes: Int64, checksum: [UInt8])
        case running(taskID: UInt64, path: String, bytes: Int64, checksum: [UInt8])
        case done(path: String, frames: Int, encoder: String, nodeID: String)
    }

    struct SegmentRecord {
        let plan: SegmentPlan
        var state: SegmentState = .pending
        var attempts = 0
        var failures: [String] = []
        /// The nodes it failed on (failures of kind `segment`), and those it should rather not go
        /// back to (any failure but a refusal).
        var failedNodes: Set<String> = []
        var avoidedNodes: Set<String> = []
        /// Times it went back to the queue (failures and lost leases): its backoff grows with them.
        var requeues = 0
        /// Not leased again before this time (scheduler clock): the backoff after a requeue.
        var notBefore = 0.0
        var lastNode: String?
        /// It has had a duplicate (it gets one at most).
        var duplicated = false
    }

    /// A job that ended in an earlier run: its last status, built once from the job store.
    struct ArchivedJob {
        var status: JobStatus
        /// Its work files were asked to be kept: cleanup leaves them until the job is forgotten.
        var keepWork: Bool

        static func status(_ snapshot: JobSnapshot) -> JobStatus {
            let job = snapshot.job
            var framesDone = 0
            var encodersByNode: [String: String] = [:]
            let segments = snapshot.segments.map { segment in
                let done = segment.state == .done
                let frames = done ? segment.frames ?? segment.plan.expectedFrames : 0
                framesDone += frames
                if done, let node = segment.doneNode, let encoder = segment.encoder { encodersByNode[node] = encoder }
                let state =
                    switch segment.state {
                    case .done: "done"
                    case .ready: "queued"
                    case .pending, .leased: "pending"
                    }
                return SegmentStatus(
                    index: segment.index, state: state, attempts: segment.attempts, node: segment.doneNode,
                    encoder: segment.encoder, frames: frames)
            }
            let started = job.startedAt ?? job.createdAt
            let finished = job.finishedAt ?? started
            return JobStatus(
                id: job.id, state: job.state, phase: job.phase, source: job.source, output: job.output,
                progress: Coordinator.progress(job.state, framesDone: framesDone, totalFrames: job.totalFrames),
                framesDone: framesDone, totalFrames: job.totalFrames,
                fps: Coordinator.fps(framesDone, in: finished.timeIntervalSince(started)), etaSeconds: 0, error: job.error,
                segments: segments, sourceSeconds: job.sourceSeconds,
                wallSeconds: max(finished.timeIntervalSince(job.createdAt), 0), encodersByNode: encodersByNode,
                dropped: [], fallbacks: 0)
        }
    }

    struct JobRecord {
        let id: String
        let request: JobRequest
        var state: JobState = .queued
        var phase = "queued"
        var segments: [SegmentRecord] = []
        /// Each segment's length in source seconds, for the scheduler.
        var segmentSeconds: [Double] = []
        var settings: EncodeSettings?
        var parameters: CodecParameters?
        var totalFrames = 0
        var sourceSeconds = 0.0
        var workDirectory: String
        var error: String?
        var dropped: [String] = []
        var encodersByNode: [String: String] = [:]
        var fallbacks = 0
        var submitted = ContinuousClock.now
        var encodingStarted: ContinuousClock.Instant?
        var finished: ContinuousClock.Instant?
        var segmentsWaiter: CheckedContinuation<Void, Never>?
        var finishWaiters: [CheckedContinuation<JobStatus, Never>] = []
        let cancel = CancellationFlag()
        /// Set while (and after) a source given by URL is downloaded.
        var download: DownloadProgress?

        var allSegmentsDone: Bool {
            !segments.isEmpty && segments.allSatisfy { if case .done = $0.state { true } else { false } }
        }
    }

    let configuration: CoordinatorConfiguration
    nonisolated let logger: Logger
    private var nodes: [UInt64: NodeRecord] = [:]
    private var jobs: [String: JobRecord] = [:]
    private var jobOrder: [String] = []
    /// Jobs that ended in an earlier run, as the job store recorded them (oldest first): still listed, and their
    /// outputs still served, until cleanup forgets them.
    private var archived: [String: ArchivedJob] = [:]
    private var archivedOrder: [String] = []
    private var tasks: [UInt64: TaskRecord] = [:]
    private var nextTaskID: UInt64 = 1
    private var nextSessionID: UInt64 = 1
    private var nextJobNumber = 1
    /// Speed-aware scheduling (SchedulingPolicy): measured speeds per node and codec, and the jobs'
    /// predicted finish times on the same clock.
    private let policy = SchedulingPolicy()
    private var speeds = SpeedEstimates()
    private let epoch = ContinuousClock.now
    private var predictedFinish: [String: Double] = [:]
    /// Recent failures of each node (scheduler clock), cleared by a success; and the nodes kept out
    /// of work until a time, with the reason.
    private var nodeFailures: [String: [Double]] = [:]
    private var quarantined: [String: (until: Double, reason: String)] = [:]
    /// Set on shutdown: jobs stop where they are and are not marked failed.
    private var stopping = false
    /// Admission: jobs running now, and jobs waiting for one of the `maxConcurrentJobs` places.
    private var runningJobs = 0
    private var admissionWaiters: [CheckedContinuation<Void, Never>] = []
    private var now: Double { (ContinuousClock.now - epoch).seconds }
    private let jobStream: AsyncStream<String>
    private let jobContinuation: AsyncStream<String>.Continuation
    /// The durable record of jobs, written in order by one consumer so the actor never waits on SQLite
    /// unless it needs an answer (planning and resume).
    private var store: JobStore?
    private let storeOperations: AsyncStream<@Sendable (JobStore) async -> Void>
    private let storeContinuation: AsyncStream<@Sendable (JobStore) async -> Void>.Continuation

    public init(configuration: CoordinatorConfiguration) {
        self.configuration = configuration
        self.logger = configuration.logger
        (jobStream, jobContinuation) = AsyncStream<String>.makeStream()
        (storeOperations, storeContinuation) = AsyncStream<@Sendable (JobStore) async -> Void>.makeStream()
    }

    // MARK: - Durable state

    /// Opens the job store in the data directory (once) and takes back the jobs a previous run left
    /// unfinished: their leases are void, and they are queued again to resume. Returns their ids.
    @discardableResult
    public func open() async throws -> [String] {
        guard store == nil else { return [] }
        try FileManager.default.createDirectory(
            atPath: configuration.dataDirectory + "/jobs", withIntermediateDirectories: true)
        let store = try await JobStore(dataDirectory: configuration.dataDirectory)
        self.store = store
        _ = try await store.releaseAllLeases()
        for node in try await store.nodes(states: [.connected, .draining]) {
            _ = try await store.markNode(node.id, .gone, reason: "coordinator restarted")
        }
        // Jobs that ended before the restart keep answering, so a finished output can still be fetched.
        for snapshot in try await store.finishedJobs(limit: Self.archivedJobLimit) where jobs[snapshot.job.id] == nil {
            let stored = snapshot.job
            countJobNumber(stored.id)
            let request = try? JobStore.decodeJSON(JobRequest.self, from: stored.request)
            archived[stored.id] = ArchivedJob(status: ArchivedJob.status(snapshot), keepWork: request?.keepWork ?? false)
            archivedOrder.append(stored.id)
        }
        var resumed: [String] = []
        for snapshot in try await store.unfinishedJobs() {
            let stored = snapshot.job
            guard jobs[stored.id] == nil, let request = try? JobStore.decodeJSON(JobRequest.self, from: stored.request)
            else { continue }
            countJobNumber(stored.id)
            jobs[stored.id] = JobRecord(id: stored.id, request: request, workDirectory: stored.workDirectory)
            jobOrder.append(stored.id)
            jobContinuation.yield(stored.id)
            resumed.append(stored.id)
            logger.notice("resuming job", metadata: ["job": "\(stored.id)", "source": "\(stored.source)"])
        }
        return resumed
    }

    /// The most jobs of earlier runs a restarted coordinator still reports (the newest ones).
    static let archivedJobLimit = 10_000

    /// Job ids are numbered: a new one never takes the number of a job the store knows.
    private func countJobNumber(_ id: String) {
        if let number = Int(id.split(separator: "-").dropFirst().first ?? "") {
            nextJobNumber = max(nextJobNumber, number + 1)
        }
    }

    /// Forgets jobs of earlier runs that cleanup removed from the store.
    func forgetArchived(_ ids: some Sequence<String>) {
        let gone = Set(ids).intersection(archived.keys)
        guard !gone.isEmpty else { return }
        for id in gone { archived[id] = nil }
        archivedOrder.removeAll { gone.contains($0) }
    }

    /// Queues a store write; a failure is logged, never fatal (the in-memory state stays the truth of this run).
    private func record(_ what: String, _ body: @escaping @Sendable (JobStore) async throws -> Void) {
        let logger = self.logger
        storeContinuation.yield { store in
            do { try await body(store) } catch { logger.warning("job store: \(what): \(error)") }
        }
    }

    /// Queues a store call behind the writes before it and waits for its answer.
    private func persist<T: Sendable>(_ body: @escaping @Sendable (JobStore) async throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            storeContinuation.yield { store in
                do { continuation.resume(returning: try await body(store)) } catch { continuation.resume(throwing: error) }
            }
        }
    }

    // MARK: - Running

    /// Binds the node port; `port` of the result is the one bound (useful with port 0).
    public nonisolated func bind() async throws -> NodeListener {
        try await NodeListener.bind(configuration: configuration)
    }

    /// Serves nodes and runs jobs until the task is cancelled.
    public func run(_ listener: NodeListener) async throws {
        try await open()
        let operations = storeOperations
        guard let store else { return }
        logger.info(
            "coordinator listening for nodes",
            metadata: ["address": "\(configuration.nodeListenHost):\(listener.port)"])
        // Shutdown wakes every waiting job (admission, segments) without ending it: jobs stay resumable.
        try await withTaskCancellationHandler {
            try await serve(listener, store: store, operations: operations)
        } onCancel: {
            Task { await self.stop() }
        }
    }

    private func serve(
        _ listener: NodeListener, store: JobStore, operations: AsyncStream<@Sendable (JobStore) async -> Void>
    ) async throws {
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask {
                for await operation in operations { await operation(store) }
            }
            group.addTask {
                await withDiscardingTaskGroup { jobs in
                    for await id in self.jobStream {
                        jobs.addTask { await self.runJob(id) }
                    }
                }
            }
            group.addTask { try await self.serveNodes(listener) }
            group.addTask { await self.watchLeases() }
            group.addTask { await self.cleanupLoop() }
        }
    }

    private nonisolated func serveNodes(_ listener: NodeListener) async throws {
        try await withThrowingDiscardingTaskGroup { group in
            try await listener.channel.executeThenClose { inbound in
                for try await connection in inbound {
                    group.addTask {
                        await NodeSession(
                            coordinator: self, connection: connection, channelBinding: listener.channelBinding
                        ).run()
                    }
                }
            }
        }
    }

    /// Every second: a node whose heartbeat is older than the lease timeout loses its connection,
    /// and with it its leases.
    private func watchLeases() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(1))
            let now = ContinuousClock.now
            for node in nodes.values where now - node.lastSeen > .seconds(configuration.leaseTimeoutSeconds) {
                logger.warning("node stalled: no heartbeat, closing it", metadata: ["node": "\(node.nodeID)"])
                node.outgoing.yield(.close(reason: "no heartbeat for \(configuration.leaseTimeoutSeconds) s"))
            }
            schedule()
        }
    }

    // MARK: - Jobs

    /// Queues a job after checking what can be checked at once: the output directory, and that the
    /// source is a readable video (a one-line error naming it otherwise). The segment length is fixed
    /// here, so that a resumed job plans the same segments.
    public func submit(_ request: JobRequest) async throws -> String {
        var request = request
        let outputDirectory = (request.output as NSString).deletingLastPathComponent
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: outputDirectory.isEmpty ? "." : outputDirectory, isDirectory: &isDirectory),
            isDirectory.boolValue
        else {
            throw CoordinatorError(.invalidRequest, "\(request.output): output directory does not exist")
        }
        let sourcePath = URL(fileURLWithPath: request.source).standardizedFileURL.path
        guard sourcePath != URL(fileURLWithPath: request.output).standardizedFileURL.path else {
            throw CoordinatorError(.invalidRequest, "\(request.output): output would overwrite the source")
        }
        let source = request.source
        if SourceURL.isURL(source) {
            // Fetched when the job runs; the URL, and the size its server announces, are checked now.
            try await SourceDownloader.precheck(try SourceURL(source, policy: configuration.downloads), policy: configuration.downloads)
        } else {
            let info: MediaInfo
            do {
                info = try await Offload.run("probe") { _ in try MediaInfo.probe(path: source) }
            } catch {
                throw CoordinatorError(.invalidRequest, "\(error)")
            }
            guard info.videoStreamIndex != nil else {
                throw CoordinatorError(.invalidRequest, "\(source): has no video stream")
            }
            try configuration.sourceLimits.check(info, source: source)
            if request.segmentSeconds == nil {
                let slots = max(totalSlots, request.expectedSlots ?? 0, 1)
                request.segmentSeconds = SegmentPlanner.defaultSegmentSeconds(
                    durationSeconds: info.durationSeconds, totalSlots: slots, slotSpeeds: slotSpeeds(codec: request.codec.rawValue))
            }
        }
        let waiting = jobs.values.filter { $0.state == .queued }.count
        guard waiting < configuration.queueLimit else {
            throw CoordinatorError(
                .queueFull,
                "the queue is full: \(waiting) jobs wait for one of \(configuration.maxConcurrentJobs) places; retry later")
        }
        let id = String(format: "job-%04d-%@", nextJobNumber, String(UUID().uuidString.prefix(8)).lowercased())
        nextJobNumber += 1
        let workDirectory = "\(configuration.dataDirectory)/jobs/\(id)"
        jobs[id] = JobRecord(id: id, request: request, workDirectory: workDirectory)
        jobOrder.append(id)
        let json = try JobStore.encodeJSON(request)
        let stored = request
        record("insert job \(id)") {
            try await $0.insertJob(id: id, source: stored.source, output: stored.output, request: json, workDirectory: workDirectory)
        }
        jobContinuation.yield(id)
        logger.info("job queued", metadata: ["job": "\(id)", "source": "\(request.source)"])
        return id
    }

    /// The unfinished job with this source and output, if a previous run left one (see `open()`).
    public func unfinishedJob(source: String, output: String) -> String? {
        jobOrder.first { id in
            guard let job = jobs[id], !job.state.isFinished else { return false }
            return job.request.source == source && job.request.output == output
        }
    }

    /// The job's status now.
    public func status(_ id: String) -> JobStatus? {
        jobs[id].map(makeStatus) ?? archived[id]?.status
    }

    /// Every job, oldest first: those that ended in earlier runs (unless left out), then this run's.
    public func listJobs(includingEarlierRuns: Bool = true) -> [JobStatus] {
        let current = jobOrder.compactMap { jobs[$0].map(makeStatus) }
        return includingEarlierRuns ? archivedOrder.compactMap { archived[$0]?.status } + current : current
    }

    /// The data directory and the node count, for health and readiness reports.
    public var dataDirectory: String { configuration.dataDirectory }

    /// Waits until the job is done, failed or cancelled.
    public func waitForCompletion(_ id: String) async throws -> JobStatus {
        if jobs[id] == nil, let ended = archived[id] { return ended.status }
        guard let job = jobs[id] else { throw CoordinatorError(.unknownJob, "no job \(id)") }
        if job.state.isFinished || stopping { return makeStatus(job) }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                jobs[id]?.finishWaiters.append(continuation)
            }
        } onCancel: {
            Task { await self.stop() }
        }
    }

    /// Cancels a job: nodes are told to stop its segments.
    public func cancel(_ id: String, reason: String = "cancelled") throws {
        guard jobs[id] != nil else { throw CoordinatorError(.unknownJob, "no job \(id)") }
        fail(id, reason, state: .cancelled)
    }

    public func connectedNodes() -> [NodeStatus] {
        let now = ContinuousClock.now
        let clock = self.now
        return nodes.values.sorted { $0.session < $1.session }.map {
            let quarantine = quarantined[$0.nodeID].flatMap { $0.until > clock ? $0 : nil }
            return NodeStatus(
                id: $0.nodeID, address: $0.address, slots: $0.slots, threads: $0.threads, slotsInUse: $0.inFlight.count,
                draining: $0.draining, quarantinedForSeconds: quarantine.map { $0.until - clock },
                quarantineReason: quarantine?.reason, segmentsDone: $0.segmentsDone,
                secondsSinceHeartbeat: (now - $0.lastSeen).seconds, capabilitiesJSON: $0.capabilitiesJSON)
        }
    }

    /// Tells every node to finish what it has and leave.
    public func drainNodes() {
        for id in nodes.keys {
            nodes[id]?.draining = true
            nodes[id]?.outgoing.yield(.message(.drain))
            if let nodeID = nodes[id]?.nodeID {
                record("node \(nodeID) draining") { _ = try await $0.markNode(nodeID, .draining) }
            }
        }
    }

    /// What a cleanup pass may remove, decided from the jobs (see ``cleanUp(now:)``).
    struct CleanupPlan {
        /// Jobs finished before the retention cut-off, forgotten now.
        var forgotten: [(id: String, output: String, work: String)] = []
        /// Names in `<data dir>/jobs` to keep: unfinished jobs, and finished ones kept for debugging.
        var keepWork: Set<String> = []
        /// Ids of unfinished jobs (their temporary outputs stay).
        var unfinished: Set<String> = []
        /// Paths never to remove: the work directories and outputs of unfinished jobs.
        var keepPaths: Set<String> = []
    }

    /// Forgets the jobs that finished before `cutoff` and says what else must be kept.
    func cleanupPlan(retiringBefore cutoff: ContinuousClock.Instant) -> CleanupPlan {
        var plan = CleanupPlan()
        for id in jobOrder {
            guard let job = jobs[id] else { continue }
            if !job.state.isFinished {
                plan.unfinished.insert(id)
                plan.keepWork.insert(id)
                plan.keepPaths.insert(URL(fileURLWithPath: job.workDirectory).standardizedFileURL.path)
                plan.keepPaths.insert(URL(fileURLWithPath: job.request.output).standardizedFileURL.path)
                plan.keepPaths.insert(URL(fileURLWithPath: job.request.source).standardizedFileURL.path)
            } else if let finished = job.finished, finished < cutoff {
                plan.forgotten.append((id, job.request.output, job.workDirectory))
            } else if job.request.keepWork {
                plan.keepWork.insert(id)
            }
        }
        for (id, job) in archived where job.keepWork { plan.keepWork.insert(id) }
        let forgotten = Set(plan.forgotten.map(\.id))
        if !forgotten.isEmpty {
            jobOrder.removeAll { forgotten.contains($0) }
            for id in forgotten {
                jobs[id] = nil
                predictedFinish[id] = nil
            }
        }
        return plan
    }

    /// The job store's health: nil when the coordinator runs without one (not opened yet), else
    /// its check's summary or error.
    public func databaseCheck() async -> Result<String, JobStoreError>? {
        guard let store else { return nil }
        do {
            return .success(try await store.check())
        } catch let error as JobStoreError {
            return .failure(error)
        } catch {
            return .failure(JobStoreError(.database, "database check: \(error)"))
        }
    }

    /// The job store, for the cleanup pass.
    var storeForCleanup: JobStore? { store }

    /// Each working slot's measured speed for `codec` (a node's unmeasured slots count at the
    /// fleet's median), for the default segment length.
    private func slotSpeeds(codec: String) -> [Double] {
        let fleet = nodes.values.filter { !$0.draining }.map {
            SchedulerNode(id: $0.session, name: $0.nodeID, slots: $0.slots, speeds: speeds.speeds(node: $0.nodeID))
        }
        return fleet.flatMap { node in
            Array(repeating: SchedulingPolicy.effectiveSpeed(of: node, codec: codec, fleet: fleet), count: node.slots)
        }
    }

    private var totalSlots: Int { nodes.values.filter { !$0.draining }.reduce(0) { $0 + $1.slots } }

    private func runJob(_ id: String) async {
        // Admission: wait for one of the concurrent places; a job cancelled meanwhile never starts.
        while runningJobs >= configuration.maxConcurrentJobs, !stopping {
            await withCheckedContinuation { admissionWaiters.append($0) }
        }
        guard !stopping, jobs[id]?.state == .queued else { return }
        // Low-disk watermark: admission pauses until there is room again (checked every 5 s).
        var warned = false
        while !stopping, !Task.isCancelled, jobs[id]?.state == .queued, let free = freeBytes(),
            free < configuration.minimumFreeBytes
        {
            if !warned {
                logger.warning(
                    "low disk: admission paused",
                    metadata: ["job": "\(id)", "free_mb": "\(free >> 20)", "watermark_mb": "\(configuration.minimumFreeBytes >> 20)"])
                warned = true
            }
            jobs[id]?.phase = "waiting for disk space"
            try? await Task.sleep(for: .seconds(5))
        }
        guard !stopping, !Task.isCancelled, jobs[id]?.state == .queued else { return }
        runningJobs += 1
        defer {
            runningJobs -= 1
            if !admissionWaiters.isEmpty { admissionWaiters.removeFirst().resume() }
        }
        await runAdmittedJob(id)
    }

    private func runAdmittedJob(_ id: String) async {
        guard let request = jobs[id]?.request, let flag = jobs[id]?.cancel else { return }
        var log = logger
        log[metadataKey: "job"] = "\(id)"
        let workDirectory = jobs[id]!.workDirectory
        jobs[id]?.state = .running
        record("start job \(id)") { _ = try await $0.updateJob(id, state: .running, phase: "indexing") }
        let temporaryOutput = Self.temporaryPath(for: request.output, id: id)
        do {
            try FileManager.default.createDirectory(atPath: workDirectory, withIntermediateDirectories: true)
            let source = try await fetchSource(id, request.source, into: workDirectory, cancel: flag)
            setPhase(id, "indexing")
            let limits = configuration.sourceLimits
            let (info, index) = try await Offload.run("index \(id)") { threadFlag in
                let info = try MediaInfo.probe(path: source)
                try limits.check(info, source: request.source)
                let index = try SourceIndex.scan(path: source) { threadFlag.isCancelled || flag.isCancelled }
                return (info, index)
            }
            let slots = max(totalSlots, request.expectedSlots ?? 0, 1)
            let seconds =
                request.segmentSeconds
                ?? SegmentPlanner.defaultSegmentSeconds(
                    durationSeconds: info.durationSeconds, totalSlots: slots,
                    slotSpeeds: slotSpeeds(codec: request.codec.rawValue))
            let plans = SegmentPlanner.plan(index: index, segmentSeconds: seconds)
            // A job planned before (a restart) keeps the segments whose files still check out.
            let totalFrames = index.totalFrames
            let sourceSeconds = info.durationSeconds
            let outcome = try await persist {
                try await $0.setPlan(
                    id, settings: nil, totalFrames: totalFrames, sourceSeconds: sourceSeconds, plans: plans,
                    ifDifferent: .replace)
            }
            var adopted: [Int: StoredSegment] = [:]
            var pinned: CodecParameters?
            if outcome == .unchanged {
                let verification = try await persist { store in
                    try await store.verifySegments(id) { path in
                        try await Offload.run("digest") { _ in try JobStore.fileDigest(atPath: path) }
                    }
                }
                for segment in try await persist({ try await $0.segments(id) }) where segment.state == .done || segment.state == .ready {
                    adopted[segment.index] = segment
                }
                if let bytes = try await persist({ try await $0.job(id)?.pinnedParameters }) {
                    pinned = try? CodecParameters(serialized: [UInt8](bytes))
                }
                log.notice(
                    "job resumed",
                    metadata: [
                        "encoded": "\(adopted.values.filter { $0.state == .done }.count)",
                        "split": "\(adopted.values.filter { $0.state == .ready }.count)",
                        "reset": "\(verification.toReady.count + verification.toPending.count)",
                    ])
            }
            guard let encoder = EncoderCatalog.softwareEncoder(for: request.codec) else {
                throw CoordinatorError(.invalidRequest, "no \(request.codec.rawValue) encoder in this build of libavcodec")
            }
            let config = try EncoderCatalog.configuration(
                for: index, codec: request.codec, encoder: encoder, crf: request.crf, preset: request.preset, threads: 0)
            try await Offload.run("validate \(id)") { _ in try EncoderCatalog.validate(config) }
            guard var job = jobs[id], job.state == .running else { return }
            job.segments = plans.map { plan in
                var record = SegmentRecord(plan: plan)
                if let stored = adopted[plan.index] {
                    if stored.state == .done, let path = stored.resultPath {
                        record.state = .done(
                            path: path, frames: stored.frames ?? plan.expectedFrames, encoder: stored.encoder ?? "",
                            nodeID: stored.doneNode ?? "")
                    } else if stored.state == .ready, let path = stored.sourcePath, let checksum = stored.sourceChecksum {
                        record.state = .ready(path: path, bytes: stored.sourceBytes ?? 0, checksum: [UInt8](checksum))
                    }
                }
                return record
            }
            job.parameters = pinned
            job.segmentSeconds = plans.map { Double($0.durationTicks) * index.timeBase.doubleValue }
            job.settings = EncodeSettings(config)
            job.totalFrames = index.totalFrames
            job.sourceSeconds = info.durationSeconds
            job.encodingStarted = .now
            jobs[id] = job
            log.info(
                "job planned",
                metadata: [
                    "segments": "\(plans.count)", "frames": "\(index.totalFrames)",
                    "segment_seconds": "\(String(format: "%.1f", seconds))", "encoder": "\(encoder)",
                ])
            setPhase(id, "encoding")

            // Split in one sequential read; each segment becomes dispatchable the moment it is written.
            let (ready, readyContinuation) = AsyncStream<(Int, String, Int64, [UInt8])>.makeStream()
            let payloads = plans.filter { adopted[$0.index] == nil }.map {
                SegmentPayload(index: $0.index, packets: $0.packets, path: "\(workDirectory)/src-\($0.index).pkt")
            }
            let paths = Dictionary(uniqueKeysWithValues: payloads.map { ($0.index, $0.path) })
            let segmentCount = plans.count
            async let split: Void = Offload.run("split \(id)") { threadFlag in
                defer { readyContinuation.finish() }
                guard !payloads.isEmpty else { return }
                let sums = ChecksumTable(count: segmentCount)
                try SegmentSplitter.split(
                    path: source, index: index, payloads: payloads,
                    observer: { i in { sums.update(i, $0) } },
                    written: { i, bytes in readyContinuation.yield((i, paths[i]!, bytes, sums.finalize(i))) },
                    isCancelled: { threadFlag.isCancelled || flag.isCancelled })
            }
            schedule()
            for await (segment, path, bytes, checksum) in ready {
                segmentReady(id, segment, path: path, bytes: bytes, checksum: checksum)
            }
            try await split

            await waitForSegments(id)
            guard let done = jobs[id], done.state == .running else {
                throw CoordinatorError(.jobFailed, jobs[id]?.error ?? "job stopped")
            }
            setPhase(id, "assembling")
            let segmentFiles = done.segments.map { segment -> String in
                if case .done(let path, _, _, _) = segment.state { return path }
                return ""
            }
            let assembly = AssemblyRequest(
                sourcePath: source, videoStreamIndex: index.videoStreamIndex, segmentFiles: segmentFiles,
                outputPath: temporaryOutput, container: AssemblyRequest.container(forOutput: request.output))
            let report = try await Offload.run("assemble \(id)") { threadFlag in
                try Assembler.assemble(assembly) { threadFlag.isCancelled || flag.isCancelled }
            }
            jobs[id]?.dropped = report.dropped
            setPhase(id, "verifying")
            _ = try await Offload.run("verify \(id)") { threadFlag in
                try OutputVerifier.verify(
                    path: temporaryOutput, videoStreamIndex: report.videoOutputIndex, expectedFrames: totalFrames,
                    expectedPackets: report.packetsPerStream, threads: 0,
                    decode: .joins(segmentPackets: report.segmentPackets, frames: 16)) {
                        threadFlag.isCancelled || flag.isCancelled
                    }
            }
            guard jobs[id]?.state == .running else { throw CoordinatorError(.jobFailed, jobs[id]?.error ?? "job stopped") }
            setPhase(id, "publishing")
            if rename(temporaryOutput, request.output) != 0 {
                throw CoordinatorError(
                    .io, "\(request.output): cannot move the verified output into place: \(String(cString: strerror(errno)))")
            }
            finish(id)
            log.info("job done", metadata: ["output": "\(request.output)"])
        } catch {
            unlink(temporaryOutput)
            if stopping {
                logger.notice("job left resumable at shutdown", metadata: ["job": "\(id)"])
                return
            }
            fail(id, "\(error)", state: flag.isCancelled && jobs[id]?.state == .cancelled ? .cancelled : .failed)
        }
        if !request.keepWork { try? FileManager.default.removeItem(atPath: workDirectory) }
    }

    /// The local path of a job's source: the path itself, or its URL downloaded into the work directory.
    private func fetchSource(_ id: String, _ source: String, into directory: String, cancel: CancellationFlag) async throws -> String {
        guard SourceURL.isURL(source) else { return source }
        let url = try SourceURL(source, policy: configuration.downloads)
        let progress = DownloadProgress()
        jobs[id]?.download = progress
        setPhase(id, "downloading")
        let path = try await SourceDownloader.fetch(
            url, into: directory, policy: configuration.downloads, progress: progress, cancel: cancel)
        logger.info("source downloaded", metadata: ["job": "\(id)", "bytes": "\(progress.snapshot.bytes)"])
        return path
    }

    private static func temporaryPath(for output: String, id: String) -> String {
        let url = URL(fileURLWithPath: output)
        let directory = url.deletingLastPathComponent().path
        return "\(directory)/.\(url.deletingPathExtension().lastPathComponent).farm-tmp-\(id).\(url.pathExtension)"
    }

    private func setPhase(_ id: String, _ phase: String) {
        guard jobs[id]?.state == .running else { return }
        jobs[id]?.phase = phase
        record("phase of job \(id)") { _ = try await $0.updateJob(id, phase: phase) }
        logger.debug("job phase", metadata: ["job": "\(id)", "phase": "\(phase)"])
    }

    private func waitForSegments(_ id: String) async {
        guard !stopping, let job = jobs[id], job.state == .running, !job.allSegmentsDone else { return }
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                jobs[id]?.segmentsWaiter = continuation
            }
        } onCancel: {
            Task { await self.stop() }
        }
    }

    /// Free bytes on the data directory's volume, nil when it cannot be read.
    private func freeBytes() -> Int64? {
        var stats = statvfs()
        guard statvfs(configuration.dataDirectory, &stats) == 0 else { return nil }
        return Int64(stats.f_bavail) * Int64(stats.f_frsize)
    }

    /// Shutdown: wakes every waiter without ending any job, so unfinished jobs stay resumable in the store.
    private func stop() {
        stopping = true
        let waiting = admissionWaiters
        admissionWaiters = []
        for waiter in waiting { waiter.resume() }
        for id in jobs.keys {
            jobs[id]?.cancel.cancel()
            if let waiter = jobs[id]?.segmentsWaiter {
                jobs[id]?.segmentsWaiter = nil
                waiter.resume()
            }
            let waiters = jobs[id]?.finishWaiters ?? []
            jobs[id]?.finishWaiters = []
            if let job = jobs[id] {
                let status = makeStatus(job)
                for waiter in waiters { waiter.resume(returning: status) }
            }
        }
    }

    private func finish(_ id: String) {
        guard var job = jobs[id] else { return }
        job.state = .done
        job.phase = "finished"
        job.finished = .now
        record("finish job \(id)") { _ = try await $0.updateJob(id, state: .done, phase: "finished") }
        let waiters = job.finishWaiters
        job.finishWaiters = []
        jobs[id] = job
        let status = makeStatus(job)
        for waiter in waiters { waiter.resume(returning: status) }
    }

    /// Ends a job that is not finished yet: stops its segments on the nodes and wakes its waiters.
    private func fail(_ id: String, _ reason: String, state: JobState) {
        guard var job = jobs[id], !job.state.isFinished else { return }
        job.state = state
        job.phase = "finished"
        job.error = reason
        job.finished = .now
        record("end job \(id)") { _ = try await $0.updateJob(id, state: state, phase: "finished", error: reason) }
        job.cancel.cancel()
        let segmentsWaiter = job.segmentsWaiter
        job.segmentsWaiter = nil
        let waiters = job.finishWaiters
        job.finishWaiters = []
        jobs[id] = job
        for (taskID, task) in tasks where task.jobID == id {
            tasks[taskID] = nil
            nodes[task.session]?.inFlight.remove(taskID)
            nodes[task.session]?.outgoing.yield(.message(.cancel(taskID: taskID)))
        }
        logger.error("job \(state.rawValue)", metadata: ["job": "\(id)", "reason": "\(reason)"])
        segmentsWaiter?.resume()
        let status = makeStatus(jobs[id]!)
        for waiter in waiters { waiter.resume(returning: status) }
        schedule()
    }

    /// A job's progress: 1 once done; before, its encoded share of the frames, up to 0.97 (the rest is assembly).
    static func progress(_ state: JobState, framesDone: Int, totalFrames: Int) -> Double {
        if state == .done { return 1 }
        return totalFrames > 0 ? min(Double(framesDone) / Double(totalFrames), 1) * 0.97 : 0
    }

    /// Frames a second over an encoding time; 0 until half a second has passed.
    static func fps(_ frames: Int, in seconds: Double) -> Double {
        seconds > 0.5 ? Double(frames) / seconds : 0
    }

    private func makeStatus(_ job: JobRecord) -> JobStatus {
        var framesDone = 0
        var segments: [SegmentStatus] = []
        let running = Dictionary(tasks.values.filter { $0.jobID == job.id }.map { ($0.segment, $0) }, uniquingKeysWith: { a, _ in a })
        for segment in job.segments {
            let state: String
            var node: String? = segment.lastNode
            var encoder: String?
            var frames = 0
            switch segment.state {
            case .pending: state = "pending"
            case .ready: state = "queued"
            case .running:
                state = "running"
                frames = running[segment.plan.index]?.framesDone ?? 0
                node = running[segment.plan.index]?.nodeID
            case .done(_, let f, let e, let n):
                state = "done"
                frames = f
                encoder = e
                node = n
            }
            framesDone += frames
            segments.append(
                SegmentStatus(
                    index: segment.plan.index, state: state, attempts: segment.attempts, node: node, encoder: encoder,
                    frames: frames))
        }
        let end = job.finished ?? .now
        let fps = Self.fps(framesDone, in: job.encodingStarted.map { (end - $0).seconds } ?? 0)
        let remaining = max(job.totalFrames - framesDone, 0)
        var eta: Double? = fps > 0 ? Double(remaining) / fps : nil
        if job.state == .running, let finish = predictedFinish[job.id] {
            // The policy's forward plan with measured speeds; the assembly that follows is not counted.
            eta = max(finish - now, 0)
        }
        if job.state.isFinished { eta = 0 }
        return JobStatus(
            id: job.id, state: job.state, phase: job.phase, source: job.request.source, output: job.request.output,
            progress: Self.progress(job.state, framesDone: framesDone, totalFrames: job.totalFrames),
            framesDone: framesDone, totalFrames: job.totalFrames, fps: fps, etaSeconds: eta,
            error: job.error, segments: segments, sourceSeconds: job.sourceSeconds,
            wallSeconds: (end - job.submitted).seconds, encodersByNode: job.encodersByNode, dropped: job.dropped,
            fallbacks: job.fallbacks, downloadedBytes: job.download?.snapshot.bytes,
            downloadTotalBytes: job.download?.snapshot.total)
    }

    // MARK: - Scheduling

    private func segmentReady(_ id: String, _ segment: Int, path: String, bytes: Int64, checksum: [UInt8]) {
        guard jobs[id]?.state == .running else { return }
        jobs[id]?.segments[segment].state = .ready(path: path, bytes: bytes, checksum: checksum)
        record("segment \(segment) of job \(id) ready") {
            _ = try await $0.markReady(id, index: segment, path: path, bytes: bytes, checksum: checksum)
        }
        schedule()
    }

    /// Asks the scheduling policy what to start now (earliest finish by measured speed, tails on the
    /// fastest slots), starts it, and refreshes the jobs' predicted finish times.
    private func schedule() {
        let clock = now
        quarantined = quarantined.filter { $0.value.until > clock }
        var fleet: [SchedulerNode] = []
        for node in nodes.values.sorted(by: { $0.session < $1.session }) {
            fleet.append(
                SchedulerNode(
                    id: node.session, name: node.nodeID, slots: node.slots, busySlots: node.inFlight.count,
                    speeds: speeds.speeds(node: node.nodeID),
                    draining: node.draining || quarantined[node.nodeID] != nil))
        }
        var ready: [SchedulerSegment] = []
        var remaining: [SchedulerSegment] = []
        for id in jobOrder {
            guard let job = jobs[id], job.state == .running, job.settings != nil else { continue }
            let codec = job.request.codec.rawValue
            for segment in job.segments {
                let item = SchedulerSegment(
                    jobID: id, index: segment.plan.index, seconds: job.segmentSeconds[segment.plan.index], codec: codec)
                switch segment.state {
                case .ready:
                    if segment.notBefore <= clock { ready.append(item) }
                    remaining.append(item)
                case .pending: remaining.append(item)
                case .running, .done: break
                }
            }
        }
        let running = tasks.values.compactMap { task -> SchedulerRunning? in
            guard let job = jobs[task.jobID], task.segment < job.segmentSeconds.count else { return nil }
            let expected = job.segments[task.segment].plan.expectedFrames
            return SchedulerRunning(
                taskID: task.taskID, jobID: task.jobID, index: task.segment, node: task.session,
                startedAt: task.startedAt, seconds: job.segmentSeconds[task.segment], codec: job.request.codec.rawValue,
                progress: expected > 0 ? Double(task.framesDone) / Double(expected) : nil,
                progressTime: task.progressTime, isDuplicate: task.isDuplicate,
                hasBeenDuplicated: job.segments[task.segment].duplicated)
        }
        // A segment goes back to a node it failed on only when no other node could take it: it is
        // offered to the others alone, and the node it avoided gets other segments instead.
        var held: [SchedulerSegment] = []
        for decision in policy.decide(nodes: fleet, ready: ready, running: running, now: clock) {
            if case .duplicate(let jobID, let index, let session) = decision {
                duplicate(jobID, index, on: session)
                continue
            }
            guard case .assign(let jobID, let index, let session) = decision else { continue }
            if let node = nodes[session], avoids(jobID, index, node: node.nodeID),
                let segment = ready.first(where: { $0.jobID == jobID && $0.index == index })
            {
                held.append(segment)
                continue
            }
            assign(jobID, index, to: session)
        }
        if !held.isEmpty {
            let refresh = { (fleet: [SchedulerNode]) in
                fleet.map { node in
                    var node = node
                    node.busySlots = self.nodes[node.id]?.inFlight.count ?? node.slots
                    return node
                }
            }
            for segment in held {
                let avoided = jobs[segment.jobID]?.segments[segment.index].avoidedNodes ?? []
                let others = refresh(fleet).map { node in
                    var node = node
                    if avoided.contains(node.name) { node.draining = true }
                    return node
                }
                for case .assign(let jobID, let index, let session) in policy.decide(
                    nodes: others, ready: [segment], running: running, now: clock)
                {
                    assign(jobID, index, to: session)
                }
            }
            // Slots left free by a held segment take the rest of the queue.
            let rest = ready.filter { segment in
                guard case .ready = jobs[segment.jobID]?.segments[segment.index].state else { return false }
                return !held.contains(segment)
            }
            if !rest.isEmpty {
                for case .assign(let jobID, let index, let session) in policy.decide(
                    nodes: refresh(fleet), ready: rest, running: running, now: clock)
                where !(nodes[session].map { avoids(jobID, index, node: $0.nodeID) } ?? true) {
                    assign(jobID, index, to: session)
                }
            }
        }
        if !fleet.isEmpty, !(remaining.isEmpty && running.isEmpty) {
            predictedFinish = policy.expectedFinish(nodes: fleet, remaining: remaining, running: running, now: clock)
        }
    }

    private func assign(_ jobID: String, _ index: Int, to session: UInt64) {
        guard var job = jobs[jobID], var node = nodes[session], let settings = job.settings,
            case .ready(let path, let bytes, let checksum) = job.segments[index].state
        else { return }
        let taskID = nextTaskID
        nextTaskID += 1
        job.segments[index].state = .running(taskID: taskID, path: path, bytes: bytes, checksum: checksum)
        job.segments[index].attempts += 1
        job.segments[index].lastNode = node.nodeID
        jobs[jobID] = job
        node.inFlight.insert(taskID)
        nodes[session] = node
        tasks[taskID] = TaskRecord(
            taskID: taskID, jobID: jobID, segment: index, session: session, nodeID: node.nodeID, startedAt: now)
        let assign = makeAssign(taskID, job, index, settings: settings, bytes: bytes, checksum: checksum)
        logger.info(
            "segment leased",
            metadata: ["job": "\(jobID)", "segment": "\(index)", "node": "\(node.nodeID)", "task": "\(taskID)"])
        let nodeID = node.nodeID
        record("lease segment \(index) of job \(jobID)") {
            _ = try await $0.lease(jobID, index: index, taskID: taskID, nodeID: nodeID, expiresAt: .distantFuture)
        }
        node.outgoing.yield(.segment(assign, path: path))
    }

    private func makeAssign(
        _ taskID: UInt64, _ job: JobRecord, _ index: Int, settings: EncodeSettings, bytes: Int64, checksum: [UInt8]
    ) -> Assign {
        let plan = job.segments[index].plan
        return Assign(
            taskID: taskID, jobID: job.id, segmentIndex: UInt32(index), attempt: UInt32(job.segments[index].attempts),
            settings: settings, startPTS: plan.startPTS ?? Int64.min, endPTS: plan.endPTS,
            expectedFrames: UInt64(plan.expectedFrames), byteLength: UInt64(bytes), checksum: checksum)
    }

    /// Runs a straggling segment a second time on a free slot of another node (the policy's
    /// decision); whichever copy ends first is kept and the other is cancelled. The job store keeps
    /// one lease, the original's, until a result arrives (see ``taskCompleted(_:_:path:parameters:)``).
    private func duplicate(_ jobID: String, _ index: Int, on session: UInt64) {
        guard var job = jobs[jobID], var node = nodes[session], let settings = job.settings,
            case .running(let original, let path, let bytes, let checksum) = job.segments[index].state,
            let running = tasks[original], running.session != session, !job.segments[index].duplicated,
            !job.segments[index].avoidedNodes.contains(node.nodeID)
        else { return }
        let taskID = nextTaskID
        nextTaskID += 1
        job.segments[index].duplicated = true
        job.segments[index].attempts += 1
        jobs[jobID] = job
        node.inFlight.insert(taskID)
        nodes[session] = node
        tasks[taskID] = TaskRecord(
            taskID: taskID, jobID: jobID, segment: index, session: session, nodeID: node.nodeID, isDuplicate: true,
            startedAt: now)
        logger.info(
            "segment duplicated",
            metadata: [
                "job": "\(jobID)", "segment": "\(index)", "node": "\(node.nodeID)", "task": "\(taskID)",
                "straggler": "\(running.nodeID)",
            ])
        node.outgoing.yield(.segment(makeAssign(taskID, job, index, settings: settings, bytes: bytes, checksum: checksum), path: path))
    }

    /// Moves a segment's lease in the job store from one copy's task to another's (the store keeps one
    /// lease per segment; duplicates run outside it until they take it over).
    private func moveLease(from holder: UInt64, to copy: TaskRecord, failure: String?) {
        record("hand segment \(copy.segment) of job \(copy.jobID) to another copy") {
            _ = try await $0.release(copy.jobID, index: copy.segment, taskID: holder, failure: failure)
            _ = try await $0.lease(
                copy.jobID, index: copy.segment, taskID: copy.taskID, nodeID: copy.nodeID, expiresAt: .distantFuture)
        }
    }

    /// The other running copies of a task's segment.
    private func otherCopies(of task: TaskRecord) -> [TaskRecord] {
        tasks.values.filter { $0.jobID == task.jobID && $0.segment == task.segment && $0.taskID != task.taskID }
            .sorted { $0.taskID < $1.taskID }
    }

    /// Puts a task's segment back in the queue: its node left (`failure` nil), refused it, or failed it.
    ///
    /// A failure of kind `segment` counts against the segment: once it has failed on
    /// `maxSegmentFailures` different nodes (or twice as many times in all) its job fails. Failures of
    /// kind `segment` and `node` count against the node (see ``noteNodeFailure(_:reason:)``). The
    /// segment waits a backoff that doubles with each requeue (0.5 s, 1 s, 2 s, … up to 30 s),
    /// except after a refusal.
    private func requeue(_ task: TaskRecord, failure: String?, retryable: Bool = true, kind: TaskFailure.Kind = .segment) {
        tasks[task.taskID] = nil
        nodes[task.session]?.inFlight.remove(task.taskID)
        guard var job = jobs[task.jobID], job.state == .running,
            case .running(let taskID, let path, let bytes, let checksum) = job.segments[task.segment].state
        else { return }
        var segment = job.segments[task.segment]
        // A failure that counts against someone (a refusal counts against nothing).
        let counted = kind == .refused ? nil : failure
        if counted != nil { segment.avoidedNodes.insert(task.nodeID) }
        let survivor = otherCopies(of: task).first
        if taskID != task.taskID || survivor != nil {
            // Another copy runs on: the segment stays with it (a failed duplicate is only logged;
            // a failed original hands its lease to the duplicate).
            if taskID == task.taskID, let survivor {
                segment.state = .running(taskID: survivor.taskID, path: path, bytes: bytes, checksum: checksum)
                moveLease(from: task.taskID, to: survivor, failure: counted)
            }
            job.segments[task.segment] = segment
            jobs[task.jobID] = job
            if let counted { noteNodeFailure(task.nodeID, reason: counted) }
            return
        }
        segment.state = .ready(path: path, bytes: bytes, checksum: checksum)
        record("release segment \(task.segment) of job \(task.jobID)") {
            _ = try await $0.release(task.jobID, index: task.segment, taskID: task.taskID, failure: counted)
        }
        if failure != nil, kind == .refused {
            segment.attempts = max(segment.attempts - 1, 0)
        } else {
            segment.requeues += 1
            segment.notBefore = now + min(0.5 * pow(2, Double(segment.requeues - 1)), 30)
        }
        if let failure, kind == .segment {
            segment.failures.append("\(task.nodeID): \(failure)")
            segment.failedNodes.insert(task.nodeID)
        }
        job.segments[task.segment] = segment
        jobs[task.jobID] = job
        if let counted { noteNodeFailure(task.nodeID, reason: counted) }
        guard let failure, kind == .segment else { return }
        let nodesFailed = segment.failedNodes.count
        let failures = segment.failures.count
        if !retryable || nodesFailed >= configuration.maxSegmentFailures
            || failures >= 2 * configuration.maxSegmentFailures
        {
            let times = "\(failures) time\(failures == 1 ? "" : "s")"
            let on = "on \(nodesFailed) node\(nodesFailed == 1 ? "" : "s")"
            fail(
                task.jobID,
                "segment \(task.segment) failed \(times) \(on), last on node \(task.nodeID): \(failure)",
                state: .failed)
        }
    }

    /// Whether a segment should rather go to another node than `nodeID`: it failed there, and some
    /// other working node has not failed it.
    private func avoids(_ jobID: String, _ index: Int, node nodeID: String) -> Bool {
        guard let failed = jobs[jobID]?.segments[index].avoidedNodes, failed.contains(nodeID) else { return false }
        return nodes.values.contains { other in
            !other.draining && quarantined[other.nodeID] == nil && !failed.contains(other.nodeID)
        }
    }

    /// Counts a failure against a node; `quarantine.failures` of them within `quarantine.windowSeconds`,
    /// with no success in between, keep it out of work for `quarantine.seconds`.
    private func noteNodeFailure(_ nodeID: String, reason: String) {
        let policy = configuration.quarantine
        let clock = now
        var recent = (nodeFailures[nodeID] ?? []).filter { clock - $0 <= policy.windowSeconds }
        recent.append(clock)
        nodeFailures[nodeID] = recent
        guard policy.failures > 0, recent.count >= policy.failures, quarantined[nodeID] == nil else { return }
        nodeFailures[nodeID] = []
        let why = "\(recent.count) failures in \(Int((clock - recent[0]).rounded())) s, the last: \(reason)"
        quarantined[nodeID] = (clock + policy.seconds, why)
        logger.warning(
            "node quarantined",
            metadata: ["node": "\(nodeID)", "seconds": "\(Int(policy.seconds))", "reason": "\(why)"])
        let until = Date(timeIntervalSinceNow: policy.seconds)
        record("quarantine node \(nodeID)") { _ = try await $0.quarantineNode(nodeID, until: until, reason: why) }
    }

    // MARK: - Node sessions (called by NodeSession)

    func register(_ hello: Hello, address: String, outgoing: AsyncStream<Outgoing>.Continuation) -> UInt64 {
        let session = nextSessionID
        nextSessionID += 1
        nodes[session] = NodeRecord(
            session: session, nodeID: hello.nodeID, address: address, slots: max(Int(hello.slots), 1),
            threads: Int(hello.threads), capabilitiesJSON: hello.capabilitiesJSON, outgoing: outgoing, lastSeen: .now)
        logger.info(
            "node joined", metadata: ["node": "\(hello.nodeID)", "address": "\(address)", "slots": "\(hello.slots)"])
        if let data = hello.capabilitiesJSON.data(using: .utf8),
            let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
            let calibration = object["calibration"] as? [String: Double]
        {
            // Frames per second at 1280x720 for each codec: a 25 fps 720p source is the unit.
            for (codec, fps) in calibration where fps > 0 { speeds.calibrate(node: hello.nodeID, codec: codec, speed: fps / 25) }
        }
        record("node \(hello.nodeID) joined") {
            _ = try await $0.upsertNode(
                id: hello.nodeID, address: address, slots: max(Int(hello.slots), 1), threads: Int(hello.threads),
                capabilities: hello.capabilitiesJSON)
        }
        schedule()
        return session
    }

    func unregister(_ session: UInt64, reason: String) {
        guard let node = nodes.removeValue(forKey: session) else { return }
        node.outgoing.finish()
        logger.info("node left", metadata: ["node": "\(node.nodeID)", "reason": "\(reason)"])
        for taskID in node.inFlight {
            if let task = tasks[taskID] { requeue(task, failure: nil) }
        }
        if !nodes.values.contains(where: { $0.nodeID == node.nodeID }) {
            record("node \(node.nodeID) left") { _ = try await $0.markNode(node.nodeID, .gone, reason: reason) }
        }
        schedule()
    }

    func heartbeat(_ session: UInt64, _ heartbeat: Heartbeat) {
        nodes[session]?.lastSeen = .now
        for progress in heartbeat.activeTasks where tasks[progress.taskID]?.session == session {
            tasks[progress.taskID]?.framesDone = Int(progress.framesDone)
            tasks[progress.taskID]?.progressTime = now
        }
    }

    func nodeDraining(_ session: UInt64) {
        nodes[session]?.draining = true
        if let nodeID = nodes[session]?.nodeID {
            record("node \(nodeID) draining") { _ = try await $0.markNode(nodeID, .draining) }
        }
    }

    /// Where a task's result goes, or nil when the task is no longer wanted (cancelled, job ended).
    func resultPath(_ session: UInt64, taskID: UInt64) -> String? {
        nodes[session]?.lastSeen = .now
        guard let task = tasks[taskID], task.session == session, let job = jobs[task.jobID], job.state == .running
        else { return nil }
        return "\(job.workDirectory)/enc-\(task.segment)-\(taskID).pkt"
    }

    /// The expectations a result is checked against before it is accepted.
    func expectations(taskID: UInt64) -> (frames: Int, parameters: CodecParameters?)? {
        guard let task = tasks[taskID], let job = jobs[task.jobID] else { return nil }
        return (job.segments[task.segment].plan.expectedFrames, job.parameters)
    }

    /// A result arrived whole, its checksum and frame count checked by the session.
    func taskCompleted(_ session: UInt64, _ result: TaskResult, path: String, parameters: CodecParameters) {
        guard let task = tasks[result.taskID], task.session == session else { return }
        tasks[result.taskID] = nil
        nodes[session]?.inFlight.remove(result.taskID)
        nodes[session]?.lastSeen = .now
        nodes[session]?.segmentsDone += 1
        nodeFailures[task.nodeID] = nil
        guard var job = jobs[task.jobID], job.state == .running,
            case .running(let holder, _, _, _) = job.segments[task.segment].state
        else { return }
        // The first result pins the job's stream header. A later one with other parameter sets (a
        // hardware node, or a software fallback) can still join with in-band parameter sets, as long as
        // codec, picture size and NAL framing agree.
        if let pinned = job.parameters, let problem = parameters.joinProblem(with: pinned) {
            jobs[task.jobID] = job
            tasks[result.taskID] = task
            requeue(task, failure: "result cannot join the job's stream: \(problem)", retryable: true)
            return
        }
        if let reason = result.fallbackReason {
            job.fallbacks += 1
            logger.warning(
                "segment fell back to software", metadata: ["job": "\(task.jobID)", "segment": "\(task.segment)", "reason": "\(reason)"])
        }
        let pin = job.parameters == nil ? parameters.serialized : nil
        if job.parameters == nil { job.parameters = parameters }
        let checksum = result.checksum
        if holder != task.taskID, let original = tasks[holder] {
            // The duplicate won: the store's lease moves to it before the result is recorded.
            moveLease(from: holder, to: task, failure: nil)
            logger.info(
                "duplicate finished first",
                metadata: ["job": "\(task.jobID)", "segment": "\(task.segment)", "node": "\(task.nodeID)", "straggler": "\(original.nodeID)"])
        }
        for other in otherCopies(of: task) {
            tasks[other.taskID] = nil
            nodes[other.session]?.inFlight.remove(other.taskID)
            nodes[other.session]?.outgoing.yield(.message(.cancel(taskID: other.taskID)))
            logger.info(
                "slower copy cancelled",
                metadata: ["job": "\(task.jobID)", "segment": "\(task.segment)", "node": "\(other.nodeID)", "task": "\(other.taskID)"])
        }
        record("complete segment \(task.segment) of job \(task.jobID)") {
            _ = try await $0.complete(
                task.jobID, index: task.segment, taskID: task.taskID, nodeID: task.nodeID, resultPath: path,
                bytes: Int64(result.byteLength), checksum: checksum, frames: Int(result.frames), encoder: result.encoder,
                parameters: pin)
        }
        job.segments[task.segment].state = .done(
            path: path, frames: Int(result.frames), encoder: result.encoder, nodeID: task.nodeID)
        job.encodersByNode[task.nodeID] = result.encoder
        if task.segment < job.segmentSeconds.count {
            // Lease to result: what the scheduler plans with (transfers included).
            speeds.record(
                node: task.nodeID, codec: job.request.codec.rawValue, sourceSeconds: job.segmentSeconds[task.segment],
                wallSeconds: max(now - task.startedAt, 0.001))
        }
        logger.info(
            "segment done",
            metadata: [
                "job": "\(task.jobID)", "segment": "\(task.segment)", "node": "\(task.nodeID)",
                "frames": "\(result.frames)", "encoder": "\(result.encoder)",
                "encode_s": "\(String(format: "%.2f", result.encodeSeconds))",
            ])
        let allDone = job.allSegmentsDone
        let waiter = allDone ? job.segmentsWaiter : nil
        if allDone { job.segmentsWaiter = nil }
        jobs[task.jobID] = job
        waiter?.resume()
        schedule()
    }

    func taskFailed(
        _ session: UInt64, taskID: UInt64, reason: String, retryable: Bool, kind: TaskFailure.Kind = .segment
    ) {
        guard let task = tasks[taskID], task.session == session else { return }
        logger.log(
            level: kind == .refused ? .info : .warning,
            kind == .refused ? "segment refused" : "segment failed",
            metadata: [
                "job": "\(task.jobID)", "segment": "\(task.segment)", "node": "\(task.nodeID)", "reason": "\(reason)",
            ])
        requeue(task, failure: reason, retryable: retryable || kind == .refused, kind: kind)
        schedule()
    }
}

/// Running checksums of the segments being written, updated on the split thread.
private final class ChecksumTable: @unchecked Sendable {
    private var sums: [SegmentChecksum]
    init(count: Int) { sums = Array(repeating: SegmentChecksum(), count: count) }
    func update(_ i: Int, _ bytes: UnsafeRawBufferPointer) { sums[i].update(bytes) }
    func finalize(_ i: Int) -> [UInt8] { sums[i].finalize() }
}

extension EncodeSettings {
    init(_ c: EncoderConfig) {
        self.init(
            codec: c.codec.rawValue, encoder: c.encoder, crf: Int32(c.crf), preset: c.preset, pixelFormat: c.pixelFormat,
            width: Int32(c.width), height: Int32(c.height), timeBaseNum: c.timeBase.num, timeBaseDen: c.timeBase.den,
            frameRateNum: c.frameRate.num, frameRateDen: c.frameRate.den, sampleAspectNum: c.sampleAspectRatio.num,
            sampleAspectDen: c.sampleAspectRatio.den, colorRange: Int32(c.colorRange),
            colorPrimaries: Int32(c.colorPrimaries), colorTransfer: Int32(c.colorTransfer),
            colorSpace: Int32(c.colorSpace), chromaLocation: Int32(c.chromaLocation), gopSize: Int32(c.gopSize),
            threads: Int32(c.threads), options: c.options)
    }
}
