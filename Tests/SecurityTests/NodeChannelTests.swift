import FarmChildProcess
import FarmProtocol
import FarmTestSupport
import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import Testing

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// The node channel as an attacker meets it: real `farm coordinator` and `farm node` processes over TLS on loopback,
/// with fake nodes and a TLS-terminating relay written in the test.
@Suite(.serialized, .heavy, .timeLimit(.minutes(10))) struct NodeChannelTests {
    static let joinToken = "node-channel-test-token-long-enough-for-the-coordinator"

    /// A 2 s clip in a source root, and a coordinator on it; `stopping(after:)` stops every coordinator and node it
    /// started.
    final class Farm: ProcessFixture {
        let directory: URL
        let sources: String
        let clip: String
        private var processes: [ChildProcess] = []
        var data: String { directory.appendingPathComponent("data").path }

        init(_ name: String, seconds: Double = 2, size: String = "160x120", videoArgs: [String]? = nil) throws {
            directory = try TestMedia.temporaryDirectory(name)
            sources = directory.appendingPathComponent("sources").path
            try FileManager.default.createDirectory(atPath: sources, withIntermediateDirectories: true)
            clip = "\(sources)/clip.mp4"
            if let videoArgs {
                try TestMedia.makeClip(at: clip, seconds: seconds, size: size, audio: false, videoArgs: videoArgs)
            } else {
                try TestMedia.makeClip(at: clip, seconds: seconds, size: size, audio: false)
            }
        }

        func path(_ name: String) -> String { directory.appendingPathComponent(name).path }

        func coordinator(
            _ log: String, arguments: [String] = [], environment: [String: String] = [:]
        ) async throws -> TestCoordinator {
            let coordinator = try await TestCoordinator.start(
                data: data, log: path(log), arguments: ["--source-root", sources] + arguments,
                environment: ["FARM_JOIN_TOKEN": NodeChannelTests.joinToken].merging(environment) { $1 })
            processes.append(coordinator.process)
            return coordinator
        }

        func node(_ id: String, port: Int, arguments: [String] = []) async throws -> ChildProcess {
            let node = try await TestNode.start(
                coordinator: "127.0.0.1:\(port)", id: id, log: path("\(id).log"),
                arguments: ["--no-calibrate", "--hardware", "off"] + arguments,
                environment: ["FARM_JOIN_TOKEN": NodeChannelTests.joinToken])
            processes.append(node)
            return node
        }

        func stop() async { await FarmBinary.stop(processes) }

        func remove() { try? FileManager.default.removeItem(at: directory) }
    }

    /// The value of `key=` on the first log line that says `message`.
    static func value(_ key: String, in text: String, on message: String) -> String? {
        guard let line = text.split(separator: "\n").first(where: { $0.contains(message) }),
            let range = line.range(of: "\(key)=[^ ]+", options: .regularExpression)
        else { return nil }
        return String(line[range].dropFirst(key.count + 1))
    }

    // MARK: - TLS by default, the generated certificate and the API token kept in the data directory

    @Test func renderOverTLSWithACertificateThatSurvivesARestart() async throws {
        let farm = try Farm("farm-tls-render")
        defer { farm.remove() }
        try await farm.stopping {
            var coordinator = try await farm.coordinator("coordinator-1.log")
            _ = try await farm.node("tls-node", port: coordinator.nodePort)

            // The certificate and key were generated in the data directory; the key is its owner's only.
            let certificate = "\(farm.data)/tls/node-cert.pem"
            let key = "\(farm.data)/tls/node-key.pem"
            let keyMode = try #require(try FileManager.default.attributesOfItem(atPath: key)[.posixPermissions] as? Int)
            #expect(keyMode == 0o600)
            let fingerprint = try TestCertificate.sha256(ofPEMFile: certificate)
            let certificateBytes = try Data(contentsOf: URL(fileURLWithPath: certificate))
            #expect(Self.value("certificateSHA256", in: coordinator.text, on: "node port uses TLS") == fingerprint)

            // No API token was given: one was made, owner-only, and the API wants it.
            let tokenFile = "\(farm.data)/api-token"
            let tokenMode = try #require(try FileManager.default.attributesOfItem(atPath: tokenFile)[.posixPermissions] as? Int)
            #expect(tokenMode == 0o600)
            let apiToken = try String(contentsOfFile: tokenFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(apiToken.count == 64)

            // The node joined over TLS and saw the coordinator's certificate.
            // Each side logs the join on its own: wait for both lines.
            let nodeLog = farm.path("tls-node.log")
            #expect(
                await FarmBinary.waitUntil(timeout: 20) {
                    readLog(nodeLog).contains("joined the farm") && coordinator.text.contains("node joined")
                }, "\(coordinator.text.suffix(2000))")
            #expect(Self.value("certificateSHA256", in: readLog(nodeLog), on: "joined the farm") == fingerprint, "\(readLog(nodeLog).suffix(2000))")

            // A render through the API, by a client that reads FARM_API_TOKEN; without it the client is refused.
            let server = ["--server", coordinator.base]
            let refused = try await FarmBinary.run(["jobs"] + server, environment: ["FARM_API_TOKEN": ""], timeout: 30)
            #expect(refused.status != 0)
            #expect(refused.stderr.contains("bearer token"), "\(refused.stderr)")
            let output = farm.path("out.mp4")
            let submitted = try await FarmBinary.run(
                ["submit", "--remote", farm.clip, "-o", output, "--crf", "30", "--preset", "ultrafast", "--segment-seconds", "1"]
                    + server,
                environment: ["FARM_API_TOKEN": apiToken], timeout: 90)
            #expect(submitted.status == 0, "\(submitted.stderr) \(coordinator.text.suffix(2000))")
            #expect(try TestMedia.frameTimes(output).count == 50)

            // Restarted on the same data directory: the same certificate and token, and the node comes back.
            await coordinator.stop()
            coordinator = try await farm.coordinator("coordinator-2.log")
            #expect(try Data(contentsOf: URL(fileURLWithPath: certificate)) == certificateBytes)
            #expect(Self.value("certificateSHA256", in: coordinator.text, on: "node port uses TLS") == fingerprint)
            #expect(try String(contentsOfFile: tokenFile, encoding: .utf8).contains(apiToken))
            let (listed, _) = try await http("GET", "\(coordinator.base)/jobs", token: apiToken)
            #expect(listed == 200)
            // The node dials the new process's port only if it is the same one; a fresh node checks the certificate.
            _ = try await farm.node("tls-node-2", port: coordinator.nodePort, arguments: ["--exit-on-disconnect"])
            let secondLog = farm.path("tls-node-2.log")
            #expect(
                await FarmBinary.waitUntil(timeout: 20) {
                    readLog(secondLog).contains("joined the farm") && coordinator.text.contains("node joined")
                })
            #expect(Self.value("certificateSHA256", in: readLog(secondLog), on: "joined the farm") == fingerprint)
        }
    }

    // MARK: - Wrong token, wrong certificate, relays

    @Test func onlyAProofBoundToTheCoordinatorsCertificateGetsASegment() async throws {
        let farm = try Farm("farm-tls-relay", seconds: 1)
        defer { farm.remove() }
        try await farm.stopping {
            // The coordinator presents certificate files given to it; the API token comes from a file.
            let given = try TestCertificate.make("farm coordinator under test")
            try given.certificate.write(toFile: farm.path("cert.pem"), atomically: true, encoding: .utf8)
            try given.key.write(toFile: farm.path("key.pem"), atomically: true, encoding: .utf8)
            try "file-token-long-enough-for-the-coordinator\n".write(toFile: farm.path("api-token"), atomically: true, encoding: .utf8)
            let coordinator = try await farm.coordinator(
                "coordinator.log",
                arguments: [
                    "--tls-cert", farm.path("cert.pem"), "--tls-key", farm.path("key.pem"), "--api-token-file",
                    farm.path("api-token"),
                ])
            #expect(!FileManager.default.fileExists(atPath: "\(farm.data)/tls"))
            #expect(Self.value("certificateSHA256", in: coordinator.text, on: "node port uses TLS") == given.sha256)

            // A job waits for a node, so any admitted node would be sent a segment at once.
            let submitted = try await FarmBinary.run(
                ["submit", "--remote", farm.clip, "--server", coordinator.base, "--preset", "ultrafast"],
                environment: ["FARM_API_TOKEN": "file-token-long-enough-for-the-coordinator"], timeout: 30)
            #expect(submitted.status == 0, "\(submitted.stderr)")
            let port = coordinator.nodePort

            // A wrong token over a good channel: a reject, then the connection ends; no assign, no data.
            let wrongToken = try await FakeNode.join(port: port, tls: true, token: "wrong", nodeID: "wrong-token")
            #expect(wrongToken.binding.description == given.sha256)
            #expect(wrongToken.messages == ["reject"] && wrongToken.closedByPeer, "\(wrongToken.messages)")

            // The right token, but a proof bound to another certificate: refused the same way.
            let proxy = try TestCertificate.make("a proxy")
            let otherCertificate = ChannelBinding.tlsServerEndPoint(certificateDER: Array(proxy.certificate.utf8))
            let wrongBinding = try await FakeNode.join(
                port: port, tls: true, token: Self.joinToken, nodeID: "wrong-binding", binding: otherCertificate)
            #expect(wrongBinding.messages == ["reject"] && wrongBinding.closedByPeer, "\(wrongBinding.messages)")
            // Or to none (a proof made for plain TCP, relayed into TLS).
            let unbound = try await FakeNode.join(
                port: port, tls: true, token: Self.joinToken, nodeID: "unbound", binding: .plainTCP)
            #expect(unbound.messages == ["reject"] && unbound.closedByPeer, "\(unbound.messages)")

            // A relay that terminates TLS with its own certificate: the node binds to the relay's certificate, so even
            // with the right token its proof fails at the coordinator, which never admits it.
            let relay = try await Relay.start(
                targetPort: port, nodeSide: try TestCertificate.serverContext(certificate: proxy.certificate, key: proxy.key))
            let relayed = try await FakeNode.join(port: relay.port, tls: true, token: Self.joinToken, nodeID: "relayed")
            #expect(relayed.binding.description == proxy.sha256)
            #expect(relayed.messages == ["reject"] && relayed.closedByPeer, "\(relayed.messages)")
            // The real node through the same relay: refused, and it says why.
            let realRelayed = try await FarmBinary.run(
                ["node", "--coordinator", "127.0.0.1:\(relay.port)", "--node-id", "real-relayed", "--exit-on-disconnect",
                 "--no-calibrate", "--hardware", "off"],
                environment: ["FARM_JOIN_TOKEN": Self.joinToken], timeout: 30)
            #expect(realRelayed.status != 0)
            #expect(realRelayed.stderr.contains("join token"), "\(realRelayed.stderr.suffix(1500))")
            await relay.stop()

            // A relay that offers the node plain TCP (a downgrade): the node's proof is bound to nothing; refused.
            let downgrade = try await Relay.start(targetPort: port, nodeSide: nil)
            let downgraded = try await FarmBinary.run(
                ["node", "--coordinator", "127.0.0.1:\(downgrade.port)", "--node-id", "downgraded", "--exit-on-disconnect",
                 "--insecure-plain-tcp", "--no-calibrate", "--hardware", "off"],
                environment: ["FARM_JOIN_TOKEN": Self.joinToken], timeout: 30)
            #expect(downgraded.status != 0)
            #expect(downgraded.stderr.contains("join token"), "\(downgraded.stderr.suffix(1500))")
            await downgrade.stop()

            // The coordinator logs a refusal once the refused connection has closed, which may be after the node left.
            let refused = ["wrong-token", "wrong-binding", "unbound", "relayed", "real-relayed", "downgraded"]
            _ = await FarmBinary.waitUntil(timeout: 10) {
                refused.allSatisfy { coordinator.text.contains("node \($0) failed to prove the join token") }
            }
            let log = coordinator.text
            for id in refused {
                #expect(log.contains("node \(id) failed to prove the join token"), "\(id): \(log.suffix(3000))")
            }
            #expect(!log.contains("node joined"))

            // Malformed frames inside TLS (a 100 MiB length, an unknown type, a hello of garbage) close their connection.
            for frame: [UInt8] in [[0x06, 0x40, 0x00, 0x00, 0x02], [0x00, 0x00, 0x00, 0x01, 0xEE], [0x00, 0x00, 0x00, 0x05, 0x02, 0x00, 0x01, 0x02, 0x03]] {
                #expect(try await sendRawOverTLS(frame, port: port), "\(frame)")
            }
            #expect(coordinator.process.isRunning)

            // The control: the same fake node, straight to the coordinator with the right token, is welcomed and gets
            // the waiting segment, so the refusals above are the binding's doing.
            let admitted = try await FakeNode.join(
                port: port, tls: true, token: Self.joinToken, nodeID: "admitted", stopAt: "assign")
            #expect(admitted.messages.first == "welcome")
            #expect(admitted.messages.last == "assign", "\(admitted.messages)")
        }
    }

    // MARK: - Tokens fit for the internet

    /// A join or API token shorter than 32 characters, or one of the placeholders the SDL files carry, stops
    /// `farm coordinator` before it listens, with one line saying which token and why.
    @Test func weakOrPlaceholderTokensAreRefusedAtStart() async throws {
        let farm = try Farm("farm-tokens", seconds: 0.2)
        defer { farm.remove() }
        let deploy = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("deploy")
        var placeholders: Set<String> = []
        for file in try FileManager.default.contentsOfDirectory(atPath: deploy.path) where file.hasSuffix(".yaml") {
            let text = try String(contentsOfFile: deploy.appendingPathComponent(file).path, encoding: .utf8)
            for line in text.split(separator: "\n") where line.contains("_TOKEN=replace-with-") {
                placeholders.insert(String(line.split(separator: "=", maxSplits: 1)[1]).trimmingCharacters(in: .whitespaces))
            }
        }
        #expect(placeholders.count >= 2, "\(placeholders)")
        let strong = String(repeating: "k", count: 32)
        var cases: [(join: String, api: String, needle: String)] = [
            ("short-join-token", strong, "join token has 16 characters"),
            (strong, "short", "API token has 5 characters"),
        ]
        for placeholder in placeholders.sorted() {
            cases.append((placeholder, strong, "placeholder"))
            cases.append((strong, placeholder, "placeholder"))
        }
        for (join, api, needle) in cases {
            let result = try await FarmBinary.run(
                ["coordinator", "--http", "127.0.0.1:0", "--node-listen", "127.0.0.1:0", "--data-dir", farm.data,
                 "--source-root", farm.sources],
                environment: ["FARM_JOIN_TOKEN": join, "FARM_API_TOKEN": api], timeout: 30)
            #expect(result.status != 0 && result.status < 128, "\(join) \(api): \(result.status)")
            let errors = result.stderr.split(separator: "\n").filter { $0.hasPrefix("farm: error:") }
            #expect(errors.count == 1 && errors[0].contains(needle), "\(join) \(api): \(result.stderr.suffix(800))")
            #expect(!result.stderr.contains(join == strong ? api : join) || needle == "placeholder", "the token is echoed")
        }
    }

    // MARK: - Enrolment

    /// A node that proves the join token is enrolled with a credential of its own (kept 0600 in its work directory);
    /// its id is then bound to it, the farm's join token can be rotated without it, a ban refuses the credential,
    /// and one address may enrol only so many nodes a minute.
    @Test func enrolledNodesJoinWithTheirCredentialAcrossATokenRotation() async throws {
        let farm = try Farm("farm-enrol", seconds: 0.5)
        defer { farm.remove() }
        try await farm.stopping {
            let first = try await farm.coordinator("coordinator-1.log")
            _ = try await farm.node("enrolee", port: first.nodePort)
            let credential = farm.path("node-work-enrolee/credential")
            let enrolled = await FarmBinary.waitUntil(timeout: 30) { first.text.contains("node enrolled") && FileManager.default.fileExists(atPath: credential) }
            #expect(enrolled, "\(first.text.suffix(1500))")
            let mode = (try? FileManager.default.attributesOfItem(atPath: credential))?[.posixPermissions] as? Int
            #expect(mode == 0o600, "\(String(mode ?? -1, radix: 8))")

            // Another node with the token cannot take the enrolled id.
            let impostor = try await FakeNode.join(port: first.nodePort, tls: true, token: Self.joinToken, nodeID: "enrolee")
            #expect(impostor.messages == ["reject"], "\(impostor.messages)")
            _ = await FarmBinary.waitUntil(timeout: 10) { first.text.contains("it joins with its credential, not the join token") }
            #expect(first.text.contains("it joins with its credential, not the join token"))
            await first.stop()

            // The join token rotated: the enrolled node comes back with its credential; the old token enrols no one.
            let rotated = "rotated-join-token-long-enough-for-the-coordinator"
            let second = try await TestCoordinator.start(
                data: farm.data, log: farm.path("coordinator-2.log"), nodePort: first.nodePort,
                arguments: ["--source-root", farm.sources], environment: ["FARM_JOIN_TOKEN": rotated])
            do {
                let back = await FarmBinary.waitUntil(timeout: 60) { second.text.contains("node joined") }
                #expect(back, "\(second.text.suffix(1500))")
                let stale = try await FakeNode.join(port: second.nodePort, tls: true, token: Self.joinToken, nodeID: "newcomer")
                #expect(stale.messages == ["reject"], "\(stale.messages)")

                // A ban of the id refuses its credential: the node is closed and, trying again, told why.
                let (status, body) = try await http(
                    "POST", "\(second.base)/nodes/enrolee/ban", token: NodeChannelTests.apiTokenOf(farm))
                #expect(status == 200, "\(body)")
                let nodeLog = farm.path("enrolee.log")
                let refused = await FarmBinary.waitUntil(timeout: 30) {
                    ((try? String(contentsOfFile: nodeLog, encoding: .utf8)) ?? "").contains("node enrolee is banned")
                }
                #expect(refused, "\(((try? String(contentsOfFile: nodeLog, encoding: .utf8)) ?? "").suffix(1500))")

                // Enrolments from one address are rate-limited: 10 a minute (the newcomer above did not enrol).
                var outcomes: [[String]] = []
                for i in 0..<11 {
                    outcomes.append(
                        try await FakeNode.join(port: second.nodePort, tls: true, token: rotated, nodeID: "burst-\(i)", stopAt: "welcome")
                            .messages)
                }
                #expect(outcomes.prefix(10).allSatisfy { $0.first == "welcome" }, "\(outcomes)")
                #expect(outcomes.last == ["reject"], "\(outcomes)")
            } catch {
                await second.stop()
                throw error
            }
            await second.stop()
        }
    }

    /// The API token a coordinator of `farm` made for itself (none was given).
    static func apiTokenOf(_ farm: Farm) -> String {
        ((try? String(contentsOfFile: farm.data + "/api-token", encoding: .utf8)) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
    }

    // MARK: - Node pools

    /// A job that requires a label goes only to nodes that carry it: one given it by the coordinator (`--node-label`),
    /// not one that merely claims it (`farm node --label`) without `--accept-node-labels`.
    @Test func aLabelledJobStaysOnItsPool() async throws {
        let farm = try Farm(
            "farm-pools", seconds: 4, videoArgs: ["-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-bf", "0"])
        defer { farm.remove() }
        try await farm.stopping {
            let coordinator = try await farm.coordinator("coordinator.log", arguments: ["--node-label", "vault=trusted"])
            _ = try await farm.node("vault", port: coordinator.nodePort)
            _ = try await farm.node("cloud", port: coordinator.nodePort, arguments: ["--label", "trusted", "--slots", "2"])
            let joined = await FarmBinary.waitUntil(timeout: 30) { coordinator.text.components(separatedBy: "node joined").count == 3 }
            #expect(joined, "\(coordinator.text.suffix(1500))")
            let token = Self.apiTokenOf(farm)
            var request = URLRequest(url: URL(string: "\(coordinator.base)/jobs")!)
            request.httpMethod = "POST"
            request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization")
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
            request.httpBody = Data(#"{"source": "\#(farm.clip)", "segment_seconds": 1, "preset": "ultrafast", "nodes": {"labels": ["trusted"]}}"#.utf8)
            let (data, _) = try await URLSession.shared.data(for: request)
            let id = try #require((try JSONSerialization.jsonObject(with: data) as? [String: Any])?["id"] as? String, "\(String(decoding: data, as: UTF8.self))")
            var job: [String: Any] = [:]
            _ = await FarmBinary.waitUntil(timeout: 90) {
                let (_, body) = (try? await http("GET", "\(coordinator.base)/jobs/\(id)", token: token)) ?? (0, "")
                job = (try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any]) ?? [:]
                return ["done", "failed"].contains(job["state"] as? String ?? "")
            }
            #expect(job["state"] as? String == "done", "\(job)")
            let segments = try #require(job["segments"] as? [[String: Any]])
            #expect(segments.count >= 3 && segments.allSatisfy { $0["node"] as? String == "vault" }, "\(segments)")
            let (_, listing) = try await http("GET", "\(coordinator.base)/nodes", token: token)
            let nodes = try #require((try JSONSerialization.jsonObject(with: Data(listing.utf8)) as? [String: Any])?["nodes"] as? [[String: Any]])
            let vault = try #require(nodes.first { $0["id"] as? String == "vault" })
            let cloud = try #require(nodes.first { $0["id"] as? String == "cloud" })
            #expect(vault["labels"] as? [String] == ["trusted"])
            #expect(cloud["labels"] as? [String] == [] && cloud["claimed_labels"] as? [String] == ["trusted"], "\(cloud)")
        }
    }

    // MARK: - Nodes know their coordinator

    /// `farm keys` makes the node-port key before deployment and prints its pin; a coordinator given it through
    /// `FARM_TLS_CERT`/`FARM_TLS_KEY` presents it; a node pinned to it joins, a node pinned to another key refuses
    /// the coordinator (with the join token right), and a node without a pin joins with a warning.
    @Test func nodesPinTheCoordinatorsKey() async throws {
        let farm = try Farm("farm-pin", seconds: 0.5)
        defer { farm.remove() }
        let made = try await FarmBinary.run(["keys", "--out", farm.path("keys"), "--json"], timeout: 30)
        #expect(made.status == 0, "\(made.stderr)")
        let keys = try #require(try JSONSerialization.jsonObject(with: Data(made.stdout.utf8)) as? [String: String])
        let pin = try #require(keys["spki_sha256"])
        #expect(pin.count == 64)
        // Run again: the files are kept, and so is the pin.
        let again = try await FarmBinary.run(["keys", "--out", farm.path("keys"), "--json"], timeout: 30)
        #expect(again.stdout.contains(pin))
        let text = try await FarmBinary.run(["keys", "--out", farm.path("keys")], timeout: 30)
        #expect(text.stdout.contains("--coordinator-key-sha256 \(pin)"), "\(text.stdout)")
        try await farm.stopping {
            let coordinator = try await farm.coordinator(
                "coordinator.log",
                environment: ["FARM_TLS_CERT": try #require(keys["FARM_TLS_CERT"]), "FARM_TLS_KEY": try #require(keys["FARM_TLS_KEY"])])
            #expect(coordinator.text.contains("keySHA256=\(pin)"), "\(coordinator.text.suffix(1500))")
            _ = try await farm.node("pinned", port: coordinator.nodePort, arguments: ["--coordinator-key-sha256", pin.uppercased()])
            _ = try await farm.node("unpinned", port: coordinator.nodePort)
            let joined = await FarmBinary.waitUntil(timeout: 30) {
                coordinator.text.contains("node=pinned") && coordinator.text.contains("node=unpinned")
                    && coordinator.text.components(separatedBy: "node joined").count == 3
            }
            #expect(joined, "\(coordinator.text.suffix(2000))")
            let unpinnedLog = (try? String(contentsOfFile: farm.path("unpinned.log"), encoding: .utf8)) ?? ""
            #expect(unpinnedLog.contains("no --coordinator-key-sha256"), "\(unpinnedLog.suffix(1000))")

            let other = String(pin.reversed())
            let refused = try await FarmBinary.run(
                ["node", "--coordinator", "127.0.0.1:\(coordinator.nodePort)", "--node-id", "misled", "--exit-on-disconnect",
                 "--no-calibrate", "--hardware", "off", "--coordinator-key-sha256", other],
                environment: ["FARM_JOIN_TOKEN": Self.joinToken], timeout: 30)
            #expect(refused.status != 0 && refused.status < 128)
            #expect(refused.stderr.contains("not the pinned \(other)"), "\(refused.stderr.suffix(1500))")
            #expect(!coordinator.text.contains("node=misled"), "the misled node proved nothing")
            let malformed = try await FarmBinary.run(
                ["node", "--coordinator", "127.0.0.1:\(coordinator.nodePort)", "--exit-on-disconnect",
                 "--coordinator-key-sha256", "replace-with-the-pin"],
                environment: ["FARM_JOIN_TOKEN": Self.joinToken], timeout: 30)
            #expect(malformed.status != 0 && malformed.stderr.contains("not 64 hexadecimal digits"), "\(malformed.stderr)")
        }
    }

    // MARK: - HTTPS and idle connections

    /// `--http-tls-cert`/`--http-tls-key` serve the API over HTTPS (curl checks the chain and the name), plain HTTP to
    /// that port gets no answer, and `--http-idle-timeout` closes a connection that sends nothing or stops halfway
    /// through a request's head.
    @Test func theAPIServesHTTPSAndClosesIdleConnections() async throws {
        let farm = try Farm("farm-https", seconds: 0.2)
        defer { farm.remove() }
        let identity = try TestCertificate.make("farm api", loopback: true)
        try identity.certificate.write(toFile: farm.path("api-cert.pem"), atomically: true, encoding: .utf8)
        try identity.key.write(toFile: farm.path("api-key.pem"), atomically: true, encoding: .utf8)
        chmod(farm.path("api-key.pem"), 0o600)
        let apiToken = "https-api-token-long-enough-for-the-coordinator"
        try await farm.stopping {
            let coordinator = try await farm.coordinator(
                "coordinator.log",
                arguments: ["--http-tls-cert", farm.path("api-cert.pem"), "--http-tls-key", farm.path("api-key.pem"),
                            "--http-idle-timeout", "1"],
                environment: ["FARM_API_TOKEN": apiToken])
            let url = "https://127.0.0.1:\(coordinator.httpPort)"
            func curl(_ arguments: [String]) async throws -> ChildProcess.Completed {
                try await ChildProcess.run(
                    executable: "/usr/bin/curl", arguments: ["-s", "-o", "/dev/null", "-w", "%{http_code}", "-m", "10"] + arguments,
                    timeout: .seconds(30))
            }
            let health = try await curl(["--cacert", farm.path("api-cert.pem"), url + "/health"])
            #expect(health.stdout == "200", "\(health.stdout) \(health.stderr)")
            let jobs = try await curl(["--cacert", farm.path("api-cert.pem"), "-H", "Authorization: Bearer \(apiToken)", url + "/jobs"])
            #expect(jobs.stdout == "200", "\(jobs.stdout) \(jobs.stderr)")
            // Without the certificate as a trust anchor the chain does not verify; plain HTTP gets no HTTP answer.
            let untrusted = try await curl([url + "/health"])
            #expect(untrusted.stdout == "000")
            let plain = try await curl(["http://127.0.0.1:\(coordinator.httpPort)/health"])
            #expect(plain.stdout == "000" || plain.stdout == "400", "\(plain.stdout)")
            #expect(coordinator.text.contains("scheme=https"), "\(coordinator.text.suffix(1500))")

            // A connection that sends nothing, and one that stops in the middle of a request's head, are closed.
            // (Both inside TLS, so that the bytes sent reach HTTP.)
            let tls = try TestCertificate.clientContext()
            for prefix in ["", "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n"] {
                let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                    .channelInitializer { channel in
                        channel.eventLoop.makeCompletedFuture {
                            try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: tls, serverHostname: nil))
                        }
                    }
                    .connect(host: "127.0.0.1", port: coordinator.httpPort).get()
                if !prefix.isEmpty { try await channel.writeAndFlush(ByteBuffer(string: prefix)) }
                let started = ContinuousClock.now
                let closed = await withTaskGroup(of: Bool.self) { group in
                    group.addTask { (try? await channel.closeFuture.get()) != nil }
                    group.addTask {
                        try? await Task.sleep(for: .seconds(20))
                        return false
                    }
                    let first = await group.next() ?? false
                    group.cancelAll()
                    return first
                }
                let waited = ContinuousClock.now - started
                if !closed { try? await channel.close() }
                #expect(closed, "a connection sending \(prefix.count) bytes stayed open for 20 s")
                #expect(waited >= .milliseconds(500), "closed after \(waited)")
            }
            #expect(coordinator.isRunning)
        }
    }

    // MARK: - Plain TCP only when asked for

    @Test func plainTCPOnlyWhenAskedFor() async throws {
        let farm = try Farm("farm-plain", seconds: 1)
        defer { farm.remove() }
        try await farm.stopping {
            // A TLS coordinator (the default) refuses a plain-TCP peer at the TLS layer, and says so.
            let tls = try await farm.coordinator("tls.log", environment: ["FARM_API_TOKEN": "t-long-enough-for-the-coordinator"])
            let plainConnection = try await FakeNode.connect(port: tls.nodePort, tls: false)
            let plainIntoTLS = try await plainConnection.executeThenClose { inbound, outbound in
                try await outbound.write(
                    .hello(Hello(nodeID: "plain", proof: JoinProof.makeNonce(), slots: 1, threads: 1, capabilitiesJSON: "{}")))
                var received: [String] = []
                do {
                    for try await message in inbound { received.append(message.name) }
                } catch {
                    // Closed with an error: nothing arrived before it either.
                }
                return received
            }
            await tls.stop()
            #expect(plainIntoTLS.isEmpty, "\(plainIntoTLS)")
            #expect(tls.text.contains("node connection closed"), "\(tls.text.suffix(2000))")
            #expect(!tls.text.contains("node joined"))

            // A coordinator asked for plain TCP warns, refuses a TLS node quickly with a hint, and admits a plain one.
            let plain = try await farm.coordinator("plain.log", arguments: ["--insecure-plain-tcp"], environment: ["FARM_API_TOKEN": "t-long-enough-for-the-coordinator"])
            #expect(plain.text.contains("node port uses plain TCP"))
            let tlsNode = try await FarmBinary.run(
                ["node", "--coordinator", "127.0.0.1:\(plain.nodePort)", "--exit-on-disconnect", "--no-calibrate",
                 "--hardware", "off"],
                environment: ["FARM_JOIN_TOKEN": Self.joinToken], timeout: 30)
            #expect(tlsNode.status != 0)
            #expect(tlsNode.stderr.contains("TLS handshake"), "\(tlsNode.stderr.suffix(1500))")
            _ = try await farm.node("plain-node", port: plain.nodePort, arguments: ["--insecure-plain-tcp"])
            #expect(await FarmBinary.waitUntil(timeout: 20) { plain.text.contains("node joined") }, "\(plain.text.suffix(2000))")
            #expect(readLog(farm.path("plain-node.log")).contains("plain TCP"))

            // The embedded render over plain TCP, when asked for, still renders exactly.
            let output = farm.path("plain.mp4")
            let render = try await FarmBinary.run(
                ["render", farm.clip, "-o", output, "--nodes", "1", "--preset", "ultrafast", "--hardware", "off",
                 "--insecure-plain-tcp"], timeout: 90)
            #expect(render.status == 0, "\(render.stderr.suffix(2000))")
            #expect(try TestMedia.frameTimes(output).count == 25)
        }
    }

    // MARK: - Message rate

    @Test func aFloodingNodeIsDisconnectedWhileARealNodeRenders() async throws {
        let farm = try Farm("farm-flood", seconds: 3)
        defer { farm.remove() }
        try await farm.stopping {
            let coordinator = try await farm.coordinator("coordinator.log", environment: ["FARM_API_TOKEN": "flood-test-long-enough-for-the-coordinator"])
            let node = try await farm.node("steady", port: coordinator.nodePort)
            #expect(await FarmBinary.waitUntil(timeout: 20) { coordinator.text.contains("node joined") })

            let output = farm.path("out.mp4")
            let base = coordinator.base
            let clip = farm.clip
            let submit = Task {
                let result = try await FarmBinary.run(
                    ["submit", "--remote", clip, "-o", output, "--server", base, "--crf", "30", "--preset",
                     "ultrafast", "--segment-seconds", "1"],
                    environment: ["FARM_API_TOKEN": "flood-test-long-enough-for-the-coordinator"], timeout: 90)
                return (status: result.status, stderr: result.stderr)
            }
            // Heartbeats as fast as the socket takes them, at most 200,000: far past 1000 a second.
            let flood = try await FakeNode.join(port: coordinator.nodePort, tls: true, token: Self.joinToken, nodeID: "flooder") {
                outbound in
                let batch = [Message](repeating: .heartbeat(Heartbeat(activeTasks: [])), count: 1000)
                for _ in 0..<200 { try await outbound.write(contentsOf: batch) }
            }
            #expect(flood.messages.first == "welcome")
            #expect(flood.closedByPeer)
            let log = coordinator.text
            #expect(log.contains("node exceeded the message rate limit"), "\(log.suffix(2000))")
            #expect(log.contains("node=flooder"))

            let result = try await submit.value
            #expect(result.status == 0, "\(result.stderr) \(coordinator.text.suffix(2000))")
            #expect(try TestMedia.frameTimes(output).count == 75)
            // The real node stayed connected throughout.
            let left = coordinator.text.split(separator: "\n").filter { $0.contains("node left") }
            #expect(left.allSatisfy { $0.contains("node=flooder") }, "\(left)")
            #expect(node.isRunning)
        }
    }
}
