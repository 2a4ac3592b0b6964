package import CFFmpeg

/// What to join: the encoded segments in order, the source for every other stream and the metadata.
public struct AssemblyRequest: Sendable {
    public var sourcePath: String
    public var videoStreamIndex: Int
    /// Encoded segment packet files, in segment order.
    public var segmentFiles: [String]
    /// Where to write (a temporary name beside the final output; `Publisher` renames it).
    public var outputPath: String
    /// FFmpeg's muxer name: "mp4", "mov" or "matroska".
    public var container: String

    public init(sourcePath: String, videoStreamIndex: Int, segmentFiles: [String], outputPath: String, container: String) {
        self.sourcePath = sourcePath
        self.videoStreamIndex = videoStreamIndex
        self.segmentFiles = segmentFiles
        self.outputPath = outputPath
        self.container = container
    }

    /// The muxer for an output file name: Matroska for .mkv, QuickTime for .mov, MP4 otherwise.
    public static func container(forOutput path: String) -> String {
        let lower = path.lowercased()
        if lower.hasSuffix(".mkv") { return "matroska" }
        if lower.hasSuffix(".mov") { return "mov" }
        return "mp4"
    }
}

/// What went into an assembled file.
public struct AssemblyReport: Sendable {
    public var videoPackets: Int
    /// Packets written per output stream index (the video stream included).
    public var packetsPerStream: [Int: Int]
    /// Source streams that were not carried, with the reason.
    public var dropped: [String]
    /// Output stream index of the video.
    public var videoOutputIndex: Int
    /// Whether segments carry their own parameter sets (their stream headers differ).
    public var inBandParameterSets: Bool
    /// Video packets each segment contributed, in order (where the joins are).
    public var segmentPackets: [Int]
}

/// Joins encoded segments into one file by stream copy: video packets in segment order with strictly
/// increasing decode times, every other stream of the source copied once (never split), metadata,
/// side data (rotation) and chapters carried over.
public enum Assembler {
    public static func assemble(_ request: AssemblyRequest, isCancelled: () -> Bool = { false }) throws -> AssemblyReport {
        guard !request.segmentFiles.isEmpty else { throw MediaError(.invalidInput, "no segments to join") }
        let source = try InputFile(path: request.sourcePath)
        // One segment file open at a time: a first walk over every segment's record headers (times,
        // reordering depth, stream header), then the packets themselves, segment after segment.
        var segments: [SegmentTimes] = []
        segments.reserveCapacity(request.segmentFiles.count)
        var firstHeader: PacketStreamHeader?
        for (i, path) in request.segmentFiles.enumerated() {
            if isCancelled() { throw MediaError(.cancelled, "\(request.outputPath): assembly cancelled") }
            let (times, header) = try SegmentTimes.scan(path: path, number: i, first: firstHeader)
            if firstHeader == nil { firstHeader = header }
            segments.append(times)
        }
        let first = firstHeader!
        var decodeTimes = try DecodeTimes(segments)
        // Segments from one encoder configuration share one stream header; otherwise each segment
        // carries its own parameter sets in band (see docs/encoding.md).
        let inBand = segments.contains { !$0.sameHeader }
        let output = try OutputFile(path: request.outputPath, format: request.container)

        var mapping: [Int: Int] = [:]
        var dropped: [String] = []
        var videoOut = -1
        for i in 0..<source.streamCount {
            let inStream = source.stream(i)
            if i == request.videoStreamIndex {
                let st = try output.addStream(parameters: first.parameters, timeBase: first.timeBase)
                copyStreamProperties(from: inStream, to: st)
                st.pointee.avg_frame_rate = inStream.pointee.avg_frame_rate
                if request.container != "matroska" {
                    if inBand, let tag = ParameterSets.inBandTag(first.parameters) {
                        st.pointee.codecpar.pointee.codec_tag = fourCC(tag)
                    } else if first.parameters.codecID == AV_CODEC_ID_HEVC.rawValue {
                        // hvc1: parameter sets only in the sample entry, what Apple's players require.
                        st.pointee.codecpar.pointee.codec_tag = fourCC("hvc1")
                    }
                }
                videoOut = Int(st.pointee.index)
                mapping[i] = videoOut
                continue
            }
            if let problem = AssemblyRequest.storageProblem(inStream, index: i, format: output.context.pointee.oformat, container: request.container) {
                guard problem.isRequired else {
                    dropped.append(problem.message)
                    continue
                }
                throw MediaError(.unsupported, "\(request.sourcePath): \(problem.message)")
            }
            let st = try output.addStream(copying: inStream.pointee.codecpar, timeBase: Rational(inStream.pointee.time_base))
            st.pointee.codecpar.pointee.codec_tag = 0
            copyStreamProperties(from: inStream, to: st)
            mapping[i] = Int(st.pointee.index)
        }
        source.discardStreams { mapping[$0] != nil && $0 != request.videoStreamIndex }
        av_dict_copy(&output.context.pointee.metadata, source.context.pointee.metadata, 0)
        try copyChapters(from: source.context, to: output.context)
        try output.writeHeader()

        var counts: [Int: Int] = [:]
        var segmentPackets = Array(repeating: 0, count: segments.count)
        var segment = -1
        var reader: PacketFileReader?
        let videoPacket = Packet()
        let otherPacket = Packet()
        let videoStream = output.stream(videoOut)

        func nextVideo() throws -> Bool {
            while true {
                if let current = reader, try current.read(into: videoPacket) {
                    let times = segments[segment]
                    guard segmentPackets[segment] < times.packets, videoPacket.pts >= times.firstPTS, videoPacket.pts <= times.lastPTS
                    else { throw MediaError(.mismatch, "segment \(segment) changed while it was being joined") }
                    if inBand, segmentPackets[segment] == 0 {
                        try ParameterSets.prepend(
                            ParameterSets.prefix(for: current.header.parameters, firstPacket: videoPacket.data), to: videoPacket)
                    }
                    videoPacket.dts = try decodeTimes.next(pts: videoPacket.pts)
                    return true
                }
                if segment >= 0, segmentPackets[segment] != segments[segment].packets {
                    throw MediaError(.mismatch, "segment \(segment) changed while it was being joined")
                }
                reader = nil
                segment += 1
                guard segment < segments.count else { return false }
                reader = try PacketFileReader(path: request.segmentFiles[segment])
            }
        }
        func nextOther() throws -> Bool {
            while try source.read(into: otherPacket) {
                if otherPacket.streamIndex != request.videoStreamIndex, mapping[otherPacket.streamIndex] != nil { return true }
            }
            return false
        }

        var haveVideo = try nextVideo()
        var haveOther = try nextOther()
        while haveVideo || haveOther {
            if isCancelled() { throw MediaError(.cancelled, "\(request.outputPath): assembly cancelled") }
            var takeVideo = haveVideo
            if haveVideo, haveOther {
                let inStream = source.stream(otherPacket.streamIndex)
                let otherTime = otherPacket.dts != noTimestamp ? otherPacket.dts : otherPacket.pts
                takeVideo =
                    otherTime == noTimestamp
                    || av_compare_ts(videoPacket.dts, first.timeBase.av, otherTime, inStream.pointee.time_base) <= 0
            }
            if takeVideo {
                videoPacket.streamIndex = videoOut
                av_packet_rescale_ts(videoPacket.pointer, first.timeBase.av, videoStream.pointee.time_base)
                try output.write(videoPacket)
                counts[videoOut, default: 0] += 1
                segmentPackets[segment] += 1
                haveVideo = try nextVideo()
            } else {
                let inStream = source.stream(otherPacket.streamIndex)
                let out = mapping[otherPacket.streamIndex]!
                otherPacket.streamIndex = out
                otherPacket.pointer.pointee.pos = -1
                av_packet_rescale_ts(otherPacket.pointer, inStream.pointee.time_base, output.stream(out).pointee.time_base)
                try output.write(otherPacket)
                counts[out, default: 0] += 1
                haveOther = try nextOther()
            }
        }
        try output.finish()
        return AssemblyReport(
            videoPackets: counts[videoOut] ?? 0, packetsPerStream: counts, dropped: dropped, videoOutputIndex: videoOut,
            inBandParameterSets: inBand, segmentPackets: segmentPackets)
    }

    private static func fourCC(_ s: String) -> UInt32 {
        let b = Array(s.utf8)
        return UInt32(b[0]) | UInt32(b[1]) << 8 | UInt32(b[2]) << 16 | UInt32(b[3]) << 24
    }

    /// Language and other tags, disposition, and stream side data such as the display matrix (rotation).
    private static func copyStreamProperties(from input: UnsafeMutablePointer<AVStream>, to output: UnsafeMutablePointer<AVStream>) {
        av_dict_copy(&output.pointee.metadata, input.pointee.metadata, 0)
        output.pointee.disposition = input.pointee.disposition
        output.pointee.codecpar.pointee.sample_aspect_ratio = input.pointee.codecpar.pointee.sample_aspect_ratio
        output.pointee.sample_aspect_ratio = input.pointee.sample_aspect_ratio
        for i in 0..<Int(input.pointee.nb_side_data) {
            let sd = input.pointee.side_data[i]
            guard let dst = av_stream_new_side_data(output, sd.type, sd.size) else { continue }
            dst.update(from: sd.data, count: sd.size)
        }
    }

    private static func copyChapters(
        from input: UnsafeMutablePointer<AVFormatContext>, to output: UnsafeMutablePointer<AVFormatContext>
    ) throws {
        let count = Int(input.pointee.nb_chapters)
        guard count > 0 else { return }
        guard let array = av_calloc(count, MemoryLayout<UnsafeMutablePointer<AVChapter>?>.stride)?
            .assumingMemoryBound(to: UnsafeMutablePointer<AVChapter>?.self)
        else { throw MediaError(.ffmpeg, "out of memory copying chapters") }
        output.pointee.chapters = array
        for i in 0..<count {
            let src = input.pointee.chapters[i]!
            guard let chapter = av_mallocz(MemoryLayout<AVChapter>.size)?.assumingMemoryBound(to: AVChapter.self) else {
                throw MediaError(.ffmpeg, "out of memory copying chapters")
            }
            chapter.pointee.id = src.pointee.id
            chapter.pointee.time_base = src.pointee.time_base
            chapter.pointee.start = src.pointee.start
            chapter.pointee.end = src.pointee.end
            av_dict_copy(&chapter.pointee.metadata, src.pointee.metadata, 0)
            array[i] = chapter
            output.pointee.nb_chapters = UInt32(i + 1)
        }
    }
}

/// Owns a muxer writing to a file.
package final class OutputFile {
    package let context: UnsafeMutablePointer<AVFormatContext>
    let path: String
    private var headerWritten = false
    private var finished = false

    init(path: String, format: String) throws {
        self.path = path
        var ctx: UnsafeMutablePointer<AVFormatContext>? = nil
        try check(avformat_alloc_output_context2(&ctx, nil, format, path), "\(path): creating a \(format) file")
        guard let ctx else { throw MediaError(.ffmpeg, "\(path): no muxer context") }
        context = ctx
        do {
            try check(avio_open(&ctx.pointee.pb, path, AVIO_FLAG_WRITE), "\(path): opening for writing")
        } catch {
            avformat_free_context(ctx)
            throw error
        }
    }

    deinit {
        if headerWritten, !finished { av_write_trailer(context) }
        avio_closep(&context.pointee.pb)
        avformat_free_context(context)
    }

    func addStream(parameters: CodecParameters, timeBase: Rational) throws -> UnsafeMutablePointer<AVStream> {
        guard let st = avformat_new_stream(context, nil) else { throw MediaError(.ffmpeg, "\(path): cannot add a stream") }
        try parameters.apply(to: st.pointee.codecpar)
        st.pointee.time_base = timeBase.av
        return st
    }

    /// A stream whose parameters are an exact copy of a source stream's (audio, subtitles, data).
    func addStream(copying parameters: UnsafePointer<AVCodecParameters>, timeBase: Rational) throws -> UnsafeMutablePointer<AVStream> {
        guard let st = avformat_new_stream(context, nil) else { throw MediaError(.ffmpeg, "\(path): cannot add a stream") }
        try check(avcodec_parameters_copy(st.pointee.codecpar, parameters), "\(path): copying stream parameters")
        st.pointee.time_base = timeBase.av
        return st
    }

    func stream(_ index: Int) -> UnsafeMutablePointer<AVStream> { context.pointee.streams[index]! }

    func writeHeader() throws {
        try check(avformat_write_header(context, nil), "\(path): writing the header")
        headerWritten = true
    }

    func write(_ packet: Packet) throws {
        try check(av_interleaved_write_frame(context, packet.pointer), "\(path): writing a packet")
    }

    func finish() throws {
        finished = true
        try check(av_write_trailer(context), "\(path): writing the trailer")
        try check(avio_closep(&context.pointee.pb), "\(path): closing")
    }
}
