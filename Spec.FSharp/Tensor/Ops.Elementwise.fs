namespace SnnSpec

open System
open SnnSpec.Kernels

/// Elementwise arithmetic with NumPy broadcasting, unary math, comparisons and selection.
[<AutoOpen>]
module ElementwiseOps =
    module internal ElementwiseRaw =
        let binary (op: string) (code: BinaryOp) (a: Tensor) (b: Tensor) =
            let shape = Shape.broadcast op a.ShapeRef b.ShapeRef
            let r = Autograd.alloc (Array.copy shape)
            Elementwise.binary code a.Data a.Offset a.ShapeRef b.Data b.Offset b.ShapeRef r.Data 0 shape
            r

        let withScalar (code: BinaryOp) (a: Tensor) (s: float32) =
            let r = Autograd.alloc a.ShapeRef
            Elementwise.spanScalar code a.Data a.Offset s r.Data 0 a.Numel
            r

        let unary (t: Tensor) (op: UnaryOp) =
            let r = Autograd.alloc t.ShapeRef
            Elementwise.unary op t.Data t.Offset r.Data 0 t.Numel
            r

        /// out[i] = f(x[i]) with a scalar function (for ops TensorPrimitives lacks).
        let inline map (t: Tensor) ([<InlineIfLambda>] f: float32 -> float32) =
            let r = Autograd.alloc t.ShapeRef
            let data = t.Data
            let off = t.Offset
            let out = r.Data

            Par.forChunks t.Numel 32768 (fun s e ->
                for i in s .. e - 1 do
                    out[i] <- f data[off + i])

            r

        /// out[i] = f(x[i], y[i]) for same-shape tensors.
        let inline map2 (x: Tensor) (y: Tensor) ([<InlineIfLambda>] f: float32 -> float32 -> float32) =
            let r = Autograd.alloc x.ShapeRef
            let xd = x.Data
            let xo = x.Offset
            let yd = y.Data
            let yo = y.Offset
            let out = r.Data

            Par.forChunks x.Numel 32768 (fun s e ->
                for i in s .. e - 1 do
                    out[i] <- f xd[xo + i] yd[yo + i])

            r

    [<RequireQualifiedAccess; CompilationRepresentation(CompilationRepresentationFlags.ModuleSuffix)>]
    module Tensor =
        let add (a: Tensor) (b: Tensor) = a + b
        let sub (a: Tensor) (b: Tensor) = a - b
        let mul (a: Tensor) (b: Tensor) = a * b
        let div (a: Tensor) (b: Tensor) = a / b
        let neg (a: Tensor) = -a
        let pow (exponent: float32) (a: Tensor) = Tensor.Pow(a, exponent)
        let powT (a: Tensor) (b: Tensor) = Tensor.Pow(a, b)
        /// Natural logarithm.
        let log (a: Tensor) = Arith.Log a

        /// eˣ.
        let exp (a: Tensor) =
            let r = ElementwiseRaw.unary a UnaryOp.Exp
            Autograd.record r [| a |] (fun g _ -> [| g * r |])

        /// log(1 + x), accurate near 0.
        let log1p (a: Tensor) =
            let a0 = Autograd.detach a
            Autograd.record (ElementwiseRaw.unary a UnaryOp.Log1p) [| a |] (fun g _ -> [| g / (a0 + 1.0f) |])

        /// tanh x; derivative 1 − tanh²x.
        let tanh (a: Tensor) =
            let r = ElementwiseRaw.unary a UnaryOp.Tanh
            Autograd.record r [| a |] (fun g _ -> [| g * (1.0f - r * r) |])

        /// σ(x) = 1/(1+e^−x); derivative σ(1−σ).
        let sigmoid (a: Tensor) =
            let r = ElementwiseRaw.unary a UnaryOp.Sigmoid
            Autograd.record r [| a |] (fun g _ -> [| g * r * (1.0f - r) |])

        /// max(x, 0); the derivative at 0 is taken as 0.
        let relu (a: Tensor) =
            let a0 = Autograd.detach a
            let r = ElementwiseRaw.unary a UnaryOp.Relu

            Autograd.record r [| a |] (fun g _ ->
                [| ElementwiseRaw.map2 g a0 (fun gv xv -> if xv > 0.0f then gv else 0.0f) |])

        /// |x|; the derivative at 0 is taken as 0.
        let abs (a: Tensor) =
            let a0 = Autograd.detach a

            Autograd.record (ElementwiseRaw.unary a UnaryOp.Abs) [| a |] (fun g _ ->
                [|
                    ElementwiseRaw.map2 g a0 (fun gv xv ->
                        if xv > 0.0f then gv
                        elif xv < 0.0f then -gv
                        else 0.0f)
                |])

        /// sign x ∈ {−1, 0, 1}; zero gradient.
        let sign (a: Tensor) =
            ElementwiseRaw.map (Autograd.detach a) (fun x -> float32 (MathF.Sign x))

        /// √x; derivative 1/(2√x).
        let sqrt (a: Tensor) =
            let r = ElementwiseRaw.unary a UnaryOp.Sqrt
            Autograd.record r [| a |] (fun g _ -> [| g / (r * 2.0f) |])

        /// x².
        let square (a: Tensor) = a * a

        /// sin x.
        let sin (a: Tensor) =
            let a0 = Autograd.detach a

            Autograd.record (ElementwiseRaw.unary a UnaryOp.Sin) [| a |] (fun g _ ->
                [| g * ElementwiseRaw.unary a0 UnaryOp.Cos |])

        /// cos x.
        let cos (a: Tensor) =
            let a0 = Autograd.detach a

            Autograd.record (ElementwiseRaw.unary a UnaryOp.Cos) [| a |] (fun g _ ->
                [| -(g * ElementwiseRaw.unary a0 UnaryOp.Sin) |])

        /// Clamp to [lo, hi]; the gradient passes inside the range (boundaries included) and is 0 outside.
        let clamp (lo: float32) (hi: float32) (a: Tensor) =
            if lo > hi then
                Errors.invalidArg "Tensor.clamp" "lo" lo (sprintf "lo <= hi (hi = %g)" hi)

            let a0 = Autograd.detach a

            Autograd.record (ElementwiseRaw.map a (fun x -> Math.Clamp(x, lo, hi))) [| a |] (fun g _ ->
                [|
                    ElementwiseRaw.map2 g a0 (fun gv xv -> if xv >= lo && xv <= hi then gv else 0.0f)
                |])

        /// Round half to even; zero gradient almost everywhere.
        let round (a: Tensor) =
            ElementwiseRaw.unary (Autograd.detach a) UnaryOp.Round

        /// Round half to even with the straight-through estimator: the gradient passes unchanged.
        let roundSte (a: Tensor) =
            Autograd.record (ElementwiseRaw.unary a UnaryOp.Round) [| a |] (fun g _ -> [| g |])

        /// Floor; zero gradient.
        let floor (a: Tensor) =
            ElementwiseRaw.unary (Autograd.detach a) UnaryOp.Floor

        /// Elementwise maximum; ties send the gradient to a.
        let maximum (a: Tensor) (b: Tensor) =
            let sa, sb = a.ShapeRef, b.ShapeRef
            let a0, b0 = Autograd.detach a, Autograd.detach b
            let r = ElementwiseRaw.binary "maximum" BinaryOp.Max a b

            Autograd.record r [| a; b |] (fun g need ->
                let mask = ElementwiseRaw.binary "maximum" BinaryOp.Ge a0 b0

                [|
                    (if need[0] then
                         Tensor.sumTo sa (g * mask)
                     else
                         Autograd.noGrad)
                    (if need[1] then
                         Tensor.sumTo sb (g * (1.0f - mask))
                     else
                         Autograd.noGrad)
                |])

        /// Elementwise minimum; ties send the gradient to a.
        let minimum (a: Tensor) (b: Tensor) =
            let sa, sb = a.ShapeRef, b.ShapeRef
            let a0, b0 = Autograd.detach a, Autograd.detach b
            let r = ElementwiseRaw.binary "minimum" BinaryOp.Min a b

            Autograd.record r [| a; b |] (fun g need ->
                let mask = ElementwiseRaw.binary "minimum" BinaryOp.Le a0 b0

                [|
                    (if need[0] then
                         Tensor.sumTo sa (g * mask)
                     else
                         Autograd.noGrad)
                    (if need[1] then
                         Tensor.sumTo sb (g * (1.0f - mask))
                     else
                         Autograd.noGrad)
                |])

        /// 1 where a > b else 0 (broadcasting; not differentiable).
        let gt (a: Tensor) (b: Tensor) =
            ElementwiseRaw.binary "gt" BinaryOp.Gt a b

        /// 1 where a ≥ b else 0.
        let ge (a: Tensor) (b: Tensor) =
            ElementwiseRaw.binary "ge" BinaryOp.Ge a b

        /// 1 where a < b else 0.
        let lt (a: Tensor) (b: Tensor) =
            ElementwiseRaw.binary "lt" BinaryOp.Lt a b

        /// 1 where a ≤ b else 0.
        let le (a: Tensor) (b: Tensor) =
            ElementwiseRaw.binary "le" BinaryOp.Le a b

        /// 1 where a = b else 0.
        let eq (a: Tensor) (b: Tensor) =
            ElementwiseRaw.binary "eq" BinaryOp.Eq a b

        /// 1 where a ≠ b else 0.
        let ne (a: Tensor) (b: Tensor) =
            ElementwiseRaw.binary "ne" BinaryOp.Ne a b

        /// 1 where a > s else 0.
        let gtScalar (s: float32) (a: Tensor) =
            ElementwiseRaw.withScalar BinaryOp.Gt a s

        /// 1 where a ≥ s else 0.
        let geScalar (s: float32) (a: Tensor) =
            ElementwiseRaw.withScalar BinaryOp.Ge a s

        /// Picks a where cond ≠ 0 and b elsewhere (all three broadcast together). Values of the
        /// branch not taken never reach the result; its gradient there is 0, which the chain rule
        /// still multiplies by that branch's own derivative (e.g. √x at 0 gives 0·∞ = NaN, as in
        /// other frameworks): guard the branch's input, not only its output.
        let where (cond: Tensor) (a: Tensor) (b: Tensor) =
            let c = ElementwiseRaw.withScalar BinaryOp.Ne (Autograd.detach cond) 0.0f

            let shape =
                Shape.broadcast "Tensor.where" (Shape.broadcast "Tensor.where" c.ShapeRef a.ShapeRef) b.ShapeRef

            let cE = Tensor.expand shape c
            let aE, bE = Tensor.expand shape a, Tensor.expand shape b
            let r = Autograd.alloc (Array.copy shape)
            let cd, ad, bd, rd = cE.Data, aE.Data, bE.Data, r.Data
            let co, ao, bo = cE.Offset, aE.Offset, bE.Offset

            // A select, not a·c + b·(1 − c): an inf or NaN in the branch not taken must not leak.
            for i in 0 .. r.Numel - 1 do
                rd[i] <- if cd[co + i] <> 0.0f then ad[ao + i] else bd[bo + i]

            let mask = Autograd.detach cE

            Autograd.record r [| aE; bE |] (fun g need ->
                [|
                    (if need[0] then g * mask else Autograd.noGrad)
                    (if need[1] then g * (1.0f - mask) else Autograd.noGrad)
                |])

        /// True when every element is finite (no NaN or ±Inf).
        let isFinite (a: Tensor) =
            let span = ReadOnlySpan(a.Data, a.Offset, a.Numel)
            System.Numerics.Tensors.TensorPrimitives.IsFiniteAll span

        /// Sample variance over axes: Σ(x − x̄)² / (n − 1) when unbiased, / n otherwise.
        let varDims (dims: int[]) (unbiased: bool) (keepDim: bool) (a: Tensor) =
            let flags = reduceFlags "Tensor.varDims" a.Rank dims

            let n =
                a.ShapeRef
                |> Array.indexed
                |> Array.fold (fun acc (i, d) -> if flags[i] then acc * d else acc) 1

            let centred = a - Tensor.meanDims dims true a
            let ss = Tensor.sumDims dims keepDim (centred * centred)
            ss / float32 (if unbiased then n - 1 else n)

        /// Variance of all elements.
        let var (unbiased: bool) (a: Tensor) =
            varDims (Array.init a.Rank id) unbiased false a
