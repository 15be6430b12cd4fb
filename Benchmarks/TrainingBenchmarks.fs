/// One training step (forward, backward, Adam update) of the small ConvNet for 28×28 inputs at
/// batch 64: as an SNN with T = 4 and, as the same-run reference, its ANN twin (T = 1). The ratio
/// column is the SNN step's cost in ANN steps; images/s = 64 / mean time.
module SnnSpec.Benchmarks.TrainingBenchmarks

open BenchmarkDotNet.Attributes
open SnnSpec

[<MemoryDiagnoser; SimpleJob(warmupCount = 2, iterationCount = 6)>]
type ConvNetStep() =
    let mutable snn = Unchecked.defaultof<Model>
    let mutable ann = Unchecked.defaultof<Model>
    let mutable quantized = Unchecked.defaultof<Model>
    let mutable weightsOnly = Unchecked.defaultof<Model>
    let mutable mint = Unchecked.defaultof<Model>
    let mutable x = Unchecked.defaultof<Tensor>
    let labels = Array.init 64 (fun i -> i % 10)

    let step (m: Model) =
        let loss (ps: Parameters) =
            let out = Model.apply (ForwardContext.Train(Rng.create 1)) m ps x
            Tensor.crossEntropyIdx (Readout.mean out.Logits) labels, Parameters.values out.Buffers

        let _, grads, _ = Parameters.valueAndGradAux loss m.Parameters
        Optim.adam AdamConfig.Default OptimizerState.Empty m.Parameters grads |> fst

    [<GlobalSetup>]
    member _.Setup() =
        let arch = Zoo.convNet ZooConfig.Mnist
        snn <- Model.init 0 (ExecutionMode.Snn 4) arch
        ann <- Model.asAnn snn
        quantized <- Model.quantize (QuantConfig.Integer 4) snn
        mint <- Model.quantize (QuantConfig.Mint 4) snn

        weightsOnly <-
            Model.quantize
                { QuantConfig.Integer 4 with
                    Membrane = Bits.FullPrecision
                }
                snn

        x <- Tensor.rand (Rng.create 2) [| 64; 1; 28; 28 |]

    [<Benchmark(Baseline = true)>]
    member _.AnnTwinStep() = step ann

    [<Benchmark>]
    member _.SnnStepT4() = step snn

    /// The same SNN trained quantization-aware (4-bit weights and membranes on the uniform grid, BN
    /// folded): its populations run the fused uniform-grid kernel (Neuron.runGrid).
    [<Benchmark>]
    member _.QuantizedSnnStepT4() = step quantized

    /// Weights quantized and BN folded as in QuantizedSnnStepT4, membranes in full precision (the
    /// fused neuron kernel): the difference between the two rows is the cost of the quantized membranes.
    [<Benchmark>]
    member _.WeightQuantizedSnnStepT4() = step weightsOnly

    /// MINT's recipe at 4 bits (tanh-premapped weights and membranes, BN folded, the first layer in
    /// full precision): its populations run Neuron.runMint.
    [<Benchmark>]
    member _.MintQuantizedSnnStepT4() = step mint

let types = [| typeof<ConvNetStep> |]
