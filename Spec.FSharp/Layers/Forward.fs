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
        /// Whether to compute every population's firing rate (mean spikes per neuron per step).
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
    }

    static member Eval =
        {
            Training = false
            Rng = Rng.create 0
            Probes = ProbeRequest.None
        }

    static member Train(rng: Rng) =
        {
            Training = true
            Rng = rng
            Probes = ProbeRequest.None
        }

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
            mutable DropoutIndex: int
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

    let rec private apply (r: Run) (prefix: string) (x: Tensor) (layer: LayerSpec) : Tensor =
        match layer with
        | Conv2d(n, _, _, _, stride, padding, bias) ->
            let name = full prefix n

            Tensor.conv2d
                stride
                padding
                r.Params[name + ".weight"]
                (if bias then Some r.Params[name + ".bias"] else None)
                x
        | Linear(n, _, _, bias) ->
            let name = full prefix n
            Tensor.linear r.Params[name + ".weight"] (if bias then Some r.Params[name + ".bias"] else None) x
        | Norm(n, _, kind) ->
            let name = full prefix n

            let state: BatchNormState =
                {
                    Mean = r.Buffers[name + ".running_mean"]
                    Var = r.Buffers[name + ".running_var"]
                }

            let gamma =
                match kind with
                | NormKind.Batch -> r.Params[name + ".weight"]
                | NormKind.ThresholdDependent(alpha, theta) -> r.Params[name + ".weight"] * (alpha * theta)

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
                let seq = unflatten r.Steps x
                let v0 = Neuron.initState neuron seq.Shape[1..]
                let run = Neuron.run neuron v0 seq

                if r.Ctx.Probes.Membranes.Contains name then
                    r.Membranes[name] <- run.H

                if r.Ctx.Probes.Spikes.Contains name then
                    r.Spikes[name] <- run.S

                if r.Ctx.Probes.FiringRates then
                    r.Rates[name] <- Diff.noGrad (fun () -> (Tensor.mean run.S).ToScalar())

                flatten run.S
        | Relu _ -> Tensor.relu x
        | MaxPool(k, s) -> Tensor.maxPool2d k s 0 x
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
            let f = List.fold (apply r name) x main
            let sc = List.fold (apply r name) x shortcut

            let combined =
                match kind with
                | ResidualKind.SewIAnd when r.Snn -> (1.0f - sc) * f
                | _ -> f + sc

            List.fold (apply r name) combined after
        | Stage(n, layers) -> List.fold (apply r (full prefix n)) x layers
        | Tap n ->
            let name = full prefix n

            if r.Ctx.Probes.Taps.Contains name then
                r.Taps[name] <- if r.Snn then unflatten r.Steps x else Tensor.unsqueeze 0 x

            x
        | RepeatOverTime ->
            Errors.invalidArg
                "Forward.run"
                "RepeatOverTime"
                prefix
                "the marker only at the top level of an architecture's layer list (it splits the static part from the per-step part)"

    /// Runs the architecture. The input is a static batch [B, …InputShape] (repeated over T, after
    /// the layers before RepeatOverTime if present) or a sequence [T, B, …InputShape].
    let run
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
                DropoutIndex = 0
            }

        let sequence = x.Rank = inRank + 2

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

        if sequence && snn && x.Shape[0] <> steps then
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
                        (sprintf "%s probe" what)
                        name
                        (sprintf
                            "a name of %s: %s"
                            arch.Name
                            (if known.IsEmpty then
                                 "(none in this architecture)"
                             else
                                 System.String.Join(", ", known)))

        checkNames "membrane" spiking ctx.Probes.Membranes
        checkNames "spike" spiking ctx.Probes.Spikes
        checkNames "tap" taps ctx.Probes.Taps

        let repeat (v: Tensor) =
            if steps = 1 then v else flatten (Encoding.direct steps v)

        let hasMarker =
            arch.Layers
            |> List.exists (fun l ->
                match l with
                | RepeatOverTime -> true
                | _ -> false)

        let mutable value =
            if sequence then
                (if snn then flatten x else Tensor.meanDims [| 0 |] false x)
            elif hasMarker then
                x
            else
                repeat x

        let mutable repeated = sequence || not hasMarker

        for layer in arch.Layers do
            match layer with
            | RepeatOverTime ->
                if not repeated then
                    value <- repeat value
                    repeated <- true
            | _ -> value <- apply r "" value layer

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
        }
