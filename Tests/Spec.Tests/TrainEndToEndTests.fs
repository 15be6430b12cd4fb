module SnnSpec.Tests.TrainEndToEndTests

open System.Diagnostics
open NUnit.Framework
open SnnSpec
open SnnSpec.Data
open SnnSpec.Training
open SnnSpec.Tests.TrainTests

[<Test>]
let ``a distilled student beats the same student trained alone when the teacher is clearly better`` () =
    let clock = Stopwatch.StartNew()
    let classes = 8
    let noise = 0.45
    let cfg = { cfg8 classes with Width = 1.0f }
    let teacherSet = templates 11 classes 1024 noise
    // The student's set carries noisy annotations: half of its labels are redrawn at random.
    let studentSet =
        let s = ImageSet.subset teacherSet [| 0..255 |]
        let rng = System.Random 21

        { s with
            Labels =
                s.Labels
                |> Array.map (fun y -> if rng.NextDouble() < 0.5 then rng.Next classes else y)
        }

    let testSet = ImageSet.subset (templates 11 classes 2048 noise) [| 1024..2047 |]

    let adam =
        { TrainConfig.Default with
            Optimizer = OptimizerKind.AdamWDefault
            LearningRate = 3e-3f
            WeightDecay = 1e-2f
            Schedule = LrSchedule.Cosine 0.0f
        }

    let teacher =
        (Trainer.fitOne
            { adam with Epochs = 6 }
            (DistillationSpec.alone
                [ Model.init 1 (ExecutionMode.Snn 4) (Zoo.mlp cfg [ 128 ]) ]
                [ SpecTerm.crossEntropy 0.0f 1.0f ])
            (batcher 32 true 2 teacherSet)
            None)
            .Final

    let student = Model.init 3 (ExecutionMode.Snn 2) (Zoo.mlp cfg [ 16 ])
    let test = batcher 256 false 0 testSet

    let acc (m: Model) =
        Evaluation.accuracyPerStep m test |> Array.last

    let studentCfg = { adam with Epochs = 15; Seed = 5 }

    let alone =
        (Trainer.fitOne
            studentCfg
            (DistillationSpec.alone [ student ] [ SpecTerm.crossEntropy 0.0f 1.0f ])
            (batcher 16 true 4 studentSet)
            None)
            .Final

    let distilled =
        (Trainer.fitOne
            studentCfg
            (DistillationSpec.create teacher [ student ] [ SpecTerm.crossEntropy 0.0f 0.1f; SpecTerm.logitKd 4.0f 0.9f ])
            (batcher 16 true 4 studentSet)
            None)
            .Final

    let ta, sa, da = acc teacher, acc alone, acc distilled

    TestContext.Progress.WriteLine(
        sprintf "teacher %.3f, student alone %.3f, distilled %.3f (%.1f s)" ta sa da clock.Elapsed.TotalSeconds
    )

    Assert.That(ta, Is.GreaterThan(sa + 0.1), "the teacher must be clearly better for the comparison to mean anything")
    Assert.That(da, Is.GreaterThan(sa + 0.1))
