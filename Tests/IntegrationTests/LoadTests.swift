import FarmTestSupport
import Foundation
import Testing

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// The HTTP API under many concurrent clients while a job renders: every status request is answered, none
/// waits long, and the render stays exact. Bounded: 20 clients for 3 seconds. The request rate is printed,
/// not asserted (speed belongs to the benchmark).
@Suite(.serialized) struct LoadTests {
    struct Tally: Sendable {
        var requests = 0
        var errors: [String] = []
        var slowest = 0.0
        var statesSeen: Set<String> = []
    }

    @Test func apiKeepsAnsweringManyClientsWhileAJobRenders() async throws {
        let farm = try FaultFarm("farm-load", apiToken: "load-test-token")
        defer {
            farm.stop()
            farm.remove()
        }
        try farm.startCoordinator()
        try farm.startNode("node-a")
        try farm.waitForNodes(1)
        let clip = "\(farm.sources)/clip.mp4"
        try TestMedia.makeClip(at: clip, seconds: 10, size: "640x360")
        let id = try await farm.submit(clip, #""preset": "medium", "segment_seconds": 1"#)
        _ = try await farm.waitForJob(id, timeout: 30) { $0["state"] as? String == "running" }

        let clients = 20
        let deadline = ContinuousClock.now + .seconds(3)
        let started = ContinuousClock.now
        let tally = await withTaskGroup(of: Tally.self) { group in
            for client in 0..<clients {
                group.addTask {
                    var tally = Tally()
                    var n = 0
                    while ContinuousClock.now < deadline {
                        // Mostly job status, with health and the job list mixed in.
                        let path = n % 5 == 4 ? "/health" : (n % 5 == 3 ? "/jobs" : "/jobs/\(id)")
                        n += 1
                        let sent = ContinuousClock.now
                        do {
                            let (status, body) = try await farm.call("GET", path)
                            tally.slowest = max(tally.slowest, elapsed(since: sent))
                            tally.requests += 1
                            guard status == 200 else {
                                tally.errors.append("client \(client) \(path): \(status)")
                                continue
                            }
                            if path == "/jobs/\(id)" {
                                let object = try JSONSerialization.jsonObject(with: body) as? [String: Any]
                                if object?["id"] as? String != id { tally.errors.append("client \(client): wrong job \(String(decoding: body, as: UTF8.self).prefix(200))") }
                                if let state = object?["state"] as? String { tally.statesSeen.insert(state) }
                            }
                        } catch {
                            tally.errors.append("client \(client) \(path): \(error)")
                        }
                    }
                    return tally
                }
            }
            var total = Tally()
            for await part in group {
                total.requests += part.requests
                total.errors += part.errors
                total.slowest = max(total.slowest, part.slowest)
                total.statesSeen.formUnion(part.statesSeen)
            }
            return total
        }
        let seconds = elapsed(since: started)
        print("load test: \(tally.requests) requests from \(clients) clients in \(String(format: "%.1f", seconds)) s (\(Int(Double(tally.requests) / seconds))/s), slowest \(String(format: "%.3f", tally.slowest)) s")

        #expect(tally.errors.isEmpty, "\(tally.errors.count) errors, first: \(tally.errors.prefix(5))")
        #expect(tally.requests >= clients, "the clients got \(tally.requests) answers")
        // Loose: a status request is never stuck behind the render.
        #expect(tally.slowest < 5, "slowest answer took \(tally.slowest) s")
        #expect(tally.statesSeen.contains("running"), "the load did not overlap the render: \(tally.statesSeen)")
        // A request without the token is still refused under load.
        let refused = try await {
            var request = URLRequest(url: URL(string: farm.base + "/jobs/\(id)")!)
            request.httpMethod = "GET"
            let (_, response) = try await farm.session.data(for: request)
            return (response as? HTTPURLResponse)?.statusCode ?? 0
        }()
        #expect(refused == 401)

        let job = try await farm.waitForEnd(id)
        #expect(job["state"] as? String == "done", "\(job) \(farm.logs())")
        try await farm.expectExactOutput(id, source: clip)
        #expect(farm.coordinator?.isRunning == true)
    }
}

private func elapsed(since start: ContinuousClock.Instant) -> Double {
    let duration = ContinuousClock.now - start
    return Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
}
