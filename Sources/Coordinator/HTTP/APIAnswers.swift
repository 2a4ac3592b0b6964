internal import FarmAPI
internal import Foundation
internal import OpenAPIRuntime

/// The API's answers are the types generated from docs/openapi.yaml; these build them from the
/// coordinator's own types (snake_case names and all come from the document).
typealias Schemas = Components.Schemas

extension Schemas.Job {
    init(_ status: JobStatus, source: String) {
        self.init(
            id: status.id,
            state: Self.statePayload(rawValue: status.state.rawValue) ?? .failed,
            phase: status.phase,
            progress: Self.rounded(status.progress, 4),
            fps: Self.rounded(status.fps, 2),
            eta_s: ExplicitNull(status.etaSeconds.map { Self.rounded($0, 1) }),
            error: ExplicitNull(status.error),
            node_labels: status.nodeLabels,
            segments: status.segments.map(Schemas.Segment.init),
            source: source,
            output_url: ExplicitNull(status.state == .done ? "/jobs/\(status.id)/output" : nil),
            frames_done: status.framesDone,
            total_frames: status.totalFrames,
            source_s: Self.rounded(status.sourceSeconds, 3),
            wall_s: Self.rounded(status.wallSeconds, 3),
            encoders_by_node: .init(additionalProperties: status.encodersByNode),
            fallbacks: status.fallbacks,
            dropped: status.dropped,
            downloaded_bytes: status.downloadedBytes.flatMap { Int(exactly: $0) },
            download_total_bytes: status.downloadTotalBytes.flatMap { Int(exactly: $0) })
    }

    static func rounded(_ value: Double, _ places: Int) -> Double {
        guard value.isFinite else { return 0 }
        let scale = pow(10, Double(places))
        return (value * scale).rounded() / scale
    }
}

extension Schemas.Segment {
    init(_ segment: SegmentStatus) {
        self.init(
            index: segment.index, state: Self.statePayload(rawValue: segment.state) ?? .pending,
            attempts: segment.attempts, node: ExplicitNull(segment.node), encoder: ExplicitNull(segment.encoder),
            frames: segment.frames)
    }
}

extension Schemas.Node {
    /// A node silent for longer than this is shown as "stale" (the lease watchdog closes it later).
    static let staleAfterSeconds = 10.0

    init(_ node: NodeStatus, fps: Double?) {
        let state: statePayload =
            if node.draining {
                .draining
            } else if node.quarantinedForSeconds != nil {
                .quarantined
            } else if node.secondsSinceHeartbeat > Self.staleAfterSeconds {
                .stale
            } else if node.slotsInUse >= node.slots {
                .busy
            } else if node.slotsInUse > 0 {
                .working
            } else {
                .idle
            }
        self.init(
            id: node.id,
            address: Self.plainAddress(node.address),
            state: state,
            slots: node.slots,
            slots_in_use: node.slotsInUse,
            threads: node.threads,
            segments_done: node.segmentsDone,
            fps: ExplicitNull(fps.map { Schemas.Job.rounded($0, 2) }),
            last_heartbeat_s: Schemas.Job.rounded(node.secondsSinceHeartbeat, 2),
            // The node's probe report as it sent it; a report that is not a JSON object shows as {}.
            capabilities: (try? JSONDecoder().decode(OpenAPIObjectContainer.self, from: Data(node.capabilitiesJSON.utf8)))
                ?? OpenAPIObjectContainer(),
            labels: node.labels,
            claimed_labels: node.claimedLabels,
            quarantined_for_s: node.quarantinedForSeconds.map { Schemas.Job.rounded($0, 1) },
            quarantine_reason: node.quarantineReason)
    }

    /// NIO's "[IPv4]host/1.2.3.4:5" as "1.2.3.4:5" (and IPv6 as "[::1]:5").
    static func plainAddress(_ address: String) -> String {
        for (prefix, v6) in [("[IPv4]", false), ("[IPv6]", true)] where address.hasPrefix(prefix) {
            let rest = address.dropFirst(prefix.count)
            let endpoint = rest.split(separator: "/").last.map(String.init) ?? String(rest)
            guard v6, let colon = endpoint.lastIndex(of: ":") else { return endpoint }
            return "[\(endpoint[..<colon])]\(endpoint[colon...])"
        }
        return address
    }
}

extension Schemas.Upload {
    init(_ entry: ResumableUploads.Entry) {
        self.init(
            id: entry.id, offset: Int(entry.offset), size: Int(entry.size), complete: entry.complete,
            filename: entry.filename, sha256: entry.digest, url: "/uploads/\(entry.id)")
    }
}

extension Schemas.Validation {
    init(_ result: SystemValidation) {
        self.init(
            ok: result.ok, failed: result.failed,
            checks: result.checks.map {
                .init(
                    name: .init(rawValue: $0.name) ?? .nodes, status: .init(rawValue: $0.status.rawValue) ?? .failed,
                    detail: $0.detail)
            })
    }
}

extension Components.Schemas.Ban {
    init(_ ban: NodeBan) {
        self.init(
            id: ban.nodeID, reason: ban.reason, evidence: ban.evidence, address: ban.address, manual: ban.manual,
            since: ban.since)
    }
}
