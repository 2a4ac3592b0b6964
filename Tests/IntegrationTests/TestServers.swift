import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A small HTTP/1.1 file server on loopback for URL sources, one request per connection, with the
/// faults the downloader must survive or refuse: a connection dropped mid-body, 404, redirects, a
/// slow trickle. Plain sockets on threads of its own, so it shares nothing with the code under test.
final class TestHTTPServer: @unchecked Sendable {
    enum Action {
        /// The file, honouring `Range: bytes=N-`; with `dropAfter`, a full response is cut after that many body bytes.
        /// `headStatus` answers HEAD requests with that status instead (as presigned URLs do).
        case file(String, dropAfter: Int? = nil, bytesPerSecond: Int? = nil, headStatus: Int? = nil)
        case status(Int)
        case redirect(String)
    }

    struct Seen {
        var path: String
        var range: String?
    }

    let port: Int
    private let listener: Int32
    private let lock = NSLock()
    private var seen: [Seen] = []
    private let route: @Sendable (String, Int) -> Action

    /// `route(path, how many GET requests this path had before)` decides the answer; HEAD requests
    /// get the same answer without a body and are not counted.
    init(route: @escaping @Sendable (String, Int) -> Action) throws {
        self.route = route
        (listener, port) = try Sockets.listen()
        Thread.detachNewThread { [self] in acceptLoop() }
    }

    var requests: [Seen] { lock.withLock { seen } }

    func stop() {
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
    }

    private func acceptLoop() {
        while true {
            let client = accept(listener, nil, nil)
            guard client >= 0 else { return }
            Thread.detachNewThread { [self] in serve(client) }
        }
    }

    private func serve(_ fd: Int32) {
        defer { close(fd) }
        guard let head = Sockets.readHead(fd) else { return }
        let lines = head.components(separatedBy: "\r\n")
        let parts = lines.first?.split(separator: " ") ?? []
        guard parts.count >= 2 else { return }
        let path = String(parts[1])
        let isHead = parts[0] == "HEAD"
        var range: String?
        for line in lines.dropFirst() where line.lowercased().hasPrefix("range:") {
            range = line.dropFirst(6).trimmingCharacters(in: .whitespaces)
        }
        let count = lock.withLock { () -> Int in
            let n = seen.filter { $0.path == path }.count
            if !isHead { seen.append(Seen(path: path, range: range)) }
            return n
        }
        switch route(path, count) {
        case .file(_, _, _, let status?) where isHead:
            Sockets.send(fd, "HTTP/1.1 \(status) Status\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        case .status(let code):
            Sockets.send(fd, "HTTP/1.1 \(code) Status\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        case .redirect(let location):
            Sockets.send(fd, "HTTP/1.1 302 Found\r\nLocation: \(location)\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        case .file(let file, let dropAfter, let rate, _):
            guard let data = FileManager.default.contents(atPath: file) else {
                Sockets.send(fd, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                return
            }
            var start = 0
            if let range, range.hasPrefix("bytes="), let first = Int(range.dropFirst(6).split(separator: "-").first ?? "") {
                start = first
            }
            let body = data[start...]
            var header = start > 0 ? "HTTP/1.1 206 Partial Content\r\n" : "HTTP/1.1 200 OK\r\n"
            if start > 0 { header += "Content-Range: bytes \(start)-\(data.count - 1)/\(data.count)\r\n" }
            header += "Content-Length: \(body.count)\r\nETag: \"clip-1\"\r\nAccept-Ranges: bytes\r\nConnection: close\r\n\r\n"
            Sockets.send(fd, header)
            if isHead { return }
            let limit = dropAfter.map { min($0, body.count) } ?? body.count
            var sent = 0
            while sent < limit {
                let step = min(rate ?? 64 * 1024, limit - sent)
                let slice = body.dropFirst(sent).prefix(step)
                guard Sockets.send(fd, Data(slice)) else { return }
                sent += step
                if rate != nil { usleep(1_000_000) }
            }
            // Dropping: the connection closes with the body short of its Content-Length.
        }
    }
}

/// A TCP relay to `127.0.0.1:target` that cuts its first connection after `cutAfter` bytes from the
/// client, then relays later connections whole: a network that drops an upload in the middle.
final class CuttingProxy: @unchecked Sendable {
    let port: Int
    private let listener: Int32
    private let target: Int
    private let cutAfter: Int
    private let lock = NSLock()
    private var cuts = 0

    init(target: Int, cutAfter: Int) throws {
        self.target = target
        self.cutAfter = cutAfter
        (listener, port) = try Sockets.listen()
        Thread.detachNewThread { [self] in
            while true {
                let client = accept(listener, nil, nil)
                guard client >= 0 else { return }
                Thread.detachNewThread { [self] in relay(client) }
            }
        }
    }

    var cutCount: Int { lock.withLock { cuts } }

    func stop() {
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
    }

    private func relay(_ client: Int32) {
        guard let upstream = try? Sockets.connect(port: target) else {
            close(client)
            return
        }
        let cutThis = lock.withLock { () -> Bool in
            guard cuts == 0 else { return false }
            cuts = -1  // this connection is the one to cut
            return true
        }
        let done = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            Self.pump(from: upstream, to: client, limit: nil)
            shutdown(client, Int32(SHUT_RDWR))
            done.signal()
        }
        Self.pump(from: client, to: upstream, limit: cutThis ? cutAfter : nil)
        if cutThis { lock.withLock { cuts = 1 } }
        shutdown(upstream, Int32(SHUT_RDWR))
        shutdown(client, Int32(SHUT_RDWR))
        done.wait()
        close(upstream)
        close(client)
    }

    private static func pump(from: Int32, to: Int32, limit: Int?) {
        var buffer = [UInt8](repeating: 0, count: 16 * 1024)
        var total = 0
        while true {
            let want = limit.map { min(buffer.count, $0 - total) } ?? buffer.count
            if want <= 0 { return }
            let n = read(from, &buffer, want)
            if n <= 0 { return }
            guard Sockets.send(to, Data(buffer[0..<n])) else { return }
            total += n
        }
    }
}

enum Sockets {
    static func listen() throws -> (Int32, Int) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, Glibc.listen(fd, 64) == 0 else { throw TestServerError("cannot listen: \(errno)") }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return (fd, Int(UInt16(bigEndian: address.sin_port)))
    }

    static func connect(port: Int) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(port).bigEndian
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard result == 0 else {
            close(fd)
            throw TestServerError("cannot connect to port \(port): \(errno)")
        }
        return fd
    }

    /// The request line and headers, up to the blank line.
    static func readHead(_ fd: Int32) -> String? {
        var bytes: [UInt8] = []
        var byte: UInt8 = 0
        while bytes.count < 64 * 1024 {
            guard read(fd, &byte, 1) == 1 else { return nil }
            bytes.append(byte)
            if bytes.count >= 4, bytes.suffix(4) == [13, 10, 13, 10] { return String(decoding: bytes, as: UTF8.self) }
        }
        return nil
    }

    @discardableResult
    static func send(_ fd: Int32, _ text: String) -> Bool { send(fd, Data(text.utf8)) }

    @discardableResult
    static func send(_ fd: Int32, _ data: Data) -> Bool {
        data.withUnsafeBytes { raw in
            var sent = 0
            while sent < raw.count {
                let n = Glibc.send(fd, raw.baseAddress! + sent, raw.count - sent, Int32(MSG_NOSIGNAL))
                if n <= 0 { return false }
                sent += n
            }
            return true
        }
    }

    /// Sends a request and reads the whole reply (the server closes or answers with Content-Length).
    static func exchange(port: Int, _ request: Data, closeAfterSending: Bool = false) throws -> String {
        let fd = try connect(port: port)
        defer { close(fd) }
        guard send(fd, request) else { throw TestServerError("send failed") }
        if closeAfterSending { return "" }
        shutdown(fd, Int32(SHUT_WR))
        var reply: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = read(fd, &buffer, buffer.count)
            if n <= 0 { break }
            reply += buffer[0..<n]
        }
        return String(decoding: reply, as: UTF8.self)
    }
}

struct TestServerError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
