module SnnSpec.Tests.ShapeTests

open NUnit.Framework
open FsCheck
open FsCheck.NUnit
open SnnSpec
open SnnSpec.Tests.TestUtil
open SnnSpec.Tests.Generators

[<Property(Arbitrary = [| typeof<Arbitraries> |])>]
let ``broadcast is commutative`` (BroadcastPair(a, b, _)) =
    Shape.broadcast "t" a b = Shape.broadcast "t" b a

[<Property(Arbitrary = [| typeof<Arbitraries> |])>]
let ``broadcast result has the larger rank and each axis is the max`` (BroadcastPair(a, b, _)) =
    let r = Shape.broadcast "t" a b

    let pad (s: int[]) =
        Array.append (Array.create (r.Length - s.Length) 1) s

    let pa, pb = pad a, pad b

    r.Length = max a.Length b.Length
    && Array.mapi (fun i d -> d = max pa[i] pb[i]) r |> Array.forall id

[<Property(Arbitrary = [| typeof<Arbitraries> |])>]
let ``broadcast with itself is identity`` (SmallShape s) = Shape.broadcast "t" s s = s

[<Test>]
let ``incompatible shapes name the op and both shapes`` () =
    let ex =
        Assert.Throws<ShapeMismatchException>(fun () -> Shape.broadcast "add" [| 2; 3 |] [| 4 |] |> ignore)

    Assert.That(ex.Message, Does.Contain("add"))
    Assert.That(ex.Message, Does.Contain("[2, 3]"))
    Assert.That(ex.Message, Does.Contain("[4]"))

[<Test>]
let ``strides are row-major`` () =
    Assert.That(Shape.strides [| 2; 3; 4 |], Eq.To([| 12; 4; 1 |]))
    Assert.That(Shape.strides [||], Eq.To([||]))

[<Test>]
let ``reshape resolves one -1 and rejects two`` () =
    Assert.That(Shape.resolveReshape "reshape" 24 [| 2; -1; 3 |], Eq.To([| 2; 4; 3 |]))

    Assert.Throws<SnnSpecException>(fun () -> Shape.resolveReshape "reshape" 24 [| -1; -1 |] |> ignore)
    |> ignore

    Assert.Throws<ShapeMismatchException>(fun () -> Shape.resolveReshape "reshape" 24 [| 5; -1 |] |> ignore)
    |> ignore
