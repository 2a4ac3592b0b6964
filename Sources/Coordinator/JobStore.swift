import Foundation
public import GRDB

/// The coordinator's durable state: jobs, their segments, nodes and events, in SQLite through GRDB.
///
/// One type owns the database. Every write method is one transaction that keeps the store's invariants:
/// - a segment is leased by at most one task, and a leased segment names its task, node and deadline
///   (enforced in the transaction, by a `CHECK` and by a partial unique index on `leasedTask`);
/// - only segments of running jobs are leased, only to connected, unquarantined nodes with a free slot;
/// - a finished job (done, failed, cancelled) holds no leases and does not change again;
/// - a lease ends only by its holder (``release(_:index:taskID:failure:at:)``,
///   ``complete(_:index:taskID:nodeID:resultPath:bytes:checksum:frames:encoder:parameters:at:)``) or by the
///   store (expiry, restart, node gone, job finished);
/// - a gone node holds no leases.
///
/// The store records an event for every lease, release, failure, completion, reset and state change in the same
/// transaction as the change, so the history never disagrees with the state.
///
/// All access is async: SQLite runs on GRDB's own dispatch queues, never on the Swift concurrency pool.
/// Methods throw ``JobStoreError`` (or `CancellationError` when the calling task is cancelled).
public final class JobStore: Sendable {
    /// The database file's name inside the data directory.
    public static let fileName = "farm.sqlite"

    /// The connection (a `DatabasePool` in WAL mode on disk, or a `DatabaseQueue` in memory).
    let writer: any DatabaseWriter

    /// Opens a store on a connection you made, and migrates it.
    ///
    /// Use a `DatabasePool` for a file (WAL mode) or `DatabaseQueue()` for a store in memory.
    public init(writer: any DatabaseWriter) async throws {
        self.writer = writer
        do {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                Self.migrator.asyncMigrate(writer) { result in
                    switch result {
                    case .success: continuation.resume()
                    case .failure(let error): continuation.resume(throwing: error)
                    }
                }
            }
        } catch {
            throw JobStoreError(.database, "cannot migrate the job store at \(writer.path)", cause: error)
        }
    }

    /// Opens (creating it if needed) `<dataDirectory>/farm.sqlite` in WAL mode, and migrates it.
    public convenience init(dataDirectory: String) async throws {
        let path = Self.databasePath(dataDirectory: dataDirectory)
        let pool: DatabasePool
        do {
            try FileManager.default.createDirectory(atPath: dataDirectory, withIntermediateDirectories: true)
            var configuration = Configuration()
            configuration.label = "farm.jobstore"
            configuration.journalMode = .wal
            // Another process (an operator's sqlite3 shell) may hold the lock for a moment.
            configuration.busyMode = .timeout(10)
            pool = try DatabasePool(path: path, configuration: configuration)
        } catch {
            throw JobStoreError(.database, "cannot open the job store at \(path)", cause: error)
        }
        try await self.init(writer: pool)
    }

    /// A store in memory, for tests.
    public static func inMemory() async throws -> JobStore {
        var configuration = Configuration()
        configuration.label = "farm.jobstore.memory"
        return try await JobStore(writer: DatabaseQueue(configuration: configuration))
    }

    /// Where the database lives inside a data directory.
    public static func databasePath(dataDirectory: String) -> String {
        (dataDirectory as NSString).appendingPathComponent(fileName)
    }

    // MARK: - Access

    /// One write transaction; errors other than the store's own become ``JobStoreError/Code/database``.
    func write<T: Sendable>(_ what: String, _ updates: @Sendable (Database) throws -> T) async throws -> T {
        do {
            return try await writer.write(updates)
        } catch let error as JobStoreError {
            throw error
        } catch let error as CancellationError {
            throw error
        } catch {
            throw JobStoreError(.database, "job store: cannot \(what)", cause: error)
        }
    }

    /// One read transaction (a snapshot: a `DatabasePool` reads beside the writer).
    func read<T: Sendable>(_ what: String, _ value: @Sendable (Database) throws -> T) async throws -> T {
        do {
            return try await writer.read(value)
        } catch let error as JobStoreError {
            throw error
        } catch let error as CancellationError {
            throw error
        } catch {
            throw JobStoreError(.database, "job store: cannot \(what)", cause: error)
        }
    }

    // MARK: - JSON columns

    /// Encodes a value as JSON text with sorted keys, for ``StoredJob/request`` and ``StoredJob/settings``.
    public static func encodeJSON(_ value: some Encodable) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        do {
            return String(decoding: try encoder.encode(value), as: UTF8.self)
        } catch {
            throw JobStoreError(.invalidJSON, "cannot encode \(type(of: value)) as JSON", cause: error)
        }
    }

    /// Decodes a value from JSON text (the inverse of ``encodeJSON(_:)``).
    public static func decodeJSON<T: Decodable>(_ type: T.Type, from json: String) throws -> T {
        do {
            return try JSONDecoder().decode(T.self, from: Data(json.utf8))
        } catch {
            throw JobStoreError(.invalidJSON, "cannot decode \(T.self) from the stored JSON", cause: error)
        }
    }
}

// MARK: - Schema

extension JobStore {
    /// The named migrations, applied in order, each once (GRDB records them in `grdb_migrations`).
    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.create(table: StoredJob.databaseTableName) { t in
                t.primaryKey("id", .text)
                t.column("source", .text).notNull()
                t.column("output", .text).notNull()
                t.column("request", .jsonText).notNull()
                t.column("state", .text).notNull()
                    .check(sql: "state IN ('queued', 'running', 'done', 'failed', 'cancelled')")
                t.column("phase", .text).notNull()
                t.column("error", .text)
                t.column("totalFrames", .integer).notNull().defaults(to: 0)
                t.column("sourceSeconds", .double).notNull().defaults(to: 0)
                t.column("createdAt", .datetime).notNull()
                t.column("startedAt", .datetime)
                t.column("finishedAt", .datetime)
                t.column("settings", .jsonText)
                t.column("pinnedParameters", .blob)
                t.column("workDirectory", .text).notNull()
            }
            try db.create(index: "jobs_on_state_createdAt", on: "jobs", columns: ["state", "createdAt"])
            try db.create(index: "jobs_on_createdAt", on: "jobs", columns: ["createdAt"])

            try db.create(table: StoredNode.databaseTableName) { t in
                t.primaryKey("id", .text)
                t.column("address", .text).notNull()
                t.column("slots", .integer).notNull().check(sql: "slots >= 1")
                t.column("threads", .integer).notNull()
                t.column("capabilities", .jsonText).notNull()
                t.column("state", .text).notNull().check(sql: "state IN ('connected', 'draining', 'gone')")
                t.column("firstSeen", .datetime).notNull()
                t.column("lastSeen", .datetime).notNull()
                t.column("segmentsDone", .integer).notNull().defaults(to: 0)
                t.column("failures", .integer).notNull().defaults(to: 0)
                t.column("quarantinedUntil", .datetime)
            }

            try db.create(table: StoredSegment.databaseTableName) { t in
                t.column("jobID", .text).notNull().references("jobs", onDelete: .cascade)
                t.column("index", .integer).notNull().check(sql: #""index" >= 0"#)
                t.primaryKey(["jobID", "index"])
                t.column("plan", .jsonText).notNull()
                t.column("state", .text).notNull().check(sql: "state IN ('pending', 'ready', 'leased', 'done')")
                t.column("sourcePath", .text)
                t.column("sourceBytes", .integer)
                t.column("sourceChecksum", .blob)
                t.column("leasedTask", .integer)
                t.column("leasedNode", .text).references("nodes")
                t.column("leaseExpiresAt", .datetime)
                t.column("attempts", .integer).notNull().defaults(to: 0)
                t.column("failures", .jsonText).notNull().defaults(to: "[]")
                t.column("resultPath", .text)
                t.column("resultBytes", .integer)
                t.column("resultChecksum", .blob)
                t.column("frames", .integer)
                t.column("encoder", .text)
                t.column("doneNode", .text)
                // A segment is leased exactly when a task holds it, and a lease names its node and deadline.
                t.check(sql: "(state = 'leased') = (leasedTask IS NOT NULL)")
                t.check(sql: "(leasedTask IS NULL) = (leasedNode IS NULL)")
                t.check(sql: "(leasedTask IS NULL) = (leaseExpiresAt IS NULL)")
                // A segment that can be leased has a checked source file; a done one has a checked result.
                t.check(
                    sql: """
                        state NOT IN ('ready', 'leased') \
                        OR (sourcePath IS NOT NULL AND sourceBytes IS NOT NULL AND sourceChecksum IS NOT NULL)
                        """)
                t.check(
                    sql: """
                        state <> 'done' OR (resultPath IS NOT NULL AND resultBytes IS NOT NULL \
                        AND resultChecksum IS NOT NULL AND frames IS NOT NULL)
                        """)
            }
            // One task holds at most one segment; with the primary key, a segment has at most one holder.
            try db.execute(
                sql: """
                    CREATE UNIQUE INDEX segments_on_leasedTask ON segments(leasedTask) WHERE leasedTask IS NOT NULL;
                    CREATE INDEX segments_on_leaseExpiresAt ON segments(leaseExpiresAt) WHERE leasedTask IS NOT NULL;
                    CREATE INDEX segments_on_leasedNode ON segments(leasedNode) WHERE leasedNode IS NOT NULL;
                    CREATE INDEX segments_on_jobID_state ON segments(jobID, state);
                    """)

            try db.create(table: StoredEvent.databaseTableName) { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("time", .datetime).notNull()
                // Events of a job go with it when it is deleted; node ids stay plain text, since events
                // may name a node that never finished its handshake.
                t.column("jobID", .text).references("jobs", onDelete: .cascade)
                t.column("segment", .integer)
                t.column("nodeID", .text)
                t.column("kind", .text).notNull()
                t.column("message", .text).notNull()
            }
            try db.create(index: "events_on_jobID_id", on: "events", columns: ["jobID", "id"])
            try db.create(index: "events_on_time", on: "events", columns: ["time"])
        }
        migrator.registerMigration("v2-health") { db in
            // One row, rewritten by each health check: proof that a write reaches the disk.
            try db.create(table: "health") { t in
                t.primaryKey("id", .integer).check { $0 == 1 }
                t.column("checkedAt", .datetime).notNull()
            }
        }
        registerRunMigrations(&migrator)
        registerBanMigrations(&migrator)
        registerCredentialMigrations(&migrator)
        return migrator
    }
}

// MARK: - Row helpers (inside transactions)

extension JobStore {
    static func fetchJob(_ db: Database, _ id: String) throws -> StoredJob {
        guard let job = try StoredJob.fetchOne(db, key: id) else {
            throw JobStoreError(.unknownJob, "no job \(id)")
        }
        return job
    }

    static func fetchSegment(_ db: Database, _ jobID: String, _ index: Int) throws -> StoredSegment {
        if let segment = try StoredSegment.fetchOne(db, key: ["jobID": jobID, "index": index]) {
            return segment
        }
        _ = try fetchJob(db, jobID)
        throw JobStoreError(.unknownSegment, "job \(jobID) has no segment \(index)")
    }

    static func fetchNode(_ db: Database, _ id: String) throws -> StoredNode {
        guard let node = try StoredNode.fetchOne(db, key: id) else {
            throw JobStoreError(.unknownNode, "no node \(id)")
        }
        return node
    }

    static func fetchSegments(_ db: Database, jobID: String) throws -> [StoredSegment] {
        try StoredSegment.filter(Column("jobID") == jobID).order(Column("index")).fetchAll(db)
    }

    @discardableResult
    static func insertEvent(
        _ db: Database, _ kind: EventKind, _ message: String, jobID: String? = nil, segment: Int? = nil,
        nodeID: String? = nil, at time: Date
    ) throws -> StoredEvent {
        var event = StoredEvent(
            time: time, jobID: jobID, segment: segment, nodeID: nodeID, kind: kind, message: message)
        try event.insert(db)
        return event
    }

    /// Clears a segment's lease fields and puts it back to ready (the caller saves it).
    static func clearLease(_ segment: inout StoredSegment) {
        segment.state = .ready
        segment.leasedTask = nil
        segment.leasedNode = nil
        segment.leaseExpiresAt = nil
    }

    /// Takes back every lease the filter selects, recording `kind` for each.
    static func releaseLeases(
        _ db: Database, where filter: some SQLSpecificExpressible, kind: EventKind, reason: String, at time: Date
    ) throws -> [ReleasedLease] {
        let leased = try StoredSegment.filter(Column("leasedTask") != nil).filter(filter)
            .order(Column("jobID"), Column("index")).fetchAll(db)
        var released: [ReleasedLease] = []
        for var segment in leased {
            guard let task = segment.leasedTask, let node = segment.leasedNode else { continue }
            released.append(ReleasedLease(jobID: segment.jobID, index: segment.index, taskID: task, nodeID: node))
            clearLease(&segment)
            try segment.update(db)
            try insertEvent(
                db, kind, "task \(task) on node \(node): \(reason)", jobID: segment.jobID, segment: segment.index,
                nodeID: node, at: time)
        }
        return released
    }
}
