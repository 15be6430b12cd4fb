module SnnSpec.Tests.LinalgTests

open NUnit.Framework
open FsCheck
open FsCheck.FSharp
open FsCheck.NUnit
open SnnSpec
open SnnSpec.Tests.TestUtil
open SnnSpec.Tests.Generators

/// Naive [m,k]·[k,n] in float64 as an oracle.
let private naive (a: float32[]) (b: float32[]) m k n =
    Array.init (m * n) (fun ij ->
        let i, j = ij / n, ij % n
        let mutable s = 0.0

        for p in 0 .. k - 1 do
            s <- s + float a[i * k + p] * float b[p * n + j]

        float32 s)

type Dims = Dims of int * int * int * int

type LinalgArbs =
    static member Dims() =
        gen {
            let! m = Gen.choose (1, 9)
            let! k = Gen.choose (1, 9)
            let! n = Gen.choose (1, 9)
            let! seed = Gen.choose (0, 100000)
            return Dims(m, k, n, seed)
        }
        |> Arb.fromGen

[<Property(Arbitrary = [| typeof<LinalgArbs> |])>]
let ``matmul equals the naive product`` (Dims(m, k, n, seed)) =
    let a = randn seed [| m; k |]
    let b = randn (seed + 1) [| k; n |]
    assertArraysClose "matmul" 1e-5 1e-5 (naive (a.ToArray()) (b.ToArray()) m k n) ((Tensor.matmul a b).ToArray())

[<Property(Arbitrary = [| typeof<LinalgArbs> |], MaxTest = 40)>]
let ``matmul and linear gradients match finite differences`` (Dims(m, k, n, seed)) =
    let a = randn seed [| m; k |]
    let b = randn (seed + 1) [| k; n |]
    assertGradCheck "matmul 2d" (fun xs -> Tensor.matmul xs[0] xs[1]) [| a; b |]

    assertGradCheck
        "matmul batched broadcast"
        (fun xs -> Tensor.matmul xs[0] xs[1])
        [| randn seed [| 2; 1; m; k |]; randn seed [| 3; k; n |] |]

    assertGradCheck "matmul vec-mat" (fun xs -> Tensor.matmul xs[0] xs[1]) [| randn seed [| k |]; b |]
    assertGradCheck "matmul mat-vec" (fun xs -> Tensor.matmul xs[0] xs[1]) [| a; randn seed [| k |] |]
    assertGradCheck "dot" (fun xs -> Tensor.matmul xs[0] xs[1]) [| randn seed [| k |]; randn (seed + 2) [| k |] |]
    assertGradCheck "matmulNT" (fun xs -> Tensor.matmulNT xs[0] xs[1]) [| a; randn seed [| n; k |] |]
    let w = randn (seed + 3) [| n; k |]
    let bias = randn (seed + 4) [| n |]
    assertGradCheck "linear" (fun xs -> Tensor.linear xs[1] (Some xs[2]) xs[0]) [| randn seed [| 2; m; k |]; w; bias |]

[<Test>]
let ``batched matmul broadcasts batch axes`` () =
    let a = randn 1 [| 2; 1; 3; 4 |]
    let b = randn 2 [| 5; 4; 2 |]
    let c = Tensor.matmul a b
    Assert.That(c.Shape, Eq.To [| 2; 5; 3; 2 |])
    let ad, bd, cd = a.ToArray(), b.ToArray(), c.ToArray()

    for i in 0..1 do
        for j in 0..4 do
            let expected = naive ad[i * 12 .. i * 12 + 11] bd[j * 8 .. j * 8 + 7] 3 4 2
            assertArraysClose "batch" 1e-5 1e-5 expected cd[(i * 5 + j) * 6 .. (i * 5 + j) * 6 + 5]

[<Test>]
let ``matmul of 1-d operands follows PyTorch's promotion rules`` () =
    Assert.That((Tensor.matmul (randn 1 [| 4 |]) (randn 2 [| 4 |])).Shape, Eq.To [||])
    Assert.That((Tensor.matmul (randn 1 [| 4 |]) (randn 2 [| 4; 3 |])).Shape, Eq.To [| 3 |])
    Assert.That((Tensor.matmul (randn 1 [| 2; 4 |]) (randn 2 [| 4 |])).Shape, Eq.To [| 2 |])
    Assert.That((Tensor.matmul (randn 1 [| 4 |]) (randn 2 [| 6; 4; 3 |])).Shape, Eq.To [| 6; 3 |])

[<Test>]
let ``shape mismatches name the op and both shapes`` () =
    assertRaises<ShapeMismatchException> [ "matmul"; "[2, 3]"; "[4, 5]" ] (fun () ->
        box (Tensor.matmul (randn 1 [| 2; 3 |]) (randn 1 [| 4; 5 |])))

    assertRaises<ShapeMismatchException> [ "linear"; "[2, 3]"; "[4, 5]" ] (fun () ->
        box (Tensor.linear (randn 1 [| 4; 5 |]) None (randn 1 [| 2; 3 |])))
