module SnnSpec.Tests.EncodingTests

open NUnit.Framework
open FsCheck.NUnit
open SnnSpec
open SnnSpec.Tests.TestUtil
open SnnSpec.Tests.Generators

[<Test>]
let ``direct encoding repeats the input and sums the gradient over time`` () =
    let x = randn 1 [| 2; 3 |]
    let e = Encoding.direct 4 x
    Assert.That(e.Shape, Eq.To [| 4; 2; 3 |])

    for t in 0..3 do
        Assert.That((Tensor.select 0 t e).ToArray(), Eq.To(x.ToArray()))

    let g = Diff.grad (fun x -> Tensor.sum (Encoding.direct 4 x)) x
    Assert.That(g.ToArray(), Eq.To(Array.create 6 4.0f))

let private sixSigma (p: float32) (n: int) =
    6.0f * sqrt (p * (1.0f - p) / float32 n)

[<Property(Arbitrary = [| typeof<Arbitraries> |], MaxTest = 20)>]
let ``rate encoding is binary, reproducible for a key, and fires at the input's rate`` (Seed seed) =
    let p = Tensor.ofArray [| 4 |] [| 0.0f; 0.25f; 0.7f; 1.0f |]
    let rng = Rng.create seed
    let s = Encoding.rate rng 4000 p
    let again = Encoding.rate rng 4000 p
    let rates = (Tensor.meanDims [| 0 |] false s).ToArray()

    s = again
    && (s.ToArray() |> Array.forall (fun v -> v = 0.0f || v = 1.0f))
    && rates[0] = 0.0f
    && rates[3] = 1.0f
    // Six binomial standard deviations: a false alarm about once in 10⁹ draws. A fixed 0.03 bound
    // (4.1–4.4 σ) failed on seed 713594, whose first 4000 draws fire at 0.281 for p = 0.25.
    && abs (rates[1] - 0.25f) < sixSigma 0.25f 4000
    && abs (rates[2] - 0.7f) < sixSigma 0.7f 4000

[<Test>]
let ``latency encoding fires once, earlier for stronger inputs, never below the cutoff`` () =
    let x = Tensor.ofArray [| 4 |] [| 1.0f; 0.5f; 0.1f; 0.0f |]
    let s = Encoding.latency 5 0.05f x
    let counts = (Tensor.sumDims [| 0 |] false s).ToArray()
    Assert.That(counts, Eq.To [| 1.0f; 1.0f; 1.0f; 0.0f |])

    let firstSpike i =
        [ 0..4 ] |> List.find (fun t -> s[[| t; i |]] = 1.0f)

    Assert.That(firstSpike 0, Eq.To 0)
    Assert.That(firstSpike 1, Eq.To 2)
    Assert.That(firstSpike 2, Eq.To 4)

[<Test>]
let ``encoders reject T below 1`` () =
    assertRaises<SnnSpecException> [ "steps"; "0" ] (fun () -> box (Encoding.direct 0 (randn 1 [| 2 |])))
