namespace SnnSpec

open System

/// A learning-rate schedule as a value, evaluated per optimizer step. Durations are in epochs
/// (fractions allowed) and converted with the number of steps per epoch.
[<RequireQualifiedAccess>]
type LrSchedule =
    /// The base rate throughout.
    | Constant
    /// Cosine annealing min + (base − min)·(1 + cos(π·s/S))/2 over the S steps of training: the
    /// base rate at step 0, MinLr reached at s = S, just after the last step (SGDR without restarts,
    /// Loshchilov & Hutter 2017; PyTorch's CosineAnnealingLR stepped per batch with T_max = S).
    | Cosine of minLr: float32
    /// base · gamma^⌊epoch / every⌋ (PyTorch's StepLR stepped once per epoch).
    | Step of everyEpochs: int * gamma: float32
    /// base · gamma^(number of milestones ≤ epoch) (MultiStepLR).
    | MultiStep of milestones: int list * gamma: float32
    /// A linear ramp base·(s + 1)/W over the first W = round(epochs · stepsPerEpoch) steps, then the
    /// inner schedule over the remaining steps (its step 0 at the first step after the ramp).
    | Warmup of epochs: float * after: LrSchedule

/// The update rule of the trainer's optimizer.
[<RequireQualifiedAccess>]
type OptimizerKind =
    /// SGD with momentum μ (PyTorch's form), optionally Nesterov; weight decay added to the gradient.
    | Sgd of momentum: float32 * nesterov: bool
    /// Adam with L2 weight decay added to the gradient (Kingma & Ba 2015).
    | Adam of beta1: float32 * beta2: float32 * eps: float32
    /// AdamW: decoupled weight decay w ← w·(1 − lr·wd) (Loshchilov & Hutter 2019).
    | AdamW of beta1: float32 * beta2: float32 * eps: float32

    static member SgdMomentum = Sgd(0.9f, false)
    static member Nesterov = Sgd(0.9f, true)
    static member AdamDefault = Adam(0.9f, 0.999f, 1e-8f)
    static member AdamWDefault = AdamW(0.9f, 0.999f, 1e-8f)

/// Which parameters weight decay applies to, by name.
[<RequireQualifiedAccess>]
type WeightDecayRule =
    | All
    /// Every parameter except biases ("….bias") and the γ/β of normalisation layers (the usual
    /// "no decay on BN and bias" of torchvision/timm recipes).
    | SkipNormAndBias
    /// Decay exactly the names for which the predicate holds.
    | Custom of decayed: (string -> bool)

module Schedule =
    let private check (s: LrSchedule) =
        let rec go s =
            match s with
            | LrSchedule.Constant -> ()
            | LrSchedule.Cosine m ->
                if not (m >= 0.0f && Single.IsFinite m) then
                    Errors.invalidArg "Schedule" "Cosine minLr" m "a finite rate >= 0"
            | LrSchedule.Step(e, g) ->
                if e < 1 || not (g > 0.0f) then
                    Errors.invalidArg "Schedule" "Step(everyEpochs, gamma)" (e, g) "everyEpochs >= 1 and gamma > 0"
            | LrSchedule.MultiStep(_, g) ->
                if not (g > 0.0f) then
                    Errors.invalidArg "Schedule" "MultiStep gamma" g "gamma > 0"
            | LrSchedule.Warmup(e, inner) ->
                if not (e >= 0.0) then
                    Errors.invalidArg "Schedule" "Warmup epochs" e "a duration >= 0 epochs"

                go inner

        go s

    /// The rate at optimizer step <c>step</c> (0-based) of <c>totalSteps</c>, with
    /// <c>stepsPerEpoch</c> steps per epoch and base rate <c>baseLr</c>.
    let rate (schedule: LrSchedule) (baseLr: float32) (stepsPerEpoch: int) (totalSteps: int) (step: int) =
        check schedule

        if stepsPerEpoch < 1 then
            Errors.invalidArg "Schedule.rate" "stepsPerEpoch" stepsPerEpoch "at least 1"

        let rec go s (step: int) (total: int) =
            let epoch = step / stepsPerEpoch

            match s with
            | LrSchedule.Constant -> baseLr
            | LrSchedule.Cosine minLr ->
                let span = max 1 total
                let f = float (min step span) / float span
                minLr + (baseLr - minLr) * float32 (0.5 * (1.0 + Math.Cos(Math.PI * f)))
            | LrSchedule.Step(every, gamma) -> baseLr * pown gamma (epoch / every)
            | LrSchedule.MultiStep(ms, gamma) ->
                baseLr * pown gamma (ms |> List.filter (fun m -> m <= epoch) |> List.length)
            | LrSchedule.Warmup(epochs, inner) ->
                let w = int (Math.Round(epochs * float stepsPerEpoch))

                if step < w then
                    baseLr * float32 (step + 1) / float32 w
                else
                    go inner (step - w) (max 1 (total - w))

        go schedule step totalSteps

/// The trainer's optimizer step on top of <c>Optim</c>: per-name weight decay, a learning rate
/// per step and global-norm gradient clipping.
module Optimizer =
    /// Whether a parameter decays under the rule; normNames are the normalisation layers' full names.
    let decays (rule: WeightDecayRule) (normNames: Set<string>) (name: string) =
        match rule with
        | WeightDecayRule.All -> true
        | WeightDecayRule.Custom f -> f name
        | WeightDecayRule.SkipNormAndBias ->
            let i = name.LastIndexOf '.'
            let layer = if i < 0 then "" else name.Substring(0, i)
            not (name.EndsWith ".bias" || normNames.Contains layer)

    /// The global L2 norm √(Σ_p ‖g_p‖²) of a gradient.
    let globalNorm (grads: Parameters) =
        let mutable acc = 0.0

        for t in Parameters.values grads do
            let d = t.ToArray()

            for v in d do
                acc <- acc + float v * float v

        sqrt acc

    /// Scales the gradient by maxNorm / ‖g‖ when ‖g‖ > maxNorm (PyTorch's clip_grad_norm_);
    /// returns the clipped gradient and the norm before clipping.
    let clipByGlobalNorm (maxNorm: float32) (grads: Parameters) =
        if not (maxNorm > 0.0f) then
            Errors.invalidArg "Optimizer.clipByGlobalNorm" "maxNorm" maxNorm "a positive norm"

        let n = globalNorm grads

        if n > float maxNorm then
            let s = float32 (float maxNorm / (n + 1e-6))
            Parameters.map (fun _ g -> g * s) grads, n
        else
            grads, n

    /// Smallest value a learnable quantizer scale (a parameter named "….alpha") keeps after a step.
    [<Literal>]
    let ScaleFloor = 1e-6f

    /// Projects learnable quantizer scales back to ≥ ScaleFloor: an optimizer step (Adam moves every
    /// parameter by about the learning rate) must not make a scale zero or negative, which the
    /// quantizers reject. LSQ and MINT implementations clamp their scales the same way.
    let projectScales (ps: Parameters) =
        Parameters.map
            (fun n w ->
                if n.EndsWith ".alpha" then
                    Tensor.maximum w (Tensor.scalar ScaleFloor)
                else
                    w)
            ps

    let private rawStep
        (kind: OptimizerKind)
        (lr: float32)
        (wd: float32)
        (decayed: string -> bool)
        (state: OptimizerState)
        (ps: Parameters)
        (grads: Parameters)
        =
        let coupled () =
            if wd = 0.0f then
                grads
            else
                Parameters.map2 (fun n g w -> if decayed n then g + w * wd else g) grads ps

        match kind with
        | OptimizerKind.Sgd(m, nesterov) ->
            Optim.sgd
                {
                    LearningRate = lr
                    Momentum = m
                    Nesterov = nesterov
                    WeightDecay = 0.0f
                }
                state
                ps
                (coupled ())
        | OptimizerKind.Adam(b1, b2, eps) ->
            Optim.adam
                {
                    LearningRate = lr
                    Beta1 = b1
                    Beta2 = b2
                    Eps = eps
                    WeightDecay = 0.0f
                    Decoupled = false
                }
                state
                ps
                (coupled ())
        | OptimizerKind.AdamW(b1, b2, eps) ->
            let decayedPs =
                if wd = 0.0f then
                    ps
                else
                    Parameters.map (fun n w -> if decayed n then w * (1.0f - lr * wd) else w) ps

            Optim.adam
                {
                    LearningRate = lr
                    Beta1 = b1
                    Beta2 = b2
                    Eps = eps
                    WeightDecay = 0.0f
                    Decoupled = false
                }
                state
                decayedPs
                grads

    /// One step at rate lr with weight decay wd on the names <c>decayed</c> accepts; learnable
    /// quantizer scales are then projected to stay positive (see projectScales).
    let step
        (kind: OptimizerKind)
        (lr: float32)
        (wd: float32)
        (decayed: string -> bool)
        (state: OptimizerState)
        (ps: Parameters)
        (grads: Parameters)
        =
        let ps', state' = rawStep kind lr wd decayed state ps grads
        projectScales ps', state'
