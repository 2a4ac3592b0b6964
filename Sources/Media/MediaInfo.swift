internal import CFFmpeg

#if canImport(Glibc)
    internal import Glibc
#endif

/// What a media file holds, read from its header without decoding.
public struct MediaInfo: Sendable {
    /// One stream of the file.
    public struct Stream: Sendable {
        public enum Kind: String, Sendable { case video, audio, subtitle, data, attachment, unknown }
        public var index: Int
        public var kind: Kind
        public var codecName: String
        public var timeBase: Rational
        public var width: Int
        public var height: Int
        public var pixelFormat: String?
        public var frameRate: Rational
        public var sampleRate: Int
        public var channels: Int
        public var language: String?
        public var isAttachedPicture: Bool
    }

    public var path: String
    public var formatName: String
    /// Duration in microseconds (AV_TIME_BASE), 0 when unknown.
    public var durationMicroseconds: Int64
    public var streams: [Stream]
    /// The main video stream; nil when the file has none.
    public var videoStreamIndex: Int?
    public var sizeBytes: Int64

    public var durationSeconds: Double { Double(durationMicroseconds) / 1_000_000 }
    public var video: Stream? { videoStreamIndex.map { streams[$0] } }

    /// Opens `path` and describes it. Fails with a one-line error naming the file when it is not media.
    public static func probe(path: String) throws -> MediaInfo {
        try checkRegularFile(path)
        let input = try InputFile(path: path)
        return MediaInfo(input)
    }

    init(_ input: InputFile) {
        let ctx = input.context.pointee
        path = input.path
        formatName = ctx.iformat.map { String(cString: $0.pointee.name) } ?? "unknown"
        durationMicroseconds = ctx.duration == noTimestamp ? 0 : ctx.duration
        sizeBytes = ctx.pb.map { avio_size($0) } ?? 0
        var streams: [Stream] = []
        for i in 0..<input.streamCount {
            let s = input.stream(i)
            let par = s.pointee.codecpar.pointee
            let kind: Stream.Kind
            switch par.codec_type {
            case AVMEDIA_TYPE_VIDEO: kind = .video
            case AVMEDIA_TYPE_AUDIO: kind = .audio
            case AVMEDIA_TYPE_SUBTITLE: kind = .subtitle
            case AVMEDIA_TYPE_DATA: kind = .data
            case AVMEDIA_TYPE_ATTACHMENT: kind = .attachment
            default: kind = .unknown
            }
            var language: String? = nil
            if let entry = av_dict_get(s.pointee.metadata, "language", nil, 0) {
                language = String(cString: entry.pointee.value)
            }
            let pixelFormat = av_get_pix_fmt_name(AVPixelFormat(rawValue: par.format)).map { String(cString: $0) }
            streams.append(
                Stream(
                    index: i, kind: kind, codecName: String(cString: avcodec_get_name(par.codec_id)),
                    timeBase: Rational(s.pointee.time_base), width: Int(par.width), height: Int(par.height),
                    pixelFormat: kind == .video ? pixelFormat : nil,
                    frameRate: Rational(s.pointee.avg_frame_rate.num > 0 ? s.pointee.avg_frame_rate : s.pointee.r_frame_rate),
                    sampleRate: Int(par.sample_rate), channels: Int(par.ch_layout.nb_channels), language: language,
                    isAttachedPicture: s.pointee.disposition & AV_DISPOSITION_ATTACHED_PIC != 0))
        }
        self.streams = streams
        videoStreamIndex = input.bestVideoStream()
    }
}

/// Refuses what is not a regular, non-empty file before FFmpeg sees it, with a message that says which.
func checkRegularFile(_ path: String) throws {
    var st = stat()
    guard stat(path, &st) == 0 else {
        throw MediaError(.invalidInput, "\(path): no such file")
    }
    if st.st_mode & S_IFMT == S_IFDIR { throw MediaError(.invalidInput, "\(path): is a directory, not a video file") }
    guard st.st_mode & S_IFMT == S_IFREG else { throw MediaError(.invalidInput, "\(path): not a regular file") }
    guard st.st_size > 0 else { throw MediaError(.invalidInput, "\(path): file is empty") }
}
