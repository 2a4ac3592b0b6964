internal import FarmHWEncode
internal import FarmMedia
internal import Foundation
internal import Synchronization

/// `GET /validate-system`: what this coordinator needs to do its work, checked now.
struct SystemValidation: Encodable {
    struct Check: Encodable {
        enum Status: String, Encodable { case ok, warning, failed, skipped }
        var name: String
        var status: Status
        var detail: String
    }

    var ok: Bool
    var failed: [String]
    var checks: [Check]

    /// Runs every check; FFmpeg and the hardware probe run on threads of their own.
    static func run(
        coordinator: Coordinator, configuration: HTTPConfiguration, probe: ProbeCache
    ) async -> SystemValidation {
        var checks: [Check] = []
        checks.append(await encoders())
        checks.append(await probe.check())
        let dataDirectory = await coordinator.dataDirectory
        checks.append(disk(dataDirectory, minimum: configuration.minimumFreeBytes))
        checks.append(writable("data_dir", dataDirectory))
        checks.append(writable("output_dir", configuration.outputDirectory))
        switch await coordinator.databaseCheck() {
        case nil: checks.append(Check(name: "database", status: .skipped, detail: "the job store is not open yet"))
        case .success(let detail): checks.append(Check(name: "database", status: .ok, detail: detail))
        case .failure(let error): checks.append(Check(name: "database", status: .failed, detail: "\(error)"))
        }
        let nodes = await coordinator.connectedNodes()
        let slots = nodes.reduce(0) { $0 + $1.slots }
        checks.append(
            nodes.isEmpty
                ? Check(name: "nodes", status: .warning, detail: "0 nodes connected: jobs wait until a node joins")
                : Check(name: "nodes", status: .ok, detail: "\(nodes.count) node\(nodes.count == 1 ? "" : "s") connected, \(slots) slots"))
        let failed = checks.filter { $0.status == .failed }.map(\.name)
        return SystemValidation(ok: failed.isEmpty, failed: failed, checks: checks)
    }

    /// libavcodec is linked and has a software encoder for each codec; H.264 is required.
    static func encoders() async -> Check {
        do {
            let found = try await Offload.run("validate encoders") { _ in
                VideoCodec.allCases.map { ($0, EncoderCatalog.softwareEncoder(for: $0)) }
            }
            let present = found.compactMap { codec, encoder in encoder.map { "\(codec.rawValue)=\($0)" } }
            let missing = found.filter { $0.1 == nil }.map(\.0.rawValue)
            if missing.contains(VideoCodec.h264.rawValue) {
                return Check(name: "ffmpeg", status: .failed, detail: "libavcodec has no H.264 encoder (libx264)")
            }
            let detail =
                "libavcodec encoders: \(present.joined(separator: ", "))"
                + (missing.isEmpty ? "" : "; none for \(missing.joined(separator: ", "))")
            return Check(name: "ffmpeg", status: missing.isEmpty ? .ok : .warning, detail: detail)
        } catch {
            return Check(name: "ffmpeg", status: .failed, detail: "\(error)")
        }
    }

    /// Free space in the data directory (statvfs).
    static func disk(_ directory: String, minimum: UInt64) -> Check {
        var stats = statvfs()
        guard statvfs(directory, &stats) == 0 else {
            return Check(name: "disk", status: .failed, detail: "\(directory): \(String(cString: strerror(errno)))")
        }
        let free = UInt64(stats.f_bavail) * UInt64(stats.f_frsize)
        let text = "\(formatBytes(free)) free in \(directory)"
        return free < minimum
            ? Check(name: "disk", status: .failed, detail: "\(text), under the \(formatBytes(minimum)) minimum")
            : Check(name: "disk", status: .ok, detail: text)
    }

    /// The directory exists (it is created if missing) and a file can be written in it.
    static func writable(_ name: String, _ directory: String) -> Check {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            let probe = "\(directory)/.farm-write-check-\(UUID().uuidString.prefix(8))"
            guard FileManager.default.createFile(atPath: probe, contents: Data("ok".utf8)) else {
                return Check(name: name, status: .failed, detail: "\(directory): cannot create a file")
            }
            unlink(probe)
            return Check(name: name, status: .ok, detail: "\(directory) is writable")
        } catch {
            return Check(name: name, status: .failed, detail: "\(directory): \(error.localizedDescription)")
        }
    }

    static func formatBytes(_ bytes: UInt64) -> String {
        let gib = Double(bytes) / Double(1 << 30)
        return gib >= 1 ? String(format: "%.1f GiB", gib) : String(format: "%.0f MiB", Double(bytes) / Double(1 << 20))
    }
}

/// The hardware probe takes seconds and the hardware does not change while the process runs:
/// it runs once, on a thread of its own, and its summary is kept.
final class ProbeCache: Sendable {
    private let report = Mutex<CapabilityReport?>(nil)
    let timeout: Duration

    init(timeout: Duration = .seconds(5)) {
        self.timeout = timeout
    }

    func check() async -> SystemValidation.Check {
        let report: CapabilityReport
        if let cached = self.report.withLock({ $0 }) {
            report = cached
        } else {
            let timeout = self.timeout
            do {
                report = try await Offload.run("validate probe") { _ in HardwareProbe.run(timeout: timeout) }
            } catch {
                return .init(name: "hardware", status: .failed, detail: "the hardware probe did not run: \(error)")
            }
            if !report.timedOut { self.report.withLock { $0 = report } }
        }
        return Self.summary(report)
    }

    static func summary(_ report: CapabilityReport) -> SystemValidation.Check {
        let hardware = report.encoders.filter { $0.available && $0.kind != "software" }.map(\.name)
        var parts = [
            "\(report.cpuCount) CPUs", "\(SystemValidation.formatBytes(report.memoryBytes)) memory",
            "\(report.vaapiDevices.count) VA-API device\(report.vaapiDevices.count == 1 ? "" : "s")",
            hardware.isEmpty ? "no hardware encoders" : "hardware encoders: \(hardware.joined(separator: ", "))",
        ]
        if let reason = report.vaapiUnavailable, hardware.isEmpty { parts.append("(\(reason))") }
        if report.timedOut { parts.append("probe timed out after \(String(format: "%.1f", report.probeSeconds)) s") }
        return .init(name: "hardware", status: report.timedOut ? .warning : .ok, detail: parts.joined(separator: "; "))
    }
}
