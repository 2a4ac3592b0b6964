import FarmTestSupport
import Foundation
import Testing

#if canImport(FoundationXML)
    import FoundationXML
#endif

/// `farm capacity --embedded` for real, kept short: tiny clips, a few seconds of load, the budget tier.
/// The figures are not judged for speed (that is `make capacity`), only for being there and plausible.
@Suite(.serialized, .heavy) struct CapacityTests {
    /// Processes whose command line names a capacity run's data directory.
    static func capacityChildren() -> Set<String> {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return Set(
            entries.filter { Int($0) != nil }.filter { pid in
                guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return false }
                let text = String(decoding: data.map { $0 == 0 ? 32 : $0 }, as: UTF8.self)
                return text.contains("/farm-capacity-") && (text.contains(" coordinator ") || text.contains(" node "))
            })
    }

    static func capacityDirectories() -> Set<String> {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: FileManager.default.temporaryDirectory.path)) ?? []
        return Set(entries.filter { $0.hasPrefix("farm-capacity-") })
    }

    @Test func embeddedBudgetRunWritesPlausibleJSONAndASelfContainedPage() async throws {
        let dir = try TestMedia.temporaryDirectory("farm-capacity-test")
        defer { try? FileManager.default.removeItem(at: dir) }
        let json = dir.appendingPathComponent("capacity.json").path
        let html = dir.appendingPathComponent("capacity.html").path
        let directoriesBefore = Self.capacityDirectories()

        let result = try await FarmBinary.run(
            [
                "capacity", "--tier", "budget", "--embedded", "--duration", "12", "--clip-seconds", "0.5", "--preset",
                "ultrafast", "--json", json, "--html", html,
            ], timeout: 120)
        #expect(result.status == 0, "stderr: \(result.stderr.suffix(2000))")
        #expect(result.stdout.contains("jobs/hour"))

        let object = try #require(
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: json))) as? [String: Any])
        for key in [
            "tier", "jobs_completed", "jobs_per_hour", "realtime_factor", "latency_p50_s", "latency_p95_s", "peak_rss_mb",
            "scale_up_at_jobs_per_hour", "timeline", "cpu",
        ] {
            #expect(object.keys.contains(key), "missing \(key)")
        }
        #expect(object["tier"] as? String == "budget")
        let completed = try #require(object["jobs_completed"] as? Int)
        #expect(completed >= 1)
        #expect((object["jobs_per_hour"] as? Double ?? 0) > 0)
        #expect((object["realtime_factor"] as? Double ?? 0) > 0)
        let p50 = try #require(object["latency_p50_s"] as? Double)
        let p95 = try #require(object["latency_p95_s"] as? Double)
        #expect(p50 > 0 && p95 >= p50)
        #expect((object["peak_rss_mb"] as? Double ?? 0) > 0)
        let byProcess = try #require(object["peak_rss_mb_by_process"] as? [String: Double])
        #expect((byProcess["coordinator"] ?? 0) > 0 && (byProcess["node-0"] ?? 0) > 0, "\(byProcess)")
        // Either the triggers fired at a positive rate, or the key says null.
        let scaleUp = object["scale_up_at_jobs_per_hour"]
        #expect(scaleUp is NSNull || (scaleUp as? Double ?? 0) > 0)
        let confinement = try #require(object["confinement"] as? [String: Any])
        let machine = try #require(confinement["machine_cpus"] as? Int)
        #expect((confinement["node_cores"] as? [Int])?.count == min(2, machine))
        #expect((object["timeline"] as? [Any])?.isEmpty == false)
        let jobs = try #require(object["jobs"] as? [[String: Any]])
        #expect(jobs.filter { $0["state"] as? String == "done" }.count == completed)
        #expect(Set(jobs.compactMap { $0["clip"] as? String }) == ["720p", "1080p"])

        let page = try String(contentsOfFile: html, encoding: .utf8)
        #expect(page.hasPrefix("<!DOCTYPE html>"))
        #expect(!page.contains("<script"))
        for external in ["src=", "<link", "@import", "url("] { #expect(!page.contains(external), "\(external) in the page") }
        #expect(!page.replacingOccurrences(of: "xmlns=\"http://www.w3.org/2000/svg\"", with: "").contains("http"))
        let svgs = page.components(separatedBy: "<svg").dropFirst().map { "<svg" + $0.components(separatedBy: "</svg>")[0] + "</svg>" }
        #expect(svgs.count >= 3)
        for title in ["Throughput", "Queue depth", "Latency distribution"] { #expect(page.contains(title)) }
        for svg in svgs {
            let parser = XMLParser(data: Data(svg.utf8))
            #expect(parser.parse(), "an SVG chart is not well-formed XML: \(svg.prefix(200))")
        }

        // It cleaned up: no child left running, no temporary directory left behind.
        #expect(Self.capacityChildren().isEmpty)
        #expect(Self.capacityDirectories().subtracting(directoriesBefore).isEmpty)
    }

    @Test func conflictingModesAndAnUnreachableServerFailWithOneLine() async throws {
        let both = try await FarmBinary.run(["capacity", "--tier", "budget", "--embedded", "--server", "http://127.0.0.1:9"], timeout: 30)
        #expect(both.status != 0 && both.status < 128)
        #expect(both.stderr.contains("--server and --embedded"), "\(both.stderr)")

        let unreachable = try await FarmBinary.run(
            ["capacity", "--tier", "budget", "--server", "http://127.0.0.1:9", "--duration", "2", "--clip-seconds", "0.2"],
            timeout: 120)
        #expect(unreachable.status != 0 && unreachable.status < 128)
        let errors = unreachable.stderr.split(separator: "\n").filter { $0.hasPrefix("farm: error:") }
        #expect(errors.count == 1, "\(unreachable.stderr)")
        #expect(errors.first?.contains("127.0.0.1:9") == true, "\(errors)")
    }
}
