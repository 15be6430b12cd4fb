namespace SnnSpec

open System
open System.Runtime.Intrinsics
open SnnSpec.Kernels

/// The fused multi-step kernel's loops. Neurons are processed in blocks of <c>Block</c>; each block
/// runs through all T steps while its state stays in L1, blocks run in parallel.
module internal NeuronKernel =
    [<Literal>]
    let Block = 2048

    /// Blocks covering count neurons.
    let blockCount (count: int) = (count + Block - 1) / Block

    /// Runs body s e over neuron ranges of whole blocks in parallel, with enough blocks per task that
    /// each task covers about 32768 neuron-steps of a T-step run.
    let forBlocks (count: int) (steps: int) (body: int -> int -> unit) =
        let blocks = blockCount count
        let grain = max 1 (32768 / (Block * steps))
        Par.forChunks blocks grain (fun c0 c1 -> body (c0 * Block) (min count (c1 * Block)))

    /// Per-call constants of one neuron: H = a·V + b·I + c, V' = ρ·R(H, S), and the backward
    /// factors ∂R/∂H = 1 − hardF·S, ∂R/∂S = p0 + p1·H (not formed at all when the reset is detached,
    /// so that an infinite H gives no 0·∞).
    [<Struct>]
    type Coeffs =
        {
            A: float32
            B: float32
            C: float32
            Rho: float32
            Theta: float32
            Hard: bool
            VReset: float32
            HardF: float32
            Detached: bool
            P0: float32
            P1: float32
        }

    let coeffs (n: Neuron) (a: float32) (b: float32) (c: float32) (rho: float32) =
        let hard, vr =
            match n.Reset with
            | Reset.Hard v -> true, v
            | Reset.Soft -> false, 0.0f

        let det = if n.DetachReset then 0.0f else 1.0f

        {
            A = a
            B = b
            C = c
            Rho = rho
            Theta = n.Threshold
            Hard = hard
            VReset = vr
            HardF = (if hard then 1.0f else 0.0f)
            Detached = n.DetachReset
            P0 = det * (if hard then vr else -n.Threshold)
            P1 = det * (if hard then -1.0f else 0.0f)
        }

    /// MINT's membrane quantizer applied to the state after every step (Neuron.stepQuantized,
    /// MembraneScheme.Mint, b ≥ 2): V ← (α/Q)·round(clamp(tanh(V)/α, −1, 1)·Q), in the tensor library's
    /// float32 operations (÷ α as × InvAlpha = 1/α, α/Q as α·(1/Q)). <c>On = false</c> leaves V as is.
    [<Struct>]
    type MintCoeffs =
        {
            On: bool
            Alpha: float32
            InvAlpha: float32
            Q: float32
            /// α·(1/Q), the grid step.
            AQ: float32
        }

        static member Off =
            {
                On = false
                Alpha = 1.0f
                InvAlpha = 1.0f
                Q = 1.0f
                AQ = 1.0f
            }

    /// The fewest elements for which TensorPrimitives.Tanh takes its vector path on every machine
    /// (one Vector512): shorter spans are padded to it so that every element's tanh is the vector
    /// formula's, as in Tensor.tanh over a population of at least this size.
    [<Literal>]
    let TanhSpan = 16

    /// V[b0, b1) ← MINT-quantized V, writing tanh V into t[to, to + b1 − b0) (pad: 2·TanhSpan scratch).
    let private mintQuantizeRow
        (m: MintCoeffs)
        (v: float32[])
        (b0: int)
        (b1: int)
        (t: float32[])
        (tOff: int)
        (pad: float32[])
        =
        let len = b1 - b0

        if len >= TanhSpan then
            Numerics.Tensors.TensorPrimitives.Tanh(ReadOnlySpan(v, b0, len), Span(t, tOff, len))
        else
            Array.Clear(pad, 0, TanhSpan)
            Array.Copy(v, b0, pad, 0, len)
            Numerics.Tensors.TensorPrimitives.Tanh(ReadOnlySpan(pad, 0, TanhSpan), Span(pad, TanhSpan, TanhSpan))
            Array.Copy(pad, TanhSpan, t, tOff, len)

        let vinv = Vector512.Create m.InvAlpha
        let vq = Vector512.Create m.Q
        let vaq = Vector512.Create m.AQ
        let one = Vector512.Create 1.0f
        let none = Vector512.Create -1.0f
        let mutable i = 0

        while i + 16 <= len do
            let tt = Vector512.LoadUnsafe(&t[tOff + i])
            let c = Vector512.Min(Vector512.Max(tt * vinv, none), one)
            (vaq * Vector512.Round(c * vq)).StoreUnsafe(&v[b0 + i])
            i <- i + 16

        while i < len do
            v[b0 + i] <- m.AQ * MathF.Round(Math.Clamp(t[tOff + i] * m.InvAlpha, -1.0f, 1.0f) * m.Q)
            i <- i + 1

    /// Forward over neurons [s, e): v holds V₀ on entry and V_T on exit (index i), I/H/S are [T, N].
    /// With <c>m.On</c> the state is MINT-quantized after every step, and tq ([T, N], or null for a
    /// scratch row) receives tanh of the unquantized state for the backward pass.
    let forwardRange
        (k: Coeffs)
        (m: MintCoeffs)
        (tq: float32[])
        (steps: int)
        (n: int)
        (inp: float32[])
        (io: int)
        (h: float32[])
        (s: float32[])
        (v: float32[])
        (s0: int)
        (e0: int)
        =
        let scratch, pad =
            if m.On then
                (if isNull tq then Array.zeroCreate Block else null), Array.zeroCreate (2 * TanhSpan)
            else
                null, null

        let va = Vector512.Create k.A
        let vb = Vector512.Create k.B
        let vc = Vector512.Create k.C
        let vrho = Vector512.Create k.Rho
        let vth = Vector512.Create k.Theta
        let vvr = Vector512.Create k.VReset
        let one = Vector512.Create 1.0f
        let mutable b0 = s0

        while b0 < e0 do
            let b1 = min e0 (b0 + Block)

            for t in 0 .. steps - 1 do
                let row = t * n
                let mutable i = b0

                while i + 16 <= b1 do
                    let vv = Vector512.LoadUnsafe(&v[i])
                    let x = Vector512.LoadUnsafe(&inp[io + row + i])
                    let hh = (va * vv + vb * x) + vc
                    let m = Vector512.GreaterThanOrEqual(hh, vth)
                    let ss = Vector512.BitwiseAnd(m, one)

                    let r =
                        if k.Hard then
                            Vector512.ConditionalSelect(m, vvr, hh)
                        else
                            hh - ss * vth

                    hh.StoreUnsafe(&h[row + i])
                    ss.StoreUnsafe(&s[row + i])
                    (r * vrho).StoreUnsafe(&v[i])
                    i <- i + 16

                while i < b1 do
                    let hh = (k.A * v[i] + k.B * inp[io + row + i]) + k.C
                    let spike = hh >= k.Theta
                    let ss = if spike then 1.0f else 0.0f

                    let r =
                        if k.Hard then
                            (if spike then k.VReset else hh)
                        else
                            hh - ss * k.Theta

                    h[row + i] <- hh
                    s[row + i] <- ss
                    v[i] <- r * k.Rho
                    i <- i + 1

                if m.On then
                    if isNull tq then
                        mintQuantizeRow m v b0 b1 scratch 0 pad
                    else
                        mintQuantizeRow m v b0 b1 tq (row + b0) pad

            b0 <- b1

    /// Per-call constants of a population whose membrane lives on a uniform grid
    /// (Neuron.stepQuantized, MembraneScheme.Uniform): grid step S = α/Q and its float32 reciprocal
    /// InvS, Q levels, and the reset targets in grid units, v_r·InvS (hard) and θ·InvS (soft).
    [<Struct>]
    type GridCoeffs =
        {
            A: float32
            B: float32
            C: float32
            Rho: float32
            Theta: float32
            S: float32
            InvS: float32
            Q: float32
            Hard: bool
            /// A hard reset to v_r ≠ 0 adds spike·v_r·InvS.
            ResetTerm: bool
            ResetUnits: float32
        }

    /// Inference forward of the uniform-grid quantized neuron over neurons [s0, e0): v holds V₀ on
    /// entry and V_T on exit, I/H/S are [T, N]. Per element and step, the float32 operations of
    /// Neuron.stepQuantized in its order: k = round((a·V + b·I + c)·InvS), H = S·k, spike = H − θ ≥ 0,
    /// R = k·(1 − spike) [+ spike·v_r·InvS] (hard) or k − spike·θ·InvS (soft),
    /// U = round(clamp(ρ·R, −Q, Q)), V = S·U (rounding half to even, as Tensor.roundSte; a tensor divided
    /// by a one-element tensor is multiplied by its float32 reciprocal, so the grid divisions are too).
    /// Values agree with it exactly (a zero's sign aside), non-finite ones included. A non-null z ([T, N])
    /// receives each step's (a·V + b·I + c)·InvS before rounding, which the backward pass reads.
    let gridForwardRange
        (k: GridCoeffs)
        (steps: int)
        (n: int)
        (inp: float32[])
        (io: int)
        (h: float32[])
        (s: float32[])
        (v: float32[])
        (z: float32[])
        (s0: int)
        (e0: int)
        =
        let va = Vector512.Create k.A
        let vb = Vector512.Create k.B
        let vc = Vector512.Create k.C
        let vrho = Vector512.Create k.Rho
        let vth = Vector512.Create k.Theta
        let vs = Vector512.Create k.S
        let vinv = Vector512.Create k.InvS
        let vq = Vector512.Create k.Q
        let vnq = Vector512.Create -k.Q
        let vru = Vector512.Create k.ResetUnits
        let one = Vector512.Create 1.0f
        let zero = Vector512<float32>.Zero
        let keepZ = not (isNull z)
        let mutable b0 = s0

        while b0 < e0 do
            let b1 = min e0 (b0 + Block)

            for t in 0 .. steps - 1 do
                let row = t * n
                let mutable i = b0

                while i + 16 <= b1 do
                    let vv = Vector512.LoadUnsafe(&v[i])
                    let x = Vector512.LoadUnsafe(&inp[io + row + i])
                    let zz = ((va * vv + vb * x) + vc) * vinv

                    if keepZ then
                        zz.StoreUnsafe(&z[row + i])

                    let kq = Vector512.Round zz
                    let hh = vs * kq
                    let m = Vector512.GreaterThanOrEqual(hh - vth, zero)
                    let ss = Vector512.BitwiseAnd(m, one)

                    let r =
                        if not k.Hard then kq - ss * vru
                        elif k.ResetTerm then kq * (one - ss) + ss * vru
                        else kq * (one - ss)

                    let r = if k.Rho = 1.0f then r else r * vrho
                    let u = Vector512.Round(Vector512.Min(Vector512.Max(r, vnq), vq))
                    hh.StoreUnsafe(&h[row + i])
                    ss.StoreUnsafe(&s[row + i])
                    (vs * u).StoreUnsafe(&v[i])
                    i <- i + 16

                while i < b1 do
                    let zz = ((k.A * v[i] + k.B * inp[io + row + i]) + k.C) * k.InvS

                    if keepZ then
                        z[row + i] <- zz

                    let kq = MathF.Round zz
                    let hh = k.S * kq
                    let spike = hh - k.Theta >= 0.0f
                    let ss = if spike then 1.0f else 0.0f

                    let r =
                        if not k.Hard then kq - ss * k.ResetUnits
                        elif k.ResetTerm then kq * (1.0f - ss) + ss * k.ResetUnits
                        else kq * (1.0f - ss)

                    let r = if k.Rho = 1.0f then r else r * k.Rho
                    h[row + i] <- hh
                    s[row + i] <- ss
                    v[i] <- k.S * MathF.Round(Math.Clamp(r, -k.Q, k.Q))
                    i <- i + 1

            b0 <- b1

    /// Gradient buffers of one backward call (null arrays where an output received no gradient or
    /// an input needs none) and the per-block partial sums Σ gH·V, Σ gH·I, Σ gH for PLIF.
    type Grads =
        {
            GS: float32[]
            GSo: int
            GH: float32[]
            GHo: int
            GI: float32[]
            /// Running gV: seeded with gV_T, holds gV₀ on exit.
            GV: float32[]
            Inp: float32[]
            Io: int
            V0: float32[]
            V0o: int
            /// tanh of the unquantized state per step ([T, N]) under MINT membrane quantization, else null.
            TQ: float32[]
            Partials: float[]
        }

    /// A built-in surrogate as a lane-wise kind and two constants; <c>Scalar</c> for <c>Custom</c>.
    [<Struct>]
    type SurrogateForm = { Kind: int; P1: float32; P2: float32 }

    [<Literal>]
    let KATan = 0

    [<Literal>]
    let KSigmoid = 1

    [<Literal>]
    let KTriangle = 2

    [<Literal>]
    let KRectangle = 3

    [<Literal>]
    let KGaussian = 4

    [<Literal>]
    let KScalar = 5

    let surrogateForm (s: Surrogate) =
        match s with
        | Surrogate.ATan a ->
            {
                Kind = KATan
                P1 = MathF.PI / 2.0f * a
                P2 = a / 2.0f
            }
        | Surrogate.Sigmoid a -> { Kind = KSigmoid; P1 = -a; P2 = a }
        | Surrogate.Triangle(w, k) -> { Kind = KTriangle; P1 = w; P2 = k }
        | Surrogate.Rectangle w ->
            {
                Kind = KRectangle
                P1 = w / 2.0f
                P2 = 1.0f / w
            }
        | Surrogate.Gaussian sigma ->
            {
                Kind = KGaussian
                P1 = -1.0f / (2.0f * sigma * sigma)
                P2 = 1.0f / (sigma * MathF.Sqrt(2.0f * MathF.PI))
            }
        | Surrogate.Custom _ -> { Kind = KScalar; P1 = 0.0f; P2 = 0.0f }

    /// g(x) on 16 lanes: ATan (α/2)/(1 + (πα/2·x)²); Sigmoid α·e/(1 + e)² with e = exp(−α|x|) ∈ (0, 1]
    /// (= α·σ(αx)(1 − σ(αx)) without overflow); Triangle k·max(0, 1 − |x|/w); Rectangle [|x| &lt; w/2]/w;
    /// Gaussian exp(−x²/2σ²)/(σ√2π).
    let inline surrogateVec (kind: int) (c1: Vector512<float32>) (c2: Vector512<float32>) (x: Vector512<float32>) =
        let one = Vector512.Create 1.0f

        match kind with
        | KATan ->
            let y = c1 * x
            c2 / (one + y * y)
        | KSigmoid ->
            let e = FastMath.exp (c1 * Vector512.Abs x)
            let d = one + e
            c2 * e / (d * d)
        | KTriangle -> c2 * Vector512.Max(Vector512<float32>.Zero, one - Vector512.Abs x / c1)
        | KRectangle -> Vector512.BitwiseAnd(Vector512.LessThan(Vector512.Abs x, c1), c2)
        | _ -> c2 * FastMath.exp (c1 * x * x)

    /// BPTT over neurons [b0, b1) (one block): gH_t = gHext_t + ρ·gV_t·∂R/∂H + (gS_t + ρ·gV_t·∂R/∂S)·g(H_t − θ),
    /// gI_t = b·gH_t, gV_{t−1} = a·gH_t, with g from <c>form</c> on full vectors and from the spec's
    /// scalar derivative on the tail (and everywhere for a custom surrogate).
    /// Under MINT membrane quantization (m.On, t = tanh of the unquantized state from gr.TQ) gV_t first
    /// passes the quantizer's backward: with d = t/α and r = round(clamp(d, −1, 1)·Q),
    /// gV ← [−1 ≤ d ≤ 1]·gV·(α/Q)·Q/α·(1 − t²) (straight-through rounding), and the block's partial sums
    /// Σ gV·r and Σ [−1 ≤ d ≤ 1]·gV·(α/Q)·Q·t go to Partials[3·blk …] for α's gradient.
    let backwardBlock
        (k: Coeffs)
        (m: MintCoeffs)
        (surrogate: Surrogate)
        (form: SurrogateForm)
        (steps: int)
        (n: int)
        (h: float32[])
        (gr: Grads)
        (plif: bool)
        (blk: int)
        (b0: int)
        (b1: int)
        =
        let gsA, gsO, ghA, ghO, giA = gr.GS, gr.GSo, gr.GH, gr.GHo, gr.GI
        let inA, inO, v0A, v0O = gr.Inp, gr.Io, gr.V0, gr.V0o
        let hasGS = not (isNull gsA)
        let hasGH = not (isNull ghA)
        let hasGI = not (isNull giA)
        let gv = gr.GV
        let kind = form.Kind
        let c1 = Vector512.Create form.P1
        let c2 = Vector512.Create form.P2
        let va = Vector512.Create k.A
        let vb = Vector512.Create k.B
        let vrho = Vector512.Create k.Rho
        let vth = Vector512.Create k.Theta
        let vhf = Vector512.Create k.HardF
        let vp0 = Vector512.Create k.P0
        let vp1 = Vector512.Create k.P1
        let vvr = Vector512.Create k.VReset
        let one = Vector512.Create 1.0f
        let mutable accV = Vector512<float32>.Zero
        let mutable accI = Vector512<float32>.Zero
        let mutable accC = Vector512<float32>.Zero
        let mutable sV = 0.0
        let mutable sI = 0.0
        let mutable sC = 0.0
        let tq = gr.TQ
        let vinvA = Vector512.Create m.InvAlpha
        let vq = Vector512.Create m.Q
        let vaqq = Vector512.Create(m.AQ * m.Q)
        let none = Vector512.Create -1.0f

        let vecEnd = if kind = KScalar then b0 else b0 + (b1 - b0) / 16 * 16

        for t in steps - 1 .. -1 .. 0 do
            let row = t * n
            let mutable i = b0

            while i < vecEnd do
                let hh = Vector512.LoadUnsafe(&h[row + i])
                let ss = Vector512.BitwiseAnd(Vector512.GreaterThanOrEqual(hh, vth), one)
                let g = surrogateVec kind c1 c2 (hh - vth)
                let gvRaw = Vector512.LoadUnsafe(&gv[i])

                let gvv =
                    if m.On then
                        let tt = Vector512.LoadUnsafe(&tq[row + i])
                        let d = tt * vinvA

                        let inside =
                            Vector512.BitwiseAnd(
                                Vector512.GreaterThanOrEqual(d, none),
                                Vector512.LessThanOrEqual(d, one)
                            )

                        let r = Vector512.Round(Vector512.Min(Vector512.Max(d, none), one) * vq)
                        let gd = Vector512.BitwiseAnd(inside, gvRaw * vaqq)
                        accV <- accV + gvRaw * r
                        accI <- accI + gd * tt
                        gd * vinvA * (one - tt * tt)
                    else
                        gvRaw

                let rg = vrho * gvv
                let dRdH = one - vhf * ss
                let dRdS = vp0 + vp1 * hh

                let gs =
                    if hasGS then
                        Vector512.LoadUnsafe(&gsA[gsO + row + i])
                    else
                        Vector512<float32>.Zero

                let gext =
                    if hasGH then
                        Vector512.LoadUnsafe(&ghA[ghO + row + i])
                    else
                        Vector512<float32>.Zero

                let gh =
                    if k.Detached then
                        gext + rg * dRdH + gs * g
                    else
                        gext + rg * dRdH + (gs + rg * dRdS) * g

                if hasGI then
                    (vb * gh).StoreUnsafe(&giA[row + i])

                (va * gh).StoreUnsafe(&gv[i])

                if plif then
                    let vprev =
                        if t = 0 then
                            Vector512.LoadUnsafe(&v0A[v0O + i])
                        else
                            let hp = Vector512.LoadUnsafe(&h[row - n + i])
                            let mp = Vector512.GreaterThanOrEqual(hp, vth)

                            let r =
                                if k.Hard then
                                    Vector512.ConditionalSelect(mp, vvr, hp)
                                else
                                    hp - Vector512.BitwiseAnd(mp, one) * vth

                            vrho * r

                    accV <- accV + gh * vprev
                    accI <- accI + gh * Vector512.LoadUnsafe(&inA[inO + row + i])
                    accC <- accC + gh

                i <- i + 16

            while i < b1 do
                let hh = h[row + i]
                let ss = if hh >= k.Theta then 1.0f else 0.0f
                let g = Surrogate.derivative surrogate (hh - k.Theta)
                let gvRaw = gv[i]

                let gvv =
                    if m.On then
                        let tt = tq[row + i]
                        let d = tt * m.InvAlpha
                        let r = MathF.Round(Math.Clamp(d, -1.0f, 1.0f) * m.Q)

                        let gd =
                            if d >= -1.0f && d <= 1.0f then
                                gvRaw * (m.AQ * m.Q)
                            else
                                0.0f

                        sV <- sV + float (gvRaw * r)
                        sI <- sI + float (gd * tt)
                        gd * m.InvAlpha * (1.0f - tt * tt)
                    else
                        gvRaw

                let rg = k.Rho * gvv
                let dRdH = 1.0f - k.HardF * ss
                let dRdS = k.P0 + k.P1 * hh
                let gs = if hasGS then gsA[gsO + row + i] else 0.0f
                let gext = if hasGH then ghA[ghO + row + i] else 0.0f

                let gh =
                    if k.Detached then
                        gext + rg * dRdH + gs * g
                    else
                        gext + rg * dRdH + (gs + rg * dRdS) * g

                if hasGI then
                    giA[row + i] <- k.B * gh

                gv[i] <- k.A * gh

                if plif then
                    let vprev =
                        if t = 0 then
                            v0A[v0O + i]
                        else
                            let hp = h[row - n + i]
                            let sp = hp >= k.Theta

                            let r =
                                if k.Hard then
                                    (if sp then k.VReset else hp)
                                else
                                    hp - (if sp then k.Theta else 0.0f)

                            k.Rho * r

                    sV <- sV + float (gh * vprev)
                    sI <- sI + float (gh * inA[inO + row + i])
                    sC <- sC + float gh

                i <- i + 1

        if plif || m.On then
            gr.Partials[3 * blk] <- sV + float (Vector512.Sum accV)
            gr.Partials[3 * blk + 1] <- sI + float (Vector512.Sum accI)
            gr.Partials[3 * blk + 2] <- sC + float (Vector512.Sum accC)

    /// BPTT over every neuron, blocks in parallel.
    let backward
        (k: Coeffs)
        (m: MintCoeffs)
        (surrogate: Surrogate)
        (steps: int)
        (n: int)
        (h: float32[])
        (gr: Grads)
        (plif: bool)
        =
        let form = surrogateForm surrogate
        let blocks = blockCount n
        let grain = max 1 (32768 / (Block * steps))

        Par.forChunks blocks grain (fun c0 c1 ->
            for blk in c0 .. c1 - 1 do
                let b0 = blk * Block
                backwardBlock k m surrogate form steps n h gr plif blk b0 (min n (b0 + Block)))

    /// The three per-block partial sums of a backward call (Partials[3·blk …]) summed over the blocks
    /// of n neurons.
    let partialSums (n: int) (partials: float[]) =
        let mutable s1 = 0.0
        let mutable s2 = 0.0
        let mutable s3 = 0.0

        for blk in 0 .. blockCount n - 1 do
            s1 <- s1 + partials[3 * blk]
            s2 <- s2 + partials[3 * blk + 1]
            s3 <- s3 + partials[3 * blk + 2]

        struct (s1, s2, s3)

    /// BPTT of the uniform-grid neuron over neurons [b0, b1) (one block), the derivative of
    /// Neuron.stepQuantized (MembraneScheme.Uniform) with straight-through rounding. Per step, from the
    /// stored z_t = (a·V_{t−1} + b·I_t + c)/s: k = round(z), H = s·k, spike = Θ(H − θ), R the reset in grid
    /// units, U = round(clamp(ρ·R, −Q, Q)), V_t = s·U, and
    ///   gR = ρ·s·gV_t·[−Q ≤ ρR ≤ Q],  gH = gHext + (gSext + ∂R/∂S·gR)·g(H − θ)  (∂R/∂S = 0 when detached),
    ///   gk = ∂R/∂k·gR + s·gH,  gI_t = b·gk/s,  gV_{t−1} = a·gk/s,
    /// with ∂R/∂k = 1 − S, ∂R/∂S = v_r/s − k (hard) or 1, −θ/s (soft). The step s collects
    ///   ∂L/∂s = Σ (gV·U + gH·k) − Σ gk·z / s + c₃·Σ gR·S,  c₃ = −(v_r/s)/s (hard) or (θ/s)/s (soft),
    /// summed per block into Partials[3·blk …] as those three sums.
    let gridBackwardBlock
        (k: GridCoeffs)
        (keepReset: float32)
        (surrogate: Surrogate)
        (form: SurrogateForm)
        (steps: int)
        (n: int)
        (z: float32[])
        (gr: Grads)
        (blk: int)
        (b0: int)
        (b1: int)
        =
        let gsA, gsO, ghA, ghO, giA = gr.GS, gr.GSo, gr.GH, gr.GHo, gr.GI
        let hasGS = not (isNull gsA)
        let hasGH = not (isNull ghA)
        let hasGI = not (isNull giA)
        let gv = gr.GV
        let kind = form.Kind
        let c1 = Vector512.Create form.P1
        let c2 = Vector512.Create form.P2
        let va = Vector512.Create k.A
        let vb = Vector512.Create k.B
        let vrho = Vector512.Create k.Rho
        let vth = Vector512.Create k.Theta
        let vs = Vector512.Create k.S
        let vinv = Vector512.Create k.InvS
        let vq = Vector512.Create k.Q
        let vnq = Vector512.Create -k.Q
        let vru = Vector512.Create k.ResetUnits
        let one = Vector512.Create 1.0f
        let zero = Vector512<float32>.Zero
        let mutable acc1 = zero
        let mutable acc2 = zero
        let mutable acc3 = zero
        let mutable s1 = 0.0
        let mutable s2 = 0.0
        let mutable s3 = 0.0
        let vecEnd = if kind = KScalar then b0 else b0 + (b1 - b0) / 16 * 16

        for t in steps - 1 .. -1 .. 0 do
            let row = t * n
            let mutable i = b0

            while i < vecEnd do
                let zz = Vector512.LoadUnsafe(&z[row + i])
                let kq = Vector512.Round zz
                let hh = vs * kq
                let ss = Vector512.BitwiseAnd(Vector512.GreaterThanOrEqual(hh - vth, zero), one)

                let r =
                    if not k.Hard then kq - ss * vru
                    elif k.ResetTerm then kq * (one - ss) + ss * vru
                    else kq * (one - ss)

                let pre = if k.Rho = 1.0f then r else r * vrho

                let inside =
                    Vector512.BitwiseAnd(Vector512.GreaterThanOrEqual(pre, vnq), Vector512.LessThanOrEqual(pre, vq))

                let u = Vector512.Round(Vector512.Min(Vector512.Max(pre, vnq), vq))
                let gvv = Vector512.LoadUnsafe(&gv[i])
                let gpre = Vector512.BitwiseAnd(inside, vs * gvv)
                let gR = if k.Rho = 1.0f then gpre else vrho * gpre

                let gkR, dRdS =
                    if not k.Hard then gR, -vru
                    elif k.ResetTerm then gR * (one - ss), vru - kq
                    else gR * (one - ss), -kq

                let gSext =
                    if hasGS then
                        Vector512.LoadUnsafe(&gsA[gsO + row + i])
                    else
                        zero

                let gHext =
                    if hasGH then
                        Vector512.LoadUnsafe(&ghA[ghO + row + i])
                    else
                        zero

                let gSpike = if keepReset = 0.0f then gSext else gSext + dRdS * gR
                let gh = gHext + gSpike * surrogateVec kind c1 c2 (hh - vth)
                let gk = gkR + vs * gh
                let gx = gk * vinv

                if hasGI then
                    (vb * gx).StoreUnsafe(&giA[row + i])

                (va * gx).StoreUnsafe(&gv[i])
                acc1 <- acc1 + (gvv * u + gh * kq)
                acc2 <- acc2 + gk * zz
                acc3 <- acc3 + gR * ss
                i <- i + 16

            while i < b1 do
                let zz = z[row + i]
                let kq = MathF.Round zz
                let hh = k.S * kq
                let ss = if hh - k.Theta >= 0.0f then 1.0f else 0.0f

                let r =
                    if not k.Hard then kq - ss * k.ResetUnits
                    elif k.ResetTerm then kq * (1.0f - ss) + ss * k.ResetUnits
                    else kq * (1.0f - ss)

                let pre = if k.Rho = 1.0f then r else r * k.Rho
                let u = MathF.Round(Math.Clamp(pre, -k.Q, k.Q))
                let gvv = gv[i]
                let gpre = if pre >= -k.Q && pre <= k.Q then k.S * gvv else 0.0f
                let gR = if k.Rho = 1.0f then gpre else k.Rho * gpre

                let gkR, dRdS =
                    if not k.Hard then gR, -k.ResetUnits
                    elif k.ResetTerm then gR * (1.0f - ss), k.ResetUnits - kq
                    else gR * (1.0f - ss), -kq

                let gSext = if hasGS then gsA[gsO + row + i] else 0.0f
                let gHext = if hasGH then ghA[ghO + row + i] else 0.0f

                let gSpike = if keepReset = 0.0f then gSext else gSext + dRdS * gR
                let gh = gHext + gSpike * Surrogate.derivative surrogate (hh - k.Theta)

                let gk = gkR + k.S * gh
                let gx = gk * k.InvS

                if hasGI then
                    giA[row + i] <- k.B * gx

                gv[i] <- k.A * gx
                s1 <- s1 + float (gvv * u + gh * kq)
                s2 <- s2 + float (gk * zz)
                s3 <- s3 + float (gR * ss)
                i <- i + 1

        gr.Partials[3 * blk] <- s1 + float (Vector512.Sum acc1)
        gr.Partials[3 * blk + 1] <- s2 + float (Vector512.Sum acc2)
        gr.Partials[3 * blk + 2] <- s3 + float (Vector512.Sum acc3)

    /// BPTT of the uniform-grid neuron over every neuron, blocks in parallel; returns ∂L/∂s.
    let gridBackward
        (k: GridCoeffs)
        (keepReset: float32)
        (surrogate: Surrogate)
        (steps: int)
        (n: int)
        (z: float32[])
        (gr: Grads)
        =
        let form = surrogateForm surrogate

        forBlocks n steps (fun e0 e1 ->
            let mutable b0 = e0

            while b0 < e1 do
                gridBackwardBlock k keepReset surrogate form steps n z gr (b0 / Block) b0 (min e1 (b0 + Block))
                b0 <- b0 + Block)

        let struct (s1, s2, s3) = partialSums n gr.Partials

        let c3 =
            if not k.Hard then float k.ResetUnits / float k.S
            elif k.ResetTerm then -(float k.ResetUnits) / float k.S
            else 0.0

        s1 - s2 / float k.S + c3 * s3

/// Multi-step execution of a neuron population: one fused forward over T and one BPTT backward.
[<AutoOpen>]
module MultiStepOps =
    [<RequireQualifiedAccess; CompilationRepresentation(CompilationRepresentationFlags.ModuleSuffix)>]
    module Neuron =
        /// The buffers of a fused BPTT from its incoming gradients gs = [gS; gH; gV_T] (null where none):
        /// gI (when needI; written over gS when no other node holds it, as each element's gS_t is read
        /// before its gI_t is written), gV seeded with ∂L/∂V_T, and the kernel's Grads over them with no
        /// PLIF, MINT or partial-sum fields.
        let private bpttBuffers (gs: Tensor[]) (needI: bool) (inputShape: int[]) (stepShape: int[]) =
            let isSet (g: Tensor) = not (isNull (box g))
            let gS, gH, gVT = gs[0], gs[1], gs[2]
            let count = Shape.numel stepShape

            let gI =
                if not needI then
                    Autograd.noGrad
                elif isSet gS && gS.Numel = Shape.numel inputShape && Autograd.overwritable gS then
                    Autograd.view gS (Array.copy inputShape)
                else
                    Autograd.alloc (Array.copy inputShape)

            let gV = Autograd.alloc (Array.copy stepShape)

            if isSet gVT then
                Array.Copy(gVT.Data, gVT.Offset, gV.Data, 0, count)
            else
                Array.Clear(gV.Data, 0, count)

            let gr: NeuronKernel.Grads =
                {
                    GS = (if isSet gS then gS.Data else null)
                    GSo = (if isSet gS then gS.Offset else 0)
                    GH = (if isSet gH then gH.Data else null)
                    GHo = (if isSet gH then gH.Offset else 0)
                    GI = (if needI then gI.Data else null)
                    GV = gV.Data
                    Inp = null
                    Io = 0
                    V0 = null
                    V0o = 0
                    TQ = null
                    Partials = null
                }

            gI, gV, gr

        /// A gradient shaped like the one-element tensor <c>like</c> (a learnable scalar) holding v.
        let private scalarGrad (like: Tensor) (v: float) =
            let r = Autograd.alloc (Array.copy like.ShapeRef)
            r.Data[r.Offset] <- float32 v
            r

        /// Runs a neuron population over a [T, …] input from state v0 ([…], one step's shape) in one
        /// fused pass, with the same values and gradients as <c>Neuron.runReference</c>:
        /// H_t = a·V_{t−1} + b·I_t + c, S_t = Θ(H_t − θ), V_t = ρ·R_t with R_t = H_t·(1 − S_t) + v_r·S_t (hard)
        /// or H_t − θ·S_t (soft). Returns H and S ([T, …]) and V_T ([…]).
        /// The backward pass is BPTT (SpikingJelly's multi-step CUDA kernels; Fang et al. 2021 for PLIF):
        /// gH_t = gHext_t + ρ·gV_t·∂R/∂H + (gS_t + ρ·gV_t·∂R/∂S)·g(H_t − θ), gI_t = b·gH_t,
        /// gV_{t−1} = a·gH_t from gV_T = ∂L/∂V_T, with ∂R/∂H = 1 − S_t (hard) or 1 (soft) and
        /// ∂R/∂S = v_r − H_t (hard) or −θ (soft), 0 when the reset is detached; g is the surrogate.
        /// PLIF (k = sigmoid(w); a = 1 − k, b = k or 1, c = k·v_r) gets
        /// ∂L/∂w = k(1 − k)·(−Σ gH_t·V_{t−1} + [decayInput]·Σ gH_t·I_t + v_r·Σ gH_t).
        /// Only H is kept for the backward pass: S_t and V_{t−1} are recomputed from it.
        let rec run (n: Neuron) (v0: Tensor) (inputs: Tensor) : NeuronRun = runOver false None n v0 inputs

        /// <c>Neuron.runQuantized</c> with MembraneScheme.Mint (b ≥ 2 bits) in one fused pass: the kernel
        /// of <c>run</c>, whose state after every step goes through MINT's quantizer
        /// V ← (α/Q)·round(clamp(tanh(V)/α, −1, 1)·Q), and whose BPTT passes each gV_t through that
        /// quantizer's backward (straight-through rounding, the clamp's gradient inside [−1, 1], tanh's
        /// 1 − t², and α's gradient LSQ-scaled by 1/√(N·Q) per step). It keeps tanh of each step's
        /// unquantized state ([T, …]) for the backward pass. Values equal the reference's for populations of
        /// at least 16 neurons per step (tanh is the tensor library's, on spans that take its vector path);
        /// gradients agree up to summation order. Finite input currents only: on an infinite one the fused
        /// hard reset yields v_r where the reference's H·(1 − S) is NaN, as in <c>run</c>. Not for PLIF (its
        /// leak's gradient needs the reference).
        and runMint (n: Neuron) (mq: MembraneQuant) (v0: Tensor) (inputs: Tensor) : NeuronRun =
            runOver false (Some mq) n v0 inputs

        /// <c>run</c>; with <c>overwrite</c> (the caller owns the input current exclusively and
        /// nothing reads it again; not for PLIF, whose backward reads it) S is written over the
        /// input's buffer: each element's current is read before its spike is written.
        /// A null v0 starts from rest (v_reset everywhere) without a state tensor (not for PLIF).
        /// With <c>mint</c> the state is MINT-quantized after every step (<c>runMint</c>).
        and internal runOver
            (overwrite: bool)
            (mint: MembraneQuant option)
            (n: Neuron)
            (v0: Tensor)
            (inputs: Tensor)
            : NeuronRun =
            Neuron.validate n
            let op = if mint.IsSome then "Neuron.runMint" else "Neuron.run"

            let mintQ =
                match mint with
                | None -> NeuronKernel.MintCoeffs.Off
                | Some mq ->
                    Quantizer.validateBits op mq.Bits

                    match mq.Bits, mq.Scheme, n.Dynamics with
                    | _, _, Dynamics.Plif _ ->
                        Errors.invalidArg
                            op
                            "Dynamics"
                            "Plif"
                            "a neuron with fixed dynamics (PLIF's learnable leak runs in Neuron.runQuantized)"
                    | Bits.Fixed b, MembraneScheme.Mint, _ when b >= 2 ->
                        Quantizer.validateScale op mq.Alpha

                        if mq.Alpha.Numel <> 1 then
                            Errors.invalidArg op "Alpha" (Errors.showShape mq.Alpha.Shape) "a one-element scale tensor"

                        let alpha = (Diff.detach mq.Alpha).ToArray()[0]
                        let q = float32 (Quantizer.levels b)

                        {
                            On = true
                            Alpha = alpha
                            InvAlpha = 1.0f / alpha
                            Q = q
                            AQ = alpha * (1.0f / q)
                        }
                    | _ ->
                        Errors.invalidArg
                            op
                            "quantization"
                            (sprintf "%A, %A" mq.Bits mq.Scheme)
                            "MembraneScheme.Mint at 2 bits or more (1 bit and the uniform grid run in Neuron.runQuantized and Neuron.runGrid)"

            if inputs.Rank < 1 || inputs.ShapeRef[0] < 1 then
                Errors.invalidArg
                    op
                    "inputs"
                    (Errors.showShape inputs.ShapeRef)
                    "a [T, …] tensor with a leading time axis of length T ≥ 1"

            let stepShape = inputs.ShapeRef[1..]

            let v0 =
                if isNull (box v0) && mintQ.On then
                    Neuron.initState n stepShape
                else
                    v0

            let rest = isNull (box v0)

            if not rest && v0.ShapeRef <> stepShape then
                Errors.shapeMismatch
                    op
                    [ v0.ShapeRef; inputs.ShapeRef ]
                    (sprintf
                        "the state v0 must have the shape of one time step, %s (the input's shape without its leading time axis)"
                        (Errors.showShape stepShape))

            let steps = inputs.ShapeRef[0]
            let count = Shape.numel stepShape

            let a, b, c, rho =
                Diff.noGrad (fun () ->
                    let a, b, c, rho = Neuron.coefficients n
                    a.ToScalar(), b.ToScalar(), c.ToScalar(), rho)

            let k = NeuronKernel.coeffs n a b c rho
            let h = Autograd.alloc (Array.copy inputs.ShapeRef)

            let plifDynamics =
                match n.Dynamics with
                | Dynamics.Plif _ -> true
                | _ -> false

            let s =
                if overwrite && not plifDynamics && inputs.Offset = 0 then
                    Autograd.view inputs (Array.copy inputs.ShapeRef)
                else
                    Autograd.alloc (Array.copy inputs.ShapeRef)

            let vT = Autograd.alloc (Array.copy stepShape)

            if rest then
                Array.Fill(vT.Data, Neuron.vReset n, 0, count)
            else
                Array.Copy(v0.Data, v0.Offset, vT.Data, 0, count)

            let inp, io, hd, sd, vd = inputs.Data, inputs.Offset, h.Data, s.Data, vT.Data

            let tq =
                if mintQ.On && Autograd.isRecording () then
                    Autograd.alloc (Array.copy inputs.ShapeRef)
                else
                    Autograd.noGrad

            let tqd = if isNull (box tq) then null else tq.Data

            NeuronKernel.forBlocks count steps (fun b0 b1 ->
                NeuronKernel.forwardRange k mintQ tqd steps count inp io hd sd vd b0 b1)

            let plifW =
                match n.Dynamics with
                | Dynamics.Plif(w, decayInput) -> Some(w, decayInput)
                | _ -> None

            let tracked =
                match plifW, mint with
                | Some(w, _), _ when not rest -> [| inputs; v0; w |]
                | Some _, _ -> Errors.invalidArg "Neuron.run" "v0" "null" "the initial state of a PLIF population"
                | None, Some mq -> [| inputs; v0; mq.Alpha |]
                | None, None when rest -> [| inputs |]
                | None, None -> [| inputs; v0 |]

            let inputs0 = Autograd.detach inputs
            let v00 = if rest then Autograd.noGrad else Autograd.detach v0

            let outs =
                Autograd.recordMulti [| s; h; vT |] tracked (fun gs need ->
                    let gI, gV, gr0 = bpttBuffers gs need[0] inputs0.ShapeRef stepShape
                    let plif = plifW.IsSome && need.Length > 2 && need[2]

                    let gr =
                        { gr0 with
                            // Only PLIF's backward reads the input and V₀ (the caller may recycle them otherwise).
                            Inp = (if plif then inputs0.Data else null)
                            Io = inputs0.Offset
                            V0 = (if plif then v00.Data else null)
                            V0o = (if plif then v00.Offset else 0)
                            TQ = tqd
                            Partials =
                                (if plif || mintQ.On then
                                     Array.zeroCreate (3 * NeuronKernel.blockCount count)
                                 else
                                     null)
                        }

                    NeuronKernel.backward k mintQ n.Surrogate steps count hd gr plif

                    let gW =
                        match plifW with
                        | Some(w, decayInput) when plif ->
                            let struct (sV, sI, sC) = NeuronKernel.partialSums count gr.Partials
                            let kk = float ((Tensor.sigmoid (Autograd.detach w)).ToArray()[0])
                            let dk = -sV + (if decayInput then sI else 0.0) + float k.VReset * sC
                            scalarGrad w (dk * kk * (1.0 - kk))
                        | None when mintQ.On && need[2] ->
                            // ∂L/∂α = lsq·(Σ gV·r / Q − Σ g_d·t / α²): through α/Q and through tanh(V)/α.
                            let struct (sR, sT, _) = NeuronKernel.partialSums count gr.Partials
                            let alpha = float mintQ.Alpha
                            let q = float mintQ.Q
                            let lsq = 1.0 / Math.Sqrt(float (float32 (max 1 count) * mintQ.Q))
                            scalarGrad tracked[2] (lsq * (sR / q - sT / (alpha * alpha)))
                        | _ -> Autograd.noGrad

                    [|
                        gI
                        (if need.Length > 1 && need[1] then gV else Autograd.noGrad)
                        (if tracked.Length > 2 then gW else Autograd.noGrad)
                    |]
                    |> Array.take tracked.Length)

            {
                S = outs[0]
                H = outs[1]
                VFinal = outs[2]
            }

        /// The spikes S ([T, …]) of <c>run</c> for inference, when nothing differentiates through the
        /// population and H is not wanted: the fused forward writes H and then S over it into one
        /// buffer, and V_T into a recycled one, so a run holds one [T, …] buffer instead of two.
        /// With <c>overwrite</c> (the caller owns the input exclusively) that buffer is the input's
        /// own: each element's current is read before its spike is written. A null v0 starts from rest.
        let rec internal runSpikes (overwrite: bool) (n: Neuron) (v0: Tensor) (inputs: Tensor) : Tensor =
            let s, vT = runSpikesCarry overwrite n v0 inputs
            TensorScope.ReleaseEarly vT.Storage |> ignore
            s

        /// <c>runSpikes</c> that also returns the state V_T (one step's shape) for the next chunk of a
        /// stream (ForwardContext.InitialStates).
        and internal runSpikesCarry (overwrite: bool) (n: Neuron) (v0: Tensor) (inputs: Tensor) : Tensor * Tensor =
            Neuron.validate n

            if
                inputs.Rank < 1
                || inputs.ShapeRef[0] < 1
                || (not (isNull (box v0)) && v0.ShapeRef <> inputs.ShapeRef[1..])
            then
                Errors.shapeMismatch
                    "Neuron.runSpikes"
                    [ v0.ShapeRef; inputs.ShapeRef ]
                    "inputs [T, …] with T ≥ 1 and the state v0 of one step's shape"

            let steps = inputs.ShapeRef[0]
            let count = Shape.numel inputs.ShapeRef[1..]

            let a, b, c, rho =
                Diff.noGrad (fun () ->
                    let a, b, c, rho = Neuron.coefficients n
                    a.ToScalar(), b.ToScalar(), c.ToScalar(), rho)

            let k = NeuronKernel.coeffs n a b c rho

            let s =
                if overwrite && inputs.Offset = 0 then
                    Autograd.view inputs (Array.copy inputs.ShapeRef)
                else
                    Autograd.alloc (Array.copy inputs.ShapeRef)

            let vT = Autograd.alloc (Array.copy inputs.ShapeRef[1..])

            if isNull (box v0) then
                Array.Fill(vT.Data, Neuron.vReset n, 0, count)
            else
                Array.Copy(v0.Data, v0.Offset, vT.Data, 0, count)

            let inp, io, sd, vd = inputs.Data, inputs.Offset, s.Data, vT.Data

            NeuronKernel.forBlocks count steps (fun b0 b1 ->
                NeuronKernel.forwardRange k NeuronKernel.MintCoeffs.Off null steps count inp io sd sd vd b0 b1)

            s, vT

        /// <c>Neuron.runQuantized</c> with MembraneScheme.Uniform in one fused pass over T per block of
        /// neurons (NeuronKernel.gridForwardRange), with the same values; the reference runs about
        /// fifteen tensor operations per step. Under a recording tape the backward pass is one fused BPTT
        /// (NeuronKernel.gridBackward): straight-through rounding, the clamp's gradient inside [−Q, Q], and
        /// α's gradient LSQ-scaled by 1/√(N·Q) per step (N neurons per step), as the reference, whose
        /// gradients it reproduces up to float summation order; it keeps z_t = (a·V + b·I + c)/s ([T, …])
        /// for that pass. PLIF's learnable leak has no fused gradient here: under a tape use
        /// <c>Neuron.runQuantized</c> (which <c>runWith</c> chooses). Raises what runQuantized raises.
        let rec runGrid (n: Neuron) (mq: MembraneQuant) (v0: Tensor) (inputs: Tensor) : NeuronRun =
            let h, s, vT = gridOver true n mq v0 inputs
            { H = h; S = s; VFinal = vT }

        /// The spikes S ([T, …]) of <c>runGrid</c> alone, for inference (no tape): H is never stored.
        and runGridSpikes (n: Neuron) (mq: MembraneQuant) (v0: Tensor) (inputs: Tensor) : Tensor =
            let s, vT = runGridSpikesCarry n mq v0 inputs
            TensorScope.ReleaseEarly vT.Storage |> ignore
            s

        /// <c>runGridSpikes</c> that also returns the state V_T for the next chunk of a stream.
        and internal runGridSpikesCarry
            (n: Neuron)
            (mq: MembraneQuant)
            (v0: Tensor)
            (inputs: Tensor)
            : Tensor * Tensor =
            let _, s, vT = gridOver false n mq v0 inputs
            s, vT

        and private gridOver (keepH: bool) (n: Neuron) (mq: MembraneQuant) (v0: Tensor) (inputs: Tensor) =
            let op = "Neuron.runGrid"
            Neuron.validate n

            if mq.Scheme <> MembraneScheme.Uniform then
                Errors.invalidArg
                    op
                    "Scheme"
                    mq.Scheme
                    "MembraneScheme.Uniform (the Mint scheme runs in Neuron.runMint or Neuron.runQuantized)"

            let recording = Autograd.isRecording ()

            if recording && not keepH then
                Errors.fail (
                    "Neuron.runGridSpikes: a tape is recording and this inference kernel has no backward; use Neuron.runGrid (or Neuron.runWith, which chooses)."
                )

            match n.Dynamics with
            | Dynamics.Plif _ when recording ->
                Errors.fail (
                    op
                    + ": a tape is recording and PLIF's learnable leak has no fused gradient on the grid; use Neuron.runQuantized (or Neuron.runWith, which chooses)."
                )
            | _ -> ()

            let s = Neuron.membraneStep mq

            if mq.Alpha.Numel <> 1 then
                Errors.invalidArg op "Alpha" (Errors.showShape mq.Alpha.Shape) "a one-element scale tensor"

            if inputs.Rank < 1 || inputs.ShapeRef[0] < 1 then
                Errors.invalidArg
                    op
                    "inputs"
                    (Errors.showShape inputs.ShapeRef)
                    "a [T, …] tensor with a leading time axis of length T ≥ 1"

            let stepShape = inputs.ShapeRef[1..]

            if isNull (box v0) || v0.ShapeRef <> stepShape then
                Errors.shapeMismatch
                    op
                    [ (if isNull (box v0) then [||] else v0.ShapeRef); inputs.ShapeRef ]
                    "the state must have the input's shape (one membrane per neuron)"

            let q =
                match mq.Bits with
                | Bits.Fixed bits -> float32 (max 1 (Quantizer.levels bits))
                | Bits.FullPrecision -> 1.0f

            let a, b, c, rho =
                Diff.noGrad (fun () ->
                    let a, b, c, rho = Neuron.coefficients n
                    a.ToScalar(), b.ToScalar(), c.ToScalar(), rho)

            let invS = 1.0f / s

            let hard, resetTerm, resetUnits =
                match n.Reset with
                | Reset.Hard vr -> true, vr <> 0.0f, vr * invS
                | Reset.Soft -> false, false, n.Threshold * invS

            let k: NeuronKernel.GridCoeffs =
                {
                    A = a
                    B = b
                    C = c
                    Rho = rho
                    Theta = n.Threshold
                    S = s
                    InvS = invS
                    Q = q
                    Hard = hard
                    ResetTerm = resetTerm
                    ResetUnits = resetUnits
                }

            let steps = inputs.ShapeRef[0]
            let count = Shape.numel stepShape
            let spikes = Autograd.alloc (Array.copy inputs.ShapeRef)
            // Without H the kernel writes each H where its spike then lands.
            let h =
                if keepH then
                    Autograd.alloc (Array.copy inputs.ShapeRef)
                else
                    spikes

            let z =
                if recording then
                    Autograd.alloc (Array.copy inputs.ShapeRef)
                else
                    Autograd.noGrad

            let vT = Autograd.alloc (Array.copy stepShape)
            Array.Copy(v0.Data, v0.Offset, vT.Data, 0, count)
            let inp, io, hd, sd, vd = inputs.Data, inputs.Offset, h.Data, spikes.Data, vT.Data
            let zd = if recording then z.Data else null

            NeuronKernel.forBlocks count steps (fun b0 b1 ->
                NeuronKernel.gridForwardRange k steps count inp io hd sd vd zd b0 b1)

            if not recording then
                h, spikes, vT
            else
                let keepReset = if n.DetachReset then 0.0f else 1.0f
                let alpha = mq.Alpha
                let lsq = 1.0 / Math.Sqrt(float (float32 (max 1 count) * q))

                let outs =
                    Autograd.recordMulti [| spikes; h; vT |] [| inputs; v0; alpha |] (fun gs need ->
                        let gI, gV, gr0 = bpttBuffers gs need[0] inputs.ShapeRef stepShape

                        let gr =
                            { gr0 with
                                Partials = Array.zeroCreate (3 * NeuronKernel.blockCount count)
                            }

                        let gStep = NeuronKernel.gridBackward k keepReset n.Surrogate steps count z.Data gr

                        let gAlpha =
                            if need[2] then
                                scalarGrad alpha (lsq * gStep / float q)
                            else
                                Autograd.noGrad

                        [| gI; (if need[1] then gV else Autograd.noGrad); gAlpha |])

                outs[1], outs[0], outs[2]

        /// True when <c>runWith</c> runs this quantized population (perStep neurons per step) in a fused
        /// kernel whose backward reads neither its input current, nor V₀, nor V_T, nor its spikes (only H,
        /// the stored z or tanh, and the incoming gradients): <c>runGrid</c> for the uniform grid,
        /// <c>runMint</c> for MINT's scheme at 2–16 bits on at least 16 neurons; never for PLIF.
        let internal fusedQuantized (n: Neuron) (mq: MembraneQuant) (perStep: int) =
            match n.Dynamics, mq.Bits, mq.Scheme with
            | Dynamics.Plif _, _, _ -> false
            | _, Bits.Fixed _, MembraneScheme.Uniform -> true
            | _, Bits.Fixed b, MembraneScheme.Mint -> b >= 2 && b <= 16 && perStep >= NeuronKernel.TanhSpan
            | _ -> false

        /// <c>run</c> with optional membrane quantization: None and full precision take the fused kernel;
        /// a fixed bit width takes the fused <c>runGrid</c> (uniform grid) or <c>runMint</c> (MINT's scheme
        /// at b ≥ 2 on at least 16 neurons per step), and otherwise <c>Neuron.runQuantized</c> (1-bit MINT,
        /// tiny populations, and PLIF in training; PLIF's inference on the grid is fused too).
        let runWith (quant: MembraneQuant option) (n: Neuron) (v0: Tensor) (inputs: Tensor) : NeuronRun =
            match quant with
            | Some mq when mq.Bits <> Bits.FullPrecision ->
                let perStep =
                    if inputs.Rank >= 1 then
                        Shape.numel inputs.ShapeRef[1..]
                    else
                        0

                if fusedQuantized n mq perStep then
                    if mq.Scheme = MembraneScheme.Uniform then
                        runGrid n mq v0 inputs
                    else
                        runMint n mq v0 inputs
                elif mq.Scheme = MembraneScheme.Uniform && not (Autograd.isRecording ()) then
                    runGrid n mq v0 inputs
                else
                    Neuron.runQuantized n mq v0 inputs
            | _ -> run n v0 inputs
