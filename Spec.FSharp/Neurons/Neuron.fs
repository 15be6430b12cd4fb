namespace SnnSpec

open System

/// What happens to the membrane after a spike.
[<RequireQualifiedAccess>]
type Reset =
    /// V ← v_reset where a spike occurred: V = H·(1 − S) + v_reset·S.
    | Hard of vReset: float32
    /// V ← H − θ where a spike occurred: V = H − θ·S (charge is conserved).
    | Soft

/// How the membrane charges from the previous state V (after reset) and the input current I.
/// Every form is affine, H = a·V + b·I + c, and some leak after the reset (V = ρ·reset(H, S)).
[<RequireQualifiedAccess>]
type Dynamics =
    /// SpikingJelly LIF, τ ≥ 1. decayInput: H = V + (I − (V − v_reset))/τ; otherwise H = V − (V − v_reset)/τ + I.
    | Lif of tau: float32 * decayInput: bool
    /// Leak-only LIF of the temporal-KD code: H = λ·V + I with λ ∈ [0, 1] (λ = 1 − 1/τ).
    | Leaky of lambda: float32
    /// MINT / MD-SNN LIF: H = I + U and U = λ·reset(H, S), the leak applied after the reset.
    | Mint of lambda: float32
    /// Integrate-and-fire: H = V + I.
    | If
    /// Parametric LIF (Fang et al. 2021): 1/τ = sigmoid(w) with w a learnable scalar tensor
    /// (w₀ = −log(τ₀ − 1)); charges like Lif with that τ.
    | Plif of w: Tensor * decayInput: bool

/// A spiking neuron population's specification: dynamics, threshold θ, reset, whether the reset
/// path is detached from the gradient, and the surrogate gradient of the spike.
type Neuron =
    {
        Dynamics: Dynamics
        Threshold: float32
        Reset: Reset
        DetachReset: bool
        Surrogate: Surrogate
    }

/// One step's exposed quantities: H (membrane after charging, before reset), S (spikes) and
/// V (membrane after reset and any post-reset leak: the state carried to the next step).
type NeuronStep = { H: Tensor; S: Tensor; V: Tensor }

/// A multi-step run over a [T, …] input: H and S for every step ([T, …]) and the final state V_T.
type NeuronRun =
    { H: Tensor; S: Tensor; VFinal: Tensor }

module Neuron =
    /// SpikingJelly-style LIF: τ = 2, θ = 1, hard reset to 0, Sigmoid(4), reset not detached.
    let lif =
        {
            Dynamics = Dynamics.Lif(2.0f, true)
            Threshold = 1.0f
            Reset = Reset.Hard 0.0f
            DetachReset = false
            Surrogate = Surrogate.sigmoid
        }

    /// IF of SEW-ResNet: θ = 1, hard reset to 0, reset detached, ATan(2).
    let ifNeuron =
        {
            Dynamics = Dynamics.If
            Threshold = 1.0f
            Reset = Reset.Hard 0.0f
            DetachReset = true
            Surrogate = Surrogate.atan
        }

    /// MINT LIF: θ = 0.5, λ = 0.5, hard reset, triangle surrogate.
    let mint =
        {
            Dynamics = Dynamics.Mint 0.5f
            Threshold = 0.5f
            Reset = Reset.Hard 0.0f
            DetachReset = false
            Surrogate = Surrogate.triangle
        }

    /// Temporal-KD LIF: H = λ·V + I with λ = 0.5, θ = 1, hard reset, Sigmoid(4).
    let leaky =
        {
            Dynamics = Dynamics.Leaky 0.5f
            Threshold = 1.0f
            Reset = Reset.Hard 0.0f
            DetachReset = false
            Surrogate = Surrogate.sigmoid
        }

    let vReset (n: Neuron) =
        match n.Reset with
        | Reset.Hard v -> v
        | Reset.Soft -> 0.0f

    /// Raises a SnnSpecException naming the parameter, its value and what is allowed.
    let validate (n: Neuron) =
        let op = "Neuron"

        if not (n.Threshold > 0.0f) || Single.IsInfinity n.Threshold then
            Errors.invalidArg op "Threshold" n.Threshold "θ > 0 and finite"

        match n.Dynamics with
        | Dynamics.Lif(tau, _) ->
            if not (tau >= 1.0f) || Single.IsInfinity tau then
                Errors.invalidArg op "tau" tau "τ ≥ 1 (the leak factor 1 − 1/τ must lie in [0, 1))"
        | Dynamics.Leaky lambda
        | Dynamics.Mint lambda ->
            if not (lambda >= 0.0f && lambda <= 1.0f) then
                Errors.invalidArg op "lambda" lambda "a leak λ in [0, 1]"
        | Dynamics.Plif(w, _) ->
            if w.Numel <> 1 then
                Errors.invalidArg op "w" (Errors.showShape w.Shape) "a one-element learnable tensor"
        | Dynamics.If -> ()

        Surrogate.validate n.Surrogate

    /// The resting state for a population of this shape (v_reset everywhere).
    let initState (n: Neuron) (shape: int[]) = Tensor.full shape (vReset n)

    /// The affine coefficients (a, b, c) of H = a·V + b·I + c and the post-reset factor ρ, as tensors
    /// when learnable (PLIF) so gradients reach w.
    let internal coefficients (n: Neuron) : Tensor * Tensor * Tensor * float32 =
        let vr = vReset n
        let s (v: float32) = Tensor.scalar v

        match n.Dynamics with
        | Dynamics.Lif(tau, decayInput) ->
            let k = 1.0f / tau
            s (1.0f - k), s (if decayInput then k else 1.0f), s (k * vr), 1.0f
        | Dynamics.Leaky lambda -> s lambda, s 1.0f, s 0.0f, 1.0f
        | Dynamics.Mint lambda -> s 1.0f, s 1.0f, s 0.0f, lambda
        | Dynamics.If -> s 1.0f, s 1.0f, s 0.0f, 1.0f
        | Dynamics.Plif(w, decayInput) ->
            let k = Tensor.reshape [||] (Tensor.sigmoid w)
            1.0f - k, (if decayInput then k else s 1.0f), k * vr, 1.0f

    /// One step of the neuron, written with differentiable tensor ops (the reference the fused
    /// multi-step kernel is tested against): H = a·V + b·I + c; S = Θ(H − θ) with the surrogate
    /// in the backward pass; V' = ρ·reset(H, S). Shapes of state and input must agree.
    let stepFull (n: Neuron) (v: Tensor) (input: Tensor) : NeuronStep =
        validate n

        if v.Shape <> input.Shape then
            Errors.shapeMismatch
                "Neuron.step"
                [ v.Shape; input.Shape ]
                "the state must have the input's shape (one membrane per neuron)"

        let a, b, c, rho = coefficients n
        let h = a * v + b * input + c
        let s = Surrogate.spike n.Surrogate (h - n.Threshold)
        let sr = if n.DetachReset then Diff.detach s else s

        let reset =
            match n.Reset with
            | Reset.Hard vr -> h * (1.0f - sr) + sr * vr
            | Reset.Soft -> h - sr * n.Threshold

        {
            H = h
            S = s
            V = if rho = 1.0f then reset else reset * rho
        }

    /// One step: spikes and the next state.
    let step (n: Neuron) (v: Tensor) (input: Tensor) : Tensor * Tensor =
        let r = stepFull n v input
        r.S, r.V

    /// T steps by repeated single steps over a [T, …] input (the reference for the fused kernel).
    let runReference (n: Neuron) (v0: Tensor) (inputs: Tensor) : NeuronRun =
        if inputs.Rank < 1 then
            Errors.invalidArg
                "Neuron.run"
                "inputs"
                (Errors.showShape inputs.Shape)
                "a [T, …] tensor with a leading time axis"

        let steps = inputs.Shape[0]
        let mutable v = v0
        let hs = ResizeArray()
        let ss = ResizeArray()

        for t in 0 .. steps - 1 do
            let r = stepFull n v (Tensor.select 0 t inputs)
            hs.Add r.H
            ss.Add r.S
            v <- r.V

        {
            H = Tensor.stack 0 (List.ofSeq hs)
            S = Tensor.stack 0 (List.ofSeq ss)
            VFinal = v
        }
