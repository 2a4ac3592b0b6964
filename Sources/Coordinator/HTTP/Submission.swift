internal import FarmHWEncode
internal import FarmProtocol
internal import Foundation

/// The encoding fields of `POST /jobs`, checked one by one so that a bad request says which field
/// was wrong and what would have been right. JSON bodies, form fields and query parameters all end
/// up here.
struct Submission: Equatable {
    /// A path or an http(s) URL; nil for an upload.
    var source: String?
    var codec: VideoCodec = .h264
    var crf: Int?
    var preset = "medium"
    var container = "mp4"
    var segmentSeconds: Double?
    /// The id of a finished resumable upload (tus `POST /files/`, the last part of its Location, or `POST /uploads`),
    /// and the SHA-256 the client computed.
    var upload: String?
    var sha256: String?
    /// Labels every node that gets a segment must carry (sorted, without repeats).
    var nodeLabels: [String] = []

    static let containers = ["mp4", "mkv", "mov"]
    /// x264's preset names; SVT-AV1's numbered presets are mapped from them by the encoder.
    static let presets = ["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow", "placebo"]
    static let fields: Set<String> = [
        "source", "upload", "sha256", "codec", "crf", "preset", "container", "segment_seconds", "nodes", "node_labels",
    ]

    static func crfRange(_ codec: VideoCodec) -> ClosedRange<Int> {
        codec == .av1 ? 0...63 : 0...51
    }

    /// Reads a JSON object body.
    static func parse(json body: Data) throws(APIError) -> Submission {
        guard !body.isEmpty else { throw .badRequest("empty body: expected a JSON object such as {\"source\": \"/path/clip.mp4\"}") }
        let value: JSONValue
        do {
            value = try JSONDecoder().decode(JSONValue.self, from: body)
        } catch {
            throw .badRequest("invalid JSON: \(Self.describe(error))")
        }
        guard case .object(let object) = value else {
            throw .badRequest("expected a JSON object, got \(value.kind)")
        }
        return try parse(object)
    }

    /// Reads fields given as text (a form, multipart parts, query parameters).
    static func parse(text fields: [String: String]) throws(APIError) -> Submission {
        try parse(fields.mapValues { JSONValue.string($0) })
    }

    static func parse(_ object: [String: JSONValue]) throws(APIError) -> Submission {
        let unknown = Set(object.keys).subtracting(fields)
        guard unknown.isEmpty else {
            throw .badRequest(
                "unknown field\(unknown.count == 1 ? "" : "s") \(unknown.sorted().map { "'\($0)'" }.joined(separator: ", ")); "
                    + "accepted: \(fields.sorted().joined(separator: ", "))")
        }
        var s = Submission()
        if let value = object["source"], value != .null {
            guard case .string(let source) = value, !source.isEmpty else {
                throw .badRequest("source must be a non-empty string (a path or an http(s) URL), got \(value.kind)")
            }
            s.source = source
        }
        for key in ["upload", "sha256"] {
            guard let value = object[key], value != .null else { continue }
            guard case .string(let text) = value, !text.isEmpty else {
                throw .badRequest("\(key) must be a non-empty string, got \(value.kind)")
            }
            if key == "upload" { s.upload = text } else { s.sha256 = text }
        }
        if let value = object["codec"], value != .null {
            guard case .string(let name) = value, let codec = VideoCodec(rawValue: name.lowercased()) else {
                throw .badRequest(
                    "unknown codec \(Self.show(value)); expected one of \(VideoCodec.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            s.codec = codec
        }
        if let value = object["crf"], value != .null {
            let number: Double?
            switch value {
            case .number(let n): number = n
            case .string(let text): number = Double(text.trimmingCharacters(in: .whitespaces))
            default: number = nil
            }
            let range = crfRange(s.codec)
            guard let number, number.rounded() == number, range.contains(Int(exactly: number) ?? -1) else {
                throw .badRequest(
                    "crf must be an integer from \(range.lowerBound) to \(range.upperBound) for \(s.codec.rawValue), got \(Self.show(value))")
            }
            s.crf = Int(number)
        }
        if let value = object["preset"], value != .null {
            guard case .string(let name) = value, presets.contains(name.lowercased()) else {
                throw .badRequest("unknown preset \(Self.show(value)); expected one of \(presets.joined(separator: ", "))")
            }
            s.preset = name.lowercased()
        }
        if let value = object["container"], value != .null {
            guard case .string(let name) = value, containers.contains(name.lowercased()) else {
                throw .badRequest("unknown container \(Self.show(value)); expected one of \(containers.joined(separator: ", "))")
            }
            s.container = name.lowercased()
        }
        if let value = object["segment_seconds"], value != .null {
            let number: Double?
            switch value {
            case .number(let n): number = n
            case .string(let text): number = Double(text.trimmingCharacters(in: .whitespaces))
            default: number = nil
            }
            guard let number, number.isFinite, number >= 0.5, number <= 3600 else {
                throw .badRequest("segment_seconds must be a number from 0.5 to 3600, got \(Self.show(value))")
            }
            s.segmentSeconds = number
        }
        // Node pools: `"nodes": {"labels": [...]}` in JSON, `node_labels=a,b` as text.
        var labels: [String]?
        if let value = object["nodes"], value != .null {
            guard case .object(let nodes) = value else { throw .badRequest("nodes must be an object such as {\"labels\": [\"trusted\"]}, got \(value.kind)") }
            if let unknown = nodes.keys.first(where: { $0 != "labels" }) {
                throw .badRequest("unknown field 'nodes.\(unknown)'; accepted: nodes.labels")
            }
            if let list = nodes["labels"], list != .null {
                guard case .array(let items) = list else { throw .badRequest("nodes.labels must be an array of strings, got \(list.kind)") }
                labels = try items.map { item throws(APIError) in
                    guard case .string(let label) = item else { throw .badRequest("nodes.labels holds \(item.kind), not a string") }
                    return label
                }
            }
        }
        if let value = object["node_labels"], value != .null {
            guard case .string(let text) = value else { throw .badRequest("node_labels must be a comma-separated string, got \(value.kind)") }
            labels = (labels ?? []) + text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        }
        if let labels {
            let unique = Array(Set(labels)).sorted()
            if let problem = NodeLabels.problem(unique) { throw .badRequest("nodes.labels: \(problem)") }
            s.nodeLabels = unique
        }
        return s
    }

    var isURL: Bool {
        guard let source else { return false }
        let lower = source.lowercased()
        return lower.hasPrefix("http://") || lower.hasPrefix("https://")
    }

    func request(source: String, output: String) -> JobRequest {
        var request = JobRequest(source: source, output: output, codec: codec, crf: crf, preset: preset, segmentSeconds: segmentSeconds)
        request.nodeLabels = nodeLabels.isEmpty ? nil : nodeLabels
        return request
    }

    private static func show(_ value: JSONValue) -> String {
        switch value {
        case .string(let s): "'\(s)'"
        case .number(let n): n.rounded() == n && abs(n) < 1e15 ? "\(Int(n))" : "\(n)"
        default: value.kind
        }
    }

    private static func describe(_ error: any Error) -> String {
        guard let error = error as? DecodingError else { return "\(error)" }
        switch error {
        case .dataCorrupted(let context):
            if let underlying = context.underlyingError as NSError? {
                return underlying.userInfo[NSDebugDescriptionErrorKey] as? String ?? context.debugDescription
            }
            return context.debugDescription
        case .typeMismatch(_, let context), .valueNotFound(_, let context), .keyNotFound(_, let context):
            return context.debugDescription
        @unknown default:
            return "\(error)"
        }
    }
}

/// Decides whether a source path may be read: it must exist, be a regular file, and lie under a
/// source root once symlinks and `..` are resolved (`realpath`).
struct SourcePolicy: Sendable {
    /// The roots, resolved; roots that do not exist are left out.
    let roots: [String]
    let configured: [String]

    init(roots: [String]) {
        configured = roots
        self.roots = roots.compactMap(Self.realPath)
    }

    /// The resolved path of a source the API may read.
    func resolve(_ path: String) throws(APIError) -> String {
        guard !configured.isEmpty else {
            throw .forbidden("\(path): this coordinator reads no local paths (no --source-root); upload the file instead")
        }
        guard path.hasPrefix("/") else {
            throw .badRequest("\(path): a source path must be absolute")
        }
        guard let resolved = Self.realPath(path) else {
            // Say "not found" only inside a root, so the API does not reveal what exists elsewhere.
            let lexical = URL(fileURLWithPath: path).standardizedFileURL.path
            guard contains(lexical) || configured.contains(where: { Self.isInside(lexical, root: $0) }) else {
                throw outside(path)
            }
            throw .badRequest("\(path): no such file")
        }
        guard contains(resolved) else { throw outside(path) }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: resolved, isDirectory: &isDirectory), !isDirectory.boolValue else {
            throw .badRequest("\(path): not a regular file")
        }
        guard access(resolved, R_OK) == 0 else {
            throw .forbidden("\(path): the coordinator cannot read it")
        }
        return resolved
    }

    func contains(_ resolved: String) -> Bool {
        roots.contains { Self.isInside(resolved, root: $0) }
    }

    private func outside(_ path: String) -> APIError {
        .forbidden("\(path): outside the allowed source roots (\(configured.joined(separator: ", ")))")
    }

    static func isInside(_ path: String, root: String) -> Bool {
        let root = root.count > 1 && root.hasSuffix("/") ? String(root.dropLast()) : root
        return path == root || path.hasPrefix(root == "/" ? "/" : root + "/")
    }

    static func realPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }
}
