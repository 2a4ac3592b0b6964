import FarmProtocol
import Foundation

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// `farm submit`'s upload in chunks (`POST /uploads`, `PUT /uploads/{id}`, then `POST /jobs` with
/// the upload's id and SHA-256): each chunk stays under the 100 MB request-body limit of Akash's
/// ingress, only one chunk is in memory at a time, and after a dropped connection the client asks
/// the server how many bytes arrived and continues from there.
struct ChunkedUpload {
    let client: APIClient
    let file: String
    let chunkBytes: Int64
    /// Failed chunks in a row before the upload gives up.
    let retries: Int
    let progress: ProgressLine

    struct Reply: Decodable {
        var id: String
        var offset: Int64
        var size: Int64
        var complete: Bool
        var sha256: String?
    }

    /// Uploads the file and submits the job with `fields`; nil when the coordinator has no
    /// `/uploads` (an older one), so the caller falls back to a single upload.
    func run(fields: [String: JSONScalar]) async throws -> CreatedReply? {
        let name = URL(fileURLWithPath: file).lastPathComponent
        let size = (try FileManager.default.attributesOfItem(atPath: file)[.size] as? NSNumber)?.int64Value ?? 0
        guard size > 0 else { throw APIClient.Failure(status: nil, description: "\(file): empty file") }
        let body = try JSONEncoder().encode(["size": JSONScalar.int(Int(size)), "filename": .string(name)])
        let upload: Reply
        do {
            upload = try await client.json(Reply.self, "POST", "/uploads", body: body)
        } catch let error as APIClient.Failure where error.status == 404 || error.status == 405 {
            return nil
        }
        let handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: file))
        defer { try? handle.close() }
        var checksum = SHA256Stream()
        var hashed: Int64 = 0
        var offset = upload.offset
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
                let reply = try await client.putChunk(
                    "/uploads/\(upload.id)", data: data, first: offset, total: size
                ) { sent, _ in
                    let done = base + sent
                    let rate = Double(done - upload.offset) / max(Date().timeIntervalSince(started), 0.001)
                    progress.show(
                        fraction: Double(done) / Double(size),
                        text: "upload \(Submit.bytes(done))/\(Submit.bytes(size)) \(Submit.bytes(Int64(rate)))/s")
                }
                offset = reply.offset
                failures = 0
            } catch let error as APIClient.Failure {
                let retryable = error.status.map { $0 == 408 || $0 == 409 || $0 == 429 || $0 >= 500 } ?? true
                failures += 1
                guard retryable, failures <= retries else { throw error }
                try await Task.sleep(for: .milliseconds(min(250 << min(failures, 6), 10_000)))
                // The server says how much arrived: the next chunk starts there.
                if let current = try? await client.json(Reply.self, "GET", "/uploads/\(upload.id)") { offset = current.offset }
                progress.finish("upload interrupted (\(error.description)); resuming at byte \(offset), attempt \(failures + 1)")
            }
        }
        if hashed < size {
            try handle.seek(toOffset: UInt64(hashed))
            while let data = try handle.read(upToCount: 1 << 20), !data.isEmpty { data.withUnsafeBytes { checksum.update($0) } }
        }
        var job = fields
        job["upload"] = .string(upload.id)
        job["sha256"] = .string(Hex.encode(checksum.finalize()))
        return try await client.json(CreatedReply.self, "POST", "/jobs", body: try JSONEncoder().encode(job))
    }
}

extension APIClient {
    /// `PUT path` with `Content-Range: bytes first-last/total` and the chunk as the body.
    func putChunk(
        _ path: String, data: Data, first: Int64, total: Int64, progress: @escaping (Int64, Int64) -> Void
    ) async throws -> ChunkedUpload.Reply {
        var request = request("PUT", path)
        request.setValue("application/octet-stream", forHTTPHeaderField: "Content-Type")
        request.setValue("bytes \(first)-\(first + Int64(data.count) - 1)/\(total)", forHTTPHeaderField: "Content-Range")
        let (reply, response) = try await send(request, body: data, progress: progress)
        try checkReply(response, data: reply, what: "PUT \(path)")
        do {
            return try JSONDecoder().decode(ChunkedUpload.Reply.self, from: reply)
        } catch {
            throw Failure(status: nil, description: "PUT \(path): unexpected reply: \(String(decoding: reply.prefix(300), as: UTF8.self))")
        }
    }
}
