import Foundation
import Histogram

/// A latency-by-percentile plot as SVG, in the style of HdrHistogram's plotter: the x axis is
/// the percentile on a log scale of 1/(1 − p) (50 %, 90 %, 99 %, 99.9 %, …), the y axis the
/// latency in milliseconds. One line per series (corrected and uncorrected; one per sweep step).
public enum PercentilePlot {
    public struct Series {
        public var label: String
        public var histogram: LatencyHistogram
        public var dashed: Bool

        public init(label: String, histogram: LatencyHistogram, dashed: Bool = false) {
            self.label = label
            self.histogram = histogram
            self.dashed = dashed
        }
    }

    static let palette = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]

    /// The points (x = log10(1/(1−p)), y = ms) of one histogram's percentile distribution.
    static func points(_ h: LatencyHistogram, maxX: Double) -> [(Double, Double)] {
        guard h.totalCount > 0 else { return [] }
        var out: [(Double, Double)] = []
        for v in h.percentiles(ticksPerHalfDistance: 5) {
            let p = v.percentileLevelIteratedTo / 100
            let x = p >= 1 ? maxX : min(maxX, log10(1 / (1 - p)))
            out.append((x, Double(v.value) / 1e6))
        }
        return out
    }

    public static func svg(title: String, series: [Series]) -> String {
        let width = 860.0, height = 480.0
        let left = 70.0, right = 200.0, top = 40.0, bottom = 60.0
        let plotW = width - left - right, plotH = height - top - bottom
        // Up to 99.999 % or as far as the data reaches (1/(1−p) bounded by the count).
        let maxCount = series.map { Double($0.histogram.totalCount) }.max() ?? 1
        let maxX = max(2, min(5, ceil(log10(max(maxCount, 10)))))
        let all = series.map { (s: $0, pts: points($0.histogram, maxX: maxX)) }
        let maxY = niceCeiling(all.flatMap { $0.pts.map(\.1) }.max() ?? 1)
        func px(_ x: Double) -> Double { left + x / maxX * plotW }
        func py(_ y: Double) -> Double { top + plotH - y / maxY * plotH }

        var svg = """
        <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" viewBox="0 0 \(Int(width)) \(Int(height))" font-family="sans-serif" font-size="12">
        <rect width="100%" height="100%" fill="white"/>
        <text x="\(left)" y="22" font-size="15">\(escape(title))</text>

        """
        // Grid and axes.
        for i in 0...Int(maxX) {
            let x = px(Double(i))
            let label = ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%"][i]
            svg += "<line x1=\"\(f(x))\" y1=\"\(f(top))\" x2=\"\(f(x))\" y2=\"\(f(top + plotH))\" stroke=\"#ddd\"/>\n"
            svg += "<text x=\"\(f(x))\" y=\"\(f(top + plotH + 18))\" text-anchor=\"middle\">\(label)</text>\n"
        }
        for i in 0...5 {
            let v = maxY * Double(i) / 5, y = py(v)
            svg += "<line x1=\"\(f(left))\" y1=\"\(f(y))\" x2=\"\(f(left + plotW))\" y2=\"\(f(y))\" stroke=\"#ddd\"/>\n"
            svg += "<text x=\"\(f(left - 6))\" y=\"\(f(y + 4))\" text-anchor=\"end\">\(Format.value((v * 1000).rounded() / 1000))</text>\n"
        }
        svg += "<rect x=\"\(f(left))\" y=\"\(f(top))\" width=\"\(f(plotW))\" height=\"\(f(plotH))\" fill=\"none\" stroke=\"#333\"/>\n"
        svg += "<text x=\"\(f(left + plotW / 2))\" y=\"\(f(height - 18))\" text-anchor=\"middle\">percentile</text>\n"
        svg += "<text transform=\"translate(18 \(f(top + plotH / 2))) rotate(-90)\" text-anchor=\"middle\">latency (ms)</text>\n"
        // Lines and legend.
        for (i, entry) in all.enumerated() where !entry.pts.isEmpty {
            let colour = palette[i % palette.count]
            let path = entry.pts.map { "\(f(px($0.0))),\(f(py($0.1)))" }.joined(separator: " ")
            svg += "<polyline fill=\"none\" stroke=\"\(colour)\" stroke-width=\"2\"\(entry.s.dashed ? " stroke-dasharray=\"6 4\"" : "") points=\"\(path)\"/>\n"
            let ly = top + 10 + Double(i) * 20
            svg += "<line x1=\"\(f(left + plotW + 14))\" y1=\"\(f(ly))\" x2=\"\(f(left + plotW + 40))\" y2=\"\(f(ly))\" stroke=\"\(colour)\" stroke-width=\"2\"\(entry.s.dashed ? " stroke-dasharray=\"6 4\"" : "")/>\n"
            svg += "<text x=\"\(f(left + plotW + 46))\" y=\"\(f(ly + 4))\">\(escape(entry.s.label))</text>\n"
        }
        svg += "</svg>\n"
        return svg
    }

    private static func f(_ v: Double) -> String { String(format: "%.1f", v) }

    private static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }

    /// 1, 2, 5 × 10^k at or above `v`.
    static func niceCeiling(_ v: Double) -> Double {
        guard v > 0 else { return 1 }
        let e = pow(10, floor(log10(v)))
        for m in [1.0, 2, 2.5, 5, 10] where m * e >= v { return m * e }
        return 10 * e
    }
}
