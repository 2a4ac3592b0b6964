internal import FarmMedia
internal import FarmProtocol
internal import Foundation
internal import HTTPTypes
internal import Hummingbird
internal import NIOCore
internal import Synchronization
internal import _NIOFileSystem

/// Uploads in chunks that survive a dropped connection (issue 4): `POST /uploads` declares the size,
/// `PUT /uploads/{id}` appends a chunk at `Content-Range: bytes a-b/total` (each under the 100 MB
/// request-body limit of Akash's ingress), `GET /uploads/{id}` says how many bytes arrived so the
/// client resumes there, and `POST /jobs` with `{"upload": id}` turns the whole file into a job.
/// Chunks stream to `<upload dir>/partial/<id>.part` as they arrive, and what reached the disk before a
/// connection broke is kept. A SHA-256 runs over the bytes in order, for the client to check.
///
/// An upload also outlives a restart of the coordinator: `<id>.json` beside the part file records its size,
/// name and tus metadata, and a restarted coordinator takes back every upload it finds, at the bytes its part file
/// holds. The same uploads are reached with the tus 1.0 protocol at `/files/` (TusUploads.swift): an id is one
/// upload whichever protocol made it.
final class ResumableUploads: Sendable {
    struct Entry: Sendable {
        let id: String
        let path: String
        let size: Int64
        let filename: String?
        /// The tus `Upload-Metadata` header the upload was created with, as sent.
        var metadata: String?
        var offset: Int64 = 0
        var writing = false
        /// The SHA-256 of the bytes so far; nil for an upload taken back after a restart, whose digest is
        /// computed from its file once it is complete.
        var hasher: SHA256Stream? = SHA256Stream()
        var touched = Date()
        var digest: String?
        var complete: Bool { offset == size }
    }

    /// What is kept beside a part file for a restart.
    private struct Record: Codable {
        var size: Int64
        var filename: String?
        var metadata: String?
    }

    let directory: String
    let maxBytes: Int64
    let maxChunkBytes: Int64
    let staleSeconds: Double
    private let entries = Mutex<[String: Entry]>([:])
    /// The hashing of each complete upload taken back after a restart, shared by everyone who asks meanwhile.
    private let hashing = Mutex<[String: Task<String, any Error>]>([:])

    /// Under 100 MB (10^8 bytes) with room for headers.
    static let defaultMaxChunkBytes: Int64 = 90 << 20

    init(directory: String, maxBytes: Int64, maxChunkBytes: Int64 = defaultMaxChunkBytes, staleSeconds: Double) {
        self.directory = directory
        self.maxBytes = maxBytes
        self.maxChunkBytes = maxChunkBytes
        self.staleSeconds = staleSeconds
        recover()
    }

    private func recordPath(_ id: String) -> String { "\(directory)/\(id).json" }

    /// Takes back the uploads a previous run left: each record whose part file is there and not longer than the
    /// upload. Anything else is left to ``sweep(now:)``.
    private func recover() {
        guard let files = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return }
        var found: [String: Entry] = [:]
        for file in files where file.hasPrefix("up-") && file.hasSuffix(".json") {
            let id = String(file.dropLast(".json".count))
            let path = "\(directory)/\(id).part"
            guard let data = FileManager.default.contents(atPath: recordPath(id)),
                let record = try? JSONDecoder().decode(Record.self, from: data),
                let attributes = try? FileManager.default.attributesOfItem(atPath: path),
                let held = attributes[.size] as? NSNumber, held.int64Value <= record.size
            else { continue }
            var entry = Entry(id: id, path: path, size: record.size, filename: record.filename, metadata: record.metadata)
            entry.offset = held.int64Value
            entry.hasher = nil
            // Its last byte's time, not the restart's: an abandoned upload goes when it would have without one.
            entry.touched = attributes[.modificationDate] as? Date ?? Date()
            found[id] = entry
        }
        entries.withLock { $0 = found }
    }

    /// Uploads begun and not yet turned into a job or removed.
    var count: Int { entries.withLock { $0.count } }

    /// When `entry` expires: `staleSeconds` after its last byte arrived, unless more arrive (tus `Upload-Expires`).
    func expiry(of entry: Entry) -> Date { entry.touched.addingTimeInterval(staleSeconds) }

    func create(size: Int64, filename: String?, metadata: String? = nil) throws -> Entry {
        guard size > 0 else { throw APIError.badRequest("size must be a positive number of bytes, got \(size)") }
        guard size <= maxBytes else {
            throw APIError(.contentTooLarge, "upload of \(size) bytes is larger than the \(maxBytes)-byte limit")
        }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let id = "up-" + UUID().uuidString.lowercased()
        let path = "\(directory)/\(id).part"
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw APIError(.internalServerError, "cannot create \(path): \(String(cString: strerror(errno)))") }
        close(fd)
        do {
            let record = try JSONEncoder().encode(Record(size: size, filename: filename, metadata: metadata))
            try record.write(to: URL(fileURLWithPath: recordPath(id)), options: .atomic)
        } catch {
            unlink(path)
            throw APIError(.internalServerError, "cannot record upload \(id) in \(directory): \(error.localizedDescription)")
        }
        let entry = Entry(id: id, path: path, size: size, filename: filename, metadata: metadata)
        entries.withLock { $0[id] = entry }
        return entry
    }

    func entry(_ id: String) throws -> Entry {
        guard let entry = entries.withLock({ $0[id] }) else { throw APIError.notFound("no upload \(id)") }
        return entry
    }

    /// Appends `body` at byte `offset`, which must be the upload's offset; `length` is what the request declares
    /// (its Content-Length or Content-Range), else the body may run to the end of the upload. Without a `checksum`
    /// every byte that reaches the disk counts, even when the connection breaks (tus core). With one, the bytes
    /// count only once the whole body arrived and matched it; otherwise they are cut off again, and a mismatch
    /// answers 460 (tus checksum extension). Returns the upload as it stands after it.
    func append<Body: AsyncSequence>(
        _ id: String, at offset: Int64, length: Int64?, checksum: UploadChecksum? = nil, body: Body
    ) async throws -> Entry where Body.Element == ByteBuffer {
        let start = try entries.withLock { entries throws -> Entry in
            guard var entry = entries[id] else { throw APIError.notFound("no upload \(id)") }
            guard !entry.writing else {
                throw APIError(.conflict, "upload \(id) is receiving another chunk; retry shortly", headers: Self.offsetHeader(entry.offset))
            }
            guard offset == entry.offset else {
                throw APIError(
                    .conflict, "chunk starts at byte \(offset) but upload \(id) has \(entry.offset) bytes; resume from \(entry.offset)",
                    headers: Self.offsetHeader(entry.offset))
            }
            if let length {
                guard length <= entry.size - offset else {
                    throw APIError.badRequest("chunk of \(length) bytes at byte \(offset) ends past the upload's \(entry.size) bytes")
                }
                guard length <= maxChunkBytes else {
                    throw APIError(.contentTooLarge, "chunk of \(length) bytes is larger than the \(maxChunkBytes)-byte chunk limit")
                }
            }
            entry.writing = true
            entry.touched = Date()
            entries[id] = entry
            return entry
        }
        let room = start.size - offset
        var position = offset
        var received: Int64 = 0
        var pending = ByteBuffer()
        // With a checksum, the running SHA-256 advances only once the chunk is verified.
        var staged = checksum == nil ? nil : start.hasher
        var verifier = checksum
        do {
            let handle = try await FileSystem.shared.openFile(forWritingAt: FilePath(start.path), options: .modifyFile(createIfNecessary: false))
            do {
                func flush() async throws {
                    guard pending.readableBytes > 0 else { return }
                    try self.entries.withLock { _ = try Self.live($0, id) }
                    _ = try await handle.write(contentsOf: pending, toAbsoluteOffset: position)
                    position += Int64(pending.readableBytes)
                    if verifier != nil {
                        staged?.update(pending)
                        verifier?.update(pending)
                    } else {
                        let written = pending
                        try self.entries.withLock { entries in
                            var entry = try Self.live(entries, id)
                            entry.hasher?.update(written)
                            entry.offset = position
                            entry.touched = Date()
                            entries[id] = entry
                        }
                    }
                    pending.clear()
                }
                do {
                    do {
                        for try await var chunk in body {
                            let total = received + Int64(chunk.readableBytes)
                            if let length, total > length {
                                throw APIError.badRequest("chunk body is longer than the \(length) bytes its request declares")
                            }
                            guard total <= room else {
                                throw APIError.badRequest("chunk body runs past the upload's \(start.size) bytes")
                            }
                            guard total <= maxChunkBytes else {
                                throw APIError(.contentTooLarge, "chunk body is larger than the \(maxChunkBytes)-byte chunk limit")
                            }
                            received = total
                            pending.writeBuffer(&chunk)
                            if pending.readableBytes >= 1 << 20 { try await flush() }
                        }
                    } catch {
                        // The bytes that arrived before the connection broke are good: keep them.
                        if !(error is APIError), checksum == nil { try? await flush() }
                        throw error
                    }
                    try await flush()
                    if let length, received != length, checksum != nil {
                        throw Self.shortChunk(id, received: received, declared: length, offset: offset)
                    }
                    if let checksum, let found = verifier?.finalize(), found != checksum.expected {
                        throw APIError(
                            .checksumMismatch,
                            "chunk of \(received) bytes does not match its Upload-Checksum (\(checksum.algorithm.rawValue)); send it again from byte \(offset)",
                            headers: Self.offsetHeader(offset))
                    }
                } catch {
                    // Unverified bytes go: the file holds what the offset says, for a restart to find.
                    if checksum != nil { try? await handle.resize(to: .bytes(offset)) }
                    throw error
                }
                try await handle.close(makeChangesVisible: true)
            } catch {
                try? await handle.close(makeChangesVisible: true)
                throw error
            }
        } catch {
            entries.withLock { $0[id]?.writing = false }
            throw error
        }
        let entry = try entries.withLock { entries throws -> Entry in
            guard var entry = entries[id] else { throw APIError.notFound("upload \(id) was removed") }
            entry.writing = false
            if checksum != nil {
                entry.offset = position
                entry.hasher = staged
                entry.touched = Date()
            }
            if entry.complete, entry.digest == nil, let hasher = entry.hasher { entry.digest = Hex.encode(hasher.finalize()) }
            entries[id] = entry
            if let length, received != length {
                throw Self.shortChunk(id, received: received, declared: length, offset: entry.offset)
            }
            return entry
        }
        return try await withDigest(entry)
    }

    /// The upload with its SHA-256 once it is complete: an upload taken back after a restart has its file hashed
    /// (on a thread of its own) the first time this is asked.
    func withDigest(_ entry: Entry) async throws -> Entry {
        guard entry.complete, entry.digest == nil else { return entry }
        let (id, path, size) = (entry.id, entry.path, entry.size)
        let task = hashing.withLock { running in
            if let task = running[id] { return task }
            let task = Task {
                let found = try await Offload.run("hash upload \(id)") { _ in try JobStore.fileDigest(atPath: path, as: SHA256Stream.self) }
                guard let found, found.bytes == size else {
                    throw APIError(.internalServerError, "upload \(id): its file no longer holds its \(size) bytes")
                }
                return Hex.encode(found.checksum)
            }
            running[id] = task
            return task
        }
        defer { hashing.withLock { $0[id] = nil } }
        let digest = try await task.value
        return try entries.withLock { entries throws -> Entry in
            guard var current = entries[entry.id] else { throw APIError.notFound("upload \(entry.id) was removed") }
            current.digest = digest
            entries[entry.id] = current
            return current
        }
    }

    /// Hands a complete upload over (its entry is gone afterwards); checks the client's SHA-256.
    func take(_ id: String, sha256: String?) throws -> Entry {
        try entries.withLock { entries throws -> Entry in
            guard let entry = entries[id] else { throw APIError.notFound("no upload \(id)") }
            guard !entry.writing, entry.complete, let digest = entry.digest else {
                throw APIError.conflict("upload \(id) has \(entry.offset) of \(entry.size) bytes; send the rest first")
            }
            if let sha256, sha256.lowercased() != digest {
                entries[id] = nil
                removeFiles(of: entry)
                throw APIError.badRequest("upload \(id) does not match its sha256: received \(digest), expected \(sha256.lowercased()); upload it again")
            }
            entries[id] = nil
            unlink(recordPath(id))
            return entry
        }
    }

    func remove(_ id: String) throws {
        let entry = try entries.withLock { entries throws -> Entry in
            guard let entry = entries.removeValue(forKey: id) else { throw APIError.notFound("no upload \(id)") }
            return entry
        }
        removeFiles(of: entry)
    }

    /// Removes an upload's part file and its record.
    private func removeFiles(of entry: Entry) {
        unlink(entry.path)
        unlink(recordPath(entry.id))
    }

    /// Removes uploads nobody has added to for `staleSeconds`, and stray part files.
    func sweep(now: Date = Date()) {
        let stale = entries.withLock { entries -> [Entry] in
            let old = entries.values.filter { !$0.writing && now.timeIntervalSince($0.touched) > staleSeconds }
            for entry in old { entries[entry.id] = nil }
            return old
        }
        for entry in stale { removeFiles(of: entry) }
        let known = entries.withLock { Set($0.values.flatMap { [$0.path, recordPath($0.id)] }) }
        for file in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [] {
            let path = "\(directory)/\(file)"
            guard !known.contains(path) else { continue }
            // A part file or record no entry names any more (a removed upload's, or one a restart could not take back).
            let modified = (try? FileManager.default.attributesOfItem(atPath: path)[.modificationDate] as? Date) ?? now
            if now.timeIntervalSince(modified) > min(staleSeconds, 60) { unlink(path) }
        }
    }

    private static func live(_ entries: [String: Entry], _ id: String) throws -> Entry {
        guard let entry = entries[id] else { throw APIError.notFound("upload \(id) was removed") }
        return entry
    }

    /// A body that ended before the length its request declared; the upload stands at `offset`.
    private static func shortChunk(_ id: String, received: Int64, declared: Int64, offset: Int64) -> APIError {
        APIError(
            .badRequest, "chunk ended after \(received) of the \(declared) bytes its request declares; upload \(id) has \(offset) bytes",
            headers: offsetHeader(offset))
    }

    static func offsetHeader(_ offset: Int64) -> HTTPFields {
        [HTTPField.Name("Upload-Offset")!: "\(offset)"]
    }

    /// `bytes a-b/total`.
    static func parseContentRange(_ value: String) -> (ClosedRange<Int64>, Int64)? {
        let trimmed = value.trimmingCharacters(in: .whitespaces)
        guard trimmed.lowercased().hasPrefix("bytes ") else { return nil }
        let spec = trimmed.dropFirst(6).trimmingCharacters(in: .whitespaces)
        let parts = spec.split(separator: "/")
        guard parts.count == 2, let total = Int64(parts[1]) else { return nil }
        let bounds = parts[0].split(separator: "-", omittingEmptySubsequences: false)
        guard bounds.count == 2, let a = Int64(bounds[0]), let b = Int64(bounds[1]), a >= 0, b >= a else { return nil }
        return (a...b, total)
    }
}

/// An upload as the API shows it.
struct UploadJSON: Encodable {
    var id: String
    var offset: Int64
    var size: Int64
    var complete: Bool
    var filename: String?
    var sha256: String?
    var url: String

    init(_ entry: ResumableUploads.Entry) {
        id = entry.id
        offset = entry.offset
        size = entry.size
        complete = entry.complete
        filename = entry.filename
        sha256 = entry.digest
        url = "/uploads/\(entry.id)"
    }
}

extension Routes {
    /// `PUT /uploads/{id}` with `Content-Range: bytes a-b/total` and the chunk as the body.
    func appendUpload(_ id: String, request: Request) async throws -> Response {
        guard let header = request.headers[.contentRange] else {
            throw APIError.badRequest("Content-Range: bytes FIRST-LAST/TOTAL is required")
        }
        guard let (range, total) = ResumableUploads.parseContentRange(header) else {
            throw APIError.badRequest("Content-Range '\(header)' is not of the form bytes FIRST-LAST/TOTAL")
        }
        if let length = request.headers[.contentLength].flatMap(Int64.init), length != range.upperBound - range.lowerBound + 1 {
            throw APIError.badRequest("Content-Length \(length) differs from the \(range.upperBound - range.lowerBound + 1) bytes of Content-Range")
        }
        let size = try uploads.resumable.entry(id).size
        guard total == size else { throw APIError.badRequest("Content-Range total \(total) differs from the upload's size \(size)") }
        guard range.upperBound < size else {
            throw APIError.badRequest("chunk ends at byte \(range.upperBound), past the upload's \(size) bytes")
        }
        let entry = try await uploads.resumable.append(
            id, at: range.lowerBound, length: range.upperBound - range.lowerBound + 1,
            body: CountingSequence(base: request.body, metrics: metrics))
        return UploadJSON(entry).jsonResponse()
    }

    /// `POST /jobs` with `{"upload": id}`: the finished upload becomes the job's source.
    func submitUpload(_ submission: Submission, id: String) async throws -> Response {
        guard submission.source == nil else { throw APIError.badRequest("give either source or upload, not both") }
        try await checkEncoder(submission.codec)
        _ = try await uploads.resumable.withDigest(try uploads.resumable.entry(id))
        let entry = try uploads.resumable.take(id, sha256: submission.sha256)
        let path = uploads.makePath(filename: entry.filename)
        defer { uploads.release(path) }
        guard rename(entry.path, path) == 0 else {
            unlink(entry.path)
            throw APIError(.internalServerError, "cannot move upload \(id) into place: \(String(cString: strerror(errno)))")
        }
        return try await enqueue(submission, source: path, upload: path, name: entry.filename ?? id)
    }
}
