module SnnSpec.Benchmarks.Program

open BenchmarkDotNet.Running

/// Runs the suites chosen by BenchmarkDotNet's command line (e.g. --filter '*Gemm*'), or with
/// `race-snnspec …` one configuration of the speed race against PyTorch (Race.fs).
[<EntryPoint>]
let main argv =
    if argv.Length > 0 && argv[0] = "race-snnspec" then
        Race.main argv[1..]
    else
        let all =
            Array.concat
                [
                    GemmBenchmarks.types
                    ConvBenchmarks.types
                    ElementwiseBenchmarks.types
                    NormBenchmarks.types
                    NeuronBenchmarks.types
                    TrainingBenchmarks.types
                    DataBenchmarks.types
                    TrainerBenchmarks.types
                    IntegerProductBenchmarks.types
                    CrossbarBenchmarks.types
                ]

        BenchmarkSwitcher.FromTypes(all).Run(argv) |> ignore
        0
