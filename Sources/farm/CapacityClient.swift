import FarmCapacity
import Foundation

/// The capacity module's `CapacityAPI` over this command's HTTP client: the one place the two meet.
struct CapacityClient: CapacityAPI {
    let client: APIClient

    init(_ client: APIClient) { self.client = client }

    /// A client of the coordinator at `server` (FARM_API_TOKEN is sent when set).
    init(server: String) throws {
        var options = ServerOptions()
        options.server = server
        client = try options.client()
    }

    func readyNodes() async throws -> Int {
        struct Ready: Decodable { var nodes: Int }
        return try await mapped { try await client.json(Ready.self, "GET", "/ready").nodes }
    }

    func submit(source: String, codec: String, preset: String) async throws -> String {
        let body = try JSONEncoder().encode(["source": source, "codec": codec, "preset": preset])
        return try await mapped { try await client.json(CreatedReply.self, "POST", "/jobs", body: body).id }
    }

    func upload(file: String, codec: String, preset: String) async throws -> String {
        let url = URL(fileURLWithPath: file)
        return try await mapped {
            let created: CreatedReply = try await client.upload(
                file: url, path: "/jobs", query: [("codec", codec), ("preset", preset), ("filename", url.lastPathComponent)]
            ) { _, _ in }
            return created.id
        }
    }

    func jobs() async throws -> [UInt8] {
        try await mapped { [UInt8](try await client.raw("GET", "/jobs")) }
    }

    func metrics() async throws -> String {
        try await mapped { String(decoding: try await client.raw("GET", "/metrics"), as: UTF8.self) }
    }

    func cancel(job id: String) async throws {
        _ = try await mapped { try await client.raw("DELETE", "/jobs/\(id)") }
    }

    private func mapped<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as APIClient.Failure {
            throw CapacityAPIFailure(status: error.status, description: error.description)
        }
    }
}
