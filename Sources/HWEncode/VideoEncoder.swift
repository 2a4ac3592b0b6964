internal import CFFmpeg
internal import FarmMedia

/// Owns an encoder opened with one `EncoderConfig`.
final class VideoEncoder {
    let context: UnsafeMutablePointer<AVCodecContext>
    let config: EncoderConfig

    init(config: EncoderConfig) throws {
        self.config = config
        guard let codec = avcodec_find_encoder_by_name(config.encoder) else {
            throw MediaError(.unsupported, "encoder \(config.encoder) is not in this build of libavcodec")
        }
        let format = av_get_pix_fmt(config.pixelFormat)
        guard format != AV_PIX_FMT_NONE else {
            throw MediaError(.unsupported, "unknown pixel format \(config.pixelFormat)")
        }
        // Settings arrive over the wire: every integer is range-checked before it becomes an Int32.
        for (name, value, range) in [
            ("width", config.width, 1...65_536), ("height", config.height, 1...65_536), ("GOP size", config.gopSize, 0...100_000),
            ("thread count", config.threads, 0...1024),
        ] where !range.contains(value) {
            throw MediaError(.invalidInput, "encoder \(name) \(value) is outside \(range.lowerBound)...\(range.upperBound)")
        }
        guard let ctx = avcodec_alloc_context3(codec) else { throw MediaError(.ffmpeg, "avcodec_alloc_context3 failed") }
        context = ctx
        ctx.pointee.width = Int32(config.width)
        ctx.pointee.height = Int32(config.height)
        ctx.pointee.pix_fmt = format
        if config.encoder.hasSuffix("_vaapi") {
            // VA-API encoders take frames in GPU surfaces: NV12 frames are uploaded into this pool.
            guard let device = config.hardwareDevice else {
                throw MediaError(.unsupported, "\(config.encoder) needs a VA-API render node, and none can encode \(config.codec.rawValue)")
            }
            let frames = try EncoderTrial.vaapiFrames(device: device, width: ctx.pointee.width, height: ctx.pointee.height)
            ctx.pointee.pix_fmt = AV_PIX_FMT_VAAPI
            ctx.pointee.hw_frames_ctx = av_buffer_ref(frames.pointer)
            hardwareFrames = frames
        }
        ctx.pointee.time_base = config.timeBase.av
        if config.frameRate.isValid { ctx.pointee.framerate = config.frameRate.av }
        if config.sampleAspectRatio.isValid { ctx.pointee.sample_aspect_ratio = config.sampleAspectRatio.av }
        ctx.pointee.color_range = AVColorRange(rawValue: config.colorRange)
        ctx.pointee.color_primaries = AVColorPrimaries(rawValue: config.colorPrimaries)
        ctx.pointee.color_trc = AVColorTransferCharacteristic(rawValue: config.colorTransfer)
        ctx.pointee.colorspace = AVColorSpace(rawValue: config.colorSpace)
        ctx.pointee.chroma_sample_location = AVChromaLocation(rawValue: config.chromaLocation)
        if config.gopSize > 0 { ctx.pointee.gop_size = Int32(config.gopSize) }
        ctx.pointee.thread_count = Int32(config.threads)
        // Parameter sets go into the stream header (avcC/hvcC/av1C) that MP4 and Matroska need.
        ctx.pointee.flags |= AV_CODEC_FLAG_GLOBAL_HEADER

        var options: OpaquePointer? = nil
        defer { av_dict_free(&options) }
        for (key, value) in Self.rateOptions(config) { av_dict_set(&options, key, value, 0) }
        for (key, value) in config.options.sorted(by: { $0.key < $1.key }) { av_dict_set(&options, key, value, 0) }
        try check(avcodec_open2(ctx, codec, &options), "opening encoder \(config.encoder)")
        if let left = av_dict_get(options, "", nil, AV_DICT_IGNORE_SUFFIX) {
            throw MediaError(.unsupported, "encoder \(config.encoder) does not take option \(String(cString: left.pointee.key))")
        }
    }

    deinit {
        // SVT-AV1 waits forever in its close when it never saw the end of stream: flush it before
        // freeing, whatever path led here. Others are freed at once: flushing x264 at a slow preset
        // encodes its whole lookahead (seconds at 720p), which made a cancelled task linger.
        if !drained, config.encoder == "libsvtav1" {
            if avcodec_send_frame(context, nil) >= 0 {
                let packet = Packet()
                while avcodec_receive_packet(context, packet.pointer) >= 0 { packet.unref() }
            }
        }
        var c: UnsafeMutablePointer<AVCodecContext>? = context
        avcodec_free_context(&c)
    }

    /// Set once the encoder has returned its end of stream.
    private var drained = false
    /// The GPU surface pool of a VA-API encoder.
    private var hardwareFrames: BufferRef?
    private let uploaded = Frame()

    /// Quality and speed options in each encoder's own terms.
    static func rateOptions(_ config: EncoderConfig) -> [(String, String)] {
        let quality = String(config.crf)
        switch config.encoder {
        case let name where name.hasSuffix("_vaapi"):
            // Constant QP is what every VA-API driver offers; CRF maps to it roughly one to one.
            return [("rc_mode", "CQP"), ("global_quality", quality)]
        case let name where name.hasSuffix("_nvenc"):
            return [("preset", "p5"), ("rc", "vbr"), ("cq", quality), ("b", "0")]
        case let name where name.hasSuffix("_qsv"):
            return [("preset", "medium"), ("global_quality", quality)]
        case "libsvtav1":
            return [("preset", svtPreset(config.preset)), ("crf", String(config.crf))]
        case "libaom-av1":
            return [("cpu-used", "6"), ("crf", String(config.crf)), ("b", "0")]
        default:
            return [("preset", config.preset), ("crf", String(config.crf))]
        }
    }

    /// SVT-AV1 numbers its presets; x264's names map onto them so one `--preset` serves every codec.
    static func svtPreset(_ name: String) -> String {
        if Int(name) != nil { return name }
        let table = [
            "ultrafast": 12, "superfast": 11, "veryfast": 10, "faster": 9, "fast": 8, "medium": 8, "slow": 6,
            "slower": 5, "veryslow": 4, "placebo": 2,
        ]
        return String(table[name] ?? 8)
    }

    /// The stream description of what this encoder produces, parameter sets included.
    var parameters: CodecParameters {
        get throws {
            let box = CodecParametersBox()
            try check(avcodec_parameters_from_context(box.pointer, context), "encoder parameters")
            return CodecParameters(box.pointer)
        }
    }

    func send(_ frame: UnsafeMutablePointer<AVFrame>?) throws {
        var frame = frame
        if let hardwareFrames, let software = frame {
            uploaded.unref()
            try check(av_hwframe_get_buffer(hardwareFrames.pointer, uploaded.pointer, 0), "allocating a VA-API surface")
            try check(av_hwframe_transfer_data(uploaded.pointer, software, 0), "uploading a frame to the GPU")
            try check(av_frame_copy_props(uploaded.pointer, software), "copying frame properties")
            frame = uploaded.pointer
        }
        let r = avcodec_send_frame(context, frame)
        if r == farm_AVERROR_EOF() { return }
        try check(r, "encoding with \(config.encoder)")
    }

    /// The next encoded packet; false when the encoder wants input or is drained.
    func receive(into packet: Packet) throws -> Bool {
        packet.unref()
        let r = avcodec_receive_packet(context, packet.pointer)
        if r == farm_AVERROR_EOF() { drained = true }
        if r == farm_AVERROR_EAGAIN() || r == farm_AVERROR_EOF() { return false }
        try check(r, "encoding with \(config.encoder)")
        return true
    }
}

/// Converts frames to the encoder's pixel format when the decoder gives another one.
final class FrameConverter {
    private var context: OpaquePointer?
    private let output = Frame()
    private let width: Int32
    private let height: Int32
    private let format: AVPixelFormat

    init(width: Int, height: Int, pixelFormat: String) {
        self.width = Int32(width)
        self.height = Int32(height)
        self.format = av_get_pix_fmt(pixelFormat)
    }

    deinit { sws_freeContext(context) }

    /// `frame` itself when it already fits, else a converted copy owned by this converter.
    func convert(_ frame: UnsafeMutablePointer<AVFrame>) throws -> UnsafeMutablePointer<AVFrame> {
        let f = frame.pointee
        if f.format == format.rawValue, f.width == width, f.height == height { return frame }
        context = sws_getCachedContext(
            context, f.width, f.height, AVPixelFormat(rawValue: f.format), width, height, format, SWS_BICUBIC, nil, nil,
            nil)
        guard context != nil else { throw MediaError(.unsupported, "cannot convert frames to \(format)") }
        output.unref()
        output.pointer.pointee.format = format.rawValue
        output.pointer.pointee.width = width
        output.pointer.pointee.height = height
        try check(av_frame_copy_props(output.pointer, frame), "copying frame properties")
        try check(sws_scale_frame(context, output.pointer, frame), "converting a frame to \(format)")
        return output.pointer
    }
}
