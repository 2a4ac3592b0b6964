import FarmChildProcess
import FarmTestSupport
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// `farm coordinator` and `farm node` as separate processes: the join token, and hostile bytes
/// on the node port that must close that connection only.
@Suite(.serialized, .heavy) struct FleetTests {
    /// Opens a TCP connection to 127.0.0.1:port, sends `bytes`, and reports whether the peer closed it.
    static func sendRaw(_ bytes: [UInt8], port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { return false }
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        // Read until the coordinator closes (0) or the timeout passes (-1).
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = recv(fd, &buffer, buffer.count, 0)
            if n == 0 { return true }
            if n < 0 { return false }
        }
    }

    @Test func wrongTokenIsRefusedAndMalformedFramesCloseOnlyTheirConnection() async throws {
        let dir = try TestMedia.temporaryDirectory("farm-fleet")
        defer { try? FileManager.default.removeItem(at: dir) }
        let coordinatorLog = dir.appendingPathComponent("coordinator.log").path
        let coordinator = try await TestCoordinator.start(
            data: dir.appendingPathComponent("data").path, log: coordinatorLog,
            environment: ["FARM_JOIN_TOKEN": "right-token-long-enough-for-the-coordinator"])
        let port = coordinator.nodePort
        try await coordinator.stopping {

            // Bytes that are no TLS handshake (the node port speaks TLS; SecurityTests sends the same frames inside TLS):
            // a frame claiming 100 MiB, an unknown frame type, and a hello with garbage. Each connection is closed.
            #expect(Self.sendRaw([0x06, 0x40, 0x00, 0x00, 0x02], port: port))
            #expect(Self.sendRaw([0x00, 0x00, 0x00, 0x01, 0xEE], port: port))
            #expect(Self.sendRaw([0x00, 0x00, 0x00, 0x05, 0x02, 0x00, 0x01, 0x02, 0x03], port: port))
            #expect(coordinator.isRunning)

            // A node with the wrong token is refused and says so.
            let refused = try await FarmBinary.run(
                ["node", "--coordinator", "127.0.0.1:\(port)", "--exit-on-disconnect"],
                environment: ["FARM_JOIN_TOKEN": "wrong-token-long-enough-for-the-coordinator"], timeout: 30)
            #expect(refused.status != 0)
            #expect(refused.stderr.contains("join token"), "\(refused.stderr)")

            // A node with the right token joins the same, still running coordinator.
            let nodeLog = dir.appendingPathComponent("node.log").path
            let node = try await TestNode.start(
                // A work directory of its own: FleetRulesTests runs a "good-node" too, and the default directory is per ID.
                coordinator: coordinator.nodeAddress, id: "good-node", log: nodeLog,
                arguments: ["--no-calibrate", "--work-dir", dir.appendingPathComponent("good-node").path],
                environment: ["FARM_JOIN_TOKEN": "right-token-long-enough-for-the-coordinator"])
            try await node.stopping {
                #expect(
                    await FarmBinary.waitUntil(timeout: 20) {
                        ((try? String(contentsOfFile: coordinatorLog, encoding: .utf8)) ?? "").contains("node joined")
                    }, "\(((try? String(contentsOfFile: nodeLog, encoding: .utf8)) ?? "").suffix(1500))")
                let log = (try? String(contentsOfFile: coordinatorLog, encoding: .utf8)) ?? ""
                #expect(log.contains("failed to prove the join token"))
                #expect(coordinator.isRunning)
            }
        }
    }
}
