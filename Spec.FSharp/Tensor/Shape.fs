namespace SnnSpec

/// Shapes are row-major <c>int[]</c>; rank 0 (<c>[||]</c>) is a scalar.
/// Broadcasting follows NumPy: shapes are right-aligned and a dimension of 1 stretches.
module Shape =
    let numel (shape: int[]) =
        let mutable n = 1

        for d in shape do
            n <- n * d

        n

    /// Row-major strides (in elements) of a contiguous tensor of this shape.
    let strides (shape: int[]) =
        let s = Array.zeroCreate shape.Length
        let mutable acc = 1

        for i in shape.Length - 1 .. -1 .. 0 do
            s[i] <- acc
            acc <- acc * shape[i]

        s

    let check op (shape: int[]) =
        for d in shape do
            if d < 0 then
                Errors.invalidArg op "shape" (Errors.showShape shape) "non-negative dimensions"

    /// Resolves a possibly negative axis against a rank; −1 is the last axis.
    let normAxis op (rank: int) (axis: int) =
        let a = if axis < 0 then axis + rank else axis

        if a < 0 || a >= rank then
            Errors.invalidArg op "dim" axis (sprintf "an axis in [%d, %d] for a rank-%d tensor" (-rank) (rank - 1) rank)

        a

    /// The broadcast shape of two shapes (NumPy rules), or a ShapeMismatchException naming the op.
    let broadcast op (a: int[]) (b: int[]) =
        if a = b then
            a
        else
            let r = max a.Length b.Length
            let out = Array.zeroCreate r

            for i in 0 .. r - 1 do
                let da = if i < r - a.Length then 1 else a[i - (r - a.Length)]
                let db = if i < r - b.Length then 1 else b[i - (r - b.Length)]

                if da = db || db = 1 then
                    out[i] <- da
                elif da = 1 then
                    out[i] <- db
                else
                    Errors.shapeMismatch op [ a; b ] (sprintf "dimension %d is %d vs %d and neither is 1" i da db)

            out

    /// Strides to read a tensor of shape <c>src</c> as if broadcast to <c>dst</c> (0 on stretched axes).
    let broadcastStrides (src: int[]) (dst: int[]) =
        let s = strides src
        let out = Array.zeroCreate dst.Length
        let off = dst.Length - src.Length

        for i in 0 .. dst.Length - 1 do
            if i >= off then
                let j = i - off
                out[i] <- if src[j] = 1 && dst[i] <> 1 then 0 else s[j]

        out

    /// Resolves one −1 in a requested reshape against the element count.
    let resolveReshape op (numelIn: int) (shape: int[]) =
        let unknown = shape |> Array.filter (fun d -> d = -1) |> Array.length

        if unknown > 1 then
            Errors.invalidArg op "shape" (Errors.showShape shape) "at most one -1"

        let known = shape |> Array.fold (fun acc d -> if d = -1 then acc else acc * d) 1

        let resolved =
            if unknown = 1 then
                if known = 0 || numelIn % known <> 0 then
                    Errors.shapeMismatch op [ [| numelIn |]; shape ] "cannot infer the -1 dimension"

                shape |> Array.map (fun d -> if d = -1 then numelIn / known else d)
            else
                shape

        if numel resolved <> numelIn then
            Errors.shapeMismatch
                op
                [ [| numelIn |]; resolved ]
                (sprintf "a tensor of %d elements cannot take this shape" numelIn)

        resolved
