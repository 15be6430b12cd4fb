module SnnSpec.Tests.ConvOpsTests

open NUnit.Framework
open FsCheck
open FsCheck.FSharp
open FsCheck.NUnit
open SnnSpec
open SnnSpec.Tests.TestUtil

type ConvCase =
    {
        N: int
        C: int
        O: int
        H: int
        K: int
        Stride: int
        Padding: int
        Dilation: int
        Groups: int
        Seed: int
    }

type ConvArbs =
    static member ConvCase() =
        gen {
            let! groups = Gen.elements [ 1; 1; 2 ]
            let! cg = Gen.choose (1, 2)
            let! og = Gen.choose (1, 2)
            let! k = Gen.elements [ 1; 2; 3 ]
            let! stride = Gen.choose (1, 2)
            let! padding = Gen.choose (0, 1)
            let! dilation = Gen.choose (1, 2)
            let! extra = Gen.choose (0, 3)
            let! n = Gen.choose (1, 2)
            let! seed = Gen.choose (0, 100000)

            return
                {
                    N = n
                    C = cg * groups
                    O = og * groups
                    H = dilation * (k - 1) + 1 + extra
                    K = k
                    Stride = stride
                    Padding = padding
                    Dilation = dilation
                    Groups = groups
                    Seed = seed
                }
        }
        |> Arb.fromGen

[<Property(Arbitrary = [| typeof<ConvArbs> |], MaxTest = 40)>]
let ``conv2d gradients match finite differences for x, weight and bias`` (c: ConvCase) =
    let x = randn c.Seed [| c.N; c.C; c.H; c.H + 1 |]
    let w = randn (c.Seed + 1) [| c.O; c.C / c.Groups; c.K; c.K |]
    let b = randn (c.Seed + 2) [| c.O |]

    assertGradCheck
        (sprintf "conv2d %A" c)
        (fun xs -> Tensor.conv2dWith c.Stride c.Padding c.Dilation c.Groups xs[1] (Some xs[2]) xs[0])
        [| x; w; b |]

[<Test>]
let ``conv2d equals a direct sum on a hand-sized case`` () =
    // 1×1×3×3 input, 2×2 kernel of ones: each output is the sum of a 2×2 window.
    let x =
        Tensor.ofArray [| 1; 1; 3; 3 |] [| 1.0f; 2.0f; 3.0f; 4.0f; 5.0f; 6.0f; 7.0f; 8.0f; 9.0f |]

    let w = Tensor.ones [| 1; 1; 2; 2 |]
    let y = Tensor.conv2d 1 0 w (Some(Tensor.ofArray [| 1 |] [| 0.5f |])) x
    Assert.That(y.Shape, Eq.To [| 1; 1; 2; 2 |])
    Assert.That(y.ToArray(), Eq.To [| 12.5f; 16.5f; 24.5f; 28.5f |])

[<Property(MaxTest = 25)>]
let ``pooling and upsampling gradients match finite differences`` (seed: int) =
    let x = randn seed [| 2; 2; 5; 6 |]
    let distinct = distinctValues seed x.Shape

    assertGradCheck "maxPool2d" (fun xs -> Tensor.maxPool2d 2 2 0 xs[0]) [| distinct |]
    assertGradCheck "maxPool2d padded" (fun xs -> Tensor.maxPool2d 3 2 1 xs[0]) [| distinct |]
    assertGradCheck "avgPool2d" (fun xs -> Tensor.avgPool2d 2 1 1 xs[0]) [| x |]
    assertGradCheck "adaptiveAvgPool2d" (fun xs -> Tensor.adaptiveAvgPool2d 3 4 xs[0]) [| x |]
    assertGradCheck "upsampleNearest" (fun xs -> Tensor.upsampleNearest 7 9 xs[0]) [| x |]
    assertGradCheck "upsampleBilinear" (fun xs -> Tensor.upsampleBilinear false 8 11 xs[0]) [| x |]
    assertGradCheck "upsampleBilinear aligned" (fun xs -> Tensor.upsampleBilinear true 8 11 xs[0]) [| x |]

[<Test>]
let ``AD of a small MLP matches finite differences`` () =
    let x = randn 1 [| 5; 4 |]
    let labels = [| 0; 2; 1; 2; 0 |]

    let f (ps: Tensor[]) =
        x
        |> Tensor.linear ps[0] (Some ps[1])
        |> Tensor.tanh
        |> Tensor.linear ps[2] (Some ps[3])
        |> fun z -> Tensor.crossEntropyIdx z labels

    assertGradCheck "mlp" f [| randn 2 [| 6; 4 |]; randn 3 [| 6 |]; randn 4 [| 3; 6 |]; randn 5 [| 3 |] |]

[<Test>]
let ``AD of a small CNN with batch norm and pooling matches finite differences`` () =
    let x = randn 1 [| 3; 2; 6; 6 |]
    let labels = [| 1; 0; 1 |]
    let state = BatchNormState.Init 4

    let f (ps: Tensor[]) =
        let y = Tensor.conv2d 1 1 ps[0] (Some ps[1]) x
        let y, _ = Tensor.batchNorm BatchNormConfig.Default true ps[2] ps[3] state y

        y
        |> Tensor.sigmoid
        |> Tensor.avgPool2d 2 2 0
        |> Tensor.flatten 1 -1
        |> Tensor.linear ps[4] None
        |> fun z -> Tensor.crossEntropyIdx z labels

    let opts =
        { GradCheck.defaults with
            Epsilon = 3e-3f
            RelTol = 5e-2
        }
    // Batch norm divides by a per-channel std of few values, which amplifies float32 rounding in
    // the finite differences: a smaller step and a looser relative tolerance, as in NnOpsTests.
    assertGradCheckWith
        opts
        "cnn"
        f
        [|
            randn 2 [| 4; 2; 3; 3 |]
            randn 3 [| 4 |]
            Tensor.uniform (Rng.create 4) 0.5f 1.5f [| 4 |]
            randn 5 [| 4 |]
            randn 6 [| 2; 36 |]
        |]

[<Test>]
let ``convolution and pooling errors name the op and the shapes`` () =
    let x = randn 1 [| 1; 3; 8; 8 |]

    assertRaises<ShapeMismatchException> [ "conv2d"; "[1, 3, 8, 8]"; "[4, 2, 3, 3]" ] (fun () ->
        box (Tensor.conv2d 1 1 (randn 2 [| 4; 2; 3; 3 |]) None x))

    assertRaises<ShapeMismatchException> [ "conv2d"; "[3, 8, 8]" ] (fun () ->
        box (Tensor.conv2d 1 1 (randn 2 [| 4; 3; 3; 3 |]) None (randn 1 [| 3; 8; 8 |])))

    assertRaises<SnnSpecException> [ "groups" ] (fun () ->
        box (Tensor.conv2dWith 1 1 1 2 (randn 2 [| 4; 1; 3; 3 |]) None x))

    assertRaises<SnnSpecException> [ "maxPool2d" ] (fun () -> box (Tensor.maxPool2d 2 2 0 (randn 1 [| 8; 8 |])))

    for pool, name in [ Tensor.maxPool2d, "maxPool2d"; Tensor.avgPool2d, "avgPool2d" ] do
        assertRaises<SnnSpecException> [ name; "StrideH" ] (fun () -> box (pool 2 0 0 x))
        assertRaises<SnnSpecException> [ name; "output height" ] (fun () -> box (pool 5 1 0 (randn 1 [| 1; 1; 3; 3 |])))
