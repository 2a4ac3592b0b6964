import ArgumentParser
import FarmBenchmarks
import FarmMedia
import Foundation

/// `farm-bench verify`: the coordinator's check of a result against the node's encode of it (for `make bench`).
struct BenchVerify: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify", abstract: "Measure the CPU of verifying segments against the CPU of encoding them.")

    @Option(help: "Directory for the temporary files.")
    var directory = FileManager.default.temporaryDirectory.path

    @Option(help: "Seconds of generated 720p30 video.")
    var seconds = 8.0

    @Option(help: "The encoder preset of the nodes.")
    var preset = "medium"

    @Option(help: "Frames compared at random positions per segment, besides the first and the last (default: the verifier's).")
    var randomSamples: Int?

    func validate() throws {
        guard seconds >= 2, seconds <= 600 else { throw ValidationError("--seconds must be 2 to 600") }
        if let randomSamples, !(0...1000).contains(randomSamples) {
            throw ValidationError("--random-samples must be 0 to 1000")
        }
    }

    func run() async throws {
        MediaLog.quiet()
        let report = try VerifierBenchmark.run(
            directory: directory, seconds: seconds, preset: preset, randomSamples: randomSamples)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        print(String(decoding: try encoder.encode(report), as: UTF8.self))
    }
}
