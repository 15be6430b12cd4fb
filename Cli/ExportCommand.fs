/// `snnspec export <quantized checkpoint>`: the integer export file (IntegerExportFile) — the
/// checkpoint plus integer weight and bias codes, thresholds, shifts and scales, every quantization
/// parameter explicit, for hardware and tools outside .NET (docs/integer-export.md).
module SnnSpec.Cli.ExportCommand

open System
open System.CommandLine
open System.IO
open Spectre.Console
open SnnSpec
open SnnSpec.IO

/// Writes the integer export of a quantized checkpoint and prints its layers; returns the path.
let execute (checkpoint: string) (out: string) =
    let c = Run.loadCheckpoint "the checkpoint" checkpoint

    if not (Model.quantPlan c.Model).IsQuantized then
        Console.usage
            "%s is full precision; an integer export needs a quantized model. Fix: quantize it first (snnspec quantize %s --bits 4 --preset integer)."
            checkpoint
            checkpoint

    let file =
        IntegerExportFile.ofModel c.Quantization (c.Metadata.Add("exported_from", Path.GetFileName checkpoint)) c.Model

    match Path.GetDirectoryName(Path.GetFullPath out) with
    | null -> ()
    | dir -> Directory.CreateDirectory dir |> ignore

    Checkpoint.save out file
    // Verified by reading it back through the checking reader.
    let _, im = IntegerExportFile.read out

    let table = Table().AddColumns("layer", "bits", "codes", "step", "integer datapath")

    for l in im.Layers do
        let lo, hi = Array.min l.Weights, Array.max l.Weights

        let datapath =
            match l.Neuron with
            | Some n -> sprintf "%s: θ_int = %d, leak >> %d, ±%d" n.Name n.Threshold n.LeakShift n.Levels
            | None -> "—"

        table.AddRow(
            Markup.Escape l.Name,
            string l.Bits,
            sprintf "%d…%d" lo hi,
            sprintf "%.4g" l.Step,
            Markup.Escape datapath
        )
        |> ignore

    AnsiConsole.Write table

    Run.log
        "%s: %d quantized layers, %d in the integer datapath; %s"
        checkpoint
        im.Layers.Length
        (im.Layers |> List.filter (fun l -> l.Neuron.IsSome) |> List.length)
        out

    out

/// The `export` command.
let command () =
    let cmd =
        Command(
            "export",
            "Write a quantized checkpoint's integer export: weight and bias codes, thresholds, leak shifts and scales, every quantization parameter explicit (docs/integer-export.md)."
        )

    let ckptArg =
        Argument<string>(
            "checkpoint",
            Description = "A quantized .safetensors checkpoint (snnspec quantize or distill)."
        )

    let out =
        Option<string>("--out", Description = "Output file (default: <checkpoint>.int.safetensors).")

    cmd.Arguments.Add ckptArg
    cmd.Options.Add out

    cmd.SetAction(fun (r: ParseResult) ->
        Console.guard (fun () ->
            let path = r.GetValue ckptArg

            let target =
                match Option.ofObj (r.GetValue out) with
                | Some o -> o
                | None ->
                    Path.Combine(
                        (match Path.GetDirectoryName path with
                         | null -> ""
                         | d -> d),
                        Path.GetFileNameWithoutExtension path + ".int.safetensors"
                    )

            execute path target |> ignore
            Console.Success))

    cmd
