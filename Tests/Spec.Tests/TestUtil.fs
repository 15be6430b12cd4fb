module SnnSpec.Tests.TestUtil

open System
open NUnit.Framework
open SnnSpec

/// Asserts two float arrays agree within atol + rtol·|expected|, naming the first bad index.
let assertArraysClose (what: string) (rtol: float) (atol: float) (expected: float32[]) (actual: float32[]) =
    if expected.Length <> actual.Length then
        Assert.Fail(sprintf "%s: length %d vs %d" what expected.Length actual.Length)

    for i in 0 .. expected.Length - 1 do
        let e = float expected[i]
        let a = float actual[i]

        let ok =
            (Double.IsNaN e && Double.IsNaN a)
            || e = a
            || abs (e - a) <= atol + rtol * abs e

        if not ok then
            Assert.Fail(sprintf "%s: element %d expected %g, got %g" what i e a)

/// Asserts two tensors have the same shape and values within tolerance.
let assertClose (what: string) (rtol: float) (atol: float) (expected: Tensor) (actual: Tensor) =
    if expected.Shape <> actual.Shape then
        Assert.Fail(sprintf "%s: shape %A vs %A" what expected.Shape actual.Shape)

    assertArraysClose what rtol atol (expected.ToArray()) (actual.ToArray())

/// Asserts that f's analytic gradients match central finite differences.
let assertGradCheckWith (opts: GradCheck.Options) (what: string) (f: Tensor[] -> Tensor) (xs: Tensor[]) =
    let r = GradCheck.checkWith opts f xs

    if not r.Passed then
        Assert.Fail(
            sprintf
                "%s: gradient check failed (max abs %g, max rel %g); worst %s"
                what
                r.MaxAbsError
                r.MaxRelError
                r.Worst
        )

let assertGradCheck what f xs =
    assertGradCheckWith GradCheck.defaults what f xs

/// Asserts that running f raises an exception of type 'E (or a subtype) whose message contains every fragment.
let assertRaises<'E when 'E :> exn> (fragments: string list) (f: unit -> obj) =
    let ex = Assert.Catch<'E>(fun () -> f () |> ignore)

    for fragment in fragments do
        if not (ex.Message.Contains fragment) then
            Assert.Fail(sprintf "message %A does not mention %A" ex.Message fragment)

/// A tensor of the given shape with normal values from a seed.
let randn (seed: int) (shape: int[]) = Tensor.randn (Rng.create seed) shape

/// A permutation of evenly spaced values centred on 0, for ops with a kink wherever two inputs tie
/// (max, top-k, max pooling). The spacing (0.1, or 8/n when that is smaller) stays well above the shift a
/// default finite-difference step gives an element (ε = 0.01 along a coordinate, a few ε/√n along a random
/// unit direction), so no arg-max moves; magnitudes stay within 4, so float32 rounding of the shifted
/// inputs stays far below the tolerance (values up to 40 once broke a check by rounding alone).
let distinctValues (seed: int) (shape: int[]) =
    let n = Array.fold (*) 1 shape
    let spacing = min 0.1f (8.0f / float32 n)

    Rng.permutation n (Rng.create seed)
    |> Array.map (fun i -> spacing * (float32 i - float32 (n - 1) / 2.0f))
    |> Tensor.ofArray shape

/// Values bounded away from 0 (for log, sqrt, division): uniform in [lo, hi].
let positive (seed: int) (lo: float32) (hi: float32) (shape: int[]) =
    Tensor.uniform (Rng.create seed) lo hi shape

/// NUnit's Is.EqualTo with the argument taken as obj (F# cannot pick among its generic overloads for arrays).
[<AbstractClass; Sealed>]
type Eq =
    static member To(expected: obj) = Is.EqualTo expected
