namespace SnnSpec

open System

/// The shared knobs of the model zoo's constructors. One configuration builds a teacher
/// (Width = 1), an assistant or a student (Width < 1) of the same topology; whether it runs as an
/// SNN or its ANN twin, and at which T, is the ExecutionMode given to Model.init.
type ZooConfig =
    {
        /// Channel (and hidden-unit) multiplier: a layer of c channels gets max 1 (round (c·Width)).
        /// Input channels and the class count are never scaled.
        Width: float32
        /// The neuron of every spiking population.
        Neuron: Neuron
        InputChannels: int
        /// Side of the square input image.
        InputSize: int
        Classes: int
        Norm: NormKind
        /// Dropout before the final classifier layer; 0 leaves no Dropout layer in the tree.
        Dropout: float32
        /// MINT-style direct encoding: the stem's first conv (+BN) runs once on the static image and
        /// its output is repeated over T. False repeats the image itself (the usual direct encoding).
        EncodeFirstConv: bool
    }

    /// MNIST / Fashion-MNIST: 1×28×28, 10 classes, SpikingJelly LIF, batch norm.
    static member Mnist =
        {
            Width = 1.0f
            Neuron = Neuron.lif
            InputChannels = 1
            InputSize = 28
            Classes = 10
            Norm = NormKind.Batch
            Dropout = 0.0f
            EncodeFirstConv = false
        }

    /// CIFAR-10: 3×32×32, 10 classes, SpikingJelly LIF, batch norm.
    static member Cifar10 =
        { ZooConfig.Mnist with
            InputChannels = 3
            InputSize = 32
        }

    /// CIFAR-100: 3×32×32, 100 classes.
    static member Cifar100 = { ZooConfig.Cifar10 with Classes = 100 }

/// Architecture constructors for the models the distillation methods use. Each returns an
/// Architecture for both the SNN and the ANN twin. Conv layers have no bias (a batch norm follows
/// each); parameter names read "layer1.0.conv1.weight", "bn1.running_mean", "fc.bias". Every model
/// taps the classifier's input as "feature" ([T, B, C]; ConvNet [T, B, C·h·w]); the conv models also
/// tap their last feature map [T, B, C, h, w], before global pooling, as "feature_map".
module Zoo =
    /// The tap on the classifier's input.
    let featureTap = "feature"

    /// The tap on the last feature map [T, B, C, h, w], before the head's global pooling (ConvNet:
    /// before its flatten): the map BKDSNN blurs and restores (methods.md §4a). Conv models only.
    let featureMapTap = "feature_map"

    /// Scaled channel count: max 1 (round (c·Width)), halves rounded away from zero.
    let channels (cfg: ZooConfig) (c: int) =
        max 1 (int (Math.Round(float c * float cfg.Width, MidpointRounding.AwayFromZero)))

    let private validate (op: string) (minSize: int) (cfg: ZooConfig) =
        if not (cfg.Width > 0.0f) || Single.IsInfinity cfg.Width then
            Errors.invalidArg op "Width" cfg.Width "a finite channel multiplier > 0"

        if cfg.InputChannels < 1 then
            Errors.invalidArg op "InputChannels" cfg.InputChannels "at least 1"

        if cfg.InputSize < minSize then
            Errors.invalidArg
                op
                "InputSize"
                cfg.InputSize
                (sprintf "at least %d (the side of the smallest input the downsampling stack accepts)" minSize)

        if cfg.Classes < 1 then
            Errors.invalidArg op "Classes" cfg.Classes "at least 1"

        if not (cfg.Dropout >= 0.0f && cfg.Dropout < 1.0f) then
            Errors.invalidArg op "Dropout" cfg.Dropout "a probability in [0, 1)"

        Neuron.validate cfg.Neuron

    let private name (model: string) (cfg: ZooConfig) =
        if cfg.Width = 1.0f then
            model
        else
            sprintf "%s (width %g)" model cfg.Width

    let private arch (model: string) (cfg: ZooConfig) (layers: LayerSpec list) =
        {
            Name = name model cfg
            Layers = layers
            InputShape = [| cfg.InputChannels; cfg.InputSize; cfg.InputSize |]
            Classes = cfg.Classes
        }

    let private dropout (cfg: ZooConfig) =
        if cfg.Dropout > 0.0f then [ Dropout cfg.Dropout ] else []

    let private repeatMarker (cfg: ZooConfig) =
        if cfg.EncodeFirstConv then [ RepeatOverTime ] else []

    let private spiking (cfg: ZooConfig) (n: string) = Spiking(n, cfg.Neuron)

    let private conv3 (n: string) cin cout stride =
        Conv2d(n, cin, cout, 3, stride, 1, false)

    /// conv3×3 – norm, then the repeat marker when the first conv encodes.
    let private stem (cfg: ZooConfig) (width: int) =
        [ conv3 "conv1" cfg.InputChannels width 1; Norm("bn1", width, cfg.Norm) ]
        @ repeatMarker cfg

    /// Blocks "0" … "n−1" of a stage; the first has the given stride and changes the width.
    let private stage
        (n: string)
        (block: string -> int -> int -> int -> LayerSpec)
        (blocks: int)
        (cin: int)
        (cout: int)
        (stride: int)
        =
        Stage(
            n,
            [
                for i in 0 .. blocks - 1 ->
                    if i = 0 then
                        block "0" cin cout stride
                    else
                        block (string i) cout cout 1
            ]
        )

    let private projection (cfg: ZooConfig) cin cout stride =
        if stride <> 1 || cin <> cout then
            [
                Conv2d("downsample_conv", cin, cout, 1, stride, 0, false)
                Norm("downsample_bn", cout, cfg.Norm)
            ]
        else
            []

    /// conv-BN-LIF-conv-BN (+ shortcut), LIF after the sum.
    let private basicBlock (cfg: ZooConfig) (n: string) cin cout stride =
        Residual(
            n,
            ResidualKind.Add,
            [
                conv3 "conv1" cin cout stride
                Norm("bn1", cout, cfg.Norm)
                spiking cfg "lif1"
                conv3 "conv2" cout cout 1
                Norm("bn2", cout, cfg.Norm)
            ],
            projection cfg cin cout stride,
            [ spiking cfg "lif2" ]
        )

    /// LIF-conv-BN-LIF-conv-BN (+ shortcut on the pre-spike block input).
    let private membraneBlock (cfg: ZooConfig) (n: string) cin cout stride =
        Residual(
            n,
            ResidualKind.Membrane,
            [
                spiking cfg "lif1"
                conv3 "conv1" cin cout stride
                Norm("bn1", cout, cfg.Norm)
                spiking cfg "lif2"
                conv3 "conv2" cout cout 1
                Norm("bn2", cout, cfg.Norm)
            ],
            projection cfg cin cout stride,
            []
        )

    /// conv-BN-SN-conv-BN-SN, combined with the (spiking) shortcut by the connect function.
    let private sewBlock (cfg: ZooConfig) (connect: ResidualKind) (n: string) cin cout stride =
        let shortcut =
            match projection cfg cin cout stride with
            | [] -> []
            | p -> p @ [ spiking cfg "downsample_lif" ]

        Residual(
            n,
            connect,
            [
                conv3 "conv1" cin cout stride
                Norm("bn1", cout, cfg.Norm)
                spiking cfg "lif1"
                conv3 "conv2" cout cout 1
                Norm("bn2", cout, cfg.Norm)
                spiking cfg "lif2"
            ],
            shortcut,
            []
        )

    /// Stages of ResNet-18 widths 64/128/256/512 × 2 blocks (strides 1, 2, 2, 2) after a stem of width c0.
    let private resnet18Stages (cfg: ZooConfig) (block: string -> int -> int -> int -> LayerSpec) (c0: int) =
        let ws = [ 64; 128; 256; 512 ] |> List.map (channels cfg)
        let ins = c0 :: List.take 3 ws

        List.zip3 ins ws [ 1; 2; 2; 2 ]
        |> List.mapi (fun i (cin, cout, s) -> stage (sprintf "layer%d" (i + 1)) block 2 cin cout s)

    let private head (cfg: ZooConfig) (features: int) =
        [ Tap featureMapTap; AdaptiveAvgPool 1; Flatten; Tap featureTap ]
        @ dropout cfg
        @ [ Linear("fc", features, cfg.Classes, true) ]

    /// Fully connected SNN: Flatten → [Linear → Spiking]* → Tap "feature" → Linear. Hidden sizes are
    /// scaled by Width; hidden populations are "fc1"/"lif1", "fc2"/"lif2", …, the classifier "fc".
    /// With EncodeFirstConv the first Linear runs once on the image. Any input size; the small
    /// fully connected SNNs of Distilling Spikes (methods.md §5(b–c), sizes unknown there [R]).
    let mlp (cfg: ZooConfig) (hidden: int list) : Architecture =
        validate "Zoo.mlp" 1 cfg

        hidden
        |> List.iter (fun h ->
            if h < 1 then
                Errors.invalidArg "Zoo.mlp" "hidden" hidden "positive layer sizes")

        let inputs = cfg.InputChannels * cfg.InputSize * cfg.InputSize
        let sizes = hidden |> List.map (channels cfg)
        let ins = inputs :: sizes

        let layers =
            List.zip (List.take sizes.Length ins) sizes
            |> List.mapi (fun i (fin, fout) ->
                [ Linear(sprintf "fc%d" (i + 1), fin, fout, true) ]
                @ (if i = 0 then repeatMarker cfg else [])
                @ [ spiking cfg (sprintf "lif%d" (i + 1)) ])
            |> List.concat

        arch
            "mlp"
            cfg
            ([ Flatten ]
             @ layers
             @ [ Tap featureTap ]
             @ dropout cfg
             @ [ Linear("fc", List.last ins, cfg.Classes, true) ])

    /// Small ConvNet for 28×28 digits: conv3×3 32 – BN – LIF – maxpool2 – conv3×3 64 – BN – LIF –
    /// maxpool2 – Tap "feature_map" – flatten – Tap "feature" – fc 128 – LIF – fc K (widths scaled) [R]: the usual
    /// MNIST SNN baseline. Inputs of side ≥ 4 (28 → 7×7 before the classifier).
    let convNet (cfg: ZooConfig) : Architecture =
        validate "Zoo.convNet" 4 cfg
        let c1 = channels cfg 32
        let c2 = channels cfg 64
        let h = channels cfg 128
        let side = cfg.InputSize / 2 / 2

        arch
            "convnet"
            cfg
            (stem cfg c1
             @ [
                 spiking cfg "lif1"
                 MaxPool(2, 2)
                 conv3 "conv2" c1 c2 1
                 Norm("bn2", c2, cfg.Norm)
                 spiking cfg "lif2"
                 MaxPool(2, 2)
                 Tap featureMapTap
                 Flatten
                 Tap featureTap
                 Linear("fc1", c2 * side * side, h, true)
                 spiking cfg "lif_fc1"
             ]
             @ dropout cfg
             @ [ Linear("fc", h, cfg.Classes, true) ])

    /// conv-BN-LIF layers "conv{i}"/"bn{i}"/"lif{i}" with max pools at "P", then Tap "feature_map",
    /// global average pooling, Tap "feature" and fc → K.
    let private vgg (model: string) (minSize: int) (plan: int option list) (cfg: ZooConfig) =
        validate model minSize cfg
        let mutable cin = cfg.InputChannels
        let mutable i = 0

        let features =
            plan
            |> List.collect (fun p ->
                match p with
                | None -> [ MaxPool(2, 2) ]
                | Some c ->
                    i <- i + 1
                    let cout = channels cfg c

                    let layers =
                        [
                            conv3 (sprintf "conv%d" i) cin cout 1
                            Norm(sprintf "bn%d" i, cout, cfg.Norm)
                        ]
                        @ (if i = 1 then repeatMarker cfg else [])
                        @ [ spiking cfg (sprintf "lif%d" i) ]

                    cin <- cout
                    layers)

        arch (model.Substring 4) cfg (features @ head cfg cin)

    /// VGG-9 for CIFAR: 64, 64, P, 128, 128, P, 256, 256, 256, P (conv3×3-BN-LIF, P = maxpool 2),
    /// global average pooling, Tap "feature", fc 256 → K. Channels and pools as SpikeSim's VGG9 layer
    /// table (methods.md §6.7); the single-layer classifier after global pooling as MINT's VGG9
    /// (read in its code, where the convs have no BN and global pooling replaces the third max
    /// pool). Inputs of side ≥ 8 (32 → 4×4, 28 → 3×3 before global pooling).
    let vgg9 (cfg: ZooConfig) : Architecture =
        vgg
            "Zoo.vgg9"
            8
            [
                Some 64
                Some 64
                None
                Some 128
                Some 128
                None
                Some 256
                Some 256
                Some 256
                None
            ]
            cfg

    /// VGG-11 for CIFAR: 64, P, 128, P, 256, 256, P, 512, 512, P, 512, 512 (conv3×3-BN-LIF,
    /// P = maxpool 2), global average pooling in place of the fifth max pool, Tap "feature", fc 512 → K
    /// [R]: the common CIFAR VGG-11 with one classifier layer. Inputs of side ≥ 16 (28 would
    /// vanish under five max pools, hence the global pooling).
    let vgg11 (cfg: ZooConfig) : Architecture =
        vgg
            "Zoo.vgg11"
            16
            [
                Some 64
                None
                Some 128
                None
                Some 256
                Some 256
                None
                Some 512
                Some 512
                None
                Some 512
                Some 512
            ]
            cfg

    /// Spiking ResNet-18, CIFAR form, of the temporal-KD code (methods.md §3(c)): stem conv3×3 64
    /// (stride 1)-BN-LIF; stages "layer1".."layer4" of widths 64/128/256/512 × 2 basic blocks
    /// (conv-BN-LIF-conv-BN + shortcut, 1×1 conv-BN when the stride or width changes, LIF after the
    /// sum); global average pooling, Tap "feature", fc 512 → K. 11,173,962 parameters for 10
    /// classes at Width 1. Inputs of side ≥ 8 (three stride-2 stages).
    let resnet18 (cfg: ZooConfig) : Architecture =
        validate "Zoo.resnet18" 8 cfg
        let c0 = channels cfg 64

        arch
            "resnet18"
            cfg
            (stem cfg c0
             @ [ spiking cfg "lif1" ]
             @ resnet18Stages cfg (basicBlock cfg) c0
             @ head cfg (channels cfg 512))

    /// Spiking ResNet-19 of the temporal-KD code (methods.md §3(c)): stem conv3×3 128-BN-LIF; stages
    /// "layer1".."layer3" of widths 128/256/512 with 3/3/2 basic blocks (strides 1, 2, 2; blocks as
    /// in resnet18); global average pooling, Tap "feature", fc1 512 → 256 – LIF – fc 256 → K.
    /// Inputs of side ≥ 4 (two stride-2 stages).
    let resnet19 (cfg: ZooConfig) : Architecture =
        validate "Zoo.resnet19" 4 cfg
        let c0 = channels cfg 128
        let ws = [ 128; 256; 512 ] |> List.map (channels cfg)
        let ins = c0 :: List.take 2 ws
        let hidden = channels cfg 256

        let stages =
            List.zip3 ins ws [ (1, 3); (2, 3); (2, 2) ]
            |> List.mapi (fun i (cin, cout, (s, n)) -> stage (sprintf "layer%d" (i + 1)) (basicBlock cfg) n cin cout s)

        arch
            "resnet19"
            cfg
            (stem cfg c0
             @ [ spiking cfg "lif1" ]
             @ stages
             @ [
                 Tap featureMapTap
                 AdaptiveAvgPool 1
                 Flatten
                 Tap featureTap
                 Linear("fc1", List.last ws, hidden, true)
                 spiking cfg "lif_fc1"
             ]
             @ dropout cfg
             @ [ Linear("fc", hidden, cfg.Classes, true) ])

    /// MS-ResNet-18 (membrane shortcut, Hu et al., arXiv 2112.08954; the MD-SNN model, methods.md
    /// §2(c)): stem conv3×3 64-BN (no LIF: every block starts with one); stages "layer1".."layer4"
    /// of widths 64/128/256/512 × 2 blocks LIF-conv-BN-LIF-conv-BN whose sum with the shortcut is
    /// taken on pre-spike values (identity, or 1×1 conv-BN on the block input when the stride or
    /// width changes); a final LIF "lif_out", global average pooling, Tap "feature", fc 512 → K.
    /// Block, shortcut and final LIF as the authors' ImageNet code (Ariande1/MS-ResNet); the stem
    /// and strides are the CIFAR form of resnet18 [R], and that code's BN initialisation (γ = θ,
    /// zero γ on each block's last BN) is not reproduced. Inputs of side ≥ 8.
    let msResnet18 (cfg: ZooConfig) : Architecture =
        validate "Zoo.msResnet18" 8 cfg
        let c0 = channels cfg 64

        arch
            "ms-resnet18"
            cfg
            (stem cfg c0
             @ resnet18Stages cfg (membraneBlock cfg) c0
             @ [ spiking cfg "lif_out" ]
             @ head cfg (channels cfg 512))

    /// SEW-ResNet-18, CIFAR stem (Fang et al. 2021; BKDSNN's SEW student, methods.md §4(b–c)): stem
    /// conv3×3 64-BN-SN; stages "layer1".."layer4" of widths 64/128/256/512 × 2 blocks
    /// conv-BN-SN-conv-BN-SN combined with the shortcut by the connect function (identity, or
    /// 1×1 conv-BN-SN when the stride or width changes); global average pooling, Tap "feature",
    /// fc 512 → K. connect is ResidualKind.SewAdd or ResidualKind.SewIAnd. Inputs of side ≥ 8.
    let sewResnet18 (cfg: ZooConfig) (connect: ResidualKind) : Architecture =
        match connect with
        | ResidualKind.SewAdd
        | ResidualKind.SewIAnd -> ()
        | other -> Errors.invalidArg "Zoo.sewResnet18" "connect" other "ResidualKind.SewAdd or ResidualKind.SewIAnd"

        validate "Zoo.sewResnet18" 8 cfg
        let c0 = channels cfg 64

        let model =
            match connect with
            | ResidualKind.SewIAnd -> "sew-resnet18-iand"
            | _ -> "sew-resnet18-add"

        arch
            model
            cfg
            (stem cfg c0
             @ [ spiking cfg "lif1" ]
             @ resnet18Stages cfg (sewBlock cfg connect) c0
             @ head cfg (channels cfg 512))

/// Probe granularity for membrane extraction (MD-SNN): every population, one per residual block,
/// or one per stage.
[<RequireQualifiedAccess>]
type ProbeGranularity =
    | ConvWise
    | BlockWise
    | StageWise

/// Which spiking populations to probe at each granularity. Names are full dotted names in forward
/// order, as Architecture.spikingNames gives them.
module Probes =
    /// The tap every zoo model places on the classifier's input ("feature").
    let features = Zoo.featureTap

    /// The tap every zoo conv model (all but the MLP) places on its last feature map [T, B, C, h, w]
    /// before global pooling ("feature_map"): the input of blurred KD (BKDSNN).
    let featureMap = Zoo.featureMapTap

    type private Event =
        | Spike of string
        | Mark of int
        | Pool

    /// A group (block or stage) with the mark at its output and the population standing in for it
    /// when no population follows that mark.
    type private Group = { Mark: int; Fallback: string option }

    type private Scan =
        {
            Events: Event list
            Blocks: Group list
            Stages: Group list
        }

    let private scan (arch: Architecture) : Scan =
        let events = ResizeArray<Event>()
        let blocks = ResizeArray<Group>()
        let stages = ResizeArray<Group>()
        let mutable marks = 0

        let newMark () =
            marks <- marks + 1
            events.Add(Mark marks)
            marks

        let spikesFrom (start: int) =
            [
                for i in start .. events.Count - 1 do
                    match events[i] with
                    | Spike n -> yield n
                    | _ -> ()
            ]

        // Returns the mark at the output of the list when its last layer is a block or a stage.
        let rec go (prefix: string) (layers: LayerSpec list) : int option =
            let full n =
                if prefix = "" then n else prefix + "." + n

            let mutable last = None

            for layer in layers do
                last <- None

                match layer with
                | Spiking(n, _) -> events.Add(Spike(full n))
                | MaxPool _
                | AvgPool _
                | AdaptiveAvgPool _ -> events.Add Pool
                | Residual(n, _, main, shortcut, after) ->
                    let start = events.Count
                    go (full n) main |> ignore
                    let inMain = spikesFrom start
                    go (full n) shortcut |> ignore
                    let inBlock = spikesFrom start
                    let mark = newMark ()

                    let fallback =
                        match List.tryLast inMain with
                        | Some n -> Some n
                        | None -> List.tryLast inBlock

                    blocks.Add { Mark = mark; Fallback = fallback }
                    go (full n) after |> ignore
                    last <- Some mark
                | Stage(n, inner) ->
                    let start = events.Count

                    let mark =
                        match go (full n) inner with
                        | Some m -> m
                        | None -> newMark ()

                    stages.Add
                        {
                            Mark = mark
                            Fallback = List.tryLast (spikesFrom start)
                        }

                    last <- Some mark
                | _ -> ()

            last

        go "" arch.Layers |> ignore

        {
            Events = List.ofSeq events
            Blocks = List.ofSeq blocks
            Stages = List.ofSeq stages
        }

    /// The first population at or after the group's output mark, else its fallback.
    let private consumer (events: Event list) (g: Group) =
        events
        |> List.skipWhile (fun e -> e <> Mark g.Mark)
        |> List.tryPick (fun e ->
            match e with
            | Spike n -> Some n
            | _ -> None)
        |> Option.orElse g.Fallback

    /// Keeps the chosen names in the architecture's forward order, each once.
    let private inOrder (arch: Architecture) (chosen: string list) =
        let set = Set.ofList chosen
        Architecture.spikingNames arch |> List.filter set.Contains

    /// Every spiking population.
    let convWise (arch: Architecture) = Architecture.spikingNames arch

    /// One population per residual block: the first in forward order that consumes the block's
    /// output (the LIF in After for the Add kind, otherwise the next population after the block,
    /// such as the next block's first LIF or a final LIF before pooling). A block followed by no
    /// population is represented by the last population of its main branch. Without residual
    /// blocks, every population (conv-wise).
    let blockWise (arch: Architecture) =
        let s = scan arch

        if s.Blocks.IsEmpty then
            convWise arch
        else
            s.Blocks |> List.choose (consumer s.Events) |> inOrder arch

    /// One population per Stage: the block-wise rule applied to the stage's output (the output of
    /// its last block, or the stage's end). Without stages, the population immediately preceding
    /// each pooling layer; without pooling either, every population.
    let stageWise (arch: Architecture) =
        let s = scan arch

        let chosen =
            if not s.Stages.IsEmpty then
                s.Stages |> List.choose (consumer s.Events)
            else
                s.Events
                |> List.fold
                    (fun (pending: string option, acc: string list) e ->
                        match e with
                        | Spike n -> Some n, acc
                        | Pool ->
                            match pending with
                            | Some n -> None, n :: acc
                            | None -> None, acc
                        | Mark _ -> pending, acc)
                    (None, [])
                |> snd

        match chosen with
        | [] -> convWise arch
        | c -> inOrder arch c

    /// The populations of a granularity.
    let names (granularity: ProbeGranularity) (arch: Architecture) =
        match granularity with
        | ProbeGranularity.ConvWise -> convWise arch
        | ProbeGranularity.BlockWise -> blockWise arch
        | ProbeGranularity.StageWise -> stageWise arch

    /// A request recording the membranes of these populations.
    let membranes (names: string seq) : ProbeRequest =
        { ProbeRequest.None with
            Membranes = Set.ofSeq names
        }

    /// A request recording the membranes of the granularity's populations.
    let request (granularity: ProbeGranularity) (arch: Architecture) : ProbeRequest = membranes (names granularity arch)

    /// The same request also recording the "feature" tap.
    let withFeatures (request: ProbeRequest) : ProbeRequest =
        { request with
            Taps = request.Taps.Add features
        }
