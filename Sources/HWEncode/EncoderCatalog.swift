internal import CFFmpeg
public import FarmMedia

/// What this build of libavcodec can encode with, and the choice of encoder for a job.
public enum EncoderCatalog {
    /// Software encoders in order of preference per codec.
    public static func softwareEncoders(for codec: VideoCodec) -> [String] {
        switch codec {
        case .h264: ["libx264"]
        case .hevc: ["libx265"]
        case .av1: ["libsvtav1", "libaom-av1"]
        }
    }

    /// Whether libavcodec has an encoder of this name.
    public static func isAvailable(_ encoder: String) -> Bool {
        avcodec_find_encoder_by_name(encoder) != nil
    }

    /// The first software encoder for `codec` present in this build.
    public static func softwareEncoder(for codec: VideoCodec) -> String? {
        softwareEncoders(for: codec).first(where: isAvailable)
    }

    /// The pixel formats an encoder accepts, in its order of preference.
    public static func pixelFormats(of encoder: String) -> [String] {
        guard let codec = avcodec_find_encoder_by_name(encoder), var p = codec.pointee.pix_fmts else { return [] }
        var names: [String] = []
        while p.pointee != AV_PIX_FMT_NONE {
            if let name = av_get_pix_fmt_name(p.pointee) { names.append(String(cString: name)) }
            p += 1
        }
        return names
    }

    /// The configuration a job's segments are all encoded with: the source's picture size, time base,
    /// colour description and pixel format where the encoder takes it (else 8-bit 4:2:0).
    public static func configuration(
        for source: SourceIndex, codec: VideoCodec, encoder: String, crf: Int?, preset: String, threads: Int
    ) throws -> EncoderConfig {
        let p = source.parameters
        let accepted = pixelFormats(of: encoder)
        let sourceFormat = p.pixelFormatName ?? "yuv420p"
        let pixelFormat = accepted.contains(sourceFormat) || accepted.isEmpty ? sourceFormat : "yuv420p"
        guard p.width > 0, p.height > 0 else {
            throw MediaError(.unsupported, "video stream has no picture size")
        }
        var options: [String: String] = [:]
        switch encoder {
        case "libx265": options["x265-params"] = "log-level=error:open-gop=0"
        case "libsvtav1": options["svtav1-params"] = "irefresh-type=2"
        default: break
        }
        return EncoderConfig(
            codec: codec, encoder: encoder, crf: crf ?? codec.defaultCRF, preset: preset, pixelFormat: pixelFormat,
            width: Int(p.width), height: Int(p.height), timeBase: source.timeBase, frameRate: source.frameRate,
            sampleAspectRatio: p.sampleAspectRatio, colorRange: p.colorRange, colorPrimaries: p.colorPrimaries,
            colorTransfer: p.colorTransfer, colorSpace: p.colorSpace, chromaLocation: p.chromaLocation,
            gopSize: 0, threads: threads, options: options)
    }
}

extension EncoderCatalog {
    /// Opens the encoder once with `config` and closes it: a job whose settings no encoder takes
    /// (an odd picture size for 4:2:0, an unknown preset) fails at once with the encoder's reason,
    /// not after every node has tried.
    public static func validate(_ config: EncoderConfig) throws {
        let encoder = try VideoEncoder(config: config)
        // One mid-grey frame and a flush: every encoder closes cleanly after a real end of stream.
        let frame = try EncoderTrial.greyFrame(
            width: Int32(config.width), height: Int32(config.height), format: av_get_pix_fmt(config.pixelFormat))
        frame.pointer.pointee.pts = 0
        try encoder.send(frame.pointer)
        try encoder.send(nil)
        let packet = Packet()
        while try encoder.receive(into: packet) {}
    }
}
