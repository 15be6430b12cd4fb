namespace SnnSpec

open System
open SnnSpec.Kernels

/// Batch-norm hyper-parameters. Momentum m ∈ [0, 1] weights the new batch statistic in the running
/// average (PyTorch's convention: running ← (1 − m)·running + m·batch); Eps ≥ 0 is added to the variance.
type BatchNormConfig =
    {
        Momentum: float32
        Eps: float32
    }

    /// PyTorch's defaults: momentum 0.1, eps 1e-5.
    static member Default = { Momentum = 0.1f; Eps = 1e-5f }

/// Batch-norm running statistics, one value per channel ([C] each), as an explicit value.
type BatchNormState =
    {
        Mean: Tensor
        Var: Tensor
    }

    /// The initial state for C channels: mean 0, variance 1.
    static member Init(channels: int) =
        {
            Mean = Tensor.zeros [| channels |]
            Var = Tensor.ones [| channels |]
        }

/// Per-channel batch-norm kernels over x viewed as [N, C, S] (S = product of the trailing axes).
/// Channels run in parallel; each channel walks its N contiguous rows of length S.
module internal BatchNormKernel =
    let private grain (perChannel: int) = max 1 (32768 / max 1 perChannel)

    // x [N, C] (no trailing axes): the same computations vectorised across a block of channels,
    // each row contributing a contiguous span of the block; blocks run in parallel.
    let private forwardColumns
        (computeStats: bool)
        (eps: float32)
        (x: float32[])
        (xo: int)
        (n: int)
        (c: int)
        (gamma: float32[])
        (go: int)
        (beta: float32[])
        (bo: int)
        (mean: float32[])
        (invstd: float32[])
        (varB: float32[])
        (y: float32[])
        =
        Par.forChunks c (max 16 (32768 / max 1 n)) (fun c0 c1 ->
            let w = c1 - c0
            let mu = Span(mean, c0, w)
            let ist = Span(invstd, c0, w)

            if computeStats then
                let acc = Span(varB, c0, w)
                mu.Clear()

                for b in 0 .. n - 1 do
                    TP.Add(Span.op_Implicit mu, ReadOnlySpan(x, xo + b * c + c0, w), mu)

                TP.Divide(Span.op_Implicit mu, float32 n, mu)
                acc.Clear()

                for b in 0 .. n - 1 do
                    let yr = Span(y, b * c + c0, w)
                    TP.Subtract(ReadOnlySpan(x, xo + b * c + c0, w), Span.op_Implicit mu, yr)
                    TP.MultiplyAdd(Span.op_Implicit yr, Span.op_Implicit yr, Span.op_Implicit acc, acc)

                TP.Divide(Span.op_Implicit acc, float32 n, acc)
                TP.Add(Span.op_Implicit acc, eps, ist)
                TP.ReciprocalSqrt(Span.op_Implicit ist, ist)

            let a = Array.zeroCreate<float32> w
            TP.Multiply(ReadOnlySpan(gamma, go + c0, w), Span.op_Implicit ist, Span a)

            for b in 0 .. n - 1 do
                let yr = Span(y, b * c + c0, w)

                if not computeStats then
                    TP.Subtract(ReadOnlySpan(x, xo + b * c + c0, w), Span.op_Implicit mu, yr)

                TP.MultiplyAdd(Span.op_Implicit yr, ReadOnlySpan a, ReadOnlySpan(beta, bo + c0, w), yr))

    let private backwardColumns
        (batchStats: bool)
        (x: float32[])
        (xo: int)
        (g: float32[])
        (gOff: int)
        (n: int)
        (c: int)
        (gamma: float32[])
        (go: int)
        (mean: float32[])
        (invstd: float32[])
        (dx: float32[])
        (dgamma: float32[])
        (dbeta: float32[])
        =
        Par.forChunks c (max 16 (32768 / max 1 n)) (fun c0 c1 ->
            let w = c1 - c0
            let mu = ReadOnlySpan(mean, c0, w)
            let ist = ReadOnlySpan(invstd, c0, w)
            let sg = Span(dbeta, c0, w)
            let sgx = Span(dgamma, c0, w)
            sg.Clear()
            sgx.Clear()

            for b in 0 .. n - 1 do
                let gr = ReadOnlySpan(g, gOff + b * c + c0, w)
                let d = Span(dx, b * c + c0, w)
                TP.Subtract(ReadOnlySpan(x, xo + b * c + c0, w), mu, d)
                TP.Add(Span.op_Implicit sg, gr, sg)
                TP.MultiplyAdd(gr, Span.op_Implicit d, Span.op_Implicit sgx, sgx)

            let a = Array.zeroCreate<float32> w
            let bC = Array.zeroCreate<float32> w
            let cC = Array.zeroCreate<float32> w

            for j in 0 .. w - 1 do
                a[j] <- gamma[go + c0 + j] * ist[j]

                if batchStats then
                    bC[j] <- -a[j] * ist[j] * ist[j] * sgx[j] / float32 n
                    cC[j] <- -a[j] * sg[j] / float32 n

            for b in 0 .. n - 1 do
                let d = Span(dx, b * c + c0, w)
                TP.Multiply(Span.op_Implicit d, ReadOnlySpan bC, d)
                TP.MultiplyAdd(ReadOnlySpan(g, gOff + b * c + c0, w), ReadOnlySpan a, Span.op_Implicit d, d)
                TP.Add(Span.op_Implicit d, ReadOnlySpan cC, d)

            TP.Multiply(Span.op_Implicit sgx, ist, sgx))

    /// Per-channel mean and biased variance of x viewed as [N, C, S], two passes per channel with
    /// float64 sums (as <c>forward</c> computes its batch statistics).
    let moments (x: float32[]) (xo: int) (n: int) (c: int) (s: int) (mean: float32[]) (var: float32[]) =
        let m = n * s

        Par.forChunks c (grain m) (fun c0 c1 ->
            let tmp = Array.zeroCreate<float32> s

            for ch in c0 .. c1 - 1 do
                let mutable sum = 0.0

                if s = 1 then
                    for b in 0 .. n - 1 do
                        sum <- sum + float x[xo + b * c + ch]
                else
                    for b in 0 .. n - 1 do
                        sum <- sum + float (TP.Sum(ReadOnlySpan(x, xo + (b * c + ch) * s, s)))

                let mu = float32 (sum / float m)
                let mutable ss = 0.0

                if s = 1 then
                    for b in 0 .. n - 1 do
                        let d = x[xo + b * c + ch] - mu
                        ss <- ss + float (d * d)
                else
                    for b in 0 .. n - 1 do
                        TP.Subtract(ReadOnlySpan(x, xo + (b * c + ch) * s, s), mu, Span tmp)
                        ss <- ss + float (TP.SumOfSquares(ReadOnlySpan tmp))

                mean[ch] <- mu
                var[ch] <- float32 (ss / float m))

    /// dx[b, ch, :] = (x − μ_c)·scale_c + shift_c over x viewed as [N, C, S] (the moments' backward pass;
    /// x − μ first, rather than scale·x − scale·μ, which cancels under a large mean).
    let centredAffine
        (x: float32[])
        (xo: int)
        (n: int)
        (c: int)
        (s: int)
        (mean: float32[])
        (scale: float32[])
        (shift: float32[])
        (dx: float32[])
        =
        Par.forChunks c (grain (n * s)) (fun c0 c1 ->
            for ch in c0 .. c1 - 1 do
                for b in 0 .. n - 1 do
                    let at = (b * c + ch) * s

                    if s = 1 then
                        dx[at] <- (x[xo + at] - mean[ch]) * scale[ch] + shift[ch]
                    else
                        let d = Span(dx, at, s)
                        TP.Subtract(ReadOnlySpan(x, xo + at, s), mean[ch], d)
                        TP.Multiply(Span.op_Implicit d, scale[ch], d)
                        TP.Add(Span.op_Implicit d, shift[ch], d))

    /// y = (x − μ_c)·γ_c·invstd_c + β_c. With computeStats, μ (mean) and invstd are first computed
    /// from the batch (biased variance, written to varB); otherwise they are read from mean/invstd.
    let forward
        (computeStats: bool)
        (eps: float32)
        (x: float32[])
        (xo: int)
        (n: int)
        (c: int)
        (s: int)
        (gamma: float32[])
        (go: int)
        (beta: float32[])
        (bo: int)
        (mean: float32[])
        (invstd: float32[])
        (varB: float32[])
        (y: float32[])
        =
        let m = n * s

        if s = 1 then
            forwardColumns computeStats eps x xo n c gamma go beta bo mean invstd varB y
        else
            Par.forChunks c (grain m) (fun c0 c1 ->
                for ch in c0 .. c1 - 1 do
                    if computeStats then
                        let mutable sum = 0.0

                        for b in 0 .. n - 1 do
                            sum <- sum + float (TP.Sum(ReadOnlySpan(x, xo + (b * c + ch) * s, s)))

                        let mu = float32 (sum / float m)
                        // Two-pass variance: Σ(x − μ)², with x − μ staged in y.
                        let mutable ss = 0.0

                        for b in 0 .. n - 1 do
                            let yr = Span(y, (b * c + ch) * s, s)
                            TP.Subtract(ReadOnlySpan(x, xo + (b * c + ch) * s, s), mu, yr)
                            ss <- ss + float (TP.SumOfSquares(Span.op_Implicit yr))

                        let v = float32 (ss / float m)
                        mean[ch] <- mu
                        varB[ch] <- v
                        invstd[ch] <- 1.0f / MathF.Sqrt(v + eps)

                    let mu = mean[ch]
                    let a = gamma[go + ch] * invstd[ch]
                    let bt = beta[bo + ch]

                    for b in 0 .. n - 1 do
                        let yr = Span(y, (b * c + ch) * s, s)

                        if computeStats then
                            TP.Multiply(Span.op_Implicit yr, a, yr)
                        else
                            TP.Subtract(ReadOnlySpan(x, xo + (b * c + ch) * s, s), mu, yr)
                            TP.Multiply(Span.op_Implicit yr, a, yr)

                        TP.Add(Span.op_Implicit yr, bt, yr))

    /// Gradients from g: dβ_c = Σ g, dγ_c = Σ g·x̂ with x̂ = (x − μ)·invstd, and
    /// dx = γ·invstd·(g − [Σ g]/M − x̂·[Σ g·x̂]/M) when the statistics came from the batch
    /// (training), dx = γ·invstd·g when they are constants (eval). M = N·S.
    let backward
        (batchStats: bool)
        (x: float32[])
        (xo: int)
        (g: float32[])
        (gOff: int)
        (n: int)
        (c: int)
        (s: int)
        (gamma: float32[])
        (go: int)
        (mean: float32[])
        (invstd: float32[])
        (dx: float32[])
        (dgamma: float32[])
        (dbeta: float32[])
        =
        let m = n * s

        if s = 1 then
            backwardColumns batchStats x xo g gOff n c gamma go mean invstd dx dgamma dbeta
        else
            Par.forChunks c (grain m) (fun c0 c1 ->
                // x − μ of one row, staged here rather than in dx so that dx may be g's own buffer.
                let d = Array.zeroCreate<float32> s

                for ch in c0 .. c1 - 1 do
                    let mu = mean[ch]
                    let istd = invstd[ch]
                    let mutable sg = 0.0
                    let mutable sgx = 0.0
                    // First pass: Σg and Σg(x − μ).
                    for b in 0 .. n - 1 do
                        let o = (b * c + ch) * s
                        let gr = ReadOnlySpan(g, gOff + o, s)
                        TP.Subtract(ReadOnlySpan(x, xo + o, s), mu, Span d)
                        sg <- sg + float (TP.Sum gr)
                        sgx <- sgx + float (TP.Dot(gr, ReadOnlySpan d))

                    dbeta[ch] <- float32 sg
                    dgamma[ch] <- float32 sgx * istd
                    let a = gamma[go + ch] * istd
                    // dx = a·g + bCoef·(x − μ) + cCoef
                    let bCoef, cCoef =
                        if batchStats then
                            -a * istd * istd * float32 sgx / float32 m, -a * float32 sg / float32 m
                        else
                            0.0f, 0.0f

                    for b in 0 .. n - 1 do
                        let o = (b * c + ch) * s
                        let dxr = Span(dx, o, s)
                        TP.Subtract(ReadOnlySpan(x, xo + o, s), mu, Span d)
                        TP.Multiply(ReadOnlySpan d, bCoef, Span d)
                        TP.MultiplyAdd(ReadOnlySpan(g, gOff + o, s), a, ReadOnlySpan d, dxr)

                        if cCoef <> 0.0f then
                            TP.Add(Span.op_Implicit dxr, cCoef, dxr))

/// Normalisation and regularisation layers as pure functions: batch norm with explicit running
/// state, layer norm, and inverted dropout driven by counter-based random keys.
[<AutoOpen>]
module NormOps =
    [<RequireQualifiedAccess; CompilationRepresentation(CompilationRepresentationFlags.ModuleSuffix)>]
    module Tensor =
        /// Batch normalisation over axis 1 of x [N, C] or [N, C, d₁, …]:
        /// y = γ_c·(x − μ_c)/√(σ²_c + eps) + β_c, statistics per channel c over every other axis (M values).
        /// Training: μ, σ² are the batch mean and BIASED variance, and the returned state is
        /// running ← (1 − m)·running + m·batch using the UNBIASED batch variance σ²·M/(M − 1).
        /// Eval: μ, σ² are the running statistics and the state is returned unchanged.
        /// Differentiable in x, γ [C] and β [C]; the running state is never differentiated.
        /// Eval-mode batch norm (running statistics) written over x's own buffer, for inference where
        /// the caller owns x exclusively and nothing differentiates: the same arithmetic as
        /// <c>batchNorm</c> with training = false. x is [N, C, …] with more than one value per
        /// (sample, channel) and offset 0; returns x.
        let internal batchNormEvalInPlace
            (config: BatchNormConfig)
            (gamma: Tensor)
            (beta: Tensor)
            (running: BatchNormState)
            (x: Tensor)
            : Tensor =
            let shape = x.ShapeRef
            let n, c = shape[0], shape[1]
            let s = Shape.numel shape[2..]
            let mean = Array.zeroCreate<float32> c
            let invstd = Array.zeroCreate<float32> c

            for ch in 0 .. c - 1 do
                mean[ch] <- running.Mean.Data[running.Mean.Offset + ch]
                invstd[ch] <- 1.0f / MathF.Sqrt(running.Var.Data[running.Var.Offset + ch] + config.Eps)

            BatchNormKernel.forward
                false
                config.Eps
                x.Data
                x.Offset
                n
                c
                s
                gamma.Data
                gamma.Offset
                beta.Data
                beta.Offset
                mean
                invstd
                (Array.zeroCreate c)
                x.Data

            x

        /// Per-channel batch moments of x [N, C] or [N, C, d₁, …]: the mean μ_c and the BIASED variance
        /// σ²_c = (1/M)·Σ (x − μ_c)² over every axis but 1 (M values per channel), two [C] tensors, in one
        /// fused kernel each way; the batch statistics FoldedBatchNorm folds into its conv (what
        /// <c>meanDims [0; 2; …]</c> and <c>varDims</c> compute in several passes). Backward:
        /// ∂L/∂x = (∂L/∂μ_c)/M + (∂L/∂σ²_c)·2(x − μ_c)/M.
        let channelMoments (x: Tensor) : Tensor * Tensor =
            let op = "Tensor.channelMoments"
            let shape = x.ShapeRef

            if shape.Length < 2 || shape[0] * Shape.numel shape[2..] < 1 then
                Errors.invalidArg
                    op
                    "x shape"
                    (Errors.showShape shape)
                    "[N, C] or [N, C, d1, ...] (channels on axis 1) with at least one value per channel"

            let n, c = shape[0], shape[1]
            let s = Shape.numel shape[2..]
            let m = float32 (n * s)
            let mean = Autograd.alloc [| c |]
            let var = Autograd.alloc [| c |]
            let mu = Array.zeroCreate<float32> c
            BatchNormKernel.moments x.Data x.Offset n c s mu var.Data
            Array.Copy(mu, mean.Data, c)
            let x0 = Autograd.detach x

            let outs =
                Autograd.recordMulti [| mean; var |] [| x |] (fun gs _ ->
                    let isSet (g: Tensor) = not (isNull (box g))
                    let gm, gv = gs[0], gs[1]
                    let scale = Array.zeroCreate<float32> c
                    let shift = Array.zeroCreate<float32> c

                    for ch in 0 .. c - 1 do
                        scale[ch] <-
                            if isSet gv then
                                2.0f * gv.Data[gv.Offset + ch] / m
                            else
                                0.0f

                        shift[ch] <- if isSet gm then gm.Data[gm.Offset + ch] / m else 0.0f

                    let dx = Autograd.alloc (Array.copy shape)
                    BatchNormKernel.centredAffine x0.Data x0.Offset n c s mu scale shift dx.Data
                    [| dx |])

            outs[0], outs[1]

        let batchNorm
            (config: BatchNormConfig)
            (training: bool)
            (gamma: Tensor)
            (beta: Tensor)
            (running: BatchNormState)
            (x: Tensor)
            : Tensor * BatchNormState =
            let op = "Tensor.batchNorm"
            let m = config.Momentum

            if not (m >= 0.0f && m <= 1.0f) then
                Errors.invalidArg op "Momentum" m "a value in [0, 1]"

            if not (config.Eps >= 0.0f && Single.IsFinite config.Eps) then
                Errors.invalidArg op "Eps" config.Eps "a finite value >= 0"

            let shape = x.ShapeRef

            if shape.Length < 2 then
                Errors.invalidArg op "x shape" (Errors.showShape shape) "[N, C] or [N, C, d1, ...] (channels on axis 1)"

            let n, c = shape[0], shape[1]
            let s = Shape.numel shape[2..]

            for name, t in
                [
                    "gamma", gamma
                    "beta", beta
                    "running.Mean", running.Mean
                    "running.Var", running.Var
                ] do
                if t.ShapeRef <> [| c |] then
                    Errors.shapeMismatch
                        op
                        [ shape; t.ShapeRef ]
                        (sprintf "%s must have shape [%d], one value per channel of x" name c)

            let count = n * s

            if training && count < 2 then
                Errors.invalidArg
                    op
                    "values per channel"
                    count
                    "more than 1 value per channel when training (N times the spatial size)"

            let mean = Array.zeroCreate<float32> c
            let invstd = Array.zeroCreate<float32> c
            let varB = Array.zeroCreate<float32> c

            if not training then
                for ch in 0 .. c - 1 do
                    mean[ch] <- running.Mean.Data[running.Mean.Offset + ch]
                    invstd[ch] <- 1.0f / MathF.Sqrt(running.Var.Data[running.Var.Offset + ch] + config.Eps)

            let y = Autograd.alloc shape

            BatchNormKernel.forward
                training
                config.Eps
                x.Data
                x.Offset
                n
                c
                s
                gamma.Data
                gamma.Offset
                beta.Data
                beta.Offset
                mean
                invstd
                varB
                y.Data

            let x0, g0 = Autograd.detach x, Autograd.detach gamma

            let out =
                Autograd.record y [| x; gamma; beta |] (fun g need ->
                    // The kernel reads each g element before writing dx there (rows with s > 1).
                    let dx =
                        if need[0] && s > 1 && g.Numel = x0.Numel && Autograd.overwritable g then
                            Autograd.view g shape
                        else
                            Autograd.alloc shape

                    let dgamma = Autograd.alloc [| c |]
                    let dbeta = Autograd.alloc [| c |]

                    BatchNormKernel.backward
                        training
                        x0.Data
                        x0.Offset
                        g.Data
                        g.Offset
                        n
                        c
                        s
                        g0.Data
                        g0.Offset
                        mean
                        invstd
                        dx.Data
                        dgamma.Data
                        dbeta.Data

                    [|
                        (if need[0] then dx else Autograd.noGrad)
                        (if need[1] then dgamma else Autograd.noGrad)
                        (if need[2] then dbeta else Autograd.noGrad)
                    |])

            let state =
                if training then
                    let unbias = float32 count / float32 (count - 1)

                    let update (old: Tensor) (batch: int -> float32) =
                        let r = Autograd.alloc [| c |]

                        for ch in 0 .. c - 1 do
                            r.Data[ch] <- (1.0f - m) * old.Data[old.Offset + ch] + m * batch ch

                        r

                    {
                        Mean = update running.Mean (fun ch -> mean[ch])
                        Var = update running.Var (fun ch -> varB[ch] * unbias)
                    }
                else
                    running

            out, state

        /// Layer normalisation over the trailing axes given by normalizedShape:
        /// y = γ ⊙ (x − μ)/√(σ² + eps) + β, μ and the biased σ² taken over those axes per leading index.
        /// γ and β have shape normalizedShape. Composite (differentiable through its parts).
        let layerNorm (normalizedShape: int[]) (eps: float32) (gamma: Tensor) (beta: Tensor) (x: Tensor) =
            let op = "Tensor.layerNorm"
            let k = normalizedShape.Length
            let shape = x.ShapeRef

            if k = 0 || shape.Length < k || shape[shape.Length - k ..] <> normalizedShape then
                Errors.shapeMismatch
                    op
                    [ shape; normalizedShape ]
                    "normalizedShape must be a non-empty suffix of x's shape"

            for name, t in [ "gamma", gamma; "beta", beta ] do
                if t.ShapeRef <> normalizedShape then
                    Errors.shapeMismatch
                        op
                        [ normalizedShape; t.ShapeRef ]
                        (sprintf "%s must have shape normalizedShape" name)

            if not (eps >= 0.0f && Single.IsFinite eps) then
                Errors.invalidArg op "eps" eps "a finite value >= 0"

            let dims = Array.init k (fun i -> shape.Length - k + i)
            let centred = x - Tensor.meanDims dims true x
            let var = Tensor.meanDims dims true (centred * centred)
            centred / Tensor.sqrt (var + eps) * gamma + beta

        let private checkP (op: string) (p: float32) =
            if not (p >= 0.0f && p < 1.0f) then
                Errors.invalidArg op "p" p "a drop probability in [0, 1)"

        /// The scaled keep-mask of inverted dropout: each element is 1/(1 − p) with probability 1 − p,
        /// else 0 (element i decided by draw i of rng, so a key always gives the same mask).
        /// Multiply several tensors by one mask to share it (e.g. across SNN time steps).
        let dropoutMask (rng: Rng) (p: float32) (shape: int[]) =
            checkP "Tensor.dropoutMask" p
            Shape.check "Tensor.dropoutMask" shape
            let mask = Autograd.alloc (Array.copy shape)
            let d = mask.Data
            let scale = 1.0f / (1.0f - p)

            Par.forChunks mask.Numel 16384 (fun s e ->
                for i in s .. e - 1 do
                    d[i] <- if Rng.uniform rng (int64 i) >= p then scale else 0.0f)

            mask

        /// Inverted dropout: training zeroes each element with probability p and scales the rest by
        /// 1/(1 − p), so E[y] = x; eval (or p = 0) is the identity. p ∈ [0, 1).
        /// Use a distinct key per layer and step (Rng.fold / Rng.split): equal keys give equal masks.
        let dropout (rng: Rng) (p: float32) (training: bool) (x: Tensor) =
            checkP "Tensor.dropout" p

            if not training || p = 0.0f then
                x
            else
                let mask = dropoutMask rng p x.ShapeRef
                let y = ElementwiseRaw.map2 x mask (fun v k -> v * k)
                Autograd.record y [| x |] (fun g _ -> [| ElementwiseRaw.map2 g mask (fun gv k -> gv * k) |])

        /// Inverted dropout with one mask of shape maskShape broadcast over x (NumPy rules; the
        /// broadcast must give x's shape). E.g. x [T, B, C, H, W] with maskShape [1, B, C, H, W]
        /// drops the same units at every time step. Eval (or p = 0) is the identity.
        let dropoutBroadcast (rng: Rng) (p: float32) (training: bool) (maskShape: int[]) (x: Tensor) =
            let op = "Tensor.dropoutBroadcast"
            checkP op p

            if Shape.broadcast op maskShape x.ShapeRef <> x.ShapeRef then
                Errors.shapeMismatch op [ x.ShapeRef; maskShape ] "the mask shape must broadcast to x's shape"

            if not training || p = 0.0f then
                x
            else
                x * dropoutMask rng p maskShape
