namespace SnnSpec

/// Stochastic gradient descent with momentum (PyTorch's form: v ← μ·v + g (+ wd·w); Nesterov uses
/// g + μ·v), and Adam/AdamW (Kingma & Ba 2015; decoupled weight decay of Loshchilov & Hutter 2019).
/// Optimizers are pure: step config state params grads → params', state'.
type SgdConfig =
    {
        LearningRate: float32
        Momentum: float32
        Nesterov: bool
        WeightDecay: float32
    }

    static member Default =
        {
            LearningRate = 0.1f
            Momentum = 0.9f
            Nesterov = false
            WeightDecay = 0.0f
        }

type AdamConfig =
    {
        LearningRate: float32
        Beta1: float32
        Beta2: float32
        Eps: float32
        WeightDecay: float32
        /// True for AdamW (decay applied to the weights, not added to the gradient).
        Decoupled: bool
    }

    static member Default =
        {
            LearningRate = 1e-3f
            Beta1 = 0.9f
            Beta2 = 0.999f
            Eps = 1e-8f
            WeightDecay = 0.0f
            Decoupled = false
        }

/// Optimizer state: per-parameter buffers and the step count.
type OptimizerState =
    {
        Step: int
        First: Parameters option
        Second: Parameters option
    }

    static member Empty =
        {
            Step = 0
            First = None
            Second = None
        }

module Optim =
    let private checkLr op (lr: float32) =
        if not (lr > 0.0f) || System.Single.IsInfinity lr then
            Errors.invalidArg op "LearningRate" lr "a positive finite learning rate"

    /// One SGD step.
    let sgd
        (cfg: SgdConfig)
        (state: OptimizerState)
        (ps: Parameters)
        (grads: Parameters)
        : Parameters * OptimizerState =
        checkLr "Optim.sgd" cfg.LearningRate

        let g =
            if cfg.WeightDecay = 0.0f then
                grads
            else
                Parameters.map2 (fun _ g w -> g + w * cfg.WeightDecay) grads ps

        if cfg.Momentum = 0.0f then
            Parameters.map2 (fun _ w g -> w - g * cfg.LearningRate) ps g, { state with Step = state.Step + 1 }
        else
            let v =
                match state.First with
                | None -> g
                | Some v -> Parameters.map2 (fun _ v g -> v * cfg.Momentum + g) v g

            let d =
                if cfg.Nesterov then
                    Parameters.map2 (fun _ g v -> g + v * cfg.Momentum) g v
                else
                    v

            Parameters.map2 (fun _ w d -> w - d * cfg.LearningRate) ps d,
            { state with
                Step = state.Step + 1
                First = Some v
            }

    /// One Adam (or AdamW) step with bias correction.
    let adam
        (cfg: AdamConfig)
        (state: OptimizerState)
        (ps: Parameters)
        (grads: Parameters)
        : Parameters * OptimizerState =
        checkLr "Optim.adam" cfg.LearningRate
        let t = state.Step + 1

        let g =
            if cfg.WeightDecay = 0.0f || cfg.Decoupled then
                grads
            else
                Parameters.map2 (fun _ g w -> g + w * cfg.WeightDecay) grads ps

        let m =
            match state.First with
            | None -> Parameters.map (fun _ g -> g * (1.0f - cfg.Beta1)) g
            | Some m -> Parameters.map2 (fun _ m g -> m * cfg.Beta1 + g * (1.0f - cfg.Beta1)) m g

        let v =
            match state.Second with
            | None -> Parameters.map (fun _ g -> g * g * (1.0f - cfg.Beta2)) g
            | Some v -> Parameters.map2 (fun _ v g -> v * cfg.Beta2 + g * g * (1.0f - cfg.Beta2)) v g

        let c1 = 1.0f - pown cfg.Beta1 t
        let c2 = 1.0f - pown cfg.Beta2 t
        let stepSize = cfg.LearningRate / c1

        let decayed =
            if cfg.Decoupled && cfg.WeightDecay <> 0.0f then
                Parameters.map (fun _ w -> w * (1.0f - cfg.LearningRate * cfg.WeightDecay)) ps
            else
                ps

        let update =
            Parameters.map2 (fun _ m v -> m * stepSize / (Tensor.sqrt (v / c2) + cfg.Eps)) m v

        Parameters.map2 (fun _ w u -> w - u) decayed update,
        {
            Step = t
            First = Some m
            Second = Some v
        }
