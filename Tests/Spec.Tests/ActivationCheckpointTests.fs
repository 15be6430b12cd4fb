module SnnSpec.Tests.ActivationCheckpointTests

open NUnit.Framework
open FsCheck
open FsCheck.NUnit
open SnnSpec
open SnnSpec.Distillation
open SnnSpec.Training
open SnnSpec.Tests.TestUtil
open SnnSpec.Tests.Generators

/// A two-output block: h = tanh(z) ⊙ z with z = x·Wᵀ + b, and the row sums of h² (W square, so h has x's shape).
let private block (xs: Tensor[]) =
    let z = Tensor.linear xs[1] (Some xs[2]) xs[0]
    let h = Tensor.tanh z * z
    [| h; Tensor.sumDims [| 1 |] false (Tensor.square h) |], [||]

let private loss (outs: Tensor[]) (x: Tensor) =
    Tensor.sum (outs[0] * Tensor.sigmoid x) + 0.5f * Tensor.sum outs[1]

let private inputs seed rows cols outs =
    [|
        randn seed [| rows; cols |]
        randn (seed + 1) [| outs; cols |] * 0.5f
        randn (seed + 2) [| outs |]
    |]

[<Property(Arbitrary = [| typeof<Arbitraries> |], MaxTest = 40)>]
let ``a checkpointed block has the same value and gradients as the block itself`` (Seed seed) =
    let rng = System.Random seed
    let rows, cols = rng.Next(1, 9), rng.Next(1, 40)
    let xs = inputs seed rows cols cols
    let plain xs = let o, _ = block xs in loss o xs[0]

    let checkpointed xs =
        let o, _ = Diff.checkpoint block xs in loss o xs[0]

    let v1, g1 = Diff.valueAndGradN plain xs
    let v2, g2 = Diff.valueAndGradN checkpointed xs

    v1.ToScalar() = v2.ToScalar()
    && Array.forall2 (fun (a: Tensor) (b: Tensor) -> a.ToArray() = b.ToArray()) g1 g2

[<Test>]
let ``the checkpointed block passes the finite-difference gradient check`` () =
    let xs = inputs 3 4 6 6
    assertGradCheck "checkpoint" (fun xs -> let o, _ = Diff.checkpoint block xs in loss o xs[0]) xs

[<Test>]
let ``a block used twice and an output that is its input get their gradients`` () =
    // y = x (returned as is) and z = 2x; the loss reads the checkpoint twice.
    let f (xs: Tensor[]) = [| xs[0]; xs[0] * 2.0f |], [||]
    let x = randn 5 [| 3; 4 |]

    let g =
        Diff.grad
            (fun x ->
                let a, _ = Diff.checkpoint f [| x |]
                let b, _ = Diff.checkpoint f [| a[1] |]
                Tensor.sum (a[0] * 3.0f) + Tensor.sum b[0] + Tensor.sum (Tensor.square b[1]))
            x

    // d/dx [3x + 2x + (4x)²] = 5 + 32x.
    let expected = x.ToArray() |> Array.map (fun v -> 5.0f + 32.0f * v)
    assertArraysClose "gradient" 1e-6 1e-6 expected (g.ToArray())

[<Test>]
let ``extras come from the first run and gradients skip inputs that need none`` () =
    let mutable runs = 0

    let f (xs: Tensor[]) =
        runs <- runs + 1
        [| xs[0] * xs[1] |], [| Tensor.full [| 2 |] (float32 runs) |]

    let w = Tensor.ofArray [| 2 |] [| 3.0f; -1.0f |]
    let mutable extra = [||]

    let g =
        Diff.grad
            (fun x ->
                let o, e = Diff.checkpoint f [| x; w |]
                extra <- e[0].ToArray()
                Tensor.sum o[0])
            (Tensor.ofArray [| 2 |] [| 1.0f; 2.0f |])

    Assert.That(g.ToArray(), Eq.To(w.ToArray()))
    Assert.That(extra, Eq.To([| 1.0f; 1.0f |]))
    Assert.That(runs, Is.EqualTo 2, "one run without a tape, one in the backward pass")

[<Test>]
let ``without a tape the block runs once as itself`` () =
    let mutable runs = 0

    let f (xs: Tensor[]) =
        runs <- runs + 1
        [| xs[0] + 1.0f |], [||]

    let o, _ = Diff.checkpoint f [| Tensor.zeros [| 3 |] |]
    Assert.That(o[0].ToArray(), Eq.To([| 1.0f; 1.0f; 1.0f |]))
    Assert.That(runs, Is.EqualTo 1)

[<Test>]
let ``the block's intermediates are recycled when it returns, not when the backward pass ends`` () =
    let x = randn 7 [| 64; 64 |]

    let intermediateAfterForward (checkpointed: bool) =
        let mutable inner = Unchecked.defaultof<Tensor>
        let mutable alive = false

        let f (xs: Tensor[]) =
            let t = Tensor.tanh xs[0]

            if isNull (box inner) then
                inner <- t

            [| Tensor.exp t |], [||]

        Diff.grad
            (fun x ->
                let o, _ =
                    if checkpointed then
                        Diff.checkpoint f [| x |]
                    else
                        f [| x |]

                alive <-
                    try
                        inner.ToArray() |> ignore
                        true
                    with :? SnnSpecException ->
                        false

                Tensor.sum o[0])
            x
        |> ignore

        alive

    Assert.That(intermediateAfterForward false, Is.True, "the plain block keeps tanh(x) for its backward")
    Assert.That(intermediateAfterForward true, Is.False, "the checkpointed block returns it to the pool at once")

[<Test>]
let ``a block whose second run differs is refused by name`` () =
    let mutable runs = 0

    let f (xs: Tensor[]) =
        runs <- runs + 1
        (if runs = 1 then [| xs[0] |] else [| xs[0]; xs[0] |]), [||]

    assertRaises<SnnSpecException> [ "Diff.checkpoint"; "deterministic" ] (fun () ->
        let loss x =
            let o, _ = Diff.checkpoint f [| x |]
            Tensor.sum o[0]

        box (Diff.grad loss (Tensor.ones [| 2 |])))

// ---------------------------------------------------------------- models

let private models steps =
    [
        "convnet", StreamingTests.convNet 1 steps
        "mint 4 bits", StreamingTests.convNet 2 steps |> Model.quantize (QuantConfig.Mint 4)
        "uniform 4 bits", StreamingTests.convNet 3 steps |> Model.quantize (QuantConfig.Integer 4)
        "ann twin", StreamingTests.convNet 4 steps |> Model.asAnn
    ]
    @ StreamingTests.residualAndOddModels steps

/// A training step's loss with every population's membrane, one population's spikes and every tap
/// in it, so that gradients enter a checkpointed segment through its probes as well as its output.
let private trainingStep (checkpoint: bool) (m: Model) (x: Tensor) =
    let spiking = Architecture.spikingNames m.Architecture

    let taps =
        Architecture.layers m.Architecture
        |> List.choose (fun (n, l) ->
            match l with
            | Tap _ -> Some n
            | _ -> None)

    let ctx =
        { ForwardContext.Train(Rng.create 17) with
            Probes =
                { ProbeRequest.None with
                    Membranes = Set.ofList spiking
                    Spikes = Set.ofList (List.truncate 1 spiking)
                    Taps = Set.ofList taps
                    FiringRates = true
                }
            CheckpointActivations = checkpoint
        }

    let mutable rates = Map.empty

    let loss, grads, buffers =
        Parameters.valueAndGradAux
            (fun ps ->
                let out = Model.apply ctx m ps x
                rates <- out.FiringRates
                let mutable l = Tensor.mean (Tensor.square out.Logits)

                for KeyValue(_, t) in Seq.concat [ out.Membranes; out.Spikes; out.Taps ] do
                    l <- l + 0.1f * Tensor.mean (Tensor.square t)

                l, Parameters.values out.Buffers)
            m.Parameters

    loss.ToScalar(), Parameters.toList grads, buffers |> Array.map (fun t -> t.ToArray()), rates

[<Test>]
let ``checkpointed training steps give the loss, gradients, BN statistics and firing rates of plain ones`` () =
    let steps = 3
    let x = StreamingTests.frames 5 steps 4

    for name, m in models steps do
        let x =
            if m.Mode = ExecutionMode.Ann then
                Tensor.meanDims [| 0 |] false x
            else
                x

        let l1, g1, b1, r1 = trainingStep false m x
        let l2, g2, b2, r2 = trainingStep true m x
        Assert.That(l2, Is.EqualTo l1, sprintf "%s: loss" name)

        for (n, a), (_, b) in List.zip g1 g2 do
            assertArraysClose (sprintf "%s: gradient of %s" name n) 0.0 0.0 (a.ToArray()) (b.ToArray())

        Array.iteri2 (fun i (a: float32[]) b -> assertArraysClose (sprintf "%s: buffer %d" name i) 0.0 0.0 a b) b1 b2
        Assert.That((r2 = r1), sprintf "%s: firing rates %A, expected %A" name r2 r1)

[<Test>]
let ``a distillation run with checkpointed activations trains to the same bits and runs its segments twice`` () =
    // An ANN teacher, a dropout SNN student, blurred KD on a feature map inside a segment.
    let teacher, student, bkd, cfg, data, validation = KdTrainerTests.resumeSetup ()

    let spec =
        DistillationSpec.create teacher [ student ] [ SpecTerm.crossEntropy 0.0f 1.0f; bkd ]

    let rents (c: TrainConfig) =
        let reused0, fresh0, _ = BufferPool.stats ()
        let r = Trainer.fit c spec (data ()) (validation ())
        let reused1, fresh1, _ = BufferPool.stats ()
        r, reused1 + fresh1 - reused0 - fresh0

    let plain, plainRents = rents cfg

    let checkpointed, checkpointedRents =
        rents
            { cfg with
                CheckpointActivations = true
            }

    KdTrainerTests.sameResult plain checkpointed
    // The second forward of every segment in the backward pass rents its buffers again.
    Assert.That(checkpointedRents, Is.GreaterThan plainRents)

/// A plain or checkpointed training step that asks for the given taps only (no spike probes pin
/// their storage) and returns them, the logits and the input-state gradient, read after the call.
let private tapsAfterBackward (checkpoint: bool) (taps: string list) (m: Model) (x: Tensor) =
    let ctx =
        { ForwardContext.Train(Rng.create 3) with
            Probes =
                { ProbeRequest.None with
                    Taps = Set.ofList taps
                }
            CheckpointActivations = checkpoint
        }

    let _, grads, aux =
        Parameters.valueAndGradAux
            (fun ps ->
                let out = Model.apply ctx m ps x

                Tensor.mean (Tensor.square out.Logits),
                Array.append [| out.Logits |] (taps |> List.map (fun t -> out.Taps[t]) |> Array.ofList))
            m.Parameters

    aux |> Array.map (fun t -> t.ToArray()), Parameters.values grads |> Array.map (fun t -> t.ToArray())

[<Test>]
let ``taps on a segment's input and a segment that only views its input stay readable after the backward pass`` () =
    let steps = 3
    let x = StreamingTests.frames 8 steps 2
    let lif = { Neuron.lif with Threshold = 0.3f }

    let small =
        { QuantModelTests.tinyCfg with
            Neuron = lif
        }

    let mlp = Zoo.mlp { small with Width = 1.0f } [ 12 ]

    let archs =
        [
            "mlp feature", mlp, [ Zoo.featureTap ]
            "resnet18 feature map", Zoo.resnet18 { small with Width = 0.125f }, [ Zoo.featureMapTap; Zoo.featureTap ]
            // The last segment is a tap after the output population: a view of its input only.
            "trailing tap",
            { mlp with
                Layers = mlp.Layers @ [ Spiking("out", lif); Tap "out_tap" ]
            },
            [ "out_tap" ]
        ]

    for name, arch, taps in archs do
        let m = Model.init 4 (ExecutionMode.Snn steps) arch
        let plainAux, plainGrads = tapsAfterBackward false taps m x
        let aux, grads = tapsAfterBackward true taps m x

        Array.iteri2
            (fun i (a: float32[]) b -> assertArraysClose (sprintf "%s: output %d" name i) 0.0 0.0 a b)
            plainAux
            aux

        Array.iteri2
            (fun i (a: float32[]) b -> assertArraysClose (sprintf "%s: gradient %d" name i) 0.0 0.0 a b)
            plainGrads
            grads

[<Test>]
let ``a consumed input that an output shares is not returned to the pool`` () =
    let x = randn 9 [| 64; 32 |]

    let block (xs: Tensor[]) =
        [| Tensor.reshape [| 32; 64 |] xs[0]; Tensor.exp xs[0] |], [||]

    let _, _, aux =
        Diff.valueAndGradAux
            (fun xs ->
                let h = Tensor.tanh xs[0]
                let o, _ = Diff.checkpointConsuming [| true |] block [| h |]
                Tensor.sum o[1] + Tensor.sum (Tensor.square o[0]), [| o[0] |])
            [| x |]

    // Read after the backward pass: the view shares the consumed input's buffer.
    let expected = Diff.noGrad (fun () -> (Tensor.tanh x).ToArray())
    assertArraysClose "the shared view" 0.0 0.0 expected (aux[0].ToArray())

[<Test>]
let ``a gradient through carried initial states is the plain run's`` () =
    let steps = 3
    let m = StreamingTests.convNet 5 steps
    let x = StreamingTests.frames 9 steps 2
    let names = Architecture.spikingNames m.Architecture

    let states =
        Diff.noGrad (fun () ->
            let out =
                Model.forward
                    { ForwardContext.Eval with
                        InitialStates = Some Map.empty
                    }
                    m
                    x

            out.FinalStates |> Map.map (fun _ v -> Tensor.ofArray v.Shape (v.ToArray())))

    let gradOfStates (checkpoint: bool) =
        Diff.gradN
            (fun vs ->
                let ctx =
                    { ForwardContext.Train(Rng.create 1) with
                        InitialStates = Some(List.zip names (List.ofArray vs) |> Map.ofList)
                        CheckpointActivations = checkpoint
                    }

                Tensor.mean (Tensor.square (Model.forward ctx m x).Logits))
            (names |> List.map (fun n -> states[n]) |> Array.ofList)
        |> Array.map (fun t -> t.ToArray())

    let plain = gradOfStates false
    Assert.That(plain |> Array.exists (Array.exists (fun v -> v <> 0.0f)), "the plain run has a state gradient")

    Array.iteri2
        (fun i (a: float32[]) b -> assertArraysClose (sprintf "state %s" names[i]) 0.0 0.0 a b)
        plain
        (gradOfStates true)

[<Test>]
let ``a quantized MS-ResNet, whose scales feed populations of the next segment, gets the plain gradients up to summation order``
    ()
    =
    let steps = 3
    let x = StreamingTests.frames 10 steps 2

    let cfg =
        { QuantModelTests.tinyCfg with
            Width = 0.125f
            Neuron = { Neuron.mint with Threshold = 0.25f }
        }

    for q in [ QuantConfig.Mint 4; QuantConfig.Integer 4 ] do
        let m =
            Model.init 2 (ExecutionMode.Snn steps) (Zoo.msResnet18 cfg) |> Model.quantize q

        let l1, g1, b1, _ = trainingStep false m x
        let l2, g2, b2, _ = trainingStep true m x
        Assert.That(l2, Is.EqualTo l1)

        for (n, a), (_, b) in List.zip g1 g2 do
            assertArraysClose (sprintf "%A: gradient of %s" q n) 1e-5 1e-9 (a.ToArray()) (b.ToArray())

        Array.iteri2 (fun i (a: float32[]) b -> assertArraysClose (sprintf "%A: buffer %d" q i) 0.0 0.0 a b) b1 b2
