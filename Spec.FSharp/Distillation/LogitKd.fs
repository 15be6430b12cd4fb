namespace SnnSpec.Distillation

open System
open SnnSpec

/// Logit distillation: Hinton's temperature-scaled KL, the soft cross-entropy variant and
/// weighted soft-label distillation (WSLD, Zhou et al. ICLR 2021, as used by BKDSNN).
/// Logits are [B, K]; the teacher is always detached, so no gradient reaches it.
[<RequireQualifiedAccess>]
module LogitKd =
    /// KL_τ(teacher ‖ student) = τ² · mean_b Σ_k p_T,k (log p_T,k − log p_S,k), with
    /// p = softmax(z/τ) over classes. Class-sum, batch-mean, × τ² (Hinton et al. 2015; the
    /// temporal-KD reference code's reduction, methods.md §1). teacher, student: [B, K] (or
    /// [B, K, …] with classes on axis 1); τ > 0. The teacher is detached.
    let kl (tau: float32) (teacher: Tensor) (student: Tensor) = Tensor.klDivLogits teacher student tau

    /// Per-sample soft cross-entropy CEsoft_τ(z_T, z_S)_b = −Σ_k p(z_T/τ)_b,k · log p(z_S/τ)_b,k,
    /// shape [B], without the τ² factor (methods.md §1; BKDSNN's WSLD term s_n). It differs from the
    /// per-sample KL by the teacher's entropy, so its gradient in z_S is the KL's. teacher, student
    /// [B, K]; the teacher is detached.
    let softCrossEntropyPerSample (tau: float32) (teacher: Tensor) (student: Tensor) =
        let op = "LogitKd.softCrossEntropy"
        KdShapes.positiveTau op tau
        KdShapes.logits2 op "teacher" teacher
        KdShapes.logits2 op "student" student
        KdShapes.sameBatchAndClasses op teacher student
        let pT = Tensor.softmax 1 (Diff.detach teacher / tau)
        -(Tensor.sumDim 1 (pT * Tensor.logSoftmax 1 (student / tau)))

    /// Batch-mean soft cross-entropy × τ²: τ² · mean_b CEsoft_τ(z_T, z_S)_b. Scaled like <c>kl</c>,
    /// so the two have identical gradients in the student logits and differ by the constant
    /// τ²·mean_b H(p_T). teacher, student [B, K]; the teacher is detached.
    let softCrossEntropy (tau: float32) (teacher: Tensor) (student: Tensor) =
        Tensor.mean (softCrossEntropyPerSample tau teacher student) * (tau * tau)

    /// Hard labels (class indices) or soft labels (a [B, K] probability tensor, e.g. mixup targets).
    type Labels =
        | Hard of int[]
        | Soft of Tensor

    let private perSampleCe (op: string) (logits: Tensor) (labels: Labels) =
        match labels with
        | Hard ys ->
            KdShapes.labels op logits.ShapeRef[0] logits.ShapeRef[1] ys
            Tensor.crossEntropyIdxWith Reduction.NoReduction 0.0f logits ys
        | Soft t ->
            if t.ShapeRef <> logits.ShapeRef then
                Errors.shapeMismatch
                    op
                    [ logits.ShapeRef; t.ShapeRef ]
                    "soft labels must be shaped like the logits [B, K]"

            Tensor.crossEntropySoftWith Reduction.NoReduction 0.0f logits (Diff.detach t)

    /// WSLD sample weights w_n = 1 − exp(−max(r_n, 0)) with r_n = CE(z_S, y)_n / (CE(z_T, y)_n + 1e-7),
    /// both cross-entropies at τ = 1 on detached logits (BKDSNN reference code, methods.md §4a).
    /// Shape [B], values in [0, 1) (computed in float64, capped at the largest float32 below 1), a
    /// constant (no gradient). w ≈ 0.632 when the two CEs are equal,
    /// → 0 as the student's CE → 0, → 1 when the student is much worse than the teacher.
    let wsldWeightsWith (teacher: Tensor) (student: Tensor) (labels: Labels) =
        let op = "LogitKd.wsld"
        KdShapes.logits2 op "teacher" teacher
        KdShapes.logits2 op "student" student
        KdShapes.sameBatchAndClasses op teacher student

        Diff.noGrad (fun () ->
            let ceS = (perSampleCe op (Diff.detach student) labels).ToArray()
            let ceT = (perSampleCe op (Diff.detach teacher) labels).ToArray()

            let w =
                Array.map2
                    (fun (s: float32) (t: float32) ->
                        let r = float s / (float t + 1e-7)
                        // In float64, then kept below 1 (the largest float32 < 1), which float32
                        // rounding of 1 − e^−r would otherwise reach for r ≳ 17.
                        min (float32 (1.0 - Math.Exp(-(max r 0.0)))) 0.99999994f)
                    ceS
                    ceT

            Tensor.ofArray [| w.Length |] w)

    /// <c>wsldWeightsWith</c> with hard labels.
    let wsldWeights (teacher: Tensor) (student: Tensor) (labels: int[]) =
        wsldWeightsWith teacher student (Hard labels)

    /// Weighted soft-label distillation L = weight · τ² · mean_n(w_n · s_n), where
    /// s_n = CEsoft_τ(z_T, z_S)_n (gradient flows into z_S) and w_n are the detached
    /// <c>wsldWeights</c> (BKDSNN's "wsld" term, methods.md §4a; WSLD: Zhou et al. ICLR 2021).
    /// teacher, student [B, K]; labels hard or soft. The teacher is detached.
    let wsldWith (tau: float32) (weight: float32) (teacher: Tensor) (student: Tensor) (labels: Labels) =
        let op = "LogitKd.wsld"
        KdShapes.nonNegativeFinite op "weight" weight
        KdShapes.positiveTau op tau
        let w = wsldWeightsWith teacher student labels
        let s = softCrossEntropyPerSample tau teacher student
        Tensor.mean (w * s) * (weight * tau * tau)

    /// <c>wsldWith</c> with hard labels: <c>wsld tau weight teacher student labels</c>.
    let wsld (tau: float32) (weight: float32) (teacher: Tensor) (student: Tensor) (labels: int[]) =
        wsldWith tau weight teacher student (Hard labels)
