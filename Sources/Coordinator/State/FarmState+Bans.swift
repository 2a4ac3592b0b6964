package import FarmProtocol
internal import Foundation
internal import Logging

// Refused results and bans. A result the verifier refused is evidence against its node: the node is
// quarantined at once, and banned after `Rules.banAfterRefusals` refusals. A ban holds for the node's
// id and, when the node came from a public address, for that address too (every node behind one
// provider's NAT shares it); loopback and private addresses are banned only when an operator asks.
// Bans outlive the process (the job store) and end only when an operator lifts them.
extension FarmState {
    /// Why a node may not join, and the evidence.
    package struct Ban: Sendable, Hashable {
        package var nodeID: String
        package var reason: String
        /// What proved it: the verifier's words (segment, frame, score), or the operator's.
        package var evidence: String
        /// The source address banned with the node, if any.
        package var address: String?
        /// An operator's ban (`POST /nodes/{id}/ban`) rather than the verifier's.
        package var manual: Bool
        /// Seconds since 1970 when it was made (a wall-clock time: bans outlive the process).
        package var since: Double

        package init(nodeID: String, reason: String, evidence: String, address: String?, manual: Bool, since: Double) {
            self.nodeID = nodeID
            self.reason = reason
            self.evidence = evidence
            self.address = address
            self.manual = manual
            self.since = since
        }
    }

    /// Bans kept at most; a manual ban past it is refused (stale ones can be lifted).
    package static let maxBans = 4096

    /// The ban that keeps `nodeID` (or its source address `host`) out, if any.
    package func ban(nodeID: String, host: String?) -> Ban? {
        if let ban = bans[nodeID] { return ban }
        guard let host else { return nil }
        return bans.values.first { $0.address == host }
    }

    /// The verifier refused a result: the task fails as a segment failure, the node is quarantined at once,
    /// and at `banAfterRefusals` refusals it is banned and its sessions are closed.
    package mutating func resultRefused(
        _ session: UInt64, taskID: UInt64, evidence: String, host: String?, wallClock: Double, now: Double
    ) -> [FarmEffect] {
        guard let task = tasks[taskID], task.session == session else { return [] }
        let nodeID = task.nodeID
        refusedResults += 1
        let count = (refusals[nodeID] ?? 0) + 1
        refusals[nodeID] = count
        // The node is kept out of work before the failed segment is scheduled again.
        var verdict: [FarmEffect] = []
        if count >= rules.banAfterRefusals {
            let address = host.flatMap { AddressClass.ofLiteral($0) == nil ? $0 : nil }
            let reason = "\(count) results refused by the verifier"
            verdict = ban(nodeID, reason: reason, evidence: evidence, address: address, manual: false, wallClock: wallClock)
        } else if rules.quarantine.seconds > 0 {
            let why = "result refused by the verifier: \(evidence)"
            quarantined[nodeID] = (now + rules.quarantine.seconds, why)
            verdict.log(.warning, "node quarantined", ["node": nodeID, "seconds": "\(Int(rules.quarantine.seconds))", "reason": why])
            verdict.append(.persist(.quarantineNode(id: nodeID, forSeconds: rules.quarantine.seconds, reason: why)))
        }
        return taskFailed(session, taskID: taskID, reason: evidence, retryable: true, kind: .segment, now: now) + verdict
    }

    /// Bans `nodeID` (and `address`, when given): its sessions are closed and it cannot join again until the ban
    /// is lifted. A second ban of the same node replaces the first.
    package mutating func ban(
        _ nodeID: String, reason: String, evidence: String, address: String?, manual: Bool, wallClock: Double
    ) -> [FarmEffect] {
        let ban = Ban(nodeID: nodeID, reason: reason, evidence: evidence, address: address, manual: manual, since: wallClock)
        bans[nodeID] = ban
        var effects: [FarmEffect] = []
        effects.log(
            .error, "node banned",
            ["node": nodeID, "reason": reason, "evidence": evidence, "address": address ?? "-", "manual": "\(manual)"])
        effects.append(.persist(.banNode(ban)))
        for node in nodes.values.sorted(by: { $0.session < $1.session })
        where node.nodeID == nodeID || (address != nil && Self.host(of: node.address) == address) {
            effects.append(.close(session: node.session, reason: "banned: \(reason)"))
        }
        return effects
    }

    /// Lifts the ban of `nodeID`; its refusals are forgotten with it. Returns the ban lifted, if there was one.
    package mutating func unban(_ nodeID: String) -> (ban: Ban?, effects: [FarmEffect]) {
        guard let ban = bans.removeValue(forKey: nodeID) else { return (nil, []) }
        refusals[nodeID] = nil
        quarantined[nodeID] = nil
        var effects: [FarmEffect] = []
        effects.log(.notice, "node ban lifted", ["node": nodeID])
        effects.append(.persist(.unbanNode(id: nodeID)))
        return (ban, effects)
    }

    /// The host of a NIO address description ("[IPv4]host/1.2.3.4:5" → "1.2.3.4").
    static func host(of address: String) -> String? {
        guard let slash = address.lastIndex(of: "/") else { return nil }
        let endpoint = address[address.index(after: slash)...]
        guard let colon = endpoint.lastIndex(of: ":") else { return String(endpoint) }
        return String(endpoint[..<colon])
    }
}
