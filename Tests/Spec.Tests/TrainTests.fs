module SnnSpec.Tests.TrainTests

open System
open NUnit.Framework
open SnnSpec
open SnnSpec.Data
open SnnSpec.Distillation
open SnnSpec.Training
open SnnSpec.Tests.TestUtil

/// Gaussian-noise copies of one random 1×8×8 template per class, as uint8 images.
let templates (seed: int) (classes: int) (count: int) (noise: float) =
    let rng = Random seed
    let tpl = Array.init classes (fun _ -> Array.init 64 (fun _ -> rng.NextDouble()))
    let noiseRng = Random(seed + 1000)
    let labels = Array.init count (fun i -> i % classes)

    let pixels =
        [|
            for i in 0 .. count - 1 do
                for p in 0..63 do
                    let u1 = 1.0 - noiseRng.NextDouble()
                    let u2 = noiseRng.NextDouble()
                    let g = sqrt (-2.0 * log u1) * cos (2.0 * Math.PI * u2)
                    let v = tpl[labels[i]][p] + noise * g
                    yield byte (Math.Clamp(v * 255.0, 0.0, 255.0))
        |]

    ImageSet.create "templates" pixels labels 1 8 8 classes

let cfg8 classes =
    { ZooConfig.Mnist with
        InputSize = 8
        Classes = classes
    }

let batcher (size: int) (shuffle: bool) (seed: int) (set: ImageSet) =
    Batching.create
        { Batching.options size seed with
            Shuffle = shuffle
            Prefetch = 0
        }
        set

let mlp (width: float32) (hidden: int list) (steps: int) (seed: int) =
    Model.init seed (ExecutionMode.Snn steps) (Zoo.mlp { cfg8 4 with Width = width } hidden)

let quietConfig =
    { TrainConfig.Default with
        Epochs = 1
        LearningRate = 0.05f
        Schedule = LrSchedule.Constant
    }

let contains (fragment: string, message: string) =
    Assert.That(message, Does.Contain fragment)

let bits (ps: Parameters) =
    Parameters.values ps
    |> Array.collect (fun t -> t.ToArray() |> Array.map BitConverter.SingleToInt32Bits)

// ---------------------------------------------------------------- schedules and optimizers

[<Test>]
let ``cosine starts at the base rate, ends at the minimum and is halfway at the middle`` () =
    let r = Schedule.rate (LrSchedule.Cosine 0.01f) 0.1f 10 100
    Assert.That(r 0, Is.EqualTo(0.1f).Within(1e-7f))
    Assert.That(r 50, Is.EqualTo(0.055f).Within(1e-6f))
    Assert.That(r 100, Is.EqualTo(0.01f).Within(1e-7f))
    Assert.That(r 99, Is.GreaterThan 0.01f)

[<Test>]
let ``warm-up ramps linearly over its steps, then hands over to the inner schedule`` () =
    let r = Schedule.rate (LrSchedule.Warmup(1.0, LrSchedule.Cosine 0.0f)) 0.4f 4 12
    Assert.That([| for s in 0..3 -> r s |], Eq.To([| 0.1f; 0.2f; 0.3f; 0.4f |]).Within(1e-6f))
    Assert.That(r 4, Is.EqualTo(0.4f).Within(1e-6f))
    Assert.That(r 8, Is.EqualTo(0.2f).Within(1e-6f))

[<Test>]
let ``step decay multiplies by gamma every given number of epochs`` () =
    let r = Schedule.rate (LrSchedule.Step(2, 0.1f)) 1.0f 3 30
    Assert.That(r 5, Is.EqualTo 1.0f)
    Assert.That(r 6, Is.EqualTo(0.1f).Within(1e-7f))
    Assert.That(r 12, Is.EqualTo(0.01f).Within(1e-8f))
    let m = Schedule.rate (LrSchedule.MultiStep([ 1; 3 ], 0.5f)) 1.0f 2 20
    Assert.That([| m 1; m 2; m 5; m 6 |], Eq.To [| 1.0f; 0.5f; 0.5f; 0.25f |])

[<Test>]
let ``weight decay skips batch-norm parameters and biases by name`` () =
    let m = Model.init 0 (ExecutionMode.Snn 1) (Zoo.convNet (cfg8 4))
    let norms = set [ "bn1"; "bn2" ]
    let zeroGrads = m.Parameters |> Parameters.map (fun _ t -> Tensor.zerosLike t)
    let decays = Optimizer.decays WeightDecayRule.SkipNormAndBias norms

    for kind in [ OptimizerKind.Sgd(0.0f, false); OptimizerKind.AdamWDefault ] do
        let ps, _ =
            Optimizer.step kind 0.5f 0.1f decays OptimizerState.Empty m.Parameters zeroGrads

        for n in m.Parameters.Names do
            let before, after = m.Parameters[n].ToArray(), ps[n].ToArray()
            let skipped = n.EndsWith ".bias" || n.StartsWith "bn"

            if skipped then
                assertArraysClose (sprintf "%A %s" kind n) 0.0 0.0 before after
            else
                assertArraysClose (sprintf "%A %s" kind n) 1e-6 1e-7 (before |> Array.map (fun w -> w * 0.95f)) after

    Assert.That(
        decays "conv1.weight"
        && decays "fc1.weight"
        && not (decays "bn1.weight")
        && not (decays "fc.bias")
    )

[<Test>]
let ``clipping bounds the global gradient norm and keeps its direction`` () =
    let g =
        Parameters.ofList [ "a", randn 1 [| 10 |] * 5.0f; "b", randn 2 [| 3; 4 |] * 5.0f ]

    let before = Optimizer.globalNorm g
    Assert.That(before, Is.GreaterThan 1.0)
    let c, n = Optimizer.clipByGlobalNorm 1.0f g
    Assert.That(n, Is.EqualTo(before).Within(1e-9))
    Assert.That(Optimizer.globalNorm c, Is.LessThanOrEqualTo(1.0 + 1e-5))
    assertArraysClose "direction" 1e-5 1e-7 ((g["a"] * float32 (1.0 / before)).ToArray()) (c["a"].ToArray())
    let small, _ = Optimizer.clipByGlobalNorm 1000.0f g
    assertArraysClose "unclipped" 0.0 0.0 (g["b"].ToArray()) (small["b"].ToArray())

// ---------------------------------------------------------------- trainer behaviour

[<Test>]
let ``the same seed gives bit-identical parameters after training`` () =
    let data = templates 3 4 64 0.2

    let student =
        Model.init 5 (ExecutionMode.Snn 2) (Zoo.mlp { cfg8 4 with Dropout = 0.3f } [ 16 ])

    let run seed =
        let r =
            Trainer.fitOne
                { quietConfig with
                    Seed = seed
                    Epochs = 2
                    ClipNorm = Some 1.0f
                }
                (DistillationSpec.alone [ student ] [ SpecTerm.crossEntropy 0.1f 1.0f ])
                (batcher 16 true 1 data)
                None

        bits r.Final.Parameters, bits r.Final.Buffers

    let a, ab = run 7
    let b, bb = run 7
    let c, _ = run 8
    Assert.That(b, Eq.To a)
    Assert.That(bb, Eq.To ab)
    Assert.That(c, Is.Not.EqualTo(box a))

[<Test>]
let ``a NaN loss stops training with the step and the term named`` () =
    let data = templates 3 4 64 0.2
    let student = mlp 1.0f [ 8 ] 2 1
    let calls = ref 0

    let boom =
        LossTerm.custom "boom" 1.0f (fun _ s _ ->
            calls.Value <- calls.Value + 1
            let m = Tensor.mean s.Logits
            if calls.Value >= 3 then m * Single.NaN else m * 0.0f)

    let spec =
        DistillationSpec.alone [ student ] [ SpecTerm.crossEntropy 0.0f 1.0f; SpecTerm.ofTerm [] boom ]

    let ex =
        Assert.Throws<TrainingDivergedException>(fun () ->
            Trainer.fit quietConfig spec (batcher 16 false 1 data) None |> ignore)

    Assert.That(ex.Step, Is.EqualTo 3)
    Assert.That(ex.Term, Is.EqualTo "boom")
    contains ("step 3", ex.Message)
    contains ("'boom'", ex.Message)
    contains ("ce = ", ex.Message)

[<Test>]
let ``progress is reported per step and cancellation stops between steps`` () =
    let data = templates 3 4 64 0.2
    let student = mlp 1.0f [ 8 ] 2 1
    let seen = ResizeArray<TrainProgress>()
    use cts = new Threading.CancellationTokenSource()

    let cfg =
        { quietConfig with
            Epochs = 3
            Progress =
                fun p ->
                    seen.Add p

                    if p.Step = 5 then
                        cts.Cancel()
            Cancellation = cts.Token
        }

    Assert.Throws<OperationCanceledException>(fun () ->
        Trainer.fit
            cfg
            (DistillationSpec.alone [ student ] [ SpecTerm.crossEntropy 0.0f 1.0f ])
            (batcher 16 false 1 data)
            None
        |> ignore)
    |> ignore

    Assert.That(seen.Count, Is.EqualTo 5)
    Assert.That(seen[4].Epoch, Is.EqualTo 1)
    Assert.That(seen[0].Losses |> List.map fst |> Array.ofList, Eq.To [| "ce" |])

[<Test>]
let ``per-epoch validation keeps the best epoch as an independent copy`` () =
    let data = templates 3 4 128 0.2
    let test = templates 3 4 64 0.2
    let student = mlp 1.0f [ 16 ] 2 1
    let reports = ResizeArray<EpochReport>()

    let r =
        Trainer.fitOne
            { quietConfig with
                Epochs = 3
                OnEpoch = fun rep _ -> reports.Add rep
            }
            (DistillationSpec.alone [ student ] [ SpecTerm.crossEntropy 0.0f 1.0f ])
            (batcher 16 true 1 data)
            (Some(batcher 32 false 0 test))

    Assert.That(reports.Count, Is.EqualTo 3)
    let accs = reports |> Seq.map (fun r -> r.Validation.Value.Accuracy) |> Array.ofSeq
    Assert.That(r.BestAccuracy.Value, Is.EqualTo(Array.max accs))
    Assert.That(r.BestEpoch, Is.EqualTo(Array.findIndex ((=) (Array.max accs)) accs))
    let again = Evaluation.accuracyPerStep r.Best (batcher 32 false 0 test)
    Assert.That(again[again.Length - 1], Is.EqualTo r.BestAccuracy.Value)

// ---------------------------------------------------------------- spec validation

let private validationMessage (spec: DistillationSpec) =
    let ex = Assert.Throws<SnnSpecException>(fun () -> DistillationSpec.validate spec)
    ex.Message

[<Test>]
let ``membrane taps of different shapes without an adapter are refused naming both taps and shapes`` () =
    let teacher = mlp 1.0f [ 16 ] 4 0
    let student = mlp 0.5f [ 16 ] 4 1

    let msg =
        validationMessage (DistillationSpec.create teacher [ student ] [ SpecTerm.membrane Prefix [ "lif1" ] 1.0f ])

    for fragment in
        [
            "teacher membrane 'lif1' [4, 2, 16]"
            "student membrane 'lif1' [4, 2, 8]"
            "Fix"
        ] do
        contains (fragment, msg)

[<Test>]
let ``feature taps of different widths need an adapter`` () =
    let teacher = Model.init 0 (ExecutionMode.Snn 2) (Zoo.convNet (cfg8 4))

    let student =
        Model.init 1 (ExecutionMode.Snn 2) (Zoo.convNet { cfg8 4 with Width = 0.5f })

    let noAdapter = SpecTerm.feature (Parameters.ofList []) "feature" "feature" 1.0f

    let msg =
        validationMessage (DistillationSpec.create teacher [ student ] [ noAdapter ])

    contains ("teacher tap 'feature' [2, 2, 256]", msg)
    contains ("student tap 'feature' [2, 2, 128]", msg)
    contains ("adapter", msg)

[<Test>]
let ``different class counts, a longer student under prefix alignment, unknown taps and negative weights are refused``
    ()
    =
    let teacher = mlp 1.0f [ 16 ] 2 0

    let tenClasses =
        Model.init 1 (ExecutionMode.Snn 2) (Zoo.mlp { cfg8 4 with Classes = 10 } [ 16 ])

    let m1 =
        validationMessage (DistillationSpec.create teacher [ tenClasses ] [ SpecTerm.logitKd 4.0f 1.0f ])

    contains ("predicts 4 classes", m1)
    contains ("predicts 10", m1)

    let longer = mlp 1.0f [ 16 ] 4 1

    let m2 =
        validationMessage (DistillationSpec.create teacher [ longer ] [ SpecTerm.membrane Prefix [ "lif1" ] 1.0f ])

    contains ("t_S = 4", m2)
    contains ("T_T = 2", m2)
    contains ("TimeMean", m2)

    DistillationSpec.validate (
        DistillationSpec.create teacher [ longer ] [ SpecTerm.membrane TimeMean [ "lif1" ] 1.0f ]
    )

    let m3 =
        validationMessage (
            DistillationSpec.create teacher [ mlp 1.0f [ 16 ] 2 1 ] [ SpecTerm.spikes SpikeKd.defaults "lif9" 1.0f ]
        )

    contains ("'lif9'", m3)
    contains ("available: lif1", m3)

    let negative =
        SpecTerm.ofTerm
            []
            { (LossTerm.crossEntropy 0.0f 1.0f) with
                Weight = -1.0f
            }

    let m4 = validationMessage (DistillationSpec.alone [ teacher ] [ negative ])
    contains ("weight -1", m4)

    let ann = Model.asAnn teacher

    let m5 =
        validationMessage (
            DistillationSpec.create ann [ mlp 1.0f [ 16 ] 2 1 ] [ SpecTerm.membrane Prefix [ "lif1" ] 1.0f ]
        )

    contains ("is an ANN", m5)

// ---------------------------------------------------------------- multi-stage and versatile

[<Test>]
let ``multi-stage training freezes earlier stages: no gradient reaches the teacher and its parameters stay`` () =
    let data = templates 3 4 64 0.2
    let teacher = mlp 1.0f [ 32 ] 2 0
    let assistant = mlp 1.0f [ 16 ] 2 1
    let student = mlp 1.0f [ 8 ] 2 2
    let teacherBits = bits teacher.Parameters
    let terms = [ SpecTerm.crossEntropy 0.0f 1.0f; SpecTerm.logitKd 2.0f 1.0f ]

    let r =
        Trainer.fit
            { quietConfig with Epochs = 2 }
            (DistillationSpec.chain teacher [ assistant ] [ student ] terms)
            (batcher 16 true 1 data)
            None

    Assert.That(r.Stages.Length, Is.EqualTo 2)
    Assert.That(bits teacher.Parameters, Eq.To teacherBits)
    let trainedAssistant = r.Stages[0].Students.Head.Best
    Assert.That(bits r.Stages[1].Teacher.Value.Parameters, Eq.To(bits trainedAssistant.Parameters))
    Assert.That(bits trainedAssistant.Parameters, Is.Not.EqualTo(box (bits assistant.Parameters)))

    // The gradient of the stage-2 objective with respect to the frozen assistant is zero.
    let x = ImageSet.toTensor data [| 0..15 |]
    let y = Array.init 16 (fun i -> data.Labels[i])

    let g =
        Parameters.grad
            (fun ps ->
                let t = Model.apply ForwardContext.Eval trainedAssistant ps x
                let s = Model.forward ForwardContext.Eval student x
                LossTerm.total (terms |> List.map (fun t -> t.Term)) (KdOutputs.ofForward t) (KdOutputs.ofForward s) y)
            trainedAssistant.Parameters

    for t in Parameters.values g do
        Assert.That(t.ToArray() |> Array.forall ((=) 0.0f))

[<Test>]
let ``a versatile teacher shares one forward per batch and saves training MACs against one teacher per timestep`` () =
    let data = templates 3 4 64 0.2
    let teacher = mlp 1.0f [ 32 ] 4 0
    let student = mlp 1.0f [ 16 ] 4 1

    let terms = [ SpecTerm.crossEntropy 0.0f 1.0f; SpecTerm.logitKd 2.0f 1.0f ]

    let spec = DistillationSpec.versatile teacher student [ 1; 2; 3; 4 ] terms
    let train = batcher 16 true 1 data
    let interleaved = Trainer.fit quietConfig spec train None

    let sequential =
        Trainer.fit
            { quietConfig with
                StudentOrder = StudentOrder.Sequential
            }
            spec
            train
            None

    let fwd = Flops.forwardMacs teacher.Architecture teacher.Mode
    Assert.That(interleaved.Cost.TeacherForwardMacs, Is.EqualTo(64L * fwd))
    Assert.That(sequential.Cost.TeacherForwardMacs, Is.EqualTo(4L * 64L * fwd))
    Assert.That(interleaved.Students.Length, Is.EqualTo 4)
    Assert.That((interleaved.Students |> List.map (fun s -> s.Final.Mode)) = [ for t in 1..4 -> ExecutionMode.Snn t ])

    // MD-SNN's setting: MS-ResNet-18 teacher at T = 4, same-topology students at t = 1…4.
    let arch = Zoo.msResnet18 ZooConfig.Cifar100

    let cost reuse =
        VersatileCost.compute reuse 2 2 arch 4 arch [ 1; 2; 3; 4 ]

    let perBatch = cost TeacherReuse.PerBatch

    TestContext.Progress.WriteLine(
        sprintf
            "versatile-teacher MAC saving: per batch %.1f%%, per student %.1f%%, cached %.1f%%"
            (100.0 * perBatch.Saving)
            (100.0 * (cost TeacherReuse.PerStudent).Saving)
            (100.0 * (cost TeacherReuse.Cached).Saving)
    )

    Assert.That(perBatch.Saving, Is.EqualTo(24.0 / 70.0).Within(1e-3))
    Assert.That((cost TeacherReuse.PerStudent).Saving, Is.LessThan perBatch.Saving)
    Assert.That((cost TeacherReuse.Cached).Saving, Is.GreaterThan perBatch.Saving)

// ---------------------------------------------------------------- evaluation

[<Test>]
let ``full-range evaluation equals separate t-step runs and histograms count every membrane value`` () =
    let data = templates 3 4 64 0.2
    let arch = Zoo.convNet (cfg8 4)

    let trained =
        (Trainer.fitOne
            { quietConfig with Epochs = 1 }
            (DistillationSpec.alone [ Model.init 0 (ExecutionMode.Snn 4) arch ] [ SpecTerm.crossEntropy 0.0f 1.0f ])
            (batcher 16 true 1 data)
            None)
            .Final

    let teacher = Model.init 9 (ExecutionMode.Snn 4) arch

    let cfg =
        { EvaluationConfig.Default with
            Membranes = [ "lif1"; "lif2" ]
        }

    let r = Evaluation.run cfg (Some teacher) trained (batcher 20 false 0 data)
    Assert.That(r.Samples, Is.EqualTo 64)
    Assert.That(r.AccuracyPerStep.Length, Is.EqualTo 4)

    for t in 1..4 do
        let separate =
            Evaluation.accuracyPerStep (Model.withSteps t trained) (batcher 20 false 0 data)

        Assert.That(r.AccuracyPerStep[t - 1], Is.EqualTo separate[t - 1], sprintf "t = %d" t)

    // lif1: [T, B, 32, 8, 8] per batch.
    Assert.That(Histogram.total r.StudentHistograms["lif1"], Is.EqualTo(4L * 64L * 32L * 64L))
    Assert.That(Histogram.total r.TeacherHistograms["lif2"], Is.EqualTo(4L * 64L * 64L * 16L))
    Assert.That(r.StudentHistograms["lif1"].Edges.Length, Is.EqualTo 61)
    // lif1, lif2, lif_fc1 and the max-pools after lif1 and lif2.
    Assert.That(
        r.FiringRates.Keys |> Set.ofSeq,
        Eq.To(
            set
                [
                    "lif1"
                    "lif2"
                    "lif_fc1"
                    RateKey.maxPooled "lif1"
                    RateKey.maxPooled "lif2"
                ]
        )
    )

    for KeyValue(_, v) in r.FiringRates do
        Assert.That(v, Is.InRange(0.0, 1.0))

    Assert.That(r.TeacherAccuracy.IsSome)

// ---------------------------------------------------------------- teacher cache

[<Test>]
let ``the teacher cache returns the recomputed outputs and invalidates when the teacher or the data change`` () =
    let data = templates 3 4 50 0.2
    let teacher = Model.init 0 (ExecutionMode.Snn 3) (Zoo.convNet (cfg8 4))

    let probes =
        { ProbeRequest.None with
            Membranes = set [ "lif2" ]
            Spikes = set [ "lif1" ]
            Taps = set [ "feature" ]
        }

    let full = TeacherCache.build CachePrecision.Float32 16 teacher probes data
    let half = TeacherCache.build CachePrecision.Float16 16 teacher probes data
    Assert.That(half.Bytes, Is.LessThan full.Bytes)
    let idx = [| 7; 0; 49; 23; 23 |]
    let x = ImageSet.toTensor data idx

    let live =
        Model.forward
            { ForwardContext.Eval with
                Probes = probes
            }
            teacher
            x

    let c = TeacherCache.lookup full idx
    assertClose "logits" 1e-6 1e-6 live.Logits c.Logits
    assertClose "membrane" 1e-6 1e-6 live.Membranes["lif2"] c.Membranes["lif2"]
    assertClose "spikes" 0.0 0.0 live.Spikes["lif1"] c.Spikes["lif1"]
    assertClose "tap" 1e-6 1e-6 live.Taps["feature"] c.Taps["feature"]
    let h = TeacherCache.lookup half idx
    assertClose "half membrane" 1e-3 1e-3 live.Membranes["lif2"] h.Membranes["lif2"]
    assertClose "half logits" 1e-6 1e-6 live.Logits h.Logits

    Assert.That(TeacherCache.isValidFor teacher probes data full)
    let w = teacher.Parameters["fc.bias"].ToArray()
    w[0] <- w[0] + 1e-3f

    let changedTeacher =
        { teacher with
            Parameters =
                teacher.Parameters
                |> Parameters.map (fun n t -> if n = "fc.bias" then Tensor.ofArray t.Shape w else t)
        }

    Assert.That(TeacherCache.isValidFor changedTeacher probes data full, Is.False)
    let px = Array.copy data.Pixels
    px[100] <- px[100] + 1uy
    let changedData = { data with Pixels = px }
    Assert.That(TeacherCache.isValidFor teacher probes changedData full, Is.False)

    Assert.That(
        TeacherCache.isValidFor
            teacher
            probes
            { data with
                Labels = Array.rev data.Labels
            }
            full,
        Is.False
    )

    let rebuilt =
        TeacherCache.getOrBuild CachePrecision.Float32 16 (Some full) teacher probes changedData

    Assert.That(rebuilt.DataFingerprint, Is.Not.EqualTo full.DataFingerprint)

    Assert.That(
        Object.ReferenceEquals(TeacherCache.getOrBuild CachePrecision.Float32 16 (Some full) teacher probes data, full)
    )

[<Test>]
let ``training from the teacher cache matches training with the live teacher`` () =
    let data = templates 3 4 64 0.2
    let teacher = mlp 1.0f [ 32 ] 4 0
    let student = mlp 1.0f [ 32 ] 2 1

    let spec =
        DistillationSpec.create
            teacher
            [ student ]
            [
                SpecTerm.crossEntropy 0.0f 1.0f
                SpecTerm.logitKd 2.0f 1.0f
                SpecTerm.membrane Prefix [ "lif1" ] 0.5f
            ]

    let live =
        Trainer.fit { quietConfig with Epochs = 2 } spec (batcher 16 true 1 data) None

    let cached =
        Trainer.fit
            { quietConfig with
                Epochs = 2
                TeacherCache = TeacherCacheMode.Build CachePrecision.Float32
            }
            spec
            (batcher 16 true 1 data)
            None

    let a, b =
        live.Students.Head.Final.Parameters, cached.Students.Head.Final.Parameters

    for n in a.Names do
        assertClose n 1e-4 1e-5 a[n] b[n]

    Assert.That(cached.TeacherCache.IsSome)
    Assert.That(cached.Cost.TeacherForwardMacs * 2L, Is.EqualTo live.Cost.TeacherForwardMacs)

    let reused =
        Trainer.fit
            { quietConfig with
                Epochs = 2
                TeacherCache = TeacherCacheMode.Use cached.TeacherCache.Value
            }
            spec
            (batcher 16 true 1 data)
            None

    Assert.That(bits reused.Students.Head.Final.Parameters, Eq.To(bits b))
    Assert.That(reused.Cost.TeacherForwardMacs, Is.EqualTo 0L)

    let augmented =
        Batching.create
            { Batching.options 16 1 with
                Prefetch = 0
                Transform = Some(fun _ _ _ -> ())
            }
            data

    let ex =
        Assert.Throws<SnnSpecException>(fun () ->
            Trainer.fit
                { quietConfig with
                    TeacherCache = TeacherCacheMode.Use cached.TeacherCache.Value
                }
                spec
                augmented
                None
            |> ignore)

    contains ("random transform", ex.Message)

[<Test>]
let ``optimizer steps keep learnable quantizer scales positive`` () =
    // Adam moves every parameter by about the learning rate per step, so a scale α ≈ 0.01 would be
    // pushed below zero within a few steps without the projection.
    let ps =
        Parameters.ofList [ "fc.weight", Tensor.ones [| 2; 2 |]; "fc.alpha", Tensor.scalar 0.01f ]

    let grads =
        Parameters.ofList [ "fc.weight", Tensor.ones [| 2; 2 |]; "fc.alpha", Tensor.scalar 1.0f ]

    let mutable p = ps
    let mutable state = OptimizerState.Empty

    for _ in 1..30 do
        let p', s' =
            Optimizer.step OptimizerKind.AdamDefault 0.05f 0.0f (fun _ -> true) state p grads

        p <- p'
        state <- s'

    Assert.That(p["fc.alpha"].ToScalar(), Is.EqualTo Optimizer.ScaleFloor)
    // Other parameters are not projected.
    Assert.That(p["fc.weight"].ToArray() |> Array.forall (fun v -> v < 0.0f), Is.True)
