/// Quickstart: train a small MLP on a generated three-arm spiral with SnnSpec's tensor core,
/// reverse-mode AD and Adam, then report the test accuracy. Deterministic for the seed.
module SnnSpec.Examples.Quickstart

open System
open System.Diagnostics
open SnnSpec

/// n points per class on three interleaved spiral arms in the plane, with Gaussian jitter.
let spiral (rng: Rng) (perClass: int) =
    let classes = 3
    let n = perClass * classes
    let noise = (Tensor.randn rng [| n; 2 |]).ToArray()
    let xs = Array.zeroCreate (n * 2)
    let ys = Array.zeroCreate n

    for c in 0 .. classes - 1 do
        for i in 0 .. perClass - 1 do
            let k = c * perClass + i
            let r = float32 i / float32 perClass
            let angle = 4.0f * r + 2.0f * MathF.PI * float32 c / float32 classes
            xs[2 * k] <- r * MathF.Cos angle + 0.04f * noise[2 * k]
            xs[2 * k + 1] <- r * MathF.Sin angle + 0.04f * noise[2 * k + 1]
            ys[k] <- c

    Tensor.ofArray [| n; 2 |] xs, ys

/// A two-hidden-layer MLP as parameters plus a pure forward function.
let init (rng: Rng) (hidden: int) =
    let keys = Rng.splitN 3 rng

    let layer (key: Rng) (fanIn: int) (fanOut: int) =
        let bound = 1.0f / MathF.Sqrt(float32 fanIn)
        Tensor.uniform key -bound bound [| fanOut; fanIn |], Tensor.zeros [| fanOut |]

    let w1, b1 = layer keys[0] 2 hidden
    let w2, b2 = layer keys[1] hidden hidden
    let w3, b3 = layer keys[2] hidden 3

    Parameters.ofList
        [
            "fc1.weight", w1
            "fc1.bias", b1
            "fc2.weight", w2
            "fc2.bias", b2
            "fc3.weight", w3
            "fc3.bias", b3
        ]

let forward (p: Parameters) (x: Tensor) =
    x
    |> Tensor.linear p["fc1.weight"] (Some p["fc1.bias"])
    |> Tensor.relu
    |> Tensor.linear p["fc2.weight"] (Some p["fc2.bias"])
    |> Tensor.relu
    |> Tensor.linear p["fc3.weight"] (Some p["fc3.bias"])

let accuracy (p: Parameters) (x: Tensor) (y: int[]) =
    let pred = (Tensor.argmax 1 (forward p x)).ToArray()

    float (Array.fold2 (fun acc (p: float32) l -> if int p = l then acc + 1 else acc) 0 pred y)
    / float y.Length

[<EntryPoint>]
let main argv =
    let seed = if argv.Length > 0 then int argv[0] else 0
    let root = Rng.create seed

    let trainKey, testKey, initKey =
        Rng.split root |> fun (a, b) -> a, b, Rng.fold 7 root

    let xTrain, yTrain = spiral trainKey 300
    let xTest, yTest = spiral testKey 100
    let mutable p = init initKey 64
    let mutable state = OptimizerState.Empty

    let cfg =
        { AdamConfig.Default with
            LearningRate = 0.01f
        }

    printfn
        "SnnSpec quickstart: MLP 2-64-64-3 on a generated 3-class spiral (%d train, %d test points)"
        yTrain.Length
        yTest.Length

    printfn "%s" (p.ToString())
    let clock = Stopwatch.StartNew()

    for epoch in 1..300 do
        let loss, grads =
            Parameters.valueAndGrad (fun p -> Tensor.crossEntropyIdx (forward p xTrain) yTrain) p

        let p', state' = Optim.adam cfg state p grads
        p <- p'
        state <- state'

        if epoch % 50 = 0 then
            printfn "epoch %3d  loss %.4f  train acc %.3f" epoch (loss.ToScalar()) (accuracy p xTrain yTrain)

    let testAcc = accuracy p xTest yTest
    printfn "test accuracy %.3f after %d ms" testAcc clock.ElapsedMilliseconds
    if testAcc > 0.9 then 0 else 1
