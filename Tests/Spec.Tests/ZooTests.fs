module SnnSpec.Tests.ZooTests

open NUnit.Framework
open SnnSpec
open SnnSpec.Tests.TestUtil

let cifar =
    { ZooConfig.Cifar10 with
        Width = 0.125f
    }

let mnist = { ZooConfig.Mnist with Width = 0.125f }

/// Every zoo model at a small width, on 28×28 or 32×32 inputs.
let model (name: string) =
    match name with
    | "mlp" -> Zoo.mlp mnist [ 256; 128 ]
    | "convNet" -> Zoo.convNet mnist
    | "vgg9" -> Zoo.vgg9 cifar
    | "vgg9-28" -> Zoo.vgg9 mnist
    | "vgg11" -> Zoo.vgg11 mnist
    | "resnet18" -> Zoo.resnet18 cifar
    | "resnet18-encode" -> Zoo.resnet18 { cifar with EncodeFirstConv = true }
    | "resnet19" -> Zoo.resnet19 mnist
    | "msResnet18" -> Zoo.msResnet18 cifar
    | "sewAdd" -> Zoo.sewResnet18 mnist ResidualKind.SewAdd
    | "sewIAnd" -> Zoo.sewResnet18 cifar ResidualKind.SewIAnd
    | other -> failwithf "unknown model %s" other

let residualModels = [ "resnet18"; "resnet19"; "msResnet18"; "sewAdd"; "sewIAnd" ]

let input (arch: Architecture) (batch: int) =
    randn 5 (Array.append [| batch |] arch.InputShape)

[<TestCase("mlp")>]
[<TestCase("convNet")>]
[<TestCase("vgg9")>]
[<TestCase("vgg9-28")>]
[<TestCase("vgg11")>]
[<TestCase("resnet18")>]
[<TestCase("resnet18-encode")>]
[<TestCase("resnet19")>]
[<TestCase("msResnet18")>]
[<TestCase("sewAdd")>]
[<TestCase("sewIAnd")>]
let ``every model runs as an SNN and as its ANN twin`` (name: string) =
    let arch = model name
    let m = Model.init 1 (ExecutionMode.Snn 2) arch
    let x = input arch 2
    let snn = Model.forward ForwardContext.Eval m x
    Assert.That(snn.Logits.Shape, Eq.To [| 2; 2; 10 |])
    let ann = Model.forward ForwardContext.Eval (Model.asAnn m) x
    Assert.That(ann.Logits.Shape, Eq.To [| 1; 2; 10 |])
    // Training mode runs too (BN batch statistics, dropout) and updates running statistics.
    let train = Model.forward (ForwardContext.Train(Rng.create 2)) m x
    Assert.That(train.Logits.Shape, Eq.To [| 2; 2; 10 |])
    Assert.That(train.Buffers.Names, Eq.To m.Buffers.Names)

[<Test>]
let ``parameter counts at width 1 match hand-derived totals`` () =
    let count arch =
        Model.parameterCount (Model.init 0 ExecutionMode.Ann arch)
    // CIFAR ResNet-18: stem 1,728 + 128; layer1 147,968; layer2 525,568; layer3 2,099,712;
    // layer4 8,393,728; fc 5,130. The LIF populations have no parameters.
    Assert.That(count (Zoo.resnet18 ZooConfig.Cifar10), Eq.To 11_173_962L)
    // The same convolutions and norms, arranged differently.
    Assert.That(count (Zoo.msResnet18 ZooConfig.Cifar10), Eq.To 11_173_962L)
    Assert.That(count (Zoo.sewResnet18 ZooConfig.Cifar10 ResidualKind.SewAdd), Eq.To 11_173_962L)
    // Stem 3,456 + 256; layer1 3 × 295,424; layer2 919,040 + 2 × 1,180,672;
    // layer3 3,673,088 + 4,720,640; fc1 131,328; fc 2,570.
    Assert.That(count (Zoo.resnet19 ZooConfig.Cifar10), Eq.To 12_697_994L)
    // Convs 1,734,336 + norms 2,304 + fc 2,570.
    Assert.That(count (Zoo.vgg9 ZooConfig.Cifar10), Eq.To 1_739_210L)
    // Convs 9,217,728 + norms 5,504 + fc 5,130.
    Assert.That(count (Zoo.vgg11 ZooConfig.Cifar10), Eq.To 9_228_362L)
    // 784·256 + 256 + 256·128 + 128 + 128·10 + 10.
    Assert.That(count (Zoo.mlp ZooConfig.Mnist [ 256; 128 ]), Eq.To 235_146L)
    // Convs 288 + 18,432, norms 64 + 128, fc1 3,136·128 + 128, fc 1,290.
    Assert.That(count (Zoo.convNet ZooConfig.Mnist), Eq.To 421_738L)

[<Test>]
let ``the width multiplier scales every channel count but not inputs or classes`` () =
    let full = Zoo.resnet18 ZooConfig.Cifar10

    let quarter = Zoo.resnet18 { ZooConfig.Cifar10 with Width = 0.25f }

    let small = Map.ofList (Architecture.layers quarter)

    let scaled c =
        max 1 (int (System.Math.Round(float c * 0.25)))

    let mutable checkedLayers = 0

    for name, layer in Architecture.layers full do
        match layer, small[name] with
        | Conv2d(_, i, o, _, _, _, _), Conv2d(_, i', o', _, _, _, _) ->
            Assert.That(o', Eq.To(scaled o), name)
            Assert.That(o', Is.LessThan o, name)
            Assert.That(i', Eq.To(if name = "conv1" then 3 else scaled i), name)
            checkedLayers <- checkedLayers + 1
        | Norm(_, c, _), Norm(_, c', _) ->
            Assert.That(c', Eq.To(scaled c), name)
            checkedLayers <- checkedLayers + 1
        | Linear(_, i, o, _), Linear(_, i', o', _) ->
            Assert.That(i', Eq.To(scaled i), name)
            Assert.That(o', Eq.To o, name)
            checkedLayers <- checkedLayers + 1
        | _ -> ()

    Assert.That(checkedLayers, Is.GreaterThan 40)
    Assert.That(Zoo.channels { ZooConfig.Mnist with Width = 0.001f } 64, Eq.To 1)

[<Test>]
let ``hidden layers of the fully connected models scale with the width`` () =
    let layers arch =
        Architecture.layers arch
        |> List.choose (fun (_, l) ->
            match l with
            | Linear(n, i, o, _) -> Some(n, i, o)
            | _ -> None)

    Assert.That(
        layers (Zoo.mlp { ZooConfig.Mnist with Width = 0.5f } [ 256; 100 ]),
        Eq.To [ "fc1", 784, 128; "fc2", 128, 50; "fc", 50, 10 ]
    )

    Assert.That(
        layers (Zoo.resnet19 { ZooConfig.Cifar100 with Width = 0.5f }),
        Eq.To [ "fc1", 256, 128; "fc", 128, 100 ]
    )

[<Test>]
let ``parameter names follow the stage-block-layer pattern`` () =
    let m = Model.init 0 ExecutionMode.Ann (model "resnet18")
    let names = set m.Parameters.Names

    for n in
        [
            "conv1.weight"
            "bn1.weight"
            "layer1.0.conv1.weight"
            "layer1.1.bn2.bias"
            "layer2.0.downsample_conv.weight"
            "layer4.1.conv2.weight"
            "fc.weight"
            "fc.bias"
        ] do
        Assert.That(names.Contains n, Is.True, n)

    Assert.That(names.Contains "layer1.0.downsample_conv.weight", Is.False)
    Assert.That(set m.Buffers.Names |> Set.contains "layer3.0.downsample_bn.running_var", Is.True)

[<Test>]
let ``the same seed gives the same parameters`` () =
    let arch = model "msResnet18"
    let a = Model.init 11 (ExecutionMode.Snn 2) arch
    let b = Model.init 11 (ExecutionMode.Snn 2) arch
    let c = Model.init 12 (ExecutionMode.Snn 2) arch
    Assert.That(a.Parameters.Names, Eq.To b.Parameters.Names)

    for n in a.Parameters.Names do
        Assert.That(a.Parameters[n], Eq.To b.Parameters[n], n)

    Assert.That(a.Parameters["layer2.0.conv1.weight"] = c.Parameters["layer2.0.conv1.weight"], Is.False)

[<Test>]
let ``encoding through the first conv equals repeating the image in eval mode`` () =
    // Eval-mode BN is per-element affine, so conv-BN commutes with repetition over time.
    let plain = Model.init 3 (ExecutionMode.Snn 2) (model "resnet18")

    let encoded =
        { plain with
            Architecture = model "resnet18-encode"
        }

    let x = input plain.Architecture 2
    let a = Model.forward ForwardContext.Eval plain x
    let b = Model.forward ForwardContext.Eval encoded x
    assertClose "logits" 1e-5 1e-5 a.Logits b.Logits

    Assert.That(
        (model "resnet18-encode").Layers
        |> List.findIndex (fun l ->
            match l with
            | RepeatOverTime -> true
            | _ -> false),
        Eq.To 2
    )

[<Test>]
let ``probe granularities nest for every residual model`` () =
    for name in residualModels do
        let arch = model name
        let all = set (Architecture.spikingNames arch)
        let conv = Probes.convWise arch
        let block = Probes.blockWise arch
        let stage = Probes.stageWise arch
        Assert.That(conv.Length, Is.GreaterThanOrEqualTo block.Length, name)
        Assert.That(block.Length, Is.GreaterThanOrEqualTo stage.Length, name)
        Assert.That(stage.Length, Is.GreaterThan 0, name)

        for n in conv @ block @ stage do
            Assert.That(all.Contains n, Is.True, sprintf "%s: %s" name n)

        Assert.That(List.distinct block, Eq.To block, name)
        // Stage outputs are block outputs.
        Assert.That(Set.isSubset (set stage) (set block), Is.True, name)

[<Test>]
let ``block- and stage-wise probes pick the population consuming each output`` () =
    let r18 = model "resnet18"

    let afterSum =
        [
            for s in 1..4 do
                for b in 0..1 -> sprintf "layer%d.%d.lif2" s b
        ]

    Assert.That(Probes.blockWise r18, Eq.To afterSum)
    Assert.That(Probes.stageWise r18, Eq.To [ for s in 1..4 -> sprintf "layer%d.1.lif2" s ])
    // Membrane shortcuts: a block's output first meets the next block's opening LIF, and the last
    // block's the final LIF.
    let ms = model "msResnet18"

    Assert.That(
        Probes.blockWise ms,
        Eq.To
            [
                "layer1.1.lif1"
                "layer2.0.lif1"
                "layer2.1.lif1"
                "layer3.0.lif1"
                "layer3.1.lif1"
                "layer4.0.lif1"
                "layer4.1.lif1"
                "lif_out"
            ]
    )

    Assert.That(Probes.stageWise ms, Eq.To [ "layer2.0.lif1"; "layer3.0.lif1"; "layer4.0.lif1"; "lif_out" ])
    // SEW: no population follows the last block, so its own last LIF stands in.
    Assert.That(List.last (Probes.blockWise (model "sewAdd")), Eq.To "layer4.1.lif2")

    Assert.That(
        Probes.stageWise (model "resnet19"),
        Eq.To [ for s in 1..3 -> sprintf "layer%d.%d.lif2" s (if s = 3 then 1 else 2) ]
    )

[<Test>]
let ``plain models probe every population block-wise and the last before each pool stage-wise`` () =
    let vgg = model "vgg9"
    Assert.That(Probes.blockWise vgg, Eq.To(Probes.convWise vgg))
    Assert.That(Probes.stageWise vgg, Eq.To [ "lif2"; "lif4"; "lif7" ])
    Assert.That(Probes.stageWise (model "convNet"), Eq.To [ "lif1"; "lif2" ])
    Assert.That(Probes.stageWise (model "vgg11"), Eq.To [ "lif1"; "lif2"; "lif4"; "lif6"; "lif8" ])
    let mlp = model "mlp"
    Assert.That(Probes.convWise mlp, Eq.To [ "lif1"; "lif2" ])
    Assert.That(Probes.stageWise mlp, Eq.To(Probes.convWise mlp))

[<Test>]
let ``recorded membranes have shape T by B by the population's shape`` () =
    for name in [ "resnet18"; "msResnet18"; "vgg9" ] do
        let arch = model name
        let m = Model.init 1 (ExecutionMode.Snn 2) arch

        let ctx =
            { ForwardContext.Eval with
                Probes = Probes.request ProbeGranularity.BlockWise arch |> Probes.withFeatures
            }

        let out = Model.forward ctx m (input arch 3)
        let names = Probes.blockWise arch
        Assert.That(out.Membranes.Keys |> List.ofSeq |> List.sort, Eq.To(List.sort names), name)

        for KeyValue(n, h) in out.Membranes do
            Assert.That(h.Shape[0..1], Eq.To [| 2; 3 |], n)
            Assert.That(h.Rank, Is.GreaterThanOrEqualTo 3, n)

        Assert.That(out.Taps[Probes.features].Shape[0..1], Eq.To [| 2; 3 |], name)

    let stageReq = Probes.request ProbeGranularity.StageWise (model "resnet18")

    Assert.That(stageReq.Membranes, Eq.To(set (Probes.stageWise (model "resnet18"))))
    Assert.That(stageReq.Taps.IsEmpty, Is.True)

let rec private spikingToRelu (layers: LayerSpec list) =
    layers
    |> List.map (fun l ->
        match l with
        | Spiking(n, _) -> Relu n
        | Residual(n, k, main, sc, after) -> Residual(n, k, spikingToRelu main, spikingToRelu sc, spikingToRelu after)
        | Stage(n, ls) -> Stage(n, spikingToRelu ls)
        | other -> other)

[<Test>]
let ``the ANN twin of every model is deterministic and its populations act as ReLU`` () =
    for name in [ "mlp"; "convNet"; "vgg9"; "resnet19"; "msResnet18"; "sewAdd"; "sewIAnd" ] do
        let arch = model name
        let m = Model.init 4 ExecutionMode.Ann arch
        let x = input arch 2

        let ctx =
            { ForwardContext.Eval with
                Probes = Probes.request ProbeGranularity.ConvWise arch
            }

        let a = Model.forward ctx m x
        let b = Model.forward ctx m x
        Assert.That(a.Logits, Eq.To b.Logits, name)
        Assert.That(a.Membranes.IsEmpty, Is.True, name)
        Assert.That(Architecture.spikingNames arch, Is.Not.Empty, name)

        let relu =
            { m with
                Architecture =
                    { arch with
                        Layers = spikingToRelu arch.Layers
                    }
            }

        let c = Model.forward ForwardContext.Eval relu x
        Assert.That(a.Logits, Eq.To c.Logits, name)

/// Puts a tap at the start of each of layer1's first two blocks and after block 0's bn2.
let rec private tapped (prefix: string) (layers: LayerSpec list) =
    layers
    |> List.map (fun l ->
        match l with
        | Stage("layer1", ls) -> Stage("layer1", tapped "layer1" ls)
        | Residual(n, k, main, sc, after) when prefix = "layer1" && (n = "0" || n = "1") ->
            let main' = Tap "entry" :: main @ (if n = "0" then [ Tap "branch" ] else [])

            Residual(n, k, main', sc, after)
        | other -> other)

[<Test>]
let ``MS-ResNet's shortcut adds pre-spike values`` () =
    // With IF neurons the first step's membrane is exactly the input current.
    let cfg = { cifar with Neuron = Neuron.ifNeuron }

    let arch = Zoo.msResnet18 cfg
    let m = Model.init 6 (ExecutionMode.Snn 2) arch

    let probe =
        { m with
            Architecture =
                { arch with
                    Layers = tapped "" arch.Layers
                }
        }

    let ctx =
        { ForwardContext.Eval with
            Probes =
                { ProbeRequest.None with
                    Taps = set [ "layer1.0.entry"; "layer1.0.branch"; "layer1.1.entry" ]
                    Membranes = set [ "layer1.1.lif1" ]
                }
        }

    let out = Model.forward ctx probe (input arch 2)
    let x0 = out.Taps["layer1.0.entry"]
    let f0 = out.Taps["layer1.0.branch"]
    let x1 = out.Taps["layer1.1.entry"]
    assertClose "block input + BN output" 1e-6 1e-6 (x0 + f0) x1
    // The values are analog, not spikes: the stem's BN output enters the first block unspiked.
    let values = x1.ToArray()
    Assert.That(values |> Array.exists (fun v -> v <> 0.0f && v <> 1.0f), Is.True)
    let h = out.Membranes["layer1.1.lif1"]
    assertClose "first-step membrane" 1e-6 1e-6 (Tensor.select 0 0 x1) (Tensor.select 0 0 h)
    // Unprobed, the model computes the same logits.
    let plain = Model.forward ForwardContext.Eval m (input arch 2)
    Assert.That(out.Logits, Eq.To plain.Logits)

[<Test>]
let ``bad configurations name the parameter`` () =
    let raises fragments (f: unit -> Architecture) =
        assertRaises<SnnSpecException> fragments (fun () -> box (f ()))

    raises [ "Width" ] (fun () -> Zoo.resnet18 { cifar with Width = 0.0f })
    raises [ "Width" ] (fun () -> Zoo.mlp { mnist with Width = -1.0f } [ 10 ])
    raises [ "Width" ] (fun () -> Zoo.vgg9 { cifar with Width = nanf })
    raises [ "InputSize"; "at least 8" ] (fun () -> Zoo.vgg9 { cifar with InputSize = 7 })
    raises [ "InputSize"; "at least 16" ] (fun () -> Zoo.vgg11 { cifar with InputSize = 12 })
    raises [ "InputSize" ] (fun () -> Zoo.convNet { mnist with InputSize = 3 })
    raises [ "InputSize" ] (fun () -> Zoo.msResnet18 { cifar with InputSize = 4 })
    raises [ "Classes" ] (fun () -> Zoo.resnet19 { cifar with Classes = 0 })
    raises [ "Dropout" ] (fun () -> Zoo.convNet { mnist with Dropout = 1.0f })
    raises [ "hidden" ] (fun () -> Zoo.mlp mnist [ 10; 0 ])
    raises [ "connect" ] (fun () -> Zoo.sewResnet18 cifar ResidualKind.Add)

[<Test>]
let ``dropout appears before the classifier only when requested`` () =
    let hasDropout (arch: Architecture) =
        arch.Layers
        |> List.exists (fun l ->
            match l with
            | Dropout _ -> true
            | _ -> false)

    Assert.That(hasDropout (model "convNet"), Is.False)
    let arch = Zoo.convNet { mnist with Dropout = 0.5f }
    Assert.That(hasDropout arch, Is.True)

    match arch.Layers[arch.Layers.Length - 2] with
    | Dropout p -> Assert.That(p, Eq.To 0.5f)
    | other -> Assert.Fail(sprintf "expected dropout before the classifier, got %A" other)

[<Test>]
let ``every population fires in training mode at initialisation`` () =
    // Batch statistics normalise each conv's output, so no population starts silent.
    for name in [ "resnet18"; "msResnet18"; "sewIAnd"; "vgg9" ] do
        let arch = model name
        let m = Model.init 1 (ExecutionMode.Snn 4) arch

        let ctx =
            { ForwardContext.Train(Rng.create 1) with
                Probes =
                    { ProbeRequest.None with
                        FiringRates = true
                    }
            }

        let out = Model.forward ctx m (input arch 4)

        let populations =
            out.FiringRates |> Map.filter (fun k _ -> not (RateKey.isMaxPooled k))

        Assert.That(populations.Count, Eq.To(List.length (Probes.convWise arch)), name)

        // A max-pool's output fires at least as often as the population it pools.
        for KeyValue(population, rate) in populations do
            match out.FiringRates.TryFind(RateKey.maxPooled population) with
            | Some pooled -> Assert.That(pooled, Is.GreaterThanOrEqualTo rate, sprintf "%s: %s" name population)
            | None -> ()

        for KeyValue(n, rate) in out.FiringRates do
            Assert.That(rate, Is.GreaterThan 0.0f, sprintf "%s: %s" name n)
