package import CFFmpeg

#if canImport(Glibc)
    internal import Glibc
#elseif canImport(Darwin)
    internal import Darwin
#endif

/// The header of a packet file: the stream it holds and its time base.
public struct PacketStreamHeader: Sendable, Hashable {
    public var parameters: CodecParameters
    public var timeBase: Rational
    public var frameRate: Rational

    public init(parameters: CodecParameters, timeBase: Rational, frameRate: Rational) {
        self.parameters = parameters
        self.timeBase = timeBase
        self.frameRate = frameRate
    }
}

/// Packet files carry one stream's compressed packets with their exact timestamps between
/// coordinator and nodes: a segment of the source on the way out, its encoding on the way back.
///
/// Layout: the magic `FARMPKT1`, a big-endian u32 header length and the header (codec parameters,
/// time base, frame rate), then one record per packet: u32 size, i64 pts, i64 dts, i64 duration,
/// i32 flags, and the packet's bytes.
enum PacketFileFormat {
    static let magic: [UInt8] = Array("FARMPKT1".utf8)
    static let recordHeaderSize = 4 + 8 + 8 + 8 + 4
    static let maxPacketSize = 256 << 20
    static let bufferSize = 1 << 20
}

/// Writes a packet file, buffered; reports every byte it writes to `observer` (for checksums).
public final class PacketFileWriter {
    public let path: String
    private var fd: Int32
    private var buffer: [UInt8] = []
    private let observer: ((UnsafeRawBufferPointer) -> Void)?
    public private(set) var bytesWritten: Int64 = 0
    public private(set) var packetCount = 0

    public init(
        path: String, header: PacketStreamHeader, observer: ((UnsafeRawBufferPointer) -> Void)? = nil
    ) throws {
        self.path = path
        self.observer = observer
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw MediaError(.io, "cannot create \(path): \(String(cString: strerror(errno)))")
        }
        buffer.reserveCapacity(PacketFileFormat.bufferSize)
        var w = ByteWriter()
        header.parameters.serialize(into: &w)
        w.int32(header.timeBase.num)
        w.int32(header.timeBase.den)
        w.int32(header.frameRate.num)
        w.int32(header.frameRate.den)
        var top = ByteWriter()
        top.bytes.append(contentsOf: PacketFileFormat.magic)
        top.bytes(w.bytes)
        try append(top.bytes)
    }

    deinit {
        if fd >= 0 { _ = Glibc.close(fd) }
    }

    package func write(_ packet: Packet) throws {
        var w = ByteWriter()
        w.uint32(UInt32(packet.size))
        w.int64(packet.pts)
        w.int64(packet.dts)
        w.int64(packet.duration)
        w.int32(packet.flags)
        try append(w.bytes)
        try append(packet.data)
        packetCount += 1
    }

    private func append(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { (raw) throws in try append(raw) }
    }

    private func append(_ bytes: UnsafeRawBufferPointer) throws {
        observer?(bytes)
        bytesWritten += Int64(bytes.count)
        if buffer.count + bytes.count > PacketFileFormat.bufferSize { try flush() }
        if bytes.count >= PacketFileFormat.bufferSize {
            try writeAll(bytes)
        } else {
            buffer.append(contentsOf: bytes)
        }
    }

    private func flush() throws {
        guard !buffer.isEmpty else { return }
        try buffer.withUnsafeBytes { (raw) throws in try writeAll(raw) }
        buffer.removeAll(keepingCapacity: true)
    }

    private func writeAll(_ bytes: UnsafeRawBufferPointer) throws {
        var offset = 0
        while offset < bytes.count {
            let n = Glibc.write(fd, bytes.baseAddress! + offset, bytes.count - offset)
            if n < 0 {
                if errno == EINTR { continue }
                throw MediaError(.io, "cannot write \(path): \(String(cString: strerror(errno)))")
            }
            offset += n
        }
    }

    /// Flushes and closes the file; the writer cannot be used afterwards.
    public func close() throws {
        try flush()
        let result = Glibc.close(fd)
        fd = -1
        if result != 0 { throw MediaError(.io, "cannot close \(path): \(String(cString: strerror(errno)))") }
    }
}

/// Reads a packet file written by `PacketFileWriter`, checking every length against what is left.
public final class PacketFileReader {
    public let path: String
    public private(set) var header: PacketStreamHeader
    private var fd: Int32
    private var buffer: [UInt8]
    private var start = 0
    private var end = 0
    private var atEOF = false
    private var fileSize: Int64 = 0

    /// Opens the file and reads its header; `bufferSize` is what it reads at a time (1 MiB for
    /// reading packets, a few KiB for walking timestamps with `nextTimes`).
    public init(path: String, bufferSize: Int = 1 << 20) throws {
        self.path = path
        fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            throw MediaError(.io, "cannot open \(path): \(String(cString: strerror(errno)))")
        }
        var st = stat()
        if fstat(fd, &st) == 0 { fileSize = Int64(st.st_size) }
        buffer = [UInt8](repeating: 0, count: max(bufferSize, PacketFileFormat.recordHeaderSize))
        // Temporarily placeholder; replaced below once the header is parsed.
        header = PacketStreamHeader(
            parameters: CodecParameters(empty: ()), timeBase: Rational(0, 1), frameRate: Rational(0, 1))
        let magic = try take(8)
        guard magic == PacketFileFormat.magic else {
            throw MediaError(.invalidInput, "\(path) is not a farm packet file")
        }
        var lengthReader = ByteReader(try take(4))
        let length = Int(try lengthReader.uint32())
        guard length <= 1 << 24 else { throw MediaError(.invalidInput, "\(path): header of \(length) bytes") }
        var r = ByteReader(try take(length))
        let parameters = try CodecParameters(from: &r)
        let timeBase = Rational(try r.int32(), try r.int32())
        let frameRate = Rational(try r.int32(), try r.int32())
        header = PacketStreamHeader(parameters: parameters, timeBase: timeBase, frameRate: frameRate)
    }

    deinit {
        if fd >= 0 { _ = close(fd) }
    }

    /// Ensures `n` bytes are buffered; returns false at a clean end of file before any of them.
    private func fill(_ n: Int) throws -> Bool {
        while end - start < n {
            if start > 0 {
                buffer.withUnsafeMutableBytes { raw in
                    raw.baseAddress!.copyMemory(from: raw.baseAddress! + start, byteCount: end - start)
                }
                end -= start
                start = 0
            }
            if buffer.count < n { buffer.append(contentsOf: [UInt8](repeating: 0, count: n - buffer.count)) }
            if atEOF { break }
            let got = buffer.withUnsafeMutableBytes { raw in
                Glibc.read(fd, raw.baseAddress! + end, raw.count - end)
            }
            if got < 0 {
                if errno == EINTR { continue }
                throw MediaError(.io, "cannot read \(path): \(String(cString: strerror(errno)))")
            }
            if got == 0 { atEOF = true } else { end += got }
        }
        if end - start >= n { return true }
        if end == start { return false }
        throw MediaError(.invalidInput, "\(path) is truncated")
    }

    private func take(_ n: Int) throws -> [UInt8] {
        guard try fill(n) else { throw MediaError(.invalidInput, "\(path) is truncated") }
        defer { start += n }
        return Array(buffer[start..<start + n])
    }

    /// One record's header: the packet's size, times and flags.
    private struct Record {
        var size: Int
        var pts: Int64
        var dts: Int64
        var duration: Int64
        var flags: Int32
    }

    private func nextRecord() throws -> Record? {
        guard try fill(PacketFileFormat.recordHeaderSize) else { return nil }
        var r = ByteReader(Array(buffer[start..<start + PacketFileFormat.recordHeaderSize]))
        start += PacketFileFormat.recordHeaderSize
        let size = Int(try r.uint32())
        guard size <= PacketFileFormat.maxPacketSize else {
            throw MediaError(.invalidInput, "\(path): packet of \(size) bytes is over the limit")
        }
        return Record(size: size, pts: try r.int64(), dts: try r.int64(), duration: try r.int64(), flags: try r.int32())
    }

    /// The next packet's presentation time and duration, skipping its bytes; nil at the end of the file.
    package func nextTimes() throws -> (pts: Int64, duration: Int64)? {
        guard let record = try nextRecord() else { return nil }
        let buffered = min(record.size, end - start)
        start += buffered
        let rest = record.size - buffered
        if rest > 0 {
            start = 0
            end = 0
            let offset = lseek(fd, off_t(rest), SEEK_CUR)
            guard offset >= 0, Int64(offset) <= fileSize else { throw MediaError(.invalidInput, "\(path) is truncated") }
        }
        return (record.pts, record.duration)
    }

    /// Reads the next packet into `packet`; false at the end of the file.
    package func read(into packet: Packet) throws -> Bool {
        packet.unref()
        guard let record = try nextRecord() else { return false }
        let (size, pts, dts, duration, flags) = (record.size, record.pts, record.dts, record.duration, record.flags)
        try check(av_new_packet(packet.pointer, Int32(size)), "allocating a packet of \(size) bytes")
        guard try fill(size) || size == 0 else { throw MediaError(.invalidInput, "\(path) is truncated") }
        if size > 0 {
            buffer.withUnsafeBytes { raw in
                packet.pointer.pointee.data.update(
                    from: raw.baseAddress!.assumingMemoryBound(to: UInt8.self) + start, count: size)
            }
            start += size
        }
        packet.pts = pts
        packet.dts = dts
        packet.duration = duration
        packet.flags = flags
        return true
    }
}

extension CodecParameters {
    init(empty: Void) {
        codecType = 0
        codecID = 0
        codecTag = 0
        format = -1
        bitRate = 0
        bitsPerCodedSample = 0
        bitsPerRawSample = 0
        profile = 0
        level = 0
        width = 0
        height = 0
        sampleAspectRatio = Rational(0, 1)
        fieldOrder = 0
        colorRange = 0
        colorPrimaries = 0
        colorTransfer = 0
        colorSpace = 0
        chromaLocation = 0
        videoDelay = 0
        extradata = []
    }
}
