/// End to end on generated data, in-process: train → eval → quantize → distill → report, and the
/// demo on tiny in-memory image sets.
module SnnSpec.Cli.Tests.RoundTripTests

open System.IO
open System.Text.Json
open System.Threading
open NUnit.Framework
open SnnSpec
open SnnSpec.IO
open SnnSpec.Training
open SnnSpec.Cli
open SnnSpec.Cli.Tests.TestUtil

let private data =
    [
        "--dataset"
        "synthetic"
        "--train"
        "300"
        "--validation"
        "50"
        "--test"
        "100"
    ]

[<Test>]
let ``train, eval, quantize, distill and report round trip`` () =
    use dir = new TempDir()
    let run (args: string list) = Program.run (Array.ofList args)

    // A teacher.
    Assert.That(
        run (
            [
                "train"
                "--model"
                "convnet"
                "--steps"
                "4"
                "--epochs"
                "1"
                "--batch-size"
                "16"
            ]
            @ data
            @ [ "--out"; dir.Path; "--name"; "teacher" ]
        ),
        Is.EqualTo 0
    )

    let teacher = dir.File "teacher.safetensors"
    Assert.That(File.Exists teacher)
    Assert.That(File.Exists(dir.File "teacher.partial.safetensors"), Is.False)
    Assert.That((SpecFile.loadModel teacher).Metadata["dataset"], Is.EqualTo "synthetic")

    // Its evaluation at every t, as JSON.
    let json = dir.File "eval.json"
    Assert.That(run [ "eval"; teacher; "--test"; "100"; "--json"; json ], Is.EqualTo 0)
    use doc = JsonDocument.Parse(File.ReadAllText json)
    Assert.That(doc.RootElement.GetProperty("accuracyPerStep").GetArrayLength(), Is.EqualTo 4)
    Assert.That(doc.RootElement.GetProperty("samples").GetInt32(), Is.EqualTo 100)
    Assert.That(doc.RootElement.GetProperty("firingRates").EnumerateObject() |> Seq.length, Is.GreaterThan 0)
    Assert.That(doc.RootElement.GetProperty("split").GetString(), Is.EqualTo "test")

    // On the validation split the training held out (the last 50 of the first 300 training images).
    let valJson = dir.File "validation.json"

    // A bare --validation takes the split the checkpoint records.
    Assert.That((SpecFile.loadModel teacher).Metadata["train_images"], Is.EqualTo "300")
    Assert.That((SpecFile.loadModel teacher).Metadata["validation_images"], Is.EqualTo "50")
    Assert.That(run [ "eval"; teacher; "--validation"; "--json"; valJson ], Is.EqualTo 0)

    use valDoc = JsonDocument.Parse(File.ReadAllText valJson)
    Assert.That(valDoc.RootElement.GetProperty("split").GetString(), Is.EqualTo "validation")
    Assert.That(valDoc.RootElement.GetProperty("samples").GetInt32(), Is.EqualTo 50)
    // The same images the training held out: an in-process evaluation of SpecFile.split's tail agrees.
    let trainSet, _ = Run.loadData (Run.datasetSection "synthetic" 300 50 100 None)
    let held = snd (SpecFile.split 50 trainSet)

    let expected =
        Evaluation.run
            EvaluationConfig.Default
            None
            (Run.loadCheckpoint "the teacher" teacher).Model
            (Run.batcher 64 0 false held)

    Assert.That(valDoc.RootElement.GetProperty("accuracy").GetDouble(), Is.EqualTo(expected.Accuracy).Within(1e-12))
    // Giving the sizes evaluates the same images; a tail of the held-out images, or images past the
    // first 300, are allowed; a split that reaches into the 250 trained on is refused.
    let explicitJson = dir.File "validation-explicit.json"

    Assert.That(
        run
            [
                "eval"
                teacher
                "--train"
                "300"
                "--validation"
                "50"
                "--json"
                explicitJson
            ],
        Is.EqualTo 0
    )

    use explicitDoc = JsonDocument.Parse(File.ReadAllText explicitJson)

    Assert.That(
        explicitDoc.RootElement.GetProperty("accuracy").GetDouble(),
        Is.EqualTo(expected.Accuracy).Within(1e-12)
    )

    Assert.That(run [ "eval"; teacher; "--validation"; "20" ], Is.EqualTo 0)
    Assert.That(run [ "eval"; teacher; "--train"; "400"; "--validation"; "100" ], Is.EqualTo 0)
    Assert.That(run [ "eval"; teacher; "--validation"; "60" ], Is.EqualTo 2)
    Assert.That(run [ "eval"; dir.File "missing.safetensors"; "--validation" ], Is.EqualTo 2)
    // On a dataset smaller than asked, the guard reads the images loaded: trained with 60000 (of
    // 70000 asked) and 5000 held out, --train 80000 --validation 15000 loads 60000 and would
    // evaluate images 45000…59999, 10000 of them trained on; --validation 5000 is the split itself.
    Assert.That(EvalCommand.reachesTraining 60000 15000 (60000, 5000))
    Assert.That(EvalCommand.reachesTraining 60000 5000 (60000, 5000), Is.False)
    Assert.That(EvalCommand.reachesTraining 60000 4000 (60000, 5000), Is.False)
    Assert.That(run [ "eval"; teacher; "--train"; "300"; "--validation"; "300" ], Is.EqualTo 2)
    Assert.That(run [ "eval"; teacher; "--train"; "300" ], Is.EqualTo 2)
    // A checkpoint that records no split needs the sizes.
    let bare = dir.File "teacher.nosplit.safetensors"

    Checkpoint.save bare (Checkpoint.ofModel (Run.loadCheckpoint "the teacher" teacher).Model)
    Assert.That(run [ "eval"; bare; "--dataset"; "synthetic"; "--validation" ], Is.EqualTo 2)

    Assert.That(
        run
            [
                "eval"
                bare
                "--dataset"
                "synthetic"
                "--train"
                "300"
                "--validation"
                "50"
            ],
        Is.EqualTo 0
    )

    // Its 4-bit twin, calibrated on two batches; it loads back quantized and evaluates.
    let q = dir.File "teacher.q4.safetensors"

    let quantize (extra: string list) =
        run (
            [
                "quantize"
                teacher
                "--bits"
                "4"
                "--calibration-batches"
                "2"
                "--batch-size"
                "16"
            ]
            @ extra
        )

    Assert.That(quantize [], Is.EqualTo 0)

    Assert.That(File.Exists q)
    let qm = (SpecFile.loadModel q).Model
    Assert.That((Model.quantPlan qm).IsQuantized)
    Assert.That(run [ "eval"; q; "--test"; "50" ], Is.EqualTo 0)

    // The default searches the scales; --scales lsq keeps MINT's starting ones, which stray further
    // from the float model on the calibration images.
    let qLsq = dir.File "teacher.q4lsq.safetensors"

    Assert.That(quantize [ "--scales"; "lsq"; "--out"; qLsq ], Is.EqualTo 0)

    let calibration =
        Run.calibrationBatch 32 (fst (Run.loadData (Run.datasetSection "synthetic" 33 1 1 None)))

    let lsqError =
        (QuantTrajectory.compare (SpecFile.loadModel qLsq).Model calibration).Error

    Assert.That((QuantTrajectory.compare qm calibration).Error, Is.LessThanOrEqualTo lsqError)
    Assert.That(run [ "quantize"; teacher; "--scales"; "best"; "--out"; dir.File "x.safetensors" ], Is.EqualTo 2)

    // Its integer export: the same model, and the integer view IntegerExport computes from it.
    Assert.That(run [ "export"; q ], Is.EqualTo 0)
    let exported, im = IntegerExportFile.read (dir.File "teacher.q4.int.safetensors")
    Assert.That((im = IntegerExport.export qm), "the exported integer view is the model's")
    Assert.That(exported.Metadata["exported_from"], Is.EqualTo "teacher.q4.safetensors")
    Assert.That(run [ "export"; teacher; "--out"; dir.File "fp.int.safetensors" ], Is.EqualTo 2)

    // Through the crossbar datapath: an ideal ADC reproduces the integer path; a coarse one is reported
    // beside it. Crossbar inference of a full-precision checkpoint, or an ADC of 0 bits, is bad usage.
    let xjson = dir.File "crossbar.json"

    Assert.That(run [ "eval"; q; "--test"; "20"; "--crossbar-adc"; "ideal"; "2"; "--json"; xjson ], Is.EqualTo 0)

    use xdoc = JsonDocument.Parse(File.ReadAllText xjson)
    let xbar = xdoc.RootElement.GetProperty("crossbar")
    Assert.That(xbar.GetArrayLength(), Is.EqualTo 2)
    let ideal = xbar[0]
    Assert.That(ideal.GetProperty("adc").GetString(), Is.EqualTo "ideal")
    Assert.That(ideal.GetProperty("accuracy").GetDouble(), Is.EqualTo(ideal.GetProperty("integerAccuracy").GetDouble()))
    Assert.That(xbar[1].GetProperty("samples").GetInt32(), Is.EqualTo 20)
    Assert.That(run [ "eval"; teacher; "--test"; "20"; "--crossbar-adc"; "4" ], Is.EqualTo 2)
    Assert.That(run [ "eval"; q; "--test"; "20"; "--crossbar-adc"; "0" ], Is.EqualTo 2)
    // Quantizing a quantized checkpoint is bad input.
    Assert.That(run [ "quantize"; q ], Is.EqualTo 2)

    // A distillation from the trained teacher into a quantized versatile student.
    let out = dir.File "run"

    let specText =
        spec
            (sprintf """{ "checkpoint": %s }""" (JsonSerializer.Serialize teacher))
            """{ "zoo": "convnet", "steps": [2, 4], "quantization": { "bits": 4 } }"""
            """[{ "kind": "twce" }, { "kind": "kd", "tau": 4 }, { "kind": "membrane", "alignment": "prefix" }]"""

    let specPath = dir.File "spec.json"
    File.WriteAllText(specPath, specText)
    Assert.That(run [ "distill"; specPath; "--out"; out ], Is.EqualTo 0)

    for f in
        [
            "student-T2.safetensors"
            "student-T4.safetensors"
            "report.html"
            "report.csv"
            "report.json"
            "spec.json"
        ] do
        Assert.That(File.Exists(Path.Combine(out, f)), f)

    let student = SpecFile.loadModel (Path.Combine(out, "student-T4.safetensors"))
    Assert.That((Model.quantPlan student.Model).IsQuantized)
    Assert.That(student.Model.Mode, Is.EqualTo(ExecutionMode.Snn 4))

    // Reports: re-rendered from the run directory, and from checkpoints.
    File.Delete(Path.Combine(out, "report.html"))
    Assert.That(run [ "report"; out ], Is.EqualTo 0)
    Assert.That(File.Exists(Path.Combine(out, "report.html")))
    let rep = dir.File "rep"

    Assert.That(
        run
            [
                "report"
                teacher
                Path.Combine(out, "student-T4.safetensors")
                "--out"
                rep
                "--test"
                "50"
                "--dataset"
                "synthetic"
            ],
        Is.EqualTo 0
    )

    Assert.That(File.ReadAllText(Path.Combine(rep, "report.html")), Does.Contain "student-T4")

[<Test>]
let ``a cancelled distillation reports what it saved and exits with 1`` () =
    use dir = new TempDir()
    let file = SpecFile.parse (spec "" defaultStudent """[{ "kind": "ce" }]""")

    let file =
        { file with
            Output =
                { file.Output with
                    Directory = dir.Path
                }
        }

    use cts = new CancellationTokenSource()
    cts.Cancel()

    let code =
        try
            DistillCommand.run file None cts.Token |> ignore
            0
        with Run.Interrupted saved ->
            Assert.That(saved, Is.Empty)
            Run.onInterrupt dir.Path saved

    Assert.That(code, Is.EqualTo 1)

[<Test>]
let ``the demo runs to its report on tiny generated images`` () =
    use dir = new TempDir()

    let settings =
        { Demo.DemoSettings.Quick with
            TrainCount = 300
            ValidationCount = 50
            TestCount = 100
            BatchSize = 16
            Steps = 2
            Out = dir.Path
        }

    let summary =
        Demo.runOn settings CancellationToken.None (SpecFile.synthetic 300 0) (SpecFile.synthetic 100 1)

    for f in summary.ReportFiles do
        Assert.That(File.Exists f, f)

    Assert.That(summary.Accuracy |> List.map fst, Has.Length.EqualTo 4)
    Assert.That(summary.Reused, Is.Empty)

    // The quantized students' checkpoints carry their quantization configuration.
    let distilled = SpecFile.loadModel (Run.checkpointPath dir.Path "distilled T=1")
    Assert.That(distilled.Quantization.IsSome)
    Assert.That((Model.quantPlan distilled.Model).IsQuantized)

    // A second run with the same settings reuses every model; other settings retrain them.
    let again =
        Demo.runOn settings CancellationToken.None (SpecFile.synthetic 300 0) (SpecFile.synthetic 100 1)

    Assert.That((again.Reused = [ "teacher"; "distilled T=1"; "distilled T=2"; "baseline" ]), sprintf "%A" again.Reused)
    Assert.That((again.Accuracy = summary.Accuracy), sprintf "%A vs %A" again.Accuracy summary.Accuracy)

    let other =
        Demo.runOn
            { settings with Seed = 1 }
            CancellationToken.None
            (SpecFile.synthetic 300 0)
            (SpecFile.synthetic 100 1)

    Assert.That(other.Reused, Is.Empty)

[<Test>]
let ``Ctrl-C during the second epoch keeps the best finished epoch`` () =
    use dir = new TempDir()
    use cts = new CancellationTokenSource()
    let images = SpecFile.synthetic 200 0
    let model = Model.init 0 (ExecutionMode.Snn 2) (Zoo.convNet ZooConfig.Mnist)

    let job: Run.Job =
        {
            Label = "t"
            Name = fun _ _ -> "m"
            Quantization = fun _ -> None
            Spec = Training.DistillationSpec.alone [ model ] [ Training.SpecTerm.crossEntropy 0.0f 1.0f ]
            Config =
                { Training.TrainConfig.Default with
                    Epochs = 2
                    Cancellation = cts.Token
                    Progress =
                        fun p ->
                            if p.Epoch = 1 && p.Batch = 1 then
                                cts.Cancel()
                }
            Train = Run.batcher 32 0 true images
            Validation = None
            Out = dir.Path
            Metadata = Map.empty
            Snapshot = Run.snapshotPath dir.Path "t"
            Resume = false
        }

    let saved =
        try
            Run.train job |> ignore
            []
        with Run.Interrupted saved ->
            saved

    Assert.That((saved = [ Run.snapshotPath dir.Path "t"; Run.partialPath dir.Path "m" ]), sprintf "%A" saved)
    let c = SpecFile.loadModel saved[1]
    Assert.That(c.Metadata["epoch"], Is.EqualTo "1")
    Assert.That(File.Exists(Run.checkpointPath dir.Path "m"), Is.False)
    Assert.That(Run.onInterrupt dir.Path saved, Is.EqualTo Console.Failure)

[<Test>]
let ``Ctrl-C leaves a snapshot, and --resume ends bit-identical to the uninterrupted run`` () =
    use dir = new TempDir()
    use straightDir = new TempDir()
    let images = SpecFile.synthetic 160 0

    let model =
        Model.init 0 (ExecutionMode.Snn 2) (Zoo.convNet { ZooConfig.Mnist with Width = 0.25f })

    let job (out: string) (ct: CancellationToken) (resume: bool) : Run.Job =
        {
            Label = "baseline run"
            Name = fun _ _ -> "m"
            Quantization = fun _ -> None
            Spec = Training.DistillationSpec.alone [ model ] [ Training.SpecTerm.crossEntropy 0.0f 1.0f ]
            Config =
                { Training.TrainConfig.Default with
                    Epochs = 2
                    Cancellation = ct
                }
            Train = Run.batcher 32 0 true images
            Validation = None
            Out = out
            Metadata = Map.empty
            Snapshot = Run.snapshotPath out "baseline run"
            Resume = resume
        }

    let straight, _ = Run.train (job straightDir.Path CancellationToken.None false)

    use cts = new CancellationTokenSource()

    let interrupted =
        { job dir.Path cts.Token false with
            Config =
                { (job dir.Path cts.Token false).Config with
                    Progress =
                        fun p ->
                            if p.Step = 7 then
                                cts.Cancel()
                }
        }

    let saved =
        try
            Run.train interrupted |> ignore
            []
        with Run.Interrupted saved ->
            saved

    let snap = Run.snapshotPath dir.Path "baseline run"
    Assert.That(saved.Head, Is.EqualTo snap)
    Assert.That(File.Exists snap)
    Assert.That(Run.onInterrupt dir.Path saved, Is.EqualTo Console.Failure)

    let resumed, _ = Run.train (job dir.Path CancellationToken.None true)
    Assert.That(File.Exists snap, Is.False, "the snapshot is removed once the run finishes")
    let a = straight.Students.Head.Final.Parameters
    let b = resumed.Students.Head.Final.Parameters

    for n in a.Names do
        Assert.That((b[n].ToArray() = a[n].ToArray()), n)

[<Test>]
let ``temporal KD from an ANN teacher on emulated event frames, then eval of the student`` () =
    use dir = new TempDir()
    let out = dir.File "events"

    let specText =
        (spec
            """{ "model": { "zoo": "convnet", "ann": true, "steps": 1, "width": 0.5 } }"""
            """{ "zoo": "convnet", "width": 0.25, "steps": 2 }"""
            """[{ "kind": "temporal" }]""")
            .Replace(
                """"dataset": { "name": "synthetic", "train": 300, "validation": 50, "test": 100 }""",
                """"dataset": { "name": "event-synthetic", "frames": 2, "train": 120, "validation": 20, "test": 40 }"""
            )

    let specPath = dir.File "events.json"
    File.WriteAllText(specPath, specText)
    Assert.That(Program.run [| "distill"; specPath; "--out"; out |], Is.EqualTo 0)
    use doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(out, "report.json")))

    let student =
        doc.RootElement.GetProperty("accuracy").EnumerateArray()
        |> Seq.find (fun a -> a.GetProperty("name").GetString() = "student")

    Assert.That(student.GetProperty("timesteps").GetArrayLength(), Is.EqualTo 2)
    let checkpoint = Path.Combine(out, "student.safetensors")
    Assert.That((SpecFile.loadModel checkpoint).Model.Architecture.InputShape, Is.EqualTo(box [| 2; 34; 34 |]))

    Assert.That(Program.run [| "eval"; checkpoint; "--dataset"; "event-synthetic"; "--test"; "30" |], Is.EqualTo 0)

    // The ANN teacher records its frame count, so it is evaluated on the frames it was trained on.
    let teacher = Path.Combine(out, "teacher.safetensors")
    Assert.That((SpecFile.loadModel teacher).Metadata.TryFind "frames", Is.EqualTo(Some "2"))
    let json = dir.File "teacher-eval.json"

    Assert.That(
        Program.run
            [|
                "eval"
                teacher
                "--dataset"
                "event-synthetic"
                "--test"
                "30"
                "--json"
                json
            |],
        Is.EqualTo 0
    )

    use tdoc = JsonDocument.Parse(File.ReadAllText json)
    Assert.That(tdoc.RootElement.GetProperty("samples").GetInt32(), Is.EqualTo 30)

    // The frozen teacher's outputs cached for the whole (time-major) training set train the same
    // student, to the bit, as the live teacher.
    let cachedSpec = dir.File "events-cached.json"
    let cachedOut = dir.File "events-cached"

    File.WriteAllText(
        cachedSpec,
        specText
            .Replace(
                """{ "model": { "zoo": "convnet", "ann": true, "steps": 1, "width": 0.5 } }""",
                sprintf """{ "checkpoint": %s }""" (JsonSerializer.Serialize teacher)
            )
            .Replace(""""batchSize": 16 }""", """"batchSize": 16, "teacherCache": "memory" }""")
    )

    Assert.That(Program.run [| "distill"; cachedSpec; "--out"; cachedOut |], Is.EqualTo 0)
    let live = (SpecFile.loadModel checkpoint).Model.Parameters

    let cached =
        (SpecFile.loadModel (Path.Combine(cachedOut, "student.safetensors"))).Model.Parameters

    for name in live.Names do
        Assert.That(cached[name].ToArray(), Is.EqualTo(box (live[name].ToArray())), name)

/// `snnspec train` of a width-0.25 ConvNet on event-synthetic frames (60 training images, 10 of them
/// held out, 20 test images) at the given frame count, plus the extra options; the exit code.
let private trainOnEvents (frames: int) (extra: string list) =
    Program.run (
        Array.ofList (
            [
                "train"
                "--model"
                "convnet"
                "--width"
                "0.25"
                "--steps"
                string frames
                "--dataset"
                "event-synthetic"
                "--train"
                "60"
                "--validation"
                "10"
                "--test"
                "20"
            ]
            @ extra
        )
    )

[<Test>]
let ``train --truncation trains an SNN on event frames in chunks and records the window; --checkpoint-activations changes no bit``
    ()
    =
    use dir = new TempDir()

    let train (extra: string list) (name: string) =
        Assert.That(trainOnEvents 4 ([ "--out"; dir.File name ] @ extra), Is.EqualTo 0, name)
        SpecFile.loadModel (Path.Combine(dir.File name, "teacher.safetensors"))

    let cut = train [ "--truncation"; "2" ] "cut"
    let whole = train [ "--truncation"; "4" ] "whole"
    let full = train [] "full"
    Assert.That(cut.Metadata["truncation"], Is.EqualTo "2")
    Assert.That(whole.Metadata.ContainsKey "truncation", Is.False, "K = T cuts nothing and is not recorded")
    Assert.That(cut.Model.Mode, Is.EqualTo(ExecutionMode.Snn 4))

    let values (c: Checkpoint) =
        Parameters.values c.Model.Parameters |> Array.collect (fun t -> t.ToArray())

    Assert.That((values whole = values full), "a window of T is full BPTT")
    Assert.That((values cut <> values full), "--truncation 2 trained as full BPTT")
    let recomputed = train [ "--checkpoint-activations" ] "recomputed"
    Assert.That((values recomputed = values full), "--checkpoint-activations changed what was trained")

[<Test>]
let ``an ANN that stacks event frames trains, evaluates on its frames and teaches an SNN`` () =
    use dir = new TempDir()
    let out = dir.File "stacked"

    let trained =
        Program.run
            [|
                "train"
                "--model"
                "convnet"
                "--width"
                "0.25"
                "--ann"
                "--stack-frames"
                "--steps"
                "3"
                "--dataset"
                "event-synthetic"
                "--train"
                "100"
                "--validation"
                "20"
                "--test"
                "30"
                "--out"
                out
            |]

    Assert.That(trained, Is.EqualTo 0)
    let teacher = Path.Combine(out, "teacher.safetensors")
    let c = SpecFile.loadModel teacher
    Assert.That(Architecture.stackedFrames c.Model.Architecture, Is.EqualTo(Some 3))
    Assert.That(c.Model.Architecture.InputShape, Is.EqualTo(box [| 2; 34; 34 |]))
    Assert.That(Program.run [| "eval"; teacher; "--dataset"; "event-synthetic"; "--test"; "30" |], Is.EqualTo 0)

    let specText frames =
        (spec
            (sprintf """{ "checkpoint": %s }""" (JsonSerializer.Serialize teacher))
            (sprintf """{ "zoo": "convnet", "width": 0.25, "steps": %d }""" frames)
            """[{ "kind": "ce" }, { "kind": "kd" }]""")
            .Replace(
                """"dataset": { "name": "synthetic", "train": 300, "validation": 50, "test": 100 }""",
                sprintf
                    """"dataset": { "name": "event-synthetic", "frames": %d, "train": 100, "validation": 20, "test": 30 }"""
                    frames
            )

    let specPath = dir.File "stacked-kd.json"
    File.WriteAllText(specPath, specText 3)
    Assert.That(Program.run [| "distill"; specPath; "--out"; dir.File "kd" |], Is.EqualTo 0)
    // A teacher that stacks 3 frames cannot read sequences of 2.
    File.WriteAllText(specPath, specText 2)
    Assert.That(Program.run [| "distill"; specPath; "--out"; dir.File "kd2" |], Is.EqualTo 2)

[<Test>]
let ``a MINT student with the integer preset runs on crossbars, with ADC full scales calibrated on training images``
    ()
    =
    use dir = new TempDir()
    let run (args: string list) = Program.run (Array.ofList args)
    let out = dir.File "mint"

    let specText =
        spec
            ""
            """{ "zoo": "convnet", "width": 0.25, "steps": 2, "neuron": "mint", "quantization": { "preset": "integer", "bits": 4, "calibrate": true } }"""
            """[{ "kind": "ce" }]"""

    let specPath = dir.File "mint.json"
    File.WriteAllText(specPath, specText)
    Assert.That(run [ "distill"; specPath; "--out"; out ], Is.EqualTo 0)
    let q = Path.Combine(out, "student.safetensors")
    // Every crossbar layer gets a full scale in whole levels within the largest possible sum; the
    // ideal ADC keeps none and equals the integer path. A coverage outside (0, 1] is bad usage.
    let cjson = dir.File "calibrated.json"

    let eval (args: string list) =
        run ([ "eval"; q; "--test"; "20" ] @ args)

    Assert.That(
        eval
            [
                "--crossbar-adc"
                "ideal"
                "4"
                "--adc-coverage"
                "0.99"
                "--calibration-images"
                "24"
                "--json"
                cjson
            ],
        Is.EqualTo 0
    )

    use cdoc = JsonDocument.Parse(File.ReadAllText cjson)
    let runs = cdoc.RootElement.GetProperty("crossbar")
    Assert.That(runs[0].TryGetProperty("fullScales") |> fst, Is.False)

    Assert.That(
        runs[0].GetProperty("accuracy").GetDouble(),
        Is.EqualTo(runs[0].GetProperty("integerAccuracy").GetDouble())
    )

    Assert.That(runs[1].GetProperty("adc").GetString(), Is.EqualTo "4 (coverage 0.99)")
    Assert.That(runs[1].GetProperty("coverage").GetDouble(), Is.EqualTo 0.99)

    let layers =
        runs[1].GetProperty("layers").EnumerateArray()
        |> Seq.map (fun l -> l.GetString())
        |> List.ofSeq

    Assert.That(layers, Is.Not.Empty)
    // A layer silent on the calibration images keeps the largest possible sum (it is not listed).
    let scales = runs[1].GetProperty("fullScales")
    let listed = scales.EnumerateObject() |> Seq.map (fun p -> p.Name) |> List.ofSeq
    Assert.That(listed, Is.Not.Empty)
    Assert.That(layers, Is.SupersetOf listed)

    for l in listed do
        let f = scales.GetProperty(l).GetDouble()
        Assert.That(f, Is.InRange(1.0, 64.0 * 15.0), l)
        Assert.That(f, Is.EqualTo(System.Math.Round(f: float)), l)

    Assert.That(eval [ "--crossbar-adc"; "4"; "--adc-coverage"; "1.5" ], Is.EqualTo 2)
    Assert.That(eval [ "--crossbar-adc"; "ideal"; "--adc-coverage"; "0.9" ], Is.EqualTo 2)

    // Conductance variation: one programmed chip per seed, each a row with its σ and seed; the same
    // seed draws the same chip. Seeds without a spread, a negative spread, or a spread without a
    // crossbar ADC are bad usage.
    let vjson = dir.File "variation.json"

    Assert.That(
        eval
            [
                "--crossbar-adc"
                "8"
                "--variation"
                "0.3"
                "--variation-seeds"
                "1"
                "2"
                "1"
                "--json"
                vjson
            ],
        Is.EqualTo 0
    )

    use vdoc = JsonDocument.Parse(File.ReadAllText vjson)
    let chips = vdoc.RootElement.GetProperty("crossbar")
    Assert.That(chips.GetArrayLength(), Is.EqualTo 3)

    Assert.That(
        box
            [
                for c in chips.EnumerateArray() -> c.GetProperty("variation").GetProperty("seed").GetInt32()
            ],
        Is.EqualTo(box [ 1; 2; 1 ])
    )

    Assert.That(chips[0].GetProperty("variation").GetProperty("sigma").GetDouble(), Is.EqualTo 0.3)
    Assert.That(chips[1].GetProperty("adc").GetString(), Is.EqualTo "8, σ 0.3 seed 2")

    Assert.That(chips[2].GetProperty("accuracy").GetDouble(), Is.EqualTo(chips[0].GetProperty("accuracy").GetDouble()))

    Assert.That(eval [ "--crossbar-adc"; "8"; "--variation-seeds"; "1" ], Is.EqualTo 2)
    Assert.That(eval [ "--crossbar-adc"; "8"; "--variation"; "-0.1" ], Is.EqualTo 2)
    Assert.That(eval [ "--variation"; "0.1" ], Is.EqualTo 2)

[<Test>]
let ``report evaluates each event checkpoint on the frames it was trained on`` () =
    use dir = new TempDir()

    let train (frames: int) (extra: string list) =
        trainOnEvents frames ([ "--out"; dir.Path; "--name"; sprintf "t%d" frames ] @ extra)

    Assert.That(train 2 [], Is.EqualTo 0)
    Assert.That(train 3 [ "--ann"; "--stack-frames" ], Is.EqualTo 0)
    let out = dir.File "report"

    Assert.That(
        Program.run
            [|
                "report"
                dir.File "t2.safetensors"
                dir.File "t3.safetensors"
                "--test"
                "20"
                "--out"
                out
            |],
        Is.EqualTo 0
    )

    use doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(out, "report.json")))
    let rows = doc.RootElement.GetProperty("accuracy")
    Assert.That(rows.GetArrayLength(), Is.EqualTo 2)
    Assert.That(rows[0].GetProperty("timesteps").GetArrayLength(), Is.EqualTo 2)
    Assert.That(rows[1].GetProperty("timesteps").GetArrayLength(), Is.EqualTo 1)
