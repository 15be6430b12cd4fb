/// Batch delivery for MNIST-shaped data: one operation is one batch of 64 images taken from an
/// in-memory uint8 set of 60000 28×28 images (shuffled order), against a baseline that copies the
/// same bytes in the same order into a reused buffer. Images/s = 64 / (time per operation).
module SnnSpec.Benchmarks.DataBenchmarks

open System
open BenchmarkDotNet.Attributes
open SnnSpec
open SnnSpec.Data

[<Literal>]
let Batches = 937

[<MemoryDiagnoser; SimpleJob(warmupCount = 3, iterationCount = 10)>]
type MnistBatches() =
    let mutable set = Unchecked.defaultof<ImageSet>
    let mutable perm = Array.empty<int>
    let mutable scratch = Array.empty<byte>
    let mutable sync = Unchecked.defaultof<Batcher>
    let mutable prefetch = Unchecked.defaultof<Batcher>
    let mutable epoch = 0

    [<GlobalSetup>]
    member _.Setup() =
        let n, size = 60000, 784
        let rng = Rng.create 5
        let pixels = Array.init (n * size) (fun i -> byte (Rng.bits rng (int64 i) >>> 56))
        let labels = Array.init n (fun i -> i % 10)
        set <- ImageSet.create "generated" pixels labels 1 28 28 10
        perm <- Rng.permutation n (Rng.create 6)
        scratch <- Array.zeroCreate (64 * size)

        sync <-
            Batching.create
                { Batching.options 64 1 with
                    Prefetch = 0
                    DropLast = true
                }
                set

        prefetch <-
            Batching.create
                { Batching.options 64 1 with
                    DropLast = true
                }
                set

    /// The same bytes, in the same shuffled order, copied into a reused byte buffer.
    [<Benchmark(Baseline = true, OperationsPerInvoke = Batches)>]
    member _.CopyBytes() =
        for b in 0 .. Batches - 1 do
            for j in 0..63 do
                Buffer.BlockCopy(set.Pixels, perm[b * 64 + j] * 784, scratch, j * 784, 784)

    /// Batches filled on the caller's thread (uint8 → float32 / 255, labels).
    [<Benchmark(OperationsPerInvoke = Batches)>]
    member _.BatchesOnCaller() =
        epoch <- epoch + 1
        let mutable s = 0

        for b in sync.Epoch epoch do
            s <- s + b.Labels[0]

        s

    /// Batches filled by the background thread, two ahead of the caller.
    [<Benchmark(OperationsPerInvoke = Batches)>]
    member _.BatchesPrefetched() =
        epoch <- epoch + 1
        let mutable s = 0

        for b in prefetch.Epoch epoch do
            s <- s + b.Labels[0]

        s

let types = [| typeof<MnistBatches> |]
