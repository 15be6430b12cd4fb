module SnnSpec.Benchmarks.Program

open BenchmarkDotNet.Running

[<EntryPoint>]
let main argv =
    BenchmarkSwitcher.FromAssembly(typeof<SnnSpec.Tensor>.Assembly).Run(argv)
    |> ignore

    0
