namespace SnnSpec.IO

open System
open System.Globalization
open System.IO
open System.Text
open System.Text.Json
open SnnSpec
open SnnSpec.Data
open SnnSpec.Distillation
open SnnSpec.Training

/// A problem in a spec file: <c>JsonPath</c> locates it ("$.terms[2].weight"), the message names
/// the problem and the fix.
type SpecFileException(jsonPath: string, message: string) =
    inherit SnnSpecException(sprintf "%s: %s" jsonPath message)
    member _.JsonPath = jsonPath

/// The dataset of a run: MNIST, Fashion-MNIST (fetched and verified) or "synthetic" (a generated,
/// learnable 28×28 pattern set for smoke tests), all 1×28×28 with 10 classes; or "event-mnist",
/// "event-fashion-mnist", "event-synthetic": N-MNIST-style event recordings EMULATED from those images
/// (Emulation, EmulatedFrames) and integrated into Frames equal-time frames [T, 2, 34, 34] of ON/OFF
/// counts.
type DatasetSection =
    {
        Name: string
        /// Training images used; the last Validation of them are held out for model selection.
        Train: int
        Validation: int
        Test: int
        /// A directory holding the dataset's files, tried before the cache and the download.
        Directory: string option
        /// Frames per sample of an event dataset (its SNNs run at T = Frames); 0 for image datasets.
        Frames: int
    }

    /// Whether samples are frame sequences [T, C, H, W] (batched time-major) rather than images.
    member d.IsSequence = d.Frames > 0

/// A model of the zoo, sized for the dataset.
type ModelSection =
    {
        /// convnet, mlp, vgg9, vgg11, resnet18, resnet19, ms-resnet18 or sew-resnet18.
        Zoo: string
        Width: float32
        /// Hidden sizes of an mlp.
        Hidden: int list
        /// Timesteps; several values train one copy per T from one teacher (a versatile teacher).
        Steps: int list
        /// Run as the ANN twin (teachers only).
        Ann: bool
        /// An ANN on event frames that reads the T frames concatenated along channels, in order
        /// (Architecture.stackFrames), instead of their time-mean.
        StackFrames: bool
        Seed: int
        Dropout: float32
        /// The neuron of every spiking population (the zoo default, SpikingJelly's LIF, when None).
        Neuron: Neuron option
        /// Appends a spiking population of this name after the classifier (its spikes [T, B, K] are
        /// the output spike tensor Distilling Spikes compares).
        SpikingOutput: string option
        /// Inserts a Tap of this name on the last feature map (before global pooling or flatten),
        /// the map BKDSNN's blurred loss reads.
        MapTap: string option
        Quantization: QuantizationSection option
    }

/// A quantization-aware model: the configuration and whether to calibrate the scales on a
/// training batch before training (Model.calibrateScales).
and QuantizationSection =
    { Config: QuantConfig; Calibrate: bool }

/// Whether and where the frozen teacher's outputs are cached (see TeacherCache, TeacherCacheFile).
[<RequireQualifiedAccess>]
type TeacherCacheSetting =
    /// The teacher runs on every batch.
    | Off
    /// Computed once before the first epoch, kept in memory for the run.
    | Memory of CachePrecision
    /// Kept in a file under the output directory and reused by later runs with the same teacher
    /// and data (the command line builds or loads it; Trainer.fit sees it as TeacherCacheMode.Use).
    | Disk of CachePrecision

/// The optimizer, schedule and loop settings.
type TrainingSection =
    {
        Epochs: int
        BatchSize: int
        Optimizer: OptimizerKind
        LearningRate: float32
        WeightDecay: float32
        Schedule: LrSchedule
        ClipNorm: float32 option
        Seed: int
        StudentOrder: StudentOrder
        TeacherCache: TeacherCacheSetting
        /// Truncated BPTT window in steps (TrainConfig.Truncation); None: full BPTT.
        Truncation: int option
        /// Activation checkpointing in the students' forward passes (TrainConfig.CheckpointActivations).
        CheckpointActivations: bool
    }

/// Where the teacher comes from.
[<RequireQualifiedAccess>]
type TeacherSection =
    /// A checkpoint written by `snnspec train` (or any Checkpoint.save).
    | Checkpoint of path: string
    /// A zoo model trained first with cross-entropy on the dataset.
    | Train of model: ModelSection * training: TrainingSection

/// Which membrane populations a membrane term compares.
[<RequireQualifiedAccess>]
type MembraneProbes =
    | Names of string list
    | Granularity of ProbeGranularity

/// One loss term of the file, with its weight.
[<RequireQualifiedAccess>]
type TermSection =
    | Ce of weight: float32 * labelSmoothing: float32 * readout: TimeReadout
    | Twce of weight: float32
    | Kd of weight: float32 * tau: float32
    | Wsld of weight: float32 * tau: float32
    | Temporal of weight: float32 * TemporalConfig
    | Twkl of weight: float32 * tau: float32
    | Twsd of weight: float32 * tau: float32 * target: SelfDistillationTarget
    | Membrane of weight: float32 * probes: MembraneProbes * alignment: Alignment
    | Spikes of weight: float32 * probe: string * SpikeKdConfig
    | Feature of weight: float32 * teacherTap: string * studentTap: string * seed: int
    | Bkd of weight: float32 * teacherTap: string * studentTap: string * BlurredConfig * seed: int

    /// The term's kind as written in the file.
    member t.Kind =
        match t with
        | Ce _ -> "ce"
        | Twce _ -> "twce"
        | Kd _ -> "kd"
        | Wsld _ -> "wsld"
        | Temporal _ -> "temporal"
        | Twkl _ -> "twkl"
        | Twsd _ -> "twsd"
        | Membrane _ -> "membrane"
        | Spikes _ -> "spikes"
        | Feature _ -> "feature"
        | Bkd _ -> "bkd"

    /// Whether the term reads the teacher's outputs.
    member t.ReadsTeacher =
        match t with
        | Ce _
        | Twce _
        | Twsd _ -> false
        | _ -> true

/// Where a run writes its checkpoints and report.
type OutputSection =
    {
        Directory: string
        /// Write report.html/.csv/.json after training.
        Report: bool
    }

/// A distillation run as a file (docs/spec-format.md): dataset, teacher, assistants (multi-stage
/// KD), student, loss terms, training settings and output.
type SpecFile =
    {
        SchemaVersion: int
        Name: string
        Dataset: DatasetSection
        Teacher: TeacherSection option
        Assistants: ModelSection list
        Student: ModelSection
        Terms: TermSection list
        Training: TrainingSection
        Output: OutputSection
    }

/// A spec file turned into models, a distillation spec and trainer settings.
type BuiltSpec =
    {
        File: SpecFile
        /// The teacher as loaded (checkpoint) or freshly initialised (to train first).
        Teacher: Model option
        /// The teacher must be trained (TeacherSpec.Train) before the distillation runs.
        TeacherNeedsTraining: bool
        /// The teacher's own training settings (the file's training with the teacher's overrides).
        TeacherTraining: TrainConfig
        Assistants: Model list
        /// One student per T of the student's steps, each with its own parameters.
        Students: Model list
        Spec: DistillationSpec
        Training: TrainConfig
    }

/// Reading, checking and building spec files (docs/spec-format.md).
[<RequireQualifiedAccess>]
module SpecFile =
    /// The schema version this SnnSpec reads and writes.
    [<Literal>]
    let CurrentSchemaVersion = 1

    /// Known zoo model names.
    let zooModels =
        [
            "convnet"
            "mlp"
            "vgg9"
            "vgg11"
            "resnet18"
            "resnet19"
            "ms-resnet18"
            "sew-resnet18"
        ]

    /// Known dataset names.
    let datasets =
        [
            "mnist"
            "fashion-mnist"
            "synthetic"
            "event-mnist"
            "event-fashion-mnist"
            "event-synthetic"
        ]

    /// Whether a dataset name is an emulated event dataset.
    let isEventDataset (name: string) = name.StartsWith "event-"

    /// Known loss term kinds.
    let termKinds =
        [
            "ce"
            "twce"
            "kd"
            "wsld"
            "temporal"
            "twkl"
            "twsd"
            "membrane"
            "spikes"
            "feature"
            "bkd"
        ]

    type private Node = { E: JsonElement; P: string }

    let private fail (path: string) (message: string) =
        raise (SpecFileException(path, message))

    let private listText (xs: string seq) = String.Join(", ", xs)

    let private kindName (k: JsonValueKind) =
        match k with
        | JsonValueKind.Object -> "an object"
        | JsonValueKind.Array -> "an array"
        | JsonValueKind.String -> "a string"
        | JsonValueKind.Number -> "a number"
        | JsonValueKind.True
        | JsonValueKind.False -> "a boolean"
        | JsonValueKind.Null -> "null"
        | _ -> "nothing"

    let private expect (n: Node) (kind: JsonValueKind) (what: string) =
        let ok =
            n.E.ValueKind = kind
            || (kind = JsonValueKind.True && n.E.ValueKind = JsonValueKind.False)

        if not ok then
            fail n.P (sprintf "expected %s, found %s. Fix: give %s." what (kindName n.E.ValueKind) what)

    /// Checks n is an object whose fields are all known.
    let private fields (n: Node) (known: string list) =
        expect n JsonValueKind.Object "an object"

        for p in n.E.EnumerateObject() do
            if not (List.contains p.Name known) then
                fail
                    (n.P + "." + p.Name)
                    (sprintf
                        "unknown field '%s'. Fix: correct the spelling or remove it; known fields here: %s."
                        p.Name
                        (listText known))

    let private tryField (n: Node) (key: string) =
        match n.E.TryGetProperty key with
        | true, v when v.ValueKind <> JsonValueKind.Null -> Some { E = v; P = n.P + "." + key }
        | _ -> None

    let private required (n: Node) (key: string) (what: string) =
        match tryField n key with
        | Some v -> v
        | None -> fail (n.P + "." + key) (sprintf "is missing. Fix: add \"%s\": %s." key what)

    let private str (n: Node) =
        expect n JsonValueKind.String "a string"
        n.E.GetString()

    let private num (n: Node) =
        expect n JsonValueKind.Number "a number"
        n.E.GetDouble()

    let private integer (n: Node) =
        expect n JsonValueKind.Number "an integer"

        match n.E.TryGetInt32() with
        | true, v -> v
        | _ -> fail n.P (sprintf "%s is not an integer. Fix: give a whole number." (n.E.GetRawText()))

    let private boolean (n: Node) =
        expect n JsonValueKind.True "true or false"
        n.E.GetBoolean()

    let private items (n: Node) =
        expect n JsonValueKind.Array "an array"

        n.E.EnumerateArray()
        |> Seq.mapi (fun i e -> { E = e; P = sprintf "%s[%d]" n.P i })
        |> List.ofSeq

    let private optWith (f: Node -> 'a) (n: Node) key (d: 'a) =
        tryField n key |> Option.map f |> Option.defaultValue d

    /// An optional field whose null turns the setting off (None); absent keeps d.
    let private optNullable (f: Node -> 'a) (n: Node) (key: string) (d: 'a option) =
        match n.E.TryGetProperty key with
        | true, v when v.ValueKind = JsonValueKind.Null -> None
        | true, v -> Some(f { E = v; P = n.P + "." + key })
        | _ -> d

    let private choice (n: Node) (known: (string * 'a) list) =
        let s = str n

        match
            known
            |> List.tryFind (fun (k, _) -> String.Equals(k, s, StringComparison.OrdinalIgnoreCase))
        with
        | Some(_, v) -> v
        | None -> fail n.P (sprintf "unknown value '%s'. Fix: use one of %s." s (listText (known |> List.map fst)))

    let private positiveInt (n: Node) (what: string) =
        let v = integer n

        if v < 1 then
            fail n.P (sprintf "%s is %d. Fix: give %s of at least 1." what v what)

        v

    let private nonNegInt (n: Node) (what: string) =
        let v = integer n

        if v < 0 then
            fail n.P (sprintf "%s is %d. Fix: give %s of at least 0." what v what)

        v

    let private positive (n: Node) (what: string) =
        let v = num n

        if not (v > 0.0 && Double.IsFinite v) then
            fail n.P (sprintf "%s is %g. Fix: give a finite %s > 0." what v what)

        float32 v

    let private nonNegative (n: Node) (what: string) =
        let v = num n

        if not (v >= 0.0 && Double.IsFinite v) then
            fail
                n.P
                (sprintf
                    "%s is %g; it must be finite and >= 0. Fix: give a value >= 0 (drop a term or set a component to 0 rather than weighting it negatively)."
                    what
                    v)

        float32 v

    let private probability (n: Node) (what: string) =
        let v = num n

        if not (v >= 0.0 && v < 1.0) then
            fail n.P (sprintf "%s is %g. Fix: give a probability in [0, 1)." what v)

        float32 v

    // ---- quantization ------------------------------------------------------------------

    let private bitsValue (n: Node) =
        match n.E.ValueKind with
        | JsonValueKind.String when String.Equals(n.E.GetString(), "fp", StringComparison.OrdinalIgnoreCase) ->
            Bits.FullPrecision
        | JsonValueKind.Number ->
            let b = integer n

            if b = 0 then
                Bits.FullPrecision
            elif b < 1 || b > 16 then
                fail n.P (sprintf "%d bits. Fix: give 1 to 16, or \"fp\" for full precision." b)
            else
                Bits.Fixed b
        | _ ->
            fail n.P (sprintf "expected a bit width, found %s. Fix: give 1 to 16, or \"fp\"." (kindName n.E.ValueKind))

    let private quantFields =
        [
            "preset"
            "bits"
            "weightBits"
            "membraneBits"
            "biasBits"
            "foldBatchNorm"
            "keepFirstLayerFullPrecision"
            "shareMembraneScale"
            "fullPrecisionLayers"
            "perLayer"
            "calibrate"
        ]

    let private quantization (n: Node) : QuantizationSection =
        fields n quantFields

        let preset =
            optWith (fun p -> choice p [ "mint", "mint"; "integer", "integer"; "none", "none" ]) n "preset" "mint"

        let bits = tryField n "bits" |> Option.map bitsValue

        let explicitBits =
            [ "weightBits"; "membraneBits"; "biasBits" ]
            |> List.forall (fun k -> (tryField n k).IsSome)

        let b =
            match preset, bits with
            | "none", _ -> 0
            | _, Some(Bits.Fixed b) -> b
            | _, Some Bits.FullPrecision -> 0
            | _, None when explicitBits -> 8
            | _, None ->
                fail
                    (n.P + ".bits")
                    "is missing. Fix: add \"bits\": 4 (weights, bias and membranes), or give weightBits, membraneBits and biasBits."

        let baseCfg =
            match preset with
            | "none" -> QuantConfig.FullPrecision
            | "integer" -> QuantConfig.Integer b
            | _ when b = 0 ->
                { QuantConfig.Mint 8 with
                    Weight = Bits.FullPrecision
                    Membrane = Bits.FullPrecision
                    Bias = Bits.FullPrecision
                }
            | _ -> QuantConfig.Mint b

        let perLayer =
            match tryField n "perLayer" with
            | None -> Map.empty
            | Some pl ->
                expect pl JsonValueKind.Object "an object of layer name → bit widths"

                [
                    for p in pl.E.EnumerateObject() do
                        let ln = { E = p.Value; P = pl.P + "." + p.Name }
                        fields ln [ "weightBits"; "biasBits"; "membraneBits" ]
                        let get k = optWith bitsValue ln k baseCfg.Weight

                        p.Name,
                        {
                            Weight = get "weightBits"
                            Bias = optWith bitsValue ln "biasBits" baseCfg.Bias
                            Membrane = optWith bitsValue ln "membraneBits" baseCfg.Membrane
                        }
                ]
                |> Map.ofList

        let cfg =
            { baseCfg with
                Weight = optWith bitsValue n "weightBits" baseCfg.Weight
                Membrane = optWith bitsValue n "membraneBits" baseCfg.Membrane
                Bias = optWith bitsValue n "biasBits" baseCfg.Bias
                FoldBatchNorm = optWith boolean n "foldBatchNorm" baseCfg.FoldBatchNorm
                KeepFirstLayerFullPrecision =
                    optWith boolean n "keepFirstLayerFullPrecision" baseCfg.KeepFirstLayerFullPrecision
                ShareMembraneScale = optWith boolean n "shareMembraneScale" baseCfg.ShareMembraneScale
                FullPrecisionLayers =
                    optWith (fun a -> items a |> List.map str |> Set.ofList) n "fullPrecisionLayers" Set.empty
                PerLayer = perLayer
            }

        {
            Config = cfg
            Calibrate = optWith boolean n "calibrate" true
        }

    let private parseRoot (json: string) =
        let options =
            JsonDocumentOptions(CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true)

        try
            JsonDocument.Parse(json, options)
        with :? JsonException as e ->
            let line = e.LineNumber |> Option.ofNullable |> Option.map (fun l -> l + 1L)
            let col = e.BytePositionInLine |> Option.ofNullable |> Option.map (fun c -> c + 1L)

            fail
                "$"
                (sprintf
                    "not valid JSON%s: %s Fix: correct the syntax there (comments and trailing commas are allowed)."
                    (match line, col with
                     | Some l, Some c -> sprintf " at line %d, column %d" l c
                     | _ -> "")
                    e.Message)

    /// A quantization section from its JSON text (the form <c>quantizationJson</c> writes and the
    /// "quantization" field of a spec file).
    let parseQuantization (json: string) : QuantizationSection =
        use doc = parseRoot json
        quantization { E = doc.RootElement; P = "$" }

    /// The JSON form of a quantization configuration, every field explicit (stored in quantized
    /// checkpoints so that they load back).
    let quantizationJson (cfg: QuantConfig) (calibrate: bool) =
        use ms = new MemoryStream()

        do
            use w = new Utf8JsonWriter(ms)

            let bits (key: string) (b: Bits) =
                match b with
                | Bits.Fixed n -> w.WriteNumber(key, n)
                | Bits.FullPrecision -> w.WriteString(key, "fp")

            w.WriteStartObject()

            w.WriteString(
                "preset",
                match cfg.MembraneScheme with
                | MembraneScheme.Uniform -> "integer"
                | MembraneScheme.Mint -> "mint"
            )

            bits "weightBits" cfg.Weight
            bits "membraneBits" cfg.Membrane
            bits "biasBits" cfg.Bias
            w.WriteBoolean("foldBatchNorm", cfg.FoldBatchNorm)
            w.WriteBoolean("keepFirstLayerFullPrecision", cfg.KeepFirstLayerFullPrecision)
            w.WriteBoolean("shareMembraneScale", cfg.ShareMembraneScale)
            w.WriteStartArray "fullPrecisionLayers"

            for l in cfg.FullPrecisionLayers do
                w.WriteStringValue l

            w.WriteEndArray()
            w.WriteStartObject "perLayer"

            for KeyValue(name, lq) in cfg.PerLayer do
                w.WriteStartObject name
                bits "weightBits" lq.Weight
                bits "biasBits" lq.Bias
                bits "membraneBits" lq.Membrane
                w.WriteEndObject()

            w.WriteEndObject()
            w.WriteBoolean("calibrate", calibrate)
            w.WriteEndObject()

        Encoding.UTF8.GetString(ms.ToArray())

    // ---- sections -------------------------------------------------------------------

    let private dataset (n: Node) =
        fields n [ "name"; "train"; "validation"; "test"; "directory"; "frames" ]

        let name =
            choice (required n "name" (sprintf "one of %s" (listText datasets))) (datasets |> List.map (fun d -> d, d))

        let frames =
            match tryField n "frames" with
            | Some f when not (isEventDataset name) ->
                fail
                    f.P
                    (sprintf
                        "is given for \"%s\", whose samples are images. Fix: drop it, or use an event dataset (event-mnist, event-fashion-mnist, event-synthetic)."
                        name)
            | Some f ->
                let t = positiveInt f "the frame count"

                if t > 256 then
                    fail f.P (sprintf "is %d. Fix: give at most 256 frames." t)

                t
            | None -> if isEventDataset name then 4 else 0

        let train =
            optWith (fun v -> positiveInt v "the training image count") n "train" 2000

        let validation =
            optWith (fun v -> positiveInt v "the validation image count") n "validation" 200

        if validation >= train then
            fail
                (n.P + ".validation")
                (sprintf
                    "%d validation images are held out of %d training images, leaving none to train on. Fix: give fewer than %d."
                    validation
                    train
                    train)

        {
            Name = name
            Train = train
            Validation = validation
            Test = optWith (fun v -> positiveInt v "the test image count") n "test" 500
            Directory = tryField n "directory" |> Option.map str
            Frames = frames
        }

    let private stepsOf (n: Node) =
        let one (v: Node) =
            let t = integer v

            if t < 1 || t > 256 then
                fail v.P (sprintf "T = %d timesteps. Fix: give a whole number of timesteps from 1 to 256." t)

            t

        match n.E.ValueKind with
        | JsonValueKind.Array ->
            let ts = items n |> List.map one

            if ts.IsEmpty then
                fail n.P "is an empty list. Fix: give at least one T, e.g. [1, 2, 3, 4] or 4."

            if List.distinct ts <> ts then
                fail n.P (sprintf "lists a T twice (%s). Fix: give each T once." (listText (ts |> List.map string)))

            ts
        | _ -> [ one n ]

    let private modelFields =
        [
            "zoo"
            "width"
            "hidden"
            "steps"
            "ann"
            "stackFrames"
            "seed"
            "dropout"
            "neuron"
            "spikingOutput"
            "mapTap"
            "quantization"
        ]

    let private model (n: Node) (defaultSeed: int) =
        fields n modelFields

        let width = optWith (fun v -> positive v "the width") n "width" 1.0f

        let hidden =
            optWith (fun v -> items v |> List.map (fun h -> positiveInt h "a hidden size")) n "hidden" [ 128 ]

        {
            Zoo =
                choice
                    (required n "zoo" (sprintf "one of %s" (listText zooModels)))
                    (zooModels |> List.map (fun z -> z, z))
            Width = width
            Hidden = hidden
            Steps = optWith stepsOf n "steps" [ 4 ]
            Ann = optWith boolean n "ann" false
            StackFrames = optWith boolean n "stackFrames" false
            Seed = optWith integer n "seed" defaultSeed
            Dropout = optWith (fun v -> probability v "the dropout") n "dropout" 0.0f
            Neuron =
                tryField n "neuron"
                |> Option.map (fun v ->
                    choice
                        v
                        [
                            "lif", Neuron.lif
                            "mint", Neuron.mint
                            "if", Neuron.ifNeuron
                            "leaky", Neuron.leaky
                        ])
            SpikingOutput = tryField n "spikingOutput" |> Option.map str
            MapTap = tryField n "mapTap" |> Option.map str
            Quantization = tryField n "quantization" |> Option.map quantization
        }

    let private trainingFields =
        [
            "epochs"
            "batchSize"
            "optimizer"
            "momentum"
            "learningRate"
            "weightDecay"
            "schedule"
            "minLr"
            "stepEvery"
            "milestones"
            "gamma"
            "warmupEpochs"
            "clipNorm"
            "seed"
            "studentOrder"
            "teacherCache"
            "truncation"
            "checkpointActivations"
        ]

    /// The defaults of the training section: 1 epoch of batches of 32, Adam at 5e-3 with a cosine
    /// schedule, no weight decay, gradient clipping at 5, seed 0 (the demo's settings).
    let defaultTraining =
        {
            Epochs = 1
            BatchSize = 32
            Optimizer = OptimizerKind.AdamDefault
            LearningRate = 5e-3f
            WeightDecay = 0.0f
            Schedule = LrSchedule.Cosine 0.0f
            ClipNorm = Some 5.0f
            Seed = 0
            StudentOrder = StudentOrder.Interleaved
            TeacherCache = TeacherCacheSetting.Off
            Truncation = None
            CheckpointActivations = false
        }

    let private training (n: Node) (b: TrainingSection) =
        fields n trainingFields

        let momentum =
            optWith (fun v -> float32 (probability v "the momentum")) n "momentum" 0.9f

        let optimizer =
            match tryField n "optimizer" with
            | None -> b.Optimizer
            | Some o ->
                choice
                    o
                    [
                        "sgd", OptimizerKind.Sgd(momentum, false)
                        "nesterov", OptimizerKind.Sgd(momentum, true)
                        "adam", OptimizerKind.AdamDefault
                        "adamw", OptimizerKind.AdamWDefault
                    ]

        let gamma = optWith (fun v -> positive v "gamma") n "gamma" 0.1f
        let minLr = optWith (fun v -> nonNegative v "minLr") n "minLr" 0.0f

        let schedule =
            match tryField n "schedule" with
            | None ->
                match b.Schedule with
                | LrSchedule.Cosine _ when (tryField n "minLr").IsSome -> LrSchedule.Cosine minLr
                | s -> s
            | Some s ->
                match
                    choice
                        s
                        [
                            "cosine", "cosine"
                            "constant", "constant"
                            "step", "step"
                            "multistep", "multistep"
                        ]
                with
                | "constant" -> LrSchedule.Constant
                | "step" ->
                    LrSchedule.Step(
                        integer (required n "stepEvery" "the epochs between decays, e.g. 30") |> max 1,
                        gamma
                    )
                | "multistep" ->
                    LrSchedule.MultiStep(
                        required n "milestones" "epochs at which the rate decays, e.g. [30, 60]"
                        |> items
                        |> List.map (fun m -> nonNegInt m "a milestone"),
                        gamma
                    )
                | _ -> LrSchedule.Cosine minLr

        let schedule =
            match tryField n "warmupEpochs" with
            | Some w ->
                let e = float (nonNegative w "warmupEpochs")
                if e > 0.0 then LrSchedule.Warmup(e, schedule) else schedule
            | None -> schedule

        {
            Epochs = optWith (fun v -> positiveInt v "the epoch count") n "epochs" b.Epochs
            BatchSize = optWith (fun v -> positiveInt v "the batch size") n "batchSize" b.BatchSize
            Optimizer = optimizer
            LearningRate = optWith (fun v -> positive v "the learning rate") n "learningRate" b.LearningRate
            WeightDecay = optWith (fun v -> nonNegative v "the weight decay") n "weightDecay" b.WeightDecay
            Schedule = schedule
            ClipNorm = optNullable (fun v -> positive v "clipNorm") n "clipNorm" b.ClipNorm
            Seed = optWith integer n "seed" b.Seed
            StudentOrder =
                optWith
                    (fun v ->
                        choice
                            v
                            [
                                "interleaved", StudentOrder.Interleaved
                                "sequential", StudentOrder.Sequential
                            ])
                    n
                    "studentOrder"
                    b.StudentOrder
            TeacherCache =
                optWith
                    (fun v ->
                        choice
                            v
                            [
                                "off", TeacherCacheSetting.Off
                                "memory", TeacherCacheSetting.Memory CachePrecision.Float32
                                "memory-f16", TeacherCacheSetting.Memory CachePrecision.Float16
                                "disk", TeacherCacheSetting.Disk CachePrecision.Float32
                                "disk-f16", TeacherCacheSetting.Disk CachePrecision.Float16
                            ])
                    n
                    "teacherCache"
                    b.TeacherCache
            Truncation =
                optNullable (fun v -> positiveInt v "the truncated-BPTT window (steps)") n "truncation" b.Truncation
            CheckpointActivations = optWith boolean n "checkpointActivations" b.CheckpointActivations
        }

    let private teacher (n: Node) (baseTraining: TrainingSection) =
        fields n [ "checkpoint"; "model"; "training" ]

        match tryField n "checkpoint", tryField n "model" with
        | Some c, None ->
            if (tryField n "training").IsSome then
                fail
                    (n.P + ".training")
                    "applies only to a teacher trained first. Fix: remove it, or replace \"checkpoint\" by \"model\"."

            TeacherSection.Checkpoint(str c)
        | None, Some m ->
            let ms = model m 0

            if ms.Steps.Length > 1 then
                fail
                    (m.P + ".steps")
                    "lists several T for the teacher. Fix: give the teacher one T (e.g. 4); several T belong to the student."

            TeacherSection.Train(ms, optWith (fun t -> training t baseTraining) n "training" baseTraining)
        | Some _, Some _ ->
            fail
                n.P
                "gives both \"checkpoint\" and \"model\". Fix: keep \"checkpoint\" to load a trained teacher, or \"model\" to train one first."
        | None, None ->
            fail
                n.P
                "gives neither \"checkpoint\" nor \"model\". Fix: add \"checkpoint\": \"path/teacher.safetensors\" or \"model\": {\"zoo\": \"convnet\"}."

    let private termFields (kind: string) =
        let common = [ "kind"; "weight" ]

        common
        @ (match kind with
           | "ce" -> [ "labelSmoothing"; "readout" ]
           | "kd"
           | "wsld"
           | "twkl" -> [ "tau" ]
           | "twsd" -> [ "tau"; "selfTarget" ]
           | "temporal" -> [ "alpha"; "beta"; "tau"; "selfTarget" ]
           | "membrane" -> [ "probes"; "granularity"; "alignment" ]
           | "spikes" ->
               [
                   "probe"
                   "kl"
                   "l1"
                   "l2"
                   "slidingL1"
                   "slidingL2"
                   "ce"
                   "window"
                   "temperature"
                   "reading"
               ]
           | "feature" -> [ "teacherTap"; "studentTap"; "seed" ]
           | "bkd" -> [ "teacherTap"; "studentTap"; "lambda"; "alpha"; "clip"; "seed" ]
           | _ -> [])

    let private selfTarget (n: Node) key =
        optWith (fun v -> choice v [ "masked", CorrectnessMasked; "ensemble", EnsembleMean ]) n key CorrectnessMasked

    let private term (n: Node) : TermSection =
        expect n JsonValueKind.Object "an object with a \"kind\""
        let kindNode = required n "kind" (sprintf "one of %s" (listText termKinds))
        let kind = (str kindNode).ToLowerInvariant()

        if not (List.contains kind termKinds) then
            fail
                kindNode.P
                (sprintf
                    "unknown loss term '%s'. Fix: use one of the known terms: %s."
                    (str kindNode)
                    (listText termKinds))

        fields n (termFields kind)
        let weight = optWith (fun v -> nonNegative v "the weight") n "weight" 1.0f

        let tau d =
            optWith (fun v -> positive v "tau") n "tau" d

        let w k d =
            optWith (fun v -> nonNegative v k) n k d

        match kind with
        | "ce" ->
            TermSection.Ce(
                weight,
                optWith (fun v -> probability v "labelSmoothing") n "labelSmoothing" 0.0f,
                optWith
                    (fun v -> choice v [ "mean", TimeReadout.Mean; "counts", TimeReadout.Count ])
                    n
                    "readout"
                    TimeReadout.Mean
            )
        | "twce" -> TermSection.Twce weight
        | "kd" -> TermSection.Kd(weight, tau 4.0f)
        | "wsld" -> TermSection.Wsld(weight, tau 2.0f)
        | "twkl" -> TermSection.Twkl(weight, tau 3.0f)
        | "twsd" -> TermSection.Twsd(weight, tau 3.0f, selfTarget n "selfTarget")
        | "temporal" ->
            TermSection.Temporal(
                weight,
                {
                    Alpha = w "alpha" TemporalKd.defaults.Alpha
                    Beta = w "beta" TemporalKd.defaults.Beta
                    Tau = tau TemporalKd.defaults.Tau
                    Target = selfTarget n "selfTarget"
                }
            )
        | "membrane" ->
            let probes =
                match tryField n "probes", tryField n "granularity" with
                | Some _, Some g ->
                    fail g.P "is given with \"probes\". Fix: keep one: explicit \"probes\" or a \"granularity\"."
                | Some p, None ->
                    let names = items p |> List.map str

                    if names.IsEmpty then
                        fail p.P "is empty. Fix: name at least one spiking population, or use \"granularity\"."

                    MembraneProbes.Names names
                | None, Some g ->
                    MembraneProbes.Granularity(
                        choice
                            g
                            [
                                "conv-wise", ProbeGranularity.ConvWise
                                "block-wise", ProbeGranularity.BlockWise
                                "stage-wise", ProbeGranularity.StageWise
                            ]
                    )
                | None, None -> MembraneProbes.Granularity ProbeGranularity.ConvWise

            let alignment =
                optWith
                    (fun v -> choice v [ "prefix", Prefix; "pooled", PooledBins; "mean", TimeMean ])
                    n
                    "alignment"
                    Prefix

            TermSection.Membrane(weight, probes, alignment)
        | "spikes" ->
            let d = SpikeKd.defaults

            TermSection.Spikes(
                weight,
                str (required n "probe" "the spiking population compared, e.g. \"out\""),
                {
                    Kl = w "kl" d.Kl
                    L1 = w "l1" d.L1
                    L2 = w "l2" d.L2
                    SlidingL1 = w "slidingL1" d.SlidingL1
                    SlidingL2 = w "slidingL2" d.SlidingL2
                    Ce = w "ce" d.Ce
                    Tau = optWith (fun v -> positive v "the temperature") n "temperature" d.Tau
                    Delta = optWith (fun v -> positiveInt v "the window") n "window" d.Delta
                    Reading =
                        optWith (fun v -> choice v [ "raw", RawWindows; "counts", WindowCounts ]) n "reading" d.Reading
                }
            )
        | "feature" ->
            TermSection.Feature(
                weight,
                optWith str n "teacherTap" Zoo.featureTap,
                optWith str n "studentTap" Zoo.featureTap,
                optWith integer n "seed" 0
            )
        | _ ->
            let d = BlurredKd.defaults

            TermSection.Bkd(
                weight,
                optWith str n "teacherTap" Zoo.featureMapTap,
                optWith str n "studentTap" Zoo.featureMapTap,
                {
                    Lambda = optWith (fun v -> probability v "lambda") n "lambda" d.Lambda
                    Alpha = w "alpha" d.Alpha
                    ClipRescale = optWith boolean n "clip" d.ClipRescale
                },
                optWith integer n "seed" 0
            )

    let private output (n: Node) (name: string) =
        fields n [ "directory"; "report" ]

        {
            Directory = optWith str n "directory" (Path.Combine("runs", name))
            Report = optWith boolean n "report" true
        }

    let private rootFields =
        [
            "$schema"
            "schemaVersion"
            "name"
            "description"
            "dataset"
            "teacher"
            "assistants"
            "student"
            "terms"
            "training"
            "output"
        ]

    /// Reads a spec file's text. Raises SpecFileException at the JSON path of the first problem
    /// (syntax, an unknown field or value, a missing field, a value out of range, a term that reads
    /// the teacher without one).
    let parse (json: string) : SpecFile =
        use doc = parseRoot json
        let root = { E = doc.RootElement; P = "$" }
        fields root rootFields
        let version = integer (required root "schemaVersion" (string CurrentSchemaVersion))

        if version <> CurrentSchemaVersion then
            fail
                "$.schemaVersion"
                (sprintf
                    "is %d; this SnnSpec reads schema version %d. Fix: set \"schemaVersion\": %d (see docs/spec-format.md for the differences)."
                    version
                    CurrentSchemaVersion
                    CurrentSchemaVersion)

        let name = optWith str root "name" "run"

        if name.IndexOfAny(Path.GetInvalidFileNameChars()) >= 0 || name = "" then
            fail "$.name" (sprintf "'%s' cannot name a directory. Fix: use letters, digits, '-' and '_'." name)

        let ds = dataset (required root "dataset" "{\"name\": \"mnist\"}")

        let tr =
            optWith (fun t -> training t defaultTraining) root "training" defaultTraining

        let teacherSection = tryField root "teacher" |> Option.map (fun t -> teacher t tr)

        let assistants =
            optWith (fun a -> items a |> List.map (fun m -> model m 0)) root "assistants" []

        let studentNode = required root "student" "{\"zoo\": \"convnet\", \"steps\": 4}"
        let student = model studentNode 1

        if student.Ann then
            fail (studentNode.P + ".ann") "is true, but students train as SNNs. Fix: remove \"ann\" from the student."

        let checkStacking (path: string) (m: ModelSection) =
            if m.StackFrames && not m.Ann then
                fail
                    (path + ".stackFrames")
                    "is true, but only an ANN stacks frames (an SNN reads one frame per step). Fix: set \"ann\": true, or remove \"stackFrames\"."

            if m.StackFrames && not ds.IsSequence then
                fail
                    (path + ".stackFrames")
                    (sprintf
                        "is true, but %s samples are images, not frame sequences. Fix: use an event dataset (event-mnist, event-fashion-mnist, event-synthetic), or remove \"stackFrames\"."
                        ds.Name)

        checkStacking studentNode.P student

        assistants
        |> List.iteri (fun i a -> checkStacking (sprintf "$.assistants[%d]" i) a)

        match teacherSection with
        | Some(TeacherSection.Train(m, _)) -> checkStacking "$.teacher.model" m
        | _ -> ()

        // Event samples are sequences of ds.Frames frames: every SNN runs at T = Frames.
        if ds.IsSequence then
            let check (path: string) (m: ModelSection) =
                if not m.Ann then
                    match m.Steps |> List.tryFindIndex (fun t -> t <> ds.Frames) with
                    | Some k ->
                        fail
                            (if m.Steps.Length > 1 then
                                 sprintf "%s.steps[%d]" path k
                             else
                                 path + ".steps")
                            (sprintf
                                "is %d, but %s samples are sequences of %d frames, which an SNN reads one per step. Fix: set \"steps\": %d, or \"dataset\": {\"frames\": %d}."
                                m.Steps[k]
                                ds.Name
                                ds.Frames
                                ds.Frames
                                m.Steps[k])
                    | None -> ()

            check studentNode.P student
            assistants |> List.iteri (fun i a -> check (sprintf "$.assistants[%d]" i) a)

            match teacherSection with
            | Some(TeacherSection.Train(m, _)) -> check "$.teacher.model" m
            | _ -> ()

        for i, a in List.indexed assistants do
            if a.Steps.Length > 1 then
                fail
                    (sprintf "$.assistants[%d].steps" i)
                    "lists several T for an assistant. Fix: give each assistant one T; several T belong to the student."

        let termsNode = required root "terms" "[{\"kind\": \"ce\"}]"
        let termNodes = items termsNode

        if termNodes.IsEmpty then
            fail termsNode.P "is empty. Fix: add at least one loss term, e.g. {\"kind\": \"ce\"}."

        let terms = termNodes |> List.map term

        if teacherSection.IsNone then
            match terms |> List.indexed |> List.filter (fun (_, t) -> t.ReadsTeacher) with
            | [] -> ()
            | reading ->
                fail
                    "$.teacher"
                    (sprintf
                        "is missing, but %s read the teacher. Fix: add \"teacher\": {\"checkpoint\": \"teacher.safetensors\"} or {\"model\": {\"zoo\": \"convnet\"}}, or keep only ce, twce and twsd terms."
                        (listText (reading |> List.map (fun (i, t) -> sprintf "$.terms[%d] (%s)" i t.Kind))))

        if not assistants.IsEmpty && teacherSection.IsNone then
            fail "$.assistants" "need a teacher to distil from. Fix: add \"teacher\"."

        {
            SchemaVersion = version
            Name = name
            Dataset = ds
            Teacher = teacherSection
            Assistants = assistants
            Student = student
            Terms = terms
            Training = tr
            Output =
                optWith
                    (fun o -> output o name)
                    root
                    "output"
                    {
                        Directory = Path.Combine("runs", name)
                        Report = true
                    }
        }

    /// <c>parse</c> as a Result.
    let tryParse (json: string) : Result<SpecFile, SpecFileException> =
        try
            Ok(parse json)
        with :? SpecFileException as e ->
            Error e

    /// Reads and parses a spec file; the message of a problem names the file.
    let load (path: string) : SpecFile =
        if not (File.Exists path) then
            raise (
                SpecFileException(
                    "$",
                    sprintf
                        "the spec file %s does not exist. Fix: check the path (relative paths start at the working directory)."
                        path
                )
            )

        try
            parse (File.ReadAllText path)
        with :? SpecFileException as e ->
            raise (SpecFileException(e.JsonPath, sprintf "%s: %s" path (e.Message.Substring(e.JsonPath.Length + 2))))

    // ---- building ---------------------------------------------------------------------

    /// The zoo configuration of a dataset (all known datasets are 1×28×28, 10 classes).
    let zooConfig (ds: DatasetSection) (m: ModelSection) =
        { ZooConfig.Mnist with
            Width = m.Width
            Dropout = m.Dropout
            Neuron = m.Neuron |> Option.defaultValue ZooConfig.Mnist.Neuron
            InputChannels =
                (if m.StackFrames then 2 * ds.Frames
                 elif ds.IsSequence then 2
                 else 1)
            InputSize =
                (if ds.IsSequence then
                     28 + 2 * Emulation.defaults.Margin
                 else
                     28)
        }

    /// The model section's architecture: the zoo model with the optional map tap and spiking output.
    let architecture (ds: DatasetSection) (m: ModelSection) : Architecture =
        let cfg = zooConfig ds m

        let arch =
            match m.Zoo with
            | "mlp" -> Zoo.mlp cfg m.Hidden
            | "vgg9" -> Zoo.vgg9 cfg
            | "vgg11" -> Zoo.vgg11 cfg
            | "resnet18" -> Zoo.resnet18 cfg
            | "resnet19" -> Zoo.resnet19 cfg
            | "ms-resnet18" -> Zoo.msResnet18 cfg
            | "sew-resnet18" -> Zoo.sewResnet18 cfg ResidualKind.SewAdd
            | _ -> Zoo.convNet cfg

        let withTap =
            match m.MapTap with
            | None -> arch.Layers
            | Some tap ->
                let rec go placed (layers: LayerSpec list) =
                    match layers with
                    | (AdaptiveAvgPool _ | Flatten as l) :: rest when not placed -> Tap tap :: l :: go true rest
                    | l :: rest -> l :: go placed rest
                    | [] -> []

                go false arch.Layers

        let layers =
            match m.SpikingOutput with
            | None -> withTap
            | Some name -> withTap @ [ Spiking(name, cfg.Neuron) ]

        let arch = { arch with Layers = layers }

        if m.StackFrames then
            Architecture.stackFrames ds.Frames arch
        else
            arch

    /// A fresh model of the section at T = the largest of its steps (quantized when configured; the
    /// scales calibrated on <c>calibration</c> when given and asked for).
    let initModel (ds: DatasetSection) (m: ModelSection) (calibration: Tensor option) =
        let mode =
            if m.Ann then
                ExecutionMode.Ann
            else
                ExecutionMode.Snn(List.max m.Steps)

        let model = Model.init m.Seed mode (architecture ds m)

        match m.Quantization with
        | None -> model
        | Some q ->
            let qm = Model.quantize q.Config model

            match calibration with
            | Some x when q.Calibrate && (Model.quantPlan qm).Weights.Count > 0 -> Model.calibrateScales x qm
            | _ -> qm

    /// The trainer settings of a training section (progress, epoch callback and cancellation left
    /// at their defaults).
    let trainConfig (t: TrainingSection) : TrainConfig =
        { TrainConfig.Default with
            Epochs = t.Epochs
            Optimizer = t.Optimizer
            LearningRate = t.LearningRate
            WeightDecay = t.WeightDecay
            Schedule = t.Schedule
            ClipNorm = t.ClipNorm
            Seed = t.Seed
            StudentOrder = t.StudentOrder
            Truncation = t.Truncation
            CheckpointActivations = t.CheckpointActivations
            TeacherCache =
                match t.TeacherCache with
                | TeacherCacheSetting.Memory p -> TeacherCacheMode.Build p
                | TeacherCacheSetting.Off
                | TeacherCacheSetting.Disk _ -> TeacherCacheMode.Off
        }

    /// Shapes of the named taps of a model on a 2-sample zero batch.
    let private tapShapes (m: Model) (taps: string list) =
        Diff.noGrad (fun () ->
            use _ = TensorScope.Begin()
            let x = Tensor.zeros (Architecture.batchShape 2 m.Architecture)

            let out =
                Model.forward
                    { ForwardContext.Eval with
                        Probes =
                            { ProbeRequest.None with
                                Taps = Set.ofList taps
                            }
                    }
                    m
                    x

            out.Taps |> Map.map (fun _ t -> t.Shape))

    let private tapNames (arch: Architecture) =
        Architecture.layers arch
        |> List.choose (fun (n, l) ->
            match l with
            | Tap _ -> Some n
            | _ -> None)

    /// [T, B, C, …] → C, checking the tap exists on that side.
    let private channels (path: string) (side: string) (m: Model) (tap: string) =
        let known = tapNames m.Architecture

        if not (List.contains tap known) then
            fail
                path
                (sprintf
                    "the %s has no tap '%s'; its taps: %s. Fix: name one of these, or add \"mapTap\": \"%s\" to the %s's model for its last feature map."
                    side
                    tap
                    (if known.IsEmpty then "(none)" else listText known)
                    tap
                    side)

        let s = (tapShapes m [ tap ])[tap]
        s, (if s.Length >= 3 then s[2] else 1)

    /// A spec term of a term section for a teacher/student pair; <c>path</c> locates the term.
    let private specTerm (path: string) (teacher: Model option) (student: Model) (t: TermSection) : SpecTerm =
        match t with
        | TermSection.Ce(w, eps, readout) -> SpecTerm.crossEntropyWith readout eps w
        | TermSection.Twce w -> SpecTerm.perStepCrossEntropy w
        | TermSection.Kd(w, tau) -> SpecTerm.logitKd tau w
        | TermSection.Wsld(w, tau) -> SpecTerm.wsld tau w
        | TermSection.Temporal(w, cfg) ->
            let st = SpecTerm.temporal cfg

            { st with
                Term = { st.Term with Weight = w }
            }
        | TermSection.Twkl(w, tau) -> SpecTerm.ofTerm [ TapUse.TeacherLogits ] (LossTerm.twkl tau w)
        | TermSection.Twsd(w, tau, target) -> SpecTerm.ofTerm [] (LossTerm.twsd target tau w)
        | TermSection.Membrane(w, probes, alignment) ->
            let names =
                match probes with
                | MembraneProbes.Names ns -> ns
                | MembraneProbes.Granularity g -> Probes.names g student.Architecture

            if names.IsEmpty then
                fail
                    (path + ".granularity")
                    "selects no spiking population of the student. Fix: name populations in \"probes\"."

            SpecTerm.membrane alignment names w
        | TermSection.Spikes(w, probe, cfg) ->
            let steps (m: Model) =
                match m.Mode with
                | ExecutionMode.Snn t -> t
                | ExecutionMode.Ann -> 1

            let shortest =
                List.min (steps student :: (teacher |> Option.map steps |> Option.toList))

            if cfg.Delta > shortest then
                fail
                    (path + ".window")
                    (sprintf
                        "is %d steps, longer than the %d-step runs it slides over. Fix: give a window of at most %d."
                        cfg.Delta
                        shortest
                        shortest)

            SpecTerm.spikes cfg probe w
        | TermSection.Feature(w, tt, stap, seed) ->
            let tm = teacher.Value
            let ts, ct = channels (path + ".teacherTap") "teacher" tm tt
            let ss, cs = channels (path + ".studentTap") "student" student stap
            let adapter = ts.Length = ss.Length && ts.Length >= 3 && ct <> cs

            let ps =
                if adapter then
                    FeatureKd.initAdapter seed cs ct
                else
                    Parameters.ofList []

            SpecTerm.feature ps tt stap w
        | TermSection.Bkd(w, tt, stap, cfg, seed) ->
            let tm = teacher.Value
            let _, ct = channels (path + ".teacherTap") "teacher" tm tt
            let ss, cs = channels (path + ".studentTap") "student" student stap

            if ss.Length <> 5 then
                fail
                    (path + ".studentTap")
                    (sprintf
                        "the student's tap '%s' records %s, not a feature map [T, B, C, h, w]; the blurred loss restores maps with 3×3 convolutions. Fix: name \"feature_map\" (every zoo conv model's last map, the default), or add \"mapTap\": \"map\" to the student's model and name \"map\" here."
                        stap
                        (Errors.showShape ss))

            let ps = BlurredKd.init seed cs ct
            SpecTerm.ofTerm [ TapUse.Feature(tt, stap, true) ] (LossTerm.blurred cfg ps (Rng.create seed) tt stap w)

    /// Loads the model of a checkpoint, quantized checkpoints included (Checkpoint.load: the plan
    /// in the "quant.*" buffers rebuilds the quantized twin the tensors belong to).
    let loadModel (path: string) : Checkpoint = Checkpoint.load path

    /// Saves a model atomically with its quantization (when quantized) and string metadata.
    let saveModel (path: string) (quantization: QuantConfig option) (metadata: Map<string, string>) (m: Model) =
        match Path.GetDirectoryName(Path.GetFullPath path) with
        | null -> ()
        | dir -> Directory.CreateDirectory dir |> ignore

        Checkpoint.save
            path
            { Checkpoint.ofModel m with
                Quantization = quantization |> Option.map (fun q -> quantizationJson q false)
                Metadata = metadata
            }

    /// Builds the models, the distillation spec and the trainer settings of a parsed file.
    /// <c>calibration</c> is a training batch for quantized models' scales (None leaves them at their
    /// Model.quantize values). A teacher checkpoint is loaded here; a teacher to train first is
    /// initialised (BuiltSpec.TeacherNeedsTraining). Raises SpecFileException at the JSON path of a
    /// problem found while building (a missing checkpoint, a tap the models lack, a spec that fails
    /// DistillationSpec.validate).
    let build (file: SpecFile) (calibration: Tensor option) : BuiltSpec =
        let ds = file.Dataset

        let teacher, needsTraining, teacherTraining =
            match file.Teacher with
            | None -> None, false, file.Training
            | Some(TeacherSection.Checkpoint path) ->
                if not (File.Exists path) then
                    fail
                        "$.teacher.checkpoint"
                        (sprintf
                            "the file %s does not exist. Fix: train a teacher first (snnspec train --model convnet --dataset %s --out %s), or give \"model\" to train it in this run."
                            path
                            ds.Name
                            (match Path.GetDirectoryName path with
                             | null
                             | "" -> "."
                             | d -> d))

                let c =
                    try
                        loadModel path
                    with :? SnnSpecException as e ->
                        fail "$.teacher.checkpoint" (sprintf "cannot be loaded: %s" e.Message)

                match c.Model.Mode, Architecture.stackedFrames c.Model.Architecture with
                | _, Some f when f <> ds.Frames ->
                    fail
                        "$.teacher.checkpoint"
                        (if ds.IsSequence then
                             sprintf
                                 "is a model that stacks %d frames, but %s samples are sequences of %d frames. Fix: set \"dataset\": {\"frames\": %d}, or use a teacher trained on %d frames."
                                 f
                                 ds.Name
                                 ds.Frames
                                 f
                                 ds.Frames
                         else
                             sprintf
                                 "is a model that stacks %d event frames, but %s samples are images. Fix: use the event dataset it was trained on, with \"frames\": %d."
                                 f
                                 ds.Name
                                 f)
                | ExecutionMode.Snn t, None when ds.IsSequence && t <> ds.Frames ->
                    fail
                        "$.teacher.checkpoint"
                        (sprintf
                            "is an SNN at T = %d, but %s samples are sequences of %d frames. Fix: set \"dataset\": {\"frames\": %d}, or use a teacher trained at T = %d."
                            t
                            ds.Name
                            ds.Frames
                            t
                            ds.Frames)
                | _ -> ()

                Some c.Model, false, file.Training
            | Some(TeacherSection.Train(m, t)) -> Some(initModel ds m calibration), true, t

        let assistants = file.Assistants |> List.map (fun a -> initModel ds a calibration)

        let baseStudent = initModel ds file.Student calibration

        let students =
            file.Student.Steps |> List.map (fun t -> Model.withSteps t baseStudent)

        // Terms are checked against the student's shortest run (spike windows must fit it).
        let shortestStudent = Model.withSteps (List.min file.Student.Steps) baseStudent

        match teacher with
        | Some tm when tm.Architecture.Classes <> baseStudent.Architecture.Classes ->
            fail
                "$.teacher"
                (sprintf
                    "the teacher predicts %d classes but the dataset has %d. Fix: use a teacher trained on %s."
                    tm.Architecture.Classes
                    baseStudent.Architecture.Classes
                    ds.Name)
        | _ -> ()

        let terms =
            file.Terms
            |> List.mapi (fun i t -> specTerm (sprintf "$.terms[%d]" i) teacher shortestStudent t)

        let spec =
            match teacher, assistants with
            | None, _ -> DistillationSpec.alone students terms
            | Some t, [] -> DistillationSpec.create t students terms
            | Some t, a -> DistillationSpec.chain t a students terms

        try
            DistillationSpec.validate spec
        with :? SnnSpecException as e ->
            fail "$.terms" (e.Message.Replace("DistillationSpec.validate: ", "the terms do not fit the models:"))

        {
            File = file
            Teacher = teacher
            TeacherNeedsTraining = needsTraining
            TeacherTraining = trainConfig teacherTraining
            Assistants = assistants
            Students = students
            Spec = spec
            Training = trainConfig file.Training
        }

    /// The spec with the teacher replaced (a teacher trained first, or reloaded).
    let withTeacher (teacher: Model) (b: BuiltSpec) : BuiltSpec =
        let spec =
            match b.Spec.Teacher with
            | TeacherSpec.Chain(_, a) ->
                { b.Spec with
                    Teacher = TeacherSpec.Chain(teacher, a)
                }
            | _ ->
                { b.Spec with
                    Teacher = TeacherSpec.Frozen teacher
                }

        { b with
            Teacher = Some teacher
            TeacherNeedsTraining = false
            Spec = spec
        }

    /// A learnable generated image set (1×28×28, 10 classes): class c is a bright 6×6 square at one of
    /// ten positions, on uniform noise; the same seed gives the same images.
    let synthetic (count: int) (seed: int) : ImageSet =
        let rng = Random(seed)
        let side = 28
        let pixels = Array.zeroCreate<byte>(count * side * side)
        let labels = Array.init count (fun _ -> rng.Next 10)

        for i in 0 .. count - 1 do
            let c = labels[i]
            let r0, c0 = 3 + 8 * (c / 4), 1 + 7 * (c % 4)

            for p in 0 .. side * side - 1 do
                pixels[i * side * side + p] <- byte (rng.Next 60)

            for r in r0 .. min (side - 1) (r0 + 5) do
                for k in c0 .. min (side - 1) (c0 + 5) do
                    pixels[i * side * side + r * side + k] <- byte (190 + rng.Next 60)

        ImageSet.create "synthetic" pixels labels 1 side side 10

    /// The frame options of an event dataset: ds.Frames equal-time frames, ON and OFF kept apart.
    let frameOptions (ds: DatasetSection) : FrameOptions =
        {
            Frames = ds.Frames
            SplitBy = ByTime
            Downsample = 1
            MergePolarity = false
        }

    /// The training and test samples of the dataset section (training first: fitting samples, then the
    /// held-out validation samples). MNIST and Fashion-MNIST are fetched with <c>fetch</c>; their event
    /// twins are emulated from the same images once and cached under the data cache.
    let loadDataset (fetch: FetchOptions) (ds: DatasetSection) : ISampleSource * ISampleSource =
        let take (n: int) (s: ImageSet) =
            if n >= s.Count then
                s
            else
                ImageSet.subset s [| 0 .. n - 1 |]

        let fetch =
            { fetch with
                UserDir = ds.Directory |> Option.orElse fetch.UserDir
            }

        let images name =
            match name with
            | "synthetic" -> synthetic ds.Train 0, synthetic ds.Test 1
            | "fashion-mnist" ->
                take ds.Train (Datasets.fashionMnist fetch true), take ds.Test (Datasets.fashionMnist fetch false)
            | _ -> take ds.Train (Datasets.mnist fetch true), take ds.Test (Datasets.mnist fetch false)

        if ds.IsSequence then
            let train, test = images (ds.Name.Substring "event-".Length)

            let dir =
                Path.Combine(defaultArg fetch.CacheDir (Fetch.cacheRoot ()), "emulated-events")

            let frames (s: ImageSet) =
                Directory.CreateDirectory dir |> ignore
                let path = EmulatedFrames.cachePath dir Emulation.defaults (frameOptions ds) s

                if not (File.Exists path) then
                    fetch.Log(sprintf "emulating the event recordings of %d %s images into %s" s.Count s.Name dir)

                EmulatedFrames.cachedAt path Emulation.defaults (frameOptions ds) s :> ISampleSource

            frames train, frames test
        else
            let train, test = images ds.Name
            train :> ISampleSource, test :> ISampleSource

    /// Splits training images into the fitting and the held-out validation images.
    let split (validation: int) (train: ISampleSource) =
        let n = train.Count

        if validation < 1 || validation >= n then
            Errors.invalidArg
                "SpecFile.split"
                "validation"
                validation
                (sprintf "between 1 and the training images - 1 (%d)" (n - 1))

        SampleSource.subset train [| 0 .. n - validation - 1 |], SampleSource.subset train [| n - validation .. n - 1 |]
