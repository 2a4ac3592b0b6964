import ArgumentParser
import FarmProtocol
import Foundation

/// `farm tiers`: the tier table (resources per render node, node and coordinator settings) as text or JSON.
///
/// The JSON form is what `deploy/validate_sdl.py --tiers` checks the Akash SDL files against.
struct Tiers: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the deployment tiers: resources per render node, slots, threads, jobs and disk watermarks.")

    @Flag(help: "Print the table as JSON ({\"tiers\": [...]}).")
    var json = false

    func run() async throws {
        if json {
            print(try Self.jsonTable())
        } else {
            print(Self.textTable())
        }
    }

    /// The table as JSON: `{"tiers": [TierSpec, ...]}` with sorted keys.
    static func jsonTable() throws -> String {
        struct Table: Encodable { var tiers: [TierSpec] }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return String(decoding: try encoder.encode(Table(tiers: Tier.table)), as: UTF8.self)
    }

    /// The table as aligned text, one row per tier.
    static func textTable() -> String {
        let header = [
            "TIER", "CPU", "MEMORY", "STORAGE", "GPU", "SLOTS", "THREADS/SLOT", "JOBS", "QUEUE", "LOW DISK",
            "COORDINATOR",
        ]
        let rows = Tier.table.map { spec in
            [
                spec.tier.rawValue, "\(spec.cpu)", "\(spec.memoryGiB) GiB", "\(spec.storageGiB) GiB",
                spec.gpu > 0 ? "\(spec.gpu) NVIDIA" : "-", "\(spec.nodeSlots)", "\(spec.encoderThreadsPerSlot)",
                "\(spec.maxConcurrentJobs)", "\(spec.queueLimit)", "\(spec.lowDiskGiB) GiB / \(spec.lowDiskPercent)%",
                "\(spec.coordinatorCPU) CPU, \(spec.coordinatorMemoryGiB) GiB, \(spec.coordinatorDataGiB) GiB data",
            ]
        }
        let all = [header] + rows
        let widths = header.indices.map { column in all.map { $0[column].count }.max() ?? 0 }
        let lines = all.map { row in
            row.indices.map { column in
                column == row.count - 1
                    ? row[column] : row[column] + String(repeating: " ", count: widths[column] - row[column].count)
            }.joined(separator: "  ")
        }
        let notes = [
            "",
            "CPU, MEMORY, STORAGE and GPU are per render node; SLOTS and THREADS/SLOT are the node's settings;",
            "JOBS (running at once), QUEUE (waiting) and COORDINATOR are the coordinator's. LOW DISK: no new work",
            "below the larger of the two. Why each number: docs/tiers.md.",
        ]
        return (lines + notes).joined(separator: "\n")
    }
}
