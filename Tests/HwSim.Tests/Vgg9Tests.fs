/// Regression anchors: methods.md §6.7, our evaluation of the public ELA script's formulas on its
/// built-in VGG9 layer list (RRAM, X = 64, k = 3, ppt = 8, 250 MHz), dense mode.
module SnnSpec.HwSim.Tests.Vgg9Tests

open NUnit.Framework
open SnnSpec.HwSim
open SnnSpec.HwSim.Tests.Helpers

let private tol = 1e-6
let private mapping = Mapping.map Accelerator.spikeSim vgg9

[<Test>]
let ``VGG9 maps to 48 PEs in 6 tiles with the reference per-layer PEs and cycles`` () =
    Assert.That(mapping.TotalPes, Is.EqualTo 48)
    Assert.That(mapping.Tiles, Is.EqualTo 6)
    Assert.That(mapping.Layers |> List.map (fun l -> l.Pes), Is.EqualTo(box [ 1; 1; 2; 4; 8; 16; 16 ]))

    Assert.That(
        mapping.Layers |> List.map (fun l -> l.CyclesPerStep),
        Is.EqualTo(box [ 1024L; 256L; 512L; 256L; 512L; 1024L; 256L ])
    )

    Assert.That(Mapping.cyclesPerStep mapping, Is.EqualTo 3840L)

[<Test>]
let ``VGG9 cycle energy and PE area are the exact ELA constants`` () =
    assertRel "E_cycle" tol 828.4861472 (float (Energy.cycleEnergy Accelerator.spikeSim))
    assertRel "E_PEunit (printed to 5 digits)" 2e-5 32.879 (float (Energy.peUnit Accelerator.spikeSim))
    let area = Area.estimate mapping
    assertRel "A_PE" tol 6152.1936 (float area.Pe)
    assertRel "A_tile" tol 596708.22 (float area.Tile)

[<TestCase(5, 15906934.03, 62832640.0, 604160L)>]
[<TestCase(4, 12725547.22, 50266112.0, 483328L)>]
[<TestCase(1, 3181386.81, 12566528.0, 120832L)>]
let ``VGG9 energy and latency at T`` (steps: int, energy: float, latency: float, peCycles: int64) =
    let r = Metrics.evaluate steps mapping
    assertRel "E" tol energy (float r.E)
    assertRel "D" tol latency (float r.D)
    Assert.That(r.Latency.PeCycles, Is.EqualTo peCycles)
    assertRel "t_PE" tol 104.0 (float r.Latency.PeCycleTime)
    assertRel "A" tol 8425528.76 (float r.A)

[<TestCase(5, 8.4211e-6)>]
[<TestCase(4, 5.3895e-6)>]
[<TestCase(1, 3.3684e-7)>]
let ``VGG9 EDAP at T (printed to 5 digits)`` (steps: int, edap: float) =
    let r = Metrics.evaluate steps mapping
    assertRel "EDAP" 1e-4 edap r.Edap
    assertRel "EDAP = E·D·A" 1e-12 (float r.E * 1e-12 * float r.D * 1e-9 * float r.A * 1e-6) r.Edap

[<Test>]
let ``VGG9 area breakdown`` () =
    let a = Area.estimate mapping
    assertRel "tiles" tol (6.0 * 596708.22) (float (a.Total - a.Components.InputMemory - a.Components.MembraneMemory))
    assertRel "A_inmem" tol 2580818.94 (float a.Components.InputMemory)
    assertRel "A_neuron" tol 2264460.49 (float a.Components.MembraneMemory)
    assertRel "A" tol 8425528.76 (float a.Total)

    Assert.That(
        a.Layers |> List.skip 5 |> List.map (fun l -> float l.MembraneMemory),
        Is.EqualTo(box [ 0.0; 0.0 ]),
        "membrane memory counts the first 5 layers only"
    )

[<Test>]
let ``VGG9 per-layer energy at T = 5`` () =
    let r = Energy.estimate 5 mapping

    let expected =
        [ 4241849.1; 1060462.3; 2120924.5; 1060462.3; 2120924.5; 4241849.1; 1060462.3 ]

    List.zip expected r.Layers
    |> List.iter (fun (e, l) -> assertRel l.Layer tol e (float l.Total))

    assertRel "Σ layers" 1e-12 (float r.Total) (r.Layers |> List.sumBy (fun l -> float l.Total))

[<Test>]
let ``VGG9 SRAM variant at T = 5`` () =
    let r = Metrics.evaluate 5 (Mapping.map Accelerator.spikeSimSram vgg9)
    assertRel "E" tol 941181496.07 (float r.E)
    assertRel "A" tol 8704114.58 (float r.A)

[<Test>]
let ``VGG9 TOPS per watt and per mm² with the default op count`` () =
    let mac = mapping.Layers |> List.sumBy (fun l -> Metrics.macs l.Layer)
    Assert.That(mac, Is.EqualTo 190513152.0)

    for steps in [ 1; 4; 5 ] do
        let r = Metrics.evaluate steps mapping
        // The full-precision values implied by §6.7's E, D, A (T = 5) and MAC count.
        assertRel "TOPS/W" tol 119.76736160513263 r.TopsPerWatt
        assertRel "TOPS/mm²" tol 3.5986738614301864e-3 r.TopsPerMm2
        // §6.7 prints 119.77 and 3.599e-3: equal to their printed precision.
        assertRel "TOPS/W printed" 5e-5 119.77 r.TopsPerWatt
        assertRel "TOPS/mm² printed" 2e-4 3.599e-3 r.TopsPerMm2
