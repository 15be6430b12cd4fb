/// GEMM throughput: the managed kernel against OpenBLAS (when installed) on square products and on the
/// im2col product of a 3×3 convolution, reported in GFLOP/s and as a fraction of the measured FMA peak.
/// Run with OPENBLAS_CORETYPE unset: it otherwise pins OpenBLAS to the named core's kernels (e.g. AVX2).
module SnnSpec.Benchmarks.GemmBenchmarks

open System
open System.Diagnostics
open System.Runtime.Intrinsics
open System.Runtime.Intrinsics.X86
open System.Threading.Tasks
open BenchmarkDotNet.Attributes
open BenchmarkDotNet.Columns
open BenchmarkDotNet.Configs
open BenchmarkDotNet.Reports
open BenchmarkDotNet.Running
open SnnSpec.Kernels

/// Peak single-precision FMA throughput of this machine in GFLOP/s on Threads.Count threads: twelve
/// independent FMA chains per thread (enough to cover FMA latency), best of three one-second-scale runs.
module Peak =
    let private chains (iterations: int64) =
        if Avx512F.IsSupported then
            let x = Vector512.Create 0.9999999f
            let y = Vector512.Create 1e-7f
            let mutable a0 = Vector512.Create 1.0f
            let mutable a1 = a0
            let mutable a2 = a0
            let mutable a3 = a0
            let mutable a4 = a0
            let mutable a5 = a0
            let mutable a6 = a0
            let mutable a7 = a0
            let mutable a8 = a0
            let mutable a9 = a0
            let mutable a10 = a0
            let mutable a11 = a0
            let mutable i = 0L

            while i < iterations do
                a0 <- Avx512F.FusedMultiplyAdd(a0, x, y)
                a1 <- Avx512F.FusedMultiplyAdd(a1, x, y)
                a2 <- Avx512F.FusedMultiplyAdd(a2, x, y)
                a3 <- Avx512F.FusedMultiplyAdd(a3, x, y)
                a4 <- Avx512F.FusedMultiplyAdd(a4, x, y)
                a5 <- Avx512F.FusedMultiplyAdd(a5, x, y)
                a6 <- Avx512F.FusedMultiplyAdd(a6, x, y)
                a7 <- Avx512F.FusedMultiplyAdd(a7, x, y)
                a8 <- Avx512F.FusedMultiplyAdd(a8, x, y)
                a9 <- Avx512F.FusedMultiplyAdd(a9, x, y)
                a10 <- Avx512F.FusedMultiplyAdd(a10, x, y)
                a11 <- Avx512F.FusedMultiplyAdd(a11, x, y)
                i <- i + 1L

            let s = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11
            s.ToScalar(), 12.0 * 16.0 * 2.0
        elif Fma.IsSupported then
            let x = Vector256.Create 0.9999999f
            let y = Vector256.Create 1e-7f
            let mutable a0 = Vector256.Create 1.0f
            let mutable a1 = a0
            let mutable a2 = a0
            let mutable a3 = a0
            let mutable a4 = a0
            let mutable a5 = a0
            let mutable a6 = a0
            let mutable a7 = a0
            let mutable a8 = a0
            let mutable a9 = a0
            let mutable a10 = a0
            let mutable a11 = a0
            let mutable i = 0L

            while i < iterations do
                a0 <- Fma.MultiplyAdd(a0, x, y)
                a1 <- Fma.MultiplyAdd(a1, x, y)
                a2 <- Fma.MultiplyAdd(a2, x, y)
                a3 <- Fma.MultiplyAdd(a3, x, y)
                a4 <- Fma.MultiplyAdd(a4, x, y)
                a5 <- Fma.MultiplyAdd(a5, x, y)
                a6 <- Fma.MultiplyAdd(a6, x, y)
                a7 <- Fma.MultiplyAdd(a7, x, y)
                a8 <- Fma.MultiplyAdd(a8, x, y)
                a9 <- Fma.MultiplyAdd(a9, x, y)
                a10 <- Fma.MultiplyAdd(a10, x, y)
                a11 <- Fma.MultiplyAdd(a11, x, y)
                i <- i + 1L

            let s = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11
            s.ToScalar(), 12.0 * 8.0 * 2.0
        else
            let mutable a = 1.0f

            for _ in 1L .. iterations do
                a <- MathF.FusedMultiplyAdd(a, 0.9999999f, 1e-7f)

            a, 2.0

    let private measure (threads: int) =
        let iterations = 50_000_000L
        chains 1000L |> ignore
        let mutable best = 0.0

        for _ in 1..3 do
            let sw = Stopwatch.StartNew()
            let perCall = Array.zeroCreate<float> threads

            Parallel.For(
                0,
                threads,
                ParallelOptions(MaxDegreeOfParallelism = threads),
                fun t -> perCall[t] <- snd (chains iterations)
            )
            |> ignore

            best <- max best (Array.sum perCall * float iterations / sw.Elapsed.TotalSeconds / 1e9)

        best

    /// Measured once per process, on Threads.Count threads.
    let gflops = lazy (measure Threads.Count)

/// GFLOP/s of a benchmark case and its share of the measured FMA peak.
type private ThroughputColumn(percentOfPeak: bool) =
    static member Flops(case: BenchmarkCase) =
        let dims =
            [ "M"; "N"; "K"; "Size" ]
            |> List.choose (fun name ->
                case.Parameters.Items
                |> Seq.tryFind (fun p -> p.Name = name)
                |> Option.map (fun p -> Convert.ToDouble p.Value))

        match dims with
        | [ size ] -> 2.0 * size * size * size
        | [ m; n; k ] -> 2.0 * m * n * k
        | _ -> nan

    interface IColumn with
        member _.Id = if percentOfPeak then "GemmPeakPercent" else "GemmGflops"
        member _.ColumnName = if percentOfPeak then "% FMA peak" else "GFLOP/s"

        member _.Legend =
            if percentOfPeak then
                "Throughput over the measured FMA peak on Threads.Count threads"
            else
                "2·m·n·k / mean time"

        member _.AlwaysShow = true
        member _.Category = ColumnCategory.Custom
        member _.PriorityInCategory = if percentOfPeak then 1 else 0
        member _.IsNumeric = true
        member _.UnitType = UnitType.Dimensionless
        member _.IsAvailable _ = true
        member _.IsDefault(_, _) = false

        member this.GetValue(summary: Summary, case: BenchmarkCase) =
            (this :> IColumn).GetValue(summary, case, SummaryStyle.Default)

        member _.GetValue(summary: Summary, case: BenchmarkCase, _: SummaryStyle) =
            match summary[case] with
            | null -> "NA"
            | report ->
                match report.ResultStatistics with
                | null -> "NA"
                | stats ->
                    let gflops = ThroughputColumn.Flops case / stats.Mean

                    if percentOfPeak then
                        sprintf "%.0f%% of %.0f" (100.0 * gflops / Peak.gflops.Force()) (Peak.gflops.Force())
                    else
                        sprintf "%.1f" gflops

/// Short runs plus the throughput columns, so the whole GEMM suite takes a few minutes.
type GemmConfig() as this =
    inherit ManualConfig()
    do this.AddColumn(ThroughputColumn false, ThroughputColumn true) |> ignore

let private random (count: int) (seed: int) =
    let rng = Random seed
    Array.init count (fun _ -> float32 (rng.NextDouble() * 2.0 - 1.0))

/// Operands of one row-major product C[m×n] = A[m×k]·B[k×n], with both kernels on it.
type Product(m: int, n: int, k: int) =
    let a = random (m * k) 1
    let b = random (k * n) 2
    let c = Array.zeroCreate<float32>(m * n)

    member _.Managed() =
        Gemm.Sgemm(false, false, m, n, k, 1.0f, a, 0, k, b, 0, n, 0.0f, c, 0, n)

    member _.OpenBlas() =
        Blas.sgemm (false, false, m, n, k, 1.0f, a, 0, k, b, 0, n, 0.0f, c, 0, n)

let private empty = Product(0, 0, 0)

let private setup () = Blas.setThreads Threads.Count |> ignore

/// Square products, managed kernel alone (used when OpenBLAS is not installed).
[<Config(typeof<GemmConfig>); SimpleJob(launchCount = 1, warmupCount = 3, iterationCount = 5)>]
type SquareGemm() =
    let mutable product = empty

    [<Params(256, 512, 1024, 2048)>]
    member val Size = 0 with get, set

    [<GlobalSetup>]
    member this.Setup() =
        setup ()
        product <- Product(this.Size, this.Size, this.Size)

    [<Benchmark>]
    member _.Managed() = product.Managed()

/// Square products, managed kernel against OpenBLAS as the baseline.
[<Config(typeof<GemmConfig>); SimpleJob(launchCount = 1, warmupCount = 3, iterationCount = 5)>]
type SquareGemmVsOpenBlas() =
    let mutable product = empty

    [<Params(256, 512, 1024, 2048)>]
    member val Size = 0 with get, set

    [<GlobalSetup>]
    member this.Setup() =
        setup ()
        product <- Product(this.Size, this.Size, this.Size)

    [<Benchmark(Baseline = true)>]
    member _.OpenBlas() = product.OpenBlas()

    [<Benchmark>]
    member _.Managed() = product.Managed()

/// The im2col product of a 3×3 convolution, 32 → 64 channels on a batch of 64 14×14 maps:
/// [64·14·14 × 288] · [288 × 64]. Managed kernel alone.
[<Config(typeof<GemmConfig>); SimpleJob(launchCount = 1, warmupCount = 3, iterationCount = 5)>]
type Im2colGemm() =
    let mutable product = empty

    [<Params(12544)>]
    member val M = 0 with get, set

    [<Params(64)>]
    member val N = 0 with get, set

    [<Params(288)>]
    member val K = 0 with get, set

    [<GlobalSetup>]
    member this.Setup() =
        setup ()
        product <- Product(this.M, this.N, this.K)

    [<Benchmark>]
    member _.Managed() = product.Managed()

/// The im2col product, managed kernel against OpenBLAS as the baseline.
[<Config(typeof<GemmConfig>); SimpleJob(launchCount = 1, warmupCount = 3, iterationCount = 5)>]
type Im2colGemmVsOpenBlas() =
    let mutable product = empty

    [<Params(12544)>]
    member val M = 0 with get, set

    [<Params(64)>]
    member val N = 0 with get, set

    [<Params(288)>]
    member val K = 0 with get, set

    [<GlobalSetup>]
    member this.Setup() =
        setup ()
        product <- Product(this.M, this.N, this.K)

    [<Benchmark(Baseline = true)>]
    member _.OpenBlas() = product.OpenBlas()

    [<Benchmark>]
    member _.Managed() = product.Managed()

/// The GEMM benchmark classes for this machine: against OpenBLAS when it is installed, managed alone otherwise.
let types: Type[] =
    if Blas.isAvailable then
        [| typeof<SquareGemmVsOpenBlas>; typeof<Im2colGemmVsOpenBlas> |]
    else
        [| typeof<SquareGemm>; typeof<Im2colGemm> |]
