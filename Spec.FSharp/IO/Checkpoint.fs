namespace SnnSpec.IO

open System
open System.Collections.Generic
open System.Globalization
open System.IO
open System.Text.Json
open SnnSpec

/// The optimizer a training state belongs to, with its settings.
[<RequireQualifiedAccess>]
type OptimizerKind =
    | Sgd of SgdConfig
    | Adam of AdamConfig

/// An optimizer's settings and its per-parameter state, enough to resume exactly.
type OptimizerSnapshot =
    {
        Kind: OptimizerKind
        State: OptimizerState
    }

/// Where training stood when a checkpoint was written.
type TrainingState =
    {
        /// Completed epochs.
        Epoch: int
        /// Completed optimisation steps over the whole run.
        Step: int64
        /// The key the run derives its next random draws from.
        Rng: Rng
        Optimizer: OptimizerSnapshot option
    }

/// What a checkpoint file holds: a model (architecture, execution mode, parameters, buffers), an
/// optional quantization configuration (JSON text, stored as given), an optional training state,
/// extra tensors (e.g. quantized integer codes and scales) and free-form string metadata.
type Checkpoint =
    {
        Model: Model
        Quantization: string option
        Training: TrainingState option
        /// Stored under "extra." + Name; never validated against the model.
        Extra: StoredTensor list
        /// Stored under "user." + key in the file's metadata.
        Metadata: Map<string, string>
    }

/// A checkpoint whose tensors do not fit the model they are loaded into: names the tensors that are
/// missing, unexpected (not used by the model) and mismatched (wrong shape or dtype).
type CheckpointMismatchException(file: string, missing: string list, unexpected: string list, mismatched: string list) =
    inherit
        CheckpointFormatException(
            file,
            8L,
            (let part (title: string) (items: string list) =
                if items.IsEmpty then
                    []
                else
                    let shown = items |> List.truncate 12

                    [
                        sprintf
                            "%s (%d): %s%s"
                            title
                            items.Length
                            (String.Join("; ", shown))
                            (if items.Length > shown.Length then "; …" else "")
                    ]

             "the tensors do not fit the model: "
             + String.Join(
                 ". ",
                 part "missing" missing
                 @ part "unexpected" unexpected
                 @ part "mismatched" mismatched
             )),
            "load it into a model built with the same architecture and width as the one saved (or call Checkpoint.load, which rebuilds that model from the file)"
        )

    member _.Missing = missing
    member _.Unexpected = unexpected
    member _.Mismatched = mismatched

/// How a checkpoint is written.
type CheckpointSaveOptions =
    {
        /// The dtype of parameters and buffers: F32 (exact), F16 or BF16 (half the size, rounded).
        WeightDType: DType
    }

    static member Default = { WeightDType = DType.F32 }

/// Checkpoints: safetensors files (see SafeTensors) with SnnSpec's metadata.
///
/// Tensors: every parameter and buffer under its own name ("conv1.weight", "bn1.running_mean");
/// the optimizer's first and second moment buffers under "optimizer.first.&lt;param&gt;" and
/// "optimizer.second.&lt;param&gt;" (F32); extra tensors under "extra.&lt;name&gt;".
///
/// Metadata (all strings): "format" = "snnspec.checkpoint"; "schema_version" = "1"; "architecture"
/// (ArchitectureJson); "mode" = "snn" or "ann"; "timesteps" (SNN only); "quantization" (the
/// configuration JSON as given, when present); "training" (when present) =
/// <c>{"epoch", "step", "rng_key": 16 hex digits, "optimizer": null or {"kind": "sgd"|"adam",
/// settings in snake_case, "step", "parameters": [names], "first": bool, "second": bool}}</c>;
/// "user.&lt;key&gt;" for the checkpoint's own metadata.
module Checkpoint =
    /// The version written; files of a later version are refused.
    [<Literal>]
    let SchemaVersion = 1

    [<Literal>]
    let FormatName = "snnspec.checkpoint"

    /// A checkpoint of a model with nothing else.
    let ofModel (m: Model) =
        {
            Model = m
            Quantization = None
            Training = None
            Extra = []
            Metadata = Map.empty
        }

    let private firstPrefix = "optimizer.first."
    let private secondPrefix = "optimizer.second."
    let private extraPrefix = "extra."

    /// The names and shapes of an architecture's parameters and of its buffers, in the order
    /// Model.init produces them, computed without allocating any tensor.
    let tensorShapes (arch: Architecture) : (string * int[]) list * (string * int[]) list =
        let rec walk (prefix: string) (layers: LayerSpec list) =
            let full n =
                if prefix = "" then n else prefix + "." + n

            let parts =
                layers
                |> List.map (fun l ->
                    match l with
                    | Conv2d(n, cin, cout, k, _, _, bias) ->
                        let name = full n

                        (name + ".weight", [| cout; cin; k; k |])
                        :: (if bias then [ name + ".bias", [| cout |] ] else []),
                        []
                    | Linear(n, fin, fout, bias) ->
                        let name = full n

                        (name + ".weight", [| fout; fin |])
                        :: (if bias then [ name + ".bias", [| fout |] ] else []),
                        []
                    | Norm(n, c, _) ->
                        let name = full n

                        [ name + ".weight", [| c |]; name + ".bias", [| c |] ],
                        [ name + ".running_mean", [| c |]; name + ".running_var", [| c |] ]
                    | Spiking(n, { Dynamics = Dynamics.Plif(w, _) }) -> [ full n + ".w", w.Shape ], []
                    | Residual(n, _, main, sc, after) ->
                        let a = walk (full n) main
                        let b = walk (full n) sc
                        let c = walk (full n) after
                        fst a @ fst b @ fst c, snd a @ snd b @ snd c
                    | Stage(n, ls) -> walk (full n) ls
                    | _ -> [], [])

            List.collect fst parts, List.collect snd parts

        walk "" arch.Layers

    /// The names and shapes Model.quantize adds to an architecture's own (tensorShapes), in the order
    /// it adds them, as the plan stored in <c>buffer</c> describes: per planned weight layer the
    /// scalar buffers "quant.weight_bits", "quant.bias_bits", "quant.fold_bn" and, at a fixed width,
    /// the parameter "alpha"; per planned Spiking layer "quant.membrane_bits", "quant.membrane_scheme",
    /// "quant.membrane_shared" and, when not shared, its own "alpha". <c>buffer name</c> reads a
    /// stored scalar (None when absent); an unquantized model adds nothing.
    let quantShapes (arch: Architecture) (buffer: string -> float32 option) =
        let st = QuantPlan.structure arch
        let scalar n = n, Array.empty<int>

        let weights =
            [
                for name, _, _ in st.WeightLayers do
                    match buffer (QuantPlan.weightBitsKey name) with
                    | Some wb ->
                        yield
                            (if wb <> 0.0f then [ scalar (name + ".alpha") ] else []),
                            List.map scalar (QuantPlan.weightKeys name)
                    | None -> ()
            ]

        let membranes =
            [
                for KeyValue(name, _) in st.Feeding do
                    if (buffer (QuantPlan.membraneBitsKey name)).IsSome then
                        let own = buffer (QuantPlan.membraneSharedKey name) = Some 0.0f

                        yield
                            (if own then [ scalar (name + ".alpha") ] else []),
                            List.map scalar (QuantPlan.membraneKeys name)
            ]

        List.collect fst (weights @ membranes), List.collect snd (weights @ membranes)

    /// The architecture with each PLIF layer's w replaced by <c>w name</c>.
    let private withPlif (w: string -> Tensor) (arch: Architecture) =
        let rec map (prefix: string) (layers: LayerSpec list) =
            let full n =
                if prefix = "" then n else prefix + "." + n

            layers
            |> List.map (fun l ->
                match l with
                | Spiking(n, ({ Dynamics = Dynamics.Plif(_, di) } as neuron)) ->
                    Spiking(
                        n,
                        { neuron with
                            Dynamics = Dynamics.Plif(w (full n + ".w"), di)
                        }
                    )
                | Residual(n, k, main, sc, after) ->
                    Residual(n, k, map (full n) main, map (full n) sc, map (full n) after)
                | Stage(n, ls) -> Stage(n, map (full n) ls)
                | other -> other)

        { arch with
            Layers = map "" arch.Layers
        }

    let private f (v: float32) = float v

    let private trainingJson (t: TrainingState) =
        use ms = new MemoryStream()

        do
            use w = new Utf8JsonWriter(ms)
            w.WriteStartObject()
            w.WriteNumber("epoch", t.Epoch)
            w.WriteNumber("step", t.Step)
            w.WriteString("rng_key", t.Rng.Key.ToString("x16", CultureInfo.InvariantCulture))

            match t.Optimizer with
            | None -> w.WriteNull "optimizer"
            | Some o ->
                w.WriteStartObject "optimizer"

                match o.Kind with
                | OptimizerKind.Sgd c ->
                    w.WriteString("kind", "sgd")
                    w.WriteNumber("learning_rate", f c.LearningRate)
                    w.WriteNumber("momentum", f c.Momentum)
                    w.WriteBoolean("nesterov", c.Nesterov)
                    w.WriteNumber("weight_decay", f c.WeightDecay)
                | OptimizerKind.Adam c ->
                    w.WriteString("kind", "adam")
                    w.WriteNumber("learning_rate", f c.LearningRate)
                    w.WriteNumber("beta1", f c.Beta1)
                    w.WriteNumber("beta2", f c.Beta2)
                    w.WriteNumber("eps", f c.Eps)
                    w.WriteNumber("weight_decay", f c.WeightDecay)
                    w.WriteBoolean("decoupled", c.Decoupled)

                w.WriteNumber("step", o.State.Step)
                let names = [ o.State.First; o.State.Second ] |> List.tryPick id

                w.WriteStartArray "parameters"

                for n in names |> Option.map (fun p -> p.Names) |> Option.defaultValue [||] do
                    w.WriteStringValue n

                w.WriteEndArray()
                w.WriteBoolean("first", o.State.First.IsSome)
                w.WriteBoolean("second", o.State.Second.IsSome)
                w.WriteEndObject()

            w.WriteEndObject()

        Text.Encoding.UTF8.GetString(ms.ToArray())

    /// The file's tensors and metadata for a checkpoint.
    let toFile (opts: CheckpointSaveOptions) (c: Checkpoint) : SafeTensorsFile =
        if not (DType.isFloat opts.WeightDType) then
            Errors.invalidArg
                "Checkpoint.save"
                "WeightDType"
                (DType.name opts.WeightDType)
                "F32, F16 or BF16 (store integer codes as Extra tensors)"

        let arch = ArchitectureJson.write c.Model.Architecture

        let model = Parameters.toList c.Model.Parameters @ Parameters.toList c.Model.Buffers

        for n, _ in model do
            if n.StartsWith "optimizer." || n.StartsWith extraPrefix then
                Errors.invalidArg
                    "Checkpoint.save"
                    "tensor name"
                    n
                    "model tensor names that do not start with \"optimizer.\" or \"extra.\""

        let tensors =
            [
                for n, t in model -> StoredTensor.ofFloats n opts.WeightDType t.Shape (t.ToArray())

                match c.Training |> Option.bind (fun t -> t.Optimizer) with
                | Some o ->
                    let first = o.State.First
                    let second = o.State.Second

                    match first, second with
                    | Some a, Some b when a.Names <> b.Names ->
                        Errors.invalidArg
                            "Checkpoint.save"
                            "optimizer state"
                            "First and Second with different names"
                            "moment buffers over the same parameters"
                    | _ -> ()

                    for prefix, p in [ firstPrefix, first; secondPrefix, second ] do
                        match p with
                        | Some ps -> for n, t in Parameters.toList ps -> StoredTensor.ofTensor (prefix + n) t
                        | None -> ()
                | None -> ()

                for e in c.Extra -> { e with Name = extraPrefix + e.Name }
            ]

        let meta =
            [
                yield "format", FormatName
                yield "schema_version", string SchemaVersion
                yield "architecture", arch

                match c.Model.Mode with
                | ExecutionMode.Snn t ->
                    yield "mode", "snn"
                    yield "timesteps", string t
                | ExecutionMode.Ann -> yield "mode", "ann"

                match c.Quantization with
                | Some q -> yield "quantization", q
                | None -> ()

                match c.Training with
                | Some t -> yield "training", trainingJson t
                | None -> ()

                for KeyValue(k, v) in c.Metadata do
                    yield "user." + k, v
            ]
            |> Map.ofList

        { Tensors = tensors; Metadata = meta }

    /// Writes a checkpoint atomically (temporary file, flush to disk, rename over <c>path</c>).
    let saveWith (opts: CheckpointSaveOptions) (path: string) (c: Checkpoint) =
        let file = toFile opts c
        SafeTensors.write path file.Tensors file.Metadata

    /// Writes a checkpoint with F32 weights atomically.
    let save (path: string) (c: Checkpoint) =
        saveWith CheckpointSaveOptions.Default path c

    /// Raised while interpreting metadata; turned into a CheckpointFormatException.
    exception private MetaError of string

    let private metaFail msg = raise (MetaError msg)

    let private parseTraining (json: string) : TrainingState * string list * bool * bool =
        use doc =
            try
                JsonDocument.Parse json
            with :? JsonException as e ->
                metaFail (sprintf "training is not valid JSON (%s)" e.Message)

        let r = doc.RootElement

        let get (e: JsonElement) (k: string) (kind: JsonValueKind) =
            if e.ValueKind <> JsonValueKind.Object then
                metaFail "training is not a JSON object"

            match e.TryGetProperty k with
            | true, v when v.ValueKind = kind -> v
            | _ -> metaFail (sprintf "training: %s is missing or not a %O" k kind)

        let int64Of e k =
            match (get e k JsonValueKind.Number).TryGetInt64() with
            | true, v when v >= 0L -> v
            | _ -> metaFail (sprintf "training: %s is not a non-negative integer" k)

        let intOf e k =
            let v = int64Of e k

            if v > int64 Int32.MaxValue then
                metaFail (sprintf "training: %s exceeds 2³¹ − 1" k)

            int v

        let flt e k =
            float32 ((get e k JsonValueKind.Number).GetDouble())

        let boolOf (e: JsonElement) k =
            match e.TryGetProperty(k: string) with
            | true, v when v.ValueKind = JsonValueKind.True -> true
            | true, v when v.ValueKind = JsonValueKind.False -> false
            | _ -> metaFail (sprintf "training: %s is not a boolean" k)

        let key =
            match
                UInt64.TryParse(
                    (get r "rng_key" JsonValueKind.String).GetString(),
                    NumberStyles.AllowHexSpecifier,
                    CultureInfo.InvariantCulture
                )
            with
            | true, k -> k
            | _ -> metaFail "training: rng_key is not 16 hex digits"

        let optimizer, names, first, second =
            match r.TryGetProperty "optimizer" with
            | true, o when o.ValueKind = JsonValueKind.Object ->
                let kind =
                    match (get o "kind" JsonValueKind.String).GetString() with
                    | "sgd" ->
                        OptimizerKind.Sgd
                            {
                                LearningRate = flt o "learning_rate"
                                Momentum = flt o "momentum"
                                Nesterov = boolOf o "nesterov"
                                WeightDecay = flt o "weight_decay"
                            }
                    | "adam" ->
                        OptimizerKind.Adam
                            {
                                LearningRate = flt o "learning_rate"
                                Beta1 = flt o "beta1"
                                Beta2 = flt o "beta2"
                                Eps = flt o "eps"
                                WeightDecay = flt o "weight_decay"
                                Decoupled = boolOf o "decoupled"
                            }
                    | other -> metaFail (sprintf "training: unknown optimizer kind %A (sgd or adam)" other)

                let names =
                    [
                        for n in (get o "parameters" JsonValueKind.Array).EnumerateArray() do
                            if n.ValueKind <> JsonValueKind.String then
                                metaFail "training: optimizer parameters are not all strings"

                            n.GetString()
                    ]

                Some(kind, intOf o "step"), names, boolOf o "first", boolOf o "second"
            | true, o when o.ValueKind = JsonValueKind.Null -> None, [], false, false
            | _ -> metaFail "training: optimizer is missing (null when there is none)"

        let state =
            {
                Epoch = intOf r "epoch"
                Step = int64Of r "step"
                Rng = Rng key
                Optimizer =
                    optimizer
                    |> Option.map (fun (kind, step) ->
                        {
                            Kind = kind
                            State =
                                {
                                    Step = step
                                    First = None
                                    Second = None
                                }
                        })
            }

        state, names, first, second

    /// Checks a file's tensors against the expected (name, shape) lists and builds the checkpoint.
    /// <c>model</c> receives the stored float tensors of the expected model names.
    let private assemble
        (path: string)
        (file: SafeTensorsFile)
        (arch: Architecture)
        (paramShapes: (string * int[]) list)
        (bufferShapes: (string * int[]) list)
        (mode: ExecutionMode)
        =
        let meta = file.Metadata

        let training =
            match meta.TryFind "training" with
            | Some json -> Some(parseTraining json)
            | None -> None

        let paramShape = dict paramShapes

        let optimizerExpected =
            match training with
            | Some(_, names, first, second) ->
                [
                    for prefix, present in [ firstPrefix, first; secondPrefix, second ] do
                        if present then
                            for n in names do
                                match paramShape.TryGetValue n with
                                | true, s -> yield prefix + n, s, true
                                | _ ->
                                    metaFail (
                                        sprintf
                                            "training: optimizer state for %A, which is not a parameter of the model"
                                            n
                                    )
                ]
            | None -> []

        let expected =
            [ for n, s in paramShapes @ bufferShapes -> n, s, false ] @ optimizerExpected

        let stored = Dictionary<string, StoredTensor>()

        for t in file.Tensors do
            stored[t.Name] <- t

        let expectedNames = HashSet<string>(expected |> List.map (fun (n, _, _) -> n))
        let missing = List<string>()
        let mismatched = List<string>()

        for n, shape, optimizer in expected do
            match stored.TryGetValue n with
            | false, _ -> missing.Add n
            | true, t ->
                if t.Shape <> shape then
                    mismatched.Add(
                        sprintf "%s has shape %s, expected %s" n (Errors.showShape t.Shape) (Errors.showShape shape)
                    )
                elif optimizer && t.DType <> DType.F32 then
                    mismatched.Add(sprintf "%s has dtype %s, expected F32" n (DType.name t.DType))
                elif not (DType.isFloat t.DType) then
                    mismatched.Add(
                        sprintf
                            "%s has dtype %s, expected F32, F16 or BF16 (integer codes belong in extra.*)"
                            n
                            (DType.name t.DType)
                    )

        let unexpected =
            file.Tensors
            |> List.filter (fun t -> not (expectedNames.Contains t.Name) && not (t.Name.StartsWith extraPrefix))
            |> List.map (fun t -> sprintf "%s %s" t.Name (Errors.showShape t.Shape))

        if missing.Count > 0 || mismatched.Count > 0 || not unexpected.IsEmpty then
            raise (CheckpointMismatchException(path, List.ofSeq missing, unexpected, List.ofSeq mismatched))

        let tensor n = StoredTensor.toTensor stored[n]

        let parameters = Parameters.ofList [ for n, _ in paramShapes -> n, tensor n ]

        let buffers = Parameters.ofList [ for n, _ in bufferShapes -> n, tensor n ]

        let trainingState =
            training
            |> Option.map (fun (state, names, first, second) ->
                let ps prefix present =
                    if present then
                        Some(Parameters.ofList [ for n in names -> n, tensor (prefix + n) ])
                    else
                        None

                { state with
                    Optimizer =
                        state.Optimizer
                        |> Option.map (fun o ->
                            { o with
                                State =
                                    { o.State with
                                        First = ps firstPrefix first
                                        Second = ps secondPrefix second
                                    }
                            })
                })

        {
            Model =
                {
                    Architecture = withPlif (fun n -> parameters[n]) arch
                    Mode = mode
                    Parameters = parameters
                    Buffers = buffers
                }
            Quantization = meta.TryFind "quantization"
            Training = trainingState
            Extra =
                [
                    for t in file.Tensors do
                        if t.Name.StartsWith extraPrefix then
                            yield
                                { t with
                                    Name = t.Name.Substring extraPrefix.Length
                                }
                ]
            Metadata =
                meta
                |> Map.toSeq
                |> Seq.filter (fun (k, _) -> k.StartsWith "user.")
                |> Seq.map (fun (k, v) -> k.Substring 5, v)
                |> Map.ofSeq
        }

    let private header (path: string) (file: SafeTensorsFile) =
        let meta = file.Metadata

        let need key =
            match meta.TryFind key with
            | Some v -> v
            | None -> metaFail (sprintf "the metadata has no %A entry" key)

        match meta.TryFind "format" with
        | Some FormatName -> ()
        | Some other -> metaFail (sprintf "the metadata's format is %A, not %A" other FormatName)
        | None ->
            raise (
                CheckpointFormatException(
                    path,
                    8L,
                    "this safetensors file is not an SnnSpec checkpoint (its metadata has no \"format\" entry)",
                    "read its tensors with SafeTensors.read, or load a file written by Checkpoint.save"
                )
            )

        match Int32.TryParse(need "schema_version", NumberStyles.None, CultureInfo.InvariantCulture) with
        | true, v when v >= 1 && v <= SchemaVersion -> ()
        | true, v when v > SchemaVersion ->
            raise (
                CheckpointFormatException(
                    path,
                    8L,
                    sprintf "the checkpoint has schema version %d; this SnnSpec reads versions up to %d" v SchemaVersion,
                    "upgrade SnnSpec to a version that reads it"
                )
            )
        | _ -> metaFail (sprintf "schema_version %A is not a positive integer" (need "schema_version"))

        let mode =
            match need "mode" with
            | "ann" -> ExecutionMode.Ann
            | "snn" ->
                match Int32.TryParse(need "timesteps", NumberStyles.None, CultureInfo.InvariantCulture) with
                | true, t when t >= 1 -> ExecutionMode.Snn t
                | _ -> metaFail (sprintf "timesteps %A is not a positive integer" (need "timesteps"))
            | other -> metaFail (sprintf "mode %A is neither \"snn\" nor \"ann\"" other)

        mode, need "architecture"

    /// Runs f, turning metadata problems into CheckpointFormatExceptions at the header's offset.
    let private guarded (path: string) (f: unit -> 'a) : 'a =
        try
            f ()
        with
        | MetaError msg ->
            raise (
                CheckpointFormatException(
                    path,
                    8L,
                    "the checkpoint metadata is not valid: " + msg,
                    "the file is damaged or was not written by Checkpoint.save; write it again or restore an intact copy"
                )
            )
        | ArchitectureJson.ArchitectureJsonError msg ->
            raise (
                CheckpointFormatException(
                    path,
                    8L,
                    "the architecture metadata is not valid: " + msg,
                    "the file is damaged or was not written by Checkpoint.save; write it again or restore an intact copy"
                )
            )

    /// Refuses plan values Model.quantize never writes: bit widths that are not whole numbers in
    /// range (weight and bias 0…16, 0 = full precision; membrane 1…16), flags and the membrane
    /// scheme other than 0 or 1, and a shared membrane scale whose feeding layer has none.
    let private checkPlan (arch: Architecture) (stored: string -> float32 option) =
        let st = QuantPlan.structure arch

        let whole (key: string) (lo: int) (hi: int) =
            match stored key with
            | Some v when not (Single.IsInteger v && v >= float32 lo && v <= float32 hi) ->
                metaFail (sprintf "the quantization plan's %s is %g, not a whole number in %d…%d" key v lo hi)
            | _ -> ()

        for name, _, _ in st.WeightLayers do
            whole (QuantPlan.weightBitsKey name) 0 16
            whole (QuantPlan.biasBitsKey name) 0 16
            whole (QuantPlan.foldKey name) 0 1

        for KeyValue(name, source) in st.Feeding do
            whole (QuantPlan.membraneBitsKey name) 1 16
            whole (QuantPlan.membraneSchemeKey name) 0 1
            whole (QuantPlan.membraneSharedKey name) 0 1

            if stored (QuantPlan.membraneSharedKey name) = Some 1.0f then
                let scaled =
                    source
                    |> Option.bind (fun s -> stored (QuantPlan.weightBitsKey s))
                    |> Option.exists (fun b -> b >= 1.0f)

                if not scaled then
                    metaFail (
                        sprintf
                            "the quantization plan shares %s's membrane scale with %s, which has no quantized weight scale"
                            name
                            (defaultArg source "no feeding layer")
                    )

    /// The checkpoint in a file already read; <c>path</c> names it in errors. Rebuilds the model
    /// from the recorded architecture and the quantization plan stored in its buffers.
    let ofFile (path: string) (file: SafeTensorsFile) : Checkpoint =
        guarded path (fun () ->
            let mode, archJson = header path file
            let arch = ArchitectureJson.parseWith (fun _ shape -> Tensor.zeros shape) archJson
            let ps, bs = tensorShapes arch

            let scalars =
                file.Tensors
                |> List.filter (fun t -> t.Shape.Length = 0 && t.Name.Contains ".quant.")
                |> List.map (fun t -> t.Name, (StoredTensor.toTensor t).ToArray()[0])
                |> dict

            let stored n =
                match scalars.TryGetValue n with
                | true, v -> Some v
                | _ -> None

            checkPlan arch stored
            let qps, qbs = quantShapes arch stored

            assemble path file arch (ps @ qps) (bs @ qbs) mode)

    /// Loads a checkpoint, rebuilding its model from the recorded architecture and, for a quantized
    /// model, from the plan in its "quant.*" buffers (quantShapes; the "quantization" JSON is not
    /// needed). Raises CheckpointFormatException (with the offset and the fix) for a damaged file and
    /// CheckpointMismatchException when its tensors disagree with its own architecture and plan.
    let load (path: string) : Checkpoint = ofFile path (SafeTensors.read path)

    /// Loads a checkpoint into the expected model's architecture: every parameter and buffer of
    /// <c>expected</c> must be stored with its shape and a float dtype, and nothing else may be
    /// stored (besides optimizer state and extra.*); CheckpointMismatchException names what is
    /// missing, unexpected and mismatched. The execution mode is the file's.
    let loadInto (expected: Model) (path: string) : Checkpoint =
        let file = SafeTensors.read path

        guarded path (fun () ->
            let mode, _ = header path file

            let shapes (p: Parameters) =
                [ for n, t in Parameters.toList p -> n, t.Shape ]

            assemble path file expected.Architecture (shapes expected.Parameters) (shapes expected.Buffers) mode)
