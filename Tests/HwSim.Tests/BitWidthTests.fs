/// Bit-width and activity awareness (methods.md §6.9) on the VGG9 reference network.
module SnnSpec.HwSim.Tests.BitWidthTests

open NUnit.Framework
open SnnSpec.HwSim
open SnnSpec.HwSim.Tests.Helpers

let private at (p: Precision) =
    { Accelerator.spikeSim with
        Precision = p
    }

[<Test>]
let ``the ELA precision reproduces the dense reference; FP32 and 4-bit students compare`` () =
    let reference = report Accelerator.spikeSim 4 vgg9
    let fp32 = report (at (Precision.fp32 4)) 4 vgg9
    let ms4 = report (at (Precision.quantized 4 4)) 4 vgg9
    assertRel "reference E" 1e-6 12725547.22 (float reference.E)

    // 32-bit weights in 4-bit cells: 8 slice columns per weight.
    Assert.That(Precision.slices (Precision.fp32 4), Is.EqualTo 8)
    let m = Mapping.map (at (Precision.fp32 4)) vgg9
    Assert.That(m.Layers |> List.map (fun l -> l.Pes), Is.EqualTo(box [ 8; 8; 16; 32; 64; 128; 128 ]))

    let c = Metrics.compare fp32 ms4
    Assert.That(c.Energy, Is.GreaterThan 1.0)
    Assert.That(c.Latency, Is.GreaterThan 1.0)
    Assert.That(c.Area, Is.GreaterThan 1.0)
    assertRel "EDAP = E·D·A ratio" 1e-9 (c.Energy * c.Latency * c.Area) c.Edap
    assertRel "TOPS/W ratio = energy ratio (same ops)" 1e-9 c.Energy c.TopsPerWatt
    Assert.That(Metrics.comparisonSummary c, Does.Contain "EDAP")

[<Test>]
let ``membrane bits scale the neuron energy and membrane memory linearly`` () =
    let e b =
        report
            (at
                { Precision.spikeSim with
                    MembraneBits = b
                })
            5
            vgg9

    let r22, r11 = e 22, e 11
    assertRel "neuron energy" 1e-12 (float r22.Energy.Components.Neuron / 2.0) (float r11.Energy.Components.Neuron)

    assertRel
        "membrane memory"
        1e-12
        (float r22.Area.Components.MembraneMemory / 2.0)
        (float r11.Area.Components.MembraneMemory)

    Assert.That(r11.Area.Components.InputMemory, Is.EqualTo r22.Area.Components.InputMemory)

[<Test>]
let ``sliced layers pay a shift-and-add per ADC group, unsliced ones none`` () =
    Assert.That((Energy.perCycle Accelerator.spikeSim 1).ShiftAdd, Is.EqualTo 0.0<pJ>)
    assertRel "8 groups" 1e-12 (8.0 * 16.0 * 1.15e-6) (float (Energy.perCycle Accelerator.spikeSim 2).ShiftAdd)

[<Test>]
let ``ADC scaling: fixed ignores bits, linear and exponential grow with bits and agree at the reference`` () =
    let with' s b =
        { Accelerator.spikeSim with
            AdcBits = b
            Technology =
                { Technology.rram65nm with
                    AdcScaling = s
                }
        }

    for s in [ AdcScaling.Fixed; AdcScaling.Linear; AdcScaling.Exponential ] do
        assertRel "reference" 1e-12 828.4861472 (float (Energy.cycleEnergy (with' s 4)))

    Assert.That(
        Energy.cycleEnergy (with' AdcScaling.Fixed 8),
        Is.EqualTo(Energy.cycleEnergy (with' AdcScaling.Fixed 4))
    )

    assertRel
        "linear ADC at 8 bits"
        1e-12
        (2.0 * 64.0 * 2.03084)
        (float (Energy.perCycle (with' AdcScaling.Linear 8) 1).Adc)

    assertRel
        "flash ADC at 8 bits"
        1e-12
        (255.0 / 15.0 * 64.0 * 2.03084)
        (float (Energy.perCycle (with' AdcScaling.Exponential 8) 1).Adc)

[<Test>]
let ``activity scales the event-driven energy of spike-input layers only`` () =
    let m = Mapping.map Accelerator.spikeSim vgg9
    let dense = Energy.estimate 5 m

    let sparse =
        Energy.estimateWith (Activity.FiringRates(Map.ofList [ "conv2", 0.25 ])) 5 m

    let d, s = dense.Layers[1], sparse.Layers[1]
    Assert.That(s.InputRate, Is.EqualTo 0.25)
    assertRel "event-driven" 1e-12 (0.25 * float d.Components.EventDriven) (float s.Components.EventDriven)
    Assert.That(s.Components.Neuron, Is.EqualTo d.Components.Neuron)
    Assert.That(sparse.Layers[0].Total, Is.EqualTo dense.Layers[0].Total)

    let fed =
        { vgg9 with
            Layers =
                vgg9.Layers
                |> List.mapi (fun i l -> if i = 1 then { l with InputSource = Some "sn1" } else l)
        }

    let byPopulation =
        Energy.estimateWith (Activity.FiringRates(Map.ofList [ "sn1", 0.25 ])) 5 (Mapping.map Accelerator.spikeSim fed)

    Assert.That(byPopulation.Total, Is.EqualTo sparse.Total)
