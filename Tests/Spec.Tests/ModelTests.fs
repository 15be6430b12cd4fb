module SnnSpec.Tests.ModelTests

open NUnit.Framework
open SnnSpec
open SnnSpec.Tests.TestUtil

let tinyNeuron =
    { Neuron.lif with
        Surrogate = Surrogate.Sigmoid 4.0f
    }

/// conv-BN-LIF-pool-flatten-tap-linear on 1×6×6 inputs.
let tiny =
    {
        Name = "tiny"
        InputShape = [| 1; 6; 6 |]
        Classes = 3
        Layers =
            [
                Conv2d("conv", 1, 4, 3, 1, 1, false)
                Norm("bn", 4, NormKind.Batch)
                Spiking("lif", tinyNeuron)
                AvgPool(2, 2)
                Flatten
                Tap "feature"
                Linear("fc", 36, 3, true)
            ]
    }

[<Test>]
let ``an SNN returns logits per step and its ANN twin one step`` () =
    let m = Model.init 1 (ExecutionMode.Snn 3) tiny
    let x = randn 2 [| 5; 1; 6; 6 |]
    let out = Model.forward ForwardContext.Eval m x
    Assert.That(out.Logits.Shape, Eq.To [| 3; 5; 3 |])
    let ann = Model.forward ForwardContext.Eval (Model.asAnn m) x
    Assert.That(ann.Logits.Shape, Eq.To [| 1; 5; 3 |])

[<Test>]
let ``the same seed gives the same model and different seeds differ`` () =
    let a = Model.init 7 (ExecutionMode.Snn 2) tiny
    let b = Model.init 7 (ExecutionMode.Snn 2) tiny
    let c = Model.init 8 (ExecutionMode.Snn 2) tiny
    Assert.That(a.Parameters["conv.weight"], Eq.To b.Parameters["conv.weight"])
    Assert.That(a.Parameters["conv.weight"] = c.Parameters["conv.weight"], Is.False)
    Assert.That(Model.parameterCount a, Eq.To(36L + 8L + 36L * 3L + 3L))

[<Test>]
let ``probes record membranes, spikes, taps and firing rates by name`` () =
    let m = Model.init 1 (ExecutionMode.Snn 4) tiny

    let ctx =
        { ForwardContext.Eval with
            Probes =
                {
                    Membranes = set [ "lif" ]
                    Spikes = set [ "lif" ]
                    Taps = set [ "feature" ]
                    FiringRates = true
                }
        }

    let out = Model.forward ctx m (randn 3 [| 2; 1; 6; 6 |])
    Assert.That(out.Membranes["lif"].Shape, Eq.To [| 4; 2; 4; 6; 6 |])
    Assert.That(out.Spikes["lif"].Shape, Eq.To [| 4; 2; 4; 6; 6 |])
    Assert.That(out.Taps["feature"].Shape, Eq.To [| 4; 2; 36 |])
    let rate = out.FiringRates["lif"]
    Assert.That(rate, Is.InRange(0.0f, 1.0f))

[<Test>]
let ``training updates BN running statistics and gradients reach every parameter`` () =
    let m = Model.init 1 (ExecutionMode.Snn 2) tiny
    let x = randn 4 [| 6; 1; 6; 6 |]
    let labels = [| 0; 1; 2; 0; 1; 2 |]

    let loss (ps: Parameters) =
        let out = Model.apply (ForwardContext.Train(Rng.create 1)) m ps x
        Tensor.crossEntropyIdx (Tensor.meanDims [| 0 |] false out.Logits) labels, Parameters.values out.Buffers
    // Updated buffers leave the differentiation as auxiliary outputs (temporaries are recycled).
    let _, g, aux = Parameters.valueAndGradAux loss m.Parameters
    let buffers = Parameters.withValues m.Buffers aux

    for name in g.Names do
        Assert.That((Tensor.sum (Tensor.abs g[name])).ToScalar(), Is.GreaterThan 0.0f, name)

    Assert.That(buffers["bn.running_mean"] = m.Buffers["bn.running_mean"], Is.False)

[<Test>]
let ``a wrongly shaped input names the model and the expected shape`` () =
    let m = Model.init 1 (ExecutionMode.Snn 2) tiny

    assertRaises<ShapeMismatchException> [ "tiny"; "[1, 6, 6]" ] (fun () ->
        box (Model.forward ForwardContext.Eval m (randn 1 [| 2; 3; 6; 6 |])))

[<Test>]
let ``the summary lists layers and the parameter total`` () =
    let s = Model.summary (Model.init 1 (ExecutionMode.Snn 2) tiny)
    Assert.That(s, Does.Contain "conv 1→4")
    Assert.That(s, Does.Contain "total parameters: 155")

[<Test>]
let ``the readout is causal: the first t steps of a T-step run equal a t-step run`` () =
    let m = Model.init 3 (ExecutionMode.Snn 5) tiny
    let x = randn 9 [| 4; 1; 6; 6 |]
    let long = (Model.forward ForwardContext.Eval m x).Logits

    for t in 1..5 do
        let short = (Model.forward ForwardContext.Eval (Model.withSteps t m) x).Logits
        assertClose (sprintf "t = %d" t) 0.0 0.0 short (Tensor.narrow 0 0 t long)

[<Test>]
let ``cumulative readout row t is the mean of the first t+1 steps`` () =
    let z = randn 1 [| 4; 3; 5 |]
    let cum = Readout.cumulativeMean z

    for t in 0..3 do
        assertClose
            (sprintf "row %d" t)
            1e-6
            1e-6
            (Tensor.meanDims [| 0 |] false (Tensor.narrow 0 0 (t + 1) z))
            (Tensor.select 0 t cum)

    let labels = [| 0; 1; 2 |]
    let counts = Readout.correctPerStep z labels
    Assert.That(counts.Length, Eq.To 4)

    Assert.That(
        counts[3],
        Eq.To(Array.fold2 (fun acc p l -> if p = l then acc + 1 else acc) 0 (Readout.predict z) labels)
    )

[<Test>]
let ``a probe name the model lacks raises an error naming it and the available names`` () =
    let m = Model.init 1 (ExecutionMode.Snn 2) tiny

    let ctx =
        { ForwardContext.Eval with
            Probes =
                { ProbeRequest.None with
                    Membranes = set [ "lif9" ]
                }
        }

    assertRaises<SnnSpecException> [ "lif9"; "membrane probe"; "lif" ] (fun () ->
        box (Model.forward ctx m (randn 1 [| 2; 1; 6; 6 |])))

    let tapCtx =
        { ForwardContext.Eval with
            Probes =
                { ProbeRequest.None with
                    Taps = set [ "features" ]
                }
        }

    assertRaises<SnnSpecException> [ "features"; "feature" ] (fun () ->
        box (Model.forward tapCtx m (randn 1 [| 2; 1; 6; 6 |])))

/// BPTT through a whole small SNN (conv → BN → LIF → probe): a loss on the membranes H of the
/// population, with inputs small enough that no neuron reaches θ, so the forward is smooth and
/// finite differences see the same function the gradient differentiates (conv, BN and the
/// membrane recurrence over T steps; the surrogate path is checked against the reference elsewhere).
[<Test>]
let ``gradients through a whole small SNN match finite differences of its smooth membrane path`` () =
    let arch =
        { tiny with
            Layers =
                [
                    Conv2d("conv", 1, 3, 3, 1, 1, true)
                    Norm("bn", 3, NormKind.Batch)
                    Spiking(
                        "lif",
                        { Neuron.lif with
                            Threshold = 100.0f
                            Surrogate = Surrogate.Sigmoid 1.0f
                        }
                    )
                    AvgPool(2, 2)
                    Flatten
                    Linear("fc", 27, 3, true)
                ]
        }

    let m = Model.init 2 (ExecutionMode.Snn 3) arch
    let x = randn 3 [| 2; 1; 6; 6 |]

    let ctx =
        { ForwardContext.Eval with
            Probes =
                { ProbeRequest.None with
                    Membranes = set [ "lif" ]
                }
        }

    let names = m.Parameters.Names

    let f (ts: Tensor[]) =
        let out = Model.apply ctx m (Parameters.withValues m.Parameters ts) x
        Tensor.mean (Tensor.square out.Membranes["lif"])

    let ps = Parameters.values m.Parameters
    // Only conv and BN influence H; fc receives no gradient from this loss.
    let used =
        names
        |> Array.indexed
        |> Array.filter (fun (_, n) -> not (n.StartsWith "fc"))
        |> Array.map fst

    assertGradCheck
        "snn membrane path"
        (fun sub ->
            f (
                Array.mapi
                    (fun i t ->
                        match Array.tryFindIndex ((=) i) used with
                        | Some k -> sub[k]
                        | None -> t)
                    ps
            ))
        (used |> Array.map (fun i -> ps[i]))

[<Test>]
let ``a PLIF population's w is read from the parameters being run and receives a gradient`` () =
    let plif =
        { tinyNeuron with
            Dynamics = Dynamics.Plif(Tensor.scalar 0.0f, true)
        }

    let arch =
        { tiny with
            Layers =
                tiny.Layers
                |> List.map (fun l ->
                    match l with
                    | Spiking(n, _) -> Spiking(n, plif)
                    | other -> other)
        }

    let m = Model.init 1 (ExecutionMode.Snn 3) arch
    let x = randn 5 [| 4; 1; 6; 6 |]

    let ctx =
        { ForwardContext.Eval with
            Probes =
                { ProbeRequest.None with
                    Membranes = set [ "lif" ]
                }
        }

    let h (ps: Parameters) =
        (Model.apply ctx m ps x).Membranes["lif"]

    let changed =
        Parameters.map (fun n t -> if n = "lif.w" then Tensor.scalar 2.0f else t) m.Parameters

    Assert.That(h m.Parameters = h changed, Is.False, "changing lif.w must change the membranes")
    let g = Parameters.grad (fun ps -> Tensor.mean (h ps)) m.Parameters
    Assert.That(g["lif.w"].ToScalar(), Is.Not.EqualTo 0.0f)
