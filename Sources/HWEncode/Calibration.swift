internal import CFFmpeg
internal import FarmMedia

/// A short encode at node start-up that measures how fast this node encodes, so the coordinator can
/// give faster nodes more work before any real segment has finished. The picture is synthetic
/// (a moving gradient with texture) and the same on every node: the figures compare nodes, they do
/// not predict a given source's speed. Real segments refine them.
public enum Calibration {
    /// Frames per second of `encoder` on 1280x720 at `preset`, over `frames` frames.
    public static func framesPerSecond(encoder: String, preset: String = "medium", frames: Int = 24, threads: Int = 1)
        throws -> Double
    {
        let codec = VideoCodec.allCases.first { EncoderCatalog.softwareEncoders(for: $0).contains(encoder) } ?? .h264
        let config = EncoderConfig(
            codec: codec, encoder: encoder, crf: codec.defaultCRF, preset: preset, pixelFormat: "yuv420p", width: 1280,
            height: 720, timeBase: Rational(1, 25), frameRate: Rational(25, 1), threads: threads,
            options: encoder == "libx265" ? ["x265-params": "log-level=error"] : [:])
        let encoder = try VideoEncoder(config: config)
        let frame = Frame()
        frame.pointer.pointee.format = AV_PIX_FMT_YUV420P.rawValue
        frame.pointer.pointee.width = 1280
        frame.pointer.pointee.height = 720
        try check(av_frame_get_buffer(frame.pointer, 0), "allocating a calibration frame")
        let packet = Packet()
        let clock = ContinuousClock()
        let start = clock.now
        var state: UInt32 = 0x9E37_79B9
        for n in 0..<frames {
            try check(av_frame_make_writable(frame.pointer), "making a calibration frame writable")
            let f = frame.pointer.pointee
            let luma = f.data.0!
            let stride = Int(f.linesize.0)
            for y in 0..<720 {
                let row = luma + y * stride
                for x in 0..<1280 {
                    state = state &* 1_664_525 &+ 1_013_904_223
                    row[x] = UInt8(truncatingIfNeeded: (x + y + n * 6) / 3 + Int(state >> 28))
                }
            }
            for (plane, planeStride) in [(f.data.1!, Int(f.linesize.1)), (f.data.2!, Int(f.linesize.2))] {
                for y in 0..<360 { (plane + y * planeStride).initialize(repeating: UInt8(truncatingIfNeeded: 112 + n), count: 640) }
            }
            frame.pointer.pointee.pts = Int64(n)
            try encoder.send(frame.pointer)
            while try encoder.receive(into: packet) {}
        }
        try encoder.send(nil)
        while try encoder.receive(into: packet) {}
        let seconds = (clock.now - start).seconds
        return seconds > 0 ? Double(frames) / seconds : 0
    }
}
