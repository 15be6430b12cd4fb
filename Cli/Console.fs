/// Console helpers shared by the commands: errors that name the problem and the fix, exit codes.
module SnnSpec.Cli.Console

open Spectre.Console

/// Exit codes: 0 success, 1 a failed operation (bad data, a failed fetch), 2 bad usage.
[<Literal>]
let Success = 0

[<Literal>]
let Failure = 1

[<Literal>]
let Usage = 2

/// Prints an error as "error: …" in red without markup interpretation of the message.
let error (message: string) =
    AnsiConsole.MarkupLine("[red]error:[/] {0}", Markup.Escape message)

/// Runs a command body, turning SnnSpec's own exceptions into an error line and exit code 1.
let guard (body: unit -> int) =
    try
        body ()
    with
    | :? SnnSpec.SnnSpecException as e ->
        error e.Message
        Failure
    | :? System.IO.IOException as e ->
        error (sprintf "%s (check the path and permissions)" e.Message)
        Failure
