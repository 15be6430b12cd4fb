namespace SnnSpec

open System

/// Integer export of a quantized model (methods.md §2(b), "multiplier-less"; §2(e) invariant 3) and
/// its integer-arithmetic inference path.
///
/// Weights: codes round(Q·clamp(tanh(W)/α, −1, 1)) ∈ −Q…Q of the eval-mode (folded) weight, value
/// s·code with s = α/Q; b = 1 gives codes ±1 with s = α. A (weight → population) pair runs in
/// integers when the population's membrane shares the weight's α at the same bit width, the bias is
/// absent or quantized at that width, any Norm between them is folded, the reset is hard to 0 and the
/// leak is 2^−k (Dynamics.Mint or If): acc = Σ code·spike + bias code, H = U + acc, S = [H ≥ θ_int],
/// U = clamp(shiftRound(k, H·(1 − S)), −Q, Q). Every other layer runs in float with the same
/// operations as the fake-quantized model (MINT keeps the first layer and the classifier digital).
///
/// Agreement with the fake-quantized model (Forward.run, eval): with MembraneScheme.Uniform the
/// integer pairs compute exactly the float model's grid values, so spikes are equal (up to float
/// accumulation errors above half a grid step, i.e. sums over > ~10⁶ inputs). With
/// MembraneScheme.Mint the integer datapath drops MINT's tanh on U (methods.md §2(e).3), so U's code
/// differs from round(Q·tanh(U)/α) by up to Q·(|u| − tanh|u|)/α + 1 and spikes may differ; see
/// <c>agreement</c> (documented tolerance: ≥ 98 % equal spikes, measured 99.8 % on the tests' 4-bit
/// ConvNet with α = max|tanh W|; the gap grows with |U|/α).
module IntegerExport =
    let private op = "IntegerExport.export"

    /// The integer weights, thresholds, shifts and scales of every quantized Conv2d/Linear layer.
    let export (m: Model) : IntegerModel =
        let arch = m.Architecture
        let plan = QuantPlan.read arch m.Buffers
        let st = QuantPlan.structure arch

        let fixedBits (name: string) =
            match plan.Weights.TryFind name with
            | Some { Weight = Bits.Fixed b } -> Some b
            | _ -> None

        if st.WeightLayers |> List.forall (fun (n, _, _) -> (fixedBits n).IsNone) then
            let first =
                match st.WeightLayers with
                | (n, _, _) :: _ -> n
                | [] -> "(no weight layer)"

            Errors.invalidArg
                op
                (sprintf "%s: layer %s weight bits" arch.Name first)
                Bits.FullPrecision
                "a quantized model (Model.quantize with fixed weight bits on at least one Conv2d/Linear layer)"

        Diff.noGrad (fun () ->
            let layers =
                st.WeightLayers
                |> List.choose (fun (name, norm, spk) ->
                    fixedBits name
                    |> Option.map (fun bits ->
                        let wq = plan.Weights[name]
                        let alpha = m.Parameters[name + ".alpha"]
                        let weight = m.Parameters[name + ".weight"]
                        let bias = m.Parameters.TryFind(name + ".bias")

                        let kind, stride, padding =
                            match st.Specs[name] with
                            | Conv2d(_, _, _, _, s, p, _) -> "conv2d", s, p
                            | _ -> "linear", 1, 0

                        let w, b =
                            match wq.FoldedNorm with
                            | Some nn ->
                                let kindN =
                                    match st.Specs[nn] with
                                    | Norm(_, _, k) -> k
                                    | _ -> NormKind.Batch

                                let w', b' =
                                    FoldedBatchNorm.foldEval
                                        BatchNormConfig.Default
                                        weight
                                        bias
                                        (QuantPlan.normGamma kindN m.Parameters[nn + ".weight"])
                                        m.Parameters[nn + ".bias"]
                                        {
                                            Mean = m.Buffers[nn + ".running_mean"]
                                            Var = m.Buffers[nn + ".running_var"]
                                        }

                                w', Some b'
                            | None -> weight, bias

                        let levels = max 1 (Quantizer.levels bits)

                        let codes (t: Tensor) =
                            if bits = 1 then
                                (Tensor.tanh t).ToArray() |> Array.map (fun v -> if v >= 0.0f then 1 else -1)
                            else
                                let q = float32 levels

                                (Tensor.round (Tensor.clamp -1.0f 1.0f (Tensor.tanh t / alpha) * q)).ToArray()
                                |> Array.map int

                        let step =
                            if bits = 1 then
                                (Tensor.reshape [||] alpha).ToScalar()
                            else
                                Neuron.membraneStep
                                    {
                                        Bits = Bits.Fixed bits
                                        Alpha = alpha
                                        Scheme = MembraneScheme.Uniform
                                    }

                        let biasCodes =
                            match b with
                            | Some bt when wq.Bias = Bits.Fixed bits -> Some(codes bt)
                            | _ -> None

                        let neuron =
                            match spk, norm with
                            | Some sn, _ when
                                bits >= 2
                                && (b.IsNone || biasCodes.IsSome)
                                && (norm.IsNone || wq.FoldedNorm = norm)
                                ->
                                match plan.Membranes.TryFind sn, st.Specs[sn] with
                                | Some mp, Spiking(_, neuron) when
                                    mp.Bits = Bits.Fixed bits
                                    && mp.ScaleFrom = name
                                    && neuron.Reset = Reset.Hard 0.0f
                                    && (match neuron.Dynamics with
                                        | Dynamics.Mint l ->
                                            [ 0..15 ] |> List.exists (fun k -> l = MathF.Pow(2.0f, float32 -k))
                                        | Dynamics.If -> true
                                        | _ -> false)
                                    ->
                                    let mq =
                                        {
                                            Bits = mp.Bits
                                            Alpha = alpha
                                            Scheme = mp.Scheme
                                        }

                                    Some
                                        {
                                            Name = sn
                                            Threshold = Neuron.integerThreshold neuron mq
                                            ThresholdUnits = Neuron.thresholdUnits neuron mq
                                            LeakShift = Neuron.leakShift neuron
                                            MembraneBits = bits
                                            Levels = levels
                                            Scheme = mp.Scheme
                                        }
                                | _ -> None
                            | _ -> None

                        {
                            Name = name
                            Kind = kind
                            Shape = weight.Shape
                            Weights = codes w
                            Bias = biasCodes
                            Bits = bits
                            Levels = levels
                            Alpha = (Tensor.reshape [||] alpha).ToScalar()
                            Step = step
                            Stride = stride
                            Padding = padding
                            FoldedNorm = wq.FoldedNorm
                            Neuron = neuron
                        }))

            {
                Architecture = arch.Name
                Layers = layers
            })

    /// An eval-mode run with the exported pairs in integers, every population starting from
    /// <c>states</c> when given (else at rest, with no FinalStates).
    let private runIn
        (product: IntegerLayer -> int[] -> int[] -> int[] * int[])
        (exported: IntegerModel)
        (probes: ProbeRequest)
        (states: Map<string, Tensor> option)
        (m: Model)
        (x: Tensor)
        : ForwardOutput * string list =
        let pairs =
            exported.Layers
            |> List.filter (fun l -> l.Neuron.IsSome)
            |> List.map (fun l -> l.Name, l)
            |> Map.ofList

        let ctx =
            { ForwardContext.Eval with
                Probes = probes
                InitialStates = states
            }

        Diff.noGrad (fun () -> Forward.runIntegerWith product pairs m.Architecture m.Mode ctx m.Parameters m.Buffers x)

    /// <c>run</c> with the integer pairs' product Σ code·x computed by <c>product</c> (see
    /// Forward.runIntegerWith; Forward.exactProduct gives <c>run</c>).
    let runWith
        (product: IntegerLayer -> int[] -> int[] -> int[] * int[])
        (exported: IntegerModel)
        (probes: ProbeRequest)
        (m: Model)
        (x: Tensor)
        : ForwardOutput * string list =
        runIn product exported probes None m x

    /// One chunk of a sequence in integer arithmetic: every population starts from
    /// <c>states</c> (V₀ per population, [B, …]; a population not named starts at rest, so
    /// <c>Map.empty</c> starts a sequence) and the output's FinalStates carry V_T (an integer pair's
    /// state is step · u on its grid) to the next chunk. Chunks run one after another give the spikes
    /// of one run over the whole sequence.
    let runFrom
        (exported: IntegerModel)
        (probes: ProbeRequest)
        (states: Map<string, Tensor>)
        (m: Model)
        (x: Tensor)
        : ForwardOutput * string list =
        runIn Forward.exactProduct exported probes (Some states) m x

    /// The next chunk x [t, B, …InputShape] of a stream (Streaming.stepBy) in integer arithmetic:
    /// runFrom from the state's V per population. The chunks' spikes, concatenated, are those of one
    /// <c>run</c> over the whole sequence. Returns the chunk's output, the state after it and the
    /// weight layers that ran in integers in this chunk.
    let stepStream
        (exported: IntegerModel)
        (probes: ProbeRequest)
        (m: Model)
        (state: StreamState)
        (x: Tensor)
        : ForwardOutput * StreamState * string list =
        Streaming.stepBy "IntegerExport.stepStream" (runFrom exported probes) m state x

    /// Integer-arithmetic inference (eval mode): the exported pairs run in integers, everything else
    /// in float as in the fake-quantized model. Returns the forward output and the weight layers that
    /// ran in integers.
    let run (exported: IntegerModel) (probes: ProbeRequest) (m: Model) (x: Tensor) : ForwardOutput * string list =
        runWith Forward.exactProduct exported probes m x

    /// The fraction of equal spikes between the integer path and the fake-quantized model over every
    /// population fed by a pair that ran in integers on x (1 = identical, and 1 when none did: a pair
    /// whose input is not binary runs in float).
    let agreement (exported: IntegerModel) (m: Model) (x: Tensor) =
        let names =
            exported.Layers
            |> List.choose (fun l -> l.Neuron |> Option.map (fun n -> n.Name))
            |> Set.ofList

        let probes =
            { ProbeRequest.None with
                Spikes = names
            }

        let integer, ran = run exported probes m x

        let names =
            exported.Layers
            |> List.filter (fun l -> List.contains l.Name ran)
            |> List.choose (fun l -> l.Neuron |> Option.map (fun n -> n.Name))
            |> Set.ofList

        let reference =
            Diff.noGrad (fun () ->
                Forward.run
                    m.Architecture
                    m.Mode
                    { ForwardContext.Eval with
                        Probes = probes
                    }
                    m.Parameters
                    m.Buffers
                    x)

        let mutable equal = 0L
        let mutable total = 0L

        for n in names do
            let a = integer.Spikes[n].ToArray()
            let b = reference.Spikes[n].ToArray()
            total <- total + int64 a.Length

            for i in 0 .. a.Length - 1 do
                if a[i] = b[i] then
                    equal <- equal + 1L

        if total = 0L then 1.0 else float equal / float total
