import FarmChildProcess
import Foundation

/// A `farm coordinator` process whose HTTP API and node port listen where the system chose (port 0 unless a test
/// gives ports, as a restart on the same ports does): the ports are read back from its "coordinator listening for
/// nodes" and "http listening" log lines. Every test that starts coordinators goes through it.
public struct TestCoordinator: ProcessFixture, Sendable {
    public let process: ChildProcess
    public let log: String
    public let nodeHost: String
    public let nodePort: Int
    public let httpPort: Int

    /// The HTTP API's base URL.
    public var base: String { "http://127.0.0.1:\(httpPort)" }
    /// The node address, HOST:PORT, for `farm node --coordinator`.
    public var nodeAddress: String { "\(nodeHost):\(nodePort)" }
    /// Everything it logged so far.
    public var text: String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }
    public var isRunning: Bool { process.isRunning }

    /// Starts `farm coordinator --http 127.0.0.1:HTTP --node-listen NODEHOST:NODE --data-dir DATA ARGUMENTS` and waits
    /// until both ports listen; throws with its log when it exits or does not listen within `timeout` seconds.
    public static func start(
        data: String, log: String, httpPort: Int = 0, nodeHost: String = "127.0.0.1", nodePort: Int = 0,
        arguments: [String] = [], environment: [String: String], timeout: Double = 30
    ) async throws -> TestCoordinator {
        let process = try await FarmBinary.start(
            [
                "coordinator", "--http", "127.0.0.1:\(httpPort)", "--node-listen", "\(nodeHost):\(nodePort)",
                "--data-dir", data,
            ] + arguments, environment: environment, log: log, name: "coordinator")
        async let nodeLine = process.line(containing: "coordinator listening for nodes", timeout: .seconds(timeout))
        async let httpLine = process.line(containing: "http listening", timeout: .seconds(timeout))
        guard let node = await nodeLine.flatMap(Self.port(in:)), let http = await httpLine.flatMap(Self.port(in:)) else {
            await process.stop()
            let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            throw TestFailure("the coordinator did not start: \(text.suffix(2000))")
        }
        return TestCoordinator(process: process, log: log, nodeHost: nodeHost, nodePort: node, httpPort: http)
    }

    /// The port in `address=HOST:PORT` on a log line.
    public static func port(in line: String) -> Int? {
        guard let range = line.range(of: #"address=[^ ]*:(\d+)"#, options: .regularExpression) else { return nil }
        return Int(line[range].split(separator: ":").last ?? "")
    }

    /// SIGTERM, then SIGKILL after 30 s.
    public func stop() async { await process.stop() }
}

/// A `farm node` process dialling a test coordinator.
public enum TestNode {
    /// Starts `PREFIX farm node --coordinator ADDRESS --node-id ID ARGUMENTS` with its output appended to `log`
    /// (a node started again under the same name keeps one log). `prefix` runs it through another command
    /// (`ip netns exec NAME`).
    public static func start(
        coordinator address: String, id: String, log: String, arguments: [String] = [],
        environment: [String: String] = [:], prefix: [String] = []
    ) async throws -> ChildProcess {
        // A node's default work directory is named after its id in the system's temporary directory,
        // and a second node on one work directory is refused: tests that run at once under the same
        // node name each get one of their own, beside their log.
        let work =
            arguments.contains("--work-dir")
            ? [] : ["--work-dir", (log as NSString).deletingLastPathComponent + "/node-work-\(id)"]
        var command = prefix + [FarmBinary.path, "node", "--coordinator", address, "--node-id", id] + work + arguments
        if !command[0].hasPrefix("/") { command.insert("/usr/bin/env", at: 0) }
        return try await ChildProcess.start(
            name: id, executable: command[0], arguments: Array(command.dropFirst()), environment: environment, log: log,
            grace: .seconds(30))
    }
}
