internal import CFFmpeg
internal import FarmMedia
internal import Foundation

/// What a machine can encode with: its VA-API devices, every encoder tried (hardware and software)
/// with the reason it cannot be used, and the CPU and memory the process may use.
///
/// Made by `HardwareProbe.run`; a node sends it to the coordinator and `farm probe` prints it as JSON.
public struct CapabilityReport: Codable, Sendable, Equatable {
    /// One VA-API profile a device can encode, with its encode entrypoints.
    public struct VAAPIProfile: Codable, Sendable, Equatable {
        /// The profile without libva's prefix: "H264High", "HEVCMain10", "AV1Profile0", "VP9Profile0".
        public var name: String
        /// "h264", "hevc", "av1" or "vp9".
        public var codec: String
        /// Encode entrypoints without libva's prefix: "EncSlice" (shader/full) and "EncSliceLP" (low power).
        public var entrypoints: [String]

        public init(name: String, codec: String, entrypoints: [String]) {
            self.name = name
            self.codec = codec
            self.entrypoints = entrypoints
        }
    }

    /// One DRM render node and what its VA-API driver said about itself.
    public struct VAAPIDevice: Codable, Sendable, Equatable {
        /// The render node, e.g. "/dev/dri/renderD128".
        public var path: String
        /// The driver's vendor string (`vaQueryVendorString`).
        public var vendor: String?
        /// The VA-API version the driver implements, "major.minor" (from `vaInitialize`).
        public var apiVersion: String?
        /// The driver's own version, read from the vendor string where it carries one.
        public var driverVersion: String?
        /// The H.264, HEVC, AV1 and VP9 profiles with at least one encode entrypoint.
        public var profiles: [VAAPIProfile]
        /// The largest picture any of those encode configurations accepts, where the driver says.
        public var maxWidth: Int?
        public var maxHeight: Int?
        /// Why this device could not be used; nil when it initialised.
        public var error: String?

        public init(
            path: String, vendor: String? = nil, apiVersion: String? = nil, driverVersion: String? = nil,
            profiles: [VAAPIProfile] = [], maxWidth: Int? = nil, maxHeight: Int? = nil, error: String? = nil
        ) {
            self.path = path
            self.vendor = vendor
            self.apiVersion = apiVersion
            self.driverVersion = driverVersion
            self.profiles = profiles
            self.maxWidth = maxWidth
            self.maxHeight = maxHeight
            self.error = error
        }

        /// Whether this device initialised and has an encode entrypoint for `codec`.
        public func canEncode(_ codec: String) -> Bool {
            error == nil && profiles.contains { $0.codec == codec && !$0.entrypoints.isEmpty }
        }
    }

    /// One encoder that was tried: opened on a tiny frame, fed that frame and flushed.
    public struct EncoderStatus: Codable, Sendable, Equatable {
        /// The libavcodec encoder name: "h264_vaapi", "hevc_nvenc", "libx264", ...
        public var name: String
        /// "h264", "hevc" or "av1".
        public var codec: String
        /// "vaapi", "nvenc", "qsv" or "software".
        public var kind: String
        /// Whether the encoder opened and encoded a frame.
        public var available: Bool
        /// Why it is not available; nil when it is.
        public var reason: String?

        public init(name: String, codec: String, kind: String, available: Bool, reason: String? = nil) {
            self.name = name
            self.codec = codec
            self.kind = kind
            self.available = available
            self.reason = reason
        }
    }

    /// Every render node found, whether or not it initialised.
    public var vaapiDevices: [VAAPIDevice]
    /// Why VA-API encoding cannot be used at all ("no /dev/dri render node", ...); nil when some device can encode.
    public var vaapiUnavailable: String?
    /// Every encoder tried, hardware and software.
    public var encoders: [EncoderStatus]
    /// CPUs this process may run on: online CPUs limited by the affinity mask and the cgroup CPU quota.
    public var cpuCount: Int
    /// Memory this process may use: MemTotal, or the cgroup memory limit when lower.
    public var memoryBytes: UInt64
    /// How long the probe took.
    public var probeSeconds: Double
    /// Whether some part of the probe was given up on after the timeout (its entries say so).
    public var timedOut: Bool

    public init(
        vaapiDevices: [VAAPIDevice], vaapiUnavailable: String?, encoders: [EncoderStatus], cpuCount: Int,
        memoryBytes: UInt64, probeSeconds: Double, timedOut: Bool
    ) {
        self.vaapiDevices = vaapiDevices
        self.vaapiUnavailable = vaapiUnavailable
        self.encoders = encoders
        self.cpuCount = cpuCount
        self.memoryBytes = memoryBytes
        self.probeSeconds = probeSeconds
        self.timedOut = timedOut
    }

    /// Usable encoders by codec in order of preference: vaapi, then nvenc, then qsv, then software.
    /// Within a kind the probe's order holds (for AV1 software: libsvtav1 before libaom-av1).
    public func usableEncoders(for codec: String) -> [String] {
        let kinds = ["vaapi", "nvenc", "qsv", "software"]
        return encoders.enumerated()
            .filter { $0.element.available && $0.element.codec == codec }
            .sorted { a, b in
                let ka = kinds.firstIndex(of: a.element.kind) ?? kinds.count
                let kb = kinds.firstIndex(of: b.element.kind) ?? kinds.count
                return (ka, a.offset) < (kb, b.offset)
            }
            .map(\.element.name)
    }

    /// The report as JSON with sorted keys; absent values are left out.
    public func jsonString(pretty: Bool) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        if pretty { encoder.outputFormatting.insert(.prettyPrinted) }
        // Encoding plain strings, numbers and arrays cannot fail; the fallback keeps the signature total.
        guard let data = try? encoder.encode(self) else { return "{}" }
        return String(decoding: data, as: UTF8.self)
    }
}

/// Finds out what this machine can encode with, without trusting any driver to behave.
public enum HardwareProbe {
    /// Probes VA-API render nodes, hardware encoders (VA-API, NVENC, Quick Sync) and software encoders,
    /// and reads the CPU and memory limits.
    ///
    /// Never crashes or hangs on a missing or broken driver; gives up on a part after `timeout` and says so.
    /// Each risky part (one render node, one family of encoders) runs on its own thread against one
    /// deadline; a part still running at the deadline is abandoned and reported as
    /// "probe timed out after N s". This call blocks for up to `timeout`: call it from a thread of its own,
    /// not from an event loop or the cooperative pool.
    ///
    /// FFmpeg's, libva's and SVT-AV1's logging is silenced while it runs, so stdout and stderr stay clean.
    public static func run(
        timeout: Duration = .seconds(10), renderNodeDirectory: String = "/dev/dri"
    ) -> CapabilityReport {
        let clock = ContinuousClock()
        let start = clock.now
        let deadline = start + timeout
        let timedOutReason = "probe timed out after \(formatSeconds(timeout)) s"
        let quiet = ProbeQuiet()
        defer { quiet.end() }

        let nodes = RenderNodes.list(in: renderNodeDirectory)
        let deviceWorkers = nodes.paths.map { path in
            ProbeWorker<CapabilityReport.VAAPIDevice>(name: "vaapi-\((path as NSString).lastPathComponent)") { post in
                post(VAAPIDeviceProbe.query(path: path))
            }
        }
        // NVENC, Quick Sync and software encoders do not depend on the VA-API devices: start them now,
        // one thread per family so that one hung driver does not hide the others.
        var workers: [(candidates: [EncoderCandidate], worker: ProbeWorker<CapabilityReport.EncoderStatus>)] = []
        for kind in [EncoderCandidate.Kind.nvenc, .qsv, .software] {
            let candidates = EncoderCandidate.all.filter { $0.kind == kind }
            workers.append((candidates, EncoderTrial.start(candidates, device: { _ in .none })))
        }

        var timedOut = false
        var devices: [CapabilityReport.VAAPIDevice] = []
        for (path, worker) in zip(nodes.paths, deviceWorkers) {
            let (results, finished) = worker.wait(until: deadline)
            if finished, let device = results.first {
                devices.append(device)
            } else {
                timedOut = true
                devices.append(CapabilityReport.VAAPIDevice(path: path, error: timedOutReason))
            }
        }
        let vaapiUnavailable = nodes.unavailable ?? VAAPIDeviceProbe.unavailableReason(devices)

        // VA-API encoders are tried on the first device that encodes their codec; without one there is
        // nothing risky to do and the reason is known here.
        let probedDevices = devices
        let vaapiDevice: @Sendable (String) -> TrialDevice = { codec in
            if let device = probedDevices.first(where: { $0.canEncode(codec) }) { return .vaapi(device.path) }
            return .unavailable(
                vaapiUnavailable.map { "VA-API unavailable: \($0)" } ?? "no VA-API device encodes \(codec)")
        }
        var statuses: [String: CapabilityReport.EncoderStatus] = [:]
        var vaapiRisky: [EncoderCandidate] = []
        for candidate in EncoderCandidate.all where candidate.kind == .vaapi {
            if case .vaapi = vaapiDevice(candidate.codec) {
                vaapiRisky.append(candidate)
            } else {
                statuses[candidate.name] = EncoderTrial.trial(candidate, device: vaapiDevice(candidate.codec))
            }
        }
        if !vaapiRisky.isEmpty {
            workers.append((vaapiRisky, EncoderTrial.start(vaapiRisky, device: vaapiDevice)))
        }

        for (candidates, worker) in workers {
            let (results, finished) = worker.wait(until: deadline)
            if !finished { timedOut = true }
            for candidate in candidates {
                statuses[candidate.name] =
                    results.first { $0.name == candidate.name }
                    ?? candidate.status(available: false, reason: timedOutReason)
            }
        }
        let encoders = EncoderCandidate.all.compactMap { statuses[$0.name] }

        let limits = SystemLimits.read()
        return CapabilityReport(
            vaapiDevices: devices, vaapiUnavailable: vaapiUnavailable, encoders: encoders, cpuCount: limits.cpuCount,
            memoryBytes: limits.memoryBytes, probeSeconds: (clock.now - start).seconds, timedOut: timedOut)
    }

    /// "10", "0.5": seconds without a trailing ".0".
    static func formatSeconds(_ duration: Duration) -> String {
        let s = duration.seconds
        return s == s.rounded() && abs(s) < 1e15 ? String(Int64(s)) : String(s)
    }
}
