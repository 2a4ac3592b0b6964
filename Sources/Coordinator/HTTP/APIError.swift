internal import Crypto
internal import FarmAPI
internal import Foundation
internal import HTTPTypes
internal import Hummingbird
internal import Logging
internal import NIOCore
internal import OpenAPIRuntime

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

    /// A request the generated server could not read (a body or parameter that does not fit the
    /// document): 400, or 415 for a content type the operation does not take, naming what was wrong.
    static func from(_ error: ServerError) -> APIError {
        if let api = error.underlyingError as? APIError { return api }
        let detail: String
        switch error.underlyingError {
        case let decoding as DecodingError: detail = Self.describe(decoding)
        default: detail = "\(error.underlyingError)"
        }
        if detail.contains("Unexpected content type") || detail.contains("unexpected content type") {
            return APIError(.unsupportedMediaType, "\(error.operationID): \(Self.oneLine(detail))")
        }
        return APIError(.badRequest, "\(error.operationID): \(Self.oneLine(detail))")
    }

    static func describe(_ error: DecodingError) -> String {
        switch error {
        case .typeMismatch(_, let context), .valueNotFound(_, let context), .keyNotFound(_, let context),
            .dataCorrupted(let context):
            let path = context.codingPath.map(\.stringValue).filter { !$0.isEmpty }.joined(separator: ".")
            return path.isEmpty ? context.debugDescription : "\(path): \(context.debugDescription)"
        @unknown default:
            return "\(error)"
        }
    }

    static func oneLine(_ text: String) -> String {
        text.split(whereSeparator: \.isNewline).joined(separator: " ")
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
        } catch var error as APIError {
            if error.status.code >= 500 {
                // The detail (paths, errno) goes to the log; the client learns only that it failed.
                context.logger.error("request failed", metadata: ["path": "\(request.uri.path)", "error": "\(error.message)"])
                error.message = "internal error; the coordinator's log has the detail"
            }
            return try error.response(from: request, context: context)
        } catch let error as CoordinatorError {
            return try APIError.from(error).response(from: request, context: context)
        } catch let error as HTTPError {
            if error.status == .notFound, error.body == nil, let allowed = Self.allowedMethods(request.uri.path) {
                return try APIError(
                    .methodNotAllowed,
                    "\(request.method) is not allowed on \(request.uri.path); it answers \(allowed.joined(separator: ", "))",
                    headers: [.allow: allowed.joined(separator: ", ")]
                ).response(from: request, context: context)
            }
            let message = error.body ?? Self.defaultMessage(error.status, request: request)
            return try APIError(error.status, message, headers: error.headers).response(from: request, context: context)
        } catch is NIOTooManyBytesError {
            return try APIError(.contentTooLarge, "request body too large").response(from: request, context: context)
        } catch let error as ServerError {
            return try APIError.from(error).response(from: request, context: context)
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            // The detail goes to the log, not to the client.
            context.logger.error("request failed", metadata: ["path": "\(request.uri.path)", "error": "\(error)"])
            return try APIError(.internalServerError, "internal error; the coordinator's log has the detail")
                .response(from: request, context: context)
        }
    }

    /// The methods the document declares for `path` when it matches one of its paths, else nil.
    static func allowedMethods(_ path: String) -> [String]? {
        let segments = path.split(separator: "/", omittingEmptySubsequences: false)
        let methods = APIDocument.operations.filter { operation in
            let template = operation.path.split(separator: "/", omittingEmptySubsequences: false)
            guard template.count == segments.count else { return false }
            return zip(template, segments).allSatisfy { pattern, segment in
                pattern.hasPrefix("{") && pattern.hasSuffix("}") ? !segment.isEmpty : pattern == segment
            }
        }.map(\.method)
        return methods.isEmpty ? nil : methods
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
