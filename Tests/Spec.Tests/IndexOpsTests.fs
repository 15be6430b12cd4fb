module SnnSpec.Tests.IndexOpsTests

open NUnit.Framework
open FsCheck
open FsCheck.FSharp
open FsCheck.NUnit
open SnnSpec
open SnnSpec.Tests.TestUtil
open SnnSpec.Tests.ShapeOpsTests

let private ofInts (shape: int[]) (v: int[]) =
    Tensor.ofArray shape (Array.map float32 v)

/// Random indices in [0, bound) of the given shape.
let private randIdx (seed: int) (bound: int) (shape: int[]) =
    let rng = Rng.create seed
    ofInts shape (Array.init (Shape.numel shape) (fun i -> Rng.intBelow rng (int64 i) bound))

/// Index tensor of shape s whose entries along axis d form a permutation of [0, s[d]) per line,
/// so scatter positions are unique.
let private permIdx (seed: int) (s: int[]) (d: int) =
    let outer = Shape.numel s[.. d - 1]
    let inner = Shape.numel s[d + 1 ..]
    let n = s[d]
    let v = Array.zeroCreate (Shape.numel s)

    for o in 0 .. outer - 1 do
        for i in 0 .. inner - 1 do
            let p = Rng.permutation n (Rng.create (seed + 31 * o + i))

            for j in 0 .. n - 1 do
                v[(o * n + j) * inner + i] <- p[j]

    ofInts s v

// ---- laws -----------------------------------------------------------------------------------

[<Property(Arbitrary = [| typeof<ShapeArbs> |], MaxTest = 50)>]
let ``gather of scatterAdd into zeros with unique indices recovers src`` (AxisCase(s, d, seed)) =
    let src = randn seed s
    let idx = permIdx seed s d
    let scattered = Tensor.scatterAdd d idx src (Tensor.zeros s)
    let back = Tensor.gather d idx scattered

    back.ToArray() = src.ToArray()
    && (Tensor.sum scattered).ToScalar() - (Tensor.sum src).ToScalar() |> abs < 1e-3f

[<Property(MaxTest = 50)>]
let ``oneHot rows sum to 1 and argmax recovers the label`` (labels: byte list) (k: byte) =
    let k = 1 + int k % 9
    let ls = labels |> List.map (fun l -> int l % k) |> Array.ofList
    let h = Tensor.oneHotOfInts k ls

    h.Shape = [| ls.Length; k |]
    && (ls.Length = 0
        || ((Tensor.sumDim 1 h).ToArray() |> Array.forall ((=) 1.0f)
            && (Tensor.argmax 1 h).ToArray() = Array.map float32 ls))

[<Property(Arbitrary = [| typeof<ShapeArbs> |], MaxTest = 50)>]
let ``topk values are sorted and are the k largest (or smallest)`` (AxisCase(s, d, seed)) =
    let x = randn seed s
    let k = 1 + seed % s[d]
    let largest = seed % 2 = 0
    let v, i = Tensor.topk k d largest x
    // Compare line by line with a sort of the line moved last.
    let moveLast (t: Tensor) =
        let perm = Array.append (Array.init s.Length id |> Array.filter ((<>) d)) [| d |]
        let p = Tensor.permute perm t
        p.ToArray() |> Array.chunkBySize p.Shape[s.Length - 1]

    let lines = moveLast x
    let vl = moveLast v
    let il = moveLast i

    Array.forall
        id
        (Array.init lines.Length (fun l ->
            let sorted =
                if largest then
                    Array.sortDescending lines[l]
                else
                    Array.sort lines[l]

            vl[l] = sorted[.. k - 1]
            && Array.forall2 (fun (j: float32) (value: float32) -> lines[l][int j] = value) il[l] vl[l]))

[<Property(Arbitrary = [| typeof<ShapeArbs> |], MaxTest = 50)>]
let ``indexSelect with all positions in order is the identity and matches select`` (AxisCase(s, d, seed)) =
    let x = randn seed s
    let j = seed % s[d]

    (Tensor.indexSelect d (Array.init s[d] id) x).ToArray() = x.ToArray()
    && (Tensor.indexSelect d [| j |] x |> Tensor.squeezeDim d).ToArray() = (Tensor.select d j x).ToArray()

// ---- hand-computed values -------------------------------------------------------------------

[<Test>]
let ``small examples`` () =
    let x = Tensor.ofArray [| 2; 3 |] [| 1.0f; 2.0f; 3.0f; 4.0f; 5.0f; 6.0f |]
    // PyTorch: torch.gather(x, 1, [[2,0],[1,1]]) = [[3,1],[5,5]]
    Assert.That((Tensor.gather 1 (ofInts [| 2; 2 |] [| 2; 0; 1; 1 |]) x).ToArray(), Eq.To [| 3.0f; 1.0f; 5.0f; 5.0f |])
    // gather along 0 with index shorter on axis 1: [[1,0]] → [[4,2]]
    Assert.That((Tensor.gather 0 (ofInts [| 1; 2 |] [| 1; 0 |]) x).ToArray(), Eq.To [| 4.0f; 2.0f |])
    // scatter_add along 1, repeated index accumulates: zeros(2,3).scatter_add(1, [[0,0],[2,1]], [[1,2],[3,4]])
    let sa =
        Tensor.scatterAdd
            1
            (ofInts [| 2; 2 |] [| 0; 0; 2; 1 |])
            (Tensor.ofArray [| 2; 2 |] [| 1.0f; 2.0f; 3.0f; 4.0f |])
            (Tensor.zeros [| 2; 3 |])

    Assert.That(sa.ToArray(), Eq.To [| 3.0f; 0.0f; 0.0f; 0.0f; 4.0f; 3.0f |])
    Assert.That((Tensor.indexSelect 1 [| 2; 0; 2 |] x).ToArray(), Eq.To [| 3.0f; 1.0f; 3.0f; 6.0f; 4.0f; 6.0f |])
    Assert.That((Tensor.indexSelect 0 [| -1 |] x).ToArray(), Eq.To [| 4.0f; 5.0f; 6.0f |])
    Assert.That((Tensor.oneHot 3 (ofInts [| 2 |] [| 2; 0 |])).ToArray(), Eq.To [| 0.0f; 0.0f; 1.0f; 1.0f; 0.0f; 0.0f |])

    let v, i =
        Tensor.topk 2 1 true (Tensor.ofArray [| 2; 3 |] [| 1.0f; 9.0f; 5.0f; 7.0f; 7.0f; -1.0f |])

    Assert.That(v.ToArray(), Eq.To [| 9.0f; 5.0f; 7.0f; 7.0f |])
    Assert.That(i.ToArray(), Eq.To [| 1.0f; 2.0f; 0.0f; 1.0f |])
    let v, i = Tensor.topk 1 0 false x
    Assert.That(v.ToArray(), Eq.To [| 1.0f; 2.0f; 3.0f |])
    Assert.That(i.ToArray(), Eq.To [| 0.0f; 0.0f; 0.0f |])
    // Gradients: indexSelect accumulates repeats; topk sends gradient to the chosen entries.
    let g = Diff.grad (fun x -> Tensor.sum (Tensor.indexSelect 1 [| 2; 0; 2 |] x)) x
    Assert.That(g.ToArray(), Eq.To [| 1.0f; 0.0f; 2.0f; 1.0f; 0.0f; 2.0f |])
    let g = Diff.grad (fun x -> Tensor.sum (fst (Tensor.topk 2 1 true x))) x
    Assert.That(g.ToArray(), Eq.To [| 0.0f; 1.0f; 1.0f; 0.0f; 1.0f; 1.0f |])

// ---- gradients ------------------------------------------------------------------------------

[<Property(Arbitrary = [| typeof<ShapeArbs> |], MaxTest = 25)>]
let ``every index op matches finite differences`` (AxisCase(s, d, seed)) =
    let x = randn seed s
    let n = s[d]
    // gather: index shorter than x on other axes, longer on dim, with repeats.
    let gs = s |> Array.mapi (fun i v -> if i = d then v + 2 else max 1 (v - seed % 2))
    let gidx = randIdx seed n gs
    assertGradCheck (sprintf "gather %A dim %d" s d) (fun xs -> Tensor.gather d gidx xs[0]) [| x |]
    let src = randn (seed + 1) gs
    let sidx = randIdx (seed + 2) n gs

    assertGradCheck
        (sprintf "scatterAdd %A dim %d" s d)
        (fun xs -> Tensor.scatterAdd d sidx xs[1] xs[0] * xs[0])
        [| x; src |]

    let sel = Array.init (n + 2) (fun j -> (seed + 7 * j) % n)
    assertGradCheck (sprintf "indexSelect %A dim %d" s d) (fun xs -> Tensor.indexSelect d sel xs[0]) [| x |]
    let distinct = distinctValues seed s

    let k = 1 + seed % n

    assertGradCheck
        (sprintf "topk %A dim %d k %d" s d k)
        (fun xs -> fst (Tensor.topk k d (seed % 2 = 0) xs[0]))
        [| distinct |]

[<Test>]
let ``index tensors get no gradient and oneHot is constant`` () =
    let x = randn 1 [| 3; 4 |]
    let idx = ofInts [| 3; 1 |] [| 0; 3; 2 |]

    let gs =
        Diff.gradN
            (fun xs -> Tensor.sum (Tensor.gather 1 xs[1] xs[0]) + Tensor.sum (Tensor.oneHot 4 xs[1]))
            [| x; idx |]

    Assert.That(gs[1].ToArray(), Eq.To [| 0.0f; 0.0f; 0.0f |])
    Assert.That((Tensor.sum gs[0]).ToScalar(), Eq.To 3.0f)

// ---- bad input ------------------------------------------------------------------------------

[<Test>]
let ``bad indices raise errors naming the op, the value and the range`` () =
    let x = Tensor.zeros [| 2; 3 |]

    assertRaises<SnnSpecException> [ "Tensor.gather"; "index = 3"; "[0, 3)"; "dim 1" ] (fun () ->
        box (Tensor.gather 1 (ofInts [| 2; 1 |] [| 0; 3 |]) x))

    assertRaises<SnnSpecException> [ "Tensor.gather"; "1.5"; "integer" ] (fun () ->
        box (Tensor.gather 1 (Tensor.ofArray [| 1; 1 |] [| 1.5f |]) x))

    assertRaises<SnnSpecException> [ "Tensor.gather"; "-1"; "[0, 2)" ] (fun () ->
        box (Tensor.gather 0 (Tensor.ofArray [| 1; 1 |] [| -1.0f |]) x))

    assertRaises<ShapeMismatchException> [ "Tensor.gather"; "[2, 3]"; "[2]"; "rank" ] (fun () ->
        box (Tensor.gather 1 (ofInts [| 2 |] [| 0; 1 |]) x))

    assertRaises<ShapeMismatchException> [ "Tensor.gather"; "[2, 3]"; "[3, 1]"; "axis 0" ] (fun () ->
        box (Tensor.gather 1 (ofInts [| 3; 1 |] [| 0; 1; 2 |]) x))

    assertRaises<SnnSpecException> [ "Tensor.scatterAdd"; "index = 2"; "[0, 2)" ] (fun () ->
        box (Tensor.scatterAdd 0 (ofInts [| 1; 1 |] [| 2 |]) (Tensor.ones [| 1; 1 |]) x))

    assertRaises<ShapeMismatchException> [ "Tensor.scatterAdd"; "[1, 1]"; "[1, 2]" ] (fun () ->
        box (Tensor.scatterAdd 0 (ofInts [| 1; 1 |] [| 0 |]) (Tensor.ones [| 1; 2 |]) x))

    assertRaises<SnnSpecException> [ "Tensor.indexSelect"; "index = 5"; "[-3, 3)" ] (fun () ->
        box (Tensor.indexSelect 1 [| 0; 5 |] x))

    assertRaises<SnnSpecException> [ "Tensor.oneHot"; "label = 4"; "[0, 4)" ] (fun () ->
        box (Tensor.oneHot 4 (ofInts [| 2 |] [| 1; 4 |])))

    assertRaises<SnnSpecException> [ "Tensor.oneHotOfInts"; "label = -1" ] (fun () ->
        box (Tensor.oneHotOfInts 4 [| -1 |]))

    assertRaises<SnnSpecException> [ "Tensor.topk"; "k = 4"; "[0, 3]" ] (fun () -> box (Tensor.topk 4 1 true x))

[<Test>]
let ``topk with many ties and NaN matches a stable sort, for small and large k`` () =
    let rng = Rng.create 9
    let n = 50

    let data =
        Array.init (3 * n) (fun i ->
            if i % 17 = 5 then
                nanf
            else
                float32 (Rng.intBelow rng (int64 i) 10))

    let x = Tensor.ofArray [| 3; n |] data

    for largest in [ true; false ] do
        for k in [ 0; 7; 32; 33; 50 ] do
            let v, i = Tensor.topk k 1 largest x

            for row in 0..2 do
                let line = data[row * n .. row * n + n - 1]
                // NaN ranks largest; ties keep the lower index first.
                let rank (j: int) =
                    let e = line[j] in if System.Single.IsNaN e then infinity else float e

                let expected =
                    Array.init n id
                    |> Array.sortWith (fun p q ->
                        let c = compare (rank p) (rank q)
                        let c = if largest then -c else c
                        if c <> 0 then c else compare p q)
                    |> Array.take k

                let got = i.ToArray()[row * k .. row * k + k - 1] |> Array.map int
                Assert.That(got, Eq.To expected, sprintf "largest=%b k=%d row %d" largest k row)
                let vals = v.ToArray()[row * k .. row * k + k - 1]

                Assert.That(
                    Array.map2
                        (fun (a: float32) j -> a = line[j] || (System.Single.IsNaN a && System.Single.IsNaN line[j]))
                        vals
                        expected
                    |> Array.forall id
                )
