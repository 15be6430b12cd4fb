namespace SnnSpec.IO

open System
open System.Collections.Generic
open System.Globalization
open System.IO
open System.Text.Json
open SnnSpec
open SnnSpec.Training

/// Trainer snapshots (<c>TrainConfig.OnInterrupt</c>, <c>TrainConfig.Resume</c>) as safetensors files,
/// written atomically like checkpoints.
///
/// Tensors (F32, exact): per stage s and student i, under "s&lt;s&gt;.&lt;i&gt;.&lt;group&gt;.&lt;name&gt;" with the groups
/// "params", "buffers", "loss", "best.params", "best.buffers", "best.loss", "opt.first", "opt.second".
///
/// Metadata: "format" = "snnspec.trainer-snapshot"; "schema_version" = "1"; "snapshot" = JSON
/// <c>{"seed", "epochs", "batches_per_epoch", "student_order": "interleaved"|"sequential",
/// "truncation" (the window; absent for full BPTT, and in files written before it existed),
/// "teacher_forward_macs", "student_training_macs", "stages": [{"index", "students": [{"step",
/// "next_epoch", "next_batch", "best_epoch", "best_accuracy", "loss_sum", "correct", "seen",
/// "batches", "optimizer_step", "names": {group: [names in order]}, "history": [epoch reports]}]}]}</c>.
/// The model architectures are not stored: a snapshot resumes the spec it was taken from. Epoch
/// reports keep their validation accuracies; membrane histograms (which the trainer does not record)
/// are not stored.
module TrainerCheckpoint =
    /// The version written; files of a later version are refused.
    [<Literal>]
    let SchemaVersion = 1

    [<Literal>]
    let FormatName = "snnspec.trainer-snapshot"

    let private groups (s: StudentSnapshot) =
        [
            "params", Some s.Parameters
            "buffers", Some s.Buffers
            "loss", Some s.LossParameters
            "best.params", Some s.BestParameters
            "best.buffers", Some s.BestBuffers
            "best.loss", Some s.BestLossParameters
            "opt.first", s.Optimizer.First
            "opt.second", s.Optimizer.Second
        ]

    let private prefix (stage: int) (student: int) (group: string) =
        sprintf "s%d.%d.%s." stage student group

    let private writeReport (w: Utf8JsonWriter) (r: EpochReport) =
        w.WriteStartObject()
        w.WriteNumber("stage", r.Stage)
        w.WriteNumber("student", r.Student)
        w.WriteNumber("epoch", r.Epoch)
        w.WriteNumber("train_loss", r.TrainLoss)
        w.WriteNumber("train_accuracy", r.TrainAccuracy)
        w.WriteBoolean("is_best", r.IsBest)
        w.WriteNumber("elapsed_ticks", r.Elapsed.Ticks)

        match r.Validation with
        | None -> w.WriteNull "validation"
        | Some v ->
            w.WriteStartObject "validation"
            w.WriteNumber("samples", v.Samples)
            w.WriteStartArray "accuracy_per_step"

            for a in v.AccuracyPerStep do
                w.WriteNumberValue a

            w.WriteEndArray()
            w.WriteNumber("accuracy", v.Accuracy)
            w.WriteStartObject "firing_rates"

            for KeyValue(k, x) in v.FiringRates do
                w.WriteNumber(k, x)

            w.WriteEndObject()

            match v.TeacherAccuracy with
            | Some a -> w.WriteNumber("teacher_accuracy", a)
            | None -> w.WriteNull "teacher_accuracy"

            w.WriteEndObject()

        w.WriteEndObject()

    let private json (snap: TrainerSnapshot) =
        use ms = new MemoryStream()

        do
            use w = new Utf8JsonWriter(ms)
            w.WriteStartObject()
            w.WriteNumber("seed", snap.Seed)
            w.WriteNumber("epochs", snap.Epochs)
            w.WriteNumber("batches_per_epoch", snap.BatchesPerEpoch)

            w.WriteString(
                "student_order",
                (match snap.StudentOrder with
                 | StudentOrder.Interleaved -> "interleaved"
                 | StudentOrder.Sequential -> "sequential")
            )

            match snap.Truncation with
            | Some k -> w.WriteNumber("truncation", k)
            | None -> ()

            w.WriteNumber("teacher_forward_macs", snap.TeacherForwardMacs)
            w.WriteNumber("student_training_macs", snap.StudentTrainingMacs)
            w.WriteStartArray "stages"

            for stage in snap.Stages do
                w.WriteStartObject()
                w.WriteNumber("index", stage.Index)
                w.WriteStartArray "students"

                for s in stage.Students do
                    w.WriteStartObject()
                    w.WriteNumber("step", s.Step)
                    w.WriteNumber("next_epoch", s.NextEpoch)
                    w.WriteNumber("next_batch", s.NextBatch)
                    w.WriteNumber("best_epoch", s.BestEpoch)

                    match s.BestAccuracy with
                    | Some a -> w.WriteNumber("best_accuracy", a)
                    | None -> w.WriteNull "best_accuracy"

                    w.WriteNumber("loss_sum", s.LossSum)
                    w.WriteNumber("correct", s.Correct)
                    w.WriteNumber("seen", s.Seen)
                    w.WriteNumber("batches", s.Batches)
                    w.WriteNumber("optimizer_step", s.Optimizer.Step)
                    w.WriteStartObject "names"

                    for g, ps in groups s do
                        match ps with
                        | Some ps ->
                            w.WriteStartArray g

                            for n in ps.Names do
                                w.WriteStringValue n

                            w.WriteEndArray()
                        | None -> w.WriteNull g

                    w.WriteEndObject()
                    w.WriteStartArray "history"

                    for r in s.History do
                        writeReport w r

                    w.WriteEndArray()
                    w.WriteEndObject()

                w.WriteEndArray()
                w.WriteEndObject()

            w.WriteEndArray()
            w.WriteEndObject()

        Text.Encoding.UTF8.GetString(ms.ToArray())

    /// The file's tensors and metadata for a snapshot.
    let toFile (snap: TrainerSnapshot) : SafeTensorsFile =
        let tensors =
            [
                for stage in snap.Stages do
                    for i, s in List.indexed stage.Students do
                        for g, ps in groups s do
                            match ps with
                            | Some ps ->
                                for n, t in Parameters.toList ps -> StoredTensor.ofTensor (prefix stage.Index i g + n) t
                            | None -> ()
            ]

        {
            Tensors = tensors
            Metadata =
                Map
                    [
                        "format", FormatName
                        "schema_version", string SchemaVersion
                        "snapshot", json snap
                    ]
        }

    /// Writes a snapshot atomically (temporary file, flush to disk, rename over <c>path</c>).
    let save (path: string) (snap: TrainerSnapshot) =
        let file = toFile snap
        SafeTensors.write path file.Tensors file.Metadata

    exception private SnapshotError of string

    let private bad msg = raise (SnapshotError msg)

    let private get (e: JsonElement) (k: string) (kind: JsonValueKind) =
        if e.ValueKind <> JsonValueKind.Object then
            bad (sprintf "snapshot: expected an object holding %s" k)

        match e.TryGetProperty k with
        | true, v when v.ValueKind = kind -> v
        | _ -> bad (sprintf "snapshot: %s is missing or not a %O" k kind)

    let private int64Of e k =
        match (get e k JsonValueKind.Number).TryGetInt64() with
        | true, v -> v
        | _ -> bad (sprintf "snapshot: %s is not an integer" k)

    let private intOf e k =
        let v = int64Of e k

        if v < int64 Int32.MinValue || v > int64 Int32.MaxValue then
            bad (sprintf "snapshot: %s is out of range" k)

        int v

    let private num e k =
        (get e k JsonValueKind.Number).GetDouble()

    let private boolOf (e: JsonElement) (k: string) =
        match e.TryGetProperty k with
        | true, v when v.ValueKind = JsonValueKind.True -> true
        | true, v when v.ValueKind = JsonValueKind.False -> false
        | _ -> bad (sprintf "snapshot: %s is not a boolean" k)

    let private optNum (e: JsonElement) (k: string) =
        match e.TryGetProperty k with
        | true, v when v.ValueKind = JsonValueKind.Null -> None
        | true, v when v.ValueKind = JsonValueKind.Number -> Some(v.GetDouble())
        | _ -> bad (sprintf "snapshot: %s is neither a number nor null" k)

    let private items (e: JsonElement) = [ for x in e.EnumerateArray() -> x ]

    let private readReport (e: JsonElement) : EpochReport =
        let validation =
            match e.TryGetProperty "validation" with
            | true, v when v.ValueKind = JsonValueKind.Null -> None
            | true, v when v.ValueKind = JsonValueKind.Object ->
                Some
                    {
                        Samples = intOf v "samples"
                        AccuracyPerStep =
                            items (get v "accuracy_per_step" JsonValueKind.Array)
                            |> List.map (fun x -> x.GetDouble())
                            |> Array.ofList
                        Accuracy = num v "accuracy"
                        FiringRates =
                            [
                                for p in (get v "firing_rates" JsonValueKind.Object).EnumerateObject() ->
                                    p.Name, p.Value.GetDouble()
                            ]
                            |> Map.ofList
                        StudentHistograms = Map.empty
                        TeacherHistograms = Map.empty
                        TeacherAccuracy = optNum v "teacher_accuracy"
                    }
            | _ -> bad "snapshot: an epoch report's validation is neither an object nor null"

        {
            Stage = intOf e "stage"
            Student = intOf e "student"
            Epoch = intOf e "epoch"
            TrainLoss = num e "train_loss"
            TrainAccuracy = num e "train_accuracy"
            Validation = validation
            IsBest = boolOf e "is_best"
            Elapsed = TimeSpan.FromTicks(int64Of e "elapsed_ticks")
        }

    /// The snapshot in a file already read; <c>path</c> names it in errors.
    let ofFile (path: string) (file: SafeTensorsFile) : TrainerSnapshot =
        let fail (problem: string) =
            raise (
                CheckpointFormatException(
                    path,
                    8L,
                    problem,
                    "the file is damaged or was not written by TrainerCheckpoint.save; write it again or restore an intact copy"
                )
            )

        match file.Metadata.TryFind "format" with
        | Some FormatName -> ()
        | Some other ->
            raise (
                CheckpointFormatException(
                    path,
                    8L,
                    sprintf "the metadata's format is %A, not %A" other FormatName,
                    "load model checkpoints with SpecFile.loadModel (C#: SnnModel.Load) and trainer snapshots with TrainerCheckpoint.load"
                )
            )
        | None -> fail "this safetensors file is not an SnnSpec trainer snapshot (its metadata has no \"format\" entry)"

        match
            Int32.TryParse(
                file.Metadata.TryFind "schema_version" |> Option.defaultValue "",
                NumberStyles.None,
                CultureInfo.InvariantCulture
            )
        with
        | true, v when v >= 1 && v <= SchemaVersion -> ()
        | true, v when v > SchemaVersion ->
            raise (
                CheckpointFormatException(
                    path,
                    8L,
                    sprintf "the snapshot has schema version %d; this SnnSpec reads versions up to %d" v SchemaVersion,
                    "upgrade SnnSpec to a version that reads it"
                )
            )
        | _ -> fail "the metadata's schema_version is missing or not a positive integer"

        let stored = Dictionary<string, StoredTensor>()

        for t in file.Tensors do
            stored[t.Name] <- t

        let used = HashSet<string>()

        try
            let text =
                match file.Metadata.TryFind "snapshot" with
                | Some t -> t
                | None -> bad "the metadata has no \"snapshot\" entry"

            use doc =
                try
                    JsonDocument.Parse text
                with :? JsonException as e ->
                    bad (sprintf "snapshot is not valid JSON (%s)" e.Message)

            let r = doc.RootElement

            let order =
                match (get r "student_order" JsonValueKind.String).GetString() with
                | "interleaved" -> StudentOrder.Interleaved
                | "sequential" -> StudentOrder.Sequential
                | other -> bad (sprintf "snapshot: unknown student_order %A (interleaved or sequential)" other)

            let stages =
                items (get r "stages" JsonValueKind.Array)
                |> List.map (fun st ->
                    let index = intOf st "index"

                    let students =
                        items (get st "students" JsonValueKind.Array)
                        |> List.mapi (fun i s ->
                            let names = get s "names" JsonValueKind.Object

                            let group (g: string) =
                                match names.TryGetProperty g with
                                | true, v when v.ValueKind = JsonValueKind.Null -> None
                                | true, v when v.ValueKind = JsonValueKind.Array ->
                                    Some(
                                        Parameters.ofList
                                            [
                                                for n in v.EnumerateArray() do
                                                    if n.ValueKind <> JsonValueKind.String then
                                                        bad (
                                                            sprintf "snapshot: the names of %s are not all strings" g
                                                        )

                                                    let full = prefix index i g + n.GetString()

                                                    match stored.TryGetValue full with
                                                    | true, t when t.DType = DType.F32 ->
                                                        used.Add full |> ignore
                                                        n.GetString(), StoredTensor.toTensor t
                                                    | true, t ->
                                                        bad (
                                                            sprintf
                                                                "tensor %s has dtype %s, expected F32"
                                                                full
                                                                (DType.name t.DType)
                                                        )
                                                    | _ -> bad (sprintf "tensor %s is missing" full)
                                            ]
                                    )
                                | _ -> bad (sprintf "snapshot: names.%s is neither a list nor null" g)

                            let need g =
                                match group g with
                                | Some p -> p
                                | None -> bad (sprintf "snapshot: names.%s is null" g)

                            {
                                Parameters = need "params"
                                Buffers = need "buffers"
                                LossParameters = need "loss"
                                Optimizer =
                                    {
                                        Step = intOf s "optimizer_step"
                                        First = group "opt.first"
                                        Second = group "opt.second"
                                    }
                                Step = intOf s "step"
                                NextEpoch = intOf s "next_epoch"
                                NextBatch = intOf s "next_batch"
                                BestParameters = need "best.params"
                                BestBuffers = need "best.buffers"
                                BestLossParameters = need "best.loss"
                                BestEpoch = intOf s "best_epoch"
                                BestAccuracy = optNum s "best_accuracy"
                                History = items (get s "history" JsonValueKind.Array) |> List.map readReport
                                LossSum = num s "loss_sum"
                                Correct = int64Of s "correct"
                                Seen = int64Of s "seen"
                                Batches = intOf s "batches"
                            })

                    {
                        StageSnapshot.Index = index
                        Students = students
                    })

            let unexpected =
                file.Tensors
                |> List.filter (fun t -> not (used.Contains t.Name))
                |> List.map (fun t -> t.Name)

            if not unexpected.IsEmpty then
                bad (
                    sprintf "tensors not named by the snapshot: %s" (String.Join(", ", unexpected |> List.truncate 12))
                )

            {
                Stages = stages
                Seed = intOf r "seed"
                Epochs = intOf r "epochs"
                BatchesPerEpoch = intOf r "batches_per_epoch"
                StudentOrder = order
                Truncation =
                    match r.TryGetProperty "truncation" with
                    | true, _ ->
                        let k = intOf r "truncation"

                        if k < 1 then
                            bad (sprintf "snapshot: truncation is %d (a window of at least 1 step)" k)

                        Some k
                    | _ -> None
                TeacherForwardMacs = int64Of r "teacher_forward_macs"
                StudentTrainingMacs = int64Of r "student_training_macs"
            }
        with
        | SnapshotError msg -> fail ("the trainer snapshot is not valid: " + msg)
        | :? InvalidOperationException as e -> fail ("the trainer snapshot is not valid: " + e.Message)

    /// Loads a snapshot written by <c>save</c>. Raises CheckpointFormatException (naming the
    /// problem and the fix) for a damaged file or one that is not a trainer snapshot.
    let load (path: string) : TrainerSnapshot = ofFile path (SafeTensors.read path)
