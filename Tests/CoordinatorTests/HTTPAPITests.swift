import Crypto
import FarmAPI
@testable import FarmCoordinator
import FarmMedia
import FarmTestSupport
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import Testing

/// The HTTP API against a real coordinator with no nodes: every endpoint, the source-root policy,
/// bad input, uploads, metrics, and the OpenAPI document kept true to the routes.
@Suite struct HTTPAPITests {
    /// A coordinator, its data directory, a source root holding a 1 s clip, and an HTTP configuration.
    struct Fixture {
        let directory: URL
        let root: String
        let clip: String
        let coordinator: Coordinator
        var configuration: HTTPConfiguration

        init(
            maxUploadBytes: Int64 = 1 << 30, apiToken: String? = nil, minimumFreeBytes: UInt64 = 1 << 20,
            scaleDownWindow: Duration = .seconds(300), metricsOpen: Bool = false
        ) throws {
            MediaLog.quiet()
            directory = try TestMedia.temporaryDirectory("farm-http")
            root = directory.appendingPathComponent("sources").path
            try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
            clip = "\(root)/clip.mp4"
            try FileManager.default.copyItem(atPath: HTTPAPITests.sharedClip, toPath: clip)
            let data = directory.appendingPathComponent("data").path
            var logger = Logger(label: "farm.test")
            logger.logLevel = .critical
            coordinator = Coordinator(
                configuration: CoordinatorConfiguration(dataDirectory: data, joinToken: "token", logger: logger))
            configuration = HTTPConfiguration(
                host: "127.0.0.1", port: 0, sourceRoots: [root], dataDirectory: data, maxUploadBytes: maxUploadBytes,
                apiToken: apiToken, scaleDownWindow: scaleDownWindow, minimumFreeBytes: minimumFreeBytes, logger: logger)
            configuration.metricsOpen = metricsOpen
        }

        var app: some ApplicationProtocol { get throws { try HTTPAPI.build(coordinator: coordinator, configuration: configuration) } }

        func remove() { try? FileManager.default.removeItem(at: directory) }
    }

    /// One clip for every test (made once with ffmpeg).
    static let sharedClip: String = {
        let directory = try! TestMedia.temporaryDirectory("farm-http-clip")
        let path = directory.appendingPathComponent("clip.mp4").path
        try! TestMedia.makeClip(at: path, seconds: 1, size: "160x120")
        return path
    }()

    static let json: HTTPFields = [.contentType: "application/json"]

    static func body(_ text: String) -> ByteBuffer { ByteBuffer(string: text) }

    static func object(_ response: TestResponse) throws -> [String: Any] {
        let value = try JSONSerialization.jsonObject(with: Data(response.body.readableBytesView))
        return try #require(value as? [String: Any], "not a JSON object: \(String(buffer: response.body))")
    }

    static func error(_ response: TestResponse) throws -> String {
        try #require(try object(response)["error"] as? String, "no error message in \(String(buffer: response.body))")
    }

    // MARK: - Liveness, readiness, index

    @Test func aFullQueueAnswers429WithRetryAfter() async throws {
        let f = try Fixture()
        defer { f.remove() }
        var logger = Logger(label: "farm.test")
        logger.logLevel = .critical
        let coordinator = Coordinator(
            configuration: CoordinatorConfiguration(
                dataDirectory: f.directory.appendingPathComponent("queue").path, joinToken: "token",
                maxConcurrentJobs: 1, queueLimit: 2, logger: logger))
        let app = try HTTPAPI.build(coordinator: coordinator, configuration: f.configuration)
        let body = Self.body("{\"source\": \"\(f.clip)\"}")
        try await app.test(.router) { client in
            for _ in 0..<2 {
                try await client.execute(uri: "/jobs", method: .post, headers: Self.json, body: body) { response throws in
                    #expect(response.status == .created)
                }
            }
            try await client.execute(uri: "/jobs", method: .post, headers: Self.json, body: body) { response throws in
                #expect(response.status == .tooManyRequests)
                #expect(response.headers[.retryAfter] == "30")
                #expect((try Self.object(response)["error"] as? String)?.contains("queue is full") == true)
            }
        }
    }

    @Test func healthReadyAndIndex() async throws {
        let f = try Fixture()
        defer { f.remove() }
        try await f.app.test(.router) { client in
            try await client.execute(uri: "/health", method: .get) { response throws in
                #expect(response.status == .ok)
                #expect(try Self.object(response)["status"] as? String == "ok")
            }
            try await client.execute(uri: "/ready", method: .get) { response throws in
                #expect(response.status == .ok)
                let body = try Self.object(response)
                #expect(body["ready"] as? Bool == true)
                #expect(body["nodes"] as? Int == 0)
            }
            try await client.execute(uri: "/api", method: .get) { response throws in
                #expect(response.status == .ok)
                let endpoints = try #require(try Self.object(response)["endpoints"] as? [[String: Any]])
                #expect(endpoints.count == HTTPAPI.endpoints.count)
                #expect(endpoints.contains { $0["method"] as? String == "GET" && $0["path"] as? String == "/jobs/{id}/output" })
            }
            try await client.execute(uri: "/nodes", method: .get) { response throws in
                #expect(response.status == .ok)
                #expect((try Self.object(response)["nodes"] as? [Any])?.isEmpty == true)
            }
            try await client.execute(uri: "/no-such-route", method: .get) { response throws in
                #expect(response.status == .notFound)
                #expect(try Self.error(response).contains("/api"))
            }
        }
    }

    // MARK: - OpenAPI

    static var repositoryRoot: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }

    /// Method and path of every operation in the document (`  /path:` then `    get:`).
    static func documentedOperations(_ yaml: String) -> Set<String> {
        var operations: Set<String> = []
        var inPaths = false
        var path: String?
        let methods: Set<String> = ["get", "post", "put", "delete", "patch", "head", "options"]
        for line in yaml.split(separator: "\n", omittingEmptySubsequences: false) {
            if !line.hasPrefix(" ") && !line.isEmpty {
                inPaths = line == "paths:"
                continue
            }
            guard inPaths else { continue }
            if line.hasPrefix("  /"), line.hasSuffix(":"), !line.hasPrefix("   ") {
                path = String(line.dropFirst(2).dropLast())
            } else if line.hasPrefix("    "), !line.hasPrefix("     "), let path {
                let key = line.dropFirst(4).prefix { $0 != ":" }
                if methods.contains(String(key)) { operations.insert("\(key.uppercased()) \(path)") }
            }
        }
        return operations
    }

    @Test func openAPIDocumentMatchesTheRoutes() async throws {
        let f = try Fixture()
        defer { f.remove() }
        let file = try String(
            contentsOf: Self.repositoryRoot.appendingPathComponent("docs/openapi.yaml"), encoding: .utf8)
        // The generated code is as new as the document: scripts/generate-openapi.sh recorded its hash.
        let digest = SHA256.hash(data: Data(file.utf8)).map { String(format: "%02x", $0) }.joined()
        #expect(digest == APIDocument.sha256, "docs/openapi.yaml changed since Sources/API/Generated was made: run scripts/generate-openapi.sh")
        #expect(file == APIDocument.yaml, "the served document differs from docs/openapi.yaml: run scripts/generate-openapi.sh")

        let router = HTTPAPI.router(coordinator: f.coordinator, configuration: f.configuration)
        let routed = Set(router.routes.map { "\($0.method.rawValue) \($0.path.description)" })
        let documented = Self.documentedOperations(APIDocument.yaml)
        let indexed = Set(HTTPAPI.endpoints.map { "\($0.method) \($0.path)" })
        #expect(routed.count == 24)
        #expect(routed.subtracting(documented).isEmpty, "routes missing from the document: \(routed.subtracting(documented).sorted())")
        #expect(documented.subtracting(routed).isEmpty, "documented but not routed: \(documented.subtracting(routed).sorted())")
        #expect(indexed == routed, "GET /api and the router disagree")

        try await f.app.test(.router) { client in
            try await client.execute(uri: "/openapi.yaml", method: .get) { response throws in
                #expect(response.status == .ok)
                #expect(response.headers[.contentType]?.hasPrefix("application/yaml") == true)
                #expect(String(buffer: response.body) == file)
            }
        }
    }

    // MARK: - Submitting

    @Test func submitByPathListGetAndCancel() async throws {
        let f = try Fixture()
        defer { f.remove() }
        try await f.app.test(.router) { client in
            let id = try await client.execute(
                uri: "/jobs", method: .post, headers: Self.json,
                body: Self.body(#"{"source": "\#(f.clip)", "codec": "h264", "crf": 30, "preset": "veryfast", "container": "mkv"}"#)
            ) { response throws in
                #expect(response.status == .created)
                let body = try Self.object(response)
                #expect(response.headers[.location] == "/jobs/\(body["id"] as? String ?? "")")
                return try #require(body["id"] as? String)
            }
            let status = try #require(await f.coordinator.status(id))
            #expect(status.output.hasPrefix(f.configuration.outputDirectory + "/"))
            #expect(status.output.hasSuffix(".mkv"))
            #expect(FileManager.default.fileExists(atPath: f.configuration.outputDirectory))

            try await client.execute(uri: "/jobs/\(id)", method: .get) { response throws in
                #expect(response.status == .ok)
                let job = try Self.object(response)
                #expect(job["id"] as? String == id)
                #expect(job["state"] as? String == "queued")
                for key in ["progress", "fps", "eta_s", "error", "segments", "phase", "output_url"] {
                    #expect(job.keys.contains(key), "job JSON lacks \(key)")
                }
                #expect(job["source"] as? String == SourcePolicy.realPath(f.clip))
            }
            try await client.execute(uri: "/jobs", method: .get) { response throws in
                let jobs = try #require(try Self.object(response)["jobs"] as? [[String: Any]])
                #expect(jobs.map { $0["id"] as? String } == [id])
            }
            try await client.execute(uri: "/jobs/\(id)/output", method: .get) { response throws in
                #expect(response.status == .conflict)
            }
            try await client.execute(uri: "/jobs/\(id)", method: .delete) { response throws in
                #expect(response.status == .ok)
                #expect(try Self.object(response)["state"] as? String == "cancelled")
            }
            try await client.execute(uri: "/jobs/\(id)", method: .delete) { response throws in
                #expect(response.status == .conflict)
                #expect(try Self.error(response).contains("already cancelled"))
            }
            try await client.execute(uri: "/jobs/\(id)/output", method: .get) { response throws in
                #expect(response.status == .gone)
            }
        }
    }

    @Test func pathsOutsideTheSourceRootsAreForbidden() async throws {
        let f = try Fixture()
        defer { f.remove() }
        // A file beside the root, a symlink inside the root that points out of it, and `..`.
        let outside = f.directory.appendingPathComponent("secret.mp4").path
        try FileManager.default.copyItem(atPath: f.clip, toPath: outside)
        try FileManager.default.createSymbolicLink(atPath: "\(f.root)/link.mp4", withDestinationPath: outside)
        try await f.app.test(.router) { client in
            for source in [outside, "\(f.root)/link.mp4", "\(f.root)/../secret.mp4", "/etc/passwd", "/nonexistent/x.mp4"] {
                try await client.execute(
                    uri: "/jobs", method: .post, headers: Self.json, body: Self.body(#"{"source": "\#(source)"}"#)
                ) { response throws in
                    #expect(response.status == .forbidden, "\(source)")
                    #expect(try Self.error(response).contains("outside the allowed source roots"), "\(source)")
                }
            }
            // Inside the root but missing: a plain 400 that says so.
            try await client.execute(
                uri: "/jobs", method: .post, headers: Self.json, body: Self.body(#"{"source": "\#(f.root)/missing.mp4"}"#)
            ) { response throws in
                #expect(response.status == .badRequest)
                #expect(try Self.error(response).contains("no such file"))
            }
        }
        #expect(await f.coordinator.listJobs().isEmpty)
    }

    @Test func badRequestsSayWhatWasWrong() async throws {
        let f = try Fixture()
        defer { f.remove() }
        let cases: [(String, HTTPResponse.Status, String)] = [
            (#"{"source": "#, .badRequest, "invalid JSON"),
            (#"["a"]"#, .badRequest, "expected a JSON object"),
            (#"{"codec": "h264"}"#, .badRequest, "source is required"),
            (#"{"source": "\#(f.clip)", "codec": "vp9"}"#, .badRequest, "unknown codec 'vp9'"),
            (#"{"source": "\#(f.clip)", "crf": 70}"#, .badRequest, "crf must be an integer from 0 to 51"),
            (#"{"source": "\#(f.clip)", "crf": "high"}"#, .badRequest, "crf must be an integer"),
            (#"{"source": "\#(f.clip)", "preset": "turbo"}"#, .badRequest, "unknown preset 'turbo'"),
            (#"{"source": "\#(f.clip)", "container": "avi"}"#, .badRequest, "unknown container 'avi'"),
            (#"{"source": "\#(f.clip)", "crt": 20}"#, .badRequest, "unknown field 'crt'"),
            (#"{"source": "clip.mp4"}"#, .badRequest, "must be absolute"),
            (#"{"source": "http://127.0.0.1/a.mp4"}"#, .badRequest, "127.0.0.1 is a loopback address"),
            (#"{"source": "https:///a.mp4"}"#, .badRequest, "names no host"),
            (#"{"source": "/x.mp4", "upload": "up-1"}"#, .badRequest, "give either source or upload"),
            (#"{"upload": "up-missing"}"#, .notFound, "no upload up-missing"),
            (#"{"source": "\#(f.clip)", "nodes": {"labels": ["Trusted!"]}}"#, .badRequest, "label 'Trusted!' must be"),
            (#"{"source": "\#(f.clip)", "nodes": {"pool": "a"}}"#, .badRequest, "unknown field 'nodes.pool'"),
            (#"{"source": "\#(f.clip)", "nodes": ["trusted"]}"#, .badRequest, "nodes must be an object"),
        ]
        try await f.app.test(.router) { client in
            for (body, status, message) in cases {
                try await client.execute(uri: "/jobs", method: .post, headers: Self.json, body: Self.body(body)) { response throws in
                    #expect(response.status == status, "\(body)")
                    let error = try Self.error(response)
                    #expect(error.contains(message), "\(body): \(error)")
                }
            }
            try await client.execute(uri: "/jobs", method: .post, body: Self.body("{}")) { response throws in
                #expect(response.status == .unsupportedMediaType)
            }
            for path in ["/jobs/job-9999", "/jobs/job-9999/output"] {
                try await client.execute(uri: path, method: .get) { response throws in
                    #expect(response.status == .notFound)
                    #expect(try Self.error(response).contains("job-9999"))
                }
            }
            try await client.execute(uri: "/jobs/job-9999", method: .delete) { response throws in
                #expect(response.status == .notFound)
            }
        }
        #expect(await f.coordinator.listJobs().isEmpty)
    }

    // MARK: - Uploads

    @Test func multipartAndRawUploadsStreamToDiskAndAreRemovedWithTheirJob() async throws {
        let f = try Fixture()
        defer { f.remove() }
        let clip = try Data(contentsOf: URL(fileURLWithPath: f.clip))
        let boundary = "farm-test-boundary"
        var multipart = ByteBuffer()
        multipart.writeString(
            "--\(boundary)\r\nContent-Disposition: form-data; name=\"codec\"\r\n\r\nh264\r\n"
                + "--\(boundary)\r\nContent-Disposition: form-data; name=\"container\"\r\n\r\nmov\r\n"
                + "--\(boundary)\r\nContent-Disposition: form-data; name=\"file\"; filename=\"holiday clip.mp4\"\r\n"
                + "Content-Type: video/mp4\r\n\r\n")
        multipart.writeBytes(clip)
        multipart.writeString("\r\n--\(boundary)--\r\n")
        let multipartBody = multipart
        let uploads = f.configuration.uploadDirectory

        try await f.app.test(.router) { client in
            let first = try await client.execute(
                uri: "/jobs", method: .post, headers: [.contentType: "multipart/form-data; boundary=\(boundary)"], body: multipartBody
            ) { response throws in
                #expect(response.status == .created, "\(String(buffer: response.body))")
                return try #require(try Self.object(response)["id"] as? String)
            }
            let second = try await client.execute(
                uri: "/jobs?codec=hevc&crf=30&filename=raw.mp4", method: .post,
                headers: [.contentType: "application/octet-stream"], body: ByteBuffer(bytes: clip)
            ) { response throws in
                #expect(response.status == .created, "\(String(buffer: response.body))")
                return try #require(try Self.object(response)["id"] as? String)
            }
            // Each upload is on disk, whole, under the upload directory.
            for id in [first, second] {
                let status = try #require(await f.coordinator.status(id))
                #expect(status.source.hasPrefix(uploads + "/"))
                #expect(try Data(contentsOf: URL(fileURLWithPath: status.source)) == clip)
            }
            #expect(try #require(await f.coordinator.status(first)).output.hasSuffix(".mov"))
            try await client.execute(uri: "/jobs/\(first)", method: .get) { response throws in
                #expect(try Self.object(response)["source"] as? String == "upload:holiday clip.mp4")
            }
            // Cancelling a job removes its upload before the answer.
            for id in [first, second] {
                let path = try #require(await f.coordinator.status(id)).source
                try await client.execute(uri: "/jobs/\(id)", method: .delete) { #expect($0.status == .ok) }
                #expect(!FileManager.default.fileExists(atPath: path), "\(path) left behind")
            }
            try await client.execute(uri: "/metrics", method: .get) { response throws in
                let text = String(buffer: response.body)
                #expect(text.contains("farm_http_bytes_in_total \(2 * clip.count)"), "\(text)")
            }
        }
    }

    @Test func oversizedAndMalformedUploadsLeaveNothing() async throws {
        let f = try Fixture(maxUploadBytes: 1000)
        defer { f.remove() }
        let uploads = f.configuration.uploadDirectory
        try await f.app.test(.router) { client in
            try await client.execute(
                uri: "/jobs?filename=big.mp4", method: .post, headers: [.contentType: "application/octet-stream"],
                body: ByteBuffer(repeating: 7, count: 5000)
            ) { response throws in
                #expect(response.status == .contentTooLarge)
                #expect(try Self.error(response).contains("limit"))
            }
            var unterminated = ByteBuffer()
            unterminated.writeString("--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.mp4\"\r\n\r\nabc")
            try await client.execute(
                uri: "/jobs", method: .post, headers: [.contentType: "multipart/form-data; boundary=b"], body: unterminated
            ) { response throws in
                #expect(response.status == .badRequest)
                #expect(try Self.error(response).contains("closing boundary"))
            }
            var manyFields = ByteBuffer()
            for i in 0...Routes.maxFields {
                manyFields.writeString("--b\r\nContent-Disposition: form-data; name=\"f\(i)\"\r\n\r\nx\r\n")
            }
            manyFields.writeString("--b--\r\n")
            try await client.execute(
                uri: "/jobs", method: .post, headers: [.contentType: "multipart/form-data; boundary=b"], body: manyFields
            ) { response throws in
                #expect(response.status == .badRequest)
                #expect(try Self.error(response).contains("more than \(Routes.maxFields) form fields"))
            }
            try await client.execute(
                uri: "/jobs?codec=mpeg2", method: .post, headers: [.contentType: "application/octet-stream"],
                body: ByteBuffer(repeating: 7, count: 10)
            ) { response throws in
                #expect(response.status == .badRequest)
            }
        }
        let left = (try? FileManager.default.contentsOfDirectory(atPath: uploads)) ?? []
        #expect(left.isEmpty, "\(left)")
        #expect(await f.coordinator.listJobs().isEmpty)
    }

    // MARK: - Metrics and validation

    @Test func metricsNameEverySeriesAndSignalScaleUp() async throws {
        let f = try Fixture(scaleDownWindow: .zero)
        defer { f.remove() }
        try await f.app.test(.router) { client in
            try await client.execute(uri: "/metrics", method: .get) { response throws in
                #expect(response.status == .ok)
                #expect(response.headers[.contentType]?.hasPrefix("text/plain") == true)
                let text = String(buffer: response.body)
                for name in [
                    "farm_jobs{state=\"queued\"}", "farm_queue_depth", "farm_segments_waiting", "farm_oldest_wait_seconds",
                    "farm_segments_completed_total", "farm_segments_per_second", "farm_encode_fps", "farm_nodes",
                    "farm_node_slots", "farm_node_slots_in_use", "farm_utilisation", "farm_http_bytes_in_total",
                    "farm_http_bytes_out_total", "farm_fallbacks_total", "farm_scale_up", "farm_scale_down_hint",
                ] {
                    #expect(text.contains(name), "no \(name) in /metrics")
                }
                #expect(text.contains("farm_scale_up 0"))
                // No nodes: nothing to scale down.
                #expect(text.contains("farm_scale_down_hint 0"))
            }
            // Eleven jobs waiting with no node: deeper than ten, so scale up.
            for _ in 0..<11 {
                try await client.execute(
                    uri: "/jobs", method: .post, headers: Self.json, body: Self.body(#"{"source": "\#(f.clip)"}"#)
                ) { #expect($0.status == .created) }
            }
            try await client.execute(uri: "/metrics", method: .get) { response throws in
                let text = String(buffer: response.body)
                #expect(text.contains("farm_jobs{state=\"queued\"} 11"), "\(text)")
                #expect(text.contains("farm_queue_depth 11"))
                #expect(text.contains("farm_scale_up 1"))
            }
        }
    }

    @Test func scaleRulesFollowTheSnapshot() throws {
        let metrics = FarmMetrics(scaleDownWindow: .seconds(60))
        func job(_ state: JobState, waited: Double, segments: [String] = []) -> JobStatus {
            JobStatus(
                id: UUID().uuidString, state: state, phase: "encoding", source: "s", output: "o", progress: 0, framesDone: 0,
                totalFrames: 100, fps: 0, etaSeconds: nil, error: nil,
                segments: segments.enumerated().map {
                    SegmentStatus(index: $0.offset, state: $0.element, attempts: 0, node: nil, encoder: nil, frames: 0)
                }, sourceSeconds: 4, wallSeconds: waited, encodersByNode: [:], dropped: [], fallbacks: 0)
        }
        func node(inUse: Int) -> NodeStatus {
            NodeStatus(
                id: "n", address: "a", slots: 4, threads: 0, slotsInUse: inUse, draining: false, segmentsDone: 0,
                secondsSinceHeartbeat: 0, capabilitiesJSON: "{}")
        }
        let start = ContinuousClock.now
        // One job waiting 31 s for its first segment: scale up.
        var text = metrics.render(jobs: [job(.running, waited: 31, segments: ["queued", "queued"])], nodeList: [], now: start)
        #expect(text.contains("farm_scale_up 1"))
        // A job whose segments are running is not waiting, however old.
        text = metrics.render(jobs: [job(.running, waited: 300, segments: ["running", "queued"])], nodeList: [node(inUse: 1)], now: start)
        #expect(text.contains("farm_scale_up 0"))
        #expect(text.contains("farm_utilisation 0.25"))
        // Utilisation under 30 % for the whole window: hint; a busy moment resets it.
        #expect(metrics.render(jobs: [], nodeList: [node(inUse: 1)], now: start + .seconds(30)).contains("farm_scale_down_hint 0"))
        #expect(metrics.render(jobs: [], nodeList: [node(inUse: 0)], now: start + .seconds(61)).contains("farm_scale_down_hint 1"))
        #expect(metrics.render(jobs: [], nodeList: [node(inUse: 3)], now: start + .seconds(62)).contains("farm_scale_down_hint 0"))
        #expect(metrics.render(jobs: [], nodeList: [node(inUse: 0)], now: start + .seconds(63)).contains("farm_scale_down_hint 0"))
    }

    @Test func validateSystemReportsEachCheck() async throws {
        let f = try Fixture()
        defer { f.remove() }
        try await f.app.test(.router) { client in
            try await client.execute(uri: "/validate-system", method: .get) { response throws in
                #expect(response.status == .ok, "\(String(buffer: response.body))")
                let body = try Self.object(response)
                #expect(body["ok"] as? Bool == true)
                let checks = try #require(body["checks"] as? [[String: Any]])
                let byName = Dictionary(uniqueKeysWithValues: checks.map { ($0["name"] as? String ?? "", $0) })
                for name in ["ffmpeg", "hardware", "disk", "data_dir", "output_dir", "database", "nodes"] {
                    #expect(byName[name] != nil, "no \(name) check")
                }
                #expect(byName["database"]?["status"] as? String == "skipped")
                #expect(byName["nodes"]?["status"] as? String == "warning")
                #expect(byName["ffmpeg"]?["detail"] as? String ?? "" != "")
            }
        }
        // Once the job store is open, the check reads and writes it.
        try await f.coordinator.open()
        try await f.app.test(.router) { client in
            try await client.execute(uri: "/validate-system", method: .get) { response throws in
                let checks = try #require(try Self.object(response)["checks"] as? [[String: Any]])
                let database = try #require(checks.first { $0["name"] as? String == "database" })
                #expect(database["status"] as? String == "ok", "\(database)")
                #expect((database["detail"] as? String)?.contains("integrity ok, 0 jobs") == true, "\(database)")
            }
        }
        // Asking for more free disk than any machine has makes the disk check fail, and says so.
        let greedy = try Fixture(minimumFreeBytes: .max)
        defer { greedy.remove() }
        try await greedy.app.test(.router) { client in
            try await client.execute(uri: "/validate-system", method: .get) { response throws in
                #expect(response.status == .serviceUnavailable)
                let body = try Self.object(response)
                #expect(body["failed"] as? [String] == ["disk"])
            }
        }
    }

    // MARK: - The generated server

    @Test func formSubmissionsAreReadAsForms() async throws {
        let f = try Fixture()
        defer { f.remove() }
        let form: HTTPFields = [.contentType: "application/x-www-form-urlencoded"]
        let path = f.clip.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? f.clip
        try await f.app.test(.router) { client in
            try await client.execute(
                uri: "/jobs", method: .post, headers: form, body: Self.body("source=\(path)&codec=hevc&crf=30&preset=fast")
            ) { response throws in
                #expect(response.status == .created, "\(String(buffer: response.body))")
            }
            for (body, message) in [("source=\(path)&crf=99", "crf must be an integer"), ("source=%2Fa+b.mp4", "/a b.mp4")] {
                try await client.execute(uri: "/jobs", method: .post, headers: form, body: Self.body(body)) { response throws in
                    #expect(response.status == .badRequest || response.status == .forbidden, "\(body)")
                    #expect(try Self.error(response).contains(message), "\(body): \(String(buffer: response.body))")
                }
            }
        }
        let job = try #require(await f.coordinator.listJobs().first)
        #expect(job.source == f.clip)
    }

    @Test func undeclaredMethodsAnswer405WithAllow() async throws {
        let f = try Fixture()
        defer { f.remove() }
        try await f.app.test(.router) { client in
            for (path, method, allowed) in [
                ("/jobs", HTTPRequest.Method.patch, "GET, POST"), ("/jobs/job-1", .put, "GET, DELETE"),
                ("/health", .post, "GET"), ("/uploads/u-1", .post, "GET, PUT, DELETE"),
            ] {
                try await client.execute(uri: path, method: method) { response throws in
                    #expect(response.status == .methodNotAllowed, "\(method) \(path)")
                    #expect(response.headers[.allow] == allowed, "\(method) \(path)")
                    #expect(try Self.error(response).contains("not allowed"))
                }
            }
        }
    }

    @Test func uploadsTakeAnyPositiveSizeAndRefuseBadBodiesInOneLine() async throws {
        let f = try Fixture(maxUploadBytes: 1 << 20)
        defer { f.remove() }
        try await f.app.test(.router) { client in
            // 1 was once read as a Bool and refused.
            for size in [1, 2, 1 << 20] {
                try await client.execute(uri: "/uploads", method: .post, headers: Self.json, body: Self.body(#"{"size": \#(size)}"#)) {
                    response throws in
                    #expect(response.status == .created, "\(size): \(String(buffer: response.body))")
                    let upload = try Self.object(response)
                    #expect(upload["size"] as? Int == size)
                    #expect(upload["offset"] as? Int == 0)
                    #expect(response.headers[.location] == "/uploads/\(upload["id"] as? String ?? "")")
                }
            }
            let refused: [(String, HTTPResponse.Status, String)] = [
                (#"{"size": "12"}"#, .badRequest, "size"),
                (#"{"filename": "a.mp4"}"#, .badRequest, "size"),
                (#"{"size": 0}"#, .badRequest, "at least 1"),
                (#"{"size": 3, "colour": "red"}"#, .badRequest, "colour"),
                (#"{"size": "#, .badRequest, "createUpload"),
                (#"{"size": \#((1 << 20) + 1)}"#, .contentTooLarge, "limit"),
            ]
            for (body, status, message) in refused {
                try await client.execute(uri: "/uploads", method: .post, headers: Self.json, body: Self.body(body)) { response throws in
                    #expect(response.status == status, "\(body): \(String(buffer: response.body))")
                    let error = try Self.error(response)
                    #expect(error.contains(message), "\(body): \(error)")
                    #expect(!error.contains("\n"), "\(body): \(error)")
                }
            }
        }
    }

    // MARK: - Token

    @Test func aTokenGuardsEverythingButHealthAndReady() async throws {
        let f = try Fixture(apiToken: "s3cret")
        defer { f.remove() }
        try await f.app.test(.router) { client in
            try await client.execute(uri: "/jobs", method: .get) { response throws in
                #expect(response.status == .unauthorized)
                #expect(response.headers[.wwwAuthenticate] == "Bearer")
                #expect(try Self.error(response).contains("bearer token"))
            }
            for wrong in ["Bearer wrong", "Bearer s3cre", "Bearer s3cret2", "Basic s3cret", "s3cret"] {
                try await client.execute(uri: "/jobs", method: .get, headers: [.authorization: wrong]) {
                    #expect($0.status == .unauthorized, "\(wrong)")
                }
            }
            try await client.execute(uri: "/jobs", method: .get, headers: [.authorization: "Bearer s3cret"]) {
                #expect($0.status == .ok)
            }
            for guarded in ["/metrics", "/nodes", "/jobs/job-1", "/api", "/openapi.yaml", "/validate-system"] {
                try await client.execute(uri: guarded, method: .get) { #expect($0.status == .unauthorized, "\(guarded)") }
            }
            try await client.execute(uri: "/metrics", method: .get, headers: [.authorization: "Bearer s3cret"]) {
                #expect($0.status == .ok)
            }
            for open in ["/health", "/ready"] {
                try await client.execute(uri: open, method: .get) { #expect($0.status == .ok, "\(open)") }
            }
        }
    }

    @Test func metricsCanBeLeftOpen() async throws {
        let f = try Fixture(apiToken: "s3cret", metricsOpen: true)
        defer { f.remove() }
        try await f.app.test(.router) { client in
            try await client.execute(uri: "/metrics", method: .get) { response throws in
                #expect(response.status == .ok)
                #expect(String(buffer: response.body).contains("farm_"))
            }
            try await client.execute(uri: "/jobs", method: .get) { #expect($0.status == .unauthorized) }
        }
    }

    // MARK: - Live server

    @Test func liveServerAnswersOverTCP() async throws {
        let f = try Fixture()
        defer { f.remove() }
        try await f.app.test(.live) { client in
            try await client.execute(uri: "/health", method: .get) { #expect($0.status == .ok) }
            try await client.execute(
                uri: "/jobs", method: .post, headers: Self.json, body: Self.body(#"{"source": "/etc/passwd"}"#)
            ) { #expect($0.status == .forbidden) }
        }
    }

    // MARK: - Pieces

    @Test func byteRanges() {
        #expect(ByteRange.parse("bytes=0-99", size: 1000) == .range(0...99))
        #expect(ByteRange.parse("bytes=900-", size: 1000) == .range(900...999))
        #expect(ByteRange.parse("bytes=-100", size: 1000) == .range(900...999))
        #expect(ByteRange.parse("bytes=-5000", size: 1000) == .range(0...999))
        #expect(ByteRange.parse("bytes=990-5000", size: 1000) == .range(990...999))
        #expect(ByteRange.parse("bytes=1000-", size: 1000) == .unsatisfiable)
        #expect(ByteRange.parse("bytes=-0", size: 1000) == .unsatisfiable)
        #expect(ByteRange.parse("bytes=0-1,5-9", size: 1000) == .whole)
        #expect(ByteRange.parse("items=0-1", size: 1000) == .whole)
        #expect(ByteRange.parse("bytes=9-1", size: 1000) == .whole)
    }

    @Test func nodesAreBannedAndUnbannedByHand() async throws {
        let f = try Fixture()
        defer { f.remove() }
        try await f.app.test(.router) { client in
            try await client.execute(
                uri: "/nodes/node-7/ban", method: .post, headers: Self.json, body: Self.body(#"{"reason": "seen copying sources"}"#)
            ) { response throws in
                #expect(response.status == .ok)
                let ban = try Self.object(response)
                #expect(ban["id"] as? String == "node-7" && ban["manual"] as? Bool == true)
                #expect((ban["reason"] as? String)?.contains("seen copying sources") == true)
            }
            // Its address only while it is connected; no body at all is a ban without a reason.
            try await client.execute(
                uri: "/nodes/node-8/ban", method: .post, headers: Self.json, body: Self.body(#"{"address": true}"#)
            ) { response throws in
                #expect(response.status == .badRequest)
                #expect(try Self.error(response).contains("not connected"))
            }
            try await client.execute(uri: "/nodes/node-8/ban", method: .post) { response throws in
                #expect(response.status == .ok, "\(String(buffer: response.body))")
            }
            try await client.execute(uri: "/nodes", method: .get) { response throws in
                let bans = try #require(try Self.object(response)["bans"] as? [[String: Any]])
                #expect(bans.map { $0["id"] as? String } == ["node-7", "node-8"])
            }
            try await client.execute(uri: "/metrics", method: .get) { response throws in
                #expect(String(buffer: response.body).contains("farm_nodes_banned 2"))
            }
            try await client.execute(uri: "/nodes/node-7/ban", method: .delete) { response throws in
                #expect(response.status == .ok)
                #expect(try Self.object(response)["id"] as? String == "node-7")
            }
            try await client.execute(uri: "/nodes/node-7/ban", method: .delete) { response throws in
                #expect(response.status == .notFound)
            }
            let long = String(repeating: "x", count: 501)
            try await client.execute(
                uri: "/nodes/node-9/ban", method: .post, headers: Self.json, body: Self.body(#"{"reason": "\#(long)"}"#)
            ) { response throws in
                #expect(response.status == .badRequest)
            }
        }
        #expect(await f.coordinator.bans().map(\.nodeID) == ["node-8"])
    }

    @Test func aJobsNodeLabelsAreKeptAndShown() async throws {
        let f = try Fixture()
        defer { f.remove() }
        try await f.app.test(.router) { client in
            let body = #"{"source": "\#(f.clip)", "nodes": {"labels": ["trusted", "gpu", "trusted"]}, "node_labels": "eu-west"}"#
            var id = ""
            try await client.execute(uri: "/jobs", method: .post, headers: Self.json, body: Self.body(body)) { response throws in
                #expect(response.status == .created, "\(String(buffer: response.body))")
                id = try #require(try Self.object(response)["id"] as? String)
            }
            try await client.execute(uri: "/jobs/\(id)", method: .get) { response throws in
                #expect(try Self.object(response)["node_labels"] as? [String] == ["eu-west", "gpu", "trusted"])
            }
            try await client.execute(
                uri: "/jobs", method: .post, headers: [.contentType: "application/x-www-form-urlencoded"],
                body: Self.body("source=\(f.clip)&node_labels=trusted")
            ) { response throws in
                #expect(response.status == .created, "\(String(buffer: response.body))")
            }
        }
    }

    @Test func nodeAddressesArePlain() {
        #expect(Components.Schemas.Node.plainAddress("[IPv4]127.0.0.1/127.0.0.1:44802") == "127.0.0.1:44802")
        #expect(Components.Schemas.Node.plainAddress("[IPv6]::1/::1:7700") == "[::1]:7700")
        #expect(Components.Schemas.Node.plainAddress("10.0.0.2:1") == "10.0.0.2:1")
    }

    @Test func multipartParserHandlesAnySplit() throws {
        let payload = (0..<3000).map { UInt8(truncatingIfNeeded: $0 &* 31) } + Array("\r\n--boun".utf8)
        var body: [UInt8] = Array("preamble\r\n--bound\r\nContent-Disposition: form-data; name=\"crf\"\r\n\r\n20\r\n".utf8)
        body += Array("--bound\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a \\\"b\\\".mp4\"\r\n\r\n".utf8)
        body += payload + Array("\r\n--bound--\r\n".utf8)
        for chunkSize in [1, 2, 7, 64, 1000, body.count] {
            var parser = MultipartParser(boundary: "bound")
            var events: [MultipartParser.Event] = []
            var start = 0
            while start < body.count {
                let end = min(start + chunkSize, body.count)
                events += try parser.feed(ByteBuffer(bytes: body[start..<end]))
                start = end
            }
            try parser.finish()
            var fields: [String: [UInt8]] = [:]
            var names: [String] = []
            var current = ""
            for event in events {
                switch event {
                case .partStart(let name, let filename, _):
                    current = name
                    names.append(filename ?? name)
                case .body(let bytes): fields[current, default: []] += Array(bytes.readableBytesView)
                case .partEnd: break
                }
            }
            #expect(names == ["crf", "a \"b\".mp4"], "chunk \(chunkSize)")
            #expect(fields["crf"] == Array("20".utf8), "chunk \(chunkSize)")
            #expect(fields["file"] == payload, "chunk \(chunkSize)")
        }
    }

    /// What multipart-kit leaves to its caller: bounded headers and preamble, a closing delimiter.
    @Test func multipartParserRefusesUnboundedOrUnterminatedBodies() throws {
        func parse(_ text: [UInt8], chunk: Int = 1000) -> String? {
            var parser = MultipartParser(boundary: "b")
            do {
                var start = 0
                while start < text.count {
                    let end = min(start + chunk, text.count)
                    _ = try parser.feed(ByteBuffer(bytes: text[start..<end]))
                    start = end
                }
                try parser.finish()
                return nil
            } catch {
                return error.description
            }
        }
        let part = Array("--b\r\nContent-Disposition: form-data; name=\"crf\"\r\n\r\n20\r\n".utf8)
        #expect(parse(part + Array("--b--\r\n".utf8)) == nil)
        #expect(parse(part + Array("--b--".utf8), chunk: 1) == nil)
        #expect(parse(part + Array("--b--\r\nan epilogue\r\n".utf8)) == nil)
        // Cut after a delimiter, in a part's headers, in its body.
        #expect(parse(part + Array("--b\r\n".utf8))?.contains("closing boundary") == true)
        #expect(parse(part + Array("--b\r\nContent-Disp".utf8))?.contains("closing boundary") == true)
        #expect(parse(Array(part.dropLast(4)))?.contains("closing boundary") == true)
        #expect(parse([])?.contains("closing boundary") == true)
        // A header line with no end, and a body with no boundary at all.
        let longHeader = Array("--b\r\nX-Long: ".utf8) + [UInt8](repeating: 65, count: 40_000)
        #expect(parse(longHeader)?.contains("headers longer than") == true)
        #expect(parse([UInt8](repeating: 65, count: 1_200_000))?.contains("no boundary") == true)
        // Parts without a disposition or a name.
        #expect(parse(Array("--b\r\nContent-Type: text/plain\r\n\r\nx\r\n--b--\r\n".utf8))?.contains("Content-Disposition") == true)
        #expect(parse(Array("--b\r\nContent-Disposition: form-data\r\n\r\nx\r\n--b--\r\n".utf8))?.contains("field name") == true)
    }
}
