public import FarmMedia

/// The video codecs a job can ask for.
public enum VideoCodec: String, Sendable, CaseIterable, Codable {
    case h264, hevc, av1

    /// The CRF a job gets when it names none: visually similar quality across codecs.
    public var defaultCRF: Int {
        switch self {
        case .h264: 23
        case .hevc: 28
        case .av1: 35
        }
    }
}

/// One encoder configuration, pinned per job: every segment of a job is encoded with exactly these
/// values so that the joined stream has one parameter set.
public struct EncoderConfig: Sendable, Hashable {
    public var codec: VideoCodec
    /// The libavcodec encoder name ("libx264", "libx265", "libsvtav1", "h264_vaapi", ...).
    public var encoder: String
    public var crf: Int
    public var preset: String
    public var pixelFormat: String
    public var width: Int
    public var height: Int
    public var timeBase: Rational
    public var frameRate: Rational
    public var sampleAspectRatio: Rational
    public var colorRange: UInt32
    public var colorPrimaries: UInt32
    public var colorTransfer: UInt32
    public var colorSpace: UInt32
    public var chromaLocation: UInt32
    /// Keyframe interval in frames; 0 leaves the encoder's default.
    public var gopSize: Int
    /// Encoder threads; 0 lets the encoder choose.
    public var threads: Int
    /// Extra private options for the encoder, applied after the preset.
    public var options: [String: String]
    /// The VA-API render node a `*_vaapi` encoder runs on.
    public var hardwareDevice: String?

    public init(
        codec: VideoCodec, encoder: String, crf: Int, preset: String, pixelFormat: String, width: Int, height: Int,
        timeBase: Rational, frameRate: Rational, sampleAspectRatio: Rational = Rational(0, 1),
        colorRange: UInt32 = 0, colorPrimaries: UInt32 = 2, colorTransfer: UInt32 = 2, colorSpace: UInt32 = 2,
        chromaLocation: UInt32 = 0, gopSize: Int = 0, threads: Int = 0, options: [String: String] = [:]
    ) {
        self.codec = codec
        self.encoder = encoder
        self.crf = crf
        self.preset = preset
        self.pixelFormat = pixelFormat
        self.width = width
        self.height = height
        self.timeBase = timeBase
        self.frameRate = frameRate
        self.sampleAspectRatio = sampleAspectRatio
        self.colorRange = colorRange
        self.colorPrimaries = colorPrimaries
        self.colorTransfer = colorTransfer
        self.colorSpace = colorSpace
        self.chromaLocation = chromaLocation
        self.gopSize = gopSize
        self.threads = threads
        self.options = options
    }
}
