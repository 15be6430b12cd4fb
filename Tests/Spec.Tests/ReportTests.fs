module SnnSpec.Tests.ReportTests

open System
open System.Diagnostics
open System.IO
open System.Text.RegularExpressions
open System.Xml
open System.Xml.Linq
open NUnit.Framework
open SnnSpec
open SnnSpec.Reports
open SnnSpec.Tests.TestUtil

let tempDir () =
    let d =
        Path.Combine(Path.GetTempPath(), "snnspec-report-" + Guid.NewGuid().ToString("N"))

    Directory.CreateDirectory d |> ignore
    d

let samples (seed: int) (mean: float32) (std: float32) (n: int) =
    (Tensor.randn (Rng.create seed) [| n |] * std + mean).ToArray()

/// A report shaped like the main job's: a teacher, a baseline and two distilled students at
/// T = 1…4, three training runs, two probes and two hardware models. Names include characters
/// that need escaping.
let sample () : ReportData =
    let ts = [| 1; 2; 3; 4 |]

    let curve (name: string) (role: string) (acc: float[]) =
        {
            Name = name
            Role = role
            Timesteps = ts
            Accuracy = acc
        }

    let loss (term: string) (start: float) (rate: float) =
        let steps = Array.init 30 (fun i -> float (i * 20))

        {
            Term = term
            Steps = steps
            Values = steps |> Array.map (fun s -> start * Math.Exp(-rate * s) + 0.05 * start)
        }

    let probe (name: string) (seed: int) =
        match
            Histogram.shared
                40
                [
                    samples seed 0.55f 0.3f 4000
                    samples (seed + 1) 0.2f 0.45f 3000
                    samples (seed + 2) 0.5f 0.33f 3000
                ]
        with
        | [ t; b; a ] ->
            {
                Probe = name
                Threshold = 1.0
                Teacher = t
                StudentBefore = b
                StudentAfter = a
            }
        | _ -> failwith "three histograms"

    let items (xs: (string * float) list) =
        [| for c, v in xs -> { Component = c; Value = v } |]

    {
        Title = "MNIST: distilling a 4-bit SNN student"
        Subtitle = "ConvNet teacher (width 1, T = 4) → ConvNet student (width 0.25, 4-bit weights)"
        Summary =
            [|
                {
                    Label = "teacher accuracy (T = 4)"
                    Value = "99.1%"
                }
                {
                    Label = "distilled student (T = 2)"
                    Value = "98.4%"
                }
                {
                    Label = "energy vs teacher"
                    Value = "0.07×"
                }
            |]
        Accuracy =
            [|
                curve "teacher (FP32)" "teacher" [| 0.962; 0.984; 0.989; 0.991 |]
                curve "baseline student" "baseline" [| 0.902; 0.944; 0.957; 0.962 |]
                curve "membrane + temporal KD" "distilled" [| 0.951; 0.976; 0.981; 0.984 |]
                curve "logit KD <τ=4> & co" "distilled" [| 0.931; 0.962; 0.972; 0.975 |]
            |]
        Training =
            [|
                {
                    Name = "teacher"
                    Terms = [| loss "cross-entropy" 2.3 0.01 |]
                }
                {
                    Name = "membrane + temporal KD"
                    Terms =
                        [|
                            loss "cross-entropy" 2.3 0.008
                            loss "membrane KD" 0.9 0.012
                            loss "temporal KD" 1.4 0.006
                        |]
                }
                {
                    Name = "baseline student"
                    Terms = [| loss "cross-entropy" 2.3 0.006 |]
                }
            |]
        Membranes = [| probe "lif1" 10; probe "lif_fc1" 20 |]
        Hardware =
            [|
                {
                    Name = "FP32 teacher"
                    Energy = items [ "crossbar", 4.1e-6; "ADC", 2.2e-6; "buffers", 0.9e-6; "neurons", 0.3e-6 ]
                    Latency = items [ "crossbar", 2.0e-4; "ADC", 1.1e-4; "buffers", 0.2e-4 ]
                    Area = items [ "crossbar", 12.0; "ADC", 6.0; "buffers", 3.0 ]
                    Edap = 1.0e-8
                    TopsPerWatt = 3.1
                    TopsPerMm2 = 0.42
                }
                {
                    Name = "4-bit student, T = 2"
                    Energy = items [ "crossbar", 0.3e-6; "ADC", 0.15e-6; "buffers", 0.05e-6; "neurons", 0.02e-6 ]
                    Latency = items [ "crossbar", 0.5e-4; "ADC", 0.3e-4; "buffers", 0.05e-4 ]
                    Area = items [ "crossbar", 1.5; "ADC", 1.0; "buffers", 0.6 ]
                    Edap = 1.4e-10
                    TopsPerWatt = 11.8
                    TopsPerMm2 = 1.9
                }
            |]
    }

/// The expected charts: id → series names.
let expectedCharts (r: ReportData) =
    [
        yield "accuracy", [ for a in r.Accuracy -> a.Name ]
        for i, run in Array.indexed r.Training -> sprintf "training-%d" i, [ for t in run.Terms -> t.Term ]
        for i, _ in Array.indexed r.Membranes do
            yield sprintf "membrane-%d-before" i, [ "teacher"; "student (before KD)" ]
            yield sprintf "membrane-%d-after" i, [ "teacher"; "student (after KD)" ]
        let components (pick: HardwareEntry -> CostItem[]) =
            r.Hardware
            |> Seq.collect (fun h -> pick h |> Seq.map (fun c -> c.Component))
            |> Seq.distinct
            |> List.ofSeq

        yield "hardware-energy", components (fun h -> h.Energy)
        yield "hardware-latency", components (fun h -> h.Latency)
        yield "hardware-area", components (fun h -> h.Area)
        yield "hardware-ratios", [ for h in r.Hardware -> h.Name ]
    ]

let sectionOf (chartId: string) =
    if chartId = "accuracy" then "accuracy"
    elif chartId.StartsWith "training" then "training"
    elif chartId.StartsWith "membrane" then "membranes"
    else "hardware"

let parseXml (text: string) =
    let settings = XmlReaderSettings(DtdProcessing = DtdProcessing.Ignore)
    use reader = XmlReader.Create(new StringReader(text), settings)
    XDocument.Load reader

let svgNs = XNamespace.Get "http://www.w3.org/2000/svg"

/// chart id → (section, series names) for every svg chart in a document.
let chartsIn (doc: XDocument) =
    [
        for svg in doc.Descendants() do
            if svg.Name.LocalName = "svg" then
                let id = svg.Attribute(XName.Get "data-chart").Value

                let section =
                    svg.Ancestors()
                    |> Seq.tryPick (fun a -> a.Attribute(XName.Get "data-section") |> Option.ofObj)
                    |> Option.map (fun a -> a.Value)
                    |> Option.defaultValue ""

                let series =
                    [
                        for g in svg.Descendants() do
                            match g.Attribute(XName.Get "class") with
                            | null -> ()
                            | c when c.Value = "series" && g.Name.LocalName = "g" ->
                                yield g.Attribute(XName.Get "data-series").Value
                            | _ -> ()
                    ]

                yield id, (section, series)
    ]

[<Test>]
let ``the HTML is well-formed and every section holds its charts with the expected series`` () =
    let r = sample ()
    let html = Report.toHtml r
    // The whole page is well-formed XML (void elements are self-closed), so every SVG fragment is too.
    let doc = parseXml html
    let charts = chartsIn doc |> Map.ofList

    for id, series in expectedCharts r do
        match charts.TryFind id with
        | None -> Assert.Fail(sprintf "chart %s is missing; found %A" id (Map.keys charts))
        | Some(section, found) ->
            Assert.That(section, Eq.To(sectionOf id), id)
            Assert.That(found, Eq.To series, id)

    Assert.That(charts.Count, Eq.To(List.length (expectedCharts r)))

    for section in [ "accuracy"; "training"; "membranes"; "hardware" ] do
        Assert.That(charts |> Map.exists (fun _ (s, _) -> s = section), Is.True, section)

[<Test>]
let ``the page is self-contained: no scripts, links, imports or remote URLs`` () =
    let html = Report.toHtml (sample ())

    for forbidden in [ "<script"; "<link"; "@import"; "url("; "<img"; "<iframe"; "https://" ] do
        Assert.That(html.Contains(forbidden, StringComparison.OrdinalIgnoreCase), Is.False, forbidden)

    let urls =
        Regex.Matches(html, "http://[^\"]*")
        |> Seq.map (fun m -> m.Value)
        |> Seq.distinct
        |> List.ofSeq

    Assert.That(urls, Is.EquivalentTo [ "http://www.w3.org/2000/svg" ])

[<Test>]
let ``the JSON and the CSV round-trip every number`` () =
    let r = sample ()
    let json = Report.toJson r
    Assert.That(json, Does.Contain "\"student_before\"")
    Assert.That(json, Does.Contain "\"tops_per_watt\"")
    Assert.That(Report.toJson (Report.ofJson json), Eq.To json)

    let numbersOnly =
        { r with
            Title = ""
            Subtitle = ""
            Summary = [||]
        }

    let csv = Report.toCsv r
    Assert.That(csv, Does.StartWith "section,chart,series,label,x,x2,y\n")

    Assert.That(csv, Does.Contain "accuracy,accuracy,logit KD <τ=4> & co,distilled,1,,0.931\n")

    Assert.That(Report.toJson (Report.ofCsv csv), Eq.To(Report.toJson numbersOnly))

[<Test>]
let ``non-finite numbers survive JSON and CSV and do not break the charts`` () =
    let r = sample ()

    let r =
        { r with
            Accuracy =
                [|
                    { r.Accuracy[0] with
                        Accuracy = [| nan; 0.5; infinity; 0.7 |]
                    }
                |]
            Membranes = [| { r.Membranes[0] with Threshold = nan } |]
        }

    let json = Report.toJson r
    Assert.That(json, Does.Contain "\"NaN\"")
    Assert.That(Report.toJson (Report.ofJson json), Eq.To json)

    Assert.That(
        Report.toJson (Report.ofCsv (Report.toCsv r)),
        Eq.To(
            Report.toJson
                { r with
                    Title = ""
                    Subtitle = ""
                    Summary = [||]
                }
        )
    )

    parseXml (Report.toHtml r) |> ignore

[<Test>]
let ``an empty report still renders every section`` () =
    let empty =
        {
            Title = "empty"
            Subtitle = ""
            Summary = [||]
            Accuracy = [||]
            Training = [||]
            Membranes = [||]
            Hardware = [||]
        }

    let doc = parseXml (Report.toHtml empty)
    let charts = chartsIn doc |> List.map fst
    Assert.That(charts, Does.Contain "accuracy")
    Assert.That(charts, Does.Contain "hardware-ratios")
    Assert.That(Report.ofCsv (Report.toCsv empty), Eq.To { empty with Title = "" })

[<Test>]
let ``ticks follow a 1-2-5 progression and cover the range`` () =
    Assert.That(Svg.ticks 0.0 1.0 5, Eq.To [| 0.0; 0.2; 0.4; 0.6; 0.8; 1.0 |])
    Assert.That(Svg.ticks 0.0 7.3 5, Eq.To [| 0.0; 2.0; 4.0; 6.0; 8.0 |])
    Assert.That(Svg.ticks 120.0 980.0 4, Eq.To [| 0.0; 200.0; 400.0; 600.0; 800.0; 1000.0 |])
    Assert.That(Svg.short 4.1e-6, Eq.To "4.1µ")
    Assert.That(Svg.short 12000.0, Eq.To "12k")

[<Test>]
let ``histograms bin samples on shared edges and densities integrate to one`` () =
    match Histogram.shared 10 [ [| 0.0f; 0.5f; 1.0f |]; [| 2.0f; nanf |] ] with
    | [ a; b ] ->
        Assert.That(a.Edges, Eq.To b.Edges)
        Assert.That(a.Edges[0], Eq.To 0.0)
        Assert.That(a.Edges[10], Eq.To 2.0)
        Assert.That(Array.sum a.Counts, Eq.To 3.0)
        Assert.That(Array.sum b.Counts, Eq.To 1.0)
        Assert.That(b.Counts[9], Eq.To 1.0)
        let d = Histogram.density a
        Assert.That(Array.sum d * 0.2, Is.EqualTo(1.0).Within 1e-12)
    | _ -> Assert.Fail "two histograms"

[<Test>]
let ``write puts the HTML, CSV and JSON side by side`` () =
    let dir = Path.Combine(tempDir (), "out")
    let html, csv, json = Report.write dir "report" (sample ())
    Assert.That([ html; csv; json ] |> List.map Path.GetFileName, Eq.To [ "report.html"; "report.csv"; "report.json" ])
    Assert.That([ html; csv; json ] |> List.forall File.Exists, Is.True)

// ---------------------------------------------------------------- Headless Chromium

let chromium () =
    [ "/usr/bin/chromium"; "/usr/bin/chromium-browser"; "/usr/bin/google-chrome" ]
    |> List.tryFind File.Exists

let chromiumArgs (profile: string) =
    [
        "--headless"
        "--no-sandbox"
        "--disable-gpu"
        "--disable-quic"
        "--no-first-run"
        "--disable-background-networking"
        "--disable-component-update"
        "--disable-sync"
        "--user-data-dir=" + profile
    ]

let runProcess (exe: string) (args: string list) (timeout: int) =
    let psi = ProcessStartInfo(exe)

    for a in args do
        psi.ArgumentList.Add a

    psi.RedirectStandardOutput <- true
    psi.RedirectStandardError <- true
    use p = Process.Start psi
    let out = p.StandardOutput.ReadToEndAsync()
    let err = p.StandardError.ReadToEndAsync()

    if not (p.WaitForExit timeout) then
        p.Kill true
        Assert.Fail(sprintf "%s did not finish in %d ms" exe timeout)

    p.WaitForExit()
    p.ExitCode, out.Result, err.Result

[<Test>]
let ``headless Chromium renders every chart with the expected series`` () =
    match chromium () with
    | None -> Assert.Ignore "Chromium is not installed (apt-get install chromium); the rendering check needs it"
    | Some exe ->
        let dir = tempDir ()
        let r = sample ()
        let html, _, _ = Report.write dir "report" r
        let profile = Path.Combine(dir, "profile")

        let code, dom, err =
            runProcess exe (chromiumArgs profile @ [ "--dump-dom"; "file://" + html ]) 120_000

        Assert.That(code, Eq.To 0, err)
        // Chromium serialises the parsed DOM as HTML; the SVG subtrees are checked by pattern.
        let charts =
            Regex.Matches(dom, "<svg[^>]*data-chart=\"([^\"]+)\"[^>]*>(.*?)</svg>", RegexOptions.Singleline)
            |> Seq.map (fun m ->
                m.Groups[1].Value,
                [
                    for s in Regex.Matches(m.Groups[2].Value, "class=\"series\" data-series=\"([^\"]*)\"") ->
                        Net.WebUtility.HtmlDecode s.Groups[1].Value
                ])
            |> Map.ofSeq

        for id, series in expectedCharts r do
            match charts.TryFind id with
            | None -> Assert.Fail(sprintf "chart %s is not in the rendered DOM" id)
            | Some found -> Assert.That(found, Eq.To series, id)

        // Each line series was laid out as a path with real coordinates.
        Assert.That(Regex.Matches(dom, "<path d=\"M[0-9]").Count, Is.GreaterThanOrEqualTo 10)
