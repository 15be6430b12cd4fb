// Which distillation terms lift the demo's 4-bit student (the figures in the closing note of the
// stop that tuned `snnspec demo`). After `dotnet build -c Release`:
//
//   dotnet fsi Examples/experiments/kd-variants.fsx <teacher.safetensors> <variant>
//
// variant: base | temporal | temporal+mem0.1 | temporal+mem1 | temporal-a1+mem0.1 | temporal-a1+mem0.02 | kd
// The student is the demo's: 4-bit MINT ConvNet at T = 4 (seed 1), 1 epoch on the first 11000
// MNIST training images in batches of 32, Adam 5e-3, clipping at 5, seed 0; accuracy at t = 1…4
// on all 10000 test images. The teacher is any FP32 ConvNet checkpoint, e.g. the demo's
// snnspec-demo/teacher.safetensors.

#r "nuget: System.Numerics.Tensors, 10.0.0"
#r "../../Spec.FSharp/bin/Release/net10.0/SnnSpec.Spec.dll"

open SnnSpec
open SnnSpec.Data
open SnnSpec.Distillation
open SnnSpec.Training
open SnnSpec.IO

let teacherPath, variant = fsi.CommandLineArgs[1], fsi.CommandLineArgs[2]
let train = Datasets.mnist Fetch.defaults true
let test = Datasets.mnist Fetch.defaults false
let fitSet = ImageSet.subset train [| 0..10999 |]

let batcher shuffle s =
    Batching.create
        { Batching.options 32 0 with
            Shuffle = shuffle
        }
        s

let teacher = (Checkpoint.load teacherPath).Model

let student =
    Model.init 1 (ExecutionMode.Snn 4) (Zoo.convNet ZooConfig.Mnist)
    |> Model.quantize (QuantConfig.Mint 4)
    |> Model.calibrateScales (ImageSet.toTensor fitSet [| 0..31 |])

let membrane w =
    SpecTerm.membrane Alignment.Prefix [ "lif1"; "lif2"; "lif_fc1" ] w

let temporalA1 =
    SpecTerm.temporal
        { TemporalKd.defaults with
            Alpha = 1.0f
        }

let terms =
    match variant with
    | "base" -> [ SpecTerm.perStepCrossEntropy 1.0f ]
    | "temporal" -> [ SpecTerm.temporal TemporalKd.defaults ]
    | "temporal+mem0.1" -> [ SpecTerm.temporal TemporalKd.defaults; membrane 0.1f ]
    | "temporal+mem1" -> [ SpecTerm.temporal TemporalKd.defaults; membrane 1.0f ]
    | "temporal-a1+mem0.1" -> [ temporalA1; membrane 0.1f ]
    | "temporal-a1+mem0.02" -> [ temporalA1; membrane 0.02f ]
    | "kd" -> [ SpecTerm.perStepCrossEntropy 1.0f; SpecTerm.logitKd 4.0f 1.0f ]
    | v -> failwithf "unknown variant '%s'" v

let spec =
    if variant = "base" then
        DistillationSpec.alone [ student ] terms
    else
        DistillationSpec.create teacher [ student ] terms

let cfg =
    { TrainConfig.Default with
        Optimizer = OptimizerKind.AdamDefault
        LearningRate = 5e-3f
        WeightDecay = 0.0f
        ClipNorm = Some 5.0f
    }

let trained = (Trainer.fitOne cfg spec (batcher true fitSet) None).Final
let accuracy = Evaluation.accuracyPerStep trained (batcher false test)
printfn "%s: test accuracy at t = 1…4: %s" variant (accuracy |> Array.map (sprintf "%.4f") |> String.concat " ")
