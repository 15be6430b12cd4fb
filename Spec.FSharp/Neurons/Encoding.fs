namespace SnnSpec

open System

/// Input encoders: turn a static batch [B, …] into a spike or current sequence [T, B, …].
module Encoding =
    let private checkSteps op (steps: int) =
        if steps < 1 then
            Errors.invalidArg op "steps" steps "T ≥ 1"

    /// Direct encoding: the same analog input at every step ([B, …] → [T, B, …]).
    /// Differentiable (the gradient sums over time).
    let direct (steps: int) (x: Tensor) =
        checkSteps "Encoding.direct" steps
        Tensor.expand (Array.append [| steps |] x.Shape) (Tensor.unsqueeze 0 x)

    /// Rate (Poisson/Bernoulli) encoding: at each step a neuron spikes with probability equal to its
    /// input clamped to [0, 1]; draws come from the key, so the same key gives the same spikes.
    let rate (rng: Rng) (steps: int) (x: Tensor) =
        checkSteps "Encoding.rate" steps
        let p = Tensor.clamp 0.0f 1.0f (Diff.detach x)
        let u = Tensor.rand rng (Array.append [| steps |] x.Shape)
        Tensor.lt u (Tensor.unsqueeze 0 p)

    /// Latency (time-to-first-spike) encoding: one spike per neuron at step round((1 − x)·(T − 1))
    /// for x clamped to [0, 1], so stronger inputs fire earlier; inputs ≤ <c>cutoff</c> never fire.
    let latency (steps: int) (cutoff: float32) (x: Tensor) =
        checkSteps "Encoding.latency" steps
        let xs = (Diff.detach x).ToArray()
        let n = xs.Length
        let out = Array.zeroCreate (steps * n)

        for i in 0 .. n - 1 do
            let v = Math.Clamp(xs[i], 0.0f, 1.0f)

            if v > cutoff then
                let t = int (MathF.Round((1.0f - v) * float32 (steps - 1)))
                out[t * n + i] <- 1.0f

        Tensor.ofArray (Array.append [| steps |] x.Shape) out
