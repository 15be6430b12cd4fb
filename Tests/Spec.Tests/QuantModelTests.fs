module SnnSpec.Tests.QuantModelTests

open System
open NUnit.Framework
open FsCheck.NUnit
open SnnSpec
open SnnSpec.Tests.TestUtil

// θ = 0.25 so that the quantized populations fire at MINT's initial scales (α₀ ≈ 0.05–0.07 here).
let tinyCfg =
    { ZooConfig.Mnist with
        InputSize = 8
        Width = 0.25f
        Neuron = { Neuron.mint with Threshold = 0.25f }
    }

let private convNet seed steps =
    Model.init seed (ExecutionMode.Snn steps) (Zoo.convNet tinyCfg)

let images seed n =
    Tensor.uniform (Rng.create seed) 0.0f 1.0f [| n; 1; 8; 8 |]

let private same (what: string) (expected: 'T[]) (actual: 'T[]) =
    if expected.Length <> actual.Length then
        Assert.Fail(sprintf "%s: %d values, expected %d" what actual.Length expected.Length)

    match Array.tryFindIndex id (Array.map2 (fun a b -> a <> b) expected actual) with
    | Some i -> Assert.Fail(sprintf "%s: index %d is %A, expected %A" what i actual[i] expected[i])
    | None -> ()

let private onGrid (what: string) (step: float32) (levels: int option) (t: Tensor) =
    for v in t.ToArray() do
        let k = v / step

        if MathF.Abs(k - MathF.Round k) > 1e-3f then
            Assert.Fail(sprintf "%s: %g is not a multiple of the step %g" what v step)

        match levels with
        | Some q when MathF.Abs(MathF.Round k) > float32 q ->
            Assert.Fail(sprintf "%s: code %g outside −%d…%d" what k q q)
        | _ -> ()

[<Property(MaxTest = 20)>]
let ``membrane values stay on the weight grid after every step in share mode`` (seed: int) =
    let w = randn seed [| 16 |] * 0.3f
    let bits = 2 + abs seed % 6
    let alpha = Quantizer.mintInitAlpha bits w
    let q = Quantizer.levels bits

    for scheme in [ MembraneScheme.Mint; MembraneScheme.Uniform ] do
        let mq =
            {
                Bits = Bits.Fixed bits
                Alpha = alpha
                Scheme = scheme
            }

        let step = Neuron.membraneStep mq
        let mutable v = Tensor.zeros [| 4; 16 |]

        for t in 0..5 do
            // Synaptic input Σ w·s with binary spikes and quantized weights: a multiple of the step.
            let spikes = Tensor.geScalar 0.0f (randn (seed + 100 + t) [| 4; 16 |])

            let input =
                Tensor.linear
                    (Quantizer.mint (Bits.Fixed bits) alpha (Tensor.stack 0 (List.replicate 16 w)))
                    None
                    spikes

            let r = Neuron.stepQuantized Neuron.mint mq v input
            onGrid (sprintf "V (%A, step %d)" scheme t) step (Some q) r.V
            v <- r.V

[<Test>]
let ``the uniform scheme reads H on the grid in a quantized model`` () =
    let m = convNet 1 3 |> Model.quantize (QuantConfig.Integer 4)

    let probes =
        { ProbeRequest.None with
            Membranes = set [ "lif2"; "lif_fc1" ]
        }

    let out =
        Model.forward
            { ForwardContext.Eval with
                Probes = probes
            }
            m
            (images 2 3)

    for name, layer in [ "lif2", "conv2"; "lif_fc1", "fc1" ] do
        let mq =
            {
                Bits = Bits.Fixed 4
                Alpha = m.Parameters[layer + ".alpha"]
                Scheme = MembraneScheme.Uniform
            }

        onGrid name (Neuron.membraneStep mq) None out.Membranes[name]

[<Test>]
let ``the plan keeps MINT's first layer full precision and shares the feeding layer's scale`` () =
    let m = convNet 1 2 |> Model.quantize (QuantConfig.Mint 4)
    let plan = Model.quantPlan m
    Assert.That(plan.Weights.ContainsKey "conv1", Is.False)
    Assert.That(plan.Membranes.ContainsKey "lif1", Is.False)
    Assert.That(plan.Weights["conv2"].FoldedNorm, Is.EqualTo(Some "bn2"))
    Assert.That(plan.Membranes["lif2"].ScaleFrom, Is.EqualTo "conv2")
    Assert.That(plan.Membranes["lif_fc1"].ScaleFrom, Is.EqualTo "fc1")
    Assert.That(plan.Weights["fc"].Weight, Is.EqualTo(Bits.Fixed 4))

    for layer in [ "conv2"; "fc1"; "fc" ] do
        Assert.That(m.Parameters.TryFind(layer + ".alpha").IsSome, layer)

    let independent =
        convNet 1 2
        |> Model.quantize
            { QuantConfig.Mint 4 with
                ShareMembraneScale = false
            }

    Assert.That((Model.quantPlan independent).Membranes["lif2"].ScaleFrom, Is.EqualTo "lif2")
    Assert.That(independent.Parameters.TryFind("lif2.alpha").IsSome)

let private zooModels () =
    [
        convNet 3 2
        Model.init 4 (ExecutionMode.Snn 2) (Zoo.mlp tinyCfg [ 12; 8 ])
        Model.init 5 (ExecutionMode.Snn 2) (Zoo.vgg9 { tinyCfg with EncodeFirstConv = true })
        Model.init
            6
            (ExecutionMode.Snn 2)
            (Zoo.msResnet18
                { ZooConfig.Cifar10 with
                    InputSize = 8
                    Width = 0.0625f
                    Neuron = Neuron.mint
                })
        Model.init 7 ExecutionMode.Ann (Zoo.convNet tinyCfg)
    ]

let private input (m: Model) seed =
    Tensor.uniform (Rng.create seed) 0.0f 1.0f (Array.append [| 2 |] m.Architecture.InputShape)

[<Test>]
let ``full precision everywhere reproduces the unquantized model exactly`` () =
    for m in zooModels () do
        let q = Model.quantize QuantConfig.FullPrecision m
        let x = input m 11

        for ctx in [ ForwardContext.Eval; ForwardContext.Train(Rng.create 3) ] do
            let a = Model.forward ctx m x
            let b = Model.forward ctx q x
            same m.Architecture.Name (a.Logits.ToArray()) (b.Logits.ToArray())

            for n in a.Buffers.Names do
                same n (a.Buffers[n].ToArray()) (b.Buffers[n].ToArray())

[<Test>]
let ``full precision with folded batch norm matches conv then BN in eval and training`` () =
    for m in zooModels () do
        let x = input m 12
        // Non-trivial running statistics.
        let trained =
            { m with
                Buffers = (Model.forward (ForwardContext.Train(Rng.create 1)) m x).Buffers
            }

        let q =
            Model.quantize
                { QuantConfig.FullPrecision with
                    FoldBatchNorm = true
                }
                trained

        for ctx in [ ForwardContext.Eval; ForwardContext.Train(Rng.create 3) ] do
            let a = Model.forward ctx trained x
            let b = Model.forward ctx q x
            assertClose (sprintf "%s logits (training %b)" m.Architecture.Name ctx.Training) 1e-3 1e-3 a.Logits b.Logits

            for n in a.Buffers.Names do
                assertClose n 1e-4 1e-4 a.Buffers[n] b.Buffers[n]

[<Test>]
let ``quantization-aware training reduces the loss with gradients reaching weights and scales`` () =
    let m = convNet 21 2 |> Model.quantize (QuantConfig.Mint 4)
    let x = images 22 8

    let labels =
        Tensor.ofArray [| 8 |] [| 0.0f; 1.0f; 2.0f; 3.0f; 4.0f; 5.0f; 6.0f; 7.0f |]

    let ctx = ForwardContext.Train(Rng.create 5)

    let loss (ps: Parameters) =
        let out = Model.apply ctx m ps x
        Tensor.crossEntropy (Tensor.meanDims [| 0 |] false out.Logits) labels

    let first, g = Parameters.valueAndGrad loss m.Parameters

    for name in [ "conv2.weight"; "conv2.alpha"; "fc1.alpha"; "fc.weight"; "fc.alpha" ] do
        Assert.That((Tensor.sum (Tensor.abs g[name])).ToScalar(), Is.GreaterThan 0.0f, name)

    let cfg =
        { AdamConfig.Default with
            LearningRate = 1e-2f
        }

    let mutable ps = m.Parameters
    let mutable state = OptimizerState.Empty

    for _ in 1..15 do
        let _, g = Parameters.valueAndGrad loss ps
        let ps', state' = Optim.adam cfg state ps g
        ps <- ps'
        state <- state'

    let last = (loss ps).ToScalar()
    Assert.That(last, Is.LessThan(first.ToScalar() * 0.9f))

let private trainedIntegerModel (cfg: QuantConfig) =
    let m = convNet 31 3 |> Model.quantize cfg
    // α as MINT's non-learned variant sets it (max|tanh W|), the range a trained α reaches; the
    // LSQ-style α₀ shrinks as 1/√Q and silences the layers at 8 bits.
    let m =
        { m with
            Parameters =
                m.Parameters
                |> Parameters.map (fun n t ->
                    if n.EndsWith ".alpha" then
                        let w = m.Parameters[n.Replace(".alpha", ".weight")]
                        Tensor.max (Tensor.abs (Tensor.tanh w))
                    else
                        t)
        }

    let x = images 32 6
    // Running statistics from training passes, so the folded eval-mode weights are non-trivial.
    let mutable m = m

    for i in 1..20 do
        m <-
            { m with
                Buffers = (Model.forward (ForwardContext.Train(Rng.create i)) m x).Buffers
            }

    m, images 33 6

[<Test>]
let ``integer inference reproduces the fake-quantized spikes exactly with the uniform membrane scheme`` () =
    for bits in [ 3; 4; 8 ] do
        let m, x = trainedIntegerModel (QuantConfig.Integer bits)
        let exported = IntegerExport.export m

        let probes =
            { ProbeRequest.None with
                Spikes = set [ "lif2"; "lif_fc1" ]
                Membranes = set [ "lif2" ]
            }

        let out, ran = IntegerExport.run exported probes m x

        let reference =
            Model.forward
                { ForwardContext.Eval with
                    Probes = probes
                }
                m
                x

        same (sprintf "%d bits" bits) [| "conv2"; "fc1" |] (Array.ofList ran)

        for n in [ "lif2"; "lif_fc1" ] do
            same (sprintf "%s, %d bits" n bits) (reference.Spikes[n].ToArray()) (out.Spikes[n].ToArray())

        for n in [ "lif2"; "lif_fc1" ] do
            Assert.That(
                (Tensor.sum reference.Spikes[n]).ToScalar(),
                Is.GreaterThan 0.0f,
                sprintf "spikes of %s at %d bits" n bits
            )

        same "H of lif2" (reference.Membranes["lif2"].ToArray()) (out.Membranes["lif2"].ToArray())
        assertClose "logits" 1e-5 1e-5 reference.Logits out.Logits
        Assert.That(IntegerExport.agreement exported m x, Is.EqualTo 1.0)

[<Test>]
let ``integer inference with MINT's tanh dropped agrees within the documented tolerance`` () =
    let m, x = trainedIntegerModel (QuantConfig.Mint 4)
    let exported = IntegerExport.export m
    let _, ran = IntegerExport.run exported ProbeRequest.None m x
    same "integer layers" [| "conv2"; "fc1" |] (Array.ofList ran)
    let a = IntegerExport.agreement exported m x
    TestContext.Out.WriteLine(sprintf "MINT-scheme spike agreement: %.4f" a)
    Assert.That(a, Is.GreaterThanOrEqualTo 0.98)

[<Test>]
let ``the export holds integer codes, thresholds, shifts and scales per layer`` () =
    let m, _ = trainedIntegerModel (QuantConfig.Integer 4)
    let e = IntegerExport.export m
    same "layers" [| "conv2"; "fc1"; "fc" |] (e.Layers |> List.map (fun l -> l.Name) |> Array.ofList)
    let conv2 = e.Layer "conv2"
    same "shape" m.Parameters["conv2.weight"].Shape conv2.Shape
    Assert.That(conv2.Weights.Length, Is.EqualTo(Array.reduce (*) conv2.Shape))
    Assert.That(conv2.Weights |> Array.forall (fun c -> abs c <= 7))
    Assert.That(conv2.Bias.IsSome && conv2.FoldedNorm = Some "bn2")
    same "int8" conv2.Weights (conv2.WeightsInt8() |> Array.map int)
    let n = conv2.Neuron.Value
    Assert.That(n.LeakShift, Is.EqualTo 1)
    Assert.That(float n.Threshold, Is.EqualTo(Math.Ceiling(float n.ThresholdUnits)).Within 1.0)
    Assert.That(n.ThresholdUnits, Is.EqualTo(0.25f * 7.0f / conv2.Alpha).Within 1e-3f)
    Assert.That((e.Layer "fc").Neuron, Is.EqualTo None)

    // value = step·code: dequantizing the codes gives the fake-quantized folded weight.
    let w', _ =
        FoldedBatchNorm.foldEval
            BatchNormConfig.Default
            m.Parameters["conv2.weight"]
            None
            m.Parameters["bn2.weight"]
            m.Parameters["bn2.bias"]
            {
                Mean = m.Buffers["bn2.running_mean"]
                Var = m.Buffers["bn2.running_var"]
            }

    let q = Quantizer.mint (Bits.Fixed 4) m.Parameters["conv2.alpha"] w'
    same "dequantized" (q.ToArray()) (conv2.Weights |> Array.map (fun c -> conv2.Step * float32 c))

[<Test>]
let ``integer units: threshold, leak shift and rounding shift`` () =
    let mq =
        {
            Bits = Bits.Fixed 4
            Alpha = Tensor.scalar 0.3f
            Scheme = MembraneScheme.Uniform
        }

    Assert.That(Neuron.thresholdUnits Neuron.mint mq, Is.EqualTo(0.5f * 7.0f / 0.3f).Within 1e-4f)
    Assert.That(Neuron.integerThreshold Neuron.mint mq, Is.EqualTo 12)
    Assert.That(Neuron.leakShift Neuron.mint, Is.EqualTo 1)

    Assert.That(
        Neuron.leakShift
            { Neuron.mint with
                Dynamics = Dynamics.Mint 0.25f
            },
        Is.EqualTo 2
    )

    Assert.That(Neuron.leakShift Neuron.ifNeuron, Is.EqualTo 0)

    for k in 0..4 do
        for x in -40 .. 40 do
            let expected = int (Math.Round(float x / float (1 <<< k), MidpointRounding.ToEven))
            Assert.That(Neuron.shiftRound k x, Is.EqualTo expected, sprintf "%d >> %d" x k)

[<Test>]
let ``runWith routes full precision to the fused kernel and fixed bits to the reference`` () =
    let x = randn 3 [| 4; 5; 6 |]
    let v0 = Tensor.zeros [| 5; 6 |]
    let fused = Neuron.run Neuron.mint v0 x

    let viaFp =
        Neuron.runWith
            (Some
                {
                    Bits = Bits.FullPrecision
                    Alpha = Tensor.scalar 1.0f
                    Scheme = MembraneScheme.Mint
                })
            Neuron.mint
            v0
            x

    same "S" (fused.S.ToArray()) (viaFp.S.ToArray())
    same "H" (fused.H.ToArray()) (viaFp.H.ToArray())

    let mq =
        {
            Bits = Bits.Fixed 4
            Alpha = Tensor.scalar 0.5f
            Scheme = MembraneScheme.Mint
        }

    let quant = Neuron.runWith (Some mq) Neuron.mint v0 x
    let reference = Neuron.runQuantized Neuron.mint mq v0 x
    same "V_T" (reference.VFinal.ToArray()) (quant.VFinal.ToArray())

[<Test>]
let ``membrane scale gradient matches finite differences away from rounding boundaries`` () =
    let x = randn 8 [| 3; 6 |] * 0.2f

    let f (ts: Tensor[]) =
        let mq =
            {
                Bits = Bits.Fixed 4
                Alpha = ts[0]
                Scheme = MembraneScheme.Uniform
            }

        Tensor.sum ((Neuron.stepQuantized Neuron.ifNeuron mq (Tensor.zeros [| 3; 6 |]) ts[1]).V)

    // STE: d/dα Σ s·round(x/s) = Σ (round(x/s) − x/s)/Q inside the range, rescaled by 1/√(N·Q).
    let alpha = Tensor.scalar 0.8f
    let _, g = Diff.valueAndGradN f [| alpha; x |]
    let s = 0.8f / 7.0f
    let xs = x.ToArray()

    let expected =
        xs
        |> Array.sumBy (fun v -> (MathF.Round(v / s) - v / s) / 7.0f)
        |> fun d -> d / MathF.Sqrt(18.0f * 7.0f)

    Assert.That(g[0].ToScalar(), Is.EqualTo(expected).Within 1e-4f)
    Assert.That(g[1].ToArray() |> Array.forall (fun v -> MathF.Abs(v - 1.0f) < 1e-5f))

[<Test>]
let ``bad input raises errors naming the layer, the value and what is allowed`` () =
    let m = convNet 1 2

    for bits in [ 0; 17 ] do
        assertRaises<SnnSpecException> [ "Weight bits"; string bits; "1…16" ] (fun () ->
            box (
                Model.quantize
                    { QuantConfig.Mint 4 with
                        Weight = Bits.Fixed bits
                    }
                    m
            ))

        assertRaises<SnnSpecException> [ "conv2 membrane bits"; string bits; "1…16" ] (fun () ->
            box (
                Model.quantize
                    { QuantConfig.Mint 4 with
                        PerLayer =
                            Map.ofList
                                [
                                    "conv2",
                                    {
                                        Weight = Bits.Fixed 4
                                        Bias = Bits.Fixed 4
                                        Membrane = Bits.Fixed bits
                                    }
                                ]
                    }
                    m
            ))

    assertRaises<SnnSpecException> [ "PerLayer layer"; "conv9"; "conv2"; "lif_fc1" ] (fun () ->
        box (
            Model.quantize
                { QuantConfig.Mint 4 with
                    PerLayer =
                        Map.ofList
                            [
                                "conv9",
                                {
                                    Weight = Bits.Fixed 4
                                    Bias = Bits.Fixed 4
                                    Membrane = Bits.Fixed 4
                                }
                            ]
                }
                m
        ))

    assertRaises<SnnSpecException> [ "FullPrecisionLayers layer"; "lif7" ] (fun () ->
        box (
            Model.quantize
                { QuantConfig.Mint 4 with
                    FullPrecisionLayers = set [ "lif7" ]
                }
                m
        ))

    assertRaises<SnnSpecException> [ "already carries" ] (fun () ->
        box (Model.quantize (QuantConfig.Mint 4) (Model.quantize (QuantConfig.Mint 4) m)))

    assertRaises<SnnSpecException> [ "conv1 weight bits"; "FullPrecision"; "quantized model" ] (fun () ->
        box (IntegerExport.export m))

    assertRaises<SnnSpecException> [ "conv1 weight bits"; "FullPrecision" ] (fun () ->
        box (IntegerExport.export (Model.quantize QuantConfig.FullPrecision m)))

    for bad in [ 0.0f; -0.5f; Single.NaN; Single.PositiveInfinity ] do
        let mq =
            {
                Bits = Bits.Fixed 4
                Alpha = Tensor.scalar bad
                Scheme = MembraneScheme.Uniform
            }

        assertRaises<SnnSpecException> [ "scale"; "positive, finite" ] (fun () ->
            box (Neuron.stepQuantized Neuron.mint mq (Tensor.zeros [| 2 |]) (Tensor.ones [| 2 |])))

    for bits in [ 0; 17 ] do
        let mq =
            {
                Bits = Bits.Fixed bits
                Alpha = Tensor.scalar 1.0f
                Scheme = MembraneScheme.Mint
            }

        assertRaises<SnnSpecException> [ "bits"; string bits; "1…16" ] (fun () ->
            box (Neuron.runQuantized Neuron.mint mq (Tensor.zeros [| 2 |]) (Tensor.ones [| 3; 2 |])))

    assertRaises<SnnSpecException> [ "lambda"; "2^−k" ] (fun () ->
        box (
            Neuron.leakShift
                { Neuron.mint with
                    Dynamics = Dynamics.Mint 0.3f
                }
        ))

    let wide, _ = trainedIntegerModel (QuantConfig.Integer 12)

    assertRaises<SnnSpecException> [ "conv2 bits"; "12"; "≤ 8" ] (fun () ->
        box ((IntegerExport.export wide).Layer("conv2").WeightsInt8()))

/// Quantization-aware training with the distillation losses: an FP teacher at T = 4 supervises its
/// 4-bit twin at T = 2 through temporal-wise KD and membrane KD (prefix alignment) on every
/// population the two share; gradients reach the student's weights and scales and never the teacher.
[<Test>]
let ``quantization-aware training works with temporal-wise and membrane distillation`` () =
    let teacher = convNet 41 4
    let student = convNet 41 2 |> Model.quantize (QuantConfig.Mint 4)
    let x = images 42 8
    let labels = [| 0; 1; 2; 3; 4; 5; 6; 7 |]
    let probes = Probes.convWise teacher.Architecture

    let request =
        { ProbeRequest.None with
            Membranes = Set.ofList probes
        }

    let ctx =
        { ForwardContext.Train(Rng.create 6) with
            Probes = request
        }

    let terms =
        [
            SnnSpec.Distillation.LossTerm.temporal SnnSpec.Distillation.TemporalKd.defaults
            SnnSpec.Distillation.LossTerm.membrane SnnSpec.Distillation.Alignment.Prefix probes 1.0f
        ]

    let loss (teacherPs: Parameters) (ps: Parameters) =
        let t = Model.apply ctx teacher teacherPs x
        let s = Model.apply ctx student ps x

        SnnSpec.Distillation.LossTerm.total
            terms
            (SnnSpec.Distillation.KdOutputs.ofForward t)
            (SnnSpec.Distillation.KdOutputs.ofForward s)
            labels

    let first, g = Parameters.valueAndGrad (loss teacher.Parameters) student.Parameters

    for name in [ "conv2.weight"; "conv2.alpha"; "fc.alpha" ] do
        Assert.That((Tensor.sum (Tensor.abs g[name])).ToScalar(), Is.GreaterThan 0.0f, name)

    // The teacher's parameters receive no gradient through any term.
    let gTeacher =
        Parameters.grad (fun tps -> loss tps student.Parameters) teacher.Parameters

    for name in gTeacher.Names do
        Assert.That((Tensor.sum (Tensor.abs gTeacher[name])).ToScalar(), Is.EqualTo 0.0f, name)

    let cfg =
        { AdamConfig.Default with
            LearningRate = 1e-2f
        }

    let mutable ps = student.Parameters
    let mutable state = OptimizerState.Empty

    for _ in 1..15 do
        let _, g = Parameters.valueAndGrad (loss teacher.Parameters) ps
        let ps', state' = Optim.adam cfg state ps g
        ps <- ps'
        state <- state'

    Assert.That((loss teacher.Parameters ps).ToScalar(), Is.LessThan(first.ToScalar() * 0.9f))

[<Test>]
let ``calibrating scales sets each alpha from the tensor its quantizer sees, folded weights included`` () =
    let cfg =
        { ZooConfig.Mnist with
            InputSize = 8
            Width = 0.5f
        }

    let m =
        Model.init 3 (ExecutionMode.Snn 2) (Zoo.convNet cfg)
        |> Model.quantize (QuantConfig.Mint 4)

    let x = images 4 16
    let c = Model.calibrateScales x m

    let seen =
        Forward.quantizerInputs m.Architecture m.Mode (ForwardContext.Train(Rng.create 0)) m.Parameters m.Buffers x

    let plan = Model.quantPlan m
    Assert.That(seen.Count, Is.GreaterThan 0)

    for KeyValue(layer, w) in seen do
        let expected = Quantizer.mintInitAlpha 4 w
        Assert.That(c.Parameters[layer + ".alpha"].ToScalar(), Is.EqualTo(expected.ToScalar()), layer)

        match plan.Weights[layer].FoldedNorm with
        | Some _ ->
            // The folded weight W·γ/σ_B, not W itself.
            Assert.That((w = Diff.detach m.Parameters[layer + ".weight"]), Is.False, layer)
        | None -> Assert.That(w, Eq.To m.Parameters[layer + ".weight"], layer)

    // The population fed by the folded conv fires on the calibration batch in training mode (the
    // fully connected lif_fc1 is silent at initialisation in the full-precision model too).
    let ctx =
        { ForwardContext.Train(Rng.create 1) with
            Probes =
                { ProbeRequest.None with
                    FiringRates = true
                }
        }

    let rates = (Model.forward ctx c x).FiringRates
    Assert.That(rates["lif2"], Is.GreaterThan 0.0f)

    assertRaises<SnnSpecException> [ "calibrateScales"; "Model.quantize" ] (fun () ->
        box (Model.calibrateScales x (Model.init 3 (ExecutionMode.Snn 2) (Zoo.convNet cfg))))

[<Test>]
let ``the integer datapath (IntegerExport.runFrom) carries its states across chunks: two chunks give the whole run's spikes``
    ()
    =
    let m, x = trainedIntegerModel (QuantConfig.Integer 4)
    let exported = IntegerExport.export m

    let names = Architecture.spikingNames m.Architecture

    let probes =
        { ProbeRequest.None with
            Spikes = Set.ofList names
        }

    let run (states: Map<string, Tensor> option) (steps: int) =
        let chunk = Model.withSteps steps m

        match states with
        | None -> IntegerExport.run exported probes chunk x
        | Some s -> IntegerExport.runFrom exported probes s chunk x

    let whole, ran = run None 3
    let first, ranFirst = run (Some Map.empty) 2
    let second, ranSecond = run (Some first.FinalStates) 1
    Assert.That(ran, Is.Not.Empty, "no pair ran in integers")
    Assert.That(ranFirst, Eq.To ran)
    Assert.That(ranSecond, Eq.To ran)

    for n in names do
        Assert.That((Tensor.cat 0 [ first.Spikes[n]; second.Spikes[n] ]).ToArray(), Eq.To(whole.Spikes[n].ToArray()), n)

    assertClose "logits" 1e-5 1e-5 whole.Logits (Tensor.cat 0 [ first.Logits; second.Logits ])
    // From rest instead, the second chunk differs: the carried state mattered.
    let fromRest, _ = run (Some Map.empty) 1

    Assert.That(
        names
        |> List.exists (fun n -> fromRest.Spikes[n].ToArray() <> second.Spikes[n].ToArray()),
        "the carried integer state changed nothing"
    )

let private integerStreamModel = lazy (trainedIntegerModel (QuantConfig.Integer 4))

[<Property(MaxTest = 12)>]
let ``an integer stream (IntegerExport.stepStream) in any chunking gives the spikes and logits of one integer run over the sequence``
    (seed: int)
    =
    let m, x = integerStreamModel.Force()
    let exported = IntegerExport.export m
    let names = Architecture.spikingNames m.Architecture

    let probes =
        { ProbeRequest.None with
            Spikes = Set.ofList names
        }

    // A 5-step sequence whose frames differ, cut into chunks of seed-chosen lengths.
    let steps = 5

    let sequence =
        Tensor.stack 0 [ for t in 0 .. steps - 1 -> x * (0.5f + 0.35f * float32 ((seed + t) % 4)) ]

    let cuts =
        let rec go start k acc =
            if start >= steps then
                List.rev acc
            else
                let len = min (steps - start) (1 + abs (seed / (k + 1)) % 3)
                go (start + len) (k + 1) ((start, len) :: acc)

        go 0 0 []

    Diff.noGrad (fun () ->
        let whole, ranWhole =
            IntegerExport.run exported probes (Model.withSteps steps m) sequence

        let chunks, last =
            cuts
            |> List.mapFold
                (fun state (start, len) ->
                    let o, next, ran =
                        IntegerExport.stepStream exported probes m state (Tensor.narrow 0 start len sequence)

                    (o, ran), next)
                StreamState.Start

        let outs = List.map fst chunks
        Assert.That(last.Steps, Is.EqualTo steps)

        for _, ran in chunks do
            Assert.That(ran, Eq.To ranWhole)

        for n in names do
            let streamed = Tensor.cat 0 [ for o in outs -> o.Spikes[n] ]
            Assert.That(streamed.ToArray(), Eq.To(whole.Spikes[n].ToArray()), sprintf "%s, chunks %A" n cuts)

        assertClose "logits" 1e-5 1e-5 whole.Logits (Tensor.cat 0 [ for o in outs -> o.Logits ]))

[<Test>]
let ``an integer run records the same firing rates as the float run, pooled rates included`` () =
    let m, x = integerStreamModel.Force()
    let exported = IntegerExport.export m

    let probes =
        { ProbeRequest.None with
            FiringRates = true
        }

    let integer, ran = IntegerExport.run exported probes m x

    let float =
        Model.forward
            { ForwardContext.Eval with
                Probes = probes
            }
            m
            x

    Assert.That(ran, Is.Not.Empty)
    Assert.That(integer.FiringRates.Keys, Is.EquivalentTo float.FiringRates.Keys)
    Assert.That(integer.FiringRates.Keys |> Seq.filter RateKey.isMaxPooled, Is.Not.Empty)
    // Uniform membranes: the integer pairs fire exactly as the float model.
    for KeyValue(k, v) in float.FiringRates do
        Assert.That(integer.FiringRates[k], Is.EqualTo v, k)

[<Test>]
let ``an integer stream rejects the ANN twin and a chunk without a time axis, naming stepStream`` () =
    let m, x = integerStreamModel.Force()
    let exported = IntegerExport.export m

    assertRaises<SnnSpecException> [ "IntegerExport.stepStream"; "ANN" ] (fun () ->
        box (IntegerExport.stepStream exported ProbeRequest.None (Model.asAnn m) StreamState.Start x))

    assertRaises<SnnSpecException> [ "IntegerExport.stepStream"; "[t, B" ] (fun () ->
        box (IntegerExport.stepStream exported ProbeRequest.None m StreamState.Start x))
