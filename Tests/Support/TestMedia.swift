import Foundation

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
    @discardableResult
    public static func run(_ executable: String, _ arguments: [String], environment: [String: String]? = nil) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable.hasPrefix("/") ? executable : "/usr/bin/env")
        process.arguments = executable.hasPrefix("/") ? arguments : [executable] + arguments
        if let environment { process.environment = environment }
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        // Read both pipes to the end before waiting, so a chatty child cannot block on a full pipe.
        nonisolated(unsafe) var errData = Data()
        let errThread = Thread { errData = err.fileHandleForReading.readDataToEndOfFile() }
        errThread.start()
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        while errThread.isExecuting || !errThread.isFinished { usleep(1000) }
        let stdout = String(decoding: outData, as: UTF8.self)
        guard process.terminationStatus == 0 else {
            throw TestFailure(
                "\(executable) \(arguments.joined(separator: " ")) exited \(process.terminationStatus): \(String(decoding: errData, as: UTF8.self).suffix(2000))")
        }
        return stdout
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
    public static func run(_ arguments: [String], environment: [String: String] = [:], timeout: Double = 120) throws -> Result {
        try execute(path, arguments, environment: environment, timeout: timeout)
    }

    public static func execute(_ executable: String, _ arguments: [String], environment: [String: String] = [:], timeout: Double) throws -> Result {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        process.environment = env
        let dir = FileManager.default.temporaryDirectory
        let outURL = dir.appendingPathComponent("farm-out-\(UUID().uuidString)")
        let errURL = dir.appendingPathComponent("farm-err-\(UUID().uuidString)")
        FileManager.default.createFile(atPath: outURL.path, contents: nil)
        FileManager.default.createFile(atPath: errURL.path, contents: nil)
        defer {
            try? FileManager.default.removeItem(at: outURL)
            try? FileManager.default.removeItem(at: errURL)
        }
        process.standardOutput = try FileHandle(forWritingTo: outURL)
        process.standardError = try FileHandle(forWritingTo: errURL)
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning, Date() < deadline { usleep(20_000) }
        if process.isRunning {
            process.terminate()
            usleep(500_000)
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
            throw TestFailure("\(executable) \(arguments.joined(separator: " ")) did not finish in \(timeout) s")
        }
        process.waitUntilExit()
        return Result(
            status: process.terminationStatus,
            stdout: (try? String(contentsOf: outURL, encoding: .utf8)) ?? "",
            stderr: (try? String(contentsOf: errURL, encoding: .utf8)) ?? "")
    }

    /// Starts `farm` in the background (a coordinator or a node); the caller terminates it.
    public static func start(_ arguments: [String], environment: [String: String] = [:], log: String) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        process.environment = env
        FileManager.default.createFile(atPath: log, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        process.standardOutput = handle
        process.standardError = handle
        process.standardInput = FileHandle.nullDevice
        try process.run()
        return process
    }

    /// Waits until `condition` holds or `timeout` passes.
    public static func waitUntil(timeout: Double, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if condition() { return true }
            usleep(50_000)
        }
        return condition()
    }
}
