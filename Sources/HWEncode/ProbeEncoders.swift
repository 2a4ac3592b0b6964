internal import CFFmpeg
internal import FarmMedia

#if canImport(Glibc)
    internal import Glibc
#elseif canImport(Darwin)
    internal import Darwin
#endif

/// An encoder the probe tries.
struct EncoderCandidate: Sendable {
    enum Kind: String, Sendable { case vaapi, nvenc, qsv, software }

    var name: String
    var codec: String
    var kind: Kind

    /// Every encoder tried, in report order: hardware families in order of preference, then software.
    static let all: [EncoderCandidate] = {
        let hardware: [EncoderCandidate] = [
            .init(name: "h264_vaapi", codec: "h264", kind: .vaapi),
            .init(name: "hevc_vaapi", codec: "hevc", kind: .vaapi),
            .init(name: "av1_vaapi", codec: "av1", kind: .vaapi),
            .init(name: "h264_nvenc", codec: "h264", kind: .nvenc),
            .init(name: "hevc_nvenc", codec: "hevc", kind: .nvenc),
            .init(name: "av1_nvenc", codec: "av1", kind: .nvenc),
            .init(name: "h264_qsv", codec: "h264", kind: .qsv),
            .init(name: "hevc_qsv", codec: "hevc", kind: .qsv),
            .init(name: "av1_qsv", codec: "av1", kind: .qsv),
        ]
        let software = VideoCodec.allCases.flatMap { codec in
            EncoderCatalog.softwareEncoders(for: codec).map {
                EncoderCandidate(name: $0, codec: codec.rawValue, kind: .software)
            }
        }
        return hardware + software
    }()

    func status(available: Bool, reason: String? = nil) -> CapabilityReport.EncoderStatus {
        CapabilityReport.EncoderStatus(
            name: name, codec: codec, kind: kind.rawValue, available: available, reason: reason)
    }
}

/// The device a hardware encoder is tried on.
enum TrialDevice: Sendable {
    /// The encoder takes frames from system memory (software, NVENC, Quick Sync).
    case none
    /// A VA-API render node that initialised and has an encode entrypoint for the codec.
    case vaapi(String)
    /// There is no device to try on, and why.
    case unavailable(String)
}

/// Opens an encoder on a tiny grey picture, sends it one frame and flushes it: an encoder that gives
/// back a packet works here.
enum EncoderTrial {
    /// Tries `candidates` one after another on a thread of their own, posting each status as it is known.
    static func start(
        _ candidates: [EncoderCandidate], device: @escaping @Sendable (_ codec: String) -> TrialDevice
    ) -> ProbeWorker<CapabilityReport.EncoderStatus> {
        let name = candidates.first?.kind.rawValue ?? "encoders"
        return ProbeWorker(name: name) { post in
            for candidate in candidates { post(trial(candidate, device: device(candidate.codec))) }
        }
    }

    static func trial(_ candidate: EncoderCandidate, device: TrialDevice) -> CapabilityReport.EncoderStatus {
        guard let codec = avcodec_find_encoder_by_name(candidate.name) else {
            return candidate.status(available: false, reason: "not in this build of libavcodec")
        }
        var vaapiPath: String?
        switch device {
        case .none: break
        case .vaapi(let path): vaapiPath = path
        case .unavailable(let reason): return candidate.status(available: false, reason: reason)
        }
        do {
            try encodeOneFrame(codec, candidate, vaapiPath: vaapiPath)
            return candidate.status(available: true)
        } catch {
            return candidate.status(available: false, reason: explain(candidate, error))
        }
    }

    /// A plain reason for a failed trial, with FFmpeg's own words after it.
    static func explain(_ candidate: EncoderCandidate, _ error: any Error) -> String {
        switch candidate.kind {
        case .nvenc:
            let missing = ["libnvidia-encode.so.1", "libcuda.so.1"].filter { !canLoadLibrary($0) }
            if !missing.isEmpty {
                return "\(missing.joined(separator: " and ")) not found: no NVIDIA driver (\(error))"
            }
            return "NVENC did not start: \(error)"
        case .qsv:
            return "no Intel media driver / MFX session (\(error))"
        case .vaapi, .software:
            return "\(error)"
        }
    }

    static func canLoadLibrary(_ name: String) -> Bool {
        guard let handle = dlopen(name, RTLD_LAZY | RTLD_LOCAL) else { return false }
        dlclose(handle)
        return true
    }

    static func encodeOneFrame(
        _ codec: UnsafePointer<AVCodec>, _ candidate: EncoderCandidate, vaapiPath: String?
    ) throws {
        // Software encoders are cheap at 64x64; hardware encoders often have a minimum picture size above that.
        let size: Int32 = candidate.kind == .software ? 64 : 256
        let encoder = try TrialEncoder(codec: codec, name: candidate.name)
        let ctx = encoder.context
        ctx.pointee.width = size
        ctx.pointee.height = size
        ctx.pointee.time_base = AVRational(num: 1, den: 25)
        ctx.pointee.framerate = AVRational(num: 25, den: 1)
        ctx.pointee.max_b_frames = 0
        ctx.pointee.thread_count = 1

        let frame: Frame
        if let vaapiPath {
            let frames = try vaapiFrames(device: vaapiPath, width: size, height: size)
            ctx.pointee.pix_fmt = AV_PIX_FMT_VAAPI
            // The codec context takes its own reference and drops it in avcodec_free_context.
            ctx.pointee.hw_frames_ctx = av_buffer_ref(frames.pointer)
            try encoder.open(options: [])
            let picture = try greyFrame(width: size, height: size, format: AV_PIX_FMT_NV12)
            frame = Frame()
            try check(av_hwframe_get_buffer(frames.pointer, frame.pointer, 0), "allocating a VA-API surface")
            try check(av_hwframe_transfer_data(frame.pointer, picture.pointer, 0), "uploading a frame to \(vaapiPath)")
        } else {
            let format = preferredPixelFormat(codec)
            ctx.pointee.pix_fmt = format
            try encoder.open(options: trialOptions[candidate.name] ?? [])
            frame = try greyFrame(width: size, height: size, format: format)
        }
        frame.pointer.pointee.pts = 0
        try encoder.encode(frame)
    }

    /// Speed settings and silence for the software encoders' trial.
    static let trialOptions: [String: [(String, String)]] = [
        "libx264": [("preset", "ultrafast")],
        // x265 prints to stderr itself unless told not to.
        "libx265": [("preset", "ultrafast"), ("x265-params", "log-level=none")],
        "libsvtav1": [("preset", "12")],
        "libaom-av1": [("usage", "realtime"), ("cpu-used", "8")],
    ]

    /// yuv420p or nv12 when the encoder takes them, else its first format.
    static func preferredPixelFormat(_ codec: UnsafePointer<AVCodec>) -> AVPixelFormat {
        var formats: [AVPixelFormat] = []
        if var p = codec.pointee.pix_fmts {
            while p.pointee != AV_PIX_FMT_NONE {
                formats.append(p.pointee)
                p += 1
            }
        }
        let preferred = [AV_PIX_FMT_YUV420P, AV_PIX_FMT_NV12].first(where: formats.contains)
        return preferred ?? formats.first ?? AV_PIX_FMT_YUV420P
    }

    /// A VA-API device on `device` and a pool of NV12 surfaces on it.
    static func vaapiFrames(device path: String, width: Int32, height: Int32) throws -> BufferRef {
        var deviceRef: UnsafeMutablePointer<AVBufferRef>?
        try check(
            av_hwdevice_ctx_create(&deviceRef, AV_HWDEVICE_TYPE_VAAPI, path, nil, 0),
            "creating a VA-API device on \(path)")
        guard let deviceRef else { throw MediaError(.ffmpeg, "creating a VA-API device on \(path) gave nothing") }
        let device = BufferRef(deviceRef)
        guard let framesRef = av_hwframe_ctx_alloc(device.pointer) else {
            throw MediaError(.ffmpeg, "av_hwframe_ctx_alloc failed on \(path)")
        }
        let frames = BufferRef(framesRef)
        guard let data = frames.pointer.pointee.data else {
            throw MediaError(.ffmpeg, "av_hwframe_ctx_alloc gave no frames context on \(path)")
        }
        let context = UnsafeMutableRawPointer(data).assumingMemoryBound(to: AVHWFramesContext.self)
        context.pointee.format = AV_PIX_FMT_VAAPI
        context.pointee.sw_format = AV_PIX_FMT_NV12
        context.pointee.width = width
        context.pointee.height = height
        context.pointee.initial_pool_size = 4
        try check(av_hwframe_ctx_init(frames.pointer), "creating VA-API surfaces on \(path)")
        return frames
    }

    /// A mid-grey picture: every byte 128 is grey in 8-bit YUV, planar or semi-planar.
    static func greyFrame(width: Int32, height: Int32, format: AVPixelFormat) throws -> Frame {
        let frame = Frame()
        let f = frame.pointer
        f.pointee.width = width
        f.pointee.height = height
        f.pointee.format = format.rawValue
        try check(av_frame_get_buffer(f, 0), "allocating a \(width)x\(height) test frame")
        guard let descriptor = av_pix_fmt_desc_get(format) else {
            throw MediaError(.unsupported, "unknown pixel format \(format.rawValue)")
        }
        let shift = Int(descriptor.pointee.log2_chroma_h)
        let chromaHeight = (Int(height) + (1 << shift) - 1) >> shift
        let data = [f.pointee.data.0, f.pointee.data.1, f.pointee.data.2, f.pointee.data.3]
        let linesize = [f.pointee.linesize.0, f.pointee.linesize.1, f.pointee.linesize.2, f.pointee.linesize.3]
        for plane in 0..<4 {
            guard let base = data[plane], linesize[plane] > 0 else { continue }
            memset(base, 128, Int(linesize[plane]) * (plane == 0 || plane == 3 ? Int(height) : chromaHeight))
        }
        return frame
    }
}

/// Owns one reference to an AVBufferRef (a hardware device or frame pool).
final class BufferRef {
    let pointer: UnsafeMutablePointer<AVBufferRef>

    init(_ pointer: UnsafeMutablePointer<AVBufferRef>) { self.pointer = pointer }

    deinit {
        var p: UnsafeMutablePointer<AVBufferRef>? = pointer
        av_buffer_unref(&p)
    }
}

/// Owns the codec context of one encoder trial.
final class TrialEncoder {
    let context: UnsafeMutablePointer<AVCodecContext>
    private let codec: UnsafePointer<AVCodec>
    private let name: String

    init(codec: UnsafePointer<AVCodec>, name: String) throws {
        guard let context = avcodec_alloc_context3(codec) else {
            throw MediaError(.ffmpeg, "avcodec_alloc_context3 failed for \(name)")
        }
        self.context = context
        self.codec = codec
        self.name = name
    }

    deinit {
        var c: UnsafeMutablePointer<AVCodecContext>? = context
        avcodec_free_context(&c)
    }

    func open(options: [(String, String)]) throws {
        var dictionary: OpaquePointer? = nil
        defer { av_dict_free(&dictionary) }
        for (key, value) in options { av_dict_set(&dictionary, key, value, 0) }
        try check(avcodec_open2(context, codec, &dictionary), "opening \(name)")
    }

    /// Sends `frame`, flushes, and requires at least one packet back.
    func encode(_ frame: Frame) throws {
        try check(avcodec_send_frame(context, frame.pointer), "encoding a frame with \(name)")
        try check(avcodec_send_frame(context, nil), "flushing \(name)")
        let packet = Packet()
        var packets = 0
        while true {
            let r = avcodec_receive_packet(context, packet.pointer)
            if r == farm_AVERROR_EOF() || r == farm_AVERROR_EAGAIN() { break }
            try check(r, "encoding a frame with \(name)")
            packets += 1
            packet.unref()
        }
        guard packets > 0 else {
            throw MediaError(.verificationFailed, "\(name) gave no packet for a frame")
        }
    }
}
