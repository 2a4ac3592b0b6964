import FarmChildProcess
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Test clips made on the spot with the ffmpeg command (a test-only tool, never used by farm itself),
/// and ffprobe as the independent check of what farm wrote.
public enum TestMedia {
    /// A fresh temporary directory for one test.
    public static func temporaryDirectory(_ name: String = "farm-test") throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("\(name)-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    /// Runs a program to completion and returns its standard output; throws with its standard error on failure.
    /// A name without a slash is looked up on PATH.
    @discardableResult
    public static func run(_ executable: String, _ arguments: [String], environment: [String: String] = [:]) throws -> String {
        let absolute = executable.hasPrefix("/")
        let result = try FarmBinary.executeBlocking(
            absolute ? executable : "/usr/bin/env", absolute ? arguments : [executable] + arguments,
            environment: environment, timeout: 900)
        guard result.status == 0 else {
            throw TestFailure(
                "\(executable) \(arguments.joined(separator: " ")) exited \(result.status): \(result.stderr.suffix(2000))")
        }
        return result.stdout
    }

    /// Makes a clip with ffmpeg from libavfilter sources. `videoArgs` are the encoder arguments.
    public static func makeClip(
        at path: String, seconds: Double, size: String = "320x240", rate: String = "25", audio: Bool = true,
        videoArgs: [String] = ["-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-bf", "2"], extra: [String] = []
    ) throws {
        var args = ["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=\(size):rate=\(rate)"]
        if audio { args += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"] }
        args += ["-t", String(seconds)] + videoArgs
        if audio { args += ["-c:a", "aac", "-b:a", "64k"] }
        args += extra + [path]
        try run("ffmpeg", args)
    }

    /// Frame presentation times of the first video stream, as ffprobe reads them, in stream time base ticks.
    public static func frameTimes(_ path: String) throws -> [Int64] {
        let out = try run(
            "ffprobe", ["-v", "error", "-select_streams", "v:0", "-show_entries", "frame=pts", "-of", "csv=p=0", path])
        return out.split(whereSeparator: \.isNewline).compactMap { Int64($0.trimmingCharacters(in: .whitespaces).trimmingCharacters(in: CharacterSet(charactersIn: ","))) }
    }

    /// Frame presentation times in seconds (exact to the microsecond as ffprobe prints them).
    public static func frameSeconds(_ path: String) throws -> [String] {
        let out = try run(
            "ffprobe",
            ["-v", "error", "-select_streams", "v:0", "-show_entries", "frame=pts_time", "-of", "csv=p=0", path])
        return out.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: CharacterSet(charactersIn: ", ")) }
    }

    /// Frame times relative to the first frame, in microseconds.
    public static func relativeFrameTimes(_ path: String) throws -> [Int] {
        let times = try frameSeconds(path).compactMap { Double($0) }.map { Int(($0 * 1_000_000).rounded()) }
        guard let first = times.first else { return [] }
        return times.map { $0 - first }
    }

    /// Packet count of the first stream of a kind ("v:0", "a:0", ...).
    public static func packetCount(_ path: String, stream: String) throws -> Int {
        let out = try run(
            "ffprobe",
            ["-v", "error", "-select_streams", stream, "-count_packets", "-show_entries", "stream=nb_read_packets", "-of", "csv=p=0", path])
        return Int(out.trimmingCharacters(in: .whitespacesAndNewlines).trimmingCharacters(in: CharacterSet(charactersIn: ","))) ?? -1
    }

    /// One stream entry of ffprobe as key=value pairs.
    public static func streamInfo(_ path: String, stream: String, entries: String) throws -> [String: String] {
        let out = try run(
            "ffprobe", ["-v", "error", "-select_streams", stream, "-show_entries", "stream=\(entries):stream_tags:stream_side_data", "-of", "flat", path])
        var result: [String: String] = [:]
        for line in out.split(whereSeparator: \.isNewline) {
            guard let eq = line.firstIndex(of: "=") else { continue }
            let key = line[..<eq].split(separator: ".").last.map(String.init) ?? ""
            result[key] = line[line.index(after: eq)...].trimmingCharacters(in: CharacterSet(charactersIn: "\""))
        }
        return result
    }

    /// Decodes the whole file with ffmpeg, failing on any decode error.
    public static func decodesCleanly(_ path: String) throws {
        try run("ffmpeg", ["-v", "error", "-xerror", "-err_detect", "explode", "-i", path, "-f", "null", "-"])
    }
}

public struct TestFailure: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// The farm executable under test and a way to run it with a time limit.
public enum FarmBinary {
    /// FARM_BIN when set (the Makefile sets it), else the `farm` beside the test bundle.
    public static var path: String {
        if let path = ProcessInfo.processInfo.environment["FARM_BIN"], !path.isEmpty { return path }
        var url = Bundle.main.bundleURL
        while url.path != "/" {
            let candidate = url.appendingPathComponent("farm").path
            if FileManager.default.isExecutableFile(atPath: candidate), !candidate.hasSuffix(".xctest/farm") {
                return candidate
            }
            url.deleteLastPathComponent()
        }
        return ".build/debug/farm"
    }

    public struct Result {
        public var status: Int32
        public var stdout: String
        public var stderr: String
    }

    /// Runs `farm` with the arguments; kills it after `timeout` seconds (a hang is a failure, not a stuck suite).
    public static func run(_ arguments: [String], environment: [String: String] = [:], timeout: Double = 120) async throws -> Result {
        try await execute(path, arguments, environment: environment, timeout: timeout)
    }

    /// Runs a program to completion with a time limit (then SIGTERM, half a second, SIGKILL). It suspends while the
    /// program runs: Swift Testing runs the tests in parallel on the concurrency pool, which is only as wide as the
    /// machine has cores, and a test that blocked a thread of it for a whole render could starve every in-process test.
    public static func execute(_ executable: String, _ arguments: [String], environment: [String: String] = [:], timeout: Double) async throws -> Result {
        do {
            let completed = try await ChildProcess.run(
                executable: executable, arguments: arguments, environment: environment, timeout: .seconds(timeout))
            return Result(status: completed.exit.status, stdout: completed.stdout, stderr: completed.stderr)
        } catch let error as ChildProcessError {
            throw TestFailure(error.description)
        }
    }

    /// `execute` for code that cannot await (a static initializer, a `defer`, a synchronous ffmpeg call). It blocks
    /// its thread, so it is for commands that take well under a second (`ip`, `mount`, a python import check) and
    /// for the test media tools.
    public static func executeBlocking(_ executable: String, _ arguments: [String], environment: [String: String] = [:], timeout: Double) throws -> Result {
        let out = Pipe()
        let err = Pipe()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        let exited = DispatchSemaphore(value: 0)
        process.terminationHandler = { _ in exited.signal() }
        try process.run()
        // Both pipes are read to the end on threads of their own, so a chatty child cannot block on a full pipe.
        nonisolated(unsafe) var outData = Data()
        nonisolated(unsafe) var errData = Data()
        let read = DispatchGroup()
        for (pipe, isOut) in [(out, true), (err, false)] {
            read.enter()
            Thread {
                let data = pipe.fileHandleForReading.readDataToEndOfFile()
                if isOut { outData = data } else { errData = data }
                read.leave()
            }.start()
        }
        if exited.wait(timeout: .now() + timeout) == .timedOut {
            process.terminate()
            if exited.wait(timeout: .now() + 0.5) == .timedOut {
                Glibc.kill(process.processIdentifier, SIGKILL)
                exited.wait()
            }
            throw TestFailure("\(executable) \(arguments.joined(separator: " ")) did not finish in \(timeout) s")
        }
        read.wait()
        return Result(
            status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
            stderr: String(decoding: errData, as: UTF8.self))
    }

    /// Starts `farm` in the background (a coordinator or a node), its output in `log`; the caller stops it.
    public static func start(_ arguments: [String], environment: [String: String] = [:], log: String, name: String = "farm") async throws -> ChildProcess {
        try await ChildProcess.start(
            name: name, executable: path, arguments: arguments, environment: environment, log: log, grace: .seconds(30))
    }

    /// Waits until `condition` holds or `timeout` passes, suspending between checks.
    public static func waitUntil(timeout: Double, _ condition: () async -> Bool) async -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if await condition() { return true }
            await pause(.milliseconds(50))
        }
        return await condition()
    }

    /// Waits for `process` to exit; sends SIGKILL if it still runs after `timeout` seconds, and then waits for that.
    /// Returns whether it exited by itself.
    @discardableResult
    public static func waitForExit(_ process: ChildProcess, timeout: Double) async -> Bool {
        if await process.wait(timeout: .seconds(timeout)) != nil { return true }
        process.send(SIGKILL)
        _ = await process.wait()
        return false
    }

    /// Sends SIGKILL to `process` as soon as `condition` holds, or when `timeout` seconds pass, and waits for it to
    /// exit; returns whether `condition` held. For a kill that must land within a window (a run killed in the middle
    /// of its job): a thread of its own watches and kills, since a suspended test may get no thread of the
    /// concurrency pool back for seconds while other tests' synchronous work holds them all.
    public static func kill(_ process: ChildProcess, when condition: @escaping @Sendable () -> Bool, timeout: Double) async -> Bool {
        let held = await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
            Thread {
                let deadline = Date().addingTimeInterval(timeout)
                var held = condition()
                while !held, process.isRunning, Date() < deadline {
                    Thread.sleep(forTimeInterval: 0.05)
                    held = condition()
                }
                // A process whose exit was seen is not killed: its pid may belong to another one by now.
                process.send(SIGKILL)
                continuation.resume(returning: held)
            }.start()
        }
        await waitForExit(process, timeout: 10)
        return held
    }

    /// Ends processes a test started: SIGTERM to each that runs, then SIGKILL to any still running after `timeout`
    /// seconds; returns when all have exited.
    public static func stop(_ processes: [ChildProcess], timeout: Double = 30) async {
        await processes.stopAll(grace: .seconds(timeout))
    }

    /// Suspends for `duration`, also in a cancelled task (a test past its time limit still has processes to stop):
    /// a polling loop must neither spin nor hold a thread.
    static func pause(_ duration: Duration) async {
        if Task.isCancelled {
            // A detached task is not cancelled with its caller.
            await Task.detached { try? await Task.sleep(for: duration) }.value
        } else {
            try? await Task.sleep(for: duration)
        }
    }
}

/// Something a test starts that runs in processes of its own (a farm, a coordinator): `stopping(after:)` is the
/// cleanup a `defer` cannot do, since stopping a process means waiting for it.
public protocol ProcessFixture {
    /// Ends every process the fixture started, suspending while it waits for them.
    func stop() async
}

extension ProcessFixture {
    /// Runs `body`, then awaits `stop()` whether `body` returned or threw.
    public func stopping<T>(after body: () async throws -> T) async throws -> T {
        let result: T
        do {
            result = try await body()
        } catch {
            await stop()
            throw error
        }
        await stop()
        return result
    }
}

/// A process started by `FarmBinary.start`: `stopping(after:)` ends it (SIGTERM, SIGKILL after 30 s).
extension ChildProcess: ProcessFixture {
    public func stop() async { await FarmBinary.stop([self]) }
}
