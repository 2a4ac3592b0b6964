public import Foundation
import GRDB

// MARK: - Jobs

extension JobStore {
    /// Inserts a queued job. Throws ``JobStoreError/Code/duplicateJob`` if the id is taken.
    ///
    /// - Parameter request: the request as JSON text (see ``encodeJSON(_:)``).
    @discardableResult
    public func insertJob(
        id: String, source: String, output: String, request: String, workDirectory: String, at time: Date = .now
    ) async throws -> StoredJob {
        let job = StoredJob(
            id: id, source: source, output: output, request: request, createdAt: time, workDirectory: workDirectory)
        return try await write("insert job \(id)") { db in
            guard try !StoredJob.exists(db, key: id) else {
                throw JobStoreError(.duplicateJob, "job \(id) exists already")
            }
            try job.insert(db)
            try Self.insertEvent(db, .jobQueued, "\(source) → \(output)", jobID: id, at: time)
            return job
        }
    }

    /// Replaces a job's request (JSON text): the pipeline fixes what the submission left open (a URL
    /// source's segment length, chosen once its duration is known), so a resume plans the same.
    public func updateRequest(_ id: String, request: String) async throws {
        try await write("update request of job \(id)") { db in
            var job = try Self.fetchJob(db, id)
            job.request = request
            try job.update(db)
        }
    }

    /// Changes a job's state, phase or error, and returns the job as stored.
    ///
    /// Allowed state changes: queued → running, failed, cancelled; running → queued, done, failed, cancelled.
    /// Becoming running sets `startedAt` (once); finishing sets `finishedAt`. Leaving running voids the job's leases
    /// (whoever finishes those tasks gets ``CompletionOutcome/notHolder``). A finished job cannot change any more:
    /// ``JobStoreError/Code/jobFinished``.
    @discardableResult
    public func updateJob(
        _ id: String, state: JobState? = nil, phase: String? = nil, error: String? = nil, at time: Date = .now
    ) async throws -> StoredJob {
        try await write("update job \(id)") { db in
            var job = try Self.fetchJob(db, id)
            guard !job.state.isFinished else {
                throw JobStoreError(.jobFinished, "job \(id) is \(job.state.rawValue) and cannot change")
            }
            if let error { job.error = error }
            if let phase { job.phase = phase }
            if let state, state != job.state {
                guard Self.allowedTransition(from: job.state, to: state) else {
                    throw JobStoreError(
                        .invalidTransition, "job \(id) cannot go from \(job.state.rawValue) to \(state.rawValue)")
                }
                let previous = job.state
                job.state = state
                if state == .running, job.startedAt == nil { job.startedAt = time }
                if state.isFinished { job.finishedAt = time }
                if previous == .running {
                    _ = try Self.releaseLeases(
                        db, where: Column("jobID") == id, kind: .segmentReleased, reason: "job is \(state.rawValue)",
                        at: time)
                }
                var message = "\(previous.rawValue) → \(state.rawValue)"
                if let error = job.error, state == .failed || state == .cancelled { message += ": \(error)" }
                try Self.insertEvent(db, .jobState, message, jobID: id, at: time)
            }
            try job.update(db)
            return job
        }
    }

    static func allowedTransition(from: JobState, to: JobState) -> Bool {
        switch (from, to) {
        case (.queued, .running), (.queued, .failed), (.queued, .cancelled): true
        case (.running, .queued), (.running, .done), (.running, .failed), (.running, .cancelled): true
        default: false
        }
    }

    /// Records a job's plan: its pinned encoder settings, its totals, and its segments (inserted as pending).
    ///
    /// Idempotent on resume: when the job already has exactly these plans (and the same settings, or none stored),
    /// nothing but the totals changes and the segments keep their states (``PlanOutcome/unchanged``). When the stored
    /// plan or settings differ, `ifDifferent` decides: ``PlanConflict/fail`` throws
    /// ``JobStoreError/Code/planMismatch``; ``PlanConflict/replace`` drops the old segments and the pinned parameters.
    ///
    /// - Parameters:
    ///   - settings: the pinned encoder settings as JSON text (nil: keep what is stored).
    ///   - plans: numbered 0..<n in order.
    @discardableResult
    public func setPlan(
        _ jobID: String, settings: String?, totalFrames: Int, sourceSeconds: Double, plans: [SegmentPlan],
        ifDifferent: PlanConflict = .fail, at time: Date = .now
    ) async throws -> PlanOutcome {
        guard plans.enumerated().allSatisfy({ $0.offset == $0.element.index }) else {
            throw JobStoreError(.invalidPlan, "job \(jobID): segment plans must be numbered 0..<\(plans.count) in order")
        }
        return try await write("plan job \(jobID)") { db in
            var job = try Self.fetchJob(db, jobID)
            guard !job.state.isFinished else {
                throw JobStoreError(.jobFinished, "job \(jobID) is \(job.state.rawValue) and cannot be planned")
            }
            let existing = try Self.fetchSegments(db, jobID: jobID)
            job.totalFrames = totalFrames
            job.sourceSeconds = sourceSeconds
            if existing.isEmpty {
                job.settings = settings ?? job.settings
                try job.update(db)
                for plan in plans { try StoredSegment(jobID: jobID, plan: plan).insert(db) }
                try Self.insertEvent(
                    db, .jobPlanned, "\(plans.count) segments, \(totalFrames) frames", jobID: jobID, at: time)
                return .inserted
            }
            let samePlans = existing.map(\.plan) == plans
            let sameSettings = settings == nil || job.settings == nil || settings == job.settings
            if samePlans && sameSettings {
                job.settings = job.settings ?? settings
                try job.update(db)
                return .unchanged
            }
            let difference =
                samePlans
                ? "other encoder settings" : "\(plans.count) other segments (stored: \(existing.count))"
            guard ifDifferent == .replace else {
                throw JobStoreError(.planMismatch, "job \(jobID) is already planned with \(difference)")
            }
            try StoredSegment.filter(Column("jobID") == jobID).deleteAll(db)
            job.settings = settings ?? job.settings
            job.pinnedParameters = nil
            try job.update(db)
            for plan in plans { try StoredSegment(jobID: jobID, plan: plan).insert(db) }
            let done = existing.filter { $0.state == .done }.count
            try Self.insertEvent(
                db, .planReplaced,
                "replanned with \(difference): \(plans.count) segments; \(done) done segments dropped", jobID: jobID,
                at: time)
            return .replaced
        }
    }

    /// Records the pinned stream header unless one is pinned already, and returns the one pinned now.
    @discardableResult
    public func pinParameters(_ jobID: String, _ parameters: [UInt8]) async throws -> Data {
        try await write("pin parameters of job \(jobID)") { db in
            var job = try Self.fetchJob(db, jobID)
            if let pinned = job.pinnedParameters { return pinned }
            job.pinnedParameters = Data(parameters)
            try job.update(db)
            return Data(parameters)
        }
    }

    /// Deletes a finished job with its segments and events (retention), and returns it so the caller can remove
    /// its work directory. A queued or running job is refused with ``JobStoreError/Code/jobNotFinished``.
    @discardableResult
    public func deleteJob(_ id: String) async throws -> StoredJob {
        try await write("delete job \(id)") { db in
            let job = try Self.fetchJob(db, id)
            guard job.state.isFinished else {
                throw JobStoreError(.jobNotFinished, "job \(id) is \(job.state.rawValue); cancel it first")
            }
            try job.delete(db)
            return job
        }
    }

    /// Deletes every job that finished before `date` (retention), and returns them.
    @discardableResult
    public func deleteJobs(finishedBefore date: Date) async throws -> [StoredJob] {
        try await write("delete old jobs") { db in
            let finished = [JobState.done, .failed, .cancelled].map(\.rawValue)
            let jobs = try StoredJob.filter(finished.contains(Column("state")))
                .filter(Column("finishedAt") < date).fetchAll(db)
            for job in jobs { try job.delete(db) }
            return jobs
        }
    }

    // MARK: Reading jobs

    /// The job with that id, or nil.
    public func job(_ id: String) async throws -> StoredJob? {
        try await read("read job \(id)") { db in try StoredJob.fetchOne(db, key: id) }
    }

    /// The job with its segments, read together, or nil.
    public func snapshot(_ id: String) async throws -> JobSnapshot? {
        try await read("read job \(id)") { db in
            guard let job = try StoredJob.fetchOne(db, key: id) else { return nil }
            return JobSnapshot(job: job, segments: try Self.fetchSegments(db, jobID: id))
        }
    }

    /// The newest jobs first, at most `limit`, optionally only those in `states`.
    public func jobs(limit: Int = 100, states: Set<JobState>? = nil) async throws -> [StoredJob] {
        try await read("list jobs") { db in
            var request = StoredJob.all()
            if let states { request = request.filter(states.map(\.rawValue).contains(Column("state"))) }
            return try request.order(Column("createdAt").desc, Column("id").desc).limit(max(limit, 0)).fetchAll(db)
        }
    }

    /// Queued and running jobs, oldest first, each with its segments: what a restarted coordinator resumes.
    public func unfinishedJobs() async throws -> [JobSnapshot] {
        try await read("list unfinished jobs") { db in
            let jobs = try StoredJob.filter([JobState.queued.rawValue, JobState.running.rawValue].contains(Column("state")))
                .order(Column("createdAt"), Column("id")).fetchAll(db)
            return try jobs.map { JobSnapshot(job: $0, segments: try Self.fetchSegments(db, jobID: $0.id)) }
        }
    }

    /// Done, failed and cancelled jobs, oldest first, each with its segments: what a restarted coordinator still
    /// reports. The newest `limit` of them.
    public func finishedJobs(limit: Int) async throws -> [JobSnapshot] {
        try await read("list finished jobs") { db in
            let ended = [JobState.done, .failed, .cancelled].map(\.rawValue)
            let jobs = try StoredJob.filter(ended.contains(Column("state")))
                .order(Column("createdAt").desc, Column("id").desc).limit(max(limit, 0)).fetchAll(db)
            return try jobs.reversed().map { JobSnapshot(job: $0, segments: try Self.fetchSegments(db, jobID: $0.id)) }
        }
    }

    /// A job's segments by index (empty for an unknown or unplanned job).
    public func segments(_ jobID: String) async throws -> [StoredSegment] {
        try await read("read segments of job \(jobID)") { db in try Self.fetchSegments(db, jobID: jobID) }
    }

    /// One segment, or nil.
    public func segment(_ jobID: String, index: Int) async throws -> StoredSegment? {
        try await read("read segment \(index) of job \(jobID)") { db in
            try StoredSegment.fetchOne(db, key: ["jobID": jobID, "index": index])
        }
    }
}

// MARK: - Segments and leases

extension JobStore {
    /// Records a segment's source file (written and checksummed by the splitter): pending or ready → ready.
    ///
    /// Returns false, changing nothing, when the segment is leased or done (a re-split on resume wrote a segment
    /// that needs no work). Throws ``JobStoreError/Code/jobNotRunning`` unless the job is running.
    @discardableResult
    public func markReady(
        _ jobID: String, index: Int, path: String, bytes: Int64, checksum: [UInt8]
    ) async throws -> Bool {
        try await write("mark segment \(index) of job \(jobID) ready") { db in
            let job = try Self.fetchJob(db, jobID)
            guard job.state == .running else {
                throw JobStoreError(.jobNotRunning, "job \(jobID) is \(job.state.rawValue), not running")
            }
            var segment = try Self.fetchSegment(db, jobID, index)
            guard segment.state == .pending || segment.state == .ready else { return false }
            segment.state = .ready
            segment.sourcePath = path
            segment.sourceBytes = bytes
            segment.sourceChecksum = Data(checksum)
            try segment.update(db)
            return true
        }
    }

    /// Leases a ready segment to one slot of a node, and returns it (state leased, attempts counted).
    ///
    /// Throws, changing nothing: ``JobStoreError/Code/segmentNotLeasable`` when the segment is not ready (pending,
    /// already leased, done); ``JobStoreError/Code/jobNotRunning``; ``JobStoreError/Code/taskInUse`` when
    /// `taskID` holds another lease; ``JobStoreError/Code/unknownNode``; ``JobStoreError/Code/nodeUnavailable``
    /// when the node is draining, gone, quarantined until after `time`, or has as many leases as slots.
    @discardableResult
    public func lease(
        _ jobID: String, index: Int, taskID: UInt64, nodeID: String, expiresAt: Date, at time: Date = .now
    ) async throws -> StoredSegment {
        try await write("lease segment \(index) of job \(jobID)") { db in
            let job = try Self.fetchJob(db, jobID)
            guard job.state == .running else {
                throw JobStoreError(.jobNotRunning, "job \(jobID) is \(job.state.rawValue), not running")
            }
            var segment = try Self.fetchSegment(db, jobID, index)
            guard segment.state == .ready else {
                var holder = ""
                if let task = segment.leasedTask, let node = segment.leasedNode { holder = " by task \(task) on \(node)" }
                throw JobStoreError(
                    .segmentNotLeasable, "segment \(index) of job \(jobID) is \(segment.state.rawValue)\(holder)")
            }
            let node = try Self.fetchNode(db, nodeID)
            guard node.state == .connected else {
                throw JobStoreError(.nodeUnavailable, "node \(nodeID) is \(node.state.rawValue)")
            }
            if let until = node.quarantinedUntil, until > time {
                throw JobStoreError(.nodeUnavailable, "node \(nodeID) is quarantined until \(until)")
            }
            let busy = try StoredSegment.filter(Column("leasedNode") == nodeID).fetchCount(db)
            guard busy < node.slots else {
                throw JobStoreError(.nodeUnavailable, "node \(nodeID) has all \(node.slots) slots leased")
            }
            if let other = try StoredSegment.filter(Column("leasedTask") == taskID).fetchOne(db) {
                throw JobStoreError(
                    .taskInUse, "task \(taskID) already holds segment \(other.index) of job \(other.jobID)")
            }
            segment.state = .leased
            segment.leasedTask = taskID
            segment.leasedNode = nodeID
            segment.leaseExpiresAt = expiresAt
            segment.attempts += 1
            try segment.update(db)
            try Self.insertEvent(
                db, .segmentLeased, "task \(taskID), attempt \(segment.attempts)", jobID: jobID, segment: index,
                nodeID: nodeID, at: time)
            return segment
        }
    }

    /// Gives a lease back: the segment returns to ready, with `failure` (if any) appended to its failures and
    /// counted against its node. Only the holder can: returns nil, changing nothing, when `taskID` no longer holds
    /// the segment (released, expired, completed, job ended).
    @discardableResult
    public func release(
        _ jobID: String, index: Int, taskID: UInt64, failure: String? = nil, at time: Date = .now
    ) async throws -> StoredSegment? {
        try await write("release segment \(index) of job \(jobID)") { db in
            var segment = try Self.fetchSegment(db, jobID, index)
            guard segment.state == .leased, segment.leasedTask == taskID, let nodeID = segment.leasedNode else {
                return nil
            }
            Self.clearLease(&segment)
            if let failure {
                segment.failures.append("\(nodeID): \(failure)")
                if var node = try StoredNode.fetchOne(db, key: nodeID) {
                    node.failures += 1
                    try node.update(db)
                }
            }
            try segment.update(db)
            try Self.insertEvent(
                db, failure == nil ? .segmentReleased : .segmentFailed,
                "task \(taskID)" + (failure.map { ": \($0)" } ?? " gave the segment back"), jobID: jobID,
                segment: index, nodeID: nodeID, at: time)
            return segment
        }
    }

    /// Accepts a segment's result (already checked by the caller: checksum of the bytes, frame count), if
    /// `taskID` on `nodeID` still holds the lease.
    ///
    /// With `parameters` (the result's stream header), the first accepted result pins them for the job; a later
    /// result with other parameters is not accepted (``CompletionOutcome/parameterMismatch(pinned:)``; the lease
    /// stays held, release it with a failure). Also counts the segment for the node.
    public func complete(
        _ jobID: String, index: Int, taskID: UInt64, nodeID: String, resultPath: String, bytes: Int64,
        checksum: [UInt8], frames: Int, encoder: String, parameters: [UInt8]? = nil, at time: Date = .now
    ) async throws -> CompletionOutcome {
        try await write("complete segment \(index) of job \(jobID)") { db in
            var segment = try Self.fetchSegment(db, jobID, index)
            guard segment.state == .leased, segment.leasedTask == taskID, segment.leasedNode == nodeID else {
                return .notHolder
            }
            if let parameters {
                var job = try Self.fetchJob(db, jobID)
                if let pinned = job.pinnedParameters {
                    guard pinned == Data(parameters) else { return .parameterMismatch(pinned: pinned) }
                } else {
                    job.pinnedParameters = Data(parameters)
                    try job.update(db)
                }
            }
            segment.state = .done
            segment.leasedTask = nil
            segment.leasedNode = nil
            segment.leaseExpiresAt = nil
            segment.resultPath = resultPath
            segment.resultBytes = bytes
            segment.resultChecksum = Data(checksum)
            segment.frames = frames
            segment.encoder = encoder
            segment.doneNode = nodeID
            try segment.update(db)
            if var node = try StoredNode.fetchOne(db, key: nodeID) {
                node.segmentsDone += 1
                try node.update(db)
            }
            try Self.insertEvent(
                db, .segmentDone, "task \(taskID): \(frames) frames, \(bytes) bytes, \(encoder)", jobID: jobID,
                segment: index, nodeID: nodeID, at: time)
            let remaining = try StoredSegment.filter(Column("jobID") == jobID)
                .filter(Column("state") != StoredSegment.State.done.rawValue).fetchCount(db)
            return .completed(segment, remaining: remaining)
        }
    }

    /// Moves a lease's deadline (a per-task renewal); false when `taskID` no longer holds the segment.
    @discardableResult
    public func renewLease(_ jobID: String, index: Int, taskID: UInt64, until: Date) async throws -> Bool {
        try await write("renew lease of segment \(index) of job \(jobID)") { db in
            var segment = try Self.fetchSegment(db, jobID, index)
            guard segment.state == .leased, segment.leasedTask == taskID else { return false }
            segment.leaseExpiresAt = until
            try segment.update(db)
            return true
        }
    }

    /// Takes back every lease whose deadline is at or before `now` (the stall detector), and returns them.
    @discardableResult
    public func releaseExpiredLeases(now: Date = .now) async throws -> [ReleasedLease] {
        try await write("release expired leases") { db in
            try Self.releaseLeases(
                db, where: Column("leaseExpiresAt") <= now, kind: .leaseExpired, reason: "lease expired", at: now)
        }
    }

    /// Takes back every lease (at start-up: no task of a previous run is alive), and returns them.
    @discardableResult
    public func releaseAllLeases(at time: Date = .now) async throws -> [ReleasedLease] {
        try await write("release all leases") { db in
            try Self.releaseLeases(
                db, where: Column("leasedTask") != nil, kind: .leaseVoided, reason: "coordinator restarted", at: time)
        }
    }

    /// Takes back every lease one node holds (it left), and returns them.
    @discardableResult
    public func releaseLeases(nodeID: String, at time: Date = .now) async throws -> [ReleasedLease] {
        try await write("release leases of node \(nodeID)") { db in
            try Self.releaseLeases(
                db, where: Column("leasedNode") == nodeID, kind: .segmentReleased, reason: "node left", at: time)
        }
    }
}
