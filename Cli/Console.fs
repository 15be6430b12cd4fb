/// Console helpers shared by the commands: errors that name the problem and the fix, exit codes.
module SnnSpec.Cli.Console

open Spectre.Console

/// Exit codes: 0 success, 1 a failed operation (bad data, a failed fetch, a diverged or interrupted
/// run), 2 bad usage or bad input (unknown option, invalid spec file).
[<Literal>]
let Success = 0

[<Literal>]
let Failure = 1

[<Literal>]
let Usage = 2

/// Prints an error as "error: …" in red without markup interpretation of the message.
let error (message: string) =
    AnsiConsole.MarkupLine("[red]error:[/] {0}", Markup.Escape message)

/// Prints a line without markup interpretation.
let line (message: string) =
    AnsiConsole.MarkupLine("{0}", Markup.Escape message)

/// Bad input found by a command (a bad option value, a missing file): printed as an error, exit code 2.
exception UsageError of string

/// Runs a command body, turning bad input into exit code 2 and SnnSpec's own exceptions into an
/// error line and exit code 1.
let guard (body: unit -> int) =
    try
        body ()
    with
    | UsageError message ->
        error message
        Usage
    | :? SnnSpec.IO.SpecFileException as e ->
        error e.Message
        Usage
    | :? SnnSpec.SnnSpecException as e ->
        error e.Message
        Failure
    | :? System.IO.IOException as e ->
        error (sprintf "%s (check the path and permissions)" e.Message)
        Failure
    | :? System.UnauthorizedAccessException as e ->
        error (sprintf "%s (check the path and permissions)" e.Message)
        Failure

/// Raises UsageError with a formatted message.
let usage fmt =
    Printf.kprintf (fun s -> raise (UsageError s)) fmt
