public import FarmMedia
public import FarmProtocol

/// The pinned settings and stream header of an h264 job, for driving `FarmState` without media: the scheduler
/// simulation and the state's unit tests use the same ones.
public enum StateFixtures {
    /// libx264 at CRF 23, preset medium, `width`×`height` at 25 fps.
    public static func settings(width: Int, height: Int) -> EncodeSettings {
        EncodeSettings(
            codec: "h264", encoder: "libx264", crf: 23, preset: "medium", pixelFormat: "yuv420p", width: Int32(width),
            height: Int32(height), timeBaseNum: 1, timeBaseDen: 25, frameRateNum: 25, frameRateDen: 1,
            sampleAspectNum: 1, sampleAspectDen: 1, colorRange: 0, colorPrimaries: 2, colorTransfer: 2, colorSpace: 2,
            chromaLocation: 0, gopSize: 250, threads: 1, options: [:])
    }

    /// An h264 stream header of `width`×`height`, as a packet file carries it.
    public static func parameters(width: Int, height: Int) -> CodecParameters {
        var bytes: [UInt8] = []
        func u32(_ v: UInt32) { withUnsafeBytes(of: v.bigEndian) { bytes.append(contentsOf: $0) } }
        // video, h264, tag, format, bit rate (8 bytes), bits, profile, level, width, height, sample aspect,
        // colour range, primaries, transfer, space, chroma location, field order, no extradata
        for v: UInt32 in [0, 27, 0, 0, 0, 0, 0, 8, 100, 31, UInt32(width), UInt32(height), 1, 1, 0, 0, 2, 2, 2, 0, 0, 0] {
            u32(v)
        }
        return try! CodecParameters(serialized: bytes)
    }
}
