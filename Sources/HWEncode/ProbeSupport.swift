internal import CFFmpeg
internal import FarmMedia
internal import Foundation
internal import Synchronization

#if canImport(Glibc)
    internal import Glibc
#elseif canImport(Darwin)
    internal import Darwin
#endif

/// One part of the probe on a thread of its own. Results are posted as they come, so a part that hangs
/// half-way still reports what it finished. A worker still running at the deadline is abandoned: the
/// thread keeps the worker alive and frees its C objects if it ever returns.
final class ProbeWorker<Element: Sendable>: @unchecked Sendable {
    // Guards `results` and `finished`; the thread is the only writer.
    private let condition = NSCondition()
    private var results: [Element] = []
    private var finished = false

    init(name: String, _ work: @escaping @Sendable (_ post: (Element) -> Void) -> Void) {
        let thread = Thread { [self] in
            work { element in
                self.condition.lock()
                self.results.append(element)
                self.condition.unlock()
            }
            condition.lock()
            finished = true
            condition.broadcast()
            condition.unlock()
        }
        thread.name = "farm-probe-\(name)"
        thread.start()
    }

    /// What the part has posted by `deadline`, and whether it finished.
    func wait(until deadline: ContinuousClock.Instant) -> (results: [Element], finished: Bool) {
        condition.lock()
        defer { condition.unlock() }
        while !finished {
            let remaining = deadline - ContinuousClock.now
            if remaining <= .zero { break }
            _ = condition.wait(until: Date(timeIntervalSinceNow: remaining.seconds))
        }
        return (results, finished)
    }
}

/// Keeps FFmpeg (and through it libva's FFmpeg-owned displays) and SVT-AV1 quiet while probes run.
/// Probes may overlap: the first one in saves the settings, the last one out restores them.
struct ProbeQuiet {
    private struct State {
        var depth = 0
        var savedLogLevel: Int32 = 0
        var setSVTLog = false
    }
    private static let state = Mutex(State())

    init() {
        Self.state.withLock { s in
            if s.depth == 0 {
                s.savedLogLevel = av_log_get_level()
                av_log_set_level(AV_LOG_QUIET)
                // SVT-AV1 prints its banner straight to stderr; its level comes from the environment
                // when an encoder is created. 0 = fatal messages only.
                if getenv("SVT_LOG") == nil {
                    setenv("SVT_LOG", "0", 0)
                    s.setSVTLog = true
                }
            }
            s.depth += 1
        }
    }

    func end() {
        Self.state.withLock { s in
            s.depth -= 1
            if s.depth == 0 {
                av_log_set_level(s.savedLogLevel)
                if s.setSVTLog {
                    unsetenv("SVT_LOG")
                    s.setSVTLog = false
                }
            }
        }
    }
}
