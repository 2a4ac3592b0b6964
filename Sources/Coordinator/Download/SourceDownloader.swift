internal import CCurl
internal import FarmMedia
internal import Foundation
internal import CoreFoundation
internal import Glibc

/// Fetches a job's http(s) source with libcurl into the job's work directory: streamed to
/// `download.part`, resumed with a Range request after a broken transfer, retried with backoff,
/// bounded in size and time, and renamed to `source.<ext>` once whole. The only file that touches
/// libcurl; the blocking transfer runs on a thread of its own (`Offload`), never on an event loop or
/// the cooperative pool.
enum SourceDownloader {
    /// Downloads `url` unless a previous run already did; returns the local path. A failure removes
    /// the partial file, except at shutdown (`stopping`), when it is kept for the resumed job.
    static func fetch(
        _ url: SourceURL, into directory: String, policy: DownloadPolicy, progress: DownloadProgress,
        cancel: CancellationFlag
    ) async throws -> String {
        let final = "\(directory)/source.\(url.pathExtension)"
        if let size = fileSize(final) {
            progress.update(bytes: size, total: size)
            return final
        }
        let partial = "\(directory)/download.part"
        do {
            try await Offload.run("download") { thread in
                let transfer = try CurlTransfer(
                    url: url, path: partial, policy: policy, progress: progress,
                    isCancelled: { thread.isCancelled || cancel.isCancelled })
                try transfer.run()
            }
        } catch {
            // A failed download leaves no file. An interrupted one (cancel, shutdown) keeps its part:
            // a job that ended loses its whole work directory, a resumed one continues with a Range.
            if !(error is DownloadInterrupted) { unlink(partial) }
            throw (error as? DownloadInterrupted).map { _ in CoordinatorError(.jobFailed, "download cancelled") } ?? error
        }
        guard rename(partial, final) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(partial)
            throw CoordinatorError(.io, "download failed: cannot keep the downloaded file: \(reason)")
        }
        return final
    }

    /// Asks the server for the size before a job is queued (a HEAD request, every hop checked like
    /// the download's), so that a source over the limit, or a URL that leads to a refused address,
    /// is refused at once. Anything else the HEAD meets is left for the download to judge (some
    /// servers answer HEAD differently from GET, presigned URLs among them).
    static func precheck(_ url: SourceURL, policy: DownloadPolicy) async throws {
        let quick = {
            var quick = policy
            quick.timeLimitSeconds = min(policy.timeLimitSeconds, 5)
            quick.maxRetries = 0
            return quick
        }()
        do {
            try await Offload.run("download check") { thread in
                let transfer = try CurlTransfer(
                    url: url, path: nil, policy: quick, progress: DownloadProgress(), isCancelled: { thread.isCancelled })
                try transfer.run()
            }
        } catch let error as CoordinatorError
            where error.message.hasPrefix("download refused") || error.message.hasPrefix("download exceeds")
        {
            throw error
        } catch {
            return
        }
    }

    static func fileSize(_ path: String) -> Int64? {
        var info = stat()
        guard stat(path, &info) == 0, info.st_mode & S_IFMT == S_IFREG else { return nil }
        return Int64(info.st_size)
    }

    static let globalInit: Bool = farm_curl_global_init() == CURLE_OK
}

/// The download stopped because the job or the coordinator asked it to.
struct DownloadInterrupted: Error {}

/// One download: the owner of its curl handle (freed in `deinit`, nowhere else) and of the file
/// descriptor it writes. Used by one thread only.
private final class CurlTransfer {
    let handle: UnsafeMutableRawPointer
    let url: SourceURL
    /// nil: a HEAD request only (`precheck`).
    let path: String?
    let policy: DownloadPolicy
    let progress: DownloadProgress
    let isCancelled: () -> Bool
    let fd: Int32

    /// What the callbacks saw of the response in progress.
    var currentURL: String
    var currentHost: String
    var offset: Int64 = 0
    var expectedTotal: Int64?
    var statusLine = 0
    var contentRangeStart: Int64?
    var contentRangeTotal: Int64?
    var announcedLength: Int64?
    var validator: String?
    var bodyChecked = false
    var refusal: String?
    var failure: String?
    var restartFromZero = false

    init(
        url: SourceURL, path: String?, policy: DownloadPolicy, progress: DownloadProgress,
        isCancelled: @escaping () -> Bool
    ) throws {
        guard SourceDownloader.globalInit, let handle = curl_easy_init() else {
            throw CoordinatorError(.io, "download failed: libcurl cannot start")
        }
        let fd = path.map { open($0, O_WRONLY | O_CREAT | O_CLOEXEC, 0o600) } ?? -1
        if let path, fd < 0 {
            curl_easy_cleanup(handle)
            throw CoordinatorError(.io, "download failed: cannot write \(path): \(String(cString: strerror(errno)))")
        }
        self.handle = handle
        self.fd = fd
        self.url = url
        self.path = path
        self.policy = policy
        self.progress = progress
        self.isCancelled = isCancelled
        currentURL = url.text
        currentHost = url.host
        // A partial file from a previous run (the coordinator restarted) is resumed.
        offset = fd >= 0 ? Int64(lseek(fd, 0, SEEK_END)) : 0
        if offset < 0 { offset = 0 }
    }

    deinit {
        curl_easy_cleanup(handle)
        if fd >= 0 { close(fd) }
    }

    func run() throws {
        try configure()
        let started = Date()
        var redirects = 0
        var failuresInARow = 0
        while true {
            if isCancelled() { throw DownloadInterrupted() }
            let remaining = policy.timeLimitSeconds - Date().timeIntervalSince(started)
            guard remaining > 0 else { throw timeLimit() }
            let before = offset
            let code = attempt(timeout: remaining)
            var status = 0
            do {
                var value = 0
                farm_curl_getinfo_long(handle, CURLINFO_RESPONSE_CODE, &value)
                status = value
            }
            if let refusal { throw CoordinatorError(.invalidRequest, refusal) }
            if let failure { throw CoordinatorError(.invalidRequest, failure) }
            if code == CURLE_FILESIZE_EXCEEDED {
                // curl compared the announced Content-Length with the limit.
                throw CoordinatorError(
                    .invalidRequest,
                    "download exceeds the \(policy.limitText) limit: \(url.shown) is \((contentRangeTotal ?? announcedLength.map { statusLine == 206 ? $0 + offset : $0 }).map { "\($0) bytes" } ?? "larger")")
            }
            if isCancelled() || code == CURLE_ABORTED_BY_CALLBACK { throw DownloadInterrupted() }
            if Date().timeIntervalSince(started) >= policy.timeLimitSeconds { throw timeLimit() }
            if (300..<400).contains(status), let target = redirectTarget() {
                redirects += 1
                guard redirects <= policy.maxRedirects else {
                    throw CoordinatorError(.invalidRequest, "download failed: more than \(policy.maxRedirects) redirects from \(url.shown)")
                }
                try follow(target)
                continue
            }
            if path == nil {
                // HEAD: only the announced size matters.
                var length: curl_off_t = -1
                farm_curl_getinfo_off(handle, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &length)
                if code == CURLE_OK, (200..<300).contains(status), Int64(length) > policy.maxBytes {
                    throw CoordinatorError(
                        .invalidRequest, "download exceeds the \(policy.limitText) limit: \(url.shown) is \(length) bytes")
                }
                throw CoordinatorError(.io, "HEAD \(SourceURL.redacted(currentURL)): HTTP \(status)")
            }
            if code == CURLE_OK, status == 200 || status == 206 {
                if let expectedTotal, offset != expectedTotal {
                    throw CoordinatorError(.io, "download failed: got \(offset) of \(expectedTotal) bytes from \(SourceURL.redacted(currentURL))")
                }
                progress.update(bytes: offset, total: offset)
                return
            }
            if status == 416, offset > 0, let total = contentRangeTotal, total == offset {
                // The previous run had every byte already.
                progress.update(bytes: offset, total: offset)
                return
            }
            let reason: String
            if status >= 400 {
                reason = "HTTP \(status) from \(SourceURL.redacted(currentURL))"
                if status == 416 { restartFromZero = true }
                guard status == 408 || status == 416 || status == 429 || status >= 500 else {
                    throw CoordinatorError(.invalidRequest, "download failed: \(reason)")
                }
            } else if code != CURLE_OK {
                reason = "\(Self.message(code)) from \(SourceURL.redacted(currentURL))"
                guard Self.isTransient(code) else { throw CoordinatorError(.invalidRequest, "download failed: \(reason)") }
            } else {
                reason = "unexpected HTTP \(status) from \(SourceURL.redacted(currentURL))"
            }
            if restartFromZero {
                restartFromZero = false
                _ = ftruncate(fd, 0)
                offset = 0
                validator = nil
            }
            failuresInARow = offset > before ? 1 : failuresInARow + 1
            guard failuresInARow <= policy.maxRetries else {
                throw CoordinatorError(.io, "download failed after \(policy.maxRetries + 1) attempts: \(reason)")
            }
            let delay = min(policy.retryDelaySeconds * pow(2, Double(failuresInARow - 1)), 30)
            let wakeUp = Date().addingTimeInterval(delay)
            while Date() < wakeUp {
                if isCancelled() { throw DownloadInterrupted() }
                usleep(50_000)
            }
        }
    }

    private func timeLimit() -> CoordinatorError {
        CoordinatorError(
            .invalidRequest,
            "download of \(url.shown) took longer than the \(SourceLimits.duration(policy.timeLimitSeconds)) limit")
    }

    /// The options every attempt shares.
    private func configure() throws {
        let context = Unmanaged.passUnretained(self).toOpaque()
        var ok = true
        func set(_ code: CURLcode) { ok = ok && code == CURLE_OK }
        set(farm_curl_setopt_string(handle, CURLOPT_PROTOCOLS_STR, "http,https"))
        set(farm_curl_setopt_string(handle, CURLOPT_REDIR_PROTOCOLS_STR, "http,https"))
        // Redirects are followed here, one by one, so that each target is checked and named.
        set(farm_curl_setopt_long(handle, CURLOPT_FOLLOWLOCATION, 0))
        // No proxy from the environment: the address check must see the real target.
        set(farm_curl_setopt_string(handle, CURLOPT_PROXY, ""))
        set(farm_curl_setopt_long(handle, CURLOPT_NOSIGNAL, 1))
        set(farm_curl_setopt_long(handle, CURLOPT_CONNECTTIMEOUT, 30))
        set(farm_curl_setopt_long(handle, CURLOPT_LOW_SPEED_LIMIT, 1))
        set(farm_curl_setopt_long(handle, CURLOPT_LOW_SPEED_TIME, policy.stallSeconds))
        set(farm_curl_setopt_off(handle, CURLOPT_MAXFILESIZE_LARGE, curl_off_t(policy.maxBytes)))
        set(farm_curl_setopt_string(handle, CURLOPT_USERAGENT, "farm"))
        set(farm_curl_setopt_long(handle, CURLOPT_NOPROGRESS, 0))
        if path == nil { set(farm_curl_setopt_long(handle, CURLOPT_NOBODY, 1)) }
        set(farm_curl_setopt_pointer(handle, CURLOPT_WRITEDATA, context))
        set(farm_curl_setopt_pointer(handle, CURLOPT_HEADERDATA, context))
        set(farm_curl_setopt_pointer(handle, CURLOPT_XFERINFODATA, context))
        set(farm_curl_setopt_pointer(handle, CURLOPT_OPENSOCKETDATA, context))
        set(farm_curl_setopt_write(handle) { data, size, count, context in
            Unmanaged<CurlTransfer>.fromOpaque(context!).takeUnretainedValue().write(data, size * count)
        })
        set(farm_curl_setopt_header(handle) { data, size, count, context in
            Unmanaged<CurlTransfer>.fromOpaque(context!).takeUnretainedValue().header(data, size * count)
        })
        set(farm_curl_setopt_xferinfo(handle) { context, _, _, _, _ in
            Unmanaged<CurlTransfer>.fromOpaque(context!).takeUnretainedValue().isCancelled() ? 1 : 0
        })
        set(farm_curl_setopt_opensocket(handle) { context, _, address in
            Unmanaged<CurlTransfer>.fromOpaque(context!).takeUnretainedValue().openSocket(address!)
        })
        guard ok else { throw CoordinatorError(.io, "download failed: this libcurl lacks an option farm needs (7.85 or newer)") }
    }

    /// One request from `offset`; the headers list lives until the request ends and is freed once.
    private func attempt(timeout: Double) -> CURLcode {
        statusLine = 0
        contentRangeStart = nil
        contentRangeTotal = nil
        bodyChecked = false
        var headers: UnsafeMutablePointer<curl_slist>?
        defer { curl_slist_free_all(headers) }
        if offset > 0, let validator { headers = curl_slist_append(nil, "If-Range: \(validator)") }
        farm_curl_setopt_slist(handle, CURLOPT_HTTPHEADER, headers)
        farm_curl_setopt_string(handle, CURLOPT_URL, currentURL)
        if offset > 0 {
            farm_curl_setopt_string(handle, CURLOPT_RANGE, "\(offset)-")
        } else {
            farm_curl_setopt_string(handle, CURLOPT_RANGE, nil)
        }
        farm_curl_setopt_long(handle, CURLOPT_TIMEOUT_MS, max(Int(timeout * 1000), 1))
        let code = curl_easy_perform(handle)
        farm_curl_setopt_slist(handle, CURLOPT_HTTPHEADER, nil)
        return code
    }

    private func redirectTarget() -> String? {
        var target: UnsafeMutablePointer<CChar>?
        guard farm_curl_getinfo_string(handle, CURLINFO_REDIRECT_URL, &target) == CURLE_OK, let target else { return nil }
        return String(cString: target)
    }

    private func follow(_ target: String) throws {
        let scheme = URLComponents(string: target)?.scheme?.lowercased() ?? ""
        guard scheme == "http" || scheme == "https" else {
            throw CoordinatorError(
                .invalidRequest, "download refused: \(SourceURL.redacted(currentURL)) redirects to \(SourceURL.redacted(target)); only http and https are fetched")
        }
        let next: SourceURL
        do {
            next = try SourceURL(target, policy: policy)
        } catch {
            throw CoordinatorError(.invalidRequest, "download refused: \(SourceURL.redacted(currentURL)) redirects to \(error.message)")
        }
        currentURL = next.text
        currentHost = next.host
    }

    // MARK: Callbacks (on the download thread, inside curl_easy_perform)

    func header(_ data: UnsafeMutablePointer<CChar>?, _ length: Int) -> Int {
        guard let data else { return length }
        let line = String(decoding: UnsafeRawBufferPointer(start: data, count: length), as: UTF8.self)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        if line.hasPrefix("HTTP/") {
            statusLine = Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0
            contentRangeStart = nil
            contentRangeTotal = nil
            announcedLength = nil
            return length
        }
        guard let colon = line.firstIndex(of: ":") else { return length }
        let name = line[..<colon].lowercased()
        let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        switch name {
        case "content-length":
            announcedLength = Int64(value)
        case "content-range":
            // bytes 100-199/1000, or bytes */1000 with 416.
            let spec = value.lowercased().replacingOccurrences(of: "bytes", with: "").trimmingCharacters(in: .whitespaces)
            let parts = spec.split(separator: "/")
            if parts.count == 2 {
                contentRangeTotal = Int64(parts[1])
                contentRangeStart = Int64(parts[0].split(separator: "-").first ?? "")
            }
        case "etag" where (200..<300).contains(statusLine) && !value.hasPrefix("W/"):
            validator = value
        case "last-modified" where (200..<300).contains(statusLine) && validator == nil:
            validator = value
        default:
            break
        }
        return length
    }

    func write(_ data: UnsafeMutablePointer<CChar>?, _ length: Int) -> Int {
        if !bodyChecked {
            bodyChecked = true
            guard checkBodyStart() else { return farm_CURL_WRITEFUNC_ERROR() }
        }
        guard offset + Int64(length) <= policy.maxBytes else {
            failure = "download exceeds the \(policy.limitText) limit (\(url.shown))"
            return farm_CURL_WRITEFUNC_ERROR()
        }
        var written = 0
        while written < length {
            let n = Glibc.write(fd, data! + written, length - written)
            if n < 0 {
                if errno == EINTR { continue }
                failure = "download failed: cannot write the source to disk: \(String(cString: strerror(errno)))"
                return farm_CURL_WRITEFUNC_ERROR()
            }
            written += n
        }
        offset += Int64(length)
        progress.update(bytes: offset, total: expectedTotal)
        return length
    }

    /// Decides at the first body byte whether this response is the file: a 200 (from the start) or a
    /// 206 continuing at `offset`; anything else is not written. Checks the announced size.
    private func checkBodyStart() -> Bool {
        var length: curl_off_t = -1
        farm_curl_getinfo_off(handle, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &length)
        let contentLength = Int64(length)
        switch statusLine {
        case 200:
            if offset > 0 {
                // The server ignored the range (or the file changed): start over.
                _ = ftruncate(fd, 0)
                _ = lseek(fd, 0, SEEK_SET)
                offset = 0
            }
            expectedTotal = contentLength >= 0 ? contentLength : nil
        case 206:
            guard contentRangeStart == offset else {
                restartFromZero = true
                return false
            }
            expectedTotal = contentRangeTotal ?? (contentLength >= 0 ? offset + contentLength : nil)
        default:
            return false
        }
        if let expectedTotal, expectedTotal > policy.maxBytes {
            failure = "download exceeds the \(policy.limitText) limit: \(url.shown) is \(expectedTotal) bytes"
            return false
        }
        _ = lseek(fd, off_t(offset), SEEK_SET)
        progress.update(bytes: offset, total: expectedTotal)
        return true
    }

    func openSocket(_ address: UnsafeMutablePointer<curl_sockaddr>) -> curl_socket_t {
        let family = address.pointee.family
        let raw = UnsafeMutableRawPointer(address) + MemoryLayout<curl_sockaddr>.offset(of: \curl_sockaddr.addr)!
        var kind: String?
        var shown = "?"
        if family == AF_INET {
            let v4 = raw.loadUnaligned(as: sockaddr_in.self)
            kind = AddressClass.ipv4(UInt32(bigEndian: v4.sin_addr.s_addr))
            shown = Self.text(family: family, raw + MemoryLayout<sockaddr_in>.offset(of: \sockaddr_in.sin_addr)!)
        } else if family == AF_INET6 {
            let v6 = raw.loadUnaligned(as: sockaddr_in6.self)
            kind = AddressClass.ipv6(withUnsafeBytes(of: v6.sin6_addr) { Array($0) })
            shown = Self.text(family: family, raw + MemoryLayout<sockaddr_in6>.offset(of: \sockaddr_in6.sin6_addr)!)
        } else {
            kind = "not an internet address"
        }
        if let kind, !policy.mayReachPrivate(host: currentHost) {
            refusal =
                "download refused: \(SourceURL.redacted(currentURL)) resolves to \(shown), \(kind); this coordinator fetches only public addresses (--allow-private-urls)"
            return farm_CURL_SOCKET_BAD()
        }
        return socket(family, address.pointee.socktype | Int32(SOCK_CLOEXEC.rawValue), address.pointee.protocol)
    }

    private static func text(family: Int32, _ address: UnsafeRawPointer) -> String {
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
        guard inet_ntop(family, address, &buffer, socklen_t(buffer.count)) != nil else { return "?" }
        return String(cString: buffer)
    }

    // MARK: Errors

    private static func isTransient(_ code: CURLcode) -> Bool {
        [
            CURLE_COULDNT_RESOLVE_HOST, CURLE_COULDNT_CONNECT, CURLE_PARTIAL_FILE, CURLE_RECV_ERROR, CURLE_SEND_ERROR,
            CURLE_GOT_NOTHING, CURLE_OPERATION_TIMEDOUT, CURLE_WRITE_ERROR, CURLE_HTTP2, CURLE_HTTP2_STREAM,
            CURLE_SSL_CONNECT_ERROR,
        ].contains(code)
    }

    private static func message(_ code: CURLcode) -> String {
        guard let text = curl_easy_strerror(code) else { return "curl error \(code.rawValue)" }
        return String(cString: text).lowercased()
    }
}
