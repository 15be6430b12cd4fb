namespace SnnSpec.IO

open System
open System.IO
open System.Text.Json
open SnnSpec

/// An architecture's JSON form, as recorded in a checkpoint's "architecture" metadata:
/// <c>{"name", "input_shape": [..], "classes", "layers": [layer, …]}</c>, each layer an object whose
/// "type" is one of conv2d, linear, norm, spiking, relu, max_pool, avg_pool, adaptive_avg_pool,
/// flatten, dropout, residual, stage, repeat_over_time, tap, with the case's fields in snake_case
/// (residual and stage nest "main"/"shortcut"/"after" and "layers"). A spiking layer's "neuron"
/// holds "dynamics" ({"type": lif|leaky|mint|if|plif, …}), "threshold", "reset" ({"type": hard,
/// "v_reset"} or {"type": soft}), "detach_reset" and "surrogate" ({"type": atan|sigmoid|triangle|
/// rectangle|gaussian, …}). PLIF's learnable w is not in the JSON: "w_shape" records its shape and
/// its value is the parameter "&lt;layer&gt;.w". Float32 values are written as the exact double.
module ArchitectureJson =
    let private number (w: Utf8JsonWriter) (key: string) (v: float32) =
        if Single.IsFinite v then
            w.WriteNumber(key, float v)
        else
            w.WriteString(key, v.ToString(Globalization.CultureInfo.InvariantCulture))

    let rec private writeLayer (w: Utf8JsonWriter) (prefix: string) (layer: LayerSpec) =
        let full n =
            if prefix = "" then n else prefix + "." + n

        let start (kind: string) =
            w.WriteStartObject()
            w.WriteString("type", kind)

        let layers (key: string) (p: string) (ls: LayerSpec list) =
            w.WriteStartArray key

            for l in ls do
                writeLayer w p l

            w.WriteEndArray()

        match layer with
        | Conv2d(n, i, o, k, s, p, b) ->
            start "conv2d"
            w.WriteString("name", n)
            w.WriteNumber("in_channels", i)
            w.WriteNumber("out_channels", o)
            w.WriteNumber("kernel", k)
            w.WriteNumber("stride", s)
            w.WriteNumber("padding", p)
            w.WriteBoolean("bias", b)
        | Linear(n, i, o, b) ->
            start "linear"
            w.WriteString("name", n)
            w.WriteNumber("in_features", i)
            w.WriteNumber("out_features", o)
            w.WriteBoolean("bias", b)
        | Norm(n, c, kind) ->
            start "norm"
            w.WriteString("name", n)
            w.WriteNumber("channels", c)
            w.WriteStartObject "kind"

            match kind with
            | NormKind.Batch -> w.WriteString("type", "batch")
            | NormKind.ThresholdDependent(a, t) ->
                w.WriteString("type", "threshold_dependent")
                number w "alpha" a
                number w "threshold" t

            w.WriteEndObject()
        | Spiking(n, neuron) ->
            start "spiking"
            w.WriteString("name", n)
            w.WriteStartObject "neuron"
            w.WriteStartObject "dynamics"

            match neuron.Dynamics with
            | Dynamics.Lif(tau, di) ->
                w.WriteString("type", "lif")
                number w "tau" tau
                w.WriteBoolean("decay_input", di)
            | Dynamics.Leaky l ->
                w.WriteString("type", "leaky")
                number w "lambda" l
            | Dynamics.Mint l ->
                w.WriteString("type", "mint")
                number w "lambda" l
            | Dynamics.If -> w.WriteString("type", "if")
            | Dynamics.Plif(wt, di) ->
                w.WriteString("type", "plif")
                w.WriteBoolean("decay_input", di)
                w.WriteStartArray "w_shape"

                for d in wt.Shape do
                    w.WriteNumberValue d

                w.WriteEndArray()

            w.WriteEndObject()
            number w "threshold" neuron.Threshold
            w.WriteStartObject "reset"

            match neuron.Reset with
            | Reset.Hard v ->
                w.WriteString("type", "hard")
                number w "v_reset" v
            | Reset.Soft -> w.WriteString("type", "soft")

            w.WriteEndObject()
            w.WriteBoolean("detach_reset", neuron.DetachReset)
            w.WriteStartObject "surrogate"

            match neuron.Surrogate with
            | Surrogate.ATan a ->
                w.WriteString("type", "atan")
                number w "alpha" a
            | Surrogate.Sigmoid a ->
                w.WriteString("type", "sigmoid")
                number w "alpha" a
            | Surrogate.Triangle(width, scale) ->
                w.WriteString("type", "triangle")
                number w "width" width
                number w "scale" scale
            | Surrogate.Rectangle width ->
                w.WriteString("type", "rectangle")
                number w "width" width
            | Surrogate.Gaussian s ->
                w.WriteString("type", "gaussian")
                number w "sigma" s
            | Surrogate.Custom(name, _) ->
                Errors.fail (
                    sprintf
                        "Checkpoint: layer %A uses Surrogate.Custom(%s), whose derivative is a function and cannot be stored in a checkpoint. Fix: use a built-in surrogate (ATan, Sigmoid, Triangle, Rectangle, Gaussian) for the saved model, or store only the tensors with SafeTensors.write and rebuild the architecture in code."
                        (full n)
                        name
                )

            w.WriteEndObject()
            w.WriteEndObject()
        | Relu n ->
            start "relu"
            w.WriteString("name", n)
        | MaxPool(k, s) ->
            start "max_pool"
            w.WriteNumber("kernel", k)
            w.WriteNumber("stride", s)
        | AvgPool(k, s) ->
            start "avg_pool"
            w.WriteNumber("kernel", k)
            w.WriteNumber("stride", s)
        | AdaptiveAvgPool o ->
            start "adaptive_avg_pool"
            w.WriteNumber("out", o)
        | Flatten -> start "flatten"
        | Dropout p ->
            start "dropout"
            number w "p" p
        | Residual(n, kind, main, sc, after) ->
            start "residual"
            w.WriteString("name", n)

            w.WriteString(
                "kind",
                match kind with
                | ResidualKind.Add -> "add"
                | ResidualKind.SewAdd -> "sew_add"
                | ResidualKind.SewIAnd -> "sew_iand"
                | ResidualKind.Membrane -> "membrane"
            )

            layers "main" (full n) main
            layers "shortcut" (full n) sc
            layers "after" (full n) after
        | Stage(n, ls) ->
            start "stage"
            w.WriteString("name", n)
            layers "layers" (full n) ls
        | RepeatOverTime -> start "repeat_over_time"
        | StackFrames f ->
            start "stack_frames"
            w.WriteNumber("frames", f)
        | Tap n ->
            start "tap"
            w.WriteString("name", n)

        w.WriteEndObject()

    /// The JSON text of an architecture; raises a SnnSpecException naming the layer when a
    /// surrogate is a custom function.
    let write (arch: Architecture) : string =
        use ms = new MemoryStream()

        do
            use w = new Utf8JsonWriter(ms)
            w.WriteStartObject()
            w.WriteString("name", arch.Name)
            w.WriteStartArray "input_shape"

            for d in arch.InputShape do
                w.WriteNumberValue d

            w.WriteEndArray()
            w.WriteNumber("classes", arch.Classes)
            w.WriteStartArray "layers"

            for l in arch.Layers do
                writeLayer w "" l

            w.WriteEndArray()
            w.WriteEndObject()

        Text.Encoding.UTF8.GetString(ms.ToArray())

    /// Raised inside parsing; the caller turns it into a CheckpointFormatException.
    exception internal ArchitectureJsonError of string

    let private bad (fmt: string) = raise (ArchitectureJsonError fmt)

    let private prop (e: JsonElement) (key: string) (kind: JsonValueKind) (where: string) =
        if e.ValueKind <> JsonValueKind.Object then
            bad (sprintf "%s is not a JSON object" where)

        match e.TryGetProperty key with
        | true, v when v.ValueKind = kind -> v
        | true, v -> bad (sprintf "%s: %s is a JSON %O, expected %O" where key v.ValueKind kind)
        | _ -> bad (sprintf "%s has no %s" where key)

    let private str e key where =
        (prop e key JsonValueKind.String where).GetString()

    let private int e key (min: int) where =
        match (prop e key JsonValueKind.Number where).TryGetInt32() with
        | true, v when v >= min -> v
        | _ -> bad (sprintf "%s: %s is not an integer ≥ %d" where key min)

    let private flt (e: JsonElement) (key: string) where =
        if e.ValueKind = JsonValueKind.Object then
            match e.TryGetProperty key with
            | true, v when v.ValueKind = JsonValueKind.String ->
                match
                    Single.TryParse(
                        (v.GetString(): string),
                        Globalization.NumberStyles.Float,
                        Globalization.CultureInfo.InvariantCulture
                    )
                with
                | true, f when not (Single.IsFinite f) -> f
                | _ -> bad (sprintf "%s: %s is not a number" where key)
            | _ -> float32 ((prop e key JsonValueKind.Number where).GetDouble())
        else
            bad (sprintf "%s is not a JSON object" where)

    let private bool (e: JsonElement) (key: string) where =
        if e.ValueKind <> JsonValueKind.Object then
            bad (sprintf "%s is not a JSON object" where)

        match e.TryGetProperty key with
        | true, v when v.ValueKind = JsonValueKind.True -> true
        | true, v when v.ValueKind = JsonValueKind.False -> false
        | _ -> bad (sprintf "%s: %s is not a boolean" where key)

    let private ints (e: JsonElement) key where =
        [|
            for x in (prop e key JsonValueKind.Array where).EnumerateArray() do
                match
                    x.ValueKind,
                    (if x.ValueKind = JsonValueKind.Number then
                         x.TryGetInt32()
                     else
                         (false, 0))
                with
                | JsonValueKind.Number, (true, v) when v >= 0 -> yield v
                | _ -> bad (sprintf "%s: %s holds %s, not a non-negative integer" where key (x.GetRawText()))
        |]

    let rec private readLayers (plif: string -> int[] -> Tensor) (prefix: string) (arr: JsonElement) (where: string) =
        [
            for l in arr.EnumerateArray() do
                yield readLayer plif prefix l where
        ]

    and private readLayer (plif: string -> int[] -> Tensor) (prefix: string) (l: JsonElement) (where: string) =
        let kind = str l "type" (where + " layer")

        let full n =
            if prefix = "" then n else prefix + "." + n

        let name () =
            str l "name" (sprintf "%s %s layer" where kind)

        let at n = sprintf "layer %A" (full n)

        let children (n: string) (key: string) =
            readLayers plif (full n) (prop l key JsonValueKind.Array (at n)) (at n)

        match kind with
        | "conv2d" ->
            let n = name ()

            Conv2d(
                n,
                int l "in_channels" 1 (at n),
                int l "out_channels" 1 (at n),
                int l "kernel" 1 (at n),
                int l "stride" 1 (at n),
                int l "padding" 0 (at n),
                bool l "bias" (at n)
            )
        | "linear" ->
            let n = name ()
            Linear(n, int l "in_features" 1 (at n), int l "out_features" 1 (at n), bool l "bias" (at n))
        | "norm" ->
            let n = name ()
            let k = prop l "kind" JsonValueKind.Object (at n)

            let nk =
                match str k "type" (at n + " norm kind") with
                | "batch" -> NormKind.Batch
                | "threshold_dependent" -> NormKind.ThresholdDependent(flt k "alpha" (at n), flt k "threshold" (at n))
                | other -> bad (sprintf "%s: unknown norm kind %A" (at n) other)

            Norm(n, int l "channels" 1 (at n), nk)
        | "spiking" ->
            let n = name ()
            let where = at n
            let ne = prop l "neuron" JsonValueKind.Object where
            let d = prop ne "dynamics" JsonValueKind.Object where

            let dynamics =
                match str d "type" where with
                | "lif" -> Dynamics.Lif(flt d "tau" where, bool d "decay_input" where)
                | "leaky" -> Dynamics.Leaky(flt d "lambda" where)
                | "mint" -> Dynamics.Mint(flt d "lambda" where)
                | "if" -> Dynamics.If
                | "plif" ->
                    let shape = ints d "w_shape" where

                    if shape |> Array.exists (fun x -> x <> 1) then
                        bad (sprintf "%s: w_shape %A is not the shape of a one-element tensor" where shape)

                    Dynamics.Plif(plif (full n + ".w") shape, bool d "decay_input" where)
                | other -> bad (sprintf "%s: unknown dynamics %A" where other)

            let r = prop ne "reset" JsonValueKind.Object where

            let reset =
                match str r "type" where with
                | "hard" -> Reset.Hard(flt r "v_reset" where)
                | "soft" -> Reset.Soft
                | other -> bad (sprintf "%s: unknown reset %A" where other)

            let s = prop ne "surrogate" JsonValueKind.Object where

            let surrogate =
                match str s "type" where with
                | "atan" -> Surrogate.ATan(flt s "alpha" where)
                | "sigmoid" -> Surrogate.Sigmoid(flt s "alpha" where)
                | "triangle" -> Surrogate.Triangle(flt s "width" where, flt s "scale" where)
                | "rectangle" -> Surrogate.Rectangle(flt s "width" where)
                | "gaussian" -> Surrogate.Gaussian(flt s "sigma" where)
                | other -> bad (sprintf "%s: unknown surrogate %A" where other)

            Spiking(
                n,
                {
                    Dynamics = dynamics
                    Threshold = flt ne "threshold" where
                    Reset = reset
                    DetachReset = bool ne "detach_reset" where
                    Surrogate = surrogate
                }
            )
        | "relu" -> Relu(name ())
        | "max_pool" -> MaxPool(int l "kernel" 1 where, int l "stride" 1 where)
        | "avg_pool" -> AvgPool(int l "kernel" 1 where, int l "stride" 1 where)
        | "adaptive_avg_pool" -> AdaptiveAvgPool(int l "out" 1 where)
        | "flatten" -> Flatten
        | "dropout" -> Dropout(flt l "p" where)
        | "residual" ->
            let n = name ()

            let k =
                match str l "kind" (at n) with
                | "add" -> ResidualKind.Add
                | "sew_add" -> ResidualKind.SewAdd
                | "sew_iand" -> ResidualKind.SewIAnd
                | "membrane" -> ResidualKind.Membrane
                | other -> bad (sprintf "%s: unknown residual kind %A" (at n) other)

            Residual(n, k, children n "main", children n "shortcut", children n "after")
        | "stage" ->
            let n = name ()
            Stage(n, children n "layers")
        | "repeat_over_time" -> RepeatOverTime
        | "stack_frames" -> StackFrames(int l "frames" 1 where)
        | "tap" -> Tap(name ())
        | other -> bad (sprintf "%s: unknown layer type %A" where other)

    /// Parses the JSON text; PLIF layers get <c>plif name shape</c> as their w. Raises
    /// ArchitectureJsonError (internal) describing the first problem.
    let internal parseWith (plif: string -> int[] -> Tensor) (json: string) : Architecture =
        use doc =
            try
                JsonDocument.Parse(json, JsonDocumentOptions(MaxDepth = 64))
            with :? JsonException as e ->
                bad (sprintf "not valid JSON (%s)" e.Message)

        let root = doc.RootElement

        {
            Name = str root "name" "the architecture"
            InputShape = ints root "input_shape" "the architecture"
            Classes = int root "classes" 1 "the architecture"
            Layers = readLayers plif "" (prop root "layers" JsonValueKind.Array "the architecture") "the architecture"
        }

    /// Parses the JSON text; PLIF layers get a zero w of the recorded shape (a checkpoint supplies
    /// the value). Raises a SnnSpecException describing the first problem.
    let read (json: string) : Architecture =
        try
            parseWith (fun _ shape -> Tensor.zeros shape) json
        with ArchitectureJsonError msg ->
            Errors.fail (sprintf "ArchitectureJson.read: %s. Fix: pass JSON written by ArchitectureJson.write." msg)
