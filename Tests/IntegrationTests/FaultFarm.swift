import FarmChildProcess
import FarmTestSupport
import Foundation
import Testing

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// The reliability suites (FaultTests, NetworkFaultTests, LoadTests) run one after another: each starts a farm
/// of several processes, and together they would starve each other and the rest of the suite on 2 cores.
@Suite(.serialized, .heavy) enum Reliability {}

/// A `farm coordinator` and `farm node`s as real processes, for the fault and load tests: each node gets its
/// own environment (the `FARM_TEST_` switches) and may run inside a network namespace; any process can be
/// killed; the coordinator can be restarted on the same ports and data directory.
final class FaultFarm: ProcessFixture, @unchecked Sendable {
    let directory: URL
    /// The only source root: clips for path submissions go here.
    let sources: String
    let data: String
    /// The ports the system chose at the first start; a restart keeps them (the nodes dial the same one).
    private(set) var httpPort = 0
    private(set) var nodePort = 0
    /// The address the coordinator listens on for nodes (loopback unless a test gives a namespace's address).
    let nodeHost: String
    let coordinatorArguments: [String]
    let token = "fault-test-token-long-enough-for-the-coordinator"
    /// `FARM_API_TOKEN` of the coordinator, sent as a bearer token by `call`.
    let apiToken: String?
    private(set) var coordinator: ChildProcess?
    private(set) var coordinatorRuns = 0
    private(set) var nodes: [String: ChildProcess] = [:]
    let session: URLSession

    var base: String { "http://127.0.0.1:\(httpPort)" }

    init(_ name: String, nodeHost: String = "127.0.0.1", coordinatorArguments: [String] = [], apiToken: String? = "fault-api-token-long-enough-for-the-coordinator") throws {
        directory = try TestMedia.temporaryDirectory(name)
        sources = directory.appendingPathComponent("sources").path
        data = directory.appendingPathComponent("data").path
        try FileManager.default.createDirectory(atPath: sources, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
        self.nodeHost = nodeHost
        self.coordinatorArguments = coordinatorArguments
        self.apiToken = apiToken
        let configuration = URLSessionConfiguration.ephemeral
        configuration.httpMaximumConnectionsPerHost = 32
        configuration.timeoutIntervalForRequest = 30
        session = URLSession(configuration: configuration)
    }

    // MARK: - Processes

    func coordinatorLog(_ run: Int? = nil) -> String { directory.appendingPathComponent("coordinator-\(run ?? coordinatorRuns).log").path }
    func nodeLog(_ id: String) -> String { directory.appendingPathComponent("node-\(id).log").path }
    /// Each node's own work directory: node names repeat across tests that run at once.
    func workDirectory(_ id: String) -> String { directory.appendingPathComponent("work-\(id)").path }

    /// Starts (or restarts) the coordinator and waits until its HTTP API and node port listen: the first time on
    /// ports the system chooses, afterwards on the same ones.
    func startCoordinator() async throws {
        coordinatorRuns += 1
        var environment = ["FARM_JOIN_TOKEN": token]
        if let apiToken { environment["FARM_API_TOKEN"] = apiToken }
        let started = try await TestCoordinator.start(
            data: data, log: coordinatorLog(), httpPort: httpPort, nodeHost: nodeHost, nodePort: nodePort,
            arguments: ["--source-root", sources, "--min-free-gib", "0", "--log-level", "info"] + coordinatorArguments,
            environment: environment)
        coordinator = started.process
        (httpPort, nodePort) = (started.httpPort, started.nodePort)
    }

    /// Starts a node; `prefix` runs it through another command (`ip netns exec NAME`).
    func startNode(_ id: String, environment: [String: String] = [:], prefix: [String] = [], arguments: [String] = []) async throws {
        nodes[id] = try await TestNode.start(
            coordinator: "\(nodeHost):\(nodePort)", id: id, log: nodeLog(id),
            arguments: ["--log-level", "info", "--no-calibrate", "--work-dir", workDirectory(id)] + arguments,
            environment: ["FARM_JOIN_TOKEN": token].merging(environment) { $1 }, prefix: prefix)
    }

    /// Waits until `count` nodes have joined the current coordinator run.
    func waitForNodes(_ count: Int, timeout: Double = 30) async throws {
        let joined = await FarmBinary.waitUntil(timeout: timeout) {
            Self.read(self.coordinatorLog()).components(separatedBy: "node joined").count - 1 >= count
        }
        guard joined else {
            throw TestFailure(
                "\(count) nodes did not join: \(Self.read(coordinatorLog()).suffix(1500)) "
                    + nodes.keys.map { "\($0): \(Self.read(nodeLog($0)).suffix(800))" }.joined(separator: " "))
        }
    }

    /// Sends SIGKILL to node `id` as soon as `condition` holds, or after `timeout` seconds; returns whether
    /// `condition` held. The watching and the kill are off the concurrency pool (`FarmBinary.kill(_:when:timeout:)`).
    func kill(node id: String, timeout: Double, when condition: @escaping @Sendable () -> Bool) async -> Bool {
        guard let process = nodes[id] else { return false }
        return await FarmBinary.kill(process, when: condition, timeout: timeout)
    }

    /// The same for the coordinator.
    func killCoordinator(timeout: Double, when condition: @escaping @Sendable () -> Bool) async -> Bool {
        guard let coordinator else { return false }
        return await FarmBinary.kill(coordinator, when: condition, timeout: timeout)
    }

    /// Stops the coordinator gracefully (SIGTERM) and waits for it.
    func terminateCoordinator() async {
        guard let coordinator else { return }
        await FarmBinary.stop([coordinator])
    }

    /// Ends every process this farm started (SIGKILL for one still running 10 s after SIGTERM); the directory
    /// stays for `remove()`.
    func stop() async {
        await FarmBinary.stop(Array(nodes.values), timeout: 10)
        if let coordinator { await FarmBinary.stop([coordinator], timeout: 10) }
        session.invalidateAndCancel()
    }

    func remove() { try? FileManager.default.removeItem(at: directory) }

    static func read(_ path: String) -> String { (try? String(contentsOfFile: path, encoding: .utf8)) ?? "" }

    static func count(_ needle: String, in path: String) -> Int { read(path).components(separatedBy: needle).count - 1 }

    /// Everything the farm logged, for failure messages.
    func logs() -> String {
        var text = ""
        for run in 1...max(coordinatorRuns, 1) { text += "--- coordinator \(run):\n\(Self.read(coordinatorLog(run)).suffix(3000))\n" }
        for id in nodes.keys.sorted() { text += "--- node \(id):\n\(Self.read(nodeLog(id)).suffix(2000))\n" }
        return text
    }

    // MARK: - HTTP

    /// One request; the reply's status and body.
    func call(_ method: String, _ path: String, json: String? = nil) async throws -> (Int, Data) {
        var request = URLRequest(url: URL(string: base + path)!)
        request.httpMethod = method
        if let json {
            request.httpBody = Data(json.utf8)
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        }
        if let apiToken { request.setValue("Bearer \(apiToken)", forHTTPHeaderField: "Authorization") }
        let (body, response) = try await session.data(for: request)
        return ((response as? HTTPURLResponse)?.statusCode ?? 0, body)
    }

    func object(_ method: String, _ path: String, json: String? = nil) async throws -> (Int, [String: Any]) {
        let (status, body) = try await call(method, path, json: json)
        let object = try JSONSerialization.jsonObject(with: body) as? [String: Any]
        return (status, try #require(object, "\(method) \(path): \(String(decoding: body, as: UTF8.self))"))
    }

    /// Submits a clip under the source root; returns the job id.
    func submit(_ clip: String, _ fields: String = "") async throws -> String {
        let (status, reply) = try await object("POST", "/jobs", json: #"{"source": "\#(clip)"\#(fields.isEmpty ? "" : ", " + fields)}"#)
        guard status == 201, let id = reply["id"] as? String else { throw TestFailure("POST /jobs answered \(status): \(reply)") }
        return id
    }

    /// Polls the job until `condition` holds or `timeout` passes; returns the last status seen.
    func waitForJob(_ id: String, timeout: Double, until condition: ([String: Any]) -> Bool) async throws -> [String: Any] {
        let deadline = Date().addingTimeInterval(timeout)
        var job: [String: Any] = [:]
        while Date() < deadline {
            if let (status, reply) = try? await object("GET", "/jobs/\(id)"), status == 200 {
                job = reply
                if condition(job) { return job }
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        return job
    }

    func waitForEnd(_ id: String, timeout: Double = 90) async throws -> [String: Any] {
        try await waitForJob(id, timeout: timeout) { ["done", "failed", "cancelled"].contains($0["state"] as? String ?? "") }
    }

    /// Downloads a done job's output and checks it frame for frame against the source with ffprobe, and that
    /// it decodes without an error.
    func expectExactOutput(_ id: String, source: String, sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let (status, body) = try await call("GET", "/jobs/\(id)/output")
        #expect(status == 200, "GET /jobs/\(id)/output answered \(status)", sourceLocation: sourceLocation)
        let output = directory.appendingPathComponent("\(id).mp4")
        try body.write(to: output)
        #expect(try TestMedia.frameSeconds(output.path) == TestMedia.frameSeconds(source), sourceLocation: sourceLocation)
        try TestMedia.decodesCleanly(output.path)
    }

    static func segments(_ job: [String: Any]) -> [[String: Any]] { job["segments"] as? [[String: Any]] ?? [] }
}

/// The value of `key=value` in a log line (swift-log's text handler writes metadata that way).
func logValue(_ key: String, in line: Substring) -> String? {
    guard let range = line.range(of: "\(key)=") else { return nil }
    return line[range.upperBound...].split(whereSeparator: { $0 == " " || $0 == "]" }).first.map(String.init)
}

/// The full path of an executable on PATH.
func executablePath(_ name: String) -> String? {
    let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    for directory in (path + ":/usr/sbin:/sbin").split(separator: ":") {
        let candidate = "\(directory)/\(name)"
        if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
    }
    return nil
}
