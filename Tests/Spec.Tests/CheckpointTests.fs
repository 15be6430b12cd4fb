module SnnSpec.Tests.CheckpointTests

open System
open System.Diagnostics
open System.IO
open System.Text
open System.Text.Json
open System.Threading.Tasks
open NUnit.Framework
open FsCheck
open FsCheck.FSharp
open FsCheck.NUnit
open SnnSpec
open SnnSpec.IO
open SnnSpec.Tests.TestUtil

let tempDir () =
    let d =
        Path.Combine(Path.GetTempPath(), "snnspec-ckpt-" + Guid.NewGuid().ToString("N"))

    Directory.CreateDirectory d |> ignore
    d

let quarter = { ZooConfig.Mnist with Width = 0.25f }

let convNet () =
    Model.init 3 (ExecutionMode.Snn 4) (Zoo.convNet quarter)

let logits (m: Model) (x: Tensor) =
    (Model.forward ForwardContext.Eval m x).Logits

let assertSameParameters (what: string) (a: Parameters) (b: Parameters) =
    Assert.That(b.Names, Eq.To a.Names, what + " names")

    for n in a.Names do
        Assert.That(b[n].Shape, Eq.To a[n].Shape, what + " " + n)
        Assert.That(b[n].ToArray(), Eq.To(a[n].ToArray()), what + " " + n)

// ---------------------------------------------------------------- Round trips

[<Test>]
let ``a zoo ConvNet round-trips with identical parameters, buffers, architecture and outputs`` () =
    let m = convNet ()
    // Non-trivial buffers: one training-mode forward updates the BN running statistics.
    let x = randn 11 [| 3; 1; 28; 28 |]
    let trained = Model.forward (ForwardContext.Train(Rng.create 1)) m x

    let m = { m with Buffers = trained.Buffers }

    let path = Path.Combine(tempDir (), "convnet.safetensors")
    Checkpoint.save path (Checkpoint.ofModel m)
    let c = Checkpoint.load path

    assertSameParameters "parameters" m.Parameters c.Model.Parameters
    assertSameParameters "buffers" m.Buffers c.Model.Buffers
    Assert.That(c.Model.Mode, Eq.To(ExecutionMode.Snn 4))
    Assert.That(ArchitectureJson.write c.Model.Architecture, Eq.To(ArchitectureJson.write m.Architecture))
    Assert.That((logits c.Model x).ToArray(), Eq.To((logits m x).ToArray()))

    let into = Checkpoint.loadInto (convNet ()) path
    assertSameParameters "loadInto parameters" m.Parameters into.Model.Parameters
    Assert.That((logits into.Model x).ToArray(), Eq.To((logits m x).ToArray()))

[<Test>]
let ``tensorShapes lists exactly what Model.init creates for every zoo model`` () =
    let cifar =
        { ZooConfig.Cifar10 with
            Width = 0.125f
        }

    let mnist = { ZooConfig.Mnist with Width = 0.125f }

    let archs =
        [
            Zoo.mlp mnist [ 64; 32 ]
            Zoo.convNet mnist
            Zoo.vgg9 cifar
            Zoo.vgg11 mnist
            Zoo.resnet18 cifar
            Zoo.resnet19 mnist
            Zoo.msResnet18 cifar
            Zoo.sewResnet18 mnist ResidualKind.SewAdd
            Zoo.sewResnet18 cifar ResidualKind.SewIAnd
        ]

    for arch in archs do
        let m = Model.init 0 ExecutionMode.Ann arch
        let ps, bs = Checkpoint.tensorShapes arch

        let actual (p: Parameters) =
            [ for n, t in Parameters.toList p -> n, t.Shape ]

        Assert.That(ps, Eq.To(actual m.Parameters), arch.Name)
        Assert.That(bs, Eq.To(actual m.Buffers), arch.Name)
        // And the JSON form reads back to the same tree.
        let json = ArchitectureJson.write arch
        Assert.That(ArchitectureJson.write (ArchitectureJson.read json), Eq.To json, arch.Name)

[<Test>]
let ``every neuron, norm, residual and surrogate form survives the architecture JSON`` () =
    let neuron d r s =
        {
            Dynamics = d
            Threshold = 0.7f
            Reset = r
            DetachReset = true
            Surrogate = s
        }

    let arch =
        {
            Name = "all forms"
            InputShape = [| 1; 8; 8 |]
            Classes = 3
            Layers =
                [
                    Conv2d("c", 1, 2, 3, 1, 1, true)
                    Norm("n", 2, NormKind.ThresholdDependent(1.0f, 0.5f))
                    RepeatOverTime
                    Spiking("a", neuron (Dynamics.Lif(2.5f, false)) (Reset.Hard -0.1f) (Surrogate.ATan 2.0f))
                    Spiking("b", neuron (Dynamics.Leaky 0.3f) Reset.Soft (Surrogate.Sigmoid 4.0f))
                    Spiking("m", neuron (Dynamics.Mint 0.5f) Reset.Soft (Surrogate.Triangle(1.0f, 0.5f)))
                    Spiking("i", neuron Dynamics.If Reset.Soft (Surrogate.Rectangle 1.0f))
                    Residual(
                        "r",
                        ResidualKind.SewIAnd,
                        [ Relu "q"; Stage("s", [ Tap "t" ]) ],
                        [ AvgPool(1, 1) ],
                        [ Spiking("g", neuron Dynamics.If Reset.Soft (Surrogate.Gaussian 0.4f)) ]
                    )
                    MaxPool(2, 2)
                    AdaptiveAvgPool 1
                    Flatten
                    Dropout 0.1f
                    Linear("fc", 2, 3, false)
                ]
        }

    let json = ArchitectureJson.write arch
    Assert.That(ArchitectureJson.write (ArchitectureJson.read json), Eq.To json)
    Assert.That((ArchitectureJson.read json).Layers, Has.Length.EqualTo arch.Layers.Length)
    Assert.That(json, Does.Contain("\"threshold\":0.699999988079071"))

[<Test>]
let ``a PLIF model's learnable w is restored into both the parameters and the architecture`` () =
    let plif =
        { Neuron.lif with
            Dynamics = Dynamics.Plif(Tensor.scalar 0.25f, true)
        }

    let arch =
        {
            Name = "plif"
            InputShape = [| 4 |]
            Classes = 2
            Layers = [ Linear("fc1", 4, 3, true); Spiking("p", plif); Linear("fc", 3, 2, true) ]
        }

    let m = Model.init 0 (ExecutionMode.Snn 2) arch

    let m =
        { m with
            Parameters = Parameters.map (fun n t -> if n = "p.w" then Tensor.scalar -0.5f else t) m.Parameters
        }

    let path = Path.Combine(tempDir (), "plif.safetensors")
    Checkpoint.save path (Checkpoint.ofModel m)
    let c = Checkpoint.load path
    Assert.That(c.Model.Parameters["p.w"].ToArray(), Eq.To [| -0.5f |])

    match Architecture.layers c.Model.Architecture |> List.find (fun (n, _) -> n = "p") with
    | _, Spiking(_, { Dynamics = Dynamics.Plif(w, true) }) -> Assert.That(w.ToArray(), Eq.To [| -0.5f |])
    | other -> Assert.Fail(sprintf "unexpected layer %A" other)

[<Test>]
let ``a custom surrogate is refused with the layer's name and the old file is kept`` () =
    let dir = tempDir ()
    let path = Path.Combine(dir, "m.safetensors")
    let m = convNet ()
    Checkpoint.save path (Checkpoint.ofModel m)
    let before = File.ReadAllBytes path

    let custom =
        { Neuron.lif with
            Surrogate = Surrogate.Custom("mine", fun x -> x)
        }

    let arch = Zoo.convNet { quarter with Neuron = custom }

    assertRaises<SnnSpecException> [ "\"lif1\""; "Custom(mine)"; "Fix:" ] (fun () ->
        Checkpoint.save path (Checkpoint.ofModel (Model.init 0 (ExecutionMode.Snn 2) arch))
        |> box)

    Assert.That(File.ReadAllBytes path, Eq.To before)
    Assert.That(Directory.GetFiles dir, Has.Length.EqualTo 1, "no temporary file is left behind")

[<Test>]
let ``saving replaces an existing checkpoint atomically and leaves no temporary file`` () =
    let dir = tempDir ()
    let path = Path.Combine(dir, "m.safetensors")
    let a = convNet ()
    let b = Model.init 4 (ExecutionMode.Snn 2) (Zoo.convNet quarter)
    Checkpoint.save path (Checkpoint.ofModel a)
    Checkpoint.save path (Checkpoint.ofModel b)
    assertSameParameters "second save" b.Parameters (Checkpoint.load path).Model.Parameters
    Assert.That(Directory.GetFiles dir, Is.EquivalentTo [| path |])

/// A small MLP problem whose optimisation draws a fresh batch from the run's key at every step.
let resumeProblem () =
    let arch = Zoo.mlp { ZooConfig.Mnist with InputSize = 4 } [ 8 ]
    let m = Model.init 7 (ExecutionMode.Snn 2) arch

    let loss (rng: Rng) (ps: Parameters) =
        let x = Tensor.randn rng [| 5; 1; 4; 4 |]
        let target = Tensor.randn (Rng.fold 1 rng) [| 2; 5; 10 |]
        let y = (Model.apply (ForwardContext.Train rng) m ps x).Logits
        Tensor.mean ((y - target) * (y - target))

    let step (cfg: AdamConfig) (ps, state, rng: Rng) =
        let g = Parameters.grad (loss rng) ps
        let ps', state' = Optim.adam cfg state ps g
        ps', state', Rng.fold 99 rng

    m, step

[<Test>]
let ``optimizer state and RNG key round-trip and resuming reproduces an uninterrupted run`` () =
    let m, step = resumeProblem ()

    let cfg =
        { AdamConfig.Default with
            LearningRate = 0.01f
            Decoupled = true
            WeightDecay = 0.01f
        }

    let start = m.Parameters, OptimizerState.Empty, Rng.create 5
    let uninterrupted = start |> step cfg |> step cfg |> step cfg |> step cfg
    let ps2, st2, rng2 = start |> step cfg |> step cfg

    let path = Path.Combine(tempDir (), "resume.safetensors")

    Checkpoint.save
        path
        { Checkpoint.ofModel { m with Parameters = ps2 } with
            Training =
                Some
                    {
                        Epoch = 1
                        Step = 2L
                        Rng = rng2
                        Optimizer =
                            Some
                                {
                                    Kind = OptimizerKind.Adam cfg
                                    State = st2
                                }
                    }
            Quantization = Some """{"weights":{"bits":4}}"""
            Metadata = Map [ "run", "resume test" ]
        }

    let c = Checkpoint.load path
    let t = c.Training.Value
    Assert.That((t.Epoch, t.Step, t.Rng.Key), Eq.To((1, 2L, rng2.Key)))
    Assert.That(c.Quantization, Eq.To(Some """{"weights":{"bits":4}}"""))
    Assert.That(c.Metadata, Eq.To(Map [ "run", "resume test" ]))
    let o = t.Optimizer.Value

    match o.Kind with
    | OptimizerKind.Adam c2 -> Assert.That(c2, Eq.To cfg)
    | other -> Assert.Fail(sprintf "kind %A" other)

    Assert.That(o.State.Step, Eq.To st2.Step)
    assertSameParameters "first moment" st2.First.Value o.State.First.Value
    assertSameParameters "second moment" st2.Second.Value o.State.Second.Value

    let resumed = (c.Model.Parameters, o.State, t.Rng) |> step cfg |> step cfg
    let (a, _, _), (b, _, _) = uninterrupted, resumed
    assertSameParameters "resumed run" a b

[<Test>]
let ``SGD state with momentum only round-trips`` () =
    let m, _ = resumeProblem ()

    let cfg =
        { SgdConfig.Default with
            Nesterov = true
        }

    let g = Parameters.map (fun _ t -> Tensor.onesLike t) m.Parameters
    let ps, st = Optim.sgd cfg OptimizerState.Empty m.Parameters g
    let path = Path.Combine(tempDir (), "sgd.safetensors")

    Checkpoint.save
        path
        { Checkpoint.ofModel { m with Parameters = ps } with
            Training =
                Some
                    {
                        Epoch = 0
                        Step = 1L
                        Rng = Rng.create 1
                        Optimizer =
                            Some
                                {
                                    Kind = OptimizerKind.Sgd cfg
                                    State = st
                                }
                    }
        }

    let o = (Checkpoint.load path).Training.Value.Optimizer.Value
    Assert.That(o.Kind, Eq.To(OptimizerKind.Sgd cfg))
    Assert.That(o.State.Second, Is.EqualTo None)
    assertSameParameters "momentum" st.First.Value o.State.First.Value

// ---------------------------------------------------------------- Validation

[<Test>]
let ``loading into a model of another width names the mismatched shapes`` () =
    let path = Path.Combine(tempDir (), "m.safetensors")
    Checkpoint.save path (Checkpoint.ofModel (convNet ()))

    let half =
        Model.init 0 (ExecutionMode.Snn 4) (Zoo.convNet { quarter with Width = 0.5f })

    let e =
        Assert.Throws<CheckpointMismatchException>(fun () -> Checkpoint.loadInto half path |> ignore)

    Assert.That(e.Missing, Is.Empty)
    Assert.That(e.Unexpected, Is.Empty)
    Assert.That(e.Message, Does.Contain("conv1.weight has shape [8, 1, 3, 3], expected [16, 1, 3, 3]"))
    Assert.That(e.Message, Does.Contain("Fix:"))

[<Test>]
let ``loading into another architecture names missing and unexpected tensors`` () =
    let path = Path.Combine(tempDir (), "m.safetensors")
    Checkpoint.save path (Checkpoint.ofModel (convNet ()))
    let mlp = Model.init 0 (ExecutionMode.Snn 4) (Zoo.mlp quarter [ 16; 16 ])

    let e =
        Assert.Throws<CheckpointMismatchException>(fun () -> Checkpoint.loadInto mlp path |> ignore)

    Assert.That(e.Missing, Is.EquivalentTo [ "fc2.weight"; "fc2.bias" ])
    Assert.That(e.Message, Does.Contain("fc1.weight has shape [32, 784], expected [4, 784]"))
    Assert.That(e.Unexpected |> List.exists (fun s -> s.StartsWith "conv1.weight"), Is.True)
    Assert.That(e.Unexpected |> List.exists (fun s -> s.StartsWith "bn1.running_mean"), Is.True)
    Assert.That(e.Message, Does.Contain("unexpected ("))

[<Test>]
let ``integer tensors where float weights are expected are reported as mismatched`` () =
    let m = convNet ()
    let file = Checkpoint.toFile CheckpointSaveOptions.Default (Checkpoint.ofModel m)

    let tensors =
        file.Tensors
        |> List.map (fun t ->
            if t.Name = "fc.bias" then
                StoredTensor.ofInt8 t.Name t.Shape (Array.zeroCreate (StoredTensor.count t))
            else
                t)

    let bytes = SafeTensors.toBytes tensors file.Metadata

    let e =
        Assert.Throws<CheckpointMismatchException>(fun () ->
            Checkpoint.ofFile "x" (SafeTensors.ofBytes "x" bytes) |> ignore)

    Assert.That(e.Message, Does.Contain("fc.bias has dtype I8"))

[<Test>]
let ``F16, BF16, I8 and I32 tensors round-trip; F16 weights load as their rounded values`` () =
    let values = [| 1.0f; -2.5f; 3.14159f; 1e-3f; 65504.0f; 0.1f |]
    let f16 = StoredTensor.ofFloats "h" DType.F16 [| 2; 3 |] values
    let bf16 = StoredTensor.ofFloats "b" DType.BF16 [| 6 |] values
    let i8 = StoredTensor.ofInt8 "q" [| 3 |] [| -128y; 0y; 127y |]
    let i32 = StoredTensor.ofInt32 "z" [| 2 |] [| Int32.MinValue; 123456789 |]
    let bytes = SafeTensors.toBytes [ f16; bf16; i8; i32 ] (Map [ "k", "v" ])
    let back = SafeTensors.ofBytes "mem" bytes
    Assert.That(back.Metadata, Eq.To(Map [ "k", "v" ]))

    let get n =
        back.Tensors |> List.find (fun t -> t.Name = n)

    Assert.That(StoredTensor.toFloats (get "h"), Eq.To(values |> Array.map (fun v -> float32 (Half.op_Explicit v))))
    Assert.That((get "h").Shape, Eq.To [| 2; 3 |])
    // bfloat16 keeps 8 significant bits: relative error ≤ 2⁻⁹.
    for v, r in Array.zip values (StoredTensor.toFloats (get "b")) do
        Assert.That(abs (r - v), Is.LessThanOrEqualTo(abs v / 512.0f))

    Assert.That((StoredTensor.toFloats (get "b")).[0], Eq.To 1.0f)
    Assert.That(StoredTensor.toInt8 (get "q"), Eq.To [| -128y; 0y; 127y |])
    Assert.That(StoredTensor.toInt32 (get "z"), Eq.To [| Int32.MinValue; 123456789 |])
    // The data starts 8-byte aligned.
    Assert.That((8L + int64 (BitConverter.ToUInt64(bytes, 0))) % 8L, Eq.To 0L)

    let m = convNet ()
    let path = Path.Combine(tempDir (), "half.safetensors")

    let codes = StoredTensor.ofInt8 "fc.weight.codes" [| 2 |] [| 3y; -4y |]

    Checkpoint.saveWith
        { WeightDType = DType.F16 }
        path
        { Checkpoint.ofModel m with
            Extra = [ codes ]
        }

    let c = Checkpoint.loadInto m path
    let w = m.Parameters["conv1.weight"].ToArray()

    Assert.That(
        c.Model.Parameters["conv1.weight"].ToArray(),
        Eq.To(w |> Array.map (fun v -> float32 (Half.op_Explicit v)))
    )

    Assert.That(
        c.Extra |> List.map (fun t -> t.Name, StoredTensor.toInt8 t),
        Eq.To [ "fc.weight.codes", [| 3y; -4y |] ]
    )

/// Quantization plans that exercise every kind of tensor Model.quantize adds: shared and own
/// membrane scales, both membrane schemes, a full-precision layer and per-layer widths.
let quantConfigs () =
    let st = QuantPlan.structure (Zoo.convNet quarter)
    let second, _, _ = st.WeightLayers[1]
    let lif = st.Feeding |> Map.toList |> List.last |> fst

    [
        "mint 4", QuantConfig.Mint 4
        "integer 2", QuantConfig.Integer 2
        "full precision", QuantConfig.FullPrecision
        "own membrane scales",
        { QuantConfig.Mint 3 with
            ShareMembraneScale = false
            FullPrecisionLayers = Set.ofList [ second ]
        }
        "per layer",
        { QuantConfig.Integer 8 with
            FoldBatchNorm = false
            PerLayer =
                Map.ofList
                    [
                        second,
                        {
                            Weight = Bits.Fixed 2
                            Bias = Bits.FullPrecision
                            Membrane = Bits.Fixed 2
                        }
                        lif,
                        {
                            Weight = Bits.FullPrecision
                            Bias = Bits.FullPrecision
                            Membrane = Bits.Fixed 5
                        }
                    ]
        }
    ]

[<Test>]
let ``a quantized model loads back from its plan alone, with or without its configuration JSON`` () =
    for name, cfg in quantConfigs () do
        let m = convNet () |> Model.quantize cfg
        let x = randn 12 [| 2; 1; 28; 28 |]

        for withJson in [ true; false ] do
            let path =
                Path.Combine(tempDir (), sprintf "convnet.%s.%b.safetensors" name withJson)

            if withJson then
                SpecFile.saveModel path (Some cfg) Map.empty m
            else
                Checkpoint.save path (Checkpoint.ofModel m)

            for load in [ Checkpoint.load; SpecFile.loadModel ] do
                let back = load path
                assertSameParameters (name + " parameters") m.Parameters back.Model.Parameters
                assertSameParameters (name + " buffers") m.Buffers back.Model.Buffers
                Assert.That(Model.quantPlan back.Model, Is.EqualTo(Model.quantPlan m), name)
                Assert.That(back.Quantization.IsSome, Is.EqualTo withJson, name)
                Assert.That((logits back.Model x).ToArray(), Eq.To((logits m x).ToArray()), name)

[<Test>]
let ``plan values Model.quantize never writes are refused with the key`` () =
    let m = convNet () |> Model.quantize (QuantConfig.Mint 4)
    let st = QuantPlan.structure m.Architecture
    let second, _, _ = st.WeightLayers[1]

    let lif =
        st.Feeding |> Map.toList |> List.find (fun (_, src) -> src = Some second) |> fst

    for key, value in
        [
            QuantPlan.weightBitsKey second, 3.5f
            QuantPlan.weightBitsKey second, 40.0f
            QuantPlan.weightBitsKey second, nanf
            QuantPlan.foldKey second, 3.0f
            QuantPlan.membraneSchemeKey lif, 7.0f
            QuantPlan.membraneBitsKey lif, 0.0f
        ] do
        let damaged =
            { m with
                Buffers =
                    m.Buffers
                    |> Parameters.map (fun n t -> if n = key then Tensor.scalar value else t)
            }

        let path = Path.Combine(tempDir (), "damaged-plan.safetensors")
        Checkpoint.save path (Checkpoint.ofModel damaged)

        assertRaises<CheckpointFormatException> [ "quantization plan"; key ] (fun () -> box (Checkpoint.load path))

    // A shared membrane scale needs a quantized feeding layer: here its layer is full precision.
    let first, _, _ = st.WeightLayers[0]

    let own =
        convNet ()
        |> Model.quantize
            { QuantConfig.Mint 4 with
                ShareMembraneScale = false
                KeepFirstLayerFullPrecision = false
                FullPrecisionLayers = Set.ofList [ first ]
            }

    let fed =
        st.Feeding |> Map.toList |> List.find (fun (_, src) -> src = Some first) |> fst

    let shared =
        { own with
            Parameters =
                Parameters.ofList (
                    Parameters.toList own.Parameters
                    |> List.filter (fun (n, _) -> n <> fed + ".alpha")
                )
            Buffers =
                own.Buffers
                |> Parameters.map (fun n t ->
                    if n = QuantPlan.membraneSharedKey fed then
                        Tensor.scalar 1.0f
                    else
                        t)
        }

    let path = Path.Combine(tempDir (), "shared-fp.safetensors")
    Checkpoint.save path (Checkpoint.ofModel shared)
    assertRaises<CheckpointFormatException> [ "quantization plan"; fed; first ] (fun () -> box (Checkpoint.load path))

[<Test>]
let ``a quantized checkpoint missing a scale its plan needs names it`` () =
    let m = convNet () |> Model.quantize (QuantConfig.Mint 4)
    let alpha = m.Parameters.Names |> Array.find (fun n -> n.EndsWith ".alpha")

    let damaged =
        { m with
            Parameters = Parameters.ofList (Parameters.toList m.Parameters |> List.filter (fun (n, _) -> n <> alpha))
        }

    let path = Path.Combine(tempDir (), "convnet.noalpha.safetensors")
    Checkpoint.save path (Checkpoint.ofModel damaged)

    let e =
        Assert.Throws<CheckpointMismatchException>(fun () -> Checkpoint.load path |> ignore)

    Assert.That(e.Missing, Eq.To [ alpha ])

[<Test>]
let ``a truncated file names the offset and the fix`` () =
    let path = Path.Combine(tempDir (), "m.safetensors")
    Checkpoint.save path (Checkpoint.ofModel (convNet ()))
    let bytes = File.ReadAllBytes path
    File.WriteAllBytes(path, bytes[.. bytes.Length - 101])

    let e =
        Assert.Throws<CheckpointFormatException>(fun () -> Checkpoint.load path |> ignore)

    Assert.That(e.File, Eq.To path)
    Assert.That(e.Offset, Eq.To(int64 bytes.Length - 100L))
    Assert.That(e.Message, Does.Contain("Fix:"))
    Assert.That(e.Message, Does.Contain("do not lie within"))

    File.WriteAllBytes(path, bytes[..5])

    let e =
        Assert.Throws<CheckpointFormatException>(fun () -> Checkpoint.load path |> ignore)

    Assert.That(e.Offset, Eq.To 0L)

[<Test>]
let ``a plain safetensors file is recognised as not being a checkpoint`` () =
    let path = Path.Combine(tempDir (), "plain.safetensors")
    SafeTensors.write path [ StoredTensor.ofTensor "w" (Tensor.ones [| 2 |]) ] Map.empty

    assertRaises<CheckpointFormatException> [ "not an SnnSpec checkpoint"; "SafeTensors.read" ] (fun () ->
        Checkpoint.load path |> box)

    Assert.That((SafeTensors.read path).Tensors.Head.Name, Eq.To "w")

// ---------------------------------------------------------------- Independent reader

/// A safetensors reader using Python's standard library only. It checks the layout rules
/// (8-byte length, JSON header, offsets tiling the data buffer) and compares names, dtypes,
/// shapes and leading values with the expectations file given as its second argument.
let pythonReader =
    """
import json, struct, sys

path, expect_path = sys.argv[1], sys.argv[2]
with open(path, 'rb') as f:
    blob = f.read()
(n,) = struct.unpack('<Q', blob[:8])
header = json.loads(blob[8:8 + n].decode('utf-8'))
data = blob[8 + n:]
meta = header.pop('__metadata__', {})
sizes = {'F32': 4, 'F16': 2, 'BF16': 2, 'I8': 1, 'I32': 4}
spans = sorted(tuple(v['data_offsets']) for v in header.values())
pos = 0
for b, e in spans:
    assert b == pos, 'hole or overlap at %d' % b
    pos = e
assert pos == len(data), 'trailing bytes'

def values(entry, count):
    b, e = entry['data_offsets']
    raw = data[b:e]
    dt = entry['dtype']
    if dt == 'BF16':
        return [struct.unpack('<f', struct.pack('<I', h << 16))[0] for h in struct.unpack('<%dH' % count, raw[:2 * count])]
    code = {'F32': 'f', 'F16': 'e', 'I8': 'b', 'I32': 'i'}[dt]
    return list(struct.unpack('<%d%s' % (count, code), raw[:sizes[dt] * count]))

expect = json.load(open(expect_path))
assert sorted(header) == sorted(expect['tensors']), 'names differ: %s' % sorted(set(header) ^ set(expect['tensors']))
for name, want in expect['tensors'].items():
    got = header[name]
    assert got['dtype'] == want['dtype'], name
    assert got['shape'] == want['shape'], (name, got['shape'], want['shape'])
    count = 1
    for d in got['shape']:
        count *= d
    assert got['data_offsets'][1] - got['data_offsets'][0] == count * sizes[got['dtype']], name
    head = values(got, len(want['head']))
    assert head == want['head'], (name, head, want['head'])
for key, want in expect['metadata'].items():
    assert meta[key] == want, (key, meta.get(key))
arch = json.loads(meta['architecture'])
assert arch['name'] == expect['architecture_name'], arch['name']
training = json.loads(meta['training'])
assert training['rng_key'] == expect['rng_key'], training['rng_key']
print('ok %d tensors' % len(header))
"""

let tryPython () =
    let candidates = [ "/usr/bin/python3"; "/usr/local/bin/python3" ]

    let onPath =
        (Environment.GetEnvironmentVariable "PATH"
         |> Option.ofObj
         |> Option.defaultValue "")
            .Split
            ':'
        |> Array.map (fun d -> Path.Combine(d, "python3"))
        |> List.ofArray

    candidates @ onPath |> List.tryFind File.Exists

let run (exe: string) (args: string list) =
    let psi = ProcessStartInfo(exe)

    for a in args do
        psi.ArgumentList.Add a

    psi.RedirectStandardOutput <- true
    psi.RedirectStandardError <- true
    use p = Process.Start psi
    let out = p.StandardOutput.ReadToEndAsync()
    let err = p.StandardError.ReadToEndAsync()

    if not (p.WaitForExit 120_000) then
        p.Kill true
        Assert.Fail(sprintf "%s did not finish in 120 s" exe)

    p.ExitCode, out.Result, err.Result

[<Test>]
let ``a checkpoint reads back through an independent Python standard-library reader`` () =
    match tryPython () with
    | None -> Assert.Ignore "python3 is not installed; the independent reader needs it"
    | Some python ->
        let dir = tempDir ()
        let m = convNet ()

        let state =
            {
                Step = 3
                First = Some(Parameters.map (fun _ t -> t * 0.5f) m.Parameters)
                Second = None
            }

        let rng = Rng.create 42
        let path = Path.Combine(dir, "m.safetensors")

        let extra =
            [
                StoredTensor.ofInt8 "codes" [| 4 |] [| -3y; 0y; 5y; 127y |]
                StoredTensor.ofInt32 "acc" [| 2 |] [| -70000; 9 |]
                StoredTensor.ofFloats "half" DType.F16 [| 2 |] [| 0.5f; -1.25f |]
                StoredTensor.ofFloats "brain" DType.BF16 [| 2 |] [| 3.0f; -0.375f |]
            ]

        Checkpoint.save
            path
            { Checkpoint.ofModel m with
                Extra = extra
                Training =
                    Some
                        {
                            Epoch = 2
                            Step = 30L
                            Rng = rng
                            Optimizer =
                                Some
                                    {
                                        Kind = OptimizerKind.Sgd SgdConfig.Default
                                        State = state
                                    }
                        }
            }

        let head (t: Tensor) =
            t.ToArray() |> Array.truncate 3 |> Array.map float

        let entry (dtype: string) (shape: int[]) (head: float[]) =
            dict [ "dtype", box dtype; "shape", box shape; "head", box head ]

        let tensors =
            [
                for n, t in Parameters.toList m.Parameters @ Parameters.toList m.Buffers ->
                    n, entry "F32" t.Shape (head t)
                for n, t in Parameters.toList state.First.Value -> "optimizer.first." + n, entry "F32" t.Shape (head t)
                yield "extra.codes", entry "I8" [| 4 |] [| -3.0; 0.0; 5.0 |]
                yield "extra.acc", entry "I32" [| 2 |] [| -70000.0; 9.0 |]
                yield "extra.half", entry "F16" [| 2 |] [| 0.5; -1.25 |]
                yield "extra.brain", entry "BF16" [| 2 |] [| 3.0; -0.375 |]
            ]
            |> dict

        let expect =
            dict
                [
                    "tensors", box tensors
                    "metadata",
                    box (
                        dict
                            [
                                "format", "snnspec.checkpoint"
                                "schema_version", "1"
                                "mode", "snn"
                                "timesteps", "4"
                            ]
                    )
                    "architecture_name", box m.Architecture.Name
                    "rng_key", box (rng.Key.ToString "x16")
                ]

        let expectPath = Path.Combine(dir, "expect.json")
        File.WriteAllText(expectPath, JsonSerializer.Serialize expect)
        let script = Path.Combine(dir, "reader.py")
        File.WriteAllText(script, pythonReader)
        let code, out, err = run python [ script; path; expectPath ]
        Assert.That(code, Eq.To 0, sprintf "python reader failed:\n%s\n%s" out err)
        Assert.That(out, Does.StartWith "ok ")

// ---------------------------------------------------------------- Robustness

/// Runs a reader on its own thread with a time limit; returns the exception it threw (or null) and
/// the bytes it allocated.
let runGuarded (f: unit -> unit) =
    let t =
        Task.Run(fun () ->
            let before = GC.GetAllocatedBytesForCurrentThread()

            let err =
                try
                    f ()
                    null
                with e ->
                    e

            err, GC.GetAllocatedBytesForCurrentThread() - before)

    if not (t.Wait(TimeSpan.FromSeconds 20.0)) then
        Assert.Fail "the reader did not finish within 20 s"

    t.Result

type Mutation =
    | Random of byte[]
    | Flip of index: int * value: byte
    /// A change inside the header, where most of the structure lives.
    | HeaderFlip of index: int * value: byte
    | Cut of keep: int
    | LengthField of uint64

let genMutation =
    let b = Gen.choose (0, 255) |> Gen.map byte

    Gen.oneof
        [
            Gen.arrayOf b |> Gen.map Random
            Gen.zip (Gen.choose (0, 1 <<< 20)) b |> Gen.map Flip
            Gen.zip (Gen.choose (0, 1 <<< 20)) b |> Gen.map HeaderFlip
            Gen.choose (0, 1 <<< 20) |> Gen.map Cut
            Gen.oneof
                [
                    Gen.constant UInt64.MaxValue
                    Gen.constant (1UL <<< 40)
                    Gen.choose (0, 100000) |> Gen.map uint64
                ]
            |> Gen.map LengthField
        ]

type MutationArbs =
    static member Mutation() = Arb.fromGen genMutation

let validCheckpoint =
    let arch = Zoo.mlp { ZooConfig.Mnist with InputSize = 4 } [ 6 ]
    let m = Model.init 1 (ExecutionMode.Snn 2) arch

    let c =
        { Checkpoint.ofModel m with
            Training =
                Some
                    {
                        Epoch = 1
                        Step = 2L
                        Rng = Rng.create 3
                        Optimizer =
                            Some
                                {
                                    Kind = OptimizerKind.Adam AdamConfig.Default
                                    State =
                                        {
                                            Step = 2
                                            First = Some m.Parameters
                                            Second = Some m.Parameters
                                        }
                                }
                    }
            Extra = [ StoredTensor.ofInt8 "q" [| 2 |] [| 1y; 2y |] ]
        }

    let f = Checkpoint.toFile CheckpointSaveOptions.Default c
    SafeTensors.toBytes f.Tensors f.Metadata

let mutate (valid: byte[]) m =
    match m with
    | Random b -> b
    | Flip(i, v) ->
        let c = Array.copy valid
        c[i % c.Length] <- v
        c
    | HeaderFlip(i, v) ->
        let c = Array.copy valid
        let n = int (BitConverter.ToUInt64(valid, 0))
        c[8 + i % n] <- v
        c
    | Cut k -> valid[.. (k % (valid.Length + 1)) - 1]
    | LengthField n ->
        let c = Array.copy valid
        BitConverter.GetBytes(n).CopyTo(c, 0)
        c

let robustDir = tempDir ()

[<Property(Arbitrary = [| typeof<MutationArbs> |], MaxTest = 300)>]
let ``damaged checkpoints only raise CheckpointFormatException, never hang and allocate in proportion`` (m: Mutation) =
    let bytes = mutate validCheckpoint m
    let path = Path.Combine(robustDir, Guid.NewGuid().ToString("N") + ".safetensors")
    File.WriteAllBytes(path, bytes)
    let err, allocated = runGuarded (fun () -> Checkpoint.load path |> ignore)

    match err with
    | null
    | :? CheckpointFormatException -> ()
    | e -> Assert.Fail(sprintf "%A raised %s: %s" m (e.GetType().Name) e.Message)

    if allocated > 16L * bytes.LongLength + (1L <<< 20) then
        Assert.Fail(sprintf "allocated %d bytes for a %d-byte file" allocated bytes.Length)

    File.Delete path
    true

[<Test>]
let ``the unmutated robustness sample loads`` () =
    let c = Checkpoint.ofFile "sample" (SafeTensors.ofBytes "sample" validCheckpoint)
    Assert.That(c.Training.Value.Optimizer.Value.State.Second.IsSome, Is.True)
