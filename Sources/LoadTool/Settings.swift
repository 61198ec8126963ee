import Foundation

/// A failure the load tool reports as one line and a non-zero exit (bad URL, refused connection,
/// TLS failure, unknown scene, unreadable file, …).
public struct LoadError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Where the load goes: `https://host:port/path` (TLS, ALPN h2) or `http://…` (h2c, prior knowledge).
public struct LoadTarget: Sendable, Equatable {
    public var tls: Bool
    public var host: String
    public var port: Int
    /// The scoring path (default `/v1/score`); `/v1/scenes` is fetched from the same origin.
    public var path: String

    public var authority: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
    public var origin: String { "\(tls ? "https" : "http")://\(authority)" }

    public init(tls: Bool, host: String, port: Int, path: String) {
        self.tls = tls
        self.host = host
        self.port = port
        self.path = path
    }

    /// Parses `https://host[:port][/path]` or `http://…`; anything else is a one-line error.
    public static func parse(_ text: String) throws(LoadError) -> LoadTarget {
        guard let components = URLComponents(string: text), let scheme = components.scheme?.lowercased() else {
            throw LoadError("bad URL '\(text)': expected https://HOST:PORT[/PATH] (or http:// for h2c)")
        }
        guard scheme == "https" || scheme == "http" else {
            throw LoadError("bad URL '\(text)': scheme '\(scheme)' is not https (TLS) or http (h2c)")
        }
        guard let host = components.host, !host.isEmpty else {
            throw LoadError("bad URL '\(text)': no host")
        }
        if let port = components.port, !(1...65535).contains(port) {
            throw LoadError("bad URL '\(text)': port \(port) is out of range")
        }
        let path = components.percentEncodedPath.isEmpty || components.percentEncodedPath == "/"
            ? "/v1/score" : components.percentEncodedPath
        let query = components.percentEncodedQuery.map { "?" + $0 } ?? ""
        let bareHost = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        return LoadTarget(tls: scheme == "https", host: bareHost, port: components.port ?? (scheme == "https" ? 443 : 80),
                          path: path + query)
    }
}

/// How requests are issued.
public enum LoadMode: Sendable, Equatable {
    /// Every connection keeps its streams busy: a new request as soon as one completes (h2load).
    case closed
    /// Requests at a fixed rate (requests/s over all connections), whatever the server does;
    /// latency counts from each request's intended send time (wrk2's coordinated-omission correction).
    case open(rate: Double, arrival: Arrival)

    public enum Arrival: String, Sendable, CaseIterable { case constant, poisson }

    public var rate: Double? {
        if case .open(let rate, _) = self { return rate }
        return nil
    }
}

/// How much of each response is checked.
public enum CheckLevel: String, Sendable, CaseIterable {
    /// Nothing: a complete response counts as success (like h2load).
    case none
    /// The status is 200.
    case status
    /// Status; the binary response header: magic, request id, candidates, outputs and the exact
    /// length (so the count of scores); the head-version header equals the body's. No allocation.
    case fast
    /// `fast`, plus Wire's strict decoder: padding, output names, every score finite and in [0, 1].
    case full
}

/// The number of candidates per generated request: `16`, a range `1-64` (uniform), a list
/// `1,4,16` (equally likely) or weighted `1:0.5,16:0.3,64:0.2`.
public struct CandidateDistribution: Sendable, Equatable, CustomStringConvertible {
    public var choices: [(count: Int, weight: Double)]
    public var range: ClosedRange<Int>?

    public static func == (a: Self, b: Self) -> Bool {
        a.range == b.range && a.choices.map(\.count) == b.choices.map(\.count) && a.choices.map(\.weight) == b.choices.map(\.weight)
    }

    public init(fixed n: Int) {
        choices = [(n, 1)]
        range = nil
    }

    public static func parse(_ text: String) throws(LoadError) -> CandidateDistribution {
        let spec = text.replacingOccurrences(of: " ", with: "")
        func count(_ s: Substring) throws(LoadError) -> Int {
            guard let n = Int(s), n >= 1, n <= 1 << 20 else {
                throw LoadError("bad --candidates '\(text)': '\(s)' is not a count of candidates (1 or more)")
            }
            return n
        }
        if !spec.contains(","), !spec.contains(":"), let dash = spec.firstIndex(of: "-") {
            let lo = try count(spec[..<dash]), hi = try count(spec[spec.index(after: dash)...])
            guard lo <= hi else { throw LoadError("bad --candidates '\(text)': empty range") }
            var d = CandidateDistribution(fixed: lo)
            d.range = lo...hi
            d.choices = []
            return d
        }
        var choices: [(Int, Double)] = []
        for part in spec.split(separator: ",", omittingEmptySubsequences: false) {
            let pieces = part.split(separator: ":", omittingEmptySubsequences: false)
            guard pieces.count <= 2 else { throw LoadError("bad --candidates '\(text)'") }
            let weight: Double
            if pieces.count == 2 {
                guard let w = Double(pieces[1]), w > 0, w.isFinite else {
                    throw LoadError("bad --candidates '\(text)': weight '\(pieces[1])' must be a positive number")
                }
                weight = w
            } else {
                weight = 1
            }
            choices.append((try count(pieces[0]), weight))
        }
        var d = CandidateDistribution(fixed: 1)
        d.choices = choices
        return d
    }

    /// The candidate count for one request.
    func draw(_ rng: inout SplitMix64) -> Int {
        if let range {
            return range.lowerBound + Int(rng.next() % UInt64(range.count))
        }
        if choices.count == 1 { return choices[0].count }
        let total = choices.reduce(0) { $0 + $1.weight }
        var u = rng.nextUnit() * total
        for c in choices {
            u -= c.weight
            if u < 0 { return c.count }
        }
        return choices[choices.count - 1].count
    }

    public var description: String {
        if let range { return "\(range.lowerBound)-\(range.upperBound)" }
        if choices.count == 1 { return "\(choices[0].count)" }
        return choices.map { "\($0.count):\($0.weight)" }.joined(separator: ",")
    }
}

/// What is sent.
public enum RequestSource: Sendable, Equatable {
    /// Random requests shaped by `GET /v1/scenes`: the named scenes with weights (empty: every
    /// servable scene, equally), `bodies` distinct pre-encoded bodies per scene.
    case generated(scenes: [SceneWeight], candidates: CandidateDistribution, bodies: Int)
    /// Binary requests (wire v1) read from files, or every `*.bin` file of a directory.
    case replay(paths: [String])
}

public struct SceneWeight: Sendable, Equatable {
    public var scene: String
    public var weight: Double
    public init(scene: String, weight: Double) {
        self.scene = scene
        self.weight = weight
    }

    /// `apparel` or `apparel:3`.
    public static func parse(_ text: String) throws(LoadError) -> SceneWeight {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard (1...2).contains(parts.count), !parts[0].isEmpty else { throw LoadError("bad --scene '\(text)': expected NAME or NAME:WEIGHT") }
        var weight = 1.0
        if parts.count == 2 {
            guard let w = Double(parts[1]), w > 0, w.isFinite else { throw LoadError("bad --scene '\(text)': weight must be a positive number") }
            weight = w
        }
        return SceneWeight(scene: String(parts[0]), weight: weight)
    }
}

/// A sweep: one measurement per value, each repeated in windows until two consecutive windows
/// agree (perf_analyzer's stability rule).
public struct SweepSpec: Sendable, Equatable {
    public enum Dimension: String, Sendable { case streams, connections, rate }
    public var dimension: Dimension
    public var values: [Double]
    /// Length of one measurement window, seconds.
    public var window: Double = 2
    /// Two windows agree when throughput and p50 differ by at most this fraction.
    public var tolerance: Double = 0.1
    public var maxWindows: Int = 6

    public init(dimension: Dimension, values: [Double]) {
        self.dimension = dimension
        self.values = values
    }

    /// `streams:1,2,4,8`, `connections:1,2,4`, `rate:1000,2000,4000`.
    public static func parse(_ text: String) throws(LoadError) -> SweepSpec {
        let parts = text.split(separator: ":", maxSplits: 1)
        guard parts.count == 2, let dimension = Dimension(rawValue: String(parts[0])) else {
            throw LoadError("bad --sweep '\(text)': expected streams:V1,V2,…, connections:V1,… or rate:R1,R2,…")
        }
        var values: [Double] = []
        for v in parts[1].split(separator: ",") {
            guard let x = Double(v), x > 0, x.isFinite, dimension == .rate || x == x.rounded() else {
                throw LoadError("bad --sweep '\(text)': '\(v)' is not a positive \(dimension == .rate ? "rate" : "whole number")")
            }
            values.append(x)
        }
        guard !values.isEmpty else { throw LoadError("bad --sweep '\(text)': no values") }
        return SweepSpec(dimension: dimension, values: values)
    }
}

/// Hot swap during the run: head files pushed through the admin API in turn.
public struct SwapSpec: Sendable, Equatable {
    /// Seconds between swaps.
    public var every: Double
    public var heads: [String]
    public var adminURL: String
    public var token: String?
    public var adminCACert: String?
    /// A swap window lasts from the admin request until this long after its answer, seconds.
    public var windowTail: Double = 0.1

    public init(every: Double, heads: [String], adminURL: String, token: String?, adminCACert: String?) {
        self.every = every
        self.heads = heads
        self.adminURL = adminURL
        self.token = token
        self.adminCACert = adminCACert
    }
}

/// TLS settings of the client.
public struct ClientTLS: Sendable, Equatable {
    public var caFile: String?
    public var verify = true
    public var serverName: String?
    public var certificate: String?
    public var key: String?
    public init() {}
}

/// The live progress line.
public enum ProgressMode: String, Sendable, CaseIterable { case auto, plain, off }

/// Everything one run needs.
public struct LoadSettings: Sendable {
    public var target: LoadTarget
    public var tls = ClientTLS()
    public var connections = 1
    public var streams = 1
    public var threads = 1
    public var mode = LoadMode.closed
    /// Measurement length in seconds; nil with `requests`.
    public var duration: Double? = 10
    /// Requests to measure (over all connections); ends the run when they are answered.
    public var requests: Int?
    public var warmUp: Double = 0
    /// Per-request timeout, seconds.
    public var timeout: Double = 10
    public var source = RequestSource.generated(scenes: [], candidates: CandidateDistribution(fixed: 16), bodies: 64)
    public var seed: UInt64 = 1
    public var check = CheckLevel.fast
    public var headers: [(name: String, value: String)] = []
    public var sweep: SweepSpec?
    public var swap: SwapSpec?
    public var progress = ProgressMode.auto
    public var progressInterval: Double = 1
    /// Open loop: the shortest sleep between sends, seconds (nil: 16 requests' worth, 50…200 µs).
    public var tick: Double?

    public init(target: LoadTarget) { self.target = target }

    /// Cross-option checks (one line each).
    public func validate() throws(LoadError) {
        guard connections >= 1, streams >= 1, threads >= 1 else { throw LoadError("-c, -m and -t must be at least 1") }
        if let rate = mode.rate, !(rate > 0 && rate.isFinite) { throw LoadError("--rate must be a positive number of requests per second") }
        if let requests, requests < 1 { throw LoadError("-n must be at least 1") }
        if let duration, !(duration > 0) { throw LoadError("--duration must be positive") }
        if duration == nil && requests == nil && sweep == nil { throw LoadError("give a --duration or a request count (-n)") }
        if let sweep {
            if sweep.dimension == .rate && mode.rate == nil { throw LoadError("--sweep rate:… needs open loop: give --rate (the first step's rate is then the sweep's)") }
            if sweep.dimension != .rate && mode.rate != nil { throw LoadError("--sweep \(sweep.dimension.rawValue):… is a closed-loop sweep; drop --rate or sweep rate:…") }
        }
        if let swap {
            guard swap.every > 0 else { throw LoadError("--swap-every must be positive") }
            guard !swap.heads.isEmpty else { throw LoadError("--swap-every needs at least one --head FILE") }
        }
        if case .generated(let scenes, _, let bodies) = source {
            guard bodies >= 1 else { throw LoadError("--bodies must be at least 1") }
            for s in scenes where !s.scene.utf8.allSatisfy({ ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x5F || $0 == 0x2D }) {
                throw LoadError("bad scene name '\(s.scene)': only lowercase a-z, 0-9, '_' and '-' are allowed")
            }
        }
        guard timeout > 0 else { throw LoadError("--timeout must be positive") }
    }
}

/// Durations on the command line: `10s`, `200ms`, `1.5m`, `500us`, or plain seconds (`10`).
public func parseDuration(_ text: String) -> Double? {
    let t = text.trimmingCharacters(in: .whitespaces).lowercased()
    let units: [(String, Double)] = [("ms", 1e-3), ("us", 1e-6), ("µs", 1e-6), ("ns", 1e-9), ("s", 1), ("m", 60), ("h", 3600)]
    for (suffix, scale) in units where t.hasSuffix(suffix) {
        guard let v = Double(t.dropLast(suffix.count)), v >= 0, v.isFinite else { return nil }
        return v * scale
    }
    guard let v = Double(t), v >= 0, v.isFinite else { return nil }
    return v
}

/// SplitMix64: the tool's seeded generator (bodies, scene picks, Poisson gaps).
struct SplitMix64 {
    private var state: UInt64
    init(seed: UInt64) { state = seed }

    @inline(__always) mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    @inline(__always) mutating func nextUnit() -> Double { Double(next() >> 11) * 0x1p-53 }
}
