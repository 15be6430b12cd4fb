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
        let n = 3 * Shape.numel shape
        src <- Array.init n (fun i -> float32 (i % 97))
        dst <- Array.zeroCreate n

    /// The fused kernel's unavoidable traffic, 3·T·N floats read and 3·T·N written (T·N = 6 422 528,
    /// 77 MB each way): the forward reads I and writes S and H; the backward reads gS and H and writes gI.
    [<Benchmark(Baseline = true)>]
    member _.CopyKernelBytes() = Array.Copy(src, dst, src.Length)

    /// The same copy split across the kernel threads (the fused kernel runs on two threads; a single
    /// thread does not saturate this machine's memory bandwidth).
    [<Benchmark>]
    member _.CopyKernelBytesThreaded() =
        Par.forChunks src.Length (1 <<< 20) (fun s e -> Array.Copy(src, s, dst, s, e - s))

    /// L = Σ S·w with gradients w.r.t. the input current and the initial state.
    [<Benchmark>]
    member _.FusedForwardBackward() =
        Diff.valueAndGradN
            (fun xs ->
                let r = Neuron.run lif xs[1] xs[0]
                Tensor.sum (r.S * weights))
            [| inputs; v0 |]
        |> ignore

    /// The objective alone, Σ S·w and its gradient on a fixed spike tensor (its share of the row above;
    /// its returned gradient is fresh memory, as gI and gV₀ are above).
    [<Benchmark>]
    member _.LossAlone() =
        Diff.valueAndGradN (fun xs -> Tensor.sum (xs[0] * weights)) [| spikes |]
        |> ignore

    /// The forward pass alone, outside any tape (inference).
    [<Benchmark>]
    member _.FusedForward() =
        Diff.scoped (fun () -> (Neuron.run lif v0 inputs).S) |> ignore

    /// The same objective through T single steps of tensor ops (the reference).
    [<Benchmark>]
    member _.ReferenceForwardBackward() =
        Diff.valueAndGradN
            (fun xs ->
                let r = Neuron.runReference lif xs[1] xs[0]
                Tensor.sum (r.S * weights))
            [| inputs; v0 |]
        |> ignore

let types = [| typeof<NeuronRun> |]
