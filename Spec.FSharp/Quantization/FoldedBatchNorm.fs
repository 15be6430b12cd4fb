namespace SnnSpec

open System

/// Batch norm folded into the convolution before it (MINT's QFConvBN2dLIF path, MD-SNN's
/// "quantized BN"): with σ = √(var + ε),
///   W' = W·γ/σ (per output channel),  b' = β + γ·(b − μ)/σ,
/// so conv(x, W') + b' = BN(conv(x, W) + b). Training uses the batch statistics of conv(x, W)
/// (and returns running statistics updated with PyTorch's convention and the unbiased variance);
/// eval uses the running statistics. The folded weight and bias can then be quantized.
module FoldedBatchNorm =
    /// The folded weight [O, C/g, K, K] and bias [O] for given statistics.
    let fold
        (eps: float32)
        (weight: Tensor)
        (bias: Tensor option)
        (gamma: Tensor)
        (beta: Tensor)
        (mean: Tensor)
        (var: Tensor)
        =
        let o = weight.Shape[0]
        let scale = gamma / Tensor.sqrt (var + eps)

        let w' =
            weight
            * Tensor.reshape (Array.append [| o |] (Array.create (weight.Rank - 1) 1)) scale

        let centred =
            match bias with
            | Some b -> b - mean
            | None -> -mean

        w', beta + scale * centred

    /// The eval-mode folded weight and bias (running statistics), computed exactly as
    /// <c>conv2d</c> does in eval mode: the form an exported model's integer weights are taken from.
    let foldEval
        (cfg: BatchNormConfig)
        (weight: Tensor)
        (bias: Tensor option)
        (gamma: Tensor)
        (beta: Tensor)
        (running: BatchNormState)
        =
        let mu =
            match bias with
            | Some b -> running.Mean - Diff.detach b
            | None -> running.Mean

        fold cfg.Eps weight None gamma beta mu running.Var

    /// conv → BN with the BN folded into the conv, the folded weight and bias passed through
    /// <c>quantizeWeight</c> and <c>quantizeBias</c> (identity for full precision). Returns the output and
    /// the (possibly updated) running statistics.
    let conv2d
        (cfg: BatchNormConfig)
        (training: bool)
        (stride: int)
        (padding: int)
        (quantizeWeight: Tensor -> Tensor)
        (quantizeBias: Tensor -> Tensor)
        (weight: Tensor)
        (bias: Tensor option)
        (gamma: Tensor)
        (beta: Tensor)
        (running: BatchNormState)
        (x: Tensor)
        =
        let o = weight.Shape[0]

        if gamma.Shape <> [| o |] || beta.Shape <> [| o |] then
            Errors.shapeMismatch
                "FoldedBatchNorm.conv2d"
                [ weight.Shape; gamma.Shape; beta.Shape ]
                "γ and β must be [O] for a weight [O, …]"

        let mean, var, state =
            if training then
                let y0 = Tensor.conv2d stride padding weight bias x
                let mu, v = Tensor.channelMoments y0
                let n = y0.Numel / o
                let unbiased = Diff.detach v * (float32 n / float32 (max 1 (n - 1)))
                let m = cfg.Momentum

                let state' =
                    {
                        Mean = running.Mean * (1.0f - m) + Diff.detach mu * m
                        Var = running.Var * (1.0f - m) + unbiased * m
                    }

                let mu' =
                    match bias with
                    | Some b -> mu - b
                    | None -> mu

                mu', v, state'
            else
                let mu' =
                    match bias with
                    | Some b -> running.Mean - Diff.detach b
                    | None -> running.Mean

                mu', running.Var, running
        // The statistics above already include the conv bias, so fold with bias = None.
        let w', b' = fold cfg.Eps weight None gamma beta mean var
        let y = Tensor.conv2d stride padding (quantizeWeight w') (Some(quantizeBias b')) x
        y, state
