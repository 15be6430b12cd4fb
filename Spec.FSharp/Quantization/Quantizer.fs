namespace SnnSpec

open System

/// A bit width: b ∈ 1…16, or full precision (no quantization), as one value.
[<RequireQualifiedAccess>]
type Bits =
    | Fixed of int
    | FullPrecision

    override b.ToString() =
        match b with
        | Fixed n -> sprintf "%d-bit" n
        | FullPrecision -> "FP"

/// Fake quantizers: pure, differentiable through straight-through estimators, returning float
/// tensors that lie on the quantization grid.
///
/// MINT (Yin et al., ASP-DAC 2024; the base of MD-SNN): x = tanh(w)/α, c = clamp(x, −1, 1),
/// q = (α/Q)·round(Q·c) with Q = 2^(b−1) − 1 and round straight-through, so
/// ∂q/∂w = (1 − tanh²w)·1[|x| ≤ 1] and ∂q/∂α = round(Q·c)/Q − x inside the range, ±1 outside.
///
/// Uniform (LSQ, Esser et al. 2020): q = s·round(clamp(x/s, −Qn, Qp)) (+ zero point when asymmetric);
/// ∂q/∂x = 1 inside the range; ∂q/∂s = round(x/s) − x/s inside, −Qn or Qp outside.
module Quantizer =
    /// Q = 2^(b−1) − 1, the largest positive code of a symmetric b-bit grid.
    let levels (bits: int) = (1 <<< (bits - 1)) - 1

    /// Validates a bit width: 1…16 or full precision.
    let validateBits (op: string) (bits: Bits) =
        match bits with
        | Bits.Fixed b when b < 1 || b > 16 ->
            Errors.invalidArg op "bits" b "a bit width in 1…16, or Bits.FullPrecision"
        | _ -> ()

    /// Raises a SnnSpecException unless every value of the scale is positive and finite.
    let validateScale (op: string) (s: Tensor) =
        let values = (Diff.detach s).ToArray()

        if values |> Array.exists (fun v -> not (v > 0.0f) || Single.IsInfinity v) then
            Errors.invalidArg
                op
                "scale"
                (values |> Array.find (fun v -> not (v > 0.0f) || Single.IsInfinity v))
                "a positive, finite scale"

    /// Identity forward; the backward multiplies the gradient by k (LSQ's step-size gradient scale).
    let gradScale (k: float32) (x: Tensor) =
        Autograd.record (Diff.detach x) [| x |] (fun g _ -> [| g * k |])

    /// MINT's initial scale α₀ = 2·mean|W| / √Q (LSQ-style).
    let mintInitAlpha (bits: int) (w: Tensor) =
        let q = levels (max 2 bits)

        Tensor.scalar (
            2.0f * (Tensor.mean (Tensor.abs (Diff.detach w))).ToScalar()
            / MathF.Sqrt(float32 q)
        )

    /// MINT's symmetric tanh-premapped quantizer with learnable scale α (a one-element tensor).
    /// b = 1 is the binary case {−α, +α}; b = 2 is ternary {−α, 0, α}. α's gradient is rescaled
    /// by 1/√(numel(w)·Q) as MINT does.
    let mint (bits: Bits) (alpha: Tensor) (w: Tensor) =
        validateBits "Quantizer.mint" bits
        validateScale "Quantizer.mint" alpha

        match bits with
        | Bits.FullPrecision -> w
        | Bits.Fixed 1 ->
            // Binary: q = α·sign(tanh w) with sign(0) = +1, the gradient passed straight through.
            let a = gradScale (1.0f / MathF.Sqrt(float32 w.Numel)) alpha
            let t = Tensor.tanh w
            let s = Tensor.geScalar 0.0f (Diff.detach t) * 2.0f - 1.0f
            a * (s + (t - Diff.detach t))
        | Bits.Fixed b ->
            let q = float32 (levels b)
            let a = gradScale (1.0f / MathF.Sqrt(float32 w.Numel * q)) alpha
            let c = Tensor.clamp -1.0f 1.0f (Tensor.tanh w / a)
            a / q * Tensor.roundSte (c * q)

    /// MINT's non-learned variant: α = max|tanh w|.
    let mintMax (bits: Bits) (w: Tensor) =
        let alpha = Tensor.max (Tensor.abs (Tensor.tanh (Diff.detach w)))
        mint bits (Tensor.maximum alpha (Tensor.scalar 1e-8f)) w

    /// Symmetric uniform quantizer with (learnable) step s: q = s·round(clamp(x/s, −Q, Q)).
    /// s is a one-element tensor (per tensor) or broadcastable to x (per channel, e.g. [C, 1, 1, 1]).
    let symmetric (bits: Bits) (step: Tensor) (x: Tensor) =
        validateBits "Quantizer.symmetric" bits
        validateScale "Quantizer.symmetric" step

        match bits with
        | Bits.FullPrecision -> x
        | Bits.Fixed b ->
            let q = float32 (max 1 (levels b))
            let s = gradScale (1.0f / MathF.Sqrt(float32 x.Numel / float32 step.Numel * q)) step
            s * Tensor.roundSte (Tensor.clamp -q q (x / s))

    /// Asymmetric uniform quantizer with step s and integer zero point z:
    /// q = s·(round(clamp(x/s + z, 0, 2^b − 1)) − z).
    let asymmetric (bits: Bits) (step: Tensor) (zeroPoint: Tensor) (x: Tensor) =
        validateBits "Quantizer.asymmetric" bits
        validateScale "Quantizer.asymmetric" step

        match bits with
        | Bits.FullPrecision -> x
        | Bits.Fixed b ->
            let top = float32 ((1 <<< b) - 1)
            let z = Diff.detach zeroPoint

            let s =
                gradScale (1.0f / MathF.Sqrt(float32 x.Numel / float32 step.Numel * top)) step

            s * (Tensor.roundSte (Tensor.clamp 0.0f top (x / s + z)) - z)

    /// Per-tensor or per-channel (axis 0) reduction of |x| or x for calibration.
    let private perChannel (perChannelAxis0: bool) (f: float32[] -> float32) (x: Tensor) =
        let data = (Diff.detach x).ToArray()

        if not perChannelAxis0 || x.Rank = 0 then
            Tensor.scalar (f data)
        else
            let c = x.Shape[0]
            let per = data.Length / c
            let values = Array.init c (fun i -> f data[i * per .. (i + 1) * per - 1])
            Tensor.ofArray (Array.append [| c |] (Array.create (x.Rank - 1) 1)) values

    /// Min–max calibration of a symmetric step: s = max|x| / Q (per tensor, or per output channel).
    let calibrateSymmetric (bits: int) (perChannelAxis0: bool) (x: Tensor) =
        let q = float32 (max 1 (levels bits))
        perChannel perChannelAxis0 (fun v -> MathF.Max(1e-8f, (v |> Array.map abs |> Array.max) / q)) x

    /// Percentile calibration: s = (p-th percentile of |x|) / Q, clipping outliers (p in (0, 100]).
    let calibratePercentile (bits: int) (percentile: float32) (perChannelAxis0: bool) (x: Tensor) =
        if not (percentile > 0.0f && percentile <= 100.0f) then
            Errors.invalidArg "Quantizer.calibratePercentile" "percentile" percentile "a percentile in (0, 100]"

        let q = float32 (max 1 (levels bits))

        perChannel
            perChannelAxis0
            (fun v ->
                let sorted = v |> Array.map abs |> Array.sort

                let k =
                    min (sorted.Length - 1) (int (MathF.Ceiling(percentile / 100.0f * float32 sorted.Length)) - 1)

                MathF.Max(1e-8f, sorted[max 0 k] / q))
            x

    /// Min–max calibration of an asymmetric grid: (step, zero point) with s = (max − min)/(2^b − 1), z = round(−min/s).
    let calibrateAsymmetric (bits: int) (x: Tensor) =
        let data = (Diff.detach x).ToArray()
        let lo = MathF.Min(0.0f, Array.min data)
        let hi = MathF.Max(0.0f, Array.max data)
        let s = MathF.Max(1e-8f, (hi - lo) / float32 ((1 <<< bits) - 1))
        Tensor.scalar s, Tensor.scalar (MathF.Round(-lo / s))
