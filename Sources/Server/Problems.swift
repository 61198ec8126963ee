import Foundation
import H2
import Wire

/// Responses every route renders the same way: problem+json (RFC 9457) and small JSON bodies.
enum Responses {
    static let jsonHeaders = [(name: "content-type", value: "application/json")]

    static func problem(_ error: WireError) -> H2Response {
        H2Response(status: error.status, headers: [("content-type", WireError.problemContentType)], body: error.problemJSON())
    }

    static func problem(status: Int, slug: String, _ detail: String) -> H2Response {
        problem(WireError(status: status, slug: slug, detail: detail))
    }

    static func notReady(_ detail: String = "models are loading") -> H2Response {
        var r = problem(.notReady(detail))
        r.headers.append(("retry-after", "1"))
        return r
    }

    static func json(_ status: Int, _ object: Any) -> H2Response {
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8)
        return H2Response(status: status, headers: jsonHeaders, body: Array(data))
    }
}
