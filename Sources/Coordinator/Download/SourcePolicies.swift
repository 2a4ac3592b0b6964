internal import FarmMedia
internal import Foundation
internal import Synchronization

/// Where and how much the coordinator fetches for a job given by URL (issue 6: http and https only,
/// a size limit, a time limit, no private or loopback targets unless allowed).
public struct DownloadPolicy: Sendable {
    /// The largest source downloaded, in bytes.
    public var maxBytes: Int64 = 20 << 30
    /// The whole download, retries included, must end within this many seconds.
    public var timeLimitSeconds: Double = 6 * 3600
    /// Attempts in a row that receive nothing before the download gives up.
    public var maxRetries: Int = 5
    /// The first wait between attempts; it doubles each time up to 30 s.
    public var retryDelaySeconds: Double = 0.5
    /// An attempt that moves no byte for this long is abandoned (and retried).
    public var stallSeconds: Int = 60
    /// Loopback, private, link-local and other non-public addresses may be fetched.
    public var allowPrivateAddresses = false
    /// Hosts (as the URL names them) that may resolve to non-public addresses.
    public var privateHosts: Set<String> = []
    /// Redirects followed at most.
    public var maxRedirects = 5

    public init() {}

    func mayReachPrivate(host: String) -> Bool {
        allowPrivateAddresses || privateHosts.contains(host.lowercased())
    }

    var limitText: String { ByteCountText.limit(maxBytes) }
}

/// Largest picture and longest duration a source may have (issue 6), checked when a job is planned.
public struct SourceLimits: Sendable {
    public var maxWidth = 8192
    public var maxHeight = 8192
    public var maxDurationSeconds: Double = 24 * 3600

    public init() {}

    /// Throws a one-line error naming the limit the source breaks.
    func check(_ info: MediaInfo, source: String) throws(CoordinatorError) {
        if let video = info.video, video.width > maxWidth || video.height > maxHeight {
            throw CoordinatorError(
                .invalidRequest,
                "\(source): picture \(video.width)x\(video.height) exceeds the \(maxWidth)x\(maxHeight) limit of this coordinator (--max-source-size)")
        }
        if info.durationSeconds > maxDurationSeconds {
            throw CoordinatorError(
                .invalidRequest,
                "\(source): duration \(Self.duration(info.durationSeconds)) exceeds the \(Self.duration(maxDurationSeconds)) limit of this coordinator (--max-source-hours)")
        }
    }

    /// "24 h", "1:30:00", "2.5 s".
    static func duration(_ seconds: Double) -> String {
        if seconds >= 3600, seconds.truncatingRemainder(dividingBy: 3600) == 0 { return "\(Int(seconds / 3600)) h" }
        if seconds >= 60 { return clock(seconds) }
        return String(format: "%.1f s", seconds)
    }

    static func clock(_ seconds: Double) -> String {
        let s = Int(seconds.rounded(.down))
        return String(format: "%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60)
    }
}

/// How far a download has come, written by the download thread and read by status reports.
public final class DownloadProgress: Sendable {
    private let received = Atomic<Int64>(0)
    private let expected = Atomic<Int64>(-1)

    public init() {}

    func update(bytes: Int64, total: Int64?) {
        received.store(bytes, ordering: .relaxed)
        if let total { expected.store(total, ordering: .relaxed) }
    }

    /// Bytes on disk so far, and the full size when the server said it.
    public var snapshot: (bytes: Int64, total: Int64?) {
        let total = expected.load(ordering: .relaxed)
        return (received.load(ordering: .relaxed), total >= 0 ? total : nil)
    }
}

/// An http(s) source URL, checked before anything is fetched.
struct SourceURL {
    let text: String
    let host: String

    static func isURL(_ source: String) -> Bool {
        let lower = source.lowercased()
        return lower.hasPrefix("http://") || lower.hasPrefix("https://")
    }

    /// The URL as logs, errors and job status show it: credentials in it (user info, and the query
    /// string, where presigned URLs carry their signatures) are replaced by `***`. Anything that is not
    /// an http(s) URL is shown as it is.
    static func redacted(_ text: String) -> String {
        guard isURL(text), var components = URLComponents(string: text) else { return text }
        var changed = false
        if components.user != nil || components.password != nil {
            components.user = "***"
            components.password = nil
            changed = true
        }
        if let query = components.percentEncodedQuery, !query.isEmpty {
            components.percentEncodedQuery = "***"
            changed = true
        }
        return changed ? (components.string ?? text) : text
    }

    /// This URL as errors and logs show it (see ``redacted(_:)``).
    var shown: String { Self.redacted(text) }

    /// Checks the scheme and host; a host written as a non-public IP address is refused here already.
    init(_ text: String, policy: DownloadPolicy) throws(CoordinatorError) {
        guard let components = URLComponents(string: text), let scheme = components.scheme?.lowercased() else {
            throw CoordinatorError(.invalidRequest, "\(Self.redacted(text)): not a valid URL")
        }
        guard scheme == "http" || scheme == "https" else {
            throw CoordinatorError(.invalidRequest, "\(Self.redacted(text)): only http and https URLs are fetched")
        }
        guard var host = components.host, !host.isEmpty else {
            throw CoordinatorError(.invalidRequest, "\(Self.redacted(text)): the URL names no host")
        }
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        self.text = text
        self.host = host.lowercased()
        if !policy.mayReachPrivate(host: self.host), let kind = AddressClass.ofLiteral(self.host) {
            throw CoordinatorError(
                .invalidRequest, "\(Self.redacted(text)): \(self.host) is \(kind); this coordinator fetches only public addresses (--allow-private-urls)")
        }
    }

    /// The file name extension of the URL's path, for the downloaded file ("bin" when there is none).
    var pathExtension: String {
        let ext = ((URLComponents(string: text)?.path ?? "") as NSString).pathExtension.lowercased()
        return (1...8).contains(ext.count) && ext.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber) }) ? ext : "bin"
    }
}

/// Which addresses are not public: loopback, private, link-local (cloud metadata lives there),
/// carrier-grade NAT, multicast, reserved. Returns a phrase for errors, nil for a public address.
enum AddressClass {
    static func ofLiteral(_ host: String) -> String? {
        var v4 = in_addr()
        if inet_pton(AF_INET, host, &v4) == 1 { return ipv4(UInt32(bigEndian: v4.s_addr)) }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, host, &v6) == 1 { return ipv6(withUnsafeBytes(of: v6) { Array($0) }) }
        return nil
    }

    static func ipv4(_ a: UInt32) -> String? {
        func inside(_ net: UInt32, _ bits: UInt32) -> Bool { bits == 0 || a >> (32 - bits) == net >> (32 - bits) }
        if inside(0x7F00_0000, 8) { return "a loopback address" }
        if inside(0x0A00_0000, 8) || inside(0xAC10_0000, 12) || inside(0xC0A8_0000, 16) { return "a private address" }
        if inside(0xA9FE_0000, 16) { return "a link-local address" }
        if inside(0x6440_0000, 10) { return "a shared (carrier-grade NAT) address" }
        if inside(0x0000_0000, 8) { return "an unspecified address" }
        if inside(0xE000_0000, 4) { return "a multicast address" }
        if inside(0xF000_0000, 4) || inside(0xC000_0000, 24) || inside(0xC612_0000, 15) { return "a reserved address" }
        return nil
    }

    static func ipv6(_ b: [UInt8]) -> String? {
        guard b.count == 16 else { return "an unknown address" }
        if b[0..<15].allSatisfy({ $0 == 0 }) { return b[15] == 1 ? "a loopback address" : "an unspecified address" }
        // IPv4-mapped (::ffff:a.b.c.d) and NAT64 (64:ff9b::a.b.c.d) carry an IPv4 address.
        let v4 = UInt32(b[12]) << 24 | UInt32(b[13]) << 16 | UInt32(b[14]) << 8 | UInt32(b[15])
        if b[0..<10].allSatisfy({ $0 == 0 }), b[10] == 0xFF, b[11] == 0xFF { return ipv4(v4) }
        if b[0] == 0, b[1] == 0x64, b[2] == 0xFF, b[3] == 0x9B, b[4..<12].allSatisfy({ $0 == 0 }) { return ipv4(v4) }
        if b[0] == 0xFE, b[1] & 0xC0 == 0x80 { return "a link-local address" }
        if b[0] & 0xFE == 0xFC { return "a private address" }
        if b[0] == 0xFF { return "a multicast address" }
        return nil
    }
}

/// Byte counts as people read them in limits and progress ("20 GiB", "1.5 MiB").
enum ByteCountText {
    static func limit(_ bytes: Int64) -> String {
        let units: [(Int64, String)] = [(1 << 40, "TiB"), (1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")]
        for (size, name) in units where bytes >= size {
            let value = Double(bytes) / Double(size)
            return value.rounded() == value ? "\(Int(value)) \(name)" : String(format: "%.1f %@", value, name)
        }
        return "\(bytes) bytes"
    }
}
