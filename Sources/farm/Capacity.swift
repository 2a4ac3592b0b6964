import ArgumentParser
import FarmHWEncode
import FarmMedia
import FarmProtocol
import Foundation
import Logging

#if canImport(Glibc)
    import Glibc
#endif

/// `farm capacity`: what one tier of farm sustains. Generates 720p and 1080p test clips with audio,
/// submits jobs over the HTTP API at rising rates until the coordinator's scale-up signal fires, and
/// reports jobs per hour, the realtime factor, latency, memory, CPU and queue depth over time.
struct Capacity: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure what a tier sustains: jobs at rising rates until the scale-up triggers fire.",
        discussion: """
            With --embedded (the default) it starts `farm coordinator --tier T` and the tier's render node \
            (`farm node --tier T`) on loopback, pinned to the tier's CPU count, and stops them at the end. \
            With --server it loads a running coordinator, uploading the clips with each job (memory of a \
            remote farm is reported only as far as its API shows it). The run stops by itself after \
            --duration seconds of load, cancels what is left and removes its temporary files.
            """)

    @Option(help: "The tier: budget, standard or highperf.")
    var tier: Tier

    @Option(help: "Load a running coordinator's HTTP API instead (URL; FARM_API_TOKEN is sent when set).")
    var server: String?

    @Flag(help: "Start a coordinator and the tier's render node as child processes (the default).")
    var embedded = false

    @Option(help: "Seconds of load; the run stops by itself after them.")
    var duration = 180.0

    @Option(help: "Write the report as JSON to this file.")
    var json: String?

    @Option(help: "Write the report as one self-contained HTML page to this file.")
    var html: String?

    @Option(name: .customLong("clip-seconds"), help: "Length of each generated test clip.")
    var clipSeconds = 10.0

    @Option(name: .customLong("frame-rate"), help: "Frame rate of the test clips.")
    var frameRate = 30

    @Option(help: "Video codec of the jobs: h264, hevc or av1.")
    var codec: VideoCodec = .h264

    @Option(help: "Encoder preset of the jobs.")
    var preset = "medium"

    @OptionGroup var common: CommonOptions

    func validate() throws {
        if server != nil, embedded { throw ValidationError("--server and --embedded exclude each other") }
        guard duration >= 2, duration <= 86_400 else { throw ValidationError("--duration must be 2 to 86400 seconds") }
        guard clipSeconds >= 0.2, clipSeconds <= 600 else { throw ValidationError("--clip-seconds must be 0.2 to 600") }
        guard (1...120).contains(frameRate) else { throw ValidationError("--frame-rate must be 1 to 120") }
        for (flag, path) in [("--json", json), ("--html", html)] {
            guard let path else { continue }
            let directory = URL(fileURLWithPath: path).deletingLastPathComponent().path
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
                throw ValidationError("\(flag) \(path): \(directory) is not a directory")
            }
        }
    }

    func run() async throws {
        common.bootstrap(default: .warning)
        let task = Task { try await measure() }
        let interrupt = SignalWatcher(signals: [SIGINT, SIGTERM]) { task.cancel() }
        defer { interrupt.stop() }
        let report: CapacityReport
        do {
            report = try await task.value
        } catch is CancellationError {
            fail("interrupted; the jobs were cancelled and the farm stopped", code: 130)
        } catch let error as CapacityError {
            fail(error.description)
        } catch let error as APIClient.Failure {
            fail(error.description)
        } catch let error as MediaError {
            fail(error.description)
        }
        do {
            if let json { try writeAtomically(try report.json(), to: json) }
            if let html { try writeAtomically(Data(CapacityHTML.render(report).utf8), to: html) }
        } catch {
            fail("\(error)")
        }
        print(report.summary())
    }

    static func say(_ text: String) {
        FileHandle.standardError.write(Data("capacity: \(text)\n".utf8))
    }

    /// Prepares clips (and the farm), runs the load, and always cleans up after itself.
    func measure() async throws -> CapacityReport {
        let started = Date()
        let loadAverage = CapacityReport.Machine.loadAverage()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("farm-capacity-\(UUID().uuidString.prefix(8))")
        let clipDirectory = directory.appendingPathComponent("clips")
        try FileManager.default.createDirectory(at: clipDirectory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }

        var farm: CapacityFarm?
        let client: APIClient
        if let server {
            var options = ServerOptions()
            options.server = server
            client = try options.client()
        } else {
            Self.say("starting farm coordinator --tier \(tier.rawValue) and farm node --tier \(tier.rawValue)")
            let started = try await CapacityFarm.start(
                tier: tier, executable: Self.executablePath(), directory: directory, sourceRoot: clipDirectory.path)
            farm = started
            client = APIClient(base: started.baseURL, token: started.apiToken)
        }
        do {
            try await waitUntilReady(client, farm: farm)
            let specs = [("720p", 1280, 720), ("1080p", 1920, 1080)]
            var clips: [CapacityLoad.Clip] = []
            for (label, width, height) in specs {
                let path = clipDirectory.appendingPathComponent("clip-\(label).mp4").path
                Self.say("generating a \(String(format: "%g", clipSeconds)) s \(label) clip with audio")
                let clip = SyntheticClip(width: width, height: height, seconds: clipSeconds, frameRate: frameRate)
                try await Offload.run("test clip") { flag in try clip.write(to: path) { flag.isCancelled } }
                clips.append(CapacityLoad.Clip(label: label, path: path, seconds: Double(clip.frames) / Double(frameRate)))
            }

            let load = CapacityLoad(
                client: client, clips: clips, submission: farm == nil ? .upload : .path, codec: codec.rawValue, preset: preset,
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
                log: { Self.say($0) })
            Self.say(String(format: "load for up to %.0f s", duration))
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
    func waitUntilReady(_ client: APIClient, farm: CapacityFarm?) async throws {
        struct Ready: Decodable { var nodes: Int }
        // Local children get time to start; a remote coordinator either answers soon or is not there.
        let limit = farm == nil ? 10 : 60
        let deadline = ContinuousClock.now + .seconds(limit)
        var last = "no answer"
        while ContinuousClock.now < deadline {
            if let farm, let child = farm.exitedChild {
                throw CapacityError("\(child.name) exited at start: \(farm.logTail(child.name))")
            }
            do {
                let ready = try await client.json(Ready.self, "GET", "/ready")
                if ready.nodes > 0 { return }
                last = "no render node has joined"
            } catch let error as APIClient.Failure {
                last = error.description
            }
            try await Task.sleep(for: .milliseconds(200))
        }
        throw CapacityError("the coordinator was not ready within \(limit) s: \(last)")
    }

    /// This executable, which the embedded farm runs as `farm coordinator` and `farm node`.
    static func executablePath() -> String {
        if let path = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") { return path }
        return CommandLine.arguments[0]
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
            startedAt: ISO8601DateFormatter().string(from: started), command: Self.commandLine(), durationSeconds: duration,
            elapsedSeconds: elapsed,
            clips: clips.enumerated().map { i, clip in
                let (w, h) = i == 0 ? (1280, 720) : (1920, 1080)
                return CapacityReport.Clip(label: clip.label, width: w, height: h, seconds: clip.seconds, frameRate: frameRate)
            },
            codec: codec.rawValue, preset: preset, jobsSubmitted: record.jobs.count, jobsCompleted: done.count,
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

    /// The command as typed, for the report.
    static func commandLine() -> String {
        (["farm"] + CommandLine.arguments.dropFirst()).map { $0.contains(" ") ? "'\($0)'" : $0 }.joined(separator: " ")
    }
}
