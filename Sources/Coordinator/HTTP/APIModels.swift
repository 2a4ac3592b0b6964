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

/// Any JSON value: node capabilities pass through as the node reported them, and request bodies
/// are read field by field so that each bad field gets its own message.
enum JSONValue: Codable, Equatable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() {
            self = .null
        } else if let b = try? c.decode(Bool.self) {
            self = .bool(b)
        } else if let n = try? c.decode(Double.self) {
            self = .number(n)
        } else if let s = try? c.decode(String.self) {
            self = .string(s)
        } else if let a = try? c.decode([JSONValue].self) {
            self = .array(a)
        } else {
            self = .object(try c.decode([String: JSONValue].self))
        }
    }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .null: try c.encodeNil()
        case .bool(let b): try c.encode(b)
        case .number(let n): try c.encode(n)
        case .string(let s): try c.encode(s)
        case .array(let a): try c.encode(a)
        case .object(let o): try c.encode(o)
        }
    }

    static func parse(_ text: String) -> JSONValue? {
        try? JSONDecoder().decode(JSONValue.self, from: Data(text.utf8))
    }

    /// A short name of the kind of value, for error messages.
    var kind: String {
        switch self {
        case .null: "null"
        case .bool: "a boolean"
        case .number: "a number"
        case .string: "a string"
        case .array: "an array"
        case .object: "an object"
        }
    }
}
