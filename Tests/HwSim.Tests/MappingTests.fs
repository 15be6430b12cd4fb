/// Mapping SnnSpec architectures (LayerSpec trees) onto crossbars, the mapping table, and bad input.
module SnnSpec.HwSim.Tests.MappingTests

open System
open NUnit.Framework
open SnnSpec
open SnnSpec.HwSim
open SnnSpec.HwSim.Tests.Helpers

let private sn name = Spiking(name, Neuron.lif)

/// A small VGG-like SNN: direct encoding through conv1, max and average pooling, a strided conv in
/// a stage, a classifier after Flatten.
let private smallVgg =
    {
        Name = "small-vgg"
        InputShape = [| 3; 32; 32 |]
        Classes = 10
        Layers =
            [
                Conv2d("conv1", 3, 16, 3, 1, 1, false)
                Norm("bn1", 16, NormKind.Batch)
                sn "sn1"
                Conv2d("conv2", 16, 32, 3, 1, 1, false)
                Norm("bn2", 32, NormKind.Batch)
                sn "sn2"
                MaxPool(2, 2)
                Stage(
                    "block",
                    [
                        Conv2d("conv3", 32, 64, 3, 2, 1, false)
                        Norm("bn3", 64, NormKind.Batch)
                        sn "sn3"
                        AvgPool(2, 2)
                    ]
                )
                Flatten
                Linear("fc1", 64 * 4 * 4, 100, true)
                sn "sn4"
                Dropout 0.5f
                Linear("fc2", 100, 10, true)
            ]
    }

[<Test>]
let ``a VGG-like LayerSpec tree maps with the channel and map sizes derived by walking it`` () =
    let net = Network.ofArchitecture smallVgg
    let ls = net.Layers

    Assert.That(ls |> List.map (fun l -> l.Name), Is.EqualTo(box [ "conv1"; "conv2"; "block.conv3"; "fc1"; "fc2" ]))
    Assert.That(ls |> List.map (fun l -> l.InChannels), Is.EqualTo(box [ 3; 16; 32; 1024; 100 ]))
    Assert.That(ls |> List.map (fun l -> l.OutChannels), Is.EqualTo(box [ 16; 32; 64; 100; 10 ]))
    Assert.That(ls |> List.map (fun l -> l.InHeight), Is.EqualTo(box [ 32; 32; 16; 1; 1 ]))
    Assert.That(ls |> List.map (fun l -> l.ConvHeight), Is.EqualTo(box [ 32; 32; 8; 1; 1 ]))
    Assert.That(ls |> List.map (fun l -> l.OutHeight), Is.EqualTo(box [ 32; 16; 4; 1; 1 ]))
    Assert.That(ls |> List.map (fun l -> l.Kernel), Is.EqualTo(box [ 3; 3; 3; 1; 1 ]))
    Assert.That(ls |> List.map (fun l -> l.SpikeInput), Is.EqualTo(box [ false; true; true; false; true ]))

    Assert.That(
        ls |> List.map (fun l -> l.InputSource),
        Is.EqualTo(box [ None; Some "sn1"; Some "sn2"; None; Some "sn4" ])
    )

    // block.conv3 reads sn2's spikes through a 2×2 max-pool.
    Assert.That(ls |> List.map (fun l -> l.InputPooling), Is.EqualTo(box [ []; []; [ 4 ]; []; [] ]))

    let m = Mapping.map Accelerator.spikeSim net
    // fc1: 1024 inputs = 16 row blocks of 64, packed 9 per PE → 2 PEs; 100 outputs → 2 column blocks.
    Assert.That(m.Layers |> List.map (fun l -> l.Pes), Is.EqualTo(box [ 1; 1; 1; 4; 1 ]))
    Assert.That(m.Layers |> List.map (fun l -> l.CyclesPerStep), Is.EqualTo(box [ 1024L; 256L; 16L; 4L; 1L ]))
    Assert.That(m.TotalPes, Is.EqualTo 8)
    Assert.That(m.Tiles, Is.EqualTo 1)

    // The same tree at 64×64 input: every map doubles, so fc1 would need 4096 features.
    raisesNaming [ "fc1"; "4096" ] (fun () ->
        Mapping.ofArchitectureAt Accelerator.spikeSim [| 3; 64; 64 |] smallVgg |> ignore)

[<Test>]
let ``pooling after a residual block sets the pooled map of both branches' last layers`` () =
    let arch =
        {
            Name = "res"
            InputShape = [| 8; 16; 16 |]
            Classes = 10
            Layers =
                [
                    sn "in"
                    Residual(
                        "res",
                        ResidualKind.Add,
                        [
                            Conv2d("a", 8, 16, 3, 2, 1, false)
                            Norm("bna", 16, NormKind.Batch)
                            sn "sa"
                            Conv2d("b", 16, 16, 3, 1, 1, false)
                        ],
                        [ Conv2d("sc", 8, 16, 1, 2, 0, false) ],
                        [ sn "out" ]
                    )
                    MaxPool(2, 2)
                    Flatten
                    Linear("fc", 16 * 4 * 4, 10, false)
                ]
        }

    let ls = (Network.ofArchitecture arch).Layers
    Assert.That(ls |> List.map (fun l -> l.Name), Is.EqualTo(box [ "res.a"; "res.b"; "res.sc"; "fc" ]))
    Assert.That(ls |> List.map (fun l -> l.ConvHeight), Is.EqualTo(box [ 8; 8; 8; 1 ]))
    Assert.That(ls |> List.map (fun l -> l.OutHeight), Is.EqualTo(box [ 8; 4; 4; 1 ]))

    Assert.That(
        ls |> List.map (fun l -> l.InputSource),
        Is.EqualTo(box [ Some "in"; Some "res.sa"; Some "in"; Some "res.out" ])
    )

[<Test>]
let ``the mapper accepts any layer order and more than 12 layers`` () =
    let layers =
        [
            for i in 0..19 -> Layer.conv (sprintf "c%d" i) (512 - 24 * i) (512 - 24 * i) 3 8 8
        ]

    let m = Mapping.map Accelerator.spikeSim { Name = "decreasing"; Layers = layers }
    Assert.That(m.Layers.Length, Is.EqualTo 20)
    Assert.That(m.Layers.Head.Pes, Is.GreaterThan((List.last m.Layers).Pes))
    Assert.That((Metrics.evaluate 2 m).E, Is.GreaterThan 0.0<pJ>)

[<Test>]
let ``the mapping table lists every layer and the totals`` () =
    let m = Mapping.map Accelerator.spikeSim vgg9
    let table = Mapping.table m

    for l in vgg9.Layers do
        Assert.That(table, Does.Contain l.Name)

    Assert.That(table, Does.Contain "3840")
    Assert.That(table, Does.Contain "cycles/step")
    Assert.That(Metrics.summary (Metrics.evaluate 5 m), Does.Contain "TOPS/W")

[<Test>]
let ``kernel-wise packing: a 5×5 kernel needs ⌈25 · row blocks / 9⌉ PEs per column block`` () =
    let m =
        Mapping.map
            Accelerator.spikeSim
            {
                Name = "k5"
                Layers = [ Layer.conv "c" 128 130 5 8 8 ]
            }

    let l = m.Layers.Head
    Assert.That((l.Taps, l.RowBlocks, l.ColumnBlocks, l.Crossbars), Is.EqualTo((25, 2, 3, 150)))
    Assert.That(l.Pes, Is.EqualTo(6 * 3))

// Bad input ------------------------------------------------------------------------------------

[<Test>]
let ``non-positive crossbar size or ADC bits are refused by name`` () =
    raisesNaming [ "CrossbarSize"; "0" ] (fun () ->
        Mapping.map
            { Accelerator.spikeSim with
                CrossbarSize = 0
            }
            vgg9
        |> ignore)

    raisesNaming [ "AdcBits" ] (fun () ->
        Mapping.map
            { Accelerator.spikeSim with
                AdcBits = -2
            }
            vgg9
        |> ignore)

    raisesNaming [ "WeightBits" ] (fun () ->
        Mapping.map
            { Accelerator.spikeSim with
                Precision =
                    { Precision.spikeSim with
                        WeightBits = 0
                    }
            }
            vgg9
        |> ignore)

    raisesNaming [ "steps" ] (fun () -> Metrics.evaluate 0 (Mapping.map Accelerator.spikeSim vgg9) |> ignore)

[<Test>]
let ``layers the mapper cannot place are refused by name`` () =
    let withLayers ls = { smallVgg with Layers = ls }

    raisesNaming [ "conv2"; "16 input channels" ] (fun () ->
        Network.ofArchitecture (
            withLayers
                [
                    Conv2d("conv1", 3, 8, 3, 1, 1, false)
                    Conv2d("conv2", 16, 8, 3, 1, 1, false)
                ]
        )
        |> ignore)

    raisesNaming [ "fc"; "Flatten" ] (fun () ->
        Network.ofArchitecture (withLayers [ Linear("fc", 3072, 10, false) ]) |> ignore)

    raisesNaming [ "fc"; "3000" ] (fun () ->
        Network.ofArchitecture (withLayers [ Flatten; Linear("fc", 3000, 10, false) ])
        |> ignore)

    raisesNaming [ "big"; "kernel 40" ] (fun () ->
        Network.ofArchitecture (withLayers [ Conv2d("big", 3, 8, 40, 1, 0, false) ])
        |> ignore)

    raisesNaming [ "bn"; "normalises 4 channels" ] (fun () ->
        Network.ofArchitecture (withLayers [ Norm("bn", 4, NormKind.Batch) ]) |> ignore)

    raisesNaming [ "residual block 'r'" ] (fun () ->
        Network.ofArchitecture (
            withLayers
                [
                    Residual("r", ResidualKind.Add, [ Conv2d("c", 3, 8, 3, 1, 1, false) ], [], [])
                ]
        )
        |> ignore)

    raisesNaming [ "MaxPool(64, 64)" ] (fun () -> Network.ofArchitecture (withLayers [ MaxPool(64, 64) ]) |> ignore)
    raisesNaming [ "InputShape" ] (fun () -> Network.ofArchitectureAt [| 3; 32 |] smallVgg |> ignore)

    raisesNaming [ "layer 'bad'"; "OutChannels" ] (fun () ->
        Mapping.map
            Accelerator.spikeSim
            {
                Name = "n"
                Layers = [ Layer.conv "bad" 3 0 3 8 8 ]
            }
        |> ignore)

    raisesNaming [ "'c'"; "used twice" ] (fun () ->
        Mapping.map
            Accelerator.spikeSim
            {
                Name = "n"
                Layers = [ Layer.conv "c" 3 4 3 8 8; Layer.conv "c" 4 4 3 8 8 ]
            }
        |> ignore)

[<Test>]
let ``an op-count convention that does not apply to a layer kind is refused by name`` () =
    let m = Mapping.ofArchitecture Accelerator.spikeSim smallVgg
    let rates = Map.ofList [ "sn1", 0.1; "sn2", 0.2; "sn4", 0.05 ]

    raisesNaming [ "SynapticOps"; "'conv1'"; "not spikes" ] (fun () ->
        Metrics.evaluateWith (OpCount.SynapticOps rates) Activity.Dense 4 m |> ignore)

    raisesNaming [ "Hybrid"; "'block.conv3'" ] (fun () ->
        Metrics.evaluateWith (OpCount.Hybrid(Map.ofList [ "sn1", 0.1 ])) Activity.Dense 4 m
        |> ignore)

    let hybrid = Metrics.evaluateWith (OpCount.Hybrid rates) Activity.Dense 4 m
    let dense = Metrics.evaluate 4 m
    Assert.That(hybrid.Ops, Is.LessThan dense.Ops)
    Assert.That(hybrid.E, Is.EqualTo dense.E)

[<Test>]
let ``comparing reports of different networks is refused, naming the differing layer`` () =
    let a = report Accelerator.spikeSim 4 vgg9

    let other =
        { vgg9 with
            Layers =
                vgg9.Layers
                |> List.mapi (fun i l -> if i = 2 then { l with OutChannels = 96 } else l)
        }

    raisesNaming [ "different networks"; "conv3" ] (fun () ->
        Metrics.compare a (report Accelerator.spikeSim 4 other) |> ignore)

    raisesNaming [ "different networks"; "7 weight layers against 6" ] (fun () ->
        Metrics.compare
            a
            (report
                Accelerator.spikeSim
                4
                { vgg9 with
                    Layers = List.take 6 vgg9.Layers
                })
        |> ignore)

[<Test>]
let ``bad firing rates are refused by name`` () =
    let m = Mapping.map Accelerator.spikeSim vgg9

    raisesNaming [ "conv2"; "1.5" ] (fun () ->
        Energy.estimateWith (Activity.FiringRates(Map.ofList [ "conv2", 1.5 ])) 4 m
        |> ignore)

    raisesNaming [ "conv9" ] (fun () ->
        Energy.estimateWith (Activity.FiringRates(Map.ofList [ "conv9", 0.5 ])) 4 m
        |> ignore)

[<Test>]
let ``firing rates measured by a real forward pass drive activity-aware energy`` () =
    let model = Model.init 1 (ExecutionMode.Snn 2) smallVgg
    // Scaled so that sn2 fires (at the unscaled input it is silent).
    let x = Tensor.rand (Rng.create 5) [| 2; 3; 32; 32 |] * 8.0f

    let ctx =
        { ForwardContext.Eval with
            Probes =
                { ProbeRequest.None with
                    FiringRates = true
                }
        }

    let out = Model.forward ctx model x

    Assert.That(out.FiringRates.Keys, Is.EquivalentTo [ "sn1"; "sn2"; RateKey.maxPooled "sn2"; "block.sn3"; "sn4" ])

    // The pooled rate is the mean of the max-pooled spikes: between sn2's rate r and the OR of
    // independent spikes, 1 − (1 − r)⁴, and above r once sn2 fires at all.
    let spikes =
        (Model.forward
            { ForwardContext.Eval with
                Probes =
                    { ProbeRequest.None with
                        Spikes = set [ "sn2" ]
                    }
            }
            model
            x)
            .Spikes["sn2"]

    let pooled = Tensor.maxPool2d 2 2 0 (Tensor.reshape [| 4; 32; 32; 32 |] spikes)

    let r, rp =
        float out.FiringRates["sn2"], float out.FiringRates[RateKey.maxPooled "sn2"]

    Assert.That(rp, Is.EqualTo(float ((Tensor.mean pooled).ToScalar())).Within(1e-6))
    Assert.That(r, Is.GreaterThan 0.0)
    Assert.That(rp, Is.GreaterThan r)
    Assert.That(rp, Is.LessThanOrEqualTo(1.0 - Math.Pow(1.0 - r, 4.0) + 1e-6))

    let m = Mapping.ofArchitecture Accelerator.spikeSim smallVgg
    let dense = Energy.estimate 2 m
    let measured = Energy.estimateWith (Activity.ofProbe m.Network out.FiringRates) 2 m

    List.zip3 m.Layers dense.Layers measured.Layers
    |> List.iter (fun (l, d, e) ->
        match l.Layer.InputSource, l.Layer.InputPooling with
        | Some s, [] ->
            Assert.That(e.InputRate, Is.EqualTo(float out.FiringRates[s]))
            Assert.That(e.Total, Is.LessThanOrEqualTo d.Total)
        | Some s, _ ->
            Assert.That(e.InputRate, Is.EqualTo(float out.FiringRates[RateKey.maxPooled s]), l.Layer.Name)
            Assert.That(e.Total, Is.LessThanOrEqualTo d.Total)
        | None, _ -> Assert.That(e.Total, Is.EqualTo d.Total))

    // Without the measured pooled rate, a pooled layer is charged the OR of independent spikes.
    let unpooled = out.FiringRates |> Map.remove (RateKey.maxPooled "sn2")
    let conv3 = m.Network.Layers |> List.find (fun l -> l.Name = "block.conv3")
    let estimated = Activity.rate (Activity.ofProbe m.Network unpooled) conv3
    Assert.That(estimated, Is.EqualTo(1.0 - Math.Pow(1.0 - r, 4.0)).Within(1e-9))

    // Its own entry wins over both, given directly or through ofProbe (which drops unknown keys).
    let own = Activity.FiringRates(Map.ofList [ "sn2", 0.1; "block.conv3", 0.05 ])
    Assert.That(Activity.rate own conv3, Is.EqualTo 0.05)

    match Activity.ofProbe m.Network (Map.ofList [ "block.conv3", 0.25f; "nowhere", 0.5f ]) with
    | Activity.FiringRates kept as a ->
        Assert.That(kept.Keys, Is.EquivalentTo [ "block.conv3" ])
        Assert.That(Activity.rate a conv3, Is.EqualTo 0.25)
    | other -> Assert.Fail(sprintf "%A" other)

[<Test>]
let ``the pooled rate is recorded through a tap, an eval-mode dropout and a stage's end, checkpointed or not`` () =
    let head = [ Conv2d("conv1", 3, 8, 3, 1, 1, false); Norm("bn1", 8, NormKind.Batch) ]

    let tail =
        [
            Conv2d("conv2", 8, 8, 3, 1, 1, false)
            sn "sn2"
            Flatten
            Linear("fc", 8 * 4 * 4, 10, true)
        ]

    let variants =
        [
            "direct", head @ [ sn "sn1"; MaxPool(2, 2) ] @ tail, "sn1"
            "tap", head @ [ sn "sn1"; Tap "t"; MaxPool(2, 2) ] @ tail, "sn1"
            "dropout", head @ [ sn "sn1"; Dropout 0.2f; MaxPool(2, 2) ] @ tail, "sn1"
            "stage", [ Stage("s", head @ [ sn "sn1" ]); MaxPool(2, 2) ] @ tail, "s.sn1"
        ]

    for name, layers, population in variants do
        let arch =
            {
                Name = name
                InputShape = [| 3; 8; 8 |]
                Classes = 10
                Layers = layers
            }

        let model = Model.init 1 (ExecutionMode.Snn 2) arch
        let x = Tensor.rand (Rng.create 5) [| 2; 3; 8; 8 |] * 8.0f

        let probes =
            { ProbeRequest.None with
                FiringRates = true
            }

        // A training step under a tape, where checkpointing acts.
        let trainingRates checkpointed =
            let ctx =
                { ForwardContext.Train(Rng.create 3) with
                    Probes = probes
                    CheckpointActivations = checkpointed
                }

            let mutable rates = Map.empty

            Parameters.valueAndGrad
                (fun ps ->
                    let out = Model.apply ctx model ps x
                    rates <- out.FiringRates
                    Tensor.mean (Tensor.square out.Logits))
                model.Parameters
            |> ignore

            rates

        let eval =
            (Model.forward
                { ForwardContext.Eval with
                    Probes = probes
                }
                model
                x)
                .FiringRates

        let key = RateKey.maxPooled population
        Assert.That(eval.ContainsKey key, sprintf "%s: %A" name eval)
        Assert.That(eval[key], Is.GreaterThanOrEqualTo eval[population], name)
        // conv2 reads the pooled spikes: HwSim charges exactly the recorded rate.
        let net = (Mapping.ofArchitecture Accelerator.spikeSim arch).Network
        let conv2 = net.Layers |> List.find (fun l -> l.Name = "conv2")
        Assert.That(Activity.rate (Activity.ofProbe net eval) conv2, Is.EqualTo(float eval[key]), name)

        let plain, checkpointed = trainingRates false, trainingRates true

        Assert.That(
            (checkpointed = plain),
            sprintf "%s: checkpointing changed the rates %A → %A" name plain checkpointed
        )

        if name <> "dropout" then
            Assert.That(plain.ContainsKey key, sprintf "%s (training): %A" name plain)

[<Test>]
let ``a model that stacks event frames maps like its unstacked twin`` () =
    let plain =
        Zoo.convNet
            { ZooConfig.Mnist with
                InputChannels = 8
                InputSize = 34
            }

    let stacked = Architecture.stackFrames 4 plain
    let a = Mapping.ofArchitecture Accelerator.spikeSim plain
    let b = Mapping.ofArchitecture Accelerator.spikeSim stacked
    Assert.That((b.Layers = a.Layers), "the same layer mappings")
    Assert.That((Metrics.evaluate 4 b).E, Is.EqualTo (Metrics.evaluate 4 a).E)
