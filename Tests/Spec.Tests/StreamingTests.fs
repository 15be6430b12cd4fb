module SnnSpec.Tests.StreamingTests

open System
open NUnit.Framework
open FsCheck.NUnit
open SnnSpec
open SnnSpec.Data
open SnnSpec.Distillation
open SnnSpec.Training
open SnnSpec.Tests.TestUtil
open SnnSpec.Tests.DataEventTests
open SnnSpec.Tests.TrainTests

// ---------------------------------------------------------------- carried neuron states

let private neurons =
    [|
        Neuron.lif
        Neuron.ifNeuron
        Neuron.mint
        Neuron.leaky
        { Neuron.lif with Reset = Reset.Soft }
        { Neuron.leaky with
            Reset = Reset.Hard 0.3f
        }
    |]

let private bitsOf (t: Tensor) =
    t.ToArray() |> Array.map BitConverter.SingleToInt32Bits

[<Property(MaxTest = 60)>]
let ``a neuron run in two chunks, the second from the first's V_T, is the run over the whole sequence`` (seed: int) =
    let n = neurons[abs (seed % neurons.Length)]
    let steps = 2 + abs (seed / 7) % 7
    let split = 1 + abs (seed / 3) % (steps - 1)
    let perStep = [| 3; 1 + abs (seed / 11) % 40 |]
    let x = randn seed (Array.append [| steps |] perStep) * 1.5f

    let quant =
        match abs (seed / 13) % 3 with
        | 0 -> None
        | k ->
            Some
                {
                    Bits = Bits.Fixed(2 + abs seed % 6)
                    Alpha = Tensor.scalar 2.0f
                    Scheme =
                        (if k = 1 then
                             MembraneScheme.Uniform
                         else
                             MembraneScheme.Mint)
                }

    Diff.noGrad (fun () ->
        let v0 = Neuron.initState n perStep
        let whole = Neuron.runWith quant n v0 x
        let first = Neuron.runWith quant n v0 (Tensor.narrow 0 0 split x)

        let second =
            Neuron.runWith quant n first.VFinal (Tensor.narrow 0 split (steps - split) x)

        let spikes = Tensor.cat 0 [ first.S; second.S ]
        let h = Tensor.cat 0 [ first.H; second.H ]
        Assert.That(bitsOf spikes, Eq.To(bitsOf whole.S), "spikes")
        Assert.That(bitsOf h, Eq.To(bitsOf whole.H), "membrane H")
        Assert.That(bitsOf second.VFinal, Eq.To(bitsOf whole.VFinal), "V_T"))

// ---------------------------------------------------------------- streaming a model

let private tiny = QuantModelTests.tinyCfg

let convNet seed steps =
    Model.init seed (ExecutionMode.Snn steps) (Zoo.convNet tiny)

let frames seed steps batch =
    Tensor.uniform (Rng.create seed) 0.0f 1.0f [| steps; batch; 1; 8; 8 |]

/// A trained-looking model: random BN statistics so that eval mode is not the identity.
let withStatistics seed (m: Model) =
    { m with
        Buffers =
            m.Buffers
            |> Parameters.map (fun n t ->
                if n.EndsWith "running_var" then
                    positive seed 0.5f 2.0f t.Shape
                elif n.EndsWith "running_mean" then
                    randn (seed + 1) t.Shape * 0.1f
                else
                    t)
    }

let private plif =
    { Neuron.lif with
        Dynamics = Dynamics.Plif(Tensor.scalar 0.3f, true)
        Threshold = 0.3f
    }

/// Residual blocks, PLIF, 1-bit MINT, MINT on a population too small for the fused kernel, the
/// uniform grid under PLIF, and dropout (eval): the paths a population can take besides the fused ones.
let residualAndOddModels steps =
    let small neuron =
        { tiny with
            Width = 0.125f
            Neuron = neuron
        }

    let lowIf =
        { Neuron.ifNeuron with
            Threshold = 0.3f
        }

    let lowLif = { Neuron.lif with Threshold = 0.3f }

    let snn seed arch =
        Model.init seed (ExecutionMode.Snn steps) arch

    [
        "sew-add", snn 1 (Zoo.sewResnet18 (small lowIf) ResidualKind.SewAdd)
        "sew-iand", snn 2 (Zoo.sewResnet18 (small lowIf) ResidualKind.SewIAnd)
        "ms-resnet", snn 3 (Zoo.msResnet18 (small lowLif))
        "plif", snn 5 (Zoo.convNet { small plif with Width = 0.25f })
        "mint 1 bit",
        snn 6 (Zoo.mlp { small Neuron.mint with Width = 1.0f } [ 12 ])
        |> Model.quantize (QuantConfig.Mint 1)
        "mint 4 bits, 7 neurons",
        snn 7 (Zoo.mlp { small Neuron.mint with Width = 1.0f } [ 7 ])
        |> Model.quantize (QuantConfig.Mint 4)
        "uniform plif",
        snn 8 (Zoo.convNet { small plif with Width = 0.25f })
        |> Model.quantize (QuantConfig.Integer 4)
        "dropout",
        snn
            9
            (Zoo.convNet
                { small lowLif with
                    Width = 0.25f
                    Dropout = 0.5f
                })
    ]
    |> List.map (fun (n, m) -> n, withStatistics 11 m)

let private streamed (chunk: int) (m: Model) (x: Tensor) = Streaming.run chunk m x

let private whole (m: Model) (x: Tensor) =
    Diff.noGrad (fun () -> (Model.forward ForwardContext.Eval (Model.withSteps x.Shape[0] m) x).Logits)

[<Test>]
let ``streamed logits equal one eval run over the sequence, for every chunk size and quantization`` () =
    let steps = 6
    let x = frames 3 steps 3

    let models =
        [
            "float", convNet 1 steps |> withStatistics 5
            "mint 4 bits", convNet 2 steps |> withStatistics 6 |> Model.quantize (QuantConfig.Mint 4)
            "uniform 4 bits", convNet 3 steps |> withStatistics 7 |> Model.quantize (QuantConfig.Integer 4)
            "stem encoded once",
            Model.init 4 (ExecutionMode.Snn steps) (Zoo.convNet { tiny with EncodeFirstConv = true })
            |> withStatistics 8
        ]

    for name, m in models @ residualAndOddModels steps do
        let expected = whole m x

        for chunk in [ 1; 2; 4; steps; steps + 3 ] do
            assertClose (sprintf "%s, chunks of %d" name chunk) 1e-5 1e-5 expected (streamed chunk m x)

[<Test>]
let ``carried states survive later chunks untouched, in eval and training contexts, with probes`` () =
    let steps = 4
    let x = frames 4 steps 2

    for name, m in residualAndOddModels steps do
        let probes =
            { ProbeRequest.None with
                Membranes = Set.ofList (Architecture.spikingNames m.Architecture)
            }

        for ctx in
            [
                ForwardContext.Eval
                ForwardContext.Train(Rng.create 1)
                { ForwardContext.Eval with
                    Probes = probes
                }
            ] do
            Diff.noGrad (fun () ->
                use _ = TensorScope.Begin()
                let _, s1 = Streaming.stepWith ctx m StreamState.Start (Tensor.narrow 0 0 2 x)
                let before = s1.States |> Map.map (fun _ t -> t.ToArray())
                let _, s2 = Streaming.stepWith ctx m s1 (Tensor.narrow 0 2 1 x)
                Streaming.stepWith ctx m s2 (Tensor.narrow 0 3 1 x) |> ignore

                for KeyValue(n, v) in before do
                    Assert.That(s1.States[n].ToArray(), Eq.To v, sprintf "%s (training %b): %s" name ctx.Training n))

[<Test>]
let ``training-mode chunks with one key draw the sequence's one dropout mask`` () =
    let steps = 4
    let x = frames 6 steps 2

    let m =
        Model.init
            9
            (ExecutionMode.Snn steps)
            (Zoo.mlp
                { tiny with
                    Width = 1.0f
                    Dropout = 0.5f
                    Neuron = { Neuron.lif with Threshold = 0.3f }
                }
                [ 12 ])

    let key = Rng.create 42

    Diff.noGrad (fun () ->
        let whole = (Model.forward (ForwardContext.Train key) m x).Logits

        let chunk states start =
            let out =
                Model.forward
                    { ForwardContext.Train key with
                        InitialStates = Some states
                    }
                    (Model.withSteps 2 m)
                    (Tensor.narrow 0 start 2 x)

            out.Logits, out.FinalStates

        let a, s = chunk Map.empty 0
        let b, _ = chunk s 2
        assertClose "chunked dropout run" 1e-6 1e-6 whole (Tensor.cat 0 [ a; b ]))

[<Test>]
let ``a stream keeps firing where the sequence left off: its state is not the rest state`` () =
    let m = convNet 1 4 |> withStatistics 5
    let x = frames 9 4 2
    let first, state = Streaming.step m StreamState.Start (Tensor.narrow 0 0 2 x)
    let fromRest, _ = Streaming.step m StreamState.Start (Tensor.narrow 0 2 2 x)
    let carried, state' = Streaming.step m state (Tensor.narrow 0 2 2 x)
    Assert.That(first.Logits.Shape, Eq.To [| 2; 2; 10 |])
    Assert.That(state'.Steps, Is.EqualTo 4)

    Assert.That(
        (carried.Logits.ToArray() <> fromRest.Logits.ToArray()),
        "the carried state changed nothing: the stream restarted at rest"
    )

[<Test>]
let ``empty initial states are the rest state and every population returns V_T of its per-step shape`` () =
    let m = convNet 2 3 |> withStatistics 4
    let x = frames 1 3 5

    let plain, carried =
        Diff.noGrad (fun () ->
            Model.forward ForwardContext.Eval m x,
            Model.forward
                { ForwardContext.Eval with
                    InitialStates = Some Map.empty
                }
                m
                x)

    Assert.That(bitsOf carried.Logits, Eq.To(bitsOf plain.Logits))
    Assert.That(plain.FinalStates.IsEmpty, "no states without InitialStates")

    let names = Architecture.spikingNames m.Architecture
    Assert.That(carried.FinalStates |> Map.keys |> List.ofSeq, Eq.To(List.sort names))

    let spikes =
        Diff.noGrad (fun () ->
            (Model.forward
                { ForwardContext.Eval with
                    Probes =
                        { ProbeRequest.None with
                            Spikes = Set.ofList names
                        }
                }
                m
                x)
                .Spikes)

    for n in names do
        Assert.That(carried.FinalStates[n].Shape, Eq.To spikes[n].Shape[1..], n)

[<Test>]
let ``carried states are refused by name when they do not fit`` () =
    let m = convNet 1 2
    let x = frames 1 2 3

    let run (states: Map<string, Tensor>) (model: Model) (input: Tensor) =
        fun () ->
            box (
                Model.forward
                    { ForwardContext.Eval with
                        InitialStates = Some states
                    }
                    model
                    input
            )

    let name = List.head (Architecture.spikingNames m.Architecture)

    assertRaises<SnnSpecException> [ "carried state"; "nope" ] (run (Map.ofList [ "nope", Tensor.zeros [| 3 |] ]) m x)

    assertRaises<SnnSpecException> [ name; "per-step shape" ] (run (Map.ofList [ name, Tensor.zeros [| 2; 1 |] ]) m x)

    assertRaises<SnnSpecException>
        [ "ANN twin" ]
        (run (Map.ofList [ name, Tensor.zeros [| 1 |] ]) (Model.asAnn m) (Tensor.narrow 0 0 1 x |> Tensor.squeezeDim 0))

    let stacked =
        Model.init 1 (ExecutionMode.Snn 1) (Zoo.convNet { tiny with InputChannels = 2 } |> Architecture.stackFrames 2)

    assertRaises<SnnSpecException> [ "stacks" ] (run Map.empty stacked (frames 1 2 3))

[<Test>]
let ``a stream refuses the ANN twin, a static batch and an empty chunk`` () =
    let m = convNet 1 2
    let x = frames 1 2 3

    assertRaises<SnnSpecException> [ "Streaming.step"; "ANN" ] (fun () ->
        box (Streaming.step (Model.asAnn m) StreamState.Start x))

    assertRaises<SnnSpecException> [ "Streaming.step"; "[t, B" ] (fun () ->
        box (Streaming.step m StreamState.Start (Tensor.squeezeDim 0 (Tensor.narrow 0 0 1 x))))

    assertRaises<SnnSpecException> [ "Streaming.step"; "t ≥ 1" ] (fun () ->
        box (Streaming.step m StreamState.Start (Tensor.narrow 0 0 0 x)))

    assertRaises<SnnSpecException> [ "chunkSteps" ] (fun () -> box (Streaming.run 0 m x))

// ---------------------------------------------------------------- truncated BPTT

[<Test>]
let ``truncation chunks cover the steps in order, none longer than the window`` () =
    for steps in 1..9 do
        for k in [ None; Some 1; Some 2; Some 3; Some 4; Some 20 ] do
            let chunks = Trainer.truncationChunks k steps
            Assert.That(chunks |> List.sumBy snd, Is.EqualTo steps)

            Assert.That(
                chunks |> List.map fst,
                Eq.To(chunks |> List.scan (fun s (_, l) -> s + l) 0 |> List.take chunks.Length)
            )

            match k with
            | Some w ->
                Assert.That(chunks |> List.forall (fun (_, l) -> l >= 1 && l <= w), sprintf "T = %d, K = %d" steps w)
                Assert.That(chunks.Length, Is.EqualTo((steps + w - 1) / w))
            | None -> Assert.That(chunks, Eq.To [ 0, steps ])

let private sgd =
    { quietConfig with
        Optimizer = OptimizerKind.Sgd(0.0f, false)
        LearningRate = 0.2f
        WeightDecay = 0.0f
        ClipNorm = None
    }

let private term = SpecTerm.crossEntropy 0.0f 1.0f

/// One plain SGD step of truncated BPTT computed by hand for the first student of a one-stage spec:
/// chunk c runs from the detached states and the BN running statistics chunk c − 1 ended with, with
/// the trainer's forward key for step 1 (one dropout mask per sequence), sees the teacher's outputs of
/// its own steps (an ANN teacher's whole), and its summed term losses enter with weight t_c / T.
/// Returns the parameters after the step and the running statistics after the last chunk.
let private handStep (window: int) (spec: DistillationSpec) (x: Tensor) (labels: int[]) =
    let model = spec.Students.Head

    let stepsOf (m: Model) =
        match m.Mode with
        | ExecutionMode.Snn t -> t
        | ExecutionMode.Ann -> 1

    let steps = stepsOf model
    let sequence = x.Rank = model.Architecture.InputShape.Length + 2
    let key = Rng.fold 1 (Trainer.studentKey sgd.Seed 0 0)

    let teacher =
        match (List.head (DistillationSpec.stages spec)).Teacher with
        | Some t ->
            Diff.noGrad (fun () ->
                let out =
                    Model.forward
                        { ForwardContext.Eval with
                            Probes = DistillationSpec.teacherProbes spec
                        }
                        t
                        x

                KdOutputs.ofForward out
                |> KdOutputs.map (fun _ _ v -> Tensor.ofArray v.Shape (v.ToArray())))
        | None -> KdOutputs.ofLogits (Tensor.zeros [| 1; labels.Length; model.Architecture.Classes |])

    let teacherSteps = teacher.Logits.Shape[0]
    let restore (shape: int[], data: float32[]) = Tensor.ofArray shape data
    let mutable states = Map.empty
    let mutable buffers = model.Buffers
    let mutable sum = None

    for start, len in Trainer.truncationChunks (Some window) steps do
        let input = if sequence then Tensor.narrow 0 start len x else x

        let tOut =
            if teacherSteps = steps then
                KdOutputs.map (fun _ _ v -> Tensor.narrow 0 start len v) teacher
            else
                teacher

        let chunk =
            { Model.withSteps len model with
                Buffers = buffers
            }

        // Copied out as arrays: tensors made inside the differentiated function are recycled.
        let mutable finalStates = Map.empty
        let mutable finalBuffers = [||]

        let grads =
            Parameters.grad
                (fun ps ->
                    let out =
                        Model.apply
                            { ForwardContext.Train key with
                                Probes = DistillationSpec.studentProbes spec
                                InitialStates = Some states
                            }
                            chunk
                            ps
                            input

                    finalStates <- out.FinalStates |> Map.map (fun _ v -> v.Shape, v.ToArray())
                    finalBuffers <- Parameters.values out.Buffers |> Array.map (fun v -> v.Shape, v.ToArray())

                    spec.Terms
                    |> List.map (fun t -> LossTerm.evaluate t.Term tOut (KdOutputs.ofForward out) labels)
                    |> List.reduce (+))
                model.Parameters

        states <- finalStates |> Map.map (fun _ v -> restore v)
        buffers <- Parameters.withValues model.Buffers (Array.map restore finalBuffers)
        let w = float32 len / float32 steps
        let scaled = grads |> Parameters.map (fun _ g -> g * w)

        sum <-
            match sum with
            | None -> Some scaled
            | Some s -> Some(Parameters.map2 (fun _ a b -> a + b) s scaled)

    Parameters.map2 (fun _ p g -> p - g * sgd.LearningRate) model.Parameters sum.Value, buffers

let private fitOnce (cfg: TrainConfig) (model: Model) (data: Batcher) =
    (Trainer.fit cfg (DistillationSpec.alone [ model ] [ term ]) data None).Students.Head.Final

let private trainOnce (cfg: TrainConfig) (model: Model) (data: Batcher) = (fitOnce cfg model data).Parameters

let private firstBatch (data: Batcher) =
    let b = Seq.head (data.Epoch 0)
    Tensor.ofArray b.Inputs.Shape (b.Inputs.ToArray()), Array.copy b.Labels

/// One truncated SGD step of Trainer.fit on a spec against handStep: parameters and BN statistics.
let private specMatchesHand (what: string) (window: int) (spec: DistillationSpec) (data: Batcher) =
    let x, labels = firstBatch data

    let trained =
        (Trainer.fit { sgd with Truncation = Some window } spec data None).Students.Head.Final

    let expected, buffers = handStep window spec x labels

    for n, p in Parameters.toList expected do
        assertClose (sprintf "%s, K = %d, %s" what window n) 1e-3 1e-5 p trained.Parameters[n]

    for n, b in Parameters.toList buffers do
        assertClose (sprintf "%s, K = %d, buffer %s" what window n) 1e-4 1e-6 b trained.Buffers[n]

let private matchesHand (what: string) (window: int) (model: Model) (data: Batcher) =
    specMatchesHand what window (DistillationSpec.alone [ model ] [ term ]) data

[<Test>]
let ``one truncated-BPTT step on static images is the hand-computed sum of chunk gradients`` () =
    let data = batcher 8 false 1 (templates 3 4 8 0.2)

    for window in [ 1; 2; 3 ] do
        matchesHand "mlp" window (mlp 1.0f [ 12 ] 5 2) data

/// A quarter-width model of the 8×8 templates whose LIF neurons fire at θ = 0.3.
let private lowLif8 =
    { cfg8 4 with
        Width = 0.25f
        Neuron = { Neuron.lif with Threshold = 0.3f }
    }

[<Test>]
let ``truncated steps match the hand computation with batch norm, PLIF, quantized membranes and SEW`` () =
    let data = batcher 8 false 1 (templates 3 4 8 0.2)
    let cfg = lowLif8

    let mint =
        { cfg with
            Neuron = { Neuron.mint with Threshold = 0.25f }
        }

    let sew =
        { cfg with
            Width = 0.125f
            Neuron =
                { Neuron.ifNeuron with
                    Threshold = 0.3f
                }
        }

    let snn steps arch =
        Model.init 3 (ExecutionMode.Snn steps) arch

    matchesHand "convnet with BN" 2 (snn 4 (Zoo.convNet cfg)) data
    matchesHand "plif" 2 (snn 5 (Zoo.convNet { cfg with Neuron = plif })) data
    matchesHand "mint 4 bits" 3 (snn 4 (Zoo.convNet mint) |> Model.quantize (QuantConfig.Mint 4)) data
    matchesHand "uniform 4 bits" 1 (snn 4 (Zoo.convNet mint) |> Model.quantize (QuantConfig.Integer 4)) data
    matchesHand "sew" 2 (snn 4 (Zoo.sewResnet18 sew ResidualKind.SewAdd)) data
    // Dropout: the trainer's one mask per sequence, drawn with its key for step 1 in every chunk.
    matchesHand "dropout" 2 (snn 4 (Zoo.convNet { cfg with Dropout = 0.5f })) data

[<Test>]
let ``an SNN teacher at the student's T is cut into the student's chunks, live or cached`` () =
    let data = batcher 8 false 1 (templates 3 4 16 0.2)
    let cfg = lowLif8

    let spec =
        DistillationSpec.create
            (Model.init 1 (ExecutionMode.Snn 4) (Zoo.convNet cfg))
            [ Model.init 2 (ExecutionMode.Snn 4) (Zoo.convNet cfg) ]
            [
                SpecTerm.crossEntropy 0.0f 1.0f
                SpecTerm.logitKd 2.0f 1.0f
                SpecTerm.membrane Alignment.Prefix [ "lif1" ] 1.0f
                SpecTerm.perStepCrossEntropy 1.0f
            ]

    let run cache window =
        (Trainer.fit
            { sgd with
                Truncation = window
                TeacherCache = cache
            }
            spec
            data
            None)
            .Students.Head.Final.Parameters

    // One batch: handStep computes the first optimizer step only.
    specMatchesHand "SNN teacher" 2 spec (batcher 8 false 1 (templates 3 4 8 0.2))
    let live = run TeacherCacheMode.Off (Some 2)
    let full = run TeacherCacheMode.Off None
    Assert.That(bits (run (TeacherCacheMode.Build CachePrecision.Float32) (Some 2)), Eq.To(bits live))
    Assert.That(bits (run TeacherCacheMode.Off (Some 4)), Eq.To(bits full))
    Assert.That((bits live <> bits full), "K = 2 trained as full BPTT")

[<Test>]
let ``one truncated-BPTT step on an event sequence cuts the frames into the chunks`` () =
    let set =
        {
            Name = "toy"
            Samples =
                Array.init 6 (fun i ->
                    Array.init (20 + 3 * i) (fun k -> ev ((i + 2 * k) % 5) (k % 5) (int64 k) (k % 2)))
            Labels = Array.init 6 (fun i -> i % 3)
            Width = 5
            Height = 5
            Classes = 3
        }

    let events = Frames.integrateSet (opts 5 ByCount) set

    let data =
        Batching.create
            { Batching.options 6 0 with
                TimeMajor = true
                Shuffle = false
                Prefetch = 0
            }
            events

    let cfg =
        { ZooConfig.Mnist with
            InputChannels = 2
            InputSize = 5
            Classes = 3
        }

    let model = Model.init 3 (ExecutionMode.Snn 5) (Zoo.mlp cfg [ 16 ])
    Assert.That((fst (firstBatch data)).Shape, Eq.To [| 5; 6; 2; 5; 5 |])
    matchesHand "event mlp" 2 model data

    Assert.That(
        (bits (trainOnce sgd model data)
         <> bits (trainOnce { sgd with Truncation = Some 2 } model data)),
        "truncation at K = 2 of T = 5 trained exactly as full BPTT: the chunks were not cut"
    )

[<Test>]
let ``a window of at least T is full BPTT bit for bit, and truncated runs are deterministic`` () =
    let data = batcher 16 true 4 (templates 5 4 48 0.3)
    let model = mlp 1.0f [ 10 ] 4 3
    let full = trainOnce quietConfig model data
    Assert.That(bits (trainOnce { quietConfig with Truncation = Some 4 } model data), Eq.To(bits full))
    Assert.That(bits (trainOnce { quietConfig with Truncation = Some 9 } model data), Eq.To(bits full))
    let a = trainOnce { quietConfig with Truncation = Some 3 } model data
    let b = trainOnce { quietConfig with Truncation = Some 3 } model data
    Assert.That(bits a, Eq.To(bits b))

[<Test>]
let ``truncation is refused for a zero window, a frame-stacking student and a teacher at another T`` () =
    let data = batcher 8 false 1 (templates 3 4 16 0.2)
    let student = mlp 1.0f [ 8 ] 4 1

    assertRaises<SnnSpecException> [ "Truncation"; "at least 1" ] (fun () ->
        box (trainOnce { quietConfig with Truncation = Some 0 } student data))

    let teacher = mlp 1.0f [ 8 ] 3 2

    assertRaises<SnnSpecException> [ "Truncation"; "T = 4"; "3 steps" ] (fun () ->
        box (
            Trainer.fit
                { quietConfig with Truncation = Some 2 }
                (DistillationSpec.create teacher [ student ] [ SpecTerm.logitKd 2.0f 1.0f ])
                data
                None
        ))

    let stacked =
        Model.init
            1
            (ExecutionMode.Snn 3)
            (Zoo.mlp { cfg8 4 with InputChannels = 3 } [ 8 ] |> Architecture.stackFrames 3)

    assertRaises<SnnSpecException> [ "Truncation"; "stacks" ] (fun () ->
        box (trainOnce { quietConfig with Truncation = Some 2 } stacked data))
