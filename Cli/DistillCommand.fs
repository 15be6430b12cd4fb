/// `snnspec distill <spec.json>`: a distillation run described by a spec file (docs/spec-format.md).
module SnnSpec.Cli.DistillCommand

open System
open System.CommandLine
open System.IO
open SnnSpec
open SnnSpec.Training
open SnnSpec.IO
open SnnSpec.Reports

/// What one distillation run produced.
type DistillSummary =
    {
        /// Accuracy at t = 1…T on the test images, per model name.
        Accuracy: (string * float[]) list
        /// Checkpoints written, by model name.
        Checkpoints: (string * string) list
        ReportFiles: string list
    }

/// The checkpoint names of a built spec's (stage, student) pairs: assistant-1…, then "student" or
/// "student-T<t>" for a versatile run.
let names (b: BuiltSpec) (stage: int) (student: int) =
    if stage < b.Assistants.Length then
        sprintf "assistant-%d" (stage + 1)
    elif b.Students.Length = 1 then
        "student"
    else
        sprintf "student-T%d" (Run.stepsOf b.Students[student])

/// Applies command-line overrides to a parsed file.
let withOverrides (out: string option) (epochs: int option) (file: SpecFile) =
    { file with
        Output =
            { file.Output with
                Directory = defaultArg out file.Output.Directory
            }
        Training =
            { file.Training with
                Epochs = defaultArg epochs file.Training.Epochs
            }
    }

/// Runs a parsed spec file: loads the data, builds the models, trains the teacher when asked,
/// distils, saves every model, evaluates them on the test images and writes the report. With
/// resume, a teacher already trained into the output directory is loaded instead of retrained and
/// an interrupted job continues from its snapshot.
let runWith
    (resume: bool)
    (file: SpecFile)
    (specText: string option)
    (ct: Threading.CancellationToken)
    : DistillSummary =
    let ds = file.Dataset
    let out = file.Output.Directory
    let trainSet, testSet = Run.loadData ds
    let fit, validation = SpecFile.split ds.Validation trainSet
    let t = file.Training
    let built = SpecFile.build file (Some(Run.calibrationBatch t.BatchSize fit))
    Directory.CreateDirectory out |> ignore

    match specText with
    | Some text -> Run.writeText (Path.Combine(out, "spec.json")) text
    | None -> ()

    Run.log
        "%s: %s, %d training, %d validation, %d test images; %d epoch(s); output %s"
        file.Name
        ds.Name
        fit.Count
        validation.Count
        testSet.Count
        t.Epochs
        out

    let trainB = Run.batcher t.BatchSize t.Seed true fit
    let valB = Run.batcher t.BatchSize t.Seed false validation
    let testB = Run.batcher t.BatchSize t.Seed false testSet

    let meta (role: string) =
        Map.ofList
            [
                "role", role
                "dataset", ds.Name
                "spec", file.Name
                if ds.IsSequence then
                    "frames", string ds.Frames
                yield! Run.splitMetadata fit validation
            ]

    let checkpoints = ResizeArray<string * string>()

    // The teacher, trained first when the file asks for it.
    let built, teacherRuns =
        match built.Teacher, built.TeacherNeedsTraining with
        | Some _, true when resume && File.Exists(Run.checkpointPath out "teacher") ->
            let path = Run.checkpointPath out "teacher"
            Run.log "teacher: reusing %s (trained by the interrupted run)" path
            checkpoints.Add(("teacher", path))
            SpecFile.withTeacher (SpecFile.loadModel path).Model built, []
        | Some teacher, true ->
            let tt = built.TeacherTraining

            // A teacher that ends in a spiking population learns from its spike counts.
            let teacherReadout =
                match file.Teacher with
                | Some(TeacherSection.Train(m, _)) when m.SpikingOutput.IsSome -> SnnSpec.Distillation.TimeReadout.Count
                | _ -> SnnSpec.Distillation.TimeReadout.Mean

            let job: Run.Job =
                {
                    Label = "teacher"
                    Name = fun _ _ -> "teacher"
                    Quantization =
                        fun _ ->
                            match file.Teacher with
                            | Some(TeacherSection.Train(m, _)) -> m.Quantization |> Option.map (fun q -> q.Config)
                            | _ -> None
                    Spec = DistillationSpec.alone [ teacher ] [ SpecTerm.crossEntropyWith teacherReadout 0.0f 1.0f ]
                    Config = { tt with Cancellation = ct }
                    Train = trainB
                    Validation = Some valB
                    Out = out
                    Metadata = meta "teacher"
                    Snapshot = Run.snapshotPath out "teacher"
                    Resume = resume
                }

            let r, runs = Run.train job
            checkpoints.Add(("teacher", Run.checkpointPath out "teacher"))
            SpecFile.withTeacher r.Students.Head.Best built, runs
        | _ -> built, []

    let quantOf (stage: int) =
        let section =
            if stage < file.Assistants.Length then
                file.Assistants[stage]
            else
                file.Student

        section.Quantization |> Option.map (fun q -> q.Config)

    // A disk teacher cache: built on the first run, loaded by later runs with the same teacher
    // and training data (it is the first stage's teacher that is cached).
    let teacherCache =
        match t.TeacherCache, built.Teacher with
        | TeacherCacheSetting.Disk precision, Some teacher ->
            let r =
                TeacherCacheFile.getOrBuild
                    (Path.Combine(out, "teacher-cache"))
                    precision
                    t.BatchSize
                    teacher
                    (DistillationSpec.teacherProbes built.Spec)
                    trainB.Source

            match r.Origin with
            | CacheOrigin.Loaded -> Run.log "teacher cache: loaded %s" r.Path
            | CacheOrigin.Built -> Run.log "teacher cache: built %s (%d MB)" r.Path (r.Cache.Bytes >>> 20)
            | CacheOrigin.Rebuilt why -> Run.log "teacher cache: rebuilt %s (%s)" r.Path why

            TeacherCacheMode.Use r.Cache
        | _ -> built.Training.TeacherCache

    let job: Run.Job =
        {
            Label = file.Name
            Name = names built
            Quantization = quantOf
            Spec = built.Spec
            Config =
                { built.Training with
                    Cancellation = ct
                    TeacherCache = teacherCache
                }
            Train = trainB
            Validation = Some valB
            Out = out
            Metadata = meta "student"
            Snapshot = Run.snapshotPath out file.Name
            Resume = resume
        }

    let result, runs = Run.train job

    for stage in result.Stages do
        stage.Students
        |> List.iteri (fun i _ ->
            let n = names built stage.Index i
            checkpoints.Add((n, Run.checkpointPath out n)))

    // Accuracy at every t on the test images.
    Run.log "evaluating on %d test images" testSet.Count

    let teacherAcc =
        built.Teacher
        |> Option.map (fun tm -> "teacher", Evaluation.accuracyPerStep tm testB)
        |> Option.toList

    let modelAcc =
        [
            for stage in result.Stages do
                for i, s in List.indexed stage.Students do
                    yield names built stage.Index i, s.Best, Evaluation.accuracyPerStep s.Best testB
        ]

    let accuracy = teacherAcc @ (modelAcc |> List.map (fun (n, _, a) -> n, a))

    let reportFiles =
        if not file.Output.Report then
            []
        else
            let last = modelAcc |> List.last
            let _, lastModel, _ = last

            // Membrane histograms of the probes membrane terms compare (same name on both sides):
            // teacher, the student before training and after, on the test images.
            let membraneNames =
                built.Spec.Terms
                |> List.collect (fun t -> t.Uses)
                |> List.choose (fun u ->
                    match u with
                    | TapUse.Membrane(tp, sp, _) when tp = sp -> Some sp
                    | _ -> None)
                |> List.distinct

            let membranes =
                match built.Teacher with
                | Some tm when not membraneNames.IsEmpty ->
                    let cfg =
                        { EvaluationConfig.Default with
                            FiringRates = false
                            Membranes = membraneNames
                        }

                    let after = Evaluation.run cfg (Some tm) lastModel testB
                    let before = Evaluation.run cfg None (List.last built.Students) testB

                    Run.membraneProbes membraneNames after before after
                | _ -> [||]

            let hw =
                [
                    match built.Teacher with
                    | Some tm ->
                        match Run.hardware tm with
                        | Some h -> yield Run.hardwareEntry "teacher" h, h
                        | None -> ()
                    | None -> ()
                    let n, _, _ = last

                    match Run.hardware lastModel with
                    | Some h -> yield Run.hardwareEntry n h, h
                    | None -> ()
                ]

            let pct (x: float) = sprintf "%.1f %%" (100.0 * x)

            let summary =
                [|
                    for n, acc in accuracy do
                        yield
                            {
                                Label = sprintf "%s, t = %d" n acc.Length
                                Value = pct acc[acc.Length - 1]
                            }
                    let comparison =
                        match hw with
                        | [ (_, a); (_, b) ] ->
                            try
                                Some(SnnSpec.HwSim.Metrics.compare a b)
                            with :? SnnSpecException ->
                                None
                        | _ -> None

                    match comparison with
                    | Some c ->
                        yield
                            {
                                Label = "energy (teacher / student)"
                                Value = sprintf "%.2f×" c.Energy
                            }

                        yield
                            {
                                Label = "EDAP (teacher / student)"
                                Value = sprintf "%.2f×" c.Edap
                            }
                    | None -> ()
                |]


            let data: ReportData =
                {
                    Title = sprintf "SnnSpec distill: %s" file.Name
                    Subtitle =
                        sprintf
                            "%s; terms %s; %d training / %d validation / %d test images, %d epoch(s), seed %d"
                            ds.Name
                            (String.Join(", ", file.Terms |> List.map (fun t -> t.Kind)))
                            fit.Count
                            validation.Count
                            testSet.Count
                            t.Epochs
                            t.Seed
                    Summary = summary
                    Accuracy =
                        accuracy
                        |> List.map (fun (n, acc) ->
                            {
                                Name = n
                                Role = (if n = "teacher" then "teacher" else "distilled")
                                Timesteps = Array.init acc.Length (fun i -> i + 1)
                                Accuracy = acc
                            })
                        |> Array.ofList
                    Training = teacherRuns @ runs |> Array.ofList
                    Membranes = membranes
                    Hardware = hw |> List.map fst |> Array.ofList
                }

            let h, c, j = Run.writeReport out "report" data
            [ h; c; j ]

    {
        Accuracy = accuracy
        Checkpoints = List.ofSeq checkpoints
        ReportFiles = reportFiles
    }

/// Prints a built spec without training (distill --check).
let describe (b: BuiltSpec) =
    let f = b.File

    Run.log
        "%s: valid. dataset %s; teacher %s; %d assistant(s); student %s at T = %s; terms %s; %d epoch(s) of batches of %d; output %s"
        f.Name
        f.Dataset.Name
        (match f.Teacher with
         | None -> "none"
         | Some(TeacherSection.Checkpoint p) -> p
         | Some(TeacherSection.Train(m, _)) -> sprintf "%s (trained first)" m.Zoo)
        b.Assistants.Length
        f.Student.Zoo
        (String.Join(", ", f.Student.Steps))
        (String.Join(", ", f.Terms |> List.map (fun t -> t.Kind)))
        f.Training.Epochs
        f.Training.BatchSize
        f.Output.Directory

/// <c>runWith false</c>: a fresh run.
let run file specText ct = runWith false file specText ct

/// The `distill` command.
let command () =
    let cmd =
        Command(
            "distill",
            "Distil a student from a teacher as described by a JSON spec file (docs/spec-format.md): trains, saves checkpoints, evaluates at every t and writes a report."
        )

    let specArg = Argument<string>("spec", Description = "The spec file (JSON).")

    let outOpt =
        Option<string>("--out", Description = "Output directory (overrides the file's output.directory).")

    let epochsOpt =
        Option<Nullable<int>>("--epochs", Description = "Epochs (overrides the file's training.epochs).")

    let checkOpt =
        Option<bool>(
            "--check",
            Description = "Only parse and build the spec (loads the teacher checkpoint); no training."
        )

    let resumeOpt =
        Option<bool>(
            "--resume",
            Description =
                "Continue an interrupted run in the same output directory: reuse its trained teacher and continue exactly from the snapshot Ctrl-C left."
        )

    cmd.Arguments.Add specArg

    for o in [ outOpt :> Option; epochsOpt; checkOpt; resumeOpt ] do
        cmd.Options.Add o

    cmd.SetAction(fun (r: ParseResult) ->
        Console.guard (fun () ->
            let path = r.GetValue specArg
            let epochs = r.GetValue epochsOpt |> Option.ofNullable

            match epochs with
            | Some e when e < 1 -> Console.usage "--epochs %d. Fix: give at least 1 epoch." e
            | _ -> ()

            let file =
                SpecFile.load path |> withOverrides (Option.ofObj (r.GetValue outOpt)) epochs

            if r.GetValue checkOpt then
                describe (SpecFile.build file None)
                Console.Success
            else
                Run.withCtrlC (fun ct ->
                    try
                        let s = runWith (r.GetValue resumeOpt) file (Some(File.ReadAllText path)) ct

                        Run.printAccuracy s.Accuracy

                        for n, p in s.Checkpoints do
                            Run.log "%s: %s" n p

                        match s.ReportFiles with
                        | h :: _ -> Run.log "report: %s" h
                        | [] -> ()

                        Console.Success
                    with Run.Interrupted saved ->
                        Run.onInterrupt file.Output.Directory saved)))

    cmd
