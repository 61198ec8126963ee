import ArgumentParser
import Foundation
import H2
import LoadTool
import Logging
import MallocInterposerSwift
import NIOPosix
import Server
import ServiceLifecycle
import Wire
#if canImport(Glibc)
import Glibc
#endif

/// Heap allocations per scored request, in a real server process.
///
/// This process is the server (`ScoreServer` with the same metrics backend as `scenescore serve`:
/// TLS, nghttp2, routing, the registry, scoring, /metrics counters); h2load, in its own process,
/// is the client, so none of its allocations are counted. After a warm-up run, counting is
/// switched on for exactly one h2load run of `--requests` requests on one connection, one
/// stream at a time; the count divided by the requests is the number. Connection setup (TLS
/// handshake, channel) falls inside the window and is amortised over the run.
///
/// The probe links the interposer's library, which already puts its malloc ahead of libc's;
/// preloading it as well makes sure it wins every lookup, whatever the link order:
///     LD_PRELOAD=.build/release/libMallocInterposerSwift.so .build/release/AllocationProbe --model-dir var/models/default
@main
struct AllocationProbe: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Count heap allocations per /v1/score request (binary wire).")

    @Option(help: "Model directory.") var modelDir = "var/models/default"
    @Option(help: "Scene plugin directory.") var pluginDir = "var/plugins"
    @Option(help: "Scene to score (default: the first one served).") var scene: String?
    @Option(help: "TLS port to listen on.") var port = 18443
    @Option(help: "Candidates per request; repeat for several runs.") var candidates: [Int] = [1, 64]
    @Option(help: "Requests in the counted run.") var requests = 20_000
    @Option(help: "Requests in the warm-up run before it.") var warmup = 5_000
    @Option(help: "Event loop threads of the server.") var threads = 1
    @Option(help: "h2load executable.") var h2load = "/usr/bin/h2load"
    @Flag(help: "Also report where the allocations come from (call stacks grouped by first SceneScore frame).") var sites = false

    func run() async throws {
        let opensslCache = TLSContext.useThreadCachingAllocator()  // as the server's main does, first
        // Errors only: logging allocates, and the server logs nothing per request at this level.
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = .error
            return handler
        }
        let metrics = MetricsBackend.bootstrapPrometheus()
        let stateDir = NSTemporaryDirectory() + "scenescore-alloc-probe-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: stateDir) }
        var config = ServerConfig()
        config.port = port
        config.modelDir = modelDir
        config.pluginDir = pluginDir
        config.stateDir = stateDir
        config.threads = threads
        config.adminPort = 0
        let logger = Logger(label: "alloc-probe")
        let server = ScoreServer(config: config, logger: logger, renderMetrics: MetricsBackend.renderer(metrics))
        let group = ServiceGroup(configuration: .init(services: [.init(service: server)], logger: logger))
        async let served: Void = group.run()

        let scenes = try await waitUntilReady()
        guard let info = scene.map({ name in scenes.first { $0.name == name } }) ?? scenes.first else {
            throw ValidationError("scene \(scene ?? "-") is not served (served: \(scenes.map(\.name)))")
        }
        var results: [[String: Any]] = []
        for n in candidates {
            let body = NSTemporaryDirectory() + "scenescore-alloc-body-\(n)-\(UUID().uuidString).bin"
            defer { try? FileManager.default.removeItem(atPath: body) }
            try Data(Self.requestBody(info, candidates: n)).write(to: URL(fileURLWithPath: body))
            _ = try runH2load(requests: warmup, body: body)
            if sites { AllocationSites.start() }
            MallocInterposerSwift.initialize()
            MallocInterposerSwift.hook()
            let succeeded = try runH2load(requests: requests, body: body)
            MallocInterposerSwift.unhook()
            if sites { AllocationSites.stop() }
            let stats = MallocInterposerSwift.getStatistics()
            guard succeeded == requests else {
                throw ValidationError("h2load: \(succeeded) of \(requests) requests succeeded at \(n) candidates")
            }
            results.append(["candidates": n, "scene": info.name, "requests": requests, "allocations": stats.mallocCount,
                            "allocations_per_request": Double(stats.mallocCount) / Double(requests),
                            "bytes_per_request": Double(stats.mallocBytesCount) / Double(requests),
                            "frees": stats.freeCount]
                           .merging(sites ? ["sites": AllocationSites.report(requests: requests)] : [:]) { a, _ in a })
        }
        await group.triggerGracefulShutdown()
        try await served
        let counted = results.contains { ($0["allocations"] as? Int ?? 0) > 0 }
        let report: [String: Any] = ["interposer_active": counted, "threads": threads, "results": results,
                                     "openssl_thread_cache": opensslCache]
        let json = try JSONSerialization.data(withJSONObject: report, options: sites ? [.sortedKeys, .prettyPrinted] : [.sortedKeys])
        print(String(decoding: json, as: UTF8.self))
        if !counted {
            throw ValidationError("no allocation was counted: is malloc interposed? run with LD_PRELOAD=<build dir>/libMallocInterposerSwift.so")
        }
    }

    /// Polls /readyz (never liveness) and returns the served scenes.
    private func waitUntilReady() async throws -> [SceneInfo] {
        let tls = try TLSContext(trustedCAPath: nil, verify: false)
        let deadline = Date().addingTimeInterval(120)
        while Date() < deadline {
            if let client = try? await H2Client.connect(host: "127.0.0.1", port: port, tls: tls, serverName: "localhost",
                                                        group: MultiThreadedEventLoopGroup.singleton) {
                let ready = try? await client.request(method: "GET", path: "/readyz")
                let catalog = ready?.status == 200 ? try await client.request(method: "GET", path: "/v1/scenes") : nil
                await client.close()
                if let catalog { return try SceneInfo.parseCatalog(catalog.body) }
            }
            try await Task.sleep(nanoseconds: 50_000_000)
        }
        throw ValidationError("the server was not ready within 120 s")
    }

    /// A binary request for `info`'s raw schema with `n` candidates (fixed pseudo-random values).
    static func requestBody(_ info: SceneInfo, candidates n: Int) -> [UInt8] {
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        func next() -> UInt32 { state = state &* 6364136223846793005 &+ 1442695040888963407; return UInt32(truncatingIfNeeded: state >> 33) }
        let s = info.schema
        var out: [UInt8] = []
        WireCodec.encodeBinaryRequest(requestID: 1, scene: info.name,
                                      contextIDs: (0..<s.contextIDs).map { _ in next() % 100_000 },
                                      contextDense: (0..<s.contextDense).map { _ in Float(next() % 1000) / 1000 },
                                      itemIDs: (0..<(s.itemIDs * n)).map { _ in next() % 100_000 },
                                      itemDense: (0..<(s.itemDense * n)).map { _ in Float(next() % 1000) / 1000 },
                                      candidates: n, into: &out)
        return out
    }

    /// One h2load run (one connection, one stream at a time); returns the requests that succeeded.
    /// Spawned with posix_spawn and reaped with waitpid, so that waiting allocates nothing here,
    /// and without LD_PRELOAD, so h2load runs with the ordinary allocator.
    private func runH2load(requests: Int, body: String) throws -> Int {
        let output = body + ".h2load.txt"
        defer { try? FileManager.default.removeItem(atPath: output) }
        let arguments = [h2load, "-n", "\(requests)", "-c", "1", "-m", "1", "-t", "1", "-d", body,
                         "-H", "content-type: \(WireEncoding.binary.contentType)", "https://127.0.0.1:\(port)/v1/score"]
        let environment = ProcessInfo.processInfo.environment.filter { $0.key != "LD_PRELOAD" }.map { "\($0.key)=\($0.value)" }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, output, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        let argv = arguments.map { strdup($0) } + [nil]
        let envp = environment.map { strdup($0) } + [nil]
        defer { (argv + envp).forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, h2load, &actions, nil, argv, envp)
        guard rc == 0 else { throw ValidationError("cannot start \(h2load): \(String(cString: strerror(rc)))") }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
        let text = (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
        // "status codes: 20000 2xx, 0 3xx, 0 4xx, 0 5xx"
        guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix("status codes:") }),
              let twoXX = line.split(separator: " ").dropFirst(2).first.flatMap({ Int($0) }) else {
            throw ValidationError("h2load printed no status codes (exit status \(status)):\n\(text)")
        }
        return twoXX
    }
}
