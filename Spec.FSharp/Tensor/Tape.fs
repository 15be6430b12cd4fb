namespace SnnSpec

open System
open SnnSpec.Kernels

/// The incoming gradients of the backward rule running on this thread that no other node refers
/// to (set by Autograd.backward around each rule).
type internal GradReuse() =
    [<ThreadStatic; DefaultValue>]
    static val mutable private exclusive: System.Collections.Generic.HashSet<Storage>

    static member Exclusive
        with get () = GradReuse.exclusive
        and set v = GradReuse.exclusive <- v

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

    /// Inside a backward rule: true (once per gradient) when g, one of the rule's incoming
    /// gradients, starts its buffer and no other node refers to that buffer, so the rule may
    /// write an input's gradient over it (as long as each element is read before it is written).
    let internal overwritable (g: Tensor) =
        let ex = GradReuse.Exclusive

        not (isNull (box g)) && g.Offset = 0 && not (isNull ex) && ex.Remove g.Storage

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

    /// The gradient storages of one backward pass: every buffer allocated during the pass belongs to
    /// <c>Scope</c>; <c>Refs</c> counts the pending node gradients that refer to each of them, and a
    /// buffer goes back to the pool when its count drops to zero (as PyTorch frees a gradient once
    /// it has been propagated). What is left at the end (the leaves' gradients) moves to the caller's scope.
    type private Pass =
        {
            Scope: TensorScope
            Refs: System.Collections.Generic.Dictionary<Storage, int>
        }

    let private hold (p: Pass) (g: Tensor) =
        let s = g.Storage

        match p.Refs.TryGetValue s with
        | true, c -> p.Refs[s] <- c + 1
        | _ when p.Scope.Owns s -> p.Refs[s] <- 1
        | _ -> ()

    let private drop (p: Pass) (g: Tensor) =
        if not (isNull (box g)) then
            let s = g.Storage

            match p.Refs.TryGetValue s with
            | true, 1 ->
                p.Refs.Remove s |> ignore
                p.Scope.ReleaseOwned s |> ignore
            | true, c -> p.Refs[s] <- c - 1
            | _ -> ()

    let private accumulate (p: Pass) (node: Node) (g: Tensor) =
        if isNull (box node.Grad) then
            node.Grad <- g
            node.GradOwned <- false
            hold p g
        else
            let acc =
                if node.GradOwned then
                    node.Grad
                else
                    let fresh = alloc node.Grad.ShapeRef
                    node.GradOwned <- true
                    Array.Copy(node.Grad.Data, node.Grad.Offset, fresh.Data, 0, fresh.Numel)
                    hold p fresh
                    drop p node.Grad
                    fresh

            Elementwise.spanSpan BinaryOp.Add acc.Data acc.Offset g.Data g.Offset acc.Data acc.Offset acc.Numel
            node.Grad <- acc

    /// Runs the backward pass of <c>tape</c> from several roots, each seeded with its own gradient
    /// (a null seed or an untracked root contributes nothing); leaves keep their Grad. A donated seed
    /// is a buffer the caller no longer reads (Autograd.overwritable in an enclosing rule): the pass
    /// may write over it as over a gradient of its own, and never returns it to the pool.
    /// Each rule runs in its own scope: its temporaries return to the pool when it returns, and a
    /// gradient returns once every node it was passed to has propagated it.
    let internal backwardFrom (tape: Tape) (seeds: (Tensor * Tensor * bool)[]) =
        let saved = Tape.Current
        Tape.Current <- null

        let pass =
            {
                Scope = TensorScope.Begin()
                Refs = System.Collections.Generic.Dictionary<Storage, int>(HashIdentity.Reference)
            }

        let mutable completed = false

        try
            let live =
                seeds
                |> Array.filter (fun (root, seed, _) -> not (isNull (box seed)) && isTrackedOn tape root)

            if live.Length > 0 then
                for root, seed, donated in live do
                    accumulate pass root.Node seed

                    if donated && not (pass.Refs.ContainsKey seed.Storage) then
                        pass.Refs[seed.Storage] <- 1

                let nodes = tape.Nodes

                let propagate (n: Node) (incoming: Tensor[]) (run: bool[] -> Tensor[]) =
                    let needs = n.Inputs |> Array.map (isTrackedOn tape)

                    if Array.exists id needs then
                        let ruleScope = TensorScope.Begin()
                        let exclusive = System.Collections.Generic.HashSet<Storage>(HashIdentity.Reference)

                        for g in incoming do
                            if not (isNull (box g)) then
                                match pass.Refs.TryGetValue g.Storage with
                                | true, 1 -> exclusive.Add g.Storage |> ignore
                                | _ -> ()

                        let gs =
                            try
                                GradReuse.Exclusive <- exclusive
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

                                        ruleScope.KeepStorage gs[j].Storage

                                gs
                            finally
                                GradReuse.Exclusive <- null
                                (ruleScope :> IDisposable).Dispose()

                        // Outside the rule's scope: accumulation buffers belong to the pass.
                        for j in 0 .. n.Inputs.Length - 1 do
                            if needs[j] && not (isNull (box gs[j])) then
                                accumulate pass n.Inputs[j].Node gs[j]

                for i in nodes.Count - 1 .. -1 .. 0 do
                    let n = nodes[i]

                    if not (isNull n.Outputs) then
                        let gs = n.Outputs |> Array.map (fun o -> o.Grad)

                        if gs |> Array.exists (fun g -> not (isNull (box g))) then
                            propagate n gs (n.MultiRule gs)

                        for o in n.Outputs do
                            drop pass o.Grad
                            o.Grad <- Unchecked.defaultof<Tensor>
                    else
                        match n.Backward with
                        | Some rule when not (isNull (box n.Grad)) ->
                            propagate n [| n.Grad |] (rule n.Grad)
                            drop pass n.Grad
                            n.Grad <- Unchecked.defaultof<Tensor>
                        | _ -> ()

            completed <- true
        finally
            Tape.Current <- saved

            if completed then
                pass.Scope.KeepAll()

            (pass.Scope :> IDisposable).Dispose()

    /// Runs the backward pass of <c>tape</c> from <c>root</c> seeded with <c>seed</c>; leaves keep their Grad.
    let internal backward (tape: Tape) (root: Tensor) (seed: Tensor) =
        backwardFrom tape [| root, seed, false |]
