import FarmChildProcess
import FarmTestSupport
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// A network namespace of the test's own, joined to the test's namespace by a veth pair, with packet loss and
/// delay on both ends: `tc netem` where the kernel has it, else random drops by nftables and a token bucket
/// (`tbf`) that queues. Nodes run inside it (`ip netns exec`) and dial the coordinator across the pair.
struct NetworkLab {
    let namespace: String
    let hostLink: String
    let nodeLink: String
    /// The coordinator's address (the test's end of the pair) and the nodes' address.
    let hostAddress: String
    let nodeAddress: String
    /// What was done to the link, for logs and failure messages.
    private(set) var impairment = "none"
    private(set) var usesNftables = false

    static let ip = executablePath("ip")
    static let tc = executablePath("tc")
    static let nft = executablePath("nft")

    init() {
        let n = Int.random(in: 100...250)
        namespace = "farmtest\(n)-\(Int.random(in: 1000...9999))"
        hostLink = "fth\(n)x\(Int.random(in: 100...999))"
        nodeLink = "ftn\(n)x\(Int.random(in: 100...999))"
        hostAddress = "10.231.\(n).1"
        nodeAddress = "10.231.\(n).2"
    }

    @discardableResult
    static func run(_ tool: String?, _ arguments: [String], in namespace: String? = nil) throws -> String {
        guard let tool else { throw TestFailure("missing tool for \(arguments.joined(separator: " "))") }
        let command = namespace.map { [ip ?? "ip", "netns", "exec", $0, tool] } ?? [tool]
        // Blocking, and quick: the probe (a static initializer) and `destroy()` (in a defer) cannot await.
        let result = try FarmBinary.executeBlocking(command[0], Array(command.dropFirst()) + arguments, timeout: 20)
        guard result.status == 0 else {
            throw TestFailure(
                "\(URL(fileURLWithPath: tool).lastPathComponent) \(arguments.joined(separator: " ")): "
                    + result.stderr.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        return result.stdout
    }

    /// Creates the namespace and the link, and impairs it. Throws with the reason when the machine does not
    /// allow it (no root, no CAP_NET_ADMIN, no netem and no nftables); whatever was made is removed then.
    mutating func create() throws {
        guard getuid() == 0 else { throw TestFailure("network namespaces need root (this runs as uid \(getuid()))") }
        guard Self.ip != nil, Self.tc != nil else { throw TestFailure("no ip or tc command (iproute2 is not installed)") }
        do {
            try Self.run(Self.ip, ["netns", "add", namespace])
            try Self.run(Self.ip, ["link", "add", hostLink, "type", "veth", "peer", "name", nodeLink])
            try Self.run(Self.ip, ["link", "set", nodeLink, "netns", namespace])
            try Self.run(Self.ip, ["addr", "add", "\(hostAddress)/24", "dev", hostLink])
            try Self.run(Self.ip, ["link", "set", hostLink, "up"])
            try Self.run(Self.ip, ["addr", "add", "\(nodeAddress)/24", "dev", nodeLink], in: namespace)
            try Self.run(Self.ip, ["link", "set", nodeLink, "up"], in: namespace)
            try Self.run(Self.ip, ["link", "set", "lo", "up"], in: namespace)
            try impair()
        } catch {
            destroy()
            throw error
        }
    }

    private mutating func impair() throws {
        let netem = ["qdisc", "add", "dev"]
        do {
            try Self.run(Self.tc, netem + [hostLink, "root", "netem", "delay", "30ms", "10ms", "loss", "3%"])
            try Self.run(Self.tc, netem + [nodeLink, "root", "netem", "delay", "30ms", "10ms", "loss", "3%"], in: namespace)
            impairment = "tc netem: 30 ms ± 10 ms delay and 3 % loss each way"
            return
        } catch {
            guard Self.nft != nil else {
                throw TestFailure("the kernel has no netem qdisc (\(error)) and nft (nftables) is not installed")
            }
            // No netem here: nftables drops 3 % of the packets each way inside the namespace, and a token
            // bucket on each end holds the link to 20 Mbit/s, queueing bursts (delay without netem).
            let rules = """
                table inet farmtest {
                    chain input { type filter hook input priority 0; numgen random mod 100 < 3 counter drop; }
                    chain output { type filter hook output priority 0; numgen random mod 100 < 3 counter drop; }
                }
                """
            let file = FileManager.default.temporaryDirectory.appendingPathComponent("\(namespace).nft")
            try rules.write(to: file, atomically: true, encoding: .utf8)
            defer { try? FileManager.default.removeItem(at: file) }
            try Self.run(Self.nft, ["-f", file.path], in: namespace)
            let bucket = ["root", "tbf", "rate", "20mbit", "burst", "64kb", "latency", "100ms"]
            try Self.run(Self.tc, netem + [hostLink] + bucket)
            try Self.run(Self.tc, netem + [nodeLink] + bucket, in: namespace)
            usesNftables = true
            impairment = "nftables: 3 % random drops each way; tbf: 20 Mbit/s with queueing (no netem in this kernel)"
        }
    }

    /// Packets the impairment dropped so far (netem's or nftables' counters).
    func droppedPackets() -> Int {
        if usesNftables {
            let rules = (try? Self.run(Self.nft, ["list", "table", "inet", "farmtest"], in: namespace)) ?? ""
            return rules.components(separatedBy: "counter packets ").dropFirst()
                .compactMap { Int($0.prefix { $0.isNumber }) }.reduce(0, +)
        }
        var total = 0
        for (link, namespace) in [(hostLink, nil), (nodeLink, self.namespace)] {
            let stats = (try? Self.run(Self.tc, ["-s", "qdisc", "show", "dev", link], in: namespace)) ?? ""
            if let range = stats.range(of: "dropped ") {
                total += Int(stats[range.upperBound...].prefix { $0.isNumber }) ?? 0
            }
        }
        return total
    }

    /// Removes the namespace and the link (deleting either end removes the pair).
    func destroy() {
        _ = try? Self.run(Self.ip, ["link", "del", hostLink])
        _ = try? Self.run(Self.ip, ["netns", "del", namespace])
    }

    /// Why this machine cannot run the test, or nil; found by building a lab once and taking it down.
    static let problem: String? = {
        var lab = NetworkLab()
        do {
            try lab.create()
            lab.destroy()
            return nil
        } catch {
            return "\(error)"
        }
    }()
}

extension Reliability {
    /// Packet loss and delay between the coordinator and its nodes: the render still ends frame-exact.
    @Suite struct NetworkFaultTests {
        @Test(.enabled(if: NetworkLab.problem == nil, "\(NetworkLab.problem ?? "")"))
        func lossAndDelayBetweenCoordinatorAndNodesStillRenderExactly() async throws {
            var lab = NetworkLab()
            try lab.create()
            let farm = try FaultFarm("farm-netem", nodeHost: lab.hostAddress)
            defer {
                lab.destroy()
                farm.remove()
            }
            try await farm.stopping {
                try await farm.startCoordinator()
                let prefix = [NetworkLab.ip ?? "ip", "netns", "exec", lab.namespace]
                try await farm.startNode("node-a", prefix: prefix)
                try await farm.startNode("node-b", prefix: prefix)
                try await farm.waitForNodes(2, timeout: 60)
                let clip = "\(farm.sources)/clip.mp4"
                try TestMedia.makeClip(at: clip, seconds: 6, size: "640x360")
                let id = try await farm.submit(clip, #""preset": "ultrafast", "segment_seconds": 1"#)

                let job = try await farm.waitForEnd(id, timeout: 120)
                #expect(job["state"] as? String == "done", "\(lab.impairment): \(job) \(farm.logs())")
                #expect(FaultFarm.segments(job).allSatisfy { ["node-a", "node-b"].contains($0["node"] as? String ?? "") })
                let dropped = lab.droppedPackets()
                #expect(dropped > 0, "\(lab.impairment): no packet was dropped, the test proves nothing")
                try await farm.expectExactOutput(id, source: clip)
                print("network fault test: \(lab.impairment); \(dropped) packets dropped")
            }
        }
    }
}
