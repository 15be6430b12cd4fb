namespace SnnSpec

open System
open SnnSpec.Kernels

/// Building blocks for writing differentiable ops: allocating results and recording a backward rule.
/// A rule runs only during the backward pass, with recording off, so it may use any Tensor op.
module Autograd =
    let internal isTrackedOn (tape: Tape) (t: Tensor) = Tape.IsTrackedOn tape t

    /// True when a tape is recording on this thread.
    let isRecording () = not (isNull Tape.Current)

    /// The "no gradient" marker a backward rule returns for an input that needs none.
    let noGrad: Tensor = Unchecked.defaultof<Tensor>

    /// A new untracked tensor of this shape with unspecified contents (pooled inside a scope).
    let internal alloc (shape: int[]) = Tape.Alloc shape

    /// A new untracked zero tensor of this shape.
    let internal allocZeros (shape: int[]) =
        Tensor(StorageAlloc.zeros (Shape.numel shape), 0, shape, null)

    /// A tensor over the same memory with another shape (no copy), untracked.
    let internal view (t: Tensor) (shape: int[]) =
        Tensor(t.Storage, t.Offset, shape, null)

    /// Attaches <c>rule</c> to <c>result</c> when any input is tracked by the recording tape;
    /// otherwise returns <c>result</c> unchanged.
    let record (result: Tensor) (inputs: Tensor[]) (rule: BackwardRule) : Tensor = Tape.Record result inputs rule

    /// Attaches one backward rule to an op with several outputs. The rule receives one gradient per
    /// output (<c>Autograd.noGrad</c> where an output received none) and returns one per input.
    let recordMulti (results: Tensor[]) (inputs: Tensor[]) (rule: Tensor[] -> bool[] -> Tensor[]) : Tensor[] =
        let tape = Tape.Current

        if isNull tape || not (Array.exists (isTrackedOn tape) inputs) then
            results
        else
            let owner = Node(tape, inputs, None)
            owner.MultiRule <- rule
            tape.Nodes.Add owner

            let outs =
                results
                |> Array.map (fun _ ->
                    let o = Node(tape, [||], None)
                    tape.Nodes.Add o
                    o)

            owner.Outputs <- outs
            Array.map2 (fun (r: Tensor) (o: Node) -> Tensor(r.Storage, r.Offset, r.ShapeRef, o)) results outs

    /// The same values with no tape node: gradients do not flow through it.
    let detach (t: Tensor) =
        if isNull t.Node then
            t
        else
            Tensor(t.Storage, t.Offset, t.ShapeRef, null)

    let internal leaf (tape: Tape) (t: Tensor) =
        let n = Node(tape, [||], None)
        tape.Nodes.Add n
        Tensor(t.Storage, t.Offset, t.ShapeRef, n)

    let private accumulate (node: Node) (g: Tensor) =
        if isNull (box node.Grad) then
            node.Grad <- g
            node.GradOwned <- false
        else
            let acc =
                if node.GradOwned then
                    node.Grad
                else
                    let fresh = alloc node.Grad.ShapeRef
                    node.GradOwned <- true
                    Array.Copy(node.Grad.Data, node.Grad.Offset, fresh.Data, 0, fresh.Numel)
                    fresh

            Elementwise.spanSpan BinaryOp.Add acc.Data acc.Offset g.Data g.Offset acc.Data acc.Offset acc.Numel
            node.Grad <- acc

    /// Runs the backward pass of <c>tape</c> from <c>root</c> seeded with <c>seed</c>; leaves keep their Grad.
    let internal backward (tape: Tape) (root: Tensor) (seed: Tensor) =
        let saved = Tape.Current
        Tape.Current <- null

        try
            if isTrackedOn tape root then
                accumulate root.Node seed
                let nodes = tape.Nodes

                let propagate (n: Node) (run: bool[] -> Tensor[]) =
                    let needs = n.Inputs |> Array.map (isTrackedOn tape)

                    if Array.exists id needs then
                        let gs = run needs

                        for j in 0 .. n.Inputs.Length - 1 do
                            if needs[j] && not (isNull (box gs[j])) then
                                let x = n.Inputs[j]

                                if gs[j].ShapeRef <> x.ShapeRef then
                                    Errors.shapeMismatch
                                        "backward"
                                        [ x.ShapeRef; gs[j].ShapeRef ]
                                        (sprintf
                                            "the backward rule returned a gradient for input %d whose shape differs from the input"
                                            j)

                                accumulate x.Node gs[j]

                for i in nodes.Count - 1 .. -1 .. 0 do
                    let n = nodes[i]

                    if not (isNull n.Outputs) then
                        let gs = n.Outputs |> Array.map (fun o -> o.Grad)

                        if gs |> Array.exists (fun g -> not (isNull (box g))) then
                            propagate n (n.MultiRule gs)

                        for o in n.Outputs do
                            o.Grad <- Unchecked.defaultof<Tensor>
                    else
                        match n.Backward with
                        | Some rule when not (isNull (box n.Grad)) ->
                            propagate n (rule n.Grad)
                            n.Grad <- Unchecked.defaultof<Tensor>
                        | _ -> ()
        finally
            Tape.Current <- saved
