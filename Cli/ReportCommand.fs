/// `snnspec report`: an HTML/CSV/JSON report from a run directory or from checkpoints.
module SnnSpec.Cli.ReportCommand

open System
open System.CommandLine
open System.IO
open SnnSpec
open SnnSpec.Training
open SnnSpec.IO
open SnnSpec.Reports

/// The checkpoints named by the inputs: files as given, directories by their *.safetensors (the
/// partial checkpoints of interrupted runs left out).
let checkpoints (inputs: string list) =
    [
        for i in inputs do
            if Directory.Exists i then
                yield!
                    Directory.GetFiles(i, "*.safetensors")
                    |> Array.filter (fun f -> not (f.EndsWith ".partial.safetensors"))
                    |> Array.sort
            elif File.Exists i then
                yield i
            else
                Console.usage
                    "%s is neither a checkpoint nor a directory. Fix: give run directories or .safetensors files."
                    i
    ]

/// Re-renders a run directory's report.json, or evaluates the checkpoints on the dataset's test
/// images and reports accuracy at every t and their crossbar cost; returns the three paths.
let execute (inputs: string list) (ds: DatasetSection option) (batchSize: int) (out: string) (title: string option) =
    match inputs with
    | [ dir ] when ds.IsNone && File.Exists(Path.Combine(dir, "report.json")) ->
        let data = Report.ofJson (File.ReadAllText(Path.Combine(dir, "report.json")))

        let data =
            match title with
            | Some t -> { data with Title = t }
            | None -> data

        Run.writeReport out "report" data
    | _ ->
        let files = checkpoints inputs

        if files.IsEmpty then
            Console.usage
                "no checkpoint found in %s. Fix: give a run directory of snnspec train or distill, or .safetensors files."
                (String.Join(", ", inputs))

        let loaded = files |> List.map (fun f -> f, Run.loadCheckpoint "the checkpoint" f)

        let ds =
            match ds with
            | Some d -> d
            | None ->
                let recorded = loaded |> List.tryPick (fun (_, c) -> c.Metadata.TryFind "dataset")
                Run.datasetSection (defaultArg recorded "mnist") 2 1 1000 None

        // Each checkpoint reads the frames it was trained on (event data); one test set per frame count.
        let sections = loaded |> List.map (fun (_, c) -> Run.forModel c ds)

        let testSets =
            sections
            |> List.distinct
            |> List.map (fun d -> d, Run.batcher batchSize 0 false (snd (Run.loadData d)))

        let ds = sections.Head
        let testCount = (snd testSets.Head).Source.Count

        let rows =
            List.zip loaded sections
            |> List.map (fun ((f, c), d) ->
                let name = Path.GetFileNameWithoutExtension f
                let role = c.Metadata.TryFind "role" |> Option.defaultValue "model"
                Run.log "evaluating %s" f
                let testB = testSets |> List.find (fun (s, _) -> s = d) |> snd
                name, role, c.Model, Evaluation.accuracyPerStep c.Model testB)

        Run.printAccuracy (rows |> List.map (fun (n, _, _, a) -> n, a))

        let hardware =
            rows
            |> List.choose (fun (n, _, m, _) -> Run.hardware m |> Option.map (Run.hardwareEntry n))
            |> Array.ofList

        let data: ReportData =
            {
                Title = defaultArg title "SnnSpec report"
                Subtitle = sprintf "%d checkpoint(s) on %d %s test images" rows.Length testCount ds.Name
                Summary =
                    rows
                    |> List.map (fun (n, _, _, a) ->
                        {
                            Label = sprintf "%s, t = %d" n a.Length
                            Value = sprintf "%.1f %%" (100.0 * a[a.Length - 1])
                        })
                    |> Array.ofList
                Accuracy =
                    rows
                    |> List.map (fun (n, role, _, a) ->
                        {
                            Name = n
                            Role = (if role = "teacher" then "teacher" else "distilled")
                            Timesteps = Array.init a.Length (fun i -> i + 1)
                            Accuracy = a
                        })
                    |> Array.ofList
                Training = [||]
                Membranes = [||]
                Hardware = hardware
            }

        Run.writeReport out "report" data

/// The `report` command.
let command () =
    let cmd =
        Command(
            "report",
            "Write report.html/.csv/.json: re-render a run directory's report, or evaluate checkpoints (accuracy at every t, crossbar cost)."
        )

    let inputs =
        Argument<string[]>("inputs", Description = "A run directory, or checkpoints and directories of checkpoints.")

    inputs.Arity <- ArgumentArity.OneOrMore

    let out =
        Option<string>("--out", Description = "Output directory (default: the run directory, else ./report).")

    let dataset =
        Option<string>(
            "--dataset",
            Description = "Evaluate checkpoints on this dataset (default: the one they were trained on)."
        )

    let test =
        Option<int>("--test", DefaultValueFactory = (fun _ -> 1000), Description = "Test images evaluated.")

    let batch =
        Option<int>("--batch-size", DefaultValueFactory = (fun _ -> 64), Description = "Batch size.")

    let title = Option<string>("--title", Description = "The report's title.")
    cmd.Arguments.Add inputs

    for o in [ out :> Option; dataset; test; batch; title ] do
        cmd.Options.Add o

    cmd.SetAction(fun (r: ParseResult) ->
        Console.guard (fun () ->
            let ins = r.GetValue inputs |> List.ofArray

            let target =
                match Option.ofObj (r.GetValue out), ins with
                | Some o, _ -> o
                | None, [ d ] when Directory.Exists d -> d
                | None, _ -> "report"

            let ds =
                Option.ofObj (r.GetValue dataset)
                |> Option.map (fun d -> Run.datasetSection d 2 1 (r.GetValue test) None)

            let h, _, _ =
                execute ins ds (max 1 (r.GetValue batch)) target (Option.ofObj (r.GetValue title))

            Run.log "report: %s" h
            Console.Success))

    cmd
