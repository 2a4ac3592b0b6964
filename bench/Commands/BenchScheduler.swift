import ArgumentParser
import FarmBenchmarks
import Foundation

/// `farm-bench scheduler`: the coordinator's state and scheduling policy against the naive policy on
/// simulated fleets of unequal nodes (see `SchedulerSimulation`). No nodes, no video.
struct BenchScheduler: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "scheduler",
        abstract: "Simulate the scheduler on fleets of 1x to 8x nodes and compare it with the naive policy.")

    @Flag(help: "Print one JSON object instead of a table.")
    var json = false

    @Option(help: "Nodes in each simulated fleet.")
    var nodes = 50

    @Option(help: "Hours of video per job.")
    var videoHours = 2.0

    func validate() throws {
        guard nodes >= 1 else { throw ValidationError("--nodes must be at least 1") }
        guard videoHours > 0, videoHours <= 100 else { throw ValidationError("--video-hours must be in (0, 100]") }
    }

    func run() async throws {
        let rows = SchedulerSimulation.benchmark(
            SchedulerSimulation.benchmarkScenarios(nodes: nodes, videoHours: videoHours))
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            print(String(decoding: try encoder.encode(Report(scenarios: rows)), as: UTF8.self))
        } else {
            print(Self.table(rows))
        }
    }

    /// The JSON document: `{"scenarios": [...]}`.
    struct Report: Encodable {
        var scenarios: [SchedulerSimulation.BenchmarkRow]
    }

    static func table(_ rows: [SchedulerSimulation.BenchmarkRow]) -> String {
        func pad(_ s: String, _ width: Int, left: Bool = false) -> String {
            let fill = String(repeating: " ", count: max(width - s.count, 0))
            return left ? s + fill : fill + s
        }
        func percent(_ value: Double?) -> String { value.map { String(format: "%.1f%%", $0) } ?? "-" }
        let header = [
            pad("scenario", 30, left: true), pad("nodes", 5), pad("slots", 5), pad("jobs", 4), pad("segs", 5),
            pad("makespan", 9), pad("bound", 8), pad("ratio", 6), pad("naive", 6), pad("dups", 6), pad("wasted", 7),
            pad("eta@10%", 8), pad("eta@50%", 8),
        ].joined(separator: " ")
        var lines = [header]
        for r in rows {
            lines.append(
                [
                    pad(r.name, 30, left: true), pad("\(r.nodes)", 5), pad("\(r.slots)", 5), pad("\(r.jobs)", 4),
                    pad("\(r.segments)", 5), pad(String(format: "%.1f s", r.makespanSeconds), 9),
                    pad(String(format: "%.1f s", r.lowerBoundSeconds), 8), pad(String(format: "%.3f", r.ratio), 6),
                    pad(String(format: "%.3f", r.naiveRatio), 6), pad("\(r.duplicateWins)/\(r.duplicates)", 6),
                    pad(String(format: "%.1f s", r.wastedSeconds), 7), pad(percent(r.etaError10Percent), 8),
                    pad(percent(r.etaError50Percent), 8),
                ].joined(separator: " "))
        }
        lines.append(
            "ratio: makespan / max(work / total speed, longest segment / fastest speed); naive: the former policy; "
                + "dups: won/started; eta: |predicted - actual| / actual finish, when a job is 10% and 50% done.")
        return lines.joined(separator: "\n")
    }
}
