internal import CoreMetrics
internal import FarmHWEncode
internal import FarmMedia
internal import Foundation
internal import HTTPTypes
public import Hummingbird
internal import Logging
internal import NIOCore
internal import ServiceLifecycle
internal import Synchronization
internal import UnixSignals
internal import _NIOFileSystem

/// The coordinator's HTTP API (issue 4): jobs, nodes, health, metrics and its own OpenAPI document.
/// Errors of the domain become HTTP statuses here and nowhere else.
public enum HTTPAPI {
    /// The request context of every route.
    public typealias Context = BasicRequestContext

    /// One route as `GET /api` lists it and `docs/openapi.yaml` documents it.
    public struct Endpoint: Sendable, Hashable {
        /// GET, POST, DELETE.
        public var method: String
        /// The path with `{parameter}` placeholders, as OpenAPI writes it.
        public var path: String
        /// One line on what the route does.
        public var summary: String
    }

    /// Every route, in the order `GET /api` lists them.
    public static let endpoints: [Endpoint] = [
        Endpoint(method: "POST", path: "/jobs", summary: "Submit a job: JSON with a source path, an http(s) URL or a finished upload id, a multipart upload, or the file as the body"),
        Endpoint(method: "GET", path: "/jobs", summary: "List jobs, oldest first"),
        Endpoint(method: "GET", path: "/jobs/{id}", summary: "A job's state, progress, speed, ETA and segments"),
        Endpoint(method: "DELETE", path: "/jobs/{id}", summary: "Cancel a job; nodes stop its segments"),
        Endpoint(method: "GET", path: "/jobs/{id}/output", summary: "The finished output file (Range requests supported)"),
        Endpoint(method: "POST", path: "/uploads", summary: "Begin a resumable upload of a given size; chunks follow with PUT"),
        Endpoint(method: "GET", path: "/uploads/{id}", summary: "A resumable upload's offset: where the next chunk starts"),
        Endpoint(method: "PUT", path: "/uploads/{id}", summary: "Append a chunk (Content-Range: bytes a-b/total, each under 100 MB)"),
        Endpoint(method: "DELETE", path: "/uploads/{id}", summary: "Abandon a resumable upload and remove its bytes"),
        Endpoint(method: "OPTIONS", path: "/files", summary: "tus 1.0: the version, extensions, size limit and checksum algorithms"),
        Endpoint(method: "POST", path: "/files", summary: "tus 1.0: create an upload of Upload-Length bytes; its URL is in Location"),
        Endpoint(method: "OPTIONS", path: "/files/{id}", summary: "tus 1.0: the same as OPTIONS /files"),
        Endpoint(method: "HEAD", path: "/files/{id}", summary: "tus 1.0: the upload's Upload-Offset, where the next PATCH starts"),
        Endpoint(method: "PATCH", path: "/files/{id}", summary: "tus 1.0: append a chunk at Upload-Offset (at most 90 MiB, optional Upload-Checksum)"),
        Endpoint(method: "DELETE", path: "/files/{id}", summary: "tus 1.0: abandon the upload and remove its bytes"),
        Endpoint(method: "GET", path: "/nodes", summary: "Connected render nodes"),
        Endpoint(method: "GET", path: "/health", summary: "Liveness"),
        Endpoint(method: "GET", path: "/ready", summary: "Readiness: the coordinator can accept jobs"),
        Endpoint(method: "GET", path: "/api", summary: "This index of endpoints"),
        Endpoint(method: "GET", path: "/validate-system", summary: "Check FFmpeg, hardware, disk, data directory, database and nodes"),
        Endpoint(method: "GET", path: "/metrics", summary: "Prometheus metrics"),
        Endpoint(method: "GET", path: "/openapi.yaml", summary: "The OpenAPI 3 document of this API"),
    ]

    /// The HTTP application for `coordinator`: run it with `runService()`, inside a `ServiceGroup`,
    /// or test it with HummingbirdTesting. It does not run the coordinator itself (see `serve`).
    public static func build(coordinator: Coordinator, configuration: HTTPConfiguration) -> some ApplicationProtocol {
        let (router, uploads) = makeRouter(coordinator: coordinator, configuration: configuration)
        let logger = configuration.logger
        let host = configuration.host
        return Application(
            router: router,
            configuration: ApplicationConfiguration(
                address: .hostname(host, port: configuration.port), serverName: "farm"),
            services: [uploads],
            onServerRunning: { channel in
                let port = channel.localAddress?.port ?? configuration.port
                logger.info("http listening", metadata: ["address": "\(host):\(port)"])
            },
            logger: logger)
    }

    /// The router alone (tests read its routes to check them against the OpenAPI document).
    public static func router(coordinator: Coordinator, configuration: HTTPConfiguration) -> Router<Context> {
        makeRouter(coordinator: coordinator, configuration: configuration).0
    }

    /// Runs the coordinator's node listener and job loop beside the HTTP server until SIGTERM or
    /// SIGINT (or task cancellation) stops both.
    public static func serve(
        coordinator: Coordinator, listener: NodeListener, configuration: HTTPConfiguration
    ) async throws {
        let app = build(coordinator: coordinator, configuration: configuration)
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: [
                    .init(service: CoordinatorService(coordinator: coordinator, listener: listener)),
                    .init(service: HTTPServerService(app: app, address: "\(configuration.host):\(configuration.port)")),
                ],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: configuration.logger))
        try await group.run()
    }

    static func makeRouter(coordinator: Coordinator, configuration: HTTPConfiguration) -> (Router<Context>, Uploads) {
        try? FileManager.default.createDirectory(atPath: configuration.outputDirectory, withIntermediateDirectories: true)
        try? FileManager.default.createDirectory(atPath: configuration.uploadDirectory, withIntermediateDirectories: true)
        let metrics = FarmMetrics(scaleDownWindow: configuration.scaleDownWindow)
        let uploads = Uploads(
            directory: configuration.uploadDirectory, maxBytes: configuration.maxUploadBytes, coordinator: coordinator,
            metrics: metrics, maxConcurrent: configuration.maxConcurrentUploads,
            staleSeconds: configuration.staleUploadSeconds)
        let routes = Routes(
            coordinator: coordinator, configuration: configuration, policy: SourcePolicy(roots: configuration.sourceRoots),
            uploads: uploads, metrics: metrics, probe: ProbeCache(), encoders: EncoderAvailability())
        let router = Router(context: Context.self)
        router.add(middleware: TusProtocolMiddleware())
        router.add(middleware: ErrorMappingMiddleware())
        if let token = configuration.apiToken, !token.isEmpty {
            router.add(middleware: BearerTokenMiddleware(token: token, metricsOpen: configuration.metricsOpen))
        }
        router.post("/jobs") { request, context in try await routes.submit(request, context: context) }
        router.get("/jobs") { _, _ in await routes.listJobs() }
        router.get("/jobs/:id") { _, context in try await routes.job(try context.parameters.require("id")) }
        router.delete("/jobs/:id") { _, context in try await routes.cancel(try context.parameters.require("id")) }
        router.get("/jobs/:id/output") { request, context in
            try await routes.output(try context.parameters.require("id"), request: request)
        }
        router.post("/uploads") { request, _ in try await routes.createUpload(request) }
        router.get("/uploads/:id") { _, context in try await routes.uploadStatus(try context.parameters.require("id")) }
        router.put("/uploads/:id") { request, context in
            try await routes.appendUpload(try context.parameters.require("id"), request: request)
        }
        router.delete("/uploads/:id") { _, context in try routes.deleteUpload(try context.parameters.require("id")) }
        Tus.addRoutes(to: router, routes: routes)
        router.get("/nodes") { _, _ in await routes.nodes() }
        router.get("/health") { _, _ in HealthJSON(status: "ok").jsonResponse() }
        router.get("/ready") { _, _ in await routes.ready() }
        router.get("/api") { _, _ in APIIndexJSON(endpoints: endpoints).jsonResponse() }
        router.get("/validate-system") { _, _ in await routes.validateSystem() }
        router.get("/metrics") { _, _ in await routes.metricsText() }
        router.get("/openapi.yaml") { _, _ in
            var buffer = ByteBuffer()
            buffer.writeString(OpenAPIDocument.yaml)
            return Response(
                status: .ok,
                headers: [.contentType: "application/yaml; charset=utf-8", .contentLength: "\(buffer.readableBytes)"],
                body: ResponseBody(byteBuffer: buffer))
        }
        return (router, uploads)
    }
}

/// The coordinator as a service: its node listener and job loop run until graceful shutdown.
struct CoordinatorService: Service {
    let coordinator: Coordinator
    let listener: NodeListener

    func run() async throws {
        try await cancelWhenGracefulShutdown {
            try await coordinator.run(listener)
        }
    }
}

/// The HTTP application as a service whose failures (a port in use) name the address.
struct HTTPServerService<App: ApplicationProtocol>: Service {
    let app: App
    let address: String

    func run() async throws {
        do {
            try await app.run()
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            throw CoordinatorError(.io, "cannot serve the HTTP API on \(address): \(error)")
        }
    }
}

struct HealthJSON: Encodable {
    var status: String
}

struct APIIndexJSON: Encodable {
    struct Entry: Encodable {
        var method: String
        var path: String
        var summary: String
    }
    var endpoints: [Entry]
    var openapi = "/openapi.yaml"

    init(endpoints: [HTTPAPI.Endpoint]) {
        self.endpoints = endpoints.map { Entry(method: $0.method, path: $0.path, summary: $0.summary) }
    }
}

struct ReadyJSON: Encodable {
    var ready: Bool
    var nodes: Int
    var unfinishedJobs: Int
    var error: String?

    enum CodingKeys: String, CodingKey {
        case ready, nodes, error
        case unfinishedJobs = "unfinished_jobs"
    }
}

/// Which codecs this build of libavcodec can encode, asked once on a thread of its own.
final class EncoderAvailability: Sendable {
    private let found = Mutex<[VideoCodec: String]?>(nil)

    func encoder(for codec: VideoCodec) async -> String? {
        if let found = found.withLock({ $0 }) { return found[codec] }
        let result: [VideoCodec: String]
        do {
            result = try await Offload.run("encoder catalog") { _ -> [VideoCodec: String] in
                var map: [VideoCodec: String] = [:]
                for codec in VideoCodec.allCases { map[codec] = EncoderCatalog.softwareEncoder(for: codec) }
                return map
            }
        } catch {
            return nil
        }
        found.withLock { $0 = result }
        return result[codec]
    }
}

/// The route handlers; one value shared by every request.
struct Routes: Sendable {
    let coordinator: Coordinator
    let configuration: HTTPConfiguration
    let policy: SourcePolicy
    let uploads: Uploads
    let metrics: FarmMetrics
    let probe: ProbeCache
    let encoders: EncoderAvailability

    static let maxJSONBytes = 64 * 1024
    static let maxFieldBytes = 64 * 1024

    // MARK: POST /jobs

    func submit(_ request: Request, context: HTTPAPI.Context) async throws -> Response {
        let contentType = request.headers[.contentType] ?? ""
        let mediaType = contentType.split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces).lowercased() } ?? ""
        switch mediaType {
        case "application/json":
            let body = try await request.body.collect(upTo: Self.maxJSONBytes)
            let submission = try Submission.parse(json: Data(body.readableBytesView))
            return try await submitSource(submission)
        case "application/x-www-form-urlencoded":
            let body = try await request.body.collect(upTo: Self.maxJSONBytes)
            let submission = try Submission.parse(text: Self.formFields(String(buffer: body)))
            return try await submitSource(submission)
        case "multipart/form-data":
            guard let boundary = MultipartParser.boundary(contentType: contentType) else {
                throw APIError.badRequest("multipart/form-data without a boundary parameter")
            }
            return try await submitMultipart(request, boundary: boundary)
        case "":
            throw APIError(
                .unsupportedMediaType,
                "missing Content-Type: send application/json with a source, multipart/form-data with a file, "
                    + "or the file itself (application/octet-stream) with the fields as query parameters")
        default:
            return try await submitRawUpload(request)
        }
    }

    /// JSON or form: a source path under a root (or a URL).
    private func submitSource(_ submission: Submission) async throws -> Response {
        if let upload = submission.upload { return try await submitUpload(submission, id: upload) }
        guard let source = submission.source else {
            throw APIError.badRequest(
                "source is required: a path under a source root, or upload the file as multipart/form-data")
        }
        // A URL is checked by the coordinator now and downloaded when the job runs.
        if submission.isURL { return try await enqueue(submission, source: source, upload: nil, name: nil) }
        let resolved = try policy.resolve(source)
        return try await enqueue(submission, source: resolved, upload: nil, name: nil)
    }

    /// The body is the file; the fields come as query parameters (what `farm submit` sends).
    private func submitRawUpload(_ request: Request) async throws -> Response {
        var fields: [String: String] = [:]
        var filename: String?
        for (key, value) in request.uri.queryParameters {
            if key == "filename" { filename = String(value) } else { fields[String(key)] = String(value) }
        }
        if filename == nil, let header = request.headers[HTTPField.Name("X-Filename")!] { filename = header }
        var submission = try Submission.parse(text: fields)
        guard submission.source == nil else {
            throw APIError.badRequest("source cannot be given with an uploaded file")
        }
        try await checkEncoder(submission.codec)
        try uploads.admit()
        if let length = request.headers[.contentLength].flatMap(Int64.init), length > configuration.maxUploadBytes {
            throw APIError(.contentTooLarge, "upload of \(length) bytes is larger than the \(configuration.maxUploadBytes)-byte limit")
        }
        let path = uploads.makePath(filename: filename)
        defer { uploads.release(path) }
        let bytes = try await uploads.receive(CountingSequence(base: request.body, metrics: metrics), to: path)
        guard bytes > 0 else {
            unlink(path)
            throw APIError.badRequest("empty upload")
        }
        submission.source = nil
        return try await enqueue(submission, source: path, upload: path, name: filename ?? "upload")
    }

    /// Fields and one file part, streamed to disk.
    private func submitMultipart(_ request: Request, boundary: String) async throws -> Response {
        var parser = MultipartParser(boundary: boundary)
        var fields: [String: String] = [:]
        var fieldName: String?
        var fieldBytes: [UInt8] = []
        var writer: UploadWriter?
        var uploadPath: String?
        var uploadName: String?
        var inFile = false
        do {
            for try await chunk in request.body {
                let events: [MultipartParser.Event]
                do {
                    events = try parser.feed(chunk)
                } catch {
                    throw APIError.badRequest("bad multipart body: \(error)")
                }
                for event in events {
                    switch event {
                    case .partStart(let name, let filename, _):
                        if let filename {
                            guard uploadPath == nil else { throw APIError.badRequest("more than one file in the upload") }
                            try uploads.admit()
                            let path = uploads.makePath(filename: filename)
                            uploadPath = path
                            uploadName = filename.isEmpty ? name : filename
                            writer = try await UploadWriter(path: path, limit: configuration.maxUploadBytes)
                            inFile = true
                        } else {
                            fieldName = name
                            fieldBytes = []
                            inFile = false
                        }
                    case .body(let bytes):
                        if inFile {
                            try await writer?.write(bytes)
                            metrics.bytesIn.increment(by: Int64(bytes.readableBytes))
                        } else {
                            fieldBytes.append(contentsOf: bytes.readableBytesView)
                            guard fieldBytes.count <= Self.maxFieldBytes else {
                                throw APIError(.contentTooLarge, "form field '\(fieldName ?? "")' larger than \(Self.maxFieldBytes) bytes")
                            }
                        }
                    case .partEnd:
                        if inFile {
                            _ = try await writer?.close()
                            writer = nil
                            inFile = false
                        } else if let name = fieldName {
                            fields[name] = String(decoding: fieldBytes, as: UTF8.self)
                            fieldName = nil
                        }
                    }
                }
            }
            do {
                try parser.finish()
            } catch {
                throw APIError.badRequest("bad multipart body: \(error)")
            }
            // Form fields named "file" without a filename are not files; anything else must be a known field.
            fields["file"] = nil
            let submission = try Submission.parse(text: fields)
            guard let path = uploadPath else {
                return try await submitSource(submission)
            }
            guard submission.source == nil else { throw APIError.badRequest("source cannot be given with an uploaded file") }
            defer { uploads.release(path) }
            return try await enqueue(submission, source: path, upload: path, name: uploadName)
        } catch {
            if let writer { await writer.discard() }
            if let uploadPath {
                unlink(uploadPath)
                uploads.release(uploadPath)
            }
            throw error
        }
    }

    func checkEncoder(_ codec: VideoCodec) async throws {
        guard await encoders.encoder(for: codec) != nil else {
            throw APIError.badRequest("codec \(codec.rawValue): no encoder for it in this build of libavcodec")
        }
    }

    func enqueue(_ submission: Submission, source: String, upload: String?, name: String?) async throws -> Response {
        do {
            try await checkEncoder(submission.codec)
            try FileManager.default.createDirectory(atPath: configuration.outputDirectory, withIntermediateDirectories: true)
            let output = "\(configuration.outputDirectory)/\(UUID().uuidString.lowercased()).\(submission.container)"
            let id = try await coordinator.submit(submission.request(source: source, output: output))
            if upload != nil { uploads.adopt(job: id, name: name) }
            configuration.logger.info(
                "job submitted over http", metadata: ["job": "\(id)", "source": "\(name.map { "upload:\($0)" } ?? source)"])
            var response = CreatedJSON(id: id, state: JobState.queued.rawValue, url: "/jobs/\(id)").jsonResponse(status: .created)
            response.headers[.location] = "/jobs/\(id)"
            return response
        } catch {
            if let upload { unlink(upload) }
            throw error
        }
    }

    /// `a=1&b=two+words` → ["a": "1", "b": "two words"].
    static func formFields(_ text: String) -> [String: String] {
        var fields: [String: String] = [:]
        for pair in text.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            func decode(_ s: Substring) -> String {
                let spaced = s.replacingOccurrences(of: "+", with: " ")
                return spaced.removingPercentEncoding ?? spaced
            }
            fields[decode(parts[0])] = parts.count > 1 ? decode(parts[1]) : ""
        }
        return fields
    }

    // MARK: Jobs

    func listJobs() async -> Response {
        let jobs = await coordinator.listJobs()
        return JobListJSON(jobs: jobs.map { JobJSON($0, source: uploads.displaySource($0)) }).jsonResponse()
    }

    func job(_ id: String) async throws -> Response {
        guard let status = await coordinator.status(id) else { throw APIError.notFound("no job \(id)") }
        return JobJSON(status, source: uploads.displaySource(status)).jsonResponse()
    }

    func cancel(_ id: String) async throws -> Response {
        guard let before = await coordinator.status(id) else { throw APIError.notFound("no job \(id)") }
        guard !before.state.isFinished else {
            throw APIError.conflict("job \(id) is already \(before.state.rawValue)")
        }
        do {
            try await coordinator.cancel(id, reason: "cancelled over the HTTP API")
        } catch let error as CoordinatorError {
            throw APIError.from(error)
        }
        configuration.logger.info("job cancelled over http", metadata: ["job": "\(id)"])
        // The upload goes now, not at the next sweep: once the answer says cancelled, its bytes are gone.
        await uploads.sweep()
        guard let status = await coordinator.status(id) else { throw APIError.notFound("no job \(id)") }
        return JobJSON(status, source: uploads.displaySource(status)).jsonResponse()
    }

    func output(_ id: String, request: Request) async throws -> Response {
        guard let status = await coordinator.status(id) else { throw APIError.notFound("no job \(id)") }
        guard status.state == .done else {
            switch status.state {
            case .failed, .cancelled:
                throw APIError(.gone, "job \(id) is \(status.state.rawValue)\(status.error.map { ": \($0)" } ?? ""); it has no output")
            default:
                throw APIError.conflict("job \(id) is \(status.state.rawValue) (\(status.phase)); its output is ready when it is done")
            }
        }
        let path = status.output
        guard let info = try await FileSystem.shared.info(forFileAt: FilePath(path)) else {
            throw APIError(.gone, "job \(id): its output file is gone")
        }
        let size = Int64(info.size)
        let ext = (path as NSString).pathExtension.lowercased()
        var headers: HTTPFields = [
            .contentType: Self.mediaType(ext), .acceptRanges: "bytes",
            .contentDisposition: "attachment; filename=\"\(id).\(ext)\"",
        ]
        var range: ClosedRange<Int64>? = nil
        if let header = request.headers[.range] {
            switch ByteRange.parse(header, size: size) {
            case .whole: break
            case .range(let r): range = r
            case .unsatisfiable:
                throw APIError(
                    .rangeNotSatisfiable, "range \(header) is outside the \(size)-byte output",
                    headers: [.contentRange: "bytes */\(size)"])
            }
        }
        let answer: HTTPResponse.Status
        if let range {
            answer = .partialContent
            headers[.contentRange] = "bytes \(range.lowerBound)-\(range.upperBound)/\(size)"
        } else {
            answer = .ok
        }
        let span = range ?? (size > 0 ? 0...(size - 1) : nil)
        let length = span.map { Int($0.upperBound - $0.lowerBound + 1) } ?? 0
        headers[.contentLength] = "\(length)"
        guard let span else { return Response(status: answer, headers: headers, body: ResponseBody()) }
        let metrics = self.metrics
        let body = ResponseBody(contentLength: length) { writer in
            try await FileSystem.shared.withFileHandle(forReadingAt: FilePath(path)) { handle in
                for try await chunk in handle.readChunks(in: span, chunkLength: .kibibytes(256)) {
                    try await writer.write(chunk)
                    metrics.bytesOut.increment(by: Int64(chunk.readableBytes))
                }
            }
            try await writer.finish(nil)
        }
        return Response(status: answer, headers: headers, body: body)
    }

    static func mediaType(_ ext: String) -> String {
        switch ext {
        case "mkv": "video/x-matroska"
        case "mov": "video/quicktime"
        default: "video/mp4"
        }
    }

    // MARK: Nodes, health, metrics

    func nodes() async -> Response {
        let list = await coordinator.connectedNodes()
        let speeds = metrics.nodeSpeeds(jobs: await coordinator.listJobs(includingEarlierRuns: false))
        return NodeListJSON(nodes: list.map { NodeJSON($0, fps: speeds[$0.id]) }).jsonResponse()
    }

    func ready() async -> Response {
        let nodes = await coordinator.connectedNodes().count
        let unfinished = await coordinator.listJobs().filter { !$0.state.isFinished }.count
        let directory = configuration.outputDirectory
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue,
            access(directory, W_OK) == 0
        else {
            return ReadyJSON(ready: false, nodes: nodes, unfinishedJobs: unfinished, error: "\(directory) is not a writable directory")
                .jsonResponse(status: .serviceUnavailable)
        }
        return ReadyJSON(ready: true, nodes: nodes, unfinishedJobs: unfinished).jsonResponse()
    }

    func validateSystem() async -> Response {
        let result = await SystemValidation.run(coordinator: coordinator, configuration: configuration, probe: probe)
        return result.jsonResponse(status: result.ok ? .ok : .serviceUnavailable)
    }

    func metricsText() async -> Response {
        // This run's jobs: counters count what happened since the start, not what the store remembers.
        let text = metrics.render(
            jobs: await coordinator.listJobs(includingEarlierRuns: false), nodeList: await coordinator.connectedNodes())
        var buffer = ByteBuffer()
        buffer.writeString(text)
        return Response(
            status: .ok,
            headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8", .contentLength: "\(buffer.readableBytes)"],
            body: ResponseBody(byteBuffer: buffer))
    }
}

/// A request body that counts its bytes into `farm_http_bytes_in_total` as they pass.
struct CountingSequence<Base: AsyncSequence & Sendable>: AsyncSequence, Sendable where Base.Element == ByteBuffer {
    typealias Element = ByteBuffer
    let base: Base
    let metrics: FarmMetrics

    struct AsyncIterator: AsyncIteratorProtocol {
        var base: Base.AsyncIterator
        let metrics: FarmMetrics

        mutating func next() async throws -> ByteBuffer? {
            guard let chunk = try await base.next() else { return nil }
            metrics.bytesIn.increment(by: Int64(chunk.readableBytes))
            return chunk
        }
    }

    func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(base: base.makeAsyncIterator(), metrics: metrics)
    }
}

/// A single `Range: bytes=...` request against a file of `size` bytes (RFC 9110 §14.1.2).
enum ByteRange: Equatable {
    /// No usable range (absent, malformed, or several ranges): send the whole file.
    case whole
    case range(ClosedRange<Int64>)
    case unsatisfiable

    static func parse(_ header: String, size: Int64) -> ByteRange {
        let value = header.trimmingCharacters(in: .whitespaces)
        guard value.lowercased().hasPrefix("bytes=") else { return .whole }
        let spec = value.dropFirst("bytes=".count).trimmingCharacters(in: .whitespaces)
        guard !spec.contains(",") else { return .whole }
        let parts = spec.split(separator: "-", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2 else { return .whole }
        let first = parts[0].trimmingCharacters(in: .whitespaces)
        let last = parts[1].trimmingCharacters(in: .whitespaces)
        if first.isEmpty {
            // The last N bytes.
            guard let suffix = Int64(last), suffix >= 0 else { return .whole }
            guard suffix > 0, size > 0 else { return .unsatisfiable }
            return .range(max(size - suffix, 0)...(size - 1))
        }
        guard let start = Int64(first), start >= 0 else { return .whole }
        let end: Int64
        if last.isEmpty {
            end = size - 1
        } else {
            guard let e = Int64(last), e >= start else { return .whole }
            end = min(e, size - 1)
        }
        guard start < size else { return .unsatisfiable }
        return .range(start...end)
    }
}
