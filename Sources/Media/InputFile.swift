package import CFFmpeg

/// Owns a demuxer (an input AVFormatContext) opened on a file.
package final class InputFile {
    package let path: String
    package let context: UnsafeMutablePointer<AVFormatContext>

    package init(path: String, findStreamInfo: Bool = true) throws {
        self.path = path
        var ctx: UnsafeMutablePointer<AVFormatContext>? = nil
        let opened = avformat_open_input(&ctx, path, nil, nil)
        guard opened >= 0, let ctx else {
            throw MediaError(.invalidInput, "\(path): not a readable media file (\(averrorString(opened)))", averror: opened)
        }
        if findStreamInfo {
            let found = avformat_find_stream_info(ctx, nil)
            if found < 0 {
                var c: UnsafeMutablePointer<AVFormatContext>? = ctx
                avformat_close_input(&c)
                throw MediaError(.invalidInput, "\(path): cannot read stream information (\(averrorString(found)))", averror: found)
            }
        }
        context = ctx
    }

    deinit {
        var c: UnsafeMutablePointer<AVFormatContext>? = context
        avformat_close_input(&c)
    }

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
