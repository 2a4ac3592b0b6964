internal import FarmProtocol
public import Foundation

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
