import FarmChildProcess
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Child processes through swift-subprocess, with /bin/sh as the child: exits, signals, the SIGTERM-grace-SIGKILL
/// stop, the log and its last lines.
struct ChildProcessTests {
    static func temporaryLog() -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("child-\(UUID().uuidString.prefix(8)).log").path
    }

    @Test func anExitIsAwaitedWithItsCodeAndItsLastLines() async throws {
        let log = Self.temporaryLog()
        defer { try? FileManager.default.removeItem(atPath: log) }
        let child = try await ChildProcess.start(
            name: "sh", executable: "/bin/sh",
            arguments: ["-c", "echo first; echo \"farm: error: $REASON\" >&2; printf '  tried x: none'; exit 3"],
            environment: ["REASON": "no encoder"], log: log)
        let exit = await child.wait()
        #expect(exit == ChildProcess.Exit(code: 3))
        #expect(exit.status == 3)
        #expect(!child.isRunning)
        #expect(child.lastLines() == ["first", "farm: error: no encoder", "  tried x: none"])
        #expect(try String(contentsOfFile: log, encoding: .utf8) == "first\nfarm: error: no encoder\n  tried x: none")
        #if os(Linux)
            // Linux 5.4 and later: swift-subprocess waits on a pidfd (epoll), not on SIGCHLD.
            #expect(child.hasProcessDescriptor)
        #endif
    }

    @Test func stopIsSIGTERMThenSIGKILLAfterTheGracePeriod() async throws {
        // The child announces itself only once its SIGTERM trap is set.
        let log = Self.temporaryLog()
        defer { try? FileManager.default.removeItem(atPath: log) }
        let stubborn = try await ChildProcess.start(
            name: "stubborn", executable: "/bin/sh", arguments: ["-c", "trap '' TERM; echo ready; while :; do sleep 1; done"],
            log: log)
        #expect(await stubborn.line(containing: "ready", timeout: .seconds(30)) == "ready")
        #expect(await stubborn.stop(grace: .milliseconds(200)) == ChildProcess.Exit(signal: SIGKILL))

        let politeLog = Self.temporaryLog()
        defer { try? FileManager.default.removeItem(atPath: politeLog) }
        let polite = try await ChildProcess.start(
            name: "polite", executable: "/bin/sh",
            arguments: ["-c", "trap 'echo bye; exit 0' TERM; echo ready; while :; do sleep 1; done"], log: politeLog)
        #expect(await polite.line(containing: "ready", timeout: .seconds(30)) != nil)
        #expect(await polite.stop(grace: .seconds(30)) == ChildProcess.Exit(code: 0))
        #expect(polite.lastLines().last == "bye")
    }

    @Test func aLineThatNeverComesEndsTheWaitWhenTheChildExits() async throws {
        let log = Self.temporaryLog()
        defer { try? FileManager.default.removeItem(atPath: log) }
        let child = try await ChildProcess.start(name: "quiet", executable: "/bin/sh", arguments: ["-c", "echo other"], log: log)
        #expect(await child.line(containing: "listening", timeout: .seconds(600)) == nil)
        #expect(await child.wait().succeeded)
    }

    @Test func aProgramThatCannotStartIsAnErrorNamingIt() async throws {
        await #expect(throws: ChildProcessError.self) {
            _ = try await ChildProcess.start(
                name: "missing", executable: "/nonexistent/farm", arguments: [], log: Self.temporaryLog())
        }
    }

    @Test func runCollectsBothStreamsAndStopsAProgramPastItsTime() async throws {
        let done = try await ChildProcess.run(
            executable: "/bin/sh", arguments: ["-c", "echo out; echo err >&2; exit 1"], timeout: .seconds(60))
        #expect(done.exit.code == 1)
        #expect(done.stdout == "out\n")
        #expect(done.stderr == "err\n")
        await #expect(throws: ChildProcessError.self) {
            _ = try await ChildProcess.run(executable: "/bin/sh", arguments: ["-c", "sleep 600"], timeout: .milliseconds(300))
        }
    }
}
