module SnnSpec.HwSim.Tests.Helpers

open System
open NUnit.Framework
open FsCheck
open FsCheck.FSharp
open SnnSpec
open SnnSpec.HwSim

/// The ELA script's built-in VGG9 / CIFAR-10 layer list (methods.md §6.7).
let vgg9 =
    {
        Name = "VGG9"
        Layers =
            [
                Layer.conv "conv1" 3 64 3 32 32
                Layer.conv "conv2" 64 64 3 32 16
                Layer.conv "conv3" 64 128 3 16 16
                Layer.conv "conv4" 128 128 3 16 8
                Layer.conv "conv5" 128 256 3 8 8
                Layer.conv "conv6" 256 256 3 8 8
                Layer.conv "conv7" 256 256 3 8 4
            ]
    }

/// |actual − expected| ≤ tol · |expected|.
let assertRel (what: string) (tol: float) (expected: float) (actual: float) =
    let err = abs (actual - expected) / abs expected

    if not (err <= tol) then
        Assert.Fail(sprintf "%s: expected %.12g, got %.12g (relative error %.3g > %.3g)" what expected actual err tol)

let relClose (tol: float) (a: float) (b: float) =
    abs (a - b) <= tol * max 1e-300 (max (abs a) (abs b))

/// Runs f and asserts it raises SnnSpecException whose message contains every given fragment.
let raisesNaming (fragments: string list) (f: unit -> unit) =
    let message =
        try
            f ()
            None
        with :? SnnSpecException as ex ->
            Some ex.Message

    match message with
    | Some m ->
        for s in fragments do
            Assert.That(m, Does.Contain s)
    | None -> Assert.Fail(sprintf "expected an SnnSpecException naming %A" fragments)

/// A random weight layer named later; conv maps are square with same padding.
let private layerGen =
    gen {
        let! conv = Gen.frequency [ 3, Gen.constant true; 1, Gen.constant false ]
        let! cin = Gen.choose (1, 600)
        let! cout = Gen.choose (1, 600)

        if conv then
            let! k = Gen.elements [ 1; 3; 5 ]
            let! h = Gen.choose (1, 40)
            let! ho = Gen.choose (1, h)
            return Layer.conv "" cin cout k h ho
        else
            let! fin = Gen.choose (1, 5000)
            return Layer.linear "" fin cout
    }

let private named (ls: Layer list) =
    ls |> List.mapi (fun i l -> { l with Name = sprintf "l%d" i })

/// A random network of 1–15 weight layers.
let networkGen =
    gen {
        let! n = Gen.choose (1, 15)
        let! ls = Gen.listOfLength n layerGen
        return { Name = "random"; Layers = named ls }
    }

let networkArb = Arb.fromGen networkGen

/// A random network and one more layer to append.
let appendArb =
    Arb.fromGen (
        gen {
            let! net = networkGen
            let! extra = layerGen

            return
                net,
                { extra with
                    Name = sprintf "l%d" net.Layers.Length
                }
        }
    )

/// A random accelerator around the ELA default: crossbar size, PEs per tile, mux, ADC bits,
/// clock and precision varied.
let acceleratorGen =
    gen {
        let! x = Gen.elements [ 32; 64; 128; 256 ]
        let! ppt = Gen.choose (1, 16)
        let! mux = Gen.elements [ 1; 2; 4; 8; 16 ]
        let! adc = Gen.choose (1, 10)
        let! clock = Gen.choose (50, 1000)
        let! wb = Gen.choose (1, 32)
        let! cell = Gen.elements [ 1; 2; 4 ]
        let! ub = Gen.choose (1, 32)
        let! sram = Gen.elements [ false; true ]

        return
            { Accelerator.spikeSim with
                CrossbarSize = x
                PesPerTile = ppt
                ColumnMux = mux
                AdcBits = adc
                Clock = float clock * 1.0<MHz>
                Precision =
                    {
                        WeightBits = wb
                        BitsPerCell = cell
                        MembraneBits = ub
                    }
                Technology = (if sram then Technology.sram65nm else Technology.rram65nm)
            }
    }

let configArb =
    Arb.fromGen (
        gen {
            let! net = networkGen
            let! acc = acceleratorGen
            let! t = Gen.choose (1, 16)
            return net, acc, t
        }
    )

let report (acc: Accelerator) (steps: int) (net: Network) =
    Metrics.evaluate steps (Mapping.map acc net)
