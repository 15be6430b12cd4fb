/// The exact integer product of the integer datapath (Forward.exactProduct: float32 kernels when no
/// output can leave float32's exact integers) against the term-by-term integer sum it replaces
/// (Forward.referenceProduct, the baseline), on a quantized SNN's second conv and its classifier
/// input layer at T·B = 4·64 with 15 % of the inputs spiking.
module SnnSpec.Benchmarks.IntegerProductBenchmarks

open System
open BenchmarkDotNet.Attributes
open SnnSpec

/// An exported 4-bit layer with random codes, as IntegerExport writes one.
let layer (kind: string) (shape: int[]) (stride: int) (padding: int) (seed: int) =
    let rng = Random seed

    {
        Name = kind
        Kind = kind
        Shape = shape
        Weights = Array.init (Array.reduce (*) shape) (fun _ -> rng.Next(-7, 8))
        Bias = None
        Bits = 4
        Levels = 7
        Alpha = 1.0f
        Step = 1.0f / 7.0f
        Stride = stride
        Padding = padding
        FoldedNorm = None
        Neuron = None
    }

/// n binary codes, 15 % of them 1.
let spikes (seed: int) (n: int) =
    let rng = Random seed
    Array.init n (fun _ -> if rng.NextDouble() < 0.15 then 1 else 0)

[<MemoryDiagnoser; SimpleJob(warmupCount = 2, iterationCount = 6)>]
type ConvProduct() =
    let conv = layer "conv2d" [| 32; 16; 3; 3 |] 1 1 1
    let shape = [| 256; 16; 14; 14 |]
    let x = spikes 2 (Array.reduce (*) shape)

    [<Benchmark(Baseline = true)>]
    member _.Reference() = Forward.referenceProduct conv x shape

    [<Benchmark>]
    member _.Exact() = Forward.exactProduct conv x shape

[<MemoryDiagnoser; SimpleJob(warmupCount = 2, iterationCount = 6)>]
type LinearProduct() =
    let fc = layer "linear" [| 128; 1568 |] 1 0 3
    let shape = [| 256; 1568 |]
    let x = spikes 4 (Array.reduce (*) shape)

    [<Benchmark(Baseline = true)>]
    member _.Reference() = Forward.referenceProduct fc x shape

    [<Benchmark>]
    member _.Exact() = Forward.exactProduct fc x shape

let types = [| typeof<ConvProduct>; typeof<LinearProduct> |]
