import FarmHWEncode
import FarmTestSupport
import Foundation
import Testing

/// The hardware probe on this machine (no GPU here or in CI) and on fake render nodes.
@Suite struct ProbeTests {
    /// One probe of the real machine, shared by the tests that only read it.
    static let machine: (report: CapabilityReport, elapsed: Duration) = {
        let clock = ContinuousClock()
        let start = clock.now
        let report = HardwareProbe.run(timeout: .seconds(8))
        return (report, clock.now - start)
    }()

    static let hasRenderNode = ((try? FileManager.default.contentsOfDirectory(atPath: "/dev/dri")) ?? [])
        .contains { $0.hasPrefix("renderD") }
    static let hasNVIDIADevice = FileManager.default.fileExists(atPath: "/dev/nvidia0")
    static let hardwareEncoders = ["h264_vaapi", "hevc_vaapi", "av1_vaapi", "h264_nvenc", "hevc_nvenc", "av1_nvenc",
        "h264_qsv", "hevc_qsv"]

    @Test(.enabled(if: !hasRenderNode, "this machine has a render node; the report then lists it"))
    func vaapiIsUnavailableWithoutRenderNode() {
        let report = Self.machine.report
        #expect(report.vaapiDevices.isEmpty)
        #expect(report.vaapiUnavailable == "no /dev/dri render node")
        for encoder in report.encoders where encoder.kind == "vaapi" {
            #expect(!encoder.available)
            let reason = encoder.reason ?? ""
            #expect(reason.contains("no /dev/dri render node") || reason == "not in this build of libavcodec")
        }
    }

    @Test(.enabled(if: !hasRenderNode && !hasNVIDIADevice, "this machine has GPU devices"))
    func hardwareEncodersAreUnavailableWithReasons() throws {
        let report = Self.machine.report
        for name in Self.hardwareEncoders {
            let encoder = try #require(report.encoders.first { $0.name == name }, "\(name) was not tried")
            #expect(!encoder.available, "\(name)")
            #expect(!(encoder.reason ?? "").isEmpty, "\(name) has no reason")
        }
        #expect(report.usableEncoders(for: "h264").first == "libx264")
        #expect(report.usableEncoders(for: "hevc").allSatisfy { $0.hasPrefix("lib") })
    }

    @Test func everyEncoderIsReportedHonestly() {
        let report = Self.machine.report
        #expect(Set(Self.hardwareEncoders).isSubset(of: Set(report.encoders.map(\.name))))
        for encoder in report.encoders {
            #expect(["h264", "hevc", "av1"].contains(encoder.codec), "\(encoder.name)")
            #expect(["vaapi", "nvenc", "qsv", "software"].contains(encoder.kind), "\(encoder.name)")
            if encoder.available {
                #expect(encoder.reason == nil, "\(encoder.name)")
            } else {
                #expect(!(encoder.reason ?? "").isEmpty, "\(encoder.name) is unavailable without a reason")
            }
        }
    }

    @Test func libx264OpensAndEncodes() throws {
        let report = Self.machine.report
        let x264 = try #require(report.encoders.first { $0.name == "libx264" })
        #expect(x264.available, "\(x264.reason ?? "")")
        #expect(x264.kind == "software")
        #expect(report.usableEncoders(for: "h264").contains("libx264"))
        #expect(report.usableEncoders(for: "h264").last == "libx264")
    }

    @Test func reportsCPUsAndMemory() {
        let report = Self.machine.report
        #expect(report.cpuCount >= 1)
        #expect(report.cpuCount <= ProcessInfo.processInfo.processorCount)
        #expect(report.memoryBytes > 64 << 20)
    }

    @Test func finishesWithinItsTimeout() {
        let (report, elapsed) = Self.machine
        #expect(!report.timedOut)
        #expect(elapsed < .seconds(8))
        #expect(report.probeSeconds > 0 && report.probeSeconds < 8)
    }

    @Test func givesUpAfterTheTimeoutAndSaysSo() {
        let clock = ContinuousClock()
        let start = clock.now
        let report = HardwareProbe.run(timeout: .milliseconds(1))
        #expect(clock.now - start < .seconds(2))
        #expect(report.timedOut)
        // The software encoders cannot all be opened and flushed in a millisecond.
        #expect(report.encoders.contains { $0.reason == "probe timed out after 0.001 s" })
        #expect(report.encoders.count == Self.machine.report.encoders.count)
    }

    @Test func fakeRenderNodesGiveErrorsNotCrashes() throws {
        let dir = try TestMedia.temporaryDirectory("farm-probe")
        defer { try? FileManager.default.removeItem(at: dir) }
        // A regular file where a character device should be, and a directory.
        try Data("not a GPU".utf8).write(to: dir.appendingPathComponent("renderD128"))
        try FileManager.default.createDirectory(
            at: dir.appendingPathComponent("renderD129"), withIntermediateDirectories: false)
        try Data().write(to: dir.appendingPathComponent("card0"))

        let report = HardwareProbe.run(timeout: .seconds(8), renderNodeDirectory: dir.path)
        #expect(!report.timedOut)
        #expect(report.vaapiDevices.map { ($0.path as NSString).lastPathComponent } == ["renderD128", "renderD129"])
        for device in report.vaapiDevices {
            #expect(!(device.error ?? "").isEmpty, "\(device.path) has no error")
            #expect(device.profiles.isEmpty)
        }
        #expect(report.vaapiDevices[1].error?.hasPrefix("open failed") == true)
        let reason = try #require(report.vaapiUnavailable)
        #expect(reason.contains("renderD128"))
        for encoder in report.encoders where encoder.kind == "vaapi" {
            #expect(!encoder.available)
        }
    }

    @Test func emptyDirectoryHasNoRenderNode() throws {
        let dir = try TestMedia.temporaryDirectory("farm-probe")
        defer { try? FileManager.default.removeItem(at: dir) }
        let report = HardwareProbe.run(timeout: .seconds(8), renderNodeDirectory: dir.path)
        #expect(report.vaapiDevices.isEmpty)
        #expect(report.vaapiUnavailable == "no \(dir.path) render node")
    }

    @Test func jsonRoundTrips() throws {
        let report = Self.machine.report
        for pretty in [true, false] {
            let json = report.jsonString(pretty: pretty)
            let decoded = try JSONDecoder().decode(CapabilityReport.self, from: Data(json.utf8))
            #expect(decoded == report)
        }
        #expect(report.jsonString(pretty: false).contains("\"vaapiUnavailable\""))
    }

    @Test func usableEncodersPreferVAAPIThenNVENCThenQSVThenSoftware() {
        func status(
            _ name: String, _ codec: String, _ kind: String, _ available: Bool = true
        ) -> CapabilityReport.EncoderStatus {
            .init(name: name, codec: codec, kind: kind, available: available, reason: available ? nil : "absent")
        }
        let report = CapabilityReport(
            vaapiDevices: [], vaapiUnavailable: nil,
            encoders: [
                status("libx264", "h264", "software"), status("h264_qsv", "h264", "qsv"),
                status("h264_nvenc", "h264", "nvenc"), status("h264_vaapi", "h264", "vaapi", false),
                status("hevc_vaapi", "hevc", "vaapi"), status("libsvtav1", "av1", "software"),
                status("libaom-av1", "av1", "software"),
            ],
            cpuCount: 2, memoryBytes: 1 << 30, probeSeconds: 0.1, timedOut: false)
        #expect(report.usableEncoders(for: "h264") == ["h264_nvenc", "h264_qsv", "libx264"])
        #expect(report.usableEncoders(for: "hevc") == ["hevc_vaapi"])
        #expect(report.usableEncoders(for: "av1") == ["libsvtav1", "libaom-av1"])
        #expect(report.usableEncoders(for: "vp9").isEmpty)
    }
}
