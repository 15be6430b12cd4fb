namespace SnnSpec.Reports

open System
open System.Globalization
open System.Text

/// One line of a line chart: points (x, y) drawn in order; NaN y values break the line.
type LineSeries =
    {
        Name: string
        Color: string
        X: float[]
        Y: float[]
        Dashed: bool
    }

/// One group of bars: a value per category.
type BarSeries =
    {
        Name: string
        Color: string
        Values: float[]
    }

/// One distribution drawn as a filled step outline: Heights[i] over [Edges[i], Edges[i+1]).
type HistogramSeries =
    {
        Name: string
        Color: string
        Edges: float[]
        Heights: float[]
    }

/// The frame shared by every chart.
type ChartFrame =
    {
        /// Identifies the chart in the page (data-chart attribute).
        Id: string
        Title: string
        XLabel: string
        YLabel: string
        Width: int
        Height: int
    }

/// A small SVG chart renderer: line, grouped or stacked bar, and histogram charts with axes,
/// 1-2-5 ticks, grid lines, a legend and hover titles. Every chart is one standalone
/// <c>&lt;svg class="chart" data-chart="…" data-kind="line|bar|histogram"&gt;</c> element and every
/// series one <c>&lt;g class="series" data-series="name"&gt;</c> group, so pages and tests can find them.
module Svg =
    let inv = CultureInfo.InvariantCulture

    /// Coordinates with at most two decimals.
    let private c (v: float) = v.ToString("0.##", inv)

    /// XML-escaped text for element content and attribute values.
    let escape (s: string) =
        let sb = StringBuilder(s.Length)

        for ch in s do
            match ch with
            | '&' -> sb.Append "&amp;" |> ignore
            | '<' -> sb.Append "&lt;" |> ignore
            | '>' -> sb.Append "&gt;" |> ignore
            | '"' -> sb.Append "&quot;" |> ignore
            | '\'' -> sb.Append "&#39;" |> ignore
            | ch when Char.IsControl ch -> ()
            | ch -> sb.Append ch |> ignore

        sb.ToString()

    /// A short human form of a number: 3 significant digits, k/M/G for large and m/µ/n for small.
    let short (v: float) =
        if Double.IsNaN v then
            "–"
        elif v = 0.0 then
            "0"
        else
            let a = abs v

            let scaled, suffix =
                if a >= 1e9 then v / 1e9, "G"
                elif a >= 1e6 then v / 1e6, "M"
                elif a >= 1e4 then v / 1e3, "k"
                elif a >= 1e-2 then v, ""
                elif a >= 1e-3 then v * 1e3, "m"
                elif a >= 1e-6 then v * 1e6, "µ"
                elif a >= 1e-9 then v * 1e9, "n"
                else v * 1e12, "p"

            scaled.ToString("G3", inv) + suffix

    /// Tick values covering [lo, hi] with a 1-2-5 step aiming at about n ticks.
    let ticks (lo: float) (hi: float) (n: int) =
        let range = if hi > lo then hi - lo else max 1.0 (abs lo)
        let raw = range / float (max 1 n)
        let mag = Math.Pow(10.0, Math.Floor(Math.Log10 raw))
        let norm = raw / mag

        let step =
            mag
            * (if norm < Math.Sqrt 2.0 then 1.0
               elif norm < Math.Sqrt 10.0 then 2.0
               elif norm < Math.Sqrt 50.0 then 5.0
               else 10.0)

        let first = Math.Floor(lo / step + 1e-9) * step
        let last = Math.Ceiling(hi / step - 1e-9) * step
        let count = int (Math.Round((last - first) / step))
        [| for i in 0..count -> Math.Round(first + float i * step, 12) |]

    let private finite (xs: float seq) =
        xs |> Seq.filter Double.IsFinite |> Array.ofSeq

    /// The extent of values, widened when empty or flat.
    let private extent (xs: float[]) (includeZero: bool) =
        let xs = if includeZero then Array.append xs [| 0.0 |] else xs

        if xs.Length = 0 then
            0.0, 1.0
        else
            let lo, hi = Array.min xs, Array.max xs

            if hi > lo then lo, hi
            elif lo = 0.0 then 0.0, 1.0
            else lo - abs lo * 0.1, hi + abs hi * 0.1

    type private Plot =
        {
            Left: float
            Top: float
            W: float
            H: float
            XLo: float
            XHi: float
            YLo: float
            YHi: float
        }

        member p.Sx(x: float) =
            p.Left + (x - p.XLo) / (p.XHi - p.XLo) * p.W

        member p.Sy(y: float) =
            p.Top + p.H - (y - p.YLo) / (p.YHi - p.YLo) * p.H

    let private legendHeight (frame: ChartFrame) (names: string list) =
        // Items flow left to right; estimate 7 px per character plus the swatch.
        let mutable rows = 1
        let mutable x = 0.0

        for n in names do
            let w = 28.0 + 7.2 * float n.Length

            if x + w > float frame.Width - 70.0 && x > 0.0 then
                rows <- rows + 1
                x <- 0.0

            x <- x + w

        if names.IsEmpty then 0 else rows * 18

    let private legend (sb: StringBuilder) (frame: ChartFrame) (top: float) (items: (string * string * bool) list) =
        let mutable x = 56.0
        let mutable y = top

        for name, color, dashed in items do
            let w = 28.0 + 7.2 * float name.Length

            if x + w > float frame.Width - 14.0 && x > 56.0 then
                x <- 56.0
                y <- y + 18.0

            sb.AppendFormat(
                inv,
                "<g class=\"legend-item\" data-legend=\"{0}\"><rect x=\"{1}\" y=\"{2}\" width=\"14\" height=\"4\" rx=\"2\" fill=\"{3}\"{4}/><text x=\"{5}\" y=\"{6}\" class=\"legend\">{0}</text></g>",
                escape name,
                c x,
                c (y - 4.0),
                color,
                (if dashed then " opacity=\"0.6\"" else ""),
                c (x + 19.0),
                c y
            )
            |> ignore

            x <- x + w

    /// Opens the svg element, draws title, legend, grid, ticks and axis labels; returns the plot area.
    let private frameStart
        (sb: StringBuilder)
        (kind: string)
        (frame: ChartFrame)
        (legendItems: (string * string * bool) list)
        (xTicks: (float * string)[] option)
        (xLo, xHi)
        (yLo, yHi)
        (yFormat: float -> string)
        =
        let lh = legendHeight frame (legendItems |> List.map (fun (n, _, _) -> n))
        let top = 34.0 + float lh + 10.0
        let bottom = if frame.XLabel = "" then 30.0 else 46.0

        let p =
            {
                Left = 58.0
                Top = top
                W = float frame.Width - 58.0 - 16.0
                H = float frame.Height - top - bottom
                XLo = xLo
                XHi = xHi
                YLo = yLo
                YHi = yHi
            }

        sb.AppendFormat(
            inv,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" data-chart=\"{0}\" data-kind=\"{1}\" viewBox=\"0 0 {2} {3}\" width=\"{2}\" height=\"{3}\" role=\"img\" aria-label=\"{4}\"><title>{4}</title>",
            escape frame.Id,
            kind,
            frame.Width,
            frame.Height,
            escape frame.Title
        )
        |> ignore

        sb.AppendFormat(inv, "<text x=\"16\" y=\"22\" class=\"chart-title\">{0}</text>", escape frame.Title)
        |> ignore

        legend sb frame 46.0 legendItems
        sb.Append "<g class=\"axes\">" |> ignore

        for t in ticks yLo yHi 5 do
            if t >= yLo - 1e-12 && t <= yHi + 1e-12 then
                let y = p.Sy t

                sb.AppendFormat(
                    inv,
                    "<line x1=\"{0}\" x2=\"{1}\" y1=\"{2}\" y2=\"{2}\" class=\"grid\"/><text x=\"{3}\" y=\"{4}\" class=\"tick\" text-anchor=\"end\">{5}</text>",
                    c p.Left,
                    c (p.Left + p.W),
                    c y,
                    c (p.Left - 6.0),
                    c (y + 4.0),
                    escape (yFormat t)
                )
                |> ignore

        match xTicks with
        | Some ts ->
            for x, label in ts do
                sb.AppendFormat(
                    inv,
                    "<line x1=\"{0}\" x2=\"{0}\" y1=\"{1}\" y2=\"{2}\" class=\"tick-mark\"/><text x=\"{0}\" y=\"{3}\" class=\"tick\" text-anchor=\"middle\">{4}</text>",
                    c x,
                    c (p.Top + p.H),
                    c (p.Top + p.H + 4.0),
                    c (p.Top + p.H + 17.0),
                    escape label
                )
                |> ignore
        | None -> ()

        sb.AppendFormat(
            inv,
            "<line x1=\"{0}\" x2=\"{1}\" y1=\"{2}\" y2=\"{2}\" class=\"axis\"/>",
            c p.Left,
            c (p.Left + p.W),
            c (p.Top + p.H)
        )
        |> ignore

        if frame.XLabel <> "" then
            sb.AppendFormat(
                inv,
                "<text x=\"{0}\" y=\"{1}\" class=\"axis-label\" text-anchor=\"middle\">{2}</text>",
                c (p.Left + p.W / 2.0),
                c (float frame.Height - 8.0),
                escape frame.XLabel
            )
            |> ignore

        if frame.YLabel <> "" then
            sb.AppendFormat(
                inv,
                "<text transform=\"translate(14 {0}) rotate(-90)\" class=\"axis-label\" text-anchor=\"middle\">{1}</text>",
                c (p.Top + p.H / 2.0),
                escape frame.YLabel
            )
            |> ignore

        sb.Append "</g>" |> ignore
        p

    let private empty (sb: StringBuilder) (p: Plot) =
        sb.AppendFormat(
            inv,
            "<text x=\"{0}\" y=\"{1}\" class=\"empty\" text-anchor=\"middle\">no data</text>",
            c (p.Left + p.W / 2.0),
            c (p.Top + p.H / 2.0)
        )
        |> ignore

    /// A line chart with markers; <c>yRange</c> fixes the y axis (e.g. 0–1 for accuracy),
    /// <c>format</c> writes tick labels and hover values.
    let lineChart
        (frame: ChartFrame)
        (yRange: (float * float) option)
        (format: float -> string)
        (series: LineSeries list)
        =
        let sb = StringBuilder()
        let xs = finite (series |> Seq.collect (fun s -> s.X))
        let ys = finite (series |> Seq.collect (fun s -> s.Y))
        let xLo, xHi = extent xs false

        let yLo, yHi =
            match yRange with
            | Some r -> r
            | None ->
                let lo, hi = extent ys false
                let t = ticks lo hi 5
                t[0], t[t.Length - 1]

        let integral = xs |> Array.forall (fun x -> x = Math.Round x)

        let xTickValues =
            if integral && xHi - xLo <= 12.0 then
                [| for v in xLo..xHi -> v |]
            else
                ticks xLo xHi 6 |> Array.filter (fun v -> v >= xLo - 1e-9 && v <= xHi + 1e-9)

        // Pad the x range so end markers are not clipped.
        let pad = (xHi - xLo) * 0.03
        let xLo', xHi' = xLo - pad, xHi + pad
        let lp = (58.0, float frame.Width - 16.0)

        let sx v =
            fst lp + (v - xLo') / (xHi' - xLo') * (snd lp - fst lp)

        let p =
            frameStart
                sb
                "line"
                frame
                [ for s in series -> s.Name, s.Color, s.Dashed ]
                (Some [| for v in xTickValues -> sx v, short v |])
                (xLo', xHi')
                (yLo, yHi)
                format

        if ys.Length = 0 then
            empty sb p

        for s in series do
            sb.AppendFormat(inv, "<g class=\"series\" data-series=\"{0}\">", escape s.Name)
            |> ignore

            let path = StringBuilder()
            let mutable pen = false

            for i in 0 .. min s.X.Length s.Y.Length - 1 do
                if Double.IsFinite s.Y[i] && Double.IsFinite s.X[i] then
                    path.Append(if pen then " L" else "M").Append(c (p.Sx s.X[i])).Append(' ').Append(c (p.Sy s.Y[i]))
                    |> ignore

                    pen <- true
                else
                    pen <- false

            sb.AppendFormat(
                inv,
                "<path d=\"{0}\" fill=\"none\" stroke=\"{1}\" stroke-width=\"2.25\" stroke-linejoin=\"round\" stroke-linecap=\"round\"{2}/>",
                path.ToString(),
                s.Color,
                (if s.Dashed then " stroke-dasharray=\"6 4\"" else "")
            )
            |> ignore

            let n = min s.X.Length s.Y.Length

            if n <= 12 then
                for i in 0 .. n - 1 do
                    if Double.IsFinite s.Y[i] && Double.IsFinite s.X[i] then
                        sb.AppendFormat(
                            inv,
                            "<circle cx=\"{0}\" cy=\"{1}\" r=\"3.5\" fill=\"#fff\" stroke=\"{2}\" stroke-width=\"2\"><title>{3} at {4}: {5}</title></circle>",
                            c (p.Sx s.X[i]),
                            c (p.Sy s.Y[i]),
                            s.Color,
                            escape s.Name,
                            short s.X[i],
                            escape (format s.Y[i])
                        )
                        |> ignore

            sb.Append "</g>" |> ignore

        sb.Append("</svg>").ToString()

    /// A bar chart over categories: grouped (a bar per series) or stacked (series stacked per
    /// category). <c>reference</c> draws a dashed horizontal line (e.g. the baseline ratio 1);
    /// <c>labels</c> writes each bar's value above it.
    let barChart
        (frame: ChartFrame)
        (stacked: bool)
        (reference: float option)
        (labels: bool)
        (format: float -> string)
        (categories: string[])
        (series: BarSeries list)
        =
        let sb = StringBuilder()

        let value (s: BarSeries) i =
            if i < s.Values.Length && Double.IsFinite s.Values[i] then
                s.Values[i]
            else
                0.0

        let tops =
            if stacked then
                [|
                    for i in 0 .. categories.Length - 1 -> series |> List.sumBy (fun s -> max 0.0 (value s i))
                |]
            else
                [|
                    for s in series do
                        for i in 0 .. categories.Length - 1 -> value s i
                |]

        let hi =
            Array.append tops (reference |> Option.toArray)
            |> fun a -> if a.Length = 0 then 1.0 else Array.max a

        let t =
            ticks
                0.0
                (if hi > 0.0 then
                     hi * (if labels then 1.12 else 1.0)
                 else
                     1.0)
                5

        let yHi = t[t.Length - 1]
        let band = (float frame.Width - 58.0 - 16.0) / float (max 1 categories.Length)

        let p =
            frameStart
                sb
                "bar"
                frame
                [ for s in series -> s.Name, s.Color, false ]
                (Some
                    [|
                        for i in 0 .. categories.Length - 1 -> 58.0 + band * (float i + 0.5), categories[i]
                    |])
                (0.0, 1.0)
                (0.0, yHi)
                format

        if categories.Length = 0 || series.IsEmpty then
            empty sb p

        let groups = if stacked then 1 else max 1 series.Length
        let inner = band * 0.72
        let barW = inner / float groups
        let baseY = p.Sy 0.0

        let mutable stackTop = Array.zeroCreate<float> categories.Length

        series
        |> List.iteri (fun si s ->
            sb.AppendFormat(inv, "<g class=\"series\" data-series=\"{0}\">", escape s.Name)
            |> ignore

            for i in 0 .. categories.Length - 1 do
                let v = value s i
                let x0 = p.Left + band * float i + (band - inner) / 2.0
                let x = if stacked then x0 else x0 + barW * float si
                let y0 = if stacked then stackTop[i] else 0.0
                let y1 = y0 + max 0.0 v
                let top = p.Sy y1
                let h = max 0.0 (p.Sy y0 - top)

                sb.AppendFormat(
                    inv,
                    "<rect x=\"{0}\" y=\"{1}\" width=\"{2}\" height=\"{3}\" rx=\"2\" fill=\"{4}\"><title>{5} · {6}: {7}</title></rect>",
                    c (x + 1.0),
                    c top,
                    c (max 1.0 (barW - 2.0)),
                    c h,
                    s.Color,
                    escape s.Name,
                    escape categories[i],
                    escape (format s.Values[min i (s.Values.Length - 1)])
                )
                |> ignore

                if labels && not stacked then
                    sb.AppendFormat(
                        inv,
                        "<text x=\"{0}\" y=\"{1}\" class=\"bar-label\" text-anchor=\"middle\">{2}</text>",
                        c (x + barW / 2.0),
                        c (top - 4.0),
                        escape (format v)
                    )
                    |> ignore

                if stacked then
                    stackTop[i] <- y1

            sb.Append "</g>" |> ignore)

        if labels && stacked then
            for i in 0 .. categories.Length - 1 do
                sb.AppendFormat(
                    inv,
                    "<text x=\"{0}\" y=\"{1}\" class=\"bar-label\" text-anchor=\"middle\">{2}</text>",
                    c (p.Left + band * (float i + 0.5)),
                    c (p.Sy stackTop[i] - 4.0),
                    escape (format stackTop[i])
                )
                |> ignore

        match reference with
        | Some r ->
            sb.AppendFormat(
                inv,
                "<line x1=\"{0}\" x2=\"{1}\" y1=\"{2}\" y2=\"{2}\" class=\"reference\"/>",
                c p.Left,
                c (p.Left + p.W),
                c (p.Sy r)
            )
            |> ignore
        | None -> ()

        ignore baseY
        sb.Append("</svg>").ToString()

    /// Distributions as translucent filled step outlines on shared axes; <c>marker</c> draws a
    /// labelled vertical line (e.g. the firing threshold θ).
    let histogramChart (frame: ChartFrame) (marker: (float * string) option) (series: HistogramSeries list) =
        let sb = StringBuilder()
        let xs = finite (series |> Seq.collect (fun s -> s.Edges))

        let xs =
            Array.append xs (marker |> Option.map fst |> Option.filter Double.IsFinite |> Option.toArray)

        let ys = finite (series |> Seq.collect (fun s -> s.Heights))
        let xLo, xHi = extent xs false
        let _, yMax = extent ys true
        let t = ticks 0.0 yMax 4

        let xt =
            ticks xLo xHi 6 |> Array.filter (fun v -> v >= xLo - 1e-9 && v <= xHi + 1e-9)

        let sx v =
            58.0 + (v - xLo) / (xHi - xLo) * (float frame.Width - 58.0 - 16.0)

        let p =
            frameStart
                sb
                "histogram"
                frame
                [ for s in series -> s.Name, s.Color, false ]
                (Some [| for v in xt -> sx v, short v |])
                (xLo, xHi)
                (0.0, t[t.Length - 1])
                short

        if ys.Length = 0 then
            empty sb p

        for s in series do
            sb.AppendFormat(inv, "<g class=\"series\" data-series=\"{0}\">", escape s.Name)
            |> ignore

            let n = min s.Heights.Length (s.Edges.Length - 1)

            if n > 0 then
                let path = StringBuilder()

                path.Append("M").Append(c (p.Sx s.Edges[0])).Append(' ').Append(c (p.Sy 0.0))
                |> ignore

                for i in 0 .. n - 1 do
                    let h = if Double.IsFinite s.Heights[i] then s.Heights[i] else 0.0
                    let y = c (p.Sy h)

                    path
                        .Append(" L")
                        .Append(c (p.Sx s.Edges[i]))
                        .Append(' ')
                        .Append(y)
                        .Append(" L")
                        .Append(c (p.Sx s.Edges[i + 1]))
                        .Append(' ')
                        .Append(y)
                    |> ignore

                path.Append(" L").Append(c (p.Sx s.Edges[n])).Append(' ').Append(c (p.Sy 0.0)).Append(" Z")
                |> ignore

                sb.AppendFormat(
                    inv,
                    "<path d=\"{0}\" fill=\"{1}\" fill-opacity=\"0.18\" stroke=\"{1}\" stroke-width=\"1.75\" stroke-linejoin=\"round\"><title>{2}</title></path>",
                    path.ToString(),
                    s.Color,
                    escape s.Name
                )
                |> ignore

            sb.Append "</g>" |> ignore

        match marker with
        | Some(x, label) when Double.IsFinite x ->
            sb.AppendFormat(
                inv,
                "<line x1=\"{0}\" x2=\"{0}\" y1=\"{1}\" y2=\"{2}\" class=\"reference\"/><text x=\"{3}\" y=\"{4}\" class=\"marker-label\">{5}</text>",
                c (p.Sx x),
                c p.Top,
                c (p.Top + p.H),
                c (p.Sx x + 4.0),
                c (p.Top + 12.0),
                escape label
            )
            |> ignore
        | _ -> ()

        sb.Append("</svg>").ToString()
