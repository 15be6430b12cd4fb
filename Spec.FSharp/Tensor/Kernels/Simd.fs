namespace SnnSpec.Kernels

open System
open System.Numerics.Tensors
open System.Runtime.Intrinsics
open SnnSpec

/// Elementwise binary operations the broadcasting kernel knows.
type BinaryOp =
    | Add = 0
    | Sub = 1
    | Mul = 2
    | Div = 3
    | Max = 4
    | Min = 5
    | Pow = 6
    | Gt = 7
    | Ge = 8
    | Lt = 9
    | Le = 10
    | Eq = 11
    | Ne = 12

/// Elementwise unary operations vectorised through TensorPrimitives.
type UnaryOp =
    | Exp = 0
    | Log = 1
    | Log1p = 2
    | Tanh = 3
    | Sigmoid = 4
    | Relu = 5
    | Abs = 6
    | Sqrt = 7
    | Sin = 8
    | Cos = 9
    | Round = 10
    | Floor = 11
    | Neg = 12

/// Broadcasting elementwise and reduction kernels over contiguous row-major float32 arrays with offsets.
/// Shapes are coalesced first, so the inner loop always runs over a contiguous or constant operand
/// and is vectorised through TensorPrimitives (AVX-512 where present).
module Elementwise =
    let inline private cmp (op: BinaryOp) (x: float32) (y: float32) =
        let r =
            match op with
            | BinaryOp.Gt -> x > y
            | BinaryOp.Ge -> x >= y
            | BinaryOp.Lt -> x < y
            | BinaryOp.Le -> x <= y
            | BinaryOp.Eq -> x = y
            | _ -> x <> y

        if r then 1.0f else 0.0f

    /// out[i] = a[i] op b[i] over n contiguous elements.
    let spanSpan (op: BinaryOp) (a: float32[]) (ao: int) (b: float32[]) (bo: int) (out: float32[]) (oo: int) (n: int) =
        let x = ReadOnlySpan(a, ao, n)
        let y = ReadOnlySpan(b, bo, n)
        let o = Span(out, oo, n)

        match op with
        | BinaryOp.Add -> TensorPrimitives.Add(x, y, o)
        | BinaryOp.Sub -> TensorPrimitives.Subtract(x, y, o)
        | BinaryOp.Mul -> TensorPrimitives.Multiply(x, y, o)
        | BinaryOp.Div -> TensorPrimitives.Divide(x, y, o)
        | BinaryOp.Max -> TensorPrimitives.Max(x, y, o)
        | BinaryOp.Min -> TensorPrimitives.Min(x, y, o)
        | BinaryOp.Pow -> TensorPrimitives.Pow(x, y, o)
        | _ ->
            for i in 0 .. n - 1 do
                o[i] <- cmp op x[i] y[i]

    /// out[i] = a[i] op s.
    let spanScalar (op: BinaryOp) (a: float32[]) (ao: int) (s: float32) (out: float32[]) (oo: int) (n: int) =
        let x = ReadOnlySpan(a, ao, n)
        let o = Span(out, oo, n)

        match op with
        | BinaryOp.Add -> TensorPrimitives.Add(x, s, o)
        | BinaryOp.Sub -> TensorPrimitives.Subtract(x, s, o)
        | BinaryOp.Mul -> TensorPrimitives.Multiply(x, s, o)
        // x·(1/s), within an ulp of x/s and several times faster; true division where 1/s is not
        // a normal float (a subnormal or huge s), whose reciprocal would overflow or lose digits.
        | BinaryOp.Div when Single.IsNormal(1.0f / s) -> TensorPrimitives.Multiply(x, 1.0f / s, o)
        | BinaryOp.Div -> TensorPrimitives.Divide(x, s, o)
        | BinaryOp.Max -> TensorPrimitives.Max(x, s, o)
        | BinaryOp.Min -> TensorPrimitives.Min(x, s, o)
        | BinaryOp.Pow -> TensorPrimitives.Pow(x, s, o)
        | _ ->
            for i in 0 .. n - 1 do
                o[i] <- cmp op x[i] s

    /// out[i] = s op b[i].
    let scalarSpan (op: BinaryOp) (s: float32) (b: float32[]) (bo: int) (out: float32[]) (oo: int) (n: int) =
        let y = ReadOnlySpan(b, bo, n)
        let o = Span(out, oo, n)

        match op with
        | BinaryOp.Add -> TensorPrimitives.Add(y, s, o)
        | BinaryOp.Sub -> TensorPrimitives.Subtract(s, y, o)
        | BinaryOp.Mul -> TensorPrimitives.Multiply(y, s, o)
        | BinaryOp.Div -> TensorPrimitives.Divide(s, y, o)
        | BinaryOp.Max -> TensorPrimitives.Max(y, s, o)
        | BinaryOp.Min -> TensorPrimitives.Min(y, s, o)
        | BinaryOp.Pow -> TensorPrimitives.Pow(s, y, o)
        | _ ->
            for i in 0 .. n - 1 do
                o[i] <- cmp op s y[i]

    let private unaryChunk (op: UnaryOp) (a: float32[]) (ao: int) (out: float32[]) (oo: int) (n: int) =
        let x = ReadOnlySpan(a, ao, n)
        let o = Span(out, oo, n)

        match op with
        | UnaryOp.Exp -> TensorPrimitives.Exp(x, o)
        | UnaryOp.Log -> TensorPrimitives.Log(x, o)
        | UnaryOp.Log1p -> TensorPrimitives.LogP1(x, o)
        | UnaryOp.Tanh -> TensorPrimitives.Tanh(x, o)
        | UnaryOp.Sigmoid -> TensorPrimitives.Sigmoid(x, o)
        | UnaryOp.Relu -> TensorPrimitives.Max(x, 0.0f, o)
        | UnaryOp.Abs -> TensorPrimitives.Abs(x, o)
        | UnaryOp.Sqrt -> TensorPrimitives.Sqrt(x, o)
        | UnaryOp.Sin -> TensorPrimitives.Sin(x, o)
        | UnaryOp.Cos -> TensorPrimitives.Cos(x, o)
        | UnaryOp.Round -> TensorPrimitives.Round(x, o)
        | UnaryOp.Floor -> TensorPrimitives.Floor(x, o)
        | _ -> TensorPrimitives.Negate(x, o)

    /// out[i] = op(a[i]) over n contiguous elements, split across the kernel threads when large.
    let unary (op: UnaryOp) (a: float32[]) (ao: int) (out: float32[]) (oo: int) (n: int) =
        if n < 65536 then
            unaryChunk op a ao out oo n
        else
            Par.forChunks n 32768 (fun s e -> unaryChunk op a (ao + s) out (oo + s) (e - s))

    /// Merges adjacent axes that are contiguous in every operand; drops size-1 axes.
    /// Returns (dims, stridesA, stridesB) with the innermost axis last.
    let coalesce (shape: int[]) (sa: int[]) (sb: int[]) =
        let dims = ResizeArray<int>()
        let xa = ResizeArray<int>()
        let xb = ResizeArray<int>()

        for i in 0 .. shape.Length - 1 do
            if shape[i] <> 1 then
                let k = dims.Count - 1

                if k >= 0 && xa[k] = sa[i] * shape[i] && xb[k] = sb[i] * shape[i] then
                    dims[k] <- dims[k] * shape[i]
                    xa[k] <- sa[i]
                    xb[k] <- sb[i]
                else
                    dims.Add shape[i]
                    xa.Add sa[i]
                    xb.Add sb[i]

        if dims.Count = 0 then
            [| 1 |], [| 0 |], [| 0 |]
        else
            dims.ToArray(), xa.ToArray(), xb.ToArray()

    /// out (shape outShape, contiguous) = a op b, with a and b broadcast to outShape.
    let binary
        (op: BinaryOp)
        (a: float32[])
        (ao: int)
        (aShape: int[])
        (b: float32[])
        (bo: int)
        (bShape: int[])
        (out: float32[])
        (oo: int)
        (outShape: int[])
        =
        let n = Shape.numel outShape

        if n > 0 then
            let dims, sa, sb =
                coalesce outShape (Shape.broadcastStrides aShape outShape) (Shape.broadcastStrides bShape outShape)

            let r = dims.Length
            let inner = dims[r - 1]
            let ia = sa[r - 1]
            let ib = sb[r - 1]
            let rows = n / inner

            let runRows (r0: int) (r1: int) =
                // Odometer over the outer axes, starting at row r0.
                let idx = Array.zeroCreate (max 1 (r - 1))
                let mutable rem = r0

                for d in r - 2 .. -1 .. 0 do
                    idx[d] <- rem % dims[d]
                    rem <- rem / dims[d]

                let mutable offA = ao
                let mutable offB = bo

                for d in 0 .. r - 2 do
                    offA <- offA + idx[d] * sa[d]
                    offB <- offB + idx[d] * sb[d]

                for row in r0 .. r1 - 1 do
                    let oOff = oo + row * inner

                    if ia = 1 && ib = 1 then
                        spanSpan op a offA b offB out oOff inner
                    elif ia = 1 then
                        spanScalar op a offA b[offB] out oOff inner
                    elif ib = 1 then
                        scalarSpan op a[offA] b offB out oOff inner
                    else
                        let v = Array.zeroCreate 1
                        spanScalar op [| a[offA] |] 0 b[offB] v 0 1
                        Array.Fill(out, v[0], oOff, inner)
                    // advance the odometer
                    let mutable d = r - 2
                    let mutable carry = true

                    while carry && d >= 0 do
                        idx[d] <- idx[d] + 1
                        offA <- offA + sa[d]
                        offB <- offB + sb[d]

                        if idx[d] = dims[d] then
                            offA <- offA - sa[d] * dims[d]
                            offB <- offB - sb[d] * dims[d]
                            idx[d] <- 0
                            d <- d - 1
                        else
                            carry <- false

            let grain = max 1 (32768 / max 1 inner)
            Par.forChunks rows grain runRows

/// Sums over axes. The reduced axes are handled as contiguous runs: a run of reduced axes between
/// kept axes is an [outer, R, inner] problem, summed with SIMD row additions.
module Reduce =
    /// Sums x of shape [outer, r, inner] over the middle axis into out [outer, inner].
    let sumMiddle (x: float32[]) (xo: int) (outer: int) (r: int) (inner: int) (out: float32[]) (oo: int) =
        if r = 0 then
            // An empty axis sums to 0 (nothing of x may be read: it may hold no element at all).
            Span(out, oo, outer * inner).Clear()
        elif inner = 1 then
            let body (o0: int) (o1: int) =
                for o in o0 .. o1 - 1 do
                    out[oo + o] <- TensorPrimitives.Sum(ReadOnlySpan(x, xo + o * r, r))

            Par.forChunks outer (max 1 (65536 / max 1 r)) body
        else
            let body (o0: int) (o1: int) =
                for o in o0 .. o1 - 1 do
                    let dst = Span(out, oo + o * inner, inner)
                    ReadOnlySpan(x, xo + o * r * inner, inner).CopyTo dst

                    for k in 1 .. r - 1 do
                        TensorPrimitives.Add(ReadOnlySpan(x, xo + (o * r + k) * inner, inner), dst, dst)

            if outer >= 2 then
                Par.forChunks outer (max 1 (65536 / max 1 (r * inner))) body
            else
                // One outer block: split the inner axis across threads instead.
                let bodyInner (i0: int) (i1: int) =
                    let w = i1 - i0
                    let dst = Span(out, oo + i0, w)
                    ReadOnlySpan(x, xo + i0, w).CopyTo dst

                    for k in 1 .. r - 1 do
                        TensorPrimitives.Add(ReadOnlySpan(x, xo + k * inner + i0, w), dst, dst)

                Par.forChunks inner (max 64 (65536 / max 1 r)) bodyInner
