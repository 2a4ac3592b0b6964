import ArgumentParser
import FarmBenchmarks
import FarmMedia
import Foundation

/// `farm-bench wire`: throughput of segment bytes over the real protocol on loopback (for `make bench`).
struct BenchWire: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "wire", abstract: "Measure segment-byte throughput of the node protocol on loopback.")

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
