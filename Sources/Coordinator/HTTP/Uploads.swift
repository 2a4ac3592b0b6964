internal import Foundation
internal import Hummingbird
internal import Logging
internal import NIOCore
internal import NIOPosix
internal import ServiceLifecycle
internal import Synchronization
internal import _NIOFileSystem

/// Uploaded sources: written to `<upload dir>/<uuid>.<ext>` as they arrive (never held whole),
/// kept while a job uses them, and swept away once no unfinished job does. The sweep looks at the
/// coordinator's jobs rather than waiting on each, so a restart that resumes a job keeps its upload
/// and shutdown never waits on a job.
final class Uploads: Service, Sendable {
    let directory: String
    let maxBytes: Int64
    let metrics: FarmMetrics
    private let coordinator: Coordinator
    /// Uploads sent in chunks, resumable after a broken connection.
    let resumable: ResumableUploads
    let maxConcurrent: Int
    /// Uploads being received or being submitted: not yet any job's source.
    private let pending = Mutex<Set<String>>([])
    /// The names clients gave their uploads, by job, for status reports.
    private let names = Mutex<[String: String]>([:])
    static let sweepInterval = Duration.seconds(1)
    /// A file no job names is removed once it is this old (an upload whose submit never finished).
    static let orphanSeconds = 60.0

    init(
        directory: String, maxBytes: Int64, coordinator: Coordinator, metrics: FarmMetrics, maxConcurrent: Int = 8,
        staleSeconds: Double = 6 * 3600
    ) {
        self.resumable = ResumableUploads(directory: directory + "/partial", maxBytes: maxBytes, staleSeconds: staleSeconds)
        self.maxConcurrent = max(maxConcurrent, 1)
        self.directory = directory
        self.maxBytes = maxBytes
        self.coordinator = coordinator
        self.metrics = metrics
    }

    /// A fresh path for an upload whose client-side name is `filename`; the sweep leaves it alone
    /// until `release` (the job then names it, or it was removed).
    func makePath(filename: String?) -> String {
        var ext = "bin"
        if let filename, let dot = filename.lastIndex(of: ".") {
            let candidate = filename[filename.index(after: dot)...].lowercased()
            if (1...8).contains(candidate.count), candidate.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber) }) {
                ext = candidate
            }
        }
        let path = "\(directory)/\(UUID().uuidString.lowercased()).\(ext)"
        pending.withLock { _ = $0.insert(path) }
        return path
    }

    /// Refuses a new upload with 429 while `maxConcurrent` are being received (resumable ones count
    /// from their start until they become a job or are removed).
    func admit() throws {
        let busy = pending.withLock { $0.count } + resumable.count
        guard busy < maxConcurrent else {
            throw APIError(
                .tooManyRequests, "\(busy) uploads are in progress, the most this coordinator takes at once; retry later",
                headers: [.retryAfter: "10"])
        }
    }

    func release(_ path: String) {
        pending.withLock { _ = $0.remove(path) }
    }

    /// Writes `chunks` to a new file at `path`, failing with 413 past the size limit; a failed or
    /// refused upload leaves no file.
    func receive<Chunks: AsyncSequence>(_ chunks: Chunks, to path: String) async throws -> Int64
    where Chunks.Element == ByteBuffer {
        var writer = try await UploadWriter(path: path, limit: maxBytes)
        do {
            for try await chunk in chunks { try await writer.write(chunk) }
            return try await writer.close()
        } catch {
            await writer.discard()
            throw error
        }
    }

    /// Remembers the name a client gave the upload of `job`.
    func adopt(job: String, name: String?) {
        if let name { names.withLock { $0[job] = name } }
    }

    /// What a status report shows as the source of a job: the uploaded file's name, or the path.
    func displaySource(_ status: JobStatus) -> String {
        names.withLock { $0[status.id] }.map { "upload:\($0)" } ?? status.source
    }

    /// Sweeps every second until graceful shutdown.
    func run() async throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                await self.sweep()
                self.resumable.sweep()
                try? await Task.sleep(for: Self.sweepInterval)
            }
        }
    }

    /// Removes uploads whose jobs have ended, and old files no job names. The listing and removing run on NIO's
    /// blocking thread pool: unlinking a file of many GB can take a while.
    func sweep(now: Date = Date()) async {
        let jobs = await coordinator.listJobs()
        let inUse = Set(jobs.filter { !$0.state.isFinished }.map(\.source))
        let named = Set(jobs.map(\.source))
        let busy = pending.withLock { $0 }
        let directory = self.directory
        try? await NIOThreadPool.singleton.runIfActive {
            guard let files = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return }
            for file in files {
                let path = "\(directory)/\(file)"
                guard !busy.contains(path), !inUse.contains(path) else { continue }
                if !named.contains(path) {
                    let modified = (try? FileManager.default.attributesOfItem(atPath: path)[.modificationDate] as? Date) ?? now
                    guard now.timeIntervalSince(modified) > Self.orphanSeconds else { continue }
                }
                unlink(path)
            }
        }
    }
}

/// One upload being written: a file handle of NIO's file system (its own thread pool, never an
/// event loop), writes gathered to 1 MiB, a running size checked against the limit, and removal on
/// failure. Owned by the one task that receives the upload.
struct UploadWriter {
    private let handle: WriteFileHandle
    private let path: String
    private let limit: Int64
    private var pending = ByteBuffer()
    private var offset: Int64 = 0
    private(set) var bytesReceived: Int64 = 0
    static let flushBytes = 1 << 20

    init(path: String, limit: Int64) async throws {
        self.path = path
        self.limit = limit
        handle = try await FileSystem.shared.openFile(
            forWritingAt: FilePath(path), options: .newFile(replaceExisting: false))
    }

    mutating func write(_ chunk: ByteBuffer) async throws {
        guard bytesReceived + Int64(chunk.readableBytes) <= limit else {
            throw APIError(.contentTooLarge, "upload larger than the \(limit)-byte limit")
        }
        bytesReceived += Int64(chunk.readableBytes)
        if pending.readableBytes == 0, chunk.readableBytes >= Self.flushBytes {
            try await put(chunk)
            return
        }
        var chunk = chunk
        pending.writeBuffer(&chunk)
        if pending.readableBytes >= Self.flushBytes { try await flush() }
    }

    private mutating func flush() async throws {
        guard pending.readableBytes > 0 else { return }
        try await put(pending)
        pending.clear()
    }

    private mutating func put(_ buffer: ByteBuffer) async throws {
        _ = try await handle.write(contentsOf: buffer, toAbsoluteOffset: offset)
        offset += Int64(buffer.readableBytes)
    }

    /// Flushes and closes; returns the size of the file.
    mutating func close() async throws -> Int64 {
        try await flush()
        try await handle.close(makeChangesVisible: true)
        return offset
    }

    /// Closes and removes the file.
    func discard() async {
        try? await handle.close(makeChangesVisible: true)
        unlink(path)
    }
}
