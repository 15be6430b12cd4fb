/// IntegerExportFile: a quantized checkpoint that also carries its integer view, checked on read.
module SnnSpec.Tests.IntegerExportFileTests

open System.IO
open System.Text.Json
open NUnit.Framework
open SnnSpec
open SnnSpec.IO
open SnnSpec.Tests.TestUtil

let private images = QuantModelTests.images

/// A quantized ConvNet with running statistics and post-training scales, so that its integer
/// pairs fire.
let private quantized (bits: int) =
    let x = images 40 8
    let m = Model.init 7 (ExecutionMode.Snn 3) (Zoo.convNet QuantModelTests.tinyCfg)

    let m =
        { m with
            Buffers = (Model.forward (ForwardContext.Train(Rng.create 1)) m x).Buffers
        }

    Model.quantize (QuantConfig.Integer bits) m
    |> Model.calibrateScales x
    |> QuantTrajectory.fitScales 6 x

let private tempFile (name: string) =
    let d =
        Path.Combine(Path.GetTempPath(), "snnspec-intexport-" + string (System.Guid.NewGuid()))

    Directory.CreateDirectory d |> ignore
    Path.Combine(d, name)

[<Test>]
let ``an integer export reads back to the same integer model and runs the same integer path`` () =
    for bits in [ 4; 8; 12 ] do
        let m = quantized bits
        let path = tempFile (sprintf "q%d.int.safetensors" bits)
        IntegerExportFile.save path (Some "{}") (Map.ofList [ "note", "kept" ]) m
        let c, im = IntegerExportFile.read path
        let expected = IntegerExport.export m
        Assert.That(im, Is.EqualTo expected, sprintf "%d bits" bits)
        Assert.That(c.Metadata["note"], Is.EqualTo "kept")
        Assert.That(c.Quantization, Is.EqualTo(Some "{}"))
        // The extras are the codes, I8 up to 8 bits, I32 above.
        let codes = c.Extra |> List.find (fun t -> t.Name = "int.conv2.weight_codes")
        Assert.That(codes.DType, Is.EqualTo(if bits <= 8 then DType.I8 else DType.I32))
        Assert.That(codes.Shape, Eq.To (expected.Layer "conv2").Shape)

        let x = images 41 4
        let a, ranA = IntegerExport.run expected ProbeRequest.None m x
        let b, ranB = IntegerExport.run im ProbeRequest.None c.Model x
        Assert.That((ranB = ranA), sprintf "%A vs %A" ranB ranA)
        Assert.That(ranA, Is.Not.Empty, "some layer runs in the integer datapath")
        Assert.That(b.Logits.ToArray(), Eq.To(a.Logits.ToArray()))

[<Test>]
let ``the layer descriptions state every quantization parameter`` () =
    let m = quantized 4
    let im = IntegerExport.export m
    use doc = JsonDocument.Parse(IntegerExportFile.toJson im)
    let root = doc.RootElement
    Assert.That(root.GetProperty("version").GetInt32(), Is.EqualTo IntegerExportFile.Version)
    let layers = [ for e in root.GetProperty("layers").EnumerateArray() -> e ]

    Assert.That(
        layers |> List.map (fun e -> e.GetProperty("name").GetString()),
        Eq.To(im.Layers |> List.map (fun l -> l.Name))
    )

    for e, l in List.zip layers im.Layers do
        Assert.That(e.GetProperty("bits").GetInt32(), Is.EqualTo l.Bits)
        Assert.That(e.GetProperty("levels").GetInt32(), Is.EqualTo l.Levels)
        Assert.That(e.GetProperty("alpha").GetSingle(), Is.EqualTo l.Alpha)
        Assert.That(e.GetProperty("step").GetSingle(), Is.EqualTo l.Step)
        Assert.That([ for d in e.GetProperty("shape").EnumerateArray() -> d.GetInt32() ], Eq.To(List.ofArray l.Shape))
        Assert.That(e.GetProperty("weight_codes").GetString(), Is.EqualTo("extra.int." + l.Name + ".weight_codes"))

        match l.Neuron with
        | Some n ->
            let j = e.GetProperty "neuron"
            Assert.That(j.GetProperty("threshold").GetInt32(), Is.EqualTo n.Threshold)
            Assert.That(j.GetProperty("leak_shift").GetInt32(), Is.EqualTo n.LeakShift)
            Assert.That(j.GetProperty("threshold_units").GetSingle(), Is.EqualTo n.ThresholdUnits)
            Assert.That(j.GetProperty("scheme").GetString(), Is.EqualTo "uniform")
        | None -> Assert.That(e.GetProperty("neuron").ValueKind, Is.EqualTo JsonValueKind.Null)

[<Test>]
let ``an edited code, a missing tensor or a plain checkpoint is refused by name`` () =
    let m = quantized 4
    let path = tempFile "q4.int.safetensors"
    IntegerExportFile.save path None Map.empty m
    let file = SafeTensors.read path

    let rewrite (name: string) (f: StoredTensor list -> StoredTensor list) =
        let p = tempFile name
        SafeTensors.write p (f file.Tensors) file.Metadata
        p

    let edited =
        rewrite
            "edited.safetensors"
            (List.map (fun t ->
                if t.Name = "extra.int.fc1.weight_codes" then
                    let d = Array.copy t.Data
                    d[0] <- byte ((sbyte d[0]) + 1y)
                    { t with Data = d }
                else
                    t))

    assertRaises<CheckpointFormatException> [ "fc1"; "disagrees"; "snnspec export" ] (fun () ->
        box (IntegerExportFile.read edited))

    let missing =
        rewrite "missing.safetensors" (List.filter (fun t -> t.Name <> "extra.int.conv2.weight_codes"))

    assertRaises<CheckpointFormatException> [ "conv2"; "missing" ] (fun () -> box (IntegerExportFile.read missing))

    // The JSON outside tools read is checked too, field by field.
    let json = file.Metadata["user.integer_export"]
    let im = IntegerExport.export m
    let neuron = (im.Layers |> List.find (fun l -> l.Neuron.IsSome)).Neuron.Value

    let withJson (name: string) (edit: string -> string) =
        let p = tempFile name
        SafeTensors.write p file.Tensors (file.Metadata.Add("user.integer_export", edit json))
        p

    let threshold = sprintf "\"threshold\":%d" neuron.Threshold
    Assert.That(json, Does.Contain threshold)

    let edited =
        withJson "threshold.safetensors" (fun j ->
            j.Replace(threshold, sprintf "\"threshold\":%d" (neuron.Threshold + 1)))

    assertRaises<CheckpointFormatException> [ neuron.Name; "threshold"; "disagrees" ] (fun () ->
        box (IntegerExportFile.read edited))

    for bad, words in
        [
            (fun (j: string) -> j.Replace("\"version\":1", "\"version\":1.5")), [ "version"; "1.5" ]
            (fun (j: string) -> j.Replace("\"version\":1", "\"version\":0")), [ "version" ]
            (fun (_: string) -> "[1, 2]"), [ "not a JSON object" ]
            (fun (j: string) -> j.Replace("\"layers\":[{", "\"layers\":[7,{")), [ "lists" ]
        ] do
        let p = withJson "bad.safetensors" bad
        assertRaises<CheckpointFormatException> words (fun () -> box (IntegerExportFile.read p))

    let plain = tempFile "plain.safetensors"
    Checkpoint.save plain (Checkpoint.ofModel m)

    assertRaises<CheckpointFormatException> [ "no integer export"; "snnspec export" ] (fun () ->
        box (IntegerExportFile.read plain))
