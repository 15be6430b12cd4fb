namespace SnnSpec.Reports

open System
open System.Globalization
open System.IO
open System.Text
open System.Text.Json
open System.Text.Json.Serialization

/// Accuracy of one model evaluated at every timestep t (a fraction in [0, 1]).
type AccuracySeries =
    {
        Name: string
        /// "teacher", "baseline" (a student trained without distillation) or "distilled".
        Role: string
        Timesteps: int[]
        Accuracy: float[]
    }

/// One loss term's value over training (x is the optimisation step or the epoch).
type LossSeries =
    {
        Term: string
        Steps: float[]
        Values: float[]
    }

/// The loss curves of one training run (teacher, baseline or a distillation).
type TrainingRun = { Name: string; Terms: LossSeries[] }

/// Counts of values in bins [Edges[i], Edges[i+1]); Edges has one more element than Counts.
type Histogram = { Edges: float[]; Counts: float[] }

/// Membrane-potential distributions at one probe: the teacher's and the student's before and
/// after distillation (MD-SNN Fig. 1), on shared bin edges; Threshold is θ (NaN when unknown).
type MembraneProbe =
    {
        Probe: string
        Threshold: float
        Teacher: Histogram
        StudentBefore: Histogram
        StudentAfter: Histogram
    }

/// One named share of a hardware cost.
type CostItem = { Component: string; Value: float }

/// One model's simulated hardware figures: energy (J), latency (s) and area (mm²) per inference
/// broken down by component, and the figures of merit.
type HardwareEntry =
    {
        Name: string
        Energy: CostItem[]
        Latency: CostItem[]
        Area: CostItem[]
        /// Energy × delay × area (J·s·mm²): lower is better.
        Edap: float
        TopsPerWatt: float
        TopsPerMm2: float
    }

/// A headline figure shown at the top of the report.
type SummaryItem = { Label: string; Value: string }

/// Everything a report shows. The first hardware entry is the reference of every ratio.
type ReportData =
    {
        Title: string
        Subtitle: string
        Summary: SummaryItem[]
        Accuracy: AccuracySeries[]
        Training: TrainingRun[]
        Membranes: MembraneProbe[]
        Hardware: HardwareEntry[]
    }

module Histogram =
    /// bins equal-width edges over [lo, hi].
    let edges (bins: int) (lo: float) (hi: float) =
        let hi = if hi > lo then hi else lo + 1.0
        Array.init (bins + 1) (fun i -> lo + (hi - lo) * float i / float bins)

    /// Counts of the samples in the bins; values outside go to the first or last bin.
    let ofSamples (edges: float[]) (samples: float32[]) =
        let bins = edges.Length - 1
        let counts = Array.zeroCreate<float>(max 0 bins)
        let lo, hi = edges[0], edges[bins]

        for v in samples do
            let v = float v

            if Double.IsFinite v && bins > 0 then
                let i = int (Math.Floor((v - lo) / (hi - lo) * float bins))
                let i = max 0 (min (bins - 1) i)
                counts[i] <- counts[i] + 1.0

        {
            Edges = Array.copy edges
            Counts = counts
        }

    /// Histograms of several sample sets on shared edges spanning all of them.
    let shared (bins: int) (sets: float32[] list) =
        let all = sets |> Seq.concat |> Seq.filter Single.IsFinite |> Array.ofSeq

        let lo, hi =
            if all.Length = 0 then
                0.0, 1.0
            else
                float (Array.min all), float (Array.max all)

        let e = edges bins lo hi
        sets |> List.map (ofSamples e)

    /// Heights that integrate to 1 (count / (total · bin width)), so sets of different sizes compare.
    let density (h: Histogram) =
        let total = Array.sum h.Counts

        Array.init h.Counts.Length (fun i ->
            let w = h.Edges[i + 1] - h.Edges[i]

            if total > 0.0 && w > 0.0 then
                h.Counts[i] / (total * w)
            else
                0.0)

/// Reports: one self-contained HTML page (inline CSS and SVG, no scripts, fonts or images from
/// elsewhere) plus a CSV and a JSON file holding every number.
///
/// JSON: the ReportData record with snake_case field names ("timesteps", "student_before",
/// "tops_per_watt", …); NaN and infinities as the strings "NaN", "Infinity", "-Infinity".
///
/// CSV (RFC 4180, header <c>section,chart,series,label,x,x2,y</c>, numbers in invariant culture
/// with round-trip precision), one row per number:
/// accuracy (chart "accuracy", series = model, label = role, x = t, y = accuracy);
/// training (chart = run, series = term, x = step, y = value);
/// membrane (chart = probe, series = teacher|student_before|student_after, x..x2 = bin, y = count);
/// membrane_threshold (chart = probe, y = θ);
/// energy|latency|area (series = model, label = component, y = value);
/// metrics (series = model, label = edap|tops_per_watt|tops_per_mm2, y = value).
module Report =
    let private jsonOptions =
        let o =
            JsonSerializerOptions(
                PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
                WriteIndented = true,
                NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals
            )

        o.MakeReadOnly true
        o

    let toJson (r: ReportData) =
        JsonSerializer.Serialize(r, jsonOptions)

    let ofJson (json: string) : ReportData =
        JsonSerializer.Deserialize<ReportData>(json, jsonOptions)

    let private num (v: float) =
        v.ToString("R", CultureInfo.InvariantCulture)

    let private field (s: string) =
        if s.IndexOfAny [| ','; '"'; '\n'; '\r' |] >= 0 then
            "\"" + s.Replace("\"", "\"\"") + "\""
        else
            s

    let toCsv (r: ReportData) =
        let sb = StringBuilder()
        sb.Append("section,chart,series,label,x,x2,y\n") |> ignore

        let row (section: string) (chart: string) (series: string) (label: string) (x: string) (x2: string) (y: float) =
            sb
                .Append(String.Join(",", [| section; field chart; field series; field label; x; x2; num y |]))
                .Append('\n')
            |> ignore

        for a in r.Accuracy do
            for i in 0 .. a.Timesteps.Length - 1 do
                row "accuracy" "accuracy" a.Name a.Role (string a.Timesteps[i]) "" a.Accuracy[i]

        for run in r.Training do
            for t in run.Terms do
                for i in 0 .. t.Steps.Length - 1 do
                    row "training" run.Name t.Term "" (num t.Steps[i]) "" t.Values[i]

        for m in r.Membranes do
            row "membrane_threshold" m.Probe "" "" "" "" m.Threshold

            for name, h in
                [
                    "teacher", m.Teacher
                    "student_before", m.StudentBefore
                    "student_after", m.StudentAfter
                ] do
                for i in 0 .. h.Counts.Length - 1 do
                    row "membrane" m.Probe name "" (num h.Edges[i]) (num h.Edges[i + 1]) h.Counts[i]

        for h in r.Hardware do
            for section, items in [ "energy", h.Energy; "latency", h.Latency; "area", h.Area ] do
                for c in items do
                    row section section h.Name c.Component "" "" c.Value

            for label, v in [ "edap", h.Edap; "tops_per_watt", h.TopsPerWatt; "tops_per_mm2", h.TopsPerMm2 ] do
                row "metrics" "metrics" h.Name label "" "" v

        sb.ToString()

    /// Splits RFC 4180 records into fields.
    let private parseCsv (text: string) =
        let rows = ResizeArray<string[]>()
        let fields = ResizeArray<string>()
        let cur = StringBuilder()
        let mutable quoted = false
        let mutable i = 0

        let endField () =
            fields.Add(cur.ToString())
            cur.Clear() |> ignore

        while i < text.Length do
            let ch = text[i]

            if quoted then
                if ch = '"' && i + 1 < text.Length && text[i + 1] = '"' then
                    cur.Append '"' |> ignore
                    i <- i + 1
                elif ch = '"' then
                    quoted <- false
                else
                    cur.Append ch |> ignore
            else
                match ch with
                | '"' -> quoted <- true
                | ',' -> endField ()
                | '\n' ->
                    endField ()
                    rows.Add(fields.ToArray())
                    fields.Clear()
                | '\r' -> ()
                | ch -> cur.Append ch |> ignore

            i <- i + 1

        if cur.Length > 0 || fields.Count > 0 then
            endField ()
            rows.Add(fields.ToArray())

        rows.ToArray()

    /// The numbers of a CSV written by toCsv, as a ReportData with empty title, subtitle and
    /// summary (those are not numbers and live only in the JSON).
    let ofCsv (csv: string) : ReportData =
        let rows = parseCsv csv |> Array.skip 1

        let p (s: string) =
            Double.Parse(s, CultureInfo.InvariantCulture)

        let inOrder (f: string[] -> string) (rs: string[] seq) =
            rs |> Seq.map f |> Seq.distinct |> Array.ofSeq

        let section s =
            rows |> Array.filter (fun r -> r[0] = s)

        let accuracy =
            let rs = section "accuracy"

            [|
                for name in inOrder (fun r -> r[2]) rs do
                    let mine = rs |> Array.filter (fun r -> r[2] = name)

                    {
                        Name = name
                        Role = mine[0][3]
                        Timesteps = mine |> Array.map (fun r -> int r[4])
                        Accuracy = mine |> Array.map (fun r -> p r[6])
                    }
            |]

        let training =
            let rs = section "training"

            [|
                for run in inOrder (fun r -> r[1]) rs do
                    let mine = rs |> Array.filter (fun r -> r[1] = run)

                    {
                        Name = run
                        Terms =
                            [|
                                for term in inOrder (fun r -> r[2]) mine do
                                    let t = mine |> Array.filter (fun r -> r[2] = term)

                                    {
                                        Term = term
                                        Steps = t |> Array.map (fun r -> p r[4])
                                        Values = t |> Array.map (fun r -> p r[6])
                                    }
                            |]
                    }
            |]

        let membranes =
            let rs = section "membrane"

            [|
                for th in section "membrane_threshold" do
                    let probe = th[1]

                    let hist name =
                        let b = rs |> Array.filter (fun r -> r[1] = probe && r[2] = name)

                        {
                            Edges =
                                if b.Length = 0 then
                                    [||]
                                else
                                    Array.append (b |> Array.map (fun r -> p r[4])) [| p (b[b.Length - 1][5]) |]
                            Counts = b |> Array.map (fun r -> p r[6])
                        }

                    {
                        Probe = probe
                        Threshold = p th[6]
                        Teacher = hist "teacher"
                        StudentBefore = hist "student_before"
                        StudentAfter = hist "student_after"
                    }
            |]

        let hardware =
            let metrics = section "metrics"

            [|
                for name in inOrder (fun r -> r[2]) metrics do
                    let items s =
                        section s
                        |> Array.filter (fun r -> r[2] = name)
                        |> Array.map (fun r -> { Component = r[3]; Value = p r[6] })

                    let metric l =
                        metrics |> Array.find (fun r -> r[2] = name && r[3] = l) |> fun r -> p r[6]

                    {
                        Name = name
                        Energy = items "energy"
                        Latency = items "latency"
                        Area = items "area"
                        Edap = metric "edap"
                        TopsPerWatt = metric "tops_per_watt"
                        TopsPerMm2 = metric "tops_per_mm2"
                    }
            |]

        {
            Title = ""
            Subtitle = ""
            Summary = [||]
            Accuracy = accuracy
            Training = training
            Membranes = membranes
            Hardware = hardware
        }

    // ---------------------------------------------------------------- HTML

    let private teacherColor = "#1f2937"
    let private baselineColor = "#ea7a28"

    let private palette =
        [|
            "#2563eb"
            "#0d9488"
            "#9333ea"
            "#db2777"
            "#0891b2"
            "#65a30d"
            "#c2410c"
            "#4f46e5"
        |]

    let private accuracyColors (series: AccuracySeries[]) =
        let mutable k = 0

        series
        |> Array.map (fun s ->
            match s.Role with
            | "teacher" -> teacherColor, true
            | "baseline" -> baselineColor, false
            | _ ->
                k <- k + 1
                palette[(k - 1) % palette.Length], false)

    let private percent (v: float) =
        if Double.IsNaN v then
            "–"
        else
            (100.0 * v).ToString("0.#", Svg.inv) + "%"

    let private ratio (v: float) =
        if Double.IsFinite v then
            v.ToString("G3", Svg.inv) + "×"
        else
            "–"

    let private frame id title xLabel yLabel width height =
        {
            Id = id
            Title = title
            XLabel = xLabel
            YLabel = yLabel
            Width = width
            Height = height
        }

    let private accuracySection (r: ReportData) =
        let colors = accuracyColors r.Accuracy

        let series =
            [
                for s, (color, dashed) in Array.zip r.Accuracy colors ->
                    {
                        Name = s.Name
                        Color = color
                        X = s.Timesteps |> Array.map float
                        Y = s.Accuracy
                        Dashed = dashed
                    }
            ]

        let ys =
            r.Accuracy
            |> Seq.collect (fun a -> a.Accuracy)
            |> Seq.filter Double.IsFinite
            |> Array.ofSeq

        let lo =
            if ys.Length = 0 then
                0.0
            else
                max 0.0 (Math.Floor((Array.min ys - 0.02) * 10.0) / 10.0)

        Svg.lineChart
            (frame "accuracy" "Test accuracy at every timestep t" "timestep t" "accuracy" 1024 380)
            (Some(lo, 1.0))
            percent
            series

    let private trainingSection (r: ReportData) =
        [
            for i, run in Array.indexed r.Training ->
                Svg.lineChart
                    (frame (sprintf "training-%d" i) run.Name "step" "loss" 500 300)
                    None
                    Svg.short
                    [
                        for k, t in Array.indexed run.Terms ->
                            {
                                Name = t.Term
                                Color = palette[k % palette.Length]
                                X = t.Steps
                                Y = t.Values
                                Dashed = false
                            }
                    ]
        ]

    let private membraneSection (r: ReportData) =
        [
            for i, m in Array.indexed r.Membranes ->
                let h name color (x: Histogram) =
                    {
                        Name = name
                        Color = color
                        Edges = x.Edges
                        Heights = Histogram.density x
                    }

                let marker =
                    if Double.IsFinite m.Threshold then
                        Some(m.Threshold, "θ")
                    else
                        None

                m.Probe,
                [
                    Svg.histogramChart
                        (frame
                            (sprintf "membrane-%d-before" i)
                            (m.Probe + " · before distillation")
                            "membrane potential H"
                            "density"
                            500
                            280)
                        marker
                        [
                            h "teacher" teacherColor m.Teacher
                            h "student (before KD)" baselineColor m.StudentBefore
                        ]
                    Svg.histogramChart
                        (frame
                            (sprintf "membrane-%d-after" i)
                            (m.Probe + " · after distillation")
                            "membrane potential H"
                            "density"
                            500
                            280)
                        marker
                        [
                            h "teacher" teacherColor m.Teacher
                            h "student (after KD)" palette[0] m.StudentAfter
                        ]
                ]
        ]

    let private hardwareSection (r: ReportData) =
        let names = r.Hardware |> Array.map (fun h -> h.Name)

        let breakdown id title unit (pick: HardwareEntry -> CostItem[]) =
            let components =
                r.Hardware
                |> Seq.collect (fun h -> pick h |> Seq.map (fun c -> c.Component))
                |> Seq.distinct
                |> Array.ofSeq

            Svg.barChart
                (frame id title "" unit 330 320)
                true
                None
                true
                Svg.short
                names
                [
                    for k, comp in Array.indexed components ->
                        {
                            Name = comp
                            Color = palette[k % palette.Length]
                            Values =
                                r.Hardware
                                |> Array.map (fun h ->
                                    pick h
                                    |> Array.tryFind (fun c -> c.Component = comp)
                                    |> Option.map (fun c -> c.Value)
                                    |> Option.defaultValue 0.0)
                        }
                ]

        let comparison =
            if r.Hardware.Length = 0 then
                Svg.barChart
                    (frame "hardware-ratios" "Figures of merit relative to the first model" "" "ratio" 1024 340)
                    false
                    (Some 1.0)
                    true
                    ratio
                    [||]
                    []
            else
                let b = r.Hardware[0]

                Svg.barChart
                    (frame
                        "hardware-ratios"
                        (sprintf
                            "Figures of merit relative to %s (EDAP: lower is better; TOPS/W, TOPS/mm²: higher is better)"
                            b.Name)
                        ""
                        "ratio to reference"
                        1024
                        340)
                    false
                    (Some 1.0)
                    true
                    ratio
                    [| "EDAP"; "TOPS/W"; "TOPS/mm²" |]
                    [
                        for k, h in Array.indexed r.Hardware ->
                            {
                                Name = h.Name
                                Color =
                                    (if k = 0 then
                                         teacherColor
                                     else
                                         palette[(k - 1) % palette.Length])
                                Values =
                                    [|
                                        h.Edap / b.Edap
                                        h.TopsPerWatt / b.TopsPerWatt
                                        h.TopsPerMm2 / b.TopsPerMm2
                                    |]
                            }
                    ]

        [
            breakdown "hardware-energy" "Energy per inference" "J" (fun h -> h.Energy)
            breakdown "hardware-latency" "Latency per inference" "s" (fun h -> h.Latency)
            breakdown "hardware-area" "Chip area" "mm²" (fun h -> h.Area)
        ],
        comparison

    let private css =
        """
:root{--ink:#111827;--muted:#6b7280;--line:#e5e7eb;--bg:#f6f7f9;--card:#fff;--accent:#2563eb}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--ink);font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
header{background:linear-gradient(120deg,#0f172a,#1e3a8a);color:#fff;padding:36px 48px 30px}
header h1{margin:0 0 6px;font-size:28px;letter-spacing:-.01em}
header p{margin:0;color:#cbd5e1}
main{max-width:1120px;margin:0 auto;padding:24px 24px 48px}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(200px,1fr));gap:14px;margin:-44px 0 10px}
.card{background:var(--card);border-radius:12px;padding:14px 18px;box-shadow:0 1px 3px rgba(0,0,0,.08),0 6px 16px rgba(15,23,42,.06)}
.card .label{color:var(--muted);font-size:12px;text-transform:uppercase;letter-spacing:.06em}
.card .value{font-size:24px;font-weight:650;margin-top:2px}
section{background:var(--card);border-radius:14px;padding:22px 24px;margin-top:22px;box-shadow:0 1px 3px rgba(0,0,0,.06)}
section h2{margin:0 0 4px;font-size:19px}
section p.lead{margin:0 0 14px;color:var(--muted)}
h3{font-size:15px;margin:18px 0 6px;color:#374151}
.grid{display:flex;flex-wrap:wrap;gap:16px}
svg.chart{max-width:100%;height:auto;background:#fff}
svg .chart-title{font-size:14px;font-weight:600;fill:#111827}
svg .legend{font-size:12px;fill:#374151}
svg .tick{font-size:11px;fill:#6b7280}
svg .axis-label{font-size:12px;fill:#4b5563}
svg .bar-label{font-size:11px;fill:#374151;font-weight:600}
svg .marker-label{font-size:12px;fill:#b91c1c;font-style:italic}
svg .empty{font-size:13px;fill:#9ca3af}
svg .grid{stroke:#eef0f3;stroke-width:1}
svg .axis{stroke:#9ca3af;stroke-width:1}
svg .tick-mark{stroke:#9ca3af}
svg .reference{stroke:#b91c1c;stroke-width:1.25;stroke-dasharray:4 4}
table{border-collapse:collapse;width:100%;margin-top:14px;font-size:13px}
th,td{text-align:right;padding:6px 10px;border-bottom:1px solid var(--line)}
th:first-child,td:first-child{text-align:left}
th{color:var(--muted);font-weight:600}
footer{color:var(--muted);font-size:12px;text-align:center;margin-top:28px}
"""

    /// The report as one HTML document.
    let toHtml (r: ReportData) =
        let e = Svg.escape
        let sb = StringBuilder()
        let add (s: string) = sb.Append s |> ignore

        add "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"/>"
        add "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>"
        add (sprintf "<title>%s</title><style>%s</style></head><body>" (e r.Title) css)
        add (sprintf "<header><h1>%s</h1><p>%s</p></header><main>" (e r.Title) (e r.Subtitle))

        if r.Summary.Length > 0 then
            add "<div class=\"cards\">"

            for s in r.Summary do
                add (
                    sprintf
                        "<div class=\"card\"><div class=\"label\">%s</div><div class=\"value\">%s</div></div>"
                        (e s.Label)
                        (e s.Value)
                )

            add "</div>"

        let section (id: string) (title: string) (lead: string) (body: unit -> unit) =
            add (
                sprintf
                    "<section id=\"%s\" data-section=\"%s\"><h2>%s</h2><p class=\"lead\">%s</p>"
                    id
                    id
                    (e title)
                    (e lead)
            )

            body ()
            add "</section>"

        section
            "accuracy"
            "Accuracy vs timestep"
            "Test accuracy when the network is read out after t timesteps: the teacher, a student trained without distillation (baseline) and the distilled students."
            (fun () ->
                add (accuracySection r)

                if r.Accuracy.Length > 0 then
                    let ts =
                        r.Accuracy
                        |> Seq.collect (fun a -> a.Timesteps)
                        |> Seq.distinct
                        |> Seq.sort
                        |> Array.ofSeq

                    add "<table><tr><th>model</th>"

                    for t in ts do
                        add (sprintf "<th>t = %d</th>" t)

                    add "</tr>"

                    for a in r.Accuracy do
                        add (sprintf "<tr><td>%s <span style=\"color:#9ca3af\">(%s)</span></td>" (e a.Name) (e a.Role))

                        for t in ts do
                            let v =
                                match Array.tryFindIndex ((=) t) a.Timesteps with
                                | Some i when i < a.Accuracy.Length -> percent a.Accuracy[i]
                                | _ -> "–"

                            add (sprintf "<td>%s</td>" v)

                        add "</tr>"

                    add "</table>")

        section "training" "Training curves" "Every loss term of each run, as logged during training." (fun () ->
            add "<div class=\"grid\">"

            for chart in trainingSection r do
                add chart

            add "</div>")

        section
            "membranes"
            "Membrane-potential distributions"
            "Distribution of the membrane potential H (after charging, before reset) at each probe: the teacher against the student before and after distillation. The dashed line marks the firing threshold θ."
            (fun () ->
                for probe, charts in membraneSection r do
                    add (sprintf "<h3>%s</h3><div class=\"grid\">" (e probe))

                    for chart in charts do
                        add chart

                    add "</div>")

        section
            "hardware"
            "Hardware cost on the crossbar accelerator"
            "Simulated energy, latency and area per inference broken down by component, and the figures of merit relative to the first model."
            (fun () ->
                let breakdowns, comparison = hardwareSection r
                add "<div class=\"grid\">"

                for chart in breakdowns do
                    add chart

                add "</div>"
                add comparison

                if r.Hardware.Length > 0 then
                    add
                        "<table><tr><th>model</th><th>energy (J)</th><th>latency (s)</th><th>area (mm²)</th><th>EDAP (J·s·mm²)</th><th>TOPS/W</th><th>TOPS/mm²</th></tr>"

                    for h in r.Hardware do
                        let total (items: CostItem[]) = items |> Array.sumBy (fun c -> c.Value)

                        add (
                            sprintf
                                "<tr><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td></tr>"
                                (e h.Name)
                                (Svg.short (total h.Energy))
                                (Svg.short (total h.Latency))
                                (Svg.short (total h.Area))
                                (Svg.short h.Edap)
                                (Svg.short h.TopsPerWatt)
                                (Svg.short h.TopsPerMm2)
                        )

                    add "</table>")

        add
            "<footer>Generated by SnnSpec. Every number in this page is also in the CSV and JSON files written beside it.</footer>"

        add "</main></body></html>\n"
        sb.ToString()

    /// Writes a UTF-8 text file atomically: a temporary file in the same directory, flushed to
    /// the disk, then renamed over the path, so a crash leaves the old file or the new one.
    let writeTextAtomic (path: string) (text: string) =
        let full = Path.GetFullPath path
        Directory.CreateDirectory(Path.GetDirectoryName full) |> ignore
        let tmp = sprintf "%s.%s.tmp" full (Guid.NewGuid().ToString "N")

        try
            do
                use fs = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write, FileShare.None)
                let bytes = (UTF8Encoding false).GetBytes text
                fs.Write(bytes, 0, bytes.Length)
                fs.Flush true

            File.Move(tmp, full, true)
        with _ ->
            (try
                File.Delete tmp
             with _ ->
                 ())

            reraise ()

    /// Writes <c>&lt;stem&gt;.html</c>, <c>&lt;stem&gt;.csv</c> and <c>&lt;stem&gt;.json</c> into a directory
    /// (created when missing), each atomically, and returns the three paths.
    let write (directory: string) (stem: string) (r: ReportData) =
        Directory.CreateDirectory directory |> ignore
        let path ext = Path.Combine(directory, stem + ext)
        writeTextAtomic (path ".html") (toHtml r)
        writeTextAtomic (path ".csv") (toCsv r)
        writeTextAtomic (path ".json") (toJson r)
        path ".html", path ".csv", path ".json"
