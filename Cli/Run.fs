/// Pieces the train, distill, eval, quantize and report commands share: data, batching, training
/// with a progress display, interruption, evaluation tables, hardware cost and atomic report files.
module SnnSpec.Cli.Run

open System
open System.IO
open System.Text
open System.Threading
open Spectre.Console
open SnnSpec
open SnnSpec.Data
open SnnSpec.Training
open SnnSpec.IO
open SnnSpec.Reports
open SnnSpec.HwSim

let log (fmt: Printf.StringFormat<'a, unit>) =
    Printf.kprintf (fun s -> AnsiConsole.MarkupLine("{0}", Markup.Escape s)) fmt

/// Writes a text file atomically (temporary file in the same directory, then rename).
let writeText (path: string) (text: string) = Report.writeTextAtomic path text

/// Writes <stem>.html, .csv and .json into the directory atomically; returns the three paths.
let writeReport (directory: string) (stem: string) (r: ReportData) = Report.write directory stem r

/// Training and test images of a dataset section, fetched (and verified) when needed.
let loadData (ds: DatasetSection) =
    let options =
        { Fetch.defaults with
            Log = fun line -> AnsiConsole.MarkupLine("  {0}", Markup.Escape line)
        }

    SpecFile.loadDataset options ds

/// Whether a dataset's samples are frame sequences [T, C, H, W]: the command line's datasets are
/// images [C, H, W] or emulated event frames.
let isSequence (s: ISampleSource) = s.SampleShape.Length = 4

/// A batcher over a dataset (time-major batches [T, B, …] for frame sequences).
let batcher (batchSize: int) (seed: int) (shuffle: bool) (s: ISampleSource) =
    Batching.create
        { Batching.options batchSize seed with
            Shuffle = shuffle
            TimeMajor = isSequence s
        }
        s

/// The first n training images as one tensor (calibration of quantizer scales).
let calibrationBatch (n: int) (s: ISampleSource) =
    SampleSource.toTensor (isSequence s) s [| 0 .. min s.Count n - 1 |]

let stepsOf (m: Model) =
    match m.Mode with
    | ExecutionMode.Snn t -> t
    | ExecutionMode.Ann -> 1

/// The checkpoint path of a named model in a run directory.
let checkpointPath (out: string) (name: string) =
    Path.Combine(out, name + ".safetensors")

/// The checkpoint of the best epoch so far of a model still training (left behind by Ctrl-C).
let partialPath (out: string) (name: string) =
    Path.Combine(out, name + ".partial.safetensors")

/// One training run of the trainer: names and quantization of every (stage, student), the spec,
/// the settings and where to save.
type Job =
    {
        Label: string
        /// Name of the model trained as (stage, student): its checkpoint is <Out>/<name>.safetensors.
        Name: int -> int -> string
        Quantization: int -> QuantConfig option
        Spec: DistillationSpec
        Config: TrainConfig
        Train: Batcher
        Validation: Batcher option
        Out: string
        Metadata: Map<string, string>
        /// Where Ctrl-C leaves the trainer snapshot (commands use <c>snapshotPath</c>).
        Snapshot: string
        /// Continue from the snapshot when one was left by Ctrl-C.
        Resume: bool
    }

/// The trainer snapshot a job leaves behind on Ctrl-C: everything needed to continue exactly from
/// the interrupted step (parameters, optimizer state, position, best-so-far, histories).
let snapshotPath (out: string) (label: string) =
    let safe =
        String(
            label
            |> Seq.map (fun c -> if Char.IsLetterOrDigit c || c = '-' then c else '_')
            |> Array.ofSeq
        )

    Path.Combine(out, safe + ".resume.safetensors")

/// Raised when Ctrl-C stopped a job; lists the checkpoints saved so far (the snapshot first).
exception Interrupted of saved: string list

/// The one place that handles an interrupted run: prints what was saved and how to go on, and
/// returns the exit code.
let onInterrupt (out: string) (saved: string list) =
    let snapshot = saved |> List.tryFind (fun p -> p.EndsWith ".resume.safetensors")

    match snapshot with
    | Some snap ->
        Console.error (
            sprintf
                "stopped by Ctrl-C after the current step. Saved the trainer snapshot %s%s. Fix: run the same command with --resume to continue exactly where it stopped."
                snap
                (match saved |> List.filter ((<>) snap) with
                 | [] -> ""
                 | ps -> sprintf " and the best finished epochs so far: %s" (String.Join(", ", ps)))
        )
    | None -> ()

    if snapshot.IsSome then
        ()
    elif saved.IsEmpty then
        Console.error (
            sprintf
                "stopped by Ctrl-C before the first epoch ended; nothing was saved in %s. Fix: run the command again (use fewer epochs or images for a shorter run)."
                out
        )
    else
        Console.error (
            sprintf
                "stopped by Ctrl-C. Saved (the best finished epoch of each model so far): %s. Fix: run the command again to train from the start, or evaluate these checkpoints with snnspec eval."
                (String.Join(", ", saved))
        )

    Console.Failure

/// Saves a model with its quantization and metadata.
let save (path: string) (quant: QuantConfig option) (metadata: Map<string, string>) (m: Model) =
    SpecFile.saveModel path quant metadata m

/// Per-step loss values (step, [(term, value)]) as one series per term, in the terms' order.
let lossSeries (points: Collections.Generic.IReadOnlyList<int * (string * float32) list>) : LossSeries[] =
    if points.Count = 0 then
        [||]
    else
        (snd points[0])
        |> List.map fst
        |> List.mapi (fun k term ->
            {
                Term = term
                Steps = points |> Seq.map (fun (s, _) -> float s) |> Array.ofSeq
                Values = points |> Seq.map (fun (_, ls) -> float (snd ls[k])) |> Array.ofSeq
            })
        |> Array.ofList

/// An evaluation histogram as a report histogram.
let reportHistogram (h: SnnSpec.Training.Histogram) : SnnSpec.Reports.Histogram =
    {
        Edges = h.Edges |> Array.map float
        Counts = h.Counts |> Array.map float
    }

/// The report's membrane distributions (MD-SNN Fig. 1) per probe: the teacher's (from teacherRun),
/// the student's before distillation (before) and after it (after); probes missing on a side are
/// left out.
let membraneProbes
    (names: string list)
    (teacherRun: EvaluationReport)
    (before: EvaluationReport)
    (after: EvaluationReport)
    : MembraneProbe[] =
    names
    |> List.choose (fun n ->
        match
            teacherRun.TeacherHistograms.TryFind n,
            before.StudentHistograms.TryFind n,
            after.StudentHistograms.TryFind n
        with
        | Some t, Some b, Some a ->
            Some
                {
                    Probe = n
                    Threshold = 1.0
                    Teacher = reportHistogram t
                    StudentBefore = reportHistogram b
                    StudentAfter = reportHistogram a
                }
        | _ -> None)
    |> Array.ofList

/// Trains a job with a progress display (epoch, step, loss terms, accuracy, ETA). After every epoch
/// the best model so far is saved as <name>.partial.safetensors; when the job ends the best model
/// of each is saved as <name>.safetensors and the partial files are removed. Returns the result
/// and the loss curves; raises Interrupted on Ctrl-C.
let train (job: Job) : TrainResult * TrainingRun list =
    Directory.CreateDirectory job.Out |> ignore
    let stages = DistillationSpec.stages job.Spec
    let perEpoch = job.Train.BatchesPerEpoch

    let total =
        stages
        |> List.sumBy (fun s -> s.Students.Length)
        |> (*) (job.Config.Epochs * perEpoch)

    let curves =
        Collections.Generic.Dictionary<int * int, ResizeArray<int * (string * float32) list>>()

    let saved = Collections.Generic.Dictionary<string, string>()
    let mutable result = None
    let snapPath = job.Snapshot

    let resume =
        if job.Resume && File.Exists snapPath then
            log "resuming from %s" snapPath
            Some(TrainerCheckpoint.load snapPath)
        else
            None

    let run () =
        AnsiConsole
            .Progress()
            .AutoClear(false)
            .Columns(
                TaskDescriptionColumn(Alignment = Justify.Left),
                ProgressBarColumn(),
                PercentageColumn(),
                ElapsedTimeColumn(),
                RemainingTimeColumn()
            )
            .Start(fun ctx ->
                let task = ctx.AddTask(Markup.Escape job.Label, true, float (max 1 total))

                let progress (p: TrainProgress) =
                    let key = p.Stage, p.Student

                    if not (curves.ContainsKey key) then
                        curves[key] <- ResizeArray()

                    curves[key].Add((p.Step, p.Losses))
                    task.Increment 1.0

                    let losses =
                        String.Join(" ", p.Losses |> List.map (fun (n, v) -> sprintf "%s=%.3f" n v))

                    task.Description <-
                        Markup.Escape(
                            sprintf
                                "%s  epoch %d/%d step %d/%d  %s  loss %.3f (%s)  acc %.2f"
                                job.Label
                                (p.Epoch + 1)
                                job.Config.Epochs
                                (p.Batch + 1)
                                perEpoch
                                (job.Name p.Stage p.Student)
                                p.Total
                                losses
                                p.Accuracy
                        )

                let onEpoch (r: EpochReport) (m: Model) =
                    let name = job.Name r.Stage r.Student

                    match r.Validation with
                    | Some v ->
                        log
                            "%s epoch %d: train loss %.3f, train acc %.3f, validation acc %.3f%s"
                            name
                            (r.Epoch + 1)
                            r.TrainLoss
                            r.TrainAccuracy
                            v.Accuracy
                            (if r.IsBest then " (best so far)" else "")
                    | None ->
                        log
                            "%s epoch %d: train loss %.3f, train acc %.3f"
                            name
                            (r.Epoch + 1)
                            r.TrainLoss
                            r.TrainAccuracy

                    if r.IsBest then
                        let path = partialPath job.Out name

                        save
                            path
                            (job.Quantization r.Stage)
                            (job.Metadata.Add("epoch", string (r.Epoch + 1)).Add("partial", "true"))
                            m

                        saved[name] <- path

                    job.Config.OnEpoch r m

                match resume with
                | Some snap -> task.Value <- float snap.CompletedSteps
                | None -> ()

                let cfg =
                    { job.Config with
                        Progress =
                            fun p ->
                                progress p
                                job.Config.Progress p
                        OnEpoch = onEpoch
                        OnInterrupt =
                            fun snap ->
                                // A snapshot before the first step holds nothing worth resuming.
                                if
                                    snap.Stages
                                    |> List.exists (fun st -> st.Students |> List.exists (fun s -> s.Step > 0))
                                then
                                    TrainerCheckpoint.save snapPath snap
                                    saved["resume snapshot"] <- snapPath

                                job.Config.OnInterrupt snap
                        Resume = resume
                    }

                result <- Some(Trainer.fit cfg job.Spec job.Train job.Validation)
                task.Value <- float (max 1 total))

    try
        run ()
    with :? OperationCanceledException ->
        let snap, rest =
            saved |> Seq.toList |> List.partition (fun kv -> kv.Key = "resume snapshot")

        raise (Interrupted((snap @ rest) |> List.map (fun kv -> kv.Value)))

    if File.Exists snapPath then
        File.Delete snapPath

    let r = result.Value

    for stage in r.Stages do
        stage.Students
        |> List.iteri (fun i s ->
            let name = job.Name stage.Index i

            save
                (checkpointPath job.Out name)
                (job.Quantization stage.Index)
                (job.Metadata.Add("best_epoch", string (s.BestEpoch + 1)))
                s.Best

            let partial = partialPath job.Out name

            if File.Exists partial then
                File.Delete partial)

    let runs =
        [
            for KeyValue((stage, student), points) in curves ->
                {
                    Name = job.Name stage student
                    Terms = lossSeries points
                }
        ]

    r, runs

/// Runs a body with Ctrl-C wired to a cancellation token: the first Ctrl-C asks the trainer to stop
/// after the current step.
let withCtrlC (body: CancellationToken -> int) =
    use cts = new CancellationTokenSource()

    let handler =
        ConsoleCancelEventHandler(fun _ e ->
            e.Cancel <- true
            AnsiConsole.MarkupLine("[yellow]stopping after the current step…[/]")
            cts.Cancel())

    System.Console.CancelKeyPress.AddHandler handler

    try
        body cts.Token
    finally
        System.Console.CancelKeyPress.RemoveHandler handler

/// Prints accuracy at every t per model.
let printAccuracy (rows: (string * float[]) list) =
    if not rows.IsEmpty then
        let steps = rows |> List.map (snd >> Array.length) |> List.max

        let table =
            Table().AddColumns(Array.append [| "model" |] (Array.init steps (fun t -> sprintf "t = %d" (t + 1))))

        for name, acc in rows do
            table.AddRow(
                Array.append
                    [| Markup.Escape name |]
                    (Array.init steps (fun t ->
                        if t < acc.Length then
                            sprintf "%.1f %%" (100.0 * acc[t])
                        else
                            ""))
            )
            |> ignore

        AnsiConsole.Write table

/// The weight bits of a quantized model (None: full precision).
let weightBits (m: Model) =
    (Model.quantPlan m).Weights
    |> Map.toList
    |> List.choose (fun (_, w) ->
        match w.Weight with
        | Bits.Fixed b -> Some b
        | Bits.FullPrecision -> None)
    |> function
        | [] -> None
        | bs -> Some(List.max bs)

/// The crossbar cost of a model at its own T and precision (4-bit cells), or None when the
/// architecture does not map onto the crossbar model.
let hardware (m: Model) =
    try
        let precision =
            match weightBits m with
            | Some b -> Precision.quantized b 4
            | None -> Precision.fp32 4

        Some(
            Metrics.evaluate
                (stepsOf m)
                (Mapping.ofArchitecture
                    { Accelerator.spikeSim with
                        Precision = precision
                    }
                    m.Architecture)
        )
    with :? SnnSpecException ->
        None

/// A report entry of a crossbar cost report.
let hardwareEntry (name: string) (r: SnnSpec.HwSim.Report) : HardwareEntry =
    let pj (x: float<pJ>) = float x * 1e-12
    let um2 (x: float<um2>) = float x * 1e-6
    let e = r.Energy.Components
    let a = r.Area.Components

    {
        Name = name
        Energy =
            [|
                "crossbar", pj e.Crossbar
                "ADC", pj e.Adc
                "mux", pj e.Mux
                "subtractor", pj e.Subtractor
                "buffers", pj (e.TempBuffer + e.TileBuffer)
                "H-tree", pj e.HTree
                "memory", pj e.MemoryFetch
                "neuron", pj e.Neuron
                "shift-add", pj e.ShiftAdd
            |]
            |> Array.map (fun (c, v) -> { Component = c; Value = v })
        Latency =
            r.Latency.Layers
            |> List.map (fun l ->
                {
                    Component = l.Layer
                    Value = float l.Latency * 1e-9
                })
            |> Array.ofList
        Area =
            [|
                "crossbars", um2 a.Crossbars
                "ADCs", um2 a.Adcs
                "muxes", um2 a.Muxes
                "subtractors", um2 a.Subtractors
                "buffers", um2 (a.TempBuffers + a.TileBuffers)
                "H-tree", um2 a.HTree
                "input memory", um2 a.InputMemory
                "membrane memory", um2 a.MembraneMemory
            |]
            |> Array.map (fun (c, v) -> { Component = c; Value = v })
        Edap = r.Edap
        TopsPerWatt = r.TopsPerWatt
        TopsPerMm2 = r.TopsPerMm2
    }

/// A checkpoint by path, with an error naming the fix when it is missing.
let loadCheckpoint (what: string) (path: string) =
    if not (File.Exists path) then
        Console.usage
            "%s %s does not exist. Fix: give the path of a .safetensors file written by snnspec train, distill or quantize."
            what
            path

    SpecFile.loadModel path

/// A dataset section from command-line options.
let datasetSection (name: string) (train: int) (validation: int) (test: int) (dir: string option) =
    if not (List.contains name SpecFile.datasets) then
        Console.usage "unknown dataset '%s'. Fix: use one of %s." name (String.Join(", ", SpecFile.datasets))

    if train < 2 || validation < 1 || validation >= train then
        Console.usage
            "--train %d / --validation %d: the validation images are held out of the training images. Fix: give --validation between 1 and --train - 1."
            train
            validation

    if test < 1 then
        Console.usage "--test %d. Fix: give at least 1 test image." test

    {
        Name = name
        Train = train
        Validation = validation
        Test = test
        Directory = dir
        Frames = if SpecFile.isEventDataset name then 4 else 0
    }

/// The metadata recording a run's training split as loaded (a dataset holding fewer images than
/// asked gives fewer): the first "train_images" training images were read and their last
/// "validation_images" held out, so the model trained on the ones before.
let splitMetadata (fit: ISampleSource) (validation: ISampleSource) =
    [
        "train_images", string (fit.Count + validation.Count)
        "validation_images", string validation.Count
    ]

/// The training split a checkpoint records (train images, validation images), when it does.
let recordedSplit (c: Checkpoint) =
    let count key =
        match c.Metadata.TryFind key |> Option.map Int32.TryParse with
        | Some(true, v) when v >= 0 -> Some v
        | _ -> None

    match count "train_images", count "validation_images" with
    | Some t, Some v when v < t -> Some(t, v)
    | _ -> None

/// The dataset section a checkpoint reads: on an event dataset, the frame count it was trained with
/// (its "frames" metadata), else the frames an ANN stacks, else one frame per step of an SNN.
let forModel (c: Checkpoint) (ds: DatasetSection) =
    if not ds.IsSequence then
        ds
    else
        let recorded = c.Metadata.TryFind "frames" |> Option.map Int32.TryParse

        match recorded, Architecture.stackedFrames c.Model.Architecture, c.Model.Mode with
        | Some(true, f), _, _ when f > 0 -> { ds with Frames = f }
        | _, Some f, _ -> { ds with Frames = f }
        | _, None, ExecutionMode.Snn t -> { ds with Frames = t }
        | _ -> ds
