/// The snnspec command line.
module SnnSpec.Cli.Program

open System.CommandLine

[<EntryPoint>]
let main argv =
    let root =
        RootCommand("snnspec: knowledge distillation for spiking neural networks, and their crossbar hardware cost.")

    root.Subcommands.Add(DataCommands.command ())
    root.Subcommands.Add(SimulateCommand.command ())
    root.Subcommands.Add(Demo.command ())
    root.Parse(argv).Invoke()
