/// The SnnSpec side of the speed race against PyTorch (Benchmarks/race/run.sh,
/// docs/results/speed-race.md). Not a BenchmarkDotNet suite: each configuration runs in a fresh
/// process so that its peak RSS is its own, and the PyTorch reference (Benchmarks/race/torch_snn.py)
/// runs the same way. `race-snnspec --model teacher|student|kd|vgg9 --T 4 --batch 64 --steps 20 --warmup 3`
/// trains through Trainer.fit on a synthetic in-memory MNIST-shaped set (random 28×28 bytes, labels
/// i mod 10, no shuffling) and prints one JSON line {imgs_per_s, peak_rss_mb, …}. `--truncation K`
/// trains with truncated BPTT in windows of K steps (0, the default: full BPTT) and
/// `--checkpoint-activations 1` with activation checkpointing (race/truncation.sh compares both).
module SnnSpec.Benchmarks.Race

open System
open System.Diagnostics
open System.IO
open SnnSpec
open SnnSpec.Data
open SnnSpec.Training

/// A /proc/self/status field in MB (VmHWM: peak resident set; VmRSS: current).
let private statusMb (field: string) =
    File.ReadAllLines "/proc/self/status"
    |> Array.tryFind (fun l -> l.StartsWith(field + ":"))
    |> Option.map (fun l -> float (l.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]) / 1024.0)
    |> Option.defaultValue nan

let private arg (argv: string[]) (name: string) (fallback: string) =
    match Array.tryFindIndex ((=) name) argv with
    | Some i when i + 1 < argv.Length -> argv[i + 1]
    | _ -> fallback

/// Runs one configuration and prints its JSON line; returns the exit code.
let main (argv: string[]) =
    let model = arg argv "--model" "teacher"
    let steps = int (arg argv "--T" "4")
    let batch = int (arg argv "--batch" "64")
    let timed = int (arg argv "--steps" "20")
    let warmup = int (arg argv "--warmup" "3")
    let truncation = int (arg argv "--truncation" "0")
    let checkpoint = arg argv "--checkpoint-activations" "0" = "1"
    let baseRss = statusMb "VmRSS"

    let n = batch * (warmup + timed)
    let rng = Random 1
    let pixels = Array.zeroCreate<byte>(n * 28 * 28)
    rng.NextBytes pixels

    let data =
        ImageSet.create "synthetic" pixels (Array.init n (fun i -> i % 10)) 1 28 28 10

    let batcher =
        Batching.create
            { Batching.options batch 1 with
                Shuffle = false
                Prefetch = 0
            }
            data

    let teacherArch = Zoo.convNet ZooConfig.Mnist
    let studentArch = Zoo.convNet { ZooConfig.Mnist with Width = 0.5f }
    let mode = ExecutionMode.Snn steps

    let spec =
        match model with
        | "teacher" -> DistillationSpec.alone [ Model.init 0 mode teacherArch ] [ SpecTerm.crossEntropy 0.0f 1.0f ]
        | "student" -> DistillationSpec.alone [ Model.init 1 mode studentArch ] [ SpecTerm.crossEntropy 0.0f 1.0f ]
        | "kd" ->
            DistillationSpec.create
                (Model.init 0 mode teacherArch)
                [ Model.init 1 mode studentArch ]
                [ SpecTerm.crossEntropy 0.0f 0.5f; SpecTerm.logitKd 4.0f 0.5f ]
        | "vgg9" ->
            DistillationSpec.alone
                [ Model.init 2 mode (Zoo.vgg9 { ZooConfig.Mnist with Width = 0.5f }) ]
                [ SpecTerm.crossEntropy 0.0f 1.0f ]
        | other -> failwithf "--model %s: expected teacher, student, kd or vgg9" other

    let clock = Stopwatch()
    let mutable last = nan

    let progress (p: TrainProgress) =
        if p.Step = warmup then
            clock.Restart()
        elif p.Step = warmup + timed then
            clock.Stop()
            last <- float p.Total

    let config =
        { TrainConfig.Default with
            Epochs = 1
            Progress = progress
            Truncation = (if truncation > 0 then Some truncation else None)
            CheckpointActivations = checkpoint
        }

    Trainer.fit config spec batcher None |> ignore
    let elapsed = clock.Elapsed.TotalSeconds

    if not (isNull (Environment.GetEnvironmentVariable "RACE_DIAG")) then
        let reused, fresh, pooled = BufferPool.stats ()
        let gc = GC.GetGCMemoryInfo()

        eprintfn
            "pool: reused %d fresh %d pooled %.1f MB; GC heap %.1f MB committed %.1f MB, allocated total %.1f MB, gen2 count %d"
            reused
            fresh
            (float pooled * 4.0 / 1048576.0)
            (float gc.HeapSizeBytes / 1048576.0)
            (float gc.TotalCommittedBytes / 1048576.0)
            (float (GC.GetTotalAllocatedBytes()) / 1048576.0)
            (GC.CollectionCount 2)

    printfn
        "{\"framework\": \"snnspec\", \"model\": \"%s\", \"T\": %d, \"truncation\": %d, \"checkpoint_activations\": %b, \"batch\": %d, \"steps\": %d, \"threads\": %d, \"server_gc\": %b, \"imgs_per_s\": %.3f, \"step_ms\": %.3f, \"peak_rss_mb\": %.1f, \"base_rss_mb\": %.1f, \"loss\": %g}"
        model
        steps
        truncation
        checkpoint
        batch
        timed
        Environment.ProcessorCount
        Runtime.GCSettings.IsServerGC
        (float (batch * timed) / elapsed)
        (1000.0 * elapsed / float timed)
        (statusMb "VmHWM")
        baseRss
        last

    0
