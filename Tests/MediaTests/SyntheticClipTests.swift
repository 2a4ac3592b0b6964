import FarmMedia
import FarmTestSupport
import Foundation
import Testing

/// The test clips `farm capacity` generates with libavcodec and libavformat, read back by ffprobe.
@Suite struct SyntheticClipTests {
    init() { MediaLog.quiet() }

    @Test func clipHasH264VideoWithBFramesAndAACAudioOfTheAskedLength() throws {
        let dir = try TestMedia.temporaryDirectory("farm-clip")
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("clip.mp4").path
        let clip = SyntheticClip(width: 320, height: 180, seconds: 2, frameRate: 25, keyframeSeconds: 1)
        try clip.write(to: path)

        let video = try TestMedia.streamInfo(path, stream: "v:0", entries: "codec_name,width,height,has_b_frames")
        #expect(video["codec_name"] == "h264")
        #expect(video["width"] == "320" && video["height"] == "180")
        #expect(video["has_b_frames"].flatMap { Int($0) }.map { $0 > 0 } == true, "\(video)")
        let audio = try TestMedia.streamInfo(path, stream: "a:0", entries: "codec_name,sample_rate,channels")
        #expect(audio["codec_name"] == "aac" && audio["sample_rate"] == "48000" && audio["channels"] == "2", "\(audio)")
        #expect(try TestMedia.packetCount(path, stream: "v:0") == 50)
        // About 2 s of audio: 48000 * 2 / 1024 frames, give or take the encoder's priming.
        let audioPackets = try TestMedia.packetCount(path, stream: "a:0")
        #expect((93...96).contains(audioPackets), "\(audioPackets) audio packets")
        try TestMedia.decodesCleanly(path)
        #expect(clip.frames == 50)
        #expect(!FileManager.default.fileExists(atPath: path + ".part.mp4"))

        // Frames differ from one another (motion and noise), so an encoder has work to do: a repeated
        // picture would code in a few dozen bytes a frame.
        let sizes = try TestMedia.run(
            "ffprobe", ["-v", "error", "-select_streams", "v:0", "-show_entries", "packet=size", "-of", "csv=p=0", path]
        ).split(whereSeparator: \.isNewline).compactMap { Int($0.trimmingCharacters(in: CharacterSet(charactersIn: ", "))) }
        #expect(sizes.count == 50 && sizes.filter { $0 < 60 }.isEmpty, "\(sizes)")
    }

    @Test func badSizeIsRefusedWithoutAFile() throws {
        let dir = try TestMedia.temporaryDirectory("farm-clip")
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("odd.mp4").path
        #expect(throws: MediaError.self) { try SyntheticClip(width: 321, height: 180, seconds: 1).write(to: path) }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path).isEmpty)
    }
}
