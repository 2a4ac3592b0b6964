package import CFFmpeg

/// An error from the media layer: what failed, on which file or stream, and FFmpeg's own words.
public struct MediaError: Error, Sendable, CustomStringConvertible {
    /// A code callers can match; new codes can be added without breaking them.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable {
            case ffmpeg, endOfFile, tryAgain, invalidInput, noVideoStream, unsupported, io, verificationFailed,
                verificationDoubtful, cancelled, mismatch
        }
        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// FFmpeg returned an error that has no more specific code.
        public static let ffmpeg = Code(.ffmpeg)
        /// The end of a stream was reached.
        public static let endOfFile = Code(.endOfFile)
        /// FFmpeg asks for more input before it can give output.
        public static let tryAgain = Code(.tryAgain)
        /// The input is not a readable media file (missing, empty, truncated, garbage).
        public static let invalidInput = Code(.invalidInput)
        /// The input has no video stream.
        public static let noVideoStream = Code(.noVideoStream)
        /// A codec, pixel format or container cannot be used here.
        public static let unsupported = Code(.unsupported)
        /// Reading or writing a file failed.
        public static let io = Code(.io)
        /// An output failed its checks (frame count, timestamps, decode).
        public static let verificationFailed = Code(.verificationFailed)
        /// A node's segment was refused by a margin too small to hold against the node: only its pictures scored
        /// just below their threshold. The segment is encoded again elsewhere, and nothing counts against the node.
        public static let verificationDoubtful = Code(.verificationDoubtful)
        /// The work was cancelled.
        public static let cancelled = Code(.cancelled)
        /// Two things that must agree do not (parameter sets, frame counts).
        public static let mismatch = Code(.mismatch)

        public var description: String { base.rawValue }
    }

    public var code: Code
    public var message: String
    /// The FFmpeg return code behind this error, where there is one.
    public var averror: Int32?

    public init(_ code: Code, _ message: String, averror: Int32? = nil) {
        self.code = code
        self.message = message
        self.averror = averror
    }

    public var description: String { message }
}

/// FFmpeg's message for an error code.
package func averrorString(_ code: Int32) -> String {
    withUnsafeTemporaryAllocation(of: CChar.self, capacity: 256) { buffer in
        farm_av_strerror(code, buffer.baseAddress, 256)
        return String(cString: buffer.baseAddress!)
    }
}

/// Turns a negative FFmpeg return code into a `MediaError`; the one place where that happens.
@discardableResult
package func check(_ result: Int32, _ what: @autoclosure () -> String) throws -> Int32 {
    if result >= 0 { return result }
    let code: MediaError.Code
    switch result {
    case farm_AVERROR_EOF(): code = .endOfFile
    case farm_AVERROR_EAGAIN(): code = .tryAgain
    case farm_AVERROR_INVALIDDATA(): code = .invalidInput
    case farm_AVERROR_ENCODER_NOT_FOUND(): code = .unsupported
    default: code = .ffmpeg
    }
    throw MediaError(code, "\(what()): \(averrorString(result))", averror: result)
}

/// FFmpeg's own logging: errors only, so that a library call never floods a terminal.
public enum MediaLog {
    public static func quiet() {
        av_log_set_level(AV_LOG_ERROR)
        // SVT-AV1 prints its configuration banner unless told otherwise (1: errors only).
        setenv("SVT_LOG", "1", 0)
    }
    public static func verbose() { av_log_set_level(AV_LOG_INFO) }
}

/// How the process allocates memory.
public enum ProcessMemory {
    /// glibc raises its mmap threshold each time a large block is freed; from then on the 1 MiB
    /// chunks of segment transfers and FFmpeg's large buffers come from the heap, fragment it and
    /// are not given back. A fixed 256 KiB threshold keeps them in mmap, returned on free.
    ///
    /// Measured on `farm render` with transfers paced (`DataSender`), peak memory for a 180 s and a
    /// 360 s input: 102 and 103 MB with this threshold, 106 and 118 MB with a fixed 2 MiB one, 124 and
    /// 129 MB with glibc's moving threshold. The price is an mmap and page faults for each such block:
    /// on loopback the segment wire moves some 10-20 % fewer bytes a second, still several times what a
    /// lease's network carries.
    public static func returnLargeBlocks() {
        _ = farm_fix_mmap_threshold(256 * 1024)
    }
}
