/// `snnspec eval <checkpoint>`: accuracy at every t and firing rates of a checkpoint on a dataset.
module SnnSpec.Cli.EvalCommand

open System
open System.CommandLine
open System.IO
open System.Text
open System.Text.Json
open Spectre.Console
open SnnSpec
open SnnSpec.Training
open SnnSpec.IO
open SnnSpec.HwSim
open SnnSpec.Data

/// One crossbar read-out the checkpoint is evaluated through (`--crossbar-adc`), with its accuracy.
type CrossbarRun =
    {
        /// The ADC as given: "ideal" or its bits.
        Adc: string
        /// The share of calibration partial sums the full scales cover (--adc-coverage), if calibrated.
        Coverage: float option
        /// Per-layer full scales calibrated on training images (--adc-coverage); a layer not listed
        /// keeps the largest possible partial sum.
        FullScales: Map<string, float>
        /// Per-cell conductance variation of the programmed chip (--variation, --variation-seeds).
        Variation: Variation option
        Result: CrossbarAccuracy
    }

/// The evaluation of one checkpoint, as printed and as written by --json.
let toJson (checkpoint: string) (dataset: string) (split: string) (r: EvaluationReport) (crossbar: CrossbarRun list) =
    use ms = new MemoryStream()

    do
        use w = new Utf8JsonWriter(ms, JsonWriterOptions(Indented = true))
        w.WriteStartObject()
        w.WriteString("checkpoint", checkpoint)
        w.WriteString("dataset", dataset)
        w.WriteString("split", split)
        w.WriteNumber("samples", r.Samples)
        w.WriteNumber("accuracy", r.Accuracy)
        w.WriteStartArray "accuracyPerStep"

        for a in r.AccuracyPerStep do
            w.WriteNumberValue a

        w.WriteEndArray()
        w.WriteStartObject "firingRates"

        for KeyValue(n, v) in r.FiringRates do
            w.WriteNumber(n, v)

        w.WriteEndObject()

        match r.TeacherAccuracy with
        | Some a -> w.WriteNumber("teacherAccuracy", a)
        | None -> ()

        if not crossbar.IsEmpty then
            w.WriteStartArray "crossbar"

            for c in crossbar do
                w.WriteStartObject()
                w.WriteString("adc", c.Adc)
                w.WriteNumber("accuracy", c.Result.Crossbar)
                w.WriteNumber("integerAccuracy", c.Result.Integer)
                w.WriteNumber("floatAccuracy", c.Result.Float)
                w.WriteNumber("samples", c.Result.Samples)

                match c.Coverage with
                | Some p -> w.WriteNumber("coverage", p)
                | None -> ()

                match c.Variation with
                | Some v ->
                    w.WriteStartObject "variation"
                    w.WriteNumber("sigma", v.Sigma)
                    w.WriteNumber("seed", v.Seed)
                    w.WriteEndObject()
                | None -> ()

                if not c.FullScales.IsEmpty then
                    w.WriteStartObject "fullScales"

                    for KeyValue(n, f) in c.FullScales do
                        w.WriteNumber(n, f)

                    w.WriteEndObject()

                w.WriteStartArray "layers"

                for l in c.Result.CrossbarLayers do
                    w.WriteStringValue l

                w.WriteEndArray()
                w.WriteEndObject()

            w.WriteEndArray()

        w.WriteEndObject()

    Encoding.UTF8.GetString(ms.ToArray())

/// The crossbar options of an `--crossbar-adc` value: "ideal", or the ADC's bits (1–16) over the
/// largest possible column partial sum; None when the value is neither.
let adcOptions (rows: int) (cellBits: int) (value: string) : CrossbarOptions option =
    let baseOptions =
        { CrossbarOptions.Ideal with
            Rows = rows
            BitsPerCell = cellBits
        }

    match value.Trim().ToLowerInvariant() with
    | "ideal" -> Some baseOptions
    | v ->
        match Int32.TryParse v with
        | true, b when b >= 1 && b <= 16 ->
            Some
                { baseOptions with
                    Adc = Adc.Quantized(b, None)
                }
        | _ -> None

/// Whether the validation images evaluated — the last n of the <c>loaded</c> training images (fewer
/// than asked when the dataset is smaller) — reach into the ones a checkpoint with the recorded split
/// (train images t, validation images v, as loaded) trained on: the first t − v.
let reachesTraining (loaded: int) (n: int) (t: int, v: int) = loaded - n < t - v

/// Evaluates a checkpoint (and optionally a teacher) on the dataset's test images, or with
/// <c>validation</c> = Some n on its validation split (the last n of ds.Train training images, as a
/// spec's dataset section holds them out for model selection); each crossbar
/// option (label, options; one per (ADC, variation seed)) also runs the quantized checkpoint through
/// the crossbar datapath, all of them in one pass over the same images (CrossbarInference.accuracies).
/// With calibration (coverage, n), the full scale of every quantized
/// ADC is set per layer to cover that share of the partial sums of the first n training images
/// (CrossbarInference.calibrateFullScales, on ideal cells); the test images are never used for it.
let execute
    (checkpoint: string)
    (c: Checkpoint)
    (teacher: string option)
    (ds: DatasetSection)
    (batchSize: int)
    (crossbar: (string * CrossbarOptions) list)
    (calibration: (float * int) option)
    (validation: int option)
    (json: string option)
    =
    let recordedSplit = Run.recordedSplit c

    let t =
        teacher
        |> Option.map (fun p -> (Run.loadCheckpoint "the teacher checkpoint" p).Model)

    if not crossbar.IsEmpty && not (Model.quantPlan c.Model).IsQuantized then
        Console.usage
            "--crossbar-adc needs a quantized checkpoint; %s is full precision. Fix: quantize it first (snnspec quantize %s --bits 4)."
            checkpoint
            checkpoint

    let ds = Run.forModel c ds
    let trainSet, testSet = Run.loadData ds

    match validation, recordedSplit with
    | Some n, Some(t, v) when reachesTraining trainSet.Count n (t, v) ->
        Console.usage
            "the validation split would be training images %d to %d, but %s trained on the first %d (its split: --train %d --validation %d). Fix: evaluate images from %d on, e.g. --validation alone for the recorded split."
            (trainSet.Count - n)
            (trainSet.Count - 1)
            checkpoint
            (t - v)
            t
            v
            (t - v)
    | _ -> ()

    let split, evalSet =
        match validation with
        | Some n -> "validation", snd (SpecFile.split n trainSet)
        | None -> "test", testSet

    let testB = Run.batcher batchSize 0 false evalSet
    let r = Evaluation.run EvaluationConfig.Default t c.Model testB

    Run.log
        "%s: %s, %d %s %s images"
        checkpoint
        (match c.Model.Mode with
         | ExecutionMode.Snn steps -> sprintf "SNN, T = %d" steps
         | ExecutionMode.Ann -> "ANN")
        r.Samples
        ds.Name
        split

    Run.printAccuracy [ Path.GetFileNameWithoutExtension checkpoint, r.AccuracyPerStep ]

    match r.TeacherAccuracy with
    | Some a -> Run.log "teacher accuracy: %.1f %%" (100.0 * a)
    | None -> ()

    if not r.FiringRates.IsEmpty then
        let table =
            Table().AddColumns("population (/maxpool: after its max-pool)", "spikes per neuron per step")

        for KeyValue(n, v) in r.FiringRates do
            table.AddRow(Markup.Escape n, sprintf "%.4f" v) |> ignore

        AnsiConsole.Write table

    let fullScales =
        match calibration, crossbar |> List.tryFind (fun (_, o) -> o.Adc <> Adc.Ideal) with
        | Some(coverage, n), Some(_, o) ->
            let images = SampleSource.take (min n trainSet.Count) trainSet
            Run.log "ADC full scales: %g of the partial sums of %d training images" coverage images.Count

            let scales =
                CrossbarInference.calibrateFullScales
                    o
                    coverage
                    c.Model
                    ((Run.batcher batchSize 0 false images).Epoch 0 |> Seq.map (fun b -> b.Inputs))

            for KeyValue(n, f) in scales do
                Run.log "  %s: %g levels" n f

            Run.log
                "  (a crossbar layer not listed had no partial sum on these images and keeps the largest possible sum)"

            scales
        | _ -> Map.empty

    let planned =
        crossbar
        |> List.map (fun (label, o) ->
            let calibrated = o.Adc <> Adc.Ideal && calibration.IsSome

            let o =
                { o with
                    FullScales = (if calibrated then fullScales else Map.empty)
                }

            let label =
                match calibration with
                | Some(coverage, _) when calibrated -> sprintf "%s (coverage %g)" label coverage
                | _ -> label

            let label =
                match o.Variation with
                | Some v -> sprintf "%s, σ %g seed %d" label v.Sigma v.Seed
                | None -> label

            Run.log "crossbar inference, ADC %s: %d-row crossbars, %d-bit cells" label o.Rows o.BitsPerCell
            label, (if calibrated then Option.map fst calibration else None), o)

    let crossbarRuns =
        CrossbarInference.accuracies
            (planned |> List.map (fun (_, _, o) -> o))
            c.Model
            (testB.Epoch 0 |> Seq.map (fun b -> b.Inputs, b.Labels))
        |> List.map2
            (fun (label, coverage, o: CrossbarOptions) a ->
                {
                    Adc = label
                    Coverage = coverage
                    FullScales = o.FullScales
                    Variation = o.Variation
                    Result = a
                })
            planned

    if not crossbarRuns.IsEmpty then
        let table =
            Table()
                .AddColumns("ADC", "crossbar", "integer path", "fake-quantized float", "images", "layers on crossbars")

        for c in crossbarRuns do
            table.AddRow(
                Markup.Escape c.Adc,
                sprintf "%.2f %%" (100.0 * c.Result.Crossbar),
                sprintf "%.2f %%" (100.0 * c.Result.Integer),
                sprintf "%.2f %%" (100.0 * c.Result.Float),
                string c.Result.Samples,
                Markup.Escape(String.Join(", ", c.Result.CrossbarLayers))
            )
            |> ignore

        AnsiConsole.Write table

    match json with
    | Some path ->
        Run.writeText path (toJson checkpoint ds.Name split r crossbarRuns)
        Run.log "results: %s" path
    | None -> ()

    r

/// The dataset a checkpoint was trained on, from its metadata (None when not recorded, or when the
/// file is missing or unreadable: loading it reports that).
let recordedDataset (path: string) =
    try
        if File.Exists path then
            (SpecFile.loadModel path).Metadata.TryFind "dataset"
        else
            None
    with :? SnnSpecException ->
        None

/// The validation split to evaluate, (training images M, validation images n): the last n of the
/// first M. <c>asked</c> is whether --validation was given; a bare --validation takes the split
/// the checkpoint records (Run.recordedSplit); execute refuses images the checkpoint trained on.
let validationSplit
    (checkpoint: string)
    (split: (int * int) option)
    (asked: bool)
    (size: int option)
    (trainCount: int option)
    =
    if not asked && trainCount.IsSome then
        Console.usage
            "--train without --validation. Fix: add the validation split's size, e.g. --train 60000 --validation 2000 (as the training spec's dataset section)."

    if not asked then
        None
    else
        let m, n =
            match size, split with
            | Some n, Some(t, _) -> defaultArg trainCount t, n
            | Some n, None -> defaultArg trainCount 60000, n
            | None, Some(t, v) -> defaultArg trainCount t, v
            | None, None ->
                Console.usage
                    "--validation without a size, and %s records no training split (it was not written by this version's snnspec train or distill). Fix: give the training spec's sizes, e.g. --train 60000 --validation 2000."
                    checkpoint

        Some(m, n)

/// The `eval` command.
let command () =
    let cmd =
        Command(
            "eval",
            "Accuracy at every t = 1…T and firing rates of a checkpoint on a dataset's test images (or its validation split)."
        )

    let ckptArg =
        Argument<string>("checkpoint", Description = "A .safetensors checkpoint.")

    let dataset =
        Option<string>(
            "--dataset",
            Description =
                "mnist, fashion-mnist or synthetic (default: the one the checkpoint was trained on, else mnist)."
        )

    let test =
        Option<int>(
            "--test",
            DefaultValueFactory = (fun _ -> 1000),
            Description = "Test images evaluated (unused with --validation)."
        )

    let validation =
        Option<Nullable<int>>(
            "--validation",
            Arity = ArgumentArity.ZeroOrOne,
            Description =
                "Evaluate on the validation split instead of the test images: the last n of the first --train training images, as a spec's dataset section holds them out (e.g. --train 60000 --validation 10000). Without n (give it after the checkpoint): the split the checkpoint records. Refused when the images would include ones the checkpoint trained on."
        )

    let train =
        Option<Nullable<int>>(
            "--train",
            Description =
                "Training images the validation split is the tail of (with --validation; default: the checkpoint's recorded split, else 60000)."
        )

    let dataDir =
        Option<string>("--data-dir", Description = "A directory holding the dataset's files, tried first.")

    let batch =
        Option<int>("--batch-size", DefaultValueFactory = (fun _ -> 64), Description = "Batch size.")

    let teacher =
        Option<string>("--teacher", Description = "A teacher checkpoint evaluated on the same images.")

    let json =
        Option<string>("--json", Description = "Also write the results as JSON to this file.")

    let adc =
        Option<string[]>(
            "--crossbar-adc",
            AllowMultipleArgumentsPerToken = true,
            Description =
                "Also run a quantized checkpoint through the crossbar datapath with this ADC: 'ideal' or its bits (e.g. --crossbar-adc 4 8 ideal)."
        )

    let rows =
        Option<int>("--rows", DefaultValueFactory = (fun _ -> 64), Description = "Crossbar rows (with --crossbar-adc).")

    let cellBits =
        Option<int>(
            "--cell-bits",
            DefaultValueFactory = (fun _ -> 4),
            Description = "Bits stored per crossbar cell (with --crossbar-adc)."
        )

    let coverage =
        Option<Nullable<float>>(
            "--adc-coverage",
            Description =
                "With a quantized --crossbar-adc: set each layer's ADC full scale to cover this share of its partial sums on training images (e.g. 0.999) instead of the largest possible sum."
        )

    let variation =
        Option<Nullable<float>>(
            "--variation",
            Description =
                "With --crossbar-adc: relative spread σ of multiplicative per-cell conductance variation (e.g. 0.1); each seed of --variation-seeds programs one chip."
        )

    let variationSeeds =
        Option<int[]>(
            "--variation-seeds",
            AllowMultipleArgumentsPerToken = true,
            Description = "Seeds of the chips drawn with --variation (default 0), e.g. --variation-seeds 0 1 2."
        )

    let calibrationImages =
        Option<int>(
            "--calibration-images",
            DefaultValueFactory = (fun _ -> 512),
            Description = "Training images the ADC full scales are calibrated on (with --adc-coverage)."
        )

    cmd.Arguments.Add ckptArg

    for o in
        [
            dataset :> Option
            test
            validation
            train
            dataDir
            batch
            teacher
            json
            adc
            rows
            cellBits
            coverage
            calibrationImages
            variation
            variationSeeds
        ] do
        cmd.Options.Add o

    cmd.SetAction(fun (r: ParseResult) ->
        Console.guard (fun () ->
            let path = r.GetValue ckptArg

            let c = Run.loadCheckpoint "the checkpoint" path

            let name =
                match Option.ofObj (r.GetValue dataset) with
                | Some d -> d
                | None -> c.Metadata.TryFind "dataset" |> Option.defaultValue "mnist"

            let bs = r.GetValue batch

            if bs < 1 then
                Console.usage "--batch-size %d. Fix: give at least 1." bs

            let calibration =
                match Option.ofNullable (r.GetValue coverage) with
                | None -> None
                | Some p when not (p > 0.0 && p <= 1.0) ->
                    Console.usage "--adc-coverage %g. Fix: give a share in (0, 1], e.g. 0.999." p
                | Some p ->
                    let n = r.GetValue calibrationImages

                    if n < 1 then
                        Console.usage "--calibration-images %d. Fix: give at least 1." n

                    Some(p, n)

            let held =
                validationSplit
                    path
                    (Run.recordedSplit c)
                    (not (isNull (r.GetResult validation)))
                    (Option.ofNullable (r.GetValue validation))
                    (Option.ofNullable (r.GetValue train))

            let ds =
                match held with
                | Some(m, n) ->
                    // The test images are not read: one is loaded.
                    Run.datasetSection name m n 1 (Option.ofObj (r.GetValue dataDir))
                | None ->
                    Run.datasetSection
                        name
                        (match calibration with
                         | Some(_, n) -> n + 1
                         | None -> 2)
                        1
                        (r.GetValue test)
                        (Option.ofObj (r.GetValue dataDir))

            let crossbar =
                (Option.ofObj (r.GetValue adc) |> Option.defaultValue [||])
                |> Array.toList
                |> List.map (fun v ->
                    match adcOptions (r.GetValue rows) (r.GetValue cellBits) v with
                    | Some o -> v, o
                    | None -> Console.usage "--crossbar-adc %s. Fix: give 'ideal' or the ADC's bits, 1 to 16." v)

            let seeds =
                Option.ofObj (r.GetValue variationSeeds)
                |> Option.filter (fun s -> s.Length > 0)

            let crossbar =
                match Option.ofNullable (r.GetValue variation), seeds with
                | None, Some _ ->
                    Console.usage "--variation-seeds without --variation. Fix: add the spread, e.g. --variation 0.1."
                | None, None -> crossbar
                | Some sigma, _ when not (sigma >= 0.0 && Double.IsFinite sigma) ->
                    Console.usage "--variation %g. Fix: give a finite spread >= 0, e.g. 0.1." sigma
                | Some _, _ when crossbar.IsEmpty ->
                    Console.usage
                        "--variation without --crossbar-adc. Fix: add the ADC, e.g. --crossbar-adc 8 --variation 0.1."
                | Some sigma, _ when sigma = 0.0 -> crossbar
                | Some sigma, seeds ->
                    [
                        for label, o in crossbar do
                            for seed in defaultArg seeds [| 0 |] do
                                label,
                                { o with
                                    Variation = Some { Sigma = sigma; Seed = seed }
                                }
                    ]

            if
                calibration.IsSome
                && not (crossbar |> List.exists (fun (_, o) -> o.Adc <> Adc.Ideal))
            then
                Console.usage
                    "--adc-coverage without a quantized ADC. Fix: add the ADC's bits, e.g. --crossbar-adc 8 4 --adc-coverage 0.999."

            execute
                path
                c
                (Option.ofObj (r.GetValue teacher))
                ds
                bs
                crossbar
                calibration
                (held |> Option.map snd)
                (Option.ofObj (r.GetValue json))
            |> ignore

            Console.Success))

    cmd
