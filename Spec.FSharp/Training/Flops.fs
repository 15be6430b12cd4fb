namespace SnnSpec.Training

open SnnSpec

/// Multiply–accumulate counts of the conv and linear layers (the usual training-cost measure;
/// norms, neurons and pooling are not counted). One MAC = 2 FLOPs. A training step costs its
/// forward MACs plus ≈ 2× that in the backward pass (gradient of the input and of the weights),
/// the convention of Kaplan et al. 2020 and of MD-SNN's "training FLOPs" comparison [R].
module Flops =
    /// Forward MACs per sample: (MACs before RepeatOverTime, run once; MACs per time step).
    let forwardMacsSplit (arch: Architecture) =
        let rec go (shape: int[]) (layers: LayerSpec list) : int[] * int64 =
            let mutable s = shape
            let mutable macs = 0L

            for l in layers do
                match l with
                | Conv2d(_, cin, cout, k, stride, pad, _) ->
                    let h = (s[1] + 2 * pad - k) / stride + 1
                    let w = (s[2] + 2 * pad - k) / stride + 1
                    macs <- macs + int64 cout * int64 h * int64 w * int64 cin * int64 (k * k)
                    s <- [| cout; h; w |]
                | Linear(_, fin, fout, _) ->
                    macs <- macs + int64 fin * int64 fout
                    s <- [| fout |]
                | MaxPool(k, stride)
                | AvgPool(k, stride) -> s <- [| s[0]; (s[1] - k) / stride + 1; (s[2] - k) / stride + 1 |]
                | AdaptiveAvgPool o -> s <- [| s[0]; o; o |]
                | Flatten -> s <- [| Array.fold (*) 1 s |]
                | Residual(_, _, main, shortcut, after) ->
                    let sm, m1 = go s main
                    let _, m2 = go s shortcut
                    let sa, m3 = go sm after
                    macs <- macs + m1 + m2 + m3
                    s <- sa
                | Stage(_, inner) ->
                    let si, m = go s inner
                    macs <- macs + m
                    s <- si
                | Norm _
                | Spiking _
                | Relu _
                | Dropout _
                | Tap _
                | RepeatOverTime -> ()
                | StackFrames f -> s <- Array.append [| s[0] * f |] s[1..]

            s, macs

        let rec split (before: LayerSpec list) (rest: LayerSpec list) =
            match rest with
            | RepeatOverTime :: after -> List.rev before, after
            | l :: after -> split (l :: before) after
            | [] -> [], List.rev before

        let once, perStep = split [] arch.Layers
        let s, m1 = go arch.InputShape once
        let _, m2 = go s perStep
        m1, m2

    /// Forward MACs per sample of a model run in a mode: once + T · per step (ANN: T = 1).
    let forwardMacs (arch: Architecture) (mode: ExecutionMode) =
        let once, perStep = forwardMacsSplit arch

        let t =
            match mode with
            | ExecutionMode.Snn t -> t
            | ExecutionMode.Ann -> 1

        once + int64 t * perStep

    /// Forward + backward MACs per sample of one training step (3 × forward).
    let trainingMacs (arch: Architecture) (mode: ExecutionMode) = 3L * forwardMacs arch mode
