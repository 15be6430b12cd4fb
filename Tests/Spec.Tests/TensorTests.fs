module SnnSpec.Tests.TensorTests

open System
open NUnit.Framework
open FsCheck
open FsCheck.NUnit
open SnnSpec
open SnnSpec.Tests.TestUtil
open SnnSpec.Tests.Generators

[<Test>]
let ``creation functions give the documented values`` () =
    Assert.That((Tensor.zeros [| 2; 3 |]).ToArray(), Eq.To(Array.zeroCreate<float32> 6))
    Assert.That((Tensor.ones [| 2 |]).ToArray(), Eq.To([| 1.0f; 1.0f |]))
    Assert.That((Tensor.full [| 1; 2 |] 7.0f).ToArray(), Eq.To([| 7.0f; 7.0f |]))
    Assert.That((Tensor.arange 0.0f 5.0f 2.0f).ToArray(), Eq.To([| 0.0f; 2.0f; 4.0f |]))
    Assert.That((Tensor.linspace 0.0f 1.0f 5).ToArray(), Eq.To([| 0.0f; 0.25f; 0.5f; 0.75f; 1.0f |]))
    Assert.That((Tensor.eye 2).ToArray(), Eq.To([| 1.0f; 0.0f; 0.0f; 1.0f |]))
    Assert.That((Tensor.scalar 3.0f).Shape, Eq.To([||]))

[<Property(Arbitrary = [| typeof<Arbitraries> |])>]
let ``the same key gives the same random tensor and different keys differ`` (SmallShape s) (Seed seed) =
    let a = Tensor.randn (Rng.create seed) s
    let b = Tensor.randn (Rng.create seed) s
    let c = Tensor.randn (Rng.create (seed + 1)) s
    a = b && (a.Numel < 2 || a <> c)

[<Test>]
let ``random tensors do not depend on the thread count`` () =
    let saved = Kernels.Threads.Count

    try
        Kernels.Threads.Count <- 1
        let a = Tensor.randn (Rng.create 5) [| 300; 300 |]
        Kernels.Threads.Count <- 2
        let b = Tensor.randn (Rng.create 5) [| 300; 300 |]
        Assert.That(a.ToArray(), Eq.To(b.ToArray()))
    finally
        Kernels.Threads.Count <- saved

[<Test>]
let ``uniform, normal and bernoulli draws have the right moments`` () =
    let n = 200000
    let u = (Tensor.rand (Rng.create 1) [| n |]).ToArray() |> Array.map float
    let z = (Tensor.randn (Rng.create 2) [| n |]).ToArray() |> Array.map float
    let b = (Tensor.bernoulli (Rng.create 3) 0.3f [| n |]).ToArray() |> Array.map float
    Assert.That(Array.min u, Is.GreaterThanOrEqualTo 0.0)
    Assert.That(Array.max u, Is.LessThan 1.0)
    Assert.That(Array.average u, Eq.To(0.5).Within(0.005))
    Assert.That(Array.average z, Eq.To(0.0).Within(0.01))
    let zv = z |> Array.averageBy (fun x -> x * x)
    Assert.That(zv, Eq.To(1.0).Within(0.01))
    Assert.That(Array.average b, Eq.To(0.3).Within(0.005))

[<Test>]
let ``item and scalar access check their arguments`` () =
    let t = Tensor.ofArray [| 2; 3 |] [| 0.0f; 1.0f; 2.0f; 3.0f; 4.0f; 5.0f |]
    Assert.That(t[[| 1; 2 |]], Eq.To 5.0f)
    Assert.That(t[[| -1; 0 |]], Eq.To 3.0f)
    assertRaises<SnnSpecException> [ "index" ] (fun () -> box t[[| 2; 0 |]])
    assertRaises<SnnSpecException> [ "ToScalar"; "[2, 3]" ] (fun () -> box (t.ToScalar()))
    assertRaises<ShapeMismatchException> [ "Tensor.ofArray" ] (fun () -> box (Tensor.ofArray [| 4 |] [| 1.0f |]))

[<Test>]
let ``printing shows values and shape`` () =
    let t = Tensor.ofArray [| 2; 2 |] [| 1.0f; 2.0f; 3.0f; 4.5f |]
    let s = t.ToString()
    Assert.That(s, Does.Contain("[[1, 2]"))
    Assert.That(s, Does.Contain("4.5"))
    Assert.That(s, Does.Contain("shape=[2, 2]"))
    Assert.That((Tensor.zeros [| 100 |]).ToString(), Does.Contain("..."))

[<Property(Arbitrary = [| typeof<Arbitraries> |])>]
let ``broadcast arithmetic matches an index-by-index oracle`` (BroadcastPair(sa, sb, seed)) =
    let a = randn seed sa
    let b = randn (seed + 1) sb
    let out = Shape.broadcast "t" sa sb

    let idx (shape: int[]) (full: int[]) =
        let off = full.Length - shape.Length
        let mutable f = 0

        for i in 0 .. shape.Length - 1 do
            f <- f * shape[i] + (if shape[i] = 1 then 0 else full[i + off])

        f

    let ad, bd = a.ToArray(), b.ToArray()
    let expected = Array.zeroCreate (Shape.numel out)
    let coords = Array.zeroCreate out.Length

    for flat in 0 .. expected.Length - 1 do
        let mutable r = flat

        for d in out.Length - 1 .. -1 .. 0 do
            coords[d] <- r % out[d]
            r <- r / out[d]

        expected[flat] <-
            ad[idx sa coords] * bd[idx sb coords]
            - ad[idx sa coords] / (abs bd[idx sb coords] + 1.0f)

    let actual = a * b - a / (Tensor.abs b + 1.0f)

    actual.Shape = out
    && Array.forall2
        (fun (e: float32) (x: float32) -> abs (e - x) <= 1e-5f * (1.0f + abs e))
        expected
        (actual.ToArray())

[<Test>]
let ``valueAndGrad rejects a non-scalar objective naming its shape`` () =
    assertRaises<SnnSpecException> [ "scalar"; "[3]" ] (fun () ->
        box (Diff.grad (fun x -> x * 2.0f) (Tensor.ones [| 3 |])))

[<Test>]
let ``a reused subexpression accumulates its gradient`` () =
    // f(x) = Σ (x·x + x), df/dx = 2x + 1
    let x = Tensor.ofArray [| 3 |] [| 1.0f; -2.0f; 0.5f |]
    let g = Diff.grad (fun x -> let y = x * x in Tensor.sum (y + x + y - y)) x
    Assert.That(g.ToArray(), Eq.To([| 3.0f; -3.0f; 2.0f |]))

[<Test>]
let ``detach stops the gradient`` () =
    let x = Tensor.ofArray [| 2 |] [| 1.0f; 2.0f |]
    let g = Diff.grad (fun x -> Tensor.sum (x * Diff.detach x)) x
    Assert.That(g.ToArray(), Eq.To(x.ToArray()))

[<Test>]
let ``noGrad records nothing`` () =
    let x = Tensor.ofArray [| 2 |] [| 1.0f; 2.0f |]
    let g = Diff.grad (fun x -> Tensor.sum (x + Diff.noGrad (fun () -> x * x))) x
    Assert.That(g.ToArray(), Eq.To([| 1.0f; 1.0f |]))

[<Test>]
let ``custom op uses the user's backward`` () =
    // Heaviside forward with a rectangular surrogate: the spike primitive in miniature.
    let spike =
        Diff.customOp (fun xs -> Tensor.geScalar 0.0f xs[0]) (fun xs _ g ->
            [| g * Tensor.le (Tensor.abs xs[0]) (Tensor.scalar 0.5f) |])

    let x = Tensor.ofArray [| 4 |] [| -1.0f; -0.2f; 0.3f; 2.0f |]
    let v, g = Diff.valueAndGrad (fun x -> Tensor.sum (spike [| x |])) x
    Assert.That(v.ToScalar(), Eq.To 2.0f)
    Assert.That(g.ToArray(), Eq.To([| 0.0f; 1.0f; 1.0f; 0.0f |]))

[<Test>]
let ``temporaries are recycled and a leaked tensor raises a clear error`` () =
    let mutable leaked = Unchecked.defaultof<Tensor>
    let x = randn 1 [| 64; 64 |]

    for _ in 1..3 do
        Diff.grad
            (fun x ->
                let y = Tensor.tanh (x * x)
                leaked <- y
                Tensor.sum y)
            x
        |> ignore

    let reused, _, _ = BufferPool.stats ()
    Assert.That(reused, Is.GreaterThan 0L)
    assertRaises<SnnSpecException> [ "recycled" ] (fun () -> box (leaked.ToArray()))

[<Test>]
let ``gradients and values survive the call that made them`` () =
    let x = randn 2 [| 64; 64 |]
    let v, g = Diff.valueAndGrad (fun x -> Tensor.sum (Tensor.exp x)) x
    // Allocate more pooled work; v and g must not be overwritten.
    let expected = (Tensor.exp x).ToArray()

    for _ in 1..3 do
        Diff.grad (fun x -> Tensor.sum (x * 3.0f)) x |> ignore

    assertArraysClose "gradient" 0.0 0.0 expected (g.ToArray())
    Assert.That(float (v.ToScalar()), Eq.To(Array.sumBy float expected).Within(1e-2))

[<Test>]
let ``training steps do not accumulate memory or tape`` () =
    let w0 = Parameters.ofList [ "w", randn 1 [| 256; 256 |] ]
    let x = randn 2 [| 64; 256 |]

    let step (p: Parameters) =
        let g =
            Parameters.grad (fun p -> Tensor.mean (Tensor.tanh (Tensor.linear p["w"] None x))) p

        fst (
            Optim.sgd
                { SgdConfig.Default with
                    Momentum = 0.0f
                }
                OptimizerState.Empty
                p
                g
        )

    let mutable p = w0

    for _ in 1..20 do
        p <- step p

    GC.Collect()
    GC.WaitForPendingFinalizers()
    GC.Collect()
    let before = GC.GetTotalMemory true
    let _, freshBefore, _ = BufferPool.stats ()

    for _ in 1..100 do
        p <- step p

    GC.Collect()
    GC.WaitForPendingFinalizers()
    GC.Collect()
    let after = GC.GetTotalMemory true
    let _, freshAfter, _ = BufferPool.stats ()
    // 100 steps of 64×256 activations would be ~13 MB if anything were retained.
    Assert.That(after - before, Is.LessThan(2L * 1024L * 1024L))
    // Inside valueAndGrad every temporary is served by the pool; the one fresh buffer per step is
    // the gradient handed back to the caller.
    Assert.That(freshAfter - freshBefore, Is.LessThanOrEqualTo 100L)

[<Test>]
let ``an op with several outputs receives the gradient of each`` () =
    // (u, v) = (x², 3x) from one node; f = Σ u + 2 Σ v ⇒ df/dx = 2x + 6.
    let split (x: Tensor) =
        let x0 = Diff.detach x

        Autograd.recordMulti
            [| Diff.noGrad (fun () -> x0 * x0); Diff.noGrad (fun () -> x0 * 3.0f) |]
            [| x |]
            (fun gs _ ->
                let gu =
                    if isNull (box gs[0]) then
                        Tensor.zerosLike x0
                    else
                        gs[0] * x0 * 2.0f

                let gv =
                    if isNull (box gs[1]) then
                        Tensor.zerosLike x0
                    else
                        gs[1] * 3.0f

                [| gu + gv |])

    let x = Tensor.ofArray [| 3 |] [| 1.0f; -2.0f; 0.5f |]

    let g =
        Diff.grad (fun x -> let o = split x in Tensor.sum o[0] + Tensor.sum o[1] * 2.0f) x

    Assert.That(g.ToArray(), Eq.To [| 8.0f; 2.0f; 7.0f |])
    // Only one output used: the other's gradient arrives as noGrad.
    let g1 = Diff.grad (fun x -> Tensor.sum (split x).[1]) x
    Assert.That(g1.ToArray(), Eq.To [| 3.0f; 3.0f; 3.0f |])
