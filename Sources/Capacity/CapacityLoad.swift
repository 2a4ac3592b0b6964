import FarmMedia
import Foundation

/// The load of `farm capacity`: jobs submitted over the HTTP API at rising rates until the coordinator's
/// scale-up signal fires, the farm watched once a second, and the figures worked out at the end.
///
/// The run has three parts inside `--duration`:
/// 1. **Pilot**: one job of each clip at once on the idle farm. Their time gives a first estimate of the
///    farm's rate, `C0 = 2 jobs / pilot time`.
/// 2. **Ramp**: jobs arrive evenly spaced at `C0 / 2`, a rate raised by half every step (an eighth of the
///    duration, 4 to 60 s), until `farm_scale_up`
///    reads 1 (more than 10 jobs waiting, or a job waiting more than 30 s: the seed's triggers). The offered
///    rate at that moment is `scale_up_at_jobs_per_hour`.
/// 3. **Drain**: no new jobs; the farm works through its queue, which is when it runs flat out, until the
///    queue is empty or the time is up. What is left is cancelled.
struct CapacityLoad {
    /// A clip the jobs use: its path on the coordinator (embedded runs) or a local file to upload.
    struct Clip: Sendable {
        var label: String
        var path: String
        var seconds: Double
    }

    enum Submission: Sendable {
        /// The coordinator reads the clips from a source root (no upload).
        case path
        /// The clips are uploaded with each job.
        case upload
    }

    var api: any CapacityAPI
    var clips: [Clip]
    var submission: Submission
    var codec: String
    var preset: String
    var duration: Double
    /// Called once a second: re-pins children and reads their memory and CPU (embedded runs).
    var sampleProcesses: @Sendable () -> [String: ProcessSample]
    /// Throws when the farm under test died (embedded runs).
    var checkAlive: @Sendable () throws -> Void
    var log: @Sendable (String) -> Void

    /// Runs the load and returns what was seen; cancels its unfinished jobs before returning.
    func run() async throws -> LoadRecord {
        let recorder = LoadRecorder()
        let deadline = ContinuousClock.now + .milliseconds(Int(duration * 1000))
        do {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    do {
                        try await self.submit(recorder, until: deadline)
                    } catch let error as CapacityError {
                        await recorder.failed(error)
                    }
                }
                // The watcher ends the run; the submitter may still be waiting for its next job.
                try await self.watch(recorder, until: deadline)
                group.cancelAll()
            }
        } catch {
            await cleanUp(recorder)
            throw error
        }
        await cleanUp(recorder)
        return await recorder.record()
    }

    // MARK: Submitting

    private func submit(_ recorder: LoadRecorder, until deadline: ContinuousClock.Instant) async throws {
        let start = ContinuousClock.now
        let total = deadline - start
        // Pilot: one job of each clip on the idle farm.
        log("pilot: one job of each clip")
        var pilotIDs: [String] = []
        for clip in clips {
            if let id = try await submitOne(clip, recorder: recorder) { pilotIDs.append(id) }
        }
        let pilotCap = start + total / 4
        while ContinuousClock.now < pilotCap, await !recorder.allFinished(pilotIDs) {
            try await Task.sleep(for: .milliseconds(200))
        }
        let pilotSeconds = max(await recorder.lastFinish(pilotIDs) ?? (ContinuousClock.now - start).seconds, 0.5)
        let estimate = Double(max(pilotIDs.count, 1)) * 3600 / pilotSeconds
        await recorder.setPilot(seconds: pilotSeconds, estimate: estimate)

        var rate = estimate / 2
        // Steps of an eighth of the run (30 s in a 240 s run, the wait trigger's own time), 4 to 60 s.
        let step = Duration.milliseconds(Int(min(max(duration / 8, 4), 60) * 1000))
        var next = 0
        var lastSubmission = ContinuousClock.now
        while ContinuousClock.now < deadline {
            if await recorder.stopSubmitting { return }
            let stepEnd = min(ContinuousClock.now + step, deadline)
            await recorder.setOffered(rate)
            log(String(format: "offering %.0f jobs/hour", rate))
            while ContinuousClock.now < stepEnd {
                if await recorder.stopSubmitting { return }
                let due = lastSubmission + .milliseconds(Int(3_600_000 / rate))
                if ContinuousClock.now < due {
                    try await Task.sleep(until: min(due, stepEnd), clock: .continuous)
                    continue
                }
                lastSubmission = ContinuousClock.now
                _ = try await submitOne(clips[next % clips.count], recorder: recorder)
                next += 1
            }
            rate *= 1.5
        }
    }

    /// Submits one job; nil when the coordinator refused it for a full queue (429).
    private func submitOne(_ clip: Clip, recorder: LoadRecorder) async throws -> String? {
        let submittedAt = ContinuousClock.now
        let created: String
        do {
            switch submission {
            case .path: created = try await api.submit(source: clip.path, codec: codec, preset: preset)
            case .upload: created = try await api.upload(file: clip.path, codec: codec, preset: preset)
            }
        } catch let error as CapacityAPIFailure where error.status == 429 || error.status == 503 {
            await recorder.rejected()
            log("refused: \(error.description)")
            return nil
        } catch let error as CapacityAPIFailure {
            throw CapacityError("submitting a job: \(error.description)")
        }
        await recorder.submitted(id: created, clip: clip, at: submittedAt)
        return created
    }

    // MARK: Watching

    private func watch(_ recorder: LoadRecorder, until deadline: ContinuousClock.Instant) async throws {
        var failures = 0
        while true {
            try checkAlive()
            if let error = await recorder.submitError { throw error }
            let tick = ContinuousClock.now
            do {
                let jobs = try await jobList()
                let metrics = Metrics.parse(try await api.metrics())
                failures = 0
                let processes = sampleProcesses()
                if let fired = await recorder.observe(jobs: jobs, metrics: metrics, processes: processes) {
                    log(fired)
                }
            } catch let error as CapacityAPIFailure where error.status == nil && failures < 5 {
                // A busy coordinator may miss a poll; several in a row end the run.
                failures += 1
            } catch let error as CapacityAPIFailure {
                throw CapacityError("watching the coordinator: \(error.description)")
            }
            if ContinuousClock.now >= deadline { return }
            if await recorder.finishedEarly { return }
            try await Task.sleep(until: tick + .seconds(1), clock: .continuous)
        }
    }

    /// Cancels what is left, in a task of its own so that an interrupted run (a cancelled task) still reaches
    /// the coordinator.
    private func cleanUp(_ recorder: LoadRecorder) async {
        await Task { await cancelUnfinished(recorder) }.value
    }

    /// Cancels every job of this run that has not ended, and takes a last look at their states.
    private func cancelUnfinished(_ recorder: LoadRecorder) async {
        for id in await recorder.unfinishedIDs() {
            try? await api.cancel(job: id)
        }
        if let jobs = try? await jobList() {
            await recorder.final(jobs: jobs, processes: sampleProcesses())
        } else {
            await recorder.final(jobs: [], processes: sampleProcesses())
        }
    }
}

extension CapacityLoad {
    /// `GET /jobs`, decoded.
    func jobList() async throws -> [CapacityJob] {
        let body = try await api.jobs()
        do {
            return try JSONDecoder().decode(CapacityJobList.self, from: Data(body)).jobs
        } catch {
            throw CapacityAPIFailure(
                status: nil, description: "GET /jobs: unexpected reply: \(String(decoding: body.prefix(300), as: UTF8.self))")
        }
    }
}

/// A job as `GET /jobs` shows it, the fields the capacity test reads.
struct CapacityJob: Decodable {
    struct Segment: Decodable { var state: String }
    var id: String
    var state: String
    var segments: [Segment]
    var sourceSeconds: Double?
    var wallSeconds: Double?

    enum CodingKeys: String, CodingKey {
        case id, state, segments
        case sourceSeconds = "source_s"
        case wallSeconds = "wall_s"
    }

    var isFinished: Bool { ["done", "failed", "cancelled"].contains(state) }
    /// Started: a segment has reached a node (what the coordinator's queue depth counts the other way).
    var isStarted: Bool { state == "done" || segments.contains { $0.state == "running" || $0.state == "done" } }
}

struct CapacityJobList: Decodable { var jobs: [CapacityJob] }

/// The values of a Prometheus text exposition that the test reads.
struct Metrics {
    var values: [String: Double] = [:]

    /// `name` or `name{labels}` → value; comments and malformed lines are skipped.
    static func parse(_ text: String) -> Metrics {
        var metrics = Metrics()
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
            metrics.values[String(line[..<space]).replacingOccurrences(of: " ", with: "")] = value
        }
        return metrics
    }

    subscript(_ key: String) -> Double? { values[key] }
}

/// What a capacity run saw, for the report.
struct LoadRecord {
    var jobs: [CapacityReport.Job]
    var samples: [CapacityReport.Sample]
    var rejected: Int
    var scaleUp: CapacityReport.ScaleUp?
    var maxOffered: Double
    var pilotSeconds: Double?
    var pilotEstimate: Double?
    var elapsedSeconds: Double
    var peakRSS: [String: Double]
    var cpuSeconds: [String: (first: Double, last: Double)]
    var coordinatorRSSFromMetrics: Double?
}

/// The shared state of a run: jobs submitted, what each poll saw, when the triggers fired.
actor LoadRecorder {
    private struct Tracked {
        var id: String
        var clip: String
        var sourceSeconds: Double
        var submittedAt: Double
        var state = "queued"
        var startedAt: Double?
        var wallSeconds: Double?
    }

    private let start = ContinuousClock.now
    private var order: [String] = []
    private var jobs: [String: Tracked] = [:]
    private var samples: [CapacityReport.Sample] = []
    private var rejectedCount = 0
    private var offered = 0.0
    private var maxOffered = 0.0
    private var fired: CapacityReport.ScaleUp?
    private var pilot: (Double, Double)?
    private var peakRSS: [String: Double] = [:]
    private var cpuSeconds: [String: (first: Double, last: Double)] = [:]
    private var coordinatorRSS: Double?

    private var now: Double { (ContinuousClock.now - start).seconds }

    func submitted(id: String, clip: CapacityLoad.Clip, at instant: ContinuousClock.Instant) {
        order.append(id)
        jobs[id] = Tracked(id: id, clip: clip.label, sourceSeconds: clip.seconds, submittedAt: (instant - start).seconds)
    }

    func rejected() { rejectedCount += 1 }

    func setPilot(seconds: Double, estimate: Double) { pilot = (seconds, estimate) }

    func setOffered(_ rate: Double) {
        offered = rate
        maxOffered = max(maxOffered, rate)
    }

    /// Why submitting stopped, when it failed.
    private(set) var submitError: CapacityError?

    func failed(_ error: CapacityError) { submitError = error }

    /// New jobs stop once the triggers fired or the coordinator refused one.
    var stopSubmitting: Bool { fired != nil || rejectedCount > 0 }

    /// The ramp is over and every job has ended.
    var finishedEarly: Bool { stopSubmitting && !order.isEmpty && jobs.values.allSatisfy { ["done", "failed", "cancelled"].contains($0.state) } }

    func allFinished(_ ids: [String]) -> Bool {
        ids.allSatisfy { ["done", "failed", "cancelled"].contains(jobs[$0]?.state ?? "done") }
    }

    /// When the last of `ids` ended, in seconds since the start, from the coordinator's own times; nil when
    /// one has not ended.
    func lastFinish(_ ids: [String]) -> Double? {
        var last = 0.0
        for id in ids {
            guard let job = jobs[id], let wall = job.wallSeconds else { return nil }
            last = max(last, job.submittedAt + wall)
        }
        return last
    }

    func unfinishedIDs() -> [String] {
        order.filter { !["done", "failed", "cancelled"].contains(jobs[$0]?.state ?? "done") }
    }

    private func apply(_ list: [CapacityJob]) {
        let t = now
        for job in list {
            guard var tracked = jobs[job.id] else { continue }
            tracked.state = job.state
            if let seconds = job.sourceSeconds, seconds > 0 { tracked.sourceSeconds = seconds }
            if job.isFinished, tracked.wallSeconds == nil { tracked.wallSeconds = job.wallSeconds }
            if tracked.startedAt == nil, job.isStarted {
                // Seen once a second: a job that started and ended between two polls started no later than it ended.
                tracked.startedAt = min(t, tracked.wallSeconds.map { tracked.submittedAt + $0 } ?? t)
            }
            jobs[job.id] = tracked
        }
    }

    private func absorb(_ processes: [String: ProcessSample]) {
        for (name, sample) in processes {
            peakRSS[name] = max(peakRSS[name] ?? 0, sample.peakRSSMB, sample.rssMB)
            cpuSeconds[name] = (cpuSeconds[name]?.first ?? sample.cpuSeconds, sample.cpuSeconds)
        }
    }

    /// Folds in one poll; returns a line to log when the triggers fired for the first time.
    func observe(jobs list: [CapacityJob], metrics: Metrics, processes: [String: ProcessSample]) -> String? {
        apply(list)
        absorb(processes)
        let t = now
        let ours = order.compactMap { jobs[$0] }
        let waitingOurs = ours.filter { $0.startedAt == nil && !["done", "failed", "cancelled"].contains($0.state) }
        let queueDepth = metrics["farm_queue_depth"].map { Int($0) } ?? waitingOurs.count
        let oldestWait = metrics["farm_oldest_wait_seconds"] ?? waitingOurs.map { t - $0.submittedAt }.max() ?? 0
        let scaleUp = metrics["farm_scale_up"].map { $0 >= 1 } ?? (queueDepth > 10 || oldestWait > 30)
        if let rss = metrics["process_resident_memory_bytes"] { coordinatorRSS = max(coordinatorRSS ?? 0, rss / 1_048_576) }
        samples.append(
            CapacityReport.Sample(
                t: CapacityReport.round(t, 2), queueDepth: queueDepth,
                running: ours.filter { $0.startedAt != nil && !["done", "failed", "cancelled"].contains($0.state) }.count,
                completed: ours.filter { $0.state == "done" }.count, submitted: ours.count,
                slotsInUse: Int(metrics["farm_node_slots_in_use"] ?? 0), slots: Int(metrics["farm_node_slots"] ?? 0),
                oldestWaitSeconds: CapacityReport.round(oldestWait), offeredJobsPerHour: CapacityReport.round(offered),
                scaleUp: scaleUp,
                rssMB: processes.mapValues { CapacityReport.round($0.rssMB) }, cores: processes.mapValues { CapacityReport.round($0.cores, 2) }))
        guard scaleUp, fired == nil else { return nil }
        var reasons: [String] = []
        if queueDepth > 10 { reasons.append("queue: \(queueDepth) jobs waiting") }
        if oldestWait > 30 { reasons.append(String(format: "wait: a job waited %.0f s", oldestWait)) }
        let event = CapacityReport.ScaleUp(
            atSeconds: CapacityReport.round(t), reason: reasons.isEmpty ? "farm_scale_up" : reasons.joined(separator: ", "),
            offeredJobsPerHour: CapacityReport.round(offered), queueDepth: queueDepth, oldestWaitSeconds: CapacityReport.round(oldestWait),
            jobsCompletedBefore: ours.filter { $0.state == "done" }.count)
        fired = event
        return String(format: "scale-up fired at %.0f jobs/hour offered (%@)", offered, event.reason)
    }

    func final(jobs list: [CapacityJob], processes: [String: ProcessSample]) {
        apply(list)
        absorb(processes)
    }

    func record() -> LoadRecord {
        let reported = order.compactMap { jobs[$0] }.map { job -> CapacityReport.Job in
            let finishedAt = job.state == "done" ? job.wallSeconds.map { job.submittedAt + $0 } : nil
            return CapacityReport.Job(
                id: job.id, clip: job.clip, state: job.state, submittedAt: CapacityReport.round(job.submittedAt, 2),
                startedAt: job.startedAt.map { CapacityReport.round($0, 2) }, finishedAt: finishedAt.map { CapacityReport.round($0, 2) },
                latencySeconds: job.state == "done" ? job.wallSeconds.map { CapacityReport.round($0, 2) } : nil,
                waitSeconds: job.startedAt.map { CapacityReport.round(max($0 - job.submittedAt, 0), 2) },
                sourceSeconds: CapacityReport.round(job.sourceSeconds, 3))
        }
        return LoadRecord(
            jobs: reported, samples: samples, rejected: rejectedCount, scaleUp: fired, maxOffered: maxOffered,
            pilotSeconds: pilot?.0, pilotEstimate: pilot?.1, elapsedSeconds: now, peakRSS: peakRSS, cpuSeconds: cpuSeconds,
            coordinatorRSSFromMetrics: coordinatorRSS)
    }
}
