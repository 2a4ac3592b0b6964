import FarmAPI
import Foundation
import HTTPTypes
import OpenAPIRuntime
import OpenAPIURLSession

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

// The client generated from docs/openapi.yaml, as `farm submit`, `jobs`, `nodes` and `cancel` use it.

/// Sends the API token with every request of the generated client.
struct BearerToken: ClientMiddleware {
    let token: String?

    func intercept(
        _ request: HTTPRequest, body: HTTPBody?, baseURL: URL, operationID: String,
        next: @Sendable (HTTPRequest, HTTPBody?, URL) async throws -> (HTTPResponse, HTTPBody?)
    ) async throws -> (HTTPResponse, HTTPBody?) {
        var request = request
        if let token { request.headerFields[.authorization] = "Bearer \(token)" }
        return try await next(request, body, baseURL)
    }
}

/// Turns every answer outside 2xx into an `APIClient.Failure` with the API's one-line error, so that
/// callers of the generated client read only the success they expect.
struct FailureOnErrorStatus: ClientMiddleware {
    static let maxErrorBytes = 64 * 1024

    func intercept(
        _ request: HTTPRequest, body: HTTPBody?, baseURL: URL, operationID: String,
        next: @Sendable (HTTPRequest, HTTPBody?, URL) async throws -> (HTTPResponse, HTTPBody?)
    ) async throws -> (HTTPResponse, HTTPBody?) {
        let (response, responseBody) = try await next(request, body, baseURL)
        guard !(200..<300).contains(response.status.code) else { return (response, responseBody) }
        var data = Data()
        if let responseBody { data = (try? await Data(collecting: responseBody, upTo: Self.maxErrorBytes)) ?? Data() }
        let message = (try? JSONDecoder().decode(ErrorReply.self, from: data))?.error
            ?? String(decoding: data.prefix(300), as: UTF8.self)
        throw APIClient.Failure(
            status: response.status.code, description: "\(request.method) \(request.path ?? ""): \(response.status.code) \(message)")
    }
}

extension APIClient {
    /// The client generated from docs/openapi.yaml, over URLSession.
    var api: Client {
        Client(serverURL: base, transport: URLSessionTransport(), middlewares: [BearerToken(token: token), FailureOnErrorStatus()])
    }

    /// Runs `operation` on the generated client; its failures come out as `Failure`s (status nil: no answer).
    func call<T>(_ what: String, _ operation: (Client) async throws -> T) async throws -> T {
        do {
            return try await operation(api)
        } catch let error as ClientError {
            if let failure = error.underlyingError as? Failure { throw failure }
            throw Failure(status: nil, description: "\(what): \(error.underlyingError.localizedDescription)")
        } catch let error as Failure {
            throw error
        } catch {
            // The answer was a success of an unexpected shape (`.ok` or `.json` on another case).
            throw Failure(status: nil, description: "\(what): unexpected reply: \(error)")
        }
    }
}
