internal import Foundation
internal import NIOCore

/// A streaming `multipart/form-data` parser (RFC 7578): bytes go in as they arrive, parts come out
/// as headers, body chunks and ends, so that an uploaded file goes to disk without ever being held
/// whole. Part headers are bounded; a body is not (the caller counts and limits it).
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

    private enum State {
        case preamble
        case afterBoundary
        case headers
        case body
        case done
    }

    /// `--boundary` at the start of the body, `\r\n--boundary` before every later part.
    private let firstDelimiter: [UInt8]
    private let delimiter: [UInt8]
    private var state = State.preamble
    private var pending: [UInt8] = []
    static let maxHeaderBytes = 16 * 1024

    var isFinished: Bool { if case .done = state { true } else { false } }

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
        firstDelimiter = Array("--\(boundary)".utf8)
        delimiter = Array("\r\n--\(boundary)".utf8)
    }

    /// Feeds the next bytes; returns the events they complete.
    mutating func feed(_ buffer: ByteBuffer) throws(Failure) -> [Event] {
        pending.append(contentsOf: buffer.readableBytesView)
        var events: [Event] = []
        var position = 0
        loop: while true {
            switch state {
            case .preamble:
                // The first boundary may follow a preamble; look for it with or without a CRLF before.
                if pending.count - position >= firstDelimiter.count, pending[position..<(position + firstDelimiter.count)].elementsEqual(firstDelimiter) {
                    position += firstDelimiter.count
                    state = .afterBoundary
                } else if let found = Self.find(delimiter, in: pending, from: position) {
                    position = found + delimiter.count
                    state = .afterBoundary
                } else {
                    // Keep only what might be the start of a delimiter.
                    position = max(position, pending.count - delimiter.count)
                    if pending.count > 1 << 20 { throw Failure(description: "multipart body has no boundary") }
                    break loop
                }
            case .afterBoundary:
                guard pending.count - position >= 2 else { break loop }
                let a = pending[position]
                let b = pending[position + 1]
                if a == UInt8(ascii: "-"), b == UInt8(ascii: "-") {
                    state = .done
                    position = pending.count
                    break loop
                }
                // Transport padding (spaces, tabs) may follow the boundary before the CRLF.
                if a == UInt8(ascii: " ") || a == UInt8(ascii: "\t") {
                    position += 1
                    continue
                }
                guard a == UInt8(ascii: "\r"), b == UInt8(ascii: "\n") else {
                    throw Failure(description: "malformed multipart boundary line")
                }
                position += 2
                state = .headers
            case .headers:
                guard let end = Self.find(Array("\r\n\r\n".utf8), in: pending, from: position) else {
                    if pending.count - position > Self.maxHeaderBytes {
                        throw Failure(description: "multipart part headers longer than \(Self.maxHeaderBytes) bytes")
                    }
                    break loop
                }
                let text = String(decoding: pending[position..<end], as: UTF8.self)
                position = end + 4
                events.append(try Self.partStart(headers: text))
                state = .body
            case .body:
                if let found = Self.find(delimiter, in: pending, from: position) {
                    if found > position { events.append(.body(ByteBuffer(bytes: pending[position..<found]))) }
                    events.append(.partEnd)
                    position = found + delimiter.count
                    state = .afterBoundary
                } else {
                    // Everything but a possible partial delimiter at the end belongs to the body.
                    let safe = pending.count - (delimiter.count - 1)
                    if safe > position {
                        events.append(.body(ByteBuffer(bytes: pending[position..<safe])))
                        position = safe
                    }
                    break loop
                }
            case .done:
                position = pending.count
                break loop
            }
        }
        pending.removeFirst(min(position, pending.count))
        return events
    }

    /// Called at the end of the body: fails when the closing boundary never came.
    func finish() throws(Failure) {
        guard isFinished else { throw Failure(description: "multipart body ended before its closing boundary") }
    }

    private static func partStart(headers text: String) throws(Failure) -> Event {
        var disposition: String?
        var contentType: String?
        for line in text.split(separator: "\r\n") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let name = line[..<colon].trimmingCharacters(in: .whitespaces).lowercased()
            let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            if name == "content-disposition" { disposition = value }
            if name == "content-type" { contentType = value }
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

    static func find(_ needle: [UInt8], in haystack: [UInt8], from start: Int) -> Int? {
        guard let first = needle.first, haystack.count - start >= needle.count else { return nil }
        var i = start
        let last = haystack.count - needle.count
        return haystack.withUnsafeBufferPointer { h in
            needle.withUnsafeBufferPointer { n in
                while i <= last {
                    if h[i] == first {
                        var j = 1
                        while j < n.count, h[i + j] == n[j] { j += 1 }
                        if j == n.count { return i }
                    }
                    i += 1
                }
                return nil
            }
        }
    }
}
