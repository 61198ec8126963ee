import Foundation
import Testing
import Wire
@testable import LoadTool

/// The load tool's pure parts: command-line values, request generation, response checks, the
/// sweep's stability rule and the report files. (The tool against a real server: Tests/load.)
@Suite struct SettingsTests {
    @Test func targets() throws {
        #expect(try LoadTarget.parse("https://127.0.0.1:8443") == LoadTarget(tls: true, host: "127.0.0.1", port: 8443, path: "/v1/score"))
        #expect(try LoadTarget.parse("http://localhost:9/score-1?x=1") == LoadTarget(tls: false, host: "localhost", port: 9, path: "/score-1?x=1"))
        #expect(try LoadTarget.parse("https://example.test").port == 443)
        #expect(try LoadTarget.parse("https://[::1]:8443").authority == "[::1]:8443")
        for bad in ["", "localhost:8443", "ftp://host:1", "https://:8443", "https://host:0"] {
            #expect(throws: LoadError.self) { try LoadTarget.parse(bad) }
        }
    }

    @Test func durations() {
        #expect(parseDuration("10s") == 10)
        #expect(parseDuration("200ms") == 0.2)
        #expect(parseDuration("1.5m") == 90)
        #expect(parseDuration("500us") == 0.0005)
        #expect(parseDuration("3") == 3)
        #expect(parseDuration("-1s") == nil)
        #expect(parseDuration("soon") == nil)
    }

    @Test func candidateDistributions() throws {
        var rng = SplitMix64(seed: 3)
        #expect(try CandidateDistribution.parse("16").draw(&rng) == 16)
        let range = try CandidateDistribution.parse("2-5")
        let draws = (0..<2000).map { _ in range.draw(&rng) }
        #expect(Set(draws) == [2, 3, 4, 5])
        let weighted = try CandidateDistribution.parse("1:3, 64:1")
        let ones = (0..<4000).filter { _ in weighted.draw(&rng) == 1 }.count
        #expect(abs(Double(ones) / 4000 - 0.75) < 0.03)
        #expect(try CandidateDistribution.parse("1,4,16").choices.map(\.count) == [1, 4, 16])
        for bad in ["0", "5-2", "x", "1:-1", "1:2:3", ""] {
            #expect(throws: LoadError.self) { try CandidateDistribution.parse(bad) }
        }
    }

    @Test func scenesAndSweeps() throws {
        #expect(try SceneWeight.parse("apparel:2.5") == SceneWeight(scene: "apparel", weight: 2.5))
        #expect(throws: LoadError.self) { try SceneWeight.parse("apparel:0") }
        let sweep = try SweepSpec.parse("rate:1000,2500.5")
        #expect(sweep.dimension == .rate && sweep.values == [1000, 2500.5])
        #expect(throws: LoadError.self) { try SweepSpec.parse("streams:1.5") }
        #expect(throws: LoadError.self) { try SweepSpec.parse("threads:1,2") }
    }

    @Test func crossOptionChecks() throws {
        var s = LoadSettings(target: try LoadTarget.parse("http://h:1"))
        try s.validate()
        s.sweep = try SweepSpec.parse("rate:10,20")
        #expect(throws: LoadError.self) { try s.validate() }  // a rate sweep needs --rate
        s.mode = .open(rate: 10, arrival: .poisson)
        try s.validate()
        s.swap = SwapSpec(every: 0.2, heads: [], adminURL: "https://h:2", token: nil, adminCACert: nil)
        #expect(throws: LoadError.self) { try s.validate() }
        s.swap = nil
        s.source = .generated(scenes: [SceneWeight(scene: "Bad", weight: 1)], candidates: CandidateDistribution(fixed: 1), bodies: 1)
        #expect(throws: LoadError.self) { try s.validate() }
    }
}

@Suite struct RequestPoolTests {
    static let catalog = [
        SceneInfo(name: "apparel", headVersion: "apparel-1", outputs: ["click", "purchase"],
                  schema: WireSchema(contextIDs: 1, contextDense: 4, itemIDs: 3, itemDense: 17)),
        SceneInfo(name: "beauty", headVersion: "beauty-1", outputs: ["click"],
                  schema: WireSchema(contextIDs: 2, contextDense: 0, itemIDs: 1, itemDense: 5)),
    ]

    @Test func catalogParses() throws {
        let body = Array(#"{"scenes": [{"scene": "apparel", "head_version": "apparel-1", "outputs": ["click"], "context_ids": 1, "context_dense": 4, "item_ids": 3, "item_dense": 17}]}"#.utf8)
        let scenes = try SceneInfo.parseCatalog(body)
        #expect(scenes == [SceneInfo(name: "apparel", headVersion: "apparel-1", outputs: ["click"],
                                     schema: WireSchema(contextIDs: 1, contextDense: 4, itemIDs: 3, itemDense: 17))])
        #expect(throws: LoadError.self) { try SceneInfo.parseCatalog(Array("[]".utf8)) }
    }

    @Test func generatedBodiesDecodeAndFitTheirScene() throws {
        let pool = try RequestPool.generate(catalog: Self.catalog, chosen: [], candidates: try .parse("1-9"), bodies: 20, seed: 7)
        #expect(pool.requests.count == 40 && pool.scenes == ["apparel", "beauty"])
        for r in pool.requests {
            let decoded = try WireCodec.decodeBinaryRequest(r.body.bytes, limits: WireLimits())
            let info = Self.catalog[r.scene]
            #expect(decoded.scene == info.name && decoded.candidates == r.candidates && r.outputs == info.outputs.count)
            try decoded.check(against: info.schema)
            #expect(r.body.requestIDOffset == 8)
        }
        // Same seed, same bytes.
        let again = try RequestPool.generate(catalog: Self.catalog, chosen: [], candidates: try .parse("1-9"), bodies: 20, seed: 7)
        #expect(zip(pool.requests, again.requests).allSatisfy { Array($0.body.bytes) == Array($1.body.bytes) })
    }

    @Test func sceneWeightsPickInProportion() throws {
        let pool = try RequestPool.generate(catalog: Self.catalog, chosen: [SceneWeight(scene: "beauty", weight: 3), SceneWeight(scene: "apparel", weight: 1)],
                                            candidates: CandidateDistribution(fixed: 2), bodies: 4, seed: 1)
        #expect(pool.scenes == ["beauty", "apparel"])
        var rng = SplitMix64(seed: 9)
        let beauty = (0..<8000).filter { _ in pool.requests[pool.pick(&rng)].scene == 0 }.count
        #expect(abs(Double(beauty) / 8000 - 0.75) < 0.02)
    }

    @Test func unknownSceneIsOneLine() {
        #expect(throws: LoadError.self) {
            try RequestPool.generate(catalog: Self.catalog, chosen: [SceneWeight(scene: "shoes", weight: 1)],
                                     candidates: CandidateDistribution(fixed: 1), bodies: 1, seed: 1)
        }
        do {
            _ = try RequestPool.generate(catalog: Self.catalog, chosen: [SceneWeight(scene: "shoes", weight: 1)],
                                         candidates: CandidateDistribution(fixed: 1), bodies: 1, seed: 1)
        } catch {
            #expect(error.message == "unknown scene 'shoes' (the server serves: apparel, beauty)")
        }
    }
}

@Suite struct ResponseCheckTests {
    static func response(requestID: UInt64 = 42, version: String = "apparel-1", candidates: Int = 3, outputs: [String] = ["click", "purchase"]) -> [UInt8] {
        var out: [UInt8] = []
        let scores = [Float](repeating: 0.5, count: candidates * outputs.count)
        scores.withUnsafeBufferPointer {
            WireCodec.encodeBinaryResponse(requestID: requestID, scene: "apparel", headVersion: version, outputs: outputs,
                                           scores: $0, candidates: candidates, into: &out)
        }
        return out
    }

    static func check(_ level: CheckLevel = .fast, status: Int = 200, header: String? = "apparel-1", body: [UInt8],
                      expect: ResponseExpectation = ResponseExpectation(requestID: 42, candidates: 3, outputs: 2)) -> Verdict {
        body.withUnsafeBytes { b in
            if let header {
                return Array(header.utf8).withUnsafeBytes { ResponseCheck.check(level: level, status: status, header: $0, body: b, expect: expect) }
            }
            return ResponseCheck.check(level: level, status: status, header: nil, body: b, expect: expect)
        }
    }

    @Test func goodResponses() {
        let body = Self.response()
        guard case .ok(let range) = Self.check(body: body) else { Issue.record("fast check failed"); return }
        #expect(String(decoding: body[range], as: UTF8.self) == "apparel-1")
        #expect(Self.check(.full, body: body) == .ok(versionRange: range))
        #expect(Self.check(.status, header: nil, body: []) == .ok(versionRange: 0..<0))
        // A version with bytes outside the unreserved set travels percent-encoded in the header.
        let odd = Self.response(version: "v 1/ä")
        #expect(Self.check(header: WireCodec.headVersionHeader("v 1/ä"), body: odd) != .invalid("x-scenescore-head-version header differs from the body's head version"))
        if case .ok = Self.check(header: "v%201%2F%C3%A4", body: odd) {} else { Issue.record("percent-encoded header not matched") }
    }

    @Test func wrongResponses() {
        let body = Self.response()
        #expect(Self.check(status: 503, body: body) == .status(503))
        #expect(Self.check(body: Self.response(requestID: 41)) == .invalid("request id mismatch"))
        #expect(Self.check(body: Self.response(candidates: 2)) == .invalid("candidate count mismatch"))
        #expect(Self.check(body: Self.response(outputs: ["click"])) == .invalid("output count mismatch"))
        #expect(Self.check(body: Array(body.dropLast(8))) == .invalid("response length does not match its count of scores"))
        #expect(Self.check(header: nil, body: body) == .invalid("missing x-scenescore-head-version header"))
        #expect(Self.check(header: "apparel-2", body: body) == .invalid("x-scenescore-head-version header differs from the body's head version"))
        #expect(Self.check(body: Array(body.prefix(20))) == .invalid("response shorter than its 32-byte header"))
        var badScore = body
        badScore[badScore.count - 1] = 0x7F  // a score that is NaN: only the full check reads scores
        if case .ok = Self.check(body: badScore) {} else { Issue.record("fast check reads scores") }
        guard case .invalid(let why) = Self.check(.full, body: badScore) else { Issue.record("full check missed a NaN"); return }
        #expect(why.hasPrefix("malformed response: "))
    }

    @Test func problemSlug() {
        let body = Array(#"{"type": "https://scenescore.dev/problems/unknown-scene", "status": 404}"#.utf8)
        #expect(body.withUnsafeBytes { ResponseCheck.problemSlug($0) } == "unknown-scene")
        #expect(Array("nope".utf8).withUnsafeBytes { ResponseCheck.problemSlug($0) } == nil)
    }
}

@Suite struct ReportTests {
    static func window(requests: Int, latencyMicros: UInt64) -> WindowStats {
        var w = WindowStats()
        for _ in 0..<requests { Latency.record(&w.all.corrected, latencyMicros * 1000) }
        w.all.ok = requests
        return w
    }

    @Test func windowsAgreeWithinTolerance() {
        let a = (Self.window(requests: 1000, latencyMicros: 200), 1.0)
        #expect(SweepRow.agree(a, (Self.window(requests: 1050, latencyMicros: 210), 1.0), tolerance: 0.1))
        #expect(!SweepRow.agree(a, (Self.window(requests: 1200, latencyMicros: 200), 1.0), tolerance: 0.1))
        #expect(!SweepRow.agree(a, (Self.window(requests: 1000, latencyMicros: 300), 1.0), tolerance: 0.1))
        #expect(SweepRow.agree(a, (Self.window(requests: 2000, latencyMicros: 200), 2.0), tolerance: 0.1))  // same rate
    }

    @Test func percentileDistributionIsHgrm() {
        var h = Latency.histogram()
        for v in 1...1000 { Latency.record(&h, UInt64(v) * 1_000_000) }  // 1…1000 ms
        let text = percentileDistribution(h)
        let lines = text.split(separator: "\n")
        #expect(lines[0].contains("Value") && lines[0].contains("Percentile") && lines[0].contains("TotalCount"))
        #expect(text.contains("#[Mean    ="))
        #expect(text.contains("#[Max     =     1000.")) // milliseconds
        let p = Percentiles(h)
        #expect(abs(p.p50 - 500) < 1 && abs(p.p99 - 990) < 1 && abs(p.max - 1000) < 1)
    }

    @Test func plotHasOneLinePerSeries() {
        var a = Latency.histogram(), b = Latency.histogram()
        for v in 1...500 { Latency.record(&a, UInt64(v) * 10_000); Latency.record(&b, UInt64(v) * 20_000) }
        let svg = PercentilePlot.svg(title: "t <&>", series: [.init(label: "a", histogram: a), .init(label: "b", histogram: b, dashed: true)])
        #expect(svg.components(separatedBy: "<polyline").count - 1 == 2)
        #expect(svg.hasPrefix("<svg ") && svg.hasSuffix("</svg>\n"))
        #expect(svg.contains("t &lt;&amp;&gt;"))
    }

    @Test func formats() {
        #expect(Format.count(1234567) == "1,234,567")
        #expect(Format.ms(0.25) == "250 µs")
        #expect(Format.ms(12.34) == "12.3 ms")
        #expect(Format.table(header: ["", "x"], rows: [["row", "1"]]) == "     x\nrow  1")
    }
}
