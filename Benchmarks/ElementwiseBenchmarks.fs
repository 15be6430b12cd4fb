/// Elementwise ops and reductions against a plain memory copy of the same bytes (the baseline),
/// so the ratio column reads as "times the cost of streaming the data once".
module SnnSpec.Benchmarks.ElementwiseBenchmarks

open System
open BenchmarkDotNet.Attributes
open SnnSpec

[<MemoryDiagnoser; SimpleJob(warmupCount = 3, iterationCount = 8)>]
type Elementwise() =
    let mutable a = Unchecked.defaultof<Tensor>
    let mutable b = Unchecked.defaultof<Tensor>
    let mutable bias = Unchecked.defaultof<Tensor>
    let mutable src = Array.empty<float32>
    let mutable dst = Array.empty<float32>

    /// Elements per operand: [T·B, C, H, W] = [256, 64, 14, 14], the activation size of the conv benchmark.
    [<Params(3211264)>]
    member val N = 0 with get, set

    [<GlobalSetup>]
    member this.Setup() =
        a <- Tensor.randn (Rng.create 1) [| 256; 64; 196 |]
        b <- Tensor.randn (Rng.create 2) [| 256; 64; 196 |]
        bias <- Tensor.randn (Rng.create 3) [| 64; 1 |]
        src <- a.ToArray()
        dst <- Array.zeroCreate src.Length

    /// Reads 2 operands' worth of bytes and writes one: the same traffic as a binary op.
    [<Benchmark(Baseline = true)>]
    member _.CopyTwice() =
        Array.Copy(src, dst, src.Length)
        Array.Copy(src, dst, src.Length)

    [<Benchmark>]
    member _.Add() = Diff.scoped (fun () -> a + b)

    [<Benchmark>]
    member _.MulBroadcastChannel() = Diff.scoped (fun () -> a * bias)

    [<Benchmark>]
    member _.Sigmoid() =
        Diff.scoped (fun () -> Tensor.sigmoid a)

    [<Benchmark>]
    member _.SumAll() = Diff.scoped (fun () -> Tensor.sum a)

    /// Batch-norm-style statistics: per channel over axes 0 and 2.
    [<Benchmark>]
    member _.SumOverBatchAndSpace() =
        Diff.scoped (fun () -> Tensor.sumDims [| 0; 2 |] false a)

    [<Benchmark>]
    member _.AddWithGradient() =
        Diff.valueAndGradN (fun xs -> Tensor.sum (xs[0] * xs[1])) [| a; b |] |> ignore

let types = [| typeof<Elementwise> |]
