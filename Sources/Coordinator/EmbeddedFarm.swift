internal import FarmChildProcess
internal import FarmHWEncode
internal import FarmMedia
internal import Foundation
public import Logging

/// The embedded default: a coordinator in this process and N `farm node` child processes that
/// speak the real protocol over loopback TCP, with TLS (a certificate made in memory) unless plain TCP is asked for.
/// The same path as a farm spread over machines.
public struct EmbeddedFarm: Sendable {
    public struct Options: Sendable {
        public var nodes: Int
        public var threadsPerNode: Int
        public var slotsPerNode: Int
        /// The `farm` executable that runs `farm node`.
        public var nodeExecutable: String
        /// Work files; a temporary directory when nil (removed afterwards).
        public var dataDirectory: String?
        /// Extra environment for the nodes (fault injection in tests, for example).
        public var nodeEnvironment: [String: String]
        /// Extra arguments for `farm node` (`--hardware off`, for example).
        public var nodeArguments: [String]
        /// Plain TCP between the coordinator and its nodes instead of TLS (`--insecure-plain-tcp`).
        public var insecurePlainTCP: Bool
        public var logger: Logger

        public init(
            nodes: Int = 2, threadsPerNode: Int = 1, slotsPerNode: Int = 1, nodeExecutable: String,
            dataDirectory: String? = nil, nodeEnvironment: [String: String] = [:], nodeArguments: [String] = [],
            insecurePlainTCP: Bool = false, logger: Logger = Logger(label: "farm.render")
        ) {
            self.insecurePlainTCP = insecurePlainTCP
            self.nodes = nodes
            self.threadsPerNode = threadsPerNode
            self.slotsPerNode = slotsPerNode
            self.nodeExecutable = nodeExecutable
            self.dataDirectory = dataDirectory
            self.nodeEnvironment = nodeEnvironment
            self.nodeArguments = nodeArguments
            self.logger = logger
        }
    }

    /// What a render did.
    public struct Summary: Sendable, Codable {
        public var status: JobStatus
        public var nodes: [String]
        public var wallSeconds: Double
        public var speed: Double
        /// CPU seconds (user + system) of this process, the coordinator: it never encodes.
        public var coordinatorCPUSeconds: Double
        /// Peak resident memory of this process.
        public var coordinatorPeakRSSMB: Double
    }

    public let options: Options

    public init(options: Options) { self.options = options }

    /// Renders one job; `progress` is called about twice a second with the job's status.
    /// Throws `CoordinatorError.jobFailed` with the job's reason when it does not finish.
    public func render(_ request: JobRequest, progress: @escaping @Sendable (JobStatus) -> Void = { _ in }) async throws
        -> Summary
    {
        let started = ContinuousClock.now
        let fileManager = FileManager.default
        let ownsData = options.dataDirectory == nil
        let dataDirectory =
            options.dataDirectory
            ?? fileManager.temporaryDirectory.appendingPathComponent("farm-render-\(UUID().uuidString.prefix(8))").path
        try fileManager.createDirectory(atPath: dataDirectory, withIntermediateDirectories: true)
        defer { if ownsData { try? fileManager.removeItem(atPath: dataDirectory) } }

        let token = Self.randomToken()
        var request = request
        request.expectedSlots = request.expectedSlots ?? options.nodes * options.slotsPerNode
        var configuration = CoordinatorConfiguration(
            nodeListenHost: "127.0.0.1", nodeListenPort: 0, dataDirectory: dataDirectory, joinToken: token,
            coordinatorID: "embedded",
            nodeSecurity: options.insecurePlainTCP ? .insecurePlainTCP : .tlsEphemeralCertificate,
            logger: options.logger)
        // The local nodes encode on every core: the coordinator's checks get half of them, so that two checks at
        // once do not hold two pairs of decoders beside the nodes on a small machine.
        configuration.workThreads = max(1, ProcessInfo.processInfo.activeProcessorCount / 2)
        let coordinator = Coordinator(configuration: configuration)
        let listener = try await coordinator.bind()
        // With a data directory of its own, the same command resumes a render a crash interrupted.
        try await coordinator.open()
        let id: String
        if let unfinished = await coordinator.unfinishedJob(source: request.source, output: request.output) {
            id = unfinished
        } else {
            id = try await coordinator.submit(request)
        }
        let nodes = try await startNodes(port: listener.port, token: token, dataDirectory: dataDirectory)

        let status: JobStatus
        do {
            status = try await withThrowingTaskGroup(of: JobStatus?.self) { group in
                group.addTask {
                    try await coordinator.run(listener)
                    return nil
                }
                group.addTask {
                    while !Task.isCancelled {
                        if let status = await coordinator.status(id) {
                            progress(status)
                            if status.state.isFinished { break }
                        }
                        try? await Task.sleep(for: .milliseconds(500))
                    }
                    return nil
                }
                group.addTask {
                    // Every node exiting before the job ends means nothing can finish it: the nodes' own reasons
                    // become the job's, since their logs go with a temporary data directory.
                    for node in nodes { guard await node.exitUnlessCancelled() != nil else { return nil } }
                    try? await coordinator.cancel(id, reason: Self.exitReason(nodes))
                    return nil
                }
                group.addTask {
                    // On interruption the coordinator stops without ending the job: with a data directory
                    // of its own, running the same command again resumes it.
                    try await coordinator.waitForCompletion(id)
                }
                var final: JobStatus?
                while let next = try await group.next() {
                    if let next {
                        final = next
                        break
                    }
                }
                await coordinator.drainNodes()
                await Self.waitForExit(nodes, timeout: .seconds(10))
                group.cancelAll()
                return final!
            }
        } catch {
            await Self.waitForExit(nodes, timeout: .seconds(0))
            throw error
        }
        progress(status)
        let wall = (ContinuousClock.now - started)
        let wallSeconds = wall.seconds
        guard status.state == .done else {
            throw CoordinatorError(.jobFailed, status.error ?? "job \(status.state.rawValue)")
        }
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        let cpu =
            Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6 + Double(usage.ru_stime.tv_sec)
            + Double(usage.ru_stime.tv_usec) / 1e6
        return Summary(
            status: status, nodes: (0..<options.nodes).map { "node-\($0)" }, wallSeconds: wallSeconds,
            speed: wallSeconds > 0 ? status.sourceSeconds / wallSeconds : 0, coordinatorCPUSeconds: cpu,
            coordinatorPeakRSSMB: Double(usage.ru_maxrss) / 1024)
    }

    private func startNodes(port: Int, token: String, dataDirectory: String) async throws -> [ChildProcess] {
        var environment: [String: String?] = options.nodeEnvironment
        environment["FARM_JOIN_TOKEN"] = token
        var nodes: [ChildProcess] = []
        do {
            for i in 0..<options.nodes {
                let arguments =
                    [
                        "node", "--coordinator", "127.0.0.1:\(port)", "--slots", String(options.slotsPerNode),
                        "--threads", String(options.threadsPerNode), "--node-id", "node-\(i)", "--work-dir",
                        "\(dataDirectory)/node-\(i)", "--exit-on-disconnect",
                        // Local nodes share one machine: a calibration encode would only delay the start.
                        "--no-calibrate",
                    ] + (options.insecurePlainTCP ? ["--insecure-plain-tcp"] : []) + options.nodeArguments
                nodes.append(
                    try await ChildProcess.start(
                        name: "node-\(i)", executable: options.nodeExecutable, arguments: arguments,
                        environment: environment, log: "\(dataDirectory)/node-\(i).log", grace: .seconds(3)))
            }
        } catch {
            await nodes.stopAll(grace: .seconds(3))
            throw error
        }
        return nodes
    }

    /// Waits up to `timeout` for the nodes to exit by themselves (they were asked to drain), then stops the rest:
    /// SIGTERM, 3 s, SIGKILL.
    private static func waitForExit(_ nodes: [ChildProcess], timeout: Duration) async {
        await withTaskGroup(of: Void.self) { group in
            for node in nodes {
                group.addTask {
                    if await node.wait(timeout: timeout) == nil { await node.stop(grace: .seconds(3)) }
                }
            }
        }
    }

    /// Why every node exited, from what each wrote last: "node-0 exited with status 1: REASON", one line per
    /// distinct reason, followed by the indented lines the node printed under it (for `--hardware require`,
    /// the encoders it tried and why each is unavailable).
    static func exitReason(_ nodes: [ChildProcess]) -> String {
        var order: [String] = []
        var names: [String: [String]] = [:]
        for node in nodes {
            let reason = "\(node.exit?.description ?? "exited"): " + lastError(node.lastLines())
            if names[reason] == nil { order.append(reason) }
            names[reason, default: []].append(node.name)
        }
        let lines = order.map { reason in
            let who = names[reason, default: []].joined(separator: ", ")
            return "\(who) \(reason)"
        }
        return "every render node exited: " + lines.joined(separator: "\n")
    }

    /// The last line of `lines` that reports an error (without the "farm: error: " prefix), with the indented
    /// lines after it; the last line when none says "error"; "no output" when there is none.
    static func lastError(_ lines: [String]) -> String {
        guard let index = lines.lastIndex(where: { $0.contains("error") }) else { return lines.last ?? "no output" }
        var line = Substring(lines[index])
        if let range = line.range(of: "error: ") { line = line[range.upperBound...] }
        let details = lines[(index + 1)...].prefix { $0.hasPrefix(" ") }
        return ([String(line)] + details).joined(separator: "\n")
    }

    /// 32 random bytes in hex: a join or API token made for one run.
    public static func randomToken() -> String {
        var generator = SystemRandomNumberGenerator()
        return (0..<32).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &generator)) }.joined()
    }
}
