internal import CFFmpeg

#if canImport(Glibc)
    internal import Glibc
#endif

/// A generated test clip: H.264 video (libx264) with a stereo AAC tone, written by libavcodec and
/// libavformat, for load tests that need sources of a given size without shipping media.
///
/// The picture is in the spirit of libavfilter's `testsrc2` with light temporal noise: a textured
/// gradient panning diagonally, a bright box bouncing across it, and noise that changes from frame
/// to frame, so an encoder has motion to search and detail to code. Frames are cut from a few
/// pre-rendered noisy planes (one row copy per line), which keeps generation cheap even for 1080p.
public struct SyntheticClip: Sendable {
    public var width: Int
    public var height: Int
    public var seconds: Double
    public var frameRate: Int
    /// Keyframe interval in seconds.
    public var keyframeSeconds: Int

    public init(width: Int, height: Int, seconds: Double, frameRate: Int = 30, keyframeSeconds: Int = 2) {
        self.width = width
        self.height = height
        self.seconds = seconds
        self.frameRate = frameRate
        self.keyframeSeconds = keyframeSeconds
    }

    /// Frames the clip holds.
    public var frames: Int { max(Int((seconds * Double(frameRate)).rounded()), 1) }

    /// Writes the clip to `path` (MP4; written under a temporary name and renamed when whole).
    public func write(to path: String, isCancelled: () -> Bool = { false }) throws {
        guard width >= 64, height >= 64, width % 2 == 0, height % 2 == 0, width <= 7680, height <= 4320 else {
            throw MediaError(.unsupported, "\(path): clip size \(width)x\(height) must be even, 64x64 to 7680x4320")
        }
        guard seconds > 0, seconds <= 3600, (1...120).contains(frameRate) else {
            throw MediaError(.unsupported, "\(path): clip of \(seconds) s at \(frameRate) fps is out of range")
        }
        let temporary = path + ".part.mp4"
        do {
            try writeFile(temporary, isCancelled: isCancelled)
            guard rename(temporary, path) == 0 else {
                throw MediaError(.io, "\(path): \(String(cString: strerror(errno)))")
            }
        } catch {
            unlink(temporary)
            throw error
        }
    }

    private func writeFile(_ path: String, isCancelled: () -> Bool) throws {
        let video = try ClipEncoder.video(width: width, height: height, frameRate: frameRate, gop: frameRate * keyframeSeconds)
        let audio = try ClipEncoder.audio(sampleRate: 48_000)
        let output = try OutputFile(path: path, format: "mp4")
        let videoParameters = try video.parameters()
        let audioParameters = try audio.parameters()
        let videoStream = try withExtendedLifetime(videoParameters) {
            try output.addStream(copying: videoParameters.pointer, timeBase: Rational(1, Int32(frameRate)))
        }
        let audioStream = try withExtendedLifetime(audioParameters) {
            try output.addStream(copying: audioParameters.pointer, timeBase: Rational(1, 48_000))
        }
        av_dict_set(&output.context.pointee.metadata, "title", "farm capacity clip \(width)x\(height)", 0)
        try output.writeHeader()

        let picture = PictureSource(width: width, height: height)
        let videoFrame = Frame()
        videoFrame.pointer.pointee.format = AV_PIX_FMT_YUV420P.rawValue
        videoFrame.pointer.pointee.width = Int32(width)
        videoFrame.pointer.pointee.height = Int32(height)
        try check(av_frame_get_buffer(videoFrame.pointer, 0), "\(path): allocating a frame")

        let samplesPerFrame = Int(audio.context.pointee.frame_size > 0 ? audio.context.pointee.frame_size : 1024)
        let audioFrame = Frame()
        audioFrame.pointer.pointee.format = AV_SAMPLE_FMT_FLTP.rawValue
        audioFrame.pointer.pointee.nb_samples = Int32(samplesPerFrame)
        audioFrame.pointer.pointee.sample_rate = 48_000
        try check(av_channel_layout_copy(&audioFrame.pointer.pointee.ch_layout, &audio.context.pointee.ch_layout), "\(path): audio layout")
        try check(av_frame_get_buffer(audioFrame.pointer, 0), "\(path): allocating audio")

        let packet = Packet()
        func drain(_ encoder: ClipEncoder, stream: UnsafeMutablePointer<AVStream>) throws {
            while true {
                packet.unref()
                let r = avcodec_receive_packet(encoder.context, packet.pointer)
                if r == farm_AVERROR_EAGAIN() || r == farm_AVERROR_EOF() { return }
                try check(r, "\(path): encoding")
                av_packet_rescale_ts(packet.pointer, encoder.context.pointee.time_base, stream.pointee.time_base)
                packet.streamIndex = Int(stream.pointee.index)
                try output.write(packet)
            }
        }

        let totalSamples = Int64(frames) * 48_000 / Int64(frameRate)
        var samplesWritten: Int64 = 0
        for n in 0..<frames {
            if isCancelled() { throw MediaError(.cancelled, "\(path): cancelled") }
            try check(av_frame_make_writable(videoFrame.pointer), "\(path): frame not writable")
            picture.draw(frame: n, into: videoFrame.pointer)
            videoFrame.pointer.pointee.pts = Int64(n)
            try check(avcodec_send_frame(video.context, videoFrame.pointer), "\(path): encoding video")
            try drain(video, stream: videoStream)
            // Audio keeps up with the video written so far.
            let due = Int64(n + 1) * 48_000 / Int64(frameRate)
            while samplesWritten < min(due, totalSamples) {
                let count = Int(min(Int64(samplesPerFrame), totalSamples - samplesWritten))
                try check(av_frame_make_writable(audioFrame.pointer), "\(path): audio frame not writable")
                audioFrame.pointer.pointee.nb_samples = Int32(count)
                Self.tone(into: audioFrame.pointer, from: samplesWritten, count: count)
                audioFrame.pointer.pointee.pts = samplesWritten
                try check(avcodec_send_frame(audio.context, audioFrame.pointer), "\(path): encoding audio")
                try drain(audio, stream: audioStream)
                samplesWritten += Int64(count)
                if count < samplesPerFrame { break }
            }
        }
        try check(avcodec_send_frame(video.context, nil), "\(path): flushing video")
        try drain(video, stream: videoStream)
        try check(avcodec_send_frame(audio.context, nil), "\(path): flushing audio")
        try drain(audio, stream: audioStream)
        try output.finish()
    }

    /// A 440 Hz tone at -12 dBFS on both channels.
    private static func tone(into frame: UnsafeMutablePointer<AVFrame>, from start: Int64, count: Int) {
        for channel in 0..<2 {
            guard let raw = frame.pointee.extended_data[channel] else { continue }
            let samples = UnsafeMutableRawPointer(raw).assumingMemoryBound(to: Float.self)
            for i in 0..<count {
                let t = Double(start + Int64(i)) / 48_000
                samples[i] = Float(0.25 * sin(2 * Double.pi * 440 * t))
            }
        }
    }
}

/// One encoder context of a synthetic clip; frees it on release.
private final class ClipEncoder {
    let context: UnsafeMutablePointer<AVCodecContext>

    private init(context: UnsafeMutablePointer<AVCodecContext>) { self.context = context }

    deinit {
        var c: UnsafeMutablePointer<AVCodecContext>? = context
        avcodec_free_context(&c)
    }

    static func video(width: Int, height: Int, frameRate: Int, gop: Int) throws -> ClipEncoder {
        guard let codec = avcodec_find_encoder_by_name("libx264") else {
            throw MediaError(.unsupported, "libx264 is not in this build of libavcodec: test clips cannot be made")
        }
        guard let ctx = avcodec_alloc_context3(codec) else { throw MediaError(.ffmpeg, "avcodec_alloc_context3 failed") }
        let encoder = ClipEncoder(context: ctx)
        ctx.pointee.width = Int32(width)
        ctx.pointee.height = Int32(height)
        ctx.pointee.pix_fmt = AV_PIX_FMT_YUV420P
        ctx.pointee.time_base = AVRational(num: 1, den: Int32(frameRate))
        ctx.pointee.framerate = AVRational(num: Int32(frameRate), den: 1)
        ctx.pointee.gop_size = Int32(gop)
        ctx.pointee.max_b_frames = 2
        ctx.pointee.flags |= AV_CODEC_FLAG_GLOBAL_HEADER
        var options: OpaquePointer? = nil
        defer { av_dict_free(&options) }
        // A quick source encode with B-frames and a fixed GOP, as cameras and editors deliver.
        av_dict_set(&options, "preset", "veryfast", 0)
        av_dict_set(&options, "crf", "20", 0)
        av_dict_set(&options, "x264-params", "scenecut=0:log=-1", 0)
        try check(avcodec_open2(ctx, codec, &options), "opening libx264 for a test clip")
        return encoder
    }

    static func audio(sampleRate: Int32) throws -> ClipEncoder {
        guard let codec = avcodec_find_encoder_by_name("aac") else {
            throw MediaError(.unsupported, "the aac encoder is not in this build of libavcodec")
        }
        guard let ctx = avcodec_alloc_context3(codec) else { throw MediaError(.ffmpeg, "avcodec_alloc_context3 failed") }
        let encoder = ClipEncoder(context: ctx)
        ctx.pointee.sample_fmt = AV_SAMPLE_FMT_FLTP
        ctx.pointee.sample_rate = sampleRate
        ctx.pointee.bit_rate = 128_000
        ctx.pointee.time_base = AVRational(num: 1, den: sampleRate)
        av_channel_layout_default(&ctx.pointee.ch_layout, 2)
        ctx.pointee.flags |= AV_CODEC_FLAG_GLOBAL_HEADER
        try check(avcodec_open2(ctx, codec, nil), "opening the aac encoder for a test clip")
        return encoder
    }

    /// The stream description of what this encoder produces (sample rate and channels included).
    func parameters() throws -> CodecParametersBox {
        let box = CodecParametersBox()
        try check(avcodec_parameters_from_context(box.pointer, context), "encoder parameters")
        return box
    }
}

/// Pre-rendered planes that frames are cut from: a window panning over a textured gradient, with a
/// different noise variant each frame and a box drawn on top.
private final class PictureSource {
    let width: Int
    let height: Int
    /// Extra rows and columns the window pans over.
    let margin: Int
    let planeWidth: Int
    let planeHeight: Int
    /// Luma variants, each planeWidth x planeHeight: the same texture with its own noise.
    let luma: [[UInt8]]
    let chromaU: [UInt8]
    let chromaV: [UInt8]

    init(width: Int, height: Int) {
        let margin = max(width, height) / 8 & ~1
        let pw = width + margin
        let ph = height + margin
        var state: UInt32 = 0x9E37_79B9
        var planes: [[UInt8]] = []
        for _ in 0..<4 {
            var plane = [UInt8](repeating: 0, count: pw * ph)
            plane.withUnsafeMutableBufferPointer { p in
                for y in 0..<ph {
                    let row = y * pw
                    for x in 0..<pw {
                        state = state &* 1_664_525 &+ 1_013_904_223
                        let checker = ((x >> 5) ^ (y >> 5)) & 1 == 0 ? 24 : 0
                        let value = 40 + (x + 2 * y) % 160 / 2 + checker + Int(state >> 30)
                        p[row + x] = UInt8(truncatingIfNeeded: value)
                    }
                }
            }
            planes.append(plane)
        }
        let cw = pw / 2
        let ch = ph / 2
        var u = [UInt8](repeating: 128, count: cw * ch)
        var v = [UInt8](repeating: 128, count: cw * ch)
        for y in 0..<ch {
            for x in 0..<cw {
                u[y * cw + x] = UInt8(64 + (x * 128 / max(cw, 1)))
                v[y * cw + x] = UInt8(64 + (y * 128 / max(ch, 1)))
            }
        }
        self.width = width
        self.height = height
        self.margin = margin
        planeWidth = pw
        planeHeight = ph
        luma = planes
        chromaU = u
        chromaV = v
    }

    func draw(frame n: Int, into frame: UnsafeMutablePointer<AVFrame>) {
        let f = frame.pointee
        // The window pans along a diagonal and back, two pixels a frame.
        let span = margin / 2
        let step = n % (2 * span)
        let offset = step < span ? step : 2 * span - step
        let ox = offset * 2 & ~1
        let oy = offset & ~1
        let variant = luma[n % luma.count]
        let lumaStride = Int(f.linesize.0)
        variant.withUnsafeBufferPointer { source in
            for y in 0..<height {
                let from = source.baseAddress! + (y + oy) * planeWidth + ox
                (f.data.0! + y * lumaStride).update(from: from, count: width)
            }
        }
        // A box one eighth of the width bounces across the picture.
        let box = max(width / 8, 8)
        let travelX = max(width - box, 1)
        let travelY = max(height - box, 1)
        let px = (n * 7) % (2 * travelX)
        let py = (n * 5) % (2 * travelY)
        let bx = px < travelX ? px : 2 * travelX - px
        let by = py < travelY ? py : 2 * travelY - py
        for y in by..<min(by + box, height) {
            (f.data.0! + y * lumaStride + bx).update(repeating: 235, count: min(box, width - bx))
        }
        let cw = planeWidth / 2
        for (plane, stride, source) in [(f.data.1!, Int(f.linesize.1), chromaU), (f.data.2!, Int(f.linesize.2), chromaV)] {
            source.withUnsafeBufferPointer { s in
                for y in 0..<height / 2 {
                    (plane + y * stride).update(from: s.baseAddress! + (y + oy / 2) * cw + ox / 2, count: width / 2)
                }
            }
        }
    }
}
