package import FarmProtocol
package import Logging

/// What a transition of ``FarmState`` asks the coordinator to carry out. The state decides; the
/// ``Coordinator`` actor only sends, persists, wakes and logs, in the order the effects come.
package enum FarmEffect: Sendable {
    /// A message to one node session.
    case send(session: UInt64, Message)
    /// An assignment and then the segment file's bytes, to one node session.
    case sendSegment(session: UInt64, Assign, path: String)
    /// Ends one node session, telling it why.
    case close(session: UInt64, reason: String)
    /// A write to the job store, queued behind the writes before it.
    case persist(StoreWrite)
    /// Every segment of the job is done: its pipeline may assemble.
    case segmentsDone(jobID: String)
    /// The job ended (done, failed or cancelled): its waiters get its status, its work stops.
    case jobEnded(jobID: String)
    /// A line for the log.
    case log(Logger.Level, String, Logger.Metadata)
}

/// A job-store write that a transition asks for; each is one transition of the store's own state
/// machine (see ``SegmentPhase``). Times are seconds from now, so the state needs no wall clock.
package enum StoreWrite: Sendable, Equatable {
    case updateJob(id: String, state: JobState?, phase: String?, error: String?)
    case markReady(jobID: String, index: Int, path: String, bytes: Int64, checksum: [UInt8])
    case lease(jobID: String, index: Int, taskID: UInt64, nodeID: String, expiresIn: Double)
    case renewLease(jobID: String, index: Int, taskID: UInt64, expiresIn: Double)
    case release(jobID: String, index: Int, taskID: UInt64, failure: String?)
    /// A duplicate takes over the store's lease (the store keeps one lease per segment).
    case moveLease(jobID: String, index: Int, from: UInt64, to: UInt64, nodeID: String, failure: String?, expiresIn: Double)
    case complete(
        jobID: String, index: Int, taskID: UInt64, nodeID: String, path: String, bytes: Int64, checksum: [UInt8],
        frames: Int, encoder: String, parameters: [UInt8]?)
    case upsertNode(id: String, address: String, slots: Int, threads: Int, capabilities: String)
    case markNode(id: String, state: StoredNode.State, reason: String?)
    case quarantineNode(id: String, forSeconds: Double, reason: String)
    case banNode(FarmState.Ban)
    case unbanNode(id: String)
}

extension Array where Element == FarmEffect {
    mutating func log(_ level: Logger.Level, _ message: String, _ metadata: [String: String] = [:]) {
        append(.log(level, message, metadata.mapValues { .string($0) }))
    }
}
