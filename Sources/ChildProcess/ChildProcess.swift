import Foundation
import Subprocess
import Synchronization

#if canImport(System)
    import System
#else
    import SystemPackage
#endif

/// A program started in the background through swift-subprocess: its exit is awaited (on Linux 5.4 and later
/// through a pidfd and epoll, no polling), its standard output and error go straight to a log file (the child
/// never waits on this process to drain a pipe), and `stop` ends it with SIGTERM, a grace period, then SIGKILL.
///
/// swift-subprocess scopes a process to a `run` call; here that call runs in a task of its own and hands the
/// exit to every waiter. Signals go with kill(2) only while the exit has not been seen.
public final class ChildProcess: Sendable {
    /// How a child ended.
    public struct Exit: Sendable, Equatable, CustomStringConvertible {
        /// The exit code when it exited by itself.
        public var code: Int32?
        /// The signal that ended it otherwise.
        public var signal: Int32?

        public init(code: Int32? = nil, signal: Int32? = nil) {
            self.code = code
            self.signal = signal
        }

        public var succeeded: Bool { code == 0 }
        public var description: String {
            if let code { return "exited with status \(code)" }
            return "ended by signal \(signal ?? 0)"
        }
        /// The status a shell would report: the code, or 128 + the signal.
        public var status: Int32 { code ?? 128 + (signal ?? 0) }
    }

    fileprivate struct State {
        var started: CheckedContinuation<(Int32, Bool), any Error>?
        var exit: Exit?
        var waiters: [Int: CheckedContinuation<Exit?, Never>] = [:]
        var nextWaiter = 0
    }

    /// The state the running task and the handle share.
    private final class Shared: Sendable {
        let state = Mutex(State())

        func withLock<R>(_ body: (inout State) -> R) -> R { state.withLock { body(&$0) } }

        func takeStarted() -> CheckedContinuation<(Int32, Bool), any Error>? {
            withLock { state in
                defer { state.started = nil }
                return state.started
            }
        }
    }

    /// The name in messages (`node-0`, `coordinator`).
    public let name: String
    /// The process id; valid while `isRunning`.
    public let pid: Int32
    /// Where its standard output and error go.
    public let log: String
    /// Whether swift-subprocess got a pidfd for it (Linux 5.4 and later): then the exit is waited for on that
    /// descriptor with epoll; otherwise through a SIGCHLD handler.
    public let hasProcessDescriptor: Bool
    private let state: Shared

    private init(name: String, pid: Int32, log: String, hasProcessDescriptor: Bool, state: Shared) {
        self.name = name
        self.pid = pid
        self.log = log
        self.hasProcessDescriptor = hasProcessDescriptor
        self.state = state
    }

    /// Starts `executable` with this process's environment plus `environment` (a nil value removes a name), no
    /// standard input, and its standard output and error appended to `log`. `grace` is the time between SIGTERM
    /// and SIGKILL should the task that runs it be cancelled (the process exiting with this one, say).
    public static func start(
        name: String, executable: String, arguments: [String], environment: [String: String?] = [:], log: String,
        grace: Duration = .seconds(10)
    ) async throws -> ChildProcess {
        if !FileManager.default.fileExists(atPath: log) { _ = FileManager.default.createFile(atPath: log, contents: nil) }
        let descriptor: FileDescriptor
        do {
            descriptor = try FileDescriptor.open(
                FilePath(log), .writeOnly, options: [.append, .closeOnExec], retryOnInterrupt: true)
        } catch {
            throw ChildProcessError("\(name): cannot write its log \(log): \(error)")
        }
        let state = Shared()
        let (pid, hasProcessDescriptor): (Int32, Bool) = try await withCheckedThrowingContinuation { continuation in
            state.withLock { $0.started = continuation }
            Task {
                var exit = Exit(signal: SIGKILL)
                do {
                    // Both streams to the one descriptor, which swift-subprocess closes once the child has it.
                    let result = try await Subprocess.run(
                        .path(FilePath(executable)), arguments: Arguments(arguments),
                        environment: ChildProcess.inherited(plus: environment),
                        platformOptions: ChildProcess.stopping(grace: grace), input: .none,
                        output: .fileDescriptor(descriptor, closeAfterSpawningProcess: true), error: .combinedWithOutput
                    ) { execution in
                        let id = execution.processIdentifier
                        state.takeStarted()?.resume(returning: (id.value, id.processDescriptor >= 0))
                    }
                    exit = Exit(result.terminationStatus)
                } catch {
                    // swift-subprocess has closed the log's descriptor on this path too.
                    if let started = state.takeStarted() {
                        started.resume(throwing: ChildProcessError("\(name): cannot start \(executable): \(error)"))
                        return
                    }
                }
                let waiters = state.withLock { state in
                    state.exit = exit
                    defer { state.waiters = [:] }
                    return state.waiters.values
                }
                for waiter in waiters { waiter.resume(returning: exit) }
            }
        }
        return ChildProcess(name: name, pid: pid, log: log, hasProcessDescriptor: hasProcessDescriptor, state: state)
    }

    /// Whether its exit has not been seen yet.
    public var isRunning: Bool { state.withLock { $0.exit == nil } }

    /// How it ended, nil while it runs.
    public var exit: Exit? { state.withLock { $0.exit } }

    /// The last `count` lines of its log.
    public func lastLines(_ count: Int = 20) -> [String] {
        guard let handle = FileHandle(forReadingAtPath: log) else { return [] }
        defer { try? handle.close() }
        let size = (try? handle.seekToEnd()) ?? 0
        let start = size > 64 << 10 ? size - (64 << 10) : 0
        try? handle.seek(toOffset: start)
        let text = String(decoding: (try? handle.readToEnd()) ?? Data(), as: UTF8.self)
        var lines = text.split(separator: "\n").map(String.init)
        // A read that began inside a line drops that partial line.
        if start > 0, !lines.isEmpty { lines.removeFirst() }
        return Array(lines.suffix(count))
    }

    /// Suspends until it exits, also in a cancelled task.
    public func wait() async -> Exit {
        if let exit { return exit }
        return await Task { await self.exitUnlessCancelled() ?? Exit(signal: SIGKILL) }.value
    }

    /// Suspends until it exits or the task is cancelled (nil then).
    public func exitUnlessCancelled() async -> Exit? {
        let id = state.withLock { state in
            defer { state.nextWaiter += 1 }
            return state.nextWaiter
        }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Exit?, Never>) in
                let now = state.withLock { state -> Exit?? in
                    if let exit = state.exit { return .some(exit) }
                    if Task.isCancelled { return .some(nil) }
                    state.waiters[id] = continuation
                    return .none
                }
                if let now { continuation.resume(returning: now) }
            }
        } onCancel: {
            state.withLock { $0.waiters.removeValue(forKey: id) }?.resume(returning: nil)
        }
    }

    /// Waits up to `timeout` for it to exit; nil when it still runs (or the task is cancelled).
    public func wait(timeout: Duration) async -> Exit? {
        await withTaskGroup(of: Exit?.self) { group in
            group.addTask { await self.exitUnlessCancelled() }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first ?? self.exit
        }
    }

    /// The first line of its log that contains `text`, waiting up to `timeout` for it; nil when it exits (or the
    /// time passes) without writing one. The log is read again every 50 ms until then.
    public func line(containing text: String, timeout: Duration) async -> String? {
        let deadline = ContinuousClock.now + timeout
        while true {
            let running = isRunning
            let content = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            if let line = content.split(separator: "\n").first(where: { $0.contains(text) }) { return String(line) }
            guard running, ContinuousClock.now < deadline, !Task.isCancelled else { return nil }
            try? await Task.sleep(for: .milliseconds(50))
        }
    }

    /// Sends `signal`, from any thread, without the concurrency pool. Nothing is sent once its exit has been seen:
    /// the pid may belong to another process by then. (Between the kernel reaping it and this handle seeing the
    /// exit there are microseconds, and Linux hands out pids in turn, so a reused pid in that gap is not a
    /// practical risk.)
    public func send(_ signal: Int32) {
        state.withLock { state in
            if state.exit == nil { _ = kill(pid, signal) }
        }
    }

    /// SIGTERM, up to `grace` for it to exit, then SIGKILL; returns how it ended.
    @discardableResult
    public func stop(grace: Duration = .seconds(10)) async -> Exit {
        if let exit { return exit }
        send(SIGTERM)
        if let exit = await Task(operation: { await self.wait(timeout: grace) }).value { return exit }
        send(SIGKILL)
        return await wait()
    }
}

extension Collection where Element == ChildProcess {
    /// Stops every child at once (SIGTERM to all, then one grace period, then SIGKILL).
    public func stopAll(grace: Duration = .seconds(10)) async {
        await withTaskGroup(of: Void.self) { group in
            for child in self { group.addTask { await child.stop(grace: grace) } }
        }
    }
}

/// A child that could not be started, or whose log cannot be written.
public struct ChildProcessError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
