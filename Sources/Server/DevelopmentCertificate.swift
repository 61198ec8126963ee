import Foundation

/// A self-signed certificate for https://localhost, made on first run so the README's first
/// command serves TLS with nothing to prepare. Never used when a certificate is configured.
enum DevelopmentCertificate {
    struct Failure: Error, CustomStringConvertible { let description: String }

    /// Returns (certificate, key) paths under `directory`, creating them if missing.
    static func ensure(in directory: String) throws -> (cert: String, key: String) {
        let cert = directory + "/dev-cert.pem", key = directory + "/dev-key.pem"
        if FileManager.default.fileExists(atPath: cert), FileManager.default.fileExists(atPath: key) { return (cert, key) }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        // The openssl CLI (Debian's openssl package, installed by scripts/setup.sh) writes both
        // files in one step; EVP key generation from Swift would need variadic C calls.
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                       "-keyout", key, "-out", cert, "-days", "825", "-subj", "/CN=localhost",
                       "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1",
                       "-addext", "basicConstraints=critical,CA:TRUE"]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else {
            throw Failure(description: "could not create a development certificate with the openssl CLI (exit \(p.terminationStatus)); pass --tls-cert and --tls-key")
        }
        return (cert, key)
    }
}
