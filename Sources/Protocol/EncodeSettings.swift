/// The exact encoder configuration pinned for a job.
///
/// Every segment of a job is encoded with the same settings, so that the segments share one parameter set
/// and join into one stream. Integer fields carry FFmpeg's values (`AVColorRange`, `AVColorPrimaries`,
/// `AVColorTransferCharacteristic`, `AVColorSpace`, `AVChromaLocation`) so nothing is lost in translation;
/// the defaults are FFmpeg's "unspecified".
public struct EncodeSettings: Sendable, Equatable, Hashable {
    /// The codec: "h264", "hevc" or "av1".
    public var codec: String
    /// The FFmpeg encoder name, for example "libx264".
    public var encoder: String
    /// The constant rate factor (or constant quantiser for encoders without CRF).
    public var crf: Int32
    /// The encoder preset, for example "medium".
    public var preset: String
    /// The FFmpeg pixel format name, for example "yuv420p".
    public var pixelFormat: String
    /// The frame width in pixels.
    public var width: Int32
    /// The frame height in pixels.
    public var height: Int32
    /// The numerator of the time base timestamps are expressed in.
    public var timeBaseNum: Int32
    /// The denominator of the time base timestamps are expressed in.
    public var timeBaseDen: Int32
    /// The numerator of the frame rate.
    public var frameRateNum: Int32
    /// The denominator of the frame rate.
    public var frameRateDen: Int32
    /// The numerator of the sample (pixel) aspect ratio; 0 when unknown.
    public var sampleAspectNum: Int32
    /// The denominator of the sample (pixel) aspect ratio.
    public var sampleAspectDen: Int32
    /// FFmpeg's `AVColorRange` (0 = unspecified).
    public var colorRange: Int32
    /// FFmpeg's `AVColorPrimaries` (2 = unspecified).
    public var colorPrimaries: Int32
    /// FFmpeg's `AVColorTransferCharacteristic` (2 = unspecified).
    public var colorTransfer: Int32
    /// FFmpeg's `AVColorSpace` (2 = unspecified).
    public var colorSpace: Int32
    /// FFmpeg's `AVChromaLocation` (0 = unspecified).
    public var chromaLocation: Int32
    /// The maximum distance between keyframes, in frames; 0 leaves it to the encoder.
    public var gopSize: Int32
    /// Encoder threads; 0 leaves it to the encoder.
    public var threads: Int32
    /// Further encoder options, passed to the encoder as FFmpeg `AVDictionary` entries.
    /// Encoded sorted by key, so equal settings always encode to equal bytes.
    public var options: [String: String]

    /// Creates encoder settings.
    public init(
        codec: String,
        encoder: String,
        crf: Int32,
        preset: String,
        pixelFormat: String,
        width: Int32,
        height: Int32,
        timeBaseNum: Int32,
        timeBaseDen: Int32,
        frameRateNum: Int32,
        frameRateDen: Int32,
        sampleAspectNum: Int32 = 0,
        sampleAspectDen: Int32 = 1,
        colorRange: Int32 = 0,
        colorPrimaries: Int32 = 2,
        colorTransfer: Int32 = 2,
        colorSpace: Int32 = 2,
        chromaLocation: Int32 = 0,
        gopSize: Int32 = 0,
        threads: Int32 = 0,
        options: [String: String] = [:]
    ) {
        self.codec = codec
        self.encoder = encoder
        self.crf = crf
        self.preset = preset
        self.pixelFormat = pixelFormat
        self.width = width
        self.height = height
        self.timeBaseNum = timeBaseNum
        self.timeBaseDen = timeBaseDen
        self.frameRateNum = frameRateNum
        self.frameRateDen = frameRateDen
        self.sampleAspectNum = sampleAspectNum
        self.sampleAspectDen = sampleAspectDen
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
