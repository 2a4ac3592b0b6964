import CFFmpeg
import FarmHWEncode
import FarmMedia
import FarmTestSupport
import Foundation
import Testing

/// The media path without the network: index, split at keyframes, encode each segment, join, verify.
@Suite struct PipelineTests {
    init() { MediaLog.quiet() }

    /// Runs every segment through the node's encoder and joins them; returns the output path.
    func render(
        source: String, codec: VideoCodec, keyframesPerSegment: Int, output: String,
        attempts: (Int, EncoderConfig) -> [EncodeAttempt] = { _, c in [EncodeAttempt(config: c, isHardware: false, fault: nil)] },
        check: (Int, SegmentEncodeReport) -> Void = { _, _ in }
    ) throws -> (SourceIndex, AssemblyReport) {
        let dir = (output as NSString).deletingLastPathComponent
        let index = try SourceIndex.scan(path: source)
        var cuts = Array(stride(from: 0, to: index.keyframes.count, by: keyframesPerSegment))
        cuts.append(index.keyframes.count)
        let payloads = (0..<cuts.count - 1).map { i in
            SegmentPayload(
                index: i, packets: index.payloadPackets(startKeyframe: cuts[i], endKeyframe: cuts[i + 1]),
                path: "\(dir)/seg\(i).pkt")
        }
        try SegmentSplitter.split(path: source, index: index, payloads: payloads, observer: { _ in nil }, written: { _, _ in })
        let config = try EncoderCatalog.configuration(
            for: index, codec: codec, encoder: EncoderCatalog.softwareEncoder(for: codec)!, crf: nil, preset: "ultrafast",
            threads: 1)
        var encoded: [String] = []
        for i in 0..<cuts.count - 1 {
            let request = SegmentEncodeRequest(
                input: payloads[i].path, output: "\(dir)/enc\(i).pkt", config: config,
                startPTS: i == 0 ? nil : index.keyframes[cuts[i]].pts,
                endPTS: cuts[i + 1] < index.keyframes.count ? index.keyframes[cuts[i + 1]].pts : nil,
                expectedFrames: index.frames(fromKeyframe: cuts[i], toKeyframe: cuts[i + 1]))
            let report = try SegmentEncoder.encode(request, attempts: attempts(i, config), cooldown: EncoderCooldown())
            #expect(report.frames == request.expectedFrames)
            check(i, report)
            encoded.append(request.output)
        }
        let report = try Assembler.assemble(
            AssemblyRequest(
                sourcePath: source, videoStreamIndex: index.videoStreamIndex, segmentFiles: encoded, outputPath: output,
                container: AssemblyRequest.container(forOutput: output)))
        _ = try OutputVerifier.verify(
            path: output, videoStreamIndex: report.videoOutputIndex, expectedFrames: index.totalFrames,
            expectedPackets: report.packetsPerStream)
        return (index, report)
    }

    @Test func closedGOPWithBFramesAndAudioKeepsEveryFrameTime() throws {
        let dir = try TestMedia.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let source = dir.appendingPathComponent("src.mp4").path
        try TestMedia.makeClip(at: source, seconds: 6, videoArgs: ["-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-bf", "3"])
        let output = dir.appendingPathComponent("out.mp4").path
        let (index, _) = try render(source: source, codec: .h264, keyframesPerSegment: 2, output: output)
        #expect(index.totalFrames == 150)
        #expect(index.keyframes.allSatisfy { $0.isClean })
        #expect(try TestMedia.frameSeconds(output) == TestMedia.frameSeconds(source))
        #expect(try TestMedia.packetCount(output, stream: "a:0") == TestMedia.packetCount(source, stream: "a:0"))
        try TestMedia.decodesCleanly(output)
    }

    @Test func openGOPSourceLosesNoFrameAtCuts() throws {
        let dir = try TestMedia.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let source = dir.appendingPathComponent("open.mp4").path
        try TestMedia.makeClip(
            at: source, seconds: 6, audio: false,
            videoArgs: ["-c:v", "libx264", "-preset", "ultrafast", "-g", "20", "-bf", "3", "-x264-params", "open-gop=1:scenecut=0"])
        let output = dir.appendingPathComponent("out.mkv").path
        let (index, _) = try render(source: source, codec: .h264, keyframesPerSegment: 1, output: output)
        #expect(index.keyframes.dropFirst().contains { !$0.isClean })
        #expect(try TestMedia.frameSeconds(output).count == TestMedia.frameSeconds(source).count)
        try TestMedia.decodesCleanly(output)
    }

    @Test(arguments: ["mp4", "mkv"])
    func segmentsFromDifferentEncodersJoinWithInBandParameterSets(container: String) throws {
        let dir = try TestMedia.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let source = dir.appendingPathComponent("src.mp4").path
        try TestMedia.makeClip(at: source, seconds: 6, videoArgs: ["-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-bf", "2"])
        let output = dir.appendingPathComponent("mixed.\(container)").path
        // Odd segments come from an encoder with other parameter sets (no B-frames, CAVLC), as a
        // hardware encoder's would.
        let (_, report) = try render(
            source: source, codec: .h264, keyframesPerSegment: 2, output: output,
            attempts: { i, config in
                var other = config
                other.options = ["x264-params": "ref=3:bframes=2:cabac=1"]
                return [EncodeAttempt(config: i % 2 == 1 ? other : config, isHardware: false, fault: nil)]
            })
        #expect(report.inBandParameterSets)
        // Matroska cannot start below zero: when the AAC priming starts before the video, every stream
        // moves by the same amount; frame-to-frame times stay exact.
        #expect(try TestMedia.relativeFrameTimes(output) == TestMedia.relativeFrameTimes(source))
        try TestMedia.decodesCleanly(output)
        if container == "mp4" {
            #expect(try TestMedia.streamInfo(output, stream: "v:0", entries: "codec_tag_string")["codec_tag_string"] == "avc3")
        }
    }

    /// A hardware segment without B-frames beside software ones with them (libx264 bframes=0 and
    /// bframes=3, nothing else different), on a source whose time base is one tick a frame: no tick is
    /// left between the segments' own decode times, which the assembler therefore chooses itself.
    @Test(arguments: ["mp4", "mkv"])
    func segmentsOfDifferentReorderDepthJoinFrameExact(container: String) throws {
        let dir = try TestMedia.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let source = dir.appendingPathComponent("src.mp4").path
        try TestMedia.makeClip(
            at: source, seconds: 4, size: "160x120",
            videoArgs: ["-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-bf", "2"], extra: ["-video_track_timescale", "25"])
        #expect(try TestMedia.streamInfo(source, stream: "v:0", entries: "time_base")["time_base"] == "1/25")
        let output = dir.appendingPathComponent("joined.\(container)").path
        let (index, report) = try render(
            source: source, codec: .h264, keyframesPerSegment: 1, output: output,
            attempts: { i, config in
                var depth = config
                depth.options = ["x264-params": i % 2 == 0 ? "bframes=0" : "bframes=3"]
                return [EncodeAttempt(config: depth, isHardware: i % 2 == 0, fault: nil)]
            })
        #expect(report.segmentPackets.count == 4)
        #expect(report.videoPackets == index.totalFrames)
        // Matroska moves every stream by the AAC priming (see above); MP4 keeps the times as they are.
        if container == "mp4" {
            #expect(try TestMedia.frameSeconds(output) == TestMedia.frameSeconds(source))
        } else {
            #expect(try TestMedia.relativeFrameTimes(output) == TestMedia.relativeFrameTimes(source))
        }
        if container == "mp4" {
            // Matroska stores presentation times only; MP4 stores decode times, which must increase.
            let decodeTimes = try TestMedia.run(
                "ffprobe", ["-v", "error", "-select_streams", "v:0", "-show_entries", "packet=dts", "-of", "csv=p=0", output]
            ).split(whereSeparator: \.isNewline).map { Int64($0.trimmingCharacters(in: CharacterSet(charactersIn: ", "))) }
            #expect(decodeTimes.count == 100 && decodeTimes.allSatisfy { $0 != nil })
            #expect(zip(decodeTimes, decodeTimes.dropFirst()).allSatisfy { $0! < $1! }, "\(decodeTimes)")
        }
        try TestMedia.decodesCleanly(output)
    }

    @Test func segmentCheckRejectsDamageTheDecoderWouldConceal() throws {
        let dir = try TestMedia.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let source = dir.appendingPathComponent("src.mp4").path
        try TestMedia.makeClip(at: source, seconds: 2, videoArgs: ["-c:v", "libx264", "-preset", "ultrafast", "-g", "50"])
        // One segment (one GOP of 50 frames), encoded by the node's path, which runs the check itself too.
        _ = try render(
            source: source, codec: .h264, keyframesPerSegment: 1, output: dir.appendingPathComponent("out.mp4").path)
        let encodedPath = dir.appendingPathComponent("enc0.pkt").path
        // The check passes the segment as encoded.
        var frames = 0
        try decodeAll(try PacketFileReader(path: encodedPath), threads: 1, check: true) { _ in frames += 1 }
        #expect(frames == 50)

        // The same packets with the second half of one P-frame's bytes inverted: the file still reads, only the
        // frame is damaged.
        let reader = try PacketFileReader(path: encodedPath)
        let damagedPath = dir.appendingPathComponent("damaged.pkt").path
        let writer = try PacketFileWriter(path: damagedPath, header: reader.header)
        let packet = Packet()
        var number = 0
        while try reader.read(into: packet) {
            if number == 20 {
                #expect(packet.pointer.pointee.flags & AV_PKT_FLAG_KEY == 0)
                try #require(av_packet_make_writable(packet.pointer) == 0)
                let size = Int(packet.pointer.pointee.size)
                for i in size / 2..<size { packet.pointer.pointee.data[i] ^= 0xFF }
            }
            try writer.write(packet)
            number += 1
        }
        try writer.close()
        let error = #expect(throws: MediaError.self) {
            try decodeAll(try PacketFileReader(path: damagedPath), threads: 1, check: true) { _ in }
        }
        #expect(error?.code == .invalidInput || error?.code == .verificationFailed, "\(String(describing: error))")
        // Without the check the decoder conceals the damage and gives every frame, as if nothing were wrong.
        var concealed = 0
        try decodeAll(try PacketFileReader(path: damagedPath), threads: 1) { _ in concealed += 1 }
        #expect(concealed == 50)
    }

    @Test(arguments: [HardwareFault.atOpen, .afterFrames(10)])
    func hardwareFailureFallsBackToSoftwareAndStaysExact(fault: HardwareFault) throws {
        let dir = try TestMedia.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let source = dir.appendingPathComponent("src.mp4").path
        try TestMedia.makeClip(at: source, seconds: 4, videoArgs: ["-c:v", "libx264", "-preset", "ultrafast", "-g", "25"])
        let output = dir.appendingPathComponent("fallback.mp4").path
        let cooldown = EncoderCooldown()
        var reasons: [String?] = []
        _ = try render(
            source: source, codec: .h264, keyframesPerSegment: 1, output: output,
            attempts: { _, config in
                var standIn = config
                standIn.options = ["x264-params": "bframes=0"]
                return [
                    EncodeAttempt(config: standIn, isHardware: true, fault: fault),
                    EncodeAttempt(config: config, isHardware: false, fault: nil),
                ]
            },
            check: { _, report in reasons.append(report.fallbackReason) })
        #expect(reasons.allSatisfy { $0?.contains("injected fault") == true })
        #expect(try TestMedia.frameSeconds(output) == TestMedia.frameSeconds(source))
        try TestMedia.decodesCleanly(output)
        _ = cooldown
    }

    /// Encoder settings come from an assignment: integers out of range fail the attempt with one
    /// line instead of trapping in a conversion.
    @Test(arguments: [("thread count", 1 << 40), ("GOP size", -1), ("width", Int(Int32.max) + 1)])
    func encoderSettingsOutOfRangeFailWithOneLine(field: String, value: Int) throws {
        let dir = try TestMedia.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let source = dir.appendingPathComponent("src.mp4").path
        try TestMedia.makeClip(at: source, seconds: 1, size: "64x48", audio: false)
        let index = try SourceIndex.scan(path: source)
        let input = dir.appendingPathComponent("seg0.pkt").path
        try SegmentSplitter.split(
            path: source, index: index,
            payloads: [SegmentPayload(index: 0, packets: 0..<index.packetCount, path: input)], observer: { _ in nil },
            written: { _, _ in })
        var config = try EncoderCatalog.configuration(
            for: index, codec: .h264, encoder: "libx264", crf: nil, preset: "ultrafast", threads: 1)
        switch field {
        case "thread count": config.threads = value
        case "GOP size": config.gopSize = value
        default: config.width = value
        }
        let request = SegmentEncodeRequest(
            input: input, output: dir.appendingPathComponent("enc0.pkt").path, config: config, startPTS: nil, endPTS: nil,
            expectedFrames: index.totalFrames)
        let error = #expect(throws: MediaError.self) {
            try SegmentEncoder.encode(
                request, attempts: [EncodeAttempt(config: config, isHardware: false, fault: nil)], cooldown: EncoderCooldown())
        }
        #expect(error?.message.contains("encoder \(field) \(value) is outside") == true, "\(String(describing: error))")
    }

    @Test func cooldownKeepsAFailedEncoderOutForItsPeriod() {
        let cooldown = EncoderCooldown(period: .seconds(60))
        let now = ContinuousClock.now
        #expect(!cooldown.isCoolingDown("h264_vaapi", now: now))
        cooldown.coolDown("h264_vaapi", now: now)
        #expect(cooldown.isCoolingDown("h264_vaapi", now: now + .seconds(59)))
        #expect(!cooldown.isCoolingDown("h264_vaapi", now: now + .seconds(61)))
    }
}
