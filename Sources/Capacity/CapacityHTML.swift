import Foundation

/// The `--html` report: one self-contained page (inline CSS and SVG, no scripts, nothing fetched) with
/// throughput and queue depth over time, the latency distribution, and memory and CPU over time.
public enum CapacityHTML {
    public static func render(_ report: CapacityReport) -> String {
        let end = max(report.elapsedSeconds, report.timeline.last?.t ?? 0, 1)
        let marker = report.scaleUp.map { ($0.atSeconds, "scale-up") }

        // Throughput: completions per bucket, as jobs per hour; the offered rate as a line.
        let bucket = max(10, (end / 24).rounded(.up))
        var buckets = [Double](repeating: 0, count: Int((end / bucket).rounded(.up)) + 1)
        for job in report.jobs where job.state == "done" {
            if let at = job.finishedAt { buckets[min(Int(at / bucket), buckets.count - 1)] += 1 }
        }
        // The last bucket may be cut short by the end of the run: its rate is over the time it covers.
        let throughputBars = buckets.enumerated().compactMap { i, count -> (Double, Double)? in
            let from = Double(i) * bucket
            let span = min(bucket, end - from)
            return span >= 1 ? (from, count * 3600 / span) : nil
        }
        let offered = report.timeline.map { ($0.t, $0.offeredJobsPerHour) }
        let throughput = Chart(
            title: "Throughput", yLabel: "jobs per hour", xMax: end,
            bars: Bars(points: throughputBars, width: bucket, color: "#4e79a7", name: "completed (per \(Int(bucket)) s)"),
            lines: [Line(points: offered, color: "#e15759", name: "offered rate")], marker: marker)

        let queue = Chart(
            title: "Queue depth", yLabel: "jobs", xMax: end, bars: nil,
            lines: [
                Line(points: report.timeline.map { ($0.t, Double($0.queueDepth)) }, color: "#f28e2b", name: "waiting jobs"),
                Line(points: report.timeline.map { ($0.t, Double($0.running)) }, color: "#59a14f", name: "running jobs"),
                Line(points: [(0, 10), (end, 10)], color: "#999999", name: "trigger: more than 10 waiting", dashed: true),
            ], marker: marker)

        let latencies = report.jobs.compactMap(\.latencySeconds).sorted()
        let histogram = Histogram.make(latencies)
        let latency = Chart(
            title: "Latency distribution", yLabel: "jobs", xMax: histogram.xMax, xLabel: "seconds from submission to done",
            bars: Bars(points: histogram.bins, width: histogram.width, color: "#76b7b2", name: "jobs"),
            lines: [], marker: nil,
            verticals: [report.latencyP50.map { ($0, "p50") }, report.latencyP95.map { ($0, "p95") }].compactMap { $0 })

        let processes = Set(report.timeline.flatMap { $0.rssMB.keys }).sorted()
        let palette = ["#4e79a7", "#e15759", "#59a14f", "#b07aa1", "#9c755f"]
        let memory = Chart(
            title: "Resident memory", yLabel: "MB", xMax: end, bars: nil,
            lines: processes.enumerated().map { i, name in
                Line(points: report.timeline.compactMap { s in s.rssMB[name].map { (s.t, $0) } }, color: palette[i % palette.count], name: name)
            }, marker: marker)
        let cpu = Chart(
            title: "CPU", yLabel: "cores busy", xMax: end, bars: nil,
            lines: processes.enumerated().map { i, name in
                Line(points: report.timeline.compactMap { s in s.cores[name].map { (s.t, $0) } }, color: palette[i % palette.count], name: name)
            }, marker: marker)

        func cell(_ label: String, _ value: String) -> String { "<tr><th>\(escape(label))</th><td>\(escape(value))</td></tr>" }
        func number(_ v: Double?, _ unit: String, _ format: String = "%.1f") -> String {
            v.map { String(format: format, $0) + unit } ?? "unknown"
        }
        var rows = [
            cell("tier", "\(report.tier) (\(report.mode)\(report.server.map { " \($0)" } ?? ""))"),
            cell("command", report.command),
            cell("started", report.startedAt),
            cell("machine", "\(report.machine.cpus) cores, load average "
                + [report.machine.loadAverageStart, report.machine.loadAverageEnd].map { $0.map { String(format: "%.1f", $0) } ?? "?" }.joined(separator: " at the start, ") + " at the end"),
            cell("clips", report.clips.map { "\($0.label) \($0.width)x\($0.height) \(String(format: "%g", $0.seconds)) s" }.joined(separator: ", ")
                + ", \(report.codec) \(report.preset)"),
            cell("jobs", "\(report.jobsCompleted) done, \(report.jobsFailed) failed, \(report.jobsCancelled) cancelled at the end, \(report.jobsRejected) refused, of \(report.jobsSubmitted)"),
            cell("jobs per hour", String(format: "%.1f (%@)", report.jobsPerHour, report.jobsPerHourBasis)),
            cell("realtime factor", String(format: "%.2f seconds of video per second", report.realtimeFactor)),
            cell("latency", "p50 \(number(report.latencyP50, " s")), p95 \(number(report.latencyP95, " s")), max \(number(report.latencyMax, " s"))"),
            cell("wait before start", "p50 \(number(report.waitP50, " s")), p95 \(number(report.waitP95, " s"))"),
            cell("peak memory", number(report.peakRSSMB, " MB") + (report.peakRSSMBByProcess.isEmpty ? "" : " (" + report.peakRSSMBByProcess.sorted { $0.key < $1.key }.map { "\($0.key) \(String(format: "%.0f", $0.value)) MB" }.joined(separator: ", ") + ")")),
            cell("CPU", (report.cpu.utilisation.map { String(format: "%.0f %% of the allowed cores", $0 * 100) } ?? "unknown")
                + ", slots busy " + (report.cpu.slotUtilisation.map { String(format: "%.0f %%", $0 * 100) } ?? "unknown")),
            cell("scale-up triggers", report.scaleUp.map {
                String(format: "fired at %.0f jobs/hour offered, %.0f s in (%@; %d waiting, oldest wait %.0f s)",
                    $0.offeredJobsPerHour, $0.atSeconds, $0.reason, $0.queueDepth, $0.oldestWaitSeconds)
            } ?? String(format: "did not fire (highest offered rate %.0f jobs/hour)", report.maxOfferedJobsPerHour)),
        ]
        if let c = report.confinement {
            rows.append(cell("cores", "node on \(c.nodeCores), coordinator on \(c.coordinatorCores); tier \(c.tierCPU) CPU, machine \(c.machineCPUs)"))
        }
        let notes = report.notes.map { "<li>\(escape($0))</li>" }.joined()
        return """
            <!DOCTYPE html>
            <html lang="en"><head><meta charset="utf-8"><title>farm capacity: \(escape(report.tier))</title>
            <style>
            body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:980px}
            table{border-collapse:collapse;margin-bottom:1.5em}th,td{text-align:left;padding:3px 10px;border-bottom:1px solid #ddd}
            th{font-weight:600;white-space:nowrap}svg{display:block;margin:1em 0}.notes li{margin:.3em 0}
            </style></head><body>
            <h1>farm capacity: \(escape(report.tier)) tier</h1>
            <table>\(rows.joined(separator: "\n"))</table>
            \(notes.isEmpty ? "" : "<ul class=\"notes\">\(notes)</ul>")
            \(throughput.svg())
            \(queue.svg())
            \(latency.svg())
            \(memory.svg())
            \(cpu.svg())
            </body></html>

            """
    }

    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }

    struct Line {
        var points: [(Double, Double)]
        var color: String
        var name: String
        var dashed = false
    }

    struct Bars {
        var points: [(Double, Double)]
        var width: Double
        var color: String
        var name: String
    }

    struct Histogram {
        var bins: [(Double, Double)]
        var width: Double
        var xMax: Double

        static func make(_ sorted: [Double]) -> Histogram {
            guard let last = sorted.last, last > 0 else { return Histogram(bins: [], width: 1, xMax: 1) }
            let count = min(max(sorted.count / 2, 5), 20)
            let width = niceStep(last / Double(count))
            var bins = [Double](repeating: 0, count: Int((last / width).rounded(.down)) + 1)
            for v in sorted { bins[min(Int(v / width), bins.count - 1)] += 1 }
            return Histogram(
                bins: bins.enumerated().map { (Double($0.offset) * width, $0.element) }, width: width,
                xMax: Double(bins.count) * width)
        }
    }

    /// A 1, 2 or 5 times a power of ten at least `raw`.
    static func niceStep(_ raw: Double) -> Double {
        guard raw > 0, raw.isFinite else { return 1 }
        let power = pow(10, (log10(raw)).rounded(.down))
        for m in [1.0, 2, 5, 10] where m * power >= raw { return m * power }
        return 10 * power
    }

    struct Chart {
        var title: String
        var yLabel: String
        var xMax: Double
        var xLabel = "seconds since the load started"
        var bars: Bars?
        var lines: [Line]
        var marker: (Double, String)?
        var verticals: [(Double, String)] = []

        init(
            title: String, yLabel: String, xMax: Double, xLabel: String = "seconds since the load started", bars: Bars?,
            lines: [Line], marker: (Double, String)?, verticals: [(Double, String)] = []
        ) {
            self.title = title
            self.yLabel = yLabel
            self.xMax = xMax
            self.xLabel = xLabel
            self.bars = bars
            self.lines = lines
            self.marker = marker
            self.verticals = verticals
        }

        func svg() -> String {
            let width = 900.0
            let height = 260.0
            let left = 60.0
            let right = 20.0
            let top = 30.0
            let bottom = 45.0
            let plotW = width - left - right
            let plotH = height - top - bottom
            let values = lines.flatMap { $0.points.map(\.1) } + (bars?.points.map(\.1) ?? [])
            let yStep = CapacityHTML.niceStep(max(values.max() ?? 1, 1) / 4)
            let yMax = yStep * 4 < (values.max() ?? 0) ? yStep * 5 : yStep * 4
            let xMax = max(self.xMax, 1e-9)
            func x(_ v: Double) -> Double { left + min(max(v / xMax, 0), 1) * plotW }
            func y(_ v: Double) -> Double { top + plotH - min(max(v / yMax, 0), 1) * plotH }
            func f(_ v: Double) -> String { String(format: "%.1f", v) }
            var out = ["<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\" viewBox=\"0 0 \(Int(width)) \(Int(height))\" role=\"img\" aria-label=\"\(escape(title))\">"]
            out.append("<text x=\"\(f(left))\" y=\"18\" font-size=\"15\" font-weight=\"600\">\(escape(title))</text>")
            // Grid and axes.
            for i in 0...Int((yMax / yStep).rounded()) {
                let v = Double(i) * yStep
                out.append("<line x1=\"\(f(left))\" y1=\"\(f(y(v)))\" x2=\"\(f(left + plotW))\" y2=\"\(f(y(v)))\" stroke=\"#e5e5e5\"/>")
                out.append("<text x=\"\(f(left - 6))\" y=\"\(f(y(v) + 4))\" font-size=\"11\" text-anchor=\"end\">\(Self.label(v))</text>")
            }
            let xStep = CapacityHTML.niceStep(xMax / 8)
            var xv = 0.0
            while xv <= xMax + 1e-9 {
                out.append("<text x=\"\(f(x(xv)))\" y=\"\(f(top + plotH + 15))\" font-size=\"11\" text-anchor=\"middle\">\(Self.label(xv))</text>")
                xv += xStep
            }
            out.append("<line x1=\"\(f(left))\" y1=\"\(f(top + plotH))\" x2=\"\(f(left + plotW))\" y2=\"\(f(top + plotH))\" stroke=\"#333\"/>")
            out.append("<line x1=\"\(f(left))\" y1=\"\(f(top))\" x2=\"\(f(left))\" y2=\"\(f(top + plotH))\" stroke=\"#333\"/>")
            out.append("<text x=\"\(f(left + plotW / 2))\" y=\"\(f(height - 8))\" font-size=\"12\" text-anchor=\"middle\">\(escape(xLabel))</text>")
            out.append("<text transform=\"translate(14 \(f(top + plotH / 2))) rotate(-90)\" font-size=\"12\" text-anchor=\"middle\">\(escape(yLabel))</text>")
            var legend: [(String, String, Bool)] = []
            if let bars {
                for (start, value) in bars.points where value > 0 {
                    let x0 = x(start)
                    let x1 = x(min(start + bars.width, xMax))
                    out.append("<rect x=\"\(f(x0 + 1))\" y=\"\(f(y(value)))\" width=\"\(f(max(x1 - x0 - 2, 1)))\" height=\"\(f(top + plotH - y(value)))\" fill=\"\(bars.color)\"/>")
                }
                legend.append((bars.name, bars.color, false))
            }
            for line in lines where !line.points.isEmpty {
                let path = line.points.map { "\(f(x($0.0))),\(f(y($0.1)))" }.joined(separator: " ")
                out.append("<polyline fill=\"none\" stroke=\"\(line.color)\" stroke-width=\"2\"\(line.dashed ? " stroke-dasharray=\"6 4\"" : "") points=\"\(path)\"/>")
                legend.append((line.name, line.color, line.dashed))
            }
            for (value, name) in verticals + (marker.map { [$0] } ?? []) {
                out.append("<line x1=\"\(f(x(value)))\" y1=\"\(f(top))\" x2=\"\(f(x(value)))\" y2=\"\(f(top + plotH))\" stroke=\"#222\" stroke-dasharray=\"2 3\"/>")
                out.append("<text x=\"\(f(x(value) + 4))\" y=\"\(f(top + 12))\" font-size=\"11\">\(escape(name))</text>")
            }
            var lx = left + plotW
            for (name, color, dashed) in legend.reversed() {
                lx -= Double(name.count) * 6.5 + 34
                out.append("<line x1=\"\(f(lx))\" y1=\"14\" x2=\"\(f(lx + 20))\" y2=\"14\" stroke=\"\(color)\" stroke-width=\"\(dashed ? 2 : 6)\"\(dashed ? " stroke-dasharray=\"6 4\"" : "")/>")
                out.append("<text x=\"\(f(lx + 24))\" y=\"18\" font-size=\"11\">\(escape(name))</text>")
            }
            if values.isEmpty {
                out.append("<text x=\"\(f(left + plotW / 2))\" y=\"\(f(top + plotH / 2))\" font-size=\"13\" text-anchor=\"middle\" fill=\"#888\">no data</text>")
            }
            out.append("</svg>")
            return out.joined(separator: "\n")
        }

        static func label(_ v: Double) -> String {
            v == v.rounded() ? String(Int(v)) : String(format: "%.1f", v)
        }
    }
}
