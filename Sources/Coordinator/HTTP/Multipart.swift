internal import Foundation
internal import MultipartKit
internal import NIOCore

/// A streaming `multipart/form-data` reader (RFC 7578) over multipart-kit's parser: bytes go in as they
/// arrive, parts come out as headers, body chunks and ends, so that an uploaded file goes to disk without
/// ever being held whole.
///
/// multipart-kit does the byte-level parsing. What it leaves to its caller, this type adds, because the
/// bytes come from the internet: part headers are bounded (multipart-kit collects a header line until its
/// CRLF, however long), a body with no boundary in its first MiB is refused, a body that ends without
/// its closing delimiter is refused (multipart-kit reports nothing in that case), and a part's headers
/// are turned into its field name and file name. A part's body is not bounded here; the caller counts it.
struct MultipartParser {
    enum Event: Equatable {
        /// A part begins: its field name and, for a file, its file name.
        case partStart(name: String, filename: String?, contentType: String?)
        case body(ByteBuffer)
        case partEnd
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    static let maxHeaderBytes = 16 * 1024
    /// Bytes before the first part's headers (a preamble) at most.
    static let maxPreambleBytes = 1 << 20
    /// Bytes after the closing delimiter that are still looked at (and ignored).
    static let maxEpilogueBytes = 1024
    /// The parser is fed at most this much at once, so that the header bound is checked between feeds.
    private static let feedBytes = 4096

    /// What multipart-kit's callbacks report, gathered between feeds.
    private final class Sink {
        var events: [Event] = []
        var headers: [(String, String)] = []
        /// The current part's headers have been turned into a `.partStart`.
        var started = false
        /// Body bytes of the current feed, handed on as one event.
        var body: ByteBuffer?
        var failure: Failure?
        var parts = 0
        var sawHeader = false
        /// A part's headers are being read (from a delimiter until its body or end).
        var inHeaders = true

        func startIfNeeded() {
            guard !started, failure == nil else { return }
            started = true
            inHeaders = false
            do {
                events.append(try MultipartParser.partStart(headers: headers))
            } catch {
                failure = error
            }
        }

        func flushBody() {
            if let bytes = body, bytes.readableBytes > 0 { events.append(.body(bytes)) }
            body = nil
        }
    }

    private let parser: MultipartKit.MultipartParser
    private let sink = Sink()
    private let delimiter: [UInt8]
    /// The last bytes fed, where the closing delimiter must be when the body ends.
    private var tail: [UInt8] = []
    private let tailBytes: Int
    /// Bytes fed while a part's headers (or the preamble) were being read.
    private var headerBytes = 0
    private var fed = 0
    /// The first `--boundary` has been seen: what follows is parts, not a preamble.
    private var preambleDone = false
    /// The last bytes of the preamble, where the first `--boundary` may have begun.
    private var preambleCarry: [UInt8] = []

    /// The boundary of a `Content-Type: multipart/form-data; boundary=...` header.
    static func boundary(contentType: String) -> String? {
        for parameter in contentType.split(separator: ";").dropFirst() {
            let pair = parameter.split(separator: "=", maxSplits: 1)
            guard pair.count == 2, pair[0].trimmingCharacters(in: .whitespaces).lowercased() == "boundary" else { continue }
            var value = pair[1].trimmingCharacters(in: .whitespaces)
            if value.hasPrefix("\""), value.hasSuffix("\""), value.count >= 2 { value = String(value.dropFirst().dropLast()) }
            return value.isEmpty || value.utf8.count > 70 ? nil : value
        }
        return nil
    }

    init(boundary: String) {
        precondition(!boundary.isEmpty, "boundary(contentType:) gives no empty boundary")
        delimiter = Array("\r\n--\(boundary)".utf8)
        tailBytes = delimiter.count + 2 + Self.maxEpilogueBytes
        parser = MultipartKit.MultipartParser(boundary: boundary)
        let sink = self.sink
        parser.onHeader = { name, value in
            guard sink.failure == nil else { return }
            sink.sawHeader = true
            sink.headers.append((name, value))
            if sink.headers.count > 64 { sink.failure = Failure(description: "multipart part with more than 64 headers") }
        }
        parser.onBody = { bytes in
            sink.startIfNeeded()
            guard sink.failure == nil else { return }
            if sink.body == nil { sink.body = bytes } else { sink.body!.writeBuffer(&bytes) }
        }
        parser.onPartComplete = {
            sink.startIfNeeded()
            sink.flushBody()
            guard sink.failure == nil else { return }
            sink.events.append(.partEnd)
            sink.parts += 1
            sink.headers = []
            sink.started = false
            sink.inHeaders = true
        }
    }

    /// Feeds the next bytes; returns the events they complete.
    mutating func feed(_ buffer: ByteBuffer) throws(Failure) -> [Event] {
        var rest = buffer
        while rest.readableBytes > 0 {
            let slice = rest.readSlice(length: min(Self.feedBytes, rest.readableBytes))!
            do {
                try parser.execute(slice)
            } catch {
                throw Failure(description: sink.headers.isEmpty && sink.parts == 0 && !sink.sawHeader
                    ? "malformed multipart boundary line" : "malformed multipart part headers or boundary line")
            }
            if let failure = sink.failure { throw failure }
            remember(slice)
            fed += slice.readableBytes
            if !preambleDone {
                // multipart-kit takes the first `--boundary` wherever it is; so does this count.
                let window = preambleCarry + Array(slice.readableBytesView)
                let first = Array(delimiter.dropFirst(2))
                if let found = Self.find(first, in: window) {
                    preambleDone = true
                    headerBytes = window.count - found
                } else {
                    headerBytes += slice.readableBytes
                    preambleCarry = Array(window.suffix(first.count - 1))
                    if headerBytes > Self.maxPreambleBytes {
                        throw Failure(description: "multipart body has no boundary in its first \(Self.maxPreambleBytes) bytes")
                    }
                }
            } else if sink.inHeaders {
                headerBytes += slice.readableBytes
                if headerBytes > Self.maxHeaderBytes + Self.feedBytes, !isClosed {
                    throw Failure(description: "multipart part headers longer than \(Self.maxHeaderBytes) bytes")
                }
            } else {
                headerBytes = 0
            }
        }
        sink.flushBody()
        let events = sink.events
        sink.events = []
        return events
    }

    /// Called at the end of the body: fails when the closing delimiter never came.
    func finish() throws(Failure) {
        guard sink.parts > 0, sink.inHeaders, !sink.started, isClosed else {
            throw Failure(description: "multipart body ended before its closing boundary")
        }
    }

    /// The body so far ends with a closing delimiter (`--boundary--`), perhaps followed by a short epilogue.
    /// Bodies cannot hold the delimiter, so its last occurrence is the one that ended the last part.
    private var isClosed: Bool {
        let needle = delimiter
        // The first delimiter may come without its CRLF, at the very start of the body.
        let haystack = fed <= tail.count ? Array("\r\n".utf8) + tail : tail
        guard haystack.count >= needle.count + 2 else { return false }
        var i = haystack.count - needle.count
        while i >= 0 {
            if haystack[i] == needle[0], haystack[i..<(i + needle.count)].elementsEqual(needle) {
                let after = i + needle.count
                return haystack.count >= after + 2 && haystack[after] == UInt8(ascii: "-") && haystack[after + 1] == UInt8(ascii: "-")
            }
            i -= 1
        }
        return false
    }

    /// Where `needle` first begins in `haystack`.
    private static func find(_ needle: [UInt8], in haystack: [UInt8]) -> Int? {
        guard !needle.isEmpty, haystack.count >= needle.count else { return nil }
        for i in 0...(haystack.count - needle.count) where haystack[i] == needle[0] {
            if haystack[i..<(i + needle.count)].elementsEqual(needle) { return i }
        }
        return nil
    }

    private mutating func remember(_ slice: ByteBuffer) {
        tail.append(contentsOf: slice.readableBytesView.suffix(tailBytes))
        if tail.count > tailBytes { tail.removeFirst(tail.count - tailBytes) }
    }

    private static func partStart(headers: [(String, String)]) throws(Failure) -> Event {
        var disposition: String?
        var contentType: String?
        for (name, value) in headers {
            switch name.lowercased() {
            case "content-disposition": disposition = value.trimmingCharacters(in: .whitespaces)
            case "content-type": contentType = value.trimmingCharacters(in: .whitespaces)
            default: break
            }
        }
        guard let disposition else { throw Failure(description: "multipart part without Content-Disposition") }
        let parameters = Self.parameters(disposition)
        guard let name = parameters["name"] else { throw Failure(description: "multipart part without a field name") }
        return .partStart(name: name, filename: parameters["filename"], contentType: contentType)
    }

    /// `form-data; name="file"; filename="a.mp4"` → ["name": "file", "filename": "a.mp4"].
    static func parameters(_ value: String) -> [String: String] {
        var result: [String: String] = [:]
        var i = value.startIndex
        // Skip the disposition type.
        guard let semicolon = value.firstIndex(of: ";") else { return result }
        i = value.index(after: semicolon)
        while i < value.endIndex {
            while i < value.endIndex, value[i] == " " || value[i] == ";" { i = value.index(after: i) }
            guard let eq = value[i...].firstIndex(of: "=") else { break }
            let key = value[i..<eq].trimmingCharacters(in: .whitespaces).lowercased()
            i = value.index(after: eq)
            var parsed = ""
            if i < value.endIndex, value[i] == "\"" {
                i = value.index(after: i)
                while i < value.endIndex, value[i] != "\"" {
                    if value[i] == "\\", value.index(after: i) < value.endIndex { i = value.index(after: i) }
                    parsed.append(value[i])
                    i = value.index(after: i)
                }
                if i < value.endIndex { i = value.index(after: i) }
            } else {
                let end = value[i...].firstIndex(of: ";") ?? value.endIndex
                parsed = value[i..<end].trimmingCharacters(in: .whitespaces)
                i = end
            }
            result[key] = parsed
        }
        return result
    }
}
