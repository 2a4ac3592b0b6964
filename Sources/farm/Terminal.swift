import FarmCoordinator
import Foundation

/// Live progress on a terminal (one redrawn line), plain lines otherwise.
final class ProgressDisplay: @unchecked Sendable {
    private let interactive: Bool
    private let lock = NSLock()
    private var lastLine = ""
    private var lastPrinted = Date.distantPast
    private var drawn = false

    init(interactive: Bool) { self.interactive = interactive }

    func show(_ status: JobStatus) {
        let done = status.segments.filter { $0.state == "done" }.count
        let eta =
            status.etaSeconds.flatMap { $0.isFinite && $0 >= 0 && $0 < 1e9 ? Int($0) : nil }
            .map { String(format: "%d:%02d", $0 / 60, $0 % 60) } ?? "--:--"
        let line = String(
            format: "%@ %3.0f%%  segments %d/%d  %.0f fps  ETA %@", status.phase, status.progress * 100, done,
            status.segments.count, status.fps, eta)
        lock.lock()
        defer { lock.unlock() }
        if interactive {
            FileHandle.standardError.write(Data("\r\u{1B}[K\(line)".utf8))
            drawn = true
        } else if line != lastLine, Date().timeIntervalSince(lastPrinted) >= 5 || status.state.isFinished {
            FileHandle.standardError.write(Data("progress: \(line)\n".utf8))
            lastPrinted = Date()
        }
        lastLine = line
    }

    func finish() {
        lock.lock()
        defer { lock.unlock() }
        if interactive, drawn { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
    }
}

extension NSLock {
    /// A value behind a lock.
    final class Protected<Value>: @unchecked Sendable {
        private let lock = NSLock()
        private var value: Value
        init(_ value: Value) { self.value = value }
        func withLock<R>(_ body: (inout Value) -> R) -> R {
            lock.lock()
            defer { lock.unlock() }
            return body(&value)
        }
    }
}

/// Calls `handler` on the first of the given signals (the default action is suspended meanwhile).
final class SignalWatcher: @unchecked Sendable {
    private var sources: [any DispatchSourceSignal] = []
    private let seen = NSLock.Protected(false)

    init(signals: [Int32], handler: @escaping @Sendable () -> Void) {
        for sig in signals {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler { [weak self] in
                guard let self else { return }
                // The first signal asks for a clean stop; a second one does not wait for it.
                if self.seen.withLock({ seen in defer { seen = true }; return seen }) { _exit(128 + sig) }
                handler()
            }
            source.resume()
            sources.append(source)
        }
    }

    func stop() {
        for source in sources { source.cancel() }
    }
}
