/// The fused multi-step LIF (forward over T and BPTT backward) against a plain memory copy of the
/// bytes the fused kernel must move, so the ratio column reads as "times the cost of streaming its data once".
module SnnSpec.Benchmarks.NeuronBenchmarks

open System
open BenchmarkDotNet.Attributes
open SnnSpec
open SnnSpec.Kernels

[<MemoryDiagnoser; SimpleJob(warmupCount = 2, iterationCount = 6)>]
type NeuronRun() =
    let shape = [| 4; 64; 128; 14; 14 |]

    let lif =
        { Neuron.lif with
            Surrogate = Surrogate.sigmoid
            Reset = Reset.Hard 0.0f
        }

    let mutable inputs = Unchecked.defaultof<Tensor>
    let mutable v0 = Unchecked.defaultof<Tensor>
    let mutable weights = Unchecked.defaultof<Tensor>
    let mutable spikes = Unchecked.defaultof<Tensor>
    let mutable src = Array.empty<float32>
    let mutable dst = Array.empty<float32>

    [<GlobalSetup>]
    member _.Setup() =
        inputs <- Tensor.randn (Rng.create 1) shape + 0.5f
        v0 <- Tensor.zeros shape[1..]
        weights <- Tensor.randn (Rng.create 2) shape
        spikes <- (Neuron.run lif v0 inputs).S
        let n = 4 * Shape.numel shape
        src <- Array.init n (fun i -> float32 (i % 97))
        dst <- Array.zeroCreate n

    /// The fused kernel's unavoidable traffic plus the cheapest objective's, on the kernel threads:
    /// 4·T·N floats copied (T·N = 6 422 528). The kernel moves 6·T·N floats (forward reads I, writes S
    /// and H; backward reads gS and H, writes gI) and the objective Σ S 2·T·N more (reads S, writes gS).
    [<Benchmark(Baseline = true)>]
    member _.CopySameBytes() =
        Par.forChunks src.Length (1 <<< 20) (fun s e -> Array.Copy(src, s, dst, s, e - s))

    /// The same copy on one thread (a single thread does not saturate this machine's memory bandwidth).
    [<Benchmark>]
    member _.CopySameBytesOneThread() = Array.Copy(src, dst, src.Length)

    /// L = Σ S with gradients w.r.t. the input current and the initial state, inside a scope so the
    /// returned gradients are recycled as in a training loop (where I is an intermediate).
    [<Benchmark>]
    member _.FusedForwardBackward() =
        use _ = TensorScope.Begin()

        Diff.valueAndGradN
            (fun xs ->
                let r = Neuron.run lif xs[1] xs[0]
                Tensor.sum r.S)
            [| inputs; v0 |]
        |> ignore

    /// L = Σ S·w, a denser objective whose own forward and backward move about as much data again.
    [<Benchmark>]
    member _.FusedForwardBackwardWeightedLoss() =
        use _ = TensorScope.Begin()

        Diff.valueAndGradN
            (fun xs ->
                let r = Neuron.run lif xs[1] xs[0]
                Tensor.sum (r.S * weights))
            [| inputs; v0 |]
        |> ignore

    /// The weighted objective alone, Σ S·w and its gradient on a fixed spike tensor (its share of the row above).
    [<Benchmark>]
    member _.LossAlone() =
        use _ = TensorScope.Begin()

        Diff.valueAndGradN (fun xs -> Tensor.sum (xs[0] * weights)) [| spikes |]
        |> ignore

    /// The forward pass alone, outside any tape (inference).
    [<Benchmark>]
    member _.FusedForward() =
        Diff.scoped (fun () -> (Neuron.run lif v0 inputs).S) |> ignore

    /// The same objective through T single steps of tensor ops (the reference).
    [<Benchmark>]
    member _.ReferenceForwardBackward() =
        use _ = TensorScope.Begin()

        Diff.valueAndGradN
            (fun xs ->
                let r = Neuron.runReference lif xs[1] xs[0]
                Tensor.sum (r.S * weights))
            [| inputs; v0 |]
        |> ignore

/// Inference of a population whose membrane lives on a 4-bit uniform grid (the integer-exportable
/// quantized SNN): the fused kernel (Neuron.runGrid, what Neuron.runWith takes)
/// against the per-step tensor ops of Neuron.runQuantized (the baseline), [4, 64, 32, 28, 28].
[<MemoryDiagnoser; SimpleJob(warmupCount = 2, iterationCount = 6)>]
type NeuronGridRun() =
    let shape = [| 4; 64; 32; 28; 28 |]
    let neuron = { Neuron.mint with Threshold = 0.5f }

    let mq =
        {
            Bits = Bits.Fixed 4
            Alpha = Tensor.scalar 1.5f
            Scheme = MembraneScheme.Uniform
        }

    let mutable inputs = Unchecked.defaultof<Tensor>
    let mutable v0 = Unchecked.defaultof<Tensor>

    [<GlobalSetup>]
    member _.Setup() =
        inputs <- Tensor.randn (Rng.create 1) shape * 0.5f + 0.2f
        v0 <- Tensor.zeros shape[1..]

    [<Benchmark(Baseline = true)>]
    member _.PerStepTensorOps() =
        use _ = TensorScope.Begin()
        Diff.noGrad (fun () -> Neuron.runQuantized neuron mq v0 inputs) |> ignore

    [<Benchmark>]
    member _.Fused() =
        use _ = TensorScope.Begin()
        Diff.noGrad (fun () -> Neuron.runGrid neuron mq v0 inputs) |> ignore

/// Training a population with a 4-bit quantized membrane, [4, 64, 32, 14, 14]: forward and backward of
/// L = Σ S·w (random w) for the input current and α, on the uniform grid and under MINT's scheme.
/// Baseline: Neuron.runQuantized on the tape (T steps of per-step tensor ops and their backward rules);
/// the other row is the fused kernel (Neuron.runGrid, Neuron.runMint): one forward and one BPTT pass,
/// with the same values and gradients up to summation order.
[<MemoryDiagnoser; SimpleJob(warmupCount = 2, iterationCount = 6)>]
type QuantizedNeuronTrain() =
    let shape = [| 4; 64; 32; 14; 14 |]
    let neuron = { Neuron.mint with Threshold = 0.5f }
    let mutable inputs = Unchecked.defaultof<Tensor>
    let mutable v0 = Unchecked.defaultof<Tensor>
    let mutable w = Unchecked.defaultof<Tensor>

    [<Params("uniform", "mint")>]
    member val Scheme = "uniform" with get, set

    member private this.Train(fused: bool) =
        use _ = TensorScope.Begin()
        let uniform = this.Scheme = "uniform"

        let runner: Neuron -> MembraneQuant -> Tensor -> Tensor -> SnnSpec.NeuronRun =
            if not fused then Neuron.runQuantized
            elif uniform then Neuron.runGrid
            else Neuron.runMint

        Diff.gradN
            (fun xs ->
                let mq =
                    {
                        Bits = Bits.Fixed 4
                        Alpha = xs[1]
                        Scheme =
                            (if uniform then
                                 MembraneScheme.Uniform
                             else
                                 MembraneScheme.Mint)
                    }

                Tensor.sum ((runner neuron mq v0 xs[0]).S * w))
            // α below max|tanh| under MINT's scheme, so that its clamp takes effect.
            [| inputs; Tensor.scalar (if uniform then 1.5f else 0.8f) |]
        |> ignore

    [<GlobalSetup>]
    member _.Setup() =
        inputs <- Tensor.randn (Rng.create 1) shape * 0.5f + 0.2f
        v0 <- Tensor.zeros shape[1..]
        w <- Tensor.randn (Rng.create 2) shape

    [<Benchmark(Baseline = true)>]
    member this.PerStepTensorOps() = this.Train false

    [<Benchmark>]
    member this.FusedBptt() = this.Train true

let types =
    [| typeof<NeuronRun>; typeof<NeuronGridRun>; typeof<QuantizedNeuronTrain> |]
