namespace SnnSpec.IO

open System
open System.IO
open System.Text
open System.Text.Json
open SnnSpec

/// The integer export file: a quantized model's checkpoint (Checkpoint.save; it loads anywhere a
/// checkpoint does) that also carries IntegerExport.export's integer view with every quantization
/// parameter explicit, for hardware and tools outside .NET (docs/integer-export.md).
///
/// Tensors, besides the checkpoint's: "extra.int.&lt;layer&gt;.weight_codes" (I8 for b ≤ 8, else I32;
/// the layer's weight shape, codes in −Levels…Levels) and "extra.int.&lt;layer&gt;.bias_codes" (I32,
/// [O]) where the bias is on the weight grid. Metadata "user.integer_export" is a JSON object
/// <c>{"version": 1, "architecture", "layers": [{"name", "kind", "shape", "bits", "levels", "alpha",
/// "step", "stride", "padding", "folded_norm", "weight_codes", "bias_codes", "neuron": null or
/// {"name", "threshold", "threshold_units", "leak_shift", "membrane_bits", "levels", "scheme"}}]}</c>
/// in forward order; a weight's value is step·code.
module IntegerExportFile =
    /// The metadata key (under "user.") holding the layer descriptions.
    [<Literal>]
    let MetadataKey = "integer_export"

    /// The version written; later versions are refused.
    [<Literal>]
    let Version = 1

    let private weightName (layer: string) = "int." + layer + ".weight_codes"
    let private biasName (layer: string) = "int." + layer + ".bias_codes"

    let private schemeName (s: MembraneScheme) =
        match s with
        | MembraneScheme.Uniform -> "uniform"
        | MembraneScheme.Mint -> "mint"

    /// The layer descriptions as the JSON the file stores.
    let toJson (im: IntegerModel) =
        use ms = new MemoryStream()

        (use w = new Utf8JsonWriter(ms)
         w.WriteStartObject()
         w.WriteNumber("version", Version)
         w.WriteString("architecture", im.Architecture)
         w.WriteStartArray "layers"

         for l in im.Layers do
             w.WriteStartObject()
             w.WriteString("name", l.Name)
             w.WriteString("kind", l.Kind)
             w.WriteStartArray "shape"

             for d in l.Shape do
                 w.WriteNumberValue d

             w.WriteEndArray()
             w.WriteNumber("bits", l.Bits)
             w.WriteNumber("levels", l.Levels)
             w.WriteNumber("alpha", l.Alpha)
             w.WriteNumber("step", l.Step)
             w.WriteNumber("stride", l.Stride)
             w.WriteNumber("padding", l.Padding)

             match l.FoldedNorm with
             | Some n -> w.WriteString("folded_norm", n)
             | None -> w.WriteNull "folded_norm"

             w.WriteString("weight_codes", "extra." + weightName l.Name)

             match l.Bias with
             | Some _ -> w.WriteString("bias_codes", "extra." + biasName l.Name)
             | None -> w.WriteNull "bias_codes"

             match l.Neuron with
             | Some n ->
                 w.WriteStartObject "neuron"
                 w.WriteString("name", n.Name)
                 w.WriteNumber("threshold", n.Threshold)
                 w.WriteNumber("threshold_units", n.ThresholdUnits)
                 w.WriteNumber("leak_shift", n.LeakShift)
                 w.WriteNumber("membrane_bits", n.MembraneBits)
                 w.WriteNumber("levels", n.Levels)
                 w.WriteString("scheme", schemeName n.Scheme)
                 w.WriteEndObject()
             | None -> w.WriteNull "neuron"

             w.WriteEndObject()

         w.WriteEndArray()
         w.WriteEndObject())

        Encoding.UTF8.GetString(ms.ToArray())

    /// The checkpoint of a quantized model with its integer export (IntegerExport.export) attached;
    /// <c>quantization</c> is the configuration JSON to record, when known.
    let ofModel (quantization: string option) (metadata: Map<string, string>) (m: Model) : Checkpoint =
        let im = IntegerExport.export m

        let extras =
            [
                for l in im.Layers do
                    if l.Bits <= 8 then
                        StoredTensor.ofInt8 (weightName l.Name) l.Shape (l.WeightsInt8())
                    else
                        StoredTensor.ofInt32 (weightName l.Name) l.Shape l.Weights

                    match l.Bias with
                    | Some b -> StoredTensor.ofInt32 (biasName l.Name) [| b.Length |] b
                    | None -> ()
            ]

        { Checkpoint.ofModel m with
            Quantization = quantization
            Extra = extras
            Metadata = metadata.Add(MetadataKey, toJson im)
        }

    /// Writes a quantized model with its integer export atomically.
    let save (path: string) (quantization: string option) (metadata: Map<string, string>) (m: Model) =
        match Path.GetDirectoryName(Path.GetFullPath path) with
        | null -> ()
        | dir -> Directory.CreateDirectory dir |> ignore

        Checkpoint.save path (ofModel quantization metadata m)

    let private fail (path: string) (problem: string) (fix: string) : 'a =
        raise (CheckpointFormatException(path, 8L, problem, fix))

    /// The integer export stored in a checkpoint, checked: every JSON field, and every layer's codes
    /// present with the declared shape and equal to what IntegerExport.export computes from the
    /// stored model (so within ±levels, and the file's two views of the model cannot disagree).
    let ofCheckpoint (path: string) (c: Checkpoint) : IntegerModel =
        let damaged =
            "the file was edited or damaged; export it again (snnspec export) from the quantized checkpoint"

        let json =
            match c.Metadata.TryFind MetadataKey with
            | Some j -> j
            | None ->
                fail
                    path
                    "the checkpoint holds no integer export (no \"user.integer_export\" metadata)"
                    "write one with snnspec export (IntegerExportFile.save) from a quantized checkpoint"

        let expected = IntegerExport.export c.Model

        let extras = c.Extra |> List.map (fun t -> t.Name, t) |> Map.ofList

        let root =
            try
                JsonDocument.Parse(json).RootElement.Clone()
            with :? JsonException as e ->
                fail path ("the integer export metadata is not valid JSON: " + e.Message) damaged

        if root.ValueKind <> JsonValueKind.Object then
            fail path "the integer export metadata is not a JSON object" damaged

        let version =
            match root.TryGetProperty "version" with
            | true, v when v.ValueKind = JsonValueKind.Number ->
                match v.TryGetInt32() with
                | true, n when n >= 1 -> n
                | _ ->
                    fail
                        path
                        (sprintf "the integer export's version %s is not a positive integer" (v.GetRawText()))
                        damaged
            | _ -> fail path "the integer export metadata has no \"version\"" damaged

        if version > Version then
            fail
                path
                (sprintf "the integer export has version %d; this SnnSpec reads versions up to %d" version Version)
                "upgrade SnnSpec to a version that reads it"

        let layers =
            match root.TryGetProperty "layers" with
            | true, v when v.ValueKind = JsonValueKind.Array -> [ for e in v.EnumerateArray() -> e ]
            | _ -> fail path "the integer export metadata has no \"layers\" array" damaged

        if layers.Length <> expected.Layers.Length then
            fail
                path
                (sprintf
                    "the integer export lists %d layers but the stored model exports %d"
                    layers.Length
                    expected.Layers.Length)
                damaged

        let codes (layer: string) (name: string) =
            match extras.TryFind name with
            | None -> fail path (sprintf "layer %s: the tensor %s is missing" layer name) damaged
            | Some t when t.DType = DType.I8 -> StoredTensor.toInt8 t |> Array.map int, t.Shape
            | Some t when t.DType = DType.I32 -> StoredTensor.toInt32 t, t.Shape
            | Some t ->
                fail path (sprintf "layer %s: %s has dtype %s, not I8 or I32" layer name (DType.name t.DType)) damaged

        // Every field the JSON states must be what the stored model exports: outside tools read it.
        let check (what: string) (e: JsonElement) (key: string) (ok: JsonElement -> bool) =
            let found, v =
                if e.ValueKind = JsonValueKind.Object then
                    e.TryGetProperty key
                else
                    false, JsonElement()

            if not found then
                fail path (sprintf "%s has no \"%s\"" what key) damaged

            let fits =
                try
                    ok v
                with
                | :? InvalidOperationException
                | :? FormatException -> false

            if not fits then
                fail path (sprintf "%s: \"%s\" = %s disagrees with the stored model" what key (v.GetRawText())) damaged

        let int (n: int) (v: JsonElement) =
            v.ValueKind = JsonValueKind.Number
            && (match v.TryGetInt32() with
                | true, x -> x = n
                | _ -> false)

        let single (x: float32) (v: JsonElement) =
            v.ValueKind = JsonValueKind.Number && v.GetSingle() = x

        let text (t: string) (v: JsonElement) =
            v.ValueKind = JsonValueKind.String && v.GetString() = t

        let textOrNull (t: string option) (v: JsonElement) =
            match t with
            | Some t -> text t v
            | None -> v.ValueKind = JsonValueKind.Null

        check "the integer export" root "architecture" (text expected.Architecture)

        for e, l in List.zip layers expected.Layers do
            let what = sprintf "integer export layer %s" l.Name
            check what e "name" (text l.Name)
            let name = l.Name
            check what e "kind" (text l.Kind)

            check what e "shape" (fun v ->
                v.ValueKind = JsonValueKind.Array
                && v.GetArrayLength() = l.Shape.Length
                && Seq.forall2 (fun (d: JsonElement) n -> int n d) (v.EnumerateArray()) l.Shape)

            check what e "bits" (int l.Bits)
            check what e "levels" (int l.Levels)
            check what e "alpha" (single l.Alpha)
            check what e "step" (single l.Step)
            check what e "stride" (int l.Stride)
            check what e "padding" (int l.Padding)
            check what e "folded_norm" (textOrNull l.FoldedNorm)
            check what e "weight_codes" (text ("extra." + weightName name))
            check what e "bias_codes" (textOrNull (l.Bias |> Option.map (fun _ -> "extra." + biasName name)))

            match l.Neuron with
            | None -> check what e "neuron" (fun v -> v.ValueKind = JsonValueKind.Null)
            | Some n ->
                let j =
                    match e.TryGetProperty "neuron" with
                    | true, v when v.ValueKind = JsonValueKind.Object -> v
                    | _ ->
                        fail
                            path
                            (sprintf "%s has no \"neuron\" object; the model feeds %s in integers" what n.Name)
                            damaged

                let who = sprintf "%s, neuron %s" what n.Name
                check who j "name" (text n.Name)
                check who j "threshold" (int n.Threshold)
                check who j "threshold_units" (single n.ThresholdUnits)
                check who j "leak_shift" (int n.LeakShift)
                check who j "membrane_bits" (int n.MembraneBits)
                check who j "levels" (int n.Levels)
                check who j "scheme" (text (schemeName n.Scheme))

            let w, shape = codes name (weightName name)

            if shape <> l.Shape then
                fail
                    path
                    (sprintf
                        "layer %s: weight codes of shape %s, the layer's weight is %s"
                        name
                        (Errors.showShape shape)
                        (Errors.showShape l.Shape))
                    damaged

            match Seq.tryFindIndex id (Seq.map2 (<>) w l.Weights) with
            | Some i ->
                fail
                    path
                    (sprintf
                        "layer %s: weight code %d at %d disagrees with the stored weights (they give %d)"
                        name
                        w[i]
                        i
                        l.Weights[i])
                    damaged
            | None -> ()

            match l.Bias with
            | Some b ->
                let got, _ = codes name (biasName name)

                if got <> b then
                    fail path (sprintf "layer %s: the bias codes disagree with the stored bias" name) damaged
            | None -> ()

        expected

    /// Reads an integer export file: the checkpoint (Checkpoint.load) and its checked integer view.
    let read (path: string) : Checkpoint * IntegerModel =
        let c = Checkpoint.load path
        c, ofCheckpoint path c
