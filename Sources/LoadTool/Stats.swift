import Histogram

/// Latencies in nanoseconds, 1 ns … 100 s at 3 significant digits (HdrHistogram).
public typealias LatencyHistogram = Histogram<UInt32>

enum Latency {
    static let highest: UInt64 = 100_000_000_000

    static func histogram() -> LatencyHistogram {
        LatencyHistogram(lowestDiscernibleValue: 1, highestTrackableValue: highest, numberOfSignificantValueDigits: .three)
    }

    /// Records `nanos`, clamped to the trackable range (a 100 s latency is a timeout anyway).
    @inline(__always)
    static func record(_ h: inout LatencyHistogram, _ nanos: UInt64) {
        h.record(min(nanos, highest))
    }
}

/// Latency and outcome counts over one part of the run.
public struct Tally: Sendable {
    /// Successful responses.
    public var ok = 0
    /// Failed requests (bad status, invalid response, reset, timeout, closed connection).
    public var errors = 0
    /// Latency from the intended send time (open loop; = service time in closed loop).
    public var corrected = Latency.histogram()
    /// Service time: from the actual send to the complete response.
    public var uncorrected = Latency.histogram()

    mutating func add(_ other: Tally) {
        ok += other.ok
        errors += other.errors
        corrected.add(other.corrected)
        uncorrected.add(other.uncorrected)
    }
}

/// What a worker saw during one window (or the whole run, merged).
public struct WindowStats: Sendable {
    /// Every completed request (success and failure) that completed in the window.
    public var all = Tally()
    /// Inside and outside swap windows (only with a swap scenario).
    public var inSwap = Tally()
    public var steady = Tally()
    /// Requests sent.
    public var sent = 0
    /// Errors by kind (`HTTP 404 unknown-scene`, `timed out`, `request id mismatch`, …).
    public var errorKinds: [String: Int] = [:]
    /// Responses by HTTP status.
    public var statuses: [Int: Int] = [:]
    /// Head versions seen (`x-scenescore-head-version`), with counts.
    public var versions: [String: Int] = [:]
    /// Open loop: how late requests were sent behind schedule while a stream was free (the
    /// tool's own delay), and how many were held back because every stream was busy.
    public var sendLag = Latency.histogram()
    public var heldBack = 0
    /// Open loop: requests whose intended send time fell in the window, sent or not.
    public var scheduled = 0
    /// Response body bytes received.
    public var responseBytes = 0

    public init() {}

    mutating func add(_ other: WindowStats) {
        all.add(other.all)
        inSwap.add(other.inSwap)
        steady.add(other.steady)
        sent += other.sent
        errorKinds.merge(other.errorKinds, uniquingKeysWith: +)
        statuses.merge(other.statuses, uniquingKeysWith: +)
        versions.merge(other.versions, uniquingKeysWith: +)
        sendLag.add(other.sendLag)
        heldBack += other.heldBack
        scheduled += other.scheduled
        responseBytes += other.responseBytes
    }

    static func merged(_ parts: [WindowStats]) -> WindowStats {
        var total = WindowStats()
        for p in parts { total.add(p) }
        return total
    }
}

/// Connection set-up times and transfer totals of one connection.
public struct ConnectionTiming: Sendable {
    /// TCP connect, TLS handshake (0 for h2c), and until the server's first SETTINGS, seconds.
    public var connect: Double
    public var tlsHandshake: Double
    public var toSettings: Double
    public var bytesReceived = 0
    public var bytesSent = 0
    public var serverMaxStreams = 0
}

/// A short summary of latencies for reports, in milliseconds.
public struct Percentiles: Sendable, Codable, Equatable {
    public var count: UInt64
    public var p50, p90, p99, p999, p9999, max, mean: Double

    public init(_ h: LatencyHistogram) {
        count = h.totalCount
        func ms(_ v: UInt64) -> Double { Double(v) / 1e6 }
        if h.totalCount == 0 {
            p50 = 0; p90 = 0; p99 = 0; p999 = 0; p9999 = 0; max = 0; mean = 0
        } else {
            p50 = ms(h.valueAtPercentile(50))
            p90 = ms(h.valueAtPercentile(90))
            p99 = ms(h.valueAtPercentile(99))
            p999 = ms(h.valueAtPercentile(99.9))
            p9999 = ms(h.valueAtPercentile(99.99))
            max = ms(h.max)
            mean = h.mean / 1e6
        }
    }
}
