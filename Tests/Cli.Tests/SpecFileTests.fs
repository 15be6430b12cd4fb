/// The spec file format: the examples parse and build; bad files fail at a JSON path with the fix.
module SnnSpec.Cli.Tests.SpecFileTests

open System.IO
open NUnit.Framework
open FsCheck
open FsCheck.FSharp
open FsCheck.NUnit
open SnnSpec
open SnnSpec.Training
open SnnSpec.IO
open SnnSpec.Cli.Tests.TestUtil

let private failsAt (path: string) (json: string) =
    let e = Assert.Throws<SpecFileException>(fun () -> SpecFile.parse json |> ignore)
    Assert.That(e.JsonPath, Is.EqualTo path, e.Message)
    Assert.That(e.Message, Does.Contain "Fix:", e.Message)
    e

[<Test>]
let ``every example spec parses and builds`` () =
    let files = exampleSpecs ()
    Assert.That(files.Length, Is.GreaterThanOrEqualTo 4)

    for f in files do
        let file = SpecFile.load f
        let built = SpecFile.build file None
        Assert.That(built.Students, Is.Not.Empty, f)
        Assert.That(built.Spec.Terms.Length, Is.EqualTo file.Terms.Length, f)
        Assert.That(built.Teacher.IsSome, f)

[<Test>]
let ``the examples cover the four methods`` () =
    let names =
        exampleSpecs () |> Array.map Path.GetFileNameWithoutExtension |> Set.ofArray

    Assert.That(names, Is.SupersetOf [ "md-snn"; "temporal-kd"; "bkdsnn"; "distilling-spikes" ])

[<Test>]
let ``the md-snn example is a versatile quantized run and distilling-spikes a chain`` () =
    let load n =
        SpecFile.load (Path.Combine(repoRoot, "Examples", "specs", n + ".json"))

    let md = SpecFile.build (load "md-snn") None
    Assert.That(md.Students |> List.map (fun m -> m.Mode) = [ for t in 1..4 -> ExecutionMode.Snn t ])
    Assert.That((Model.quantPlan md.Students.Head).IsQuantized)
    let ds = SpecFile.build (load "distilling-spikes") None
    Assert.That(ds.Assistants.Length, Is.EqualTo 1)

    match ds.Spec.Teacher with
    | TeacherSpec.Chain(_, [ _ ]) -> ()
    | other -> Assert.Fail(sprintf "expected a chain, got %A" other)

[<Test>]
let ``an unknown loss term names the known ones`` () =
    let e =
        spec defaultTeacher defaultStudent """[{ "kind": "ce" }, { "kind": "fitnet" }]"""
        |> failsAt "$.terms[1].kind"

    for k in SpecFile.termKinds do
        Assert.That(e.Message, Does.Contain k)

[<Test>]
let ``a negative weight fails at its path`` () =
    spec defaultTeacher defaultStudent """[{ "kind": "kd", "weight": -0.5 }]"""
    |> failsAt "$.terms[0].weight"
    |> ignore

[<Test>]
let ``a term reading the teacher without one names the teacher`` () =
    let e =
        spec "" defaultStudent """[{ "kind": "ce" }, { "kind": "kd" }]"""
        |> failsAt "$.teacher"

    Assert.That(e.Message, Does.Contain "$.terms[1] (kd)")

[<Test>]
let ``terms that need no teacher run without one`` () =
    let f =
        SpecFile.parse (spec "" defaultStudent """[{ "kind": "ce" }, { "kind": "twsd" }]""")

    let b = SpecFile.build f None
    Assert.That(b.Spec.Teacher, Is.EqualTo TeacherSpec.NoTeacher)

[<TestCase("0", "$.student.steps")>]
[<TestCase("[0]", "$.student.steps[0]")>]
[<TestCase("[1, -2]", "$.student.steps[1]")>]
[<TestCase("[]", "$.student.steps")>]
[<TestCase("[2, 2]", "$.student.steps")>]
[<TestCase("\"four\"", "$.student.steps")>]
[<TestCase("2.5", "$.student.steps")>]
let ``a bad T fails at its path`` (steps: string, path: string) =
    spec defaultTeacher (sprintf """{ "zoo": "convnet", "steps": %s }""" steps) """[{ "kind": "kd" }]"""
    |> failsAt path
    |> ignore

[<Test>]
let ``a teacher with several T is refused`` () =
    spec """{ "model": { "zoo": "convnet", "steps": [2, 4] } }""" defaultStudent """[{ "kind": "kd" }]"""
    |> failsAt "$.teacher.model.steps"
    |> ignore

[<Test>]
let ``an unknown field lists the known fields`` () =
    let e =
        (spec defaultTeacher defaultStudent """[{ "kind": "kd" }]""").Replace("\"batchSize\"", "\"batch\"")
        |> failsAt "$.training.batch"

    Assert.That(e.Message, Does.Contain "batchSize")

[<Test>]
let ``an unknown option value lists the allowed ones`` () =
    let e =
        spec defaultTeacher defaultStudent """[{ "kind": "membrane", "alignment": "suffix" }]"""
        |> failsAt "$.terms[0].alignment"

    Assert.That(e.Message, Does.Contain "prefix, pooled, mean")

[<Test>]
let ``a ce readout other than mean or counts lists both`` () =
    let e =
        spec defaultTeacher defaultStudent """[{ "kind": "ce", "readout": "rate" }]"""
        |> failsAt "$.terms[0].readout"

    Assert.That(e.Message, Does.Contain "mean, counts")

[<Test>]
let ``a counts readout makes the ce term read spike counts`` () =
    let f =
        SpecFile.parse (spec defaultTeacher defaultStudent """[{ "kind": "ce", "readout": "counts" }]""")

    let b = SpecFile.build f None
    let term = b.Spec.Terms.Head.Term
    let z = Tensor.ofArray [| 3; 1; 2 |] [| 0.0f; 1.0f; 1.0f; 1.0f; 0.0f; 1.0f |]
    let out = SnnSpec.Distillation.KdOutputs.ofLogits z
    let loss = (SnnSpec.Distillation.LossTerm.evaluate term out out [| 1 |]).ToScalar()
    // counts (1, 3): CE = log(1 + e^(1 − 3)).
    Assert.That(float loss, Is.EqualTo(log (1.0 + exp -2.0)).Within 1e-5)

[<Test>]
let ``a model's neuron sets every population and an unknown one lists the known`` () =
    let f =
        SpecFile.parse (
            spec defaultTeacher """{ "zoo": "convnet", "steps": 4, "neuron": "mint" }""" """[{ "kind": "ce" }]"""
        )

    let b = SpecFile.build f None

    let neurons =
        b.Students.Head.Architecture.Layers
        |> List.choose (fun l ->
            match l with
            | Spiking(_, n) -> Some n
            | _ -> None)

    Assert.That(neurons, Is.Not.Empty)

    Assert.That(
        neurons
        |> List.forall (fun n -> n.Dynamics = Neuron.mint.Dynamics && n.Threshold = Neuron.mint.Threshold)
    )

    let e =
        spec defaultTeacher """{ "zoo": "convnet", "neuron": "izhikevich" }""" """[{ "kind": "ce" }]"""
        |> failsAt "$.student.neuron"

    Assert.That(e.Message, Does.Contain "lif, mint, if, leaky")

[<Test>]
let ``event datasets give the frame count to every SNN and the zoo 2x34x34 inputs`` () =
    let eventSpec (dataset: string) (student: string) =
        (spec """{ "model": { "zoo": "convnet", "ann": true, "steps": 1 } }""" student """[{ "kind": "kd" }]""")
            .Replace(""""dataset": { "name": "synthetic",""", dataset)

    let f =
        SpecFile.parse (
            eventSpec """"dataset": { "name": "event-synthetic", "frames": 3,""" """{ "zoo": "convnet", "steps": 3 }"""
        )

    Assert.That((f.Dataset.Frames, f.Dataset.IsSequence), Is.EqualTo((3, true)))
    Assert.That((SpecFile.architecture f.Dataset f.Student).InputShape, Is.EqualTo(box [| 2; 34; 34 |]))
    // Four frames by default; an SNN at another T fails at its steps.
    let e =
        eventSpec """"dataset": { "name": "event-mnist",""" """{ "zoo": "convnet", "steps": [2, 4] }"""
        |> failsAt "$.student.steps[0]"

    Assert.That(e.Message, Does.Contain "sequences of 4 frames")
    // Frames belong to event datasets only.
    eventSpec """"dataset": { "name": "mnist", "frames": 4,""" defaultStudent
    |> failsAt "$.dataset.frames"
    |> ignore

[<Test>]
let ``an ANN teacher on event frames may stack them, and only an ANN on event data may`` () =
    let withTeacher (dataset: string) (teacher: string) =
        (spec teacher """{ "zoo": "convnet", "steps": 3 }""" """[{ "kind": "kd" }]""")
            .Replace(""""dataset": { "name": "synthetic",""", dataset)

    let events = """"dataset": { "name": "event-synthetic", "frames": 3,"""

    let f =
        SpecFile.parse (withTeacher events """{ "model": { "zoo": "convnet", "ann": true, "stackFrames": true } }""")

    match f.Teacher with
    | Some(TeacherSection.Train(m, _)) ->
        let arch = SpecFile.architecture f.Dataset m
        Assert.That(Architecture.stackedFrames arch, Is.EqualTo(Some 3))
        Assert.That(arch.InputShape, Is.EqualTo(box [| 2; 34; 34 |]))
    | other -> Assert.Fail(sprintf "unexpected teacher %A" other)

    let e =
        withTeacher events """{ "model": { "zoo": "convnet", "steps": 3, "stackFrames": true } }"""
        |> failsAt "$.teacher.model.stackFrames"

    Assert.That(e.Message, Does.Contain "\"ann\": true")

    let e =
        withTeacher
            """"dataset": { "name": "synthetic","""
            """{ "model": { "zoo": "convnet", "ann": true, "stackFrames": true } }"""
        |> failsAt "$.teacher.model.stackFrames"

    Assert.That(e.Message, Does.Contain "event dataset")

[<Test>]
let ``invalid JSON gives the line`` () =
    let e = failsAt "$" "{\n  \"schemaVersion\": 1,\n  \"dataset\": { \"name\": }\n}"
    Assert.That(e.Message, Does.Contain "line 3")

[<Test>]
let ``a wrong schema version is refused`` () =
    (spec defaultTeacher defaultStudent """[{ "kind": "kd" }]""")
        .Replace("\"schemaVersion\": 1", "\"schemaVersion\": 7")
    |> failsAt "$.schemaVersion"
    |> ignore

[<Test>]
let ``a missing teacher checkpoint fails at build with the command that makes it`` () =
    let f =
        SpecFile.parse (
            spec """{ "checkpoint": "no/such/teacher.safetensors" }""" defaultStudent """[{ "kind": "kd" }]"""
        )

    let e = Assert.Throws<SpecFileException>(fun () -> SpecFile.build f None |> ignore)
    Assert.That(e.JsonPath, Is.EqualTo "$.teacher.checkpoint")
    Assert.That(e.Message, Does.Contain "snnspec train")

[<Test>]
let ``a membrane population the student lacks fails at build`` () =
    let f =
        SpecFile.parse (
            spec
                defaultTeacher
                """{ "zoo": "convnet", "steps": 4 }"""
                """[{ "kind": "membrane", "probes": ["lif9"] }]"""
        )

    let e = Assert.Throws<SpecFileException>(fun () -> SpecFile.build f None |> ignore)
    Assert.That(e.JsonPath, Is.EqualTo "$.terms")
    Assert.That(e.Message, Does.Contain "lif9")

[<Test>]
let ``a blurred term on a vector tap asks for a map tap`` () =
    let f =
        SpecFile.parse (spec defaultTeacher defaultStudent """[{ "kind": "bkd", "studentTap": "feature" }]""")

    let e = Assert.Throws<SpecFileException>(fun () -> SpecFile.build f None |> ignore)
    Assert.That(e.JsonPath, Is.EqualTo "$.terms[0].studentTap")
    Assert.That(e.Message, Does.Contain "feature_map")
    Assert.That(e.Message, Does.Contain "mapTap")

[<Test>]
let ``a blurred term's default taps are the zoo's feature maps`` () =
    let b =
        SpecFile.build (SpecFile.parse (spec defaultTeacher defaultStudent """[{ "kind": "bkd" }]""")) None

    let t = b.Spec.Terms |> List.exactlyOne
    Assert.That((t.Uses = [ TapUse.Feature("feature_map", "feature_map", true) ]), sprintf "%A" t.Uses)
    DistillationSpec.validate b.Spec

[<Test>]
let ``every term kind maps to a spec term`` () =
    let terms =
        """[
      { "kind": "ce", "labelSmoothing": 0.1 }, { "kind": "twce" }, { "kind": "kd", "tau": 2 },
      { "kind": "wsld" }, { "kind": "temporal", "selfTarget": "ensemble" }, { "kind": "twkl" },
      { "kind": "twsd" }, { "kind": "membrane", "alignment": "mean" },
      { "kind": "spikes", "probe": "lif2", "window": 2 },
      { "kind": "feature", "teacherTap": "map", "studentTap": "map" },
      { "kind": "bkd", "teacherTap": "map", "studentTap": "map" } ]"""

    let f =
        SpecFile.parse (
            spec
                """{ "model": { "zoo": "convnet", "steps": 4, "mapTap": "map" } }"""
                """{ "zoo": "convnet", "steps": 4, "mapTap": "map" }"""
                terms
        )

    let b = SpecFile.build f None

    let names = String.concat ", " (b.Spec.Terms |> List.map (fun t -> t.Term.Name))
    Assert.That(names, Is.EqualTo "ce, twce, kd, wsld, temporal, twkl, twsd, membrane, spikes, feature, bkd")

[<Test>]
let ``a spike window longer than the shortest student run fails at its path`` () =
    let f =
        SpecFile.parse (
            spec
                defaultTeacher
                """{ "zoo": "convnet", "steps": [2, 4] }"""
                """[{ "kind": "spikes", "probe": "lif2", "window": 3 }]"""
        )

    let e = Assert.Throws<SpecFileException>(fun () -> SpecFile.build f None |> ignore)
    Assert.That(e.JsonPath, Is.EqualTo "$.terms[0].window")
    Assert.That(e.Message, Does.Contain "at most 2")

let private bitsGen =
    Gen.oneof [ Gen.constant Bits.FullPrecision; Gen.choose (1, 16) |> Gen.map Bits.Fixed ]

let private quantGen =
    gen {
        let! w = bitsGen
        let! m = bitsGen
        let! b = bitsGen
        let! fold = Gen.elements [ true; false ]
        let! keep = Gen.elements [ true; false ]
        let! share = Gen.elements [ true; false ]
        let! integer = Gen.elements [ true; false ]
        let! cal = Gen.elements [ true; false ]

        let baseCfg =
            if integer then
                QuantConfig.Integer 4
            else
                QuantConfig.Mint 4

        return
            { baseCfg with
                Weight = w
                Membrane = m
                Bias = b
                FoldBatchNorm = fold
                KeepFirstLayerFullPrecision = keep
                ShareMembraneScale = share
                FullPrecisionLayers = Set.ofList [ "fc" ]
            },
            cal
    }

[<FsCheck.NUnit.Property(MaxTest = 100)>]
let ``quantization sections round-trip through JSON`` () =
    Prop.forAll (Arb.fromGen quantGen) (fun (cfg, cal) ->
        let back = SpecFile.parseQuantization (SpecFile.quantizationJson cfg cal)
        back.Config = cfg && back.Calibrate = cal)

[<Test>]
let ``the truncation window reaches the trainer and a window below 1 fails at its path`` () =
    let withTraining (training: string) =
        (spec "" defaultStudent """[{ "kind": "ce" }]""")
            .Replace(""""training": { "epochs": 1, "batchSize": 16 }""", training)

    let parsed =
        SpecFile.parse (withTraining """"training": { "epochs": 1, "batchSize": 16, "truncation": 3 }""")

    Assert.That(parsed.Training.Truncation, Is.EqualTo(Some 3))
    Assert.That((SpecFile.trainConfig parsed.Training).Truncation, Is.EqualTo(Some 3))
    Assert.That((SpecFile.parse (withTraining """"training": { "epochs": 1 }""")).Training.Truncation, Is.EqualTo None)

    let offInTeacher =
        (spec
            """{ "model": { "zoo": "convnet", "steps": 4 }, "training": { "truncation": null } }"""
            defaultStudent
            """[{ "kind": "ce" }]""")
            .Replace(
                """"training": { "epochs": 1, "batchSize": 16 }""",
                """"training": { "epochs": 1, "truncation": 2 }"""
            )
        |> SpecFile.parse

    Assert.That(offInTeacher.Training.Truncation, Is.EqualTo(Some 2))

    match offInTeacher.Teacher with
    | Some(TeacherSection.Train(_, t)) -> Assert.That(t.Truncation, Is.EqualTo None, "null turns truncation off")
    | other -> Assert.Fail(sprintf "expected a teacher trained first, got %A" other)

    withTraining """"training": { "epochs": 1, "truncation": 0 }"""
    |> failsAt "$.training.truncation"
    |> ignore

[<Test>]
let ``activation checkpointing reaches the trainer and a value other than a boolean fails at its path`` () =
    let withTraining (training: string) =
        (spec "" defaultStudent """[{ "kind": "ce" }]""")
            .Replace(""""training": { "epochs": 1, "batchSize": 16 }""", training)

    let parsed =
        SpecFile.parse (withTraining """"training": { "epochs": 1, "checkpointActivations": true }""")

    Assert.That(parsed.Training.CheckpointActivations, Is.True)
    Assert.That((SpecFile.trainConfig parsed.Training).CheckpointActivations, Is.True)

    Assert.That(
        (SpecFile.parse (withTraining """"training": { "epochs": 1 }""")).Training.CheckpointActivations,
        Is.False
    )

    withTraining """"training": { "epochs": 1, "checkpointActivations": "yes" }"""
    |> failsAt "$.training.checkpointActivations"
    |> ignore
