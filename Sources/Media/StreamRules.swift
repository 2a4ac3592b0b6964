internal import CFFmpeg

/// The rules a returned segment's stream must keep for `SegmentVerifier`: the job's codec, picture
/// and colour description, closed GOPs that start on an IDR picture, and the job's encoder and CRF
/// wherever the stream names its encoder (x264's and x265's SEI). Hardware encoders (VA-API, NVENC,
/// Quick Sync) name none and stay legal (docs/encoding.md); their pictures are what vouches for them.
enum StreamRules {
    static func checkHeader(_ p: CodecParameters, _ check: SegmentCheck) throws {
        guard p.isVideo else { throw MediaError(.verificationFailed, "the result holds no video") }
        guard let descriptor = avcodec_descriptor_get_by_name(check.codec), descriptor.pointee.id.rawValue == p.codecID else {
            throw MediaError(.verificationFailed, "codec \(p.codecName), the job's is \(check.codec)")
        }
        guard Int(p.width) == check.width, Int(p.height) == check.height else {
            throw MediaError(.verificationFailed, "picture size \(p.width)x\(p.height), the job's is \(check.width)x\(check.height)")
        }
        let format = av_get_pix_fmt(check.pixelFormat)
        guard format != AV_PIX_FMT_NONE, p.format == format.rawValue else {
            throw MediaError(.verificationFailed, "pixel format \(formatName(p.format)), the job's is \(check.pixelFormat)")
        }
        guard sameAspect(p.sampleAspectRatio, check.sampleAspectRatio) else {
            throw MediaError(.verificationFailed, "sample aspect \(p.sampleAspectRatio), the job's is \(check.sampleAspectRatio)")
        }
        try checkColour(
            range: p.colorRange, primaries: p.colorPrimaries, transfer: p.colorTransfer, space: p.colorSpace, check, what: "the header")
    }

    /// Every decoded frame: the bitstream itself must agree with the header the node sent.
    static func checkFrame(_ frame: UnsafeMutablePointer<AVFrame>, number: Int, _ check: SegmentCheck) throws {
        let f = frame.pointee
        guard Int(f.width) == check.width, Int(f.height) == check.height else {
            throw MediaError(.verificationFailed, "frame \(number) is \(f.width)x\(f.height), the job's size is \(check.width)x\(check.height)")
        }
        guard f.format == av_get_pix_fmt(check.pixelFormat).rawValue else {
            throw MediaError(.verificationFailed, "frame \(number) has the pixel format \(formatName(f.format)), the job's is \(check.pixelFormat)")
        }
        guard sameAspect(Rational(f.sample_aspect_ratio), check.sampleAspectRatio) else {
            throw MediaError(
                .verificationFailed, "frame \(number) has the sample aspect \(Rational(f.sample_aspect_ratio)), the job's is \(check.sampleAspectRatio)")
        }
        try checkColour(
            range: f.color_range.rawValue, primaries: f.color_primaries.rawValue, transfer: f.color_trc.rawValue,
            space: f.colorspace.rawValue, check, what: "frame \(number)")
        if number == 0, f.key_frame == 0 || f.pict_type != AV_PICTURE_TYPE_I {
            throw MediaError(.verificationFailed, "frame 0 is not a keyframe (an IDR picture must open the segment)")
        }
    }

    /// An unspecified range in the job accepts the limited range an encoder may state for it (x265 does).
    private static func checkColour(
        range: UInt32, primaries: UInt32, transfer: UInt32, space: UInt32, _ check: SegmentCheck, what: String
    ) throws {
        for (name, got, want) in [
            ("colour range", range, check.colorRange), ("colour primaries", primaries, check.colorPrimaries),
            ("transfer", transfer, check.colorTransfer), ("colour space", space, check.colorSpace),
        ] where got != want && !(name == "colour range" && want == 0 && got == 1) {
            throw MediaError(.verificationFailed, "\(what) has the \(name) \(got), the job's is \(want)")
        }
    }

    /// Unknown (0/x) counts as square pixels, as players take it.
    static func sameAspect(_ a: Rational, _ b: Rational) -> Bool {
        let x = a.num > 0 && a.den > 0 ? a.av : AVRational(num: 1, den: 1)
        let y = b.num > 0 && b.den > 0 ? b.av : AVRational(num: 1, den: 1)
        return av_cmp_q(x, y) == 0
    }

    static func formatName(_ format: Int32) -> String {
        guard let name = av_get_pix_fmt_name(AVPixelFormat(rawValue: format)) else { return "#\(format)" }
        return String(cString: name)
    }

    /// Walks the result's packets in decode order: GOP structure and the encoder's own words.
    struct GOPWalk {
        let check: SegmentCheck
        let lengthSize: Int?
        private(set) var packets = 0
        private var times: [Int64] = []
        private var keys: [Int] = []

        init(check: SegmentCheck, lengthSize: Int?) {
            self.check = check
            self.lengthSize = lengthSize
        }

        mutating func add(_ packet: Packet) throws {
            defer { packets += 1 }
            times.append(packet.pts)
            if packets == 0, !packet.isKeyframe {
                throw MediaError(.verificationFailed, "packet 0 is not a keyframe (an IDR picture must open the segment)")
            }
            guard packet.isKeyframe else {
                if check.gopSize > 0, let last = keys.last, packets - last >= check.gopSize {
                    throw MediaError(
                        .verificationFailed, "packet \(packets) is \(packets - last) frames past a keyframe, the job's GOP is \(check.gopSize)")
                }
                return
            }
            keys.append(packets)
            try StreamRules.checkRandomAccess(packet, number: packets, codec: check.codec, lengthSize: lengthSize)
            try StreamRules.checkEncoderWords(packet, number: packets, check)
        }

        /// Closed GOPs: no frame decoded before a keyframe is presented after it, none decoded after it before it.
        func finish() throws {
            var suffixMin = [Int64](repeating: .max, count: times.count + 1)
            for i in times.indices.reversed() { suffixMin[i] = min(suffixMin[i + 1], times[i]) }
            var prefixMax = Int64.min
            var k = 0
            for (i, pts) in times.enumerated() {
                if k < keys.count, keys[k] == i {
                    k += 1
                    guard prefixMax < pts, suffixMin[i + 1] > pts else {
                        throw MediaError(
                            .verificationFailed, "the GOP opened by packet \(i) is not closed (frames on both sides of it are reordered across it)")
                    }
                }
                prefixMax = max(prefixMax, pts)
            }
        }
    }

    /// A keyframe of H.264 must hold an IDR slice, of HEVC an IDR picture (a CRA opens an open GOP).
    static func checkRandomAccess(_ packet: Packet, number: Int, codec: String, lengthSize: Int?) throws {
        let types: Set<Int>
        let hevc: Bool
        switch codec {
        case "h264": (types, hevc) = ([5], false)
        case "hevc": (types, hevc) = ([19, 20], true)
        default: return
        }
        let found = nalTypes(packet.data, lengthSize: lengthSize, hevc: hevc)
        guard !found.isDisjoint(with: types) else {
            throw MediaError(.verificationFailed, "keyframe packet \(number) holds no IDR picture (NAL types \(found.sorted()))")
        }
    }

    /// The NAL unit types in a packet: length-prefixed (`lengthSize` bytes) or Annex B start codes.
    static func nalTypes(_ data: UnsafeRawBufferPointer, lengthSize: Int?, hevc: Bool) -> Set<Int> {
        var types = Set<Int>()
        let bytes = data.bindMemory(to: UInt8.self)
        func type(at i: Int) -> Int { hevc ? Int(bytes[i] >> 1) & 0x3f : Int(bytes[i] & 0x1f) }
        if let size = lengthSize, (1...4).contains(size) {
            var i = 0
            while i + size < bytes.count {
                var length = 0
                for j in 0..<size { length = length << 8 | Int(bytes[i + j]) }
                i += size
                guard length > 0, length <= bytes.count - i else { break }
                types.insert(type(at: i))
                i += length
            }
        } else {
            var i = 0
            while i + 3 < bytes.count {
                if bytes[i] == 0, bytes[i + 1] == 0, bytes[i + 2] == 1 {
                    types.insert(type(at: i + 3))
                    i += 3
                } else {
                    i += 1
                }
            }
        }
        return types
    }

    /// x264 and x265 write their name and options into an SEI of the first keyframe. A stream that
    /// names an encoder must name the job's software encoder at the job's CRF.
    static func checkEncoderWords(_ packet: Packet, number: Int, _ check: SegmentCheck) throws {
        let data = packet.data
        for (marker, encoder) in [("x264 - core", "libx264"), ("x265 (build", "libx265")] {
            guard let at = find(marker, in: data) else { continue }
            guard check.encoder == encoder else {
                throw MediaError(.verificationFailed, "packet \(number) names the encoder \(encoder), the job's is \(check.encoder)")
            }
            let rest = UnsafeRawBufferPointer(rebasing: data[at..<min(data.count, at + 4096)])
            // CRF 0 is lossless, which x264 runs as constant QP 0 and names so.
            guard let crfAt = find(" crf=", in: rest).map({ $0 + 5 }) ?? (check.crf == 0 ? find(" qp=", in: rest).map { $0 + 4 } : nil)
            else {
                throw MediaError(.verificationFailed, "packet \(number): \(encoder) ran without CRF rate control, the job's CRF is \(check.crf)")
            }
            let digits = rest[crfAt...].prefix { ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2e }
            let value = Double(String(decoding: digits, as: UTF8.self))
            guard let value, (value - Double(check.crf)).magnitude < 0.05 else {
                throw MediaError(
                    .verificationFailed,
                    "packet \(number): \(encoder) ran at CRF \(String(decoding: digits, as: UTF8.self)), the job's is \(check.crf)")
            }
        }
    }

    private static func find(_ marker: String, in data: UnsafeRawBufferPointer) -> Int? {
        let needle = Array(marker.utf8)
        guard let first = needle.first, data.count >= needle.count else { return nil }
        var i = 0
        while i <= data.count - needle.count {
            if data[i] == first, needle.indices.allSatisfy({ data[i + $0] == needle[$0] }) { return i }
            i += 1
        }
        return nil
    }
}
