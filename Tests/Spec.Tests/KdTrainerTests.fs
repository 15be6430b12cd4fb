module SnnSpec.Tests.KdTrainerTests

open System
open System.IO
open System.Threading
open NUnit.Framework
open SnnSpec
open SnnSpec.Data
open SnnSpec.Distillation
open SnnSpec.IO
open SnnSpec.Training
open SnnSpec.Tests.TestUtil
open SnnSpec.Tests.TrainTests

let private convNet (width: float32) (mode: ExecutionMode) (seed: int) =
    Model.init seed mode (Zoo.convNet { cfg8 4 with Width = width })

let private features (t: Tensor) (s: Tensor) =
    let outputs (tap: Tensor) =
        { KdOutputs.ofLogits (Tensor.zeros [| 1; 2; 4 |]) with
            Taps = Map [ "map", tap ]
        }

    outputs t, outputs s

let private differs (a: Parameters) (b: Parameters) =
    Array.exists2
        (fun (x: Tensor) (y: Tensor) -> x.ToArray() <> y.ToArray())
        (Parameters.values a)
        (Parameters.values b)

// ---------------------------------------------------------------- trainable loss parameters

[<Test>]
let ``the blurred term's gradient with respect to its restoration parameters matches finite differences`` () =
    let ps = BlurredKd.init 1 3 4
    let t, s = features (randn 2 [| 2; 2; 4; 3; 3 |]) (randn 3 [| 2; 2; 3; 3; 3 |])

    let cfg =
        { BlurredKd.defaults with
            Lambda = 0.3f
            Alpha = 1.0f
        }

    let term = LossTerm.blurred cfg ps (Rng.create 4) "map" "map" 1.0f

    let f (xs: Tensor[]) =
        term.LossWith
            {
                LossContext.Parameters = Parameters.withValues ps xs
                Key = Some(Rng.create 5)
            }
            t
            s
            [| 0; 1 |]

    // A small step: a bias step of 1e-2 moves many conv1 outputs across the ReLU's kink.
    let opts =
        { GradCheck.defaults with
            Epsilon = 1e-3f
        }

    assertGradCheckWith opts "BKD loss w.r.t. adapter and restoration parameters" f (Parameters.values ps)

    let law =
        SnnSpec.Laws.Laws.Term.parameterGradMatchesFiniteDifferencesWith opts (Rng.create 5) term t s [| 0; 1 |]

    Assert.That(law.Passed, law.Message)

    // λ = 1 drops every channel: R = G(0) is constant, so no gradient reaches the student feature.
    let dropAll =
        LossTerm.blurred { cfg with Lambda = 1.0f } ps (Rng.create 4) "map" "map" 1.0f

    let g =
        Diff.grad
            (fun (x: Tensor) ->
                dropAll.LossWith
                    {
                        LossContext.Parameters = ps
                        Key = Some(Rng.create 5)
                    }
                    t
                    { s with Taps = Map [ "map", x ] }
                    [| 0; 1 |])
            s.Taps["map"]

    Assert.That(g.ToArray() |> Array.forall ((=) 0.0f))

[<Test>]
let ``a term with parameters trains them with the student: each student its own copy under loss.<term>`` () =
    let data = templates 3 4 64 0.2
    let teacher = convNet 0.5f ExecutionMode.Ann 0
    let student = convNet 0.25f (ExecutionMode.Snn 2) 1

    let bkd =
        SpecTerm.blurredFor BlurredKd.defaults 7 teacher student Probes.featureMap Probes.featureMap 50.0f

    Assert.That(bkd.Term.Parameters.Names, Does.Contain "adapter.weight")

    let spec =
        DistillationSpec.versatile teacher student [ 1; 2 ] [ SpecTerm.crossEntropy 0.0f 1.0f; bkd ]

    let r =
        Trainer.fit
            { quietConfig with
                Optimizer = OptimizerKind.AdamDefault
                LearningRate = 1e-2f
            }
            spec
            (batcher 16 true 1 data)
            None

    let a, b = r.Students[0], r.Students[1]
    let expected = bkd.Term.Parameters.Names |> Array.map (fun n -> "loss.bkd." + n)
    Assert.That(a.LossParameters.Names, Eq.To expected)
    Assert.That(differs (Trainer.lossParameters [ bkd.Term ]) a.LossParameters, "restoration parameters moved")
    Assert.That(differs a.LossParameters b.LossParameters, "each student trains its own copy")
    Assert.That(differs student.Parameters a.Final.Parameters, "student parameters moved")
    // The initial term parameters are untouched.
    Assert.That(bkd.Term.Parameters.Names.Length, Is.EqualTo a.LossParameters.Count)

[<Test>]
let ``two terms with parameters under one name, or an adapter of the wrong width, are refused`` () =
    let teacher = convNet 0.5f ExecutionMode.Ann 0
    let student = convNet 0.25f (ExecutionMode.Snn 2) 1

    let bkd =
        SpecTerm.blurredFor BlurredKd.defaults 7 teacher student Probes.featureMap Probes.featureMap 1.0f

    let twice =
        Assert.Throws<SnnSpecException>(fun () ->
            DistillationSpec.validate (DistillationSpec.create teacher [ student ] [ bkd; bkd ]))

    contains ("several loss terms named 'bkd'", twice.Message)

    let wrong =
        SpecTerm.blurred BlurredKd.defaults (BlurredKd.init 0 8 32) (Rng.create 0) "feature_map" "feature_map" 1.0f

    let ex =
        Assert.Throws<SnnSpecException>(fun () ->
            DistillationSpec.validate (DistillationSpec.create teacher [ student ] [ wrong ]))

    contains ("adapter weight [32, 8, 1, 1]", ex.Message)
    contains ("needs [32, 16, 1, 1]", ex.Message)

// ---------------------------------------------------------------- the feature-map tap

[<Test>]
let ``every zoo conv model taps its last feature map before global pooling; the MLP does not`` () =
    let cfg =
        { ZooConfig.Cifar10 with
            Width = 0.125f
        }

    let probes =
        { ProbeRequest.None with
            Taps = set [ Probes.featureMap; Probes.features ]
        }

    for arch in
        [
            Zoo.convNet cfg
            Zoo.vgg9 cfg
            Zoo.vgg11 cfg
            Zoo.resnet18 cfg
            Zoo.resnet19 cfg
            Zoo.msResnet18 cfg
            Zoo.sewResnet18 cfg ResidualKind.SewAdd
        ] do
        let m = Model.init 0 (ExecutionMode.Snn 2) arch

        let out =
            Model.forward
                { ForwardContext.Eval with
                    Probes = probes
                }
                m
                (Tensor.zeros [| 3; 3; 32; 32 |])

        let map = out.Taps[Probes.featureMap].Shape
        Assert.That(map.Length, Is.EqualTo 5, arch.Name)
        Assert.That(map[0..1], Eq.To [| 2; 3 |], arch.Name)
        let feature = out.Taps[Probes.features].Shape
        // The classifier's input is the pooled (or flattened) map.
        Assert.That(
            Array.reduce (*) feature[2..],
            Is.EqualTo(
                if arch.Name = "convnet (width 0.125)" then
                    Array.reduce (*) map[2..]
                else
                    map[2]
            ),
            arch.Name
        )

    let mlp = Model.init 0 (ExecutionMode.Snn 2) (Zoo.mlp cfg [ 16 ])

    assertRaises<SnnSpecException> [ "feature_map"; "feature" ] (fun () ->
        Model.forward
            { ForwardContext.Eval with
                Probes =
                    { ProbeRequest.None with
                        Taps = set [ Probes.featureMap ]
                    }
            }
            mlp
            (Tensor.zeros [| 1; 3; 32; 32 |])
        |> box)

[<Test>]
let ``a zoo ConvNet ANN teacher distils into an SNN student by BKD on the feature maps through Trainer.fit`` () =
    let data = templates 3 4 64 0.2
    let teacher = convNet 1.0f ExecutionMode.Ann 0
    let student = convNet 0.5f (ExecutionMode.Snn 2) 1

    let bkd =
        SpecTerm.blurredFor BlurredKd.defaults 3 teacher student Probes.featureMap Probes.featureMap 1.0f

    // 64 teacher channels, 32 student channels: the term carries a 1×1 adapter.
    Assert.That(bkd.Term.Parameters["adapter.weight"].Shape, Eq.To [| 64; 32; 1; 1 |])

    let r =
        Trainer.fitOne
            { quietConfig with Epochs = 2 }
            (DistillationSpec.create teacher [ student ] [ SpecTerm.crossEntropy 0.0f 1.0f; bkd ])
            (batcher 16 true 1 data)
            None

    Assert.That(differs student.Parameters r.Final.Parameters, "student parameters moved")

    Assert.That(
        differs (Trainer.lossParameters [ bkd.Term ]) r.LossParameters,
        "adapter and restoration parameters moved"
    )

    for n in [ "adapter.weight"; "restore.conv1.weight"; "restore.conv2.bias" ] do
        Assert.That(
            r.LossParameters["loss.bkd." + n].ToArray(),
            Is.Not.EqualTo(box (bkd.Term.Parameters[n].ToArray())),
            n
        )

    Assert.That(r.History |> List.forall (fun h -> Double.IsFinite h.TrainLoss))

    // A missing tap is named with the taps that exist.
    let ex =
        Assert.Throws<SnnSpecException>(fun () ->
            SpecTerm.blurredFor BlurredKd.defaults 3 teacher student "map" Probes.featureMap 1.0f
            |> ignore)

    contains ("feature, feature_map", ex.Message)

    let spec =
        DistillationSpec.create
            teacher
            [ student ]
            [
                SpecTerm.blurred BlurredKd.defaults (BlurredKd.init 0 32 64) (Rng.create 0) "map" "map" 1.0f
            ]

    let v = Assert.Throws<SnnSpecException>(fun () -> DistillationSpec.validate spec)

    contains ("available: feature, feature_map", v.Message)

    // The pooled "feature" tap is a vector: the loss names the map tap to use instead.
    let pooled =
        SpecTerm.blurredFor BlurredKd.defaults 3 teacher student Probes.features Probes.features 1.0f

    assertRaises<SnnSpecException> [ "must be a map"; "feature_map" ] (fun () ->
        Trainer.fit quietConfig (DistillationSpec.create teacher [ student ] [ pooled ]) (batcher 16 true 1 data) None
        |> box)

[<Test>]
let ``an ANN teacher's feature vector (the ViT case) distils into the student's map by BKD through Trainer.fit`` () =
    let data = templates 3 4 64 0.2
    let student = convNet 0.5f (ExecutionMode.Snn 2) 1

    // The student's map has 32 channels: a ConvNet teacher's flattened feature (256 values) needs an
    // adapter, an MLP teacher's 32 hidden units none.
    let teachers =
        [
            "convnet", convNet 1.0f ExecutionMode.Ann 0, true
            "mlp", Model.init 0 ExecutionMode.Ann (Zoo.mlp (cfg8 4) [ 32 ]), false
        ]

    for name, teacher, adapter in teachers do
        let bkd =
            SpecTerm.blurredFor BlurredKd.defaults 3 teacher student Probes.features Probes.featureMap 1.0f

        Assert.That(bkd.Term.Parameters.TryFind "adapter.weight" |> Option.isSome, Is.EqualTo adapter, name)

        let spec =
            DistillationSpec.create teacher [ student ] [ SpecTerm.crossEntropy 0.0f 1.0f; bkd ]

        DistillationSpec.validate spec
        let r = Trainer.fitOne quietConfig spec (batcher 16 true 1 data) None
        Assert.That(r.History |> List.forall (fun h -> Double.IsFinite h.TrainLoss), name)

        Assert.That(
            differs (Trainer.lossParameters [ bkd.Term ]) r.LossParameters,
            sprintf "%s: the restoration block did not move" name
        )

    // A blurred term on a student vector is refused before training, and a term initialised for
    // other channels is told to use BlurredKd.init.
    let mlpTeacher = Model.init 0 ExecutionMode.Ann (Zoo.mlp (cfg8 4) [ 64 ])

    let refused (ps: Parameters) (studentTap: string) (expected: string list) =
        let term =
            SpecTerm.blurred BlurredKd.defaults ps (Rng.create 0) Probes.features studentTap 1.0f

        assertRaises<SnnSpecException> expected (fun () ->
            box (DistillationSpec.validate (DistillationSpec.create mlpTeacher [ student ] [ term ])))

    refused (BlurredKd.init 0 256 64) Probes.features [ "must be a map"; "feature_map" ]
    refused (BlurredKd.init 0 64 64) Probes.featureMap [ "BlurredKd.init seed 32 64" ]

    // Plain feature MSE has no spatial mean: a vector teacher against a student map stays refused.
    let teacher = convNet 0.5f ExecutionMode.Ann 0

    let mse =
        DistillationSpec.create
            teacher
            [ student ]
            [
                SpecTerm.feature (Parameters.ofList []) Probes.features Probes.featureMap 1.0f
            ]

    assertRaises<SnnSpecException> [ "differ per step"; "feature_map" ] (fun () -> box (DistillationSpec.validate mse))

// ---------------------------------------------------------------- interruption and resume

let resumeSetup () =
    let data = templates 3 4 64 0.2
    let test = templates 4 4 32 0.2
    let teacher = convNet 0.5f ExecutionMode.Ann 0

    let student =
        Model.init
            1
            (ExecutionMode.Snn 2)
            (Zoo.convNet
                { cfg8 4 with
                    Width = 0.25f
                    Dropout = 0.2f
                })

    let bkd =
        SpecTerm.blurredFor BlurredKd.defaults 5 teacher student Probes.featureMap Probes.featureMap 10.0f

    let cfg =
        { quietConfig with
            Epochs = 2
            Optimizer = OptimizerKind.AdamWDefault
            LearningRate = 5e-3f
            Schedule = LrSchedule.Cosine 0.0f
            Seed = 11
        }

    teacher, student, bkd, cfg, (fun () -> batcher 16 true 2 data), (fun () -> Some(batcher 16 false 0 test))

let sameResult (a: TrainResult) (b: TrainResult) =
    Assert.That(b.Stages.Length, Is.EqualTo a.Stages.Length)

    for sa, sb in List.zip a.Stages b.Stages do
        for x, y in List.zip sa.Students sb.Students do
            Assert.That(bits y.Final.Parameters, Eq.To(bits x.Final.Parameters), "final parameters")
            Assert.That(bits y.Final.Buffers, Eq.To(bits x.Final.Buffers), "final buffers")
            Assert.That(bits y.LossParameters, Eq.To(bits x.LossParameters), "loss parameters")
            Assert.That(bits y.Best.Parameters, Eq.To(bits x.Best.Parameters), "best parameters")
            Assert.That(bits y.BestLossParameters, Eq.To(bits x.BestLossParameters), "best loss parameters")
            Assert.That(y.BestEpoch, Is.EqualTo x.BestEpoch)
            Assert.That(y.BestAccuracy, Is.EqualTo x.BestAccuracy)

            let summary (h: EpochReport list) =
                h
                |> List.map (fun r ->
                    r.Stage,
                    r.Student,
                    r.Epoch,
                    r.TrainLoss,
                    r.TrainAccuracy,
                    r.IsBest,
                    r.Validation |> Option.map (fun v -> v.AccuracyPerStep))

            Assert.That(summary y.History, Eq.To(summary x.History), "history")

    Assert.That(b.Cost, Is.EqualTo a.Cost)

/// Runs uninterrupted, then cancelled from Progress after step k (of student 0 / the last student
/// of the batch), saves the snapshot to a file, loads it and resumes.
let private interruptAndResumeWith
    (truncation: int option)
    (order: StudentOrder)
    (stopAt: TrainProgress -> bool)
    (spec: DistillationSpec)
    =
    let _, _, _, cfg, train, validation = resumeSetup ()

    let cfg =
        { cfg with
            StudentOrder = order
            Truncation = truncation
        }

    let uninterrupted = Trainer.fit cfg spec (train ()) (validation ())

    let path =
        Path.Combine(Path.GetTempPath(), sprintf "snnspec-resume-%s.safetensors" (Guid.NewGuid().ToString "N"))

    use cts = new CancellationTokenSource()
    let mutable snapshots = 0

    let interrupted =
        { cfg with
            Progress =
                fun p ->
                    if stopAt p then
                        cts.Cancel()
            Cancellation = cts.Token
            OnInterrupt =
                fun snap ->
                    snapshots <- snapshots + 1
                    TrainerCheckpoint.save path snap
        }

    Assert.Throws<OperationCanceledException>(fun () ->
        Trainer.fit interrupted spec (train ()) (validation ()) |> ignore)
    |> ignore

    Assert.That(snapshots, Is.EqualTo 1)

    try
        let snap = TrainerCheckpoint.load path

        let resumed =
            Trainer.fit { cfg with Resume = Some snap } spec (train ()) (validation ())

        sameResult uninterrupted resumed
        snap
    finally
        File.Delete path

let private interruptAndResume = interruptAndResumeWith None

/// The snapshot of a run with truncated BPTT (window 1 of the student's T = 2) cancelled after step
/// 5, checked to resume exactly.
let private truncatedSnapshot () =
    let teacher, student, _, _, _, _ = resumeSetup ()

    let spec =
        DistillationSpec.create teacher [ student ] [ SpecTerm.crossEntropy 0.0f 1.0f; SpecTerm.logitKd 2.0f 1.0f ]

    interruptAndResumeWith (Some 1) StudentOrder.Interleaved (fun p -> p.Step = 5) spec

[<Test>]
let ``cancelled mid-epoch, saved, loaded and resumed, training ends bit-identical to the uninterrupted run`` () =
    let teacher, student, bkd, _, _, _ = resumeSetup ()

    let spec =
        DistillationSpec.create teacher [ student ] [ SpecTerm.crossEntropy 0.0f 1.0f; bkd ]
    // 4 batches per epoch: step 6 is epoch 1, batch 1, so the snapshot resumes at batch 2.
    let snap = interruptAndResume StudentOrder.Interleaved (fun p -> p.Step = 6) spec
    let s = snap.Stages.Head.Students.Head
    Assert.That((s.Step, s.NextEpoch, s.NextBatch, s.Batches), Eq.To((6, 1, 2, 2)))
    Assert.That(s.History.Length, Is.EqualTo 1)
    Assert.That(s.LossParameters.Names |> Array.forall (fun n -> n.StartsWith "loss.bkd."))

[<Test>]
let ``a truncated-BPTT run resumes exactly and its snapshot records the window`` () =
    Assert.That((truncatedSnapshot ()).Truncation, Is.EqualTo(Some 1))

[<Test>]
let ``interleaved and sequential versatile students and a two-stage chain resume exactly`` () =
    let teacher, student, bkd, _, _, _ = resumeSetup ()
    let terms = [ SpecTerm.crossEntropy 0.0f 1.0f; bkd ]
    let versatile = DistillationSpec.versatile teacher student [ 1; 2 ] terms

    interruptAndResume StudentOrder.Interleaved (fun p -> p.Step = 3 && p.Student = 1) versatile
    |> ignore
    // Sequential: the second student's third step, the first student finished.
    let snap =
        interruptAndResume StudentOrder.Sequential (fun p -> p.Step = 3 && p.Student = 1) versatile

    Assert.That(snap.Stages.Head.Students |> List.map (fun s -> s.NextEpoch, s.NextBatch), Eq.To [ (2, 0); (0, 3) ])

    // A chain teacher → assistant → student, cancelled in the second stage.
    let assistant = convNet 0.5f (ExecutionMode.Snn 2) 4

    let chain =
        DistillationSpec.chain
            teacher
            [ assistant ]
            [ student ]
            [ SpecTerm.crossEntropy 0.0f 1.0f; SpecTerm.logitKd 2.0f 1.0f ]

    let snap =
        interruptAndResume StudentOrder.Interleaved (fun p -> p.Stage = 1 && p.Step = 2) chain

    Assert.That(snap.Stages.Length, Is.EqualTo 2)

[<Test>]
let ``a snapshot refuses to resume another configuration and a model checkpoint is not a snapshot`` () =
    let teacher, student, bkd, cfg, train, _ = resumeSetup ()

    let spec =
        DistillationSpec.create teacher [ student ] [ SpecTerm.crossEntropy 0.0f 1.0f; bkd ]

    use cts = new CancellationTokenSource()
    let mutable snap = None

    let interrupted =
        { cfg with
            Progress =
                fun p ->
                    if p.Step = 2 then
                        cts.Cancel()
            Cancellation = cts.Token
            OnInterrupt = fun s -> snap <- Some s
        }

    Assert.Throws<OperationCanceledException>(fun () -> Trainer.fit interrupted spec (train ()) None |> ignore)
    |> ignore

    let other = { cfg with Seed = 12; Resume = snap }

    let ex =
        Assert.Throws<SnnSpecException>(fun () -> Trainer.fit other spec (train ()) None |> ignore)

    contains ("Seed 11", ex.Message)
    contains ("Fix", ex.Message)

    let truncated =
        Assert.Throws<SnnSpecException>(fun () ->
            Trainer.fit
                { cfg with
                    Resume = snap
                    Truncation = Some 1
                }
                spec
                (train ())
                None
            |> ignore)

    contains ("Truncation None", truncated.Message)

    let wider =
        DistillationSpec.create teacher [ convNet 0.5f (ExecutionMode.Snn 2) 1 ] [ SpecTerm.crossEntropy 0.0f 1.0f ]

    let ex2 =
        Assert.Throws<SnnSpecException>(fun () ->
            Trainer.fit { cfg with Resume = snap } wider (train ()) None |> ignore)

    contains ("student 1's parameters", ex2.Message)

    let path =
        Path.Combine(Path.GetTempPath(), sprintf "snnspec-model-%s.safetensors" (Guid.NewGuid().ToString "N"))

    try
        Checkpoint.save path (Checkpoint.ofModel student)

        assertRaises<CheckpointFormatException> [ "snnspec.checkpoint"; "TrainerCheckpoint.load" ] (fun () ->
            TrainerCheckpoint.load path |> box)
    finally
        File.Delete path

/// A finite double from raw bits (subnormals and extremes included); non-finite bit patterns map to 0.
let private finiteOf (b: int64) =
    let d = BitConverter.Int64BitsToDouble b
    if Double.IsFinite d then d else 0.0

[<FsCheck.NUnit.Property(MaxTest = 40)>]
let ``a snapshot file keeps accumulators, accuracies and histories to the bit`` (values: int64 list) (count: int64) =
    let n = count &&& Int64.MaxValue

    let d i =
        finiteOf (List.tryItem i values |> Option.defaultValue (int64 i * 7919L))

    let ps =
        Parameters.ofList [ "w", Tensor.ofArray [| 2 |] [| float32 (d 0); -0.0f |] ]

    let report: EpochReport =
        {
            Stage = 0
            Student = 0
            Epoch = 0
            TrainLoss = d 1
            TrainAccuracy = d 2
            Validation =
                Some
                    {
                        Samples = 3
                        AccuracyPerStep = [| d 3; d 4 |]
                        Accuracy = d 4
                        FiringRates = Map [ "lif1", d 5 ]
                        StudentHistograms = Map.empty
                        TeacherHistograms = Map.empty
                        TeacherAccuracy = None
                    }
            IsBest = true
            Elapsed = TimeSpan.FromTicks(n % 1_000_000_000L)
        }

    let student: StudentSnapshot =
        {
            Parameters = ps
            Buffers = Parameters.ofList []
            LossParameters = Parameters.ofList [ "loss.bkd.a", Tensor.ofArray [| 1 |] [| 1.5f |] ]
            Optimizer =
                {
                    Step = 4
                    First = Some(Parameters.ofList [ "w", Tensor.zeros [| 2 |]; "loss.bkd.a", Tensor.ones [| 1 |] ])
                    Second = None
                }
            Step = 4
            NextEpoch = 1
            NextBatch = 2
            BestParameters = ps
            BestBuffers = Parameters.ofList []
            BestLossParameters = Parameters.ofList [ "loss.bkd.a", Tensor.ofArray [| 1 |] [| 2.5f |] ]
            BestEpoch = 0
            BestAccuracy = Some(d 6)
            History = [ report ]
            LossSum = d 7
            Correct = n
            Seen = n / 2L + 1L
            Batches = 2
        }

    let snap =
        {
            Stages = [ { Index = 0; Students = [ student ] } ]
            Seed = 3
            Epochs = 2
            BatchesPerEpoch = 4
            StudentOrder = StudentOrder.Sequential
            Truncation = Some 3
            TeacherForwardMacs = n
            StudentTrainingMacs = 17L
        }

    let path =
        Path.Combine(Path.GetTempPath(), sprintf "snnspec-snap-%s.safetensors" (Guid.NewGuid().ToString "N"))

    try
        TrainerCheckpoint.save path snap
        let back = TrainerCheckpoint.load path
        let s = back.Stages.Head.Students.Head
        let key (x: float) = BitConverter.DoubleToInt64Bits x

        let fields (s: StudentSnapshot) =
            let r = s.History.Head
            let v = r.Validation.Value

            [
                key s.LossSum
                key s.BestAccuracy.Value
                key r.TrainLoss
                key r.TrainAccuracy
                key v.Accuracy
                key v.FiringRates["lif1"]
                yield! v.AccuracyPerStep |> Array.map key
                s.Correct
                s.Seen
                r.Elapsed.Ticks
                int64 s.Step
                int64 s.NextEpoch
                int64 s.NextBatch
                int64 s.Optimizer.Step
            ]

        Assert.That(fields s, Eq.To(fields student))
        Assert.That(bits s.Parameters, Eq.To(bits ps))
        Assert.That(bits s.Optimizer.First.Value, Eq.To(bits student.Optimizer.First.Value))
        Assert.That(s.Optimizer.First.Value.Names, Eq.To [| "w"; "loss.bkd.a" |])
        Assert.That(s.Optimizer.Second, Is.EqualTo None)
        Assert.That(bits s.BestLossParameters, Eq.To [| BitConverter.SingleToInt32Bits 2.5f |])

        Assert.That(
            (back.Seed, back.Epochs, back.BatchesPerEpoch, back.StudentOrder, back.Truncation, back.TeacherForwardMacs),
            Eq.To((3, 2, 4, StudentOrder.Sequential, Some 3, n))
        )
    finally
        File.Delete path

[<Test>]
let ``a snapshot without a truncation field is full BPTT, and a bad window is refused`` () =
    let snap = truncatedSnapshot ()

    let path =
        Path.Combine(Path.GetTempPath(), sprintf "snnspec-snap-%s.safetensors" (Guid.NewGuid().ToString "N"))

    // The file with its snapshot JSON edited by f (safetensors: an 8-byte header length, the header).
    let edited (f: Text.Json.Nodes.JsonObject -> unit) =
        let bytes = File.ReadAllBytes path
        let length = int (BitConverter.ToInt64(bytes, 0))

        let header =
            Text.Json.Nodes.JsonNode.Parse(Text.Encoding.UTF8.GetString(bytes, 8, length))

        let meta = header["__metadata__"]

        let json =
            Text.Json.Nodes.JsonNode.Parse(meta["snapshot"].GetValue<string>()).AsObject()

        f json
        meta["snapshot"] <- Text.Json.Nodes.JsonValue.Create(json.ToJsonString())
        let h = Text.Encoding.UTF8.GetBytes(header.ToJsonString())
        let other = path + ".edited.safetensors"
        File.WriteAllBytes(other, Array.concat [ BitConverter.GetBytes(int64 h.Length); h; bytes[8 + length ..] ])
        other

    try
        TrainerCheckpoint.save path snap
        Assert.That((TrainerCheckpoint.load path).Truncation, Is.EqualTo(Some 1))
        let absent = edited (fun o -> o.Remove "truncation" |> ignore)
        Assert.That((TrainerCheckpoint.load absent).Truncation, Is.EqualTo None)

        for bad, fragment in
            [
                Text.Json.Nodes.JsonValue.Create 0, "at least 1"
                Text.Json.Nodes.JsonValue.Create 2.5, "integer"
            ] do
            let file = edited (fun o -> o["truncation"] <- bad)

            assertRaises<CheckpointFormatException> [ "truncation"; fragment ] (fun () ->
                TrainerCheckpoint.load file |> box)
    finally
        for f in [ path; path + ".edited.safetensors" ] do
            File.Delete f

[<Test>]
let ``a window that cuts no student is recorded as full BPTT and resumes with or without it`` () =
    let teacher, student, _, _, _, _ = resumeSetup ()

    let spec =
        DistillationSpec.create teacher [ student ] [ SpecTerm.crossEntropy 0.0f 1.0f ]
    // The student runs T = 2: a window of 8 cuts nothing.
    let snap =
        interruptAndResumeWith (Some 8) StudentOrder.Interleaved (fun p -> p.Step = 3) spec

    Assert.That(snap.Truncation, Is.EqualTo None)
    let _, _, _, cfg, train, validation = resumeSetup ()

    Assert.DoesNotThrow(fun () ->
        Trainer.fit { cfg with Resume = Some snap } spec (train ()) (validation ())
        |> ignore)
