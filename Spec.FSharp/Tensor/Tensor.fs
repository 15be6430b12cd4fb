namespace SnnSpec

open System
open System.Collections.Generic
open SnnSpec.Kernels

/// A dense float32 tensor of any rank, row-major and contiguous, immutable to callers.
/// Reshaped views share memory; every other operation makes a new tensor. A tensor may carry a
/// node of the reverse-mode tape that is recording (inside <c>Diff.valueAndGrad</c> and friends).
[<Sealed>]
type Tensor internal (storage: Storage, offset: int, shape: int[], node: Node) =
    let numel = Shape.numel shape

    member internal _.Storage = storage
    member internal _.Offset = offset
    /// The shape array itself, for internal use without a copy.
    member internal _.ShapeRef = shape
    member internal _.Node = node
    /// The raw array behind the tensor (elements start at <c>Offset</c>).
    member internal _.Data = storage.Data

    /// The dimensions, outermost first.
    member _.Shape = Array.copy shape
    /// Number of dimensions (0 for a scalar).
    member _.Rank = shape.Length
    /// Number of elements.
    member _.Numel = numel
    /// True when this tensor is being recorded by a gradient tape.
    member _.IsTracked = not (isNull node)

    /// The elements, row-major, as a fresh array.
    member t.ToArray() = Array.sub t.Data offset numel

    /// The value of a one-element tensor.
    member t.ToScalar() : float32 =
        if numel <> 1 then
            Errors.invalidArg "Tensor.ToScalar" "shape" (Errors.showShape shape) "a tensor with exactly one element"

        t.Data[offset]

    /// The element at a full index (one coordinate per axis; negative counts from the end).
    member t.Item
        with get (index: int[]) =
            if index.Length <> shape.Length then
                Errors.invalidArg
                    "Tensor.Item"
                    "index"
                    (sprintf "%A" index)
                    (sprintf "%d coordinates for shape %s" shape.Length (Errors.showShape shape))

            let mutable flat = 0

            for i in 0 .. shape.Length - 1 do
                let c = if index[i] < 0 then index[i] + shape[i] else index[i]

                if c < 0 || c >= shape[i] then
                    Errors.invalidArg
                        "Tensor.Item"
                        (sprintf "index[%d]" i)
                        index[i]
                        (sprintf "a coordinate in [%d, %d)" (-shape[i]) shape[i])

                flat <- flat * shape[i] + c

            t.Data[offset + flat]

    override t.Equals(o: obj) =
        match o with
        | :? Tensor as u ->
            shape = u.ShapeRef
            && ReadOnlySpan(t.Data, offset, numel).SequenceEqual(ReadOnlySpan(u.Data, u.Offset, numel))
        | _ -> false

    override t.GetHashCode() =
        let mutable h = HashCode()

        for d in shape do
            h.Add d

        for i in 0 .. min numel 16 - 1 do
            h.Add(t.Data[offset + i])

        h.ToHashCode()

    override t.ToString() = Printer.format t

    /// Elementwise negation.
    static member (~-)(t: Tensor) = Arith.Scale(t, -1.0f)
    /// a + b with NumPy broadcasting.
    static member (+)(a: Tensor, b: Tensor) = Arith.Binary(BinaryOp.Add, a, b)
    /// a − b with broadcasting.
    static member (-)(a: Tensor, b: Tensor) = Arith.Binary(BinaryOp.Sub, a, b)
    /// a ⊙ b with broadcasting.
    static member (*)(a: Tensor, b: Tensor) = Arith.Binary(BinaryOp.Mul, a, b)
    /// a ⊘ b with broadcasting.
    static member (/)(a: Tensor, b: Tensor) = Arith.Binary(BinaryOp.Div, a, b)
    static member (+)(a: Tensor, s: float32) = Arith.Shift(a, s)
    static member (+)(s: float32, a: Tensor) = Arith.Shift(a, s)
    static member (-)(a: Tensor, s: float32) = Arith.Shift(a, -s)
    static member (-)(s: float32, a: Tensor) = Arith.Shift(Arith.Scale(a, -1.0f), s)
    static member (*)(a: Tensor, s: float32) = Arith.Scale(a, s)
    static member (*)(s: float32, a: Tensor) = Arith.Scale(a, s)

    static member (/)(a: Tensor, s: float32) =
        if Single.IsNormal(1.0f / s) then
            Arith.Scale(a, 1.0f / s)
        else
            Arith.Binary(BinaryOp.Div, a, Arith.Constant s)

    static member (/)(s: float32, a: Tensor) =
        Arith.Binary(BinaryOp.Div, Arith.Constant(s), a)

    /// Elementwise power aᵇ with broadcasting (a > 0 wherever b is differentiated).
    static member Pow(a: Tensor, b: Tensor) = Arith.Binary(BinaryOp.Pow, a, b)
    /// Elementwise power aˢ.
    static member Pow(a: Tensor, s: float32) = Arith.PowScalar(a, s)

    /// Formatted for F# Interactive.
    member t.Display = t.ToString()

/// The backward rule of an op: given the gradient of the output and which inputs need one,
/// returns a gradient per input (shape equal to that input) or <c>Unchecked.defaultof</c> where unneeded.
and BackwardRule = Tensor -> bool[] -> Tensor[]

/// A recorded operation: its inputs and backward rule; leaves have no rule.
and [<Sealed; AllowNullLiteral>] Node internal (tape: Tape, inputs: Tensor[], backward: BackwardRule option) =
    member val internal Grad: Tensor = Unchecked.defaultof<Tensor> with get, set
    /// True when Grad was allocated here and may be accumulated in place.
    member val internal GradOwned = false with get, set
    member internal _.Tape = tape
    member internal _.Inputs = inputs
    member internal _.Backward = backward
    /// For an op with several outputs: the nodes that carry each output's gradient.
    member val internal Outputs: Node[] = null with get, set
    /// The backward rule of a several-output op: gradients per output (null where none) → per input.
    member val internal MultiRule: Tensor[] -> bool[] -> Tensor[] = Unchecked.defaultof<_> with get, set

/// The reverse-mode tape of one differentiation: nodes in creation order.
and [<Sealed; AllowNullLiteral>] Tape internal () =
    [<ThreadStatic; DefaultValue>]
    static val mutable private current: Tape

    member val internal Nodes = List<Node>()

    static member internal Current
        with get () = Tape.current
        and set v = Tape.current <- v

    static member internal IsTrackedOn (tape: Tape) (t: Tensor) =
        not (isNull t.Node) && Object.ReferenceEquals(t.Node.Tape, tape)

    /// A new untracked tensor of this shape with unspecified contents (pooled inside a scope).
    static member internal Alloc(shape: int[]) =
        Tensor(StorageAlloc.uninit (Shape.numel shape), 0, shape, null)

    /// Attaches rule to result when any input is tracked by the recording tape.
    static member internal Record (result: Tensor) (inputs: Tensor[]) (rule: BackwardRule) : Tensor =
        let tape = Tape.current

        if isNull tape || not (Array.exists (Tape.IsTrackedOn tape) inputs) then
            result
        else
            let n = Node(tape, inputs, Some rule)
            tape.Nodes.Add n
            Tensor(result.Storage, result.Offset, result.ShapeRef, n)

/// The arithmetic behind Tensor's operators and the broadcast/unbroadcast pair backward rules use.
and internal Arith =
    static member Constant(v: float32) =
        let r = Tape.Alloc [||]
        r.Data[0] <- v
        r

    /// Sums over the axes flagged in reduce; the result keeps every axis (reduced ones as 1). Untracked.
    static member SumKeepRaw(t: Tensor, reduce: bool[]) =
        let shape = t.ShapeRef
        let outShape = shape |> Array.mapi (fun i d -> if reduce[i] then 1 else d)
        let mutable cur = t
        let mutable curShape = Array.copy shape
        let mutable i = shape.Length - 1
        // One contiguous run of flagged axes at a time, innermost first.
        while i >= 0 do
            if reduce[i] && curShape[i] <> 1 then
                let mutable j = i

                while j > 0 && reduce[j - 1] do
                    j <- j - 1

                let outer = Shape.numel curShape[.. j - 1]
                let r = Shape.numel curShape[j..i]
                let inner = Shape.numel curShape[i + 1 ..]

                let nextShape =
                    curShape |> Array.mapi (fun k d -> if k >= j && k <= i then 1 else d)

                let next = Tape.Alloc nextShape
                Reduce.sumMiddle cur.Data cur.Offset outer r inner next.Data 0
                cur <- next
                curShape <- nextShape
                i <- j - 1
            else
                i <- i - 1

        if Object.ReferenceEquals(cur, t) then
            let c = Tape.Alloc outShape
            Array.Copy(t.Data, t.Offset, c.Data, 0, t.Numel)
            c
        else
            Tensor(cur.Storage, cur.Offset, outShape, null)

    /// t broadcast to shape (a copy), differentiable; backward sums over the stretched axes.
    static member Expand(t: Tensor, shape: int[]) : Tensor =
        let target = Shape.broadcast "Tensor.expand" t.ShapeRef shape

        if target <> shape then
            Errors.shapeMismatch
                "Tensor.expand"
                [ t.ShapeRef; shape ]
                "the tensor cannot be broadcast to the requested shape"

        if t.ShapeRef = shape then
            t
        else
            let r = Tape.Alloc(Array.copy shape)
            Elementwise.binary BinaryOp.Add t.Data t.Offset t.ShapeRef [| 0.0f |] 0 [||] r.Data 0 shape
            let src = t.ShapeRef
            Tape.Record r [| t |] (fun g _ -> [| Arith.SumTo(g, src) |])

    /// g summed down to shape, the adjoint of broadcasting shape to g's shape; differentiable.
    static member SumTo(g: Tensor, shape: int[]) : Tensor =
        let gs = g.ShapeRef

        if gs = shape then
            g
        else
            let lead = gs.Length - shape.Length

            if lead < 0 then
                Errors.shapeMismatch "Tensor.sumTo" [ gs; shape ] "the target has more axes than the tensor"

            let flags =
                gs
                |> Array.mapi (fun i d ->
                    if i < lead then
                        true
                    else
                        let s = shape[i - lead]

                        if s = d then
                            false
                        elif s = 1 then
                            true
                        else
                            Errors.shapeMismatch
                                "Tensor.sumTo"
                                [ gs; shape ]
                                (sprintf "axis %d is %d, target %d" i d s))

            let summed = Arith.SumKeepRaw(g, flags)
            let result = Tensor(summed.Storage, summed.Offset, Array.copy shape, null)
            Tape.Record result [| g |] (fun gg _ -> [| Arith.Expand(gg, gs) |])

    static member private Untracked(t: Tensor) =
        Tensor(t.Storage, t.Offset, t.ShapeRef, null)

    static member Binary(code: BinaryOp, a: Tensor, b: Tensor) : Tensor =
        let name =
            match code with
            | BinaryOp.Add -> "add"
            | BinaryOp.Sub -> "sub"
            | BinaryOp.Mul -> "mul"
            | BinaryOp.Div -> "div"
            | _ -> "pow"

        let shape = Shape.broadcast name a.ShapeRef b.ShapeRef
        let r = Tape.Alloc(Array.copy shape)
        Elementwise.binary code a.Data a.Offset a.ShapeRef b.Data b.Offset b.ShapeRef r.Data 0 shape
        let sa, sb = a.ShapeRef, b.ShapeRef
        let a0, b0 = Arith.Untracked a, Arith.Untracked b
        let none = Unchecked.defaultof<Tensor>

        Tape.Record r [| a; b |] (fun g need ->
            let ga, gb =
                match code with
                | BinaryOp.Add -> (fun () -> g), (fun () -> g)
                | BinaryOp.Sub -> (fun () -> g), (fun () -> -g)
                | BinaryOp.Mul -> (fun () -> g * b0), (fun () -> g * a0)
                | BinaryOp.Div -> (fun () -> g / b0), (fun () -> -(g * a0) / (b0 * b0))
                | _ -> (fun () -> g * b0 * Tensor.Pow(a0, b0 - 1.0f)), (fun () -> g * Arith.Untracked r * Arith.Log a0)

            [|
                (if need[0] then Arith.SumTo(ga (), sa) else none)
                (if need[1] then Arith.SumTo(gb (), sb) else none)
            |])

    static member Scale(a: Tensor, s: float32) : Tensor =
        let r = Tape.Alloc a.ShapeRef
        Elementwise.spanScalar BinaryOp.Mul a.Data a.Offset s r.Data 0 a.Numel
        Tape.Record r [| a |] (fun g _ -> [| Arith.Scale(g, s) |])

    static member Shift(a: Tensor, s: float32) : Tensor =
        let r = Tape.Alloc a.ShapeRef
        Elementwise.spanScalar BinaryOp.Add a.Data a.Offset s r.Data 0 a.Numel
        Tape.Record r [| a |] (fun g _ -> [| g |])

    static member PowScalar(a: Tensor, s: float32) : Tensor =
        let r = Tape.Alloc a.ShapeRef
        Elementwise.spanScalar BinaryOp.Pow a.Data a.Offset s r.Data 0 a.Numel
        let a0 = Arith.Untracked a
        Tape.Record r [| a |] (fun g _ -> [| g * s * Arith.PowScalar(a0, s - 1.0f) |])

    /// Natural logarithm; derivative 1/x.
    static member Log(a: Tensor) : Tensor =
        let r = Tape.Alloc a.ShapeRef
        Numerics.Tensors.TensorPrimitives.Log(ReadOnlySpan(a.Data, a.Offset, a.Numel), Span(r.Data, 0, r.Numel))
        let a0 = Arith.Untracked a
        Tape.Record r [| a |] (fun g _ -> [| g / a0 |])

/// Renders tensors for F# Interactive and ToString: shape, then values with nested brackets,
/// eliding the middle of long axes.
and internal Printer =
    static member format(t: Tensor) =
        if t.Storage.IsReleased then
            sprintf "tensor(shape=%s, released)" (Errors.showShape t.ShapeRef)
        else
            let sb = Text.StringBuilder()
            let shape = t.ShapeRef
            let data = t.Data
            let strides = Shape.strides shape
            let edge = 3

            let fmt (v: float32) =
                v.ToString("G6", Globalization.CultureInfo.InvariantCulture)

            let rec go (axis: int) (off: int) =
                if axis = shape.Length then
                    sb.Append(fmt data[off]) |> ignore
                else
                    sb.Append '[' |> ignore
                    let n = shape[axis]

                    let show i =
                        if i > 0 then
                            sb.Append(
                                if axis = shape.Length - 1 then
                                    ", "
                                else
                                    ",\n" + String(' ', axis + 8)
                            )
                            |> ignore

                        go (axis + 1) (off + i * strides[axis])

                    if n > 2 * edge + 1 then
                        for i in 0 .. edge - 1 do
                            show i

                        sb.Append(", ...") |> ignore

                        for i in n - edge .. n - 1 do
                            show i
                    else
                        for i in 0 .. n - 1 do
                            show i

                    sb.Append ']' |> ignore

            go 0 t.Offset
            sprintf "tensor(%s, shape=%s)" (sb.ToString()) (Errors.showShape shape)
