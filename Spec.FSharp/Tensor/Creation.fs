namespace SnnSpec

open System
open SnnSpec.Kernels

/// Creating tensors: constants, ranges, identity, and random tensors from an explicit <see cref="Rng"/> key.
[<AutoOpen>]
module CreationOps =
    [<RequireQualifiedAccess; CompilationRepresentation(CompilationRepresentationFlags.ModuleSuffix)>]
    module Tensor =
        let private filled (op: string) (shape: int[]) (v: float32) =
            Shape.check op shape
            let t = Autograd.alloc (Array.copy shape)
            Array.Fill(t.Data, v, 0, t.Numel)
            t

        /// A tensor of the given shape filled with <c>value</c>.
        let full (shape: int[]) (value: float32) = filled "Tensor.full" shape value

        /// A tensor of zeros.
        let zeros (shape: int[]) = filled "Tensor.zeros" shape 0.0f

        /// A tensor of ones.
        let ones (shape: int[]) = filled "Tensor.ones" shape 1.0f

        /// A rank-0 tensor.
        let scalar (value: float32) = filled "Tensor.scalar" [||] value

        /// A tensor of the given shape holding a copy of <c>data</c> (row-major).
        let ofArray (shape: int[]) (data: float32[]) =
            Shape.check "Tensor.ofArray" shape

            if Shape.numel shape <> data.Length then
                Errors.shapeMismatch
                    "Tensor.ofArray"
                    [ shape; [| data.Length |] ]
                    "the shape's element count differs from the data length"

            let t = Autograd.alloc (Array.copy shape)
            Array.Copy(data, t.Data, data.Length)
            t

        /// A rank-1 tensor from values.
        let ofSeq (values: seq<float32>) =
            let a = Array.ofSeq values
            ofArray [| a.Length |] a

        /// A rank-2 tensor from rows of equal length.
        let ofArray2D (rows: float32[][]) =
            let n = rows.Length
            let m = if n = 0 then 0 else rows[0].Length

            rows
            |> Array.iteri (fun i r ->
                if r.Length <> m then
                    Errors.shapeMismatch
                        "Tensor.ofArray2D"
                        [ [| m |]; [| r.Length |] ]
                        (sprintf "row %d has a different length from row 0" i))

            ofArray [| n; m |] (Array.concat rows)

        /// A tensor shaped like <c>t</c> filled with <c>value</c>.
        let fullLike (t: Tensor) (value: float32) = full t.ShapeRef value

        /// Zeros shaped like <c>t</c>.
        let zerosLike (t: Tensor) = zeros t.ShapeRef

        /// Ones shaped like <c>t</c>.
        let onesLike (t: Tensor) = ones t.ShapeRef

        /// [start, start+step, …) below <c>stop</c> (rank 1).
        let arange (start: float32) (stop: float32) (step: float32) =
            if step = 0.0f || Single.IsNaN step then
                Errors.invalidArg "Tensor.arange" "step" step "a non-zero finite step"

            let n = max 0 (int (Math.Ceiling(float (stop - start) / float step)))
            let t = Autograd.alloc [| n |]

            for i in 0 .. n - 1 do
                t.Data[i] <- start + float32 i * step

            t

        /// <c>count</c> evenly spaced values from <c>start</c> to <c>stop</c> inclusive.
        let linspace (start: float32) (stop: float32) (count: int) =
            if count < 0 then
                Errors.invalidArg "Tensor.linspace" "count" count "a non-negative count"

            let t = Autograd.alloc [| count |]

            for i in 0 .. count - 1 do
                t.Data[i] <-
                    if count = 1 then
                        start
                    else
                        float32 (float start + (float stop - float start) * float i / float (count - 1))

            t

        /// The n×n identity matrix.
        let eye (n: int) =
            let t = zeros [| n; n |]

            for i in 0 .. n - 1 do
                t.Data[i * n + i] <- 1.0f

            t

        let private sample (op: string) (shape: int[]) (draw: int64 -> float32) =
            Shape.check op shape
            let t = Autograd.alloc (Array.copy shape)
            let data = t.Data

            Par.forChunks t.Numel 16384 (fun s e ->
                for i in s .. e - 1 do
                    data[i] <- draw (int64 i))

            t

        /// Uniform draws in [0, 1) from key <c>rng</c>: the same key always gives the same tensor.
        let rand (rng: Rng) (shape: int[]) =
            sample "Tensor.rand" shape (Rng.uniform rng)

        /// Standard normal draws from key <c>rng</c>.
        let randn (rng: Rng) (shape: int[]) =
            sample "Tensor.randn" shape (Rng.normal rng)

        /// Uniform draws in [low, high).
        let uniform (rng: Rng) (low: float32) (high: float32) (shape: int[]) =
            sample "Tensor.uniform" shape (fun i -> low + (high - low) * Rng.uniform rng i)

        /// Bernoulli draws: 1 with probability p, else 0.
        let bernoulli (rng: Rng) (p: float32) (shape: int[]) =
            if not (p >= 0.0f && p <= 1.0f) then
                Errors.invalidArg "Tensor.bernoulli" "p" p "a probability in [0, 1]"

            sample "Tensor.bernoulli" shape (fun i -> if Rng.uniform rng i < p then 1.0f else 0.0f)

        /// Random integers in [0, n) as floats.
        let randint (rng: Rng) (n: int) (shape: int[]) =
            sample "Tensor.randint" shape (fun i -> float32 (Rng.intBelow rng i n))
