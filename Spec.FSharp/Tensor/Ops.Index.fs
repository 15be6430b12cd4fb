namespace SnnSpec

open System
open SnnSpec.Kernels

/// Indexing with index tensors: gather/scatter-add, index selection, one-hot encoding and top-k.
/// Index tensors hold integers encoded as float32 (the library is float32-only).
[<AutoOpen>]
module IndexOps =
    module internal IndexCheck =
        /// Checks every entry of an index tensor is an integer in [0, bound), else raises an error
        /// naming the op, the bad value and the allowed range (<c>where</c> says what bounds it).
        let validate (op: string) (name: string) (bound: int) (where: string) (index: Tensor) =
            let v = index.Data
            let o = index.Offset

            for i in 0 .. index.Numel - 1 do
                let x = v[o + i]
                // The range test first: it also rejects NaN and values beyond int's range.
                if not (x >= 0.0f && x < float32 bound) || float32 (int x) <> x then
                    Errors.invalidArg op name x (sprintf "an integer in [0, %d) %s" bound where)

        /// Checks index has t's rank and fits inside t on every axis but dim.
        let fits (op: string) (a: int) (t: int[]) (index: int[]) (what: string) =
            if index.Length <> t.Length then
                Errors.shapeMismatch op [ t; index ] (sprintf "the index must have the same rank as %s" what)

            for i in 0 .. t.Length - 1 do
                if i <> a && index[i] > t[i] then
                    Errors.shapeMismatch
                        op
                        [ t; index ]
                        (sprintf "the index is longer than %s on axis %d (%d > %d)" what i index[i] t[i])

    /// Offsets in a tensor with strides <c>strides</c> of every coordinate tuple over the axes
    /// [lo, hi) of shape <c>is</c> (row-major order).
    let private offsets (is: int[]) (strides: int[]) (lo: int) (hi: int) =
        let mutable offs = [| 0 |]

        for ax in lo .. hi - 1 do
            let n = is[ax]
            let st = strides[ax]
            offs <- Array.init (offs.Length * n) (fun k -> offs[k / n] + (k % n) * st)

        offs

    /// out[..., j, ...] = t[..., ix[..., j, ...], ...] along axis a; out has the index shape <c>is</c>.
    let private gatherRaw (a: int) (index: Tensor) (t: Tensor) =
        let is = index.ShapeRef
        let ix = index.Data
        let io = index.Offset
        let r = Autograd.alloc is
        let tStr = Shape.strides t.ShapeRef
        let pre = offsets is tStr 0 a
        let suf = offsets is tStr (a + 1) is.Length
        let m = is[a]
        let inner = suf.Length
        let sa = tStr[a]
        let x = t.Data
        let xo = t.Offset
        let out = r.Data

        Par.forChunks (pre.Length * m) (max 1 (16384 / max 1 inner)) (fun s e ->
            for row in s .. e - 1 do
                let b = xo + pre[row / m]
                let f0 = row * inner

                for i in 0 .. inner - 1 do
                    out[f0 + i] <- x[b + int ix[io + f0 + i] * sa + suf[i]])

        r

    /// acc[..., ix[..., j, ...], ...] += src[..., j, ...] along axis a, in place (acc is fresh);
    /// src has the index shape <c>is</c>.
    let private scatterAddInto (a: int) (index: Tensor) (src: Tensor) (acc: Tensor) =
        let is = index.ShapeRef
        let ix = index.Data
        let io = index.Offset
        let aStr = Shape.strides acc.ShapeRef
        let pre = offsets is aStr 0 a
        let suf = offsets is aStr (a + 1) is.Length
        let m = is[a]
        let inner = suf.Length
        let sa = aStr[a]
        let sd = src.Data
        let so = src.Offset
        let d = acc.Data
        let dOff = acc.Offset
        // Each leading coordinate tuple owns a disjoint block of acc, so those run in parallel.
        Par.forChunks pre.Length (max 1 (16384 / max 1 (m * inner))) (fun s e ->
            for o in s .. e - 1 do
                let b = dOff + pre[o]

                for j in 0 .. m - 1 do
                    let f0 = (o * m + j) * inner

                    for i in 0 .. inner - 1 do
                        let dst = b + int ix[io + f0 + i] * sa + suf[i]
                        d[dst] <- d[dst] + sd[so + f0 + i])

    /// index-add of g's slabs into a zero tensor of shape full: the adjoint of indexSelect.
    let private indexAdd (a: int) (indices: int[]) (full: int[]) (g: Tensor) =
        let r = Autograd.allocZeros full
        let outer = Shape.numel full[.. a - 1]
        let inner = Shape.numel full[a + 1 ..]
        let n = full[a]
        let m = indices.Length
        let gd = g.Data
        let go = g.Offset
        // Parallel over outer slabs: each writes a disjoint part of r.
        Par.forChunks outer (max 1 (16384 / max 1 (m * inner))) (fun s e ->
            for o in s .. e - 1 do
                for j in 0 .. m - 1 do
                    let dst = (o * n + indices[j]) * inner
                    let src = go + (o * m + j) * inner
                    let span = Span(r.Data, dst, inner)
                    Numerics.Tensors.TensorPrimitives.Add(span, ReadOnlySpan(gd, src, inner), span))

        r

    [<RequireQualifiedAccess; CompilationRepresentation(CompilationRepresentationFlags.ModuleSuffix)>]
    module Tensor =
        /// PyTorch's gather: out[i][j][k] = t[index[i][j][k]][j][k] for dim 0 (likewise for other
        /// axes). <c>index</c> holds integers (as floats) in [0, t.shape[dim]), has t's rank and is no
        /// longer than t on the other axes; the result has index's shape. Backward scatter-adds the
        /// gradient into zeros of t's shape; the index gets none.
        let gather (dim: int) (index: Tensor) (t: Tensor) =
            let ts = t.ShapeRef
            let a = Shape.normAxis "Tensor.gather" ts.Length dim
            IndexCheck.fits "Tensor.gather" a ts index.ShapeRef "the input"

            IndexCheck.validate
                "Tensor.gather"
                "index"
                ts[a]
                (sprintf "along dim %d of shape %s" dim (Errors.showShape ts))
                index

            let index = Autograd.detach index
            let r = gatherRaw a index t

            Autograd.record r [| t |] (fun g _ ->
                let acc = Autograd.allocZeros ts
                scatterAddInto a index g acc
                [| acc |])

        /// PyTorch's scatter_add: a copy of t with src[i][j][k] added at t[index[i][j][k]][j][k] for
        /// dim 0 (likewise for other axes); repeated indices accumulate. <c>index</c> has src's shape
        /// and is no longer than t on axes other than dim. Backward: t gets the gradient unchanged,
        /// src gets it gathered at index.
        let scatterAdd (dim: int) (index: Tensor) (src: Tensor) (t: Tensor) =
            let ts = t.ShapeRef
            let a = Shape.normAxis "Tensor.scatterAdd" ts.Length dim

            if index.ShapeRef <> src.ShapeRef then
                Errors.shapeMismatch
                    "Tensor.scatterAdd"
                    [ index.ShapeRef; src.ShapeRef ]
                    "the index must have the shape of src"

            IndexCheck.fits "Tensor.scatterAdd" a ts index.ShapeRef "the target"

            IndexCheck.validate
                "Tensor.scatterAdd"
                "index"
                ts[a]
                (sprintf "along dim %d of shape %s" dim (Errors.showShape ts))
                index

            let index = Autograd.detach index
            let r = Autograd.alloc ts
            Array.Copy(t.Data, t.Offset, r.Data, 0, t.Numel)
            scatterAddInto a index src r

            Autograd.record r [| t; src |] (fun g need ->
                [|
                    (if need[0] then g else Autograd.noGrad)
                    (if need[1] then gatherRaw a index g else Autograd.noGrad)
                |])

        /// The slices of t at the given positions along <c>dim</c>, in that order (repeats allowed;
        /// negative positions count from the end). The axis gets length indices.Length. Backward
        /// adds each gradient slice into its source position (index-add).
        let indexSelect (dim: int) (indices: int[]) (t: Tensor) =
            let ts = t.ShapeRef
            let a = Shape.normAxis "Tensor.indexSelect" ts.Length dim
            let n = ts[a]

            let idx =
                indices
                |> Array.map (fun i ->
                    let k = if i < 0 then i + n else i

                    if k < 0 || k >= n then
                        Errors.invalidArg
                            "Tensor.indexSelect"
                            "index"
                            i
                            (sprintf "an index in [%d, %d) along dim %d of shape %s" (-n) n dim (Errors.showShape ts))

                    k)

            let outShape = Array.updateAt a idx.Length ts
            let r = Autograd.alloc outShape
            let outer = Shape.numel ts[.. a - 1]
            let inner = Shape.numel ts[a + 1 ..]
            let m = idx.Length
            let x = t.Data
            let xo = t.Offset
            let out = r.Data

            Par.forChunks (outer * m) (max 1 (32768 / max 1 inner)) (fun s e ->
                for row in s .. e - 1 do
                    let o = row / m
                    let j = row % m
                    Array.Copy(x, xo + (o * n + idx[j]) * inner, out, row * inner, inner))

            Autograd.record r [| t |] (fun g _ -> [| indexAdd a idx ts g |])

        /// One-hot rows: for labels of shape S (integers as floats in [0, numClasses)) a tensor of
        /// shape S @ [numClasses] with a 1 at each label's class. Not differentiable (a constant).
        let oneHot (numClasses: int) (labels: Tensor) =
            if numClasses <= 0 then
                Errors.invalidArg "Tensor.oneHot" "numClasses" numClasses "a positive number of classes"

            IndexCheck.validate "Tensor.oneHot" "label" numClasses "(the number of classes)" labels
            let r = Autograd.allocZeros (Array.append labels.ShapeRef [| numClasses |])

            for i in 0 .. labels.Numel - 1 do
                r.Data[i * numClasses + int labels.Data[labels.Offset + i]] <- 1.0f

            r

        /// One-hot rows for integer labels: shape [labels.Length; numClasses].
        let oneHotOfInts (numClasses: int) (labels: int[]) =
            labels
            |> Array.iter (fun l ->
                if l < 0 || l >= numClasses then
                    Errors.invalidArg "Tensor.oneHotOfInts" "label" l (sprintf "a class in [0, %d)" numClasses))

            oneHot numClasses (Tensor.ofArray [| labels.Length |] (labels |> Array.map float32))

        /// The k largest (or smallest) entries along <c>dim</c>, sorted (descending for largest,
        /// ascending otherwise; ties keep the lower index first; NaN counts as largest):
        /// (values, indices as floats), both with axis dim of length k. Backward sends each value's
        /// gradient to its source position; the indices are constants.
        let topk (k: int) (dim: int) (largest: bool) (t: Tensor) =
            let ts = t.ShapeRef
            let a = Shape.normAxis "Tensor.topk" ts.Length dim
            let n = ts[a]

            if k < 0 || k > n then
                Errors.invalidArg
                    "Tensor.topk"
                    "k"
                    k
                    (sprintf "a count in [0, %d] (axis %d of shape %s)" n dim (Errors.showShape ts))

            let outer = Shape.numel ts[.. a - 1]
            let inner = Shape.numel ts[a + 1 ..]
            let outShape = Array.updateAt a k ts
            let vals = Autograd.alloc outShape
            let idx = Autograd.alloc outShape
            let x = t.Data
            let xo = t.Offset
            // Whether (vi, i) ranks before (vj, j): by value (NaN largest), ties to the lower index.
            let before (vi: float32) (i: int) (vj: float32) (j: int) =
                let nanI = Single.IsNaN vi
                let nanJ = Single.IsNaN vj

                let c =
                    if nanI || nanJ then
                        (if nanI = nanJ then 0
                         elif nanI then 1
                         else -1)
                    elif vi = vj then
                        0
                    elif vi < vj then
                        -1
                    else
                        1

                let c = if largest then -c else c
                c < 0 || (c = 0 && i < j)

            Par.forChunks (outer * inner) (max 1 (4096 / max 1 n)) (fun s e ->
                let order = Array.zeroCreate n
                let v = Array.zeroCreate n

                for line in s .. e - 1 do
                    let o = line / inner
                    let i = line % inner

                    for j in 0 .. n - 1 do
                        order[j] <- j
                        v[j] <- x[xo + (o * n + j) * inner + i]

                    if k <= 32 then
                        // Insertion into a sorted list of the best k so far: O(n·k) without allocation.
                        let mutable count = 0

                        for j in 0 .. n - 1 do
                            if k > 0 && (count < k || before v[j] j v[order[count - 1]] order[count - 1]) then
                                let mutable p = if count < k then count else k - 1

                                while p > 0 && before v[j] j v[order[p - 1]] order[p - 1] do
                                    order[p] <- order[p - 1]
                                    p <- p - 1

                                order[p] <- j

                                if count < k then
                                    count <- count + 1
                    else
                        Array.Sort(
                            order,
                            Comparison(fun p q ->
                                if p = q then 0
                                elif before v[p] p v[q] q then -1
                                else 1)
                        )

                    for j in 0 .. k - 1 do
                        let dst = (o * k + j) * inner + i
                        vals.Data[dst] <- v[order[j]]
                        idx.Data[dst] <- float32 order[j])

            let values =
                Autograd.record vals [| t |] (fun g _ ->
                    let gx = Autograd.allocZeros ts
                    scatterAddInto a idx g gx
                    [| gx |])

            values, idx
