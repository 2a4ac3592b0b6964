import FarmProtocol
import Foundation

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// `farm submit`'s upload in chunks, then `POST /jobs` with the upload's id and SHA-256. It speaks tus 1.0
/// (`POST /files/`, `PATCH /files/{id}` with `Upload-Offset` and a SHA-256 `Upload-Checksum` per chunk, `HEAD` to
/// resume) and falls back to `/uploads` (`PUT` with `Content-Range`) on a coordinator without tus. Each chunk stays
/// under the 100 MB request-body limit of Akash's ingress, only one chunk is in memory at a time, and after a
/// dropped connection or a refused chunk the client asks the server how many bytes arrived and continues there.
struct ChunkedUpload {
    let client: APIClient
    let file: String
    let chunkBytes: Int64
    /// Failed chunks in a row before the upload gives up.
    let retries: Int
    let progress: ProgressLine

    /// One started upload, whichever protocol carries it.
    protocol Session {
        var id: String { get }
        /// Sends `data` at `offset`; returns the upload's offset afterwards.
        func send(_ data: Data, at offset: Int64, progress: @escaping (Int64, Int64) -> Void) async throws -> Int64
        /// Where the server says the upload stands.
        func offset() async throws -> Int64
    }

    /// Uploads the file and submits the job with `fields`; nil when the coordinator has neither `/files/` nor
    /// `/uploads` (an older one), so the caller falls back to a single upload.
    func run(fields: [String: JSONScalar]) async throws -> CreatedReply? {
        let name = URL(fileURLWithPath: file).lastPathComponent
        let size = (try FileManager.default.attributesOfItem(atPath: file)[.size] as? NSNumber)?.int64Value ?? 0
        guard size > 0 else { throw APIClient.Failure(status: nil, description: "\(file): empty file") }
        let session: any Session
        if let tus = try await TusSession.create(client: client, size: size, name: name) {
            session = tus
        } else if let ranged = try await RangeSession.create(client: client, size: size, name: name) {
            session = ranged
        } else {
            return nil
        }
        let digest = try await send(to: session, size: size)
        var job = fields
        job["upload"] = .string(session.id)
        job["sha256"] = .string(digest)
        return try await client.json(CreatedReply.self, "POST", "/jobs", body: try JSONEncoder().encode(job))
    }

    /// Sends every chunk, resuming where the server says after a failure; returns the file's SHA-256 (hex).
    private func send(to session: any Session, size: Int64) async throws -> String {
        let handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: file))
        defer { try? handle.close() }
        var checksum = SHA256Stream()
        var hashed: Int64 = 0
        var offset: Int64 = 0
        var failures = 0
        let started = Date()
        while offset < size {
            let length = min(chunkBytes, size - offset)
            try handle.seek(toOffset: UInt64(offset))
            let data = try handle.read(upToCount: Int(length)) ?? Data()
            guard Int64(data.count) == length else {
                throw APIClient.Failure(status: nil, description: "\(file): changed while it was being uploaded")
            }
            // The hash covers each byte once, in order, even when a chunk is sent again.
            if offset <= hashed, offset + length > hashed {
                data.dropFirst(Int(hashed - offset)).withUnsafeBytes { checksum.update($0) }
                hashed = offset + length
            }
            let base = offset
            do {
                offset = try await session.send(data, at: offset) { sent, _ in
                    let done = base + sent
                    let rate = Double(done) / max(Date().timeIntervalSince(started), 0.001)
                    progress.show(
                        fraction: Double(done) / Double(size),
                        text: "upload \(Submit.bytes(done))/\(Submit.bytes(size)) \(Submit.bytes(Int64(rate)))/s")
                }
                failures = 0
            } catch let error as APIClient.Failure {
                // A lost connection, a busy or failing server, a conflict or a chunk damaged on the way: try again.
                let retryable = error.status.map { [408, 409, 429, 460].contains($0) || $0 >= 500 } ?? true
                failures += 1
                guard retryable, failures <= retries else { throw error }
                try await Task.sleep(for: .milliseconds(min(250 << min(failures, 6), 10_000)))
                // The server says how much arrived: the next chunk starts there.
                if let current = try? await session.offset() { offset = current }
                progress.finish("upload interrupted (\(error.description)); resuming at byte \(offset), attempt \(failures + 1)")
            }
        }
        if hashed < size {
            try handle.seek(toOffset: UInt64(hashed))
            while let data = try handle.read(upToCount: 1 << 20), !data.isEmpty { data.withUnsafeBytes { checksum.update($0) } }
        }
        return Hex.encode(checksum.finalize())
    }
}

/// An upload in tus 1.0 at `/files/`.
struct TusSession: ChunkedUpload.Session {
    let client: APIClient
    let id: String
    var path: String { "/files/\(id)" }
    /// Seconds without a byte moving before a request fails.
    static let idleSeconds: TimeInterval = 15

    /// `POST /files/`; nil when the coordinator has no tus routes (404 or 405).
    static func create(client: APIClient, size: Int64, name: String) async throws -> TusSession? {
        var request = tusRequest(client, "POST", "/files/")
        request.setValue("\(size)", forHTTPHeaderField: "Upload-Length")
        request.setValue("filename \(Data(name.utf8).base64EncodedString())", forHTTPHeaderField: "Upload-Metadata")
        let (data, response) = try await client.send(request, body: Data(), progress: { _, _ in })
        if response.statusCode == 404 || response.statusCode == 405 { return nil }
        try client.checkReply(response, data: data, what: "POST /files/")
        guard let location = response.value(forHTTPHeaderField: "Location"),
            let id = location.split(separator: "/").last.map(String.init), !id.isEmpty
        else {
            throw APIClient.Failure(status: nil, description: "POST /files/: the answer has no upload Location")
        }
        return TusSession(client: client, id: id)
    }

    func send(_ data: Data, at offset: Int64, progress: @escaping (Int64, Int64) -> Void) async throws -> Int64 {
        var request = Self.tusRequest(client, "PATCH", path)
        request.setValue("application/offset+octet-stream", forHTTPHeaderField: "Content-Type")
        request.setValue("\(offset)", forHTTPHeaderField: "Upload-Offset")
        var digest = SHA256Stream()
        data.withUnsafeBytes { digest.update($0) }
        request.setValue("sha256 \(Data(digest.finalize()).base64EncodedString())", forHTTPHeaderField: "Upload-Checksum")
        let (reply, response) = try await client.send(request, body: data, progress: progress)
        try client.checkReply(response, data: reply, what: "PATCH \(path)")
        return try Self.offset(response, what: "PATCH \(path)")
    }

    func offset() async throws -> Int64 {
        let request = Self.tusRequest(client, "HEAD", path)
        let (data, answer) = try await URLSession.shared.data(for: request)
        guard let response = answer as? HTTPURLResponse else {
            throw APIClient.Failure(status: nil, description: "HEAD \(path): no HTTP response")
        }
        try client.checkReply(response, data: data, what: "HEAD \(path)")
        return try Self.offset(response, what: "HEAD \(path)")
    }

    private static func tusRequest(_ client: APIClient, _ method: String, _ path: String) -> URLRequest {
        var request = client.request(method, path)
        request.setValue("1.0.0", forHTTPHeaderField: "Tus-Resumable")
        // An idle limit (URLSession restarts it whenever bytes move): libcurl sends a request again on a fresh
        // connection when a reused one dies before an answer, and Foundation cannot give it the body a second time,
        // so that retry stalls. The limit ends it, and the upload resumes from HEAD's offset.
        request.timeoutInterval = Self.idleSeconds
        return request
    }

    private static func offset(_ response: HTTPURLResponse, what: String) throws -> Int64 {
        guard let text = response.value(forHTTPHeaderField: "Upload-Offset"), let offset = Int64(text), offset >= 0 else {
            throw APIClient.Failure(status: nil, description: "\(what): the answer has no valid Upload-Offset")
        }
        return offset
    }
}

/// An upload at `/uploads` (coordinators before tus): `PUT` with `Content-Range`, `GET` for the offset.
struct RangeSession: ChunkedUpload.Session {
    struct Reply: Decodable {
        var id: String
        var offset: Int64
    }

    let client: APIClient
    let id: String
    let size: Int64

    /// `POST /uploads`; nil when the coordinator has no `/uploads` either.
    static func create(client: APIClient, size: Int64, name: String) async throws -> RangeSession? {
        let body = try JSONEncoder().encode(["size": JSONScalar.int(Int(size)), "filename": .string(name)])
        do {
            let upload = try await client.json(Reply.self, "POST", "/uploads", body: body)
            return RangeSession(client: client, id: upload.id, size: size)
        } catch let error as APIClient.Failure where error.status == 404 || error.status == 405 {
            return nil
        }
    }

    func send(_ data: Data, at offset: Int64, progress: @escaping (Int64, Int64) -> Void) async throws -> Int64 {
        var request = client.request("PUT", "/uploads/\(id)")
        request.setValue("application/octet-stream", forHTTPHeaderField: "Content-Type")
        request.setValue("bytes \(offset)-\(offset + Int64(data.count) - 1)/\(size)", forHTTPHeaderField: "Content-Range")
        let (reply, response) = try await client.send(request, body: data, progress: progress)
        try client.checkReply(response, data: reply, what: "PUT /uploads/\(id)")
        do {
            return try JSONDecoder().decode(Reply.self, from: reply).offset
        } catch {
            throw APIClient.Failure(
                status: nil, description: "PUT /uploads/\(id): unexpected reply: \(String(decoding: reply.prefix(300), as: UTF8.self))")
        }
    }

    func offset() async throws -> Int64 {
        try await client.json(Reply.self, "GET", "/uploads/\(id)").offset
    }
}
