namespace SnnSpec

open System

/// Reverse-mode differentiation, shaped after DiffSharp: <c>grad</c>, <c>valueAndGrad</c> and their
/// multi-input forms. Each call records one tape, runs one backward pass and then recycles every
/// temporary buffer it allocated (nothing of the tape outlives the call). Tensors created inside
/// <c>f</c> are valid only until the call returns unless returned as value, gradient or aux output.
/// Higher-order derivatives are not supported: tensors tracked by an enclosing call are constants here.
module Diff =
    let private keep (scope: TensorScope) (t: Tensor) =
        if not (isNull (box t)) then
            scope.KeepStorage t.Storage

    let private run (f: Tensor[] -> Tensor * Tensor[]) (xs: Tensor[]) =
        let scope = TensorScope.Begin()
        let saved = Tape.Current
        let tape = Tape()
        Tape.Current <- tape

        try
            let leaves = xs |> Array.map (Autograd.leaf tape)
            let value, aux = f leaves

            if value.Numel <> 1 then
                Errors.invalidArg
                    "Diff.valueAndGrad"
                    "f's result shape"
                    (Errors.showShape value.ShapeRef)
                    "a scalar-valued function (one element); reduce it first, e.g. with Tensor.sum or Tensor.mean"

            Tape.Current <- saved
            Autograd.backward tape value (Tensor.onesLike (Autograd.detach value))

            let grads =
                leaves
                |> Array.map (fun l ->
                    let g = l.Node.Grad

                    if isNull (box g) then
                        Tensor.zerosLike (Autograd.detach l)
                    else
                        g)

            let value = Autograd.detach value
            keep scope value
            grads |> Array.iter (keep scope)
            aux |> Array.iter (keep scope)
            value, grads, aux |> Array.map Autograd.detach
        finally
            Tape.Current <- saved
            (scope :> IDisposable).Dispose()

    /// f's value and gradients with respect to each input, plus auxiliary tensors f returns alongside.
    let valueAndGradAux (f: Tensor[] -> Tensor * Tensor[]) (xs: Tensor[]) : Tensor * Tensor[] * Tensor[] = run f xs

    /// f's value and its gradient with respect to each input.
    let valueAndGradN (f: Tensor[] -> Tensor) (xs: Tensor[]) : Tensor * Tensor[] =
        let v, g, _ = run (fun a -> f a, [||]) xs
        v, g

    /// f's value and its gradient at x (f must return one element).
    let valueAndGrad (f: Tensor -> Tensor) (x: Tensor) : Tensor * Tensor =
        let v, g = valueAndGradN (fun a -> f a[0]) [| x |]
        v, g[0]

    /// The gradient of a scalar-valued f at x.
    let grad (f: Tensor -> Tensor) (x: Tensor) = snd (valueAndGrad f x)

    /// Gradients of a scalar-valued f with respect to each input.
    let gradN (f: Tensor[] -> Tensor) (xs: Tensor[]) = snd (valueAndGradN f xs)

    /// The vector–Jacobian product wᵀ·∂f/∂x for a tensor-valued f: (f x, gradient).
    let vjp (f: Tensor -> Tensor) (x: Tensor) (w: Tensor) =
        let mutable out = Unchecked.defaultof<Tensor>

        let v, g, aux =
            run
                (fun a ->
                    let y = f a[0]

                    if y.ShapeRef <> w.ShapeRef then
                        Errors.shapeMismatch
                            "Diff.vjp"
                            [ y.ShapeRef; w.ShapeRef ]
                            "the cotangent must have f's output shape"

                    Tensor.sum (y * w), [| y |])
                [| x |]

        ignore v
        out <- aux[0]
        out, g[0]

    /// Runs f with recording off: nothing computed inside is differentiated (e.g. a frozen teacher).
    let noGrad (f: unit -> 'T) : 'T =
        let saved = Tape.Current
        Tape.Current <- null

        try
            f ()
        finally
            Tape.Current <- saved

    /// The same values with gradients stopped.
    let detach (t: Tensor) = Autograd.detach t

    /// A differentiable op from a forward function and a hand-written backward.
    /// <c>backward inputs output gradOutput</c> returns one gradient per input (shapes equal to the inputs).
    /// Surrogate spikes and straight-through quantizers are built with it.
    let customOp (forward: Tensor[] -> Tensor) (backward: Tensor[] -> Tensor -> Tensor -> Tensor[]) (inputs: Tensor[]) =
        let plain = inputs |> Array.map Autograd.detach
        let out = noGrad (fun () -> forward plain) |> Autograd.detach

        Autograd.record out inputs (fun g need ->
            let gs = backward plain out g

            if gs.Length <> inputs.Length then
                Errors.invalidArg
                    "Diff.customOp"
                    "backward's result"
                    (sprintf "%d gradients" gs.Length)
                    (sprintf "one gradient per input (%d)" inputs.Length)

            gs |> Array.mapi (fun i gi -> if need[i] then gi else Autograd.noGrad))

    /// Activation checkpointing: <c>f inputs</c> runs without a tape and only its results are kept;
    /// the backward pass runs f again on the saved inputs, recording, and propagates the results'
    /// gradients through that second run. Values and gradients are those of calling f directly when f
    /// is deterministic (the same inputs give the same results), up to the order in which an input
    /// also read outside the block sums its gradient's parts; f's intermediates go back to the pool
    /// when it returns instead of living until the backward pass, at the cost of a second forward.
    /// f returns (outputs, extras): outputs are differentiable; extras are values of the first run
    /// only (e.g. batch-norm running statistics), untracked. Every tensor that should receive a
    /// gradient must be among the inputs: tensors f captures are constants in the second run.
    /// Without a recording tape (or with no tracked input) this is f inputs. f must not write into
    /// its inputs. consumed[i] marks an input that nothing reads after this block's backward pass
    /// (an intermediate only the block consumes): its buffer goes back to the pool as soon as the
    /// second run is done with it, unless an output shares it. The flags are read in the backward
    /// pass, so a caller may clear one after the call.
    let checkpointConsuming
        (consumed: bool[])
        (f: Tensor[] -> Tensor[] * Tensor[])
        (inputs: Tensor[])
        : Tensor[] * Tensor[] =
        if consumed.Length <> inputs.Length then
            Errors.invalidArg
                "Diff.checkpointConsuming"
                "consumed"
                (sprintf "%d flags" consumed.Length)
                (sprintf "one flag per input (%d)" inputs.Length)

        let tape = Tape.Current

        if isNull tape || not (inputs |> Array.exists (Autograd.isTrackedOn tape)) then
            f inputs
        else
            let plain = inputs |> Array.map Autograd.detach

            let outs, extras =
                use scope = TensorScope.Begin()
                let outs, extras = noGrad (fun () -> f plain)
                let outs = outs |> Array.map Autograd.detach
                let extras = extras |> Array.map Autograd.detach
                outs |> Array.iter (keep scope)
                extras |> Array.iter (keep scope)
                outs, extras

            let rule (gs: Tensor[]) (need: bool[]) =
                // Incoming gradients nothing else refers to may be overwritten by the second run's pass.
                let shared (g: Tensor) =
                    gs
                    |> Array.filter (fun o -> not (isNull (box o)) && obj.ReferenceEquals(o.Storage, g.Storage))
                    |> Array.length
                        >
                        1

                let donated =
                    gs
                    |> Array.map (fun g -> not (isNull (box g)) && not (shared g) && Autograd.overwritable g)

                let saved = Tape.Current
                let inner = Tape()
                Tape.Current <- inner

                let leaves =
                    try
                        let leaves =
                            plain |> Array.mapi (fun i p -> if need[i] then Autograd.leaf inner p else p)

                        let again, _ = f leaves

                        if again.Length <> outs.Length then
                            Errors.invalidArg
                                "Diff.checkpoint"
                                "f's outputs"
                                (sprintf "%d outputs in the second run, %d in the first" again.Length outs.Length)
                                "a deterministic f: the same inputs must give the same outputs"

                        Tape.Current <- saved
                        Autograd.backwardFrom inner (Array.zip3 again gs donated)
                        leaves
                    finally
                        Tape.Current <- saved

                for i in 0 .. plain.Length - 1 do
                    if
                        consumed[i]
                        && not (outs |> Array.exists (fun o -> obj.ReferenceEquals(o.Storage, plain[i].Storage)))
                    then
                        TensorScope.ReleaseEarly plain[i].Storage |> ignore

                leaves
                |> Array.mapi (fun i l ->
                    if need[i] && not (isNull (box l.Node.Grad)) then
                        l.Node.Grad
                    else
                        Autograd.noGrad)

            Autograd.recordMulti outs inputs rule, extras

    /// Activation checkpointing with every input kept (see <c>checkpointConsuming</c>).
    let checkpoint (f: Tensor[] -> Tensor[] * Tensor[]) (inputs: Tensor[]) : Tensor[] * Tensor[] =
        checkpointConsuming (Array.zeroCreate inputs.Length) f inputs

    /// Runs f inside a tensor scope: temporaries go back to the pool at the end; the result survives.
    let scoped (f: unit -> Tensor) : Tensor =
        use scope = TensorScope.Begin()
        let r = f ()
        scope.KeepStorage r.Storage
        r
