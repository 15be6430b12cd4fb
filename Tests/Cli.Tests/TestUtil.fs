/// Helpers of the CLI tests: the repository root, temporary directories and spec texts.
module SnnSpec.Cli.Tests.TestUtil

open System
open System.IO

/// The repository root (the directory holding SnnSpec.sln), found from the test binaries upwards.
let repoRoot =
    let rec up (d: DirectoryInfo) =
        if isNull d then
            failwith "SnnSpec.sln not found above the test directory"
        elif File.Exists(Path.Combine(d.FullName, "SnnSpec.sln")) then
            d.FullName
        else
            up d.Parent

    up (DirectoryInfo(AppContext.BaseDirectory))

/// The example spec files shipped in Examples/specs.
let exampleSpecs () =
    Directory.GetFiles(Path.Combine(repoRoot, "Examples", "specs"), "*.json")
    |> Array.sort

/// A fresh temporary directory, deleted when disposed.
type TempDir() =
    let path =
        Path.Combine(Path.GetTempPath(), "snnspec-cli-tests-" + Guid.NewGuid().ToString("N").Substring(0, 10))

    do Directory.CreateDirectory path |> ignore
    member _.Path = path
    member _.File(name: string) = Path.Combine(path, name)

    interface IDisposable with
        member _.Dispose() =
            try
                Directory.Delete(path, true)
            with _ ->
                ()

/// A minimal valid spec (synthetic data, a teacher to train first, CE + KD) with the given
/// replacements of its "teacher", "student" and "terms" fields (raw JSON).
let spec (teacher: string) (student: string) (terms: string) =
    sprintf
        """{
  "schemaVersion": 1,
  "name": "test",
  "dataset": { "name": "synthetic", "train": 300, "validation": 50, "test": 100 },
  %s
  "student": %s,
  "terms": %s,
  "training": { "epochs": 1, "batchSize": 16 }
}"""
        (if teacher = "" then
             ""
         else
             sprintf "\"teacher\": %s," teacher)
        student
        terms

let defaultTeacher = """{ "model": { "zoo": "convnet", "steps": 4 } }"""
let defaultStudent = """{ "zoo": "convnet", "width": 0.5, "steps": 4 }"""
