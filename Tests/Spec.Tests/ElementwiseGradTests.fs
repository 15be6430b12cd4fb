module SnnSpec.Tests.ElementwiseGradTests

open System
open NUnit.Framework
open FsCheck
open FsCheck.NUnit
open SnnSpec
open SnnSpec.Tests.TestUtil
open SnnSpec.Tests.Generators

let private binaryOps: (string * (Tensor -> Tensor -> Tensor)) list =
    [
        "add", (+)
        "sub", (-)
        "mul", (*)
        "div", (fun a b -> a / (b * b + 0.5f))
        "pow", (fun a b -> Tensor.powT (a * a + 0.5f) b)
        "maximum", Tensor.maximum
        "minimum", Tensor.minimum
    ]

[<Property(Arbitrary = [| typeof<Arbitraries> |], MaxTest = 40)>]
let ``binary ops with broadcasting match finite differences`` (BroadcastPair(sa, sb, seed)) =
    for name, op in binaryOps do
        let a = randn seed sa
        let b = randn (seed + 7) sb
        // maximum/minimum have a kink where a = b: check only inputs separated by more than the FD step.
        let separated = (Tensor.min (Tensor.abs (a - b))).ToScalar() > 0.05f

        if separated || not (name = "maximum" || name = "minimum") then
            assertGradCheck (sprintf "%s %A %A" name sa sb) (fun xs -> op xs[0] xs[1]) [| a; b |]

let private unaryOps: (string * (Tensor -> Tensor) * (Tensor -> Tensor)) list =
    // name, op, input map keeping the input inside the op's smooth domain
    [
        "exp", Tensor.exp, id
        "log", Tensor.log, (fun x -> Tensor.abs x + 0.5f)
        "log1p", Tensor.log1p, Tensor.abs
        "tanh", Tensor.tanh, id
        "sigmoid", Tensor.sigmoid, id
        "relu", Tensor.relu, id
        "abs", Tensor.abs, id
        "sqrt", Tensor.sqrt, (fun x -> Tensor.abs x + 0.5f)
        "sin", Tensor.sin, id
        "cos", Tensor.cos, id
        "square", Tensor.square, id
        "pow 3", Tensor.pow 3.0f, id
        "pow -1.5", Tensor.pow -1.5f, (fun x -> Tensor.abs x + 0.5f)
        "neg", Tensor.neg, id
        "clamp", Tensor.clamp -0.5f 0.7f, id
        "scalar arithmetic", (fun x -> 2.0f - x * 3.0f / 4.0f + 1.0f), id
        "scalar over tensor", (fun x -> 2.0f / x), (fun x -> Tensor.abs x + 0.5f)
    ]

[<Property(Arbitrary = [| typeof<Arbitraries> |], MaxTest = 30)>]
let ``unary ops match finite differences`` (SmallShape s) (Seed seed) =
    for name, op, domain in unaryOps do
        // Keep inputs away from kinks (relu, abs, clamp) by more than the FD step.
        let x =
            (randn seed s).ToArray()
            |> Array.map (fun v ->
                if abs v < 0.05f then
                    v + 0.1f
                else if abs (v + 0.5f) < 0.05f || abs (v - 0.7f) < 0.05f then
                    v + 0.11f
                else
                    v)
            |> Tensor.ofArray s
            |> domain
            |> Diff.detach

        assertGradCheck (sprintf "%s %A" name s) (fun xs -> op xs[0]) [| x |]

[<Property(Arbitrary = [| typeof<Arbitraries> |], MaxTest = 30)>]
let ``reductions match finite differences`` (SmallShape s) (Seed seed) =
    let x = randn seed s
    assertGradCheck "sum" (fun xs -> Tensor.sum xs[0]) [| x |]
    assertGradCheck "mean" (fun xs -> Tensor.mean xs[0]) [| x |]

    if s.Length > 0 then
        let d = seed % s.Length
        assertGradCheck "sumDims keep" (fun xs -> Tensor.sumDims [| d |] true xs[0] * xs[0]) [| x |]
        assertGradCheck "meanDims" (fun xs -> Tensor.meanDims [| d |] false xs[0]) [| x |]
        let distinct = distinctValues seed s

        assertGradCheck "maxDim" (fun xs -> fst (Tensor.maxDim d false xs[0])) [| distinct |]
        assertGradCheck "minDim" (fun xs -> fst (Tensor.minDim d true xs[0])) [| distinct |]
        assertGradCheck "max" (fun xs -> Tensor.max xs[0]) [| distinct |]

        if s[d] > 1 then
            assertGradCheck "varDims" (fun xs -> Tensor.varDims [| d |] true false xs[0]) [| x |]

        let e = (seed / 7) % s.Length

        if e <> d then
            assertGradCheck "sumDims two axes" (fun xs -> Tensor.sumDims [| e; d |] false (xs[0] * xs[0])) [| x |]

[<Test>]
let ``sum, mean and var agree with direct computation`` () =
    let x = Tensor.ofArray [| 2; 3 |] [| 1.0f; 2.0f; 3.0f; 4.0f; 5.0f; 9.0f |]
    Assert.That((Tensor.sum x).ToScalar(), Eq.To 24.0f)
    Assert.That((Tensor.sumDims [| 0 |] false x).ToArray(), Eq.To([| 5.0f; 7.0f; 12.0f |]))
    Assert.That((Tensor.meanDims [| 1 |] true x).Shape, Eq.To([| 2; 1 |]))
    Assert.That((Tensor.meanDims [| 1 |] true x).ToArray(), Eq.To([| 2.0f; 6.0f |]))
    Assert.That((Tensor.varDims [| 1 |] true false x).ToArray(), Eq.To([| 1.0f; 7.0f |]))
    Assert.That((Tensor.varDims [| 1 |] false false x).ToArray().[0], Eq.To(2.0f / 3.0f).Within(1e-6))
    let v, i = Tensor.maxDim 1 false x
    Assert.That(v.ToArray(), Eq.To([| 3.0f; 9.0f |]))
    Assert.That(i.ToArray(), Eq.To([| 2.0f; 2.0f |]))

[<Test>]
let ``comparisons and where select elementwise`` () =
    let a = Tensor.ofArray [| 3 |] [| 1.0f; 2.0f; 3.0f |]
    let b = Tensor.ofArray [| 3 |] [| 2.0f; 2.0f; 2.0f |]
    Assert.That((Tensor.gt a b).ToArray(), Eq.To([| 0.0f; 0.0f; 1.0f |]))
    Assert.That((Tensor.ge a b).ToArray(), Eq.To([| 0.0f; 1.0f; 1.0f |]))
    Assert.That((Tensor.eq a b).ToArray(), Eq.To([| 0.0f; 1.0f; 0.0f |]))
    Assert.That((Tensor.where (Tensor.lt a b) a b).ToArray(), Eq.To([| 1.0f; 2.0f; 2.0f |]))

    let g =
        Diff.gradN (fun xs -> Tensor.sum (Tensor.where (Tensor.lt a b) xs[0] xs[1])) [| a; b |]

    Assert.That(g[0].ToArray(), Eq.To([| 1.0f; 0.0f; 0.0f |]))
    Assert.That(g[1].ToArray(), Eq.To([| 0.0f; 1.0f; 1.0f |]))

[<Test>]
let ``where selects without letting an inf or NaN of the branch not taken leak`` () =
    let cond = Tensor.ofArray [| 3 |] [| 1.0f; 0.0f; 1.0f |]
    let a = Tensor.ofArray [| 3 |] [| 1.0f; 2.0f; 3.0f |]
    let b = Tensor.ofArray [| 3 |] [| -infinityf; 5.0f; nanf |]
    Assert.That((Tensor.where cond a b).ToArray(), Eq.To([| 1.0f; 5.0f; 3.0f |]))
    // Broadcast: a scalar branch and a row condition.
    let wide =
        Tensor.where
            (Tensor.ofArray [| 1; 3 |] [| 0.0f; 1.0f; 0.0f |])
            (Tensor.ofArray [| 2; 1 |] [| nanf; 7.0f |])
            (Tensor.scalar 9.0f)

    Assert.That(wide.ToArray().[1], Is.NaN)

    Assert.That(
        wide.ToArray()
        |> Array.indexed
        |> Array.filter (fun (i, _) -> i <> 1)
        |> Array.map snd,
        Eq.To([| 9.0f; 9.0f; 9.0f; 7.0f; 9.0f |])
    )

    let g = Diff.gradN (fun xs -> Tensor.sum (Tensor.where cond xs[0] xs[1])) [| a; b |]
    Assert.That(g[0].ToArray(), Eq.To([| 1.0f; 0.0f; 1.0f |]))
    Assert.That(g[1].ToArray(), Eq.To([| 0.0f; 1.0f; 0.0f |]))

    assertGradCheck
        "where, broadcast"
        (fun xs -> Tensor.sum (Tensor.square (Tensor.where (Tensor.gt xs[0] (Tensor.scalar 0.0f)) xs[0] xs[1])))
        [| randn 3 [| 2; 3 |]; randn 4 [| 3 |] |]

[<Test>]
let ``division by a broadcast scalar agrees with same-shape division, subnormal divisors included`` () =
    let x = Tensor.ofArray [| 2 |] [| 1e-39f; 2e-39f |]

    for d in [ 1e-39f; 3.0f; 1e38f; -7.0f ] do
        let same = (x / Tensor.ofArray [| 2 |] [| d; d |]).ToArray()
        let broadcast = (x / Tensor.ofArray [| 1 |] [| d |]).ToArray()
        let scalar = (x / d).ToArray()

        for v, w in Array.append (Array.zip same broadcast) (Array.zip same scalar) do
            Assert.That(float (abs (v - w)), Is.LessThanOrEqualTo(float (abs v) * 2.4e-7), sprintf "divisor %g" d)

    Assert.That((x / Tensor.ofArray [| 1 |] [| 1e-39f |]).ToArray(), Eq.To([| 1.0f; 2.0f |]))

[<Test>]
let ``sums over an empty axis are 0 and read nothing, means are NaN`` () =
    let m = Tensor.ofArray [| 4; 3 |] [| 1.0f .. 12.0f |]
    let empty = Tensor.narrow 0 1 0 m
    Assert.That(empty.Shape, Eq.To [| 0; 3 |])
    Assert.That((Tensor.sumDims [| 0 |] false empty).ToArray(), Eq.To([| 0.0f; 0.0f; 0.0f |]))
    Assert.That((Tensor.sumDims [| 0 |] false (Tensor.zeros [| 0; 3 |])).ToArray(), Eq.To([| 0.0f; 0.0f; 0.0f |]))

    Assert.That(
        (Tensor.sumDims [| 1 |] false (Tensor.zeros [| 2; 0; 3 |])).ToArray(),
        Eq.To(Array.zeroCreate<float32> 6)
    )

    Assert.That(
        (Tensor.meanDims [| 1 |] false (Tensor.zeros [| 2; 0; 3 |])).ToArray()
        |> Array.forall Single.IsNaN
    )

    let g =
        Diff.grad
            (fun x -> Tensor.sum (x + Tensor.sumDims [| 0 |] false (Tensor.zeros [| 0; 3 |])))
            (randn 2 [| 1; 3 |])

    Assert.That(g.ToArray(), Eq.To([| 1.0f; 1.0f; 1.0f |]))

[<Test>]
let ``round with STE passes the gradient and plain round blocks it`` () =
    let x = Tensor.ofArray [| 3 |] [| 0.4f; 1.5f; -2.6f |]
    Assert.That((Tensor.round x).ToArray(), Eq.To([| 0.0f; 2.0f; -3.0f |]))
    Assert.That((Diff.grad (fun x -> Tensor.sum (Tensor.roundSte x)) x).ToArray(), Eq.To([| 1.0f; 1.0f; 1.0f |]))
    Assert.That((Diff.grad (fun x -> Tensor.sum (Tensor.round x + x)) x).ToArray(), Eq.To([| 1.0f; 1.0f; 1.0f |]))

[<Test>]
let ``exp and sigmoid match MathF to a few ulps, with IEEE edges`` () =
    let n = 4099
    let xs = Array.init n (fun i -> -90.0f + 180.0f * float32 i / float32 (n - 1))

    let edges =
        [|
            -1000.0f
            -87.5f
            88.8f
            1000.0f
            Single.NaN
            Single.PositiveInfinity
            Single.NegativeInfinity
            0.0f
        |]

    let all = Array.append xs edges
    let t = Tensor.ofArray [| all.Length |] all
    let e = (Tensor.exp t).ToArray()
    let s = (Tensor.sigmoid t).ToArray()

    for i in 0 .. all.Length - 1 do
        let x = all[i]
        let ee = MathF.Exp x
        let es = 1.0f / (1.0f + MathF.Exp(-x))

        let close (a: float32) (b: float32) =
            (Single.IsNaN a && Single.IsNaN b)
            || a = b
            || abs (a - b) <= 4e-7f * abs b
            || (abs b < 1.2e-38f && abs a < 1.2e-38f)

        if not (close e[i] ee) then
            Assert.Fail(sprintf "exp(%g) = %g, expected %g" x e[i] ee)

        if not (close s[i] es) then
            Assert.Fail(sprintf "sigmoid(%g) = %g, expected %g" x s[i] es)
