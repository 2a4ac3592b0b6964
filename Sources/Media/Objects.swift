package import CFFmpeg

/// Owns one AVPacket.
package final class Packet {
    package let pointer: UnsafeMutablePointer<AVPacket>

    package init() {
        guard let p = av_packet_alloc() else { fatalError("av_packet_alloc: out of memory") }
        pointer = p
    }

    deinit {
        var p: UnsafeMutablePointer<AVPacket>? = pointer
        av_packet_free(&p)
    }

    package func unref() { av_packet_unref(pointer) }

    package var pts: Int64 {
        get { pointer.pointee.pts }
        set { pointer.pointee.pts = newValue }
    }
    package var dts: Int64 {
        get { pointer.pointee.dts }
        set { pointer.pointee.dts = newValue }
    }
    package var duration: Int64 {
        get { pointer.pointee.duration }
        set { pointer.pointee.duration = newValue }
    }
    package var streamIndex: Int {
        get { Int(pointer.pointee.stream_index) }
        set { pointer.pointee.stream_index = Int32(newValue) }
    }
    package var flags: Int32 {
        get { pointer.pointee.flags }
        set { pointer.pointee.flags = newValue }
    }
    package var isKeyframe: Bool { flags & AV_PKT_FLAG_KEY != 0 }
    package var isDiscarded: Bool { flags & AV_PKT_FLAG_DISCARD != 0 }
    package var position: Int64 { pointer.pointee.pos }
    package var size: Int { Int(pointer.pointee.size) }
    package var data: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: pointer.pointee.data, count: Int(pointer.pointee.size))
    }
}

/// Owns one AVFrame.
package final class Frame {
    package let pointer: UnsafeMutablePointer<AVFrame>

    /// The decoder flagged the frame: decode errors, or a picture it had to conceal.
    package var isDamaged: Bool {
        pointer.pointee.decode_error_flags != 0 || pointer.pointee.flags & AV_FRAME_FLAG_CORRUPT != 0
    }

    package init() {
        guard let f = av_frame_alloc() else { fatalError("av_frame_alloc: out of memory") }
        pointer = f
    }

    deinit {
        var f: UnsafeMutablePointer<AVFrame>? = pointer
        av_frame_free(&f)
    }

    package func unref() { av_frame_unref(pointer) }
}

/// Owns an AVCodecParameters.
package final class CodecParametersBox {
    package let pointer: UnsafeMutablePointer<AVCodecParameters>

    package init() {
        guard let p = avcodec_parameters_alloc() else { fatalError("avcodec_parameters_alloc: out of memory") }
        pointer = p
    }

    deinit {
        var p: UnsafeMutablePointer<AVCodecParameters>? = pointer
        avcodec_parameters_free(&p)
    }
}
