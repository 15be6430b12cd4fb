/// Normalisation statistics: the per-channel batch moments a folded conv–BN takes in training.
module SnnSpec.Benchmarks.NormBenchmarks

open BenchmarkDotNet.Attributes
open SnnSpec

/// The per-channel batch statistics a folded conv–BN takes in training, forward and backward of
/// Σ μ·σ² on [256, 64, 14, 14]: Tensor.channelMoments against the two general reductions
/// meanDims and varDims over axes 0, 2, 3 (the baseline).
[<MemoryDiagnoser; SimpleJob(warmupCount = 3, iterationCount = 8)>]
type ChannelMoments() =
    let mutable x = Unchecked.defaultof<Tensor>

    let grad (moments: Tensor -> Tensor * Tensor) =
        use _ = TensorScope.Begin()

        Diff.gradN
            (fun xs ->
                let mu, var = moments xs[0]
                Tensor.sum (mu * var))
            [| x |]
        |> ignore

    [<GlobalSetup>]
    member _.Setup() =
        x <- Tensor.randn (Rng.create 1) [| 256; 64; 14; 14 |]

    [<Benchmark(Baseline = true)>]
    member _.MeanDimsAndVarDims() =
        grad (fun y -> Tensor.meanDims [| 0; 2; 3 |] false y, Tensor.varDims [| 0; 2; 3 |] false false y)

    [<Benchmark>]
    member _.Fused() = grad Tensor.channelMoments

/// Batch norm's training forward (batch statistics, then the centred normalisation a·(x − μ) + β)
/// on [256, 64, 14, 14], against channelMoments' forward alone (the statistics pass, the
/// baseline): the ratio is what the normalisation pass adds.
[<MemoryDiagnoser; SimpleJob(warmupCount = 3, iterationCount = 8)>]
type BatchNormTrainingForward() =
    let mutable x = Unchecked.defaultof<Tensor>
    let mutable gamma = Unchecked.defaultof<Tensor>
    let mutable beta = Unchecked.defaultof<Tensor>

    [<GlobalSetup>]
    member _.Setup() =
        x <- Tensor.randn (Rng.create 1) [| 256; 64; 14; 14 |]
        gamma <- Tensor.ones [| 64 |]
        beta <- Tensor.zeros [| 64 |]

    [<Benchmark(Baseline = true)>]
    member _.Moments() =
        use _ = TensorScope.Begin()
        Tensor.channelMoments x |> ignore

    [<Benchmark>]
    member _.BatchNorm() =
        use _ = TensorScope.Begin()

        Tensor.batchNorm
            BatchNormConfig.Default
            true
            gamma
            beta
            {
                Mean = Tensor.zeros [| 64 |]
                Var = Tensor.ones [| 64 |]
            }
            x
        |> ignore

let types = [| typeof<ChannelMoments>; typeof<BatchNormTrainingForward> |]
