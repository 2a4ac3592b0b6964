public import FarmProtocol
import FarmCoordinator
import FarmMedia
public import Foundation

/// One `farm capacity` run: prepares the clips (and, embedded, the farm), runs the load and builds the report.
/// The command only parses its options into this.
public struct CapacityRun: Sendable {
    public var tier: Tier
    /// The running coordinator's HTTP API under load, when given (`--server`); else the run starts its own farm.
    public var server: String?
    /// The client for `server`.
    public var remote: (any CapacityAPI)?
    /// The client for the embedded farm's API, from its URL and token.
    public var embeddedAPI: @Sendable (URL, String) -> any CapacityAPI
    /// The `farm` executable the embedded farm runs as `farm coordinator` and `farm node`.
    public var executable: String
    public var duration: Double
    public var clipSeconds: Double
    public var frameRate: Int
    public var codec: String
    public var preset: String
    /// The command as typed, for the report.
    public var commandLine: String
    /// Progress lines for the user.
    public var log: @Sendable (String) -> Void

    public init(
        tier: Tier, server: String?, remote: (any CapacityAPI)?, embeddedAPI: @escaping @Sendable (URL, String) -> any CapacityAPI,
        executable: String, duration: Double, clipSeconds: Double, frameRate: Int, codec: String, preset: String,
        commandLine: String, log: @escaping @Sendable (String) -> Void
    ) {
        self.tier = tier
        self.server = server
        self.remote = remote
        self.embeddedAPI = embeddedAPI
        self.executable = executable
        self.duration = duration
        self.clipSeconds = clipSeconds
        self.frameRate = frameRate
        self.codec = codec
        self.preset = preset
        self.commandLine = commandLine
        self.log = log
    }

    /// Prepares clips (and the farm), runs the load, and always cleans up after itself.
    public func measure() async throws -> CapacityReport {
        let started = Date()
        let loadAverage = CapacityReport.Machine.loadAverage()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("farm-capacity-\(UUID().uuidString.prefix(8))")
        let clipDirectory = directory.appendingPathComponent("clips")
        try FileManager.default.createDirectory(at: clipDirectory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }

        var farm: CapacityFarm?
        let client: any CapacityAPI
        if let remote {
            client = remote
        } else {
            log("starting farm coordinator --tier \(tier.rawValue) and farm node --tier \(tier.rawValue)")
            let started = try await CapacityFarm.start(
                tier: tier, executable: executable, directory: directory, sourceRoot: clipDirectory.path)
            farm = started
            client = embeddedAPI(started.baseURL, started.apiToken)
        }
        do {
            try await waitUntilReady(client, farm: farm)
            let specs = [("720p", 1280, 720), ("1080p", 1920, 1080)]
            var clips: [CapacityLoad.Clip] = []
            for (label, width, height) in specs {
                let path = clipDirectory.appendingPathComponent("clip-\(label).mp4").path
                log("generating a \(String(format: "%g", clipSeconds)) s \(label) clip with audio")
                let clip = SyntheticClip(width: width, height: height, seconds: clipSeconds, frameRate: frameRate)
                try await Offload.run("test clip") { flag in try clip.write(to: path) { flag.isCancelled } }
                clips.append(CapacityLoad.Clip(label: label, path: path, seconds: Double(clip.frames) / Double(frameRate)))
            }

            let load = CapacityLoad(
                api: client, clips: clips, submission: farm == nil ? .upload : .path, codec: codec, preset: preset,
                duration: duration,
                sampleProcesses: { [farm] in
                    farm?.reconfine()
                    return farm?.sample() ?? [:]
                },
                checkAlive: { [farm] in
                    if let farm, let child = farm.exitedChild {
                        throw CapacityError("\(child.name) exited: \(farm.logTail(child.name))")
                    }
                },
                log: log)
            log(String(format: "load for up to %.0f s", duration))
            let record = try await load.run()
            await Self.stop(farm)
            let machine = CapacityReport.Machine(
                cpus: CPUAffinity.allowedCores().count, loadAverageStart: loadAverage, loadAverageEnd: CapacityReport.Machine.loadAverage())
            return makeReport(record, started: started, machine: machine, clips: clips, confinement: farm?.confinement)
        } catch {
            await Self.stop(farm)
            throw error
        }
    }

    /// Stops the children in a task of its own: an interrupted run still waits for them to exit.
    static func stop(_ farm: CapacityFarm?) async {
        guard let farm else { return }
        await Task { await farm.stop() }.value
    }

    /// Waits until the coordinator answers and has at least one render node.
    func waitUntilReady(_ client: any CapacityAPI, farm: CapacityFarm?) async throws {
        // Local children get time to start; a remote coordinator either answers soon or is not there.
        let limit = farm == nil ? 10 : 60
        let deadline = ContinuousClock.now + .seconds(limit)
        var last = "no answer"
        while ContinuousClock.now < deadline {
            if let farm, let child = farm.exitedChild {
                throw CapacityError("\(child.name) exited at start: \(farm.logTail(child.name))")
            }
            do {
                if try await client.readyNodes() > 0 { return }
                last = "no render node has joined"
            } catch let error as CapacityAPIFailure {
                last = error.description
            }
            try await Task.sleep(for: .milliseconds(200))
        }
        throw CapacityError("the coordinator was not ready within \(limit) s: \(last)")
    }

    func makeReport(_ record: LoadRecord, started: Date, machine: CapacityReport.Machine, clips: [CapacityLoad.Clip], confinement: CapacityReport.Confinement?)
        -> CapacityReport
    {
        let done = record.jobs.filter { $0.state == "done" }
        let latencies = done.compactMap(\.latencySeconds).sorted()
        let waits = record.jobs.compactMap(\.waitSeconds).sorted()

        // Throughput while jobs were waiting is the farm's capacity; before that it is the offered load.
        let completions = done.compactMap { job in job.finishedAt.map { ($0, job.sourceSeconds) } }.sorted { $0.0 < $1.0 }
        // Saturated: a job waited and every slot was encoding.
        let saturatedTimes = record.samples.filter { $0.queueDepth > 0 && $0.slots > 0 && $0.slotsInUse >= $0.slots }.map(\.t)
        var jobsPerHour = 0.0
        var realtime = 0.0
        var basis = "whole run"
        if let from = saturatedTimes.first, let to = saturatedTimes.last {
            let inside = completions.filter { $0.0 >= from && $0.0 <= to + 1 }
            if inside.count >= 3, let first = inside.first, let last = inside.last, last.0 > first.0 {
                let span = last.0 - first.0
                jobsPerHour = Double(inside.count - 1) * 3600 / span
                realtime = inside.dropFirst().reduce(0) { $0 + $1.1 } / span
                basis = "saturated"
            }
        }
        if basis != "saturated", let last = completions.last, last.0 > 0 {
            jobsPerHour = Double(completions.count) * 3600 / last.0
            realtime = completions.reduce(0) { $0 + $1.1 } / last.0
        }

        var notes: [String] = confinement?.notes ?? []
        if let estimate = record.pilotEstimate, let seconds = record.pilotSeconds {
            notes.append(String(format: "pilot: one job of each clip took %.1f s on the idle farm; the ramp started at %.0f jobs/hour", seconds, estimate / 2))
        }
        if record.scaleUp == nil {
            notes.append(String(format: "the scale-up triggers did not fire within %.0f s; raise --duration", duration))
        }
        if basis != "saturated" {
            notes.append("too few jobs finished while others waited to measure the saturated rate: jobs per hour is over the whole run")
        }
        if server == nil, let load = [machine.loadAverageStart, machine.loadAverageEnd].compactMap({ $0 }).max(),
            load > Double(machine.cpus)
        {
            notes.append(
                String(format: "the machine was shared: its load average reached %.1f on %d cores, so the farm got less CPU than it was allowed and the figures are low", load, machine.cpus))
        }
        if record.rejected > 0 {
            notes.append("the coordinator refused \(record.rejected) job(s) with a full queue")
        }
        var peak = record.peakRSS
        if server != nil {
            if let rss = record.coordinatorRSSFromMetrics {
                peak = ["coordinator": rss]
                notes.append("memory of the remote coordinator is its resident size as /metrics showed it; the nodes' is unknown")
            } else {
                notes.append("memory and CPU of a remote farm are unknown: its API does not expose them")
            }
        }
        let elapsed = max(record.elapsedSeconds, 0.001)
        let cpuSeconds = record.cpuSeconds.mapValues { max($0.last - $0.first, 0) }
        let allowedCores = Set((confinement?.nodeCores ?? []) + (confinement?.coordinatorCores ?? [])).count
        let slotShares = record.samples.filter { $0.slots > 0 }.map { Double($0.slotsInUse) / Double($0.slots) }
        return CapacityReport(
            tier: tier.rawValue, mode: server == nil ? "embedded" : "server", machine: machine, server: server,
            startedAt: ISO8601DateFormatter().string(from: started), command: commandLine, durationSeconds: duration,
            elapsedSeconds: elapsed,
            clips: clips.enumerated().map { i, clip in
                let (w, h) = i == 0 ? (1280, 720) : (1920, 1080)
                return CapacityReport.Clip(label: clip.label, width: w, height: h, seconds: clip.seconds, frameRate: frameRate)
            },
            codec: codec, preset: preset, jobsSubmitted: record.jobs.count, jobsCompleted: done.count,
            jobsFailed: record.jobs.filter { $0.state == "failed" }.count,
            jobsCancelled: record.jobs.filter { $0.state == "cancelled" }.count, jobsRejected: record.rejected,
            jobsPerHour: jobsPerHour, jobsPerHourBasis: basis, realtimeFactor: realtime,
            videoSecondsCompleted: done.reduce(0) { $0 + $1.sourceSeconds },
            latencyP50: percentile(latencies, 50), latencyP95: percentile(latencies, 95), latencyMax: latencies.last,
            waitP50: percentile(waits, 50), waitP95: percentile(waits, 95),
            peakRSSMB: peak.isEmpty ? nil : peak.values.reduce(0, +), peakRSSMBByProcess: peak,
            cpu: CapacityReport.CPU(
                secondsByProcess: cpuSeconds.mapValues { CapacityReport.round($0, 2) },
                meanCoresByProcess: cpuSeconds.mapValues { CapacityReport.round($0 / elapsed, 2) },
                utilisation: allowedCores > 0 && !cpuSeconds.isEmpty
                    ? CapacityReport.round(cpuSeconds.values.reduce(0, +) / (elapsed * Double(allowedCores)), 3) : nil,
                slotUtilisation: slotShares.isEmpty ? nil : CapacityReport.round(slotShares.reduce(0, +) / Double(slotShares.count), 3)),
            scaleUpAtJobsPerHour: record.scaleUp?.offeredJobsPerHour, scaleUp: record.scaleUp,
            maxOfferedJobsPerHour: record.maxOffered, confinement: confinement, notes: notes, jobs: record.jobs,
            timeline: record.samples)
    }
}
