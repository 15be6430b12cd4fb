/// `snnspec simulate`: the crossbar cost of a zoo model at full precision and quantized, side by side.
module SnnSpec.Cli.SimulateCommand

open System.CommandLine
open Spectre.Console
open SnnSpec
open SnnSpec.HwSim

let private architecture (model: string) (width: float32) (classes: int) (inputSize: int) (channels: int) =
    let cfg =
        { ZooConfig.Cifar10 with
            Width = width
            Classes = classes
            InputSize = inputSize
            InputChannels = channels
        }

    match model with
    | "vgg9" -> Zoo.vgg9 cfg
    | "vgg11" -> Zoo.vgg11 cfg
    | "resnet18" -> Zoo.resnet18 cfg
    | "resnet19" -> Zoo.resnet19 cfg
    | "ms-resnet18" -> Zoo.msResnet18 cfg
    | "convnet" -> Zoo.convNet cfg
    | other -> Errors.invalidArg "simulate" "--model" other "vgg9, vgg11, resnet18, resnet19, ms-resnet18 or convnet"

let private run model width steps bits cellBits classes inputSize channels =
    let arch = architecture model width classes inputSize channels

    let report (precision: Precision) =
        let acc =
            { Accelerator.spikeSim with
                Precision = precision
            }

        Metrics.evaluate steps (Mapping.ofArchitecture acc arch)

    let fp = report (Precision.fp32 cellBits)
    let q = report (Precision.quantized bits cellBits)
    let c = Metrics.compare fp q
    let table = Table().AddColumns("", "FP32", sprintf "%d-bit" bits, "ratio")

    let row (name: string) (a: float) (b: float) (ratio: float) =
        table.AddRow(name, sprintf "%.4g" a, sprintf "%.4g" b, sprintf "%.2f×" ratio)
        |> ignore

    row "energy (pJ)" (float fp.E) (float q.E) c.Energy
    row "latency (ns)" (float fp.D) (float q.D) c.Latency
    row "area (µm²)" (float fp.A) (float q.A) c.Area
    row "EDAP (J·s·mm²)" fp.Edap q.Edap c.Edap
    row "TOPS/W" fp.TopsPerWatt q.TopsPerWatt c.TopsPerWatt
    row "TOPS/mm²" fp.TopsPerMm2 q.TopsPerMm2 c.TopsPerMm2
    AnsiConsole.MarkupLine("[bold]{0}[/], T = {1}, {2}-bit cells, SpikeSim 65 nm RRAM", model, steps, cellBits)
    AnsiConsole.Write table
    AnsiConsole.MarkupLine("Cost ratios are FP32 / quantized (× lower); efficiency ratios quantized / FP32 (× higher).")
    Console.Success

/// The `simulate` command.
let command () =
    let cmd =
        Command(
            "simulate",
            "Crossbar energy, latency, area, EDAP, TOPS/W and TOPS/mm² of a model, FP32 against quantized."
        )

    let modelOpt =
        Option<string>(
            "--model",
            DefaultValueFactory = (fun _ -> "vgg9"),
            Description = "vgg9, vgg11, resnet18, resnet19, ms-resnet18 or convnet"
        )

    let widthOpt =
        Option<float32>("--width", DefaultValueFactory = (fun _ -> 1.0f), Description = "Channel width multiplier.")

    let stepsOpt =
        Option<int>("--steps", DefaultValueFactory = (fun _ -> 4), Description = "Timesteps T.")

    let bitsOpt =
        Option<int>(
            "--bits",
            DefaultValueFactory = (fun _ -> 4),
            Description = "Weight and membrane bits of the quantized model."
        )

    let cellOpt =
        Option<int>("--cell-bits", DefaultValueFactory = (fun _ -> 4), Description = "Bits stored per crossbar cell.")

    let classesOpt =
        Option<int>("--classes", DefaultValueFactory = (fun _ -> 10), Description = "Output classes.")

    let sizeOpt =
        Option<int>("--input-size", DefaultValueFactory = (fun _ -> 32), Description = "Square input side.")

    let channelsOpt =
        Option<int>("--input-channels", DefaultValueFactory = (fun _ -> 3), Description = "Input channels.")

    for o in
        [
            modelOpt :> Option
            widthOpt
            stepsOpt
            bitsOpt
            cellOpt
            classesOpt
            sizeOpt
            channelsOpt
        ] do
        cmd.Options.Add o

    cmd.SetAction(fun (r: ParseResult) ->
        Console.guard (fun () ->
            run
                (r.GetValue modelOpt)
                (r.GetValue widthOpt)
                (r.GetValue stepsOpt)
                (r.GetValue bitsOpt)
                (r.GetValue cellOpt)
                (r.GetValue classesOpt)
                (r.GetValue sizeOpt)
                (r.GetValue channelsOpt)))

    cmd
