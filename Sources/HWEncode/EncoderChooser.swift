internal import FarmMedia
internal import Synchronization

/// How a node uses its hardware encoders.
public enum HardwareMode: String, Sendable, CaseIterable, Codable {
    /// Hardware first, software when nothing fits or the hardware fails.
    case auto
    /// Hardware only: a segment no hardware encoder can take fails with a clear error.
    case require
    /// Software only.
    case off
}

/// Hardware encoders put aside after a failure, each until its cool-down ends.
public final class EncoderCooldown: Sendable {
    private let until = Mutex<[String: ContinuousClock.Instant]>([:])
    public let period: Duration

    public init(period: Duration = .seconds(300)) { self.period = period }

    public func isCoolingDown(_ encoder: String, now: ContinuousClock.Instant = .now) -> Bool {
        until.withLock { ($0[encoder] ?? now) > now }
    }

    public func coolDown(_ encoder: String, now: ContinuousClock.Instant = .now) {
        until.withLock { $0[encoder] = now + period }
    }
}

/// A test-only switch (never set in production) that makes the hardware path fail, so that the
/// fallback can be proved on machines without a GPU. Read from `FARM_TEST_HARDWARE_FAULT`:
/// `open` fails every hardware encoder at open; `mid:N` fails it after N frames of a segment.
public enum HardwareFault: Sendable, Equatable {
    case atOpen
    case afterFrames(Int)

    public static func fromEnvironment(_ value: String?) -> HardwareFault? {
        guard let value, !value.isEmpty else { return nil }
        if value == "open" { return .atOpen }
        if value.hasPrefix("mid:"), let n = Int(value.dropFirst(4)), n >= 0 { return .afterFrames(n) }
        return nil
    }
}

/// One way to encode a segment: an encoder configuration, and whether it is the hardware path.
public struct EncodeAttempt: Sendable {
    public var config: EncoderConfig
    public var isHardware: Bool
    public var fault: HardwareFault?

    public init(config: EncoderConfig, isHardware: Bool, fault: HardwareFault?) {
        self.config = config
        self.isHardware = isHardware
        self.fault = fault
    }
}

/// Chooses, for each segment, the encoders a node tries in order: the best hardware encoder for the
/// job's codec that the probe found usable and that is not cooling down (VA-API, then NVENC, then
/// Quick Sync), then the job's pinned software encoder.
public struct EncoderChooser: Sendable {
    public let report: CapabilityReport
    public let mode: HardwareMode
    public let cooldown: EncoderCooldown
    /// Test-only: a software encoder that stands in for the hardware path, with settings of its own
    /// so that its segments carry other parameter sets (`FARM_TEST_HARDWARE_STANDIN`). Never set in production.
    public let standIn: String?
    /// Test-only fault injection for the hardware path (`FARM_TEST_HARDWARE_FAULT`).
    public let fault: HardwareFault?

    public init(
        report: CapabilityReport, mode: HardwareMode, cooldown: EncoderCooldown = EncoderCooldown(),
        standIn: String? = nil, fault: HardwareFault? = nil
    ) {
        self.report = report
        self.mode = mode
        self.cooldown = cooldown
        self.standIn = standIn
        self.fault = fault
    }

    /// Hardware encoders usable for `codec` on this node, best first.
    public func hardwareEncoders(for codec: VideoCodec) -> [String] {
        if let standIn { return [standIn] }
        return report.usableEncoders(for: codec.rawValue).filter { !EncoderCatalog.isSoftware($0) }
    }

    /// Refuses `--hardware require` on a node with no hardware encoder at all.
    public func checkStartup() throws {
        guard mode == .require else { return }
        if VideoCodec.allCases.allSatisfy({ hardwareEncoders(for: $0).isEmpty }) {
            let reason = report.vaapiUnavailable.map { "VA-API: \($0)" } ?? "no usable hardware encoder"
            throw MediaError(.unsupported, "--hardware require, but this node has no hardware encoder (\(reason))")
        }
    }

    /// The encoders to try for a segment encoded with the job's pinned `config`, in order.
    public func attempts(for config: EncoderConfig) throws -> [EncodeAttempt] {
        var attempts: [EncodeAttempt] = []
        if mode != .off {
            for name in hardwareEncoders(for: config.codec) where !cooldown.isCoolingDown(name) {
                attempts.append(EncodeAttempt(config: hardwareConfig(name, from: config), isHardware: true, fault: fault))
                break
            }
        }
        if mode == .require {
            guard !attempts.isEmpty else {
                throw MediaError(
                    .unsupported, "--hardware require: no hardware \(config.codec.rawValue) encoder is usable on this node")
            }
            return attempts
        }
        attempts.append(EncodeAttempt(config: config, isHardware: false, fault: nil))
        return attempts
    }

    /// The job's settings carried over to a hardware encoder: same picture, time base and colours;
    /// quality mapped from CRF to the encoder's own constant-quality control.
    func hardwareConfig(_ name: String, from config: EncoderConfig) -> EncoderConfig {
        var hw = config
        hw.encoder = name
        hw.options = [:]
        if name == standIn {
            // A stand-in must produce other parameter sets than the job's encoder, as real hardware does.
            hw.options = name == "libx264" ? ["x264-params": "bframes=0:ref=1:cabac=0"] : config.options
            return hw
        }
        hw.pixelFormat = name.hasSuffix("_vaapi") ? "nv12" : (name.hasSuffix("_qsv") ? "nv12" : "yuv420p")
        if name.hasSuffix("_vaapi") {
            hw.hardwareDevice = report.vaapiDevices.first(where: { $0.canEncode(config.codec.rawValue) })?.path
        }
        return hw
    }
}

extension EncoderCatalog {
    /// Whether `name` is one of the software encoders.
    public static func isSoftware(_ name: String) -> Bool {
        VideoCodec.allCases.contains { softwareEncoders(for: $0).contains(name) }
    }
}

extension CapabilityReport {
    /// A report with nothing found: a node that was not probed uses software only.
    public static var empty: CapabilityReport {
        CapabilityReport(
            vaapiDevices: [], vaapiUnavailable: "not probed", encoders: [], cpuCount: 0, memoryBytes: 0,
            probeSeconds: 0, timedOut: false)
    }
}
