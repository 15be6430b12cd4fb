namespace SnnSpec.Kernels

open System
open System.Collections.Generic
open System.Numerics.Tensors
open System.Runtime.Intrinsics
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
    /// True on a worker thread of an image-parallel region: GEMMs there run single-threaded.
    type private Flag() =
        [<ThreadStatic; DefaultValue>]
        static val mutable private inside: bool

        static member Inside
            with get () = Flag.inside
            and set v = Flag.inside <- v

    let isInside () = Flag.Inside

    /// Runs body(chunk, start, stop) over <c>chunks</c> contiguous chunks of [0, n), in parallel when
    /// there is more than one; GEMMs inside a parallel chunk do not spawn nested parallel loops.
    let chunks (n: int) (chunks: int) (body: int -> int -> int -> unit) =
        let per = (n + chunks - 1) / chunks

        let run c =
            let s = c * per
            let e = min n (s + per)

            if s < e then
                let saved = Flag.Inside
                Flag.Inside <- true

                try
                    body c s e
                finally
                    Flag.Inside <- saved

        if chunks <= 1 then
            body 0 0 n
        else
            Parallel.For(0, chunks, ParallelOptions(MaxDegreeOfParallelism = chunks), (fun c -> run c))
            |> ignore

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

/// Raw conv2d kernels. Arrays are row-major with element offsets; outputs are caller-provided and fully written
/// (or added to when <c>accumulate</c>). Cg = C/Groups = 1 (depthwise) uses direct shifted-row kernels; other
/// geometries use im2col + GEMM, split over images on the kernel threads with each GEMM single-threaded
/// (Threads.Count reads 1 inside such a region and is restored after), or for N = 1 one image with threaded GEMMs.
module Conv =
    let private op = "conv2d"

    let private positive = Errors.positiveInt op

    let private checkLength (name: string) (arr: float32[]) (off: int) (len: int) =
        Errors.checkBuffer op name arr.Length off len

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

    /// Floats of im2col buffer per thread.
    let private colBudget = 1 <<< 19

    /// How the GEMM path tiles the work: <c>Rows</c> output rows per im2col block when one image exceeds the
    /// budget, else whole images; <c>Images</c> images side by side in one GEMM when Ho·Wo is small, so the
    /// product stays wide.
    [<Struct>]
    type private Plan = { Rows: int; Images: int }

    let private plan (g: Conv2dGeometry) =
        let ckk = g.Cg * g.KH * g.KW
        let howo = g.Ho * g.Wo
        let rows = max 1 (min g.Ho (colBudget / max 1 (ckk * g.Wo)))

        let images =
            if rows < g.Ho || howo >= 128 then
                1
            else
                max 1 (min g.N (min (colBudget / max 1 (ckk * howo)) ((256 + howo - 1) / howo)))

        { Rows = rows; Images = images }

    /// C ← op(A)·op(B) + β·C (Gemm.Sgemm with α = 1).
    let inline private gemm tA tB m n k (a: float32[]) aOff lda (b: float32[]) bOff ldb beta (c: float32[]) cOff ldc =
        if ConvPar.isInside () then
            GemmCore.sgemm 1 tA tB m n k 1.0f a aOff lda b bOff ldb beta c cOff ldc
        else
            Gemm.Sgemm(tA, tB, m, n, k, 1.0f, a, aOff, lda, b, bOff, ldb, beta, c, cOff, ldc)

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

    /// Stride 1 with Wo = W: every kernel tap shifts the image by a constant flat offset, so im2col rows are
    /// contiguous copies with the wrapped-around edge columns zeroed.
    let private isSame (g: Conv2dGeometry) =
        g.StrideH = 1 && g.StrideW = 1 && g.Wo = g.W

    /// For stride 1, the output rows [r0, r1) ⊆ [oh0, oh1) whose input row oh + dh (dh = kh·DilH − PadH) is inside
    /// (empty at oh1 when a tap's rows all fall in the padding, so nothing outside [oh0, oh1) is cleared).
    let inline private sameRows (g: Conv2dGeometry) (oh0: int) (oh1: int) (kh: int) =
        let dh = kh * g.DilH - g.PadH
        let r0 = min oh1 (max oh0 (-dh))
        let r1 = max r0 (min oh1 (g.H - dh))
        struct (r0, r1, dh)

    /// im2col for isSame geometries.
    let private im2colSame
        (g: Conv2dGeometry)
        (x: float32[])
        (xBase: int)
        (oh0: int)
        (oh1: int)
        (col: float32[])
        (colOff: int)
        (ld: int)
        =
        let wo = g.Wo
        let rows = oh1 - oh0
        let hw = g.H * g.W

        for c in 0 .. g.Cg - 1 do
            let xc = xBase + c * hw

            for kh in 0 .. g.KH - 1 do
                let struct (r0, r1, dh) = sameRows g oh0 oh1 kh

                for kw in 0 .. g.KW - 1 do
                    let row = colOff + ((c * g.KH + kh) * g.KW + kw) * ld
                    let struct (lo, hi, off) = validCols g wo kw

                    if hi = lo then
                        Span<float32>(col, row, rows * wo).Clear()
                    else
                        if r0 > oh0 then
                            Span<float32>(col, row, (r0 - oh0) * wo).Clear()

                        if r1 < oh1 then
                            Span<float32>(col, row + (r1 - oh0) * wo, (oh1 - r1) * wo).Clear()

                        if r1 > r0 then
                            let dst = row + (r0 - oh0) * wo
                            let src = xc + (r0 + dh) * g.W + off
                            let len = (r1 - r0) * wo - lo - (wo - hi)

                            if len > 0 then
                                ReadOnlySpan<float32>(x, src + lo, len).CopyTo(Span<float32>(col, dst + lo, len))

                            if lo > 0 || hi < wo then
                                for r in 0 .. r1 - r0 - 1 do
                                    let d = dst + r * wo

                                    for j in 0 .. lo - 1 do
                                        col[d + j] <- 0.0f

                                    for j in hi .. wo - 1 do
                                        col[d + j] <- 0.0f

    /// im2col for any geometry.
    let private im2colGeneral
        (g: Conv2dGeometry)
        (x: float32[])
        (xBase: int)
        (oh0: int)
        (oh1: int)
        (col: float32[])
        (colOff: int)
        (ld: int)
        =
        let wo = g.Wo
        let hw = g.H * g.W
        let sw = g.StrideW

        for c in 0 .. g.Cg - 1 do
            let xc = xBase + c * hw

            for kh in 0 .. g.KH - 1 do
                for kw in 0 .. g.KW - 1 do
                    let row = colOff + ((c * g.KH + kh) * g.KW + kw) * ld
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

    /// For output rows [oh0, oh1): col[colOff + ((c·KH + kh)·KW + kw)·ld + (oh − oh0)·Wo + ow] =
    /// x[c, oh·StrideH + kh·DilH − PadH, ow·StrideW + kw·DilW − PadW] (0 outside the image) for the Cg channels
    /// starting at xBase: a [Cg·KH·KW, (oh1 − oh0)·Wo] block with row stride ld.
    let private im2col
        (g: Conv2dGeometry)
        (x: float32[])
        (xBase: int)
        (oh0: int)
        (oh1: int)
        (col: float32[])
        (colOff: int)
        (ld: int)
        =
        if isSame g then
            im2colSame g x xBase oh0 oh1 col colOff ld
        else
            im2colGeneral g x xBase oh0 oh1 col colOff ld

    /// col2im for isSame geometries.
    let private col2imSame
        (g: Conv2dGeometry)
        (col: float32[])
        (colOff: int)
        (ld: int)
        (oh0: int)
        (oh1: int)
        (dx: float32[])
        (xBase: int)
        =
        let wo = g.Wo
        let hw = g.H * g.W

        for c in 0 .. g.Cg - 1 do
            let xc = xBase + c * hw

            for kh in 0 .. g.KH - 1 do
                let struct (r0, r1, dh) = sameRows g oh0 oh1 kh

                for kw in 0 .. g.KW - 1 do
                    let row = colOff + ((c * g.KH + kh) * g.KW + kw) * ld
                    let struct (lo, hi, off) = validCols g wo kw

                    if r1 > r0 && hi > lo then
                        let src = row + (r0 - oh0) * wo
                        let dst = xc + (r0 + dh) * g.W + off

                        if lo > 0 || hi < wo then
                            for r in 0 .. r1 - r0 - 1 do
                                let d = src + r * wo

                                for j in 0 .. lo - 1 do
                                    col[d + j] <- 0.0f

                                for j in hi .. wo - 1 do
                                    col[d + j] <- 0.0f

                        let len = (r1 - r0) * wo - lo - (wo - hi)

                        if len > 0 then
                            let d = Span<float32>(dx, dst + lo, len)
                            TensorPrimitives.Add(ReadOnlySpan<float32>(col, src + lo, len), d, d)

    /// col2im for any geometry.
    let private col2imGeneral
        (g: Conv2dGeometry)
        (col: float32[])
        (colOff: int)
        (ld: int)
        (oh0: int)
        (oh1: int)
        (dx: float32[])
        (xBase: int)
        =
        let wo = g.Wo
        let hw = g.H * g.W
        let sw = g.StrideW

        for c in 0 .. g.Cg - 1 do
            let xc = xBase + c * hw

            for kh in 0 .. g.KH - 1 do
                for kw in 0 .. g.KW - 1 do
                    let row = colOff + ((c * g.KH + kh) * g.KW + kw) * ld
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

    /// The adjoint of im2col over output rows [oh0, oh1): dx[c, ih, iw] += Σ of the col entries im2col reads from
    /// (c, ih, iw).
    let private col2im
        (g: Conv2dGeometry)
        (col: float32[])
        (colOff: int)
        (ld: int)
        (oh0: int)
        (oh1: int)
        (dx: float32[])
        (xBase: int)
        =
        if isSame g then
            col2imSame g col colOff ld oh0 oh1 dx xBase
        else
            col2imGeneral g col colOff ld oh0 oh1 dx xBase

    /// Direct kernels for Cg = 1 (depthwise and channel-multiplier convolutions), where im2col + GEMM degenerates
    /// to one-row products: each output plane is a sum of scaled, shifted input rows.
    module private Depthwise =
        /// y[i·sy] (+)= a·x[i·sx] for i in [0, len), unit strides vectorised.
        let inline private axpy
            (a: float32)
            (x: float32[])
            (xo: int)
            (sx: int)
            (y: float32[])
            (yo: int)
            (sy: int)
            (len: int)
            =
            if sx = 1 && sy = 1 then
                let d = Span<float32>(y, yo, len)
                TensorPrimitives.MultiplyAdd(ReadOnlySpan<float32>(x, xo, len), a, d, d)
            else
                for i in 0 .. len - 1 do
                    y[yo + i * sy] <- y[yo + i * sy] + a * x[xo + i * sx]

        /// dst[r·q + c] = src[srcBase + (r − top)·cols + c − left] where that lies inside the rows × cols source plane,
        /// else 0, for r < dstRows, c < q (top/left may be negative: cropping).
        let pad
            (src: float32[])
            (srcBase: int)
            (rows: int)
            (cols: int)
            (dst: float32[])
            (dstRows: int)
            (q: int)
            (top: int)
            (left: int)
            =
            Span<float32>(dst, 0, dstRows * q).Clear()
            let c0 = max 0 (-left)
            let c1 = min cols (q - left)

            if c1 > c0 then
                for r in max 0 (-top) .. min rows (dstRows - top) - 1 do
                    ReadOnlySpan<float32>(src, srcBase + r * cols + c0, c1 - c0)
                        .CopyTo(Span<float32>(dst, (r + top) * q + left + c0, c1 - c0))

        /// out[p] = Σ_t taps[tapBase + t·tapStep] · inp[p + shift_t] for p in [0, len), shift_t = kh·DilH·q + kw·DilW
        /// (t = kh·KW + kw): a stride-1 correlation over a plane of row width q.
        let correlate
            (g: Conv2dGeometry)
            (q: int)
            (inp: float32[])
            (taps: float32[])
            (tapBase: int)
            (tapStep: int)
            (out: float32[])
            (len: int)
            =
            let mutable p = 0

            while p + 16 <= len do
                let mutable acc = Vector512<float32>.Zero

                for kh in 0 .. g.KH - 1 do
                    for kw in 0 .. g.KW - 1 do
                        let t = kh * g.KW + kw
                        let v = Vector512.LoadUnsafe(&inp[p + kh * g.DilH * q + kw * g.DilW])
                        acc <- Vector512.FusedMultiplyAdd(Vector512.Create taps[tapBase + t * tapStep], v, acc)

                acc.StoreUnsafe(&out[p])
                p <- p + 16

            while p < len do
                let mutable acc = 0.0f

                for kh in 0 .. g.KH - 1 do
                    for kw in 0 .. g.KW - 1 do
                        acc <-
                            acc
                            + taps[tapBase + (kh * g.KW + kw) * tapStep]
                              * inp[p + kh * g.DilH * q + kw * g.DilW]

                out[p] <- acc
                p <- p + 1

        /// Output plane (n, o) from input plane xBase: y = Σ_{kh, kw} w[o, 0, kh, kw] · shifted x.
        let forwardPlane
            (g: Conv2dGeometry)
            (x: float32[])
            (xBase: int)
            (w: float32[])
            (wBase: int)
            (y: float32[])
            (yBase: int)
            =
            let wo = g.Wo
            Span<float32>(y, yBase, g.Ho * wo).Clear()

            for oh in 0 .. g.Ho - 1 do
                for kh in 0 .. g.KH - 1 do
                    let ih = oh * g.StrideH + kh * g.DilH - g.PadH

                    if ih >= 0 && ih < g.H then
                        for kw in 0 .. g.KW - 1 do
                            let struct (lo, hi, off) = validCols g wo kw

                            if hi > lo then
                                let src = xBase + ih * g.W + off + lo * g.StrideW
                                axpy w[wBase + kh * g.KW + kw] x src g.StrideW y (yBase + oh * wo + lo) 1 (hi - lo)

        /// dx plane xBase += Σ_{kh, kw} w[o, 0, kh, kw] · dy plane (n, o) scattered back through the same shifts.
        let dataPlane
            (g: Conv2dGeometry)
            (dy: float32[])
            (yBase: int)
            (w: float32[])
            (wBase: int)
            (dx: float32[])
            (xBase: int)
            =
            let wo = g.Wo

            for oh in 0 .. g.Ho - 1 do
                for kh in 0 .. g.KH - 1 do
                    let ih = oh * g.StrideH + kh * g.DilH - g.PadH

                    if ih >= 0 && ih < g.H then
                        for kw in 0 .. g.KW - 1 do
                            let struct (lo, hi, off) = validCols g wo kw

                            if hi > lo then
                                let dst = xBase + ih * g.W + off + lo * g.StrideW
                                axpy w[wBase + kh * g.KW + kw] dy (yBase + oh * wo + lo) 1 dx dst g.StrideW (hi - lo)

        /// dw[o, 0, kh, kw] += Σ_{oh, ow} dy[n, o, oh, ow] · x[n, c, ih, iw] for one image.
        let weightPlane
            (g: Conv2dGeometry)
            (x: float32[])
            (xBase: int)
            (dy: float32[])
            (yBase: int)
            (dw: float32[])
            (wBase: int)
            =
            let wo = g.Wo

            for kh in 0 .. g.KH - 1 do
                for kw in 0 .. g.KW - 1 do
                    let struct (lo, hi, off) = validCols g wo kw

                    if hi > lo then
                        let mutable acc = 0.0f

                        for oh in 0 .. g.Ho - 1 do
                            let ih = oh * g.StrideH + kh * g.DilH - g.PadH

                            if ih >= 0 && ih < g.H then
                                let src = xBase + ih * g.W + off + lo * g.StrideW
                                let dyo = yBase + oh * wo + lo

                                if g.StrideW = 1 then
                                    acc <-
                                        acc
                                        + TensorPrimitives.Dot(
                                            ReadOnlySpan<float32>(x, src, hi - lo),
                                            ReadOnlySpan<float32>(dy, dyo, hi - lo)
                                        )
                                else
                                    for i in 0 .. hi - lo - 1 do
                                        acc <- acc + x[src + i * g.StrideW] * dy[dyo + i]

                        dw[wBase + kh * g.KW + kw] <- dw[wBase + kh * g.KW + kw] + acc

    /// Runs body(col, n0, n1, oh0, oh1) over the work panels of images [s, e): blocks of output rows of one image,
    /// or Images whole images at a time; col is a per-call scratch buffer of ckk·(panel columns) floats.
    let private panels
        (g: Conv2dGeometry)
        (pl: Plan)
        (s: int)
        (e: int)
        (body: float32[] -> int -> int -> int -> int -> unit)
        =
        let ckk = g.Cg * g.KH * g.KW
        let col = Scratch.rent (ckk * max (pl.Rows * g.Wo) (pl.Images * g.Ho * g.Wo))

        try
            for n0 in s .. pl.Images .. e - 1 do
                let n1 = min e (n0 + pl.Images)

                if n1 - n0 > 1 then
                    body col n0 n1 0 g.Ho
                else
                    for oh0 in 0 .. pl.Rows .. g.Ho - 1 do
                        body col n0 n1 oh0 (min g.Ho (oh0 + pl.Rows))
        finally
            Scratch.give col

    /// y[n, grp·Og .. , rows oh0..oh1) for images [n0, n1) (see forward), through im2col and one GEMM per group.
    let private forwardPanel
        (g: Conv2dGeometry)
        (x: float32[])
        xOff
        (w: float32[])
        wOff
        (y: float32[])
        yOff
        (col: float32[])
        n0
        n1
        oh0
        oh1
        =
        let howo = g.Ho * g.Wo
        let ckk = g.Cg * g.KH * g.KW
        let imgs = n1 - n0
        let cols = (oh1 - oh0) * g.Wo
        let ld = imgs * cols

        for grp in 0 .. g.Groups - 1 do
            let wBase = wOff + grp * g.Og * ckk

            for i in 0 .. imgs - 1 do
                im2col g x (xOff + ((n0 + i) * g.C + grp * g.Cg) * g.H * g.W) oh0 oh1 col (i * cols) ld

            if imgs = 1 then
                gemm
                    false
                    false
                    g.Og
                    cols
                    ckk
                    w
                    wBase
                    ckk
                    col
                    0
                    ld
                    0.0f
                    y
                    (yOff + (n0 * g.O + grp * g.Og) * howo + oh0 * g.Wo)
                    howo
            else
                let out = Scratch.rent (g.Og * ld)

                try
                    gemm false false g.Og ld ckk w wBase ckk col 0 ld 0.0f out 0 ld

                    for i in 0 .. imgs - 1 do
                        for o in 0 .. g.Og - 1 do
                            ReadOnlySpan<float32>(out, o * ld + i * howo, howo)
                                .CopyTo(Span<float32>(y, yOff + ((n0 + i) * g.O + grp * g.Og + o) * howo, howo))
                finally
                    Scratch.give out

    /// dy of group grp, images [n0, n1), as one [Og, imgs·Ho·Wo] matrix: (array, offset, leading dimension), gathered
    /// into <c>buf</c> when imgs > 1.
    let private dyPanel (g: Conv2dGeometry) (dy: float32[]) dyOff grp n0 n1 oh0 (buf: float32[]) =
        let howo = g.Ho * g.Wo
        let imgs = n1 - n0

        if imgs = 1 then
            struct (dy, dyOff + (n0 * g.O + grp * g.Og) * howo + oh0 * g.Wo, howo)
        else
            for i in 0 .. imgs - 1 do
                for o in 0 .. g.Og - 1 do
                    ReadOnlySpan<float32>(dy, dyOff + ((n0 + i) * g.O + grp * g.Og + o) * howo, howo)
                        .CopyTo(Span<float32>(buf, o * imgs * howo + i * howo, howo))

            struct (buf, 0, imgs * howo)

    /// dx (+)= col2im(Wᵀ·dy) for images [n0, n1), output rows [oh0, oh1) (see backwardData); dx must be cleared first.
    let private dataPanel
        (g: Conv2dGeometry)
        (dy: float32[])
        dyOff
        (w: float32[])
        wOff
        (dx: float32[])
        dxOff
        (col: float32[])
        n0
        n1
        oh0
        oh1
        =
        let ckk = g.Cg * g.KH * g.KW
        let imgs = n1 - n0
        let cols = (oh1 - oh0) * g.Wo
        let ld = imgs * cols

        let buf =
            if imgs > 1 then
                Scratch.rent (g.Og * ld)
            else
                Array.Empty<float32>()

        try
            for grp in 0 .. g.Groups - 1 do
                let struct (b, bOff, ldb) = dyPanel g dy dyOff grp n0 n1 oh0 buf
                gemm true false ckk ld g.Og w (wOff + grp * g.Og * ckk) ckk b bOff ldb 0.0f col 0 ld

                for i in 0 .. imgs - 1 do
                    col2im g col (i * cols) ld oh0 oh1 dx (dxOff + ((n0 + i) * g.C + grp * g.Cg) * g.H * g.W)
        finally
            if imgs > 1 then
                Scratch.give buf

    /// dw (β = 0: ←, β = 1: +=) dy·im2col(x)ᵀ for images [n0, n1), output rows [oh0, oh1) (see backwardWeight).
    let private weightPanel
        (g: Conv2dGeometry)
        (x: float32[])
        xOff
        (dy: float32[])
        dyOff
        (dw: float32[])
        dwOff
        beta
        (col: float32[])
        n0
        n1
        oh0
        oh1
        =
        let ckk = g.Cg * g.KH * g.KW
        let imgs = n1 - n0
        let cols = (oh1 - oh0) * g.Wo
        let ld = imgs * cols

        let buf =
            if imgs > 1 then
                Scratch.rent (g.Og * ld)
            else
                Array.Empty<float32>()

        try
            for grp in 0 .. g.Groups - 1 do
                for i in 0 .. imgs - 1 do
                    im2col g x (xOff + ((n0 + i) * g.C + grp * g.Cg) * g.H * g.W) oh0 oh1 col (i * cols) ld

                let struct (a, aOff, lda) = dyPanel g dy dyOff grp n0 n1 oh0 buf
                gemm false true g.Og ckk ld a aOff lda col 0 ld beta dw (dwOff + grp * g.Og * ckk) ckk
        finally
            if imgs > 1 then
                Scratch.give buf

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

        if g.Cg = 1 then
            let kk = g.KH * g.KW
            let unit = g.StrideH = 1 && g.StrideW = 1
            let rp = g.H + 2 * g.PadH
            let q = g.W + 2 * g.PadW
            let len = g.Ho * q - g.DilW * (g.KW - 1)

            Par.forChunks (g.N * g.O) (max 1 (16384 / max 1 (howo * kk))) (fun s e ->
                let xp =
                    if unit then
                        Scratch.rent (rp * q)
                    else
                        Array.Empty<float32>()

                let out =
                    if unit then
                        Scratch.rent (g.Ho * q)
                    else
                        Array.Empty<float32>()

                for plane in s .. e - 1 do
                    let n = plane / g.O
                    let o = plane % g.O
                    let yBase = yOff + plane * howo
                    let xBase = xOff + (n * g.C + o / g.Og) * g.H * g.W

                    if unit then
                        if plane = s || o % g.Og = 0 then
                            Depthwise.pad x xBase g.H g.W xp rp q g.PadH g.PadW

                        Depthwise.correlate g q xp w (wOff + o * kk) 1 out len

                        for oh in 0 .. g.Ho - 1 do
                            ReadOnlySpan<float32>(out, oh * q, g.Wo).CopyTo(Span<float32>(y, yBase + oh * g.Wo, g.Wo))
                    else
                        Depthwise.forwardPlane g x xBase w (wOff + o * kk) y yBase

                    match bias with
                    | Some bv ->
                        let r = Span<float32>(y, yBase, howo)
                        TensorPrimitives.Add(r, bv[biasOff + o], r)
                    | None -> ()

                if unit then
                    Scratch.give xp
                    Scratch.give out)
        else
            let pl = plan g

            ConvPar.chunks g.N (chunkCount g) (fun _ s e ->
                if isPointwise g && pl.Images = 1 then
                    for n in s .. e - 1 do
                        for grp in 0 .. g.Groups - 1 do
                            let wBase = wOff + grp * g.Og * ckk
                            let xBase = xOff + (n * g.C + grp * g.Cg) * g.H * g.W
                            let yBase = yOff + (n * g.O + grp * g.Og) * howo
                            gemm false false g.Og howo ckk w wBase ckk x xBase howo 0.0f y yBase howo
                else
                    panels g pl s e (forwardPanel g x xOff w wOff y yOff)

                match bias with
                | Some bv ->
                    for n in s .. e - 1 do
                        for o in 0 .. g.O - 1 do
                            let r = Span<float32>(y, yOff + (n * g.O + o) * howo, howo)
                            TensorPrimitives.Add(r, bv[biasOff + o], r)
                | None -> ())

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

        if g.Cg = 1 then
            let kk = g.KH * g.KW
            let unit = g.StrideH = 1 && g.StrideW = 1
            let eh = g.DilH * (g.KH - 1)
            let ew = g.DilW * (g.KW - 1)
            let rq = g.H + eh
            let q = g.W + ew
            let len = g.H * q - ew

            Par.forChunks (g.N * g.C) (max 1 (16384 / max 1 (g.Og * howo * kk))) (fun s e ->
                let dyp =
                    if unit then
                        Scratch.rent (rq * q)
                    else
                        Array.Empty<float32>()

                let out =
                    if unit then
                        Scratch.rent (g.H * q)
                    else
                        Array.Empty<float32>()

                for plane in s .. e - 1 do
                    let n = plane / g.C
                    let c = plane % g.C
                    let xBase = dxOff + plane * hw

                    if not accumulate then
                        Span<float32>(dx, xBase, hw).Clear()

                    for o in c * g.Og .. (c + 1) * g.Og - 1 do
                        let yBase = dyOff + (n * g.O + o) * howo

                        if unit then
                            Depthwise.pad dy yBase g.Ho g.Wo dyp rq q (eh - g.PadH) (ew - g.PadW)
                            Depthwise.correlate g q dyp w (wOff + o * kk + kk - 1) -1 out len

                            for ih in 0 .. g.H - 1 do
                                let d = Span<float32>(dx, xBase + ih * g.W, g.W)
                                TensorPrimitives.Add(ReadOnlySpan<float32>(out, ih * q, g.W), d, d)
                        else
                            Depthwise.dataPlane g dy yBase w (wOff + o * kk) dx xBase

                if unit then
                    Scratch.give dyp
                    Scratch.give out)
        else
            let pl = plan g

            ConvPar.chunks g.N (chunkCount g) (fun _ s e ->
                if isPointwise g && pl.Images = 1 then
                    let beta = if accumulate then 1.0f else 0.0f

                    for n in s .. e - 1 do
                        for grp in 0 .. g.Groups - 1 do
                            let wBase = wOff + grp * g.Og * ckk
                            let xBase = dxOff + (n * g.C + grp * g.Cg) * hw
                            let yBase = dyOff + (n * g.O + grp * g.Og) * howo
                            gemm true false ckk howo g.Og w wBase ckk dy yBase howo beta dx xBase howo
                else
                    if not accumulate then
                        Span<float32>(dx, dxOff + s * g.C * hw, (e - s) * g.C * hw).Clear()

                    panels g pl s e (dataPanel g dy dyOff w wOff dx dxOff))

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

        if g.Cg = 1 then
            let kk = g.KH * g.KW
            let unit = g.StrideH = 1 && g.StrideW = 1
            let rp = g.H + 2 * g.PadH
            let q = g.W + 2 * g.PadW
            let len = g.Ho * q - g.DilW * (g.KW - 1)

            Par.forChunks g.O (max 1 (16384 / max 1 (g.N * howo * kk))) (fun s e ->
                let xp =
                    if unit then
                        Scratch.rent (rp * q)
                    else
                        Array.Empty<float32>()

                let dyq =
                    if unit then
                        Scratch.rent (g.Ho * q)
                    else
                        Array.Empty<float32>()

                for o in s .. e - 1 do
                    let wBase = dwOff + o * kk

                    if not accumulate then
                        Span<float32>(dw, wBase, kk).Clear()

                    let c = o / g.Og

                    for n in 0 .. g.N - 1 do
                        let xBase = xOff + (n * g.C + c) * g.H * g.W
                        let yBase = dyOff + (n * g.O + o) * howo

                        if unit then
                            Depthwise.pad x xBase g.H g.W xp rp q g.PadH g.PadW
                            Depthwise.pad dy yBase g.Ho g.Wo dyq g.Ho q 0 0
                            let dyr = ReadOnlySpan<float32>(dyq, 0, len)

                            for kh in 0 .. g.KH - 1 do
                                for kw in 0 .. g.KW - 1 do
                                    let shift = kh * g.DilH * q + kw * g.DilW
                                    let t = wBase + kh * g.KW + kw
                                    dw[t] <- dw[t] + TensorPrimitives.Dot(dyr, ReadOnlySpan<float32>(xp, shift, len))
                        else
                            Depthwise.weightPlane g x xBase dy yBase dw wBase

                if unit then
                    Scratch.give xp
                    Scratch.give dyq)
        else
            let pl = plan g
            let chunks = chunkCount g
            let partials = Array.create chunks (Array.Empty<float32>())

            ConvPar.chunks g.N chunks (fun chunk s e ->
                let target, tOff =
                    if chunk = 0 then
                        dw, dwOff
                    else
                        let p = Scratch.rent wlen
                        partials[chunk] <- p
                        p, 0

                let mutable beta = if chunk = 0 && accumulate then 1.0f else 0.0f

                if isPointwise g && pl.Images = 1 then
                    for n in s .. e - 1 do
                        for grp in 0 .. g.Groups - 1 do
                            let xBase = xOff + (n * g.C + grp * g.Cg) * g.H * g.W
                            let yBase = dyOff + (n * g.O + grp * g.Og) * howo

                            gemm
                                false
                                true
                                g.Og
                                ckk
                                howo
                                dy
                                yBase
                                howo
                                x
                                xBase
                                howo
                                beta
                                target
                                (tOff + grp * g.Og * ckk)
                                ckk

                        beta <- 1.0f
                else
                    panels g pl s e (fun col n0 n1 oh0 oh1 ->
                        weightPanel g x xOff dy dyOff target tOff beta col n0 n1 oh0 oh1
                        beta <- 1.0f))

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

        Par.forChunks g.O (max 1 (32768 / max 1 (g.N * howo))) (fun s e ->
            for o in s .. e - 1 do
                let mutable acc = 0.0

                for n in 0 .. g.N - 1 do
                    acc <-
                        acc
                        + float (TensorPrimitives.Sum(ReadOnlySpan<float32>(dy, dyOff + (n * g.O + o) * howo, howo)))

                db[dbOff + o] <- (if accumulate then db[dbOff + o] else 0.0f) + float32 acc)
