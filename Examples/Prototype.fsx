// Prototyping a new distillation loss in F# Interactive.
//
//   dotnet build -c Release                 # once: builds the assemblies referenced below
//   dotnet fsi Examples/Prototype.fsx
//
// The idea tried here: a temporal KL in which later time steps weigh more than early ones, since a
// spiking student's early steps see a membrane that has barely charged. The loss is an ordinary F#
// function of two tensors; the law kit checks it like the built-in losses are checked, and a
// LossTerm puts it into a distillation spec that the trainer runs.

#r "nuget: System.Numerics.Tensors, 10.0.0"
#r "../Spec.FSharp/bin/Release/net10.0/SnnSpec.Spec.dll"
#r "../Laws/bin/Release/net10.0/SnnSpec.Laws.dll"

open SnnSpec
open SnnSpec.Data
open SnnSpec.Distillation
open SnnSpec.Laws
open SnnSpec.Training

/// L = τ² · Σ_t w_t · mean_b KL(softmax(z_T[t]/τ) ‖ softmax(z_S[t]/τ)), w_t = (t + 1) / Σ_s (s + 1).
/// teacher and student are per-step logits [T, B, K]; the teacher is detached.
let timeWeightedKl (tau: float32) (teacher: Tensor) (student: Tensor) : Tensor =
    let steps = student.Shape[0]
    let zt = Diff.detach teacher * (1.0f / tau)
    let zs = student * (1.0f / tau)
    let logPt = Tensor.logSoftmax 2 zt
    let logPs = Tensor.logSoftmax 2 zs
    let kl = Tensor.sumDims [| 2 |] false (Tensor.exp logPt * (logPt - logPs)) // [T, B]
    let perStep = Tensor.meanDims [| 1 |] false kl // [T]
    let total = float32 (steps * (steps + 1) / 2)

    let w =
        Tensor.ofArray [| steps |] (Array.init steps (fun s -> float32 (s + 1) / total))

    Tensor.sum (w * perStep) * (tau * tau)

// 1. The laws, on random logits of 4 steps, a batch of 6 and 10 classes.
let loss: KdLoss = timeWeightedKl 2.0f
let teacher = Tensor.randn (Rng.create 1) [| 4; 6; 10 |] * 3.0f
let student = Tensor.randn (Rng.create 2) [| 4; 6; 10 |] * 3.0f

let results =
    [
        Laws.nonNegative loss teacher student
        Laws.zeroAtIdentity loss student
        Laws.teacherDetached loss teacher student
        Laws.gradMatchesFiniteDifferences loss teacher student
    ]

printfn "Laws of the time-weighted KL:"

for r in results do
    printfn "  %O" r

printfn "  %O" (LawResult.all results)

// 2. The same function as a loss term: it reads the per-step logits of both runs.
let term =
    LossTerm.custom "tw-kl" 1.0f (fun (t: KdOutputs) (s: KdOutputs) (_: int[]) -> timeWeightedKl 2.0f t.Logits s.Logits)

// 3. A tiny distillation run: an MLP teacher and a narrower MLP student at T = 4 on synthetic
//    12×12 images (one epoch; the teacher is untrained, which is fine for a smoke test).
let cfg = { ZooConfig.Mnist with InputSize = 12 }

let teacherModel = Model.init 0 (ExecutionMode.Snn 4) (Zoo.mlp cfg [ 64 ])
let studentModel = Model.init 1 (ExecutionMode.Snn 4) (Zoo.mlp cfg [ 16 ])

let spec =
    DistillationSpec.create
        teacherModel
        [ studentModel ]
        [
            SpecTerm.crossEntropy 0.0f 1.0f
            SpecTerm.ofTerm [ TapUse.TeacherLogits ] term
        ]

let rng = System.Random 0
let n = 64
let labels = Array.init n (fun i -> i % 10)

let pixels =
    Array.init (n * 144) (fun i -> byte ((labels[i / 144] * 25 + rng.Next 40) % 256))

let images = ImageSet.create "synthetic" pixels labels 1 12 12 10

let batcher =
    Batching.create
        {
            BatchSize = 16
            Shuffle = true
            DropLast = false
            Prefetch = 1
            Transform = None
            TimeMajor = false
            Key = Rng.create 0
        }
        images

let config =
    { TrainConfig.Default with
        Epochs = 1
        Optimizer = OptimizerKind.AdamDefault
        LearningRate = 1e-3f
        Progress =
            fun p ->
                let parts = p.Losses |> List.map (fun (name, v) -> sprintf "%s %.4f" name v)
                printfn "  step %d: total %.4f (%s)" p.Step p.Total (String.concat ", " parts)
    }

printfn "Training a student with cross-entropy + the new term:"
let trained = Trainer.fitOne config spec batcher None
printfn "  done: %d epoch(s), train accuracy %.3f" trained.History.Length trained.History.Head.TrainAccuracy
