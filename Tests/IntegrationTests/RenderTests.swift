import FarmTestSupport
import Foundation
import Testing

/// `farm render` end to end: a coordinator and 2 real `farm node` processes over loopback TCP, clips
/// made by the tests, outputs checked with ffprobe and a strict ffmpeg decode.
@Suite(.serialized, .heavy) struct RenderTests {
    let dir: URL

    init() throws { dir = try TestMedia.temporaryDirectory("farm-render") }

    func path(_ name: String) -> String { dir.appendingPathComponent(name).path }

    /// Renders and checks what every output must hold: exit 0, the source's frame times, clean decode.
    @discardableResult
    func renderAndCheck(_ source: String, _ output: String, _ extra: [String] = []) async throws -> FarmBinary.Result {
        let result = try await FarmBinary.run(["render", source, "-o", output, "--nodes", "2", "--preset", "ultrafast"] + extra)
        #expect(result.status == 0, "farm render failed: \(result.stderr)")
        guard result.status == 0 else { return result }
        #expect(result.stdout.contains("segments"))
        #expect(try TestMedia.frameSeconds(output) == TestMedia.frameSeconds(source))
        try TestMedia.decodesCleanly(output)
        #expect(!(try FileManager.default.contentsOfDirectory(atPath: dir.path).contains { $0.contains("farm-tmp") }))
        return result
    }

    @Test func h264WithAudioAndBFramesIsFrameExact() async throws {
        defer { try? FileManager.default.removeItem(at: dir) }
        let plain = path("plain.mp4")
        try TestMedia.makeClip(
            at: plain, seconds: 8, videoArgs: ["-c:v", "libx264", "-preset", "ultrafast", "-g", "30", "-bf", "3"],
            extra: ["-color_primaries", "bt709", "-color_trc", "bt709", "-colorspace", "bt709"])
        // Rotation (a display matrix) and tags are set by a remux, as phones and editors do.
        let source = path("bframes.mp4")
        try TestMedia.run(
            "ffmpeg",
            ["-v", "error", "-y", "-i", plain, "-c", "copy", "-metadata:s:v:0", "rotate=90", "-metadata:s:a:0", "language=fra",
             "-metadata", "title=farm test", source])
        let output = path("out.mp4")
        try await renderAndCheck(source, output, ["--segment-seconds", "2"])
        #expect(try TestMedia.packetCount(output, stream: "a:0") == TestMedia.packetCount(source, stream: "a:0"))
        #expect(try TestMedia.streamInfo(output, stream: "a:0", entries: "codec_name")["language"] == "fra")
        let info = try TestMedia.streamInfo(output, stream: "v:0", entries: "codec_name,color_primaries,color_transfer,color_space")
        #expect(info["codec_name"] == "h264")
        #expect(info["rotation"] == "90")
        #expect(info["color_primaries"] == "bt709")
        #expect(info["color_transfer"] == "bt709")
        #expect(info["color_space"] == "bt709")
        let title = try TestMedia.run("ffprobe", ["-v", "error", "-show_entries", "format_tags=title", "-of", "csv=p=0", output])
        #expect(title.trimmingCharacters(in: .whitespacesAndNewlines) == "farm test")
    }

    @Test func variableFrameRateWithoutAudioKeepsFrameTimes() async throws {
        defer { try? FileManager.default.removeItem(at: dir) }
        let source = path("vfr.mkv")
        // Frame times that jump between 1/25 and 3/25 of a second.
        try TestMedia.makeClip(
            at: source, seconds: 6, audio: false,
            videoArgs: ["-vf", "setpts='N/25/TB+floor(N/7)*2/25/TB'", "-fps_mode", "vfr", "-c:v", "libx264", "-preset", "ultrafast", "-g", "20"])
        let times = try TestMedia.frameSeconds(source)
        #expect(Set(zip(times.dropFirst(), times).map { (Double($0)! - Double($1)!) * 25 }.map { $0.rounded() }).count > 1)
        try await renderAndCheck(source, path("vfr-out.mkv"), ["--segment-seconds", "1.5"])
    }

    @Test func openGOPAndOddSizeLoseNoFrame() async throws {
        defer { try? FileManager.default.removeItem(at: dir) }
        let source = path("open.mp4")
        try TestMedia.makeClip(
            at: source, seconds: 6, size: "854x480",
            videoArgs: ["-c:v", "libx264", "-preset", "ultrafast", "-g", "24", "-bf", "2", "-x264-params", "open-gop=1:scenecut=0"])
        try await renderAndCheck(source, path("open-out.mp4"), ["--segment-seconds", "1"])
    }

    @Test func hevcFromA1918WideSource() async throws {
        defer { try? FileManager.default.removeItem(at: dir) }
        let source = path("wide.mp4")
        try TestMedia.makeClip(at: source, seconds: 2, size: "1918x1080", rate: "24", audio: true)
        let output = path("wide-hevc.mp4")
        try await renderAndCheck(source, output, ["--codec", "hevc", "--segment-seconds", "1"])
        let info = try TestMedia.streamInfo(output, stream: "v:0", entries: "codec_name,codec_tag_string,width,height")
        #expect(info["codec_name"] == "hevc")
        #expect(info["codec_tag_string"] == "hvc1")
        #expect(info["width"] == "1918")
    }

    @Test func av1ToMatroskaWithSubtitles() async throws {
        defer { try? FileManager.default.removeItem(at: dir) }
        let plain = path("plain.mp4")
        try TestMedia.makeClip(at: plain, seconds: 4, size: "320x240", rate: "25", audio: true)
        let srt = path("subs.srt")
        try "1\n00:00:00,500 --> 00:00:02,000\nhello\n\n2\n00:00:02,500 --> 00:00:03,500\nworld\n".write(
            toFile: srt, atomically: true, encoding: .utf8)
        let source = path("rich.mkv")
        try TestMedia.run(
            "ffmpeg",
            ["-v", "error", "-y", "-i", plain, "-i", srt, "-map", "0", "-map", "1", "-c", "copy",
             "-metadata:s:s:0", "language=deu", source])
        let output = path("rich-av1.mkv")
        try await renderAndCheck(source, output, ["--codec", "av1", "--segment-seconds", "1"])
        #expect(try TestMedia.streamInfo(output, stream: "v:0", entries: "codec_name")["codec_name"] == "av1")
        #expect(try TestMedia.streamInfo(output, stream: "s:0", entries: "codec_name")["language"] == "deu")
        #expect(try TestMedia.packetCount(output, stream: "s:0") == 2)
    }

    @Test func sourceTheEncoderCannotTakeFailsClearly() async throws {
        defer { try? FileManager.default.removeItem(at: dir) }
        let source = path("odd.mkv")
        // 4:2:0 at an odd width: x264 refuses it.
        try TestMedia.makeClip(
            at: source, seconds: 1, size: "321x240", audio: false, videoArgs: ["-c:v", "ffv1", "-pix_fmt", "yuv420p"])
        let output = path("odd.mp4")
        let result = try await FarmBinary.run(["render", source, "-o", output, "--nodes", "2"])
        if result.status == 0 {
            try TestMedia.decodesCleanly(output)
        } else {
            let lines = result.stderr.split(separator: "\n").filter { $0.hasPrefix("farm: error:") }
            #expect(lines.count == 1, "stderr: \(result.stderr)")
            #expect(!FileManager.default.fileExists(atPath: output))
        }
    }
}
