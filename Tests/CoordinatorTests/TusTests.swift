import Crypto
@testable import FarmCoordinator
import FarmTestSupport
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing

/// tus 1.0 at `/files/` on the in-process HTTP API with a real coordinator: discovery, CORS, the version check,
/// creation, offsets, checksums, termination, limits, the `/uploads` alias, restarts and expiry; and tuspy, the
/// stock Python client, over loopback: a whole upload that becomes a job, a resume after a cut connection, and a
/// chunk with a wrong checksum refused with 460.
@Suite struct TusTests {
    typealias Fixture = HTTPAPITests.Fixture
    static let token = "tus-token"

    static func tus(_ extra: HTTPFields = [:]) -> HTTPFields {
        var fields: HTTPFields = [.authorization: "Bearer \(token)", .tusResumable: "1.0.0"]
        fields.append(contentsOf: extra)
        return fields
    }

    static func patch(_ offset: Int, _ extra: HTTPFields = [:]) -> HTTPFields {
        var fields = tus([.contentType: "application/offset+octet-stream", .uploadOffset: "\(offset)"])
        fields.append(contentsOf: extra)
        return fields
    }

    static func base64<D: Digest>(_ digest: D) -> String { Data(digest).base64EncodedString() }

    /// Creates an upload of `size` bytes; returns its id (the last part of its Location).
    static func create(_ client: some TestClientProtocol, size: Int, metadata: String? = nil) async throws -> String {
        var headers = tus([.uploadLength: "\(size)"])
        if let metadata { headers[.uploadMetadata] = metadata }
        return try await client.execute(uri: "/files/", method: .post, headers: headers) { response throws in
            #expect(response.status == .created, "\(String(buffer: response.body))")
            let location = try #require(response.headers[.location])
            #expect(location.hasPrefix("/files/up-"))
            return String(try #require(location.split(separator: "/").last))
        }
    }

    static func offset(_ client: some TestClientProtocol, _ id: String) async throws -> Int? {
        try await client.execute(uri: "/files/\(id)", method: .head, headers: tus()) { response in
            response.headers[.uploadOffset].flatMap { Int($0) }
        }
    }

    @Test func discoveryCORSAndTheVersionCheck() async throws {
        var fixture = try Fixture(maxUploadBytes: 5 << 20, apiToken: Self.token)
        fixture.configuration.maxConcurrentUploads = 3
        let f = fixture
        defer { f.remove() }
        try await f.app.test(.router) { client in
            for path in ["/files", "/files/up-any"] {
                try await client.execute(uri: path, method: .options, headers: [.authorization: "Bearer \(Self.token)"]) { response in
                    #expect(response.status == .noContent)
                    #expect(response.headers[.tusResumable] == "1.0.0")
                    #expect(response.headers[.tusVersion] == "1.0.0")
                    #expect(response.headers[.tusMaxSize] == "\(5 << 20)")
                    let extensions = Set((response.headers[.tusExtension] ?? "").split(separator: ",").map(String.init))
                    #expect(extensions == ["creation", "termination", "checksum", "expiration"])
                    #expect(response.headers[.tusChecksumAlgorithm]?.split(separator: ",").contains("sha1") == true)
                }
            }
            // A browser's preflight carries no token: it is answered, with what a tus client may send.
            try await client.execute(
                uri: "/files/", method: .options,
                headers: [.origin: "https://app.example", .accessControlRequestMethod: "PATCH", .accessControlRequestHeaders: "upload-offset"]
            ) { response in
                #expect(response.status == .noContent)
                #expect(response.headers[.accessControlAllowOrigin] == "*")
                #expect(response.headers[.accessControlAllowMethods]?.contains("PATCH") == true)
                #expect(response.headers[.accessControlAllowHeaders]?.lowercased().contains("upload-offset") == true)
            }
            // Everything else needs the token; the refusal still speaks tus.
            try await client.execute(uri: "/files/", method: .post, headers: [.tusResumable: "1.0.0", .uploadLength: "10"]) { response in
                #expect(response.status == .unauthorized)
                #expect(response.headers[.tusResumable] == "1.0.0")
            }
            for version in [nil, "0.2.2"] {
                var headers: HTTPFields = [.authorization: "Bearer \(Self.token)", .uploadLength: "10"]
                if let version { headers[.tusResumable] = version }
                try await client.execute(uri: "/files/", method: .post, headers: headers) { response throws in
                    #expect(response.status == .preconditionFailed)
                    #expect(response.headers[.tusVersion] == "1.0.0")
                    #expect(try HTTPAPITests.error(response).contains("this server speaks tus 1.0.0"))
                }
            }
            // A cross-origin answer lets the page read the tus headers.
            try await client.execute(
                uri: "/files/", method: .post, headers: Self.tus([.uploadLength: "10", .origin: "https://app.example"])
            ) { response in
                #expect(response.status == .created)
                #expect(response.headers[.accessControlAllowOrigin] == "*")
                let exposed = response.headers[.accessControlExposeHeaders] ?? ""
                for name in ["Location", "Upload-Offset", "Upload-Expires", "Tus-Resumable"] { #expect(exposed.contains(name), "\(exposed)") }
            }
            // Other routes are untouched.
            try await client.execute(uri: "/health", method: .get) { response in
                #expect(response.status == .ok)
                #expect(response.headers[.tusResumable] == nil)
            }
        }
    }

    @Test func createAppendCheckAndTerminate() async throws {
        var fixture = try Fixture(maxUploadBytes: 200 << 20, apiToken: Self.token)
        fixture.configuration.maxConcurrentUploads = 3
        let f = fixture
        defer { f.remove() }
        let bytes = Data((0..<1000).map { UInt8(truncatingIfNeeded: $0 &* 31) })
        try await f.app.test(.router) { client in
            let metadata = "filename \(Data("clip one.mp4".utf8).base64EncodedString()),is_private"
            let id = try await client.execute(
                uri: "/files/", method: .post, headers: Self.tus([.uploadLength: "\(bytes.count)", .uploadMetadata: metadata])
            ) { response throws -> String in
                #expect(response.status == .created)
                let expires = try #require(response.headers[.uploadExpires])
                let formatter = DateFormatter()
                formatter.locale = Locale(identifier: "en_US_POSIX")
                formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
                let date = try #require(formatter.date(from: expires), "\(expires)")
                #expect(abs(date.timeIntervalSinceNow - f.configuration.staleUploadSeconds) < 120)
                return String(try #require(response.headers[.location]?.split(separator: "/").last))
            }
            try await client.execute(uri: "/files/\(id)", method: .head, headers: Self.tus()) { response in
                #expect(response.status == .ok)
                #expect(response.headers[.uploadOffset] == "0")
                #expect(response.headers[.uploadLength] == "\(bytes.count)")
                #expect(response.headers[.uploadMetadata] == metadata)
                #expect(response.headers[.cacheControl] == "no-store")
            }
            let first = ByteBuffer(bytes: bytes.prefix(400))
            try await client.execute(
                uri: "/files/\(id)", method: .patch, headers: Self.tus([.contentType: "application/octet-stream", .uploadOffset: "0"]), body: first
            ) { response in
                #expect(response.status == .unsupportedMediaType)
            }
            try await client.execute(uri: "/files/\(id)", method: .patch, headers: Self.patch(10), body: first) { response in
                #expect(response.status == .conflict)
                #expect(response.headers[.uploadOffset] == "0")
            }
            // A chunk with its right SHA-1 is kept.
            let sha1 = Self.base64(Insecure.SHA1.hash(data: bytes.prefix(400)))
            try await client.execute(
                uri: "/files/\(id)", method: .patch, headers: Self.patch(0, [.uploadChecksum: "sha1 \(sha1)"]), body: first
            ) { response in
                #expect(response.status == .noContent)
                #expect(response.headers[.uploadOffset] == "400")
                #expect(response.headers[.uploadExpires] != nil)
            }
            // One whose SHA-256 does not match is refused with 460 and leaves nothing, on disk either.
            let wrong = Self.base64(SHA256.hash(data: Data("other bytes".utf8)))
            try await client.execute(
                uri: "/files/\(id)", method: .patch, headers: Self.patch(400, [.uploadChecksum: "sha256 \(wrong)"]),
                body: ByteBuffer(bytes: bytes[400..<500])
            ) { response throws in
                #expect(response.status.code == 460)
                #expect(try HTTPAPITests.error(response).contains("does not match its Upload-Checksum"))
            }
            #expect(try await Self.offset(client, id) == 400)
            let part = f.configuration.uploadDirectory + "/partial/\(id).part"
            #expect((try FileManager.default.attributesOfItem(atPath: part)[.size] as? Int) == 400)
            for (header, message) in [
                ("crc32 AAAA", "not supported"), ("sha1", "ALGORITHM BASE64"), ("sha1 !!!", "not base64"), ("sha1 AAAA", "digest has 3 bytes"),
            ] {
                try await client.execute(
                    uri: "/files/\(id)", method: .patch, headers: Self.patch(400, [.uploadChecksum: header]), body: ByteBuffer(bytes: bytes[400...])
                ) { response throws in
                    #expect(response.status == .badRequest)
                    #expect(try HTTPAPITests.error(response).contains(message), "\(header)")
                }
            }
            try await client.execute(
                uri: "/files/\(id)", method: .patch, headers: Self.patch(400), body: ByteBuffer(bytes: bytes[400...] + Data([1]))
            ) { response in
                #expect(response.status == .badRequest)
            }
            try await client.execute(
                uri: "/files/\(id)", method: .patch, headers: Self.patch(400), body: ByteBuffer(bytes: bytes[400...])
            ) { response in
                #expect(response.status == .noContent)
                #expect(response.headers[.uploadOffset] == "\(bytes.count)")
            }
            // The /uploads alias shows the same upload, whole, with its SHA-256.
            try await client.execute(uri: "/uploads/\(id)", method: .get, headers: Self.tus()) { response throws in
                let body = try HTTPAPITests.object(response)
                #expect(body["complete"] as? Bool == true)
                #expect(body["filename"] as? String == "clip one.mp4")
                #expect(body["sha256"] as? String == SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined())
            }
            try await client.execute(uri: "/files/\(id)", method: .delete, headers: Self.tus()) { #expect($0.status == .noContent) }
            try await client.execute(uri: "/files/\(id)", method: .head, headers: Self.tus()) { response in
                #expect(response.status == .notFound)
                #expect(response.body.readableBytes == 0, "an answer to HEAD has no body")
            }
            #expect(!FileManager.default.fileExists(atPath: part))

            // Creation refuses what it cannot take.
            for (length, status) in [("-5", HTTPResponse.Status.badRequest), ("abc", .badRequest), ("99999999999999999999", .badRequest),
                                     ("0", .badRequest), ("\(300 << 20)", .contentTooLarge)] {
                try await client.execute(uri: "/files/", method: .post, headers: Self.tus([.uploadLength: length])) { response in
                    #expect(response.status == status, "Upload-Length \(length)")
                }
            }
            for headers in [Self.tus(), Self.tus([.uploadLength: "10", .uploadMetadata: "filename not*base64"]),
                            Self.tus([.uploadDeferLength: "1"])] {
                try await client.execute(uri: "/files/", method: .post, headers: headers) { #expect($0.status == .badRequest) }
            }
            // --max-uploads (3 here) counts tus uploads too.
            _ = try await Self.create(client, size: 10)
            _ = try await Self.create(client, size: 10)
            _ = try await Self.create(client, size: 10)
            try await client.execute(uri: "/files/", method: .post, headers: Self.tus([.uploadLength: "10"])) { response in
                #expect(response.status == .tooManyRequests)
                #expect(response.headers[.retryAfter] != nil)
            }
        }
    }

    /// The 90 MiB a request (Akash's ingress takes 100 MB): a declared length over it is refused before any byte is
    /// read, and a body without one is cut off at the limit; both with 413, and the upload stays where it was.
    @Test func aChunkOverTheRequestLimitIsRefused() async throws {
        let directory = try TestMedia.temporaryDirectory("farm-tus-limit")
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = ResumableUploads(directory: directory.path, maxBytes: 1 << 30, staleSeconds: 3600)
        let entry = try store.create(size: 200 << 20, filename: nil)
        let declared = await #expect(throws: APIError.self) {
            _ = try await store.append(entry.id, at: 0, length: 91 << 20, body: Self.stream([ByteBuffer(bytes: [1])]))
        }
        #expect(declared?.status == .contentTooLarge)
        #expect(declared?.message.contains("larger than the \(90 << 20)-byte chunk limit") == true)

        let small = ResumableUploads(directory: directory.path, maxBytes: 1 << 30, maxChunkBytes: 1000, staleSeconds: 3600)
        let upload = try small.create(size: 5000, filename: nil)
        let streamed = await #expect(throws: APIError.self) {
            _ = try await small.append(upload.id, at: 0, length: nil, body: Self.stream([ByteBuffer(repeating: 1, count: 600), ByteBuffer(repeating: 2, count: 600)]))
        }
        #expect(streamed?.status == .contentTooLarge)
        #expect(try small.entry(upload.id).offset == 0)
        let kept = try await small.append(upload.id, at: 0, length: nil, body: Self.stream([ByteBuffer(repeating: 1, count: 1000)]))
        #expect(kept.offset == 1000)
    }

    static func stream(_ chunks: [ByteBuffer]) -> AsyncStream<ByteBuffer> {
        AsyncStream { continuation in
            for chunk in chunks { continuation.yield(chunk) }
            continuation.finish()
        }
    }

    @Test func anUploadSurvivesARestartAndExpires() async throws {
        let f = try Fixture(apiToken: Self.token)
        defer { f.remove() }
        let metadata = "filename \(Data("kept.mp4".utf8).base64EncodedString())"
        let id = try await f.app.test(.router) { client in
            let id = try await Self.create(client, size: 1000, metadata: metadata)
            try await client.execute(
                uri: "/files/\(id)", method: .patch, headers: Self.patch(0), body: ByteBuffer(repeating: 9, count: 300)
            ) { #expect($0.status == .noContent) }
            return id
        }
        // A new application on the same directories, as after a restart: the upload is there, at its offset.
        try await f.app.test(.router) { client in
            try await client.execute(uri: "/files/\(id)", method: .head, headers: Self.tus()) { response in
                #expect(response.status == .ok)
                #expect(response.headers[.uploadOffset] == "300")
                #expect(response.headers[.uploadMetadata] == metadata)
            }
        }
        // Once its expiry passes, the sweep removes it.
        let partial = f.configuration.uploadDirectory + "/partial"
        let store = ResumableUploads(directory: partial, maxBytes: 1 << 30, staleSeconds: f.configuration.staleUploadSeconds)
        let entry = try store.entry(id)
        store.sweep(now: store.expiry(of: entry).addingTimeInterval(1))
        #expect((try? store.entry(id)) == nil)
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: partial)) ?? []).isEmpty)
        let after = try await f.app.test(.router) { client in try await Self.offset(client, id) }
        #expect(after == nil, "an expired upload is gone")
    }

    @Test func aStockClientUploadsResumesAfterABreakAndIsRefusedABadChecksum() async throws {
        let f = try Fixture(apiToken: Self.token)
        defer { f.remove() }
        let clip = f.clip
        let bytes = try Data(contentsOf: URL(fileURLWithPath: clip))
        let digest = SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined()
        try await f.app.test(.live) { client in
            let endpoint = "http://127.0.0.1:\(try #require(client.port))/files/"

            // A whole upload in 16 KiB chunks, each with its SHA-1; it becomes a job.
            let whole = try await TusPy.run(["upload", endpoint, clip, "--chunk", "16384", "--checksum"], token: Self.token)
            #expect(whole["offset"] as? Int == bytes.count, "\(whole)")
            let id = String(try #require((whole["url"] as? String)?.split(separator: "/").last))
            let job = try await client.execute(
                uri: "/jobs", method: .post, headers: HTTPAPITests.json.merging(Self.tus()),
                body: HTTPAPITests.body(#"{"upload": "\#(id)", "sha256": "\#(digest)"}"#)
            ) { response throws in
                #expect(response.status == .created, "\(String(buffer: response.body))")
                return try #require(try HTTPAPITests.object(response)["id"] as? String)
            }
            let source = try #require(await f.coordinator.status(job)).source
            #expect(try Data(contentsOf: URL(fileURLWithPath: source)) == bytes)
            try await client.execute(uri: "/jobs/\(job)", method: .get, headers: Self.tus()) { response throws in
                #expect(try HTTPAPITests.object(response)["source"] as? String == "upload:clip.mp4")
            }

            // A PATCH whose connection is cut after 40 %: the server keeps those bytes, and tuspy, given the upload's
            // URL, asks for the offset and sends the rest.
            let after = bytes.count * 2 / 5
            let cut = try await TusPy.run(["break", endpoint, clip, "--after", "\(after)"], token: Self.token)
            #expect(cut["offset"] as? Int == after, "\(cut)")
            let url = try #require(cut["url"] as? String)
            let resumed = try await TusPy.run(["resume", url, clip, "--chunk", "65536"], token: Self.token)
            #expect(resumed["resumed_from"] as? Int == after, "\(resumed)")
            #expect(resumed["offset"] as? Int == bytes.count)
            let resumedID = String(try #require(url.split(separator: "/").last))
            try await client.execute(uri: "/uploads/\(resumedID)", method: .get, headers: Self.tus()) { response throws in
                #expect(try HTTPAPITests.object(response)["sha256"] as? String == digest, "the server holds the same bytes")
            }

            // A chunk whose checksum is wrong: 460, and the offset stays where it was.
            let corrupt = try await TusPy.run(["corrupt", endpoint, clip], token: Self.token)
            #expect(corrupt["status"] as? Int == 460, "\(corrupt)")
            #expect(corrupt["offset"] as? Int == 0)
        }
    }
}

extension HTTPFields {
    fileprivate func merging(_ other: HTTPFields) -> HTTPFields {
        var fields = self
        fields.append(contentsOf: other)
        return fields
    }
}
