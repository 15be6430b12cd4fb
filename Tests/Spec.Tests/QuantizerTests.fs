module SnnSpec.Tests.QuantizerTests

open System
open NUnit.Framework
open FsCheck
open FsCheck.FSharp
open FsCheck.NUnit
open SnnSpec
open SnnSpec.Tests.TestUtil

type QCase = QCase of bits: int * alpha: float32 * seed: int

type QuantArbs =
    static member QCase() =
        gen {
            let! bits = Gen.choose (2, 8)
            let! alphaPct = Gen.choose (5, 100)
            let! seed = Gen.choose (0, 100000)
            return QCase(bits, float32 alphaPct / 100.0f, seed)
        }
        |> Arb.fromGen

let private weights seed = randn seed [| 257 |] * 1.5f

[<Property(Arbitrary = [| typeof<QuantArbs> |])>]
let ``MINT outputs lie on the grid (α/Q)·{−Q…Q} and within ±α`` (QCase(bits, alpha, seed)) =
    let q = float32 (Quantizer.levels bits)

    let out =
        (Quantizer.mint (Bits.Fixed bits) (Tensor.scalar alpha) (weights seed)).ToArray()

    out
    |> Array.forall (fun v ->
        let code = v * q / alpha

        abs (code - MathF.Round code) < 1e-3f
        && abs code <= q + 1e-3f
        && abs v <= alpha * (1.0f + 1e-6f))

[<Property(Arbitrary = [| typeof<QuantArbs> |])>]
let ``MINT is odd and has at most 2^b − 1 distinct values`` (QCase(bits, alpha, seed)) =
    let w = weights seed
    let qa = Quantizer.mint (Bits.Fixed bits) (Tensor.scalar alpha) w
    let qb = Quantizer.mint (Bits.Fixed bits) (Tensor.scalar alpha) (-w)
    let distinct = qa.ToArray() |> Array.distinct |> Array.length

    Array.forall2 (fun (a: float32) b -> a = -b) (qa.ToArray()) (qb.ToArray())
    && distinct <= (1 <<< bits) - 1

[<Property(Arbitrary = [| typeof<QuantArbs> |])>]
let ``MINT's weight gradient is zero outside the clamp range and (1 − tanh²) inside`` (QCase(bits, alpha, seed)) =
    let w = weights seed

    let g =
        Diff.grad (fun w -> Tensor.sum (Quantizer.mint (Bits.Fixed bits) (Tensor.scalar alpha) w)) w

    // A weight whose |tanh w| is within float rounding of α may fall on either side of the clamp
    // (the kernel's tanh and MathF.Tanh differ in the last bits): either gradient is right there.
    let inside (t: float32) (gv: float32) = abs (gv - (1.0f - t * t)) < 1e-5f

    Array.forall2
        (fun (wv: float32) (gv: float32) ->
            let t = MathF.Tanh wv

            if abs (abs t - alpha) < 1e-6f then gv = 0.0f || inside t gv
            elif abs t > alpha then gv = 0.0f
            else inside t gv)
        (w.ToArray())
        (g.ToArray())

/// The straight-through gradient of α is by design the derivative of the forward with the
/// rounding residual round(v) − v held at its value: q̃(a) = (a/Q)·(Q·c(a) + r), r fixed. Check it
/// against central differences of q̃; and check that the true forward, away from rounding
/// boundaries, changes with α at rate round(v)/Q (the residual's derivative is what STE adds).
[<Property(Arbitrary = [| typeof<QuantArbs> |], MaxTest = 40)>]
let ``MINT's scale gradient matches finite differences of the straight-through relaxation`` (QCase(bits, alpha, seed)) =
    let q = float32 (Quantizer.levels bits)
    let eps = 1e-3f
    // Both checks need the clamp edge |tanh w| = a to stay clear of [α − ε, α + ε].
    let ws =
        (weights seed).ToArray()
        |> Array.filter (fun w -> abs (abs (MathF.Tanh w) - alpha) > 4.0f * eps)

    let c (a: float32) (w: float32) =
        Math.Clamp(MathF.Tanh w / a, -1.0f, 1.0f)

    let residual = ws |> Array.map (fun w -> MathF.Round(q * c alpha w) - q * c alpha w)

    let relaxed (a: float32) =
        Array.map2 (fun w r -> float (a / q * (q * c a w + r))) ws residual |> Array.sum

    let numeric = (relaxed (alpha + eps) - relaxed (alpha - eps)) / (2.0 * float eps)
    let w = Tensor.ofArray [| ws.Length |] ws

    let analytic =
        (Diff.grad (fun a -> Tensor.sum (Quantizer.mint (Bits.Fixed bits) a w)) (Tensor.scalar alpha)).ToScalar()
    // Undo MINT's gradient rescaling 1/√(numel·Q) to compare with the raw derivative.
    let raw = float analytic * sqrt (float ws.Length * float q)
    // The true forward away from rounding boundaries: d/dα Σ q = Σ round(v)/Q (inside) or ±1 (outside).
    let safe =
        ws
        |> Array.filter (fun w -> MathF.Round(q * c (alpha - eps) w) = MathF.Round(q * c (alpha + eps) w))

    let f (a: float32) =
        safe |> Array.sumBy (fun w -> float (a / q * MathF.Round(q * c a w)))

    let trueNumeric = (f (alpha + eps) - f (alpha - eps)) / (2.0 * float eps)

    let trueExpected =
        safe |> Array.sumBy (fun w -> float (MathF.Round(q * c alpha w) / q))

    abs (numeric - raw) <= 1e-2 * (1.0 + abs numeric)
    && abs (trueNumeric - trueExpected) <= 1e-2 * (1.0 + abs trueExpected)

[<Test>]
let ``MINT's scale gradient is round(v)/Q − x inside and ±1 outside, times the LSQ rescaling`` () =
    let alpha = 0.5f
    let w = Tensor.ofArray [| 2 |] [| 0.2f; 2.0f |]

    let g =
        Diff.grad (fun a -> Tensor.sum (Quantizer.mint (Bits.Fixed 3) a w)) (Tensor.scalar alpha)

    let q = 3.0f
    let x = MathF.Tanh 0.2f / alpha
    let expectedRaw = MathF.Round(q * x) / q - x + 1.0f
    Assert.That(g.ToScalar(), Is.EqualTo(expectedRaw / MathF.Sqrt(2.0f * q)).Within(1e-6f))

[<Test>]
let ``binary and ternary special cases`` () =
    let w = randn 3 [| 100 |]
    let alpha = Tensor.scalar 0.4f

    let b =
        (Quantizer.mint (Bits.Fixed 1) alpha w).ToArray()
        |> Array.distinct
        |> Array.sort

    Assert.That(b, Eq.To [| -0.4f; 0.4f |])

    let t =
        (Quantizer.mint (Bits.Fixed 2) alpha w).ToArray()
        |> Array.distinct
        |> Array.sort

    Assert.That(t, Eq.To [| -0.4f; 0.0f; 0.4f |])

[<Property(Arbitrary = [| typeof<QuantArbs> |])>]
let ``uniform symmetric quantization errs by at most half a step inside the range and is idempotent``
    (QCase(bits, alpha, seed))
    =
    let x = randn seed [| 300 |]
    let step = Tensor.scalar (alpha / 4.0f)
    let q = float32 (Quantizer.levels bits)
    let once = Quantizer.symmetric (Bits.Fixed bits) step x
    let twice = Quantizer.symmetric (Bits.Fixed bits) step once
    let s = alpha / 4.0f

    once = twice
    && Array.forall2
        (fun (xv: float32) (qv: float32) -> abs xv > q * s || abs (xv - qv) <= s / 2.0f + 1e-6f)
        (x.ToArray())
        (once.ToArray())
    && (once.ToArray() |> Array.distinct |> Array.length) <= (1 <<< bits) - 1

[<Property(Arbitrary = [| typeof<QuantArbs> |])>]
let ``per-channel symmetric steps and asymmetric grids keep their laws`` (QCase(bits, _, seed)) =
    let x = randn seed [| 4; 3; 5 |]
    let s = Quantizer.calibrateSymmetric bits true x
    let q = Quantizer.symmetric (Bits.Fixed bits) s x
    let step, zero = Quantizer.calibrateAsymmetric bits x
    let qa = Quantizer.asymmetric (Bits.Fixed bits) step zero x
    let sv = step.ToScalar()

    s.Shape = [| 4; 1; 1 |]
    && Quantizer.symmetric (Bits.Fixed bits) s q = q
    && (qa.ToArray() |> Array.distinct |> Array.length) <= (1 <<< bits)
    && Array.forall2
        (fun (xv: float32) (qv: float32) -> abs (xv - qv) <= sv / 2.0f + 1e-5f)
        (x.ToArray())
        (qa.ToArray())

[<Test>]
let ``uniform step gradient is LSQ's: round(x/s) − x/s inside, −Q or Q outside, then rescaled`` () =
    let x = Tensor.ofArray [| 3 |] [| 0.37f; 5.0f; -9.0f |]
    let s = 0.25f
    let q = 7.0f

    let g =
        Diff.grad (fun st -> Tensor.sum (Quantizer.symmetric (Bits.Fixed 4) st x)) (Tensor.scalar s)

    let inside = MathF.Round(0.37f / s) - 0.37f / s
    let expected = (inside + q - q) / MathF.Sqrt(3.0f * q)
    Assert.That(g.ToScalar(), Is.EqualTo(expected).Within(1e-5f))

    let gx =
        Diff.grad (fun x -> Tensor.sum (Quantizer.symmetric (Bits.Fixed 4) (Tensor.scalar s) x)) x

    Assert.That(gx.ToArray(), Eq.To [| 1.0f; 0.0f; 0.0f |])

[<Test>]
let ``full precision is the identity and bad widths or scales raise clear errors`` () =
    let w = randn 1 [| 10 |]
    Assert.That(Quantizer.mint Bits.FullPrecision (Tensor.scalar 1.0f) w, Eq.To w)
    Assert.That(Quantizer.symmetric Bits.FullPrecision (Tensor.scalar 1.0f) w, Eq.To w)

    assertRaises<SnnSpecException> [ "bits"; "17"; "1…16" ] (fun () ->
        box (Quantizer.mint (Bits.Fixed 17) (Tensor.scalar 1.0f) w))

    assertRaises<SnnSpecException> [ "bits"; "0" ] (fun () ->
        box (Quantizer.symmetric (Bits.Fixed 0) (Tensor.scalar 1.0f) w))

    assertRaises<SnnSpecException> [ "scale"; "positive" ] (fun () ->
        box (Quantizer.mint (Bits.Fixed 4) (Tensor.scalar 0.0f) w))

    assertRaises<SnnSpecException> [ "scale" ] (fun () ->
        box (Quantizer.symmetric (Bits.Fixed 4) (Tensor.scalar Single.NaN) w))
