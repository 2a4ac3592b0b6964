internal import FarmProtocol
public import Foundation
internal import Logging

/// A ban as the API shows it.
public struct NodeBan: Sendable, Hashable {
    public var nodeID: String
    public var reason: String
    public var evidence: String
    /// The source address banned with the node, if any.
    public var address: String?
    public var manual: Bool
    public var since: Date
}

extension Coordinator {
    /// Every ban in force, by node id.
    public func bans() -> [NodeBan] {
        state.bans.values.sorted { $0.nodeID < $1.nodeID }.map(NodeBan.init)
    }

    /// Results the verifier refused since the start.
    public var refusedResults: Int { state.refusedResults }

    /// Bans `nodeID` by hand; with `address`, also the source address it is (or was last) connected from, whatever
    /// kind of address that is. Throws when `maxBans` bans are in force already.
    public func banNode(_ nodeID: String, reason: String?, address: Bool) throws -> NodeBan {
        guard state.bans[nodeID] != nil || state.bans.count < FarmState.maxBans else {
            throw CoordinatorError(.queueFull, "\(FarmState.maxBans) bans are in force; lift some first")
        }
        let host = address ? state.nodes.values.first { $0.nodeID == nodeID }.flatMap { FarmState.host(of: $0.address) } : nil
        if address, host == nil {
            throw CoordinatorError(.invalidRequest, "node \(nodeID) is not connected: its address is not known")
        }
        let why = reason.map { "banned by an operator: \($0)" } ?? "banned by an operator"
        apply(state.ban(nodeID, reason: why, evidence: reason ?? "", address: host, manual: true, wallClock: Date().timeIntervalSince1970))
        return NodeBan(state.bans[nodeID]!)
    }

    /// Lifts a ban; nil when the node was not banned.
    public func unbanNode(_ nodeID: String) -> NodeBan? {
        let (ban, effects) = state.unban(nodeID)
        apply(effects)
        return ban.map(NodeBan.init)
    }

    /// Why a node that proved the join token may still not join, or nil.
    func banReason(nodeID: String, host: String?) -> String? {
        state.ban(nodeID: nodeID, host: host).map { ban in
            ban.nodeID == nodeID ? "node \(nodeID) is banned: \(ban.reason)" : "address \(host ?? "") is banned (node \(ban.nodeID)): \(ban.reason)"
        }
    }

    /// The verifier refused a result of `session`.
    func resultRefused(_ session: UInt64, taskID: UInt64, evidence: String, host: String?) {
        apply(state.resultRefused(session, taskID: taskID, evidence: evidence, host: host, wallClock: Date().timeIntervalSince1970, now: now))
    }
}

extension NodeBan {
    init(_ ban: FarmState.Ban) {
        self.init(
            nodeID: ban.nodeID, reason: ban.reason, evidence: ban.evidence, address: ban.address, manual: ban.manual,
            since: Date(timeIntervalSince1970: ban.since))
    }
}

// Enrolment: a node that proves the join token under an id nobody holds gets a credential of its own, and its id is
// bound to it. From then on it joins with the credential; the join token can be rotated without it, and a ban of its
// id (`POST /nodes/{id}/ban`) refuses the credential too.
extension Coordinator {
    /// Enrolments one source address may make per minute (nodes behind one NAT share it).
    static let enrolmentsPerAddressPerMinute = 10
    /// Credentials kept at most.
    static let maxCredentials = 100_000

    /// The credential `nodeID` is enrolled with, if it is.
    func credential(of nodeID: String) -> [UInt8]? { credentials[nodeID] }

    /// Enrols `nodeID`, which just proved the join token from `host`: a fresh credential, saved in the job store before
    /// the node is told it. Throws with the reason when the id is taken, the address enrols too often, or the store
    /// cannot keep it.
    func enrol(_ nodeID: String, host: String?) async throws -> [UInt8] {
        guard credentials[nodeID] == nil else {
            throw CoordinatorError(.invalidRequest, "node \(nodeID) is enrolled already: it joins with its credential")
        }
        guard credentials.count < Self.maxCredentials else {
            throw CoordinatorError(.queueFull, "\(Self.maxCredentials) nodes are enrolled; no more enrolments")
        }
        let clock = now
        let key = host ?? "unknown"
        let recent = (enrolments[key] ?? []).filter { clock - $0 < 60 }
        guard recent.count < Self.enrolmentsPerAddressPerMinute else {
            throw CoordinatorError(
                .queueFull, "address \(key) enrolled \(recent.count) nodes in the last minute; try again later")
        }
        enrolments[key] = recent + [clock]
        if enrolments.count > 10_000 { enrolments = enrolments.filter { !$0.value.allSatisfy { clock - $0 >= 60 } } }
        let credential = JoinProof.makeCredential()
        // Held before the write, so that a second connection under the same id is refused meanwhile.
        credentials[nodeID] = credential
        let stored = JobStore.StoredCredential(nodeID: nodeID, secret: Data(credential), address: host, enrolledAt: Date())
        do {
            try await persist { try await $0.saveCredential(stored) }
        } catch {
            credentials[nodeID] = nil
            throw CoordinatorError(.io, "cannot keep the credential of node \(nodeID): \(error)")
        }
        logger.notice("node enrolled", metadata: ["node": "\(nodeID)", "address": "\(key)"])
        return credential
    }
}
