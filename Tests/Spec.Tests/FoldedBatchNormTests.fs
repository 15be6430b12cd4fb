module SnnSpec.Tests.FoldedBatchNormTests

open NUnit.Framework
open FsCheck.NUnit
open SnnSpec
open SnnSpec.Tests.TestUtil

let private setup seed =
    let x = randn seed [| 4; 3; 6; 6 |]
    let w = randn (seed + 1) [| 5; 3; 3; 3 |]
    let b = randn (seed + 2) [| 5 |]
    let gamma = Tensor.uniform (Rng.create (seed + 3)) 0.5f 1.5f [| 5 |]
    let beta = randn (seed + 4) [| 5 |]

    let state: BatchNormState =
        {
            Mean = randn (seed + 5) [| 5 |]
            Var = Tensor.uniform (Rng.create (seed + 6)) 0.5f 2.0f [| 5 |]
        }

    x, w, b, gamma, beta, state

[<Property(MaxTest = 20)>]
let ``folded BN equals conv then BN, in eval and in training, including running statistics`` (seed: int) =
    let x, w, b, gamma, beta, state = setup seed
    let cfg = BatchNormConfig.Default

    for training in [ false; true ] do
        let reference, refState =
            Tensor.batchNorm cfg training gamma beta state (Tensor.conv2d 1 1 w (Some b) x)

        let folded, foldState =
            FoldedBatchNorm.conv2d cfg training 1 1 id id w (Some b) gamma beta state x

        assertClose (sprintf "output (training %b)" training) 1e-4 1e-4 reference folded
        assertClose "running mean" 1e-5 1e-5 refState.Mean foldState.Mean
        assertClose "running var" 1e-5 1e-5 refState.Var foldState.Var

[<Test>]
let ``folded BN gradients match finite differences`` () =
    let x, w, b, gamma, beta, state = setup 3

    assertGradCheckWith
        { GradCheck.defaults with
            Epsilon = 3e-3f
            RelTol = 5e-2
        }
        "folded conv-BN (training)"
        (fun ps ->
            fst (FoldedBatchNorm.conv2d BatchNormConfig.Default true 1 1 id id ps[0] (Some ps[1]) ps[2] ps[3] state x))
        [| w; b; gamma; beta |]

[<Test>]
let ``the quantizers see the folded weight and bias`` () =
    let x, w, b, gamma, beta, state = setup 5
    let alpha = Tensor.scalar 0.5f
    let q = Quantizer.mint (Bits.Fixed 4) alpha

    let y, _ =
        FoldedBatchNorm.conv2d BatchNormConfig.Default false 1 1 q q w (Some b) gamma beta state x

    let w', b' = FoldedBatchNorm.fold 1e-5f w (Some b) gamma beta state.Mean state.Var
    let expected = Tensor.conv2d 1 1 (q w') (Some(q b')) x
    assertClose "quantized folded conv" 1e-5 1e-5 expected y
    // Shared scale: weight and bias codes lie on one grid (α/Q)·ℤ.
    for v in Array.append ((q w').ToArray()) ((q b').ToArray()) do
        let code = v * 7.0f / 0.5f
        Assert.That(abs (code - round code), Is.LessThan 1e-3f)
