/// Functional crossbar inference of an integer-exported quantized SNN against the integer path.
module SnnSpec.HwSim.Tests.CrossbarInferenceTests

open System
open NUnit.Framework
open SnnSpec
open SnnSpec.HwSim
open SnnSpec.HwSim.Tests.Helpers

// As the quantization tests build it: θ = 0.25, α = max|tanh W| so that the deeper layers fire, and
// running statistics from training passes so that the folded weights are non-trivial.
let private tinyCfg =
    { ZooConfig.Mnist with
        InputSize = 8
        Width = 0.25f
        Neuron = { Neuron.mint with Threshold = 0.25f }
    }

let private images seed n =
    Tensor.uniform (Rng.create seed) 0.0f 1.0f [| n; 1; 8; 8 |]

let private quantModel (bits: int) =
    let m =
        Model.init 31 (ExecutionMode.Snn 3) (Zoo.convNet tinyCfg)
        |> Model.quantize (QuantConfig.Integer bits)

    let mutable m =
        { m with
            Parameters =
                m.Parameters
                |> Parameters.map (fun n t ->
                    if n.EndsWith ".alpha" then
                        let w = m.Parameters[n.Replace(".alpha", ".weight")]
                        Tensor.max (Tensor.abs (Tensor.tanh w))
                    else
                        t)
        }

    let x = images 32 6

    for i in 1..20 do
        m <-
            { m with
                Buffers = (Model.forward (ForwardContext.Train(Rng.create i)) m x).Buffers
            }

    m

let private models = lazy ([ 4; 8 ] |> List.map (fun b -> b, quantModel b))

let private probes =
    { ProbeRequest.None with
        Spikes = set [ "lif2"; "lif_fc1" ]
        Membranes = set [ "lif2"; "lif_fc1" ]
    }

let private same (what: string) (expected: 'T[]) (actual: 'T[]) =
    if expected.Length <> actual.Length then
        Assert.Fail(sprintf "%s: %d values, expected %d" what actual.Length expected.Length)

    match Array.tryFindIndex id (Array.map2 (fun a b -> a <> b) expected actual) with
    | Some i -> Assert.Fail(sprintf "%s: index %d is %A, expected %A" what i actual[i] expected[i])
    | None -> ()

let private crossbarRun (o: CrossbarOptions) (m: Model) (x: Tensor) =
    CrossbarInference.runProgrammed (CrossbarInference.prepare o m) probes x

/// Logits and the probed spikes, concatenated, for comparisons.
let private signature (out: ForwardOutput) =
    Array.concat
        [
            out.Logits.ToArray()
            out.Spikes["lif2"].ToArray()
            out.Spikes["lif_fc1"].ToArray()
        ]

[<Test>]
let ``an ideal ADC without variation reproduces the integer model exactly`` () =
    let x = images 33 5

    for bits, m in models.Force() do
        let exported = IntegerExport.export m
        let reference, refRan = IntegerExport.run exported probes m x

        for n in [ "lif2"; "lif_fc1" ] do
            Assert.That((Tensor.sum reference.Spikes[n]).ToScalar(), Is.GreaterThan 0.0f, sprintf "%s fires" n)

        let options =
            [
                "ideal, 64 rows, 4-bit cells", CrossbarOptions.Ideal
                // Multi-tile reads and 2-bit cells (several slices per weight).
                "ideal, 16 rows, 2-bit cells",
                { CrossbarOptions.Ideal with
                    Rows = 16
                    BitsPerCell = 2
                }
                // A 10-bit ADC with a one-level step (full scale 1023 ≥ 64·15): no clipping, no rounding.
                "10-bit ADC, step 1",
                { CrossbarOptions.Ideal with
                    Adc = Adc.Quantized(10, Some 1023.0)
                }
                // Zero spread: variation drawn but without effect.
                "σ = 0",
                { CrossbarOptions.Ideal with
                    Variation = Some { Sigma = 0.0; Seed = 5 }
                }
            ]

        for what, o in options do
            let out, ran = crossbarRun o m x
            let tag = sprintf "%d bits, %s" bits what
            same (tag + ": crossbar layers") (Array.ofList refRan) (Array.ofList ran)
            same (tag + ": crossbar layers") [| "conv2"; "fc1" |] (Array.ofList ran)
            same (tag + ": logits") (reference.Logits.ToArray()) (out.Logits.ToArray())

            for n in [ "lif2"; "lif_fc1" ] do
                same (sprintf "%s: spikes of %s" tag n) (reference.Spikes[n].ToArray()) (out.Spikes[n].ToArray())
                same (sprintf "%s: H of %s" tag n) (reference.Membranes[n].ToArray()) (out.Membranes[n].ToArray())

            same (tag + ": run") (reference.Logits.ToArray()) ((CrossbarInference.run o m x).ToArray())

[<Test>]
let ``low-resolution ADCs and conductance variation change the outputs deterministically for a seed`` () =
    let x = images 34 5

    for bits, m in models.Force() do
        let integer =
            signature (fst (IntegerExport.run (IntegerExport.export m) probes m x))

        let variation seed =
            { CrossbarOptions.Ideal with
                Variation = Some { Sigma = 0.2; Seed = seed }
            }

        let cases =
            [
                "4-bit ADC",
                { CrossbarOptions.Ideal with
                    Adc = Adc.Quantized(4, None)
                }
                "8-bit ADC",
                { CrossbarOptions.Ideal with
                    Adc = Adc.Quantized(8, None)
                }
                "σ = 0.2", variation 1
                "8-bit ADC and σ = 0.1",
                { CrossbarOptions.Ideal with
                    Adc = Adc.Quantized(8, None)
                    Variation = Some { Sigma = 0.1; Seed = 2 }
                }
            ]

        for what, o in cases do
            let tag = sprintf "%d bits, %s" bits what
            let a = signature (fst (crossbarRun o m x))
            let b = signature (fst (crossbarRun o m x))
            same (tag + ": repeated run") a b
            Assert.That(a, Is.Not.EqualTo integer, tag + ": differs from the integer model")

        let s1 = signature (fst (crossbarRun (variation 1) m x))
        let s2 = signature (fst (crossbarRun (variation 2) m x))
        Assert.That(s1, Is.Not.EqualTo s2, sprintf "%d bits: another seed draws other conductances" bits)

[<Test>]
let ``a programmed conv layer reads as Crossbar.conv2d sample by sample`` () =
    let _, m = models.Force().Head
    let exported = IntegerExport.export m
    let index = exported.Layers |> List.findIndex (fun l -> l.Name = "conv2")
    let il = exported.Layers[index]

    let o =
        { CrossbarOptions.Ideal with
            Rows = 8
            Adc = Adc.Quantized(6, None)
            Variation = Some { Sigma = 0.15; Seed = 9 }
        }

    let cout, cin, k = il.Shape[0], il.Shape[1], il.Shape[2]
    let n, h, w = 3, 6, 5
    let rng = Random 4

    let codes =
        Array.init (n * cin * h * w) (fun _ -> if rng.NextDouble() < 0.3 then 1 else 0)

    let acc, shape =
        CrossbarInference.product il (CrossbarInference.program o index il) codes [| n; cin; h; w |]

    let weights =
        Array4D.init cout cin k k (fun a b c d -> il.Weights[((a * cin + b) * k + c) * k + d])

    for i in 0 .. n - 1 do
        let spikes =
            Array3D.init cin h w (fun c y xx -> codes[((i * cin + c) * h + y) * w + xx] = 1)

        let r =
            Crossbar.conv2d (CrossbarInference.config o index il) weights il.Stride il.Padding spikes

        let ho, wo = Array3D.length2 r, Array3D.length3 r
        same "shape" [| n; cout; ho; wo |] shape

        for c in 0 .. cout - 1 do
            for y in 0 .. ho - 1 do
                for xx in 0 .. wo - 1 do
                    let expected = int (Math.Round(r[c, y, xx], MidpointRounding.AwayFromZero))
                    Assert.That(acc[((i * cout + c) * ho + y) * wo + xx], Is.EqualTo expected)

/// product (allocation-free readers, channels-last conv columns) against referenceProduct (vector by
/// vector through Crossbar.forward) for a random datapath, layer, geometry and input: equal bit for bit.
[<FsCheck.NUnit.Property(MaxTest = 60)>]
let ``product equals the reference product bit for bit`` (seed: int) =
    let rng = Random seed
    let bits, m = models.Force()[rng.Next 2]
    let exported = IntegerExport.export m
    let index = rng.Next exported.Layers.Length
    let il = exported.Layers[index]

    let o =
        { CrossbarOptions.Ideal with
            Rows = [| 3; 8; 64 |][rng.Next 3]
            BitsPerCell = 1 + rng.Next 4
            Adc =
                match rng.Next 3 with
                | 0 -> Adc.Ideal
                | 1 -> Adc.Quantized(2 + rng.Next 7, None)
                | _ -> Adc.Quantized(2 + rng.Next 7, Some(1.0 + 20.0 * rng.NextDouble()))
            Variation =
                if rng.Next 2 = 0 then
                    None
                else
                    Some
                        {
                            Sigma = 0.3 * rng.NextDouble()
                            Seed = rng.Next 1000
                        }
        }

    let density = [| 0.0; 0.05; 0.3; 1.0 |][rng.Next 4]
    // Linear layers read their samples in chunks of 32: up to three chunks.
    let n = if il.Kind = "linear" then rng.Next 70 else rng.Next 4

    let active () =
        if rng.NextDouble() < density then 1 else 0

    let layer, shape =
        if il.Kind = "linear" then
            il, [| n; il.Shape[1] |]
        else
            let k = il.Shape[2]

            { il with
                Stride = 1 + rng.Next 2
                Padding = rng.Next(k / 2 + 2)
            },
            [| n; il.Shape[1]; k + rng.Next 6; k + rng.Next 6 |]

    let codes = Array.init (Array.fold (*) 1 shape) (fun _ -> active ())
    let xbars = CrossbarInference.program o index layer
    let fast, fastShape = CrossbarInference.product layer xbars codes shape

    let reference, referenceShape =
        CrossbarInference.referenceProduct layer xbars codes shape

    let what = sprintf "%d-bit %s %A %A" bits il.Name o shape
    same (what + " shape") referenceShape fastShape
    same what reference fast

[<Test>]
let ``product refuses an input whose channels are not the crossbars' rows`` () =
    let _, m = models.Force().Head
    let exported = IntegerExport.export m

    for index, il in List.indexed exported.Layers do
        let xbars = CrossbarInference.program CrossbarOptions.Ideal index il
        let rows = xbars[0].Inputs

        let shape =
            if il.Kind = "linear" then
                [| 2; rows + 1 |]
            else
                [| 2; rows + 1; 5; 5 |]

        let e =
            Assert.Throws<SnnSpecException>(fun () ->
                CrossbarInference.product il xbars (Array.zeroCreate (Array.fold (*) 1 shape)) shape
                |> ignore)

        Assert.That(e.Message, Does.Contain "inShape")
        Assert.That(e.Message, Does.Contain(sprintf "%d input rows" rows))

[<Test>]
let ``accuracy reports the crossbar beside the integer path and the float model`` () =
    let _, m = models.Force().Head
    // A tiny synthetic test set labelled by the integer model's own predictions.
    let batches =
        [
            for seed in [ 40; 41 ] ->
                let x = images seed 4

                let labels =
                    Readout.predict (fst (IntegerExport.run (IntegerExport.export m) ProbeRequest.None m x)).Logits

                x, labels
        ]

    let ideal = CrossbarInference.accuracy CrossbarOptions.Ideal m batches
    Assert.That(ideal.Samples, Is.EqualTo 8)
    Assert.That(ideal.Integer, Is.EqualTo 1.0)
    Assert.That(ideal.Crossbar, Is.EqualTo 1.0)
    same "crossbar layers" [| "conv2"; "fc1" |] (Array.ofList ideal.CrossbarLayers)

    // The uniform scheme: the integer path and the fake-quantized model agree on these predictions.
    let floatHits =
        batches
        |> List.sumBy (fun (x, labels) ->
            Array.fold2
                (fun acc a b -> if a = b then acc + 1 else acc)
                0
                (Readout.predict (Model.forward ForwardContext.Eval m x).Logits)
                labels)

    Assert.That(ideal.Float, Is.EqualTo(float floatHits / 8.0))

    let coarse =
        CrossbarInference.accuracy
            { CrossbarOptions.Ideal with
                Adc = Adc.Quantized(4, None)
            }
            m
            batches

    Assert.That(coarse.Integer, Is.EqualTo 1.0)
    Assert.That(coarse.Float, Is.EqualTo ideal.Float)
    Assert.That(coarse.Crossbar, Is.InRange(0.0, 1.0))
    TestContext.Out.WriteLine(sprintf "accuracy: ideal %A, 4-bit ADC %A" ideal coarse)

[<Test>]
let ``bad options and unquantized models are named`` () =
    let _, m = models.Force().Head

    raisesNaming [ "Rows" ] (fun () -> CrossbarInference.prepare { CrossbarOptions.Ideal with Rows = 0 } m |> ignore)

    raisesNaming [ "Adc bits" ] (fun () ->
        CrossbarInference.prepare
            { CrossbarOptions.Ideal with
                Adc = Adc.Quantized(0, None)
            }
            m
        |> ignore)

    raisesNaming [ "weight bits" ] (fun () ->
        CrossbarInference.prepare CrossbarOptions.Ideal (Model.init 1 (ExecutionMode.Snn 2) (Zoo.convNet tinyCfg))
        |> ignore)

    raisesNaming [ "testBatches" ] (fun () -> CrossbarInference.accuracy CrossbarOptions.Ideal m [] |> ignore)

[<Test>]
let ``accuracies over several ADCs and chips in one pass equal one accuracy per option`` () =
    let _, m = models.Force().Head
    // Labels from another model, so that accuracies differ from 1.
    let other = snd (models.Force()[1])

    let batches =
        [
            for seed in 50..55 ->
                let x = images seed 8
                x, Readout.predict (Model.forward ForwardContext.Eval other x).Logits
        ]

    let noisy seed =
        { CrossbarOptions.Ideal with
            Adc = Adc.Quantized(6, Some 40.0)
            Variation = Some { Sigma = 0.5; Seed = seed }
        }

    let options =
        [
            CrossbarOptions.Ideal
            { CrossbarOptions.Ideal with
                Adc = Adc.Quantized(3, None)
            }
            noisy 1
            noisy 2
        ]

    // The four options score differently here (about 65, 35, 38 and 29 %), so a mix-up of their order fails.
    let together = CrossbarInference.accuracies options m batches
    let apart = options |> List.map (fun o -> CrossbarInference.accuracy o m batches)
    Assert.That(box together, Is.EqualTo(box apart))
    Assert.That(together[0].Crossbar, Is.EqualTo together[0].Integer)
    Assert.That(CrossbarInference.accuracies [] m batches |> List.isEmpty)

[<Test>]
let ``accuracy over a batcher epoch equals accuracy over the same batches`` () =
    let _, m = models.Force().Head
    let rng = Random 6
    let n = 10
    let pixels = Array.init (n * 64) (fun _ -> byte (rng.Next 256))
    let labels = Array.init n (fun i -> i % 10)
    let set = SnnSpec.Data.ImageSet.create "synthetic" pixels labels 1 8 8 10

    let batcher =
        SnnSpec.Data.Batching.create
            {
                BatchSize = 4
                Shuffle = false
                DropLast = false
                Prefetch = 0
                Transform = None
                TimeMajor = false
                Key = Rng.create 0
            }
            set

    let batches =
        [
            for s in 0..4 .. n - 1 ->
                let k = min 4 (n - s)

                let xs =
                    pixels[s * 64 .. (s + k) * 64 - 1] |> Array.map (fun b -> float32 b / 255.0f)

                Tensor.ofArray [| k; 1; 8; 8 |] xs, labels[s .. s + k - 1]
        ]

    let o =
        { CrossbarOptions.Ideal with
            Adc = Adc.Quantized(8, None)
        }

    let a = CrossbarInference.accuracyOn o m batcher
    let b = CrossbarInference.accuracy o m batches
    Assert.That(a, Is.EqualTo b)
    Assert.That(a.Samples, Is.EqualTo n)

[<Test>]
let ``a pre-exported model runs as the model it was exported from`` () =
    let _, m = models.Force().Head
    let x = images 35 3

    let p =
        CrossbarInference.prepareWith CrossbarOptions.Ideal (IntegerExport.export m) m

    let a = signature (fst (CrossbarInference.runProgrammed p probes x))
    let b = signature (fst (crossbarRun CrossbarOptions.Ideal m x))
    same "pre-exported" b a

    raisesNaming [ "exported.Architecture" ] (fun () ->
        CrossbarInference.prepareWith
            CrossbarOptions.Ideal
            { IntegerExport.export m with
                Architecture = "other"
            }
            m
        |> ignore)

[<Test>]
let ``calibrated full scales cover the requested share of partial sums and grow with it`` () =
    let m = snd (models.Force().Head)
    let batches = [ images 40 4; images 41 4 ]

    let scales coverage =
        CrossbarInference.calibrateFullScales CrossbarOptions.Ideal coverage m batches

    let full, most, half = scales 1.0, scales 0.9, scales 0.5
    Assert.That(full.Keys |> Array.ofSeq, Is.EqualTo(box [| "conv2"; "fc1" |]))

    for name in full.Keys do
        Assert.That(half[name], Is.LessThanOrEqualTo most[name], name)
        Assert.That(most[name], Is.LessThanOrEqualTo full[name], name)
        Assert.That(half[name], Is.GreaterThanOrEqualTo 1.0, name)
        Assert.That(full[name], Is.EqualTo(Math.Round full[name]), name)
        // Partial sums of 64 rows of 4-bit cells never exceed 64 · 15.
        Assert.That(full[name], Is.LessThanOrEqualTo 960.0, name)

    Assert.That(full |> Map.exists (fun n f -> half[n] < f), "half the sums lie below the largest")

    // Coverage 1 is at least every partial sum: a fine ADC (30 bits) over those full scales never
    // clips and reads the calibration batches as the integer path does.
    let fine =
        { CrossbarOptions.Ideal with
            Adc = Adc.Quantized(30, None)
            FullScales = full
        }

    for x in batches do
        let integer = (fst (IntegerExport.run (IntegerExport.export m) probes m x)).Logits
        same "fine ADC over calibrated scales" (integer.ToArray()) ((CrossbarInference.run fine m x).ToArray())

[<Test>]
let ``the calibrated full scale of a linear layer is the coverage quantile of its partial sums`` () =
    let m = snd (models.Force().Head)
    let batches = [ images 43 4; images 44 4 ]
    let exported = IntegerExport.export m
    let index = exported.Layers |> List.findIndex (fun l -> l.Name = "fc1")
    let fc1 = exported.Layers[index]

    // The fc1 inputs of the integer path, captured batch by batch.
    let inputs = ResizeArray<int[] * int[]>()

    let capture (il: IntegerLayer) (codes: int[]) (shape: int[]) =
        if il.Name = "fc1" then
            inputs.Add((Array.copy codes, Array.copy shape))

        Forward.exactProduct il codes shape

    for x in batches do
        IntegerExport.runWith capture exported ProbeRequest.None m x |> ignore

    // Every column partial sum of every read with an active row, straight from Crossbar.observe.
    let xbar = (CrossbarInference.program CrossbarOptions.Ideal index fc1)[0]
    let sums = ResizeArray<float>()

    for codes, shape in inputs do
        let n, fin = shape[0], shape[1]

        for i in 0 .. n - 1 do
            Crossbar.observe xbar (Array.init fin (fun k -> codes[i * fin + k] <> 0)) sums.Add

    let sorted = sums.ToArray() |> Array.sort
    Assert.That(sorted.Length, Is.GreaterThan 100)

    for coverage in [ 0.5; 0.9; 0.99; 1.0 ] do
        let needed = int (ceil (coverage * float sorted.Length))
        let expected = max 1.0 sorted[needed - 1]

        let scales =
            CrossbarInference.calibrateFullScales CrossbarOptions.Ideal coverage m batches

        Assert.That(scales["fc1"], Is.EqualTo expected, sprintf "coverage %g" coverage)

[<Test>]
let ``a layer without active rows on the calibration inputs keeps the ADC's own full scale`` () =
    // A large negative shift after the first conv silences lif1, so conv2 reads no spike.
    let m0 = snd (models.Force().Head)

    let m =
        { m0 with
            Parameters =
                m0.Parameters
                |> Parameters.map (fun n t -> if n = "bn1.bias" then Tensor.full t.Shape -100.0f else t)
        }

    let calibration = [ images 45 3 ]
    let exported = IntegerExport.export m
    let active = Collections.Generic.Dictionary<string, bool>()

    let capture (il: IntegerLayer) (codes: int[]) (shape: int[]) =
        let before =
            match active.TryGetValue il.Name with
            | true, a -> a
            | _ -> false

        active[il.Name] <- before || Array.exists ((<>) 0) codes
        Forward.exactProduct il codes shape

    IntegerExport.runWith capture exported ProbeRequest.None m calibration[0]
    |> ignore

    let scales =
        CrossbarInference.calibrateFullScales CrossbarOptions.Ideal 0.99 m calibration

    for name in [ "conv2"; "fc1" ] do
        Assert.That(scales.ContainsKey name, Is.EqualTo active[name], name)

    Assert.That(active["conv2"], Is.False, "conv2 reads no spike")

[<Test>]
let ``calibration refuses a coverage outside (0, 1] and an empty input`` () =
    let m = snd (models.Force().Head)

    for bad in [ 0.0; 1.5; nan ] do
        let e =
            Assert.Throws<SnnSpecException>(fun () ->
                CrossbarInference.calibrateFullScales CrossbarOptions.Ideal bad m [ images 42 2 ]
                |> ignore)

        Assert.That(e.Message, Does.Contain "coverage")

    let e =
        Assert.Throws<SnnSpecException>(fun () ->
            CrossbarInference.calibrateFullScales CrossbarOptions.Ideal 0.99 m [] |> ignore)

    Assert.That(e.Message, Does.Contain "calibration batch")
