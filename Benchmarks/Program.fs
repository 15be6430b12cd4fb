module SnnSpec.Benchmarks.Program

open BenchmarkDotNet.Running

/// Runs the suites chosen by BenchmarkDotNet's command line (e.g. --filter '*Gemm*').
[<EntryPoint>]
let main argv =
    let all =
        Array.concat
            [
                GemmBenchmarks.types
                ConvBenchmarks.types
                ElementwiseBenchmarks.types
                NeuronBenchmarks.types
                TrainingBenchmarks.types
                DataBenchmarks.types
                TrainerBenchmarks.types
            ]

    BenchmarkSwitcher.FromTypes(all).Run(argv) |> ignore
    0
