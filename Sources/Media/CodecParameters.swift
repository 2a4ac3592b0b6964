package import CFFmpeg

/// A plain copy of the AVCodecParameters fields that a decoder or muxer needs, so that
/// a stream's description can be written to a file and rebuilt on another machine.
public struct CodecParameters: Sendable, Hashable {
    public var codecType: Int32
    public var codecID: UInt32
    public var codecTag: UInt32
    public var format: Int32
    public var bitRate: Int64
    public var bitsPerCodedSample: Int32
    public var bitsPerRawSample: Int32
    public var profile: Int32
    public var level: Int32
    public var width: Int32
    public var height: Int32
    public var sampleAspectRatio: Rational
    public var fieldOrder: UInt32
    public var colorRange: UInt32
    public var colorPrimaries: UInt32
    public var colorTransfer: UInt32
    public var colorSpace: UInt32
    public var chromaLocation: UInt32
    public var videoDelay: Int32
    public var extradata: [UInt8]

    package init(_ p: UnsafePointer<AVCodecParameters>) {
        let c = p.pointee
        codecType = c.codec_type.rawValue
        codecID = c.codec_id.rawValue
        codecTag = c.codec_tag
        format = c.format
        bitRate = c.bit_rate
        bitsPerCodedSample = c.bits_per_coded_sample
        bitsPerRawSample = c.bits_per_raw_sample
        profile = c.profile
        level = c.level
        width = c.width
        height = c.height
        sampleAspectRatio = Rational(c.sample_aspect_ratio)
        fieldOrder = c.field_order.rawValue
        colorRange = c.color_range.rawValue
        colorPrimaries = c.color_primaries.rawValue
        colorTransfer = c.color_trc.rawValue
        colorSpace = c.color_space.rawValue
        chromaLocation = c.chroma_location.rawValue
        videoDelay = c.video_delay
        if let data = c.extradata, c.extradata_size > 0 {
            extradata = Array(UnsafeBufferPointer(start: data, count: Int(c.extradata_size)))
        } else {
            extradata = []
        }
    }

    /// Fills an allocated AVCodecParameters with these values (the extradata is copied into FFmpeg memory).
    package func apply(to p: UnsafeMutablePointer<AVCodecParameters>) throws {
        p.pointee.codec_type = AVMediaType(rawValue: codecType)
        p.pointee.codec_id = AVCodecID(rawValue: codecID)
        p.pointee.codec_tag = codecTag
        p.pointee.format = format
        p.pointee.bit_rate = bitRate
        p.pointee.bits_per_coded_sample = bitsPerCodedSample
        p.pointee.bits_per_raw_sample = bitsPerRawSample
        p.pointee.profile = profile
        p.pointee.level = level
        p.pointee.width = width
        p.pointee.height = height
        p.pointee.sample_aspect_ratio = sampleAspectRatio.av
        p.pointee.field_order = AVFieldOrder(rawValue: fieldOrder)
        p.pointee.color_range = AVColorRange(rawValue: colorRange)
        p.pointee.color_primaries = AVColorPrimaries(rawValue: colorPrimaries)
        p.pointee.color_trc = AVColorTransferCharacteristic(rawValue: colorTransfer)
        p.pointee.color_space = AVColorSpace(rawValue: colorSpace)
        p.pointee.chroma_location = AVChromaLocation(rawValue: chromaLocation)
        p.pointee.video_delay = videoDelay
        av_freep(&p.pointee.extradata)
        p.pointee.extradata_size = 0
        if !extradata.isEmpty {
            let size = extradata.count
            guard let buffer = av_mallocz(size + Int(AV_INPUT_BUFFER_PADDING_SIZE))?.assumingMemoryBound(to: UInt8.self)
            else { throw MediaError(.ffmpeg, "out of memory for \(size) bytes of extradata") }
            extradata.withUnsafeBufferPointer { buffer.update(from: $0.baseAddress!, count: size) }
            p.pointee.extradata = buffer
            p.pointee.extradata_size = Int32(size)
        }
    }

    /// FFmpeg's short name of the codec ("h264", "hevc", "av1", ...).
    public var codecName: String { String(cString: avcodec_get_name(AVCodecID(rawValue: codecID))) }
    /// FFmpeg's name of the pixel format, or nil when unknown.
    public var pixelFormatName: String? {
        guard let name = av_get_pix_fmt_name(AVPixelFormat(rawValue: format)) else { return nil }
        return String(cString: name)
    }
    public var isVideo: Bool { codecType == AVMEDIA_TYPE_VIDEO.rawValue }
}

/// Binary serialisation of CodecParameters for packet files.
extension CodecParameters {
    func serialize(into w: inout ByteWriter) {
        w.int32(codecType)
        w.uint32(codecID)
        w.uint32(codecTag)
        w.int32(format)
        w.int64(bitRate)
        w.int32(bitsPerCodedSample)
        w.int32(bitsPerRawSample)
        w.int32(profile)
        w.int32(level)
        w.int32(width)
        w.int32(height)
        w.int32(sampleAspectRatio.num)
        w.int32(sampleAspectRatio.den)
        w.uint32(fieldOrder)
        w.uint32(colorRange)
        w.uint32(colorPrimaries)
        w.uint32(colorTransfer)
        w.uint32(colorSpace)
        w.uint32(chromaLocation)
        w.int32(videoDelay)
        w.bytes(extradata)
    }

    init(from r: inout ByteReader) throws {
        codecType = try r.int32()
        codecID = try r.uint32()
        codecTag = try r.uint32()
        format = try r.int32()
        bitRate = try r.int64()
        bitsPerCodedSample = try r.int32()
        bitsPerRawSample = try r.int32()
        profile = try r.int32()
        level = try r.int32()
        width = try r.int32()
        height = try r.int32()
        sampleAspectRatio = Rational(try r.int32(), try r.int32())
        fieldOrder = try r.uint32()
        colorRange = try r.uint32()
        colorPrimaries = try r.uint32()
        colorTransfer = try r.uint32()
        colorSpace = try r.uint32()
        chromaLocation = try r.uint32()
        videoDelay = try r.int32()
        extradata = try r.bytes(limit: 1 << 24)
    }
}

/// Big-endian writer into a growing byte array.
struct ByteWriter {
    var bytes: [UInt8] = []

    mutating func uint32(_ v: UInt32) { withUnsafeBytes(of: v.bigEndian) { bytes.append(contentsOf: $0) } }
    mutating func int32(_ v: Int32) { uint32(UInt32(bitPattern: v)) }
    mutating func int64(_ v: Int64) { withUnsafeBytes(of: v.bigEndian) { bytes.append(contentsOf: $0) } }
    mutating func bytes(_ v: [UInt8]) {
        uint32(UInt32(v.count))
        bytes.append(contentsOf: v)
    }
}

/// Big-endian reader over a byte array; every read is bounds-checked.
struct ByteReader {
    let bytes: [UInt8]
    var offset = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    var remaining: Int { bytes.count - offset }

    private mutating func take(_ n: Int) throws -> ArraySlice<UInt8> {
        guard n >= 0, remaining >= n else {
            throw MediaError(.invalidInput, "packet file header is truncated")
        }
        defer { offset += n }
        return bytes[offset..<offset + n]
    }

    mutating func uint32() throws -> UInt32 {
        try take(4).reduce(0) { $0 << 8 | UInt32($1) }
    }
    mutating func int32() throws -> Int32 { Int32(bitPattern: try uint32()) }
    mutating func int64() throws -> Int64 {
        Int64(bitPattern: try take(8).reduce(0) { $0 << 8 | UInt64($1) })
    }
    mutating func bytes(limit: Int) throws -> [UInt8] {
        let n = Int(try uint32())
        guard n <= limit else { throw MediaError(.invalidInput, "packet file field of \(n) bytes exceeds \(limit)") }
        return Array(try take(n))
    }
}

extension CodecParameters {
    /// The parameters as bytes (the packet file header encoding), for storing a job's pinned stream header.
    public var serialized: [UInt8] {
        var w = ByteWriter()
        serialize(into: &w)
        return w.bytes
    }

    /// Parameters stored with `serialized`.
    public init(serialized: [UInt8]) throws {
        var r = ByteReader(serialized)
        try self.init(from: &r)
    }
}
