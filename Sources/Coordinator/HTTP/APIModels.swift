internal import Foundation

/// A job as the HTTP API shows it: the snake_case fields, mapped from `JobStatus`.
struct JobJSON: Encodable {
    struct Segment: Encodable {
        var index: Int
        var state: String
        var attempts: Int
        var node: String?
        var encoder: String?
        var frames: Int

        func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(index, forKey: .index)
            try c.encode(state, forKey: .state)
            try c.encode(attempts, forKey: .attempts)
            try c.encode(node, forKey: .node)
            try c.encode(self.encoder, forKey: .encoder)
            try c.encode(frames, forKey: .frames)
        }

        enum CodingKeys: String, CodingKey { case index, state, attempts, node, encoder, frames }
    }

    var id: String
    var state: String
    var phase: String
    var progress: Double
    var fps: Double
    var etaSeconds: Double?
    var error: String?
    var segments: [Segment]
    var source: String
    var outputURL: String?
    var framesDone: Int
    var totalFrames: Int
    var sourceSeconds: Double
    var wallSeconds: Double
    var encodersByNode: [String: String]
    var fallbacks: Int
    var dropped: [String]
    /// Sources given by URL: bytes downloaded so far and the full size when known (omitted otherwise).
    var downloadedBytes: Int64?
    var downloadTotalBytes: Int64?

    init(_ status: JobStatus, source: String) {
        id = status.id
        state = status.state.rawValue
        phase = status.phase
        progress = Self.rounded(status.progress, 4)
        fps = Self.rounded(status.fps, 2)
        etaSeconds = status.etaSeconds.map { Self.rounded($0, 1) }
        error = status.error
        segments = status.segments.map {
            Segment(index: $0.index, state: $0.state, attempts: $0.attempts, node: $0.node, encoder: $0.encoder, frames: $0.frames)
        }
        self.source = source
        outputURL = status.state == .done ? "/jobs/\(status.id)/output" : nil
        framesDone = status.framesDone
        totalFrames = status.totalFrames
        sourceSeconds = Self.rounded(status.sourceSeconds, 3)
        wallSeconds = Self.rounded(status.wallSeconds, 3)
        encodersByNode = status.encodersByNode
        fallbacks = status.fallbacks
        dropped = status.dropped
        downloadedBytes = status.downloadedBytes
        downloadTotalBytes = status.downloadTotalBytes
    }

    static func rounded(_ value: Double, _ places: Int) -> Double {
        guard value.isFinite else { return 0 }
        let scale = pow(10, Double(places))
        return (value * scale).rounded() / scale
    }

    enum CodingKeys: String, CodingKey {
        case id, state, phase, progress, fps, error, segments, source, fallbacks, dropped
        case etaSeconds = "eta_s"
        case outputURL = "output_url"
        case framesDone = "frames_done"
        case totalFrames = "total_frames"
        case sourceSeconds = "source_s"
        case wallSeconds = "wall_s"
        case encodersByNode = "encoders_by_node"
        case downloadedBytes = "downloaded_bytes"
        case downloadTotalBytes = "download_total_bytes"
    }

    // Absent values are written as null so that every documented key is always present.
    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id)
        try c.encode(state, forKey: .state)
        try c.encode(phase, forKey: .phase)
        try c.encode(progress, forKey: .progress)
        try c.encode(fps, forKey: .fps)
        try c.encode(etaSeconds, forKey: .etaSeconds)
        try c.encode(error, forKey: .error)
        try c.encode(segments, forKey: .segments)
        try c.encode(source, forKey: .source)
        try c.encode(outputURL, forKey: .outputURL)
        try c.encode(framesDone, forKey: .framesDone)
        try c.encode(totalFrames, forKey: .totalFrames)
        try c.encode(sourceSeconds, forKey: .sourceSeconds)
        try c.encode(wallSeconds, forKey: .wallSeconds)
        try c.encode(encodersByNode, forKey: .encodersByNode)
        try c.encodeIfPresent(downloadedBytes, forKey: .downloadedBytes)
        try c.encodeIfPresent(downloadTotalBytes, forKey: .downloadTotalBytes)
        try c.encode(fallbacks, forKey: .fallbacks)
        try c.encode(dropped, forKey: .dropped)
    }
}

/// `GET /jobs`.
struct JobListJSON: Encodable {
    var jobs: [JobJSON]
}

/// `POST /jobs` answers this with 201.
struct CreatedJSON: Encodable {
    var id: String
    var state: String
    var url: String
}

/// A node as `GET /nodes` shows it.
struct NodeJSON: Encodable {
    var id: String
    var address: String
    var state: String
    var slots: Int
    var slotsInUse: Int
    var threads: Int
    var segmentsDone: Int
    /// Frames per second the node encoded between the last two observations.
    var fps: Double?
    var lastHeartbeatSeconds: Double
    var capabilities: JSONValue
    /// While the node is quarantined: seconds left, and why.
    var quarantinedForSeconds: Double?
    var quarantineReason: String?

    enum CodingKeys: String, CodingKey {
        case id, address, state, slots, threads, fps, capabilities
        case quarantinedForSeconds = "quarantined_for_s"
        case quarantineReason = "quarantine_reason"
        case slotsInUse = "slots_in_use"
        case segmentsDone = "segments_done"
        case lastHeartbeatSeconds = "last_heartbeat_s"
    }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id)
        try c.encode(address, forKey: .address)
        try c.encode(state, forKey: .state)
        try c.encode(slots, forKey: .slots)
        try c.encode(slotsInUse, forKey: .slotsInUse)
        try c.encode(threads, forKey: .threads)
        try c.encode(segmentsDone, forKey: .segmentsDone)
        try c.encode(fps, forKey: .fps)
        try c.encode(lastHeartbeatSeconds, forKey: .lastHeartbeatSeconds)
        try c.encode(capabilities, forKey: .capabilities)
        try c.encodeIfPresent(quarantinedForSeconds, forKey: .quarantinedForSeconds)
        try c.encodeIfPresent(quarantineReason, forKey: .quarantineReason)
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

    /// A node silent for longer than this is shown as "stale" (the lease watchdog closes it later).
    static let staleAfterSeconds = 10.0

    init(_ node: NodeStatus, fps: Double?) {
        id = node.id
        address = Self.plainAddress(node.address)
        slots = node.slots
        slotsInUse = node.slotsInUse
        threads = node.threads
        segmentsDone = node.segmentsDone
        self.fps = fps.map { JobJSON.rounded($0, 2) }
        lastHeartbeatSeconds = JobJSON.rounded(node.secondsSinceHeartbeat, 2)
        capabilities = JSONValue.parse(node.capabilitiesJSON) ?? .string(node.capabilitiesJSON)
        quarantinedForSeconds = node.quarantinedForSeconds.map { JobJSON.rounded($0, 1) }
        quarantineReason = node.quarantineReason
        if node.draining {
            state = "draining"
        } else if node.quarantinedForSeconds != nil {
            state = "quarantined"
        } else if node.secondsSinceHeartbeat > Self.staleAfterSeconds {
            state = "stale"
        } else if node.slotsInUse >= node.slots {
            state = "busy"
        } else if node.slotsInUse > 0 {
            state = "working"
        } else {
            state = "idle"
        }
    }
}

/// `GET /nodes`.
struct NodeListJSON: Encodable {
    var nodes: [NodeJSON]
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
