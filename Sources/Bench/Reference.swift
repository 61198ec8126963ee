import Foundation

/// Runs a Python anchor script (numpy/OpenBLAS) as a child process and decodes its JSON.
///
/// OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are removed for the child only: on this machine they
/// pin OpenBLAS to an older, slower kernel, and the comparison is against OpenBLAS at its best.
public enum PythonReference {
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    public static func run<T: Decodable>(script: String, arguments: [String] = [],
                                         decoding: T.Type) throws -> T {
        guard FileManager.default.fileExists(atPath: script) else {
            throw Failure(description: "reference script \(script) not found (run from the repository root or pass --reference)")
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", script] + arguments
        var env = ProcessInfo.processInfo.environment
        env["OPENBLAS_CORETYPE"] = nil
        env["OPENBLAS_L2_SIZE"] = nil
        env["OPENBLAS_NUM_THREADS"] = "1"
        process.environment = env
        let out = Pipe()
        process.standardOutput = out
        try process.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw Failure(description: "\(script) exited with status \(process.terminationStatus)")
        }
        return try JSONDecoder().decode(T.self, from: data)
    }
}
