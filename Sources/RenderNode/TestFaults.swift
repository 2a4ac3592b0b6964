import Foundation
import Logging
import Synchronization

/// Faults a node commits on purpose, to prove that the coordinator survives them (the fault tests, and
/// docs/reliability.md). `farm node` reads them from its environment (`FarmEnvironment`) and hands them over in
/// ``NodeConfiguration/testFaults``; never set in production.
///
/// - `FARM_TEST_CORRUPT_RESULT=N`: the first N results this process sends have one byte flipped after their
///   checksum was computed, as a bad disk or a broken transfer would do. The coordinator's checksum check must
///   refuse them and have the segment encoded again.
/// - `FARM_TEST_STALL=N`: the first N segments this process receives are held and never encoded, and the
///   connection that received them stops its heartbeats while staying open, as a hung worker does. The
///   coordinator's lease timeout must take the segment back.
/// - `FARM_TEST_FAIL_TASKS=all|N`: every task (or the first N) fails as an encode failure, for the
///   coordinator's retry, quarantine and failed-on-3-nodes rules.
/// - `FARM_TEST_WRONG_PICTURES=all|N`: every segment (or the first N) is encoded from pictures whose luma is
///   inverted: the right frames at the right times, the wrong pictures. The coordinator's verifier must refuse
///   them, quarantine the node and ban it.
public final class TestFaults: Sendable {
    /// The switches named above, by name, as the command line's environment gave them (`FarmEnvironment`); none in
    /// production.
    public init(switches: [String: String] = [:]) {
        wrongPictures = Budget(switches["FARM_TEST_WRONG_PICTURES"])
        corruptResults = Budget(switches["FARM_TEST_CORRUPT_RESULT"])
        stalls = Budget(switches["FARM_TEST_STALL"])
        failedTasks = Budget(switches["FARM_TEST_FAIL_TASKS"])
        slowNode = switches["FARM_TEST_SLOW_NODE"]
    }

    /// The environment variables these switches are read from.
    public static let names = [
        "FARM_TEST_WRONG_PICTURES", "FARM_TEST_CORRUPT_RESULT", "FARM_TEST_STALL", "FARM_TEST_FAIL_TASKS",
        "FARM_TEST_SLOW_NODE",
    ]

    let wrongPictures: Budget
    let corruptResults: Budget
    let stalls: Budget
    let failedTasks: Budget
    /// `NODE_ID:FACTOR` (benchmark only): that node behaves as one `FACTOR` times slower.
    let slowNode: String?

    /// How many times a fault is still to be committed, shared by every connection of the process.
    final class Budget: Sendable {
        private let remaining: Mutex<Int>

        init(_ value: String?) {
            let count = value == "all" ? Int.max : value.flatMap { Int($0) } ?? 0
            remaining = Mutex(max(count, 0))
        }

        /// Whether to commit the fault now; each `true` uses one.
        func take() -> Bool {
            remaining.withLock { count in
                guard count > 0 else { return false }
                count -= 1
                return true
            }
        }
    }

    /// Flips the byte in the middle of the encoded result at `path` when a corruption is due. Runs on the
    /// encode's own thread (blocking file I/O).
    func corruptResultIfDue(at path: String, size: UInt64, logger: Logger) throws {
        guard size > 0, corruptResults.take() else { return }
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: path))
        defer { try? handle.close() }
        let offset = size / 2
        try handle.seek(toOffset: offset)
        let byte = try handle.read(upToCount: 1)?.first ?? 0
        try handle.seek(toOffset: offset)
        try handle.write(contentsOf: [byte ^ 0xFF])
        logger.warning("test fault (FARM_TEST_CORRUPT_RESULT): result corrupted after its checksum", metadata: ["offset": "\(offset)"])
    }
}

/// Set when a connection stalled on purpose (`FARM_TEST_STALL`): it then sends no heartbeat.
final class StallFlag: Sendable {
    private let stalled = Mutex(false)

    var isSet: Bool { stalled.withLock { $0 } }

    func set() { stalled.withLock { $0 = true } }
}
