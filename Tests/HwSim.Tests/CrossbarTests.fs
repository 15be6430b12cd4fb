/// Functional crossbar inference: the datapath against the exact integer product.
module SnnSpec.HwSim.Tests.CrossbarTests

open System
open NUnit.Framework
open FsCheck
open FsCheck.FSharp
open FsCheck.NUnit
open SnnSpec.HwSim
open SnnSpec.HwSim.Tests.Helpers

type private Case =
    {
        Config: CrossbarConfig
        Weights: int[,]
        Spikes: bool[][]
    }

let private caseGen =
    gen {
        let! rows = Gen.choose (1, 100)
        let! bits = Gen.choose (1, 8)
        let! cell = Gen.choose (1, 4)
        let! n = Gen.choose (1, 200)
        let! m = Gen.choose (1, 20)
        let! seed = Gen.choose (0, Int32.MaxValue - 1)
        let! density = Gen.choose (0, 100)
        let rng = Random seed
        let half = 1 <<< (bits - 1)
        let w = Array2D.init n m (fun _ _ -> rng.Next(-half, half))

        let spikes = Array.init 3 (fun _ -> Array.init n (fun _ -> rng.Next 100 < density))

        return
            {
                Config =
                    { Crossbar.ideal with
                        Rows = rows
                        WeightBits = bits
                        BitsPerCell = cell
                    }
                Weights = w
                Spikes = spikes
            }
    }

let private caseArb = Arb.fromGen caseGen

let private exactly (expected: int64[]) (actual: float[]) =
    if Array.map float expected <> actual then
        Assert.Fail(sprintf "expected %A, got %A" expected actual)

[<Property(MaxTest = 200)>]
let ``with an ideal ADC and no variation the crossbar equals the integer matmul`` () =
    Prop.forAll caseArb (fun c ->
        let p = Crossbar.program c.Config c.Weights

        for s in c.Spikes do
            exactly (Crossbar.exact c.Weights s) (Crossbar.forward p s))

[<Property(MaxTest = 200)>]
let ``observed partial sums are the ADC's inputs: whole levels within the full scale, one per column per slice per live tile``
    ()
    =
    Prop.forAll caseArb (fun c ->
        let p = Crossbar.program c.Config c.Weights
        let slices = Crossbar.slices c.Config
        let levels = float ((1 <<< min c.Config.BitsPerCell c.Config.WeightBits) - 1)
        let m = Array2D.length2 c.Weights

        for s in c.Spikes do
            let seen = ResizeArray()
            Crossbar.observe p s seen.Add

            let live =
                Array.chunkBySize c.Config.Rows s
                |> Array.filter (Array.exists id)
                |> Array.length

            Assert.That(seen.Count, Is.EqualTo(live * slices * m))

            for v in seen do
                Assert.That(v, Is.EqualTo(Math.Round v))
                Assert.That(v, Is.InRange(0.0, float (min c.Config.Rows s.Length) * levels))

            Assert.That(seen |> Seq.forall (fun v -> v <= Crossbar.fullScale c.Config)))

[<Property(MaxTest = 200)>]
let ``a quantized ADC whose steps are one level and whose full scale covers the column is exact`` () =
    Prop.forAll caseArb (fun c ->
        let cell = min c.Config.BitsPerCell c.Config.WeightBits
        let maxSum = c.Config.Rows * ((1 <<< cell) - 1)
        let bits = int (ceil (Math.Log2(float maxSum + 1.0)))

        let cfg =
            { c.Config with
                Adc = Adc.Quantized(bits, Some(float ((1 <<< bits) - 1)))
            }

        let p = Crossbar.program cfg c.Weights

        for s in c.Spikes do
            exactly (Crossbar.exact c.Weights s) (Crossbar.forward p s))

/// The read written out from its definition, element by element: per live tile (in order) and slice k,
/// out_j += 2^(k·b_cell) · convert(psum_kj), then the tile's subtractor; psum from Crossbar.observe.
[<Property(MaxTest = 200)>]
let ``every read is the shift-add of scalar ADC conversions of its partial sums, minus the offsets`` () =
    Prop.forAll
        (Arb.fromGen (Gen.zip caseGen (Gen.zip (Gen.choose (1, 8)) (Gen.zip (Gen.choose (0, 60)) (Gen.choose (0, 3))))))
        (fun (c, (bits, (fs, sigma))) ->
            let cfg =
                { c.Config with
                    Adc = Adc.Quantized(bits, (if fs = 0 then None else Some(float fs / 3.0)))
                    Variation =
                        if sigma = 0 then
                            None
                        else
                            Some { Sigma = 0.1 * float sigma; Seed = fs }
                }

            let p = Crossbar.program cfg c.Weights
            let m = p.Outputs
            let slices = Crossbar.slices cfg

            for s in c.Spikes do
                let psums = ResizeArray()
                Crossbar.observe p s psums.Add
                let expected = Array.zeroCreate m
                let mutable at = 0

                for tile in Array.chunkBySize cfg.Rows s |> Array.filter (Array.exists id) do
                    let active = tile |> Array.filter id |> Array.length

                    for k in 0 .. slices - 1 do
                        for j in 0 .. m - 1 do
                            expected[j] <-
                                expected[j]
                                + 2.0 ** float (k * cfg.BitsPerCell) * Crossbar.convert cfg psums[at + j]

                        at <- at + m

                    for j in 0 .. m - 1 do
                        expected[j] <- expected[j] - float (p.Offset * active)

                let actual = Crossbar.forward p s

                if expected <> actual then
                    Assert.Fail(sprintf "%A: expected %A, got %A" cfg expected actual))

[<Property(MaxTest = 200)>]
let ``ADC clipping bounds every output`` () =
    Prop.forAll
        (Arb.fromGen (Gen.zip caseGen (Gen.zip (Gen.choose (1, 6)) (Gen.choose (1, 40)))))
        (fun (c, (bits, fs)) ->
            let cfg =
                { c.Config with
                    Adc = Adc.Quantized(bits, Some(float fs))
                }

            let p = Crossbar.program cfg c.Weights
            let n = Array2D.length1 c.Weights
            let tiles = float ((n + cfg.Rows - 1) / cfg.Rows)
            let slices = Crossbar.slices cfg

            let sliceWeight =
                [ 0 .. slices - 1 ] |> List.sumBy (fun k -> 2.0 ** float (k * cfg.BitsPerCell))

            for s in c.Spikes do
                let active = s |> Array.filter id |> Array.length |> float
                let low = -float p.Offset * active
                let high = tiles * float fs * sliceWeight + low

                for y in Crossbar.forward p s do
                    if not (y >= low - 1e-9 && y <= high + 1e-9) then
                        Assert.Fail(sprintf "%g outside [%g, %g]" y low high))

[<Test>]
let ``a saturating ADC clips large column sums`` () =
    let w = Array2D.create 64 1 7
    let s = Array.create 64 true

    let cfg =
        { Crossbar.ideal with
            Adc = Adc.Quantized(4, Some 60.0)
        }
    // codes 7 + 8 = 15 on 64 active rows: 960 clipped to 60, minus the offset 8 · 64.
    Assert.That(Crossbar.matmul cfg w s, Is.EqualTo(box [| 60.0 - 512.0 |]))
    Assert.That(Crossbar.exact w s, Is.EqualTo(box [| 448L |]))

[<Test>]
let ``conductance variation is seeded, and zero spread is exact`` () =
    let rng = Random 3
    let w = Array2D.init 100 8 (fun _ _ -> rng.Next(-8, 8))
    let s = Array.init 100 (fun i -> i % 3 = 0)

    let run sigma seed =
        Crossbar.matmul
            { Crossbar.ideal with
                Variation = Some { Sigma = sigma; Seed = seed }
            }
            w
            s

    Assert.That(run 0.1 7, Is.EqualTo(box (run 0.1 7)))
    Assert.That(run 0.1 7, Is.Not.EqualTo(box (run 0.1 8)))
    Assert.That(run 0.0 7, Is.EqualTo(box (Crossbar.exact w s |> Array.map float)))

[<Test>]
let ``bad crossbar configurations and weights are refused by name`` () =
    let w = Array2D.create 4 2 1

    raisesNaming [ "Rows" ] (fun () -> Crossbar.program { Crossbar.ideal with Rows = 0 } w |> ignore)

    raisesNaming [ "Adc bits" ] (fun () ->
        Crossbar.program
            { Crossbar.ideal with
                Adc = Adc.Quantized(0, None)
            }
            w
        |> ignore)

    for fs in [ 0.0; -1.0; nan; infinity ] do
        raisesNaming [ "Adc fullScale"; "finite" ] (fun () ->
            Crossbar.program
                { Crossbar.ideal with
                    Adc = Adc.Quantized(4, Some fs)
                }
                w
            |> ignore)

    raisesNaming [ "spikes length, offset" ] (fun () ->
        Crossbar.batchReader (Crossbar.program Crossbar.ideal w) (Array.zeroCreate 6) [| 3 |] 1 (Array.zeroCreate 2))

    raisesNaming [ "weights[1, 0]"; "[-8, 7]" ] (fun () ->
        Crossbar.program Crossbar.ideal (Array2D.init 4 2 (fun i j -> if i = 1 && j = 0 then 8 else 0))
        |> ignore)

    raisesNaming [ "spikes length" ] (fun () ->
        Crossbar.forward (Crossbar.program Crossbar.ideal w) [| true |] |> ignore)

[<Test>]
let ``accuracy counts arg-max agreement`` () =
    let outputs = [| [| 1.0; 3.0 |]; [| 5.0; 2.0 |]; [| 0.0; 0.0 |] |]
    Assert.That(Crossbar.accuracy outputs [| 1; 1; 0 |], Is.EqualTo(2.0 / 3.0).Within 1e-12)

let private convArb =
    Arb.fromGen (
        gen {
            let! cin = Gen.choose (1, 70)
            let! cout = Gen.choose (1, 6)
            let! k = Gen.choose (1, 3)
            let! h = Gen.choose (k, 7)
            let! stride = Gen.choose (1, 2)
            let! padding = Gen.choose (0, 1)
            let! rows = Gen.choose (1, 64)
            let! seed = Gen.choose (0, Int32.MaxValue - 1)
            return cin, cout, k, h, stride, padding, rows, seed
        }
    )

[<Property(MaxTest = 60)>]
let ``kernel-wise conv2d with an ideal ADC equals the integer convolution`` () =
    Prop.forAll convArb (fun (cin, cout, k, h, stride, padding, rows, seed) ->
        let rng = Random seed
        let w = Array4D.init cout cin k k (fun _ _ _ _ -> rng.Next(-8, 8))
        let s = Array3D.init cin h h (fun _ _ _ -> rng.Next 2 = 0)

        let y = Crossbar.conv2d { Crossbar.ideal with Rows = rows } w stride padding s

        let ho = (h + 2 * padding - k) / stride + 1
        Assert.That(Array3D.length2 y, Is.EqualTo ho)

        for o in 0 .. cout - 1 do
            for oy in 0 .. ho - 1 do
                for ox in 0 .. ho - 1 do
                    let mutable e = 0

                    for i in 0 .. cin - 1 do
                        for kh in 0 .. k - 1 do
                            for kw in 0 .. k - 1 do
                                let yy = oy * stride - padding + kh
                                let xx = ox * stride - padding + kw

                                if yy >= 0 && yy < h && xx >= 0 && xx < h && s[i, yy, xx] then
                                    e <- e + w[o, i, kh, kw]

                    if float e <> y[o, oy, ox] then
                        Assert.Fail(sprintf "output [%d, %d, %d]: expected %d, got %g" o oy ox e y[o, oy, ox]))
