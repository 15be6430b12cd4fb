namespace SnnSpec.HwSim

open System
open System.Collections.Concurrent
open System.Numerics.Tensors
open System.Threading.Tasks
open SnnSpec

/// The crossbar datapath used for every integer (weight → population) pair of a model. The weight
/// bits of each crossbar are the layer's exported bit width.
type CrossbarOptions =
    {
        /// Rows per crossbar X.
        Rows: int
        /// Bits per cell b_cell.
        BitsPerCell: int
        Adc: Adc
        /// Per-layer ADC full scales (level units) by exported layer name, e.g. from
        /// CrossbarInference.calibrateFullScales; they replace a quantized ADC's full scale for
        /// those layers. Empty keeps Adc's.
        FullScales: Map<string, float>
        /// Per-cell conductance variation; each layer (and each kernel tap of a conv) draws its cells
        /// from its own seed derived from this one, so a run is deterministic for a seed.
        Variation: Variation option
    }

    /// 64-row crossbars, 4-bit cells, an ideal ADC and no variation: reproduces the integer path.
    static member Ideal =
        {
            Rows = 64
            BitsPerCell = 4
            Adc = Adc.Ideal
            FullScales = Map.empty
            Variation = None
        }

/// Accuracies of one test set through the crossbar, the integer path and the fake-quantized float model.
type CrossbarAccuracy =
    {
        /// Crossbar datapath (integer pairs through Crossbar, everything else as the integer path).
        Crossbar: float
        /// Integer-arithmetic inference (IntegerExport.run).
        Integer: float
        /// The fake-quantized float model (Model.forward, eval).
        Float: float
        Samples: int
        /// The weight layers that ran on crossbars.
        CrossbarLayers: string list
    }

/// Functional crossbar inference of an integer-exported quantized SNN (issue 7, part 5): exactly the
/// integer inference path (IntegerExport.run), except that every integer pair's product Σ code·spike —
/// a conv or linear layer whose input is binary spikes and whose weights are integer codes — is read
/// through the crossbar datapath (Crossbar.program / forward: offset-encoded codes sliced over cells,
/// per-tile column partial sums, ADC, shift-add and subtractors; convs kernel-wise mapped as in
/// Crossbar.conv2d). The digital result is rounded to the nearest integer (half away from zero) before
/// the bias code is added and the integer neuron runs; with an ideal ADC (or one whose step is one
/// level and whose full scale covers every partial sum) and no variation it equals the integer path
/// exactly. Layers outside the integer pairs (e.g. MINT's digital first layer and classifier) run as
/// in the integer path.
module CrossbarInference =
    /// The crossbar configuration of one exported layer (its index in the exported model seeds variation).
    let config (o: CrossbarOptions) (index: int) (il: IntegerLayer) : CrossbarConfig =
        {
            Rows = o.Rows
            WeightBits = max 2 il.Bits
            BitsPerCell = o.BitsPerCell
            Adc =
                match o.Adc, o.FullScales.TryFind il.Name with
                | Adc.Quantized(bits, _), Some f -> Adc.Quantized(bits, Some f)
                | adc, _ -> adc
            Variation =
                o.Variation
                |> Option.map (fun v ->
                    { v with
                        Seed = v.Seed + 7919 * (index + 1)
                    })
        }

    /// Programs a layer: one crossbar [inputs, outputs] for a linear layer; one per kernel tap
    /// (kh, kw), row-major, each [C_in, C_out], for a conv (the seeds of Crossbar.conv2d).
    let program (o: CrossbarOptions) (index: int) (il: IntegerLayer) : ProgrammedCrossbar[] =
        let c = config o index il

        if il.Kind = "linear" then
            let outs, fin = il.Shape[0], il.Shape[1]

            [|
                Crossbar.program c (Array2D.init fin outs (fun i j -> il.Weights[j * fin + i]))
            |]
        else
            let outs, cin, k = il.Shape[0], il.Shape[1], il.Shape[2]

            Array.init (k * k) (fun t ->
                let kh, kw = t / k, t % k

                Crossbar.program
                    { c with
                        Variation = c.Variation |> Option.map (fun v -> { v with Seed = v.Seed + kh * k + kw })
                    }
                    (Array2D.init cin outs (fun i oc -> il.Weights[((oc * cin + i) * k + kh) * k + kw])))

    let private toInt (v: float) =
        int (Math.Round(v, MidpointRounding.AwayFromZero))

    /// A conv layer's input [N, C, H, W], kernel k, stride, padding and output H_o × W_o.
    let private convGeometry (il: IntegerLayer) (inShape: int[]) =
        let n, c, h, w = inShape[0], inShape[1], inShape[2], inShape[3]
        let k, st, p = il.Shape[2], il.Stride, il.Padding
        n, c, h, w, k, st, p, (h + 2 * p - k) / st + 1, (w + 2 * p - k) / st + 1

    /// The product of a layer's crossbars with a binary input [N, …] (flat 0/1 codes and shape), each
    /// crossbar read through <c>read</c> (called in parallel over samples), rounded to integers.
    let private productWith
        (read: ProgrammedCrossbar -> bool[] -> float[])
        (il: IntegerLayer)
        (xbars: ProgrammedCrossbar[])
        (x: int[])
        (inShape: int[])
        : int[] * int[] =
        let o = il.Shape[0]

        if il.Kind = "linear" then
            let n, fin = inShape[0], inShape[1]
            let acc = Array.zeroCreate (n * o)

            Parallel.For(
                0,
                n,
                fun i ->
                    let r = read xbars[0] (Array.init fin (fun k -> x[i * fin + k] <> 0))

                    for j in 0 .. o - 1 do
                        acc[i * o + j] <- toInt r[j]
            )
            |> ignore

            acc, [| n; o |]
        else
            let n, c, h, w, k, st, p, ho, wo = convGeometry il inShape
            let acc = Array.zeroCreate (n * o * ho * wo)

            Parallel.For(
                0,
                n,
                fun i ->
                    let sum = Array.zeroCreate (o * ho * wo)
                    let column = Array.zeroCreate c

                    for kh in 0 .. k - 1 do
                        for kw in 0 .. k - 1 do
                            let tap = xbars[kh * k + kw]

                            for oy in 0 .. ho - 1 do
                                for ox in 0 .. wo - 1 do
                                    let y = oy * st - p + kh
                                    let xx = ox * st - p + kw

                                    // Outside the input (zero padding) no row is active: the read is 0.
                                    if y >= 0 && y < h && xx >= 0 && xx < w then
                                        let mutable any = false

                                        for ci in 0 .. c - 1 do
                                            let s = x[((i * c + ci) * h + y) * w + xx] <> 0
                                            column[ci] <- s
                                            any <- any || s

                                        if any then
                                            let r = read tap column

                                            for oc in 0 .. o - 1 do
                                                let ai = (oc * ho + oy) * wo + ox
                                                sum[ai] <- sum[ai] + r[oc]

                    let b = i * o * ho * wo

                    for ai in 0 .. sum.Length - 1 do
                        acc[b + ai] <- toInt sum[ai]
            )
            |> ignore

            acc, [| n; o; ho; wo |]

    /// The product Σ code·x of a layer's programmed crossbars with a binary input [N, …] (flat 0/1
    /// codes and shape), rounded to integers, read vector by vector through Crossbar.forward: the
    /// oracle of <c>product</c>.
    let referenceProduct (il: IntegerLayer) (xbars: ProgrammedCrossbar[]) (x: int[]) (inShape: int[]) =
        productWith Crossbar.forward il xbars x inShape

    /// The product Σ code·x of a layer's programmed crossbars with a binary input [N, …] (flat 0/1
    /// codes and shape), rounded to integers: the product hook of IntegerExport.runWith. Equal to
    /// <c>referenceProduct</c> bit for bit (the same reads, added in the same order), but each thread
    /// reads through one Crossbar.batchReader per crossbar, and a conv sample is laid out
    /// channels-last, so that a kernel tap reads all its positions' input columns in one batch.
    let product (il: IntegerLayer) (xbars: ProgrammedCrossbar[]) (x: int[]) (inShape: int[]) : int[] * int[] =
        let o = il.Shape[0]

        if inShape.Length < 2 || inShape[1] <> xbars[0].Inputs then
            Errors.invalidArg
                "CrossbarInference.product"
                "inShape"
                (Errors.showShape inShape)
                (sprintf "[N, %d, …]: the crossbars of %s have %d input rows" xbars[0].Inputs il.Name xbars[0].Inputs)

        if il.Kind = "linear" then
            let n, fin = inShape[0], inShape[1]
            let acc = Array.zeroCreate (n * o)

            // Samples in chunks: one batched read per chunk.
            let chunk = 32
            let chunks = (n + chunk - 1) / chunk

            Parallel.For(
                0,
                chunks,
                Func<_>(fun () ->
                    Crossbar.batchReader xbars[0],
                    Array.zeroCreate<bool>(chunk * fin),
                    Array.init chunk (fun r -> r * fin),
                    Array.zeroCreate<float>(chunk * o)),
                Func<int, ParallelLoopState, _, _>
                    (fun
                        c
                        _
                        (read: bool[] -> int[] -> int -> float[] -> unit, spikes: bool[], offsets: int[], r: float[]) ->
                        let i0 = c * chunk
                        let count = min chunk (n - i0)

                        for k in 0 .. count * fin - 1 do
                            spikes[k] <- x[i0 * fin + k] <> 0

                        read spikes offsets count r

                        for j in 0 .. count * o - 1 do
                            acc[i0 * o + j] <- toInt r[j]

                        (read, spikes, offsets, r)),
                Action<_>(ignore)
            )
            |> ignore

            acc, [| n; o |]
        else
            let n, c, h, w, k, st, p, ho, wo = convGeometry il inShape
            let acc = Array.zeroCreate (n * o * ho * wo)

            let perThread () =
                Array.map Crossbar.batchReader xbars,
                Array.zeroCreate<bool>(h * w * c),
                Array.zeroCreate<bool>(h * w),
                Array.zeroCreate<int>(ho * wo),
                Array.zeroCreate<int>(ho * wo),
                Array.zeroCreate<float>(ho * wo * o),
                Array.zeroCreate<float>(ho * wo * o)

            Parallel.For(
                0,
                n,
                Func<_>(perThread),
                Func<int, ParallelLoopState, _, _>
                    (fun
                        i
                        _
                        (readers: (bool[] -> int[] -> int -> float[] -> unit)[],
                         hwc: bool[],
                         any: bool[],
                         offsets: int[],
                         targets: int[],
                         sum: float[],
                         reads: float[]) ->
                        // The sample channels-last [H, W, C], and which positions have an active channel.
                        Array.fill any 0 any.Length false

                        for ci in 0 .. c - 1 do
                            let plane = (i * c + ci) * h * w

                            for yx in 0 .. h * w - 1 do
                                if x[plane + yx] <> 0 then
                                    hwc[yx * c + ci] <- true
                                    any[yx] <- true
                                else
                                    hwc[yx * c + ci] <- false

                        Array.fill sum 0 sum.Length 0.0

                        for kh in 0 .. k - 1 do
                            for kw in 0 .. k - 1 do
                                // The tap's reads: input columns of the output positions that see an
                                // active channel (zero padding and silent columns read 0).
                                let mutable count = 0

                                for oy in 0 .. ho - 1 do
                                    let y = oy * st - p + kh

                                    if y >= 0 && y < h then
                                        for ox in 0 .. wo - 1 do
                                            let xx = ox * st - p + kw

                                            if xx >= 0 && xx < w && any[y * w + xx] then
                                                offsets[count] <- (y * w + xx) * c
                                                targets[count] <- (oy * wo + ox) * o
                                                count <- count + 1

                                readers[kh * k + kw] hwc offsets count reads

                                for r in 0 .. count - 1 do
                                    let at = targets[r]

                                    TensorPrimitives.Add(
                                        ReadOnlySpan<float>(sum, at, o),
                                        ReadOnlySpan<float>(reads, r * o, o),
                                        Span<float>(sum, at, o)
                                    )

                        let b = i * o * ho * wo

                        for oc in 0 .. o - 1 do
                            for yx in 0 .. ho * wo - 1 do
                                acc[b + oc * ho * wo + yx] <- toInt sum[yx * o + oc]

                        (readers, hwc, any, offsets, targets, sum, reads)),
                Action<_>(ignore)
            )
            |> ignore

            acc, [| n; o; ho; wo |]

    /// An exported model with its integer pairs programmed onto crossbars (a programmed chip): reuse
    /// it across batches so that variation is drawn once.
    type Programmed =
        {
            Options: CrossbarOptions
            Model: Model
            Exported: IntegerModel
            Crossbars: Map<string, ProgrammedCrossbar[]>
        }

    /// Programs every integer pair of an exported model (IntegerExport.export m) onto crossbars;
    /// raises SnnSpecException naming a bad option (Crossbar.validate).
    let prepareWith (o: CrossbarOptions) (exported: IntegerModel) (m: Model) : Programmed =
        if exported.Architecture <> m.Architecture.Name then
            Errors.invalidArg
                "CrossbarInference.prepareWith"
                "exported.Architecture"
                exported.Architecture
                (sprintf "the export of the model run (%s)" m.Architecture.Name)

        let crossbars =
            exported.Layers
            |> List.indexed
            |> List.filter (fun (_, l) -> l.Neuron.IsSome)
            |> List.map (fun (i, l) -> l.Name, program o i l)
            |> Map.ofList

        if crossbars.IsEmpty && not exported.Layers.IsEmpty then
            Crossbar.validate (config o 0 exported.Layers.Head)

        {
            Options = o
            Model = m
            Exported = exported
            Crossbars = crossbars
        }

    /// Exports the quantized model and programs every integer pair's weights; raises
    /// SnnSpecException naming a bad option (Crossbar.validate) or an unquantized model.
    let prepare (o: CrossbarOptions) (m: Model) : Programmed =
        prepareWith o (IntegerExport.export m) m

    /// The integer path with the programmed crossbars: the forward output (with the requested probes)
    /// and the weight layers that ran on crossbars.
    let runProgrammed (p: Programmed) (probes: ProbeRequest) (x: Tensor) : ForwardOutput * string list =
        let hook (il: IntegerLayer) (codes: int[]) (shape: int[]) =
            match p.Crossbars.TryFind il.Name with
            | Some xbars -> product il xbars codes shape
            | None -> Forward.exactProduct il codes shape

        IntegerExport.runWith hook p.Exported probes p.Model x

    /// Logits [T, B, K] of the quantized model run through the crossbar datapath.
    let run (o: CrossbarOptions) (m: Model) (x: Tensor) : Tensor =
        (fst (runProgrammed (prepare o m) ProbeRequest.None x)).Logits

    /// accuracy for several crossbar options (ADCs, chips) in one pass over the test batches: the
    /// model is exported once, and the integer path and the float model run once per batch for all
    /// options. One result per option, in order; none for no options.
    let accuracies
        (options: CrossbarOptions list)
        (m: Model)
        (testBatches: seq<Tensor * int[]>)
        : CrossbarAccuracy list =
        if options.IsEmpty then
            []
        else
            let exported = IntegerExport.export m
            let chips = options |> List.map (fun o -> prepareWith o exported m) |> Array.ofList
            let xbar = Array.zeroCreate chips.Length
            let ran = Array.create chips.Length []
            let mutable integer = 0
            let mutable flt = 0
            let mutable samples = 0

            let hits (logits: Tensor) (labels: int[]) =
                let pred = Readout.predict logits

                if pred.Length <> labels.Length then
                    Errors.shapeMismatch
                        "CrossbarInference.accuracy"
                        [ logits.Shape; [| labels.Length |] ]
                        "one label per sample"

                Array.fold2 (fun acc a b -> if a = b then acc + 1 else acc) 0 pred labels

            for x, labels in testBatches do
                for c in 0 .. chips.Length - 1 do
                    let out, r = runProgrammed chips[c] ProbeRequest.None x
                    ran[c] <- r
                    xbar[c] <- xbar[c] + hits out.Logits labels

                integer <-
                    integer
                    + hits (fst (IntegerExport.run exported ProbeRequest.None m x)).Logits labels

                flt <-
                    flt
                    + hits (Diff.noGrad (fun () -> (Model.forward ForwardContext.Eval m x).Logits)) labels

                samples <- samples + labels.Length

            if samples = 0 then
                Errors.invalidArg "CrossbarInference.accuracy" "testBatches" 0 "at least one sample"

            let frac n = float n / float samples

            [
                for c in 0 .. chips.Length - 1 ->
                    {
                        Crossbar = frac xbar[c]
                        Integer = frac integer
                        Float = frac flt
                        Samples = samples
                        CrossbarLayers = ran[c]
                    }
            ]

    /// Accuracy (time-mean arg-max, Readout.predict) over test batches (inputs, labels) through the
    /// crossbar, beside the integer path's and the fake-quantized float model's.
    let accuracy (o: CrossbarOptions) (m: Model) (testBatches: seq<Tensor * int[]>) : CrossbarAccuracy =
        (accuracies [ o ] m testBatches).Head

    /// accuracy over one epoch (0) of a batcher.
    let accuracyOn (o: CrossbarOptions) (m: Model) (batcher: SnnSpec.Data.Batcher) : CrossbarAccuracy =
        accuracy o m (batcher.Epoch 0 |> Seq.map (fun b -> b.Inputs, b.Labels))

    /// Per-layer ADC full scales calibrated on data: for every integer pair, the smallest whole
    /// number of levels F such that a fraction <c>coverage</c> ∈ (0, 1] of its column partial sums
    /// (reads with at least one active row, Crossbar.observe) lie in [0, F], collected over the
    /// calibration inputs on ideal crossbars without variation (so every layer sees the activity of
    /// the integer path). coverage 1 gives the largest partial sum seen; F is at least 1. A layer
    /// with no partial sum on the inputs is left out (it keeps the ADC's own full scale). Calibrate
    /// on training data, never on the test set. Pass the result as CrossbarOptions.FullScales.
    let calibrateFullScales
        (o: CrossbarOptions)
        (coverage: float)
        (m: Model)
        (inputs: seq<Tensor>)
        : Map<string, float> =
        if not (coverage > 0.0 && coverage <= 1.0) then
            Errors.invalidArg
                "CrossbarInference.calibrateFullScales"
                "coverage"
                coverage
                "a fraction in (0, 1], e.g. 0.999"

        let ideal =
            prepare
                { o with
                    Adc = Adc.Ideal
                    FullScales = Map.empty
                    Variation = None
                }
                m

        // Ideal partial sums are whole levels in [0, Crossbar.fullScale]: one counter per level.
        let counts =
            ideal.Crossbars
            |> Map.map (fun _ xbars -> Array.zeroCreate<int64>(int (Crossbar.fullScale xbars[0].Config) + 1))

        let hook (il: IntegerLayer) (codes: int[]) (shape: int[]) =
            match ideal.Crossbars.TryFind il.Name with
            | Some xbars ->
                let histogram = counts[il.Name]
                let top = histogram.Length - 1

                // Only the partial sums are wanted; the layer's output is the exact product.
                let read (xbar: ProgrammedCrossbar) (spikes: bool[]) =
                    Crossbar.observe xbar spikes (fun v ->
                        let level = min top (max 0 (int (Math.Round v)))
                        Threading.Interlocked.Increment(&histogram[level]) |> ignore)

                    Array.zeroCreate xbar.Outputs

                productWith read il xbars codes shape |> ignore
                Forward.exactProduct il codes shape
            | None -> Forward.exactProduct il codes shape

        let mutable seen = 0

        for x in inputs do
            IntegerExport.runWith hook ideal.Exported ProbeRequest.None m x |> ignore
            seen <- seen + 1

        if seen = 0 then
            Errors.invalidArg "CrossbarInference.calibrateFullScales" "inputs" 0 "at least one calibration batch"

        counts
        |> Map.toList
        |> List.choose (fun (name, histogram) ->
            let total = Array.sum histogram

            if total = 0L then
                None
            else
                let needed = int64 (Math.Ceiling(decimal coverage * decimal total))
                let mutable level = 0
                let mutable covered = histogram[0]

                while covered < needed do
                    level <- level + 1
                    covered <- covered + histogram[level]

                Some(name, float (max 1 level)))
        |> Map.ofList
