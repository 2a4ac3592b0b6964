public import Foundation
import GRDB

// MARK: - Nodes

extension JobStore {
    /// Records a node that said hello: inserted, or updated and marked connected again (its first-seen time,
    /// counters and quarantine are kept).
    @discardableResult
    public func upsertNode(
        id: String, address: String, slots: Int, threads: Int, capabilities: String, at time: Date = .now
    ) async throws -> StoredNode {
        try await write("record node \(id)") { db in
            var node =
                try StoredNode.fetchOne(db, key: id)
                ?? StoredNode(
                    id: id, address: address, slots: max(slots, 1), threads: threads, capabilities: capabilities,
                    state: .connected, firstSeen: time, lastSeen: time, segmentsDone: 0, failures: 0)
            node.address = address
            node.slots = max(slots, 1)
            node.threads = threads
            node.capabilities = capabilities
            node.state = .connected
            node.lastSeen = time
            try node.save(db)
            try Self.insertEvent(
                db, .nodeJoined, "from \(address), \(node.slots) slots, \(threads) threads", nodeID: id, at: time)
            return node
        }
    }

    /// Marks a node draining, connected again, or gone. A gone node holds no leases: they are taken back and
    /// returned.
    @discardableResult
    public func markNode(_ id: String, _ state: StoredNode.State, reason: String? = nil, at time: Date = .now)
        async throws -> [ReleasedLease]
    {
        try await write("mark node \(id) \(state.rawValue)") { db in
            var node = try Self.fetchNode(db, id)
            var released: [ReleasedLease] = []
            if state == .gone {
                released = try Self.releaseLeases(
                    db, where: Column("leasedNode") == id, kind: .segmentReleased, reason: "node left", at: time)
            }
            guard node.state != state else { return released }
            let previous = node.state
            node.state = state
            node.lastSeen = time
            try node.update(db)
            try Self.insertEvent(
                db, .nodeState, "\(previous.rawValue) → \(state.rawValue)" + (reason.map { ": \($0)" } ?? ""),
                nodeID: id, at: time)
            return released
        }
    }

    /// A node was heard from: updates `lastSeen` and, with `leasesUntil`, moves the deadline of every lease it
    /// holds. Returns the number of leases renewed.
    @discardableResult
    public func nodeHeartbeat(_ id: String, leasesUntil: Date? = nil, at time: Date = .now) async throws -> Int {
        try await write("record heartbeat of node \(id)") { db in
            var node = try Self.fetchNode(db, id)
            node.lastSeen = time
            try node.update(db)
            guard let leasesUntil else { return 0 }
            return try StoredSegment.filter(Column("leasedNode") == id)
                .updateAll(db, Column("leaseExpiresAt").set(to: leasesUntil))
        }
    }

    /// Gives a node no new leases before `until` (what it holds now is not taken back).
    @discardableResult
    public func quarantineNode(_ id: String, until: Date, reason: String, at time: Date = .now) async throws
        -> StoredNode
    {
        try await write("quarantine node \(id)") { db in
            var node = try Self.fetchNode(db, id)
            node.quarantinedUntil = until
            try node.update(db)
            try Self.insertEvent(db, .nodeQuarantined, "until \(until): \(reason)", nodeID: id, at: time)
            return node
        }
    }

    /// The node with that id, or nil.
    public func node(_ id: String) async throws -> StoredNode? {
        try await read("read node \(id)") { db in try StoredNode.fetchOne(db, key: id) }
    }

    /// Every node the store knows, optionally only those in `states`, by id.
    public func nodes(states: Set<StoredNode.State>? = nil) async throws -> [StoredNode] {
        try await read("list nodes") { db in
            var request = StoredNode.all()
            if let states { request = request.filter(states.map(\.rawValue).contains(Column("state"))) }
            return try request.order(Column("id")).fetchAll(db)
        }
    }
}

// MARK: - Events

extension JobStore {
    /// Records an event the store does not record itself (an assembly failure, a verification result, ...).
    /// Throws ``JobStoreError/Code/unknownJob`` when `jobID` names no job.
    @discardableResult
    public func recordEvent(
        _ kind: EventKind, _ message: String, jobID: String? = nil, segment: Int? = nil, nodeID: String? = nil,
        at time: Date = .now
    ) async throws -> StoredEvent {
        try await write("record event") { db in
            if let jobID { _ = try Self.fetchJob(db, jobID) }
            return try Self.insertEvent(
                db, kind, message, jobID: jobID, segment: segment, nodeID: nodeID, at: time)
        }
    }

    /// The latest `limit` events, oldest first: of one job, or of the whole farm when `jobID` is nil.
    public func events(jobID: String? = nil, limit: Int = 100) async throws -> [StoredEvent] {
        try await read("read events") { db in
            var request = StoredEvent.all()
            if let jobID { request = request.filter(Column("jobID") == jobID) }
            let latest = try request.order(Column("id").desc).limit(max(limit, 0)).fetchAll(db)
            return latest.reversed()
        }
    }

    /// Deletes events older than `date` that belong to no job (a job's events go with the job), and returns how
    /// many.
    @discardableResult
    public func pruneEvents(before date: Date) async throws -> Int {
        try await write("prune events") { db in
            try StoredEvent.filter(Column("jobID") == nil).filter(Column("time") < date).deleteAll(db)
        }
    }
}

extension JobStore {
    /// A health check of the database: SQLite's `quick_check`, and a write transaction (which fails on
    /// a read-only or full disk). Returns a one-line summary; throws ``JobStoreError`` naming what failed.
    public func check() async throws -> String {
        let result = try await write("check the database") { db -> (String, Int) in
            let verdict = try String.fetchOne(db, sql: "PRAGMA quick_check") ?? "no answer"
            let jobs = try StoredJob.fetchCount(db)
            // A committed write: the journal and the disk must take it.
            try db.execute(sql: "INSERT OR REPLACE INTO health (id, checkedAt) VALUES (1, ?)", arguments: [Date()])
            return (verdict, jobs)
        }
        guard result.0 == "ok" else {
            throw JobStoreError(.database, "\(writer.path): integrity check failed: \(result.0)")
        }
        return "\(writer.path): integrity ok, \(result.1) job\(result.1 == 1 ? "" : "s"), WAL"
    }
}
