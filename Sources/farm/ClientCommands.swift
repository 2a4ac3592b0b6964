import ArgumentParser
import FarmAPI
import Foundation
import OpenAPIRuntime

/// `farm jobs`: the coordinator's jobs.
struct Jobs: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "jobs", abstract: "List the jobs of a coordinator.")

    @OptionGroup var serverOptions: ServerOptions

    @Flag(help: "Print the API's JSON instead of a table.")
    var json = false

    func run() async throws {
        let client = try serverOptions.client()
        do {
            if json {
                print(String(decoding: try await client.raw("GET", "/jobs"), as: UTF8.self), terminator: "")
                return
            }
            let list = try await client.call("GET /jobs") { try await $0.listJobs() }.ok.body.json
            var rows = [["ID", "STATE", "PROGRESS", "SEGMENTS", "FPS", "ETA", "SOURCE"]]
            for job in list.jobs {
                let done = job.segments.filter { $0.state == .done }.count
                rows.append([
                    job.id, job.state.rawValue + (job.state == .running ? "/\(job.phase)" : ""),
                    String(format: "%.0f%%", job.progress * 100), job.segments.isEmpty ? "-" : "\(done)/\(job.segments.count)",
                    job.fps > 0 ? String(format: "%.1f", job.fps) : "-",
                    job.eta_s?.value.map { job.state == .running ? Submit.clock($0) : "-" } ?? "-",
                    job.source + (job.error?.value.map { "  (\($0))" } ?? ""),
                ])
            }
            printTable(rows)
        } catch let error as APIClient.Failure {
            fail(error.description)
        }
    }
}

/// `farm nodes`: the render nodes connected to a coordinator.
struct Nodes: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "nodes", abstract: "List the render nodes of a coordinator.")

    @OptionGroup var serverOptions: ServerOptions

    @Flag(help: "Print the API's JSON instead of a table.")
    var json = false

    func run() async throws {
        let client = try serverOptions.client()
        do {
            if json {
                print(String(decoding: try await client.raw("GET", "/nodes"), as: UTF8.self), terminator: "")
                return
            }
            let list = try await client.call("GET /nodes") { try await $0.listNodes() }.ok.body.json
            var rows = [["ID", "ADDRESS", "STATE", "SLOTS", "DONE", "FPS", "HEARTBEAT"]]
            for node in list.nodes {
                rows.append([
                    node.id, node.address, node.state.rawValue, "\(node.slots_in_use)/\(node.slots)", "\(node.segments_done)",
                    node.fps?.value.map { String(format: "%.1f", $0) } ?? "-", String(format: "%.1f s ago", node.last_heartbeat_s),
                ])
            }
            printTable(rows)
            if !list.bans.isEmpty {
                print("\nbanned:")
                var banned = [["ID", "ADDRESS", "SINCE", "REASON"]]
                for ban in list.bans {
                    banned.append([ban.id, ban.address ?? "-", ISO8601DateFormatter().string(from: ban.since), ban.reason])
                }
                printTable(banned)
            }
        } catch let error as APIClient.Failure {
            fail(error.description)
        }
    }
}

/// `farm cancel`: stop a job; its nodes stop encoding its segments.
struct Cancel: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "cancel", abstract: "Cancel a job on a coordinator.")

    @Argument(help: "The job id (as `farm submit` printed it).")
    var id: String

    @OptionGroup var serverOptions: ServerOptions

    func run() async throws {
        let client = try serverOptions.client()
        do {
            let job = try await client.call("DELETE /jobs/\(id)") { try await $0.cancelJob(path: .init(id: id)) }.ok.body.json
            print("\(job.id) \(job.state.rawValue)")
        } catch let error as APIClient.Failure {
            fail(error.description)
        }
    }
}

func printTable(_ rows: [[String]]) {
    guard let header = rows.first else { return }
    var widths = header.map(\.count)
    for row in rows { for (i, cell) in row.enumerated() where i < widths.count { widths[i] = max(widths[i], cell.count) } }
    for row in rows {
        let line = row.enumerated().map { i, cell in
            i == row.count - 1 ? cell : cell.padding(toLength: widths[i], withPad: " ", startingAt: 0)
        }
        print(line.joined(separator: "  "))
    }
}

// MARK: - Replies (the API's snake_case JSON)
