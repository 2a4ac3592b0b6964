/// The coordinator's own CPU work on threads of its own (verifying results today; shot detection and audio
/// share it as they come) runs at most this many pieces at once, whatever the number of nodes: a fleet that
/// returns results faster than the coordinator can check them waits here, in arrival order, instead of
/// oversubscribing the coordinator's cores and starving its event loops. `docs/tiers.md` gives each tier's size.
actor CPUBudget {
    let threads: Int
    private var inUse = 0
    private var waiters: [CheckedContinuation<Void, Never>] = []
    /// Pieces waiting for a thread now, and the most that ever waited.
    private(set) var waiting = 0
    private(set) var mostWaiting = 0

    init(threads: Int) { self.threads = max(threads, 1) }

    /// Runs `work` once a thread of the budget is free. A task cancelled while it waits still waits its turn, then
    /// gives the thread back at once (its work sees the cancellation).
    func run<T: Sendable>(_ work: @Sendable () async throws -> T) async rethrows -> T {
        await acquire()
        do {
            let value = try await work()
            release()
            return value
        } catch {
            release()
            throw error
        }
    }

    private func acquire() async {
        if inUse < threads {
            inUse += 1
            return
        }
        waiting += 1
        mostWaiting = max(mostWaiting, waiting)
        await withCheckedContinuation { waiters.append($0) }
        waiting -= 1
    }

    private func release() {
        if waiters.isEmpty {
            inUse -= 1
        } else {
            // The thread passes straight to the next waiter.
            waiters.removeFirst().resume()
        }
    }
}
