internal import Crypto
internal import Foundation
internal import HTTPTypes
internal import Hummingbird
internal import Logging
internal import NIOCore

/// An error answered to an HTTP client as `{"error": "..."}` with a status code. Domain errors
/// become these at the edge (CONVENTIONS #9); the domain never builds a response.
struct APIError: Error, HTTPResponseError, CustomStringConvertible {
    var status: HTTPResponse.Status
    var message: String
    var headers: HTTPFields = [:]

    init(_ status: HTTPResponse.Status, _ message: String, headers: HTTPFields = [:]) {
        self.status = status
        self.message = message
        self.headers = headers
    }

    var description: String { "\(status.code) \(message)" }

    func response(from request: Request, context: some RequestContext) throws -> Response {
        var response = ErrorBody(error: message).jsonResponse(status: status)
        response.headers.append(contentsOf: headers)
        return response
    }

    static func badRequest(_ message: String) -> APIError { APIError(.badRequest, message) }
    static func notFound(_ message: String) -> APIError { APIError(.notFound, message) }
    static func forbidden(_ message: String) -> APIError { APIError(.forbidden, message) }
    static func conflict(_ message: String) -> APIError { APIError(.conflict, message) }

    /// The status and message a coordinator error is answered with.
    static func from(_ error: CoordinatorError) -> APIError {
        switch error.code {
        case .invalidRequest: APIError(.badRequest, error.message)
        case .unknownJob: APIError(.notFound, error.message)
        case .jobFailed: APIError(.conflict, error.message)
        case .queueFull: APIError(.tooManyRequests, error.message, headers: [.retryAfter: "30"])
        default: APIError(.internalServerError, error.message)
        }
    }
}

/// The body of every error answer.
struct ErrorBody: Encodable {
    var error: String
}

/// Turns every error a route throws, Hummingbird's own included (unknown route, body too large),
/// into `{"error": "..."}` with the right status, and logs server-side failures.
struct ErrorMappingMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        do {
            return try await next(request, context)
        } catch let error as APIError {
            if error.status.code >= 500 {
                context.logger.error("request failed", metadata: ["path": "\(request.uri.path)", "error": "\(error.message)"])
            }
            return try error.response(from: request, context: context)
        } catch let error as CoordinatorError {
            return try APIError.from(error).response(from: request, context: context)
        } catch let error as HTTPError {
            let message = error.body ?? Self.defaultMessage(error.status, request: request)
            return try APIError(error.status, message, headers: error.headers).response(from: request, context: context)
        } catch is NIOTooManyBytesError {
            return try APIError(.contentTooLarge, "request body too large").response(from: request, context: context)
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            context.logger.error("request failed", metadata: ["path": "\(request.uri.path)", "error": "\(error)"])
            return try APIError(.internalServerError, "\(error)").response(from: request, context: context)
        }
    }

    static func defaultMessage(_ status: HTTPResponse.Status, request: Request) -> String {
        switch status {
        case .notFound: "no route \(request.method) \(request.uri.path); GET /api lists the endpoints"
        case .methodNotAllowed: "\(request.method) is not allowed on \(request.uri.path); GET /api lists the endpoints"
        default: status.reasonPhrase
        }
    }
}

/// Checks `Authorization: Bearer <token>` when the API has a token; only the health and readiness
/// endpoints stay open, and `/metrics` when the operator chose so (`--metrics-open`).
struct BearerTokenMiddleware<Context: RequestContext>: RouterMiddleware {
    let digest: [UInt8]
    let openPaths: Set<String>

    init(token: String, metricsOpen: Bool = false) {
        self.digest = Array(SHA256.hash(data: Array(token.utf8)))
        self.openPaths = metricsOpen ? ["/health", "/ready", "/metrics"] : ["/health", "/ready"]
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        if openPaths.contains(request.uri.path) { return try await next(request, context) }
        let presented = request.headers[.authorization].flatMap { value -> String? in
            let parts = value.split(separator: " ", maxSplits: 1)
            guard parts.count == 2, parts[0].lowercased() == "bearer" else { return nil }
            return String(parts[1])
        }
        guard let presented, Self.constantTimeEqual(Array(SHA256.hash(data: Array(presented.utf8))), digest) else {
            throw APIError(
                .unauthorized, presented == nil ? "missing bearer token (set FARM_API_TOKEN)" : "wrong bearer token",
                headers: [.wwwAuthenticate: "Bearer"])
        }
        return try await next(request, context)
    }

    /// Compares two digests in constant time. Both sides are SHA-256 digests, so neither the position of the first
    /// difference nor the length of the presented token shows in the time taken.
    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for i in a.indices { difference |= a[i] ^ b[i] }
        return difference == 0
    }
}

extension Encodable {
    /// This value as a JSON response (snake_case keys are spelled out by each type's coding keys).
    func jsonResponse(status: HTTPResponse.Status = .ok) -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let data = (try? encoder.encode(self)) ?? Data(#"{"error":"cannot encode the response"}"#.utf8)
        var buffer = ByteBuffer()
        buffer.writeBytes(data)
        buffer.writeString("\n")
        return Response(
            status: status,
            headers: [.contentType: "application/json; charset=utf-8", .contentLength: "\(buffer.readableBytes)"],
            body: ResponseBody(byteBuffer: buffer))
    }
}
