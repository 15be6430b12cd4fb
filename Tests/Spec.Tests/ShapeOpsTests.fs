module SnnSpec.Tests.ShapeOpsTests

open NUnit.Framework
open FsCheck
open FsCheck.FSharp
open FsCheck.NUnit
open SnnSpec
open SnnSpec.Tests.TestUtil

/// A shape of rank 1–4 (dims 1–4), an axis of it and a seed.
type AxisCase = AxisCase of shape: int[] * dim: int * seed: int

/// A shape of rank 1–4 and a random permutation of its axes.
type PermCase = PermCase of shape: int[] * perm: int[] * seed: int

type ShapeArbs =
    static member AxisCase() =
        gen {
            let! rank = Gen.choose (1, 4)
            let! shape = Gen.arrayOfLength rank (Gen.choose (1, 4))
            let! dim = Gen.choose (0, rank - 1)
            let! seed = Gen.choose (0, 100000)
            return AxisCase(shape, dim, seed)
        }
        |> Arb.fromGen

    static member PermCase() =
        gen {
            let! rank = Gen.choose (1, 4)
            let! shape = Gen.arrayOfLength rank (Gen.choose (1, 4))
            let! seed = Gen.choose (0, 100000)
            return PermCase(shape, Rng.permutation rank (Rng.create seed), seed)
        }
        |> Arb.fromGen

let private arange (shape: int[]) =
    Tensor.arange 0.0f (float32 (Shape.numel shape)) 1.0f |> Tensor.reshape shape

let private same (a: Tensor) (b: Tensor) =
    a.Shape = b.Shape && a.ToArray() = b.ToArray()

// ---- laws -----------------------------------------------------------------------------------

[<Property(Arbitrary = [| typeof<ShapeArbs> |], MaxTest = 50)>]
let ``reshape to -1 and back round-trips; flatten and squeeze/unsqueeze too`` (AxisCase(s, d, seed)) =
    let x = randn seed s

    same (x |> Tensor.reshape [| -1 |] |> Tensor.reshape s) x
    && same (x |> Tensor.flatten 0 -1 |> Tensor.view s) x
    && (Tensor.flatten d -1 x).Shape = Array.append s[.. d - 1] [| Shape.numel s[d..] |]
    && same (x |> Tensor.unsqueeze d |> Tensor.squeezeDim d) x
    && (Tensor.squeeze x).Shape = (s |> Array.filter ((<>) 1))

[<Property(Arbitrary = [| typeof<ShapeArbs> |], MaxTest = 50)>]
let ``permute then inverse permute is the identity`` (PermCase(s, p, seed)) =
    let x = randn seed s
    let inv = Array.zeroCreate p.Length
    p |> Array.iteri (fun i a -> inv[a] <- i)
    let y = Tensor.permute p x
    y.Shape = Array.map (fun a -> s[a]) p && same (Tensor.permute inv y) x

[<Property(Arbitrary = [| typeof<ShapeArbs> |], MaxTest = 50)>]
let ``transpose twice is the identity and flip twice too`` (AxisCase(s, d, seed)) =
    let x = randn seed s
    let e = (d + 1) % s.Length

    same (x |> Tensor.transpose d e |> Tensor.transpose d e) x
    && same (x |> Tensor.flip [| d |] |> Tensor.flip [| d |]) x

[<Property(Arbitrary = [| typeof<ShapeArbs> |], MaxTest = 50)>]
let ``cat then split is the identity`` (AxisCase(s, d, seed)) =
    let sizes = [| s[d]; (seed % 3); 1 + seed % 2 |]
    let parts = sizes |> Array.mapi (fun i n -> randn (seed + i) (Array.updateAt d n s))
    let joined = Tensor.cat d (List.ofArray parts)
    let back = Tensor.split sizes d joined
    joined.Shape[d] = Array.sum sizes && Array.forall2 same parts back

[<Property(Arbitrary = [| typeof<ShapeArbs> |], MaxTest = 50)>]
let ``stack then select is the identity`` (AxisCase(s, d, seed)) =
    let parts = [ for i in 0..2 -> randn (seed + i) s ]
    let d = d + seed % 2 // new axis may also go last
    let st = Tensor.stack d parts

    st.Shape = Array.insertAt d 3 s
    && parts |> List.mapi (fun i p -> same (Tensor.select d i st) p) |> List.forall id

[<Property(Arbitrary = [| typeof<ShapeArbs> |], MaxTest = 50)>]
let ``chunk sizes sum to the axis length and differ by at most one`` (AxisCase(s, d, seed)) =
    let n = 1 + seed % 5
    let x = randn seed s
    let pieces = Tensor.chunk n d x
    let lens = pieces |> Array.map (fun p -> p.Shape[d])

    pieces.Length = n
    && Array.sum lens = s[d]
    && Array.max lens - Array.min lens <= 1
    && same (Tensor.cat d (List.ofArray pieces)) x

[<Property(Arbitrary = [| typeof<ShapeArbs> |], MaxTest = 50)>]
let ``narrow, select and slice agree with index arithmetic`` (AxisCase(s, d, seed)) =
    let x = arange s
    let start = seed % s[d]
    let len = s[d] - start
    let n = Tensor.narrow d start len x
    let sel = Tensor.select d start x

    let sl =
        Tensor.slice (Array.init (d + 1) (fun i -> if i = d then start, s[d], 2 else 0, s[i], 1)) x

    let strides = Shape.strides s
    // value at multi-index c of the view = flat position in x
    let check (v: Tensor) (toSrc: int[] -> int[]) =
        let vs = v.Shape
        let vals = v.ToArray()

        Seq.forall
            (fun flat ->
                let c = Array.zeroCreate vs.Length
                let mutable r = flat

                for a in vs.Length - 1 .. -1 .. 0 do
                    c[a] <- r % vs[a]
                    r <- r / vs[a]

                let src = toSrc c
                vals[flat] = float32 (Array.fold2 (fun acc i st -> acc + i * st) 0 src strides))
            (seq { 0 .. vals.Length - 1 })

    check n (fun c -> Array.updateAt d (c[d] + start) c)
    && check sel (fun c -> Array.insertAt d start c)
    && check sl (fun c -> Array.updateAt d (start + 2 * c[d]) c)

// ---- hand-computed values -------------------------------------------------------------------

[<Test>]
let ``small examples`` () =
    let x = arange [| 2; 3 |] // [[0 1 2] [3 4 5]]
    Assert.That((Tensor.t x).ToArray(), Eq.To [| 0.0f; 3.0f; 1.0f; 4.0f; 2.0f; 5.0f |])
    Assert.That((Tensor.t x).Shape, Eq.To [| 3; 2 |])
    Assert.That((Tensor.narrow 1 1 2 x).ToArray(), Eq.To [| 1.0f; 2.0f; 4.0f; 5.0f |])
    Assert.That((Tensor.narrow 0 1 1 x).ToArray(), Eq.To [| 3.0f; 4.0f; 5.0f |])
    Assert.That((Tensor.select 1 -1 x).ToArray(), Eq.To [| 2.0f; 5.0f |])
    Assert.That((Tensor.flip [| 1 |] x).ToArray(), Eq.To [| 2.0f; 1.0f; 0.0f; 5.0f; 4.0f; 3.0f |])
    Assert.That((Tensor.flip [| 0; 1 |] x).ToArray(), Eq.To [| 5.0f; 4.0f; 3.0f; 2.0f; 1.0f; 0.0f |])
    Assert.That((Tensor.slice [| (0, 2, 1); (0, 3, 2) |] x).ToArray(), Eq.To [| 0.0f; 2.0f; 3.0f; 5.0f |])
    Assert.That((Tensor.slice [| (-1, 10, 1) |] x).ToArray(), Eq.To [| 3.0f; 4.0f; 5.0f |])

    Assert.That(
        (Tensor.cat 1 [ x; x ]).ToArray(),
        Eq.To [| 0.0f; 1.0f; 2.0f; 0.0f; 1.0f; 2.0f; 3.0f; 4.0f; 5.0f; 3.0f; 4.0f; 5.0f |]
    )

    Assert.That((Tensor.stack 2 [ x; x ]).Shape, Eq.To [| 2; 3; 2 |])

    Assert.That(
        (Tensor.stack 2 [ x; x ]).ToArray(),
        Eq.To [| 0.0f; 0.0f; 1.0f; 1.0f; 2.0f; 2.0f; 3.0f; 3.0f; 4.0f; 4.0f; 5.0f; 5.0f |]
    )

    Assert.That((Tensor.chunk 2 1 x) |> Array.map (fun c -> c.Shape), Eq.To [| [| 2; 2 |]; [| 2; 1 |] |])

    Assert.That(
        (Tensor.repeat [| 1; 2 |] x).ToArray(),
        Eq.To [| 0.0f; 1.0f; 2.0f; 0.0f; 1.0f; 2.0f; 3.0f; 4.0f; 5.0f; 3.0f; 4.0f; 5.0f |]
    )

    Assert.That((Tensor.repeat [| 2; 1; 1 |] x).Shape, Eq.To [| 2; 2; 3 |])
    Assert.That((Tensor.reshape [| 3; -1 |] x).Shape, Eq.To [| 3; 2 |])
    Assert.That(x.[1..1, *].ToArray(), Eq.To [| 3.0f; 4.0f; 5.0f |])
    Assert.That(x.[*, 1..].ToArray(), Eq.To [| 1.0f; 2.0f; 4.0f; 5.0f |])
    Assert.That(x.[1, ..1].ToArray(), Eq.To [| 3.0f; 4.0f |])
    Assert.That(x.[*, 2].ToArray(), Eq.To [| 2.0f; 5.0f |])
    let p = arange [| 2; 3; 4 |] |> Tensor.permute [| 2; 0; 1 |]
    Assert.That(p.Shape, Eq.To [| 4; 2; 3 |])
    Assert.That(p.[[| 3; 1; 2 |]], Eq.To 23.0f)

[<Test>]
let ``reshape and narrow along dim 0 keep values and later ops read through the offset`` () =
    let x = arange [| 4; 3 |]
    let v = Tensor.narrow 0 2 2 x
    Assert.That((Tensor.sum v).ToScalar(), Eq.To 51.0f)
    Assert.That((Tensor.exp v |> Tensor.log).ToArray(), Eq.To(v.ToArray()).Within(1e-4))
    Assert.That((v + v).ToArray(), Eq.To [| 12.0f; 14.0f; 16.0f; 18.0f; 20.0f; 22.0f |])
    Assert.That((Tensor.t v).ToArray(), Eq.To [| 6.0f; 9.0f; 7.0f; 10.0f; 8.0f; 11.0f |])
    let g = Diff.grad (fun x -> Tensor.sum (Tensor.narrow 0 1 2 x * 2.0f)) x
    Assert.That(g.ToArray(), Eq.To [| 0.0f; 0.0f; 0.0f; 2.0f; 2.0f; 2.0f; 2.0f; 2.0f; 2.0f; 0.0f; 0.0f; 0.0f |])

[<Test>]
let ``large permutes match the naive definition`` () =
    for shape, perm in
        [
            [| 300; 257 |], [| 1; 0 |]
            [| 7; 64; 65 |], [| 2; 0; 1 |]
            [| 3; 40; 5; 33 |], [| 3; 1; 0; 2 |]
        ] do
        let x = randn 3 shape
        let y = Tensor.permute perm x
        let xs = x.ToArray()
        let ys = y.ToArray()
        let st = Shape.strides shape
        let ysh = y.Shape

        let ok =
            Array.forall
                id
                (Array.init ys.Length (fun flat ->
                    let mutable r = flat
                    let mutable src = 0

                    for a in ysh.Length - 1 .. -1 .. 0 do
                        src <- src + (r % ysh[a]) * st[perm[a]]
                        r <- r / ysh[a]

                    ys[flat] = xs[src]))

        Assert.That(ok, sprintf "permute %A of %A" perm shape)

// ---- gradients ------------------------------------------------------------------------------

[<Property(Arbitrary = [| typeof<ShapeArbs> |], MaxTest = 25)>]
let ``every shape op matches finite differences`` (AxisCase(s, d, seed)) =
    let x = randn seed s
    let n = s[d]
    let e = (d + 1) % s.Length
    let perm = Rng.permutation s.Length (Rng.create seed)
    let start = seed % n

    let ops: (string * (Tensor -> Tensor)) list =
        [
            "reshape", Tensor.reshape [| -1 |]
            "view", Tensor.view (Array.rev s)
            "flatten", Tensor.flatten d -1
            "squeeze", Tensor.squeeze
            "unsqueeze", Tensor.unsqueeze d
            "unsqueeze/squeezeDim", (Tensor.unsqueeze d >> Tensor.squeezeDim d)
            "permute", Tensor.permute perm
            "transpose", Tensor.transpose d e
            "narrow", Tensor.narrow d start (n - start)
            "select", Tensor.select d start
            "slice", Tensor.slice (Array.init (d + 1) (fun i -> if i = d then start, n, 2 else 0, s[i], 1))
            "flip", Tensor.flip (Array.distinct [| d; e |])
            "cat", (fun x -> Tensor.cat d [ x; x * x; Tensor.narrow d 0 1 x ])
            "stack", (fun x -> Tensor.stack d [ x; Tensor.sin x ])
            "split",
            (fun x ->
                Tensor.split [| start; n - start |] d x
                |> Array.mapi (fun i p -> Tensor.sum p * float32 (i + 1))
                |> Array.reduce (+))
            "chunk",
            (fun x ->
                Tensor.chunk 3 d x
                |> Array.mapi (fun i p -> Tensor.sum (p * p) * float32 (i + 1))
                |> Array.reduce (+))
            "repeat", Tensor.repeat (Array.append [| 2 |] (Array.init s.Length (fun i -> if i = d then 2 else 1)))
        ]

    for name, op in ops do
        assertGradCheck (sprintf "%s %A dim %d" name s d) (fun xs -> op xs[0] * 1.5f) [| x |]

    if s.Length = 2 then
        assertGradCheck "t" (fun xs -> Tensor.t xs[0]) [| x |]
        assertGradCheck "GetSlice" (fun xs -> xs[0].[1.., 0]) [| x |]

[<Test>]
let ``zero-length axes pass through`` () =
    let x = arange [| 2; 3 |]
    let e = Tensor.narrow 1 1 0 x
    Assert.That(e.Shape, Eq.To [| 2; 0 |])
    Assert.That((Tensor.t e).Shape, Eq.To [| 0; 2 |])
    Assert.That((Tensor.cat 1 [ e; x; e ]).ToArray(), Eq.To(x.ToArray()))
    Assert.That((Tensor.slice [| (0, 2, 1); (5, 9, 1) |] x).Shape, Eq.To [| 2; 0 |])
    Assert.That((Tensor.chunk 4 1 x) |> Array.map (fun c -> c.Shape[1]), Eq.To [| 1; 1; 1; 0 |])
    Assert.That((Tensor.repeat [| 0; 1 |] x).Shape, Eq.To [| 0; 3 |])

    let g =
        Diff.grad (fun x -> Tensor.sum (Tensor.cat 1 [ Tensor.narrow 1 0 0 x; x ])) x

    Assert.That(g.ToArray(), Eq.To(Array.create 6 1.0f))

[<Test>]
let ``gradients of a large transpose and narrow are exact`` () =
    let x = randn 5 [| 70; 90 |]
    let w = randn 6 [| 90; 70 |]
    let g = Diff.grad (fun x -> Tensor.sum (Tensor.t x * w)) x
    assertClose "transpose grad" 0.0 0.0 (Tensor.t w) g

// ---- bad input ------------------------------------------------------------------------------

[<Test>]
let ``bad arguments raise errors naming the op and the shapes`` () =
    let x = arange [| 2; 3 |]
    assertRaises<ShapeMismatchException> [ "Tensor.reshape"; "[6]"; "[4]" ] (fun () -> box (Tensor.reshape [| 4 |] x))
    assertRaises<SnnSpecException> [ "Tensor.reshape"; "-1" ] (fun () -> box (Tensor.reshape [| -1; -1 |] x))
    assertRaises<SnnSpecException> [ "Tensor.permute"; "[|0; 0|]" ] (fun () -> box (Tensor.permute [| 0; 0 |] x))
    assertRaises<SnnSpecException> [ "Tensor.permute"; "rank-2" ] (fun () -> box (Tensor.permute [| 0 |] x))
    assertRaises<SnnSpecException> [ "Tensor.transpose"; "dim"; "2" ] (fun () -> box (Tensor.transpose 0 2 x))
    assertRaises<SnnSpecException> [ "Tensor.t"; "[2, 3, 1]" ] (fun () -> box (Tensor.t (Tensor.unsqueeze 2 x)))

    assertRaises<ShapeMismatchException> [ "Tensor.squeezeDim"; "[2, 3]"; "size 3" ] (fun () ->
        box (Tensor.squeezeDim 1 x))

    assertRaises<SnnSpecException> [ "Tensor.narrow"; "length"; "[2, 3]" ] (fun () -> box (Tensor.narrow 1 2 2 x))
    assertRaises<SnnSpecException> [ "Tensor.select"; "index = 3"; "[-3, 3)" ] (fun () -> box (Tensor.select 1 3 x))
    assertRaises<SnnSpecException> [ "Tensor.slice"; "step" ] (fun () -> box (Tensor.slice [| (0, 2, 0) |] x))

    assertRaises<ShapeMismatchException> [ "Tensor.cat"; "[2, 3]"; "[3, 3]"; "axis 0" ] (fun () ->
        box (Tensor.cat 1 [ x; arange [| 3; 3 |] ]))

    assertRaises<ShapeMismatchException> [ "Tensor.cat"; "rank" ] (fun () -> box (Tensor.cat 0 [ x; arange [| 6 |] ]))

    assertRaises<ShapeMismatchException> [ "Tensor.stack"; "[2, 3]"; "[3, 2]" ] (fun () ->
        box (Tensor.stack 0 [ x; arange [| 3; 2 |] ]))

    assertRaises<SnnSpecException> [ "Tensor.split"; "summing to 3" ] (fun () -> box (Tensor.split [| 1; 1 |] 1 x))
    assertRaises<SnnSpecException> [ "Tensor.chunk"; "n = 0" ] (fun () -> box (Tensor.chunk 0 1 x))
    assertRaises<SnnSpecException> [ "Tensor.flip"; "dims" ] (fun () -> box (Tensor.flip [| 1; -1 |] x))

    assertRaises<SnnSpecException> [ "Tensor.unsqueeze"; "dim = 3"; "[-3, 2]"; "rank-2" ] (fun () ->
        box (Tensor.unsqueeze 3 x))

    assertRaises<SnnSpecException> [ "Tensor.repeat"; "reps" ] (fun () -> box (Tensor.repeat [| 2 |] x))
