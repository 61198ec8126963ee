import Foundation

/// The repository root, found from this file's path (tests run from any directory).
let repositoryRoot: String = {
    var url = URL(fileURLWithPath: #filePath)
    for _ in 0..<3 { url.deleteLastPathComponent() }
    return url.path
}()

/// A fresh temporary directory, removed by the caller's `defer`.
func makeTemporaryDirectory() throws -> String {
    let path = NSTemporaryDirectory() + "scenescore-test-" + UUID().uuidString
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

struct ProcessFailure: Error, CustomStringConvertible { let description: String }

/// Runs `python3 <script> args…` from the repository root and fails on a non-zero exit.
func runPython(_ script: String, _ arguments: [String]) throws {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = ["python3", repositoryRoot + "/" + script] + arguments
    let err = Pipe()
    p.standardError = err
    p.standardOutput = FileHandle.nullDevice
    try p.run()
    let message = err.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    guard p.terminationStatus == 0 else {
        throw ProcessFailure(description: "\(script) failed: \(String(decoding: message, as: UTF8.self))")
    }
}

func readJSON(_ path: String) throws -> Any {
    try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path)))
}
