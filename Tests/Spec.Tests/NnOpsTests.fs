module SnnSpec.Tests.NnOpsTests

open System
open NUnit.Framework
open FsCheck
open FsCheck.NUnit
open SnnSpec
open SnnSpec.Tests.TestUtil
open SnnSpec.Tests.Generators

let private f32 (x: float) = float32 x

/// A shape of rank 1–4 and an axis of it, from a seed.
let private shapeAndAxis (SmallShape s) =
    let s = if s.Length = 0 then [| 3 |] else s
    s, (s |> Array.sum) % s.Length

// ---------------------------------------------------------------- softmax family

[<Property(Arbitrary = [| typeof<Arbitraries> |], MaxTest = 40)>]
let ``softmax sums to 1 along its axis and lies in (0, 1]`` (shape: SmallShape) (Seed seed) =
    let s, d = shapeAndAxis shape
    let x = randn seed s * 3.0f
    let y = Tensor.softmax d x
    let sums = Tensor.sumDim d y
    assertClose "row sums" 0.0 1e-5 (Tensor.onesLike sums) sums
    y.ToArray() |> Array.forall (fun v -> v > 0.0f && v <= 1.0f)

[<Property(Arbitrary = [| typeof<Arbitraries> |], MaxTest = 40)>]
let ``logSoftmax equals log of softmax`` (shape: SmallShape) (Seed seed) =
    let s, d = shapeAndAxis shape
    let x = randn seed s * 3.0f
    assertClose "logSoftmax" 1e-5 1e-5 (Tensor.log (Tensor.softmax d x)) (Tensor.logSoftmax d x)

[<Test>]
let ``logSoftmax is finite and exact for logits of plus or minus 1e4`` () =
    let x =
        Tensor.ofArray [| 2; 3 |] [| 1e4f; -1e4f; 0.0f; -1e4f; -1e4f; -1e4f + 1.0f |]

    let y = Tensor.logSoftmax 1 x
    Assert.That(Tensor.isFinite y, Is.True, sprintf "%O" y)
    // Row 0: the 1e4 entry takes all mass; the others are their distance below it.
    // Row 1: log softmax of (0, 0, 1) shifted by −1e4 is unchanged by the shift.
    let l = log (2.0 + Math.E)
    let expected = [| 0.0f; -2e4f; -1e4f; f32 -l; f32 -l; f32 (1.0 - l) |]
    assertArraysClose "logSoftmax ±1e4" 1e-6 1e-5 expected (y.ToArray())
    let p = Tensor.softmax 1 x
    Assert.That(Tensor.isFinite p, Is.True)
    // Along axis 0 (the non-contiguous kernel path) as well.
    let yt = Tensor.logSoftmax 0 (Tensor.ofArray [| 2; 1 |] [| 1e4f; -1e4f |])
    assertArraysClose "logSoftmax axis 0" 1e-6 1e-5 [| 0.0f; -2e4f |] (yt.ToArray())
    let lse = Tensor.logsumexp 1 false x
    assertArraysClose "logsumexp ±1e4" 1e-6 1e-3 [| 1e4f; f32 (-1e4 + l) |] (lse.ToArray())

[<Property(Arbitrary = [| typeof<Arbitraries> |], MaxTest = 40)>]
let ``logsumexp is at least the max and at most max plus log n`` (shape: SmallShape) (Seed seed) =
    let s, d = shapeAndAxis shape
    let x = randn seed s * 5.0f
    let lse = (Tensor.logsumexp d false x).ToArray()
    let m = (fst (Tensor.maxDim d false x)).ToArray()
    let logN = MathF.Log(float32 s[d])

    Array.forall2 (fun l mx -> l >= mx - 1e-5f && l <= mx + logN + 1e-4f) lse m
    && (Tensor.logsumexp d true x).Shape = (s |> Array.mapi (fun i v -> if i = d then 1 else v))

[<Test>]
let ``elementwise activations match their formulas`` () =
    let xs = [| -30.0f; -2.0f; -0.5f; 0.0f; 0.5f; 2.0f; 30.0f |]
    let x = Tensor.ofArray [| xs.Length |] xs
    let sigm (v: float) = 1.0 / (1.0 + exp -v)

    let check name (op: Tensor -> Tensor) (f: float -> float) =
        assertArraysClose name 1e-5 1e-6 (xs |> Array.map (fun v -> f32 (f (float v)))) ((op x).ToArray())

    check "softplus" Tensor.softplus (fun v -> Math.Max(v, 0.0) + log (1.0 + exp (-abs v)))
    check "leakyRelu" (Tensor.leakyRelu 0.1f) (fun v -> if v > 0.0 then v else 0.1 * v)
    check "gelu" Tensor.gelu (fun v -> 0.5 * v * (1.0 + tanh (sqrt (2.0 / Math.PI) * (v + 0.044715 * v * v * v))))
    check "silu" Tensor.silu (fun v -> v * sigm v)

[<Property(Arbitrary = [| typeof<Arbitraries> |], MaxTest = 25)>]
let ``activations match finite differences`` (shape: SmallShape) (Seed seed) =
    let s, d = shapeAndAxis shape
    let x = randn seed s
    assertGradCheck "softmax" (fun a -> Tensor.softmax d a[0]) [| x |]
    assertGradCheck "logSoftmax" (fun a -> Tensor.logSoftmax d a[0]) [| x |]
    assertGradCheck "logsumexp" (fun a -> Tensor.logsumexp d false a[0]) [| x |]
    assertGradCheck "logsumexp keep" (fun a -> Tensor.logsumexp d true a[0]) [| x |]
    assertGradCheck "softplus" (fun a -> Tensor.softplus a[0]) [| x |]
    assertGradCheck "gelu" (fun a -> Tensor.gelu a[0]) [| x |]
    assertGradCheck "silu" (fun a -> Tensor.silu a[0]) [| x |]
    // Keep leakyRelu inputs away from its kink by more than the FD step.
    let away =
        Tensor.ofArray s (x.ToArray() |> Array.map (fun v -> if abs v < 0.05f then v + 0.1f else v))

    assertGradCheck "leakyRelu" (fun a -> Tensor.leakyRelu 0.2f a[0]) [| away |]

// ---------------------------------------------------------------- losses

let private labelsFor (seed: int) (n: int) (k: int) =
    Array.init n (fun i -> Rng.intBelow (Rng.create seed) (int64 i) k)

let private asTensor (labels: int[]) =
    Tensor.ofArray [| labels.Length |] (labels |> Array.map float32)

[<Property(Arbitrary = [| typeof<Arbitraries> |], MaxTest = 40)>]
let ``crossEntropy is minus logSoftmax at the label`` (Seed seed) =
    let n, k = 1 + seed % 5, 2 + seed % 4
    let x = randn seed [| n; k |] * 2.0f
    let y = labelsFor seed n k
    let lsm = (Tensor.logSoftmax 1 x).ToArray()
    let direct = y |> Array.mapi (fun i c -> -lsm[i * k + c])
    let none = Tensor.crossEntropyWith Reduction.NoReduction 0.0f x (asTensor y)
    assertArraysClose "per sample" 1e-5 1e-6 direct (none.ToArray())
    assertArraysClose "idx" 1e-5 1e-6 direct ((Tensor.crossEntropyIdxWith Reduction.NoReduction 0.0f x y).ToArray())
    assertArraysClose "mean" 1e-5 1e-6 [| Array.average direct |] [| (Tensor.crossEntropy x (asTensor y)).ToScalar() |]

    assertArraysClose
        "sum"
        1e-5
        1e-5
        [| Array.sum direct |]
        [| (Tensor.crossEntropyWith Reduction.Sum 0.0f x (asTensor y)).ToScalar() |]

[<Property(Arbitrary = [| typeof<Arbitraries> |], MaxTest = 30)>]
let ``label smoothing matches the smoothed soft target and eps 0 is plain CE`` (Seed seed) =
    let n, k = 1 + seed % 4, 2 + seed % 5
    let x = randn seed [| n; k |]
    let y = labelsFor seed n k
    let plain = Tensor.crossEntropy x (asTensor y)
    assertClose "eps 0" 0.0 0.0 plain (Tensor.crossEntropyWith Reduction.Mean 0.0f x (asTensor y))
    let eps = 0.1f

    let oneHot =
        Tensor.ofArray [| n; k |] (Array.init (n * k) (fun j -> if y[j / k] = j % k then 1.0f else 0.0f))

    let smoothed = oneHot * (1.0f - eps) + eps / float32 k

    assertClose
        "eps 0.1"
        1e-5
        1e-6
        (Tensor.crossEntropySoft x smoothed)
        (Tensor.crossEntropyWith Reduction.Mean eps x (asTensor y))

    assertClose
        "soft smoothing"
        1e-5
        1e-6
        (Tensor.crossEntropySoft x smoothed)
        (Tensor.crossEntropySoftWith Reduction.Mean eps x oneHot)
    // One-hot soft targets give integer CE.
    assertClose "one-hot" 1e-5 1e-6 plain (Tensor.crossEntropySoft x oneHot)

[<Test>]
let ``crossEntropy accepts spatial logits with classes on axis 1`` () =
    let x = randn 3 [| 2; 3; 4 |]
    let y = Array.init 8 (fun i -> i % 3)
    let lsm = Tensor.logSoftmax 1 x
    let direct = Array.init 8 (fun j -> -lsm[[| j / 4; y[j]; j % 4 |]])
    let per = Tensor.crossEntropyIdxWith Reduction.NoReduction 0.0f x y
    Assert.That(per.Shape, Eq.To([| 2; 4 |]))
    assertArraysClose "spatial" 1e-5 1e-6 direct (per.ToArray())

[<Test>]
let ``losses match finite differences`` () =
    let x = randn 1 [| 4; 5 |]
    let y = asTensor [| 0; 4; 2; 2 |]
    assertGradCheck "crossEntropy" (fun a -> Tensor.crossEntropy a[0] y) [| x |]
    assertGradCheck "crossEntropy smoothing sum" (fun a -> Tensor.crossEntropyWith Reduction.Sum 0.2f a[0] y) [| x |]
    assertGradCheck "crossEntropy none" (fun a -> Tensor.crossEntropyWith Reduction.NoReduction 0.1f a[0] y) [| x |]
    let xs = randn 2 [| 2; 3; 2 |]
    assertGradCheck "crossEntropy spatial" (fun a -> Tensor.crossEntropyIdx a[0] [| 0; 2; 1; 1 |]) [| xs |]
    let t = Tensor.softmax 1 (randn 3 [| 4; 5 |])

    assertGradCheck
        "crossEntropySoft (logits and targets)"
        (fun a -> Tensor.crossEntropySoftWith Reduction.Mean 0.1f a[0] a[1])
        [| x; t |]

    let logq = Tensor.logSoftmax 1 (randn 4 [| 4; 5 |])
    assertGradCheck "klDiv" (fun a -> Tensor.klDivWith Reduction.Sum a[0] a[1]) [| logq; t |]
    let s = randn 5 [| 4; 5 |]
    assertGradCheck "klDivLogits" (fun a -> Tensor.klDivLogits x a[0] 2.0f) [| s |]
    assertGradCheck "mse" (fun a -> Tensor.mse a[0] a[1]) [| x; s |]
    assertGradCheck "l1" (fun a -> Tensor.l1With Reduction.Sum a[0] a[1]) [| x; s |]
    let p = Tensor.rand (Rng.create 6) [| 4; 5 |]
    assertGradCheck "bce with logits" (fun a -> Tensor.binaryCrossEntropyWithLogits (a[0] * 3.0f) a[1]) [| x; p |]

[<Property(Arbitrary = [| typeof<Arbitraries> |], MaxTest = 40)>]
let ``klDiv is non-negative and zero for equal distributions`` (Seed seed) =
    let p = Tensor.softmax 1 (randn seed [| 3; 4 |] * 2.0f)
    let logq = Tensor.logSoftmax 1 (randn (seed + 1) [| 3; 4 |] * 2.0f)
    let kl = (Tensor.klDivWith Reduction.Sum logq p).ToScalar()
    let self = (Tensor.klDivWith Reduction.Sum (Tensor.log p) p).ToScalar()
    kl >= -1e-6f && abs self < 1e-5f

[<Test>]
let ``klDiv follows PyTorch: zero-probability targets contribute 0 and mean is over elements`` () =
    let p = Tensor.ofArray [| 1; 3 |] [| 0.0f; 0.25f; 0.75f |]

    let logq =
        Tensor.ofArray [| 1; 3 |] [| MathF.Log 0.2f; MathF.Log 0.3f; MathF.Log 0.5f |]

    let per = [| 0.0; 0.25 * log (0.25 / 0.3); 0.75 * log (0.75 / 0.5) |]
    assertArraysClose "none" 1e-5 1e-7 (Array.map f32 per) ((Tensor.klDivWith Reduction.NoReduction logq p).ToArray())
    assertArraysClose "mean" 1e-5 1e-7 [| f32 (Array.average per) |] [| (Tensor.klDiv logq p).ToScalar() |]

[<Property(Arbitrary = [| typeof<Arbitraries> |], MaxTest = 30)>]
let ``klDivLogits is tau squared times the batch-mean KL of tempered softmaxes`` (Seed seed) =
    let b, k = 1 + seed % 4, 2 + seed % 5
    let tau = 1.0f + float32 (seed % 4)
    let t = randn seed [| b; k |] * 3.0f
    let s = randn (seed + 9) [| b; k |] * 3.0f
    let ta, sa = t.ToArray(), s.ToArray()
    let mutable total = 0.0

    for i in 0 .. b - 1 do
        let soft (a: float32[]) =
            let z = Array.init k (fun j -> exp (float a[i * k + j] / float tau)) in
            let zs = Array.sum z in
            z |> Array.map (fun v -> v / zs)

        let pt, ps = soft ta, soft sa

        for j in 0 .. k - 1 do
            total <- total + pt[j] * (log pt[j] - log ps[j])

    let expected = float tau * float tau * total / float b
    let actual = float ((Tensor.klDivLogits t s tau).ToScalar())
    abs (actual - expected) <= 1e-4 + 1e-4 * abs expected

[<Test>]
let ``klDivLogits does not differentiate the teacher`` () =
    let t, s = randn 1 [| 2; 3 |], randn 2 [| 2; 3 |]

    let _, g =
        Diff.valueAndGradN (fun a -> Tensor.klDivLogits a[0] a[1] 2.0f) [| t; s |]

    Assert.That(g[0].ToArray(), Eq.To(Array.zeroCreate<float32> 6))

[<Property(Arbitrary = [| typeof<Arbitraries> |], MaxTest = 40)>]
let ``mse, l1 and bce match direct formulas`` (SmallShape s) (Seed seed) =
    let a, b = randn seed s, randn (seed + 1) s
    let aa, ba = a.ToArray(), b.ToArray()
    let n = float aa.Length

    let direct f =
        Array.fold2 (fun acc x y -> acc + f (float x) (float y)) 0.0 aa ba

    assertArraysClose
        "mse"
        1e-5
        1e-6
        [| f32 (direct (fun x y -> (x - y) ** 2.0) / n) |]
        [| (Tensor.mse a b).ToScalar() |]

    assertArraysClose "l1" 1e-5 1e-6 [| f32 (direct (fun x y -> abs (x - y)) / n) |] [| (Tensor.l1 a b).ToScalar() |]

    assertArraysClose
        "l1 sum"
        1e-5
        1e-5
        [| f32 (direct (fun x y -> abs (x - y))) |]
        [| (Tensor.l1With Reduction.Sum a b).ToScalar() |]

    let p = Tensor.sigmoid b
    let pa = p.ToArray()

    let bce =
        Array.fold2
            (fun acc x t ->
                let sx = 1.0 / (1.0 + exp (-float x)) in acc - (float t * log sx + (1.0 - float t) * log (1.0 - sx)))
            0.0
            aa
            pa

    assertArraysClose "bce" 1e-4 1e-5 [| f32 (bce / n) |] [| (Tensor.binaryCrossEntropyWithLogits a p).ToScalar() |]

[<Test>]
let ``l1 has zero subgradient where prediction equals target and bce is stable for large logits`` () =
    let a = Tensor.ofArray [| 2 |] [| 1.0f; 2.0f |]
    let g = Diff.grad (fun x -> Tensor.l1 x (Tensor.ofArray [| 2 |] [| 1.0f; 0.0f |])) a
    Assert.That(g.ToArray(), Eq.To([| 0.0f; 0.5f |]))
    let big = Tensor.ofArray [| 2 |] [| 100.0f; -100.0f |]

    let l =
        Tensor.binaryCrossEntropyWithLogitsWith Reduction.NoReduction big (Tensor.ofArray [| 2 |] [| 0.0f; 0.0f |])
    // log(1 + e^−100) ≈ e^−100 is still representable (denormal) in float32.
    assertArraysClose "bce large" 1e-6 1e-45 [| 100.0f; MathF.Exp -100.0f |] (l.ToArray())

[<Test>]
let ``losses reject bad labels and shapes, naming the op and the values`` () =
    let x = randn 1 [| 2; 5 |]

    assertRaises<SnnSpecException> [ "crossEntropy"; "7"; "5" ] (fun () ->
        box (Tensor.crossEntropy x (asTensor [| 0; 7 |])))

    assertRaises<SnnSpecException> [ "crossEntropy"; "-1"; "5" ] (fun () ->
        box (Tensor.crossEntropy x (asTensor [| -1; 0 |])))

    assertRaises<SnnSpecException> [ "crossEntropy"; "1.5" ] (fun () ->
        box (Tensor.crossEntropy x (Tensor.ofArray [| 2 |] [| 1.5f; 0.0f |])))

    assertRaises<SnnSpecException> [ "crossEntropyIdx"; "5"; "5 classes" ] (fun () ->
        box (Tensor.crossEntropyIdx x [| 5; 0 |]))

    assertRaises<ShapeMismatchException> [ "crossEntropy"; "[2, 5]"; "[3]" ] (fun () ->
        box (Tensor.crossEntropy x (asTensor [| 0; 1; 2 |])))

    assertRaises<ShapeMismatchException> [ "crossEntropySoft"; "[2, 5]"; "[2, 4]" ] (fun () ->
        box (Tensor.crossEntropySoft x (randn 2 [| 2; 4 |])))

    assertRaises<ShapeMismatchException> [ "mse"; "[2, 5]"; "[5]" ] (fun () -> box (Tensor.mse x (randn 2 [| 5 |])))
    assertRaises<ShapeMismatchException> [ "klDiv" ] (fun () -> box (Tensor.klDiv x (randn 2 [| 5; 2 |])))

    assertRaises<SnnSpecException> [ "labelSmoothing"; "1.5" ] (fun () ->
        box (Tensor.crossEntropyWith Reduction.Mean 1.5f x (asTensor [| 0; 1 |])))

    assertRaises<SnnSpecException> [ "tau" ] (fun () -> box (Tensor.klDivLogits x x 0.0f))

// ---------------------------------------------------------------- batch norm, layer norm

let private bnDefault = BatchNormConfig.Default

/// Per-channel mean and biased variance of x [N, C, S…], computed directly in float64.
let private channelStats (x: Tensor) =
    let s = x.Shape
    let n, c = s[0], s[1]
    let sp = x.Numel / (n * c)
    let a = x.ToArray()

    Array.init c (fun ch ->
        let vals =
            [|
                for b in 0 .. n - 1 do
                    for i in 0 .. sp - 1 -> float a[(b * c + ch) * sp + i]
            |]

        let mu = Array.average vals
        mu, (vals |> Array.averageBy (fun v -> (v - mu) ** 2.0)))

/// [N, C] or [N, C, d…] shapes with 1–4 samples, 1–5 channels and 0–2 small trailing axes, from a seed.
let private momentShape (seed: int) =
    let r = Random seed
    Array.append [| 1 + r.Next 4; 1 + r.Next 5 |] (Array.init (r.Next 3) (fun _ -> 1 + r.Next 4))

[<Property(MaxTest = 60)>]
let ``channelMoments are the per-channel mean and biased variance, with finite-difference gradients`` (seed: uint16) =
    let shape = momentShape (int seed)
    let c = shape[1]
    let x = randn (int seed) shape * 2.0f + 0.5f
    let mu, var = Tensor.channelMoments x

    for ch, (m, v) in Array.indexed (channelStats x) do
        Assert.That(float (mu.ToArray()[ch]), Is.EqualTo(m).Within(1e-5 * (1.0 + abs m)), sprintf "mean %A" shape)
        Assert.That(float (var.ToArray()[ch]), Is.EqualTo(v).Within(1e-5 * (1.0 + v)), sprintf "var %A" shape)

    let wm, wv = randn (int seed + 1) [| c |], randn (int seed + 2) [| c |]

    for what, useMean, useVar in [ "both", true, true; "mean only", true, false; "variance only", false, true ] do
        assertGradCheck
            (sprintf "channelMoments %A, %s" shape what)
            (fun xs ->
                let m, v = Tensor.channelMoments xs[0]

                match useMean, useVar with
                | true, true -> Tensor.sum (m * wm) + Tensor.sum (v * wv)
                | true, false -> Tensor.sum (m * wm)
                | _ -> Tensor.sum (v * wv))
            [| x |]

[<Test>]
let ``channelMoments reads a window at an offset and stays accurate under a large mean`` () =
    // A window of a larger tensor (non-zero offset), values 1000 + 0.01·noise: the gradient of Σ σ²
    // is 2(x − μ)/M, accurate to the float32 spacing at 1000 (6e-5) over the spread (0.01).
    let whole = randn 5 [| 3; 4; 2; 3 |] * 0.01f + 1000.0f
    let x = Tensor.select 0 1 whole |> Tensor.reshape [| 2; 2; 2; 3 |]
    let _, v = Tensor.channelMoments x
    let g = Diff.grad (fun x -> Tensor.sum (snd (Tensor.channelMoments x))) x
    let xa = x.ToArray()
    let m = 2 * 2 * 3

    for ch in 0..1 do
        let idx =
            [
                for b in 0..1 do
                    for i in 0..5 -> (b * 2 + ch) * 6 + i
            ]

        let mu = idx |> List.averageBy (fun i -> float xa[i])
        let var = idx |> List.averageBy (fun i -> (float xa[i] - mu) ** 2.0)
        Assert.That(float (v.ToArray()[ch]), Is.EqualTo(var).Within(2e-2 * var), "variance")

        for i in idx do
            let expected = 2.0 * (float xa[i] - mu) / float m
            // μ itself is a float32: off by up to half its spacing (3e-5), which shifts every 2(x − μ)/M alike.
            let muSpacing = 6.2e-5

            Assert.That(
                float (g.ToArray()[i]),
                Is.EqualTo(expected).Within(1e-2 * abs expected + muSpacing / float m),
                "dσ²/dx"
            )

[<Test>]
let ``channelMoments refuses an input without a channel axis`` () =
    assertRaises<SnnSpecException> [ "Tensor.channelMoments"; "x shape"; "channels on axis 1" ] (fun () ->
        Tensor.channelMoments (Tensor.ones [| 5 |]) |> box)

[<Test>]
let ``batchNorm training output has per-channel mean 0 and biased variance 1`` () =
    for shape in [ [| 8; 3 |]; [| 4; 3; 5 |]; [| 2; 4; 3; 3 |] ] do
        let c = shape[1]
        let x = randn 1 shape * 3.0f + 2.0f

        let y, _ =
            Tensor.batchNorm
                { Momentum = 0.1f; Eps = 0.0f }
                true
                (Tensor.ones [| c |])
                (Tensor.zeros [| c |])
                (BatchNormState.Init c)
                x

        for mu, var in channelStats y do
            Assert.That(mu, Is.EqualTo(0.0).Within(1e-5), sprintf "mean %A" shape)
            Assert.That(var, Is.EqualTo(1.0).Within(1e-4), sprintf "var %A" shape)

[<Test>]
let ``batchNorm updates running stats with momentum and the unbiased variance`` () =
    // One channel, values 1, 2, 3, 6: mean 3, biased var 3.5, unbiased var 14/3.
    let x = Tensor.ofArray [| 2; 1; 2 |] [| 1.0f; 2.0f; 3.0f; 6.0f |]

    let state =
        {
            Mean = Tensor.ofArray [| 1 |] [| 1.0f |]
            Var = Tensor.ofArray [| 1 |] [| 2.0f |]
        }

    let y, st =
        Tensor.batchNorm
            { Momentum = 0.25f; Eps = 0.5f }
            true
            (Tensor.ofArray [| 1 |] [| 2.0f |])
            (Tensor.ofArray [| 1 |] [| 1.0f |])
            state
            x

    assertArraysClose "running mean" 1e-6 0.0 [| 0.75f * 1.0f + 0.25f * 3.0f |] (st.Mean.ToArray())
    assertArraysClose "running var" 1e-6 0.0 [| 0.75f * 2.0f + 0.25f * (14.0f / 3.0f) |] (st.Var.ToArray())

    let expected =
        [| 1.0f; 2.0f; 3.0f; 6.0f |]
        |> Array.map (fun v -> 2.0f * (v - 3.0f) / MathF.Sqrt(3.5f + 0.5f) + 1.0f)

    assertArraysClose "output" 1e-6 1e-6 expected (y.ToArray())
    // The input state is a value: it is not modified.
    Assert.That(state.Mean.ToArray(), Eq.To([| 1.0f |]))

[<Test>]
let ``batchNorm eval uses the running stats and returns the state unchanged`` () =
    let x = randn 2 [| 3; 2; 4 |]

    let state =
        {
            Mean = Tensor.ofArray [| 2 |] [| 0.5f; -1.0f |]
            Var = Tensor.ofArray [| 2 |] [| 4.0f; 0.25f |]
        }

    let gamma, beta =
        Tensor.ofArray [| 2 |] [| 1.5f; -2.0f |], Tensor.ofArray [| 2 |] [| 0.1f; 0.2f |]

    let y, st = Tensor.batchNorm bnDefault false gamma beta state x
    Assert.That(Object.ReferenceEquals(st, state), Is.True)
    let xa = x.ToArray()

    let expected =
        xa
        |> Array.mapi (fun i v ->
            let ch = (i / 4) % 2

            let m, var, g, b =
                [| 0.5f; -1.0f |][ch], [| 4.0f; 0.25f |][ch], [| 1.5f; -2.0f |][ch], [| 0.1f; 0.2f |][ch]

            g * (v - m) / MathF.Sqrt(var + 1e-5f) + b)

    assertArraysClose "eval" 1e-5 1e-6 expected (y.ToArray())

[<Test>]
let ``batchNorm and layerNorm match finite differences`` () =
    let gamma, beta = positive 3 0.5f 1.5f [| 3 |], randn 4 [| 3 |]
    // Normalisation divides by a per-channel std computed from few values, amplifying float32
    // rounding in the finite differences; a smaller step and 5% relative tolerance absorb it.
    let opts =
        { GradCheck.defaults with
            Epsilon = 3e-3f
            RelTol = 5e-2
            AbsTol = 5e-3
        }

    for shape in [ [| 5; 3 |]; [| 3; 3; 4 |] ] do
        let x = randn 5 shape
        let st = BatchNormState.Init 3

        assertGradCheckWith
            opts
            (sprintf "batchNorm train %A" shape)
            (fun a -> fst (Tensor.batchNorm bnDefault true a[1] a[2] st a[0]))
            [| x; gamma; beta |]

        let evalState =
            {
                Mean = randn 6 [| 3 |]
                Var = positive 7 0.5f 2.0f [| 3 |]
            }

        assertGradCheck
            (sprintf "batchNorm eval %A" shape)
            (fun a -> fst (Tensor.batchNorm bnDefault false a[1] a[2] evalState a[0]))
            [| x; gamma; beta |]

    let x = randn 8 [| 2; 3; 4 |]
    let lg, lb = positive 9 0.5f 1.5f [| 3; 4 |], randn 10 [| 3; 4 |]
    assertGradCheckWith opts "layerNorm" (fun a -> Tensor.layerNorm [| 3; 4 |] 1e-5f a[1] a[2] a[0]) [| x; lg; lb |]

[<Test>]
let ``layerNorm normalises the trailing axes`` () =
    let x = randn 11 [| 4; 6 |] * 2.0f + 1.0f
    let y = Tensor.layerNorm [| 6 |] 0.0f (Tensor.ones [| 6 |]) (Tensor.zeros [| 6 |]) x
    let ya = y.ToArray()

    for r in 0..3 do
        let row = Array.sub ya (r * 6) 6 |> Array.map float
        let mu = Array.average row
        Assert.That(mu, Is.EqualTo(0.0).Within(1e-5))
        Assert.That(row |> Array.averageBy (fun v -> (v - mu) ** 2.0), Is.EqualTo(1.0).Within(1e-4))

[<Test>]
let ``batchNorm and layerNorm reject bad parameters and shapes`` () =
    let x = randn 1 [| 4; 3 |]
    let g, b, st = Tensor.ones [| 3 |], Tensor.zeros [| 3 |], BatchNormState.Init 3

    assertRaises<SnnSpecException> [ "batchNorm"; "Momentum"; "1.5" ] (fun () ->
        box (Tensor.batchNorm { Momentum = 1.5f; Eps = 1e-5f } true g b st x))

    assertRaises<SnnSpecException> [ "batchNorm"; "Momentum"; "-0.1" ] (fun () ->
        box (Tensor.batchNorm { Momentum = -0.1f; Eps = 1e-5f } true g b st x))

    assertRaises<ShapeMismatchException> [ "batchNorm"; "[4, 3]"; "[2]"; "gamma" ] (fun () ->
        box (Tensor.batchNorm bnDefault true (Tensor.ones [| 2 |]) b st x))

    assertRaises<ShapeMismatchException> [ "batchNorm"; "running.Var" ] (fun () ->
        box (Tensor.batchNorm bnDefault true g b { st with Var = Tensor.ones [| 4 |] } x))

    assertRaises<SnnSpecException> [ "batchNorm"; "more than 1 value" ] (fun () ->
        box (Tensor.batchNorm bnDefault true g b st (randn 1 [| 1; 3 |])))

    assertRaises<ShapeMismatchException> [ "layerNorm"; "[4, 3]"; "[4]" ] (fun () ->
        box (Tensor.layerNorm [| 4 |] 1e-5f (Tensor.ones [| 4 |]) (Tensor.zeros [| 4 |]) x))

// ---------------------------------------------------------------- dropout

[<Test>]
let ``dropout keeps the expectation, drops about p, and eval is identity`` () =
    let x = Tensor.full [| 200; 500 |] 2.0f
    let p = 0.3f
    let y = Tensor.dropout (Rng.create 7) p true x
    let ya = y.ToArray()
    let dropped = ya |> Array.filter (fun v -> v = 0.0f) |> Array.length
    Assert.That(float dropped / float ya.Length, Is.EqualTo(float p).Within(0.01))
    Assert.That(ya |> Array.forall (fun v -> v = 0.0f || abs (v - 2.0f / 0.7f) < 1e-6f), Is.True)
    // Mean of 1e5 draws: standard error ≈ 2·√(p/(1−p))/√1e5 ≈ 0.004.
    Assert.That(float ((Tensor.mean y).ToScalar()), Is.EqualTo(2.0).Within(0.02))
    // Averaging many independent masks (distinct keys) approaches x elementwise.
    let small = randn 3 [| 10 |]

    let avg =
        (Seq.init 2000 (fun k -> Tensor.dropout (Rng.fold k (Rng.create 1)) 0.5f true small)
         |> Seq.reduce (+))
        / 2000.0f

    assertClose "many draws" 0.0 0.15 small avg
    Assert.That(Object.ReferenceEquals(Tensor.dropout (Rng.create 7) p false x, x), Is.True)
    Assert.That(Object.ReferenceEquals(Tensor.dropout (Rng.create 7) 0.0f true x, x), Is.True)

[<Test>]
let ``dropout masks are reproducible from the key and broadcast masks are shared over time`` () =
    let x = randn 2 [| 4; 2; 3 |]
    let a = Tensor.dropout (Rng.create 5) 0.5f true x
    let b = Tensor.dropout (Rng.create 5) 0.5f true x
    let c = Tensor.dropout (Rng.create 6) 0.5f true x
    Assert.That(a.ToArray(), Eq.To(b.ToArray()))
    Assert.That(a.ToArray(), Is.Not.EqualTo(c.ToArray()))
    // [T, B, C] with a [1, B, C] mask: every time step drops the same units.
    let shared = Tensor.dropoutBroadcast (Rng.create 5) 0.5f true [| 1; 2; 3 |] x
    let mask = (Tensor.dropoutMask (Rng.create 5) 0.5f [| 1; 2; 3 |]).ToArray()
    let xa, sa = x.ToArray(), shared.ToArray()

    for i in 0 .. xa.Length - 1 do
        Assert.That(sa[i], Is.EqualTo(xa[i] * mask[i % 6]))

    Assert.That(Object.ReferenceEquals(Tensor.dropoutBroadcast (Rng.create 5) 0.5f false [| 1; 2; 3 |] x, x), Is.True)

[<Test>]
let ``dropout gradients are the mask`` () =
    let x = randn 3 [| 3; 4 |]
    assertGradCheck "dropout" (fun a -> Tensor.dropout (Rng.create 9) 0.4f true a[0]) [| x |]

    assertGradCheck
        "dropoutBroadcast"
        (fun a -> Tensor.dropoutBroadcast (Rng.create 9) 0.4f true [| 1; 4 |] a[0])
        [| x |]

    let g =
        Diff.grad (fun a -> Tensor.sum (Tensor.dropout (Rng.create 9) 0.4f true a)) x

    Assert.That(g.ToArray(), Eq.To((Tensor.dropoutMask (Rng.create 9) 0.4f [| 3; 4 |]).ToArray()))

[<Test>]
let ``dropout rejects p outside 0 to 1 and incompatible mask shapes`` () =
    let x = randn 1 [| 2; 3 |]

    for p in [ -0.1f; 1.0f; 1.5f; Single.NaN ] do
        assertRaises<SnnSpecException> [ "dropout"; "p" ] (fun () -> box (Tensor.dropout (Rng.create 1) p true x))

    assertRaises<SnnSpecException> [ "dropout"; "1.0" ] (fun () -> box (Tensor.dropout (Rng.create 1) 1.0f false x))

    assertRaises<ShapeMismatchException> [ "dropoutBroadcast"; "[2, 3]" ] (fun () ->
        box (Tensor.dropoutBroadcast (Rng.create 1) 0.5f true [| 2; 3; 1 |] x))

    assertRaises<ShapeMismatchException> [ "dropoutBroadcast"; "[4]" ] (fun () ->
        box (Tensor.dropoutBroadcast (Rng.create 1) 0.5f true [| 4 |] x))

/// γ [C] placed on axis 1 of bshape = [1, C, 1, …], differentiably (no reshape op yet):
/// Σⱼ onehot[1, i, 1, …, j]·γⱼ = γᵢ.
let private perChannelView (bshape: int[]) (t: Tensor) =
    let c = t.Numel

    let oneHot =
        Tensor.ofArray
            (Array.append bshape [| c |])
            (Array.init (c * c) (fun j -> if j / c = j % c then 1.0f else 0.0f))

    Tensor.sumDim -1 (oneHot * t)

[<Test>]
let ``fused kernels agree with composite ops and do not depend on the thread count`` () =
    let saved = Kernels.Threads.Count

    let run () =
        let l = randn 1 [| 300; 130 |]
        let v = randn 2 [| 40; 50; 30 |]
        let xs = randn 3 [| 64; 40 |] * 2.0f + 1.0f
        let xc = randn 4 [| 16; 6; 200 |]

        let bn (x: Tensor) =
            let c = x.Shape[1]
            let gamma, beta = positive 5 0.5f 1.5f [| c |], randn 6 [| c |]

            let f (a: Tensor[]) =
                fst (Tensor.batchNorm BatchNormConfig.Default true a[1] a[2] (BatchNormState.Init c) a[0])

            let w = randn 7 x.Shape
            let y, g = Diff.valueAndGradN (fun a -> Tensor.sum (f a * w)) [| x; gamma; beta |]
            // Composite reference: the same equation through generic ops and their own backward rules.
            let reference (a: Tensor[]) =
                let dims = Array.append [| 0 |] [| 2 .. x.Rank - 1 |]
                let bshape = Array.init x.Rank (fun i -> if i = 1 then c else 1)
                let centred = a[0] - Tensor.meanDims dims true a[0]
                let var = Tensor.meanDims dims true (centred * centred)

                centred / Tensor.sqrt (var + 1e-5f) * perChannelView bshape a[1]
                + perChannelView bshape a[2]

            let yr, gr =
                Diff.valueAndGradN (fun a -> Tensor.sum (reference a * w)) [| x; gamma; beta |]

            assertClose "bn value" 1e-4 1e-3 yr y
            assertClose "bn dx" 1e-3 1e-4 gr[0] g[0]
            assertClose "bn dgamma" 1e-3 1e-3 gr[1] g[1]
            assertClose "bn dbeta" 1e-3 1e-3 gr[2] g[2]

            [
                (f [| x; gamma; beta |]).ToArray()
                g[0].ToArray()
                g[1].ToArray()
                g[2].ToArray()
            ]

        [
            (Tensor.softmax 1 l).ToArray()
            (Tensor.logSoftmax 1 v).ToArray()
            (Tensor.logsumexp 0 false v).ToArray()
            (Diff.grad (fun a -> Tensor.crossEntropyIdx a (Array.init 300 (fun i -> i % 130))) l).ToArray()
        ]
        @ bn xs
        @ bn xc

    try
        Kernels.Threads.Count <- 1
        let one = run ()
        Kernels.Threads.Count <- 4
        let four = run ()
        List.iter2 (fun (a: float32[]) (b: float32[]) -> Assert.That(b, Eq.To a)) one four
    finally
        Kernels.Threads.Count <- saved
