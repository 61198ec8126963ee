import ArgumentParser
import Foundation
import LoadTool

/// `scenescore load URL`: the bundled HTTP/2 load generator (Sources/LoadTool).
struct LoadCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "load",
        abstract: "Load-test a SceneScore server over HTTP/2 (TLS or h2c): closed or open loop, sweeps, hot swaps.",
        discussion: """
        Closed loop (like h2load): -c connections × -m streams kept busy, on -t threads (one event loop each; \
        every connection pinned to one). Open loop (--rate): requests at a constant or Poisson rate whatever \
        the server does; latency counts from each request's intended send time (coordinated-omission \
        correction, as wrk2), reported beside the uncorrected service time.

        Requests are generated for the scenes of GET /v1/scenes (--scene NAME[:WEIGHT], --candidates N | A-B | \
        A,B,C | N:W,…, --seed) or replayed from binary request files (--replay FILE|DIR). Every response is \
        checked (--check fast: status, request id, head-version header = body, count of scores).

        The report goes to standard output (text, --json or --csv); progress to standard error (a live line \
        on a terminal). Ctrl-C stops the run and prints the partial report (exit 130). A failure to start \
        (bad URL, refused connection, TLS, unknown scene) is one line on standard error and exit 1.
        """)

    @Argument(help: "https://HOST:PORT[/PATH] (TLS, ALPN h2) or http://… (h2c). PATH defaults to /v1/score.")
    var url: String

    @Option(name: [.customShort("c"), .customLong("connections")], help: "Connections.")
    var connections = 1
    @Option(name: [.customShort("m"), .customLong("streams"), .customLong("max-concurrent-streams")],
            help: "Streams in flight per connection (closed loop), or at most (open loop).")
    var streams = 1
    @Option(name: [.customShort("t"), .customLong("threads")], help: "Threads (event loops).")
    var threads = 1
    @Option(name: [.customShort("D"), .customLong("duration")], help: "Measurement length: 10s, 500ms, 2m (default 10s without -n).")
    var duration: String?
    @Option(name: [.customShort("n"), .customLong("requests")], help: "Requests to measure, instead of a duration.")
    var requests: Int?
    @Option(name: [.customLong("warm-up"), .customLong("warm-up-time")], help: "Load before measuring (not counted in the report's latencies).")
    var warmUp: String?
    @Option(help: "Open loop: requests per second over all connections.")
    var rate: Double?
    @Option(help: "Open loop arrivals: constant or poisson.")
    var arrival = "constant"
    @Option(help: "Open loop: the shortest sleep between sends; requests due within it go out together (default: 16 requests' worth, 50µs…200µs).")
    var tick: String?

    @Option(name: .customLong("scene"), help: "A scene to load, NAME or NAME:WEIGHT (repeat, or comma-separate; default: every servable scene).")
    var scenes: [String] = []
    @Option(help: "Candidates per request: N, A-B (uniform), A,B,C or N:WEIGHT,….")
    var candidates = "16"
    @Option(help: "Distinct pre-encoded request bodies per scene.")
    var bodies = 64
    @Option(help: "Seed of the generated requests and picks.")
    var seed: UInt64 = 1
    @Option(name: .customLong("replay"), help: "Send binary requests (Proto/WIRE.md) from this file, or every *.bin in this directory (repeatable).")
    var replay: [String] = []
    @Option(name: [.customShort("H"), .customLong("header")], help: "An extra request header, 'name: value' (repeatable).")
    var headers: [String] = []
    @Option(help: "Response checks: none, status, fast (header, ids, counts, head version) or full (Wire's strict decoder too).")
    var check = "fast"
    @Option(help: "Per-request timeout.")
    var timeout = "10s"

    @Option(help: "CA certificate (PEM) to verify the server (default: the system's).")
    var cacert: String?
    @Flag(name: [.customShort("k"), .customLong("insecure")], help: "Do not verify the server's certificate.")
    var insecure = false
    @Option(help: "TLS server name (SNI and verification), when it differs from the URL's host.")
    var serverName: String?
    @Option(help: "Client certificate (PEM).")
    var cert: String?
    @Option(help: "Client private key (PEM).")
    var key: String?

    @Option(help: "Sweep: streams:1,2,4,8 | connections:1,2,4 | rate:1000,2000,4000 (one row per step).")
    var sweep: String?
    @Option(help: "Sweep: length of one measurement window.")
    var window = "2s"
    @Option(help: "Sweep: two windows agree when throughput and p50 differ by at most this (0.1 or 10%).")
    var tolerance = "10%"
    @Option(help: "Sweep: windows per step at most.")
    var maxWindows = 6

    @Option(help: "Swap scenario: push the --head files in turn this often (e.g. 200ms) through the admin API.")
    var swapEvery: String?
    @Option(name: .customLong("head"), help: "Swap scenario: a head file (.safetensors; repeat: A, B).")
    var heads: [String] = []
    @Option(help: "Swap scenario: the admin listener (default $SCENESCORE_ADMIN_URL or https://localhost:8444).")
    var adminURL: String?
    @Option(help: "Swap scenario: file whose first line is the admin token (default $SCENESCORE_ADMIN_TOKEN).")
    var tokenFile: String?
    @Option(help: "Swap scenario: CA certificate for the admin listener (default --cacert).")
    var adminCacert: String?
    @Option(help: "Swap scenario: a swap window lasts until this long after the admin API answered.")
    var swapWindow = "100ms"

    @Flag(help: "Print the report as JSON.")
    var json = false
    @Flag(help: "Print the report as CSV (one row; one per sweep step).")
    var csv = false
    @Option(help: "Write the HdrHistogram percentile distribution (.hgrm, corrected; FILE.uncorrected.hgrm beside it).")
    var hgrm: String?
    @Option(help: "Write a latency-by-percentile plot (SVG): corrected and uncorrected, or one line per sweep step.")
    var plot: String?
    @Option(help: "Progress: auto (live line on a terminal, plain lines otherwise), plain or off.")
    var progress = "auto"
    @Flag(name: [.customShort("q"), .customLong("quiet")], help: "No progress output.")
    var quiet = false

    func run() async throws {
        let settings: LoadSettings
        do {
            settings = try makeSettings()
            try settings.validate()
        } catch let error as LoadError {
            fail(error.message)
        }
        let stop = StopSignal()
        signal(SIGINT, SIG_IGN)
        let interrupts = DispatchSource.makeSignalSource(signal: SIGINT, queue: .global())
        let count = StopCount()
        interrupts.setEventHandler {
            if count.next() > 1 { Foundation.exit(130) }  // a second Ctrl-C: leave at once
            FileHandle.standardError.write(Data("\nscenescore load: interrupted; finishing requests in flight (Ctrl-C again to quit now)\n".utf8))
            stop.stop()
        }
        interrupts.resume()

        let result: LoadResult
        do {
            result = try await LoadRunner(settings: settings).run(stop: stop)
        } catch let error as LoadError {
            fail(error.message)
        } catch {
            fail("\(error)")
        }
        interrupts.cancel()
        let report = result.report
        if json {
            print(report.json(), terminator: "")
        } else if csv {
            print(report.csv(), terminator: "")
        } else {
            print(report.text(), terminator: "")
        }
        if let hgrm {
            write(percentileDistribution(result.corrected), to: hgrm)
            write(percentileDistribution(result.uncorrected), to: Self.uncorrectedPath(hgrm))
        }
        if let plot {
            var series: [PercentilePlot.Series]
            if result.steps.isEmpty {
                series = [PercentilePlot.Series(label: report.rate != nil ? "corrected" : "latency", histogram: result.corrected)]
                if report.rate != nil { series.append(PercentilePlot.Series(label: "uncorrected", histogram: result.uncorrected, dashed: true)) }
            } else {
                series = result.steps.map { PercentilePlot.Series(label: $0.label, histogram: $0.corrected) }
            }
            write(PercentilePlot.svg(title: "scenescore load \(report.url): latency by percentile", series: series), to: plot)
        }
        if report.interrupted { throw ExitCode(130) }
    }

    static func uncorrectedPath(_ path: String) -> String {
        path.hasSuffix(".hgrm") ? String(path.dropLast(5)) + ".uncorrected.hgrm" : path + ".uncorrected"
    }

    private func write(_ text: String, to path: String) {
        do {
            try text.write(toFile: path, atomically: true, encoding: .utf8)
        } catch {
            FileHandle.standardError.write(Data("scenescore load: cannot write \(path): \(error.localizedDescription)\n".utf8))
        }
    }

    private func fail(_ message: String) -> Never {
        FileHandle.standardError.write(Data("scenescore load: \(message)\n".utf8))
        Foundation.exit(1)
    }

    private func seconds(_ text: String, _ flag: String) throws -> Double {
        guard let v = parseDuration(text) else { throw LoadError("bad \(flag) '\(text)': expected a duration such as 10s, 200ms or 2m") }
        return v
    }

    func makeSettings() throws -> LoadSettings {
        var s = LoadSettings(target: try LoadTarget.parse(url))
        s.connections = connections
        s.streams = streams
        s.threads = threads
        s.requests = requests
        s.duration = try duration.map { try seconds($0, "--duration") } ?? (requests == nil ? 10 : nil)
        s.warmUp = try warmUp.map { try seconds($0, "--warm-up") } ?? 0
        s.timeout = try seconds(timeout, "--timeout")
        if let rate {
            guard let a = LoadMode.Arrival(rawValue: arrival) else { throw LoadError("bad --arrival '\(arrival)': constant or poisson") }
            s.mode = .open(rate: rate, arrival: a)
        }
        s.tick = try tick.map { try seconds($0, "--tick") }
        guard let level = CheckLevel(rawValue: check) else { throw LoadError("bad --check '\(check)': none, status, fast or full") }
        s.check = level
        if !replay.isEmpty {
            guard scenes.isEmpty else { throw LoadError("--scene and --replay exclude each other (replayed requests name their scenes)") }
            s.source = .replay(paths: replay)
        } else {
            let weights = try scenes.flatMap { $0.split(separator: ",").map(String.init) }.map { try SceneWeight.parse($0) }
            s.source = .generated(scenes: weights, candidates: try CandidateDistribution.parse(candidates), bodies: bodies)
        }
        s.seed = seed
        s.headers = try headers.map { h in
            guard let colon = h.firstIndex(of: ":"), colon != h.startIndex else { throw LoadError("bad --header '\(h)': expected 'name: value'") }
            return (name: h[..<colon].trimmingCharacters(in: .whitespaces).lowercased(),
                    value: h[h.index(after: colon)...].trimmingCharacters(in: .whitespaces))
        }
        s.tls.caFile = cacert
        s.tls.verify = !insecure
        s.tls.serverName = serverName
        s.tls.certificate = cert
        s.tls.key = key
        if let sweep {
            var spec = try SweepSpec.parse(sweep)
            spec.window = try seconds(window, "--window")
            let t = tolerance.hasSuffix("%") ? Double(tolerance.dropLast()).map { $0 / 100 } : Double(tolerance)
            guard let t, t > 0, t < 1 else { throw LoadError("bad --tolerance '\(tolerance)': a fraction such as 0.1 or 10%") }
            spec.tolerance = t
            guard maxWindows >= 2 else { throw LoadError("--max-windows must be at least 2") }
            spec.maxWindows = maxWindows
            s.sweep = spec
            if duration == nil && requests == nil { s.duration = nil }
        }
        if let swapEvery {
            let env = ProcessInfo.processInfo.environment
            var token = env["SCENESCORE_ADMIN_TOKEN"]
            if let tokenFile {
                guard let text = try? String(contentsOfFile: tokenFile, encoding: .utf8) else { throw LoadError("cannot read token file \(tokenFile)") }
                token = text.split(whereSeparator: \.isNewline).first.map { $0.trimmingCharacters(in: .whitespaces) }
            }
            var spec = SwapSpec(every: try seconds(swapEvery, "--swap-every"), heads: heads,
                                adminURL: adminURL ?? env["SCENESCORE_ADMIN_URL"] ?? "https://localhost:8444", token: token,
                                adminCACert: adminCacert ?? env["SCENESCORE_ADMIN_CACERT"])
            spec.windowTail = try seconds(swapWindow, "--swap-window")
            s.swap = spec
        } else if !heads.isEmpty {
            throw LoadError("--head is for the swap scenario: give --swap-every too")
        }
        guard let mode = ProgressMode(rawValue: progress) else { throw LoadError("bad --progress '\(progress)': auto, plain or off") }
        s.progress = quiet ? .off : mode
        return s
    }
}

/// Counts Ctrl-Cs (the signal handler runs on a global queue).
private final class StopCount: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    func next() -> Int {
        lock.lock()
        defer { lock.unlock() }
        count += 1
        return count
    }
}
