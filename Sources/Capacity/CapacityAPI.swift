/// The calls `farm capacity` makes to a coordinator's HTTP API. The module defines them and the farm command
/// adapts its HTTP client to them, so the capacity code does not depend on which client that is.
public protocol CapacityAPI: Sendable {
    /// `GET /ready`: how many render nodes have joined.
    func readyNodes() async throws -> Int
    /// `POST /jobs` naming a source on the coordinator (under a source root); the new job's id.
    func submit(source: String, codec: String, preset: String) async throws -> String
    /// `POST /jobs` with the local file uploaded as the source; the new job's id.
    func upload(file: String, codec: String, preset: String) async throws -> String
    /// `GET /jobs`: the reply body, JSON with a `jobs` array.
    func jobs() async throws -> [UInt8]
    /// `GET /metrics`: the Prometheus text exposition.
    func metrics() async throws -> String
    /// `DELETE /jobs/ID`.
    func cancel(job id: String) async throws
}

/// A call of `CapacityAPI` that failed: the HTTP status when an answer came, and one line saying what went wrong.
public struct CapacityAPIFailure: Error, CustomStringConvertible {
    /// nil when no HTTP answer came (connection refused, timeout).
    public var status: Int?
    public var description: String

    public init(status: Int?, description: String) {
        self.status = status
        self.description = description
    }
}
