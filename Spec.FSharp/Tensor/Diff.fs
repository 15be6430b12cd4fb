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

    /// Runs f inside a tensor scope: temporaries go back to the pool at the end; the result survives.
    let scoped (f: unit -> Tensor) : Tensor =
        use scope = TensorScope.Begin()
        let r = f ()
        scope.KeepStorage r.Storage
        r
