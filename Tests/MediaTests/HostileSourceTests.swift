import FarmMedia
import FarmTestSupport
import Foundation
import Testing

/// Sources opened as hostile files: only whitelisted containers, chosen by their bytes, never a
/// demuxer that opens further files, and bounded probing; each refusal is one line naming the file.
@Suite struct HostileSourceTests {
    init() { MediaLog.quiet() }

    /// Two directories: the source root a job may read, and one outside it with a video of its own.
    func directories() throws -> (root: URL, outside: URL, video: String) {
        let root = try TestMedia.temporaryDirectory("farm-root")
        let outside = try TestMedia.temporaryDirectory("farm-outside")
        let video = outside.appendingPathComponent("secret.ts").path
        try TestMedia.makeClip(at: video, seconds: 1, size: "64x48", audio: false)
        return (root, outside, video)
    }

    /// The error of `body`, which must be a one-line MediaError that names `path` and says `words`.
    func expectRefusal(_ path: String, saying words: String, _ body: () throws -> Void) {
        do {
            try body()
            Issue.record("\(path) was opened")
        } catch let error as MediaError {
            #expect(error.message.hasPrefix(path), "\(error)")
            #expect(error.message.contains(words), "\(error)")
            #expect(!error.message.contains("\n"), "\(error)")
        } catch {
            Issue.record("not a MediaError: \(error)")
        }
    }

    @Test func hlsPlaylistNamingAVideoOutsideTheRootIsRefused() throws {
        let (root, outside, video) = try directories()
        defer { for d in [root, outside] { try? FileManager.default.removeItem(at: d) } }
        let playlist = root.appendingPathComponent("list.m3u8").path
        try "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n#EXTINF:1.0,\n\(video)\n#EXT-X-ENDLIST\n"
            .write(toFile: playlist, atomically: true, encoding: .utf8)
        // The same playlist is a working source to a stock FFmpeg: the refusal is farm's.
        let counted = try TestMedia.run(
            "ffprobe",
            ["-v", "error", "-select_streams", "v:0", "-count_packets", "-show_entries", "stream=nb_read_packets", "-of", "csv=p=0", playlist])
        #expect(counted.split(whereSeparator: \.isNewline).first == "25", "\(counted)")
        expectRefusal(playlist, saying: "is hls, not a container farm reads") { _ = try MediaInfo.probe(path: playlist) }
        expectRefusal(playlist, saying: "is hls") { _ = try SourceIndex.scan(path: playlist) }
    }

    @Test func concatListNamingAnotherFileIsRefused() throws {
        let (root, outside, video) = try directories()
        defer { for d in [root, outside] { try? FileManager.default.removeItem(at: d) } }
        let list = root.appendingPathComponent("list.txt").path
        try "ffconcat version 1.0\nfile '\(video)'\n".write(toFile: list, atomically: true, encoding: .utf8)
        expectRefusal(list, saying: "is concat, not a container farm reads") { _ = try MediaInfo.probe(path: list) }
        expectRefusal(list, saying: "is concat") { _ = try SourceIndex.scan(path: list) }
    }

    /// The demuxer comes from the bytes: an MP4 named .mkv is read as MP4, a Matroska named .mp4 as Matroska.
    @Test(arguments: [("mp4", "mkv", "mov"), ("mkv", "mp4", "matroska")])
    func fileWhoseNameLiesIsOpenedByItsContent(real: String, named: String, demuxer: String) throws {
        let dir = try TestMedia.temporaryDirectory("farm-lie")
        defer { try? FileManager.default.removeItem(at: dir) }
        let made = dir.appendingPathComponent("clip.\(real)").path
        try TestMedia.makeClip(at: made, seconds: 2, size: "64x48")
        let lying = dir.appendingPathComponent("lying.\(named)").path
        try FileManager.default.moveItem(atPath: made, toPath: lying)
        let info = try MediaInfo.probe(path: lying)
        #expect(info.formatName.split(separator: ",").first.map(String.init) == demuxer, "\(info.formatName)")
        #expect(info.streams.map(\.kind) == [.video, .audio])
        let index = try SourceIndex.scan(path: lying)
        #expect(index.totalFrames == 50)
        #expect(index.keyframes.count == 2)
    }

    @Test func wavIsRefusedAsNoContainerFarmReads() throws {
        let dir = try TestMedia.temporaryDirectory("farm-wav")
        defer { try? FileManager.default.removeItem(at: dir) }
        let wav = dir.appendingPathComponent("tone.mp4").path
        try TestMedia.run(
            "ffmpeg", ["-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "sine=duration=0.5", "-f", "wav", wav])
        expectRefusal(wav, saying: "is wav, not a container farm reads") { _ = try MediaInfo.probe(path: wav) }
    }

    @Test func imageSequenceIsRefused() throws {
        let dir = try TestMedia.temporaryDirectory("farm-images")
        defer { try? FileManager.default.removeItem(at: dir) }
        try TestMedia.run(
            "ffmpeg",
            ["-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=size=64x48:rate=5", "-t", "1",
             dir.appendingPathComponent("img%03d.png").path])
        // The pattern names no file (image2 would read the sequence), one image is not a container.
        let pattern = dir.appendingPathComponent("img%03d.png").path
        expectRefusal(pattern, saying: "no such file") { _ = try MediaInfo.probe(path: pattern) }
        let image = dir.appendingPathComponent("img001.png").path
        expectRefusal(image, saying: "not a container farm reads") { _ = try SourceIndex.scan(path: image) }
    }

    @Test func openingPastItsDeadlineFailsWithOneLine() throws {
        let dir = try TestMedia.temporaryDirectory("farm-deadline")
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("clip.mp4").path
        try TestMedia.makeClip(at: path, seconds: 1, size: "64x48")
        var limits = InputLimits()
        limits.openSeconds = 0
        expectRefusal(path, saying: "took longer than 0.0 s to open") { _ = try InputFile(path: path, limits: limits) }
        // With the standard limits the same file opens.
        #expect(try InputFile(path: path).streamCount == 2)
    }

    @Test func indexStopsAtItsKeyframeCap() throws {
        let dir = try TestMedia.temporaryDirectory("farm-cap")
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("clip.mp4").path
        try TestMedia.makeClip(at: path, seconds: 2, size: "64x48", audio: false,
            videoArgs: ["-c:v", "libx264", "-preset", "ultrafast", "-g", "5", "-sc_threshold", "0"])
        expectRefusal(path, saying: "has more than 4 keyframes") { _ = try SourceIndex.scan(path: path, maxKeyframes: 4) }
        #expect(try SourceIndex.scan(path: path, maxKeyframes: 10).keyframes.count == 10)
    }

    /// Presentation times of 2^62 ms and more (Matroska stores them): refused as the index reads them,
    /// before any sum or difference of two of them.
    @Test func timestampsNearTheLimitOfSixtyFourBitsAreRefused() throws {
        let dir = try TestMedia.temporaryDirectory("farm-extreme")
        defer { try? FileManager.default.removeItem(at: dir) }
        let base = dir.appendingPathComponent("base.mkv").path
        try TestMedia.makeClip(at: base, seconds: 1, size: "64x48", audio: false)
        let far = dir.appendingPathComponent("far.mkv").path
        try TestMedia.run(
            "ffmpeg", ["-hide_banner", "-loglevel", "error", "-i", base, "-c", "copy", "-bsf:v", "setts=ts=TS+4611686018427387904", far])
        let times = try TestMedia.frameTimes(far)
        #expect(times.first.map { $0 >= 1 << 62 } == true, "\(times.prefix(3))")
        expectRefusal(far, saying: "beyond ±2^61 ticks") { _ = try SourceIndex.scan(path: far) }
    }

    /// The fields read after the last packet (time base, frame rate) come from a demuxer still open.
    @Test(arguments: [("mp4", "1/25", "25"), ("mkv", "1/1000", "30000/1001")])
    func indexKeepsTheStreamFieldsOfItsOpenDemuxer(container: String, timeBase: String, rate: String) throws {
        let dir = try TestMedia.temporaryDirectory("farm-fields")
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("clip.\(container)").path
        try TestMedia.makeClip(
            at: path, seconds: 1, size: "64x48", rate: rate, audio: false,
            extra: container == "mp4" ? ["-video_track_timescale", "25"] : [])
        let probed = try TestMedia.streamInfo(path, stream: "v:0", entries: "time_base,avg_frame_rate")
        #expect(probed["time_base"] == timeBase)
        let index = try SourceIndex.scan(path: path)
        #expect(index.timeBase.description == timeBase)
        #expect(index.frameRate.description == probed["avg_frame_rate"], "\(probed)")
    }
}
