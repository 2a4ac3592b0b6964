internal import CFFmpeg

/// One picture's luma as 8-bit samples, row after row, owned by Swift (no FFmpeg buffer behind it).
struct LumaPlane: Sendable {
    let width: Int
    let height: Int
    var samples: [UInt8]
}

/// Copies the luma of decoded frames into `LumaPlane`s of one size: straight from the frame when its
/// first plane already is 8-bit luma of that size, else through swscale (another size, 10-bit, RGB).
final class LumaExtractor {
    private let width: Int
    private let height: Int
    private var context: OpaquePointer?
    private let gray = Frame()

    init(width: Int, height: Int) {
        self.width = width
        self.height = height
    }

    deinit { sws_freeContext(context) }

    func luma(of frame: UnsafeMutablePointer<AVFrame>) throws -> LumaPlane {
        let f = frame.pointee
        guard f.width > 0, f.height > 0, f.width <= 65_536, f.height <= 65_536 else {
            throw MediaError(.invalidInput, "a decoded frame of \(f.width)x\(f.height)")
        }
        if Int(f.width) == width, Int(f.height) == height, Self.isEightBitLuma(AVPixelFormat(rawValue: f.format)) {
            return try Self.copy(plane: f.data.0, stride: Int(f.linesize.0), width: width, height: height)
        }
        context = sws_getCachedContext(
            context, f.width, f.height, AVPixelFormat(rawValue: f.format), Int32(width), Int32(height), AV_PIX_FMT_GRAY8,
            SWS_BICUBIC, nil, nil, nil)
        guard context != nil else { throw MediaError(.unsupported, "cannot take the luma of a frame of format \(f.format)") }
        gray.unref()
        gray.pointer.pointee.format = AV_PIX_FMT_GRAY8.rawValue
        gray.pointer.pointee.width = Int32(width)
        gray.pointer.pointee.height = Int32(height)
        try check(sws_scale_frame(context, gray.pointer, frame), "taking the luma of a frame")
        let g = gray.pointer.pointee
        return try Self.copy(plane: g.data.0, stride: Int(g.linesize.0), width: width, height: height)
    }

    /// Planar or semi-planar YUV whose first plane holds 8-bit luma, one byte a sample.
    private static func isEightBitLuma(_ format: AVPixelFormat) -> Bool {
        guard let d = av_pix_fmt_desc_get(format) else { return false }
        let desc = d.pointee
        let luma = desc.comp.0
        return desc.flags & UInt64(AV_PIX_FMT_FLAG_RGB) == 0 && desc.flags & UInt64(AV_PIX_FMT_FLAG_PAL) == 0
            && desc.flags & UInt64(AV_PIX_FMT_FLAG_HWACCEL) == 0 && luma.plane == 0 && luma.depth == 8 && luma.step == 1
            && luma.shift == 0 && luma.offset == 0
    }

    private static func copy(plane: UnsafeMutablePointer<UInt8>?, stride: Int, width: Int, height: Int) throws -> LumaPlane {
        guard let plane, stride >= width else { throw MediaError(.invalidInput, "a decoded frame has no luma plane") }
        var samples = [UInt8](repeating: 0, count: width * height)
        samples.withUnsafeMutableBufferPointer { out in
            for y in 0..<height {
                (out.baseAddress! + y * width).update(from: plane + y * stride, count: width)
            }
        }
        return LumaPlane(width: width, height: height, samples: samples)
    }
}

/// The structural similarity (SSIM) of two luma planes of one size, as libavfilter's `ssim` filter
/// computes it: 8×8 windows stepped by 4 samples, built from the sums of 4×4 blocks, averaged over the
/// picture. 1 is identical; an honest encode at a usual CRF scores well above 0.9 on natural content.
enum FrameComparison {
    static func ssim(_ a: LumaPlane, _ b: LumaPlane) -> Double {
        precondition(a.width == b.width && a.height == b.height && a.samples.count == b.samples.count)
        let blocksX = a.width / 4
        let blocksY = a.height / 4
        guard blocksX >= 2, blocksY >= 2 else { return a.samples == b.samples ? 1 : 0 }
        // Per 4×4 block: sum a, sum b, sum a² + b², sum a·b.
        var sums = [(Int64, Int64, Int64, Int64)](repeating: (0, 0, 0, 0), count: blocksX * blocksY)
        a.samples.withUnsafeBufferPointer { pa in
            b.samples.withUnsafeBufferPointer { pb in
                for by in 0..<blocksY {
                    for bx in 0..<blocksX {
                        var s1 = 0, s2 = 0, ss = 0, s12 = 0
                        for y in 0..<4 {
                            let row = (by * 4 + y) * a.width + bx * 4
                            for x in 0..<4 {
                                let u = Int(pa[row + x])
                                let v = Int(pb[row + x])
                                s1 += u
                                s2 += v
                                ss += u * u + v * v
                                s12 += u * v
                            }
                        }
                        sums[by * blocksX + bx] = (Int64(s1), Int64(s2), Int64(ss), Int64(s12))
                    }
                }
            }
        }
        let c1 = 0.01 * 0.01 * 255 * 255 * 64 * 64
        let c2 = 0.03 * 0.03 * 255 * 255 * 64 * 63
        var total = 0.0
        for y in 0..<blocksY - 1 {
            for x in 0..<blocksX - 1 {
                let p = sums[y * blocksX + x], q = sums[y * blocksX + x + 1]
                let r = sums[(y + 1) * blocksX + x], t = sums[(y + 1) * blocksX + x + 1]
                let s1 = Double(p.0 + q.0 + r.0 + t.0)
                let s2 = Double(p.1 + q.1 + r.1 + t.1)
                let ss = Double(p.2 + q.2 + r.2 + t.2)
                let s12 = Double(p.3 + q.3 + r.3 + t.3)
                let variance = ss * 64 - s1 * s1 - s2 * s2
                let covariance = s12 * 64 - s1 * s2
                total += (2 * s1 * s2 + c1) * (2 * covariance + c2) / ((s1 * s1 + s2 * s2 + c1) * (variance + c2))
            }
        }
        return total / Double((blocksX - 1) * (blocksY - 1))
    }
}

/// The quality yardstick of one picture: the source picture encoded alone (an intra picture) by
/// libx264 at preset ultrafast and a CRF some steps above the job's, decoded, and scored with SSIM
/// against the source. It rises and falls with the content as an honest encode does (noise scores
/// low, flat pictures high), so that one rule, "no worse than the yardstick", holds for every content
/// where no fixed SSIM does (docs/verification.md).
final class QualityYardstick {
    private let encoder: UnsafeMutablePointer<AVCodecContext>
    private let decoder: VideoDecoder
    private let width: Int
    private let height: Int
    private var scaler: OpaquePointer?
    private let picture = Frame()
    private let packet = Packet()
    private let decoded = Frame()
    private let extractor: LumaExtractor
    private var pts: Int64 = 0

    /// `crf` on x264's scale.
    init(width: Int, height: Int, crf: Int) throws {
        guard (16...16_384).contains(width), (16...16_384).contains(height) else {
            throw MediaError(.unsupported, "no yardstick for pictures of \(width)x\(height)")
        }
        self.width = width - width % 2
        self.height = height - height % 2
        guard let codec = avcodec_find_encoder_by_name("libx264") else {
            throw MediaError(.unsupported, "libx264 is not in this build of libavcodec: no quality yardstick")
        }
        guard let ctx = avcodec_alloc_context3(codec) else { throw MediaError(.ffmpeg, "avcodec_alloc_context3 failed") }
        encoder = ctx
        ctx.pointee.width = Int32(self.width)
        ctx.pointee.height = Int32(self.height)
        ctx.pointee.pix_fmt = AV_PIX_FMT_YUV420P
        ctx.pointee.time_base = AVRational(num: 1, den: 25)
        ctx.pointee.gop_size = 1
        ctx.pointee.max_b_frames = 0
        ctx.pointee.thread_count = 1
        var options: OpaquePointer? = nil
        defer { av_dict_free(&options) }
        for (key, value) in [("preset", "ultrafast"), ("tune", "zerolatency"), ("crf", String(min(max(crf, 0), 51)))] {
            av_dict_set(&options, key, value, 0)
        }
        try check(avcodec_open2(ctx, codec, &options), "opening the yardstick encoder")
        let parameters = CodecParametersBox()
        try check(avcodec_parameters_from_context(parameters.pointer, ctx), "yardstick parameters")
        decoder = try VideoDecoder(
            header: PacketStreamHeader(
                parameters: CodecParameters(parameters.pointer), timeBase: Rational(1, 25), frameRate: Rational(25, 1)),
            threads: 1)
        extractor = LumaExtractor(width: self.width, height: self.height)
        picture.pointer.pointee.format = AV_PIX_FMT_YUV420P.rawValue
        picture.pointer.pointee.width = Int32(self.width)
        picture.pointer.pointee.height = Int32(self.height)
        try check(av_frame_get_buffer(picture.pointer, 0), "allocating a yardstick picture")
    }

    deinit {
        sws_freeContext(scaler)
        var c: UnsafeMutablePointer<AVCodecContext>? = encoder
        avcodec_free_context(&c)
    }

    /// The yardstick's SSIM for `frame` (a decoded source frame), whose luma at the job's size is `luma`.
    func score(_ frame: UnsafeMutablePointer<AVFrame>, luma: LumaPlane) throws -> Double {
        let f = frame.pointee
        scaler = sws_getCachedContext(
            scaler, f.width, f.height, AVPixelFormat(rawValue: f.format), Int32(width), Int32(height), AV_PIX_FMT_YUV420P,
            SWS_BICUBIC, nil, nil, nil)
        guard scaler != nil else { throw MediaError(.unsupported, "cannot scale a frame of format \(f.format) for the yardstick") }
        try check(av_frame_make_writable(picture.pointer), "yardstick picture")
        try check(sws_scale_frame(scaler, picture.pointer, frame), "scaling a frame for the yardstick")
        picture.pointer.pointee.pts = pts
        pts += 1
        try check(avcodec_send_frame(encoder, picture.pointer), "yardstick encode")
        packet.unref()
        try check(avcodec_receive_packet(encoder, packet.pointer), "yardstick encode")
        try decoder.send(packet)
        guard try decoder.receive(into: decoded) else { throw MediaError(.ffmpeg, "the yardstick picture did not decode") }
        let reference = try extractor.luma(of: decoded.pointer)
        guard reference.width == luma.width, reference.height == luma.height else { return 0 }
        return FrameComparison.ssim(reference, luma)
    }
}
