namespace SnnSpec.Distillation

open SnnSpec

/// The self-distillation target of TWSD.
type SelfDistillationTarget =
    /// The paper's target: the detached time-mean ẑ = (1/T) Σ_t z_t (Yu et al. ICML 2025).
    | EnsembleMean
    /// The reference code's target (the default): per sample the mean of z_t over only the steps
    /// whose argmax equals the label, ẑ_b = Σ_t m_t,b z_t,b / (Σ_t m_t,b + 1e-8); 0 logits (a uniform
    /// target distribution) when no step is correct.
    | CorrectnessMasked

/// Weights and temperature of the temporal-wise distillation loss L = TWCE + α·TWKL + β·TWSD.
type TemporalConfig =
    {
        /// Weight α of TWKL (default 0.2).
        Alpha: float32
        /// Weight β of TWSD (default 0.5).
        Beta: float32
        /// Temperature τ of both KL terms (default 3: CIFAR / CIFAR10-DVS; the code uses 1 on ImageNet).
        Tau: float32
        /// TWSD target (default CorrectnessMasked, the reference code's).
        Target: SelfDistillationTarget
    }

/// Temporal-wise logit distillation for full-range timestep deployment (Yu et al., ICML 2025,
/// arXiv 2501.15925; reference code Intelli-Chip-Lab/snn_temporal_decoupling_distillation @ e3f5fd4).
/// Student logits are per step, [T, B, K]. The teacher is an ANN ([B, K]) or an SNN ([T_T, B, K],
/// read out by its time-mean (1/T_T) Σ_t z_T,t, the ensemble SNNs are deployed with). Every KL is
/// class-sum, batch-mean, × τ² (LogitKd.kl); teachers and self-distillation targets are detached.
[<RequireQualifiedAccess>]
module TemporalKd =
    /// α = 0.2, β = 0.5, τ = 3, correctness-masked target (reference code, CIFAR settings).
    let defaults =
        {
            Alpha = 0.2f
            Beta = 0.5f
            Tau = 3.0f
            Target = CorrectnessMasked
        }

    /// [T, B, K] → [T·B, K] (a view; step-major order).
    let private flat (z: Tensor) =
        let s = z.ShapeRef
        Tensor.reshape [| s[0] * s[1]; s[2] |] z

    /// The teacher's [B, K] logits (time-mean for an SNN teacher) broadcast to the student's steps
    /// and flattened to [T·B, K], detached.
    let private teacherFlat (op: string) (teacher: Tensor) (student: Tensor) =
        KdShapes.logits3 op "student" student
        KdShapes.sameBatchAndClasses op teacher student
        let zT = KdShapes.teacherMean op teacher
        let steps = student.ShapeRef[0]
        flat (Tensor.stack 0 (List.replicate steps zT))

    /// TWCE = (1/T) Σ_t CE(z_t, y), the per-step (TET-style) cross-entropy, batch-mean.
    /// student [T, B, K]; labels [B] in [0, K).
    let twce (student: Tensor) (labels: int[]) =
        let op = "TemporalKd.twce"
        KdShapes.logits3 op "student" student
        let s = student.ShapeRef
        KdShapes.labels op s[1] s[2] labels
        // The mean over T·B samples equals (1/T) Σ_t mean_b.
        Tensor.crossEntropyIdx (flat student) (Array.concat (List.replicate s[0] labels))

    /// TWKL = (1/T) Σ_t KL_τ(z_A ‖ z_t): every student step distilled from the teacher's logits.
    /// teacher [B, K] (ANN) or [T_T, B, K] (SNN, time-mean used); student [T, B, K]; τ > 0.
    let twkl (tau: float32) (teacher: Tensor) (student: Tensor) =
        let op = "TemporalKd.twkl"
        KdShapes.positiveTau op tau
        Tensor.klDivLogits (teacherFlat op teacher student) (flat student) tau

    /// The detached self-distillation target ẑ [B, K] of <c>twsd</c> (see SelfDistillationTarget).
    /// The labels are used only by CorrectnessMasked.
    let selfTarget (target: SelfDistillationTarget) (student: Tensor) (labels: int[]) =
        let op = "TemporalKd.selfTarget"
        KdShapes.logits3 op "student" student
        let s = student.ShapeRef
        let steps, b, k = s[0], s[1], s[2]
        let z = Diff.detach student

        match target with
        | EnsembleMean -> Diff.noGrad (fun () -> Tensor.meanDims [| 0 |] false z)
        | CorrectnessMasked ->
            KdShapes.labels op b k labels
            let zd = z.ToArray()
            let out = Array.zeroCreate (b * k)

            for bi in 0 .. b - 1 do
                let mutable count = 0.0

                for t in 0 .. steps - 1 do
                    let row = (t * b + bi) * k
                    // argmax, first on ties (as torch.argmax on CPU).
                    let mutable best = 0

                    for c in 1 .. k - 1 do
                        if zd[row + c] > zd[row + best] then
                            best <- c

                    if best = labels[bi] then
                        count <- count + 1.0

                        for c in 0 .. k - 1 do
                            out[bi * k + c] <- out[bi * k + c] + zd[row + c]

                let denom = float32 (count + 1e-8)

                for c in 0 .. k - 1 do
                    out[bi * k + c] <- out[bi * k + c] / denom

            Tensor.ofArray [| b; k |] out

    /// TWSD = (1/T) Σ_t KL_τ(ẑ ‖ z_t) with the detached target ẑ = <c>selfTarget target</c>.
    /// student [T, B, K]; labels [B] (used by CorrectnessMasked).
    let twsd (target: SelfDistillationTarget) (tau: float32) (student: Tensor) (labels: int[]) =
        let op = "TemporalKd.twsd"
        KdShapes.positiveTau op tau
        let zHat = selfTarget target student labels
        Tensor.klDivLogits (teacherFlat op zHat student) (flat student) tau

    /// L = TWCE + α·TWKL + β·TWSD (Yu et al.; defaults in <c>defaults</c>). teacher [B, K] or
    /// [T_T, B, K]; student [T, B, K]; labels [B].
    let temporal (cfg: TemporalConfig) (teacher: Tensor) (student: Tensor) (labels: int[]) =
        let op = "TemporalKd.temporal"
        KdShapes.nonNegativeFinite op "Alpha" cfg.Alpha
        KdShapes.nonNegativeFinite op "Beta" cfg.Beta
        let ce = twce student labels
        let kl = twkl cfg.Tau teacher student
        let sd = twsd cfg.Target cfg.Tau student labels
        ce + cfg.Alpha * kl + cfg.Beta * sd
