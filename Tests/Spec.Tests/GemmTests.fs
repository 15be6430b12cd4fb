module SnnSpec.Tests.GemmTests

open System
open NUnit.Framework
open FsCheck
open FsCheck.FSharp
open FsCheck.NUnit
open SnnSpec
open SnnSpec.Kernels

/// One GEMM problem with its storage layout; the data comes from <c>Seed</c>.
type Case =
    {
        M: int
        N: int
        K: int
        TransA: bool
        TransB: bool
        Alpha: float32
        Beta: float32
        PadA: int
        PadB: int
        PadC: int
        OffA: int
        OffB: int
        OffC: int
        Seed: int
    }

type Problem =
    {
        Case: Case
        A: float32[]
        Lda: int
        B: float32[]
        Ldb: int
        C: float32[]
        Ldc: int
    }

let private uniform (rng: Random) count =
    Array.init count (fun _ -> float32 (rng.NextDouble() * 2.0 - 1.0))

let build (c: Case) =
    let rng = Random(c.Seed)
    let lda = (if c.TransA then c.M else c.K) + c.PadA
    let ldb = (if c.TransB then c.K else c.N) + c.PadB
    let ldc = c.N + c.PadC
    let rowsA = if c.TransA then c.K else c.M
    let rowsB = if c.TransB then c.N else c.K

    {
        Case = c
        A = uniform rng (c.OffA + rowsA * lda + 3)
        Lda = lda
        B = uniform rng (c.OffB + rowsB * ldb + 3)
        Ldb = ldb
        C = uniform rng (c.OffC + c.M * ldc + 3)
        Ldc = ldc
    }

let private maxAbs (xs: float32[]) =
    xs |> Array.fold (fun acc x -> max acc (abs x)) 0.0f

/// Float32 error bound: k·eps·max|a|·max|b|·|α| for the products plus eps·|β|·max|C| for the update.
let tolerance (p: Problem) =
    let c = p.Case
    let eps = 1.2e-7f

    4.0f
    * eps
    * (float32 (c.K + 2) * abs c.Alpha * maxAbs p.A * maxAbs p.B
       + abs c.Beta * maxAbs p.C
       + 1e-30f)

let runSgemm (p: Problem) (c: float32[]) =
    let x = p.Case

    Gemm.Sgemm(
        x.TransA,
        x.TransB,
        x.M,
        x.N,
        x.K,
        x.Alpha,
        p.A,
        x.OffA,
        p.Lda,
        p.B,
        x.OffB,
        p.Ldb,
        x.Beta,
        c,
        x.OffC,
        p.Ldc
    )

let runReference (p: Problem) (c: float32[]) =
    let x = p.Case

    Gemm.Reference(
        x.TransA,
        x.TransB,
        x.M,
        x.N,
        x.K,
        x.Alpha,
        p.A,
        x.OffA,
        p.Lda,
        p.B,
        x.OffB,
        p.Ldb,
        x.Beta,
        c,
        x.OffC,
        p.Ldc
    )

/// Largest |x − y| over the arrays, and whether every element outside the m×n block is bit-equal.
let compare (p: Problem) (x: float32[]) (y: float32[]) =
    let c = p.Case
    let mutable err = 0.0f
    let mutable outside = true

    for idx in 0 .. x.Length - 1 do
        let rel = idx - c.OffC
        let inBlock = rel >= 0 && rel / p.Ldc < c.M && rel % p.Ldc < c.N

        if inBlock then
            err <- max err (abs (x[idx] - y[idx]))
        elif BitConverter.SingleToInt32Bits x[idx] <> BitConverter.SingleToInt32Bits y[idx] then
            outside <- false

    err, outside

let agrees (p: Problem) =
    let expected = Array.copy p.C
    let actual = Array.copy p.C
    runReference p expected
    runSgemm p actual
    let err, outside = compare p expected actual
    let tol = tolerance p

    (err <= tol && outside)
    |> Prop.label (sprintf "max error %g, tolerance %g, outside block untouched %b" err tol outside)

let bits (xs: float32[]) =
    Array.map BitConverter.SingleToInt32Bits xs

let private withThreads count (f: unit -> 'T) =
    let saved = Threads.Count
    Threads.Count <- count

    try
        f ()
    finally
        Threads.Count <- saved

let caseGen (maxDim: int) =
    gen {
        let dim =
            Gen.frequency
                [
                    1, Gen.elements [ 1; 2; 11; 12; 13; 16; 17; 31; 32; 33; 63; 64; 65 ]
                    3, Gen.choose (1, maxDim)
                ]

        let! m = dim
        let! n = dim
        let! k = dim
        let! ta = Gen.elements [ false; true ]
        let! tb = Gen.elements [ false; true ]
        let! alpha = Gen.elements [ 1.0f; -1.0f; 0.5f; 1.75f; -0.3f ]
        let! beta = Gen.elements [ 0.0f; 1.0f; -1.0f; 0.25f; 2.0f ]
        let! pads = Gen.arrayOfLength 6 (Gen.choose (0, 5))
        let! seed = Gen.choose (0, Int32.MaxValue)

        return
            {
                M = m
                N = n
                K = k
                TransA = ta
                TransB = tb
                Alpha = alpha
                Beta = beta
                PadA = pads[0]
                PadB = pads[1]
                PadC = pads[2]
                OffA = pads[3]
                OffB = pads[4]
                OffC = pads[5]
                Seed = seed
            }
    }

let fixedCase m n k ta tb alpha beta =
    {
        M = m
        N = n
        K = k
        TransA = ta
        TransB = tb
        Alpha = alpha
        Beta = beta
        PadA = 3
        PadB = 1
        PadC = 2
        OffA = 5
        OffB = 1
        OffC = 7
        Seed = m * 7919 + n * 31 + k
    }

let transposes = [ false, false; false, true; true, false; true, true ]

[<Property(MaxTest = 150)>]
let ``Sgemm matches Reference for random shapes, transposes, scalars and layouts`` () =
    Prop.forAll (Arb.fromGen (caseGen 80)) (build >> agrees)

[<Property(MaxTest = 25)>]
let ``Sgemm matches Reference on one thread and on two`` () =
    Prop.forAll (Arb.fromGen (caseGen 200)) (fun c ->
        let p = build c

        let one =
            withThreads 1 (fun () ->
                (let x = Array.copy p.C in
                 runSgemm p x
                 x))

        let two =
            withThreads 2 (fun () ->
                (let x = Array.copy p.C in
                 runSgemm p x
                 x))

        bits one = bits two |> Prop.label "bit-identical across thread counts"
        .&. agrees p)

[<Test>]
let ``beta = 0 overwrites C without reading NaNs`` () =
    for ta, tb in transposes do
        for m, n, k in [ 3, 5, 7; 40, 70, 33; 130, 90, 600 ] do
            let p = build (fixedCase m n k ta tb 1.5f 0.0f)
            let x = p.Case
            let nanC = Array.copy p.C

            for i in 0 .. x.M - 1 do
                for j in 0 .. x.N - 1 do
                    nanC[x.OffC + i * p.Ldc + j] <- Single.NaN

            let expected = Array.copy p.C
            runReference p expected
            runSgemm p nanC
            let err, outside = compare p expected nanC
            Assert.That(outside, Is.True)
            Assert.That(err, Is.LessThanOrEqualTo(tolerance p), sprintf "%d×%d×%d %b %b" m n k ta tb)

[<Test>]
let ``k = 0 gives beta times C and reads neither A nor B`` () =
    for beta in [ 0.0f; 1.0f; -2.5f ] do
        let c = [| 1.0f; 2.0f; Single.NaN; 3.0f; 4.0f; -1.0f |]
        let before = Array.copy c
        Gemm.Sgemm(false, false, 2, 2, 0, 1.0f, [||], 0, 1, [||], 0, 2, beta, c, 0, 3)

        for i in 0..1 do
            for j in 0..1 do
                let expected = if beta = 0.0f then 0.0f else beta * before[i * 3 + j]
                Assert.That(c[i * 3 + j], Is.EqualTo(expected))

        Assert.That(Single.IsNaN c[2], Is.True)
        Assert.That(c[5], Is.EqualTo(-1.0f))

[<Test>]
let ``m = 0 or n = 0 leaves C untouched`` () =
    let c = [| 1.0f; 2.0f |]
    Gemm.Sgemm(false, false, 0, 2, 3, 1.0f, [||], 0, 3, Array.zeroCreate 6, 0, 2, 0.0f, c, 0, 2)
    Gemm.Sgemm(false, false, 1, 0, 3, 1.0f, Array.zeroCreate 3, 0, 3, [||], 0, 1, 0.0f, c, 0, 1)
    Assert.That((c = [| 1.0f; 2.0f |]), Is.True)

[<Test>]
let ``blocks that do not fit their arrays are rejected`` () =
    let a = Array.zeroCreate<float32> 12
    let c = Array.zeroCreate<float32> 9

    Assert.Throws<SnnSpecException>(fun () -> Gemm.Sgemm(false, false, 3, 3, 4, 1.0f, a, 1, 4, a, 0, 3, 0.0f, c, 0, 3))
    |> ignore

    Assert.Throws<SnnSpecException>(fun () -> Gemm.Sgemm(false, false, 3, 3, 4, 1.0f, a, 0, 3, a, 0, 3, 0.0f, c, 0, 3))
    |> ignore

[<Test>]
let ``large products are bit-identical on one and two threads and match Reference`` () =
    for ta, tb in transposes do
        for m, n, k in [ 300, 257, 513; 13, 4100, 20 ] do
            let p = build (fixedCase m n k ta tb 0.75f -0.5f)
            let one = Array.copy p.C
            let two = Array.copy p.C
            withThreads 1 (fun () -> runSgemm p one)
            withThreads 2 (fun () -> runSgemm p two)
            Assert.That((bits two = bits one), Is.True, sprintf "threads 1 vs 2, %d×%d×%d %b %b" m n k ta tb)
            let expected = Array.copy p.C
            runReference p expected
            let err, outside = compare p expected one
            Assert.That(outside, Is.True)
            Assert.That(err, Is.LessThanOrEqualTo(tolerance p), sprintf "%d×%d×%d %b %b" m n k ta tb)

[<Test>]
let ``OpenBLAS agrees with the managed kernel`` () =
    if not Blas.isAvailable then
        Assert.Ignore
            "OpenBLAS (libopenblas.so.0) is not installed; install libopenblas0-pthread to run this comparison."

    for ta, tb in transposes do
        for m, n, k in [ 1, 1, 1; 37, 45, 29; 300, 257, 513 ] do
            let p = build (fixedCase m n k ta tb 1.25f 0.5f)
            let managed = Array.copy p.C
            let blas = Array.copy p.C
            runSgemm p managed
            let x = p.Case

            Blas.sgemm (
                x.TransA,
                x.TransB,
                x.M,
                x.N,
                x.K,
                x.Alpha,
                p.A,
                x.OffA,
                p.Lda,
                p.B,
                x.OffB,
                p.Ldb,
                x.Beta,
                blas,
                x.OffC,
                p.Ldc
            )

            let err, outside = compare p managed blas
            Assert.That(outside, Is.True)
            Assert.That(err, Is.LessThanOrEqualTo(tolerance p), sprintf "%d×%d×%d %b %b" m n k ta tb)

let private batchedAgrees batch m n k ta tb =
    let rng = Random(batch * 1000 + m + n + k)
    let lda = (if ta then m else k) + 1
    let ldb = (if tb then k else n) + 2
    let ldc = n + 3
    let strideA = lda * (if ta then k else m) + 5
    let strideB = ldb * (if tb then n else k) + 2
    let strideC = ldc * m + 1
    let a = uniform rng (3 + batch * strideA)
    let b = uniform rng (2 + batch * strideB)
    let c0 = uniform rng (4 + batch * strideC)
    let expected = Array.copy c0

    for i in 0 .. batch - 1 do
        Gemm.Reference(
            ta,
            tb,
            m,
            n,
            k,
            0.5f,
            a,
            3 + i * strideA,
            lda,
            b,
            2 + i * strideB,
            ldb,
            1.5f,
            expected,
            4 + i * strideC,
            ldc
        )

    let looped = Array.copy c0

    for i in 0 .. batch - 1 do
        Gemm.Sgemm(
            ta,
            tb,
            m,
            n,
            k,
            0.5f,
            a,
            3 + i * strideA,
            lda,
            b,
            2 + i * strideB,
            ldb,
            1.5f,
            looped,
            4 + i * strideC,
            ldc
        )

    let batched = Array.copy c0

    Gemm.SgemmBatched(
        batch,
        ta,
        tb,
        m,
        n,
        k,
        0.5f,
        a,
        3,
        strideA,
        lda,
        b,
        2,
        strideB,
        ldb,
        1.5f,
        batched,
        4,
        strideC,
        ldc
    )

    Assert.That((bits batched = bits looped), Is.True, "SgemmBatched equals looping Sgemm bit for bit")

    let tol =
        4.0f
        * 1.2e-7f
        * (float32 (k + 2) * 0.5f * maxAbs a * maxAbs b + 1.5f * maxAbs c0)

    let err =
        Array.map2 (fun (x: float32) y -> abs (x - y)) expected batched |> Array.max

    Assert.That(err, Is.LessThanOrEqualTo(tol))

[<Test>]
let ``SgemmBatched refuses a batch whose last matrix lies outside the arrays before writing any`` () =
    let a = Array.create (4 * 3 * 2) 1.0f
    let b = Array.create (4 * 2 * 5) 1.0f
    // Room for three C blocks of 3×5, not four.
    let c = Array.create (3 * 15) -1.0f

    let e =
        Assert.Throws<SnnSpecException>(fun () ->
            Gemm.SgemmBatched(4, false, false, 3, 5, 2, 1.0f, a, 0, 6, 2, b, 0, 10, 5, 0.0f, c, 0, 15, 5))

    Assert.That(e.Message, Does.Contain "C (offset, ldc, length)")
    Assert.That(c |> Array.forall (fun v -> v = -1.0f), "no C block was written")

    // Offsets that overflow int32 are refused too, not wrapped into the array.
    let big =
        Assert.Throws<SnnSpecException>(fun () ->
            Gemm.SgemmBatched(5, false, false, 3, 5, 2, 1.0f, a, 0, 1 <<< 30, 2, b, 0, 10, 5, 0.0f, c, 0, 15, 5))

    Assert.That(big.Message, Does.Contain "A offset of matrix 4")
    Assert.That(c |> Array.forall (fun v -> v = -1.0f), "no C block was written")

[<Test>]
let ``SgemmBatched equals a loop of Reference`` () =
    for ta, tb in transposes do
        batchedAgrees 7 9 14 23 ta tb
        batchedAgrees 3 40 33 70 ta tb
        batchedAgrees 2 170 150 190 ta tb

    batchedAgrees 0 5 5 5 false false
