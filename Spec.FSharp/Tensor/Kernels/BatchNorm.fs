namespace SnnSpec.Kernels

open System
open System.Numerics.Tensors
open System.Runtime.Intrinsics
open SnnSpec

/// Layout of batch normalisation over axis 1: x is [N, C, S] row-major, S the product of the dimensions after
/// the channel axis (S = 1 for [N, C]). Statistics are per channel over the M = N·S elements x[n, c, s].
type BatchNormGeometry =
    {
        N: int
        C: int
        S: int
    }

    /// Elements per channel: N·S.
    member g.Count = g.N * g.S
    /// Elements of x: N·C·S.
    member g.Length = g.N * g.C * g.S

/// 16-lane loops over one contiguous run of a channel.
module internal BnSimd =
    /// Σ_i (x[off + i] − m)² over len elements.
    let sumSqDev (x: float32[]) (off: int) (len: int) (m: float32) : float =
        let vm = Vector512.Create m
        let mutable acc = Vector512<float32>.Zero
        let mutable i = 0

        while i + 16 <= len do
            let d = Vector512.LoadUnsafe(&x[off + i]) - vm
            acc <- Vector512.FusedMultiplyAdd(d, d, acc)
            i <- i + 16

        let mutable s = float (Vector512.Sum acc)

        while i < len do
            let d = float (x[off + i] - m)
            s <- s + d * d
            i <- i + 1

        s

    /// y[yOff + i] = a·x[xOff + i] + b for i in [0, len).
    let affine (x: float32[]) (xOff: int) (y: float32[]) (yOff: int) (len: int) (a: float32) (b: float32) =
        let va = Vector512.Create a
        let vb = Vector512.Create b
        let mutable i = 0

        while i + 16 <= len do
            Vector512.FusedMultiplyAdd(Vector512.LoadUnsafe(&x[xOff + i]), va, vb).StoreUnsafe(&y[yOff + i])
            i <- i + 16

        while i < len do
            y[yOff + i] <- a * x[xOff + i] + b
            i <- i + 1

    /// y[yOff + i] = a·(x[xOff + i] − m) + b for i in [0, len): the centred form keeps full precision
    /// when the spread is tiny against the mean (a·x and a·m would cancel in a·x + (b − a·m)).
    let centredAffine
        (x: float32[])
        (xOff: int)
        (y: float32[])
        (yOff: int)
        (len: int)
        (a: float32)
        (m: float32)
        (b: float32)
        =
        let va = Vector512.Create a
        let vm = Vector512.Create m
        let vb = Vector512.Create b
        let mutable i = 0

        while i + 16 <= len do
            Vector512.FusedMultiplyAdd(Vector512.LoadUnsafe(&x[xOff + i]) - vm, va, vb).StoreUnsafe(&y[yOff + i])
            i <- i + 16

        while i < len do
            y[yOff + i] <- a * (x[xOff + i] - m) + b
            i <- i + 1

    /// (Σ_i dy[i], Σ_i dy[i]·(x[i] − m)) over len elements.
    let sumAndDot (dy: float32[]) (dyOff: int) (x: float32[]) (xOff: int) (len: int) (m: float32) =
        let vm = Vector512.Create m
        let mutable s = Vector512<float32>.Zero
        let mutable d = Vector512<float32>.Zero
        let mutable i = 0

        while i + 16 <= len do
            let g = Vector512.LoadUnsafe(&dy[dyOff + i])
            s <- s + g
            d <- Vector512.FusedMultiplyAdd(g, Vector512.LoadUnsafe(&x[xOff + i]) - vm, d)
            i <- i + 16

        let mutable ss = float (Vector512.Sum s)
        let mutable dd = float (Vector512.Sum d)

        while i < len do
            ss <- ss + float dy[dyOff + i]
            dd <- dd + float dy[dyOff + i] * float (x[xOff + i] - m)
            i <- i + 1

        struct (ss, dd)

    /// dx[i] (+)= a·dy[i] + b·(x[i] − m) + c over len elements (centred, as centredAffine).
    let gradAffine
        (dy: float32[])
        (dyOff: int)
        (x: float32[])
        (xOff: int)
        (dx: float32[])
        (dxOff: int)
        (len: int)
        (a: float32)
        (b: float32)
        (m: float32)
        (c: float32)
        (accumulate: bool)
        =
        let va = Vector512.Create a
        let vb = Vector512.Create b
        let vm = Vector512.Create m
        let vc = Vector512.Create c
        let mutable i = 0

        while i + 16 <= len do
            let v =
                Vector512.FusedMultiplyAdd(
                    Vector512.LoadUnsafe(&dy[dyOff + i]),
                    va,
                    Vector512.FusedMultiplyAdd(Vector512.LoadUnsafe(&x[xOff + i]) - vm, vb, vc)
                )

            let v =
                if accumulate then
                    v + Vector512.LoadUnsafe(&dx[dxOff + i])
                else
                    v

            v.StoreUnsafe(&dx[dxOff + i])
            i <- i + 16

        while i < len do
            let v = a * dy[dyOff + i] + b * (x[xOff + i] - m) + c
            dx[dxOff + i] <- if accumulate then dx[dxOff + i] + v else v
            i <- i + 1

/// Raw batch-normalisation kernels over [N, C, S] float32 arrays (x, y, dy, dx with element offsets). Per-channel
/// vectors (γ, β, mean, invstd, running statistics, dγ, dβ) are arrays of at least C elements indexed from 0.
/// γ = None means γ = 1, β = None means β = 0. Outputs are caller-provided. Parallel over channels.
module BatchNorm =
    let private validate op (g: BatchNormGeometry) =
        if g.N < 1 then
            Errors.invalidArg op "N" g.N "a positive integer"

        if g.C < 1 then
            Errors.invalidArg op "C" g.C "a positive integer"

        if g.S < 1 then
            Errors.invalidArg op "S" g.S "a positive integer (the product of the spatial sizes)"

    let private checkLength = Errors.checkBuffer

    let private checkChannels op name (g: BatchNormGeometry) (v: float32[] option) =
        v |> Option.iter (fun a -> checkLength op name a.Length 0 g.C)

    let private grain (g: BatchNormGeometry) = max 1 (16384 / max 1 g.Count)

    /// running ← (1 − momentum)·running + momentum·batch for the mean, and for the variance with the unbiased
    /// batch variance batchVar·M/(M − 1), M = N·S (PyTorch's convention). batchVar is the biased variance.
    let updateRunningStats
        (g: BatchNormGeometry)
        (momentum: float32)
        (batchMean: float32[])
        (batchVar: float32[])
        (runningMean: float32[])
        (runningVar: float32[])
        =
        let op = "batchNorm running statistics"
        validate op g

        if g.Count < 2 then
            Errors.invalidArg op "N·S" g.Count "at least 2 values per channel for an unbiased variance"

        for name, a in
            [
                "batchMean", batchMean
                "batchVar", batchVar
                "runningMean", runningMean
                "runningVar", runningVar
            ] do
            checkLength op name a.Length 0 g.C

        let m = float g.Count
        let mom = float momentum

        for c in 0 .. g.C - 1 do
            runningMean[c] <- float32 ((1.0 - mom) * float runningMean[c] + mom * float batchMean[c])
            runningVar[c] <- float32 ((1.0 - mom) * float runningVar[c] + mom * float batchVar[c] * m / (m - 1.0))

    /// Training forward: mean[c] = (1/M)·Σ x[n, c, s], var[c] = (1/M)·Σ (x − mean[c])² (biased),
    /// invstd[c] = 1/√(var[c] + eps), y = γ[c]·(x − mean[c])·invstd[c] + β[c]. Writes y, mean and invstd (the
    /// values backward needs) and, when running statistics are given, applies updateRunningStats with momentum.
    /// Requires M = N·S ≥ 2.
    let forwardTraining
        (g: BatchNormGeometry)
        (eps: float32)
        (momentum: float32)
        (x: float32[])
        (xOff: int)
        (gamma: float32[] option)
        (beta: float32[] option)
        (y: float32[])
        (yOff: int)
        (mean: float32[])
        (invstd: float32[])
        (runningMean: float32[] option)
        (runningVar: float32[] option)
        =
        let op = "batchNorm"
        validate op g

        if g.Count < 2 then
            Errors.invalidArg op "N·S" g.Count "at least 2 values per channel in training mode"

        if not (eps > 0.0f) then
            Errors.invalidArg op "eps" eps "a positive number"

        checkLength op "x" x.Length xOff g.Length
        checkLength op "y" y.Length yOff g.Length
        checkLength op "mean" mean.Length 0 g.C
        checkLength op "invstd" invstd.Length 0 g.C
        checkChannels op "gamma" g gamma
        checkChannels op "beta" g beta
        checkChannels op "runningMean" g runningMean
        checkChannels op "runningVar" g runningVar

        if runningMean.IsSome <> runningVar.IsSome then
            Errors.fail (sprintf "%s: pass both runningMean and runningVar or neither." op)

        let count = g.Count
        let var = Array.zeroCreate<float32> g.C

        let scaleOf c =
            let inv = invstd[c]

            let a =
                (match gamma with
                 | Some gm -> gm[c]
                 | None -> 1.0f)
                * inv

            let b =
                (match beta with
                 | Some bt -> bt[c]
                 | None -> 0.0f)
                - mean[c] * a

            struct (a, b)

        if g.S = 1 then
            let c = g.C
            let acc = Array.zeroCreate<float32> c

            for n in 0 .. g.N - 1 do
                TensorPrimitives.Add(ReadOnlySpan<float32>(x, xOff + n * c, c), acc, acc)

            TensorPrimitives.Multiply(acc, 1.0f / float32 count, Span<float32>(mean, 0, c))
            let d = Array.zeroCreate<float32> c
            Array.Clear acc

            for n in 0 .. g.N - 1 do
                TensorPrimitives.Subtract(
                    ReadOnlySpan<float32>(x, xOff + n * c, c),
                    ReadOnlySpan<float32>(mean, 0, c),
                    d
                )

                TensorPrimitives.MultiplyAdd(d, d, acc, acc)

            TensorPrimitives.Multiply(acc, 1.0f / float32 count, var)
            let a = Array.zeroCreate<float32> c
            let b = Array.zeroCreate<float32> c

            for ch in 0 .. c - 1 do
                invstd[ch] <- 1.0f / MathF.Sqrt(var[ch] + eps)
                let struct (ac, _) = scaleOf ch
                a[ch] <- ac

                b[ch] <-
                    match beta with
                    | Some bt -> bt[ch]
                    | None -> 0.0f

            // y = a·(x − μ) + β, centred (see BnSimd.centredAffine).
            for n in 0 .. g.N - 1 do
                let out = Span<float32>(y, yOff + n * c, c)

                TensorPrimitives.Subtract(
                    ReadOnlySpan<float32>(x, xOff + n * c, c),
                    ReadOnlySpan<float32>(mean, 0, c),
                    out
                )

                TensorPrimitives.MultiplyAdd(out, a, b, out)
        else
            let s = g.S

            Par.forChunks g.C (grain g) (fun c0 c1 ->
                for c in c0 .. c1 - 1 do
                    let mutable sum = 0.0

                    for n in 0 .. g.N - 1 do
                        sum <-
                            sum
                            + float (TensorPrimitives.Sum(ReadOnlySpan<float32>(x, xOff + (n * g.C + c) * s, s)))

                    let m = float32 (sum / float count)
                    let mutable sq = 0.0

                    for n in 0 .. g.N - 1 do
                        sq <- sq + BnSimd.sumSqDev x (xOff + (n * g.C + c) * s) s m

                    mean[c] <- m
                    var[c] <- float32 (sq / float count)
                    invstd[c] <- float32 (1.0 / Math.Sqrt(sq / float count + float eps))
                    let struct (a, _) = scaleOf c

                    let b =
                        match beta with
                        | Some bt -> bt[c]
                        | None -> 0.0f

                    for n in 0 .. g.N - 1 do
                        let o = (n * g.C + c) * s
                        BnSimd.centredAffine x (xOff + o) y (yOff + o) s a m b)

        match runningMean, runningVar with
        | Some rm, Some rv -> updateRunningStats g momentum mean var rm rv
        | _ -> ()

    /// Evaluation forward: y = γ[c]·(x − runningMean[c])/√(runningVar[c] + eps) + β[c].
    let forwardEval
        (g: BatchNormGeometry)
        (eps: float32)
        (x: float32[])
        (xOff: int)
        (runningMean: float32[])
        (runningVar: float32[])
        (gamma: float32[] option)
        (beta: float32[] option)
        (y: float32[])
        (yOff: int)
        =
        let op = "batchNorm eval"
        validate op g

        if not (eps > 0.0f) then
            Errors.invalidArg op "eps" eps "a positive number"

        checkLength op "x" x.Length xOff g.Length
        checkLength op "y" y.Length yOff g.Length
        checkLength op "runningMean" runningMean.Length 0 g.C
        checkLength op "runningVar" runningVar.Length 0 g.C
        checkChannels op "gamma" g gamma
        checkChannels op "beta" g beta
        let a = Array.zeroCreate<float32> g.C
        let b = Array.zeroCreate<float32> g.C

        for c in 0 .. g.C - 1 do
            let inv = float32 (1.0 / Math.Sqrt(float runningVar[c] + float eps))

            a[c] <-
                (match gamma with
                 | Some gm -> gm[c]
                 | None -> 1.0f)
                * inv

            b[c] <-
                (match beta with
                 | Some bt -> bt[c]
                 | None -> 0.0f)
                - runningMean[c] * a[c]

        if g.S = 1 then
            for n in 0 .. g.N - 1 do
                TensorPrimitives.MultiplyAdd(
                    ReadOnlySpan<float32>(x, xOff + n * g.C, g.C),
                    a,
                    b,
                    Span<float32>(y, yOff + n * g.C, g.C)
                )
        else
            Par.forChunks g.C (grain g) (fun c0 c1 ->
                for c in c0 .. c1 - 1 do
                    for n in 0 .. g.N - 1 do
                        let o = (n * g.C + c) * g.S
                        BnSimd.affine x (xOff + o) y (yOff + o) g.S a[c] b[c])

    /// Training backward with batch statistics (mean, invstd from forwardTraining), x̂ = (x − mean)·invstd:
    /// dβ[c] = Σ dy, dγ[c] = Σ dy·x̂, dx = γ[c]·invstd[c]·(dy − dβ[c]/M − x̂·dγ[c]/M), M = N·S.
    /// dx, and dγ/dβ when given, are overwritten unless <c>accumulate</c>.
    let backward
        (g: BatchNormGeometry)
        (x: float32[])
        (xOff: int)
        (dy: float32[])
        (dyOff: int)
        (mean: float32[])
        (invstd: float32[])
        (gamma: float32[] option)
        (dx: float32[])
        (dxOff: int)
        (dgamma: float32[] option)
        (dbeta: float32[] option)
        (accumulate: bool)
        =
        let op = "batchNorm backward"
        validate op g
        checkLength op "x" x.Length xOff g.Length
        checkLength op "dy" dy.Length dyOff g.Length
        checkLength op "dx" dx.Length dxOff g.Length
        checkLength op "mean" mean.Length 0 g.C
        checkLength op "invstd" invstd.Length 0 g.C
        checkChannels op "gamma" g gamma
        checkChannels op "dgamma" g dgamma
        checkChannels op "dbeta" g dbeta
        let m = float32 g.Count

        let store c (sdy: float) (sdyx: float) =
            let inv = invstd[c]

            match dbeta with
            | Some db -> db[c] <- (if accumulate then db[c] else 0.0f) + float32 sdy
            | None -> ()

            match dgamma with
            | Some dg -> dg[c] <- (if accumulate then dg[c] else 0.0f) + float32 (sdyx * float inv)
            | None -> ()

            let gm =
                match gamma with
                | Some gm -> gm[c]
                | None -> 1.0f

            let a = gm * inv
            let b = -gm * inv * inv * inv * float32 sdyx / m
            let cc = -a * float32 sdy / m
            struct (a, b, cc)

        if g.S = 1 then
            let c = g.C
            let sdy = Array.zeroCreate<float32> c
            let sdyx = Array.zeroCreate<float32> c
            let d = Array.zeroCreate<float32> c

            for n in 0 .. g.N - 1 do
                let dyr = ReadOnlySpan<float32>(dy, dyOff + n * c, c)
                TensorPrimitives.Add(dyr, sdy, sdy)

                TensorPrimitives.Subtract(
                    ReadOnlySpan<float32>(x, xOff + n * c, c),
                    ReadOnlySpan<float32>(mean, 0, c),
                    d
                )

                TensorPrimitives.MultiplyAdd(dyr, d, sdyx, sdyx)

            let a = Array.zeroCreate<float32> c
            let b = Array.zeroCreate<float32> c
            let cc = Array.zeroCreate<float32> c

            for ch in 0 .. c - 1 do
                let struct (ac, bc, ccc) = store ch (float sdy[ch]) (float sdyx[ch])
                a[ch] <- ac
                b[ch] <- bc
                cc[ch] <- ccc

            for n in 0 .. g.N - 1 do
                let dxr = Span<float32>(dx, dxOff + n * c, c)

                TensorPrimitives.Subtract(
                    ReadOnlySpan<float32>(x, xOff + n * c, c),
                    ReadOnlySpan<float32>(mean, 0, c),
                    d
                )

                TensorPrimitives.MultiplyAdd(d, b, cc, d)
                TensorPrimitives.MultiplyAdd(ReadOnlySpan<float32>(dy, dyOff + n * c, c), a, d, d)

                if accumulate then
                    TensorPrimitives.Add(dxr, d, dxr)
                else
                    d.AsSpan().CopyTo dxr
        else
            let s = g.S

            Par.forChunks g.C (grain g) (fun c0 c1 ->
                for c in c0 .. c1 - 1 do
                    let mutable sdy = 0.0
                    let mutable sdyx = 0.0

                    for n in 0 .. g.N - 1 do
                        let o = (n * g.C + c) * s
                        let struct (a, b) = BnSimd.sumAndDot dy (dyOff + o) x (xOff + o) s mean[c]
                        sdy <- sdy + a
                        sdyx <- sdyx + b

                    let struct (a, b, cc) = store c sdy sdyx

                    for n in 0 .. g.N - 1 do
                        let o = (n * g.C + c) * s
                        BnSimd.gradAffine dy (dyOff + o) x (xOff + o) dx (dxOff + o) s a b mean[c] cc accumulate)
