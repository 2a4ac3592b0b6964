public import ArgumentParser
import FarmCoordinator
import FarmHWEncode
import FarmMedia
import FarmNode
import FarmProtocol
import Foundation
import Logging

/// `farm node`: a render node that dials a coordinator.
struct NodeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "node", abstract: "Run a render node that dials a coordinator and encodes segments.")

    @Option(help: "The coordinator's node address, HOST:PORT.")
    var coordinator: String

    @Option(help: "Segments encoded at once (default: the tier's, else 1).")
    var slots: Int?

    @Option(help: "Encoder threads per segment, 0: the encoder decides (default: the tier's, else 0).")
    var threads: Int?

    @Option(help: "Size this node for a lease tier: budget, standard or highperf (explicit flags win).")
    var tier: Tier?

    @Option(name: .customLong("token-file"), help: "File holding the join token (else FARM_JOIN_TOKEN).")
    var tokenFile: String?

    @Option(name: .customLong("node-id"), help: "This node's name (default: host name and a random suffix).")
    var nodeID: String?

    @Option(name: .customLong("work-dir"), help: "Where segment files live while they are encoded.")
    var workDir: String?

    @Flag(name: .customLong("exit-on-disconnect"), help: "Exit when the coordinator goes away instead of reconnecting.")
    var exitOnDisconnect = false

    @Option(help: "Hardware encoders: auto (hardware first, software fallback), require, or off.")
    var hardware: HardwareMode = .auto

    @Flag(inversion: .prefixedNo, help: "Measure this node's encode speed at start-up (about a second).")
    var calibrate = true

    @Flag(
        name: .customLong("insecure-plain-tcp"),
        help: "Dial the coordinator over plain TCP instead of TLS (only for a coordinator started with it).")
    var insecurePlainTCP = false

    @Option(
        name: .customLong("label"),
        help: "A node-pool label this node claims, such as trusted (repeatable; the coordinator believes claims only with --accept-node-labels).")
    var labels: [String] = []

    @Option(
        name: .customLong("coordinator-key-sha256"),
        help: "The SHA-256 of the coordinator's public key that `farm keys` printed (else FARM_COORDINATOR_KEY_SHA256); another key is refused.")
    var coordinatorKeySHA256: String?

    @OptionGroup var common: CommonOptions

    func validate() throws {
        if let slots { guard (1...64).contains(slots) else { throw ValidationError("--slots must be between 1 and 64") } }
        if let threads { guard (0...256).contains(threads) else { throw ValidationError("--threads must be between 0 and 256") } }
        if let problem = NodeLabels.problem(labels) { throw ValidationError("--label: \(problem)") }
    }

    func run() async throws {
        common.bootstrap(default: .info)
        let (host, port) = try parseHostPort(coordinator, what: "--coordinator")
        guard let token = try readSecret(environment: FarmEnvironment.current.joinToken, file: tokenFile) else {
            fail("no join token: set FARM_JOIN_TOKEN or pass --token-file")
        }
        let report = try await Offload.run("probe") { _ in HardwareProbe.run(timeout: .seconds(10)) }
        let environment = FarmEnvironment.current
        let chooser = EncoderChooser(
            report: report, mode: hardware, standIn: environment.testHardwareStandIn,
            fault: HardwareFault.fromEnvironment(environment.testHardwareFault))
        do {
            try chooser.checkStartup()
        } catch {
            fail(Self.startupFailure(error, report: report))
        }
        var pin: String?
        if let given = coordinatorKeySHA256 ?? environment.coordinatorKeySHA256 {
            guard let parsed = CoordinatorKeyPin.parse(given) else {
                fail("the coordinator key pin \(given) is not 64 hexadecimal digits (the SHA-256 that `farm keys` prints)")
            }
            guard !insecurePlainTCP else { fail("a coordinator key pin needs TLS, not --insecure-plain-tcp") }
            pin = parsed
        }
        let id = nodeID ?? "\(ProcessInfo.processInfo.hostName)-\(UUID().uuidString.prefix(6).lowercased())"
        let work = workDir ?? FileManager.default.temporaryDirectory.appendingPathComponent("farm-node-\(id)").path
        var configuration = NodeConfiguration(
            coordinatorHost: host, coordinatorPort: port, nodeID: id, joinToken: token,
            slots: slots ?? tier?.nodeSlots ?? 1, threads: threads ?? tier?.encoderThreadsPerSlot ?? 0,
            workDirectory: work, reconnect: !exitOnDisconnect,
            capabilitiesJSON: try await capabilities(report, threads: threads ?? tier?.encoderThreadsPerSlot ?? 0),
            chooser: chooser, insecurePlainTCP: insecurePlainTCP, logger: Logger(label: "farm.node"))
        configuration.coordinatorKeySHA256 = pin
        configuration.testFaults = TestFaults(switches: environment.nodeTestFaults)
        let node = RenderNode(configuration: configuration)
        let task = Task { try await node.run() }
        let signals = SignalWatcher(signals: [SIGINT, SIGTERM]) { node.drain() }
        defer { signals.stop() }
        do {
            try await task.value
        } catch {
            fail("\(error)")
        }
    }
}

extension NodeCommand {
    /// A start-up refusal on one line, then the hardware encoders the probe tried, one indented line each with
    /// why it is unavailable, so whoever started the node (`farm render` among them) can show the reason.
    static func startupFailure(_ error: any Error, report: CapabilityReport) -> String {
        let tried = report.encoders.filter { $0.kind != "software" }.map { encoder in
            "  tried \(encoder.name) (\(encoder.kind)): \(encoder.available ? "available" : encoder.reason ?? "unavailable")"
        }
        let devices = report.vaapiDevices.map { device in
            "  tried \(device.path) (VA-API device): \(device.error ?? "initialised")"
        }
        let list = devices + tried
        return (["\(error)"] + (list.isEmpty ? ["  no hardware encoder was found to try"] : list)).joined(separator: "\n")
    }
}

extension HardwareMode: ExpressibleByArgument {}
extension Tier: ExpressibleByArgument {}

extension NodeCommand {
    /// The probe report with a short calibration encode added (`"calibration": {"h264": fps at 720p}`),
    /// so the coordinator can give faster nodes more work from the start; `--no-calibrate` skips it.
    func capabilities(_ report: CapabilityReport, threads: Int) async throws -> String {
        let json = report.jsonString(pretty: false)
        guard var object = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any] else { return json }
        if !labels.isEmpty { object["labels"] = Array(Set(labels)).sorted() }
        if calibrate, let encoder = EncoderCatalog.softwareEncoder(for: .h264),
            let fps = try? await Offload.run("calibrate", { _ in
                try Calibration.framesPerSecond(encoder: encoder, preset: "medium", frames: 16, threads: max(threads, 1))
            })
        {
            object["calibration"] = ["h264": (fps * 10).rounded() / 10]
        }
        let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
        return String(decoding: data, as: UTF8.self)
    }
}
