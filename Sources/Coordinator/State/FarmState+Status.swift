internal import FarmHWEncode
internal import Logging
internal import Foundation

// What the state reports: job and node status, and what cleanup may remove.
extension FarmState {
    /// A job's status now; `download` is the progress of a source fetched by URL.
    func status(_ job: Job, now: Double, download: (bytes: Int64, total: Int64?)? = nil) -> JobStatus {
        var framesDone = 0
        var segments: [SegmentStatus] = []
        let running = Dictionary(
            tasks.values.filter { $0.jobID == job.id }.sorted { $0.taskID < $1.taskID }.map { ($0.segment, $0) },
            uniquingKeysWith: { a, _ in a })
        for segment in job.segments {
            let state = segment.phase.statusName
            var node: String? = segment.lastNode
            var encoder: String?
            var frames = 0
            switch segment.phase {
            case .pending, .ready: break
            case .leased:
                frames = running[segment.plan.index]?.framesDone ?? 0
                node = running[segment.plan.index]?.nodeID
            case .done:
                frames = segment.result?.frames ?? 0
                encoder = segment.result?.encoder
                node = segment.result?.nodeID
            }
            framesDone += frames
            segments.append(
                SegmentStatus(
                    index: segment.plan.index, state: state, attempts: segment.attempts, node: node, encoder: encoder,
                    frames: frames))
        }
        let end = job.finished ?? now
        let fps = Self.fps(framesDone, in: job.encodingStarted.map { end - $0 } ?? 0)
        let remaining = max(job.totalFrames - framesDone, 0)
        var eta: Double? = fps > 0 ? Double(remaining) / fps : nil
        if job.state == .running, let finish = predictedFinish[job.id] {
            // The policy's forward plan with measured speeds; the assembly that follows is not counted.
            eta = max(finish - now, 0)
        }
        if job.state.isFinished { eta = 0 }
        // No fleet to finish it (an infinite forecast) is no number a client can show.
        if let value = eta, !value.isFinite { eta = nil }
        return JobStatus(
            id: job.id, state: job.state, phase: job.phase, source: SourceURL.redacted(job.request.source), output: job.request.output,
            progress: Self.progress(job.state, framesDone: framesDone, totalFrames: job.totalFrames),
            framesDone: framesDone, totalFrames: job.totalFrames, fps: fps, etaSeconds: eta,
            error: job.error, segments: segments, sourceSeconds: job.sourceSeconds,
            wallSeconds: max(end - job.submitted, 0), encodersByNode: job.encodersByNode, dropped: job.dropped,
            fallbacks: job.fallbacks, downloadedBytes: download?.bytes, downloadTotalBytes: download?.total,
            nodeLabels: job.request.nodeLabels ?? [])
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

    /// The connected nodes, in the order they joined.
    func nodeStatuses(now: Double) -> [NodeStatus] {
        nodes.values.sorted { $0.session < $1.session }.map {
            let quarantine = quarantined[$0.nodeID].flatMap { $0.until > now ? $0 : nil }
            return NodeStatus(
                id: $0.nodeID, address: $0.address, slots: $0.slots, threads: $0.threads, slotsInUse: $0.inFlight.count,
                draining: $0.draining, quarantinedForSeconds: quarantine.map { $0.until - now },
                quarantineReason: quarantine?.reason, segmentsDone: $0.segmentsDone,
                secondsSinceHeartbeat: max(now - $0.lastSeen, 0), capabilitiesJSON: $0.capabilitiesJSON,
                labels: $0.labels.sorted(), claimedLabels: $0.claimedLabels)
        }
    }

    /// What a cleanup pass may remove, decided from the jobs.
    struct CleanupPlan {
        /// Jobs finished before the retention cut-off, forgotten now.
        var forgotten: [(id: String, output: String, work: String)] = []
        /// Names in `<data dir>/jobs` to keep: unfinished jobs, and finished ones kept for debugging.
        var keepWork: Set<String> = []
        /// Ids of unfinished jobs (their temporary outputs stay).
        var unfinished: Set<String> = []
        /// Paths never to remove: the work directories, outputs and sources of unfinished jobs.
        var keepPaths: Set<String> = []
    }

    /// Forgets the jobs that finished before `cutoff` and says what else must be kept.
    mutating func cleanupPlan(retiringBefore cutoff: Double) -> CleanupPlan {
        var plan = CleanupPlan()
        for id in jobOrder {
            guard let job = jobs[id] else { continue }
            if !job.state.isFinished {
                plan.unfinished.insert(id)
                plan.keepWork.insert(id)
                for path in [job.workDirectory, job.request.output, job.request.source] {
                    plan.keepPaths.insert(URL(fileURLWithPath: path).standardizedFileURL.path)
                }
            } else if let finished = job.finished, finished < cutoff {
                plan.forgotten.append((id, job.request.output, job.workDirectory))
            } else if job.request.keepWork {
                plan.keepWork.insert(id)
            }
        }
        forget(Set(plan.forgotten.map(\.id)))
        return plan
    }
}
