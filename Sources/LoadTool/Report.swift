import Foundation
import Histogram

/// A run's result: the report, and the histograms behind it (for the .hgrm file and the plot).
public struct LoadResult: Sendable {
    public var report: LoadReport
    /// From intended send times (open loop) / send times (closed loop), and service times.
    public var corrected: LatencyHistogram
    public var uncorrected: LatencyHistogram
    /// A sweep's steps, each with its corrected latencies.
    public var steps: [(label: String, corrected: LatencyHistogram)]
}

/// One step of a sweep: the last two windows (those that agreed, or the last two tried).
public struct SweepRow: Sendable, Codable {
    public var step: Int
    public var dimension: String
    public var value: Double
    public var connections: Int
    public var streams: Int
    public var rate: Double?
    public var windows: Int
    public var stable: Bool
    public var seconds: Double
    public var requests: Int
    public var errors: Int
    public var throughput: Double
    public var latency: Percentiles
    public var serviceTime: Percentiles

    init(step: Int, dimension: String, value: Double, connections: Int, streams: Int, rate: Double?, windows: Int,
         stable: Bool, seconds: Double, stats: WindowStats) {
        self.step = step
        self.dimension = dimension
        self.value = value
        self.connections = connections
        self.streams = streams
        self.rate = rate
        self.windows = windows
        self.stable = stable
        self.seconds = seconds
        requests = stats.all.ok + stats.all.errors
        errors = stats.all.errors
        throughput = seconds > 0 ? Double(requests) / seconds : 0
        latency = Percentiles(stats.all.corrected)
        serviceTime = Percentiles(stats.all.uncorrected)
    }

    /// perf_analyzer's rule, on two windows: throughput and p50 within `tolerance` of each other.
    static func agree(_ a: (stats: WindowStats, seconds: Double), _ b: (stats: WindowStats, seconds: Double), tolerance: Double) -> Bool {
        func close(_ x: Double, _ y: Double) -> Bool {
            let m = max(abs(x), abs(y))
            return m == 0 || abs(x - y) / m <= tolerance
        }
        let ta = Double(a.stats.all.ok + a.stats.all.errors) / max(a.seconds, 1e-9)
        let tb = Double(b.stats.all.ok + b.stats.all.errors) / max(b.seconds, 1e-9)
        let pa = Double(a.stats.all.corrected.valueAtPercentile(50)), pb = Double(b.stats.all.corrected.valueAtPercentile(50))
        return close(ta, tb) && close(pa, pb)
    }

    var progressLine: String {
        "step \(step): \(dimension) \(Format.value(value))  \(Format.count(throughput)) req/s  p50 \(Format.ms(latency.p50))  "
            + "p99 \(Format.ms(latency.p99))  errors \(errors)  (\(windows) windows\(stable ? "" : ", not stable"))"
    }
}

/// Summary of a tally for the swap report.
public struct TallySummary: Sendable, Codable {
    public var requests: Int
    public var errors: Int
    public var latency: Percentiles

    init(_ t: Tally) {
        requests = t.ok + t.errors
        errors = t.errors
        latency = Percentiles(t.corrected)
    }
}

public struct SwapReport: Sendable, Codable {
    public var scene: String
    public var every: Double
    public var swaps: Int
    public var uploads: Int
    public var labelChanges: Int
    public var failed: Int
    public var adminSeconds: Percentiles?
    public var steady: TallySummary
    public var inSwap: TallySummary
    public var events: [SwapEvent]
}

public struct Spread: Sendable, Codable {
    public var min: Double, mean: Double, max: Double
    init(_ values: [Double]) {
        min = values.min() ?? 0
        max = values.max() ?? 0
        mean = values.isEmpty ? 0 : values.reduce(0, +) / Double(values.count)
    }
}

/// Everything a run reports (also the `--json` document).
public struct LoadReport: Sendable, Codable {
    public var url: String
    public var mode: String
    public var rate: Double?
    public var arrival: String?
    public var connections: Int
    public var streams: Int
    public var threads: Int
    public var warmUp: Double
    public var check: String
    public var scenes: [String]
    public var requestBodies: Int
    /// Measurement: requests completed (success or error) in `seconds`, and their rate.
    public var seconds: Double
    public var requests: Int
    public var ok: Int
    public var errors: Int
    public var sent: Int
    public var throughput: Double
    /// From the intended send time (open loop) — for closed loop the same as the service time.
    public var latency: Percentiles
    public var serviceTime: Percentiles
    public var sendLag: Percentiles?
    public var heldBack: Int?
    /// Connection set-up, milliseconds (min/mean/max over connections).
    public var connect: Spread
    public var tlsHandshake: Spread?
    public var toFirstSettings: Spread
    /// HTTP/2 frame bytes (before TLS), and response bodies.
    public var bytesReceived: Int
    public var bytesSent: Int
    public var responseBodyBytes: Int
    public var errorKinds: [String: Int]
    public var statuses: [String: Int]
    public var headVersions: [String: Int]
    /// Every phase (warm-up, measurement, drain): what was sent, and how it ended.
    public var totalSent: Int
    public var totalOK: Int
    public var totalErrors: Int
    public var sweep: [SweepRow]?
    public var swap: SwapReport?
    public var interrupted: Bool
    public var notes: [String]
    public var warnings: [String]

    static func make(settings s: LoadSettings, pool: RequestPool, catalog: [SceneInfo]?, stats: WindowStats, seconds: Double,
                     timings: [ConnectionTiming], totals: (Int, Int, Int), sweep: [SweepRow], swapEvents: [SwapEvent],
                     interrupted: Bool, notes: [String], warnings: [String]) -> LoadReport {
        let requests = stats.all.ok + stats.all.errors
        var swap: SwapReport?
        if let spec = s.swap {
            let done = swapEvents.filter { $0.error == nil }
            var admin = Latency.histogram()
            for e in swapEvents { Latency.record(&admin, UInt64(e.seconds * 1e9)) }
            swap = SwapReport(scene: pool.scenes.first ?? "", every: spec.every, swaps: swapEvents.count,
                              uploads: done.filter { $0.action == "upload" }.count, labelChanges: done.filter { $0.action == "label" }.count,
                              failed: swapEvents.count - done.count, adminSeconds: swapEvents.isEmpty ? nil : Percentiles(admin),
                              steady: TallySummary(stats.steady), inSwap: TallySummary(stats.inSwap), events: swapEvents)
        }
        let open = s.mode.rate != nil
        return LoadReport(
            url: s.target.origin + s.target.path, mode: open ? "open" : "closed", rate: s.mode.rate,
            arrival: open ? s.mode.arrivalOrConstant.rawValue : nil, connections: s.connections, streams: s.streams, threads: s.threads,
            warmUp: s.warmUp, check: s.check.rawValue, scenes: pool.scenes, requestBodies: pool.requests.count,
            seconds: seconds, requests: requests, ok: stats.all.ok, errors: stats.all.errors, sent: stats.sent,
            throughput: seconds > 0 ? Double(requests) / seconds : 0,
            latency: Percentiles(stats.all.corrected), serviceTime: Percentiles(stats.all.uncorrected),
            sendLag: open ? Percentiles(stats.sendLag) : nil, heldBack: open ? stats.heldBack : nil,
            connect: Spread(timings.map { $0.connect * 1e3 }),
            tlsHandshake: s.target.tls ? Spread(timings.map { $0.tlsHandshake * 1e3 }) : nil,
            toFirstSettings: Spread(timings.map { $0.toSettings * 1e3 }),
            bytesReceived: timings.reduce(0) { $0 + $1.bytesReceived }, bytesSent: timings.reduce(0) { $0 + $1.bytesSent },
            responseBodyBytes: stats.responseBytes, errorKinds: stats.errorKinds,
            statuses: Dictionary(uniqueKeysWithValues: stats.statuses.map { (String($0.key), $0.value) }),
            headVersions: stats.versions, totalSent: totals.0, totalOK: totals.1, totalErrors: totals.2,
            sweep: sweep.isEmpty ? nil : sweep, swap: swap, interrupted: interrupted, notes: notes, warnings: warnings)
    }

    // MARK: - Text

    public func text() -> String {
        var out = ""
        func line(_ s: String = "") { out += s + "\n" }
        let shape = "\(connections) connection\(connections == 1 ? "" : "s") × \(streams) stream\(streams == 1 ? "" : "s") on \(threads) thread\(threads == 1 ? "" : "s")"
        let how = rate.map { "open loop, \(Format.count($0)) req/s \(arrival ?? "constant")" } ?? "closed loop"
        line("scenescore load \(url): \(how), \(shape)\(warmUp > 0 ? ", \(Format.seconds(warmUp)) warm-up" : "")")
        line("  scenes        \(scenes.joined(separator: ", ")) (\(requestBodies) pre-encoded bodies), check: \(check)")
        if interrupted { line("  INTERRUPTED: partial results") }
        if let sweep {
            line()
            line(Format.table(header: ["step", "value", "windows", "stable", "req/s", "errors", "p50", "p90", "p99", "p99.9", "max"],
                              rows: sweep.map { r in
                                  [String(r.step), "\(r.dimension) \(Format.value(r.value))", String(r.windows), r.stable ? "yes" : "no",
                                   Format.count(r.throughput), String(r.errors), Format.ms(r.latency.p50), Format.ms(r.latency.p90),
                                   Format.ms(r.latency.p99), Format.ms(r.latency.p999), Format.ms(r.latency.max)]
                              }))
            line()
        }
        line("  requests      \(Format.count(Double(requests))) in \(Format.seconds(seconds)): \(Format.count(throughput)) req/s, "
             + "\(ok) ok, \(errors) errors (\(Format.percent(requests > 0 ? Double(errors) / Double(requests) : 0)))")
        let columns = ["", "p50", "p90", "p99", "p99.9", "p99.99", "max", "mean"]
        func row(_ name: String, _ p: Percentiles) -> [String] {
            [name, Format.ms(p.p50), Format.ms(p.p90), Format.ms(p.p99), Format.ms(p.p999), Format.ms(p.p9999), Format.ms(p.max), Format.ms(p.mean)]
        }
        var rows = [row(rate != nil ? "latency (from intended send)" : "latency", latency)]
        if rate != nil { rows.append(row("service time (uncorrected)", serviceTime)) }
        if let sendLag, sendLag.count > 0 { rows.append(row("send lag (tool)", sendLag)) }
        line(Format.table(header: columns, rows: rows, indent: "  "))
        if let heldBack, heldBack > 0 { line("  held back     \(heldBack) requests waited for a free stream (counted from their intended send time)") }
        var setup = "  connections   TCP connect \(Format.spread(connect))"
        if let tlsHandshake { setup += ", TLS handshake \(Format.spread(tlsHandshake))" }
        setup += ", to first SETTINGS \(Format.spread(toFirstSettings))"
        line(setup)
        line("  traffic       received \(Format.bytes(bytesReceived)), sent \(Format.bytes(bytesSent)) (HTTP/2 frames); response bodies \(Format.bytes(responseBodyBytes))")
        line("  all phases    sent \(totalSent), ok \(totalOK), errors \(totalErrors)")
        if !statuses.isEmpty {
            line("  statuses      " + statuses.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: ", "))
        }
        if !headVersions.isEmpty {
            line("  head versions " + headVersions.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: ", "))
        }
        if !errorKinds.isEmpty {
            line("  errors by kind")
            for (kind, count) in errorKinds.sorted(by: { $0.value > $1.value }) { line("    \(count)  \(kind)") }
        }
        if let swap {
            line("  swaps         \(swap.swaps) of scene '\(swap.scene)' every \(Format.seconds(swap.every)): \(swap.uploads) uploads, "
                 + "\(swap.labelChanges) label changes, \(swap.failed) failed"
                 + (swap.adminSeconds.map { "; admin answer p50 \(Format.ms($0.p50)), max \(Format.ms($0.max))" } ?? ""))
            line(Format.table(header: ["", "requests", "errors", "p50", "p99", "max"], rows: [
                ["steady state", String(swap.steady.requests), String(swap.steady.errors), Format.ms(swap.steady.latency.p50),
                 Format.ms(swap.steady.latency.p99), Format.ms(swap.steady.latency.max)],
                ["inside swap windows", String(swap.inSwap.requests), String(swap.inSwap.errors), Format.ms(swap.inSwap.latency.p50),
                 Format.ms(swap.inSwap.latency.p99), Format.ms(swap.inSwap.latency.max)],
            ], indent: "  "))
            for e in swap.events where e.error != nil { line("    swap at \(Format.seconds(e.at)) to \(e.version) failed: \(e.error!)") }
        }
        for n in notes { line("  note: \(n)") }
        for w in warnings { line("  WARNING: \(w)") }
        return out
    }

    // MARK: - JSON and CSV

    public func json() -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let data = (try? encoder.encode(self)) ?? Data("{}".utf8)
        return String(decoding: data, as: UTF8.self) + "\n"
    }

    public func csv() -> String {
        let header = ["step", "dimension", "value", "mode", "connections", "streams", "rate", "seconds", "requests", "errors",
                      "throughput", "p50_ms", "p90_ms", "p99_ms", "p999_ms", "p9999_ms", "max_ms",
                      "service_p50_ms", "service_p99_ms", "windows", "stable"]
        var lines = [header.joined(separator: ",")]
        func n(_ x: Double) -> String { String(format: "%.4f", x) }
        if let sweep {
            for r in sweep {
                lines.append([String(r.step), r.dimension, Format.value(r.value), mode, String(r.connections), String(r.streams),
                              r.rate.map { n($0) } ?? "", n(r.seconds), String(r.requests), String(r.errors), n(r.throughput),
                              n(r.latency.p50), n(r.latency.p90), n(r.latency.p99), n(r.latency.p999), n(r.latency.p9999),
                              n(r.latency.max), n(r.serviceTime.p50), n(r.serviceTime.p99), String(r.windows), String(r.stable)]
                    .joined(separator: ","))
            }
        } else {
            lines.append(["1", "", "", mode, String(connections), String(streams), rate.map { n($0) } ?? "", n(seconds),
                          String(requests), String(errors), n(throughput), n(latency.p50), n(latency.p90), n(latency.p99),
                          n(latency.p999), n(latency.p9999), n(latency.max), n(serviceTime.p50), n(serviceTime.p99), "", ""]
                .joined(separator: ","))
        }
        return lines.joined(separator: "\n") + "\n"
    }
}

// MARK: - HdrHistogram percentile distribution

/// The `.hgrm` percentile distribution (HdrHistogram's `outputPercentileDistribution`, values
/// in milliseconds), which HdrHistogram's plotters read.
public func percentileDistribution(_ h: LatencyHistogram) -> String {
    var text = ""
    h.outputPercentileDistribution(to: &text, outputValueUnitScalingRatio: 1e6, percentileTicksPerHalfDistance: 5)
    return text
}

// MARK: - Formatting

enum Format {
    static func ms(_ v: Double) -> String {
        if v >= 1000 { return String(format: "%.2f s", v / 1000) }
        if v >= 100 { return String(format: "%.0f ms", v) }
        if v >= 10 { return String(format: "%.1f ms", v) }
        if v >= 1 { return String(format: "%.2f ms", v) }
        return String(format: "%.0f µs", v * 1000)
    }

    static func count(_ v: Double) -> String {
        let rounded = Int(v.rounded())
        if v < 100 && v != v.rounded() { return String(format: "%.1f", v) }
        var digits = String(abs(rounded))
        var groups: [String] = []
        while digits.count > 3 {
            groups.insert(String(digits.suffix(3)), at: 0)
            digits = String(digits.dropLast(3))
        }
        groups.insert(digits, at: 0)
        return (rounded < 0 ? "-" : "") + groups.joined(separator: ",")
    }

    static func value(_ v: Double) -> String { v == v.rounded() ? String(Int(v)) : String(v) }
    static func seconds(_ v: Double) -> String { v >= 1 ? String(format: "%.2f s", v) : String(format: "%.0f ms", v * 1000) }
    static func percent(_ v: Double) -> String { String(format: "%.2f %%", v * 100) }

    static func bytes(_ n: Int) -> String {
        let v = Double(n)
        if v >= 1e9 { return String(format: "%.2f GB", v / 1e9) }
        if v >= 1e6 { return String(format: "%.2f MB", v / 1e6) }
        if v >= 1e3 { return String(format: "%.1f kB", v / 1e3) }
        return "\(n) B"
    }

    static func spread(_ s: Spread) -> String {
        String(format: "%.2f/%.2f/%.2f ms", s.min, s.mean, s.max) + " (min/mean/max)"
    }

    static func pad(_ s: String, _ width: Int) -> String {
        s.count >= width ? s : String(repeating: " ", count: width - s.count) + s
    }

    /// A plain-text table: first column left-aligned, the others right-aligned.
    static func table(header: [String], rows: [[String]], indent: String = "") -> String {
        let all = [header] + rows
        let widths = header.indices.map { c in all.map { $0[c].count }.max() ?? 0 }
        return all.map { row in
            indent + row.enumerated().map { c, cell in
                c == 0 ? cell + String(repeating: " ", count: widths[c] - cell.count) : pad(cell, widths[c])
            }.joined(separator: "  ")
        }.joined(separator: "\n")
    }
}
