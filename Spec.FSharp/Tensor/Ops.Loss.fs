namespace SnnSpec

open System
open SnnSpec.Kernels

/// How a loss combines its per-element (or per-sample) values.
[<RequireQualifiedAccess>]
type Reduction =
    /// The mean over all per-element values (rank 0).
    | Mean
    /// The sum over all per-element values (rank 0).
    | Sum
    /// The per-element values themselves.
    | NoReduction

/// Losses: cross-entropy (hard and soft labels, label smoothing), KL divergence, MSE, L1 and
/// binary cross-entropy with logits. Logits come first, targets second (PyTorch's order).
[<AutoOpen>]
module LossOps =
    let internal reduce (reduction: Reduction) (perElement: Tensor) =
        match reduction with
        | Reduction.Mean -> Tensor.mean perElement
        | Reduction.Sum -> Tensor.sum perElement
        | Reduction.NoReduction -> perElement

    let internal sameShape (op: string) (a: Tensor) (b: Tensor) =
        if a.ShapeRef <> b.ShapeRef then
            Errors.shapeMismatch op [ a.ShapeRef; b.ShapeRef ] "the two operands must have the same shape"

    /// Class targets in sample order, or a soft target tensor shaped like the logits.
    type internal CeTarget =
        | Hard of int[]
        | Soft of Tensor

    [<RequireQualifiedAccess; CompilationRepresentation(CompilationRepresentationFlags.ModuleSuffix)>]
    module Tensor =
        /// Logits [N, K, d₁, …] viewed as (N, K, S = Πdᵢ), and the per-sample shape [N, d₁, …].
        let private ceLayout (op: string) (logits: Tensor) =
            let s = logits.ShapeRef

            if s.Length < 2 then
                Errors.invalidArg
                    op
                    "logits shape"
                    (Errors.showShape s)
                    "logits of shape [N, K] or [N, K, d1, ...] (classes on axis 1)"

            let n, k = s[0], s[1]

            if k = 0 then
                Errors.invalidArg op "number of classes" 0 "at least one class on axis 1 of the logits"

            n, k, Shape.numel s[2..], Array.append [| n |] s[2..]

        let private crossEntropyCore
            (op: string)
            (reduction: Reduction)
            (eps: float32)
            (logits: Tensor)
            (target: CeTarget)
            (targetT: Tensor)
            =
            if not (eps >= 0.0f && eps <= 1.0f) then
                Errors.invalidArg op "labelSmoothing" eps "a value in [0, 1]"

            let n, k, inner, sampleShape = ceLayout op logits
            let logp = Autograd.alloc logits.ShapeRef
            SoftmaxKernel.forward true logits.Data logits.Offset logp.Data n k inner
            let per = Autograd.alloc sampleShape
            let pd = per.Data
            let lp = logp.Data
            let keep = 1.0f - eps
            let spread = eps / float32 k
            // Σₖ t′ₖ for each sample, with t′ = (1 − ε)t + ε/K.
            let tsum = Array.create (n * inner) 1.0f

            match target with
            | Hard labels ->
                for o in 0 .. n - 1 do
                    for i in 0 .. inner - 1 do
                        let y = labels[o * inner + i]
                        let mutable all = 0.0f

                        if eps > 0.0f then
                            for c in 0 .. k - 1 do
                                all <- all + lp[(o * k + c) * inner + i]

                        pd[o * inner + i] <- -(keep * lp[(o * k + y) * inner + i] + spread * all)
            | Soft t ->
                let td = t.Data
                let tOff = t.Offset

                for o in 0 .. n - 1 do
                    for i in 0 .. inner - 1 do
                        let mutable acc = 0.0f
                        let mutable ts = 0.0f

                        for c in 0 .. k - 1 do
                            let j = (o * k + c) * inner + i
                            let tv = keep * td[tOff + j] + spread
                            acc <- acc + tv * lp[j]
                            ts <- ts + tv

                        pd[o * inner + i] <- -acc
                        tsum[o * inner + i] <- ts

            let inputs =
                match target with
                | Hard _ -> [| logits |]
                | Soft _ -> [| logits; targetT |]

            let perT =
                Autograd.record per inputs (fun g need ->
                    let gd = g.Data
                    let go = g.Offset

                    let dx =
                        if need[0] then
                            // ∂/∂xₖ = g · (pₖ Σⱼ t′ⱼ − t′ₖ)
                            let dx = Autograd.alloc logits.ShapeRef
                            let d = dx.Data

                            for o in 0 .. n - 1 do
                                for i in 0 .. inner - 1 do
                                    let s = o * inner + i
                                    let gv = gd[go + s]

                                    for c in 0 .. k - 1 do
                                        let j = (o * k + c) * inner + i

                                        let tv =
                                            match target with
                                            | Hard labels -> (if c = labels[s] then keep else 0.0f) + spread
                                            | Soft t -> keep * t.Data[t.Offset + j] + spread

                                        d[j] <- gv * (MathF.Exp lp[j] * tsum[s] - tv)

                            dx
                        else
                            Autograd.noGrad

                    let dt =
                        if inputs.Length > 1 && need[1] then
                            // ∂/∂tₖ = −g · (1 − ε) · log pₖ
                            let dt = Autograd.alloc logits.ShapeRef

                            for o in 0 .. n - 1 do
                                for i in 0 .. inner - 1 do
                                    let gv = -keep * gd[go + o * inner + i]

                                    for c in 0 .. k - 1 do
                                        let j = (o * k + c) * inner + i
                                        dt.Data[j] <- gv * lp[j]

                            dt
                        else
                            Autograd.noGrad

                    if inputs.Length > 1 then [| dx; dt |] else [| dx |])

            reduce reduction perT

        let private checkLabels (op: string) (k: int) (labels: int[]) =
            for j in 0 .. labels.Length - 1 do
                let y = labels[j]

                if y < 0 || y >= k then
                    Errors.invalidArg
                        op
                        (sprintf "label at sample %d" j)
                        y
                        (sprintf "a class index in [0, %d) for %d classes" k k)

        /// Cross-entropy with integer class labels held in a float tensor:
        /// lossᵢ = −(1 − ε)·log pᵢ[yᵢ] − (ε/K)·Σₖ log pᵢₖ, p = softmax over axis 1, i.e. the target is
        /// (1 − ε)·onehot(y) + ε/K (PyTorch's label_smoothing). logits [N, K] or [N, K, d₁, …];
        /// labels [N] or [N, d₁, …] holding integers in [0, K). Reduced over all samples.
        let crossEntropyWith (reduction: Reduction) (labelSmoothing: float32) (logits: Tensor) (labels: Tensor) =
            let op = "Tensor.crossEntropy"
            let _, k, _, sampleShape = ceLayout op logits

            if labels.ShapeRef <> sampleShape then
                Errors.shapeMismatch
                    op
                    [ logits.ShapeRef; labels.ShapeRef ]
                    (sprintf
                        "labels must have the logits' shape without the class axis 1, i.e. %s"
                        (Errors.showShape sampleShape))

            let raw = labels.ToArray()

            let idx =
                raw
                |> Array.mapi (fun j v ->
                    if not (v >= 0.0f && v < float32 k && v = MathF.Floor v) then
                        Errors.invalidArg
                            op
                            (sprintf "label at sample %d" j)
                            v
                            (sprintf "an integer class index in [0, %d) for %d classes" k k)

                    int v)

            crossEntropyCore op reduction labelSmoothing logits (Hard idx) labels

        /// Mean cross-entropy of logits [N, K, …] against integer labels [N, …] stored as floats.
        let crossEntropy (logits: Tensor) (labels: Tensor) =
            crossEntropyWith Reduction.Mean 0.0f logits labels

        /// <c>crossEntropyWith</c> with labels as an int array in sample order (length N·d₁·…).
        let crossEntropyIdxWith (reduction: Reduction) (labelSmoothing: float32) (logits: Tensor) (labels: int[]) =
            let op = "Tensor.crossEntropyIdx"
            let _, k, _, sampleShape = ceLayout op logits

            if labels.Length <> Shape.numel sampleShape then
                Errors.shapeMismatch
                    op
                    [ logits.ShapeRef; [| labels.Length |] ]
                    (sprintf "expected %d labels (shape %s)" (Shape.numel sampleShape) (Errors.showShape sampleShape))

            checkLabels op k labels
            crossEntropyCore op reduction labelSmoothing logits (Hard(Array.copy labels)) logits

        /// Mean cross-entropy against int labels.
        let crossEntropyIdx (logits: Tensor) (labels: int[]) =
            crossEntropyIdxWith Reduction.Mean 0.0f logits labels

        /// Cross-entropy against soft targets t shaped like the logits (probabilities along axis 1):
        /// lossᵢ = −Σₖ t′ᵢₖ log pᵢₖ with t′ = (1 − ε)t + ε/K. Differentiable in logits and targets.
        let crossEntropySoftWith (reduction: Reduction) (labelSmoothing: float32) (logits: Tensor) (targets: Tensor) =
            let op = "Tensor.crossEntropySoft"
            ceLayout op logits |> ignore
            sameShape op logits targets
            crossEntropyCore op reduction labelSmoothing logits (Soft(Autograd.detach targets)) targets

        /// Mean soft-target cross-entropy.
        let crossEntropySoft (logits: Tensor) (targets: Tensor) =
            crossEntropySoftWith Reduction.Mean 0.0f logits targets

        /// KL divergence with PyTorch's kl_div semantics: input holds log-probabilities log q, target
        /// probabilities p, and the per-element value is p·(log p − log q) (0 where p = 0).
        /// Reduction.Mean averages over ALL elements as PyTorch's "mean" does; for the per-sample
        /// ("batchmean") value use Reduction.Sum divided by the batch size. Shapes must match.
        let klDivWith (reduction: Reduction) (input: Tensor) (target: Tensor) =
            let op = "Tensor.klDiv"
            sameShape op input target
            let q0, p0 = Autograd.detach input, Autograd.detach target

            let r =
                ElementwiseRaw.map2 q0 p0 (fun lq p -> if p > 0.0f then p * (MathF.Log p - lq) else 0.0f)

            let per =
                Autograd.record r [| input; target |] (fun g need ->
                    [|
                        (if need[0] then
                             ElementwiseRaw.map2 g p0 (fun gv p -> -gv * p)
                         else
                             Autograd.noGrad)
                        (if need[1] then
                             let d =
                                 ElementwiseRaw.map2 p0 q0 (fun p lq ->
                                     if p > 0.0f then MathF.Log p + 1.0f - lq else 0.0f)

                             g * d
                         else
                             Autograd.noGrad)
                    |])

            reduce reduction per

        /// <c>klDivWith Reduction.Mean</c>.
        let klDiv (input: Tensor) (target: Tensor) = klDivWith Reduction.Mean input target

        /// Distillation loss τ²·mean_b Σₖ p_T,k (log p_T,k − log p_S,k) with p_T = softmax(teacher/τ),
        /// p_S = softmax(student/τ) along axis 1 and the mean over every other position (the batch).
        /// The teacher is detached. Logits [B, K] or [B, K, …], same shapes; τ > 0.
        let klDivLogits (teacherLogits: Tensor) (studentLogits: Tensor) (tau: float32) =
            let op = "Tensor.klDivLogits"

            if not (tau > 0.0f && Single.IsFinite tau) then
                Errors.invalidArg op "tau" tau "a finite temperature > 0"

            sameShape op teacherLogits studentLogits
            ceLayout op studentLogits |> ignore
            let t = Autograd.detach teacherLogits / tau
            let logPT = Tensor.logSoftmax 1 t
            let pT = Tensor.softmax 1 t
            let logPS = Tensor.logSoftmax 1 (studentLogits / tau)
            let perSample = Tensor.sumDim 1 (pT * (logPT - logPS))
            Tensor.mean perSample * (tau * tau)

        /// Squared error (a − b)² per element, reduced. Shapes must match.
        let mseWith (reduction: Reduction) (prediction: Tensor) (target: Tensor) =
            sameShape "Tensor.mse" prediction target
            let d = prediction - target
            reduce reduction (d * d)

        /// Mean squared error mean((a − b)²).
        let mse (prediction: Tensor) (target: Tensor) =
            mseWith Reduction.Mean prediction target

        /// Absolute error |a − b| per element, reduced; the subgradient at a = b is 0. Shapes must match.
        let l1With (reduction: Reduction) (prediction: Tensor) (target: Tensor) =
            sameShape "Tensor.l1" prediction target
            reduce reduction (Tensor.abs (prediction - target))

        /// Mean absolute error mean(|a − b|).
        let l1 (prediction: Tensor) (target: Tensor) = l1With Reduction.Mean prediction target

        /// Binary cross-entropy on logits x with targets t ∈ [0, 1]:
        /// max(x, 0) − x·t + log(1 + e^−|x|), which never overflows. ∂/∂x = σ(x) − t, ∂/∂t = −x.
        let binaryCrossEntropyWithLogitsWith (reduction: Reduction) (logits: Tensor) (targets: Tensor) =
            let op = "Tensor.binaryCrossEntropyWithLogits"
            sameShape op logits targets
            let x0, t0 = Autograd.detach logits, Autograd.detach targets

            let r =
                ElementwiseRaw.map2 x0 t0 (fun x t ->
                    let e = MathF.Exp(-MathF.Abs x)

                    let l =
                        if e < 1e-4f then
                            e * (1.0f - 0.5f * e)
                        else
                            float32 (Math.Log(1.0 + float e))

                    MathF.Max(x, 0.0f) - x * t + l)

            let per =
                Autograd.record r [| logits; targets |] (fun g need ->
                    [|
                        (if need[0] then
                             g * ElementwiseRaw.map2 x0 t0 (fun x t -> 1.0f / (1.0f + MathF.Exp(-x)) - t)
                         else
                             Autograd.noGrad)
                        (if need[1] then -(g * x0) else Autograd.noGrad)
                    |])

            reduce reduction per

        /// Mean binary cross-entropy with logits.
        let binaryCrossEntropyWithLogits (logits: Tensor) (targets: Tensor) =
            binaryCrossEntropyWithLogitsWith Reduction.Mean logits targets
