import FarmChildProcess
import FarmTestSupport
import Foundation
import Synchronization
import Testing

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// Sources by URL and by resumable upload against real `farm coordinator` and `farm node` processes:
/// a URL fetched from a local server that drops the connection mid-body (resumed with a Range
/// request, frame-exact output), 404, redirects to `file:` and to loopback refused, a download over
/// its size or time limit, a source over the picture limit, cancel during a download, a coordinator
/// restarted mid-download continuing by range; a chunked upload broken and resumed by the test and by
/// `farm submit` through a proxy that cuts the connection, over-limit and concurrent uploads refused.
@Suite(.serialized, .heavy) struct SourceTests {
    struct Farm: ProcessFixture {
        let directory: URL
        let httpPort: Int
        let processes: [ChildProcess]
        let coordinatorLog: String
        var data: String { directory.appendingPathComponent("data").path }
        var base: String { "http://127.0.0.1:\(httpPort)" }

        static func start(_ name: String, node: Bool, options: [String]) async throws -> Farm {
            let directory = try TestMedia.temporaryDirectory(name)
            let environment = ["FARM_JOIN_TOKEN": "source-test-token-long-enough-for-the-coordinator", "FARM_API_TOKEN": "source-api-token-long-enough-for-the-coordinator"]
            let coordinatorLog = directory.appendingPathComponent("coordinator.log").path
            let coordinator = try await TestCoordinator.start(
                data: directory.appendingPathComponent("data").path, log: coordinatorLog,
                arguments: ["--min-free-gib", "0"] + options, environment: environment)
            var processes = [coordinator.process]
            if node {
                do {
                    processes.append(
                        try await TestNode.start(
                            coordinator: coordinator.nodeAddress, id: "source-node",
                            log: directory.appendingPathComponent("node.log").path, arguments: ["--no-calibrate"],
                            environment: environment))
                } catch {
                    await coordinator.stop()
                    throw error
                }
            }
            let farm = Farm(directory: directory, httpPort: coordinator.httpPort, processes: processes, coordinatorLog: coordinatorLog)
            let ready = await FarmBinary.waitUntil(timeout: 60) { !node || farm.log.contains("node joined") }
            guard ready else {
                await farm.stop()
                throw TestFailure("the farm did not start: \(farm.log.suffix(2000))")
            }
            return farm
        }

        var log: String { (try? String(contentsOfFile: coordinatorLog, encoding: .utf8)) ?? "" }

        func stop() async { await FarmBinary.stop(processes.reversed()) }

        func call(
            _ method: String, _ path: String, body: Data? = nil, headers: [String: String] = [:]
        ) async throws -> (Int, [String: String], Data) {
            var request = URLRequest(url: URL(string: base + path)!)
            request.httpMethod = method
            request.setValue("Bearer source-api-token-long-enough-for-the-coordinator", forHTTPHeaderField: "Authorization")
            if let body {
                request.httpBody = body
                request.setValue("application/json", forHTTPHeaderField: "Content-Type")
            }
            for (name, value) in headers { request.setValue(value, forHTTPHeaderField: name) }
            let (data, response) = try await URLSession.shared.data(for: request)
            let http = try #require(response as? HTTPURLResponse)
            var fields: [String: String] = [:]
            for (key, value) in http.allHeaderFields {
                if let key = key as? String, let value = value as? String { fields[key.lowercased()] = value }
            }
            return (http.statusCode, fields, data)
        }

        func object(_ method: String, _ path: String, json: String? = nil, headers: [String: String] = [:]) async throws -> (Int, [String: Any]) {
            let (status, _, data) = try await call(method, path, body: json.map { Data($0.utf8) }, headers: headers)
            let object = try JSONSerialization.jsonObject(with: data) as? [String: Any]
            return (status, try #require(object, "\(method) \(path): \(String(decoding: data, as: UTF8.self))"))
        }

        func waitForJob(_ id: String, timeout: Double, until condition: ([String: Any]) -> Bool) async throws -> [String: Any] {
            let deadline = Date().addingTimeInterval(timeout)
            var job: [String: Any] = [:]
            while Date() < deadline {
                job = try await object("GET", "/jobs/\(id)").1
                if condition(job) { return job }
                try await Task.sleep(for: .milliseconds(100))
            }
            return job
        }

        func finished(_ id: String, timeout: Double = 40) async throws -> [String: Any] {
            try await waitForJob(id, timeout: timeout) { ["done", "failed", "cancelled"].contains($0["state"] as? String ?? "") }
        }

        /// Nothing of a job's download is left in its work directory.
        func noDownloadLeft(_ id: String) -> Bool {
            let work = "\(data)/jobs/\(id)"
            return !FileManager.default.fileExists(atPath: "\(work)/download.part")
        }
    }

    static let clip: String = {
        let directory = try! TestMedia.temporaryDirectory("farm-source-clip")
        let path = directory.appendingPathComponent("clip.mp4").path
        try! TestMedia.makeClip(at: path, seconds: 3)
        return path
    }()

    static func submitURL(_ farm: Farm, _ url: String) async throws -> String {
        let (status, reply) = try await farm.object(
            "POST", "/jobs", json: #"{"source": "\#(url)", "preset": "ultrafast", "segment_seconds": 1}"#)
        #expect(status == 201, "\(reply)")
        return try #require(reply["id"] as? String, "\(reply)")
    }

    @Test func urlSourceResumesAfterADroppedConnectionAndRendersExactly() async throws {
        let clip = Self.clip
        let size = try #require(FileManager.default.attributesOfItem(atPath: clip)[.size] as? Int)
        // The first answer stops after a third of the body; the downloader must continue from there.
        let server = try TestHTTPServer { path, count in
            path == "/media/clip.mp4" ? .file(clip, dropAfter: count == 0 ? size / 3 : nil) : .status(404)
        }
        defer { server.stop() }
        let farm = try await Farm.start("farm-url", node: true, options: ["--allow-private-host", "127.0.0.1"])
        defer { try? FileManager.default.removeItem(at: farm.directory) }
        try await farm.stopping {
            let id = try await Self.submitURL(farm, "http://127.0.0.1:\(server.port)/media/clip.mp4")
            let job = try await farm.finished(id)
            #expect(job["state"] as? String == "done", "\(job) \(farm.log.suffix(2000))")
            #expect(job["downloaded_bytes"] as? Int == size, "\(job)")

            let requests = server.requests
            #expect(requests.count == 2, "\(requests)")
            #expect(requests.first?.range == nil)
            let resumedAt = try #require(requests.last?.range.flatMap { Int($0.dropFirst("bytes=".count).dropLast()) }, "\(requests)")
            #expect(resumedAt == size / 3, "the second request resumes where the first stopped: \(requests)")

            let (status, _, body) = try await farm.call("GET", "/jobs/\(id)/output")
            #expect(status == 200)
            let output = farm.directory.appendingPathComponent("out.mp4")
            try body.write(to: output)
            #expect(try TestMedia.frameSeconds(output.path) == TestMedia.frameSeconds(clip))
            try TestMedia.decodesCleanly(output.path)
            #expect(farm.noDownloadLeft(id))
            #expect(!FileManager.default.fileExists(atPath: "\(farm.data)/jobs/\(id)"), "the downloaded source is removed with the job")
        }
    }

    @Test func urlSourcesThatMustFailFailCleanly() async throws {
        let clip = Self.clip
        let big = try TestMedia.temporaryDirectory("farm-url-big").appendingPathComponent("big.bin").path
        try Data(repeating: 7, count: 3 << 20).write(to: URL(fileURLWithPath: big))
        defer { try? FileManager.default.removeItem(atPath: (big as NSString).deletingLastPathComponent) }
        let port = Mutex(0)
        let server = try TestHTTPServer { path, _ in
            switch path {
            case "/clip.mp4": .file(clip)
            case "/big.bin": .file(big)
            case "/big-no-head.bin": .file(big, headStatus: 403)
            case "/slow.mp4", "/slower.mp4": .file(clip, bytesPerSecond: 4096)
            case "/to-file": .redirect("file:///etc/passwd")
            case "/to-loopback": .redirect("http://localhost:\(port.withLock { $0 })/clip.mp4")
            default: .status(404)
            }
        }
        port.withLock { $0 = server.port }
        defer { server.stop() }
        // 2 MiB, 5 s and 200x200 limits; only URLs naming 127.0.0.1 may reach loopback.
        let farm = try await Farm.start(
            "farm-url-fail", node: false, options: ["--allow-private-host", "127.0.0.1", "--max-download-gib", "0.001953125",
                "--max-source-size", "200x200", "--download-time-limit", "5",
            ])
        defer { try? FileManager.default.removeItem(at: farm.directory) }
        try await farm.stopping {
            let origin = "http://127.0.0.1:\(server.port)"
            let cases: [(String, String)] = [
                ("/missing.mp4", "download failed: HTTP 404 from \(origin)/missing.mp4"),
                // The HEAD request is refused (403): the limit is found by the download.
                ("/big-no-head.bin", "download exceeds the 2 MiB limit"),
                ("/slower.mp4", "download of \(origin)/slower.mp4 took longer than the 5.0 s limit"),
                ("/clip.mp4", "\(origin)/clip.mp4: picture 320x240 exceeds the 200x200 limit of this coordinator (--max-source-size)"),
            ]
            for (path, message) in cases {
                let id = try await Self.submitURL(farm, origin + path)
                let job = try await farm.finished(id, timeout: 20)
                #expect(job["state"] as? String == "failed", "\(path): \(job)")
                let error = job["error"] as? String ?? ""
                #expect(error.hasPrefix(message), "\(path): \(error)")
                #expect(!error.contains("\n"), "one line: \(error)")
                #expect(farm.noDownloadLeft(id), "\(path): the partial file is removed")
                let (output, _) = try await farm.object("GET", "/jobs/\(id)/output")
                #expect(output == 410)
            }

            // Refused at once, the check (HEAD) following redirects as the download would: refused
            // redirects, sizes over the limit.
            for (path, message) in [
                ("/to-file", "download refused: \(origin)/to-file redirects to file:///etc/passwd; only http and https are fetched"),
                ("/to-loopback", "download refused: http://localhost:\(server.port)/clip.mp4 resolves to"),
                ("/big.bin", "download exceeds the 2 MiB limit: \(origin)/big.bin is \(3 << 20) bytes"),
            ] {
                let (status, reply) = try await farm.object("POST", "/jobs", json: #"{"source": "\#(origin + path)"}"#)
                #expect(status == 400, "\(path): \(reply)")
                let error = reply["error"] as? String ?? ""
                #expect(error.hasPrefix(message), "\(path): \(error)")
                if path == "/to-loopback" { #expect(error.contains("a loopback address"), "\(error)") }
            }
            // Refused at once: other schemes, and hosts written as non-public addresses.
            for url in ["ftp://127.0.0.1/clip.mp4", "file:///etc/passwd", "http://10.1.2.3/clip.mp4", "http://[::1]:\(server.port)/clip.mp4", "http://169.254.169.254/latest"] {
                let (status, reply) = try await farm.object("POST", "/jobs", json: #"{"source": "\#(url)"}"#)
                #expect(status == 400 || status == 403, "\(url): \(reply)")
                #expect((reply["error"] as? String ?? "").contains(url), "\(url): \(reply)")
            }

            // Cancel during a slow download: the job ends and the partial file goes.
            let slow = try await Self.submitURL(farm, origin + "/slow.mp4")
            let downloading = try await farm.waitForJob(slow, timeout: 10) { ($0["downloaded_bytes"] as? Int ?? 0) > 0 }
            #expect(downloading["phase"] as? String == "downloading", "\(downloading)")
            let (deleted, cancelled) = try await farm.object("DELETE", "/jobs/\(slow)")
            #expect(deleted == 200)
            #expect(cancelled["state"] as? String == "cancelled")
            let cleaned = await FarmBinary.waitUntil(timeout: 5) { !FileManager.default.fileExists(atPath: "\(farm.data)/jobs/\(slow)") }
            #expect(cleaned, "the cancelled download's files are removed")
        }
    }

    @Test func aRestartedCoordinatorContinuesTheDownloadByRange() async throws {
        let clip = Self.clip
        // The first answer trickles; after the restart the rest comes at once.
        let server = try TestHTTPServer { path, count in
            path == "/clip.mp4" ? .file(clip, bytesPerSecond: count == 0 ? 8192 : nil) : .status(404)
        }
        defer { server.stop() }
        let options = ["--allow-private-host", "127.0.0.1"]
        let farm = try await Farm.start("farm-url-restart", node: false, options: options)
        defer { try? FileManager.default.removeItem(at: farm.directory) }
        try await farm.stopping {
            let id = try await Self.submitURL(farm, "http://127.0.0.1:\(server.port)/clip.mp4")
            let partial = try await farm.waitForJob(id, timeout: 10) { ($0["downloaded_bytes"] as? Int ?? 0) >= 16384 }
            #expect(partial["phase"] as? String == "downloading", "\(partial)")
            await farm.stop()
            let kept = try #require(FileManager.default.attributesOfItem(atPath: "\(farm.data)/jobs/\(id)/download.part")[.size] as? Int)
            #expect(kept >= 16384, "shutdown keeps the partial download")

            // The same data directory: the job resumes and asks only for the bytes it lacks.
            let again = try await Farm.start("farm-url-restart-2", node: true, options: options + ["--data-dir", farm.data])
            defer { try? FileManager.default.removeItem(at: again.directory) }
            try await again.stopping {
                let job = try await again.finished(id, timeout: 40)
                #expect(job["state"] as? String == "done", "\(job) \(again.log.suffix(1500))")
                #expect(server.requests.count == 2, "\(server.requests)")
                #expect(server.requests.last?.range == "bytes=\(kept)-", "\(server.requests)")
                let (_, _, body) = try await again.call("GET", "/jobs/\(id)/output")
                let output = again.directory.appendingPathComponent("out.mp4")
                try body.write(to: output)
                #expect(try TestMedia.frameSeconds(output.path) == TestMedia.frameSeconds(clip))
            }
        }
    }

    // MARK: - Resumable uploads

    @Test func chunkedUploadResumesAfterABrokenChunkAndARestartAndRendersExactly() async throws {
        let options = ["--max-uploads", "2", "--max-upload-gib", "0.0009765625"]
        let first = try await Farm.start("farm-upload", node: false, options: options)
        defer { try? FileManager.default.removeItem(at: first.directory) }
        try await first.stopping {
            let clip = Self.clip
            let bytes = try Data(contentsOf: URL(fileURLWithPath: clip))
            let (created, upload) = try await first.object(
                "POST", "/uploads", json: #"{"size": \#(bytes.count), "filename": "clip.mp4"}"#)
            #expect(created == 201, "\(upload)")
            let id = try #require(upload["id"] as? String)
            #expect(upload["offset"] as? Int == 0)

            // A chunk whose connection breaks after 40 % of it: the server keeps what arrived.
            let half = bytes.count * 2 / 5
            var head = "PUT /uploads/\(id) HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\n"
            head += "Authorization: Bearer source-api-token-long-enough-for-the-coordinator\r\n"
            head += "Content-Range: bytes 0-\(bytes.count - 1)/\(bytes.count)\r\nContent-Length: \(bytes.count)\r\n\r\n"
            _ = try Sockets.exchange(port: first.httpPort, Data(head.utf8) + bytes.prefix(half), closeAfterSending: true)
            var offset = 0
            _ = await FarmBinary.waitUntil(timeout: 5) {
                offset = (try? await first.object("GET", "/uploads/\(id)").1["offset"] as? Int) ?? 0
                return offset == half
            }
            #expect(offset == half, "the bytes before the break are kept")

            // The coordinator restarts (same data directory): the upload is still there, at the same offset.
            await first.stop()
            let farm = try await Farm.start("farm-upload-2", node: true, options: options + ["--data-dir", first.data])
            defer { try? FileManager.default.removeItem(at: farm.directory) }
            try await farm.stopping {
                let (found, kept) = try await farm.object("GET", "/uploads/\(id)")
                #expect(found == 200 && kept["offset"] as? Int == half && kept["size"] as? Int == bytes.count, "\(kept)")
                #expect(kept["filename"] as? String == "clip.mp4")

                // A chunk that does not start at the offset is refused with the offset to resume from.
                let (wrong, wrongHeaders, _) = try await farm.call(
                    "PUT", "/uploads/\(id)", body: bytes.prefix(10), headers: ["Content-Range": "bytes 0-9/\(bytes.count)"])
                #expect(wrong == 409)
                #expect(wrongHeaders["upload-offset"] == "\(offset)")

                let (put, _, reply) = try await farm.call(
                    "PUT", "/uploads/\(id)", body: bytes[offset...], headers: ["Content-Range": "bytes \(offset)-\(bytes.count - 1)/\(bytes.count)"])
                #expect(put == 200, "\(String(decoding: reply, as: UTF8.self))")
                let (_, done) = try await farm.object("GET", "/uploads/\(id)")
                #expect(done["complete"] as? Bool == true)
                let digest = try TestMedia.run("sha256sum", [clip]).split(separator: " ").first.map(String.init)
                #expect(done["sha256"] as? String == digest, "the server holds the same bytes")

                // Two uploads at once are the limit here; a third answers 429.
                let (second, other) = try await farm.object("POST", "/uploads", json: #"{"size": 1000}"#)
                #expect(second == 201)
                let (third, refused) = try await farm.object("POST", "/uploads", json: #"{"size": 1000}"#)
                #expect(third == 429, "\(refused)")
                #expect((refused["error"] as? String ?? "").contains("uploads are in progress"))
                let (removed, _, _) = try await farm.call("DELETE", "/uploads/\(try #require(other["id"] as? String))")
                #expect(removed == 204)
                // Over the 1 MiB upload limit: refused before any byte is sent.
                let (tooBig, tooBigReply) = try await farm.object("POST", "/uploads", json: #"{"size": \#(2 << 20)}"#)
                #expect(tooBig == 413)
                #expect(tooBigReply["error"] as? String == "upload of \(2 << 20) bytes is larger than the 1048576-byte limit")

                // A wrong checksum is refused; the right one makes a job that renders the clip exactly.
                let (job, jobReply) = try await farm.object(
                    "POST", "/jobs", json: #"{"upload": "\#(id)", "sha256": "\#(digest ?? "")", "preset": "ultrafast", "segment_seconds": 1}"#)
                #expect(job == 201, "\(jobReply)")
                let jobID = try #require(jobReply["id"] as? String)
                let final = try await farm.finished(jobID)
                #expect(final["state"] as? String == "done", "\(final)")
                let (_, _, body) = try await farm.call("GET", "/jobs/\(jobID)/output")
                let output = farm.directory.appendingPathComponent("out.mp4")
                try body.write(to: output)
                #expect(try TestMedia.frameSeconds(output.path) == TestMedia.frameSeconds(clip))
                let (gone, _) = try await farm.object("GET", "/uploads/\(id)")
                #expect(gone == 404, "a submitted upload is no longer an upload")
            }
        }
    }

    @Test func submitResumesAnUploadAfterTheConnectionDrops() async throws {
        let farm = try await Farm.start("farm-submit-resume", node: true, options: [])
        defer { try? FileManager.default.removeItem(at: farm.directory) }
        try await farm.stopping {
            let clip = Self.clip
            let size = try #require(FileManager.default.attributesOfItem(atPath: clip)[.size] as? Int)
            // The first connection is cut after about 60 % of the file has gone through.
            let proxy = try CuttingProxy(target: farm.httpPort, cutAfter: size * 3 / 5)
            defer { proxy.stop() }
            let output = farm.directory.appendingPathComponent("out.mp4").path
            let result = try await FarmBinary.run(
                ["submit", clip, "--server", "http://127.0.0.1:\(proxy.port)", "-o", output, "--chunk-mib", "0.125", "--preset", "ultrafast"],
                environment: ["FARM_API_TOKEN": "source-api-token-long-enough-for-the-coordinator"], timeout: 90)
            #expect(result.status == 0, "\(result.stderr)")
            #expect(proxy.cutCount == 1, "the proxy cut a connection")
            #expect(result.stderr.contains("resuming"), "\(result.stderr)")
            #expect(try TestMedia.frameSeconds(output) == TestMedia.frameSeconds(clip))
            try TestMedia.decodesCleanly(output)
        }
    }
}
