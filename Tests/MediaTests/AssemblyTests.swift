import CFFmpeg
@testable import FarmMedia
import FarmTestSupport
import Foundation
import Testing

/// The assembler's limits: descriptors, streams the container cannot hold, hostile segment bytes.
@Suite struct AssemblyTests {
    init() { MediaLog.quiet() }

    /// Splits `source` into one packet file per keyframe, as a node's results would arrive.
    func splitPerKeyframe(_ source: String, into dir: URL) throws -> (SourceIndex, [String]) {
        let index = try SourceIndex.scan(path: source)
        let payloads = (0..<index.keyframes.count).map { i in
            SegmentPayload(
                index: i, packets: index.payloadPackets(startKeyframe: i, endKeyframe: i + 1),
                path: dir.appendingPathComponent("seg\(i).pkt").path)
        }
        try SegmentSplitter.split(path: source, index: index, payloads: payloads, observer: { _ in nil }, written: { _, _ in })
        return (index, payloads.map(\.path))
    }

    /// Open descriptors of this process on files under `dir` (other tests' files do not count).
    func openFiles(under dir: URL) -> Int {
        let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
        return fds.filter { fd in
            ((try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\(fd)")) ?? "").hasPrefix(dir.path + "/seg")
        }.count
    }

    /// 300 one-frame segments: the assembler holds one segment file open at a time, however many
    /// there are (a day of 4 s segments is 21,600 files).
    @Test func manySegmentsAreJoinedWithOneFileOpenAtATime() throws {
        let dir = try TestMedia.temporaryDirectory("farm-many")
        defer { try? FileManager.default.removeItem(at: dir) }
        let source = dir.appendingPathComponent("src.mp4").path
        try TestMedia.makeClip(
            at: source, seconds: 12, size: "64x48", audio: false,
            videoArgs: ["-c:v", "libx264", "-preset", "ultrafast", "-g", "1"])
        let (index, segments) = try splitPerKeyframe(source, into: dir)
        #expect(segments.count == 300)
        let output = dir.appendingPathComponent("out.mp4").path
        var mostOpen = 0
        var polls = 0
        let report = try Assembler.assemble(
            AssemblyRequest(
                sourcePath: source, videoStreamIndex: index.videoStreamIndex, segmentFiles: segments, outputPath: output,
                container: "mp4")
        ) {
            polls += 1
            mostOpen = max(mostOpen, openFiles(under: dir))
            return false
        }
        #expect(polls > 300)
        #expect(mostOpen == 1, "\(mostOpen) segment files open at once")
        #expect(report.segmentPackets == Array(repeating: 1, count: 300))
        #expect(try TestMedia.frameSeconds(output) == TestMedia.frameSeconds(source))
    }

    @Test func aSubtitleStreamMP4CannotHoldIsNamedBeforeAnyEncoding() throws {
        let dir = try TestMedia.temporaryDirectory("farm-subs")
        defer { try? FileManager.default.removeItem(at: dir) }
        let srt = dir.appendingPathComponent("subs.srt").path
        try "1\n00:00:00,000 --> 00:00:01,000\nHello\n".write(toFile: srt, atomically: true, encoding: .utf8)
        let source = dir.appendingPathComponent("src.mkv").path
        try TestMedia.run(
            "ffmpeg",
            ["-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25", "-f", "lavfi", "-i",
             "sine=sample_rate=48000", "-i", srt, "-map", "0", "-map", "1", "-map", "2", "-t", "1", "-c:v", "libx264",
             "-preset", "ultrafast", "-g", "25", "-c:a", "aac", "-c:s", "ass", source])
        let line = "stream 2 (subtitle: ass) cannot be stored in MP4; choose .mkv or drop it"
        #expect(try AssemblyRequest.unsupportedStreams(sourcePath: source, container: "mp4") == [line])
        #expect(try AssemblyRequest.unsupportedStreams(sourcePath: source, container: "matroska").isEmpty)
        let error = #expect(throws: MediaError.self) { try AssemblyRequest.checkStreams(sourcePath: source, container: "mp4") }
        #expect(error?.message == "\(source): \(line)")
        #expect(error?.code == .unsupported)
        #expect(throws: Never.self) { try AssemblyRequest.checkStreams(sourcePath: source, container: "matroska") }

        // Assembly, where the check used to be the only one, says the same.
        let (index, segments) = try splitPerKeyframe(source, into: dir)
        let assembly = #expect(throws: MediaError.self) {
            try Assembler.assemble(
                AssemblyRequest(
                    sourcePath: source, videoStreamIndex: index.videoStreamIndex, segmentFiles: segments,
                    outputPath: dir.appendingPathComponent("out.mp4").path, container: "mp4"))
        }
        #expect(assembly?.message == "\(source): \(line)")
    }

    /// A segment whose times are near Int64.max (a hostile node's): the join fails with one line.
    @Test func segmentTimesNearTheLimitOfSixtyFourBitsFailTheJoinWithOneLine() throws {
        let dir = try TestMedia.temporaryDirectory("farm-far")
        defer { try? FileManager.default.removeItem(at: dir) }
        let source = dir.appendingPathComponent("src.mp4").path
        try TestMedia.makeClip(
            at: source, seconds: 1, size: "64x48", audio: false, videoArgs: ["-c:v", "libx264", "-preset", "ultrafast", "-g", "5"])
        let (index, segments) = try splitPerKeyframe(source, into: dir)
        // Segment 1 rewritten with every time, decode time and duration at Int64.max (one past the
        // last decode time was where a join used to trap).
        let reader = try PacketFileReader(path: segments[1])
        let hostile = dir.appendingPathComponent("hostile.pkt").path
        let writer = try PacketFileWriter(path: hostile, header: reader.header)
        let packet = Packet()
        while try reader.read(into: packet) {
            packet.pts = Int64.max
            packet.dts = Int64.max
            packet.duration = Int64.max
            try writer.write(packet)
        }
        try writer.close()
        var files = segments
        files[1] = hostile
        let error = #expect(throws: MediaError.self) {
            try Assembler.assemble(
                AssemblyRequest(
                    sourcePath: source, videoStreamIndex: index.videoStreamIndex, segmentFiles: files,
                    outputPath: dir.appendingPathComponent("out.mp4").path, container: "mp4"))
        }
        #expect(
            error?.message == "segment 1: packet 0 has the time 9223372036854775807, beyond ±2^61 ticks", "\(String(describing: error))")
        #expect(error?.message.contains("\n") == false)
    }

    /// AV1 OBU sizes come from a node: LEB128 sizes past the data, over 8 bytes long, or near 2^64
    /// end the walk instead of overflowing the offset.
    @Test func av1OBUWalkSurvivesHostileSizes() {
        let cases: [[UInt8]] = [
            [0x12, 0x00, 0x32, 0x0B],  // temporal delimiter, size 0, then a frame OBU with no room
            [0x32] + [UInt8](repeating: 0xFF, count: 9) + [0x01],  // a size longer than 8 bytes
            [0x32, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F, 0x00],  // a size near 2^56
            [0x32, 0x80],  // a size cut short
            [0x36],  // an extension byte missing
        ]
        for bytes in cases {
            bytes.withUnsafeBytes { #expect(!ParameterSets.hasSequenceHeader($0), "\(bytes)") }
        }
        // A sequence header after a temporal delimiter is still found.
        [UInt8]([0x12, 0x00, 0x0A, 0x01, 0x00]).withUnsafeBytes { #expect(ParameterSets.hasSequenceHeader($0)) }
    }
}
