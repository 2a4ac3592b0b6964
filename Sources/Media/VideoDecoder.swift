package import CFFmpeg

/// Owns a video decoder.
package final class VideoDecoder {
    package let context: UnsafeMutablePointer<AVCodecContext>

    /// - Parameters:
    ///   - strict: Turn damage the decoder would conceal into errors.
    ///   - skipLoopFilter: Skip the in-loop filters (deblocking, SAO). The pictures are then not the right ones, so
    ///     only for decoding that proves a stream decodes and looks at no pixel.
    package init(header: PacketStreamHeader, threads: Int, strict: Bool = false, skipLoopFilter: Bool = false) throws {
        let parameters = CodecParametersBox()
        try header.parameters.apply(to: parameters.pointer)
        guard let codec = avcodec_find_decoder(parameters.pointer.pointee.codec_id) else {
            throw MediaError(.unsupported, "no decoder for codec \(header.parameters.codecName)")
        }
        guard let ctx = avcodec_alloc_context3(codec) else { throw MediaError(.ffmpeg, "avcodec_alloc_context3 failed") }
        context = ctx
        try check(avcodec_parameters_to_context(ctx, parameters.pointer), "decoder parameters")
        ctx.pointee.pkt_timebase = header.timeBase.av
        ctx.pointee.thread_count = Int32(max(threads, 0))
        // Strict decoding turns concealed bitstream damage into errors instead of grey blocks.
        if strict { ctx.pointee.err_recognition |= AV_EF_EXPLODE | AV_EF_CRCCHECK }
        if skipLoopFilter {
            ctx.pointee.skip_loop_filter = AVDISCARD_ALL
            // Unfiltered pictures differ from the encoder's: a picture hash in the stream (HEVC's SEI) would not match.
            ctx.pointee.err_recognition &= ~AV_EF_CRCCHECK
        }
        try check(avcodec_open2(ctx, codec, nil), "opening the \(header.parameters.codecName) decoder")
    }

    deinit {
        var c: UnsafeMutablePointer<AVCodecContext>? = context
        avcodec_free_context(&c)
    }

    /// Forgets all state, as after a seek: the next packet must start a new coded video sequence.
    package func reset() { avcodec_flush_buffers(context) }

    /// Sends a packet, or nil to flush.
    package func send(_ packet: Packet?) throws {
        let r = avcodec_send_packet(context, packet?.pointer)
        if r == farm_AVERROR_EOF() { return }
        try check(r, "decoding")
    }

    /// The next decoded frame; false when the decoder wants input or is drained.
    package func receive(into frame: Frame) throws -> Bool {
        frame.unref()
        let r = avcodec_receive_frame(context, frame.pointer)
        if r == farm_AVERROR_EAGAIN() || r == farm_AVERROR_EOF() { return false }
        try check(r, "decoding")
        return true
    }
}

/// Decodes every frame of a packet file in presentation order, calling `body` with each one.
/// The frame is only valid during the call.
///
/// With `check`, the decoding proves that every frame decodes cleanly, and nothing more: damage the decoder would
/// conceal throws, so does a frame flagged corrupt or with decode errors, and the in-loop filters are skipped
/// (they only change pixels, which a check does not look at, and they cannot fail).
package func decodeAll(
    _ reader: PacketFileReader, threads: Int, check: Bool = false, isCancelled: () -> Bool = { false },
    _ body: (UnsafeMutablePointer<AVFrame>) throws -> Void
) throws {
    let decoder = try VideoDecoder(header: reader.header, threads: threads, strict: check, skipLoopFilter: check)
    let packet = Packet()
    let frame = Frame()
    var more = true
    while more {
        if isCancelled() { throw MediaError(.cancelled, "\(reader.path): decoding cancelled") }
        if try reader.read(into: packet) {
            try decoder.send(packet)
        } else {
            try decoder.send(nil)
            more = false
        }
        while try decoder.receive(into: frame) {
            if check, frame.isDamaged {
                throw MediaError(
                    .verificationFailed,
                    "\(reader.path): the frame at time \(frame.pointer.pointee.best_effort_timestamp) decodes with errors")
            }
            try body(frame.pointer)
        }
    }
}
