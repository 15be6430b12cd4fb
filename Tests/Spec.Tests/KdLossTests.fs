/// Distillation losses against hand-computed small cases and the invariants of methods.md §2e,
/// §3e, §4e and §5e.
module SnnSpec.Tests.KdLossTests

open System
open NUnit.Framework
open FsCheck
open FsCheck.FSharp
open FsCheck.NUnit
open SnnSpec
open SnnSpec.Distillation
open SnnSpec.Laws
open SnnSpec.Tests.TestUtil

let private v (t: Tensor) = float (t.ToScalar())
let private t2 (rows: float32[][]) = Tensor.ofArray2D rows

let private close (what: string) (tol: float) (expected: float) (actual: float) =
    if abs (expected - actual) > tol then
        Assert.Fail(sprintf "%s: expected %.7g, got %.7g" what expected actual)

// ---------------------------------------------------------------- logit KD, soft CE, WSLD

[<Test>]
let ``KL_tau of two 2-class logits matches the closed form`` () =
    // z_T = (1, 0), z_S = (0, 1): log p_T − log p_S = (1/τ, −1/τ) by symmetry.
    let zt = t2 [| [| 1.0f; 0.0f |] |]
    let zs = t2 [| [| 0.0f; 1.0f |] |]

    // KL_tau = (1/τ)·(σ(1/τ) − σ(−1/τ)) = (1/τ)·tanh(1/(2τ)); times τ²: τ·tanh(1/(2τ)).
    for tau in [ 1.0; 2.0; 4.0 ] do
        close (sprintf "KL at tau %g" tau) 1e-6 (tau * tanh (0.5 / tau)) (v (LogitKd.kl (float32 tau) zt zs))

[<Test>]
let ``KL is the batch mean of per-sample KLs`` () =
    let zt = randn 1 [| 4; 5 |]
    let zs = randn 2 [| 4; 5 |]

    let per =
        [
            for b in 0..3 -> v (LogitKd.kl 2.0f (Tensor.narrow 0 b 1 zt) (Tensor.narrow 0 b 1 zs))
        ]

    close "batch mean" 1e-5 (List.average per) (v (LogitKd.kl 2.0f zt zs))

[<Test>]
let ``soft cross-entropy differs from KL by the teacher entropy and has the same student gradient`` () =
    let zt = randn 3 [| 3; 4 |]
    let zs = randn 4 [| 3; 4 |]
    let tau = 3.0f
    let pT = Tensor.softmax 1 (zt / tau)
    let entropy = v (Tensor.mean (-(Tensor.sumDim 1 (pT * Tensor.log pT)))) * 9.0
    close "CEsoft − KL" 1e-4 entropy (v (LogitKd.softCrossEntropy tau zt zs) - v (LogitKd.kl tau zt zs))
    let gCe = Diff.grad (LogitKd.softCrossEntropy tau zt) zs
    let gKl = Diff.grad (LogitKd.kl tau zt) zs
    assertClose "gradients" 1e-4 1e-6 gKl gCe
    Assert.That((LogitKd.softCrossEntropyPerSample tau zt zs).Shape, Eq.To [| 3 |])

[<Test>]
let ``WSLD weights lie in 0 1 and are 1 - 1/e when student and teacher CE are equal`` () =
    let zt = randn 5 [| 6; 4 |] * 3.0f
    let zs = randn 6 [| 6; 4 |] * 3.0f
    let y = [| 0; 1; 2; 3; 0; 1 |]
    let w = (LogitKd.wsldWeights zt zs y).ToArray()
    Assert.That(w |> Array.forall (fun x -> x >= 0.0f && x < 1.0f), sprintf "%A" w)
    // Equal CEs: r = c/(c + 1e-7), so 1 − 1/e up to the 1e-7 guard.
    let same = (LogitKd.wsldWeights zs zs y).ToArray()

    for x in same do
        close "equal CE" 1e-4 (1.0 - exp -1.0) (float x)

    // A near-perfect student gets weight → 0; a much worse one → 1.
    let good = t2 [| [| 30.0f; 0.0f |] |]
    let bad = t2 [| [| 0.0f; 30.0f |] |]
    let mid = t2 [| [| 1.0f; 0.0f |] |]
    Assert.That((LogitKd.wsldWeights mid good [| 0 |]).ToScalar(), Is.LessThan 1e-6f)
    Assert.That((LogitKd.wsldWeights mid bad [| 0 |]).ToScalar(), Is.GreaterThan 0.999f)

[<Test>]
let ``WSLD equals weight tau^2 mean of w times soft CE and soft one-hot labels match hard ones`` () =
    let zt = randn 7 [| 5; 3 |]
    let zs = randn 8 [| 5; 3 |]
    let y = [| 0; 2; 1; 1; 0 |]
    let w = LogitKd.wsldWeights zt zs y
    let s = LogitKd.softCrossEntropyPerSample 2.0f zt zs
    close "definition" 1e-5 (v (Tensor.mean (w * s)) * 4.0 * 1.5) (v (LogitKd.wsld 2.0f 1.5f zt zs y))
    let soft = LogitKd.wsldWith 2.0f 1.5f zt zs (LogitKd.Soft(Tensor.oneHotOfInts 3 y))
    close "soft labels" 1e-5 (v (LogitKd.wsld 2.0f 1.5f zt zs y)) (v soft)
    // The weights are constants: the gradient is that of τ²·mean(w₀·s) with w₀ frozen.
    let g = Diff.grad (fun z -> LogitKd.wsld 2.0f 1.5f zt z y) zs

    let g0 =
        Diff.grad (fun z -> Tensor.mean (w * LogitKd.softCrossEntropyPerSample 2.0f zt z) * 6.0f) zs

    assertClose "frozen weights" 1e-5 1e-7 g0 g

// ---------------------------------------------------------------- temporal-wise KD

let private tbk (seed: int) t b k = randn seed [| t; b; k |] * 2.0f

[<Test>]
let ``at T = 1 TWCE is CE, TWKL is KD on z_1 and the paper TWSD is 0`` () =
    let z = tbk 10 1 4 5
    let z1 = Tensor.select 0 0 z
    let za = randn 11 [| 4; 5 |]
    let y = [| 0; 3; 4; 1 |]
    close "TWCE" 1e-6 (v (Tensor.crossEntropyIdx z1 y)) (v (TemporalKd.twce z y))
    close "TWKL" 1e-6 (v (LogitKd.kl 3.0f za z1)) (v (TemporalKd.twkl 3.0f za z))
    close "paper TWSD" 1e-6 0.0 (v (TemporalKd.twsd EnsembleMean 3.0f z y))

[<Test>]
let ``at T = 1 the code TWSD is 0 for correct samples and KL from uniform for wrong ones`` () =
    let z = Tensor.ofArray [| 1; 2; 3 |] [| 2.0f; 0.0f; -1.0f; 0.5f; 1.5f; 0.0f |]
    // Sample 0 predicts class 0 (correct), sample 1 class 1 (label 2: wrong).
    let y = [| 0; 2 |]
    let l = v (TemporalKd.twsd CorrectnessMasked 3.0f z y)
    let wrong = Tensor.select 0 0 (Tensor.narrow 1 1 1 z)
    let expected = v (LogitKd.kl 3.0f (Tensor.zeros [| 1; 3 |]) wrong) / 2.0
    close "code TWSD" 1e-6 expected l
    close "correct only" 1e-7 0.0 (v (TemporalKd.twsd CorrectnessMasked 3.0f z [| 0; 1 |]))

[<Test>]
let ``TWCE of two steps matches the hand value`` () =
    // z_1 = (0, 0), z_2 = (1, 0), y = 0: (ln 2 + ln(1 + e^−1)) / 2.
    let z = Tensor.ofArray [| 2; 1; 2 |] [| 0.0f; 0.0f; 1.0f; 0.0f |]
    close "TWCE" 1e-6 ((log 2.0 + log (1.0 + exp -1.0)) / 2.0) (v (TemporalKd.twce z [| 0 |]))

[<Test>]
let ``the correctness-masked target averages only the correct steps`` () =
    // T = 3, B = 2, K = 2. Sample 0 (y = 0): steps 0 and 2 correct. Sample 1 (y = 1): none correct.
    let z =
        Tensor.ofArray [| 3; 2; 2 |] [| 3.0f; 1.0f; 5.0f; 0.0f; 0.0f; 2.0f; 4.0f; 1.0f; 1.0f; 0.0f; 2.0f; -1.0f |]

    let target = (TemporalKd.selfTarget CorrectnessMasked z [| 0; 1 |]).ToArray()
    // Sample 0: steps 0 and 2 are correct, mean of (3, 1) and (1, 0).
    assertArraysClose "masked" 1e-6 1e-6 [| 2.0f; 0.5f; 0.0f; 0.0f |] target
    let ens = (TemporalKd.selfTarget EnsembleMean z [| 0; 1 |]).ToArray()
    assertArraysClose "ensemble" 1e-6 1e-6 [| 4.0f / 3.0f; 1.0f; 11.0f / 3.0f; 0.0f |] ens

[<Test>]
let ``the masked target equals the ensemble when every step is correct and ignores the step order`` () =
    let z = tbk 12 3 4 3
    let y = (Tensor.argmax 1 (Tensor.select 0 0 z)).ToArray() |> Array.map int
    // Make every step predict y by repeating step 0 with noise smaller than its margin.
    let zs =
        Tensor.stack 0 [ for _ in 0..2 -> Tensor.select 0 0 z ]
        + randn 13 [| 3; 4; 3 |] * 1e-3f

    let m = TemporalKd.selfTarget CorrectnessMasked zs y
    let e = TemporalKd.selfTarget EnsembleMean zs y
    assertClose "all correct" 1e-5 1e-6 e m
    let flipped = Tensor.flip [| 0 |] z

    assertClose
        "order"
        1e-6
        1e-6
        (TemporalKd.selfTarget CorrectnessMasked z y)
        (TemporalKd.selfTarget CorrectnessMasked flipped y)

[<Test>]
let ``the temporal loss is TWCE + alpha TWKL + beta TWSD with defaults 0.2 0.5 3 masked`` () =
    let cfg = TemporalKd.defaults
    Assert.That((cfg.Alpha, cfg.Beta, cfg.Tau, cfg.Target), Eq.To((0.2f, 0.5f, 3.0f, CorrectnessMasked)))
    let z = tbk 14 3 4 5
    let za = randn 15 [| 4; 5 |]
    let y = [| 1; 2; 3; 4 |]

    let expected =
        v (TemporalKd.twce z y)
        + 0.2 * v (TemporalKd.twkl 3.0f za z)
        + 0.5 * v (TemporalKd.twsd CorrectnessMasked 3.0f z y)

    close "sum" 1e-5 expected (v (TemporalKd.temporal cfg za z y))

[<Test>]
let ``an SNN teacher is read out by its time mean`` () =
    let zt = tbk 16 4 3 5
    let z = tbk 17 2 3 5

    close
        "SNN teacher"
        1e-6
        (v (TemporalKd.twkl 2.0f (Tensor.meanDims [| 0 |] false zt) z))
        (v (TemporalKd.twkl 2.0f zt z))

[<Test>]
let ``teacher and student class counts must agree`` () =
    assertRaises<SnnSpecException> [ "classes"; "[3, 4]"; "[2, 3, 5]" ] (fun () ->
        box (TemporalKd.twkl 1.0f (randn 1 [| 3; 4 |]) (randn 2 [| 2; 3; 5 |])))

[<Property(Arbitrary = [| typeof<KdArbitraries> |], MaxTest = 40)>]
let ``Prop 3: KL of the first k steps' mean is at most T over k times TWKL, and likewise for CE`` (c: KdCase) =
    let z = c.StudentLogits
    let steps = c.Dims.Steps
    let tau = 3.0f
    let twkl = v (TemporalKd.twkl tau c.AnnTeacher z)
    let twce = v (TemporalKd.twce z c.Labels)

    [ 1..steps ]
    |> List.forall (fun k ->
        let zk = Tensor.meanDims [| 0 |] false (Tensor.narrow 0 0 k z)
        let kl = v (LogitKd.kl tau c.AnnTeacher zk)
        let ce = v (Tensor.crossEntropyIdx zk c.Labels)
        let bound x = float steps / float k * x
        kl <= bound twkl * (1.0 + 1e-4) + 1e-6 && ce <= bound twce * (1.0 + 1e-4) + 1e-6)

[<Test>]
let ``tau^2 KL at tau = 100 approaches Hinton's logit-matching limit`` () =
    // τ²·KL → (1/(2K)) Σ_k Δ_k², Δ = (z_S − mean z_S) − (z_T − mean z_T), per sample.
    let k = 5
    let zt = randn 20 [| 3; k |]
    let zs = randn 21 [| 3; k |]
    let centre (z: Tensor) = z - Tensor.meanDims [| 1 |] true z
    let d = centre zs - centre zt
    let limit = v (Tensor.mean (Tensor.sumDim 1 (d * d))) / (2.0 * float k)
    let kl = v (LogitKd.kl 100.0f zt zs)
    let rel = abs (kl - limit) / limit
    Assert.That(rel, Is.LessThan 2e-2, sprintf "tau^2 KL %g vs limit %g" kl limit)

[<Test>]
let ``tau^2 KL gradients stay O(1) across tau 1 3 10 and a loss without tau^2 fails the law`` () =
    let zt = randn 22 [| 4; 5 |]
    let zs = randn 23 [| 4; 5 |]

    let gnorm tau =
        let g = Diff.grad (LogitKd.kl tau zt) zs
        sqrt (v (Tensor.sum (g * g)))

    let ns = [ 1.0f; 3.0f; 10.0f ] |> List.map gnorm
    Assert.That(List.max ns / List.min ns, Is.LessThan 3.0, sprintf "%A" ns)
    Assert.That((Laws.tauScaling LogitKd.kl zt zs).Passed)
    let unscaled tau t s = LogitKd.kl tau t s / (tau * tau)
    Assert.That((Laws.tauScaling unscaled zt zs).Passed, Is.False)
    let extra tau t s = LogitKd.kl tau t s * tau
    Assert.That((Laws.tauScaling extra zt zs).Passed, Is.False)

// ---------------------------------------------------------------- membrane KD

[<Test>]
let ``membrane loss is exactly 0 for identical inputs with prefix alignment and no gradient reaches the teacher`` () =
    let h = randn 30 [| 4; 2; 3; 2; 2 |]
    Assert.That((MembraneKd.mse Prefix h h).ToScalar(), Is.EqualTo 0.0f)
    let hs = randn 31 [| 4; 2; 3; 2; 2 |]

    let _, g =
        Diff.valueAndGradN (fun xs -> MembraneKd.mse Prefix xs[0] xs[1]) [| h; hs |]

    Assert.That(g[0].ToArray() |> Array.forall ((=) 0.0f))
    Assert.That(g[1].ToArray() |> Array.exists ((<>) 0.0f))

[<Test>]
let ``membrane alignments: prefix uses the first steps, pooled bins average, time-mean compares means`` () =
    // Teacher T_T = 4 with step values 1, 2, 3, 4; student t_S = 2 with values 0.
    let teacher = Tensor.ofArray [| 4; 1; 1 |] [| 1.0f; 2.0f; 3.0f; 4.0f |]
    let student = Tensor.zeros [| 2; 1; 1 |]
    close "prefix" 1e-6 ((1.0 + 4.0) / 2.0) (v (MembraneKd.mse Prefix teacher student))
    // Bins {1, 2} and {3, 4}: means 1.5 and 3.5.
    close "pooled" 1e-6 ((1.5 * 1.5 + 3.5 * 3.5) / 2.0) (v (MembraneKd.mse PooledBins teacher student))
    close "time-mean" 1e-6 (2.5 * 2.5) (v (MembraneKd.mse TimeMean teacher student))
    // Three bins over four steps overlap like adaptive pooling: {1,2}, {2,3}, {3,4}.
    let aligned = (MembraneKd.align PooledBins 3 teacher).ToArray()
    assertArraysClose "3 bins" 1e-6 1e-6 [| 1.5f; 2.5f; 3.5f |] aligned
    // t_S = T_T with pooled bins is the identity alignment.
    Assert.That((MembraneKd.mse PooledBins teacher teacher).ToScalar(), Is.EqualTo 0.0f)

[<Test>]
let ``membrane shape errors name both probes and shapes and suggest a fix`` () =
    let t = Map [ "block1", randn 1 [| 4; 2; 8 |] ]
    let s = Map [ "block1s", randn 2 [| 4; 2; 6 |] ]

    assertRaises<SnnSpecException> [ "block1"; "block1s"; "[2, 8]"; "[2, 6]"; "adapter" ] (fun () ->
        box (MembraneKd.mseProbes Prefix [ "block1", "block1s" ] t s))

    let long = Map [ "block1", randn 3 [| 5; 2; 8 |] ]

    assertRaises<SnnSpecException> [ "t_S = 5"; "T_T = 4"; "Prefix"; "TimeMean" ] (fun () ->
        box (MembraneKd.mseMaps Prefix [ "block1" ] t long))

    assertRaises<SnnSpecException> [ "missing"; "block1" ] (fun () -> box (MembraneKd.mseMaps Prefix [ "missing" ] t t))
    // TimeMean accepts a longer student.
    Assert.That(v (MembraneKd.mseMaps TimeMean [ "block1" ] t long), Is.GreaterThan 0.0)

[<Test>]
let ``membrane loss sums over probe pairs`` () =
    let t = Map [ "a", randn 1 [| 2; 3; 4 |]; "b", randn 2 [| 2; 3; 5 |] ]
    let s = Map [ "a", randn 3 [| 2; 3; 4 |]; "b", randn 4 [| 2; 3; 5 |] ]

    let sum =
        v (MembraneKd.mse Prefix t["a"] s["a"])
        + v (MembraneKd.mse Prefix t["b"] s["b"])

    close "sum" 1e-6 sum (v (MembraneKd.mseMaps Prefix [ "a"; "b" ] t s))

// ---------------------------------------------------------------- spike losses

let private spikes (seed: int) shape =
    Tensor.bernoulli (Rng.create seed) 0.4f shape

[<Test>]
let ``sliding L1 with delta 1 and delta T equals the full L1`` () =
    for shape in [ [| 5; 3; 4 |]; [| 1; 2; 3 |]; [| 7; 1; 2 |] ] do
        let a, b = spikes 40 shape, spikes 41 shape
        let full = v (SpikeKd.l1 a b)
        close "delta 1" 1e-5 full (v (SpikeKd.slidingL1 1 a b))
        close "delta T" 1e-5 full (v (SpikeKd.slidingL1 shape[0] a b))
        // Continuous tensors too.
        let x, y = randn 42 shape, randn 43 shape
        close "delta T continuous" 1e-4 (v (SpikeKd.l1 x y)) (v (SpikeKd.slidingL1 shape[0] x y))

[<Test>]
let ``sliding L1 weights each step by the number of windows covering it`` () =
    // T = 4, Δ = 2: windows [0,1], [1,2], [2,3] → weights 1, 2, 2, 1.
    let a = Tensor.zeros [| 4; 1; 1 |]
    let b = Tensor.ofArray [| 4; 1; 1 |] [| 1.0f; 2.0f; -3.0f; 4.0f |]
    close "weighted" 1e-6 (1.0 + 4.0 + 6.0 + 4.0) (v (SpikeKd.slidingL1 2 a b))
    // Sliding L2 by hand: ‖(1,2)‖ + ‖(2,−3)‖ + ‖(−3,4)‖.
    close "L2" 1e-5 (sqrt 5.0 + sqrt 13.0 + 5.0) (v (SpikeKd.slidingL2 2 a b))
    // Window counts: |3| + |−1| + |1|.
    close "counts" 1e-6 5.0 (v (SpikeKd.slidingWith WindowCounts 1 2 a b))

[<Test>]
let ``L1 equals squared L2 on binary tensors and sliding L2 is at most sliding L1`` () =
    let a, b = spikes 44 [| 6; 3; 5 |], spikes 45 [| 6; 3; 5 |]
    close "L1 = L2" 1e-5 (v (SpikeKd.l1 a b)) (v (SpikeKd.l2 a b))

    for delta in 1..6 do
        Assert.That(v (SpikeKd.slidingL2 delta a b), Is.LessThanOrEqualTo(v (SpikeKd.slidingL1 delta a b) + 1e-5))

[<Test>]
let ``losses are batch means of per-sample sums`` () =
    let a, b = spikes 46 [| 3; 2; 4 |], spikes 47 [| 3; 2; 4 |]
    let total = (Tensor.sum (Tensor.abs (a - b))).ToScalar()
    close "L1" 1e-6 (float total / 2.0) (v (SpikeKd.l1 a b))

[<Test>]
let ``the sliding L2 gradient at identical windows is 0, not NaN`` () =
    let a = spikes 48 [| 4; 2; 3 |]
    let g = Diff.grad (SpikeKd.slidingL2 2 a) a
    Assert.That(g.ToArray() |> Array.forall ((=) 0.0f), sprintf "%O" g)
    // Partly identical: finite everywhere.
    let b =
        Tensor.where
            (Tensor.geScalar
                2.0f
                (Tensor.arange 0.0f 4.0f 1.0f
                 |> Tensor.reshape [| 4; 1; 1 |]
                 |> Tensor.expand [| 4; 2; 3 |]))
            (spikes 49 [| 4; 2; 3 |])
            a

    Assert.That(Tensor.isFinite (Diff.grad (SpikeKd.slidingL2 2 a) b))

[<Test>]
let ``KL on spike counts is the logit KL of the counts`` () =
    let a, b = spikes 50 [| 5; 3; 4 |], spikes 51 [| 5; 3; 4 |]

    let expected =
        v (LogitKd.kl 2.0f (Tensor.sumDims [| 0 |] false a) (Tensor.sumDims [| 0 |] false b))

    close "KL counts" 1e-6 expected (v (SpikeKd.kl 2.0f a b))

[<Test>]
let ``the proposed loss is the weighted sum of its parts`` () =
    let a, b = spikes 52 [| 4; 3; 5 |], spikes 53 [| 4; 3; 5 |]
    let y = [| 0; 4; 2 |]
    let cfg = SpikeKd.defaults

    let parts =
        v (SpikeKd.kl 1.0f a b)
        + v (SpikeKd.l1 a b)
        + v (SpikeKd.l2 a b)
        + v (SpikeKd.slidingL1 2 a b)
        + v (SpikeKd.slidingL2 2 a b)
        + v (Tensor.crossEntropyIdx (Tensor.sumDims [| 0 |] false b) y)

    close "proposed" 1e-4 parts (v (SpikeKd.proposed cfg a b y))
    let noCe = { cfg with Ce = 0.0f }

    close
        "no CE"
        1e-4
        (parts - v (Tensor.crossEntropyIdx (Tensor.sumDims [| 0 |] false b) y))
        (v (SpikeKd.proposed noCe a b [||]))

[<Test>]
let ``the count readout's CE equals the proposed loss's own CE on spike counts`` () =
    let b = spikes 54 [| 4; 3; 5 |]
    let y = [| 1; 0; 3 |]

    let onlyCe =
        { SpikeKd.defaults with
            Kl = 0.0f
            L1 = 0.0f
            L2 = 0.0f
            SlidingL1 = 0.0f
            SlidingL2 = 0.0f
        }

    close
        "CE on counts"
        1e-6
        (v (SpikeKd.proposed onlyCe b b y))
        (v (FeatureKd.crossEntropyWith TimeReadout.Count 0.0f b y))

[<Property(MaxTest = 30)>]
let ``CE on counts is CE on T times the time-mean, and its gradient checks`` (seed: int) (steps: PositiveInt) =
    let t = 1 + steps.Get % 5
    let z = randn seed [| t; 3; 4 |]
    let y = [| seed &&& 3; 1; 2 |] |> Array.map (fun c -> abs c % 4)
    let mean = FeatureKd.crossEntropyWith TimeReadout.Mean 0.1f (z * float32 t) y
    let count = FeatureKd.crossEntropyWith TimeReadout.Count 0.1f z y
    close "count vs scaled mean" 1e-4 (v mean) (v count)


    assertGradCheck "CE on counts" (fun xs -> FeatureKd.crossEntropyWith TimeReadout.Count 0.1f xs[0] y) [| z |]

[<Test>]
let ``spike shape mismatches name the axis`` () =
    assertRaises<ShapeMismatchException> [ "time axis"; "[4, 2, 3]"; "[5, 2, 3]" ] (fun () ->
        box (SpikeKd.l1 (Tensor.zeros [| 4; 2; 3 |]) (Tensor.zeros [| 5; 2; 3 |])))

    assertRaises<ShapeMismatchException> [ "batch axis" ] (fun () ->
        box (SpikeKd.l2 (Tensor.zeros [| 4; 2; 3 |]) (Tensor.zeros [| 4; 1; 3 |])))

    assertRaises<ShapeMismatchException> [ "class axis" ] (fun () ->
        box (SpikeKd.kl 1.0f (Tensor.zeros [| 4; 2; 3 |]) (Tensor.zeros [| 4; 2; 4 |])))

    assertRaises<SnnSpecException> [ "delta" ] (fun () ->
        box (SpikeKd.slidingL1 5 (Tensor.zeros [| 4; 2; 3 |]) (Tensor.zeros [| 4; 2; 3 |])))

// ---------------------------------------------------------------- blurred KD

[<Test>]
let ``BKD masks drop each sample-channel with probability lambda, reproducibly per key`` () =
    let rng = Rng.create 60
    let m = BlurredKd.mask 0.3f rng 200 50
    Assert.That(m.Shape, Eq.To [| 200; 50; 1; 1 |])
    let kept = (Tensor.mean m).ToScalar()
    // E[M] = 0.7, sd of the mean = sqrt(0.21 / 10000) ≈ 0.0046.
    Assert.That(abs (kept - 0.7f), Is.LessThan 0.02f, sprintf "kept fraction %g" kept)
    Assert.That(m.ToArray() |> Array.forall (fun x -> x = 0.0f || x = 1.0f))
    assertClose "same key" 0.0 0.0 m (BlurredKd.mask 0.3f rng 200 50)
    Assert.That((BlurredKd.mask 0.3f (Rng.fold 1 rng) 200 50).ToArray(), Is.Not.EqualTo(m.ToArray()))
    Assert.That((BlurredKd.mask 0.0f rng 10 10).ToArray() |> Array.forall ((=) 1.0f))
    Assert.That((BlurredKd.mask 1.0f rng 10 10).ToArray() |> Array.forall ((=) 0.0f))

[<Test>]
let ``BKD with lambda = 1 gives zero gradient to the student feature and lambda = 0 is deterministic`` () =
    let ps = BlurredKd.init 1 3 4
    let fs = randn 61 [| 2; 3; 4; 4 |]
    let ft = randn 62 [| 2; 4; 4; 4 |]

    let cfg =
        { BlurredKd.defaults with
            Lambda = 1.0f
        }

    let g = Diff.grad (fun x -> BlurredKd.loss cfg ps (Rng.create 5) x ft) fs
    Assert.That(g.ToArray() |> Array.forall ((=) 0.0f))
    // The restoration block still learns (R = G(0) is pulled towards the teacher).
    let gp = Parameters.grad (fun p -> BlurredKd.loss cfg p (Rng.create 5) fs ft) ps
    Assert.That(gp["restore.conv2.bias"].ToArray() |> Array.exists ((<>) 0.0f))

    let c0 =
        { BlurredKd.defaults with
            Lambda = 0.0f
        }

    close
        "deterministic"
        0.0
        (v (BlurredKd.loss c0 ps (Rng.create 1) fs ft))
        (v (BlurredKd.loss c0 ps (Rng.create 2) fs ft))

[<Test>]
let ``BKD is 0 with an identity restoration, no blur and matching features`` () =
    // G = conv(identity) → ReLU → conv(identity) is the identity on non-negative maps.
    let c = 3

    let identity =
        Tensor.ofArray
            [| c; c; 3; 3 |]
            (Array.init (c * c * 9) (fun j -> if j % 9 = 4 && j / 9 / c = j / 9 % c then 1.0f else 0.0f))

    let ps =
        Parameters.ofList
            [
                "restore.conv1.weight", identity
                "restore.conv1.bias", Tensor.zeros [| c |]
                "restore.conv2.weight", identity
                "restore.conv2.bias", Tensor.zeros [| c |]
            ]

    let f = Tensor.abs (randn 63 [| 2; c; 4; 4 |])

    let cfg =
        { BlurredKd.defaults with
            Lambda = 0.0f
        }

    Assert.That((BlurredKd.loss cfg ps (Rng.create 1) f f).ToScalar(), Is.EqualTo 0.0f)

[<Test>]
let ``BKD is alpha times the sum of squares over the batch size, with a spatial mean for vector teachers`` () =
    let ps = BlurredKd.init 2 4 4
    Assert.That(ps.TryFind "adapter.weight", Is.EqualTo None)
    let fs = randn 64 [| 3; 4; 2; 2 |]
    let ft = randn 65 [| 3; 4; 2; 2 |]

    let cfg =
        { BlurredKd.defaults with
            Lambda = 0.0f
        }

    let r = BlurredKd.restore ps fs
    let d = r - ft
    close "map" 1e-6 (v (Tensor.sum (d * d)) * 2e-3 / 3.0) (v (BlurredKd.loss cfg ps (Rng.create 1) fs ft))
    let fv = randn 66 [| 3; 4 |]
    let dv = Tensor.meanDims [| 2; 3 |] false r - fv
    close "vector" 1e-6 (v (Tensor.sum (dv * dv)) * 2e-3 / 3.0) (v (BlurredKd.loss cfg ps (Rng.create 1) fs fv))
    // Clip rescale: the target becomes F_T · max F_S′ / max F_T.
    let clip = { cfg with ClipRescale = true }
    let scale = (Tensor.max fs).ToScalar() / (Tensor.max ft).ToScalar()
    let dc = r - ft * scale
    close "clip" 1e-6 (v (Tensor.sum (dc * dc)) * 2e-3 / 3.0) (v (BlurredKd.loss clip ps (Rng.create 1) fs ft))

[<Test>]
let ``BKD adds an adapter only when channels differ and reports shape errors`` () =
    let ps = BlurredKd.init 3 2 5
    Assert.That(ps["adapter.weight"].Shape, Eq.To [| 5; 2; 1; 1 |])

    let l =
        BlurredKd.loss BlurredKd.defaults ps (Rng.create 1) (randn 1 [| 2; 2; 3; 3 |]) (randn 2 [| 2; 5; 3; 3 |])

    Assert.That(v l, Is.GreaterThan 0.0)
    let same = BlurredKd.init 3 5 5

    assertRaises<SnnSpecException> [ "no adapter"; "BlurredKd.init" ] (fun () ->
        box (
            BlurredKd.loss BlurredKd.defaults same (Rng.create 1) (randn 1 [| 2; 2; 3; 3 |]) (randn 2 [| 2; 5; 3; 3 |])
        ))

    assertRaises<SnnSpecException> [ "spatial" ] (fun () ->
        box (
            BlurredKd.loss BlurredKd.defaults same (Rng.create 1) (randn 1 [| 2; 5; 3; 3 |]) (randn 2 [| 2; 5; 2; 2 |])
        ))

[<Test>]
let ``mixed is CE plus BKD plus WSLD`` () =
    let ps = BlurredKd.init 4 3 3
    let fs, ft = randn 70 [| 2; 3; 2; 2 |], randn 71 [| 2; 3; 2; 2 |]
    let zs, zt = randn 72 [| 2; 4 |], randn 73 [| 2; 4 |]
    let y = [| 1; 3 |]
    let cfg = BlurredKd.mixedDefaults
    let key = Rng.create 9

    let expected =
        v (Tensor.crossEntropyIdx zs y)
        + v (BlurredKd.loss cfg.Blur ps key fs ft)
        + v (LogitKd.wsld 2.0f 1.0f zt zs y)

    // τ = 2 and w_dist = 1 as in every BKDSNN reference config (methods.md §4c).
    Assert.That((cfg.WsldTau, cfg.WsldWeight), Is.EqualTo((2.0f, 1.0f)))
    close "mixed" 1e-5 expected (v (BlurredKd.mixed cfg ps key fs ft zt zs y))

[<Test>]
let ``the clip rescale refuses a teacher feature with no positive value, naming ClipRescale`` () =
    let ps = BlurredKd.init 4 3 3
    let fs = randn 70 [| 2; 3; 2; 2 |]

    let cfg =
        { BlurredKd.defaults with
            ClipRescale = true
        }

    for ft in [ Tensor.zeros [| 2; 3; 2; 2 |]; -(Tensor.abs (randn 71 [| 2; 3; 2; 2 |])) ] do
        assertRaises<SnnSpecException> [ "BlurredKd.loss"; "ClipRescale" ] (fun () ->
            box (BlurredKd.loss cfg ps (Rng.create 1) fs ft))

    Assert.That(Double.IsFinite(v (BlurredKd.loss cfg ps (Rng.create 1) fs (Tensor.abs (randn 71 [| 2; 3; 2; 2 |])))))

// ---------------------------------------------------------------- feature KD and loss terms

[<Test>]
let ``feature MSE detaches the teacher and its shape error suggests an adapter`` () =
    let a, b = randn 80 [| 2; 3; 2; 2 |], randn 81 [| 2; 3; 2; 2 |]
    close "mse" 1e-6 (v (Tensor.mse b a)) (v (FeatureKd.mse a b))

    assertRaises<ShapeMismatchException> [ "adapter" ] (fun () -> box (FeatureKd.mse a (randn 82 [| 2; 4; 2; 2 |])))

    let ps = FeatureKd.initAdapter 1 4 3
    Assert.That(v (FeatureKd.mseAdapted ps a (randn 82 [| 2; 4; 2; 2 |])), Is.GreaterThan 0.0)
    let y = [| 0; 2 |]
    let z = randn 83 [| 2; 3 |]

    close
        "label smoothing"
        1e-6
        (v (Tensor.crossEntropyIdxWith Reduction.Mean 0.1f z y))
        (v (FeatureKd.crossEntropy 0.1f z y))

[<Test>]
let ``loss terms reject negative weights and name missing probes`` () =
    assertRaises<SnnSpecException> [ "kd"; "-1" ] (fun () -> box (LossTerm.logitKd 1.0f -1.0f))

    assertRaises<SnnSpecException> [ "mine" ] (fun () ->
        box (LossTerm.custom "mine" Single.NaN (fun _ _ _ -> Tensor.scalar 0.0f)))

    let o = KdOutputs.ofLogits (randn 1 [| 2; 3; 4 |])
    let term = LossTerm.spikes SpikeKd.defaults "out" 1.0f
    assertRaises<SnnSpecException> [ "out"; "(none)" ] (fun () -> box (LossTerm.evaluate term o o [| 0; 1; 2 |]))

[<Test>]
let ``a custom F# loss plugs in and is differentiated with the teacher detached`` () =
    let c =
        KdGen.caseOf
            {
                Steps = 3
                Batch = 2
                Classes = 4
                Channels = 2
                Size = 2
            }
            7

    let teacher, student = KdGen.teacherOutputs c, KdGen.studentOutputs c

    // Cosine-free toy: squared distance between time-mean logits plus the membrane term.
    let mine =
        LossTerm.custom "meanLogitL2" 0.5f (fun t s _ ->
            let d =
                Tensor.meanDims [| 0 |] false s.Logits - Tensor.meanDims [| 0 |] false t.Logits

            Tensor.mean (d * d))

    let terms =
        [
            mine
            LossTerm.membrane Prefix [ "mem" ] 2.0f
            LossTerm.temporal TemporalKd.defaults
        ]

    let total, parts = LossTerm.totalWithParts terms teacher student c.Labels
    Assert.That(parts |> List.map fst, Eq.To [ "meanLogitL2"; "membrane"; "temporal" ])
    close "total" 1e-5 (parts |> List.sumBy (snd >> v)) (v total)
    let tt = KdOutputs.tensors teacher
    let st = KdOutputs.tensors student

    let _, g =
        Diff.valueAndGradN
            (fun xs ->
                LossTerm.total
                    terms
                    (KdOutputs.withTensors teacher xs[.. tt.Length - 1])
                    (KdOutputs.withTensors student xs[tt.Length ..])
                    c.Labels)
            (Array.append tt st)

    Assert.That(
        g[.. tt.Length - 1]
        |> Array.forall (fun t -> t.ToArray() |> Array.forall ((=) 0.0f))
    )

    Assert.That(g[tt.Length].ToArray() |> Array.exists ((<>) 0.0f))
