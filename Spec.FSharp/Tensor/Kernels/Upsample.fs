namespace SnnSpec.Kernels

open System
open SnnSpec

/// Geometry of 2-D resampling over NCHW data: input [N, C, H, W] to output [N, C, Ho, Wo] (the same
/// record as adaptive pooling's).
type Upsample2dGeometry = AdaptivePool2dGeometry

/// Raw nearest and bilinear resampling kernels with PyTorch's F.interpolate(size = (Ho, Wo)) semantics, over
/// float32 arrays with element offsets. Forward passes overwrite y; backward passes overwrite dx unless
/// <c>accumulate</c>. Parallel over the N·C planes.
module Upsample =
    let private validate op (g: Upsample2dGeometry) =
        let positive = Errors.positiveInt op

        positive "N" g.N
        positive "C" g.C
        positive "H" g.H
        positive "W" g.W
        positive "Ho" g.Ho
        positive "Wo" g.Wo

    let private checkLength = Errors.checkBuffer

    let private grain (work: int) = max 1 (32768 / max 1 work)

    /// Source index of nearest resampling along one axis: min(⌊o · (size/outSize)⌋, size − 1), the scale computed
    /// in float32 as PyTorch does.
    let nearestIndex (o: int) (size: int) (outSize: int) =
        if outSize = size then
            o
        elif outSize = 2 * size then
            o >>> 1
        else
            let scale = float32 size / float32 outSize
            min (int (MathF.Floor(float32 o * scale))) (size - 1)

    let private nearestTables (g: Upsample2dGeometry) =
        Array.init g.Ho (fun o -> nearestIndex o g.H g.Ho), Array.init g.Wo (fun o -> nearestIndex o g.W g.Wo)

    /// Nearest forward: y[n, c, oh, ow] = x[n, c, nearestIndex oh H Ho, nearestIndex ow W Wo].
    let nearestForward (g: Upsample2dGeometry) (x: float32[]) (xOff: int) (y: float32[]) (yOff: int) =
        let op = "upsampleNearest2d"
        validate op g
        checkLength op "x" x.Length xOff g.XLength
        checkLength op "y" y.Length yOff g.YLength
        let hi, wi = nearestTables g
        let hw = g.H * g.W
        let howo = g.Ho * g.Wo

        Par.forChunks (g.N * g.C) (grain howo) (fun s e ->
            for plane in s .. e - 1 do
                let xb = xOff + plane * hw
                let yb = yOff + plane * howo

                for oh in 0 .. g.Ho - 1 do
                    let src = xb + hi[oh] * g.W
                    let dst = yb + oh * g.Wo

                    if oh > 0 && hi[oh] = hi[oh - 1] then
                        Array.Copy(y, dst - g.Wo, y, dst, g.Wo)
                    else
                        for ow in 0 .. g.Wo - 1 do
                            y[dst + ow] <- x[src + wi[ow]])

    /// Nearest backward: dx[n, c, ih, iw] (+)= Σ_{oh, ow mapping to (ih, iw)} dy[n, c, oh, ow].
    let nearestBackward
        (g: Upsample2dGeometry)
        (dy: float32[])
        (dyOff: int)
        (dx: float32[])
        (dxOff: int)
        (accumulate: bool)
        =
        let op = "upsampleNearest2d backward"
        validate op g
        checkLength op "dy" dy.Length dyOff g.YLength
        checkLength op "dx" dx.Length dxOff g.XLength
        let hi, wi = nearestTables g
        let hw = g.H * g.W
        let howo = g.Ho * g.Wo

        Par.forChunks (g.N * g.C) (grain howo) (fun s e ->
            for plane in s .. e - 1 do
                let xb = dxOff + plane * hw

                if not accumulate then
                    Span<float32>(dx, xb, hw).Clear()

                let yb = dyOff + plane * howo

                for oh in 0 .. g.Ho - 1 do
                    let dst = xb + hi[oh] * g.W
                    let src = yb + oh * g.Wo

                    for ow in 0 .. g.Wo - 1 do
                        dx[dst + wi[ow]] <- dx[dst + wi[ow]] + dy[src + ow])

    /// Bilinear interpolation weights along one axis (PyTorch's upsample_bilinear2d, float32 arithmetic):
    /// source coordinate s = o·(size−1)/(outSize−1) when alignCorners (0 if outSize = 1), else
    /// max(0, (o + ½)·size/outSize − ½); i0 = ⌊s⌋, i1 = min(i0 + 1, size − 1), λ1 = s − i0, λ0 = 1 − λ1.
    let bilinearWeights (alignCorners: bool) (size: int) (outSize: int) =
        let i0 = Array.zeroCreate<int> outSize
        let i1 = Array.zeroCreate<int> outSize
        let l0 = Array.zeroCreate<float32> outSize
        let l1 = Array.zeroCreate<float32> outSize

        let scale =
            if alignCorners then
                if outSize > 1 then
                    float32 (size - 1) / float32 (outSize - 1)
                else
                    0.0f
            else
                float32 size / float32 outSize

        for o in 0 .. outSize - 1 do
            let src =
                if alignCorners then
                    scale * float32 o
                else
                    max 0.0f (scale * (float32 o + 0.5f) - 0.5f)

            let a = min (int src) (size - 1)
            i0[o] <- a
            i1[o] <- if a < size - 1 then a + 1 else a
            l1[o] <- min 1.0f (max 0.0f (src - float32 a))
            l0[o] <- 1.0f - l1[o]

        i0, i1, l0, l1

    /// Bilinear forward: y[n, c, oh, ow] = Σ_{a ∈ {0,1}, b ∈ {0,1}} λa(oh)·λb(ow)·x[n, c, ia(oh), ib(ow)] with the
    /// per-axis indices and weights of bilinearWeights.
    let bilinearForward
        (g: Upsample2dGeometry)
        (alignCorners: bool)
        (x: float32[])
        (xOff: int)
        (y: float32[])
        (yOff: int)
        =
        let op = "upsampleBilinear2d"
        validate op g
        checkLength op "x" x.Length xOff g.XLength
        checkLength op "y" y.Length yOff g.YLength
        let h0, h1, hl0, hl1 = bilinearWeights alignCorners g.H g.Ho
        let w0, w1, wl0, wl1 = bilinearWeights alignCorners g.W g.Wo
        let hw = g.H * g.W
        let howo = g.Ho * g.Wo

        Par.forChunks (g.N * g.C) (grain (4 * howo)) (fun s e ->
            for plane in s .. e - 1 do
                let xb = xOff + plane * hw
                let yb = yOff + plane * howo

                for oh in 0 .. g.Ho - 1 do
                    let r0 = xb + h0[oh] * g.W
                    let r1 = xb + h1[oh] * g.W
                    let a0 = hl0[oh]
                    let a1 = hl1[oh]
                    let dst = yb + oh * g.Wo

                    for ow in 0 .. g.Wo - 1 do
                        let c0 = w0[ow]
                        let c1 = w1[ow]

                        y[dst + ow] <-
                            a0 * (wl0[ow] * x[r0 + c0] + wl1[ow] * x[r0 + c1])
                            + a1 * (wl0[ow] * x[r1 + c0] + wl1[ow] * x[r1 + c1]))

    /// Bilinear backward (the adjoint of bilinearForward): dx[n, c, ia(oh), ib(ow)] (+)= λa(oh)·λb(ow)·dy[n, c, oh, ow].
    let bilinearBackward
        (g: Upsample2dGeometry)
        (alignCorners: bool)
        (dy: float32[])
        (dyOff: int)
        (dx: float32[])
        (dxOff: int)
        (accumulate: bool)
        =
        let op = "upsampleBilinear2d backward"
        validate op g
        checkLength op "dy" dy.Length dyOff g.YLength
        checkLength op "dx" dx.Length dxOff g.XLength
        let h0, h1, hl0, hl1 = bilinearWeights alignCorners g.H g.Ho
        let w0, w1, wl0, wl1 = bilinearWeights alignCorners g.W g.Wo
        let hw = g.H * g.W
        let howo = g.Ho * g.Wo

        Par.forChunks (g.N * g.C) (grain (4 * howo)) (fun s e ->
            for plane in s .. e - 1 do
                let xb = dxOff + plane * hw

                if not accumulate then
                    Span<float32>(dx, xb, hw).Clear()

                let yb = dyOff + plane * howo

                for oh in 0 .. g.Ho - 1 do
                    let r0 = xb + h0[oh] * g.W
                    let r1 = xb + h1[oh] * g.W
                    let a0 = hl0[oh]
                    let a1 = hl1[oh]
                    let src = yb + oh * g.Wo

                    for ow in 0 .. g.Wo - 1 do
                        let v = dy[src + ow]
                        let c0 = w0[ow]
                        let c1 = w1[ow]
                        dx[r0 + c0] <- dx[r0 + c0] + a0 * wl0[ow] * v
                        dx[r0 + c1] <- dx[r0 + c1] + a0 * wl1[ow] * v
                        dx[r1 + c0] <- dx[r1 + c0] + a1 * wl0[ow] * v
                        dx[r1 + c1] <- dx[r1 + c1] + a1 * wl1[ow] * v)
