/// QuantTrajectory: a quantized SNN against its float twin, population by population and step by step.
module SnnSpec.Tests.QuantTrajectoryTests

open System
open NUnit.Framework
open FsCheck.NUnit
open SnnSpec
open SnnSpec.Tests.TestUtil
open SnnSpec.Tests.Generators

let private arch = Zoo.convNet { ZooConfig.Mnist with Width = 0.25f }

let private model (seed: int) (steps: int) =
    let m = Model.init seed (ExecutionMode.Snn steps) arch
    // Non-trivial running statistics, so that a folded Norm differs from the identity.
    let out =
        Model.forward (ForwardContext.Train(Rng.create seed)) m (randn (seed + 100) [| 8; 1; 28; 28 |])

    { m with Buffers = out.Buffers }

let private assertSameParameters what (a: Parameters) (b: Parameters) =
    Assert.That(b.Names, Eq.To a.Names, what + " names")

    for n in a.Names do
        Assert.That(b[n].ToArray(), Eq.To(a[n].ToArray()), what + " " + n)

[<Test>]
let ``the float twin of a quantized model is the model it was made from`` () =
    let m = model 1 2

    for name, cfg in CheckpointTests.quantConfigs () do
        let twin = QuantTrajectory.floatTwin (Model.quantize cfg m)
        assertSameParameters (name + " parameters") m.Parameters twin.Parameters
        assertSameParameters (name + " buffers") m.Buffers twin.Buffers
        Assert.That(twin.Mode, Is.EqualTo m.Mode, name)
        Assert.That((Model.quantPlan twin).IsQuantized, Is.False, name)

[<Test>]
let ``the float twin strips exactly the plan, whatever the enclosing stages are named`` () =
    for stage in [ "quant"; "alphabet"; "alpha" ] do
        let nested =
            { arch with
                Layers = [ Stage("s", [ Stage(stage, arch.Layers) ]) ]
            }

        let m = Model.init 1 (ExecutionMode.Snn 2) nested
        let twin = QuantTrajectory.floatTwin (Model.quantize (QuantConfig.Mint 4) m)
        assertSameParameters (stage + " parameters") m.Parameters twin.Parameters
        assertSameParameters (stage + " buffers") m.Buffers twin.Buffers

        let r =
            QuantTrajectory.compare (Model.quantize (QuantConfig.Mint 4) m) (randn 2 [| 2; 1; 28; 28 |])

        Assert.That(r.Populations, Is.Not.Empty, stage)

[<Test>]
let ``a full-precision plan follows the float trajectory exactly`` () =
    let m = model 2 3 |> Model.quantize QuantConfig.FullPrecision
    let r = QuantTrajectory.compare m (randn 5 [| 6; 1; 28; 28 |])
    Assert.That(r.Populations |> List.map (fun p -> p.Name), Eq.To(Architecture.spikingNames arch))

    for p in r.Populations do
        Assert.That(p.SpikeAgreement, Eq.To(Array.create 3 1.0), p.Name)
        Assert.That(p.MembraneError, Eq.To(Array.create 3 0.0), p.Name)
        Assert.That(p.QuantizedRate, Eq.To p.FloatRate, p.Name)

    Assert.That(r.PredictionAgreement, Eq.To(Array.create 3 1.0))

/// The report's figures from their definitions, on two plain forward runs.
[<Test>]
let ``the report matches its definitions on two forward runs`` () =
    let full = model 3 3
    let q = Model.quantize (QuantConfig.Mint 2) full
    let x = randn 7 [| 5; 1; 28; 28 |]
    let r = QuantTrajectory.compare q x
    let names = Architecture.spikingNames arch

    let run (m: Model) =
        Model.forward
            { ForwardContext.Eval with
                Probes =
                    { ProbeRequest.None with
                        Spikes = Set.ofList names
                        Membranes = Set.ofList names
                    }
            }
            m
            x

    let a, b = run q, run full

    for p in r.Populations do
        for t in 0..2 do
            let step (probe: Map<string, Tensor>) =
                let v = probe[p.Name].ToArray()
                let n = v.Length / 3
                v[t * n .. (t + 1) * n - 1]

            let sq, sf, hq, hf =
                step a.Spikes, step b.Spikes, step a.Membranes, step b.Membranes

            let agree =
                float (Array.fold2 (fun n u v -> if u = v then n + 1 else n) 0 sq sf)
                / float sq.Length

            Assert.That(p.SpikeAgreement[t], Is.EqualTo agree, p.Name)
            let diff = Array.map2 (fun u v -> (float u - float v) ** 2.0) hq hf |> Array.sum
            let norm = hf |> Array.sumBy (fun v -> float v ** 2.0)
            Assert.That(p.MembraneError[t], Is.EqualTo(sqrt (diff / norm)).Within(1e-9), p.Name)
            Assert.That(p.QuantizedRate[t], Is.EqualTo(Array.averageBy float sq).Within(1e-12), p.Name)
            Assert.That(p.FloatRate[t], Is.EqualTo(Array.averageBy float sf).Within(1e-12), p.Name)

    let predictions (logits: Tensor) t =
        let z = logits.ToArray()

        Array.init 5 (fun s ->
            Array.init 10 (fun c -> Seq.sum (seq { for u in 0..t -> float z[(u * 5 + s) * 10 + c] }))
            |> Array.mapi (fun c v -> v, -c)
            |> Array.max
            |> snd)

    let logitsAt (l: Tensor) t = l.ToArray()[t * 50 .. t * 50 + 49]

    for t in 0..2 do
        let za, zb = logitsAt a.Logits t, logitsAt b.Logits t
        let diff = Array.map2 (fun u v -> (float u - float v) ** 2.0) za zb |> Array.sum

        Assert.That(
            r.LogitError[t],
            Is.EqualTo(sqrt (diff / (zb |> Array.sumBy (fun v -> float v ** 2.0)))).Within(1e-9)
        )

        let pa, pb = predictions a.Logits t, predictions b.Logits t
        let same = Array.fold2 (fun n u v -> if u = v then n + 1 else n) 0 pa pb
        Assert.That(r.PredictionAgreement[t], Is.EqualTo(float same / 5.0).Within(1e-12))

    Assert.That(
        r.Error,
        Is.EqualTo(
            (r.Populations |> List.averageBy (fun p -> Array.average p.MembraneError))
            + Array.average r.LogitError
        )
    )

    // At two bits the trajectories really part somewhere.
    Assert.That(
        r.Populations
        |> List.exists (fun p -> p.MembraneError |> Array.exists (fun e -> e > 0.0))
    )

[<Property(Arbitrary = [| typeof<Arbitraries> |], MaxTest = 8)>]
let ``figures stay in range, one per step, on images and frame sequences`` (Seed seed) =
    let steps = 1 + seed % 3
    let bits = 2 + seed % 7
    let m = model seed steps |> Model.quantize (QuantConfig.Integer bits)

    let x =
        if seed % 2 = 0 then
            randn seed [| 3; 1; 28; 28 |]
        else
            randn seed [| steps; 3; 1; 28; 28 |]

    let r = QuantTrajectory.compare m x
    let inUnit (v: float) = v >= 0.0 && v <= 1.0

    for p in r.Populations do
        for values in [ p.SpikeAgreement; p.FloatRate; p.QuantizedRate ] do
            Assert.That(values.Length, Is.EqualTo steps)
            Assert.That(values |> Array.forall inUnit, sprintf "%s %A" p.Name values)

        Assert.That(p.MembraneError |> Array.forall (fun e -> e >= 0.0), p.Name)

    Assert.That(r.PredictionAgreement.Length, Is.EqualTo steps)
    Assert.That(r.PredictionAgreement |> Array.forall inUnit)

[<Test>]
let ``more bits keep the first quantized population closer to its float trajectory`` () =
    let m = model 4 4
    let x = randn 9 [| 16; 1; 28; 28 |]

    let firstError bits =
        let q =
            Model.quantize (QuantConfig.Integer bits) m
            |> Model.calibrateScales x
            |> QuantTrajectory.fitScales 8 x

        let r = QuantTrajectory.compare q x
        // The first layer stays full precision (MINT's recipe); the population it feeds is not quantized.
        let p =
            r.Populations
            |> List.find (fun p -> p.MembraneError |> Array.exists (fun e -> e > 0.0))

        Array.average p.MembraneError

    let e2, e4, e8 = firstError 2, firstError 4, firstError 8
    Assert.That(e8, Is.LessThan e4)
    Assert.That(e4, Is.LessThan e2)

[<Property(Arbitrary = [| typeof<Arbitraries> |], MaxTest = 4)>]
let ``the scale search never strays further than the scales it starts from`` (Seed seed) =
    let m = model seed 2
    let x = randn (seed + 1) [| 8; 1; 28; 28 |]
    let q = Model.quantize (QuantConfig.Mint(2 + seed % 7)) m |> Model.calibrateScales x
    let fitted = QuantTrajectory.fitScales 6 x q

    let before, after =
        (QuantTrajectory.compare q x).Error, (QuantTrajectory.compare fitted x).Error

    Assert.That(after, Is.LessThanOrEqualTo before)
    // Only weight scales move; everything else is the model given.
    for n in q.Parameters.Names do
        if not (n.EndsWith ".alpha") then
            Assert.That(fitted.Parameters[n].ToArray(), Eq.To(q.Parameters[n].ToArray()), n)

    Assert.That(fitted.Buffers.Names, Eq.To q.Buffers.Names)

[<Test>]
let ``the scale search recovers 8-bit weights that the QAT starting scale clips`` () =
    let m = model 5 2
    let x = randn 6 [| 16; 1; 28; 28 |]
    let start = Model.quantize (QuantConfig.Mint 8) m |> Model.calibrateScales x
    let fitted = QuantTrajectory.fitScales 16 x start
    let a, b = QuantTrajectory.compare start x, QuantTrajectory.compare fitted x
    // α₀ = 2·mean|W'|/√127 sits far inside max|tanh W'|: the search moves every quantized layer's α out.
    for KeyValue(layer, w) in (Model.quantPlan start).Weights do
        if w.Weight <> Bits.FullPrecision then
            let key = layer + ".alpha"
            Assert.That(fitted.Parameters[key].ToScalar(), Is.GreaterThan(start.Parameters[key].ToScalar()), key)

    Assert.That(b.Error, Is.LessThan(a.Error / 2.0))
    Assert.That(Array.last b.PredictionAgreement, Is.GreaterThanOrEqualTo(Array.last a.PredictionAgreement))

[<Test>]
let ``compare refuses an unquantized model and an ANN`` () =
    let x = randn 1 [| 2; 1; 28; 28 |]

    assertRaises<SnnSpecException> [ "QuantTrajectory.compare"; "Model.quantize" ] (fun () ->
        box (QuantTrajectory.compare (model 0 2) x))

    assertRaises<SnnSpecException> [ "QuantTrajectory.compare"; "ANN" ] (fun () ->
        box (QuantTrajectory.compare (Model.asAnn (model 0 2) |> Model.quantize (QuantConfig.Mint 4)) x))

    assertRaises<SnnSpecException> [ "QuantTrajectory.fitScales"; "candidates" ] (fun () ->
        box (QuantTrajectory.fitScales 0 x (model 0 2 |> Model.quantize (QuantConfig.Mint 4))))
