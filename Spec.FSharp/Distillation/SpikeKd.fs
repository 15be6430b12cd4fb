namespace SnnSpec.Distillation

open SnnSpec

/// How a sliding window of spikes is compared ([R]: the poster does not settle it).
type WindowReading =
    /// The default: the m-norm of the window's difference vector ‖S_T[i:i+Δ] − S_S[i:i+Δ]‖_m.
    | RawWindows
    /// The absolute difference of the window spike counts |Σ_{i..i+Δ−1} S_T − Σ S_S| (the norm of
    /// a scalar, so m = 1 and m = 2 coincide).
    | WindowCounts

/// Weights of the combined "proposed" spike loss (equal weights by default, [R]).
type SpikeKdConfig =
    {
        /// Weight of the KL on spike counts (default 1).
        Kl: float32
        /// Weight of the full L1 (default 1).
        L1: float32
        /// Weight of the full squared L2 (default 1).
        L2: float32
        /// Weight of the sliding-window L1 (default 1).
        SlidingL1: float32
        /// Weight of the sliding-window L2 (default 1).
        SlidingL2: float32
        /// Weight of the student's own CE on its spike counts (default 1; 0 turns it off).
        Ce: float32
        /// Temperature of the KL on counts (default 1).
        Tau: float32
        /// Window length Δ of the sliding losses (default 2; must be ≤ T).
        Delta: int
        /// Window reading (default RawWindows).
        Reading: WindowReading
    }

/// SNN → SNN distillation on spike activation tensors (Kushawaha et al., "Distilling Spikes",
/// ICPR 2020, arXiv 2005.00288; no code was published, so normalisations are our [R] reading).
/// Tensors are [T, B, C] (time, batch, output neurons = classes; extra trailing axes allowed),
/// the teacher's always detached. Reduction: sum over time and neurons, mean over the batch; the
/// poster's Σ_{i,j,k} over the whole tensor is B times this value.
[<RequireQualifiedAccess>]
module SpikeKd =
    let defaults =
        {
            Kl = 1.0f
            L1 = 1.0f
            L2 = 1.0f
            SlidingL1 = 1.0f
            SlidingL2 = 1.0f
            Ce = 1.0f
            Tau = 1.0f
            Delta = 2
            Reading = RawWindows
        }

    let private axisName =
        function
        | 0 -> "time axis 0 (t)"
        | 1 -> "batch axis 1 (b)"
        | 2 -> "neuron/class axis 2 (c)"
        | i -> sprintf "axis %d" i

    /// Teacher and student spike tensors must both be [T, B, C, …] with equal sizes; the error
    /// names the first axis that differs.
    let check (op: string) (teacher: Tensor) (student: Tensor) =
        let t, s = teacher.ShapeRef, student.ShapeRef

        if t.Length < 3 || s.Length < 3 then
            Errors.shapeMismatch op [ t; s ] "spike tensors must be [T, B, C] (time, batch, neurons)"

        if t.Length <> s.Length then
            Errors.shapeMismatch op [ t; s ] "teacher and student spike tensors have different ranks"

        for i in 0 .. t.Length - 1 do
            if t[i] <> s[i] then
                Errors.shapeMismatch
                    op
                    [ t; s ]
                    (sprintf
                        "the %s differs: teacher %d vs student %d; teacher and student need the same T, batch and number of output neurons"
                        (axisName i)
                        t[i]
                        s[i])

    let private perSample (x: Tensor) (total: Tensor) = total / float32 x.ShapeRef[1]

    /// L1 = (1/B) Σ_{t,b,c} |S_T − S_S| (poster: Σ over the whole tensor). The subgradient at 0 is 0.
    let l1 (teacher: Tensor) (student: Tensor) =
        check "SpikeKd.l1" teacher student
        perSample student (Tensor.sum (Tensor.abs (student - Diff.detach teacher)))

    /// Squared L2 = (1/B) Σ_{t,b,c} (S_T − S_S)² (the poster's form without the square root).
    let l2 (teacher: Tensor) (student: Tensor) =
        check "SpikeKd.l2" teacher student
        let d = student - Diff.detach teacher
        perSample student (Tensor.sum (d * d))

    /// Spike counts over time n = Σ_t S, [B, C].
    let counts (spikes: Tensor) = Tensor.sumDims [| 0 |] false spikes

    /// KL on spike counts: τ² · mean_b Σ_c p_T,c (log p_T,c − log p_S,c) with
    /// p = softmax over classes of n/τ and n = Σ_t S the counts (LogitKd.kl on the counts treated
    /// as logits; rates n/T are the case τ = T up to the τ² factor). [T, B, C] tensors; τ > 0.
    let kl (tau: float32) (teacher: Tensor) (student: Tensor) =
        check "SpikeKd.kl" teacher student

        if teacher.Rank <> 3 then
            Errors.shapeMismatch "SpikeKd.kl" [ teacher.ShapeRef ] "the KL on counts needs output spikes [T, B, C]"

        LogitKd.kl tau (counts (Diff.detach teacher)) (counts student)

    /// ‖x‖₂ over axis 0 ([Δ, …] → […]) with gradient x/‖x‖ where ‖x‖ > 0 and 0 at ‖x‖ = 0
    /// (the minimal-norm subgradient; the naive √ would give 0·∞ = NaN).
    let private normDim0 (x: Tensor) =
        Diff.customOp
            (fun xs -> Tensor.sqrt (Tensor.sumDims [| 0 |] false (xs[0] * xs[0])))
            (fun xs out g ->
                let pos = Tensor.gtScalar 0.0f out
                let coef = g * pos / (out + (1.0f - pos))
                [| xs[0] * Tensor.unsqueeze 0 coef |])
            [| x |]

    /// Sliding-window loss (1/B) Σ_{b,c} Σ_{i=0}^{T−Δ} ‖S_T[i:i+Δ, b, c] − S_S[i:i+Δ, b, c]‖_m:
    /// windows of length Δ inside the sequence, stride 1, unsquared m-norm (m ∈ {1, 2}); with
    /// WindowCounts the windows' spike counts are compared instead. 1 ≤ Δ ≤ T.
    /// For m = 1 with RawWindows this is Σ_τ c_τ |d_τ| with c_τ = #{i : i ≤ τ < i + Δ}, so Δ = 1 and
    /// Δ = T both give the full L1.
    let slidingWith (reading: WindowReading) (m: int) (delta: int) (teacher: Tensor) (student: Tensor) =
        let op = "SpikeKd.sliding"
        check op teacher student
        let steps = student.ShapeRef[0]

        if m <> 1 && m <> 2 then
            Errors.invalidArg op "m" m "1 or 2"

        if delta < 1 || delta > steps then
            Errors.invalidArg op "delta" delta (sprintf "a window length in [1, T = %d]" steps)

        let d = student - Diff.detach teacher
        let windows = steps - delta + 1

        let total =
            match reading, m with
            | RawWindows, 1 ->
                // Each step weighted by the number of windows covering it.
                let c =
                    Array.init steps (fun t -> float32 (min t (windows - 1) - max 0 (t - delta + 1) + 1))

                let shape = Array.init student.Rank (fun i -> if i = 0 then steps else 1)
                Tensor.sum (Tensor.ofArray shape c * Tensor.abs d)
            | RawWindows, _ ->
                [
                    for i in 0 .. windows - 1 -> Tensor.sum (normDim0 (Tensor.narrow 0 i delta d))
                ]
                |> List.reduce (+)
            | WindowCounts, _ ->
                [
                    for i in 0 .. windows - 1 ->
                        Tensor.sum (Tensor.abs (Tensor.sumDims [| 0 |] false (Tensor.narrow 0 i delta d)))
                ]
                |> List.reduce (+)

        perSample student total

    /// Sliding-window L1 with raw windows: <c>slidingWith RawWindows 1 delta</c>.
    let slidingL1 (delta: int) (teacher: Tensor) (student: Tensor) =
        slidingWith RawWindows 1 delta teacher student

    /// Sliding-window L2 (unsquared norm per window) with raw windows; its gradient at a zero
    /// window is 0.
    let slidingL2 (delta: int) (teacher: Tensor) (student: Tensor) =
        slidingWith RawWindows 2 delta teacher student

    /// The combined "proposed" loss: Kl·KL_τ + L1·L1 + L2·L2 + SlidingL1·sL1_Δ + SlidingL2·sL2_Δ
    /// + Ce·CE(n_S, y), n_S the student's spike counts used as logits (weights in cfg; the poster's
    /// weights are unknown, equal weights are our default). Terms with weight 0 are skipped.
    /// teacher, student [T, B, C]; labels [B] (used only when Ce > 0).
    let proposed (cfg: SpikeKdConfig) (teacher: Tensor) (student: Tensor) (labels: int[]) =
        let op = "SpikeKd.proposed"
        check op teacher student

        for name, w in
            [
                "Kl", cfg.Kl
                "L1", cfg.L1
                "L2", cfg.L2
                "SlidingL1", cfg.SlidingL1
                "SlidingL2", cfg.SlidingL2
                "Ce", cfg.Ce
            ] do
            KdShapes.nonNegativeFinite op name w

        let s = student.ShapeRef

        if cfg.Ce > 0.0f then
            KdShapes.labels op s[1] s[2] labels

        let terms =
            [
                if cfg.Kl > 0.0f then
                    cfg.Kl * kl cfg.Tau teacher student
                if cfg.L1 > 0.0f then
                    cfg.L1 * l1 teacher student
                if cfg.L2 > 0.0f then
                    cfg.L2 * l2 teacher student
                if cfg.SlidingL1 > 0.0f then
                    cfg.SlidingL1 * slidingWith cfg.Reading 1 cfg.Delta teacher student
                if cfg.SlidingL2 > 0.0f then
                    cfg.SlidingL2 * slidingWith cfg.Reading 2 cfg.Delta teacher student
                if cfg.Ce > 0.0f then
                    cfg.Ce * Tensor.crossEntropyIdx (counts student) labels
            ]

        match terms with
        | [] -> Tensor.scalar 0.0f
        | _ -> List.reduce (+) terms
