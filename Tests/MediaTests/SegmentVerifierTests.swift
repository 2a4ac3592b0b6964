import CFFmpeg
import FarmHWEncode
import FarmMedia
import FarmTestSupport
import Foundation
import Testing

/// A segment returned by a node is checked as if the node were hostile: real encodes made here with
/// libavcodec, and the forgeries a hostile node could send instead.
@Suite struct SegmentVerifierTests {
    init() { MediaLog.quiet() }

    /// A source clip with motion everywhere (a zooming fractal with light temporal noise), cut into
    /// segments of two keyframes; segment 1 has joins on both sides.
    struct Fixture {
        let dir: URL
        let index: SourceIndex
        let config: EncoderConfig
        let sourcePath: String
        let startPTS: Int64?
        let endPTS: Int64?
        let frames: Int

        init(preset: String = "medium", options: [String: String] = ["bf": "0"], gopSize: Int = 10) throws {
            dir = try TestMedia.temporaryDirectory()
            let source = dir.appendingPathComponent("src.mp4").path
            _ = try TestMedia.run(
                "ffmpeg",
                [
                    "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    "mandelbrot=size=320x240:rate=25,noise=alls=6:allf=t", "-t", "6", "-c:v", "libx264", "-preset",
                    "ultrafast", "-g", "25", "-bf", "2", "-pix_fmt", "yuv420p", source,
                ])
            index = try SourceIndex.scan(path: source)
            let payload = SegmentPayload(
                index: 1, packets: index.payloadPackets(startKeyframe: 2, endKeyframe: 4), path: dir.appendingPathComponent("src-1.pkt").path)
            try SegmentSplitter.split(path: source, index: index, payloads: [payload], observer: { _ in nil }, written: { _, _ in })
            sourcePath = payload.path
            startPTS = index.keyframes[2].pts
            endPTS = index.keyframes[4].pts
            frames = index.frames(fromKeyframe: 2, toKeyframe: 4)
            var config = try EncoderCatalog.configuration(
                for: index, codec: .h264, encoder: "libx264", crf: nil, preset: preset, threads: 1)
            config.gopSize = gopSize
            config.options.merge(options) { _, new in new }
            self.config = config
        }

        /// The job's check for segment 1.
        var check: SegmentCheck {
            SegmentCheck(
                segment: 1, sourcePath: sourcePath, startPTS: startPTS, endPTS: endPTS, codec: config.codec.rawValue,
                encoder: config.encoder, crf: config.crf, pixelFormat: config.pixelFormat, width: config.width,
                height: config.height, sampleAspectRatio: config.sampleAspectRatio, colorRange: config.colorRange,
                colorPrimaries: config.colorPrimaries, colorTransfer: config.colorTransfer, colorSpace: config.colorSpace,
                gopSize: config.gopSize)
        }

        /// Encodes segment 1 as a node would, with `change` applied to the job's settings.
        func encode(_ name: String, change: (inout EncoderConfig) -> Void = { _ in }) throws -> String {
            var c = config
            change(&c)
            let output = dir.appendingPathComponent(name).path
            let request = SegmentEncodeRequest(
                input: sourcePath, output: output, config: c, startPTS: startPTS, endPTS: endPTS, expectedFrames: frames)
            _ = try SegmentEncoder.encode(request)
            return output
        }

        /// Rewrites a packet file: `transform` gets its packets in order and returns those to write.
        func rewrite(_ input: String, to name: String, header: PacketStreamHeader? = nil, _ transform: ([Packet]) -> [Packet]) throws -> String {
            let reader = try PacketFileReader(path: input)
            var packets: [Packet] = []
            while true {
                let p = Packet()
                guard try reader.read(into: p) else { break }
                packets.append(p)
            }
            let output = dir.appendingPathComponent(name).path
            let writer = try PacketFileWriter(path: output, header: header ?? reader.header)
            for p in transform(packets) { try writer.write(p) }
            try writer.close()
            return output
        }

        func refusal(_ path: String) -> String? {
            do {
                _ = try SegmentVerifier.verify(resultPath: path, check)
                return nil
            } catch {
                return "\(error)"
            }
        }
    }

    @Test func anHonestSegmentPasses() throws {
        let f = try Fixture()
        defer { try? FileManager.default.removeItem(at: f.dir) }
        let verdict = try SegmentVerifier.verify(resultPath: try f.encode("honest.pkt"), f.check)
        #expect(verdict.frames == f.frames)
        #expect(verdict.scores.count >= 3)
        #expect(verdict.scores.first?.frame == 0)
        #expect(verdict.scores.last?.frame == f.frames - 1)
        #expect((verdict.closest?.margin ?? -1) >= SegmentVerifier.doubtfulMargin)
    }

    /// A refusal by a hair is reported as doubtful (the coordinator then holds nothing against the node); a clear
    /// one is not. The same honest segment against thresholds set just above, and well above, its own score.
    @Test func aRefusalByAHairIsDoubtfulAndAClearOneIsNot() throws {
        let f = try Fixture()
        defer { try? FileManager.default.removeItem(at: f.dir) }
        let honest = try f.encode("honest.pkt")
        var check = f.check
        check.randomSamples = 0
        check.threshold = 0
        let lowest = try #require(try SegmentVerifier.verify(resultPath: honest, check).scores.map(\.ssim).min())
        for (above, code) in [(SegmentVerifier.doubtfulMargin / 2, MediaError.Code.verificationDoubtful), (0.05, .verificationFailed)] {
            check.threshold = lowest + above
            let error = try #require(throws: MediaError.self) { try SegmentVerifier.verify(resultPath: honest, check) }
            #expect(error.code == code, "\(above): \(error.message)")
            #expect(error.message.contains("doubtful") == (code == .verificationDoubtful), "\(error.message)")
        }
    }

    @Test func reversedGOPsRestampedWithTheOriginalTimesAreRefused() throws {
        let f = try Fixture()
        defer { try? FileManager.default.removeItem(at: f.dir) }
        let honest = try f.encode("honest.pkt")
        // No B-frames: packet order is presentation order, so each position keeps its original times.
        let reversed = try f.rewrite(honest, to: "reversed.pkt") { packets in
            var gops: [[Packet]] = []
            for p in packets {
                if p.isKeyframe || gops.isEmpty { gops.append([]) }
                gops[gops.count - 1].append(p)
            }
            let times = packets.map { ($0.pts, $0.dts, $0.duration) }
            let out = Array(gops.reversed().joined())
            for (p, t) in zip(out, times) { (p.pts, p.dts, p.duration) = t }
            return out
        }
        let reason = try #require(f.refusal(reversed))
        #expect(reason.hasPrefix("segment 1 refused: frame "))
        #expect(reason.contains("SSIM"))
    }

    @Test func theSourcesOwnPacketsAreRefused() throws {
        let f = try Fixture()
        defer { try? FileManager.default.removeItem(at: f.dir) }
        // The source's packets of the segment's own frames, under the job's header: a passthrough.
        let honest = try PacketFileReader(path: try f.encode("honest.pkt")).header
        let passthrough = try f.rewrite(f.sourcePath, to: "passthrough.pkt", header: honest) { packets in
            packets.filter { p in (f.startPTS.map { p.pts >= $0 } ?? true) && (f.endPTS.map { p.pts < $0 } ?? true) }
        }
        #expect(try #require(f.refusal(passthrough)).hasPrefix("segment 1 refused: "))
        // Even where the source's GOPs happen to fit the job's, copied packets are no encode.
        var check = f.check
        check.gopSize = 0
        let error = try #require(throws: MediaError.self) { try SegmentVerifier.verify(resultPath: passthrough, check) }
        #expect(error.message.contains("byte-identical to a source packet"))
    }

    @Test func aLazyEncodeIsRefused() throws {
        let f = try Fixture()
        defer { try? FileManager.default.removeItem(at: f.dir) }
        let lazy = try f.encode("lazy.pkt") {
            $0.preset = "ultrafast"
            $0.crf += 10
        }
        let reason = try #require(f.refusal(lazy))
        #expect(reason.hasPrefix("segment 1 refused: packet 0: libx264 ran at CRF \(f.config.crf + 10)"))
    }

    @Test func aMissingOrDuplicatedFrameIsRefused() throws {
        let f = try Fixture()
        defer { try? FileManager.default.removeItem(at: f.dir) }
        let honest = try f.encode("honest.pkt")
        let missing = try f.rewrite(honest, to: "missing.pkt") { Array($0.dropLast()) }
        #expect(try #require(f.refusal(missing)).contains("frames"))
        let duplicated = try f.rewrite(honest, to: "duplicated.pkt") { packets in
            var out = packets
            let copy = Packet()
            av_packet_ref(copy.pointer, packets[packets.count - 1].pointer)
            copy.pts += 1
            copy.dts += 1
            out.append(copy)
            return out
        }
        #expect(f.refusal(duplicated) != nil)
    }

    @Test func aWrongSizeOrPixelFormatIsRefused() throws {
        let f = try Fixture()
        defer { try? FileManager.default.removeItem(at: f.dir) }
        let small = try f.encode("small.pkt") {
            $0.width = 160
            $0.height = 120
        }
        #expect(try #require(f.refusal(small)).contains("picture size 160x120"))
        let chroma = try f.encode("yuv444.pkt") { $0.pixelFormat = "yuv444p" }
        #expect(try #require(f.refusal(chroma)).contains("pixel format yuv444p"))
    }

    @Test func anOpenGOPOrAnotherEncoderIsRefused() throws {
        let f = try Fixture()
        defer { try? FileManager.default.removeItem(at: f.dir) }
        let honest = try f.encode("honest.pkt")
        // Every frame after the first stripped of its keyframe mark but the first: the GOP rule on the job's 10.
        let long = try f.rewrite(honest, to: "long.pkt") { packets in
            for p in packets.dropFirst() { p.flags &= ~AV_PKT_FLAG_KEY }
            return packets
        }
        #expect(try #require(f.refusal(long)).contains("GOP"))
        var check = f.check
        check.encoder = "h264_vaapi"
        #expect(throws: MediaError.self) { try SegmentVerifier.verify(resultPath: honest, check) }
    }
}
