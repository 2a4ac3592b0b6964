package import CFFmpeg

/// Where one segment's source packets go.
public struct SegmentPayload: Sendable {
    public var index: Int
    /// Video packets in decode order, as `SourceIndex.payloadPackets` gives them.
    public var packets: Range<Int>
    public var path: String

    public init(index: Int, packets: Range<Int>, path: String) {
        self.index = index
        self.packets = packets
        self.path = path
    }
}

/// Copies the source's video packets into one packet file per segment in a single sequential read:
/// no decoding, memory bounded by the write buffers of the (at most a few) segments open at once.
public enum SegmentSplitter {
    /// Writes every payload. `observer(i)` sees the bytes of payload i as they are written (checksums);
    /// `written(i, bytes)` is called as soon as payload i is complete, so dispatch can start early.
    public static func split(
        path: String, index: SourceIndex, payloads: [SegmentPayload],
        observer: (Int) -> ((UnsafeRawBufferPointer) -> Void)?,
        written: (Int, Int64) throws -> Void,
        isCancelled: () -> Bool = { false }
    ) throws {
        let input = try InputFile(path: path)
        let video = index.videoStreamIndex
        input.discardStreams { $0 == video }
        let ordered = payloads.sorted { $0.packets.lowerBound < $1.packets.lowerBound }
        var next = 0
        var open: [(payload: SegmentPayload, writer: PacketFileWriter)] = []
        var packetIndex = 0
        let packet = Packet()

        func finish(_ entry: (payload: SegmentPayload, writer: PacketFileWriter)) throws {
            try entry.writer.close()
            try written(entry.payload.index, entry.writer.bytesWritten)
        }

        while try input.read(into: packet) {
            guard packet.streamIndex == video else { continue }
            if isCancelled() { throw MediaError(.cancelled, "\(path): split cancelled") }
            while next < ordered.count, ordered[next].packets.lowerBound <= packetIndex {
                let payload = ordered[next]
                open.append((payload, try PacketFileWriter(path: payload.path, header: index.packetHeader, observer: observer(payload.index))))
                next += 1
            }
            for entry in open where entry.payload.packets.contains(packetIndex) {
                try entry.writer.write(packet)
            }
            packetIndex += 1
            while let i = open.firstIndex(where: { $0.payload.packets.upperBound <= packetIndex }) {
                try finish(open.remove(at: i))
            }
        }
        guard packetIndex == index.packetCount else {
            throw MediaError(
                .mismatch, "\(path): has \(packetIndex) video packets now, \(index.packetCount) when indexed; did it change?")
        }
        for entry in open { try finish(entry) }
    }
}
