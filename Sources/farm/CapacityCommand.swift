import ArgumentParser
import FarmCapacity
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
        let run = CapacityRun(
            tier: tier, server: server, remote: try server.map { try CapacityClient(server: $0) },
            embeddedAPI: { CapacityClient(APIClient(base: $0, token: $1)) }, executable: Self.executablePath(),
            duration: duration, clipSeconds: clipSeconds, frameRate: frameRate, codec: codec.rawValue, preset: preset,
            commandLine: Self.commandLine(), log: { Self.say($0) })
        let task = Task { try await run.measure() }
        let interrupt = SignalWatcher(signals: [SIGINT, SIGTERM]) { task.cancel() }
        defer { interrupt.stop() }
        let report: CapacityReport
        do {
            report = try await task.value
        } catch is CancellationError {
            fail("interrupted; the jobs were cancelled and the farm stopped", code: 130)
        } catch let error as CapacityError {
            fail(error.description)
        } catch let error as CapacityAPIFailure {
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

    /// This executable, which the embedded farm runs as `farm coordinator` and `farm node`.
    static func executablePath() -> String {
        if let path = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") { return path }
        return CommandLine.arguments[0]
    }

    /// The command as typed, for the report.
    static func commandLine() -> String {
        (["farm"] + CommandLine.arguments.dropFirst()).map { $0.contains(" ") ? "'\($0)'" : $0 }.joined(separator: " ")
    }
}
