namespace SnnSpec

open System.Collections.Generic

/// Which internal values a forward run records.
type ProbeRequest =
    {
        /// Spiking populations whose membrane H ([T, B, …], after charging, before reset) is kept.
        Membranes: Set<string>
        /// Spiking populations whose spikes S ([T, B, …]) are kept.
        Spikes: Set<string>
        /// Tap layers whose value ([T, B, …]) is kept.
        Taps: Set<string>
        /// Whether to compute every population's firing rate (mean spikes per neuron per step), and
        /// the rate after a max-pool that reads a population's spikes (RateKey.maxPooled).
        FiringRates: bool
    }

    static member None =
        {
            Membranes = Set.empty
            Spikes = Set.empty
            Taps = Set.empty
            FiringRates = false
        }

/// The explicit inputs of a forward run besides parameters and data.
type ForwardContext =
    {
        /// Training mode: batch statistics in BN (and updated running stats), dropout active.
        Training: bool
        /// Key for dropout masks.
        Rng: Rng
        Probes: ProbeRequest
        /// None: every spiking population starts at rest (V₀ = v_reset) and the run returns no state.
        /// Some states: population n starts from states[n] (its per-step shape [B, …]; a population
        /// not named starts at rest) and the run returns every population's V_T in
        /// <c>ForwardOutput.FinalStates</c>. Chunks x[0 … t₁), x[t₁ … t₂), … run one after another,
        /// each from the previous chunk's final states, give the per-step logits of one run over the
        /// whole sequence (exactly in eval mode; training-mode BN takes each chunk's own batch
        /// statistics): streaming inference and truncated BPTT (<c>TrainConfig.Truncation</c>).
        InitialStates: Map<string, Tensor> option
        /// Activation checkpointing while a tape records: the layer list runs in segments, each
        /// ending at a spiking population or a residual block (a stage's blocks are segments of their
        /// own); a segment keeps only its output and the probes asked for, and its intermediates are
        /// computed again in the backward pass (<c>Diff.checkpoint</c>). The same values, and the same
        /// gradients bit for bit except where a parameter read in several segments (a quantized
        /// MS-ResNet's shared scale) sums its contributions in another order; fewer activations held
        /// for the backward pass, at the cost of a second forward per segment. Final states leave a
        /// checkpointed run detached; a gradient through carried initial states flows as without.
        /// Calibration and integer-datapath runs ignore it.
        CheckpointActivations: bool
    }

    static member Eval =
        {
            Training = false
            Rng = Rng.create 0
            Probes = ProbeRequest.None
            InitialStates = None
            CheckpointActivations = false
        }

    static member Train(rng: Rng) =
        {
            Training = true
            Rng = rng
            Probes = ProbeRequest.None
            InitialStates = None
            CheckpointActivations = false
        }

/// Keys of ForwardOutput.FiringRates besides the populations' names.
[<RequireQualifiedAccess>]
module RateKey =
    /// The rate of a population's spikes after a max-pool that reads them (directly, through a tap, an
    /// eval-mode dropout or the end of a stage; not after a residual combination): what the next
    /// weight layer reads. A k×k max-pool of spikes is an OR over each window, so this rate lies
    /// between the population's r and 1 − (1 − r)^(k²) (the value for independent spikes).
    let maxPooled (population: string) = population + "/maxpool"

    /// True for a key made by maxPooled.
    let isMaxPooled (key: string) =
        key.EndsWith("/maxpool", System.StringComparison.Ordinal)

/// What a forward run returns. Logits are [T, B, K] for an SNN (one row per step) and [1, B, K] for the ANN twin.
type ForwardOutput =
    {
        Logits: Tensor
        Membranes: Map<string, Tensor>
        Spikes: Map<string, Tensor>
        Taps: Map<string, Tensor>
        FiringRates: Map<string, float32>
        /// BN running statistics after this run (unchanged in eval mode).
        Buffers: Parameters
        /// Every spiking population's state V_T ([B, …]) after the last step when the run was given
        /// <c>ForwardContext.InitialStates</c>; empty otherwise and for the ANN twin.
        FinalStates: Map<string, Tensor>
    }

/// The forward interpreter: runs an architecture's layer tree on a batch. Stateless layers run on
/// the time-flattened [T·B, …] tensor; spiking populations reshape to [T, B, …] and run the fused
/// multi-step neuron. Pure: parameters, buffers and the context are explicit, results returned.
module Forward =
    type private Run =
        {
            Ctx: ForwardContext
            Steps: int
            Snn: bool
            Params: Parameters
            Buffers: Parameters
            NewBuffers: Dictionary<string, Tensor>
            Membranes: Dictionary<string, Tensor>
            Spikes: Dictionary<string, Tensor>
            Taps: Dictionary<string, Tensor>
            Rates: Dictionary<string, float32>
            /// V_T by population, filled when the context carries states.
            States: Dictionary<string, Tensor>
            mutable DropoutIndex: int
            Plan: QuantPlan
            /// Layers whose (weight → population) pair runs in the integer datapath.
            Integer: Map<string, IntegerLayer>
            /// The integer product Σ code·x of an integer pair's weight layer (exactProduct by default).
            Product: IntegerLayer -> int[] -> int[] -> int[] * int[]
            IntegerRan: ResizeArray<string>
            /// When not null, a calibration run: quantizers pass weights through unquantized and
            /// record, per weight layer, the tensor they would quantize (the folded weight for a fold).
            Capture: Dictionary<string, Tensor>
            /// Storages handed out in the ForwardOutput (probes, taps): never recycled early.
            Pinned: HashSet<Storage>
            /// With the FiringRates probe: the last population recorded and its spikes' storage, so
            /// that a max-pool reading those spikes (directly, through a tap, an eval-mode dropout or
            /// a stage's end) records RateKey.maxPooled.
            mutable Population: string
            mutable PopulationSpikes: Storage
        }

    /// A run with empty records (buffers, probes, rates, states, pins) starting at dropout index d:
    /// one forward call, or one checkpointed segment within it.
    let private newRun ctx steps snn ps buffers plan integer product capture (d: int) : Run =
        {
            Ctx = ctx
            Steps = steps
            Snn = snn
            Params = ps
            Buffers = buffers
            NewBuffers = Dictionary()
            Membranes = Dictionary()
            Spikes = Dictionary()
            Taps = Dictionary()
            Rates = Dictionary()
            States = Dictionary()
            DropoutIndex = d
            Plan = plan
            Integer = integer
            Product = product
            IntegerRan = ResizeArray()
            Population = null
            PopulationSpikes = null
            Capture = capture
            Pinned = HashSet<Storage>(HashIdentity.Reference)
        }

    let private full (prefix: string) (n: string) =
        if prefix = "" then n else prefix + "." + n

    /// [T·B, …] → [T, B, …].
    let private unflatten (steps: int) (x: Tensor) =
        let s = x.Shape
        Tensor.reshape (Array.append [| steps; s[0] / steps |] s[1..]) x

    /// [T, B, …] → [T·B, …].
    let private flatten (x: Tensor) =
        let s = x.Shape
        Tensor.reshape (Array.append [| s[0] * s[1] |] s[2..]) x

    let private record (r: Run) (name: string) (h: Tensor) (s: Tensor) =
        if r.Ctx.Probes.Membranes.Contains name then
            r.Membranes[name] <- h
            r.Pinned.Add h.Storage |> ignore

        if r.Ctx.Probes.Spikes.Contains name then
            r.Spikes[name] <- s
            r.Pinned.Add s.Storage |> ignore

        if r.Ctx.Probes.FiringRates then
            r.Rates[name] <- Diff.noGrad (fun () -> (Tensor.mean s).ToScalar())
            r.Population <- name
            r.PopulationSpikes <- s.Storage

    let private biasOf (r: Run) (name: string) (bias: bool) =
        if bias then Some r.Params[name + ".bias"] else None

    /// The weight and bias quantizers of a layer: Quantizer.mint with the layer's α (shared by the
    /// bias), identity where the plan leaves them in full precision.
    let private quantizers (r: Run) (name: string) : (Tensor -> Tensor) * (Tensor -> Tensor) =
        match r.Plan.Weights.TryFind name with
        | Some wq when wq.Weight <> Bits.FullPrecision && not (isNull r.Capture) ->
            (fun w ->
                r.Capture[name] <- Diff.detach w
                w),
            id
        | Some wq when wq.Weight <> Bits.FullPrecision ->
            let alpha = r.Params[name + ".alpha"]

            Quantizer.mint wq.Weight alpha,
            (if wq.Bias = Bits.FullPrecision then
                 id
             else
                 Quantizer.mint wq.Bias alpha)
        | _ -> id, id

    let private membraneQuant (r: Run) (name: string) : MembraneQuant option =
        match r.Plan.Membranes.TryFind name with
        | Some mp when mp.Bits <> Bits.FullPrecision && isNull r.Capture ->
            Some
                {
                    Bits = mp.Bits
                    Alpha = r.Params[mp.ScaleFrom + ".alpha"]
                    Scheme = mp.Scheme
                }
        | _ -> None

    /// The carried V₀ of a population, checked against its per-step shape [B, …].
    let private initialState (r: Run) (name: string) (stepShape: int[]) =
        match r.Ctx.InitialStates with
        | Some states ->
            match states.TryFind name with
            | Some v when v.Shape <> stepShape ->
                Errors.shapeMismatch
                    "Forward.run"
                    [ v.Shape; stepShape ]
                    (sprintf
                        "the carried state of population '%s' must have its per-step shape [B, …] (give the previous chunk's FinalStates of a batch of the same size)"
                        name)
            | found -> found
        | None -> None

    /// <c>initialState</c> as the fused kernels take it: null for a population at rest.
    let private initialStateOrRest (r: Run) (name: string) (stepShape: int[]) =
        initialState r name stepShape |> Option.defaultValue Unchecked.defaultof<Tensor>

    /// A population's V_T: kept (pinned) for the next chunk when the run carries states, else recycled.
    let private finalState (r: Run) (name: string) (vT: Tensor) =
        if r.Ctx.InitialStates.IsSome then
            r.States[name] <- vT
            r.Pinned.Add vT.Storage |> ignore
        else
            TensorScope.ReleaseEarly vT.Storage |> ignore

    /// The integer product of a conv or linear layer's weight codes with an integer input [N, …]
    /// (flat codes and the input's shape), Σ code·x without the bias, and the output shape ([N, O] or
    /// [N, O, H_o, W_o]), summed term by term in integers: the reference exactProduct is checked against.
    let referenceProduct (il: IntegerLayer) (x: int[]) (inShape: int[]) : int[] * int[] =
        let o = il.Shape[0]

        let acc, outShape =
            if il.Kind = "linear" then
                let n, fin = inShape[0], inShape[1]
                let acc = Array.zeroCreate (n * o)

                for i in 0 .. n - 1 do
                    for j in 0 .. o - 1 do
                        let mutable sum = 0

                        for k in 0 .. fin - 1 do
                            if x[i * fin + k] <> 0 then
                                sum <- sum + il.Weights[j * fin + k] * x[i * fin + k]

                        acc[i * o + j] <- sum

                acc, [| n; o |]
            else
                let n, c, h, w = inShape[0], inShape[1], inShape[2], inShape[3]
                let k, st, p = il.Shape[2], il.Stride, il.Padding
                let ho = (h + 2 * p - k) / st + 1
                let wo = (w + 2 * p - k) / st + 1
                let acc = Array.zeroCreate (n * o * ho * wo)

                for i in 0 .. n - 1 do
                    for ci in 0 .. c - 1 do
                        for y in 0 .. h - 1 do
                            for xx in 0 .. w - 1 do
                                let v = x[((i * c + ci) * h + y) * w + xx]

                                if v <> 0 then
                                    for oc in 0 .. o - 1 do
                                        for ky in 0 .. k - 1 do
                                            let oy = y + p - ky

                                            if oy >= 0 && oy % st = 0 && oy / st < ho then
                                                for kx in 0 .. k - 1 do
                                                    let ox = xx + p - kx

                                                    if ox >= 0 && ox % st = 0 && ox / st < wo then
                                                        let wi = ((oc * c + ci) * k + ky) * k + kx
                                                        let ai = ((i * o + oc) * ho + oy / st) * wo + ox / st
                                                        acc[ai] <- acc[ai] + il.Weights[wi] * v

                acc, [| n; o; ho; wo |]

        acc, outShape

    /// 2^24: every integer of magnitude up to this is a float32, so is every sum of such integers
    /// whose partial sums stay within it.
    let private exactFloat32 = 16777216.0

    /// The largest |Σ code·x| any output of the layer can reach on this input: max |x| times the
    /// largest row sum of |code| (per output channel, over C·K·K or In).
    let private productBound (il: IntegerLayer) (x: int[]) =
        let o = il.Shape[0]
        let fan = il.Weights.Length / o
        let mutable maxX = 0

        for v in x do
            maxX <- max maxX (abs v)

        let mutable maxRow = 0L

        for j in 0 .. o - 1 do
            let mutable row = 0L

            for k in 0 .. fan - 1 do
                row <- row + int64 (abs il.Weights[j * fan + k])

            maxRow <- max maxRow row

        float maxX * float maxRow

    /// The exact integer product Σ code·x of a conv or linear layer over an integer input [N, …], as
    /// referenceProduct (the default product of the integer datapath). When no output can exceed
    /// 2^24 in magnitude (productBound) every partial sum of every summation order is an exactly
    /// representable float32, so the product runs through the float32 conv/linear kernels and is
    /// converted back without loss; otherwise it falls back to referenceProduct.
    let exactProduct (il: IntegerLayer) (x: int[]) (inShape: int[]) : int[] * int[] =
        if productBound il x > exactFloat32 then
            referenceProduct il x inShape
        else
            Diff.noGrad (fun () ->
                use _ = TensorScope.Begin()
                let w = Tensor.ofArray il.Shape (Array.map float32 il.Weights)
                let input = Tensor.ofArray inShape (Array.map float32 x)

                let y =
                    if il.Kind = "linear" then
                        Tensor.linear w None input
                    else
                        Tensor.conv2d il.Stride il.Padding w None input

                y.ToArray() |> Array.map int, y.Shape)

    /// Integer accumulation of a conv or linear layer over a binary input [N, …]: acc = r.Product + bias code.
    let private accumulate (r: Run) (il: IntegerLayer) (x: int[]) (inShape: int[]) : int[] * int[] =
        let o = il.Shape[0]
        let acc, outShape = r.Product il x inShape

        match il.Bias with
        | Some b ->
            let per = acc.Length / outShape[0] / o

            for i in 0 .. acc.Length - 1 do
                acc[i] <- acc[i] + b[(i / per) % o]
        | None -> ()

        acc, outShape

    /// A weight layer and the population it feeds in integer arithmetic (IntegerNeuron's equations)
    /// on a binary [T·B, …] input; returns the spikes [T·B, …] as floats.
    let private integerPair (r: Run) (il: IntegerLayer) (nq: IntegerNeuron) (x: Tensor) =
        let codes = Diff.noGrad (fun () -> x.ToArray()) |> Array.map int
        let acc, outShape = accumulate r il codes x.Shape
        let per = acc.Length / r.Steps
        let seqShape = Array.append [| r.Steps; outShape[0] / r.Steps |] outShape[1..]
        // H only when it is probed; spikes are written straight into the output tensor.
        let keepH = r.Ctx.Probes.Membranes.Contains nq.Name
        let s = Autograd.alloc seqShape
        let h = if keepH then Autograd.alloc (Array.copy seqShape) else s
        let sd, hd = s.Data, h.Data
        // A carried state is on the grid of this pair's step: V = step · u with u an integer.
        let carried = initialState r nq.Name seqShape[1..]

        let u0 =
            match carried with
            | Some v ->
                Diff.noGrad (fun () -> v.ToArray())
                |> Array.map (fun x -> int (System.MathF.Round(x / il.Step)))
            | None -> Array.zeroCreate per

        let uT = Array.zeroCreate per

        // A neuron's T steps read only its own state: neurons run in parallel.
        Kernels.Par.forChunks per 4096 (fun i0 i1 ->
            for i in i0 .. i1 - 1 do
                let mutable u = u0[i]

                for t in 0 .. r.Steps - 1 do
                    let j = t * per + i
                    let hc = u + acc[j]
                    let spike = hc >= nq.Threshold

                    if keepH then
                        hd[j] <- il.Step * float32 hc

                    sd[j] <- (if spike then 1.0f else 0.0f)
                    u <- max -nq.Levels (min nq.Levels (Neuron.shiftRound nq.LeakShift (if spike then 0 else hc)))

                uT[i] <- u)

        if r.Ctx.InitialStates.IsSome then
            r.States[nq.Name] <- Tensor.ofArray seqShape[1..] (uT |> Array.map (fun k -> il.Step * float32 k))

        record r nq.Name h s
        r.IntegerRan.Add il.Name
        Tensor.reshape outShape s

    let private isBinary (x: Tensor) =
        Diff.noGrad (fun () -> x.ToArray())
        |> Array.forall (fun v -> v = 0.0f || v = 1.0f)

    /// A population run by the fused kernel whose backward reads neither its input current nor V₀
    /// (every neuron but PLIF, without membrane quantization).
    let private fusedWithoutState (neuron: Neuron) (quant: MembraneQuant option) =
        let plif =
            match neuron.Dynamics with
            | Dynamics.Plif _ -> true
            | _ -> false

        let quantized =
            match quant with
            | Some mq -> mq.Bits <> Bits.FullPrecision
            | None -> false

        not plif && not quantized

    /// A population of perStep neurons per step whose backward reads neither its input current nor V₀
    /// nor its spikes: the fused full-precision kernel, or a fused quantized one (Neuron.fusedQuantized).
    let private readsNoState (neuron: Neuron) (quant: MembraneQuant option) (perStep: int) =
        fusedWithoutState neuron quant
        || (match quant with
            | Some mq -> Neuron.fusedQuantized neuron mq perStep
            | None -> false)

    /// Recycles x, the output of <c>producer</c> (the previous layer of the same list), once
    /// <c>consumer</c> has turned it into y, when nothing can read it again: the producer always
    /// makes a fresh buffer and its backward rule does not read it (conv, linear and BN read their
    /// input, pooling its indices, the fused neuron its membrane H), the
    /// consumer's does not read its input (pooling, a fused population; any layer when no tape
    /// records), y does not alias it, and it was not handed out as a probe or tap. Like PyTorch
    /// freeing an activation no saved tensor refers to: the buffer serves the next allocation.
    /// True when the producer (the previous layer of the same list) always returns a fresh buffer
    /// that its own backward rule never reads.
    let private freshOutput (r: Run) (prefix: string) (producer: LayerSpec option) (x: Tensor) =
        match producer with
        | Some(Conv2d _)
        | Some(Linear _)
        | Some(Norm _)
        | Some(MaxPool _)
        | Some(AvgPool _) -> true
        | Some(Spiking(n, neuron)) ->
            r.Snn
            && readsNoState neuron (membraneQuant r (full prefix n)) (x.Numel / max 1 r.Steps)
        | _ -> false

    /// A fresh, unpinned intermediate that only this list holds and no backward rule reads: a
    /// consumer whose own backward does not read its input may write its result over it.
    let private exclusiveInput (r: Run) (prefix: string) (producer: LayerSpec option) (x: Tensor) =
        x.Offset = 0
        && freshOutput r prefix producer x
        && not (r.Pinned.Contains x.Storage)

    /// Inference (no tape, eval mode) on an exclusive intermediate: any next layer may overwrite it.
    let private canOverwrite (r: Run) (prefix: string) (producer: LayerSpec option) (x: Tensor) =
        not r.Ctx.Training
        && not (Autograd.isRecording ())
        && exclusiveInput r prefix producer x

    let private releaseConsumed
        (r: Run)
        (prefix: string)
        (producer: LayerSpec option)
        (consumer: LayerSpec)
        (x: Tensor)
        (y: Tensor)
        =
        let freshOutput = freshOutput r prefix producer x

        let dropsInput () =
            match consumer with
            | MaxPool _
            | AvgPool _ -> true
            | Spiking(n, neuron) ->
                r.Snn
                && readsNoState neuron (membraneQuant r (full prefix n)) (x.Numel / max 1 r.Steps)
            | Conv2d _
            | Linear _
            | Norm _ -> not (Autograd.isRecording ())
            | _ -> false

        if
            freshOutput
            && not (obj.ReferenceEquals(x.Storage, y.Storage))
            && not (r.Pinned.Contains x.Storage)
            && dropsInput ()
        then
            TensorScope.ReleaseEarly x.Storage |> ignore

    let rec private apply (r: Run) (prefix: string) (x: Tensor) (layer: LayerSpec) : Tensor =
        match layer with
        | Conv2d(n, _, _, _, stride, padding, bias) ->
            let name = full prefix n
            let qw, qb = quantizers r name
            Tensor.conv2d stride padding (qw r.Params[name + ".weight"]) (biasOf r name bias |> Option.map qb) x
        | Linear(n, _, _, bias) ->
            let name = full prefix n
            let qw, qb = quantizers r name
            Tensor.linear (qw r.Params[name + ".weight"]) (biasOf r name bias |> Option.map qb) x
        | Norm(n, _, kind) ->
            let name = full prefix n

            let state: BatchNormState =
                {
                    Mean = r.Buffers[name + ".running_mean"]
                    Var = r.Buffers[name + ".running_var"]
                }

            let gamma = QuantPlan.normGamma kind r.Params[name + ".weight"]

            let y, state' =
                Tensor.batchNorm BatchNormConfig.Default r.Ctx.Training gamma r.Params[name + ".bias"] state x

            r.NewBuffers[name + ".running_mean"] <- state'.Mean
            r.NewBuffers[name + ".running_var"] <- state'.Var
            y
        | Spiking(n, neuron) ->
            if not r.Snn then
                Tensor.relu x
            else
                let name = full prefix n
                // A PLIF's learnable w is a parameter: read it from the parameters being run, not the tree.
                let neuron =
                    match neuron.Dynamics with
                    | Dynamics.Plif(_, decayInput) ->
                        { neuron with
                            Dynamics = Dynamics.Plif(r.Params[name + ".w"], decayInput)
                        }
                    | _ -> neuron

                let seq = unflatten r.Steps x
                let carried = initialState r name seq.Shape[1..]

                let v0 =
                    carried |> Option.defaultWith (fun () -> Neuron.initState neuron seq.Shape[1..])

                let quant = membraneQuant r name
                let carry = r.Ctx.InitialStates.IsSome

                // V_T kept or recycled, and a V₀ this run made recycled.
                let finish (vT: Tensor) =
                    finalState r name vT

                    if not carry then
                        TensorScope.ReleaseEarly v0.Storage |> ignore

                if
                    fusedWithoutState neuron quant
                    && not (Autograd.isRecording ())
                    && not (r.Ctx.Probes.Membranes.Contains name)
                then
                    // Inference without membrane probes: spikes only, H never kept.
                    let s, vT = Neuron.runSpikesCarry false neuron v0 seq
                    finish vT
                    record r name s s
                    flatten s
                else
                    match quant with
                    | Some mq when
                        mq.Bits <> Bits.FullPrecision
                        && mq.Scheme = MembraneScheme.Uniform
                        && not (Autograd.isRecording ())
                        && not (r.Ctx.Probes.Membranes.Contains name)
                        ->
                        // The same for a membrane on the uniform grid.
                        let s, vT = Neuron.runGridSpikesCarry neuron mq v0 seq
                        finish vT
                        record r name s s
                        flatten s
                    | _ ->
                        let run = Neuron.runWith quant neuron v0 seq
                        record r name run.H run.S

                        if carry then
                            finalState r name run.VFinal
                        // The fused kernels have copied V₀ and nothing here reads V_T; only PLIF's backward and
                        // the per-step reference read V₀.
                        elif readsNoState neuron quant (Shape.numel seq.ShapeRef[1..]) then
                            TensorScope.ReleaseEarly v0.Storage |> ignore
                            TensorScope.ReleaseEarly run.VFinal.Storage |> ignore

                        flatten run.S
        | Relu _ -> Tensor.relu x
        | MaxPool(k, s) ->
            let y = Tensor.maxPool2d k s 0 x

            if
                r.Ctx.Probes.FiringRates
                && r.Snn
                && not (isNull r.PopulationSpikes)
                && obj.ReferenceEquals(x.Storage, r.PopulationSpikes)
            then
                r.Rates[RateKey.maxPooled r.Population] <- Diff.noGrad (fun () -> (Tensor.mean y).ToScalar())

            y
        | AvgPool(k, s) -> Tensor.avgPool2d k s 0 x
        | AdaptiveAvgPool o -> Tensor.adaptiveAvgPool2d o o x
        | Flatten -> Tensor.flatten 1 -1 x
        | Dropout p ->
            if not r.Ctx.Training || p = 0.0f then
                x
            else
                r.DropoutIndex <- r.DropoutIndex + 1
                let key = Rng.fold r.DropoutIndex r.Ctx.Rng

                if r.Snn then
                    let seq = unflatten r.Steps x
                    let maskShape = Array.append [| 1 |] seq.Shape[1..]
                    flatten (Tensor.dropoutBroadcast key p true maskShape seq)
                else
                    Tensor.dropout key p true x
        | Residual(n, kind, main, shortcut, after) ->
            let name = full prefix n
            let f = applyList r name x main
            let sc = applyList r name x shortcut

            let combined =
                match kind with
                | ResidualKind.SewIAnd when r.Snn -> (1.0f - sc) * f
                | _ -> f + sc

            applyList r name combined after
        | Stage(n, layers) -> applyList r (full prefix n) x layers
        | Tap n ->
            let name = full prefix n

            if r.Ctx.Probes.Taps.Contains name then
                r.Taps[name] <- if r.Snn then unflatten r.Steps x else Tensor.unsqueeze 0 x
                r.Pinned.Add x.Storage |> ignore

            x
        | RepeatOverTime ->
            Errors.invalidArg
                "Forward.run"
                "RepeatOverTime"
                prefix
                "the marker only at the top level of an architecture's layer list (it splits the static part from the per-step part)"
        | StackFrames _ ->
            Errors.invalidArg
                "Forward.run"
                "StackFrames"
                prefix
                "the marker only as the first layer of an architecture's top-level list (it turns the input sequence into one static sample)"

    /// Runs a layer list: a conv whose plan folds the Norm after it runs as FoldedBatchNorm.conv2d;
    /// an exported (weight [→ Norm] → Spiking) group on a binary input runs in integer arithmetic.
    and private applyList (r: Run) (prefix: string) (x: Tensor) (layers: LayerSpec list) : Tensor =
        applyFrom r prefix None x layers

    /// applyList where x is the output of <c>producer</c>, the previous layer of the same list (None
    /// for the list's input, which callers may still hold).
    and private applyFrom
        (r: Run)
        (prefix: string)
        (producer: LayerSpec option)
        (x: Tensor)
        (layers: LayerSpec list)
        : Tensor =
        let integer =
            match layers with
            | (Conv2d(n, _, _, _, _, _, _) | Linear(n, _, _, _)) :: rest when
                r.Snn && r.Integer.ContainsKey(full prefix n)
                ->
                let il = r.Integer[full prefix n]

                let rest =
                    match il.FoldedNorm, rest with
                    | Some _, Norm _ :: rest' -> rest'
                    | _ -> rest

                match rest, il.Neuron with
                | Spiking(sn, _) :: rest', Some nq when full prefix sn = nq.Name && isBinary x ->
                    Some(integerPair r il nq x, rest')
                | _ -> None
            | _ -> None

        match integer, layers with
        | Some(y, rest), _ -> applyList r prefix y rest
        | None, [] -> x
        | None, Conv2d(n, _, _, _, stride, padding, bias) :: Norm(nn, _, kind) :: rest when
            (match r.Plan.Weights.TryFind(full prefix n) with
             | Some wq -> wq.FoldedNorm = Some(full prefix nn)
             | None -> false)
            ->
            let name = full prefix n
            let normName = full prefix nn
            let qw, qb = quantizers r name

            let state: BatchNormState =
                {
                    Mean = r.Buffers[normName + ".running_mean"]
                    Var = r.Buffers[normName + ".running_var"]
                }

            let y, state' =
                FoldedBatchNorm.conv2d
                    BatchNormConfig.Default
                    r.Ctx.Training
                    stride
                    padding
                    qw
                    qb
                    r.Params[name + ".weight"]
                    (biasOf r name bias)
                    (QuantPlan.normGamma kind r.Params[normName + ".weight"])
                    r.Params[normName + ".bias"]
                    state
                    x

            r.NewBuffers[normName + ".running_mean"] <- state'.Mean
            r.NewBuffers[normName + ".running_var"] <- state'.Var
            applyList r prefix y rest
        | None, (Norm(n, channels, kind) as layer) :: rest when
            canOverwrite r prefix producer x
            && x.Rank >= 3
            && x.ShapeRef[1] = channels
            && x.Numel > x.ShapeRef[0] * channels
            ->
            // Inference on a buffer only this list holds: eval-mode BN in place (same arithmetic).
            let name = full prefix n

            let state: BatchNormState =
                {
                    Mean = r.Buffers[name + ".running_mean"]
                    Var = r.Buffers[name + ".running_var"]
                }

            let gamma = QuantPlan.normGamma kind r.Params[name + ".weight"]

            let y =
                Tensor.batchNormEvalInPlace BatchNormConfig.Default gamma r.Params[name + ".bias"] state x

            applyFrom r prefix (Some layer) y rest
        | None, (Spiking(n, neuron) as layer) :: rest when
            r.Snn
            && canOverwrite r prefix producer x
            && fusedWithoutState neuron (membraneQuant r (full prefix n))
            && not (r.Ctx.Probes.Membranes.Contains(full prefix n))
            ->
            // Inference on a buffer only this list holds: the spikes overwrite the input current.
            let name = full prefix n
            let seq = unflatten r.Steps x

            let s, vT =
                Neuron.runSpikesCarry true neuron (initialStateOrRest r name seq.ShapeRef[1..]) seq

            finalState r name vT

            record r name s s
            applyFrom r prefix (Some layer) (flatten s) rest
        | None, (Spiking(n, neuron) as layer) :: rest when
            r.Snn
            && exclusiveInput r prefix producer x
            && fusedWithoutState neuron (membraneQuant r (full prefix n))
            ->
            // Training: the fused kernel's backward reads H only, so S overwrites the input current
            // (one [T, …] buffer fewer per population while the tape lives).
            let name = full prefix n
            let seq = unflatten r.Steps x

            let run =
                Neuron.runOver true None neuron (initialStateOrRest r name seq.ShapeRef[1..]) seq

            record r name run.H run.S
            finalState r name run.VFinal

            applyFrom r prefix (Some layer) (flatten run.S) rest
        | None, layer :: rest ->
            let y = apply r prefix x layer
            releaseConsumed r prefix producer layer x y
            applyFrom r prefix (Some layer) y rest

    /// Activation checkpointing: runs a layer list as segments that each end at a spiking
    /// population (or the max-pool right after it), a residual block, before a stage or at the
    /// list's end; a stage's list is segmented in turn.
    /// <c>own</c>: x is a segment's output that only this list reads.
    let rec private applyCheckpointed (r: Run) (prefix: string) (own: bool) (x: Tensor) (layers: LayerSpec list) =
        match layers with
        | [] -> x
        | Stage(n, inner) :: rest ->
            let y = applyCheckpointed r (full prefix n) own x inner
            applyCheckpointed r prefix (own || not (obj.ReferenceEquals(x, y))) y rest
        | _ ->
            let rec split acc layers =
                match layers with
                | [] -> List.rev acc, []
                | Stage _ :: _ -> List.rev acc, layers
                // A max-pool right after a population joins its segment: the segment keeps the pooled
                // spikes (k² times fewer) and the pooled rate sees its producer.
                | (Spiking _ as l) :: (MaxPool _ as p) :: rest -> List.rev (p :: l :: acc), rest
                | (Spiking _ | Residual _ as l) :: rest -> List.rev (l :: acc), rest
                | l :: rest -> split (l :: acc) rest

            let group, rest = split [] layers
            applyCheckpointed r prefix true (checkpointSegment r prefix own x group) rest

    /// One segment through Diff.checkpoint: its input and every parameter are the checkpoint's inputs;
    /// its output and the probes it records are the outputs; BN running statistics and carried final
    /// states are extras of the first run; carried initial states are inputs. The second run
    /// (backward pass) starts from the same dropout index, so it draws the same masks. An input that
    /// is the previous segment's output, shared by no probe or output, goes back to the pool once
    /// this segment's backward pass has read it.
    and private checkpointSegment (r: Run) (prefix: string) (own: bool) (x: Tensor) (group: LayerSpec list) : Tensor =
        let names = r.Params.NamesRef
        let dropoutStart = r.DropoutIndex
        let mutable first = None

        let sorted (d: Dictionary<string, 'T>) =
            d |> Seq.sortBy (fun kv -> kv.Key) |> Array.ofSeq

        // Carried states are inputs too, so a gradient through a tracked V₀ survives the second run.
        let carried =
            match r.Ctx.InitialStates with
            | Some states -> Map.toArray states
            | None -> [||]

        let segment (xs: Tensor[]) =
            let ctx =
                if carried.Length = 0 then
                    r.Ctx
                else
                    { r.Ctx with
                        InitialStates =
                            Some(
                                carried
                                |> Array.mapi (fun k (n, _) -> n, xs[1 + names.Length + k])
                                |> Map.ofArray
                            )
                    }

            let s =
                newRun
                    ctx
                    r.Steps
                    r.Snn
                    (Parameters.Create(names, xs[1 .. names.Length]))
                    r.Buffers
                    r.Plan
                    r.Integer
                    r.Product
                    r.Capture
                    dropoutStart

            if obj.ReferenceEquals(xs[0].Storage, x.Storage) then
                s.Population <- r.Population
                s.PopulationSpikes <- r.PopulationSpikes

            let y = applyList s prefix xs[0] group

            if first.IsNone then
                first <- Some s

            let values (d: Dictionary<string, Tensor>) =
                sorted d |> Array.map (fun kv -> kv.Value)

            Array.concat [ [| y |]; values s.Membranes; values s.Spikes; values s.Taps ],
            Array.append (values s.NewBuffers) (values s.States)

        let inputs = Array.concat [ [| x |]; r.Params.Tensors; Array.map snd carried ]
        let consumed = Array.zeroCreate inputs.Length
        consumed[0] <- own && not (r.Pinned.Contains x.Storage)
        let outs, extras = Diff.checkpointConsuming consumed segment inputs

        // The rule reads consumed in the backward pass: an input an output shares (a tap on the
        // segment's input, a segment that only views it) is not the segment's alone, nor later ones'.
        if outs |> Array.exists (fun o -> obj.ReferenceEquals(o.Storage, x.Storage)) then
            consumed[0] <- false
            r.Pinned.Add x.Storage |> ignore

        let s = first.Value
        let mutable i = 1

        for d, target in [ s.Membranes, r.Membranes; s.Spikes, r.Spikes; s.Taps, r.Taps ] do
            for kv in sorted d do
                target[kv.Key] <- outs[i]
                r.Pinned.Add outs[i].Storage |> ignore
                i <- i + 1

        let mutable j = 0

        for d, target in [ s.NewBuffers, r.NewBuffers; s.States, r.States ] do
            for kv in sorted d do
                target[kv.Key] <- extras[j]
                j <- j + 1

        for kv in s.Rates do
            r.Rates[kv.Key] <- kv.Value

        r.DropoutIndex <- s.DropoutIndex
        r.IntegerRan.AddRange s.IntegerRan

        // The next segment's max-pool may read this segment's population spikes (through a tap).
        if
            not (isNull s.PopulationSpikes)
            && obj.ReferenceEquals(s.PopulationSpikes, outs[0].Storage)
        then
            r.Population <- s.Population
            r.PopulationSpikes <- outs[0].Storage
        else
            r.PopulationSpikes <- null

        outs[0]

    let private runCore
        (capture: Dictionary<string, Tensor>)
        (product: IntegerLayer -> int[] -> int[] -> int[] * int[])
        (integer: Map<string, IntegerLayer>)
        (arch: Architecture)
        (mode: ExecutionMode)
        (ctx: ForwardContext)
        (ps: Parameters)
        (buffers: Parameters)
        (x: Tensor)
        =
        let steps, snn =
            match mode with
            | ExecutionMode.Snn t ->
                if t < 1 then
                    Errors.invalidArg "Forward.run" "steps" t "T ≥ 1"

                t, true
            | ExecutionMode.Ann -> 1, false

        let inRank = arch.InputShape.Length

        let r =
            newRun ctx steps snn ps buffers (QuantPlan.read arch buffers) integer product capture 0

        let sequence = x.Rank = inRank + 2
        let stacked = Architecture.stackedFrames arch

        match stacked with
        | Some f when not sequence || x.Shape[0] <> f ->
            Errors.shapeMismatch
                "Forward.run"
                [ x.Shape; Array.append [| f; -1 |] arch.InputShape ]
                (sprintf
                    "%s stacks %d frames: give a sequence [%d, B, %s]"
                    arch.Name
                    f
                    f
                    (System.String.Join(", ", arch.InputShape)))
        | _ -> ()

        if not sequence && x.Rank <> inRank + 1 then
            Errors.shapeMismatch
                "Forward.run"
                [ x.Shape; Array.append [| -1 |] arch.InputShape ]
                (sprintf
                    "expected a batch [B, %s] or a sequence [T, B, %s]"
                    (System.String.Join(", ", arch.InputShape))
                    (System.String.Join(", ", arch.InputShape)))

        if x.Shape[x.Rank - inRank ..] <> arch.InputShape then
            Errors.shapeMismatch
                "Forward.run"
                [ x.Shape; arch.InputShape ]
                (sprintf "%s takes inputs of shape %s per sample" arch.Name (Errors.showShape arch.InputShape))

        if sequence && snn && stacked.IsNone && x.Shape[0] <> steps then
            Errors.shapeMismatch
                "Forward.run"
                [ x.Shape; [| steps |] ]
                (sprintf "the sequence has %d steps but the model runs T = %d" x.Shape[0] steps)

        let spiking = Architecture.spikingNames arch |> Set.ofList

        let taps =
            Architecture.layers arch
            |> List.choose (fun (n, l) ->
                match l with
                | Tap _ -> Some n
                | _ -> None)
            |> Set.ofList

        let checkNames (what: string) (known: Set<string>) (requested: Set<string>) =
            for name in requested do
                if not (known.Contains name) then
                    Errors.invalidArg
                        "Forward.run"
                        what
                        name
                        (sprintf
                            "a name of %s: %s"
                            arch.Name
                            (if known.IsEmpty then
                                 "(none in this architecture)"
                             else
                                 System.String.Join(", ", known)))

        checkNames "membrane probe" spiking ctx.Probes.Membranes
        checkNames "spike probe" spiking ctx.Probes.Spikes
        checkNames "tap probe" taps ctx.Probes.Taps

        match ctx.InitialStates with
        | Some states ->
            checkNames "carried state" spiking (states |> Map.keys |> Set.ofSeq)

            if not snn && not states.IsEmpty then
                Errors.invalidArg
                    "Forward.run"
                    "InitialStates"
                    (System.String.Join(", ", Map.keys states))
                    "no carried states for the ANN twin (its populations are ReLUs without state)"

            if stacked.IsSome then
                Errors.invalidArg
                    "Forward.run"
                    "InitialStates"
                    arch.Name
                    "a model that reads its frames one per step (this one stacks every frame into one static sample, so a sequence cannot run in chunks)"

        | None -> ()

        let repeat (v: Tensor) =
            if steps = 1 then v else flatten (Encoding.direct steps v)

        let hasMarker =
            arch.Layers
            |> List.exists (fun l ->
                match l with
                | RepeatOverTime -> true
                | _ -> false)

        // [T, B, C, …] → [B, T, C, …] → [B, T·C, …]: frame t fills channels t·C … (t+1)·C − 1.
        let stack (s: Tensor) =
            Tensor.transpose 0 1 s
            |> Tensor.reshape (Array.append [| s.Shape[1]; s.Shape[0] * s.Shape[2] |] s.Shape[3..])

        let mutable value =
            if stacked.IsSome then
                (if hasMarker then stack x else repeat (stack x))
            elif sequence then
                (if snn then flatten x else Tensor.meanDims [| 0 |] false x)
            elif hasMarker then
                x
            else
                repeat x

        let mutable repeated = (sequence && stacked.IsNone) || not hasMarker

        let segment = ResizeArray()

        let flush () =
            value <-
                // Calibration and integer-datapath runs record side effects a second run would repeat.
                if
                    ctx.CheckpointActivations
                    && Autograd.isRecording ()
                    && isNull r.Capture
                    && r.Integer.IsEmpty
                then
                    applyCheckpointed r "" false value (List.ofSeq segment)
                else
                    applyList r "" value (List.ofSeq segment)

            segment.Clear()

        let body =
            match arch.Layers with
            | StackFrames _ :: rest -> rest
            | layers -> layers

        for layer in body do
            match layer with
            | RepeatOverTime ->
                flush ()

                if not repeated then
                    value <- repeat value
                    repeated <- true
            | _ -> segment.Add layer

        flush ()

        let logits = unflatten steps value

        let newBuffers =
            buffers
            |> Parameters.map (fun n t ->
                match r.NewBuffers.TryGetValue n with
                | true, v -> Diff.detach v
                | _ -> t)

        let toMap (d: Dictionary<string, 'T>) =
            d |> Seq.map (fun kv -> kv.Key, kv.Value) |> Map.ofSeq

        {
            Logits = logits
            Membranes = toMap r.Membranes
            Spikes = toMap r.Spikes
            Taps = toMap r.Taps
            FiringRates = toMap r.Rates
            Buffers = newBuffers
            FinalStates = toMap r.States
        },
        List.ofSeq r.IntegerRan

    /// Sample-steps (T × batch slice) per slice of an inference run (see <c>run</c>).
    let mutable internal InferenceSliceSteps = 128

    /// Runs the architecture. The input is a static batch [B, …InputShape] (repeated over T, after
    /// the layers before RepeatOverTime if present) or a sequence [T, B, …InputShape] (an SNN reads
    /// one frame per step, an ANN their time-mean, an architecture starting with StackFrames T the
    /// frames concatenated along channels, see Architecture.stackFrames). A quantized
    /// model's plan (Model.quantize) is read from the buffers and applied: weights through
    /// Quantizer.mint, folded conv–BN pairs, quantized membranes (Neuron.runWith). An eval-mode
    /// run without a tape and without probes on a static batch of more than
    /// max 1 (128 / T) samples runs in slices of that many samples (logits concatenated).
    let run
        (arch: Architecture)
        (mode: ExecutionMode)
        (ctx: ForwardContext)
        (ps: Parameters)
        (buffers: Parameters)
        (x: Tensor)
        =
        let steps =
            match mode with
            | ExecutionMode.Snn t -> max 1 t
            | ExecutionMode.Ann -> 1

        let batch =
            if x.Rank = arch.InputShape.Length + 1 then
                x.ShapeRef[0]
            else
                0

        let slice = max 1 (InferenceSliceSteps / steps)

        // Inference without a tape, in eval mode and without probes is per sample at every layer
        // (BN uses its running statistics): the batch runs in slices of at most InferenceSliceSteps
        // sample-steps so that only one slice's activations exist at a time (a frozen teacher's
        // forward holds a fraction of the memory), with the same per-sample arithmetic.
        if
            not ctx.Training
            && not (Autograd.isRecording ())
            && ctx.Probes = ProbeRequest.None
            && ctx.InitialStates.IsNone
            && batch > slice
        then
            let parts =
                [
                    for start in 0..slice .. batch - 1 ->
                        fst (
                            runCore
                                null
                                exactProduct
                                Map.empty
                                arch
                                mode
                                ctx
                                ps
                                buffers
                                (Tensor.narrow 0 start (min slice (batch - start)) x)
                        )
                ]

            { parts.Head with
                Logits = Tensor.cat 1 (parts |> List.map (fun p -> p.Logits))
            }
        else
            fst (runCore null exactProduct Map.empty arch mode ctx ps buffers x)

    /// <c>run</c> with the given exported (weight → population) pairs in the integer datapath where
    /// their input is binary; also returns the names of the weight layers that ran in integers.
    let runInteger
        (integer: Map<string, IntegerLayer>)
        (arch: Architecture)
        (mode: ExecutionMode)
        (ctx: ForwardContext)
        (ps: Parameters)
        (buffers: Parameters)
        (x: Tensor)
        =
        runCore null exactProduct integer arch mode ctx ps buffers x

    /// <c>runInteger</c> with the integer pairs' product Σ code·x computed by <c>product</c> (given
    /// the layer, the flat binary input codes and the input shape [N, …]; returns the accumulations
    /// without the bias and the output shape, as <c>exactProduct</c>) — e.g. a crossbar datapath.
    let runIntegerWith
        (product: IntegerLayer -> int[] -> int[] -> int[] * int[])
        (integer: Map<string, IntegerLayer>)
        (arch: Architecture)
        (mode: ExecutionMode)
        (ctx: ForwardContext)
        (ps: Parameters)
        (buffers: Parameters)
        (x: Tensor)
        =
        runCore null product integer arch mode ctx ps buffers x

    /// A calibration run of a quantized model in full precision: for every quantized weight layer,
    /// the tensor its weight quantizer would receive on this batch — the weight itself, or the
    /// BN-folded weight W·γ/σ_B under this batch's statistics when the plan folds a Norm.
    let quantizerInputs
        (arch: Architecture)
        (mode: ExecutionMode)
        (ctx: ForwardContext)
        (ps: Parameters)
        (buffers: Parameters)
        (x: Tensor)
        : Map<string, Tensor> =
        let capture = Dictionary<string, Tensor>()
        runCore capture exactProduct Map.empty arch mode ctx ps buffers x |> ignore
        capture |> Seq.map (fun kv -> kv.Key, kv.Value) |> Map.ofSeq
