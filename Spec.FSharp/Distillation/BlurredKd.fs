namespace SnnSpec.Distillation

open System
open SnnSpec

/// Settings of blurred knowledge distillation.
type BlurredConfig =
    {
        /// λ: the probability that a (sample, channel) of the adapted student feature is dropped
        /// (default 0.15, the reference configs; a note claims 0.6 is best, and the paper may define
        /// λ as the kept fraction — here it is the drop probability).
        Lambda: float32
        /// α_bkd, the loss weight (default 2e-3, reference code).
        Alpha: float32
        /// Rescale the teacher feature by max(F_S′)/max(F_T) (global maxima over the batch tensor;
        /// the reference code's "clip" flag, off by default). The scale is detached.
        ClipRescale: bool
    }

/// Settings of BKDSNN's "mixed" loss CE + BKD + WSLD.
type MixedConfig =
    {
        /// The blurred-KD term.
        Blur: BlurredConfig
        /// WSLD temperature (default 2, the WSLD paper's setting; [R] for BKDSNN).
        WsldTau: float32
        /// WSLD weight w_dist (default 1, the BKDSNN reference configs' distill_weight).
        WsldWeight: float32
    }

/// Blurred knowledge distillation (BKDSNN, Xu et al. ECCV 2024, arXiv 2407.09083; reference code
/// Intelligent-Computing-Research-Group/BKDSNN @ dd6bd53, the Spikingformer and CIFAR10-DVS
/// scripts; methods.md §4a):
///   F_S′ = A(F_S)          1×1 conv C_S → C_T (with bias) only when C_S ≠ C_T
///   M = 1[u ≥ λ]            u ~ U(0, 1) per (sample, channel), shape [B, C_T, 1, 1], fresh per call
///   R = G(M ⊙ F_S′)         G = Conv3×3 → ReLU → Conv3×3, C_T → C_T, bias, padding 1
///   R ← mean_{h,w} R        only when the teacher feature is a vector [B, C_T]
///   L = α · (1/B) · Σ (R − F_T′)²
/// No 1/(1 − λ) rescale. The adapter and G are trained with the student and discarded at inference.
[<RequireQualifiedAccess>]
module BlurredKd =
    /// λ = 0.15, α = 2e-3, no teacher rescale (reference configs).
    let defaults =
        {
            Lambda = 0.15f
            Alpha = 2e-3f
            ClipRescale = false
        }

    /// BKD with the defaults, WSLD with τ = 2 and weight 1 (the reference configs).
    let mixedDefaults =
        {
            Blur = defaults
            WsldTau = 2.0f
            WsldWeight = 1.0f
        }

    /// PyTorch's Conv2d default initialisation: weight and bias U(−1/√fan_in, 1/√fan_in).
    let private conv (rng: Rng) (name: string) (cout: int) (cin: int) (k: int) =
        let bound = 1.0f / MathF.Sqrt(float32 (cin * k * k))

        [
            name + ".weight", Tensor.uniform (Rng.fold 1 rng) -bound bound [| cout; cin; k; k |]
            name + ".bias", Tensor.uniform (Rng.fold 2 rng) -bound bound [| cout |]
        ]

    /// The trainable parameters of the loss: "adapter.weight/bias" (only when the channel counts
    /// differ), "restore.conv1.weight/bias" and "restore.conv2.weight/bias" (3×3, C_T → C_T),
    /// initialised like PyTorch's Conv2d default from the seed.
    let init (seed: int) (studentChannels: int) (teacherChannels: int) =
        if studentChannels < 1 || teacherChannels < 1 then
            Errors.invalidArg "BlurredKd.init" "channels" (studentChannels, teacherChannels) "positive channel counts"

        let rng = Rng.create seed

        let adapter =
            if studentChannels <> teacherChannels then
                conv (Rng.fold 10 rng) "adapter" teacherChannels studentChannels 1
            else
                []

        Parameters.ofList (
            adapter
            @ conv (Rng.fold 20 rng) "restore.conv1" teacherChannels teacherChannels 3
            @ conv (Rng.fold 30 rng) "restore.conv2" teacherChannels teacherChannels 3
        )

    /// The channel mask M = 1[u ≥ λ], u ~ U(0, 1) from key rng, shape [B, C, 1, 1] (constant over
    /// h and w; E[M] = 1 − λ). The same key gives the same mask.
    let mask (lambda: float32) (rng: Rng) (batch: int) (channels: int) =
        if not (lambda >= 0.0f && lambda <= 1.0f) then
            Errors.invalidArg "BlurredKd.mask" "Lambda" lambda "a drop probability in [0, 1]"

        Tensor.geScalar lambda (Tensor.rand rng [| batch; channels; 1; 1 |])

    /// G(x) = conv2(ReLU(conv1(x))), both 3×3 with padding 1 and bias.
    let restore (ps: Parameters) (x: Tensor) =
        let c1 =
            Tensor.conv2d 1 1 ps["restore.conv1.weight"] (Some ps["restore.conv1.bias"]) x

        Tensor.conv2d 1 1 ps["restore.conv2.weight"] (Some ps["restore.conv2.bias"]) (Tensor.relu c1)

    /// L_BKD (see the module summary). ps from <c>init</c>; rng draws this call's mask (pass a new
    /// key each step, e.g. Rng.fold step); studentFeature [B, C_S, h, w] (time-averaged);
    /// teacherFeature [B, C_T, h, w] (CNN teacher) or [B, C_T] (ViT teacher: R is spatially
    /// averaged). The teacher is detached.
    let loss (cfg: BlurredConfig) (ps: Parameters) (rng: Rng) (studentFeature: Tensor) (teacherFeature: Tensor) =
        let op = "BlurredKd.loss"
        KdShapes.nonNegativeFinite op "Alpha" cfg.Alpha
        let s, t = studentFeature.ShapeRef, teacherFeature.ShapeRef

        if s.Length <> 4 then
            Errors.shapeMismatch
                op
                [ s; t ]
                "the student feature must be a map [B, C_S, h, w]; tap a feature map, e.g. the zoo conv models' \"feature_map\" (Probes.featureMap), not the pooled \"feature\""

        if t.Length <> 4 && t.Length <> 2 then
            Errors.shapeMismatch op [ s; t ] "the teacher feature must be a map [B, C_T, h, w] or a vector [B, C_T]"

        if s[0] <> t[0] then
            Errors.shapeMismatch op [ s; t ] "teacher and student features have different batch sizes"

        let ct = t[1]
        let restoreIn = ps["restore.conv1.weight"].ShapeRef[1]

        if restoreIn <> ct then
            Errors.shapeMismatch
                op
                [ t; ps["restore.conv1.weight"].ShapeRef ]
                (sprintf
                    "the restoration block works on %d channels but the teacher feature has %d; initialise with BlurredKd.init seed %d %d"
                    restoreIn
                    ct
                    s[1]
                    ct)

        match ps.TryFind "adapter.weight" with
        | Some w when w.ShapeRef[1] <> s[1] ->
            Errors.shapeMismatch
                op
                [ s; w.ShapeRef ]
                (sprintf "the adapter expects %d student channels but the feature has %d" w.ShapeRef[1] s[1])
        | None when s[1] <> ct ->
            Errors.shapeMismatch
                op
                [ s; t ]
                (sprintf
                    "student channels %d differ from teacher channels %d and no adapter is configured; initialise with BlurredKd.init seed %d %d, which adds a 1x1 adapter"
                    s[1]
                    ct
                    s[1]
                    ct)
        | _ -> ()

        if t.Length = 4 && (s[2] <> t[2] || s[3] <> t[3]) then
            Errors.shapeMismatch
                op
                [ s; t ]
                "teacher and student feature maps have different spatial sizes; resize one of them or tap another layer"

        let adapted = FeatureKd.adapt ps studentFeature
        let m = mask cfg.Lambda rng s[0] ct
        let r = restore ps (adapted * m)

        let r =
            if t.Length = 2 then
                Tensor.meanDims [| 2; 3 |] false r
            else
                r

        let target =
            let ft = Diff.detach teacherFeature

            if cfg.ClipRescale then
                let maxS = (Tensor.max (Diff.detach adapted)).ToScalar()
                let maxT = (Tensor.max ft).ToScalar()

                if not (maxT > 0.0f) then
                    Errors.invalidArg
                        op
                        "teacherFeature"
                        (sprintf "max %g" maxT)
                        "a positive maximum for the clip rescale F_T · max(F_S′)/max(F_T) (a post-ReLU feature); turn ClipRescale off for a feature that is nowhere positive"

                ft * (maxS / maxT)
            else
                ft

        let d = r - target
        Tensor.sum (d * d) * (cfg.Alpha / float32 s[0])

    /// BKDSNN's "mixed" loss L_MD = CE(z_S, y) + L_BKD + L_WSLD (methods.md §4a). Student logits
    /// [B, K] (the head applied to the time-mean feature), teacher logits [B, K]. The CE has no label
    /// smoothing (the Spikingformer configs use 0.1 with mixup); a spec with its own "ce" term
    /// (LossTerm.crossEntropy smoothing) and separate bkd and wsld terms gives that variant.
    let mixed
        (cfg: MixedConfig)
        (ps: Parameters)
        (rng: Rng)
        (studentFeature: Tensor)
        (teacherFeature: Tensor)
        (teacherLogits: Tensor)
        (studentLogits: Tensor)
        (labels: int[])
        =
        let bkd = loss cfg.Blur ps rng studentFeature teacherFeature

        let wsld =
            LogitKd.wsld cfg.WsldTau cfg.WsldWeight teacherLogits studentLogits labels

        FeatureKd.crossEntropy 0.0f studentLogits labels + bkd + wsld
