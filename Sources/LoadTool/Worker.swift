import Foundation
import H2
import NIOCore
import NIOPosix

/// The clock every timestamp of a run comes from (CLOCK_MONOTONIC, nanoseconds).
@inline(__always) func monotonicNanos() -> UInt64 { NIODeadline.now().uptimeNanoseconds }

/// A request in flight on one slot of a connection.
struct InFlight {
    /// When it should have been sent (open loop: its place in the schedule; closed loop: = sent).
    var intended: UInt64 = 0
    var sent: UInt64 = 0
    var requestID: UInt64 = 0
    /// Index into the pool; -1 for a control request (`GET /v1/scenes`).
    var request: Int = -1
    /// What the response must carry.
    var candidates: Int = 0
    var outputs: Int = 0
}

/// The answer to a control request.
struct ControlResponse: Sendable {
    var status: Int
    var body: [UInt8]
}

/// One connection of a worker: the delegate of its `H2PipelinedConnection`.
final class ConnectionDriver: H2PipelinedDelegate {
    unowned let worker: LoadWorker
    /// Over all connections of the run, and within the worker.
    let index: Int
    let local: Int
    var connection: H2PipelinedConnection?
    /// Per stream slot of the connection; one allocation, updated in place.
    let slots: UnsafeMutableBufferPointer<InFlight>
    let startedAt: UInt64
    var connectedAt: UInt64 = 0
    var establishedAt: UInt64 = 0
    var readyAt: UInt64 = 0
    var isReady = false
    var isClosed = false
    var closeReason: String?
    var dirty = false
    var control: (slot: Int, promise: EventLoopPromise<ControlResponse>)?

    init(worker: LoadWorker, index: Int, local: Int, maxStreams: Int) {
        self.worker = worker
        self.index = index
        self.local = local
        slots = .allocate(capacity: maxStreams)
        slots.initialize(repeating: InFlight())
        startedAt = monotonicNanos()
    }

    deinit { slots.deallocate() }

    func connected() { connectedAt = monotonicNanos() }
    func transportEstablished() { establishedAt = monotonicNanos() }

    func ready() {
        readyAt = monotonicNanos()
        isReady = true
        worker.connectionReady(self)
    }

    func response(slot: Int, status: Int, captured: UnsafeRawBufferPointer?, body: UnsafeRawBufferPointer) {
        if let control, control.slot == slot {
            self.control = nil
            control.promise.succeed(ControlResponse(status: status, body: Array(body)))
            return
        }
        worker.completed(self, slot: slot, status: status, captured: captured, body: body)
    }

    func failed(slot: Int, _ failure: H2StreamFailure) {
        if let control, control.slot == slot {
            self.control = nil
            control.promise.fail(LoadError("GET /v1/scenes from \(worker.target.origin) failed: \(failure)"))
            return
        }
        worker.failed(self, slot: slot, failure)
    }

    func readBurstEnded() { worker.readBurstEnded(self) }

    func closed(reason: String?) {
        isClosed = true
        closeReason = reason
        worker.connectionClosed(self)
    }

    /// The one-line reason this connection could not be used, by how far it got.
    var failureLine: String {
        let reason = closeReason ?? "closed"
        let target = worker.target
        if connectedAt == 0 { return "cannot connect to \(target.authority): \(reason)" }
        if target.tls && establishedAt == 0 {
            // OpenSSL's "error:0A000086:SSL routines::certificate verify failed" → its last part.
            let short = reason.split(separator: ":").last.map { $0.trimmingCharacters(in: .whitespaces) } ?? reason
            let hint = short.contains("certificate verify failed") ? " (give the server's CA with --cacert FILE, or -k to skip verification)"
                : short.contains("wrong version number") ? " (not a TLS port? use http:// for h2c)" : ""
            return "TLS handshake with \(target.authority) failed: \(short)\(hint)"
        }
        if closeReason == nil || closeReason!.hasPrefix("the server closed the connection before HTTP/2 started") {
            return "\(target.origin) closed the connection before HTTP/2 started" + (target.tls ? "" : " (not an h2c listener? use https:// for TLS)")
        }
        return "\(target.origin) closed the connection before HTTP/2 started: \(reason)"
    }
}

/// Everything of a run that lives on one event loop: its connections, its schedule, its
/// statistics. Touched only on `eventLoop`; the runner reaches it through `eventLoop.submit`.
final class LoadWorker {
    let index: Int
    let eventLoop: any EventLoop
    let target: LoadTarget
    let check: CheckLevel
    let swapEnabled: Bool
    private(set) var drivers: [ConnectionDriver] = []
    private var template: H2RequestTemplate
    private let controlTemplate: H2RequestTemplate
    private(set) var pool: RequestPool?
    private var rng: SplitMix64

    // What is issued.
    private var issuing = false
    private var mode = LoadMode.closed
    /// Closed loop: streams kept busy per connection. Connections used: the first `activeConnections`.
    private var streamsPerConnection = 1
    private var activeConnections = 0
    /// Requests left to send (the worker's share of -n).
    private var budget = Int.max
    private var requestCounter: UInt64 = 0

    // Open loop schedule.
    private var interval = 0.0  // ns between intended sends on this worker
    private var nextIntended: UInt64 = 0
    private var fractional = 0.0
    private var holding = false
    private var timer: Scheduled<Void>?
    private var timerAt: UInt64 = .max
    private var roundRobin = 0
    /// The shortest timer: requests due sooner go out together, each timed from its own intended
    /// time. Set per run (`start`): about 16 requests' worth at high rates, 50…200 µs.
    private var minimumTick: UInt64 = 50_000
    /// Fixed by --tick (experiments), else adaptive.
    var tickOverride: UInt64?

    // Statistics.
    private(set) var window = WindowStats()
    private var statusCounts = [Int](repeating: 0, count: 600)
    private var versionNames: [[UInt8]] = []
    private var versionCounts: [Int] = []
    private var progressOK = 0, progressErrors = 0
    private var progressLatency = Latency.histogram()
    private(set) var totalSent = 0, totalOK = 0, totalErrors = 0
    private(set) var lastCompletion: UInt64 = 0
    var inSwap = false

    // Signals to the runner.
    private var readyPromise: EventLoopPromise<Void>?
    private var donePromise: EventLoopPromise<Void>?

    init(index: Int, eventLoop: any EventLoop, target: LoadTarget, check: CheckLevel, swapEnabled: Bool,
         headers: [(name: String, value: String)], seed: UInt64) {
        self.index = index
        self.eventLoop = eventLoop
        self.target = target
        self.check = check
        self.swapEnabled = swapEnabled
        let scheme = target.tls ? "https" : "http"
        var all = headers
        if !all.contains(where: { $0.name.lowercased() == "content-type" }) {
            all.insert((name: "content-type", value: "application/vnd.scenescore.v1"), at: 0)
        }
        template = H2RequestTemplate(method: "POST", path: target.path, authority: target.authority, scheme: scheme, headers: all)
        controlTemplate = H2RequestTemplate(method: "GET", path: "/v1/scenes", authority: target.authority, scheme: scheme)
        rng = SplitMix64(seed: seed &+ UInt64(index) &* 0x9E37_79B9)
    }

    var inFlight: Int { drivers.reduce(0) { $0 + ($1.connection?.inFlight ?? 0) } }
    var openConnections: Int { drivers.filter { $0.isReady && !$0.isClosed }.count }
    /// Connections that closed (the server's GOAWAY, a reset, …) and why.
    var lostConnections: [String] { drivers.filter(\.isClosed).map { $0.closeReason ?? "closed by the server" } }

    // MARK: - Connecting

    /// Opens this worker's connections; succeeds when every one is ready, fails with the first
    /// connection's one-line reason.
    func connect(indices: [Int], tls: TLSContext?, serverName: String?, maxStreams: Int, timeout: Double) -> EventLoopFuture<Void> {
        let promise = eventLoop.makePromise(of: Void.self)
        readyPromise = promise
        var limits = H2Limits()
        limits.streamTimeout = .nanoseconds(Int64(timeout * 1e9))
        limits.idleTimeout = .hours(24)
        let capture = check == .fast || check == .full ? "x-scenescore-head-version" : nil
        for i in indices {
            let driver = ConnectionDriver(worker: self, index: i, local: drivers.count, maxStreams: maxStreams)
            drivers.append(driver)
            do {
                driver.connection = try H2PipelinedConnection(host: target.host, port: target.port, tls: tls, serverName: serverName,
                                                              eventLoop: eventLoop, maxStreams: maxStreams, limits: limits,
                                                              captureHeader: capture, delegate: driver)
            } catch {
                driver.isClosed = true
                promise.fail(LoadError("cannot set up a connection to \(target.authority): \(error)"))
                readyPromise = nil
                return promise.futureResult
            }
        }
        activeConnections = drivers.count
        if drivers.isEmpty { promise.succeed(()); readyPromise = nil }
        return promise.futureResult
    }

    func connectionReady(_ driver: ConnectionDriver) {
        if let promise = readyPromise, drivers.allSatisfy(\.isReady) {
            readyPromise = nil
            promise.succeed(())
        }
    }

    func connectionClosed(_ driver: ConnectionDriver) {
        if let promise = readyPromise {
            readyPromise = nil
            promise.fail(LoadError(driver.failureLine))
        }
        checkDone()
    }

    /// `GET /v1/scenes` on this worker's first connection.
    func fetchCatalog() -> EventLoopFuture<ControlResponse> {
        let promise = eventLoop.makePromise(of: ControlResponse.self)
        guard let driver = drivers.first(where: { $0.isReady && !$0.isClosed }), let connection = driver.connection,
              let slot = connection.submit(controlTemplate, body: nil) else {
            promise.fail(LoadError("no open connection to \(target.origin) for GET /v1/scenes"))
            return promise.futureResult
        }
        driver.slots[slot].request = -1
        driver.control = (slot, promise)
        connection.flush()
        return promise.futureResult
    }

    func setPool(_ pool: RequestPool) { self.pool = pool }

    // MARK: - Issuing

    /// Starts (or changes) what is issued. `rate` is this worker's share of an open-loop rate.
    func start(mode: LoadMode, workerRate: Double, streams: Int, connections: Int, budget: Int?) {
        self.mode = mode
        streamsPerConnection = streams
        activeConnections = min(connections, drivers.count)
        self.budget = budget ?? Int.max
        issuing = true
        switch mode {
        case .closed:
            for driver in drivers.prefix(activeConnections) { refill(driver); flushIfDirty(driver) }
        case .open:
            interval = workerRate > 0 ? 1e9 / workerRate : 0
            minimumTick = tickOverride ?? UInt64(min(200_000, max(50_000, 16 * interval)))
            nextIntended = monotonicNanos()
            fractional = 0
            holding = false
            if interval > 0 { pump() }
        }
        checkDone()
    }

    /// Stops issuing; what is in flight completes (or times out).
    func stop() {
        issuing = false
        timer?.cancel()
        timer = nil
        timerAt = .max
        checkDone()
    }

    /// Succeeds once this worker has nothing left to send (budget spent or stopped) and nothing in flight.
    func whenDone() -> EventLoopFuture<Void> {
        let promise = eventLoop.makePromise(of: Void.self)
        donePromise = promise
        checkDone()
        return promise.futureResult
    }

    private func checkDone() {
        guard let promise = donePromise else { return }
        let nothingToSend = !issuing || budget == 0 || drivers.allSatisfy { $0.isClosed }
        if nothingToSend && inFlight == 0 {
            donePromise = nil
            promise.succeed(())
        }
    }

    func closeAll() {
        for driver in drivers { driver.connection?.close() }
    }

    /// Closed loop: fill the connection's streams up to the target.
    private func refill(_ driver: ConnectionDriver) {
        guard issuing, case .closed = mode, driver.local < activeConnections,
              let connection = driver.connection else { return }
        while connection.inFlight < streamsPerConnection && budget > 0 {
            let now = monotonicNanos()
            guard send(on: driver, intended: now, now: now) else { break }
        }
    }

    /// Open loop: send every request whose intended time has come, then sleep until the next one
    /// (at least `minimumTick` later: what falls due meanwhile goes out together, each request
    /// still timed from its own intended time). One pass fills one connection while it has room,
    /// then the next, so a pass is a few full writes, not one write per request. Only the timer
    /// pumps, also while requests are held back for want of a free stream: sending each stream
    /// as it frees would shrink the writes just when the server is busiest.
    private func pump() {
        guard issuing, interval > 0 else { return }
        let now = monotonicNanos()
        var current: ConnectionDriver?
        while nextIntended <= now && budget > 0 {
            if current == nil || !hasRoom(current!) { current = nextDriverWithCapacity() }
            guard let driver = current else {
                holding = true
                break
            }
            let intended = nextIntended
            guard send(on: driver, intended: intended, now: now) else {
                holding = true
                break
            }
            if holding { window.heldBack += 1 } else { Latency.record(&window.sendLag, now - intended) }
            advanceSchedule()
        }
        if nextIntended > now { holding = false }
        for driver in drivers where driver.dirty { flushIfDirty(driver) }
        if budget > 0 { armTimer(now: now) }
        if budget == 0 { checkDone() }
    }

    private func advanceSchedule() {
        let gap: Double
        if case .open(_, .poisson) = mode {
            gap = -interval * log(1 - rng.nextUnit())
        } else {
            gap = interval
        }
        // Carry the fraction of a nanosecond so a constant rate has no drift.
        let whole = (gap + fractional).rounded(.down)
        fractional = gap + fractional - whole
        nextIntended &+= UInt64(whole)
    }

    private func armTimer(now: UInt64) {
        let at = max(nextIntended, now + minimumTick)
        if timer != nil && timerAt <= at { return }
        timer?.cancel()
        timerAt = at
        timer = eventLoop.assumeIsolated().scheduleTask(deadline: .uptimeNanoseconds(at)) { [self] in
            timer = nil
            timerAt = .max
            pump()
        }
    }

    @inline(__always)
    private func hasRoom(_ driver: ConnectionDriver) -> Bool {
        guard let c = driver.connection else { return false }
        return c.capacity > 0 && c.inFlight < streamsPerConnection
    }

    /// The next active connection with a free stream, round-robin.
    private func nextDriverWithCapacity() -> ConnectionDriver? {
        let n = activeConnections
        guard n > 0 else { return nil }
        for step in 0..<n {
            let driver = drivers[(roundRobin + step) % n]
            if hasRoom(driver) {
                roundRobin = (roundRobin + step + 1) % n
                return driver
            }
        }
        return nil
    }

    @inline(__always)
    private func send(on driver: ConnectionDriver, intended: UInt64, now: UInt64) -> Bool {
        guard let pool, let connection = driver.connection else { return false }
        let pick = pool.pick(&rng)
        let request = pool.requests[pick]
        requestCounter &+= 1
        let requestID = (UInt64(index + 1) << 40) | requestCounter
        guard let slot = connection.submit(template, body: request.body, requestID: requestID) else { return false }
        // A pushed head may have other outputs than the one /v1/scenes described at the start:
        // with swaps on, the count is checked against the response's own length only.
        driver.slots[slot] = InFlight(intended: intended, sent: now, requestID: requestID, request: pick,
                                      candidates: request.candidates, outputs: swapEnabled ? 0 : request.outputs)
        driver.dirty = true
        window.sent += 1
        totalSent += 1
        if budget != Int.max { budget -= 1 }
        return true
    }

    private func flushIfDirty(_ driver: ConnectionDriver) {
        if driver.dirty {
            driver.dirty = false
            driver.connection?.flush()
        }
    }

    // MARK: - Completions

    func readBurstEnded(_ driver: ConnectionDriver) {
        if case .closed = mode { refill(driver) }  // open loop: the timer sends
        driver.dirty = false  // the connection flushes right after this
        checkDone()
    }

    func completed(_ driver: ConnectionDriver, slot: Int, status: Int, captured: UnsafeRawBufferPointer?, body: UnsafeRawBufferPointer) {
        let now = monotonicNanos()
        let f = driver.slots[slot]
        guard f.request >= 0 else { return }
        let verdict = ResponseCheck.check(level: check, status: status, header: captured, body: body,
                                          expect: ResponseExpectation(requestID: f.requestID, candidates: f.candidates, outputs: f.outputs))
        if status >= 0 && status < statusCounts.count { statusCounts[status] += 1 }
        window.responseBytes += body.count
        switch verdict {
        case .ok(let range):
            if !range.isEmpty { countVersion(UnsafeRawBufferPointer(rebasing: body[range])) }
            record(f, now: now, ok: true)
        case .status(let code):
            let slug = ResponseCheck.problemSlug(body)
            window.errorKinds["HTTP \(code)\(slug.map { " " + $0 } ?? "")", default: 0] += 1
            record(f, now: now, ok: false)
        case .invalid(let why):
            window.errorKinds[why, default: 0] += 1
            record(f, now: now, ok: false)
        }
    }

    func failed(_ driver: ConnectionDriver, slot: Int, _ failure: H2StreamFailure) {
        if issuing, case .closed = mode, !driver.isClosed {
            // Outside a read burst (a timeout's reset): refill on the next loop turn.
            eventLoop.assumeIsolated().execute { [self] in
                refill(driver)
                flushIfDirty(driver)
            }
        }
        window.errorKinds[failure.description, default: 0] += 1
        window.all.errors += 1
        if swapEnabled { if inSwap { window.inSwap.errors += 1 } else { window.steady.errors += 1 } }
        progressErrors += 1
        totalErrors += 1
        lastCompletion = monotonicNanos()
    }

    @inline(__always)
    private func record(_ f: InFlight, now: UInt64, ok: Bool) {
        let corrected = now &- f.intended, service = now &- f.sent
        Latency.record(&window.all.corrected, corrected)
        Latency.record(&window.all.uncorrected, service)
        Latency.record(&progressLatency, corrected)
        if ok { window.all.ok += 1; progressOK += 1; totalOK += 1 } else { window.all.errors += 1; progressErrors += 1; totalErrors += 1 }
        if swapEnabled {
            if inSwap {
                Latency.record(&window.inSwap.corrected, corrected)
                Latency.record(&window.inSwap.uncorrected, service)
                if ok { window.inSwap.ok += 1 } else { window.inSwap.errors += 1 }
            } else {
                Latency.record(&window.steady.corrected, corrected)
                Latency.record(&window.steady.uncorrected, service)
                if ok { window.steady.ok += 1 } else { window.steady.errors += 1 }
            }
        }
        lastCompletion = now
    }

    private func countVersion(_ bytes: UnsafeRawBufferPointer) {
        for i in versionNames.indices where versionNames[i].elementsEqual(bytes) {
            versionCounts[i] += 1
            return
        }
        versionNames.append(Array(bytes))
        versionCounts.append(1)
    }

    // MARK: - Snapshots for the runner

    /// The statistics since the last rotation; starts a new window.
    func rotate() -> WindowStats {
        var out = window
        window = WindowStats()
        for (code, count) in statusCounts.enumerated() where count > 0 { out.statuses[code] = count }
        statusCounts = [Int](repeating: 0, count: statusCounts.count)
        for (i, name) in versionNames.enumerated() where versionCounts[i] > 0 {
            out.versions[String(decoding: name, as: UTF8.self), default: 0] += versionCounts[i]
            versionCounts[i] = 0
        }
        return out
    }

    /// Successes, errors and latencies since the last call, for the progress line.
    func progressSample() -> ProgressSample {
        let sample = ProgressSample(ok: progressOK, errors: progressErrors, latency: progressLatency, inFlight: inFlight)
        progressOK = 0
        progressErrors = 0
        progressLatency = Latency.histogram()
        return sample
    }

    func timings() -> [ConnectionTiming] {
        drivers.map { d in
            ConnectionTiming(connect: d.connectedAt > 0 ? Double(d.connectedAt - d.startedAt) / 1e9 : 0,
                             tlsHandshake: target.tls && d.establishedAt > 0 && d.connectedAt > 0 ? Double(d.establishedAt - d.connectedAt) / 1e9 : 0,
                             toSettings: d.readyAt > 0 ? Double(d.readyAt - d.startedAt) / 1e9 : 0,
                             bytesReceived: d.connection?.bytesReceived ?? 0, bytesSent: d.connection?.bytesSent ?? 0,
                             serverMaxStreams: d.isReady ? d.connection?.serverMaxConcurrentStreams ?? 0 : 0)
        }
    }

    /// Open loop: requests due but not yet sent.
    func backlog() -> Int {
        guard issuing, interval > 0 else { return 0 }
        let now = monotonicNanos()
        return nextIntended < now ? Int(Double(now - nextIntended) / interval) + 1 : 0
    }
}

/// One progress tick of one worker.
struct ProgressSample: Sendable {
    var ok: Int
    var errors: Int
    var latency: LatencyHistogram
    var inFlight: Int
}

