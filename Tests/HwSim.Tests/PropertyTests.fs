/// Laws of the cost model (methods.md §6.10, §6.9) over random networks and accelerators.
module SnnSpec.HwSim.Tests.PropertyTests

open System
open NUnit.Framework
open FsCheck
open FsCheck.FSharp
open FsCheck.NUnit
open SnnSpec
open SnnSpec.HwSim
open SnnSpec.HwSim.Tests.Helpers

let private check what (ok: bool) =
    if not ok then
        Assert.Fail what

[<Property(MaxTest = 200)>]
let ``E and D are linear in T, A is independent of T, EDAP grows as T²`` () =
    Prop.forAll configArb (fun (net, acc, t) ->
        let m = Mapping.map acc net
        let one = Metrics.evaluate 1 m
        let r = Metrics.evaluate t m
        let ft = float t
        check "E" (relClose 1e-12 (ft * float one.E) (float r.E))
        check "D" (relClose 1e-12 (ft * float one.D) (float r.D))
        check "A" (r.A = one.A)
        check "EDAP" (relClose 1e-12 (ft * ft * one.Edap) r.Edap))

[<Property(MaxTest = 200)>]
let ``tiles are the PE count divided by PEs per tile, rounded up`` () =
    Prop.forAll configArb (fun (net, acc, _) ->
        let m = Mapping.map acc net
        let pes = m.Layers |> List.sumBy (fun l -> l.Pes)
        check "N_PE" (m.TotalPes = pes)
        check "N_tile" (m.Tiles = (pes + acc.PesPerTile - 1) / acc.PesPerTile)

        check
            "tile ranges"
            (m.Layers
             |> List.forall (fun l -> l.LastTile < m.Tiles && l.FirstTile <= l.LastTile)))

[<Property(MaxTest = 200)>]
let ``appending a layer never lowers E or A`` () =
    Prop.forAll appendArb (fun (net, extra) ->
        let before = report Accelerator.spikeSim 4 net

        let after =
            report
                Accelerator.spikeSim
                4
                { net with
                    Layers = net.Layers @ [ extra ]
                }

        check "E" (after.E >= before.E)
        check "A" (after.A >= before.A))

[<Property(MaxTest = 200)>]
let ``cycles are non-decreasing in channel counts, on any accelerator`` () =
    Prop.forAll
        (Arb.fromGen (Gen.zip3 networkGen acceleratorGen (Gen.zip (Gen.choose (0, 300)) (Gen.choose (0, 300)))))
        (fun (net, acc, (dIn, dOut)) ->
            let grown =
                { net with
                    Layers =
                        net.Layers
                        |> List.map (fun l ->
                            { l with
                                InChannels = l.InChannels + dIn
                                OutChannels = l.OutChannels + dOut
                            })
                }

            let a = Mapping.map acc net
            let b = Mapping.map acc grown

            List.zip a.Layers b.Layers
            |> List.iter (fun (x, y) -> check x.Layer.Name (y.CyclesPerStep >= x.CyclesPerStep)))

let private cycles (acc: Accelerator) (layer: Layer) =
    (Mapping.map acc { Name = "n"; Layers = [ layer ] }).Layers.Head.CyclesPerStep

[<Property(MaxTest = 200)>]
let ``doubling a multiple-of-X output channel count doubles the layer's cycles, on any accelerator`` () =
    Prop.forAll (Arb.fromGen (Gen.zip3 acceleratorGen (Gen.choose (1, 5)) (Gen.choose (1, 300)))) (fun (acc, m, cin) ->
        let cout = m * acc.CrossbarSize

        check
            "doubled"
            (cycles acc (Layer.conv "c" cin (2 * cout) 3 8 8) = 2L * cycles acc (Layer.conv "c" cin cout 3 8 8)))

[<Test>]
let ``doubling a multiple-of-X output channel count doubles the layer's cycles`` () =
    for cout in [ 64; 128; 320 ] do
        Assert.That(
            cycles Accelerator.spikeSim (Layer.conv "c" 100 (2 * cout) 3 8 8),
            Is.EqualTo(2L * cycles Accelerator.spikeSim (Layer.conv "c" 100 cout 3 8 8))
        )

[<Property(MaxTest = 200)>]
let ``a layer within one crossbar per tap costs one PE cycle per map pixel, on any accelerator`` () =
    // k² = 9 taps fill one PE of 9 crossbars; C_in ≤ X rows and s_w·C_out ≤ X columns fill one crossbar
    // (X ≥ 32 ≥ s_w, so such a C_out always exists).
    let gen =
        gen {
            let! acc = acceleratorGen
            let x = acc.CrossbarSize
            let! cin = Gen.choose (1, x)
            let! cout = Gen.choose (1, x / Precision.slices acc.Precision)
            let! h = Gen.choose (1, 16)
            return acc, cin, cout, h
        }

    Prop.forAll (Arb.fromGen gen) (fun (acc, cin, cout, h) ->
        let side =
            match acc.Spatial with
            | SpatialRule.PooledOutput -> h
            | SpatialRule.ConvOutput -> 2 * h

        check "H_o² cycles" (cycles acc (Layer.conv "c" cin cout 3 (2 * h) h) = int64 (side * side)))

[<Test>]
let ``a layer within one crossbar costs H_o² cycles per step`` () =
    for cin, cout, h in [ 1, 1, 1; 64, 64, 7; 17, 50, 12 ] do
        Assert.That(cycles Accelerator.spikeSim (Layer.conv "c" cin cout 3 32 h), Is.EqualTo(int64 (h * h)))

let private fewerBitsArb =
    Arb.fromGen (
        gen {
            let! net = networkGen
            let! acc = acceleratorGen
            let! dw = Gen.choose (0, 31)
            let! du = Gen.choose (0, 31)
            let! da = Gen.choose (0, 9)
            let p = acc.Precision

            let fewer =
                { acc with
                    AdcBits = max 1 (acc.AdcBits - da)
                    Precision =
                        { p with
                            WeightBits = max 1 (p.WeightBits - dw)
                            MembraneBits = max 1 (p.MembraneBits - du)
                        }
                }

            return net, acc, fewer
        }
    )

[<Property(MaxTest = 200)>]
let ``fewer weight, membrane or ADC bits never raise E, D or A`` () =
    Prop.forAll fewerBitsArb (fun (net, more, fewer) ->
        let a = report more 3 net
        let b = report fewer 3 net
        check "E" (b.E <= a.E)
        check "D" (b.D <= a.D)
        check "A" (b.A <= a.A))

[<Test>]
let ``halving weight bits with one bit per cell halves the crossbar and ADC energy`` () =
    let acc b =
        { Accelerator.spikeSim with
            Precision =
                {
                    WeightBits = b
                    BitsPerCell = 1
                    MembraneBits = 22
                }
        }

    let e b =
        (Energy.estimate 2 (Mapping.map (acc b) vgg9)).Components

    for b in [ 2; 4; 8; 16 ] do
        let hi, lo = e (2 * b), e b
        assertRel "crossbar" 1e-12 (float hi.Crossbar / 2.0) (float lo.Crossbar)
        assertRel "ADC" 1e-12 (float hi.Adc / 2.0) (float lo.Adc)

[<Property(MaxTest = 200)>]
let ``TOPS/W is independent of T and clock; TOPS/mm² scales with the clock`` () =
    Prop.forAll configArb (fun (net, acc, t) ->
        let m = Mapping.map acc net
        let r = Metrics.evaluate t m
        let one = Metrics.evaluate 1 m

        let fast = Metrics.evaluate t (Mapping.map { acc with Clock = 2.5 * acc.Clock } net)

        check "T" (relClose 1e-12 one.TopsPerWatt r.TopsPerWatt)
        check "clock" (relClose 1e-12 r.TopsPerWatt fast.TopsPerWatt)
        check "TOPS/mm² vs T" (relClose 1e-12 one.TopsPerMm2 r.TopsPerMm2)
        check "TOPS/mm² vs clock" (relClose 1e-12 (2.5 * r.TopsPerMm2) fast.TopsPerMm2))

[<Property(MaxTest = 200)>]
let ``ratio metrics are unchanged when every energy constant is scaled by one factor`` () =
    Prop.forAll
        (Arb.fromGen (
            gen {
                let! net = networkGen
                let! a = acceleratorGen
                let! b = acceleratorGen
                let! k = Gen.elements [ 1e-3; 0.37; 2.0; 1e4 ]
                return net, a, b, k
            }
        ))
        (fun (net, a, b, k) ->
            let scaled (acc: Accelerator) =
                { acc with
                    Technology = Technology.scaleEnergy k acc.Technology
                }

            let c1 = Metrics.compare (report a 4 net) (report b 2 net)
            let c2 = Metrics.compare (report (scaled a) 4 net) (report (scaled b) 2 net)

            for x, y in
                [
                    c1.Energy, c2.Energy
                    c1.Edp, c2.Edp
                    c1.Edap, c2.Edap
                    c1.TopsPerWatt, c2.TopsPerWatt
                    c1.TopsPerMm2, c2.TopsPerMm2
                    c1.Latency, c2.Latency
                    c1.Area, c2.Area
                ] do
                check "ratio" (relClose 1e-9 x y))

let private ratesArb =
    Arb.fromGen (
        gen {
            let! net = networkGen
            let! rates = Gen.listOfLength net.Layers.Length (Gen.choose (0, 1000))
            let! bump = Gen.listOfLength net.Layers.Length (Gen.choose (0, 1000))
            return net, rates |> List.map (fun r -> float r / 1000.0), bump |> List.map (fun b -> float b / 1000.0)
        }
    )

[<Property(MaxTest = 300)>]
let ``behind max-pools a population's rate r becomes the OR of independent spikes, between r and 1 and monotone in r``
    (r1000: uint16)
    (lo1000: uint16)
    (pools: byte list)
    =
    let r = float (int r1000 % 1001) / 1000.0
    let lower = r * float (int lo1000 % 1001) / 1000.0

    let windows =
        pools |> List.truncate 3 |> List.map (fun k -> let k = 1 + int k % 3 in k * k)

    let layer =
        { Layer.conv "conv" 8 8 3 8 8 with
            InputSource = Some "sn"
            InputPooling = windows
        }

    let at (x: float) =
        (Activity.tryRate (Map.ofList [ "sn", x ]) layer).Value

    let expected = 1.0 - Math.Pow(1.0 - r, float (List.fold (*) 1 windows))
    check "value" (abs (at r - expected) <= 1e-12)
    check "at least r" (at r >= r - 1e-12)
    check "at most 1" (at r <= 1.0)
    check "monotone" (at lower <= at r + 1e-12)

    if List.isEmpty windows then
        check "no pooling: r itself" (at r = r)

    // One pool and a measured pooled rate: the measurement; the layer's own entry wins over both.
    let measured = Map.ofList [ "sn", r; RateKey.maxPooled "sn", 0.5 ]

    if List.length windows = 1 then
        check "measured" (Activity.tryRate measured layer = Some 0.5)

    check "own entry" (Activity.tryRate (measured.Add("conv", 0.25)) layer = Some 0.25)

[<Property(MaxTest = 200)>]
let ``activity-aware energy is monotone in firing rate and equals dense energy at rate 1`` () =
    Prop.forAll ratesArb (fun (net, rates, bump) ->
        let m = Mapping.map Accelerator.spikeSim net

        let activity (rs: float list) =
            Activity.FiringRates(List.zip net.Layers rs |> List.map (fun (l, r) -> l.Name, r) |> Map.ofList)

        let e rs =
            (Energy.estimateWith (activity rs) 3 m).Total

        let higher = List.map2 (fun r b -> min 1.0 (r + b)) rates bump
        let dense = (Energy.estimate 3 m).Total
        check "monotone" (e rates <= e higher)
        check "≤ dense" (e higher <= dense)

        check "rate 1 = dense" (relClose 1e-12 (float dense) (float (e (List.replicate net.Layers.Length 1.0))))

        let withRates = Metrics.evaluateWith OpCount.DenseMacs (activity rates) 3 m
        let denseReport = Metrics.evaluate 3 m
        check "latency unaffected" (withRates.Latency = denseReport.Latency)
        check "area unaffected" (withRates.Area = denseReport.Area))
