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

/// How a membrane is put on the grid (α/Q)·{−Q…Q}, Q = 2^(b−1) − 1 (methods.md §2(b)).
[<RequireQualifiedAccess>]
type MembraneScheme =
    /// MINT's code: after each update U ← q(U; α) with q = Quantizer.mint, i.e. the tanh pre-map is
    /// applied to U too; H and the spike comparison stay unquantized.
    | Mint
    /// Uniform symmetric, no tanh, computed in grid units with s = α/Q: k_H = round(H/s) (not clamped),
    /// H is read as s·k_H, S = Θ(s·k_H − θ), and U = s·clamp(round(ρ·R_k), −Q, Q) with R_k the reset in
    /// grid units (k_H·(1 − S) + (v_r/s)·S hard, k_H − (θ/s)·S soft); round is half to even with the
    /// straight-through gradient. With a binary input and weights on the same grid this is exactly
    /// the integer datapath of IntegerExport (θ in integer units, λ = 2^−k as a shift).
    | Uniform

/// Membrane quantization of a neuron population: bit width, scale α (a one-element tensor, learnable
/// or shared with the weights of the layer that feeds the population) and scheme. b = 1 under the
/// uniform scheme uses Q = 1 (the ternary grid {−α, 0, α}).
type MembraneQuant =
    {
        Bits: Bits
        Alpha: Tensor
        Scheme: MembraneScheme
    }

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

    /// One step with membrane quantization (the reference path; methods.md §2(b), MINT's LIF):
    /// full precision is <c>stepFull</c>; MembraneScheme.Mint is <c>stepFull</c> followed by
    /// V ← Quantizer.mint b α V; MembraneScheme.Uniform computes in grid units as documented on the
    /// scheme. α's gradient is rescaled by 1/√(numel(V)·Q) as for the weights (LSQ).
    let stepQuantized (n: Neuron) (mq: MembraneQuant) (v: Tensor) (input: Tensor) : NeuronStep =
        let op = "Neuron.stepQuantized"
        Quantizer.validateBits op mq.Bits
        Quantizer.validateScale op mq.Alpha

        if mq.Alpha.Numel <> 1 then
            Errors.invalidArg op "Alpha" (Errors.showShape mq.Alpha.Shape) "a one-element scale tensor"

        match mq.Bits, mq.Scheme with
        | Bits.FullPrecision, _ -> stepFull n v input
        | Bits.Fixed _, MembraneScheme.Mint ->
            let r = stepFull n v input

            { r with
                V = Quantizer.mint mq.Bits mq.Alpha r.V
            }
        | Bits.Fixed bits, MembraneScheme.Uniform ->
            validate n

            if v.Shape <> input.Shape then
                Errors.shapeMismatch
                    op
                    [ v.Shape; input.Shape ]
                    "the state must have the input's shape (one membrane per neuron)"

            let q = float32 (max 1 (Quantizer.levels bits))
            let a, b, c, rho = coefficients n

            let alpha =
                Quantizer.gradScale (1.0f / MathF.Sqrt(float32 (max 1 v.Numel) * q)) (Tensor.reshape [||] mq.Alpha)

            let s = alpha / q
            let k = Tensor.roundSte ((a * v + b * input + c) / s)
            let h = s * k
            let spikes = Surrogate.spike n.Surrogate (h - n.Threshold)
            let sr = if n.DetachReset then Diff.detach spikes else spikes

            let reset =
                match n.Reset with
                | Reset.Hard vr when vr = 0.0f -> k * (1.0f - sr)
                | Reset.Hard vr -> k * (1.0f - sr) + sr * (Tensor.scalar vr / s)
                | Reset.Soft -> k - sr * (Tensor.scalar n.Threshold / s)

            let u =
                Tensor.roundSte (Tensor.clamp -q q (if rho = 1.0f then reset else reset * rho))

            { H = h; S = spikes; V = s * u }

    /// T quantized steps over a [T, …] input by repeated <c>stepQuantized</c>.
    let runQuantized (n: Neuron) (mq: MembraneQuant) (v0: Tensor) (inputs: Tensor) : NeuronRun =
        if inputs.Rank < 1 then
            Errors.invalidArg
                "Neuron.runQuantized"
                "inputs"
                (Errors.showShape inputs.Shape)
                "a [T, …] tensor with a leading time axis"

        let mutable v = v0
        let hs = ResizeArray()
        let ss = ResizeArray()

        for t in 0 .. inputs.Shape[0] - 1 do
            let r = stepQuantized n mq v (Tensor.select 0 t inputs)
            hs.Add r.H
            ss.Add r.S
            v <- r.V

        {
            H = Tensor.stack 0 (List.ofSeq hs)
            S = Tensor.stack 0 (List.ofSeq ss)
            VFinal = v
        }

    /// The membrane grid step s = α/Q as a float32, computed with the same tensor operation as
    /// <c>stepQuantized</c> (so integer views reproduce it bit for bit).
    let membraneStep (mq: MembraneQuant) =
        Quantizer.validateBits "Neuron.membraneStep" mq.Bits
        Quantizer.validateScale "Neuron.membraneStep" mq.Alpha

        match mq.Bits with
        | Bits.FullPrecision ->
            Errors.invalidArg "Neuron.membraneStep" "Bits" mq.Bits "a fixed bit width (full precision has no grid)"
        | Bits.Fixed bits ->
            let q = float32 (max 1 (Quantizer.levels bits))
            (Tensor.reshape [||] (Diff.detach mq.Alpha) / q).ToScalar()

    /// The threshold in integer units, θ·Q/α = θ/s (methods.md §2(b)); real-valued in general.
    let thresholdUnits (n: Neuron) (mq: MembraneQuant) = n.Threshold / membraneStep mq

    /// The integer threshold θ_int: the least integer k with fl(s·k) ≥ θ in float32, so that
    /// k_H ≥ θ_int ⟺ the uniform scheme's float comparison s·k_H ≥ θ fires (≈ ⌈θ·Q/α⌉).
    let integerThreshold (n: Neuron) (mq: MembraneQuant) =
        let s = membraneStep mq
        let fires (k: int) = s * float32 k - n.Threshold >= 0.0f
        let mutable k = int (Math.Ceiling(float n.Threshold / float s))

        while fires (k - 1) do
            k <- k - 1

        while not (fires k) do
            k <- k + 1

        k

    /// The post-reset leak as a right shift: ρ = 2^−k gives k (MINT's λ = 0.5 is a shift by 1; IF and
    /// λ = 1 give 0). Other dynamics or leaks raise a SnnSpecException.
    let leakShift (n: Neuron) =
        let rho =
            match n.Dynamics with
            | Dynamics.Mint lambda -> lambda
            | Dynamics.If -> 1.0f
            | d ->
                Errors.invalidArg
                    "Neuron.leakShift"
                    "Dynamics"
                    d
                    "Dynamics.Mint λ or Dynamics.If (H = V + I, the leak applied after the reset)"

        match [ 0..15 ] |> List.tryFind (fun k -> rho = MathF.Pow(2.0f, float32 -k)) with
        | Some k -> k
        | None -> Errors.invalidArg "Neuron.leakShift" "lambda" rho "a leak λ = 2^−k, k = 0…15"

    /// Integer round half to even of x / 2^k: the shift of the integer datapath.
    let shiftRound (k: int) (x: int) =
        if k = 0 then
            x
        else
            let q = x >>> k
            let rem = x - (q <<< k)
            let half = 1 <<< (k - 1)

            if rem > half then q + 1
            elif rem = half then q + (q &&& 1)
            else q
