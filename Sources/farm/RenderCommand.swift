public import ArgumentParser
import FarmCoordinator
import FarmHWEncode
import FarmMedia
import Foundation
import Logging

/// `farm render`: the embedded default, a coordinator and N local node processes over loopback TCP.
struct Render: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Render a video with a coordinator and local render nodes over loopback TCP.")

    @Argument(help: "The source video.")
    var input: String

    @Option(name: .shortAndLong, help: "The output file (.mp4, .mov or .mkv).")
    var output: String

    @Option(help: "Render node processes to start.")
    var nodes = 2

    @Option(name: .customLong("node-threads"), help: "Encoder threads per node (default: cores / nodes).")
    var nodeThreads: Int?

    @Option(help: "Segments each node encodes at once.")
    var slots = 1

    @Option(help: "Video codec: h264, hevc or av1.")
    var codec: VideoCodec = .h264

    @Option(help: "Constant rate factor (default: 23 for h264, 28 for hevc, 35 for av1).")
    var crf: Int?

    @Option(help: "Encoder preset (x264 names; mapped for SVT-AV1).")
    var preset = "medium"

    @Option(name: .customLong("segment-seconds"), help: "Target segment length (default: from the length and the slots).")
    var segmentSeconds: Double?

    @Option(help: "Hardware encoders on the nodes: auto, require or off.")
    var hardware: HardwareMode = .auto

    @Option(help: "Use a running coordinator instead of local nodes: its HTTP API, HOST:PORT (the file is uploaded).")
    var coordinator: String?

    @Option(name: .customLong("data-dir"), help: "Where work files go (default: a temporary directory).")
    var dataDir: String?

    @Flag(name: .customLong("keep-work"), help: "Keep segment files in the data directory.")
    var keepWork = false

    @Flag(
        name: .customLong("insecure-plain-tcp"),
        help: "Plain TCP between the coordinator and the local nodes instead of TLS.")
    var insecurePlainTCP = false

    @Option(help: "Write the summary as JSON to this file.")
    var json: String?

    @OptionGroup var common: CommonOptions

    func validate() throws {
        guard nodes >= 1, nodes <= 64 else { throw ValidationError("--nodes must be between 1 and 64") }
        guard slots >= 1, slots <= 16 else { throw ValidationError("--slots must be between 1 and 16") }
        if let nodeThreads, nodeThreads < 0 { throw ValidationError("--node-threads must be 0 or more") }
        if let segmentSeconds, segmentSeconds <= 0 { throw ValidationError("--segment-seconds must be positive") }
        if let crf, !(0...63).contains(crf) { throw ValidationError("--crf must be between 0 and 63") }
    }

    func run() async throws {
        if let coordinator {
            // The same job through a running coordinator's API: upload, follow, download, verify there.
            let (host, port) = try parseHostPort(coordinator, what: "--coordinator")
            var arguments = [input, "--server", "http://\(host.contains(":") ? "[\(host)]" : host):\(port)", "-o", output, "--codec", codec.rawValue, "--preset", preset]
            if let crf { arguments += ["--crf", String(crf)] }
            if let segmentSeconds { arguments += ["--segment-seconds", String(segmentSeconds)] }
            let submit = try Submit.parse(arguments)
            try await submit.run()
            return
        }
        let interactive = isatty(STDERR_FILENO) == 1
        common.bootstrap(default: interactive ? .warning : .info)
        let logger = Logger(label: "farm.render")
        // Fail fast, before any process starts, on a source that is not a video.
        do {
            let info = try MediaInfo.probe(path: input)
            guard info.videoStreamIndex != nil else { fail("\(input): has no video stream") }
        } catch {
            fail("\(error)")
        }
        let cores = ProcessInfo.processInfo.activeProcessorCount
        let threads = nodeThreads ?? max(1, cores / max(nodes, 1))
        let farm = EmbeddedFarm(
            options: EmbeddedFarm.Options(
                nodes: nodes, threadsPerNode: threads, slotsPerNode: slots,
                nodeExecutable: ProcessInfo.processInfo.arguments[0].hasPrefix("/")
                    ? ProcessInfo.processInfo.arguments[0] : Self.selfExecutable(),
                dataDirectory: dataDir, nodeArguments: ["--hardware", hardware.rawValue],
                insecurePlainTCP: insecurePlainTCP, logger: logger))
        let request = JobRequest(
            source: input, output: output, codec: codec, crf: crf, preset: preset, segmentSeconds: segmentSeconds,
            keepWork: keepWork)
        let display = ProgressDisplay(interactive: interactive)
        let renderTask = Task { try await farm.render(request) { display.show($0) } }
        let interrupt = SignalWatcher(signals: [SIGINT, SIGTERM]) { renderTask.cancel() }
        defer { interrupt.stop() }
        do {
            let summary = try await renderTask.value
            display.finish()
            print(Self.describe(summary))
            if let json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
                try encoder.encode(summary).write(to: URL(fileURLWithPath: json))
            }
        } catch {
            display.finish()
            fail(renderTask.isCancelled ? "\(output): render interrupted; no output written" : "\(error)")
        }
    }

    static func selfExecutable() -> String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }

    static func describe(_ summary: EmbeddedFarm.Summary) -> String {
        let s = summary.status
        let encoders = s.encodersByNode.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ", ")
        var lines = [
            "output     \(s.output)",
            "segments   \(s.segments.count)",
            "nodes      \(summary.nodes.count) (\(encoders))",
            "frames     \(s.totalFrames) (\(String(format: "%.1f", s.sourceSeconds)) s of video)",
            "wall time  \(String(format: "%.2f", summary.wallSeconds)) s",
            "speed      \(String(format: "%.2f", summary.speed))x real time, \(String(format: "%.1f", Double(s.totalFrames) / max(summary.wallSeconds, 0.001))) fps",
        ]
        if s.fallbacks > 0 { lines.append("fallbacks  \(s.fallbacks) segment(s) re-encoded in software after a hardware failure") }
        if !s.dropped.isEmpty { lines.append("dropped    \(s.dropped.joined(separator: "; "))") }
        return lines.joined(separator: "\n")
    }
}

extension VideoCodec: ExpressibleByArgument {}
