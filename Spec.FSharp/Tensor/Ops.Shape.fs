namespace SnnSpec

open System
open SnnSpec.Kernels

/// Reshaping, axis permutation, slicing, concatenation and splitting, each differentiable.
[<AutoOpen>]
module ShapeOps =
    /// Copies between strided layouts: the engine behind permute, slicing, flipping and their adjoints.
    module internal StridedCopy =
        /// Drops size-1 axes and merges neighbouring axes that are contiguous in both layouts.
        let coalesce (shape: int[]) (ss: int[]) (ds: int[]) =
            let sh = Collections.Generic.List<int>()
            let s1 = Collections.Generic.List<int>()
            let d1 = Collections.Generic.List<int>()

            for i in 0 .. shape.Length - 1 do
                if shape[i] <> 1 then
                    let last = sh.Count - 1

                    if last >= 0 && s1[last] = ss[i] * shape[i] && d1[last] = ds[i] * shape[i] then
                        sh[last] <- sh[last] * shape[i]
                        s1[last] <- ss[i]
                        d1[last] <- ds[i]
                    else
                        sh.Add shape[i]
                        s1.Add ss[i]
                        d1.Add ds[i]

            if sh.Count = 0 then
                [| 1 |], [| 1 |], [| 1 |]
            else
                sh.ToArray(), s1.ToArray(), d1.ToArray()

        /// Elements per parallel chunk worth a thread.
        [<Literal>]
        let private Grain = 32768

        /// Row by row over the last axis; each row is one Array.Copy when both layouts are contiguous there.
        let private rows
            (src: float32[])
            (so: int)
            (ss: int[])
            (dst: float32[])
            (dOff: int)
            (ds: int[])
            (shape: int[])
            (n: int)
            =
            let r = shape.Length
            let inner = shape[r - 1]
            let sIn = ss[r - 1]
            let dIn = ds[r - 1]
            let outer = n / inner

            Par.forChunks outer (max 1 (Grain / inner)) (fun s e ->
                let idx = Array.zeroCreate (r - 1)
                let mutable rem = s
                let mutable sp = so
                let mutable dp = dOff

                for a in r - 2 .. -1 .. 0 do
                    let c = rem % shape[a]
                    rem <- rem / shape[a]
                    idx[a] <- c
                    sp <- sp + c * ss[a]
                    dp <- dp + c * ds[a]

                for _ in s .. e - 1 do
                    if sIn = 1 && dIn = 1 then
                        Array.Copy(src, sp, dst, dp, inner)
                    else
                        let mutable si = sp
                        let mutable di = dp

                        for _ in 0 .. inner - 1 do
                            dst[di] <- src[si]
                            si <- si + sIn
                            di <- di + dIn

                    let mutable a = r - 2

                    while a >= 0 do
                        idx[a] <- idx[a] + 1
                        sp <- sp + ss[a]
                        dp <- dp + ds[a]

                        if idx[a] = shape[a] then
                            sp <- sp - shape[a] * ss[a]
                            dp <- dp - shape[a] * ds[a]
                            idx[a] <- 0
                            a <- a - 1
                        else
                            a <- -1)

        [<Literal>]
        let private Tile = 32

        /// Transpose-like copies: the source is contiguous along axis p, the destination along the last
        /// axis. Both are walked in Tile×Tile blocks so each cache line is used fully on both sides.
        let private tiled
            (src: float32[])
            (so: int)
            (ss: int[])
            (dst: float32[])
            (dOff: int)
            (ds: int[])
            (shape: int[])
            (p: int)
            =
            let r = shape.Length
            let np = shape[p]
            let nq = shape[r - 1]
            let sq = ss[r - 1]
            let dp = ds[p]

            let others =
                [|
                    for a in 0 .. r - 2 do
                        if a <> p then
                            yield a
                |]

            let outer = others |> Array.fold (fun acc a -> acc * shape[a]) 1
            let bp = (np + Tile - 1) / Tile
            let bq = (nq + Tile - 1) / Tile
            let blocks = outer * bp * bq

            Par.forChunks blocks (max 1 (Grain / (Tile * Tile))) (fun s e ->
                for b in s .. e - 1 do
                    let jq = b % bq
                    let jp = (b / bq) % bp
                    let mutable o = b / (bq * bp)
                    let mutable sBase = so
                    let mutable dBase = dOff

                    for k in others.Length - 1 .. -1 .. 0 do
                        let a = others[k]
                        let c = o % shape[a]
                        o <- o / shape[a]
                        sBase <- sBase + c * ss[a]
                        dBase <- dBase + c * ds[a]

                    let p0 = jp * Tile
                    let p1 = min np (p0 + Tile)
                    let q0 = jq * Tile
                    let q1 = min nq (q0 + Tile)

                    for i in p0 .. p1 - 1 do
                        let mutable si = sBase + i + q0 * sq
                        let mutable di = dBase + i * dp + q0

                        for _ in q0 .. q1 - 1 do
                            dst[di] <- src[si]
                            si <- si + sq
                            di <- di + 1)

        /// Copies the elements of a shape-<c>shape</c> view read with strides <c>ss</c> from
        /// <c>src[so..]</c> into the layout with strides <c>ds</c> at <c>dst[dOff..]</c>.
        /// Strides may be negative; the destination positions must not overlap.
        let copy (src: float32[]) (so: int) (ss: int[]) (dst: float32[]) (dOff: int) (ds: int[]) (shape: int[]) =
            let n = Shape.numel shape

            if n > 0 then
                let shape, ss, ds = coalesce shape ss ds
                let r = shape.Length

                let p =
                    if ds[r - 1] = 1 && ss[r - 1] <> 1 then
                        Array.IndexOf(ss, 1)
                    else
                        -1

                if p >= 0 && p < r - 1 && shape[p] >= 8 && shape[r - 1] >= 8 then
                    tiled src so ss dst dOff ds shape p
                else
                    rows src so ss dst dOff ds shape n

        /// A fresh contiguous tensor holding the strided view of t (base offset relative to t.Offset).
        let gather (t: Tensor) (offset: int) (strides: int[]) (shape: int[]) =
            let r = Autograd.alloc shape
            copy t.Data (t.Offset + offset) strides r.Data 0 (Shape.strides shape) shape
            r

        /// A zero tensor of <c>full</c> shape with g written into its strided view (the adjoint of gather).
        let scatter (g: Tensor) (full: int[]) (offset: int) (strides: int[]) =
            let r = Autograd.allocZeros full
            copy g.Data g.Offset (Shape.strides g.ShapeRef) r.Data offset strides g.ShapeRef
            r

    /// A strided window into a contiguous tensor: the result copies it and its gradient scatters back.
    let internal stridedView (t: Tensor) (offset: int) (strides: int[]) (shape: int[]) =
        let src = t.ShapeRef
        let r = StridedCopy.gather t offset strides shape
        Autograd.record r [| t |] (fun g _ -> [| StridedCopy.scatter g src offset strides |])

    /// Shared-storage reshape; the gradient is reshaped back.
    let internal viewAs (t: Tensor) (shape: int[]) =
        let src = t.ShapeRef

        if src = shape then
            t
        else
            Autograd.record (Autograd.view t shape) [| t |] (fun g _ -> [| Autograd.view g src |])

    /// A zero-copy view of t at <c>offset</c> when the window is one contiguous block of t's memory
    /// (every axis before the sliced one has size 1); <c>strides</c> place the gradient back.
    let internal contiguousWindow (t: Tensor) (offset: int) (strides: int[]) (shape: int[]) =
        let src = t.ShapeRef
        let r = Tensor(t.Storage, t.Offset + offset, shape, null)
        Autograd.record r [| t |] (fun g _ -> [| StridedCopy.scatter g src offset strides |])

    /// Resolves the position of a new axis in a rank-r tensor: [−r−1, r], negative from the end.
    let internal newAxis (op: string) (rank: int) (dim: int) =
        let a = if dim < 0 then dim + rank + 1 else dim

        if a < 0 || a > rank then
            Errors.invalidArg
                op
                "dim"
                dim
                (sprintf "a position for a new axis in [%d, %d] for a rank-%d tensor" (-rank - 1) rank rank)

        a

    let internal checkPermutation (op: string) (rank: int) (perm: int[]) =
        if perm.Length <> rank then
            Errors.invalidArg
                op
                "dims"
                (sprintf "%A" perm)
                (sprintf "a permutation of the %d axes of a rank-%d tensor" rank rank)

        let axes = perm |> Array.map (fun d -> Shape.normAxis op rank d)

        if (Array.distinct axes).Length <> rank then
            Errors.invalidArg
                op
                "dims"
                (sprintf "%A" perm)
                (sprintf "a permutation of 0..%d (each axis once)" (rank - 1))

        axes

    [<RequireQualifiedAccess; CompilationRepresentation(CompilationRepresentationFlags.ModuleSuffix)>]
    module Tensor =
        /// The same elements in another shape (row-major order kept). One dimension may be −1 and is
        /// inferred. No copy: the result shares t's memory. Backward reshapes the gradient back.
        let reshape (shape: int[]) (t: Tensor) =
            let target = Shape.resolveReshape "Tensor.reshape" t.Numel shape
            Shape.check "Tensor.reshape" target
            viewAs t (Array.copy target)

        /// Alias of <c>reshape</c> (tensors are always contiguous, so every reshape is a view).
        let view (shape: int[]) (t: Tensor) = reshape shape t

        /// Merges axes startDim..endDim (inclusive, negative from the end) into one; no copy.
        /// A scalar becomes shape [1]. Backward reshapes back.
        let flatten (startDim: int) (endDim: int) (t: Tensor) =
            let shape = t.ShapeRef

            if shape.Length = 0 then
                viewAs t [| 1 |]
            else
                let s = Shape.normAxis "Tensor.flatten" shape.Length startDim
                let e = Shape.normAxis "Tensor.flatten" shape.Length endDim

                if s > e then
                    Errors.invalidArg
                        "Tensor.flatten"
                        "endDim"
                        endDim
                        (sprintf "an axis at or after startDim = %d" startDim)

                viewAs t (Array.concat [ shape[.. s - 1]; [| Shape.numel shape[s..e] |]; shape[e + 1 ..] ])

        /// Removes every axis of size 1; no copy. Backward reshapes back.
        let squeeze (t: Tensor) =
            viewAs t (t.ShapeRef |> Array.filter (fun d -> d <> 1))

        /// Removes axis <c>dim</c>, which must have size 1; no copy.
        let squeezeDim (dim: int) (t: Tensor) =
            let shape = t.ShapeRef
            let a = Shape.normAxis "Tensor.squeezeDim" shape.Length dim

            if shape[a] <> 1 then
                Errors.shapeMismatch "Tensor.squeezeDim" [ shape ] (sprintf "axis %d has size %d, not 1" dim shape[a])

            viewAs t (Array.removeAt a shape)

        /// Inserts an axis of size 1 at position <c>dim</c> (in [−rank−1, rank]); no copy.
        let unsqueeze (dim: int) (t: Tensor) =
            let shape = t.ShapeRef
            let a = newAxis "Tensor.unsqueeze" shape.Length dim
            viewAs t (Array.insertAt a 1 shape)

        /// Reorders the axes: result axis i is t's axis <c>dims[i]</c>. Copies (tiled for transposes,
        /// parallel when large). Backward permutes the gradient by the inverse permutation.
        let permute (dims: int[]) (t: Tensor) =
            let shape = t.ShapeRef
            let axes = checkPermutation "Tensor.permute" shape.Length dims

            if axes |> Array.mapi (fun i a -> i = a) |> Array.forall id then
                t
            else
                let strides = Shape.strides shape
                stridedView t 0 (axes |> Array.map (fun a -> strides[a])) (axes |> Array.map (fun a -> shape[a]))

        /// Swaps two axes (a copy). Backward swaps them back.
        let transpose (dim0: int) (dim1: int) (t: Tensor) =
            let r = t.Rank
            let a = Shape.normAxis "Tensor.transpose" r dim0
            let b = Shape.normAxis "Tensor.transpose" r dim1
            let perm = Array.init r id
            perm[a] <- b
            perm[b] <- a
            permute perm t

        /// Matrix transpose of a rank-2 tensor; rank 0 and 1 are returned unchanged.
        let t (x: Tensor) =
            match x.Rank with
            | 0
            | 1 -> x
            | 2 -> transpose 0 1 x
            | _ ->
                Errors.invalidArg
                    "Tensor.t"
                    "shape"
                    (Errors.showShape x.ShapeRef)
                    "a tensor of rank at most 2 (use transpose or permute)"

        /// The elements with index in [start, start + length) along <c>dim</c> (negative start counts
        /// from the end). Shares memory when that is one contiguous block (e.g. dim 0), else copies.
        /// Backward writes the gradient into a zero tensor of t's shape.
        let narrow (dim: int) (start: int) (length: int) (t: Tensor) =
            let shape = t.ShapeRef
            let a = Shape.normAxis "Tensor.narrow" shape.Length dim
            let n = shape[a]
            let s = if start < 0 then start + n else start

            if s < 0 || s > n then
                Errors.invalidArg
                    "Tensor.narrow"
                    "start"
                    start
                    (sprintf "a position in [%d, %d] along axis %d of shape %s" (-n) n dim (Errors.showShape shape))

            if length < 0 || s + length > n then
                Errors.invalidArg
                    "Tensor.narrow"
                    "length"
                    length
                    (sprintf
                        "a length in [0, %d] (start %d, axis %d of shape %s)"
                        (n - s)
                        s
                        dim
                        (Errors.showShape shape))

            if s = 0 && length = n then
                t
            else
                let outShape = Array.updateAt a length shape
                let strides = Shape.strides shape

                if Shape.numel shape[.. a - 1] = 1 then
                    contiguousWindow t (s * strides[a]) strides outShape
                else
                    stridedView t (s * strides[a]) strides outShape

        /// Python-style slicing: one (start, stop, step) per leading axis (missing axes are kept
        /// whole). Negative start/stop count from the end and are clamped to the axis like Python;
        /// step must be positive (use <c>flip</c> to reverse). A copy; backward scatters the gradient
        /// into a zero tensor of t's shape.
        let slice (ranges: (int * int * int)[]) (t: Tensor) =
            let shape = t.ShapeRef

            if ranges.Length > shape.Length then
                Errors.invalidArg
                    "Tensor.slice"
                    "ranges"
                    (sprintf "%A" ranges)
                    (sprintf "at most %d ranges for shape %s" shape.Length (Errors.showShape shape))

            let strides = Shape.strides shape
            let outShape = Array.copy shape
            let outStrides = Array.copy strides
            let mutable offset = 0

            for i in 0 .. ranges.Length - 1 do
                let start, stop, step = ranges[i]
                let n = shape[i]

                if step <= 0 then
                    Errors.invalidArg
                        "Tensor.slice"
                        (sprintf "step of axis %d" i)
                        step
                        "a positive step (use Tensor.flip to reverse)"

                let clampPos v =
                    if v < 0 then max 0 (v + n) else min v n

                let s = clampPos start
                let e = max s (clampPos stop)
                outShape[i] <- (e - s + step - 1) / step
                outStrides[i] <- strides[i] * step

                if outShape[i] > 0 then
                    offset <- offset + s * strides[i]

            if outShape = shape then
                t
            else
                stridedView t offset outStrides outShape

        /// The sub-tensor at position <c>index</c> of axis <c>dim</c> (negative counts from the end);
        /// the axis is removed. Backward writes the gradient into that slot of a zero tensor.
        let select (dim: int) (index: int) (t: Tensor) =
            let shape = t.ShapeRef
            let a = Shape.normAxis "Tensor.select" shape.Length dim
            let n = shape[a]
            let i = if index < 0 then index + n else index

            if i < 0 || i >= n then
                Errors.invalidArg
                    "Tensor.select"
                    "index"
                    index
                    (sprintf "an index in [%d, %d) along axis %d of shape %s" (-n) n dim (Errors.showShape shape))

            let outShape = Array.removeAt a shape
            let strides = Shape.strides shape

            if Shape.numel shape[.. a - 1] = 1 then
                contiguousWindow t (i * strides[a]) (Array.removeAt a strides) outShape
            else
                stridedView t (i * strides[a]) (Array.removeAt a strides) outShape

        /// Reverses the order of elements along each of <c>dims</c>. Backward flips the gradient.
        let flip (dims: int[]) (t: Tensor) =
            let shape = t.ShapeRef
            let flags = reduceFlags "Tensor.flip" shape.Length dims
            let strides = Shape.strides shape
            let mutable offset = 0
            let ss = Array.copy strides

            for i in 0 .. shape.Length - 1 do
                if flags[i] && shape[i] > 1 then
                    offset <- offset + (shape[i] - 1) * strides[i]
                    ss[i] <- -strides[i]

            if offset = 0 then t else stridedView t offset ss shape

        /// Joins tensors along an existing axis; all other axes must agree. Backward narrows the
        /// gradient back into one piece per input.
        let cat (dim: int) (tensors: Tensor list) =
            let xs = Array.ofList tensors

            if xs.Length = 0 then
                Errors.invalidArg "Tensor.cat" "tensors" "[]" "at least one tensor"

            let first = xs[0].ShapeRef
            let shapes = xs |> Array.map (fun x -> x.ShapeRef) |> List.ofArray

            if first.Length = 0 then
                Errors.shapeMismatch "Tensor.cat" shapes "scalars cannot be concatenated (unsqueeze or use stack)"

            let a = Shape.normAxis "Tensor.cat" first.Length dim

            for k in 1 .. xs.Length - 1 do
                let s = xs[k].ShapeRef

                if s.Length <> first.Length then
                    Errors.shapeMismatch
                        "Tensor.cat"
                        shapes
                        (sprintf "tensor %d has rank %d, tensor 0 has rank %d" k s.Length first.Length)

                for i in 0 .. s.Length - 1 do
                    if i <> a && s[i] <> first[i] then
                        Errors.shapeMismatch
                            "Tensor.cat"
                            shapes
                            (sprintf
                                "tensor %d differs from tensor 0 on axis %d (%d vs %d); only axis %d may differ"
                                k
                                i
                                s[i]
                                first[i]
                                a)

            if xs.Length = 1 then
                xs[0]
            else
                let sizes = xs |> Array.map (fun x -> x.ShapeRef[a])
                let outShape = Array.updateAt a (Array.sum sizes) first
                let r = Autograd.alloc outShape
                let outStrides = Shape.strides outShape
                let mutable pos = 0
                let starts = Array.zeroCreate xs.Length

                for k in 0 .. xs.Length - 1 do
                    starts[k] <- pos
                    let x = xs[k]

                    StridedCopy.copy
                        x.Data
                        x.Offset
                        (Shape.strides x.ShapeRef)
                        r.Data
                        (pos * outStrides[a])
                        outStrides
                        x.ShapeRef

                    pos <- pos + sizes[k]

                Autograd.record r xs (fun g need ->
                    Array.init xs.Length (fun k ->
                        if need[k] then
                            StridedCopy.gather g (starts[k] * outStrides[a]) outStrides xs[k].ShapeRef
                        else
                            Autograd.noGrad))

        /// Joins same-shaped tensors along a new axis at <c>dim</c> (in [−rank−1, rank]).
        /// Backward selects each input's slot of the gradient.
        let stack (dim: int) (tensors: Tensor list) =
            match tensors with
            | [] -> Errors.invalidArg "Tensor.stack" "tensors" "[]" "at least one tensor"
            | x0 :: _ ->
                let first = x0.ShapeRef

                for x in tensors do
                    if x.ShapeRef <> first then
                        Errors.shapeMismatch
                            "Tensor.stack"
                            (tensors |> List.map (fun x -> x.ShapeRef))
                            "every tensor must have the same shape"

                let a = newAxis "Tensor.stack" first.Length dim
                cat a (tensors |> List.map (unsqueeze a))

        /// Cuts t along <c>dim</c> into consecutive pieces of the given sizes, which must sum to the
        /// axis length. Each piece's gradient is zero-padded back to t's shape.
        let split (sizes: int[]) (dim: int) (t: Tensor) =
            let shape = t.ShapeRef
            let a = Shape.normAxis "Tensor.split" shape.Length dim

            if sizes |> Array.exists (fun s -> s < 0) || Array.sum sizes <> shape[a] then
                Errors.invalidArg
                    "Tensor.split"
                    "sizes"
                    (sprintf "%A" sizes)
                    (sprintf
                        "non-negative sizes summing to %d, the length of axis %d of shape %s"
                        shape[a]
                        dim
                        (Errors.showShape shape))

            let starts = Array.scan (+) 0 sizes
            Array.init sizes.Length (fun k -> narrow a starts[k] sizes[k] t)

        /// Cuts t along <c>dim</c> into exactly <c>n</c> consecutive pieces whose sizes differ by at
        /// most one (the first <c>length % n</c> pieces are one longer; pieces may be empty when
        /// n exceeds the length, as NumPy's array_split). Gradients as <c>split</c>.
        let chunk (n: int) (dim: int) (t: Tensor) =
            let shape = t.ShapeRef

            if n <= 0 then
                Errors.invalidArg "Tensor.chunk" "n" n "a positive number of pieces"

            let a = Shape.normAxis "Tensor.chunk" shape.Length dim
            let len = shape[a]
            split (Array.init n (fun k -> len / n + (if k < len % n then 1 else 0))) a t

        /// Tiles t: axis i is repeated <c>reps[i]</c> times (reps may be longer than the rank; t then
        /// gets leading axes of size 1), like PyTorch's repeat. Backward sums the tiles.
        let repeat (reps: int[]) (t: Tensor) =
            if reps.Length < t.Rank then
                Errors.invalidArg
                    "Tensor.repeat"
                    "reps"
                    (sprintf "%A" reps)
                    (sprintf "at least %d repetition counts for shape %s" t.Rank (Errors.showShape t.ShapeRef))

            if reps |> Array.exists (fun r -> r < 0) then
                Errors.invalidArg "Tensor.repeat" "reps" (sprintf "%A" reps) "non-negative repetition counts"

            let shape = Array.append (Array.create (reps.Length - t.Rank) 1) t.ShapeRef

            let interleaved =
                Array.init (2 * shape.Length) (fun i -> if i % 2 = 0 then 1 else shape[i / 2])

            let expanded =
                Array.init (2 * shape.Length) (fun i -> if i % 2 = 0 then reps[i / 2] else shape[i / 2])

            let outShape = Array.map2 (*) reps shape
            t |> reshape interleaved |> Tensor.expand expanded |> reshape outShape

        /// Alias of <c>repeat</c> (NumPy's name).
        let tile (reps: int[]) (t: Tensor) = repeat reps t

    /// Python-style (start, stop, step) of an F# inclusive range over an axis of length n.
    let internal fsRange (s: int option) (e: int option) (n: int) =
        let e =
            match e with
            | Some e -> (if e < 0 then e + n else e) + 1
            | None -> n

        defaultArg s 0, e, 1

    type Tensor with
        /// <c>t.[a..b]</c>: slices the first axis (inclusive bounds, F# style); see <c>Tensor.slice</c>.
        member t.GetSlice(s0: int option, e0: int option) =
            if t.Rank = 0 then
                Errors.invalidArg "Tensor.GetSlice" "shape" (Errors.showShape t.ShapeRef) "a tensor of rank at least 1"

            Tensor.slice [| fsRange s0 e0 t.ShapeRef[0] |] t

        /// <c>t.[a..b, c..d]</c>: slices the first two axes (inclusive bounds).
        member t.GetSlice(s0: int option, e0: int option, s1: int option, e1: int option) =
            if t.Rank < 2 then
                Errors.invalidArg "Tensor.GetSlice" "shape" (Errors.showShape t.ShapeRef) "a tensor of rank at least 2"

            Tensor.slice [| fsRange s0 e0 t.ShapeRef[0]; fsRange s1 e1 t.ShapeRef[1] |] t

        /// <c>t.[i, c..d]</c>: selects index i of the first axis, then slices the next.
        member t.GetSlice(i0: int, s1: int option, e1: int option) =
            let row = Tensor.select 0 i0 t
            row.GetSlice(s1, e1)

        /// <c>t.[a..b, j]</c>: slices the first axis, then selects index j of the second.
        member t.GetSlice(s0: int option, e0: int option, i1: int) =
            let rows: Tensor = t.GetSlice(s0, e0)
            Tensor.select 1 i1 rows
