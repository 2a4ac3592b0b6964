import ArgumentParser

/// `farm-bench`: the benchmark's own measurements, outside the product (`make bench` runs them).
@main
struct FarmBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "farm-bench", abstract: "Benchmarks of farm's parts that need no render.",
        subcommands: [BenchScheduler.self, BenchWire.self, BenchVerify.self])
}
