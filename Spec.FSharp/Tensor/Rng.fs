namespace SnnSpec

open System

/// A counter-based random key: the i-th number drawn from key k is a pure function of (k, i),
/// so random tensors are reproducible for a seed whatever the thread count.
/// Keys are values: <c>split</c> derives independent keys instead of mutating a generator.
[<Struct; CustomEquality; NoComparison>]
type Rng =
    val Key: uint64
    new(key: uint64) = { Key = key }

    override r.Equals(o) =
        match o with
        | :? Rng as q -> q.Key = r.Key
        | _ -> false

    override r.GetHashCode() = r.Key.GetHashCode()
    override r.ToString() = sprintf "Rng(%016x)" r.Key

module Rng =
    /// SplitMix64 finaliser: a bijective 64-bit mixer with full avalanche.
    let inline mix (z: uint64) =
        let mutable z = z
        z <- (z ^^^ (z >>> 30)) * 0xbf58476d1ce4e5b9UL
        z <- (z ^^^ (z >>> 27)) * 0x94d049bb133111ebUL
        z ^^^ (z >>> 31)

    let golden = 0x9e3779b97f4a7c15UL

    /// A key from a seed.
    let create (seed: int) = Rng(mix (uint64 (int64 seed) + golden))

    /// Two independent keys derived from one.
    let split (r: Rng) =
        Rng(mix (r.Key ^^^ 0x1234567UL)), Rng(mix (r.Key + golden * 3UL))

    /// n independent keys derived from one.
    let splitN (n: int) (r: Rng) =
        Array.init n (fun i -> Rng(mix (r.Key + golden * uint64 (i + 7))))

    /// A key derived from this key and an integer (e.g. an epoch or step number).
    let fold (data: int) (r: Rng) =
        Rng(mix (r.Key ^^^ mix (uint64 (int64 data) + golden)))

    /// The i-th raw 64-bit draw of a key.
    let inline bits (r: Rng) (i: int64) = mix (r.Key + golden * uint64 (i + 1L))

    /// The i-th uniform draw in [0, 1) with 24 random bits (exact in float32).
    let inline uniform (r: Rng) (i: int64) =
        float32 (bits r i >>> 40) * (1.0f / 16777216.0f)

    /// The i-th uniform draw in (0, 1] with 53 random bits.
    let inline uniform64Open (r: Rng) (i: int64) =
        (float (bits r i >>> 11) + 1.0) * (1.0 / 9007199254740992.0)

    /// The i-th standard normal draw (Box–Muller on draws 2i and 2i+1).
    let normal (r: Rng) (i: int64) =
        let u1 = uniform64Open r (2L * i)
        let u2 = uniform64Open r (2L * i + 1L)
        float32 (Math.Sqrt(-2.0 * Math.Log u1) * Math.Cos(2.0 * Math.PI * u2))

    /// A uniformly random integer in [0, n).
    let intBelow (r: Rng) (i: int64) (n: int) =
        if n <= 0 then
            Errors.invalidArg "Rng.intBelow" "n" n "a positive bound"

        int ((bits r i >>> 33) % uint64 n)

    /// A permutation of 0..n−1 (Fisher–Yates driven by the key).
    let permutation (n: int) (r: Rng) =
        let p = Array.init n id

        for i in n - 1 .. -1 .. 1 do
            let j = int ((bits r (int64 i) >>> 11) % uint64 (i + 1))
            let t = p[i]
            p[i] <- p[j]
            p[j] <- t

        p
