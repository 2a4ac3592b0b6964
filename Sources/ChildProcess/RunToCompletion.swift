import Foundation
import Subprocess

#if canImport(System)
    import System
#else
    import SystemPackage
#endif

extension ChildProcess {
    /// What a program run to completion wrote and how it ended.
    public struct Completed: Sendable {
        public var exit: Exit
        public var stdout: String
        public var stderr: String
    }

    /// Runs `executable` to completion with this process's environment plus `environment` and no standard input,
    /// collecting its standard output and error (up to `outputLimit` bytes each). It suspends while the program
    /// runs. Past `timeout` it is stopped (SIGTERM, `grace`, SIGKILL) and `ChildProcessError` is thrown.
    public static func run(
        executable: String, arguments: [String], environment: [String: String?] = [:], timeout: Duration,
        grace: Duration = .milliseconds(500), outputLimit: Int = 64 << 20
    ) async throws -> Completed {
        let command = ([executable] + arguments).joined(separator: " ")
        return try await withThrowingTaskGroup(of: Completed?.self) { group in
            group.addTask {
                let result = try await Subprocess.run(
                    .path(FilePath(executable)), arguments: Arguments(arguments),
                    environment: ChildProcess.inherited(plus: environment), platformOptions: ChildProcess.stopping(grace: grace), input: .none,
                    output: .string(limit: outputLimit), error: .string(limit: outputLimit))
                return Completed(exit: Exit(result.terminationStatus), stdout: result.standardOutput, stderr: result.standardError)
            }
            group.addTask {
                try await Task.sleep(for: timeout)
                return nil
            }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let completed = first else {
                throw ChildProcessError("\(command) did not finish in \(timeout)")
            }
            return completed
        }
    }
}

extension ChildProcess {
    /// This process's environment plus `overrides` (a nil value removes a name).
    static func inherited(plus overrides: [String: String?]) -> Subprocess.Environment {
        var keyed: [Subprocess.Environment.Key: String?] = [:]
        for (key, value) in overrides {
            guard let key = Subprocess.Environment.Key(rawValue: key) else { continue }
            keyed[key] = value
        }
        return .inherit.updating(keyed)
    }

    /// Options whose teardown, when the running task is cancelled, is SIGTERM, `grace`, then SIGKILL.
    static func stopping(grace: Duration) -> PlatformOptions {
        var options = PlatformOptions()
        options.teardownSequence = [.gracefulShutDown(allowedDurationToNextStep: grace)]
        return options
    }
}

extension ChildProcess.Exit {
    init(_ status: TerminationStatus) {
        switch status {
        case .exited(let code): self.init(code: Int32(code))
        case .signaled(let signal): self.init(signal: Int32(signal))
        }
    }
}
