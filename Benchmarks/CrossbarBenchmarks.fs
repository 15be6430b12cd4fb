/// Crossbar inference's layer product (CrossbarInference.product: batched reads through one
/// Crossbar.batchReader per crossbar and thread, each conv tap's positions in one batch) against reading vector by vector through
/// Crossbar.forward (CrossbarInference.referenceProduct, the baseline), with an ideal and a 4-bit ADC
/// on 64-row crossbars of 4-bit cells, on the layers and spike density of IntegerProductBenchmarks at
/// T·B = 4·16.
module SnnSpec.Benchmarks.CrossbarBenchmarks

open BenchmarkDotNet.Attributes
open SnnSpec.HwSim
open SnnSpec.Benchmarks.IntegerProductBenchmarks

let private options (adc: string) =
    { CrossbarOptions.Ideal with
        Adc = if adc = "ideal" then Adc.Ideal else Adc.Quantized(4, None)
    }

[<MemoryDiagnoser; SimpleJob(warmupCount = 2, iterationCount = 6)>]
type CrossbarConvProduct() =
    let conv = layer "conv2d" [| 32; 16; 3; 3 |] 1 1 1
    let mutable xbars = [||]
    let shape = [| 64; 16; 14; 14 |]
    let x = spikes 2 (Array.reduce (*) shape)

    [<Params("ideal", "4-bit")>]
    member val Adc = "ideal" with get, set

    [<GlobalSetup>]
    member this.Program() =
        xbars <- CrossbarInference.program (options this.Adc) 0 conv

    [<Benchmark(Baseline = true)>]
    member _.Reference() =
        CrossbarInference.referenceProduct conv xbars x shape

    [<Benchmark>]
    member _.Readers() =
        CrossbarInference.product conv xbars x shape

[<MemoryDiagnoser; SimpleJob(warmupCount = 2, iterationCount = 6)>]
type CrossbarLinearProduct() =
    let fc = layer "linear" [| 128; 1568 |] 1 0 3
    let mutable xbars = [||]
    let shape = [| 64; 1568 |]
    let x = spikes 4 (Array.reduce (*) shape)

    [<Params("ideal", "4-bit")>]
    member val Adc = "ideal" with get, set

    [<GlobalSetup>]
    member this.Program() =
        xbars <- CrossbarInference.program (options this.Adc) 1 fc

    [<Benchmark(Baseline = true)>]
    member _.Reference() =
        CrossbarInference.referenceProduct fc xbars x shape

    [<Benchmark>]
    member _.Readers() =
        CrossbarInference.product fc xbars x shape

let types = [| typeof<CrossbarConvProduct>; typeof<CrossbarLinearProduct> |]
