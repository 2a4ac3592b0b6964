import FarmHWEncode
import FarmMedia
import FarmProtocol
import NIOCore
import NIOPosix

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// A file that a segment's bytes are written into as they arrive, at increasing offsets.
///
/// Writes run on NIO's blocking thread pool, never on an event loop or the cooperative pool. The descriptor is
/// closed with a plain `close(2)` rather than through `NIOFileSystem`, whose handles must be closed by an async call
/// that a cancelled task may not get to run (an unclosed handle traps in its `deinit`).
struct IncomingFile: Sendable {
    let path: String
    private let descriptor: CInt

    private init(path: String, descriptor: CInt) {
        self.path = path
        self.descriptor = descriptor
    }

    /// Creates (or truncates) the file at `path`.
    static func create(path: String) async throws -> IncomingFile {
        try await NIOThreadPool.singleton.runIfActive {
            let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
            guard descriptor >= 0 else {
                throw MediaError(.io, "cannot create \(path): \(errnoDescription())")
            }
            return IncomingFile(path: path, descriptor: descriptor)
        }
    }

    /// Writes all readable bytes of `bytes` at `offset`.
    func write(_ bytes: ByteBuffer, at offset: Int64) async throws {
        let descriptor = self.descriptor
        let path = self.path
        try await NIOThreadPool.singleton.runIfActive {
            try bytes.withUnsafeReadableBytes { buffer in
                var done = 0
                while done < buffer.count {
                    let written = pwrite(
                        descriptor, buffer.baseAddress! + done, buffer.count - done, off_t(offset) + off_t(done))
                    if written < 0 {
                        if errno == EINTR { continue }
                        throw MediaError(.io, "cannot write \(path) at offset \(offset + Int64(done)): \(errnoDescription())")
                    }
                    done += written
                }
            }
        }
    }

    /// Closes the descriptor. Call once, after the last write has returned.
    func close() {
        _ = SegmentFiles.closeDescriptor(self.descriptor)
    }
}

/// Helpers for a task's files in the work directory.
enum SegmentFiles {
    /// Where a task's source segment is written.
    static func sourcePath(_ directory: String, taskID: UInt64) -> String { "\(directory)/\(taskID).src.pkt" }

    /// Where a task's encoded segment is written.
    static func encodedPath(_ directory: String, taskID: UInt64) -> String { "\(directory)/\(taskID).enc.pkt" }

    /// Removes a file if it is there; a missing file is no error.
    static func remove(_ path: String) {
        _ = path.withCString { unlink($0) }
    }

    static func closeDescriptor(_ descriptor: CInt) -> CInt {
        #if canImport(Darwin)
            Darwin.close(descriptor)
        #elseif canImport(Musl)
            Musl.close(descriptor)
        #else
            Glibc.close(descriptor)
        #endif
    }

    /// The size and ``SegmentChecksum`` of a file. Blocking: call it on a thread of its own (inside `Offload.run`).
    static func sizeAndChecksum(of path: String, isCancelled: () -> Bool) throws -> (size: UInt64, checksum: [UInt8]) {
        let file: (bytes: Int64, checksum: [UInt8])?
        do {
            file = try SegmentChecksum.ofFile(atPath: path, isCancelled: isCancelled)
        } catch is CancellationError {
            throw MediaError(.cancelled, "\(path): checksum cancelled")
        } catch {
            throw MediaError(.io, "\(error)")
        }
        guard let file else { throw MediaError(.io, "cannot open \(path): no such file") }
        return (UInt64(file.bytes), file.checksum)
    }

    /// The job's pinned settings as the encoder takes them.
    ///
    /// - Parameter threads: The node's threads per slot, used when the settings leave the thread count open.
    /// - Throws: `MediaError(.unsupported)` for a codec this build does not know.
    static func encoderConfig(_ settings: EncodeSettings, threads: Int) throws -> EncoderConfig {
        guard let codec = VideoCodec(rawValue: settings.codec) else {
            throw MediaError(.unsupported, "unknown codec \"\(settings.codec)\" in the job's settings")
        }
        try EncoderOptionPolicy.check(settings.options)
        return EncoderConfig(
            codec: codec,
            encoder: settings.encoder,
            crf: Int(settings.crf),
            preset: settings.preset,
            pixelFormat: settings.pixelFormat,
            width: Int(settings.width),
            height: Int(settings.height),
            timeBase: Rational(settings.timeBaseNum, settings.timeBaseDen),
            frameRate: Rational(settings.frameRateNum, settings.frameRateDen),
            sampleAspectRatio: Rational(settings.sampleAspectNum, settings.sampleAspectDen),
            colorRange: UInt32(bitPattern: settings.colorRange),
            colorPrimaries: UInt32(bitPattern: settings.colorPrimaries),
            colorTransfer: UInt32(bitPattern: settings.colorTransfer),
            colorSpace: UInt32(bitPattern: settings.colorSpace),
            chromaLocation: UInt32(bitPattern: settings.chromaLocation),
            gopSize: Int(settings.gopSize),
            threads: settings.threads > 0 ? Int(settings.threads) : max(0, threads),
            options: settings.options
        )
    }

    /// The encode request for an assignment.
    static func request(for assign: Assign, input: String, output: String, threads: Int) throws -> SegmentEncodeRequest {
        SegmentEncodeRequest(
            input: input,
            output: output,
            config: try encoderConfig(assign.settings, threads: threads),
            startPTS: assign.startPTS == Int64.min ? nil : assign.startPTS,
            endPTS: assign.endPTS,
            expectedFrames: Int(clamping: assign.expectedFrames),
            decoderThreads: 1
        )
    }

    /// Whether another attempt at a task that failed with `error` may succeed: not when the input or the settings
    /// are at fault, which another node would meet again.
    static func isRetryable(_ error: any Error) -> Bool {
        guard let error = error as? MediaError else { return true }
        switch error.code {
        case .unsupported, .invalidInput, .mismatch: return false
        default: return true
        }
    }
}

private func errnoDescription() -> String {
    let code = errno
    return "\(String(cString: strerror(code))) (errno \(code))"
}
