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

[<MemoryDiagnoser; SimpleJob(launchCount = 1, warmupCount = 1, iterationCount = 5)>]
type KdEpoch() =
    let mutable data = Unchecked.defaultof<ImageSet>
    let mutable spec = Unchecked.defaultof<DistillationSpec>
    let mutable cache = Unchecked.defaultof<TeacherCache>

    let config =
        { TrainConfig.Default with
            Epochs = 1
            LearningRate = 0.05f
        }

    let batcher () =
        Batching.create
            { Batching.options 32 1 with
                Prefetch = 0
            }
            data

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

/// The benchmark classes of this module, for BenchmarkSwitcher.
let types: Type[] = [| typeof<KdEpoch> |]
