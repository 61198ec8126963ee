import H2

/// The serving listener's routes. Parsed once per request: `precheck` stores nothing, so each
/// entry point parses the path itself, which costs one switch on a short string.
enum Route: Equatable {
    case score, scenes, live, readyz, metrics, modelReady(String)

    init?(path rawPath: String) {
        let path = rawPath.utf8.firstIndex(of: UInt8(ascii: "?")).map { String(rawPath[..<$0]) } ?? rawPath
        switch path {
        case "/v1/score": self = .score
        case "/v1/scenes": self = .scenes
        case "/healthz", "/v2/health/live": self = .live
        case "/readyz", "/v2/health/ready": self = .readyz
        case "/metrics": self = .metrics
        default:
            let parts = path.split(separator: "/", omittingEmptySubsequences: false)
            guard parts.count == 5, parts[1] == "v2", parts[2] == "models", parts[4] == "ready", !parts[3].isEmpty else { return nil }
            self = .modelReady(String(parts[3]))
        }
    }

    var allowed: String { self == .score ? "POST" : "GET, HEAD" }

    func allows(_ method: String) -> Bool {
        self == .score ? method == "POST" : (method == "GET" || method == "HEAD")
    }
}
