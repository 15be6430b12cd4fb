/// FsCheck generators of shapes and tensors shared by the property tests.
module SnnSpec.Tests.Generators

open FsCheck
open FsCheck.FSharp
open SnnSpec

/// A shape of rank 0–4 with small dimensions (1–5).
type SmallShape = SmallShape of int[]

/// Two shapes that broadcast together (NumPy rules), with their seed for values.
type BroadcastPair = BroadcastPair of int[] * int[] * int

/// A seed for tensor values.
type Seed = Seed of int

let genShape (maxRank: int) (maxDim: int) =
    gen {
        let! rank = Gen.choose (0, maxRank)
        let! dims = Gen.arrayOfLength rank (Gen.choose (1, maxDim))
        return dims
    }

let genBroadcastPair =
    gen {
        let! full = genShape 4 4
        // Drop leading axes and set some axes to 1 in each operand independently.
        let thin (s: int[]) =
            gen {
                let! drop = Gen.choose (0, s.Length)
                let kept = s[drop..]
                let! ones = Gen.arrayOfLength kept.Length (Gen.elements [ true; false; false ])
                return Array.map2 (fun d o -> if o then 1 else d) kept ones
            }

        let! a = thin full
        let! b = thin full
        let! seed = Gen.choose (0, 100000)
        return BroadcastPair(a, b, seed)
    }

type Arbitraries =
    static member SmallShape() =
        genShape 4 5 |> Gen.map SmallShape |> Arb.fromGen

    static member BroadcastPair() = genBroadcastPair |> Arb.fromGen

    static member Seed() =
        Gen.choose (0, 1000000) |> Gen.map Seed |> Arb.fromGen
