public import Foundation

/// What `farm capacity` measured, as `--json` writes it (snake_case keys; absent figures are null).
public struct CapacityReport: Encodable, Sendable {
    /// How the embedded farm was pinned to cores.
    struct Confinement: Encodable {
        var tierCPU: Int
        var machineCPUs: Int
        var nodeCores: [Int]
        var coordinatorCores: [Int]
        /// Whether the node had the tier's full CPU count.
        var confined: Bool
        var notes: [String]

        enum CodingKeys: String, CodingKey {
            case confined, notes
            case tierCPU = "tier_cpu"
            case machineCPUs = "machine_cpus"
            case nodeCores = "node_cores"
            case coordinatorCores = "coordinator_cores"
        }
    }

    struct Clip: Encodable {
        var label: String
        var width: Int
        var height: Int
        var seconds: Double
        var frameRate: Int

        enum CodingKeys: String, CodingKey {
            case label, width, height, seconds
            case frameRate = "frame_rate"
        }
    }

    /// When `farm_scale_up` first read 1.
    struct ScaleUp: Encodable {
        var atSeconds: Double
        /// "queue" (more than 10 jobs waiting), "wait" (a job waited more than 30 s) or both.
        var reason: String
        var offeredJobsPerHour: Double
        var queueDepth: Int
        var oldestWaitSeconds: Double
        var jobsCompletedBefore: Int

        enum CodingKeys: String, CodingKey {
            case reason
            case atSeconds = "at_s"
            case offeredJobsPerHour = "offered_jobs_per_hour"
            case queueDepth = "queue_depth"
            case oldestWaitSeconds = "oldest_wait_s"
            case jobsCompletedBefore = "jobs_completed_before"
        }
    }

    struct CPU: Encodable {
        /// CPU seconds of each child (embedded runs only).
        var secondsByProcess: [String: Double]
        /// Mean busy cores of each child over the load phase.
        var meanCoresByProcess: [String: Double]
        /// All children's CPU seconds over (wall seconds x cores they were allowed): 1.0 is every core busy.
        var utilisation: Double?
        /// Mean share of node slots encoding, from the coordinator's /metrics (both modes).
        var slotUtilisation: Double?

        enum CodingKeys: String, CodingKey {
            case utilisation
            case secondsByProcess = "seconds_by_process"
            case meanCoresByProcess = "mean_cores_by_process"
            case slotUtilisation = "slot_utilisation"
        }

        // Unknown figures are null, not missing.
        func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(secondsByProcess, forKey: .secondsByProcess)
            try c.encode(meanCoresByProcess, forKey: .meanCoresByProcess)
            try c.encode(utilisation, forKey: .utilisation)
            try c.encode(slotUtilisation, forKey: .slotUtilisation)
        }
    }

    /// One reading a second.
    struct Sample: Encodable {
        var t: Double
        var queueDepth: Int
        var running: Int
        var completed: Int
        var submitted: Int
        var slotsInUse: Int
        var slots: Int
        var oldestWaitSeconds: Double
        var offeredJobsPerHour: Double
        var scaleUp: Bool
        var rssMB: [String: Double]
        var cores: [String: Double]

        enum CodingKeys: String, CodingKey {
            case t, running, completed, submitted, slots, cores
            case queueDepth = "queue_depth"
            case slotsInUse = "slots_in_use"
            case oldestWaitSeconds = "oldest_wait_s"
            case offeredJobsPerHour = "offered_jobs_per_hour"
            case scaleUp = "scale_up"
            case rssMB = "rss_mb"
        }
    }

    struct Job: Encodable {
        var id: String
        var clip: String
        var state: String
        var submittedAt: Double
        var startedAt: Double?
        var finishedAt: Double?
        var latencySeconds: Double?
        var waitSeconds: Double?
        var sourceSeconds: Double

        enum CodingKeys: String, CodingKey {
            case id, clip, state
            case submittedAt = "submitted_at_s"
            case startedAt = "started_at_s"
            case finishedAt = "finished_at_s"
            case latencySeconds = "latency_s"
            case waitSeconds = "wait_s"
            case sourceSeconds = "source_s"
        }
    }

    /// The machine the run was on: its cores and its 1-minute load average at the start and the end (a load
    /// well above the core count means other work shared the machine and the figures are low).
    struct Machine: Encodable {
        var cpus: Int
        var loadAverageStart: Double?
        var loadAverageEnd: Double?

        enum CodingKeys: String, CodingKey {
            case cpus
            case loadAverageStart = "load_average_start"
            case loadAverageEnd = "load_average_end"
        }

        /// The 1-minute load average from /proc/loadavg.
        static func loadAverage() -> Double? {
            (try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8))?.split(separator: " ").first.flatMap { Double($0) }
        }
    }

    var tier: String
    var mode: String
    var machine: Machine
    var server: String?
    var startedAt: String
    var command: String
    var durationSeconds: Double
    var elapsedSeconds: Double
    var clips: [Clip]
    var codec: String
    var preset: String
    var jobsSubmitted: Int
    var jobsCompleted: Int
    var jobsFailed: Int
    var jobsCancelled: Int
    var jobsRejected: Int
    var jobsPerHour: Double
    /// "saturated" when measured while jobs waited and every slot was encoding (the farm's capacity), else "whole run".
    var jobsPerHourBasis: String
    var realtimeFactor: Double
    var videoSecondsCompleted: Double
    var latencyP50: Double?
    var latencyP95: Double?
    var latencyMax: Double?
    var waitP50: Double?
    var waitP95: Double?
    var peakRSSMB: Double?
    var peakRSSMBByProcess: [String: Double]
    var cpu: CPU
    var scaleUpAtJobsPerHour: Double?
    var scaleUp: ScaleUp?
    var maxOfferedJobsPerHour: Double
    var confinement: Confinement?
    var notes: [String]
    var jobs: [Job]
    var timeline: [Sample]

    enum CodingKeys: String, CodingKey {
        case tier, mode, machine, server, command, clips, codec, preset, cpu, confinement, notes, jobs, timeline
        case startedAt = "started_at"
        case durationSeconds = "duration_s"
        case elapsedSeconds = "elapsed_s"
        case jobsSubmitted = "jobs_submitted"
        case jobsCompleted = "jobs_completed"
        case jobsFailed = "jobs_failed"
        case jobsCancelled = "jobs_cancelled"
        case jobsRejected = "jobs_rejected"
        case jobsPerHour = "jobs_per_hour"
        case jobsPerHourBasis = "jobs_per_hour_basis"
        case realtimeFactor = "realtime_factor"
        case videoSecondsCompleted = "video_s_completed"
        case latencyP50 = "latency_p50_s"
        case latencyP95 = "latency_p95_s"
        case latencyMax = "latency_max_s"
        case waitP50 = "wait_p50_s"
        case waitP95 = "wait_p95_s"
        case peakRSSMB = "peak_rss_mb"
        case peakRSSMBByProcess = "peak_rss_mb_by_process"
        case scaleUpAtJobsPerHour = "scale_up_at_jobs_per_hour"
        case scaleUp = "scale_up"
        case maxOfferedJobsPerHour = "max_offered_jobs_per_hour"
    }

    // Absent figures are written as null so that every key is always present.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(tier, forKey: .tier)
        try c.encode(mode, forKey: .mode)
        try c.encode(machine, forKey: .machine)
        try c.encode(server, forKey: .server)
        try c.encode(startedAt, forKey: .startedAt)
        try c.encode(command, forKey: .command)
        try c.encode(durationSeconds, forKey: .durationSeconds)
        try c.encode(Self.round(elapsedSeconds), forKey: .elapsedSeconds)
        try c.encode(clips, forKey: .clips)
        try c.encode(codec, forKey: .codec)
        try c.encode(preset, forKey: .preset)
        try c.encode(jobsSubmitted, forKey: .jobsSubmitted)
        try c.encode(jobsCompleted, forKey: .jobsCompleted)
        try c.encode(jobsFailed, forKey: .jobsFailed)
        try c.encode(jobsCancelled, forKey: .jobsCancelled)
        try c.encode(jobsRejected, forKey: .jobsRejected)
        try c.encode(Self.round(jobsPerHour), forKey: .jobsPerHour)
        try c.encode(jobsPerHourBasis, forKey: .jobsPerHourBasis)
        try c.encode(Self.round(realtimeFactor, 3), forKey: .realtimeFactor)
        try c.encode(Self.round(videoSecondsCompleted), forKey: .videoSecondsCompleted)
        try c.encode(latencyP50.map { Self.round($0, 2) }, forKey: .latencyP50)
        try c.encode(latencyP95.map { Self.round($0, 2) }, forKey: .latencyP95)
        try c.encode(latencyMax.map { Self.round($0, 2) }, forKey: .latencyMax)
        try c.encode(waitP50.map { Self.round($0, 2) }, forKey: .waitP50)
        try c.encode(waitP95.map { Self.round($0, 2) }, forKey: .waitP95)
        try c.encode(peakRSSMB.map { Self.round($0) }, forKey: .peakRSSMB)
        try c.encode(peakRSSMBByProcess.mapValues { Self.round($0) }, forKey: .peakRSSMBByProcess)
        try c.encode(cpu, forKey: .cpu)
        try c.encode(scaleUpAtJobsPerHour.map { Self.round($0) }, forKey: .scaleUpAtJobsPerHour)
        try c.encode(scaleUp, forKey: .scaleUp)
        try c.encode(Self.round(maxOfferedJobsPerHour), forKey: .maxOfferedJobsPerHour)
        try c.encode(confinement, forKey: .confinement)
        try c.encode(notes, forKey: .notes)
        try c.encode(jobs, forKey: .jobs)
        try c.encode(timeline, forKey: .timeline)
    }

    static func round(_ value: Double, _ places: Int = 1) -> Double {
        guard value.isFinite else { return 0 }
        let scale = pow(10, Double(places))
        return (value * scale).rounded() / scale
    }

    /// The report as pretty-printed JSON with sorted keys.
    public func json() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try encoder.encode(self)
    }

    /// A short human summary for the terminal.
    public func summary() -> String {
        func value(_ v: Double?, _ unit: String, _ format: String = "%.1f") -> String {
            v.map { String(format: format, $0) + unit } ?? "unknown"
        }
        var lines = [
            "tier            \(tier) (\(mode)\(server.map { " \($0)" } ?? ""))",
            "jobs            \(jobsCompleted) done, \(jobsFailed) failed, \(jobsCancelled) cancelled at the end, "
                + "\(jobsRejected) refused, of \(jobsSubmitted) submitted",
            "throughput      \(String(format: "%.1f", jobsPerHour)) jobs/hour (\(jobsPerHourBasis)), "
                + "realtime factor \(String(format: "%.2f", realtimeFactor))",
            "latency         p50 \(value(latencyP50, " s")), p95 \(value(latencyP95, " s")), wait p95 \(value(waitP95, " s"))",
            "peak memory     \(value(peakRSSMB, " MB"))"
                + (peakRSSMBByProcess.isEmpty
                    ? "" : " (" + peakRSSMBByProcess.sorted { $0.key < $1.key }.map { "\($0.key) \(String(format: "%.0f", $0.value)) MB" }.joined(separator: ", ") + ")"),
            "cpu             \(cpu.utilisation.map { String(format: "%.0f %% of the allowed cores", $0 * 100) } ?? "unknown"), "
                + "slots busy \(cpu.slotUtilisation.map { String(format: "%.0f %%", $0 * 100) } ?? "unknown")",
        ]
        if let scaleUp {
            lines.append(
                "scale-up        fired at \(String(format: "%.0f", scaleUp.offeredJobsPerHour)) jobs/hour offered, "
                    + "\(String(format: "%.0f", scaleUp.atSeconds)) s in (\(scaleUp.reason))")
        } else {
            lines.append("scale-up        did not fire (highest offered rate \(String(format: "%.0f", maxOfferedJobsPerHour)) jobs/hour)")
        }
        for note in notes { lines.append("note            \(note)") }
        return lines.joined(separator: "\n")
    }
}

/// Percentile of sorted values by linear interpolation between closest ranks; nil when empty.
func percentile(_ sorted: [Double], _ p: Double) -> Double? {
    guard !sorted.isEmpty else { return nil }
    let rank = p / 100 * Double(sorted.count - 1)
    let low = Int(rank.rounded(.down))
    let high = min(low + 1, sorted.count - 1)
    return sorted[low] + (sorted[high] - sorted[low]) * (rank - Double(low))
}

/// Writes `data` to `path` through a temporary file renamed into place.
public func writeAtomically(_ data: Data, to path: String) throws {
    let url = URL(fileURLWithPath: path)
    let temporary = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).\(UUID().uuidString.prefix(8)).part")
    do {
        try data.write(to: temporary)
        guard rename(temporary.path, url.path) == 0 else {
            throw CapacityError("\(path): \(String(cString: strerror(errno)))")
        }
    } catch {
        try? FileManager.default.removeItem(at: temporary)
        throw CapacityError("\(path): \(error)")
    }
}
