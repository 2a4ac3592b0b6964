import Foundation
import Testing

/// docs/reliability.md stays true: every row of its table names tests (or fuzz targets) that exist, and
/// every fault, network and load test is in the table.
@Suite struct ReliabilityReportTests {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    /// The rows of the first table under "## Faults and hostile input": its cells, trimmed.
    static func rows() throws -> [[String]] {
        let text = try String(contentsOf: repository.appendingPathComponent("docs/reliability.md"), encoding: .utf8)
        let section = try #require(text.range(of: "## Faults and hostile input"), "docs/reliability.md has no table section")
        var rows: [[String]] = []
        var inTable = false
        for line in text[section.upperBound...].split(separator: "\n", omittingEmptySubsequences: false) {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            guard trimmed.hasPrefix("|") else {
                if inTable { break }
                continue
            }
            inTable = true
            let cells = trimmed.dropFirst().dropLast().split(separator: "|", omittingEmptySubsequences: false)
                .map { $0.trimmingCharacters(in: .whitespaces) }
            if cells.allSatisfy({ $0.allSatisfy { "-: ".contains($0) } }) { continue }
            rows.append(cells)
        }
        return rows
    }

    /// The text of each type and extension declared in Tests/, by name, nested ones included (a suite's
    /// functions are in its text).
    static func testSources() throws -> [String: String] {
        let tests = repository.appendingPathComponent("Tests")
        var sources: [String: String] = [:]
        let files = FileManager.default.enumerator(atPath: tests.path)?.compactMap { $0 as? String } ?? []
        for file in files where file.hasSuffix(".swift") {
            let text = try String(contentsOf: tests.appendingPathComponent(file), encoding: .utf8)
            // The declarations open at this line, by name and indentation; one ends at a `}` at its indentation.
            var open: [(name: String, indent: Int)] = []
            for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
                let indent = line.prefix { $0 == " " }.count
                let code = line.dropFirst(indent)
                if let name = Self.declaredName(code), code.hasSuffix("{") { open.append((name, indent)) }
                for declaration in open { sources[declaration.name, default: ""] += line + "\n" }
                if code == "}", let last = open.last, last.indent == indent { open.removeLast() }
            }
        }
        return sources
    }

    /// The name a line declares (`struct NAME`, `@Suite(...) struct NAME`, `extension NAME`, ...), if any.
    static func declaredName(_ code: Substring) -> String? {
        var rest = code
        if rest.hasPrefix("@Suite") {
            // The attribute, with its arguments if any.
            guard let space = rest.firstIndex(of: " ") else { return nil }
            if let close = rest.lastIndex(of: ")"), rest.hasPrefix("@Suite(") { rest = rest[rest.index(after: close)...] } else { rest = rest[space...] }
            rest = rest.drop { $0 == " " }
        }
        for modifier in ["private ", "fileprivate ", "public ", "internal ", "final "] where rest.hasPrefix(modifier) {
            rest = rest.dropFirst(modifier.count)
        }
        for keyword in ["struct ", "enum ", "class ", "extension "] where rest.hasPrefix(keyword) {
            let name = rest.dropFirst(keyword.count).prefix { $0.isLetter || $0.isNumber }
            return name.isEmpty ? nil : String(name)
        }
        return nil
    }

    /// `Suite.function` and `Fuzz/...` references in backticks.
    static func references(_ cell: String) -> [String] {
        cell.split(separator: "`", omittingEmptySubsequences: false).enumerated().filter { $0.offset % 2 == 1 }.map { String($0.element) }
    }

    @Test func everyRowNamesTestsThatExist() throws {
        let rows = try Self.rows()
        let header = try #require(rows.first)
        #expect(header == ["Fault or hostile input", "What the system does", "How the test checks it", "Tests"], "\(header)")
        #expect(rows.count > 30, "the table has \(rows.count) rows")
        let sources = try Self.testSources()
        for row in rows.dropFirst() {
            #expect(row.count == 4 && row.allSatisfy { !$0.isEmpty }, "incomplete row: \(row)")
            let references = Self.references(row.last ?? "")
            #expect(!references.isEmpty, "row names no test: \(row.first ?? "")")
            for reference in references {
                if reference.hasPrefix("Fuzz/") || reference.hasPrefix("scripts/") {
                    #expect(FileManager.default.fileExists(atPath: Self.repository.appendingPathComponent(reference).path), "\(reference)")
                    continue
                }
                let parts = reference.split(separator: ".")
                guard parts.count == 2, let source = sources[String(parts[0])] else {
                    Issue.record("\(reference): no test suite \(parts.first ?? "") in Tests/")
                    continue
                }
                let exists = source.contains("func \(parts[1])(")
                #expect(exists, "\(reference): no test function \(parts[1]) in \(parts[0])")
            }
        }
    }

    @Test func everyFaultTestIsInTheTable() throws {
        let named = Set(try Self.rows().flatMap { Self.references($0.last ?? "") })
        let sources = try Self.testSources()
        for suite in ["FaultTests", "NetworkFaultTests", "LoadTests", "FleetRulesTests"] {
            let source = try #require(sources[suite], "no \(suite)")
            let lines = source.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
            // The function after each @Test attribute (on the same line or the next).
            for (i, line) in lines.enumerated() where line.hasPrefix("@Test") {
                let declaration = line.contains("func ") ? line : (i + 1 < lines.count ? lines[i + 1] : "")
                guard let range = declaration.range(of: "func ") else { continue }
                let name = declaration[range.upperBound...].prefix { $0.isLetter || $0.isNumber }
                let listed = named.contains("\(suite).\(name)")
                #expect(listed, "\(suite).\(name) is not in docs/reliability.md")
            }
        }
        for target in ["Fuzz/FrameFuzz.swift", "Fuzz/SubmissionFuzz.swift", "Fuzz/SessionFuzz.swift"] {
            let listed = named.contains(target)
            #expect(listed, "\(target) is not in docs/reliability.md")
        }
    }
}
