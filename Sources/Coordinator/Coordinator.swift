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

/// The control plane's actor. Its decisions are ``FarmState``'s; the actor carries out their
/// effects (sends to node sessions, job-store writes, wake-ups), runs each job's pipeline
/// (JobPipeline.swift) and serves nodes. FFmpeg work runs on threads of its own (`Offload`).
public actor Coordinator {
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
                // A job that ended holds no lease (its end released them); the same words as a live job's.
                return SegmentStatus(
                    index: segment.index, state: segment.state.statusName, attempts: segment.attempts, node: segment.doneNode,
                    encoder: segment.encoder, frames: frames)
            }
            let started = job.startedAt ?? job.createdAt
            let finished = job.finishedAt ?? started
            return JobStatus(
                id: job.id, state: job.state, phase: job.phase, source: SourceURL.redacted(job.source), output: job.output,
                progress: FarmState.progress(job.state, framesDone: framesDone, totalFrames: job.totalFrames),
                framesDone: framesDone, totalFrames: job.totalFrames,
                fps: FarmState.fps(framesDone, in: finished.timeIntervalSince(started)), etaSeconds: 0, error: job.error,
                segments: segments, sourceSeconds: job.sourceSeconds,
                wallSeconds: max(finished.timeIntervalSince(job.createdAt), 0), encodersByNode: encodersByNode,
                dropped: [], fallbacks: 0,
                nodeLabels: (try? JobStore.decodeJSON(JobRequest.self, from: job.request))?.nodeLabels ?? [])
        }
    }

    typealias CleanupPlan = FarmState.CleanupPlan

    let configuration: CoordinatorConfiguration
    nonisolated let logger: Logger
    /// Every decision about jobs, segments, leases and nodes.
    var state: FarmState
    /// The writer of each node session.
    private var outgoing: [UInt64: AsyncStream<Outgoing>.Continuation] = [:]
    /// Each running job's pipeline, waiting for its segments; the callers waiting for jobs to end.
    var segmentsWaiters: [String: CheckedContinuation<Void, Never>] = [:]
    private var finishWaiters: [String: [UUID: CheckedContinuation<JobStatus, Never>]] = [:]
    /// Each job's cancellation flag, seen by its FFmpeg work on other threads.
    var cancelFlags: [String: CancellationFlag] = [:]
    /// Set while (and after) a source given by URL is downloaded.
    var downloadProgress: [String: DownloadProgress] = [:]
    /// Jobs that ended in an earlier run, as the job store recorded them (oldest first): still listed, and their
    /// outputs still served, until cleanup forgets them.
    private var archived: [String: ArchivedJob] = [:]
    private var archivedOrder: [String] = []
    private var nextJobNumber = 1
    /// Set on shutdown: jobs stop where they are and are not marked failed.
    var stopping = false
    /// Admission: jobs running now, and jobs waiting for one of the `maxConcurrentJobs` places.
    var runningJobs = 0
    var admissionWaiters: [CheckedContinuation<Void, Never>] = []
    private let epoch = ContinuousClock.now
    /// Seconds on the coordinator's clock: the time every ``FarmState`` transition is given.
    var now: Double { (ContinuousClock.now - epoch).seconds }
    private let jobStream: AsyncStream<String>
    private let jobContinuation: AsyncStream<String>.Continuation
    /// The durable record of jobs, written in order by one consumer so the actor never waits on SQLite
    /// unless it needs an answer (planning and resume).
    private var store: JobStore?
    private let storeOperations: AsyncStream<@Sendable (JobStore) async -> Void>
    private let storeContinuation: AsyncStream<@Sendable (JobStore) async -> Void>.Continuation

    /// The threads the coordinator's own CPU work (verification) shares.
    let cpuBudget: CPUBudget
    /// Enrolled nodes' credentials by node id, and recent enrolments by source address (for the rate limit).
    var credentials: [String: [UInt8]] = [:]
    var enrolments: [String: [Double]] = [:]

    public init(configuration: CoordinatorConfiguration) {
        self.configuration = configuration
        self.cpuBudget = CPUBudget(threads: configuration.workThreads)
        self.logger = configuration.logger
        self.state = FarmState(rules: FarmState.Rules(configuration))
        (jobStream, jobContinuation) = AsyncStream<String>.makeStream()
        (storeOperations, storeContinuation) = AsyncStream<@Sendable (JobStore) async -> Void>.makeStream()
    }

    // MARK: - Effects

    /// Carries out what a transition decided, in order.
    func apply(_ effects: [FarmEffect]) {
        for effect in effects {
            switch effect {
            case .send(let session, let message): outgoing[session]?.yield(.message(message))
            case .sendSegment(let session, let assign, let path): outgoing[session]?.yield(.segment(assign, path: path))
            case .close(let session, let reason): outgoing[session]?.yield(.close(reason: reason))
            case .persist(let write): persist(write)
            case .segmentsDone(let id): segmentsWaiters.removeValue(forKey: id)?.resume()
            case .jobEnded(let id): jobEnded(id)
            case .log(let level, let message, let metadata): logger.log(level: level, "\(message)", metadata: metadata)
            }
        }
    }

    private func jobEnded(_ id: String) {
        guard let job = state.jobs[id] else { return }
        if job.state != .done { cancelFlags[id]?.cancel() }
        segmentsWaiters.removeValue(forKey: id)?.resume()
        let status = state.status(job, now: now, download: downloadProgress[id]?.snapshot)
        for waiter in (finishWaiters.removeValue(forKey: id) ?? [:]).values { waiter.resume(returning: status) }
    }

    private func persist(_ write: StoreWrite) {
        switch write {
        case .updateJob(let id, let state, let phase, let error):
            record("update job \(id)") { _ = try await $0.updateJob(id, state: state, phase: phase, error: error) }
        case .markReady(let jobID, let index, let path, let bytes, let checksum):
            record("segment \(index) of job \(jobID) ready") {
                _ = try await $0.markReady(jobID, index: index, path: path, bytes: bytes, checksum: checksum)
            }
        case .lease(let jobID, let index, let taskID, let nodeID, let expiresIn):
            let until = Date(timeIntervalSinceNow: expiresIn)
            record("lease segment \(index) of job \(jobID)") {
                _ = try await $0.lease(jobID, index: index, taskID: taskID, nodeID: nodeID, expiresAt: until)
            }
        case .renewLease(let jobID, let index, let taskID, let expiresIn):
            let until = Date(timeIntervalSinceNow: expiresIn)
            record("renew lease of segment \(index) of job \(jobID)") {
                _ = try await $0.renewLease(jobID, index: index, taskID: taskID, until: until)
            }
        case .release(let jobID, let index, let taskID, let failure):
            record("release segment \(index) of job \(jobID)") {
                _ = try await $0.release(jobID, index: index, taskID: taskID, failure: failure)
            }
        case .moveLease(let jobID, let index, let from, let to, let nodeID, let failure, let expiresIn):
            let until = Date(timeIntervalSinceNow: expiresIn)
            record("hand segment \(index) of job \(jobID) to another copy") {
                _ = try await $0.release(jobID, index: index, taskID: from, failure: failure)
                _ = try await $0.lease(jobID, index: index, taskID: to, nodeID: nodeID, expiresAt: until)
            }
        case .complete(let jobID, let index, let taskID, let nodeID, let path, let bytes, let checksum, let frames, let encoder, let parameters):
            record("complete segment \(index) of job \(jobID)") {
                _ = try await $0.complete(
                    jobID, index: index, taskID: taskID, nodeID: nodeID, resultPath: path, bytes: bytes,
                    checksum: checksum, frames: frames, encoder: encoder, parameters: parameters)
            }
        case .upsertNode(let id, let address, let slots, let threads, let capabilities):
            record("node \(id) joined") {
                _ = try await $0.upsertNode(
                    id: id, address: address, slots: slots, threads: threads, capabilities: capabilities)
            }
        case .markNode(let id, let nodeState, let reason):
            record("node \(id) \(nodeState.rawValue)") { _ = try await $0.markNode(id, nodeState, reason: reason) }
        case .quarantineNode(let id, let seconds, let reason):
            let until = Date(timeIntervalSinceNow: seconds)
            record("quarantine node \(id)") { _ = try await $0.quarantineNode(id, until: until, reason: reason) }
        case .banNode(let ban):
            let stored = JobStore.StoredBan(
                nodeID: ban.nodeID, reason: ban.reason, evidence: ban.evidence, address: ban.address, manual: ban.manual,
                bannedAt: Date(timeIntervalSince1970: ban.since))
            record("ban node \(ban.nodeID)") { try await $0.saveBan(stored) }
        case .unbanNode(let id):
            record("lift the ban of node \(id)") { _ = try await $0.deleteBan(id) }
        }
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
        // A job this coordinator crashed under 3 times (in its own work on the job's files) is not resumed again.
        for job in try await store.beginRun(limit: Self.interruptionLimit) {
            let reason =
                "the coordinator stopped without shutting down \(job.interruptions) times while this job was \(job.phase) "
                + "(a crash or a kill, see its log); it is not resumed again"
            _ = try await store.updateJob(job.id, state: .failed, error: reason)
            logger.error("job failed: not resumed", metadata: ["job": "\(job.id)", "phase": "\(job.phase)", "reason": "\(reason)"])
        }
        for node in try await store.nodes(states: [.connected, .draining]) {
            _ = try await store.markNode(node.id, .gone, reason: "coordinator restarted")
        }
        for credential in try await store.credentials() {
            credentials[credential.nodeID] = [UInt8](credential.secret)
        }
        for ban in try await store.bans() {
            state.bans[ban.nodeID] = FarmState.Ban(
                nodeID: ban.nodeID, reason: ban.reason, evidence: ban.evidence, address: ban.address, manual: ban.manual,
                since: ban.bannedAt.timeIntervalSince1970)
        }
        // Jobs that ended before the restart keep answering, so a finished output can still be fetched.
        for snapshot in try await store.finishedJobs(limit: Self.archivedJobLimit) where state.jobs[snapshot.job.id] == nil {
            let stored = snapshot.job
            countJobNumber(stored.id)
            let request = try? JobStore.decodeJSON(JobRequest.self, from: stored.request)
            archived[stored.id] = ArchivedJob(status: ArchivedJob.status(snapshot), keepWork: request?.keepWork ?? false)
            archivedOrder.append(stored.id)
        }
        var resumed: [String] = []
        for snapshot in try await store.unfinishedJobs() {
            let stored = snapshot.job
            guard state.jobs[stored.id] == nil,
                let request = try? JobStore.decodeJSON(JobRequest.self, from: stored.request)
            else { continue }
            countJobNumber(stored.id)
            queue(stored.id, request, workDirectory: stored.workDirectory)
            resumed.append(stored.id)
            logger.notice("resuming job", metadata: ["job": "\(stored.id)", "source": "\(SourceURL.redacted(stored.source))"])
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
    func persist<T: Sendable>(_ body: @escaping @Sendable (JobStore) async throws -> T) async throws -> T {
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
        // Every job's pipeline has returned when `serve` does: the run ended cleanly, whatever ended it.
        // (The write runs in a task of its own: this one is cancelled at shutdown, and the store honours that.)
        do {
            try await withTaskCancellationHandler {
                try await serve(listener, store: store, operations: operations)
            } onCancel: {
                Task { await self.stop() }
            }
        } catch {
            await Task { try? await store.endRun() }.value
            throw error
        }
        await Task { try? await store.endRun() }.value
    }

    /// Unclean stops under a job (in ``JobStore/crashPhases``) after which it is failed rather than resumed.
    static let interruptionLimit = 3

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
            group.addTask { await self.tickEverySecond() }
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

    /// Every second the state's clock moves: silent nodes are closed, expired leases taken back,
    /// and the scheduler runs.
    private func tickEverySecond() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(1))
            apply(state.tick(now: now))
            state.refreshPredictions(now: now)
        }
    }

    /// Shutdown: wakes every waiter without ending any job, so unfinished jobs stay resumable in the store.
    func stop() {
        stopping = true
        let waiting = admissionWaiters
        admissionWaiters = []
        for waiter in waiting { waiter.resume() }
        for flag in cancelFlags.values { flag.cancel() }
        for waiter in segmentsWaiters.values { waiter.resume() }
        segmentsWaiters = [:]
        let waiters = finishWaiters
        finishWaiters = [:]
        for (id, list) in waiters {
            guard let status = status(id) else { continue }
            for waiter in list.values { waiter.resume(returning: status) }
        }
    }

    // MARK: - Jobs

    /// Records a job in the state and starts its pipeline.
    private func queue(_ id: String, _ request: JobRequest, workDirectory: String) {
        state.jobQueued(id: id, request: request, workDirectory: workDirectory, now: now)
        cancelFlags[id] = CancellationFlag()
        jobContinuation.yield(id)
    }

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
            // A stream the output container cannot hold is refused now, not after all the encoding.
            let container = AssemblyRequest.container(forOutput: request.output)
            do {
                try await Offload.run("streams") { _ in try AssemblyRequest.checkStreams(sourcePath: source, container: container) }
            } catch {
                throw CoordinatorError(.invalidRequest, "\(error)")
            }
            if request.segmentSeconds == nil {
                request.segmentSeconds = defaultSegmentSeconds(info.durationSeconds, request)
            }
        }
        let waiting = state.queuedCount
        guard waiting < configuration.queueLimit else {
            throw CoordinatorError(
                .queueFull,
                "the queue is full: \(waiting) jobs wait for one of \(configuration.maxConcurrentJobs) places; retry later")
        }
        let id = String(format: "job-%04d-%@", nextJobNumber, String(UUID().uuidString.prefix(8)).lowercased())
        nextJobNumber += 1
        let workDirectory = "\(configuration.dataDirectory)/jobs/\(id)"
        let json = try JobStore.encodeJSON(request)
        let stored = request
        record("insert job \(id)") {
            try await $0.insertJob(id: id, source: stored.source, output: stored.output, request: json, workDirectory: workDirectory)
        }
        queue(id, request, workDirectory: workDirectory)
        logger.info("job queued", metadata: ["job": "\(id)", "source": "\(SourceURL.redacted(request.source))"])
        return id
    }

    /// The segment length for a source of this duration on the fleet as it is now.
    func defaultSegmentSeconds(_ durationSeconds: Double, _ request: JobRequest) -> Double {
        SegmentPlanner.defaultSegmentSeconds(
            durationSeconds: durationSeconds, totalSlots: max(state.totalSlots, request.expectedSlots ?? 0, 1),
            slotSpeeds: state.slotSpeeds(codec: request.codec.rawValue))
    }

    /// The unfinished job with this source and output, if a previous run left one (see `open()`).
    public func unfinishedJob(source: String, output: String) -> String? {
        state.jobOrder.first { id in
            guard let job = state.jobs[id], !job.state.isFinished else { return false }
            return job.request.source == source && job.request.output == output
        }
    }

    /// The job's status now.
    public func status(_ id: String) -> JobStatus? {
        state.jobs[id].map { state.status($0, now: now, download: downloadProgress[id]?.snapshot) } ?? archived[id]?.status
    }

    /// Every job, oldest first: those that ended in earlier runs (unless left out), then this run's.
    public func listJobs(includingEarlierRuns: Bool = true) -> [JobStatus] {
        let current = state.jobOrder.compactMap { status($0) }
        return includingEarlierRuns ? archivedOrder.compactMap { archived[$0]?.status } + current : current
    }

    /// The data directory and the node count, for health and readiness reports.
    public var dataDirectory: String { configuration.dataDirectory }

    /// Waits until the job is done, failed or cancelled. Cancelling the wait ends the wait only
    /// (with the job's status then), never the job or the coordinator.
    public func waitForCompletion(_ id: String) async throws -> JobStatus {
        if state.jobs[id] == nil, let ended = archived[id] { return ended.status }
        guard let job = state.jobs[id] else { throw CoordinatorError(.unknownJob, "no job \(id)") }
        if job.state.isFinished || stopping || Task.isCancelled { return status(id)! }
        let token = UUID()
        return await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                finishWaiters[id, default: [:]][token] = continuation
            }
        } onCancel: {
            Task { await self.abandonWait(id, token) }
        }
    }

    /// A cancelled wait is answered alone, with the job's status now.
    private func abandonWait(_ id: String, _ token: UUID) {
        guard let waiter = finishWaiters[id]?.removeValue(forKey: token), let status = status(id) else { return }
        waiter.resume(returning: status)
    }

    /// Cancels a job: nodes are told to stop its segments.
    public func cancel(_ id: String, reason: String = "cancelled") throws {
        guard state.jobs[id] != nil else { throw CoordinatorError(.unknownJob, "no job \(id)") }
        apply(state.end(id, reason: reason, state: .cancelled, now: now))
    }

    public func connectedNodes() -> [NodeStatus] { state.nodeStatuses(now: now) }

    /// Tells every node to finish what it has and leave.
    public func drainNodes() { apply(state.drainAll()) }

    /// Forgets the jobs that finished before `cutoff` and says what else must be kept.
    func cleanupPlan(retiringBefore cutoff: ContinuousClock.Instant) -> CleanupPlan {
        var plan = state.cleanupPlan(retiringBefore: (cutoff - epoch).seconds)
        for (id, job) in archived where job.keepWork { plan.keepWork.insert(id) }
        for forgotten in plan.forgotten {
            cancelFlags[forgotten.id] = nil
            downloadProgress[forgotten.id] = nil
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

    // MARK: - Node sessions (called by NodeSession)

    func register(_ hello: Hello, address: String, outgoing: AsyncStream<Outgoing>.Continuation) -> UInt64 {
        let (session, effects) = state.nodeJoined(hello, address: address, now: now)
        self.outgoing[session] = outgoing
        apply(effects)
        return session
    }

    func unregister(_ session: UInt64, reason: String) {
        outgoing.removeValue(forKey: session)?.finish()
        apply(state.nodeLeft(session, reason: reason, now: now))
    }

    func heartbeat(_ session: UInt64, _ heartbeat: Heartbeat) { apply(state.heartbeat(session, heartbeat, now: now)) }

    func nodeDraining(_ session: UInt64) { apply(state.nodeDraining(session)) }

    /// Where a task's result goes, or nil when the task is not this session's or no longer wanted.
    func resultPath(_ session: UInt64, taskID: UInt64) -> String? {
        state.resultArriving(session, taskID: taskID, now: now)
    }

    /// What a result is checked against before it is accepted.
    func expectations(_ session: UInt64, taskID: UInt64) -> ResultExpectations? {
        state.expectations(session, taskID: taskID)
    }

    /// A result arrived whole, its checksum, frame count and stream header checked by the session.
    func taskCompleted(_ session: UInt64, _ result: TaskResult, path: String, parameters: CodecParameters) {
        apply(state.taskCompleted(session, result, path: path, parameters: parameters, now: now))
    }

    func taskFailed(
        _ session: UInt64, taskID: UInt64, reason: String, retryable: Bool, kind: TaskFailure.Kind = .segment
    ) {
        apply(state.taskFailed(session, taskID: taskID, reason: reason, retryable: retryable, kind: kind, now: now))
    }
}
