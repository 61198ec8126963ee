import Foundation
import H2
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// Set from a signal handler (Ctrl-C): the run stops issuing, drains and reports what it has.
public final class StopSignal: Sendable {
    private let flag = NIOLockedValueBox(false)
    public init() {}
    public func stop() { flag.withLockedValue { $0 = true } }
    public var isStopped: Bool { flag.withLockedValue { $0 } }
}

/// A worker reached from the runner's task: every call runs on the worker's event loop.
struct WorkerHandle: Sendable {
    let eventLoop: any EventLoop
    let bound: NIOLoopBound<LoadWorker>

    func run<T: Sendable>(_ body: @escaping @Sendable (LoadWorker) -> T) async throws -> T {
        let bound = self.bound
        return try await eventLoop.submit { body(bound.value) }.get()
    }

    func future<T: Sendable>(_ body: @escaping @Sendable (LoadWorker) -> EventLoopFuture<T>) async throws -> T {
        let bound = self.bound
        return try await eventLoop.flatSubmit { body(bound.value) }.get()
    }
}

/// Runs one load test (or sweep) and returns its result. Progress goes to `progress`.
public struct LoadRunner: Sendable {
    public let settings: LoadSettings
    private let progress: ProgressPrinter

    public init(settings: LoadSettings, progressTo sink: @escaping @Sendable (String, Bool) -> Void = ProgressPrinter.standardError) {
        self.settings = settings
        progress = ProgressPrinter(mode: settings.progress, sink: sink)
    }

    public func run(stop: StopSignal) async throws -> LoadResult {
        try settings.validate()
        let tls = try makeTLS()
        let swap = try settings.swap.map { spec throws(LoadError) in try SwapDriver(spec: spec, fallbackCA: settings.tls.caFile) }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: settings.threads)
        let loops = Array(group.makeIterator())
        var workers: [WorkerHandle] = []
        let s = settings
        for (i, loop) in loops.enumerated() {
            let bound = try await loop.submit {
                let worker = LoadWorker(index: i, eventLoop: loop, target: s.target, check: s.check, swapEnabled: s.swap != nil,
                                        headers: s.headers, seed: s.seed)
                worker.tickOverride = s.tick.map { UInt64($0 * 1e9) }
                return NIOLoopBound(worker, eventLoop: loop)
            }.get()
            workers.append(WorkerHandle(eventLoop: loop, bound: bound))
        }
        do {
            let result = try await runPhases(workers: workers, tls: tls, swap: swap, group: group, stop: stop)
            await shutdown(workers, group)
            return result
        } catch {
            await shutdown(workers, group)
            throw error
        }
    }

    private func shutdown(_ workers: [WorkerHandle], _ group: MultiThreadedEventLoopGroup) async {
        for w in workers { _ = try? await w.run { $0.closeAll() } }
        try? await Task.sleep(nanoseconds: 50_000_000)
        try? await group.shutdownGracefully()
    }

    private func makeTLS() throws(LoadError) -> TLSContext? {
        guard settings.target.tls else { return nil }
        if let ca = settings.tls.caFile, !FileManager.default.isReadableFile(atPath: ca) {
            throw LoadError("cannot read CA file \(ca)")
        }
        do {
            return try TLSContext(trustedCAPath: settings.tls.caFile, verify: settings.tls.verify,
                                  certificatePath: settings.tls.certificate, keyPath: settings.tls.key)
        } catch {
            throw LoadError("cannot set up TLS: \(error)")
        }
    }

    /// The streams a connection needs: the most any step uses.
    private var maxStreams: Int {
        if let sweep = settings.sweep, sweep.dimension == .streams { return Int(sweep.values.max()!) }
        return settings.streams
    }

    private var maxConnections: Int {
        if let sweep = settings.sweep, sweep.dimension == .connections { return Int(sweep.values.max()!) }
        return settings.connections
    }

    // MARK: - Phases

    private func runPhases(workers: [WorkerHandle], tls: TLSContext?, swap: SwapDriver?, group: MultiThreadedEventLoopGroup,
                           stop: StopSignal) async throws -> LoadResult {
        let s = settings
        // 1. Connections, each pinned to one worker's loop (connection i on worker i mod T).
        let connections = maxConnections, streams = maxStreams
        let serverName = s.tls.serverName
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            for (w, worker) in workers.enumerated() {
                let indices = Array(stride(from: w, to: connections, by: workers.count))
                tasks.addTask {
                    try await worker.future { $0.connect(indices: indices, tls: tls, serverName: serverName, maxStreams: streams, timeout: s.timeout) }
                }
            }
            try await tasks.waitForAll()
        }
        var notes: [String] = []
        let timings = try await gather(workers) { $0.timings() }.flatMap { $0 }
        if let serverMax = timings.map(\.serverMaxStreams).filter({ $0 > 0 }).min(), serverMax < streams {
            notes.append("the server allows \(serverMax) concurrent streams per connection: -m \(streams) is capped at \(serverMax)")
        }

        // 2. What to send: shaped by GET /v1/scenes (needed to generate, and to check replayed responses).
        var catalog: [SceneInfo]?
        let needCatalog: Bool
        switch s.source {
        case .generated: needCatalog = true
        case .replay: needCatalog = s.check == .fast || s.check == .full
        }
        if needCatalog {
            let answer = try await workers[0].future { $0.fetchCatalog() }
            if answer.status == 200 {
                catalog = try SceneInfo.parseCatalog(answer.body)
            } else if case .generated = s.source {
                throw LoadError("GET \(s.target.origin)/v1/scenes answered \(answer.status): is it a SceneScore server? (or replay requests with --replay)")
            } else {
                notes.append("GET /v1/scenes answered \(answer.status): output counts of responses are not checked")
            }
        }
        let pool: RequestPool
        switch s.source {
        case .generated(let scenes, let candidates, let bodies):
            let chosen = scenes.isEmpty && swap != nil ? [SceneWeight(scene: swap!.scene, weight: 1)] : scenes
            pool = try RequestPool.generate(catalog: catalog ?? [], chosen: chosen, candidates: candidates, bodies: bodies, seed: s.seed)
        case .replay(let paths):
            pool = try RequestPool.replay(paths: paths, catalog: catalog)
        }
        for w in workers { _ = try await w.run { $0.setPool(pool) } }

        // 3. Load.
        // The admin API must answer before the load starts (one clear line if it does not).
        var admin: (driver: SwapDriver, client: H2Client)?
        if let swap { admin = (swap, try await swap.connectAndCheck(group: group)) }
        let measurement = try await measure(workers: workers, swap: admin, stop: stop)
        let final = measurement.final
        var warnings = measurement.warnings
        let endTimings = try await gather(workers) { $0.timings() }.flatMap { $0 }
        let totals = try await gather(workers) { w in (w.totalSent, w.totalOK, w.totalErrors) }
        if s.sweep == nil { warnings += openLoopWarnings(final.stats, seconds: final.seconds, rate: s.mode.rate) }
        let report = LoadReport.make(settings: s, pool: pool, catalog: catalog, stats: final.stats, seconds: final.seconds,
                                     timings: endTimings, totals: (totals.map(\.0).reduce(0, +), totals.map(\.1).reduce(0, +), totals.map(\.2).reduce(0, +)),
                                     sweep: measurement.rows, swapEvents: measurement.swapEvents, interrupted: stop.isStopped,
                                     notes: notes, warnings: warnings)
        return LoadResult(report: report, corrected: final.stats.all.corrected, uncorrected: final.stats.all.uncorrected,
                          steps: measurement.stepHistograms)
    }

    private func gather<T: Sendable>(_ workers: [WorkerHandle], _ body: @escaping @Sendable (LoadWorker) -> T) async throws -> [T] {
        var out: [T] = []
        for w in workers { out.append(try await w.run(body)) }
        return out
    }

    private func rotateAll(_ workers: [WorkerHandle]) async throws -> WindowStats {
        WindowStats.merged(try await gather(workers) { $0.rotate() })
    }

    /// Starts issuing on every worker: the active connections are the first `connections`
    /// (i on worker i mod T); rate and request budget are split in proportion.
    private func startAll(_ workers: [WorkerHandle], streams: Int, connections: Int, rate: Double?, budget: Int?) async throws {
        let t = workers.count
        let active = (0..<t).map { w in connections > w ? (connections - w + t - 1) / t : 0 }  // i < connections, i mod t == w
        var budgets: [Int?] = Array(repeating: nil, count: t)
        if let budget {
            var left = budget
            for w in 0..<t {
                let share = w == t - 1 ? left : budget * active[w] / max(connections, 1)
                budgets[w] = share
                left -= share
            }
        }
        let mode = settings.mode
        for (w, worker) in workers.enumerated() {
            let rateShare = (rate ?? 0) * Double(active[w]) / Double(max(connections, 1))
            let workerMode: LoadMode = rate.map { .open(rate: $0, arrival: mode.arrivalOrConstant) } ?? .closed
            let budget = budgets[w], count = active[w]
            _ = try await worker.run { $0.start(mode: workerMode, workerRate: rateShare, streams: streams, connections: count, budget: budget) }
        }
    }

    struct Measured {
        var stats: WindowStats
        var seconds: Double
    }

    struct Measurement {
        var final: Measured
        var rows: [SweepRow] = []
        var stepHistograms: [(label: String, corrected: LatencyHistogram)] = []
        var swapEvents: [SwapEvent] = []
        var warnings: [String] = []
    }

    private func measure(workers: [WorkerHandle], swap: (driver: SwapDriver, client: H2Client)?,
                         stop: StopSignal) async throws -> Measurement {
        let s = settings
        if let sweep = s.sweep { return try await runSweep(sweep, workers: workers, stop: stop) }

        let rate = s.mode.rate
        if s.warmUp > 0 {
            try await startAll(workers, streams: s.streams, connections: s.connections, rate: rate, budget: nil)
            _ = await sleep(seconds: s.warmUp, stop: stop, tick: { elapsed in try? await self.progressTick(workers, elapsed: elapsed, phase: "warm-up") })
            if s.requests != nil {
                // -n counts exactly the requests sent after the warm-up: let the warm-up's finish first.
                _ = try await gather(workers) { $0.stop() }
                try await drain(workers)
            }
            _ = try await rotateAll(workers)
        }
        // With -n the budget starts now, after the warm-up.
        if s.warmUp <= 0 || s.requests != nil {
            try await startAll(workers, streams: s.streams, connections: s.connections, rate: rate, budget: s.requests)
        }
        let started = monotonicNanos()

        // The swap scenario runs beside the load, for the whole measurement.
        let swapTask: Task<[SwapEvent], Never>? = swap.map { swap in
            Task { await runSwaps(swap.driver, client: swap.client, workers: workers, started: started, stop: stop) }
        }

        let doneCount = NIOLockedValueBox(0)
        if s.requests != nil {
            for w in workers {
                let future = try await w.run { $0.whenDone() }
                future.whenComplete { _ in doneCount.withLockedValue { $0 += 1 } }
            }
        }
        let deadline = s.duration.map { started + UInt64($0 * 1e9) } ?? .max
        var nextTick = started + UInt64(s.progressInterval * 1e9)
        var warnings: [String] = []
        while !stop.isStopped {
            let now = monotonicNanos()
            if now >= deadline { break }
            if s.requests != nil && doneCount.withLockedValue({ $0 }) == workers.count { break }
            if try await gather(workers, { $0.openConnections }).reduce(0, +) == 0 {
                warnings.append(String(format: "every connection was closed by %.2f s: the run ended early", Double(now - started) / 1e9))
                break
            }
            if now >= nextTick {
                try await progressTick(workers, elapsed: Double(now - started) / 1e9, phase: nil)
                nextTick += UInt64(s.progressInterval * 1e9)
            }
            let wake = min(deadline, nextTick, now + (s.requests != nil ? 5_000_000 : 50_000_000))
            if wake > now { try? await Task.sleep(nanoseconds: wake - now) }
        }
        _ = try await gather(workers) { $0.stop() }
        var ended = monotonicNanos()
        if s.requests != nil, !stop.isStopped {
            let last = try await gather(workers) { $0.lastCompletion }.max() ?? ended
            ended = max(started + 1, last)
        }
        var window = try await rotateAll(workers)
        let seconds = Double(ended - started) / 1e9
        var swapEvents: [SwapEvent] = []
        if let swapTask {
            swapTask.cancel()
            swapEvents = await swapTask.value
            await swap?.client.close()
        }
        // Drain: what is still in flight completes (or times out); its latencies belong to the run.
        try await drain(workers)
        window.add(try await rotateAll(workers))
        progress.finish()
        let lost = try await gather(workers) { $0.lostConnections }.flatMap { $0 }
        if !lost.isEmpty {
            let reasons = Dictionary(lost.map { ($0, 1) }, uniquingKeysWith: +).map { "\($0.value)× \($0.key)" }.sorted()
            warnings.append("\(lost.count) of \(s.connections) connections closed during the run (\(reasons.joined(separator: "; ")))")
        }
        return Measurement(final: Measured(stats: window, seconds: seconds), swapEvents: swapEvents, warnings: warnings)
    }

    private func drain(_ workers: [WorkerHandle]) async throws {
        let deadline = monotonicNanos() + UInt64((settings.timeout + 1) * 1e9)
        while monotonicNanos() < deadline {
            let inFlight = try await gather(workers) { $0.inFlight }.reduce(0, +)
            if inFlight == 0 { return }
            try? await Task.sleep(nanoseconds: 5_000_000)
        }
    }

    /// Sleeps `seconds`, ticking progress every interval; false when stopped early.
    private func sleep(seconds: Double, stop: StopSignal, tick: (Double) async -> Void) async -> Bool {
        let start = monotonicNanos(), end = start + UInt64(seconds * 1e9)
        var nextTick = start + UInt64(settings.progressInterval * 1e9)
        while !stop.isStopped {
            let now = monotonicNanos()
            if now >= end { return true }
            if now >= nextTick {
                await tick(Double(now - start) / 1e9)
                nextTick += UInt64(settings.progressInterval * 1e9)
            }
            let wake = min(end, nextTick, now + 50_000_000)
            try? await Task.sleep(nanoseconds: wake - now)
        }
        return false
    }

    private func progressTick(_ workers: [WorkerHandle], elapsed: Double, phase: String?) async throws {
        guard settings.progress != .off else { return }
        let samples = try await gather(workers) { $0.progressSample() }
        var latency = Latency.histogram()
        for sample in samples { latency.add(sample.latency) }
        let ok = samples.reduce(0) { $0 + $1.ok }, errors = samples.reduce(0) { $0 + $1.errors }
        let inFlight = samples.reduce(0) { $0 + $1.inFlight }
        let rate = Double(ok + errors) / settings.progressInterval
        let p = Percentiles(latency)
        var line = Format.pad(String(format: "%.1fs", elapsed), 7) + "  " + Format.pad(Format.count(rate), 9) + " req/s  p50 "
            + Format.ms(p.p50) + "  p99 " + Format.ms(p.p99) + "  errors \(errors)  in flight \(inFlight)"
        if let phase { line += "  (\(phase))" }
        progress.show(line)
    }

    // MARK: - Sweep

    private func runSweep(_ sweep: SweepSpec, workers: [WorkerHandle], stop: StopSignal) async throws -> Measurement {
        let s = settings
        var rows: [SweepRow] = []
        var histograms: [(label: String, corrected: LatencyHistogram)] = []
        var total = WindowStats()
        var totalSeconds = 0.0
        var warnings: [String] = []
        for (step, value) in sweep.values.enumerated() {
            if stop.isStopped { break }
            var streams = s.streams, connections = s.connections
            var rate = s.mode.rate
            switch sweep.dimension {
            case .streams: streams = Int(value)
            case .connections: connections = Int(value)
            case .rate: rate = value
            }
            let label = "\(sweep.dimension.rawValue) \(Format.value(value))"
            try await startAll(workers, streams: streams, connections: connections, rate: rate, budget: nil)
            if s.warmUp > 0 {
                _ = await sleep(seconds: s.warmUp, stop: stop, tick: { e in try? await self.progressTick(workers, elapsed: e, phase: "\(label), warm-up") })
            }
            _ = try await rotateAll(workers)
            var windows: [(stats: WindowStats, seconds: Double)] = []
            var stable = false
            var windowStart = monotonicNanos()
            while windows.count < sweep.maxWindows && !stop.isStopped {
                let completed = await sleep(seconds: sweep.window, stop: stop, tick: { e in
                    try? await self.progressTick(workers, elapsed: e, phase: "\(label), window \(windows.count + 1)")
                })
                let end = monotonicNanos()
                let stats = try await rotateAll(workers)
                windows.append((stats, Double(end - windowStart) / 1e9))
                windowStart = end
                if !completed { break }
                if windows.count >= 2 && SweepRow.agree(windows[windows.count - 2], windows[windows.count - 1], tolerance: sweep.tolerance) {
                    stable = true
                    break
                }
            }
            guard !windows.isEmpty else { break }
            let used = windows.suffix(2)
            var merged = WindowStats()
            for w in used { merged.add(w.stats) }
            let seconds = used.reduce(0) { $0 + $1.seconds }
            let row = SweepRow(step: step + 1, dimension: sweep.dimension.rawValue, value: value, connections: connections,
                               streams: streams, rate: rate, windows: windows.count, stable: stable, seconds: seconds, stats: merged)
            rows.append(row)
            progress.line(row.progressLine)
            histograms.append((label, merged.all.corrected))
            if !stable && !stop.isStopped {
                warnings.append("\(label): no two consecutive windows agreed within \(Format.percent(sweep.tolerance)) in \(windows.count) windows")
            }
            warnings += openLoopWarnings(merged, seconds: seconds, rate: rate, label: label)
            total.add(merged)
            totalSeconds += seconds
        }
        _ = try await gather(workers) { $0.stop() }
        try await drain(workers)
        _ = try await rotateAll(workers)
        progress.finish()
        return Measurement(final: Measured(stats: total, seconds: totalSeconds), rows: rows, stepHistograms: histograms,
                           warnings: warnings)
    }

    // MARK: - Swaps

    private func runSwaps(_ driver: SwapDriver, client: H2Client, workers: [WorkerHandle], started: UInt64,
                          stop: StopSignal) async -> [SwapEvent] {
        var events: [SwapEvent] = []
        var next = started + UInt64(driver.spec.every * 1e9)
        var turn = 0
        while !Task.isCancelled && !stop.isStopped {
            let now = monotonicNanos()
            if now < next {
                try? await Task.sleep(nanoseconds: min(next - now, 50_000_000))
                continue
            }
            let head = driver.heads[turn % driver.heads.count]
            turn += 1
            _ = try? await gather(workers) { $0.inSwap = true }
            let event = await driver.swap(to: head, client: client, at: Double(monotonicNanos() - started) / 1e9)
            events.append(event)
            if !Task.isCancelled { try? await Task.sleep(nanoseconds: UInt64(driver.spec.windowTail * 1e9)) }
            _ = try? await gather(workers) { $0.inSwap = false }
            next = max(next + UInt64(driver.spec.every * 1e9), monotonicNanos())
        }
        return events
    }

    // MARK: - Warnings

    /// Open loop: did the tool keep the rate, and was it the tool or the server that fell behind?
    private func openLoopWarnings(_ stats: WindowStats, seconds: Double, rate: Double?, label: String? = nil) -> [String] {
        guard let rate, seconds > 0 else { return [] }
        var out: [String] = []
        let prefix = label.map { "\($0): " } ?? ""
        let sentRate = Double(stats.sent) / seconds
        let lag = Percentiles(stats.sendLag)
        if settings.requests == nil && sentRate < rate * 0.99 {
            if stats.heldBack > stats.sent / 100 {
                out.append(prefix + "sent \(Format.count(sentRate))/s of the requested \(Format.count(rate))/s: \(stats.heldBack) requests waited "
                           + "for a free stream (-c × -m = \(settings.connections * settings.streams)); that wait counts in the corrected latency")
            } else {
                out.append(prefix + "the load tool could not keep the rate: it sent \(Format.count(sentRate))/s of the requested "
                           + "\(Format.count(rate))/s with streams free (CPU-bound: add threads with -t, or lower --rate)")
            }
        }
        if lag.count > 0 && lag.p99 > 1 {
            out.append(prefix + "the load tool sent requests late (p99 \(Format.ms(lag.p99)) behind schedule while streams were free): "
                       + "corrected latencies include that delay")
        }
        return out
    }
}

extension LoadMode {
    var arrivalOrConstant: Arrival {
        if case .open(_, let arrival) = self { return arrival }
        return .constant
    }
}

/// The live progress line: rewritten in place on a terminal, one plain line per tick otherwise.
public final class ProgressPrinter: Sendable {
    private let mode: ProgressMode
    private let sink: @Sendable (String, Bool) -> Void
    private let tty: Bool
    private let shown = NIOLockedValueBox(false)

    /// Writes to standard error; `true` = the text ends a line.
    public static let standardError: @Sendable (String, Bool) -> Void = { text, _ in
        FileHandle.standardError.write(Data(text.utf8))
    }

    init(mode: ProgressMode, sink: @escaping @Sendable (String, Bool) -> Void) {
        self.mode = mode
        self.sink = sink
        tty = mode == .auto && isatty(2) == 1
    }

    func show(_ line: String) {
        switch mode {
        case .off: return
        case .plain: sink(line + "\n", true)
        case .auto:
            if tty {
                sink("\r\u{1B}[2K" + line, false)
                shown.withLockedValue { $0 = true }
            } else {
                sink(line + "\n", true)
            }
        }
    }

    /// A line that stays (a sweep step's result).
    func line(_ text: String) {
        guard mode != .off else { return }
        if tty && shown.withLockedValue({ $0 }) { sink("\r\u{1B}[2K", false) }
        shown.withLockedValue { $0 = false }
        sink(text + "\n", true)
    }

    func finish() {
        if tty && shown.withLockedValue({ $0 }) { sink("\r\u{1B}[2K", false) }
        shown.withLockedValue { $0 = false }
    }
}
