import Foundation
import Model

extension EvaluationReport {
    /// One table per ρ: rows are methods and the reference rows, columns are target fractions,
    /// cells are soft AUC mean ± sd over seeds with the lift in brackets; then the full metrics.
    public var markdown: String {
        var out = "# Cross-scene transfer: evaluation\n\n"
        out += "Seeds \(config.seeds.map(String.init).joined(separator: ", ")); target fractions \(config.fractions.map(Self.percent).joined(separator: ", ")); "
        out += "wall time \(String(format: "%.0f", wallSeconds)) s; \(trainingSamples) training samples at \(String(format: "%.0f", trainingSamplesPerSecond)) samples/s.\n\n"
        out += "Cells: soft AUC, mean ± sd over seeds (lift = (AUC − 0.5)/(AUC* − 0.5) from the soft AUC).\n"
        for rho in config.rhos {
            out += "\n## ρ = \(Evaluation.rhoKey(rho))\n\n"
            out += "| method | " + config.fractions.map(Self.percent).joined(separator: " | ") + " |\n"
            out += "|---|" + String(repeating: "---:|", count: config.fractions.count) + "\n"
            for method in config.methods {
                let row = config.fractions.map { f -> String in
                    guard let c = cell(rho, f, method) else { return "" }
                    return "\(c.softAUC.formatted()) (\(String(format: "%.2f", c.lift.mean)))"
                }
                out += "| \(method.label) | " + row.joined(separator: " | ") + " |\n"
            }
            if let c = ceilings[Evaluation.rhoKey(rho)] {
                let zs = c["zeroShotCeiling"]!.formatted(), star = c["aucStar"]!.formatted()
                out += "| zero-shot ceiling (source label function) | " + Array(repeating: zs, count: config.fractions.count).joined(separator: " | ") + " |\n"
                out += "| AUC* (Bayes-optimal) | " + Array(repeating: star, count: config.fractions.count).joined(separator: " | ") + " |\n"
            }
        }
        out += "\n## All metrics\n\n| ρ | fraction | method | AUC | soft AUC | AUC/AUC* | lift | logloss | source AUC after adaptation |\n|---:|---:|---|---:|---:|---:|---:|---:|---:|\n"
        for c in cells {
            out += "| \(Evaluation.rhoKey(c.rho)) | \(Self.percent(c.fraction)) | \(c.method) | \(c.auc.formatted()) | \(c.softAUC.formatted()) | \(c.aucOverAUCStar.formatted()) | \(c.lift.formatted(3)) | \(c.logloss.formatted()) | \(c.sourceAUC?.formatted() ?? "—") |\n"
        }
        return out
    }

    func cell(_ rho: Double, _ fraction: Double, _ method: TransferMethod) -> EvaluationCell? {
        cells.first { $0.rho == rho && $0.fraction == fraction && $0.method == method.rawValue }
    }

    static func percent(_ f: Double) -> String { String(format: f * 100 < 1 ? "%.1f%%" : "%.0f%%", f * 100) }

    /// Lift against target fraction (log scale), one line per method, one panel per ρ.
    public var svg: String {
        let panelW = 360.0, panelH = 260.0, margin = (left: 52.0, right: 12.0, top: 30.0, bottom: 40.0)
        let width = panelW * Double(config.rhos.count), height = panelH + 120
        let colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]
        let lifts = cells.map(\.lift.mean)
        let yMin = min(0, (lifts.min() ?? 0).rounded(.down)), yMax = max(1, (lifts.max() ?? 1))
        let xs = config.fractions.map { Foundation.log10($0) }
        let xMin = xs.min()!, xMax = max(xs.max()!, xMin + 1e-9)
        var out = ##"<svg xmlns="http://www.w3.org/2000/svg" width="\##(Int(width))" height="\##(Int(height))" font-family="sans-serif" font-size="11">"##
        out += ##"<rect width="100%" height="100%" fill="white"/>"##
        for (p, rho) in config.rhos.enumerated() {
            let ox = Double(p) * panelW
            let plotW = panelW - margin.left - margin.right, plotH = panelH - margin.top - margin.bottom
            func px(_ f: Double) -> Double { ox + margin.left + (Foundation.log10(f) - xMin) / (xMax - xMin) * plotW }
            func py(_ v: Double) -> Double { margin.top + (1 - (v - yMin) / (yMax - yMin)) * plotH }
            out += ##"<text x="\##(ox + panelW / 2)" y="18" text-anchor="middle" font-size="13">ρ = \##(Evaluation.rhoKey(rho))</text>"##
            out += ##"<rect x="\##(ox + margin.left)" y="\##(margin.top)" width="\##(plotW)" height="\##(plotH)" fill="none" stroke="#999"/>"##
            for t in stride(from: yMin, through: yMax + 1e-9, by: 0.25) {
                out += ##"<line x1="\##(ox + margin.left)" x2="\##(ox + margin.left + plotW)" y1="\##(py(t))" y2="\##(py(t))" stroke="#eee"/>"##
                out += ##"<text x="\##(ox + margin.left - 4)" y="\##(py(t) + 4)" text-anchor="end">\##(String(format: "%.2f", t))</text>"##
            }
            for f in config.fractions {
                out += ##"<text x="\##(px(f))" y="\##(margin.top + plotH + 14)" text-anchor="middle">\##(Self.percent(f))</text>"##
            }
            out += ##"<text x="\##(ox + margin.left + plotW / 2)" y="\##(margin.top + plotH + 30)" text-anchor="middle">target fraction</text>"##
            if p == 0 {
                out += ##"<text x="12" y="\##(margin.top + plotH / 2)" transform="rotate(-90 12 \##(margin.top + plotH / 2))" text-anchor="middle">lift (soft AUC)</text>"##
            }
            for (m, method) in config.methods.enumerated() {
                let points = config.fractions.compactMap { f in cell(rho, f, method).map { (px(f), py($0.lift.mean)) } }
                guard !points.isEmpty else { continue }
                let color = colors[m % colors.count]
                out += ##"<polyline fill="none" stroke="\##(color)" stroke-width="2" points="\##(points.map { String(format: "%.1f,%.1f", $0.0, $0.1) }.joined(separator: " "))"/>"##
                for (x, y) in points { out += ##"<circle cx="\##(String(format: "%.1f", x))" cy="\##(String(format: "%.1f", y))" r="3" fill="\##(color)"/>"## }
            }
        }
        for (m, method) in config.methods.enumerated() {
            let x = 20 + Double(m % 4) * 330, y = panelH + 30 + Double(m / 4) * 20
            out += ##"<line x1="\##(x)" x2="\##(x + 24)" y1="\##(y - 4)" y2="\##(y - 4)" stroke="\##(colors[m % colors.count])" stroke-width="3"/>"##
            out += ##"<text x="\##(x + 30)" y="\##(y)">\##(method.label)</text>"##
        }
        return out + "</svg>\n"
    }

    /// Writes report.md, report.json and lift.svg under `directory`.
    public func write(to directory: String) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try AtomicFile.write(Array(markdown.utf8), to: "\(directory)/report.md")
        try AtomicFile.write(Array(try encoder.encode(self)), to: "\(directory)/report.json")
        try AtomicFile.write(Array(svg.utf8), to: "\(directory)/lift.svg")
    }
}
