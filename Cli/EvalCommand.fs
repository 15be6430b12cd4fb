/// `snnspec eval <checkpoint>`: accuracy at every t and firing rates of a checkpoint on a dataset.
module SnnSpec.Cli.EvalCommand

open System
open System.CommandLine
open System.IO
open System.Text
open System.Text.Json
open Spectre.Console
open SnnSpec
open SnnSpec.Training
open SnnSpec.IO

/// The evaluation of one checkpoint, as printed and as written by --json.
let toJson (checkpoint: string) (dataset: string) (r: EvaluationReport) =
    use ms = new MemoryStream()

    do
        use w = new Utf8JsonWriter(ms, JsonWriterOptions(Indented = true))
        w.WriteStartObject()
        w.WriteString("checkpoint", checkpoint)
        w.WriteString("dataset", dataset)
        w.WriteNumber("samples", r.Samples)
        w.WriteNumber("accuracy", r.Accuracy)
        w.WriteStartArray "accuracyPerStep"

        for a in r.AccuracyPerStep do
            w.WriteNumberValue a

        w.WriteEndArray()
        w.WriteStartObject "firingRates"

        for KeyValue(n, v) in r.FiringRates do
            w.WriteNumber(n, v)

        w.WriteEndObject()

        match r.TeacherAccuracy with
        | Some a -> w.WriteNumber("teacherAccuracy", a)
        | None -> ()

        w.WriteEndObject()

    Encoding.UTF8.GetString(ms.ToArray())

/// Evaluates a checkpoint (and optionally a teacher) on the dataset's test images.
let execute (checkpoint: string) (teacher: string option) (ds: DatasetSection) (batchSize: int) (json: string option) =
    let c = Run.loadCheckpoint "the checkpoint" checkpoint

    let t =
        teacher
        |> Option.map (fun p -> (Run.loadCheckpoint "the teacher checkpoint" p).Model)

    let _, testSet = Run.loadData ds
    let testB = Run.batcher batchSize 0 false testSet
    let r = Evaluation.run EvaluationConfig.Default t c.Model testB

    Run.log
        "%s: %s, %d %s test images"
        checkpoint
        (match c.Model.Mode with
         | ExecutionMode.Snn steps -> sprintf "SNN, T = %d" steps
         | ExecutionMode.Ann -> "ANN")
        r.Samples
        ds.Name

    Run.printAccuracy [ Path.GetFileNameWithoutExtension checkpoint, r.AccuracyPerStep ]

    match r.TeacherAccuracy with
    | Some a -> Run.log "teacher accuracy: %.1f %%" (100.0 * a)
    | None -> ()

    if not r.FiringRates.IsEmpty then
        let table = Table().AddColumns("population", "spikes per neuron per step")

        for KeyValue(n, v) in r.FiringRates do
            table.AddRow(Markup.Escape n, sprintf "%.4f" v) |> ignore

        AnsiConsole.Write table

    match json with
    | Some path ->
        Run.writeText path (toJson checkpoint ds.Name r)
        Run.log "results: %s" path
    | None -> ()

    r

/// The dataset a checkpoint was trained on, from its metadata (None when not recorded).
let recordedDataset (path: string) =
    try
        if File.Exists path then
            (SpecFile.loadModel path).Metadata.TryFind "dataset"
        else
            None
    with :? SnnSpecException ->
        None

/// The `eval` command.
let command () =
    let cmd =
        Command("eval", "Accuracy at every t = 1…T and firing rates of a checkpoint on a dataset's test images.")

    let ckptArg =
        Argument<string>("checkpoint", Description = "A .safetensors checkpoint.")

    let dataset =
        Option<string>(
            "--dataset",
            Description =
                "mnist, fashion-mnist or synthetic (default: the one the checkpoint was trained on, else mnist)."
        )

    let test =
        Option<int>("--test", DefaultValueFactory = (fun _ -> 1000), Description = "Test images evaluated.")

    let dataDir =
        Option<string>("--data-dir", Description = "A directory holding the dataset's files, tried first.")

    let batch =
        Option<int>("--batch-size", DefaultValueFactory = (fun _ -> 64), Description = "Batch size.")

    let teacher =
        Option<string>("--teacher", Description = "A teacher checkpoint evaluated on the same images.")

    let json =
        Option<string>("--json", Description = "Also write the results as JSON to this file.")

    cmd.Arguments.Add ckptArg

    for o in [ dataset :> Option; test; dataDir; batch; teacher; json ] do
        cmd.Options.Add o

    cmd.SetAction(fun (r: ParseResult) ->
        Console.guard (fun () ->
            let path = r.GetValue ckptArg

            let name =
                match Option.ofObj (r.GetValue dataset) with
                | Some d -> d
                | None -> recordedDataset path |> Option.defaultValue "mnist"

            let bs = r.GetValue batch

            if bs < 1 then
                Console.usage "--batch-size %d. Fix: give at least 1." bs

            let ds =
                Run.datasetSection name 2 1 (r.GetValue test) (Option.ofObj (r.GetValue dataDir))

            execute path (Option.ofObj (r.GetValue teacher)) ds bs (Option.ofObj (r.GetValue json))
            |> ignore

            Console.Success))

    cmd
