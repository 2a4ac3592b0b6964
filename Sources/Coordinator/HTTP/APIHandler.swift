internal import FarmAPI
internal import Foundation
internal import HTTPTypes
internal import Hummingbird
internal import OpenAPIHummingbird
internal import OpenAPIRuntime

/// The operations of docs/openapi.yaml that the generated server answers: every JSON route.
/// Errors are thrown as `APIError`; `ErrorMappingMiddleware` turns them into the one-line answer
/// (the generated server hands them on wrapped in a `ServerError`).
///
/// Three operations are plain Hummingbird routes instead, declared in the same document (see
/// docs/architecture-http.md): `POST /jobs`, `PUT /uploads/{id}` and `GET /jobs/{id}/output`,
/// which stream request or response bodies straight between the socket and the disk.
struct APIHandler: APIProtocol {
    let routes: Routes

    /// The operations served by plain routes: `StreamingRoutesTransport` leaves them out.
    static let plainRoutes: Set<String> = [
        "POST /jobs", "PUT /uploads/{id}", "GET /jobs/{id}/output",
        // tus 1.0 (TusUploads.swift): bodies stream to disk, and every answer carries the protocol's headers.
        "OPTIONS /files", "POST /files", "OPTIONS /files/{id}", "HEAD /files/{id}", "PATCH /files/{id}",
        "DELETE /files/{id}",
    ]

    func listJobs(_ input: Operations.listJobs.Input) async throws -> Operations.listJobs.Output {
        let jobs = await routes.coordinator.listJobs()
        return .ok(.init(body: .json(.init(jobs: jobs.map { Schemas.Job($0, source: routes.uploads.displaySource($0)) }))))
    }

    func getJob(_ input: Operations.getJob.Input) async throws -> Operations.getJob.Output {
        .ok(.init(body: .json(try await routes.job(input.path.id))))
    }

    func cancelJob(_ input: Operations.cancelJob.Input) async throws -> Operations.cancelJob.Output {
        .ok(.init(body: .json(try await routes.cancel(input.path.id))))
    }

    func createUpload(_ input: Operations.createUpload.Input) async throws -> Operations.createUpload.Output {
        let request: Operations.createUpload.Input.Body.jsonPayload
        switch input.body {
        case .json(let body): request = body
        }
        guard request.size >= 1 else {
            throw APIError.badRequest("size must be at least 1 byte, got \(request.size)")
        }
        try routes.uploads.admit()
        let entry = try routes.uploads.resumable.create(size: Int64(request.size), filename: request.filename)
        return .created(.init(headers: .init(Location: "/uploads/\(entry.id)"), body: .json(Schemas.Upload(entry))))
    }

    func getUpload(_ input: Operations.getUpload.Input) async throws -> Operations.getUpload.Output {
        let uploads = routes.uploads.resumable
        return .ok(.init(body: .json(Schemas.Upload(try await uploads.withDigest(try uploads.entry(input.path.id))))))
    }

    func deleteUpload(_ input: Operations.deleteUpload.Input) async throws -> Operations.deleteUpload.Output {
        try routes.uploads.resumable.remove(input.path.id)
        return .noContent(.init())
    }

    func listNodes(_ input: Operations.listNodes.Input) async throws -> Operations.listNodes.Output {
        .ok(.init(body: .json(.init(nodes: await routes.nodes(), bans: await routes.coordinator.bans().map(Schemas.Ban.init)))))
    }

    func banNode(_ input: Operations.banNode.Input) async throws -> Operations.banNode.Output {
        let id = try Self.nodeID(input.path.id)
        var reason: String?
        var address = false
        if case .json(let body)? = input.body {
            if let given = body.reason {
                guard given.count <= 500 else { throw APIError.badRequest("reason has \(given.count) characters; at most 500") }
                reason = given.isEmpty ? nil : given
            }
            address = body.address ?? false
        }
        let ban = try await routes.coordinator.banNode(id, reason: reason, address: address)
        return .ok(.init(body: .json(Schemas.Ban(ban))))
    }

    func unbanNode(_ input: Operations.unbanNode.Input) async throws -> Operations.unbanNode.Output {
        let id = try Self.nodeID(input.path.id)
        guard let ban = await routes.coordinator.unbanNode(id) else {
            throw APIError(.notFound, "node \(id) is not banned")
        }
        return .ok(.init(body: .json(Schemas.Ban(ban))))
    }

    /// A node id from a path: 1 to 128 characters.
    static func nodeID(_ id: String) throws -> String {
        guard (1...128).contains(id.count) else { throw APIError.badRequest("a node id has 1 to 128 characters, not \(id.count)") }
        return id
    }

    func health(_ input: Operations.health.Input) async throws -> Operations.health.Output {
        .ok(.init(body: .json(.init(status: "ok"))))
    }

    func ready(_ input: Operations.ready.Input) async throws -> Operations.ready.Output {
        let answer = await routes.ready()
        return answer.ready ? .ok(.init(body: .json(answer))) : .serviceUnavailable(.init(body: .json(answer)))
    }

    func index(_ input: Operations.index.Input) async throws -> Operations.index.Output {
        .ok(.init(body: .json(.init(
            openapi: "/openapi.yaml",
            endpoints: APIDocument.operations.map { .init(method: $0.method, path: $0.path, summary: $0.summary) }))))
    }

    func validateSystem(_ input: Operations.validateSystem.Input) async throws -> Operations.validateSystem.Output {
        let result = Schemas.Validation(
            await SystemValidation.run(coordinator: routes.coordinator, configuration: routes.configuration, probe: routes.probe))
        return result.ok ? .ok(.init(body: .json(result))) : .serviceUnavailable(.init(body: .json(result)))
    }

    func metrics(_ input: Operations.metrics.Input) async throws -> Operations.metrics.Output {
        .ok(.init(body: .plainText(HTTPBody(await routes.metricsText()))))
    }

    func openapi(_ input: Operations.openapi.Input) async throws -> Operations.openapi.Output {
        .ok(.init(body: .yaml(HTTPBody(APIDocument.yaml))))
    }

    // The plain routes' operations: the transport never registers them, so these never run.

    func submitJob(_ input: Operations.submitJob.Input) async throws -> Operations.submitJob.Output {
        throw APIError(.internalServerError, "POST /jobs is served by its plain route")
    }

    func getOutput(_ input: Operations.getOutput.Input) async throws -> Operations.getOutput.Output {
        throw APIError(.internalServerError, "GET /jobs/{id}/output is served by its plain route")
    }

    func appendUpload(_ input: Operations.appendUpload.Input) async throws -> Operations.appendUpload.Output {
        throw APIError(.internalServerError, "PUT /uploads/{id} is served by its plain route")
    }

    func tusOptions(_ input: Operations.tusOptions.Input) async throws -> Operations.tusOptions.Output {
        throw APIError(.internalServerError, "OPTIONS /files is served by its plain route")
    }

    func tusCreate(_ input: Operations.tusCreate.Input) async throws -> Operations.tusCreate.Output {
        throw APIError(.internalServerError, "POST /files is served by its plain route")
    }

    func tusOptionsUpload(_ input: Operations.tusOptionsUpload.Input) async throws -> Operations.tusOptionsUpload.Output {
        throw APIError(.internalServerError, "OPTIONS /files/{id} is served by its plain route")
    }

    func tusHead(_ input: Operations.tusHead.Input) async throws -> Operations.tusHead.Output {
        throw APIError(.internalServerError, "HEAD /files/{id} is served by its plain route")
    }

    func tusPatch(_ input: Operations.tusPatch.Input) async throws -> Operations.tusPatch.Output {
        throw APIError(.internalServerError, "PATCH /files/{id} is served by its plain route")
    }

    func tusDelete(_ input: Operations.tusDelete.Input) async throws -> Operations.tusDelete.Output {
        throw APIError(.internalServerError, "DELETE /files/{id} is served by its plain route")
    }
}

/// Registers the generated handlers on the Hummingbird router, all but those of `APIHandler.plainRoutes`,
/// which the router gets as plain routes.
struct StreamingRoutesTransport: ServerTransport {
    let router: Router<HTTPAPI.Context>

    func register(
        _ handler: @Sendable @escaping (HTTPRequest, HTTPBody?, ServerRequestMetadata) async throws -> (HTTPResponse, HTTPBody?),
        method: HTTPRequest.Method, path: String
    ) throws {
        guard !APIHandler.plainRoutes.contains("\(method.rawValue) \(path)") else { return }
        router.register(handler, method: method, path: path)
    }
}

/// The runtime writes header values in OpenAPI's "simple" style, which percent-encodes `/`; a
/// `Location` is a URL path and goes out as one (`/uploads/up-1`, not `%2Fuploads%2Fup-1`).
struct PlainLocationHeader: ServerMiddleware {
    func intercept(
        _ request: HTTPRequest, body: HTTPBody?, metadata: ServerRequestMetadata, operationID: String,
        next: @Sendable (HTTPRequest, HTTPBody?, ServerRequestMetadata) async throws -> (HTTPResponse, HTTPBody?)
    ) async throws -> (HTTPResponse, HTTPBody?) {
        var (response, responseBody) = try await next(request, body, metadata)
        if let location = response.headerFields[.location], let plain = location.removingPercentEncoding {
            response.headerFields[.location] = plain
        }
        return (response, responseBody)
    }
}

/// A request that carries no body (no `Content-Type`, and `Content-Length: 0` or no length and no
/// `Transfer-Encoding`) reaches the generated server as one without a body, so that an operation whose body is
/// optional (`POST /nodes/{id}/ban`) takes a bare `POST` instead of refusing empty bytes as bad JSON.
struct EmptyBodyIsNoBody: ServerMiddleware {
    func intercept(
        _ request: HTTPRequest, body: HTTPBody?, metadata: ServerRequestMetadata, operationID: String,
        next: @Sendable (HTTPRequest, HTTPBody?, ServerRequestMetadata) async throws -> (HTTPResponse, HTTPBody?)
    ) async throws -> (HTTPResponse, HTTPBody?) {
        let fields = request.headerFields
        let empty = fields[.contentType] == nil
            && (fields[.contentLength] == "0" || (fields[.contentLength] == nil && fields[.transferEncoding] == nil))
        return try await next(request, empty ? nil : body, metadata)
    }
}
