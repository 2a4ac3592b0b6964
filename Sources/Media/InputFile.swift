package import CFFmpeg

#if canImport(Glibc)
    internal import Glibc
#endif

/// How far a demuxer may go on a file farm did not write (see README.md, "Sources farm opens").
public struct InputLimits: Sendable {
    /// Bytes read to recognise the container and to find the streams' parameters.
    public var probeBytes: Int32 = 16 << 20
    /// Media time read to find the streams' parameters, in microseconds.
    public var analyzeMicroseconds: Int64 = 15_000_000
    /// Wall time for opening and probing; the interrupt callback stops the demuxer after it.
    public var openSeconds: Double = 30
    /// Streams a file may declare.
    public var maxStreams: Int32 = 64
    /// Memory each stream's demuxer index may take, in bytes (entries past it are dropped).
    public var maxIndexBytes: Int32 = 4 << 20

    public init() {}
    public static let standard = InputLimits()

    /// The demuxers farm opens, as FFmpeg names them: MP4/MOV, Matroska/WebM, MPEG-TS, MPEG-PS, AVI,
    /// FLV, ASF/WMV and Ogg. None of them opens another file; playlists (hls, dash), lists (concat),
    /// image sequences (image2) and every other demuxer are refused.
    public static let containerWhitelist = ["mov", "mp4", "matroska", "webm", "mpegts", "mpeg", "avi", "flv", "asf", "ogg"]
}

/// A wall-clock deadline FFmpeg's interrupt callback checks during every read.
final class InterruptDeadline {
    private var deadline: UInt64 = .max
    private(set) var seconds: Double = 0
    private(set) var fired = false

    private static func now() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
    }

    /// From now on, reads fail once `seconds` have passed; nil lifts the deadline.
    func set(_ seconds: Double?) {
        fired = false
        guard let seconds, seconds.isFinite else {
            deadline = .max
            return
        }
        self.seconds = seconds
        let nanoseconds = max(0, min(seconds, 1e9)) * 1e9
        deadline = Self.now() &+ UInt64(nanoseconds)
    }

    func expired() -> Bool {
        if !fired, Self.now() >= deadline { fired = true }
        return fired
    }

    var callback: AVIOInterruptCB {
        AVIOInterruptCB(
            callback: { opaque in
                guard let opaque else { return 0 }
                return Unmanaged<InterruptDeadline>.fromOpaque(opaque).takeUnretainedValue().expired() ? 1 : 0
            },
            opaque: Unmanaged.passUnretained(self).toOpaque())
    }
}

/// Owns a demuxer (an input AVFormatContext) opened on a file, as a hostile file: only the file
/// protocol, only the containers of `InputLimits.containerWhitelist`, the demuxer chosen from the
/// file's bytes (never from its name), and probing bounded in bytes, media time and wall time.
package final class InputFile {
    package let path: String
    package let context: UnsafeMutablePointer<AVFormatContext>
    private var io: UnsafeMutablePointer<AVIOContext>?
    private let deadline: InterruptDeadline

    package init(path: String, findStreamInfo: Bool = true, limits: InputLimits = .standard) throws {
        self.path = path
        let deadline = InterruptDeadline()
        var io: UnsafeMutablePointer<AVIOContext>? = nil
        deadline.set(limits.openSeconds)
        var interrupt = deadline.callback
        var ioOptions: OpaquePointer? = nil
        av_dict_set(&ioOptions, "protocol_whitelist", "file", 0)
        defer { av_dict_free(&ioOptions) }
        // "file:" in front, so that no part of a name ("concat:", "subfile,") picks another protocol.
        let opened = avio_open2(&io, "file:" + path, AVIO_FLAG_READ, &interrupt, &ioOptions)
        guard opened >= 0, io != nil else {
            throw Self.openError(path, opened, deadline, "not a readable media file")
        }
        var format: UnsafePointer<AVInputFormat>? = nil
        let probed = av_probe_input_buffer2(io, &format, nil, nil, 0, UInt32(limits.probeBytes))
        let failure: MediaError?
        if probed < 0 || format == nil {
            failure = Self.openError(path, probed, deadline, "not a readable media file")
        } else if let format, !Self.isWhitelisted(format) {
            let name = String(cString: format.pointee.name)
            failure = MediaError(
                .unsupported,
                "\(path): is \(name), not a container farm reads (\(InputLimits.containerWhitelist.joined(separator: ", ")))")
        } else {
            failure = nil
        }
        if let failure {
            avio_closep(&io)
            throw failure
        }
        var ctx = avformat_alloc_context()
        guard let allocated = ctx else {
            avio_closep(&io)
            throw MediaError(.ffmpeg, "\(path): out of memory opening a demuxer")
        }
        allocated.pointee.pb = io
        allocated.pointee.flags |= AVFMT_FLAG_CUSTOM_IO
        allocated.pointee.interrupt_callback = interrupt
        var options: OpaquePointer? = nil
        av_dict_set(&options, "format_whitelist", InputLimits.containerWhitelist.joined(separator: ","), 0)
        av_dict_set(&options, "protocol_whitelist", "file", 0)
        av_dict_set(&options, "probesize", String(limits.probeBytes), 0)
        av_dict_set(&options, "analyzeduration", String(limits.analyzeMicroseconds), 0)
        av_dict_set(&options, "max_streams", String(limits.maxStreams), 0)
        av_dict_set(&options, "indexmem", String(limits.maxIndexBytes), 0)
        defer { av_dict_free(&options) }
        // On failure avformat_open_input frees the context, but never a custom AVIOContext.
        let result = avformat_open_input(&ctx, path, format, &options)
        guard result >= 0, let ctx else {
            avio_closep(&io)
            throw Self.openError(path, result, deadline, "not a readable media file")
        }
        if findStreamInfo {
            let found = avformat_find_stream_info(ctx, nil)
            if found < 0 {
                var c: UnsafeMutablePointer<AVFormatContext>? = ctx
                avformat_close_input(&c)
                avio_closep(&io)
                throw Self.openError(path, found, deadline, "cannot read stream information")
            }
        }
        deadline.set(nil)
        context = ctx
        self.io = io
        self.deadline = deadline
    }

    deinit {
        var c: UnsafeMutablePointer<AVFormatContext>? = context
        avformat_close_input(&c)
        avio_closep(&io)
    }

    /// Whether one of the names FFmpeg gives the format ("mov,mp4,m4a,...") is whitelisted.
    private static func isWhitelisted(_ format: UnsafePointer<AVInputFormat>) -> Bool {
        let names = String(cString: format.pointee.name).split(separator: ",")
        return names.contains { InputLimits.containerWhitelist.contains(String($0)) }
    }

    private static func openError(_ path: String, _ code: Int32, _ deadline: InterruptDeadline, _ what: String) -> MediaError {
        if deadline.fired {
            return MediaError(.invalidInput, "\(path): took longer than \(deadline.seconds) s to open", averror: code)
        }
        return MediaError(.invalidInput, "\(path): \(what) (\(averrorString(code)))", averror: code)
    }

    /// Reads after this fail once `seconds` have passed (nil: no limit): indexing a crafted file
    /// ends with one line instead of holding a thread.
    package func limitReading(toSeconds seconds: Double?) { deadline.set(seconds) }

    package var streamCount: Int { Int(context.pointee.nb_streams) }

    package func stream(_ index: Int) -> UnsafeMutablePointer<AVStream> {
        context.pointee.streams[index]!
    }

    /// The index of the stream FFmpeg considers the main video, skipping cover art.
    package func bestVideoStream() -> Int? {
        let best = av_find_best_stream(context, AVMEDIA_TYPE_VIDEO, -1, -1, nil, 0)
        if best >= 0, stream(Int(best)).pointee.disposition & AV_DISPOSITION_ATTACHED_PIC == 0 { return Int(best) }
        for i in 0..<streamCount {
            let s = stream(i)
            if s.pointee.codecpar.pointee.codec_type == AVMEDIA_TYPE_VIDEO,
                s.pointee.disposition & AV_DISPOSITION_ATTACHED_PIC == 0
            {
                return i
            }
        }
        return nil
    }

    /// Makes the demuxer skip every stream for which `keep` is false.
    package func discardStreams(keeping keep: (Int) -> Bool) {
        for i in 0..<streamCount where !keep(i) {
            stream(i).pointee.discard = AVDISCARD_ALL
        }
    }

    /// Reads the next packet; false at the end of the input.
    package func read(into packet: Packet) throws -> Bool {
        packet.unref()
        let r = av_read_frame(context, packet.pointer)
        if r == farm_AVERROR_EOF() { return false }
        if r < 0, deadline.fired {
            throw MediaError(.invalidInput, "\(path): reading took longer than its limit of \(deadline.seconds) s", averror: r)
        }
        try check(r, "\(path): reading a packet")
        return true
    }
}

/// Whether a key packet starts a picture that decodes without any earlier picture and whose
/// followers reference nothing before it (an IDR picture). Open-GOP keyframes (H.264 recovery
/// points, HEVC CRA) are not clean: a cut there must bring the preceding GOP along.
func isCleanKeyframe(codecID: AVCodecID, extradata: [UInt8], packet: UnsafeRawBufferPointer) -> Bool {
    switch codecID {
    case AV_CODEC_ID_H264:
        return nalTypes(in: packet, lengthSize: avcLengthSize(extradata)).contains { $0 & 0x1F == 5 }
    case AV_CODEC_ID_HEVC:
        return nalTypes(in: packet, lengthSize: hvccLengthSize(extradata)).contains {
            let type = ($0 >> 1) & 0x3F
            return type == 19 || type == 20
        }
    case AV_CODEC_ID_VP8, AV_CODEC_ID_VP9, AV_CODEC_ID_AV1:
        return true
    default:
        if let descriptor = avcodec_descriptor_get(codecID),
            descriptor.pointee.props & AV_CODEC_PROP_INTRA_ONLY != 0
        {
            return true
        }
        return false
    }
}

/// The NAL length size of an avcC record, or nil for Annex B streams.
private func avcLengthSize(_ extradata: [UInt8]) -> Int? {
    guard extradata.count >= 7, extradata[0] == 1 else { return nil }
    return Int(extradata[4] & 3) + 1
}

/// The NAL length size of an hvcC record, or nil for Annex B streams.
private func hvccLengthSize(_ extradata: [UInt8]) -> Int? {
    guard extradata.count >= 23, extradata[0] == 1 else { return nil }
    return Int(extradata[21] & 3) + 1
}

/// The first header byte of each NAL unit in a packet, length-prefixed or Annex B.
private func nalTypes(in data: UnsafeRawBufferPointer, lengthSize: Int?) -> [UInt8] {
    var result: [UInt8] = []
    if let lengthSize {
        var offset = 0
        while offset + lengthSize < data.count {
            var length = 0
            for i in 0..<lengthSize { length = length << 8 | Int(data[offset + i]) }
            offset += lengthSize
            guard length > 0, offset + length <= data.count else { break }
            result.append(data[offset])
            offset += length
        }
    } else {
        var i = 0
        while i + 3 < data.count {
            if data[i] == 0, data[i + 1] == 0, data[i + 2] == 1 {
                result.append(data[i + 3])
                i += 3
            } else {
                i += 1
            }
        }
    }
    return result
}
