import FarmChildProcess
import FarmCoordinator
import FarmMedia
import FarmProtocol
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// The farm that `farm capacity --embedded` measures: `farm coordinator --tier T` and the tier's render
/// node (`farm node --tier T`) as child processes on loopback, pinned to the tier's CPU count.
///
/// A tier is one render node of `tier.cpu` cores (the Akash SDL runs one replica) and a coordinator lease
/// of `tier.coordinatorCPU` cores. The node gets the first `tier.cpu` cores this process may use; the
/// coordinator gets the next `tier.coordinatorCPU` when the machine has them and shares the node's cores
/// otherwise. Affinity is set with `sched_setaffinity` on every thread of each child, again at every
/// sample, so threads a child starts later are confined too.
final class CapacityFarm: @unchecked Sendable {
    struct Child {
        var name: String
        var process: ChildProcess
        var cores: [Int]
        var log: String
    }

    let directory: URL
    let sourceRoot: String
    private(set) var httpPort = 0
    /// The API token the embedded coordinator requires (it is made for the run).
    let apiToken = EmbeddedFarm.randomToken()
    private(set) var children: [Child] = []
    let confinement: CapacityReport.Confinement
    private var lastCPU: [String: (Double, ContinuousClock.Instant)] = [:]

    private init(directory: URL, sourceRoot: String, confinement: CapacityReport.Confinement) {
        self.directory = directory
        self.sourceRoot = sourceRoot
        self.confinement = confinement
    }

    var baseURL: URL { URL(string: "http://127.0.0.1:\(httpPort)")! }

    /// Plans the cores, starts the coordinator and the node, and waits until the node has joined.
    static func start(tier: Tier, executable: String, directory: URL, sourceRoot: String) async throws -> CapacityFarm {
        let allowed = CPUAffinity.allowedCores()
        let nodeCores = Array(allowed.prefix(tier.cpu))
        let coordinatorCores: [Int]
        if allowed.count >= tier.cpu + tier.coordinatorCPU {
            coordinatorCores = Array(allowed.dropFirst(tier.cpu).prefix(tier.coordinatorCPU))
        } else {
            coordinatorCores = nodeCores
        }
        var notes: [String] = []
        let confined = allowed.count >= tier.cpu
        if !confined {
            notes.append(
                "this machine lets farm use \(allowed.count) cores and the \(tier.rawValue) tier has \(tier.cpu): "
                    + "the node ran on \(allowed.count), so the figures understate the tier")
        }
        if coordinatorCores == nodeCores {
            notes.append(
                "the coordinator shared the node's cores (the tier gives it \(tier.coordinatorCPU) of its own, "
                    + "which this machine does not have beside the node's)")
        }
        let confinement = CapacityReport.Confinement(
            tierCPU: tier.cpu, machineCPUs: allowed.count, nodeCores: nodeCores, coordinatorCores: coordinatorCores,
            confined: confined, notes: notes)

        let farm = CapacityFarm(directory: directory, sourceRoot: sourceRoot, confinement: confinement)
        let environment = ["FARM_JOIN_TOKEN": EmbeddedFarm.randomToken(), "FARM_API_TOKEN": farm.apiToken]
        let data = directory.appendingPathComponent("data").path
        do {
            // Both ports are the system's choice, read back from the coordinator's log lines.
            let coordinator = try await farm.launch(
                "coordinator", executable: executable,
                arguments: [
                    "coordinator", "--tier", tier.rawValue, "--http", "127.0.0.1:0", "--node-listen", "127.0.0.1:0",
                    "--data-dir", data, "--source-root", sourceRoot,
                ], environment: environment, cores: coordinatorCores)
            async let nodeLine = coordinator.line(containing: "coordinator listening for nodes", timeout: .seconds(60))
            async let httpLine = coordinator.line(containing: "http listening", timeout: .seconds(60))
            guard let nodePort = await nodeLine.flatMap(Self.port(in:)), let httpPort = await httpLine.flatMap(Self.port(in:))
            else {
                throw CapacityError("the coordinator did not start: \(farm.logTail("coordinator"))")
            }
            farm.httpPort = httpPort
            _ = try await farm.launch(
                "node-0", executable: executable,
                arguments: [
                    "node", "--tier", tier.rawValue, "--coordinator", "127.0.0.1:\(nodePort)", "--node-id", "node-0",
                    "--work-dir", directory.appendingPathComponent("node-0").path, "--exit-on-disconnect",
                ], environment: environment, cores: nodeCores)
        } catch {
            await farm.stop()
            throw error
        }
        return farm
    }

    /// The port in `address=HOST:PORT` on a log line.
    static func port(in line: String) -> Int? {
        guard let range = line.range(of: #"address=[^ ]*:(\d+)"#, options: .regularExpression) else { return nil }
        return Int(line[range].split(separator: ":").last ?? "")
    }

    private func launch(_ name: String, executable: String, arguments: [String], environment: [String: String], cores: [Int])
        async throws -> ChildProcess
    {
        let log = directory.appendingPathComponent("\(name).log").path
        let process = try await ChildProcess.start(
            name: name, executable: executable, arguments: arguments, environment: environment, log: log)
        children.append(Child(name: name, process: process, cores: cores, log: log))
        CPUAffinity.confine(pid: process.pid, to: cores)
        return process
    }

    /// The last lines of a child's log, for an error message.
    func logTail(_ name: String) -> String {
        guard let child = children.first(where: { $0.name == name }) else { return "" }
        return child.process.lastLines(3).joined(separator: " | ")
    }

    /// The first child that is no longer running, if any.
    var exitedChild: Child? { children.first { !$0.process.isRunning } }

    /// Re-applies affinity to every thread of every child (threads started since the last call included).
    func reconfine() {
        for child in children where child.process.isRunning {
            CPUAffinity.confine(pid: child.process.pid, to: child.cores)
        }
    }

    /// Memory and CPU of each child now: resident and peak resident MB, CPU seconds and the CPU share since
    /// the previous sample (1.0 = one core busy).
    func sample() -> [String: ProcessSample] {
        var result: [String: ProcessSample] = [:]
        let now = ContinuousClock.now
        for child in children {
            guard child.process.isRunning, let sample = ProcessSample.read(pid: child.process.pid) else { continue }
            var s = sample
            if let (cpu, then) = lastCPU[child.name] {
                let elapsed = (now - then).seconds
                s.cores = elapsed > 0 ? max(sample.cpuSeconds - cpu, 0) / elapsed : 0
            }
            lastCPU[child.name] = (sample.cpuSeconds, now)
            result[child.name] = s
        }
        return result
    }

    /// Asks the children to stop (SIGTERM: the node drains, the coordinator shuts down), the node first, waits up
    /// to `timeout` for each, then kills what is left.
    func stop(timeout: Duration = .seconds(10)) async {
        await children.reversed().map(\.process).stopAll(grace: timeout)
    }
}

/// One reading of a process from /proc.
struct ProcessSample: Sendable {
    var rssMB: Double
    var peakRSSMB: Double
    var cpuSeconds: Double
    /// CPU share since the previous reading, in cores (1.0 = one core busy the whole time).
    var cores: Double = 0

    /// Reads /proc/PID/status (VmRSS, VmHWM) and /proc/PID/stat (utime + stime).
    static func read(pid: Int32) -> ProcessSample? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
            let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)
        else { return nil }
        func kilobytes(_ key: String) -> Double? {
            guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix(key + ":") }) else { return nil }
            return line.split(separator: " ").dropFirst().first.flatMap { Double($0) }
        }
        // The command name in parentheses may hold spaces: fields are counted after the last ')'.
        guard let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        return ProcessSample(
            rssMB: (kilobytes("VmRSS") ?? 0) / 1024, peakRSSMB: (kilobytes("VmHWM") ?? 0) / 1024,
            cpuSeconds: (user + system) / max(ticks, 1))
    }
}

/// CPU affinity of processes, through sched_getaffinity / sched_setaffinity.
///
/// Glibc declares both only under _GNU_SOURCE, which Swift's Glibc module does not define; they are looked
/// up once with dlsym and called through C function pointers.
enum CPUAffinity {
    private typealias Call = @convention(c) (pid_t, Int, UnsafeMutableRawPointer?) -> Int32
    private static let functions: (get: Call, set: Call)? = {
        guard let handle = dlopen(nil, RTLD_NOW), let get = dlsym(handle, "sched_getaffinity"),
            let set = dlsym(handle, "sched_setaffinity")
        else { return nil }
        return (unsafeBitCast(get, to: Call.self), unsafeBitCast(set, to: Call.self))
    }()
    /// A CPU mask of 1024 bits, glibc's cpu_set_t.
    private static let maskBytes = 128

    /// The cores this process may run on, in order.
    static func allowedCores() -> [Int] {
        var mask = [UInt8](repeating: 0, count: maskBytes)
        let got = mask.withUnsafeMutableBytes { functions?.get(0, maskBytes, $0.baseAddress) ?? -1 }
        guard got == 0 else { return Array(0..<ProcessInfo.processInfo.activeProcessorCount) }
        return (0..<maskBytes * 8).filter { mask[$0 / 8] & UInt8(1 << ($0 % 8)) != 0 }
    }

    /// Pins every thread of `pid` to `cores` (threads inherit the mask of the thread that starts them).
    @discardableResult
    static func confine(pid: Int32, to cores: [Int]) -> Bool {
        guard let functions, !cores.isEmpty else { return false }
        var mask = [UInt8](repeating: 0, count: maskBytes)
        for core in cores where core / 8 < maskBytes { mask[core / 8] |= UInt8(1 << (core % 8)) }
        let threads =
            (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task"))?.compactMap { Int32($0) } ?? [pid]
        var ok = true
        for thread in threads {
            let result = mask.withUnsafeMutableBytes { functions.set(thread, maskBytes, $0.baseAddress) }
            // A thread that ended between the listing and the call is not a failure.
            if result != 0, errno != ESRCH { ok = false }
        }
        return ok
    }

    /// The cores a thread or process may run on now (for checks).
    static func cores(of pid: Int32) -> [Int] {
        var mask = [UInt8](repeating: 0, count: maskBytes)
        let got = mask.withUnsafeMutableBytes { functions?.get(pid, maskBytes, $0.baseAddress) ?? -1 }
        guard got == 0 else { return [] }
        return (0..<maskBytes * 8).filter { mask[$0 / 8] & UInt8(1 << ($0 % 8)) != 0 }
    }
}

/// A capacity run that cannot go on: one line naming what went wrong.
public struct CapacityError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
