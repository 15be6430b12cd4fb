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

/// Values bounded away from 0 (for log, sqrt, division): uniform in [lo, hi].
let positive (seed: int) (lo: float32) (hi: float32) (shape: int[]) =
    Tensor.uniform (Rng.create seed) lo hi shape

/// NUnit's Is.EqualTo with the argument taken as obj (F# cannot pick among its generic overloads for arrays).
[<AbstractClass; Sealed>]
type Eq =
    static member To(expected: obj) = Is.EqualTo expected
