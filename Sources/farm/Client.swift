import ArgumentParser
import FarmAPI
import FarmProtocol
import Foundation
import OpenAPIRuntime

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif
#if canImport(Glibc)
    import Glibc
#endif

// The client commands speak to a coordinator's HTTP API. Files stream from and to disk: uploads
// with URLSession's upload-from-file, downloads to a temporary file renamed into place at the end.

/// Where the coordinator's HTTP API is, and the token it may want.
struct ServerOptions: ParsableArguments {
    @Option(help: "The coordinator's HTTP API (default: FARM_SERVER, else http://127.0.0.1:8080).")
    var server: String?

    func client() throws -> APIClient {
        let environment = FarmEnvironment.current
        let text = server ?? environment.server ?? "http://127.0.0.1:8080"
        let withScheme = text.contains("://") ? text : "http://\(text)"
        guard let url = URL(string: withScheme), let scheme = url.scheme?.lowercased(), scheme == "http" || scheme == "https",
            url.host != nil
        else {
            throw ValidationError("--server must be an http(s) URL, got '\(text)'")
        }
        return APIClient(base: url, token: environment.apiToken)
    }
}

/// `farm submit`: queue a job on a coordinator, optionally wait for it and download the output.
struct Submit: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "submit",
        abstract: "Submit a video to a coordinator's HTTP API; with --wait or -o, follow it and download the output.",
        discussion: """
            A local file is uploaded (streamed from disk). With --remote, INPUT is a path on the coordinator \
            under one of its --source-root directories, and nothing is uploaded. Prints the job id.
            """)

    @Argument(help: "The video to encode: a local file, or with --remote a path on the coordinator.")
    var input: String

    @OptionGroup var serverOptions: ServerOptions

    @Flag(help: "Wait until the job ends, showing its progress.")
    var wait = false

    @Option(name: .shortAndLong, help: "Download the output here when the job is done (implies --wait).")
    var output: String?

    @Flag(help: "INPUT is a path on the coordinator (under a --source-root), not a local file to upload.")
    var remote = false

    @Option(help: "h264, hevc or av1.")
    var codec: String?

    @Option(help: "Constant rate factor (default per codec: 23, 28, 35).")
    var crf: Int?

    @Option(help: "Encoder preset, ultrafast ... veryslow.")
    var preset: String?

    @Option(help: "mp4, mkv or mov (default: from -o, else mp4).")
    var container: String?

    @Option(name: .customLong("segment-seconds"), help: "Target segment length in seconds.")
    var segmentSeconds: Double?

    @Option(name: .customLong("node-label"), help: "A label every node that gets a segment must carry (repeatable).")
    var nodeLabels: [String] = []

    @Option(name: .customLong("chunk-mib"), help: "Upload chunk size in MiB (each request stays under 100 MB).")
    var chunkMiB = 32.0

    @Option(name: .customLong("upload-retries"), help: "Failed chunks in a row before an upload gives up.")
    var uploadRetries = 8

    func validate() throws {
        if let output {
            let directory = URL(fileURLWithPath: output).deletingLastPathComponent().path
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
                throw ValidationError("-o \(output): \(directory) is not a directory")
            }
        }
        guard chunkMiB > 0, chunkMiB <= 90 else { throw ValidationError("--chunk-mib must be more than 0 and at most 90") }
        if let problem = NodeLabels.problem(nodeLabels) { throw ValidationError("--node-label: \(problem)") }
        if !remote, !Self.isURL(input) {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: input, isDirectory: &isDirectory), !isDirectory.boolValue else {
                throw ValidationError("\(input): no such file (use --remote for a path on the coordinator)")
            }
        }
    }

    static func isURL(_ text: String) -> Bool {
        let lower = text.lowercased()
        return lower.hasPrefix("http://") || lower.hasPrefix("https://")
    }

    var chosenContainer: String? {
        if let container { return container.lowercased() }
        guard let output else { return nil }
        let ext = URL(fileURLWithPath: output).pathExtension.lowercased()
        return ["mp4", "mkv", "mov"].contains(ext) ? ext : nil
    }

    func run() async throws {
        let client = try serverOptions.client()
        let progress = ProgressLine()
        var fields: [(String, String)] = []
        if let codec { fields.append(("codec", codec)) }
        if let crf { fields.append(("crf", String(crf))) }
        if let preset { fields.append(("preset", preset)) }
        if let chosenContainer { fields.append(("container", chosenContainer)) }
        if let segmentSeconds { fields.append(("segment_seconds", String(segmentSeconds))) }
        if !nodeLabels.isEmpty { fields.append(("node_labels", nodeLabels.joined(separator: ","))) }

        let created: CreatedReply
        do {
            if remote || Self.isURL(input) {
                let job = try sourceJob(source: remote ? Self.absolute(input) : input)
                let reply = try await client.call("POST /jobs") { try await $0.submitJob(body: .json(.init(value1: job))) }
                created = CreatedReply(id: try reply.created.body.json.id)
            } else {
                let name = URL(fileURLWithPath: input).lastPathComponent
                let size = (try? FileManager.default.attributesOfItem(atPath: input)[.size] as? Int64) ?? nil
                let chunked = ChunkedUpload(
                    client: client, file: input, chunkBytes: max(Int64(chunkMiB * Double(1 << 20)), 1), retries: uploadRetries,
                    progress: progress)
                var body: [String: JSONScalar] = [:]
                for (key, value) in fields {
                    body[key] = key == "crf" ? .int(crf ?? 0) : key == "segment_seconds" ? .double(segmentSeconds ?? 0) : .string(value)
                }
                if let reply = try await chunked.run(fields: body) {
                    created = reply
                } else {
                created = try await client.upload(
                    file: URL(fileURLWithPath: input), path: "/jobs", query: fields + [("filename", name)]
                ) { sent, total in
                    progress.show(fraction: total > 0 ? Double(sent) / Double(total) : 0,
                        text: "upload \(Self.bytes(sent))/\(Self.bytes(total > 0 ? total : size ?? 0))")
                }
                }
                progress.finish("uploaded \(Self.bytes(size ?? 0))")
            }
        } catch let error as APIClient.Failure {
            progress.clear()
            fail(error.description)
        }
        print(created.id)
        guard wait || output != nil else { return }

        let final: Components.Schemas.Job
        do {
            final = try await follow(created.id, client: client, progress: progress)
        } catch let error as APIClient.Failure {
            progress.clear()
            fail(error.description)
        }
        guard final.state == .done else {
            fail("job \(final.id) \(final.state.rawValue)\(final.error?.value.map { ": \($0)" } ?? "")")
        }
        let encoders = final.encoders_by_node.additionalProperties
        progress.finish(
            "done: \(final.total_frames) frames in \(String(format: "%.1f", final.wall_s)) s"
                + (encoders.isEmpty ? "" : " (\(encoders.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ", ")))"))
        guard let output else { return }
        do {
            let bytes = try await client.download("/jobs/\(final.id)/output", to: URL(fileURLWithPath: output)) { received, total in
                progress.show(fraction: total > 0 ? Double(received) / Double(total) : 0,
                    text: "download \(Self.bytes(received))/\(Self.bytes(total))")
            }
            progress.finish("saved \(output) (\(Self.bytes(bytes)))")
        } catch let error as APIClient.Failure {
            progress.clear()
            fail(error.description)
        }
    }

    /// The JSON request for a source on the coordinator (a path or a URL); unknown names are refused here.
    func sourceJob(source: String) throws -> Components.Schemas.SourceJob {
        func choice<T: RawRepresentable & CaseIterable>(_ name: String, _ value: String?, _ type: T.Type) throws -> T?
        where T.RawValue == String {
            guard let value else { return nil }
            guard let known = T(rawValue: value.lowercased()) else {
                throw APIClient.Failure(
                    status: nil,
                    description: "unknown \(name) '\(value)'; expected one of \(T.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            return known
        }
        return Components.Schemas.SourceJob(
            source: source, codec: try choice("codec", codec, Components.Schemas.Codec.self), crf: crf,
            preset: try choice("preset", preset, Components.Schemas.Preset.self),
            container: try choice("container", chosenContainer, Components.Schemas.Container.self),
            segment_seconds: segmentSeconds, nodes: nodeLabels.isEmpty ? nil : .init(labels: nodeLabels))
    }

    /// Polls the job until it ends, drawing segments, fps and ETA.
    func follow(_ id: String, client: APIClient, progress: ProgressLine) async throws -> Components.Schemas.Job {
        var failures = 0
        while true {
            let job: Components.Schemas.Job
            do {
                job = try await client.call("GET /jobs/\(id)") { try await $0.getJob(path: .init(id: id)) }.ok.body.json
                failures = 0
            } catch let error as APIClient.Failure where error.status == nil && failures < 10 {
                // The coordinator may be restarting; a few missed polls are not the end of the job.
                failures += 1
                try await Task.sleep(for: .seconds(1))
                _ = error
                continue
            }
            if [.done, .failed, .cancelled].contains(job.state) { return job }
            let done = job.segments.filter { $0.state == .done }.count
            var text = "\(job.phase)"
            if !job.segments.isEmpty { text += " \(done)/\(job.segments.count) segments" }
            if job.fps > 0 { text += String(format: " %.1f fps", job.fps) }
            if let eta = job.eta_s?.value { text += " ETA \(Self.clock(eta))" }
            progress.show(fraction: job.progress, text: text)
            try await Task.sleep(for: .milliseconds(500))
        }
    }

    static func absolute(_ path: String) -> String {
        path.hasPrefix("/") ? path : URL(fileURLWithPath: path).standardizedFileURL.path
    }

    static func bytes(_ n: Int64) -> String {
        let value = Double(n)
        if value >= Double(1 << 30) { return String(format: "%.2f GiB", value / Double(1 << 30)) }
        if value >= Double(1 << 20) { return String(format: "%.1f MiB", value / Double(1 << 20)) }
        if value >= 1024 { return String(format: "%.0f KiB", value / 1024) }
        return "\(n) B"
    }

    static func clock(_ seconds: Double) -> String {
        let s = Int(seconds.rounded())
        return s >= 3600 ? String(format: "%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60) : String(format: "%d:%02d", s / 60, s % 60)
    }
}

enum JSONScalar: Encodable {
    case string(String)
    case int(Int)
    case double(Double)

    func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .string(let s): try c.encode(s)
        case .int(let i): try c.encode(i)
        case .double(let d): try c.encode(d)
        }
    }
}

struct CreatedReply: Decodable {
    var id: String
}

struct ErrorReply: Decodable {
    var error: String
}

// MARK: - HTTP

/// A small client of the coordinator's API over URLSession, with progress for uploads and downloads.
final class APIClient: NSObject, @unchecked Sendable, URLSessionDataDelegate, URLSessionDownloadDelegate {
    struct Failure: Error, CustomStringConvertible {
        /// nil when no HTTP answer came (connection refused, timeout).
        var status: Int?
        var description: String
    }

    let base: URL
    let token: String?
    private var session: URLSession!
    private let lock = NSLock()
    private var transfers: [Int: Transfer] = [:]

    /// The state of one task: its progress callback, the bytes of a small reply, or the file a
    /// download was moved to before URLSession deletes it.
    private final class Transfer {
        var progress: (Int64, Int64) -> Void
        var data = Data()
        var downloadedFile: URL?
        var destinationDirectory: URL?
        var continuation: CheckedContinuation<(Data, HTTPURLResponse, URL?), any Error>?
        init(progress: @escaping (Int64, Int64) -> Void) { self.progress = progress }
    }

    init(base: URL, token: String?) {
        self.base = base
        self.token = token
        super.init()
        let configuration = URLSessionConfiguration.default
        configuration.timeoutIntervalForRequest = 120
        configuration.timeoutIntervalForResource = 7 * 24 * 3600
        let queue = OperationQueue()
        queue.maxConcurrentOperationCount = 1
        session = URLSession(configuration: configuration, delegate: self, delegateQueue: queue)
    }

    func request(_ method: String, _ path: String, query: [(String, String)] = []) -> URLRequest {
        var components = URLComponents(url: base, resolvingAgainstBaseURL: false)!
        let prefix = components.path.hasSuffix("/") ? String(components.path.dropLast()) : components.path
        components.percentEncodedPath = prefix + path
        if !query.isEmpty { components.queryItems = query.map { URLQueryItem(name: $0.0, value: $0.1) } }
        // '+' is a space to form decoders; keep it literal.
        components.percentEncodedQuery = components.percentEncodedQuery?.replacingOccurrences(of: "+", with: "%2B")
        var request = URLRequest(url: components.url!)
        request.httpMethod = method
        if let token { request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
        return request
    }

    /// A request with a small JSON body (or none), its reply decoded.
    func json<T: Decodable>(_ type: T.Type, _ method: String, _ path: String, body: Data? = nil) async throws -> T {
        let data = try await raw(method, path, body: body)
        do {
            return try JSONDecoder().decode(T.self, from: data)
        } catch {
            throw Failure(status: nil, description: "\(method) \(path): unexpected reply: \(String(decoding: data.prefix(300), as: UTF8.self))")
        }
    }

    /// A request's reply body, or a failure with the API's error message.
    func raw(_ method: String, _ path: String, body: Data? = nil) async throws -> Data {
        var request = request(method, path)
        if let body {
            request.httpBody = body
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        }
        let (data, response, _) = try await run(session.dataTask(with: request), progress: { _, _ in })
        try check(response, data: data, what: "\(method) \(path)")
        return data
    }

    /// Streams a file as the request body (never whole in memory).
    func upload<T: Decodable>(
        file: URL, path: String, query: [(String, String)], progress: @escaping (Int64, Int64) -> Void
    ) async throws -> T {
        var request = request("POST", path, query: query)
        request.setValue("application/octet-stream", forHTTPHeaderField: "Content-Type")
        if let size = try? FileManager.default.attributesOfItem(atPath: file.path)[.size] as? Int64 {
            request.setValue(String(size), forHTTPHeaderField: "Content-Length")
        }
        let (data, response, _) = try await run(session.uploadTask(with: request, fromFile: file), progress: progress)
        try check(response, data: data, what: "upload of \(file.lastPathComponent)")
        do {
            return try JSONDecoder().decode(T.self, from: data)
        } catch {
            throw Failure(status: nil, description: "upload: unexpected reply: \(String(decoding: data.prefix(300), as: UTF8.self))")
        }
    }

    /// Downloads to a temporary file beside `destination` and renames it into place when whole.
    func download(_ path: String, to destination: URL, progress: @escaping (Int64, Int64) -> Void) async throws -> Int64 {
        let task = session.downloadTask(with: request("GET", path))
        let directory = destination.deletingLastPathComponent()
        let (_, response, file) = try await run(task, progress: progress, destinationDirectory: directory)
        guard let file else { throw Failure(status: response.statusCode, description: "GET \(path): no file was received") }
        guard (200..<300).contains(response.statusCode) else {
            let body = (try? Data(contentsOf: file)) ?? Data()
            try? FileManager.default.removeItem(at: file)
            try check(response, data: body, what: "GET \(path)")
            throw Failure(status: response.statusCode, description: "GET \(path): HTTP \(response.statusCode)")
        }
        let size = (try? FileManager.default.attributesOfItem(atPath: file.path)[.size] as? Int64) ?? 0
        if response.expectedContentLength >= 0, size != response.expectedContentLength {
            try? FileManager.default.removeItem(at: file)
            throw Failure(status: nil, description: "GET \(path): got \(size) of \(response.expectedContentLength) bytes")
        }
        guard rename(file.path, destination.path) == 0 else {
            let reason = String(cString: strerror(errno))
            try? FileManager.default.removeItem(at: file)
            throw Failure(status: nil, description: "\(destination.path): \(reason)")
        }
        return size
    }

    /// A request with `body` sent from memory (a chunk), with upload progress.
    func send(_ request: URLRequest, body: Data, progress: @escaping (Int64, Int64) -> Void) async throws -> (Data, HTTPURLResponse) {
        let (data, response, _) = try await run(session.uploadTask(with: request, from: body), progress: progress)
        return (data, response)
    }

    func checkReply(_ response: HTTPURLResponse, data: Data, what: String) throws {
        try check(response, data: data, what: what)
    }

    private func check(_ response: HTTPURLResponse, data: Data, what: String) throws {
        guard !(200..<300).contains(response.statusCode) else { return }
        let message = (try? JSONDecoder().decode(ErrorReply.self, from: data))?.error
            ?? String(decoding: data.prefix(300), as: UTF8.self)
        throw Failure(status: response.statusCode, description: "\(what): \(response.statusCode) \(message)")
    }

    private func run(
        _ task: URLSessionTask, progress: @escaping (Int64, Int64) -> Void, destinationDirectory: URL? = nil
    ) async throws -> (Data, HTTPURLResponse, URL?) {
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                let transfer = Transfer(progress: progress)
                transfer.continuation = continuation
                transfer.destinationDirectory = destinationDirectory
                lock.withLock { transfers[task.taskIdentifier] = transfer }
                task.resume()
            }
        } onCancel: {
            task.cancel()
        }
    }

    private func transfer(_ task: URLSessionTask) -> Transfer? {
        lock.withLock { transfers[task.taskIdentifier] }
    }

    func urlSession(_ session: URLSession, task: URLSessionTask, didSendBodyData bytesSent: Int64, totalBytesSent: Int64, totalBytesExpectedToSend: Int64) {
        transfer(task)?.progress(totalBytesSent, totalBytesExpectedToSend)
    }

    func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive data: Data) {
        // Replies to API calls are small JSON documents.
        transfer(dataTask)?.data.append(data)
    }

    func urlSession(
        _ session: URLSession, downloadTask: URLSessionDownloadTask, didWriteData bytesWritten: Int64, totalBytesWritten: Int64,
        totalBytesExpectedToWrite: Int64
    ) {
        transfer(downloadTask)?.progress(totalBytesWritten, totalBytesExpectedToWrite)
    }

    func urlSession(_ session: URLSession, downloadTask: URLSessionDownloadTask, didFinishDownloadingTo location: URL) {
        // URLSession removes `location` when this returns: move it beside the destination now.
        guard let transfer = transfer(downloadTask) else { return }
        let directory = transfer.destinationDirectory ?? FileManager.default.temporaryDirectory
        let target = directory.appendingPathComponent(".farm-download-\(UUID().uuidString.prefix(8)).part")
        do {
            try FileManager.default.moveItem(at: location, to: target)
            transfer.downloadedFile = target
        } catch {
            transfer.downloadedFile = nil
        }
    }

    func urlSession(_ session: URLSession, task: URLSessionTask, didCompleteWithError error: (any Error)?) {
        guard let transfer = lock.withLock({ transfers.removeValue(forKey: task.taskIdentifier) }),
            let continuation = transfer.continuation
        else { return }
        if let error {
            if let file = transfer.downloadedFile { try? FileManager.default.removeItem(at: file) }
            continuation.resume(
                throwing: Failure(status: nil, description: "\(task.originalRequest?.url?.absoluteString ?? base.absoluteString): \(error.localizedDescription)"))
            return
        }
        guard let response = task.response as? HTTPURLResponse else {
            continuation.resume(throwing: Failure(status: nil, description: "\(base.absoluteString): no HTTP response"))
            return
        }
        continuation.resume(returning: (transfer.data, response, transfer.downloadedFile))
    }
}

/// One line of progress on standard error: redrawn in place on a terminal, a line every few seconds otherwise.
final class ProgressLine: @unchecked Sendable {
    private let terminal = isatty(STDERR_FILENO) == 1
    private let lock = NSLock()
    private var lastText = ""
    private var lastPrint = Date.distantPast

    func show(fraction: Double, text: String) {
        lock.withLock {
            let clamped = min(max(fraction.isFinite ? fraction : 0, 0), 1)
            let width = 30
            let filled = Int((clamped * Double(width)).rounded(.down))
            let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
            let line = "[\(bar)] \(String(format: "%3.0f", clamped * 100))% \(text)"
            if terminal {
                FileHandle.standardError.write(Data("\r\u{1B}[K\(line)".utf8))
                lastText = line
            } else if Date().timeIntervalSince(lastPrint) >= 5 || text.split(separator: " ").first != lastText.split(separator: " ").first {
                FileHandle.standardError.write(Data("\(line)\n".utf8))
                lastPrint = Date()
                lastText = text
            }
        }
    }

    func finish(_ text: String) {
        lock.withLock {
            FileHandle.standardError.write(Data(((terminal ? "\r\u{1B}[K" : "") + text + "\n").utf8))
            lastText = ""
        }
    }

    func clear() {
        lock.withLock {
            if terminal, !lastText.isEmpty { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
            lastText = ""
        }
    }
}
