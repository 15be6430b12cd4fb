module SnnSpec.Benchmarks.ConvBenchmarks

open System
open BenchmarkDotNet.Attributes
open SnnSpec.Kernels

/// One conv2d training step (forward, backward-data, backward-weight) for N = 256 (batch 64 × T = 4),
/// 32 → 64 channels, 14×14, 3×3, pad 1, stride 1, against plain GEMMs of the same FLOPs: per time step
/// [12544×288]·[288×64], [12544×64]·[64×288]ᵀ-shape and [288×12544]·[12544×64], i.e. the im2col-equivalent
/// products. The Ratio column is conv-step time / GEMM time. Short job: one launch, 2 warm-up and 5 measured iterations.
[<SimpleJob(launchCount = 1, warmupCount = 2, iterationCount = 5)>]
type ConvStep() =
    let g = Conv2dGeometry.Create(256, 32, 14, 14, 64, 3, padding = 1)
    let rng = Random 1

    let fill n =
        Array.init n (fun _ -> float32 (rng.NextDouble() - 0.5))

    let x = fill g.XLength
    let w = fill g.WLength
    let b = fill g.O
    let y = Array.zeroCreate<float32> g.YLength
    let dy = fill g.YLength
    let dx = Array.zeroCreate<float32> g.XLength
    let dw = Array.zeroCreate<float32> g.WLength
    let db = Array.zeroCreate<float32> g.O
    let rows = 64 * g.Ho * g.Wo
    let ckk = g.C * g.KH * g.KW
    let cols = fill (rows * ckk)
    let wt = fill (ckk * g.O)
    let out = fill (rows * g.O)
    let dcols = Array.zeroCreate<float32>(rows * ckk)
    let dwt = Array.zeroCreate<float32>(ckk * g.O)

    [<Benchmark(Baseline = true, Description = "GEMM, same FLOPs")>]
    member _.Gemm() =
        for _ in 0..3 do
            Gemm.Sgemm(false, false, rows, g.O, ckk, 1.0f, cols, 0, ckk, wt, 0, g.O, 0.0f, out, 0, g.O)
            Gemm.Sgemm(false, true, rows, ckk, g.O, 1.0f, out, 0, g.O, wt, 0, g.O, 0.0f, dcols, 0, ckk)
            Gemm.Sgemm(true, false, ckk, g.O, rows, 1.0f, cols, 0, ckk, out, 0, g.O, 0.0f, dwt, 0, g.O)

    [<Benchmark(Description = "conv2d fwd+bwd")>]
    member _.Step() =
        Conv.forward g x 0 w 0 (Some b) 0 y 0
        Conv.backwardData g dy 0 w 0 dx 0 false
        Conv.backwardWeight g x 0 dy 0 dw 0 false
        Conv.biasGrad g dy 0 db 0 false

    [<Benchmark(Description = "conv2d forward")>]
    member _.Forward() = Conv.forward g x 0 w 0 (Some b) 0 y 0

    [<Benchmark(Description = "conv2d backward-data")>]
    member _.BackwardData() = Conv.backwardData g dy 0 w 0 dx 0 false

    [<Benchmark(Description = "conv2d backward-weight")>]
    member _.BackwardWeight() =
        Conv.backwardWeight g x 0 dy 0 dw 0 false

/// The benchmark classes of this module, for BenchmarkSwitcher.
let types: Type[] = [| typeof<ConvStep> |]
