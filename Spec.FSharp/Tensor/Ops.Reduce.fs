namespace SnnSpec

open System
open SnnSpec.Kernels

/// Sums, means and extrema over axes, and the broadcast/unbroadcast pair that backward rules use.
[<AutoOpen>]
module ReduceOps =
    /// Normalises a dims list against a rank: sorted, distinct, non-negative.
    let internal reduceFlags op (rank: int) (dims: int[]) =
        let flags = Array.zeroCreate rank

        for d in dims do
            let a = Shape.normAxis op rank d

            if flags[a] then
                Errors.invalidArg op "dims" (sprintf "%A" dims) "distinct axes"

            flags[a] <- true

        flags

    [<RequireQualifiedAccess; CompilationRepresentation(CompilationRepresentationFlags.ModuleSuffix)>]
    module Tensor =
        /// Broadcasts t to <c>shape</c> (NumPy rules; a copy). Backward sums over the stretched axes.
        let expand (shape: int[]) (t: Tensor) = Arith.Expand(t, shape)

        /// Sums g down to <c>shape</c>, the adjoint of broadcasting <c>shape</c> to g's shape.
        let sumTo (shape: int[]) (g: Tensor) = Arith.SumTo(g, shape)

        /// Sum over the given axes; <c>keepDim</c> leaves them as size 1.
        let sumDims (dims: int[]) (keepDim: bool) (t: Tensor) =
            let flags = reduceFlags "Tensor.sumDims" t.Rank dims
            let kept = Arith.SumKeepRaw(t, flags)

            let outShape =
                if keepDim then
                    kept.ShapeRef
                else
                    t.ShapeRef
                    |> Array.indexed
                    |> Array.filter (fun (i, _) -> not flags[i])
                    |> Array.map snd

            let src = t.ShapeRef
            let keptShape = kept.ShapeRef

            Autograd.record (Autograd.view kept outShape) [| t |] (fun g _ ->
                [| expand src (Autograd.view g keptShape) |])

        /// Sum of all elements (rank 0).
        let sum (t: Tensor) = sumDims (Array.init t.Rank id) false t

        /// Sum over one axis (removed).
        let sumDim (dim: int) (t: Tensor) = sumDims [| dim |] false t

        let private scaleRaw (t: Tensor) (s: float32) =
            let r = Autograd.alloc t.ShapeRef

            System.Numerics.Tensors.TensorPrimitives.Multiply(
                ReadOnlySpan(t.Data, t.Offset, t.Numel),
                s,
                Span(r.Data, 0, r.Numel)
            )

            r

        /// Mean over the given axes.
        let meanDims (dims: int[]) (keepDim: bool) (t: Tensor) =
            let flags = reduceFlags "Tensor.meanDims" t.Rank dims

            let n =
                t.ShapeRef
                |> Array.indexed
                |> Array.fold (fun acc (i, d) -> if flags[i] then acc * d else acc) 1

            let s = sumDims dims keepDim t
            let inv = if n = 0 then Single.NaN else 1.0f / float32 n
            Autograd.record (scaleRaw (Autograd.detach s) inv) [| s |] (fun g _ -> [| scaleRaw g inv |])

        /// Mean of all elements (rank 0).
        let mean (t: Tensor) = meanDims (Array.init t.Rank id) false t

        /// Mean over one axis (removed).
        let meanDim (dim: int) (t: Tensor) = meanDims [| dim |] false t

        /// Extremum along one axis: values and the index of the first extremal element (as floats).
        /// The gradient flows to that element only.
        let private extremeDim (op: string) (isMax: bool) (dim: int) (keepDim: bool) (t: Tensor) =
            let shape = t.ShapeRef
            let a = Shape.normAxis op shape.Length dim
            let n = shape[a]

            if n = 0 then
                Errors.invalidArg op "dim" dim "an axis of non-zero length"

            let outer = Shape.numel shape[.. a - 1]
            let inner = Shape.numel shape[a + 1 ..]
            let keptShape = shape |> Array.mapi (fun i d -> if i = a then 1 else d)

            let outShape =
                if keepDim then
                    keptShape
                else
                    Array.append shape[.. a - 1] shape[a + 1 ..]

            let vals = Autograd.alloc outShape
            let idx = Autograd.alloc outShape
            let x = t.Data
            let xo = t.Offset

            for o in 0 .. outer - 1 do
                for i in 0 .. inner - 1 do
                    let mutable best = x[xo + o * n * inner + i]
                    let mutable bi = 0

                    for k in 1 .. n - 1 do
                        let v = x[xo + (o * n + k) * inner + i]

                        if
                            (if isMax then v > best else v < best)
                            || (Single.IsNaN v && not (Single.IsNaN best))
                        then
                            best <- v
                            bi <- k

                    vals.Data[o * inner + i] <- best
                    idx.Data[o * inner + i] <- float32 bi

            let result =
                Autograd.record vals [| t |] (fun g _ ->
                    let gx = Autograd.allocZeros shape

                    for o in 0 .. outer - 1 do
                        for i in 0 .. inner - 1 do
                            let k = int idx.Data[o * inner + i]
                            gx.Data[(o * n + k) * inner + i] <- g.Data[g.Offset + o * inner + i]

                    [| gx |])

            result, idx

        /// Maximum along an axis: (values, indices as floats).
        let maxDim (dim: int) (keepDim: bool) (t: Tensor) =
            extremeDim "Tensor.maxDim" true dim keepDim t

        /// Minimum along an axis: (values, indices as floats).
        let minDim (dim: int) (keepDim: bool) (t: Tensor) =
            extremeDim "Tensor.minDim" false dim keepDim t

        /// Index of the maximum along an axis (first on ties), as floats; not differentiable.
        let argmax (dim: int) (t: Tensor) = snd (maxDim dim false t)

        /// Index of the minimum along an axis, as floats.
        let argmin (dim: int) (t: Tensor) = snd (minDim dim false t)

        /// Largest element (rank 0); its gradient goes to the first maximal element.
        let max (t: Tensor) =
            fst (
                maxDim
                    0
                    false
                    (Autograd.record (Autograd.view (Autograd.detach t) [| t.Numel |]) [| t |] (fun g _ ->
                        [| Autograd.view g t.ShapeRef |]))
            )

        /// Smallest element (rank 0).
        let min (t: Tensor) =
            fst (
                minDim
                    0
                    false
                    (Autograd.record (Autograd.view (Autograd.detach t) [| t.Numel |]) [| t |] (fun g _ ->
                        [| Autograd.view g t.ShapeRef |]))
            )
