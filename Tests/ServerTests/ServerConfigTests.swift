import Foundation
import Testing
@testable import Server

@Suite struct ServerConfigTests {
    @Test func precedenceIsDefaultsThenFileThenEnvironmentThenFlags() throws {
        let file = NSTemporaryDirectory() + "scenescore-config-\(UUID().uuidString).json"
        defer { try? FileManager.default.removeItem(atPath: file) }
        try Data(#"{"port": 9443, "maxCandidates": 64, "streamTimeout": 2.5, "host": "0.0.0.0"}"#.utf8)
            .write(to: URL(fileURLWithPath: file))
        var config = ServerConfig()
        #expect(config.port == 8443 && config.maxCandidates == 1024)
        try config.apply(configFile: file)
        #expect(config.port == 9443 && config.maxCandidates == 64 && config.host == "0.0.0.0")
        #expect(config.limits.streamTimeout == .milliseconds(2500))
        try config.apply(environment: ["SCENESCORE_MAX_CANDIDATES": "32", "SCENESCORE_TLS_CLIENT_CA": "/ca.pem", "UNRELATED": "x"])
        #expect(config.maxCandidates == 32 && config.tlsClientCA == "/ca.pem" && config.port == 9443)
        try config.set("maxCandidates", "16", source: "flag --max-candidates")
        #expect(config.maxCandidates == 16)
    }

    @Test func environmentNames() {
        #expect(ServerConfig.environmentName("h2cPort") == "SCENESCORE_H2C_PORT")
        #expect(ServerConfig.environmentName("tlsClientCA") == "SCENESCORE_TLS_CLIENT_CA")
        #expect(ServerConfig.environmentName("adminClientCA") == "SCENESCORE_ADMIN_CLIENT_CA")
        #expect(ServerConfig.environmentName("adminTokenFile") == "SCENESCORE_ADMIN_TOKEN_FILE")
        #expect(ServerConfig.environmentName("maxQueueDelayMicroseconds") == "SCENESCORE_MAX_QUEUE_DELAY_MICROSECONDS")
        #expect(ServerConfig.environmentName("maxHeaderListBytes") == "SCENESCORE_MAX_HEADER_LIST_BYTES")
    }

    @Test func badValuesSayWhereAndWhat() throws {
        var config = ServerConfig()
        do {
            try config.apply(environment: ["SCENESCORE_PORT": "eighty"])
            Issue.record("accepted a non-numeric port")
        } catch {
            #expect("\(error)".contains("SCENESCORE_PORT") && "\(error)".contains("eighty"))
        }
        #expect(throws: ServerConfig.Invalid.self) { try config.set("idleTimeout", "-1", source: "test") }
        #expect(throws: ServerConfig.Invalid.self) { try config.set("noSuchKey", "1", source: "test") }
        #expect(throws: ServerConfig.Invalid.self) { try config.apply(configFile: "/nonexistent/scenescore.json") }
    }
}
