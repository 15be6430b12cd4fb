namespace SnnSpec

open System
open SnnSpec.Kernels

type internal TP = System.Numerics.Tensors.TensorPrimitives

/// Fused kernels over a tensor viewed as [outer, n, inner], the reduced axis in the middle.
/// With inner = 1 (the last axis) each row is contiguous and handled by TensorPrimitives;
/// otherwise the n slices of length inner are combined elementwise, still without a transpose.
module internal SoftmaxKernel =
    let private grain (work: int) = max 1 (16384 / max 1 work)

    /// The shift used before exponentiating: the maximum when finite, else 0
    /// (so all −∞ rows give NaN softmax / −∞ logsumexp and +∞ entries propagate, as in PyTorch).
    let inline private shift (m: float32) = if Single.IsFinite m then m else 0.0f

    /// y = softmax(x) (or log-softmax when isLog) along the middle axis.
    let forward (isLog: bool) (x: float32[]) (xo: int) (y: float32[]) (outer: int) (n: int) (inner: int) =
        if outer * n * inner > 0 then
            if inner = 1 then
                Par.forChunks outer (grain n) (fun r0 r1 ->
                    for r in r0 .. r1 - 1 do
                        let xs = ReadOnlySpan(x, xo + r * n, n)
                        let ys = Span(y, r * n, n)
                        let m = shift (TP.Max xs)
                        TP.Subtract(xs, m, ys)
                        TP.Exp(Span.op_Implicit ys, ys)
                        let s = TP.Sum(Span.op_Implicit ys)

                        if isLog then
                            // x − m − log s in two steps: m + log s would round away log s when |m| ≫ 1.
                            TP.Subtract(xs, m, ys)
                            TP.Subtract(Span.op_Implicit ys, MathF.Log s, ys)
                        else
                            TP.Divide(Span.op_Implicit ys, s, ys))
            else
                Par.forChunks outer (grain (n * inner)) (fun o0 o1 ->
                    let mb = Array.zeroCreate<float32> inner
                    let sb = Array.zeroCreate<float32> inner

                    for o in o0 .. o1 - 1 do
                        let baseX = xo + o * n * inner
                        let baseY = o * n * inner
                        ReadOnlySpan(x, baseX, inner).CopyTo(Span mb)

                        for k in 1 .. n - 1 do
                            TP.Max(ReadOnlySpan mb, ReadOnlySpan(x, baseX + k * inner, inner), Span mb)

                        for i in 0 .. inner - 1 do
                            mb[i] <- shift mb[i]

                        Array.Clear sb

                        for k in 0 .. n - 1 do
                            let yr = Span(y, baseY + k * inner, inner)
                            TP.Subtract(ReadOnlySpan(x, baseX + k * inner, inner), ReadOnlySpan mb, yr)
                            TP.Exp(Span.op_Implicit yr, yr)
                            TP.Add(ReadOnlySpan sb, Span.op_Implicit yr, Span sb)

                        if isLog then
                            TP.Log(ReadOnlySpan sb, Span sb)

                            for k in 0 .. n - 1 do
                                let yr = Span(y, baseY + k * inner, inner)
                                TP.Subtract(ReadOnlySpan(x, baseX + k * inner, inner), ReadOnlySpan mb, yr)
                                TP.Subtract(Span.op_Implicit yr, ReadOnlySpan sb, yr)
                        else
                            for k in 0 .. n - 1 do
                                let yr = Span(y, baseY + k * inner, inner)
                                TP.Divide(Span.op_Implicit yr, ReadOnlySpan sb, yr))

    /// dx from the output y and its gradient g: softmax dx = y ⊙ (g − Σ g⊙y);
    /// log-softmax dx = g − exp(y) ⊙ Σ g.
    let backward
        (isLog: bool)
        (y: float32[])
        (g: float32[])
        (go: int)
        (dx: float32[])
        (outer: int)
        (n: int)
        (inner: int)
        =
        if outer * n * inner > 0 then
            if inner = 1 then
                Par.forChunks outer (grain n) (fun r0 r1 ->
                    for r in r0 .. r1 - 1 do
                        let ys = ReadOnlySpan(y, r * n, n)
                        let gs = ReadOnlySpan(g, go + r * n, n)
                        let ds = Span(dx, r * n, n)

                        if isLog then
                            let s = TP.Sum gs
                            TP.Exp(ys, ds)
                            TP.MultiplyAdd(Span.op_Implicit ds, -s, gs, ds)
                        else
                            let d = TP.Dot(gs, ys)
                            TP.Subtract(gs, d, ds)
                            TP.Multiply(Span.op_Implicit ds, ys, ds))
            else
                Par.forChunks outer (grain (n * inner)) (fun o0 o1 ->
                    let acc = Array.zeroCreate<float32> inner

                    for o in o0 .. o1 - 1 do
                        let b = o * n * inner
                        Array.Clear acc

                        if isLog then
                            for k in 0 .. n - 1 do
                                TP.Add(ReadOnlySpan acc, ReadOnlySpan(g, go + b + k * inner, inner), Span acc)

                            for k in 0 .. n - 1 do
                                let d = Span(dx, b + k * inner, inner)
                                TP.Exp(ReadOnlySpan(y, b + k * inner, inner), d)
                                TP.Multiply(Span.op_Implicit d, ReadOnlySpan acc, d)
                                TP.Subtract(ReadOnlySpan(g, go + b + k * inner, inner), Span.op_Implicit d, d)
                        else
                            for k in 0 .. n - 1 do
                                TP.MultiplyAdd(
                                    ReadOnlySpan(g, go + b + k * inner, inner),
                                    ReadOnlySpan(y, b + k * inner, inner),
                                    ReadOnlySpan acc,
                                    Span acc
                                )

                            for k in 0 .. n - 1 do
                                let d = Span(dx, b + k * inner, inner)
                                TP.Subtract(ReadOnlySpan(g, go + b + k * inner, inner), ReadOnlySpan acc, d)
                                TP.Multiply(Span.op_Implicit d, ReadOnlySpan(y, b + k * inner, inner), d))

    /// out[o, i] = log Σ_k exp x[o, k, i], shifted by the maximum.
    let logsumexp (x: float32[]) (xo: int) (out: float32[]) (outer: int) (n: int) (inner: int) =
        if outer * inner > 0 then
            Par.forChunks outer (grain (n * inner)) (fun o0 o1 ->
                let tmp = Array.zeroCreate<float32>(max n inner)
                let mb = Array.zeroCreate<float32> inner

                for o in o0 .. o1 - 1 do
                    let baseX = xo + o * n * inner

                    if n = 0 then
                        Span(out, o * inner, inner).Fill Single.NegativeInfinity
                    elif inner = 1 then
                        let xs = ReadOnlySpan(x, baseX, n)
                        let m = shift (TP.Max xs)
                        let t = Span(tmp, 0, n)
                        TP.Subtract(xs, m, t)
                        TP.Exp(Span.op_Implicit t, t)
                        out[o] <- m + MathF.Log(TP.Sum(Span.op_Implicit t))
                    else
                        let t = Span(tmp, 0, inner)
                        let s = Span(out, o * inner, inner)
                        ReadOnlySpan(x, baseX, inner).CopyTo(Span mb)

                        for k in 1 .. n - 1 do
                            TP.Max(ReadOnlySpan mb, ReadOnlySpan(x, baseX + k * inner, inner), Span mb)

                        for i in 0 .. inner - 1 do
                            mb[i] <- shift mb[i]

                        s.Clear()

                        for k in 0 .. n - 1 do
                            TP.Subtract(ReadOnlySpan(x, baseX + k * inner, inner), ReadOnlySpan mb, t)
                            TP.Exp(Span.op_Implicit t, t)
                            TP.Add(Span.op_Implicit s, Span.op_Implicit t, s)

                        TP.Log(Span.op_Implicit s, s)
                        TP.Add(Span.op_Implicit s, ReadOnlySpan mb, s))

    /// dx[o, k, i] = g[o, i] · exp(x[o, k, i] − lse[o, i]).
    let logsumexpBackward
        (x: float32[])
        (xo: int)
        (lse: float32[])
        (g: float32[])
        (go: int)
        (dx: float32[])
        (outer: int)
        (n: int)
        (inner: int)
        =
        if outer * n * inner > 0 then
            Par.forChunks outer (grain (n * inner)) (fun o0 o1 ->
                for o in o0 .. o1 - 1 do
                    for k in 0 .. n - 1 do
                        let b = (o * n + k) * inner
                        let d = Span(dx, b, inner)
                        TP.Subtract(ReadOnlySpan(x, xo + b, inner), ReadOnlySpan(lse, o * inner, inner), d)
                        TP.Exp(Span.op_Implicit d, d)
                        TP.Multiply(Span.op_Implicit d, ReadOnlySpan(g, go + o * inner, inner), d))

/// Activation functions: softmax family along an axis and smooth elementwise nonlinearities.
[<AutoOpen>]
module ActivationOps =
    /// (outer, n, inner) of t around axis dim.
    let internal splitAt (op: string) (t: Tensor) (dim: int) =
        let shape = t.ShapeRef
        let a = Shape.normAxis op shape.Length dim
        a, Shape.numel shape[.. a - 1], shape[a], Shape.numel shape[a + 1 ..]

    let inline private sigmoidF (x: float32) = 1.0f / (1.0f + MathF.Exp(-x))

    /// √(2/π), the GELU tanh-approximation constant.
    let private geluC = 0.7978845608f

    [<RequireQualifiedAccess; CompilationRepresentation(CompilationRepresentationFlags.ModuleSuffix)>]
    module Tensor =
        let private softmaxImpl (op: string) (isLog: bool) (dim: int) (t: Tensor) =
            let _, outer, n, inner = splitAt op t dim
            let y = Autograd.alloc t.ShapeRef
            SoftmaxKernel.forward isLog t.Data t.Offset y.Data outer n inner

            Autograd.record y [| t |] (fun g _ ->
                let dx = Autograd.alloc y.ShapeRef
                SoftmaxKernel.backward isLog y.Data g.Data g.Offset dx.Data outer n inner
                [| dx |])

        /// softmax(x)ₖ = exp(xₖ − m) / Σⱼ exp(xⱼ − m) along axis dim, with m the maximum along dim
        /// (any shape; output has x's shape). Backward: dx = y ⊙ (g − Σ g⊙y).
        let softmax (dim: int) (x: Tensor) =
            softmaxImpl "Tensor.softmax" false dim x

        /// log softmax(x)ₖ = (xₖ − m) − log Σⱼ exp(xⱼ − m) along axis dim; finite for any finite logits
        /// (e.g. ±1e4). Backward: dx = g − softmax(x) ⊙ Σ g.
        let logSoftmax (dim: int) (x: Tensor) =
            softmaxImpl "Tensor.logSoftmax" true dim x

        /// log Σₖ exp xₖ along axis dim, computed as m + log Σ exp(xₖ − m); keepDim leaves the axis as 1.
        /// An empty axis gives −∞. Gradient: g · softmax(x).
        let logsumexp (dim: int) (keepDim: bool) (x: Tensor) =
            let a, outer, n, inner = splitAt "Tensor.logsumexp" x dim
            let shape = x.ShapeRef

            let outShape =
                if keepDim then
                    shape |> Array.mapi (fun i d -> if i = a then 1 else d)
                else
                    Array.append shape[.. a - 1] shape[a + 1 ..]

            let r = Autograd.alloc outShape
            SoftmaxKernel.logsumexp x.Data x.Offset r.Data outer n inner
            let x0 = Autograd.detach x

            Autograd.record r [| x |] (fun g _ ->
                let dx = Autograd.alloc shape
                SoftmaxKernel.logsumexpBackward x0.Data x0.Offset r.Data g.Data g.Offset dx.Data outer n inner
                [| dx |])

        /// softplus x = log(1 + eˣ), evaluated as max(x, 0) + log1p(e^−|x|) so it never overflows.
        /// Derivative σ(x).
        let softplus (x: Tensor) =
            let x0 = Autograd.detach x

            let r =
                ElementwiseRaw.map x (fun v ->
                    let e = MathF.Exp(-MathF.Abs v)

                    let l =
                        if e < 1e-4f then
                            e * (1.0f - 0.5f * e)
                        else
                            float32 (Math.Log(1.0 + float e))

                    MathF.Max(v, 0.0f) + l)

            Autograd.record r [| x |] (fun g _ -> [| ElementwiseRaw.map2 g x0 (fun gv v -> gv * sigmoidF v) |])

        /// leakyRelu x = x for x > 0, slope·x otherwise; derivative 1 or slope (slope at 0).
        let leakyRelu (negativeSlope: float32) (x: Tensor) =
            let x0 = Autograd.detach x
            let r = ElementwiseRaw.map x (fun v -> if v > 0.0f then v else negativeSlope * v)

            Autograd.record r [| x |] (fun g _ ->
                [|
                    ElementwiseRaw.map2 g x0 (fun gv v -> if v > 0.0f then gv else negativeSlope * gv)
                |])

        /// GELU, tanh approximation: ½x(1 + tanh(√(2/π)(x + 0.044715x³))) (PyTorch approximate="tanh").
        let gelu (x: Tensor) =
            let x0 = Autograd.detach x

            let r =
                ElementwiseRaw.map x (fun v -> 0.5f * v * (1.0f + MathF.Tanh(geluC * (v + 0.044715f * v * v * v))))

            Autograd.record r [| x |] (fun g _ ->
                [|
                    ElementwiseRaw.map2 g x0 (fun gv v ->
                        let t = MathF.Tanh(geluC * (v + 0.044715f * v * v * v))
                        let dInner = geluC * (1.0f + 3.0f * 0.044715f * v * v)
                        gv * (0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * dInner))
                |])

        /// SiLU (swish) x·σ(x); derivative σ(x)(1 + x(1 − σ(x))).
        let silu (x: Tensor) =
            let x0 = Autograd.detach x
            let r = ElementwiseRaw.map x (fun v -> v * sigmoidF v)

            Autograd.record r [| x |] (fun g _ ->
                [|
                    ElementwiseRaw.map2 g x0 (fun gv v ->
                        let s = sigmoidF v
                        gv * s * (1.0f + v * (1.0f - s)))
                |])
