/// `snnspec train`: a teacher or a baseline, a zoo model trained alone on a dataset, saved as a checkpoint.
module SnnSpec.Cli.TrainCommand

open System
open System.CommandLine
open System.IO
open SnnSpec
open SnnSpec.Training
open SnnSpec.IO

/// What `train` was asked to do.
type TrainOptions =
    {
        Model: ModelSection
        Dataset: DatasetSection
        Training: TrainingSection
        /// "ce" (time-mean cross-entropy) or "twce" (per-step, TET).
        Loss: string
        Name: string
        Out: string
        /// Continue from the snapshot a Ctrl-C left in Out.
        Resume: bool
    }

/// Trains the model alone, saves <out>/<name>.safetensors (the best epoch by validation accuracy)
/// and prints its test accuracy at every t.
let execute (o: TrainOptions) (ct: Threading.CancellationToken) =
    let trainSet, testSet = Run.loadData o.Dataset
    let fit, validation = SpecFile.split o.Dataset.Validation trainSet
    let t = o.Training

    Run.log
        "data: %s, %d training, %d validation, %d test images; %s, %d epoch(s)"
        o.Dataset.Name
        fit.Count
        validation.Count
        testSet.Count
        o.Model.Zoo
        t.Epochs

    let model =
        SpecFile.initModel o.Dataset o.Model (Some(Run.calibrationBatch t.BatchSize fit))

    let term =
        match o.Loss with
        | "twce" -> SpecTerm.perStepCrossEntropy 1.0f
        | _ -> SpecTerm.crossEntropy 0.0f 1.0f

    let job: Run.Job =
        {
            Label = o.Name
            Name = fun _ _ -> o.Name
            Quantization = fun _ -> o.Model.Quantization |> Option.map (fun q -> q.Config)
            Spec = DistillationSpec.alone [ model ] [ term ]
            Config =
                { SpecFile.trainConfig t with
                    Cancellation = ct
                }
            Train = Run.batcher t.BatchSize t.Seed true fit
            Validation = Some(Run.batcher t.BatchSize t.Seed false validation)
            Snapshot = Run.snapshotPath o.Out o.Name
            Resume = o.Resume
            Out = o.Out
            Metadata =
                Map.ofList
                    [
                        "role", o.Name
                        "dataset", o.Dataset.Name
                        "zoo", o.Model.Zoo
                        "epochs", string t.Epochs
                        // Recorded only when it cuts the sequence (an SNN at T > K).
                        match t.Truncation, model.Mode with
                        | Some k, ExecutionMode.Snn steps when k < steps -> "truncation", string k
                        | _ -> ()
                        if o.Dataset.IsSequence then
                            "frames", string o.Dataset.Frames
                        yield! Run.splitMetadata fit validation
                    ]
        }

    try
        let result, _ = Run.train job
        let trained = result.Students.Head.Best
        let test = Run.batcher t.BatchSize t.Seed false testSet
        let report = Evaluation.accuracyPerStep trained test
        Run.printAccuracy [ sprintf "%s (test, %d images)" o.Name testSet.Count, report ]
        Run.log "checkpoint: %s" (Run.checkpointPath o.Out o.Name)
        Console.Success
    with Run.Interrupted saved ->
        Run.onInterrupt o.Out saved

let private opt<'T> (name: string) (description: string) (value: 'T) =
    Option<'T>(name, DefaultValueFactory = (fun _ -> value), Description = description)

/// Options shared by commands that read a dataset.
type DataOptions =
    {
        Dataset: Option<string>
        Train: Option<int>
        Validation: Option<int>
        Test: Option<int>
        DataDir: Option<string>
    }

    member d.All: Option list = [ d.Dataset; d.Train; d.Validation; d.Test; d.DataDir ]

    member d.Section(r: ParseResult) =
        Run.datasetSection
            (r.GetValue d.Dataset)
            (r.GetValue d.Train)
            (r.GetValue d.Validation)
            (r.GetValue d.Test)
            (Option.ofObj (r.GetValue d.DataDir))

    static member Create(defaultTest: int) =
        {
            Dataset =
                opt
                    "--dataset"
                    "mnist, fashion-mnist, synthetic (generated patterns), or event-mnist / event-fashion-mnist (emulated event recordings, one frame per step)."
                    "mnist"
            Train = opt "--train" "Training images used (the last --validation of them held out)." 2000
            Validation = opt "--validation" "Training images held out for model selection." 200
            Test = opt "--test" "Test images evaluated." defaultTest
            DataDir =
                Option<string>("--data-dir", Description = "A directory holding the dataset's files, tried first.")
        }

/// The `train` command.
let command () =
    let cmd =
        Command("train", "Train a teacher or a baseline: a zoo model alone on a dataset, saved as a checkpoint.")

    let model =
        opt "--model" (sprintf "Zoo model: %s." (String.Join(", ", SpecFile.zooModels))) "convnet"

    let width = opt "--width" "Channel width multiplier." 1.0f
    let hidden = opt "--hidden" "Hidden sizes of an mlp, comma-separated." "128"
    let steps = opt "--steps" "Timesteps T (on event data also the frame count)." 4
    let ann = opt "--ann" "Train the ANN twin (an ANN teacher)." false

    let stack =
        opt
            "--stack-frames"
            "With --ann on event data: read the frames concatenated along channels, in order, instead of their time-mean."
            false

    let bits =
        opt "--bits" "Quantization-aware training at N bits (MINT); 0 trains full precision." 0

    let data = DataOptions.Create 500
    let epochs = opt "--epochs" "Epochs." 1
    let batch = opt "--batch-size" "Batch size." 32
    let optimizer = opt "--optimizer" "adam, adamw, sgd or nesterov." "adam"
    let lr = opt "--lr" "Learning rate." 5e-3f
    let wd = opt "--weight-decay" "Weight decay." 0.0f
    let seed = opt "--seed" "Seed of initialisation and shuffling." 0
    let loss = opt "--loss" "ce (time-mean cross-entropy) or twce (per-step, TET)." "ce"

    let truncation =
        opt
            "--truncation"
            "Truncated BPTT: run each batch in chunks of K steps, no gradient across chunks (0: full BPTT)."
            0

    let checkpointActivations =
        opt
            "--checkpoint-activations"
            "Keep only each population's output for the backward pass and compute the rest again there (same results, less memory, about one more forward pass)."
            false

    let name =
        opt "--name" "Model name: the checkpoint is <out>/<name>.safetensors." "teacher"

    let out = opt "--out" "Output directory." "runs/train"

    let resume =
        opt
            "--resume"
            "Continue exactly from the snapshot a Ctrl-C left in the output directory (same options required)."
            false

    for o in
        [ model :> Option; width; hidden; steps; ann; stack; bits ]
        @ data.All
        @ [
            epochs
            batch
            optimizer
            lr
            wd
            seed
            loss
            truncation
            checkpointActivations
            name
            out
            resume
        ] do
        cmd.Options.Add o

    cmd.SetAction(fun (r: ParseResult) ->
        Console.guard (fun () ->
            let zoo = r.GetValue model

            if not (List.contains zoo SpecFile.zooModels) then
                Console.usage "--model %s is unknown. Fix: use one of %s." zoo (String.Join(", ", SpecFile.zooModels))

            let hiddenSizes =
                (r.GetValue hidden)
                    .Split(',', StringSplitOptions.RemoveEmptyEntries ||| StringSplitOptions.TrimEntries)
                |> Array.map (fun s ->
                    match Int32.TryParse s with
                    | true, v when v > 0 -> v
                    | _ ->
                        Console.usage
                            "--hidden %s: '%s' is not a positive size. Fix: give sizes like 256,128."
                            (r.GetValue hidden)
                            s)
                |> List.ofArray

            let w = r.GetValue width
            let t = r.GetValue steps
            let b = r.GetValue bits

            if not (w > 0.0f && Single.IsFinite w) then
                Console.usage "--width %g. Fix: give a positive width (1 is the full model)." w

            if t < 1 then
                Console.usage "--steps %d. Fix: give at least 1 timestep." t

            if b < 0 || b > 16 then
                Console.usage "--bits %d. Fix: give 2 to 16, or 0 for full precision." b

            let lossName = r.GetValue loss

            if lossName <> "ce" && lossName <> "twce" then
                Console.usage "--loss %s is unknown. Fix: use ce or twce." lossName

            let epochsValue = r.GetValue epochs
            let batchValue = r.GetValue batch
            let lrValue = r.GetValue lr

            if epochsValue < 1 || batchValue < 1 || not (lrValue > 0.0f) then
                Console.usage
                    "--epochs, --batch-size and --lr must be positive. Fix: give e.g. --epochs 1 --batch-size 32 --lr 0.005."

            let optimizerKind =
                match (r.GetValue optimizer).ToLowerInvariant() with
                | "adam" -> OptimizerKind.AdamDefault
                | "adamw" -> OptimizerKind.AdamWDefault
                | "sgd" -> OptimizerKind.SgdMomentum
                | "nesterov" -> OptimizerKind.Nesterov
                | other -> Console.usage "--optimizer %s is unknown. Fix: use adam, adamw, sgd or nesterov." other

            let o =
                {
                    Model =
                        {
                            Zoo = zoo
                            Width = w
                            Hidden = hiddenSizes
                            Steps = [ t ]
                            Ann = r.GetValue ann
                            StackFrames = r.GetValue stack
                            Seed = r.GetValue seed
                            Dropout = 0.0f
                            Neuron = None
                            SpikingOutput = None
                            MapTap = None
                            Quantization =
                                if b = 0 then
                                    None
                                else
                                    Some
                                        {
                                            Config = QuantConfig.Mint b
                                            Calibrate = true
                                        }
                        }
                    Dataset =
                        let ds = data.Section r

                        if r.GetValue stack && not (r.GetValue ann) then
                            Console.usage
                                "--stack-frames without --ann. Fix: add --ann (an SNN reads one frame per step)."

                        if r.GetValue stack && not ds.IsSequence then
                            Console.usage
                                "--stack-frames on %s, whose samples are images. Fix: use an event dataset (event-mnist, event-fashion-mnist, event-synthetic)."
                                ds.Name

                        // On event data --steps is the frame count: an SNN reads one frame per step,
                        // an ANN their time-mean or (--stack-frames) all of them concatenated.
                        if ds.IsSequence then
                            if t > 256 then
                                Console.usage
                                    "--steps %d on event frames. Fix: give at most 256 steps (one frame each)."
                                    t

                            { ds with Frames = t }
                        else
                            ds
                    Training =
                        { SpecFile.defaultTraining with
                            Epochs = epochsValue
                            BatchSize = batchValue
                            Optimizer = optimizerKind
                            LearningRate = lrValue
                            WeightDecay = r.GetValue wd
                            Seed = r.GetValue seed
                            Truncation =
                                match r.GetValue truncation with
                                | 0 -> None
                                | k when k > 0 -> Some k
                                | k ->
                                    Console.usage
                                        "--truncation %d. Fix: give a window of at least 1 step, or 0 for full BPTT."
                                        k
                            CheckpointActivations = r.GetValue checkpointActivations
                        }
                    Loss = lossName
                    Name = r.GetValue name
                    Out = r.GetValue out
                    Resume = r.GetValue resume
                }

            if o.Name = "" || o.Name.IndexOfAny(Path.GetInvalidFileNameChars()) >= 0 then
                Console.usage "--name '%s' cannot name a file. Fix: use letters, digits, '-' and '_'." o.Name

            Run.withCtrlC (execute o)))

    cmd
