internal import CoreMetrics
internal import FarmAPI
internal import FarmHWEncode
internal import FarmMedia
internal import Foundation
internal import HTTPTypes
public import Hummingbird
internal import HummingbirdCore
internal import HummingbirdTLS
internal import Logging
internal import NIOCore
internal import NIOSSL
internal import OpenAPIRuntime
internal import ServiceLifecycle
internal import Synchronization
internal import UnixSignals
internal import _NIOFileSystem

/// The coordinator's HTTP API (issue 4): jobs, nodes, health, metrics and its own OpenAPI document.
/// Errors of the domain become HTTP statuses here and nowhere else.
public enum HTTPAPI {
    /// The request context of every route.
    public typealias Context = BasicRequestContext

    /// Every operation of docs/openapi.yaml, in the order `GET /api` lists them.
    static var endpoints: [APIDocument.Operation] { APIDocument.operations }
    /// The HTTP application for `coordinator`: run it with `runService()`, inside a `ServiceGroup`,
    /// or test it with HummingbirdTesting. It does not run the coordinator itself (see `serve`).
    public static func build(coordinator: Coordinator, configuration: HTTPConfiguration) throws -> some ApplicationProtocol {
        let (router, uploads) = makeRouter(coordinator: coordinator, configuration: configuration)
        let logger = configuration.logger
        let host = configuration.host
        let scheme = configuration.tlsCertificateFile == nil && configuration.tlsPEM == nil ? "http" : "https"
        return Application(
            router: router,
            server: try serverBuilder(configuration),
            configuration: ApplicationConfiguration(
                address: .hostname(host, port: configuration.port), serverName: "farm"),
            services: [uploads],
            onServerRunning: { channel in
                let port = channel.localAddress?.port ?? configuration.port
                logger.info("http listening", metadata: ["address": "\(host):\(port)", "scheme": "\(scheme)"])
            },
            logger: logger)
    }

    /// HTTP/1.1 with the idle timeout, inside TLS when a certificate is configured.
    static func serverBuilder(_ configuration: HTTPConfiguration) throws -> HTTPServerBuilder {
        let idle = TimeAmount.nanoseconds(Int64(max(1, min(configuration.idleTimeoutSeconds, 86_400)) * 1e9))
        let http1 = HTTPServerBuilder.http1(configuration: .init(idleTimeout: idle))
        // The same loading, checks and messages as the node port's certificate.
        let security: NodeChannelSecurity
        switch (configuration.tlsCertificateFile, configuration.tlsKeyFile, configuration.tlsPEM) {
        case (nil, nil, nil): return http1
        case (nil, nil, let pem?): security = .tlsCertificatePEM(certificate: pem.certificate, key: pem.key)
        case (let certificate?, let key?, _): security = .tlsCertificateFiles(certificate: certificate, key: key)
        default: throw CoordinatorError(.invalidRequest, "HTTPS needs both a certificate and its key")
        }
        let identity = try NodeTLSIdentity.make(security, dataDirectory: "", subject: "", logger: configuration.logger)!
        return try .tls(http1, tlsConfiguration: identity.configuration)
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
        let app = try build(coordinator: coordinator, configuration: configuration)
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
        // tus answers (CORS preflight, Tus-Resumable on every answer, 401s included) come before the rest.
        router.add(middleware: TusProtocolMiddleware())
        router.add(middleware: ErrorMappingMiddleware())
        if let token = configuration.apiToken, !token.isEmpty {
            router.add(middleware: BearerTokenMiddleware(token: token, metricsOpen: configuration.metricsOpen))
        }
        // The JSON operations: the server generated from docs/openapi.yaml.
        do {
            // One line of JSON per answer, keys sorted, as the hand-written answers were.
            try APIHandler(routes: routes).registerHandlers(
                on: StreamingRoutesTransport(router: router),
                configuration: OpenAPIRuntime.Configuration(jsonEncodingOptions: [.sortedKeys, .withoutEscapingSlashes]),
                middlewares: [EmptyBodyIsNoBody(), PlainLocationHeader()])
        } catch {
            preconditionFailure("the generated routes do not fit the router: \(error)")
        }
        // The streaming ones, declared in the same document (docs/architecture-http.md says why).
        router.post("/jobs") { request, context in try await routes.submit(request, context: context) }
        router.get("/jobs/:id/output") { request, context in
            try await routes.output(try context.parameters.require("id"), request: request)
        }
        router.put("/uploads/:id") { request, context in
            try await routes.appendUpload(try context.parameters.require("id"), request: request)
        }
        // tus 1.0 resumable uploads at /files/, streamed to disk like the PUT above.
        Tus.addRoutes(to: router, routes: routes)
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
    /// Form fields one multipart body may carry (the known ones are fewer; a part is parsed before it is judged).
    static let maxFields = 32

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
            let fields: [String: String]
            do {
                fields = try URLEncodedFormDecoder().decode([String: String].self, from: String(buffer: body))
            } catch {
                throw APIError.badRequest("bad form body: \(APIError.oneLine("\(error)"))")
            }
            let submission = try Submission.parse(text: fields)
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
        var fieldCount = 0
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
                            fieldCount += 1
                            guard fieldCount <= Self.maxFields else {
                                throw APIError.badRequest(
                                    "more than \(Self.maxFields) form fields; POST /jobs takes \(Submission.fields.count) and a file")
                            }
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
            var response = Schemas.Created(id: id, state: .queued, url: "/jobs/\(id)").jsonResponse(status: .created)
            response.headers[.location] = "/jobs/\(id)"
            return response
        } catch {
            if let upload { unlink(upload) }
            throw error
        }
    }

    // MARK: Jobs

    func job(_ id: String) async throws -> Schemas.Job {
        guard let status = await coordinator.status(id) else { throw APIError.notFound("no job \(id)") }
        return Schemas.Job(status, source: uploads.displaySource(status))
    }

    func cancel(_ id: String) async throws -> Schemas.Job {
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
        return try await job(id)
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

    func nodes() async -> [Schemas.Node] {
        let list = await coordinator.connectedNodes()
        let speeds = metrics.nodeSpeeds(jobs: await coordinator.listJobs(includingEarlierRuns: false))
        return list.map { Schemas.Node($0, fps: speeds[$0.id]) }
    }

    func ready() async -> Schemas.Ready {
        let nodes = await coordinator.connectedNodes().count
        let unfinished = await coordinator.listJobs().filter { !$0.state.isFinished }.count
        let directory = configuration.outputDirectory
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue,
            access(directory, W_OK) == 0
        else {
            return Schemas.Ready(
                ready: false, nodes: nodes, unfinished_jobs: unfinished, error: "\(directory) is not a writable directory")
        }
        return Schemas.Ready(ready: true, nodes: nodes, unfinished_jobs: unfinished)
    }

    func metricsText() async -> String {
        // This run's jobs: counters count what happened since the start, not what the store remembers.
        metrics.render(
            jobs: await coordinator.listJobs(includingEarlierRuns: false), nodeList: await coordinator.connectedNodes(),
            bans: await coordinator.bans().count, refusedResults: await coordinator.refusedResults,
            workWaiting: await coordinator.cpuBudget.waiting)
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
