@testable import FarmCoordinator
import FarmMedia
import FarmTestSupport
import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import Testing

/// The rules on sources that need no network: which addresses are not public, what a URL must look
/// like, Content-Range parsing, the limits on picture size and duration, and stale uploads.
@Suite struct SourcePolicyTests {
    @Test func nonPublicAddressesAreNamed() {
        for (host, kind) in [
            ("127.0.0.1", "a loopback address"), ("127.8.9.10", "a loopback address"), ("10.0.0.1", "a private address"),
            ("172.16.0.1", "a private address"), ("172.31.255.255", "a private address"), ("192.168.1.1", "a private address"),
            ("169.254.169.254", "a link-local address"), ("100.64.0.1", "a shared (carrier-grade NAT) address"),
            ("0.0.0.0", "an unspecified address"), ("224.0.0.1", "a multicast address"), ("::1", "a loopback address"),
            ("::", "an unspecified address"), ("fe80::1", "a link-local address"), ("fd00::1", "a private address"),
            ("::ffff:127.0.0.1", "a loopback address"), ("::ffff:10.1.1.1", "a private address"),
        ] {
            #expect(AddressClass.ofLiteral(host) == kind, "\(host)")
        }
        for host in ["93.184.215.14", "172.32.0.1", "8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8", "example.com"] {
            #expect(AddressClass.ofLiteral(host) == nil, "\(host)")
        }
    }

    @Test func sourceURLsAreCheckedBeforeAnyFetch() throws {
        var policy = DownloadPolicy()
        #expect(throws: CoordinatorError.self) { try SourceURL("ftp://example.com/a.mp4", policy: policy) }
        #expect(throws: CoordinatorError.self) { try SourceURL("http://10.0.0.5/a.mp4", policy: policy) }
        #expect(throws: CoordinatorError.self) { try SourceURL("http://[::1]:8080/a.mp4", policy: policy) }
        let url = try SourceURL("https://Example.com/dir/Clip.MP4?x=1", policy: policy)
        #expect(url.host == "example.com")
        #expect(url.pathExtension == "mp4")
        policy.privateHosts = ["10.0.0.5"]
        #expect(try SourceURL("http://10.0.0.5/a", policy: policy).pathExtension == "bin")
        policy.privateHosts = []
        policy.allowPrivateAddresses = true
        _ = try SourceURL("http://127.0.0.1:9/a.mkv", policy: policy)
    }

    @Test func contentRanges() {
        #expect(ResumableUploads.parseContentRange("bytes 0-99/1000")! == (0...99, 1000))
        #expect(ResumableUploads.parseContentRange("bytes 900-999/1000")! == (900...999, 1000))
        for bad in ["bytes 5-4/10", "bytes */10", "items 0-1/2", "bytes 0-1", "bytes a-b/c", "bytes -1-3/4"] {
            #expect(ResumableUploads.parseContentRange(bad) == nil, "\(bad)")
        }
    }

    @Test func limitsNameWhatTheSourceBreaks() throws {
        MediaLog.quiet()
        let directory = try TestMedia.temporaryDirectory("farm-limits")
        defer { try? FileManager.default.removeItem(at: directory) }
        let clip = directory.appendingPathComponent("clip.mp4").path
        try TestMedia.makeClip(at: clip, seconds: 2, size: "320x240", audio: false)
        let info = try MediaInfo.probe(path: clip)
        var limits = SourceLimits()
        try limits.check(info, source: clip)
        limits.maxWidth = 200
        #expect(throws: CoordinatorError.self) { try limits.check(info, source: clip) }
        do {
            try limits.check(info, source: clip)
        } catch {
            #expect(error.message == "\(clip): picture 320x240 exceeds the 200x8192 limit of this coordinator (--max-source-size)")
        }
        limits = SourceLimits()
        limits.maxDurationSeconds = 1
        do {
            try limits.check(info, source: clip)
            Issue.record("a 2 s source passed a 1 s limit")
        } catch {
            #expect(error.message == "\(clip): duration 2.0 s exceeds the 1.0 s limit of this coordinator (--max-source-hours)")
        }
        #expect(SourceLimits.duration(24 * 3600) == "24 h")
        #expect(SourceLimits.duration(5400) == "1:30:00")
    }

    @Test func staleUploadsAreSwept() throws {
        let directory = try TestMedia.temporaryDirectory("farm-stale")
        defer { try? FileManager.default.removeItem(at: directory) }
        let uploads = ResumableUploads(directory: directory.path, maxBytes: 1 << 20, staleSeconds: 60)
        let old = try uploads.create(size: 10, filename: "a.mp4")
        #expect(uploads.count == 1)
        uploads.sweep(now: Date().addingTimeInterval(30))
        #expect(uploads.count == 1)
        #expect(FileManager.default.fileExists(atPath: old.path))
        uploads.sweep(now: Date().addingTimeInterval(120))
        #expect(uploads.count == 0)
        #expect(!FileManager.default.fileExists(atPath: old.path))
        #expect(throws: APIError.self) { try uploads.create(size: 2 << 20, filename: nil) }
        #expect(throws: APIError.self) { try uploads.create(size: 0, filename: nil) }
    }
}
