internal import Synchronization

#if canImport(Glibc)
    internal import Glibc
    internal import CFFmpeg
#endif

/// A flag that blocking work polls to stop early; set from any thread.
public final class CancellationFlag: Sendable {
    private let flag = Atomic<Bool>(false)

    public init() {}

    public func cancel() { flag.store(true, ordering: .relaxed) }
    public var isCancelled: Bool { flag.load(ordering: .relaxed) }
}

/// Runs blocking work, FFmpeg calls above all, on a thread of its own so that neither an event loop
/// nor the cooperative pool ever waits on it. Task cancellation sets the flag the work polls.
public enum Offload {
    public static func run<T: Sendable>(
        _ name: String, _ body: @escaping @Sendable (CancellationFlag) throws -> T
    ) async throws -> T {
        let flag = CancellationFlag()
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
                let box = Unmanaged.passRetained(
                    ThreadBody {
                        continuation.resume(with: Result { try body(flag) })
                    })
                var attributes = pthread_attr_t()
                pthread_attr_init(&attributes)
                pthread_attr_setstacksize(&attributes, 8 << 20)
                pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
                var thread = pthread_t()
                let created = pthread_create(&thread, &attributes, { raw in
                    let body = Unmanaged<ThreadBody>.fromOpaque(raw!).takeRetainedValue()
                    body.run()
                    return nil
                }, box.toOpaque())
                pthread_attr_destroy(&attributes)
                if created != 0 {
                    box.release()
                    continuation.resume(throwing: MediaError(.io, "\(name): cannot start a thread (error \(created))"))
                }
            }
        } onCancel: {
            flag.cancel()
        }
    }
}

private final class ThreadBody: @unchecked Sendable {
    let run: () -> Void
    init(_ run: @escaping () -> Void) { self.run = run }
}

extension Duration {
    /// The duration in seconds, for reports and the scheduler's clock (never for media timestamps).
    package var seconds: Double {
        let c = components
        return Double(c.seconds) + Double(c.attoseconds) / 1e18
    }
}
