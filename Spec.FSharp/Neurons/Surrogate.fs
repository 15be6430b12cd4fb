namespace SnnSpec

open System

/// A surrogate gradient: the spike's forward value is always the Heaviside step Θ(x) at
/// x = H − θ (a spike exactly where H ≥ θ); the backward pass uses dS/dH ≈ g(x) instead of the
/// Dirac delta. The built-in cases are densities (they integrate to 1 over ℝ) except where noted;
/// <c>Custom</c> takes any derivative function.
[<RequireQualifiedAccess>]
type Surrogate =
    /// g(x) = (α/2) / (1 + (π/2·α·x)²), the derivative of arctan(π/2·α·x)/π + 1/2 (SpikingJelly's ATan; α = 2 by default).
    | ATan of alpha: float32
    /// g(x) = α·σ(αx)·(1 − σ(αx)) (SpikingJelly's Sigmoid; α = 4 by default).
    | Sigmoid of alpha: float32
    /// g(x) = scale·max(0, 1 − |x|/width). MINT/MD-SNN: width 1, scale 1; a density when scale = 1/width.
    | Triangle of width: float32 * scale: float32
    /// g(x) = 1/width on |x| &lt; width/2, else 0: the straight-through window.
    | Rectangle of width: float32
    /// g(x) = exp(−x²/(2σ²)) / (σ√(2π)): the derivative of an erf-shaped step.
    | Gaussian of sigma: float32
    /// A user-supplied derivative g(x) (evaluated elementwise).
    | Custom of name: string * derivative: (float32 -> float32)

    override s.ToString() =
        match s with
        | ATan a -> sprintf "ATan(α=%g)" a
        | Sigmoid a -> sprintf "Sigmoid(α=%g)" a
        | Triangle(w, k) -> sprintf "Triangle(width=%g, scale=%g)" w k
        | Rectangle w -> sprintf "Rectangle(width=%g)" w
        | Gaussian s -> sprintf "Gaussian(σ=%g)" s
        | Custom(n, _) -> sprintf "Custom(%s)" n

module Surrogate =
    /// SpikingJelly's defaults and MINT's triangle.
    let atan = Surrogate.ATan 2.0f
    let sigmoid = Surrogate.Sigmoid 4.0f
    let triangle = Surrogate.Triangle(1.0f, 1.0f)

    /// Raises a SnnSpecException naming the bad parameter when a surrogate is impossible.
    let validate (s: Surrogate) =
        let positive name (v: float32) =
            if not (v > 0.0f) || Single.IsInfinity v then
                Errors.invalidArg (sprintf "Surrogate.%O" s) name v "a positive finite value"

        match s with
        | Surrogate.ATan a
        | Surrogate.Sigmoid a -> positive "alpha" a
        | Surrogate.Triangle(w, k) ->
            positive "width" w
            positive "scale" k
        | Surrogate.Rectangle w -> positive "width" w
        | Surrogate.Gaussian sigma -> positive "sigma" sigma
        | Surrogate.Custom _ -> ()

    /// g(x) for one value.
    let derivative (s: Surrogate) (x: float32) : float32 =
        match s with
        | Surrogate.ATan a ->
            let u = MathF.PI / 2.0f * a * x
            a / 2.0f / (1.0f + u * u)
        | Surrogate.Sigmoid a ->
            let z = 1.0f / (1.0f + MathF.Exp(-a * x))
            a * z * (1.0f - z)
        | Surrogate.Triangle(w, k) -> k * MathF.Max(0.0f, 1.0f - MathF.Abs x / w)
        | Surrogate.Rectangle w -> if MathF.Abs x < w / 2.0f then 1.0f / w else 0.0f
        | Surrogate.Gaussian sigma ->
            MathF.Exp(-x * x / (2.0f * sigma * sigma))
            / (sigma * MathF.Sqrt(2.0f * MathF.PI))
        | Surrogate.Custom(_, g) -> g x

    /// g(x) over a whole tensor (not differentiable: surrogate derivatives are used as constants).
    let derivativeTensor (s: Surrogate) (x: Tensor) =
        let d = (Diff.detach x).ToArray() |> Array.map (derivative s)
        Tensor.ofArray x.Shape d

    /// The spike function S = Θ(x) with the surrogate's derivative in the backward pass.
    let spike (s: Surrogate) (x: Tensor) =
        Diff.customOp (fun xs -> Tensor.geScalar 0.0f xs[0]) (fun xs _ g -> [| g * derivativeTensor s xs[0] |]) [| x |]
