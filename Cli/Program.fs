/// The snnspec command line.
module SnnSpec.Cli.Program

open System.CommandLine

/// The root command with every subcommand.
let root () =
    let root =
        RootCommand("snnspec: knowledge distillation for spiking neural networks, and their crossbar hardware cost.")

    root.Subcommands.Add(DataCommands.command ())
    root.Subcommands.Add(TrainCommand.command ())
    root.Subcommands.Add(DistillCommand.command ())
    root.Subcommands.Add(EvalCommand.command ())
    root.Subcommands.Add(QuantizeCommand.command ())
    root.Subcommands.Add(ExportCommand.command ())
    root.Subcommands.Add(ReportCommand.command ())
    root.Subcommands.Add(SimulateCommand.command ())
    root.Subcommands.Add(Demo.command ())
    root

/// Parses and runs a command line; parse errors (an unknown command or option, a missing or
/// malformed argument) print each error and return exit code 2.
let run (argv: string[]) =
    let parsed = (root ()).Parse(argv)

    if parsed.Errors.Count > 0 then
        for e in parsed.Errors do
            Console.error (e.Message + " Fix: see snnspec --help, or <command> --help.")

        Console.Usage
    else
        parsed.Invoke()

[<EntryPoint>]
let main argv = run argv
