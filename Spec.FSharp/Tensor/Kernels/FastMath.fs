namespace SnnSpec.Kernels

open System
open System.Runtime.Intrinsics

/// A 16-lane exp for the neuron kernel's surrogates: Cody–Waite reduction x = n·ln2 + r, |r| ≤ ln2/2, a degree-6
/// polynomial for eʳ (Cephes expf, ≈ 1 ulp) and 2ⁿ built in the exponent bits; inputs are clamped to
/// [−87.3, 88.3] (the normal float32 range), so very negative x give ≈ 1e−38 rather than 0.
module internal FastMath =
    let magic = Vector512.Create 12582912.0f // 1.5·2²³: adding it rounds to an integer

    let inline exp (x: Vector512<float32>) =
        let x =
            Vector512.Min(Vector512.Max(x, Vector512.Create -87.3f), Vector512.Create 88.3f)

        let t = Vector512.FusedMultiplyAdd(x, Vector512.Create 1.44269504f, magic)
        let n = t - magic
        let r = Vector512.FusedMultiplyAdd(n, Vector512.Create -0.693359375f, x)
        let r = Vector512.FusedMultiplyAdd(n, Vector512.Create 2.12194440e-4f, r)
        let mutable p = Vector512.Create 1.9875691500e-4f
        p <- Vector512.FusedMultiplyAdd(p, r, Vector512.Create 1.3981999507e-3f)
        p <- Vector512.FusedMultiplyAdd(p, r, Vector512.Create 8.3334519073e-3f)
        p <- Vector512.FusedMultiplyAdd(p, r, Vector512.Create 4.1665795894e-2f)
        p <- Vector512.FusedMultiplyAdd(p, r, Vector512.Create 1.6666665459e-1f)
        p <- Vector512.FusedMultiplyAdd(p, r, Vector512.Create 5.0000001201e-1f)
        let y = Vector512.FusedMultiplyAdd(p, r * r, r + Vector512.Create 1.0f)
        let bits = (t.AsInt32() - magic.AsInt32() + Vector512.Create 127) <<< 23
        y * bits.AsSingle()
