namespace SnnSpec

open System
open System.Text

/// A model value: its architecture, how it executes (SNN with T steps, or the ANN twin), its
/// parameters and its buffers (BN running statistics). The forward function is pure.
type Model =
    {
        Architecture: Architecture
        Mode: ExecutionMode
        Parameters: Parameters
        Buffers: Parameters
    }

module Model =
    /// A freshly initialised model; the same seed gives the same values.
    let init (seed: int) (mode: ExecutionMode) (arch: Architecture) =
        let ps, bs = Init.parameters seed arch

        {
            Architecture = arch
            Mode = mode
            Parameters = ps
            Buffers = bs
        }

    /// Runs the model with explicit parameters (the function to differentiate in training).
    let apply (ctx: ForwardContext) (m: Model) (ps: Parameters) (x: Tensor) =
        Forward.run m.Architecture m.Mode ctx ps m.Buffers x

    /// Runs the model with its own parameters.
    let forward (ctx: ForwardContext) (m: Model) (x: Tensor) = apply ctx m m.Parameters x

    /// The same parameters run at another T (SNN) — a versatile-teacher student or a deployment at t ≤ T.
    /// Refused for an architecture that stacks frames (Architecture.stackFrames): it reads a whole
    /// sequence as one sample along channels, so it has no per-step twin.
    let withSteps (steps: int) (m: Model) =
        if steps < 1 then
            Errors.invalidArg "Model.withSteps" "steps" steps "at least 1 (the number of time steps T)"

        match Architecture.stackedFrames m.Architecture with
        | Some f ->
            Errors.invalidArg
                "Model.withSteps"
                "model"
                m.Architecture.Name
                (sprintf
                    "a model that reads one frame per step; this one stacks %d frames along channels into one sample, so it has no SNN twin. Build the SNN from the architecture without StackFrames (e.g. ZooOptions.StackFrames = 0)"
                    f)
        | None -> ()

        { m with
            Mode = ExecutionMode.Snn steps
        }

    /// The ANN twin with the same parameters (every spiking layer becomes a ReLU).
    let asAnn (m: Model) = { m with Mode = ExecutionMode.Ann }

    /// Total trainable scalars.
    let parameterCount (m: Model) = m.Parameters.ElementCount

    /// A one-screen table: layer, kind, output detail, parameter count.
    let summary (m: Model) =
        let sb = StringBuilder()

        let modeText =
            match m.Mode with
            | ExecutionMode.Snn t -> sprintf "SNN, T = %d" t
            | ExecutionMode.Ann ->
                match Architecture.stackedFrames m.Architecture with
                | Some f -> sprintf "ANN, %d frames stacked" f
                | None -> "ANN"

        sb.AppendLine(
            sprintf
                "%s (%s), input %s, %d classes"
                m.Architecture.Name
                modeText
                (Errors.showShape m.Architecture.InputShape)
                m.Architecture.Classes
        )
        |> ignore

        let count (name: string) =
            m.Parameters.Names
            |> Array.filter (fun n -> n.StartsWith(name + "."))
            |> Array.sumBy (fun n -> int64 m.Parameters[n].Numel)

        for name, layer in Architecture.layers m.Architecture do
            let detail =
                match layer with
                | Conv2d(_, i, o, k, s, p, _) -> sprintf "conv %d→%d k%d s%d p%d" i o k s p
                | Linear(_, i, o, _) -> sprintf "linear %d→%d" i o
                | Norm(_, c, _) -> sprintf "batch norm %d" c
                | Spiking(_, n) -> sprintf "spiking %A θ=%g %O" n.Dynamics n.Threshold n.Surrogate
                | Relu _ -> "relu"
                | Residual(_, k, _, _, _) -> sprintf "residual %A" k
                | Stage _ -> "stage"
                | Tap _ -> "tap"
                | _ -> ""

            match layer with
            | Conv2d _
            | Linear _
            | Norm _
            | Spiking _
            | Residual _
            | Stage _
            | Tap _ ->
                let depth = name.Split('.').Length - 1

                sb.AppendLine(sprintf "  %-34s %-44s %10d" (String(' ', 2 * depth) + name) detail (count name))
                |> ignore
            | _ -> ()

        sb.AppendLine(sprintf "  total parameters: %d" (parameterCount m)) |> ignore
        sb.ToString()

    /// The model's quantization plan (empty unless made by <c>quantize</c>).
    let quantPlan (m: Model) = QuantPlan.read m.Architecture m.Buffers

    /// The quantized twin of a model (methods.md §2(b); MINT's quantized VGG/ResNet layers): the
    /// same architecture, each Conv2d/Linear weight through Quantizer.mint with a new learnable
    /// "<layer>.alpha" = mintInitAlpha b W, the bias through the same quantizer and α, a Conv2d
    /// immediately followed by a Norm folded into it (FoldBatchNorm), and every Spiking layer's
    /// membrane quantized after each update with the α of the weight layer that feeds it (share mode;
    /// a population whose feeding layer stays full precision stays full precision too) or its own
    /// "<lif>.alpha" = 1. The plan is stored as buffers "<layer>.quant.*" (bit widths, 0 = full
    /// precision; flags 0/1), so checkpoints, Model.withSteps and training carry it unchanged.
    /// Full precision everywhere with FoldBatchNorm = false computes the original model exactly.
    let quantize (cfg: QuantConfig) (m: Model) : Model =
        let op = "Model.quantize"
        let arch = m.Architecture
        let st = QuantPlan.structure arch
        let weightNames = st.WeightLayers |> List.map (fun (n, _, _) -> n)
        let spikingNames = st.Feeding |> Map.toList |> List.map fst
        let known = Set.ofList (weightNames @ spikingNames)

        let allowed () =
            sprintf
                "a Conv2d, Linear or Spiking layer of %s: %s"
                arch.Name
                (if known.IsEmpty then
                     "(none)"
                 else
                     String.Join(", ", weightNames @ spikingNames))

        let checkBits (what: string) (b: Bits) =
            match b with
            | Bits.Fixed n when n < 1 || n > 16 ->
                Errors.invalidArg op what n "a bit width in 1…16, or Bits.FullPrecision"
            | _ -> ()

        checkBits "Weight bits" cfg.Weight
        checkBits "Membrane bits" cfg.Membrane
        checkBits "Bias bits" cfg.Bias

        for KeyValue(name, lq) in cfg.PerLayer do
            if not (known.Contains name) then
                Errors.invalidArg op "PerLayer layer" name (allowed ())

            checkBits (sprintf "%s weight bits" name) lq.Weight
            checkBits (sprintf "%s bias bits" name) lq.Bias
            checkBits (sprintf "%s membrane bits" name) lq.Membrane

        for name in cfg.FullPrecisionLayers do
            if not (known.Contains name) then
                Errors.invalidArg op "FullPrecisionLayers layer" name (allowed ())

        if (quantPlan m).IsQuantized then
            Errors.invalidArg op "model" arch.Name "an unquantized model (this one already carries a quantization plan)"

        let fpWeights =
            match cfg.KeepFirstLayerFullPrecision, weightNames with
            | true, first :: _ -> Set.add first cfg.FullPrecisionLayers
            | _ -> cfg.FullPrecisionLayers

        let ps = ResizeArray()
        let bs = ResizeArray()
        let quantizedWeights = Collections.Generic.HashSet<string>()

        for name, norm, _ in st.WeightLayers do
            if not (fpWeights.Contains name) then
                let lq = cfg.PerLayer.TryFind name

                let wb = lq |> Option.map (fun l -> l.Weight) |> Option.defaultValue cfg.Weight

                let bb =
                    match wb with
                    | Bits.FullPrecision -> Bits.FullPrecision
                    | _ -> lq |> Option.map (fun l -> l.Bias) |> Option.defaultValue cfg.Bias

                let fold = cfg.FoldBatchNorm && norm.IsSome
                bs.Add(QuantPlan.weightBitsKey name, Tensor.scalar (QuantPlan.encodeBits wb))
                bs.Add(QuantPlan.biasBitsKey name, Tensor.scalar (QuantPlan.encodeBits bb))
                bs.Add(QuantPlan.foldKey name, Tensor.scalar (if fold then 1.0f else 0.0f))

                match wb with
                | Bits.Fixed b ->
                    quantizedWeights.Add name |> ignore
                    ps.Add(name + ".alpha", Quantizer.mintInitAlpha b m.Parameters[name + ".weight"])
                | Bits.FullPrecision -> ()

        for name in spikingNames do
            let mb =
                cfg.PerLayer.TryFind name
                |> Option.map (fun l -> l.Membrane)
                |> Option.defaultValue cfg.Membrane

            let source = st.Feeding[name]

            let quantized =
                mb <> Bits.FullPrecision
                && not (cfg.FullPrecisionLayers.Contains name)
                && (not cfg.ShareMembraneScale
                    || (source |> Option.exists quantizedWeights.Contains))

            if quantized then
                bs.Add(QuantPlan.membraneBitsKey name, Tensor.scalar (QuantPlan.encodeBits mb))

                bs.Add(
                    QuantPlan.membraneSchemeKey name,
                    Tensor.scalar (
                        match cfg.MembraneScheme with
                        | MembraneScheme.Mint -> 0.0f
                        | MembraneScheme.Uniform -> 1.0f
                    )
                )

                bs.Add(QuantPlan.membraneSharedKey name, Tensor.scalar (if cfg.ShareMembraneScale then 1.0f else 0.0f))

                if not cfg.ShareMembraneScale then
                    ps.Add(name + ".alpha", Tensor.scalar 1.0f)

        { m with
            Parameters = Parameters.concat [ m.Parameters; Parameters.ofList (List.ofSeq ps) ]
            Buffers = Parameters.concat [ m.Buffers; Parameters.ofList (List.ofSeq bs) ]
        }

    /// LSQ-style first-batch initialisation of a quantized model's weight scales: every
    /// "<layer>.alpha" becomes mintInitAlpha b W_q, where W_q is what that layer's quantizer sees on
    /// batch x — the weight, or for a folded conv→BN the folded weight W·γ/σ_B under x's batch
    /// statistics. At Model.quantize time only the unfolded W is known; the folded weight is larger
    /// by γ/σ_B (often ×10 or more at initialisation), so without this pass every folded weight clips
    /// to ±α and the layers fed by it stay silent. Call once on a training batch before training; to
    /// deploy without training, follow it with QuantTrajectory.fitScales (α₀ shrinks as 1/√Q and
    /// clips most weights at 4 bits and more until training moves it).
    let calibrateScales (x: Tensor) (m: Model) : Model =
        let plan = quantPlan m

        if plan.Weights.IsEmpty then
            Errors.invalidArg "Model.calibrateScales" "model" m.Architecture.Name "a model made by Model.quantize"

        let inputs =
            Diff.noGrad (fun () ->
                Forward.quantizerInputs
                    m.Architecture
                    m.Mode
                    (ForwardContext.Train(Rng.create 0))
                    m.Parameters
                    m.Buffers
                    x)

        let ps =
            m.Parameters
            |> Parameters.map (fun n t ->
                if n.EndsWith ".alpha" then
                    let layer = n.Substring(0, n.Length - ".alpha".Length)

                    match plan.Weights.TryFind layer, inputs.TryFind layer with
                    | Some { Weight = Bits.Fixed b }, Some w -> Quantizer.mintInitAlpha b w
                    | _ -> t
                else
                    t)

        { m with Parameters = ps }
