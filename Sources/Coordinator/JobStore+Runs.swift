public import Foundation
internal import GRDB

/// Coordinator runs: each start records one, each clean stop closes it. A run that was never closed ended in a
/// crash (a trap, an out-of-memory kill, a power cut), and the jobs that were then in a phase of the coordinator's
/// own work on their files (indexing and resuming, assembling, verifying) count one interruption. A job
/// interrupted `limit` times is failed at the next start with the reason, instead of being resumed into the
/// same crash at every start.
extension JobStore {
    /// A job the store gave up resuming: how often, and in which phase, runs ended under it.
    public struct InterruptedJob: Sendable, Hashable {
        public var id: String
        public var phase: String
        public var interruptions: Int
    }

    /// The phases in which a crash is counted against the job being worked on.
    public static let crashPhases: Set<String> = ["indexing", "assembling", "verifying"]

    /// Records the start of a run; when the previous run did not end cleanly, counts an interruption for each
    /// unfinished job whose stored phase is in ``crashPhases``. Returns the unfinished jobs that have reached
    /// `limit` interruptions (the caller fails them).
    public func beginRun(limit: Int, at time: Date = .now) async throws -> [InterruptedJob] {
        try await write("begin run") { db in
            let previousClean = try Bool.fetchOne(db, sql: "SELECT endedCleanly FROM runs ORDER BY id DESC LIMIT 1")
            if previousClean == false {
                let placeholders = Self.crashPhases.map { _ in "?" }.joined(separator: ", ")
                try db.execute(
                    sql: """
                        UPDATE jobs SET interruptions = interruptions + 1
                        WHERE state IN ('queued', 'running') AND phase IN (\(placeholders))
                        """,
                    arguments: StatementArguments(Array(Self.crashPhases)))
            }
            try db.execute(sql: "INSERT INTO runs (startedAt, endedCleanly) VALUES (?, 0)", arguments: [time])
            let rows = try Row.fetchAll(
                db,
                sql: """
                    SELECT id, phase, interruptions FROM jobs
                    WHERE state IN ('queued', 'running') AND interruptions >= ? ORDER BY id
                    """,
                arguments: [limit])
            return rows.map { InterruptedJob(id: $0["id"], phase: $0["phase"], interruptions: $0["interruptions"]) }
        }
    }

    /// Records that this run is ending cleanly: its jobs were left resumable, not crashed under.
    public func endRun() async throws {
        try await write("end run") { db in
            try db.execute(sql: "UPDATE runs SET endedCleanly = 1 WHERE id = (SELECT MAX(id) FROM runs)")
        }
    }

    /// The interruptions counted for a job (0 for an unknown job).
    public func interruptions(_ id: String) async throws -> Int {
        try await read("interruptions of \(id)") { db in
            try Int.fetchOne(db, sql: "SELECT interruptions FROM jobs WHERE id = ?", arguments: [id]) ?? 0
        }
    }

    static func registerRunMigrations(_ migrator: inout DatabaseMigrator) {
        migrator.registerMigration("v3-runs") { db in
            try db.create(table: "runs") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("startedAt", .datetime).notNull()
                t.column("endedCleanly", .boolean).notNull().defaults(to: false)
            }
            try db.alter(table: "jobs") { t in
                t.add(column: "interruptions", .integer).notNull().defaults(to: 0)
            }
        }
    }
}
