/// `snnspec demo`: the main job end to end. MNIST → SNN teacher (T = 4) → a 4-bit student
/// distilled with membrane KD (prefix-aligned, per spiking population) and temporal-wise KD at
/// every T = 1…4 from that one teacher (a versatile teacher), the same student trained alone as
/// the baseline, accuracy at every t, crossbar cost of FP32 teacher vs quantized student, and a
/// self-contained HTML/CSV/JSON report.
module SnnSpec.Cli.Demo

open System
open System.IO
open System.Threading
open System.CommandLine
open Spectre.Console
open SnnSpec
open SnnSpec.Data
open SnnSpec.Distillation
open SnnSpec.Training
open SnnSpec.IO
open SnnSpec.Reports
open SnnSpec.HwSim

/// The sizes and settings of one demo run.
type DemoSettings =
    {
        /// Training images the students use: the first TrainCount of the training split.
        TrainCount: int
        /// Training images the teacher uses (the first TeacherTrainCount; at least TrainCount). A
        /// teacher is trained once and reused, so it gets the larger budget (more images and epochs):
        /// distillation only helps when the teacher is clearly the better model.
        TeacherTrainCount: int
        /// Images held out from the end of the training split for model selection; neither the
        /// teacher nor the students train on them.
        ValidationCount: int
        TestCount: int
        /// Epochs of the students (distilled and baseline alike).
        Epochs: int
        /// Epochs of the teacher.
        TeacherEpochs: int
        BatchSize: int
        /// Timesteps of the teacher and the longest student.
        Steps: int
        StudentWidth: float32
        Bits: int
        /// Weight of the membrane-potential term (the temporal-wise term has weight 1).
        MembraneWeight: float32
        Seed: int
        Out: string
    }

    /// ~2 minutes on 2 cores: students on 1800 images, the teacher on 6000, 200 held out, 500 test
    /// images, 1 epoch of batches of 16. Small batches give batch norm's running statistics
    /// (momentum 0.1, variance starting at 1) enough steps to converge; at 29 steps they are still
    /// ~10× off in eval mode. With ~110 steps the membrane term gets a tenth of the full run's
    /// weight: at full weight its early error dominates a run this short.
    static member Quick =
        {
            TrainCount = 1800
            TeacherTrainCount = 6000
            ValidationCount = 200
            TestCount = 500
            Epochs = 1
            TeacherEpochs = 1
            BatchSize = 16
            Steps = 4
            StudentWidth = 1.0f
            Bits = 4
            MembraneWeight = 0.1f
            Seed = 0
            Out = "snnspec-demo"
        }

    /// ≤ 15 minutes on 2 cores.
    static member Full =
        { DemoSettings.Quick with
            TrainCount = 11000
            TeacherTrainCount = 59000
            ValidationCount = 1000
            TestCount = 10000
            Epochs = 1
            TeacherEpochs = 2
            BatchSize = 32
            MembraneWeight = 1.0f
        }

    /// The key stored in checkpoints: a checkpoint is reused only for the same key.
    member s.Key(role: string) =
        sprintf
            "%s|train=%d|val=%d|epochs=%d|batch=%d|T=%d|width=%g|bits=%d|mem=%g|seed=%d"
            role
            (if role = "teacher" then
                 s.TeacherTrainCount
             else
                 s.TrainCount)
            s.ValidationCount
            (if role = "teacher" then s.TeacherEpochs else s.Epochs)
            s.BatchSize
            s.Steps
            s.StudentWidth
            s.Bits
            s.MembraneWeight
            s.Seed

/// What the demo found (also written to the report).
type DemoSummary =
    {
        /// Accuracy at t = 1…T, index t − 1, per model name.
        Accuracy: (string * float[]) list
        ReportFiles: string list
        Checkpoints: string list
        /// Models whose checkpoint was reused instead of trained.
        Reused: string list
        Hardware: Comparison
        Elapsed: TimeSpan
    }

let private configKey = "demo_config"

let private log (fmt: Printf.StringFormat<'a, unit>) =
    Printf.kprintf (fun s -> AnsiConsole.MarkupLine("{0}", Markup.Escape s)) fmt

/// A reusable checkpoint of this config, or None (missing, other config, or unreadable).
let private tryLoad (expected: Model) (key: string) (path: string) =
    if not (File.Exists path) then
        None
    else
        try
            let c = Checkpoint.loadInto expected path

            match c.Metadata.TryFind configKey with
            | Some k when k = key -> Some c.Model
            | _ ->
                log "%s was written for another configuration; retraining." (Path.GetFileName path)
                None
        with :? SnnSpecException as e ->
            log "%s cannot be reused (%s); retraining." (Path.GetFileName path) e.Message
            None

/// The configuration key of the job that trains <c>names</c> (its checkpoints are reused only for it).
let private jobKey (settings: DemoSettings) (names: string list) = settings.Key(String.Join(",", names))

/// Trains one of the demo's jobs through Run.train (progress bar, the best epoch so far in
/// <name>.partial.safetensors, finished models as <name>.safetensors with their quantization). Its
/// checkpoints carry the job's configuration key, which tryLoad checks before reusing them, and
/// Ctrl-C leaves a trainer snapshot named for that key, which the next run with the same
/// configuration continues from exactly.
let private train
    (settings: DemoSettings)
    (ct: CancellationToken)
    (epochs: int)
    (label: string)
    (names: string list)
    (quant: QuantConfig option)
    (spec: DistillationSpec)
    (trainB: Batcher)
    (valB: Batcher)
    =
    let key = jobKey settings names

    let snapshot =
        let hash =
            Convert.ToHexString(Security.Cryptography.SHA256.HashData(Text.Encoding.UTF8.GetBytes key))

        Path.Combine(settings.Out, sprintf "%s.%s.resume.safetensors" (names.Head.Replace(' ', '_')) hash[..11])

    let resume =
        File.Exists snapshot
        && (try
                TrainerCheckpoint.load snapshot |> ignore
                log "%s: continuing from %s" label (Path.GetFileName snapshot)
                true
            with :? SnnSpecException as e ->
                log "%s cannot be reused (%s); starting %s afresh." (Path.GetFileName snapshot) e.Message label
                false)

    let job: Run.Job =
        {
            Label = label
            Name = fun _ student -> names[student]
            Quantization = fun _ -> quant
            Spec = spec
            Config =
                { TrainConfig.Default with
                    Epochs = epochs
                    // Adam for every model; learnable quantizer scales are kept positive by the
                    // optimizer step's projection.
                    Optimizer = OptimizerKind.AdamDefault
                    LearningRate = 5e-3f
                    WeightDecay = 0.0f
                    Seed = settings.Seed
                    ClipNorm = Some 5.0f
                    Cancellation = ct
                }
            Train = trainB
            Validation = Some valB
            Out = settings.Out
            Metadata = Map.ofList [ configKey, key ]
            Snapshot = snapshot
            Resume = resume
        }

    let r, runs = Run.train job
    r.Students |> List.map (fun s -> s.Best), runs

/// Runs the demo on the given training and test images (MNIST-shaped: 1×28×28, 10 classes).
let runOn (settings: DemoSettings) (ct: CancellationToken) (trainSet: ImageSet) (testSet: ImageSet) : DemoSummary =
    let clock = Diagnostics.Stopwatch.StartNew()
    Directory.CreateDirectory settings.Out |> ignore
    let T = settings.Steps

    let take (n: int) (s: ImageSet) =
        if n >= s.Count then
            s
        else
            ImageSet.subset s [| 0 .. n - 1 |]

    if settings.ValidationCount < 1 || settings.ValidationCount >= trainSet.Count then
        Errors.invalidArg
            "demo"
            "validation count"
            settings.ValidationCount
            (sprintf "between 1 and the training images - 1 (%d)" (trainSet.Count - 1))

    let available = trainSet.Count - settings.ValidationCount
    let nTrain = min settings.TrainCount available
    let nTeacher = max nTrain (min settings.TeacherTrainCount available)

    if nTrain < 1 then
        Errors.invalidArg "demo" "training count" settings.TrainCount "at least 1 image"

    let fitSet = ImageSet.subset trainSet [| 0 .. nTrain - 1 |]
    let teacherSet = ImageSet.subset trainSet [| 0 .. nTeacher - 1 |]

    let valSet = ImageSet.subset trainSet [| available .. trainSet.Count - 1 |]

    let testSet = take settings.TestCount testSet

    let batcher (shuffle: bool) (s: ImageSet) =
        Batching.create
            { Batching.options settings.BatchSize settings.Seed with
                Shuffle = shuffle
            }
            s

    let trainB = batcher true fitSet
    let teacherB = batcher true teacherSet
    let valB = batcher false valSet
    let testB = batcher false testSet

    log
        "data: teacher %d images × %d epoch(s), students %d images × %d epoch(s), %d validation, %d test images; T = %d"
        teacherSet.Count
        settings.TeacherEpochs
        fitSet.Count
        settings.Epochs
        valSet.Count
        testSet.Count
        T

    let zoo = ZooConfig.Mnist
    // The small ConvNet for 28×28 inputs (conv-BN-LIF ×2, fc-LIF, fc).
    let teacherArch = Zoo.convNet zoo

    let studentArch =
        Zoo.convNet
            { zoo with
                Width = settings.StudentWidth
            }

    let reused = ResizeArray<string>()
    let checkpoints = ResizeArray<string>()

    let ckpt name = Run.checkpointPath settings.Out name

    // The teacher.
    let teacher0 = Model.init settings.Seed (ExecutionMode.Snn T) teacherArch
    let tKey = jobKey settings [ "teacher" ]

    let teacher, teacherRuns =
        match tryLoad teacher0 tKey (ckpt "teacher") with
        | Some m ->
            reused.Add "teacher"
            log "teacher: reusing %s" (ckpt "teacher")
            m, []
        | None ->
            let spec = DistillationSpec.alone [ teacher0 ] [ SpecTerm.crossEntropy 0.0f 1.0f ]

            let models, runs =
                train settings ct settings.TeacherEpochs "teacher" [ "teacher" ] None spec teacherB valB

            models.Head, runs

    checkpoints.Add(ckpt "teacher")

    // The 4-bit student, initialised once; every trained copy starts from these values.
    // MINT quantization (MS-N): weights, biases and membranes at N bits with batch norm folded into
    // the conv and the membrane sharing its conv's scale; first layer kept FP; scales calibrated on a
    // training batch (LSQ's first-batch initialisation, needed for the folded weights).
    let quant = QuantConfig.Mint settings.Bits

    let calibration =
        ImageSet.toTensor fitSet [| 0 .. min fitSet.Count settings.BatchSize - 1 |]

    let student0 =
        Model.init (settings.Seed + 1) (ExecutionMode.Snn T) studentArch
        |> Model.quantize quant
        |> Model.calibrateScales calibration

    // Membrane KD on every spiking population the two models share in shape (conv-wise lif1,
    // lif2 and the hidden fc population when the student has the teacher's width).
    let membraneNames =
        let shapes (m: Model) =
            Diff.noGrad (fun () ->
                use _ = TensorScope.Begin()

                let out =
                    Model.forward
                        { ForwardContext.Eval with
                            Probes =
                                { ProbeRequest.None with
                                    Membranes = Set.ofList (Architecture.spikingNames m.Architecture)
                                }
                        }
                        m
                        (Tensor.zeros (Array.append [| 1 |] m.Architecture.InputShape))

                out.Membranes |> Map.map (fun _ t -> t.Shape[1..]))

        let ts, ss = shapes teacher, shapes student0

        Architecture.spikingNames studentArch
        |> List.filter (fun n -> ts.ContainsKey n && ss.ContainsKey n && ts[n] = ss[n])

    if membraneNames.IsEmpty then
        log
            "note: no spiking population has the same shape in teacher and student (width %g); membrane KD is left out, temporal-wise KD remains."
            settings.StudentWidth

    let stepsList = [ 1..T ]
    let distilledNames = stepsList |> List.map (sprintf "distilled T=%d")

    let terms =
        [
            SpecTerm.temporal TemporalKd.defaults
            if not membraneNames.IsEmpty then
                SpecTerm.membrane Alignment.Prefix membraneNames settings.MembraneWeight
        ]

    let loadAll (names: string list) (models: Model list) =
        List.map2 (fun n m -> tryLoad m (jobKey settings names) (ckpt n)) names models

    // Distilled students at T = 1…4 from the one teacher.
    let distilled, distilledRuns =
        let expected = stepsList |> List.map (fun t -> Model.withSteps t student0)

        match loadAll distilledNames expected with
        | loaded when loaded |> List.forall Option.isSome ->
            reused.AddRange distilledNames
            log "distilled students: reusing their checkpoints"
            loaded |> List.map Option.get, []
        | _ ->
            let spec = DistillationSpec.versatile teacher student0 stepsList terms

            let models, runs =
                train settings ct settings.Epochs "distil T=1..4" distilledNames (Some quant) spec trainB valB

            models, runs

    checkpoints.AddRange(distilledNames |> List.map ckpt)

    // The baseline: the same student at T, trained alone.
    let baseline, baselineRuns =
        let name = "baseline"

        match tryLoad student0 (jobKey settings [ name ]) (ckpt name) with
        | Some m ->
            reused.Add name
            log "baseline: reusing %s" (ckpt name)
            m, []
        | None ->
            let spec = DistillationSpec.alone [ student0 ] [ SpecTerm.perStepCrossEntropy 1.0f ]

            let models, runs =
                train settings ct settings.Epochs "baseline" [ name ] (Some quant) spec trainB valB

            models.Head, runs

    checkpoints.Add(ckpt "baseline")

    // Accuracy at every t on the test split.
    log "evaluating on %d test images" testSet.Count

    let evalCfg =
        { EvaluationConfig.Default with
            FiringRates = false
            Membranes = membraneNames
        }

    let teacherEval = Evaluation.run evalCfg None teacher testB
    let baselineEval = Evaluation.run evalCfg (Some teacher) baseline testB

    let distilledEvals =
        distilled |> List.map (fun m -> Evaluation.run evalCfg (Some teacher) m testB)

    let longest = List.last distilledEvals

    let accuracy =
        [
            "teacher (FP32)", teacherEval.AccuracyPerStep
            sprintf "baseline %d-bit (T=%d run, read at t)" settings.Bits T, baselineEval.AccuracyPerStep
            sprintf "distilled %d-bit (one student per t)" settings.Bits,
            distilledEvals |> List.map (fun r -> r.Accuracy) |> Array.ofList
            sprintf "distilled %d-bit T=%d (read at t)" settings.Bits T, longest.AccuracyPerStep
        ]

    // Crossbar cost: FP32 teacher vs quantized student.
    let hw (precision: Precision) (arch: Architecture) =
        Metrics.evaluate
            T
            (Mapping.ofArchitecture
                { Accelerator.spikeSim with
                    Precision = precision
                }
                arch)

    let cellBits = 4
    let teacherHw = hw (Precision.fp32 cellBits) teacherArch
    let studentHw = hw (Precision.quantized settings.Bits cellBits) studentArch
    let comparison = Metrics.compare teacherHw studentHw

    let membranes = Run.membraneProbes membraneNames longest baselineEval longest

    let pct (x: float) = sprintf "%.1f %%" (100.0 * x)

    let data: ReportData =
        {
            Title = "SnnSpec demo: MNIST, versatile-teacher distillation of a 4-bit SNN student"
            Subtitle =
                sprintf
                    "ConvNet teacher (FP32, T = %d) → %d-bit ConvNet student (width %g) with membrane KD (%s, prefix alignment) + temporal-wise KD at T = 1…%d; teacher trained on %d images × %d epoch(s), students on %d × %d; %d validation / %d test images; seed %d"
                    T
                    settings.Bits
                    settings.StudentWidth
                    (if membraneNames.IsEmpty then
                         "none"
                     else
                         String.Join(", ", membraneNames))
                    T
                    teacherSet.Count
                    settings.TeacherEpochs
                    fitSet.Count
                    settings.Epochs
                    valSet.Count
                    testSet.Count
                    settings.Seed
            Summary =
                [|
                    {
                        Label = sprintf "teacher, T = %d" T
                        Value = pct teacherEval.Accuracy
                    }
                    {
                        Label = sprintf "baseline student, T = %d" T
                        Value = pct baselineEval.Accuracy
                    }
                    {
                        Label = sprintf "distilled student, T = %d" T
                        Value = pct longest.Accuracy
                    }
                    {
                        Label = "distilled student, T = 1"
                        Value = pct distilledEvals.Head.Accuracy
                    }
                    {
                        Label = "energy (FP32 / 4-bit)"
                        Value = sprintf "%.2f×" comparison.Energy
                    }
                    {
                        Label = "EDAP (FP32 / 4-bit)"
                        Value = sprintf "%.2f×" comparison.Edap
                    }
                |]
            Accuracy =
                accuracy
                |> List.mapi (fun i (name, acc) ->
                    {
                        Name = name
                        Role =
                            (match i with
                             | 0 -> "teacher"
                             | 1 -> "baseline"
                             | _ -> "distilled")
                        Timesteps = Array.init acc.Length (fun t -> t + 1)
                        Accuracy = acc
                    })
                |> Array.ofList
            Training =
                // A reused model keeps the training curves its run wrote into the previous report.
                let previous =
                    let path = Path.Combine(settings.Out, "report.json")

                    try
                        if File.Exists path then
                            (Report.ofJson (File.ReadAllText path)).Training
                        else
                            [||]
                    with _ ->
                        [||]

                let orPrevious (names: string list) (runs: TrainingRun list) =
                    if runs.IsEmpty then
                        previous |> Array.filter (fun r -> List.contains r.Name names) |> List.ofArray
                    else
                        runs

                orPrevious [ "teacher" ] teacherRuns
                @ orPrevious distilledNames distilledRuns
                @ orPrevious [ "baseline" ] baselineRuns
                |> Array.ofList
            Membranes = membranes
            Hardware =
                [|
                    Run.hardwareEntry "teacher FP32" teacherHw
                    Run.hardwareEntry (sprintf "student %d-bit" settings.Bits) studentHw
                |]
        }

    let html, csv, json = Run.writeReport settings.Out "report" data

    {
        Accuracy = accuracy
        ReportFiles = [ html; csv; json ]
        Checkpoints = List.ofSeq checkpoints
        Reused = List.ofSeq reused
        Hardware = comparison
        Elapsed = clock.Elapsed
    }

/// Prints the summary table.
let printSummary (s: DemoSummary) =
    let steps = s.Accuracy |> List.map (snd >> Array.length) |> List.max

    let table =
        Table().AddColumns(Array.append [| "model" |] (Array.init steps (fun t -> sprintf "t = %d" (t + 1))))

    for name, acc in s.Accuracy do
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
    let c = s.Hardware

    AnsiConsole.MarkupLine(
        "crossbar, FP32 teacher vs quantized student: energy {0:0.00}× lower, latency {1:0.00}×, area {2:0.00}×, EDAP {3:0.00}×, TOPS/W {4:0.00}× higher",
        c.Energy,
        c.Latency,
        c.Area,
        c.Edap,
        c.TopsPerWatt
    )

    AnsiConsole.MarkupLine("report: [link]{0}[/]", Markup.Escape s.ReportFiles.Head)
    AnsiConsole.MarkupLine("finished in {0:0.0} s", s.Elapsed.TotalSeconds)

/// Loads MNIST (fetched and verified, cached after the first run) and runs the demo.
let run (settings: DemoSettings) (ct: CancellationToken) =
    let options =
        { Fetch.defaults with
            Log = fun line -> AnsiConsole.MarkupLine("  {0}", Markup.Escape line)
        }

    let trainSet = Datasets.mnist options true
    let testSet = Datasets.mnist options false
    runOn settings ct trainSet testSet

/// The `demo` command.
let command () =
    let cmd =
        Command(
            "demo",
            "The main job: MNIST, an SNN teacher, a 4-bit student distilled at T = 1…4 with membrane + temporal-wise KD, the baseline student, accuracy at every t, crossbar cost, and an HTML/CSV/JSON report."
        )

    let quickOpt =
        Option<bool>(
            "--quick",
            Description =
                "A subset (students on 1800 images, the teacher on 6000, 500 test images, 1 epoch): about 2 minutes."
        )

    let outOpt =
        Option<string>(
            "--out",
            DefaultValueFactory = (fun _ -> "snnspec-demo"),
            Description = "Directory for the report and the checkpoints (reused by the next run)."
        )

    let seedOpt =
        Option<int>("--seed", DefaultValueFactory = (fun _ -> 0), Description = "Seed of initialisation and shuffling.")

    let widthOpt =
        Option<float32>(
            "--student-width",
            DefaultValueFactory = (fun _ -> 1.0f),
            Description =
                "Channel width of the student (membrane KD needs populations of the teacher's shape, so < 1 keeps temporal-wise KD only)."
        )

    let bitsOpt =
        Option<int>("--bits", DefaultValueFactory = (fun _ -> 4), Description = "Student weight and membrane bits.")

    for o in [ quickOpt :> Option; outOpt; seedOpt; widthOpt; bitsOpt ] do
        cmd.Options.Add o

    cmd.SetAction(fun (r: ParseResult) ->
        let baseSettings =
            if r.GetValue quickOpt then
                DemoSettings.Quick
            else
                DemoSettings.Full

        let settings =
            { baseSettings with
                Out = r.GetValue outOpt
                Seed = r.GetValue seedOpt
                StudentWidth = r.GetValue widthOpt
                Bits = r.GetValue bitsOpt
            }

        if settings.Bits < 2 || settings.Bits > 8 then
            Console.error (sprintf "--bits %d is out of range. Fix: give 2 to 8." settings.Bits)
            Console.Usage
        elif not (settings.StudentWidth > 0.0f && settings.StudentWidth <= 1.0f) then
            Console.error (
                sprintf "--student-width %g is out of range. Fix: give a width in (0, 1]." settings.StudentWidth
            )

            Console.Usage
        else
            Run.withCtrlC (fun ct ->
                Console.guard (fun () ->
                    try
                        let summary = run settings ct
                        printSummary summary
                        Console.Success
                    with
                    | :? OperationCanceledException
                    | Run.Interrupted _ ->
                        Console.error (
                            sprintf
                                "stopped by Ctrl-C after the current step. Finished models are in %s/*.safetensors, the interrupted one's state in %s/*.resume.safetensors. Fix: run the same command again; finished models are reused and the interrupted one continues exactly where it stopped."
                                settings.Out
                                settings.Out
                        )

                        Console.Failure)))

    cmd
