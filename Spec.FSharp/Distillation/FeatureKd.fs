namespace SnnSpec.Distillation

open System
open SnnSpec

/// How a per-step output [T, B, K] becomes class scores [B, K] for a cross-entropy.
[<RequireQualifiedAccess>]
type TimeReadout =
    /// z̄ = (1/T) Σ_t z_t: mean logits, or firing rates of a spiking output.
    | Mean
    /// n = Σ_t z_t: spike counts of a spiking output population (Distilling Spikes, methods.md §5a).
    | Count

/// Plain feature distillation (FitNets / LaSNN style): MSE between a student feature and the
/// detached teacher feature, with an optional trainable 1×1 adapter; and the student's own
/// cross-entropy with label smoothing.
[<RequireQualifiedAccess>]
module FeatureKd =
    /// A 1×1 convolution C_S → C_T with bias, as Parameters "adapter.weight" [C_T, C_S, 1, 1] and
    /// "adapter.bias" [C_T], initialised like PyTorch's Conv2d default: U(−1/√C_S, 1/√C_S).
    let initAdapter (seed: int) (studentChannels: int) (teacherChannels: int) =
        if studentChannels < 1 || teacherChannels < 1 then
            Errors.invalidArg
                "FeatureKd.initAdapter"
                "channels"
                (studentChannels, teacherChannels)
                "positive channel counts"

        let rng = Rng.create seed
        let bound = 1.0f / MathF.Sqrt(float32 studentChannels)

        Parameters.ofList
            [
                "adapter.weight",
                Tensor.uniform (Rng.fold 1 rng) -bound bound [| teacherChannels; studentChannels; 1; 1 |]
                "adapter.bias", Tensor.uniform (Rng.fold 2 rng) -bound bound [| teacherChannels |]
            ]

    /// Applies the adapter in ps ("adapter.weight", "adapter.bias") to a feature [B, C_S, h, w] or
    /// [B, C_S] (treated as 1×1 maps); returns x unchanged when ps has no adapter.
    let adapt (ps: Parameters) (x: Tensor) =
        match ps.TryFind "adapter.weight" with
        | None -> x
        | Some w ->
            let op = "FeatureKd.adapt"
            let cin = w.ShapeRef[1]

            if x.Rank < 2 || x.ShapeRef[1] <> cin then
                Errors.shapeMismatch
                    op
                    [ x.ShapeRef; w.ShapeRef ]
                    (sprintf "the adapter expects %d student channels on axis 1" cin)

            match x.Rank with
            | 4 -> Tensor.conv2d 1 0 w (ps.TryFind "adapter.bias") x
            | 2 ->
                let b = x.ShapeRef[0]

                Tensor.conv2d 1 0 w (ps.TryFind "adapter.bias") (Tensor.reshape [| b; cin; 1; 1 |] x)
                |> Tensor.reshape [| b; w.ShapeRef[0] |]
            | _ -> Errors.invalidArg op "feature shape" (Errors.showShape x.ShapeRef) "a feature [B, C, h, w] or [B, C]"

    /// mean over all elements of (F_S − F_T)², the teacher detached. Shapes must match; the error
    /// names both and suggests an adapter (<c>mseAdapted</c>) or another tap.
    let mse (teacherFeature: Tensor) (studentFeature: Tensor) =
        if teacherFeature.ShapeRef <> studentFeature.ShapeRef then
            Errors.shapeMismatch
                "FeatureKd.mse"
                [ teacherFeature.ShapeRef; studentFeature.ShapeRef ]
                "teacher and student features differ; add a 1x1 adapter (FeatureKd.initAdapter + mseAdapted) or tap a layer whose shape matches"

        Tensor.mse studentFeature (Diff.detach teacherFeature)

    /// <c>mse</c> after the adapter in ps (if any) maps the student feature to the teacher's channels.
    let mseAdapted (ps: Parameters) (teacherFeature: Tensor) (studentFeature: Tensor) =
        mse teacherFeature (adapt ps studentFeature)

    /// Cross-entropy with label smoothing ε: target (1 − ε)·onehot(y) + ε/K, batch mean (PyTorch's
    /// label_smoothing). logits [B, K], or per-step [T, B, K] read out over time by <c>readout</c>:
    /// TimeReadout.Mean gives z̄ = (1/T) Σ_t z_t (the SNN readout, methods.md §1), TimeReadout.Count gives
    /// n = Σ_t z_t (spike counts, for a classifier that ends in a spiking population, methods.md §5a).
    /// For the per-step mean use TemporalKd.twce.
    let crossEntropyWith (readout: TimeReadout) (labelSmoothing: float32) (logits: Tensor) (labels: int[]) =
        let op = "FeatureKd.crossEntropyWith"

        let z =
            match logits.Rank, readout with
            | 2, _ -> logits
            | 3, TimeReadout.Mean -> Tensor.meanDims [| 0 |] false logits
            | 3, TimeReadout.Count -> Tensor.sumDims [| 0 |] false logits
            | _ -> Errors.invalidArg op "logits shape" (Errors.showShape logits.ShapeRef) "[B, K] or [T, B, K]"

        KdShapes.labels op z.ShapeRef[0] z.ShapeRef[1] labels
        Tensor.crossEntropyIdxWith Reduction.Mean labelSmoothing z labels

    /// <c>crossEntropyWith TimeReadout.Mean</c>: CE of the time-mean logits.
    let crossEntropy (labelSmoothing: float32) (logits: Tensor) (labels: int[]) =
        crossEntropyWith TimeReadout.Mean labelSmoothing logits labels
