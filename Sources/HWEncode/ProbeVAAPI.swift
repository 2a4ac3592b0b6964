internal import CVAAPI
internal import FarmMedia
internal import Foundation

#if canImport(Glibc)
    internal import Glibc
#elseif canImport(Darwin)
    internal import Darwin
#endif

/// The DRM render nodes in a directory, or why there are none.
enum RenderNodes {
    static func list(in directory: String) -> (paths: [String], unavailable: String?) {
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: directory)
        } catch {
            if !FileManager.default.fileExists(atPath: directory) { return ([], "no \(directory) render node") }
            return ([], "cannot list \(directory): \(error.localizedDescription)")
        }
        let nodes = names.filter { $0.hasPrefix("renderD") }.sorted()
        guard !nodes.isEmpty else { return ([], "no \(directory) render node") }
        return (nodes.map { (directory as NSString).appendingPathComponent($0) }, nil)
    }
}

/// Owns a render node's file descriptor and the VA display opened on it: terminates the display and
/// closes the descriptor once, in that order.
final class VADisplaySession {
    let display: VADisplay
    private let fd: Int32

    init(path: String) throws {
        let fd = open(path, O_RDWR | O_CLOEXEC)
        guard fd >= 0 else {
            let code = errno
            let hint = code == EACCES ? " (the user must be in the group that owns the node, usually render)" : ""
            throw MediaError(.io, "open failed: \(String(cString: strerror(code)))\(hint)")
        }
        guard let display = vaGetDisplayDRM(fd) else {
            close(fd)
            throw MediaError(.unsupported, "vaGetDisplayDRM failed: not a DRM device")
        }
        self.fd = fd
        self.display = display
        // libva prints to stderr by default; `farm probe` must print nothing but its JSON.
        _ = vaSetErrorCallback(display, { _, _ in }, nil)
        _ = vaSetInfoCallback(display, { _, _ in }, nil)
    }

    deinit {
        // Safe after a failed vaInitialize too: libva then only frees the display (FFmpeg does the same).
        _ = vaTerminate(display)
        close(fd)
    }
}

/// Asks one render node's VA-API driver what it can encode.
enum VAAPIDeviceProbe {
    /// The encode profiles the probe reports: libva's constant, its name without "VAProfile", the codec.
    static let encodeProfiles: [(profile: Int32, name: String, codec: String)] = [
        (VAProfileH264ConstrainedBaseline.rawValue, "H264ConstrainedBaseline", "h264"),
        (VAProfileH264Main.rawValue, "H264Main", "h264"),
        (VAProfileH264High.rawValue, "H264High", "h264"),
        (VAProfileHEVCMain.rawValue, "HEVCMain", "hevc"),
        (VAProfileHEVCMain10.rawValue, "HEVCMain10", "hevc"),
        (VAProfileHEVCMain12.rawValue, "HEVCMain12", "hevc"),
        (VAProfileHEVCMain422_10.rawValue, "HEVCMain422_10", "hevc"),
        (VAProfileHEVCMain422_12.rawValue, "HEVCMain422_12", "hevc"),
        (VAProfileHEVCMain444.rawValue, "HEVCMain444", "hevc"),
        (VAProfileHEVCMain444_10.rawValue, "HEVCMain444_10", "hevc"),
        (VAProfileHEVCMain444_12.rawValue, "HEVCMain444_12", "hevc"),
        (VAProfileHEVCSccMain.rawValue, "HEVCSccMain", "hevc"),
        (VAProfileHEVCSccMain10.rawValue, "HEVCSccMain10", "hevc"),
        (VAProfileHEVCSccMain444.rawValue, "HEVCSccMain444", "hevc"),
        (VAProfileHEVCSccMain444_10.rawValue, "HEVCSccMain444_10", "hevc"),
        (VAProfileAV1Profile0.rawValue, "AV1Profile0", "av1"),
        (VAProfileAV1Profile1.rawValue, "AV1Profile1", "av1"),
        (VAProfileVP9Profile0.rawValue, "VP9Profile0", "vp9"),
        (VAProfileVP9Profile1.rawValue, "VP9Profile1", "vp9"),
        (VAProfileVP9Profile2.rawValue, "VP9Profile2", "vp9"),
        (VAProfileVP9Profile3.rawValue, "VP9Profile3", "vp9"),
    ]

    /// The encode entrypoints the probe keeps, with their names without "VAEntrypoint".
    static let encodeEntrypoints: [(entrypoint: UInt32, name: String)] = [
        (VAEntrypointEncSlice.rawValue, "EncSlice"),
        (VAEntrypointEncSliceLP.rawValue, "EncSliceLP"),
    ]

    /// Opens, initialises and questions the device at `path`; every failure becomes the entry's `error`.
    static func query(path: String) -> CapabilityReport.VAAPIDevice {
        let session: VADisplaySession
        do {
            session = try VADisplaySession(path: path)
        } catch {
            return CapabilityReport.VAAPIDevice(path: path, error: "\(error)")
        }
        let display = session.display
        var major: Int32 = 0
        var minor: Int32 = 0
        let status = vaInitialize(display, &major, &minor)
        guard status == VA_STATUS_SUCCESS else {
            return CapabilityReport.VAAPIDevice(path: path, error: "vaInitialize failed: \(errorString(status))")
        }
        let vendor = vaQueryVendorString(display).map { String(cString: $0) }
        var device = CapabilityReport.VAAPIDevice(
            path: path, vendor: vendor, apiVersion: "\(major).\(minor)", driverVersion: vendor.flatMap(versionNumber))

        let supported: [VAProfile]
        do {
            supported = try profiles(display)
        } catch {
            device.error = "\(error)"
            return device
        }
        for known in encodeProfiles where supported.contains(where: { $0.rawValue == known.profile }) {
            let profile = VAProfile(rawValue: known.profile)
            let entrypoints = (try? self.entrypoints(display, profile)) ?? []
            let kept = encodeEntrypoints.filter { e in entrypoints.contains { $0.rawValue == e.entrypoint } }
            guard !kept.isEmpty else { continue }
            device.profiles.append(
                CapabilityReport.VAAPIProfile(name: known.name, codec: known.codec, entrypoints: kept.map(\.name)))
            for e in kept {
                guard let size = maximumPictureSize(display, profile, VAEntrypoint(rawValue: e.entrypoint)) else {
                    continue
                }
                device.maxWidth = max(device.maxWidth ?? 0, size.width)
                device.maxHeight = max(device.maxHeight ?? 0, size.height)
            }
        }
        return device
    }

    /// Why VA-API encoding cannot be used on any of `devices`; nil when one of them can encode.
    static func unavailableReason(_ devices: [CapabilityReport.VAAPIDevice]) -> String? {
        let working = devices.filter { $0.error == nil }
        if working.isEmpty {
            let failures = devices.map { "\($0.path): \($0.error ?? "unknown error")" }
            return "no render node initialised (\(failures.joined(separator: "; ")))"
        }
        if !working.contains(where: { !$0.profiles.isEmpty }) {
            return "no H.264, HEVC, AV1 or VP9 encode entrypoint on \(working.map(\.path).joined(separator: ", "))"
        }
        return nil
    }

    static func errorString(_ status: VAStatus) -> String {
        vaErrorStr(status).map { String(cString: $0) } ?? "VA status \(status)"
    }

    /// The first dotted number in a vendor string: "Intel iHD driver ... - 23.1.1 ()" gives "23.1.1",
    /// "Mesa Gallium driver 22.3.6 for ..." gives "22.3.6".
    static func versionNumber(in vendor: String) -> String? {
        let tokens = vendor.split(whereSeparator: { $0 == " " || $0 == "(" || $0 == ")" || $0 == "," })
        return tokens.first { token in
            let parts = token.split(separator: ".", omittingEmptySubsequences: false)
            return parts.count >= 2 && parts.allSatisfy { !$0.isEmpty && $0.allSatisfy { $0.isASCII && $0.isNumber } }
        }.map(String.init)
    }

    static func profiles(_ display: VADisplay) throws -> [VAProfile] {
        var list = [VAProfile](repeating: VAProfileNone, count: Int(max(vaMaxNumProfiles(display), 0)))
        var count: Int32 = 0
        let status = vaQueryConfigProfiles(display, &list, &count)
        guard status == VA_STATUS_SUCCESS else {
            throw MediaError(.unsupported, "vaQueryConfigProfiles failed: \(errorString(status))")
        }
        return Array(list.prefix(Int(max(0, min(count, Int32(list.count))))))
    }

    static func entrypoints(_ display: VADisplay, _ profile: VAProfile) throws -> [VAEntrypoint] {
        var list = [VAEntrypoint](
            repeating: VAEntrypoint(rawValue: 0), count: Int(max(vaMaxNumEntrypoints(display), 0)))
        var count: Int32 = 0
        let status = vaQueryConfigEntrypoints(display, profile, &list, &count)
        guard status == VA_STATUS_SUCCESS else {
            throw MediaError(.unsupported, "vaQueryConfigEntrypoints failed: \(errorString(status))")
        }
        return Array(list.prefix(Int(max(0, min(count, Int32(list.count))))))
    }

    /// The largest picture an encode configuration accepts, from its surface attributes; nil when the
    /// driver does not say.
    static func maximumPictureSize(
        _ display: VADisplay, _ profile: VAProfile, _ entrypoint: VAEntrypoint
    ) -> (width: Int, height: Int)? {
        var config = VAConfigID(VA_INVALID_ID)
        guard vaCreateConfig(display, profile, entrypoint, nil, 0, &config) == VA_STATUS_SUCCESS else { return nil }
        defer { _ = vaDestroyConfig(display, config) }
        var count: UInt32 = 0
        guard vaQuerySurfaceAttributes(display, config, nil, &count) == VA_STATUS_SUCCESS, count > 0 else {
            return nil
        }
        var attributes = [VASurfaceAttrib](repeating: VASurfaceAttrib(), count: Int(count))
        guard vaQuerySurfaceAttributes(display, config, &attributes, &count) == VA_STATUS_SUCCESS else { return nil }
        var width: Int?
        var height: Int?
        for attribute in attributes.prefix(Int(count)) where attribute.value.type == VAGenericValueTypeInteger {
            if attribute.type == VASurfaceAttribMaxWidth { width = Int(attribute.value.value.i) }
            if attribute.type == VASurfaceAttribMaxHeight { height = Int(attribute.value.value.i) }
        }
        guard let width, let height, width > 0, height > 0 else { return nil }
        return (width, height)
    }
}
