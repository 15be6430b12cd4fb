namespace SnnSpec.Kernels

open System
open System.Collections.Generic
open System.Numerics.Tensors
open System.Threading.Tasks
open SnnSpec

/// A process-wide cache of float32 scratch buffers, so large work buffers are touched once and reused.
/// Contents of a rented buffer are arbitrary; every buffer rented must be returned exactly once.
module internal Scratch =
    let private capacity = 16
    let private pool = List<float32[]>()

    /// A buffer of at least <c>size</c> elements: the smallest cached one that fits, else a new one.
    let rent (size: int) : float32[] =
        let found =
            lock pool (fun () ->
                let mutable best = -1

                for i in 0 .. pool.Count - 1 do
                    if pool[i].Length >= size && (best < 0 || pool[i].Length < pool[best].Length) then
                        best <- i

                if best < 0 then
                    ValueNone
                else
                    let a = pool[best]
                    pool.RemoveAt best
                    ValueSome a)

        match found with
        | ValueSome a -> a
        | ValueNone -> GC.AllocateUninitializedArray<float32>(max 1 size)

    /// Gives a rented buffer back; when the cache is full the smallest buffer is dropped.
    let give (a: float32[]) =
        lock pool (fun () ->
            if pool.Count < capacity then
                pool.Add a
            else
                let mutable smallest = 0

                for i in 1 .. pool.Count - 1 do
                    if pool[i].Length < pool[smallest].Length then
                        smallest <- i

                if pool[smallest].Length < a.Length then
                    pool[smallest] <- a)

/// Splitting work over images while the GEMMs inside stay single-threaded.
module internal ConvPar =
    let private gate = obj ()

    /// Runs body(chunk, start, stop) over <c>chunks</c> contiguous chunks of [0, n). With more than one chunk the
    /// chunks run in parallel and Threads.Count is 1 for the duration (restored afterwards), so kernels called
    /// inside (GEMM) do not spawn nested parallel loops; such regions are serialised by a lock.
    let chunks (n: int) (chunks: int) (body: int -> int -> int -> unit) =
        let per = (n + chunks - 1) / chunks

        let run c =
            let s = c * per
            let e = min n (s + per)

            if s < e then
                body c s e

        if chunks <= 1 then
            body 0 0 n
        else
            lock gate (fun () ->
                let saved = Threads.Count
                Threads.Count <- 1

                try
                    Parallel.For(0, chunks, ParallelOptions(MaxDegreeOfParallelism = chunks), (fun c -> run c))
                    |> ignore
                finally
                    Threads.Count <- saved)

/// Geometry of a grouped 2-D convolution over NCHW data.
/// Input x: [N, C, H, W]; weight w: [O, C/Groups, KH, KW]; bias: [O]; output y: [N, O, Ho, Wo] with
/// Ho = ⌊(H + 2·PadH − DilH·(KH − 1) − 1) / StrideH⌋ + 1 (Wo likewise). Output channel o reads the input
/// channels of its group g = o / (O/Groups). Padding is zero padding on both sides.
type Conv2dGeometry =
    {
        N: int
        C: int
        H: int
        W: int
        O: int
        KH: int
        KW: int
        StrideH: int
        StrideW: int
        PadH: int
        PadW: int
        DilH: int
        DilW: int
        Groups: int
    }

    member g.Ho = (g.H + 2 * g.PadH - g.DilH * (g.KH - 1) - 1) / g.StrideH + 1
    member g.Wo = (g.W + 2 * g.PadW - g.DilW * (g.KW - 1) - 1) / g.StrideW + 1
    /// Input channels per group.
    member g.Cg = g.C / g.Groups
    /// Output channels per group.
    member g.Og = g.O / g.Groups
    /// Elements of x: N·C·H·W.
    member g.XLength = g.N * g.C * g.H * g.W
    /// Elements of y: N·O·Ho·Wo.
    member g.YLength = g.N * g.O * g.Ho * g.Wo
    /// Elements of w: O·(C/Groups)·KH·KW.
    member g.WLength = g.O * (g.C / g.Groups) * g.KH * g.KW

    /// Square-kernel geometry with equal stride, padding and dilation on both axes.
    static member Create(n, c, h, w, o, k, ?stride, ?padding, ?dilation, ?groups) =
        let s = defaultArg stride 1
        let p = defaultArg padding 0
        let d = defaultArg dilation 1

        {
            N = n
            C = c
            H = h
            W = w
            O = o
            KH = k
            KW = k
            StrideH = s
            StrideW = s
            PadH = p
            PadW = p
            DilH = d
            DilW = d
            Groups = defaultArg groups 1
        }

/// Raw conv2d kernels (im2col + GEMM, parallel over images). Arrays are row-major with element offsets;
/// outputs are caller-provided and fully written (or added to when <c>accumulate</c>).
module Conv =
    let private op = "conv2d"

    let private positive name (v: int) =
        if v < 1 then
            Errors.invalidArg op name v "a positive integer"

    let private checkLength (name: string) (arr: float32[]) (off: int) (len: int) =
        if off < 0 || off + len > arr.Length then
            Errors.fail (
                sprintf
                    "%s: buffer %s has %d elements but offset %d + length %d is needed; pass a larger array or a smaller offset."
                    op
                    name
                    arr.Length
                    off
                    len
            )

    /// Raises SnnSpecException unless every size is positive, padding non-negative, C and O divisible by
    /// Groups and the output non-empty.
    let validate (g: Conv2dGeometry) =
        positive "N" g.N
        positive "C" g.C
        positive "H" g.H
        positive "W" g.W
        positive "O" g.O
        positive "KH" g.KH
        positive "KW" g.KW
        positive "StrideH" g.StrideH
        positive "StrideW" g.StrideW
        positive "DilH" g.DilH
        positive "DilW" g.DilW
        positive "Groups" g.Groups

        if g.PadH < 0 then
            Errors.invalidArg op "PadH" g.PadH "a non-negative integer"

        if g.PadW < 0 then
            Errors.invalidArg op "PadW" g.PadW "a non-negative integer"

        if g.C % g.Groups <> 0 then
            Errors.invalidArg op "Groups" g.Groups (sprintf "a divisor of the input channels C = %d" g.C)

        if g.O % g.Groups <> 0 then
            Errors.invalidArg op "Groups" g.Groups (sprintf "a divisor of the output channels O = %d" g.O)

        let spanH = g.DilH * (g.KH - 1) + 1

        if g.H + 2 * g.PadH < spanH then
            Errors.fail (
                sprintf
                    "%s: output height is not positive: H + 2·PadH = %d + 2·%d is smaller than the dilated kernel height DilH·(KH−1)+1 = %d (KH = %d, DilH = %d); increase PadH or H, or reduce KH or DilH."
                    op
                    g.H
                    g.PadH
                    spanH
                    g.KH
                    g.DilH
            )

        let spanW = g.DilW * (g.KW - 1) + 1

        if g.W + 2 * g.PadW < spanW then
            Errors.fail (
                sprintf
                    "%s: output width is not positive: W + 2·PadW = %d + 2·%d is smaller than the dilated kernel width DilW·(KW−1)+1 = %d (KW = %d, DilW = %d); increase PadW or W, or reduce KW or DilW."
                    op
                    g.W
                    g.PadW
                    spanW
                    g.KW
                    g.DilW
            )

    /// x, w and y must hold at least the geometry's element counts past their offsets.
    let private checkBuffers (g: Conv2dGeometry) (x: float32[]) xOff (w: float32[]) wOff (y: float32[]) yOff =
        checkLength "x" x xOff g.XLength
        checkLength "w" w wOff g.WLength
        checkLength "y" y yOff g.YLength

    /// True when im2col is the identity (1×1 kernel, stride 1, no padding).
    let private isPointwise (g: Conv2dGeometry) =
        g.KH = 1
        && g.KW = 1
        && g.StrideH = 1
        && g.StrideW = 1
        && g.PadH = 0
        && g.PadW = 0

    /// Parallel chunks of images; GEMMs run single-threaded inside when there is more than one chunk.
    let private chunkCount (g: Conv2dGeometry) = max 1 (min Threads.Count g.N)

    /// Floats of im2col buffer per thread: output rows are processed in blocks so the buffer stays cache-sized.
    let private colBudget = 1 <<< 17

    /// Output rows per im2col block.
    let private rowBlock (g: Conv2dGeometry) =
        max 1 (min g.Ho (colBudget / max 1 (g.Cg * g.KH * g.KW * g.Wo)))

    /// Valid output columns [lo, hi) for kernel column kw: those ow with 0 ≤ ow·StrideW + kw·DilW − PadW < W.
    let inline private validCols (g: Conv2dGeometry) (wo: int) (kw: int) =
        let off = kw * g.DilW - g.PadW

        let lo =
            if off >= 0 then
                0
            else
                min wo ((-off + g.StrideW - 1) / g.StrideW)

        let hi =
            if g.W - 1 - off < 0 then
                0
            else
                min wo ((g.W - 1 - off) / g.StrideW + 1)

        struct (lo, max lo hi, off)

    /// For output rows [oh0, oh1): col[(c·KH + kh)·KW + kw, (oh − oh0)·Wo + ow] =
    /// x[c, oh·StrideH + kh·DilH − PadH, ow·StrideW + kw·DilW − PadW] (0 outside the image) for the Cg channels
    /// starting at xBase; col is [Cg·KH·KW, (oh1 − oh0)·Wo].
    let private im2col (g: Conv2dGeometry) (x: float32[]) (xBase: int) (oh0: int) (oh1: int) (col: float32[]) =
        let wo = g.Wo
        let rows = oh1 - oh0
        let hw = g.H * g.W
        let sw = g.StrideW

        for c in 0 .. g.Cg - 1 do
            let xc = xBase + c * hw

            for kh in 0 .. g.KH - 1 do
                for kw in 0 .. g.KW - 1 do
                    let row = ((c * g.KH + kh) * g.KW + kw) * rows * wo
                    let struct (lo, hi, off) = validCols g wo kw

                    for oh in oh0 .. oh1 - 1 do
                        let ih = oh * g.StrideH + kh * g.DilH - g.PadH
                        let dst = row + (oh - oh0) * wo

                        if ih < 0 || ih >= g.H || hi = lo then
                            Span<float32>(col, dst, wo).Clear()
                        else
                            if lo > 0 then
                                Span<float32>(col, dst, lo).Clear()

                            let src = xc + ih * g.W + off

                            if sw = 1 then
                                ReadOnlySpan<float32>(x, src + lo, hi - lo)
                                    .CopyTo(Span<float32>(col, dst + lo, hi - lo))
                            else
                                for ow in lo .. hi - 1 do
                                    col[dst + ow] <- x[src + ow * sw]

                            if hi < wo then
                                Span<float32>(col, dst + hi, wo - hi).Clear()

    /// The adjoint of im2col over output rows [oh0, oh1): dx[c, ih, iw] += Σ of the col entries im2col reads from
    /// (c, ih, iw).
    let private col2im (g: Conv2dGeometry) (col: float32[]) (oh0: int) (oh1: int) (dx: float32[]) (xBase: int) =
        let wo = g.Wo
        let rows = oh1 - oh0
        let hw = g.H * g.W
        let sw = g.StrideW

        for c in 0 .. g.Cg - 1 do
            let xc = xBase + c * hw

            for kh in 0 .. g.KH - 1 do
                for kw in 0 .. g.KW - 1 do
                    let row = ((c * g.KH + kh) * g.KW + kw) * rows * wo
                    let struct (lo, hi, off) = validCols g wo kw

                    if hi > lo then
                        for oh in oh0 .. oh1 - 1 do
                            let ih = oh * g.StrideH + kh * g.DilH - g.PadH

                            if ih >= 0 && ih < g.H then
                                let src = row + (oh - oh0) * wo
                                let dst = xc + ih * g.W + off

                                if sw = 1 then
                                    let d = Span<float32>(dx, dst + lo, hi - lo)
                                    TensorPrimitives.Add(ReadOnlySpan<float32>(col, src + lo, hi - lo), d, d)
                                else
                                    for ow in lo .. hi - 1 do
                                        dx[dst + ow * sw] <- dx[dst + ow * sw] + col[src + ow]

    /// Forward convolution: y[n, o, oh, ow] = bias[o] + Σ_{c ∈ group(o), kh, kw}
    /// w[o, c − g·Cg, kh, kw] · x[n, c, oh·StrideH + kh·DilH − PadH, ow·StrideW + kw·DilW − PadW]
    /// (x = 0 outside the image). Shapes: x [N, C, H, W], w [O, C/Groups, KH, KW], bias [O] (from biasOff),
    /// y [N, O, Ho, Wo], overwritten.
    let forward
        (g: Conv2dGeometry)
        (x: float32[])
        (xOff: int)
        (w: float32[])
        (wOff: int)
        (bias: float32[] option)
        (biasOff: int)
        (y: float32[])
        (yOff: int)
        =
        validate g
        checkBuffers g x xOff w wOff y yOff
        bias |> Option.iter (fun b -> checkLength "bias" b biasOff g.O)
        let howo = g.Ho * g.Wo
        let ckk = g.Cg * g.KH * g.KW
        let pointwise = isPointwise g
        let rb = if pointwise then g.Ho else rowBlock g

        ConvPar.chunks g.N (chunkCount g) (fun _ s e ->
            let col =
                if pointwise then
                    Array.Empty<float32>()
                else
                    Scratch.rent (ckk * rb * g.Wo)

            try
                for n in s .. e - 1 do
                    for grp in 0 .. g.Groups - 1 do
                        let xBase = xOff + (n * g.C + grp * g.Cg) * g.H * g.W
                        let yBase = yOff + (n * g.O + grp * g.Og) * howo
                        let wBase = wOff + grp * g.Og * ckk

                        if pointwise then
                            Gemm.Sgemm(
                                false,
                                false,
                                g.Og,
                                howo,
                                ckk,
                                1.0f,
                                w,
                                wBase,
                                ckk,
                                x,
                                xBase,
                                howo,
                                0.0f,
                                y,
                                yBase,
                                howo
                            )
                        else
                            for oh0 in 0..rb .. g.Ho - 1 do
                                let oh1 = min g.Ho (oh0 + rb)
                                let cols = (oh1 - oh0) * g.Wo
                                im2col g x xBase oh0 oh1 col

                                Gemm.Sgemm(
                                    false,
                                    false,
                                    g.Og,
                                    cols,
                                    ckk,
                                    1.0f,
                                    w,
                                    wBase,
                                    ckk,
                                    col,
                                    0,
                                    cols,
                                    0.0f,
                                    y,
                                    yBase + oh0 * g.Wo,
                                    howo
                                )

                    match bias with
                    | Some bv ->
                        for o in 0 .. g.O - 1 do
                            let r = Span<float32>(y, yOff + (n * g.O + o) * howo, howo)
                            TensorPrimitives.Add(r, bv[biasOff + o], r)
                    | None -> ()
            finally
                if not pointwise then
                    Scratch.give col)

    /// Backward with respect to the input (the transposed convolution):
    /// dx[n, c, ih, iw] (+)= Σ_{o ∈ group(c), kh, kw, oh, ow : oh·StrideH + kh·DilH − PadH = ih, ow·StrideW + kw·DilW − PadW = iw}
    /// w[o, c − g·Cg, kh, kw] · dy[n, o, oh, ow]. Shapes: dy [N, O, Ho, Wo], w [O, C/Groups, KH, KW], dx [N, C, H, W],
    /// overwritten unless <c>accumulate</c>.
    let backwardData
        (g: Conv2dGeometry)
        (dy: float32[])
        (dyOff: int)
        (w: float32[])
        (wOff: int)
        (dx: float32[])
        (dxOff: int)
        (accumulate: bool)
        =
        validate g
        checkBuffers g dx dxOff w wOff dy dyOff
        let howo = g.Ho * g.Wo
        let hw = g.H * g.W
        let ckk = g.Cg * g.KH * g.KW
        let pointwise = isPointwise g
        let rb = if pointwise then g.Ho else rowBlock g

        ConvPar.chunks g.N (chunkCount g) (fun _ s e ->
            let col =
                if pointwise then
                    Array.Empty<float32>()
                else
                    Scratch.rent (ckk * rb * g.Wo)

            try
                for n in s .. e - 1 do
                    if not accumulate && not pointwise then
                        Span<float32>(dx, dxOff + n * g.C * hw, g.C * hw).Clear()

                    for grp in 0 .. g.Groups - 1 do
                        let xBase = dxOff + (n * g.C + grp * g.Cg) * hw
                        let yBase = dyOff + (n * g.O + grp * g.Og) * howo
                        let wBase = wOff + grp * g.Og * ckk

                        if pointwise then
                            let beta = if accumulate then 1.0f else 0.0f

                            Gemm.Sgemm(
                                true,
                                false,
                                ckk,
                                howo,
                                g.Og,
                                1.0f,
                                w,
                                wBase,
                                ckk,
                                dy,
                                yBase,
                                howo,
                                beta,
                                dx,
                                xBase,
                                howo
                            )
                        else
                            for oh0 in 0..rb .. g.Ho - 1 do
                                let oh1 = min g.Ho (oh0 + rb)
                                let cols = (oh1 - oh0) * g.Wo

                                Gemm.Sgemm(
                                    true,
                                    false,
                                    ckk,
                                    cols,
                                    g.Og,
                                    1.0f,
                                    w,
                                    wBase,
                                    ckk,
                                    dy,
                                    yBase + oh0 * g.Wo,
                                    howo,
                                    0.0f,
                                    col,
                                    0,
                                    cols
                                )

                                col2im g col oh0 oh1 dx xBase
            finally
                if not pointwise then
                    Scratch.give col)

    /// Backward with respect to the weight: dw[o, c', kh, kw] (+)= Σ_{n, oh, ow}
    /// dy[n, o, oh, ow] · x[n, g·Cg + c', oh·StrideH + kh·DilH − PadH, ow·StrideW + kw·DilW − PadW] with g = o / (O/Groups).
    /// Shapes: x [N, C, H, W], dy [N, O, Ho, Wo], dw [O, C/Groups, KH, KW], overwritten unless <c>accumulate</c>.
    let backwardWeight
        (g: Conv2dGeometry)
        (x: float32[])
        (xOff: int)
        (dy: float32[])
        (dyOff: int)
        (dw: float32[])
        (dwOff: int)
        (accumulate: bool)
        =
        validate g
        checkBuffers g x xOff dw dwOff dy dyOff
        let howo = g.Ho * g.Wo
        let ckk = g.Cg * g.KH * g.KW
        let wlen = g.WLength
        let pointwise = isPointwise g
        let rb = if pointwise then g.Ho else rowBlock g
        let chunks = chunkCount g
        let partials = Array.create chunks (Array.Empty<float32>())

        ConvPar.chunks g.N chunks (fun chunk s e ->
            let col =
                if pointwise then
                    Array.Empty<float32>()
                else
                    Scratch.rent (ckk * rb * g.Wo)

            let target, tOff =
                if chunk = 0 then
                    dw, dwOff
                else
                    let p = Scratch.rent wlen
                    partials[chunk] <- p
                    p, 0

            try
                for n in s .. e - 1 do
                    for grp in 0 .. g.Groups - 1 do
                        let xBase = xOff + (n * g.C + grp * g.Cg) * g.H * g.W
                        let yBase = dyOff + (n * g.O + grp * g.Og) * howo
                        let tBase = tOff + grp * g.Og * ckk

                        if pointwise then
                            let beta = if n > s || (chunk = 0 && accumulate) then 1.0f else 0.0f

                            Gemm.Sgemm(
                                false,
                                true,
                                g.Og,
                                ckk,
                                howo,
                                1.0f,
                                dy,
                                yBase,
                                howo,
                                x,
                                xBase,
                                howo,
                                beta,
                                target,
                                tBase,
                                ckk
                            )
                        else
                            for oh0 in 0..rb .. g.Ho - 1 do
                                let oh1 = min g.Ho (oh0 + rb)
                                let cols = (oh1 - oh0) * g.Wo

                                let beta =
                                    if n > s || oh0 > 0 || (chunk = 0 && accumulate) then
                                        1.0f
                                    else
                                        0.0f

                                im2col g x xBase oh0 oh1 col

                                Gemm.Sgemm(
                                    false,
                                    true,
                                    g.Og,
                                    ckk,
                                    cols,
                                    1.0f,
                                    dy,
                                    yBase + oh0 * g.Wo,
                                    howo,
                                    col,
                                    0,
                                    cols,
                                    beta,
                                    target,
                                    tBase,
                                    ckk
                                )
            finally
                if not pointwise then
                    Scratch.give col)

        let d = Span<float32>(dw, dwOff, wlen)

        for p in partials do
            if p.Length > 0 then
                TensorPrimitives.Add(d, ReadOnlySpan<float32>(p, 0, wlen), d)
                Scratch.give p

    /// Bias gradient: db[o] (+)= Σ_{n, oh, ow} dy[n, o, oh, ow]. Shapes: dy [N, O, Ho, Wo], db [O],
    /// overwritten unless <c>accumulate</c>.
    let biasGrad (g: Conv2dGeometry) (dy: float32[]) (dyOff: int) (db: float32[]) (dbOff: int) (accumulate: bool) =
        validate g
        checkLength "dy" dy dyOff g.YLength
        checkLength "db" db dbOff g.O
        let howo = g.Ho * g.Wo

        for o in 0 .. g.O - 1 do
            let mutable acc = 0.0

            for n in 0 .. g.N - 1 do
                acc <-
                    acc
                    + float (TensorPrimitives.Sum(ReadOnlySpan<float32>(dy, dyOff + (n * g.O + o) * howo, howo)))

            db[dbOff + o] <- (if accumulate then db[dbOff + o] else 0.0f) + float32 acc
