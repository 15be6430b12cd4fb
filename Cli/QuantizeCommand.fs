/// `snnspec quantize <checkpoint>`: the quantized twin of a trained model, its scales calibrated on a
/// few training batches, saved as a checkpoint.
module SnnSpec.Cli.QuantizeCommand

open System
open System.CommandLine
open System.IO
open SnnSpec
open SnnSpec.Data
open SnnSpec.IO
open Spectre.Console

/// How the weight scales of a post-training quantized model are set.
[<RequireQualifiedAccess>]
type Scales =
    /// MINT's α₀ = 2·mean|W'|/√Q (Model.calibrateScales), the QAT starting point.
    | Lsq
    /// α₀, then the post-training search QuantTrajectory.fitScales with this many grid points.
    | Search of candidates: int

/// The quantized model against its float twin, population by population (QuantTrajectory).
let printTrajectory (r: QuantTrajectoryReport) =
    let mean (a: float[]) = Array.average a

    let table =
        Table().AddColumns("population", "spikes agree", "membrane error", "rate float", "rate quantized")

    for p in r.Populations do
        table.AddRow(
            Markup.Escape p.Name,
            sprintf "%.1f %%" (100.0 * mean p.SpikeAgreement),
            sprintf "%.3f" (mean p.MembraneError),
            sprintf "%.4f" (mean p.FloatRate),
            sprintf "%.4f" (mean p.QuantizedRate)
        )
        |> ignore

    AnsiConsole.Write table

    Run.log
        "against the float model (means over steps): logit error %.3f; the same prediction at t = T on %.1f %% of the images"
        (mean r.LogitError)
        (100.0 * Array.last r.PredictionAgreement)

/// Quantizes the checkpoint's model with the configuration, calibrating on the first
/// batches × batchSize training images of the dataset when calibrate is set (and then, with
/// Scales.Search, searching the weight scales on them); prints how far the quantized model strays
/// from the float one on those images and returns the output path.
let execute
    (checkpoint: string)
    (q: QuantizationSection)
    (scales: Scales)
    (ds: DatasetSection)
    (batches: int)
    (batchSize: int)
    (out: string)
    =
    let c = Run.loadCheckpoint "the checkpoint" checkpoint

    if (Model.quantPlan c.Model).IsQuantized then
        Console.usage
            "%s is already quantized. Fix: quantize the full-precision checkpoint it was made from."
            checkpoint

    let quantized = Model.quantize q.Config c.Model

    let quantized =
        if q.Calibrate && (Model.quantPlan quantized).Weights.Count > 0 then
            let trainSet, _ = Run.loadData (Run.forModel c ds)
            let x = Run.calibrationBatch (batches * batchSize) trainSet

            Run.log
                "calibrating quantizer scales on %d %s training images"
                (min (batches * batchSize) trainSet.Count)
                ds.Name

            let calibrated = Model.calibrateScales x quantized

            let fitted =
                match scales, calibrated.Mode with
                | Scales.Search k, ExecutionMode.Snn _ ->
                    let before = QuantTrajectory.compare calibrated x
                    let fitted = QuantTrajectory.fitScales k x calibrated
                    let after = QuantTrajectory.compare fitted x

                    Run.log
                        "scale search (%d candidates per layer): trajectory error %.3f at the starting scales, %.3f after"
                        k
                        before.Error
                        after.Error

                    printTrajectory after
                    fitted
                | Scales.Search _, ExecutionMode.Ann ->
                    Run.log
                        "scale search skipped: %s runs as an ANN, which has no spiking trajectory to match"
                        checkpoint

                    calibrated
                | Scales.Lsq, _ -> calibrated

            fitted
        else
            match scales with
            | Scales.Search _ -> Run.log "scale search skipped: calibration is off (the scales stay at 2·mean|W|/√Q)"
            | Scales.Lsq -> ()

            quantized

    let plan = Model.quantPlan quantized

    Run.save out (Some q.Config) (c.Metadata.Add("quantized_from", Path.GetFileName checkpoint)) quantized

    Run.log
        "%s: %d weight layers and %d membranes quantized (%A weights, %A membranes); %s"
        checkpoint
        (plan.Weights
         |> Map.filter (fun _ w -> w.Weight <> Bits.FullPrecision)
         |> Map.count)
        plan.Membranes.Count
        q.Config.Weight
        q.Config.Membrane
        out

    out

/// The `quantize` command.
let command () =
    let cmd =
        Command(
            "quantize",
            "Quantize a trained checkpoint (MINT: weights, bias and membranes at N bits, BN folded), calibrating scales on a few training batches."
        )

    let ckptArg =
        Argument<string>("checkpoint", Description = "A full-precision .safetensors checkpoint.")

    let bits =
        Option<int>(
            "--bits",
            DefaultValueFactory = (fun _ -> 4),
            Description = "Weight, bias and membrane bits (2 to 16)."
        )

    let preset =
        Option<string>(
            "--preset",
            DefaultValueFactory = (fun _ -> "mint"),
            Description = "mint (tanh-mapped membranes) or integer (uniform membranes, integer-exportable)."
        )

    let config =
        Option<string>(
            "--config",
            Description = "A JSON quantization section (docs/spec-format.md) instead of --bits and --preset."
        )

    let dataset =
        Option<string>(
            "--dataset",
            Description =
                "Calibration images: mnist, fashion-mnist or synthetic (default: the checkpoint's, else mnist)."
        )

    let dataDir =
        Option<string>("--data-dir", Description = "A directory holding the dataset's files, tried first.")

    let batches =
        Option<int>(
            "--calibration-batches",
            DefaultValueFactory = (fun _ -> 4),
            Description = "Training batches the scales are calibrated on."
        )

    let batch =
        Option<int>("--batch-size", DefaultValueFactory = (fun _ -> 32), Description = "Calibration batch size.")

    let noCal =
        Option<bool>("--no-calibrate", Description = "Keep the scales at their initial values (2·mean|W|/√Q).")

    let scales =
        Option<string>(
            "--scales",
            DefaultValueFactory = (fun _ -> "search"),
            Description =
                "search: search each weight scale on the calibration images for the model closest to the float one (for deployment without training); lsq: MINT's starting scales 2·mean|W'|/√Q (for quantization-aware training, which learns them)."
        )

    let out =
        Option<string>("--out", Description = "Output checkpoint (default: <checkpoint>.q<bits>.safetensors).")

    cmd.Arguments.Add ckptArg

    for o in
        [
            bits :> Option
            preset
            config
            dataset
            dataDir
            batches
            batch
            noCal
            scales
            out
        ] do
        cmd.Options.Add o

    cmd.SetAction(fun (r: ParseResult) ->
        Console.guard (fun () ->
            let path = r.GetValue ckptArg
            let b = r.GetValue bits

            let q =
                match Option.ofObj (r.GetValue config) with
                | Some file ->
                    if not (File.Exists file) then
                        Console.usage
                            "--config %s does not exist. Fix: give the path of a JSON quantization section."
                            file

                    SpecFile.parseQuantization (File.ReadAllText file)
                | None ->
                    if b < 2 || b > 16 then
                        Console.usage "--bits %d. Fix: give 2 to 16." b

                    let cfg =
                        match (r.GetValue preset).ToLowerInvariant() with
                        | "mint" -> QuantConfig.Mint b
                        | "integer" -> QuantConfig.Integer b
                        | other -> Console.usage "--preset %s is unknown. Fix: use mint or integer." other

                    { Config = cfg; Calibrate = true }

            let q =
                { q with
                    Calibrate = q.Calibrate && not (r.GetValue noCal)
                }

            let nb, bs = r.GetValue batches, r.GetValue batch

            if nb < 1 || bs < 1 then
                Console.usage "--calibration-batches %d, --batch-size %d. Fix: give positive values." nb bs

            let name =
                match Option.ofObj (r.GetValue dataset) with
                | Some d -> d
                | None -> EvalCommand.recordedDataset path |> Option.defaultValue "mnist"

            let ds =
                Run.datasetSection name (max 2 (nb * bs + 1)) 1 1 (Option.ofObj (r.GetValue dataDir))

            let target =
                match Option.ofObj (r.GetValue out) with
                | Some o -> o
                | None ->
                    let bitsText =
                        match q.Config.Weight with
                        | Bits.Fixed n -> string n
                        | Bits.FullPrecision -> "fp"

                    Path.Combine(
                        (match Path.GetDirectoryName path with
                         | null -> ""
                         | d -> d),
                        sprintf "%s.q%s.safetensors" (Path.GetFileNameWithoutExtension path) bitsText
                    )

            let choice =
                match (r.GetValue scales).ToLowerInvariant() with
                | "search" -> Scales.Search 16
                | "lsq" -> Scales.Lsq
                | other -> Console.usage "--scales %s is unknown. Fix: use search or lsq." other

            execute path q choice ds nb bs target |> ignore
            Console.Success))

    cmd
