package import CFFmpeg

/// Parameter sets carried in the stream itself, for joining segments whose stream headers differ
/// (a segment a node re-encoded in software after its hardware encoder failed, or nodes with other
/// encoders): each segment's first packet then carries its own SPS/PPS (VPS/SPS/PPS, sequence header),
/// and the MP4 sample entry is the in-band kind (`avc3`, `hev1`).
enum ParameterSets {
    /// Whether two segments' streams can share one track at all (with in-band parameter sets).
    static func compatible(_ a: CodecParameters, _ b: CodecParameters) -> String? {
        if a.codecID != b.codecID { return "codec \(a.codecName) against \(b.codecName)" }
        if a.width != b.width || a.height != b.height { return "picture size \(a.width)x\(a.height) against \(b.width)x\(b.height)" }
        if lengthSize(a) != lengthSize(b) || isAnnexB(a.extradata) != isAnnexB(b.extradata) {
            return "NAL framing (Annex B or length size \(lengthSize(a) ?? 0)) against (\(lengthSize(b) ?? 0))"
        }
        return nil
    }

    /// The NAL length field size of an avcC/hvcC header.
    static func lengthSize(_ p: CodecParameters) -> Int? {
        let e = p.extradata
        switch AVCodecID(rawValue: p.codecID) {
        case AV_CODEC_ID_H264: return e.count >= 7 && e[0] == 1 ? Int(e[4] & 3) + 1 : nil
        case AV_CODEC_ID_HEVC: return e.count >= 23 && e[0] == 1 ? Int(e[21] & 3) + 1 : nil
        default: return nil
        }
    }

    /// The MP4 sample entry for in-band parameter sets, where the codec has one.
    static func inBandTag(_ p: CodecParameters) -> String? {
        switch AVCodecID(rawValue: p.codecID) {
        case AV_CODEC_ID_H264: "avc3"
        case AV_CODEC_ID_HEVC: "hev1"
        default: nil
        }
    }

    /// The bytes to put in front of a segment's first packet: its parameter sets as length-prefixed
    /// NAL units (H.264, HEVC), or its sequence header OBUs when the packet has none (AV1).
    static func prefix(for p: CodecParameters, firstPacket: UnsafeRawBufferPointer) -> [UInt8] {
        let e = p.extradata
        let codec = AVCodecID(rawValue: p.codecID)
        if codec == AV_CODEC_ID_H264 || codec == AV_CODEC_ID_HEVC, isAnnexB(e) {
            // libx264 and libx265 give Annex B headers and packets: the parameter sets go in front as
            // they are, and the muxer turns the whole packet into length-prefixed units.
            return e
        }
        switch codec {
        case AV_CODEC_ID_H264:
            guard let size = lengthSize(p) else { return [] }
            var units: [[UInt8]] = []
            var i = 5
            var count = Int(e[i] & 0x1F)
            i += 1
            for _ in 0..<count {
                guard let unit = take(e, &i) else { return [] }
                units.append(unit)
            }
            guard i < e.count else { return [] }
            count = Int(e[i])
            i += 1
            for _ in 0..<count {
                guard let unit = take(e, &i) else { return [] }
                units.append(unit)
            }
            return lengthPrefixed(units, size: size)
        case AV_CODEC_ID_HEVC:
            guard let size = lengthSize(p) else { return [] }
            var units: [[UInt8]] = []
            var i = 22
            let arrays = Int(e[i])
            i += 1
            for _ in 0..<arrays {
                guard i + 3 <= e.count else { return [] }
                let count = Int(e[i + 1]) << 8 | Int(e[i + 2])
                i += 3
                for _ in 0..<count {
                    guard let unit = take(e, &i) else { return [] }
                    units.append(unit)
                }
            }
            return lengthPrefixed(units, size: size)
        case AV_CODEC_ID_AV1:
            guard e.count > 4, !hasSequenceHeader(firstPacket) else { return [] }
            return Array(e[4...])
        default:
            return []
        }
    }

    static func isAnnexB(_ e: [UInt8]) -> Bool {
        (e.count > 3 && e[0] == 0 && e[1] == 0 && e[2] == 1) || (e.count > 4 && e[0] == 0 && e[1] == 0 && e[2] == 0 && e[3] == 1)
    }

    private static func take(_ e: [UInt8], _ i: inout Int) -> [UInt8]? {
        guard i + 2 <= e.count else { return nil }
        let length = Int(e[i]) << 8 | Int(e[i + 1])
        i += 2
        guard i + length <= e.count else { return nil }
        defer { i += length }
        return Array(e[i..<i + length])
    }

    private static func lengthPrefixed(_ units: [[UInt8]], size: Int) -> [UInt8] {
        var out: [UInt8] = []
        for unit in units {
            for shift in stride(from: (size - 1) * 8, through: 0, by: -8) { out.append(UInt8((unit.count >> shift) & 0xFF)) }
            out.append(contentsOf: unit)
        }
        return out
    }

    /// Whether an AV1 temporal unit contains a sequence header OBU (type 1). The bytes come from a
    /// node: every size is read as at most 8 LEB128 bytes and checked against what is left.
    static func hasSequenceHeader(_ data: UnsafeRawBufferPointer) -> Bool {
        var i = 0
        while i < data.count {
            let header = data[i]
            let type = (header >> 3) & 0x0F
            if type == 1 { return true }
            let hasExtension = header & 0x04 != 0
            let hasSize = header & 0x02 != 0
            i += hasExtension ? 2 : 1
            guard hasSize else { return false }
            var size: UInt64 = 0
            var complete = false
            for byteIndex in 0..<8 where i < data.count {
                let byte = data[i]
                i += 1
                size |= UInt64(byte & 0x7F) << (7 * UInt64(byteIndex))
                if byte & 0x80 == 0 {
                    complete = true
                    break
                }
            }
            guard complete, i <= data.count, size <= UInt64(data.count - i) else { return false }
            i += Int(size)
        }
        return false
    }

    /// Puts `prefix` in front of the packet's data, keeping its timestamps and flags.
    static func prepend(_ prefix: [UInt8], to packet: Packet) throws {
        guard !prefix.isEmpty else { return }
        let joined = Packet()
        let size = prefix.count + packet.size
        try check(av_new_packet(joined.pointer, Int32(size)), "allocating a packet of \(size) bytes")
        prefix.withUnsafeBytes { joined.pointer.pointee.data.update(from: $0.baseAddress!.assumingMemoryBound(to: UInt8.self), count: prefix.count) }
        if packet.size > 0 {
            (joined.pointer.pointee.data + prefix.count).update(from: packet.pointer.pointee.data, count: packet.size)
        }
        try check(av_packet_copy_props(joined.pointer, packet.pointer), "copying packet properties")
        packet.unref()
        av_packet_move_ref(packet.pointer, joined.pointer)
    }
}

extension CodecParameters {
    /// nil when a segment with these parameters can join a track started with `other` (same codec,
    /// picture size and NAL framing; parameter sets may differ and then go in band); else what differs.
    public func joinProblem(with other: CodecParameters) -> String? {
        ParameterSets.compatible(other, self)
    }
}
