import ArgumentParser
import FarmCoordinator
import FarmHWEncode
import FarmMedia
import FarmNode
import FarmProtocol
import Foundation
import Logging

/// `farm probe`: what this machine can encode with, as JSON.
struct Probe: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print this machine's encoding capabilities (VA-API, NVENC, QSV, software) as JSON.")

    @Option(help: "Seconds before a stuck driver is given up on.")
    var timeout = 10.0

    func run() async throws {
        MediaLog.quiet()
        let report = HardwareProbe.run(timeout: .milliseconds(Int(timeout * 1000)))
        print(report.jsonString(pretty: true))
    }
}

/// `farm bench-wire`: throughput of segment bytes over the real protocol on loopback (for `make bench`).
struct BenchWire: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-wire", abstract: "Measure segment-byte throughput of the node protocol on loopback.",
        shouldDisplay: false)

    @Option(help: "Bytes to send.")
    var bytes: Int64 = 2 << 30

    @Option(help: "Directory for the temporary file.")
    var directory = FileManager.default.temporaryDirectory.path

    @Flag(name: .customLong("insecure-plain-tcp"), help: "Measure plain TCP instead of TLS.")
    var insecurePlainTCP = false

    func run() async throws {
        // The allocation policy of the real coordinator and nodes.
        ProcessMemory.returnLargeBlocks()
        let result = try await WireBenchmark.run(bytes: bytes, directory: directory, tls: !insecurePlainTCP)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        print(String(decoding: try encoder.encode(result), as: UTF8.self))
    }
}
