namespace SnnSpec

/// How a residual block combines its branch F(x) with the shortcut x.
[<RequireQualifiedAccess>]
type ResidualKind =
    /// y = After(F(x) + shortcut(x)): the spiking ResNet of temporal KD (LIF after the sum) or an ANN ResNet.
    | Add
    /// SEW-ResNet ADD (Fang et al. 2021): y = SN(F(x)) + x, spikes added.
    | SewAdd
    /// SEW-ResNet IAND: y = (1 − x) ⊙ SN(F(x)).
    | SewIAnd
    /// MS-ResNet membrane shortcut (Hu et al.): y = F(x) + x with the branch starting at a LIF, so
    /// the sum is taken on pre-spike (membrane-level) values.
    | Membrane

/// The batch-norm variant of a layer.
[<RequireQualifiedAccess>]
type NormKind =
    /// Batch norm over every sample of the flattened [T·B, …] tensor.
    | Batch
    /// Threshold-dependent BN (tdBN, Zheng et al. 2021): batch norm scaled by α·θ.
    | ThresholdDependent of alpha: float32 * threshold: float32

/// One layer of an architecture. An architecture is a tree of these values: the forward
/// interpreter, the parameter initialiser, the summary, probes, quantization configs and the
/// crossbar mapper all read the same tree. Names are unique along a path and form parameter
/// names ("layer1.0.conv1.weight").
type LayerSpec =
    /// 2-D convolution (square kernel) on [N, C, H, W].
    | Conv2d of
        name: string *
        inChannels: int *
        outChannels: int *
        kernel: int *
        stride: int *
        padding: int *
        bias: bool
    /// Affine map [N, in] → [N, out].
    | Linear of name: string * inFeatures: int * outFeatures: int * bias: bool
    /// Batch norm over axis 1 with learnable γ, β and running statistics.
    | Norm of name: string * channels: int * kind: NormKind
    /// A spiking neuron population in an SNN; a ReLU in the ANN twin.
    | Spiking of name: string * neuron: Neuron
    /// ReLU in both the SNN and the ANN.
    | Relu of name: string
    | MaxPool of kernel: int * stride: int
    | AvgPool of kernel: int * stride: int
    /// Adaptive average pooling to out×out.
    | AdaptiveAvgPool of out: int
    /// [N, …] → [N, ∏…].
    | Flatten
    /// Dropout with probability p; in an SNN one mask is shared by every step.
    | Dropout of p: float32
    /// A residual block: Shortcut is empty for the identity; After runs on the combined value.
    | Residual of
        name: string *
        kind: ResidualKind *
        main: LayerSpec list *
        shortcut: LayerSpec list *
        after: LayerSpec list
    /// A named group of layers (a stage of a ResNet, the feature extractor of a VGG).
    | Stage of name: string * layers: LayerSpec list
    /// Layers before this marker run once on the static [B, …] input; their output is then repeated
    /// over T (MINT's direct encoding through the first conv). Without it the input is repeated first.
    | RepeatOverTime
    /// First layer only: the input is a sequence of this many frames [T, B, C, …] whose frames are
    /// concatenated along the channel axis into one static sample [B, T·C, …] (an ANN that reads
    /// event frames in order). InputShape stays the per-frame shape [C, …]; see Architecture.stackFrames.
    | StackFrames of frames: int
    /// Records the current value under this name (e.g. "feature", the input to the classifier).
    | Tap of name: string

/// A model's topology: the layer tree, the per-sample input shape and the class count.
type Architecture =
    {
        Name: string
        Layers: LayerSpec list
        InputShape: int[]
        Classes: int
    }

/// SNN or ANN execution of an architecture.
[<RequireQualifiedAccess>]
type ExecutionMode =
    /// Spiking, T steps, logits per step.
    | Snn of steps: int
    /// The ANN twin: every Spiking layer becomes a ReLU, one step.
    | Ann

module Architecture =
    /// Every layer name in the tree, depth first, with its full path.
    let rec private walk (prefix: string) (layers: LayerSpec list) : (string * LayerSpec) list =
        let full n =
            if prefix = "" then n else prefix + "." + n

        layers
        |> List.collect (fun l ->
            match l with
            | Conv2d(n, _, _, _, _, _, _)
            | Linear(n, _, _, _)
            | Norm(n, _, _)
            | Spiking(n, _)
            | Relu n
            | Tap n -> [ full n, l ]
            | Residual(n, _, main, sc, after) ->
                (full n, l) :: (walk (full n) main @ walk (full n) sc @ walk (full n) after)
            | Stage(n, ls) -> (full n, l) :: walk (full n) ls
            | MaxPool _
            | AvgPool _
            | AdaptiveAvgPool _
            | Flatten
            | Dropout _
            | RepeatOverTime
            | StackFrames _ -> [])

    /// (full name, layer) for every named layer, depth first.
    let layers (arch: Architecture) = walk "" arch.Layers

    /// Names of the spiking populations, in forward order.
    let spikingNames (arch: Architecture) =
        layers arch
        |> List.choose (fun (n, l) ->
            match l with
            | Spiking _ -> Some n
            | _ -> None)

    /// The frame count T of an architecture that starts with StackFrames T.
    let stackedFrames (arch: Architecture) =
        match arch.Layers with
        | StackFrames f :: _ -> Some f
        | _ -> None

    /// An architecture built for T·C input channels, turned into one that reads a sequence of T
    /// frames [T, B, C, …] by concatenating them along channels ([B, T·C, …], frame 0 first): the
    /// usual ANN baseline on event frames, which sees their order where a time-mean would not.
    /// InputShape becomes the per-frame [C, …].
    let stackFrames (frames: int) (arch: Architecture) =
        if frames < 1 then
            Errors.invalidArg "Architecture.stackFrames" "frames" frames "at least 1"

        if arch.InputShape.Length = 0 || arch.InputShape[0] % frames <> 0 then
            Errors.invalidArg
                "Architecture.stackFrames"
                "arch"
                (Errors.showShape arch.InputShape)
                (sprintf
                    "an architecture whose input has a multiple of %d channels (T·C, built for the stacked frames)"
                    frames)

        if stackedFrames arch |> Option.isSome then
            Errors.invalidArg
                "Architecture.stackFrames"
                "arch"
                arch.Name
                "an architecture that does not stack frames already"

        { arch with
            Layers = StackFrames frames :: arch.Layers
            InputShape = Array.append [| arch.InputShape[0] / frames |] arch.InputShape[1..]
        }

    /// The shape of a batch of B samples the architecture reads: [B, …InputShape], or
    /// [T, B, …InputShape] when it stacks T frames (for shape probes on zero batches).
    let batchShape (batch: int) (arch: Architecture) =
        match stackedFrames arch with
        | Some f -> Array.append [| f; batch |] arch.InputShape
        | None -> Array.append [| batch |] arch.InputShape
