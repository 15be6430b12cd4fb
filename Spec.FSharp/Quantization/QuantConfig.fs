namespace SnnSpec

open System

/// Bit widths for one named layer, overriding the model-wide ones: Weight and Bias apply to a Conv2d
/// or Linear layer, Membrane to a Spiking layer (the other fields are then ignored).
type LayerQuant =
    {
        Weight: Bits
        Bias: Bits
        Membrane: Bits
    }

/// How a model becomes its quantized twin (methods.md §2(b), MINT's QConvBN2dLIF / QFConvBN2dLIF).
/// Every Conv2d/Linear weight goes through Quantizer.mint with a learnable "<layer>.alpha"
/// (α₀ = 2·mean|W|/√Q); its bias (when quantized) uses the same α. A Spiking layer's membrane is
/// quantized with the α of the weight layer that feeds it (share mode) or its own learnable
/// "<lif>.alpha" (α₀ = 1, the range of tanh) [R].
type QuantConfig =
    {
        Weight: Bits
        Membrane: Bits
        /// The (folded) bias; quantized only where the weight is (it shares the weight's α).
        Bias: Bits
        MembraneScheme: MembraneScheme
        ShareMembraneScale: bool
        /// A Conv2d immediately followed by a Norm in the same layer list runs as
        /// FoldedBatchNorm.conv2d (W' = W·γ/σ, b' = β + γ·(b − μ)/σ) with W' and b' quantized.
        FoldBatchNorm: bool
        /// MINT keeps the first weight layer (the direct-encoding conv) and the populations it feeds
        /// in full precision.
        KeepFirstLayerFullPrecision: bool
        /// Full names of Conv2d/Linear/Spiking layers left in full precision.
        FullPrecisionLayers: Set<string>
        /// Per-layer bit widths by full name.
        PerLayer: Map<string, LayerQuant>
    }

    /// MINT's recipe at b bits: weights, bias and membrane at b, share mode, BN folded, the first layer FP.
    static member Mint(bits: int) =
        {
            Weight = Bits.Fixed bits
            Membrane = Bits.Fixed bits
            Bias = Bits.Fixed bits
            MembraneScheme = MembraneScheme.Mint
            ShareMembraneScale = true
            FoldBatchNorm = true
            KeepFirstLayerFullPrecision = true
            FullPrecisionLayers = Set.empty
            PerLayer = Map.empty
        }

    /// <c>Mint bits</c> with the uniform (tanh-free) membrane scheme: the integer-exportable variant.
    static member Integer(bits: int) =
        { QuantConfig.Mint bits with
            MembraneScheme = MembraneScheme.Uniform
        }

    /// Everything full precision, nothing folded: the quantized twin computes the original model.
    static member FullPrecision =
        {
            Weight = Bits.FullPrecision
            Membrane = Bits.FullPrecision
            Bias = Bits.FullPrecision
            MembraneScheme = MembraneScheme.Mint
            ShareMembraneScale = true
            FoldBatchNorm = false
            KeepFirstLayerFullPrecision = false
            FullPrecisionLayers = Set.empty
            PerLayer = Map.empty
        }

/// The resolved quantization of one Conv2d/Linear layer.
type WeightQuant =
    {
        Layer: string
        Weight: Bits
        Bias: Bits
        /// The Norm folded into this conv, if any.
        FoldedNorm: string option
    }

/// The resolved membrane quantization of one Spiking layer; the scale is the parameter
/// "<ScaleFrom>.alpha" (the feeding weight layer in share mode, the population itself otherwise).
type MembranePlan =
    {
        Layer: string
        Bits: Bits
        Scheme: MembraneScheme
        ScaleFrom: string
    }

/// A quantized model's plan, read back from its buffers.
type QuantPlan =
    {
        Weights: Map<string, WeightQuant>
        Membranes: Map<string, MembranePlan>
    }

    static member Empty =
        {
            Weights = Map.empty
            Membranes = Map.empty
        }

    member p.IsQuantized = not p.Weights.IsEmpty || not p.Membranes.IsEmpty

/// The integer view of a Spiking population fed by an exported layer: H_code = U_code + acc
/// (acc = Σ code·spike + bias code), S = [H_code ≥ Threshold], U_code = clamp(shiftRound(LeakShift,
/// H_code·(1 − S)), −Levels, Levels). Values in units of the step s = α/Q.
type IntegerNeuron =
    {
        Name: string
        /// θ_int (see Neuron.integerThreshold).
        Threshold: int
        /// θ·Q/α, the real-valued threshold in integer units.
        ThresholdUnits: float32
        /// ρ = 2^−LeakShift.
        LeakShift: int
        MembraneBits: int
        Levels: int
        Scheme: MembraneScheme
    }

/// One exported Conv2d/Linear layer: integer weight codes in −Q…Q (row-major, [O, C, K, K] or
/// [O, In]), bias codes on the weight grid ([O]; present when the bias is quantized at the weight's
/// bit width), the scale α and step s = α/Q (value = s·code), and the population it feeds when the
/// pair runs in the integer datapath (share mode, equal bit widths, hard reset to 0, λ = 2^−k).
type IntegerLayer =
    {
        Name: string
        /// "conv2d" or "linear".
        Kind: string
        Shape: int[]
        Weights: int[]
        Bias: int[] option
        Bits: int
        Levels: int
        Alpha: float32
        Step: float32
        Stride: int
        Padding: int
        FoldedNorm: string option
        Neuron: IntegerNeuron option
    }

    /// The weight codes as signed bytes (b ≤ 8), the form a crossbar's cell-level mapping takes.
    member l.WeightsInt8() =
        if l.Bits > 8 then
            Errors.invalidArg
                "IntegerLayer.WeightsInt8"
                (sprintf "%s bits" l.Name)
                l.Bits
                "a bit width ≤ 8 (use Weights, int[], for wider codes)"

        l.Weights |> Array.map sbyte

/// A whole model's integer export, layers in forward order.
type IntegerModel =
    {
        Architecture: string
        Layers: IntegerLayer list
    }

    member m.Layer(name: string) =
        match m.Layers |> List.tryFind (fun l -> l.Name = name) with
        | Some l -> l
        | None ->
            Errors.invalidArg
                "IntegerModel.Layer"
                "name"
                name
                (sprintf "an exported layer: %s" (String.Join(", ", m.Layers |> List.map (fun l -> l.Name))))

module QuantPlan =
    /// Buffer names carrying the plan: bit widths as scalars (0 = full precision), flags as 0/1.
    let weightBitsKey (layer: string) = layer + ".quant.weight_bits"
    let biasBitsKey (layer: string) = layer + ".quant.bias_bits"
    let foldKey (layer: string) = layer + ".quant.fold_bn"
    let membraneBitsKey (layer: string) = layer + ".quant.membrane_bits"
    let membraneSchemeKey (layer: string) = layer + ".quant.membrane_scheme"
    let membraneSharedKey (layer: string) = layer + ".quant.membrane_shared"

    /// The plan buffers of a quantized Conv2d/Linear layer, in the order Model.quantize adds them.
    let weightKeys (layer: string) =
        [ weightBitsKey layer; biasBitsKey layer; foldKey layer ]

    /// The plan buffers of a quantized Spiking layer, in the order Model.quantize adds them.
    let membraneKeys (layer: string) =
        [ membraneBitsKey layer; membraneSchemeKey layer; membraneSharedKey layer ]

    let internal encodeBits (b: Bits) =
        match b with
        | Bits.Fixed n -> float32 n
        | Bits.FullPrecision -> 0.0f

    let internal decodeBits (v: float32) =
        if v = 0.0f then Bits.FullPrecision else Bits.Fixed(int v)

    /// The structure the plan depends on, from the layer tree (full names, forward order):
    /// every weight layer with the Norm immediately after it in the same list and the Spiking layer
    /// right after that (pair or triple), and for every Spiking layer the weight layer executed
    /// last before it in depth-first forward order (main, shortcut, after) — its share-mode source.
    type Structure =
        {
            /// (weight layer, following Norm, following Spiking) in forward order.
            WeightLayers: (string * string option * string option) list
            Feeding: Map<string, string option>
            /// Full name → layer spec for Conv2d/Linear/Norm/Spiking.
            Specs: Map<string, LayerSpec>
        }

    let structure (arch: Architecture) : Structure =
        let weights = ResizeArray()
        let feeding = Collections.Generic.Dictionary<string, string option>()
        let specs = Collections.Generic.Dictionary<string, LayerSpec>()
        let mutable last: string option = None

        let rec go (prefix: string) (layers: LayerSpec list) =
            let full n =
                if prefix = "" then n else prefix + "." + n

            let rec next (ls: LayerSpec list) =
                match ls with
                | [] -> ()
                | l :: rest ->
                    match l with
                    | Conv2d(n, _, _, _, _, _, _)
                    | Linear(n, _, _, _) ->
                        let norm, spk =
                            match rest with
                            | Norm(nn, _, _) :: Spiking(sn, _) :: _ -> Some(full nn), Some(full sn)
                            | Norm(nn, _, _) :: _ -> Some(full nn), None
                            | Spiking(sn, _) :: _ -> None, Some(full sn)
                            | _ -> None, None

                        let norm =
                            match l with
                            | Conv2d _ -> norm
                            | _ -> None

                        weights.Add(full n, norm, spk)
                        specs[full n] <- l
                        last <- Some(full n)
                    | Norm(n, _, _) -> specs[full n] <- l
                    | Spiking(n, _) ->
                        specs[full n] <- l
                        feeding[full n] <- last
                    | Residual(n, _, main, sc, after) ->
                        go (full n) main
                        go (full n) sc
                        go (full n) after
                    | Stage(n, ls) -> go (full n) ls
                    | _ -> ()

                    next rest

            next layers

        go "" arch.Layers

        {
            WeightLayers = List.ofSeq weights
            Feeding = feeding |> Seq.map (fun kv -> kv.Key, kv.Value) |> Map.ofSeq
            Specs = specs |> Seq.map (fun kv -> kv.Key, kv.Value) |> Map.ofSeq
        }

    /// The plan stored in a model's buffers (empty for an unquantized model).
    let read (arch: Architecture) (buffers: Parameters) : QuantPlan =
        let get (key: string) =
            buffers.TryFind key |> Option.map (fun t -> t.ToArray()[0])

        let st = structure arch

        let weights =
            st.WeightLayers
            |> List.choose (fun (name, norm, _) ->
                get (weightBitsKey name)
                |> Option.map (fun wb ->
                    name,
                    {
                        Layer = name
                        Weight = decodeBits wb
                        Bias =
                            get (biasBitsKey name)
                            |> Option.map decodeBits
                            |> Option.defaultValue Bits.FullPrecision
                        FoldedNorm = (if get (foldKey name) = Some 1.0f then norm else None)
                    }))
            |> Map.ofList

        let membranes =
            st.Feeding
            |> Map.toList
            |> List.choose (fun (name, src) ->
                get (membraneBitsKey name)
                |> Option.map (fun mb ->
                    let shared = get (membraneSharedKey name) <> Some 0.0f

                    name,
                    {
                        Layer = name
                        Bits = decodeBits mb
                        Scheme =
                            (if get (membraneSchemeKey name) = Some 1.0f then
                                 MembraneScheme.Uniform
                             else
                                 MembraneScheme.Mint)
                        ScaleFrom =
                            (match shared, src with
                             | true, Some s -> s
                             | _ -> name)
                    }))
            |> Map.ofList

        {
            Weights = weights
            Membranes = membranes
        }

    /// γ of a Norm layer as the interpreter uses it (tdBN scales it by α·θ).
    let normGamma (kind: NormKind) (weight: Tensor) =
        match kind with
        | NormKind.Batch -> weight
        | NormKind.ThresholdDependent(alpha, theta) -> weight * (alpha * theta)
