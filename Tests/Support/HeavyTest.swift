import Foundation
import Testing

/// Tests that start farm processes (a coordinator, nodes, a render) run a few at a time.
///
/// Swift Testing starts every suite at once. Waits in these tests suspend rather than hold a thread, so nothing
/// else bounds how many farms run together: a dozen farms encoding on two cores starve each other until
/// timeouts fire and the timing a test relies on (a slow node that must be slower than a fast one) no longer holds.
/// A test with this trait (or in a suite with it) waits for one of ``HeavyTest/slots`` before it starts, and
/// gives it back when it ends; tests without it (unit tests, in-process ones) are not held back.
public struct HeavyTest: TestTrait, SuiteTrait, TestScoping {
    /// How many heavy tests run at once: `FARM_TEST_HEAVY_SLOTS`, else one more than the cores.
    public static let slots: Int = {
        if let text = ProcessInfo.processInfo.environment["FARM_TEST_HEAVY_SLOTS"], let value = Int(text), value > 0 {
            return value
        }
        return ProcessInfo.processInfo.activeProcessorCount + 1
    }()

    public var isRecursive: Bool { true }

    public func provideScope(
        for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void
    ) async throws {
        // The suite's own scope, or a test already inside a slot: nothing more to take.
        guard testCase != nil, !Self.holdsSlot else {
            try await function()
            return
        }
        // A test whose time limit ran out while it waited is cancelled: it gives the slot back and does not run.
        try await Self.semaphore.acquire()
        if Task.isCancelled {
            await Self.semaphore.release()
            throw CancellationError()
        }
        do {
            try await Self.$holdsSlot.withValue(true) { try await function() }
        } catch {
            await Self.semaphore.release()
            throw error
        }
        await Self.semaphore.release()
    }

    @TaskLocal private static var holdsSlot = false
    private static let semaphore = Semaphore(slots)

    /// A counting semaphore whose waiters suspend, first come first served; a cancelled waiter leaves the queue.
    private actor Semaphore {
        private var free: Int
        private var waiters: [(id: UInt64, continuation: CheckedContinuation<Void, any Error>)] = []
        private var nextID: UInt64 = 0

        init(_ count: Int) { free = count }

        func acquire() async throws {
            if free > 0 {
                free -= 1
                return
            }
            nextID += 1
            let id = nextID
            try await withTaskCancellationHandler {
                try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                    if Task.isCancelled {
                        continuation.resume(throwing: CancellationError())
                    } else {
                        waiters.append((id, continuation))
                    }
                }
            } onCancel: {
                Task { await self.cancel(id) }
            }
        }

        /// Takes a waiter out of the queue; one already given the slot keeps it (its caller sees the cancellation).
        private func cancel(_ id: UInt64) {
            guard let index = waiters.firstIndex(where: { $0.id == id }) else { return }
            waiters.remove(at: index).continuation.resume(throwing: CancellationError())
        }

        func release() {
            if waiters.isEmpty {
                free += 1
            } else {
                waiters.removeFirst().continuation.resume()
            }
        }
    }
}

extension Trait where Self == HeavyTest {
    /// Runs the test, or every test of the suite, within a few at a time (see ``HeavyTest``).
    public static var heavy: Self { HeavyTest() }
}
