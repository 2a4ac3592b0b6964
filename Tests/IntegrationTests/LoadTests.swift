import FarmChildProcess
import FarmTestSupport
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

extension Reliability {
    /// The HTTP API under many concurrent clients while a job renders: every status request is answered, none
    /// waits long, and the render stays exact. Bounded: 20 clients for 3 seconds. The request rate is printed,
    /// not asserted (speed belongs to the benchmark); each client sends at most 25 a second.
    @Suite struct LoadTests {
        struct Tally: Sendable {
            var requests = 0
            var errors: [String] = []
            var slowest = 0.0
            var statesSeen: Set<String> = []
        }

        /// The clients' tallies added up; the last client to report resumes the test.
        final class Totals: @unchecked Sendable {
            private let lock = NSLock()
            private var tally = Tally()
            private var reported = 0
            private let clients: Int
            private let continuation: CheckedContinuation<Tally, Never>

            init(clients: Int, continuation: CheckedContinuation<Tally, Never>) {
                self.clients = clients
                self.continuation = continuation
            }

            func add(_ part: Tally) {
                lock.lock()
                tally.requests += part.requests
                tally.errors += part.errors
                tally.slowest = max(tally.slowest, part.slowest)
                tally.statesSeen.formUnion(part.statesSeen)
                reported += 1
                let done = reported == clients ? tally : nil
                lock.unlock()
                if let done { continuation.resume(returning: done) }
            }
        }

        /// One client: status requests on one connection until `deadline`, mostly `GET /jobs/{id}`, with `GET /jobs`
        /// and `GET /health` mixed in.
        static func hammer(port: Int, token: String?, job id: String, client: Int, until deadline: ContinuousClock.Instant) -> Tally {
            var tally = Tally()
            var connection: BlockingHTTPConnection?
            var n = 0
            let start = ContinuousClock.now
            while ContinuousClock.now < deadline {
                // At most 25 requests a second per client, 500 for the 20: hundreds a second, and the CPU the
                // render and the rest of the test suite need is left to them.
                let due = start + .milliseconds(40 * n)
                if due > ContinuousClock.now { Thread.sleep(forTimeInterval: -elapsed(since: due)) }
                let path = n % 5 == 4 ? "/health" : (n % 5 == 3 ? "/jobs" : "/jobs/\(id)")
                n += 1
                let sent = ContinuousClock.now
                do {
                    if connection == nil { connection = try BlockingHTTPConnection(port: port) }
                    let (status, body) = try connection!.get(path, token: token)
                    tally.slowest = max(tally.slowest, elapsed(since: sent))
                    tally.requests += 1
                    guard status == 200 else {
                        tally.errors.append("client \(client) \(path): \(status)")
                        continue
                    }
                    if path == "/jobs/\(id)" {
                        let object = try JSONSerialization.jsonObject(with: Data(body)) as? [String: Any]
                        if object?["id"] as? String != id {
                            tally.errors.append("client \(client): wrong job \(String(decoding: body, as: UTF8.self).prefix(200))")
                        }
                        if let state = object?["state"] as? String { tally.statesSeen.insert(state) }
                    }
                } catch {
                    tally.errors.append("client \(client) \(path): \(error)")
                    connection = nil
                }
            }
            return tally
        }

        @Test func apiKeepsAnsweringManyClientsWhileAJobRenders() async throws {
            let farm = try FaultFarm("farm-load", apiToken: "load-test-token-long-enough-for-the-coordinator")
            defer { farm.remove() }
            try await farm.stopping {
                try await farm.startCoordinator()
                // The node holds each segment 8 times its encode (sleeping): the job renders through the whole load
                // without taking the CPU the server needs.
                try await farm.startNode("node-a", environment: ["FARM_TEST_SLOW_NODE": "node-a:8"])
                try await farm.waitForNodes(1)
                let clip = "\(farm.sources)/clip.mp4"
                try TestMedia.makeClip(at: clip, seconds: 6)
                let id = try await farm.submit(clip, #""preset": "medium", "segment_seconds": 1"#)
                _ = try await farm.waitForJob(id, timeout: 30) { $0["state"] as? String == "running" }

                // Each client is a thread of its own with one keep-alive connection: the test process's concurrency
                // pool, which other tests' blocking calls may hold, does not stand between the clients and the server.
                let clients = 20
                let started = ContinuousClock.now
                let deadline = started + .seconds(3)
                let tally = await withCheckedContinuation { (continuation: CheckedContinuation<Tally, Never>) in
                    let total = Totals(clients: clients, continuation: continuation)
                    for client in 0..<clients {
                        let (port, token) = (farm.httpPort, farm.apiToken)
                        Thread { total.add(Self.hammer(port: port, token: token, job: id, client: client, until: deadline)) }.start()
                    }
                }
                let seconds = elapsed(since: started)
                print("load test: \(tally.requests) requests from \(clients) clients in \(String(format: "%.1f", seconds)) s (\(Int(Double(tally.requests) / seconds))/s), slowest \(String(format: "%.3f", tally.slowest)) s")

                #expect(tally.errors.isEmpty, "\(tally.errors.count) errors, first: \(tally.errors.prefix(5))")
                #expect(tally.requests >= clients, "the clients got \(tally.requests) answers")
                // Loose: a status request is never stuck behind the render.
                #expect(tally.slowest < 5, "slowest answer took \(tally.slowest) s")
                #expect(tally.statesSeen.contains("running"), "the load did not overlap the render: \(tally.statesSeen)")
                // A request without the token is still refused under load.
                let (refused, _) = try BlockingHTTPConnection(port: farm.httpPort).get("/jobs/\(id)", token: nil)
                #expect(refused == 401)

                let job = try await farm.waitForEnd(id)
                #expect(job["state"] as? String == "done", "\(job) \(farm.logs())")
                try await farm.expectExactOutput(id, source: clip)
                #expect(farm.coordinator?.isRunning == true)
            }
        }
    }
}

private func elapsed(since start: ContinuousClock.Instant) -> Double {
    let duration = ContinuousClock.now - start
    return Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
}

/// A keep-alive HTTP/1.1 connection to 127.0.0.1 with blocking socket calls, for one thread.
final class BlockingHTTPConnection {
    private let descriptor: Int32
    private var buffer: [UInt8] = []

    init(port: Int) throws {
        descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { throw TestFailure("socket: \(errno)") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else {
            close(descriptor)
            throw TestFailure("connect to port \(port): errno \(errno)")
        }
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(descriptor) }

    /// Sends a GET and reads the whole reply (Content-Length or chunked).
    func get(_ path: String, token: String?) throws -> (Int, [UInt8]) {
        var request = "GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        if let token { request += "Authorization: Bearer \(token)\r\n" }
        request += "\r\n"
        let bytes = Array(request.utf8)
        guard bytes.withUnsafeBytes({ send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == bytes.count else {
            throw TestFailure("send failed: errno \(errno)")
        }
        let head = try readUntil([13, 10, 13, 10])
        let lines = String(decoding: head, as: UTF8.self).split(separator: "\r\n")
        guard let statusLine = lines.first, let status = Int(statusLine.split(separator: " ").dropFirst().first ?? "") else {
            throw TestFailure("bad status line: \(lines.first ?? "")")
        }
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        if let length = headers["content-length"].flatMap({ Int($0) }) { return (status, try read(length)) }
        guard headers["transfer-encoding"]?.lowercased() == "chunked" else { return (status, []) }
        var body: [UInt8] = []
        while true {
            let sizeLine = String(decoding: try readUntil([13, 10]), as: UTF8.self)
            guard let size = Int(sizeLine.split(separator: ";").first ?? "", radix: 16) else { throw TestFailure("bad chunk size \(sizeLine)") }
            if size == 0 {
                _ = try readUntil([13, 10])
                return (status, body)
            }
            body += try read(size)
            _ = try read(2)
        }
    }

    private func fill() throws {
        var chunk = [UInt8](repeating: 0, count: 65536)
        let n = recv(descriptor, &chunk, chunk.count, 0)
        guard n > 0 else { throw TestFailure(n == 0 ? "the server closed the connection" : "recv failed: errno \(errno)") }
        buffer += chunk[0..<n]
    }

    /// The bytes up to `marker`, which is consumed and not returned.
    private func readUntil(_ marker: [UInt8]) throws -> [UInt8] {
        while true {
            if buffer.count >= marker.count {
                for start in 0...(buffer.count - marker.count) where Array(buffer[start..<start + marker.count]) == marker {
                    let found = Array(buffer[0..<start])
                    buffer.removeFirst(start + marker.count)
                    return found
                }
            }
            try fill()
        }
    }

    private func read(_ count: Int) throws -> [UInt8] {
        while buffer.count < count { try fill() }
        let found = Array(buffer[0..<count])
        buffer.removeFirst(count)
        return found
    }
}
