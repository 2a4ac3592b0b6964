internal import Foundation
internal import HTTPTypes
internal import Hummingbird
internal import Logging
internal import NIOCore

/// Resumable uploads in the tus 1.0 protocol at `/files/` (https://tus.io/protocols/resumable-upload), so stock
/// clients (tus-js-client, Uppy, tuspy) upload sources: the core protocol and the creation, termination, checksum
/// and expiration extensions. `POST /files/` with `Upload-Length` and `Upload-Metadata` makes an upload and answers
/// its URL in `Location`; `HEAD` says its `Upload-Offset`; `PATCH` with `Upload-Offset` (and optionally
/// `Upload-Checksum`) appends a chunk, each at most 90 MiB (under the 100 MB request limit of Akash's ingress);
/// `DELETE` removes it. The uploads are those of ``ResumableUploads`` (the `/uploads` routes are another door to
/// the same ones): bytes stream to disk, survive a restart, count against `--max-upload-gib` and `--max-uploads`,
/// and expire when nothing arrived for the stale time, which `Upload-Expires` tells. A finished upload becomes a job
/// with `POST /jobs {"upload": ID}`, ID being the last part of its URL.
enum Tus {
    static let version = "1.0.0"
    static let extensions = "creation,termination,checksum,expiration"
    static let offsetStream = "application/offset+octet-stream"
    /// The longest `Upload-Metadata` kept (it is stored beside the upload and echoed on every HEAD).
    static let maxMetadataBytes = 4096

    static func isTusPath(_ path: String) -> Bool { path == "/files" || path.hasPrefix("/files/") }

    /// Every route of the protocol, behind the API's bearer token like every other.
    static func addRoutes(to router: Router<HTTPAPI.Context>, routes: Routes) {
        router.on("/files", method: .options) { _, _ in routes.tusOptions() }
        router.on("/files/:id", method: .options) { _, _ in routes.tusOptions() }
        router.post("/files") { request, _ in try await routes.tusCreate(request) }
        router.head("/files/:id") { _, context in try routes.tusHead(try context.parameters.require("id")) }
        router.patch("/files/:id") { request, context in try await routes.tusPatch(try context.parameters.require("id"), request: request) }
        router.delete("/files/:id") { _, context in try routes.tusDelete(try context.parameters.require("id")) }
    }

    /// `key base64,key2 base64` (a key may stand alone): the values decoded, or a message saying what is wrong.
    static func parseMetadata(_ header: String) throws -> [String: String] {
        guard header.utf8.count <= maxMetadataBytes else {
            throw APIError.badRequest("Upload-Metadata is \(header.utf8.count) bytes; at most \(maxMetadataBytes) are kept")
        }
        var values: [String: String] = [:]
        for pair in header.split(separator: ",") {
            let parts = pair.trimmingCharacters(in: .whitespaces).split(separator: " ", omittingEmptySubsequences: true)
            guard let key = parts.first, parts.count <= 2, key.allSatisfy({ $0.isASCII && !$0.isWhitespace }) else {
                throw APIError.badRequest("Upload-Metadata pair '\(pair.prefix(100))' is not KEY BASE64-VALUE")
            }
            guard values[String(key)] == nil else { throw APIError.badRequest("Upload-Metadata names \(key.prefix(100)) twice") }
            if parts.count == 2 {
                guard let data = Data(base64Encoded: String(parts[1])) else {
                    throw APIError.badRequest("Upload-Metadata value of \(key.prefix(100)) is not base64")
                }
                values[String(key)] = String(decoding: data, as: UTF8.self)
            } else {
                values[String(key)] = ""
            }
        }
        return values
    }

    /// A decimal header value of at most `Int64.max`, with a message naming the header otherwise.
    static func integer(_ value: String?, _ name: String) throws -> Int64? {
        guard let value else { return nil }
        let text = value.trimmingCharacters(in: .whitespaces)
        guard !text.isEmpty, text.utf8.count <= 19, text.allSatisfy({ $0.isASCII && $0.isNumber }), let number = Int64(text) else {
            throw APIError.badRequest("\(name) '\(value.prefix(40))' is not a non-negative number of bytes")
        }
        return number
    }

    /// An HTTP date (RFC 9110 IMF-fixdate), as `Upload-Expires` carries it.
    static func httpDate(_ date: Date) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
        return formatter.string(from: date)
    }

    /// The headers a browser client reads across origins (tus-js-client and Uppy need `Location`, `Upload-Offset`
    /// and the `Tus-*` ones).
    static let exposedHeaders = [
        "Location", "Tus-Resumable", "Tus-Version", "Tus-Extension", "Tus-Max-Size", "Tus-Checksum-Algorithm", "Upload-Offset",
        "Upload-Length", "Upload-Metadata", "Upload-Expires",
    ]
}

extension HTTPField.Name {
    static let tusResumable = Self("Tus-Resumable")!
    static let tusVersion = Self("Tus-Version")!
    static let tusExtension = Self("Tus-Extension")!
    static let tusMaxSize = Self("Tus-Max-Size")!
    static let tusChecksumAlgorithm = Self("Tus-Checksum-Algorithm")!
    static let uploadOffset = Self("Upload-Offset")!
    static let uploadLength = Self("Upload-Length")!
    static let uploadDeferLength = Self("Upload-Defer-Length")!
    static let uploadMetadata = Self("Upload-Metadata")!
    static let uploadChecksum = Self("Upload-Checksum")!
    static let uploadExpires = Self("Upload-Expires")!
}

extension HTTPResponse.Status {
    /// tus: the chunk does not match its `Upload-Checksum`.
    static let checksumMismatch = Self(code: 460, reasonPhrase: "Checksum Mismatch")
}

/// In front of every other middleware (the error mapping and the bearer token too), for `/files` only: CORS for
/// browser clients (Hummingbird's middleware: a preflight, which carries no token, is answered here), 412 for a
/// request without `Tus-Resumable: 1.0.0`, and `Tus-Resumable` on every answer, errors and 401 included. An answer
/// to HEAD leaves with no body (an error's JSON would otherwise follow it on the connection).
struct TusProtocolMiddleware<Context: RequestContext>: RouterMiddleware {
    let cors = CORSMiddleware<Context>(
        allowOrigin: .all,
        allowHeaders: [
            .authorization, .contentType, .origin, .tusResumable, .uploadLength, .uploadMetadata, .uploadOffset, .uploadChecksum,
            .uploadDeferLength, HTTPField.Name("X-Requested-With")!,
        ],
        allowMethods: [.post, .head, .patch, .delete, .options], exposedHeaders: Tus.exposedHeaders, maxAge: .hours(24))

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard Tus.isTusPath(request.uri.path) else { return try await next(request, context) }
        var response = try await cors.handle(request, context: context) { request, context in
            guard request.method == .options || request.headers[.tusResumable] == Tus.version else {
                let sent = request.headers[.tusResumable].map { "Tus-Resumable \($0.prefix(40)) is not supported" } ?? "Tus-Resumable is missing"
                return try APIError(.preconditionFailed, "\(sent); this server speaks tus \(Tus.version)", headers: [.tusVersion: Tus.version])
                    .response(from: request, context: context)
            }
            return try await next(request, context)
        }
        response.headers[.tusResumable] = Tus.version
        if request.headers.contains(.origin) { response.headers[.accessControlExposeHeaders] = Tus.exposedHeaders.joined(separator: ", ") }
        if request.method == .head {
            response.body = ResponseBody()
            response.headers[.contentLength] = "0"
        }
        return response
    }
}

extension Routes {
    /// `OPTIONS /files/`: what this server supports.
    func tusOptions() -> Response {
        Response(
            status: .noContent,
            headers: [
                .tusVersion: Tus.version, .tusExtension: Tus.extensions, .tusMaxSize: "\(uploads.maxBytes)",
                .tusChecksumAlgorithm: UploadChecksum.advertised,
            ])
    }

    /// `POST /files/` with `Upload-Length` and optionally `Upload-Metadata` (its `filename` or `name` names the job's
    /// source).
    func tusCreate(_ request: Request) async throws -> Response {
        if request.headers[.uploadDeferLength] != nil {
            throw APIError.badRequest("Upload-Defer-Length is not supported: send Upload-Length, the file's size in bytes")
        }
        guard let size = try Tus.integer(request.headers[.uploadLength], "Upload-Length") else {
            throw APIError.badRequest("Upload-Length is required: the file's size in bytes")
        }
        guard size > 0 else { throw APIError.badRequest("Upload-Length is 0: an empty file holds no video") }
        let bodyBytes = try Tus.integer(request.headers[.contentLength], "Content-Length") ?? 0
        if request.headers[.contentType] == Tus.offsetStream || bodyBytes > 0 {
            throw APIError.badRequest("creation-with-upload is not supported: create the upload, then send its bytes with PATCH")
        }
        let header = request.headers[.uploadMetadata]
        let metadata = try header.map(Tus.parseMetadata) ?? [:]
        let filename = [metadata["filename"], metadata["name"]].compactMap { $0 }.first { !$0.isEmpty }
        try uploads.admit()
        let entry = try uploads.resumable.create(size: size, filename: filename, metadata: header)
        configuration.logger.info("upload created", metadata: ["upload": "\(entry.id)", "protocol": "tus", "bytes": "\(size)"])
        return Response(
            status: .created,
            headers: [
                .location: "/files/\(entry.id)", .uploadOffset: "0",
                .uploadExpires: Tus.httpDate(uploads.resumable.expiry(of: entry)),
            ])
    }

    /// `HEAD /files/{id}`: how many bytes arrived, so a client resumes there.
    func tusHead(_ id: String) throws -> Response {
        let entry = try uploads.resumable.entry(id)
        var headers: HTTPFields = [
            .uploadOffset: "\(entry.offset)", .uploadLength: "\(entry.size)", .cacheControl: "no-store",
            .uploadExpires: Tus.httpDate(uploads.resumable.expiry(of: entry)),
        ]
        if let metadata = entry.metadata { headers[.uploadMetadata] = metadata }
        return Response(status: .ok, headers: headers)
    }

    /// `PATCH /files/{id}` with `Upload-Offset` and a body of `application/offset+octet-stream`.
    func tusPatch(_ id: String, request: Request) async throws -> Response {
        let type = request.headers[.contentType]?.split(separator: ";").first?.trimmingCharacters(in: .whitespaces).lowercased()
        guard type == Tus.offsetStream else {
            throw APIError(.unsupportedMediaType, "PATCH needs Content-Type: \(Tus.offsetStream), got \(type ?? "none")")
        }
        guard let offset = try Tus.integer(request.headers[.uploadOffset], "Upload-Offset") else {
            throw APIError.badRequest("Upload-Offset is required: the byte of the upload this chunk starts at")
        }
        let length = try Tus.integer(request.headers[.contentLength], "Content-Length")
        let checksum = try request.headers[.uploadChecksum].map(UploadChecksum.parse)
        let entry = try await uploads.resumable.append(
            id, at: offset, length: length, checksum: checksum, body: CountingSequence(base: request.body, metrics: metrics))
        return Response(
            status: .noContent,
            headers: [.uploadOffset: "\(entry.offset)", .uploadExpires: Tus.httpDate(uploads.resumable.expiry(of: entry))])
    }

    /// `DELETE /files/{id}` (termination): the upload and its bytes go.
    func tusDelete(_ id: String) throws -> Response {
        try uploads.resumable.remove(id)
        return Response(status: .noContent)
    }
}
