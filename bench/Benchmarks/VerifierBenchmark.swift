internal import FarmHWEncode
public import FarmMedia
public import FarmProtocol
internal import Foundation

#if canImport(Glibc)
    internal import Glibc
#endif

/// What checking a node's result costs the coordinator, against what encoding it cost the node: a generated
/// 720p clip is cut into segments as the coordinator cuts them, each is encoded as a software node does
/// (libx264, the job's preset, one thread per slot), then checked by `SegmentVerifier` with the coordinator's
/// defaults. Both run here, one after the other, on this process's CPU clock.
public enum VerifierBenchmark {
    public struct Report: Codable, Sendable {
        public var width: Int
        public var height: Int
        public var frames: Int
        public var segments: Int
        public var preset: String
        /// Frames compared at random positions in each segment, besides its first and last.
        public var randomSamples: Int
        /// CPU seconds of the encodes (a node's work) and of the checks (the coordinator's).
        public var encodeCPUSeconds: Double
        public var verifyCPUSeconds: Double
        /// The checks' CPU as a share of the encodes' (the goal is at most 0.15).
        public var verifyShare: Double
        /// Frames one core encodes, and verifies, per second.
        public var encodeFPSPerCore: Double
        public var verifyFPSPerCore: Double
        /// Frames compared picture by picture in all.
        public var comparedFrames: Int
        /// Per tier: the software render nodes whose results the tier's coordinator keeps up with, its work
        /// threads (`--work-threads`, the tier's coordinator CPU) each verifying `verifyFPSPerCore`, every node core
        /// encoding `encodeFPSPerCore`.
        public var fleetPerTier: [String: Int]

        enum CodingKeys: String, CodingKey {
            case width, height, frames, segments, preset
            case randomSamples = "random_samples"
            case encodeCPUSeconds = "encode_cpu_s"
            case verifyCPUSeconds = "verify_cpu_s"
            case verifyShare = "verify_share"
            case encodeFPSPerCore = "encode_fps_per_core"
            case verifyFPSPerCore = "verify_fps_per_core"
            case comparedFrames = "compared_frames"
            case fleetPerTier = "fleet_per_tier"
        }
    }

    /// Runs the measurement in `directory` (created if needed; its files are removed afterwards).
    public static func run(
        directory: String, width: Int = 1280, height: Int = 720, seconds: Double = 8, segmentSeconds: Int = 2,
        preset: String = "medium", randomSamples: Int? = nil
    ) throws -> Report {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let source = directory + "/verify-source.mp4"
        defer { try? FileManager.default.removeItem(atPath: source) }
        try SyntheticClip(width: width, height: height, seconds: seconds, frameRate: 30, keyframeSeconds: segmentSeconds)
            .write(to: source)
        let index = try SourceIndex.scan(path: source)
        let config = try EncoderCatalog.configuration(
            for: index, codec: .h264, encoder: "libx264", crf: nil, preset: preset, threads: 1)
        var encodeCPU = 0.0
        var verifyCPU = 0.0
        var frames = 0
        var compared = 0
        let count = index.keyframes.count
        for segment in 0..<count {
            let end = segment + 1 < count ? segment + 1 : nil
            let packets = index.payloadPackets(startKeyframe: segment, endKeyframe: end ?? count)
            let sourcePath = "\(directory)/verify-src-\(segment).pkt"
            let resultPath = "\(directory)/verify-enc-\(segment).pkt"
            defer {
                unlink(sourcePath)
                unlink(resultPath)
            }
            try SegmentSplitter.split(
                path: source, index: index, payloads: [SegmentPayload(index: segment, packets: packets, path: sourcePath)],
                observer: { _ in nil }, written: { _, _ in })
            let startPTS = segment == 0 ? nil : index.keyframes[segment].pts
            let endPTS = end.map { index.keyframes[$0].pts }
            let expected = index.frames(fromKeyframe: segment, toKeyframe: end ?? count)
            var t0 = cpuSeconds()
            _ = try SegmentEncoder.encode(
                SegmentEncodeRequest(
                    input: sourcePath, output: resultPath, config: config, startPTS: startPTS, endPTS: endPTS,
                    expectedFrames: expected))
            encodeCPU += cpuSeconds() - t0
            var check = SegmentCheck(
                segment: segment, sourcePath: sourcePath, startPTS: startPTS, endPTS: endPTS, codec: config.codec.rawValue,
                encoder: config.encoder, crf: config.crf, pixelFormat: config.pixelFormat, width: config.width,
                height: config.height, sampleAspectRatio: config.sampleAspectRatio, colorRange: config.colorRange,
                colorPrimaries: config.colorPrimaries, colorTransfer: config.colorTransfer, colorSpace: config.colorSpace,
                gopSize: config.gopSize)
            if let randomSamples { check.randomSamples = randomSamples }
            t0 = cpuSeconds()
            let verdict = try SegmentVerifier.verify(resultPath: resultPath, check)
            verifyCPU += cpuSeconds() - t0
            frames += expected
            compared += verdict.scores.count
        }
        let encodeFPS = Double(frames) / max(encodeCPU, 1e-9)
        let verifyFPS = Double(frames) / max(verifyCPU, 1e-9)
        var fleet: [String: Int] = [:]
        for tier in Tier.allCases {
            // A software node keeps all its cores encoding; the coordinator's work threads verify.
            let nodeFPS = Double(tier.cpu) * encodeFPS
            fleet[tier.rawValue] = Int((Double(tier.spec.coordinatorCPU) * verifyFPS / nodeFPS).rounded(.down))
        }
        return Report(
            width: width, height: height, frames: frames, segments: count, preset: preset,
            randomSamples: randomSamples ?? SegmentCheck.defaultRandomSamples, encodeCPUSeconds: encodeCPU,
            verifyCPUSeconds: verifyCPU, verifyShare: verifyCPU / max(encodeCPU, 1e-9), encodeFPSPerCore: encodeFPS,
            verifyFPSPerCore: verifyFPS, comparedFrames: compared, fleetPerTier: fleet)
    }

    /// User and system CPU seconds of this process so far.
    static func cpuSeconds() -> Double {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        func seconds(_ t: timeval) -> Double { Double(t.tv_sec) + Double(t.tv_usec) / 1e6 }
        return seconds(usage.ru_utime) + seconds(usage.ru_stime)
    }
}
