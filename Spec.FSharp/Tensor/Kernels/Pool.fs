namespace SnnSpec.Kernels

open System
open SnnSpec

/// Geometry of a 2-D pooling window over NCHW data: input [N, C, H, W], output [N, C, Ho, Wo] with
/// Ho = ⌊(H + 2·PadH − DilH·(KH − 1) − 1 + (CeilMode ? StrideH − 1 : 0)) / StrideH⌋ + 1, reduced by one in
/// ceil mode when the last window would start at or past H + PadH (PyTorch's rule; Wo likewise).
/// Output (oh, ow) pools input rows oh·StrideH − PadH + kh·DilH, kh ∈ [0, KH) (columns likewise).
type Pool2dGeometry =
    {
        N: int
        C: int
        H: int
        W: int
        KH: int
        KW: int
        StrideH: int
        StrideW: int
        PadH: int
        PadW: int
        DilH: int
        DilW: int
        CeilMode: bool
    }

    static member private OutSize(size, k, pad, stride, dil, ceil) =
        let num = size + 2 * pad - dil * (k - 1) - 1 + (if ceil then stride - 1 else 0)

        let o =
            (if num >= 0 then
                 num / stride
             else
                 -((-num + stride - 1) / stride))
            + 1

        if ceil && o > 0 && (o - 1) * stride >= size + pad then
            o - 1
        else
            o

    member g.Ho = Pool2dGeometry.OutSize(g.H, g.KH, g.PadH, g.StrideH, g.DilH, g.CeilMode)
    member g.Wo = Pool2dGeometry.OutSize(g.W, g.KW, g.PadW, g.StrideW, g.DilW, g.CeilMode)
    /// Elements of the input: N·C·H·W.
    member g.XLength = g.N * g.C * g.H * g.W
    /// Elements of the output: N·C·Ho·Wo.
    member g.YLength = g.N * g.C * g.Ho * g.Wo

    /// Square window k with stride (default k), padding 0, dilation 1, floor mode.
    static member Create(n, c, h, w, k, ?stride, ?padding, ?dilation, ?ceilMode) =
        let s = defaultArg stride k
        let p = defaultArg padding 0
        let d = defaultArg dilation 1

        {
            N = n
            C = c
            H = h
            W = w
            KH = k
            KW = k
            StrideH = s
            StrideW = s
            PadH = p
            PadW = p
            DilH = d
            DilW = d
            CeilMode = defaultArg ceilMode false
        }

/// Geometry of adaptive pooling: input [N, C, H, W] to output [N, C, Ho, Wo]; output row i averages input rows
/// [⌊i·H/Ho⌋, ⌈(i+1)·H/Ho⌉) (columns likewise), as PyTorch's adaptive_avg_pool2d.
type AdaptivePool2dGeometry =
    {
        N: int
        C: int
        H: int
        W: int
        Ho: int
        Wo: int
    }

    member g.XLength = g.N * g.C * g.H * g.W
    member g.YLength = g.N * g.C * g.Ho * g.Wo

/// Raw pooling kernels over NCHW float32 arrays with element offsets. Outputs are caller-provided; forward
/// passes overwrite them, backward passes overwrite dx unless <c>accumulate</c>. Parallel over the N·C planes.
module Pool =
    let private positive = Errors.positiveInt

    let private checkLength = Errors.checkBuffer

    /// Refuses a window geometry with a clear message (before any output size is computed from it).
    let validateWindow op (g: Pool2dGeometry) =
        positive op "N" g.N
        positive op "C" g.C
        positive op "H" g.H
        positive op "W" g.W
        positive op "KH" g.KH
        positive op "KW" g.KW
        positive op "StrideH" g.StrideH
        positive op "StrideW" g.StrideW
        positive op "DilH" g.DilH
        positive op "DilW" g.DilW

        if g.PadH < 0 || g.PadH > g.KH / 2 then
            Errors.invalidArg op "PadH" g.PadH (sprintf "0 ≤ PadH ≤ KH/2 = %d" (g.KH / 2))

        if g.PadW < 0 || g.PadW > g.KW / 2 then
            Errors.invalidArg op "PadW" g.PadW (sprintf "0 ≤ PadW ≤ KW/2 = %d" (g.KW / 2))

        if g.Ho < 1 then
            Errors.fail (
                sprintf
                    "%s: output height Ho = %d is not positive (H = %d, KH = %d, PadH = %d, DilH = %d, StrideH = %d); increase H or PadH, or reduce KH or DilH."
                    op
                    g.Ho
                    g.H
                    g.KH
                    g.PadH
                    g.DilH
                    g.StrideH
            )

        if g.Wo < 1 then
            Errors.fail (
                sprintf
                    "%s: output width Wo = %d is not positive (W = %d, KW = %d, PadW = %d, DilW = %d, StrideW = %d); increase W or PadW, or reduce KW or DilW."
                    op
                    g.Wo
                    g.W
                    g.KW
                    g.PadW
                    g.DilW
                    g.StrideW
            )

    let private planeGrain (work: int) = max 1 (32768 / max 1 work)

    /// 2×2 windows with stride 2, no padding or dilation, and every window inside the image.
    let internal isPair (g: Pool2dGeometry) =
        g.KH = 2
        && g.KW = 2
        && g.StrideH = 2
        && g.StrideW = 2
        && g.PadH = 0
        && g.PadW = 0
        && g.DilH = 1
        && g.DilW = 1
        && 2 * g.Ho <= g.H
        && 2 * g.Wo <= g.W

    /// Max pooling forward: y[n, c, oh, ow] = max over the window's in-image positions of x (padding never wins;
    /// NaN propagates). indices[n, c, oh, ow] = ih·W + iw of the maximum within its plane (first one on ties),
    /// −1 if the window holds no in-image position. Shapes: x [N, C, H, W]; y and indices [N, C, Ho, Wo].
    let maxForward
        (g: Pool2dGeometry)
        (x: float32[])
        (xOff: int)
        (y: float32[])
        (yOff: int)
        (indices: int[])
        (idxOff: int)
        =
        let op = "maxPool2d"
        validateWindow op g
        checkLength op "x" x.Length xOff g.XLength
        checkLength op "y" y.Length yOff g.YLength
        checkLength op "indices" indices.Length idxOff g.YLength
        let ho = g.Ho
        let wo = g.Wo
        let hw = g.H * g.W

        if isPair g then
            // 2×2 windows, stride 2, every window inside the image: the four candidates in window
            // order, the first maximum kept (strict >), a NaN taken as soon as it is met.
            let w = g.W

            Par.forChunks (g.N * g.C) (planeGrain (ho * wo * 4)) (fun s e ->
                for plane in s .. e - 1 do
                    let xb = xOff + plane * hw
                    let yb = yOff + plane * ho * wo
                    let ib = idxOff + plane * ho * wo

                    for oh in 0 .. ho - 1 do
                        let r0 = xb + 2 * oh * w
                        let r1 = r0 + w

                        for ow in 0 .. wo - 1 do
                            let c = 2 * ow
                            let mutable best = x[r0 + c]
                            let mutable at = 2 * oh * w + c

                            if not (Single.IsNaN best) then
                                let v1 = x[r0 + c + 1]

                                if v1 > best || Single.IsNaN v1 then
                                    best <- v1
                                    at <- 2 * oh * w + c + 1

                                if not (Single.IsNaN best) then
                                    let v2 = x[r1 + c]

                                    if v2 > best || Single.IsNaN v2 then
                                        best <- v2
                                        at <- (2 * oh + 1) * w + c

                                    if not (Single.IsNaN best) then
                                        let v3 = x[r1 + c + 1]

                                        if v3 > best || Single.IsNaN v3 then
                                            best <- v3
                                            at <- (2 * oh + 1) * w + c + 1

                            y[yb + oh * wo + ow] <- best
                            indices[ib + oh * wo + ow] <- at)
        else
            Par.forChunks (g.N * g.C) (planeGrain (ho * wo * g.KH * g.KW)) (fun s e ->
                for plane in s .. e - 1 do
                    let xb = xOff + plane * hw
                    let yb = plane * ho * wo

                    for oh in 0 .. ho - 1 do
                        let h0 = oh * g.StrideH - g.PadH

                        for ow in 0 .. wo - 1 do
                            let w0 = ow * g.StrideW - g.PadW
                            let mutable best = Single.NegativeInfinity
                            let mutable bestIdx = -1
                            let mutable nan = false

                            for kh in 0 .. g.KH - 1 do
                                let ih = h0 + kh * g.DilH

                                if ih >= 0 && ih < g.H then
                                    for kw in 0 .. g.KW - 1 do
                                        let iw = w0 + kw * g.DilW

                                        if iw >= 0 && iw < g.W && not nan then
                                            let v = x[xb + ih * g.W + iw]

                                            if v > best || bestIdx < 0 || Single.IsNaN v then
                                                best <- v
                                                bestIdx <- ih * g.W + iw
                                                nan <- Single.IsNaN v

                            y[yOff + yb + oh * wo + ow] <- best
                            indices[idxOff + yb + oh * wo + ow] <- bestIdx)

    /// Max pooling forward for 2×2 windows of stride 2 inside the image (isPair) with one byte per
    /// output for the maximum's place in its window (0 top left, 1 top right, 2 bottom left,
    /// 3 bottom right), packed four to an int of <c>codes</c> (length ⌈N·C·Ho·Wo / 4⌉): a quarter of
    /// maxForward's index memory. Values, ties and NaN exactly as maxForward.
    let internal maxForwardPair
        (g: Pool2dGeometry)
        (x: float32[])
        (xOff: int)
        (y: float32[])
        (yOff: int)
        (codes: int[])
        =
        let op = "maxPool2d"
        checkLength op "x" x.Length xOff g.XLength
        checkLength op "y" y.Length yOff g.YLength
        checkLength op "codes" (codes.Length * 4) 0 g.YLength
        let ho = g.Ho
        let wo = g.Wo
        let hw = g.H * g.W
        let w = g.W

        Par.forChunks (g.N * g.C) (planeGrain (ho * wo * 4)) (fun s e ->
            let bytes = Runtime.InteropServices.MemoryMarshal.AsBytes(Span<int>(codes))

            for plane in s .. e - 1 do
                let xb = xOff + plane * hw
                let yb = plane * ho * wo

                for oh in 0 .. ho - 1 do
                    let r0 = xb + 2 * oh * w
                    let r1 = r0 + w

                    for ow in 0 .. wo - 1 do
                        let c = 2 * ow
                        let mutable best = x[r0 + c]
                        let mutable at = 0uy

                        if not (Single.IsNaN best) then
                            let v1 = x[r0 + c + 1]

                            if v1 > best || Single.IsNaN v1 then
                                best <- v1
                                at <- 1uy

                            if not (Single.IsNaN best) then
                                let v2 = x[r1 + c]

                                if v2 > best || Single.IsNaN v2 then
                                    best <- v2
                                    at <- 2uy

                                if not (Single.IsNaN best) then
                                    let v3 = x[r1 + c + 1]

                                    if v3 > best || Single.IsNaN v3 then
                                        best <- v3
                                        at <- 3uy

                        y[yOff + yb + oh * wo + ow] <- best
                        bytes[yb + oh * wo + ow] <- at)

    /// The backward of maxForwardPair: dx = dy at each window's maximum, 0 elsewhere (dx overwritten).
    let internal maxBackwardPair
        (g: Pool2dGeometry)
        (dy: float32[])
        (dyOff: int)
        (codes: int[])
        (dx: float32[])
        (dxOff: int)
        =
        let op = "maxPool2d backward"
        checkLength op "dy" dy.Length dyOff g.YLength
        checkLength op "codes" (codes.Length * 4) 0 g.YLength
        checkLength op "dx" dx.Length dxOff g.XLength
        let hw = g.H * g.W
        let howo = g.Ho * g.Wo
        let w = g.W
        let wo = g.Wo

        Par.forChunks (g.N * g.C) (planeGrain (howo * 4)) (fun s e ->
            let bytes = Runtime.InteropServices.MemoryMarshal.AsBytes(Span<int>(codes))

            for plane in s .. e - 1 do
                let xb = dxOff + plane * hw
                let yb = plane * howo

                if 2 * g.Ho < g.H || 2 * wo < w then
                    Span<float32>(dx, xb, hw).Clear()

                for oh in 0 .. g.Ho - 1 do
                    let r0 = xb + 2 * oh * w
                    let r1 = r0 + w

                    for ow in 0 .. wo - 1 do
                        let c = 2 * ow
                        let at = bytes[yb + oh * wo + ow]
                        let v = dy[dyOff + yb + oh * wo + ow]
                        dx[r0 + c] <- (if at = 0uy then v else 0.0f)
                        dx[r0 + c + 1] <- (if at = 1uy then v else 0.0f)
                        dx[r1 + c] <- (if at = 2uy then v else 0.0f)
                        dx[r1 + c + 1] <- (if at = 3uy then v else 0.0f))

    /// Max pooling backward: dx[n, c, indices[n, c, oh, ow]] += dy[n, c, oh, ow] (dx zeroed first unless
    /// <c>accumulate</c>). Shapes: dy and indices [N, C, Ho, Wo]; dx [N, C, H, W].
    let maxBackward
        (g: Pool2dGeometry)
        (dy: float32[])
        (dyOff: int)
        (indices: int[])
        (idxOff: int)
        (dx: float32[])
        (dxOff: int)
        (accumulate: bool)
        =
        let op = "maxPool2d backward"
        validateWindow op g
        checkLength op "dy" dy.Length dyOff g.YLength
        checkLength op "indices" indices.Length idxOff g.YLength
        checkLength op "dx" dx.Length dxOff g.XLength
        let hw = g.H * g.W
        let howo = g.Ho * g.Wo

        if isPair g && not accumulate then
            // Disjoint 2×2 windows covering rows [0, 2·Ho) × columns [0, 2·Wo): each window's four
            // cells are written once (dy at its maximum, 0 elsewhere); cells outside every window are cleared.
            let w = g.W
            let wo = g.Wo

            Par.forChunks (g.N * g.C) (planeGrain (howo * 4)) (fun s e ->
                for plane in s .. e - 1 do
                    let xb = dxOff + plane * hw
                    let yb = plane * howo

                    if 2 * g.Ho < g.H || 2 * wo < w then
                        Span<float32>(dx, xb, hw).Clear()

                    for oh in 0 .. g.Ho - 1 do
                        let r0 = 2 * oh * w
                        let r1 = r0 + w

                        for ow in 0 .. wo - 1 do
                            let c = 2 * ow
                            let idx = indices[idxOff + yb + oh * wo + ow]

                            if idx <> r0 + c && idx <> r0 + c + 1 && idx <> r1 + c && idx <> r1 + c + 1 then
                                Errors.fail (
                                    sprintf
                                        "%s: indices entry %d is not in its 2×2 window; pass the indices maxForward wrote."
                                        op
                                        idx
                                )

                            let v = dy[dyOff + yb + oh * wo + ow]
                            dx[xb + r0 + c] <- (if idx = r0 + c then v else 0.0f)
                            dx[xb + r0 + c + 1] <- (if idx = r0 + c + 1 then v else 0.0f)
                            dx[xb + r1 + c] <- (if idx = r1 + c then v else 0.0f)
                            dx[xb + r1 + c + 1] <- (if idx = r1 + c + 1 then v else 0.0f))
        else
            Par.forChunks (g.N * g.C) (planeGrain howo) (fun s e ->
                for plane in s .. e - 1 do
                    let xb = dxOff + plane * hw

                    if not accumulate then
                        Span<float32>(dx, xb, hw).Clear()

                    let yb = plane * howo

                    for i in 0 .. howo - 1 do
                        let idx = indices[idxOff + yb + i]

                        if idx >= 0 then
                            if idx >= hw then
                                Errors.fail (
                                    sprintf
                                        "%s: indices entry %d is outside the plane of H·W = %d; pass the indices maxForward wrote."
                                        op
                                        idx
                                        hw
                                )

                            dx[xb + idx] <- dx[xb + idx] + dy[dyOff + yb + i])

    let private validateAvg op (g: Pool2dGeometry) =
        validateWindow op g

        if g.DilH <> 1 then
            Errors.invalidArg op "DilH" g.DilH "1 (average pooling has no dilation)"

        if g.DilW <> 1 then
            Errors.invalidArg op "DilW" g.DilW "1 (average pooling has no dilation)"

    /// The window of output (o) along one axis: in-image range [lo, hi) and the divisor extent with padding
    /// (window clipped to [−pad, size + pad)).
    let inline private avgRange (o: int) (stride: int) (pad: int) (k: int) (size: int) =
        let start = o * stride - pad
        let stop = min (start + k) (size + pad)
        let padded = stop - start
        struct (max start 0, min stop size, padded)

    /// Average pooling forward: y[n, c, oh, ow] = Σ_{window ∩ image} x / d, where d is the window area clipped to the
    /// padded image when <c>countIncludePad</c>, else the number of in-image positions (PyTorch's avg_pool2d).
    /// Requires DilH = DilW = 1. Shapes: x [N, C, H, W]; y [N, C, Ho, Wo].
    let avgForward (g: Pool2dGeometry) (countIncludePad: bool) (x: float32[]) (xOff: int) (y: float32[]) (yOff: int) =
        let op = "avgPool2d"
        validateAvg op g
        checkLength op "x" x.Length xOff g.XLength
        checkLength op "y" y.Length yOff g.YLength
        let ho = g.Ho
        let wo = g.Wo
        let hw = g.H * g.W

        Par.forChunks (g.N * g.C) (planeGrain (ho * wo * g.KH * g.KW)) (fun s e ->
            for plane in s .. e - 1 do
                let xb = xOff + plane * hw
                let yb = yOff + plane * ho * wo

                for oh in 0 .. ho - 1 do
                    let struct (h0, h1, ph) = avgRange oh g.StrideH g.PadH g.KH g.H

                    for ow in 0 .. wo - 1 do
                        let struct (w0, w1, pw) = avgRange ow g.StrideW g.PadW g.KW g.W
                        let mutable acc = 0.0f

                        for ih in h0 .. h1 - 1 do
                            for iw in w0 .. w1 - 1 do
                                acc <- acc + x[xb + ih * g.W + iw]

                        let d = if countIncludePad then ph * pw else (h1 - h0) * (w1 - w0)
                        y[yb + oh * wo + ow] <- if d > 0 then acc / float32 d else 0.0f)

    /// Average pooling backward: dx[n, c, ih, iw] (+)= Σ over windows containing (ih, iw) of dy / d, d as in
    /// avgForward. Shapes: dy [N, C, Ho, Wo]; dx [N, C, H, W].
    let avgBackward
        (g: Pool2dGeometry)
        (countIncludePad: bool)
        (dy: float32[])
        (dyOff: int)
        (dx: float32[])
        (dxOff: int)
        (accumulate: bool)
        =
        let op = "avgPool2d backward"
        validateAvg op g
        checkLength op "dy" dy.Length dyOff g.YLength
        checkLength op "dx" dx.Length dxOff g.XLength
        let ho = g.Ho
        let wo = g.Wo
        let hw = g.H * g.W

        Par.forChunks (g.N * g.C) (planeGrain (ho * wo * g.KH * g.KW)) (fun s e ->
            for plane in s .. e - 1 do
                let xb = dxOff + plane * hw

                if not accumulate then
                    Span<float32>(dx, xb, hw).Clear()

                let yb = dyOff + plane * ho * wo

                for oh in 0 .. ho - 1 do
                    let struct (h0, h1, ph) = avgRange oh g.StrideH g.PadH g.KH g.H

                    for ow in 0 .. wo - 1 do
                        let struct (w0, w1, pw) = avgRange ow g.StrideW g.PadW g.KW g.W
                        let d = if countIncludePad then ph * pw else (h1 - h0) * (w1 - w0)

                        if d > 0 then
                            let v = dy[yb + oh * wo + ow] / float32 d

                            for ih in h0 .. h1 - 1 do
                                for iw in w0 .. w1 - 1 do
                                    dx[xb + ih * g.W + iw] <- dx[xb + ih * g.W + iw] + v)

    let private validateAdaptive op (g: AdaptivePool2dGeometry) =
        positive op "N" g.N
        positive op "C" g.C
        positive op "H" g.H
        positive op "W" g.W
        positive op "Ho" g.Ho
        positive op "Wo" g.Wo

    let inline private bin (i: int) (size: int) (outSize: int) =
        struct (i * size / outSize, ((i + 1) * size + outSize - 1) / outSize)

    /// Adaptive average pooling forward: y[n, c, i, j] = mean of x[n, c, ⌊i·H/Ho⌋ .. ⌈(i+1)·H/Ho⌉ − 1,
    /// ⌊j·W/Wo⌋ .. ⌈(j+1)·W/Wo⌉ − 1]. Shapes: x [N, C, H, W]; y [N, C, Ho, Wo].
    let adaptiveAvgForward (g: AdaptivePool2dGeometry) (x: float32[]) (xOff: int) (y: float32[]) (yOff: int) =
        let op = "adaptiveAvgPool2d"
        validateAdaptive op g
        checkLength op "x" x.Length xOff g.XLength
        checkLength op "y" y.Length yOff g.YLength
        let hw = g.H * g.W

        Par.forChunks (g.N * g.C) (planeGrain hw) (fun s e ->
            for plane in s .. e - 1 do
                let xb = xOff + plane * hw
                let yb = yOff + plane * g.Ho * g.Wo

                for i in 0 .. g.Ho - 1 do
                    let struct (h0, h1) = bin i g.H g.Ho

                    for j in 0 .. g.Wo - 1 do
                        let struct (w0, w1) = bin j g.W g.Wo
                        let mutable acc = 0.0f

                        for ih in h0 .. h1 - 1 do
                            for iw in w0 .. w1 - 1 do
                                acc <- acc + x[xb + ih * g.W + iw]

                        y[yb + i * g.Wo + j] <- acc / float32 ((h1 - h0) * (w1 - w0)))

    /// Adaptive average pooling backward: dx (+)= each dy[n, c, i, j] spread evenly over its bin.
    /// Shapes: dy [N, C, Ho, Wo]; dx [N, C, H, W].
    let adaptiveAvgBackward
        (g: AdaptivePool2dGeometry)
        (dy: float32[])
        (dyOff: int)
        (dx: float32[])
        (dxOff: int)
        (accumulate: bool)
        =
        let op = "adaptiveAvgPool2d backward"
        validateAdaptive op g
        checkLength op "dy" dy.Length dyOff g.YLength
        checkLength op "dx" dx.Length dxOff g.XLength
        let hw = g.H * g.W

        Par.forChunks (g.N * g.C) (planeGrain hw) (fun s e ->
            for plane in s .. e - 1 do
                let xb = dxOff + plane * hw

                if not accumulate then
                    Span<float32>(dx, xb, hw).Clear()

                let yb = dyOff + plane * g.Ho * g.Wo

                for i in 0 .. g.Ho - 1 do
                    let struct (h0, h1) = bin i g.H g.Ho

                    for j in 0 .. g.Wo - 1 do
                        let struct (w0, w1) = bin j g.W g.Wo
                        let v = dy[yb + i * g.Wo + j] / float32 ((h1 - h0) * (w1 - w0))

                        for ih in h0 .. h1 - 1 do
                            for iw in w0 .. w1 - 1 do
                                dx[xb + ih * g.W + iw] <- dx[xb + ih * g.W + iw] + v)
