/// One knowledge-distillation epoch (512 generated 1×16×16 images, batch 32) of a small MLP SNN
/// student (T = 4) under a ConvNet SNN teacher (T = 4, logits): with the
/// teacher run live on every batch, and with its outputs read from a TeacherCache built once in
/// setup. The ratio column is the cached epoch's cost in live epochs.
module SnnSpec.Benchmarks.TrainerBenchmarks

open System
open BenchmarkDotNet.Attributes
open SnnSpec
open SnnSpec.Data
open SnnSpec.Distillation
open SnnSpec.Training

/// One epoch of SGD at 0.05 (TrainConfig.Default otherwise), as both suites train.
let private config =
    { TrainConfig.Default with
        Epochs = 1
        LearningRate = 0.05f
    }

/// Batches of 32 in the seeded order of seed 1, filled on the caller's thread.
let private batchesOf32 (data: ImageSet) =
    Batching.create
        { Batching.options 32 1 with
            Prefetch = 0
        }
        data

/// n random side × side single-channel images of 10 classes (labels i mod 10).
let private noise (seed: int) (n: int) (side: int) =
    let pixels = Array.zeroCreate<byte>(n * side * side)
    (Random seed).NextBytes pixels
    ImageSet.create "noise" pixels (Array.init n (fun i -> i % 10)) 1 side side 10

[<MemoryDiagnoser; SimpleJob(launchCount = 1, warmupCount = 1, iterationCount = 5)>]
type KdEpoch() =
    let mutable data = Unchecked.defaultof<ImageSet>
    let mutable spec = Unchecked.defaultof<DistillationSpec>
    let mutable cache = Unchecked.defaultof<TeacherCache>

    let batcher () = batchesOf32 data

    [<GlobalSetup>]
    member _.Setup() =
        let rng = Random 1
        let n, side, classes = 512, 16, 10

        let templates =
            Array.init classes (fun _ -> Array.init (side * side) (fun _ -> rng.NextDouble()))

        let labels = Array.init n (fun i -> i % classes)

        let pixels =
            Array.init (n * side * side) (fun k ->
                let v =
                    templates[labels[k / (side * side)]][k % (side * side)]
                    + 0.3 * (rng.NextDouble() - 0.5)

                byte (Math.Clamp(v * 255.0, 0.0, 255.0)))

        data <- ImageSet.create "templates" pixels labels 1 side side classes

        let zoo =
            { ZooConfig.Mnist with
                InputSize = side
            }

        let teacher = Model.init 0 (ExecutionMode.Snn 4) (Zoo.convNet zoo)
        let student = Model.init 1 (ExecutionMode.Snn 4) (Zoo.mlp zoo [ 64 ])

        spec <-
            DistillationSpec.create teacher [ student ] [ SpecTerm.crossEntropy 0.0f 0.5f; SpecTerm.logitKd 4.0f 0.5f ]

        cache <- TeacherCache.build CachePrecision.Float16 32 teacher (DistillationSpec.teacherProbes spec) data

    [<Benchmark(Baseline = true, Description = "KD epoch, live teacher")>]
    member _.Live() =
        Trainer.fit config spec (batcher ()) None

    [<Benchmark(Description = "KD epoch, cached teacher")>]
    member _.Cached() =
        Trainer.fit
            { config with
                TeacherCache = TeacherCacheMode.Use cache
            }
            spec
            (batcher ())
            None

/// Truncated BPTT (TrainConfig.Truncation = K) against full BPTT: Trainer.fit over four batches of
/// 32 generated 1×16×16 images training a ConvNet SNN at T = 16. The ratio column is a truncated
/// epoch's cost in full-BPTT epochs for each window; peak memory needs a process of its own per
/// configuration and is measured by Benchmarks/race/truncation.sh.
[<MemoryDiagnoser; SimpleJob(launchCount = 1, warmupCount = 1, iterationCount = 5)>]
type TruncatedBptt() =
    let mutable data = Unchecked.defaultof<ImageSet>
    let mutable spec = Unchecked.defaultof<DistillationSpec>

    let batcher () = batchesOf32 data

    /// The window K in steps.
    [<Params(8, 4, 2)>]
    member val Window = 4 with get, set

    [<GlobalSetup>]
    member _.Setup() =
        data <- noise 2 128 16

        let student =
            Model.init 0 (ExecutionMode.Snn 16) (Zoo.convNet { ZooConfig.Mnist with InputSize = 16 })

        spec <- DistillationSpec.alone [ student ] [ SpecTerm.crossEntropy 0.0f 1.0f ]

    [<Benchmark(Baseline = true, Description = "full BPTT, T = 16")>]
    member _.Full() =
        Trainer.fit config spec (batcher ()) None

    [<Benchmark(Description = "truncated BPTT, T = 16")>]
    member this.Truncated() =
        Trainer.fit
            { config with
                Truncation = Some this.Window
            }
            spec
            (batcher ())
            None

/// Activation checkpointing (TrainConfig.CheckpointActivations) against plain training:
/// Trainer.fit over four batches of 32 generated 1×16×16 images training a VGG-9 SNN (width 0.25)
/// at T = 4. The ratio column is the price of running every segment a second time in the backward
/// pass; peak memory needs a process of its own per configuration and is measured by
/// Benchmarks/race/truncation.sh (MODEL=vgg9 WINDOWS="0 0c").
[<MemoryDiagnoser; SimpleJob(launchCount = 1, warmupCount = 1, iterationCount = 5)>]
type CheckpointedActivations() =
    let mutable data = Unchecked.defaultof<ImageSet>
    let mutable spec = Unchecked.defaultof<DistillationSpec>

    [<GlobalSetup>]
    member _.Setup() =
        data <- noise 3 128 16

        let student =
            Model.init
                0
                (ExecutionMode.Snn 4)
                (Zoo.vgg9
                    { ZooConfig.Mnist with
                        InputSize = 16
                        Width = 0.25f
                    })

        spec <- DistillationSpec.alone [ student ] [ SpecTerm.crossEntropy 0.0f 1.0f ]

    [<Benchmark(Baseline = true, Description = "VGG-9 SNN, T = 4")>]
    member _.Plain() =
        Trainer.fit config spec (batchesOf32 data) None

    [<Benchmark(Description = "VGG-9 SNN, T = 4, activations checkpointed")>]
    member _.Checkpointed() =
        Trainer.fit
            { config with
                CheckpointActivations = true
            }
            spec
            (batchesOf32 data)
            None

/// The benchmark classes of this module, for BenchmarkSwitcher.
let types: Type[] =
    [| typeof<KdEpoch>; typeof<TruncatedBptt>; typeof<CheckpointedActivations> |]
