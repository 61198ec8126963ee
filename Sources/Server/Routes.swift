import H2
import Wire

/// The serving listener's routes. Parsed once per request, in `precheck`, which keeps the
/// result in the request's tag (`RequestTag`).
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

extension Route {
    /// A request's route: the one `precheck` noted in its tag, else parsed from its path
    /// (requests that never went through `precheck`, e.g. tests calling `respond` directly).
    init?(of head: H2RequestHead) {
        guard let route = RequestTag(head.tag).route ?? Route(path: head.path) else { return nil }
        self = route
    }
}

/// What `precheck` worked out about a request, carried in `H2RequestHead.tag` to `respond` so
/// neither the path nor the content type is parsed twice: the route in the low byte (0: not
/// noted, e.g. a model-ready path, whose scene name does not fit), the scoring encoding in the
/// next.
struct RequestTag {
    let raw: UInt16

    init(_ raw: UInt16) { self.raw = raw }

    init(route: Route, encoding: WireEncoding? = nil) {
        let routeCode: UInt16
        switch route {
        case .score: routeCode = 1
        case .scenes: routeCode = 2
        case .live: routeCode = 3
        case .readyz: routeCode = 4
        case .metrics: routeCode = 5
        case .modelReady: routeCode = 0
        }
        let encodingCode: UInt16
        switch encoding {
        case .binary?: encodingCode = 1
        case .json?: encodingCode = 2
        case nil: encodingCode = 0
        }
        raw = routeCode | encodingCode << 8
    }

    var route: Route? {
        switch raw & 0xFF {
        case 1: return .score
        case 2: return .scenes
        case 3: return .live
        case 4: return .readyz
        case 5: return .metrics
        default: return nil
        }
    }

    var encoding: WireEncoding? {
        switch raw >> 8 {
        case 1: return .binary
        case 2: return .json
        default: return nil
        }
    }
}
