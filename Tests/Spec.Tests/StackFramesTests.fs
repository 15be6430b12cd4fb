/// Architecture.stackFrames: an ANN (or SNN) that reads a sequence of T frames concatenated along
/// channels, in order.
module SnnSpec.Tests.StackFramesTests

open NUnit.Framework
open FsCheck.NUnit
open SnnSpec
open SnnSpec.Training
open SnnSpec.IO
open SnnSpec.Tests.TestUtil
open SnnSpec.Tests.Generators

/// A ConvNet at a small width built for frames·channels input channels, on 12×12 frames.
let private wide (frames: int) (channels: int) =
    Zoo.convNet
        { ZooConfig.Mnist with
            Width = 0.125f
            InputChannels = frames * channels
            InputSize = 12
        }

/// The concatenation written out element by element: out[b, t·C + c, …] = x[t, b, c, …].
let private concatenated (x: Tensor) =
    let s = x.Shape
    let t, b, c = s[0], s[1], s[2]
    let inner = Array.fold (*) 1 s[3..]
    let src = x.ToArray()
    let dst = Array.zeroCreate src.Length

    for ti in 0 .. t - 1 do
        for bi in 0 .. b - 1 do
            for ci in 0 .. c - 1 do
                for k in 0 .. inner - 1 do
                    dst[((bi * t + ti) * c + ci) * inner + k] <- src[((ti * b + bi) * c + ci) * inner + k]

    Tensor.ofArray (Array.append [| b; t * c |] s[3..]) dst

[<Property(Arbitrary = [| typeof<Arbitraries> |], MaxTest = 12)>]
let ``a stacked model on a frame sequence equals its unstacked twin on the concatenated frames`` (Seed seed) =
    let frames = 1 + seed % 4
    let channels = 1 + (seed / 4) % 2
    let batch = 1 + (seed / 8) % 3
    let plain = wide frames channels
    let stacked = Architecture.stackFrames frames plain
    Assert.That(stacked.InputShape, Eq.To [| channels; 12; 12 |])

    let x = randn seed [| frames; batch; channels; 12; 12 |]

    for mode in [ ExecutionMode.Ann; ExecutionMode.Snn 2 ] do
        let m = Model.init seed mode plain
        let expected = Model.forward ForwardContext.Eval m (concatenated x)
        let actual = Model.forward ForwardContext.Eval { m with Architecture = stacked } x
        assertClose (sprintf "%A logits" mode) 1e-6 1e-6 expected.Logits actual.Logits

[<Test>]
let ``the input gradient of a stacked model passes the finite-difference check`` () =
    let arch =
        Architecture.stackFrames
            3
            {
                Name = "stacked mlp"
                InputShape = [| 6 |]
                Classes = 2
                Layers = [ Linear("fc1", 6, 4, true); Relu "r"; Linear("fc", 4, 2, true) ]
            }

    let m = Model.init 4 ExecutionMode.Ann arch
    let w = randn 9 [| 1; 2; 2 |]

    assertGradCheck
        "stacked input"
        (fun xs -> Tensor.sum ((Model.forward ForwardContext.Eval m xs[0]).Logits * w))
        [| randn 8 [| 3; 2; 2 |] |]

[<Test>]
let ``a stacked model refuses a static batch and a sequence of another length`` () =
    let m = Model.init 0 ExecutionMode.Ann (Architecture.stackFrames 3 (wide 3 2))

    assertRaises<SnnSpecException> [ "stacks 3 frames"; "[3, B, 2, 12, 12]" ] (fun () ->
        box (Model.forward ForwardContext.Eval m (randn 1 [| 4; 2; 12; 12 |])))

    assertRaises<SnnSpecException> [ "stacks 3 frames" ] (fun () ->
        box (Model.forward ForwardContext.Eval m (randn 1 [| 2; 4; 2; 12; 12 |])))

[<Test>]
let ``a stacked model has no per-step twin`` () =
    let m = Model.init 0 ExecutionMode.Ann (Architecture.stackFrames 3 (wide 3 2))

    assertRaises<SnnSpecException> [ "Model.withSteps"; "stacks 3 frames"; "without StackFrames" ] (fun () ->
        box (Model.withSteps 3 m))

    assertRaises<SnnSpecException> [ "Model.withSteps"; "at least 1" ] (fun () ->
        box (Model.withSteps 0 (Model.init 0 (ExecutionMode.Snn 2) (wide 1 1))))

[<Test>]
let ``stackFrames needs a channel count divisible by the frames and stacks once`` () =
    assertRaises<SnnSpecException> [ "Architecture.stackFrames"; "multiple of 4" ] (fun () ->
        box (Architecture.stackFrames 4 (wide 3 1)))

    assertRaises<SnnSpecException> [ "does not stack frames already" ] (fun () ->
        box (Architecture.stackFrames 1 (Architecture.stackFrames 2 (wide 2 1))))

    assertRaises<SnnSpecException> [ "frames" ] (fun () -> box (Architecture.stackFrames 0 (wide 2 1)))

[<Test>]
let ``a stacked model survives a checkpoint and counts the MACs of its unstacked twin`` () =
    let plain = wide 4 2
    let stacked = Architecture.stackFrames 4 plain
    let json = ArchitectureJson.write stacked
    let back = ArchitectureJson.read json
    Assert.That(Architecture.stackedFrames back, Eq.To(Some 4))
    Assert.That(back.InputShape, Eq.To [| 2; 12; 12 |])
    Assert.That(ArchitectureJson.write back, Eq.To json)
    Assert.That(Flops.forwardMacsSplit stacked, Eq.To(Flops.forwardMacsSplit plain))
    Assert.That(Architecture.stackedFrames plain, Eq.To None)
