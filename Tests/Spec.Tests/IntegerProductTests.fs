module SnnSpec.Tests.IntegerProductTests

open System
open NUnit.Framework
open FsCheck.NUnit
open SnnSpec

/// An exported layer with the given codes; the fields the product does not read are placeholders.
let private layer (kind: string) (shape: int[]) (weights: int[]) (stride: int) (padding: int) =
    {
        Name = "l"
        Kind = kind
        Shape = shape
        Weights = weights
        Bias = None
        Bits = 8
        Levels = 127
        Alpha = 1.0f
        Step = 1.0f / 127.0f
        Stride = stride
        Padding = padding
        FoldedNorm = None
        Neuron = None
    }

/// Codes in −q…q.
let private codes (rng: Random) (q: int) (n: int) =
    Array.init n (fun _ -> rng.Next(-q, q + 1))

/// Inputs: binary spikes, or small non-negative counts when maxX > 1.
let private inputs (rng: Random) (maxX: int) (n: int) =
    Array.init n (fun _ -> if rng.NextDouble() < 0.4 then rng.Next(1, maxX + 1) else 0)

/// A direct convolution written output by output: acc[i, oc, oy, ox] = Σ w[oc, ci, ky, kx]·x[i, ci, oy·s − p + ky, ox·s − p + kx].
let private directConv (il: IntegerLayer) (x: int[]) (shape: int[]) =
    let n, c, h, w = shape[0], shape[1], shape[2], shape[3]
    let o, k, s, p = il.Shape[0], il.Shape[2], il.Stride, il.Padding
    let ho = (h + 2 * p - k) / s + 1
    let wo = (w + 2 * p - k) / s + 1

    let acc =
        Array.init (n * o * ho * wo) (fun idx ->
            let ox = idx % wo
            let oy = idx / wo % ho
            let oc = idx / (wo * ho) % o
            let i = idx / (wo * ho * o)
            let mutable sum = 0

            for ci in 0 .. c - 1 do
                for ky in 0 .. k - 1 do
                    for kx in 0 .. k - 1 do
                        let y = oy * s - p + ky
                        let xx = ox * s - p + kx

                        if y >= 0 && y < h && xx >= 0 && xx < w then
                            sum <-
                                sum
                                + il.Weights[((oc * c + ci) * k + ky) * k + kx]
                                  * x[((i * c + ci) * h + y) * w + xx]

            sum)

    acc, [| n; o; ho; wo |]

let private assertSame (what: string) (expected: int[] * int[]) (actual: int[] * int[]) =
    Assert.That(box (snd actual), Is.EqualTo(box (snd expected)), what + ": output shape")
    Assert.That(box (fst actual), Is.EqualTo(box (fst expected)), what + ": products")

[<Property(MaxTest = 40)>]
let ``the exact product of a linear layer equals the term-by-term integer sum`` (seed: int) =
    let rng = Random seed
    let n, fin, o = rng.Next(1, 6), rng.Next(1, 300), rng.Next(1, 40)
    let q = (1 <<< rng.Next(1, 8)) - 1
    let il = layer "linear" [| o; fin |] (codes rng q (o * fin)) 1 0
    let x = inputs rng (if rng.Next 2 = 0 then 1 else 7) (n * fin)
    let shape = [| n; fin |]

    let direct =
        Array.init (n * o) (fun idx ->
            let i, j = idx / o, idx % o

            Array.map2 (*) il.Weights[j * fin .. j * fin + fin - 1] x[i * fin .. i * fin + fin - 1]
            |> Array.sum),
        [| n; o |]

    assertSame "reference" direct (Forward.referenceProduct il x shape)
    assertSame "exact" direct (Forward.exactProduct il x shape)

[<Property(MaxTest = 40)>]
let ``the exact product of a conv layer equals the direct convolution at every stride and padding`` (seed: int) =
    let rng = Random seed
    let n, c, o = rng.Next(1, 4), rng.Next(1, 6), rng.Next(1, 9)
    let k = [| 1; 3; 5 |][rng.Next 3]
    let h, w = rng.Next(k, k + 9), rng.Next(k, k + 9)
    let stride, padding = rng.Next(1, 3), rng.Next(0, k / 2 + 1)
    let q = (1 <<< rng.Next(1, 8)) - 1

    let il =
        layer "conv2d" [| o; c; k; k |] (codes rng q (o * c * k * k)) stride padding

    let x = inputs rng (if rng.Next 2 = 0 then 1 else 5) (n * c * h * w)
    let shape = [| n; c; h; w |]
    let direct = directConv il x shape
    let what = sprintf "k %d, stride %d, padding %d" k stride padding

    assertSame (what + ", reference") direct (Forward.referenceProduct il x shape)
    assertSame (what + ", exact") direct (Forward.exactProduct il x shape)

[<Test>]
let ``products beyond float32's exact integers are still exact`` () =
    // Neither 2^24 + 1 nor 2001 · 9001 is a float32: float32 kernels would round both.
    let il = layer "linear" [| 1; 2 |] [| 16777216; 1 |] 1 0
    let acc, shape = Forward.exactProduct il [| 1; 1 |] [| 1; 2 |]
    Assert.That(box shape, Is.EqualTo(box [| 1; 1 |]))
    Assert.That(acc[0], Is.EqualTo 16777217)

    let conv = layer "conv2d" [| 1; 1; 1; 1 |] [| 9001 |] 1 0
    let acc, _ = Forward.exactProduct conv [| 2001; 1 |] [| 1; 1; 1; 2 |]
    Assert.That(box acc, Is.EqualTo(box [| 18011001; 9001 |]))
