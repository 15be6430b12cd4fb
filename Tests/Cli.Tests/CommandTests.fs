/// Command-line parsing: every command parses its options, and bad usage exits with code 2.
module SnnSpec.Cli.Tests.CommandTests

open NUnit.Framework
open SnnSpec.Cli
open SnnSpec.Cli.Tests.TestUtil

let private parses (args: string list) =
    let r = (Program.root ()).Parse(Array.ofList args)
    Assert.That(r.Errors, Is.Empty, sprintf "%A" (r.Errors |> Seq.map (fun e -> e.Message) |> List.ofSeq))
    r

[<Test>]
let ``every command parses its documented options`` () =
    for args in
        [
            [ "data"; "list" ]
            [ "data"; "fetch"; "mnist"; "--offline" ]
            [
                "train"
                "--model"
                "mlp"
                "--hidden"
                "64,32"
                "--steps"
                "8"
                "--dataset"
                "synthetic"
                "--epochs"
                "2"
                "--bits"
                "4"
                "--truncation"
                "3"
                "--out"
                "x"
            ]
            [ "distill"; "spec.json"; "--out"; "x"; "--epochs"; "3"; "--check" ]
            [
                "eval"
                "a.safetensors"
                "--dataset"
                "mnist"
                "--test"
                "100"
                "--json"
                "r.json"
            ]
            [
                "quantize"
                "a.safetensors"
                "--bits"
                "4"
                "--preset"
                "integer"
                "--calibration-batches"
                "2"
            ]
            [ "report"; "runs/x"; "a.safetensors"; "--out"; "r"; "--title"; "t" ]
            [ "simulate"; "--model"; "vgg9" ]
            [ "demo"; "--quick" ]
        ] do
        parses args |> ignore

[<Test>]
let ``distill reads its spec argument and overrides`` () =
    let r = parses [ "distill"; "Examples/specs/md-snn.json"; "--epochs"; "3" ]
    Assert.That(r.CommandResult.Command.Name, Is.EqualTo "distill")
    Assert.That(r.Tokens |> Seq.map (fun t -> t.Value), Does.Contain "Examples/specs/md-snn.json")

[<TestCase("nosuch")>]
[<TestCase("train --epochs abc")>]
[<TestCase("train --unknown-option 1")>]
[<TestCase("distill")>]
[<TestCase("eval")>]
[<TestCase("quantize a.safetensors --bits x")>]
let ``bad usage exits with code 2`` (line: string) =
    Assert.That(Program.run (line.Split ' '), Is.EqualTo 2)

[<Test>]
let ``bad input exits with code 2`` () =
    use dir = new TempDir()
    let bad = dir.File "bad.json"

    System.IO.File.WriteAllText(bad, spec defaultTeacher defaultStudent """[{ "kind": "nosuch" }]""")

    for args in
        [
            [ "distill"; dir.File "missing.json" ]
            [ "distill"; bad ]
            [ "distill"; bad; "--check" ]
            [ "eval"; dir.File "missing.safetensors" ]
            [ "quantize"; dir.File "missing.safetensors" ]
            [ "train"; "--model"; "nosuch" ]
            [ "train"; "--dataset"; "nosuch" ]
            [ "train"; "--validation"; "5000" ]
            [ "train"; "--dataset"; "event-synthetic"; "--stack-frames" ]
            [ "train"; "--dataset"; "synthetic"; "--ann"; "--stack-frames" ]
            [ "train"; "--dataset"; "synthetic"; "--truncation"; "-1" ]
            [ "report"; dir.File "nothing-here" ]
        ] do
        Assert.That(Program.run (Array.ofList args), Is.EqualTo 2, String.concat " " args)

[<Test>]
let ``distill --check validates an example without training`` () =
    let f = System.IO.Path.Combine(repoRoot, "Examples", "specs", "temporal-kd.json")
    Assert.That(Program.run [| "distill"; f; "--check" |], Is.EqualTo 0)
