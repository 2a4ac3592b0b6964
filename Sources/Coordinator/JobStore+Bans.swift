public import Foundation
public import GRDB

/// Bans outlive the process: a node banned before a restart is still refused after it.
extension JobStore {
    /// A ban as the store keeps it.
    public struct StoredBan: Sendable, Hashable, Codable, FetchableRecord, PersistableRecord {
        public static let databaseTableName = "bans"
        public var nodeID: String
        public var reason: String
        public var evidence: String
        public var address: String?
        public var manual: Bool
        public var bannedAt: Date

        public init(nodeID: String, reason: String, evidence: String, address: String?, manual: Bool, bannedAt: Date) {
            self.nodeID = nodeID
            self.reason = reason
            self.evidence = evidence
            self.address = address
            self.manual = manual
            self.bannedAt = bannedAt
        }
    }

    /// Saves a ban (replacing one of the same node).
    public func saveBan(_ ban: StoredBan) async throws {
        try await write("ban node \(ban.nodeID)") { db in
            try ban.save(db)
            try Self.insertEvent(db, .nodeBanned, "\(ban.reason): \(ban.evidence)", nodeID: ban.nodeID, at: ban.bannedAt)
        }
    }

    /// Lifts a node's ban; whether there was one.
    @discardableResult
    public func deleteBan(_ nodeID: String, at time: Date = .now) async throws -> Bool {
        try await write("lift the ban of node \(nodeID)") { db in
            let deleted = try StoredBan.deleteOne(db, key: nodeID)
            if deleted { try Self.insertEvent(db, .nodeBanned, "ban lifted", nodeID: nodeID, at: time) }
            return deleted
        }
    }

    /// Every ban in force, by node id.
    public func bans() async throws -> [StoredBan] {
        try await read("list bans") { db in try StoredBan.order(Column("nodeID")).fetchAll(db) }
    }

    static func registerBanMigrations(_ migrator: inout DatabaseMigrator) {
        migrator.registerMigration("v4-bans") { db in
            try db.create(table: StoredBan.databaseTableName) { t in
                t.primaryKey("nodeID", .text)
                t.column("reason", .text).notNull()
                t.column("evidence", .text).notNull()
                t.column("address", .text)
                t.column("manual", .boolean).notNull()
                t.column("bannedAt", .datetime).notNull()
            }
        }
    }
}

/// Node credentials: a node that proved the join token is enrolled with a credential of its own, kept here, and
/// joins with it from then on; its id is then bound to that credential.
extension JobStore {
    public struct StoredCredential: Sendable, Hashable, Codable, FetchableRecord, PersistableRecord {
        public static let databaseTableName = "credentials"
        public var nodeID: String
        public var secret: Data
        /// The source address it enrolled from.
        public var address: String?
        public var enrolledAt: Date
    }

    public func saveCredential(_ credential: StoredCredential) async throws {
        try await write("enrol node \(credential.nodeID)") { db in
            try credential.save(db)
            try Self.insertEvent(db, .nodeEnrolled, "enrolled from \(credential.address ?? "?")", nodeID: credential.nodeID, at: credential.enrolledAt)
        }
    }

    public func credentials() async throws -> [StoredCredential] {
        try await read("list credentials") { db in try StoredCredential.fetchAll(db) }
    }

    static func registerCredentialMigrations(_ migrator: inout DatabaseMigrator) {
        migrator.registerMigration("v5-credentials") { db in
            try db.create(table: StoredCredential.databaseTableName) { t in
                t.primaryKey("nodeID", .text)
                t.column("secret", .blob).notNull()
                t.column("address", .text)
                t.column("enrolledAt", .datetime).notNull()
            }
        }
    }
}
