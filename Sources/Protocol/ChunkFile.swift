public import NIOCore
import NIOPosix

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// A file read in chunks into buffers the caller keeps, as ``DataSender`` sends segments.
///
/// Reads run on NIO's blocking thread pool, never on an event loop or the cooperative pool. Each read fills the
/// caller's buffer in place when nothing else holds it, so a transfer that cycles a few buffers allocates no
/// chunk-sized buffer per chunk. The descriptor is owned by this value: call ``close()`` once, after the last read returned.
public struct ChunkFile: Sendable {
    /// The file's path, for messages.
    public let path: String
    private let descriptor: CInt

    fileprivate init(path: String, descriptor: CInt) {
        self.path = path
        self.descriptor = descriptor
    }

    /// Opens the file at `path` for reading.
    ///
    /// - Throws: `IOError` naming the path when it cannot be opened.
    public static func open(_ path: String) async throws -> ChunkFile {
        try await NIOThreadPool.singleton.runIfActive {
            let descriptor = path.withCString { systemOpen($0, O_RDONLY | O_CLOEXEC) }
            guard descriptor >= 0 else { throw IOError(errnoCode: errno, reason: "cannot open \(path)") }
            return ChunkFile(path: path, descriptor: descriptor)
        }
    }

    /// Replaces the contents of `buffer` with up to `length` bytes of the file at `offset`: fewer at the end of the
    /// file, none past it.
    ///
    /// - Throws: `IOError` naming the path and offset when the read fails; `buffer` is then empty.
    public func read(at offset: Int64, length: Int, into buffer: inout ByteBuffer) async throws {
        precondition(offset >= 0 && length >= 0, "offset and length must not be negative")
        // The buffer travels to the pool thread as the box's only reference, so that filling it does not copy it.
        let box = BufferBox(buffer)
        buffer = ByteBuffer()
        let (descriptor, path) = (self.descriptor, self.path)
        try await NIOThreadPool.singleton.runIfActive {
            box.buffer.clear()
            try box.buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: length) { target in
                var done = 0
                while done < length {
                    let count = pread(descriptor, target.baseAddress! + done, length - done, off_t(offset) + off_t(done))
                    if count < 0 {
                        if errno == EINTR { continue }
                        throw IOError(errnoCode: errno, reason: "cannot read \(path) at offset \(offset + Int64(done))")
                    }
                    if count == 0 { break }
                    done += count
                }
                return done
            }
        }
        buffer = box.buffer
    }

    /// Closes the descriptor.
    public func close() {
        #if canImport(Darwin)
            _ = Darwin.close(self.descriptor)
        #elseif canImport(Musl)
            _ = Musl.close(self.descriptor)
        #else
            _ = Glibc.close(self.descriptor)
        #endif
    }

    /// A buffer handed between threads, one at a time.
    private final class BufferBox: @unchecked Sendable {
        var buffer: ByteBuffer
        init(_ buffer: ByteBuffer) { self.buffer = buffer }
    }
}

extension StreamingChecksum {
    /// The size and checksum of the file at `path`, or nil when there is no file there. Reads the whole file in
    /// chunks on the calling thread: call it on a thread of its own, never on an event loop or the cooperative pool.
    ///
    /// - Throws: `IOError` naming the path when the file cannot be opened or read; `CancellationError` once
    ///   `isCancelled` answers true (asked before each chunk).
    public static func ofFile(
        atPath path: String, isCancelled: () -> Bool = { false }
    ) throws -> (bytes: Int64, checksum: [UInt8])? {
        let descriptor = path.withCString { systemOpen($0, O_RDONLY | O_CLOEXEC) }
        guard descriptor >= 0 else {
            if errno == ENOENT { return nil }
            throw IOError(errnoCode: errno, reason: "cannot open \(path)")
        }
        let file = ChunkFile(path: path, descriptor: descriptor)
        defer { file.close() }
        var checksum = Self()
        var bytes: Int64 = 0
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: FarmWire.dataChunkSize, alignment: 16)
        defer { buffer.deallocate() }
        while true {
            if isCancelled() { throw CancellationError() }
            let count = read(descriptor, buffer.baseAddress!, buffer.count)
            if count < 0 {
                if errno == EINTR { continue }
                throw IOError(errnoCode: errno, reason: "cannot read \(path) at offset \(bytes)")
            }
            if count == 0 { break }
            checksum.update(UnsafeRawBufferPointer(rebasing: buffer[0..<count]))
            bytes += Int64(count)
        }
        return (bytes, checksum.finalize())
    }
}

/// `open(2)`, which `ChunkFile.open` shadows.
private func systemOpen(_ path: UnsafePointer<CChar>, _ flags: CInt) -> CInt {
    open(path, flags)
}
