// libFuzzer target: the node channel's frame decoder and message parser (Sources/Protocol).
//
// Built by scripts/fuzz.sh together with the sources of Sources/Protocol, so it reaches their internals.
// The input is a byte stream as a peer would send it. The first byte picks how the stream is cut into reads
// (as TCP may deliver it) and which maximum frame size is enforced; the rest is fed to `FarmWire.readFrame`
// read by read, exactly as `FrameDecoder` does on a connection. What must hold for any input:
// - nothing traps: a bad frame is a thrown `ProtocolError`, which closes that connection only;
// - `readFrame` that returns nil (a frame not whole yet) leaves the buffer untouched;
// - after an error, nothing more is read (the decoder stops, the connection closes);
// - a decoded message encodes to a frame that decodes to the same bytes again (idempotent after one pass).

import NIOCore

@_cdecl("LLVMFuzzerTestOneInput")
public func farmFrameFuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 0 else { return 0 }
    let control = data[0]
    let stream = UnsafeBufferPointer(start: data + 1, count: size - 1)
    // Small maxima make the size check reachable with small inputs; the default guards the real channel.
    let maxFrameSize = [FarmWire.defaultMaxFrameSize, 1 << 16, 64, 1][Int(control & 0x03)]
    let readSize = max(1, Int(control >> 2))

    var buffer = ByteBufferAllocator().buffer(capacity: stream.count)
    var offset = 0
    decoding: while offset < stream.count {
        let end = min(offset + readSize, stream.count)
        buffer.writeBytes(UnsafeBufferPointer(rebasing: stream[offset..<end]))
        offset = end
        while true {
            let before = buffer
            let message: Message?
            do {
                message = try FarmWire.readFrame(from: &buffer, maxFrameSize: maxFrameSize)
            } catch is ProtocolError {
                break decoding
            } catch {
                fatalError("readFrame threw something other than a ProtocolError: \(error)")
            }
            guard let message else {
                precondition(buffer == before, "readFrame consumed bytes without returning a frame")
                break
            }
            checkRoundTrip(message, maxFrameSize: maxFrameSize)
        }
    }
    return 0
}

/// encode(decode(frame)) decodes, and encoding that again gives the same bytes.
private func checkRoundTrip(_ message: Message, maxFrameSize: Int) {
    var first = ByteBuffer()
    do {
        try FarmWire.writeFrame(message, into: &first, maxFrameSize: FarmWire.defaultMaxFrameSize)
    } catch {
        fatalError("a decoded \(message.name) does not encode: \(error)")
    }
    var copy = first
    let again: Message?
    do {
        again = try FarmWire.readFrame(from: &copy, maxFrameSize: FarmWire.defaultMaxFrameSize)
    } catch {
        fatalError("the re-encoded \(message.name) does not decode: \(error)")
    }
    guard let again, copy.readableBytes == 0 else { fatalError("the re-encoded \(message.name) is not one whole frame") }
    var second = ByteBuffer()
    try! FarmWire.writeFrame(again, into: &second, maxFrameSize: FarmWire.defaultMaxFrameSize)
    precondition(first == second, "\(message.name) does not encode to the same bytes twice")
}
