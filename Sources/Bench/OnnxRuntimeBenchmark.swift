import Foundation
import Kernels
import Model
internal import CShims

/// `scenescore bench model --against onnxruntime`: the forward pass against ONNX Runtime running the
/// same model (exported by Proto/python/scenescore_onnx), one thread each, both pinned to one core.
///
/// ONNX Runtime runs in `scripts/bench/ort_reference.py`, a child process that builds its sessions
/// once and answers commands on stdin/stdout, so the two sides alternate: every round measures each
/// N here, then the same N there. Both sides score the same inputs (generated here), and before any
/// timing their scores must agree within `tolerance`, or the benchmark fails.
///
/// The pip wheel has no C API library, so ONNX Runtime is called from Python: `run_with_iobinding`
/// with the inputs bound once and the output preallocated (raw), and the same call on a no-op graph
/// with the same inputs and output (overhead: the Python call, ORT's per-`Run` fixed cost and one
/// trivial kernel). The ratio uses raw − overhead, which is at most what a C API caller would see.
public struct OnnxRuntimeReport: Encodable, Sendable {
    public struct Row: Encodable, Sendable {
        public let candidates: Int
        /// Medians over rounds, µs per request.
        public let scenescoreMicroseconds: Double
        public let onnxruntimeRawMicroseconds: Double
        public let onnxruntimeOverheadMicroseconds: Double
        /// Median over rounds of raw − overhead (each round's pair measured back to back).
        public let onnxruntimeMicroseconds: Double
        /// Median over rounds of (raw − overhead) / scenescore: > 1 means scenescore is faster.
        public let ratio: Double
        /// Median over rounds of raw / scenescore (Python's call included).
        public let rawRatio: Double
        /// Largest |scenescore − onnxruntime| over the N × K scores, checked before timing.
        public let maxAbsDifference: Double
    }

    public let model: String
    public let cpu: String
    /// scenescore's GEMM loop (`KernelISA`) and why it was chosen.
    public let kernels: String
    public let onnxruntime: String
    public let core: Int
    public let rounds: Int
    public let overheadGraph: String
    public let ratioUses: String
    public let tolerance: Double
    /// True once every N's scores agreed within `tolerance` (otherwise `measure` throws).
    public let outputsChecked: Bool
    public let rows: [Row]

    public static let standardCandidates = [1, 4, 16, 64, 256, 1024]

    public static func measure(modelDirectory: String, scene: String?, candidates: [Int] = standardCandidates,
                               rounds: Int = 10, core: Int = 0, script: String = "scripts/bench/ort_reference.py",
                               secondsPerMeasurement: Double = 0.1, tolerance: Double = 1e-5) throws -> OnnxRuntimeReport {
        let set = try ModelSet(directory: modelDirectory)
        let head = try ModelReport.benchmarkHead(set, scene: scene)
        try pinCurrentThread(to: core)  // before the child starts: it inherits the mask (and sets it itself)
        let ort = try OnnxRuntimeChild(script: script, modelDirectory: modelDirectory, scene: head.spec.scene, core: core)
        defer { ort.close() }
        guard ort.hello.headVersion == head.spec.version else {
            throw PythonReference.Failure(description: "\(script) exported head \(ort.hello.headVersion), scenescore loaded \(head.spec.version)")
        }

        let ws = ForwardWorkspace()
        var cases: [BenchCase] = []
        for n in candidates {
            let c = BenchCase(n: n, spec: set.backbone.spec, outputs: head.spec.outputs.count)
            c.score(set.backbone, head, ws)
            let theirs = try ort.scores(for: c)
            c.maxAbsDifference = try compare(c, theirs, tolerance: tolerance)
            cases.append(c)
        }

        var ours = [[Double]](repeating: [], count: cases.count)
        var raw = ours, overhead = ours
        for _ in 0..<rounds {
            for (i, c) in cases.enumerated() {
                ours[i].append(c.secondsPerCall(set.backbone, head, ws, minSeconds: secondsPerMeasurement))
                let t = try ort.time(n: c.n, seconds: secondsPerMeasurement)
                raw[i].append(t.model)
                overhead[i].append(t.noop)
            }
        }

        let rows = cases.indices.map { i in
            let net = zip(raw[i], overhead[i]).map { $0 - $1 }
            return Row(candidates: cases[i].n, scenescoreMicroseconds: median(ours[i]) * 1e6,
                       onnxruntimeRawMicroseconds: median(raw[i]) * 1e6,
                       onnxruntimeOverheadMicroseconds: median(overhead[i]) * 1e6,
                       onnxruntimeMicroseconds: median(net) * 1e6,
                       ratio: median(zip(net, ours[i]).map { $0 / $1 }),
                       rawRatio: median(zip(raw[i], ours[i]).map { $0 / $1 }),
                       maxAbsDifference: cases[i].maxAbsDifference)
        }
        return OnnxRuntimeReport(
            model: "\(modelDirectory) (scene \(head.spec.scene), head \(head.spec.version))", cpu: cpuModel(),
            kernels: "\(KernelISA.active.rawValue) (\(KernelISA.selection.reason))",
            onnxruntime: "onnxruntime \(ort.hello.onnxruntime), CPUExecutionProvider, intra- and inter-op 1 thread, sequential, ORT_ENABLE_ALL",
            core: core, rounds: rounds, overheadGraph: ort.hello.noop,
            ratioUses: "onnxruntimeMicroseconds: run_with_iobinding on the model minus the same call on the overhead graph",
            tolerance: tolerance, outputsChecked: true, rows: rows)
    }

    /// Fails, naming the worst score, unless every score agrees within `tolerance`.
    static func compare(_ c: BenchCase, _ theirs: [Float], tolerance: Double) throws -> Double {
        guard theirs.count == c.out.count else {
            throw PythonReference.Failure(description: "N=\(c.n): onnxruntime returned \(theirs.count) scores, scenescore \(c.out.count)")
        }
        var worst = 0.0, at = 0
        for i in theirs.indices {
            let d = abs(Double(theirs[i]) - Double(c.out[i]))
            if d.isNaN { worst = d; at = i; break }
            if d > worst { worst = d; at = i }
        }
        guard worst <= tolerance else {
            let k = c.out.count / c.n
            throw PythonReference.Failure(description: "N=\(c.n): scenescore and onnxruntime disagree: candidate \(at / k), output \(at % k): "
                                          + "scenescore \(c.out[at]), onnxruntime \(theirs[at]) (|diff| \(worst) > \(tolerance)); not timing")
        }
        return worst
    }

    public var markdown: String {
        var lines = ["| candidates | scenescore µs | onnxruntime µs (raw − overhead) | raw µs | overhead µs | ratio | raw ratio | max \\|diff\\| |",
                     "|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in rows {
            lines.append("| \(r.candidates) | \(format(r.scenescoreMicroseconds, 1)) | \(format(r.onnxruntimeMicroseconds, 1)) | "
                         + "\(format(r.onnxruntimeRawMicroseconds, 1)) | \(format(r.onnxruntimeOverheadMicroseconds, 1)) | "
                         + "\(format(r.ratio, 2)) | \(format(r.rawRatio, 2)) | \(String(format: "%.1e", r.maxAbsDifference)) |")
        }
        lines += ["",
                  "µs per request, medians of \(rounds) interleaved rounds (ratios: medians of the per-round ratios; > 1: scenescore is faster)",
                  "raw: InferenceSession.run_with_iobinding from Python, inputs bound once, output preallocated",
                  "overhead: the same call on a graph with the same inputs and output, \(overheadGraph) (Python + ORT's per-Run cost)",
                  "ratio = (raw − overhead) / scenescore; outputs agreed within \(tolerance) before timing",
                  "model: \(model)", "\(onnxruntime)", "both pinned to core \(core): \(cpu)", "scenescore kernels: \(kernels)"]
        return lines.joined(separator: "\n")
    }
}

/// One N's inputs (seeded, identical for both sides) and scenescore's scores.
final class BenchCase {
    let n: Int
    let contextIDs: [UInt32], contextDense: [Float], itemIDs: [UInt32], itemDense: [Float]
    var out: [Float]
    var maxAbsDifference = 0.0

    init(n: Int, spec: BackboneSpec, outputs: Int) {
        var rng = Random(seed: UInt64(n))
        self.n = n
        contextIDs = (0..<spec.contextFields.count).map { _ in UInt32(truncatingIfNeeded: rng.next()) }
        contextDense = (0..<spec.contextDense).map { _ in rng.nextFloat() }
        itemIDs = (0..<(n * spec.itemFields.count)).map { _ in UInt32(truncatingIfNeeded: rng.next()) }
        itemDense = (0..<(n * spec.itemDense)).map { _ in rng.nextFloat() }
        out = [Float](repeating: 0, count: n * outputs)
    }

    /// Scores once into `out`.
    func score(_ backbone: Backbone, _ head: AdapterHead, _ ws: ForwardWorkspace) {
        withInput { input, o in Forward.score(input, backbone: backbone, head: head, workspace: ws, into: o) }
    }

    /// Seconds per forward pass, one trial of at least `minSeconds` (pointers taken outside the loop).
    func secondsPerCall(_ backbone: Backbone, _ head: AdapterHead, _ ws: ForwardWorkspace, minSeconds: Double) -> Double {
        withInput { input, o in
            medianSecondsPerCall(trials: 1, minSeconds: minSeconds) {
                Forward.score(input, backbone: backbone, head: head, workspace: ws, into: o)
            }
        }
    }

    private func withInput<R>(_ body: (ScoringInput, UnsafeMutableBufferPointer<Float>) -> R) -> R {
        contextIDs.withUnsafeBytes { ci in contextDense.withUnsafeBytes { cd in
            itemIDs.withUnsafeBytes { ii in itemDense.withUnsafeBytes { id in
                out.withUnsafeMutableBufferPointer { o in
                    body(ScoringInput(candidates: n, contextIDs: ci, contextDense: cd, itemIDs: ii, itemDense: id), o)
                }
            }}
        }}
    }
}

/// scripts/bench/ort_reference.py as a long-lived child: one JSON line per command and per answer.
final class OnnxRuntimeChild {
    struct Hello: Decodable { let onnxruntime: String, headVersion: String, noop: String, core: Int }
    struct Timing: Decodable { let model: Double, noop: Double }
    private struct Scores: Decodable { let scores: String }
    private struct Problem: Decodable { let error: String? }
    private struct Command: Encodable {
        let cmd: String, n: Int
        var seconds: Double?
        var contextIDs: String?, contextDense: String?, itemIDs: String?, itemDense: String?
    }

    private let script: String
    private let process = Process()
    private let stdin = Pipe(), stdout = Pipe()
    private var pending: [UInt8] = []
    private(set) var hello: Hello!

    init(script: String, modelDirectory: String, scene: String, core: Int) throws {
        guard FileManager.default.fileExists(atPath: script) else {
            throw PythonReference.Failure(description: "\(script) not found (run from the repository root or pass --ort-reference)")
        }
        self.script = script
        signal(SIGPIPE, SIG_IGN)  // a child that died is reported from its exit status, not by SIGPIPE
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", script, "--model-dir", modelDirectory, "--scene", scene, "--core", String(core)]
        var env = ProcessInfo.processInfo.environment
        env["OMP_NUM_THREADS"] = "1"
        process.environment = env
        process.standardInput = stdin
        process.standardOutput = stdout  // stderr is ours: its errors reach the terminal
        try process.run()
        hello = try decode(Hello.self, from: try readLine())
    }

    func scores(for c: BenchCase) throws -> [Float] {
        func b64<T>(_ a: [T]) -> String { a.withUnsafeBytes { Data($0) }.base64EncodedString() }
        let reply = try request(Command(cmd: "inputs", n: c.n, contextIDs: b64(c.contextIDs), contextDense: b64(c.contextDense),
                                        itemIDs: b64(c.itemIDs), itemDense: b64(c.itemDense)), Scores.self)
        guard let data = Data(base64Encoded: reply.scores), data.count % 4 == 0 else {
            throw PythonReference.Failure(description: "\(script): N=\(c.n): scores are not base64 float32")
        }
        var out = [Float](repeating: 0, count: data.count / 4)
        _ = out.withUnsafeMutableBytes { data.copyBytes(to: $0) }
        return out
    }

    func time(n: Int, seconds: Double) throws -> Timing {
        try request(Command(cmd: "time", n: n, seconds: seconds), Timing.self)
    }

    /// Closes its stdin (it exits at EOF) and waits for it.
    func close() {
        try? stdin.fileHandleForWriting.close()
        process.waitUntilExit()
    }

    private func request<T: Decodable>(_ command: Command, _ type: T.Type) throws -> T {
        do {
            try stdin.fileHandleForWriting.write(contentsOf: try JSONEncoder().encode(command) + [UInt8(ascii: "\n")])
        } catch {
            throw PythonReference.Failure(description: "\(script) no longer reads its commands (\(error))")
        }
        return try decode(T.self, from: try readLine())
    }

    private func decode<T: Decodable>(_ type: T.Type, from line: [UInt8]) throws -> T {
        if let problem = try? JSONDecoder().decode(Problem.self, from: Data(line)), let error = problem.error {
            throw PythonReference.Failure(description: "\(script): \(error)")
        }
        do { return try JSONDecoder().decode(T.self, from: Data(line)) } catch {
            throw PythonReference.Failure(description: "\(script) answered \(String(decoding: line.prefix(200), as: UTF8.self)): \(error)")
        }
    }

    private func readLine() throws -> [UInt8] {
        while true {
            if let end = pending.firstIndex(of: UInt8(ascii: "\n")) {
                defer { pending.removeFirst(end + 1) }
                return Array(pending[..<end])
            }
            let chunk = stdout.fileHandleForReading.availableData
            if chunk.isEmpty {
                process.waitUntilExit()
                throw PythonReference.Failure(description: "\(script) exited with status \(process.terminationStatus) (its message is above)")
            }
            pending += chunk
        }
    }
}

/// Pins the calling thread to `core` (children started from it inherit the mask).
func pinCurrentThread(to core: Int) throws {
    let status = scenescore_pin_thread_to_cpu(Int32(clamping: core))
    guard status == 0 else {
        throw PythonReference.Failure(description: "cannot pin to core \(core): \(String(cString: strerror(status)))")
    }
}

/// /proc/cpuinfo's first "model name" (Linux), else "unknown CPU".
func cpuModel() -> String {
    guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
          let line = text.split(separator: "\n").first(where: { $0.hasPrefix("model name") }),
          let colon = line.firstIndex(of: ":") else { return "unknown CPU" }
    return line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
}

func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    return sorted.isEmpty ? .nan : (sorted.count % 2 == 1 ? sorted[sorted.count / 2]
                                                          : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2)
}
